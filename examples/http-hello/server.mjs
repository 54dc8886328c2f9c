// HTTP/1.1 hello server on iomux. PORT (default 8080), HOST (default 127.0.0.1),
// IOMUX_BACKEND (default: the best available backend).
import { startHttpHello } from './app.mjs';

const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? '127.0.0.1';

const server = await startHttpHello({ host, port });
for (const record of server.reactor.fallbackHistory)
  console.log(`backend ${record.backend} unavailable: ${record.cause}`);
console.log(
  `http-hello listening on http://${host}:${server.port}/ (backend: ${server.reactor.backend})`,
);

const shutdown = () => {
  void server.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
