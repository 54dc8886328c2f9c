// The resp section of `pnpm bench`: examples/resp-server on every iomux backend against a real
// redis-server, under redis-benchmark -c 50 with -P 1 and -P 16. One server process at a time;
// each test (ping, set, get) is its own redis-benchmark run so the server CPU seconds over it
// (/proc/<pid>/stat) belong to that test. Starting, measuring and counting error replies is the
// example's own code (examples/resp-server/bench.mjs).
import { measureRuns, redisServer, respServer } from '../examples/resp-server/bench.mjs';
import { fmt, interleaved, median, ratio, spreadOf } from './stats.mjs';

/** The samples' figures by their round (null for a round without one), for ratioOf. */
function byRound(samples, figure) {
  const out = [];
  for (const s of samples) out[s.round] = figure(s);
  return Array.from(out, (x) => x ?? null);
}

const CLIENTS = 50;
const TESTS = ['ping', 'set', 'get'];

/**
 * Runs every test at both pipeline depths on every contestant, `rounds` times each (a fresh
 * server per round, warmed up first; the contestants interleaved round by round), and returns
 * the rows: median of the rounds with their range, and the figures by round for paired ratios.
 * @param {{ quick: boolean, rounds: number, backends: string[] }} options
 */
export async function runRespBench({ quick, rounds, backends }) {
  const depths = [
    { pipeline: 1, requests: quick ? 20_000 : 100_000 },
    { pipeline: 16, requests: quick ? 100_000 : 1_000_000 },
  ];
  const warmup = { tests: TESTS.join(','), requests: quick ? 10_000 : 100_000, pipeline: 16 };
  const runs = [
    { ...warmup, clients: CLIENTS },
    ...depths.flatMap((d) => TESTS.map((tests) => ({ ...d, tests, clients: CLIENTS }))),
  ];
  const contestants = [...backends.map((b) => respServer(b)), redisServer];
  /** "<test> -P <depth>" → contestant → samples */
  const cells = new Map();
  const measuredBy = await interleaved(contestants, rounds, async (contestant) =>
    (await measureRuns(contestant, runs)).slice(1),
  );
  contestants.forEach((contestant, c) => {
    measuredBy[c].forEach((result, round) => {
      if (result.failed !== undefined)
        console.log(`resp ${contestant.name}: FAILED: ${result.failed}`);
      const measured = result.failed !== undefined ? runs.slice(1).map(() => result) : result;
      measured.forEach((m, i) => {
        const how = runs[i + 1];
        if (m.warnings) console.log(`resp ${contestant.name}: ${m.warnings}`);
        const entries = m.failed
          ? [[how.tests.toUpperCase(), undefined]]
          : [...m.results.entries()];
        for (const [test, value] of entries) {
          const key = `${test} -P ${how.pipeline}`;
          if (!cells.has(key)) cells.set(key, new Map());
          const cell = cells.get(key);
          if (!cell.has(contestant.name)) cell.set(contestant.name, []);
          cell.get(contestant.name).push({
            round,
            pipeline: how.pipeline,
            failed: m.failed,
            rps: value?.rps ?? 0,
            p50: value?.p50,
            // A run's CPU covers all its tests (-t ping runs PING_INLINE and PING_MBULK).
            perCpu: m.cpu > 0 ? (how.requests * m.results.size) / m.cpu : 0,
            errors: m.errors ?? 0,
          });
        }
      });
    });
  });
  const rows = [];
  for (const [workload, byContestant] of cells) {
    for (const [contestant, samples] of byContestant) {
      const ok = samples.filter((s) => s.failed === undefined);
      const rps = ok.map((s) => s.rps);
      const perCpu = ok.map((s) => s.perCpu);
      const row = {
        workload,
        pipeline: samples[0].pipeline,
        clients: CLIENTS,
        contestant,
        rounds: samples.length,
        failures: samples.length - ok.length,
        errors: ok.reduce((n, s) => n + (Number.isNaN(s.errors) ? 1 : s.errors), 0),
        per_sec: median(rps),
        ...spreadOf('per_sec', rps),
        per_server_cpu_s: median(perCpu),
        ...spreadOf('per_server_cpu_s', perCpu),
        // By round, for ratios paired round by round (stats.mjs ratioOf); a hole where one failed.
        by_round: {
          per_sec: byRound(ok, (s) => s.rps),
          per_server_cpu_s: byRound(ok, (s) => s.perCpu),
        },
        p50_ms: ok[0]?.p50,
        failure: samples.find((s) => s.failed)?.failed,
      };
      rows.push(row);
      console.log(
        `${`RESP ${workload}`.padEnd(28)} ${contestant.padEnd(18)} ${Math.round(row.per_sec).toString().padStart(9)} req/s ` +
          `(${Math.round(row.per_sec_min)}–${Math.round(row.per_sec_max)})  ${Math.round(row.per_server_cpu_s)} req/server-cpu-s  errors ${row.errors}` +
          (row.failure ? `  FAILED: ${row.failure}` : ''),
      );
    }
  }
  return {
    clients: CLIENTS,
    requests: Object.fromEntries(depths.map((d) => [`P${d.pipeline}`, d.requests])),
    rows,
  };
}

function withRatios(rows) {
  return rows.map((r) => {
    const redis = rows.find((x) => x.workload === r.workload && x.contestant === 'redis-server');
    return {
      ...r,
      vs_redis: ratio(r, redis, 'per_sec'),
      vs_redis_cpu: ratio(r, redis, 'per_server_cpu_s'),
    };
  });
}

/** The measured value of the report's RESP target: per backend, the range of its -P 16 ratios. */
export function respTargets({ rows }) {
  // The targets name epoll and io_uring; the other backends are in resp.md.
  const all = withRatios(rows).filter(
    (r) => r.pipeline === 16 && ['iomux-epoll', 'iomux-io_uring'].includes(r.contestant),
  );
  const byBackend = new Map();
  for (const r of all) {
    if (r.vs_redis === '–') continue;
    const list = byBackend.get(r.contestant) ?? [];
    list.push(Number.parseFloat(r.vs_redis));
    byBackend.set(r.contestant, list);
  }
  return {
    resp: [...byBackend]
      .map(
        ([name, xs]) =>
          `${name.slice(6)} ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}×`,
      )
      .join(', '),
  };
}

export function renderRespMarkdown(result) {
  const lines = [
    `## RESP: examples/resp-server on iomux vs redis-server (redis-benchmark -c ${result.clients}, -n ${result.requests.P1} at -P 1, ${result.requests.P16} at -P 16)`,
    '',
    'Median of the rounds, with the range of the rounds after it. Ratios are to redis-server in the same run, in req/s and in requests per server CPU-second; errors are error replies (INFO total_error_replies) and failed runs.',
    '',
    '| test | server | req/s (range) | req per server CPU-s (range) | ÷ redis | ÷ redis CPU-s | p50 ms | errors |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of withRatios(result.rows)) {
    lines.push(
      `| ${r.workload} | ${r.contestant} | ${r.failure ? 'failed' : fmt(r.per_sec)} (${fmt(r.per_sec_min)}–${fmt(r.per_sec_max)}) | ${fmt(r.per_server_cpu_s)} (${fmt(r.per_server_cpu_s_min)}–${fmt(r.per_server_cpu_s_max)}) | ${r.vs_redis} | ${r.vs_redis_cpu} | ${r.p50_ms ?? '–'} | ${r.errors + r.failures} |`,
    );
  }
  return lines.join('\n');
}
