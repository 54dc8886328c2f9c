// TCP echo server. PORT (default 7000), HOST (default 127.0.0.1), IOMUX_BACKEND (default: best),
// METRICS_PORT: serve Prometheus metrics on http://HOST:METRICS_PORT/metrics,
// LOG_LEVEL=debug: one pino line per poll with events_count and wait_time_ms,
// IOMUX_METRICS=0: no per-batch timing (for measuring what metrics cost),
// READ_BUFFERS=transient: zero-allocation reads (see ReactorOptions.readBuffers).
import http from 'node:http';
import { createReactor } from '@iomux/core';
import { registerPrometheus } from '@iomux/core/prometheus';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { echo } from './echo.mjs';

const port = Number(process.env.PORT ?? 7000);
const host = process.env.HOST ?? '127.0.0.1';

const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });
const reactor = createReactor(
  { ioModel: 'auto' },
  {
    logger,
    metrics: process.env.IOMUX_METRICS !== '0',
    // READ_BUFFERS=transient: the zero-allocation read mode (chunks valid during 'data' only;
    // echo writes each chunk inside its listener, which is safe).
    readBuffers: process.env.READ_BUFFERS === 'transient' ? 'transient' : 'owned',
  },
);
for (const record of reactor.fallbackHistory) {
  console.log(`backend ${record.backend} unavailable: ${record.cause}`);
}
const listener = await reactor.listen({ host, port, backlog: 4096 }, echo);
console.log(`echo server listening on ${host}:${listener.port} (backend: ${reactor.backend})`);

if (process.env.METRICS_PORT !== undefined) {
  const registry = new Registry();
  registerPrometheus(reactor, { registry });
  const metricsServer = http.createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('content-type', registry.contentType);
    res.end(await registry.metrics());
  });
  metricsServer.listen(Number(process.env.METRICS_PORT), host, () => {
    console.log(`metrics on http://${host}:${metricsServer.address().port}/metrics`);
  });
  metricsServer.unref();
}

const shutdown = () => {
  console.log(`closing: ${JSON.stringify(reactor.stats())}`);
  void reactor.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
