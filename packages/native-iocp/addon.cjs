'use strict';
// The win32-x64 addon itself (prebuilds/win32-x64/iomux_iocp.node, or a node-gyp build on Windows).
// native/load.cjs travels in the tarball; in the repository it is the shared one.
const { existsSync } = require('node:fs');
const { loadAddon } = require(
  existsSync(`${__dirname}/native`) ? './native/load.cjs' : '../../native/load.cjs',
);

module.exports = loadAddon(__dirname, 'iomux_iocp');
