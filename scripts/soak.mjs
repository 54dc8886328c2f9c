// Soak run (`pnpm soak`, not in CI): a mixed workload against one reactor for a configurable
// time, with a runtime fallback every few minutes, sampling fd count, RSS, heap and event-loop
// delay once a second. Writes <out>/soak-<stamp>.json (samples and summary) and a PNG
// plot of the four series, so a leak shows as a rising line.
//
//   node scripts/soak.mjs [--minutes 30] [--fallback-every 3] [--clients 32] [--backend epoll]
//                         [--block 1024] [--interval 100] [--out bench/results]
//
// Workload: `clients` TCP echo streams (iomux listener, node:net clients, every byte checked; each
// sends a `--block`-byte block every `--interval` ms), connection churn (a short-lived client
// every 100 ms, its echo checked) and a UDP echo exchange (every 20 ms, each reply checked). A
// fallback is forced by the reactor's `faults.afterBytes`, reached by a trigger connection: the
// threshold is set well above what the paced workload reads in one fallback period, so only the
// trigger reaches it (an unpaced workload would reach it on its own, fail the backends one after
// another and leave the reactor closed until the next restart). Once the chain is used up, the
// reactor is closed and a new one takes over (clients reconnect).
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { deflateSync } from 'node:zlib';
import { createReactor, listBackends } from '../packages/core/dist/index.js';
import { pattern } from '../packages/core/test/fixtures/pattern.mjs';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'fallback-every': { type: 'string', default: '3' },
    clients: { type: 'string', default: '32' },
    backend: { type: 'string', default: 'epoll' },
    block: { type: 'string', default: '1024' },
    interval: { type: 'string', default: '100' },
    out: { type: 'string', default: 'bench/results' },
  },
});
const durationMs = Number(values.minutes) * 60_000;
const fallbackEveryMs = Number(values['fallback-every']) * 60_000;
const clientCount = Number(values.clients);
const blockBytes = Number(values.block);
const intervalMs = Number(values.interval);
// What the streams read in one fallback period (echoes count on the reactor's side once), times
// four, plus room for churn and UDP: only the trigger connection reaches it.
const TRIGGER =
  4 * Math.ceil((clientCount * blockBytes * fallbackEveryMs) / intervalMs) + (16 << 20);
const TRIGGER_CHUNK = 1 << 20;

const available = new Set(
  listBackends()
    .filter((b) => b.available)
    .map((b) => b.name),
);
const order = ['epoll', 'io_uring', 'select', 'blocking_io'].filter((b) => available.has(b));
const chain = [values.backend, ...order.filter((b) => b !== values.backend)];

const stats = {
  bytesVerified: 0,
  corrupt: 0,
  churned: 0,
  churnFailed: 0,
  churnErrors: {},
  churnBadEcho: 0,
  udpSent: 0,
  udpEchoed: 0,
  udpBadEcho: 0,
  fallbacks: 0,
  restarts: 0,
};

/** A reactor on the first backend of the chain, echoing TCP and UDP, with its trigger listener. */
async function startReactor() {
  const afterBytes = Object.fromEntries(chain.map((b) => [b, TRIGGER]));
  const reactor = createReactor(
    { ioModel: 'auto', retry: { fallback: chain } },
    {
      env: { ...process.env, IOMUX_BACKEND: chain[0] },
      faults: { afterBytes },
      closeTimeoutMs: 2000,
    },
  );
  reactor.on('fallback', () => (stats.fallbacks += 1));
  const echo = (conn) => {
    conn.on('error', () => {});
    conn.on('data', (chunk) => {
      if (!conn.write(chunk)) {
        conn.pause();
        conn.once('drain', () => conn.resume());
      }
    });
  };
  const listener = await reactor.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, echo);
  const trigger = await reactor.listen({ host: '127.0.0.1', port: 0 }, (c) =>
    c.on('data', () => {}),
  );
  const udp = await reactor.udp({ host: '127.0.0.1', port: 0 });
  udp.on('message', (msg, from) => udp.send(msg, from.port, from.address));
  return { reactor, port: listener.port, triggerPort: trigger.port, udpPort: udp.address().port };
}

/**
 * An endless echo stream: writes a block, checks it came back, waits `intervalMs`, repeats, until
 * stopped.
 */
function streamClient(port, seed, stopped) {
  return new Promise((resolve) => {
    const block = pattern(blockBytes, seed);
    const socket = net.connect({ host: '127.0.0.1', port });
    let received = 0;
    socket.on('connect', () => socket.write(block));
    socket.on('data', (chunk) => {
      const at = received % block.length;
      if (
        !chunk.equals(block.subarray(at, at + chunk.length)) &&
        chunk.length <= block.length - at
      ) {
        stats.corrupt += 1;
      }
      received += chunk.length;
      stats.bytesVerified += chunk.length;
      if (received % block.length === 0) {
        if (stopped()) socket.end();
        else
          setTimeout(() => {
            if (stopped()) socket.end();
            else socket.write(block);
          }, intervalMs);
      }
    });
    socket.on('error', () => {});
    socket.on('close', resolve);
  });
}

const samples = [];
const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();
const started = Date.now();
let current = await startReactor();
let generation = 0;
let lastFallbackAt = started;
let running = true;

async function clientsLoop() {
  while (running) {
    const gen = generation;
    const stopped = () => !running || gen !== generation;
    await Promise.all(
      Array.from({ length: clientCount }, (_, i) => streamClient(current.port, i + 1, stopped)),
    );
  }
}
const clients = clientsLoop();
const churn = setInterval(() => {
  const s = net.connect({ host: '127.0.0.1', port: current.port }, () => s.end('churn'));
  let echoed = '';
  s.on('data', (d) => (echoed += d.toString('latin1')));
  s.on('close', (hadError) => {
    if (hadError) stats.churnFailed += 1;
    else if (echoed !== 'churn') stats.churnBadEcho += 1;
    else stats.churned += 1;
  });
  s.on('error', (err) => {
    stats.churnErrors[err.code] = (stats.churnErrors[err.code] ?? 0) + 1;
  });
}, 100);
const udpClient = (await import('node:dgram')).createSocket('udp4');
const datagram = pattern(200, 5);
udpClient.on('message', (msg) => {
  if (msg.equals(datagram)) stats.udpEchoed += 1;
  else stats.udpBadEcho += 1;
});
await new Promise((r) => udpClient.bind(0, '127.0.0.1', r));
const udpTimer = setInterval(() => {
  stats.udpSent += 1;
  udpClient.send(datagram, current.udpPort, '127.0.0.1');
}, 20);

async function forceFallback() {
  const runtime = current.reactor.fallbackHistory.filter((r) => r.phase === 'runtime').length;
  if (runtime >= chain.length - 1) {
    // The chain is used up: a fresh reactor takes over; the stream clients reconnect.
    const old = current;
    current = await startReactor();
    generation += 1;
    stats.restarts += 1;
    await old.reactor.close();
    return;
  }
  // The trigger streams megabyte chunks (with backpressure, so RSS stays flat) until the engine
  // has read TRIGGER bytes and the fallback is recorded.
  const fellBack = () =>
    current.reactor.fallbackHistory.filter((r) => r.phase === 'runtime').length !== runtime;
  const chunk = pattern(TRIGGER_CHUNK, 9);
  const t = net.connect({ host: '127.0.0.1', port: current.triggerPort });
  t.on('error', () => {});
  const pump = () => {
    while (!fellBack() && !t.destroyed && t.write(chunk));
  };
  t.on('connect', pump);
  t.on('drain', pump);
  const tick = setInterval(() => t.write('x'), 20);
  const deadline = Date.now() + 60_000;
  while (!fellBack() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  clearInterval(tick);
  t.destroy();
}

while (Date.now() - started < durationMs) {
  await new Promise((r) => setTimeout(r, 1000));
  if (Date.now() - lastFallbackAt >= fallbackEveryMs) {
    lastFallbackAt = Date.now();
    await forceFallback();
  }
  const mem = process.memoryUsage();
  samples.push({
    t: (Date.now() - started) / 1000,
    fds: readdirSync('/proc/self/fd').length,
    rssMiB: mem.rss / 1048576,
    heapMiB: mem.heapUsed / 1048576,
    // Native memory V8 knows of (read arenas are external Buffers) and the arenas allocated, to
    // tell a leak from the arena pool filling up (it keeps up to 80 MiB of blocks for reuse).
    externalMiB: mem.external / 1048576,
    readArenas: current.reactor.stats().readArenas,
    loopDelayP99Ms: delay.percentile(99) / 1e6,
    backend: current.reactor.backend,
    connections: current.reactor.connectionCount(),
  });
  delay.reset();
}
running = false;
clearInterval(churn);
clearInterval(udpTimer);
generation += 1;
await clients;
udpClient.close();
await current.reactor.close();

// ---- report ----
const series = ['fds', 'rssMiB', 'heapMiB', 'loopDelayP99Ms'];
const summary = {
  ...stats,
  minutes: Number(values.minutes),
  fallbackEveryMinutes: Number(values['fallback-every']),
  clients: clientCount,
  blockBytes,
  intervalMs,
  triggerBytes: TRIGGER,
  chain,
  samples: samples.length,
};
for (const key of [...series, 'externalMiB', 'readArenas']) {
  const values_ = samples.map((s) => s[key]);
  const tenth = Math.max(1, Math.floor(values_.length / 10));
  const first = values_.slice(0, tenth).reduce((a, b) => a + b, 0) / tenth;
  const last = values_.slice(-tenth).reduce((a, b) => a + b, 0) / tenth;
  summary[key] = {
    min: Math.min(...values_),
    max: Math.max(...values_),
    firstTenth: first,
    lastTenth: last,
  };
}
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
mkdirSync(values.out, { recursive: true });
const report = `${values.out}/soak-${stamp}.json`;
writeFileSync(report, `${JSON.stringify({ summary, samples }, null, 1)}\n`);
writeFileSync(`${values.out}/soak-${stamp}.png`, plot(samples, series));
console.log(JSON.stringify(summary, null, 1));
console.log(`report: ${report}, plot: ${values.out}/soak-${stamp}.png`);
// Wrong bytes anywhere fail the run; refused churn connects during a restart do not.
const clean = stats.corrupt === 0 && stats.churnBadEcho === 0 && stats.udpBadEcho === 0;
process.exit(clean ? 0 : 1);

/** Four stacked line charts (one per series, each scaled to its own range), as a PNG. */
function plot(points, keys) {
  const width = 800;
  const panel = 150;
  const height = panel * keys.length;
  const rgb = Buffer.alloc(width * height * 3, 255);
  const colours = [
    [200, 30, 30],
    [30, 120, 200],
    [30, 160, 60],
    [150, 60, 180],
  ];
  const set = (x, y, [r, g, b]) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const at = (y * width + x) * 3;
    rgb[at] = r;
    rgb[at + 1] = g;
    rgb[at + 2] = b;
  };
  keys.forEach((key, k) => {
    const top = k * panel;
    for (let x = 0; x < width; x += 1) set(x, top + panel - 1, [180, 180, 180]);
    const values_ = points.map((p) => p[key]);
    const lo = 0;
    const hi = Math.max(...values_, 1e-9) * 1.1;
    let prev;
    points.forEach((p, i) => {
      const x = Math.round((i / Math.max(1, points.length - 1)) * (width - 1));
      const y = top + Math.round((1 - (p[key] - lo) / (hi - lo)) * (panel - 10)) + 5;
      if (prev) {
        const steps = Math.max(Math.abs(x - prev[0]), Math.abs(y - prev[1]), 1);
        for (let s = 0; s <= steps; s += 1) {
          set(
            Math.round(prev[0] + ((x - prev[0]) * s) / steps),
            Math.round(prev[1] + ((y - prev[1]) * s) / steps),
            colours[k],
          );
        }
      }
      prev = [x, y];
    });
  });
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y += 1)
    rgb.copy(raw, y * (width * 3 + 1) + 1, y * width * 3, (y + 1) * width * 3);
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(buf) {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k += 1) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
