"""ratectl: one rate limit shared by every process on a host (Python binding)."""
from ._errors import *  # noqa: F401,F403
from ._errors import Error, check  # noqa: F401
