// Regression: a connection paused while it waits for 'drain' (the echo pattern: pause when
// write() returns false, resume on 'drain') is migrated by a runtime fallback; its queue then
// empties on the new backend and the 'drain' must still be emitted. It used to be held with the
// bytes a fallback carries over for a paused connection, to be replayed on resume(), which the
// application only calls on 'drain': the connection stalled forever. Found by the syscall fault
// tests (fault-injection.test.ts, seed 3, engine fault at the 8th poll, epoll → select).
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createReactor, type BackendName, type Connection } from '../../src/index.js';
import { fallbackSkip, pattern, until } from '../helpers.js';

const pairs: [BackendName, BackendName][] = [
  ['epoll', 'select'],
  ['io_uring', 'select'],
  ['select', 'blocking_io'],
];

describe.each(pairs)('drain after a runtime fallback: %s → %s', (from, to) => {
  const skip = fallbackSkip(from, to);

  it.skipIf(skip !== '')(
    `a connection paused until 'drain' gets its drain on the new backend${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const trigger = 64 * 1024;
      const reactor = createReactor(
        { ioModel: 'auto', retry: { fallback: [from, to] } },
        { env: { IOMUX_BACKEND: from }, faults: { afterBytes: { [from]: trigger } } },
      );
      const big = pattern(8 << 20, 7);
      const server: Connection[] = [];
      let drains = 0;
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        server.push(conn);
        conn.on('data', () => undefined);
      });
      // Client 1 does not read yet: the server's write queue fills and it pauses until 'drain'.
      const slow = net.connect({ host: '127.0.0.1', port: listener.port });
      slow.pause();
      const got: Buffer[] = [];
      slow.on('data', (chunk: Buffer) => got.push(chunk));
      await until(() => server.length === 1, 10_000, 'first connection');
      const waiting = server[0]!;
      expect(waiting.write(big)).toBe(false);
      waiting.pause();
      waiting.once('drain', () => {
        drains += 1;
        waiting.resume();
        waiting.end();
      });
      // Client 2 sends enough for the injected poll failure (checked at the poll after the
      // bytes were read, so it keeps sending a byte now and then): every socket moves to `to`.
      const trigger2 = net.connect({ host: '127.0.0.1', port: listener.port }, () => {
        trigger2.write(pattern(trigger * 2, 9));
      });
      trigger2.on('error', () => undefined);
      const ticker = setInterval(() => trigger2.write('x'), 20);
      try {
        await until(
          () => reactor.fallbackHistory.some((r) => r.phase === 'runtime'),
          10_000,
          'runtime fallback',
        );
      } finally {
        clearInterval(ticker);
      }
      expect(reactor.backend).toBe(to);
      // Now the slow peer reads: the queue empties on the new backend.
      const ended = new Promise<void>((resolve) => slow.once('end', resolve));
      slow.resume();
      await until(() => drains === 1, 15_000, "'drain' after the fallback");
      await ended;
      expect(Buffer.concat(got).equals(big)).toBe(true);
      slow.destroy();
      trigger2.destroy();
      await reactor.close();
    },
    40_000,
  );
});
