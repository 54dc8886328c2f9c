/**
 * What is a listening socket to the user? {@link Listener}: its bound address, an `error` event
 * for failed accepts, and `close()`. Accepting itself is the reactor's (reactor.ts).
 */
import { EventEmitter } from 'node:events';
import type { Connection, ConnectionSettings } from './connection.js';
import type { IomuxError } from './errors.js';

/** Events of a {@link Listener}. */
export interface ListenerEvents {
  /** Accepting failed (EMFILE, ...); the listener stays open. Emitted only when listened to. */
  error: [error: IomuxError];
  /** The listener is closed. */
  close: [];
}

/** What a listener needs from its reactor. */
export interface ListenerHost {
  /** Stops accepting on the listener's socket and drops it from the reactor's table. */
  closeListener(listener: Listener): void;
}

/** A listening socket. */
export class Listener extends EventEmitter<ListenerEvents> {
  private isClosed = false;

  /** @internal */
  constructor(
    private readonly reactor: ListenerHost,
    /** Backend id; it changes when a runtime fallback moves the listener to another backend. */
    public id: number,
    /** Bound address. */
    readonly host: string,
    /** Bound port (the real one when 0 was asked for). */
    readonly port: number,
    /** @internal */
    readonly onConnection: (connection: Connection) => void,
    /** @internal What every connection this listener accepts starts with. */
    readonly connectionSettings: ConnectionSettings,
  ) {
    super();
  }

  /** @internal The kind of entry in the reactor's socket table. */
  // A getter keeps the kind on the prototype: no field per socket object.
  // eslint-disable-next-line @typescript-eslint/class-literal-property-style
  get socketKind(): 'listener' {
    return 'listener';
  }

  /** True once closed. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Stops accepting; open connections are not affected. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.reactor.closeListener(this);
    process.nextTick(() => this.emit('close'));
  }
}
