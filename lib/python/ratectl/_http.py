"""ctypes bindings of libratectl-http (include/ratectl_http.h).

Only what the httpx transports need: the handle, a request's life (begin,
admit or reserve / poll / cancel, the response, end, free), the local 429,
the response cache (a cached answer, a complete body, the stats, clearing)
and key ids.  Structs mirror the header field by field; every function is
given its argtypes and restype exactly as declared, so that a 64-bit
size_t or int64_t is never truncated through ctypes' default int.

One handle per config per process (``handle(config_path, ...)``), opened
lazily at first use.  The C library keeps a handle usable in a child after
fork() (it reopens the ledger there); the Python lock guarding the cache of
handles is renewed in the child, so a fork while another thread held it
cannot deadlock the child.
"""
import atexit
import ctypes
import logging
import os
import threading
import weakref

from ._lib import libratectl_http
from ._errors import CODES, Error, Limited

__all__ = ["CacheStats", "Handle", "Request", "handle", "key_id"]

log = logging.getLogger("ratectl")

# Codes (ratectl.h, ratectl_http.h).
RATECTL_ELIMITED = -30900
RATECTL_EINFLIGHT = -30901
RATECTL_ECOOLDOWN = -30902
RATECTL_ETOOBIG = -30903
RATECTL_ETIMEDOUT = -30904
RATECTL_ENOTFOUND = -30905
RATECTL_EBADNAME = -30907
RATECTL_EPENDING = -30916
RATECTL_HTTP_ERETRYBUDGET = -31100
RATECTL_HTTP_ESTATE = -31101
RATECTL_HTTP_PASS = 1
RATECTL_HTTP_CACHED = 2

RATECTL_HTTP_OPTIONS_VERSION = 1
RATECTL_HTTP_MAX_BUDGETS = 8
RATECTL_HTTP_KEY_ID_LEN = 16
RATECTL_NAME_MAX = 64

_c_p = ctypes.c_void_p
NOTICE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)


class Options(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("config_path", ctypes.c_char_p),
        ("config_text", ctypes.c_char_p),
        ("config_len", ctypes.c_size_t),
        ("ledger", ctypes.c_void_p),
        ("ledger_dir", ctypes.c_char_p),
        ("notice", NOTICE_FN),
        ("notice_ctx", ctypes.c_void_p),
    ]


class Header(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class Info(ctypes.Structure):
    _fields_ = [
        ("budget", ctypes.c_char_p),
        ("budgets", ctypes.c_char_p * RATECTL_HTTP_MAX_BUDGETS),
        ("nbudgets", ctypes.c_uint),
        ("estimate", ctypes.c_uint64),
        ("is_retry", ctypes.c_int),
        ("retry_count", ctypes.c_uint),
        ("timeout_ns", ctypes.c_int64),
        ("on_error_closed", ctypes.c_int),
        ("retries", ctypes.c_uint),
        ("retry_percent", ctypes.c_uint),
        # issue 14: the tenant's budget (NULL: none), the tag ("": none),
        # and ratectl's own request headers an adapter removes.
        ("tenant", ctypes.c_char_p),
        ("tag", ctypes.c_char_p),
        ("drop_headers", ctypes.c_char_p * 2),
        ("ndrop_headers", ctypes.c_uint),
        # issue 16: 1 when the answer may come from, and go to, the
        # host-wide response cache.
        ("cacheable", ctypes.c_int),
    ]


class Wait(ctypes.Structure):
    _fields_ = [("wait_ns", ctypes.c_int64), ("fd", ctypes.c_int), ("fifo", ctypes.c_int)]


class Local(ctypes.Structure):
    _fields_ = [
        ("status", ctypes.c_int),
        ("headers", Header * 4),
        ("nheaders", ctypes.c_size_t),
        ("body", ctypes.c_void_p),     # bytes, body_len of them
        ("body_len", ctypes.c_size_t),
    ]


class Outcome(ctypes.Structure):
    _fields_ = [
        ("status", ctypes.c_int),
        ("tokens", ctypes.c_uint64),
        ("usage_known", ctypes.c_int),
        ("cooldown_ns", ctypes.c_int64),
        ("windows", ctypes.c_uint),
        ("retry", ctypes.c_int),
        ("retry_after_ns", ctypes.c_int64),
        ("attempt", ctypes.c_uint),
    ]


class CacheStatsC(ctypes.Structure):
    _fields_ = [("budget", ctypes.c_char * (RATECTL_NAME_MAX + 1))] + [
        (n, ctypes.c_uint64) for n in (
            "entries", "bytes", "hits", "coalesced", "misses", "stores",
            "evictions", "expired", "tokens_saved")]


class CacheStats:
    """One budget's response cache (ratectl_http_cache_stats): ``budget``,
    ``entries`` and ``bytes`` held now, and the counters ``hits``,
    ``coalesced`` (answered by another request's fetch they waited for),
    ``misses`` (cacheable requests sent), ``stores``, ``evictions``,
    ``expired`` and ``tokens_saved``."""

    __slots__ = tuple(n for n, _ in CacheStatsC._fields_)

    def __init__(self, c):
        self.budget = c.budget.decode("utf-8", "replace")
        for n in self.__slots__[1:]:
            setattr(self, n, getattr(c, n))

    def __repr__(self):
        return "CacheStats(%s)" % ", ".join("%s=%r" % (n, getattr(self, n))
                                            for n in self.__slots__)


_P = ctypes.POINTER
_SIGS = {
    "ratectl_http_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "ratectl_http_open": (ctypes.c_int, [_P(_c_p), _P(Options)]),
    "ratectl_http_close": (None, [_c_p]),
    "ratectl_http_request_begin": (ctypes.c_int, [
        _P(_c_p), _c_p, ctypes.c_char_p, ctypes.c_char_p, _P(Header), ctypes.c_size_t,
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64]),
    "ratectl_http_request_info": (_P(Info), [_c_p]),
    "ratectl_http_admit": (ctypes.c_int, [_c_p, ctypes.c_int64]),
    "ratectl_http_try": (ctypes.c_int, [_c_p, _P(ctypes.c_int64)]),
    "ratectl_http_reserve": (ctypes.c_int, [_c_p, ctypes.c_int64, _P(Wait)]),
    "ratectl_http_reserve_poll": (ctypes.c_int, [_c_p, _P(Wait)]),
    "ratectl_http_reserve_cancel": (None, [_c_p]),
    "ratectl_http_events_drain": (ctypes.c_int, [_c_p]),
    "ratectl_http_request_why": (ctypes.c_char_p, [_c_p]),
    "ratectl_http_local_response": (ctypes.c_int, [_c_p, _P(Local)]),
    "ratectl_http_response_status": (ctypes.c_int, [_c_p, ctypes.c_int]),
    "ratectl_http_response_header": (ctypes.c_int, [_c_p, ctypes.c_char_p, ctypes.c_char_p]),
    "ratectl_http_response_headers": (ctypes.c_int, [_c_p, _P(Header), ctypes.c_size_t]),
    "ratectl_http_response_body": (ctypes.c_int, [_c_p, ctypes.c_char_p, ctypes.c_size_t]),
    "ratectl_http_request_end": (ctypes.c_int, [_c_p, _P(Outcome)]),
    "ratectl_http_cached_response": (ctypes.c_int, [_c_p, _P(Local)]),
    "ratectl_http_response_complete": (ctypes.c_int, [_c_p]),
    "ratectl_http_cache_stats_read": (ctypes.c_int, [
        _c_p, ctypes.c_char_p, _P(CacheStatsC), ctypes.c_size_t]),
    "ratectl_http_cache_clear": (ctypes.c_int64, [_c_p, ctypes.c_char_p, ctypes.c_int]),
    "ratectl_http_request_set_resendable": (None, [_c_p, ctypes.c_int]),
    "ratectl_http_request_free": (None, [_c_p]),
    "ratectl_http_key_id": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]),
}

_lib = None
_lib_lock = threading.Lock()


def lib():
    """libratectl-http with every function used here typed."""
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                h = libratectl_http()
                for name, (res, args) in _SIGS.items():
                    f = getattr(h, name)
                    f.restype = res
                    f.argtypes = args
                _lib = h
    return _lib


def strerror(rc):
    return (lib().ratectl_http_strerror(rc) or b"").decode("utf-8", "replace")


def error_for(rc, why=None, wait=None):
    """The exception for code rc, with the request's sentence when given."""
    text = why or strerror(rc)
    cls = CODES.get(rc)
    if cls is not None and issubclass(cls, Limited):
        return cls(text, rc, wait)
    if cls is not None:
        return cls(text, rc)
    return Error(text, rc)


def _b(s):
    if s is None:
        return None
    if isinstance(s, bytes):
        return s
    return os.fsencode(s) if isinstance(s, os.PathLike) else str(s).encode("utf-8")


def headers_array(pairs):
    """A ratectl_http_header[] of (name, value) pairs of bytes or str."""
    arr = (Header * max(len(pairs), 1))()
    for i, (n, v) in enumerate(pairs):
        arr[i].name = _b(n)
        arr[i].value = _b(v)
    return arr


def key_id(key):
    """The id of an API key (bytes or str) as a config's `key =` names it."""
    key = _b(key)
    out = ctypes.create_string_buffer(RATECTL_HTTP_KEY_ID_LEN + 1)
    rc = lib().ratectl_http_key_id(out, key, len(key))
    if rc < 0:
        raise error_for(rc)
    return out.value.decode("ascii")


def _notice(ctx, kind, msg):
    log.warning("ratectl: %s", (msg or b"").decode("utf-8", "replace"))


_NOTICE = NOTICE_FN(_notice)   # referenced for the life of the process


class Handle:
    """One ratectl_http handle: a config (path or text) and a ledger."""

    def __init__(self, config_path=None, config_text=None, ledger_dir=None):
        L = lib()
        o = Options()
        o.version = RATECTL_HTTP_OPTIONS_VERSION
        self._keep = []
        if config_path is not None:
            o.config_path = _b(config_path)
            self._keep.append(o.config_path)
        if config_text is not None:
            t = _b(config_text)
            o.config_text = t
            o.config_len = len(t)
            self._keep.append(t)
        if ledger_dir is not None:
            o.ledger_dir = _b(ledger_dir)
            self._keep.append(o.ledger_dir)
        o.notice = _NOTICE
        p = ctypes.c_void_p()
        rc = L.ratectl_http_open(ctypes.byref(p), ctypes.byref(o))
        if rc < 0:
            raise error_for(rc)
        self.ptr = p
        # asyncio waiters of this handle, per event loop (see httpx.py).
        self.waiters = weakref.WeakKeyDictionary()
        # A cacheable request began here: its hits may wait to be counted
        # (see _flush_cache_counts).
        self.cache_used = False

    def begin(self, method, url, headers, body=None, body_size=0):
        """A Request when a budget matches, else None (send it untouched)."""
        arr = headers_array(headers)
        p = ctypes.c_void_p()
        n = len(body) if body is not None else 0
        rc = lib().ratectl_http_request_begin(
            ctypes.byref(p), self.ptr, _b(method), _b(url), arr, len(headers),
            body, n, body_size or 0)
        if rc < 0:
            raise error_for(rc)
        return Request(p) if p.value else None

    def events_drain(self):
        return lib().ratectl_http_events_drain(self.ptr)

    def cache_stats(self, budget=None):
        """The response cache of every budget that has one, sorted by name
        (a list of CacheStats; [] when the ledger has no cache), or, with
        ``budget``, that budget's CacheStats or None."""
        L = lib()
        name = _b(budget)
        cap = 1 if budget is not None else 8
        while True:
            arr = (CacheStatsC * cap)()
            n = L.ratectl_http_cache_stats_read(self.ptr, name, arr, cap)
            if n < 0:
                raise error_for(n)
            if n <= cap:
                break
            cap = n   # budgets were added between the calls: read again
        out = [CacheStats(arr[i]) for i in range(n)]
        if budget is not None:
            return out[0] if out else None
        return out

    def cache_clear(self, budget=None, reset_counters=False):
        """Remove the cached answers of ``budget`` (None: of every budget)
        and, with ``reset_counters``, zero its counters; the number of
        entries removed."""
        rc = lib().ratectl_http_cache_clear(self.ptr, _b(budget), 1 if reset_counters else 0)
        if rc < 0:
            raise error_for(rc)
        return rc


class Request:
    """A matched request; free() exactly once (it is idempotent here)."""

    __slots__ = ("ptr", "_info", "_pid")

    def __init__(self, ptr):
        self.ptr = ptr
        self._info = None
        self._pid = os.getpid()

    @property
    def info(self):
        if self._info is None:
            self._info = lib().ratectl_http_request_info(self.ptr).contents
        return self._info

    def drop_headers(self):
        """ratectl's own request headers (lower-case bytes) to remove
        before the request is sent: they mean nothing to the provider and
        a tenant may name a person (ratectl_http_info.drop_headers)."""
        i = self.info
        n = min(i.ndrop_headers, len(i.drop_headers))
        return frozenset(i.drop_headers[k].lower() for k in range(n) if i.drop_headers[k])

    def owned_here(self):
        """False in a child forked after begin: the request is the parent's."""
        return self._pid == os.getpid()

    def admit(self, timeout_ns=-1):
        return lib().ratectl_http_admit(self.ptr, timeout_ns)

    def reserve(self, w, timeout_ns=-1):
        return lib().ratectl_http_reserve(self.ptr, timeout_ns, ctypes.byref(w))

    def poll(self, w):
        return lib().ratectl_http_reserve_poll(self.ptr, ctypes.byref(w))

    def cancel(self):
        if self.ptr:
            lib().ratectl_http_reserve_cancel(self.ptr)

    def why(self):
        return (lib().ratectl_http_request_why(self.ptr) or b"").decode("utf-8", "replace")

    def _answer(self, fn):
        loc = Local()
        rc = fn(self.ptr, ctypes.byref(loc))
        if rc < 0:
            raise error_for(rc)
        n = min(loc.nheaders, len(loc.headers))
        hdrs = [(loc.headers[i].name.decode("latin-1"), loc.headers[i].value.decode("latin-1"))
                for i in range(n)]
        # Copied: the bytes are req's, valid until it is freed.
        body = ctypes.string_at(loc.body, loc.body_len) if loc.body_len else b""
        return loc.status, hdrs, body

    def local_response(self):
        """(status, [(name, value)], body bytes) of the local 429."""
        return self._answer(lib().ratectl_http_local_response)

    def cached_response(self):
        """(status, [(name, value)], body bytes) of the cached answer, after
        an admission said RATECTL_HTTP_CACHED."""
        return self._answer(lib().ratectl_http_cached_response)

    def complete(self):
        """The body given with body() is the whole body: the end may store
        it in the response cache."""
        lib().ratectl_http_response_complete(self.ptr)

    def status(self, code):
        lib().ratectl_http_response_status(self.ptr, code)

    def headers(self, pairs):
        arr = headers_array(pairs)
        lib().ratectl_http_response_headers(self.ptr, arr, len(pairs))

    def body(self, chunk):
        if chunk:
            lib().ratectl_http_response_body(self.ptr, chunk, len(chunk))

    def set_resendable(self, yes):
        lib().ratectl_http_request_set_resendable(self.ptr, 1 if yes else 0)

    def end(self):
        out = Outcome()
        rc = lib().ratectl_http_request_end(self.ptr, ctypes.byref(out))
        if rc < 0:
            raise error_for(rc)
        return out

    def free(self):
        p, self.ptr = self.ptr, None
        if p:
            # A request admitted in the parent belongs to it: in a forked
            # child it is freed without being used (the header's rule),
            # which free does.
            lib().ratectl_http_request_free(p)

    def __del__(self):
        try:
            self.free()
        except Exception:
            pass


_handles = {}
_handles_lock = threading.Lock()


def _after_fork():
    global _handles_lock
    _handles_lock = threading.Lock()
    for h in _handles.values():
        h.waiters = weakref.WeakKeyDictionary()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _flush_cache_counts():
    """At exit: write the cache hits this process counted.

    libratectl-http counts hits in the process and writes them to the
    cache's counters at most every second, when the handle is closed, or
    before this process reads them.  The handles here live as long as the
    process and are never closed (a request or a waiter might still use
    one), so the last second's hits would be lost at exit: reading no
    stats (cap 0) writes them, and frees nothing.  A process ended by
    os._exit() or a signal still loses them."""
    for h in list(_handles.values()):
        if h.cache_used:
            try:
                lib().ratectl_http_cache_stats_read(h.ptr, None, None, 0)
            except Exception:
                pass


atexit.register(_flush_cache_counts)


def handle(config_path=None, config_text=None, ledger_dir=None):
    """The process-wide Handle of that config (opened at first use)."""
    key = (None if config_path is None else os.fspath(config_path), config_text, ledger_dir)
    h = _handles.get(key)
    if h is None:
        with _handles_lock:
            h = _handles.get(key)
            if h is None:
                h = Handle(config_path, config_text, ledger_dir)
                _handles[key] = h
    return h
