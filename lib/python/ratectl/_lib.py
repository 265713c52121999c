"""Finding and loading the C libraries, shared by every module of the package.

libratectl.so (the ledger) and libratectl-http.so (the HTTP policy) are
looked for, in order:

1. ``$RATECTL_LIBDIR``, when set (an explicit override, for tests and
   unusual installs);
2. the build tree, when the package runs from a checkout
   (``lib/python/ratectl`` -> ``build/``, or ``$B`` when set);
3. the directory ``make install`` put them in (``_config.LIBDIR``, written
   by ``make install`` next to the installed package);
4. the system's library path (``libratectl.so.0``).

Each library is loaded once per process (ctypes keeps the handle), with
``use_errno`` so that system errors can be read back.
"""
import ctypes
import ctypes.util
import os
import threading

__all__ = ["libratectl", "libratectl_http", "library_path"]

_SONAMES = {"ratectl": "libratectl.so.0", "ratectl-http": "libratectl-http.so.0"}
_lock = threading.Lock()
_loaded = {}


def _candidates(name):
    soname = _SONAMES[name]
    libdir = os.environ.get("RATECTL_LIBDIR")
    if libdir:
        yield os.path.join(libdir, soname)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.exists(os.path.join(top, "include", "ratectl.h")):
        build = os.environ.get("B") or "build"
        yield os.path.join(top, build, soname)
    try:
        from ._config import LIBDIR
        yield os.path.join(LIBDIR, soname)
    except ImportError:
        pass
    found = ctypes.util.find_library(name)
    yield found or soname


def library_path(name="ratectl"):
    """The file the library `name` ("ratectl" or "ratectl-http") is loaded from."""
    return _load(name)._name


def _load(name):
    with _lock:
        lib = _loaded.get(name)
        if lib is not None:
            return lib
        errors = []
        for path in _candidates(name):
            if os.path.sep in path and not os.path.exists(path):
                errors.append("%s: no such file" % path)
                continue
            try:
                # RTLD_GLOBAL: libratectl-http needs libratectl's symbols
                # from the same copy this package uses.
                lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL, use_errno=True)
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise ImportError("ratectl: cannot load %s (%s); build it with `make` "
                              "or install it with `make install`, or set "
                              "RATECTL_LIBDIR" % (_SONAMES[name], "; ".join(errors)))
        _loaded[name] = lib
        return lib


def libratectl():
    """The ctypes handle of libratectl, with the error functions typed."""
    lib = _load("ratectl")
    lib.ratectl_strerror.restype = ctypes.c_char_p
    lib.ratectl_strerror.argtypes = [ctypes.c_int]
    lib.ratectl_errmsg.restype = ctypes.c_char_p
    lib.ratectl_errmsg.argtypes = []
    return lib


def libratectl_http():
    """The ctypes handle of libratectl-http (libratectl loaded first)."""
    libratectl()
    return _load("ratectl-http")
