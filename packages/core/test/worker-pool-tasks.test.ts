// Per-task controls of WorkerPool and Reactor.offload: start-up ahead of the first task
// (ready()), deadlines (timeoutMs) and unknown task names.
import { describe, expect, it } from 'vitest';
import type { WorkerPool } from '../src/worker-pool.js';
import { backends, reactorOn, until } from './helpers.js';
import { fixture, outcome, pool, WORKER } from './pool-helpers.js';

/** The thread ids of `n` tasks run at once (on n threads when the pool has n idle ones). */
async function threadIds(p: WorkerPool, n: number): Promise<Set<number>> {
  return new Set(
    await Promise.all(Array.from({ length: n }, () => p.run<number>('whoami', { ms: 100 }))),
  );
}

describe('WorkerPool.ready()', () => {
  it('the constructor starts size.min threads; ready() resolves once they loaded the module', async () => {
    const p = pool({ size: 2 });
    expect(p.stats().threads).toBe(2); // before any run()
    await p.ready();
    expect(p.stats().threads).toBe(2);
    expect((await threadIds(p, 2)).size).toBe(2);
    expect(p.stats().threads).toBe(2); // no thread was started for these tasks
    await p.ready(); // settled: resolves again at once
  });

  it('rejects with IOMUX_WORKER_FAILED when a thread fails while loading the module', async () => {
    const p = pool({ filename: fixture('pool-worker-broken.mjs'), size: 1 });
    const errors: Error[] = [];
    p.on('error', (err) => errors.push(err));
    await expect(p.ready()).rejects.toMatchObject({
      code: 'IOMUX_WORKER_FAILED',
      message: expect.stringMatching(/broken worker module/) as string,
    });
  });

  it('rejects with IOMUX_POOL_CLOSED after close()', async () => {
    const p = pool({ size: 1 });
    await p.close();
    await expect(p.ready()).rejects.toMatchObject({ code: 'IOMUX_POOL_CLOSED' });
  });
});

describe('WorkerPool: timeoutMs', () => {
  it('a busy loop times out with IOMUX_TASK_TIMEOUT; its thread is replaced, other tasks complete', async () => {
    const p = pool({ size: 2, maxQueue: 10 });
    await p.ready();
    const original = await threadIds(p, 2);
    expect(original.size).toBe(2);

    const spinning = outcome(p.run('spin', undefined, { timeoutMs: 300 }));
    const sibling = p.run<number>('whoami', { ms: 800 }, { timeoutMs: 60_000 });
    const queued = p.run<number>('add', { a: 20, b: 22 });
    expect(p.stats()).toMatchObject({ running: 2, queued: 1 });

    expect(await spinning).toEqual({
      code: 'IOMUX_TASK_TIMEOUT',
      message: expect.stringContaining('task "spin"') as string,
      typed: true,
    });
    expect(await queued).toBe(42);
    const siblingThread = await sibling;
    expect(original.has(siblingThread)).toBe(true);

    // The terminated thread is gone and a new one took its place: the pool serves on two.
    await until(() => p.stats().threads === 2, 10_000, 'the replacement thread');
    await p.whenReady();
    const after = await threadIds(p, 2);
    expect(after.size).toBe(2);
    expect(after.has(siblingThread)).toBe(true);
    expect([...after].filter((id) => !original.has(id))).toHaveLength(1);
    expect(await p.run('add', { a: 1, b: 2 })).toBe(3);
    expect(p.stats()).toMatchObject({ failed: 1, running: 0, queued: 0 });
  });

  it('a task still queued at its deadline is dropped; the running one keeps its thread', async () => {
    const p = pool({ size: 1, maxQueue: 10 });
    await p.ready();
    const [thread] = await threadIds(p, 1);
    const running = p.run<number>('whoami', { ms: 400 });
    const queued = outcome(p.run('add', { a: 1, b: 1 }, { timeoutMs: 50 }));
    expect(await queued).toMatchObject({ code: 'IOMUX_TASK_TIMEOUT', typed: true });
    expect(p.stats()).toMatchObject({ running: 1, queued: 0 });
    expect(await running).toBe(thread);
    expect(await p.run<number>('whoami', { ms: 0 })).toBe(thread);
  });

  it('a task that settles before its deadline is not affected by it', async () => {
    const p = pool({ size: 1 });
    expect(await p.run('sleep', { ms: 20, value: 'in time' }, { timeoutMs: 5000 })).toBe('in time');
    await expect(p.run('fail', { message: 'own error' }, { timeoutMs: 5000 })).rejects.toThrow(
      'own error',
    );
  });

  it('rejects a timeoutMs that is not a finite number > 0 with IOMUX_INVALID_ARGUMENT', async () => {
    const p = pool({ size: 1 });
    for (const timeoutMs of [0, -1, Number.NaN, Infinity, '10' as unknown as number])
      await expect(p.run('add', { a: 1, b: 1 }, { timeoutMs })).rejects.toMatchObject({
        code: 'IOMUX_INVALID_ARGUMENT',
        message: expect.stringContaining('timeoutMs') as string,
      });
    expect(p.stats().completed).toBe(0);
  });
});

describe('WorkerPool: unknown task names', () => {
  it('rejects with IOMUX_UNKNOWN_TASK naming the task and the module, listing its exports', async () => {
    const p = pool({ size: 1 });
    const result = await outcome(p.run('nope', 1));
    expect(result).toMatchObject({ code: 'IOMUX_UNKNOWN_TASK', typed: true });
    const { message } = result as { message: string };
    expect(message).toContain('"nope"');
    expect(message).toContain(new URL(WORKER).pathname);
    expect(message).toMatch(
      /its function exports: add, affinity, burn, default, fail, inspect, makeBuffer/,
    );
    expect(await p.run('add', { a: 2, b: 2 })).toBe(4); // the pool serves on
  });

  it('names a per-task module and its own exports', async () => {
    const p = pool({ size: 1 });
    const other = fixture('pool-worker-other.mjs');
    const result = (await outcome(p.run('add', 1, { filename: other }))) as { message: string };
    expect(result).toMatchObject({ code: 'IOMUX_UNKNOWN_TASK' });
    expect(result.message).toContain(new URL(other).pathname);
    // Only functions are tasks: the constant export is not listed.
    expect(result.message).toMatch(/its function exports: double$/);
    expect(await p.run('double', 21, { filename: other })).toBe(42);
  });
});

describe('WorkerPool: unknown task names behind long tasks', () => {
  it('still rejects with IOMUX_UNKNOWN_TASK when the exports cannot be listed in time', async () => {
    const p = pool({ size: 1, maxQueue: 10 });
    await p.ready();
    const unknown = outcome(p.run('nope', 1));
    // Queued before the listing of the exports: it holds the only thread past the listing's 2 s.
    const long = p.run<number>('whoami', { ms: 3500 });
    const result = (await unknown) as { code: string; message: string };
    expect(result.code).toBe('IOMUX_UNKNOWN_TASK');
    expect(result.message).toContain('"nope"');
    expect(result.message).toMatch(/its exports could not be listed/);
    expect(typeof (await long)).toBe('number');
  });
});

const backend = backends.find((b) => b.available);
describe.runIf(backend !== undefined)('Reactor: offload controls', () => {
  it('workersReady(), timeoutMs and unknown tasks through offload()', async () => {
    const reactor = reactorOn(backend!.name, { workers: { filename: WORKER, size: 1 } });
    try {
      const started = reactor.workerPool;
      expect(started?.stats().threads).toBe(1);
      expect(await reactor.workersReady()).toBe(started);
      expect(await outcome(reactor.offload('spin', undefined, { timeoutMs: 100 }))).toMatchObject({
        code: 'IOMUX_TASK_TIMEOUT',
      });
      expect(await outcome(reactor.offload('nope'))).toMatchObject({ code: 'IOMUX_UNKNOWN_TASK' });
      expect(await reactor.offload('add', { a: 1, b: 2 })).toBe(3);
    } finally {
      await reactor.close();
    }
    await expect(reactor.workersReady()).rejects.toMatchObject({ code: 'IOMUX_REACTOR_CLOSED' });
    // Invalid pool options fail createReactor itself, not the first offload().
    expect(() =>
      reactorOn(backend!.name, { workers: { filename: fixture('missing.mjs') } }),
    ).toThrow(expect.objectContaining({ code: 'IOMUX_INVALID_ARGUMENT' }) as Error);
    const bare = reactorOn(backend!.name);
    try {
      expect(bare.workerPool).toBeUndefined();
      await expect(bare.workersReady()).rejects.toMatchObject({ code: 'IOMUX_INVALID_ARGUMENT' });
    } finally {
      await bare.close();
    }
  });
});
