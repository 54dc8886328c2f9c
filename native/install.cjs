'use strict';
// The install script of a published backend package (`"install": "node native/install.cjs"` in
// the packed package.json; the repository builds with scripts/build-native.mjs instead).
// Nothing to do when every addon of the package has a prebuilt binary for this platform (the
// usual case, and the only one under pnpm 10, which runs no dependency install scripts unless
// allowed: the loader finds prebuilds at run time without this script). Otherwise the addons are
// built from the shared native core in native/ with node-gyp; without a compiler, make or
// python3 this says which package, which platform tag and what to do, instead of a build log.
//   IOMUX_BUILD_FROM_SOURCE=1   build from source even where a prebuild matches
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { findAddon, missingMessage, platformTag } = require('./load.cjs');

const packageDir = process.cwd();

// gyp files are Python literals: '#' comments, quotes of either kind, trailing commas. Without
// the comments they are JS expressions.
function readGyp(file) {
  const text = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.replace(/^(\s*)#.*$/, '$1'))
    .join('\n');
  return Function(`"use strict"; return (${text});`)();
}

/** Loadable targets (not static libraries) of the package's binding.gyp. */
function addonTargets() {
  const gyp = readGyp(path.join(packageDir, 'binding.gyp'));
  return gyp.targets.filter((t) => t.type !== 'static_library').map((t) => t.target_name);
}

function onPath(command) {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const names = process.platform === 'win32' ? [`${command}.exe`, `${command}.cmd`] : [command];
  return dirs.some((dir) => names.some((name) => fs.existsSync(path.join(dir, name))));
}

function nodeGyp() {
  // npm and pnpm run install scripts with their own node-gyp named here.
  const fromManager = process.env.npm_config_node_gyp;
  if (fromManager && fs.existsSync(fromManager)) return [process.execPath, fromManager];
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js', { paths: [packageDir] })];
  } catch {
    return onPath('node-gyp') ? ['node-gyp'] : undefined;
  }
}

function fail(reason, missing) {
  console.error(`iomux: cannot build from source here: ${reason}.`);
  for (const target of missing) console.error(`  ${missingMessage(packageDir, target)}`);
  process.exit(1);
}

const targets = addonTargets();
const fromSource = process.env.IOMUX_BUILD_FROM_SOURCE === '1';
const missing = fromSource
  ? targets
  : targets.filter((t) => findAddon(packageDir, t) === undefined);
if (missing.length === 0) process.exit(0);

const needed = process.platform === 'win32' ? [] : ['make', 'python3'];
const compiler =
  process.platform === 'win32' || onPath('c++') || onPath('g++') || onPath('clang++');
const absent = [...(compiler ? [] : ['a C++ compiler (c++)']), ...needed.filter((c) => !onPath(c))];
if (absent.length > 0) fail(`${absent.join(', ')} not found on PATH`, missing);
const gyp = nodeGyp();
if (gyp === undefined) fail('node-gyp not found', missing);

console.log(`iomux: no prebuilt ${missing.join(', ')} for ${platformTag()}; building from source`);
const [command, ...args] = gyp;
const result = spawnSync(command, [...args, 'rebuild'], { cwd: packageDir, stdio: 'inherit' });
if (result.status !== 0) fail(`node-gyp rebuild exited with ${result.status}`, missing);
