"""A STAND-IN for the openai SDK, for tests only.

The real SDK (openai-python) cannot be installed on these machines (no
PyPI).  tests/python/test_examples.py puts this directory on PYTHONPATH
only when `import openai` fails, so that the README's examples run
unchanged.  It does the part of the SDK that matters to ratectl, and
nothing more:

- ``OpenAI(api_key=None, base_url=None, http_client=None, max_retries=2)``,
  the key from $OPENAI_API_KEY, the base URL from $OPENAI_BASE_URL
  (default https://api.openai.com/v1);
- ``client.chat.completions.create(**params)`` POSTs the params as JSON
  to {base_url}/chat/completions THROUGH ``http_client`` (so through
  ratectl's transport), with ``Authorization: Bearer KEY`` and
  ``x-stainless-retry-count`` as the SDK sends them;
- like the SDK, it retries 408/409/429/5xx up to max_retries times,
  honouring ``x-should-retry`` and ``retry-after`` (at most 60 s), and
  raises ``RateLimitError`` / ``APIStatusError`` at the end;
- the answer's JSON is returned with attribute access
  (``r.choices[0].message.content``, ``r.usage.total_tokens``).
"""
import json
import os
import time
from types import SimpleNamespace

import httpx

STUB = True


class APIStatusError(Exception):
    def __init__(self, response):
        super().__init__("HTTP %d: %s" % (response.status_code, response.text[:200]))
        self.status_code = response.status_code
        self.response = response


class RateLimitError(APIStatusError):
    pass


def _obj(v):
    if isinstance(v, dict):
        return SimpleNamespace(**{k: _obj(x) for k, x in v.items()})
    if isinstance(v, list):
        return [_obj(x) for x in v]
    return v


class _Completions:
    def __init__(self, client):
        self._c = client

    def create(self, **params):
        return _obj(self._c._post("/chat/completions", params))


class OpenAI:
    def __init__(self, api_key=None, base_url=None, http_client=None, max_retries=2):
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY", "")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL")
                         or "https://api.openai.com/v1").rstrip("/")
        self._http = http_client or httpx.Client(timeout=600)
        self.max_retries = max_retries
        self.chat = SimpleNamespace(completions=_Completions(self))

    def _post(self, path, body):
        data = json.dumps(body).encode()
        for attempt in range(self.max_retries + 1):
            r = self._http.post(self.base_url + path, content=data, headers={
                "authorization": "Bearer " + self.api_key,
                "content-type": "application/json",
                "x-stainless-retry-count": str(attempt)})
            if r.status_code < 400:
                return r.json()
            should = r.headers.get("x-should-retry")
            retryable = should == "true" or (should != "false" and (
                r.status_code in (408, 409, 429) or r.status_code >= 500))
            if not retryable or attempt == self.max_retries:
                break
            try:
                delay = float(r.headers.get("retry-after", ""))
            except ValueError:
                delay = 0.5 * 2 ** attempt
            time.sleep(min(max(delay, 0), 60))
        raise (RateLimitError if r.status_code == 429 else APIStatusError)(r)
