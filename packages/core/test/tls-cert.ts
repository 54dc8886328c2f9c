// A self-signed certificate for the TLS tests, made at test time with `openssl req` (Debian
// `openssl`), so no key is committed. EC P-256 keeps generation fast on a loaded machine.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A key and certificate for `localhost` / 127.0.0.1, and the files they are in. */
export interface TestCertificate {
  key: Buffer;
  cert: Buffer;
  keyPath: string;
  certPath: string;
  /** Deletes the files. */
  remove(): void;
}

/** Generates a fresh self-signed certificate valid for localhost and 127.0.0.1. */
export function selfSignedCertificate(): TestCertificate {
  const dir = mkdtempSync(path.join(tmpdir(), 'iomux-tls-'));
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'pipe' },
  );
  return {
    key: readFileSync(keyPath),
    cert: readFileSync(certPath),
    keyPath,
    certPath,
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
