// node:net echo server for the benchmarks: the baseline iomux is compared with.
// Usage: node node-echo.mjs [--host 127.0.0.1] [--port N]   (port 0 = ephemeral)
// Prints "listening <port>" on stdout once ready; exits cleanly on SIGINT / SIGTERM.
import net from 'node:net';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
};
const host = option('--host', '127.0.0.1');
const port = Number(option('--port', '0'));
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`node-echo: --port must be an integer 0..65535, got '${option('--port')}'`);
  process.exit(2);
}

const sockets = new Set();
const server = net.createServer({ noDelay: true }, (socket) => {
  socket.setNoDelay(true);
  sockets.add(socket);
  socket.on('error', () => {}); // resets from the load generator are expected; 'close' follows
  socket.on('close', () => sockets.delete(socket));
  socket.pipe(socket);
});
server.on('error', (err) => {
  console.error(`node-echo: ${err.message}`);
  process.exit(1);
});
server.listen({ host, port, backlog: 4096 }, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

const stop = () => {
  server.close();
  for (const socket of sockets) socket.destroy();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
