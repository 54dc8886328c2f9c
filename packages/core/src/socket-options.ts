/**
 * What may a caller pass to listen(), connect() and udp(), and how is it checked? The option
 * types of the socket-opening calls, their argument validators (typed `IOMUX_INVALID_ARGUMENT`
 * errors that name the field, value and allowed range) and host-name resolution.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { QueueLimitPolicy } from './connection.js';
import { IomuxError } from './errors.js';

/** Options of {@link Reactor.listen}. */
export interface ListenOptions {
  /** IP address or host name to bind. Default `0.0.0.0`. */
  host?: string;
  /** Port; 0 picks a free one. Required unless `path` is given. */
  port?: number;
  /**
   * Listens on a Unix domain socket at this path instead of TCP (`host`, `port`, `reusePort` and
   * `ipv6Only` must then be absent). As node:net: a path that exists fails with `EADDRINUSE`
   * (remove a stale one first), and closing the listener removes the socket file. A leading
   * `'\0'` names Linux's abstract namespace (no file). Not on Windows (`EAFNOSUPPORT`).
   */
  path?: string;
  /** Pending-connection queue length. Default 511. */
  backlog?: number;
  /** SO_REUSEPORT, so several reactors (threads, processes) can share the port. Default false. */
  reusePort?: boolean;
  /** For IPv6 hosts: refuse IPv4-mapped peers. Default false. */
  ipv6Only?: boolean;
  /**
   * Accepted connections stay half-open after the peer's FIN until you call `end()`. Default:
   * the reactor's `allowHalfOpen` (false).
   */
  allowHalfOpen?: boolean;
  /** Aborting it closes the listener (or rejects the listen() with `ABORT_ERR`). */
  signal?: AbortSignal;
  /**
   * Most bytes each accepted connection's native write queue may hold; a write over it is handled by
   * `queueLimitPolicy`. Default Infinity (no limit).
   */
  maxQueuedBytes?: number;
  /** `'destroy'` (default) or `'refuse'`; see {@link QueueLimitPolicy}. */
  queueLimitPolicy?: QueueLimitPolicy;
}

/** Options of {@link Reactor.udp}. */
export interface UdpOptions {
  /** IP address or host name to bind. Default `0.0.0.0`. */
  host?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /**
   * SO_REUSEPORT: several sockets (one per worker thread or process) bind the same port and the
   * kernel spreads incoming datagrams over them by source address. Default false.
   * @example
   * ```ts
   * // In each of N worker threads, each with its own reactor:
   * const socket = await reactor.udp({ host: '0.0.0.0', port: 9000, reusePort: true });
   * ```
   */
  reusePort?: boolean;
  /** For IPv6 hosts: refuse IPv4-mapped peers. Default false. */
  ipv6Only?: boolean;
  /**
   * Receive size per datagram; longer datagrams arrive cut and flagged `truncated`. Default 65536.
   * A smaller size packs more datagrams into each batch's read arena.
   * @example
   * ```ts
   * // A game protocol whose packets never exceed 1200 bytes (under the path MTU).
   * const socket = await reactor.udp({ port: 7777, maxDatagram: 1200 });
   * socket.on('message', (packet, from) => {
   *   if (from.truncated) return; // not one of ours
   * });
   * ```
   */
  maxDatagram?: number;
  /**
   * SO_REUSEADDR: let the socket bind an address another socket already uses. Default false, as
   * node:dgram: a second bind to a port in use fails with `EADDRINUSE`. Every socket sharing the
   * port must set it (multicast listeners, several processes listening on one discovery port).
   * @example
   * ```ts
   * const a = await reactor.udp({ host: '0.0.0.0', port: 5353, reuseAddr: true });
   * const b = await reactor.udp({ host: '0.0.0.0', port: 5353, reuseAddr: true }); // no EADDRINUSE
   * ```
   */
  reuseAddr?: boolean;
  /**
   * Sends on a thread of the socket's own instead of the reactor's. `send` and `sendBatch` copy
   * each datagram into the thread's queue (8 MiB at most, then `ENOBUFS`) and return; the thread
   * sends them in order with sendmmsg. For a game server's tick: on loopback and fast networks the
   * kernel's send path (and on loopback the receiver's side too) runs in the sender's call, about
   * 7 ms for 1000 datagrams on a 2-core VM, which the reactor's thread then no longer pays. The
   * price is a copy per datagram and a thread. Errors the kernel reports for a datagram then
   * arrive as `'error'` events instead of being thrown by the call; `send`/`sendBatch` return false
   * while the thread waits for room in the socket's send buffer. Backends without send threads
   * (iocp, on Windows) send on the reactor's thread: {@link UdpSocket.sendThread} tells which.
   * Default false.
   * @example
   * ```ts
   * const socket = await reactor.udp({ port: 7777, maxDatagram: 1200, sendThread: true });
   * socket.on('error', (err) => console.warn(`send: ${err.code}`)); // e.g. EMSGSIZE, ECONNREFUSED
   * ```
   */
  sendThread?: boolean;
}

/** Options of {@link Reactor.connect}. */
export interface ConnectOptions {
  /** IP address or host name. Default `127.0.0.1`. */
  host?: string;
  /** Port to connect to, 1 to 65535. Required unless `path` is given. */
  port?: number;
  /**
   * Connects to the Unix domain socket at this path instead of TCP (`host` and `port` must then
   * be absent). A path with no listener fails with `ENOENT` (no file) or `ECONNREFUSED`.
   */
  path?: string;
  /**
   * Local IP address to connect from, as node:net's `localAddress`: an IP literal of the host's
   * family (an address of the other family fails the connect with the kernel's error, `EINVAL`
   * or `EAFNOSUPPORT`; one this machine does not have, with `EADDRNOTAVAIL`). Default: the kernel
   * picks by route. Not with `path`.
   * @example
   * ```ts
   * // Leave through the second loopback address (Linux routes all of 127.0.0.0/8 to lo).
   * const conn = await reactor.connect({ host: '127.0.0.1', port: 6379, localAddress: '127.0.0.2' });
   * conn.localAddress; // '127.0.0.2'
   * ```
   */
  localAddress?: string;
  /**
   * Local port to connect from, 0 to 65535 (0: any), as node:net's `localPort`. Bound without
   * SO_REUSEADDR, so a port another socket holds fails with `EADDRINUSE`. Without `localAddress`
   * it is bound on the wildcard address of the host's family. Not with `path`.
   * @example
   * ```ts
   * // A peer that admits only a known source port.
   * const conn = await reactor.connect({ host: '10.0.0.5', port: 514, localPort: 1514 });
   * conn.localPort; // 1514
   * ```
   */
  localPort?: number;
  /** Fail with `ETIMEDOUT` if the connection is not established within this many ms. */
  timeoutMs?: number;
  /** Aborting it before the connection is established fails the connect with `ABORT_ERR`. */
  signal?: AbortSignal;
  /**
   * Most bytes a connection's native write queue may hold; a write over it is handled by
   * `queueLimitPolicy`. Default Infinity (no limit).
   */
  maxQueuedBytes?: number;
  /** `'destroy'` (default) or `'refuse'`; see {@link QueueLimitPolicy}. */
  queueLimitPolicy?: QueueLimitPolicy;

  /**
   * The connection stays half-open after the peer's FIN until you call `end()`. Default: the
   * reactor's `allowHalfOpen` (false).
   */
  allowHalfOpen?: boolean;
}

/** `value` if it is a boolean, `fallback` when absent. */
export function optionalBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${name} must be a boolean, got a ${typeof value}`,
    );
  }
  return value;
}

/**
 * The bytes to send: a Uint8Array (a Buffer) as it is, a string encoded as UTF-8; anything else is
 * `IOMUX_INVALID_ARGUMENT` naming `what`.
 */
export function bytesOf(data: unknown, what: string): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data);
  throw notBytes(data, what, 'a Uint8Array or a string');
}

/** The `IOMUX_INVALID_ARGUMENT` for `data` that is not the bytes `what` takes. */
export function notBytes(data: unknown, what: string, expected = 'a Uint8Array'): IomuxError {
  // An object from Object.create(null) has no constructor.
  const { constructor } = (data ?? {}) as { constructor?: { name?: string } };
  const got = data === null ? 'null' : typeof data === 'object' ? constructor?.name : undefined;
  return new IomuxError(
    'IOMUX_INVALID_ARGUMENT',
    `${what} must be ${expected}, got ${got ?? typeof data}`,
  );
}

/** `value` if it is an integer >= `min`, `fallback` when absent. */
export function positiveInt(
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

/** `port` if it is a valid TCP/UDP port (0 picks a free one). */
export function checkPort(port: unknown, what: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${what}: port must be an integer from 0 to 65535, got ${String(port)}`,
    );
  }
  return port;
}

/** `ms` if it is a timeout in ms (a positive integer that fits a timer), undefined when absent. */
export function optionalTimeout(name: string, ms: unknown): number | undefined {
  if (ms === undefined) return undefined;
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > 2 ** 31 - 1) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${name} must be an integer from 1 to ${2 ** 31 - 1}, got ${typeof ms === 'number' ? ms : typeof ms}`,
    );
  }
  return ms;
}

/** `signal` if it is an AbortSignal, undefined when absent. */
export function optionalSignal(name: string, signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal))
    throw new IomuxError('IOMUX_INVALID_ARGUMENT', `${name} must be an AbortSignal`);
  return signal;
}

/** The local end connect() binds: an IP literal (undefined: the wildcard) and a port (0: any). */
export interface LocalEnd {
  address: string | undefined;
  port: number;
}

/**
 * connect()'s `localAddress` and `localPort`, checked as node:net does: an IP literal (no host
 * name there) and a port from 0 to 65535. Undefined when neither is given (nothing to bind).
 */
export function checkLocalEnd(localAddress: unknown, localPort: unknown): LocalEnd | undefined {
  if (localAddress !== undefined && (typeof localAddress !== 'string' || isIP(localAddress) === 0))
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `connect: localAddress must be an IP address, got ${typeof localAddress === 'string' ? JSON.stringify(localAddress) : `a ${typeof localAddress}`}`,
    );
  if (
    localPort !== undefined &&
    (typeof localPort !== 'number' ||
      !Number.isInteger(localPort) ||
      localPort < 0 ||
      localPort > 65535)
  )
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `connect: localPort must be an integer from 0 to 65535, got ${typeof localPort === 'number' ? localPort : `a ${typeof localPort}`}`,
    );
  if (localAddress === undefined && localPort === undefined) return undefined;
  return { address: localAddress, port: localPort ?? 0 };
}

/**
 * The IP literal to bind for `local` when connecting to `host` (an IP literal): a `localPort`
 * alone binds the wildcard address of the host's family, as node:net does.
 */
export function localBindAddress(local: LocalEnd, host: string): string {
  return local.address ?? (isIP(host) === 6 ? '::' : '0.0.0.0');
}

/** `host` as an IP address: literal addresses as given, names through the system resolver. */
export async function resolveHost(host: string): Promise<string> {
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
 * `path` if it is a Unix socket path that fits `max` bytes (the platform's sun_path less its NUL),
 * with none of the TCP-only `others` options beside it.
 */
export function checkPath(
  call: string,
  path: unknown,
  max: number,
  others: Record<string, unknown>,
): string {
  if (typeof path !== 'string' || path.length === 0)
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${call}: path must be a non-empty string, got ${typeof path === 'string' ? '""' : typeof path}`,
    );
  for (const [name, value] of Object.entries(others)) {
    if (value !== undefined)
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        `${call}: ${name} cannot be combined with path (a Unix socket has no ${name})`,
      );
  }
  if (max === 0)
    throw new IomuxError(
      'EAFNOSUPPORT',
      `${call} EAFNOSUPPORT ${path}: this platform's backends have no Unix domain sockets`,
      { syscall: call },
    );
  const bytes = Buffer.byteLength(path);
  if (bytes > max)
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${call}: path is ${bytes} bytes, longer than the ${max} bytes a Unix socket path may have here`,
    );
  return path;
}
