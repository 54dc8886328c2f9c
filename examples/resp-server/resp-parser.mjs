// Incremental parser of Redis requests (RESP2): multibulk commands (`*<n>\r\n$<len>\r\n<bytes>\r\n`
// ...) and inline commands (a text line, as typed into telnet or sent by redis-benchmark's
// PING_INLINE). Feed it a connection's bytes as they arrive; it records every command completed
// so far as byte ranges of the bytes it was given, and makes no object per argument: a handler
// reads an argument as a key string, a copy or a view only when it needs one (`Args`). A command
// split across reads resumes where it stopped, keeping only the unfinished element, never
// re-parsing what was done.
//
// Bounded like Redis: bulk strings up to 512 MiB, multibulk up to 1M elements (Redis 6's limit),
// inline requests and length lines up to 64 KiB, and a cap on the bytes one connection may
// hold unparsed (Redis's client-query-buffer-limit, 1 GiB by default). Malformed input sets
// `error` (a message Redis would send, "Protocol error: ...") and the parser ignores the rest.

// Buffer from node:buffer, not the global: Node's global `Buffer` is a getter, run on every use.
import { Buffer } from 'node:buffer';
import { latin1 } from './key-table.mjs';

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
 * The index of the first LF at or after `start`, or -1: `buf.indexOf(10, start)`, by a byte loop
 * over the first SHORT_SCAN * 2 bytes (an inline command is short).
 * @param {Buffer} buf
 * @param {number} start
 */
function findLf(buf, start) {
  const stop = Math.min(buf.length, start + SHORT_SCAN * 2);
  for (let i = start; i < stop; i += 1) if (buf[i] === 10) return i;
  return stop === buf.length ? -1 : buf.indexOf(10, stop);
}

/**
 * Whitespace as sdssplitargs (isspace) sees it: SP, HT, LF, VT, FF, CR.
 * @param {number | undefined} c
 */
const isSpaceByte = (c) => c === 32 || (c !== undefined && c >= 9 && c <= 13);

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

/**
 * One parsed command: a reusable window onto the parser's argument ranges, valid until the
 * parser's next `parse()` or `release()`. Argument 0 is the command name.
 */
export class Args {
  /** @param {RespParser} parser */
  constructor(parser) {
    this.parser = parser;
    /** Index of argument 0 in the parser's ranges. */
    this.first = 0;
    /** Number of arguments, the name included. */
    this.length = 0;
  }

  /**
   * Argument `i` as a view into the read bytes (valid while the Args is).
   * @param {number} i
   */
  view(i) {
    const p = this.parser;
    const j = this.first + i;
    return /** @type {Buffer} */ (p.sources[j]).subarray(
      /** @type {number} */ (p.starts[j]),
      /** @type {number} */ (p.ends[j]),
    );
  }

  /**
   * Argument `i` as a latin1 string, one char per byte: a key of the store.
   * @param {number} i
   */
  key(i) {
    const p = this.parser;
    const j = this.first + i;
    return latin1(
      /** @type {Buffer} */ (p.sources[j]),
      /** @type {number} */ (p.starts[j]),
      /** @type {number} */ (p.ends[j]),
    );
  }

  /**
   * Argument `i` in memory of its own, to keep past the batch: a copy, or the Buffer the parser
   * joined a big argument into, which nothing else references.
   * @param {number} i
   */
  copy(i) {
    const p = this.parser;
    const j = this.first + i;
    const source = /** @type {Buffer} */ (p.sources[j]);
    const start = /** @type {number} */ (p.starts[j]);
    const n = /** @type {number} */ (p.ends[j]) - start;
    if (p.joined[j] === true) return n === source.length ? source : source.subarray(0, n);
    const copy = Buffer.allocUnsafe(n);
    if (n <= SMALL_COPY)
      for (let k = 0; k < n; k += 1) copy[k] = /** @type {number} */ (source[start + k]);
    else source.copy(copy, 0, start, start + n);
    return copy;
  }

  /**
   * The Buffer holding argument `i`, for code that reads its bytes one by one (from `startOf(i)`
   * to `endOf(i)`) without a view.
   * @param {number} i
   */
  bytesOf(i) {
    return /** @type {Buffer} */ (this.parser.sources[this.first + i]);
  }

  /** @param {number} i */
  startOf(i) {
    return /** @type {number} */ (this.parser.starts[this.first + i]);
  }

  /** @param {number} i */
  endOf(i) {
    return /** @type {number} */ (this.parser.ends[this.first + i]);
  }

  /** The arguments as views, for tests and for code that wants an array. */
  toArray() {
    /** @type {Buffer[]} */
    const views = [];
    for (let i = 0; i < this.length; i += 1) views.push(this.view(i));
    return views;
  }
}

/** Arguments up to this long are copied by a loop: cheaper than Buffer#copy's native call. */
const SMALL_COPY = 64;

/** After a command with more arguments than this, the range arrays are replaced, not kept. */
const KEEP_RANGES = 4096;

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
    // Every argument parsed and not yet released, as a range of a source Buffer: the completed
    // commands of the last parse(), then the arguments of the unfinished command.
    /** @type {Buffer[]} */
    this.sources = [];
    /** @type {number[]} */
    this.starts = [];
    /** @type {number[]} */
    this.ends = [];
    /** @type {boolean[]} whether the source is a Buffer the parser joined for this argument */
    this.joined = [];
    /** Ranges in use. */
    this.argCount = 0;
    /** @type {number[]} where each completed command's arguments end */
    this.commandEnds = [];
    /** Commands completed by the last parse(). */
    this.commandCount = 0;
    /** Index of the unfinished command's first argument. */
    this.unfinished = 0;
    /** Bytes of the unfinished command read so far, framing included. */
    this.argBytes = 0;
    /** Elements still to come of the current multibulk command (0: between commands). */
    this.argsLeft = 0;
    /** Length of the bulk string being received, or -1 while its `$<len>` line is awaited. */
    this.bulkLen = -1;
    /** @type {Buffer[] | undefined} pieces of a big bulk string (and its CRLF) gathered so far */
    this.bigParts = undefined;
    this.bigHave = 0;
    this.args = new Args(this);
  }

  /** Bytes this connection holds that do not yet form a complete command. */
  get bufferedBytes() {
    return this.pending.length + this.argBytes + this.bigHave;
  }

  /**
   * Parses `chunk` (kept by reference: the arguments are ranges of it) and returns how many
   * commands it completed; `command(k)` reads them, until the next `parse()` or `release()`. On
   * malformed input `error` is set; the commands completed before the bad one are still counted.
   * @param {Buffer} chunk
   * @returns {number}
   */
  parse(chunk) {
    this.release();
    if (this.error !== undefined) return 0;
    try {
      let buf = chunk;
      if (this.bigParts !== undefined) {
        const rest = this.continueBig(chunk);
        if (rest === undefined) {
          this.checkBuffered();
          return 0;
        }
        if (this.argsLeft === 0) this.complete();
        buf = rest;
      } else if (this.pending.length > 0) {
        buf = Buffer.concat([this.pending, chunk]);
      }
      const pos = this.run(buf);
      this.pending = pos === buf.length ? EMPTY : buf.subarray(pos);
      this.checkBuffered();
    } catch (err) {
      if (!(err instanceof RespProtocolError)) throw err;
      this.error = err;
      this.pending = EMPTY;
      this.clearRanges(this.unfinished, this.argCount);
      this.argCount = this.unfinished;
      this.argBytes = 0;
      this.bigParts = undefined;
      this.bigHave = 0;
    }
    return this.commandCount;
  }

  /**
   * Command `k` of the last parse(), as the parser's one reusable Args.
   * @param {number} k
   */
  command(k) {
    const args = this.args;
    args.first = k === 0 ? 0 : /** @type {number} */ (this.commandEnds[k - 1]);
    args.length = /** @type {number} */ (this.commandEnds[k]) - args.first;
    return args;
  }

  /**
   * Drops the completed commands, and with them the references to the bytes they came from, so an
   * idle connection holds no read buffer. The unfinished command's arguments move to the front.
   */
  release() {
    const done = this.unfinished;
    this.commandCount = 0;
    if (done === 0) return;
    const keep = this.argCount - done;
    if (this.argCount > KEEP_RANGES) {
      this.sources = this.sources.slice(done, this.argCount);
      this.starts = this.starts.slice(done, this.argCount);
      this.ends = this.ends.slice(done, this.argCount);
      this.joined = this.joined.slice(done, this.argCount);
      this.commandEnds = [];
    } else {
      for (let i = 0; i < keep; i += 1) {
        this.sources[i] = /** @type {Buffer} */ (this.sources[done + i]);
        this.starts[i] = /** @type {number} */ (this.starts[done + i]);
        this.ends[i] = /** @type {number} */ (this.ends[done + i]);
        this.joined[i] = /** @type {boolean} */ (this.joined[done + i]);
      }
      this.clearRanges(keep, this.argCount);
    }
    this.argCount = keep;
    this.unfinished = 0;
  }

  /**
   * @param {number} from
   * @param {number} to
   */
  clearRanges(from, to) {
    for (let i = from; i < to; i += 1) {
      this.sources[i] = EMPTY;
      this.joined[i] = false;
    }
  }

  /**
   * Parses `chunk` and returns the commands it completed, each as an array of views; the
   * convenient form of `parse()` for tests and tools.
   * @param {Buffer} chunk
   * @returns {Buffer[][]}
   */
  execute(chunk) {
    const count = this.parse(chunk);
    /** @type {Buffer[][]} */
    const commands = [];
    for (let k = 0; k < count; k += 1) commands.push(this.command(k).toArray());
    this.release();
    return commands;
  }

  checkBuffered() {
    if (this.bufferedBytes > this.maxQueryBufferBytes)
      throw new RespProtocolError(
        `client query buffer limit of ${this.maxQueryBufferBytes} bytes exceeded`,
      );
  }

  complete() {
    this.commandEnds[this.commandCount] = this.argCount;
    this.commandCount += 1;
    this.unfinished = this.argCount;
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
    this.pushArg(whole, 0, this.bulkLen, true);
    return chunk.subarray(need);
  }

  /**
   * @param {Buffer} source
   * @param {number} start
   * @param {number} end
   * @param {boolean} joined
   */
  pushArg(source, start, end, joined) {
    const i = this.argCount;
    this.sources[i] = source;
    this.starts[i] = start;
    this.ends[i] = end;
    this.joined[i] = joined;
    this.argCount = i + 1;
    this.argBytes += end - start + 2;
    this.argsLeft -= 1;
    this.bulkLen = -1;
  }

  /**
   * Records the words of an inline request as ranges of `buf`, split at whitespace as
   * sdssplitargs splits them, when the line has no quote; a line with one is left to
   * splitInline, which decodes it.
   * @param {Buffer} buf
   * @param {number} start
   * @param {number} end the line's end, without its CRLF
   * @returns {boolean} false when the line has a quote and nothing was recorded
   */
  inlineWords(buf, start, end) {
    for (let i = start; i < end; i += 1) if (buf[i] === 34 || buf[i] === 39) return false;
    let words = 0;
    let i = start;
    for (;;) {
      while (i < end && isSpaceByte(buf[i])) i += 1;
      if (i === end) break;
      const from = i;
      while (i < end && !isSpaceByte(buf[i])) i += 1;
      this.argsLeft = 1; // pushArg counts down the arguments still to come: one word at a time
      this.pushArg(buf, from, i, false);
      words += 1;
    }
    if (words > 0) this.complete();
    return true;
  }

  /**
   * @param {Buffer} buf
   * @returns {number} how far `buf` was consumed
   */
  run(buf) {
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
          const nl = findLf(buf, pos);
          if (nl === -1) {
            if (len - pos > this.maxInlineBytes)
              throw new RespProtocolError('too big inline request');
            return pos;
          }
          const end = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
          if (!this.inlineWords(buf, pos, end)) {
            const words = splitInline(buf.toString('latin1', pos, end));
            if (words === undefined) throw new RespProtocolError('unbalanced quotes in request');
            if (words.length > 0) {
              for (const word of words) {
                const bytes = Buffer.from(word, 'latin1');
                this.argsLeft = 1;
                this.pushArg(bytes, 0, bytes.length, true);
              }
              this.complete();
            }
          }
          pos = nl + 1;
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
        this.pushArg(buf, pos, end, false);
        pos = end + 2;
        if (this.argsLeft === 0) this.complete();
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
