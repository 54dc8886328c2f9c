// Out of fds, a listener must shed the pending peer (accept it with the engine's reserve fd and
// close it at once, as libuv does) instead of leaving it in the backlog, where it would keep the
// listener readable forever and the peer waiting. The shared ReserveFd (native/src/stream.h)
// does this for every engine. The reactor runs in a child process under a low `ulimit -n`.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { askChild, backends, backendTitle } from './helpers.js';

const child = fileURLToPath(new URL('./fixtures/accept-shedding-child.mjs', import.meta.url));

/** Connects and resolves with how the connection ended: 'closed' by the peer, or 'open' still. */
function connectAndWait(port: number, waitMs: number): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('open');
    }, waitMs);
    socket.on('error', () => undefined); // a reset is one way of being shed
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.resume();
  });
}

describe.each(backends)('accept shedding when out of fds: $name', (backend) => {
  let proc: ChildProcess | undefined;
  afterEach(() => {
    proc?.kill('SIGKILL');
    proc = undefined;
  });

  it(`closes peers it cannot accept, reports EMFILE, and accepts again once fds are free: ${backendTitle(backend)}`, async (ctx) => {
    if (!backend.available) ctx.skip();
    proc = spawn(
      'sh',
      ['-c', `ulimit -n 512 && exec "${process.execPath}" "${child}" ${backend.name}`],
      {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    const hello = await askChild(proc);
    expect(hello.backend).toBe(backend.name);
    const port = Number(hello.port);
    const filled = await askChild(proc, 'fill');
    expect(Number(filled.filled)).toBeGreaterThan(0);

    const outcomes = await Promise.all([1, 2, 3].map(() => connectAndWait(port, 1500)));
    const stats = await askChild(proc, 'stats');
    // A peer is either shed (closed at once) or accepted: blocking_io's accept thread may already
    // hold an fd for the next accept from before the table filled. None waits in the backlog.
    const closed = outcomes.filter((o) => o === 'closed').length;
    expect(closed + Number(stats.accepted)).toBe(3);
    expect(closed).toBeGreaterThan(0);
    expect(Number(stats.acceptErrors)).toBeGreaterThan(0);
    await askChild(proc, 'free');

    // With fds back, the same listener serves again.
    const echoed = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write('ping'));
      socket.on('data', (chunk) => {
        socket.destroy();
        resolve(chunk.toString());
      });
      socket.on('error', reject);
    });
    expect(echoed).toBe('ping');
    await askChild(proc, 'exit').catch(() => undefined);
  }, 20_000);
});
