// Defect 11: a real backend failure, not an injected one. Other code in the process closes the
// engine's wait fd (as a buggy library might) while connections stream, and at once opens another
// file into the freed number. The reactor must notice, move every socket to its fallback backend
// and keep every byte; the process must live (libuv used to abort in uv__epoll_ctl_prep when the
// failed engine epoll_ctl'ed or closed a number the successor had been given), and the file that
// now holds the number must be left alone.
import { closeSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createReactor, type BackendName, type FallbackRecord } from '../src/index.js';
import { WATCHDOG_INTERVAL_MS } from '../src/pump.js';
import { echo, fallbackSkip, fdCount, streamClient, until } from './helpers.js';

/** fd number → link name (e.g. `anon_inode:[eventpoll]`) of every open fd of this process. */
function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  for (const entry of readdirSync('/proc/self/fd')) {
    try {
      out.set(Number(entry), readlinkSync(`/proc/self/fd/${entry}`));
    } catch {
      // the fd readdir itself used, gone by now
    }
  }
  return out;
}

/** Closes `fd` from outside the engine and opens /dev/null into the freed number. */
function closeAndReuse(fd: number): number {
  closeSync(fd);
  // The lowest free number is taken first; a lower one may be free too, so open until the closed
  // number is ours, then give back the extras.
  const extras: number[] = [];
  let reused = openSync('/dev/null', 'r');
  while (reused !== fd && extras.length < 256) {
    extras.push(reused);
    reused = openSync('/dev/null', 'r');
  }
  for (const extra of extras) closeSync(extra);
  if (reused !== fd) throw new Error(`could not reopen fd ${fd}`);
  return reused;
}

interface Case {
  from: BackendName;
  to: BackendName;
  /** Link name of the engine's wait fd (the lowest new fd of that name is the engine's). */
  link: string;
}

const cases: Case[] = [
  { from: 'epoll', to: 'select', link: 'anon_inode:[eventpoll]' },
  { from: 'select', to: 'epoll', link: 'anon_inode:[eventfd]' },
  { from: 'blocking_io', to: 'epoll', link: 'anon_inode:[eventfd]' },
  { from: 'io_uring', to: 'epoll', link: 'anon_inode:[eventfd]' },
  // The ring lives on through its mappings, and the receives armed in it would keep taking the
  // sockets' bytes after the move: the engine cancels them through its spare ring fd.
  { from: 'io_uring', to: 'epoll', link: 'anon_inode:[io_uring]' },
];

const CONNECTIONS = 20;
const PER_CONNECTION = 256 * 1024;

describe.each(cases)('$from: its $link closed from outside', ({ from, to, link }) => {
  const skip = fallbackSkip(from, to);

  it.skipIf(skip !== '')(
    `falls back to ${to} at run time, every byte once and in order${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const fdsBefore = fdCount();
      const before = openFds();
      const reactor = createReactor(
        { ioModel: 'auto', retry: { fallback: [from, to] } },
        { env: { IOMUX_BACKEND: from }, closeTimeoutMs: 2000 },
      );
      expect(reactor.backend).toBe(from);
      const opened = [...openFds()]
        .filter(([fd, name]) => name === link && before.get(fd) !== link)
        .map(([fd]) => fd);
      expect(opened.length).toBeGreaterThan(0);
      const waitFd = Math.min(...opened);
      const fallbacks: FallbackRecord[] = [];
      reactor.on('fallback', (record) => fallbacks.push(record));
      const errors: unknown[] = [];
      const listener = await reactor.listen(
        { host: '127.0.0.1', port: 0, backlog: 256 },
        (conn) => {
          conn.on('close', (err) => err && errors.push(err));
          echo(conn);
        },
      );
      const clients = Array.from({ length: CONNECTIONS }, (_, i) =>
        streamClient(listener.port, i + 1, PER_CONNECTION),
      );
      await until(
        () => reactor.connectionCount() === CONNECTIONS && reactor.metrics().bytes_in > 64 * 1024,
        5000,
        'streaming under way',
      );
      const reused = closeAndReuse(waitFd);
      // A closed fd never fires its uv_poll again: nobody calls pollEvents() here, so the
      // running reactor's own watchdog poll must notice the loss.
      await until(() => fallbacks.length > 0, 3 * WATCHDOG_INTERVAL_MS + 2000, 'fallback');
      expect(fallbacks).toHaveLength(1);
      expect(fallbacks[0]).toMatchObject({ backend: from, phase: 'runtime' });
      expect(fallbacks[0]!.cause).toMatch(/^poll failed: E(BADF|INVAL)$/);
      expect(fallbacks[0]!.migration).toMatchObject({ to, sockets: CONNECTIONS + 1, lost: 0 });
      expect(reactor.backend).toBe(to);
      expect(reactor.connectionCount()).toBe(CONNECTIONS);

      const results = await Promise.all(clients.map((c) => c.done));
      expect(results.map((r) => r.ok)).toEqual(clients.map(() => true));
      expect(errors).toEqual([]);
      // Still serving on the successor.
      const late = streamClient(listener.port, 99, 64 * 1024);
      expect((await late.done).ok).toBe(true);
      for (const c of [...clients, late]) c.socket.destroy();
      await until(() => reactor.connectionCount() === 0, 5000, 'connections closed');
      await reactor.close();
      // The file that took the number was never read, written or closed by the engine.
      expect(readlinkSync(`/proc/self/fd/${reused}`)).toBe('/dev/null');
      closeSync(reused);
      await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
    },
    30_000,
  );
});
