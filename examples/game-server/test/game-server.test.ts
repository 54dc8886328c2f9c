import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSearcher } from '../astar.mjs';
import {
  DIR,
  ENTITY_BYTES,
  FrameDecoder,
  MSG,
  NPC_FLAG,
  decodeFrame,
  encodeInput,
  encodeStateHeader,
  forEachEntity,
  writeEntity,
} from '../protocol.mjs';
import { HERE, collect, exited, jsonReport, sleep, until } from './helpers.js';

interface State {
  tick: number;
  ackSeq: number;
  at: number;
  entities: Map<number, { x: number; y: number }>;
}

/** A raw test client speaking the game protocol over node:net. */
class Client {
  id = 0;
  hz = 0;
  readonly states: State[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) {
        const message = decodeFrame(frame);
        if (message?.type === MSG.WELCOME) {
          this.id = message.playerId;
          this.hz = message.hz;
        } else if (message?.type === MSG.STATE) {
          const entities = new Map<number, { x: number; y: number }>();
          forEachEntity(message, (id, x, y) => {
            entities.set(id, { x, y });
          });
          this.states.push({
            tick: message.tick,
            ackSeq: message.ackSeq,
            at: performance.now(),
            entities,
          });
        }
      }
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => undefined);
  }

  static async connect(port: number): Promise<Client> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        resolve(s);
      });
      s.once('error', reject);
    });
    const client = new Client(socket);
    await until(() => client.id !== 0, 'WELCOME');
    return client;
  }

  send(direction: number, seq: number, id = this.id): void {
    this.socket.write(encodeInput(id, seq, direction));
  }

  get last(): State | undefined {
    return this.states.at(-1);
  }

  position(): { x: number; y: number } {
    const me = this.last?.entities.get(this.id);
    if (me === undefined) throw new Error('own player missing from the state');
    return me;
  }

  /** Destroys the socket; resolves once it is closed (its fd and TCPSocketWrap gone). */
  close(): Promise<void> {
    if (this.socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => {
        resolve();
      });
      this.socket.destroy();
    });
  }

  /** Resolves with the first state (after now) whose ackSeq reaches `seq`. */
  async acked(seq: number): Promise<State> {
    await until(() => (this.last?.ackSeq ?? 0) >= seq, `ack of input ${seq}`);
    return this.last!;
  }
}

describe('protocol and path-finding', () => {
  it('splits frames across arbitrary chunk boundaries', () => {
    const header = encodeStateHeader(7, 3, 2);
    const block = Buffer.alloc(2 * ENTITY_BYTES);
    writeEntity(block, 0, 5, 1.5, 2.25);
    writeEntity(block, ENTITY_BYTES, NPC_FLAG | 1, 10, 20);
    const wire = Buffer.concat([encodeInput(5, 1, DIR.LEFT), header, block]);
    for (let cut = 1; cut < wire.length; cut += 1) {
      const decoder = new FrameDecoder();
      const frames = [...decoder.push(wire.subarray(0, cut)), ...decoder.push(wire.subarray(cut))];
      expect(frames).toHaveLength(2);
      expect(decodeFrame(frames[0]!)).toMatchObject({
        type: MSG.INPUT,
        playerId: 5,
        seq: 1,
        direction: DIR.LEFT,
      });
      const state = decodeFrame(frames[1]!);
      expect(state).toMatchObject({ type: MSG.STATE, tick: 7, ackSeq: 3, count: 2 });
      const seen: number[][] = [];
      if (state?.type !== MSG.STATE) throw new Error('expected a STATE frame');
      forEachEntity(state, (id, x, y) => {
        seen.push([id, x, y]);
      });
      expect(seen).toEqual([
        [5, 1.5, 2.25],
        [(NPC_FLAG | 1) >>> 0, 10, 20],
      ]);
    }
    expect(() => new FrameDecoder(10).push(Buffer.from([0xff, 0x00]))).toThrow(/frame length/);
  });

  it('A* finds a shortest path around walls, and none into a closed room', () => {
    const width = 7;
    const height = 5;
    // prettier-ignore
    const walls = Uint8Array.from([
      0, 0, 0, 1, 0, 0, 0,
      0, 1, 0, 1, 0, 1, 0,
      0, 1, 0, 1, 0, 1, 0,
      0, 1, 0, 0, 0, 1, 0,
      0, 1, 1, 1, 1, 1, 1,
    ]);
    const findPath = createSearcher(width, height);
    const { path } = findPath(walls, 0, 0, 6, 3);
    // Along the top, down the corridor at x=2, under the wall at x=3, up to the top, over and
    // down the corridor at x=6: 15 steps.
    expect(path.length / 2).toBe(15);
    expect([...path.slice(-2)]).toEqual([6, 3]);
    for (let i = 0; i < path.length; i += 2) expect(walls[path[i + 1]! * width + path[i]!]).toBe(0);
    expect(findPath(walls, 0, 0, 0, 4).path.length / 2).toBe(4);
    walls[2 * width + 6] = 1;
    expect(findPath(walls, 0, 0, 6, 3).path.length).toBe(0); // sealed off
  });
});

describe('TCP game server (node server.mjs, TRANSPORT=tcp)', () => {
  let server: ChildProcessWithoutNullStreams;
  let output: { text: () => string };
  let port = 0;
  const clients: Client[] = [];

  beforeAll(async () => {
    server = spawn(process.execPath, ['server.mjs'], {
      cwd: HERE,
      env: {
        ...process.env,
        TRANSPORT: 'tcp',
        PORT: '0',
        HZ: '60',
        NPCS: '8',
        VIEW: 'all',
        WORKERS: '1',
      },
    });
    output = collect(server);
    await until(
      () => /listening on 127\.0\.0\.1:\d+\/tcp/.test(output.text()),
      'the start line',
      20_000,
    );
    port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(output.text())![1]);
    expect(output.text()).toMatch(/\(backend: \w+, 60 Hz/);
  });

  // Each test's players disconnect when it ends.
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });

  afterAll(async () => {
    if (server.exitCode === null) {
      server.kill('SIGKILL');
      await exited(server);
    }
  });

  async function connect(): Promise<Client> {
    const client = await Client.connect(port);
    clients.push(client);
    return client;
  }

  it('welcomes each player and broadcasts the state at ~60 Hz', async () => {
    const [a, b] = await Promise.all([connect(), connect()]);
    expect(a.id).toBeGreaterThan(0);
    expect(b.id).not.toBe(a.id);
    expect(a.hz).toBe(60);
    await until(() => a.states.length > 0 && b.states.length > 0, 'first states');
    const from = [a.states.length, b.states.length];
    const started = performance.now();
    await sleep(1000);
    const elapsed = (performance.now() - started) / 1000;
    for (const [i, client] of [a, b].entries()) {
      const rate = (client.states.length - from[i]!) / elapsed;
      expect(rate).toBeGreaterThan(50);
      expect(rate).toBeLessThan(70);
      const recent = client.states.slice(from[i]);
      const ticks = recent.map((s) => s.tick);
      expect(ticks).toEqual([...ticks].sort((x, y) => x - y)); // in order
      expect(ticks.at(-1)! - ticks[0]! + 1).toBeGreaterThanOrEqual(ticks.length);
    }
    // VIEW=all: both players and the 8 NPCs are in every state.
    const last = a.last!;
    expect(last.entities.has(a.id) && last.entities.has(b.id)).toBe(true);
    expect([...last.entities.keys()].filter((id) => id >= NPC_FLAG)).toHaveLength(8);
  });

  it('moves a player as its inputs say, and only its own player', async () => {
    const client = await connect();
    const other = await connect();
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
      client.send(direction, seq);
      const start = (await client.acked(seq)).entities.get(client.id)!;
      await sleep(300);
      const end = client.position();
      const distance = Math.abs(end.x - start.x) + Math.abs(end.y - start.y);
      if (distance === 0) continue; // a wall right there
      moved += 1;
      // 6 cells/s for ~0.3 s, along the commanded axis only (unless a wall stopped it).
      expect(Math.sign(end.x - start.x)).toBe(dx === 0 ? 0 : dx);
      expect(Math.sign(end.y - start.y)).toBe(dy === 0 ? 0 : dy);
      expect(distance).toBeLessThan(3);
    }
    expect(moved).toBeGreaterThan(0);

    seq += 1;
    client.send(DIR.NONE, seq);
    const stopped = (await client.acked(seq)).entities.get(client.id)!;
    await sleep(150);
    expect(client.position()).toEqual(stopped);

    // Another client cannot steer this player: its input names our id and is ignored.
    const ackBefore = client.last!.ackSeq;
    other.send(DIR.RIGHT, 1_000_000, client.id);
    await sleep(150);
    expect(client.last!.ackSeq).toBe(ackBefore);
    expect(client.position()).toEqual(stopped);
  });

  it('closes a connection that sends a malformed frame', async () => {
    const client = await connect();
    client.socket.write(Buffer.from([0, 0]));
    await until(() => client.closed, 'the server to close the connection');
  });

  it('prints the jitter report and exits cleanly on SIGTERM', async () => {
    server.kill('SIGTERM');
    expect(await exited(server)).toBe(0);
    const text = output.text();
    expect(text).toMatch(/tick start jitter\s+p50 [\d.]+ ms\s+p99 [\d.]+ ms\s+max [\d.]+ ms/);
    expect(text).toMatch(/event-loop delay\s+p50/);
    expect(text).toMatch(/worker pool\s+1 threads/);
    expect(text).toMatch(/--- game server jitter report: TCP/);
    expect(text).toMatch(/[1-9]\d* spoofed inputs ignored/);
  });
});

describe('demo (node demo.mjs): server here, bots in a child process', () => {
  it.each(['udp', 'tcp'])(
    'runs server and bots over %s, prints both reports and exits by itself',
    async (transport) => {
      const demo = spawn(process.execPath, ['demo.mjs'], {
        cwd: HERE,
        env: {
          ...process.env,
          TRANSPORT: transport,
          BOTS: '20',
          SECONDS: '2',
          NPCS: '16',
          WORKERS: '1',
          SATURATE: '1',
          REPORT: 'json',
        },
      });
      const output = collect(demo);
      expect(await exited(demo)).toBe(0);
      const text = output.text();
      expect(text).toMatch(
        new RegExp(`bots \\(${transport.toUpperCase()}, own process\\): 20/20 joined, 0 errors`),
      );
      expect(text).toMatch(/input→state latency p50 [\d.]+ ms/);
      expect(text).toMatch(/tick start jitter\s+p50 [\d.]+ ms/);
      const rate = Number(/state broadcasts\s+([\d.]+) per bot per second/.exec(text)![1]);
      expect(rate).toBeGreaterThan(45);
      const report = jsonReport(text) as {
        server: { transport: string; players: number; ticks: number };
        bots: { joined: number; cpu: { total: number }; latency: { count: number } };
      };
      expect(report.server.transport).toBe(transport);
      expect(report.server.players).toBe(20); // measured before the bots left
      expect(report.server.ticks).toBeGreaterThan(90);
      expect(report.bots.joined).toBe(20);
      expect(report.bots.latency.count).toBeGreaterThan(0);
      expect(report.bots.cpu.total).toBeGreaterThan(0);
    },
  );
});
