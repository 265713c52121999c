"""ratectl.langchain.RateLimiter: LangChain's rate-limiter contract
(acquire / aacquire, keyword-only blocking, True or False), checked on its
own since langchain_core is not installable here; and the subclassing of
BaseRateLimiter with a stand-in langchain_core in a child process."""
import asyncio
import json
import os
import time

import pytest

import ratectl
from ratectl.langchain import RateLimiter

from conftest import spawn


def test_non_blocking_says_false_when_the_budget_refuses(ledger):
    ledger.set("lc", requests=(2, 1, 2), tokens="1000/min")
    rl = RateLimiter("lc", tokens=100, ledger=ledger)
    assert rl.acquire(blocking=False) is True
    assert rl.acquire(blocking=False) is True
    assert rl.acquire(blocking=False) is False
    b = ledger.budget("lc")
    assert b.counters.admitted == 2 and b.counters.tokens_estimated == 200
    assert b.inflight == 0                      # nothing held after acquire


def test_blocking_waits_its_turn(ledger):
    ledger.set("lcw", requests=(10, 1, 1))       # one every 100 ms
    rl = RateLimiter("lcw", ledger=ledger)
    t = time.monotonic()
    assert all(rl.acquire() for _ in range(4))
    assert 0.25 < time.monotonic() - t < 1.0


def test_blocking_is_keyword_only(ledger):
    ledger.set("kw", requests="10/s")
    rl = RateLimiter("kw", ledger=ledger)
    with pytest.raises(TypeError):
        rl.acquire(False)
    with pytest.raises(TypeError):
        asyncio.run(rl.aacquire(False))


def test_async_contract(ledger):
    ledger.set("lca", requests=(20, 1, 1))       # one every 50 ms
    rl = RateLimiter("lca", ledger=ledger)

    async def main():
        assert await rl.aacquire(blocking=False) is True
        assert await rl.aacquire(blocking=False) is False
        t = time.monotonic()
        res = await asyncio.gather(*(rl.aacquire() for _ in range(5)))
        return res, time.monotonic() - t

    res, took = asyncio.run(asyncio.wait_for(main(), 20))
    assert res == [True] * 5 and 0.2 < took < 1.0


def test_errors_are_raised_not_swallowed(ledger):
    ledger.set("small", tokens=(100, 60))
    with pytest.raises(ratectl.TooBig):
        RateLimiter("small", tokens=1000, ledger=ledger).acquire(blocking=False)
    with pytest.raises(ratectl.NotFound):
        RateLimiter("absent", ledger=ledger).acquire()


def test_default_ledger_and_processes_share_one_budget(ledger, ledger_dir, monkeypatch):
    ledger.set("shared", requests=(10, 60, 10))
    code = ("import ratectl.langchain as lc, sys\n"
            "rl = lc.RateLimiter('shared')\n"
            "print(sum(rl.acquire(blocking=False) for _ in range(8)))\n")
    monkeypatch.setenv("RATECTL_LEDGER", ledger_dir)
    procs = [spawn(code) for _ in range(3)]
    got = 0
    for p in procs:
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        got += int(out)
    assert got == 10                  # 24 asked, the budget's 10 let through


STUB = r"""
import sys, types, abc, asyncio, os, json
# A stand-in for langchain_core.rate_limiters (not installable here): the
# abstract base as LangChain defines it.
m = types.ModuleType("langchain_core.rate_limiters")
class BaseRateLimiter(abc.ABC):
    @abc.abstractmethod
    def acquire(self, *, blocking: bool = True) -> bool: ...
    @abc.abstractmethod
    async def aacquire(self, *, blocking: bool = True) -> bool: ...
m.BaseRateLimiter = BaseRateLimiter
pkg = types.ModuleType("langchain_core"); pkg.rate_limiters = m
sys.modules["langchain_core"] = pkg; sys.modules["langchain_core.rate_limiters"] = m
import ratectl
from ratectl.langchain import RateLimiter
L = ratectl.Ledger(sys.argv[1]); L.set("stub", requests="5/s")
rl = RateLimiter("stub", ledger=L)
print(json.dumps([isinstance(rl, BaseRateLimiter), rl.acquire(),
                  asyncio.run(rl.aacquire(blocking=False))]))
"""


def test_subclasses_langchains_base_when_importable(ledger_dir):
    p = spawn(STUB, ledger_dir)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert json.loads(out) == [True, True, True]
