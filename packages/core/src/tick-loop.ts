import { build, type Histogram } from 'hdr-histogram-js';
import { IomuxError } from './errors.js';
import type { HistogramSummary } from './metrics.js';
import { coarseTimers, type TimerSource } from './timers.js';

/**
 * What the tick loop needs from a reactor. A {@link Reactor} has all of it; anything else with
 * this shape (a test double, a wrapper) works too.
 */
export interface TickPump {
  /** The reactor's configuration. */
  readonly config: {
    /** The spec's `timeout_ms`: the default tick period, in ms. */
    readonly timeoutMs: number;
  };
  /** True while the reactor dispatches events by itself (then the loop only waits). */
  readonly isRunning: boolean;
  /** True once the reactor is closed (then the loop ends). */
  readonly closed: boolean;
  /** Dispatches ready events, waiting up to `timeoutMs` for some without blocking Node's thread. */
  pollEvents(timeoutMs?: number): Promise<number>;
  /**
   * The pump's timers. When they are precise (a {@link Reactor}'s native timer on Linux), waits
   * and `pollEvents` timeouts are fractional ms, so ticks start within tens of µs of their
   * deadline; without them the loop sleeps on `setTimeout` in whole ms.
   */
  readonly timers?: TimerSource;
  /** Told of every loop {@link runTicks} starts on this pump, so it can report the loop's stats. */
  tickLoopStarted?(loop: TickLoop): void;
  /**
   * Told when a loop ended. A {@link Reactor} left in manual dispatch then resumes automatic
   * dispatch, so I/O (a pending `connect()`, data) keeps flowing with no loop pumping it.
   */
  tickLoopEnded?(loop: TickLoop): void;
}

/**
 * What to do when a tick runs past the next tick's deadline.
 *
 * - `'skip'`: after each tick, every deadline that has already passed is dropped and counted in
 *   {@link TickStats.skipped}; the loop then waits for the next deadline still ahead. Tick numbers
 *   stay tied to time (tick `n` is due `n` periods after the start), so a gap in `tick` numbers
 *   is a skipped tick. A tick never starts more than one period late unless Node's own loop was
 *   blocked.
 * - `'catch-up'`: deadlines that passed are run back-to-back, as fast as the tick allows (I/O is
 *   still pumped without waiting between them), until the loop is back on schedule. At most
 *   {@link TickLoopOptions.maxCatchUp} missed deadlines are ever owed: when more have passed, the
 *   oldest are dropped and counted in {@link TickStats.skipped}, so a tick that is always too slow
 *   cannot make the loop fall further and further behind.
 */
export type OverrunPolicy = 'skip' | 'catch-up';

/** Options of {@link runTicks}. */
export interface TickLoopOptions {
  /**
   * Ticks per second. Default `1000 / config.timeoutMs` (the spec's `timeout_ms`, so 62.5 Hz for
   * the default 16 ms). Required when `timeout_ms` is 0. Allowed: more than 0, at most 10 000.
   */
  hz?: number;
  /**
   * What to do when ticks fall behind schedule. Default `'skip'`.
   * @example
   * ```ts
   * // A physics step must run once per deadline, even late: run up to 5 missed ones back to back.
   * reactor.runTicks(({ dt }) => world.step(dt), { hz: 120, overrun: 'catch-up', maxCatchUp: 5 });
   * ```
   */
  overrun?: OverrunPolicy;
  /**
   * With `overrun: 'catch-up'`: how many missed deadlines may be run late; older ones are dropped.
   * Default 10. 0 makes catch-up behave like skip.
   */
  maxCatchUp?: number;
  /**
   * The last part of each wait, in ms, is spent yielding with `setImmediate` (and, in manual
   * dispatch, polling without waiting) instead of sleeping on a timer, for sub-millisecond
   * start times. Costs CPU: up to about `spinMs + 1` ms per tick. Default 0: timers only, which
   * start ticks within about 1 ms of their deadline on an idle machine. At most the period.
   * @example
   * ```ts
   * // 128 Hz with starts well under a millisecond late, for about 2 ms of CPU per tick.
   * const loop = reactor.runTicks(tick, { hz: 128, spinMs: 1 });
   * ```
   */
  spinMs?: number;
  /**
   * In manual dispatch: for the last `ioCutoffMs` before each deadline, events are not
   * dispatched (they wait in the kernel until the tick has run), so a batch that arrives just
   * before a deadline cannot delay the tick's start. Events that arrive in that window reach the
   * next tick instead of this one. Default 0. From 0 to less than the period.
   * @example
   * ```ts
   * reactor.stop(); // manual dispatch, where the cutoff applies
   * // 60 Hz (16.7 ms period): input arriving in the last 2 ms waits for the next tick.
   * reactor.runTicks(tick, { hz: 60, ioCutoffMs: 2 });
   * ```
   */
  ioCutoffMs?: number;
  /** Stop by itself after this many ticks have run. Default: no limit. */
  maxTicks?: number;
  /**
   * Aborting it stops the loop, like {@link TickLoop.stop}.
   * @example
   * ```ts
   * // A match that lasts at most ten minutes.
   * const loop = reactor.runTicks(tick, { hz: 30, signal: AbortSignal.timeout(600_000) });
   * const stats = await loop.done;
   * ```
   */
  signal?: AbortSignal;
}

/** What a tick callback receives. Times come from `performance.now()`, in ms. */
export interface TickInfo {
  /** Index of this tick's deadline: it was due at `start + tick * period`. Skipped ticks leave gaps. */
  readonly tick: number;
  /** When this tick started. */
  readonly now: number;
  /** When it was due. */
  readonly deadline: number;
  /** Time since the previous tick started; one period for the first tick. */
  readonly dt: number;
  /** How late it started: `now - deadline` (0 or more). */
  readonly lateness: number;
}

/**
 * A tick callback. It may return a promise; the loop awaits it before going on, and a tick that
 * is still running when the next deadline passes is an overrun. If it throws or rejects, the loop
 * stops and {@link TickLoop.done} rejects with that error.
 */
export type TickFn = (info: TickInfo) => void | Promise<void>;

/** A snapshot of a tick loop's counters and histograms (ms, recorded with µs resolution). */
export interface TickStats {
  /** Ticks per second. */
  hz: number;
  /** Period in ms: `1000 / hz`. */
  periodMs: number;
  /** The overrun policy. */
  overrun: OverrunPolicy;
  /** True until the loop has ended. */
  running: boolean;
  /** Ticks run. */
  ticks: number;
  /** Deadlines dropped by the overrun policy (no tick ran for them). */
  skipped: number;
  /** Ticks that started before the next tick's deadline and were still running after it. */
  overruns: number;
  /** Ticks run late, back-to-back, by the `'catch-up'` policy. */
  caughtUp: number;
  /** Time since the loop started (or since the stats were last reset), ms. */
  elapsedMs: number;
  /** How long tick callbacks ran, ms. */
  duration: HistogramSummary;
  /** `|actual start - deadline|` of every tick, ms; includes ticks run late by catch-up. */
  jitter: HistogramSummary;
}

/** A running tick loop, from {@link runTicks}. */
export interface TickLoop {
  /**
   * Stops the loop: a tick in progress finishes, no other starts, a wait in progress is cut
   * short. {@link TickLoop.done} then resolves. Safe to call more than once, and from a tick.
   * @example
   * ```ts
   * const loop = reactor.runTicks(() => {
   *   world.step();
   *   if (world.finished) loop.stop(); // from inside a tick
   * }, { hz: 20 });
   * ```
   */
  stop(): void;
  /**
   * Resolves with the final stats when the loop ends (by {@link TickLoop.stop}, `maxTicks`, the
   * abort signal or the reactor closing); rejects with the error a tick threw. Attach a handler:
   * a rejection nobody handles is reported by Node as an unhandled rejection.
   * @example
   * ```ts
   * const loop = reactor.runTicks(tick, { hz: 60, maxTicks: 600 });
   * try {
   *   const { ticks, skipped, jitter } = await loop.done;
   *   console.log(`${ticks} ticks, ${skipped} skipped, jitter p99 ${jitter.p99.toFixed(2)} ms`);
   * } catch (err) {
   *   console.error('a tick threw; the loop stopped', err);
   * }
   * ```
   */
  readonly done: Promise<TickStats>;
  /** True until the loop has ended. */
  readonly running: boolean;
  /** Current counters and histograms. */
  stats(): TickStats;
  /**
   * Clears the counters and histograms (e.g. after a warm-up); the schedule is unchanged.
   * @example
   * ```ts
   * const loop = reactor.runTicks(tick, { hz: 60 });
   * setTimeout(() => loop.resetStats(), 5_000); // leave JIT warm-up out of the jitter figures
   * setInterval(() => console.log(loop.stats().jitter.p99), 10_000);
   * ```
   */
  resetStats(): void;
}

const MAX_HZ = 10_000;
const MAX_RECORDED_US = 3_600_000_000; // one hour

function invalid(message: string): IomuxError {
  return new IomuxError('IOMUX_INVALID_ARGUMENT', `runTicks: ${message}`);
}

/**
 * A log-linear (HDR) histogram of ms values stored as µs, with an exact sum.
 * @internal
 */
export class MsHistogram {
  private readonly histogram: Histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: MAX_RECORDED_US,
    numberOfSignificantValueDigits: 2,
  });
  private sum = 0;

  /** Records one value in ms (its absolute value; clamped to one hour). */
  record(ms: number): void {
    const value = Math.abs(ms);
    this.sum += value;
    this.histogram.recordValue(Math.min(MAX_RECORDED_US, Math.round(value * 1000)));
  }

  /** Forgets every value. */
  reset(): void {
    this.histogram.reset();
    this.sum = 0;
  }

  /** Count, sum, mean, p50, p90, p99 and max in ms. */
  summary(): HistogramSummary {
    const h = this.histogram;
    const count = h.totalCount;
    if (count === 0) return { count: 0, sum: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    return {
      count,
      sum: this.sum,
      mean: this.sum / count,
      p50: h.getValueAtPercentile(50) / 1000,
      p90: h.getValueAtPercentile(90) / 1000,
      p99: h.getValueAtPercentile(99) / 1000,
      max: h.maxValue / 1000,
    };
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function isReactorClosed(err: unknown): boolean {
  return err instanceof IomuxError && err.code === 'IOMUX_REACTOR_CLOSED';
}

class FixedRateLoop implements TickLoop {
  readonly done: Promise<TickStats>;
  private readonly hz: number;
  private readonly period: number;
  private readonly policy: OverrunPolicy;
  private readonly maxCatchUp: number;
  private readonly spinMs: number;
  private readonly ioCutoffMs: number;
  private readonly maxTicks: number;
  private readonly start = performance.now();
  private statsSince = this.start;
  private ticks = 0;
  private skipped = 0;
  private overruns = 0;
  private caughtUp = 0;
  private readonly duration = new MsHistogram();
  private readonly jitter = new MsHistogram();
  private isRunning = true;
  private stopRequested = false;
  /** Ends the wait in progress (a timer or a pollEvents call) at once. */
  private cancelWait: (() => void) | undefined;
  private readonly signalOf: AbortSignal | undefined;
  private readonly onAbort = (): void => {
    this.stop();
  };

  constructor(
    private readonly pump: TickPump,
    private readonly tick: TickFn,
    options: TickLoopOptions,
  ) {
    if (typeof tick !== 'function') throw invalid('tick must be a function');
    const hz = options.hz ?? (pump.config.timeoutMs > 0 ? 1000 / pump.config.timeoutMs : NaN);
    if (options.hz === undefined && Number.isNaN(hz))
      throw invalid('hz is required when timeout_ms is 0');
    if (typeof hz !== 'number' || !Number.isFinite(hz) || hz <= 0 || hz > MAX_HZ)
      throw invalid(`hz must be a number above 0 and at most ${MAX_HZ}, got ${String(hz)}`);
    this.hz = hz;
    this.period = 1000 / hz;
    const policy: string = options.overrun ?? 'skip';
    if (policy !== 'skip' && policy !== 'catch-up')
      throw invalid(`overrun must be 'skip' or 'catch-up', got ${policy}`);
    this.policy = policy;
    const maxCatchUp = options.maxCatchUp ?? 10;
    if (!Number.isInteger(maxCatchUp) || maxCatchUp < 0)
      throw invalid(`maxCatchUp must be an integer >= 0, got ${String(maxCatchUp)}`);
    this.maxCatchUp = maxCatchUp;
    const spinMs = options.spinMs ?? 0;
    if (typeof spinMs !== 'number' || !(spinMs >= 0 && spinMs <= this.period))
      throw invalid(
        `spinMs must be from 0 to the period (${this.period} ms), got ${String(spinMs)}`,
      );
    this.spinMs = spinMs;
    const ioCutoffMs = options.ioCutoffMs ?? 0;
    if (typeof ioCutoffMs !== 'number' || !(ioCutoffMs >= 0 && ioCutoffMs < this.period))
      throw invalid(
        `ioCutoffMs must be from 0 to less than the period (${this.period} ms), got ${String(ioCutoffMs)}`,
      );
    this.ioCutoffMs = ioCutoffMs;
    const maxTicks = options.maxTicks ?? Infinity;
    if (maxTicks !== Infinity && (!Number.isInteger(maxTicks) || maxTicks < 1))
      throw invalid(`maxTicks must be an integer >= 1, got ${String(maxTicks)}`);
    this.maxTicks = maxTicks;
    this.signalOf = options.signal;
    if (this.signalOf?.aborted === true) this.stopRequested = true;
    else this.signalOf?.addEventListener('abort', this.onAbort, { once: true });
    this.done = this.loop();
  }

  get running(): boolean {
    return this.isRunning;
  }

  stop(): void {
    if (this.stopRequested) return;
    this.stopRequested = true;
    this.cancelWait?.();
  }

  stats(): TickStats {
    return {
      hz: this.hz,
      periodMs: this.period,
      overrun: this.policy,
      running: this.isRunning,
      ticks: this.ticks,
      skipped: this.skipped,
      overruns: this.overruns,
      caughtUp: this.caughtUp,
      elapsedMs: performance.now() - this.statsSince,
      duration: this.duration.summary(),
      jitter: this.jitter.summary(),
    };
  }

  resetStats(): void {
    this.statsSince = performance.now();
    this.ticks = 0;
    this.skipped = 0;
    this.overruns = 0;
    this.caughtUp = 0;
    this.duration.reset();
    this.jitter.reset();
  }

  private async loop(): Promise<TickStats> {
    try {
      await this.ticking();
    } finally {
      this.isRunning = false;
      this.cancelWait = undefined;
      this.signalOf?.removeEventListener('abort', this.onAbort);
      this.pump.tickLoopEnded?.(this);
    }
    return this.stats();
  }

  private async ticking(): Promise<void> {
    // Let runTicks() return the handle before the first tick runs.
    await Promise.resolve();
    const { start, period } = this;
    let n = 0;
    let previousStart = NaN;
    let ran = 0;
    let owed = false; // this tick's deadline passed while the previous one ran (catch-up)
    while (!this.stopRequested && !this.pump.closed) {
      const deadline = start + n * period;
      if (!(await this.waitUntil(deadline))) break;
      const now = performance.now();
      const lateness = now - deadline;
      const info: TickInfo = {
        tick: n,
        now,
        deadline,
        dt: Number.isNaN(previousStart) ? period : now - previousStart,
        lateness,
      };
      previousStart = now;
      const result = this.tick(info);
      if (isPromiseLike(result)) await result;
      const end = performance.now();
      this.jitter.record(lateness);
      this.duration.record(end - now);
      this.ticks += 1;
      if (owed) this.caughtUp += 1;
      ran += 1;
      if (ran >= this.maxTicks) break;
      const nextDeadline = deadline + period;
      if (end < nextDeadline) {
        n += 1;
        owed = false;
        continue;
      }
      if (now < nextDeadline) this.overruns += 1;
      // Deadlines n+1 .. latest have all passed.
      const latest = Math.max(n + 1, Math.floor((end - start) / period));
      const missed = latest - n;
      const dropped = this.policy === 'skip' ? missed : Math.max(0, missed - this.maxCatchUp);
      this.skipped += dropped;
      n += 1 + dropped;
      owed = n <= latest;
    }
  }

  /**
   * Waits until `deadline`, pumping I/O in manual dispatch. Resolves false when the loop should
   * end (stop requested, reactor closed) instead.
   */
  private async waitUntil(deadline: number): Promise<boolean> {
    for (;;) {
      if (this.stopRequested || this.pump.closed) return false;
      const remaining = deadline - performance.now();
      const manual = !this.pump.isRunning;
      const cutoff = manual ? this.ioCutoffMs : 0;
      if (remaining <= 0) {
        // Due (or late): still hand ready events over, without waiting, unless cut off.
        if (manual && cutoff === 0 && !(await this.poll(0))) return false;
        return !this.stopRequested;
      }
      if (remaining <= cutoff) {
        await this.sleep(remaining);
        continue;
      }
      const precise = this.pump.timers?.precise === true;
      const untilSpin = remaining - Math.max(this.spinMs, cutoff);
      let sleepMs: number;
      if (precise) sleepMs = untilSpin;
      else if (this.spinMs === 0 && cutoff === 0) sleepMs = Math.max(1, Math.ceil(remaining));
      else sleepMs = Math.floor(untilSpin);
      if (precise ? sleepMs > 0 : sleepMs >= 1) {
        if (manual) {
          if (!(await this.poll(sleepMs))) return false;
        } else {
          await this.sleep(sleepMs);
        }
      } else {
        if (manual && !(await this.poll(0))) return false;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  }

  /** One pollEvents call, cut short by stop(); false once the reactor is closed. */
  private async poll(ms: number): Promise<boolean> {
    try {
      if (ms <= 0) {
        await this.pump.pollEvents(0);
      } else {
        await new Promise<unknown>((resolve, reject) => {
          this.cancelWait = () => {
            resolve(0);
          };
          this.pump.pollEvents(ms).then(resolve, reject);
        });
        this.cancelWait = undefined;
        // pollEvents resolves from inside the reactor's dispatch; continue from Node's loop, so
        // the next poll is not refused as re-entrant and Node's own I/O and timers get a turn.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      return true;
    } catch (err) {
      this.cancelWait = undefined;
      if (isReactorClosed(err)) return false;
      throw err;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        this.cancelWait = undefined;
        resolve();
      };
      const cancel = (this.pump.timers ?? coarseTimers).after(ms, finish);
      this.cancelWait = () => {
        cancel();
        finish();
      };
    });
  }
}

/**
 * Runs `tick` at a fixed rate: the spec's game-server pattern (poll events for up to one tick →
 * run the tick → broadcast), with tick jitter measured.
 *
 * Ticks are scheduled against absolute deadlines (`start + n * period`), so the loop does not
 * drift however long it runs. Between ticks, when the reactor is in manual dispatch
 * (`reactor.stop()` was called, or `autoRun: false`), the loop pumps I/O with
 * `reactor.pollEvents(remaining)`, which never blocks Node's thread; when the reactor dispatches
 * by itself it just waits on a timer. Most of each wait is a timer; set
 * {@link TickLoopOptions.spinMs} to finish waits with `setImmediate` for sub-millisecond starts.
 * Overruns follow {@link TickLoopOptions.overrun} (see {@link OverrunPolicy}).
 *
 * The first tick runs right after `runTicks` returns. The loop ends on
 * {@link TickLoop.stop}, after `maxTicks` ticks, when `signal` aborts or when the reactor closes;
 * {@link TickLoop.done} then resolves with the final stats. An error thrown by a tick (or a
 * rejected tick promise) stops the loop and rejects `done` with it: it is never swallowed.
 *
 * @example
 * ```ts
 * const reactor = createReactor({ ioModel: 'auto' });
 * reactor.stop(); // manual dispatch: the loop pumps I/O between ticks
 * const loop = runTicks(reactor, ({ dt }) => {
 *   world.step(dt);
 *   broadcast(world.snapshot());
 * }, { hz: 60 });
 * // later
 * loop.stop();
 * const { jitter } = await loop.done;
 * console.log(`tick jitter p99 ${jitter.p99} ms`);
 * ```
 * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for an invalid option.
 */
export function runTicks(reactor: TickPump, tick: TickFn, options: TickLoopOptions = {}): TickLoop {
  const loop = new FixedRateLoop(reactor, tick, options);
  reactor.tickLoopStarted?.(loop);
  return loop;
}
