// HTTP/1.1 "Hello, World!" on the iomux Reactor API. Every read is parsed incrementally; the
// responses to all the requests it completed go out with one writev, in order.
//
//   GET|HEAD /      200 text/plain "Hello, World!"
//   POST /echo      200 with the request body (Content-Length or chunked, up to 1 MiB)
//   other on /      405 (Allow: GET, HEAD)
//   anything else   404
//   malformed       400 (or 413 / 501 / 505) with Connection: close, then the connection closes
import { createReactor } from '@iomux/core';
import { HttpError, HttpParser } from './parser.mjs';

/** @typedef {import('./parser.mjs').HttpRequest} HttpRequest */
/** @typedef {import('@iomux/core').Connection} Connection */
/** @typedef {import('@iomux/core').Reactor} Reactor */
/** @typedef {import('@iomux/core').Listener} Listener */

const HELLO = 'Hello, World!';
/**
 * Most Buffers handed to one writev. The native send takes the Buffers in windows of 64, one
 * sendmsg each (native/src/stream.cc, kStreamMaxIov), so a longer batch is joined into one Buffer
 * instead: one syscall per batch. (Connection.writev slices lists past 1024 Buffers itself, so no
 * length is refused.)
 */
const MAX_WRITEV_CHUNKS = 64;
/**
 * A batch of responses up to this size is joined into one Buffer: copying a few KiB costs less
 * than a sendmsg over many small iovecs does (a pipelined hello batch is 16 responses of about
 * 130 bytes; joined, it goes out with one send(2)). Larger batches, such as echoed bodies, keep
 * their Buffers.
 */
const JOIN_BYTES = 16 * 1024;
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
const REASONS = /** @type {Record<number, string>} */ ({
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  501: 'Not Implemented',
  505: 'HTTP Version Not Supported',
});

// The Date header changes once a second; the hello responses are rebuilt when it does. As in
// node:http, the value is kept until a timer at the next second drops it, so a request reads no
// clock.
/** @type {string | undefined} */
let dateValue;
/**
 * The hello responses of the current second, by helloIndex().
 * @type {(Buffer | undefined)[]}
 */
let helloCache = [];

function httpDate() {
  if (dateValue === undefined) {
    const now = new Date();
    dateValue = now.toUTCString();
    setTimeout(() => {
      dateValue = undefined;
      helloCache = [];
    }, 1000 - now.getMilliseconds()).unref();
  }
  return dateValue;
}

/**
 * The Connection header a response carries: none for HTTP/1.1 keep-alive (the default),
 * `keep-alive` for an HTTP/1.0 client that asked for it, `close` when the connection ends.
 * @param {boolean} keepAlive
 * @param {0 | 1} versionMinor
 */
function connectionLine(keepAlive, versionMinor) {
  if (!keepAlive) return 'Connection: close\r\n';
  return versionMinor === 0 ? 'Connection: keep-alive\r\n' : '';
}

/**
 * One response as a single Buffer (head and body together).
 * @param {number} status
 * @param {{ keepAlive: boolean, versionMinor: 0 | 1, head?: boolean, type?: string, extra?: string }} how
 * @param {string | Buffer} body
 */
function response(status, how, body) {
  const bodyBytes = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const head =
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Unknown'}\r\n` +
    `Date: ${httpDate()}\r\n` +
    `Content-Type: ${how.type ?? 'text/plain'}\r\n` +
    `Content-Length: ${bodyBytes.length}\r\n` +
    (how.extra ?? '') +
    connectionLine(how.keepAlive, how.versionMinor) +
    '\r\n';
  if (how.head === true || bodyBytes.length === 0) return Buffer.from(head, 'latin1');
  const out = Buffer.allocUnsafe(head.length + bodyBytes.length);
  out.write(head, 0, 'latin1');
  bodyBytes.copy(out, head.length);
  return out;
}

/**
 * Where a hello response sits in helloCache: one slot per keep-alive, version and HEAD.
 * @param {HttpRequest} req
 */
function helloIndex(req) {
  return (
    (req.keepAlive ? 4 : 0) | (req.versionMinor === 1 ? 2 : 0) | (req.method === 'HEAD' ? 1 : 0)
  );
}

/** @param {HttpRequest} req */
function hello(req) {
  httpDate(); // starts a new second's cache when the timer dropped the last one
  const index = helloIndex(req);
  let cached = helloCache[index];
  if (cached === undefined) {
    cached = response(
      200,
      { keepAlive: req.keepAlive, versionMinor: req.versionMinor, head: req.method === 'HEAD' },
      HELLO,
    );
    helloCache[index] = cached;
  }
  return cached;
}

/**
 * Routes one request to its response.
 * @param {HttpRequest} req
 * @returns {Buffer}
 */
export function route(req) {
  const how = { keepAlive: req.keepAlive, versionMinor: req.versionMinor };
  if (req.path === '/') {
    if (req.method === 'GET' || req.method === 'HEAD') return hello(req);
    return response(405, { ...how, extra: 'Allow: GET, HEAD\r\n' }, 'Method Not Allowed\n');
  }
  if (req.path === '/echo' && req.method === 'POST')
    return response(200, { ...how, type: 'application/octet-stream' }, req.body);
  return response(404, { ...how, head: req.method === 'HEAD' }, 'Not Found\n');
}

/**
 * The response to a request the parser refused; it always closes the connection.
 * @param {HttpError} error
 */
export function errorResponse(error) {
  return response(
    error.status,
    { keepAlive: false, versionMinor: 1 },
    `${REASONS[error.status] ?? 'Error'}: ${error.message}\n`,
  );
}

/**
 * @typedef {object} HttpHelloOptions
 * @property {string} [host] address to bind (default 127.0.0.1)
 * @property {number} [port] port (default 8080; 0 picks a free one)
 * @property {Reactor} [reactor] serve on this reactor instead of creating one
 * @property {Partial<import('./parser.mjs').DEFAULT_LIMITS>} [limits] parser limits
 * @property {number} [idleTimeoutMs] close a connection idle this long between requests, or
 *   stuck this long in the middle of one (default 5000; 0 disables)
 * @property {number} [headerTimeoutMs] a request's head (request line and header fields) must
 *   arrive complete within this long of its first byte, however steadily its bytes trickle in
 *   (a slowloris client resets the idle timeout with every byte); otherwise 408 and close
 *   (default 10000; 0 disables)
 * @property {number} [lingerMs] after the last response of a closing connection, how long to
 *   wait for the peer's FIN before closing anyway (default 2000)
 */

/**
 * The Buffers one batch's responses go out in: one joined Buffer when they are small or too many
 * for one writev, else as they are.
 * @param {Buffer[]} out
 * @returns {Buffer[]}
 */
function joinSmall(out) {
  if (out.length <= 1) return out;
  if (out.length > MAX_WRITEV_CHUNKS) return [Buffer.concat(out)];
  let total = 0;
  for (const b of out) total += b.length;
  return total <= JOIN_BYTES ? [Buffer.concat(out, total)] : out;
}

/**
 * Starts the server.
 * @param {HttpHelloOptions} [options]
 * @returns {Promise<{ reactor: Reactor, listener: Listener, port: number, close(): Promise<void> }>}
 */
export async function startHttpHello(options = {}) {
  const reactor = options.reactor ?? createReactor({ ioModel: 'auto' });
  const idleTicks = Math.ceil((options.idleTimeoutMs ?? 5000) / 250);
  const lingerTicks = Math.ceil((options.lingerMs ?? 2000) / 250);
  const headerTicks = Math.ceil((options.headerTimeoutMs ?? 10_000) / 250);
  const limits = options.limits ?? {};

  // One coarse clock for every connection instead of a timer each: a sweep four times a second
  // closes connections idle for idleTimeoutMs and closing ones whose peer never sent FIN.
  let tick = 0;
  /**
   * headTick: the tick the head being received started at, -1 when none is.
   * @type {Set<{ conn: Connection, parser: HttpParser, lastTick: number, headTick: number, closingTick: number }>}
   */
  const live = new Set();
  const sweeper = setInterval(() => {
    tick += 1;
    for (const state of live) {
      if (state.closingTick >= 0) {
        if (tick - state.closingTick >= lingerTicks) state.conn.destroy();
      } else if (headerTicks > 0 && state.headTick >= 0 && tick - state.headTick >= headerTicks) {
        state.closingTick = tick;
        state.conn.end(errorResponse(new HttpError(408, 'request header not completed in time')));
      } else if (idleTicks > 0 && tick - state.lastTick >= idleTicks) {
        if (state.parser.idle) {
          state.conn.destroy();
        } else {
          // Stuck mid-request (a slow or stalled client): say so, then close.
          state.closingTick = tick;
          state.conn.end(errorResponse(new HttpError(408, 'request not completed in time')));
        }
      }
    }
  }, 250);
  sweeper.unref();

  /** @param {Connection} conn */
  const onConnection = (conn) => {
    const parser = new HttpParser(limits);
    const state = { conn, parser, lastTick: tick, headTick: -1, closingTick: -1 };
    live.add(state);
    conn.on('close', () => live.delete(state));
    conn.on('data', (chunk) => {
      if (state.closingTick >= 0) return; // closing: read and drop until the peer's FIN
      state.lastTick = tick;
      const requests = parser.execute(chunk);
      // A head's clock starts with its first byte: in this chunk if the connection was between
      // requests or completed one here (a pipelined next head), else it keeps running.
      if (!parser.inHead) state.headTick = -1;
      else if (state.headTick < 0 || requests.length > 0) state.headTick = tick;
      /** @type {Buffer[]} */
      const out = [];
      let closing = false;
      for (const req of requests) {
        out.push(route(req));
        if (!req.keepAlive) closing = true;
      }
      if (parser.error !== undefined && !closing) {
        out.push(errorResponse(parser.error));
        closing = true;
      }
      if (!closing && parser.takeContinue()) out.push(CONTINUE);
      const chunks = joinSmall(out);
      if (closing) {
        // Half-close after the responses; iomux closes the socket once the peer's FIN arrives.
        state.closingTick = tick;
        if (chunks.length > 0) conn.writev(chunks);
        conn.end();
      } else if (chunks.length > 0 && !conn.writev(chunks)) {
        // The client is not reading its responses: stop reading its requests until it does.
        conn.pause();
        conn.once('drain', () => {
          state.lastTick = tick;
          conn.resume();
        });
      }
    });
  };

  const listener = await reactor.listen(
    { host: options.host ?? '127.0.0.1', port: options.port ?? 8080, backlog: 4096 },
    onConnection,
  );
  return {
    reactor,
    listener,
    port: listener.port,
    async close() {
      clearInterval(sweeper);
      listener.close();
      if (options.reactor === undefined) await reactor.close();
    },
  };
}
