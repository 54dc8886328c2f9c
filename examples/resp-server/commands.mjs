// The commands, with Redis's reply shapes and error texts. Each handler gets the arguments (byte
// ranges of the read data, read as keys, copies or views), the store, the reply writer and the
// batch's clock.
//
// Required set: PING [msg], ECHO, GET, SET key value [EX s | PX ms | NX | XX], DEL, EXISTS, INCR,
// MGET, MSET, COMMAND (empty array, so redis-cli starts quietly), QUIT. Also, because real clients
// ask for them: INFO (ioredis's ready check), CONFIG GET (redis-benchmark reads `save` and
// `appendonly`), SELECT 0, DBSIZE, FLUSHDB, FLUSHALL, TTL, PTTL.

import { Buffer } from 'node:buffer';

/** @typedef {import('./store.mjs').Store} Store */
/** @typedef {import('./reply.mjs').ReplyWriter} ReplyWriter */
/** @typedef {import('./resp-parser.mjs').Args} Args */

/**
 * What a handler may use besides its arguments.
 * @typedef {object} Context
 * @property {Store} store
 * @property {ReplyWriter} out
 * @property {number} now ms since the epoch, read once per batch
 * @property {() => string} info the INFO text
 */

/** Returned by QUIT: reply, then close the connection. */
export const QUIT = Symbol('quit');

const NOT_INTEGER = 'ERR value is not an integer or out of range';
const SYNTAX = 'ERR syntax error';
const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;
/** Expiry values above this (about 31,700 years in ms) are refused, as Redis refuses overflow. */
const MAX_EXPIRE_MS = 1e15;
const CONFIG = /** @type {Record<string, string>} */ ({
  save: '',
  appendonly: 'no',
  databases: '1',
});

/**
 * Redis's string2ll: '-'? then digits, no leading zeros, no spaces, within int64.
 * @param {Buffer} b
 * @returns {number | bigint | undefined}
 */
export function parseInt64(b) {
  const s = b.toString('latin1');
  if (!/^(?:-?[1-9]\d{0,18}|0)$/.test(s)) return undefined;
  if (s.length <= 15) return Number(s);
  const big = BigInt(s);
  return big > INT64_MAX || big < INT64_MIN ? undefined : big;
}

/**
 * @param {Args} args
 * @param {Context} ctx
 * @returns {typeof QUIT | undefined}
 */
function ping(args, { out }) {
  if (args.length > 2) return arity(out, 'ping');
  if (args.length === 2) out.bulk(args.view(1));
  else out.simple('PONG');
  return undefined;
}

/**
 * SET key value [NX | XX] [EX seconds | PX milliseconds]
 * @param {Args} args
 * @param {Context} ctx
 */
function set(args, { store, out, now }) {
  let nx = false;
  let xx = false;
  let expiresAt = 0;
  let expirySet = false;
  for (let i = 3; i < args.length; i += 1) {
    const option = args.key(i).toUpperCase();
    if (option === 'NX' && !xx) nx = true;
    else if (option === 'XX' && !nx) xx = true;
    else if ((option === 'EX' || option === 'PX') && !expirySet && i + 1 < args.length) {
      i += 1;
      const amount = parseInt64(args.view(i));
      if (amount === undefined) return void out.error(NOT_INTEGER);
      const ms = Number(amount) * (option === 'EX' ? 1000 : 1);
      if (ms <= 0 || ms > MAX_EXPIRE_MS)
        return void out.error("ERR invalid expire time in 'set' command");
      expiresAt = now + ms;
      expirySet = true;
    } else {
      return void out.error(SYNTAX);
    }
  }
  // The key by its bytes in place: a key already stored costs no string.
  const keyBytes = args.bytesOf(1);
  const keyStart = args.startOf(1);
  const keyEnd = args.endOf(1);
  if (nx || xx) {
    const exists = store.lookupBytes(keyBytes, keyStart, keyEnd, now) !== undefined;
    if (exists === nx) return void out.bulk(undefined);
  }
  store.setBytes(keyBytes, keyStart, keyEnd, args.copy(2), expiresAt);
  out.simple('OK');
  return undefined;
}

/**
 * GET key, the key looked up by its bytes in place.
 * @param {Args} args
 * @param {Context} ctx
 */
function get(args, { store, out, now }) {
  out.bulk(store.lookupBytes(args.bytesOf(1), args.startOf(1), args.endOf(1), now)?.value);
  return undefined;
}

/**
 * @param {Args} args
 * @param {Context} ctx
 */
function incr(args, { store, out, now }) {
  const key = args.key(1);
  const entry = store.lookup(key, now);
  let next;
  if (entry === undefined) {
    next = 1;
  } else {
    const value = parseInt64(entry.value);
    if (value === undefined) return void out.error(NOT_INTEGER);
    if (typeof value === 'number') {
      next = value + 1;
    } else {
      if (value === INT64_MAX) return void out.error('ERR increment or decrement would overflow');
      next = value + 1n;
    }
  }
  // INCR keeps the key's time to live, as in Redis.
  store.set(key, Buffer.from(String(next), 'latin1'), entry?.expiresAt ?? 0);
  out.integer(next);
  return undefined;
}

/**
 * @param {Args} args
 * @param {Context} ctx
 */
function mset(args, { store, out }) {
  if (args.length % 2 === 0) return arity(out, 'mset');
  for (let i = 1; i < args.length; i += 2) store.set(args.key(i), args.copy(i + 1), 0);
  out.simple('OK');
  return undefined;
}

/**
 * @param {Args} args
 * @param {Context} ctx
 * @param {boolean} ms
 */
function ttl(args, { store, out, now }, ms) {
  const entry = store.lookup(args.key(1), now);
  if (entry === undefined) out.integer(-2);
  else if (entry.expiresAt === 0) out.integer(-1);
  else out.integer(ms ? entry.expiresAt - now : Math.round((entry.expiresAt - now) / 1000));
  return undefined;
}

/**
 * @param {Args} args
 * @param {Context} ctx
 */
function config(args, { out }) {
  const sub = args.key(1).toUpperCase();
  if (sub !== 'GET' || args.length !== 3) {
    out.error(`ERR unknown subcommand or wrong number of arguments for 'CONFIG|${sub}'`);
    return undefined;
  }
  const name = args.key(2).toLowerCase();
  const value = CONFIG[name];
  if (value === undefined) {
    out.array(0);
  } else {
    out.array(2);
    out.bulk(Buffer.from(name));
    out.bulk(Buffer.from(value));
  }
  return undefined;
}

/**
 * @param {ReplyWriter} out
 * @param {string} name
 * @returns {undefined}
 */
function arity(out, name) {
  out.error(`ERR wrong number of arguments for '${name}' command`);
  return undefined;
}

/**
 * @typedef {(args: Args, ctx: Context) => typeof QUIT | undefined} Handler
 * Arity as in Redis's command table: n > 0 exactly n arguments (name included), n < 0 at least -n.
 * @type {Map<string, [arity: number, handler: Handler]>}
 */
export const COMMANDS = new Map([
  ['ping', [-1, ping]],
  ['echo', [2, (args, { out }) => void out.bulk(args.view(1))]],
  ['get', [2, get]],
  ['set', [-3, set]],
  [
    'del',
    [
      -2,
      (args, { store, out, now }) => {
        let deleted = 0;
        for (let i = 1; i < args.length; i += 1) if (store.delete(args.key(i), now)) deleted += 1;
        out.integer(deleted);
        return undefined;
      },
    ],
  ],
  [
    'exists',
    [
      -2,
      (args, { store, out, now }) => {
        let found = 0;
        for (let i = 1; i < args.length; i += 1)
          if (store.lookup(args.key(i), now) !== undefined) found += 1;
        out.integer(found);
        return undefined;
      },
    ],
  ],
  ['incr', [2, incr]],
  [
    'mget',
    [
      -2,
      (args, { store, out, now }) => {
        out.array(args.length - 1);
        for (let i = 1; i < args.length; i += 1) out.bulk(store.lookup(args.key(i), now)?.value);
        return undefined;
      },
    ],
  ],
  ['mset', [-3, mset]],
  ['command', [-1, (_args, { out }) => void out.array(0)]],
  [
    'quit',
    [
      -1,
      (_args, { out }) => {
        out.simple('OK');
        return QUIT;
      },
    ],
  ],
  ['info', [-1, (_args, { out, info }) => void out.bulk(Buffer.from(info(), 'latin1'))]],
  ['config', [-2, config]],
  [
    'select',
    [
      2,
      (args, { out }) => {
        if (args.key(1) === '0') out.simple('OK');
        else out.error('ERR DB index is out of range');
        return undefined;
      },
    ],
  ],
  ['dbsize', [1, (_args, { store, out }) => void out.integer(store.size)]],
  [
    'flushdb',
    [
      -1,
      (_args, { store, out }) => {
        store.flush();
        out.simple('OK');
        return undefined;
      },
    ],
  ],
  [
    'flushall',
    [
      -1,
      (_args, { store, out }) => {
        store.flush();
        out.simple('OK');
        return undefined;
      },
    ],
  ],
  ['ttl', [2, (args, ctx) => ttl(args, ctx, false)]],
  ['pttl', [2, (args, ctx) => ttl(args, ctx, true)]],
]);

/** Command names are letters only, and at most this many (Redis's longest is 21). */
const MAX_NAME = 10;

/**
 * A command name folded to lower case and packed into a number, 5 bits per letter (a = 1 ...
 * z = 26), so finding the handler reads the name's bytes instead of making two strings per
 * command. Names of up to MAX_NAME letters pack exactly: 50 bits, below 2^53.
 * @param {Uint8Array} bytes
 * @param {number} start
 * @param {number} end
 * @returns {number} the packed name, or -1 when it is not all letters or too long
 */
export function packName(bytes, start, end) {
  if (end <= start || end - start > MAX_NAME) return -1;
  let packed = 0;
  for (let i = start; i < end; i += 1) {
    const letter = /** @type {number} */ (bytes[i]) | 0x20; // ASCII upper case to lower case
    if (letter < 97 || letter > 122) return -1;
    packed = packed * 32 + (letter - 96);
  }
  return packed;
}

/** COMMANDS keyed by their packed names. */
const BY_PACKED_NAME = new Map(
  [...COMMANDS].map(([name, command]) => {
    const bytes = Buffer.from(name, 'latin1');
    return [packName(bytes, 0, bytes.length), command];
  }),
);

/**
 * Runs one command and writes its reply.
 * @param {Args} args the command name and its arguments
 * @param {Context} ctx
 * @returns {typeof QUIT | undefined} QUIT when the connection is to close after the replies
 */
export function execute(args, ctx) {
  const command = BY_PACKED_NAME.get(packName(args.bytesOf(0), args.startOf(0), args.endOf(0)));
  if (command === undefined) {
    // Redis 7's text: the name and the first arguments, cut at 128 bytes.
    let quoted = '';
    for (let i = 1; i < args.length && quoted.length < 128; i += 1)
      quoted += `'${args.key(i).slice(0, 128 - quoted.length)}' `;
    ctx.out.error(
      `ERR unknown command '${args.key(0).slice(0, 128)}', with args beginning with: ${quoted}`,
    );
    return undefined;
  }
  const [want, handler] = command;
  if (want > 0 ? args.length !== want : args.length < -want)
    return arity(ctx.out, args.key(0).toLowerCase());
  return handler(args, ctx);
}
