import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { NativeBackendHandle } from './backend.js';
import { IomuxError, socketError } from './errors.js';
import { bytesOf } from './socket-options.js';

/** Where a datagram came from. */
export interface RemoteInfo {
  /** Sender IP address. */
  address: string;
  /** Sender port. */
  port: number;
  /** `IPv4` or `IPv6`. */
  family: 'IPv4' | 'IPv6';
  /** Payload bytes delivered. */
  size: number;
  /** True when the datagram was longer than `maxDatagram` and was cut. */
  truncated: boolean;
}

/** A bound UDP address. */
export interface UdpAddress {
  /** IP address. */
  address: string;
  /** Port. */
  port: number;
  /** `IPv4` or `IPv6`. */
  family: 'IPv4' | 'IPv6';
}

/** Events of a {@link UdpSocket}. */
export interface UdpSocketEvents {
  /**
   * A datagram arrived. The Buffer is a view into the batch's read arena: keep it as long as you
   * like, except with `readBuffers: 'transient'`, where it is valid only until the listener returns.
   */
  message: [message: Buffer, remote: RemoteInfo];
  /** A queued send failed, or the kernel reported an ICMP error. Emitted only when listened to. */
  error: [error: IomuxError];
  /** The socket is closed. */
  close: [];
}

/** @internal What a UDP socket needs from its reactor (the Reactor implements it). */
export interface UdpHost {
  /** The backend instance. */
  readonly native: NativeBackendHandle;
  /** Drops the socket from the reactor's table. */
  forgetUdp(socket: UdpSocket): void;
  /** True while the reactor's table maps the socket's id to this very object. */
  owns(socket: UdpSocket): boolean;
}

function formatV6(bytes: Buffer): string {
  // IPv4-mapped (::ffff:a.b.c.d): dotted tail, as inet_ntop and the TCP side print it.
  if (
    bytes.readUInt32BE(0) === 0 &&
    bytes.readUInt32BE(4) === 0 &&
    bytes.readUInt32BE(8) === 0xffff
  )
    return `::ffff:${bytes[12]!}.${bytes[13]!}.${bytes[14]!}.${bytes[15]!}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // Compress the longest run of zero groups, as inet_ntop does.
  let best = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j += 1;
    if (j - i > bestLength && j - i > 1) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLength).join(':')}`;
}

/** One datagram of {@link UdpSocket.sendBatch}: omit `port` and `address` for the connected peer. */
export interface OutgoingDatagram {
  /** The payload. */
  data: Uint8Array | string;
  /** Destination port, 1..65535. */
  port?: number;
  /** Destination IP address (a literal, not a host name). Default `127.0.0.1` when `port` is set. */
  address?: string;
}

/** IPv4 sender addresses a socket keeps as strings (the cache is cleared when full). */
const MAX_CACHED_ADDRESSES = 4096;

/** Most datagrams one native call takes. */
const MAX_SEND_BATCH = 1024;
/** What {@link UdpSocket.sendBatch}'s kept list holds between calls. */
const NO_BYTES = new Uint8Array(0);

/** Checks a destination: null for the connected peer, else the IP literal. */
function targetOf(port: number | undefined, address: string | undefined): string | null {
  if (port === undefined && address === undefined) return null;
  const target = address ?? '127.0.0.1';
  if (isIP(target) === 0)
    throw new IomuxError('IOMUX_INVALID_ARGUMENT', `UDP send needs an IP address, got ${target}`);
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `UDP send: port must be an integer from 1 to 65535, got ${String(port)}`,
    );
  }
  return target;
}

/**
 * A UDP socket of a reactor, from {@link Reactor.udp}. Datagrams arrive in batches (recvmmsg on
 * every Linux backend); sends go out at once or wait in a bounded native queue (1 MiB) that is
 * flushed with sendmmsg, or with `sendThread` are sent by a thread of the socket's own.
 * @example
 * ```ts
 * import { createReactor } from '@iomux/core';
 *
 * const reactor = createReactor({ ioModel: 'auto' });
 * const socket = await reactor.udp({ host: '0.0.0.0', port: 9000 });
 * socket.on('message', (message, remote) => {
 *   if (remote.truncated) return; // longer than maxDatagram: cut, so not worth answering
 *   socket.send(message, remote.port, remote.address); // echo
 * });
 * socket.on('error', (err) => console.warn(`udp: ${err.code}`)); // ICMP errors, failed queued sends
 * ```
 */
export class UdpSocket extends EventEmitter<UdpSocketEvents> {
  /** Backend id of the socket; changes on a runtime fallback. */
  id: number;
  private readonly host: UdpHost;
  private isClosed = false;
  private readonly ipv4Names = new Map<number, string>();
  /** {@link UdpSocket.sendBatch}'s lists for the native call, reused. */
  private readonly batch = {
    buffers: [] as Uint8Array[],
    hosts: [] as (string | null)[],
    ports: [] as number[],
  };

  /**
   * True when the socket's sends run on a thread of their own (`sendThread` was asked for and the
   * backend has send threads; see `UdpOptions.sendThread`).
   */
  readonly sendThread: boolean;

  /** @internal */
  constructor(host: UdpHost, id: number, sendThread = false) {
    super();
    this.host = host;
    this.id = id;
    this.sendThread = sendThread;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** @internal The kind of entry in the reactor's socket table. */
  // A getter keeps the kind on the prototype: no field per socket object.
  // eslint-disable-next-line @typescript-eslint/class-literal-property-style
  get socketKind(): 'udp' {
    return 'udp';
  }

  /**
   * The backend id, once checked to be this socket's own: ids are reused, and a socket the
   * reactor no longer maps to this object must not reach whoever holds the id now.
   */
  private nativeId(syscall: string): number {
    if (!this.isClosed && this.host.owns(this)) return this.id;
    this.isClosed = true;
    throw new IomuxError('IOMUX_SOCKET_CLOSED', `${syscall} on a closed UDP socket`);
  }

  /**
   * The bound address (with the real port when 0 was asked for).
   * @example
   * ```ts
   * const socket = await reactor.udp({ host: '127.0.0.1' }); // port 0: any free one
   * const { address, port, family } = socket.address(); // '127.0.0.1', e.g. 51234, 'IPv4'
   * ```
   */
  address(): UdpAddress {
    const result = this.host.native.address(this.nativeId('getsockname'), false);
    if (typeof result === 'number') throw socketError(result, 'getsockname');
    return { address: result[0], port: result[1], family: result[2] === 6 ? 'IPv6' : 'IPv4' };
  }

  /**
   * Sends one datagram to `address:port` (an IP literal), or to the connected peer when both are
   * omitted. Returns false when the datagram had to be queued (the socket buffer is full).
   * With {@link UdpSocket.sendThread} the datagram is copied to the thread's queue, and what the
   * kernel refuses (`EMSGSIZE`, ...) arrives as an `'error'` event instead of a throw.
   * @throws {@link IomuxError} `ENOBUFS` when the queue is full, `EMSGSIZE` for an oversized
   * datagram, `IOMUX_INVALID_ARGUMENT` for a host name (resolve it once, not per datagram).
   * @example
   * ```ts
   * const socket = await reactor.udp({ host: '0.0.0.0', port: 0 });
   * socket.send('ping', 9000, '10.0.0.7');
   * ```
   */
  send(data: Uint8Array | string, port?: number, address?: string): boolean {
    const buffer = bytesOf(data, 'send: data');
    const result = this.host.native.udpSend(
      this.nativeId('send'),
      targetOf(port, address),
      port ?? 0,
      buffer,
    );
    if (result < 0) throw socketError(result, 'send');
    return result === 0;
  }

  /**
   * Sends `datagrams` in order with as few system calls as the backend allows: on Linux one
   * `sendmmsg` per batch the kernel takes, instead of one `sendto` each. For broadcasting a
   * game state to many players. Every address is checked before anything is sent. Returns false
   * when some had to be queued (the socket buffer is full).
   * @throws {@link IomuxError} for the first datagram the kernel or the queue refuses (`ENOBUFS`
   * when the queue is full, `EMSGSIZE`, ...): its message gives its index; the ones before it were
   * sent or queued, the ones after it were not tried. `IOMUX_INVALID_ARGUMENT` as for
   * {@link UdpSocket.send}.
   * @example
   * ```ts
   * const frame = encodeState(world);
   * socket.sendBatch(players.map((p) => ({ data: frame, port: p.port, address: p.address })));
   * ```
   */
  sendBatch(datagrams: readonly OutgoingDatagram[]): boolean {
    // The lists handed to the native call are this socket's, kept from call to call: a game
    // server sends a batch per tick, and fresh arrays (and their slices) would be garbage each
    // time. Checked and filled before anything is sent.
    const { buffers, hosts, ports } = this.batch;
    const count = datagrams.length;
    buffers.length = hosts.length = ports.length = count;
    try {
      for (let i = 0; i < count; i++) {
        const { data, port, address } = datagrams[i]!;
        // The name is built only for a refusal: this loop runs once per datagram of every tick.
        buffers[i] =
          data instanceof Uint8Array ? data : bytesOf(data, `sendBatch: datagrams[${i}].data`);
        hosts[i] = targetOf(port, address);
        ports[i] = port ?? 0;
      }
      let queued = 0;
      for (let start = 0; start < count; start += MAX_SEND_BATCH) {
        const end = Math.min(count, start + MAX_SEND_BATCH);
        const whole = start === 0 && end === count;
        const result = this.host.native.udpSendBatch(
          this.nativeId('sendmmsg'),
          whole ? buffers : buffers.slice(start, end),
          whole ? hosts : hosts.slice(start, end),
          whole ? ports : ports.slice(start, end),
        );
        if (typeof result === 'number') throw socketError(result, 'sendmmsg');
        const [taken, queuedNow, errno] = result;
        queued += queuedNow;
        if (start + taken < end)
          throw socketError(
            errno,
            'sendmmsg',
            `(datagram ${start + taken} of ${count}; those before it were sent or queued)`,
          );
      }
      return queued === 0;
    } finally {
      // The caller's Buffers are not held on to until the next batch.
      buffers.fill(NO_BYTES);
    }
  }

  /**
   * Stops reading: datagrams wait in the kernel's receive buffer (SO_RCVBUF), which drops what
   * does not fit, as it would for any slow reader. Sending goes on.
   * @example
   * ```ts
   * // Read no faster than a slow store takes the data.
   * socket.on('message', (message) => {
   *   socket.pause();
   *   void store(Buffer.from(message)).finally(() => socket.resume()); // copied: store() is async
   * });
   * ```
   */
  pause(): void {
    this.check(this.host.native.setReading(this.nativeId('pause'), false), 'pause');
  }

  /** Resumes reading after {@link UdpSocket.pause}; what waited in the kernel arrives first. */
  resume(): void {
    this.check(this.host.native.setReading(this.nativeId('resume'), true), 'resume');
  }

  /**
   * Sets the default peer, so `send(data)` needs no address and only its datagrams arrive.
   * @example
   * ```ts
   * socket.connect(5353, '10.0.0.2');
   * socket.send(query); // to 10.0.0.2:5353
   * ```
   */
  connect(port: number, address = '127.0.0.1'): void {
    this.check(this.host.native.udpConnect(this.nativeId('connect'), address, port), 'connect');
  }

  /**
   * SO_BROADCAST: allows sending to a broadcast address (without it the kernel refuses with
   * `EACCES`).
   * @example
   * ```ts
   * socket.setBroadcast(true);
   * socket.send('discover', 9999, '255.255.255.255');
   * ```
   */
  setBroadcast(on: boolean): void {
    this.check(
      this.host.native.setOption(this.nativeId('setsockopt'), 'broadcast', on ? 1 : 0),
      'setsockopt',
    );
  }

  /** IP_TTL. */
  setTTL(ttl: number): void {
    this.check(this.host.native.setOption(this.nativeId('setsockopt'), 'ttl', ttl), 'setsockopt');
  }

  /**
   * SO_RCVBUF: raise it when bursts of datagrams outrun the reactor (the kernel drops the excess).
   * Linux caps it at `net.core.rmem_max` and doubles what it grants, for its own bookkeeping.
   * @example
   * ```ts
   * socket.setRecvBufferSize(4 * 1024 * 1024); // absorb a 4 MiB burst between polls
   * ```
   */
  setRecvBufferSize(bytes: number): void {
    this.check(
      this.host.native.setOption(this.nativeId('setsockopt'), 'recvBufferSize', bytes),
      'setsockopt',
    );
  }

  /** SO_SNDBUF. */
  setSendBufferSize(bytes: number): void {
    this.check(
      this.host.native.setOption(this.nativeId('setsockopt'), 'sendBufferSize', bytes),
      'setsockopt',
    );
  }

  /** IP_MULTICAST_TTL. */
  setMulticastTTL(ttl: number): void {
    this.check(
      this.host.native.setOption(this.nativeId('setsockopt'), 'multicastTTL', ttl),
      'setsockopt',
    );
  }

  /** IP_MULTICAST_LOOP. */
  setMulticastLoopback(on: boolean): void {
    this.check(
      this.host.native.setOption(this.nativeId('setsockopt'), 'multicastLoopback', on ? 1 : 0),
      'setsockopt',
    );
  }

  /**
   * Joins an IPv4 multicast group, on the interface with the local address `iface` (default: the
   * kernel picks one by route). Bind the group's port on `0.0.0.0` to receive its datagrams.
   * @example
   * ```ts
   * const mdns = await reactor.udp({ host: '0.0.0.0', port: 5353, reuseAddr: true });
   * mdns.addMembership('224.0.0.251');
   * mdns.setMulticastTTL(255);
   * mdns.on('message', (packet, from) => console.log(`${packet.length} bytes from ${from.address}`));
   * ```
   */
  addMembership(group: string, iface?: string): void {
    this.check(
      this.host.native.setOption(this.nativeId('setsockopt'), 'addMembership', 0, group, iface),
      'setsockopt',
    );
  }

  /** Leaves an IPv4 multicast group. */
  dropMembership(group: string, iface?: string): void {
    this.check(
      this.host.native.setOption(this.nativeId('setsockopt'), 'dropMembership', 0, group, iface),
      'setsockopt',
    );
  }

  /** Closes the socket; queued datagrams are dropped. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.host.owns(this)) this.host.native.destroy(this.id);
    this.host.forgetUdp(this);
    process.nextTick(() => this.emit('close'));
  }

  /** @internal */
  onDatagram(slab: Buffer, offset: number, length: number, truncated: boolean): void {
    const family = slab[offset] === 6 ? 'IPv6' : 'IPv4';
    const port = slab.readUInt16BE(offset + 2);
    const address =
      family === 'IPv4'
        ? this.ipv4Name(slab, offset + 4)
        : formatV6(slab.subarray(offset + 4, offset + 20));
    const start = offset + 20;
    this.emit('message', slab.subarray(start, start + length), {
      address,
      port,
      family,
      size: length,
      truncated,
    });
  }

  /**
   * The dotted form of the IPv4 address at `at`, cached: a server hears the same peers again and
   * again, so most datagrams reuse a string instead of building one.
   */
  private ipv4Name(slab: Buffer, at: number): string {
    const key = slab.readUInt32BE(at);
    let name = this.ipv4Names.get(key);
    if (name === undefined) {
      name = `${slab[at]!}.${slab[at + 1]!}.${slab[at + 2]!}.${slab[at + 3]!}`;
      if (this.ipv4Names.size >= MAX_CACHED_ADDRESSES) this.ipv4Names.clear();
      this.ipv4Names.set(key, name);
    }
    return name;
  }

  /** @internal */
  onSendError(errno: number): void {
    if (this.listenerCount('error') > 0) this.emit('error', socketError(errno, 'send'));
  }

  private check(result: number, syscall: string): void {
    if (this.isClosed)
      throw new IomuxError('IOMUX_SOCKET_CLOSED', `${syscall} on a closed UDP socket`);
    if (result < 0) throw socketError(result, syscall);
  }
}
