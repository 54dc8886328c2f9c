// The datagram protocol (TRANSPORT=udp): one message per datagram, little-endian, every datagram
// at most MAX_DATAGRAM (1200) bytes so it fits any path MTU without IP fragmentation.
//
//   HELLO      c → s  u8 0x10 | u32 protocol | u32 nonce | zero padding         = 64 bytes
//   CHALLENGE  s → c  u8 0x11 | u32 nonce | 16 B cookie                          = 21 bytes
//   JOIN       c → s  u8 0x12 | u32 protocol | u32 nonce | 16 B cookie | padding = 64 bytes
//   WELCOME    s → c  u8 0x13 | u32 nonce | u32 playerId | 8 B token | u16 hz | u16 width
//                     | u16 height | u8 subcell | u16 maxEntities | u16 timeoutMs = 28 bytes
//   REJECT     s → c  u8 0x14 | u32 nonce | u8 reason (1 full, 2 protocol)       = 6 bytes
//   INPUT      c → s  u8 0x20 | u32 playerId | 8 B token | u32 seq | u8 direction = 18 bytes
//   BYE        c → s  u8 0x21 | u32 playerId | 8 B token                         = 13 bytes
//   STATE      s → c  u8 0x30 | u32 tick | u32 ackSeq | u16 count | count × entity (11 + 8·count)
//   entity   = u32 id | u16 x | u16 y   (x, y in 1/16 cell; NPC ids have bit 31 set)
//
// The handshake is two round trips. HELLO is answered statelessly with a cookie, an HMAC of the
// sender's address, port and nonce under a server secret and a 10 s time bucket; only a JOIN
// echoing a valid cookie creates a player. So a flood of HELLOs with forged source addresses
// allocates nothing, and since HELLO and JOIN are padded to 64 bytes the server never sends an
// unverified address more bytes than it received (no amplification). WELCOME hands out the
// playerId and a random 64-bit session token. An INPUT counts only if it carries the token and
// comes from the address:port that joined. INPUT is a state ("steer this way"), not an event, so
// a lost one is corrected by the next; the newest seq wins, older ones are ignored. Clients
// drop a STATE whose tick is not newer than the last one they applied (stale or reordered).

export const PROTOCOL_ID = 0x314d4f49; // 'IOM1'
export const UDP = Object.freeze(
  /** @type {const} */ ({
    HELLO: 0x10,
    CHALLENGE: 0x11,
    JOIN: 0x12,
    WELCOME: 0x13,
    REJECT: 0x14,
    INPUT: 0x20,
    BYE: 0x21,
    STATE: 0x30,
  }),
);
export const REJECT_REASON = Object.freeze(/** @type {const} */ ({ FULL: 1, PROTOCOL: 2 }));

/** Largest datagram either side sends. */
export const MAX_DATAGRAM = 1200;
export const HANDSHAKE_BYTES = 64;
export const COOKIE_BYTES = 16;
export const CHALLENGE_BYTES = 1 + 4 + COOKIE_BYTES;
export const WELCOME_DGRAM_BYTES = 28;
export const REJECT_BYTES = 6;
export const INPUT_DGRAM_BYTES = 18;
export const BYE_BYTES = 13;
export const STATE_DGRAM_HEADER = 11;
export const ENTITY_DGRAM_BYTES = 8;

/** Most entities a STATE of `maxDatagram` bytes carries (148 for 1200 bytes). */
export function maxEntitiesFor(maxDatagram = MAX_DATAGRAM) {
  return Math.floor((maxDatagram - STATE_DGRAM_HEADER) / ENTITY_DGRAM_BYTES);
}

/** HELLO: the first datagram of a client. */
export function encodeHello(nonce, protocol = PROTOCOL_ID) {
  const b = Buffer.alloc(HANDSHAKE_BYTES);
  b[0] = UDP.HELLO;
  b.writeUInt32LE(protocol >>> 0, 1);
  b.writeUInt32LE(nonce >>> 0, 5);
  return b;
}

export function encodeChallenge(nonce, cookie) {
  const b = Buffer.allocUnsafe(CHALLENGE_BYTES);
  b[0] = UDP.CHALLENGE;
  b.writeUInt32LE(nonce >>> 0, 1);
  cookie.copy(b, 5, 0, COOKIE_BYTES);
  return b;
}

export function encodeJoin(nonce, cookie, protocol = PROTOCOL_ID) {
  const b = Buffer.alloc(HANDSHAKE_BYTES);
  b[0] = UDP.JOIN;
  b.writeUInt32LE(protocol >>> 0, 1);
  b.writeUInt32LE(nonce >>> 0, 5);
  cookie.copy(b, 9, 0, COOKIE_BYTES);
  return b;
}

/** @param {{ nonce: number, playerId: number, token: Buffer, hz: number, width: number, height: number, subcell: number, maxEntities: number, timeoutMs: number }} w */
export function encodeWelcomeDatagram(w) {
  const b = Buffer.allocUnsafe(WELCOME_DGRAM_BYTES);
  b[0] = UDP.WELCOME;
  b.writeUInt32LE(w.nonce >>> 0, 1);
  b.writeUInt32LE(w.playerId >>> 0, 5);
  w.token.copy(b, 9, 0, 8);
  b.writeUInt16LE(Math.round(w.hz), 17);
  b.writeUInt16LE(w.width, 19);
  b.writeUInt16LE(w.height, 21);
  b[23] = w.subcell;
  b.writeUInt16LE(w.maxEntities, 24);
  b.writeUInt16LE(Math.min(0xffff, w.timeoutMs), 26);
  return b;
}

export function encodeReject(nonce, reason) {
  const b = Buffer.allocUnsafe(REJECT_BYTES);
  b[0] = UDP.REJECT;
  b.writeUInt32LE(nonce >>> 0, 1);
  b[5] = reason;
  return b;
}

/** INPUT into `b` (reusable: 18 bytes). Returns `b`. */
export function encodeInputDatagram(playerId, token, seq, direction, b = Buffer.allocUnsafe(18)) {
  b[0] = UDP.INPUT;
  b.writeUInt32LE(playerId >>> 0, 1);
  token.copy(b, 5, 0, 8);
  b.writeUInt32LE(seq >>> 0, 13);
  b[17] = direction;
  return b;
}

export function encodeBye(playerId, token) {
  const b = Buffer.allocUnsafe(BYE_BYTES);
  b[0] = UDP.BYE;
  b.writeUInt32LE(playerId >>> 0, 1);
  token.copy(b, 5, 0, 8);
  return b;
}

/** Writes a STATE header at the start of `b`; the entities follow at offset 11. */
export function writeStateDatagramHeader(b, tick, ackSeq, count) {
  b[0] = UDP.STATE;
  b.writeUInt32LE(tick >>> 0, 1);
  b.writeUInt32LE(ackSeq >>> 0, 5);
  b.writeUInt16LE(count, 9);
}

/** @typedef {{ type: 0x11, nonce: number, cookie: Buffer }} ChallengeDatagram */
/** @typedef {{ type: 0x13, nonce: number, playerId: number, token: Buffer, hz: number, width: number, height: number, subcell: number, maxEntities: number, timeoutMs: number }} WelcomeDatagram */
/** @typedef {{ type: 0x14, nonce: number, reason: number }} RejectDatagram */
/** @typedef {{ type: 0x30, tick: number, ackSeq: number, count: number, data: Buffer }} StateDatagram */

/**
 * Decodes a datagram a client receives (CHALLENGE, WELCOME, REJECT, STATE), or returns null
 * when it is malformed. STATE entities stay in `data` (see {@link forEachDatagramEntity}).
 * @param {Buffer} data
 * @returns {ChallengeDatagram | WelcomeDatagram | RejectDatagram | StateDatagram | null}
 */
export function decodeServerDatagram(data) {
  const type = data[0];
  if (type === UDP.STATE && data.length >= STATE_DGRAM_HEADER) {
    const count = data.readUInt16LE(9);
    if (data.length !== STATE_DGRAM_HEADER + count * ENTITY_DGRAM_BYTES) return null;
    return {
      type,
      tick: data.readUInt32LE(1),
      ackSeq: data.readUInt32LE(5),
      count,
      data,
    };
  }
  if (type === UDP.CHALLENGE && data.length === CHALLENGE_BYTES)
    return { type, nonce: data.readUInt32LE(1), cookie: Buffer.from(data.subarray(5)) };
  if (type === UDP.WELCOME && data.length === WELCOME_DGRAM_BYTES)
    return {
      type,
      nonce: data.readUInt32LE(1),
      playerId: data.readUInt32LE(5),
      token: Buffer.from(data.subarray(9, 17)),
      hz: data.readUInt16LE(17),
      width: data.readUInt16LE(19),
      height: data.readUInt16LE(21),
      subcell: data[23],
      maxEntities: data.readUInt16LE(24),
      timeoutMs: data.readUInt16LE(26),
    };
  if (type === UDP.REJECT && data.length === REJECT_BYTES)
    return { type, nonce: data.readUInt32LE(1), reason: data[5] };
  return null;
}

/**
 * Calls fn(id, x, y) for every entity of a decoded STATE (x, y in cells).
 * @param {{ data: Buffer, count: number }} state
 * @param {(id: number, x: number, y: number) => void} fn
 * @param {number} [subcell]
 */
export function forEachDatagramEntity(state, fn, subcell = 16) {
  const { data, count } = state;
  for (let i = 0, o = STATE_DGRAM_HEADER; i < count; i += 1, o += ENTITY_DGRAM_BYTES)
    fn(
      data.readUInt32LE(o),
      data.readUInt16LE(o + 4) / subcell,
      data.readUInt16LE(o + 6) / subcell,
    );
}

/**
 * True when tick `a` is newer than tick `b` in serial-number arithmetic (RFC 1982), so the
 * comparison survives the u32 wrapping around.
 */
export function tickNewer(a, b) {
  return ((a - b) | 0) > 0;
}
