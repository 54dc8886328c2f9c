/**
 * How does a socket from elsewhere join a reactor, and how does one leave it for node:net?
 * {@link adoptSocket} takes a `net.Socket` (node:http's `'upgrade'` or `'connection'`), a raw fd,
 * or a {@link ConnectionTicket} from another reactor, through the backend's adopt (the same one a
 * runtime fallback uses). Bytes node had already read (the upgrade `head`, the socket's
 * readable buffer) are delivered first. {@link toNetSocket} is the reverse.
 */
import { closeSync } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { NativeEventCodes } from './backend.js';
import type { BackendName } from './config.js';
import { Connection, type ConnectionHost, type ConnectionSettings } from './connection.js';
import { IomuxError, socketError } from './errors.js';
import type { Slot } from './fallback.js';
import { channels } from './metrics.js';
import type { SocketTable } from './socket-table.js';
import { isConnectionTicket, type ConnectionTicket } from './transfer.js';

/**
 * What `reactor.adopt()` takes: a connected `net.Socket` (typed as the `stream.Duplex` node:http's
 * `'upgrade'` event gives, so no cast is needed; any other Duplex is refused with
 * `IOMUX_INVALID_ARGUMENT`), an fd, or a connection ticket.
 */
export type AdoptSource = net.Socket | Duplex | number | ConnectionTicket;

/** Options of `reactor.adopt()`. */
export interface AdoptOptions {
  /**
   * Bytes read from the socket before it was handed over that no one consumed, delivered before
   * anything else: node:http's upgrade `head`.
   * @example
   * ```ts
   * import http from 'node:http';
   *
   * const server = http.createServer();
   * server.on('upgrade', async (req, socket, head) => {
   *   const conn = await reactor.adopt(socket, { head }); // head: the client's first bytes
   *   conn.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: game\r\nconnection: upgrade\r\n\r\n');
   *   conn.on('data', (frame) => conn.write(frame));
   * });
   * ```
   */
  head?: Uint8Array;
  /** As `listen()`'s option; default: the ticket's setting, else the reactor's. */
  allowHalfOpen?: boolean;
}

/** What adoption needs from the reactor. */
export interface AdoptHost extends ConnectionHost {
  /** Backend in use, for the diagnostics channel. */
  readonly backend: BackendName;
  /** The backend's event codes (the EOF flag of a ticket). */
  readonly codes: NativeEventCodes;
  /** id → socket object. */
  readonly table: SocketTable<Slot>;
  /** Refs the backend's watcher once the table holds a socket. */
  updateRef(): void;
}

const NOTHING = Buffer.alloc(0);

/**
 * Adopts `source` (see {@link AdoptSource}); `settingsFor` resolves the connection settings from
 * an `allowHalfOpen` override (validated by the reactor).
 */
export async function adoptSocket(
  host: AdoptHost,
  source: AdoptSource,
  options: AdoptOptions,
  settingsFor: (allowHalfOpen: boolean | undefined) => ConnectionSettings,
): Promise<Connection> {
  const head = options.head === undefined ? NOTHING : Buffer.from(options.head);
  if (typeof source === 'number') {
    const id = adoptFd(host, checkedFd(host, source, false), 0, NOTHING);
    return register(host, id, settingsFor(options.allowHalfOpen), false, head, false);
  }
  if (isConnectionTicket(source)) {
    const id = adoptFd(host, source.fd, source.flags, source.unsent);
    const settings = settingsFor(options.allowHalfOpen ?? source.allowHalfOpen);
    const eof = source.endHeld || (source.flags & host.codes.EOF_UNDELIVERED) !== 0;
    const carried = Buffer.concat([head, source.undelivered]);
    return register(host, id, settings, source.paused, carried, eof);
  }
  if (source instanceof net.Socket)
    return adoptNetSocket(host, source, head, settingsFor(options.allowHalfOpen));
  throw new IomuxError(
    'IOMUX_INVALID_ARGUMENT',
    `adopt: expected a net.Socket, an fd or a connection ticket, got ${describe(source)}`,
  );
}

/** What a refused adopt() source was, for the error: its class name or its type. */
function describe(source: unknown): string {
  if (typeof source !== 'object' || source === null) return typeof source;
  const name = (source as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' ? `a ${name}` : 'an object';
}

/** The fd when it is a connected stream socket (`duplicate`: a copy of it), else the errno as an error. */
function checkedFd(host: AdoptHost, fd: number, duplicate: boolean): number {
  if (!Number.isInteger(fd) || fd < 0)
    throw new IomuxError('IOMUX_INVALID_ARGUMENT', `adopt: fd must be an integer >= 0, got ${fd}`);
  const result = host.native.adoptable(fd, duplicate);
  if (result < 0) throw socketError(result, 'adopt', `fd ${fd} is not a connected stream socket`);
  return result;
}

/** Hands `fd` to the backend; on failure the fd is closed (it was ours) and the error thrown. */
function adoptFd(host: AdoptHost, fd: number, flags: number, unsent: Uint8Array): number {
  const id = host.native.adopt(fd, flags, unsent, 0);
  if (id < 0) {
    closeSync(fd);
    throw socketError(id, 'adopt');
  }
  return id;
}

/** node's libuv handle of a net.Socket: its fd (Unix) and read control. Not public API. */
interface NodeStreamHandle {
  fd?: number;
  readStop?(): number;
}

async function adoptNetSocket(
  host: AdoptHost,
  socket: net.Socket,
  head: Buffer,
  settings: ConnectionSettings,
): Promise<Connection> {
  if (socket instanceof tls.TLSSocket)
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      'adopt: a TLSSocket carries encrypted bytes; adopt the plain socket and run TLS over toDuplex()',
    );
  if (socket.readableEncoding !== null)
    throw new IomuxError('IOMUX_INVALID_ARGUMENT', 'adopt: the socket has an encoding set');
  const handle = (socket as unknown as { _handle?: NodeStreamHandle | null })._handle;
  if (socket.destroyed || socket.connecting || socket.writableEnded || handle == null)
    throw new IomuxError('IOMUX_INVALID_ARGUMENT', 'adopt: the socket is not an open connection');
  if (typeof handle.fd !== 'number' || handle.fd < 0)
    throw new IomuxError('EOPNOTSUPP', 'adopt: this platform gives no fd for a net.Socket');
  // node reads no more; what it already read stays in the socket's buffer, taken below.
  socket.pause();
  handle.readStop?.();
  // Bytes node still has to send go out through node first, in order.
  while (socket.writableLength > 0) {
    await new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        socket.off('drain', settle);
        socket.off('close', settle);
        if (socket.destroyed)
          reject(new IomuxError('IOMUX_SOCKET_CLOSED', 'adopt: the socket closed'));
        else resolve();
      };
      socket.on('drain', settle);
      socket.on('close', settle);
    });
  }
  const id = adoptFd(host, checkedFd(host, handle.fd, true), 0, NOTHING);
  // From here to destroy() nothing yields to the event loop: node's handle reads nothing more.
  const buffered: Buffer[] = [head];
  for (let chunk: unknown = socket.read(); chunk !== null; chunk = socket.read())
    buffered.push(chunk as Buffer);
  // node closes its own fd; the connection lives on through the copy, and the peer sees nothing.
  socket.destroy();
  return register(host, id, settings, false, Buffer.concat(buffered), false);
}

/** Puts an adopted socket in the table as a Connection, with `carried` bytes (and END) first. */
function register(
  host: AdoptHost,
  id: number,
  settings: ConnectionSettings,
  paused: boolean,
  carried: Buffer,
  eof: boolean,
): Connection {
  const connection = new Connection(host, id, settings);
  host.table.set(id, connection);
  host.updateRef();
  if (channels.connectionOpen.hasSubscribers)
    channels.connectionOpen.publish({ backend: host.backend, id, kind: 'adopted' });
  // As after connect(): events wait until the caller's continuation attached its listeners.
  connection.holdEarlyEvents();
  if (paused) connection.pause();
  connection.onMigrated(carried, eof);
  return connection;
}

/**
 * Hands an iomux connection to node:net: returns a `net.Socket` on the same fd (where the
 * platform lets node open an fd: Unix). Bytes queued for sending go out first through the new
 * socket, and bytes read but not consumed are its first `'data'`. The connection closes
 * (`'close'` without error) and emits nothing else.
 * @throws {@link IomuxError} `IOMUX_SOCKET_CLOSED`, or `IOMUX_INVALID_ARGUMENT` after `end()`.
 * @example
 * ```ts
 * const socket = toNetSocket(conn); // e.g. hand a plain-TCP client to an existing node:net server
 * netServer.emit('connection', socket);
 * ```
 */
export function toNetSocket(connection: Connection): net.Socket {
  const ticket = connection.transfer();
  const socket = new net.Socket({
    fd: ticket.fd,
    allowHalfOpen: ticket.allowHalfOpen,
    readable: true,
    writable: true,
  });
  if (ticket.unsent.byteLength > 0) socket.write(ticket.unsent);
  if (ticket.undelivered.byteLength > 0) socket.unshift(Buffer.from(ticket.undelivered));
  if (ticket.paused) socket.pause();
  return socket;
}
