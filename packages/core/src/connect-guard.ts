/**
 * When does a connect() or listen() give up on the caller's behalf? {@link guardConnect} arms a
 * pending connect's deadline (`timeoutMs`) and its `AbortSignal`, and disarms both once the
 * connect settles; {@link abortError} is the error an aborted call rejects with.
 */
import { constants as osConstants } from 'node:os';
import { IomuxError } from './errors.js';
import type { PendingConnect } from './fallback.js';

/** What may end a pending connect early. */
export interface ConnectGuards {
  /** Milliseconds until the connect fails with `ETIMEDOUT`. */
  readonly timeoutMs?: number | undefined;
  /** Aborting it fails the connect with `ABORT_ERR`. */
  readonly signal?: AbortSignal | undefined;
}

/** The error of a call whose `signal` aborted (code `ABORT_ERR`, as node's AbortError). */
export function abortError(call: string, address: string, signal: AbortSignal): IomuxError {
  return new IomuxError('ABORT_ERR', `${call} ${address} aborted`, {
    syscall: call,
    cause: signal.reason,
  });
}

/**
 * Arms `guards` on `pending`: at the deadline or on abort, `cancel(error)` closes the socket and
 * rejects. Settling the connect in any way disarms both (no timer or listener is left behind).
 */
export function guardConnect(
  pending: PendingConnect,
  guards: ConnectGuards,
  cancel: (error: IomuxError) => void,
): void {
  const { timeoutMs, signal } = guards;
  if (timeoutMs === undefined && signal === undefined) return;
  const { resolve, reject } = pending;
  let timer: NodeJS.Timeout | undefined;
  const onAbort = (): void => {
    cancel(abortError('connect', pending.address, signal!));
  };
  const disarm = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
  pending.resolve = (connection) => {
    disarm();
    resolve(connection);
  };
  pending.reject = (error) => {
    disarm();
    reject(error);
  };
  if (timeoutMs !== undefined) {
    timer = setTimeout(() => {
      cancel(
        new IomuxError(
          'ETIMEDOUT',
          `connect ETIMEDOUT ${pending.address} (not established within ${timeoutMs} ms)`,
          { syscall: 'connect', errno: osConstants.errno.ETIMEDOUT },
        ),
      );
    }, timeoutMs);
  }
  signal?.addEventListener('abort', onAbort, { once: true });
}
