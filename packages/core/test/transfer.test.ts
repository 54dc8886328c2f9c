// conn.transfer(): live connections moved under load to a reactor in a worker thread, on every
// backend, io_uring included (its per-socket hand-over cancels one socket's operations and keeps
// every other socket's completions), and on io_uring also with tiny rings and in single-shot mode.
// Clients stream patterned bytes and check every echoed byte, so nothing may be lost, duplicated
// or reordered across the move: not the bytes read but not consumed (a paused connection), not
// the echo writes still queued, not the paused state; connections that stay keep streaming. The
// handoff time (detach in one thread to adopt in the other) is recorded as a test figure.
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

/** A reactor on `name` in this thread and a worker thread whose reactor adopts every ticket. */
interface Pair {
  reactor: Reactor;
  worker: Worker;
  adopted: Adopted[];
}

/**
 * Before each test: a reactor on `name` (with the tuning variables in `env`) and a worker thread
 * with a reactor on the same backend and tuning; after it, both closed and no fd left.
 */
function pairPerTest(name: BackendName, available: boolean, env: NodeJS.ProcessEnv = {}): Pair {
  const pair = { adopted: [] } as unknown as Pair;
  let fdsBefore = 0;
  beforeEach(async () => {
    if (!available) return;
    fdsBefore = fdCount();
    pair.reactor = reactorOn(name, { env });
    pair.worker = new Worker(fixture, { workerData: { backend: name, core, env } });
    pair.worker.on('message', (message: Adopted | { type: string }) => {
      if (message.type === 'adopted') pair.adopted.push(message as Adopted);
    });
    await new Promise<void>((resolve, reject) => {
      pair.worker.once('error', reject);
      pair.worker.on('message', (message: { type: string }) => {
        if (message.type === 'ready') resolve();
      });
    });
  });
  afterEach(async () => {
    if (!available) return;
    pair.adopted.length = 0;
    const closed = new Promise<void>((resolve) => {
      pair.worker.on('message', (message: { type: string }) => {
        if (message.type === 'closed') resolve();
      });
    });
    pair.worker.postMessage({ type: 'close' });
    await closed;
    await pair.worker.terminate();
    await pair.reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
  });
  return pair;
}

/**
 * Eight streaming connections move mid-stream from a data handler while four others stay and
 * go on streaming on the source reactor; every echoed byte of all twelve is verified.
 */
async function moveUnderLoad(pair: Pair, label: string): Promise<void> {
  const { reactor, worker, adopted } = pair;
  const total = 2 << 20;
  let accepted = 0;
  let key = 0;
  const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
    echo(conn);
    if (accepted++ % 3 === 2) return; // every third connection stays here
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
  const clients = Array.from({ length: 12 }, (_, i) =>
    streamClient(listener.port, 100 + i, total, { endWhenDone: true }),
  );
  const results = await Promise.all(clients.map((c) => c.done));
  for (const result of results) expect(result).toEqual({ received: total, ok: true });
  await until(() => adopted.length === 8, 5000, 'eight adoptions');
  await until(() => reactor.connectionCount() === 0, 5000, 'the four staying connections closed');
  const times = adopted.map((a) => a.ms).sort((a, b) => a - b);
  console.log(
    `[${label}] handoff (transfer → adopted in the worker) over 8 moves: ` +
      `median ${times[4]!.toFixed(3)} ms, max ${times[7]!.toFixed(3)} ms; ` +
      `adopt() alone: max ${Math.max(...adopted.map((a) => a.adoptMs)).toFixed(3)} ms`,
  );
  expect(times[7]).toBeLessThan(5000);
}

describe.each(backends)('conn.transfer: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const pair = pairPerTest(backend.name, backend.available);

  it(`runs here: ${backendTitle(backend)}`, () => {
    if (!backend.available) {
      expect(backend.cause).not.toBe('');
      return;
    }
    expect(pair.reactor.backend).toBe(backend.name);
  });

  run(
    '8 streaming connections move mid-stream from a data handler, 4 stay; every byte verified',
    async () => {
      await moveUnderLoad(pair, `${backend.name} → ${backend.name}`);
    },
  );

  run('a paused connection moves paused, with the bytes it had not consumed', async () => {
    const total = 1 << 20;
    const listener = await pair.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      echo(conn);
      conn.once('data', () => {
        conn.pause(); // the rest of this batch, and what follows, is held or left in the kernel
        setTimeout(() => {
          const ticket = conn.transfer();
          expect(ticket.paused).toBe(true);
          pair.worker.postMessage({ key: 1, ticket });
        }, 30);
      });
    });
    const client = streamClient(listener.port, 7, total, { endWhenDone: true });
    expect(await client.done).toEqual({ received: total, ok: true });
    await until(() => pair.adopted.length === 1, 5000, 'the adoption');
    expect(pair.adopted[0]?.arrivedPaused).toBe(true);
  });

  run('transfer() of a closed or ended connection is refused with a typed error', async () => {
    const errors: IomuxError[] = [];
    const listener = await pair.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
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

const iouring = backends.find((b) => b.name === 'io_uring');
const iouringAvailable = iouring?.available ?? false;

// Small rings force the SQ-full and CQ-overflow paths while a hand-over sorts completions;
// single-shot mode re-arms a receive per completion, so more operations are in flight to cancel.
const tunings: { title: string; env: NodeJS.ProcessEnv }[] = [
  {
    title: 'tiny rings (SQ 4, CQ 8, 64 buffers)',
    env: {
      IOMUX_IOURING_SQ_ENTRIES: '4',
      IOMUX_IOURING_CQ_ENTRIES: '8',
      IOMUX_IOURING_BUF_COUNT: '64',
    },
  },
  { title: 'single-shot operations', env: { IOMUX_IOURING_SINGLESHOT: '1' } },
  {
    title: 'tiny rings and single-shot operations',
    env: {
      IOMUX_IOURING_SQ_ENTRIES: '4',
      IOMUX_IOURING_CQ_ENTRIES: '8',
      IOMUX_IOURING_BUF_COUNT: '64',
      IOMUX_IOURING_SINGLESHOT: '1',
    },
  },
];

describe.each(tunings)('conn.transfer on io_uring with $title', ({ title, env }) => {
  const run = iouringAvailable ? it : it.skip;
  const pair = pairPerTest('io_uring', iouringAvailable, env);

  run('8 connections move mid-stream, 4 stay; every byte verified', async () => {
    await moveUnderLoad(pair, `io_uring (${title})`);
  });
});

describe('conn.transfer on io_uring when the kernel does not give the operations back', () => {
  const run = iouringAvailable ? it : it.skip;

  run('transfer() throws ETIMEDOUT and the connection serves on, byte-exact', async () => {
    const fdsBefore = fdCount();
    const reactor = reactorOn('io_uring', { faults: { handOverTimeout: true } });
    try {
      const refusals: unknown[] = [];
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        echo(conn);
        let attempts = 0;
        const onData = (): void => {
          if (conn.bytesRead < 64 * 1024) return;
          // Twice, the second time while the first cancels may still be on their way.
          for (let i = 0; i < 2; i++) {
            try {
              conn.transfer();
            } catch (err) {
              refusals.push(err);
            }
          }
          if (++attempts === 2) conn.off('data', onData);
        };
        conn.on('data', onData);
      });
      // Four at once, so a batch holds several DATA records of one connection: those after the
      // refused transfer() must still reach it.
      const clients = Array.from({ length: 4 }, (_, i) =>
        streamClient(listener.port, 9 + i, 2 << 20, { endWhenDone: true }),
      );
      for (const client of clients)
        expect(await client.done).toEqual({ received: 2 << 20, ok: true });
      expect(refusals.length).toBeGreaterThanOrEqual(16);
      for (const err of refusals) {
        expect(err).toBeInstanceOf(IomuxError);
        expect((err as IomuxError).code).toBe('ETIMEDOUT');
      }
      await until(() => reactor.connectionCount() === 0, 5000, 'the connection closed');
    } finally {
      await reactor.close();
    }
    await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
  });
});
