// Events in the same batch as a CONNECT must not be emitted before the `await reactor.connect()`
// continuation could attach listeners: data emitted with no listener is lost. io_uring can reap a
// CONNECT and the first recv in one poll, epoll reports EPOLLOUT|EPOLLIN together, so the JS side
// must hold them whatever the batch shape. The engines here happen to report the CONNECT alone,
// so the test merges it with the next batch (data and FIN) before the reactor dispatches it: the
// batch shape a kernel may produce, made deterministic.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Connection, Reactor } from '../src/index.js';
import { backends, backendTitle, fdCount, pattern, reactorOn, sleep, until } from './helpers.js';

const PAYLOAD = pattern(48 * 1024, 7);

/** A node:net server that writes PAYLOAD at once on accept and ends. */
async function eagerServer(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.end(PAYLOAD);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** The reactor's batch entry point and event array (internal: what the native callback drives). */
interface BatchSeam {
  dispatch(count: number, slab: Buffer | undefined): void;
  events: Int32Array;
  codes: { CONNECT: number; EVENT_INTS: number };
}

/**
 * Makes `reactor` see a batch that holds only CONNECT records together with the batch after it,
 * as one batch, so the connect resolves in the same dispatch as the data. Returns a count of the
 * merged batches.
 */
function mergeConnectWithNextBatch(reactor: Reactor): () => number {
  const seam = reactor as unknown as BatchSeam;
  const dispatch = seam.dispatch.bind(seam);
  let held: Int32Array | undefined;
  let merged = 0;
  seam.dispatch = (count, slab) => {
    const step = seam.codes.EVENT_INTS;
    const records = seam.events.slice(0, count * step);
    let onlyConnects = count > 0;
    for (let p = 0; p < records.length; p += step)
      if (records[p] !== seam.codes.CONNECT) onlyConnects = false;
    if (held === undefined && onlyConnects) {
      held = records; // dispatched with the next batch
      return;
    }
    if (held === undefined || count < 0) {
      dispatch(count, slab);
      return;
    }
    const own = seam.events;
    const combined = new Int32Array(held.length + records.length);
    combined.set(held, 0);
    combined.set(records, held.length);
    const heldCount = held.length / step;
    held = undefined;
    merged += 1;
    seam.events = combined;
    try {
      dispatch(heldCount + count, slab);
    } finally {
      seam.events = own;
    }
  };
  return () => merged;
}

/** Collects everything `conn` emits from now on. */
function collect(conn: Connection): {
  chunks: Buffer[];
  ended: () => boolean;
  closed: () => boolean;
} {
  const chunks: Buffer[] = [];
  let ended = false;
  let closed = false;
  conn.on('data', (chunk) => chunks.push(Buffer.from(chunk)));
  conn.on('end', () => (ended = true));
  conn.on('close', () => (closed = true));
  return { chunks, ended: () => ended, closed: () => closed };
}

describe.each(backends)('data sent with the connect: $name', (backend) => {
  let reactor: Reactor | undefined;
  let server: net.Server | undefined;

  afterEach(async () => {
    await reactor?.close();
    reactor = undefined;
    const s = server;
    if (s)
      await new Promise<void>((resolve) =>
        s.close(() => {
          resolve();
        }),
      );
    server = undefined;
  });

  it(`listeners attached after an await get every byte and the end: ${backendTitle(backend)}`, async (ctx) => {
    if (!backend.available) ctx.skip();
    const fdsBefore = fdCount();
    server = await eagerServer();
    const port = (server.address() as net.AddressInfo).port;
    reactor = reactorOn(backend.name);
    const merged = mergeConnectWithNextBatch(reactor);
    // Not pumping while the server writes and ends, so data and FIN are there for the next polls.
    reactor.stop();
    for (let round = 0; round < 5; round += 1) {
      const pending = reactor.connect({ host: '127.0.0.1', port });
      await sleep(50);
      reactor.run();
      const conn = await pending;
      await Promise.resolve();
      await Promise.resolve();
      const seen = collect(conn);
      await until(() => seen.closed(), 5000, `round ${round}: close`);
      expect(Buffer.concat(seen.chunks).equals(PAYLOAD), `round ${round}: bytes`).toBe(true);
      expect(seen.ended(), `round ${round}: end`).toBe(true);
      reactor.stop();
    }
    expect(merged(), 'every connect was dispatched with its data').toBe(5);
    reactor.run();
    expect(reactor.connectionCount()).toBe(0);
    await reactor.close();
    reactor = undefined;
    expect(fdCount()).toBeLessThanOrEqual(fdsBefore + 1); // the server's listening fd
  });

  it(`pause() during the hold keeps the held data until resume(): ${backendTitle(backend)}`, async (ctx) => {
    if (!backend.available) ctx.skip();
    server = await eagerServer();
    const port = (server.address() as net.AddressInfo).port;
    reactor = reactorOn(backend.name);
    const merged = mergeConnectWithNextBatch(reactor);
    reactor.stop();
    const pending = reactor.connect({ host: '127.0.0.1', port });
    await sleep(50);
    reactor.run();
    const conn = await pending;
    conn.pause();
    const seen = collect(conn);
    await until(() => merged() === 1, 5000, 'the merged batch');
    await sleep(100);
    expect(seen.chunks.length, 'no data while paused').toBe(0);
    expect(seen.ended(), 'no end while paused').toBe(false);
    expect(seen.closed(), 'no close before the held data').toBe(false);
    conn.resume();
    await until(() => seen.closed(), 5000, 'close after resume');
    expect(Buffer.concat(seen.chunks).equals(PAYLOAD)).toBe(true);
    expect(seen.ended()).toBe(true);
  });
});
