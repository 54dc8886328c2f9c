// Runtime fallback: the backend fails mid-stream and every socket moves to the fallback backend
// with no byte lost, duplicated or reordered.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  createReactor,
  type BackendName,
  type Connection,
  type FallbackRecord,
} from '../src/index.js';
import { backends, fdCount, pattern, until } from './helpers.js';

function echo(conn: Connection): void {
  conn.on('data', (chunk) => {
    if (!conn.write(chunk)) {
      conn.pause();
      conn.once('drain', () => {
        conn.resume();
      });
    }
  });
}

/** A client that streams `total` bytes in chunks and checks every echoed byte. */
function streamClient(
  port: number,
  seed: number,
  total: number,
): Promise<{ received: number; ok: boolean }> {
  const data = pattern(total, seed);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let received = 0;
    let ok = true;
    let sent = 0;
    const sendMore = (): void => {
      while (sent < total) {
        const end = Math.min(total, sent + 4096);
        const more = socket.write(data.subarray(sent, end));
        sent = end;
        if (!more) return;
      }
    };
    socket.on('connect', sendMore);
    socket.on('drain', sendMore);
    socket.on('data', (chunk: Buffer) => {
      if (!chunk.equals(data.subarray(received, received + chunk.length))) ok = false;
      received += chunk.length;
      if (received >= total) {
        socket.end();
        resolve({ received, ok });
      }
    });
    socket.on('error', reject);
  });
}

const pairs: ['epoll' | 'io_uring', BackendName, number][] = [
  ['epoll', 'select', 300],
  ['epoll', 'blocking_io', 1000],
  ['io_uring', 'select', 300],
  ['io_uring', 'blocking_io', 1000],
];

describe.each(pairs)('runtime fallback %s → %s', (from, to, connections) => {
  const a = backends.find((b) => b.name === from)!;
  const b = backends.find((x) => x.name === to)!;
  const skip = !a.available ? `${from}: ${a.cause}` : !b.available ? `${to}: ${b.cause}` : '';

  it.skipIf(skip !== '')(
    `migrates ${connections} streaming connections with every byte verified${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const fdsBefore = fdCount();
      const perConnection = 64 * 1024;
      const reactor = createReactor(
        { ioModel: from, retry: { fallback: [to] } },
        { env: {}, faults: { afterBytes: { [from]: (connections * perConnection) / 4 } } },
      );
      expect(reactor.backend).toBe(from);
      const fallbacks: FallbackRecord[] = [];
      reactor.on('fallback', (record) => fallbacks.push(record));
      const connectionErrors: unknown[] = [];
      const listener = await reactor.listen(
        { host: '127.0.0.1', port: 0, backlog: 2048 },
        (conn) => {
          conn.on('close', (err) => err && connectionErrors.push(err));
          echo(conn);
        },
      );
      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: connections }, (_, i) =>
          streamClient(listener.port, i + 1, perConnection),
        ),
      );
      const elapsed = performance.now() - started;
      expect(results.every((r) => r.ok && r.received === perConnection)).toBe(true);
      expect(connectionErrors).toEqual([]);
      expect(reactor.backend).toBe(to);
      expect(fallbacks).toHaveLength(1);
      const record = fallbacks[0]!;
      expect(record).toMatchObject({ backend: from, phase: 'runtime', cause: 'poll failed: EIO' });
      expect(record.migration?.to).toBe(to);
      expect(record.migration!.sockets).toBeGreaterThan(1); // the listener and live connections
      // Still serving after the move: a fresh connection is accepted on the new backend.
      const after = await streamClient(listener.port, 999, 1024);
      expect(after.ok).toBe(true);
      console.log(
        `runtime fallback ${from} → ${to}: ${connections} connections, ${connections * perConnection} bytes verified, ` +
          `${record.migration!.sockets} sockets moved in ${record.migration!.ms.toFixed(2)} ms, run took ${elapsed.toFixed(0)} ms`,
      );
      await reactor.close();
      await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
    },
  );
});

describe('runtime fallback with no successor', () => {
  const epoll = backends.find((b) => b.name === 'epoll')!;
  it.skipIf(!epoll.available)(
    'closes every connection with IOMUX_BACKEND_FAILED and emits error',
    async () => {
      const reactor = createReactor(
        { ioModel: 'epoll', retry: { fallback: ['epoll'] } },
        { env: {}, faults: { pollAfter: { epoll: 3 }, pollErrno: 'EBADF' } },
      );
      const errors: { code?: string }[] = [];
      reactor.on('error', (err) => errors.push(err));
      let closedWith: { code?: string } | undefined;
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        conn.on('close', (err) => (closedWith = err));
      });
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 5 && errors.length === 0; i += 1) {
        const s = net.connect({ port: listener.port, host: '127.0.0.1' });
        s.on('error', () => undefined);
        sockets.push(s);
        await new Promise((r) => setTimeout(r, 20));
      }
      await until(() => errors.length === 1);
      expect(errors[0]).toMatchObject({ code: 'IOMUX_BACKEND_FAILED', errno: 9 });
      if (closedWith !== undefined) expect(closedWith.code).toBe('IOMUX_BACKEND_FAILED');
      for (const s of sockets) s.destroy();
      await reactor.close();
    },
  );
});
