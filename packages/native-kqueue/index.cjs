'use strict';
// Placeholder: the kqueue backend is not implemented yet, so its loader reports that honestly.
module.exports = {
  kqueue: () => {
    throw new Error('the kqueue backend is not implemented yet');
  },
};
