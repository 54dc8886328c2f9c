// Model-based test (fast-check): random sequences of write, writev, pause, resume, end, destroy,
// peer sends and runtime migrations on several connections of one reactor, then close(), checked
// against a model of what each side must receive:
// - the node:net peer of a connection gets exactly the bytes written before end() (and a FIN), or
//   a prefix of them when it was destroyed;
// - the connection gets every byte its peer sent, in order (a prefix when destroyed), and no
//   'data' while paused;
// - a write after end() throws IOMUX_WRITE_AFTER_END (returns false once closed); after destroy()
//   it returns false.
// Runs on every backend; `migrate` makes the backend's poll fail (faults.afterBytes, reached by a
// dedicated trigger connection) so every socket moves to the next backend of the chain.
// IOMUX_MODEL_RUNS (default 12) and IOMUX_MODEL_SEED replay or lengthen a run; a failure prints
// fast-check's seed and the shrunk sequence.
import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it, type TestContext } from 'vitest';
import { createReactor, type BackendName, type Connection, type Reactor } from '../../src/index.js';
import { backends, backendTitle, pattern, until } from '../helpers.js';

const CONNECTIONS = 4;
const TRIGGER = 32 * 1024;
const runs = Number(process.env.IOMUX_MODEL_RUNS ?? 12);
const seed =
  process.env.IOMUX_MODEL_SEED === undefined ? undefined : Number(process.env.IOMUX_MODEL_SEED);

type Op =
  | { kind: 'write'; conn: number; size: number }
  | { kind: 'writev'; conn: number; sizes: number[] }
  | { kind: 'pause' | 'resume' | 'end' | 'destroy'; conn: number }
  | { kind: 'peerSend'; conn: number; size: number }
  | { kind: 'migrate' };

const conn = fc.integer({ min: 0, max: CONNECTIONS - 1 });
const size = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 256 * 1024 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), conn, size }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('writev' as const),
      conn,
      sizes: fc.array(size, { minLength: 1, maxLength: 5 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('pause' as const), conn }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('resume' as const), conn }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('end' as const), conn }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('destroy' as const), conn }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('peerSend' as const), conn, size }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'migrate' as const }) },
);

/** What the model says about one connection. */
interface ModelConn {
  sent: Buffer[]; // bytes our side wrote (accepted by write/writev)
  peerSent: Buffer[]; // bytes the peer wrote to us
  ended: boolean;
  destroyed: boolean;
  paused: boolean;
}

/** What actually happened on one connection. */
interface Observed {
  conn: Connection;
  peer: net.Socket;
  peerGot: Buffer[];
  peerSawEnd: boolean;
  got: Buffer[];
  dataWhilePaused: number;
}

/** A sink server: records what each accepted socket receives; ends when the client ends. */
async function sinkServer(): Promise<{
  server: net.Server;
  port: number;
  next: () => Promise<net.Socket>;
}> {
  const waiting: ((s: net.Socket) => void)[] = [];
  const arrived: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    const w = waiting.shift();
    if (w) w(socket);
    else arrived.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const next = (): Promise<net.Socket> => {
    const s = arrived.shift();
    return s ? Promise.resolve(s) : new Promise((resolve) => waiting.push(resolve));
  };
  return { server, port, next };
}

function chainFrom(name: BackendName): BackendName[] {
  const order: BackendName[] = ['epoll', 'io_uring', 'select', 'blocking_io'];
  return [
    name,
    ...order.filter((b) => b !== name && backends.find((x) => x.name === b)?.available),
  ];
}

async function runSequence(backendName: BackendName, ops: Op[], runSeed: number): Promise<void> {
  const chain = chainFrom(backendName);
  const afterBytes: Partial<Record<BackendName, number>> = {};
  for (const b of chain) afterBytes[b] = TRIGGER;
  const reactor: Reactor = createReactor(
    { ioModel: 'auto', retry: { fallback: chain } },
    { env: { IOMUX_BACKEND: backendName }, faults: { afterBytes }, closeTimeoutMs: 5000 },
  );
  const sink = await sinkServer();
  // The trigger: a connection into the reactor that sends TRIGGER bytes per migration.
  const triggerListener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (c) => {
    c.on('data', () => undefined);
  });
  const trigger = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: triggerListener.port }, () => {
      resolve(s);
    });
    s.on('error', reject);
  });
  const model: ModelConn[] = [];
  const observed: Observed[] = [];
  try {
    for (let i = 0; i < CONNECTIONS; i += 1) {
      const c = await reactor.connect({ host: '127.0.0.1', port: sink.port });
      const peer = await sink.next();
      const m: ModelConn = {
        sent: [],
        peerSent: [],
        ended: false,
        destroyed: false,
        paused: false,
      };
      const o: Observed = {
        conn: c,
        peer,
        peerGot: [],
        peerSawEnd: false,
        got: [],
        dataWhilePaused: 0,
      };
      peer.on('data', (chunk: Buffer) => o.peerGot.push(chunk));
      peer.on('end', () => {
        o.peerSawEnd = true;
        peer.end();
      });
      c.on('data', (chunk) => {
        if (m.paused) o.dataWhilePaused += 1;
        o.got.push(Buffer.from(chunk));
      });
      c.on('error', () => undefined);
      model.push(m);
      observed.push(o);
    }
    let migrations = 0;
    let salt = runSeed;
    for (const step of ops) {
      salt += 1;
      if (step.kind === 'migrate') {
        if (migrations >= chain.length - 1) continue;
        migrations += 1;
        trigger.write(pattern(TRIGGER, salt));
        // Checked at the next poll: a byte now and then until the fallback is recorded.
        await until(
          () => {
            trigger.write('x');
            return (
              reactor.fallbackHistory.filter((r) => r.phase === 'runtime').length === migrations
            );
          },
          10_000,
          `migration ${migrations}`,
        );
        continue;
      }
      const m = model[step.conn]!;
      const o = observed[step.conn]!;
      switch (step.kind) {
        case 'write':
        case 'writev': {
          const chunks =
            step.kind === 'write'
              ? [pattern(step.size, salt)]
              : step.sizes.map((s, k) => pattern(s, salt * 7 + k));
          if (m.destroyed) {
            expect(step.kind === 'write' ? o.conn.write(chunks[0]!) : o.conn.writev(chunks)).toBe(
              false,
            );
          } else if (m.ended) {
            const attempt = (): boolean =>
              step.kind === 'write' ? o.conn.write(chunks[0]!) : o.conn.writev(chunks);
            // Ended: a throw, or false once the peer ended too and the connection closed.
            if (o.conn.closed) expect(attempt()).toBe(false);
            else
              expect(attempt).toThrow(
                expect.objectContaining({ code: 'IOMUX_WRITE_AFTER_END' }) as Error,
              );
          } else {
            if (step.kind === 'write') o.conn.write(chunks[0]!);
            else o.conn.writev(chunks);
            m.sent.push(...chunks);
          }
          break;
        }
        case 'pause':
          o.conn.pause();
          if (!m.destroyed) m.paused = true;
          break;
        case 'resume':
          m.paused = false;
          o.conn.resume();
          break;
        case 'end':
          o.conn.end();
          if (!m.destroyed) m.ended = true;
          break;
        case 'destroy':
          o.conn.destroy();
          m.destroyed = true;
          m.paused = false;
          break;
        case 'peerSend': {
          if (m.destroyed || o.peer.destroyed || o.peerSawEnd) break;
          const data = pattern(step.size, salt * 13);
          o.peer.write(data);
          m.peerSent.push(data);
          break;
        }
      }
      // Let the loop run now and then, so operations meet sockets in every state.
      if (salt % 3 === 0) await new Promise((r) => setImmediate(r));
    }
    // Everything still readable gets what its peer sent before the reactor closes.
    for (let i = 0; i < CONNECTIONS; i += 1) {
      const m = model[i]!;
      const o = observed[i]!;
      if (m.destroyed) continue;
      m.paused = false;
      o.conn.resume();
      const want = Buffer.concat(m.peerSent).length;
      await until(
        () => Buffer.concat(o.got).length >= want || o.conn.closed,
        15_000,
        `conn ${i} input`,
      );
    }
    await reactor.close();
    const missingEnd = (): string =>
      JSON.stringify(
        observed
          .map((o, i) => ({ i, ...model[i]!, sent: 0, peerSent: 0, peerSawEnd: o.peerSawEnd }))
          .filter((c) => !c.destroyed && !c.peerSawEnd),
      );
    await until(
      () => observed.every((o, i) => model[i]!.destroyed || o.peerSawEnd),
      15_000,
      'every peer saw the end',
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}: ${missingEnd()}`);
    });
    for (let i = 0; i < CONNECTIONS; i += 1) {
      const m = model[i]!;
      const o = observed[i]!;
      const sent = Buffer.concat(m.sent);
      const peerGot = Buffer.concat(o.peerGot);
      const peerSent = Buffer.concat(m.peerSent);
      const got = Buffer.concat(o.got);
      expect(o.dataWhilePaused, `conn ${i}: 'data' while paused`).toBe(0);
      if (m.destroyed) {
        expect(
          sent.subarray(0, peerGot.length).equals(peerGot),
          `conn ${i}: peer got a prefix`,
        ).toBe(true);
        expect(peerSent.subarray(0, got.length).equals(got), `conn ${i}: got a prefix`).toBe(true);
      } else {
        expect(peerGot.length, `conn ${i}: bytes at the peer`).toBe(sent.length);
        expect(peerGot.equals(sent), `conn ${i}: peer got every byte in order`).toBe(true);
        expect(got.equals(peerSent), `conn ${i}: got every byte in order`).toBe(true);
      }
    }
  } finally {
    trigger.destroy();
    for (const o of observed) o.peer.destroy();
    if (!reactor.closed) await reactor.close();
    await new Promise((r) => sink.server.close(r));
  }
}

describe.each(backends)('connection model: $name', (backend) => {
  it(`random operation sequences match the model: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 1, max: 1 << 20 }),
        (ops, s) => runSequence(backend.name, ops, s),
      ),
      {
        numRuns: runs,
        // Shrinking replays sequences; bounded so a failure is reported within the test's time.
        interruptAfterTimeLimit: 150_000,
        markInterruptAsFailure: true,
        endOnFailure: process.env.IOMUX_MODEL_NO_SHRINK === '1',
        ...(seed === undefined ? {} : { seed }),
      },
    );
  }, 240_000);
});
