/**
 * Prometheus exporter on prom-client: `registerPrometheus(reactor, { registry })`, then serve
 * `registry.metrics()` on `/metrics`. Import from `@iomux/core/prometheus`; prom-client is a peer
 * dependency.
 * @module
 */
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';
import {
  EXPORTED_METRICS,
  EXPORTED_QUANTILES,
  EXPORTED_TICK_HISTOGRAMS,
  type MetricsSnapshot,
} from './metrics.js';
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

  for (const metric of EXPORTED_METRICS) {
    const name = `${prefix}${metric.prometheus}`;
    const read = metric.read;
    if (metric.kind === 'counter') {
      let reported = 0;
      new Counter({
        name,
        help: metric.help,
        registers: [registry],
        collect() {
          const value = read(current());
          if (value === undefined) return;
          if (value > reported) this.inc(value - reported);
          reported = value;
        },
      });
    } else {
      new Gauge({
        name,
        help: metric.help,
        registers: [registry],
        collect() {
          const value = read(current());
          if (value === undefined) this.reset();
          else this.set(value);
        },
      });
    }
    names.push(name);
  }
  for (const histogram of EXPORTED_TICK_HISTOGRAMS) {
    const name = `${prefix}${histogram.prometheus}`;
    new Gauge({
      name,
      help: histogram.help,
      labelNames: ['quantile'],
      registers: [registry],
      collect() {
        this.reset();
        const ticks = current().ticks;
        if (ticks === null) return;
        const summary = histogram.read(ticks);
        for (const [quantile, pick] of EXPORTED_QUANTILES) this.set({ quantile }, pick(summary));
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
