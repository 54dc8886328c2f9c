'use strict';
// Backend loaders by name; @iomux/core calls them and turns a throw into unavailabilityCause().
// This package builds two addons from one binding.gyp, and node-gyp-build finds only one addon
// per directory, so each is loaded from build/Release by name.
const path = require('node:path');

function load(target) {
  const file = path.join(__dirname, 'build', 'Release', `${target}.node`);
  try {
    return require(file);
  } catch (err) {
    if (err && err.code === 'MODULE_NOT_FOUND') {
      throw new Error(
        `${target}.node is not built (expected ${file}); run \`npm run build\` in ${__dirname}`,
        { cause: err },
      );
    }
    throw err;
  }
}

module.exports = {
  select: () => load('iomux_select'),
  blocking_io: () => load('iomux_blocking_io'),
};
