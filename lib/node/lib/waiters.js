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

const { binding, codes, monoMs, scratch } = require('./binding');

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
//
// One timer per group, set for the earliest waiter's time: when it fires,
// the waiters that are due are polled in the order they asked (a Set keeps
// insertion order, and a waiter polled again keeps its position), so that
// two places a millisecond apart are never looked at, hence admitted, out
// of order (a timer per waiter could: Node's timers count whole
// milliseconds from the loop's cached clock).
class Group {
  constructor(drain) {
    this.drain = drain;
    this.pending = new Set();   // insertion order: the order of asking
    this.fd = -1;
    this.timer = null;
    this.timerAt = Infinity;
    this.sweeping = false;      // in onTime or pollAll: reschedule after
  }

  get size() {
    return this.pending.size;
  }

  // Arm waiter w after a reserve or poll said EPENDING: its time (ms on
  // CLOCK_MONOTONIC, absolute: see rn.h), and the descriptor when the
  // library gave one.
  arm(w, atMs, fd) {
    w.at = atMs;
    this.pending.add(w);            // no-op when it is in already
    if (!this.sweeping && w.at < this.timerAt) this.schedule(w.at);
    if (fd >= 0 && this.fd < 0) this.watch(fd);
  }

  schedule(at) {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    // Whole milliseconds, rounded up: a poll is never early by design
    // (one that is only re-arms).
    const ms = Math.max(1, Math.ceil(at - monoMs()));
    this.timer = setTimeout(() => this.onTime(), ms);
  }

  // A request of this handle was admitted at once: first let in those
  // whose time has come while their timer had not fired yet (a slow
  // loop), so that promises settle in the order of the places.
  catchUp() {
    if (this.pending.size === 0) return;
    const now = monoMs();
    let due = false;
    for (const w of this.pending) {
      if (w.at <= now) {
        due = true;
        break;
      }
    }
    if (due) this.onTime();
  }

  onTime() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    const now = monoMs();
    this.sweeping = true;
    try {
      for (const w of [...this.pending]) {
        if (w.at <= now && this.pending.has(w)) w.poll();
      }
    } finally {
      this.sweeping = false;
      this.reschedule();
    }
  }

  reschedule() {
    let next = Infinity;
    for (const w of this.pending) if (w.at < next) next = w.at;
    if (next === Infinity) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.timerAt = Infinity;
    } else if (next !== this.timerAt || !this.timer) {
      this.schedule(next);
    }
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

  // w is done (admitted, failed or cancelled): forget it; stop the timer
  // and the watching when nobody waits.
  done(w) {
    this.pending.delete(w);
    if (this.pending.size === 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.timerAt = Infinity;
      if (this.fd >= 0) this.unwatch();
    }
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

  /**
   * Wait for one pending reservation, already armed by the library: a
   * promise settled by the first of
   *   poll() returning a code other than EPENDING: done(code) is its
   *     value (done runs at once, so the library's detail of a failure
   *     is still the last one), or what done throws;
   *   signal aborted: cancel(), rejected with the signal's reason;
   *   timeoutMs passed: cancel(true), rejected with timeoutError();
   *   poll() throwing: cancel(), rejected with what it threw.
   * at, fd: the library's first answer (scratch[3], scratch[1]).
   */
  wait({ poll, cancel, done, signal, timeoutMs, timeoutError, at, fd }) {
    return new Promise((resolve, reject) => {
      const w = { at: 0, poll: null, deadline: null };
      const finish = () => {
        this.done(w);
        if (w.deadline) clearTimeout(w.deadline);
        if (signal) signal.removeEventListener('abort', onAbort);
      };
      const fail = (err, expired) => {
        cancel(expired);
        finish();
        reject(err);
      };
      const onAbort = () => fail(abortReason(signal), false);
      w.poll = () => {
        let code;
        try {
          code = poll();
        } catch (e) {
          fail(e, false);
          return;
        }
        if (code === codes.EPENDING) {
          this.arm(w, scratch[3], scratch[1]);
          return;
        }
        finish();
        try {
          resolve(done(code));
        } catch (e) {
          reject(e);
        }
      };
      w.fail = (err) => fail(err, false);
      if (signal && signal.aborted) {
        fail(abortReason(signal), false);
        return;
      }
      if (timeoutMs !== undefined && timeoutMs !== null) {
        w.deadline = setTimeout(() => {
          w.deadline = null;
          fail(timeoutError(), true);
        }, timeoutMs);
      }
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
      this.arm(w, at, fd);
    });
  }

  pollAll() {
    this.sweeping = true;
    try {
      for (const w of [...this.pending]) {
        if (this.pending.has(w)) w.poll();
      }
    } finally {
      this.sweeping = false;
      this.reschedule();
    }
  }
}

// The reason an aborted signal gives, or an AbortError when it has none.
function abortReason(signal) {
  if (signal.reason !== undefined) return signal.reason;
  const e = new Error('This operation was aborted');
  e.name = 'AbortError';
  e.code = 'ABORT_ERR';
  return e;
}

module.exports = { Group, abortReason };
