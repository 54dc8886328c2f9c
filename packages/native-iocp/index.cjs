'use strict';
// Placeholder: the iocp backend is not implemented yet, so its loader reports that honestly.
module.exports = {
  iocp: () => {
    throw new Error('the iocp backend is not implemented yet');
  },
};
