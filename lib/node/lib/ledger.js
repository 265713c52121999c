'use strict';
// Ledger and Lease: libratectl for JavaScript.

const { binding, scratch, codes } = require('./binding');
const { RatectlError } = require('./errors');
const { Group, abortReason } = require('./waiters');

const NS_PER_MS = 1e6;
const PRIORITIES = { interactive: 0, batch: 1 };

function priorityOf(p) {
  if (p === undefined || p === null) return 0;
  const v = PRIORITIES[p];
  if (v === undefined) {
    throw new TypeError(`priority must be 'interactive' or 'batch', not ${JSON.stringify(p)}`);
  }
  return v;
}

function count(v, what, dflt) {
  if (v === undefined || v === null) return dflt;
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${what} must be a whole number >= 0, not ${v}`);
  }
  return v;
}

// The limits of set(): "500/min", [count, periodMs, burst?] or a list.
function limitsOf(spec, dim, out) {
  if (spec === undefined || spec === null) return;
  const list = typeof spec === 'string' || (Array.isArray(spec) && typeof spec[0] === 'number')
    ? [spec] : spec;
  if (!Array.isArray(list)) {
    throw new TypeError('a rate is "500/min", [count, periodMs, burst?] or an array of those');
  }
  for (const one of list) {
    let c;
    let periodNs;
    let burst = 0;
    if (typeof one === 'string') {
      [c, periodNs] = binding.parseRate(one);
    } else if (Array.isArray(one) && one.length >= 2 && one.length <= 3) {
      c = one[0];
      periodNs = Math.round(one[1] * NS_PER_MS);
      burst = one.length > 2 ? one[2] : 0;
    } else {
      throw new TypeError(`not a rate: ${JSON.stringify(one)}`);
    }
    out.dims.push(dim);
    out.counts.push(c);
    out.periods.push(periodNs);
    out.bursts.push(burst);
  }
}

class Lease {
  constructor(ledger, ext) {
    this._ledger = ledger;
    this._x = ext;
    this._info = null;
  }

  _get(i) {
    if (!this._info) this._info = binding.leaseInfo(this._x);
    return this._info[i];
  }

  /** The budget it was admitted in. */
  get budget() { return this._get(0); }
  /** Tokens charged at admission (the estimate). */
  get tokens() { return this._get(1); }
  /** Its in-flight slot, -1 when the budget has no cap. */
  get slot() { return this._get(2); }
  get pid() { return this._get(3); }
  /** Admission time, ns on the ledger's clock (CLOCK_BOOTTIME). */
  get startNs() { return this._get(4); }
  /** The tag it was admitted with, or null. */
  get tag() { return this._get(6); }
  /** Held: not yet released (nor its Ledger closed). */
  get held() { return binding.leaseInfo(this._x)[5]; }

  /**
   * Release the lease: its slot is freed and, when actualTokens is given,
   * the token charge is corrected by (actual - estimate).  Throws
   * RatectlError EBADLEASE when it is not held (released twice).
   */
  release(actualTokens) {
    binding.release(this._x, actualTokens === undefined || actualTokens === null
      ? -1 : count(actualTokens, 'actualTokens', 0));
  }

  toString() {
    return `Lease(${this.budget}, tokens=${this.tokens}, slot=${this.slot})`;
  }
}

class Ledger {
  /**
   * The host's ledger: `path`, or $RATECTL_LEDGER, or the library's
   * default directory.
   */
  constructor(path) {
    if (path !== undefined && path !== null && typeof path !== 'string') {
      throw new TypeError('path must be a string');
    }
    this._h = binding.open(path === undefined ? null : path);
    this._group = new Group(() => binding.drain(this._handle()));
  }

  _handle() {
    if (this._h === null) throw new RatectlError('ratectl.Ledger is closed', -9);
    return this._h;
  }

  get path() { return binding.path(this._handle()); }

  /** Nanoseconds on the ledger's clock. */
  now() { return binding.now(this._handle()); }

  /** How many acquire() calls of this Ledger are waiting. */
  get pending() { return this._group.size; }

  // ---- budgets ----

  set(name, opts = {}) {
    const l = { dims: [], counts: [], periods: [], bursts: [] };
    limitsOf(opts.requests, 0, l);
    limitsOf(opts.tokens, 1, l);
    const jitterNs = Math.round(count(opts.jitter, 'jitter', 0) * NS_PER_MS);
    const expireNs = Math.round(count(opts.expire, 'expire', 0) * NS_PER_MS);
    const flags = (opts.create ? 1 : 0) | (opts.update ? 2 : 0);
    binding.set(this._handle(), name, l.dims, l.counts, l.periods, l.bursts,
      count(opts.concurrency, 'concurrency', 0), jitterNs,
      count(opts.batchShare, 'batchShare', 0), flags, expireNs,
      count(opts.weight, 'weight', 0), opts.origin === undefined ? null : opts.origin);
  }

  delete(name) { binding.delete(this._handle(), name); }
  budget(name) { return binding.get(this._handle(), name); }
  budgets() { return binding.list(this._handle()); }

  cooldown(name, ms) {
    binding.cooldown(this._handle(), name, Math.round(count(ms, 'ms', 0) * NS_PER_MS));
  }

  reset(name) { binding.reset(this._handle(), name === undefined ? null : name); }

  reclaim() {
    const [slots, readers] = binding.reclaim(this._handle());
    return { slots, readers };
  }

  /** Remove every budget idle past its expire now; returns how many. */
  sweep() { return binding.sweep(this._handle()); }

  /**
   * The budget's counted tags: { top: [{ tag, requests, tokens, error }],
   * most requests first, rest: the untagged and no longer counted }.
   */
  tags(name) { return binding.tags(this._handle(), name); }

  // ---- admission ----

  /**
   * Admit now or refuse, never waiting: a Lease, or RatectlError
   * ELIMITED / ECOOLDOWN (err.waitMs), EINFLIGHT, ETOOBIG, ENOTFOUND.
   */
  tryAcquire(budget, opts = {}) {
    const h = this._handle();
    const r = binding.tryAcquire(h, budget, count(opts.requests, 'requests', 1),
      count(opts.tokens, 'tokens', 0), priorityOf(opts.priority), opts.tag);
    if (typeof r !== 'number') return new Lease(this, r);
    const e = binding.error(r);
    if (r !== codes.EINFLIGHT) e.waitMs = scratch[0];
    throw e;
  }

  /**
   * Admit, waiting fairly (in line with every process of the host) up to
   * opts.timeout ms (undefined: no limit), without blocking the event
   * loop.  Resolves to a Lease; rejects with RatectlError ETIMEDOUT,
   * ETOOBIG, ENOTFOUND, or opts.signal's reason when it is aborted (the
   * place is given back).
   */
  acquire(budget, opts = {}) {
    try {
      return this._acquire(budget, opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  _acquire(budget, opts) {
    const h = this._handle();
    const { signal } = opts;
    const requests = count(opts.requests, 'requests', 1);
    const tokens = count(opts.tokens, 'tokens', 0);
    const prio = priorityOf(opts.priority);
    let timeout = opts.timeout;
    if (timeout !== undefined && timeout !== null &&
        (typeof timeout !== 'number' || !(timeout >= 0))) {
      throw new RangeError(`timeout must be a number of ms >= 0, not ${timeout}`);
    }
    if (timeout === Infinity) timeout = undefined;
    if (signal && signal.aborted) return Promise.reject(abortReason(signal));
    if (timeout === 0) {
      try {
        return Promise.resolve(this.tryAcquire(budget, opts));
      } catch (e) {
        if (e.errno === codes.ELIMITED || e.errno === codes.ECOOLDOWN ||
            e.errno === codes.EINFLIGHT) {
          throw new RatectlError(`budget ${budget}: not admitted before the deadline`,
            codes.ETIMEDOUT);
        }
        throw e;
      }
    }
    const [resv, rc] = binding.reserve(h, budget, requests, tokens, prio, opts.tag);
    if (rc === 0) {
      const lease = new Lease(this, binding.take(resv));
      this._group.catchUp();
      return Promise.resolve(lease);
    }
    return this._group.wait({
      poll: () => binding.poll(resv),
      // A deadline is counted as a refusal; an abort or an error is not.
      cancel: (expired) => (expired ? binding.expire(resv) : binding.cancel(resv)),
      done: (code) => {
        if (code === 0) return new Lease(this, binding.take(resv));
        throw binding.error(code);
      },
      signal,
      timeoutMs: timeout,
      timeoutError: () => new RatectlError(`budget ${budget}: not admitted before the ` +
        `deadline (${timeout} ms)`, codes.ETIMEDOUT),
      at: scratch[3],
      fd: scratch[1],
    });
  }

  /**
   * Close the handle.  Leases still held are released without a count;
   * acquires still waiting give their places back and reject.  Closing
   * twice does nothing.
   */
  close() {
    if (this._h === null) return;
    for (const w of [...this._group.pending]) {
      w.fail(new RatectlError('ratectl.Ledger closed while waiting', -9));
    }
    const h = this._h;
    this._h = null;
    binding.close(h);
  }
}

module.exports = { Ledger, Lease };
