// Runs clang-format (from the clang-format-node package) over the repo's C/C++ sources.
//   --check  fail when a file is not formatted     --fix  rewrite files in place
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const fix = process.argv.includes('--fix');
const files = spawnSync(
  'git',
  ['ls-files', '--cached', '--others', '--exclude-standard', '*.c', '*.cc', '*.h'],
  {
    encoding: 'utf8',
  },
)
  .stdout.split('\n')
  .filter(Boolean);
const require = createRequire(import.meta.url);
const bin = require.resolve('clang-format-node/build/cli.js');
const args = fix ? ['-i', ...files] : ['--dry-run', '--Werror', ...files];
if (files.length === 0) process.exit(0);
const result = spawnSync(process.execPath, [bin, ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
