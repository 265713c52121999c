'use strict';
// Waiting without blocking: the one mechanism under Ledger.acquire() and
// ratectl.fetch().
//
// A pending reservation keeps its place in line inside the ledger (the
// library's event-loop API); here it only needs to be looked at again,
// at the time the library gave (a timer of its own) or as soon as the
// ledger's event descriptor is readable (something changed: a release, a
// refund, a cooldown's end).  The descriptor is watched by one native
// uv_poll_t per descriptor and process, only while someone waits, so no
// thread of libuv's pool (or any other) is held by a waiter and an idle
// ledger keeps no event loop alive.  On readiness the library's events
// are drained once, then every pending waiter is polled, oldest first
// (a poll that is not due costs no transaction).

const { binding } = require('./binding');

// fd -> { fd, w: native watcher, groups: Set<Group> }.  One per descriptor:
// a Ledger and a fetch() handle of one ledger directory share the
// library's handle, hence its descriptor.
const watched = new Map();

function onReadable(fd) {
  const entry = watched.get(fd);
  if (!entry) return;
  let drained = false;
  for (const g of [...entry.groups]) {
    if (!drained) {
      g.drain();
      drained = true;
    }
    g.pollAll();
  }
}

// The pending waiters of one handle (a Ledger, or a fetch() handle).
class Group {
  constructor(drain) {
    this.drain = drain;
    this.pending = new Set();   // insertion order: the order of asking
    this.fd = -1;
  }

  get size() {
    return this.pending.size;
  }

  // Arm waiter w after a reserve or poll said EPENDING: its timer, and
  // the descriptor when the library gave one.
  arm(w, waitMs, fd) {
    if (!this.pending.has(w)) this.pending.add(w);
    if (w.timer) clearTimeout(w.timer);
    // Node's timers count whole milliseconds: round up, so that a poll
    // is never early by design (an early one only re-arms).
    w.timer = setTimeout(() => {
      w.timer = null;
      if (this.pending.has(w)) w.poll();
    }, Math.max(1, Math.ceil(waitMs)));
    if (fd >= 0 && this.fd < 0) this.watch(fd);
  }

  watch(fd) {
    let entry = watched.get(fd);
    if (!entry) {
      entry = { fd, w: binding.watch(fd, () => onReadable(fd)), groups: new Set() };
      watched.set(fd, entry);
    }
    entry.groups.add(this);
    this.fd = fd;
  }

  // w is done (admitted, failed or cancelled): forget it; stop watching
  // when nobody waits.
  done(w) {
    if (w.timer) {
      clearTimeout(w.timer);
      w.timer = null;
    }
    this.pending.delete(w);
    if (this.pending.size === 0 && this.fd >= 0) this.unwatch();
  }

  unwatch() {
    const entry = watched.get(this.fd);
    this.fd = -1;
    if (!entry) return;
    entry.groups.delete(this);
    if (entry.groups.size === 0) {
      watched.delete(entry.fd);
      binding.unwatch(entry.w);
    }
  }

  pollAll() {
    for (const w of [...this.pending]) {
      if (this.pending.has(w)) w.poll();
    }
  }
}

module.exports = { Group };
