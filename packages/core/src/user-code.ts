/**
 * How is an exception from user or observer code reported without costing an event? It is
 * rethrown on the next tick (an uncaught exception, as Node reports a throwing listener), after
 * the reactor finished its own work.
 */

/** Reports an exception from user or observer code as uncaught, after the current batch. */
export function rethrowLater(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}

/** Runs user or observer code so that a throw is reported as uncaught instead of escaping. */
export function guarded(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    rethrowLater(err);
  }
}
