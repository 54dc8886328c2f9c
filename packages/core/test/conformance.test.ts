// The definition of "works": the same tests on every backend that can run here. A backend that
// cannot is skipped by name with its cause.
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Connection, Reactor, UdpSocket } from '../src/index.js';
import {
  backends,
  backendTitle,
  type BackpressureStats,
  echo,
  fdCount,
  howItEnds,
  netConnect,
  netRoundTrip,
  pattern,
  reactorOn,
  sleep,
  until,
  writeWithBackpressure,
} from './helpers.js';

describe.each(backends)('conformance: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  let reactor: Reactor;
  let fdsBefore = 0;
  const clients: net.Socket[] = [];

  beforeEach(() => {
    if (!backend.available) return;
    fdsBefore = fdCount();
    reactor = reactorOn(backend.name);
  });

  afterEach(async () => {
    if (!backend.available) return;
    for (const c of clients.splice(0)) c.destroy();
    await reactor.close();
    expect(reactor.closed).toBe(true);
    // Every socket, the kernel object and its wake-up fds are gone.
    await until(
      () => fdCount() <= fdsBefore,
      5000,
      `fd count back to ${fdsBefore} (now ${fdCount()})`,
    );
  });

  it(`runs here: ${backendTitle(backend)}`, () => {
    if (!backend.available) {
      expect(backend.cause).not.toBe('');
      return;
    }
    expect(reactor.backend).toBe(backend.name);
  });

  run('counts 100 connected clients (the spec test)', async () => {
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
    for (let i = 0; i < 100; i += 1) clients.push(await netConnect(listener.port));
    await until(() => reactor.connectionCount() === 100, 10_000, '100 connections');
    expect(reactor.connectionCount()).toBe(100);
    for (const c of clients.splice(0)) c.destroy();
    await until(() => reactor.connectionCount() === 0, 10_000, 'connections to close');
  });

  run.each([1, 64, 1024, 65_536, 1_048_576, 4 * 1_048_576])(
    'echoes %i bytes byte-exact',
    async (size) => {
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, echo);
      const payload = pattern(size, size);
      const echoed = await netRoundTrip(listener.port, payload);
      expect(echoed.length).toBe(size);
      expect(echoed.equals(payload)).toBe(true);
    },
  );

  // select(2) cannot watch fds past FD_SETSIZE (1024), and this process holds both ends.
  const concurrent = backend.name === 'select' ? 400 : 1000;
  run(`serves ${concurrent} concurrent connections`, async () => {
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, echo);
    const results = await Promise.all(
      Array.from({ length: concurrent }, (_, i) =>
        netRoundTrip(listener.port, pattern(256, i + 1)).then((b) => b.equals(pattern(256, i + 1))),
      ),
    );
    expect(results.filter(Boolean).length).toBe(concurrent);
    expect(reactor.stats().accepted).toBeGreaterThanOrEqual(concurrent);
  });

  run('applies backpressure to a slow reader and drains', async () => {
    const total = 16 * 1024 * 1024;
    const chunk = pattern(64 * 1024, 7);
    let stats: BackpressureStats | undefined;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      stats = writeWithBackpressure(conn, chunk, total);
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    socket.pause();
    await sleep(200); // the kernel buffers fill, the native queue reaches the high-water mark
    expect(stats?.sawFalse).toBe(true);
    let received = 0;
    let corrupt = false;
    const done = new Promise<void>((resolve) => socket.on('end', resolve));
    socket.on('data', (data: Buffer) => {
      for (let i = 0; i < data.length; i += 4096) {
        if (data[i] !== chunk[(received + i) % chunk.length]) corrupt = true;
      }
      received += data.length;
    });
    socket.resume();
    await done;
    expect(received).toBe(total);
    expect(corrupt).toBe(false);
    expect(stats!.drains).toBeGreaterThan(0);
    // Bounded memory: the queue never grew past the high-water mark plus one write.
    expect(stats!.maxQueued).toBeLessThanOrEqual(64 * 1024 + chunk.length);
  });

  run('half-close: the server answers after the client ends (allowHalfOpen)', async () => {
    await reactor.close();
    reactor = reactorOn(backend.name, { allowHalfOpen: true });
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      const parts: Buffer[] = [];
      conn.on('data', (d) => parts.push(Buffer.from(d)));
      conn.on('end', () => {
        expect(conn.readableEnded).toBe(true);
        conn.end(`got ${Buffer.concat(parts).toString()}`);
      });
    });
    const socket = net.connect({ port: listener.port, host: '127.0.0.1', allowHalfOpen: true });
    clients.push(socket);
    const reply: Buffer[] = [];
    socket.on('data', (d: Buffer) => reply.push(d));
    const ended = new Promise<void>((resolve) => socket.on('end', resolve));
    socket.end('ping');
    await ended;
    expect(Buffer.concat(reply).toString()).toBe('got ping');
  });

  run('ends our side after the peer ends by default', async () => {
    let closed: unknown = 'pending';
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('close', (err) => (closed = err));
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    const ended = new Promise<void>((resolve) => socket.on('end', resolve));
    socket.end();
    await ended;
    await until(() => closed !== 'pending');
    expect(closed).toBeUndefined();
    await until(() => reactor.connectionCount() === 0);
  });

  run('a write after the reactor ended the connection returns false, not a throw', async () => {
    const results: boolean[] = [];
    let server: Connection | undefined;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      server = conn;
      conn.on('data', (chunk) => results.push(conn.write(chunk)));
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    await until(() => server !== undefined);
    const closing = reactor.close(); // ends every connection for us, then waits for the peers
    expect(server!.writableEnded).toBe(true);
    socket.write('late data');
    await until(() => results.length > 0);
    expect(results).toEqual([false]);
    socket.end();
    await closing;
  });

  run('reports a peer reset as ECONNRESET', async () => {
    let error: { code?: string } | undefined | 'open' = 'open';
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('close', (err) => (error = err));
    });
    const socket = await netConnect(listener.port);
    await until(() => reactor.connectionCount() === 1);
    socket.resetAndDestroy();
    await until(() => error !== 'open');
    expect((error as { code?: string } | undefined)?.code).toBe('ECONNRESET');
  });

  // The bytes (and the FIN) a server sends right after accepting can reach the client's backend
  // in the same batch as the connect completion: they must still reach listeners attached once
  // connect() has resolved, as node:net holds data until a 'data' listener is attached.
  run('a connect()ed connection gets what the server sent at once, and its end', async () => {
    const server = net.createServer((socket) => socket.end('hello'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      for (let i = 0; i < 20; i += 1) {
        const conn = await reactor.connect({ host: '127.0.0.1', port });
        const parts: Buffer[] = [];
        conn.on('data', (d) => parts.push(d));
        const ended = new Promise<void>((resolve) => conn.once('end', resolve));
        await ended;
        expect(`${i}: ${Buffer.concat(parts).toString()}`).toBe(`${i}: hello`);
      }
    } finally {
      await new Promise<void>((r) =>
        server.close(() => {
          r();
        }),
      );
    }
  });

  // close(2) on a socket with unread input sends RST: the peer must not take a stream whose
  // input was thrown away for a clean end. `size` bytes arrive at a paused connection, sent
  // before or after it was accepted.
  async function destroyWithUnreadInput(size: number, beforeAccept: boolean): Promise<string> {
    let server: Connection | undefined;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      server = conn;
      conn.pause();
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    const outcome = howItEnds(socket);
    if (beforeAccept) socket.write(pattern(size, 21));
    await until(() => server !== undefined, 5000, 'the server to accept');
    if (!beforeAccept) socket.write(pattern(size, 22));
    await sleep(beforeAccept ? 20 : 50);
    server!.destroy();
    return outcome;
  }

  run('destroy() with unread input resets the peer (ECONNRESET)', async () => {
    expect(await destroyWithUnreadInput(1_048_576, true)).toBe('ECONNRESET');
  });

  // A few bytes the engine may already have taken from the kernel (into its inbox, or a
  // blocking_io reader's buffer) before the pause: they are unread all the same.
  run('destroy() with a few unread bytes resets the peer (ECONNRESET)', async () => {
    expect(await destroyWithUnreadInput(100, false)).toBe('ECONNRESET');
  });

  run('rejects a refused connect with ECONNREFUSED', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) =>
      server.close(() => {
        r();
      }),
    );
    await expect(reactor.connect({ host: '127.0.0.1', port })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
      syscall: 'connect',
    });
  });

  run('rejects a taken port with EADDRINUSE', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      await expect(
        reactor.listen({ host: '127.0.0.1', port }, () => undefined),
      ).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await new Promise<void>((r) =>
        server.close(() => {
          r();
        }),
      );
    }
  });

  run('flushes queued writes before FIN when ended', async () => {
    const payload = pattern(8 * 1024 * 1024, 3);
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.write(payload); // far beyond the socket buffer: most of it is queued natively
      conn.end();
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    await new Promise<void>((resolve) => socket.on('end', resolve));
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
  });

  run('close() flushes queued writes of open connections', async () => {
    const payload = pattern(4 * 1024 * 1024, 5);
    let accepted = false;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      accepted = true;
      conn.write(payload);
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    const ended = new Promise<void>((resolve) => socket.on('end', resolve));
    await until(() => accepted);
    const closing = reactor.close();
    await ended;
    socket.end();
    await closing;
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
  });

  run('pause() holds data back and resume() delivers it in order', async () => {
    const received: Buffer[] = [];
    let server: Connection | undefined;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      server = conn;
      conn.pause();
      conn.on('data', (d) => received.push(Buffer.from(d)));
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    await until(() => server !== undefined);
    const payload = pattern(200_000, 11);
    socket.write(payload);
    await sleep(150);
    expect(received.length).toBe(0);
    expect(server!.isPaused).toBe(true);
    server!.resume();
    await until(() => received.reduce((n, b) => n + b.length, 0) === payload.length);
    expect(Buffer.concat(received).equals(payload)).toBe(true);
  });

  run('server and client on the same reactor', async () => {
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, echo);
    const client = await reactor.connect({ host: '127.0.0.1', port: listener.port });
    expect(client.remotePort).toBe(listener.port);
    const payload = pattern(300_000, 13);
    const parts: Buffer[] = [];
    client.on('data', (d) => parts.push(Buffer.from(d)));
    client.write(payload);
    await until(() => parts.reduce((n, b) => n + b.length, 0) >= payload.length);
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
    expect(reactor.connectionCount()).toBe(2);
    client.end();
    await until(() => reactor.connectionCount() === 0);
  });

  run('timers and promises keep running while the reactor is busy', async () => {
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, echo);
    let ticks = 0;
    const interval = setInterval(() => (ticks += 1), 1);
    const payload = pattern(1024, 17);
    const deadline = Date.now() + 500;
    let roundTrips = 0;
    const clientsBusy = Array.from({ length: 8 }, async () => {
      while (Date.now() < deadline) {
        await netRoundTrip(listener.port, payload);
        roundTrips += 1;
      }
    });
    await Promise.all(clientsBusy);
    clearInterval(interval);
    expect(roundTrips).toBeGreaterThan(10);
    expect(ticks).toBeGreaterThan(20);
  });

  run('pollEvents() pumps events when automatic dispatch is stopped', async () => {
    reactor.stop();
    expect(reactor.isRunning).toBe(false);
    let accepted = 0;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, () => (accepted += 1));
    const socket = await netConnect(listener.port);
    clients.push(socket);
    await sleep(50);
    expect(accepted).toBe(0); // nothing is dispatched without a pump
    let dispatched = 0;
    for (let i = 0; i < 20 && accepted === 0; i += 1) dispatched += await reactor.pollEvents(50);
    expect(accepted).toBe(1);
    expect(dispatched).toBeGreaterThanOrEqual(1);
    const started = Date.now();
    expect(await reactor.pollEvents(30)).toBe(0); // nothing pending: waits the timeout, never blocks
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
  });

  run('writev sends thousands of buffers in order', async () => {
    const parts = Array.from({ length: 3000 }, (_, i) => Buffer.from(`${i},`));
    const expected = Buffer.concat(parts);
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.writev(parts);
      conn.end();
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    await new Promise<void>((resolve) => socket.on('end', resolve));
    expect(Buffer.concat(got).equals(expected)).toBe(true);
  });

  // POSIX: an fd_set is a bitmap, so the limit is the fd number (filled with /dev/null here).
  (backend.name === 'select' && process.platform !== 'win32' ? run : it.skip)(
    'select refuses fds past FD_SETSIZE with a clear error',
    async () => {
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, echo);
      const filler: number[] = [];
      try {
        while (filler.length < 1100) filler.push(openSync('/dev/null', 'r'));
        await expect(reactor.connect({ port: listener.port })).rejects.toThrow(
          /connect ERANGE .*FD_SETSIZE \(1024\)/,
        );
      } finally {
        for (const fd of filler) closeSync(fd);
      }
      const back = await netRoundTrip(listener.port, Buffer.from('still serving'));
      expect(back.toString()).toBe('still serving');
    },
  );

  // Windows: Winsock's fd_set is an array of FD_SETSIZE (raised to 1024) sockets, one of them the
  // watcher's wake-up socket, so the limit is how many sockets the reactor holds.
  (backend.name === 'select' && process.platform === 'win32' ? run : it.skip)(
    'select on Winsock holds 1023 sockets and refuses the next with a clear error',
    async () => {
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, echo);
      const filler: UdpSocket[] = [];
      try {
        while (filler.length < 1022) filler.push(await reactor.udp({ host: '127.0.0.1', port: 0 }));
        await expect(reactor.connect({ port: listener.port })).rejects.toThrow(
          /connect ERANGE .*more than 1023 sockets.*FD_SETSIZE \(1024\)/,
        );
      } finally {
        for (const socket of filler) socket.close();
      }
      const back = await netRoundTrip(listener.port, Buffer.from('still serving'));
      expect(back.toString()).toBe('still serving');
    },
  );

  run('rejects API misuse with typed errors', async () => {
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, echo);
    await expect(reactor.listen({ port: 70000 }, () => undefined)).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
    });
    const client = await reactor.connect({ port: listener.port });
    const errors: unknown[] = [];
    client.on('error', (err) => errors.push(err));
    client.end();
    // As node:net: reported through 'error' (and 'close'), not thrown.
    expect(client.write('x')).toBe(false);
    await until(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'IOMUX_WRITE_AFTER_END' });
  });
});
