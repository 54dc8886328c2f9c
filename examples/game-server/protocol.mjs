// The wire protocol: length-prefixed binary frames, little-endian.
//
//   frame   = u16 length (bytes after this field) | u8 type | body
//   WELCOME   server → client once:  u32 playerId | u16 hz | u16 width | u16 height | u8 subcell
//   INPUT     client → server:       u32 playerId | u32 seq | u8 direction
//   STATE     server → client/tick:  u32 tick | u32 ackSeq | u16 count | count × entity
//   entity  = u32 id | u16 x | u16 y        (x, y in 1/subcell of a cell; NPC ids have bit 31 set)
//
// ackSeq is the last input `seq` of this client the simulation has applied: a client measures its
// input→state latency from the time it sent `seq` to the first STATE whose ackSeq reaches it.

export const MSG = Object.freeze(/** @type {const} */ ({ WELCOME: 1, INPUT: 2, STATE: 3 }));
export const DIR = Object.freeze(
  /** @type {const} */ ({ NONE: 0, UP: 1, DOWN: 2, LEFT: 3, RIGHT: 4 }),
);

/** @typedef {{ type: 1, playerId: number, hz: number, width: number, height: number, subcell: number }} WelcomeMessage */
/** @typedef {{ type: 2, playerId: number, seq: number, direction: number }} InputMessage */
/** @typedef {{ type: 3, tick: number, ackSeq: number, count: number, frame: Buffer }} StateMessage */
/** Position units per grid cell. */
export const SUBCELL = 16;
/** Bit set in the ids of NPCs. */
export const NPC_FLAG = 0x8000_0000;

export const WELCOME_BYTES = 14;
export const INPUT_BYTES = 12;
export const STATE_HEADER_BYTES = 13;
export const ENTITY_BYTES = 8;
/** Most entities one STATE frame can carry (the u16 length limit). */
export const MAX_ENTITIES = Math.floor((0xffff - (STATE_HEADER_BYTES - 2)) / ENTITY_BYTES);

export function encodeWelcome({ playerId, hz, width, height }) {
  const b = Buffer.allocUnsafe(WELCOME_BYTES);
  b.writeUInt16LE(WELCOME_BYTES - 2, 0);
  b.writeUInt8(MSG.WELCOME, 2);
  b.writeUInt32LE(playerId, 3);
  b.writeUInt16LE(Math.round(hz), 7);
  b.writeUInt16LE(width, 9);
  b.writeUInt16LE(height, 11);
  b.writeUInt8(SUBCELL, 13);
  return b;
}

export function encodeInput(playerId, seq, direction) {
  const b = Buffer.allocUnsafe(INPUT_BYTES);
  b.writeUInt16LE(INPUT_BYTES - 2, 0);
  b.writeUInt8(MSG.INPUT, 2);
  b.writeUInt32LE(playerId >>> 0, 3);
  b.writeUInt32LE(seq >>> 0, 7);
  b.writeUInt8(direction, 11);
  return b;
}

/** The per-client header of a STATE frame; the entity blocks follow it on the wire. */
export function encodeStateHeader(tick, ackSeq, count) {
  const b = Buffer.allocUnsafe(STATE_HEADER_BYTES);
  b.writeUInt16LE(STATE_HEADER_BYTES - 2 + count * ENTITY_BYTES, 0);
  b.writeUInt8(MSG.STATE, 2);
  b.writeUInt32LE(tick >>> 0, 3);
  b.writeUInt32LE(ackSeq >>> 0, 7);
  b.writeUInt16LE(count, 11);
  return b;
}

/** Writes one entity at `offset` of `buffer`. */
export function writeEntity(buffer, offset, id, x, y) {
  buffer.writeUInt32LE(id >>> 0, offset);
  buffer.writeUInt16LE(Math.max(0, Math.min(0xffff, Math.round(x * SUBCELL))), offset + 4);
  buffer.writeUInt16LE(Math.max(0, Math.min(0xffff, Math.round(y * SUBCELL))), offset + 6);
}

/**
 * Decodes a frame's body (after the length field) into a message object, or null if malformed.
 * @param {Buffer} frame
 * @returns {WelcomeMessage | InputMessage | StateMessage | null}
 */
export function decodeFrame(frame) {
  const type = frame[0];
  if (type === MSG.INPUT && frame.length === INPUT_BYTES - 2) {
    return {
      type,
      playerId: frame.readUInt32LE(1),
      seq: frame.readUInt32LE(5),
      direction: frame[9],
    };
  }
  if (type === MSG.WELCOME && frame.length === WELCOME_BYTES - 2) {
    return {
      type,
      playerId: frame.readUInt32LE(1),
      hz: frame.readUInt16LE(5),
      width: frame.readUInt16LE(7),
      height: frame.readUInt16LE(9),
      subcell: frame[11],
    };
  }
  if (type === MSG.STATE && frame.length >= STATE_HEADER_BYTES - 2) {
    const count = frame.readUInt16LE(9);
    if (frame.length !== STATE_HEADER_BYTES - 2 + count * ENTITY_BYTES) return null;
    return { type, tick: frame.readUInt32LE(1), ackSeq: frame.readUInt32LE(5), count, frame };
  }
  return null;
}

/**
 * Iterates the entities of a decoded STATE message: calls fn(id, x, y) with x, y in cells.
 * @param {StateMessage} state
 * @param {(id: number, x: number, y: number) => void} fn
 */
export function forEachEntity(state, fn) {
  const { frame, count } = state;
  for (let i = 0, o = STATE_HEADER_BYTES - 2; i < count; i += 1, o += ENTITY_BYTES) {
    fn(
      frame.readUInt32LE(o),
      frame.readUInt16LE(o + 4) / SUBCELL,
      frame.readUInt16LE(o + 6) / SUBCELL,
    );
  }
}

/**
 * Splits a byte stream into frames. `push(chunk)` returns the complete frame bodies (without the
 * length field) it finished; the unfinished tail is kept (copied, since reactor chunks are views
 * into a shared slab). Frames longer than `maxFrame` make `push` throw.
 */
export class FrameDecoder {
  constructor(maxFrame = 0xffff) {
    this.maxFrame = maxFrame;
    this.pending = null;
  }

  /**
   * @param {Buffer} chunk
   * @returns {Buffer[]}
   */
  push(chunk) {
    let data = chunk;
    if (this.pending !== null) {
      data = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    const frames = [];
    let offset = 0;
    while (data.length - offset >= 2) {
      const length = data.readUInt16LE(offset);
      if (length === 0 || length > this.maxFrame) throw new Error(`bad frame length ${length}`);
      if (data.length - offset - 2 < length) break;
      frames.push(data.subarray(offset + 2, offset + 2 + length));
      offset += 2 + length;
    }
    if (offset < data.length) this.pending = Buffer.from(data.subarray(offset));
    return frames;
  }
}
