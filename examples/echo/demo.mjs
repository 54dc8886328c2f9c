// The first thing to run: an echo server on the best available backend, driven for a few seconds
// by a built-in load client in a worker thread, with live stats once a second.
//   DEMO_SECONDS (default 5), DEMO_CONNECTIONS (default 50), DEMO_SIZE bytes (default 64)
import { Worker } from 'node:worker_threads';
import { createReactor, listBackends } from '@iomux/core';
import { echo } from './echo.mjs';

const seconds = Number(process.env.DEMO_SECONDS ?? 5);
const connections = Number(process.env.DEMO_CONNECTIONS ?? 50);
const size = Number(process.env.DEMO_SIZE ?? 64);

console.log('backends here:');
for (const b of listBackends())
  console.log(`  ${b.available ? '✓' : '✗'} ${b.name}${b.available ? '' : ` (${b.cause})`}`);

const reactor = createReactor({ ioModel: 'auto' });
const listener = await reactor.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, echo);
console.log(`\necho server on 127.0.0.1:${listener.port}, backend: ${reactor.backend}`);
console.log(`load: ${connections} connections, ${size} B ping-pong, ${seconds} s\n`);

const client = new Worker(new URL('./load-client.mjs', import.meta.url), {
  workerData: { port: listener.port, connections, size, seconds },
});

let last = { ...reactor.stats(), at: performance.now() };
const fmt = (n) =>
  Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 }).format(n);
const timer = setInterval(() => {
  const now = { ...reactor.stats(), at: performance.now() };
  const dt = (now.at - last.at) / 1000;
  console.log(
    `[${reactor.backend}] connections ${now.connections}  events/s ${fmt((now.events - last.events) / dt)}  ` +
      `in ${fmt((now.bytesRead - last.bytesRead) / dt)}B/s  out ${fmt((now.bytesWritten - last.bytesWritten) / dt)}B/s`,
  );
  last = now;
}, 1000);

const result = await new Promise((resolve, reject) => {
  client.once('message', resolve);
  client.once('error', reject);
});
clearInterval(timer);
console.log(
  `\ndone: ${fmt(result.roundTrips)} round trips in ${result.seconds.toFixed(1)} s = ${fmt(result.roundTrips / result.seconds)}/s, ` +
    `${result.mismatches} mismatched bytes, ${result.errors} errors`,
);
const m = reactor.metrics();
console.log(
  `metrics: io_events_processed ${m.io_events_processed}, io_wait_duration_ms p50 ${m.io_wait_duration_ms.p50.toFixed(3)} ` +
    `p99 ${m.io_wait_duration_ms.p99.toFixed(3)}, backpressure ${m.backpressure_events}, fallbacks ${m.fallbacks}`,
);
await reactor.close();
process.exitCode = result.mismatches === 0 && result.errors === 0 ? 0 : 1;
