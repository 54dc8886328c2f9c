'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
// This package builds two addons from one binding.gyp, and node-gyp-build finds only one addon
// per directory, so each is loaded by name: from build/Release (node-gyp), else from
// prebuilds/<platform>-<arch> (the win32-x64 cross-build of scripts/build-win32.mjs).
const { existsSync } = require('node:fs');
const path = require('node:path');

function load(target) {
  const built = path.join(__dirname, 'build', 'Release', `${target}.node`);
  const prebuilt = path.join(
    __dirname,
    'prebuilds',
    `${process.platform}-${process.arch}`,
    `${target}.node`,
  );
  // The prebuild for this platform first: a shared checkout may hold a build/Release of another.
  const file = existsSync(prebuilt) || !existsSync(built) ? prebuilt : built;
  try {
    return require(file);
  } catch (err) {
    if (err && err.code === 'MODULE_NOT_FOUND') {
      throw new Error(
        `${target}.node is not built (expected ${built} or ${prebuilt}); run \`npm run build\` in ${__dirname}`,
        { cause: err },
      );
    }
    throw err;
  }
}

module.exports = {
  select: () => load('iomux_select'),
  blocking_io: () => load('iomux_blocking_io'),
};
