import { channel } from 'node:diagnostics_channel';
import { build, type Histogram } from 'hdr-histogram-js';
import type { TickStats } from './tick-loop.js';
import type { WorkerPoolStats } from './worker-pool.js';

/** Summary of a latency histogram, in milliseconds. */
export interface HistogramSummary {
  /** Samples recorded. */
  count: number;
  /** Sum of all samples, ms. */
  sum: number;
  /** Mean, ms. */
  mean: number;
  /** Median, ms. */
  p50: number;
  /** 90th percentile, ms. */
  p90: number;
  /** 99th percentile, ms. */
  p99: number;
  /** Largest sample, ms. */
  max: number;
}

/** Everything `reactor.metrics()` reports, named as in the I/O multiplexing spec where it names them. */
export interface MetricsSnapshot {
  /** Backend in use. */
  backend: string;
  /** Counter: events dispatched to JS (accepts, reads, drains, ends, closes, ...). */
  io_events_processed: number;
  /** Histogram: time between batches, i.e. how long the reactor waited for the kernel, ms. */
  io_wait_duration_ms: HistogramSummary;
  /** Batches dispatched (polls that returned events). */
  polls: number;
  /** Gauge: connections open now. */
  connections_open: number;
  /** Counter: connections accepted. */
  connections_accepted: number;
  /** Counter: sockets closed. */
  connections_closed: number;
  /** Counter: bytes received. */
  bytes_in: number;
  /** Counter: bytes handed to the kernel. */
  bytes_out: number;
  /** Counter: writes the kernel did not take at once (queued natively). */
  writes_queued: number;
  /** Counter: `write()` calls that returned false (queue at the high-water mark). */
  backpressure_events: number;
  /**
   * Gauge: bytes waiting in the connections' native write queues, as of each one's last write. A
   * `broadcast()` payload queued by several connections counts once for each (they share one copy).
   */
  write_queue_bytes: number;
  /** Counter: writes refused, or connections destroyed, for going over `maxQueuedBytes`. */
  queue_limit_hits: number;
  /** Counter: failed accepts (EMFILE, ...). */
  accept_errors: number;
  /** Counter: fallbacks, at start-up and at run time. */
  fallbacks: number;
  /**
   * The tick loop's counters and its tick jitter and duration histograms: the loop most recently
   * started on this reactor (`reactor.runTicks` or `runTicks(reactor, ...)`), or null.
   */
  ticks: TickStats | null;
  /** The worker pool behind `reactor.offload` (or the one passed as `workers`), or null. */
  workers: WorkerPoolStats | null;
}

/** Payload of the `iomux:poll` diagnostics channel. */
export interface PollMessage {
  /** Backend that produced the batch. */
  backend: string;
  /** Events in the batch (the spec's `events_count`). */
  events_count: number;
  /** Time since the previous batch, ms (the spec's `wait_time_ms`). */
  wait_time_ms: number;
}

/**
 * `node:diagnostics_channel` channels iomux publishes on, for APM tools. Messages are only built
 * while a channel has subscribers.
 * @example
 * ```ts
 * import { channels, type PollMessage } from '@iomux/core';
 *
 * channels.poll.subscribe((message) => {
 *   const { events_count, wait_time_ms } = message as PollMessage;
 *   if (wait_time_ms > 100) console.warn(`a batch of ${events_count} after ${wait_time_ms} ms`);
 * });
 * channels.connectionClose.subscribe((message) => console.log('closed', message));
 * ```
 */
export const channels = {
  /** One message per batch: {@link PollMessage}. */
  poll: channel('iomux:poll'),
  /** A backend was replaced: the `FallbackRecord`. */
  fallback: channel('iomux:fallback'),
  /** A connection opened: `{ backend, id, kind: 'accepted' | 'connected' | 'adopted' }`. */
  connectionOpen: channel('iomux:connection:open'),
  /** A connection closed: `{ backend, id, error }`. */
  connectionClose: channel('iomux:connection:close'),
};

/** Observes each batch; used by the Prometheus and OpenTelemetry adapters. */
export type PollObserver = (eventsCount: number, waitMs: number) => void;

/**
 * Per-reactor metric state kept in JS: a few numbers and one HDR histogram. Users read it through
 * `reactor.metrics()` ({@link MetricsSnapshot}).
 * @internal
 */
export class ReactorMetrics {
  /** `write()` calls that returned false. */
  backpressureEvents = 0;
  /** Bytes in the connections' write queues (each as of its last write or drain). */
  writeQueueBytes = 0;
  /** Writes refused or connections destroyed over `maxQueuedBytes`. */
  queueLimitHits = 0;
  /** Batches seen. */
  batches = 0;
  /** Events seen. */
  events = 0;
  /** Observers of every batch. */
  readonly observers = new Set<PollObserver>();
  private readonly waitMicros: Histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 2,
  });
  private waitSumMs = 0;

  /** Records one batch. */
  recordBatch(eventsCount: number, waitMs: number): void {
    this.batches += 1;
    this.events += eventsCount;
    this.waitSumMs += waitMs;
    this.waitMicros.recordValue(Math.max(1, Math.round(waitMs * 1000)));
    for (const observer of this.observers) observer(eventsCount, waitMs);
  }

  /** The wait histogram in ms. */
  waitSummary(): HistogramSummary {
    const h = this.waitMicros;
    const count = h.totalCount;
    const at = (p: number): number => (count === 0 ? 0 : h.getValueAtPercentile(p) / 1000);
    return {
      count,
      sum: this.waitSumMs,
      mean: count === 0 ? 0 : this.waitSumMs / count,
      p50: at(50),
      p90: at(90),
      p99: at(99),
      max: count === 0 ? 0 : h.maxValue / 1000,
    };
  }
}

/**
 * One number the Prometheus and OpenTelemetry adapters export, read from a snapshot: `undefined`
 * while its source (the tick loop, the worker pool) does not exist. Tick counts are gauges because
 * `loop.resetStats()` (e.g. after a warm-up) sets them back to zero.
 * @internal
 */
export interface ExportedMetric {
  /** Prometheus name (the spec's where it has one). */
  readonly prometheus: string;
  /** OpenTelemetry name. */
  readonly otel: string;
  readonly help: string;
  /** `updown`: a count that goes up and down (a Prometheus gauge, an OTel up-down counter). */
  readonly kind: 'counter' | 'gauge' | 'updown';
  readonly read: (m: MetricsSnapshot) => number | undefined;
}

type Read = (m: MetricsSnapshot) => number | undefined;

function exported(kind: ExportedMetric['kind']) {
  return (prometheus: string, otel: string, help: string, read: Read): ExportedMetric => ({
    prometheus,
    otel,
    help,
    kind,
    read,
  });
}
const counter = exported('counter');
const gauge = exported('gauge');

/** @internal */
export const EXPORTED_METRICS: readonly ExportedMetric[] = [
  counter(
    'io_events_processed',
    'io_events_processed',
    'Events dispatched by the reactor (accepts, reads, drains, ends, closes)',
    (m) => m.io_events_processed,
  ),
  counter(
    'connections_accepted',
    'iomux.connections.accepted',
    'Connections accepted',
    (m) => m.connections_accepted,
  ),
  counter(
    'connections_closed',
    'iomux.connections.closed',
    'Sockets closed',
    (m) => m.connections_closed,
  ),
  counter('bytes_in', 'iomux.bytes.in', 'Bytes received', (m) => m.bytes_in),
  counter('bytes_out', 'iomux.bytes.out', 'Bytes handed to the kernel', (m) => m.bytes_out),
  counter(
    'writes_queued',
    'iomux.writes.queued',
    'Writes the kernel did not take at once',
    (m) => m.writes_queued,
  ),
  counter(
    'backpressure_events',
    'iomux.backpressure',
    'write() calls that returned false',
    (m) => m.backpressure_events,
  ),
  gauge(
    'write_queue_bytes',
    'iomux.write_queue.bytes',
    'Bytes waiting in the connections write queues',
    (m) => m.write_queue_bytes,
  ),
  counter(
    'queue_limit_hits',
    'iomux.queue_limit_hits',
    'Writes refused or connections destroyed over maxQueuedBytes',
    (m) => m.queue_limit_hits,
  ),
  counter(
    'accept_errors',
    'iomux.accept_errors',
    'Failed accepts (EMFILE, ...)',
    (m) => m.accept_errors,
  ),
  counter(
    'fallbacks',
    'iomux.fallbacks',
    'Backend fallbacks, at start-up and at run time',
    (m) => m.fallbacks,
  ),
  counter(
    'iomux_worker_tasks_completed',
    'iomux.worker.tasks.completed',
    'Worker pool tasks that resolved',
    (m) => m.workers?.completed,
  ),
  counter(
    'iomux_worker_tasks_failed',
    'iomux.worker.tasks.failed',
    'Worker pool tasks that rejected',
    (m) => m.workers?.failed,
  ),
  counter(
    'iomux_worker_tasks_rejected',
    'iomux.worker.tasks.rejected',
    'Worker pool tasks refused with IOMUX_QUEUE_FULL',
    (m) => m.workers?.rejected,
  ),
  exported('updown')(
    'connections_open',
    'iomux.connections.open',
    'Open connections',
    (m) => m.connections_open,
  ),
  gauge(
    'iomux_ticks',
    'iomux.ticks',
    'Ticks run by the tick loop since its stats were reset',
    (m) => m.ticks?.ticks,
  ),
  gauge(
    'iomux_ticks_skipped',
    'iomux.ticks.skipped',
    'Tick deadlines dropped by the overrun policy',
    (m) => m.ticks?.skipped,
  ),
  gauge(
    'iomux_tick_overruns',
    'iomux.tick.overruns',
    'Ticks still running at the next deadline',
    (m) => m.ticks?.overruns,
  ),
  gauge(
    'iomux_worker_threads',
    'iomux.worker.threads',
    'Live worker threads',
    (m) => m.workers?.threads,
  ),
  gauge(
    'iomux_worker_queue_depth',
    'iomux.worker.queue_depth',
    'Tasks waiting for a worker thread',
    (m) => m.workers?.queued,
  ),
  gauge(
    'iomux_worker_running',
    'iomux.worker.running',
    'Tasks running on a worker thread',
    (m) => m.workers?.running,
  ),
  gauge(
    'iomux_worker_utilization',
    'iomux.worker.utilization',
    'Share of worker thread time spent running tasks, 0..1',
    (m) => m.workers?.utilization,
  ),
];

/** @internal The tick loop's histograms, exported as p50 / p99 / max gauges with a `quantile` label. */
export const EXPORTED_TICK_HISTOGRAMS: readonly {
  readonly prometheus: string;
  readonly otel: string;
  readonly help: string;
  readonly read: (t: TickStats) => HistogramSummary;
}[] = [
  {
    prometheus: 'iomux_tick_jitter_ms',
    otel: 'iomux.tick.jitter',
    help: '|tick start - deadline|, ms, by quantile',
    read: (t) => t.jitter,
  },
  {
    prometheus: 'iomux_tick_duration_ms',
    otel: 'iomux.tick.duration',
    help: 'Tick callback run time, ms, by quantile',
    read: (t) => t.duration,
  },
];

/** @internal Quantile label values and how to read them from a summary. */
export const EXPORTED_QUANTILES: readonly [string, (h: HistogramSummary) => number][] = [
  ['0.5', (h) => h.p50],
  ['0.99', (h) => h.p99],
  ['1', (h) => h.max],
];
