/**
 * How do a reactor's sockets move to another backend when the one serving them fails?
 * {@link migrateSockets} detaches every socket from the failed engine and adopts it into the
 * successor, building a NEW socket table that the reactor swaps in only at the end: a socket that
 * cannot move is closed through the old table (by object), so neither table is ever corrupted.
 */
import { closeSync } from 'node:fs';
import type { NativeBackendHandle, NativeEventCodes } from './backend.js';
import { Connection, type ConnectionSettings } from './connection.js';
import { socketError, type IomuxError } from './errors.js';
import { Listener } from './listener.js';
import { SocketTable } from './socket-table.js';
import type { UdpSocket } from './udp.js';

/** A connect that has not completed yet. */
export interface PendingConnect {
  /** Table kind. */
  readonly socketKind: 'pending';
  /** Backend id of the socket; a runtime fallback changes it. */
  id: number;
  /**
   * `host:port` connected to (then ` from ip:port` when connect() bound a local end), for error
   * messages.
   */
  readonly address: string;
  /** Completes the connect. */
  resolve: (connection: Connection) => void;
  /** Fails the connect. */
  reject: (error: IomuxError) => void;
  /** What the connection starts with once established. */
  readonly settings: ConnectionSettings;
}

/** Everything a reactor's socket table holds. */
export type Slot = Connection | Listener | UdpSocket | PendingConnect;

/** The outcome of {@link migrateSockets}. */
export interface Migration {
  /** The successor's table, to swap in. */
  table: SocketTable<Slot>;
  /** Sockets that moved. */
  moved: number;
  /** Sockets that could not move and were closed with the error. */
  lost: number;
  /** Deliveries (drain, carried bytes, END) to run once the table is swapped in. */
  followUps: (() => void)[];
}

/**
 * Moves every socket of `table` from `failed` to `successor`. `lose(id, slot, error)` closes a socket
 * that cannot move; it runs while `table` is still the reactor's table, so it removes the right
 * entry. `announce(id, listenerId)` makes a connection the failed backend accepted but never
 * announced (a completion backend's accept in flight at the detach), now adopted by the successor,
 * a listener's new connection; it runs once the successor's table is the reactor's.
 */
const EMPTY = new Uint8Array(0);

export function migrateSockets(
  table: SocketTable<Slot>,
  failed: NativeBackendHandle,
  successor: NativeBackendHandle,
  codes: NativeEventCodes,
  lose: (id: number, slot: Slot, error: IomuxError) => void,
  announce: (id: number, listenerId: number) => void,
): Migration {
  const next = new SocketTable<Slot>();
  const followUps: (() => void)[] = [];
  let moved = 0;
  let lost = 0;
  for (const [id, slot] of table.entries()) {
    const detached = failed.detach(id);
    const newId =
      typeof detached === 'number'
        ? detached
        : successor.adopt(detached[0], detached[1], detached[2], detached[4]);
    if (newId < 0) {
      if (typeof detached !== 'number') closeSync(detached[0]);
      lost += 1;
      lose(id, slot, socketError(newId, 'migrate'));
      continue;
    }
    moved += 1;
    next.set(newId, slot);
    slot.id = newId;
    if (typeof detached !== 'number' && slot instanceof Listener) {
      for (const fd of detached[5]) {
        const connectionId = successor.adopt(fd, 0, EMPTY, 0);
        if (connectionId < 0) {
          closeSync(fd); // the peer sees the connection end, as when a backlog overflows
          continue;
        }
        followUps.push(() => {
          announce(connectionId, slot.id);
        });
      }
    }
    if (typeof detached !== 'number' && slot instanceof Connection) {
      const [, socketFlags, unsent, undelivered] = detached;
      const eof = (socketFlags & codes.EOF_UNDELIVERED) !== 0;
      followUps.push(() => {
        // Nothing left to send: a writer waiting for 'drain' gets it now (a no-op otherwise).
        if (unsent.length === 0) slot.onDrain();
        slot.onMigrated(undelivered, eof);
      });
    }
  }
  return { table: next, moved, lost, followUps };
}
