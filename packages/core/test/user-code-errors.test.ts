// Exceptions from user code and observers (issue 18, defects 2 and 6): a throwing poll observer,
// debug logger, data handler or 'end' listener must not lose an event, and a Connection whose
// socket closed must never reach the socket that later gets the same id.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Connection, Logger, Reactor } from '../src/index.js';
import { backendTitle, backends, netConnect, reactorOn, sleep, until } from './helpers.js';
import { captureUncaught } from './uncaught.js';

function throwingLogger(): Logger {
  const noop = (): void => undefined;
  return {
    debug() {
      throw new Error('logger failed');
    },
    info: noop,
    warn: noop,
    isLevelEnabled: () => true,
  };
}

/** `promise`, or a rejection after `ms`; the timer is cleared either way (no leaked Timeout). */
async function settledWithin<T>(promise: Promise<T>, ms: number, what = 'timed out'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(what));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects what a node:net client receives. */
function received(socket: net.Socket): Buffer[] {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk) => chunks.push(chunk));
  socket.on('error', () => undefined);
  return chunks;
}

async function accepted(reactor: Reactor, conns: Connection[], count: number): Promise<void> {
  await until(() => conns.length >= count, 10_000, `${count} accepted`);
  expect(reactor.connectionCount()).toBe(conns.filter((c) => !c.closed).length);
}

describe.each(backends)('user code errors: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const title = backendTitle(backend);

  for (const kind of ['poll observer', 'debug logger'] as const) {
    run(
      `${title}: a throwing ${kind} loses no CLOSE and a stale object cannot reach a reused id`,
      async () => {
        const capture = captureUncaught();
        const reactor = reactorOn(
          backend.name,
          kind === 'debug logger' ? { logger: throwingLogger() } : {},
        );
        try {
          if (kind === 'poll observer')
            reactor.observePolls(() => {
              throw new Error('observer failed');
            });
          const conns: Connection[] = [];
          const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
            conns.push(conn);
          });
          const first = await netConnect(listener.port);
          await accepted(reactor, conns, 1);
          const stale = conns[0]!;
          const closed = new Promise<void>((resolve) =>
            stale.once('close', () => {
              resolve();
            }),
          );
          first.destroy();
          await settledWithin(closed, 3000).catch(() => undefined);
          expect(stale.closed).toBe(true);
          expect(reactor.connectionCount()).toBe(0);
          // The next connection may get the same backend id; the old object must not reach it.
          const second = await netConnect(listener.port);
          const got = received(second);
          await accepted(reactor, conns, 2);
          expect(stale.write('not for you')).toBe(false);
          conns[1]!.write('yours');
          await until(() => Buffer.concat(got).toString() === 'yours', 5000, 'own bytes');
          await sleep(50);
          expect(Buffer.concat(got).toString()).toBe('yours');
          expect(capture.errors.length).toBeGreaterThan(0);
          second.destroy();
          const started = Date.now();
          await reactor.close();
          expect(Date.now() - started).toBeLessThan(1500);
        } finally {
          capture.restore();
          if (!reactor.closed) await reactor.close();
        }
      },
    );
  }

  run(`${title}: a data handler that throws mid-batch costs no other event`, async () => {
    const capture = captureUncaught();
    const reactor = reactorOn(backend.name);
    try {
      const conns: Connection[] = [];
      const bytes = new Map<Connection, number>();
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        conns.push(conn);
        conn.on('data', (chunk) => {
          bytes.set(conn, (bytes.get(conn) ?? 0) + chunk.length);
          // Every other connection's handler throws after counting.
          if (conns.indexOf(conn) % 2 === 0) throw new Error('handler failed');
        });
      });
      const clients = await Promise.all(
        Array.from({ length: 20 }, () => netConnect(listener.port)),
      );
      await accepted(reactor, conns, clients.length);
      // All writes land before the next poll, so one batch holds many DATA events.
      for (const client of clients) client.write(Buffer.alloc(100, 7));
      await until(
        () => conns.every((c) => bytes.get(c) === 100),
        10_000,
        'every connection got its 100 bytes',
      );
      for (const client of clients) client.destroy();
      await until(() => reactor.connectionCount() === 0, 5000, 'every CLOSE delivered');
      expect(conns.every((c) => c.closed)).toBe(true);
      expect(capture.errors.length).toBeGreaterThanOrEqual(10);
      expect((capture.errors[0] as Error).message).toBe('handler failed');
    } finally {
      await reactor.close();
      capture.restore();
    }
  });

  run(`${title}: a throwing 'end' listener does not leave the connection half-open`, async () => {
    const capture = captureUncaught();
    const reactor = reactorOn(backend.name);
    try {
      const conns: Connection[] = [];
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        conns.push(conn);
        conn.on('end', () => {
          throw new Error('end listener failed');
        });
      });
      const client = await netConnect(listener.port);
      received(client);
      const clientEnded = new Promise<void>((resolve) =>
        client.once('end', () => {
          resolve();
        }),
      );
      await accepted(reactor, conns, 1);
      client.end();
      // Our side must send FIN even though the user's listener threw.
      await settledWithin(clientEnded, 3000, 'the connection stayed half-open');
      await until(() => reactor.connectionCount() === 0, 5000, 'connection closed');
      expect(conns[0]!.closed).toBe(true);
      expect((capture.errors[0] as Error).message).toBe('end listener failed');
      client.destroy();
    } finally {
      await reactor.close();
      capture.restore();
    }
  });
});
