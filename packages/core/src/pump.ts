/**
 * Who drives the backend, Node's loop or the caller? {@link Pump} keeps the run/stop state and
 * the waiters of `reactor.pollEvents()`: the native watcher runs while the reactor runs or
 * someone waits for events, and is stopped again after the batch that served the waiters.
 */
import { constants as osConstants } from 'node:os';
import type { NativeBackendHandle } from './backend.js';
import type { TimerSource } from './timers.js';
import { guarded } from './user-code.js';

/** What the pump needs from its reactor. */
export interface PumpHost {
  /** The backend instance (it changes on a runtime fallback). */
  readonly native: NativeBackendHandle;
  /** One-shot timers for the poll timeout. */
  readonly timers: TimerSource;
  /** True while the backend can be started and stopped: not closed, not failed. */
  readonly live: boolean;
  /** Throws when the reactor is closed or failed. */
  assertOpen(): void;
}

/**
 * How often a running reactor polls by itself. A wait fd closed by other code in the process
 * never fires its watcher again, so without this poll an auto-running reactor would stop serving
 * silently instead of noticing the failure and moving its sockets to the next backend.
 */
export const WATCHDOG_INTERVAL_MS = 1000;

/** The run/stop state of a reactor and the callers waiting in pollEvents(). */
export class Pump {
  private running: boolean;
  private waiters: ((count: number) => void)[] = [];
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: PumpHost,
    running: boolean,
  ) {
    this.running = running;
    if (running) this.startWatchdog();
  }

  /** True while events are dispatched from Node's loop as they arrive. */
  get isRunning(): boolean {
    return this.running;
  }

  /** True when the backend's watcher should be on: running, or a caller waits for events. */
  get wanted(): boolean {
    return this.running || this.waiters.length > 0;
  }

  /** Dispatches from Node's loop as events arrive. */
  run(): void {
    if (this.running) return;
    this.running = true;
    this.host.native.start();
    this.startWatchdog();
  }

  /** Stops dispatching from Node's loop (callers pump with {@link poll}). */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.stopWatchdog();
    if (this.waiters.length === 0) this.host.native.stop();
  }

  /** Dispatches ready events now, or waits up to `timeoutMs` for some (`reactor.pollEvents()`). */
  async poll(timeoutMs: number): Promise<number> {
    this.host.assertOpen();
    const count = this.host.native.poll();
    if (count === -osConstants.errno.EBUSY) {
      // Called while a batch is being dispatched: let it finish, then poll, instead of spinning.
      await new Promise<void>((resolve) => setImmediate(resolve));
      return this.poll(timeoutMs);
    }
    if (count !== 0 || timeoutMs <= 0) return Math.max(count, 0);
    return new Promise<number>((resolve) => {
      const cancel = this.host.timers.after(timeoutMs, () => {
        this.waiters = this.waiters.filter((w) => w !== done);
        if (!this.running && this.waiters.length === 0 && this.host.live) this.host.native.stop();
        resolve(0);
      });
      const done = (n: number): void => {
        cancel();
        resolve(n);
      };
      this.waiters.push(done);
      if (!this.running) this.host.native.start();
    });
  }

  /** After a batch of `count` events: wakes the waiters, and stops the watcher if it ran for them. */
  batchDone(count: number): void {
    if (this.waiters.length === 0) return;
    this.wake(count);
    if (!this.running && this.host.live) this.host.native.stop();
  }

  /** Wakes every waiter with 0 events and ends the watchdog (the reactor closed or failed). */
  release(): void {
    this.stopWatchdog();
    this.wake(0);
  }

  private startWatchdog(): void {
    // A poll during a dispatch returns EBUSY and one of a healthy backend just dispatches early;
    // a failed poll reaches the reactor's dispatch, which runs the runtime fallback.
    this.watchdog ??= setInterval(() => {
      if (this.host.live) this.host.native.poll();
    }, WATCHDOG_INTERVAL_MS).unref();
  }

  private stopWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  private wake(count: number): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters)
      guarded(() => {
        waiter(count);
      });
  }
}
