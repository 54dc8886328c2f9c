/**
 * OpenTelemetry metrics adapter: `registerOpenTelemetry(reactor, meter)`. Import from
 * `@iomux/core/otel`; `@opentelemetry/api` is a peer dependency.
 * @module
 */
import type { BatchObservableCallback, Meter } from '@opentelemetry/api';
import type { HistogramSummary, MetricsSnapshot } from './metrics.js';
import type { TickStats } from './tick-loop.js';
import type { Reactor } from './reactor.js';

type CounterField = {
  [K in keyof MetricsSnapshot]: MetricsSnapshot[K] extends number ? K : never;
}[keyof MetricsSnapshot];

const COUNTERS: [CounterField, string, string][] = [
  ['io_events_processed', 'io_events_processed', 'Events dispatched by the reactor'],
  ['connections_accepted', 'iomux.connections.accepted', 'Connections accepted'],
  ['connections_closed', 'iomux.connections.closed', 'Sockets closed'],
  ['bytes_in', 'iomux.bytes.in', 'Bytes received'],
  ['bytes_out', 'iomux.bytes.out', 'Bytes handed to the kernel'],
  ['writes_queued', 'iomux.writes.queued', 'Writes the kernel did not take at once'],
  ['backpressure_events', 'iomux.backpressure', 'write() calls that returned false'],
  ['fallbacks', 'iomux.fallbacks', 'Backend fallbacks'],
];

type Read = (m: MetricsSnapshot) => number | undefined;

const WORKER_COUNTERS: [string, string, Read][] = [
  ['iomux.worker.tasks.completed', 'Worker pool tasks that resolved', (m) => m.workers?.completed],
  ['iomux.worker.tasks.failed', 'Worker pool tasks that rejected', (m) => m.workers?.failed],
  [
    'iomux.worker.tasks.rejected',
    'Worker pool tasks refused with IOMUX_QUEUE_FULL',
    (m) => m.workers?.rejected,
  ],
];

// Tick counts are gauges: `loop.resetStats()` sets them back to zero.
const GAUGES: [string, string, Read][] = [
  ['iomux.ticks', 'Ticks run since the loop stats were reset', (m) => m.ticks?.ticks],
  ['iomux.ticks.skipped', 'Tick deadlines dropped by the overrun policy', (m) => m.ticks?.skipped],
  ['iomux.tick.overruns', 'Ticks still running at the next deadline', (m) => m.ticks?.overruns],
  ['iomux.worker.threads', 'Live worker threads', (m) => m.workers?.threads],
  ['iomux.worker.queue_depth', 'Tasks waiting for a worker thread', (m) => m.workers?.queued],
  [
    'iomux.worker.utilization',
    'Share of worker time spent on tasks',
    (m) => m.workers?.utilization,
  ],
];

const TICK_HISTOGRAMS: [string, string, (t: TickStats) => HistogramSummary][] = [
  ['iomux.tick.jitter', '|tick start - deadline| by quantile (0.5, 0.99, 1)', (t) => t.jitter],
  ['iomux.tick.duration', 'Tick callback run time by quantile (0.5, 0.99, 1)', (t) => t.duration],
];

/**
 * Registers observable counters and gauges read from `reactor.metrics()` at collection time
 * (including the tick loop's counts and jitter/duration quantiles and the worker pool's stats,
 * once they exist), and the `io_wait_duration_ms` histogram recorded per batch. Attributes carry the backend name.
 * Returns a function that stops reporting.
 */
export function registerOpenTelemetry(reactor: Reactor, meter: Meter): () => void {
  const counters = COUNTERS.map(([field, name, description]) => ({
    field,
    instrument: meter.createObservableCounter(name, { description }),
  }));
  const open = meter.createObservableUpDownCounter('iomux.connections.open', {
    description: 'Open connections',
  });
  const workerCounters = WORKER_COUNTERS.map(([name, description, read]) => ({
    read,
    instrument: meter.createObservableCounter(name, { description }),
  }));
  const gauges = GAUGES.map(([name, description, read]) => ({
    read,
    instrument: meter.createObservableGauge(name, { description }),
  }));
  const tickQuantiles = TICK_HISTOGRAMS.map(([name, description, read]) => ({
    read,
    instrument: meter.createObservableGauge(name, { description, unit: 'ms' }),
  }));
  const callback: BatchObservableCallback = (result) => {
    const m = reactor.metrics();
    const attributes = { backend: m.backend };
    for (const { field, instrument } of counters) result.observe(instrument, m[field], attributes);
    result.observe(open, m.connections_open, attributes);
    for (const { read, instrument } of [...workerCounters, ...gauges]) {
      const value = read(m);
      if (value !== undefined) result.observe(instrument, value, attributes);
    }
    if (m.ticks === null) return;
    for (const { read, instrument } of tickQuantiles) {
      const summary = read(m.ticks);
      result.observe(instrument, summary.p50, { ...attributes, quantile: '0.5' });
      result.observe(instrument, summary.p99, { ...attributes, quantile: '0.99' });
      result.observe(instrument, summary.max, { ...attributes, quantile: '1' });
    }
  };
  const observables = [
    ...counters.map((c) => c.instrument),
    open,
    ...workerCounters.map((c) => c.instrument),
    ...gauges.map((g) => g.instrument),
    ...tickQuantiles.map((t) => t.instrument),
  ];
  meter.addBatchObservableCallback(callback, observables);
  const wait = meter.createHistogram('io_wait_duration_ms', {
    description: 'Time between batches: how long the reactor waited for the kernel',
    unit: 'ms',
  });
  const stop = reactor.observePolls((_count, waitMs) => {
    wait.record(waitMs, { backend: reactor.backend });
  });
  return () => {
    stop();
    meter.removeBatchObservableCallback(callback, observables);
  };
}
