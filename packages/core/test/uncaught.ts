// Collects exceptions that reach process 'uncaughtException' while a test provokes them on
// purpose (a throwing user callback is reported that way), instead of failing the whole run.

/** Captured uncaught exceptions; call restore() in a finally block. */
export interface UncaughtCapture {
  readonly errors: unknown[];
  restore(): void;
}

/** Routes uncaught exceptions into `errors` until `restore()`. */
export function captureUncaught(): UncaughtCapture {
  const saved = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const errors: unknown[] = [];
  const onError = (err: unknown): void => {
    errors.push(err);
  };
  process.on('uncaughtException', onError);
  return {
    errors,
    restore() {
      process.off('uncaughtException', onError);
      for (const listener of saved) process.on('uncaughtException', listener);
    },
  };
}
