import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import dgram from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DIR, NPC_FLAG } from '../protocol.mjs';
import {
  ENTITY_DGRAM_BYTES,
  MAX_DATAGRAM,
  PROTOCOL_ID,
  REJECT_REASON,
  STATE_DGRAM_HEADER,
  UDP,
  decodeServerDatagram,
  encodeBye,
  encodeHello,
  encodeInputDatagram,
  encodeJoin,
  forEachDatagramEntity,
  maxEntitiesFor,
  tickNewer,
  writeStateDatagramHeader,
} from '../udp-protocol.mjs';
import { World } from '../world.mjs';
import { HERE, collect, exited, jsonReport, sleep, until } from './helpers.js';

interface State {
  tick: number;
  ackSeq: number;
  size: number;
  ids: number[];
  entities: Map<number, { x: number; y: number }>;
}

type Reply = Exclude<ReturnType<typeof decodeServerDatagram>, null | { type: typeof UDP.STATE }>;

interface Welcome {
  playerId: number;
  token: Buffer;
  hz: number;
  maxEntities: number;
  timeoutMs: number;
}

/** A raw UDP game client over node:dgram: the handshake, inputs, states. */
class UdpClient {
  readonly states: State[] = [];
  readonly replies: Reply[] = [];
  readonly nonce = (Math.random() * 0x1_0000_0000) >>> 0;
  welcome: Welcome | undefined;
  stale = 0;
  /** The newest input sent with the player's own id and token: what a keepalive repeats. */
  lastInput: [seq: number, direction: number] = [0, DIR.NONE];
  private lastTick = -1;

  private constructor(
    readonly socket: dgram.Socket,
    readonly port: number,
  ) {
    socket.on('message', (data) => {
      const message = decodeServerDatagram(data);
      if (message === null) return;
      if (message.type !== UDP.STATE) {
        this.replies.push(message);
        return;
      }
      // Clients drop a state that is not newer than the last one applied.
      if (this.lastTick >= 0 && !tickNewer(message.tick, this.lastTick)) {
        this.stale += 1;
        return;
      }
      this.lastTick = message.tick;
      const entities = new Map<number, { x: number; y: number }>();
      const ids: number[] = [];
      forEachDatagramEntity(message, (id, x, y) => {
        entities.set(id, { x, y });
        ids.push(id);
      });
      this.states.push({
        tick: message.tick,
        ackSeq: message.ackSeq,
        size: data.length,
        ids,
        entities,
      });
    });
  }

  static async open(port: number): Promise<UdpClient> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => {
      socket.connect(port, '127.0.0.1', resolve);
    });
    return new UdpClient(socket, port);
  }

  send(data: Buffer): void {
    this.socket.send(data);
  }

  /** Waits for (and takes) the first reply of that type. */
  async reply<T extends Reply['type']>(
    type: T,
    what: string,
  ): Promise<Extract<Reply, { type: T }>> {
    const match = (r: Reply): r is Extract<Reply, { type: T }> => r.type === type;
    await until(() => this.replies.some(match), what);
    const index = this.replies.findIndex(match);
    return this.replies.splice(index, 1)[0] as Extract<Reply, { type: T }>;
  }

  async challenge(): Promise<Buffer> {
    this.send(encodeHello(this.nonce));
    const reply = await this.reply(UDP.CHALLENGE, 'CHALLENGE');
    expect(reply.nonce).toBe(this.nonce);
    return reply.cookie;
  }

  async join(): Promise<Welcome> {
    const cookie = await this.challenge();
    this.send(encodeJoin(this.nonce, cookie));
    const reply = await this.reply(UDP.WELCOME, 'WELCOME');
    expect(reply.nonce).toBe(this.nonce);
    this.welcome = reply;
    return reply;
  }

  /** An INPUT as this player. */
  input(seq: number, direction: number): void {
    this.lastInput = [seq, direction];
    this.send(encodeInputDatagram(this.welcome!.playerId, this.welcome!.token, seq, direction));
  }

  /** An INPUT naming any player and token (spoofing attempts). */
  forged(seq: number, direction: number, id: number, token: Buffer): void {
    this.send(encodeInputDatagram(id, token, seq, direction));
  }

  get last(): State | undefined {
    return this.states.at(-1);
  }

  position(): { x: number; y: number } {
    const me = this.last?.entities.get(this.welcome!.playerId);
    if (me === undefined) throw new Error('own player missing from the state');
    return me;
  }

  async acked(seq: number): Promise<State> {
    await until(() => (this.last?.ackSeq ?? 0) >= seq, `ack of input ${seq}`);
    return this.last!;
  }

  /** Closes the socket; resolves once it is closed (its fd and UDPWrap gone). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.socket.close(resolve);
    });
  }
}

/** Starts `node server.mjs` with TRANSPORT=udp on a free port. */
async function startServer(env: Record<string, string>): Promise<{
  child: ChildProcessWithoutNullStreams;
  output: { text: () => string };
  port: number;
}> {
  const child = spawn(process.execPath, ['server.mjs'], {
    cwd: HERE,
    env: {
      ...process.env,
      TRANSPORT: 'udp',
      PORT: '0',
      HZ: '60',
      WORKERS: '1',
      REPORT: 'json',
      ...env,
    },
  });
  const output = collect(child);
  await until(
    () => /listening on 127\.0\.0\.1:\d+\/udp/.test(output.text()),
    `the start line (${output.text()})`,
    20_000,
  );
  const port = Number(/listening on 127\.0\.0\.1:(\d+)\/udp/.exec(output.text())![1]);
  return { child, output, port };
}

async function stopServer(child: ChildProcessWithoutNullStreams): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGKILL');
  await exited(child);
}

describe('datagram protocol (udp-protocol.mjs)', () => {
  it('sizes: handshake requests are at least as big as the replies, states fit 1200 bytes', () => {
    expect(encodeHello(1).length).toBe(64);
    expect(encodeJoin(1, Buffer.alloc(16)).length).toBe(64);
    expect(maxEntitiesFor(MAX_DATAGRAM)).toBe(148);
    expect(STATE_DGRAM_HEADER + 148 * ENTITY_DGRAM_BYTES).toBeLessThanOrEqual(MAX_DATAGRAM);
    const state = Buffer.alloc(STATE_DGRAM_HEADER + 2 * ENTITY_DGRAM_BYTES);
    writeStateDatagramHeader(state, 0xffff_fffe, 7, 2);
    expect(decodeServerDatagram(state)).toMatchObject({
      type: UDP.STATE,
      tick: 0xffff_fffe,
      ackSeq: 7,
      count: 2,
    });
    expect(decodeServerDatagram(state.subarray(0, state.length - 1))).toBeNull();
    expect(decodeServerDatagram(Buffer.from([0x99, 1, 2]))).toBeNull();
    expect(decodeServerDatagram(Buffer.alloc(0))).toBeNull();
  });

  it('orders ticks across the u32 wrap-around', () => {
    expect(tickNewer(2, 1)).toBe(true);
    expect(tickNewer(1, 2)).toBe(false);
    expect(tickNewer(5, 5)).toBe(false);
    expect(tickNewer(3, 0xffff_fffe)).toBe(true); // wrapped
    expect(tickNewer(0xffff_fffe, 3)).toBe(false);
  });

  it('caps the entity list to the nearest ones, the player first', () => {
    const world = new World({ width: 32, height: 32, npcs: 400, seed: 7 });
    const player = world.addPlayer(null);
    const snapshot = world.snapshot();
    const out = Buffer.alloc(MAX_DATAGRAM);
    const count = world.visibleInto(player, snapshot, 'aoi', out, STATE_DGRAM_HEADER, 148);
    expect(world.lastCapped).toBe(true);
    expect(count).toBe(148);
    writeStateDatagramHeader(out, 1, 0, count);
    const state = decodeServerDatagram(out.subarray(0, STATE_DGRAM_HEADER + count * 8));
    if (state?.type !== UDP.STATE) throw new Error('expected a STATE');
    const distances: number[] = [];
    const ids: number[] = [];
    forEachDatagramEntity(state, (id, x, y) => {
      ids.push(id);
      distances.push((x - player.x) ** 2 + (y - player.y) ** 2);
    });
    expect(ids[0]).toBe(player.id);
    expect(new Set(ids).size).toBe(148);
    for (let i = 2; i < distances.length; i += 1)
      expect(distances[i]!).toBeGreaterThanOrEqual(distances[i - 1]! - 1e-9);
    // Everything left out is at least as far as the farthest one sent.
    const sent = new Set(ids);
    const farthest = Math.max(...distances);
    for (const npc of world.npcs)
      if (!sent.has(npc.id)) {
        const d =
          (Math.round(npc.x * 16) / 16 - player.x) ** 2 +
          (Math.round(npc.y * 16) / 16 - player.y) ** 2;
        expect(d).toBeGreaterThanOrEqual(farthest - 0.01);
      }
    // Under the cap, everything in the area of interest is sent.
    const few = new World({ width: 64, height: 64, npcs: 4, seed: 3 });
    const p = few.addPlayer(null);
    expect(few.visibleInto(p, few.snapshot(), 'all', out, 0, 148)).toBe(5);
    expect(few.lastCapped).toBe(false);
  });
});

describe('UDP game server (node server.mjs, TRANSPORT=udp)', () => {
  let server: ChildProcessWithoutNullStreams;
  let output: { text: () => string };
  let port = 0;
  const clients: UdpClient[] = [];
  const keepalive: NodeJS.Timeout[] = [];

  beforeAll(async () => {
    ({
      child: server,
      output,
      port,
    } = await startServer({
      NPCS: '8',
      VIEW: 'all',
      TIMEOUT_MS: '700',
    }));
    expect(output.text()).toMatch(/\(backend: \w+, 60 Hz/);
  });

  // Each test's players go with it: their keepalives stop and their sockets close (the server
  // then times them out, which the counters test below expects anyway).
  afterEach(async () => {
    for (const timer of keepalive.splice(0)) clearInterval(timer);
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });

  afterAll(async () => {
    await stopServer(server);
  });

  async function open(): Promise<UdpClient> {
    const client = await UdpClient.open(port);
    clients.push(client);
    return client;
  }

  /** Joins and keeps the player alive with an input (the current one again) every 200 ms. */
  async function join(): Promise<UdpClient> {
    const client = await open();
    await client.join();
    keepalive.push(
      setInterval(() => {
        // A keepalive repeats the newest input: the player is heard from, nothing changes.
        const [seq, direction] = client.lastInput;
        client.input(seq, direction);
      }, 200),
    );
    return client;
  }

  it('joins with HELLO → CHALLENGE → JOIN → WELCOME and streams states at ~60 Hz', async () => {
    const [a, b] = await Promise.all([join(), join()]);
    const wa = a.welcome!;
    const wb = b.welcome!;
    expect(wa.playerId).toBeGreaterThan(0);
    expect(wb.playerId).not.toBe(wa.playerId);
    expect(wa.token.length).toBe(8);
    expect(wa.token.equals(wb.token)).toBe(false);
    expect(wa).toMatchObject({ hz: 60, maxEntities: 148, timeoutMs: 700 });
    await until(() => a.states.length > 0 && b.states.length > 0, 'first states');
    const from = a.states.length;
    const started = performance.now();
    await sleep(1000);
    const rate = (a.states.length - from) / ((performance.now() - started) / 1000);
    expect(rate).toBeGreaterThan(50);
    expect(rate).toBeLessThan(70);
    const ticks = a.states.slice(from).map((s) => s.tick);
    expect(ticks).toEqual([...ticks].sort((x, y) => x - y));
    // VIEW=all: both players and the 8 NPCs, in datagrams far below the cap.
    const last = a.last!;
    expect(last.entities.has(wa.playerId) && last.entities.has(wb.playerId)).toBe(true);
    expect(last.ids.filter((id) => id >= NPC_FLAG)).toHaveLength(8);
    expect(last.size).toBe(STATE_DGRAM_HEADER + 10 * ENTITY_DGRAM_BYTES);
  });

  it('answers a repeated JOIN with the same WELCOME, and refuses a forged cookie or a wrong protocol', async () => {
    const client = await open();
    const cookie = await client.challenge();
    client.send(encodeJoin(client.nonce, cookie));
    const first = await client.reply(UDP.WELCOME, 'WELCOME');
    client.send(encodeJoin(client.nonce, cookie)); // as if the WELCOME had been lost
    const again = await client.reply(UDP.WELCOME, 'the second WELCOME');
    expect(again).toEqual(first);

    // A cookie made for another address:port (or made up) creates nothing.
    const other = await open();
    other.send(encodeJoin(client.nonce, cookie));
    other.send(encodeJoin(other.nonce, Buffer.alloc(16, 7)));
    await sleep(150);
    expect(other.replies).toHaveLength(0);
    expect(other.states).toHaveLength(0);

    other.send(encodeHello(other.nonce, PROTOCOL_ID + 1));
    const reject = await other.reply(UDP.REJECT, 'REJECT');
    expect(reject).toMatchObject({ nonce: other.nonce, reason: REJECT_REASON.PROTOCOL });
    client.send(encodeBye(first.playerId, first.token));
  });

  it('moves a player as its inputs say', async () => {
    const client = await join();
    await until(() => client.states.length > 0, 'first state');
    let seq = 0;
    let moved = 0;
    const moves: [number, number, number][] = [
      [DIR.RIGHT, 1, 0],
      [DIR.LEFT, -1, 0],
      [DIR.DOWN, 0, 1],
      [DIR.UP, 0, -1],
    ];
    for (const [direction, dx, dy] of moves) {
      seq += 1;
      client.input(seq, direction);
      const start = (await client.acked(seq)).entities.get(client.welcome!.playerId)!;
      await sleep(300);
      const end = client.position();
      const distance = Math.abs(end.x - start.x) + Math.abs(end.y - start.y);
      if (distance === 0) continue; // a wall right there
      moved += 1;
      expect(Math.sign(end.x - start.x)).toBe(dx === 0 ? 0 : dx);
      expect(Math.sign(end.y - start.y)).toBe(dy === 0 ? 0 : dy);
      expect(distance).toBeLessThan(3);
    }
    expect(moved).toBeGreaterThan(0);
    seq += 1;
    client.input(seq, DIR.NONE);
    const stopped = (await client.acked(seq)).entities.get(client.welcome!.playerId)!;
    await sleep(150);
    expect(client.position()).toEqual(stopped);
    // An older seq (reordered or duplicated on the way) changes nothing.
    client.input(seq - 1, DIR.RIGHT);
    await sleep(150);
    expect(client.position()).toEqual(stopped);
    expect(client.last!.ackSeq).toBe(seq);
  });

  it('ignores inputs with a wrong token or from another address:port', async () => {
    const victim = await join();
    const attacker = await open();
    await until(() => victim.states.length > 0, 'first state');
    victim.input(1, DIR.NONE);
    const still = (await victim.acked(1)).entities.get(victim.welcome!.playerId)!;
    const { playerId, token } = victim.welcome!;
    // The right id and token, but sent from another socket (another port): spoofed.
    attacker.forged(2, DIR.RIGHT, playerId, token);
    // From the victim's own address:port, but with a guessed token: spoofed.
    const guess = Buffer.from(token);
    guess.writeUInt8(guess.readUInt8(0) ^ 1, 0);
    victim.forged(3, DIR.RIGHT, playerId, guess);
    await sleep(200);
    expect(victim.last!.ackSeq).toBe(1);
    expect(victim.position()).toEqual(still);
    expect(attacker.states).toHaveLength(0);
  });

  it('counts and drops malformed datagrams, and keeps serving', async () => {
    const client = await join();
    const junk = await open();
    const { playerId, token } = client.welcome!;
    const badDirection = encodeInputDatagram(playerId, token, 50, 9);
    for (const datagram of [
      Buffer.alloc(0),
      Buffer.from([0x42]),
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      encodeInputDatagram(playerId, token, 50, DIR.UP).subarray(0, 17), // short
      Buffer.concat([encodeInputDatagram(playerId, token, 50, DIR.UP), Buffer.from([0])]), // long
      encodeHello(1).subarray(0, 40), // short HELLO
      Buffer.alloc(3000, 0x20), // bigger than the receive size: arrives truncated
    ])
      junk.send(datagram);
    client.send(badDirection);
    await sleep(200);
    expect(client.last!.ackSeq).not.toBe(50);
    const count = client.states.length;
    await sleep(200);
    expect(client.states.length).toBeGreaterThan(count + 5); // still served
  });

  it('times out a silent player: its states stop and its inputs are ignored', async () => {
    const client = await open();
    await client.join(); // no keepalive
    await until(() => client.states.length > 0, 'first state');
    await sleep(700 + 500);
    const count = client.states.length;
    await sleep(200);
    expect(client.states.length).toBe(count);
    client.input(1, DIR.RIGHT);
    await sleep(100);
    expect(client.states.length).toBe(count);
  });

  it('removes a player that says BYE', async () => {
    const client = await open();
    const { playerId, token } = await client.join();
    await until(() => client.states.length > 0, 'first state');
    client.send(encodeBye(playerId, token));
    await sleep(100);
    const count = client.states.length;
    await sleep(200);
    expect(client.states.length).toBe(count);
  });

  it('reports the counters and exits cleanly on SIGTERM', async () => {
    server.kill('SIGTERM');
    expect(await exited(server)).toBe(0);
    const text = output.text();
    expect(text).toMatch(/tick start jitter\s+p50 [\d.]+ ms\s+p99 [\d.]+ ms\s+max [\d.]+ ms/);
    expect(text).toMatch(/--- game server jitter report: UDP/);
    const report = jsonReport(text) as Record<string, number>;
    expect(report.transport).toBe('udp');
    expect(report.spoofed).toBeGreaterThanOrEqual(2);
    expect(report.malformed).toBeGreaterThanOrEqual(8);
    expect(report.badCookies).toBeGreaterThanOrEqual(2);
    expect(report.timedOut).toBeGreaterThanOrEqual(1);
    expect(report.left).toBeGreaterThanOrEqual(1);
    expect(report.unknown).toBeGreaterThanOrEqual(1);
    expect(report.rejected).toBeGreaterThanOrEqual(1);
  });
});

describe('UDP datagram size cap (a crowded 32×32 map)', () => {
  it.each(['batch', 'each'])(
    'never sends a STATE above 1200 bytes, and sends the nearest entities (UDP_SEND=%s)',
    async (mode) => {
      const { child, port, output } = await startServer({
        WORLD: '32',
        NPCS: '300',
        VIEW: 'all',
        UDP_SEND: mode,
      });
      const client = await UdpClient.open(port);
      try {
        const { playerId } = await client.join();
        await until(() => client.states.length >= 30, '30 states');
        for (const state of client.states) {
          expect(state.size).toBeLessThanOrEqual(MAX_DATAGRAM);
          expect(state.ids).toHaveLength(148);
          expect(state.ids[0]).toBe(playerId);
        }
        await sleep(1200); // past the server's 1 s warm-up, so the report counts these states
      } finally {
        await client.close();
        child.kill('SIGTERM');
        await exited(child);
      }
      const report = jsonReport(output.text()) as { sendMode: string; statesCapped: number };
      expect(report.sendMode).toBe(mode);
      expect(report.statesCapped).toBeGreaterThan(0);
    },
  );
});
