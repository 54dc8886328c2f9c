// Start-up fallback for each backend, and io_uring's availability causes by fault injection
// (the real conditions — seccomp, sysctl, old kernel, memlock — cannot be produced here).
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { getBackendModule } from '../src/backend-api.js';
import { createReactor, type BackendName } from '../src/index.js';
import { backends } from './helpers.js';

const available = backends.filter((b) => b.available);

describe.each(available.map((b) => b.name))('start-up fallback from %s', (name: BackendName) => {
  const target = available.find((b) => b.name !== name)?.name;
  it.skipIf(target === undefined)(
    `moves to the next backend when ${name} setup fails with EPERM`,
    async () => {
      const records: unknown[] = [];
      const reactor = createReactor(
        { ioModel: 'auto', retry: { maxAttempts: 1, fallback: [name, target!] } },
        {
          env: { IOMUX_BACKEND: name },
          faults: { setup: { [name]: 'EPERM' } },
          logger: { debug: () => undefined, info: () => undefined, warn: (o) => records.push(o) },
        },
      );
      try {
        expect(reactor.backend).toBe(target);
        expect(reactor.fallbackHistory).toHaveLength(1);
        expect(reactor.fallbackHistory[0]).toMatchObject({
          backend: name,
          attempt: 1,
          phase: 'startup',
        });
        expect(reactor.fallbackHistory[0]!.cause).toMatch(
          /EPERM|Operation not permitted|not permitted/i,
        );
        expect(reactor.metrics().fallbacks).toBe(1);
        expect(records).toHaveLength(1);
        // and it serves
        const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
        expect(listener.port).toBeGreaterThan(0);
      } finally {
        await reactor.close();
      }
    },
  );
});

const uring = backends.find((b) => b.name === 'io_uring')!;
describe.skipIf(!uring.available)('io_uring availability causes', () => {
  const probe = (errno: number): string => getBackendModule('io_uring').addon().probe(errno);
  it('explains each setup failure', () => {
    expect(probe(constants.errno.EPERM)).toMatch(
      /blocked (by a seccomp filter|: .*io_uring_disabled)/,
    );
    expect(probe(constants.errno.ENOSYS)).toMatch(/kernel too old or io_uring not compiled in/);
    expect(probe(constants.errno.ENOMEM)).toMatch(/RLIMIT_MEMLOCK too low/);
    expect(probe(constants.errno.EINVAL)).toMatch(/io_uring_setup failed with EINVAL/);
    expect(probe(0)).toBe('');
  });

  it('falls back to epoll when io_uring is blocked as under Docker seccomp', async () => {
    const reactor = createReactor(
      { io_model: 'io_uring', retry_config: { fallback: ['epoll'] } },
      { env: {}, faults: { setup: { io_uring: 'EPERM' } } },
    );
    try {
      expect(reactor.backend).toBe('epoll');
      expect(reactor.fallbackHistory[0]!.cause).toMatch(
        /io_uring_setup failed with EPERM.*: blocked/,
      );
    } finally {
      await reactor.close();
    }
  });
});
