// A runtime fallback whose successor cannot take every socket (issue 18, defect 8): select past
// FD_SETSIZE, blocking_io past its thread limit. The sockets that cannot move close with a clear
// error; the rest carry on byte-exact; counts stay right; close() is prompt. Also: bytes carried
// by a migration wait for resume() on a paused connection, and a reactor whose backend failed
// with no successor is closed down cleanly.
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  createReactor,
  type BackendName,
  type Connection,
  type FallbackRecord,
  type IomuxError,
  type Reactor,
} from '../src/index.js';
import { backends, fdCount, netConnect, pattern, sleep, until } from './helpers.js';

const available = (name: BackendName): boolean =>
  backends.find((b) => b.name === name)?.available ?? false;

interface Served {
  conn: Connection;
  closedWith: IomuxError | undefined;
}

/**
 * A reactor on `from` that falls back to `to`: its first poll after it has read a byte fails.
 * Trigger with {@link triggerFailure}.
 */
function failingReactor(from: BackendName, to: BackendName, env: NodeJS.ProcessEnv = {}): Reactor {
  return createReactor(
    { ioModel: 'auto', retry: { fallback: [to] } },
    {
      env: { ...env, IOMUX_BACKEND: from },
      closeTimeoutMs: 1000,
      faults: { afterBytes: { [from]: 1 } },
    },
  );
}

function echoBack(conn: Connection): void {
  conn.on('data', (chunk) => conn.write(chunk));
}

async function partialMigration(
  from: BackendName,
  to: BackendName,
  connections: number,
  env: NodeJS.ProcessEnv = {},
): Promise<void> {
  const fdsBefore = fdCount();
  const reactor = failingReactor(from, to, env);
  const served: Served[] = [];
  const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
    const entry: Served = { conn, closedWith: undefined };
    served.push(entry);
    echoBack(conn);
    conn.on('close', (err) => (entry.closedWith = err));
  });
  // select needs its own wake-up fd below FD_SETSIZE too: keep a few low fds free for it.
  const reserved = Array.from({ length: 8 }, () => openSync('/dev/null', 'r'));
  const clients: net.Socket[] = [];
  const echoed: Buffer[][] = [];
  for (let i = 0; i < connections; i += 1) {
    const client = await netConnect(listener.port);
    client.on('error', () => undefined);
    const chunks: Buffer[] = [];
    client.on('data', (chunk) => chunks.push(chunk));
    clients.push(client);
    echoed.push(chunks);
  }
  await until(() => served.length === connections, 20_000, 'all accepted');
  const fallback = new Promise<FallbackRecord>((resolve) => reactor.once('fallback', resolve));
  clients[0]!.write('x');
  await until(() => echoed[0]!.length > 0, 5000, "'x' echoed");
  for (const fd of reserved) closeSync(fd);
  clients[0]!.write('y');
  const record = await fallback;
  expect(reactor.backend).toBe(to);
  const migration = record.migration!;
  expect(migration.lost).toBeGreaterThan(0);
  expect(migration.sockets + migration.lost).toBe(connections + 1);
  await sleep(20);
  const lost = served.filter((s) => s.conn.closed);
  const moved = served.filter((s) => !s.conn.closed);
  expect(lost.length).toBe(migration.lost);
  for (const s of lost) expect(s.closedWith?.syscall).toBe('migrate');
  expect(reactor.connectionCount()).toBe(moved.length);
  expect(reactor.stats()).toMatchObject({ connections: moved.length, listeners: 1 });
  // Every moved connection carries on byte-exact (client 0's 'y' moved with its socket).
  const index = new Map(served.map((s, i) => [s, i]));
  const expected = new Map<number, Buffer>();
  for (const s of moved) {
    const i = index.get(s)!;
    const payload = pattern(4096, i + 1);
    expected.set(i, i === 0 ? Buffer.concat([Buffer.from('xy'), payload]) : payload);
    clients[i]!.write(payload);
  }
  const total = (i: number): number => echoed[i]!.reduce((n, c) => n + c.length, 0);
  await until(
    () => [...expected].every(([i, want]) => total(i) >= want.length),
    20_000,
    'every moved connection echoed',
  );
  for (const [i, want] of expected) expect(Buffer.concat(echoed[i]!).equals(want)).toBe(true);
  for (const client of clients) client.destroy();
  await until(() => reactor.connectionCount() === 0, 10_000, 'every close counted');
  // Accepting still works on the successor once it has room, and counts follow.
  const late = await netConnect(listener.port);
  await until(() => served.length === connections + 1, 5000, 'late accept');
  expect(reactor.connectionCount()).toBe(1);
  late.destroy();
  await until(() => reactor.connectionCount() === 0, 5000, 'late close counted');
  const started = Date.now();
  await reactor.close();
  expect(Date.now() - started).toBeLessThan(500);
  await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
}

describe('partial runtime migration', () => {
  it.skipIf(!available('epoll') || !available('select'))(
    'epoll → select past FD_SETSIZE: sockets above fd 1023 close with ERANGE, the rest carry on',
    async () => {
      // Client and server ends are both in this process: 700 connections use ~1400 fds.
      await partialMigration('epoll', 'select', 700);
    },
    120_000,
  );

  it.skipIf(!available('epoll') || !available('blocking_io'))(
    'epoll → blocking_io past its thread limit: the rest carry on, counts right',
    async () => {
      await partialMigration('epoll', 'blocking_io', 40, { IOMUX_BLOCKING_MAX_THREADS: '24' });
    },
    60_000,
  );

  it.skipIf(!available('blocking_io') || !available('select'))(
    'bytes carried by a migration wait for resume() on a paused connection',
    async () => {
      // blocking_io's threads read ahead into an inbox: the bytes read when its poll fails move
      // as undelivered input.
      const reactor = failingReactor('blocking_io', 'select');
      const got: string[] = [];
      let conn: Connection | undefined;
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (c) => {
        conn = c;
        c.on('data', (chunk) => got.push(chunk.toString()));
      });
      const client = await netConnect(listener.port);
      await until(() => conn !== undefined, 5000, 'accepted');
      client.write('a');
      await until(() => got.length === 1, 5000, 'first byte');
      got.length = 0;
      let carried = '';
      reactor.once('fallback', (record) => {
        conn!.pause();
        carried = record.backend;
      });
      client.write('carried');
      await until(() => reactor.backend === 'select', 5000, 'fallback');
      expect(carried).toBe('blocking_io');
      await sleep(50);
      expect(got).toEqual([]);
      conn!.resume();
      expect(got.join('')).toBe('carried');
      client.write('+more');
      await until(
        () => got.join('') === 'carried+more',
        5000,
        'later bytes after the carried ones',
      );
      client.destroy();
      await reactor.close();
    },
  );

  it.skipIf(!available('epoll'))(
    'a backend failure with no successor leaves the reactor closed down, not half-dead',
    async () => {
      const reactor = createReactor(
        { ioModel: 'epoll', retry: { fallback: ['epoll'] } },
        { env: {}, faults: { afterBytes: { epoll: 1 } } },
      );
      const errors: IomuxError[] = [];
      reactor.on('error', (err) => errors.push(err));
      const closes: (IomuxError | undefined)[] = [];
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        conn.on('close', (err) => closes.push(err));
      });
      const clients = [await netConnect(listener.port), await netConnect(listener.port)];
      await until(() => reactor.connectionCount() === 2, 5000, 'accepted');
      const pending = reactor.connect({ host: '127.0.0.1', port: listener.port });
      const pendingResult = pending.then(
        () => 'connected',
        (err: unknown) => (err as IomuxError).code,
      );
      for (const c of clients) c.on('error', () => undefined);
      clients[0]!.write('x');
      await sleep(50);
      clients[0]!.write('y');
      await until(() => errors.length === 1, 5000, 'error event');
      expect(errors[0]).toMatchObject({ code: 'IOMUX_BACKEND_FAILED' });
      await until(() => closes.length >= 2, 5000, 'connections closed');
      for (const err of closes) expect(err?.code).toBe('IOMUX_BACKEND_FAILED');
      expect(listener.closed).toBe(true);
      expect(reactor.connectionCount()).toBe(0);
      expect(reactor.stats()).toMatchObject({ connections: 0, listeners: 0 });
      expect(['IOMUX_BACKEND_FAILED', 'connected']).toContain(await pendingResult);
      await expect(
        reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined),
      ).rejects.toMatchObject({ code: 'IOMUX_BACKEND_FAILED' });
      await expect(
        reactor.connect({ host: '127.0.0.1', port: listener.port }),
      ).rejects.toMatchObject({ code: 'IOMUX_BACKEND_FAILED' });
      const started = Date.now();
      await reactor.close();
      expect(Date.now() - started).toBeLessThan(500);
      for (const c of clients) c.destroy();
    },
  );
});
