// The http section of `pnpm bench`: examples/http-hello on every iomux backend against node:http
// (examples/http-hello/node-http-hello.mjs) and the minimal C server (bench/native/c-http), under
// wrk with keep-alive, without and with 16 requests pipelined per write. One server process at a
// time; the measurement itself (warm-up, wrk run, server CPU from /proc/<pid>/stat) is the
// example's own (examples/http-hello/bench.mjs).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pipelineScript, wrkRound } from '../examples/http-hello/bench.mjs';
import { startServer, stopServer } from './servers.mjs';
import { fmt, interleaved, median, ratio, spreadOf } from './stats.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('..', import.meta.url));
const C_HTTP = `${here}native/build/c-http`;
const CONNECTIONS = 50;
const DEPTH = 16;

/** The contestants: http-hello per backend, node:http, and c-http when it is built. */
function httpContestants(backends) {
  const list = backends.map((backend) => ({
    name: `iomux-${backend}`,
    cmd: [process.execPath, [`${root}examples/http-hello/server.mjs`]],
    env: { IOMUX_BACKEND: backend, PORT: '0', HOST: '127.0.0.1' },
  }));
  list.push({
    name: 'node-http',
    cmd: [process.execPath, [`${root}examples/http-hello/node-http-hello.mjs`]],
    env: { PORT: '0', HOST: '127.0.0.1' },
  });
  if (existsSync(C_HTTP)) list.push({ name: 'c-http', cmd: [C_HTTP, ['--port', '0']], env: {} });
  else console.log(`http: ${C_HTTP} is not built (make -C bench/native); no C reference row`);
  return list;
}

/**
 * Runs every workload on every contestant, `rounds` times each with the contestants interleaved
 * round by round, and returns the rows (median of the rounds with their range, req/s and req per
 * server CPU-second, and the figures by round for paired ratios).
 * @param {{ quick: boolean, rounds: number, backends: string[] }} options
 */
export async function runHttpBench({ quick, rounds, backends }) {
  const seconds = quick ? 1 : 3;
  const workloads = [
    { name: `GET keep-alive x${CONNECTIONS}`, pipeline: 1, script: undefined },
    {
      name: `GET pipelined d${DEPTH} x${CONNECTIONS}`,
      pipeline: DEPTH,
      script: pipelineScript(DEPTH),
    },
  ];
  const rows = [];
  const contestants = httpContestants(backends);
  for (const workload of workloads) {
    const byContestant = await interleaved(contestants, rounds, async (contestant) => {
      const server = await startServer(contestant);
      try {
        return wrkRound(server.port, server.pid, {
          seconds,
          connections: CONNECTIONS,
          threads: 1,
          script: workload.script,
        });
      } finally {
        await stopServer(server);
      }
    });
    contestants.forEach((contestant, i) => {
      const all = byContestant[i];
      const samples = all.filter((s) => s.failed === undefined);
      const failure = all.find((s) => s.failed !== undefined)?.failed;
      const rps = samples.map((s) => s.rps);
      const perCpu = samples.map((s) => s.perCpu);
      const row = {
        workload: workload.name,
        pipeline: workload.pipeline,
        connections: CONNECTIONS,
        contestant: contestant.name,
        rounds: samples.length,
        failures: rounds - samples.length,
        errors: samples.reduce((n, s) => n + s.errors, 0),
        per_sec: median(rps),
        ...spreadOf('per_sec', rps),
        per_server_cpu_s: median(perCpu),
        ...spreadOf('per_server_cpu_s', perCpu),
        // By round, for ratios paired round by round (stats.mjs ratioOf); null where one failed.
        by_round: {
          per_sec: all.map((s) => (s.failed === undefined ? s.rps : null)),
          per_server_cpu_s: all.map((s) => (s.failed === undefined ? s.perCpu : null)),
        },
        // wrk's latency describes whole pipelined batches, so it is kept for keep-alive only.
        p99_ms: workload.pipeline === 1 ? median(samples.map((x) => toMs(x.p99))) : undefined,
        failure,
      };
      rows.push(row);
      console.log(
        `${workload.name.padEnd(28)} ${contestant.name.padEnd(18)} ${Math.round(row.per_sec).toString().padStart(9)} req/s ` +
          `(${Math.round(row.per_sec_min)}–${Math.round(row.per_sec_max)})  ${Math.round(row.per_server_cpu_s)} req/server-cpu-s  errors ${row.errors}` +
          (failure ? `  FAILED: ${failure}` : ''),
      );
    });
  }
  return { seconds, connections: CONNECTIONS, rows };
}

// The targets name epoll and io_uring; the other backends are in http.md.
const TARGET_BACKENDS = ['iomux-epoll', 'iomux-io_uring'];
/** wrk's "812.00us" / "1.23ms" / "2.01s" in milliseconds (NaN when wrk printed none). */
function toMs(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text ?? '');
  if (m === null) return Number.NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2]];
}

const iomuxRows = (rows) => rows.filter((r) => TARGET_BACKENDS.includes(r.contestant));

/** Each iomux row with its ratios to node-http and c-http of the same workload. */
function withRatios(rows) {
  return rows.map((r) => {
    const base = (name) => rows.find((x) => x.workload === r.workload && x.contestant === name);
    return {
      ...r,
      vs_node: ratio(r, base('node-http'), 'per_sec'),
      vs_c: ratio(r, base('c-http'), 'per_sec'),
      vs_c_cpu: ratio(r, base('c-http'), 'per_server_cpu_s'),
    };
  });
}

/** The measured values of the report's HTTP targets, by target name (see report.mjs). */
export function httpTargets({ rows }) {
  const all = withRatios(rows);
  const line = (key) =>
    iomuxRows(all)
      .map(
        (r) =>
          `${r.contestant.slice(6)} ${r.pipeline > 1 ? `d${r.pipeline}` : 'keep-alive'} ${r[key]}`,
      )
      .join(', ');
  return { http_node: line('vs_node'), http_c: line('vs_c') };
}

export function renderHttpMarkdown(result) {
  const lines = [
    `## HTTP: examples/http-hello on iomux vs node:http vs a minimal C server (wrk -t1 -c${result.connections} -d${result.seconds}s)`,
    '',
    'Median of the rounds, with the range of the rounds after it. Ratios are req/s to the same workload’s node-http and c-http rows; “÷ c-http CPU-s” compares requests per server CPU-second.',
    '',
    '| workload | server | req/s (range) | req per server CPU-s (range) | ÷ node-http | ÷ c-http | ÷ c-http CPU-s | p99 (median) | errors + failed rounds |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of withRatios(result.rows)) {
    lines.push(
      `| ${r.workload} | ${r.contestant} | ${r.failure ? 'failed' : fmt(r.per_sec)} (${fmt(r.per_sec_min)}–${fmt(r.per_sec_max)}) | ${fmt(r.per_server_cpu_s)} (${fmt(r.per_server_cpu_s_min)}–${fmt(r.per_server_cpu_s_max)}) | ${r.vs_node} | ${r.vs_c} | ${r.vs_c_cpu} | ${r.p99_ms === undefined ? '–' : `${r.p99_ms.toFixed(2)} ms`} | ${r.errors + r.failures} |`,
    );
  }
  return lines.join('\n');
}
