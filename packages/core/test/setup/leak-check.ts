// Every test must end with nothing left open: no fd, no libuv handle or request, no timer or
// immediate. Before each test we record the open fds and `process.getActiveResourcesInfo()`; after
// it (and after the test file's own afterEach hooks, which run first) we wait up to
// LEAK_DEADLINE_MS for both to come back, then fail the test naming what is still open. Timers
// and immediates are counted by the test that created them (see live-timers.ts), not by
// getActiveResourcesInfo(), where vitest's own short timers would hide one.
//
// Anything a describe block creates in beforeAll (a shared worker pool, a reactor) exists before
// each test's snapshot and is therefore not a leak of that test; the same check over the whole
// file (beforeAll / afterAll here) makes sure the file's afterAll hooks close it. A test that
// legitimately leaves something for the next one says so with keepAfterThisTest(), which names
// the reason; there is no silent exemption.
import { readdirSync, readlinkSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { FD_DIR } from '../helpers.js';
import { liveTimers, trackTimersFromNow } from './live-timers.js';

/** How long a test's sockets, handles and timers get to close after it ends. */
const LEAK_DEADLINE_MS = 1000;

/** The target recorded for an fd gone before readlink: the listing's own directory fd. */
const LISTING_FD = 'closed while listing';

interface Snapshot {
  fds: number;
  /** fd number → what it is (`socket:[…]`, `pipe:[…]`, `anon_inode:[eventpoll]`, a path). */
  fdTargets: Map<string, string>;
  /** Handles and requests by type; timers and immediates: those the test created, still live. */
  resources: Map<string, number>;
}

/** Counted by live-timers.ts instead of from getActiveResourcesInfo(). */
const TIMER_TYPES = new Set(['Timeout', 'Immediate']);

/** What one test declared it keeps past its end, and why. */
export interface KeptResources {
  reason: string;
  fds?: number;
  /** Resource type name (as in `process.getActiveResourcesInfo()`) → count. */
  resources?: Record<string, number>;
}

// Node creates the stdio handles (a PipeWrap each under vitest's forks pool) on first use and
// keeps them for the life of the process: create them now, so that a test's first console.log
// does not count as a leak.
process.stdout.write('');
process.stderr.write('');

let before: Snapshot | undefined;
let kept: KeptResources | undefined;

/**
 * Declares that the running test leaves `fds` fds and `resources` open on purpose (e.g. a fixture
 * the next test of its describe block reuses). Only the declared amount is tolerated.
 */
export function keepAfterThisTest(declared: KeptResources): void {
  if (declared.reason.trim() === '') throw new Error('keepAfterThisTest needs a reason');
  kept = declared;
}

function snapshot(): Snapshot {
  const resources = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    if (!TIMER_TYPES.has(type)) resources.set(type, (resources.get(type) ?? 0) + 1);
  }
  for (const [type, count] of liveTimers()) resources.set(type, count);
  // readdirSync opens one fd for the directory itself, the same one in every snapshot.
  const fdTargets = new Map<string, string>();
  for (const fd of readdirSync(FD_DIR)) {
    try {
      fdTargets.set(fd, readlinkSync(`${FD_DIR}/${fd}`));
    } catch {
      fdTargets.set(fd, LISTING_FD); // the directory's own fd, or one closing now
    }
  }
  return { fds: fdTargets.size, resources, fdTargets };
}

/** What `after` holds beyond `start` plus the declared allowance, one line per kind. */
function leaks(start: Snapshot, after: Snapshot, allowance: KeptResources | undefined): string[] {
  const found: string[] = [];
  const fdLimit = start.fds + (allowance?.fds ?? 0);
  if (after.fds > fdLimit) {
    const added = [...after.fdTargets]
      .filter(([fd, target]) => target !== LISTING_FD && start.fdTargets.get(fd) !== target)
      .map(([fd, target]) => `${fd} → ${target}`);
    found.push(
      `${after.fds - fdLimit} fd(s) (open fds ${start.fds} before, ${after.fds} after;` +
        ` new: ${added.join(', ')})`,
    );
  }
  for (const [type, count] of after.resources) {
    const limit = (start.resources.get(type) ?? 0) + (allowance?.resources?.[type] ?? 0);
    if (count > limit) found.push(`${count - limit} ${type} (${limit} allowed, ${count} open)`);
  }
  return found;
}

/** The suites held to this rule: every package's tests and every example's tests. */
const CHECKED_FILES = /\/(?:packages|examples)\/[^/]+\/test\//;

/**
 * Waits up to LEAK_DEADLINE_MS for everything beyond `start` (and the allowance) to close;
 * throws naming what did not. `withTimers` false: handles and fds only (see the file check).
 */
async function expectNothingLeft(
  what: string,
  start: Snapshot,
  allowance: KeptResources | undefined,
  withTimers: boolean,
): Promise<void> {
  const deadline = Date.now() + LEAK_DEADLINE_MS;
  for (;;) {
    const now = snapshot();
    if (!withTimers) for (const type of TIMER_TYPES) now.resources.delete(type);
    const found = leaks(start, now, allowance);
    if (found.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(
        `${what} left open after ${LEAK_DEADLINE_MS} ms: ${found.join('; ')}` +
          (withTimers
            ? ' (close it in the test, or declare it with keepAfterThisTest())'
            : ' (close it in an afterAll hook)'),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

let fileStart: Snapshot | undefined;

// The whole file, too: what its beforeAll fixtures opened must be closed by its afterAll hooks
// (which run before this one). Timers are left to the per-test check: live-timers.ts tracks
// them per test, not per file.
beforeAll((suite) => {
  fileStart = CHECKED_FILES.test(suite.file.filepath) ? snapshot() : undefined;
});

/** True when a test or hook of `suite` failed (then it likely skipped its own cleanup). */
function anyFailed(suite: { result?: { state?: string }; tasks?: unknown[] }): boolean {
  if (suite.result?.state === 'fail') return true;
  return (suite.tasks ?? []).some((task) => anyFailed(task as typeof suite));
}

afterAll(async (suite) => {
  const start = fileStart;
  fileStart = undefined;
  // A failing test's leftovers are part of its failure, not a second report.
  if (start === undefined || anyFailed(suite)) return;
  await expectNothingLeft('the test file', start, undefined, false);
});

beforeEach((context) => {
  kept = undefined;
  trackTimersFromNow();
  before = CHECKED_FILES.test(context.task.file.filepath) ? snapshot() : undefined;
});

afterEach(async (context) => {
  const start = before;
  before = undefined;
  // A test that already failed usually skipped its own cleanup: its failure is the report.
  if (start === undefined || context.task.result?.state === 'fail') return;
  await expectNothingLeft('the test', start, kept, true);
});
