// connect({ localAddress, localPort }) on every backend that can run here: the socket is bound
// before it connects, so the peer sees that address and port; a bind that fails is a typed error
// naming both ends and leaks no fd; bad values are IOMUX_INVALID_ARGUMENT naming the option; and a
// connection made so keeps its local end through a runtime fallback (it is the same fd).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createReactor, IomuxError, type Connection } from '../src/index.js';
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

/**
 * Linux and Windows answer on all of 127.0.0.0/8; macOS and the BSDs configure only 127.0.0.1
 * on lo0 unless told otherwise.
 */
const secondLoopback =
  process.platform === 'linux' || process.platform === 'win32'
    ? ''
    : `127.0.0.2 is not a local address on ${process.platform}`;

/** Linux's ephemeral range starts here; the ports the kernel hands out for bind(0) and connect(). */
const ephemeralLow = (() => {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
  } catch {
    return 32768;
  }
})();

/**
 * A port that was free a moment ago, below the ephemeral range: a port node's bind(0) picks may
 * still have TIME_WAIT connections of other tests on it, which node's listen (SO_REUSEADDR) does
 * not mind but the bind of a localPort (no SO_REUSEADDR) does.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 10000 + Math.floor(Math.random() * (ephemeralLow - 10000));
    const server = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => {
        resolve(false);
      });
      server.listen(port, '0.0.0.0', () => {
        resolve(true);
      });
    });
    if (free) await new Promise((resolve) => server.close(resolve));
    if (free) return port;
  }
}

/** A node:net server on 127.0.0.1 that echoes and records each client's address. */
async function netEchoServer(
  servers: net.Server[],
): Promise<{ port: number; peers: { address: string | undefined; port: number | undefined }[] }> {
  const peers: { address: string | undefined; port: number | undefined }[] = [];
  const server = net.createServer((socket) => {
    peers.push({ address: socket.remoteAddress, port: socket.remotePort });
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, peers };
}

/** Writes `payload` and resolves with everything echoed back once that many bytes arrived. */
function roundTrip(conn: Connection, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let received = 0;
  return new Promise((resolve, reject) => {
    conn.on('data', (chunk) => {
      chunks.push(Buffer.from(chunk));
      received += chunk.length;
      if (received >= payload.length) resolve(Buffer.concat(chunks));
    });
    conn.on('error', reject);
    conn.write(payload);
  });
}

describe.each(backends)('connect from a local address: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const f = useBackendFixture(backend);

  /** An iomux echo listener on 127.0.0.1 whose accepted connections are collected. */
  async function listener(): Promise<{ port: number; accepted: Connection[] }> {
    const accepted: Connection[] = [];
    const l = await f.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      accepted.push(conn);
      echo(conn);
    });
    return { port: l.port, accepted };
  }

  (backend.available && secondLoopback === '' ? it : it.skip)(
    `localAddress 127.0.0.2: the server sees it, conn.localAddress is it${secondLoopback ? ` (skipped: ${secondLoopback})` : ''}`,
    async () => {
      const { port, accepted } = await listener();
      const conn = await f.reactor.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
      const payload = pattern(64 * 1024, 3);
      expect((await roundTrip(conn, payload)).equals(payload)).toBe(true);
      expect(conn.localAddress).toBe('127.0.0.2');
      expect(conn.localPort).toBeGreaterThan(0);
      expect(accepted).toHaveLength(1);
      expect(accepted[0]!.remoteAddress).toBe('127.0.0.2');
      expect(accepted[0]!.remotePort).toBe(conn.localPort);
      conn.destroy();
    },
  );

  run('a fixed localPort: the server sees that port', async () => {
    const { port, accepted } = await listener();
    let conn: Connection | undefined;
    let localPort = 0;
    // The free port may be taken by another process between freePort() and the bind: try anew.
    for (let attempt = 0; conn === undefined; attempt += 1) {
      localPort = await freePort();
      try {
        conn = await f.reactor.connect({ host: '127.0.0.1', port, localPort });
      } catch (err) {
        if (!(err instanceof IomuxError && err.code === 'EADDRINUSE') || attempt >= 4) throw err;
      }
    }
    expect(conn.localPort).toBe(localPort);
    expect(conn.localAddress).toBe('127.0.0.1');
    await until(() => accepted.length === 1, 2000, 'accepted');
    expect(accepted[0]!.remotePort).toBe(localPort);
    expect(accepted[0]!.remoteAddress).toBe('127.0.0.1');
    const payload = pattern(4096, 5);
    expect((await roundTrip(conn, payload)).equals(payload)).toBe(true);
    conn.destroy();
  });

  run('a localPort in use fails with EADDRINUSE naming both ends, with no fd left', async () => {
    const { port } = await listener();
    const holder = net.createServer();
    f.servers.push(holder);
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const held = (holder.address() as net.AddressInfo).port;
    const fds = fdCount();
    await expect(
      f.reactor.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1', localPort: held }),
    ).rejects.toMatchObject({
      code: 'EADDRINUSE',
      syscall: 'connect',
      message: `connect EADDRINUSE 127.0.0.1:${port} from 127.0.0.1:${held}`,
    });
    // A localPort alone binds the wildcard of the host's family, which the held port blocks too.
    await expect(
      f.reactor.connect({ host: '127.0.0.1', port, localPort: held }),
    ).rejects.toMatchObject({
      code: 'EADDRINUSE',
      message: `connect EADDRINUSE 127.0.0.1:${port} from 0.0.0.0:${held}`,
    });
    expect(fdCount()).toBe(fds);
    // The reactor goes on connecting.
    const conn = await f.reactor.connect({ host: '127.0.0.1', port });
    conn.destroy();
  });

  run('a local address of the other family is a typed error from the kernel', async () => {
    const { port } = await listener();
    const fds = fdCount();
    const v6FromV4 = await f.reactor.connect({ host: '127.0.0.1', port, localAddress: '::1' }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(v6FromV4).toBeInstanceOf(IomuxError);
    expect(v6FromV4).toMatchObject({ syscall: 'connect' });
    // Elsewhere the kernel's own answer, whichever of these (Wine's Winsock: WSAEOPNOTSUPP).
    const otherKernels = ['EAFNOSUPPORT', 'EINVAL', 'EOPNOTSUPP'];
    // An EOPNOTSUPP message carries the backend's hint after the addresses.
    const withHint = (code: string, message: string): string =>
      code === 'EOPNOTSUPP' ? `${message}: not supported by the ${backend.name} backend` : message;
    const v6Code = (v6FromV4 as IomuxError).code;
    // Linux's inet_bind refuses a sockaddr of another family with EAFNOSUPPORT.
    expect(process.platform === 'linux' ? ['EAFNOSUPPORT'] : otherKernels).toContain(v6Code);
    expect((v6FromV4 as Error).message).toBe(
      withHint(v6Code, `connect ${v6Code} 127.0.0.1:${port} from ::1:0`),
    );
    const v4FromV6 = await f.reactor.connect({ host: '::1', port, localAddress: '127.0.0.1' }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(v4FromV6).toBeInstanceOf(IomuxError);
    // Linux's inet6_bind checks the length first: a sockaddr_in is too short, EINVAL.
    const v4Code = (v4FromV6 as IomuxError).code;
    expect(process.platform === 'linux' ? ['EINVAL'] : otherKernels).toContain(v4Code);
    expect((v4FromV6 as Error).message).toBe(
      withHint(v4Code, `connect ${v4Code} ::1:${port} from 127.0.0.1:0`),
    );
    expect(fdCount()).toBe(fds);
  });

  run('a refused connect from a local end names both ends', async () => {
    const closed = await freePort();
    await expect(
      f.reactor.connect({ host: '127.0.0.1', port: closed, localAddress: '127.0.0.1' }),
    ).rejects.toMatchObject({
      code: 'ECONNREFUSED',
      message: `connect ECONNREFUSED 127.0.0.1:${closed} from 127.0.0.1:0`,
    });
  });

  run('a local address this machine does not have fails with EADDRNOTAVAIL', async () => {
    const { port } = await listener();
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a host.
    await expect(
      f.reactor.connect({ host: '127.0.0.1', port, localAddress: '192.0.2.1' }),
    ).rejects.toMatchObject({
      code: 'EADDRNOTAVAIL',
      message: `connect EADDRNOTAVAIL 127.0.0.1:${port} from 192.0.2.1:0`,
    });
  });

  run(
    'invalid localAddress / localPort values are IOMUX_INVALID_ARGUMENT naming the option',
    async () => {
      const cases: [Record<string, unknown>, RegExp][] = [
        [
          { localAddress: 'localhost' },
          /^connect: localAddress must be an IP address, got "localhost"$/,
        ],
        [{ localAddress: '' }, /^connect: localAddress must be an IP address, got ""$/],
        [{ localAddress: 42 }, /^connect: localAddress must be an IP address, got a number$/],
        [{ localPort: -1 }, /^connect: localPort must be an integer from 0 to 65535, got -1$/],
        [
          { localPort: 65536 },
          /^connect: localPort must be an integer from 0 to 65535, got 65536$/,
        ],
        [{ localPort: 1.5 }, /^connect: localPort must be an integer from 0 to 65535, got 1.5$/],
        [
          { localPort: '80' },
          /^connect: localPort must be an integer from 0 to 65535, got a string$/,
        ],
      ];
      for (const [extra, message] of cases) {
        const error = await f.reactor.connect({ host: '127.0.0.1', port: 9, ...extra }).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(error, JSON.stringify(extra)).toBeInstanceOf(IomuxError);
        expect((error as IomuxError).code).toBe('IOMUX_INVALID_ARGUMENT');
        expect((error as Error).message).toMatch(message);
      }
      for (const name of ['localAddress', 'localPort'] as const) {
        await expect(
          f.reactor.connect({
            path: '/tmp/iomux-none.sock',
            [name]: name === 'localPort' ? 1 : '127.0.0.1',
          }),
        ).rejects.toMatchObject({
          code: 'IOMUX_INVALID_ARGUMENT',
          message: `connect: ${name} cannot be combined with path (a Unix socket has no ${name})`,
        });
      }
    },
  );
});

describe.each(FALLBACK_PAIRS)('runtime fallback %s → %s keeps the local end', (from, to) => {
  const skip = fallbackSkip(from, to) || secondLoopback;

  it.skipIf(skip !== '')(
    `a connection from 127.0.0.2:<fixed port> is still bound there after the move${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const fdsBefore = fdCount();
      const size = 256 * 1024;
      const reactor = createReactor(
        { ioModel: from, retry: { fallback: [to] } },
        { env: {}, faults: { afterBytes: { [from]: size / 4 } } },
      );
      const servers: net.Server[] = [];
      try {
        expect(reactor.backend).toBe(from);
        const server = await netEchoServer(servers);
        let conn: Connection | undefined;
        let localPort = 0;
        for (let attempt = 0; conn === undefined; attempt += 1) {
          localPort = await freePort();
          try {
            conn = await reactor.connect({
              host: '127.0.0.1',
              port: server.port,
              localAddress: '127.0.0.2',
              localPort,
            });
          } catch (err) {
            if (!(err instanceof IomuxError && err.code === 'EADDRINUSE') || attempt >= 4)
              throw err;
          }
        }
        const payload = pattern(size, 9);
        // Two rounds, so the backend polls again after the fault's byte count was reached.
        const first = await roundTrip(conn, payload.subarray(0, size / 2));
        conn.removeAllListeners('data');
        const second = await roundTrip(conn, payload.subarray(size / 2));
        expect(Buffer.concat([first, second]).equals(payload)).toBe(true);
        expect(reactor.backend).toBe(to);
        expect(reactor.fallbackHistory.at(-1)).toMatchObject({ backend: from, phase: 'runtime' });
        // Read for the first time now, so the answer comes from the successor backend's fd.
        expect(conn.localAddress).toBe('127.0.0.2');
        expect(conn.localPort).toBe(localPort);
        expect(server.peers).toEqual([{ address: '127.0.0.2', port: localPort }]);
        conn.destroy();
      } finally {
        await reactor.close();
        for (const s of servers) await new Promise((r) => s.close(r));
      }
      await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
    },
  );
});
