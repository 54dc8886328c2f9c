// Authoritative 60 Hz TCP game server on iomux.
//
// The reactor runs in manual dispatch and the tick loop pumps its I/O between ticks (the spec's
// game-server pattern: poll events until the next tick is due → simulate → broadcast state).
// NPC path-finding (A*) runs on a worker pool every few ticks, so the reactor thread never
// stalls on it.
//
// Environment: PORT (7001; 0 picks a free port, printed), HOST (127.0.0.1), IOMUX_BACKEND
// (default: the best available), HZ (60), NPCS (64), WORKERS (2), PATH_EVERY (ticks between
// path-finding rounds, 6), VIEW ('aoi': players and NPCs in the 3×3 regions around you; 'all':
// everyone), SATURATE (1: keep every worker busy with background A* planning), NICE (nice
// increment of the worker threads, 0), SECONDS (stop after that long; default: until SIGINT or
// SIGTERM). The jitter report is printed when the server stops.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createReactor, runTicks, WorkerPool } from '@iomux/core';
import {
  DIR,
  ENTITY_BYTES,
  FrameDecoder,
  INPUT_BYTES,
  MAX_ENTITIES,
  MSG,
  decodeFrame,
  encodeStateHeader,
  encodeWelcome,
} from './protocol.mjs';
import { World } from './world.mjs';

const LOOP_DELAY_RESOLUTION_MS = 10;

/** Server options from environment variables (see the top of this file). */
export function optionsFromEnv(env = process.env) {
  const number = (name, fallback) =>
    env[name] === undefined || env[name] === '' ? fallback : Number(env[name]);
  return {
    host: env.HOST ?? '127.0.0.1',
    port: number('PORT', 7001),
    hz: number('HZ', 60),
    npcs: number('NPCS', 64),
    workers: number('WORKERS', 2),
    pathEvery: number('PATH_EVERY', 6),
    view: env.VIEW === 'all' ? 'all' : 'aoi',
    saturate: env.SATURATE === '1' || env.SATURATE === 'true',
    nice: number('NICE', 0),
    seconds: number('SECONDS', 0),
  };
}

/**
 * Starts the server. Resolves once it listens, with `{ port, backend, report(), close() }`.
 * `report()` returns the jitter report as an object; `formatReport()` renders it.
 */
export async function startGameServer(options = {}) {
  const {
    host = '127.0.0.1',
    port = 7001,
    hz = 60,
    npcs = 64,
    workers = 2,
    pathEvery = 6,
    view = 'aoi',
    saturate = false,
    nice = 0,
  } = options;

  const reactor = createReactor({ ioModel: 'auto' });
  reactor.stop(); // manual dispatch: the tick loop pumps I/O with pollEvents() between ticks
  const world = new World({ npcs });
  const pool = new WorkerPool({
    filename: new URL('./pathfinding.mjs', import.meta.url),
    size: workers,
    maxQueue: workers * 4,
    niceIncrement: nice,
    workerData: world.workerData(),
  });
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  loopDelay.enable();

  const counters = {
    peakPlayers: 0,
    statesSent: 0,
    statesDropped: 0,
    inputs: 0,
    spoofed: 0,
    malformed: 0,
    pathTasks: 0,
    pathsApplied: 0,
    pathBackpressure: 0,
    planTasks: 0,
    planSearches: 0,
  };
  let closing = false;

  const listener = await reactor.listen({ host, port, backlog: 4096 }, (conn) => {
    const player = world.addPlayer(conn);
    counters.peakPlayers = Math.max(counters.peakPlayers, world.players.size);
    conn.write(
      encodeWelcome({ playerId: player.id, hz, width: world.width, height: world.height }),
    );
    const decoder = new FrameDecoder(INPUT_BYTES - 2);
    conn.on('data', (chunk) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch {
        counters.malformed += 1;
        conn.destroy();
        return;
      }
      for (const frame of frames) {
        const message = decodeFrame(frame);
        if (message === null || message.type !== MSG.INPUT || message.direction > DIR.RIGHT) {
          counters.malformed += 1;
          conn.destroy();
          return;
        }
        if (message.playerId !== player.id) {
          counters.spoofed += 1; // authoritative: a client only steers its own player
          continue;
        }
        counters.inputs += 1;
        world.input(player, message.seq, message.direction);
      }
    });
    conn.on('drain', () => {
      player.slow = false;
    });
    conn.on('close', () => {
      world.removePlayer(player.id);
    });
  });

  function broadcast(tick) {
    if (world.players.size === 0) return;
    const snapshot = world.snapshot();
    for (const player of world.players.values()) {
      if (player.slow) {
        counters.statesDropped += 1; // its socket is backed up: skip states until it drains
        continue;
      }
      const chunks = [null];
      let count = 0;
      if (view === 'all') {
        count = Math.min(snapshot.total, MAX_ENTITIES);
        chunks.push(snapshot.all.subarray(0, count * ENTITY_BYTES));
      } else {
        const rx = Math.floor(player.x / 16);
        const ry = Math.floor(player.y / 16);
        for (let y = ry - 1; y <= ry + 1; y += 1) {
          if (y < 0 || y >= world.regionsY) continue;
          for (let x = rx - 1; x <= rx + 1; x += 1) {
            if (x < 0 || x >= world.regionsX) continue;
            const region = y * world.regionsX + x;
            const n = snapshot.count(region);
            if (n === 0 || count + n > MAX_ENTITIES) continue;
            chunks.push(snapshot.block(region));
            count += n;
          }
        }
      }
      chunks[0] = encodeStateHeader(tick, player.ackSeq, count);
      if (!player.connection.writev(chunks)) player.slow = true;
      counters.statesSent += 1;
    }
  }

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

  const dt = 1 / hz;
  const loop = runTicks(
    reactor,
    ({ tick }) => {
      world.step(dt);
      if (tick % pathEvery === 0) requestPaths();
      broadcast(tick);
    },
    { hz },
  );
  loop.done.catch((err) => {
    console.error('tick loop failed:', err);
    process.exitCode = 1;
  });

  /** Starts the measurement afresh (tick stats, event-loop delay, counters), e.g. after warm-up. */
  function resetStats() {
    loop.resetStats();
    loopDelay.reset();
    measuredFrom = performance.now();
    const peak = world.players.size;
    for (const key of Object.keys(counters)) counters[key] = 0;
    counters.peakPlayers = peak;
    bytesAtReset = reactor.stats().bytesWritten;
  }
  let measuredFrom = performance.now();
  let bytesAtReset = 0;
  // The first second (module compilation, worker start-up) is not what the report is about.
  const warmup = setTimeout(resetStats, 1000);

  function report() {
    const ticks = loop.stats();
    const workersStats = pool.stats();
    const stats = reactor.stats();
    const delay = (p) => Math.max(0, loopDelay.percentile(p) / 1e6 - LOOP_DELAY_RESOLUTION_MS);
    return {
      backend: reactor.backend,
      hz,
      seconds: (performance.now() - measuredFrom) / 1000,
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
      workers: workersStats,
      players: world.players.size,
      npcs: world.npcs.length,
      bytesOut: stats.bytesWritten - bytesAtReset,
      bytesIn: stats.bytesRead,
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
    await pool.close();
    await reactor.close();
  }

  return {
    port: listener.port,
    host,
    backend: reactor.backend,
    reactor,
    report,
    resetStats,
    close,
    fallbackHistory: reactor.fallbackHistory,
  };
}

const ms = (v) => `${v.toFixed(2)} ms`;

/** Renders a report from `server.report()`. */
export function formatReport(r) {
  const w = r.workers;
  const rate = (n) => Math.round(n / Math.max(r.seconds, 1e-9));
  return [
    `--- game server jitter report: backend ${r.backend}, ${r.hz} Hz, ${r.ticks} ticks in ${r.seconds.toFixed(1)} s ---`,
    `tick start jitter   p50 ${ms(r.jitter.p50)}   p99 ${ms(r.jitter.p99)}   max ${ms(r.jitter.max)}   (skipped ${r.skipped}, overruns ${r.overruns})`,
    `tick duration       p50 ${ms(r.tickDuration.p50)}   p99 ${ms(r.tickDuration.p99)}   max ${ms(r.tickDuration.max)}`,
    `event-loop delay    p50 ${ms(r.loopDelay.p50)}   p99 ${ms(r.loopDelay.p99)}   max ${ms(r.loopDelay.max)}   (beyond the 10 ms sampling interval)`,
    `worker pool         ${w.maxThreads} threads, ${w.completed} tasks done (${r.pathTasks} path batches, ${r.planTasks} planning), ` +
      `utilization ${(w.utilization * 100).toFixed(0)} %, task time p50 ${ms(w.taskTime.p50)} p99 ${ms(w.taskTime.p99)}`,
    `clients             peak ${r.peakPlayers} connected (${r.players} at report time), ${rate(r.statesSent)} states/s, ${rate(r.inputs)} inputs/s, ` +
      `${(r.bytesOut / Math.max(r.seconds, 1e-9) / 1e6).toFixed(1)} MB/s out, ${r.statesDropped} states skipped for slow clients, ` +
      `${r.spoofed} spoofed inputs ignored`,
  ].join('\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = optionsFromEnv();
  const server = await startGameServer(options);
  for (const record of server.fallbackHistory)
    console.log(`backend ${record.backend} unavailable: ${record.cause}`);
  console.log(
    `game server listening on ${server.host}:${server.port} (backend: ${server.backend}, ${options.hz} Hz, ` +
      `${options.workers} workers${options.saturate ? ', saturated' : ''})`,
  );
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const report = server.report();
    await server.close();
    console.log(formatReport(report));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (options.seconds > 0) setTimeout(stop, options.seconds * 1000);
}
