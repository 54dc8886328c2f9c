// Simulated players for the game server, over node:net (so the load generator does not share
// code with the server it measures). Each bot connects, waits for WELCOME, then sends inputs at
// INPUT_HZ (changing direction now and then) and measures input→state latency: the time from
// sending input `seq` to the first STATE whose ackSeq reaches it.
//
// Environment: HOST (127.0.0.1), PORT (7001), BOTS (200), SECONDS (10), INPUT_HZ (20).
// Also runs as a worker thread (see demo.mjs): workerData { role: 'game-bots', options }.
import net from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { DIR, FrameDecoder, MSG, decodeFrame, encodeInput, forEachEntity } from './protocol.mjs';

const RING = 1024;

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** One simulated player. */
class Bot {
  constructor(index) {
    this.index = index;
    this.id = 0;
    this.seq = 0;
    this.ack = 0;
    this.direction = DIR.RIGHT;
    this.sentAt = new Float64Array(RING);
    this.states = 0;
    this.firstStateAt = 0;
    this.lastStateAt = 0;
    this.x = NaN;
    this.y = NaN;
    this.decoder = new FrameDecoder();
    this.socket = null;
  }
}

/**
 * Runs `bots` players against host:port for `seconds`; resolves with a summary: connected bots,
 * states per bot per second, input→state latency percentiles (ms), inputs sent and acknowledged.
 */
export async function runBots({
  host = '127.0.0.1',
  port = 7001,
  bots = 200,
  seconds = 10,
  inputHz = 20,
} = {}) {
  const all = Array.from({ length: bots }, (_, i) => new Bot(i));
  const latencies = [];
  let errors = 0;
  let inputsSent = 0;

  const connect = (bot) =>
    new Promise((done) => {
      const socket = net.connect({ host, port });
      bot.socket = socket;
      socket.setNoDelay(true);
      socket.on('connect', done);
      socket.on('error', () => {
        errors += 1;
        done();
      });
      socket.on('data', (chunk) => {
        for (const frame of bot.decoder.push(chunk)) {
          const message = decodeFrame(frame);
          if (message === null) continue;
          if (message.type === MSG.WELCOME) {
            bot.id = message.playerId;
          } else if (message.type === MSG.STATE) {
            const now = performance.now();
            bot.states += 1;
            if (bot.firstStateAt === 0) bot.firstStateAt = now;
            bot.lastStateAt = now;
            if (message.ackSeq > bot.ack) {
              if (message.ackSeq - bot.ack < RING)
                latencies.push(now - bot.sentAt[message.ackSeq % RING]);
              bot.ack = message.ackSeq;
            }
            forEachEntity(message, (id, x, y) => {
              if (id === bot.id) {
                bot.x = x;
                bot.y = y;
              }
            });
          }
        }
      });
    });

  // Connect in waves so the listen backlog is never the bottleneck.
  for (let i = 0; i < all.length; i += 100) await Promise.all(all.slice(i, i + 100).map(connect));

  const period = 1000 / inputHz;
  const timers = all.map((bot) =>
    setTimeout(() => {
      const send = () => {
        if (bot.id === 0 || bot.socket.destroyed) return;
        if (Math.random() < 0.15) bot.direction = 1 + Math.floor(Math.random() * 4);
        bot.seq += 1;
        bot.sentAt[bot.seq % RING] = performance.now();
        bot.socket.write(encodeInput(bot.id, bot.seq, bot.direction));
        inputsSent += 1;
      };
      send();
      timers[bot.index] = setInterval(send, period);
    }, Math.random() * period),
  );

  const measureFrom = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  for (const timer of timers) clearInterval(timer);
  const measured = (performance.now() - measureFrom) / 1000;
  await new Promise((r) => setTimeout(r, 100)); // let the last acknowledgements arrive
  for (const bot of all) bot.socket.destroy();

  latencies.sort((a, b) => a - b);
  const connected = all.filter((b) => b.id !== 0);
  const statesPerSecond = connected.map((b) =>
    b.lastStateAt > b.firstStateAt ? (b.states - 1) / ((b.lastStateAt - b.firstStateAt) / 1000) : 0,
  );
  return {
    bots,
    connected: connected.length,
    errors,
    seconds: measured,
    inputsSent,
    inputsAcked: latencies.length,
    statesPerBotPerSecond:
      statesPerSecond.reduce((a, b) => a + b, 0) / Math.max(1, statesPerSecond.length),
    latency: {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: latencies.at(-1) ?? 0,
    },
  };
}

/** Renders a runBots() summary. */
export function formatBots(r) {
  return (
    `--- bots: ${r.connected}/${r.bots} connected, ${r.errors} errors, ${r.seconds.toFixed(1)} s ---\n` +
    `state broadcasts    ${r.statesPerBotPerSecond.toFixed(1)} per bot per second\n` +
    `input→state latency p50 ${r.latency.p50.toFixed(2)} ms   p99 ${r.latency.p99.toFixed(2)} ms   max ${r.latency.max.toFixed(2)} ms ` +
    `(${r.inputsAcked} of ${r.inputsSent} inputs acknowledged)`
  );
}

if (!isMainThread && workerData?.role === 'game-bots') {
  parentPort.postMessage(await runBots(workerData.options));
} else if (
  process.argv[1] !== undefined &&
  resolve(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  const env = process.env;
  const result = await runBots({
    host: env.HOST ?? '127.0.0.1',
    port: Number(env.PORT ?? 7001),
    bots: Number(env.BOTS ?? 200),
    seconds: Number(env.SECONDS ?? 10),
    inputHz: Number(env.INPUT_HZ ?? 20),
  });
  console.log(formatBots(result));
}
