// Builds the RESP2 replies of one batch of commands as a few Buffers for one writev: small
// replies are packed into a shared segment, large bulk values are passed by reference.
//
// The segment is reused batch after batch: Connection.writev() sends what the kernel takes and
// copies the rest into the native queue, so the bytes are free again once writev() returns.

import { Buffer } from 'node:buffer';

const SEGMENT = 64 * 1024;
/** Bulk values at least this long go to writev by reference instead of being copied... */
const BY_REFERENCE = 4 * 1024;
/**
 * ...as long as the batch stays within this many Buffers: the native send takes them in windows of
 * 64, one sendmsg each (native/src/stream.cc, kStreamMaxIov).
 */
const MAX_CHUNKS = 64;

/** Values up to this long are copied by a loop: cheaper than Buffer#copy's native call. */
const SMALL_COPY = 64;

/**
 * Writes the decimal digits of `n` (a length: a non-negative safe integer) at `at`.
 * @param {Buffer} buf
 * @param {number} at
 * @param {number} n
 * @returns {number} where the digits end
 */
function writeDecimal(buf, at, n) {
  let digits = 1;
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits += 1;
  let i = at + digits;
  let rest = n;
  do {
    i -= 1;
    buf[i] = 48 + (rest % 10);
    rest = Math.floor(rest / 10);
  } while (rest > 0);
  return at + digits;
}

/** The simple replies most commands give, encoded once. */
const SIMPLE = new Map(['OK', 'PONG'].map((text) => [text, Buffer.from(`+${text}\r\n`, 'latin1')]));

export class ReplyWriter {
  constructor() {
    this.buf = Buffer.allocUnsafe(SEGMENT);
    this.start = 0;
    this.used = 0;
    /** @type {Buffer[]} */
    this.chunks = [];
    /** Error replies written so far (INFO's total_error_replies). */
    this.errors = 0;
  }

  /** @param {number} n */
  room(n) {
    if (this.buf.length - this.used >= n) return;
    this.cut();
    // The old segment may still be referenced by `chunks`: start a fresh one.
    this.buf = Buffer.allocUnsafe(Math.max(SEGMENT, n));
    this.start = 0;
    this.used = 0;
  }

  cut() {
    if (this.used > this.start) {
      this.chunks.push(this.buf.subarray(this.start, this.used));
      this.start = this.used;
    }
  }

  /** @param {string} text one byte per char (latin1) */
  raw(text) {
    this.room(text.length);
    this.used += this.buf.write(text, this.used, 'latin1');
  }

  /** @param {string} text */
  simple(text) {
    const encoded = SIMPLE.get(text);
    if (encoded === undefined) {
      this.raw(`+${text}\r\n`);
      return;
    }
    this.room(encoded.length);
    // A few bytes: a loop beats Buffer#write's or #copy's native call.
    for (let i = 0; i < encoded.length; i += 1) this.buf[this.used + i] = encoded[i];
    this.used += encoded.length;
  }

  /**
   * An error reply; CR and LF in the message become spaces, as Redis does.
   * @param {string} message e.g. `ERR syntax error`
   */
  error(message) {
    this.errors += 1;
    this.raw(`-${message.replace(/[\r\n]/g, ' ')}\r\n`);
  }

  /** @param {number | bigint} n */
  integer(n) {
    this.raw(`:${n}\r\n`);
  }

  /** @param {Buffer | undefined} value undefined: the null bulk string */
  bulk(value) {
    if (value === undefined) {
      this.raw('$-1\r\n');
      return;
    }
    const length = value.length;
    if (length >= BY_REFERENCE && this.chunks.length < MAX_CHUNKS - 2) {
      this.raw(`$${length}\r\n`);
      this.cut();
      this.chunks.push(value);
      this.raw('\r\n');
      return;
    }
    this.room(length + 24);
    const buf = this.buf;
    let at = this.used;
    buf[at++] = 36; // $
    at = writeDecimal(buf, at, length);
    buf[at++] = 13;
    buf[at++] = 10;
    if (length <= SMALL_COPY) {
      for (let i = 0; i < length; i += 1) buf[at + i] = /** @type {number} */ (value[i]);
    } else {
      value.copy(buf, at);
    }
    at += length;
    buf[at++] = 13;
    buf[at++] = 10;
    this.used = at;
  }

  /** @param {number} n */
  array(n) {
    this.raw(`*${n}\r\n`);
  }

  /** The batch's replies, ready for one writev; call `reset()` once they were written. */
  take() {
    this.cut();
    const chunks = this.chunks;
    this.chunks = [];
    return chunks;
  }

  /** Makes the segment reusable; only after the chunks of `take()` were handed to writev. */
  reset() {
    this.start = 0;
    this.used = 0;
  }
}
