// The IOCP engine when its poll fails with traffic in flight and no backend can take over (on
// Windows there is no successor yet): every connection closes with IOMUX_BACKEND_FAILED, the
// waiter thread's wake-ups stop before the glue lets go of its watcher, and every socket is freed
// (including the listener's pre-created AcceptEx sockets and a connection with a WSASend and a
// zero-byte read pending). Runs where iocp runs (Windows, and Wine through `pnpm check:iocp`).
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createReactor, type Connection } from '../../core/src/index.js';
import { backends, backendTitle, fdCount, until } from '../../core/test/helpers.js';

const iocp = backends.find((b) => b.name === 'iocp')!;

describe(`iocp poll failure with no successor: ${backendTitle(iocp)}`, () => {
  it.skipIf(!iocp.available)(
    'closes every connection with IOMUX_BACKEND_FAILED and frees every socket',
    async () => {
      const socketsBefore = fdCount();
      const reactor = createReactor(
        { ioModel: 'iocp', retry: { fallback: ['iocp'] } },
        { env: {}, faults: { pollAfter: { iocp: 6 }, pollErrno: 'EBADF' } },
      );
      const errors: { code?: string }[] = [];
      reactor.on('error', (err) => errors.push(err));
      const closes: ({ code?: string } | undefined)[] = [];
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn: Connection) => {
        conn.on('close', (err) => closes.push(err));
        // Keeps a send queued: the peer reads nothing, so the kernel's buffers fill up.
        conn.on('data', () => conn.write(Buffer.alloc(1 << 20, 7)));
      });
      const peers: net.Socket[] = [];
      for (let i = 0; i < 10 && errors.length === 0; i += 1) {
        const s = net.connect({ port: listener.port, host: '127.0.0.1' });
        s.on('error', () => undefined);
        s.on('connect', () => s.write('go'));
        s.pause();
        peers.push(s);
        await new Promise((r) => setTimeout(r, 20));
      }
      await until(() => errors.length === 1, 5000, 'the backend failure');
      expect(errors[0]).toMatchObject({ code: 'IOMUX_BACKEND_FAILED', errno: 9 });
      expect(closes.length).toBeGreaterThan(0);
      await until(() => reactor.connectionCount() === 0, 5000, 'every connection closed');
      expect(closes.every((err) => err?.code === 'IOMUX_BACKEND_FAILED')).toBe(true);
      for (const s of peers) s.destroy();
      await reactor.close();
      await until(() => fdCount() <= socketsBefore, 5000, 'every socket freed');
    },
  );
});
