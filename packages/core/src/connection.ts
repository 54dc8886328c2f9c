import { EventEmitter } from 'node:events';
import type { NativeBackendHandle } from './backend.js';
import { IomuxError, socketError } from './errors.js';

/** Most buffers one native writev call takes (the native side's limit). */
const MAX_WRITEV_BUFFERS = 1024;

/**
 * A held event: bytes, the peer's END, a DRAIN, the CLOSE (its errno, in an object), or 'settle'
 * (after a migrated END: close if both sides are done).
 */
type HeldEvent = Buffer | 'end' | 'drain' | 'settle' | { closeErrno: number };

/** What a connection needs from its reactor. */
export interface ConnectionHost {
  /** The backend instance. */
  readonly native: NativeBackendHandle;
  /** Queued bytes at which write() returns false. */
  readonly highWaterMark: number;
  /** Keep our side open after the peer ends. */
  readonly allowHalfOpen: boolean;
  /** Counts a write() that returned false. */
  noteBackpressure(): void;
  /** Called once when the connection is closed, to drop it from the reactor's table. */
  forget(connection: Connection): void;
  /** True while the reactor's table maps the connection's id to this very object. */
  owns(connection: Connection): boolean;
}

/** Events of a {@link Connection}. */
export interface ConnectionEvents {
  /** Bytes arrived. The Buffer is a view into the batch's read slab; keep it as long as you like. */
  data: [chunk: Buffer];
  /** The write queue fell below the high-water mark after `write()` returned false. */
  drain: [];
  /** The peer finished sending (FIN). Unless `allowHalfOpen`, iomux then ends our side too. */
  end: [];
  /** Emitted only when a listener is attached; the same error is passed to `close`. */
  error: [error: IomuxError];
  /** The socket is closed; `error` is set when it closed because of one (reset, ...). */
  close: [error: IomuxError | undefined];
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
  private queuedBytes = 0;
  private needDrain = false;
  private paused = false;
  private ending = false;
  /** end() came from the user (not from reactor.close() or the peer's FIN). */
  private endedByUser = false;
  private remoteEnded = false;
  private isClosed = false;
  /**
   * Events not yet emitted, in arrival order: those that arrived before a `connect()`
   * continuation could attach listeners, and those that wait for resume() (bytes a runtime
   * fallback carried over while paused, and what followed them). Undefined when nothing is held.
   */
  private held: HeldEvent[] | undefined;
  /** True from a connect()'s resolution until its continuation had its chance to listen. */
  private holdingEarly = false;

  /** Backend id of the socket; ids are reused after close, and change on a runtime fallback. */
  id: number;

  /** @internal */
  constructor(host: ConnectionHost, id: number) {
    super();
    this.host = host;
    this.id = id;
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

  /** Remote IP address. */
  get remoteAddress(): string | undefined {
    return this.address(true)?.[0];
  }

  /** Remote port. */
  get remotePort(): number | undefined {
    return this.address(true)?.[1];
  }

  /** Local IP address. */
  get localAddress(): string | undefined {
    return this.address(false)?.[0];
  }

  /** Local port. */
  get localPort(): number | undefined {
    return this.address(false)?.[1];
  }

  /**
   * Sends `data`: what the kernel takes goes out at once, the rest is copied to the native queue
   * and sent in order. Returns false when the queue has reached the high-water mark; wait for
   * `'drain'` before writing more. Writing to a closed connection returns false and sends nothing.
   * @throws {@link IomuxError} `IOMUX_WRITE_AFTER_END` after `end()`.
   */
  write(data: Uint8Array | string): boolean {
    if (!this.usable()) return false;
    if (this.ending) {
      if (!this.endedByUser) return false; // the reactor is closing it: nothing more goes out
      throw new IomuxError('IOMUX_WRITE_AFTER_END', `write after end() on connection ${this.id}`);
    }
    const buffer = typeof data === 'string' ? Buffer.from(data) : data;
    return this.afterWrite(this.host.native.write(this.id, buffer), buffer.byteLength);
  }

  /** Sends several chunks with one vectored write; same contract as {@link write}. */
  writev(chunks: readonly Uint8Array[]): boolean {
    if (!this.usable()) return false;
    if (this.ending) {
      if (!this.endedByUser) return false;
      throw new IomuxError('IOMUX_WRITE_AFTER_END', `writev after end() on connection ${this.id}`);
    }
    let total = 0;
    for (const chunk of chunks) total += chunk.byteLength;
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
        this.destroy(error);
      }
      return false;
    }
    this.bytesWritten += bytes;
    this.queuedBytes = queued;
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
   */
  end(data?: Uint8Array | string): void {
    if (this.isClosed || this.ending) return;
    this.endedByUser = true;
    this.shutdown(data);
  }

  /** @internal Ends our side on the reactor's behalf (close(), or the peer ended first). */
  endByReactor(): void {
    if (this.isClosed || this.ending) return;
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

  /** Stops reading; the kernel buffers (and then the peer) hold further data. */
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
    if (this.held !== undefined) this.held.push(chunk);
    else this.dataNow(chunk);
  }

  private dataNow(chunk: Buffer): void {
    this.bytesRead += chunk.byteLength;
    this.emit('data', chunk);
  }

  /**
   * @internal Held only until a `connect()` continuation could listen: pause() stops reading,
   * not the write side, and an application paused until 'drain' would otherwise never resume.
   */
  onDrain(): void {
    if (this.holdingEarly) this.held!.push('drain');
    else this.drainNow();
  }

  private drainNow(): void {
    this.queuedBytes = 0;
    if (!this.needDrain) return;
    this.needDrain = false;
    this.emit('drain');
  }

  /** @internal */
  onEnd(): void {
    if (this.held !== undefined) this.held.push('end');
    else this.endNow();
  }

  private endNow(): void {
    this.remoteEnded = true;
    // The reactor's own work first, as node:net does: a throwing 'end' listener must not leave
    // the connection half-open.
    if (!this.host.allowHalfOpen) this.endByReactor();
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

  private address(peer: boolean): [string, number, 4 | 6] | undefined {
    if (!this.usable()) return undefined;
    const result = this.host.native.address(this.id, peer);
    return typeof result === 'number' ? undefined : result;
  }

  private finish(error: IomuxError | undefined, deferred: boolean): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.error = error;
    this.host.forget(this);
    const emitClose = (): void => {
      if (error !== undefined && this.listenerCount('error') > 0) this.emit('error', error);
      this.emit('close', error);
    };
    if (deferred) process.nextTick(emitClose);
    else emitClose();
  }
}
