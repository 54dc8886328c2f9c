/**
 * Prometheus exporter on prom-client: `registerPrometheus(reactor, { registry })`, then serve
 * `registry.metrics()` on `/metrics`. Import from `@iomux/core/prometheus`; prom-client is a peer
 * dependency.
 * @module
 */
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';
import type { HistogramSummary, MetricsSnapshot } from './metrics.js';
import type { TickStats } from './tick-loop.js';
import type { Reactor } from './reactor.js';

/** Options of {@link registerPrometheus}. */
export interface PrometheusOptions {
  /** Registry to register in. Default: prom-client's global registry. */
  registry?: Registry;
  /** Prefix for every metric name. Default `''`, so the spec's names appear as they are. */
  prefix?: string;
  /** Buckets of the `io_wait_duration_ms` histogram, in ms. */
  buckets?: number[];
}

/** Reads one number from a snapshot; undefined when the source (tick loop, pool) is absent. */
type Read = (m: MetricsSnapshot) => number | undefined;

const COUNTERS: [string, string, Read][] = [
  [
    'io_events_processed',
    'Events dispatched by the reactor (accepts, reads, drains, ends, closes)',
    (m) => m.io_events_processed,
  ],
  ['connections_accepted', 'Connections accepted', (m) => m.connections_accepted],
  ['connections_closed', 'Sockets closed', (m) => m.connections_closed],
  ['bytes_in', 'Bytes received', (m) => m.bytes_in],
  ['bytes_out', 'Bytes handed to the kernel', (m) => m.bytes_out],
  ['writes_queued', 'Writes the kernel did not take at once', (m) => m.writes_queued],
  ['backpressure_events', 'write() calls that returned false', (m) => m.backpressure_events],
  ['accept_errors', 'Failed accepts (EMFILE, ...)', (m) => m.accept_errors],
  ['fallbacks', 'Backend fallbacks, at start-up and at run time', (m) => m.fallbacks],
  ['iomux_worker_tasks_completed', 'Worker pool tasks that resolved', (m) => m.workers?.completed],
  ['iomux_worker_tasks_failed', 'Worker pool tasks that rejected', (m) => m.workers?.failed],
  [
    'iomux_worker_tasks_rejected',
    'Worker pool tasks refused with IOMUX_QUEUE_FULL',
    (m) => m.workers?.rejected,
  ],
];

// Tick counts are gauges: `loop.resetStats()` (e.g. after a warm-up) sets them back to zero.
const GAUGES: [string, string, Read][] = [
  ['connections_open', 'Open connections', (m) => m.connections_open],
  ['iomux_ticks', 'Ticks run by the tick loop since its stats were reset', (m) => m.ticks?.ticks],
  ['iomux_ticks_skipped', 'Tick deadlines dropped by the overrun policy', (m) => m.ticks?.skipped],
  ['iomux_tick_overruns', 'Ticks still running at the next deadline', (m) => m.ticks?.overruns],
  ['iomux_worker_threads', 'Live worker threads', (m) => m.workers?.threads],
  ['iomux_worker_queue_depth', 'Tasks waiting for a worker thread', (m) => m.workers?.queued],
  ['iomux_worker_running', 'Tasks running on a worker thread', (m) => m.workers?.running],
  [
    'iomux_worker_utilization',
    'Share of worker thread time spent running tasks, 0..1',
    (m) => m.workers?.utilization,
  ],
];

const QUANTILES: [string, (h: HistogramSummary) => number][] = [
  ['0.5', (h) => h.p50],
  ['0.99', (h) => h.p99],
  ['1', (h) => h.max],
];

const TICK_HISTOGRAMS: [string, string, (t: TickStats) => HistogramSummary][] = [
  ['iomux_tick_jitter_ms', '|tick start - deadline|, ms, by quantile', (t) => t.jitter],
  ['iomux_tick_duration_ms', 'Tick callback run time, ms, by quantile', (t) => t.duration],
];

/**
 * Registers the reactor's metrics, read from `reactor.metrics()` at scrape time: the counters
 * (spec names such as `io_events_processed`, plus worker-pool task counts), gauges
 * (`connections_open`, tick counts, worker threads, queue depth and utilization), the tick loop's
 * jitter and duration quantiles, `iomux_backend_info`, and the `io_wait_duration_ms` histogram
 * fed per batch. Tick and worker series appear once a tick loop runs or a pool exists.
 * Returns a function that unregisters them.
 */
export function registerPrometheus(reactor: Reactor, options: PrometheusOptions = {}): () => void {
  const registry = options.registry ?? defaultRegistry;
  const prefix = options.prefix ?? '';
  const names: string[] = [];
  let snapshot: MetricsSnapshot | undefined;
  // One snapshot per scrape, shared by every collector.
  const current = (): MetricsSnapshot => (snapshot ??= reactor.metrics());

  for (const [field, help, read] of COUNTERS) {
    const name = `${prefix}${field}`;
    let reported = 0;
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const value = read(current());
        if (value === undefined) return;
        if (value > reported) this.inc(value - reported);
        reported = value;
      },
    });
    names.push(name);
  }
  for (const [field, help, read] of GAUGES) {
    const name = `${prefix}${field}`;
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const value = read(current());
        if (value === undefined) this.reset();
        else this.set(value);
      },
    });
    names.push(name);
  }
  for (const [field, help, read] of TICK_HISTOGRAMS) {
    const name = `${prefix}${field}`;
    new Gauge({
      name,
      help,
      labelNames: ['quantile'],
      registers: [registry],
      collect() {
        this.reset();
        const ticks = current().ticks;
        if (ticks === null) return;
        for (const [quantile, pick] of QUANTILES) this.set({ quantile }, pick(read(ticks)));
      },
    });
    names.push(name);
  }
  new Gauge({
    name: `${prefix}iomux_backend_info`,
    help: 'Backend in use (value 1, label backend)',
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ backend: current().backend }, 1);
      snapshot = undefined; // registered last: the next scrape takes a fresh snapshot
    },
  });
  names.push(`${prefix}iomux_backend_info`);

  const wait = new Histogram({
    name: `${prefix}io_wait_duration_ms`,
    help: 'Time between batches: how long the reactor waited for the kernel, ms',
    buckets: options.buckets ?? [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 16, 25, 50, 100, 250, 1000],
    registers: [registry],
  });
  names.push(`${prefix}io_wait_duration_ms`);
  const stop = reactor.observePolls((_count, waitMs) => {
    wait.observe(waitMs);
  });
  return () => {
    stop();
    for (const name of names) registry.removeSingleMetric(name);
  };
}
