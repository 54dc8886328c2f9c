// Cross-backend conformance: a client on one backend talks to a server on another, for every
// ordered pair of backends (Netty testsuite style: each case below is written once and runs for
// every pair; a pair with a backend that cannot run here is skipped by name with its cause).
// Both ends are iomux reactors, so each case checks one backend's sending against another's
// receiving, with nothing from node:net in between.
import { describe, expect, it } from 'vitest';
import type { BackendName, Connection, Reactor, ReactorOptions } from '../src/index.js';
import {
  backends,
  type BackpressureStats,
  echo,
  pattern,
  reactorOn,
  sleep,
  until,
  writeWithBackpressure,
} from './helpers.js';

type BackendInfo = (typeof backends)[number];

interface PairInfo {
  client: BackendInfo;
  server: BackendInfo;
  title: string;
  skipCause: string;
}

const pairs: PairInfo[] = backends.flatMap((client) =>
  backends
    .filter((server) => server.name !== client.name)
    .map((server) => {
      const causes = [client, server].filter((b) => !b.available);
      const skipCause = causes.map((b) => `${b.name}: ${b.cause}`).join('; ');
      const title = `client ${client.name} → server ${server.name}`;
      return {
        client,
        server,
        title: skipCause ? `${title} (skipped: ${skipCause})` : title,
        skipCause,
      };
    }),
);

/** Two reactors of one ordered pair; every reactor made is closed when the case ends. */
class PairFactory {
  private readonly made: Reactor[] = [];
  constructor(private readonly info: PairInfo) {}

  serverReactor(options: ReactorOptions = {}): Reactor {
    return this.track(reactorOn(this.info.server.name, options));
  }

  clientReactor(options: ReactorOptions = {}): Reactor {
    return this.track(reactorOn(this.info.client.name, options));
  }

  /** A server listening with `onConnection`, and `connect()` opening clients to it. */
  async open(
    onConnection: (conn: Connection) => void,
    options: ReactorOptions = {},
  ): Promise<{ server: Reactor; client: Reactor; connect: () => Promise<Connection> }> {
    const server = this.serverReactor(options);
    const client = this.clientReactor(options);
    const listener = await server.listen(
      { host: '127.0.0.1', port: 0, backlog: 1024 },
      onConnection,
    );
    const connect = (): Promise<Connection> =>
      client.connect({ host: '127.0.0.1', port: listener.port });
    return { server, client, connect };
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.made.splice(0).map((r) => r.close()));
  }

  private track(reactor: Reactor): Reactor {
    this.made.push(reactor);
    return reactor;
  }
}

/** Resolves with everything `conn` receives until `'end'`. */
function readToEnd(conn: Connection): Promise<Buffer> {
  const parts: Buffer[] = [];
  conn.on('data', (d) => parts.push(d));
  return new Promise((resolve) => {
    conn.once('end', () => {
      resolve(Buffer.concat(parts));
    });
  });
}

/** Resolves with the first `size` bytes `conn` receives. */
function readBytes(conn: Connection, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    conn.on('data', (d) => {
      parts.push(d);
      got += d.length;
      if (got >= size) resolve(Buffer.concat(parts));
    });
  });
}

/** Resolves with the error `conn` closes with (undefined for a clean close). */
function closed(conn: Connection): Promise<{ code?: string } | undefined> {
  return new Promise((resolve) => conn.once('close', resolve));
}

/**
 * How many connections one pair opens at once. This process holds both ends, so select (fd
 * numbers below FD_SETSIZE, 1024) sees twice the count in fds; blocking_io costs threads per
 * socket on a 2-core machine.
 */
function manyConnections(info: PairInfo): number {
  const names: BackendName[] = [info.client.name, info.server.name];
  if (names.includes('blocking_io')) return 100;
  if (names.includes('select')) return 200;
  return 500;
}

describe.each(pairs)('cross-backend: $title', (info) => {
  const run = info.skipCause === '' ? it : it.skip;
  const pair = new PairFactory(info);

  // Each case closes its reactors itself (try/finally), before the leak check looks at the fds.
  const withPair =
    <A extends unknown[]>(body: (p: PairFactory, ...args: A) => Promise<void>) =>
    async (...args: A): Promise<void> => {
      try {
        await body(pair, ...args);
      } finally {
        await pair.closeAll();
      }
    };

  it(`runs here: ${info.title}`, async () => {
    if (info.skipCause !== '') {
      expect(info.skipCause).toMatch(/: ./);
      return;
    }
    await withPair(async (p) => {
      const { server, client } = await p.open(() => undefined);
      expect([client.backend, server.backend]).toEqual([info.client.name, info.server.name]);
    })();
  });

  run.each([1, 65_536, 3 * 1_048_576])(
    'echoes %i bytes byte-exact',
    withPair(async (p, size: number) => {
      const { connect } = await p.open(echo);
      const conn = await connect();
      const closing = closed(conn); // before any await: 'close' may follow 'end' in one batch
      const payload = pattern(size, size);
      const echoed = readBytes(conn, size);
      conn.write(payload);
      const got = await echoed;
      expect(got.length).toBe(size);
      expect(got.equals(payload)).toBe(true);
      conn.end();
      expect(await closing).toBeUndefined();
    }),
  );

  run(
    'half-close: the server answers after the client ends',
    withPair(async (p) => {
      const { connect } = await p.open(
        (conn) => {
          const request = readToEnd(conn);
          void request.then((body) => {
            conn.end(`got ${body.toString()}`);
          });
        },
        { allowHalfOpen: true },
      );
      const conn = await connect();
      const closing = closed(conn); // before any await: 'close' may follow 'end' in one batch
      const reply = readToEnd(conn);
      conn.end('ping');
      expect((await reply).toString()).toBe('got ping');
      expect(await closing).toBeUndefined();
    }),
  );

  run(
    'half-close: the client answers after the server ends',
    withPair(async (p) => {
      let serverGot: Promise<Buffer> | undefined;
      const { connect } = await p.open(
        (conn) => {
          serverGot = readToEnd(conn);
          conn.end('hello');
        },
        { allowHalfOpen: true },
      );
      const conn = await connect();
      const closing = closed(conn); // before any await: 'close' may follow 'end' in one batch
      const greeting = await readToEnd(conn);
      expect(greeting.toString()).toBe('hello');
      expect(conn.readableEnded).toBe(true);
      conn.end(`got ${greeting.toString()}`);
      await until(() => serverGot !== undefined, 5000, 'the server to accept');
      expect((await serverGot!).toString()).toBe('got hello');
      expect(await closing).toBeUndefined();
    }),
  );

  run(
    'the side that did not ask for half-open ends after its peer ends',
    withPair(async (p) => {
      let serverClosed: Promise<{ code?: string } | undefined> | undefined;
      const { connect } = await p.open((conn) => {
        serverClosed = closed(conn);
      });
      const conn = await connect();
      const closing = closed(conn); // before any await: 'close' may follow 'end' in one batch
      await until(() => serverClosed !== undefined, 5000, 'the server to accept');
      const ended = readToEnd(conn);
      conn.end();
      await ended; // the server's automatic end reached us
      expect(await serverClosed!).toBeUndefined();
      expect(await closing).toBeUndefined();
    }),
  );

  run(
    'backpressure: a slow client reader makes the server wait for drain, byte-exact',
    withPair(async (p) => {
      const total = 8 * 1_048_576;
      const chunk = pattern(64 * 1024, 7);
      let stats: BackpressureStats | undefined;
      const { connect } = await p.open((conn) => {
        stats = writeWithBackpressure(conn, chunk, total);
      });
      const conn = await connect();
      const closing = closed(conn); // before any await: 'close' may follow 'end' in one batch
      conn.pause();
      await until(() => stats?.sawFalse === true, 5000, 'the server to see write() return false');
      let received = 0;
      let corrupt = false;
      conn.on('data', (d) => {
        for (let i = 0; i < d.length; i += 1) {
          if (d[i] !== chunk[(received + i) % chunk.length]) {
            corrupt = true;
            break;
          }
        }
        received += d.length;
      });
      const ended = new Promise<void>((resolve) => conn.once('end', resolve));
      conn.resume();
      await ended;
      expect(received).toBe(total);
      expect(corrupt).toBe(false);
      expect(stats!.drains).toBeGreaterThan(0);
      // Bounded memory: the queue never grew past the high-water mark plus one write.
      expect(stats!.maxQueued).toBeLessThanOrEqual(64 * 1024 + chunk.length);
      expect(await closing).toBeUndefined();
    }),
  );

  run(
    'a peer reset reaches the client as ECONNRESET',
    withPair(async (p) => {
      let server: Connection | undefined;
      const { connect } = await p.open((conn) => {
        server = conn;
        conn.pause(); // what the client sends stays unread: closing now sends RST, not FIN
      });
      const conn = await connect();
      const closing = closed(conn); // before any await: 'close' may follow 'end' in one batch
      conn.write(pattern(1_048_576, 9));
      await until(() => server !== undefined, 5000, 'the server to accept');
      await until(() => conn.writableLength < 1_048_576, 5000, 'the first bytes to leave');
      await sleep(20);
      server!.destroy();
      expect((await closing)?.code).toBe('ECONNRESET');
    }),
  );

  run(
    `serves ${manyConnections(info)} connections at once, byte-exact`,
    withPair(async (p) => {
      const count = manyConnections(info);
      const { server, client, connect } = await p.open(echo);
      const conns = await Promise.all(Array.from({ length: count }, () => connect()));
      await until(() => server.connectionCount() === count, 10_000, `${count} accepted`);
      const results = await Promise.all(
        conns.map(async (conn, i) => {
          const payload = pattern(512, i + 1);
          const echoed = readBytes(conn, payload.length);
          conn.write(payload);
          const ok = (await echoed).equals(payload);
          conn.end();
          return ok;
        }),
      );
      expect(results.filter(Boolean).length).toBe(count);
      await until(
        () => server.connectionCount() === 0 && client.connectionCount() === 0,
        10_000,
        'every connection to close on both sides',
      );
    }),
  );

  run(
    "the server's close() flushes queued writes before the connection ends",
    withPair(async (p) => {
      const payload = pattern(4 * 1_048_576, 5);
      let accepted = false;
      const { server, connect } = await p.open((conn) => {
        accepted = true;
        conn.write(payload); // far beyond the socket buffers: most of it is queued natively
      });
      const conn = await connect();
      const closing = closed(conn); // before any await: 'close' may follow 'end' in one batch
      const body = readToEnd(conn);
      await until(() => accepted, 5000, 'the server to accept');
      const serverClosing = server.close();
      expect((await body).equals(payload)).toBe(true);
      await serverClosing;
      expect(server.closed).toBe(true);
      expect(await closing).toBeUndefined();
    }),
  );
});
