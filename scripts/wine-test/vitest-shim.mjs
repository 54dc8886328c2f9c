// The part of vitest's API the cross-platform suites use (describe / it / hooks / expect), as a
// plain sequential runner for a Windows node.exe under Wine. vitest itself cannot start there: it
// needs the win32 builds of rollup and esbuild, which the Linux install does not have. Test files
// are bundled on Linux with `vitest` aliased to this module (scripts/wine-test/bundle.mjs), and
// `expect` is vitest's own (@vitest/expect over chai), so assertions behave exactly as in vitest.
//
// Semantics kept from vitest: hooks run per file and per describe block, after-hooks in reverse
// order (vitest.config.ts sets sequence.hooks 'stack'), a failing beforeEach fails the test, a test
// has testTimeout (60 s) and a hook hookTimeout (30 s), skip / skipIf / each name what they skip.
import * as chai from 'chai';
import { wineSkips } from './wine-skips.mjs';
import {
  JestAsymmetricMatchers,
  JestChaiExpect,
  JestExtend,
  ObjectContaining,
  ArrayContaining,
  StringContaining,
  StringMatching,
  Anything,
  Any,
} from '@vitest/expect';

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(JestAsymmetricMatchers);

const TEST_TIMEOUT_MS = 60_000;
const HOOK_TIMEOUT_MS = 30_000;

/** vitest's expect: chai with the jest matchers. */
export const expect = (value, message) => chai.expect(value, message);
expect.objectContaining = (sample) => new ObjectContaining(sample);
expect.arrayContaining = (sample) => new ArrayContaining(sample);
expect.stringContaining = (sample) => new StringContaining(sample);
expect.stringMatching = (sample) => new StringMatching(sample);
expect.anything = () => new Anything();
expect.any = (type) => new Any(type);

function newSuite(name, parent) {
  return {
    name,
    parent,
    children: [],
    beforeAll: [],
    afterAll: [],
    beforeEach: [],
    afterEach: [],
    skipped: false,
  };
}

const root = newSuite('', undefined);
let current = root;

function format(title, args) {
  let i = 0;
  return title.replace(/%[sdiojf%]/g, (token) => {
    if (token === '%%') return '%';
    const value = args[i++];
    return typeof value === 'string' ? value : JSON.stringify(value);
  });
}

function titleFor(title, row) {
  if (row !== null && typeof row === 'object' && !Array.isArray(row)) {
    return title.replace(/\$([\w.]+)/g, (_, path) =>
      String(path.split('.').reduce((v, key) => v?.[key], row)),
    );
  }
  return format(title, Array.isArray(row) ? row : [row]);
}

function addSuite(name, body, skipped) {
  const suite = newSuite(name, current);
  suite.skipped = skipped || current.skipped;
  current.children.push({ kind: 'suite', suite });
  const outer = current;
  current = suite;
  try {
    body();
  } finally {
    current = outer;
  }
}

export function describe(name, body) {
  addSuite(name, body, false);
}
describe.skip = (name, body) => addSuite(name, body, true);
describe.skipIf = (condition) => (name, body) => addSuite(name, body, Boolean(condition));
describe.each = (rows) => (title, body) => {
  for (const row of rows) {
    addSuite(titleFor(title, row), () => (Array.isArray(row) ? body(...row) : body(row)), false);
  }
};

function addTest(name, fn, skipped, timeout) {
  current.children.push({ kind: 'test', name, fn, skipped: skipped || current.skipped, timeout });
}

// it, it.skip, it.skipIf(c), it.runIf(c): each a test function with its own `.each`.
function testFunction(skipped) {
  const fn = (name, body, timeout) => addTest(name, body, skipped, timeout);
  fn.each = (rows) => (title, body, timeout) => {
    for (const row of rows) {
      addTest(
        titleFor(title, row),
        () => (Array.isArray(row) ? body(...row) : body(row)),
        skipped,
        timeout,
      );
    }
  };
  return fn;
}

export const it = testFunction(false);
it.skip = testFunction(true);
it.skipIf = (condition) => testFunction(Boolean(condition));
it.runIf = (condition) => testFunction(!condition);
export const test = it;

export const beforeAll = (fn) => current.beforeAll.push(fn);
export const afterAll = (fn) => current.afterAll.push(fn);
export const beforeEach = (fn) => current.beforeEach.push(fn);
export const afterEach = (fn) => current.afterEach.push(fn);

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out in ${ms} ms`)), ms);
    // Unref'd: the leak check counts refed timers, and this one is the runner's, not the test's.
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function chain(suite) {
  const list = [];
  for (let s = suite; s !== undefined; s = s.parent) list.unshift(s);
  return list;
}

function fullName(suite, name) {
  return [...chain(suite).map((s) => s.name), name].filter((part) => part !== '').join(' > ');
}

/** The task objects vitest hands hooks, as far as the shared leak check reads them. */
function taskFor(file, state) {
  return { file: { filepath: file }, result: state === undefined ? undefined : { state } };
}

async function runHooks(hooks, arg, what) {
  for (const hook of hooks)
    await withTimeout(
      Promise.resolve().then(() => hook(arg)),
      HOOK_TIMEOUT_MS,
      what,
    );
}

async function runTest(file, suite, test, results) {
  const name = fullName(suite, test.name);
  if (test.skipped) {
    results.skipped.push(name);
    return;
  }
  const wineSkip = process.platform === 'win32' && wineSkips.find((s) => name.endsWith(s.test));
  if (wineSkip) {
    results.skipped.push(`${name} (skipped under Wine: ${wineSkip.reason})`);
    return;
  }
  const suites = chain(suite);
  const context = { task: taskFor(file, undefined) };
  let error;
  let entered = 0;
  try {
    for (const s of suites) {
      entered++;
      await runHooks(s.beforeEach, context, 'beforeEach');
    }
    await withTimeout(
      Promise.resolve().then(() => test.fn(context)),
      test.timeout ?? TEST_TIMEOUT_MS,
      'test',
    );
  } catch (e) {
    error = e;
  }
  context.task.result = { state: error === undefined ? 'pass' : 'fail' };
  // After-hooks in reverse registration order, innermost suite first ('stack').
  for (const s of suites.slice(0, entered).reverse()) {
    for (const hook of [...s.afterEach].reverse()) {
      try {
        await withTimeout(
          Promise.resolve().then(() => hook(context)),
          HOOK_TIMEOUT_MS,
          'afterEach',
        );
      } catch (e) {
        error ??= e;
      }
    }
  }
  if (error === undefined) {
    results.passed.push(name);
    console.log(`  ✓ ${name}`);
  } else {
    results.failed.push(name);
    console.log(
      `  ✗ ${name}\n    ${String(error?.stack ?? error)
        .split('\n')
        .join('\n    ')}`,
    );
  }
}

function countTests(suite) {
  let n = 0;
  for (const child of suite.children) n += child.kind === 'test' ? 1 : countTests(child.suite);
  return n;
}

function markFailed(suite, results, error) {
  for (const child of suite.children) {
    if (child.kind === 'test') {
      results.failed.push(fullName(suite, child.name));
    } else {
      markFailed(child.suite, results, error);
    }
  }
  console.log(`  ✗ ${fullName(suite, '(suite hooks)')}: ${String(error?.stack ?? error)}`);
}

async function runSuite(file, suite, results) {
  const suiteTask = { file: { filepath: file }, result: undefined, tasks: [] };
  const failedBefore = results.failed.length;
  const active = !suite.skipped && countTests(suite) > 0;
  try {
    if (active) await runHooks(suite.beforeAll, suiteTask, 'beforeAll');
  } catch (e) {
    markFailed(suite, results, e);
    return;
  }
  for (const child of suite.children) {
    if (child.kind === 'test') await runTest(file, suite, child, results);
    else await runSuite(file, child.suite, results);
  }
  if (!active) return;
  if (results.failed.length > failedBefore) suiteTask.result = { state: 'fail' };
  try {
    for (const hook of [...suite.afterAll].reverse()) {
      await withTimeout(
        Promise.resolve().then(() => hook(suiteTask)),
        HOOK_TIMEOUT_MS,
        'afterAll',
      );
    }
  } catch (e) {
    results.failed.push(fullName(suite, '(afterAll)'));
    console.log(`  ✗ ${fullName(suite, '(afterAll)')}: ${String(e?.stack ?? e)}`);
  }
}

/** Runs everything registered so far; `file` is the test file's path (the leak check reads it). */
export async function runRegistered(file) {
  const results = { passed: [], failed: [], skipped: [] };
  // Keeps the process alive while a test awaits something that holds no handle; created before
  // the first test, so no test's leak count includes it.
  const keepAlive = setInterval(() => {}, 1 << 30);
  try {
    await runSuite(file, root, results);
  } finally {
    clearInterval(keepAlive);
  }
  return results;
}
