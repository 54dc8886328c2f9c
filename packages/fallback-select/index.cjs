'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
// This package holds two addons from one binding.gyp; native/load.cjs finds each by target name
// (a from-source build in build/Release, else its prebuild). native/load.cjs travels in the
// tarball; in the repository it is the shared one.
const { existsSync } = require('node:fs');
const { loadAddon } = require(
  existsSync(`${__dirname}/native`) ? './native/load.cjs' : '../../native/load.cjs',
);

module.exports = {
  select: () => loadAddon(__dirname, 'iomux_select'),
  blocking_io: () => loadAddon(__dirname, 'iomux_blocking_io'),
};
