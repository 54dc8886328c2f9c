/**
 * What does a user call to do I/O? The {@link Reactor} API surface: listen, connect, udp, the
 * pump (run/stop/pollEvents), close, stats and metrics. The work behind it lives elsewhere:
 * batch dispatch in dispatch.ts, the run/stop state and pollEvents() waiters in pump.ts, the
 * runtime fallback in failover.ts (socket moves in fallback.ts), which socket an id belongs to in
 * socket-table.ts, opening backends in backend-open.ts, option defaults and validation in
 * reactor-options.ts and socket-options.ts.
 */
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { NativeBackendHandle, NativeCounters, NativeEventCodes } from './backend.js';
import {
  candidates,
  openBackend,
  type Candidate,
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
import { adoptSocket, type AdoptOptions, type AdoptSource } from './adopt.js';
import { Broadcaster, type BroadcastResult } from './broadcast.js';
import {
  Connection,
  checkQueueLimit,
  type ConnectionHost,
  type ConnectionSettings,
} from './connection.js';
import {
  BatchObserver,
  deliverBatch,
  takeLaterEvents,
  accepted as announceAccepted,
  type BatchCursor,
  type LaterEvents,
} from './dispatch.js';
import { abortError, guardConnect } from './connect-guard.js';
import { IomuxError, backendHint, socketError } from './errors.js';
import { failOver } from './failover.js';
import type { PendingConnect, Slot } from './fallback.js';
import { Listener, type ConnectionHandler, type ListenerHost } from './listener.js';
import { Pump } from './pump.js';
import { CounterTotals, metricsSnapshot, type ReactorStats } from './reactor-stats.js';
import { resolveReactorOptions, type Logger, type ReactorOptions } from './reactor-options.js';
import {
  checkLocalEnd,
  checkPath,
  checkPort,
  localBindAddress,
  optionalBoolean,
  optionalSignal,
  optionalTimeout,
  positiveInt,
  resolveHost,
  type ConnectOptions,
  type ListenOptions,
  type UdpOptions,
} from './socket-options.js';
import { endAllSockets } from './shutdown.js';
import { SocketTable } from './socket-table.js';
import { resolveTuning } from './tuning.js';
import { UdpSocket, type UdpHost } from './udp.js';
import { runTicks, type TickFn, type TickLoop, type TickLoopOptions } from './tick-loop.js';
import { NativeTimers, type TimerSource } from './timers.js';
import { guarded, rethrowLater } from './user-code.js';
import { WorkerPool, type WorkerTaskOptions } from './worker-pool.js';
import { ReactorMetrics, channels, type MetricsSnapshot, type PollObserver } from './metrics.js';

export { Listener } from './listener.js';
export type { ConnectionHandler, ListenerEvents } from './listener.js';
export type { FallbackRecord, MigrationSummary } from './backend-open.js';
export type { FaultInjection, Logger, ReactorOptions } from './reactor-options.js';
export type { ConnectOptions, ListenOptions, UdpOptions } from './socket-options.js';
export type { ReactorStats } from './reactor-stats.js';
export type { BroadcastResult } from './broadcast.js';

/** The port the native listen() and connect() take to mean: the host is a Unix socket path. */
const UNIX_PORT = -1;

/** Events of a {@link Reactor}. */
export interface ReactorEvents {
  /**
   * The backend failed while serving (`IOMUX_BACKEND_FAILED`), or an `onConnection` handler's
   * promise rejected (`IOMUX_HANDLER_REJECTED`) and its listener has no `'error'` listener.
   */
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
  /** @internal Read chunks are valid only during their listener (`readBuffers: 'transient'`). */
  readonly transientReads: boolean;
  /** @internal What connections start with unless their listen() or connect() says otherwise. */
  private readonly connectionDefaults: ConnectionSettings;

  /** @internal The backend's event type codes and record size. */
  codes: NativeEventCodes;
  /** @internal The backend's event records of the current batch. */
  events: Int32Array;
  private readonly options: ReactorOptions;
  private readonly settings: OpenSettings;
  private readonly closeTimeoutMs: number;
  /** @internal id → socket object; replaced as a whole when a runtime fallback moves them. */
  table = new SocketTable<Slot>();
  /** Set when the backend failed and no successor could take over: the reactor is unusable. */
  private failure: IomuxError | undefined;
  private pool: WorkerPool | undefined;
  private tickLoop: TickLoop | undefined;
  private referenced = false;
  private readonly pump: Pump;
  private closing: Promise<void> | undefined;
  private isClosed = false;
  private readonly nativeTimers: NativeTimers;
  private readonly metricsState = new ReactorMetrics();
  private readonly counters = new CounterTotals();
  private readonly observer: BatchObserver;
  private readonly onEvents = (count: number, slab: Buffer | undefined): void => {
    this.dispatch(count, slab);
  };
  private readonly idleWaiters = new Set<() => void>();
  private readonly broadcaster = new Broadcaster(this);
  /** The longest Unix socket path the backend's platform takes (0: none). */
  private unixPathMax: number;

  /** @internal Use {@link createReactor}. */
  constructor(config: ResolvedConfig, options: ReactorOptions) {
    super();
    this.config = config;
    const resolved = resolveReactorOptions(options);
    this.highWaterMark = resolved.highWaterMark;
    this.transientReads = resolved.readBuffers === 'transient';
    this.connectionDefaults = {
      allowHalfOpen: resolved.allowHalfOpen,
      maxQueuedBytes: resolved.maxQueuedBytes,
      queueLimitPolicy: resolved.queueLimitPolicy,
    };
    this.closeTimeoutMs = resolved.closeTimeoutMs;
    this.options = options;
    // Started here, not at the first offload(): starting threads holds this thread for ms, which
    // the first offload() from inside a tick would otherwise pay.
    if (options.workers !== undefined)
      this.pool =
        options.workers instanceof WorkerPool ? options.workers : new WorkerPool(options.workers);
    this.observer = new BatchObserver(this.metricsState, options.logger, options.metrics ?? true);
    this.settings = {
      maxEvents: config.maxEvents,
      readChunk: resolved.readChunk,
      slabBytes: resolved.slabBytes,
      readBuffers: resolved.readBuffers,
      tuning: resolveTuning(options.env ?? process.env),
      faults: options.faults ?? {},
    };
    let opened: ReturnType<typeof openBackend>;
    try {
      opened = openBackend(candidates(config), this.settings, this.onEvents);
    } catch (err) {
      if (!(options.workers instanceof WorkerPool)) void this.pool?.close();
      throw err;
    }
    this.backend = opened.name;
    this.native = opened.handle;
    this.codes = opened.addon.events;
    this.unixPathMax = opened.addon.unixPathMax;
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
    this.pump = new Pump(this, options.autoRun ?? true);
    this.native.unref();
    if (this.pump.isRunning) this.native.start();
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
  async listen(options: ListenOptions, onConnection: ConnectionHandler): Promise<Listener> {
    if (options.path !== undefined) return this.listenUnix(options, onConnection);
    const port = checkPort(options.port, 'listen');
    const backlog = positiveInt('backlog', options.backlog, 1, 511);
    const settings = this.connectionSettings('listen', options);
    const signal = optionalSignal('listen: signal', options.signal);
    if (typeof onConnection !== 'function')
      throw new IomuxError('IOMUX_INVALID_ARGUMENT', 'listen: onConnection must be a function');
    const host = await resolveHost(options.host ?? '0.0.0.0');
    if (signal?.aborted) throw abortError('listen', `${host}:${port}`, signal);
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
    const listener = new Listener(this, id, host, boundPort, onConnection, settings);
    this.table.set(id, listener);
    this.updateRef();
    if (signal !== undefined) closeOnAbort(listener, signal);
    return listener;
  }

  /** {@link listen} on a Unix domain socket (`options.path`). */
  private async listenUnix(
    options: ListenOptions,
    onConnection: ConnectionHandler,
  ): Promise<Listener> {
    const { host, port, reusePort, ipv6Only } = options;
    const path = checkPath('listen', options.path, this.unixPathMax, {
      host,
      port,
      reusePort,
      ipv6Only,
    });
    const backlog = positiveInt('backlog', options.backlog, 1, 511);
    const settings = this.connectionSettings('listen', options);
    const signal = optionalSignal('listen: signal', options.signal);
    if (typeof onConnection !== 'function')
      throw new IomuxError('IOMUX_INVALID_ARGUMENT', 'listen: onConnection must be a function');
    await Promise.resolve(); // settle as the TCP form does: never synchronously
    if (signal?.aborted) throw abortError('listen', path, signal);
    this.assertOpen();
    const id = this.native.listen(path, UNIX_PORT, backlog, false, false);
    if (id < 0) throw socketError(id, 'listen', this.detail(id, path));
    const listener = new Listener(this, id, path, 0, onConnection, settings, path);
    this.table.set(id, listener);
    this.updateRef();
    if (signal !== undefined) closeOnAbort(listener, signal);
    return listener;
  }

  /**
   * Opens a TCP connection; resolves once it is established.
   * @throws {@link IomuxError} `ECONNREFUSED`, `ETIMEDOUT`, `ENETUNREACH`, ... with the address in
   * the message (`connect ECONNREFUSED 127.0.0.1:4000`); `ETIMEDOUT` after `timeoutMs`;
   * `ABORT_ERR` when `signal` aborts first; `IOMUX_INVALID_ARGUMENT` for a bad option (port 0
   * included: there is nothing to connect to there); `EADDRINUSE`, `EADDRNOTAVAIL`, `EINVAL`, ...
   * when `localAddress` / `localPort` cannot be bound, naming both ends
   * (`connect EADDRINUSE 127.0.0.1:4000 from 127.0.0.2:5000`).
   * @example
   * ```ts
   * const conn = await reactor.connect({ host: '127.0.0.1', port: 6379, timeoutMs: 2000 });
   * const pinned = await reactor.connect({ host: '127.0.0.1', port: 6379, localAddress: '127.0.0.2' });
   * ```
   */
  async connect(options: ConnectOptions): Promise<Connection> {
    const unix = options.path !== undefined;
    const port = unix ? UNIX_PORT : checkPort(options.port, 'connect');
    if (port === 0)
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        'connect: port must be from 1 to 65535, got 0',
      );
    const path = unix
      ? checkPath('connect', options.path, this.unixPathMax, {
          host: options.host,
          port: options.port,
          localAddress: options.localAddress,
          localPort: options.localPort,
        })
      : undefined;
    const local = checkLocalEnd(options.localAddress, options.localPort);
    const settings = this.connectionSettings('connect', options);
    const timeoutMs = optionalTimeout('connect: timeoutMs', options.timeoutMs);
    const signal = optionalSignal('connect: signal', options.signal);
    const requested = path ?? `${options.host ?? '127.0.0.1'}:${port}`;
    if (signal?.aborted) throw abortError('connect', requested, signal);
    const host = path ?? (await resolveHost(options.host ?? '127.0.0.1'));
    const address = path ?? `${host}:${port}`;
    if (path !== undefined) await Promise.resolve(); // never settle synchronously
    if (signal?.aborted) throw abortError('connect', address, signal);
    this.assertOpen();
    const localHost = local === undefined ? null : localBindAddress(local, host);
    const localPort = local?.port ?? 0;
    // A failed bind of the local end is reported as the connect's error: errors name both ends.
    const ends = localHost === null ? address : `${address} from ${localHost}:${localPort}`;
    const id = this.native.connect(host, port, localHost, localPort);
    if (id < 0) throw socketError(id, 'connect', this.detail(id, ends));
    return new Promise<Connection>((resolve, reject) => {
      const pending: PendingConnect = {
        socketKind: 'pending',
        id,
        address: ends,
        resolve,
        reject,
        settings,
      };
      this.table.set(id, pending);
      this.updateRef();
      guardConnect(pending, { timeoutMs, signal }, (error) => {
        this.cancelConnect(pending, error);
      });
    });
  }

  /** Gives up a connect that has not completed: its socket is closed, the promise rejected. */
  private cancelConnect(pending: PendingConnect, error: IomuxError): void {
    if (!this.table.remove(pending.id, pending)) return; // it settled meanwhile
    if (this.failure === undefined) this.native.destroy(pending.id);
    this.updateRef();
    pending.reject(error);
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
    const sendThread = options.sendThread ?? false;
    if (typeof sendThread !== 'boolean') {
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        `udp: sendThread must be a boolean, got ${typeof sendThread}`,
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
    let threaded = false;
    if (sendThread) {
      // EOPNOTSUPP: a backend without send threads (Windows) sends on the reactor's thread.
      const rc = this.native.udpSendThread(id);
      if (rc < 0 && rc !== -osConstants.errno.EOPNOTSUPP) {
        this.native.destroy(id);
        throw socketError(rc, 'udp: send thread');
      }
      threaded = rc === 0;
    }
    const socket = new UdpSocket(this, id, threaded);
    this.table.set(id, socket);
    this.updateRef();
    return socket;
  }

  // ---- Sockets handed in from node:net, an fd, or another reactor: adopt.ts does the work ----
  /** @internal Where dispatch is in the current batch (a hand-off takes its socket's rest). */
  readonly batch: BatchCursor = { next: 0, count: 0, slab: undefined };

  /**
   * @internal A connection is about to leave (transfer, toNetSocket): its later events of the
   * current batch go with it (`take`), or are only looked at (`take` false).
   */
  prepareHandOff(id: number, take: boolean): LaterEvents {
    return takeLaterEvents(this, id, take);
  }

  /**
   * Takes a connected TCP socket into this reactor and returns it as a {@link Connection}: a
   * `net.Socket` (node:http's `'upgrade'` or `'connection'`; pass the upgrade `head` in
   * `options.head`), an fd (which the reactor then owns), or a ticket from
   * {@link Connection.transfer} in another thread. Bytes already read are delivered first; the
   * peer notices nothing.
   * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT`, `ENOTSOCK`, `EBADF`, `EPROTOTYPE`, ...
   * @example
   * ```ts
   * httpServer.on('upgrade', async (req, socket, head) => {
   *   const conn = await reactor.adopt(socket, { head });
   *   conn.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: game\r\nConnection: Upgrade\r\n\r\n');
   * });
   * ```
   */
  async adopt(source: AdoptSource, options: AdoptOptions = {}): Promise<Connection> {
    this.assertOpen();
    return adoptSocket(this, source, options, (allowHalfOpen) =>
      this.connectionSettings('adopt', allowHalfOpen === undefined ? {} : { allowHalfOpen }),
    );
  }

  /** The reactor's connection defaults, or a new settings object when `options` overrides one. */
  private connectionSettings(
    call: 'listen' | 'connect' | 'adopt',
    options: { allowHalfOpen?: boolean; maxQueuedBytes?: number; queueLimitPolicy?: string },
  ): ConnectionSettings {
    const defaults = this.connectionDefaults;
    const allowHalfOpen = optionalBoolean(
      `${call}: allowHalfOpen`,
      options.allowHalfOpen,
      defaults.allowHalfOpen,
    );
    const limit = checkQueueLimit(call, options.maxQueuedBytes, options.queueLimitPolicy, defaults);
    if (
      allowHalfOpen === defaults.allowHalfOpen &&
      limit.maxQueuedBytes === defaults.maxQueuedBytes &&
      limit.queueLimitPolicy === defaults.queueLimitPolicy
    )
      return defaults; // one shared object for every connection that asks for nothing special
    return { allowHalfOpen, ...limit };
  }

  /** @internal */
  forgetUdp(socket: UdpSocket): void {
    if (this.table.remove(socket.id, socket)) this.updateRef();
  }

  /**
   * Runs `tick` at a fixed rate (default: 1000 / `timeout_ms` Hz) with I/O pumped between ticks:
   * the game-server loop of the spec. See {@link runTicks} for the overrun policy and statistics.
   * When the loop ends (stop, `maxTicks`, its signal, a throwing tick) a reactor left in manual
   * dispatch resumes automatic dispatch, so a pending `connect()` or incoming data is not left
   * waiting for a pump that no longer runs; call {@link stop} again to go on pumping by hand.
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
   * the pool's queue is full (backpressure), `IOMUX_TASK_TIMEOUT` past `options.timeoutMs` (a
   * running task's thread is terminated and replaced), `IOMUX_UNKNOWN_TASK` when the module has
   * no such export, and `IOMUX_INVALID_ARGUMENT` when no worker module was configured. The pool
   * starts with the reactor; `await reactor.workersReady()` before offloading from a tick.
   * @example
   * ```ts
   * const reactor = createReactor(config, {
   *   workers: { filename: new URL('./worker.js', import.meta.url), size: 2 },
   * });
   * await reactor.workersReady();
   * const path = await reactor.offload('findPath', { from, to }, { timeoutMs: 50 });
   * ```
   */
  offload<Result = unknown>(
    task: string,
    args?: unknown,
    options?: WorkerTaskOptions,
  ): Promise<Result> {
    if (this.isClosed || this.closing !== undefined) {
      return Promise.reject(new IomuxError('IOMUX_REACTOR_CLOSED', 'the reactor is closed'));
    }
    if (this.pool === undefined && options?.filename === undefined) {
      return Promise.reject(
        new IomuxError(
          'IOMUX_INVALID_ARGUMENT',
          'offload needs ReactorOptions.workers.filename (the worker module)',
        ),
      );
    }
    // Only without ReactorOptions.workers: a per-task filename starts a default pool here.
    this.pool ??= new WorkerPool();
    return this.pool.run<Result>(task, args, options);
  }

  /**
   * Resolves with the worker pool behind {@link offload} once its threads are running and have
   * loaded the worker module (see {@link WorkerPool.ready}), so an offload from a tick neither
   * starts a thread nor waits for one to boot.
   * @throws (rejects with) {@link IomuxError} `IOMUX_INVALID_ARGUMENT` without
   * `ReactorOptions.workers`; `IOMUX_WORKER_FAILED` when a thread failed while starting;
   * `IOMUX_REACTOR_CLOSED` once closed.
   * @example
   * ```ts
   * const reactor = createReactor(config, { workers: { filename: workerUrl, size: 2 } });
   * await reactor.workersReady();
   * reactor.stop();
   * reactor.runTicks(() => void reactor.offload('plan', world.snapshot()), { hz: 60 });
   * ```
   */
  async workersReady(): Promise<WorkerPool> {
    if (this.isClosed || this.closing !== undefined)
      throw new IomuxError('IOMUX_REACTOR_CLOSED', 'the reactor is closed');
    if (this.pool === undefined)
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        'workersReady needs ReactorOptions.workers (worker pool options or a WorkerPool)',
      );
    await this.pool.ready();
    return this.pool;
  }

  /**
   * The worker pool behind {@link offload}: the one `ReactorOptions.workers` gave or started with
   * the reactor; without that option, the default pool the first offload with a per-task
   * `filename` started, or undefined.
   */
  get workerPool(): WorkerPool | undefined {
    return this.pool;
  }

  /**
   * Writes the same bytes to many connections in one native call, in the order given, as a loop
   * of `write()` would but without one JS call and, for the recipients whose kernel buffer does
   * not take it all, without one copy each: their queues share one native copy (a string is
   * encoded once). Each recipient's `maxQueuedBytes` applies: one over it is destroyed with
   * `IOMUX_QUEUE_FULL` (policy `'destroy'`) or left out and listed in `refused` (`'refuse'`;
   * nothing is thrown). Closed and ended connections are skipped without an error, so a set of
   * clients can be broadcast to as they come and go. Returns the counts of each outcome.
   * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for data that is not a Uint8Array or a
   * string, or a connection of another reactor (before anything is written);
   * `IOMUX_REACTOR_CLOSED` once closed.
   * @example
   * ```ts
   * const room = new Set<Connection>();
   * await reactor.listen({ port: 7000, maxQueuedBytes: 256 * 1024 }, (conn) => {
   *   room.add(conn);
   *   conn.on('close', () => room.delete(conn));
   *   conn.on('data', (line) => reactor.broadcast(room, line)); // slow readers over 256 KiB are dropped
   * });
   * ```
   */
  broadcast(connections: Iterable<Connection>, data: Uint8Array | string): BroadcastResult {
    this.assertOpen();
    return this.broadcaster.send(connections, data);
  }

  /** Open TCP connections (accepted and connected), not counting listeners. */
  connectionCount(): number {
    return this.table.count('connection');
  }

  /**
   * Counters of the backend and the reactor.
   * @example
   * ```ts
   * const { backend, connections, bytesRead } = reactor.stats();
   * console.log(`${backend}: ${connections} open, ${bytesRead} bytes read`);
   * ```
   */
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
   * @example
   * ```ts
   * setInterval(() => {
   *  const m = reactor.metrics();
   *  log.info({ events: m.io_events_processed, waitP99: m.io_wait_duration_ms.p99 }, 'io');
   * }, 1000).unref();
   * ```
   */
  metrics(): MetricsSnapshot {
    return metricsSnapshot({
      backend: this.backend,
      totals: this.totals(),
      connections: this.table.count('connection'),
      metrics: this.metricsState,
      fallbacks: this.fallbackHistory.length,
      tickLoop: this.tickLoop,
      pool: this.pool,
    });
  }

  /** @internal Called by {@link runTicks}: `metrics().ticks` reports the newest loop. */
  tickLoopStarted(loop: TickLoop): void {
    this.tickLoop = loop;
  }

  /**
   * @internal Called when a {@link runTicks} loop ends: nothing pumps a reactor in manual dispatch
   * any more, so automatic dispatch resumes (call `stop()` again to pump by hand).
   */
  tickLoopEnded(loop: TickLoop): void {
    if (loop !== this.tickLoop || !this.live || this.closing !== undefined) return;
    if (!this.pump.isRunning) this.pump.run();
  }

  /**
   * Calls `observer(eventsCount, waitMs)` for every batch until the returned function is called.
   * The metrics adapters use this; it costs nothing while no observer is attached.
   * @example
   * ```ts
   * const stop = reactor.observePolls((events, waitMs) => histogram.record(waitMs));
   * // later, when the exporter shuts down:
   * stop();
   * ```
   */
  observePolls(observer: PollObserver): () => void {
    this.metricsState.observers.add(observer);
    return () => this.metricsState.observers.delete(observer);
  }

  /** Native counters of this backend plus those of backends a runtime fallback replaced. */
  private totals(): NativeCounters {
    return this.counters.totals(this.failure === undefined ? this.native : undefined);
  }

  private detail(errno: number, address: string): string {
    const hint = backendHint(this.backend, errno);
    return hint === undefined ? address : `${address}: ${hint}`;
  }

  /** @internal */
  noteBackpressure(): void {
    this.metricsState.backpressureEvents += 1;
  }

  /** @internal */
  noteQueued(delta: number): void {
    this.metricsState.writeQueueBytes += delta;
  }

  /** @internal */
  noteQueueLimit(): void {
    this.metricsState.queueLimitHits += 1;
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
    return this.pump.isRunning;
  }

  /** True once {@link close} has finished. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Dispatches events from Node's loop as they arrive (the default after creation). */
  run(): void {
    this.assertOpen();
    this.pump.run();
  }

  /**
   * Stops dispatching from Node's loop; use {@link pollEvents} to pump events yourself.
   * @example
   * ```ts
   * reactor.stop(); // pump by hand, e.g. once per game tick
   * setInterval(() => void reactor.pollEvents(0), 16);
   * ```
   */
  stop(): void {
    if (!this.isClosed) this.pump.stop();
  }

  /**
   * Dispatches ready events now; if there are none, waits up to `timeoutMs` (default: the
   * configured `timeout_ms`) for some without blocking Node's thread. Resolves with the number of
   * events dispatched. Fractional timeouts are honoured to tens of µs where the backend has a
   * native timer (Linux: a timerfd); elsewhere they are rounded up to whole ms. This is the game-loop pump: poll for up to one tick, then run the tick.
   * @example
   * ```ts
   * reactor.stop();
   * for (;;) {
   *  await reactor.pollEvents(16); // at most one tick of waiting, without blocking Node
   *  tick();
   * }
   * ```
   */
  pollEvents(timeoutMs: number = this.config.timeoutMs): Promise<number> {
    return this.pump.poll(timeoutMs);
  }

  /** @internal True while the backend can be started and stopped: not closed, not failed. */
  get live(): boolean {
    return !this.isClosed && this.failure === undefined;
  }

  /**
   * Closes the reactor: stops listening, ends every connection gracefully (queued writes are
   * flushed), waits up to `closeTimeoutMs` for them to close, destroys the rest and releases the
   * backend. Safe to call more than once.
   * @example
   * ```ts
   * process.once('SIGTERM', () => {
   *  void reactor.close().then(() => process.exit(0));
   * });
   * ```
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
    if (!this.pump.isRunning) this.native.start();
    await endAllSockets(this, this.closeTimeoutMs);
    await this.pool?.close();
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.isClosed = true;
    this.native.close();
    this.nativeTimers.close();
    this.pump.release();
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
  whenIdle(done: () => void): void {
    this.idleWaiters.add(done);
  }

  /** @internal */
  owns(socket: Connection | UdpSocket): boolean {
    return this.table.owns(socket.id, socket);
  }

  /** @internal */
  reportError(error: IomuxError): void {
    if (this.listenerCount('error') > 0) guarded(() => this.emit('error', error));
    else rethrowLater(error);
  }

  /** @internal */
  closeListener(listener: Listener): void {
    if (!this.table.owns(listener.id, listener)) return;
    if (this.failure === undefined) this.native.destroy(listener.id);
    this.table.remove(listener.id, listener);
    this.updateRef();
  }

  /** @internal A runtime fallback carried connection `id` over unannounced: listener's now. */
  announceAccepted(id: number, listenerId: number): void {
    announceAccepted(this, id, listenerId);
  }

  /** @internal */
  updateRef(): void {
    const wanted = this.table.total() > 0;
    if (wanted === this.referenced || this.isClosed || this.failure !== undefined) return;
    this.referenced = wanted;
    if (wanted) this.native.ref();
    else this.native.unref();
  }

  /** @internal */
  assertOpen(): void {
    if (this.failure !== undefined)
      throw new IomuxError('IOMUX_BACKEND_FAILED', this.failure.message, { cause: this.failure });
    if (this.isClosed || this.closing !== undefined)
      throw new IomuxError('IOMUX_REACTOR_CLOSED', 'the reactor is closed');
  }

  /** One native batch: observed, delivered event by event, then the pollEvents() waiters woken. */
  private dispatch(count: number, slab: Buffer | undefined): void {
    if (count < 0) {
      failOver(this, -count);
      return;
    }
    const observing = this.observer.active;
    if (observing) this.observer.before(count, this.backend);
    deliverBatch(this, count, slab);
    if (observing) this.observer.after();
    this.pump.batchDone(count);
  }

  /** @internal */
  get logger(): Logger | undefined {
    return this.options.logger;
  }

  /** @internal */
  openSuccessor(chain: readonly Candidate[]): OpenedBackend {
    return openBackend(chain, this.settings, this.onEvents, 'runtime');
  }

  /** @internal */
  switchTo(opened: OpenedBackend, table: SocketTable<Slot>): void {
    this.table = table;
    this.native = opened.handle;
    this.backend = opened.name;
    this.codes = opened.addon.events;
    this.unixPathMax = opened.addon.unixPathMax;
    this.events = opened.handle.events;
    this.referenced = false;
    this.native.unref();
    this.updateRef();
    if (this.table.count('connection') === 0) for (const done of this.idleWaiters) done();
    if (this.pump.wanted) this.native.start();
  }

  /** @internal */
  announceFallback(record: FallbackRecord): void {
    guarded(() => this.emit('fallback', record));
  }

  /** @internal */
  failed(error: IomuxError): void {
    this.failure = error;
    this.referenced = false;
    for (const done of this.idleWaiters) done();
    this.pump.release();
    if (this.listenerCount('error') > 0) guarded(() => this.emit('error', error));
  }

  /** @internal Keeps a replaced backend's counters, so totals survive the switch. */
  retire(old: NativeBackendHandle): void {
    this.counters.retire(old);
  }
}

/** Closes `listener` when `signal` aborts; the abort listener goes when the listener closes. */
function closeOnAbort(listener: Listener, signal: AbortSignal): void {
  const onAbort = (): void => {
    listener.close();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  listener.once('close', () => {
    signal.removeEventListener('abort', onAbort);
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
