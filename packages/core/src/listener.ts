/**
 * What is a listening socket to the user? {@link Listener}: its bound address, an `error` event
 * for failed accepts, and `close()`. Accepting itself is the reactor's (reactor.ts).
 */
import { EventEmitter } from 'node:events';
import { lstatSync, unlinkSync } from 'node:fs';
import type { Connection, ConnectionSettings } from './connection.js';
import { IomuxError } from './errors.js';

/**
 * What `listen()` calls with each accepted connection. It may be async: a returned promise that
 * rejects is reported (see {@link ListenerEvents.error}); any other return value is ignored.
 */
export type ConnectionHandler = (connection: Connection) => unknown;

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** Events of a {@link Listener}. */
export interface ListenerEvents {
  /**
   * Accepting failed (EMFILE, ...; the listener stays open), or the promise returned by the
   * `onConnection` handler rejected (`IOMUX_HANDLER_REJECTED`, the reason as `cause`; that
   * connection is destroyed with the same error). Emitted only when listened to; a rejection
   * nobody listens to here goes to the reactor's `'error'`, else it is an uncaught exception.
   */
  error: [error: IomuxError];
  /** The listener is closed. */
  close: [];
}

/** @internal What a listener needs from its reactor (the Reactor implements it). */
export interface ListenerHost {
  /** Stops accepting on the listener's socket and drops it from the reactor's table. */
  closeListener(listener: Listener): void;
  /** Reports an error nobody handled on the listener: the reactor's `'error'`, else uncaught. */
  reportError(error: IomuxError): void;
}

/**
 * A listening socket, from {@link Reactor.listen}.
 * @example
 * ```ts
 * import { createReactor } from '@iomux/core';
 *
 * const reactor = createReactor({ ioModel: 'auto' });
 * const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
 *   conn.on('data', (data) => conn.write(data));
 * });
 * console.log(`echo on ${listener.address}`); // port 0 asked for a free one: e.g. 127.0.0.1:40123
 * listener.on('error', (err) => console.warn(`accept failed: ${err.code}`)); // EMFILE, ...
 * ```
 */
export class Listener extends EventEmitter<ListenerEvents> {
  private isClosed = false;

  /** @internal */
  constructor(
    private readonly reactor: ListenerHost,
    /** Backend id; it changes when a runtime fallback moves the listener to another backend. */
    public id: number,
    /** Bound address (the path, for a Unix socket). */
    readonly host: string,
    /** Bound port (the real one when 0 was asked for); 0 for a Unix socket. */
    readonly port: number,
    private readonly onConnection: ConnectionHandler,
    /** @internal What every connection this listener accepts starts with. */
    readonly connectionSettings: ConnectionSettings,
    /** The Unix socket path listened on; undefined for TCP. */
    readonly path?: string,
  ) {
    super();
  }

  /** @internal The kind of entry in the reactor's socket table. */
  // A getter keeps the kind on the prototype: no field per socket object.
  // eslint-disable-next-line @typescript-eslint/class-literal-property-style
  get socketKind(): 'listener' {
    return 'listener';
  }

  /**
   * @internal Hands an accepted connection to the user's handler. A promise it returns that
   * rejects destroys that connection and is reported (see {@link ListenerEvents.error}); a
   * synchronous throw propagates to the batch, which reports it as uncaught.
   */
  accept(connection: Connection): void {
    const result = this.onConnection(connection);
    if (!isPromiseLike(result)) return;
    result.then(undefined, (reason: unknown) => {
      this.handlerRejected(connection, reason);
    });
  }

  private handlerRejected(connection: Connection, reason: unknown): void {
    const message = reason instanceof Error ? reason.message : String(reason);
    const error = new IomuxError(
      'IOMUX_HANDLER_REJECTED',
      `onConnection of the listener on ${this.address} rejected: ${message}`,
      { cause: reason },
    );
    connection.destroy(error);
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else this.reactor.reportError(error);
  }

  /**
   * `host:port`, or the path of a Unix socket: what error messages name.
   * @example
   * ```ts
   * const tcp = await reactor.listen({ host: '::1', port: 8080 }, (conn) => conn.end());
   * tcp.address; // '::1:8080'
   * const unix = await reactor.listen({ path: '/tmp/app.sock' }, (conn) => conn.end());
   * unix.address; // '/tmp/app.sock'
   * ```
   */
  get address(): string {
    return this.path ?? `${this.host}:${this.port}`;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Stops accepting; open connections are not affected. A Unix socket's file is removed, as
   * node:net does (only if it still is a socket: a file put there since is left alone).
   * `'close'` follows on the next tick. Safe to call more than once.
   * @example
   * ```ts
   * // Graceful shutdown: take no new connections, let the open ones finish, then close.
   * process.once('SIGTERM', () => {
   *   listener.close();
   *   const wait = setInterval(() => {
   *     if (reactor.connectionCount() > 0) return;
   *     clearInterval(wait);
   *     void reactor.close();
   *   }, 100);
   * });
   * ```
   */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.reactor.closeListener(this);
    if (this.path !== undefined) removeSocketFile(this.path);
    process.nextTick(() => this.emit('close'));
  }
}

/** Unlinks the socket file at `path`; abstract names (leading NUL) have no file. */
function removeSocketFile(path: string): void {
  if (path.startsWith('\0')) return;
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // Already gone (or its directory is): there is nothing left to remove.
  }
}
