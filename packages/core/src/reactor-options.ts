/**
 * What can a reactor be told besides its I/O configuration, what are the defaults, and which
 * values are allowed? {@link resolveReactorOptions} is the one validator: every bad value is a
 * {@link ConfigError} naming the field, the value and the allowed range.
 */
import type { BackendName } from './config.js';
import type { QueueLimitPolicy } from './connection.js';
import { ConfigError } from './errors.js';
import type { WorkerPool, WorkerPoolOptions } from './worker-pool.js';

/** Faults to inject, for tests and for rehearsing failure. */
export interface FaultInjection {
  /** Make creating these backends fail with this errno (name like `'EPERM'` or number). */
  setup?: Partial<Record<BackendName, string | number>>;
  /** Make the backend's poll fail after this many successful polls. */
  pollAfter?: Partial<Record<BackendName, number>>;
  /** Make the backend's poll fail once it has read this many bytes. */
  afterBytes?: Partial<Record<BackendName, number>>;
  /**
   * Make the backend's own kernel call (epoll_wait, select, io_uring_enter, ...) fail inside
   * poll after this many successful ones: the engine may already have built part of a batch
   * (leftovers, reaped completions), which must still be delivered before the fallback.
   */
  kernelAfter?: Partial<Record<BackendName, number>>;
  /**
   * io_uring: `conn.transfer()` gives up with `ETIMEDOUT` right after asking the kernel to cancel
   * the socket's operations, as when the kernel does not give them back in time (the connection
   * stays and serves on).
   */
  handOverTimeout?: boolean;
  /** The errno a failing poll reports (default `EIO`). */
  pollErrno?: string | number;
}

/** Anything with pino's method shape; `debug` lines are only built when `isLevelEnabled` allows. */
export interface Logger {
  /** Per-poll detail; only called when enabled. */
  debug(obj: object, msg?: string): void;
  /** Notable state changes. */
  info(obj: object, msg?: string): void;
  /** Fallbacks and other degradations. */
  warn(obj: object, msg?: string): void;
  /** pino's level check, used to keep disabled levels free. */
  isLevelEnabled?(level: string): boolean;
}

/** Reactor options that are not part of the I/O configuration document. */
export interface ReactorOptions {
  /**
   * Environment to read `IOMUX_BACKEND` and the backend tuning variables (`IOMUX_IOURING_*`,
   * `IOMUX_BLOCKING_*`) from. Default `process.env`.
   */
  env?: NodeJS.ProcessEnv;
  /** Queued bytes at which `write()` returns false. Default 64 KiB. */
  highWaterMark?: number;
  /** Keep our side open after the peer ends (you call `end()` yourself). Default false. */
  allowHalfOpen?: boolean;
  /**
   * Most bytes any connection's native write queue may hold, unless its `listen()` or `connect()`
   * sets its own; a write over it is handled by `queueLimitPolicy`. Default Infinity (no limit).
   * @example
   * ```ts
   * // A chat server: a client that stops reading is dropped once 1 MiB waits for it.
   * const reactor = createReactor({ ioModel: 'auto' }, { maxQueuedBytes: 1 << 20 });
   * ```
   */
  maxQueuedBytes?: number;
  /** `'destroy'` (default) or `'refuse'`, for every connection that does not set its own. */
  queueLimitPolicy?: QueueLimitPolicy;
  /** Largest single read in bytes, 1 KiB to 16 MiB. Default 64 KiB. */
  readChunk?: number;
  /** Bytes of read data one poll can carry, `readChunk` to 256 MiB. Default 1 MiB. */
  slabBytes?: number;
  /**
   * Who owns the bytes a `'data'` (or UDP `'message'`) listener receives.
   *
   * - `'owned'` (default): the chunk is yours; keep it as long as you like, its bytes never change.
   *   The backend reads into pooled arenas and hands out views of them without copying; an arena is
   *   reused only after the garbage collector found no view of it left.
   * - `'transient'`: **the chunk is valid only until your listener returns.** Every poll reads into
   *   the same buffer again, so a chunk kept after the listener returned (pushed into an array,
   *   used in a promise continuation, a timer, or written later) shows other bytes. Copy what you
   *   keep (`Buffer.from(chunk)`). In return no memory is allocated per read. `write(chunk)` inside
   *   the listener is safe (the bytes are sent or copied into the native queue before it returns);
   *   the reactor copies what it has to hold itself (bytes that arrive while paused, the node:stream
   *   adapter, async iteration, hand-offs).
   */
  readBuffers?: ReadBuffers;
  /** How long `close()` waits for connections to flush and close gracefully. Default 2000 ms. */
  closeTimeoutMs?: number;
  /** Dispatch events from Node's loop as they arrive. Set false to pump with `pollEvents()`. Default true. */
  autoRun?: boolean;
  /** Fault injection. */
  faults?: FaultInjection;
  /** A pino-compatible logger. Default: none. */
  logger?: Logger;
  /**
   * The worker pool behind {@link Reactor.offload} (piscina). Options: `filename` names the worker
   * module; the pool and its `size.min` threads start with the reactor, so no offload (from a
   * tick, say) pays for starting a thread; `await reactor.workersReady()` waits until they have
   * loaded the module. Or a {@link WorkerPool} you created: offload uses it at once. Either way
   * `metrics().workers` reports it and it closes with the reactor.
   */
  workers?: WorkerPoolOptions | WorkerPool;
  /**
   * Time every batch for the `io_wait_duration_ms` histogram and the per-poll observers. Counters
   * are kept natively either way. Default true.
   */
  metrics?: boolean;
}

/** Who owns the read chunks: see {@link ReactorOptions.readBuffers}. */
export type ReadBuffers = 'owned' | 'transient';

/** The numeric reactor options after validation, defaults filled in. */
export interface ResolvedReactorOptions {
  /** Queued bytes at which `write()` returns false. */
  readonly highWaterMark: number;
  /** Keep our side open after the peer ends. */
  readonly allowHalfOpen: boolean;
  /** Most bytes a connection's write queue may hold (Infinity: no limit). */
  readonly maxQueuedBytes: number;
  /** What a write over `maxQueuedBytes` does. */
  readonly queueLimitPolicy: QueueLimitPolicy;
  /** Largest single read in bytes. */
  readonly readChunk: number;
  /** Bytes of read data one poll can carry. */
  readonly slabBytes: number;
  /** How long `close()` waits for connections, in ms. */
  readonly closeTimeoutMs: number;
  /** Who owns the read chunks. */
  readonly readBuffers: ReadBuffers;
}

/** The allowed range and default of one numeric reactor option. */
export interface ReactorOptionLimit {
  /** Smallest allowed value. */
  readonly min: number;
  /** Largest allowed value. */
  readonly max: number;
  /** The value used when the option is not given. */
  readonly default: number;
}

/** The numeric reactor options. */
export type NumericReactorOption = 'highWaterMark' | 'closeTimeoutMs' | 'readChunk' | 'slabBytes';

/** Defaults and bounds of the numeric reactor options. */
export const REACTOR_OPTION_LIMITS: Readonly<Record<NumericReactorOption, ReactorOptionLimit>> = {
  highWaterMark: { min: 1, max: Number.MAX_SAFE_INTEGER, default: 64 * 1024 },
  closeTimeoutMs: { min: 0, max: 2 ** 31 - 1, default: 2000 },
  // The native side allocates readChunk per read and slabBytes per batch, and reports offsets
  // and lengths in int32 event fields: bound both well below 2^31 so neither a huge allocation
  // nor an overflow can happen.
  readChunk: { min: 1024, max: 16 * 1024 * 1024, default: 64 * 1024 },
  slabBytes: { min: 1024, max: 256 * 1024 * 1024, default: 1024 * 1024 },
};

function integerIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw new ConfigError(field, value, `an integer from ${min} to ${max}`);
  return value;
}

/**
 * Validates the numeric reactor options and fills in defaults.
 * @throws {@link ConfigError} naming the field, the value and the allowed range.
 */
export function resolveReactorOptions(options: ReactorOptions): ResolvedReactorOptions {
  const L = REACTOR_OPTION_LIMITS;
  const pick = (field: NumericReactorOption, min: number = L[field].min): number => {
    const value = options[field];
    return value === undefined
      ? Math.max(L[field].default, min)
      : integerIn(field, value, min, L[field].max);
  };
  const readChunk = pick('readChunk');
  // Checked as unknown: JavaScript callers are not held to the type.
  const readBuffers: unknown = options.readBuffers ?? 'owned';
  if (readBuffers !== 'owned' && readBuffers !== 'transient')
    throw new ConfigError('readBuffers', readBuffers, "'owned' or 'transient'");
  return {
    highWaterMark: pick('highWaterMark'),
    allowHalfOpen: options.allowHalfOpen ?? false,
    maxQueuedBytes: queueLimit(options.maxQueuedBytes),
    queueLimitPolicy: limitPolicy(options.queueLimitPolicy),
    readChunk,
    slabBytes: pick('slabBytes', readChunk),
    closeTimeoutMs: pick('closeTimeoutMs'),
    readBuffers,
  };
}

function queueLimit(value: unknown): number {
  if (value === undefined || value === Infinity) return Infinity;
  return integerIn('maxQueuedBytes', value, 1, Number.MAX_SAFE_INTEGER);
}

function limitPolicy(value: unknown): QueueLimitPolicy {
  if (value === undefined) return 'destroy';
  if (value === 'destroy' || value === 'refuse') return value;
  throw new ConfigError('queueLimitPolicy', value, "'destroy' or 'refuse'");
}
