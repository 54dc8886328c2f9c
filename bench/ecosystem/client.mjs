// Load for the ecosystem benchmark: `node client.mjs <kind> <port> <seconds> <connections>`.
// tls: each connection (TLS 1.3) sends 1 KiB and waits for it to come back, over and over.
// http: each connection is a keep-alive agent socket doing GET / back to back.
// ws: each connection (the ws library's client) sends a 1 KiB binary message and waits for its echo.
// Prints one JSON line: { requests, per_sec, errors }.
import http from 'node:http';
import tls from 'node:tls';
import { WebSocket } from 'ws';

const [kind, portText, secondsText, connectionsText] = process.argv.slice(2);
const port = Number(portText);
const seconds = Number(secondsText);
const connections = Number(connectionsText);
const deadline = performance.now() + seconds * 1000;
let requests = 0;
let errors = 0;

function tlsLoop() {
  return new Promise((resolve) => {
    const message = Buffer.alloc(1024, 7);
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    let pending = message.length;
    socket.on('error', () => {
      errors += 1;
      resolve();
    });
    socket.on('close', resolve);
    socket.once('secureConnect', () => socket.write(message));
    socket.on('data', (chunk) => {
      pending -= chunk.length;
      if (pending > 0) return;
      requests += 1;
      pending = message.length;
      if (performance.now() < deadline) socket.write(message);
      else socket.end();
    });
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
function httpLoop() {
  return new Promise((resolve) => {
    const next = () => {
      if (performance.now() >= deadline) {
        resolve();
        return;
      }
      http
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume();
          res.on('end', () => {
            requests += 1;
            next();
          });
        })
        .on('error', () => {
          errors += 1;
          next();
        });
    };
    next();
  });
}

function wsLoop() {
  return new Promise((resolve) => {
    const message = Buffer.alloc(1024, 9);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
    ws.on('error', () => {
      errors += 1;
      resolve();
    });
    ws.on('close', resolve);
    ws.on('open', () => ws.send(message));
    ws.on('message', (data) => {
      if (data.length !== message.length) errors += 1;
      requests += 1;
      if (performance.now() < deadline) ws.send(message);
      else ws.close();
    });
  });
}

const started = performance.now();
const loop = { tls: tlsLoop, http: httpLoop, ws: wsLoop }[kind];
if (loop === undefined) throw new Error(`unknown kind ${kind} (tls | http | ws)`);
await Promise.all(Array.from({ length: connections }, loop));
const elapsed = (performance.now() - started) / 1000;
agent.destroy();
console.log(JSON.stringify({ requests, per_sec: requests / elapsed, errors }));
