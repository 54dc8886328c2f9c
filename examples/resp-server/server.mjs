// Redis-protocol (RESP2) server on iomux. PORT (default 6380), HOST (default 127.0.0.1),
// IOMUX_BACKEND (default: the best available backend).
import { startRespServer } from './app.mjs';

const port = Number(process.env.PORT ?? 6380);
const host = process.env.HOST ?? '127.0.0.1';

const server = await startRespServer({ host, port });
for (const record of server.reactor.fallbackHistory)
  console.log(`backend ${record.backend} unavailable: ${record.cause}`);
console.log(
  `resp-server listening on redis://${host}:${server.port} (backend: ${server.reactor.backend})`,
);

const shutdown = () => {
  void server.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
