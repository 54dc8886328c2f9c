// The connection model (used by connection-model.test.ts and regressions.test.ts): random sequences of write, writev, pause, resume, end, destroy,
// peer sends and runtime migrations on several connections of one reactor, then close(), checked
// against a model of what each side must receive:
// - the node:net peer of a connection gets exactly the bytes written before end() (and a FIN), or
//   a prefix of them when it was destroyed;
// - the connection gets every byte its peer sent, in order (a prefix when destroyed), and no
//   'data' while paused;
// - a write after end() returns false and is reported: the connection emits 'error' with
//   IOMUX_WRITE_AFTER_END (node:net's write-after-end semantics); after destroy() it returns
//   false.
// Runs on every backend; `migrate` makes the backend's poll fail (faults.afterBytes, reached by a
// dedicated trigger connection) so every socket moves to the next backend of the chain.
import net from 'node:net';
import fc from 'fast-check';
import { expect } from 'vitest';
import { createReactor, type BackendName, type Connection, type Reactor } from '../../src/index.js';
import { backends, pattern, until } from '../helpers.js';

const CONNECTIONS = 4;
const MAX_SIZE = 256 * 1024;
/** The longest sequence the property generates. */
export const MAX_OPS = 25;
// The engine's poll fails once it has read TRIGGER bytes. Above what the peers of one sequence can
// send (MAX_OPS sends of MAX_SIZE), so only the trigger connection reaches it: with a threshold
// that ordinary traffic could reach, a backend failed on its own (and its successor after it), the
// count of fallbacks ran ahead of the `migrate` steps, and the wait for "migration 1" timed out
// (the counterexamples of the first runs, regressions.test.ts).
const TRIGGER = MAX_OPS * MAX_SIZE + 1024 * 1024;

export type Op =
  | { kind: 'write'; conn: number; size: number }
  | { kind: 'writev'; conn: number; sizes: number[] }
  | { kind: 'pause' | 'resume' | 'end' | 'destroy'; conn: number }
  | { kind: 'peerSend'; conn: number; size: number }
  | { kind: 'migrate' };

const conn = fc.integer({ min: 0, max: CONNECTIONS - 1 });
const size = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: MAX_SIZE }));
export const op: fc.Arbitrary<Op> = fc.oneof(
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
  wroteAfterEnd: boolean;
}

/** What actually happened on one connection. */
interface Observed {
  conn: Connection;
  peer: net.Socket;
  peerGot: Buffer[];
  peerSawEnd: boolean;
  got: Buffer[];
  dataWhilePaused: number;
  errors: string[]; // codes of the connection's 'error' events
  closeEmitted: boolean;
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

export async function runSequence(
  backendName: BackendName,
  ops: Op[],
  runSeed: number,
): Promise<void> {
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
        wroteAfterEnd: false,
      };
      const o: Observed = {
        conn: c,
        peer,
        peerGot: [],
        peerSawEnd: false,
        got: [],
        dataWhilePaused: 0,
        errors: [],
        closeEmitted: false,
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
      c.on('error', (err) => o.errors.push(err.code));
      c.on('close', () => {
        o.closeEmitted = true;
      });
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
        expect(
          reactor.fallbackHistory.filter((r) => r.phase === 'runtime'),
          'no fallback before its migrate step',
        ).toHaveLength(migrations - 1);
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
            // Ended: nothing is sent, and the write is reported ('error', checked at the end)
            // unless the connection had already emitted 'close'.
            expect(step.kind === 'write' ? o.conn.write(chunks[0]!) : o.conn.writev(chunks)).toBe(
              false,
            );
            if (!o.closeEmitted) m.wroteAfterEnd = true;
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
      if (m.wroteAfterEnd) {
        expect(o.errors, `conn ${i}: the write after end() was reported`).toContain(
          'IOMUX_WRITE_AFTER_END',
        );
      }
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
