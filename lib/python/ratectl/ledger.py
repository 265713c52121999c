"""The host's ledger: budgets, admission and leases (libratectl over ctypes).

``Ledger`` wraps one ``ratectl *`` handle.  Everything here is a thin layer
over include/ratectl.h, whose comments are the contract: a Ledger made
before ``os.fork()`` works in the child because the C library notices the
fork and reopens what it must at the child's next call (leases taken in
the parent stay the parent's).

Blocking calls (``acquire``) release the GIL while they wait.  Waiting on
an event loop (``aacquire``) uses the library's reservation API: no thread
per waiter, the place in line is kept, and a cancelled waiter gives it back.
"""
import asyncio
import ctypes
import dataclasses
import math
import operator
import os
import threading
import weakref
from ctypes import (POINTER, Structure, byref, c_char, c_char_p, c_int,
                    c_int32, c_int64, c_size_t, c_uint, c_uint32, c_uint64,
                    c_void_p)
from typing import List, Optional

from . import _errors
from ._errors import raise_for
from ._lib import libratectl

__all__ = ["Ledger", "Lease", "Limit", "BudgetInfo", "Counters", "TagInfo",
           "Tags", "parse_rate", "parse_duration"]

NAME_MAX = 64
MAX_LIMITS = 8
BUDGET_VERSION = 2
TAG_MAX = 48
TAGS_TOP = 32
WEIGHT_MAX = 100
RESERVATION_VERSION = 1
UNKNOWN = 2 ** 64 - 1
REQUESTS, TOKENS = 0, 1
INTERACTIVE, BATCH = 0, 1
_NS = 1_000_000_000

_E = {cls.__name__: cls.code for cls in _errors.CODES.values()}
E_LIMITED = _E["Limited"]
E_INFLIGHT = _E["InFlight"]
E_COOLDOWN = _E["Cooldown"]
E_PENDING = _E["Pending"]
E_BADLEASE = _E["BadLease"]
EINTR = -4


# ---- the C structs, field for field as in ratectl.h ------------------------
# ctypes lays them out with the platform's natural alignment, as the C
# compiler does; tests/python/test_ledger.py compares sizes and offsets with
# a C program's.

class _Limit(Structure):
    _fields_ = [("dim", c_int), ("count", c_uint64), ("period_ns", c_int64),
                ("burst", c_uint64)]


class _Budget(Structure):
    _fields_ = [("version", c_uint), ("nlimits", c_uint),
                ("limits", _Limit * MAX_LIMITS), ("max_inflight", c_uint32),
                ("jitter_ns", c_int64), ("batch_share", c_uint),
                ("expire_ns", c_int64), ("weight", c_uint),
                ("origin", c_char * (NAME_MAX + 1))]


class _LimitState(Structure):
    _fields_ = [("limit", _Limit), ("available", c_uint64),
                ("until_full_ns", c_int64)]


class _Counters(Structure):
    _fields_ = [(n, c_uint64) for n in (
        "admitted", "refused", "waited", "wait_ns", "tokens_estimated",
        "tokens_actual", "tokens_reconciled", "reclaimed", "retries")]


class _BudgetInfo(Structure):
    _fields_ = [("name", c_char * (NAME_MAX + 1)), ("config", _Budget),
                ("state", _LimitState * MAX_LIMITS), ("inflight", c_uint32),
                ("dead", c_uint32), ("cooldown_ns", c_int64),
                ("counters", _Counters), ("idle_ns", c_int64)]


class _Cost(Structure):
    _fields_ = [("requests", c_uint64), ("tokens", c_uint64), ("priority", c_int),
                ("tag", c_char_p)]


class _Lease(Structure):
    _fields_ = [("magic", c_uint32), ("budget_id", c_uint32),
                ("name", c_char * (NAME_MAX + 1)), ("slot", c_int32),
                ("pid", c_int32), ("tokens", c_uint64), ("start_ns", c_int64),
                ("fork_gen", c_uint64), ("tag", c_char * (TAG_MAX + 1))]


class _Reservation(Structure):
    _fields_ = [("version", c_uint), ("lease", _Lease), ("at_ns", c_int64),
                ("fd", c_int), ("priv", c_uint64 * 40)]


class _LeaseInfo(Structure):
    _fields_ = [("slot", c_uint32), ("pid", c_int32), ("alive", c_int),
                ("age_ns", c_int64), ("tokens", c_uint64), ("count", c_uint32)]


class _TagInfo(Structure):
    _fields_ = [("tag", c_char * (TAG_MAX + 1)), ("requests", c_uint64),
                ("tokens", c_uint64), ("error", c_uint64)]


_FOREACH_FN = ctypes.CFUNCTYPE(c_int, POINTER(_BudgetInfo), c_void_p)

_lib_lock = threading.Lock()
_lib_typed = None


def _lib():
    """libratectl with every function this module calls typed."""
    global _lib_typed
    if _lib_typed is not None:
        return _lib_typed
    with _lib_lock:
        if _lib_typed is not None:
            return _lib_typed
        lib = libratectl()
        H = c_void_p
        sigs = {
            "ratectl_open": (c_int, [POINTER(c_void_p), c_char_p, c_void_p]),
            "ratectl_close": (None, [H]),
            "ratectl_path": (c_char_p, [H]),
            "ratectl_now": (c_int64, [H]),
            "ratectl_default_dir": (c_int, [ctypes.c_char_p, c_size_t]),
            "ratectl_name_check": (c_int, [c_char_p]),
            "ratectl_budget_set": (c_int, [H, c_char_p, POINTER(_Budget), c_int]),
            "ratectl_budget_delete": (c_int, [H, c_char_p]),
            "ratectl_budget_reset": (c_int, [H, c_char_p]),
            "ratectl_cooldown": (c_int, [H, c_char_p, c_int64]),
            "ratectl_budget_get": (c_int, [H, c_char_p, POINTER(_BudgetInfo)]),
            "ratectl_budget_foreach": (c_int, [H, _FOREACH_FN, c_void_p]),
            "ratectl_leases": (c_int, [H, c_char_p, POINTER(_LeaseInfo), c_size_t,
                                       POINTER(c_size_t)]),
            "ratectl_reclaim": (c_int, [H, POINTER(c_uint), POINTER(c_uint)]),
            "ratectl_sweep": (c_int, [H, POINTER(c_uint)]),
            "ratectl_tag_check": (c_int, [c_char_p]),
            "ratectl_tags": (c_int, [H, c_char_p, POINTER(_TagInfo), c_size_t,
                                     POINTER(c_size_t), POINTER(_TagInfo)]),
            "ratectl_try": (c_int, [H, c_char_p, POINTER(_Cost), POINTER(_Lease),
                                    POINTER(c_int64)]),
            "ratectl_acquire": (c_int, [H, c_char_p, POINTER(_Cost), POINTER(_Lease),
                                        c_int64]),
            "ratectl_reserve": (c_int, [H, c_char_p, POINTER(_Cost),
                                        POINTER(_Reservation)]),
            "ratectl_reserve_poll": (c_int, [H, POINTER(_Reservation)]),
            "ratectl_reserve_cancel": (None, [H, POINTER(_Reservation)]),
            "ratectl_reserve_expire": (c_int, [H, POINTER(_Reservation)]),
            "ratectl_events_drain": (c_int, [H]),
            "ratectl_release": (c_int, [H, POINTER(_Lease), c_uint64]),
            "ratectl_parse_rate": (c_int, [c_char_p, POINTER(c_uint64), POINTER(c_int64)]),
            "ratectl_parse_duration": (c_int, [c_char_p, POINTER(c_int64)]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        global _c_try, _c_release
        _c_try, _c_release = lib.ratectl_try, lib.ratectl_release
        _lib_typed = lib
        return lib


_names = {}
_costs = {}
_CACHE_MAX = 1024
_c_try = None
_c_release = None


def _name_cached(s):
    b = _name(s)
    if len(_names) < _CACHE_MAX:
        _names[s] = b
    return b


def _cost_cached(requests, tokens, priority, tag):
    """A cost struct; the C library only reads it, so equal costs share one
    (its tag's bytes live as long as it: ctypes keeps them in the struct)."""
    c = _cost(requests, tokens, priority, tag)
    if len(_costs) < _CACHE_MAX:
        _costs[(requests, tokens, priority, tag)] = c
    return c


def _cost(requests, tokens, priority, tag):
    c = _Cost(requests, tokens, _priority(priority))
    if tag is not None:
        c.tag = _tag(tag)
    return c


def _name(s):
    """A budget name as bytes (str or bytes accepted).  A NUL would end the
    C string early, and the name before it could be another budget's."""
    b = s if isinstance(s, bytes) else s.encode("utf-8")
    if b"\0" in b:
        raise _errors.BadName("invalid budget name: contains a NUL character",
                              _errors.BadName.code)
    return b


def _cstr(s, error):
    """A rate, duration or path as bytes for C, never cut at a NUL."""
    b = s if isinstance(s, bytes) else s.encode("utf-8")
    if b"\0" in b:
        raise error("%r contains a NUL character" % (s[:80],))
    return b


def _tag(t):
    """A request's tag as bytes, checked by the C library
    (ratectl_tag_check): 1 to TAG_MAX bytes of [A-Za-z0-9._:/-].  A NUL
    would end the C string early and make it another, valid, tag."""
    b = _text(t, "tag", _errors.BadName)
    if b"\0" in b:
        raise _errors.BadName("invalid tag: contains a NUL character", _errors.BadName.code)
    rc = _lib().ratectl_tag_check(b)
    if rc:
        raise_for(rc)
    return b


def _uint(v, what, top=2 ** 32 - 1):
    """v for an unsigned C field: ctypes would wrap a negative or too large
    number silently (-1 becomes 4294967295, 2**32 + 5 becomes 5)."""
    if v is None:
        return 0
    try:
        n = operator.index(v)           # an int or int-like, never a float
    except TypeError:
        n = None
    if n is None or not 0 <= n <= top:
        raise _errors.BadConfig("invalid budget configuration: %s must be a whole "
                                "number from 0 to %d, not %r" % (what, top, v),
                                _errors.BadConfig.code)
    return n


def _ns_field(seconds, what):
    """seconds as int64 nanoseconds (ctypes would cut a larger number)."""
    if seconds is None:
        return 0
    try:
        ns = _seconds_to_ns(seconds)
    except (TypeError, ValueError, OverflowError):
        ns = None
    if ns is None or not -2 ** 63 <= ns < 2 ** 63:
        raise _errors.BadConfig("invalid budget configuration: %s must be a number of "
                                "seconds, not %r" % (what, seconds), _errors.BadConfig.code)
    return ns


def _origin(o):
    """A budget's origin as bytes for its char[NAME_MAX + 1]: ctypes would
    fill all NAME_MAX + 1 bytes without a terminating NUL."""
    if o is None:
        return b""
    b = _text(o, "origin", _errors.BadConfig)
    if len(b) > NAME_MAX or b"\0" in b:
        raise _errors.BadConfig("invalid budget configuration: origin: %s"
                                % ("contains a NUL character" if b"\0" in b else
                                   "longer than %d bytes" % NAME_MAX),
                                _errors.BadConfig.code)
    return b


def _text(v, what, error):
    """str (UTF-8) or bytes as bytes; another type is a TypeError, a str
    UTF-8 cannot encode (a lone surrogate) the library's error for it."""
    if isinstance(v, bytes):
        return v
    if not isinstance(v, str):
        raise TypeError("%s must be a str, not %s" % (what, type(v).__name__))
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError:
        raise error("invalid %s: not encodable as UTF-8" % what, error.code) from None


def _parse_error(msg):
    return _errors.ParseError(msg, _errors.ParseError.code)


def _seconds_to_ns(s):
    return int(round(s * _NS))


def _priority(p):
    if p in ("interactive", INTERACTIVE, None):
        return INTERACTIVE
    if p in ("batch", BATCH):
        return BATCH
    raise ValueError("priority must be 'interactive' or 'batch', not %r" % (p,))


def parse_rate(text):
    """Parse a rate such as ``"500/min"`` or ``"2,000,000/day"`` with the C
    library's parser; returns ``(count, period_seconds)``.  Raises
    ``ratectl.ParseError``."""
    lib = _lib()
    count, period = c_uint64(), c_int64()
    rc = lib.ratectl_parse_rate(_cstr(text, _parse_error), byref(count), byref(period))
    if rc:
        raise_for(rc)
    return count.value, period.value / _NS


def parse_duration(text):
    """Parse a duration such as ``"1.5s"`` or ``"10 min"`` with the C
    library's parser; returns seconds (float).  Raises ``ratectl.ParseError``."""
    lib = _lib()
    ns = c_int64()
    rc = lib.ratectl_parse_duration(_cstr(text, _parse_error), byref(ns))
    if rc:
        raise_for(rc)
    return ns.value / _NS


# ---- what budget() returns --------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Limit:
    """One limit of a budget and its live state.

    ``dim`` is ``"requests"`` or ``"tokens"``; ``count`` units pass per
    ``period`` seconds with up to ``burst`` at once; ``available`` units
    could pass now and the limit is full again in ``until_full`` seconds.
    """
    dim: str
    count: int
    period: float
    burst: int
    available: int = 0
    until_full: float = 0.0


@dataclasses.dataclass(frozen=True)
class Counters:
    """A budget's counters since its lease file was created (ratectl_counters)."""
    admitted: int
    refused: int
    waited: int
    wait_ns: int
    tokens_estimated: int
    tokens_actual: int
    tokens_reconciled: int
    reclaimed: int
    retries: int


@dataclasses.dataclass(frozen=True)
class BudgetInfo:
    """A budget's configuration and live state (ratectl_budget_info).

    ``concurrency`` is the cap on requests in flight (0: none); ``inflight``
    the slots held now and ``dead`` those whose holder died; ``cooldown``
    the seconds of cooldown left (0.0: none); ``jitter`` seconds;
    ``batch_share`` percent (0: the library's default).  ``expire``: the
    seconds idle after which the budget is removed (0.0: never);
    ``weight``: its weight as a tenant (0: not one); ``origin``: the
    template that made it, or ""; ``idle``: seconds since its last
    admission (None: never admitted).
    """
    name: str
    limits: List[Limit]
    concurrency: int
    jitter: float
    batch_share: int
    inflight: int
    dead: int
    cooldown: float
    counters: Counters
    expire: float = 0.0
    weight: int = 0
    origin: str = ""
    idle: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class TagInfo:
    """What requests of one tag used in a budget (ratectl_tag_info):
    ``requests`` and ``tokens`` (estimated, corrected at release);
    ``error``: counts inherited from the tag it replaced among the counted
    ones, the most by which its own counts may be too high."""
    tag: str
    requests: int
    tokens: int
    error: int


@dataclasses.dataclass(frozen=True)
class Tags:
    """A budget's counted tags (``top``, most requests first, at most
    ``ratectl.ledger.TAGS_TOP``) and ``rest``: the totals of untagged
    requests and of tags no longer counted (its ``tag`` is "")."""
    top: List[TagInfo]
    rest: TagInfo


def _tag_from_c(t):
    return TagInfo(t.tag.decode("utf-8", "replace"), t.requests, t.tokens, t.error)


def _info_from_c(ci):
    limits = []
    for i in range(ci.config.nlimits):
        st = ci.state[i]
        lim = st.limit
        limits.append(Limit("tokens" if lim.dim == TOKENS else "requests",
                            lim.count, lim.period_ns / _NS, lim.burst,
                            st.available, st.until_full_ns / _NS))
    c = ci.counters
    return BudgetInfo(
        name=ci.name.decode("utf-8", "replace"), limits=limits,
        concurrency=ci.config.max_inflight, jitter=ci.config.jitter_ns / _NS,
        batch_share=ci.config.batch_share, inflight=ci.inflight, dead=ci.dead,
        cooldown=ci.cooldown_ns / _NS,
        counters=Counters(*(getattr(c, f) for f, _ in _Counters._fields_)),
        expire=ci.config.expire_ns / _NS, weight=ci.config.weight,
        origin=ci.config.origin.decode("utf-8", "replace"),
        idle=None if ci.idle_ns < 0 else ci.idle_ns / _NS)


# ---- leases -----------------------------------------------------------------

class Lease:
    """A grant from the ledger: hold it while the request runs, then release.

    A context manager: ``with ledger.acquire("openai", tokens=900) as lease:``
    releases it on exit (without a token count).  ``release(actual_tokens)``
    releases it and corrects the token charge to what the request really
    used.  A lease not released holds its in-flight slot until the process
    exits (the library reclaims a dead process's slots).
    """

    __slots__ = ("_ledger", "_c", "__weakref__")

    def __init__(self, ledger, c_lease):
        self._ledger = ledger
        self._c = c_lease

    @property
    def budget(self):
        """The budget's name."""
        return self._c.name.decode("utf-8", "replace")

    @property
    def tokens(self):
        """Tokens charged at admission (the estimate)."""
        return self._c.tokens

    @property
    def slot(self):
        """The in-flight slot held, or -1 when the budget has no cap."""
        return self._c.slot

    @property
    def pid(self):
        """The process that holds the lease."""
        return self._c.pid

    @property
    def start_ns(self):
        """Admission time, nanoseconds on the ledger's clock (``Ledger.now_ns``)."""
        return self._c.start_ns

    @property
    def tag(self):
        """The tag it was admitted with, or None."""
        return self._c.tag.decode("utf-8", "replace") or None

    @property
    def held(self):
        """True until the lease is released."""
        return self._c.magic != 0

    def release(self, actual_tokens=None):
        """Release the lease: free its slot and, when ``actual_tokens`` is
        given, refund or debit the difference from the estimate on every
        token limit.  Raises ``ratectl.BadLease`` when already released,
        ``ratectl.Forked`` in a process that did not take it."""
        h = self._ledger._h
        if h is None:
            raise ValueError("ratectl.Ledger is closed")
        rc = _c_release(h, self._c, UNKNOWN if actual_tokens is None else int(actual_tokens))
        if rc:
            raise_for(rc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._c.magic != 0:
            self.release()
        return False

    def __repr__(self):
        return "<ratectl.Lease %s tokens=%d slot=%d%s>" % (
            self.budget, self.tokens, self.slot, "" if self.held else " released")


# ---- event loops ------------------------------------------------------------

class _Waiter:
    __slots__ = ("res", "cost", "fut", "timer", "seq")

    def __init__(self, res, cost, fut, seq):
        self.res = res
        # The library keeps a copy of the cost in the pending reservation,
        # the tag's pointer with it: the cost (whose tag bytes ctypes keeps)
        # lives as long as the waiter.
        self.cost = cost
        self.fut = fut
        self.timer = None
        self.seq = seq


class _LoopState:
    """The pending reservations of one Ledger in one event loop, and the
    one reader on the handle's event descriptor they share."""

    def __init__(self, ledger, loop):
        self.ledger = ledger
        # Weak: the state is the value of a WeakKeyDictionary keyed by the
        # loop, and a strong reference back would keep every loop alive.
        self._loop = weakref.ref(loop)
        self.pid = os.getpid()
        self.waiters = {}          # seq -> _Waiter, in order of asking
        self.fd = -1
        self.seq = 0

    @property
    def loop(self):
        return self._loop()

    def add(self, w):
        self.waiters[w.seq] = w
        self.ledger._pending[id(w)] = (self, w)
        self._schedule(w)

    def _schedule(self, w):
        r = w.res
        if r.fd >= 0 and self.fd < 0:
            self.fd = r.fd
            self.loop.add_reader(r.fd, self._on_readable)
        delay = (r.at_ns - self.ledger.now_ns()) / _NS
        w.timer = self.loop.call_at(self.loop.time() + max(delay, 0.0), self._on_time, w)

    def _done(self, w):
        self.waiters.pop(w.seq, None)
        self.ledger._pending.pop(id(w), None)
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        if not self.waiters and self.fd >= 0:
            self.loop.remove_reader(self.fd)
            self.fd = -1

    def _poll(self, w):
        if w.fut.done():
            return
        h = self.ledger._handle()
        rc = _lib().ratectl_reserve_poll(h, byref(w.res))
        if rc == E_PENDING:
            if w.timer is not None:
                w.timer.cancel()
            self._schedule(w)
            return
        self._done(w)
        if rc == 0:
            w.fut.set_result(Lease(self.ledger, w.res.lease))
        else:
            try:
                raise_for(rc)
            except BaseException as e:  # noqa: B902 - handed to the waiter
                w.fut.set_exception(e)

    def _on_time(self, w):
        w.timer = None
        self._poll(w)

    def _on_readable(self):
        _lib().ratectl_events_drain(self.ledger._handle())
        for w in list(self.waiters.values()):
            self._poll(w)

    def cancel(self, w, expired=False):
        """Give w's place back; ``expired``: its deadline passed, which
        the budget counts as a refusal (as a timed-out acquire)."""
        if w.seq in self.waiters:
            self._done(w)
            if expired:
                _lib().ratectl_reserve_expire(self.ledger._handle(), byref(w.res))
            else:
                _lib().ratectl_reserve_cancel(self.ledger._handle(), byref(w.res))


# ---- the ledger -------------------------------------------------------------

class Ledger:
    """The host's ledger (``ratectl_open``): ``path`` or, when None,
    ``$RATECTL_LEDGER`` or the default directory.

    One Ledger may be used by any number of threads and, after ``os.fork()``,
    in the child (the library reopens what it needs there).  ``close()``
    must not race with other calls on it.  Raises ``ratectl.Unsafe``,
    ``ratectl.VersionError``, ``ratectl.Corrupt`` or ``ratectl.Error``.
    """

    def __init__(self, path=None):
        lib = _lib()
        h = c_void_p()
        rc = lib.ratectl_open(byref(h), None if path is None else _cstr(str(path), ValueError), None)
        if rc:
            raise_for(rc)
        self._h = h.value
        self._loops = weakref.WeakKeyDictionary()
        self._loops_lock = threading.Lock()
        self._pending = {}         # id(waiter) -> (loop state, waiter)

    def _handle(self):
        h = self._h
        if h is None:
            raise ValueError("ratectl.Ledger is closed")
        return h

    @property
    def path(self):
        """The ledger's directory."""
        return _lib().ratectl_path(self._handle()).decode()

    def now_ns(self):
        """Nanoseconds on the ledger's clock (CLOCK_BOOTTIME), the clock of
        ``Lease.start_ns``."""
        return _lib().ratectl_now(self._handle())

    def close(self):
        """Close the handle.  Leases still held are released without a count;
        coroutines still waiting in ``aacquire`` give their places back and
        get ``ratectl.Error``.  Closing twice does nothing."""
        if self._h is None:
            return
        # Reservations must not be pending when the handle goes (the C
        # library's watcher thread would use the freed handle).
        for st, w in list(self._pending.values()):
            if st.pid != os.getpid():
                continue            # a parent's, copied by fork: not ours
            st.cancel(w)
            if not w.fut.done():
                err = _errors.Error("ratectl.Ledger closed while waiting")
                try:
                    st.loop.call_soon_threadsafe(_fail, w.fut, err)
                except (RuntimeError, AttributeError):   # the loop is closed or gone
                    pass
        h, self._h = self._h, None
        _lib().ratectl_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self):
        return "<ratectl.Ledger %s>" % (self.path if self._h is not None else "closed")

    # ---- budgets ----

    def set(self, name, requests=None, tokens=None, concurrency=0, jitter=0.0,
            batch_share=0, create=False, update=False, expire=0.0, weight=0,
            origin=None):
        """Create or update budget ``name``.

        ``requests`` and ``tokens`` are each a rate (``"500/min"``, parsed by
        the C library), a tuple ``(count, period_seconds)`` or
        ``(count, period_seconds, burst)``, or a list of those for several
        limits of one dimension.  ``concurrency`` caps requests in flight
        (0: no cap).  ``jitter`` is the seconds over which waiters are let in
        after a cooldown (0: 1 s); ``batch_share`` the percent of the first
        limit kept for batch requests (0: 10).  ``expire``: the seconds
        idle (nothing admitted or in flight, every limit full) after which
        the budget is removed (0: never).  ``weight``: its weight as a
        tenant, 1 to ``WEIGHT_MAX`` (0: not one).  ``origin``: what made
        it, for reports (a template such as ``"user-*"``; up to 64 bytes).
        ``create=True`` fails with ``ratectl.Exists`` when it exists,
        ``update=True`` with ``ratectl.NotFound`` when it doesn't.  Raises
        ``ratectl.BadName``, ``ratectl.BadConfig``, ``ratectl.ParseError``.
        """
        b = _Budget()
        b.version = BUDGET_VERSION
        n = 0
        for dim, spec in ((REQUESTS, requests), (TOKENS, tokens)):
            if spec is None:
                continue
            if isinstance(spec, (str, bytes, tuple)):
                spec = [spec]
            for one in spec:
                if n >= MAX_LIMITS:
                    raise _errors.BadConfig("at most %d limits" % MAX_LIMITS,
                                            _errors.BadConfig.code)
                burst = 0
                if isinstance(one, tuple):
                    count, period = one[0], _seconds_to_ns(one[1])
                    if len(one) > 2:
                        burst = one[2]
                else:
                    c, p = c_uint64(), c_int64()
                    rc = _lib().ratectl_parse_rate(_cstr(one, _parse_error), byref(c), byref(p))
                    if rc:
                        raise_for(rc)
                    count, period = c.value, p.value
                lim = b.limits[n]
                lim.dim, lim.count, lim.period_ns, lim.burst = dim, count, period, burst
                n += 1
        b.nlimits = n
        b.max_inflight = _uint(concurrency, "concurrency")
        b.jitter_ns = _ns_field(jitter, "jitter")
        b.batch_share = _uint(batch_share, "batch_share")
        b.expire_ns = _ns_field(expire, "expire")
        b.weight = _uint(weight, "weight")
        b.origin = _origin(origin)
        flags = (1 if create else 0) | (2 if update else 0)
        rc = _lib().ratectl_budget_set(self._handle(), _name(name), byref(b), flags)
        if rc:
            raise_for(rc)

    def delete(self, name):
        """Delete budget ``name``.  Raises ``ratectl.NotFound``."""
        rc = _lib().ratectl_budget_delete(self._handle(), _name(name))
        if rc:
            raise_for(rc)

    def budget(self, name):
        """A ``BudgetInfo`` of budget ``name``.  Raises ``ratectl.NotFound``."""
        ci = _BudgetInfo()
        rc = _lib().ratectl_budget_get(self._handle(), _name(name), byref(ci))
        if rc:
            raise_for(rc)
        return _info_from_c(ci)

    def budgets(self):
        """Every budget's ``BudgetInfo``, in name order, from one snapshot."""
        out = []
        failure = []

        def each(p, _ctx):
            try:
                out.append(_info_from_c(p.contents))
                return 0
            except BaseException as e:  # noqa: B902 - re-raised below
                failure.append(e)
                return 1

        fn = _FOREACH_FN(each)
        rc = _lib().ratectl_budget_foreach(self._handle(), fn, None)
        if failure:
            raise failure[0]
        if rc:
            raise_for(rc)
        return out

    def cooldown(self, name, seconds):
        """Pause budget ``name`` for every process for ``seconds`` (0 ends a
        cooldown under way).  A later end replaces an earlier one only."""
        rc = _lib().ratectl_cooldown(self._handle(), _name(name), _seconds_to_ns(seconds))
        if rc:
            raise_for(rc)

    def reset(self, name=None):
        """Refill every limit of budget ``name`` (None: every budget) and end
        any cooldown.  In-flight leases are left alone."""
        rc = _lib().ratectl_budget_reset(self._handle(), None if name is None else _name(name))
        if rc:
            raise_for(rc)

    def reclaim(self):
        """Release the slots of dead holders in every budget; returns
        ``(slots, readers)`` cleared."""
        s, r = c_uint(), c_uint()
        rc = _lib().ratectl_reclaim(self._handle(), byref(s), byref(r))
        if rc:
            raise_for(rc)
        return s.value, r.value

    def sweep(self):
        """Remove every budget idle past its ``expire`` now; returns how
        many.  (Admissions do it a few at a time: nobody needs to call it.)"""
        removed = c_uint()
        rc = _lib().ratectl_sweep(self._handle(), byref(removed))
        if rc:
            raise_for(rc)
        return removed.value

    def tags(self, name):
        """Budget ``name``'s counted tags: a ``Tags`` (``top``, most
        requests first, and ``rest``).  Raises ``ratectl.NotFound``."""
        out = (_TagInfo * TAGS_TOP)()
        rest = _TagInfo()
        n = c_size_t()
        rc = _lib().ratectl_tags(self._handle(), _name(name), out, TAGS_TOP,
                                 byref(n), byref(rest))
        if rc:
            raise_for(rc)
        return Tags([_tag_from_c(out[i]) for i in range(min(n.value, TAGS_TOP))],
                    _tag_from_c(rest))

    # ---- admission ----

    def try_acquire(self, budget, tokens=0, requests=1, priority="interactive", tag=None):
        """Admit the cost now or refuse, never blocking; returns a ``Lease``.

        ``tag`` (1 to 48 bytes of ``[A-Za-z0-9._:/-]``: the route, the user
        action) is counted in the budget's ``tags()``; another raises
        ``ratectl.BadName``, a tag that is not a str ``TypeError``.

        Raises ``ratectl.Limited`` (``.wait``: seconds after which the same
        cost would pass if nobody else takes it), its subclasses
        ``ratectl.Cooldown`` (``.wait`` likewise) and ``ratectl.InFlight``
        (every slot held; ``.wait`` is None: it depends on others),
        ``ratectl.TooBig``, ``ratectl.NotFound``.
        """
        # The hot path: a few hundred nanoseconds over the C call.
        h = self._h
        if h is None:
            raise ValueError("ratectl.Ledger is closed")
        lease = _Lease()
        wait = c_int64()
        rc = _c_try(h, _names.get(budget) or _name_cached(budget),
                    _costs.get((requests, tokens, priority, tag)) or
                    _cost_cached(requests, tokens, priority, tag), lease, wait)
        if rc:
            raise_for(rc, wait=wait.value / _NS if rc in (E_LIMITED, E_COOLDOWN) else None)
        return Lease(self, lease)

    def acquire(self, budget, tokens=0, requests=1, timeout=None, priority="interactive",
                tag=None):
        """Admit the cost, waiting up to ``timeout`` seconds (None: forever);
        returns a ``Lease``.  ``tag`` as in ``try_acquire()``.

        The wait is fair: the place is kept in the budget's schedule, across
        every process, in the order of asking.  The GIL is released while
        waiting.  A signal whose Python handler raises (Ctrl-C's
        ``KeyboardInterrupt``) ends the wait and gives the place back; other
        signals resume it.  Raises ``ratectl.TimedOut`` (nothing reserved),
        ``ratectl.TooBig``, ``ratectl.NotFound``.
        """
        lib = _lib()
        h = self._handle()
        name = _name(budget)
        cost = _cost(requests, tokens, priority, tag)
        lease = _Lease()
        if timeout is None or math.isinf(timeout):
            deadline = None
        elif timeout <= 0:
            # No wait: a try whose refusal is a timeout.  (ratectl_acquire
            # with timeout_ns 0 sets its deadline at its start and so
            # refuses even a free budget.)
            wait = c_int64()
            rc = lib.ratectl_try(h, name, byref(cost), byref(lease), byref(wait))
            if rc == 0:
                return Lease(self, lease)
            if rc in (E_LIMITED, E_INFLIGHT, E_COOLDOWN):
                raise _errors.TimedOut("budget %r: not admitted before the deadline"
                                       % budget, _errors.TimedOut.code)
            raise_for(rc)
        else:
            deadline = lib.ratectl_now(h) + _seconds_to_ns(timeout)
        while True:
            left = -1 if deadline is None else max(deadline - lib.ratectl_now(h), 0)
            rc = lib.ratectl_acquire(h, name, byref(cost), byref(lease), left)
            if rc == 0:
                return Lease(self, lease)
            if rc != EINTR:
                raise_for(rc)
            # A signal: run its Python handler now (KeyboardInterrupt is
            # raised here; the library gave the place back); else wait on.
            _check_signals()

    async def aacquire(self, budget, tokens=0, requests=1, timeout=None,
                       priority="interactive", tag=None):
        """``acquire()`` for asyncio: admitted at once or a place taken in
        line (across processes), then woken by a loop timer at its time or
        by the handle's event descriptor (one reader per loop); no thread
        per waiter.  Cancelling the task gives the place back.  ``timeout``
        (seconds) raises ``ratectl.TimedOut`` and gives the place back.
        ``tag`` as in ``try_acquire()``.
        """
        loop = asyncio.get_running_loop()     # before anything is reserved
        lib = _lib()
        h = self._handle()
        res = _Reservation()
        res.version = RESERVATION_VERSION
        res.fd = -1
        cost = _cost(requests, tokens, priority, tag)
        rc = lib.ratectl_reserve(h, _name(budget), byref(cost), byref(res))
        if rc == 0:
            return Lease(self, res.lease)
        if rc != E_PENDING:
            raise_for(rc)
        with self._loops_lock:
            st = self._loops.get(loop)
            if st is None:
                st = self._loops[loop] = _LoopState(self, loop)
        st.seq += 1
        w = _Waiter(res, cost, loop.create_future(), st.seq)
        st.add(w)
        try:
            if timeout is None:
                return await w.fut
            try:
                return await asyncio.wait_for(asyncio.shield(w.fut), timeout)
            except asyncio.TimeoutError:
                if w.fut.done() and not w.fut.cancelled() and w.fut.exception() is None:
                    return w.fut.result()
                st.cancel(w, expired=True)
                raise _errors.TimedOut("deadline passed before the budget could be had",
                                       _errors.TimedOut.code) from None
        except BaseException:
            if w.fut.done() and not w.fut.cancelled() and w.fut.exception() is None:
                # Admitted as the waiter was cancelled: nobody will use it.
                lease = w.fut.result()
                if lease.held:
                    lease.release()
            else:
                st.cancel(w)
                if not w.fut.done():
                    w.fut.cancel()
            raise


def _fail(fut, err):
    if not fut.done():
        fut.set_exception(err)


def _check_signals():
    """Run pending Python signal handlers now (raises what they raise)."""
    ctypes.pythonapi.PyErr_CheckSignals()


ctypes.pythonapi.PyErr_CheckSignals.restype = c_int
ctypes.pythonapi.PyErr_CheckSignals.argtypes = []
