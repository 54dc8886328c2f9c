// TCP echo server. PORT (default 7000), HOST (default 127.0.0.1), IOMUX_BACKEND (default: best).
import { createReactor } from '@iomux/core';
import { echo } from './echo.mjs';

const port = Number(process.env.PORT ?? 7000);
const host = process.env.HOST ?? '127.0.0.1';

const reactor = createReactor({ ioModel: 'auto' });
for (const record of reactor.fallbackHistory) {
  console.log(`backend ${record.backend} unavailable: ${record.cause}`);
}
const listener = await reactor.listen({ host, port, backlog: 4096 }, echo);
console.log(`echo server listening on ${host}:${listener.port} (backend: ${reactor.backend})`);

const shutdown = () => {
  console.log(`closing: ${JSON.stringify(reactor.stats())}`);
  void reactor.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
