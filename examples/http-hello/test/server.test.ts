import { Connection } from '@iomux/core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startHttpHello } from '../app.mjs';
import { RawClient } from './client.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const get = (path: string, extra = ''): string =>
  `GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`;

/**
 * fetch() whose connection closes after the response. Plain fetch() leaves undici's keep-alive
 * socket open (unref'd, so only its fd shows) past the test that made it; keep-alive itself is
 * tested with RawClient below.
 */
const fetchOnce = (url: string, init: Omit<RequestInit, 'headers'> = {}): Promise<Response> =>
  fetch(url, { ...init, headers: { connection: 'close' } });

type Server = Awaited<ReturnType<typeof startHttpHello>>;

describe('http-hello', () => {
  let server: Server;
  let base: string;
  const clients: RawClient[] = [];

  beforeAll(async () => {
    server = await startHttpHello({ port: 0 });
    base = `http://127.0.0.1:${server.port}`;
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    vi.restoreAllMocks();
  });

  afterAll(async () => {
    await server.close();
  });

  async function connect(): Promise<RawClient> {
    const client = await RawClient.connect(server.port);
    clients.push(client);
    return client;
  }

  it('serves Hello, World! to fetch', async () => {
    const res = await fetchOnce(`${base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain');
    expect(res.headers.get('content-length')).toBe('13');
    expect(res.headers.get('date')).toMatch(/GMT$/);
    expect(await res.text()).toBe('Hello, World!');
    const query = await fetchOnce(`${base}/?a=1`);
    expect(await query.text()).toBe('Hello, World!');
  });

  it('answers 404, 405 and HEAD to fetch', async () => {
    const missing = await fetchOnce(`${base}/nope`);
    expect(missing.status).toBe(404);
    await missing.arrayBuffer();
    const post = await fetchOnce(`${base}/`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.arrayBuffer();
    const head = await fetchOnce(`${base}/`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('13');
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('reads request bodies framed by Content-Length and by chunked coding', async () => {
    const body = Buffer.alloc(200_000, 'iomux ');
    const res = await fetchOnce(`${base}/echo`, { method: 'POST', body });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);

    // A stream body makes fetch use Transfer-Encoding: chunked.
    const parts = ['one ', 'two ', 'three'];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const part = parts.shift();
        if (part === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(part));
      },
    });
    const chunked = await fetchOnce(`${base}/echo`, {
      method: 'POST',
      body: stream,
      duplex: 'half',
    });
    expect(await chunked.text()).toBe('one two three');
  });

  it('answers 10 pipelined requests sent in one write, in order, with one joined Buffer', async () => {
    const writev = vi.spyOn(Connection.prototype, 'writev');
    const client = await connect();
    const paths = Array.from({ length: 10 }, (_, i) => (i % 3 === 0 ? `/missing-${i}` : '/'));
    await client.send(paths.map((p) => get(p)).join(''));
    const responses = await client.take(10);
    expect(responses.map((r) => r.status)).toEqual(paths.map((p) => (p === '/' ? 200 : 404)));
    expect(
      responses.filter((r) => r.status === 200).every((r) => r.body.toString() === 'Hello, World!'),
    ).toBe(true);
    // Loopback delivers the 10 requests as one read: their responses, a few hundred bytes, go out
    // joined into one Buffer by one writev.
    expect(writev.mock.calls.map((call) => call[0].length)).toEqual([1]);
    const sent = Buffer.from(writev.mock.calls[0]?.[0][0] ?? []).toString('latin1');
    expect(sent.match(/HTTP\/1\.1 \d{3} /g)?.length).toBe(10);
  });

  it('keeps the Buffers of a batch over 16 KiB instead of joining them', async () => {
    const writev = vi.spyOn(Connection.prototype, 'writev');
    const client = await connect();
    const body = 'e'.repeat(9000);
    const post = `POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    await client.send(post + post);
    const responses = await client.take(2);
    expect(responses.map((r) => r.body.toString())).toEqual([body, body]);
    expect(writev.mock.calls.map((call) => call[0].length)).toEqual([2]);
  });

  it('answers 3000 small pipelined requests of one write (more than writev takes at once)', async () => {
    const client = await connect();
    await client.send(get('/').repeat(3000));
    const responses = await client.take(3000);
    expect(responses.every((r) => r.status === 200)).toBe(true);
  });

  it('parses a request split byte by byte', async () => {
    const client = await connect();
    const request = Buffer.from(
      'POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello world' + get('/'),
    );
    for (let i = 0; i < request.length; i += 1) {
      await client.send(request.subarray(i, i + 1));
      await sleep(1);
    }
    const [echo, hello] = await client.take(2);
    expect(echo?.body.toString()).toBe('hello world');
    expect(hello?.body.toString()).toBe('Hello, World!');
  });

  it.each([
    ['a bad request line', 'GARBAGE\r\n\r\n'],
    ['a header over 8 KiB', get('/', `X-Big: ${'b'.repeat(9000)}\r\n`)],
    ['a bad Content-Length', get('/', 'Content-Length: twelve\r\n')],
  ])('answers %s with 400 and Connection: close, and keeps serving', async (_, input) => {
    const client = await connect();
    await client.send(get('/') + input);
    const [ok, bad] = await client.take(2);
    expect(ok?.status).toBe(200);
    expect(bad?.status).toBe(400);
    expect(bad?.headers.connection).toBe('close');
    await client.ended;
    const res = await fetchOnce(`${base}/`);
    expect(await res.text()).toBe('Hello, World!');
  });

  it('serves 1000 keep-alive requests on one connection', async () => {
    const acceptedBefore = server.reactor.stats().accepted;
    const client = await connect();
    for (let i = 0; i < 1000; i += 1) {
      await client.send(get('/'));
      const res = await client.next();
      expect(res.status).toBe(200);
      expect(res.headers.connection).toBeUndefined();
    }
    expect(server.reactor.stats().accepted - acceptedBefore).toBe(1);
  });

  it('honours Connection: close', async () => {
    const client = await connect();
    await client.send(get('/', 'Connection: close\r\n') + get('/never-answered'));
    const res = await client.next();
    expect(res.status).toBe(200);
    expect(res.headers.connection).toBe('close');
    await client.ended;
    await expect(client.next(200)).rejects.toThrow(/ended/);
  });

  it('closes HTTP/1.0 connections unless keep-alive is asked for', async () => {
    const plain = await connect();
    await plain.send('GET / HTTP/1.0\r\n\r\n');
    const res = await plain.next();
    expect(res.headers.connection).toBe('close');
    await plain.ended;

    const keep = await connect();
    await keep.send('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect((await keep.next()).headers.connection).toBe('keep-alive');
    await keep.send('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect((await keep.next()).status).toBe(200);
  });

  it('sends 100 Continue before reading the body', async () => {
    const client = await connect();
    await client.send(
      'POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n',
    );
    expect((await client.next()).status).toBe(100);
    await client.send('body');
    expect((await client.next()).body.toString()).toBe('body');
  });

  it('answers 501 to an unsupported transfer coding', async () => {
    const client = await connect();
    await client.send(get('/echo', 'Transfer-Encoding: gzip, chunked\r\n'));
    const res = await client.next();
    expect(res.status).toBe(501);
    await client.ended;
  });

  it('stops reading a client that does not read its responses, then catches up', async () => {
    const client = await connect();
    client.socket.pause();
    const n = 5000;
    await client.send(get('/missing', `X-Pad: ${'p'.repeat(200)}\r\n`).repeat(n));
    await sleep(100);
    client.socket.resume();
    const responses = await client.take(n, 20_000);
    expect(responses.every((r) => r.status === 404)).toBe(true);
  });
});

describe('http-hello timeouts', () => {
  it('closes idle connections and answers 408 to a stalled request', async () => {
    const server = await startHttpHello({ port: 0, idleTimeoutMs: 300 });
    try {
      const idle = await RawClient.connect(server.port);
      await idle.send(get('/'));
      expect((await idle.next()).status).toBe(200);
      await idle.ended;

      const stalled = await RawClient.connect(server.port);
      await stalled.send('GET / HTTP/1.1\r\nHost: te');
      const res = await stalled.next(3000);
      expect(res.status).toBe(408);
      await stalled.ended;
      stalled.close();
    } finally {
      await server.close();
    }
  });

  it('answers 408 to a head that trickles in slower than the header timeout allows', async () => {
    const server = await startHttpHello({ port: 0, headerTimeoutMs: 600, idleTimeoutMs: 5000 });
    try {
      // A keep-alive request first: the next head's clock starts at its own first byte.
      const slow = await RawClient.connect(server.port);
      await slow.send(get('/'));
      expect((await slow.next()).status).toBe(200);
      const head = 'GET / HTTP/1.1\r\nHost: x\r\n';
      const started = performance.now();
      let status = 0;
      const reply = slow.next(3000).then((r) => {
        status = r.status;
      });
      // One byte every 100 ms never lets the connection look idle.
      for (const byte of head) {
        if (status !== 0 || slow.socket.destroyed) break;
        slow.socket.write(byte);
        await sleep(100);
      }
      await reply;
      const ms = performance.now() - started;
      expect(status).toBe(408);
      expect(ms).toBeGreaterThanOrEqual(500);
      expect(ms).toBeLessThan(2000);
      await slow.ended;
      slow.close();

      // A head that completes in time is served, with the same timeout.
      const ok = await RawClient.connect(server.port);
      for (const byte of get('/')) {
        ok.socket.write(byte);
        await sleep(10);
      }
      expect((await ok.next()).status).toBe(200);
      ok.close();
    } finally {
      await server.close();
    }
  });
});
