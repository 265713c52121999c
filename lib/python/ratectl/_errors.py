"""Exceptions: ``ratectl.Error`` and one subclass per library code.

The classes are built from the library's own table (``RATECTL_ERRNO_MAP``
in ratectl.h), so a new code in C is a new class here with the same name.
Each exception carries ``.code`` (the negative C code) and the library's
detail message (``ratectl_errmsg()``) as its text.
"""
import errno as _errno
import os

from ._lib import libratectl

__all__ = ["Error", "check", "raise_for", "CODES"]

RATECTL_ERR_BASE = -30900
RATECTL_HTTP_ERR_BASE = -31100

# (name, offset) as in ratectl.h and ratectl_http.h; the class names are
# the codes' names in CamelCase.
_TABLE = [
    ("Limited", 0), ("InFlight", 1), ("Cooldown", 2), ("TooBig", 3),
    ("TimedOut", 4), ("NotFound", 5), ("Exists", 6), ("BadName", 7),
    ("BadConfig", 8), ("VersionError", 9), ("Corrupt", 10), ("Unsafe", 11),
    ("Forked", 12), ("BadLease", 13), ("LMDBError", 14), ("ParseError", 15),
    ("Pending", 16),
]
_HTTP_TABLE = [("RetryBudget", 0), ("StateError", 1)]


class Error(Exception):
    """A failure reported by libratectl or libratectl-http.

    ``code`` is the library's negative code; ``errno`` is set for system
    errors (``-errno`` codes); the message is the library's detail.
    """

    code = None

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.errno = -self.code if self.code is not None and -4096 < self.code < 0 else None


CODES = {}
for _name, _off in _TABLE:
    _cls = type(_name, (Error,), {"code": RATECTL_ERR_BASE - _off,
                                  "__doc__": "libratectl code %d" % (RATECTL_ERR_BASE - _off)})
    globals()[_name] = _cls
    CODES[_cls.code] = _cls
    __all__.append(_name)
for _name, _off in _HTTP_TABLE:
    _cls = type(_name, (Error,), {"code": RATECTL_HTTP_ERR_BASE - _off,
                                  "__doc__": "libratectl-http code %d" % (RATECTL_HTTP_ERR_BASE - _off)})
    globals()[_name] = _cls
    CODES[_cls.code] = _cls
    __all__.append(_name)


class Limited(globals()["Limited"]):  # noqa: F811 - adds .wait
    """Refused by a rate limit; ``wait`` is the seconds until it would pass.

    ``Cooldown`` and ``InFlight`` are refusals too and subclass it, so
    ``except ratectl.Limited`` catches every refusal of ``try_acquire``.
    """

    def __init__(self, message, code=None, wait=None):
        super().__init__(message, code)
        self.wait = wait


class InFlight(Limited):
    """Every in-flight slot of the budget is held; ``wait`` is None (it
    depends on the holders)."""

    code = RATECTL_ERR_BASE - 1


class Cooldown(Limited):
    """The budget is cooling down after the provider refused; ``wait`` is
    the seconds until it ends."""

    code = RATECTL_ERR_BASE - 2


for _cls in (Limited, InFlight, Cooldown):
    CODES[_cls.code] = _cls


def raise_for(rc, wait=None):
    """Raise the exception for code rc (< 0), with the library's message."""
    lib = libratectl()
    detail = lib.ratectl_errmsg() or b""
    text = detail.decode("utf-8", "replace") or \
        (lib.ratectl_strerror(rc) or b"").decode("utf-8", "replace")
    cls = CODES.get(rc)
    if cls is not None and issubclass(cls, Limited):
        raise cls(text, rc, wait)
    if cls is not None:
        raise cls(text, rc)
    if -4096 < rc < 0:
        if rc == -_errno.EINTR:
            raise InterruptedError(_errno.EINTR, text or os.strerror(_errno.EINTR))
        err = Error(text or os.strerror(-rc), rc)
        raise err
    raise Error(text or "ratectl error %d" % rc, rc)


def check(rc):
    """rc if it is >= 0, else raise its exception."""
    if rc < 0:
        raise_for(rc)
    return rc
