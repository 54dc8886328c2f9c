// One command end to end: starts the TLS echo server, sends DEMO_SIZE bytes (default 4 MiB)
// through node's tls.connect with each of TLS 1.2 and 1.3, checks every byte came back, exits.
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { loadCertificate } from './certificate.mjs';
import { startTlsEcho } from './tls-echo.mjs';

const size = Number(process.env.DEMO_SIZE ?? 4 << 20);
const certificate = loadCertificate();
const server = await startTlsEcho({ key: certificate.key, cert: certificate.cert, port: 0 });
console.log(`tls-echo on 127.0.0.1:${server.port} (backend: ${server.reactor.backend})`);

/** @param {import('node:tls').SecureVersion} version */
function roundTrip(version) {
  const payload = randomBytes(size);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: server.port,
      ca: certificate.cert,
      servername: 'localhost',
      minVersion: version,
      maxVersion: version,
    });
    const parts = [];
    let received = 0;
    socket.on('error', reject);
    socket.once('secureConnect', () => socket.write(payload));
    socket.on('data', (chunk) => {
      parts.push(chunk);
      received += chunk.length;
      if (received < size) return;
      const ok = Buffer.concat(parts).equals(payload);
      const ms = performance.now() - started;
      socket.end();
      resolve({ version: socket.getProtocol(), ok, ms });
    });
  });
}

let failed = false;
for (const version of /** @type {const} */ (['TLSv1.2', 'TLSv1.3'])) {
  const result = await roundTrip(version);
  failed ||= !result.ok || result.version !== version;
  console.log(
    `${result.version}: ${size} bytes echoed ${result.ok ? 'byte-exact' : 'CORRUPTED'} ` +
      `in ${result.ms.toFixed(0)} ms`,
  );
}
await server.close();
process.exitCode = failed ? 1 : 0;
