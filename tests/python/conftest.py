"""Shared fixtures for the Python tests: a private ledger per test, every
test bounded in time (SIGALRM; pytest-timeout is not installed here), and
helpers to run other Python processes against the same ledger."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
PYDIR = os.path.join(TOP, "lib", "python")
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)

import ratectl  # noqa: E402

TEST_SECONDS = int(os.environ.get("RATECTL_PYTEST_SECONDS", "60"))


class TestTimeout(Exception):
    """A test ran past its bound."""


@pytest.fixture(autouse=True)
def _bounded():
    """Fail a test that runs past TEST_SECONDS (a blocking ratectl call is
    interrupted: SIGALRM's handler raises in the main thread)."""
    def on_alarm(signum, frame):
        raise TestTimeout("test ran past %d s" % TEST_SECONDS)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _tmpbase():
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@pytest.fixture
def ledger_dir():
    """A fresh ledger directory (tmpfs when there is one), removed after."""
    d = tempfile.mkdtemp(prefix="ratectl-py-", dir=_tmpbase())
    try:
        yield os.path.join(d, "ledger")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ledger(ledger_dir):
    """A Ledger on a fresh directory."""
    L = ratectl.Ledger(ledger_dir)
    try:
        yield L
    finally:
        L.close()


def child_env(**extra):
    """The environment for a child Python: this package on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def spawn(code, *args, **kw):
    """Start `code` in a child /usr/bin/python3 (sys.executable) with
    stdout and stderr piped."""
    return subprocess.Popen([sys.executable, "-c", code] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(), text=True, **kw)
