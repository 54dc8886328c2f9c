// The set-up the stream, TLS, HTTP and adoption suites share: before each test a reactor forced
// onto one backend; after it, the test's closers run, the reactor closes and the fd count is back
// where it was. Also the suite's first test, which names why a backend is skipped here.
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { BackendName, Reactor } from '../src/index.js';
import { backendTitle, fdCount, reactorOn, until } from './helpers.js';

/** What {@link reactorPerTest} gives a suite. */
export interface PerTestReactor {
  /** The running test's reactor. */
  readonly reactor: Reactor;
  /** Run after the test, before its reactor closes (destroy clients, close servers). */
  readonly closers: (() => void)[];
}

/** Registers the hooks for `backend` (inside its describe block) and returns the fixture. */
export function reactorPerTest(backend: {
  name: BackendName;
  available: boolean;
  cause: string;
}): PerTestReactor {
  let current: Reactor | undefined;
  let fdsBefore = 0;
  const closers: (() => void)[] = [];

  beforeEach(() => {
    if (!backend.available) return;
    fdsBefore = fdCount();
    current = reactorOn(backend.name);
  });

  afterEach(async () => {
    if (current === undefined) return;
    for (const close of closers.splice(0)) close();
    await current.close();
    current = undefined;
    await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
  });

  it(`runs here: ${backendTitle(backend)}`, () => {
    if (!backend.available) {
      expect(backend.cause).not.toBe('');
      return;
    }
    expect(current?.backend).toBe(backend.name);
  });

  return {
    get reactor(): Reactor {
      if (current === undefined) throw new Error('no reactor outside a test');
      return current;
    },
    closers,
  };
}
