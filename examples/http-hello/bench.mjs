// Runs wrk against http-hello (iomux) and against a minimal node:http server in the same run,
// one server at a time, and prints req/s of both and their ratio. Needs wrk (Debian: apt-get
// install -y wrk); without it, says so and exits 0.
//   BENCH_DURATION seconds (default 5), BENCH_CONNECTIONS (default 50), BENCH_THREADS (default 1),
//   BENCH_ROUNDS (default 1; the best round of each server is reported),
//   BENCH_PIPELINE=N (default 0): also run with N requests pipelined per connection,
//   IOMUX_BACKEND: backend of the iomux server (default: the best available).
// `pnpm bench` (bench/http.mjs) imports wrkRound() and pipelineScript() from here and runs the same
// measurement on every backend, beside node:http and the C reference server (bench/native/c-http).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const duration = Number(process.env.BENCH_DURATION ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const threads = Number(process.env.BENCH_THREADS ?? 1);
const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
const pipeline = Number(process.env.BENCH_PIPELINE ?? 0);

const servers = [
  { name: 'iomux http-hello', script: 'server.mjs' },
  { name: 'node:http', script: 'node-http-hello.mjs' },
];

/** Starts a server script on a free port; resolves once it printed its URL. */
function startServer(script) {
  const child = spawn(process.execPath, [join(here, script)], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (match) resolve({ child, port: Number(match[1]), banner: out.trim().split('\n').pop() });
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${out}`)));
  });
}

function stopServer(child) {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

/** utime + stime of a process in seconds (Linux), or NaN. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/**
 * One wrk run against 127.0.0.1:port: req/s, requests, latency (avg, p99) and errors (socket
 * errors plus non-2xx answers).
 * @param {number} port
 * @param {{ seconds: number, connections: number, threads: number, script?: string }} how
 */
export function runWrk(port, { seconds, connections: conns, threads: t, script }) {
  const args = [`-t${t}`, `-c${conns}`, `-d${seconds}s`, '--latency'];
  if (script !== undefined) args.push('-s', script);
  args.push(`http://127.0.0.1:${port}/`);
  const result = spawnSync('wrk', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`wrk failed: ${result.stderr || result.stdout}`);
  const out = result.stdout;
  const number = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : 0;
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    rps: number(/Requests\/sec:\s+([\d.]+)/),
    requests: number(/(\d+) requests in/),
    latency: /Latency\s+(\S+)/.exec(out)?.[1] ?? '?',
    p99: /99%\s+(\S+)/.exec(out)?.[1] ?? '?',
    errors: socketErrors + number(/Non-2xx or 3xx responses: (\d+)/),
  };
}

/**
 * A 1 s warm-up (JIT, connection set-up), then the measured wrk run with the server's CPU time
 * over it from /proc/<pid>/stat.
 * @param {number} port
 * @param {number} pid the server's
 * @param {{ seconds: number, connections: number, threads: number, script?: string }} how
 */
export function wrkRound(port, pid, how) {
  runWrk(port, { ...how, seconds: 1 });
  const cpuBefore = cpuSeconds(pid);
  const result = runWrk(port, how);
  const cpu = cpuSeconds(pid) - cpuBefore;
  return { ...result, cpu, perCpu: cpu > 0 ? result.requests / cpu : 0 };
}

async function measure(server, script) {
  const { child, port, banner } = await startServer(server.script);
  try {
    return {
      ...wrkRound(port, child.pid, { seconds: duration, connections, threads, script }),
      banner,
    };
  } finally {
    await stopServer(child);
  }
}

let tmp;
/** A wrk lua script that sends `depth` GET / requests per write; files go when the process exits. */
export function pipelineScript(depth) {
  if (tmp === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'http-hello-bench-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    tmp = dir;
  }
  const file = join(tmp, `pipeline-${depth}.lua`);
  writeFileSync(
    file,
    `init = function(args)\n  local r = {}\n  for i = 1, ${depth} do r[i] = wrk.format(nil, "/") end\n` +
      `  req = table.concat(r)\nend\nrequest = function() return req end\n`,
  );
  return file;
}

export const hasWrk = () => spawnSync('sh', ['-c', 'command -v wrk']).status === 0;

async function main() {
  if (!hasWrk()) {
    console.log(
      'wrk is not installed (Debian/Ubuntu: apt-get install -y wrk); skipping the benchmark.',
    );
    return;
  }
  const fmt = (n) => Math.round(n).toLocaleString('en-US');
  const modes = [{ label: 'keep-alive', script: undefined }];
  if (pipeline > 1)
    modes.push({ label: `pipelined x${pipeline}`, script: pipelineScript(pipeline) });

  let totalErrors = 0;
  console.log(
    `wrk -t${threads} -c${connections} -d${duration}s, ${rounds} round(s), best round reported`,
  );
  for (const mode of modes) {
    const best = new Map();
    const errors = new Map(servers.map((s) => [s.name, 0]));
    for (let round = 0; round < rounds; round += 1) {
      for (const server of servers) {
        const result = await measure(server, mode.script);
        totalErrors += result.errors;
        errors.set(server.name, errors.get(server.name) + result.errors);
        const previous = best.get(server.name);
        if (previous === undefined || result.rps > previous.rps) best.set(server.name, result);
      }
    }
    console.log(`\n${mode.label}:`);
    for (const server of servers) {
      const r = best.get(server.name);
      // wrk's latency figures describe whole pipelined batches, so they are shown without pipelining.
      const latency = mode.script === undefined ? `latency avg ${r.latency} p99 ${r.p99}  ` : '';
      console.log(
        `  ${server.name.padEnd(17)} ${fmt(r.rps).padStart(9)} req/s  ${latency}` +
          `errors ${errors.get(server.name)} (all rounds)  server CPU ${r.cpu.toFixed(2)} s (${fmt(r.perCpu)} req per CPU-second)`,
      );
    }
    const a = best.get(servers[0].name);
    const b = best.get(servers[1].name);
    console.log(
      `  ratio iomux / node:http: ${(a.rps / b.rps).toFixed(2)}x req/s, ${(a.perCpu / b.perCpu).toFixed(2)}x req per server CPU-second`,
    );
    console.log(`  (${a.banner})`);
  }
  if (totalErrors > 0) {
    console.log(`\n${totalErrors} errors: see above`);
    process.exitCode = 1;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
