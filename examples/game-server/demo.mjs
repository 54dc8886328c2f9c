// One command: the game server (this process) and BOTS simulated players (a child process running
// bots.mjs on node:dgram / node:net) for SECONDS, then the bots' latency report and the server's
// jitter report. Exits by itself.
//   TRANSPORT (udp | tcp), BOTS (200), SECONDS (10), INPUT_HZ (20), BOT_CPUS (Linux: run the
//   bots' process, every thread of it, on these CPUs through taskset; e.g. 1), and the server's
//   variables (see server.mjs), e.g.
//   BOTS=1000 SATURATE=1 node demo.mjs   # 1000 players while both workers burn CPU on A*
//   # the reactor alone on CPU 0, workers and bots on CPU 1:
//   BOTS=1000 SATURATE=1 REACTOR_CPUS=0 WORKER_CPUS=1 BOT_CPUS=1 node demo.mjs
// REPORT=json also prints both reports as one JSON line (`REPORT {"server":…,"bots":…}`), which
// bench/game.mjs reads.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { listBackends } from '@iomux/core';
import { formatBots } from './bots.mjs';
import { formatReport, optionsFromEnv, startGameServerOrExit } from './server.mjs';

const env = process.env;
const bots = Number(env.BOTS ?? 200);
const seconds = Number(env.SECONDS ?? 10);
const inputHz = Number(env.INPUT_HZ ?? 20);
const options = { ...optionsFromEnv(env), port: 0 };
// Counted before REACTOR_CPUS pins this thread: availableParallelism() counts the CPUs the calling
// thread may use, and the machine's figures below are about all of them.
const cores = availableParallelism();

console.log('backends here:');
for (const b of listBackends())
  console.log(`  ${b.available ? '✓' : '✗'} ${b.name}${b.available ? '' : ` (${b.cause})`}`);

const server = await startGameServerOrExit(options);
console.log(
  `\ngame server on 127.0.0.1:${server.port}/${server.transport}, backend: ${server.backend}, ${options.hz} Hz, ` +
    `${options.workers} workers at nice ${options.nice}, ${server.scheduling} scheduling${options.saturate ? ', kept saturated with A* planning' : ''}`,
);
console.log(
  `bots: ${bots} players (own process) sending ${inputHz} inputs/s each for ${seconds} s\n`,
);

// taskset starts the bots' Node already pinned, so all its threads (libuv's, V8's) stay off the
// reactor's CPU; the IPC channel survives the exec.
const botCpus = env.BOT_CPUS === undefined || env.BOT_CPUS === '' ? undefined : env.BOT_CPUS;
if (botCpus !== undefined && !/^\d+(,\d+)*$/.test(botCpus)) {
  console.error(`BOT_CPUS must be CPU numbers separated by commas, got ${botCpus}`);
  process.exit(1);
}
const pinning =
  botCpus === undefined
    ? {}
    : { execPath: 'taskset', execArgv: ['--cpu-list', botCpus, process.execPath] };
const child = fork(new URL('./bots.mjs', import.meta.url), [], {
  ...pinning,
  env: {
    ...env,
    TRANSPORT: server.transport,
    HOST: '127.0.0.1',
    PORT: String(server.port),
    BOTS: String(bots),
    SECONDS: String(seconds),
    INPUT_HZ: String(inputHz),
    HZ: String(options.hz),
  },
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
const progress = setInterval(() => {
  const r = server.report();
  console.log(
    `[${r.backend}/${r.transport}] ${r.players} players, tick ${r.ticks}, jitter p99 ${r.jitter.p99.toFixed(2)} ms, ` +
      `skipped ${r.skipped}, workers ${(r.workers.utilization * 100).toFixed(0)} % busy`,
  );
}, 1000);

/** Busy and total CPU time of the whole machine, in seconds (Linux /proc/stat), or null. */
function machineCpu() {
  try {
    const fields = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const idle = fields[3] + (fields[4] ?? 0);
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: (total - idle) / 100, total: total / 100 };
  } catch {
    return null;
  }
}

let report;
let machineFrom = null;
let machine = null;
const result = await new Promise((resolve) => {
  child.on('message', (message) => {
    if (message.type === 'joined') {
      // Measure the steady state: start afresh once every bot has joined.
      server.resetStats();
      machineFrom = machineCpu();
      console.log(`all ${message.players} bots joined; measuring from here`);
    } else if (message.type === 'measured') {
      report = server.report(); // the same window as the bots', before they leave
      const to = machineCpu();
      if (machineFrom !== null && to !== null) {
        const seconds = (to.total - machineFrom.total) / cores;
        machine = { cores, busyCores: (to.busy - machineFrom.busy) / seconds };
      }
    } else if (message.type === 'result') {
      resolve(message.result);
    }
  });
  child.on('exit', (code) => resolve(code === 0 ? null : { failed: `bots exited with ${code}` }));
});
clearInterval(progress);
report ??= server.report();
await server.close();
let failed = true;
if (result === null || result.failed !== undefined) {
  console.error('bots failed:', result?.failed ?? 'no result');
} else {
  if (machine !== null) {
    // What other processes on the machine used meanwhile: it competes with all of the above.
    machine.otherCores = Math.max(0, machine.busyCores - report.cpu.process - result.cpu.total);
  }
  console.log(`\n${formatBots(result)}\n\n${formatReport(report)}`);
  if (machine !== null)
    console.log(
      `machine             ${machine.busyCores.toFixed(2)} of ${machine.cores} cores busy: server process ${report.cpu.process.toFixed(2)}, ` +
        `bots ${result.cpu.total.toFixed(2)}, other processes ${machine.otherCores.toFixed(2)}`,
    );
  if (env.REPORT === 'json')
    console.log(`REPORT ${JSON.stringify({ server: report, bots: result, machine })}`);
  failed = result.joined !== bots;
}
process.exitCode = failed ? 1 : 0;
