"""LangChain's rate-limiter contract over the host's ledger.

``RateLimiter(budget, tokens=0, ledger=None)`` can be given as
``rate_limiter=`` to any LangChain chat model: every process on the host
that uses the same budget shares one limit (LangChain's own
``InMemoryRateLimiter`` limits one process only).  It subclasses
``langchain_core.rate_limiters.BaseRateLimiter`` when langchain_core is
importable, and is a plain class with the same two methods otherwise.

LangChain asks before a request and says nothing after it, so the limiter
admits and at once releases: the budget's rate limits apply (with
``tokens`` charged per request as the estimate), an in-flight cap does
not hold across the request.  For concurrency caps and reconciliation
with the real usage, use ``ratectl.httpx.Transport`` as the model's HTTP
client instead.
"""
import threading

from ._errors import Limited
from .ledger import Ledger

try:  # pragma: no cover - not installable on the test machines
    from langchain_core.rate_limiters import BaseRateLimiter as _Base
except ImportError:
    _Base = object

__all__ = ["RateLimiter"]

_default = None
_default_lock = threading.Lock()


def _default_ledger():
    global _default
    with _default_lock:
        if _default is None:
            _default = Ledger()
        return _default


class RateLimiter(_Base):
    """A LangChain rate limiter on ratectl budget ``budget``.

    ``tokens`` is charged to the budget's token limits per request (an
    estimate; 0 charges requests only).  ``ledger`` is a ``ratectl.Ledger``,
    or None for the host's default ledger (``$RATECTL_LEDGER`` or the
    default directory), opened once per process.
    """

    def __init__(self, budget, tokens=0, ledger=None, priority="interactive"):
        if _Base is not object:
            super().__init__()
        self.budget = budget
        self.tokens = tokens
        self.priority = priority
        self._ledger = ledger

    @property
    def ledger(self):
        """The ``ratectl.Ledger`` admissions are made on."""
        if self._ledger is None:
            self._ledger = _default_ledger()
        return self._ledger

    def acquire(self, *, blocking=True):
        """Take one request's place in the budget.

        ``blocking=True`` waits for it (in line with every process on the
        host) and returns True; ``blocking=False`` returns True if the
        request may go now and False if the budget refuses.  Raises
        ``ratectl.TooBig`` when ``tokens`` can never pass and
        ``ratectl.NotFound`` when the budget does not exist.
        """
        if blocking:
            lease = self.ledger.acquire(self.budget, tokens=self.tokens,
                                        priority=self.priority)
        else:
            try:
                lease = self.ledger.try_acquire(self.budget, tokens=self.tokens,
                                                priority=self.priority)
            except Limited:
                return False
        lease.release()
        return True

    async def aacquire(self, *, blocking=True):
        """``acquire()`` for asyncio: waits on the event loop (no thread),
        keeping its place in line; cancelling gives the place back."""
        if blocking:
            lease = await self.ledger.aacquire(self.budget, tokens=self.tokens,
                                               priority=self.priority)
        else:
            try:
                lease = self.ledger.try_acquire(self.budget, tokens=self.tokens,
                                                priority=self.priority)
            except Limited:
                return False
        lease.release()
        return True

    def __repr__(self):
        return "ratectl.langchain.RateLimiter(%r, tokens=%d)" % (self.budget, self.tokens)
