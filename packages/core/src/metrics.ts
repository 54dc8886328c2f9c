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
 */
export const channels = {
  /** One message per batch: {@link PollMessage}. */
  poll: channel('iomux:poll'),
  /** A backend was replaced: the `FallbackRecord`. */
  fallback: channel('iomux:fallback'),
  /** A connection opened: `{ backend, id, kind: 'accepted' | 'connected' }`. */
  connectionOpen: channel('iomux:connection:open'),
  /** A connection closed: `{ backend, id, error }`. */
  connectionClose: channel('iomux:connection:close'),
};

/** Observes each batch; used by the Prometheus and OpenTelemetry adapters. */
export type PollObserver = (eventsCount: number, waitMs: number) => void;

/** Per-reactor metric state kept in JS: a few numbers and one HDR histogram. */
export class ReactorMetrics {
  /** `write()` calls that returned false. */
  backpressureEvents = 0;
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
