'use strict';
// RatectlError: every failure of the library, with `code` a string per
// library code: 'ELIMITED', 'ETIMEDOUT', 'ETOOBIG', 'HTTP_ERETRYBUDGET'...
// (ratectl.h and ratectl_http.h, RATECTL_ dropped), or the name of a
// system error ('EACCES', 'ENOSPC') for the -errno codes the library
// passes on; `errno` is the library's number.

const os = require('node:os');

const byNumber = new Map();
for (const [name, n] of Object.entries(os.constants.errno)) {
  if (!byNumber.has(-n)) byNumber.set(-n, name);
}

class RatectlError extends Error {
  constructor(message, errno, waitMs) {
    super(message);
    this.name = 'RatectlError';
    this.errno = errno;
    this.code = byNumber.get(errno) || (errno > 0 ? 'E' + errno : 'EUNKNOWN');
    // ELIMITED and ECOOLDOWN: ms after which the same cost would be
    // admitted if nobody else takes it; null otherwise.
    this.waitMs = waitMs === undefined ? null : waitMs;
  }

  static _codes(codes) {
    for (const [name, n] of Object.entries(codes)) {
      if (n < 0) byNumber.set(n, name);
    }
  }
}

module.exports = { RatectlError };
