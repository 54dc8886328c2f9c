/**
 * `reactor.broadcast()`: one payload to many connections in one native call. The sockets whose
 * kernel buffer does not take it all keep a reference to one shared native copy, not a copy each
 * (as uWebSockets.js's publish does), and each recipient's `maxQueuedBytes` still applies.
 */
import type { Connection, ConnectionHost } from './connection.js';
import { IomuxError } from './errors.js';
import { bytesOf } from './socket-options.js';

/** What {@link Reactor.broadcast} did with each recipient, counted. */
export interface BroadcastResult {
  /** Recipients that took the bytes (sent at once or queued within their limit). */
  readonly written: number;
  /**
   * Of {@link written}, how many now hold the high-water mark or more in their queue (a
   * `write()` would have returned false): they emit `'drain'` once below it.
   */
  readonly backpressured: number;
  /** Closed connections and ones whose writable side ended: nothing was sent to them. */
  readonly skipped: number;
  /**
   * Recipients over their `maxQueuedBytes`, not written: under the `'destroy'` policy destroyed
   * with `IOMUX_QUEUE_FULL`, under `'refuse'` left open and listed in {@link refused}.
   */
  readonly overLimit: number;
  /** The connections `'refuse'` kept out, in the order given (empty when none). */
  readonly refused: readonly Connection[];
  /** Recipients whose write failed: destroyed with the socket error, as `write()` does. */
  readonly failed: number;
}

const NONE: readonly Connection[] = Object.freeze([]);

/** Typed arrays handed to the native call, kept between calls so a broadcast allocates none. */
class Scratch {
  ids = new Int32Array(64);
  results = new Float64Array(64);
  /** The admitted recipients of the call, from index 0; emptied (not shortened) after it. */
  recipients: (Connection | undefined)[] = [];

  reserve(count: number): void {
    if (count <= this.ids.length) return;
    let size = this.ids.length;
    while (size < count) size *= 2;
    this.ids = new Int32Array(size);
    this.results = new Float64Array(size);
  }
}

/** A reactor's broadcasts (one per reactor: its scratch arrays). */
export class Broadcaster {
  private readonly scratch = new Scratch();
  private busy = false;

  constructor(private readonly host: ConnectionHost) {}

  send(connections: Iterable<Connection>, data: Uint8Array | string): BroadcastResult {
    const bytes = bytesOf(data, 'broadcast: data');
    // A 'close' or 'error' handler run by a destroy below may broadcast again: it gets its own.
    const scratch = this.busy ? new Scratch() : this.scratch;
    this.busy = true;
    try {
      return this.sendWith(scratch, connections, bytes);
    } finally {
      // Hold no connection past the call, but keep the array's room for the next one.
      scratch.recipients.fill(undefined);
      if (scratch === this.scratch) this.busy = false;
    }
  }

  private sendWith(
    scratch: Scratch,
    connections: Iterable<Connection>,
    data: Uint8Array,
  ): BroadcastResult {
    const recipients = scratch.recipients;
    let refused: Connection[] | undefined;
    let count = 0;
    let skipped = 0;
    let overLimit = 0;
    let position = 0;
    for (const connection of connections) {
      switch (connection.admitBroadcast(this.host, data.byteLength)) {
        case 'write':
          recipients[count++] = connection;
          break;
        case 'skip':
          skipped += 1;
          break;
        case 'refused':
          (refused ??= []).push(connection);
          overLimit += 1;
          break;
        case 'destroyed':
          overLimit += 1;
          break;
        case 'foreign':
          throw new IomuxError(
            'IOMUX_INVALID_ARGUMENT',
            `broadcast: recipient ${position} (connection ${connection.id}) belongs to another reactor`,
          );
      }
      position += 1;
    }
    scratch.reserve(count);
    for (let i = 0; i < count; i++) scratch.ids[i] = recipients[i]!.id;
    if (count > 0) {
      const rc = this.host.native.broadcast(scratch.ids, count, data, scratch.results);
      // The backend is closed (-EBADF): every recipient failed as its own write() would have.
      if (rc < 0) scratch.results.fill(rc, 0, count);
    }
    let written = 0;
    let backpressured = 0;
    let failed = 0;
    for (let i = 0; i < count; i++) {
      switch (recipients[i]!.broadcastWritten(scratch.results[i]!, data.byteLength)) {
        case 'written':
          written += 1;
          break;
        case 'backpressured':
          written += 1;
          backpressured += 1;
          break;
        case 'failed':
          failed += 1;
          break;
      }
    }
    return { written, backpressured, skipped, overLimit, refused: refused ?? NONE, failed };
  }
}
