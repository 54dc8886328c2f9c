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

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TARGET = /^[\x21-\x7e]+$/;
const VERSION = /^HTTP\/(\d)\.(\d)$/;
// Field values: visible ASCII, obs-text, SP and HTAB. CR, LF and NUL are refused.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
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
          const end = buf.indexOf('\r\n\r\n', Math.max(pos, this.scanFrom), 'latin1');
          if (end === -1) {
            if (len - pos > this.maxHeaderBytes)
              throw new HttpError(400, `request head larger than ${this.maxHeaderBytes} bytes`);
            this.scanFrom = Math.max(pos, len - 3);
            return pos;
          }
          if (end + 4 - pos > this.maxHeaderBytes)
            throw new HttpError(400, `request head larger than ${this.maxHeaderBytes} bytes`);
          const request = this.parseHead(buf.toString('latin1', pos, end));
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
          const line = buf.toString('latin1', pos, end);
          pos = end + 2;
          if (line === '') {
            if (this.finishRequest(out)) return pos;
          } else {
            parseField(line); // validated, then dropped: this server has no use for trailers
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
   * @param {string} head request line and header fields, CRLF-separated, without the blank line
   * @returns {HttpRequest}
   */
  parseHead(head) {
    let lineEnd = head.indexOf('\r\n');
    if (lineEnd === -1) lineEnd = head.length;
    // The request line: exactly two spaces (method SP request-target SP version).
    const sp1 = head.indexOf(' ');
    const sp2 = sp1 === -1 || sp1 > lineEnd ? -1 : head.indexOf(' ', sp1 + 1);
    if (
      sp2 === -1 ||
      sp2 > lineEnd ||
      (head.indexOf(' ', sp2 + 1) !== -1 && head.indexOf(' ', sp2 + 1) < lineEnd)
    )
      throw new HttpError(400, 'bad request line');
    const method = head.slice(0, sp1);
    const target = head.slice(sp1 + 1, sp2);
    const version = head.slice(sp2 + 1, lineEnd);
    if (!TOKEN.test(method)) throw new HttpError(400, 'bad method');
    if (!TARGET.test(target)) throw new HttpError(400, 'bad request-target');
    const v = VERSION.exec(version);
    if (v === null) throw new HttpError(400, 'bad HTTP version');
    if (v[1] !== '1') throw new HttpError(505, `HTTP version ${version} is not supported`);
    const versionMinor = v[2] === '0' ? 0 : 1;

    /** @type {Record<string, string>} */
    const headers = new Headers();
    let hosts = 0;
    let start = lineEnd + 2;
    while (start <= head.length && lineEnd < head.length) {
      let end = head.indexOf('\r\n', start);
      if (end === -1) end = head.length;
      const colon = head.indexOf(':', start);
      if (colon <= start || colon > end) throw new HttpError(400, 'bad header line');
      const rawName = head.slice(start, colon);
      if (!TOKEN.test(rawName)) throw new HttpError(400, 'bad header name');
      const value = trimOws(head, colon + 1, end);
      if (!FIELD_VALUE.test(value)) throw new HttpError(400, `bad value in header ${rawName}`);
      const name = rawName.toLowerCase();
      if (name === 'host') hosts += 1;
      const previous = headers[name];
      headers[name] = previous === undefined ? value : `${previous}, ${value}`;
      lineEnd = end;
      start = end + 2;
    }
    if (hosts > 1) throw new HttpError(400, 'more than one Host header');
    if (versionMinor === 1 && hosts === 0) throw new HttpError(400, 'missing Host header');

    const connection = headers.connection?.toLowerCase() ?? '';
    const tokens =
      connection === '' ? [] : connection.split(',').map((t) => t.replace(OWS_EDGES, ''));
    const keepAlive = tokens.includes('close')
      ? false
      : versionMinor === 1 || tokens.includes('keep-alive');
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

/** A header map without a prototype, so a field named like `__proto__` is just a field. */
function Headers() {}
Headers.prototype = Object.create(null);

/**
 * `text.slice(start, end)` without leading and trailing SP / HTAB.
 * @param {string} text
 * @param {number} start
 * @param {number} end
 */
function trimOws(text, start, end) {
  let from = start;
  let to = end;
  while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from += 1;
  while (to > from && (text.charCodeAt(to - 1) === 32 || text.charCodeAt(to - 1) === 9)) to -= 1;
  return text.slice(from, to);
}

/**
 * @param {string} line one `name: value` field line
 * @returns {[string, string]} lower-case name, value without surrounding whitespace
 */
function parseField(line) {
  const colon = line.indexOf(':');
  if (colon <= 0) throw new HttpError(400, 'bad header line');
  const name = line.slice(0, colon);
  // Also refuses whitespace before the colon and obsolete line folding (a line starting with SP).
  if (!TOKEN.test(name)) throw new HttpError(400, 'bad header name');
  const value = line.slice(colon + 1).replace(OWS_EDGES, '');
  if (!FIELD_VALUE.test(value)) throw new HttpError(400, `bad value in header ${name}`);
  return [name.toLowerCase(), value];
}

/**
 * The path of a request-target: origin-form `/p?q`, absolute-form `http://h/p?q`, or as-is.
 * @param {string} target
 */
function pathOf(target) {
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
