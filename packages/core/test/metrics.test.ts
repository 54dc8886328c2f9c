import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import http from 'node:http';
import { MeterProvider, MetricReader, type CollectionResult } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerOpenTelemetry } from '../src/otel.js';
import { registerPrometheus } from '../src/prometheus.js';
import type { Connection, PollMessage, Reactor } from '../src/index.js';
import { WorkerPool } from '../src/index.js';
import { backends, netRoundTrip, pattern, reactorOn } from './helpers.js';

const WORKER = new URL('./fixtures/pool-worker.mjs', import.meta.url);

const backend = backends.find((b) => b.available);

function echo(conn: Connection): void {
  conn.on('data', (chunk) => conn.write(chunk));
}

async function traffic(reactor: Reactor, messages: number, size: number): Promise<void> {
  const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, echo);
  for (let i = 0; i < messages; i += 1) {
    const payload = pattern(size, i + 1);
    const back = await netRoundTrip(listener.port, payload);
    expect(back.equals(payload)).toBe(true);
  }
  listener.close();
}

class TestReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  read(): Promise<CollectionResult> {
    return this.collect();
  }
}

describe.skipIf(backend === undefined)(`metrics (${backend?.name ?? 'no backend'})`, () => {
  const name = backend!.name;

  it('counts what real traffic did', async () => {
    const reactor = reactorOn(name);
    await traffic(reactor, 20, 1000);
    const m = reactor.metrics();
    expect(m.backend).toBe(name);
    expect(m.connections_accepted).toBe(20);
    expect(m.bytes_in).toBe(20 * 1000);
    expect(m.bytes_out).toBe(20 * 1000);
    // each round trip: an ACCEPT and at least one DATA (END/CLOSE may still be on their way)
    expect(m.io_events_processed).toBeGreaterThanOrEqual(40);
    expect(m.io_wait_duration_ms.count).toBeGreaterThan(0);
    expect(m.io_wait_duration_ms.count).toBeLessThanOrEqual(m.polls);
    expect(m.io_wait_duration_ms.max).toBeGreaterThanOrEqual(m.io_wait_duration_ms.p50);
    await reactor.close();
  });

  it('keeps counters but no histogram with metrics: false', async () => {
    const reactor = reactorOn(name, { metrics: false });
    await traffic(reactor, 5, 100);
    const m = reactor.metrics();
    expect(m.bytes_in).toBe(500);
    expect(m.io_events_processed).toBeGreaterThanOrEqual(10);
    expect(m.io_wait_duration_ms.count).toBe(0);
    await reactor.close();
  });

  it('logs each poll at debug with events_count and wait_time_ms, only when enabled', async () => {
    const lines: object[] = [];
    const logger = {
      debug: (obj: object) => lines.push(obj),
      info: () => undefined,
      warn: () => undefined,
      isLevelEnabled: (level: string) => level !== 'debug' || enabled,
    };
    let enabled = false;
    const quiet = reactorOn(name, { logger });
    await traffic(quiet, 3, 10);
    await quiet.close();
    expect(lines).toEqual([]);
    enabled = true;
    const loud = reactorOn(name, { logger });
    await traffic(loud, 3, 10);
    await loud.close();
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toMatchObject({
      backend: name,
      events_count: expect.any(Number) as number,
      wait_time_ms: expect.any(Number) as number,
    });
  });

  it('publishes polls and connections on diagnostics_channel', async () => {
    const polls: PollMessage[] = [];
    const opened: unknown[] = [];
    const onPoll = (m: unknown): void => void polls.push(m as PollMessage);
    const onOpen = (m: unknown): void => void opened.push(m);
    subscribe('iomux:poll', onPoll);
    subscribe('iomux:connection:open', onOpen);
    try {
      const reactor = reactorOn(name);
      await traffic(reactor, 5, 100);
      await reactor.close();
    } finally {
      unsubscribe('iomux:poll', onPoll);
      unsubscribe('iomux:connection:open', onOpen);
    }
    expect(opened).toHaveLength(5);
    expect(polls.reduce((n, p) => n + p.events_count, 0)).toBeGreaterThanOrEqual(15);
  });

  it('exports to Prometheus, scraped over real HTTP', async () => {
    const reactor = reactorOn(name);
    const registry = new Registry();
    const unregister = registerPrometheus(reactor, { registry });
    await traffic(reactor, 10, 500);
    const server = http.createServer((_req, res) => {
      void registry.metrics().then((body) => {
        res.setHeader('content-type', registry.contentType);
        res.end(body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    await new Promise<void>((r) =>
      server.close(() => {
        r();
      }),
    );
    const value = (metric: string): number =>
      Number(new RegExp(`^${metric} (\\S+)$`, 'm').exec(body)?.[1]);
    expect(value('io_events_processed')).toBeGreaterThanOrEqual(20);
    expect(value('bytes_in')).toBe(5000);
    expect(value('connections_accepted')).toBe(10);
    expect(value('io_wait_duration_ms_count')).toBeGreaterThan(0);
    expect(body).toContain(`iomux_backend_info{backend="${name}"} 1`);
    unregister();
    expect(await registry.metrics()).toBe('\n');
    await reactor.close();
  });

  it('exports to OpenTelemetry', async () => {
    const reactor = reactorOn(name);
    const reader = new TestReader();
    const provider = new MeterProvider({ readers: [reader] });
    const stop = registerOpenTelemetry(reactor, provider.getMeter('iomux-test'));
    await traffic(reactor, 4, 250);
    const { resourceMetrics } = await reader.read();
    const all = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const find = (n: string): number => {
      const point = all.find((m) => m.descriptor.name === n)?.dataPoints[0];
      return typeof point?.value === 'number' ? point.value : Number.NaN;
    };
    expect(find('io_events_processed')).toBeGreaterThanOrEqual(8);
    expect(find('iomux.bytes.in')).toBe(1000);
    expect(all.some((m) => m.descriptor.name === 'io_wait_duration_ms')).toBe(true);
    stop();
    await provider.shutdown();
    await reactor.close();
  });

  it('reports the tick loop and the worker pool in metrics(), Prometheus and OpenTelemetry', async () => {
    const pool = new WorkerPool({ filename: WORKER, size: 1 });
    const reactor = reactorOn(name, { workers: pool });
    const before = reactor.metrics();
    expect(before.ticks).toBeNull();
    expect(before.workers).toMatchObject({ completed: 0, maxThreads: 1 });
    expect(await reactor.offload('add', { a: 2, b: 3 })).toBe(5);
    reactor.stop();
    const loop = reactor.runTicks(() => undefined, { hz: 200, maxTicks: 10 });
    await loop.done;
    const m = reactor.metrics();
    expect(m.ticks).toMatchObject({ ticks: 10, hz: 200, running: false });
    expect(m.ticks?.jitter.count).toBe(10);
    expect(m.workers).toMatchObject({ completed: 1, failed: 0, rejected: 0 });

    const registry = new Registry();
    const unregister = registerPrometheus(reactor, { registry });
    const body = await registry.metrics();
    expect(body).toMatch(/^iomux_ticks 10$/m);
    // Whatever the machine's load made the loop skip, the exporter reports the loop's own count.
    expect(body).toMatch(new RegExp(`^iomux_ticks_skipped ${m.ticks!.skipped}$`, 'm'));
    expect(body).toMatch(/^iomux_tick_jitter_ms\{quantile="0.99"\} \d/m);
    expect(body).toMatch(/^iomux_tick_duration_ms\{quantile="0.5"\} \d/m);
    expect(body).toMatch(/^iomux_worker_tasks_completed 1$/m);
    expect(body).toMatch(/^iomux_worker_threads \d$/m);
    unregister();

    const reader = new TestReader();
    const provider = new MeterProvider({ readers: [reader] });
    const stop = registerOpenTelemetry(reactor, provider.getMeter('iomux-test'));
    const { resourceMetrics } = await reader.read();
    const all = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const points = (n: string) => all.find((x) => x.descriptor.name === n)?.dataPoints ?? [];
    expect(points('iomux.ticks')[0]?.value).toBe(10);
    expect(points('iomux.worker.tasks.completed')[0]?.value).toBe(1);
    expect(points('iomux.tick.jitter').map((p) => p.attributes.quantile)).toEqual([
      '0.5',
      '0.99',
      '1',
    ]);
    stop();
    await provider.shutdown();
    await reactor.close();
    expect(reactor.metrics().workers?.threads).toBe(0);
  });
});
