// TLS echo server. PORT (default 8443), HOST (default 127.0.0.1), IOMUX_BACKEND (default: best),
// TLS_KEY / TLS_CERT: PEM files (default: a self-signed pair for localhost made at start).
import { loadCertificate } from './certificate.mjs';
import { startTlsEcho } from './tls-echo.mjs';

const certificate = loadCertificate();
const server = await startTlsEcho({
  key: certificate.key,
  cert: certificate.cert,
  host: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT ?? 8443),
});
for (const record of server.reactor.fallbackHistory)
  console.log(`backend ${record.backend} unavailable: ${record.cause}`);
console.log(
  `tls-echo listening on ${process.env.HOST ?? '127.0.0.1'}:${server.port} ` +
    `(backend: ${server.reactor.backend})`,
);
if (certificate.selfSigned) {
  console.log(`self-signed certificate: ${certificate.certPath}`);
  console.log(
    `try: openssl s_client -connect 127.0.0.1:${server.port} -CAfile ${certificate.certPath} -quiet`,
  );
}

const shutdown = () => {
  void server.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
