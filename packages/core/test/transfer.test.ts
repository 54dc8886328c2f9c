// conn.transfer(): live connections moved under load to a reactor in a worker thread, on every
// backend. Clients stream patterned bytes and check every echoed byte, so nothing may be lost,
// duplicated or reordered across the move: not the bytes read but not consumed (a paused
// connection), not the echo writes still queued, not the paused state. The handoff time (detach
// in one thread to adopt in the other) is recorded as a test figure.
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IomuxError, type BackendName, type Reactor } from '../src/index.js';
import {
  backends,
  backendTitle,
  echo,
  fdCount,
  reactorOn,
  streamClient,
  until,
} from './helpers.js';

const core = new URL('../dist/index.js', import.meta.url).href;
const fixture = new URL('./fixtures/transfer-worker.mjs', import.meta.url);

interface Adopted {
  type: 'adopted';
  key: number;
  ms: number;
  adoptMs: number;
  arrivedPaused: boolean;
  connections: number;
}

/** io_uring adopts tickets but cannot hand over a live socket: its moves start on epoll. */
const sourceOf = (name: string): BackendName =>
  name === 'io_uring' ? 'epoll' : (name as BackendName);

describe.each(backends)('conn.transfer: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const source = sourceOf(backend.name);
  let reactor: Reactor;
  let worker: Worker;
  let fdsBefore = 0;
  const adopted: Adopted[] = [];

  beforeEach(async () => {
    if (!backend.available) return;
    fdsBefore = fdCount();
    reactor = reactorOn(source); // the worker's reactor is on backend.name
    worker = new Worker(fixture, { workerData: { backend: backend.name, core } });
    worker.on('message', (message: Adopted | { type: string }) => {
      if (message.type === 'adopted') adopted.push(message as Adopted);
    });
    await new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.on('message', (message: { type: string }) => {
        if (message.type === 'ready') resolve();
      });
    });
  });

  afterEach(async () => {
    if (!backend.available) return;
    adopted.length = 0;
    const closed = new Promise<void>((resolve) => {
      worker.on('message', (message: { type: string }) => {
        if (message.type === 'closed') resolve();
      });
    });
    worker.postMessage({ type: 'close' });
    await closed;
    await worker.terminate();
    await reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
  });

  it(`runs here: ${backendTitle(backend)}`, () => {
    if (!backend.available) {
      expect(backend.cause).not.toBe('');
      return;
    }
    expect(reactor.backend).toBe(source);
  });

  // Only io_uring refuses; on the others the moves below start on the backend itself.
  (backend.name === 'io_uring' ? run : it.skip)(
    'io_uring only: transfer() is refused with EOPNOTSUPP, and the reactor serves on',
    async () => {
      const own = reactorOn('io_uring');
      try {
        const refusals: unknown[] = [];
        const listener = await own.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
          echo(conn);
          try {
            conn.transfer();
          } catch (err) {
            refusals.push(err);
          }
        });
        const client = streamClient(listener.port, 9, 256 * 1024, { endWhenDone: true });
        expect(await client.done).toEqual({ received: 256 * 1024, ok: true });
        expect(refusals).toHaveLength(1);
        expect((refusals[0] as IomuxError).code).toBe('EOPNOTSUPP');
      } finally {
        await own.close();
      }
    },
  );

  run(
    '8 streaming connections move mid-stream, from a data handler; every byte verified',
    async () => {
      const total = 2 << 20;
      let key = 0;
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        echo(conn);
        const moveAfter = 64 * 1024 + key * 8192;
        const onData = (): void => {
          if (conn.bytesRead < moveAfter) return;
          conn.off('data', onData);
          // Mid-batch, with echo writes possibly still queued: all of it goes with the ticket.
          const ticket = conn.transfer();
          worker.postMessage({ key: key++, ticket });
        };
        conn.on('data', onData);
      });
      const clients = Array.from({ length: 8 }, (_, i) =>
        streamClient(listener.port, 100 + i, total, { endWhenDone: true }),
      );
      const results = await Promise.all(clients.map((c) => c.done));
      for (const result of results) expect(result).toEqual({ received: total, ok: true });
      await until(() => adopted.length === 8, 5000, 'eight adoptions');
      expect(reactor.connectionCount()).toBe(0);
      const times = adopted.map((a) => a.ms).sort((a, b) => a - b);
      console.log(
        `[${source} → ${backend.name}] handoff (transfer → adopted in the worker) over 8 moves: ` +
          `median ${times[4]!.toFixed(3)} ms, max ${times[7]!.toFixed(3)} ms; ` +
          `adopt() alone: max ${Math.max(...adopted.map((a) => a.adoptMs)).toFixed(3)} ms`,
      );
      expect(times[7]).toBeLessThan(5000);
    },
  );

  run('a paused connection moves paused, with the bytes it had not consumed', async () => {
    const total = 1 << 20;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      echo(conn);
      conn.once('data', () => {
        conn.pause(); // the rest of this batch, and what follows, is held or left in the kernel
        setTimeout(() => {
          const ticket = conn.transfer();
          expect(ticket.paused).toBe(true);
          worker.postMessage({ key: 1, ticket });
        }, 30);
      });
    });
    const client = streamClient(listener.port, 7, total, { endWhenDone: true });
    expect(await client.done).toEqual({ received: total, ok: true });
    await until(() => adopted.length === 1, 5000, 'the adoption');
    expect(adopted[0]?.arrivedPaused).toBe(true);
  });

  run('transfer() of a closed or ended connection is refused with a typed error', async () => {
    const errors: IomuxError[] = [];
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.end();
      try {
        conn.transfer();
      } catch (err) {
        errors.push(err as IomuxError);
      }
      conn.destroy();
      try {
        conn.transfer();
      } catch (err) {
        errors.push(err as IomuxError);
      }
    });
    const client = streamClient(listener.port, 1, 1);
    await client.done;
    client.socket.destroy();
    await until(() => errors.length === 2, 5000, 'two refusals');
    expect(errors.map((e) => e.code)).toEqual(['IOMUX_INVALID_ARGUMENT', 'IOMUX_SOCKET_CLOSED']);
  });
});
