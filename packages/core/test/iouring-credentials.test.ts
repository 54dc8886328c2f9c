// io_uring and credentials (CVE-2024-22017): a ring keeps the credentials of the task that created
// it, so a process that drops privileges after creating an io_uring reactor must not go on
// submitting through that ring. The engine compares the process's ids before every poll; a change
// breaks it with EPERM: the reactor migrates to the next backend of its chain, or, with none,
// fails with IOMUX_BACKEND_FAILED. Each case runs in a child process (it setuid()s to nobody),
// which needs root to change ids.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, type TestContext } from 'vitest';
import { backends, backendTitle } from './helpers.js';

const iouring = backends.find((b) => b.name === 'io_uring')!;
const epoll = backends.find((b) => b.name === 'epoll')!;
const child = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'fixtures/credentials-child.mjs',
);
const NOBODY = 65534;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

interface Report {
  before: string;
  after: string;
  causes: string[];
  echoes: string[];
  error: { code: string; errno: number; message: string } | null;
  listenAfter: string | null;
}

function run(chain: string[]): Report {
  const result = spawnSync(
    process.execPath,
    [child, chain.join(','), String(NOBODY), String(NOBODY)],
    {
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  const line = result.stdout.trim().split('\n').pop() ?? '';
  if (line === '') throw new Error(`child exited ${result.status}: ${result.stderr}`);
  return JSON.parse(line) as Report;
}

function skipUnlessRunnable(ctx: TestContext): void {
  if (!iouring.available) ctx.skip(`io_uring unavailable: ${iouring.cause}`);
  if (!isRoot) ctx.skip('changing the uid needs root; this runner is not root');
}

describe(`io_uring credentials: ${backendTitle(iouring)}`, () => {
  it('a uid/gid change after the ring was created moves every socket to the next backend', (ctx) => {
    skipUnlessRunnable(ctx);
    if (!epoll.available) ctx.skip(`epoll unavailable: ${epoll.cause}`);
    const report = run(['io_uring', 'epoll']);
    expect(report.before).toBe('io_uring');
    // The listener created before the change serves on, on epoll, with nothing lost.
    expect(report.echoes).toEqual(['before', 'after']);
    expect(report.after).toBe('epoll');
    expect(report.causes).toHaveLength(1);
    expect(report.causes[0]).toMatch(/EPERM.*uid\/gid changed.*CVE-2024-22017/);
    expect(report.error).toBeNull();
    expect(report.listenAfter).toBe('ok on epoll');
  });

  it('without a fallback the reactor refuses with IOMUX_BACKEND_FAILED (EPERM)', (ctx) => {
    skipUnlessRunnable(ctx);
    const report = run(['io_uring']);
    expect(report.before).toBe('io_uring');
    expect(report.echoes[0]).toBe('before');
    // The listener was closed with the failure: the round trip after the change gets nothing.
    expect(report.echoes[1]).not.toBe('after');
    expect(report.error?.code).toBe('IOMUX_BACKEND_FAILED');
    expect(report.error?.errno).toBe(1); // EPERM
    expect(report.error?.message).toMatch(/io_uring failed .*uid\/gid changed/);
    expect(report.listenAfter).toBe('IOMUX_BACKEND_FAILED');
  });
});
