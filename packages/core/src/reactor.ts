import { lookup } from 'node:dns/promises';
import { closeSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { constants as osConstants } from 'node:os';
import {
  AUTO_ORDER,
  getBackend,
  type NativeAddon,
  type NativeBackendHandle,
  type NativeBackendOptions,
  type NativeCounters,
  type NativeEventCodes,
} from './backend.js';
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
import { UdpSocket, type UdpHost } from './udp.js';
import { runTicks, type TickFn, type TickLoop, type TickLoopOptions } from './tick-loop.js';
import { NativeTimers, type TimerSource } from './timers.js';
import { WorkerPool, type WorkerPoolOptions, type WorkerTaskOptions } from './worker-pool.js';
import { ReactorMetrics, channels, type MetricsSnapshot, type PollObserver } from './metrics.js';

/** Faults to inject, for tests and for rehearsing failure. */
export interface FaultInjection {
  /** Make creating these backends fail with this errno (name like `'EPERM'` or number). */
  setup?: Partial<Record<BackendName, string | number>>;
  /** Make the backend's poll fail after this many successful polls. */
  pollAfter?: Partial<Record<BackendName, number>>;
  /** Make the backend's poll fail once it has read this many bytes. */
  afterBytes?: Partial<Record<BackendName, number>>;
  /**
   * Make the backend's own kernel call (epoll_wait, select, io_uring_enter, ...) fail inside
   * poll after this many successful ones: the engine may already have built part of a batch
   * (leftovers, reaped completions), which must still be delivered before the fallback.
   */
  kernelAfter?: Partial<Record<BackendName, number>>;
  /** The errno a failing poll reports (default `EIO`). */
  pollErrno?: string | number;
}

/** Anything with pino's method shape; `debug` lines are only built when `isLevelEnabled` allows. */
export interface Logger {
  /** Per-poll detail; only called when enabled. */
  debug(obj: object, msg?: string): void;
  /** Notable state changes. */
  info(obj: object, msg?: string): void;
  /** Fallbacks and other degradations. */
  warn(obj: object, msg?: string): void;
  /** pino's level check, used to keep disabled levels free. */
  isLevelEnabled?(level: string): boolean;
}

/** Reactor options that are not part of the I/O configuration document. */
export interface ReactorOptions {
  /** Environment to read `IOMUX_BACKEND` from. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Queued bytes at which `write()` returns false. Default 64 KiB. */
  highWaterMark?: number;
  /** Keep our side open after the peer ends (you call `end()` yourself). Default false. */
  allowHalfOpen?: boolean;
  /** Largest single read in bytes. Default 64 KiB. */
  readChunk?: number;
  /** Bytes of read data one poll can carry. Default 1 MiB. */
  slabBytes?: number;
  /** How long `close()` waits for connections to flush and close gracefully. Default 2000 ms. */
  closeTimeoutMs?: number;
  /** Dispatch events from Node's loop as they arrive. Set false to pump with `pollEvents()`. Default true. */
  autoRun?: boolean;
  /** Fault injection. */
  faults?: FaultInjection;
  /** A pino-compatible logger. Default: none. */
  logger?: Logger;
  /**
   * The worker pool behind {@link Reactor.offload} (piscina). Options: `filename` names the worker
   * module; the pool starts on the first offload. Or a {@link WorkerPool} you created: offload
   * uses it at once. Either way `metrics().workers` reports it and it closes with the reactor.
   */
  workers?: WorkerPoolOptions | WorkerPool;
  /**
   * Time every batch for the `io_wait_duration_ms` histogram and the per-poll observers. Counters
   * are kept natively either way. Default true.
   */
  metrics?: boolean;
}

/** Options of {@link Reactor.listen}. */
export interface ListenOptions {
  /** IP address or host name to bind. Default `0.0.0.0`. */
  host?: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** Pending-connection queue length. Default 511. */
  backlog?: number;
  /** SO_REUSEPORT, so several reactors (threads, processes) can share the port. Default false. */
  reusePort?: boolean;
  /** For IPv6 hosts: refuse IPv4-mapped peers. Default false. */
  ipv6Only?: boolean;
}

/** Options of {@link Reactor.udp}. */
export interface UdpOptions {
  /** IP address or host name to bind. Default `0.0.0.0`. */
  host?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /** SO_REUSEPORT. Default false. */
  reusePort?: boolean;
  /** For IPv6 hosts: refuse IPv4-mapped peers. Default false. */
  ipv6Only?: boolean;
  /** Receive size per datagram; longer datagrams arrive cut and flagged `truncated`. Default 65536. */
  maxDatagram?: number;
}

/** Options of {@link Reactor.connect}. */
export interface ConnectOptions {
  /** IP address or host name. Default `127.0.0.1`. */
  host?: string;
  /** Port to connect to. */
  port: number;
}

/** One entry of {@link Reactor.fallbackHistory}: a backend that could not be used, and why. */
export interface FallbackRecord {
  /** The backend that failed. */
  backend: BackendName;
  /** Attempt number for that backend (1-based). */
  attempt: number;
  /** Why it failed. */
  cause: string;
  /** When (ms since epoch). */
  at: number;
  /** At start-up, or while serving. */
  phase: 'startup' | 'runtime';
  /** For a runtime fallback: where the sockets went, how many, and how long the move took. */
  migration?: MigrationSummary;
}

/** What a runtime fallback moved. */
export interface MigrationSummary {
  /** The backend that took over. */
  to: BackendName;
  /** Listeners, connections and pending connects moved. */
  sockets: number;
  /** Time the move took, in ms. */
  ms: number;
}

/** A snapshot of a reactor's counters. */
export interface ReactorStats extends NativeCounters {
  /** Backend in use. */
  backend: BackendName;
  /** Open connections. */
  connections: number;
  /** Open listeners. */
  listeners: number;
}

/** Events of a {@link Listener}. */
export interface ListenerEvents {
  /** Accepting failed (EMFILE, ...); the listener stays open. Emitted only when listened to. */
  error: [error: IomuxError];
  /** The listener is closed. */
  close: [];
}

/** A listening socket. */
export class Listener extends EventEmitter<ListenerEvents> {
  private isClosed = false;

  /** @internal */
  constructor(
    private readonly reactor: Reactor,
    /** Backend id; it changes when a runtime fallback moves the listener to another backend. */
    public id: number,
    /** Bound address. */
    readonly host: string,
    /** Bound port (the real one when 0 was asked for). */
    readonly port: number,
    /** @internal */
    readonly onConnection: (connection: Connection) => void,
  ) {
    super();
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

interface PendingConnect {
  readonly kind: 'pending';
  resolve(connection: Connection): void;
  reject(error: IomuxError): void;
}

type Slot = Connection | Listener | UdpSocket | PendingConnect | undefined;

/** Events of a {@link Reactor}. */
export interface ReactorEvents {
  /** The backend failed while serving. */
  error: [error: IomuxError];
  /** A backend could not be used and another took over. */
  fallback: [record: FallbackRecord];
}

const DEFAULTS = {
  highWaterMark: 64 * 1024,
  readChunk: 64 * 1024,
  slabBytes: 1024 * 1024,
  closeTimeoutMs: 2000,
} as const;

function errnoOf(value: string | number): number {
  if (typeof value === 'number') return value;
  const errno = (osConstants.errno as Record<string, number | undefined>)[value];
  if (errno === undefined)
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `unknown errno name in fault injection: ${value}`,
    );
  return errno;
}

function positiveInt(
  name: string,
  value: number | undefined,
  min: number,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${name} must be an integer >= ${min}, got ${String(value)}`,
    );
  }
  return value;
}

function checkPort(port: unknown, what: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${what}: port must be an integer from 0 to 65535, got ${String(port)}`,
    );
  }
  return port;
}

async function resolveHost(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  try {
    return (await lookup(host)).address;
  } catch (err) {
    throw new IomuxError('ENOTFOUND', `cannot resolve host ${host}`, {
      syscall: 'getaddrinfo',
      cause: err,
    });
  }
}

/**
 * An event loop over one backend, running inside Node's own loop. Create it with
 * {@link createReactor}.
 */
export class Reactor extends EventEmitter<ReactorEvents> implements ConnectionHost, UdpHost {
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
  private readonly sizes: NativeSizes;
  private readonly closeTimeoutMs: number;
  private slots: Slot[] = [];
  private connections = 0;
  private listeners_ = 0;
  private pendingConnects = 0;
  private udpSockets = 0;
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
    this.highWaterMark = positiveInt(
      'highWaterMark',
      options.highWaterMark,
      1,
      DEFAULTS.highWaterMark,
    );
    this.allowHalfOpen = options.allowHalfOpen ?? false;
    this.closeTimeoutMs = positiveInt(
      'closeTimeoutMs',
      options.closeTimeoutMs,
      0,
      DEFAULTS.closeTimeoutMs,
    );
    const readChunk = positiveInt('readChunk', options.readChunk, 1024, DEFAULTS.readChunk);
    const slabBytes = positiveInt(
      'slabBytes',
      options.slabBytes,
      readChunk,
      Math.max(DEFAULTS.slabBytes, readChunk),
    );
    this.options = options;
    if (options.workers instanceof WorkerPool) this.pool = options.workers;
    else this.workerOptions = options.workers;
    const logger = options.logger;
    this.debugPolls = logger !== undefined && (logger.isLevelEnabled?.('debug') ?? true);
    this.timeBatches = options.metrics ?? true;
    this.sizes = { maxEvents: config.maxEvents, readChunk, slabBytes };
    const opened = openBackend(candidates(config), options, this.sizes, this.onEvents);
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
    this.slots[id] = listener;
    this.listeners_ += 1;
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
      this.slots[id] = { kind: 'pending', resolve, reject };
      this.pendingConnects += 1;
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
    if (maxDatagram > 65536 || maxDatagram + 20 > this.sizes.slabBytes) {
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
    );
    if (id < 0) throw socketError(id, 'udp', this.detail(id, `${host}:${port}`));
    const socket = new UdpSocket(this, id);
    this.slots[id] = socket;
    this.udpSockets += 1;
    this.updateRef();
    return socket;
  }

  /** @internal */
  forgetUdp(id: number): void {
    if (!(this.slots[id] instanceof UdpSocket)) return;
    this.udpSockets -= 1;
    this.slots[id] = undefined;
    this.updateRef();
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
    return this.connections;
  }

  /** Counters of the backend and the reactor. */
  stats(): ReactorStats {
    return {
      ...this.totals(),
      backend: this.backend,
      connections: this.connections,
      listeners: this.listeners_,
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
      connections_open: this.connections,
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
    const c = this.native.counters();
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
    if (!this.running) this.native.start();
    for (const [id, slot] of this.slots.entries()) {
      if (slot instanceof Listener || slot instanceof UdpSocket) slot.close();
      else if (slot !== undefined && !(slot instanceof Connection)) {
        this.native.destroy(id);
        this.forgetSlot(id);
        slot.reject(
          new IomuxError(
            'IOMUX_REACTOR_CLOSED',
            'reactor closed before the connection was established',
          ),
        );
      }
    }
    for (const slot of this.slots) if (slot instanceof Connection) slot.endByReactor();
    if (this.connections > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.closeTimeoutMs);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.idleWaiters.add(done);
      });
    }
    for (const slot of this.slots) if (slot instanceof Connection) slot.destroy();
    await this.pool?.close();
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.isClosed = true;
    this.native.close();
    this.nativeTimers.close();
    for (const waiter of this.waiters) waiter(0);
    this.waiters = [];
  }

  /** @internal */
  forget(id: number): void {
    const slot = this.slots[id];
    if (slot instanceof Connection) {
      this.connections -= 1;
      if (channels.connectionClose.hasSubscribers)
        channels.connectionClose.publish({ backend: this.backend, id, error: slot.error });
    }
    this.forgetSlot(id);
    if (this.connections === 0) for (const done of this.idleWaiters) done();
  }

  /** @internal */
  closeListener(listener: Listener): void {
    if (this.slots[listener.id] !== listener) return;
    this.native.destroy(listener.id);
    this.listeners_ -= 1;
    this.forgetSlot(listener.id);
  }

  private forgetSlot(id: number): void {
    const slot = this.slots[id];
    if (slot === undefined) return;
    if (
      !(slot instanceof Connection) &&
      !(slot instanceof Listener) &&
      !(slot instanceof UdpSocket)
    )
      this.pendingConnects -= 1;
    this.slots[id] = undefined;
    this.updateRef();
  }

  private updateRef(): void {
    const wanted = this.connections + this.listeners_ + this.pendingConnects + this.udpSockets > 0;
    if (wanted === this.referenced || this.isClosed) return;
    this.referenced = wanted;
    if (wanted) this.native.ref();
    else this.native.unref();
  }

  private assertOpen(): void {
    if (this.isClosed || this.closing !== undefined)
      throw new IomuxError('IOMUX_REACTOR_CLOSED', 'the reactor is closed');
  }

  private dispatch(count: number, slab: Buffer | undefined): void {
    if (count < 0) {
      this.backendFailed(-count);
      return;
    }
    const observing = this.timeBatches || this.debugPolls || channels.poll.hasSubscribers;
    if (observing) this.observeBatch(count);
    const events = this.events;
    const codes = this.codes;
    for (let i = 0, p = 0; i < count; i += 1, p += 4) {
      const type = events[p]!;
      const id = events[p + 1]!;
      const a = events[p + 2]!;
      try {
        if (type === codes.DATA) {
          const slot = this.slots[id];
          if (slot instanceof Connection) slot.onData(slab!.subarray(a, a + events[p + 3]!));
        } else if (type === codes.ACCEPT) {
          this.accepted(id, a);
        } else if (type === codes.DRAIN) {
          const slot = this.slots[id];
          if (slot instanceof Connection) slot.onDrain();
        } else if (type === codes.END) {
          const slot = this.slots[id];
          if (slot instanceof Connection) slot.onEnd();
        } else if (type === codes.CLOSE) {
          const slot = this.slots[id];
          if (slot instanceof Connection) slot.onClose(a);
        } else if (type === codes.CONNECT) {
          this.connected(id, a);
        } else if (type === codes.DATAGRAM || type === codes.DATAGRAM_TRUNCATED) {
          const slot = this.slots[id];
          if (slot instanceof UdpSocket)
            slot.onDatagram(slab!, a, events[p + 3]!, type === codes.DATAGRAM_TRUNCATED);
        } else if (type === codes.SEND_ERROR) {
          const slot = this.slots[id];
          if (slot instanceof UdpSocket) slot.onSendError(a);
        } else if (type === codes.ACCEPT_ERROR) {
          const slot = this.slots[id];
          if (slot instanceof Listener && slot.listenerCount('error') > 0)
            slot.emit('error', socketError(a, 'accept', backendHint(this.backend, a)));
        }
      } catch (err) {
        // A throwing handler must not cost the rest of the batch; report it as uncaught.
        process.nextTick(() => {
          throw err;
        });
      }
    }
    if (observing) this.lastBatchAt = performance.now();
    if (this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const waiter of waiters) waiter(count);
      if (!this.running && !this.isClosed) this.native.stop();
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
    const listener = this.slots[listenerId];
    if (!(listener instanceof Listener)) {
      this.native.destroy(id);
      return;
    }
    const connection = new Connection(this, id);
    this.slots[id] = connection;
    this.connections += 1;
    this.updateRef();
    if (channels.connectionOpen.hasSubscribers)
      channels.connectionOpen.publish({ backend: this.backend, id, kind: 'accepted' });
    listener.onConnection(connection);
  }

  private connected(id: number, errno: number): void {
    const pending = this.slots[id];
    if (
      pending === undefined ||
      pending instanceof Connection ||
      pending instanceof Listener ||
      pending instanceof UdpSocket
    ) {
      return;
    }
    this.forgetSlot(id);
    if (errno !== 0) {
      pending.reject(socketError(errno, 'connect'));
      return;
    }
    const connection = new Connection(this, id);
    this.slots[id] = connection;
    this.connections += 1;
    this.updateRef();
    if (channels.connectionOpen.hasSubscribers)
      channels.connectionOpen.publish({ backend: this.backend, id, kind: 'connected' });
    pending.resolve(connection);
  }

  /**
   * Runtime fallback: the backend's poll failed. Every listener, connection and pending connect
   * moves to the next backend of the fallback chain with its fd, flags, unsent bytes and any bytes
   * the old backend had read but not delivered; users see one `fallback` event.
   */
  private backendFailed(errno: number): void {
    const old = this.native;
    const failed = this.backend;
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
      opened = openBackend(chain, this.options, this.sizes, this.onEvents, 'runtime');
    } catch (err) {
      this.failAll(old, errno, err);
      return;
    }
    this.fallbackHistory.push(...opened.history);
    const started = performance.now();
    const flags = opened.addon.events;
    const followUps: (() => void)[] = [];
    const oldSlots = this.slots;
    this.slots = [];
    let moved = 0;
    for (const [id, slot] of oldSlots.entries()) {
      if (slot === undefined) continue;
      const detached = old.detach(id);
      const newId =
        typeof detached === 'number'
          ? detached
          : opened.handle.adopt(detached[0], detached[1], detached[2], detached[4]);
      if (newId < 0) {
        if (typeof detached !== 'number') closeSync(detached[0]);
        this.lose(slot, socketError(newId, 'migrate'));
        continue;
      }
      moved += 1;
      this.slots[newId] = slot;
      if (slot instanceof Connection || slot instanceof Listener || slot instanceof UdpSocket)
        slot.id = newId;
      if (typeof detached !== 'number' && slot instanceof Connection) {
        const [, socketFlags, unsent, undelivered] = detached;
        // Nothing left to send: a writer waiting for 'drain' gets it now (a no-op otherwise).
        if (unsent.length === 0)
          followUps.push(() => {
            slot.onDrain();
          });
        if (undelivered.length > 0)
          followUps.push(() => {
            slot.onData(undelivered);
          });
        if ((socketFlags & flags.EOF_UNDELIVERED) !== 0)
          followUps.push(() => {
            slot.onEnd();
          });
      }
    }
    const oldCounters = old.counters();
    for (const key of Object.keys(this.retired) as (keyof NativeCounters)[])
      this.retired[key] += oldCounters[key];
    old.close();
    this.native = opened.handle;
    this.backend = opened.name;
    this.codes = opened.addon.events;
    this.events = opened.handle.events;
    this.referenced = false;
    this.native.unref();
    this.updateRef();
    if (this.running || this.waiters.length > 0) this.native.start();
    record.migration = { to: opened.name, sockets: moved, ms: performance.now() - started };
    this.options.logger?.warn(
      { from: failed, to: opened.name, sockets: moved },
      'iomux runtime fallback done',
    );
    if (channels.fallback.hasSubscribers) channels.fallback.publish(record);
    this.emit('fallback', record);
    for (const followUp of followUps) followUp();
  }

  /** No backend could take over: every socket is closed with the failure. */
  private failAll(old: NativeBackendHandle, errno: number, cause: unknown): void {
    const error = new IomuxError(
      'IOMUX_BACKEND_FAILED',
      `backend ${this.backend} failed (${errnoName(errno)}) and no fallback could take over`,
      { errno, syscall: 'poll', cause },
    );
    for (const [id, slot] of this.slots.entries()) {
      if (slot === undefined) continue;
      old.destroy(id);
      this.lose(slot, error);
    }
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  private lose(slot: Exclude<Slot, undefined>, error: IomuxError): void {
    if (slot instanceof Connection) slot.lost(error);
    else if (slot instanceof Listener || slot instanceof UdpSocket) slot.close();
    else {
      this.pendingConnects -= 1;
      slot.reject(error);
    }
  }
}

interface OpenedBackend {
  name: BackendName;
  addon: NativeAddon;
  handle: NativeBackendHandle;
  history: FallbackRecord[];
}

type NativeSizes = Pick<NativeBackendOptions, 'maxEvents' | 'readChunk' | 'slabBytes'>;

function candidates(config: ResolvedConfig): { name: BackendName; attempts: number }[] {
  const primary: BackendName[] =
    config.ioModel === 'auto'
      ? [...(AUTO_ORDER[process.platform] ?? ['select', 'blocking_io'])]
      : [config.ioModel];
  const list = primary.map((name) => ({ name, attempts: config.retry.maxAttempts }));
  for (const name of config.retry.fallback) {
    if (!list.some((c) => c.name === name)) list.push({ name, attempts: 1 });
  }
  return list;
}

function openBackend(
  chain: readonly { name: BackendName; attempts: number }[],
  options: ReactorOptions,
  sizes: NativeSizes,
  onEvents: (count: number, slab: Buffer | undefined) => void,
  phase: FallbackRecord['phase'] = 'startup',
): OpenedBackend {
  const history: FallbackRecord[] = [];
  const faults = options.faults ?? {};
  for (const { name, attempts } of chain) {
    const backend = getBackend(name);
    if (!backend.isAvailable()) {
      history.push({
        backend: name,
        attempt: 1,
        cause: backend.unavailabilityCause() ?? 'unavailable',
        at: Date.now(),
        phase,
      });
      continue;
    }
    const addon = backend.addon();
    const setupFault = faults.setup?.[name];
    const pollAfter = faults.pollAfter?.[name];
    const nativeOptions: NativeBackendOptions = { ...sizes };
    if (setupFault !== undefined) nativeOptions.faultSetupErrno = errnoOf(setupFault);
    const afterBytes = faults.afterBytes?.[name];
    if (pollAfter !== undefined) nativeOptions.faultPollAfter = pollAfter;
    if (afterBytes !== undefined) nativeOptions.faultAfterBytes = afterBytes;
    if (pollAfter !== undefined || afterBytes !== undefined)
      nativeOptions.faultPollErrno = errnoOf(faults.pollErrno ?? 'EIO');
    const kernelAfter = faults.kernelAfter?.[name];
    if (kernelAfter !== undefined)
      nativeOptions.tuning = {
        ...nativeOptions.tuning,
        faultKernelAfter: kernelAfter,
        faultKernelErrno: errnoOf(faults.pollErrno ?? 'EIO'),
      };
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      try {
        return { name, addon, handle: new addon.NativeBackend(nativeOptions, onEvents), history };
      } catch (err) {
        const errno = (err as { errno?: number }).errno;
        const cause =
          errno === undefined
            ? (err as Error).message
            : addon.probe(errno) || (err as Error).message;
        history.push({ backend: name, attempt, cause, at: Date.now(), phase });
      }
    }
  }
  const causes = history.map((r) => `${r.backend}: ${r.cause}`).join('; ');
  throw new IomuxError('IOMUX_BACKEND_UNAVAILABLE', `no usable backend (${causes})`);
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
