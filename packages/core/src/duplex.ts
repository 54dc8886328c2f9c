/**
 * How does the Node stream ecosystem (node:tls, node:http, `ws`, `stream.pipeline`) run on an
 * iomux connection? {@link toDuplex} wraps a {@link Connection} in a standard `stream.Duplex`
 * with backpressure both ways, half-close, destroy and error propagation, and the socket-like
 * members node:http and node:tls look for.
 */
import { isIP } from 'node:net';
import { Duplex } from 'node:stream';
import type { Connection } from './connection.js';
import { IomuxError } from './errors.js';

/** Options of {@link toDuplex}. */
export interface DuplexOptions {
  /**
   * Keep the writable side open after the readable side ended (the peer's FIN), as node:net's
   * `allowHalfOpen`. Default: the connection's own setting; `true` needs a connection that allows
   * half-open (else `IOMUX_INVALID_ARGUMENT`).
   * @example
   * ```ts
   * // A request/response protocol whose client sends FIN after the request.
   * await reactor.listen({ port: 7001, allowHalfOpen: true }, (conn) => {
   *   const socket = toDuplex(conn, { allowHalfOpen: true });
   *   const parts: Buffer[] = [];
   *   socket.on('data', (chunk: Buffer) => parts.push(chunk));
   *   socket.on('end', () => socket.end(answer(Buffer.concat(parts)))); // still writable
   * });
   * ```
   */
  allowHalfOpen?: boolean;
  /** Bytes the readable side buffers before the connection is paused (default 64 KiB). */
  readableHighWaterMark?: number;
  /** Bytes the writable side buffers before `write()` returns false (default 16 KiB). */
  writableHighWaterMark?: number;
}

/** A local or remote address, as `net.Socket#address()` returns it. */
export interface SocketAddress {
  /** IP address. */
  address: string;
  /** `'IPv4'` or `'IPv6'`. */
  family: string;
  /** Port. */
  port: number;
}

/** The callback of a `_write` that waits for the connection's `'drain'`. */
type WriteCallback = (error?: Error | null) => void;

/** A connection closed before the bytes given to `write()` could be accepted. */
function closedError(connection: Connection): IomuxError {
  return (
    connection.error ??
    new IomuxError('IOMUX_SOCKET_CLOSED', `connection ${connection.id} closed before the write`)
  );
}

/**
 * A `stream.Duplex` over one iomux {@link Connection}, shaped like a `net.Socket` where node:http
 * and node:tls look. Create it with {@link toDuplex}.
 * @example
 * ```ts
 * import http from 'node:http';
 * import { createReactor, toDuplex } from '@iomux/core';
 *
 * const server = http.createServer((req, res) => res.end('hello\n'));
 * server.keepAliveTimeout = 5000; // works through ConnectionDuplex.setTimeout
 * const reactor = createReactor({ ioModel: 'auto' });
 * await reactor.listen({ port: 8080 }, (conn) => server.emit('connection', toDuplex(conn)));
 * ```
 */
export class ConnectionDuplex extends Duplex {
  /** The connection this stream reads from and writes to. */
  readonly connection: Connection;
  /** A `_write` whose bytes the connection queued above its high-water mark: called on 'drain'. */
  private waitingForDrain: WriteCallback | undefined;
  private remote: { address: string | undefined; port: number | undefined } | undefined;
  private local: { address: string | undefined; port: number | undefined } | undefined;

  /** @internal Use {@link toDuplex}. */
  constructor(connection: Connection, options: DuplexOptions = {}) {
    if (options.allowHalfOpen === true && !connection.allowHalfOpen) {
      // The connection ends its side itself at the peer's FIN: the stream could not stay open.
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        'toDuplex: allowHalfOpen needs a connection that allows it (set allowHalfOpen on its listen() or connect())',
      );
    }
    super({
      allowHalfOpen: options.allowHalfOpen ?? connection.allowHalfOpen,
      readableHighWaterMark: options.readableHighWaterMark ?? 64 * 1024,
      writableHighWaterMark: options.writableHighWaterMark,
    });
    this.connection = connection;
    connection.on('data', this.onData);
    connection.on('end', this.onEnd);
    connection.on('drain', this.onDrain);
    connection.on('close', this.onClose);
    connection.on('timeout', this.onTimeout);
    // An 'error' listener keeps the connection from throwing; the error reaches the stream
    // through 'close', which carries the same error.
    connection.on('error', ignoreError);
    if (connection.closed) this.onClose(connection.error);
  }

  private readonly onData = (chunk: Buffer): void => {
    // The readable buffer is full: stop reading until the consumer calls _read again.
    if (!this.push(this.connection.keepable(chunk))) this.connection.pause();
  };

  private readonly onEnd = (): void => {
    this.push(null);
  };

  private readonly onDrain = (): void => {
    const callback = this.waitingForDrain;
    this.waitingForDrain = undefined;
    callback?.();
  };

  private readonly onTimeout = (): void => {
    this.emit('timeout');
  };

  private readonly onClose = (error: IomuxError | undefined): void => {
    this.remember();
    const callback = this.waitingForDrain;
    this.waitingForDrain = undefined;
    if (error !== undefined) {
      callback?.(error);
      this.destroy(error);
      return;
    }
    // A clean close: the peer's FIN (if it did not come) is implied, and nothing more can be
    // written. The stream ends gracefully, so a consumer still reads what was buffered.
    callback?.(closedError(this.connection));
    if (!this.readableEnded) this.push(null);
    if (!this.writableEnded) this.end();
  };

  /** @internal */
  override _read(): void {
    this.connection.resume();
  }

  /** @internal */
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.send(() => this.connection.write(chunk), callback);
  }

  /** @internal */
  override _writev(
    chunks: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: WriteCallback,
  ): void {
    this.send(() => this.connection.writev(chunks.map((entry) => entry.chunk)), callback);
  }

  /**
   * The connection took the bytes (sent or queued below the high-water mark): done now. Queued
   * above it: done at 'drain'. Refused (closed, ended): done with the reason.
   */
  private send(write: () => boolean, callback: WriteCallback): void {
    const connection = this.connection;
    if (connection.closed) {
      callback(closedError(connection));
      return;
    }
    let accepted: boolean;
    try {
      accepted = write();
    } catch (err) {
      callback(err as Error);
      return;
    }
    if (accepted) callback();
    else this.refused(callback);
  }

  /** write() returned false: the bytes wait for 'drain', or were refused. */
  private refused(callback: WriteCallback): void {
    const connection = this.connection;
    if (connection.closed) callback(closedError(connection));
    else if (connection.writableEnded && connection.writableLength === 0)
      // Ended on the reactor's behalf (the peer's FIN without allowHalfOpen): nothing was sent.
      callback(
        new IomuxError('IOMUX_WRITE_AFTER_END', `connection ${connection.id} has ended its side`),
      );
    else this.waitingForDrain = callback;
  }

  /** @internal The writable side ended: flush, then FIN. */
  override _final(callback: (error?: Error | null) => void): void {
    if (!this.connection.closed) this.connection.end();
    callback();
  }

  /** @internal */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.remember();
    const connection = this.connection;
    connection.off('data', this.onData);
    connection.off('end', this.onEnd);
    connection.off('drain', this.onDrain);
    connection.off('close', this.onClose);
    connection.off('timeout', this.onTimeout);
    connection.off('error', ignoreError);
    const pending = this.waitingForDrain;
    this.waitingForDrain = undefined;
    if (!connection.closed) connection.destroy();
    pending?.(error ?? closedError(connection));
    callback(error);
  }

  /** Keeps the addresses for after the close, when the connection no longer has them. */
  private remember(): void {
    this.remote ??= {
      address: this.connection.remoteAddress,
      port: this.connection.remotePort,
    };
    this.local ??= { address: this.connection.localAddress, port: this.connection.localPort };
  }

  /** Remote IP address, as `net.Socket#remoteAddress`. */
  get remoteAddress(): string | undefined {
    this.remember();
    return this.remote?.address;
  }

  /** Remote port. */
  get remotePort(): number | undefined {
    this.remember();
    return this.remote?.port;
  }

  /** `'IPv4'` or `'IPv6'`, as `net.Socket#remoteFamily`. */
  get remoteFamily(): string | undefined {
    return familyOf(this.remoteAddress);
  }

  /** Local IP address. */
  get localAddress(): string | undefined {
    this.remember();
    return this.local?.address;
  }

  /** Local port. */
  get localPort(): number | undefined {
    this.remember();
    return this.local?.port;
  }

  /** Local address as `net.Socket#address()`: `{ address, family, port }`, or `{}` once closed. */
  address(): SocketAddress | Record<string, never> {
    const address = this.localAddress;
    const port = this.localPort;
    if (address === undefined || port === undefined) return {};
    return { address, family: familyOf(address) ?? 'IPv4', port };
  }

  /** Bytes received. */
  get bytesRead(): number {
    return this.connection.bytesRead;
  }

  /** Bytes accepted for sending (sent or queued). */
  get bytesWritten(): number {
    return this.connection.bytesWritten;
  }

  /** Always false: the connection is established before it is wrapped. */
  // Getters keep these on the prototype: no field per stream.
  // eslint-disable-next-line @typescript-eslint/class-literal-property-style
  get connecting(): boolean {
    return false;
  }

  /** Always false (see {@link connecting}). */
  // eslint-disable-next-line @typescript-eslint/class-literal-property-style
  get pending(): boolean {
    return false;
  }

  /**
   * `'open'`, `'readOnly'`, `'writeOnly'` or `'closed'`, as `net.Socket#readyState`.
   * @example
   * ```ts
   * const socket = toDuplex(conn, { allowHalfOpen: true });
   * socket.on('end', () => {
   *   socket.readyState; // 'writeOnly': the peer sent FIN, the reply can still be written
   *   socket.end('bye\n');
   * });
   * ```
   */
  get readyState(): 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.readable && this.writable) return 'open';
    if (this.readable) return 'readOnly';
    if (this.writable) return 'writeOnly';
    return 'closed';
  }

  /**
   * Emits `'timeout'` after `ms` without a byte read or written (the connection's idle timeout);
   * `0` turns it off. node:http's `server.timeout` and `keepAliveTimeout` work through this.
   * As with `net.Socket`, nothing is closed by the timeout itself: the handler decides.
   * @example
   * ```ts
   * const socket = toDuplex(conn);
   * socket.setTimeout(30_000, () => socket.destroy()); // drop a client idle for 30 s
   * ```
   */
  setTimeout(ms: number, callback?: () => void): this {
    this.connection.setTimeout(ms);
    if (callback !== undefined) {
      if (ms === 0) this.off('timeout', callback);
      else this.once('timeout', callback);
    }
    return this;
  }

  /** TCP_NODELAY, as `net.Socket#setNoDelay()` (`ws` calls it on every upgraded socket). */
  setNoDelay(noDelay = true): this {
    if (!this.connection.closed) this.connection.setNoDelay(noDelay);
    return this;
  }

  /** TCP keep-alive probes, as `net.Socket#setKeepAlive()` (node:http's agent calls it). */
  setKeepAlive(enable = false, initialDelayMs = 0): this {
    if (!this.connection.closed) this.connection.setKeepAlive(enable, initialDelayMs);
    return this;
  }

  /** Closes with a TCP RST instead of a FIN, as `net.Socket#resetAndDestroy()`. */
  resetAndDestroy(): this {
    this.connection.resetAndDestroy();
    this.destroy();
    return this;
  }

  /**
   * Ends the writable side and destroys the stream once it finished, as
   * `net.Socket#destroySoon()` (node:http calls it after a response without keep-alive).
   * Unlike `destroy()`, what was written before goes out first.
   * @example
   * ```ts
   * const socket = toDuplex(conn);
   * socket.write('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\n');
   * socket.destroySoon(); // flushed, then closed
   * ```
   */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  /**
   * The reactor, not each connection, holds Node's event loop open: these exist so code written
   * for `net.Socket` (node:http's agent calls them) runs unchanged.
   */
  ref(): this {
    return this;
  }

  /** See {@link ref}. */
  unref(): this {
    return this;
  }
}

/** Keeps an 'error' of the connection from throwing: the stream learns of it from 'close'. */
function ignoreError(): void {
  // The same error is the argument of 'close', handled by onClose.
}

function familyOf(address: string | undefined): string | undefined {
  if (address === undefined) return undefined;
  return isIP(address) === 6 ? 'IPv6' : 'IPv4';
}

/**
 * Wraps `connection` in a standard `stream.Duplex`, so node:tls, node:http, `ws` and
 * `stream.pipeline` run on it. Backpressure works both ways: a full readable buffer pauses the
 * connection, and a write the connection queued above its high-water mark completes at
 * `'drain'`. Every write callback is called, with an error if the connection closes first.
 * `end()` flushes and sends FIN; the peer's FIN ends the readable side (and, unless
 * `allowHalfOpen`, the writable side). Destroying either one destroys the other, with the error.
 *
 * The connection must not have other `'data'` listeners: the stream consumes it.
 * @example
 * ```ts
 * import { pipeline } from 'node:stream/promises';
 * await reactor.listen({ port: 7000 }, (conn) => {
 *   const socket = toDuplex(conn);
 *   void pipeline(socket, socket); // echo, with backpressure
 * });
 * ```
 */
export function toDuplex(connection: Connection, options?: DuplexOptions): ConnectionDuplex {
  return new ConnectionDuplex(connection, options);
}
