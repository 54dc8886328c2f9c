/**
 * OpenTelemetry metrics adapter: `registerOpenTelemetry(reactor, meter)`. Import from
 * `@iomux/core/otel`; `@opentelemetry/api` is a peer dependency.
 * @module
 */
import type { BatchObservableCallback, Meter, Observable } from '@opentelemetry/api';
import { EXPORTED_METRICS, EXPORTED_QUANTILES, EXPORTED_TICK_HISTOGRAMS } from './metrics.js';
import type { Reactor } from './reactor.js';

/**
 * Registers observable counters and gauges read from `reactor.metrics()` at collection time
 * (including the tick loop's counts and jitter/duration quantiles and the worker pool's stats,
 * once they exist), and the `io_wait_duration_ms` histogram recorded per batch. Attributes carry
 * the backend name. Returns a function that stops reporting.
 */
export function registerOpenTelemetry(reactor: Reactor, meter: Meter): () => void {
  const instruments = EXPORTED_METRICS.map((metric) => {
    const options = { description: metric.help };
    const instrument: Observable =
      metric.kind === 'counter'
        ? meter.createObservableCounter(metric.otel, options)
        : metric.kind === 'updown'
          ? meter.createObservableUpDownCounter(metric.otel, options)
          : meter.createObservableGauge(metric.otel, options);
    return { read: metric.read, instrument };
  });
  const tickQuantiles = EXPORTED_TICK_HISTOGRAMS.map((histogram) => ({
    read: histogram.read,
    instrument: meter.createObservableGauge(histogram.otel, {
      description: `${histogram.help} (0.5, 0.99, 1)`,
      unit: 'ms',
    }),
  }));
  const callback: BatchObservableCallback = (result) => {
    const m = reactor.metrics();
    const attributes = { backend: m.backend };
    for (const { read, instrument } of instruments) {
      const value = read(m);
      if (value !== undefined) result.observe(instrument, value, attributes);
    }
    if (m.ticks === null) return;
    for (const { read, instrument } of tickQuantiles) {
      const summary = read(m.ticks);
      for (const [quantile, pick] of EXPORTED_QUANTILES)
        result.observe(instrument, pick(summary), { ...attributes, quantile });
    }
  };
  const observables = [
    ...instruments.map((i) => i.instrument),
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
