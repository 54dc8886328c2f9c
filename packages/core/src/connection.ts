import { EventEmitter } from 'node:events';
import type { NativeBackendHandle } from './backend.js';
import { IomuxError, socketError } from './errors.js';
import { IdleTimeout } from './idle-timeout.js';
import type { LaterEvents } from './dispatch.js';
import { bytesOf, notBytes } from './socket-options.js';
import { ticketFor, type ConnectionTicket, type HandOff } from './transfer.js';
import { readChunks } from './connection-iterator.js';

/** Most buffers one native writev call takes (the native side's limit). */
const MAX_WRITEV_BUFFERS = 1024;

/** An address as the native side reports it: IP text, port, family. */
type SocketAddress = [ip: string, port: number, family: 4 | 6];

/** An IP address from the backend; undefined for a Unix socket (family 0), as in node:net. */
function ipAddress(result: [string, number, 0 | 4 | 6] | number): SocketAddress | undefined {
  if (typeof result === 'number' || result[2] === 0) return undefined;
  return result as SocketAddress;
}

/**
 * A held event: bytes, the peer's END, a DRAIN, the CLOSE (its errno, in an object), or 'settle'
 * (after a migrated END: close if both sides are done).
 */
type HeldEvent = Buffer | 'end' | 'drain' | 'settle' | { closeErrno: number };

/** `bytes` if it is a positive integer that fits a socket option. */
function checkBufferSize(call: string, bytes: number): number {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 2 ** 31 - 1) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${call}: bytes must be an integer from 1 to ${2 ** 31 - 1}, got ${String(bytes)}`,
    );
  }
  return bytes;
}

/** @internal What a connection needs from its reactor (the Reactor implements it). */
export interface ConnectionHost {
  /** The backend instance. */
  readonly native: NativeBackendHandle;
  /** Queued bytes at which write() returns false. */
  readonly highWaterMark: number;
  /**
   * Read chunks are valid only while their listener runs (`readBuffers: 'transient'`): whatever
   * is kept past that must be copied.
   */
  readonly transientReads: boolean;
  /** Counts a write() that returned false. */
  noteBackpressure(): void;
  /** The connection's queued bytes changed by `delta` (for the reactor's total). */
  noteQueued(delta: number): void;
  /** Counts a write refused, or a connection destroyed, over its `maxQueuedBytes`. */
  noteQueueLimit(): void;
  /** Called once when the connection is closed, to drop it from the reactor's table. */
  forget(connection: Connection): void;
  /** True while the reactor's table maps the connection's id to this very object. */
  owns(connection: Connection): boolean;
  /**
   * @internal Before a hand-off: the events of `id` the current batch has not delivered yet,
   * taken out of it with `take` (once the backend let the socket go), else only looked at.
   */
  prepareHandOff(id: number, take: boolean): LaterEvents;
}

/**
 * Per-connection settings a listener (for its accepted connections) or a connect() call fixes;
 * one object is shared by every connection it applies to.
 */
export interface ConnectionSettings {
  /** Keep our side open after the peer ends (the user calls `end()`). */
  readonly allowHalfOpen: boolean;
  /** Most bytes the native write queue may hold; Infinity: no limit. */
  readonly maxQueuedBytes: number;
  /** What a write over {@link maxQueuedBytes} does. */
  readonly queueLimitPolicy: QueueLimitPolicy;
}

/**
 * What a write that would take a connection's queue over its `maxQueuedBytes` does:
 * `'destroy'` closes the connection with `IOMUX_QUEUE_FULL` (a client that stopped reading is
 * dropped, the uWebSockets.js way); `'refuse'` sends nothing and throws `IOMUX_QUEUE_FULL`,
 * leaving the connection open.
 */
export type QueueLimitPolicy = 'destroy' | 'refuse';

const QUEUE_LIMIT_POLICIES: readonly string[] = ['destroy', 'refuse'];

/** The queue limit a caller asked for, checked; `fallback` for what is not given. */
export function checkQueueLimit(
  call: string,
  maxQueuedBytes: unknown,
  policy: unknown,
  fallback: ConnectionSettings,
): { maxQueuedBytes: number; queueLimitPolicy: QueueLimitPolicy } {
  if (
    maxQueuedBytes !== undefined &&
    maxQueuedBytes !== Infinity &&
    (typeof maxQueuedBytes !== 'number' || !Number.isInteger(maxQueuedBytes) || maxQueuedBytes < 1)
  ) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${call}: maxQueuedBytes must be an integer >= 1 or Infinity, got ${typeof maxQueuedBytes === 'number' ? maxQueuedBytes : typeof maxQueuedBytes}`,
    );
  }
  if (
    policy !== undefined &&
    (typeof policy !== 'string' || !QUEUE_LIMIT_POLICIES.includes(policy))
  )
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${call}: queueLimitPolicy must be 'destroy' or 'refuse', got ${typeof policy === 'string' ? policy : typeof policy}`,
    );
  return {
    maxQueuedBytes: maxQueuedBytes ?? fallback.maxQueuedBytes,
    queueLimitPolicy: (policy as QueueLimitPolicy | undefined) ?? fallback.queueLimitPolicy,
  };
}

/** Events of a {@link Connection}. */
export interface ConnectionEvents {
  /**
   * Bytes arrived. The Buffer is a view into the backend's read arena, with no copy made. By default
   * (`readBuffers: 'owned'`) keep it as long as you like; with `readBuffers: 'transient'` it is
   * valid only until the listener returns (see the reactor option `readBuffers`).
   */
  data: [chunk: Buffer];
  /** The write queue fell below the high-water mark after `write()` returned false. */
  drain: [];
  /** The peer finished sending (FIN). Unless `allowHalfOpen`, iomux then ends our side too. */
  end: [];
  /** Emitted only when a listener is attached; the same error is passed to `close`. */
  error: [error: IomuxError];
  /** The socket is closed; `error` is set when it closed because of one (reset, ...). */
  close: [error: IomuxError | undefined];
  /**
   * No byte was read or written for the time set with {@link Connection.setTimeout}. The
   * connection stays open: end or destroy it yourself, as with node:net.
   */
  timeout: [];
}

/**
 * One TCP connection of a reactor. Per-connection state lives in native memory; this object is
 * the only JS object a connection costs.
 *
 * @example
 * ```ts
 * conn.on('data', (chunk) => {
 *   if (!conn.write(chunk)) conn.pause(); // backpressure: queue above the high-water mark
 * });
 * conn.on('drain', () => conn.resume());
 * ```
 */
export class Connection extends EventEmitter<ConnectionEvents> {
  /** Bytes received so far. */
  bytesRead = 0;
  /** Bytes accepted by `write()` so far (sent or queued). */
  bytesWritten = 0;
  /** The error the connection closed with, if any. */
  error: IomuxError | undefined;

  private readonly host: ConnectionHost;
  private settings: ConnectionSettings;
  private idle: IdleTimeout | undefined;
  /** The remote address, read once at creation; the local one once asked for. */
  private readonly peer: SocketAddress | undefined;
  private local: SocketAddress | undefined;
  private queuedBytes = 0;
  private needDrain = false;
  private paused = false;
  private ending = false;
  /** Who ended the writable side: the user's end(), the peer's FIN, or reactor.close(). */
  private endedBy: 'user' | 'peer' | 'reactor' | undefined;
  /** The first write after the end, reported once; 'close' carries it. */
  private writeAfterEndError: IomuxError | undefined;
  private writeAfterEndEmitted = false;
  private closeEmitted = false;
  private remoteEnded = false;
  private isClosed = false;
  /**
   * Events not yet emitted, in arrival order: those that arrived before a `connect()`
   * continuation could attach listeners, and those that wait for resume() (the rest of a batch
   * after pause(), bytes a runtime fallback carried over while paused, and what followed them).
   * Undefined when nothing is held.
   */
  private held: HeldEvent[] | undefined;
  /** True from a connect()'s resolution until its continuation had its chance to listen. */
  private holdingEarly = false;

  /** Backend id of the socket; ids are reused after close, and change on a runtime fallback. */
  id: number;

  /** @internal */
  constructor(host: ConnectionHost, id: number, settings: ConnectionSettings) {
    super();
    this.host = host;
    this.id = id;
    this.settings = settings;
    // Read now: after the socket closed (a 'close' handler) the kernel can no longer tell.
    this.peer = ipAddress(host.native.address(id, true));
  }

  /**
   * True when the connection stays half-open after the peer's FIN (set per listener, per connect
   * or reactor-wide): `'end'` is then answered by your own `end()`.
   */
  get allowHalfOpen(): boolean {
    return this.settings.allowHalfOpen;
  }

  /** The idle timeout set with {@link setTimeout} in ms; 0 when none. */
  get timeout(): number {
    return this.idle?.ms ?? 0;
  }

  /**
   * Emits `'timeout'` after `ms` milliseconds without a byte read or written, as node:net's
   * `socket.setTimeout()`: the connection is not closed, and the next activity starts a new
   * period. `0` turns the timeout off. `callback`, if given, is added as a `'timeout'` listener.
   * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` when `ms` is not a number >= 0.
   * @example
   * ```ts
   * conn.setTimeout(30_000, () => conn.end()); // drop clients idle for 30 s
   * ```
   */
  setTimeout(ms: number, callback?: () => void): this {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > 2 ** 31 - 1) {
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        `setTimeout: ms must be a number from 0 to ${2 ** 31 - 1}, got ${String(ms)}`,
      );
    }
    if (callback !== undefined && typeof callback !== 'function')
      throw new IomuxError('IOMUX_INVALID_ARGUMENT', 'setTimeout: callback must be a function');
    this.idle?.close();
    this.idle = undefined;
    if (ms > 0 && !this.isClosed) {
      this.idle = new IdleTimeout(ms, () => {
        if (!this.isClosed) this.emit('timeout');
      });
    }
    if (callback !== undefined) {
      if (ms === 0) this.removeListener('timeout', callback);
      else this.once('timeout', callback);
    }
    return this;
  }

  /** @internal The kind of entry in the reactor's socket table. */
  // A getter keeps the kind on the prototype: no field per socket object.
  // eslint-disable-next-line @typescript-eslint/class-literal-property-style
  get socketKind(): 'connection' {
    return 'connection';
  }

  /**
   * True when the connection may call the backend: open, and its id still its own. Backends
   * reuse ids; if the reactor's table no longer maps the id to this object (its close was lost),
   * the object is closed here instead of reaching another client's socket.
   */
  private usable(): boolean {
    if (this.isClosed) return false;
    if (this.host.owns(this)) return true;
    this.finish(
      new IomuxError('IOMUX_SOCKET_CLOSED', `connection ${this.id} is no longer open`),
      true,
    );
    return false;
  }

  /** Bytes waiting in the native write queue, as of the last write or drain. */
  get writableLength(): number {
    return this.queuedBytes;
  }

  /** True once `end()` was called or the connection closed: `write()` is no longer allowed. */
  get writableEnded(): boolean {
    return this.ending || this.isClosed;
  }

  /** True once the peer has sent FIN. */
  get readableEnded(): boolean {
    return this.remoteEnded;
  }

  /** True once the socket is closed. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** True while reading is paused. */
  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Remote IP address; still readable in `'close'` handlers. Undefined on a Unix domain socket,
   * as in node:net.
   */
  get remoteAddress(): string | undefined {
    return this.peer?.[0];
  }

  /** Remote port; still readable in `'close'` handlers. */
  get remotePort(): number | undefined {
    return this.peer?.[1];
  }

  /** `'IPv4'` or `'IPv6'`, the family of the remote address. */
  get remoteFamily(): 'IPv4' | 'IPv6' | undefined {
    return this.peer === undefined ? undefined : this.peer[2] === 4 ? 'IPv4' : 'IPv6';
  }

  /**
   * Local IP address; readable after close once it was read while open. Undefined on a Unix
   * domain socket.
   */
  get localAddress(): string | undefined {
    return this.localEnd()?.[0];
  }

  /** Local port; readable after close once it was read while open. */
  get localPort(): number | undefined {
    return this.localEnd()?.[1];
  }

  /**
   * Sends `data`: what the kernel takes goes out at once, the rest is copied to the native queue
   * and sent in order. Returns false when the queue has reached the high-water mark; wait for
   * `'drain'` before writing more. Writing to a closed connection returns false and sends nothing.
   *
   * A write after the writable side ended (your `end()`, or iomux's own end after the peer's FIN
   * when `allowHalfOpen` is false) sends nothing and returns false; as with node:net it is
   * reported, not silently dropped: the first such write emits `'error'` with
   * `IOMUX_WRITE_AFTER_END` (on the next tick, when a listener is attached), and `'close'` later
   * carries the same error. Unlike node:net the connection is not destroyed by it: what was
   * written before the end is still flushed, then FIN is sent.
   * @example
   * ```ts
   * conn.on('error', (err) => {
   *   if (err.code === 'IOMUX_WRITE_AFTER_END') upstream.destroy(); // the client went away
   * });
   * ```
   */
  write(data: Uint8Array | string): boolean {
    // A graceful end may already have closed the socket (the peer had ended): still reported.
    if (this.ending) return this.writeAfterEnd('write');
    if (!this.usable()) return false;
    const buffer = bytesOf(data, 'write: data');
    if (!this.withinQueueLimit(buffer.byteLength)) return false;
    return this.afterWrite(this.host.native.write(this.id, buffer), buffer.byteLength);
  }

  /**
   * Sends several chunks with one vectored write; same contract as {@link write}.
   * @example
   * ```ts
   * // header and body in one system call, without concatenating them first
   * conn.writev([header, body]);
   * ```
   */
  writev(chunks: readonly Uint8Array[]): boolean {
    if (this.ending) return this.writeAfterEnd('writev');
    if (!this.usable()) return false;
    let total = 0;
    for (let i = 0; i < chunks.length; i++) {
      const chunk: unknown = chunks[i];
      if (!(chunk instanceof Uint8Array)) throw notBytes(chunk, `writev: chunks[${i}]`);
      total += chunk.byteLength;
    }
    if (!this.withinQueueLimit(total)) return false;
    if (chunks.length <= MAX_WRITEV_BUFFERS)
      return this.afterWrite(this.host.native.writev(this.id, chunks), total);
    // The native call takes at most MAX_WRITEV_BUFFERS buffers; larger lists go in slices, in order.
    let queued = 0;
    for (let start = 0; start < chunks.length; start += MAX_WRITEV_BUFFERS) {
      queued = this.host.native.writev(this.id, chunks.slice(start, start + MAX_WRITEV_BUFFERS));
      if (queued < 0) break;
    }
    return this.afterWrite(queued, total);
  }

  /**
   * @internal Before reactor.broadcast()'s native write of `bytes`: 'write' when it may go out,
   * 'skip' for a closed connection or one whose writable side ended (a broadcast reaches whoever
   * is still open, so nothing is reported), 'foreign' for another reactor's, and over
   * `maxQueuedBytes` what write() would do: 'refused' under 'refuse' (nothing thrown), 'destroyed'
   * under 'destroy'.
   */
  admitBroadcast(
    host: ConnectionHost,
    bytes: number,
  ): 'write' | 'skip' | 'foreign' | 'refused' | 'destroyed' {
    if (this.host !== host) return 'foreign';
    if (this.ending || !this.usable()) return 'skip';
    const over = this.overQueueLimit(bytes);
    if (over === undefined) return 'write';
    if (this.settings.queueLimitPolicy === 'refuse') return 'refused';
    this.destroy(over);
    return 'destroyed';
  }

  /**
   * @internal The native broadcast wrote `bytes` here and left `queued` (or -errno): accounted as
   * a write() of them would be.
   */
  broadcastWritten(queued: number, bytes: number): 'written' | 'backpressured' | 'failed' {
    if (this.afterWrite(queued, bytes)) return 'written';
    return queued < 0 ? 'failed' : 'backpressured';
  }

  /** Reports a write after the writable side ended (see {@link write}); always false. */
  private writeAfterEnd(call: 'write' | 'writev'): false {
    // reactor.close() ended it: the user asked for everything to close, nothing to report. Once
    // 'close' was emitted nothing more is reported either (node:net: writes after destroy).
    if (this.endedBy === 'reactor' || this.writeAfterEndError !== undefined || this.closeEmitted)
      return false;
    const why =
      this.endedBy === 'user'
        ? 'after end()'
        : 'after the peer ended (allowHalfOpen is false, so iomux ended this side)';
    const error = new IomuxError(
      'IOMUX_WRITE_AFTER_END',
      `${call} ${why} on connection ${this.id}: the data was not sent`,
      { syscall: call },
    );
    this.writeAfterEndError = error;
    if (this.isClosed) {
      this.error ??= error; // the pending 'close' reports it (see finish)
      return false;
    }
    process.nextTick(() => {
      this.emitWriteAfterEnd();
    });
    return false;
  }

  /** Emits the write-after-end error once, before 'close' if both are pending. */
  private emitWriteAfterEnd(): void {
    if (this.writeAfterEndEmitted) return;
    this.writeAfterEndEmitted = true;
    if (this.listenerCount('error') > 0) this.emit('error', this.writeAfterEndError!);
  }

  /**
   * The bytes given to the kernel but not sent yet at most (the native queue is only measured at
   * writes and drains, and only shrinks in between), plus `bytes`, against `maxQueuedBytes`:
   * false when the write must not go out (the connection was destroyed under 'destroy').
   * @throws {@link IomuxError} `IOMUX_QUEUE_FULL` under 'refuse'.
   */
  private withinQueueLimit(bytes: number): boolean {
    const error = this.overQueueLimit(bytes);
    if (error === undefined) return true;
    if (this.settings.queueLimitPolicy === 'refuse') throw error;
    this.destroy(error);
    return false;
  }

  /** The `IOMUX_QUEUE_FULL` error (counted) when `bytes` more would exceed `maxQueuedBytes`. */
  private overQueueLimit(bytes: number): IomuxError | undefined {
    const limit = this.settings.maxQueuedBytes;
    if (this.queuedBytes + bytes <= limit) return undefined;
    this.host.noteQueueLimit();
    return new IomuxError(
      'IOMUX_QUEUE_FULL',
      `connection ${this.id}: ${this.queuedBytes} bytes queued + ${bytes} would exceed maxQueuedBytes (${limit})`,
    );
  }

  /**
   * Sets this connection's limit on queued bytes (over the listener's or connect()'s) and what a
   * write over it does (see {@link QueueLimitPolicy}). `Infinity` removes the limit.
   * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for a bad limit or policy.
   * @example
   * ```ts
   * conn.setQueueLimit(1 << 20, 'destroy'); // drop a client that falls 1 MiB behind
   * ```
   */
  setQueueLimit(maxQueuedBytes: number, policy: QueueLimitPolicy = 'destroy'): this {
    const limit = checkQueueLimit('setQueueLimit', maxQueuedBytes, policy, this.settings);
    this.settings = { ...this.settings, ...limit };
    return this;
  }

  /** The most bytes this connection's write queue may hold (Infinity: no limit). */
  get maxQueuedBytes(): number {
    return this.settings.maxQueuedBytes;
  }

  /** What a write over {@link maxQueuedBytes} does: `'destroy'` or `'refuse'`. */
  get queueLimitPolicy(): QueueLimitPolicy {
    return this.settings.queueLimitPolicy;
  }

  private afterWrite(queued: number, bytes: number): boolean {
    if (queued < 0) {
      const error = socketError(queued, 'write');
      // EBADF while the id is still ours: the backend closed the socket earlier in this batch
      // (a 'drain' or 'data' handler is writing) and its CLOSE, naming the real cause, comes
      // next in the same dispatch. EBADF stands only if none did.
      if (error.code === 'EBADF') {
        setImmediate(() => {
          this.destroy(error);
        });
      } else {
        // Reset, not FIN: after a FIN the peer would take the bytes it got for the whole stream.
        if (this.host.owns(this)) this.host.native.setOption(this.id, 'lingerReset', 1);
        this.destroy(error);
      }
      return false;
    }
    this.bytesWritten += bytes;
    this.host.noteQueued(queued - this.queuedBytes);
    this.queuedBytes = queued;
    this.idle?.touch();
    if (queued >= this.host.highWaterMark) {
      this.needDrain = true;
      this.host.noteBackpressure();
      return false;
    }
    return true;
  }

  /**
   * Half-closes: sends `data` if given, flushes everything queued, then sends FIN. The socket
   * closes once the peer has ended too.
   * @example
   * ```ts
   * conn.end('bye\n'); // sent after everything queued, then FIN
   * conn.once('close', () => console.log('both sides done'));
   * ```
   */
  end(data?: Uint8Array | string): void {
    if (this.isClosed || this.ending) return;
    this.endedBy = 'user';
    this.shutdown(data);
  }

  /** @internal Ends our side on the reactor's behalf: `'reactor'` from close(), or the peer's FIN. */
  endByReactor(reason: 'peer' | 'reactor' = 'reactor'): void {
    if (this.isClosed || this.ending) return;
    this.endedBy = reason;
    this.shutdown(undefined);
  }

  private shutdown(data: Uint8Array | string | undefined): void {
    if (data !== undefined) this.write(data);
    if (this.closed) return; // the write failed and destroyed the connection
    this.ending = true;
    if (!this.usable()) return;
    const result = this.host.native.shutdown(this.id);
    if (result === 1) this.finish(undefined, true);
    else if (result < 0) this.finish(socketError(result, 'shutdown'), true);
  }

  /** Closes at once, dropping queued writes. `error`, if given, is reported to the listeners. */
  destroy(error?: IomuxError): void {
    if (this.isClosed) return;
    if (this.host.owns(this)) this.host.native.destroy(this.id);
    this.finish(error, true);
  }

  /**
   * Turns Nagle's algorithm off (`true`, iomux's default for every connection) or on (`false`:
   * small writes are coalesced while an ACK is outstanding). No-op once closed.
   * @throws {@link IomuxError} with the errno when the kernel refuses.
   */
  setNoDelay(noDelay = true): this {
    this.setOption('noDelay', noDelay ? 1 : 0);
    return this;
  }

  /**
   * Turns TCP keep-alive probes on or off, as node:net: with `initialDelayMs` > 0 the first probe
   * goes out after that much idle time (whole seconds, at least 1; 0 keeps the system default).
   * No-op once closed.
   * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for a negative delay; the errno when the
   * kernel refuses.
   * @example
   * ```ts
   * conn.setKeepAlive(true, 60_000); // probe a peer silent for a minute
   * ```
   */
  setKeepAlive(enable = false, initialDelayMs = 0): this {
    if (!Number.isFinite(initialDelayMs) || initialDelayMs < 0) {
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        `setKeepAlive: initialDelayMs must be a number >= 0, got ${String(initialDelayMs)}`,
      );
    }
    this.setOption('keepAlive', enable ? 1 : 0);
    if (enable && initialDelayMs > 0)
      this.setOption('keepAliveIdle', Math.max(1, Math.floor(initialDelayMs / 1000)));
    return this;
  }

  /** Sets the kernel's receive buffer (SO_RCVBUF); Linux doubles what it is given. */
  setRecvBufferSize(bytes: number): this {
    this.setOption('recvBufferSize', checkBufferSize('setRecvBufferSize', bytes));
    return this;
  }

  /** Sets the kernel's send buffer (SO_SNDBUF); Linux doubles what it is given. */
  setSendBufferSize(bytes: number): this {
    this.setOption('sendBufferSize', checkBufferSize('setSendBufferSize', bytes));
    return this;
  }

  /** The kernel's receive buffer size in bytes (SO_RCVBUF); undefined once closed. */
  getRecvBufferSize(): number | undefined {
    return this.getOption('recvBufferSize');
  }

  /** The kernel's send buffer size in bytes (SO_SNDBUF); undefined once closed. */
  getSendBufferSize(): number | undefined {
    return this.getOption('sendBufferSize');
  }

  /** True while Nagle's algorithm is off (TCP_NODELAY); undefined once closed. */
  get noDelay(): boolean | undefined {
    const value = this.getOption('noDelay');
    return value === undefined ? undefined : value === 1;
  }

  /** True while keep-alive probes are on (SO_KEEPALIVE); undefined once closed. */
  get keepAlive(): boolean | undefined {
    const value = this.getOption('keepAlive');
    return value === undefined ? undefined : value === 1;
  }

  /**
   * Closes at once with a TCP RST instead of a FIN (SO_LINGER 0), dropping queued writes, as
   * node:net's `resetAndDestroy()`: the peer sees `ECONNRESET`, so a proxy can pass a reset on.
   * `'close'` follows without an error.
   * @example
   * ```ts
   * upstream.on('close', (err) => {
   *   if (err?.code === 'ECONNRESET') client.resetAndDestroy();
   * });
   * ```
   */
  resetAndDestroy(): this {
    if (this.isClosed) return this;
    if (this.host.owns(this)) this.host.native.setOption(this.id, 'lingerReset', 1);
    this.destroy();
    return this;
  }

  private setOption(name: string, value: number): void {
    if (!this.usable()) return;
    const rc = this.host.native.setOption(this.id, name, value);
    if (rc < 0) throw socketError(rc, 'setsockopt', name);
  }

  private getOption(name: string): number | undefined {
    if (!this.usable()) return undefined;
    const value = this.host.native.getOption(this.id, name);
    return value < 0 ? undefined : value;
  }

  /**
   * Reads the connection with `for await`: each chunk in order, with reading paused while the
   * loop body runs (backpressure). The loop ends at the peer's FIN, and throws the error the
   * connection closed with (`ECONNRESET`, ...). Leaving the loop early destroys the connection,
   * as node's readable streams do. Do not mix with your own `'data'` listener.
   * @example
   * ```ts
   * for await (const chunk of conn) await store.append(chunk); // no more reads while appending
   * ```
   */
  [Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    return readChunks(this);
  }

  /**
   * Stops reading; the kernel buffers (and then the peer) hold further data.
   * @example
   * ```ts
   * conn.on('data', (chunk) => {
   *   conn.pause(); // no further 'data' until resume()
   *   void db.insert(chunk).then(() => conn.resume());
   * });
   * ```
   */
  pause(): void {
    if (this.paused || !this.usable()) return;
    this.paused = true;
    this.host.native.setReading(this.id, false);
  }

  /** Restarts reading after {@link pause}. */
  resume(): void {
    if (!this.paused || !this.usable()) return;
    this.paused = false;
    // Held events came before anything the backend reads from now on; a handler may pause (or
    // close) again, and what it did not take stays held.
    this.replayHeld();
    if (!this.isPaused && !this.closed) this.host.native.setReading(this.id, true);
  }

  /**
   * @internal The connection is about to resolve a `connect()`: events of the same batch (and
   * of batches before the continuation ran) are held, then replayed on setImmediate, which runs
   * after every microtask chain, so `await reactor.connect()` can attach listeners first.
   */
  holdEarlyEvents(): void {
    this.holdingEarly = true;
    this.held ??= [];
    setImmediate(() => {
      this.holdingEarly = false;
      this.replayHeld();
    });
  }

  /** Emits held events in order until none is left, or a handler paused (the rest stays held). */
  private replayHeld(): void {
    while (this.held !== undefined && !this.paused && !this.holdingEarly) {
      if (this.isClosed) {
        this.held = undefined; // destroyed by a handler: nothing more is emitted
        return;
      }
      const event = this.held.shift();
      if (this.held.length === 0) this.held = undefined;
      if (event === undefined) return; // the hold ended with nothing held
      try {
        if (event === 'end') this.endNow();
        else if (event === 'drain') this.drainNow();
        else if (event === 'settle') this.settleAfterMigratedEnd();
        else if ('closeErrno' in event) this.closeNow(event.closeErrno);
        else this.dataNow(event);
      } catch (err) {
        // A throwing listener costs no event: the rest is replayed on the next turn.
        if (this.held !== undefined)
          setImmediate(() => {
            this.replayHeld();
          });
        throw err;
      }
    }
    // Paused again with events left: a 'drain' among them does not wait for resume().
    if (this.held?.includes('drain') === true && !this.holdingEarly) {
      this.held = this.held.filter((event) => event !== 'drain');
      if (this.held.length === 0) this.held = undefined;
      this.drainNow();
    }
  }

  /**
   * @internal A runtime fallback carried `undelivered` bytes (and, with `eof`, the peer's END)
   * from the failed backend. While paused they wait for resume(), as the kernel would hold them.
   */
  onMigrated(undelivered: Buffer, eof: boolean): void {
    if (this.isClosed) return;
    if (this.paused) this.held ??= [];
    if (undelivered.length > 0) this.onData(undelivered);
    if (eof && !this.closed) {
      this.onEnd();
      if (this.held !== undefined) this.held.push('settle');
      else this.settleAfterMigratedEnd();
    }
  }

  /**
   * After a migrated END: the new backend never reads again (the old one saw EOF), so when our
   * side had already ended, asking for the shutdown again closes the socket once both are done.
   * A CLOSE waiting in the hold means the backend closed it already.
   */
  private settleAfterMigratedEnd(): void {
    if (this.isClosed || !this.ending) return;
    if (this.held?.some((event) => typeof event === 'object' && 'closeErrno' in event)) return;
    if (!this.usable()) return;
    const result = this.host.native.shutdown(this.id);
    if (result === 1) this.finish(undefined, true);
    else if (result < 0) this.finish(socketError(result, 'shutdown'), true);
  }

  /** @internal */
  onData(chunk: Buffer): void {
    // Held bytes outlive the batch: a transient chunk is copied first.
    if (this.held !== undefined) this.held.push(this.keepable(chunk));
    // Paused earlier in this batch: the batch's later bytes wait for resume(), in order.
    else if (this.paused) this.held = [this.keepable(chunk)];
    else this.dataNow(chunk);
  }

  /**
   * @internal `chunk`, or a copy of it when read chunks are transient (`readBuffers:
   * 'transient'`), for whoever keeps it past its listener (the stream adapter, async iteration).
   */
  keepable(chunk: Buffer): Buffer {
    return this.host.transientReads ? Buffer.from(chunk) : chunk;
  }

  private dataNow(chunk: Buffer): void {
    this.bytesRead += chunk.byteLength;
    this.idle?.touch();
    this.emit('data', chunk);
  }

  /**
   * @internal Held only until a `connect()` continuation could listen: pause() stops reading,
   * not the write side, and an application paused until 'drain' would otherwise never resume.
   */
  onDrain(): void {
    // Only the early hold delays a drain: one held for resume() would stall the writer that
    // paused reading until this very drain.
    if (this.holdingEarly) (this.held ??= []).push('drain');
    else this.drainNow();
  }

  private drainNow(): void {
    this.host.noteQueued(-this.queuedBytes);
    this.queuedBytes = 0;
    if (!this.needDrain) return;
    this.needDrain = false;
    this.emit('drain');
  }

  /** @internal */
  onEnd(): void {
    if (this.held !== undefined) this.held.push('end');
    else if (this.paused) this.held = ['end'];
    else this.endNow();
  }

  private endNow(): void {
    this.remoteEnded = true;
    // The reactor's own work first, as node:net does: a throwing 'end' listener must not leave
    // the connection half-open.
    if (!this.settings.allowHalfOpen) this.endByReactor('peer');
    this.emit('end');
  }

  /** @internal The backend failed and this socket could not be moved. */
  lost(error: IomuxError): void {
    this.finish(error, true);
  }

  /** @internal */
  onClose(errno: number): void {
    if (this.held !== undefined) this.held.push({ closeErrno: errno });
    else this.closeNow(errno);
  }

  private closeNow(errno: number): void {
    this.finish(errno === 0 ? undefined : socketError(errno, 'read'), false);
  }

  private localEnd(): SocketAddress | undefined {
    if (this.local !== undefined || !this.usable()) return this.local;
    this.local = ipAddress(this.host.native.address(this.id, false));
    return this.local;
  }

  // ---- Hand-off hook: the socket leaves this reactor with its state (transfer.ts, adopt.ts) ----

  /**
   * Moves this connection to a reactor in another thread: returns a {@link ConnectionTicket} to
   * post to it (`worker.postMessage(ticket)`), where `reactor.adopt(ticket)` makes it a normal
   * connection again. Bytes read but not consumed, queued writes and the paused state go with
   * it. This object then closes (`'close'` without error) and emits nothing else.
   * @throws {@link IomuxError} `IOMUX_SOCKET_CLOSED`, `IOMUX_INVALID_ARGUMENT` after `end()`;
   * `ETIMEDOUT` on io_uring when the kernel did not give the socket's operations back within
   * 50 ms (the connection then stays here and serves on).
   * @example
   * ```ts
   * // main thread: hand the connection to the worker that owns its room
   * conn.once('data', (hello) => workers[room(hello)].postMessage(conn.transfer()));
   * // in the worker:
   * parentPort.on('message', async (ticket) => serve(await reactor.adopt(ticket)));
   * ```
   */
  transfer(): ConnectionTicket {
    return ticketFor(this);
  }

  /** @internal Detaches the socket (its fd stays open) with what this object still held back. */
  detachForHandOff(): HandOff {
    const held = this.held ?? [];
    if (!this.usable() || held.some((event) => typeof event === 'object' && !isBuffer(event)))
      throw new IomuxError('IOMUX_SOCKET_CLOSED', `connection ${this.id} is closed`);
    if (this.ending)
      throw new IomuxError('IOMUX_INVALID_ARGUMENT', `connection ${this.id} has ended its side`);
    // Called from a handler mid-batch: this socket's later events of the batch go with it.
    const later = this.host.prepareHandOff(this.id, false);
    if (later.close !== undefined) {
      this.host.prepareHandOff(this.id, true);
      this.onClose(later.close);
      throw new IomuxError('IOMUX_SOCKET_CLOSED', `connection ${this.id} is closed`);
    }
    // A refusal (io_uring: ETIMEDOUT) leaves the connection serving: its later events stay in the
    // batch, delivered as if nothing had happened.
    const detached = this.host.native.detach(this.id, true);
    if (typeof detached === 'number') throw socketError(detached, 'detach');
    this.host.prepareHandOff(this.id, true);
    const heldBytes = [...held.filter(isBuffer), ...later.bytes];
    const paused = this.paused;
    this.held = undefined;
    this.finish(undefined, true);
    return { detached, heldBytes, heldEnd: held.includes('end') || later.end, paused };
  }

  private finish(closeError: IomuxError | undefined, deferred: boolean): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.error = closeError ?? this.writeAfterEndError;
    this.host.noteQueued(-this.queuedBytes); // what was still queued is dropped or in the kernel
    this.queuedBytes = 0;
    this.idle?.close();
    this.idle = undefined;
    this.host.forget(this);
    if (deferred)
      process.nextTick(() => {
        this.emitClose();
      });
    else this.emitClose();
  }

  /**
   * 'error' (when listened to) then 'close', with the error the socket closed with or, after a
   * clean close, the write after end (which a write in between the close and now may have set).
   */
  private emitClose(): void {
    const error = this.error;
    if (error !== undefined && error === this.writeAfterEndError) this.emitWriteAfterEnd();
    else if (error !== undefined && this.listenerCount('error') > 0) this.emit('error', error);
    this.closeEmitted = true;
    this.emit('close', error);
  }
}

function isBuffer(event: HeldEvent): event is Buffer {
  return Buffer.isBuffer(event);
}
