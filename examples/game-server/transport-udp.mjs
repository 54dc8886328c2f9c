// TRANSPORT=udp: one iomux UDP socket for every player, the datagram protocol of udp-protocol.mjs.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { DIR, SUBCELL } from './protocol.mjs';
import {
  BYE_BYTES,
  COOKIE_BYTES,
  ENTITY_DGRAM_BYTES,
  HANDSHAKE_BYTES,
  INPUT_DGRAM_BYTES,
  MAX_DATAGRAM,
  PROTOCOL_ID,
  REJECT_REASON,
  STATE_DGRAM_HEADER,
  UDP,
  encodeChallenge,
  encodeReject,
  encodeWelcomeDatagram,
  maxEntitiesFor,
  writeStateDatagramHeader,
} from './udp-protocol.mjs';

/** Cookies are valid in the 10 s bucket they were made in and the next one. */
const COOKIE_BUCKET_MS = 10_000;
/** Receive size: longer datagrams arrive truncated and are counted as malformed. */
const RECEIVE_BYTES = 2048;

/**
 * Binds host:port; returns `{ port, sendMode, sendThread, broadcast(tick, snapshot), sweep(now),
 * close() }`.
 * Throws the reactor's IomuxError (EOPNOTSUPP on a backend without UDP, EADDRINUSE, ...).
 * @param {{ reactor: import('@iomux/core').Reactor, world: import('./world.mjs').World,
 *   counters: Record<string, number>, host: string, port: number, hz: number, view: string,
 *   timeoutMs: number, maxDatagram?: number, maxPlayers: number, sendMode?: 'batch' | 'each',
 *   sendThread?: boolean }} ctx
 */
export async function startUdpTransport(ctx) {
  const { reactor, world, counters, host, port, hz, view, timeoutMs, maxPlayers } = ctx;
  const sendMode = ctx.sendMode ?? 'batch';
  const maxDatagram = Math.min(ctx.maxDatagram ?? MAX_DATAGRAM, MAX_DATAGRAM);
  const maxEntities = maxEntitiesFor(maxDatagram);
  const socket = await reactor.udp({
    host,
    port,
    maxDatagram: RECEIVE_BYTES,
    sendThread: ctx.sendThread ?? false,
  });
  // Bursts (1000 joins, a tick's worth of inputs after a long tick) must not overflow the
  // kernel's queue; the kernel caps these at net.core.rmem_max / wmem_max.
  for (const set of [
    () => socket.setRecvBufferSize(4 << 20),
    () => socket.setSendBufferSize(4 << 20),
  ])
    try {
      set();
    } catch {
      // keep the default size
    }
  socket.on('error', () => {
    counters.sendErrors += 1;
  });

  const secret = randomBytes(32);
  /** "address:port" → player */
  const byAddress = new Map();
  const out = Buffer.allocUnsafe(maxDatagram);
  // A view of `out` for every entity count, so a tick's sends allocate nothing.
  const views = Array.from({ length: maxEntities + 1 }, (_, n) =>
    out.subarray(0, STATE_DGRAM_HEADER + n * ENTITY_DGRAM_BYTES),
  );

  function cookie(address, remotePort, nonce, bucket) {
    return createHmac('sha256', secret)
      .update(`${address}|${remotePort}|${nonce}|${bucket}`)
      .digest()
      .subarray(0, COOKIE_BYTES);
  }

  function cookieValid(given, address, remotePort, nonce) {
    const bucket = Math.floor(Date.now() / COOKIE_BUCKET_MS);
    return (
      timingSafeEqual(given, cookie(address, remotePort, nonce, bucket)) ||
      timingSafeEqual(given, cookie(address, remotePort, nonce, bucket - 1))
    );
  }

  /** Sends a handshake reply; a full send queue only loses it (the client retries). */
  function reply(data, remote) {
    try {
      socket.send(data, remote.port, remote.address);
    } catch {
      counters.sendErrors += 1;
    }
  }

  function welcome(player, remote) {
    reply(
      encodeWelcomeDatagram({
        nonce: player.peer.nonce,
        playerId: player.id,
        token: player.peer.token,
        hz,
        width: world.width,
        height: world.height,
        subcell: SUBCELL,
        maxEntities,
        timeoutMs,
      }),
      remote,
    );
  }

  function remove(player) {
    world.removePlayer(player.id);
    byAddress.delete(player.peer.key);
  }

  /** The player an INPUT or BYE speaks for, or null (counted) when the token or address is wrong. */
  function authenticate(data, remote) {
    const player = world.players.get(data.readUInt32LE(1));
    if (player === undefined) {
      counters.unknown += 1; // never joined, timed out or left
      return null;
    }
    const peer = player.peer;
    if (
      data.readUInt32LE(5) !== peer.tokenLo ||
      data.readUInt32LE(9) !== peer.tokenHi ||
      remote.port !== peer.port ||
      remote.address !== peer.address
    ) {
      counters.spoofed += 1;
      return null;
    }
    return player;
  }

  function onMessage(data, remote) {
    const length = data.length;
    if (remote.truncated || length === 0) {
      counters.malformed += 1;
      return;
    }
    switch (data[0]) {
      case UDP.INPUT: {
        if (length !== INPUT_DGRAM_BYTES || data[17] > DIR.RIGHT) break;
        const player = authenticate(data, remote);
        if (player === null) return;
        counters.inputs += 1;
        player.peer.lastHeard = performance.now();
        world.input(player, data.readUInt32LE(13), data[17]);
        return;
      }
      case UDP.HELLO: {
        if (length !== HANDSHAKE_BYTES) break;
        const nonce = data.readUInt32LE(5);
        if (data.readUInt32LE(1) !== PROTOCOL_ID) {
          counters.rejected += 1;
          reply(encodeReject(nonce, REJECT_REASON.PROTOCOL), remote);
          return;
        }
        counters.hellos += 1;
        const bucket = Math.floor(Date.now() / COOKIE_BUCKET_MS);
        reply(encodeChallenge(nonce, cookie(remote.address, remote.port, nonce, bucket)), remote);
        return;
      }
      case UDP.JOIN: {
        if (length !== HANDSHAKE_BYTES || data.readUInt32LE(1) !== PROTOCOL_ID) break;
        const nonce = data.readUInt32LE(5);
        if (!cookieValid(data.subarray(9, 9 + COOKIE_BYTES), remote.address, remote.port, nonce)) {
          counters.badCookies += 1;
          return;
        }
        const key = `${remote.address}:${remote.port}`;
        const existing = byAddress.get(key);
        if (existing !== undefined) {
          if (existing.peer.nonce === nonce) {
            welcome(existing, remote); // our WELCOME was lost: the same player again
            return;
          }
          remove(existing); // the client restarted on the same address:port
        }
        if (world.players.size >= maxPlayers) {
          counters.rejected += 1;
          reply(encodeReject(nonce, REJECT_REASON.FULL), remote);
          return;
        }
        const token = randomBytes(8);
        const player = world.addPlayer({
          key,
          address: remote.address,
          port: remote.port,
          nonce,
          token,
          tokenLo: token.readUInt32LE(0),
          tokenHi: token.readUInt32LE(4),
          lastHeard: performance.now(),
        });
        byAddress.set(key, player);
        counters.joins += 1;
        counters.peakPlayers = Math.max(counters.peakPlayers, world.players.size);
        welcome(player, remote);
        return;
      }
      case UDP.BYE: {
        if (length !== BYE_BYTES) break;
        const player = authenticate(data, remote);
        if (player === null) return;
        remove(player);
        counters.left += 1;
        return;
      }
      default:
        break;
    }
    counters.malformed += 1;
  }

  socket.on('message', (data, remote) => {
    try {
      onMessage(data, remote);
    } catch {
      counters.malformed += 1; // a bug here must not take the server down: count and drop
    }
  });

  /** One datagram per player, sent one `send()` at a time (UDP_SEND=each). */
  function broadcastEach(tick, snapshot) {
    let blocked = false;
    for (const player of world.players.values()) {
      if (blocked) {
        counters.statesDropped += 1;
        continue;
      }
      const count = world.visibleInto(player, snapshot, view, out, STATE_DGRAM_HEADER, maxEntities);
      if (world.lastCapped) counters.statesCapped += 1;
      writeStateDatagramHeader(out, tick, player.ackSeq, count);
      try {
        // false: queued natively (the datagram was copied), sent with sendmmsg when writable.
        if (!socket.send(views[count], player.peer.port, player.peer.address))
          counters.statesQueued += 1;
        counters.statesSent += 1;
      } catch {
        // ENOBUFS: the native send queue is full. UDP promises nothing: drop this tick's rest.
        counters.statesDropped += 1;
        blocked = true;
      }
    }
  }

  // UDP_SEND=batch: every state of a tick is written into one arena (a slot of maxDatagram bytes
  // per player) and handed to sendBatch() at once: sendmmsg, up to 32 datagrams a system call.
  let arena = Buffer.allocUnsafe(0);
  /** @type {{ data: Buffer, port: number, address: string }[]} reused from tick to tick */
  const batch = [];
  function broadcastBatch(tick, snapshot) {
    const players = world.players.size;
    if (arena.length < players * maxDatagram) arena = Buffer.allocUnsafe(players * maxDatagram * 2);
    let i = 0;
    for (const player of world.players.values()) {
      const at = i * maxDatagram;
      const count = world.visibleInto(
        player,
        snapshot,
        view,
        arena,
        at + STATE_DGRAM_HEADER,
        maxEntities,
      );
      if (world.lastCapped) counters.statesCapped += 1;
      const datagram = arena.subarray(at, at + STATE_DGRAM_HEADER + count * ENTITY_DGRAM_BYTES);
      writeStateDatagramHeader(datagram, tick, player.ackSeq, count);
      const entry = batch[i];
      if (entry === undefined)
        batch.push({ data: datagram, port: player.peer.port, address: player.peer.address });
      else {
        entry.data = datagram;
        entry.port = player.peer.port;
        entry.address = player.peer.address;
      }
      i += 1;
    }
    batch.length = i;
    try {
      // false: some were queued natively (copied), to go out with sendmmsg when writable.
      if (!socket.sendBatch(batch)) counters.statesQueued += 1;
      counters.statesSent += i;
    } catch (err) {
      // ENOBUFS: the native send queue is full; the ones before the named datagram went out.
      const index = Number(/datagram (\d+) of/.exec(String(err?.message))?.[1] ?? 0);
      counters.statesSent += index;
      counters.statesDropped += i - index;
    }
  }

  const broadcast =
    sendMode === 'batch' && typeof socket.sendBatch === 'function' ? broadcastBatch : broadcastEach;

  let nextSweep = 0;
  /** Removes players not heard from for `timeoutMs`; cheap enough for every tick, run 4 × / s. */
  function sweep(now) {
    if (now < nextSweep) return;
    nextSweep = now + 250;
    for (const player of world.players.values()) {
      if (now - player.peer.lastHeard > timeoutMs) {
        remove(player);
        counters.timedOut += 1;
      }
    }
  }

  return {
    port: socket.address().port,
    sendMode: broadcast === broadcastBatch ? 'batch' : 'each',
    sendThread: socket.sendThread,
    broadcast,
    sweep,
    close() {
      socket.close();
    },
  };
}
