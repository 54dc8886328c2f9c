// Unix domain sockets: listen({ path }) and connect({ path }) on every backend that can run here,
// with node:net's address semantics, its unlink-on-close policy, typed errors, and the runtime
// fallback moving them like TCP sockets.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createReactor, type Connection } from '../src/index.js';
import {
  backends,
  echo,
  FALLBACK_PAIRS,
  fallbackSkip,
  fdCount,
  pattern,
  until,
  useBackendFixture,
} from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'iomux-unix-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
/** sun_path less its NUL: 108 bytes on Linux, 104 on macOS and the BSDs. */
const PATH_MAX = process.platform === 'linux' ? 107 : 103;
let serial = 0;
/** A fresh socket path in this file's temporary directory. */
function socketPath(): string {
  serial += 1;
  return join(dir, `s${serial}.sock`);
}

/** Collects `conn`'s bytes until it ends. */
function collect(conn: Connection): Promise<Buffer> {
  const chunks: Buffer[] = [];
  conn.on('data', (chunk) => chunks.push(Buffer.from(chunk)));
  return new Promise((resolve, reject) => {
    conn.on('end', () => {
      resolve(Buffer.concat(chunks));
    });
    conn.on('error', reject);
  });
}

describe.each(backends)('unix domain sockets: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const f = useBackendFixture(backend);

  run(
    'echoes 256 KiB over listen({ path }) / connect({ path }); addresses as node:net',
    async () => {
      const path = socketPath();
      let server: Connection | undefined;
      const listener = await f.reactor.listen({ path }, (conn) => {
        server = conn;
        echo(conn);
        conn.on('end', () => {
          conn.end();
        });
      });
      expect(listener.path).toBe(path);
      expect(listener.address).toBe(path);
      expect(existsSync(path)).toBe(true);
      const client = await f.reactor.connect({ path });
      const payload = pattern(256 * 1024, 7);
      const received = collect(client);
      client.write(payload);
      client.end();
      expect((await received).equals(payload)).toBe(true);
      // node:net reports no remote or local address for a pipe: neither end has an IP.
      for (const end of [client, server!]) {
        expect(end.remoteAddress).toBeUndefined();
        expect(end.remotePort).toBeUndefined();
        expect(end.remoteFamily).toBeUndefined();
        expect(end.localAddress).toBeUndefined();
      }
      listener.close();
      expect(existsSync(path)).toBe(false); // node:net removes the socket file on close too
    },
  );

  run(
    'node:net clients reach an iomux Unix listener, and iomux reaches a node:net one',
    async () => {
      const path = socketPath();
      await f.reactor.listen({ path }, echo);
      const socket = net.connect(path);
      f.clients.push(socket);
      const echoed = await new Promise<string>((resolve) => {
        socket.once('data', (d) => {
          resolve(d.toString());
        });
        socket.write('ping');
      });
      expect(echoed).toBe('ping');

      const netPath = socketPath();
      const server = net.createServer((s) => s.pipe(s));
      f.servers.push(server);
      await new Promise<void>((resolve) => server.listen(netPath, resolve));
      const conn = await f.reactor.connect({ path: netPath });
      const got = new Promise<string>((resolve) =>
        conn.once('data', (d) => {
          resolve(d.toString());
        }),
      );
      conn.write('pong');
      expect(await got).toBe('pong');
      conn.destroy();
    },
  );

  run('listen on a path in use fails with EADDRINUSE naming it; the file is kept', async () => {
    const path = socketPath();
    const first = await f.reactor.listen({ path }, () => undefined);
    await expect(f.reactor.listen({ path }, () => undefined)).rejects.toMatchObject({
      code: 'EADDRINUSE',
      message: `listen EADDRINUSE ${path}`,
    });
    // A stale file (no listener behind it) is in use too, as in node:net: remove it yourself.
    const stale = socketPath();
    writeFileSync(stale, '');
    await expect(f.reactor.listen({ path: stale }, () => undefined)).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
    expect(existsSync(stale)).toBe(true);
    first.close();
    expect(existsSync(path)).toBe(false);
  });

  run('connect to a missing path: ENOENT; to a file with no listener: ECONNREFUSED', async () => {
    const missing = socketPath();
    await expect(f.reactor.connect({ path: missing })).rejects.toMatchObject({
      code: 'ENOENT',
      message: `connect ENOENT ${missing}`,
    });
    const path = socketPath();
    const listener = await f.reactor.listen({ path }, () => undefined);
    const dead = socketPath();
    // A socket file whose listener is gone: bind it with node:net, then close without unlinking.
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(dead, resolve));
    expect(existsSync(dead)).toBe(true);
    listener.close();
    await new Promise((resolve) => server.close(resolve));
    if (!existsSync(dead)) writeFileSync(dead, ''); // node removed it: a plain file refuses too
    await expect(f.reactor.connect({ path: dead })).rejects.toMatchObject({
      code: expect.stringMatching(/^ECONNREFUSED$/) as unknown,
    });
  });

  run('bad paths and TCP options beside a path are typed invalid arguments', async () => {
    const long = join(dir, 'x'.repeat(200));
    await expect(f.reactor.listen({ path: long }, () => undefined)).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
      message: expect.stringMatching(
        new RegExp(
          `^listen: path is ${Buffer.byteLength(long)} bytes, longer than the ${PATH_MAX} bytes`,
        ),
      ) as unknown,
    });
    await expect(f.reactor.connect({ path: long })).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
      message: expect.stringMatching(
        /^connect: path is \d+ bytes, longer than the \d+ bytes/,
      ) as unknown,
    });
    await expect(f.reactor.listen({ path: '' }, () => undefined)).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
      message: 'listen: path must be a non-empty string, got ""',
    });
    await expect(
      f.reactor.listen({ path: socketPath(), port: 80 }, () => undefined),
    ).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
      message: 'listen: port cannot be combined with path (a Unix socket has no port)',
    });
    await expect(f.reactor.connect({ path: socketPath(), host: '::1' })).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
      message: 'connect: host cannot be combined with path (a Unix socket has no host)',
    });
  });

  run('an abstract name (leading NUL) listens and connects with no file', async () => {
    const name = `\0iomux-test-${process.pid}-${backend.name}`;
    const listener = await f.reactor.listen({ path: name }, echo);
    const conn = await f.reactor.connect({ path: name });
    const got = new Promise<string>((resolve) =>
      conn.once('data', (d) => {
        resolve(d.toString());
      }),
    );
    conn.write('abstract');
    expect(await got).toBe('abstract');
    conn.destroy();
    listener.close();
  });

  run('connect({ path }) honours timeoutMs validation and an aborted signal', async () => {
    const path = socketPath();
    await f.reactor.listen({ path }, () => undefined);
    const controller = new AbortController();
    controller.abort();
    await expect(f.reactor.connect({ path, signal: controller.signal })).rejects.toMatchObject({
      code: 'ABORT_ERR',
      message: `connect ${path} aborted`,
    });
    await expect(f.reactor.connect({ path, timeoutMs: 0 })).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
    });
  });
});

describe.each(FALLBACK_PAIRS)('runtime fallback %s → %s with Unix sockets', (from, to) => {
  const skip = fallbackSkip(from, to);

  it.skipIf(skip !== '')(
    `moves the listener and its streams with every byte verified${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const fdsBefore = fdCount();
      const streams = 8;
      const perStream = 128 * 1024;
      const reactor = createReactor(
        { ioModel: from, retry: { fallback: [to] } },
        { env: {}, faults: { afterBytes: { [from]: perStream / 4 } } },
      );
      expect(reactor.backend).toBe(from);
      const path = socketPath();
      const listener = await reactor.listen({ path }, (conn) => {
        echo(conn);
        conn.on('end', () => {
          conn.end();
        });
      });
      const results = await Promise.all(
        Array.from({ length: streams }, async (_, i) => {
          const socket = net.connect(path);
          const payload = pattern(perStream, i + 1);
          const chunks: Buffer[] = [];
          let received = 0;
          // Two rounds, so the backend polls again after the fault's byte count was reached
          // (io_uring can serve one round whole in a single poll).
          const half = new Promise<void>((resolve) => {
            socket.on('data', (d) => {
              chunks.push(d);
              received += d.length;
              if (received >= perStream / 2) resolve();
            });
          });
          socket.write(payload.subarray(0, perStream / 2));
          await half;
          socket.end(payload.subarray(perStream / 2));
          await new Promise((resolve, reject) => {
            socket.on('close', resolve);
            socket.on('error', reject);
          });
          return Buffer.concat(chunks).equals(payload);
        }),
      );
      expect(results).toEqual(Array.from({ length: streams }, () => true));
      expect(reactor.backend).toBe(to);
      expect(reactor.fallbackHistory.at(-1)).toMatchObject({ backend: from, phase: 'runtime' });
      // The moved listener still accepts, and still removes its file on close.
      const after = await reactor.connect({ path });
      after.destroy();
      listener.close();
      expect(existsSync(path)).toBe(false);
      await reactor.close();
      await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
    },
  );
});
