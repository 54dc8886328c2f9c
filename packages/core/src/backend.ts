/**
 * The Backend contract: what every native backend package provides, the same shape for epoll,
 * io_uring, kqueue, IOCP, select and blocking_io. The C++ side of the same contract is
 * `native/include/iomux/engine.h`; `native/src/addon.cc` turns it into the {@link NativeAddon}
 * described here.
 *
 * The contract is at socket level (accept, data, drain, end, close), not fd readiness, so readiness
 * kernels and completion kernels fit alike. Availability is data: a backend that cannot run here
 * says why through {@link BackendModule.unavailabilityCause}; nothing throws at import time.
 *
 * Two audiences, two entry points: `@iomux/core` exports only {@link getBackend} and
 * {@link listBackends}, which answer "can this backend run here, and if not, why?" with a plain
 * {@link BackendStatus}. The contract types and {@link getBackendModule} (the loaded addon) are
 * for backend authors and their tests, and are exported by `@iomux/core/backend-api`
 * (`backend-api.ts`).
 * @module
 */
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { devNull } from 'node:os';
import { BACKEND_NAMES, type BackendName } from './config.js';
import { IomuxError } from './errors.js';

/** Event type codes in the shared event array (one record = four int32: type, id, a, b). */
export interface NativeEventCodes {
  /** id: new connection, a: listener id. */
  readonly ACCEPT: number;
  /** id: connection, a: 0 or errno (the id is released on error). */
  readonly CONNECT: number;
  /** id: connection, a: offset into the batch's slab, b: length. */
  readonly DATA: number;
  /** id: connection; the peer will send no more. */
  readonly END: number;
  /** id: connection; its write queue became empty. */
  readonly DRAIN: number;
  /** id: socket closed by the backend and id released; a: 0 or errno. */
  readonly CLOSE: number;
  /** id: listener, a: errno of a failed accept (EMFILE, ...); the listener stays open. */
  readonly ACCEPT_ERROR: number;
  /** int32 per event record (4). */
  readonly EVENT_INTS: number;
  /** Flag bit of {@link NativeBackendHandle.detach}: the backend read EOF but did not deliver END. */
  readonly EOF_UNDELIVERED: number;
  /** id: UDP socket, a: slab offset of a 20-byte sender header then the payload, b: payload length. */
  readonly DATAGRAM: number;
  /** As DATAGRAM, but the datagram was longer than the receive size and was cut. */
  readonly DATAGRAM_TRUNCATED: number;
  /** id: UDP socket, a: errno of a send that failed after being queued, or an ICMP error. */
  readonly SEND_ERROR: number;
}

/**
 * Cumulative counters a backend keeps; {@link Reactor.stats} sums them over the backend in use and
 * every backend a runtime fallback replaced.
 */
export interface BackendCounters {
  /** Polls of the kernel (batches drained). */
  polls: number;
  /** Events delivered to JS (the spec's `io_events_processed`). */
  events: number;
  /** Bytes received. */
  bytesRead: number;
  /** Bytes handed to the kernel. */
  bytesWritten: number;
  /** Connections accepted. */
  accepted: number;
  /** Sockets closed (connections and listeners). */
  closed: number;
  /** Writes the kernel did not take at once, so they were queued natively. */
  writesQueued: number;
  /** Failed accepts (EMFILE, ...). */
  acceptErrors: number;
  /** Read arenas allocated so far (the memory batches are read into). */
  readArenas: number;
  /** Arenas taken again from the pool after JS dropped every view of them. */
  readArenasReused: number;
}

/**
 * The former name of {@link BackendCounters}, still imported by `reactor.ts`.
 * @internal
 */
export type NativeCounters = BackendCounters;

/** Options a native backend is created with. */
export interface NativeBackendOptions {
  /** Capacity of one event batch. */
  maxEvents: number;
  /** Largest single read. */
  readChunk: number;
  /** Bytes of read data one batch can carry. */
  slabBytes: number;
  /**
   * `'owned'`: each batch's bytes stay valid while JS holds a view; `'transient'`: every batch
   * reuses one buffer, valid only until the callback returns. Default `'owned'`.
   */
  readBuffers?: 'owned' | 'transient';
  /**
   * Backend tuning knobs by name (`iouringSqEntries`, `blockingMaxThreads`, ...), already validated
   * in TypeScript; a backend ignores names it does not know.
   */
  tuning?: Record<string, number>;
  /** Fault injection: make setup fail with this errno. */
  faultSetupErrno?: number;
  /** Fault injection: fail every poll after this many successful ones... */
  faultPollAfter?: number;
  /** Fault injection: ...or once this many bytes were read... */
  faultAfterBytes?: number;
  /** ...with this errno (default EIO). */
  faultPollErrno?: number;
}

/**
 * Receives one batch: `count` event records in {@link NativeBackendHandle.events}, and the read
 * arena the batch's DATA offsets point into (with `readBuffers: 'owned'` views into it stay valid
 * forever; with `'transient'` only until the callback returns). A negative count is `-errno`: the backend
 * itself failed and must not be polled again.
 */
export type NativeEventsCallback = (count: number, slab: Buffer | undefined) => void;

/** What {@link NativeBackendHandle.detach} returns for a socket that left its backend. */
export type DetachedSocket = [
  fd: number,
  flags: number,
  unsent: Buffer,
  undelivered: Buffer,
  maxDatagram: number,
  accepted: number[],
];

/**
 * One backend instance. Methods never throw for socket failures: they return `-errno`.
 */
export interface NativeBackendHandle {
  /** The shared event array the batches are written into. */
  readonly events: Int32Array;
  /** Opens a listener on an IP literal, or (port -1) on a Unix socket path. Returns its id or -errno. */
  listen(
    host: string,
    port: number,
    backlog: number,
    reusePort: boolean,
    ipv6Only: boolean,
  ): number;
  /**
   * Starts a connect to an IP literal, or (port -1) to a Unix socket path, from `localAddress`
   * (an IP literal; absent or null: the kernel picks) and `localPort` (absent or 0: any). Returns
   * the connection id or -errno (a failed bind of the local address included); CONNECT follows.
   */
  connect(host: string, port: number, localAddress?: string | null, localPort?: number): number;
  /** Sends at once what the kernel takes, queues the rest. Returns bytes still queued or -errno. */
  write(id: number, data: Uint8Array): number;
  /** Vectored {@link write}. */
  writev(id: number, data: readonly Uint8Array[]): number;
  /**
   * {@link write} of `data` to each of the first `count` ids, in order, in one call; `results[i]`
   * gets the bytes `ids[i]` still has queued, or -errno. The sockets that queue part of it share
   * one native copy. Returns how many queued, or -EINVAL when `count` exceeds either array.
   */
  broadcast(ids: Int32Array, count: number, data: Uint8Array, results: Float64Array): number;
  /** Pauses (false) or resumes (true) reading, or accepting for a listener. */
  setReading(id: number, reading: boolean): number;
  /** Half-closes once the queue is flushed. 1: the socket is already fully closed (no CLOSE follows). */
  shutdown(id: number): number;
  /** Closes at once, dropping queued writes; no CLOSE follows. */
  destroy(id: number): number;
  /**
   * `[ip, port, family]` of the local (peer = false) or remote end, `[path, 0, 0]` for a Unix
   * socket (path `''` for an unnamed end, such as a connecting client's), or -errno.
   */
  address(id: number, peer: boolean): [string, number, 0 | 4 | 6] | number;
  /** Drains ready events now, synchronously, through the callback. Returns the count or -errno. */
  poll(): number;
  /** Starts delivering batches from Node's event loop as the kernel reports work. */
  start(): number;
  /** Stops delivering batches from the event loop; {@link poll} still works. */
  stop(): number;
  /** Lets the backend keep the process alive while started (the default). */
  ref(): void;
  /** Lets the process exit even while started. */
  unref(): void;
  /** Cumulative counters. */
  counters(): BackendCounters;
  /** Closes every socket and the kernel object; the handle is unusable afterwards. */
  close(): void;
  /**
   * Forgets a socket without closing it. Returns `[fd, flags, unsent, undelivered, maxDatagram,
   * accepted]`: the fd, state flags, bytes still to send, bytes read but not delivered, a UDP
   * socket's datagram size, and a listener's accepted but never announced connections (open
   * fds, which the caller then owns). `handOver`: this socket
   * alone leaves while the backend serves on (transfer, toNetSocket); otherwise a runtime
   * fallback, which moves every socket (io_uring then settles its whole ring once).
   */
  detach(id: number, handOver?: boolean): DetachedSocket | number;
  /** Takes over a detached socket. Returns its new id or -errno. */
  adopt(fd: number, flags: number, unsent: Uint8Array, maxDatagram: number): number;
  /**
   * Checks that `fd` is a connected stream socket (reactor.adopt() takes no other) and returns
   * it, or with `duplicate` a close-on-exec duplicate of it; -errno (ENOTSOCK, EBADF, EPROTOTYPE
   * for a datagram socket, EINVAL for a listener).
   */
  adoptable(fd: number, duplicate: boolean): number;
  /** Binds a UDP socket on an IP literal. Returns its id or -errno (EOPNOTSUPP: no UDP here). */
  udpOpen(
    host: string,
    port: number,
    reusePort: boolean,
    ipv6Only: boolean,
    maxDatagram: number,
    reuseAddr: boolean,
  ): number;
  /** Sends one datagram (host null: to the connected peer). 0 sent, 1 queued, or -errno. */
  udpSend(id: number, host: string | null, port: number, data: Uint8Array): number;
  /**
   * Sends up to 1024 datagrams in one call (sendmmsg where the backend has it). Returns
   * `[taken, queued, errno]`: how many were sent or queued from the first, how many of those
   * wait in the queue, and why the next one was refused; or -errno when the socket failed.
   */
  udpSendBatch(
    id: number,
    buffers: Uint8Array[],
    hosts: (string | null)[],
    ports: number[],
  ): [number, number, number] | number;
  /**
   * Moves a UDP socket's sends to a thread of their own (`UdpOptions.sendThread`): 0, or -errno
   * (EOPNOTSUPP where the backend has none, EEXIST when the socket has one).
   */
  udpSendThread(id: number): number;
  /** Sets the default peer of a UDP socket. */
  udpConnect(id: number, host: string, port: number): number;
  /**
   * Sets a socket option by name: broadcast, ttl, multicastTTL, multicastLoopback,
   * addMembership, dropMembership, recvBufferSize, sendBufferSize, and for TCP noDelay,
   * keepAlive, keepAliveIdle (seconds) and lingerReset (1: the next close sends RST). 0 or -errno.
   */
  setOption(id: number, name: string, value: number, group?: string, iface?: string): number;
  /** Reads an option {@link setOption} sets (not the memberships): its value (>= 0) or -errno. */
  getOption(id: number, name: string): number;
}

/** What a backend package's loader returns: its compiled addon. */
export interface NativeAddon {
  /** The backend name it implements. */
  readonly name: string;
  /** `''` when usable here, else why not. `simulatedErrno` explains a setup failure with that errno. */
  probe(simulatedErrno?: number): string;
  /** Event type codes. */
  readonly events: NativeEventCodes;
  /** The backend class. */
  readonly NativeBackend: NativeBackendConstructor;
  /** The longest Unix socket path this platform takes, in bytes; 0 where there are none. */
  readonly unixPathMax: number;
  /**
   * A one-shot timer with sub-millisecond resolution (a timerfd on Linux, an EVFILT_TIMER on macOS
   * and FreeBSD).
   */
  readonly PreciseTimer?: PreciseTimerConstructor;
  /** Sets the calling thread's scheduling policy; 0 or -errno (-ENOSYS off Linux). */
  setThreadScheduling?(policy: string, priority: number): number;
  /** Pins the calling thread to exactly these CPUs; 0 or -errno (-ENOSYS off Linux). */
  setThreadAffinity?(cpus: readonly number[]): number;
  /** Pins every other thread of the process to exactly these CPUs; how many, or -errno. */
  setOtherThreadsAffinity?(cpus: readonly number[]): number;
  /** The CPUs the calling thread may run on now, ascending, or -errno. */
  threadAffinity?(): number[] | number;
  /** The CPUs the calling thread could be pinned to (its cpuset, online), or -errno. */
  allowedCpus?(): number[] | number;
  /**
   * Set by a test-only build whose kernel API is emulated (the kqueue backend on Linux): what runs
   * underneath, e.g. `'kqueue, emulated on Linux (test-only)'`.
   */
  readonly emulation?: string;
}

/** A native one-shot timer whose callback runs from Node's loop. */
export interface PreciseTimerHandle {
  /** Fires once, `ms` (fractional) from now, replacing any earlier deadline. 0 or -errno. */
  arm(ms: number): number;
  /** Cancels a pending fire. 0 or -errno. */
  disarm(): number;
  /** Releases the timer; it never fires again. */
  close(): void;
}

/** Creates a {@link PreciseTimerHandle} calling `onFire` on each expiry. */
export type PreciseTimerConstructor = new (onFire: () => void) => PreciseTimerHandle;

/** Creates a backend instance; throws (with `errno`) when the kernel refuses. */
export type NativeBackendConstructor = new (
  options: NativeBackendOptions,
  onEvents: NativeEventsCallback,
) => NativeBackendHandle;

/** A backend as the reactor sees it: availability as data, and a factory. */
export interface BackendModule {
  /** Backend name. */
  readonly name: BackendName;
  /** True when the backend can run on this machine. Never throws. */
  isAvailable(): boolean;
  /** Why the backend cannot run here, or undefined when it can. Never throws. */
  unavailabilityCause(): string | undefined;
  /** When the available build is a test-only emulation (kqueue on Linux), what it is. Never throws. */
  emulation(): string | undefined;
  /** The loaded addon; throws {@link IomuxError} `IOMUX_BACKEND_UNAVAILABLE` when unavailable. */
  addon(): NativeAddon;
}

interface BackendPackage {
  readonly packageName: string;
  readonly platforms: readonly NodeJS.Platform[];
  /**
   * A platform where a test-only build of the backend runs over an emulation of its kernel API,
   * loaded only when the environment variable is `1` (never picked by `io_model: 'auto'`, which
   * does not list it there).
   */
  readonly emulatedOn?: { readonly platform: NodeJS.Platform; readonly env: string };
}

const PACKAGES: Record<BackendName, BackendPackage> = {
  epoll: { packageName: '@iomux/native-epoll', platforms: ['linux'] },
  io_uring: { packageName: '@iomux/native-iouring', platforms: ['linux'] },
  kqueue: {
    packageName: '@iomux/native-kqueue',
    platforms: ['darwin', 'freebsd'],
    emulatedOn: { platform: 'linux', env: 'IOMUX_KQUEUE_EMULATION' },
  },
  iocp: { packageName: '@iomux/native-iocp', platforms: ['win32'] },
  select: {
    packageName: '@iomux/fallback-select',
    platforms: ['linux', 'darwin', 'freebsd', 'win32'],
  },
  blocking_io: {
    packageName: '@iomux/fallback-select',
    platforms: ['linux', 'darwin', 'freebsd'],
  },
};

/**
 * The best-first order `io_model: 'auto'` tries on each platform. io_uring leads on Linux only
 * once it measures ahead of epoll (see the benchmark report); until then epoll leads.
 */
export const AUTO_ORDER: Partial<Record<NodeJS.Platform, readonly BackendName[]>> = {
  linux: ['epoll', 'io_uring', 'select', 'blocking_io'],
  darwin: ['kqueue', 'select', 'blocking_io'],
  freebsd: ['kqueue', 'select', 'blocking_io'],
  win32: ['iocp', 'select'],
};

const localRequire = createRequire(import.meta.url);

/**
 * Entry files of the backend packages, resolved once at import. Node remembers a resolution that
 * failed (even one that failed for lack of fds) for the life of the process, so a package is
 * resolved while the process can still open files, and later loads go by path.
 */
const packagePaths = new Map<string, string>();
for (const { packageName } of Object.values(PACKAGES)) {
  if (packagePaths.has(packageName)) continue;
  try {
    packagePaths.set(packageName, localRequire.resolve(packageName));
  } catch {
    // Not installed (or not resolvable now): loadAddon reports the cause when asked.
  }
}

/** Whether the backend may load here: natively, or as its test-only emulation when enabled. */
function platformCause(name: BackendName, pkg: BackendPackage): string | undefined {
  if (pkg.platforms.includes(process.platform)) return undefined;
  const cause = `${name} does not run on ${process.platform} (only ${pkg.platforms.join(', ')})`;
  const emulated = pkg.emulatedOn;
  if (emulated?.platform !== process.platform) return cause;
  if (process.env[emulated.env] === '1') return undefined;
  return `${cause}; a test-only emulation loads with ${emulated.env}=1`;
}

function loadAddon(name: BackendName): { addon?: NativeAddon; cause?: string } {
  const pkg = PACKAGES[name];
  const cause = platformCause(name, pkg);
  if (cause !== undefined) return { cause };
  let loaders: Record<string, (() => unknown) | undefined>;
  try {
    loaders = localRequire(packagePaths.get(pkg.packageName) ?? pkg.packageName) as Record<
      string,
      (() => unknown) | undefined
    >;
  } catch (err) {
    return {
      cause: `package ${pkg.packageName} is not installed (${(err as Error).message.split('\n')[0] ?? ''})`,
    };
  }
  const loader = loaders[name];
  if (loader === undefined) return { cause: `package ${pkg.packageName} does not provide ${name}` };
  let addon: NativeAddon;
  try {
    addon = loader() as NativeAddon;
  } catch (err) {
    return {
      cause: `${name} addon could not be loaded: ${(err as Error).message.split('\n')[0] ?? ''}`,
    };
  }
  const probe = addon.probe();
  return probe === '' ? { addon } : { cause: probe };
}

/** strerror texts of failures that come from a momentary shortage, not from the platform. */
const TRANSIENT_CAUSES = [
  'Too many open files', // EMFILE, and ENFILE's "... in system"
  'Cannot allocate memory', // ENOMEM
  'Resource temporarily unavailable', // EAGAIN
  'No buffer space available', // ENOBUFS
  'Interrupted system call', // EINTR
];

function isTransient(cause: string): boolean {
  const lower = cause.toLowerCase();
  return TRANSIENT_CAUSES.some((text) => lower.includes(text.toLowerCase()));
}

/**
 * True when the process cannot open a file right now (EMFILE, ENFILE). Node's module resolution
 * reports a package it could not stat for lack of fds as "Cannot find module", with no errno in
 * the message, so a failed load is checked against this before it is taken as definitive.
 */
function outOfFds(): boolean {
  try {
    closeSync(openSync(devNull, 'r'));
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE';
  }
}

class LoadedBackend implements BackendModule {
  private state: { addon?: NativeAddon; cause?: string } | undefined;
  constructor(readonly name: BackendName) {}

  private load(): { addon?: NativeAddon; cause?: string } {
    if (this.state !== undefined) return this.state;
    const state = loadAddon(this.name);
    // Only a definitive answer is kept: a load or probe that failed for lack of fds or memory may
    // pass on the next call, so it is asked again instead of marking the backend unavailable for
    // good.
    if (state.cause === undefined || !(isTransient(state.cause) || outOfFds())) this.state = state;
    return state;
  }

  isAvailable(): boolean {
    return this.load().addon !== undefined;
  }

  unavailabilityCause(): string | undefined {
    return this.load().cause;
  }

  emulation(): string | undefined {
    return this.load().addon?.emulation;
  }

  addon(): NativeAddon {
    const { addon, cause } = this.load();
    if (addon === undefined) {
      throw new IomuxError(
        'IOMUX_BACKEND_UNAVAILABLE',
        `backend ${this.name} is unavailable: ${cause ?? 'unknown cause'}`,
      );
    }
    return addon;
  }
}

const modules = new Map<BackendName, BackendModule>(
  BACKEND_NAMES.map((n) => [n, new LoadedBackend(n)]),
);

/**
 * The backend module of that name, for backend authors and tests that drive an addon directly
 * (the addon loads on the first question; availability is checked without throwing).
 * @throws {@link index!IomuxError} `IOMUX_INVALID_ARGUMENT` for a name that is not a backend.
 * @example
 * ```ts
 * import { getBackendModule } from '@iomux/core/backend-api';
 *
 * const epoll = getBackendModule('epoll');
 * if (epoll.isAvailable()) {
 *   const { NativeBackend, events } = epoll.addon();
 *   console.log(typeof NativeBackend, events.EVENT_INTS); // 'function' 4
 * }
 * ```
 */
export function getBackendModule(name: BackendName): BackendModule {
  const module = modules.get(name);
  if (module === undefined)
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `backend must be one of ${BACKEND_NAMES.join(', ')}, got ${name}`,
    );
  return module;
}

/** Whether a backend can run here: one row of {@link listBackends}, or {@link getBackend}'s answer. */
export interface BackendStatus {
  /** Backend name. */
  name: BackendName;
  /** True when it can run here. */
  available: boolean;
  /** Why it cannot, when it cannot. */
  cause: string | undefined;
  /** Set when the available build is a test-only emulation, e.g. `'kqueue, emulated on Linux (test-only)'`. */
  emulation?: string;
}

/**
 * Whether the backend of that name can run on this machine, and if not, why. Never throws for a
 * backend that cannot run: that is data. A definitive answer is kept for the life of the process;
 * one that failed for a momentary shortage (no free fd, no memory) is asked again on the next call.
 * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for a name that is not a backend.
 * @example
 * ```ts
 * import { createReactor, getBackend } from '@iomux/core';
 *
 * const uring = getBackend('io_uring');
 * if (!uring.available) console.warn(`io_uring is off here: ${uring.cause}`);
 * const reactor = createReactor({ ioModel: uring.available ? 'io_uring' : 'auto' });
 * ```
 */
export function getBackend(name: BackendName): BackendStatus {
  const backend = getBackendModule(name);
  const emulation = backend.emulation();
  return {
    name,
    available: backend.isAvailable(),
    cause: backend.unavailabilityCause(),
    ...(emulation === undefined ? {} : { emulation }),
  };
}

/**
 * Every known backend with its availability here, e.g. for a status table.
 * @example
 * ```ts
 * import { listBackends } from '@iomux/core';
 *
 * console.table(listBackends()); // name, available, cause (and emulation for a test-only build)
 * const usable = listBackends().filter((b) => b.available).map((b) => b.name);
 * ```
 */
export function listBackends(): BackendStatus[] {
  return BACKEND_NAMES.map(getBackend);
}
