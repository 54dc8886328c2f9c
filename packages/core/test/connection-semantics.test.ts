// Connection semantics a node:net user relies on, on every backend that can run here: a write
// after end is reported (never silently dropped) and an automatic end flushes first, pause()
// takes effect at once (also after a runtime migration), and a rejected async onConnection
// handler destroys its connection and reaches an 'error' listener.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createReactor, type BackendName, type Connection, type IomuxError } from '../src/index.js';
import {
  backends,
  fallbackSkip,
  fdCount,
  netConnect,
  pattern,
  sleep,
  until,
  useBackendFixture,
} from './helpers.js';

/** Relays `from` → `to` with backpressure: reading `from` pauses while `to` is above its mark. */
function relay(from: Connection, to: Connection): void {
  from.on('data', (chunk) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => {
    from.resume();
  });
}

/** A node:net echo server that keeps echoing after the client's FIN, then ends. */
async function netEcho(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined); // the proxy may destroy its upstream side first
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/**
 * A node:net client that sends `payload`, then FIN, and collects what comes back until the
 * server closes.
 */
function sendAndCollect(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('error', reject);
    socket.on('close', () => {
      resolve(Buffer.concat(parts));
    });
    socket.end(payload);
  });
}

describe.each(backends)('connection semantics: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const f = useBackendFixture(backend);

  run(
    'a write after end() is reported with IOMUX_WRITE_AFTER_END; what came before arrives',
    async () => {
      const { server, port } = await netEcho();
      f.servers.push(server);
      const conn = await f.reactor.connect({ port, allowHalfOpen: true });
      const errors: IomuxError[] = [];
      conn.on('error', (err) => errors.push(err));
      const closed = new Promise<IomuxError | undefined>((resolve) => conn.on('close', resolve));
      const echoed: Buffer[] = [];
      conn.on('data', (d) => echoed.push(Buffer.from(d)));
      const before = pattern(256 * 1024, 3);
      conn.write(before);
      conn.end();
      expect(conn.write('lost')).toBe(false);
      expect(conn.writev([Buffer.from('also lost')])).toBe(false);
      const closeError = await closed;
      expect(errors.map((e) => e.code)).toEqual(['IOMUX_WRITE_AFTER_END']); // reported once
      expect(errors[0]!.message).toMatch(/^write after end\(\) on connection \d+/);
      expect(closeError).toBe(errors[0]);
      expect(Buffer.concat(echoed).equals(before)).toBe(true);
      expect(conn.bytesWritten).toBe(before.length);
    },
  );

  run('without an error listener the write after end() reaches close(err), no throw', async () => {
    const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
    const conn = await f.reactor.connect({ port: listener.port });
    const closed = new Promise<IomuxError | undefined>((resolve) => conn.on('close', resolve));
    conn.end();
    expect(() => conn.write('x')).not.toThrow();
    expect((await closed)?.code).toBe('IOMUX_WRITE_AFTER_END');
  });

  run(
    "a write after the peer's FIN is reported; what was queued before still arrives",
    async () => {
      const queued = pattern(1024 * 1024, 4);
      const errors: IomuxError[] = [];
      let late: boolean | undefined;
      let closedWith: IomuxError | undefined | 'open' = 'open';
      const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        conn.on('error', (err) => errors.push(err));
        conn.on('close', (err) => (closedWith = err));
        conn.on('data', () => conn.write(queued)); // the client does not read yet: it queues
        conn.on('end', () => (late = conn.write('late')));
      });
      const socket = net.connect({ port: listener.port, host: '127.0.0.1', allowHalfOpen: true });
      f.clients.push(socket);
      socket.pause();
      socket.end('x');
      await until(() => late !== undefined, 10_000, "the server's 'end'");
      expect(late).toBe(false);
      await until(() => errors.length === 1, 10_000, "'error'");
      expect(errors[0]!.code).toBe('IOMUX_WRITE_AFTER_END');
      const parts: Buffer[] = [];
      socket.on('data', (d: Buffer) => parts.push(d));
      const ended = new Promise<void>((resolve) => socket.on('end', resolve));
      socket.resume();
      await ended;
      expect(Buffer.concat(parts).equals(queued)).toBe(true);
      await until(() => closedWith !== 'open');
      expect(closedWith).toBe(errors[0]);
    },
  );

  // The issue's reverse proxy: the client sends 20 MB then FIN; the proxy relays the upstream
  // echo back. With allowHalfOpen false, iomux ends the client side at the client's FIN: the
  // bytes written before that arrive byte-exact and the later writes are reported.
  const total = 20 * 1024 * 1024;
  run(
    'proxy, default allowHalfOpen: the automatic end flushes first; later writes reported',
    async () => {
      const { server, port: upstreamPort } = await netEcho();
      f.servers.push(server);
      let accepted: Connection | undefined;
      let writtenAtEnd = -1;
      let writesAfterEnd = 0;
      let clientClosed = false;
      const errors: IomuxError[] = [];
      const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, async (client) => {
        accepted = client;
        client.pause();
        client.on('error', (err) => errors.push(err));
        client.on('end', () => (writtenAtEnd = client.bytesWritten));
        const upstream = await f.reactor.connect({ port: upstreamPort, allowHalfOpen: true });
        relay(client, upstream);
        upstream.on('data', (chunk) => {
          if (client.writableEnded && !clientClosed) writesAfterEnd += 1;
          // Keeps writing after the end (as the issue's proxy did): each such write is refused.
          if (!client.write(chunk) && !client.writableEnded) upstream.pause();
        });
        client.on('drain', () => {
          upstream.resume();
        });
        client.on('end', () => {
          upstream.end();
        });
        client.on('close', () => {
          clientClosed = true;
          upstream.destroy();
        });
        client.resume();
      });
      const payload = pattern(total, 11);
      const received = await sendAndCollect(listener.port, payload);
      await until(() => accepted?.closed === true);
      expect(writtenAtEnd).toBeGreaterThanOrEqual(0);
      // Every byte written before the end arrived, byte-exact, and nothing after it.
      expect(received.length).toBe(writtenAtEnd);
      expect(received.equals(payload.subarray(0, received.length))).toBe(true);
      // Each write after the end (until 'close') was refused; the first one reported.
      expect(errors.map((e) => e.code)).toEqual(
        writesAfterEnd > 0 ? ['IOMUX_WRITE_AFTER_END'] : [],
      );
      if (writesAfterEnd > 0) {
        expect(errors[0]!.message).toMatch(/after the peer ended \(allowHalfOpen is false/);
        expect(accepted!.error).toBe(errors[0]);
      }
    },
  );

  run('proxy, allowHalfOpen on the listener: all 20 MB come back byte-exact', async () => {
    const { server, port: upstreamPort } = await netEcho();
    f.servers.push(server);
    const errors: IomuxError[] = [];
    const listener = await f.reactor.listen(
      { host: '127.0.0.1', port: 0, allowHalfOpen: true },
      async (client) => {
        client.pause();
        client.on('error', (err) => errors.push(err));
        const upstream = await f.reactor.connect({ port: upstreamPort, allowHalfOpen: true });
        relay(client, upstream);
        relay(upstream, client);
        client.on('end', () => {
          upstream.end();
        });
        upstream.on('end', () => {
          client.end();
        });
        client.resume();
      },
    );
    const payload = pattern(total, 12);
    const received = await sendAndCollect(listener.port, payload);
    expect(received.length).toBe(total);
    expect(received.equals(payload)).toBe(true);
    expect(errors).toEqual([]);
  });

  run('pause() takes effect at once: no data event of the same batch follows it', async () => {
    const chunks: Buffer[] = [];
    let afterPause = 0;
    let server: Connection | undefined;
    const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      server = conn;
      conn.on('data', (d) => {
        if (conn.isPaused) afterPause += 1;
        chunks.push(Buffer.from(d));
        conn.pause(); // pause on every chunk; the test resumes
      });
    });
    const payload = pattern(4 * 1024 * 1024, 5);
    const socket = await netConnect(listener.port);
    f.clients.push(socket);
    socket.write(payload);
    let received = 0;
    while (received < payload.length) {
      await until(() => server !== undefined && chunks.length > 0, 10_000, 'data');
      const before = chunks.length;
      await sleep(5); // let further batches arrive while paused
      expect(chunks.length).toBe(before);
      for (const c of chunks.splice(0)) {
        expect(c.equals(payload.subarray(received, received + c.length))).toBe(true);
        received += c.length;
      }
      server!.resume();
    }
    expect(received).toBe(payload.length);
    expect(afterPause).toBe(0);
  });

  run("pause() holds the peer's END of the same batch until resume()", async () => {
    const seen: string[] = [];
    let server: Connection | undefined;
    const listener = await f.reactor.listen(
      { host: '127.0.0.1', port: 0, allowHalfOpen: true },
      (conn) => {
        server = conn;
        conn.on('data', (d) => {
          seen.push(`data ${d.length}`);
          conn.pause();
        });
        conn.on('end', () => {
          seen.push('end');
          conn.end();
        });
      },
    );
    const socket = net.connect({ port: listener.port, host: '127.0.0.1', allowHalfOpen: true });
    f.clients.push(socket);
    socket.end('hello'); // data and FIN arrive together: one batch
    await until(() => seen.length > 0);
    await sleep(100);
    expect(seen).toEqual(['data 5']);
    server!.resume();
    await until(() => seen.length === 2);
    expect(seen).toEqual(['data 5', 'end']);
  });

  run(
    'a rejected async onConnection destroys that connection and reaches the listener',
    async () => {
      const reason = new Error('handler failed');
      const errors: IomuxError[] = [];
      let closedWith: IomuxError | undefined;
      const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, async (conn) => {
        conn.on('close', (err) => (closedWith = err));
        await sleep(1);
        throw reason;
      });
      listener.on('error', (err) => errors.push(err));
      const socket = await netConnect(listener.port);
      f.clients.push(socket);
      await new Promise<void>((resolve) =>
        socket.on('close', () => {
          resolve();
        }),
      );
      expect(errors).toHaveLength(1);
      expect(errors[0]!.code).toBe('IOMUX_HANDLER_REJECTED');
      expect(errors[0]!.cause).toBe(reason);
      expect(errors[0]!.message).toMatch(
        /onConnection of the listener on 127\.0\.0\.1:\d+ rejected: handler failed/,
      );
      await until(() => closedWith !== undefined);
      expect(closedWith).toBe(errors[0]);
      // The listener still serves.
      f.clients.push(await netConnect(listener.port));
      await until(() => errors.length === 2);
    },
  );

  run("without a listener 'error' the rejection reaches the reactor's 'error'", async () => {
    const errors: IomuxError[] = [];
    f.reactor.on('error', (err) => errors.push(err));
    const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, () =>
      Promise.reject(new Error('nope')),
    );
    const socket = await netConnect(listener.port);
    f.clients.push(socket);
    await until(() => errors.length === 1);
    expect(errors[0]!.code).toBe('IOMUX_HANDLER_REJECTED');
    await until(() => f.reactor.connectionCount() === 0);
  });

  run('for await reads with backpressure, byte-exact, and ends at FIN', async () => {
    const payload = pattern(2 * 1024 * 1024, 21);
    let result: { bytes: Buffer; pausedInBody: boolean; ended: boolean } | undefined;
    const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, async (conn) => {
      const parts: Buffer[] = [];
      let pausedInBody = true;
      for await (const chunk of conn) {
        parts.push(Buffer.from(chunk));
        if (!conn.isPaused) pausedInBody = false;
        await sleep(2); // a slow consumer: reading stays paused meanwhile
      }
      result = { bytes: Buffer.concat(parts), pausedInBody, ended: conn.readableEnded };
    });
    const socket = net.connect({ port: listener.port, host: '127.0.0.1' });
    f.clients.push(socket);
    socket.end(payload);
    await until(() => result !== undefined, 30_000, 'the loop to end');
    expect(result!.bytes.equals(payload)).toBe(true);
    expect(result!.pausedInBody).toBe(true);
    expect(result!.ended).toBe(true);
  });

  run('for await throws the error the connection closed with; break destroys it', async () => {
    const outcomes: string[] = [];
    const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, async (conn) => {
      try {
        for await (const chunk of conn) {
          if (chunk.toString().startsWith('stop')) break;
        }
        outcomes.push(`left, closed=${String(conn.closed)}`);
      } catch (err) {
        outcomes.push(`threw ${(err as IomuxError).code}`);
      }
    });
    const resetting = net.connect({ port: listener.port, host: '127.0.0.1' });
    f.clients.push(resetting);
    resetting.on('error', () => undefined);
    await new Promise<void>((resolve) => resetting.on('connect', resolve));
    resetting.write('hello');
    await sleep(50);
    resetting.resetAndDestroy();
    await until(() => outcomes.length === 1);
    expect(outcomes[0]).toBe('threw ECONNRESET');
    const stopping = net.connect({ port: listener.port, host: '127.0.0.1' });
    f.clients.push(stopping);
    const closed = new Promise<void>((resolve) =>
      stopping.on('close', () => {
        resolve();
      }),
    );
    stopping.on('error', () => undefined);
    stopping.write('stop');
    await until(() => outcomes.length === 2);
    expect(outcomes[1]).toBe('left, closed=true');
    await closed;
  });
});

// pause() at once also on the backend a runtime fallback moved the connection to.
const migrations: ['epoll' | 'io_uring', BackendName][] = [
  ['epoll', 'select'],
  ['io_uring', 'blocking_io'],
];
describe.each(migrations)('pause() after a runtime migration %s → %s', (from, to) => {
  const skip = fallbackSkip(from, to);

  it.skipIf(skip !== '')(
    `no data event follows pause()${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const fdsBefore = fdCount();
      const reactor = createReactor(
        { ioModel: from, retry: { fallback: [to] } },
        { env: {}, faults: { afterBytes: { [from]: 256 * 1024 } } },
      );
      const chunks: Buffer[] = [];
      let afterPause = 0;
      let server: Connection | undefined;
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        server = conn;
        conn.on('data', (d) => {
          if (conn.isPaused) afterPause += 1;
          chunks.push(Buffer.from(d));
          conn.pause();
        });
      });
      const payload = pattern(4 * 1024 * 1024, 9);
      const socket = await netConnect(listener.port);
      socket.write(payload);
      let received = 0;
      while (received < payload.length) {
        await until(() => chunks.length > 0, 10_000, 'data');
        const before = chunks.length;
        await sleep(5);
        expect(chunks.length).toBe(before);
        for (const c of chunks.splice(0)) {
          expect(c.equals(payload.subarray(received, received + c.length))).toBe(true);
          received += c.length;
        }
        server!.resume();
      }
      expect(reactor.backend).toBe(to);
      expect(afterPause).toBe(0);
      socket.destroy();
      await reactor.close();
      await until(() => fdCount() <= fdsBefore, 5000, 'fds');
    },
  );
});
