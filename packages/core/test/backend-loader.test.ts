import { describe, expect, it } from 'vitest';
import { createReactor, getBackend, listBackends } from '../src/index.js';
import { backends, reactorOn } from './helpers.js';

const expected = (process.env.IOMUX_EXPECT_BACKENDS ?? '').split(',').filter(Boolean);

describe('backend loader', () => {
  it('reports availability as data, never throwing', () => {
    for (const entry of listBackends()) {
      expect(typeof entry.available).toBe('boolean');
      if (!entry.available) expect(entry.cause).toMatch(/\w/);
      else expect(entry.cause).toBeUndefined();
    }
  });

  it.runIf(expected.length > 0)(`has the backends CI expects here: ${expected.join(', ')}`, () => {
    for (const name of expected) {
      const entry = backends.find((b) => b.name === name);
      expect(entry, `unknown backend ${name}`).toBeDefined();
      expect(entry!.available, `${name}: ${entry!.cause}`).toBe(true);
    }
  });

  it('names the platform when a backend cannot run on this OS', () => {
    const other = process.platform === 'win32' ? 'kqueue' : 'iocp';
    expect(getBackend(other).cause).toMatch(new RegExp(`does not run on ${process.platform}`));
  });

  it('throws IOMUX_BACKEND_UNAVAILABLE when no backend of the chain can run', () => {
    const other = process.platform === 'win32' ? 'kqueue' : 'iocp';
    expect(() =>
      createReactor({ ioModel: other, retry: { fallback: [other] } }, { env: {} }),
    ).toThrow(
      expect.objectContaining({
        code: 'IOMUX_BACKEND_UNAVAILABLE',
        message: expect.stringMatching(new RegExp(`${other}: ${other} does not run`)) as string,
      }) as Error,
    );
  });

  const epoll = backends.find((b) => b.name === 'epoll')!;
  it.runIf(epoll.available)(
    'falls back at start-up when setup fails, and records why',
    async () => {
      const other = backends.find((b) => b.available && b.name !== 'epoll');
      const make = () =>
        createReactor(
          { ioModel: 'epoll', retry: { maxAttempts: 2, fallback: [other?.name ?? 'epoll'] } },
          { env: {}, faults: { setup: { epoll: 'EMFILE' } } },
        );
      if (other === undefined) {
        // Only epoll runs here: the chain is exhausted after two attempts, each cause named.
        expect(make).toThrow(
          /epoll: epoll_create1 failed: Too many open files; epoll: epoll_create1 failed/,
        );
        return;
      }
      const reactor = make();
      try {
        expect(reactor.backend).toBe(other.name);
        expect(reactor.fallbackHistory.map((r) => [r.backend, r.attempt, r.phase])).toEqual([
          ['epoll', 1, 'startup'],
          ['epoll', 2, 'startup'],
        ]);
        expect(reactor.fallbackHistory[0]!.cause).toMatch(
          /epoll_create1 failed: Too many open files/,
        );
      } finally {
        await reactor.close();
      }
    },
  );

  it.runIf(epoll.available)('a forced backend is really the one in use', async () => {
    const reactor = reactorOn('epoll');
    expect(reactor.backend).toBe('epoll');
    expect(reactor.fallbackHistory).toEqual([]);
    await reactor.close();
  });
});
