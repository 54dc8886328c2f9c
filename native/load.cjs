'use strict';
// How a backend package finds its N-API addon (one loader for every package: it travels in each
// tarball as native/load.cjs, next to the shared native core; in the repository each package's
// index.cjs reaches it at ../../native/load.cjs).
//
// An addon is looked up by its target name, so one package can hold several (fallback-select
// has two; node-gyp-build finds one per directory):
//   1. build/Release/<target>.node, a from-source build (node-gyp, or the repository's build);
//   2. prebuilds/<platform>-<arch>/<target>.<tags>.node, prebuildify's layout: tags `napi`
//      (one binary for every Node major with that Node-API version) and `glibc` / `musl` on
//      Linux; the most specific match wins.
// When neither exists, the error names the package, the platform tag looked for, the prebuilt
// targets that do exist and how to build from source.
const fs = require('node:fs');
const path = require('node:path');

/** `glibc` or `musl` on Linux (LIBC overrides, as for node-gyp-build); undefined elsewhere. */
function detectLibc() {
  if (process.platform !== 'linux') return undefined;
  if (process.env.LIBC === 'glibc' || process.env.LIBC === 'musl') return process.env.LIBC;
  const header = process.report?.getReport().header;
  return header?.glibcVersionRuntime === undefined ? 'musl' : 'glibc';
}

let libcCache;
/** The prebuild tag of this process: `linux-x64-glibc`, `linux-arm64-musl`, `darwin-arm64`, ... */
function platformTag() {
  if (libcCache === undefined) libcCache = detectLibc() ?? '';
  return [process.platform, process.arch, libcCache].filter(Boolean).join('-');
}

function listDir(dir) {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Tags of a prebuild file name `<target>.<tag>....node`, or undefined for another target. */
function parseTags(file, target) {
  if (!file.startsWith(`${target}.`) || !file.endsWith('.node')) return undefined;
  const tags = file
    .slice(target.length + 1, -'.node'.length)
    .split('.')
    .filter(Boolean);
  return {
    file,
    napi: tags.includes('napi'),
    libc: tags.find((t) => t === 'glibc' || t === 'musl'),
  };
}

/** The prebuilt binary of `target` for this process, or undefined. */
function findPrebuild(packageDir, target) {
  const dir = path.join(packageDir, 'prebuilds', `${process.platform}-${process.arch}`);
  platformTag();
  const candidates = listDir(dir)
    .map((file) => parseTags(file, target))
    .filter((tags) => tags !== undefined && (tags.libc === undefined || tags.libc === libcCache))
    // A libc-tagged file before an untagged one (the more specific match).
    .sort((a, b) => Number(b.libc !== undefined) - Number(a.libc !== undefined));
  return candidates.length === 0 ? undefined : path.join(dir, candidates[0].file);
}

/** Where `target` would load from: the from-source build first, then the prebuild. */
function findAddon(packageDir, target) {
  const built = path.join(packageDir, 'build', 'Release', `${target}.node`);
  if (fs.existsSync(built)) return built;
  return findPrebuild(packageDir, target);
}

/** The prebuild tags this package ships for `target` (for the error message). */
function shippedTags(packageDir, target) {
  const tags = [];
  for (const tuple of listDir(path.join(packageDir, 'prebuilds'))) {
    for (const file of listDir(path.join(packageDir, 'prebuilds', tuple))) {
      const parsed = parseTags(file, target);
      if (parsed !== undefined) tags.push([tuple, parsed.libc].filter(Boolean).join('-'));
    }
  }
  return tags.sort();
}

function packageName(packageDir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).name;
  } catch {
    return packageDir;
  }
}

/** The message when `target` has no binary here; one line, for unavailabilityCause(). */
function missingMessage(packageDir, target) {
  const name = packageName(packageDir);
  const shipped = shippedTags(packageDir, target);
  return (
    `${name}: no ${target}.node for ${platformTag()} (no prebuilt binary in ` +
    `prebuilds/${process.platform}-${process.arch}/, no from-source build in build/Release/; ` +
    `prebuilt targets: ${shipped.length === 0 ? 'none' : shipped.join(', ')}). ` +
    `To build it from source, install a C++17 compiler, make and python3, then run ` +
    `\`npm rebuild ${name}\` (pnpm: \`pnpm rebuild ${name}\`)`
  );
}

/** Loads addon `target` of the package in `packageDir`; throws (code IOMUX_NO_BINARY) when absent. */
function loadAddon(packageDir, target) {
  const file = findAddon(packageDir, target);
  if (file === undefined) {
    const err = new Error(missingMessage(packageDir, target));
    err.code = 'IOMUX_NO_BINARY';
    throw err;
  }
  try {
    return require(file);
  } catch (err) {
    // A build/Release made for another platform (a checkout shared with Wine or a container)
    // does not load here; this platform's prebuild, when there is one, still does.
    const prebuilt = findPrebuild(packageDir, target);
    if (prebuilt === undefined || prebuilt === file) throw err;
    return require(prebuilt);
  }
}

module.exports = { loadAddon, findAddon, findPrebuild, missingMessage, platformTag };
