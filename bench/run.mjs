// pnpm bench [--quick] [--rounds N] [--only name,name] [--no-game] [--no-eco] [--no-http] [--no-resp]
//            [--no-broadcast]
// --quick: 1 round of 2 s per cell (1 s under wrk, small -n for redis-benchmark), the 64 B echo
// and the pipelined 64 B and 4 KiB points.
// Echo benchmarks of every available iomux backend against node:net and a C epoll server, in one
// run, with the native load generator. Writes bench/results/<mode>.json, .md and .svg.
// Then the game-server benchmark (bench/game.mjs: 1000 players at 60 Hz, workers saturated, each
// Linux backend), unless --no-game; its section is appended to the report and written to
// bench/results/game.json and .md. `--only game` runs just that one.
// Then the ecosystem benchmark (bench/ecosystem: TLS echo, node:http and ws on iomux vs node:net,
// and the conn.transfer() handoff time per backend),
// unless --no-eco; written to bench/results/ecosystem.json and .md. `--only eco` runs just that.
// Then the http section (bench/http.mjs: examples/http-hello on each backend vs node:http vs the C
// server bench/native/c-http, under wrk, keep-alive and 16 deep pipelined) unless --no-http, and
// the resp section (bench/resp.mjs: examples/resp-server on each backend vs redis-server under
// redis-benchmark -P 1 and -P 16) unless --no-resp; written to bench/results/http.* and resp.*,
// and their ratios into the report's targets table. `--only http,resp` runs just those. wrk,
// redis-benchmark and redis-server are found on PATH or installed by bench/tools.mjs.
// Then the broadcast section (bench/broadcast.mjs: 1 KiB to 1000 recipients, reactor.broadcast()
// against a loop of write(), time, JS heap and queue memory) unless --no-broadcast; written to
// bench/results/broadcast.*. `--only broadcast` runs just that.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { listBackends } from '@iomux/core';
import { echoContestants, runLoadgen, startServer, stopServer } from './servers.mjs';
import { renderMeasuredTargets, renderReport } from './report.mjs';
import { renderGameMarkdown, runGameBench } from './game.mjs';
import { renderEcosystemMarkdown, runEcosystemBench } from './ecosystem/index.mjs';
import { httpTargets, renderHttpMarkdown, runHttpBench } from './http.mjs';
import { renderRespMarkdown, respTargets, runRespBench } from './resp.mjs';
import { interleaved, median, pairedOverhead } from './stats.mjs';
import { ensureTools } from './tools.mjs';
import { renderBroadcastMarkdown, runBroadcastBench } from './broadcast.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const flag = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const rounds = Number(flag('--rounds', quick ? 1 : 3));
const only = flag('--only', undefined)?.split(',');
const withGame = !argv.includes('--no-game') && (only === undefined || only.includes('game'));
const withEco = !argv.includes('--no-eco') && (only === undefined || only.includes('eco'));
const withHttp = !argv.includes('--no-http') && (only === undefined || only.includes('http'));
const withResp = !argv.includes('--no-resp') && (only === undefined || only.includes('resp'));
const withBroadcast =
  !argv.includes('--no-broadcast') && (only === undefined || only.includes('broadcast'));
const SECTIONS = ['game', 'eco', 'http', 'resp', 'broadcast'];
const echoWanted = only === undefined || only.some((name) => !SECTIONS.includes(name));
const duration = quick ? 2 : 3;

/** Workloads: connections, message size, pipeline depth. */
const workloads = quick
  ? [
      { name: 'echo 64 B x50', connections: 50, size: 64, pipeline: 1 },
      { name: 'echo 64 B x1000', connections: 1000, size: 64, pipeline: 1 },
      { name: 'pipelined 64 B x1000 d16', connections: 1000, size: 64, pipeline: 16 },
      { name: 'pipelined 4 KiB x1000 d16', connections: 1000, size: 4096, pipeline: 16 },
    ]
  : [
      { name: 'echo 64 B x1', connections: 1, size: 64, pipeline: 1 },
      { name: 'echo 64 B x50', connections: 50, size: 64, pipeline: 1 },
      { name: 'echo 64 B x1000', connections: 1000, size: 64, pipeline: 1 },
      { name: 'echo 64 B x10000', connections: 10000, size: 64, pipeline: 1 },
      { name: 'echo 4 KiB x50', connections: 50, size: 4096, pipeline: 1 },
      { name: 'echo 4 KiB x1000', connections: 1000, size: 4096, pipeline: 1 },
      { name: 'pipelined 64 B x1000 d16', connections: 1000, size: 64, pipeline: 16 },
      { name: 'pipelined 4 KiB x1000 d16', connections: 1000, size: 4096, pipeline: 16 },
    ];

const available = listBackends()
  .filter((b) => b.available)
  .map((b) => b.name);
const contestants = echoWanted
  ? echoContestants(available).filter((c) => only === undefined || only.includes(c.name))
  : [];

const results = [];
console.log(
  `iomux bench (${quick ? 'quick' : 'full'}): ${rounds} round(s) of ${duration} s; contestants: ${contestants.map((c) => c.name).join(', ')}`,
);
/** Messages per server CPU-second of one load generator result (0 when it sampled no CPU). */
const perCpuOf = (r) => (r.server_cpu_s > 0 ? r.messages / r.server_cpu_s : 0);

/** One round of `workload` against a fresh server of `contestant`: the load generator's result. */
async function echoRound(contestant, workload) {
  const server = await startServer(contestant);
  try {
    return await runLoadgen([
      '--host',
      '127.0.0.1',
      '--port',
      String(server.port),
      '--connections',
      String(workload.connections),
      '--size',
      String(workload.size),
      '--pipeline',
      String(workload.pipeline),
      '--duration',
      String(duration),
      '--warmup',
      '1',
      '--threads',
      '1',
      '--sources',
      String(workload.connections > 5000 ? 4 : 1),
      '--server-pid',
      String(server.pid),
    ]);
  } finally {
    await stopServer(server);
  }
}

for (const workload of workloads) {
  const eligible = contestants.filter((c) => workload.connections <= c.maxConnections);
  const byContestant = await interleaved(eligible, rounds, (contestant) =>
    echoRound(contestant, workload),
  );
  eligible.forEach((contestant, i) => {
    const samples = byContestant[i];
    const ok = samples.filter((s) => s.failed === undefined);
    const rates = ok.map((s) => s.msgs_per_sec);
    const perCpu = ok.map(perCpuOf);
    const row = {
      workload: workload.name,
      ...workload,
      contestant: contestant.name,
      rounds: samples.length,
      failures: samples.length - ok.length,
      errors: ok.reduce(
        (n, s) => n + (s.errors?.connect ?? 0) + (s.errors?.reset ?? 0) + (s.errors?.verify ?? 0),
        0,
      ),
      msgs_per_sec: median(rates),
      min: rates.length ? Math.min(...rates) : 0,
      max: rates.length ? Math.max(...rates) : 0,
      msgs_per_server_cpu_s: median(perCpu),
      // By round, for ratios paired round by round (stats.mjs ratioOf); null where a round failed.
      by_round: {
        msgs_per_sec: samples.map((s) => (s.failed === undefined ? s.msgs_per_sec : null)),
        msgs_per_server_cpu_s: samples.map((s) => (s.failed === undefined ? perCpuOf(s) : null)),
      },
      p99_us: median(ok.map((s) => s.latency_us?.p99 ?? 0)),
      server_rss_kb: median(ok.map((s) => s.server_rss_kb ?? 0)),
      failure: samples.find((s) => s.failed)?.failed,
    };
    results.push(row);
    console.log(
      `${workload.name.padEnd(28)} ${contestant.name.padEnd(18)} ${Math.round(row.msgs_per_sec).toString().padStart(9)} msg/s ` +
        `(spread ${Math.round(row.min)}–${Math.round(row.max)})  p99 ${row.p99_us} µs  ${Math.round(row.msgs_per_server_cpu_s)} msg/server-cpu-s` +
        (row.failure ? `  FAILED: ${row.failure}` : ''),
    );
  });
}

/** Runs clients.mjs in a child process; resolves with its first JSON line (and the child). */
function clients(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [new URL('./clients.mjs', import.meta.url).pathname, ...args],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ result: JSON.parse(line), child });
    });
    child.on('exit', (code) => reject(new Error(`clients.mjs ${args[0]} exited with ${code}`)));
  });
}

const rssKb = (pid) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

// Metrics on vs off: the same epoll echo server with and without per-batch timing, interleaved
// round by round (stats.mjs interleaved: on first in even rounds, off first in odd ones), and the
// overhead is the median of each round's own on ÷ off: a paired figure, which the machine's drift
// between rounds moves far less than the ratio of two medians.
const metricsRows = [];
const epollContestant = contestants.find((c) => c.name === 'iomux-epoll');
if (epollContestant !== undefined) {
  for (const workload of [
    workloads.find((w) => w.connections === 1000 && w.pipeline === 1 && w.size === 64),
    workloads.find((w) => w.pipeline === 16),
  ]) {
    if (workload === undefined) continue;
    const [onRounds, offRounds] = await interleaved(
      ['1', '0'],
      Math.max(5, rounds),
      async (mode) => {
        const env = { ...epollContestant.env, IOMUX_METRICS: mode };
        const r = await echoRound({ ...epollContestant, env }, workload);
        return r.server_cpu_s > 0 ? perCpuOf(r) : r.msgs_per_sec;
      },
    );
    const measured = (x) => typeof x === 'number';
    const samples = { on: onRounds.filter(measured), off: offRounds.filter(measured) };
    const on = median(samples.on);
    const off = median(samples.off);
    const overhead = pairedOverhead(onRounds, offRounds);
    metricsRows.push({ workload: workload.name, on, off, ...overhead });
    console.log(
      `${`metrics on/off ${workload.name}`.padEnd(40)} on ${Math.round(on)} off ${Math.round(off)} msg/server-cpu-s → overhead ${overhead.overhead_pct.toFixed(1)}% (rounds ${overhead.per_round_pct.map((x) => x.toFixed(1)).join(', ')})`,
    );
  }
}

// Connection churn: connect, echo 64 B, close, as fast as 32 parallel client loops can.
const churnRows = [];
for (const contestant of contestants) {
  const samples = [];
  for (let round = 0; round < rounds; round += 1) {
    const server = await startServer(contestant);
    try {
      const { result } = await clients(['churn', String(server.port), String(duration), '32']);
      samples.push(result);
    } finally {
      await stopServer(server);
    }
  }
  const rates = samples.map((s) => s.per_sec);
  const row = {
    contestant: contestant.name,
    per_sec: median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    errors: samples.reduce((n, s) => n + s.errors, 0),
  };
  churnRows.push(row);
  console.log(
    `${'churn (connect+echo+close)'.padEnd(28)} ${contestant.name.padEnd(18)} ${Math.round(row.per_sec).toString().padStart(9)} conn/s  errors ${row.errors}`,
  );
}

// Memory per idle connection: server RSS before and after opening N idle connections.
const idleCount = quick ? 2000 : 10000;
const idleRows = [];
for (const contestant of contestants) {
  if (idleCount > contestant.maxConnections) continue;
  const server = await startServer(contestant);
  try {
    await new Promise((r) => setTimeout(r, 300));
    const before = rssKb(server.pid);
    const { result, child } = await clients(['idle', String(server.port), String(idleCount), '4']);
    await new Promise((r) => setTimeout(r, 500));
    const after = rssKb(server.pid);
    child.stdin.end();
    const row = {
      contestant: contestant.name,
      connections: result.open,
      errors: result.errors,
      bytes_per_connection: ((after - before) * 1024) / Math.max(1, result.open),
      rss_before_kb: before,
      rss_after_kb: after,
    };
    idleRows.push(row);
    console.log(
      `${`idle x${idleCount}`.padEnd(28)} ${contestant.name.padEnd(18)} ${Math.round(row.bytes_per_connection).toString().padStart(9)} B/connection (RSS ${before} → ${after} KiB)`,
    );
  } finally {
    await stopServer(server);
  }
}

const game = withGame ? await runGameBench({ quick }) : undefined;
if (game !== undefined) {
  const gameMarkdown = renderGameMarkdown(game);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const gameBase = new URL('./results/game', import.meta.url).pathname;
  writeFileSync(`${gameBase}.json`, JSON.stringify(game, null, 2));
  writeFileSync(`${gameBase}.md`, `# iomux game-server benchmark\n\n${gameMarkdown}\n`);
  console.log(`\n${gameMarkdown}\n\nreport: bench/results/game.md (+ .json)`);
}

const ecosystem = withEco
  ? await runEcosystemBench({ quick, rounds, backends: available })
  : undefined;
if (ecosystem !== undefined) {
  const ecoMarkdown = renderEcosystemMarkdown(ecosystem);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const ecoBase = new URL('./results/ecosystem', import.meta.url).pathname;
  writeFileSync(`${ecoBase}.json`, JSON.stringify(ecosystem, null, 2));
  writeFileSync(`${ecoBase}.md`, `# iomux ecosystem benchmark\n\n${ecoMarkdown}\n`);
  console.log(`\n${ecoMarkdown}\n\nreport: bench/results/ecosystem.md (+ .json)`);
}

/** Writes a section's result to bench/results/<name>.json and .md. */
function writeSection(name, title, result, markdown) {
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const base = new URL(`./results/${name}`, import.meta.url).pathname;
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 2));
  writeFileSync(`${base}.md`, `# ${title}\n\n${markdown}\n`);
  console.log(`\n${markdown}\n\nreport: bench/results/${name}.md (+ .json)`);
}

if (withBroadcast) {
  const broadcast = await runBroadcastBench({ quick, rounds, backends: available });
  if (broadcast.rows.length > 0)
    writeSection(
      'broadcast',
      'iomux broadcast benchmark',
      broadcast,
      renderBroadcastMarkdown(broadcast),
    );
}

// Linux only: wrk, redis and the C server are epoll programs, and tools.mjs installs Debian packages.
const toolSections = [withHttp && 'http', withResp && 'resp'].filter(Boolean);
const tools =
  toolSections.length > 0 && process.platform === 'linux'
    ? ensureTools(toolSections)
    : { ready: new Set(), skipped: new Map() };
if (toolSections.length > 0 && process.platform !== 'linux')
  console.log(`bench: skipping the ${toolSections.join(' and ')} section(s): Linux only`);
/** Measured values of the report's targets, by key (see TARGETS in report.mjs). */
const measured = {};
if (tools.ready.has('http')) {
  const http = await runHttpBench({ quick, rounds, backends: available });
  const targets = httpTargets(http);
  Object.assign(measured, targets);
  const md = `${renderHttpMarkdown(http)}\n\n${renderMeasuredTargets(targets)}`;
  writeSection('http', 'iomux HTTP benchmark', http, md);
}
if (tools.ready.has('resp')) {
  const resp = await runRespBench({ quick, rounds, backends: available });
  const targets = respTargets(resp);
  Object.assign(measured, targets);
  const md = `${renderRespMarkdown(resp)}\n\n${renderMeasuredTargets(targets)}`;
  writeSection('resp', 'iomux RESP benchmark', resp, md);
}
for (const [section, why] of tools.skipped)
  for (const key of section === 'http' ? ['http_node', 'http_c'] : [section])
    measured[key] = `skipped: ${why}`;

const meta = {
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
  rounds,
  duration_s: duration,
  node: process.version,
  cpus: `${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown'}`,
  backends: available,
};
if (echoWanted) {
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const base = new URL(`./results/${meta.mode}`, import.meta.url).pathname;
  writeFileSync(
    `${base}.json`,
    JSON.stringify(
      { meta, results, churn: churnRows, idle: idleRows, metrics: metricsRows, game },
      null,
      2,
    ),
  );
  const { markdown, svg } = renderReport(meta, results, churnRows, idleRows, metricsRows, measured);
  const gameSection = game === undefined ? '' : `\n\n${renderGameMarkdown(game)}\n`;
  writeFileSync(`${base}.md`, `${markdown}${gameSection}`);
  writeFileSync(`${base}.svg`, svg);
  console.log(`\nreport: bench/results/${meta.mode}.md (+ .json, .svg)`);
}
