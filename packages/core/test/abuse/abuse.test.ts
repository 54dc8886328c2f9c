// Abuse on every backend, bounded in count and time, loopback only. Each case logs the figure
// it holds (`[abuse] ...`):
// - RST storm: 300 clients that send a little and reset at once; the server keeps serving,
//   every connection closes and the fd count comes back;
// - a peer that never reads: a writer honouring write() === false keeps its queue within the
//   high-water mark plus one chunk, and the process's RSS growth stays bounded;
// - connection churn: 1000 connect / echo / close cycles, 50 at a time, fds back afterwards;
// - oversized and empty datagrams: cut to maxDatagram and flagged, empty ones delivered, the
//   socket keeps receiving.
import net from 'node:net';
import { describe, expect, it, type TestContext } from 'vitest';
import {
  backends,
  backendTitle,
  dgramPeer,
  fdCount,
  netRoundTrip,
  pattern,
  reactorOn,
  sleep,
  until,
} from '../helpers.js';

function echo(conn: import('../../src/index.js').Connection): void {
  conn.on('data', (chunk) => {
    if (!conn.write(chunk)) {
      conn.pause();
      conn.once('drain', () => {
        conn.resume();
      });
    }
  });
  conn.on('error', () => undefined);
}

describe.each(backends)('abuse: $name', (backend) => {
  it(`RST storm: 300 resetting clients, then it still serves: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    const fdsBefore = fdCount();
    const reactor = reactorOn(backend.name);
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, echo);
    const started = performance.now();
    await Promise.all(
      Array.from(
        { length: 300 },
        (_, i) =>
          new Promise<void>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: listener.port }, () => {
              s.write(pattern(1 + (i % 2000), i));
              s.resetAndDestroy();
            });
            s.on('error', () => undefined);
            s.on('close', () => {
              resolve();
            });
          }),
      ),
    );
    await until(() => reactor.connectionCount() === 0, 15_000, 'every reset connection closed');
    const ms = performance.now() - started;
    const reply = await netRoundTrip(listener.port, Buffer.from('still here'));
    expect(reply.toString()).toBe('still here');
    await reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, 'fds back');
    console.log(`[abuse] ${backend.name}: RST storm of 300 settled in ${ms.toFixed(0)} ms`);
  });

  it(`a peer that never reads: the queue stays within the high-water mark: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    const highWaterMark = 256 * 1024;
    const reactor = reactorOn(backend.name, { highWaterMark });
    const chunk = Buffer.alloc(64 * 1024, 7);
    let maxQueued = 0;
    let written = 0;
    let stop = false;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('error', () => undefined);
      const pump = (): void => {
        while (!stop && !conn.closed) {
          const more = conn.write(chunk);
          written += chunk.length;
          maxQueued = Math.max(maxQueued, conn.writableLength);
          if (!more) return;
        }
      };
      conn.on('drain', pump);
      pump();
    });
    const peer = net.connect({ host: '127.0.0.1', port: listener.port });
    peer.pause(); // never reads
    const rssBefore = process.memoryUsage().rss;
    await sleep(1500);
    stop = true;
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    expect(maxQueued).toBeLessThanOrEqual(highWaterMark + chunk.length);
    expect(rssGrowth).toBeLessThan(64 * 1024 * 1024);
    peer.destroy();
    await reactor.close();
    console.log(
      `[abuse] ${backend.name}: never-reading peer: ${written} bytes accepted, queue max ${maxQueued}, RSS +${(rssGrowth / 1048576).toFixed(1)} MiB`,
    );
  });

  it(`connection churn: 1000 connect/echo/close cycles, fds back after: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    const fdsBefore = fdCount();
    const reactor = reactorOn(backend.name);
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, echo);
    const started = performance.now();
    for (let round = 0; round < 20; round += 1) {
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          netRoundTrip(listener.port, pattern(100, round * 50 + i + 1)),
        ),
      );
      replies.forEach((r, i) => {
        expect(r.equals(pattern(100, round * 50 + i + 1))).toBe(true);
      });
    }
    const ms = performance.now() - started;
    await until(() => reactor.connectionCount() === 0, 10_000, 'churned connections closed');
    await reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, 'fds back');
    console.log(`[abuse] ${backend.name}: 1000 churned connections in ${ms.toFixed(0)} ms`);
  });

  it(`oversized and empty datagrams: cut and flagged, then it keeps receiving: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    const reactor = reactorOn(backend.name);
    const socket = await reactor.udp({ host: '127.0.0.1', port: 0, maxDatagram: 512 });
    const got: { size: number; truncated: boolean; head: Buffer }[] = [];
    socket.on('message', (msg, info) => {
      got.push({ size: msg.length, truncated: info.truncated, head: Buffer.from(msg) });
    });
    const sender = await dgramPeer();
    const sizes = [0, 1, 511, 512, 513, 9000, 65507, 3];
    try {
      for (const size of sizes) {
        await new Promise<void>((resolve, reject) => {
          sender.socket.send(pattern(size, size + 1), socket.address().port, '127.0.0.1', (err) => {
            if (err) reject(err);
            else resolve();
          });
        });
      }
      await until(() => got.length === sizes.length, 5000, 'every datagram');
      sizes.forEach((size, i) => {
        expect(got[i]!.size).toBe(Math.min(size, 512));
        expect(got[i]!.truncated).toBe(size > 512);
        expect(got[i]!.head.equals(pattern(size, size + 1).subarray(0, 512))).toBe(true);
      });
    } finally {
      sender.socket.close();
      socket.close();
      await reactor.close();
    }
  });
});
