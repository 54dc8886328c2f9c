// A reactor.connect() must complete while other sockets keep every event batch full. The readiness
// engine (epoll, select) serves leftover readiness first, and used to check a connect only on a
// fresh report: a connecting socket that always landed among the leftovers never completed.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createReactor, type Reactor } from '../src/index.js';
import { backends, backendTitle, fdCount, until } from './helpers.js';

/** A node:net client that writes as fast as the reactor reads, until destroyed. */
function blaster(port: number): net.Socket {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const socket = net.connect({ port, host: '127.0.0.1' });
  const blast = (): void => {
    while (!socket.destroyed && socket.write(chunk));
  };
  socket.on('connect', blast);
  socket.on('drain', blast);
  socket.on('error', () => undefined); // destroyed at the end of the test
  return socket;
}

describe.each(backends)('connect under full batches: $name', (backend) => {
  let reactor: Reactor | undefined;
  const sockets: net.Socket[] = [];
  let target: net.Server | undefined;

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await reactor?.close();
    reactor = undefined;
    await new Promise<void>((resolve) => (target ? target.close(() => resolve()) : resolve()));
    target = undefined;
  });

  it(`resolves within 500 ms while three peers blast data: ${backendTitle(backend)}`, async (ctx) => {
    if (!backend.available) ctx.skip();
    const fdsBefore = fdCount();
    // Small batches: one read chunk fills the slab, so every batch is full and readiness is
    // always left over for the next poll.
    reactor = createReactor(
      { ioModel: 'auto', maxEvents: 64, retry: { fallback: [backend.name] } },
      { env: { IOMUX_BACKEND: backend.name }, readChunk: 1024, slabBytes: 1024 },
    );
    expect(reactor.backend).toBe(backend.name);
    let received = 0;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('data', (chunk) => (received += chunk.length));
    });
    for (let i = 0; i < 3; i += 1) sockets.push(blaster(listener.port));
    await until(() => reactor!.connectionCount() === 3, 5000, 'three blasting peers');
    // The peers really fill batches: data keeps arriving before and after the connect.
    await until(() => received > 256 * 1024, 5000, 'blasted data');

    const server = net.createServer((s) => sockets.push(s));
    target = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const started = performance.now();
    const outcome = await Promise.race([
      reactor.connect({ host: '127.0.0.1', port }).then((conn) => ({ conn })),
      new Promise<{ conn?: undefined }>((resolve) => setTimeout(() => resolve({}), 3000)),
    ]);
    const elapsed = performance.now() - started;
    expect(outcome.conn, `connect did not resolve within 3000 ms on ${backend.name}`).toBeDefined();
    expect(elapsed).toBeLessThan(500);
    const before = received;
    await until(() => received > before, 5000, 'peers still served after the connect');
    outcome.conn!.destroy();
    for (const s of sockets.splice(0)) s.destroy();
    await reactor.close();
    reactor = undefined;
    await until(() => fdCount() <= fdsBefore + 1, 5000, 'fds released'); // +1: the node server
  });
});
