// The ecosystem benchmark: TLS echo and HTTP on iomux (node:tls / node:http over toDuplex) against
// the same code on node:net, in one run. Each server runs in its own process; the load client
// runs in another. Server CPU comes from /proc/<pid>/stat, so rows compare work per CPU-second.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Spawns `node <script> ...args`; resolves with the child and the first stdout line matching. */
function spawnNode(script, args, env, pattern) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`${here}${script}`, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = pattern.exec(out);
      if (match) resolve({ child, match });
    });
    child.on('exit', (code) =>
      reject(new Error(`${script} ${args.join(' ')} exited with ${code}: ${out}`)),
    );
  });
}

async function stop(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** One round of one contestant: requests per second and per server CPU-second. */
async function measure(kind, variant, backend, seconds, connections) {
  const env = backend === undefined ? {} : { IOMUX_BACKEND: backend };
  const server = await spawnNode('servers.mjs', [kind, variant], env, /listening (\d+)/);
  try {
    const port = server.match[1];
    const cpuBefore = cpuSeconds(server.child.pid);
    const client = await spawnNode(
      'client.mjs',
      [kind, port, String(seconds), String(connections)],
      {},
      /^(\{.*\})$/m,
    );
    const result = JSON.parse(client.match[1]);
    const cpu = cpuSeconds(server.child.pid) - cpuBefore;
    await stop(client.child).catch(() => undefined);
    return { ...result, server_cpu_s: cpu, per_server_cpu_s: cpu > 0 ? result.requests / cpu : 0 };
  } finally {
    await stop(server.child);
  }
}

/** "min–max" of a row's rounds for one measure (the median is the row's own value). */
const spread = (row, key) =>
  `${Math.round(row[`${key}_min`] ?? row[key])}–${Math.round(row[`${key}_max`] ?? row[key])}`;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/**
 * Runs every workload for every contestant (`rounds` times, median kept) and returns the rows.
 * @param {{ quick: boolean, rounds: number, backends: string[] }} options
 */
export async function runEcosystemBench({ quick, rounds, backends }) {
  const seconds = quick ? 2 : 3;
  const workloads = [
    { kind: 'tls', name: 'TLS 1.3 echo 1 KiB x50', connections: 50 },
    { kind: 'http', name: 'HTTP/1.1 keep-alive GET x50', connections: 50 },
    { kind: 'ws', name: 'WebSocket (ws) echo 1 KiB x50', connections: 50 },
  ];
  const contestants = [
    ...backends.map((backend) => ({ name: `iomux-${backend}`, variant: 'iomux', backend })),
    { name: 'node-net', variant: 'node', backend: undefined },
  ];
  const rows = [];
  for (const workload of workloads) {
    for (const contestant of contestants) {
      const samples = [];
      for (let round = 0; round < rounds; round += 1) {
        samples.push(
          await measure(
            workload.kind,
            contestant.variant,
            contestant.backend,
            seconds,
            workload.connections,
          ),
        );
      }
      const perSec = samples.map((s) => s.per_sec);
      const perCpu = samples.map((s) => s.per_server_cpu_s);
      const row = {
        workload: workload.name,
        contestant: contestant.name,
        rounds: samples.length,
        per_sec: median(perSec),
        per_sec_min: Math.min(...perSec),
        per_sec_max: Math.max(...perSec),
        per_server_cpu_s: median(perCpu),
        per_server_cpu_s_min: Math.min(...perCpu),
        per_server_cpu_s_max: Math.max(...perCpu),
        errors: samples.reduce((n, s) => n + s.errors, 0),
      };
      rows.push(row);
      console.log(
        `${workload.name.padEnd(28)} ${contestant.name.padEnd(18)} ${Math.round(row.per_sec).toString().padStart(9)} req/s  ` +
          `${Math.round(row.per_server_cpu_s)} req/server-cpu-s (${spread(row, 'per_server_cpu_s')})  errors ${row.errors}`,
      );
    }
  }
  const handoffs = [];
  for (const backend of backends) {
    const { match, child } = await spawnNode(
      'handoff.mjs',
      [String(quick ? 50 : 200)],
      { IOMUX_BACKEND: backend },
      /^(\{.*\})$/m,
    );
    await stop(child).catch(() => undefined);
    const result = JSON.parse(match[1]);
    handoffs.push(result);
    console.log(
      `handoff ${backend.padEnd(12)} ${result.moves} moves: median ${result.median_ms.toFixed(3)} ms, ` +
        `p99 ${result.p99_ms.toFixed(3)} ms, max ${result.max_ms.toFixed(3)} ms, bytes ok ${result.ok}`,
    );
  }
  return { rows, handoffs };
}

/** The rows as a markdown table, each iomux row also as a ratio to node-net of its workload. */
export function renderEcosystemMarkdown({ rows, handoffs }) {
  const lines = [
    '## TLS, HTTP and WebSocket on iomux (node:tls / node:http / ws over toDuplex) vs node:net',
    '',
    'Median of the rounds, with the range of the rounds after it.',
    '',
    '| workload | server | req/s (range) | req per server CPU-s (range) | vs node-net (CPU-s) | errors |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
  ];
  for (const row of rows) {
    const node = rows.find((r) => r.workload === row.workload && r.contestant === 'node-net');
    const ratio =
      node && node.per_server_cpu_s > 0
        ? (row.per_server_cpu_s / node.per_server_cpu_s).toFixed(2)
        : '–';
    lines.push(
      `| ${row.workload} | ${row.contestant} | ${Math.round(row.per_sec)} (${spread(row, 'per_sec')}) | ${Math.round(row.per_server_cpu_s)} (${spread(row, 'per_server_cpu_s')}) | ${ratio}× | ${row.errors} |`,
    );
  }
  lines.push(
    '',
    '## Connection handoff: conn.transfer() in the main thread to reactor.adopt() in a worker',
    '',
    '| backend | moves | median ms | p99 ms | max ms | every byte echoed |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  );
  for (const h of handoffs) {
    lines.push(
      `| ${h.backend} | ${h.moves} | ${h.median_ms.toFixed(3)} | ${h.p99_ms.toFixed(3)} | ${h.max_ms.toFixed(3)} | ${h.ok} |`,
    );
  }
  return lines.join('\n');
}
