// One server of the ecosystem benchmark, in its own process: `node servers.mjs <kind> <variant>`
// with kind `tls` (an echo server), `http` (node:http answering "hello") or `ws` (the ws library's
// WebSocketServer on node:http, echoing binary messages), and variant `iomux`
// (node:tls / node:http over toDuplex(conn), IOMUX_BACKEND picks the backend) or `node` (the
// same code on node:net). Prints "listening <port>"; exits on SIGTERM.
import http from 'node:http';
import { pipeline } from 'node:stream';
import tls from 'node:tls';
import { createReactor, toDuplex } from '@iomux/core';
import { WebSocketServer } from 'ws';
import { loadCertificate } from '../../examples/tls-echo/certificate.mjs';

const [kind, variant] = process.argv.slice(2);
const certificate = loadCertificate();

/** The per-connection code, the same for both variants. */
function handlerFor() {
  if (kind === 'tls') {
    const secureContext = tls.createSecureContext({ key: certificate.key, cert: certificate.cert });
    return (socket) => {
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext });
      pipeline(secure, secure, () => undefined);
    };
  }
  if (kind === 'http') {
    const body = Buffer.from('Hello, World!');
    const server = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(body);
    });
    server.keepAliveTimeout = 30_000;
    return (socket) => server.emit('connection', socket);
  }
  if (kind === 'ws') {
    const server = http.createServer((req, res) => res.writeHead(426).end());
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    server.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
    });
    return (socket) => server.emit('connection', socket);
  }
  throw new Error(`unknown kind ${kind} (tls | http | ws)`);
}

const onSocket = handlerFor();
let close;
if (variant === 'iomux') {
  const reactor = createReactor({ ioModel: 'auto' });
  const listener = await reactor.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, (conn) =>
    onSocket(toDuplex(conn)),
  );
  console.log(`listening ${listener.port} (backend ${reactor.backend})`);
  close = () => reactor.close();
} else if (variant === 'node') {
  const server = (await import('node:net')).createServer({ noDelay: true }, onSocket);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', 4096, resolve));
  console.log(`listening ${server.address().port}`);
  close = () => new Promise((resolve) => server.close(resolve));
} else throw new Error(`unknown variant ${variant} (iomux | node)`);

process.on('SIGTERM', () => {
  void Promise.resolve(close()).then(() => process.exit(0));
});
