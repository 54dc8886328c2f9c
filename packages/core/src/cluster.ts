import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ReactorConfig, SnakeCaseConfig } from './config.js';
import { IomuxError } from './errors.js';
import type { MetricsSnapshot } from './metrics.js';

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /**
   * Module each worker imports (path or file URL). It must export
   * `onConnection(connection, reactor)` and may export `setup(reactor)` (awaited before the
   * worker listens).
   * @example
   * ```ts
   * // echo-worker.ts, compiled to echo-worker.js
   * import type { Connection, Reactor } from '@iomux/core';
   *
   * export function setup(reactor: Reactor): void {
   *   console.log(`worker on ${reactor.backend}`);
   * }
   * export function onConnection(conn: Connection): void {
   *   conn.on('data', (data) => conn.write(data));
   * }
   * ```
   */
  module: string | URL;
  /** Port all reactors share through SO_REUSEPORT; 0 picks one. */
  port: number;
  /** Address to bind. Default `0.0.0.0`. */
  host?: string;
  /** Reactors (worker threads). Default: `os.availableParallelism()`. */
  workers?: number;
  /**
   * Reactor configuration for every worker. Default `{ ioModel: 'auto' }`.
   * @example
   * ```ts
   * const cluster = await startCluster({
   *   module: new URL('./echo-worker.js', import.meta.url),
   *   port: 7000,
   *   config: { io_model: 'io_uring', retry_config: { fallback: ['epoll', 'blocking_io'] } },
   * });
   * cluster.backends; // e.g. ['io_uring', 'io_uring', 'io_uring', 'io_uring']
   * ```
   */
  config?: ReactorConfig | SnakeCaseConfig;
  /** Listen backlog per reactor. Default 511. */
  backlog?: number;
}

/** Result of {@link Cluster.metrics}. */
export interface ClusterMetrics {
  /**
   * Counters summed over the workers; wait percentiles are the worst worker's. `ticks` and
   * `workers` are null here: tick loops and pools belong to one reactor (see each snapshot in `workers`).
   */
  total: MetricsSnapshot;
  /** Each worker's own snapshot, in worker order. */
  workers: MetricsSnapshot[];
}

/** N reactors in worker threads sharing one port. */
export interface Cluster {
  /** The shared port. */
  readonly port: number;
  /** Number of reactors. */
  readonly size: number;
  /** Backends the workers run on, in worker order. */
  readonly backends: readonly string[];
  /**
   * Metrics of every worker, and their sum.
   * @example
   * ```ts
   * const { total, workers } = await cluster.metrics();
   * console.log(`${total.connections_open} open over ${cluster.size} reactors`);
   * workers.forEach((w, i) => console.log(`worker ${i}: ${w.connections_open} on ${w.backend}`));
   * ```
   */
  metrics(): Promise<ClusterMetrics>;
  /** Closes every reactor gracefully and ends the threads. */
  close(): Promise<void>;
}

interface WorkerReply {
  id: number;
  result?: unknown;
  error?: string;
}

class WorkerHandle {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve(v: unknown): void; reject(e: Error): void }
  >();

  constructor(readonly worker: Worker) {
    worker.on('message', (reply: WorkerReply) => {
      const entry = this.pending.get(reply.id);
      if (entry === undefined) return;
      this.pending.delete(reply.id);
      if (reply.error !== undefined)
        entry.reject(new IomuxError('IOMUX_WORKER_FAILED', reply.error));
      else entry.resolve(reply.result);
    });
    worker.on('error', (err) => {
      for (const entry of this.pending.values()) entry.reject(err);
      this.pending.clear();
    });
  }

  call<T>(command: string, args: object = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve, reject });
      this.worker.postMessage({ id, command, ...args });
    });
  }
}

function sum(snapshots: MetricsSnapshot[]): MetricsSnapshot {
  const total = { ...snapshots[0]! };
  total.backend = [...new Set(snapshots.map((s) => s.backend))].join(',');
  const wait = { ...total.io_wait_duration_ms };
  for (const s of snapshots.slice(1)) {
    for (const key of Object.keys(s) as (keyof MetricsSnapshot)[]) {
      const value = s[key];
      if (typeof value === 'number') (total[key] as number) += value;
    }
    wait.count += s.io_wait_duration_ms.count;
    wait.sum += s.io_wait_duration_ms.sum;
    wait.max = Math.max(wait.max, s.io_wait_duration_ms.max);
    // Percentiles do not add up; report the worst worker's.
    wait.p50 = Math.max(wait.p50, s.io_wait_duration_ms.p50);
    wait.p90 = Math.max(wait.p90, s.io_wait_duration_ms.p90);
    wait.p99 = Math.max(wait.p99, s.io_wait_duration_ms.p99);
  }
  wait.mean = wait.count === 0 ? 0 : wait.sum / wait.count;
  total.io_wait_duration_ms = wait;
  // Tick loops and pools are per reactor; see each worker's snapshot.
  total.ticks = null;
  total.workers = null;
  return total;
}

/**
 * Starts N reactors in worker threads, all listening on one port with SO_REUSEPORT: the kernel
 * spreads incoming connections over them. The first worker binds (port 0 picks a free port), the
 * others join it.
 *
 * @example
 * ```ts
 * const cluster = await startCluster({ module: new URL('./echo-worker.js', import.meta.url), port: 7000, workers: 2 });
 * console.log((await cluster.metrics()).total.connections_open);
 * await cluster.close();
 * ```
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const size = options.workers ?? availableParallelism();
  if (!Number.isInteger(size) || size < 1 || size > 256) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `startCluster: workers must be an integer from 1 to 256, got ${String(size)}`,
    );
  }
  const modulePath = options.module instanceof URL ? fileURLToPath(options.module) : options.module;
  const workerFile = new URL('./cluster-worker.js', import.meta.url);
  const handles: WorkerHandle[] = [];
  const backends: string[] = [];
  let port = options.port;
  try {
    for (let i = 0; i < size; i += 1) {
      const handle = new WorkerHandle(
        new Worker(workerFile, {
          workerData: { module: modulePath, config: options.config ?? { ioModel: 'auto' } },
        }),
      );
      handles.push(handle);
      const started = await handle.call<{ port: number; backend: string }>('listen', {
        host: options.host ?? '0.0.0.0',
        port,
        backlog: options.backlog ?? 511,
      });
      port = started.port;
      backends.push(started.backend);
    }
  } catch (err) {
    await Promise.all(handles.map((h) => h.worker.terminate()));
    throw err;
  }
  return {
    port,
    size,
    backends,
    async metrics() {
      const workers = await Promise.all(handles.map((h) => h.call<MetricsSnapshot>('metrics')));
      return { total: sum(workers), workers };
    },
    async close() {
      await Promise.all(handles.map((h) => h.call('close')));
      await Promise.all(handles.map((h) => h.worker.terminate()));
    },
  };
}
