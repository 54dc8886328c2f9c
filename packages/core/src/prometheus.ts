/**
 * Prometheus exporter on prom-client: `registerPrometheus(reactor, { registry })`, then serve
 * `registry.metrics()` on `/metrics`. Import from `@iomux/core/prometheus`; prom-client is a peer
 * dependency.
 * @module
 */
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';
import type { MetricsSnapshot } from './metrics.js';
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

type CounterField = {
  [K in keyof MetricsSnapshot]: MetricsSnapshot[K] extends number ? K : never;
}[keyof MetricsSnapshot];

const COUNTERS: [CounterField, string][] = [
  [
    'io_events_processed',
    'Events dispatched by the reactor (accepts, reads, drains, ends, closes)',
  ],
  ['connections_accepted', 'Connections accepted'],
  ['connections_closed', 'Sockets closed'],
  ['bytes_in', 'Bytes received'],
  ['bytes_out', 'Bytes handed to the kernel'],
  ['writes_queued', 'Writes the kernel did not take at once'],
  ['backpressure_events', 'write() calls that returned false'],
  ['accept_errors', 'Failed accepts (EMFILE, ...)'],
  ['fallbacks', 'Backend fallbacks, at start-up and at run time'],
];

/**
 * Registers the reactor's metrics: counters read from `reactor.metrics()` at scrape time, the
 * `io_wait_duration_ms` histogram fed per batch, `connections_open` and `iomux_backend_info`.
 * Returns a function that unregisters them.
 */
export function registerPrometheus(reactor: Reactor, options: PrometheusOptions = {}): () => void {
  const registry = options.registry ?? defaultRegistry;
  const prefix = options.prefix ?? '';
  const names: string[] = [];
  let snapshot: MetricsSnapshot | undefined;
  // One snapshot per scrape, shared by every collector.
  const current = (): MetricsSnapshot => (snapshot ??= reactor.metrics());

  for (const [field, help] of COUNTERS) {
    const name = `${prefix}${field}`;
    let reported = 0;
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const value = current()[field];
        if (value > reported) this.inc(value - reported);
        reported = value;
      },
    });
    names.push(name);
  }
  new Gauge({
    name: `${prefix}connections_open`,
    help: 'Open connections',
    registers: [registry],
    collect() {
      this.set(current().connections_open);
    },
  });
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
  names.push(`${prefix}connections_open`, `${prefix}iomux_backend_info`);

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
