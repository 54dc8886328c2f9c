import { constants as osConstants } from 'node:os';

/**
 * Error codes iomux raises. Socket failures carry the POSIX name (`ECONNRESET`, `EADDRINUSE`,
 * `EMFILE`, ...); the `IOMUX_*` codes are iomux's own.
 */
export type IomuxErrorCode =
  | 'IOMUX_CONFIG_INVALID'
  | 'IOMUX_BACKEND_UNAVAILABLE'
  | 'IOMUX_BACKEND_FAILED'
  | 'IOMUX_INVALID_ARGUMENT'
  | 'IOMUX_WRITE_AFTER_END'
  | 'IOMUX_REACTOR_CLOSED'
  | 'IOMUX_BUSY'
  | 'IOMUX_QUEUE_FULL'
  | 'IOMUX_POOL_CLOSED'
  | 'IOMUX_WORKER_FAILED'
  | 'IOMUX_TASK_TIMEOUT'
  | 'IOMUX_UNKNOWN_TASK'
  | 'IOMUX_SOCKET_CLOSED'
  | 'IOMUX_HANDLER_REJECTED'
  | (string & {});

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

/** The POSIX name of an errno value (`111` → `ECONNREFUSED`), or `E<number>` when unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/** Every error iomux throws or emits: a stable `code`, and for socket failures the `errno`. */
export class IomuxError extends Error {
  /** Stable machine-readable code: a POSIX errno name or an `IOMUX_*` code. */
  readonly code: IomuxErrorCode;
  /** The positive errno for socket failures. */
  readonly errno: number | undefined;
  /** The operation that failed (`listen`, `connect`, `write`, `accept`, `poll`, ...). */
  readonly syscall: string | undefined;

  constructor(
    code: IomuxErrorCode,
    message: string,
    details: { errno?: number; syscall?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'IomuxError';
    this.code = code;
    this.errno = details.errno;
    this.syscall = details.syscall;
  }
}

/** A configuration value that is not allowed; names the field, the value and what is allowed. */
export class ConfigError extends IomuxError {
  /** Dotted path of the offending field, in the spelling the caller used (`retry_config.max_attempts`). */
  readonly field: string;
  /** The rejected value. */
  readonly value: unknown;
  /** What the field accepts. */
  readonly allowed: string;

  constructor(field: string, value: unknown, allowed: string) {
    super(
      'IOMUX_CONFIG_INVALID',
      `invalid config: ${field} = ${describe(value)}; expected ${allowed}`,
    );
    this.name = 'ConfigError';
    this.field = field;
    this.value = value;
    this.allowed = allowed;
  }
}

/** What an errno means on a backend where it has a backend-specific cause. */
export function backendHint(backend: string, errno: number): string | undefined {
  const name = errnoName(errno);
  if (backend === 'select' && name === 'ERANGE') return selectLimitHint(process.platform);
  if (backend === 'blocking_io' && name === 'EAGAIN')
    return 'thread limit reached (IOMUX_BLOCKING_MAX_THREADS)';
  if (name === 'EOPNOTSUPP') return `not supported by the ${backend} backend`;
  return undefined;
}

/**
 * What select's limit is where it was hit: POSIX fd_sets are bitmaps indexed by fd number, Winsock's
 * are arrays of FD_SETSIZE sockets (raised from 64 to 1024 in native/src/platform_win32_posix.h,
 * one place taken by the backend's own wake-up socket). Both sizes are the native FD_SETSIZE.
 */
export function selectLimitHint(platform: NodeJS.Platform): string {
  if (platform === 'win32') {
    return (
      'more than 1023 sockets: Winsock select holds FD_SETSIZE (1024) sockets per set, one of ' +
      'them its wake-up socket; use iocp for more sockets'
    );
  }
  return 'fd >= FD_SETSIZE (1024): select(2) cannot watch it; use epoll or io_uring for more sockets';
}

/** Builds the error for a failed socket operation from a (positive or negative) errno. */
export function socketError(errno: number, syscall: string, detail?: string): IomuxError {
  const code = errnoName(errno);
  const suffix = detail === undefined ? '' : ` ${detail}`;
  return new IomuxError(code, `${syscall} ${code}${suffix}`, { errno: Math.abs(errno), syscall });
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
