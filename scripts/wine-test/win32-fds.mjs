// The suites count open fds by listing /proc/self/fd (helpers.ts fdCount, the leak check). Windows
// has no /proc: there the listing has one entry per open handle as the iocp addon's
// `handleCount()` tells: GetProcessHandleCount on Windows; under Wine, which reports 0 there, the
// sockets iomux opened and has not closed (node:net's own sockets are libuv handles, which the leak
// check counts through process.getActiveResourcesInfo()). Loaded first in every bundle
// (scripts/wine-test/bundle.mjs), before the suites bind node:fs.
import fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';

if (process.platform === 'win32') {
  const require = createRequire(import.meta.url);
  const addon = require('@iomux/native-iocp/addon.cjs');
  const listing = '/proc/self/fd';
  const readdirSync = fs.readdirSync;
  const readlinkSync = fs.readlinkSync;
  fs.readdirSync = function (path, ...rest) {
    if (path !== listing) return readdirSync.call(this, path, ...rest);
    return Array.from({ length: addon.handleCount() }, (_, i) => String(i));
  };
  fs.readlinkSync = function (path, ...rest) {
    if (typeof path !== 'string' || !path.startsWith(`${listing}/`)) {
      return readlinkSync.call(this, path, ...rest);
    }
    return 'handle';
  };
  syncBuiltinESMExports();
}
