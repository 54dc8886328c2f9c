import type { PreciseTimerConstructor, PreciseTimerHandle } from './backend.js';

/** One-shot timers a {@link TickPump} offers for its waits. */
export interface TimerSource {
  /**
   * True when fractional milliseconds are honoured (a native timerfd, within tens of µs on an idle
   * machine); false when waits are whole milliseconds, like `setTimeout`.
   */
  readonly precise: boolean;
  /** Calls `fn` once, `ms` from now; returns a function that cancels the call if still pending. */
  after(ms: number, fn: () => void): () => void;
}

interface Slot {
  readonly handle: PreciseTimerHandle;
  /** Bumped on every arm, so a stale cancel cannot disarm the slot's next user. */
  generation: number;
  fn: (() => void) | undefined;
}

function coarseAfter(ms: number, fn: () => void): () => void {
  // libuv timers count whole ms and truncate: round up so the wait is never cut short.
  const timer = setTimeout(fn, Math.max(1, Math.ceil(ms)));
  return () => {
    clearTimeout(timer);
  };
}

/** `setTimeout` as a {@link TimerSource}: whole milliseconds. */
export const coarseTimers: TimerSource = { precise: false, after: coarseAfter };

/**
 * Timers backed by the addon's native `PreciseTimer` where it has one, reusing idle timers so a
 * tick loop arms the same timerfd every tick; `setTimeout` otherwise or after {@link close}.
 * @internal
 */
export class NativeTimers implements TimerSource {
  private readonly spare: Slot[] = [];
  private readonly all: Slot[] = [];
  private closed = false;

  constructor(private readonly Timer: PreciseTimerConstructor | undefined) {}

  get precise(): boolean {
    return this.Timer !== undefined && !this.closed;
  }

  after(ms: number, fn: () => void): () => void {
    const Timer = this.closed ? undefined : this.Timer;
    if (Timer === undefined) return coarseAfter(ms, fn);
    const slot = this.spare.pop() ?? this.create(Timer);
    slot.generation += 1;
    const generation = slot.generation;
    slot.fn = fn;
    if (slot.handle.arm(Math.max(0, ms)) !== 0) {
      slot.fn = undefined;
      this.spare.push(slot);
      return coarseAfter(ms, fn);
    }
    return () => {
      if (slot.generation !== generation || slot.fn === undefined) return;
      slot.fn = undefined;
      slot.handle.disarm();
      this.spare.push(slot);
    };
  }

  /**
   * Releases every native timer. Pending calls run now, early, so nothing waits forever on a
   * timer that will not fire; later calls fall back to `setTimeout`.
   */
  close(): void {
    this.closed = true;
    const pending: (() => void)[] = [];
    for (const slot of this.all) {
      if (slot.fn !== undefined) pending.push(slot.fn);
      slot.fn = undefined;
      slot.handle.close();
    }
    this.all.length = 0;
    this.spare.length = 0;
    for (const fn of pending) fn();
  }

  private create(Timer: PreciseTimerConstructor): Slot {
    const slot: Slot = {
      handle: new Timer(() => {
        const fn = slot.fn;
        if (fn === undefined) return;
        slot.fn = undefined;
        this.spare.push(slot);
        fn();
      }),
      generation: 0,
      fn: undefined,
    };
    this.all.push(slot);
    return slot;
  }
}
