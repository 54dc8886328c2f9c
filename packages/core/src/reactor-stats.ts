/**
 * What has a reactor done so far? {@link CounterTotals} sums the native counters of the backend in
 * use and of every backend a runtime fallback replaced, so totals survive a switch;
 * {@link metricsSnapshot} builds the `metrics()` snapshot from them.
 */
import type { NativeBackendHandle, BackendCounters } from './backend.js';
import type { BackendName } from './config.js';
import type { MetricsSnapshot, ReactorMetrics } from './metrics.js';
import type { TickLoop } from './tick-loop.js';
import type { WorkerPool } from './worker-pool.js';

/** A snapshot of a reactor's counters. */
export interface ReactorStats extends BackendCounters {
  /** Backend in use. */
  backend: BackendName;
  /** Open connections. */
  connections: number;
  /** Open listeners. */
  listeners: number;
}

/** Native counters across runtime fallbacks. */
export class CounterTotals {
  /** Counters of backends replaced by a runtime fallback. */
  private readonly retired: BackendCounters = {
    polls: 0,
    events: 0,
    bytesRead: 0,
    bytesWritten: 0,
    accepted: 0,
    closed: 0,
    writesQueued: 0,
    acceptErrors: 0,
    readArenas: 0,
    readArenasReused: 0,
  };

  /** Keeps a replaced backend's counters. */
  retire(old: NativeBackendHandle): void {
    const oldCounters = old.counters();
    for (const key of Object.keys(this.retired) as (keyof BackendCounters)[])
      this.retired[key] += oldCounters[key];
  }

  /** The counters of `current` (undefined once the reactor failed) plus the retired ones. */
  totals(current: NativeBackendHandle | undefined): BackendCounters {
    if (current === undefined) return { ...this.retired };
    const c = current.counters();
    for (const key of Object.keys(this.retired) as (keyof BackendCounters)[])
      c[key] += this.retired[key];
    return c;
  }
}

/** Where a metrics snapshot's numbers come from. */
export interface SnapshotSources {
  /** Backend in use. */
  backend: BackendName;
  /** Native counter totals ({@link CounterTotals.totals}). */
  totals: BackendCounters;
  /** Open connections. */
  connections: number;
  /** The reactor's own metrics (wait histogram, backpressure). */
  metrics: ReactorMetrics;
  /** Fallbacks so far. */
  fallbacks: number;
  /** The newest tick loop, if any. */
  tickLoop: TickLoop | undefined;
  /** The worker pool, if started. */
  pool: WorkerPool | undefined;
}

/** The `reactor.metrics()` snapshot. */
export function metricsSnapshot(src: SnapshotSources): MetricsSnapshot {
  const c = src.totals;
  return {
    backend: src.backend,
    io_events_processed: c.events,
    io_wait_duration_ms: src.metrics.waitSummary(),
    polls: c.polls,
    connections_open: src.connections,
    connections_accepted: c.accepted,
    connections_closed: c.closed,
    bytes_in: c.bytesRead,
    bytes_out: c.bytesWritten,
    writes_queued: c.writesQueued,
    backpressure_events: src.metrics.backpressureEvents,
    write_queue_bytes: src.metrics.writeQueueBytes,
    queue_limit_hits: src.metrics.queueLimitHits,
    accept_errors: c.acceptErrors,
    fallbacks: src.fallbacks,
    ticks: src.tickLoop?.stats() ?? null,
    workers: src.pool?.stats() ?? null,
  };
}
