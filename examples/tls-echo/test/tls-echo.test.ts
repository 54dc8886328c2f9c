import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const dir = fileURLToPath(new URL('..', import.meta.url));

describe('tls-echo', () => {
  it('the demo (one command) echoes byte-exact over TLS 1.2 and 1.3 and exits 0', async () => {
    const { stdout } = await run(process.execPath, ['demo.mjs'], {
      cwd: dir,
      env: { ...process.env, DEMO_SIZE: String(1 << 20) },
      timeout: 60_000,
    });
    expect(stdout).toMatch(/TLSv1\.2: 1048576 bytes echoed byte-exact/);
    expect(stdout).toMatch(/TLSv1\.3: 1048576 bytes echoed byte-exact/);
  });
});
