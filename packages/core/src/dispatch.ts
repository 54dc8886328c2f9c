/**
 * How does one native batch reach the socket objects? {@link deliverBatch} walks the batch's
 * event records and hands each to the object that owns its id; accepts and completed connects
 * create their {@link Connection} here. A throw from a user handler is reported after the batch
 * and costs no other event. {@link BatchObserver} feeds the batch metrics, the debug log and the
 * poll channel. The loop is the hot path: no closures or allocations per event.
 */
import type { NativeBackendHandle, NativeEventCodes } from './backend.js';
import type { BackendName } from './config.js';
import { Connection, type ConnectionHost } from './connection.js';
import { backendHint, socketError } from './errors.js';
import type { Slot } from './fallback.js';
import { Listener } from './listener.js';
import { channels, type ReactorMetrics } from './metrics.js';
import type { Logger } from './reactor-options.js';
import type { SocketTable } from './socket-table.js';
import { UdpSocket } from './udp.js';
import { guarded, rethrowLater } from './user-code.js';

/** What batch dispatch needs from its reactor. */
export interface DispatchHost extends ConnectionHost {
  /** Backend in use (for diagnostics and hints). */
  readonly backend: BackendName;
  /** The backend instance. */
  readonly native: NativeBackendHandle;
  /** id → socket object. */
  readonly table: SocketTable<Slot>;
  /** The backend's event records of the current batch. */
  readonly events: Int32Array;
  /** The backend's event type codes and record size. */
  readonly codes: NativeEventCodes;
  /** Refs or unrefs the backend's watcher after the table changed. */
  updateRef(): void;
  /** Where dispatch is in the current batch. */
  readonly batch: BatchCursor;
}

/** Hands the `count` event records of the current batch to their sockets, in order. */
export function deliverBatch(host: DispatchHost, count: number, slab: Buffer | undefined): void {
  const events = host.events;
  const codes = host.codes;
  const step = codes.EVENT_INTS;
  const cursor = host.batch;
  cursor.count = count;
  cursor.slab = slab;
  for (let i = 0, p = 0; i < count; i += 1, p += step) {
    cursor.next = i + 1;
    try {
      deliver(host, events[p]!, events[p + 1]!, events[p + 2]!, events[p + 3]!, slab, codes);
    } catch (err) {
      rethrowLater(err);
    }
  }
  cursor.count = 0;
  cursor.slab = undefined;
}

/** Where {@link deliverBatch} is in the current batch (one object per reactor, reused). */
export interface BatchCursor {
  /** Index of the next record to deliver. */
  next: number;
  /** Records in the batch; 0 between batches. */
  count: number;
  /** The batch's read data. */
  slab: Buffer | undefined;
}

/** The later events of the current batch for one connection, taken by a hand-off. */
export interface LaterEvents {
  /** DATA not delivered yet, in order. */
  bytes: Buffer[];
  /** An END follows them. */
  end: boolean;
  /** The errno of a CLOSE that follows (the backend already released the socket), if one does. */
  close: number | undefined;
}

/**
 * Takes the not yet delivered events of connection `id` out of the current batch (when a handler
 * hands the connection off mid-batch, they go with it instead of being lost or reaching an
 * object that reuses the id): each one taken is blanked, so the loop skips it. With `take`
 * false they are only looked at (a hand-off the backend may still refuse).
 */
export function takeLaterEvents(host: DispatchHost, id: number, take = true): LaterEvents {
  const taken: LaterEvents = { bytes: [], end: false, close: undefined };
  const { events, codes, batch } = host;
  const copy = host.transientReads;
  const step = codes.EVENT_INTS;
  for (let i = batch.next; i < batch.count; i += 1) {
    const p = i * step;
    if (events[p + 1] !== id) continue;
    const type = events[p];
    if (type === codes.DATA) {
      const view = batch.slab!.subarray(events[p + 2], events[p + 2]! + events[p + 3]!);
      // They outlive the batch: transient bytes are copied.
      taken.bytes.push(copy ? Buffer.from(view) : view);
    } else if (type === codes.END) taken.end = true;
    else if (type === codes.CLOSE) taken.close = events[p + 2];
    if (take) events[p] = NO_EVENT;
  }
  return taken;
}

/** A blanked record: no type has this code. */
const NO_EVENT = -1;

/** Hands one event record to the object that owns its id. */
function deliver(
  host: DispatchHost,
  type: number,
  id: number,
  a: number,
  b: number,
  slab: Buffer | undefined,
  codes: NativeEventCodes,
): void {
  if (type === codes.ACCEPT) {
    accepted(host, id, a);
    return;
  }
  if (type === codes.CONNECT) {
    connected(host, id, a);
    return;
  }
  const slot = host.table.get(id);
  if (slot instanceof Connection) {
    if (type === codes.DATA) slot.onData(slab!.subarray(a, a + b));
    else if (type === codes.DRAIN) slot.onDrain();
    else if (type === codes.END) slot.onEnd();
    else if (type === codes.CLOSE) slot.onClose(a);
  } else if (slot instanceof UdpSocket) {
    if (type === codes.DATAGRAM || type === codes.DATAGRAM_TRUNCATED)
      slot.onDatagram(slab!, a, b, type === codes.DATAGRAM_TRUNCATED);
    else if (type === codes.SEND_ERROR) slot.onSendError(a);
  } else if (slot instanceof Listener) {
    if (type === codes.ACCEPT_ERROR && slot.listenerCount('error') > 0)
      slot.emit('error', socketError(a, 'accept', backendHint(host.backend, a)));
  }
}

/**
 * Connection `id`, already in the backend, becomes listener `listenerId`'s new connection (an
 * ACCEPT event, or a connection a runtime fallback carried over unannounced).
 */
export function accepted(host: DispatchHost, id: number, listenerId: number): void {
  const listener = host.table.get(listenerId);
  if (!(listener instanceof Listener)) {
    host.native.destroy(id);
    return;
  }
  const connection = new Connection(host, id, listener.connectionSettings);
  host.table.set(id, connection);
  host.updateRef();
  if (channels.connectionOpen.hasSubscribers)
    channels.connectionOpen.publish({ backend: host.backend, id, kind: 'accepted' });
  listener.accept(connection);
}

function connected(host: DispatchHost, id: number, errno: number): void {
  const pending = host.table.get(id);
  if (pending?.socketKind !== 'pending') return;
  host.table.remove(id, pending);
  if (errno !== 0) {
    host.updateRef();
    pending.reject(socketError(errno, 'connect', pending.address));
    return;
  }
  const connection = new Connection(host, id, pending.settings);
  host.table.set(id, connection);
  host.updateRef();
  if (channels.connectionOpen.hasSubscribers)
    channels.connectionOpen.publish({ backend: host.backend, id, kind: 'connected' });
  // Events of this batch must wait until the `await connect()` continuation can listen.
  connection.holdEarlyEvents();
  pending.resolve(connection);
}

/**
 * Who watches the batches: the metrics histogram (unless `metrics: false`), a debug logger, and
 * the `iomux:poll` diagnostics channel. A throwing observer is reported and costs no event.
 */
export class BatchObserver {
  private lastBatchAt = performance.now();
  private readonly debugPolls: boolean;

  constructor(
    private readonly metrics: ReactorMetrics,
    private readonly logger: Logger | undefined,
    private readonly timeBatches: boolean,
  ) {
    this.debugPolls = logger !== undefined && (logger.isLevelEnabled?.('debug') ?? true);
  }

  /** True when anyone watches batches; then {@link before} and {@link after} frame each batch. */
  get active(): boolean {
    return this.timeBatches || this.debugPolls || channels.poll.hasSubscribers;
  }

  /** Records a batch of `count` events, before it is dispatched. */
  before(count: number, backend: BackendName): void {
    guarded(() => {
      this.observe(count, backend);
    });
  }

  /** Marks the end of a batch: the next batch's wait time starts here. */
  after(): void {
    this.lastBatchAt = performance.now();
  }

  private observe(count: number, backend: BackendName): void {
    const waitMs = performance.now() - this.lastBatchAt;
    if (this.timeBatches) this.metrics.recordBatch(count, waitMs);
    if (this.debugPolls)
      this.logger!.debug({ events_count: count, wait_time_ms: waitMs, backend }, 'iomux poll');
    if (channels.poll.hasSubscribers)
      channels.poll.publish({ backend, events_count: count, wait_time_ms: waitMs });
  }
}
