'use strict';
// ratectl for Node.js: one rate limit shared by every process on a host.
// See doc/node.md in ratectl's source tree.

const { binding } = require('./lib/binding');
const { RatectlError } = require('./lib/errors');
const { Ledger, Lease } = require('./lib/ledger');
const { fetch } = require('./lib/fetch');

/** The id of an API key, as a config's `key =` names it (16 hex digits). */
function keyId(key) {
  if (typeof key !== 'string' && !ArrayBuffer.isView(key)) {
    throw new TypeError('keyId(key): a string or bytes');
  }
  return binding.keyId(key);
}

module.exports = {
  Ledger,
  Lease,
  RatectlError,
  fetch,
  keyId,
  version: binding.version,
};
