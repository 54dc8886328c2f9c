// node:http and the `ws` WebSocket server fed with iomux connections
// (`server.emit('connection', toDuplex(conn))`), on every backend: fetch() against it, request
// and response bodies byte-exact, keep-alive reuse and the keep-alive timeout, and a WebSocket
// upgrade with a binary echo compared byte for byte.
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { toDuplex } from '../src/index.js';
import { backends, pattern, until } from './helpers.js';
import { reactorPerTest } from './reactor-per-test.js';

/** Answers GET / with "hello", and POST /echo with the request body. */
function app(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.method === 'POST' && req.url === '/echo') {
    req.pipe(res);
    return;
  }
  res.setHeader('content-type', 'text/plain');
  res.end(`hello ${req.url ?? ''}`);
}

describe.each(backends)('node:http on iomux: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const suite = reactorPerTest(backend);
  const { closers } = suite;

  /** An http.Server that never listens itself: iomux accepts and hands it the connections. */
  async function serveHttp(server: http.Server): Promise<string> {
    const listener = await suite.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      server.emit('connection', toDuplex(conn));
    });
    closers.push(() => {
      server.closeAllConnections();
    });
    return `http://127.0.0.1:${listener.port}`;
  }

  run('fetch() gets a response; a 4 MiB POST body comes back byte-exact', async () => {
    const base = await serveHttp(http.createServer(app));
    const hello = await fetch(`${base}/x?y=1`, { headers: { connection: 'close' } });
    expect(hello.status).toBe(200);
    expect(await hello.text()).toBe('hello /x?y=1');
    const body = pattern(4 << 20, 31);
    const echoed = await fetch(`${base}/echo`, {
      method: 'POST',
      body,
      headers: { connection: 'close' },
    });
    expect(Buffer.from(await echoed.arrayBuffer()).equals(body)).toBe(true);
    await until(() => suite.reactor.connectionCount() === 0, 5000, 'the connections to close');
  });

  run('keep-alive: a keep-alive agent sends its requests on one connection', async () => {
    const server = http.createServer(app);
    const base = await serveHttp(server);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(() => {
      agent.destroy();
    });
    const get = (path: string): Promise<string> =>
      new Promise((resolve, reject) => {
        http
          .get(base + path, { agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (body += chunk));
            res.on('end', () => {
              resolve(body);
            });
          })
          .on('error', reject);
      });
    for (const path of ['/1', '/2', '/3']) expect(await get(path)).toBe(`hello ${path}`);
    expect(suite.reactor.stats().accepted).toBe(1);
    expect(suite.reactor.connectionCount()).toBe(1);
  });

  run(
    'keep-alive timeout: the server closes an idle connection after keepAliveTimeout',
    async () => {
      const server = http.createServer(app);
      server.keepAliveTimeout = 300;
      const base = await serveHttp(server);
      const client = net.connect(Number(new URL(base).port), '127.0.0.1');
      closers.push(() => client.destroy());
      let response = '';
      let idleSince = 0;
      client.on('data', (chunk: Buffer) => {
        response += chunk.toString('latin1');
        if (response.endsWith('hello /')) idleSince = performance.now();
      });
      const ended = new Promise((resolve) => client.once('end', resolve));
      client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await ended; // the server's FIN: node:http's keep-alive timer runs on the socket's setTimeout
      const idleMs = performance.now() - idleSince;
      expect(response).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(response).toMatch(/Keep-Alive: timeout=0/i);
      expect(idleSince).toBeGreaterThan(0);
      expect(idleMs).toBeGreaterThanOrEqual(250);
      expect(idleMs).toBeLessThan(5000);
      await until(() => suite.reactor.connectionCount() === 0, 5000, 'the connection to close');
    },
  );

  run('server.timeout: a silent client gets the timeout and is dropped', async () => {
    const server = http.createServer(app);
    server.timeout = 200;
    const base = await serveHttp(server);
    const { port } = new URL(base);
    const timedOut: string[] = [];
    server.on('timeout', (socket: { remoteAddress?: string; destroy(): void }) => {
      timedOut.push(socket.remoteAddress ?? '?');
      socket.destroy();
    });
    const client = net.connect(Number(port), '127.0.0.1');
    closers.push(() => client.destroy());
    client.write('GET / HTTP/1.1\r\n'); // never finishes its headers
    await until(() => timedOut.length === 1, 10_000, "the server's timeout");
    expect(timedOut).toEqual(['127.0.0.1']);
    await until(() => client.destroyed || client.readableEnded, 5000, 'the client to see it');
  });

  run(
    'ws: WebSocketServer on the iomux-fed http server echoes 1 MiB binary byte-exact',
    async () => {
      const server = http.createServer(app);
      const wss = new WebSocketServer({ noServer: true });
      server.on('upgrade', (req, socket, head) => {
        wss.handleUpgrade(req, socket, head, (ws) => {
          ws.on('message', (data, isBinary) => {
            ws.send(data, { binary: isBinary });
          });
        });
      });
      closers.push(() => {
        wss.close();
      });
      const base = await serveHttp(server);
      const client = new WebSocket(base.replace('http', 'ws'));
      closers.push(() => {
        client.terminate();
      });
      await new Promise<void>((resolve, reject) => {
        client.once('open', resolve);
        client.once('error', reject);
      });
      const messages = [pattern(1 << 20, 41), pattern(1, 42), pattern(70_000, 43)];
      const replies: Buffer[] = [];
      const done = new Promise<void>((resolve) => {
        client.on('message', (data: Buffer, isBinary) => {
          expect(isBinary).toBe(true);
          replies.push(data);
          if (replies.length === messages.length) resolve();
        });
      });
      for (const message of messages) client.send(message);
      await done;
      for (const [i, message] of messages.entries()) expect(replies[i]?.equals(message)).toBe(true);
      client.close(1000, 'done');
      await new Promise((resolve) => client.once('close', resolve));
      await until(
        () => suite.reactor.connectionCount() === 0,
        5000,
        'the upgraded connection to close',
      );
    },
  );
});
