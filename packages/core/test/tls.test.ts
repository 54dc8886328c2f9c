// node:tls over iomux connections, on every backend: a TLS server (`new tls.TLSSocket(toDuplex(conn),
// { isServer: true })`) checked against node's tls.connect and `openssl s_client`, and a TLS
// client (`tls.connect({ socket: toDuplex(conn) })`) against node's own TLS server; TLS 1.2 and
// 1.3, multi-MiB transfers compared byte for byte.
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toDuplex } from '../src/index.js';
import { backends, pattern, until } from './helpers.js';
import { reactorPerTest } from './reactor-per-test.js';
import { selfSignedCertificate, type TestCertificate } from './tls-cert.js';

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
type Version = (typeof VERSIONS)[number];

/** Writes `payload` once the handshake is done; resolves with the first `payload.length` bytes back. */
function echoThrough(socket: tls.TLSSocket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let received = 0;
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      received += chunk.length;
      if (received >= payload.length) resolve(Buffer.concat(parts));
    });
    socket.once('secureConnect', () => socket.write(payload));
  });
}

/** Runs `openssl s_client` with `payload` on stdin; resolves with the first `payload.length` bytes of its stdout. */
function sClient(port: number, version: Version, caFile: string, payload: Buffer): Promise<Buffer> {
  const flag = version === 'TLSv1.3' ? '-tls1_3' : '-tls1_2';
  const child = spawn(
    'openssl',
    [
      's_client',
      '-connect',
      `127.0.0.1:${port}`,
      flag,
      '-quiet', // implies -ign_eof: keeps reading after stdin ends
      '-nocommands', // binary input: no line is taken as a command
      '-CAfile',
      caFile,
      '-verify_return_error',
      '-servername',
      'localhost',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let received = 0;
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      received += chunk.length;
      if (received >= payload.length) child.kill();
    });
    child.on('error', reject);
    child.on('close', () => {
      if (received >= payload.length) resolve(Buffer.concat(parts));
      else reject(new Error(`s_client ended after ${received} bytes: ${stderr}`));
    });
    child.stdin.on('error', () => undefined); // the kill may close stdin before it drained
    child.stdin.end(payload);
  });
}

describe.each(backends)('TLS over iomux: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  let certificate: TestCertificate;
  const suite = reactorPerTest(backend);
  const { closers } = suite;

  beforeAll(() => {
    certificate = selfSignedCertificate();
  });
  afterAll(() => {
    certificate.remove();
  });

  /** A TLS echo server on iomux speaking only `version`; the protocols it saw go to `seen`. */
  async function iomuxTlsEcho(version: Version, seen: string[]): Promise<number> {
    const secureContext = tls.createSecureContext({
      key: certificate.key,
      cert: certificate.cert,
      minVersion: version,
      maxVersion: version,
    });
    const listener = await suite.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      const socket = new tls.TLSSocket(toDuplex(conn), { isServer: true, secureContext });
      socket.once('secure', () => seen.push(socket.getProtocol() ?? 'none'));
      pipeline(socket, socket, () => undefined);
    });
    return listener.port;
  }

  for (const version of VERSIONS) {
    run(`iomux TLS server ↔ node tls.connect, ${version}, 4 MiB byte-exact`, async () => {
      const seen: string[] = [];
      const port = await iomuxTlsEcho(version, seen);
      const client = tls.connect({
        host: '127.0.0.1',
        port,
        ca: certificate.cert,
        servername: 'localhost',
        minVersion: version,
        maxVersion: version,
      });
      closers.push(() => client.destroy());
      const payload = pattern(4 << 20, 21);
      const echoed = await echoThrough(client, payload);
      expect(echoed.equals(payload)).toBe(true);
      expect(client.getProtocol()).toBe(version);
      expect(seen).toEqual([version]);
      client.end();
      await until(() => suite.reactor.connectionCount() === 0, 5000, 'the server side to close');
    });

    run(`iomux TLS server ↔ openssl s_client, ${version}, 2 MiB byte-exact`, async () => {
      const seen: string[] = [];
      const port = await iomuxTlsEcho(version, seen);
      const payload = pattern(2 << 20, 22);
      const echoed = await sClient(port, version, certificate.certPath, payload);
      expect(echoed.subarray(0, payload.length).equals(payload)).toBe(true);
      expect(seen).toEqual([version]);
      await until(() => suite.reactor.connectionCount() === 0, 5000, 'the server side to close');
    });

    run(
      `tls.connect({ socket: toDuplex(conn) }) ↔ node TLS server, ${version}, 4 MiB byte-exact`,
      async () => {
        const server = tls.createServer(
          {
            key: certificate.key,
            cert: certificate.cert,
            minVersion: version,
            maxVersion: version,
          },
          (socket) => {
            pipeline(socket, socket, () => undefined);
          },
        );
        closers.push(() => server.close());
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        const conn = await suite.reactor.connect({
          host: '127.0.0.1',
          port: (server.address() as AddressInfo).port,
        });
        const client = tls.connect({
          socket: toDuplex(conn),
          ca: certificate.cert,
          servername: 'localhost',
          minVersion: version,
          maxVersion: version,
        });
        closers.push(() => client.destroy());
        const payload = pattern(4 << 20, 23);
        const echoed = await echoThrough(client, payload);
        expect(echoed.equals(payload)).toBe(true);
        expect(client.getProtocol()).toBe(version);
        expect(client.authorized).toBe(true);
        client.end();
        await until(() => conn.closed, 5000, 'the connection to close');
      },
    );
  }

  run(
    'a failed handshake (untrusted certificate) closes the connection with an error',
    async () => {
      const port = await iomuxTlsEcho('TLSv1.3', []);
      const client = tls.connect({ host: '127.0.0.1', port, servername: 'localhost' });
      closers.push(() => client.destroy());
      const error = await new Promise<NodeJS.ErrnoException>((resolve) =>
        client.once('error', resolve),
      );
      expect(error.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
      await until(() => suite.reactor.connectionCount() === 0, 5000, 'the server side to close');
    },
  );
});
