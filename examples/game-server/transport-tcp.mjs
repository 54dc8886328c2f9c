// TRANSPORT=tcp: one iomux TCP connection per player, length-prefixed frames (protocol.mjs).
import {
  DIR,
  ENTITY_BYTES,
  FrameDecoder,
  INPUT_BYTES,
  MAX_ENTITIES,
  MSG,
  decodeFrame,
  encodeStateHeader,
  encodeWelcome,
} from './protocol.mjs';

/**
 * Listens on host:port; returns `{ port, broadcast(tick, snapshot), sweep(now), close() }`.
 * @param {{ reactor: import('@iomux/core').Reactor, world: import('./world.mjs').World,
 *   counters: Record<string, number>, host: string, port: number, hz: number, view: string }} ctx
 */
export async function startTcpTransport({ reactor, world, counters, host, port, hz, view }) {
  const listener = await reactor.listen({ host, port, backlog: 4096 }, (conn) => {
    const player = world.addPlayer(conn);
    counters.joins += 1;
    counters.peakPlayers = Math.max(counters.peakPlayers, world.players.size);
    conn.write(
      encodeWelcome({ playerId: player.id, hz, width: world.width, height: world.height }),
    );
    const decoder = new FrameDecoder(INPUT_BYTES - 2);
    conn.on('data', (chunk) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch {
        counters.malformed += 1;
        conn.destroy();
        return;
      }
      for (const frame of frames) {
        const message = decodeFrame(frame);
        if (message === null || message.type !== MSG.INPUT || message.direction > DIR.RIGHT) {
          counters.malformed += 1;
          conn.destroy();
          return;
        }
        if (message.playerId !== player.id) {
          counters.spoofed += 1; // authoritative: a client only steers its own player
          continue;
        }
        counters.inputs += 1;
        world.input(player, message.seq, message.direction);
      }
    });
    conn.on('drain', () => {
      player.slow = false;
    });
    conn.on('close', () => {
      world.removePlayer(player.id);
      counters.left += 1;
    });
  });

  function broadcast(tick, snapshot) {
    for (const player of world.players.values()) {
      if (player.slow) {
        counters.statesDropped += 1; // its socket is backed up: skip states until it drains
        continue;
      }
      const chunks = [null];
      let count = 0;
      if (view === 'all') {
        count = Math.min(snapshot.total, MAX_ENTITIES);
        chunks.push(snapshot.all.subarray(0, count * ENTITY_BYTES));
      } else {
        const rx = Math.floor(player.x / 16);
        const ry = Math.floor(player.y / 16);
        for (let y = ry - 1; y <= ry + 1; y += 1) {
          if (y < 0 || y >= world.regionsY) continue;
          for (let x = rx - 1; x <= rx + 1; x += 1) {
            if (x < 0 || x >= world.regionsX) continue;
            const region = y * world.regionsX + x;
            const n = snapshot.count(region);
            if (n === 0 || count + n > MAX_ENTITIES) continue;
            chunks.push(snapshot.block(region));
            count += n;
          }
        }
      }
      chunks[0] = encodeStateHeader(tick, player.ackSeq, count);
      if (!player.peer.writev(chunks)) player.slow = true;
      counters.statesSent += 1;
    }
  }

  return {
    port: listener.port,
    broadcast,
    sweep() {
      // A TCP player leaves when its connection closes.
    },
    close() {
      // reactor.close() ends the listener and every connection.
    },
  };
}
