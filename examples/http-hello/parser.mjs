// Incremental HTTP/1.1 request parser (RFC 9112), with no dependency on the server: feed it the
// bytes of a connection in whatever pieces they arrive and it returns every request completed so
// far, in order. A request split across reads is resumed where it stopped; several requests in
// one read all come out of one call (pipelining).
//
// Strict where laxness is dangerous (request smuggling): lines end with CRLF, no whitespace
// before a header's colon, no obsolete line folding, one Host, Content-Length must be digits and
// agree with itself, Transfer-Encoding and Content-Length together are refused. Bodies are
// framed by Content-Length or by the chunked transfer coding; other transfer codings get 501.

/** Limits a parser enforces. */
export const DEFAULT_LIMITS = Object.freeze({
  /** Request line plus header fields plus the blank line, in bytes (also bounds trailers). */
  maxHeaderBytes: 8 * 1024,
  /** Decoded request body, in bytes; larger bodies get 413. */
  maxBodyBytes: 1024 * 1024,
});

/** Longest chunk-size line (size plus extensions) of a chunked body. */
const MAX_CHUNK_LINE = 1024;

/** A request the server must refuse: the status to answer with, then close the connection. */
export class HttpError extends Error {
  /**
   * @param {number} status HTTP status code (400, 413, 501, 505)
   * @param {string} message what was wrong, for the response body and logs
   */
  constructor(status, message) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
  }
}

/**
 * A parsed request.
 * @typedef {object} HttpRequest
 * @property {string} method e.g. `GET`
 * @property {string} target the request-target as sent, e.g. `/a?b=1`
 * @property {string} path the target's path, without the query
 * @property {0 | 1} versionMinor 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x)
 * @property {Record<string, string>} headers lower-case names; repeated fields joined with `, `
 * @property {boolean} keepAlive whether the connection stays open after the response
 * @property {boolean} expectContinue the client sent `Expect: 100-continue`
 * @property {Buffer} body the decoded body (empty when there is none)
 */

const DIGITS = /^\d{1,15}$/;
const CHUNK_LINE = /^([0-9A-Fa-f]{1,8})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?$/;
const OWS_EDGES = /^[ \t]+|[ \t]+$/g;

const HEAD = 0;
const BODY = 1;
const CHUNK_SIZE = 2;
const CHUNK_DATA = 3;
const CHUNK_DATA_END = 4;
const TRAILERS = 5;
const DONE = 6; // after a request that closes the connection, or an error: input is ignored

const EMPTY = Buffer.alloc(0);

export class HttpParser {
  /** @param {Partial<typeof DEFAULT_LIMITS>} [limits] */
  constructor(limits = {}) {
    this.maxHeaderBytes = limits.maxHeaderBytes ?? DEFAULT_LIMITS.maxHeaderBytes;
    this.maxBodyBytes = limits.maxBodyBytes ?? DEFAULT_LIMITS.maxBodyBytes;
    /** Set once the input is malformed; the parser then ignores further input. */
    this.error = /** @type {HttpError | undefined} */ (undefined);
    this.state = HEAD;
    /** Unparsed bytes kept from earlier calls (bounded by the header and chunk-line limits). */
    this.pending = EMPTY;
    /** Where the search for the end of the head resumes, relative to `pending`. */
    this.scanFrom = 0;
    /** @type {HttpRequest | undefined} the request whose body is being read */
    this.request = undefined;
    this.remaining = 0;
    /** @type {Buffer[]} */
    this.bodyParts = [];
    this.bodyBytes = 0;
    this.trailerBytes = 0;
    this.continueOwed = false;
    /**
     * The last value of each of COMMON_FIELDS on this connection: a client sends the same Host,
     * User-Agent or Accept on every request, and a value equal to the last is that string again.
     * @type {(string | undefined)[]}
     */
    this.lastValues = [];
  }

  /** True when no request is partly received (nothing pending between requests). */
  get idle() {
    return this.state === HEAD && this.pending.length === 0;
  }

  /** True while a request's head (request line and header fields) is partly received. */
  get inHead() {
    return this.state === HEAD && this.pending.length > 0;
  }

  /**
   * True once, when the request being received asked for `100 Continue` and is waiting for its
   * body: the server should send the interim response now.
   */
  takeContinue() {
    const owed = this.continueOwed;
    this.continueOwed = false;
    return owed;
  }

  /**
   * Parses `chunk` (which may be kept by reference: the parser holds views into it) and returns
   * the requests it completed, in order. On malformed input `error` is set and the requests
   * completed before the bad one are still returned.
   * @param {Buffer} chunk
   * @returns {HttpRequest[]}
   */
  execute(chunk) {
    /** @type {HttpRequest[]} */
    const requests = [];
    if (this.state === DONE) return requests;
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let pos = 0;
    try {
      pos = this.run(buf, requests);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      this.fail(err);
      return requests;
    }
    this.scanFrom = Math.max(0, this.scanFrom - pos);
    this.pending = pos === buf.length || this.state === DONE ? EMPTY : buf.subarray(pos);
    return requests;
  }

  /** @param {HttpError} error */
  fail(error) {
    this.error = error;
    this.state = DONE;
    this.pending = EMPTY;
    this.bodyParts = [];
    this.request = undefined;
  }

  /**
   * @param {Buffer} buf
   * @param {HttpRequest[]} out
   * @returns {number} how far `buf` was consumed
   */
  run(buf, out) {
    const len = buf.length;
    let pos = 0;
    while (pos < len) {
      switch (this.state) {
        case HEAD: {
          // RFC 9112 §2.2: ignore empty lines before a request-line.
          while (pos + 1 < len && buf[pos] === 13 && buf[pos + 1] === 10) pos += 2;
          if (pos === len || (pos + 1 === len && buf[pos] === 13)) return pos;
          const end = findHeadEnd(buf, Math.max(pos, this.scanFrom));
          if (end === -1) {
            if (len - pos > this.maxHeaderBytes)
              throw new HttpError(400, `request head larger than ${this.maxHeaderBytes} bytes`);
            this.scanFrom = Math.max(pos, len - 3);
            return pos;
          }
          if (end + 4 - pos > this.maxHeaderBytes)
            throw new HttpError(400, `request head larger than ${this.maxHeaderBytes} bytes`);
          const request = this.parseHead(buf, pos, end);
          pos = end + 4;
          this.scanFrom = 0;
          if (this.beginBody(request, out)) return pos;
          break;
        }
        case BODY:
        case CHUNK_DATA: {
          const take = Math.min(len - pos, this.remaining);
          this.bodyParts.push(buf.subarray(pos, pos + take));
          pos += take;
          this.remaining -= take;
          if (this.remaining > 0) return pos;
          if (this.state === CHUNK_DATA) {
            this.state = CHUNK_DATA_END;
          } else if (this.finishRequest(out)) {
            return pos;
          }
          break;
        }
        case CHUNK_DATA_END: {
          if (len - pos < 2) return pos;
          if (buf[pos] !== 13 || buf[pos + 1] !== 10)
            throw new HttpError(400, 'chunk data not followed by CRLF');
          pos += 2;
          this.state = CHUNK_SIZE;
          break;
        }
        case CHUNK_SIZE: {
          const end = buf.indexOf('\r\n', pos, 'latin1');
          if (end === -1) {
            if (len - pos > MAX_CHUNK_LINE) throw new HttpError(400, 'chunk-size line too long');
            return pos;
          }
          const match = CHUNK_LINE.exec(buf.toString('latin1', pos, end));
          if (match === null) throw new HttpError(400, 'bad chunk-size line');
          const size = parseInt(/** @type {string} */ (match[1]), 16);
          pos = end + 2;
          if (size === 0) {
            this.state = TRAILERS;
            this.trailerBytes = 0;
          } else {
            if (this.bodyBytes + size > this.maxBodyBytes)
              throw new HttpError(413, `body larger than ${this.maxBodyBytes} bytes`);
            this.bodyBytes += size;
            this.remaining = size;
            this.state = CHUNK_DATA;
          }
          break;
        }
        case TRAILERS: {
          const end = buf.indexOf('\r\n', pos, 'latin1');
          if (end === -1) {
            if (this.trailerBytes + len - pos > this.maxHeaderBytes)
              throw new HttpError(400, `trailer section larger than ${this.maxHeaderBytes} bytes`);
            return pos;
          }
          this.trailerBytes += end + 2 - pos;
          if (this.trailerBytes > this.maxHeaderBytes)
            throw new HttpError(400, `trailer section larger than ${this.maxHeaderBytes} bytes`);
          const lineStart = pos;
          pos = end + 2;
          if (end === lineStart) {
            if (this.finishRequest(out)) return pos;
          } else {
            checkField(buf, lineStart, end); // validated, then dropped: no use for trailers here
          }
          break;
        }
        default:
          return len; // DONE: the connection is closing, input is ignored
      }
    }
    return pos;
  }

  /**
   * Sets up reading the body of `request`, or completes it when it has none.
   * @param {HttpRequest} request
   * @param {HttpRequest[]} out
   * @returns {boolean} true when parsing must stop (the request closes the connection)
   */
  beginBody(request, out) {
    const { headers } = request;
    const te = headers['transfer-encoding'];
    const cl = headers['content-length'];
    this.request = request;
    this.bodyParts = [];
    this.bodyBytes = 0;
    if (te !== undefined) {
      if (request.versionMinor === 0)
        throw new HttpError(400, 'Transfer-Encoding in an HTTP/1.0 request');
      if (cl !== undefined) throw new HttpError(400, 'both Transfer-Encoding and Content-Length');
      const codings = te
        .toLowerCase()
        .split(',')
        .map((c) => c.replace(OWS_EDGES, ''))
        .filter((c) => c !== '');
      if (codings[codings.length - 1] !== 'chunked')
        throw new HttpError(400, 'chunked is not the final transfer coding');
      if (codings.length > 1)
        throw new HttpError(501, `transfer coding ${codings[0] ?? ''} is not implemented`);
      this.state = CHUNK_SIZE;
      this.continueOwed = request.expectContinue;
      return false;
    }
    if (cl !== undefined) {
      const values = cl.split(',').map((v) => v.replace(OWS_EDGES, ''));
      const first = values[0] ?? '';
      if (!values.every((v) => v === first) || !DIGITS.test(first))
        throw new HttpError(400, `bad Content-Length: ${cl}`);
      const length = Number(first);
      if (length > this.maxBodyBytes)
        throw new HttpError(413, `body larger than ${this.maxBodyBytes} bytes`);
      if (length > 0) {
        this.state = BODY;
        this.remaining = length;
        this.continueOwed = request.expectContinue;
        return false;
      }
    }
    return this.finishRequest(out);
  }

  /**
   * @param {HttpRequest[]} out
   * @returns {boolean} true when parsing must stop (the request closes the connection)
   */
  finishRequest(out) {
    const request = /** @type {HttpRequest} */ (this.request);
    const parts = this.bodyParts;
    request.body =
      parts.length === 0
        ? EMPTY
        : parts.length === 1
          ? /** @type {Buffer} */ (parts[0])
          : Buffer.concat(parts);
    this.request = undefined;
    this.bodyParts = [];
    this.continueOwed = false;
    out.push(request);
    this.state = request.keepAlive ? HEAD : DONE;
    return !request.keepAlive;
  }

  /**
   * Parses a head in place, byte by byte: no string of the whole head, no regular expression, a
   * string made only for what the request carries (method, target, each field name and value).
   * @param {Buffer} buf
   * @param {number} start the request line's first byte
   * @param {number} end where the blank line (CRLF CRLF) begins
   * @returns {HttpRequest}
   */
  parseHead(buf, start, end) {
    // A well-formed request line is taken in one pass; anything else goes through the checks
    // below, which say what is wrong with it.
    let sp1 = skipToken(buf, start);
    let sp2 = sp1 > start && buf[sp1] === 32 ? skipTarget(buf, sp1 + 1) : -1;
    let lineEnd = sp2 > sp1 + 1 && buf[sp2] === 32 ? versionLineEnd(buf, sp2 + 1) : -1;
    let versionMinor = /** @type {0 | 1} */ (buf[sp2 + 8] === 48 /* 0 */ ? 0 : 1);
    if (lineEnd === -1) {
      lineEnd = findLineEnd(buf, start, end);
      // The request line: exactly two spaces (method SP request-target SP version).
      sp1 = indexOfByte(buf, 32, start, end);
      sp2 = sp1 === -1 || sp1 > lineEnd ? -1 : indexOfByte(buf, 32, sp1 + 1, lineEnd);
      if (sp2 === -1 || indexOfByte(buf, 32, sp2 + 1, lineEnd) !== -1)
        throw new HttpError(400, 'bad request line');
      if (!isToken(buf, start, sp1)) throw new HttpError(400, 'bad method');
      if (!isTarget(buf, sp1 + 1, sp2)) throw new HttpError(400, 'bad request-target');
      versionMinor = parseVersion(buf, sp2 + 1, lineEnd);
    }
    const method = methodName(buf, start, sp1);
    const target = sp2 === sp1 + 2 && buf[sp1 + 1] === 47 ? '/' : latin1(buf, sp1 + 1, sp2);

    /** @type {Record<string, string>} */
    const headers = new Headers();
    let hosts = 0;
    for (let from = lineEnd + 2; from <= end && lineEnd < end; from = lineEnd + 2) {
      // A well-formed field line in one pass (name, colon, value up to its CRLF), as for the
      // request line; anything else goes through the checks that say what is wrong.
      let colon = skipToken(buf, from);
      let valueStart = colon + 1;
      while (isOws(buf[valueStart])) valueStart += 1;
      let fieldEnd = skipFieldValue(buf, valueStart);
      if (colon === from || buf[colon] !== 58 || buf[fieldEnd] !== 13 || buf[fieldEnd + 1] !== 10) {
        fieldEnd = findLineEnd(buf, from, end);
        colon = checkField(buf, from, fieldEnd);
        valueStart = colon + 1;
        while (valueStart < fieldEnd && isOws(buf[valueStart])) valueStart += 1;
      }
      let valueEnd = fieldEnd;
      while (valueEnd > valueStart && isOws(buf[valueEnd - 1])) valueEnd -= 1;
      const common = commonField(buf, from, colon);
      const name = common === -1 ? latin1(buf, from, colon).toLowerCase() : COMMON_FIELDS[common];
      let value = common === -1 ? undefined : this.lastValues[common];
      if (value === undefined || !bytesEqual(buf, valueStart, valueEnd, value)) {
        value = latin1(buf, valueStart, valueEnd);
        if (common !== -1) this.lastValues[common] = value;
      }
      if (name === 'host') hosts += 1;
      const previous = headers[name];
      headers[name] = previous === undefined ? value : `${previous}, ${value}`;
      lineEnd = fieldEnd;
    }
    if (hosts > 1) throw new HttpError(400, 'more than one Host header');
    if (versionMinor === 1 && hosts === 0) throw new HttpError(400, 'missing Host header');

    const keepAlive = keepsAlive(headers.connection, versionMinor);
    const expectContinue = versionMinor === 1 && headers.expect?.toLowerCase() === '100-continue';
    return {
      method,
      target,
      path: pathOf(target),
      versionMinor,
      headers,
      keepAlive,
      expectContinue,
      body: EMPTY,
    };
  }
}

/**
 * Whether the connection stays open after this request: HTTP/1.1 unless `Connection` lists
 * `close`, HTTP/1.0 only when it lists `keep-alive`.
 * @param {string | undefined} connection the Connection header, if any
 * @param {0 | 1} versionMinor
 */
function keepsAlive(connection, versionMinor) {
  if (connection === undefined) return versionMinor === 1;
  const tokens = connection
    .toLowerCase()
    .split(',')
    .map((t) => t.replace(OWS_EDGES, ''));
  if (tokens.includes('close')) return false;
  return versionMinor === 1 || tokens.includes('keep-alive');
}

// `buf.toString('latin1', start, end)` without its encoding lookup and argument checks, once per
// method, target and field: Buffer's own latin1Slice, which every Node version iomux supports has.
const latin1 = (/** @type {Buffer} */ b, /** @type {number} */ start, /** @type {number} */ end) =>
  /** @type {Buffer & { latin1Slice(s: number, e: number): string }} */ (b).latin1Slice(start, end);

/** Bytes of tchar (RFC 9110 §5.6.2): methods and field names. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
  TCHAR[c.charCodeAt(0)] = 1;

/**
 * Whether `buf[start, end)` is a token: one or more tchar.
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 */
function isToken(buf, start, end) {
  return end > start && skipToken(buf, start) >= end;
}

// The skip functions scan to the first byte that ends the run, which may lie past a caller's
// end: a head's lines end at CR, which ends every run, and so does the end of the buffer.

/**
 * The index of the first byte at or after `from` that is not a tchar (`buf.length` at the end).
 * @param {Buffer} buf
 * @param {number} from
 */
function skipToken(buf, from) {
  let i = from;
  while (TCHAR[/** @type {number} */ (buf[i])] === 1) i += 1;
  return i;
}

/**
 * The index of the first byte at or after `from` that cannot be in a request-target (visible
 * ASCII).
 * @param {Buffer} buf
 * @param {number} from
 */
function skipTarget(buf, from) {
  let i = from;
  for (let c = buf[i]; c !== undefined && c >= 0x21 && c <= 0x7e; c = buf[i]) i += 1;
  return i;
}

/**
 * The index of the first byte at or after `from` that cannot be in a field value (visible ASCII,
 * obs-text, SP and HTAB; CR, LF, NUL and DEL cannot).
 * @param {Buffer} buf
 * @param {number} from
 */
function skipFieldValue(buf, from) {
  let i = from;
  for (let c = buf[i]; c !== undefined && (c < 0x20 ? c === 9 : c !== 0x7f); c = buf[i]) i += 1;
  return i;
}

/**
 * Whether `HTTP/` starts at `at`.
 * @param {Buffer} buf
 * @param {number} at
 */
function isHttpSlash(buf, at) {
  return (
    buf[at] === 72 /* H */ &&
    buf[at + 1] === 84 /* T */ &&
    buf[at + 2] === 84 /* T */ &&
    buf[at + 3] === 80 /* P */ &&
    buf[at + 4] === 47 /* / */
  );
}

/**
 * Where the request line ends (its CR) when `HTTP/1.0` or `HTTP/1.1` and CRLF start at `from`,
 * else -1.
 * @param {Buffer} buf
 * @param {number} from
 */
function versionLineEnd(buf, from) {
  const minor = buf[from + 7];
  return isHttpSlash(buf, from) &&
    buf[from + 5] === 49 /* 1 */ &&
    buf[from + 6] === 46 /* . */ &&
    (minor === 48 || minor === 49) &&
    buf[from + 8] === 13 &&
    buf[from + 9] === 10
    ? from + 8
    : -1;
}

/**
 * A request-target: one or more visible ASCII bytes.
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 */
function isTarget(buf, start, end) {
  return end > start && skipTarget(buf, start) >= end;
}

/**
 * Checks one field line, `buf[start, end)` without its CRLF, and says what is wrong with it: the
 * head's lines that the one-pass read did not take, and trailer lines.
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 * @returns {number} the colon's index
 */
function checkField(buf, start, end) {
  const colon = indexOfByte(buf, 58, start, end);
  if (colon <= start) throw new HttpError(400, 'bad header line');
  // Also refuses whitespace before the colon and obsolete line folding (a line starting with SP).
  if (!isToken(buf, start, colon)) throw new HttpError(400, 'bad header name');
  // Surrounding OWS is allowed: SP and HTAB are field-value bytes anyway.
  if (skipFieldValue(buf, colon + 1) < end)
    throw new HttpError(400, `bad value in header ${latin1(buf, start, colon)}`);
  return colon;
}

/** @param {number | undefined} c */
const isOws = (c) => c === 32 || c === 9;

/**
 * `HTTP/1.x`: the minor version, 0 or 1 (later 1.x as 1); other major versions get 505.
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 * @returns {0 | 1}
 */
function parseVersion(buf, start, end) {
  const digit = (/** @type {number} */ i) => {
    const c = /** @type {number} */ (buf[i]);
    return c >= 48 && c <= 57;
  };
  if (
    end - start !== 8 ||
    !isHttpSlash(buf, start) ||
    !digit(start + 5) ||
    buf[start + 6] !== 46 /* . */ ||
    !digit(start + 7)
  )
    throw new HttpError(400, 'bad HTTP version');
  if (buf[start + 5] !== 49 /* 1 */)
    throw new HttpError(505, `HTTP version ${latin1(buf, start, end)} is not supported`);
  return buf[start + 7] === 48 /* 0 */ ? 0 : 1;
}

/** The methods most requests use, as strings made once. */
const COMMON_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'];

/**
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 */
function methodName(buf, start, end) {
  // GET, most of all, without a call per byte.
  if (end - start === 3 && buf[start] === 71 && buf[start + 1] === 69 && buf[start + 2] === 84)
    return 'GET';
  for (const known of COMMON_METHODS) if (bytesEqual(buf, start, end, known)) return known;
  return latin1(buf, start, end);
}

/** Field names most requests carry, lower case, as strings made once. */
const COMMON_FIELDS = [
  'host',
  'user-agent',
  'accept',
  'accept-encoding',
  'accept-language',
  'connection',
  'content-length',
  'content-type',
  'transfer-encoding',
  'expect',
  'cookie',
];

/**
 * Which of COMMON_FIELDS the field name is (in any case), or -1.
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 */
function commonField(buf, start, end) {
  for (let i = 0; i < COMMON_FIELDS.length; i += 1)
    if (bytesEqualFolded(buf, start, end, /** @type {string} */ (COMMON_FIELDS[i]))) return i;
  return -1;
}

/**
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 * @param {string} text
 */
function bytesEqual(buf, start, end, text) {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i += 1) if (buf[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * Like bytesEqual, with ASCII letters of `buf` compared in lower case (`text` is lower case).
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 * @param {string} text
 */
function bytesEqualFolded(buf, start, end, text) {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i += 1) {
    let c = /** @type {number} */ (buf[start + i]);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== text.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * @param {Buffer} buf
 * @param {number} byte
 * @param {number} start
 * @param {number} end
 * @returns {number} the first index of `byte` in [start, end), or -1
 */
function indexOfByte(buf, byte, start, end) {
  for (let i = start; i < end; i += 1) if (buf[i] === byte) return i;
  return -1;
}

/**
 * Where the line starting at `start` ends: its CRLF, or `end` (the head's last line).
 * @param {Buffer} buf
 * @param {number} start
 * @param {number} end
 */
function findLineEnd(buf, start, end) {
  for (let i = start; i + 1 < end; i += 1) if (buf[i] === 13 && buf[i + 1] === 10) return i;
  return end;
}

/** Heads are short: a byte loop finds their end faster than Buffer#indexOf, up to this far. */
const SHORT_HEAD_SCAN = 256;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/**
 * The index of the first CRLF CRLF at or after `from`, or -1; `buf.indexOf('\r\n\r\n', from)`.
 * @param {Buffer} buf
 * @param {number} from
 */
function findHeadEnd(buf, from) {
  const stop = Math.min(buf.length - 3, from + SHORT_HEAD_SCAN);
  let i = from;
  while (i < stop) {
    const last = buf[i + 3];
    // No CRLF CRLF starting at i, i + 1, i + 2 or i + 3 can skip a byte that is neither CR nor LF.
    if (last !== 10 && last !== 13) i += 4;
    else if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && last === 10) return i;
    else i += 1;
  }
  return i >= buf.length - 3 ? -1 : buf.indexOf(HEAD_END, i);
}

/** A header map without a prototype, so a field named like `__proto__` is just a field. */
function Headers() {}
Headers.prototype = Object.create(null);

/**
 * The path of a request-target: origin-form `/p?q`, absolute-form `http://h/p?q`, or as-is.
 * @param {string} target
 */
function pathOf(target) {
  if (target === '/') return target;
  if (target.charCodeAt(0) === 47 /* / */) {
    const q = target.indexOf('?');
    return q === -1 ? target : target.slice(0, q);
  }
  if (/^https?:\/\//i.test(target)) {
    try {
      return new URL(target).pathname;
    } catch {
      throw new HttpError(400, 'bad request-target');
    }
  }
  return target; // '*' (OPTIONS) or authority-form (CONNECT)
}
