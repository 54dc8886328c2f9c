import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createReactor, IomuxError, type Reactor } from '../src/index.js';
import { runTicks, type TickInfo, type TickLoop, type TickPump } from '../src/tick-loop.js';
import { netConnect, sleep, until } from './helpers.js';

/** A stand-in for a reactor that dispatches by itself: the loop only waits on timers. */
function timerPump(timeoutMs = 16): TickPump {
  return {
    config: { timeoutMs },
    isRunning: true,
    closed: false,
    pollEvents: () => Promise.resolve(0),
  };
}

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

const opened: { loops: TickLoop[]; reactors: Reactor[]; sockets: net.Socket[] } = {
  loops: [],
  reactors: [],
  sockets: [],
};

afterEach(async () => {
  for (const loop of opened.loops.splice(0)) {
    loop.stop();
    await loop.done.catch(() => undefined);
  }
  for (const socket of opened.sockets.splice(0)) socket.destroy();
  for (const reactor of opened.reactors.splice(0)) await reactor.close();
});

function track(loop: TickLoop): TickLoop {
  opened.loops.push(loop);
  return loop;
}

function epollReactor(config: { timeoutMs?: number } = {}): Reactor {
  const reactor = createReactor({ ioModel: 'epoll', ...config });
  opened.reactors.push(reactor);
  return reactor;
}

describe('runTicks: schedule', () => {
  // 200 ticks at 100 Hz; bounds a busy 2-core CI machine honours.
  it.each([
    ['reactor dispatching by itself (timer waits)', false],
    ['manual dispatch (pollEvents pumping)', true],
  ])('keeps 100 Hz for 200 ticks without drift: %s', async (_title, manual) => {
    const reactor = epollReactor();
    if (manual) reactor.stop();
    const infos: TickInfo[] = [];
    const loop = track(
      runTicks(
        reactor,
        (info) => {
          infos.push(info);
        },
        { hz: 100, maxTicks: 200 },
      ),
    );
    const stats = await loop.done;
    expect(stats.ticks).toBe(200);
    expect(stats.running).toBe(false);
    // A stall of Node's loop on a loaded 2-core machine costs ticks (8 seen with six builds
    // running); a loop that sleeps relative to its last start skips none and fails the span
    // check below instead, so this only bounds how often the loop may fall behind.
    expect(stats.skipped).toBeLessThan(20);
    expect(infos.at(-1)!.tick).toBe(199 + stats.skipped);

    const period = 10;
    const first = infos[0]!;
    const last = infos.at(-1)!;
    // The time from the first start to the last is within ±5% of the periods between them.
    const span = last.now - first.now;
    expect(span).toBeGreaterThan(last.tick * period * 0.95);
    expect(span).toBeLessThan(last.tick * period * 1.05);
    // Absolute deadlines: tick n is due n periods after tick 0, and starts close to it.
    for (const info of infos) {
      expect(info.deadline).toBeCloseTo(first.deadline + info.tick * period, 6);
      expect(info.lateness).toBeGreaterThanOrEqual(0);
    }
    const late = infos.filter((i) => i.now - (first.deadline + i.tick * period) > period / 2);
    expect(late.length).toBeLessThan(20);
    // No drift: the last ticks are as punctual as the first ones.
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    expect(median(infos.slice(-50).map((i) => i.lateness))).toBeLessThan(2);
    expect(median(infos.slice(0, 50).map((i) => i.lateness))).toBeLessThan(2);
    expect(stats.jitter.count).toBe(200);
    expect(stats.jitter.p50).toBeLessThan(2);
    expect(stats.jitter.max).toBeGreaterThanOrEqual(stats.jitter.p99);
    expect(stats.duration.count).toBe(200);
    expect(stats.hz).toBe(100);
    expect(stats.periodMs).toBe(10);
  });

  it('spinMs finishes waits with setImmediate for sub-millisecond starts', async () => {
    const loop = track(
      runTicks(timerPump(), () => undefined, { hz: 100, maxTicks: 50, spinMs: 1 }),
    );
    const stats = await loop.done;
    expect(stats.ticks).toBe(50);
    expect(stats.jitter.p50).toBeLessThan(1);
  });

  it('defaults hz to 1000 / timeout_ms and passes dt and the first tick at once', async () => {
    const reactor = epollReactor({ timeoutMs: 20 });
    const infos: TickInfo[] = [];
    const started = performance.now();
    const loop = track(
      runTicks(
        reactor,
        (info) => {
          infos.push(info);
        },
        { maxTicks: 5 },
      ),
    );
    expect(infos).toHaveLength(0); // runTicks returns before the first tick
    const stats = await loop.done;
    expect(stats.hz).toBe(50);
    expect(infos[0]!.now - started).toBeLessThan(15);
    expect(infos[0]!.dt).toBe(20);
    for (const info of infos.slice(1)) expect(info.dt).toBeGreaterThan(10);
  });

  it('rejects invalid options with IOMUX_INVALID_ARGUMENT', () => {
    const pump = timerPump();
    const noop = (): void => undefined;
    for (const options of [
      { hz: 0 },
      { hz: -1 },
      { hz: Number.NaN },
      { hz: 20_000 },
      { overrun: 'later' as never },
      { maxCatchUp: -1 },
      { maxCatchUp: 1.5 },
      { spinMs: -1 },
      { hz: 100, spinMs: 11 },
      { maxTicks: 0 },
    ]) {
      expect(() => runTicks(pump, noop, options)).toThrow(
        expect.objectContaining({ code: 'IOMUX_INVALID_ARGUMENT' }) as Error,
      );
    }
    expect(() => runTicks(timerPump(0), noop)).toThrow(/hz is required when timeout_ms is 0/);
    expect(() => runTicks(pump, 'tick' as never)).toThrow(IomuxError);
  });
});

describe('runTicks: overruns', () => {
  it("'skip' drops the deadlines that passed during a long tick and realigns", async () => {
    const seen: number[] = [];
    const loop = track(
      runTicks(
        timerPump(),
        async ({ tick }) => {
          seen.push(tick);
          if (tick === 5) await sleep(30); // three periods
        },
        { hz: 100, maxTicks: 15 },
      ),
    );
    const stats = await loop.done;
    expect(stats.overrun).toBe('skip');
    expect(stats.ticks).toBe(15);
    expect(stats.overruns).toBeGreaterThanOrEqual(1);
    expect(stats.skipped).toBeGreaterThanOrEqual(3);
    expect(stats.caughtUp).toBe(0);
    // Tick numbers stay tied to time: after tick 5 comes tick 5 + 1 + skipped (one overrun).
    const after = seen[seen.indexOf(5) + 1]!;
    expect(after).toBeGreaterThanOrEqual(9);
    expect(seen.at(-1)! - seen[0]! + 1).toBe(stats.ticks + stats.skipped);
    expect(stats.duration.max).toBeGreaterThanOrEqual(29);
  });

  it("'catch-up' runs the missed ticks back-to-back", async () => {
    const infos: TickInfo[] = [];
    const loop = track(
      runTicks(
        timerPump(),
        async (info) => {
          infos.push(info);
          if (info.tick === 5) await sleep(30);
        },
        { hz: 100, maxTicks: 15, overrun: 'catch-up' },
      ),
    );
    const stats = await loop.done;
    expect(stats.overrun).toBe('catch-up');
    expect(stats.skipped).toBe(0);
    expect(stats.overruns).toBeGreaterThanOrEqual(1);
    expect(stats.caughtUp).toBeGreaterThanOrEqual(3);
    expect(infos.map((i) => i.tick)).toEqual([...Array(15).keys()]);
    // Ticks 6, 7 and 8 were due while tick 5 slept: they run at once, one after the other.
    const [t6, t7, t8] = [infos[6]!, infos[7]!, infos[8]!];
    expect(t6.lateness).toBeGreaterThan(15);
    expect(t8.now - t6.now).toBeLessThan(5);
    expect(t7.dt).toBeLessThan(5);
    // Then the loop is back on schedule (the best of the last five ticks: one stall of a loaded
    // machine must not fail this; a loop that never caught up is ~20 ms late on every tick).
    expect(Math.min(...infos.slice(10).map((i) => i.lateness))).toBeLessThan(8);
  });

  it("'catch-up' owes at most maxCatchUp ticks and drops older ones", async () => {
    const seen: number[] = [];
    const loop = track(
      runTicks(
        timerPump(),
        ({ tick }) => {
          seen.push(tick);
          if (tick === 2) busyWait(105); // ten and a half periods
        },
        { hz: 100, maxTicks: 10, overrun: 'catch-up', maxCatchUp: 2 },
      ),
    );
    const stats = await loop.done;
    expect(stats.skipped).toBeGreaterThanOrEqual(8);
    expect(stats.caughtUp).toBeGreaterThanOrEqual(2);
    expect(seen.slice(0, 3)).toEqual([0, 1, 2]);
    expect(seen[3]).toBeGreaterThanOrEqual(11);
  });
});

describe('runTicks: ending', () => {
  it('a tick that throws stops the loop and rejects done with its error', async () => {
    const boom = new Error('tick failed');
    let calls = 0;
    const loop = track(
      runTicks(
        timerPump(),
        () => {
          // By call, not by tick number: under load the skip policy may drop tick 3 itself.
          calls += 1;
          if (calls === 4) throw boom;
        },
        { hz: 200 },
      ),
    );
    await expect(loop.done).rejects.toBe(boom);
    expect(loop.running).toBe(false);
    expect(loop.stats().running).toBe(false);
    await sleep(30);
    expect(calls).toBe(4);
  });

  it('a rejected async tick rejects done', async () => {
    let calls = 0;
    const loop = track(
      runTicks(
        timerPump(),
        async () => {
          calls += 1;
          await sleep(1);
          if (calls === 2) throw new IomuxError('IOMUX_BUSY', 'async tick failed');
        },
        { hz: 200 },
      ),
    );
    await expect(loop.done).rejects.toMatchObject({ code: 'IOMUX_BUSY' });
    expect(calls).toBe(2);
  });

  it('stop() ends the loop from inside a tick and from outside, cutting the wait short', async () => {
    const inside = track(
      runTicks(
        timerPump(),
        ({ tick }) => {
          if (tick === 2) inside.stop();
        },
        { hz: 100 },
      ),
    );
    expect((await inside.done).ticks).toBe(3);

    const outside = track(runTicks(timerPump(), () => undefined, { hz: 1 }));
    await sleep(20);
    const before = performance.now();
    outside.stop();
    outside.stop();
    const stats = await outside.done;
    expect(performance.now() - before).toBeLessThan(100); // not the 1 s period
    expect(stats.ticks).toBe(1);
  });

  it('an abort signal stops the loop', async () => {
    const controller = new AbortController();
    const loop = track(
      runTicks(timerPump(), () => undefined, { hz: 100, signal: controller.signal }),
    );
    await sleep(35);
    controller.abort();
    const stats = await loop.done;
    expect(stats.ticks).toBeGreaterThanOrEqual(2);
    const aborted = track(runTicks(timerPump(), () => undefined, { signal: AbortSignal.abort() }));
    expect((await aborted.done).ticks).toBe(0);
  });

  it('ends by itself when the reactor closes, in manual and automatic dispatch', async () => {
    for (const manual of [true, false]) {
      const reactor = createReactor({ ioModel: 'epoll' });
      if (manual) reactor.stop();
      const loop = track(runTicks(reactor, () => undefined, { hz: 100 }));
      await sleep(30);
      await reactor.close();
      const stats = await loop.done;
      expect(stats.running).toBe(false);
      expect(stats.ticks).toBeGreaterThanOrEqual(2);
    }
  });

  it('resetStats() clears counters and histograms', async () => {
    const loop = track(runTicks(timerPump(), () => undefined, { hz: 200 }));
    await until(() => loop.stats().ticks >= 5, 5000, 'five ticks');
    loop.resetStats();
    const stats = loop.stats();
    expect(stats.ticks).toBeLessThanOrEqual(1);
    expect(stats.jitter.count).toBe(stats.ticks);
    loop.stop();
    await loop.done;
  });
});

describe('runTicks: pumping I/O between ticks', () => {
  // The guarantee is about the loop's own decisions: it never asks the reactor to wait for
  // events past the start of a cut-off window, nor polls inside one. That is asserted with 3 ms
  // for a preemption or GC pause between the loop reading the clock and the recording pump doing
  // so (1 ms was exceeded once on the 2-core machine under load); an ignored 8 ms cut-off is off
  // by up to 8 ms. Arrival times are then checked only
  // statistically: under load a timer can fire late, and pollEvents() dispatches what is ready
  // when it does, so one batch per period may land in the window; with the cut-off ignored
  // about 8/20 of all arrivals do.
  it('ioCutoffMs: no event is dispatched in the last ioCutoffMs before a deadline', async () => {
    const reactor = epollReactor();
    reactor.stop();
    const cutoffMs = 8;
    const periodMs = 20;
    const deadlines: number[] = [];
    const polls: { at: number; timeoutMs: number }[] = [];
    const arrivals: number[] = [];
    let bytes = 0;
    const recordingPump: TickPump = {
      config: reactor.config,
      get isRunning() {
        return reactor.isRunning;
      },
      get closed() {
        return reactor.closed;
      },
      timers: reactor.timers,
      pollEvents(timeoutMs = reactor.config.timeoutMs) {
        polls.push({ at: performance.now(), timeoutMs });
        return reactor.pollEvents(timeoutMs);
      },
    };
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('data', (chunk) => {
        arrivals.push(performance.now());
        bytes += chunk.length;
      });
    });
    const loop = track(
      runTicks(recordingPump, ({ deadline }) => void deadlines.push(deadline), {
        hz: 1000 / periodMs,
        ioCutoffMs: cutoffMs,
      }),
    );
    const client = await netConnect(listener.port);
    opened.sockets.push(client);
    // A write every 1 ms for 400 ms: data is always arriving, inside the cut-off windows too.
    const sent = 400;
    for (let i = 0; i < sent; i += 1) {
      client.write('x');
      await sleep(1);
    }
    await until(() => bytes === sent, 5000, `all ${sent} bytes`);
    loop.stop();
    await loop.done;
    const windowStart = (t: number): number =>
      (deadlines.find((d) => d > t) ?? deadlines.at(-1)! + periodMs) - cutoffMs;

    expect(polls.length).toBeGreaterThan(10);
    const intoWindow = polls.filter((p) => p.at + p.timeoutMs > windowStart(p.at) + 3);
    expect(intoWindow).toEqual([]);

    expect(arrivals.length).toBeGreaterThan(10);
    const inWindow = arrivals.filter((t) => t > windowStart(t));
    expect(inWindow.length).toBeLessThan(arrivals.length / 4);
    expect(() => runTicks(reactor, () => undefined, { hz: 50, ioCutoffMs: 20 })).toThrow(
      /ioCutoffMs must be from 0 to less than the period \(20 ms\), got 20/,
    );
  });

  it('delivers connection data between ticks with the reactor in manual dispatch', async () => {
    const reactor = epollReactor();
    reactor.stop();
    let inTick = false;
    const received: { tick: number; text: string; duringTick: boolean }[] = [];
    let lastTick = -1;
    const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('data', (chunk) => {
        received.push({ tick: lastTick, text: chunk.toString(), duringTick: inTick });
        conn.write(chunk); // echo
      });
    });
    const loop = track(
      runTicks(
        reactor,
        ({ tick }) => {
          inTick = true;
          lastTick = tick;
          inTick = false;
        },
        { hz: 50 },
      ),
    );
    expect(reactor.isRunning).toBe(false);
    const client = await netConnect(listener.port);
    opened.sockets.push(client);
    const echoed: Buffer[] = [];
    client.on('data', (chunk) => echoed.push(chunk));
    client.write('ping-1');
    await until(() => Buffer.concat(echoed).toString() === 'ping-1', 5000, 'echo 1');
    await sleep(45);
    client.write('ping-2');
    await until(() => Buffer.concat(echoed).toString() === 'ping-1ping-2', 5000, 'echo 2');

    expect(received.map((r) => r.text).join('')).toBe('ping-1ping-2');
    expect(received.every((r) => !r.duringTick)).toBe(true);
    // The loop kept ticking while I/O was pumped, and data was handed over between ticks.
    expect(received.at(-1)!.tick).toBeGreaterThan(received[0]!.tick);
    const stats = loop.stats();
    expect(stats.ticks).toBeGreaterThanOrEqual(3);
    expect(reactor.isRunning).toBe(false);
    loop.stop();
    await loop.done;
  });
});
