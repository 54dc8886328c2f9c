/**
 * OpenTelemetry metrics adapter: `registerOpenTelemetry(reactor, meter)`. Import from
 * `@iomux/core/otel`; `@opentelemetry/api` is a peer dependency.
 * @module
 */
import type { BatchObservableCallback, Meter } from '@opentelemetry/api';
import type { MetricsSnapshot } from './metrics.js';
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

/**
 * Registers observable counters and gauges read from `reactor.metrics()` at collection time, and
 * the `io_wait_duration_ms` histogram recorded per batch. Attributes carry the backend name.
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
  const callback: BatchObservableCallback = (result) => {
    const m = reactor.metrics();
    const attributes = { backend: m.backend };
    for (const { field, instrument } of counters) result.observe(instrument, m[field], attributes);
    result.observe(open, m.connections_open, attributes);
  };
  const observables = [...counters.map((c) => c.instrument), open];
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
