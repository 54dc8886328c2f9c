'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
// native/load.cjs travels in the tarball; in the repository it is the shared one.
const { existsSync } = require('node:fs');
const { loadAddon } = require(
  existsSync(`${__dirname}/native`) ? './native/load.cjs' : '../../native/load.cjs',
);

module.exports = { epoll: () => loadAddon(__dirname, 'iomux_epoll') };
