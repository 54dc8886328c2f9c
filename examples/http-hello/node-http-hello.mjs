// The baseline for bench.mjs: the same hello-world on a minimal node:http server.
// PORT (default 8081; 0 picks a free one), HOST (default 127.0.0.1).
import http from 'node:http';

const port = Number(process.env.PORT ?? 8081);
const host = process.env.HOST ?? '127.0.0.1';
const server = http.createServer((req, res) => {
  if (req.url === '/' || req.url?.startsWith('/?')) {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 13 });
    res.end('Hello, World!');
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
    res.end('Not Found\n');
  }
});
server.listen(port, host, () => {
  console.log(`node:http hello listening on http://${host}:${server.address().port}/`);
});
const shutdown = () => server.close(() => process.exit(0));
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
