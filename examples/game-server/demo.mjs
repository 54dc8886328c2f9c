// One command: the game server and BOTS simulated players (in a worker thread) for SECONDS,
// then the bots' latency report and the server's jitter report. Exits by itself.
//   BOTS (200), SECONDS (10), INPUT_HZ (20), and the server's variables (see server.mjs), e.g.
//   BOTS=1000 SATURATE=1 node demo.mjs   # 1000 players while both workers burn CPU on A*
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { listBackends } from '@iomux/core';
import { formatBots } from './bots.mjs';
import { formatReport, optionsFromEnv, startGameServer } from './server.mjs';

const env = process.env;
const bots = Number(env.BOTS ?? 200);
const seconds = Number(env.SECONDS ?? 10);
const inputHz = Number(env.INPUT_HZ ?? 20);
const options = { ...optionsFromEnv(env), port: 0 };

console.log('backends here:');
for (const b of listBackends())
  console.log(`  ${b.available ? '✓' : '✗'} ${b.name}${b.available ? '' : ` (${b.cause})`}`);

const server = await startGameServer(options);
console.log(
  `\ngame server on 127.0.0.1:${server.port}, backend: ${server.backend}, ${options.hz} Hz, ` +
    `${options.workers} workers${options.saturate ? ' kept saturated with A* planning' : ''}`,
);
console.log(`bots: ${bots} players sending ${inputHz} inputs/s each for ${seconds} s\n`);

const worker = new Worker(new URL('./bots.mjs', import.meta.url), {
  workerData: { role: 'game-bots', options: { port: server.port, bots, seconds, inputHz } },
});
// Measure the steady state: start afresh once every bot has joined.
const joined = setInterval(() => {
  if (server.report().players < bots) return;
  clearInterval(joined);
  server.resetStats();
  console.log(`all ${bots} bots joined; measuring from here`);
}, 20);
const progress = setInterval(() => {
  const r = server.report();
  console.log(
    `[${r.backend}] ${r.players} players, tick ${r.ticks}, jitter p99 ${r.jitter.p99.toFixed(2)} ms, ` +
      `skipped ${r.skipped}, workers ${(r.workers.utilization * 100).toFixed(0)} % busy`,
  );
}, 1000);

let failed = false;
try {
  const [result] = await once(worker, 'message');
  clearInterval(progress);
  clearInterval(joined);
  const report = server.report();
  console.log(`\n${formatBots(result)}\n\n${formatReport(report)}`);
  failed = result.connected !== bots;
} catch (err) {
  clearInterval(progress);
  clearInterval(joined);
  console.error('bots failed:', err);
  failed = true;
}
await server.close();
process.exitCode = failed ? 1 : 0;
