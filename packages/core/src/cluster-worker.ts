// Runs inside each worker thread of startCluster(): one reactor, driven by messages.
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import type { Connection } from './connection.js';
import type { Reactor } from './reactor.js';
import { createReactor } from './reactor.js';

interface UserModule {
  onConnection(connection: Connection, reactor: Reactor): void;
  setup?(reactor: Reactor): void | Promise<void>;
}

interface Command {
  id: number;
  command: 'listen' | 'metrics' | 'close';
  host?: string;
  port?: number;
  backlog?: number;
}

const data = workerData as { module: string; config: Parameters<typeof createReactor>[0] };
const port = parentPort!;
const reactor = createReactor(data.config);
const ready = (async (): Promise<UserModule> => {
  const userModule = (await import(pathToFileURL(data.module).href)) as UserModule;
  await userModule.setup?.(reactor);
  return userModule;
})();

port.on('message', (message: Command) => {
  ready.then(
    (userModule) => {
      handle(message, userModule);
    },
    (err: unknown) => {
      port.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) });
    },
  );
});

function handle(message: Command, userModule: UserModule): void {
  const reply = (result: unknown): void => {
    port.postMessage({ id: message.id, result });
  };
  const fail = (err: unknown): void => {
    port.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) });
  };
  if (message.command === 'listen') {
    reactor
      .listen(
        {
          host: message.host ?? '0.0.0.0',
          port: message.port ?? 0,
          backlog: message.backlog ?? 511,
          reusePort: true,
        },
        (conn) => {
          userModule.onConnection(conn, reactor);
        },
      )
      .then((listener) => {
        reply({ port: listener.port, backend: reactor.backend });
      }, fail);
  } else if (message.command === 'metrics') {
    reply(reactor.metrics());
  } else {
    reactor.close().then(() => {
      reply(true);
    }, fail);
  }
}
