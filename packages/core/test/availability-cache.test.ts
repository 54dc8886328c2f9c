// The availability cache must not turn a momentary shortage into a permanent "unavailable"
// (issue 18, defect 12): a backend asked for while every fd is in use fails, and must be
// available again once fds are free. Runs in a child (packages/core/dist) under a low
// `ulimit -n`, so filling the fd table is quick and touches nothing of this process.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backends, backendTitle } from './helpers.js';

const child = fileURLToPath(new URL('./fixtures/availability-cache-child.mjs', import.meta.url));

interface Answer {
  available: boolean;
  cause: string | null;
}

describe.each(backends)('availability cache: $name', (backend) => {
  it(`a probe that failed for lack of fds is asked again: ${backendTitle(backend)}`, (ctx) => {
    if (!backend.available) ctx.skip();
    const out = execFileSync(
      'bash',
      ['-c', `ulimit -n 64 && exec "${process.execPath}" "${child}" ${backend.name}`],
      { encoding: 'utf8', timeout: 20_000 },
    );
    const { starved, after } = JSON.parse(out) as { starved: Answer; after: Answer };
    // The first answer really came from a starved process (else the test proves nothing).
    expect(starved.available).toBe(false);
    expect(starved.cause?.toLowerCase()).toContain('too many open files');
    expect(after).toEqual({ available: true, cause: null });
  });
});
