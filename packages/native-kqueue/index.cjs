'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
// On Linux the addon is the test-only build over the kqueue emulation (emulation/), and says so.
module.exports = {
  kqueue: () => {
    const addon = require('node-gyp-build')(__dirname);
    if (process.platform === 'linux') addon.emulation = 'kqueue, emulated on Linux (test-only)';
    return addon;
  },
};
