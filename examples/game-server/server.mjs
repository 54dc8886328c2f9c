// Authoritative 60 Hz game server on iomux, over UDP (default) or TCP.
//
// The reactor runs in manual dispatch and the tick loop pumps its I/O between ticks (the spec's
// game-server pattern: poll events until the next tick is due → simulate → broadcast state).
// NPC path-finding (A*) runs on a worker pool every few ticks, so the reactor thread never
// stalls on it.
//
// Environment: TRANSPORT ('udp' or 'tcp'; default udp), PORT (7001; 0 picks a free port,
// printed), HOST (127.0.0.1), IOMUX_BACKEND (default: the best available), HZ (60), NPCS (64),
// WORLD (side of the square map in cells, 256), WORKERS (2), PATH_EVERY (ticks between
// path-finding rounds, 6), VIEW ('aoi': players and NPCs in the 3×3 regions around you; 'all':
// everyone), SATURATE (1: keep every worker busy with background A* planning), NICE (nice
// increment of the worker threads, 19), WORKER_SCHED (Linux scheduling policy of the worker
// threads: normal, batch or idle; idle), TIMEOUT_MS (UDP: drop a player silent that long, 3000),
// UDP_SEND (batch: a tick's states go out with one sendBatch() call, sendmmsg underneath;
// each: one send() per state), UDP_SEND_THREAD (1: the UDP socket sends on a thread of its own,
// reactor.udp's sendThread, so the kernel's send path is not paid on the tick's thread), WORKER_YIELD (0: no yield point after each A* search),
// IO_CUTOFF_MS (no I/O dispatch in the last ms before each tick, so a late batch cannot delay it;
// 1), REACTOR_CPUS (Linux: pin the reactor's thread to these CPUs, e.g. 0; default: any),
// WORKER_CPUS (Linux: pin the worker threads to these CPUs, e.g. 1; default: any), OTHER_CPUS
// (Linux: pin the process's threads running at start, V8's and libuv's helpers, there; e.g. 1),
// REACTOR_RT_PRIORITY (Linux: run the reactor's thread SCHED_FIFO at this priority, 1..99, so a
// tick never waits for a normal thread on its CPU; needs root or an RLIMIT_RTPRIO that high;
// default: the normal policy), MAX_PLAYERS (4096), SECONDS (stop after that long; default: until
// SIGINT or SIGTERM), REPORT (json: print the report as one JSON line too). The jitter report is
// printed when the server stops.
import { closeSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  IomuxError,
  createReactor,
  getThreadAffinity,
  runTicks,
  setOtherThreadsAffinity,
  setThreadAffinity,
  setThreadScheduling,
  WorkerPool,
} from '@iomux/core';
import { startTcpTransport } from './transport-tcp.mjs';
import { startUdpTransport } from './transport-udp.mjs';
import { World } from './world.mjs';

const LOOP_DELAY_RESOLUTION_MS = 10;
/** What iomux names a UDP socket's send thread (reactor.udp's sendThread). */
const SEND_THREAD_NAME = 'iomux-udp-send';
/** Default nice increment of the worker threads (see the README: "Worker priority"). */
export const DEFAULT_NICE = 19;

/** Default Linux scheduling policy of the worker threads ('normal', 'batch' or 'idle'). */
export const DEFAULT_SCHEDULING = 'idle';

function scheduling(value) {
  if (value === undefined || value === '') return DEFAULT_SCHEDULING;
  if (value !== 'normal' && value !== 'batch' && value !== 'idle')
    throw new Error(`WORKER_SCHED must be normal, batch or idle, got ${value}`);
  return value;
}

/** A comma-separated CPU list ('0', '1,2') from `env[name]`, or undefined when unset. */
function cpuList(env, name) {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  const cpus = value.split(',').map(Number);
  if (!cpus.every(Number.isInteger))
    throw new Error(`${name} must be CPU numbers separated by commas, got ${value}`);
  return cpus;
}

/** Server options from environment variables (see the top of this file). */
export function optionsFromEnv(env = process.env) {
  const number = (name, fallback) => {
    if (env[name] === undefined || env[name] === '') return fallback;
    const value = Number(env[name]);
    if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got ${env[name]}`);
    return value;
  };
  const transport = env.TRANSPORT === undefined || env.TRANSPORT === '' ? 'udp' : env.TRANSPORT;
  if (transport !== 'udp' && transport !== 'tcp')
    throw new Error(`TRANSPORT must be udp or tcp, got ${transport}`);
  return {
    transport,
    host: env.HOST ?? '127.0.0.1',
    port: number('PORT', 7001),
    hz: number('HZ', 60),
    npcs: number('NPCS', 64),
    worldSize: number('WORLD', 256),
    workers: number('WORKERS', 2),
    pathEvery: number('PATH_EVERY', 6),
    view: env.VIEW === 'all' ? 'all' : 'aoi',
    saturate: env.SATURATE === '1' || env.SATURATE === 'true',
    nice: number('NICE', DEFAULT_NICE),
    scheduling: scheduling(env.WORKER_SCHED),
    timeoutMs: number('TIMEOUT_MS', 3000),
    sendMode: env.UDP_SEND === 'each' ? 'each' : 'batch',
    sendThread: env.UDP_SEND_THREAD === '1',
    workerYield: env.WORKER_YIELD !== '0',
    ioCutoffMs: number('IO_CUTOFF_MS', 1),
    reactorCpus: cpuList(env, 'REACTOR_CPUS'),
    workerCpus: cpuList(env, 'WORKER_CPUS'),
    otherCpus: cpuList(env, 'OTHER_CPUS'),
    reactorRtPriority: number('REACTOR_RT_PRIORITY', undefined),
    maxPlayers: number('MAX_PLAYERS', 4096),
    seconds: number('SECONDS', 0),
  };
}

/** CPU seconds (user + system) of one of this process's threads, from its /proc stat line. */
function taskCpuSeconds(stat) {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ (100)
}

/**
 * CPU seconds of this process's threads named `name` (the UDP send thread is `iomux-udp-send`),
 * from /proc; 0 when there is none, NaN off Linux. A thread that ended is no longer counted.
 */
function namedThreadsCpuSeconds(name) {
  try {
    let total = 0;
    for (const task of readdirSync('/proc/self/task')) {
      try {
        if (readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim() !== name) continue;
        total += taskCpuSeconds(readFileSync(`/proc/self/task/${task}/stat`, 'utf8'));
      } catch {
        // the thread ended meanwhile
      }
    }
    return total;
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system) of this process's main thread, from /proc; NaN elsewhere. */
function mainThreadCpuSeconds() {
  try {
    return taskCpuSeconds(readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8'));
  } catch {
    return NaN;
  }
}

/**
 * The reactor thread's scheduler statistics (Linux: /proc/thread-self/schedstat): ms on a CPU and
 * ms spent runnable but waiting for one. `read()` returns null where it is not available.
 */
function threadSchedstat() {
  let fd = -1;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return { read: () => null, close: () => undefined };
  }
  const buffer = Buffer.alloc(96);
  const out = { runMs: 0, waitMs: 0 };
  return {
    read() {
      const n = readSync(fd, buffer, 0, buffer.length, 0);
      const [run, wait] = buffer.toString('latin1', 0, n).split(' ');
      out.runMs = Number(run) / 1e6;
      out.waitMs = Number(wait) / 1e6;
      return out;
    },
    close: () => closeSync(fd),
  };
}

const processCpuSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

/**
 * Starts the server. Resolves once it listens, with
 * `{ port, transport, backend, report(), resetStats(), close() }`. `report()` returns the jitter
 * report as an object; `formatReport()` renders it. Rejects with the reactor's IomuxError when
 * the transport cannot open (e.g. `EOPNOTSUPP`: the backend has no UDP).
 */
export async function startGameServer(options = {}) {
  const {
    transport: transportName = 'udp',
    host = '127.0.0.1',
    port = 7001,
    hz = 60,
    npcs = 64,
    worldSize = 256,
    workers = 2,
    pathEvery = 6,
    view = 'aoi',
    saturate = false,
    nice = DEFAULT_NICE,
    scheduling: workerScheduling = DEFAULT_SCHEDULING,
    timeoutMs = 3000,
    sendMode = 'batch',
    sendThread = false,
    workerYield = true,
    ioCutoffMs = 1,
    maxPlayers = 4096,
    reactorCpus,
    workerCpus,
    otherCpus,
    reactorRtPriority,
  } = options;

  // The threads already running (V8's GC and compiler helpers, which also collect the busy
  // workers' garbage) to OTHER_CPUS, then the reactor's thread: the threads it starts inherit
  // its mask, and the pool moves its workers onto WORKER_CPUS before their first task.
  if (otherCpus !== undefined) setOtherThreadsAffinity(otherCpus);
  if (reactorCpus !== undefined) setThreadAffinity(reactorCpus);
  // Threads started from here on (the pool's workers) do not inherit it (SCHED_RESET_ON_FORK).
  if (reactorRtPriority !== undefined) setThreadScheduling('fifo', reactorRtPriority);
  const reactor = createReactor({ ioModel: 'auto' });
  reactor.stop(); // manual dispatch: the tick loop pumps I/O with pollEvents() between ticks
  const world = new World({ npcs, width: worldSize, height: worldSize });
  const counters = {
    peakPlayers: 0,
    joins: 0,
    left: 0,
    timedOut: 0,
    statesSent: 0,
    statesQueued: 0,
    statesDropped: 0,
    statesCapped: 0,
    inputs: 0,
    spoofed: 0,
    unknown: 0,
    malformed: 0,
    hellos: 0,
    badCookies: 0,
    rejected: 0,
    sendErrors: 0,
    pathTasks: 0,
    pathsApplied: 0,
    pathBackpressure: 0,
    planTasks: 0,
    planSearches: 0,
  };

  const ctx = {
    reactor,
    world,
    counters,
    host,
    port,
    hz,
    view,
    timeoutMs,
    maxPlayers,
    sendMode,
    sendThread,
  };
  let transport;
  try {
    transport =
      transportName === 'tcp' ? await startTcpTransport(ctx) : await startUdpTransport(ctx);
  } catch (err) {
    await reactor.close();
    throw err;
  }

  const poolOptions = {
    filename: new URL('./pathfinding.mjs', import.meta.url),
    size: workers,
    maxQueue: workers * 4,
    niceIncrement: nice,
    scheduling: workerScheduling,
    ...(workerCpus === undefined ? {} : { affinity: workerCpus }),
    workerData: { ...world.workerData(), yieldCpu: workerYield },
  };
  const pool = new WorkerPool(poolOptions);
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  loopDelay.enable();
  let closing = false;

  function requestPaths() {
    if (pool.full) {
      counters.pathBackpressure += 1;
      return;
    }
    const requests = world.pathRequests(32);
    if (requests === null) return;
    const retry = requests.slice(); // `requests` itself is moved to the worker
    counters.pathTasks += 1;
    // The request array is moved to the worker (no copy); the answer comes back between ticks.
    pool.run('findPaths', { requests }, { transferList: [requests] }).then(
      (paths) => {
        counters.pathsApplied += 1;
        world.applyPaths(paths);
      },
      (err) => {
        world.pathsFailed(retry);
        if (!closing) console.error('path-finding task failed:', err);
      },
    );
  }

  let planInFlight = 0;
  let planSeed = 1;
  function feedPlanners() {
    while (saturate && !closing && planInFlight < workers && !pool.full) {
      planInFlight += 1;
      pool
        .run('plan', { ms: 50, seed: planSeed++ })
        .then(
          (result) => {
            counters.planTasks += 1;
            counters.planSearches += result.searches;
          },
          () => undefined,
        )
        .finally(() => {
          planInFlight -= 1;
          feedPlanners();
        });
    }
  }
  feedPlanners();

  // How long the reactor thread was runnable but had no CPU: before each tick (it delays the
  // tick's start) and during it (it stretches the tick).
  const sched = threadSchedstat();
  const cpuWait = { beforeTick: 0, duringTick: 0, lateTicks: 0, lateTicksWaited: 0 };
  let waitAtTickEnd = sched.read()?.waitMs ?? 0;

  const dt = 1 / hz;
  const loop = runTicks(
    reactor,
    ({ tick, now, lateness }) => {
      const waitAtStart = sched.read()?.waitMs ?? 0;
      const waitedBefore = waitAtStart - waitAtTickEnd;
      cpuWait.beforeTick += waitedBefore;
      if (lateness > 1) {
        cpuWait.lateTicks += 1;
        if (waitedBefore >= lateness / 2) cpuWait.lateTicksWaited += 1;
      }
      world.step(dt);
      if (tick % pathEvery === 0) requestPaths();
      transport.sweep(now);
      if (world.players.size > 0) transport.broadcast(tick, world.snapshot());
      waitAtTickEnd = sched.read()?.waitMs ?? 0;
      cpuWait.duringTick += waitAtTickEnd - waitAtStart;
    },
    { hz, ioCutoffMs },
  );
  loop.done.catch((err) => {
    console.error('tick loop failed:', err);
    process.exitCode = 1;
  });

  let measuredFrom = performance.now();
  let bytesAtReset = { out: 0, in: 0 };
  const cpuNow = () => ({
    main: mainThreadCpuSeconds(),
    sendThread: namedThreadsCpuSeconds(SEND_THREAD_NAME),
    process: processCpuSeconds(),
  });
  let cpuAtReset = cpuNow();
  /** Starts the measurement afresh (tick stats, event-loop delay, counters), e.g. after warm-up. */
  function resetStats() {
    clearTimeout(warmup);
    loop.resetStats();
    loopDelay.reset();
    measuredFrom = performance.now();
    const peak = world.players.size;
    for (const key of Object.keys(counters)) counters[key] = 0;
    counters.peakPlayers = peak;
    const stats = reactor.stats();
    bytesAtReset = { out: stats.bytesWritten, in: stats.bytesRead };
    cpuAtReset = cpuNow();
    pool.resetStats();
    for (const key of Object.keys(cpuWait)) cpuWait[key] = 0;
  }
  // The first second (module compilation, worker start-up) is not what the report is about.
  const warmup = setTimeout(resetStats, 1000);

  function report() {
    const ticks = loop.stats();
    const workersStats = pool.stats();
    const stats = reactor.stats();
    const seconds = (performance.now() - measuredFrom) / 1000;
    const delay = (p) => Math.max(0, loopDelay.percentile(p) / 1e6 - LOOP_DELAY_RESOLUTION_MS);
    return {
      transport: transportName,
      sendMode: transport.sendMode ?? 'writev',
      // True when the UDP socket's sends ran on their own thread (UDP_SEND_THREAD=1, granted).
      sendThread: transport.sendThread ?? false,
      backend: reactor.backend,
      hz,
      nice,
      scheduling: workerScheduling,
      // What the reactor's thread runs on now (Linux), and what the workers were given.
      reactorCpus: process.platform === 'linux' ? getThreadAffinity() : undefined,
      workerCpus,
      otherCpus,
      reactorRtPriority,
      workerYield,
      ioCutoffMs,
      seconds,
      ticks: ticks.ticks,
      skipped: ticks.skipped,
      overruns: ticks.overruns,
      jitter: ticks.jitter,
      tickDuration: ticks.duration,
      loopDelay: {
        p50: delay(50),
        p99: delay(99),
        max: Math.max(0, loopDelay.max / 1e6 - LOOP_DELAY_RESOLUTION_MS),
      },
      workers: workersStats, // utilization and task time over the measured window
      cpu: {
        // fractions of one core over the measured window
        reactorThread: (mainThreadCpuSeconds() - cpuAtReset.main) / seconds,
        // the UDP socket's send thread (UDP_SEND_THREAD=1), on the reactor's CPUs; 0 without one
        sendThread: (namedThreadsCpuSeconds(SEND_THREAD_NAME) - cpuAtReset.sendThread) / seconds,
        process: (processCpuSeconds() - cpuAtReset.process) / seconds,
      },
      // ms per second the reactor thread waited for a CPU; ticks started > 1 ms late, and how
      // many of them had waited for a CPU at least half that long
      cpuWait: {
        beforeTickMsPerS: cpuWait.beforeTick / seconds,
        duringTickMsPerS: cpuWait.duringTick / seconds,
        lateTicks: cpuWait.lateTicks,
        lateTicksWaited: cpuWait.lateTicksWaited,
      },
      players: world.players.size,
      npcs: world.npcs.length,
      bytesOut: stats.bytesWritten - bytesAtReset.out,
      bytesIn: stats.bytesRead - bytesAtReset.in,
      ...counters,
    };
  }

  async function close() {
    if (closing) return;
    closing = true;
    clearTimeout(warmup);
    loop.stop();
    await loop.done.catch(() => undefined);
    loopDelay.disable();
    sched.close();
    transport.close();
    await pool.close();
    await reactor.close();
  }

  return {
    port: transport.port,
    host,
    transport: transportName,
    backend: reactor.backend,
    scheduling: workerScheduling,
    reactor,
    world,
    report,
    resetStats,
    close,
    fallbackHistory: reactor.fallbackHistory,
  };
}

/** One line for a transport the backend cannot open (EOPNOTSUPP), else null. */
function unsupportedTransport(err, transport) {
  if (!(err instanceof IomuxError) || err.code !== 'EOPNOTSUPP') return null;
  return `the ${process.env.IOMUX_BACKEND ?? 'chosen'} backend does not support ${transport.toUpperCase()} (EOPNOTSUPP: ${err.message}); use another IOMUX_BACKEND or TRANSPORT`;
}

/**
 * For the command-line entry points: starts the server, or exits with a message (status 3 when
 * the backend cannot open the transport, which the benchmark reports by name; 1 otherwise).
 */
export async function startGameServerOrExit(options) {
  try {
    return await startGameServer(options);
  } catch (err) {
    const unsupported = unsupportedTransport(err, options.transport);
    console.error(unsupported === null ? err : `unsupported: ${unsupported}`);
    process.exit(unsupported === null ? 1 : 3);
  }
}

const ms = (v) => `${v.toFixed(2)} ms`;

/** Renders a report from `server.report()`. */
export function formatReport(r) {
  const w = r.workers;
  const rate = (n) => Math.round(n / Math.max(r.seconds, 1e-9));
  const pct = (x) => (Number.isFinite(x) ? `${(x * 100).toFixed(0)} %` : 'n/a');
  const lines = [
    `--- game server jitter report: ${r.transport.toUpperCase()} (${r.sendMode}${r.sendThread ? ', send thread' : ''}), backend ${r.backend}, ${r.hz} Hz, ${r.ticks} ticks in ${r.seconds.toFixed(1)} s ---`,
    `tick start jitter   p50 ${ms(r.jitter.p50)}   p99 ${ms(r.jitter.p99)}   max ${ms(r.jitter.max)}   (skipped ${r.skipped}, overruns ${r.overruns})`,
    `tick duration       p50 ${ms(r.tickDuration.p50)}   p99 ${ms(r.tickDuration.p99)}   max ${ms(r.tickDuration.max)}`,
    `event-loop delay    p50 ${ms(r.loopDelay.p50)}   p99 ${ms(r.loopDelay.p99)}   max ${ms(r.loopDelay.max)}   (beyond the 10 ms sampling interval)`,
    `worker pool         ${w.maxThreads} threads at nice ${r.nice}${r.scheduling === 'normal' ? '' : ` (SCHED_${r.scheduling.toUpperCase()})`}${r.workerCpus === undefined ? '' : ` on CPU ${r.workerCpus.join(',')}`}${r.workerYield ? ', yield points' : ''}, ${w.completed} tasks done (${r.pathTasks} path batches, ${r.planTasks} planning, ` +
      `${rate(r.planSearches)} A* searches/s), utilization ${pct(w.utilization)}, task time p50 ${ms(w.taskTime.p50)} p99 ${ms(w.taskTime.p99)}`,
    `CPU                 reactor thread ${pct(r.cpu.reactorThread)} of a core${r.reactorCpus === undefined ? '' : ` (CPU ${r.reactorCpus.join(',')})`}${r.reactorRtPriority === undefined ? '' : ` at SCHED_FIFO ${r.reactorRtPriority}`}${r.otherCpus === undefined ? '' : `, other threads on CPU ${r.otherCpus.join(',')}`}, whole process ${pct(r.cpu.process)}; ` +
      `reactor thread waited for a CPU ${r.cpuWait.beforeTickMsPerS.toFixed(1)} ms/s between ticks, ${r.cpuWait.duringTickMsPerS.toFixed(1)} ms/s in ticks; ` +
      `${r.cpuWait.lateTicks} ticks started > 1 ms late, ${r.cpuWait.lateTicksWaited} of them after waiting for a CPU`,
    `clients             peak ${r.peakPlayers} (${r.players} at report time), ${rate(r.statesSent)} states/s, ${rate(r.inputs)} inputs/s, ` +
      `${(r.bytesOut / Math.max(r.seconds, 1e-9) / 1e6).toFixed(1)} MB/s out, ${r.statesDropped} states dropped (${r.transport === 'tcp' ? 'slow clients' : 'send queue full'}), ` +
      `${r.spoofed} spoofed inputs ignored, ${r.malformed} malformed`,
  ];
  if (r.transport === 'udp')
    lines.push(
      `udp                 ${r.joins} joined, ${r.left} left, ${r.timedOut} timed out, ${r.unknown} inputs for unknown players, ` +
        `${r.badCookies} bad cookies, ${r.rejected} rejected, ${r.statesCapped} states capped to the nearest entities, ` +
        `${r.statesQueued} queued, ${r.sendErrors} send errors`,
    );
  return lines.join('\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = optionsFromEnv();
  const server = await startGameServerOrExit(options);
  for (const record of server.fallbackHistory)
    console.log(`backend ${record.backend} unavailable: ${record.cause}`);
  console.log(
    `game server listening on ${server.host}:${server.port}/${server.transport} (backend: ${server.backend}, ${options.hz} Hz, ` +
      `${options.workers} workers at nice ${options.nice}, ${server.scheduling} scheduling${options.saturate ? ', saturated' : ''})`,
  );
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const report = server.report();
    await server.close();
    console.log(formatReport(report));
    if (process.env.REPORT === 'json') console.log(`REPORT ${JSON.stringify(report)}`);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (options.seconds > 0) setTimeout(stop, options.seconds * 1000);
}
