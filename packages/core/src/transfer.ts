/**
 * How does a live connection move to a reactor in another worker thread? {@link Connection.transfer}
 * detaches its socket (the fd stays open: fds belong to the process, not to a thread) into a
 * {@link ConnectionTicket}, plain data that `postMessage` copies; `reactor.adopt(ticket)` in the
 * target thread makes it a normal connection again. Bytes read but not consumed, queued writes,
 * a FIN not yet delivered and the paused state travel in the ticket, in order.
 */
import { closeSync } from 'node:fs';
import type { DetachedSocket } from './backend.js';
import type { Connection } from './connection.js';

/** What a connection hands over when it leaves its reactor (internal). */
export interface HandOff {
  /** The backend's detach result: fd, state flags, unsent bytes, undelivered bytes. */
  detached: DetachedSocket;
  /** Bytes the connection object held back (read while paused), oldest first. */
  heldBytes: Buffer[];
  /** The peer's END was held back too (it follows the held bytes). */
  heldEnd: boolean;
  /** Reading was paused. */
  paused: boolean;
}

/**
 * A connection between two reactors: post it to the target thread (it survives structured
 * cloning) and pass it to `reactor.adopt()` there. Until then it owns an open fd: a ticket that
 * will not be adopted must be given to {@link discardTicket}.
 */
export interface ConnectionTicket {
  /** Marks the object as a ticket. */
  readonly kind: 'iomux-connection-ticket';
  /** The socket's fd, open, owned by the ticket. */
  readonly fd: number;
  /** The backend's state flags of the socket (paused, FIN sent, EOF read, ...). */
  readonly flags: number;
  /** Bytes accepted by `write()` that were not sent yet, in order. */
  readonly unsent: Uint8Array;
  /** Bytes read from the peer that no `'data'` listener saw yet, in order. */
  readonly undelivered: Uint8Array;
  /** The peer's END was held back with the undelivered bytes (it is emitted after them). */
  readonly endHeld: boolean;
  /** Reading was paused: the adopted connection starts paused. */
  readonly paused: boolean;
  /** The connection's `allowHalfOpen`, kept unless `adopt()` overrides it. */
  readonly allowHalfOpen: boolean;
  /** When the connection was detached: `performance.timeOrigin + performance.now()` (ms). */
  readonly detachedAt: number;
}

/** @internal Detaches `connection` into a ticket (the work behind `conn.transfer()`). */
export function ticketFor(connection: Connection): ConnectionTicket {
  const allowHalfOpen = connection.allowHalfOpen;
  const { detached, heldBytes, heldEnd, paused } = connection.detachForHandOff();
  const [fd, flags, unsent, undelivered] = detached;
  return {
    kind: 'iomux-connection-ticket',
    fd,
    flags,
    unsent,
    undelivered: heldBytes.length === 0 ? undelivered : Buffer.concat([...heldBytes, undelivered]),
    endHeld: heldEnd,
    paused,
    allowHalfOpen,
    detachedAt: performance.timeOrigin + performance.now(),
  };
}

/** True for a {@link ConnectionTicket} (also one that went through structured cloning). */
export function isConnectionTicket(value: unknown): value is ConnectionTicket {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { kind?: unknown }).kind === 'iomux-connection-ticket' &&
    typeof (value as { fd?: unknown }).fd === 'number'
  );
}

/** Closes the socket of a ticket that will not be adopted (the peer sees the connection close). */
export function discardTicket(ticket: ConnectionTicket): void {
  closeSync(ticket.fd);
}
