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

/** The run/stop state of a reactor and the callers waiting in pollEvents(). */
export class Pump {
  private running: boolean;
  private waiters: ((count: number) => void)[] = [];

  constructor(
    private readonly host: PumpHost,
    running: boolean,
  ) {
    this.running = running;
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
  }

  /** Stops dispatching from Node's loop (callers pump with {@link poll}). */
  stop(): void {
    if (!this.running) return;
    this.running = false;
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

  /** Wakes every waiter with 0 events (the reactor closed or failed). */
  release(): void {
    this.wake(0);
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
