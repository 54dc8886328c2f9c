'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
module.exports = { io_uring: () => require('node-gyp-build')(__dirname) };
