'use strict';
// Backend loader by name; @iomux/core calls it and turns a throw into unavailabilityCause().
// The addon is built for Windows only (cross-built with mingw-w64: scripts/build-win32.mjs).
module.exports = {
  iocp: () => {
    if (process.platform !== 'win32') {
      throw new Error(`I/O completion ports exist on Windows only (this is ${process.platform})`);
    }
    return require('./addon.cjs');
  },
};
