// The server's key and certificate: from TLS_KEY / TLS_CERT (PEM files) when set, otherwise a
// fresh self-signed pair for localhost made with `openssl req` (kept in a temporary directory
// for the life of the process), so the example starts with one command and commits no key.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * @returns {{ key: Buffer, cert: Buffer, certPath: string, selfSigned: boolean }}
 */
export function loadCertificate(env = process.env) {
  if (env.TLS_KEY !== undefined && env.TLS_CERT !== undefined) {
    return {
      key: readFileSync(env.TLS_KEY),
      cert: readFileSync(env.TLS_CERT),
      certPath: env.TLS_CERT,
      selfSigned: false,
    };
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'iomux-tls-echo-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  // prettier-ignore
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '30', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'pipe' });
  return {
    key: readFileSync(keyPath),
    cert: readFileSync(certPath),
    certPath,
    selfSigned: true,
  };
}
