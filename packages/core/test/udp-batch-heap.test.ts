// UdpSocket.sendBatch() makes no garbage per call, on every backend that runs here: measured in a
// child process whose new space is large enough that no scavenge falls between the readings.
// (A file of its own: the Wine runs of check:iocp bundle udp.test.ts, and the child cannot go
// with it.)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backends, backendTitle } from './helpers.js';

describe.each(backends)('udp sendBatch(): JS heap per call: $name', (backend) => {
  // A game server sends a batch per tick: the call must not make garbage per datagram (fresh
  // lists for the native call and their slices were 114–125 KB per 1000 datagrams).
  const child = fileURLToPath(new URL('./fixtures/udp-batch-heap-child.mjs', import.meta.url));
  const run = backend.available ? it : it.skip;
  run(`${backendTitle(backend)}: 1000 datagrams allocate under 4 KiB of JS heap per call`, () => {
    const result = spawnSync(process.execPath, ['--min-semi-space-size=64', child, backend.name], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as {
      backend: string;
      bytesPerCall: number;
      received: number;
    };
    expect(report.backend).toBe(backend.name);
    expect(report.received).toBeGreaterThan(0);
    expect(report.bytesPerCall).toBeLessThan(4096);
  });
});
