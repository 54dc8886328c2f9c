/**
 * What does a user call to do I/O? The {@link Reactor} API surface: listen, connect, udp, the
 * pump (run/stop/pollEvents), close, stats and metrics, and the dispatch of each native batch to
 * the socket objects. Which socket an id belongs to is socket-table.ts's; opening backends is
 * backend-open.ts's, moving sockets on a runtime failure fallback.ts's, option defaults and
 * validation reactor-options.ts's.
 */
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { NativeBackendHandle, NativeCounters, NativeEventCodes } from './backend.js';
import {
  candidates,
  openBackend,
  type FallbackRecord,
  type OpenSettings,
  type OpenedBackend,
} from './backend-open.js';
import {
  isResolvedConfig,
  resolveConfig,
  type BackendName,
  type ReactorConfig,
  type ResolvedConfig,
  type SnakeCaseConfig,
} from './config.js';
import { Connection, type ConnectionHost } from './connection.js';
import { IomuxError, backendHint, errnoName, socketError } from './errors.js';
import { migrateSockets, type PendingConnect, type Slot } from './fallback.js';
import { Listener, type ListenerHost } from './listener.js';
import { resolveReactorOptions, type ReactorOptions } from './reactor-options.js';
import {
  checkPort,
  positiveInt,
  resolveHost,
  type ConnectOptions,
  type ListenOptions,
  type UdpOptions,
} from './socket-options.js';
import { SocketTable } from './socket-table.js';
import { resolveTuning } from './tuning.js';
import { UdpSocket, type UdpHost } from './udp.js';
import { runTicks, type TickFn, type TickLoop, type TickLoopOptions } from './tick-loop.js';
import { NativeTimers, type TimerSource } from './timers.js';
import { WorkerPool, type WorkerPoolOptions, type WorkerTaskOptions } from './worker-pool.js';
import { ReactorMetrics, channels, type MetricsSnapshot, type PollObserver } from './metrics.js';

export { Listener } from './listener.js';
export type { ListenerEvents } from './listener.js';
export type { FallbackRecord, MigrationSummary } from './backend-open.js';
export type { FaultInjection, Logger, ReactorOptions } from './reactor-options.js';
export type { ConnectOptions, ListenOptions, UdpOptions } from './socket-options.js';

/** A snapshot of a reactor's counters. */
export interface ReactorStats extends NativeCounters {
  /** Backend in use. */
  backend: BackendName;
  /** Open connections. */
  connections: number;
  /** Open listeners. */
  listeners: number;
}

/** Events of a {@link Reactor}. */
export interface ReactorEvents {
  /** The backend failed while serving. */
  error: [error: IomuxError];
  /** A backend could not be used and another took over. */
  fallback: [record: FallbackRecord];
}

/**
 * An event loop over one backend, running inside Node's own loop. Create it with
 * {@link createReactor}.
 */
export class Reactor
  extends EventEmitter<ReactorEvents>
  implements ConnectionHost, UdpHost, ListenerHost
{
  /** Name of the backend in use; changes when a runtime fallback happens. */
  backend: BackendName;
  /** The validated configuration. */
  readonly config: ResolvedConfig;
  /** Backends that were tried and could not be used, oldest first. */
  readonly fallbackHistory: FallbackRecord[];
  /** @internal */
  native: NativeBackendHandle;
  /** @internal */
  readonly highWaterMark: number;
  /** @internal */
  readonly allowHalfOpen: boolean;

  private codes: NativeEventCodes;
  private events: Int32Array;
  private readonly options: ReactorOptions;
  private readonly settings: OpenSettings;
  private readonly closeTimeoutMs: number;
  /** id → socket object; replaced as a whole when a runtime fallback moves the sockets. */
  private table = new SocketTable<Slot>();
  /** Set when the backend failed and no successor could take over: the reactor is unusable. */
  private failure: IomuxError | undefined;
  private pool: WorkerPool | undefined;
  private readonly workerOptions: WorkerPoolOptions | undefined;
  private tickLoop: TickLoop | undefined;
  private referenced = false;
  private running: boolean;
  private closing: Promise<void> | undefined;
  private isClosed = false;
  private waiters: ((count: number) => void)[] = [];
  private readonly nativeTimers: NativeTimers;
  private readonly metricsState = new ReactorMetrics();
  /** Counters of backends replaced by a runtime fallback, so totals survive the switch. */
  private readonly retired: NativeCounters = {
    polls: 0,
    events: 0,
    bytesRead: 0,
    bytesWritten: 0,
    accepted: 0,
    closed: 0,
    writesQueued: 0,
    acceptErrors: 0,
  };
  private lastBatchAt = performance.now();
  private readonly debugPolls: boolean;
  private readonly timeBatches: boolean;
  private readonly onEvents = (count: number, slab: Buffer | undefined): void => {
    this.dispatch(count, slab);
  };
  private readonly idleWaiters = new Set<() => void>();

  /** @internal Use {@link createReactor}. */
  constructor(config: ResolvedConfig, options: ReactorOptions) {
    super();
    this.config = config;
    const resolved = resolveReactorOptions(options);
    this.highWaterMark = resolved.highWaterMark;
    this.allowHalfOpen = resolved.allowHalfOpen;
    this.closeTimeoutMs = resolved.closeTimeoutMs;
    this.options = options;
    if (options.workers instanceof WorkerPool) this.pool = options.workers;
    else this.workerOptions = options.workers;
    const logger = options.logger;
    this.debugPolls = logger !== undefined && (logger.isLevelEnabled?.('debug') ?? true);
    this.timeBatches = options.metrics ?? true;
    this.settings = {
      maxEvents: config.maxEvents,
      readChunk: resolved.readChunk,
      slabBytes: resolved.slabBytes,
      tuning: resolveTuning(options.env ?? process.env),
      faults: options.faults ?? {},
    };
    const opened = openBackend(candidates(config), this.settings, this.onEvents);
    this.backend = opened.name;
    this.native = opened.handle;
    this.codes = opened.addon.events;
    this.events = this.native.events;
    this.nativeTimers = new NativeTimers(opened.addon.PreciseTimer);
    this.fallbackHistory = opened.history;
    for (const record of opened.history) {
      if (channels.fallback.hasSubscribers) channels.fallback.publish(record);
      options.logger?.warn(
        { backend: record.backend, attempt: record.attempt, cause: record.cause },
        'iomux backend unavailable, falling back',
      );
    }
    this.running = options.autoRun ?? true;
    this.native.unref();
    if (this.running) this.native.start();
  }

  /**
   * Listens for TCP connections; `onConnection` receives each accepted {@link Connection}.
   * @throws {@link IomuxError} `EADDRINUSE`, `EACCES`, `EADDRNOTAVAIL`, `IOMUX_INVALID_ARGUMENT`.
   * @example
   * ```ts
   * const listener = await reactor.listen({ port: 7000 }, (conn) => {
   *   conn.on('data', (chunk) => conn.write(chunk));
   * });
   * ```
   */
  async listen(
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): Promise<Listener> {
    const port = checkPort(options.port, 'listen');
    const backlog = positiveInt('backlog', options.backlog, 1, 511);
    if (typeof onConnection !== 'function')
      throw new IomuxError('IOMUX_INVALID_ARGUMENT', 'listen: onConnection must be a function');
    const host = await resolveHost(options.host ?? '0.0.0.0');
    this.assertOpen();
    const id = this.native.listen(
      host,
      port,
      backlog,
      options.reusePort ?? false,
      options.ipv6Only ?? false,
    );
    if (id < 0) throw socketError(id, 'listen', this.detail(id, `${host}:${port}`));
    const address = this.native.address(id, false);
    const boundPort = typeof address === 'number' ? port : address[1];
    const listener = new Listener(this, id, host, boundPort, onConnection);
    this.table.set(id, listener);
    this.updateRef();
    return listener;
  }

  /**
   * Opens a TCP connection; resolves once it is established.
   * @throws {@link IomuxError} `ECONNREFUSED`, `ETIMEDOUT`, `ENETUNREACH`, ...
   */
  async connect(options: ConnectOptions): Promise<Connection> {
    const port = checkPort(options.port, 'connect');
    const host = await resolveHost(options.host ?? '127.0.0.1');
    this.assertOpen();
    const id = this.native.connect(host, port);
    if (id < 0) throw socketError(id, 'connect', this.detail(id, `${host}:${port}`));
    return new Promise<Connection>((resolve, reject) => {
      const pending: PendingConnect = { socketKind: 'pending', resolve, reject };
      this.table.set(id, pending);
      this.updateRef();
    });
  }

  /**
   * Binds a UDP socket. Datagrams arrive as `message` events with the sender's address.
   * @throws {@link IomuxError} `EADDRINUSE`, ..., or `EOPNOTSUPP` on a backend without UDP.
   * @example
   * ```ts
   * const socket = await reactor.udp({ host: '127.0.0.1', port: 9000 });
   * socket.on('message', (msg, from) => socket.send(msg, from.port, from.address));
   * ```
   */
  async udp(options: UdpOptions = {}): Promise<UdpSocket> {
    const port = checkPort(options.port ?? 0, 'udp');
    const maxDatagram = positiveInt('maxDatagram', options.maxDatagram, 1, 65536);
    if (maxDatagram > 65536 || maxDatagram + 20 > this.settings.slabBytes) {
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        `udp: maxDatagram must be at most 65536 and fit the slab, got ${maxDatagram}`,
      );
    }
    const host = await resolveHost(options.host ?? '0.0.0.0');
    this.assertOpen();
    const id = this.native.udpOpen(
      host,
      port,
      options.reusePort ?? false,
      options.ipv6Only ?? false,
      maxDatagram,
      options.reuseAddr ?? false,
    );
    if (id < 0) throw socketError(id, 'udp', this.detail(id, `${host}:${port}`));
    const socket = new UdpSocket(this, id);
    this.table.set(id, socket);
    this.updateRef();
    return socket;
  }

  /** @internal */
  forgetUdp(socket: UdpSocket): void {
    if (this.table.remove(socket.id, socket)) this.updateRef();
  }

  /**
   * Runs `tick` at a fixed rate (default: 1000 / `timeout_ms` Hz) with I/O pumped between ticks:
   * the game-server loop of the spec. See {@link runTicks} for the overrun policy and statistics.
   * @example
   * ```ts
   * reactor.stop(); // pump I/O from the loop
   * const loop = reactor.runTicks(({ dt }) => world.step(dt), { hz: 60 });
   * ```
   */
  runTicks(tick: TickFn, options?: TickLoopOptions): TickLoop {
    this.assertOpen();
    return runTicks(this, tick, options);
  }

  /**
   * Runs the export `task` of the worker module configured in `ReactorOptions.workers` on a
   * worker thread, so CPU work never stalls the I/O loop. Rejects with `IOMUX_QUEUE_FULL` when
   * the pool's queue is full (backpressure), and with `IOMUX_INVALID_ARGUMENT` when no worker
   * module was configured.
   */
  offload<Result = unknown>(
    task: string,
    args?: unknown,
    options?: WorkerTaskOptions,
  ): Promise<Result> {
    if (this.isClosed || this.closing !== undefined) {
      return Promise.reject(new IomuxError('IOMUX_REACTOR_CLOSED', 'the reactor is closed'));
    }
    if (
      this.pool === undefined &&
      this.workerOptions?.filename === undefined &&
      options?.filename === undefined
    ) {
      return Promise.reject(
        new IomuxError(
          'IOMUX_INVALID_ARGUMENT',
          'offload needs ReactorOptions.workers.filename (the worker module)',
        ),
      );
    }
    this.pool ??= new WorkerPool(this.workerOptions);
    return this.pool.run<Result>(task, args, options);
  }

  /** The worker pool behind {@link offload}, once started. */
  get workerPool(): WorkerPool | undefined {
    return this.pool;
  }

  /** Open TCP connections (accepted and connected), not counting listeners. */
  connectionCount(): number {
    return this.table.count('connection');
  }

  /** Counters of the backend and the reactor. */
  stats(): ReactorStats {
    return {
      ...this.totals(),
      backend: this.backend,
      connections: this.table.count('connection'),
      listeners: this.table.count('listener'),
    };
  }

  /**
   * A snapshot of the reactor's metrics: the spec's `io_events_processed` counter and
   * `io_wait_duration_ms` histogram, plus connections, bytes, queued writes, backpressure and
   * fallbacks. Cheap enough to call every second.
   */
  metrics(): MetricsSnapshot {
    const c = this.totals();
    return {
      backend: this.backend,
      io_events_processed: c.events,
      io_wait_duration_ms: this.metricsState.waitSummary(),
      polls: c.polls,
      connections_open: this.table.count('connection'),
      connections_accepted: c.accepted,
      connections_closed: c.closed,
      bytes_in: c.bytesRead,
      bytes_out: c.bytesWritten,
      writes_queued: c.writesQueued,
      backpressure_events: this.metricsState.backpressureEvents,
      accept_errors: c.acceptErrors,
      fallbacks: this.fallbackHistory.length,
      ticks: this.tickLoop?.stats() ?? null,
      workers: this.pool?.stats() ?? null,
    };
  }

  /** @internal Called by {@link runTicks}: `metrics().ticks` reports the newest loop. */
  tickLoopStarted(loop: TickLoop): void {
    this.tickLoop = loop;
  }

  /**
   * Calls `observer(eventsCount, waitMs)` for every batch until the returned function is called.
   * The metrics adapters use this; it costs nothing while no observer is attached.
   */
  observePolls(observer: PollObserver): () => void {
    this.metricsState.observers.add(observer);
    return () => this.metricsState.observers.delete(observer);
  }

  /** Native counters of this backend plus those of backends a runtime fallback replaced. */
  private totals(): NativeCounters {
    const c: NativeCounters =
      this.failure === undefined ? this.native.counters() : { ...this.retired };
    if (this.failure !== undefined) return c;
    for (const key of Object.keys(this.retired) as (keyof NativeCounters)[])
      c[key] += this.retired[key];
    return c;
  }

  private detail(errno: number, address: string): string {
    const hint = backendHint(this.backend, errno);
    return hint === undefined ? address : `${address}: ${hint}`;
  }

  /** @internal */
  noteBackpressure(): void {
    this.metricsState.backpressureEvents += 1;
  }

  /**
   * One-shot timers for {@link pollEvents} and the tick loop: a native timerfd with sub-ms
   * resolution on Linux, `setTimeout` elsewhere.
   */
  get timers(): TimerSource {
    return this.nativeTimers;
  }

  /** True while events are dispatched from Node's loop as they arrive. */
  get isRunning(): boolean {
    return this.running;
  }

  /** True once {@link close} has finished. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Dispatches events from Node's loop as they arrive (the default after creation). */
  run(): void {
    this.assertOpen();
    if (this.running) return;
    this.running = true;
    this.native.start();
  }

  /** Stops dispatching from Node's loop; use {@link pollEvents} to pump events yourself. */
  stop(): void {
    if (!this.running || this.isClosed) return;
    this.running = false;
    if (this.waiters.length === 0) this.native.stop();
  }

  /**
   * Dispatches ready events now; if there are none, waits up to `timeoutMs` (default: the
   * configured `timeout_ms`) for some without blocking Node's thread. Resolves with the number of
   * events dispatched. Fractional timeouts are honoured to tens of µs where the backend has a
   * native timer (Linux: a timerfd); elsewhere they are rounded up to whole ms. This is the game-loop pump: poll for up to one tick, then run the tick.
   */
  async pollEvents(timeoutMs: number = this.config.timeoutMs): Promise<number> {
    this.assertOpen();
    const count = this.native.poll();
    if (count === -osConstants.errno.EBUSY) {
      // Called while a batch is being dispatched: let it finish, then poll, instead of spinning.
      await new Promise<void>((resolve) => setImmediate(resolve));
      return this.pollEvents(timeoutMs);
    }
    if (count !== 0 || timeoutMs <= 0) return Math.max(count, 0);
    return new Promise<number>((resolve) => {
      const cancel = this.timers.after(timeoutMs, () => {
        this.waiters = this.waiters.filter((w) => w !== done);
        if (!this.running && this.waiters.length === 0 && !this.isClosed) this.native.stop();
        resolve(0);
      });
      const done = (n: number): void => {
        cancel();
        resolve(n);
      };
      this.waiters.push(done);
      if (!this.running) this.native.start();
    });
  }

  /**
   * Closes the reactor: stops listening, ends every connection gracefully (queued writes are
   * flushed), waits up to `closeTimeoutMs` for them to close, destroys the rest and releases the
   * backend. Safe to call more than once.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdownAll();
    return this.closing;
  }

  private async shutdownAll(): Promise<void> {
    if (this.failure !== undefined) {
      // failAll already closed every socket and the failed engine.
      await this.pool?.close();
      this.isClosed = true;
      this.nativeTimers.close();
      return;
    }
    if (!this.running) this.native.start();
    for (const [id, slot] of this.table.entries()) {
      if (slot instanceof Listener || slot instanceof UdpSocket) slot.close();
      else if (slot.socketKind === 'pending') {
        this.native.destroy(id);
        this.table.remove(id, slot);
        this.updateRef();
        slot.reject(
          new IomuxError(
            'IOMUX_REACTOR_CLOSED',
            'reactor closed before the connection was established',
          ),
        );
      }
    }
    for (const [, slot] of this.table.entries())
      if (slot instanceof Connection) slot.endByReactor();
    if (this.table.count('connection') > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.closeTimeoutMs);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.idleWaiters.add(done);
      });
    }
    for (const [, slot] of this.table.entries()) if (slot instanceof Connection) slot.destroy();
    await this.pool?.close();
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.isClosed = true;
    this.native.close();
    this.nativeTimers.close();
    for (const waiter of this.waiters) waiter(0);
    this.waiters = [];
  }

  /** @internal */
  forget(connection: Connection): void {
    if (!this.table.remove(connection.id, connection)) return;
    if (channels.connectionClose.hasSubscribers)
      channels.connectionClose.publish({
        backend: this.backend,
        id: connection.id,
        error: connection.error,
      });
    this.updateRef();
    if (this.table.count('connection') === 0) for (const done of this.idleWaiters) done();
  }

  /** @internal */
  owns(socket: Connection | UdpSocket): boolean {
    return this.table.owns(socket.id, socket);
  }

  /** @internal */
  closeListener(listener: Listener): void {
    if (!this.table.owns(listener.id, listener)) return;
    if (this.failure === undefined) this.native.destroy(listener.id);
    this.table.remove(listener.id, listener);
    this.updateRef();
  }

  private updateRef(): void {
    const wanted = this.table.total() > 0;
    if (wanted === this.referenced || this.isClosed || this.failure !== undefined) return;
    this.referenced = wanted;
    if (wanted) this.native.ref();
    else this.native.unref();
  }

  private assertOpen(): void {
    if (this.failure !== undefined)
      throw new IomuxError('IOMUX_BACKEND_FAILED', this.failure.message, { cause: this.failure });
    if (this.isClosed || this.closing !== undefined)
      throw new IomuxError('IOMUX_REACTOR_CLOSED', 'the reactor is closed');
  }

  private dispatch(count: number, slab: Buffer | undefined): void {
    if (count < 0) {
      this.backendFailed(-count);
      return;
    }
    const observing = this.timeBatches || this.debugPolls || channels.poll.hasSubscribers;
    if (observing)
      this.guarded(() => {
        this.observeBatch(count);
      });
    const events = this.events;
    const codes = this.codes;
    const step = codes.EVENT_INTS;
    for (let i = 0, p = 0; i < count; i += 1, p += step) {
      try {
        this.deliver(events[p]!, events[p + 1]!, events[p + 2]!, events[p + 3]!, slab, codes);
      } catch (err) {
        rethrowLater(err);
      }
    }
    if (observing) this.lastBatchAt = performance.now();
    if (this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const waiter of waiters)
        this.guarded(() => {
          waiter(count);
        });
      if (!this.running && !this.isClosed && this.failure === undefined) this.native.stop();
    }
  }

  /** Runs observer code so that a throw is reported as uncaught instead of costing the batch. */
  private guarded(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      rethrowLater(err);
    }
  }

  /** Hands one event record to the object that owns its id. */
  private deliver(
    type: number,
    id: number,
    a: number,
    b: number,
    slab: Buffer | undefined,
    codes: NativeEventCodes,
  ): void {
    if (type === codes.ACCEPT) {
      this.accepted(id, a);
      return;
    }
    if (type === codes.CONNECT) {
      this.connected(id, a);
      return;
    }
    const slot = this.table.get(id);
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
        slot.emit('error', socketError(a, 'accept', backendHint(this.backend, a)));
    }
  }

  private observeBatch(count: number): void {
    const startedAt = performance.now();
    const waitMs = startedAt - this.lastBatchAt;
    if (this.timeBatches) this.metricsState.recordBatch(count, waitMs);
    if (this.debugPolls)
      this.options.logger!.debug(
        { events_count: count, wait_time_ms: waitMs, backend: this.backend },
        'iomux poll',
      );
    if (channels.poll.hasSubscribers)
      channels.poll.publish({ backend: this.backend, events_count: count, wait_time_ms: waitMs });
  }

  private accepted(id: number, listenerId: number): void {
    const listener = this.table.get(listenerId);
    if (!(listener instanceof Listener)) {
      this.native.destroy(id);
      return;
    }
    const connection = new Connection(this, id);
    this.table.set(id, connection);
    this.updateRef();
    if (channels.connectionOpen.hasSubscribers)
      channels.connectionOpen.publish({ backend: this.backend, id, kind: 'accepted' });
    listener.onConnection(connection);
  }

  private connected(id: number, errno: number): void {
    const pending = this.table.get(id);
    if (pending?.socketKind !== 'pending') return;
    this.table.remove(id, pending);
    if (errno !== 0) {
      this.updateRef();
      pending.reject(socketError(errno, 'connect'));
      return;
    }
    const connection = new Connection(this, id);
    this.table.set(id, connection);
    this.updateRef();
    if (channels.connectionOpen.hasSubscribers)
      channels.connectionOpen.publish({ backend: this.backend, id, kind: 'connected' });
    // Events of this batch must wait until the `await connect()` continuation can listen.
    connection.holdEarlyEvents();
    pending.resolve(connection);
  }

  /**
   * Runtime fallback: the backend's poll failed. Every listener, connection and pending connect
   * moves to the next backend of the fallback chain with its fd, flags, unsent bytes and any bytes
   * the old backend had read but not delivered; users see one `fallback` event. A socket the
   * successor cannot take (select past FD_SETSIZE, blocking_io past its thread limit) is closed
   * with the adopt error; the rest carry on.
   */
  private backendFailed(errno: number): void {
    const old = this.native;
    const failed = this.backend;
    // The failed engine is never started again; its watcher is released (natively, when its
    // poll failed) before the successor opens, and the handle is closed right after the move.
    old.stop();
    const cause = `poll failed: ${errnoName(errno)}`;
    const record: FallbackRecord = {
      backend: failed,
      attempt: 1,
      cause,
      at: Date.now(),
      phase: 'runtime',
    };
    this.fallbackHistory.push(record);
    this.options.logger?.warn(
      { backend: failed, cause },
      'iomux backend failed while serving, migrating',
    );
    const chain = this.config.retry.fallback
      .filter(
        (name) =>
          name !== failed &&
          !this.fallbackHistory.some((r) => r.backend === name && r.phase === 'runtime'),
      )
      .map((name) => ({ name, attempts: 1 }));
    let opened: OpenedBackend;
    try {
      opened = openBackend(chain, this.settings, this.onEvents, 'runtime');
    } catch (err) {
      this.failAll(old, errno, err);
      return;
    }
    this.fallbackHistory.push(...opened.history);
    const started = performance.now();
    const migration = migrateSockets(
      this.table,
      old,
      opened.handle,
      opened.addon.events,
      (id, slot, error) => {
        this.lose(id, slot, error);
      },
    );
    this.retire(old);
    old.close();
    this.table = migration.table;
    this.native = opened.handle;
    this.backend = opened.name;
    this.codes = opened.addon.events;
    this.events = opened.handle.events;
    this.referenced = false;
    this.native.unref();
    this.updateRef();
    if (this.table.count('connection') === 0) for (const done of this.idleWaiters) done();
    if (this.running || this.waiters.length > 0) this.native.start();
    record.migration = {
      to: opened.name,
      sockets: migration.moved,
      lost: migration.lost,
      ms: performance.now() - started,
    };
    this.options.logger?.warn(
      { from: failed, to: opened.name, sockets: migration.moved, lost: migration.lost },
      'iomux runtime fallback done',
    );
    if (channels.fallback.hasSubscribers) channels.fallback.publish(record);
    this.guarded(() => this.emit('fallback', record));
    for (const followUp of migration.followUps) this.guarded(followUp);
  }

  /** Keeps a replaced backend's counters, so totals survive the switch. */
  private retire(old: NativeBackendHandle): void {
    const oldCounters = old.counters();
    for (const key of Object.keys(this.retired) as (keyof NativeCounters)[])
      this.retired[key] += oldCounters[key];
  }

  /**
   * No backend could take over: every socket is closed with the failure, the failed engine is
   * closed, and from now on listen()/connect()/udp() reject with `IOMUX_BACKEND_FAILED`.
   */
  private failAll(old: NativeBackendHandle, errno: number, cause: unknown): void {
    const error = new IomuxError(
      'IOMUX_BACKEND_FAILED',
      `backend ${this.backend} failed (${errnoName(errno)}) and no fallback could take over`,
      { errno, syscall: 'poll', cause },
    );
    for (const [id, slot] of this.table.entries()) {
      old.destroy(id);
      this.lose(id, slot, error);
    }
    this.retire(old);
    this.failure = error;
    old.close();
    this.referenced = false;
    for (const done of this.idleWaiters) done();
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters)
      this.guarded(() => {
        waiter(0);
      });
    if (this.listenerCount('error') > 0) this.guarded(() => this.emit('error', error));
  }

  /** Closes a socket that cannot go on, through the current table (by object). */
  private lose(id: number, slot: Slot, error: IomuxError): void {
    if (slot instanceof Connection) slot.lost(error);
    else if (slot instanceof Listener || slot instanceof UdpSocket) slot.close();
    else {
      this.table.remove(id, slot);
      this.updateRef();
      this.guarded(() => {
        slot.reject(error);
      });
    }
  }
}

/** Reports an exception from user or observer code as uncaught, after the batch. */
function rethrowLater(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}

/**
 * Creates a reactor. The configuration is validated first (nothing opens on a bad value); then
 * the configured backend is tried `retry_config.max_attempts` times and, failing that, each
 * fallback in order. What failed and why is in {@link Reactor.fallbackHistory}.
 *
 * @example
 * ```ts
 * import { createReactor } from '@iomux/core';
 * const reactor = createReactor({ ioModel: 'auto' });
 * await reactor.listen({ host: '127.0.0.1', port: 7000 }, (conn) => {
 *   conn.on('data', (chunk) => conn.write(chunk));
 * });
 * console.log(`serving on ${reactor.backend}`);
 * ```
 * @throws {@link ConfigError} for an invalid configuration; {@link IomuxError}
 * `IOMUX_BACKEND_UNAVAILABLE` when no backend of the chain can run.
 */
export function createReactor(
  config: ReactorConfig | SnakeCaseConfig | ResolvedConfig,
  options: ReactorOptions = {},
): Reactor {
  const resolved = isResolvedConfig(config)
    ? config
    : resolveConfig(config, options.env ?? process.env);
  return new Reactor(resolved, options);
}
