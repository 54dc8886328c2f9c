/**
 * When is a connection idle? {@link IdleTimeout} fires its callback once the connection has seen
 * no read or write activity for the configured time, as node:net's `socket.setTimeout()` does.
 * Activity only stamps the time (no timer is touched per chunk); the timer checks the stamp when
 * it fires and re-arms itself for what is left.
 */

/** A lazily re-armed idle timer: one Node timer per connection that asked for a timeout. */
export class IdleTimeout {
  private lastActivity = performance.now();
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param ms Idle time after which `onIdle` runs (> 0).
   * @param onIdle Called once per idle period; further activity starts a new period.
   */
  constructor(
    readonly ms: number,
    private readonly onIdle: () => void,
  ) {
    this.arm(ms);
  }

  /** Records activity: the idle period starts again now. */
  touch(): void {
    this.lastActivity = performance.now();
    // After a timeout fired the timer is idle until activity starts a new period.
    if (this.timer === undefined) this.arm(this.ms);
  }

  /** Cancels the timer for good. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    // Unref'd as node:net's socket timers are: the socket, not its timeout, keeps the loop alive.
    this.timer = setTimeout(this.check, ms).unref();
  }

  private readonly check = (): void => {
    this.timer = undefined;
    // Timers may fire up to a millisecond early relative to performance.now().
    const left = this.ms - (performance.now() - this.lastActivity);
    if (left > 1) {
      this.arm(left);
      return;
    }
    this.onIdle();
  };
}
