// Incremental parser of Redis requests (RESP2): multibulk commands (`*<n>\r\n$<len>\r\n<bytes>\r\n`
// ...) and inline commands (a text line, as typed into telnet or sent by redis-benchmark's
// PING_INLINE). Feed it a connection's bytes as they arrive; it returns every command completed
// so far, each as an array of Buffers. A command split across reads resumes where it stopped,
// keeping only the unfinished element, never re-parsing what was done.
//
// Bounded like Redis: bulk strings up to 512 MiB, multibulk up to 1M elements (Redis 6's limit),
// inline requests and length lines up to 64 KiB, and a cap on the bytes one connection may
// hold unparsed (Redis's client-query-buffer-limit, 1 GiB by default). Malformed input sets
// `error` (a message Redis would send, "Protocol error: ...") and the parser ignores the rest.

export const DEFAULT_LIMITS = Object.freeze({
  /** Largest bulk string (Redis proto-max-bulk-len). */
  maxBulkBytes: 512 * 1024 * 1024,
  /** Most elements of one multibulk request. */
  maxMultibulk: 1024 * 1024,
  /** Longest inline request, and longest `*<n>` / `$<len>` line. */
  maxInlineBytes: 64 * 1024,
  /** Bytes one connection may hold before its command is complete (client-query-buffer-limit). */
  maxQueryBufferBytes: 1024 * 1024 * 1024,
});

/** Bulk strings at least this long are gathered piece by piece and joined once. */
const BIG_ARG = 32 * 1024;
const EMPTY = Buffer.alloc(0);

/** A protocol error; `message` is what goes after `-ERR `. */
export class RespProtocolError extends Error {
  /** @param {string} what */
  constructor(what) {
    super(`Protocol error: ${what}`);
    this.name = 'RespProtocolError';
  }
}

/**
 * Redis's string2ll: an optional '-', then digits without leading zeros (or just "0").
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 * @returns {number} the value, or NaN
 */
function parseInteger(buf, start, end) {
  let i = start;
  let negative = false;
  if (i < end && buf[i] === 45 /* - */) {
    negative = true;
    i += 1;
  }
  const digits = end - i;
  if (digits < 1 || digits > 18) return NaN;
  if (buf[i] === 48 /* 0 */ && digits > 1) return NaN;
  let value = 0;
  for (; i < end; i += 1) {
    const d = /** @type {number} */ (buf[i]) - 48;
    if (d < 0 || d > 9) return NaN;
    value = value * 10 + d;
  }
  return negative ? -value : value;
}

/** Header lines (`*3`, `$5`) are short: a byte loop finds their CRLF faster than indexOf. */
const SHORT_SCAN = 32;

/**
 * The index of the first CRLF at or after `start`, or -1 when there is none yet. Same answer as
 * `buf.indexOf('\r\n', start, 'latin1')`, which it falls back to past SHORT_SCAN bytes or at a CR
 * that no LF follows.
 * @param {Buffer} buf
 * @param {number} start
 */
function findCrlf(buf, start) {
  const stop = Math.min(buf.length, start + SHORT_SCAN);
  let i = start;
  for (; i < stop; i += 1) {
    if (buf[i] !== 13) continue;
    if (i + 1 < buf.length && buf[i + 1] === 10) return i;
    break;
  }
  if (i === buf.length) return -1; // scanned to the end: no CR at all
  return buf.indexOf('\r\n', start, 'latin1');
}

/**
 * Splits an inline request like Redis's sdssplitargs: whitespace-separated words, "double
 * quotes" with \n \r \t \b \a \\ \" \xHH escapes, 'single quotes' with \'. A closing quote must
 * be followed by whitespace or the end.
 * @param {string} line latin1 text of the line
 * @returns {string[] | undefined} the words, or undefined for unbalanced quotes
 */
export function splitInline(line) {
  /** @type {string[]} */
  const words = [];
  const n = line.length;
  let i = 0;
  const isSpace = (/** @type {string | undefined} */ c) =>
    c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
  for (;;) {
    while (i < n && isSpace(line[i])) i += 1;
    if (i >= n) return words;
    let word = '';
    let inDouble = false;
    let inSingle = false;
    for (;;) {
      const c = line[i];
      if (inDouble) {
        if (c === undefined) return undefined;
        if (
          c === '\\' &&
          line[i + 1] === 'x' &&
          /^[0-9a-fA-F]{2}$/.test(line.slice(i + 2, i + 4))
        ) {
          word += String.fromCharCode(parseInt(line.slice(i + 2, i + 4), 16));
          i += 3;
        } else if (c === '\\' && i + 1 < n) {
          i += 1;
          const e = line[i];
          word +=
            e === 'n'
              ? '\n'
              : e === 'r'
                ? '\r'
                : e === 't'
                  ? '\t'
                  : e === 'b'
                    ? '\b'
                    : e === 'a'
                      ? '\x07'
                      : (e ?? '');
        } else if (c === '"') {
          if (i + 1 < n && !isSpace(line[i + 1])) return undefined;
          inDouble = false;
          i += 1;
          break;
        } else {
          word += c;
        }
      } else if (inSingle) {
        if (c === undefined) return undefined;
        if (c === '\\' && line[i + 1] === "'") {
          i += 1;
          word += "'";
        } else if (c === "'") {
          if (i + 1 < n && !isSpace(line[i + 1])) return undefined;
          inSingle = false;
          i += 1;
          break;
        } else {
          word += c;
        }
      } else {
        if (c === undefined || isSpace(c)) break;
        if (c === '"') inDouble = true;
        else if (c === "'") inSingle = true;
        else word += c;
      }
      i += 1;
    }
    words.push(word);
  }
}

export class RespParser {
  /** @param {Partial<typeof DEFAULT_LIMITS>} [limits] */
  constructor(limits = {}) {
    this.maxBulkBytes = limits.maxBulkBytes ?? DEFAULT_LIMITS.maxBulkBytes;
    this.maxMultibulk = limits.maxMultibulk ?? DEFAULT_LIMITS.maxMultibulk;
    this.maxInlineBytes = limits.maxInlineBytes ?? DEFAULT_LIMITS.maxInlineBytes;
    this.maxQueryBufferBytes = limits.maxQueryBufferBytes ?? DEFAULT_LIMITS.maxQueryBufferBytes;
    /** @type {RespProtocolError | undefined} set once the input is malformed */
    this.error = undefined;
    /** Unparsed bytes kept from earlier calls: an unfinished line or small bulk string. */
    this.pending = EMPTY;
    /** @type {Buffer[]} arguments of the multibulk command being received */
    this.args = [];
    /** Bytes of the unfinished command read so far, framing included. */
    this.argBytes = 0;
    /** Elements still to come of the current multibulk command (0: between commands). */
    this.argsLeft = 0;
    /** Length of the bulk string being received, or -1 while its `$<len>` line is awaited. */
    this.bulkLen = -1;
    /** @type {Buffer[] | undefined} pieces of a big bulk string (and its CRLF) gathered so far */
    this.bigParts = undefined;
    this.bigHave = 0;
  }

  /** Bytes this connection holds that do not yet form a complete command. */
  get bufferedBytes() {
    return this.pending.length + this.argBytes + this.bigHave;
  }

  /**
   * Parses `chunk` (kept by reference: the commands hold views into it) and returns the commands
   * it completed, in order. On malformed input `error` is set; the commands completed before the
   * bad one are still returned.
   * @param {Buffer} chunk
   * @returns {Buffer[][]}
   */
  execute(chunk) {
    /** @type {Buffer[][]} */
    const commands = [];
    if (this.error !== undefined) return commands;
    try {
      let buf = chunk;
      if (this.bigParts !== undefined) {
        const rest = this.continueBig(chunk);
        if (rest === undefined) {
          this.checkBuffered();
          return commands;
        }
        if (this.argsLeft === 0) this.complete(commands);
        buf = rest;
      } else if (this.pending.length > 0) {
        buf = Buffer.concat([this.pending, chunk]);
      }
      const pos = this.run(buf, commands);
      this.pending = pos === buf.length ? EMPTY : buf.subarray(pos);
      this.checkBuffered();
    } catch (err) {
      if (!(err instanceof RespProtocolError)) throw err;
      this.error = err;
      this.pending = EMPTY;
      this.args = [];
      this.argBytes = 0;
      this.bigParts = undefined;
      this.bigHave = 0;
    }
    return commands;
  }

  checkBuffered() {
    if (this.bufferedBytes > this.maxQueryBufferBytes)
      throw new RespProtocolError(
        `client query buffer limit of ${this.maxQueryBufferBytes} bytes exceeded`,
      );
  }

  /** @param {Buffer[][]} out */
  complete(out) {
    out.push(this.args);
    this.args = [];
    this.argBytes = 0;
  }

  /**
   * Adds `chunk` to the big bulk string being gathered.
   * @param {Buffer} chunk
   * @returns {Buffer | undefined} what follows the bulk string in `chunk`, or undefined when
   *   the string is still incomplete
   */
  continueBig(chunk) {
    const parts = /** @type {Buffer[]} */ (this.bigParts);
    const need = this.bulkLen + 2 - this.bigHave;
    if (chunk.length < need) {
      parts.push(chunk);
      this.bigHave += chunk.length;
      return undefined;
    }
    parts.push(chunk.subarray(0, need));
    const whole = Buffer.concat(parts, this.bulkLen + 2);
    this.bigParts = undefined;
    this.bigHave = 0;
    if (whole[this.bulkLen] !== 13 || whole[this.bulkLen + 1] !== 10)
      throw new RespProtocolError('expected CRLF after bulk data');
    this.pushArg(whole.subarray(0, this.bulkLen));
    return chunk.subarray(need);
  }

  /** @param {Buffer} arg */
  pushArg(arg) {
    this.args.push(arg);
    this.argBytes += arg.length + 2;
    this.argsLeft -= 1;
    this.bulkLen = -1;
  }

  /**
   * @param {Buffer} buf
   * @param {Buffer[][]} out
   * @returns {number} how far `buf` was consumed
   */
  run(buf, out) {
    const len = buf.length;
    let pos = 0;
    while (pos < len) {
      if (this.argsLeft === 0) {
        // Between commands: a multibulk header or an inline command.
        if (buf[pos] === 42 /* * */) {
          const cr = findCrlf(buf, pos);
          if (cr === -1) {
            if (len - pos > this.maxInlineBytes)
              throw new RespProtocolError('too big mbulk count string');
            return pos;
          }
          const count = parseInteger(buf, pos + 1, cr);
          if (Number.isNaN(count) || count > this.maxMultibulk)
            throw new RespProtocolError('invalid multibulk length');
          if (count <= 0) {
            pos = cr + 2;
            continue; // an empty command, skipped like Redis does
          }
          this.argBytes = cr + 2 - pos;
          pos = cr + 2;
          this.argsLeft = count;
          this.bulkLen = -1;
        } else {
          const nl = buf.indexOf(10, pos);
          if (nl === -1) {
            if (len - pos > this.maxInlineBytes)
              throw new RespProtocolError('too big inline request');
            return pos;
          }
          const end = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
          const words = splitInline(buf.toString('latin1', pos, end));
          if (words === undefined) throw new RespProtocolError('unbalanced quotes in request');
          pos = nl + 1;
          if (words.length > 0) out.push(words.map((w) => Buffer.from(w, 'latin1')));
        }
        continue;
      }
      if (this.bulkLen === -1) {
        const cr = findCrlf(buf, pos);
        if (cr === -1) {
          if (len - pos > this.maxInlineBytes)
            throw new RespProtocolError('too big bulk count string');
          if (buf[pos] !== 36 /* $ */) throw this.expectedDollar(buf[pos]);
          return pos;
        }
        if (buf[pos] !== 36) throw this.expectedDollar(buf[pos]);
        const length = parseInteger(buf, pos + 1, cr);
        if (Number.isNaN(length) || length < 0 || length > this.maxBulkBytes)
          throw new RespProtocolError('invalid bulk length');
        if (length + this.argBytes > this.maxQueryBufferBytes)
          throw new RespProtocolError(
            `client query buffer limit of ${this.maxQueryBufferBytes} bytes exceeded`,
          );
        this.bulkLen = length;
        this.argBytes += cr + 2 - pos;
        pos = cr + 2;
        continue;
      }
      // The bulk string's bytes and its CRLF.
      const end = pos + this.bulkLen;
      if (end + 2 <= len) {
        if (buf[end] !== 13 || buf[end + 1] !== 10)
          throw new RespProtocolError('expected CRLF after bulk data');
        this.pushArg(buf.subarray(pos, end));
        pos = end + 2;
        if (this.argsLeft === 0) this.complete(out);
        continue;
      }
      if (this.bulkLen >= BIG_ARG) {
        this.bigParts = [buf.subarray(pos)];
        this.bigHave = len - pos;
        return len;
      }
      return pos; // a small bulk string, kept in `pending` until it is whole
    }
    return pos;
  }

  /** @param {number | undefined} byte */
  expectedDollar(byte) {
    return new RespProtocolError(`expected '$', got '${String.fromCharCode(byte ?? 0)}'`);
  }
}
