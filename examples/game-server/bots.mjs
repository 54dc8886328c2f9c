// Simulated players for the game server: one node:dgram socket per player over UDP (default), or
// one node:net connection per player over TCP. They use Node's own sockets, never iomux, so the
// load generator shares no code with the server it measures, and they run in their own process
// (demo.mjs forks this file).
//
// Each bot joins (UDP: HELLO → CHALLENGE → JOIN → WELCOME; TCP: connect → WELCOME), then sends
// inputs at INPUT_HZ (changing direction now and then) and measures
// - input→state latency: from sending input `seq` to the first STATE whose ackSeq reaches it;
// - state arrival jitter: |gap between two states − (their tick difference × period)|, the tick
//   jitter as a client sees it (it includes this process's own scheduling delays);
// - states lost or skipped (gaps in tick numbers) and stale ones (UDP: not newer than the last).
// All inputs of one 5 ms slot go out from one timer callback, so 1000 players cost one timer.
//
// Environment: TRANSPORT (udp), HOST (127.0.0.1), PORT (7001), BOTS (200), SECONDS (10),
// INPUT_HZ (20), HZ (60: the server's tick rate, for the jitter figure).
// Forked with an IPC channel (demo.mjs, bench/game.mjs) it sends { type: 'joined' } once every
// bot is in, { type: 'measured' } when the measured window ends (before the bots leave), then
// { type: 'result', result } and exits; otherwise it prints its report.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { FrameDecoder, MSG, decodeFrame, encodeInput } from './protocol.mjs';
import {
  STATE_DGRAM_HEADER,
  ENTITY_DGRAM_BYTES,
  UDP,
  encodeBye,
  encodeHello,
  encodeInputDatagram,
  encodeJoin,
  decodeServerDatagram,
  tickNewer,
} from './udp-protocol.mjs';

/** The CPUs this process's main thread may run on (`0-1`; Linux), or undefined elsewhere. */
function ownCpus() {
  try {
    return /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

const RING = 1024;
const SLOT_MS = 5;
const JOIN_WAVE = 100;
const RETRY_MS = 250;
const JOIN_TIMEOUT_MS = 10_000;

/** A histogram of ms values in 10 µs buckets up to 2 s (beyond: counted in the last bucket). */
class Histogram {
  constructor() {
    this.buckets = new Uint32Array(200_000);
    this.count = 0;
    this.max = 0;
  }

  record(ms) {
    const v = Math.abs(ms);
    this.buckets[Math.min(this.buckets.length - 1, Math.floor(v * 100))] += 1;
    this.count += 1;
    if (v > this.max) this.max = v;
  }

  percentile(p) {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i += 1) {
      seen += this.buckets[i];
      if (seen >= rank) return Math.min(this.max, (i + 1) / 100);
    }
    return this.max;
  }

  summary() {
    return { count: this.count, p50: this.percentile(50), p99: this.percentile(99), max: this.max };
  }
}

/** One simulated player. */
class Bot {
  constructor(index) {
    this.index = index;
    this.id = 0;
    this.token = null;
    this.nonce = (Math.random() * 0x1_0000_0000) >>> 0;
    this.seq = 0;
    this.ack = 0;
    this.direction = 1 + (index % 4);
    this.sentAt = new Float64Array(RING);
    this.states = 0;
    this.lastTick = -1;
    this.lastAt = 0;
    this.socket = null;
    this.joined = false;
    this.failed = false;
    this.decoder = null;
    /** Inputs measuredFrom..measuredTo were sent in the measured window. */
    this.measuredFrom = Infinity;
    this.measuredTo = Infinity;
  }
}

/**
 * Runs `bots` players against host:port for `seconds`; resolves with a summary. `onJoined` is
 * called once every bot has joined, when the measured window starts; `onMeasured` when it ends
 * (before the bots leave).
 */
export async function runBots({
  transport = 'udp',
  host = '127.0.0.1',
  port = 7001,
  bots = 200,
  seconds = 10,
  inputHz = 20,
  hz = 60,
  onJoined = () => undefined,
  onMeasured = () => undefined,
} = {}) {
  const period = 1000 / hz;
  const all = Array.from({ length: bots }, (_, i) => new Bot(i));
  const latency = new Histogram();
  const arrival = new Histogram();
  let measuring = false;
  let errors = 0;
  let inputsSent = 0;
  let stale = 0;
  let missedTicks = 0;
  let malformed = 0;
  let rejected = 0;
  let biggestDatagram = 0;
  let bytesIn = 0;

  /** A STATE for `bot` arrived at `now`; a stale one (tick not newer) is counted and dropped. */
  function onState(bot, tick, ackSeq, now) {
    if (bot.lastTick >= 0 && !tickNewer(tick, bot.lastTick)) {
      stale += 1; // older than (or the same as) one already applied: drop it
      return;
    }
    if (measuring) {
      bot.states += 1;
      if (bot.lastTick >= 0) {
        const ticks = (tick - bot.lastTick) >>> 0;
        missedTicks += ticks - 1;
        arrival.record(now - bot.lastAt - ticks * period);
      }
    }
    // Latency of inputs sent in the measured window (their acks may come just after it).
    if (
      ackSeq > bot.ack &&
      ackSeq >= bot.measuredFrom &&
      ackSeq <= bot.measuredTo &&
      ackSeq - bot.ack < RING
    )
      latency.record(now - bot.sentAt[ackSeq % RING]);
    if (ackSeq > bot.ack) bot.ack = ackSeq;
    bot.lastTick = tick;
    bot.lastAt = now;
  }

  // --- UDP --------------------------------------------------------------------------------
  function udpJoin(bot) {
    return new Promise((done) => {
      const socket = dgram.createSocket({ type: 'udp4' });
      bot.socket = socket;
      let timer;
      let finished = false;
      const finish = () => {
        finished = true;
        clearInterval(timer);
        done();
      };
      socket.on('error', () => {
        errors += 1;
        bot.failed = true;
        finish();
      });
      let challenge = null;
      const hello = encodeHello(bot.nonce);
      const attempt = () => {
        if (finished) return;
        socket.send(challenge === null ? hello : encodeJoin(bot.nonce, challenge));
      };
      socket.on('message', (data) => {
        if (bot.joined && data[0] === UDP.STATE) {
          // The hot path: only the header matters to a bot.
          bytesIn += data.length;
          if (data.length > biggestDatagram) biggestDatagram = data.length;
          if (
            data.length < STATE_DGRAM_HEADER ||
            data.length !== STATE_DGRAM_HEADER + data.readUInt16LE(9) * ENTITY_DGRAM_BYTES
          ) {
            malformed += 1;
            return;
          }
          onState(bot, data.readUInt32LE(1), data.readUInt32LE(5), performance.now());
          return;
        }
        if (bot.joined) {
          // A late reply to a retried HELLO or JOIN: expected now and then.
          if (decodeServerDatagram(data) === null) malformed += 1;
          return;
        }
        const message = decodeServerDatagram(data);
        if (message === null || (message.type !== UDP.STATE && message.nonce !== bot.nonce)) return;
        if (message.type === UDP.CHALLENGE) {
          challenge = message.cookie;
          attempt();
        } else if (message.type === UDP.WELCOME) {
          bot.id = message.playerId;
          bot.token = message.token;
          bot.joined = true;
          finish();
        } else if (message.type === UDP.REJECT) {
          rejected += 1;
          bot.failed = true;
          finish();
        }
      });
      socket.connect(port, host, () => {
        attempt();
        timer = setInterval(attempt, RETRY_MS);
      });
      setTimeout(() => {
        if (!bot.joined && !bot.failed) {
          errors += 1;
          bot.failed = true;
          finish();
        }
      }, JOIN_TIMEOUT_MS).unref();
    });
  }

  function udpSend(bot) {
    bot.socket.send(encodeInputDatagram(bot.id, bot.token, bot.seq, bot.direction));
  }

  // --- TCP --------------------------------------------------------------------------------
  function tcpJoin(bot) {
    return new Promise((done) => {
      const socket = net.connect({ host, port });
      bot.socket = socket;
      bot.decoder = new FrameDecoder();
      socket.setNoDelay(true);
      socket.on('error', () => {
        errors += 1;
        bot.failed = true;
        done();
      });
      socket.on('data', (chunk) => {
        bytesIn += chunk.length;
        const now = performance.now();
        for (const frame of bot.decoder.push(chunk)) {
          const message = decodeFrame(frame);
          if (message === null) {
            malformed += 1;
          } else if (message.type === MSG.WELCOME) {
            bot.id = message.playerId;
            bot.joined = true;
            done();
          } else if (message.type === MSG.STATE) {
            onState(bot, message.tick, message.ackSeq, now);
          }
        }
      });
    });
  }

  function tcpSend(bot) {
    bot.socket.write(encodeInput(bot.id, bot.seq, bot.direction));
  }

  const join = transport === 'tcp' ? tcpJoin : udpJoin;
  const send = transport === 'tcp' ? tcpSend : udpSend;

  // Join in waves, so neither the listen backlog nor the server's receive queue overflows.
  for (let i = 0; i < all.length; i += JOIN_WAVE)
    await Promise.all(all.slice(i, i + JOIN_WAVE).map(join));
  const players = all.filter((b) => b.joined);

  // Inputs: bot i sends in slot i % slots of each input period; one timer serves every slot
  // on absolute deadlines (a late callback sends the slots it owes).
  const inputPeriod = 1000 / inputHz;
  const slots = Math.max(1, Math.round(inputPeriod / SLOT_MS));
  const slotMs = inputPeriod / slots;
  const bySlot = Array.from({ length: slots }, (_, s) =>
    players.filter((b) => b.index % slots === s),
  );
  let slot = 0;
  let nextSlotAt = performance.now();
  const timer = setInterval(
    () => {
      const now = performance.now();
      while (nextSlotAt <= now) {
        for (const bot of bySlot[slot]) {
          if (Math.random() < 0.15) bot.direction = 1 + Math.floor(Math.random() * 4);
          bot.seq += 1;
          bot.sentAt[bot.seq % RING] = now;
          send(bot);
          inputsSent += 1;
        }
        slot = (slot + 1) % slots;
        nextSlotAt += slotMs;
      }
    },
    Math.max(1, Math.floor(slotMs)),
  );

  // Let a round of inputs go out before measuring, then measure for `seconds`.
  await new Promise((r) => setTimeout(r, inputPeriod));
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  inputsSent = 0;
  stale = 0;
  bytesIn = 0;
  for (const bot of players) {
    bot.lastTick = -1;
    bot.measuredFrom = bot.seq + 1;
  }
  measuring = true;
  onJoined(players.length);
  const cpuFrom = process.cpuUsage();
  const measureFrom = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const measured = (performance.now() - measureFrom) / 1000;
  const cpu = process.cpuUsage(cpuFrom);
  measuring = false;
  onMeasured();
  clearInterval(timer);
  for (const bot of players) bot.measuredTo = bot.seq;
  loopDelay.disable();
  await new Promise((r) => setTimeout(r, 100)); // let the last acknowledgements arrive
  for (const bot of all) {
    if (transport === 'tcp') bot.socket.destroy();
    else {
      if (bot.joined) bot.socket.send(encodeBye(bot.id, bot.token));
      bot.socket.close();
    }
  }

  const states = players.reduce((n, b) => n + b.states, 0);
  const delay = (v) => Math.max(0, v / 1e6 - 10);
  return {
    transport,
    bots,
    joined: players.length,
    errors,
    rejected,
    seconds: measured,
    inputsSent,
    inputsAcked: latency.count,
    states,
    statesPerBotPerSecond: states / Math.max(1, players.length) / measured,
    missedTicks,
    stale,
    malformed,
    biggestDatagram,
    bytesIn,
    latency: latency.summary(),
    arrivalJitter: arrival.summary(),
    cpus: ownCpus(),
    cpu: {
      user: cpu.user / 1e6 / measured,
      system: cpu.system / 1e6 / measured,
      total: (cpu.user + cpu.system) / 1e6 / measured,
    },
    loopDelay: {
      p50: delay(loopDelay.percentile(50)),
      p99: delay(loopDelay.percentile(99)),
      max: delay(loopDelay.max),
    },
  };
}

const f2 = (v) => `${v.toFixed(2)} ms`;

/** Renders a runBots() summary. */
export function formatBots(r) {
  return [
    `--- bots (${r.transport.toUpperCase()}, own process): ${r.joined}/${r.bots} joined, ${r.errors} errors, ${r.seconds.toFixed(1)} s ---`,
    `state broadcasts    ${r.statesPerBotPerSecond.toFixed(1)} per bot per second, ${r.missedTicks} ticks missed, ${r.stale} stale dropped, ` +
      `${r.malformed} malformed${r.transport === 'udp' ? `, largest datagram ${r.biggestDatagram} B` : ''}`,
    `input→state latency p50 ${f2(r.latency.p50)}   p99 ${f2(r.latency.p99)}   max ${f2(r.latency.max)} ` +
      `(${r.inputsAcked} of ${r.inputsSent} inputs acknowledged)`,
    `state arrival jitter p50 ${f2(r.arrivalJitter.p50)}   p99 ${f2(r.arrivalJitter.p99)}   max ${f2(r.arrivalJitter.max)}`,
    `bots' own cost      CPU ${(r.cpu.total * 100).toFixed(0)} % of a core${r.cpus === undefined ? '' : ` on CPU ${r.cpus}`} (user ${(r.cpu.user * 100).toFixed(0)} %, system ${(r.cpu.system * 100).toFixed(0)} %), ` +
      `event-loop delay p99 ${f2(r.loopDelay.p99)} max ${f2(r.loopDelay.max)}`,
  ].join('\n');
}

/** runBots() options from environment variables (see the top of this file). */
export function botOptionsFromEnv(env = process.env) {
  return {
    transport: env.TRANSPORT === 'tcp' ? 'tcp' : 'udp',
    host: env.HOST ?? '127.0.0.1',
    port: Number(env.PORT ?? 7001),
    bots: Number(env.BOTS ?? 200),
    seconds: Number(env.SECONDS ?? 10),
    inputHz: Number(env.INPUT_HZ ?? 20),
    hz: Number(env.HZ ?? 60),
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = botOptionsFromEnv();
  if (process.send !== undefined) {
    const result = await runBots({
      ...options,
      onJoined: (n) => process.send({ type: 'joined', players: n }),
      onMeasured: () => process.send({ type: 'measured' }),
    });
    process.send({ type: 'result', result }, () => process.disconnect());
  } else {
    console.log(formatBots(await runBots(options)));
  }
}
