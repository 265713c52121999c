"""The host-wide response cache (issue 16) through ratectl.httpx.

A budget with `cache = 10m` answers a repeated deterministic request
(temperature 0, not streamed; or any POST to .../embeddings) from the
cache: the provider sees it once, the program gets the same body with
X-Ratectl-Cache: hit and Age.  The referee is the provider's count: the
fake provider's GET /stats (tools/fakeprov.c, real HTTP), or an
httpx.MockTransport that counts its calls (precise bodies: chunked, gzip,
broken).  Several processes asking the same prompts at once are each
answered, the provider seeing every prompt once; concurrent asyncio
tasks on one entry wait for the one fetch (coalesced).  A body closed
before its end, broken by an error, or not 2xx is never stored.

The fake provider puts a sequence number in every answer's "id", so the
same id in two responses means one answer given twice.
"""
import asyncio
import gzip
import json
import os
import subprocess
import threading
import time

import httpx
import pytest

import ratectl
import ratectl.httpx
from ratectl import _http

import helpers
from helpers import FakeProvider, check_layouts, show, write_config

CHAT = "/v1/chat/completions"
MOCK = "https://api.example.test"
AUTH = {"content-type": "application/json", "authorization": "Bearer sk-test"}


@pytest.fixture
def tmp(tmp_path):
    return str(tmp_path)


def ask(prompt="hello", temperature=0, stream=False, max_tokens=50, **extra):
    """A chat request body; temperature 0 and no stream: deterministic."""
    b = {"model": "gpt-4o-mini", "max_tokens": max_tokens,
         "messages": [{"role": "user", "content": prompt}]}
    if temperature is not None:
        b["temperature"] = temperature
    if stream:
        b["stream"] = True
    b.update(extra)
    return json.dumps(b).encode()


def fake_conf(tmp, fp, *lines):
    return write_config(os.path.join(tmp, "c.conf"), fp.port, "fake",
                        "requests = 6000/min", "cache = 10m", *lines)


def mock_conf(tmp, *lines):
    path = os.path.join(tmp, "m.conf")
    with open(path, "w") as f:
        f.write("[mock]\nmatch = api.example.test\nrequests = 6000/min\ncache = 10m\n")
        f.write("".join(line + "\n" for line in lines))
    return path


def transport(tmp, conf, cls=ratectl.httpx.Transport, **kw):
    return cls(conf, ledger_dir=os.path.join(tmp, "ledger"), **kw)


class Provider:
    """An in-memory provider: counts its calls; each answer is numbered.
    ``chunks`` splits the body in that many pieces (a stream the program
    may close early); ``fail_at`` raises while giving that piece;
    ``status`` and ``gzip`` shape the answer; ``aio``: the pieces come
    from an async generator (for AsyncTransport)."""

    def __init__(self, chunks=1, status=200, gzip=False, fail_at=None, aio=False):
        self.calls = 0
        self.chunks, self.status, self.gzip, self.fail_at = chunks, status, gzip, fail_at
        self.aio = aio
        self.lock = threading.Lock()

    def body(self, n):
        return json.dumps({"id": "answer-%d" % n, "pad": "x" * 4000,
                           "usage": {"prompt_tokens": 10, "completion_tokens": 20,
                                     "total_tokens": 30}}).encode()

    def __call__(self, request):
        with self.lock:
            self.calls += 1
            n = self.calls
        data = self.body(n)
        headers = {"content-type": "application/json"}
        if self.gzip:
            data = gzip.compress(data)
            headers["content-encoding"] = "gzip"
        if self.chunks == 1 and self.fail_at is None:
            return httpx.Response(self.status, headers=headers, content=data)
        step = -(-len(data) // self.chunks)
        pieces = [data[i:i + step] for i in range(0, len(data), step)]
        fail_at = self.fail_at

        def gen():
            for i, p in enumerate(pieces):
                if i == fail_at:
                    raise httpx.ReadError("connection reset", request=request)
                yield p

        async def agen():
            for p in gen():
                yield p
        return httpx.Response(self.status, headers=headers,
                              content=agen() if self.aio else gen())


def stats(t, budget):
    s = t.cache_stats(budget)
    assert s is not None, "no cache for %s" % budget
    return s


# ---- the mirrors of the new C structs and codes ------------------------------

def test_cache_layouts_match_the_header():
    """ratectl_http_info grew `cacheable` (read through the library's
    pointer: a mirror short of it reads past nothing, but a wrong offset
    reads garbage); ratectl_http_cache_stats is filled in arrays, so its
    size must be the C size."""
    checked = check_layouts("ratectl_http.h",
                            {"ratectl_http_info": _http.Info,
                             "ratectl_http_cache_stats": _http.CacheStatsC},
                            {"RATECTL_HTTP_CACHED": _http.RATECTL_HTTP_CACHED,
                             "RATECTL_NAME_MAX": _http.RATECTL_NAME_MAX,
                             "RATECTL_EPENDING": _http.RATECTL_EPENDING})
    # The checker compares the fields a mirror has; `cacheable` fills what
    # was padding after ndrop_headers, so a mirror without it would keep
    # the C size: its presence is asserted here.
    assert "cacheable" in dict(_http.Info._fields_)
    if checked is None:
        pytest.skip("no C compiler to compare the struct layouts with")
    assert checked == 3 + 1 + len(_http.Info._fields_) + 1 + len(_http.CacheStatsC._fields_)


def test_info_says_which_requests_are_cacheable(tmp):
    h = _http.Handle(mock_conf(tmp), ledger_dir=os.path.join(tmp, "ledger"))
    hdrs = list(AUTH.items())

    def cacheable(path, body):
        req = h.begin("POST", MOCK + path, hdrs, body)
        try:
            return req.info.cacheable
        finally:
            req.free()
    assert cacheable(CHAT, ask(temperature=0)) == 1
    assert cacheable(CHAT, ask(temperature=0.7)) == 0
    assert cacheable(CHAT, ask(temperature=None)) == 0
    assert cacheable(CHAT, ask(temperature=0, stream=True)) == 0
    assert cacheable("/v1/embeddings", b'{"model":"e","input":"hi"}') == 1


# ---- Transport against the fake provider ------------------------------------

def test_repeat_is_answered_from_the_cache(tmp):
    with FakeProvider(tmp) as fp:
        t = transport(tmp, fake_conf(tmp, fp))
        with httpx.Client(transport=t, timeout=30) as c:
            r1 = c.post(fp.url + CHAT, content=ask(), headers=AUTH)
            # the same request with its keys in another order and blanks:
            # the key is the canonical JSON
            other = json.dumps(json.loads(ask()), sort_keys=True, indent=2).encode()
            r2 = c.post(fp.url + CHAT, content=other, headers=AUTH)
            r3 = c.post(fp.url + CHAT, content=ask(), headers=AUTH)
        assert fp.stats()["requests"] == 1
        assert r1.status_code == r2.status_code == r3.status_code == 200
        assert "x-ratectl-cache" not in r1.headers
        for r in (r2, r3):
            assert r.headers["x-ratectl-cache"] == "hit"
            assert 0 <= int(r.headers["age"]) <= 5
            assert r.headers["content-type"].startswith("application/json")
            assert r.content == r1.content
        assert r3.json()["id"] == r1.json()["id"]
        s = stats(t, "fake")
        used = r1.json()["usage"]["total_tokens"]
        assert (s.misses, s.hits, s.coalesced, s.stores, s.entries) == (1, 2, 0, 1, 1)
        assert s.tokens_saved == 2 * used
        assert s.bytes >= len(r1.content)
        b = show(os.path.join(tmp, "ledger"), "fake")
        assert b["counters"]["admitted"] == 1      # a hit is not admitted
        assert b["inflight"] == 0


def test_nondeterministic_requests_are_never_cached(tmp):
    with FakeProvider(tmp, "--stream-bytes", 2000) as fp:
        t = transport(tmp, fake_conf(tmp, fp))
        bodies = [ask(temperature=0.7), ask(temperature=None),
                  ask(temperature=0, stream=True)]
        with httpx.Client(transport=t, timeout=30) as c:
            rs = [c.post(fp.url + CHAT, content=b, headers=AUTH) for b in bodies for _ in range(2)]
        assert [r.status_code for r in rs] == [200] * 6
        assert not any("x-ratectl-cache" in r.headers for r in rs)
        assert fp.stats()["requests"] == 6
        s = t.cache_stats("fake")
        assert s is None or (s.hits, s.misses, s.entries) == (0, 0, 0)


def test_two_api_keys_never_share_an_answer(tmp):
    with FakeProvider(tmp) as fp:
        t = transport(tmp, fake_conf(tmp, fp))
        a = dict(AUTH, authorization="Bearer sk-alice")
        b = dict(AUTH, authorization="Bearer sk-bob")
        with httpx.Client(transport=t, timeout=30) as c:
            ra = c.post(fp.url + CHAT, content=ask(), headers=a)
            rb = c.post(fp.url + CHAT, content=ask(), headers=b)
            ra2 = c.post(fp.url + CHAT, content=ask(), headers=a)
            rb2 = c.post(fp.url + CHAT, content=ask(), headers=b)
        assert fp.stats()["requests"] == 2
        assert "x-ratectl-cache" not in rb.headers
        assert ra.json()["id"] != rb.json()["id"]
        assert ra2.headers["x-ratectl-cache"] == rb2.headers["x-ratectl-cache"] == "hit"
        assert ra2.json()["id"] == ra.json()["id"]
        assert rb2.json()["id"] == rb.json()["id"]
        assert stats(t, "fake").entries == 2


CHILD = r'''
import json, sys, httpx, ratectl.httpx
conf, ledger, url, order = sys.argv[1:5]
t = ratectl.httpx.Transport(conf, ledger_dir=ledger)
print("ready", flush=True)
sys.stdin.readline()
out = {}
with httpx.Client(transport=t, timeout=30) as c:
    for i in order.split(","):
        body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 50, "temperature": 0,
                           "messages": [{"role": "user", "content": "prompt " + i}]})
        r = c.post(url, content=body, headers={"authorization": "Bearer sk-test"})
        out[i] = [r.status_code, r.json()["id"], r.headers.get("x-ratectl-cache")]
print(json.dumps(out), flush=True)
'''


def test_processes_asking_the_same_prompts_are_each_sent_once(tmp):
    # 4 processes x the same 5 prompts, started together, each in its own
    # order; the provider takes 200 ms an answer, so most askers come
    # while another process is fetching (coalesced) and the rest after
    # (hit).  The provider must see each prompt exactly once.
    nproc, prompts = 4, 5
    with FakeProvider(tmp, "--latency", "200ms") as fp:
        conf = fake_conf(tmp, fp)
        ledger = os.path.join(tmp, "ledger")
        orders = [",".join(str((k + j) % prompts) for j in range(prompts)) for k in range(nproc)]
        orders[1] = orders[0]          # two processes in step: coalescing
        procs = [subprocess.Popen([helpers.PYTHON, "-c", CHILD, conf, ledger, fp.url + CHAT, o],
                                  env=helpers.env_with(), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for o in orders]
        try:
            for p in procs:
                assert p.stdout.readline().strip() == "ready", p.stderr.read()
            t0 = time.monotonic()
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            results = []
            for p in procs:
                out, err = p.communicate(timeout=30)
                assert p.returncode == 0, err
                results.append(json.loads(out))
            elapsed = time.monotonic() - t0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert fp.stats()["requests"] == prompts
        for i in map(str, range(prompts)):
            answers = [r[i] for r in results]
            assert all(a[0] == 200 for a in answers)
            assert len({a[1] for a in answers}) == 1, answers      # one answer each
            assert [a[2] for a in answers].count(None) == 1, answers  # one fetched it
        t = transport(tmp, conf)
        s = stats(t, "fake")
        assert s.misses == prompts and s.stores == prompts
        assert s.hits + s.coalesced == (nproc - 1) * prompts
        assert s.coalesced >= 1
        assert show(ledger, "fake")["counters"]["admitted"] == prompts
        # 5 prompts fetched at 200 ms, at most 2 at a time at first: a
        # waiter woken late (a lost wake-up, polling) would take longer
        assert elapsed < 5, elapsed


def test_threads_waiting_for_one_fetch_are_coalesced(tmp):
    # Transport's admission blocks in C while another thread fetches the
    # entry, then returns the answer it stored.
    with FakeProvider(tmp, "--latency", "300ms") as fp:
        t = transport(tmp, fake_conf(tmp, fp))
        rs = [None] * 4

        def one(i):
            with httpx.Client(transport=t, timeout=30) as c:
                rs[i] = c.post(fp.url + CHAT, content=ask("same"), headers=AUTH)
        ths = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        t0 = time.monotonic()
        for th in ths:
            th.start()
        for th in ths:
            th.join(20)
        elapsed = time.monotonic() - t0
        assert all(r is not None and r.status_code == 200 for r in rs)
        assert fp.stats()["requests"] == 1
        assert len({r.json()["id"] for r in rs}) == 1
        kinds = sorted(str(r.headers.get("x-ratectl-cache")) for r in rs)
        assert kinds.count("None") == 1
        s = stats(t, "fake")
        assert (s.misses, s.hits + s.coalesced) == (1, 3)
        assert elapsed < 2.5, elapsed


# ---- AsyncTransport ------------------------------------------------------------

def test_async_hits_and_concurrent_tasks_coalesce(tmp):
    with FakeProvider(tmp, "--latency", "300ms") as fp:
        t = transport(tmp, fake_conf(tmp, fp), ratectl.httpx.AsyncTransport)

        async def main():
            async with httpx.AsyncClient(transport=t, timeout=30) as c:
                async def one():
                    return await c.post(fp.url + CHAT, content=ask("together"), headers=AUTH)
                t0 = time.monotonic()
                rs = await asyncio.gather(*[one() for _ in range(8)])
                waited = time.monotonic() - t0
                again = await one()
                return rs, waited, again
        rs, waited, again = asyncio.run(asyncio.wait_for(main(), 20))
        assert fp.stats()["requests"] == 1
        assert [r.status_code for r in rs] == [200] * 8
        assert len({r.content for r in rs + [again]}) == 1
        kinds = [r.headers.get("x-ratectl-cache") for r in rs]
        assert kinds.count(None) == 1
        assert kinds.count("coalesced") == 7, kinds
        assert again.headers["x-ratectl-cache"] == "hit"
        s = stats(t, "fake")
        assert (s.misses, s.coalesced, s.hits, s.stores) == (1, 7, 1, 1)
        # the waiters are woken when the answer is stored, not seconds on
        assert waited < 1.5, waited
        assert show(os.path.join(tmp, "ledger"), "fake")["inflight"] == 0


def test_async_closed_early_is_not_stored(tmp):
    p = Provider(chunks=8, aio=True)
    t = transport(tmp, mock_conf(tmp), ratectl.httpx.AsyncTransport,
                  transport=httpx.MockTransport(p))

    async def main():
        async with httpx.AsyncClient(transport=t) as c:
            async with c.stream("POST", MOCK + CHAT, content=ask(), headers=AUTH) as r:
                async for _ in r.aiter_raw():
                    break                                  # closed before its end
            r2 = await c.post(MOCK + CHAT, content=ask(), headers=AUTH)   # read whole
            r3 = await c.post(MOCK + CHAT, content=ask(), headers=AUTH)
            return r2, r3
    r2, r3 = asyncio.run(asyncio.wait_for(main(), 20))
    assert p.calls == 2
    assert "x-ratectl-cache" not in r2.headers
    assert r3.headers["x-ratectl-cache"] == "hit" and r3.content == r2.content


class SlowProvider:
    """An async in-memory provider taking ``delay`` seconds an answer; the
    first ``fail`` answers are 500s."""

    def __init__(self, delay, fail=0):
        self.calls = 0
        self.delay, self.fail = delay, fail

    async def __call__(self, request):
        self.calls += 1
        n = self.calls
        await asyncio.sleep(self.delay)
        if n <= self.fail:
            return httpx.Response(500, json={"error": {"message": "oops"}})
        return httpx.Response(200, json={"id": "answer-%d" % n,
                                          "usage": {"total_tokens": 30}})


def async_mock(tmp, provider, *lines):
    return transport(tmp, mock_conf(tmp, *lines), ratectl.httpx.AsyncTransport,
                     transport=httpx.MockTransport(provider))


def test_async_failed_fetch_hands_over_to_a_waiter(tmp):
    # The fetch ends with a 500 (nothing to store): one waiting task is
    # admitted and sends in its place, the other gets that answer.
    p = SlowProvider(0.2, fail=1)
    t = async_mock(tmp, p)

    async def main():
        async with httpx.AsyncClient(transport=t) as c:
            async def one():
                return await c.post(MOCK + CHAT, content=ask(), headers=AUTH)
            return await asyncio.gather(*[one() for _ in range(3)])
    rs = asyncio.run(asyncio.wait_for(main(), 20))
    assert p.calls == 2
    assert sorted(r.status_code for r in rs) == [200, 200, 500]
    ok = [r for r in rs if r.status_code == 200]
    assert ok[0].json()["id"] == ok[1].json()["id"] == "answer-2"
    assert sorted(str(r.headers.get("x-ratectl-cache")) for r in ok) == ["None", "coalesced"]
    s = stats(t, "mock")
    assert (s.misses, s.coalesced, s.stores) == (2, 1, 1)
    assert show(os.path.join(tmp, "ledger"), "mock")["inflight"] == 0


def test_async_cancelled_waiter_leaves_the_fetch_alone(tmp):
    p = SlowProvider(0.3)
    t = async_mock(tmp, p)

    async def main():
        async with httpx.AsyncClient(transport=t) as c:
            def one():
                return asyncio.ensure_future(c.post(MOCK + CHAT, content=ask(), headers=AUTH))
            fetch = one()
            await asyncio.sleep(0.05)
            waiter, other = one(), one()
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            return await fetch, await other
    r1, r2 = asyncio.run(asyncio.wait_for(main(), 20))
    assert p.calls == 1
    assert r2.headers["x-ratectl-cache"] == "coalesced" and r2.content == r1.content
    s = stats(t, "mock")
    assert (s.misses, s.coalesced, s.stores) == (1, 1, 1)


def test_async_coalesced_wait_ends_at_the_budget_timeout(tmp):
    # Waiting for another's fetch is part of the admission: past the
    # budget's timeout the waiter raises TimedOut and nothing is sent.
    p = SlowProvider(1.0)
    t = async_mock(tmp, p, "timeout = 200ms")

    async def main():
        async with httpx.AsyncClient(transport=t) as c:
            fetch = asyncio.ensure_future(c.post(MOCK + CHAT, content=ask(), headers=AUTH))
            await asyncio.sleep(0.05)
            t0 = time.monotonic()
            with pytest.raises(ratectl.TimedOut) as e:
                await c.post(MOCK + CHAT, content=ask(), headers=AUTH)
            waited = time.monotonic() - t0
            return (await fetch).status_code, waited, str(e.value)
    code, waited, why = asyncio.run(asyncio.wait_for(main(), 20))
    assert code == 200 and p.calls == 1
    assert 0.15 < waited < 0.6, waited
    assert "mock" in why


# ---- what is never stored (an in-memory provider) ---------------------------
# ---- what is never stored (an in-memory provider) ---------------------------

def test_response_closed_before_its_end_is_not_stored(tmp):
    p = Provider(chunks=8)
    t = transport(tmp, mock_conf(tmp), transport=httpx.MockTransport(p))
    with httpx.Client(transport=t) as c:
        with c.stream("POST", MOCK + CHAT, content=ask(), headers=AUTH) as r:
            next(r.iter_raw())                             # one piece of 8, then closed
        assert stats(t, "mock").entries == 0
        r2 = c.post(MOCK + CHAT, content=ask(), headers=AUTH)      # read whole: stored
        r3 = c.post(MOCK + CHAT, content=ask(), headers=AUTH)
    assert p.calls == 2
    assert r2.json()["id"] == "answer-2" and "x-ratectl-cache" not in r2.headers
    assert r3.headers["x-ratectl-cache"] == "hit" and r3.content == r2.content
    s = stats(t, "mock")
    assert (s.misses, s.stores, s.hits, s.entries) == (2, 1, 1, 1)
    assert show(os.path.join(tmp, "ledger"), "mock")["inflight"] == 0


def test_body_broken_by_an_error_is_not_stored(tmp):
    p = Provider(chunks=4, fail_at=3)
    t = transport(tmp, mock_conf(tmp), transport=httpx.MockTransport(p))
    with httpx.Client(transport=t) as c:
        for _ in range(2):
            with pytest.raises(httpx.ReadError):
                c.post(MOCK + CHAT, content=ask(), headers=AUTH)
    assert p.calls == 2
    assert stats(t, "mock").entries == 0


def test_non_2xx_is_not_stored(tmp):
    p = Provider(status=500)
    t = transport(tmp, mock_conf(tmp), transport=httpx.MockTransport(p))
    with httpx.Client(transport=t) as c:
        codes = [c.post(MOCK + CHAT, content=ask(), headers=AUTH).status_code for _ in range(2)]
    assert codes == [500, 500] and p.calls == 2
    assert stats(t, "mock").entries == 0


def test_gzip_answer_is_stored_decoded(tmp):
    # The transport meters (and so stores) the decoded body; a hit has no
    # Content-Encoding, and the program reads the same JSON.
    p = Provider(gzip=True)
    t = transport(tmp, mock_conf(tmp), transport=httpx.MockTransport(p))
    with httpx.Client(transport=t) as c:
        r1 = c.post(MOCK + CHAT, content=ask(), headers=AUTH)
        r2 = c.post(MOCK + CHAT, content=ask(), headers=AUTH)
    assert p.calls == 1
    assert r2.headers["x-ratectl-cache"] == "hit"
    assert "content-encoding" not in r2.headers
    assert r2.json() == r1.json()


def test_embeddings_are_cached_whatever_the_body(tmp):
    p = Provider()
    t = transport(tmp, mock_conf(tmp), transport=httpx.MockTransport(p))
    body = b'{"model":"text-embedding-3-small","input":"hello"}'
    with httpx.Client(transport=t) as c:
        rs = [c.post(MOCK + "/v1/embeddings", content=body, headers=AUTH) for _ in range(3)]
    assert p.calls == 1
    assert [r.headers.get("x-ratectl-cache") for r in rs] == [None, "hit", "hit"]


# ---- cache_clear ---------------------------------------------------------------

def test_cache_clear_empties_and_resets(tmp):
    p = Provider()
    t = transport(tmp, mock_conf(tmp), transport=httpx.MockTransport(p))
    with httpx.Client(transport=t) as c:
        c.post(MOCK + CHAT, content=ask("a"), headers=AUTH)
        c.post(MOCK + CHAT, content=ask("b"), headers=AUTH)
        assert c.post(MOCK + CHAT, content=ask("a"), headers=AUTH).headers["x-ratectl-cache"] == "hit"
        assert [s.budget for s in t.cache_stats()] == ["mock"]
        assert stats(t, "mock").entries == 2
        assert t.cache_clear("mock") == 2
        s = stats(t, "mock")
        assert (s.entries, s.hits, s.misses) == (0, 1, 2)      # counters kept
        r = c.post(MOCK + CHAT, content=ask("a"), headers=AUTH)
        assert "x-ratectl-cache" not in r.headers and p.calls == 3
        assert t.cache_clear(reset_counters=True) == 1
        s = stats(t, "mock")
        assert (s.entries, s.hits, s.misses, s.stores) == (0, 0, 0, 0)


def test_cache_stats_of_many_budgets(tmp):
    # More budgets than the first read's room: all are read, by name.
    names = ["m%02d" % i for i in range(11)]
    path = os.path.join(tmp, "many.conf")
    with open(path, "w") as f:
        for n in names:
            f.write("[%s]\nmatch = %s.example.test\nrequests = 6000/min\ncache = 10m\n" % (n, n))
    p = Provider()
    t = transport(tmp, path, transport=httpx.MockTransport(p))
    with httpx.Client(transport=t) as c:
        for n in reversed(names):
            assert c.post("https://%s.example.test%s" % (n, CHAT), content=ask(),
                          headers=AUTH).status_code == 200
    got = t.cache_stats()
    assert [s.budget for s in got] == names
    assert all((s.entries, s.misses, s.stores) == (1, 1, 1) for s in got)
    assert t.cache_stats("m03").budget == "m03"
    assert t.cache_stats("nope") is None
