// Runs redis-benchmark against resp-server (iomux) and against a real redis-server started on
// another port, in the same run, one server at a time, and prints requests/s of both with ratios.
// Needs redis-benchmark and redis-server (Debian: apt-get install -y redis-tools redis-server);
// without them, says so and exits 0.
//   BENCH_REQUESTS (default 100000), BENCH_CLIENTS (default 50), BENCH_TESTS (default
//   ping,set,get), BENCH_PIPELINE (default 1), BENCH_ROUNDS (default 1; best round reported),
//   IOMUX_BACKEND: backend of the iomux server (default: the best available).
// Errors are counted from each server's INFO total_error_replies before and after, since
// redis-benchmark does not report error replies by default.
// `pnpm bench` (bench/resp.mjs) imports respServer(), redisServer and measureRuns() from here and runs
// the same measurement on every backend, with -P 1 and -P 16.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const requests = Number(process.env.BENCH_REQUESTS ?? 100_000);
const clients = Number(process.env.BENCH_CLIENTS ?? 50);
const tests = process.env.BENCH_TESTS ?? 'ping,set,get';
const pipeline = Number(process.env.BENCH_PIPELINE ?? 1);
const rounds = Number(process.env.BENCH_ROUNDS ?? 1);

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Sends one inline command and resolves with the raw reply once `done(reply)` says so. */
function ask(port, command, done = (r) => r.endsWith('\r\n')) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(`${command}\r\n`));
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk;
      if (done(reply)) {
        socket.destroy();
        resolve(reply);
      }
    });
    socket.on('error', reject);
  });
}

async function waitForPing(port, child) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      if ((await ask(port, 'PING')) === '+PONG\r\n') return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`no PONG from port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** INFO's total_error_replies. */
async function errorReplies(port) {
  const info = await ask(port, 'INFO stats', (r) => {
    const m = /^\$(\d+)\r\n/.exec(r);
    return m !== null && Buffer.byteLength(r) >= m[0].length + Number(m[1]) + 2;
  });
  return Number(/total_error_replies:(\d+)/.exec(info)?.[1] ?? NaN);
}

/** utime + stime of a process in seconds (Linux), or NaN. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/**
 * resp-server on a backend (undefined: IOMUX_BACKEND or the best available).
 * @param {string} [backend]
 */
export const respServer = (backend) => ({
  name: backend === undefined ? 'iomux resp-server' : `iomux-${backend}`,
  start: (port) =>
    spawn(process.execPath, [join(here, 'server.mjs')], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        ...(backend === undefined ? {} : { IOMUX_BACKEND: backend }),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
});

export const redisServer = {
  name: 'redis-server',
  start: (port) =>
    spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    ),
};

const servers = [respServer(undefined), redisServer];

/** Parses `redis-benchmark -q` output: test name → { rps, p50 }. */
function parseBenchmark(stdout) {
  const results = new Map();
  for (const line of stdout.split(/[\r\n]+/)) {
    const m =
      /^([A-Z_]+(?: \([^)]*\))?): ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?/.exec(line);
    if (m) results.set(m[1], { rps: Number(m[2]), p50: m[3] ?? '?' });
  }
  return results;
}

/**
 * Starts a server on a free port, runs redis-benchmark against it once per entry of `runs` (each
 * with the server's CPU seconds over it, from /proc/<pid>/stat), and stops it.
 * @param {{ name: string, start: (port: number) => import('node:child_process').ChildProcess }} server
 * @param {{ tests: string, requests: number, clients: number, pipeline: number }[]} runs
 */
export async function measureRuns(server, runs) {
  const port = await freePort();
  const child = server.start(port);
  let banner = '';
  child.stdout.on('data', (chunk) => {
    if (banner === '') banner = String(chunk).trim().split('\n')[0];
  });
  try {
    await waitForPing(port, child);
    const out = [];
    for (const how of runs) {
      const errorsBefore = await errorReplies(port);
      const cpuBefore = cpuSeconds(child.pid);
      const args = ['-h', '127.0.0.1', '-p', String(port), '-t', how.tests];
      args.push('-n', String(how.requests), '-c', String(how.clients));
      args.push('-P', String(how.pipeline), '-q');
      const run = spawnSync('redis-benchmark', args, { encoding: 'utf8' });
      const cpu = cpuSeconds(child.pid) - cpuBefore;
      if (run.status !== 0) throw new Error(`redis-benchmark failed: ${run.stderr || run.stdout}`);
      const errors = (await errorReplies(port)) - errorsBefore;
      out.push({ results: parseBenchmark(run.stdout), errors, cpu, warnings: run.stderr.trim() });
    }
    return out.map((r) => ({ ...r, banner }));
  } finally {
    // A server that already died (waitForPing saw it) would never emit 'exit' again.
    if (child.exitCode === null && child.signalCode === null)
      await new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGTERM');
      });
  }
}

/** One redis-benchmark run of `tests` against a fresh server. */
async function measure(server) {
  const [r] = await measureRuns(server, [{ tests, requests, clients, pipeline }]);
  return r;
}

/** The redis tools not on PATH. */
export const missingRedisTools = () =>
  ['redis-benchmark', 'redis-server'].filter(
    (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
  );

async function main() {
  const missing = missingRedisTools();
  if (missing.length > 0) {
    console.log(
      `${missing.join(' and ')} not installed (Debian/Ubuntu: apt-get install -y redis-tools redis-server); skipping the benchmark.`,
    );
    return;
  }
  console.log(
    `redis-benchmark -t ${tests} -n ${requests} -c ${clients} -P ${pipeline} -q, ${rounds} round(s), best round reported`,
  );
  const best = new Map();
  let totalErrors = 0;
  for (let round = 0; round < rounds; round += 1) {
    for (const server of servers) {
      const r = await measure(server);
      totalErrors += Number.isNaN(r.errors) ? 1 : r.errors;
      if (r.warnings !== '') console.log(`${server.name}: ${r.warnings}`);
      const previous = best.get(server.name);
      if (previous === undefined) {
        best.set(server.name, r);
      } else {
        for (const [test, value] of r.results)
          if (value.rps > (previous.results.get(test)?.rps ?? 0)) previous.results.set(test, value);
        previous.errors += r.errors;
        previous.cpu = Math.min(previous.cpu, r.cpu);
      }
    }
  }

  const fmt = (n) => Math.round(n).toLocaleString('en-US');
  const [iomux, redis] = servers.map((s) => best.get(s.name));
  console.log(
    `\n${'test'.padEnd(14)} ${'iomux req/s'.padStart(12)} ${'redis req/s'.padStart(12)}  ratio  p50 iomux / redis`,
  );
  for (const [test, a] of iomux.results) {
    const b = redis.results.get(test);
    if (b === undefined) continue;
    console.log(
      `${test.padEnd(14)} ${fmt(a.rps).padStart(12)} ${fmt(b.rps).padStart(12)}  ${(a.rps / b.rps).toFixed(2)}x  ${a.p50} / ${b.p50} ms`,
    );
  }
  const total = requests * iomux.results.size;
  console.log(`\nerror replies (all rounds): iomux ${iomux.errors}, redis ${redis.errors}`);
  console.log(
    `server CPU for the ${fmt(total)} requests of one run (lowest round): iomux ${iomux.cpu.toFixed(2)} s ` +
      `(${fmt(total / iomux.cpu)} req per CPU-second), redis ${redis.cpu.toFixed(2)} s (${fmt(total / redis.cpu)} req per CPU-second)`,
  );
  console.log(`(${iomux.banner})`);
  if (totalErrors > 0) process.exitCode = 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
