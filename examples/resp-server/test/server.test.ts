import net from 'node:net';
import { Connection } from '@iomux/core';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startRespServer } from '../app.mjs';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sends raw bytes on a fresh socket; resolves with everything received until the server closes. */
function rawExchange(port: number, input: string | Buffer, keepOpenMs = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      socket.write(input);
    });
    let received = '';
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('end', () => {
      socket.end();
      resolve(received);
    });
    if (keepOpenMs > 0)
      setTimeout(() => {
        socket.destroy();
        resolve(received);
      }, keepOpenMs);
  });
}

type Server = Awaited<ReturnType<typeof startRespServer>>;

describe('resp-server with ioredis', () => {
  let server: Server;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRespServer({ port: 0, sweepIntervalMs: 50 });
    redis = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    await redis.ping();
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  afterAll(async () => {
    redis.disconnect();
    await server.close();
  });

  it('answers PING, ECHO and COMMAND', async () => {
    expect(await redis.ping()).toBe('PONG');
    expect(await redis.ping('hello')).toBe('hello');
    expect(await redis.echo('binary \r\n safe')).toBe('binary \r\n safe');
    expect(await redis.call('COMMAND')).toEqual([]);
  });

  it('SETs and GETs, binary-safe, with NX and XX', async () => {
    expect(await redis.set('greeting', 'hello')).toBe('OK');
    expect(await redis.get('greeting')).toBe('hello');
    expect(await redis.get('missing')).toBeNull();
    const bytes = Buffer.from([0, 1, 2, 255, 13, 10]);
    await redis.set('bytes', bytes);
    expect((await redis.getBuffer('bytes'))?.equals(bytes)).toBe(true);
    const big = Buffer.alloc(1024 * 1024, 'b');
    await redis.set('big', big);
    expect((await redis.getBuffer('big'))?.equals(big)).toBe(true);
    expect(await redis.set('greeting', 'again', 'NX')).toBeNull();
    expect(await redis.set('fresh', 'v', 'NX')).toBe('OK');
    expect(await redis.set('absent', 'v', 'XX')).toBeNull();
    expect(await redis.set('greeting', 'replaced', 'XX')).toBe('OK');
    expect(await redis.get('greeting')).toBe('replaced');
    await expect(redis.call('SET', 'k', 'v', 'NX', 'XX')).rejects.toThrow('ERR syntax error');
    await expect(redis.call('SET', 'k', 'v', 'EX', 'ten')).rejects.toThrow(
      'ERR value is not an integer or out of range',
    );
    await expect(redis.call('SET', 'k', 'v', 'EX', '0')).rejects.toThrow(
      "ERR invalid expire time in 'set' command",
    );
  });

  it('expires keys with EX and PX, lazily and by the periodic sweep', async () => {
    await redis.set('short', 'v', 'PX', 150);
    await redis.set('seconds', 'v', 'EX', 1);
    await redis.set('swept', 'v', 'PX', 100);
    expect(await redis.pttl('short')).toBeGreaterThan(0);
    expect(await redis.ttl('seconds')).toBe(1);
    expect(await redis.ttl('greeting')).toBe(-1);
    await sleep(250);
    expect(await redis.get('short')).toBeNull(); // lazy, on access
    expect(server.store.table.has('swept')).toBe(false); // the sweep removed it untouched
    expect(await redis.get('seconds')).toBe('v');
    await sleep(900);
    expect(await redis.exists('seconds')).toBe(0);
    expect(await redis.ttl('seconds')).toBe(-2);
  });

  it('INCRs integers and refuses the rest like Redis', async () => {
    expect(await redis.incr('counter')).toBe(1);
    expect(await redis.incr('counter')).toBe(2);
    await redis.set('text', 'abc');
    await expect(redis.incr('text')).rejects.toThrow('ERR value is not an integer or out of range');
    await redis.set('spaced', ' 1');
    await expect(redis.incr('spaced')).rejects.toThrow(
      'ERR value is not an integer or out of range',
    );
    await redis.set('big', '9223372036854775806');
    await redis.incr('big');
    expect(await redis.get('big')).toBe('9223372036854775807');
    await expect(redis.incr('big')).rejects.toThrow('ERR increment or decrement would overflow');
    await redis.set('ttl-kept', '5', 'EX', 100);
    await redis.incr('ttl-kept');
    expect(await redis.ttl('ttl-kept')).toBeGreaterThan(90);
  });

  it('MSETs, MGETs, DELs and counts with EXISTS', async () => {
    expect(await redis.mset('a', '1', 'b', '2', 'c', '3')).toBe('OK');
    expect(await redis.mget('a', 'nope', 'c')).toEqual(['1', null, '3']);
    expect(await redis.exists('a', 'b', 'a', 'nope')).toBe(3);
    expect(await redis.del('a', 'b', 'nope')).toBe(2);
    expect(await redis.exists('a', 'b', 'c')).toBe(1);
    await expect(redis.call('MSET', 'a', '1', 'b')).rejects.toThrow(
      "ERR wrong number of arguments for 'mset' command",
    );
  });

  it('reports unknown commands and wrong arity with Redis texts', async () => {
    await expect(redis.call('FOO', 'bar', 'baz')).rejects.toThrow(
      "ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' ",
    );
    await expect(redis.call('GET')).rejects.toThrow(
      "ERR wrong number of arguments for 'get' command",
    );
  });

  it('runs a pipeline of 1000 commands, replying with one writev per read', async () => {
    const writev = vi.spyOn(Connection.prototype, 'writev');
    const pipeline = redis.pipeline();
    for (let i = 0; i < 500; i += 1) pipeline.set(`p:${i}`, `value-${i}`);
    for (let i = 0; i < 499; i += 1) pipeline.get(`p:${i}`);
    pipeline.incr('p:counter');
    const results = (await pipeline.exec()) ?? [];
    expect(results).toHaveLength(1000);
    expect(results.every(([err]) => err === null)).toBe(true);
    expect(results.slice(0, 500).every(([, r]) => r === 'OK')).toBe(true);
    expect(results.slice(500, 999).map(([, r]) => r)).toEqual(
      Array.from({ length: 499 }, (_, i) => `value-${i}`),
    );
    expect(results[999]?.[1]).toBe(1);
    // Far fewer writes than commands: each read's replies went out together.
    expect(writev.mock.calls.length).toBeGreaterThan(0);
    expect(writev.mock.calls.length).toBeLessThan(100);
  });

  it('answers an MGET of 2000 large values and 5000 pipelined GETs in one read', async () => {
    const value = Buffer.alloc(5000, 'm');
    await redis.set('large', value);
    const keys = Array.from({ length: 2000 }, () => 'large');
    const values = await redis.mgetBuffer(...keys);
    expect(values.every((v) => v?.equals(value))).toBe(true);
    const reply = await rawExchange(server.port, 'GET nothing\r\n'.repeat(5000), 1000);
    expect(reply).toBe('$-1\r\n'.repeat(5000));
  });

  it('answers a malformed frame with a protocol error and closes, serving others meanwhile', async () => {
    const reply = await rawExchange(server.port, '*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n');
    expect(reply).toBe('+PONG\r\n-ERR Protocol error: invalid bulk length\r\n');
    const dollar = await rawExchange(server.port, '*2\r\n$3\r\nGET\r\n+oops\r\n');
    expect(dollar).toBe("-ERR Protocol error: expected '$', got '+'\r\n");
    const huge = await rawExchange(server.port, `*2\r\n$3\r\nSET\r\n$${600 * 1024 * 1024}\r\n`);
    expect(huge).toBe('-ERR Protocol error: invalid bulk length\r\n');
    const many = await rawExchange(server.port, `*${2 * 1024 * 1024}\r\n`);
    expect(many).toBe('-ERR Protocol error: invalid multibulk length\r\n');
    expect(await redis.ping()).toBe('PONG');
    expect(await redis.get('greeting')).toBe('replaced');
  });

  it('serves inline commands and QUIT', async () => {
    const reply = await rawExchange(
      server.port,
      'PING\r\nSET inline "a b"\r\nGET inline\r\nQUIT\r\nPING\r\n',
    );
    expect(reply).toBe('+PONG\r\n+OK\r\n$3\r\na b\r\n+OK\r\n');
  });
});

describe('resp-server limits', () => {
  it('closes a connection that exceeds its query buffer, and keeps serving', async () => {
    const server = await startRespServer({ port: 0, limits: { maxQueryBufferBytes: 64 * 1024 } });
    const redis = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    try {
      const reply = await rawExchange(
        server.port,
        `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n${'x'.repeat(90_000)}`,
      );
      expect(reply).toMatch(
        /^-ERR Protocol error: client query buffer limit of 65536 bytes exceeded/,
      );
      const partial = await rawExchange(server.port, `*100000\r\n${'$1\r\nx\r\n'.repeat(20_000)}`);
      expect(partial).toMatch(/query buffer limit/);
      expect(await redis.set('after', 'ok')).toBe('OK');
    } finally {
      redis.disconnect();
      await server.close();
    }
  });
});
