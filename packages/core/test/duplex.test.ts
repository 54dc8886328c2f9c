// toDuplex(conn) against Node's own stream expectations, on every backend: pipeline and
// finished, consumers of an async-iterable stream, backpressure both ways, half-close, destroy
// and error propagation, and write callbacks that are always called.
import net from 'node:net';
import { Readable, finished, pipeline } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { finished as finishedPromise, pipeline as pipelinePromise } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  IomuxError,
  toDuplex,
  type Connection,
  type ConnectionDuplex,
  type DuplexOptions,
} from '../src/index.js';
import { backends, netConnect, netRoundTrip, pattern, until } from './helpers.js';
import { reactorPerTest } from './reactor-per-test.js';

/** Yields `data` in `chunkSize` pieces, for Readable.from. */
function* pieces(data: Buffer, chunkSize: number): Generator<Buffer> {
  for (let at = 0; at < data.length; at += chunkSize) yield data.subarray(at, at + chunkSize);
}

/** Resolves with everything a node:net socket receives until the peer ends. */
function collect(socket: net.Socket): Promise<Buffer> {
  return buffer(socket);
}

describe.each(backends)('toDuplex: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const suite = reactorPerTest(backend);
  const { closers } = suite;

  /** Listens; each accepted connection is wrapped and handed to `serve`. */
  async function serveDuplex(
    serve: (socket: ConnectionDuplex, conn: Connection) => void,
    options?: DuplexOptions,
  ): Promise<number> {
    const listener = await suite.reactor.listen(
      { host: '127.0.0.1', port: 0, allowHalfOpen: options?.allowHalfOpen ?? false },
      (conn) => {
        serve(toDuplex(conn, options), conn);
      },
    );
    return listener.port;
  }

  /** A node:net server whose connections go to `serve`, on an ephemeral port. */
  async function netServer(serve: (socket: net.Socket) => void): Promise<number> {
    const server = net.createServer(serve);
    closers.push(() => server.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  run('pipeline(socket, socket) echoes 4 MiB byte-exact and closes cleanly', async () => {
    const closed: (Error | null | undefined)[] = [];
    const port = await serveDuplex((socket) => {
      pipeline(socket, socket, (err) => closed.push(err));
    });
    const payload = pattern(4 << 20, 7);
    const echoed = await netRoundTrip(port, payload);
    expect(echoed.equals(payload)).toBe(true);
    await until(() => closed.length === 1, 5000, 'the pipeline to finish');
    expect(closed[0]).toBeUndefined();
  });

  run('a client duplex: Readable.from → socket, socket → a consumer, byte-exact', async () => {
    const port = await netServer((socket) => socket.pipe(socket));
    const conn = await suite.reactor.connect({ host: '127.0.0.1', port });
    const socket = toDuplex(conn);
    const payload = pattern(3 << 20, 11);
    const [echoed] = await Promise.all([
      buffer(socket),
      pipelinePromise(Readable.from(pieces(payload, 10_000)), socket),
    ]);
    expect(echoed.equals(payload)).toBe(true);
    await finishedPromise(socket);
    expect(socket.destroyed).toBe(true);
    await until(() => conn.closed, 5000, 'the connection to close');
  });

  run('for await over the socket reads every byte in order', async () => {
    const port = await serveDuplex(
      (socket) => {
        void (async () => {
          const parts: Buffer[] = [];
          // destroyOnReturn false: the loop's end must not destroy the writable side too.
          for await (const chunk of socket.iterator({ destroyOnReturn: false }))
            parts.push(chunk as Buffer);
          socket.end(Buffer.from(String(Buffer.concat(parts).length)));
        })();
      },
      { allowHalfOpen: true },
    );
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    const payload = pattern(1 << 20, 3);
    client.end(payload);
    expect((await collect(client)).toString()).toBe(String(payload.length));
  });

  run(
    'a full readable buffer pauses the connection; reading resumes it, nothing lost',
    async () => {
      let server: ConnectionDuplex | undefined;
      let conn: Connection | undefined;
      const port = await serveDuplex((socket, c) => {
        server = socket;
        conn = c;
      });
      const client = await netConnect(port);
      closers.push(() => client.destroy());
      const payload = pattern(2 << 20, 5);
      client.end(payload);
      // Nobody reads: once the stream's buffer is full the connection stops reading.
      await until(() => conn?.isPaused === true, 10_000, 'the connection to pause');
      expect(server?.readableLength).toBeGreaterThanOrEqual(64 * 1024);
      expect(server?.readableLength).toBeLessThan(payload.length);
      const got = await buffer(server!);
      expect(got.equals(payload)).toBe(true);
    },
  );

  run('write() returns false above the high-water mark and drains in order', async () => {
    let server: ConnectionDuplex | undefined;
    const port = await serveDuplex((socket) => {
      server = socket;
    });
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    client.pause(); // the peer reads nothing for now
    await until(() => server !== undefined, 5000, 'the accept');
    const socket = server!;
    const payload = pattern(8 << 20, 9);
    let callbacks = 0;
    let refused = 0;
    for (const piece of pieces(payload, 256 * 1024)) {
      if (!socket.write(piece, () => (callbacks += 1))) refused += 1;
    }
    socket.end();
    expect(refused).toBeGreaterThan(0);
    const received = collect(client);
    client.resume();
    expect((await received).equals(payload)).toBe(true);
    expect(callbacks).toBe(32);
  });

  run('stream.finished reports the end, and close follows once both sides ended', async () => {
    const events: string[] = [];
    let finishedError: Error | null | undefined = null;
    const port = await serveDuplex((socket) => {
      socket.resume();
      socket.on('end', () => events.push('end'));
      socket.on('close', () => events.push('close'));
      finished(socket, (err) => {
        finishedError = err;
        events.push('finished');
      });
    });
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    client.end('bye');
    await collect(client); // the server's FIN follows ours (allowHalfOpen false)
    await until(() => events.includes('close'), 5000, 'close');
    expect(events.slice(0, 1)).toEqual(['end']);
    expect(finishedError).toBeUndefined();
  });

  run('allowHalfOpen: the socket stays writable after the peer ended', async () => {
    const port = await serveDuplex(
      (socket) => {
        const parts: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => parts.push(chunk));
        socket.on('end', () => {
          expect(socket.writable).toBe(true);
          socket.end(Buffer.concat(parts).reverse());
        });
      },
      { allowHalfOpen: true },
    );
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    client.end(Buffer.from('abcdef'));
    expect((await collect(client)).toString()).toBe('fedcba');
  });

  run('allowHalfOpen on a connection that ends itself at FIN is refused', async () => {
    const errors: unknown[] = [];
    const listener = await suite.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      try {
        toDuplex(conn, { allowHalfOpen: true });
      } catch (err) {
        errors.push(err);
        conn.destroy();
      }
    });
    const client = await netConnect(listener.port);
    closers.push(() => client.destroy());
    await until(() => errors.length === 1, 5000, 'the refusal');
    expect(errors[0]).toBeInstanceOf(IomuxError);
    expect((errors[0] as IomuxError).code).toBe('IOMUX_INVALID_ARGUMENT');
    expect((errors[0] as IomuxError).message).toMatch(/allowHalfOpen/);
  });

  run('the default follows the connection: half-open when its listener allows it', async () => {
    let halfOpen: boolean | undefined;
    const listener = await suite.reactor.listen(
      { host: '127.0.0.1', port: 0, allowHalfOpen: true },
      (conn) => {
        const socket = toDuplex(conn);
        halfOpen = socket.allowHalfOpen;
        socket.destroy();
      },
    );
    const client = await netConnect(listener.port);
    closers.push(() => client.destroy());
    await until(() => halfOpen !== undefined, 5000, 'the accept');
    expect(halfOpen).toBe(true);
  });

  run('a reset from the peer destroys the socket with ECONNRESET', async () => {
    const errors: (Error | null | undefined)[] = [];
    let server: ConnectionDuplex | undefined;
    const port = await serveDuplex((socket) => {
      server = socket;
      socket.resume();
      finished(socket, (err) => errors.push(err));
    });
    const client = await netConnect(port);
    await until(() => server !== undefined, 5000, 'the accept');
    client.resetAndDestroy();
    await until(() => errors.length === 1, 5000, 'finished to report the reset');
    expect((errors[0] as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    expect(server?.destroyed).toBe(true);
  });

  run('destroy() closes the connection; the peer sees it', async () => {
    let conn: Connection | undefined;
    const port = await serveDuplex((socket, c) => {
      conn = c;
      socket.destroy();
    });
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    await collect(client).catch(() => Buffer.alloc(0));
    await until(() => conn?.closed === true, 5000, 'the connection to close');
    expect(suite.reactor.connectionCount()).toBe(0);
  });

  run('a destroy with an error reaches the stream error handlers', async () => {
    const seen: string[] = [];
    const port = await serveDuplex((socket) => {
      socket.on('error', (err) => seen.push(err.message));
      socket.destroy(new Error('protocol violation'));
    });
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    await collect(client).catch(() => Buffer.alloc(0));
    await until(() => seen.length === 1, 5000, 'the error');
    expect(seen).toEqual(['protocol violation']);
  });

  run('a write waiting for drain is called back with an error when the peer resets', async () => {
    let server: ConnectionDuplex | undefined;
    const port = await serveDuplex((socket) => {
      server = socket;
      socket.on('error', () => undefined);
    });
    const client = await netConnect(port);
    client.pause();
    await until(() => server !== undefined, 5000, 'the accept');
    const socket = server!;
    const results: (Error | null | undefined)[] = [];
    // More than the kernel buffers and the connection's high-water mark take: the last
    // callbacks wait for 'drain', which never comes.
    for (const piece of pieces(pattern(32 << 20, 1), 1 << 20))
      socket.write(piece, (err) => results.push(err));
    await until(() => socket.writableLength > 0, 5000, 'writes to wait');
    client.resetAndDestroy();
    await until(() => results.length === 32, 10_000, 'every write callback');
    expect(results.some((err) => err instanceof Error)).toBe(true);
    expect(socket.destroyed).toBe(true);
  });

  run('socket-like members: addresses (kept after close), bytes, readyState', async () => {
    let server: ConnectionDuplex | undefined;
    const port = await serveDuplex((socket) => {
      server = socket;
      socket.resume();
    });
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    await until(() => server !== undefined, 5000, 'the accept');
    const socket = server!;
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(socket.remotePort).toBe(client.localPort);
    expect(socket.remoteFamily).toBe('IPv4');
    expect(socket.localPort).toBe(port);
    expect(socket.address()).toEqual({ address: '127.0.0.1', family: 'IPv4', port });
    expect(socket.readyState).toBe('open');
    expect(socket.connecting).toBe(false);
    client.write('12345');
    await until(() => socket.bytesRead === 5, 5000, 'five bytes');
    const clientPort = client.localPort;
    client.destroy();
    await until(() => socket.destroyed, 5000, 'the close');
    expect(socket.remotePort).toBe(clientPort);
    expect(socket.readyState).toBe('closed');
  });

  run(
    'setNoDelay / setKeepAlive reach the connection; resetAndDestroy resets the peer',
    async () => {
      const port = await serveDuplex((socket) => {
        expect(socket.setNoDelay(true)).toBe(socket);
        expect(socket.setKeepAlive(true, 1000)).toBe(socket);
        expect(socket.connection.noDelay).toBe(true);
        socket.resetAndDestroy();
        expect(socket.destroyed).toBe(true);
      });
      const client = net.connect(port, '127.0.0.1');
      closers.push(() => client.destroy());
      const error = await new Promise<NodeJS.ErrnoException>((resolve) =>
        client.once('error', resolve),
      );
      expect(error.code).toBe('ECONNRESET');
    },
  );

  run('setTimeout emits timeout on an idle socket; 0 turns it off', async () => {
    let server: ConnectionDuplex | undefined;
    let timeouts = 0;
    const port = await serveDuplex((socket) => {
      server = socket;
      socket.resume();
      socket.setTimeout(50, () => {
        timeouts += 1;
        socket.setTimeout(0);
        socket.end();
      });
    });
    const client = await netConnect(port);
    closers.push(() => client.destroy());
    await collect(client);
    expect(timeouts).toBe(1);
    expect(server?.writableEnded).toBe(true);
  });
});
