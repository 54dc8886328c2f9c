// Slowloris against examples/http-hello on every backend: N clients each trickle a request head
// one byte every 300 ms and never finish it. Every byte resets the idle timeout (5 s here), so
// only the header timeout (2 s here; 10 s by default) can close them. Held:
// - every slow client gets 408 and is closed by the server within the header timeout plus the
//   sweep's 250 ms granularity plus 1.5 s of slack, after sending more bytes than one per idle
//   timeout (so the idle timeout alone would not have closed it);
// - a legitimate client is served (200, byte-exact body) every 100 ms meanwhile;
// - the process's RSS grows less than 64 MiB (clients and server share the process), and the
//   server's connection count and the fd count come back afterwards.
// N is 500, or 400 on select (both ends of every connection live in this one process and an fd
// numbered at or above FD_SETSIZE, 1024, cannot be selected on).
import net from 'node:net';
import { describe, expect, it, type TestContext } from 'vitest';
import type { Listener, Reactor } from '../../src/index.js';
import { backends, backendTitle, fdCount, reactorOn, sleep, until } from '../helpers.js';

interface HttpHello {
  reactor: Reactor;
  listener: Listener;
  port: number;
  close(): Promise<void>;
}
// A URL held in a variable: the example is plain JavaScript outside this package's sources.
const appUrl = new URL('../../../../examples/http-hello/app.mjs', import.meta.url).href;
const { startHttpHello } = (await import(appUrl)) as {
  startHttpHello: (options: {
    reactor: Reactor;
    port: number;
    headerTimeoutMs: number;
    idleTimeoutMs: number;
  }) => Promise<HttpHello>;
};

const HEADER_TIMEOUT_MS = 2000;
const IDLE_TIMEOUT_MS = 5000;
const BYTE_EVERY_MS = 300;
// Never complete: no blank line ends it, and it is far under the 8 KiB head limit.
const SLOW_HEAD = Buffer.from(`GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ${'s'.repeat(200)}`);

interface Slow {
  socket: net.Socket;
  sent: number;
  openedAt: number;
  closedAt: number;
  reply: string;
}

function slowClient(port: number): Promise<Slow> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(slow);
    });
    socket.setNoDelay(true);
    const slow: Slow = { socket, sent: 0, openedAt: performance.now(), closedAt: -1, reply: '' };
    socket.once('error', reject);
    socket.on('data', (chunk: Buffer) => {
      slow.reply += chunk.toString('latin1');
    });
    socket.on('end', () => {
      if (slow.closedAt < 0) slow.closedAt = performance.now();
      socket.end();
    });
    socket.on('close', () => {
      if (slow.closedAt < 0) slow.closedAt = performance.now();
    });
  });
}

/** One GET / on its own connection; resolves with the status line and body. */
function legitGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write('GET / HTTP/1.1\r\nHost: legit\r\nConnection: close\r\n\r\n');
    });
    let got = '';
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => {
      resolve(got);
    });
  });
}

describe.each(backends)('slowloris against http-hello: $name', (backend) => {
  const clients = backend.name === 'select' ? 400 : 500;

  it(`${clients} byte-a-${BYTE_EVERY_MS}-ms clients get 408 within the header timeout, legit clients served: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    const fdsBefore = fdCount();
    const reactor = reactorOn(backend.name);
    const server = await startHttpHello({
      reactor,
      port: 0,
      headerTimeoutMs: HEADER_TIMEOUT_MS,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
    });
    const slows: Slow[] = [];
    let trickle: NodeJS.Timeout | undefined;
    try {
      const rssBefore = process.memoryUsage().rss;
      for (let i = 0; i < clients; i += 100) {
        const batch = Math.min(100, clients - i);
        slows.push(
          ...(await Promise.all(Array.from({ length: batch }, () => slowClient(server.port)))),
        );
      }
      // One timer drives every slow client, not one each.
      trickle = setInterval(() => {
        for (const s of slows) {
          if (s.closedAt >= 0 || s.socket.destroyed) continue;
          s.socket.write(
            SLOW_HEAD.subarray(s.sent % SLOW_HEAD.length, (s.sent % SLOW_HEAD.length) + 1),
          );
          s.sent += 1;
        }
      }, BYTE_EVERY_MS);

      let legitServed = 0;
      let rssPeak = rssBefore;
      const deadline = HEADER_TIMEOUT_MS + 250 + 1500;
      const started = performance.now();
      while (slows.some((s) => s.closedAt < 0)) {
        if (performance.now() - started > deadline + 2000) break;
        const reply = await legitGet(server.port);
        expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
        expect(reply.endsWith('\r\n\r\nHello, World!')).toBe(true);
        legitServed += 1;
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
        await sleep(100);
      }
      clearInterval(trickle);
      trickle = undefined;

      const open = slows.filter((s) => s.closedAt < 0).length;
      expect(open, 'slow clients the server left open').toBe(0);
      const lifetimes = slows.map((s) => s.closedAt - s.openedAt);
      const slowest = Math.max(...lifetimes);
      const fastest = Math.min(...lifetimes);
      const minSent = Math.min(...slows.map((s) => s.sent));
      for (const s of slows) expect(s.reply).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      // Each kept its connection busy: more than one byte per idle timeout, so that timeout
      // alone would not have closed it.
      expect(minSent).toBeGreaterThan(Math.floor(HEADER_TIMEOUT_MS / IDLE_TIMEOUT_MS));
      expect(minSent).toBeGreaterThanOrEqual(3);
      expect(fastest).toBeGreaterThanOrEqual(HEADER_TIMEOUT_MS - BYTE_EVERY_MS);
      expect(slowest).toBeLessThan(deadline);
      expect(legitServed).toBeGreaterThan(0);
      const rssGrowth = rssPeak - rssBefore;
      expect(rssGrowth).toBeLessThan(64 * 1024 * 1024);
      await until(() => reactor.connectionCount() === 0, 5000, 'slow connections closed');
      console.log(
        `[abuse] ${backend.name}: slowloris, ${clients} clients at 1 byte / ${BYTE_EVERY_MS} ms ` +
          `(>= ${minSent} bytes each): all got 408 and were closed ${fastest.toFixed(0)}-${slowest.toFixed(0)} ms ` +
          `after connecting (header timeout ${HEADER_TIMEOUT_MS} ms); ${legitServed} legit GETs served meanwhile; ` +
          `RSS +${(rssGrowth / 1048576).toFixed(1)} MiB`,
      );
    } finally {
      if (trickle !== undefined) clearInterval(trickle);
      for (const s of slows) s.socket.destroy();
      await server.close();
      await reactor.close();
    }
    await until(() => fdCount() <= fdsBefore, 5000, 'fds back');
  }, 30_000);
});
