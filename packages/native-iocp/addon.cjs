'use strict';
// The win32-x64 addon itself (prebuilds/win32-x64/iomux_iocp.node, or a node-gyp build on Windows).
module.exports = require('node-gyp-build')(__dirname);
