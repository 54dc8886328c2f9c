'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
// On Linux the addon is the test-only build over the kqueue emulation (emulation/), and says so.
// native/load.cjs travels in the tarball; in the repository it is the shared one.
const { existsSync } = require('node:fs');
const { loadAddon } = require(
  existsSync(`${__dirname}/native`) ? './native/load.cjs' : '../../native/load.cjs',
);

module.exports = {
  kqueue: () => {
    const addon = loadAddon(__dirname, 'iomux_kqueue');
    if (process.platform === 'linux') addon.emulation = 'kqueue, emulated on Linux (test-only)';
    return addon;
  },
};
