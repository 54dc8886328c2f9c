// Regression: a connection that had already ended its side (end(), FIN sent) and whose peer's
// FIN the old backend had read but not delivered is migrated by a runtime fallback. The reactor
// delivers the carried-over bytes and 'end'; with both directions finished the connection must
// then close. It used to stay open forever: the new backend never reads again (EOF was seen) and
// nothing else closed it. Found by the syscall fault
// tests (fault-injection.test.ts, seed 4, engine fault at the 8th poll, io_uring → epoll).
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createReactor, type BackendName } from '../../src/index.js';
import { fallbackSkip, pattern, until } from '../helpers.js';

// Backends that read ahead of delivery, so a failing poll can leave a FIN read but undelivered:
// io_uring (completions collected when the ring is given up) and blocking_io (reader threads).
// The poll fails once half the replies were read, while the others' FINs are arriving.
const pairs: [BackendName, BackendName][] = [
  ['io_uring', 'epoll'],
  ['io_uring', 'select'],
  ['blocking_io', 'select'],
];

describe.each(pairs)('close after a runtime fallback: %s → %s', (from, to) => {
  const skip = fallbackSkip(from, to);

  it.skipIf(skip !== '')(
    `ended connections whose peers' FINs were read but not delivered close after 'end'${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const count = 60;
      const reply = pattern(2000, 3);
      const reactor = createReactor(
        { ioModel: 'auto', retry: { fallback: [from, to] } },
        {
          env: { IOMUX_BACKEND: from },
          faults: { afterBytes: { [from]: (count / 2) * reply.length } },
        },
      );
      // node:net peers that answer once our FIN arrives, then end.
      const peers = new Set<net.Socket>();
      const peerServer = net.createServer({ allowHalfOpen: true }, (socket) => {
        peers.add(socket);
        socket.on('end', () => socket.end(reply));
        socket.on('close', () => peers.delete(socket));
        socket.resume();
      });
      await new Promise<void>((resolve) => peerServer.listen(0, '127.0.0.1', resolve));
      const port = (peerServer.address() as net.AddressInfo).port;
      const conns = await Promise.all(
        Array.from({ length: count }, () => reactor.connect({ host: '127.0.0.1', port })),
      );
      const results = conns.map((conn) => {
        const result = {
          got: [] as Buffer[],
          ended: false,
          closed: false,
          error: undefined as unknown,
        };
        conn.on('data', (chunk) => result.got.push(chunk));
        conn.on('end', () => (result.ended = true));
        conn.on('close', (err) => {
          result.closed = true;
          result.error = err;
        });
        return result;
      });
      for (const conn of conns) conn.end('bye');
      await until(
        () => reactor.fallbackHistory.some((r) => r.phase === 'runtime'),
        10_000,
        'runtime fallback',
      );
      expect(reactor.backend).toBe(to);
      await until(
        () => results.every((r) => r.closed),
        10_000,
        `every connection closed (${results.filter((r) => !r.closed).length} still open)`,
      );
      for (const r of results) {
        expect(r.error).toBeUndefined();
        expect(r.ended).toBe(true);
        expect(Buffer.concat(r.got).equals(reply)).toBe(true);
      }
      await reactor.close();
      for (const socket of peers) socket.destroy();
      await new Promise((r) => peerServer.close(r));
    },
    40_000,
  );
});
