// Bundles test files for the Windows node.exe under Wine (see vitest-shim.mjs for why not vitest):
//   node scripts/wine-test/bundle.mjs <out-dir> <test file ...>
// Each test file becomes <out-dir>/<name>.mjs: the shared leak check first (as vitest.config.ts's
// setupFiles), then the test file, then the run, whose counts go to <out-dir>/<name>.json in
// vitest's JSON report fields. The out-dir must lie inside packages/core so that the backend
// loader's require('@iomux/native-*') resolves through packages/core/node_modules; every other
// dependency is bundled, since Windows node.exe under Wine does not resolve pnpm's symlinks.
import { build } from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const [outDir, ...files] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });

for (const file of files) {
  const name = basename(file).replace(/\.test\.ts$/, '');
  const testPath = resolve(file);
  // The path vitest would report: the leak check applies to packages/*/test/ files only.
  const reported = `/${relative(root, testPath).split('\\').join('/')}`;
  const entry = join(outDir, `${name}.entry.mjs`);
  writeFileSync(
    entry,
    [
      `import ${JSON.stringify(join(here, 'win32-fds.mjs'))};`,
      `import ${JSON.stringify(resolve(root, 'packages/core/test/setup/leak-check.ts'))};`,
      `import ${JSON.stringify(testPath)};`,
      `import { runRegistered } from ${JSON.stringify(join(here, 'vitest-shim.mjs'))};`,
      `import { writeFileSync } from 'node:fs';`,
      `const r = await runRegistered(${JSON.stringify(reported)});`,
      `console.log(\`${name}: \${r.passed.length} passed, \${r.failed.length} failed, \${r.skipped.length} skipped\`);`,
      `for (const s of r.skipped) console.log(\`  skipped: \${s}\`);`,
      `writeFileSync(new URL('./${name}.json', import.meta.url), JSON.stringify({`,
      `  numPassedTests: r.passed.length, numFailedTests: r.failed.length,`,
      `  numPendingTests: r.skipped.length, numTodoTests: 0, passed: r.passed, failed: r.failed, skipped: r.skipped,`,
      `}));`,
      `process.exit(0);`,
    ].join('\n'),
  );
  await build({
    entryPoints: [entry],
    outfile: join(outDir, `${name}.mjs`),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    alias: { vitest: join(here, 'vitest-shim.mjs') },
    // CommonJS dependencies inside an ESM bundle call require() for Node's builtins.
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'warning',
  });
}
