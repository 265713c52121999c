'use strict';
// Finding and loading the addon (ratectl.node), once per process.
//
// Looked for, in order:
//   1. $RATECTL_NODE_ADDON, when set (an explicit path: tests, unusual
//      installs); nothing else is tried then;
//   2. the build tree, when the package runs from a checkout of ratectl
//      (lib/node -> ../../$B/node/ratectl.node, B defaulting to build;
//      an absolute $B as it is), so that a sanitizer build's addon is the
//      one its tests load;
//   3. build/ratectl.node inside the package (the copy make install puts
//      there).
// The addon carries both C libraries (linked statically): nothing else
// is loaded.

const fs = require('node:fs');
const path = require('node:path');
const { RatectlError } = require('./errors');

function candidates() {
  const explicit = process.env.RATECTL_NODE_ADDON;
  if (explicit) return [path.resolve(explicit)];
  const here = path.resolve(__dirname, '..');
  const out = [];
  const top = path.resolve(here, '..', '..');
  if (fs.existsSync(path.join(top, 'include', 'ratectl.h'))) {
    out.push(path.join(path.resolve(top, process.env.B || 'build'), 'node', 'ratectl.node'));
  }
  out.push(path.join(here, 'build', 'ratectl.node'));
  return out;
}

function load() {
  const tried = [];
  for (const file of candidates()) {
    if (!fs.existsSync(file)) {
      tried.push(`${file}: no such file`);
      continue;
    }
    // A load error (a wrong architecture, a missing symbol) is the user's
    // to see as it is: it is not a reason to try an older copy.
    return require(file);
  }
  const err = new Error(
    'ratectl: the native addon was not found; build it with `make node` in ratectl\'s ' +
    'source tree, or set RATECTL_NODE_ADDON to its path. Tried:\n  ' + tried.join('\n  '));
  err.code = 'ERR_RATECTL_NO_ADDON';
  throw err;
}

const binding = load();
// What a reserve or a poll says beside its code: [wait ms, fd, fifo,
// the time to look again in ms on CLOCK_MONOTONIC (monoMs()'s clock)].
const scratch = new Float64Array(4);

// Now, in ms on CLOCK_MONOTONIC (process.hrtime's clock).
function monoMs() {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}
binding.setup(RatectlError, scratch);
RatectlError._codes(binding.codes);

module.exports = { binding, scratch, codes: binding.codes, monoMs };
