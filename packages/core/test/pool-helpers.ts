// What the WorkerPool test files share: their fixtures, pools closed after each test, and
// settled outcomes for compact assertions.
import { afterEach } from 'vitest';
import { IomuxError } from '../src/index.js';
import { WorkerPool, type WorkerPoolOptions } from '../src/worker-pool.js';

export const fixture = (name: string): URL => new URL(`./fixtures/${name}`, import.meta.url);
export const WORKER = fixture('pool-worker.mjs');

const pools: WorkerPool[] = [];
afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.close();
});

/** Closes `created` after the current test. */
export function closeAfterTest(created: WorkerPool): WorkerPool {
  pools.push(created);
  return created;
}

/** A pool of the test worker (2 threads unless `options` say otherwise), closed after the test. */
export function pool(options: WorkerPoolOptions = {}): WorkerPool {
  return closeAfterTest(new WorkerPool({ filename: WORKER, size: 2, ...options }));
}

/** Settles a promise into its value or its rejection's code and message. */
export function outcome(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => ({ value }),
    (err: unknown) => ({
      code: (err as { code?: string }).code,
      message: (err as Error).message,
      typed: err instanceof IomuxError,
    }),
  );
}
