// A TLS echo server on iomux: each accepted connection becomes a stream.Duplex (toDuplex), node:tls
// runs the handshake and the record layer over it, and pipeline() echoes with backpressure.
import { pipeline } from 'node:stream';
import tls from 'node:tls';
import { createReactor, toDuplex } from '@iomux/core';

/**
 * Starts the server. `minVersion` / `maxVersion` pin the TLS versions (default: 1.2 to 1.3).
 * @param {{ key: Buffer, cert: Buffer, host?: string, port?: number,
 *   minVersion?: import('node:tls').SecureVersion, maxVersion?: import('node:tls').SecureVersion }} options
 */
export async function startTlsEcho(options) {
  const secureContext = tls.createSecureContext({
    key: options.key,
    cert: options.cert,
    minVersion: options.minVersion ?? 'TLSv1.2',
    maxVersion: options.maxVersion ?? 'TLSv1.3',
  });
  const reactor = createReactor({ ioModel: 'auto' });
  const listener = await reactor.listen(
    { host: options.host ?? '127.0.0.1', port: options.port ?? 8443, backlog: 4096 },
    (conn) => {
      const socket = new tls.TLSSocket(toDuplex(conn), { isServer: true, secureContext });
      // A failed handshake or a reset ends that connection only.
      pipeline(socket, socket, () => undefined);
    },
  );
  return {
    reactor,
    port: listener.port,
    close: () => reactor.close(),
  };
}
