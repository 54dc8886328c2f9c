// Defect 7: a poll whose kernel call fails after the engine already built part of a batch (bytes
// read, accepts, closes served from leftover readiness) must deliver that batch before the runtime
// fallback moves the sockets; nothing taken from the kernel may be lost.
//
// faults.kernelAfter makes the engine's own kernel call (epoll_wait / select / io_uring_enter)
// fail after N successful ones, inside poll(); N = 1 fails a poll that has built nothing yet, so
// the cases start at 3 (each failed without the fix). Backends that implement the faultKernelAfter knob
// are listed in `cases`; io_uring joins by adding ['io_uring', 'select'].
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createReactor, type BackendName, type FallbackRecord } from '../src/index.js';
import { fallbackSkip, fdCount, pattern, until } from './helpers.js';

const cases: [from: BackendName, to: BackendName][] = [
  ['epoll', 'select'],
  ['select', 'epoll'],
];

const connections = 200;
const perConnection = 32 * 1024;

/** A node:net client that sends its pattern in one go and ends. */
function sender(port: number, seed: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      socket.end(pattern(perConnection, seed));
    });
    socket.on('error', reject);
    socket.on('close', () => {
      resolve();
    });
    socket.resume();
  });
}

describe.each(cases)('late poll failure %s → %s', (from, to) => {
  const skip = fallbackSkip(from, to);

  it.skipIf(skip !== '').each([3, 5])(
    `the batch built before the kernel call failed (after %i waits) is delivered, then everything moves${skip ? ` (skipped: ${skip})` : ''}`,
    async (kernelAfter) => {
      const fdsBefore = fdCount();
      // Small batches, so readiness is left over and served at the start of the next poll, before
      // the kernel call that fails; a large slab, so the events (not the bytes) fill a batch.
      const reactor = createReactor(
        { ioModel: 'auto', maxEvents: 64, retry: { fallback: [from, to] } },
        {
          env: { IOMUX_BACKEND: from },
          slabBytes: 8 * 1024 * 1024,
          faults: { kernelAfter: { [from]: kernelAfter } },
        },
      );
      expect(reactor.backend).toBe(from);
      const fallbacks: FallbackRecord[] = [];
      reactor.on('fallback', (record) => fallbacks.push(record));
      const errors: unknown[] = [];
      const received = new Map<number, Buffer[]>();
      const ended: Buffer[][] = [];
      const listener = await reactor.listen(
        { host: '127.0.0.1', port: 0, backlog: 1024 },
        (conn) => {
          const chunks: Buffer[] = [];
          received.set(received.size, chunks);
          conn.on('data', (chunk) => chunks.push(Buffer.from(chunk)));
          conn.on('end', () => ended.push(chunks));
          conn.on('close', (err) => err && errors.push(err));
        },
      );
      // A lost accept or close leaves its sender waiting forever: bound the wait.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(Array.from({ length: connections }, (_, i) => sender(listener.port, i + 1))),
        new Promise((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error('senders not finished after 10 s'));
          }, 10_000);
        }),
      ]).finally(() => {
        clearTimeout(timer);
      });
      await until(() => ended.length === connections, 10_000, `${connections} ends`);
      await until(() => reactor.connectionCount() === 0, 5000, 'connections closed');

      expect(fallbacks).toHaveLength(1);
      expect(fallbacks[0]).toMatchObject({ backend: from, phase: 'runtime' });
      expect(reactor.backend).toBe(to);
      expect(errors).toEqual([]);
      // Every connection delivered exactly one sender's pattern, byte for byte.
      const expected = new Set(
        Array.from({ length: connections }, (_, i) =>
          pattern(perConnection, i + 1).toString('hex'),
        ),
      );
      for (const chunks of ended) {
        const bytes = Buffer.concat(chunks);
        const got = bytes.toString('hex');
        expect(
          expected.has(got),
          `a connection got ${bytes.length} bytes, not a sender's pattern`,
        ).toBe(true);
        expected.delete(got);
      }
      expect(expected.size).toBe(0);
      await reactor.close();
      await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
    },
    30_000,
  );
});
