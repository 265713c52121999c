"""ratectl: one rate limit shared by every process on a host (Python binding).

``ratectl.Ledger`` opens the host's ledger (libratectl over ctypes);
``ratectl.Error`` and its subclasses, one per library code, are what its
calls raise.  ``ratectl.httpx`` and ``ratectl.langchain`` are imported on
demand.  See doc/python.md.
"""
from ._errors import *  # noqa: F401,F403
from ._errors import Error, check, raise_for  # noqa: F401
from .ledger import (BudgetInfo, Counters, Lease, Ledger, Limit,  # noqa: F401
                     TagInfo, Tags, parse_duration, parse_rate)

__version__ = "0.1.0"
