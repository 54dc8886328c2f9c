'use strict';
// The win32-x64 addon itself (prebuilds/win32-x64/iomux_iocp.node, or a node-gyp build on Windows).
// native/load.cjs travels in the tarball; in the repository it is the shared one.
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

module.exports = loadAddon(__dirname, 'iomux_iocp');
