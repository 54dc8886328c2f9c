import { execFile } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IomuxError, setThreadScheduling } from '../src/index.js';
import { moduleLoadingFlags, WorkerPool } from '../src/worker-pool.js';
import { sleep } from './helpers.js';
import { closeAfterTest, fixture, outcome, pool, WORKER } from './pool-helpers.js';

const execFileAsync = promisify(execFile);

describe('WorkerPool: running tasks', () => {
  it('runs named exports, the default export and async tasks, and returns their results', async () => {
    const p = pool();
    expect(await p.run('add', { a: 2, b: 40 })).toBe(42);
    expect(await p.run('default', { nested: [1, 'two'] })).toEqual({ nested: [1, 'two'] });
    expect(await p.run('sleep', { ms: 5, value: 'later' })).toBe('later');
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => p.run<number>('add', { a: i, b: i })),
    );
    expect(many).toEqual(Array.from({ length: 50 }, (_, i) => 2 * i));
    const stats = p.stats();
    expect(stats.completed).toBe(53);
    expect(stats.failed).toBe(0);
    expect(stats.taskTime.count).toBe(53);
    expect(stats.maxThreads).toBe(2);
    expect(stats.queued + stats.running).toBe(0);
  });

  it("rejects with the task's own error, unchanged", async () => {
    const p = pool();
    await expect(p.run('fail', { message: 'bad input' })).rejects.toThrow('bad input');
    expect(p.stats().failed).toBe(1);
  });

  it('rejects bad arguments with IOMUX_INVALID_ARGUMENT', async () => {
    expect(() => new WorkerPool({ filename: fixture('missing.mjs') })).toThrow(
      expect.objectContaining({ code: 'IOMUX_INVALID_ARGUMENT' }) as Error,
    );
    expect(() => new WorkerPool({ filename: WORKER, size: { min: 3, max: 2 } })).toThrow(
      /size.min/,
    );
    expect(() => new WorkerPool({ filename: WORKER, maxQueue: -1 })).toThrow(IomuxError);
    const p = pool();
    await expect(p.run('', 1)).rejects.toMatchObject({ code: 'IOMUX_INVALID_ARGUMENT' });
    const noModule = new WorkerPool({ size: 1 });
    closeAfterTest(noModule);
    await expect(noModule.run('add', { a: 1, b: 1 })).rejects.toThrow(/no worker module/);
    expect(await noModule.run('add', { a: 1, b: 1 }, { filename: WORKER })).toBe(2);
  });

  it('fails queued tasks with IOMUX_WORKER_FAILED when no worker can start', async () => {
    const p = pool({ filename: fixture('pool-worker-broken.mjs'), size: { min: 0, max: 1 } });
    const errors: Error[] = [];
    p.on('error', (err) => errors.push(err));
    const results = await Promise.all([1, 2, 3].map((i) => outcome(p.run('default', i))));
    for (const result of results)
      expect(result).toMatchObject({
        code: 'IOMUX_WORKER_FAILED',
        message: /broken worker module/,
      });
    expect(errors[0]?.message).toMatch(/broken worker module/);
  });
});

describe('WorkerPool: backpressure', () => {
  it('rejects with IOMUX_QUEUE_FULL past size.max running + maxQueue waiting', async () => {
    const p = pool({ size: 1, maxQueue: 1 });
    const running = p.run('sleep', { ms: 150, value: 'a' });
    const queued = p.run('sleep', { ms: 1, value: 'b' });
    expect(p.full).toBe(true);
    const refused = p.run('add', { a: 1, b: 1 });
    await expect(refused).rejects.toBeInstanceOf(IomuxError);
    await expect(refused).rejects.toMatchObject({ code: 'IOMUX_QUEUE_FULL' });
    expect(p.stats()).toMatchObject({ rejected: 1, queued: 1, running: 1 });

    // whenReady() waits for room instead of failing.
    const before = performance.now();
    await p.whenReady();
    expect(performance.now() - before).toBeGreaterThan(50);
    expect(p.full).toBe(false);
    expect(await p.run('add', { a: 1, b: 1 })).toBe(2);
    expect(await running).toBe('a');
    expect(await queued).toBe('b');
    await p.whenReady(); // resolves at once when there is room
  });
});

describe('WorkerPool: transfers', () => {
  it('moves a Buffer that owns its memory, and copies one from the small-Buffer pool', async () => {
    const p = pool();
    const big = Buffer.alloc(256 * 1024);
    for (let i = 0; i < big.length; i += 1) big[i] = i % 251;
    let sum = 0;
    for (const byte of big) sum = (sum + byte) % 65_521;
    const result = await p.run('inspect', big, { transferList: [big] });
    expect(result).toEqual({ length: 256 * 1024, sum, isUint8Array: true });
    expect(big.buffer.byteLength).toBe(0); // detached: it was moved, not copied

    const small = Buffer.from('hello'); // a view into Node's shared pool
    const pooledBytes = small.buffer.byteLength;
    expect(await p.run('inspect', small, { transferList: [small] })).toMatchObject({ length: 5 });
    expect(small.buffer.byteLength).toBe(pooledBytes); // copied: the pool is untouched
    expect(small.toString()).toBe('hello');
  });

  it('receives a buffer the worker moved back', async () => {
    const p = pool();
    const bytes = await p.run<Uint8Array>('makeBuffer', { size: 1 << 20, fill: 7 });
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(bytes.length).toBe(1 << 20);
    expect(bytes[12345]).toBe(7);
  });
});

describe('WorkerPool: close', () => {
  it('lets running tasks finish and rejects queued ones with IOMUX_POOL_CLOSED', async () => {
    const p = pool({ size: 1, maxQueue: 10 });
    const running = p.run('sleep', { ms: 100, value: 'done' });
    await sleep(20); // let it start
    const queued = [p.run('add', { a: 1, b: 2 }), p.run('add', { a: 3, b: 4 })].map(outcome);
    await p.close();
    expect(await running).toBe('done');
    for (const result of await Promise.all(queued))
      expect(result).toMatchObject({ code: 'IOMUX_POOL_CLOSED' });
    expect(p.closed).toBe(true);
    expect(p.stats().threads).toBe(0);
    await expect(p.run('add', { a: 1, b: 1 })).rejects.toMatchObject({ code: 'IOMUX_POOL_CLOSED' });
    await expect(p.whenReady()).rejects.toMatchObject({ code: 'IOMUX_POOL_CLOSED' });
    await p.close(); // idempotent
  });

  it('terminates tasks still running after closeTimeout, with IOMUX_POOL_CLOSED', async () => {
    const p = pool({ size: 1, closeTimeout: 50 });
    const stuck = outcome(p.run('burn', { ms: 5000 }));
    await sleep(50);
    const before = performance.now();
    await p.close();
    expect(performance.now() - before).toBeLessThan(2000);
    expect(await stuck).toMatchObject({ code: 'IOMUX_POOL_CLOSED' });
  });

  it('whenReady() waiters reject when the pool closes', async () => {
    const p = pool({ size: 1, maxQueue: 0 });
    const running = p.run('sleep', { ms: 50, value: 1 });
    const ready = outcome(p.whenReady());
    await p.close();
    expect(await ready).toMatchObject({ code: 'IOMUX_POOL_CLOSED' });
    expect(await running).toBe(1);
  });
});

describe('WorkerPool: TypeScript worker files', () => {
  // tsx writes its transform cache asynchronously; a worker that pool.close() terminates before
  // that write ends leaves the cache file's fd open in the process. The cache is not what these
  // tests are about, so the workers run without it.
  beforeAll(() => {
    process.env.TSX_DISABLE_CACHE = '1';
  });
  afterAll(() => {
    delete process.env.TSX_DISABLE_CACHE;
  });

  it('loads a .ts worker through the tsx require hook', async () => {
    const p = pool({ filename: fixture('pool-worker-ts.ts'), size: 1 });
    expect(await p.run('default', 'iomux')).toBe('hello iomux from TypeScript');
    expect(await p.run('distance', { from: { x: 0, y: 0 }, to: { x: 3, y: 4 } })).toBe(5);
  });

  it('refuses a per-task .ts filename on a pool without a loader', async () => {
    const p = pool({ tsLoader: false });
    await expect(p.run('default', 'x', { filename: fixture('pool-worker-ts.ts') })).rejects.toThrow(
      /tsLoader/,
    );
    expect(() => new WorkerPool({ filename: WORKER, tsLoader: 'no-such-loader/register' })).toThrow(
      /cannot be resolved/,
    );
  });

  it('runs a per-task .ts filename when tsLoader is given', async () => {
    const p = pool({ tsLoader: 'tsx/cjs', size: 1 });
    expect(await p.run('default', 'x', { filename: fixture('pool-worker-ts.ts') })).toBe(
      'hello x from TypeScript',
    );
  });
});

describe('WorkerPool: the main thread stays free', () => {
  // SCHED_IDLE on Linux (as a game server would run them), which also keeps the burning workers
  // from disturbing the timing of test files running alongside.
  it('keeps event-loop delay p99 under 20 ms while two workers burn CPU for ~1 s', async () => {
    const p = pool({ size: 2, scheduling: process.platform === 'linux' ? 'idle' : 'normal' });
    await Promise.all([p.run('add', { a: 0, b: 0 }), p.run('add', { a: 0, b: 0 })]); // warm up
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const started = performance.now();
    const burns = await Promise.all([p.run('burn', { ms: 1000 }), p.run('burn', { ms: 1000 })]);
    const elapsed = performance.now() - started;
    delay.disable();
    const p99 = delay.percentile(99) / 1e6;
    const max = delay.max / 1e6;
    console.log(
      `event-loop delay while 2 workers burn: p50 ${(delay.percentile(50) / 1e6).toFixed(2)} ms, ` +
        `p99 ${p99.toFixed(2)} ms, max ${max.toFixed(2)} ms over ${elapsed.toFixed(0)} ms`,
    );
    expect(burns).toHaveLength(2);
    expect(new Set(burns.map((b) => (b as { threadId: number }).threadId)).size).toBe(2);
    expect(elapsed).toBeGreaterThan(950);
    expect(delay.count).toBeGreaterThan(50);
    expect(p99).toBeLessThan(20);
    expect(p.stats().utilization).toBeGreaterThan(0.3);
  });
});

describe.runIf(process.platform === 'linux')('WorkerPool: scheduling policy (Linux)', () => {
  it('runs every worker thread under the requested policy, and leaves normal pools alone', async () => {
    const idle = pool({ size: 2, scheduling: 'idle' });
    const both = await Promise.all([idle.run('scheduling'), idle.run('scheduling')]);
    expect(both).toEqual([
      expect.objectContaining({ policy: 5 }),
      expect.objectContaining({ policy: 5 }),
    ]);
    const batch = pool({ size: 1, scheduling: 'batch' });
    expect(await batch.run('scheduling')).toMatchObject({ policy: 3 });
    const normal = pool({ size: 1 });
    expect(await normal.run('scheduling')).toMatchObject({ policy: 0 });
  });

  it('rejects an unknown policy with IOMUX_INVALID_ARGUMENT naming it', () => {
    expect(() => pool({ scheduling: 'realtime' as never })).toThrow(
      /scheduling must be 'normal', 'batch' or 'idle', got realtime/,
    );
    expect(() => {
      setThreadScheduling('deadline' as never);
    }).toThrow(IomuxError);
  });
});

describe('WorkerPool: stats', () => {
  it('resetStats() starts a new utilization and task-time window; counters stay totals', async () => {
    const p = pool({ size: 1 });
    await p.run('burn', { ms: 300 });
    const busy = p.stats();
    expect(busy.utilization).toBeGreaterThan(0.3);
    expect(busy.taskTime.count).toBe(1);
    p.resetStats();
    await sleep(300);
    const idle = p.stats();
    expect(idle.utilization).toBeLessThan(0.1);
    expect(idle.taskTime.count).toBe(0);
    expect(idle.completed).toBe(1);
  });
});

describe('WorkerPool: flags of the parent process', () => {
  it('passes module-loading flags on to workers and leaves process-wide ones out', () => {
    expect(
      moduleLoadingFlags([
        '--title=server',
        '--stack-size=2000',
        '--require',
        'a.cjs',
        '--import=b.mjs',
        '--max-old-space-size=512',
        '--enable-source-maps',
        '-r',
        'c.cjs',
        '--experimental-vm-modules',
        '--conditions',
        'dev',
      ]),
    ).toEqual([
      '--require',
      'a.cjs',
      '--import=b.mjs',
      '--enable-source-maps',
      '-r',
      'c.cjs',
      '--experimental-vm-modules',
      '--conditions',
      'dev',
    ]);
  });

  it.runIf(process.platform === 'linux')(
    'starts idle-scheduled workers in a process run with V8 and process-wide flags',
    async () => {
      const core = new URL('../dist/index.js', import.meta.url).href;
      const script =
        `const { WorkerPool } = await import(${JSON.stringify(core)});` +
        `const pool = new WorkerPool({ filename: ${JSON.stringify(WORKER.href)}, size: 1, scheduling: 'idle' });` +
        `console.log(JSON.stringify(await pool.run('scheduling'))); await pool.close();`;
      // A worker given either flag in its execArgv throws ERR_WORKER_INVALID_EXEC_ARGV.
      const { stdout } = await execFileAsync(
        process.execPath,
        ['--max-old-space-size=512', '--title=iomux-test', '--input-type=module', '-e', script],
        { timeout: 30_000 },
      );
      expect(JSON.parse(stdout.trim())).toMatchObject({ policy: 5 });
    },
  );
});
