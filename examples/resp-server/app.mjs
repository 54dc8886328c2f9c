// A small Redis-protocol (RESP2) server on the iomux Reactor API. Each read is parsed
// incrementally, every command it completed runs at once, and the replies of the whole batch go
// out with one writev. Malformed input gets "-ERR Protocol error: ..." and the connection closes.
import { createReactor } from '@iomux/core';
import { execute, QUIT } from './commands.mjs';
import { ReplyWriter } from './reply.mjs';
import { RespParser } from './resp-parser.mjs';
import { Store } from './store.mjs';

/** @typedef {import('@iomux/core').Connection} Connection */
/** @typedef {import('@iomux/core').Reactor} Reactor */
/** @typedef {import('@iomux/core').Listener} Listener */

/**
 * @typedef {object} RespServerOptions
 * @property {string} [host] address to bind (default 127.0.0.1)
 * @property {number} [port] port (default 6380; 0 picks a free one)
 * @property {Reactor} [reactor] serve on this reactor instead of creating one
 * @property {Partial<import('./resp-parser.mjs').DEFAULT_LIMITS>} [limits] protocol limits
 * @property {number} [sweepIntervalMs] how often expired keys are swept (default 100)
 * @property {number} [lingerMs] after the last reply to a closing connection, how long to wait
 *   for the peer's FIN before closing anyway (default 2000)
 */

/**
 * Starts the server.
 * @param {RespServerOptions} [options]
 */
export async function startRespServer(options = {}) {
  const reactor = options.reactor ?? createReactor({ ioModel: 'auto' });
  const store = new Store();
  const out = new ReplyWriter();
  const limits = options.limits ?? {};
  const lingerMs = options.lingerMs ?? 2000;
  const started = Date.now();
  let commandsProcessed = 0;

  const info = () =>
    [
      '# Server',
      'server:iomux-resp-server',
      `iomux_backend:${reactor.backend}`,
      `uptime_in_seconds:${Math.floor((Date.now() - started) / 1000)}`,
      '',
      '# Clients',
      `connected_clients:${reactor.connectionCount()}`,
      '',
      '# Persistence',
      'loading:0',
      '',
      '# Stats',
      `total_commands_processed:${commandsProcessed}`,
      `total_error_replies:${out.errors}`,
      `expired_keys:${store.expiredKeys}`,
      '',
      '# Keyspace',
      store.size > 0 ? `db0:keys=${store.size},expires=${store.volatile}` : '',
      '',
    ].join('\r\n');

  const sweeper = setInterval(() => store.sweep(Date.now()), options.sweepIntervalMs ?? 100);
  sweeper.unref();

  /** @param {Connection} conn */
  const onConnection = (conn) => {
    const parser = new RespParser(limits);
    let closing = false;
    conn.on('data', (chunk) => {
      if (closing) return; // read and drop until the peer's FIN
      const count = parser.parse(chunk);
      const ctx = { store, out, now: Date.now(), info };
      for (let k = 0; k < count; k += 1) {
        commandsProcessed += 1;
        if (execute(parser.command(k), ctx) === QUIT) {
          closing = true;
          break;
        }
      }
      parser.release(); // the commands' arguments were views of `chunk`: let it go
      if (!closing && parser.error !== undefined) {
        out.error(`ERR ${parser.error.message}`);
        closing = true;
      }
      const replies = out.take();
      const ok = replies.length === 0 || conn.writev(replies);
      out.reset();
      if (closing) {
        // Half-close after the replies; iomux closes the socket when the peer's FIN arrives.
        conn.end();
        setTimeout(() => {
          conn.destroy();
        }, lingerMs).unref();
      } else if (!ok) {
        // The client is not reading its replies: stop reading its commands until it does.
        conn.pause();
        conn.once('drain', () => {
          conn.resume();
        });
      }
    });
  };

  const listener = await reactor.listen(
    { host: options.host ?? '127.0.0.1', port: options.port ?? 6380, backlog: 4096 },
    onConnection,
  );
  return {
    reactor,
    listener,
    store,
    port: listener.port,
    async close() {
      clearInterval(sweeper);
      listener.close();
      if (options.reactor === undefined) await reactor.close();
    },
  };
}
