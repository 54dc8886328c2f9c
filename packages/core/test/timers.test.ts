import { describe, expect, it } from 'vitest';
import { coarseTimers } from '../src/timers.js';
import { getBackendModule } from '../src/backend-api.js';
import { runTicks } from '../src/index.js';
import { backendTitle, backends, fdCount, reactorOn } from './helpers.js';

const linuxBackends = backends.filter((b) =>
  ['epoll', 'io_uring', 'select', 'blocking_io'].includes(b.name),
);

function elapsedOf(start: number): number {
  return performance.now() - start;
}

function afterMs(
  timers: { after(ms: number, fn: () => void): () => void },
  ms: number,
): Promise<number> {
  const start = performance.now();
  return new Promise((resolve) => {
    timers.after(ms, () => {
      resolve(elapsedOf(start));
    });
  });
}

describe('coarse timers (setTimeout)', () => {
  it('are not precise, fire once, and a cancelled one never fires', async () => {
    expect(coarseTimers.precise).toBe(false);
    let cancelledFired = false;
    const cancel = coarseTimers.after(1, () => {
      cancelledFired = true;
    });
    cancel();
    expect(await afterMs(coarseTimers, 3)).toBeGreaterThan(0);
    expect(cancelledFired).toBe(false);
  });
});

describe.each(linuxBackends)('native timers: $name', (backend) => {
  const title = backendTitle(backend);
  it.skipIf(!backend.available)(`${title}: fire after fractional ms, not rounded up`, async () => {
    const baseline = fdCount();
    const reactor = reactorOn(backend.name);
    expect(reactor.timers.precise).toBe(true);
    const waits: number[] = [];
    for (let i = 0; i < 20; i += 1) waits.push(await afterMs(reactor.timers, 0.3));
    // Never early; and at least once well under the 1 ms a setTimeout would take (the minimum
    // of 20 tolerates a busy machine).
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(0.3);
    expect(Math.min(...waits)).toBeLessThan(0.9);
    await reactor.close();
    expect(fdCount()).toBe(baseline);
  });

  it.skipIf(!backend.available)(`${title}: cancel, stale cancel and close`, async () => {
    const reactor = reactorOn(backend.name);
    const fired: string[] = [];
    const cancelA = reactor.timers.after(1, () => fired.push('a'));
    cancelA();
    // The slot A used is reused by B: A's cancel, called again, must not cancel B.
    const doneB = new Promise<void>((resolve) =>
      reactor.timers.after(2, () => {
        fired.push('b');
        resolve();
      }),
    );
    cancelA();
    await doneB;
    expect(fired).toEqual(['b']);
    // Close runs a pending wait at once instead of stranding it.
    const start = performance.now();
    const pending = afterMs(reactor.timers, 60_000);
    await reactor.close();
    await pending;
    expect(elapsedOf(start)).toBeLessThan(30_000);
    expect(reactor.timers.precise).toBe(false);
  });

  it.skipIf(!backend.available)(`${title}: pollEvents honours a fractional timeout`, async () => {
    const reactor = reactorOn(backend.name);
    reactor.stop();
    const waits: number[] = [];
    for (let i = 0; i < 20; i += 1) {
      const start = performance.now();
      await reactor.pollEvents(0.4);
      waits.push(elapsedOf(start));
    }
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(0.4);
    expect(Math.min(...waits)).toBeLessThan(0.95);
    await reactor.close();
  });

  it.skipIf(!backend.available)(
    `${title}: the tick loop starts ticks on fractional deadlines`,
    async () => {
      const reactor = reactorOn(backend.name);
      reactor.stop();
      // 300 Hz: a 3.33 ms period that whole-ms sleeps cannot hit; a tick is never started early.
      const lateness: number[] = [];
      const loop = runTicks(
        reactor,
        (info) => {
          lateness.push(info.lateness);
        },
        {
          hz: 300,
          maxTicks: 60,
        },
      );
      const stats = await loop.done;
      expect(stats.ticks).toBe(60);
      expect(Math.min(...lateness)).toBeGreaterThanOrEqual(0);
      expect(stats.jitter.p50).toBeLessThan(1);
      await reactor.close();
    },
  );
});

describe('native timer misuse', () => {
  it.skipIf(!linuxBackends.some((b) => b.name === 'epoll' && b.available))(
    'rejects a negative, NaN or huge delay with EINVAL and a closed timer with EBADF',
    () => {
      const Timer = getBackendModule('epoll').addon().PreciseTimer;
      expect(Timer).toBeDefined();
      if (Timer === undefined) return;
      const timer = new Timer(() => undefined);
      expect(timer.arm(-1)).toBe(-22);
      expect(timer.arm(Number.NaN)).toBe(-22);
      expect(timer.arm(1e12)).toBe(-22);
      expect(timer.arm(5)).toBe(0);
      expect(timer.disarm()).toBe(0);
      timer.close();
      expect(timer.arm(1)).toBe(-9);
      expect(() => new (Timer as unknown as new (x: unknown) => unknown)(42)).toThrow(
        /PreciseTimer/,
      );
    },
  );
});
