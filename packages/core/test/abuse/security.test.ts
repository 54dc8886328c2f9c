// Security checks on every backend: no fd of the reactor leaks into a child process (every fd
// close-on-exec), and writing to a peer that reset never raises SIGPIPE.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it, type TestContext } from 'vitest';
import { backends, backendTitle, netConnect, reactorOn, until } from '../helpers.js';

/** What a child process has open beyond stdio (libuv makes its stdout pipe a socketpair). */
function childFds(): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const script = 'for f in /proc/$$/fd/*; do echo "${f##*/} $(readlink "$f")"; done';
    const child = spawn('sh', ['-c', script], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.on('error', reject);
    child.on('close', () => {
      const lines = out.split('\n').filter(Boolean);
      resolve(lines.filter((l) => Number(l.split(' ')[0]) > 2).map((l) => l.split(' ')[1] ?? ''));
    });
  });
}

describe.each(backends)('security: $name', (backend) => {
  it(`a child process inherits no socket, poll or ring fd of the reactor: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    // What the test process passes on by itself (vitest's IPC channel), if anything.
    const baseline = new Set(await childFds());
    const reactor = reactorOn(backend.name);
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
    const outgoing = await reactor.connect({ host: '127.0.0.1', port: listener.port });
    const udp = await reactor.udp({ host: '127.0.0.1', port: 0 });
    const peer = await netConnect(listener.port);
    await until(() => reactor.connectionCount() === 3, 5000, 'connections');
    try {
      const fds = await childFds();
      const leaked = fds.filter(
        (target) => /^(socket:|anon_inode:)/.test(target) && !baseline.has(target),
      );
      expect(leaked).toEqual([]);
    } finally {
      peer.destroy();
      outgoing.destroy();
      udp.close();
      await reactor.close();
    }
  });

  it(`writing to a peer that reset raises no SIGPIPE: ${backendTitle(backend)}`, async (ctx: TestContext) => {
    if (!backend.available) ctx.skip();
    let sigpipes = 0;
    const onSigpipe = (): void => {
      sigpipes += 1;
    };
    // Node ignores SIGPIPE; a listener makes it delivered (and counted) instead.
    process.on('SIGPIPE', onSigpipe);
    const reactor = reactorOn(backend.name);
    const server = net.createServer((socket) => {
      setTimeout(() => socket.resetAndDestroy(), 50);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const conn = await reactor.connect({ host: '127.0.0.1', port });
      let closedWith: string | undefined;
      conn.on('close', (err) => (closedWith = err?.code ?? 'clean'));
      conn.on('error', () => undefined);
      const chunk = Buffer.alloc(64 * 1024, 1);
      await until(
        () => {
          if (!conn.closed) conn.write(chunk);
          return closedWith !== undefined;
        },
        10_000,
        'the reset to close the connection',
      );
      expect(['ECONNRESET', 'EPIPE']).toContain(closedWith);
      expect(sigpipes).toBe(0);
    } finally {
      process.off('SIGPIPE', onSigpipe);
      await reactor.close();
      await new Promise((r) => server.close(r));
    }
  });
});
