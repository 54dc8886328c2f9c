// node bench/game.mjs [--quick] [--seconds S] [--rounds N] [--bots N] [--backends a,b]
//                     [--transports udp,tcp]
//                     [--workers default,nice:0,nice:19,sched:idle,default+pin,sched:idle+pin,
//                                default+pin+others,default+pin+rt,default+pin+rt+sendthread]
//                     [--quiet-wait S]
//                     [--max-other CORES] [--env K=V,K=V]
// The game-server benchmark of issue 8: 1000 simulated players at 60 Hz while the pool's workers
// are kept saturated by A* planning (SATURATE=1), for each Linux backend that runs here. Each
// run is one `node examples/game-server/demo.mjs` (the server; the bots are its child process,
// on node:dgram / node:net), bounded in time, loopback only. Reports tick jitter p50/p99/max,
// tick duration, skipped ticks, event-loop delay, worker utilization, the bots' CPU and what
// other processes used meanwhile. Writes bench/results/game.json and game.md.
// A `+pin` worker set-up (default rows: `default`, `default+pin` and `default+pin+others`) keeps
// the reactor's core to itself: the server's main thread on the first CPU this process may use,
// the pool's workers and the bots' whole process on the others (REACTOR_CPUS, WORKER_CPUS,
// BOT_CPUS of the demo); `+others` moves the server's other threads (V8's, libuv's) there too
// (OTHER_CPUS); `+rt` runs the reactor's thread SCHED_FIFO (REACTOR_RT_PRIORITY=10; root or an
// RLIMIT_RTPRIO of 10 needed), so a tick never waits for a normal thread on its core;
// `+rt+sendthread` also sends the UDP states from the socket's own thread (UDP_SEND_THREAD=1).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreadAffinity, listBackends } from '@iomux/core';

const DEMO = fileURLToPath(new URL('../examples/game-server/demo.mjs', import.meta.url));
/** Backends the benchmark tries (the Linux ones; select cannot hold 1000 TCP connections). */
const LINUX_BACKENDS = ['epoll', 'io_uring'];

/** Busy and total CPU seconds of the machine (/proc/stat), or null off Linux. */
function machineCpu() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: (total - f[3] - f[4]) / 100, total: total / 100 };
  } catch {
    return null;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (at most `maxWaitS`) until other processes use less than `threshold` cores over one
 * second; resolves with the cores they used in the last second sampled.
 */
async function waitForQuiet(maxWaitS, threshold = 0.25) {
  const deadline = Date.now() + maxWaitS * 1000;
  for (;;) {
    const from = machineCpu();
    await sleep(1000);
    const to = machineCpu();
    if (from === null || to === null) return NaN;
    const cores = availableParallelism();
    const busy = (to.busy - from.busy) / ((to.total - from.total) / cores);
    if (busy < threshold || Date.now() >= deadline) return busy;
  }
}

/** One demo run; resolves with { report } or { unsupported } or { failed }. */
function runDemo(env, timeoutS) {
  return new Promise((done) => {
    const child = spawn(process.execPath, [DEMO], {
      env: { ...process.env, ...env, REPORT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('REPORT '));
      if (line !== undefined) done({ report: JSON.parse(line.slice(7)) });
      else if (code === 3) {
        const reason = /unsupported: (.*)/.exec(out)?.[1] ?? out.trim().split('\n').pop();
        done({ unsupported: reason });
      } else
        done({
          failed: `demo exited with ${signal ?? code}: ${out.trim().split('\n').slice(-3).join(' | ')}`,
        });
    });
  });
}

/**
 * The CPU split of a `+pin` set-up: the reactor on the first CPU this process may use, workers
 * and bots on the rest; or `{ unavailable }` saying why there is none here.
 */
function pinning() {
  if (process.platform !== 'linux') return { unavailable: 'pinning threads needs Linux' };
  const cpus = getThreadAffinity();
  if (cpus.length < 2) return { unavailable: `one CPU (${cpus.join(',')}) to run on` };
  const rest = cpus.slice(1).join(',');
  return { env: { REACTOR_CPUS: String(cpus[0]), WORKER_CPUS: rest, BOT_CPUS: rest } };
}

/**
 * What each suffix of a `+pin` set-up adds to the CPU split of {@link pinning}: its label and the
 * demo's environment. '+pin+others' also puts the server's other threads on the workers' CPUs;
 * '+pin+rt' runs the reactor's thread SCHED_FIFO at priority 10; '+pin+rt+sendthread' also sends
 * the UDP states from the socket's own thread (UDP_SEND_THREAD; TCP rows ignore it).
 */
const PIN_SUFFIXES = {
  pin: { label: '', env: () => ({}) },
  'pin+others': { label: ' + other threads', env: (split) => ({ OTHER_CPUS: split.WORKER_CPUS }) },
  'pin+rt': { label: ' + SCHED_FIFO reactor', env: () => ({ REACTOR_RT_PRIORITY: '10' }) },
  'pin+rt+sendthread': {
    label: ' + SCHED_FIFO reactor + send thread',
    env: () => ({ REACTOR_RT_PRIORITY: '10', UDP_SEND_THREAD: '1' }),
  },
};

/**
 * Parses 'nice:19' / 'sched:idle' into the server's NICE and WORKER_SCHED; 'default' keeps the
 * example's defaults. A suffix of {@link PIN_SUFFIXES} ('default+pin', 'sched:idle+pin', ...)
 * adds the CPU split of {@link pinning} and what the suffix asks for.
 */
function workerConfig(spec) {
  const [base, ...extras] = spec.split('+');
  const suffixes = extras.join('+');
  const suffix = PIN_SUFFIXES[suffixes];
  if (suffixes !== '' && suffix === undefined) {
    const known = Object.keys(PIN_SUFFIXES).map((name) => `+${name}`);
    throw new Error(`--workers: the suffixes are ${known.join(', ')}, got ${spec}`);
  }
  let config;
  if (base === 'default') config = { label: 'default', env: {} };
  else {
    const [kind, value] = base.split(':');
    if (kind === 'nice')
      config = { label: `nice ${value}`, env: { NICE: value, WORKER_SCHED: 'normal' } };
    else if (kind === 'sched')
      config = { label: `SCHED_${value.toUpperCase()}`, env: { NICE: '0', WORKER_SCHED: value } };
    else throw new Error(`--workers: expected default, nice:N or sched:POLICY, got ${spec}`);
  }
  if (suffix === undefined) return config;
  const split = pinning();
  const label = `${config.label}, pinned${suffix.label}`;
  if (split.unavailable !== undefined) return { ...config, label, unavailable: split.unavailable };
  return { label, env: { ...config.env, ...split.env, ...suffix.env(split.env) } };
}

/** How a run was pinned, from the reports (what the threads ran on, not what was asked). */
function pinLabel(server, bots) {
  if (server.workerCpus === undefined) return '';
  return (
    `; pinned: reactor CPU ${server.reactorCpus?.join(',') ?? '?'}, ` +
    `workers CPU ${server.workerCpus.join(',')}, bots CPU ${bots.cpus ?? '?'}` +
    (server.otherCpus === undefined ? '' : `, other threads CPU ${server.otherCpus.join(',')}`) +
    (server.reactorRtPriority === undefined
      ? ''
      : `, reactor SCHED_FIFO ${server.reactorRtPriority}`) +
    (server.sendThread === true ? ', UDP send thread' : '')
  );
}

/**
 * Runs the game benchmark; resolves with { meta, rows }. Each row is one configuration with the
 * rounds' figures (ranges over rounds) and the per-round samples.
 */
export async function runGameBench({
  quick = false,
  seconds = quick ? 5 : 8,
  rounds = quick ? 1 : 2,
  bots = 1000,
  backends = LINUX_BACKENDS,
  transports = ['udp'],
  workers = [
    'default',
    'default+pin',
    'default+pin+others',
    'default+pin+rt',
    'default+pin+rt+sendthread',
  ],
  quietWait = quick ? 10 : 30,
  maxOther = 0.2,
  env = {},
  log = console.log,
} = {}) {
  const available = new Map(listBackends().map((b) => [b.name, b]));
  const rows = [];
  for (const backend of backends) {
    const info = available.get(backend);
    for (const transport of transports) {
      for (const spec of workers) {
        const config = workerConfig(spec);
        const row = { backend, transport, workers: config.label, bots, seconds, samples: [] };
        rows.push(row);
        if (config.unavailable !== undefined) {
          row.skipped = `not pinned: ${config.unavailable}`;
          log(`${backend}/${transport} ${config.label}: skipped, ${row.skipped}`);
          continue;
        }
        if (info === undefined || !info.available) {
          row.skipped = `backend ${backend} does not run here: ${info?.cause ?? 'unknown backend'}`;
          log(`${backend}/${transport}: skipped, ${row.skipped}`);
          continue;
        }
        // A round during which other processes used more than `maxOther` cores is kept but
        // marked, and run again (at most `rounds` extra times): on a shared machine their load
        // competes with the server and says nothing about it.
        let clean = 0;
        for (let attempt = 0; clean < rounds && attempt < rounds * 2; attempt += 1) {
          const quietBefore = await waitForQuiet(quietWait);
          const result = await runDemo(
            {
              IOMUX_BACKEND: backend,
              TRANSPORT: transport,
              BOTS: String(bots),
              SECONDS: String(seconds),
              SATURATE: '1',
              ...config.env,
              ...env,
            },
            seconds + 90,
          );
          if (result.unsupported !== undefined) {
            row.unsupported = result.unsupported;
            log(
              `${backend}/${transport}: ${backend} does not support ${transport.toUpperCase()}: ${result.unsupported}`,
            );
            break;
          }
          if (result.failed !== undefined) {
            row.samples.push({ failed: result.failed });
            log(`${backend}/${transport} attempt ${attempt + 1}: FAILED ${result.failed}`);
            continue;
          }
          const { server: s, bots: b, machine } = result.report;
          const sample = {
            backendUsed: s.backend,
            sendMode: s.sendMode,
            quietBefore,
            ticks: s.ticks,
            skipped: s.skipped,
            jitter: s.jitter,
            tickDuration: s.tickDuration,
            loopDelay: s.loopDelay,
            workerUtilization: s.workers.utilization,
            planSearchesPerS: s.planSearches / s.seconds,
            reactorCpu: s.cpu.reactorThread,
            sendThreadCpu: s.cpu.sendThread ?? 0,
            serverCpu: s.cpu.process,
            cpuWait: s.cpuWait,
            botsCpu: b.cpu.total,
            botsJoined: b.joined,
            statesPerBotPerS: b.statesPerBotPerSecond,
            latency: b.latency,
            otherCpu: machine?.otherCores ?? NaN,
          };
          sample.contaminated = sample.otherCpu > maxOther;
          row.sendMode = s.sendMode;
          // What the workers actually ran with (the example's defaults for 'default').
          row.workers =
            (s.scheduling === 'normal' ? `nice ${s.nice}` : `SCHED_${s.scheduling.toUpperCase()}`) +
            pinLabel(s, b) +
            Object.entries(env)
              .map(([k, v]) => `, ${k}=${v}`)
              .join('');
          if (!sample.contaminated) clean += 1;
          row.samples.push(sample);
          log(
            `${backend}/${transport} ${row.workers} attempt ${attempt + 1}: ${s.backend === backend ? '' : `(ran on ${s.backend}!) `}` +
              `jitter p50/p99/max ${sample.jitter.p50.toFixed(2)}/${sample.jitter.p99.toFixed(2)}/${sample.jitter.max.toFixed(2)} ms, ` +
              `tick p50/p99 ${sample.tickDuration.p50.toFixed(2)}/${sample.tickDuration.p99.toFixed(2)} ms, ` +
              `${sample.ticks} ticks, ${sample.skipped} skipped, loop delay p99 ${sample.loopDelay.p99.toFixed(2)} ms, ` +
              `workers ${(sample.workerUtilization * 100).toFixed(0)} % (${Math.round(sample.planSearchesPerS)} A* searches/s), ` +
              `reactor thread ${(sample.reactorCpu * 100).toFixed(0)} % CPU` +
              (sample.sendThreadCpu > 0
                ? ` (+ send thread ${(sample.sendThreadCpu * 100).toFixed(0)} %)`
                : '') +
              `, bots ${b.joined}/${bots} at ${(sample.botsCpu * 100).toFixed(0)} % CPU, ` +
              `other processes ${sample.otherCpu.toFixed(2)} cores${sample.contaminated ? ' (busy machine: not counted, run again)' : ''}`,
          );
        }
      }
    }
  }
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: `${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown'}`,
    bots,
    seconds,
    rounds,
    maxOther,
  };
  return { meta, rows };
}

const range = (xs, digits = 2) => {
  const v = xs.filter(Number.isFinite);
  if (v.length === 0) return '–';
  const lo = Math.min(...v);
  const hi = Math.max(...v);
  return lo.toFixed(digits) === hi.toFixed(digits)
    ? lo.toFixed(digits)
    : `${lo.toFixed(digits)}–${hi.toFixed(digits)}`;
};

/** Markdown for runGameBench()'s result. */
export function renderGameMarkdown({ meta, rows }) {
  const lines = [
    `## Game server: ${meta.bots} players at 60 Hz, workers saturated`,
    '',
    `${meta.date} · Node ${meta.node} · ${meta.cpus} · ${meta.rounds} round(s) × ${meta.seconds} s per row · ` +
      '`examples/game-server/demo.mjs` with `SATURATE=1` (both pool workers running A* non-stop); bots in their own process on node:dgram / node:net; loopback. ' +
      'Rows without "pinned" let every thread run on any core; "pinned" rows keep the reactor\'s core to it (its thread pinned with `setThreadAffinity`, the workers with the pool\'s `affinity`, the bots\' process with taskset, all on the other cores); "+ other threads" also moves the server\'s other threads there (V8\'s GC and compiler helpers, libuv\'s pool; `setOtherThreadsAffinity`). ' +
      `Ranges are over rounds. "other" is the CPU other processes on the machine used during the run, in cores; rounds with more than ${meta.maxOther} were run again and are not counted.`,
    '',
    '| backend | transport | workers | jitter p50 / p99 / max ms | tick duration p50 / p99 ms | ticks / skipped | loop delay p99 ms | workers busy | A* searches/s | reactor CPU | bots CPU | other |',
    '|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const sends = row.sendMode === undefined ? '' : ` (${row.sendMode})`;
    let head = `| ${row.backend} | ${row.transport}${sends} | ${row.workers} |`;
    if (row.skipped !== undefined || row.unsupported !== undefined) {
      lines.push(`${head} ${row.skipped ?? `not supported: ${row.unsupported}`} |||||||||`);
      continue;
    }
    const done = row.samples.filter((s) => s.failed === undefined);
    const clean = done.filter((s) => !s.contaminated);
    // Only rounds on a quiet machine count; when there were none, say so and show the busy ones.
    const ok = clean.length > 0 ? clean : done;
    if (ok.length === 0) {
      lines.push(`${head} failed: ${row.samples[0]?.failed ?? 'no rounds'} |||||||||`);
      continue;
    }
    if (clean.length === 0) head = `${head.slice(0, -2)} (machine busy in every round) |`;
    const pick = (f) => ok.map(f);
    lines.push(
      `${head} ${range(pick((s) => s.jitter.p50))} / ${range(pick((s) => s.jitter.p99))} / ${range(
        pick((s) => s.jitter.max),
        1,
      )} ` +
        `| ${range(pick((s) => s.tickDuration.p50))} / ${range(pick((s) => s.tickDuration.p99))} ` +
        `| ${range(
          pick((s) => s.ticks),
          0,
        )} / ${range(
          pick((s) => s.skipped),
          0,
        )} ` +
        `| ${range(pick((s) => s.loopDelay.p99))} ` +
        `| ${range(
          pick((s) => s.workerUtilization * 100),
          0,
        )} % ` +
        `| ${range(
          pick((s) => s.planSearchesPerS),
          0,
        )} ` +
        `| ${range(
          pick((s) => s.reactorCpu * 100),
          0,
        )} %${
          row.samples.some((s) => s.sendThreadCpu > 0)
            ? ` + ${range(
                pick((s) => s.sendThreadCpu * 100),
                0,
              )} % send thread`
            : ''
        } ` +
        `| ${range(
          pick((s) => s.botsCpu * 100),
          0,
        )} % ` +
        `| ${range(pick((s) => s.otherCpu))} |`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const flag = (name, fallback) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const list = (name, fallback) => flag(name, undefined)?.split(',') ?? fallback;
  const quick = argv.includes('--quick');
  const options = { quick };
  if (flag('--seconds') !== undefined) options.seconds = Number(flag('--seconds'));
  if (flag('--rounds') !== undefined) options.rounds = Number(flag('--rounds'));
  if (flag('--bots') !== undefined) options.bots = Number(flag('--bots'));
  if (flag('--quiet-wait') !== undefined) options.quietWait = Number(flag('--quiet-wait'));
  if (flag('--max-other') !== undefined) options.maxOther = Number(flag('--max-other'));
  options.backends = list('--backends', LINUX_BACKENDS);
  options.transports = list('--transports', ['udp']);
  options.workers = list('--workers', [
    'default',
    'default+pin',
    'default+pin+others',
    'default+pin+rt',
    'default+pin+rt+sendthread',
  ]);
  // --env K=V,K=V: more environment for the demo (e.g. WORKERS=1, SATURATE=0), named in the rows
  options.env = Object.fromEntries(list('--env', []).map((kv) => kv.split('=')));
  const result = await runGameBench(options);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const base = fileURLToPath(new URL('./results/game', import.meta.url));
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 2));
  const markdown = renderGameMarkdown(result);
  writeFileSync(`${base}.md`, `# iomux game-server benchmark\n\n${markdown}\n`);
  console.log(`\n${markdown}\n\nreport: bench/results/game.md (+ .json)`);
}
