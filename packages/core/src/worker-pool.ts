import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { extname, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MessagePort, ResourceLimits, Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { IomuxError } from './errors.js';
import type { HistogramSummary } from './metrics.js';
import {
  checkCpuList,
  checkCpusAllowed,
  isThreadScheduling,
  type ThreadScheduling,
} from './scheduling.js';
import { MsHistogram } from './tick-loop.js';

/** Thread counts of a {@link WorkerPool}. */
export interface WorkerPoolSize {
  /** Threads kept alive even when idle. Default 1 (or `max` when smaller). */
  min?: number;
  /** Most threads, i.e. most tasks running at once. Default: CPU cores − 1, at least 1. */
  max?: number;
}

/** Options of a {@link WorkerPool}. */
export interface WorkerPoolOptions {
  /**
   * The worker module: an absolute or relative path (resolved against the current directory) or
   * a `file:` URL, e.g. `new URL('./worker.js', import.meta.url)`. Its exports are the tasks
   * (`'default'` names the default export). Each task gets one argument and may be async. Can
   * be left out when every {@link WorkerPool.run} call names its own `filename`.
   *
   * A TypeScript file (`.ts`, `.mts`, `.cts`) is loaded through {@link WorkerPoolOptions.tsLoader}.
   */
  filename?: string | URL;
  /**
   * A number for a fixed size, or `{ min, max }`.
   * @example
   * ```ts
   * // Two threads always warm, up to four under load; the extra ones exit after 10 s idle.
   * const pool = new WorkerPool({ filename: './worker.js', size: { min: 2, max: 4 }, idleTimeout: 10_000 });
   * ```
   */
  size?: number | WorkerPoolSize;
  /** How long, in ms, a thread above `min` may stay idle before it exits. Default 30 000. */
  idleTimeout?: number;
  /**
   * Tasks that may wait for a thread beyond the `max` that run. When that many are waiting,
   * {@link WorkerPool.run} rejects at once with `IOMUX_QUEUE_FULL` (it never blocks); to wait for
   * room instead, `await pool.whenReady()` first. Default 1024; `Infinity` for no limit.
   * @example
   * ```ts
   * // Shed load instead of queueing without bound: at most 16 tasks wait.
   * const pool = new WorkerPool({ filename: './worker.js', size: 4, maxQueue: 16 });
   * ```
   */
  maxQueue?: number;
  /**
   * How long {@link WorkerPool.close} lets running tasks finish, in ms; tasks still running then
   * are terminated and reject with `IOMUX_POOL_CLOSED`. Default 30 000.
   */
  closeTimeout?: number;
  /**
   * A CommonJS `require` hook preloaded in every worker (`--require`) so TypeScript worker files
   * load. Default `'auto'`: `'tsx/cjs'` when {@link WorkerPoolOptions.filename} is a TypeScript
   * file (tsx must then be installed in your project), nothing otherwise. Give a module
   * specifier or absolute path (`'tsx/cjs'`, `'ts-node/register/transpile-only'`, ...) to
   * preload it always (needed for per-task TypeScript filenames), or `false` for none.
   * @example
   * ```ts
   * // Development: run the TypeScript worker as it is (tsx installed); 'auto' picks tsx/cjs.
   * const dev = new WorkerPool({ filename: new URL('./worker.ts', import.meta.url) });
   * // Production: the compiled file, and no loader even if tsx happens to be installed.
   * const prod = new WorkerPool({ filename: new URL('./worker.js', import.meta.url), tsLoader: false });
   * ```
   */
  tsLoader?: string | false;
  /**
   * Raise worker threads' nice value by this much (Linux, macOS) so the thread running the
   * reactor wins the CPU when cores are short. Needs the optional `@napi-rs/nice` package that
   * piscina installs; silently ignored without it. Default 0.
   */
  niceIncrement?: number;
  /**
   * Linux scheduling policy of the worker threads (see {@link ThreadScheduling}). `'idle'` keeps
   * CPU-bound tasks from delaying the reactor's thread: a woken reactor preempts a worker at once,
   * where a nice value only shrinks the worker's share. Set in each thread before its first task;
   * off Linux, or when the kernel refuses, the thread keeps normal scheduling and a process
   * warning says why. Default `'normal'` (left untouched).
   * @example
   * ```ts
   * // CPU-heavy path finding that must never delay the game loop's thread.
   * const pool = new WorkerPool({ filename: './astar.js', size: 2, scheduling: 'idle' });
   * ```
   */
  scheduling?: ThreadScheduling;
  /**
   * CPUs the worker threads are pinned to (Linux `sched_setaffinity`, see
   * {@link setThreadAffinity}), e.g. every core but the reactor's. Checked here against the CPUs
   * the process may run on, set in each thread before its first task; off Linux the threads keep
   * running anywhere and a process warning says why. Default: left untouched (workers inherit
   * the affinity of the thread that creates the pool).
   * @example
   * ```ts
   * setThreadAffinity([0]); // the reactor
   * new WorkerPool({ filename, affinity: [1], scheduling: 'idle' });
   * ```
   */
  affinity?: readonly number[];
  /** Memory limits of each worker thread. */
  resourceLimits?: ResourceLimits;
  /**
   * Value every worker sees as `workerData` (from `node:worker_threads` or `piscina`), copied
   * once per thread: for read-only set-up data a task should not carry each time.
   * @example
   * ```ts
   * // main.ts
   * const pool = new WorkerPool({ filename: './geo.js', workerData: { mapFile: '/srv/map.bin' } });
   *
   * // geo.ts, compiled to geo.js
   * import { readFileSync } from 'node:fs';
   * import { workerData } from 'node:worker_threads';
   * const map = readFileSync((workerData as { mapFile: string }).mapFile); // once per thread
   * ```
   */
  workerData?: unknown;
}

/** What can be moved to a worker instead of copied. */
export type TransferItem = ArrayBuffer | ArrayBufferView | MessagePort;

/** Options of one {@link WorkerPool.run} call. */
export interface WorkerTaskOptions {
  /**
   * Objects to move to the worker instead of copying them. An `ArrayBufferView` (a `Buffer`, a
   * typed array) is moved only when it spans its whole `ArrayBuffer` (e.g. `Buffer.alloc(n)` for
   * n ≥ 4 KiB, or `Buffer.allocUnsafeSlow(n)`): its buffer is detached here and the worker owns
   * it. A view into a larger buffer (Node's small-Buffer pool, a slice, a reactor read slab) is
   * copied instead, so moving never detaches memory something else uses.
   * @example
   * ```ts
   * const frame = Buffer.allocUnsafeSlow(1 << 20); // its own ArrayBuffer: moved, not copied
   * const hash = await pool.run<string>('sha256', frame, { transferList: [frame] });
   * // frame is detached here now (length 0): the worker owns the memory
   * ```
   */
  transferList?: readonly TransferItem[];
  /**
   * Run an export of this module instead of the pool's `filename`.
   * @example
   * ```ts
   * const pool = new WorkerPool({ size: 2 }); // no default module
   * const png = await pool.run('render', chart, { filename: new URL('./charts.js', import.meta.url) });
   * ```
   */
  filename?: string | URL;
  /**
   * Aborting it rejects the task with an `AbortError`: a queued task is dropped; a running one
   * has its thread terminated (and replaced).
   * @example
   * ```ts
   * // Cancel the work when the client that asked for it goes away.
   * const abort = new AbortController();
   * conn.once('close', () => abort.abort());
   * const report = await pool.run('report', query, { signal: abort.signal });
   * ```
   */
  signal?: AbortSignal;
  /**
   * Deadline of this task in ms, counted from the `run()` call (time spent queued included). At
   * the deadline the task rejects with `IOMUX_TASK_TIMEOUT`: still queued, it is dropped; running,
   * its thread is terminated (a task cannot ignore it, even a busy loop) and a new thread replaces
   * it when the pool is at `size.min`. Other tasks, queued or running, are not affected. Default:
   * no deadline.
   * @example
   * ```ts
   * try {
   *   await pool.run('solve', board, { timeoutMs: 50 });
   * } catch (err) {
   *   if ((err as IomuxError).code !== 'IOMUX_TASK_TIMEOUT') throw err;
   *   // fall back to a cheaper answer
   * }
   * ```
   */
  timeoutMs?: number;
}

/** A snapshot of a {@link WorkerPool}. */
export interface WorkerPoolStats {
  /** Live worker threads. */
  threads: number;
  /** Threads kept alive when idle. */
  minThreads: number;
  /** Most threads. */
  maxThreads: number;
  /** Tasks waiting for a thread (the queue depth). */
  queued: number;
  /** Tasks running on a thread. */
  running: number;
  /** Tasks that resolved. */
  completed: number;
  /** Tasks that rejected (the task threw, was aborted, its thread died, the pool closed). */
  failed: number;
  /** `run()` calls refused with `IOMUX_QUEUE_FULL`. */
  rejected: number;
  /**
   * Approximate share of the pool's thread time spent running tasks, 0..1, since the pool started
   * or since {@link WorkerPool.resetStats}.
   */
  utilization: number;
  /**
   * Time from `run()` to the task settling (queue wait + run), ms with µs resolution, since the
   * pool started or since {@link WorkerPool.resetStats}.
   */
  taskTime: HistogramSummary;
}

/** Events of a {@link WorkerPool}. */
export interface WorkerPoolEvents {
  /**
   * A worker failed outside any task (e.g. its module threw while loading). When no listener is
   * attached, the error is reported with `process.emitWarning` instead of being thrown. Tasks a
   * failure affects reject with it in any case.
   */
  error: [error: Error];
}

const TS_EXTENSIONS = new Set(['.ts', '.mts', '.cts']);
/** piscina's worker rejects a task whose name is not an export with this, and nothing else. */
const NO_HANDLER = 'No handler function exported from ';
/** piscina's worker posts this key once it loaded the pool's module and can take tasks. */
const READY_KEY = '_WORKER_READY';
/** How long an `IOMUX_UNKNOWN_TASK` rejection may wait for the list of the module's exports. */
const LIST_EXPORTS_MS = 2000;
const DEFAULT_TS_LOADER = 'tsx/cjs';

function invalid(message: string): IomuxError {
  return new IomuxError('IOMUX_INVALID_ARGUMENT', `WorkerPool: ${message}`);
}

function toPath(filename: string | URL, what: string): string {
  if (filename instanceof URL) return fileURLToPath(filename);
  if (typeof filename !== 'string' || filename === '')
    throw invalid(`${what} must be a path or a file: URL`);
  if (filename.startsWith('file:')) return fileURLToPath(filename);
  return resolvePath(filename);
}

function isTypeScript(path: string): boolean {
  return TS_EXTENSIONS.has(extname(path));
}

function count(name: string, value: number | undefined, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (value === Infinity && name === 'maxQueue') return value;
  if (!Number.isInteger(value) || value < min)
    throw invalid(`${name} must be an integer >= ${min}, got ${String(value)}`);
  return value;
}

/** Resolves a require hook from the user's project first, then from iomux's own dependencies. */
function resolveLoader(specifier: string): string | undefined {
  if (isAbsolute(specifier)) return existsSync(specifier) ? specifier : undefined;
  for (const base of [join(process.cwd(), 'index.js'), fileURLToPath(import.meta.url)]) {
    try {
      return createRequire(base).resolve(specifier);
    } catch {
      // try the next base
    }
  }
  return undefined;
}

/** Module-loading flags whose value is the next argument when not given with `=`. */
const FLAGS_WITH_VALUE = new Set([
  '--require',
  '-r',
  '--import',
  '--loader',
  '--experimental-loader',
  '--conditions',
  '-C',
]);

/**
 * The flags of `argv` (Node's `process.execArgv`) that decide how modules load, which a worker
 * needs to load the same code: `--require`, `--import`, `--loader`, `--conditions`,
 * `--enable-source-maps`, `--experimental-*`. Giving a worker `execArgv` replaces what it would
 * inherit, and Node refuses V8 options (`--max-old-space-size`, `--trace-gc`, ...) and
 * process-wide ones (`--title`) there with `ERR_WORKER_INVALID_EXEC_ARGV`, so only these are
 * passed on.
 * @internal
 */
export function moduleLoadingFlags(argv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const name = arg.split('=', 1)[0]!;
    if (FLAGS_WITH_VALUE.has(name)) {
      kept.push(arg);
      if (!arg.includes('=') && i + 1 < argv.length) kept.push(argv[++i]!);
    } else if (name === '--enable-source-maps' || name.startsWith('--experimental-')) {
      kept.push(arg);
    }
  }
  return kept;
}

/**
 * The built preload that applies `scheduling` in each worker: next to this module in `dist/`, or
 * in `../dist/` when this module runs from source (tests).
 */
function schedulingPreload(): string {
  const candidates = ['./worker-scheduling.cjs', '../dist/worker-scheduling.cjs'];
  for (const candidate of candidates) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw invalid('scheduling needs the built worker-scheduling.cjs; run the package build');
}

/** The built task that lists a worker module's exports, found like {@link schedulingPreload}. */
function exportsTask(): string | undefined {
  for (const candidate of ['./worker-exports.cjs', '../dist/worker-exports.cjs']) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  return undefined;
}

function deadline(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw invalid(`timeoutMs must be a finite number > 0, got ${String(value)}`);
  return value;
}

/**
 * Settles with undefined once `worker` has started and loaded the pool's module (piscina's ready
 * message), or with why it never will (it failed or exited first).
 */
function threadStarted(worker: Worker): Promise<Error | undefined> {
  return new Promise((resolve) => {
    const done = (error: Error | undefined): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      resolve(error);
    };
    const onMessage = (message: unknown): void => {
      if (typeof message === 'object' && message !== null && READY_KEY in message) done(undefined);
    };
    const onError = (err: Error): void => {
      done(err);
    };
    const onExit = (code: number): void => {
      done(new Error(`worker exited with code ${code} while starting`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

function transferables(list: readonly TransferItem[] | undefined): TransferItem[] | undefined {
  if (list === undefined) return undefined;
  const given: unknown = list;
  if (!Array.isArray(given)) throw invalid('transferList must be an array');
  const out: TransferItem[] = [];
  for (const item of list) {
    if (ArrayBuffer.isView(item)) {
      const whole =
        item.buffer instanceof ArrayBuffer &&
        item.byteOffset === 0 &&
        item.byteLength === item.buffer.byteLength;
      if (whole && !out.includes(item.buffer)) out.push(item.buffer);
    } else {
      out.push(item);
    }
  }
  return out;
}

interface Pending {
  readonly controller: AbortController;
  readonly reject: (error: unknown) => void;
}

/**
 * A pool of worker threads for CPU-heavy work, on piscina, so the thread running the reactor
 * never stalls. Tasks are exports of a worker module; each gets one structured-cloneable
 * argument and its result comes back the same way (return `move(value)` from `piscina` in the
 * worker to move a result's buffers instead of copying them).
 *
 * Backpressure: at most `size.max` tasks run and `maxQueue` more wait; past that
 * {@link WorkerPool.run} rejects with `IOMUX_QUEUE_FULL`, and {@link WorkerPool.whenReady}
 * resolves once there is room.
 *
 * TypeScript worker files: Node 20 cannot run `.ts` by itself (`--experimental-strip-types`
 * arrived in Node 22), so either point `filename` at compiled JavaScript (for example add the
 * worker as a second tsup entry: `entry: ['src/index.ts', 'src/worker.ts']`, then use
 * `new URL('./worker.js', import.meta.url)`), or install `tsx` and give the `.ts` file: each
 * worker then preloads tsx's require hook (see {@link WorkerPoolOptions.tsLoader}) and loads it
 * with `require()` semantics, so no top-level `await` in it.
 *
 * @example
 * ```ts
 * // worker.ts, compiled to worker.js
 * export function sum(numbers: number[]): number {
 *   return numbers.reduce((a, b) => a + b, 0);
 * }
 *
 * // main.ts
 * import { WorkerPool } from '@iomux/core';
 * const pool = new WorkerPool({ filename: new URL('./worker.js', import.meta.url), size: 2 });
 * console.log(await pool.run('sum', [1, 2, 3])); // 6
 * await pool.close();
 * ```
 */
export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  private readonly piscina: Piscina;
  private readonly filename: string | undefined;
  private readonly maxQueue: number;
  private readonly maxThreads: number;
  private readonly minThreads: number;
  private readonly hasTsLoader: boolean;
  private readonly pending = new Set<Pending>();
  private readonly readyWaiters: { resolve: () => void; reject: (e: IomuxError) => void }[] = [];
  private readonly taskTime = new MsHistogram();
  private statsSince = { runMs: 0, durationMs: 0 };
  private completed = 0;
  private failed = 0;
  private rejected = 0;
  private closing: Promise<void> | undefined;
  private readonly startup: Promise<Error | undefined>;

  /**
   * Creates the pool; `min` threads start at once (see {@link WorkerPool.ready}).
   * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for an invalid option, a worker file that
   * does not exist, or a TypeScript worker file without a loader.
   */
  constructor(options: WorkerPoolOptions = {}) {
    super();
    const filename =
      options.filename === undefined ? undefined : toPath(options.filename, 'filename');
    if (filename !== undefined && !existsSync(filename))
      throw invalid(`worker file not found: ${filename}`);
    this.filename = filename;
    const size: WorkerPoolSize =
      typeof options.size === 'number'
        ? { min: options.size, max: options.size }
        : (options.size ?? {});
    this.maxThreads = count('size.max', size.max, 1, Math.max(1, availableParallelism() - 1));
    this.minThreads = count('size.min', size.min, 0, Math.min(1, this.maxThreads));
    if (this.minThreads > this.maxThreads)
      throw invalid(`size.min (${this.minThreads}) is above size.max (${this.maxThreads})`);
    this.maxQueue = count('maxQueue', options.maxQueue, 0, 1024);
    const idleTimeout = count('idleTimeout', options.idleTimeout, 0, 30_000);
    const closeTimeout = count('closeTimeout', options.closeTimeout, 0, 30_000);
    const niceIncrement = count('niceIncrement', options.niceIncrement, 0, 0);

    const loaderOption = options.tsLoader ?? 'auto';
    let loader: string | undefined;
    if (loaderOption === 'auto') {
      if (filename !== undefined && isTypeScript(filename)) {
        loader = resolveLoader(DEFAULT_TS_LOADER);
        if (loader === undefined)
          throw invalid(
            `worker file ${filename} is TypeScript and Node 20 cannot load it by itself: install ` +
              `tsx in your project (its require hook is then preloaded in each worker), or point ` +
              `filename at the compiled JavaScript (e.g. built with tsup)`,
          );
      }
    } else if (loaderOption !== false) {
      loader = resolveLoader(loaderOption);
      if (loader === undefined) throw invalid(`tsLoader ${loaderOption} cannot be resolved`);
    }
    this.hasTsLoader = loader !== undefined;
    const scheduling = options.scheduling ?? 'normal';
    if (!isThreadScheduling(scheduling))
      throw invalid(`scheduling must be 'normal', 'batch' or 'idle', got ${String(scheduling)}`);
    const affinity = options.affinity;
    if (affinity !== undefined) {
      checkCpuList(affinity, 'affinity');
      checkCpusAllowed(affinity, 'affinity');
    }
    const threadEnv = {
      ...(scheduling === 'normal' ? {} : { IOMUX_WORKER_SCHEDULING: scheduling }),
      ...(affinity === undefined ? {} : { IOMUX_WORKER_AFFINITY: affinity.join(',') }),
    };
    const preloads = loader === undefined ? [] : ['--require', loader];
    if (Object.keys(threadEnv).length > 0) preloads.push('--require', schedulingPreload());

    this.piscina = new Piscina({
      ...(filename === undefined ? {} : { filename }),
      minThreads: this.minThreads,
      maxThreads: this.maxThreads,
      idleTimeout,
      maxQueue: Infinity, // the limit is enforced here, with a typed error
      closeTimeout,
      niceIncrement,
      ...(preloads.length === 0
        ? {}
        : { execArgv: [...moduleLoadingFlags(process.execArgv), ...preloads] }),
      ...(Object.keys(threadEnv).length === 0 ? {} : { env: { ...process.env, ...threadEnv } }),
      ...(options.resourceLimits === undefined ? {} : { resourceLimits: options.resourceLimits }),
      ...(options.workerData === undefined ? {} : { workerData: options.workerData }),
    });
    this.piscina.on('error', (err: Error) => {
      this.workerFailed(err);
    });
    // Listened to now: piscina's ready messages arrive from the event loop, never before this.
    this.startup = Promise.all(this.piscina.threads.map(threadStarted)).then((errors) =>
      errors.find((error) => error !== undefined),
    );
  }

  /**
   * Resolves once the `size.min` threads the pool started with are running and have loaded the
   * worker module, so a task run now starts at once instead of waiting for a thread to boot.
   * Starting a thread also costs the calling thread a few ms (`new Worker()` is synchronous), which
   * is why they start in the constructor, not at the first {@link WorkerPool.run}. Threads above
   * `size.min` still start on demand, inside the `run()` that needs them: give a fixed `size` when
   * tasks are run from a tick that must stay on time.
   * @throws (rejects with) {@link IomuxError} `IOMUX_WORKER_FAILED` when a thread failed while
   * starting (its module threw while loading), `IOMUX_POOL_CLOSED` after {@link WorkerPool.close}.
   * @example
   * ```ts
   * const pool = new WorkerPool({ filename: new URL('./worker.js', import.meta.url), size: 2 });
   * await pool.ready(); // both threads are up
   * reactor.runTicks(() => void pool.run('plan', world.snapshot()), { hz: 60 });
   * ```
   */
  async ready(): Promise<void> {
    const closed = (): IomuxError =>
      new IomuxError('IOMUX_POOL_CLOSED', 'the worker pool is closed');
    const error = await this.startup;
    // Checked after the wait: a thread that close() terminated is not a start-up failure.
    if (this.closed) throw closed();
    if (error === undefined) return;
    throw new IomuxError('IOMUX_WORKER_FAILED', `worker failed while starting: ${error.message}`, {
      cause: error,
    });
  }

  /**
   * True when {@link WorkerPool.run} would reject with `IOMUX_QUEUE_FULL`.
   * @example
   * ```ts
   * // Answer "busy" at once instead of running a task that would be refused.
   * if (pool.full) conn.write('-BUSY try again later\r\n');
   * else conn.write(await pool.run<string>('query', request));
   * ```
   */
  get full(): boolean {
    return this.pending.size >= this.maxThreads + this.maxQueue;
  }

  /** True once {@link WorkerPool.close} was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Runs the export `task` of the worker module (`'default'` for the default export) with `args`
   * on a worker thread. Resolves with what it returns (or resolves to); rejects with what it
   * throws, unchanged.
   * @throws (rejects with) {@link IomuxError} `IOMUX_QUEUE_FULL` when `size.max` tasks run and
   * `maxQueue` wait (nothing is queued: retry after {@link WorkerPool.whenReady});
   * `IOMUX_POOL_CLOSED` after {@link WorkerPool.close}, or for a task still queued when it was
   * called; `IOMUX_WORKER_FAILED` when no worker could start (its module threw while loading);
   * `IOMUX_TASK_TIMEOUT` at the task's {@link WorkerTaskOptions.timeoutMs}; `IOMUX_UNKNOWN_TASK`
   * when the module has no function export named `task` (the message lists those it has);
   * `IOMUX_INVALID_ARGUMENT` for a bad argument.
   * @example
   * ```ts
   * const score = await pool.run<number>('score', { moves }, { timeoutMs: 100 });
   * ```
   */
  run<Result = unknown>(
    task: string,
    args?: unknown,
    options: WorkerTaskOptions = {},
  ): Promise<Result> {
    try {
      return this.submit<Result>(task, args, options);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * Resolves when {@link WorkerPool.run} can take one more task (at once when it can already).
   * Rejects with `IOMUX_POOL_CLOSED` when the pool closes first.
   * @example
   * ```ts
   * // A batch job that waits for room instead of being refused with IOMUX_QUEUE_FULL.
   * const results: Promise<unknown>[] = [];
   * for (const file of files) {
   *   await pool.whenReady();
   *   results.push(pool.run('compress', file));
   * }
   * await Promise.all(results);
   * ```
   */
  whenReady(): Promise<void> {
    if (this.closing !== undefined)
      return Promise.reject(new IomuxError('IOMUX_POOL_CLOSED', 'the worker pool is closed'));
    if (!this.full) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.readyWaiters.push({ resolve, reject });
    });
  }

  /**
   * Current counters and the task-time histogram.
   * @example
   * ```ts
   * const { queued, running, utilization, taskTime } = pool.stats();
   * console.log(`${running} running, ${queued} queued, ${(utilization * 100).toFixed(0)}% busy`);
   * console.log(`task time p99 ${taskTime.p99.toFixed(2)} ms`);
   * ```
   */
  stats(): WorkerPoolStats {
    const queued = Math.min(this.piscina.queueSize, this.pending.size);
    return {
      threads: this.piscina.threads.length,
      minThreads: this.minThreads,
      maxThreads: this.maxThreads,
      queued,
      running: this.pending.size - queued,
      completed: this.completed,
      failed: this.failed,
      rejected: this.rejected,
      utilization: this.utilization(),
      taskTime: this.taskTime.summary(),
    };
  }

  /**
   * Starts a new window for `utilization` and `taskTime` (e.g. after a warm-up). The task
   * counters (`completed`, `failed`, `rejected`) stay totals over the pool's life.
   * @example
   * ```ts
   * await Promise.all(warmUpInputs.map((input) => pool.run('score', input))); // JIT warm-up
   * pool.resetStats();
   * // ... the measured run; pool.stats().taskTime now covers only it
   * ```
   */
  resetStats(): void {
    this.statsSince = { runMs: this.totalRunMs(), durationMs: this.piscina.duration };
    this.taskTime.reset();
  }

  /** Thread time spent running completed tasks since the pool started, ms. */
  private totalRunMs(): number {
    const tasks = this.piscina.completed;
    const meanRunMs = this.piscina.histogram.runTime.mean;
    return tasks === 0 || !Number.isFinite(meanRunMs) ? 0 : meanRunMs * tasks;
  }

  /**
   * Share of the pool's thread capacity (max threads × the window) spent running tasks. Computed
   * here because piscina 5.3's own `utilization` is off by a factor of 1000 (it divides a mean
   * already in ms by 1000).
   */
  private utilization(): number {
    const capacity = (this.piscina.duration - this.statsSince.durationMs) * this.maxThreads;
    if (capacity <= 0) return 0;
    const used = this.totalRunMs() - this.statsSince.runMs;
    return Math.min(1, Math.max(0, used / capacity));
  }

  /**
   * Closes the pool: queued tasks reject with `IOMUX_POOL_CLOSED`, running tasks finish (up to
   * `closeTimeout`, then they are terminated and reject with `IOMUX_POOL_CLOSED`), then every
   * thread exits. Safe to call more than once.
   * @example
   * ```ts
   * process.once('SIGTERM', () => {
   *   void reactor.close().then(() => pool.close()); // stop taking work, then let tasks finish
   * });
   * ```
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const closed = new IomuxError('IOMUX_POOL_CLOSED', 'the worker pool is closed');
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(closed);
    await this.piscina.close({ force: true });
  }

  private submit<Result>(task: string, args: unknown, options: WorkerTaskOptions): Promise<Result> {
    if (this.closing !== undefined)
      throw new IomuxError('IOMUX_POOL_CLOSED', 'the worker pool is closed');
    if (typeof task !== 'string' || task === '')
      throw invalid('task must be the name of an export of the worker module');
    const filename =
      options.filename === undefined ? this.filename : toPath(options.filename, 'filename');
    if (filename === undefined)
      throw invalid('no worker module: give filename to the pool or to run()');
    if (filename !== this.filename && isTypeScript(filename) && !this.hasTsLoader)
      throw invalid(
        `${filename} is TypeScript: create the pool with tsLoader (e.g. 'tsx/cjs') to run it`,
      );
    if (this.full) {
      this.rejected += 1;
      throw new IomuxError(
        'IOMUX_QUEUE_FULL',
        `worker pool queue is full: ${this.maxThreads} tasks running and ${this.maxQueue} waiting`,
      );
    }
    const transferList = transferables(options.transferList);
    const timeoutMs = deadline(options.timeoutMs);
    const controller = new AbortController();
    const userSignal = options.signal;
    const started = performance.now();
    return new Promise<Result>((resolve, reject) => {
      const entry: Pending = { controller, reject };
      const onUserAbort = (): void => {
        controller.abort(userSignal?.reason);
      };
      let timedOut: IomuxError | undefined;
      // Aborting piscina's signal drops a queued task and terminates the thread of a running one.
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              timedOut = new IomuxError(
                'IOMUX_TASK_TIMEOUT',
                `task "${task}" of ${filename} did not settle within ${timeoutMs} ms ` +
                  `(queue wait included): dropped if queued, its thread terminated if running`,
              );
              controller.abort(timedOut);
            }, timeoutMs);
      const settle = (): void => {
        this.pending.delete(entry);
        clearTimeout(timer);
        userSignal?.removeEventListener('abort', onUserAbort);
        this.taskTime.record(performance.now() - started);
        this.wakeReadyWaiters();
      };
      if (userSignal?.aborted === true) onUserAbort();
      else userSignal?.addEventListener('abort', onUserAbort, { once: true });
      this.pending.add(entry);
      this.piscina
        .run(args, {
          name: task,
          filename,
          signal: controller.signal,
          ...(transferList === undefined ? {} : { transferList: transferList as never }),
        })
        .then(
          (result: Result) => {
            settle();
            this.completed += 1;
            resolve(result);
          },
          (err: unknown) => {
            settle();
            this.failed += 1;
            if (timedOut !== undefined && userSignal?.aborted !== true) {
              reject(timedOut);
            } else if (err instanceof Error && err.message === NO_HANDLER + filename) {
              void this.unknownTask(task, filename, err).then(reject);
            } else {
              // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what the task threw passes through unchanged
              reject(this.translate(err, userSignal));
            }
          },
        );
    });
  }

  /**
   * The error for a task name the module does not export, listing the exports it has. They are
   * read on a worker thread, where the module is loaded already; when that fails, the message
   * says why instead.
   */
  private async unknownTask(task: string, filename: string, cause: Error): Promise<IomuxError> {
    let exported: string;
    const lister = exportsTask();
    try {
      if (lister === undefined) throw new Error('the built worker-exports.cjs is missing');
      if (this.closing !== undefined) throw new Error('the pool is closing');
      // Bounded: behind a queue of long tasks, the error is worth more without the list.
      const names: unknown = await this.piscina.run(filename, {
        name: 'default',
        filename: lister,
        signal: AbortSignal.timeout(LIST_EXPORTS_MS),
      });
      exported = `its function exports: ${(names as string[]).join(', ') || '(none)'}`;
    } catch (err) {
      exported = `its exports could not be listed: ${(err as Error).message}`;
    }
    return new IomuxError(
      'IOMUX_UNKNOWN_TASK',
      `unknown task "${task}": the worker module ${filename} has no function export of that ` +
        `name; ${exported}`,
      { cause },
    );
  }

  /** Piscina's errors for a closing pool become typed ones; the task's own errors pass as-is. */
  private translate(err: unknown, userSignal: AbortSignal | undefined): unknown {
    if (this.closing === undefined || userSignal?.aborted === true || !(err instanceof Error))
      return err;
    if (err.name === 'AbortError')
      return new IomuxError('IOMUX_POOL_CLOSED', 'the worker pool closed before the task started', {
        cause: err,
      });
    if (err.message === 'Terminating worker thread')
      return new IomuxError(
        'IOMUX_POOL_CLOSED',
        'the worker pool closed and the task was still running after closeTimeout',
        { cause: err },
      );
    return err;
  }

  private wakeReadyWaiters(): void {
    while (this.readyWaiters.length > 0 && !this.full) this.readyWaiters.shift()!.resolve();
  }

  private workerFailed(err: Error): void {
    // The close timeout is reported through the tasks it terminates.
    if (this.closing !== undefined && err.message === 'Close operation timed out') return;
    if (this.piscina.threads.length === 0 && this.pending.size > 0) {
      // No thread is left and piscina will not start more after a bootstrap failure: fail the
      // waiting tasks instead of leaving them queued forever.
      const error = new IomuxError('IOMUX_WORKER_FAILED', `worker failed: ${err.message}`, {
        cause: err,
      });
      for (const entry of [...this.pending]) {
        entry.reject(error);
        entry.controller.abort(error);
      }
    }
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(err, { code: 'IOMUX_WORKER_ERROR' });
  }
}
