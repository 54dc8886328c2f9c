// Traps of mixing a tick loop with ordinary I/O, on every backend that can run here: when a
// runTicks loop ends, a reactor left in manual dispatch goes back to automatic dispatch; the
// first offload() from a tick does not start the worker pool's threads.
import { describe, expect, it } from 'vitest';
import type {} from '../src/index.js';
import { backends, reactorOn, useBackendFixture } from './helpers.js';

const WORKER = new URL('./fixtures/pool-worker.mjs', import.meta.url);

describe.each(backends)('hybrid traps: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const f = useBackendFixture(backend);

  run('after a runTicks loop ends, dispatch resumes: a later connect() completes', async () => {
    const listener = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
    f.reactor.stop(); // manual dispatch: the loop pumps I/O between ticks
    let ticks = 0;
    const loop = f.reactor.runTicks(
      () => {
        ticks += 1;
      },
      { hz: 100, maxTicks: 3 },
    );
    await loop.done;
    expect(ticks).toBe(3);
    expect(f.reactor.isRunning).toBe(true);
    // Nothing pumps by hand now: the connect completes only because dispatch resumed.
    const conn = await f.reactor.connect({ port: listener.port, timeoutMs: 5000 });
    expect(conn.closed).toBe(false);
    conn.destroy();
  });

  run('a loop ended while another runs leaves manual dispatch to the newer one', async () => {
    f.reactor.stop();
    const first = f.reactor.runTicks(() => undefined, { hz: 100 });
    const second = f.reactor.runTicks(() => undefined, { hz: 100 });
    first.stop();
    await first.done;
    expect(f.reactor.isRunning).toBe(false); // the second loop still pumps
    second.stop();
    await second.done;
    expect(f.reactor.isRunning).toBe(true);
  });

  run(
    'the first offload() inside a tick starts no thread: the pool started with the reactor',
    async () => {
      const reactor = reactorOn(backend.name, { workers: { filename: WORKER, size: 2 } });
      try {
        const pool = reactor.workerPool;
        expect(pool?.stats().threads).toBe(2); // createReactor started them
        expect(await reactor.workersReady()).toBe(pool);
        reactor.stop();
        let inTick: { before: number; after: number; samePool: boolean } | undefined;
        let result: Promise<number> | undefined;
        const loop = reactor.runTicks(
          () => {
            if (result !== undefined) return;
            const before = pool!.stats().threads;
            result = reactor.offload<number>('add', { a: 2, b: 3 });
            inTick = {
              before,
              after: pool!.stats().threads,
              samePool: reactor.workerPool === pool,
            };
          },
          { hz: 100, maxTicks: 3 },
        );
        await loop.done;
        expect(inTick).toEqual({ before: 2, after: 2, samePool: true });
        expect(await result).toBe(5);
      } finally {
        await reactor.close();
      }
    },
  );
});
