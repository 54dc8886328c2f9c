// Multi-core: N reactors in worker threads sharing one port with SO_REUSEPORT. Uses the built
// package (dist), because worker threads load plain JavaScript.
import { describe, expect, it } from 'vitest';
import type * as Core from '../src/index.js';
import { backends, netRoundTrip, pattern } from './helpers.js';

const epoll = backends.find((b) => b.name === 'epoll')!;
const builtPackage = '../dist/index.js';
const { startCluster } = (await import(builtPackage)) as typeof Core;

describe('startCluster', () => {
  it.skipIf(!epoll.available)(
    'spreads connections over reactors sharing a port and sums their metrics',
    async () => {
      const cluster = await startCluster({
        module: new URL('./fixtures/echo-worker.mjs', import.meta.url),
        port: 0,
        host: '127.0.0.1',
        workers: 2,
        config: { ioModel: 'epoll' },
      });
      try {
        expect(cluster.size).toBe(2);
        expect(cluster.backends).toEqual(['epoll', 'epoll']);
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            netRoundTrip(cluster.port, pattern(100, i + 1)).then((b) =>
              b.equals(pattern(100, i + 1)),
            ),
          ),
        );
        expect(results.every(Boolean)).toBe(true);
        const { total, workers } = await cluster.metrics();
        expect(total.connections_accepted).toBe(200);
        expect(total.bytes_in).toBe(200 * 100);
        // The kernel's SO_REUSEPORT hash gives each reactor a share.
        for (const w of workers) expect(w.connections_accepted).toBeGreaterThan(20);
      } finally {
        await cluster.close();
      }
    },
  );

  it.skipIf(!epoll.available)(
    'a failing worker start terminates the busy workers and the process lives on',
    async () => {
      for (let round = 0; round < 5; round += 1) {
        await expect(
          startCluster({
            module: new URL('./fixtures/failing-setup-worker.mjs', import.meta.url),
            port: 0,
            host: '127.0.0.1',
            workers: 4,
            config: { ioModel: 'epoll' },
          }),
        ).rejects.toMatchObject({ code: 'IOMUX_WORKER_FAILED' });
      }
      // Alive and serving: a cluster starts and echoes afterwards.
      const cluster = await startCluster({
        module: new URL('./fixtures/echo-worker.mjs', import.meta.url),
        port: 0,
        host: '127.0.0.1',
        workers: 1,
        config: { ioModel: 'epoll' },
      });
      try {
        const payload = pattern(1000, 3);
        expect((await netRoundTrip(cluster.port, payload)).equals(payload)).toBe(true);
      } finally {
        await cluster.close();
      }
    },
  );

  it('rejects a bad worker count', async () => {
    await expect(startCluster({ module: 'x.mjs', port: 0, workers: 0 })).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
    });
  });
});
