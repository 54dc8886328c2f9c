'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
// This package holds two addons from one binding.gyp; native/load.cjs finds each by target name
// (a from-source build in build/Release, else its prebuild). native/load.cjs travels in the
// tarball; in the repository it is the shared one.
const { existsSync } = require('node:fs');
const { dirname, join } = require('node:path');

// ./native/load.cjs in a tarball; in the repository the shared one, found by walking up, since a
// symlinked node_modules path is not always resolved to the real one (node.exe under Wine).
function loaderPath(dir) {
  const file = join(dir, 'native', 'load.cjs');
  if (existsSync(file) || dirname(dir) === dir) return file;
  return loaderPath(dirname(dir));
}
const { loadAddon } = require(loaderPath(__dirname));

module.exports = {
  select: () => loadAddon(__dirname, 'iomux_select'),
  blocking_io: () => loadAddon(__dirname, 'iomux_blocking_io'),
};
