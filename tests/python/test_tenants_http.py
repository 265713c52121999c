"""Tenants and tags through ratectl.httpx (issue 14): the tenant's budget
is charged with the key's, the tag counted, and ratectl's own request
headers (X-Ratectl-Tenant, X-Ratectl-Tag) never reach the provider; a
tenant header that makes no budget name is refused before anything is
sent, whatever its length.  The provider is an httpx.MockTransport that
records what it is sent; the ledger is read back with `ratectl show`.
Also: the ctypes mirrors of ratectl_http.h against the compiler's layout.
"""
import asyncio
import subprocess

import httpx
import pytest

import ratectl
import ratectl.httpx
from ratectl import _http

from helpers import chat_body, check_layouts, show

URL = "https://api.example.test/v1/chat/completions"


# ---- the C structs of ratectl_http.h as the compiler lays them out --------

PY_STRUCTS = {
    "ratectl_http_options": _http.Options, "ratectl_http_header": _http.Header,
    "ratectl_http_info": _http.Info, "ratectl_http_wait": _http.Wait,
    "ratectl_http_local": _http.Local, "ratectl_http_outcome": _http.Outcome,
}
PY_CONSTANTS = {
    "RATECTL_HTTP_OPTIONS_VERSION": _http.RATECTL_HTTP_OPTIONS_VERSION,
    "RATECTL_HTTP_MAX_BUDGETS": _http.RATECTL_HTTP_MAX_BUDGETS,
    "RATECTL_HTTP_KEY_ID_LEN": _http.RATECTL_HTTP_KEY_ID_LEN,
    "RATECTL_HTTP_PASS": _http.RATECTL_HTTP_PASS,
    "RATECTL_HTTP_ERETRYBUDGET": _http.RATECTL_HTTP_ERETRYBUDGET,
    "RATECTL_HTTP_ESTATE": _http.RATECTL_HTTP_ESTATE,
    "RATECTL_ELIMITED": _http.RATECTL_ELIMITED,
    "RATECTL_EINFLIGHT": _http.RATECTL_EINFLIGHT,
    "RATECTL_ECOOLDOWN": _http.RATECTL_ECOOLDOWN,
    "RATECTL_ETOOBIG": _http.RATECTL_ETOOBIG,
    "RATECTL_ETIMEDOUT": _http.RATECTL_ETIMEDOUT,
    "RATECTL_ENOTFOUND": _http.RATECTL_ENOTFOUND,
    "RATECTL_EBADNAME": _http.RATECTL_EBADNAME,
    "RATECTL_EPENDING": _http.RATECTL_EPENDING,
}


def test_http_struct_layouts_match_the_header():
    """Every mirror of _http is its C struct's size (Info read through the
    library's pointer included: a mirror short of the new fields cannot
    read drop_headers), every field at the C offset with the C size,
    every copied code the header's."""
    checked = check_layouts("ratectl_http.h", PY_STRUCTS, PY_CONSTANTS)
    if checked is None:
        pytest.skip("no C compiler to compare the struct layouts with")
    assert checked >= 60


# ---- the transports ---------------------------------------------------------

CONF = """[mock]
match = api.example.test
requests = 1000/min
tenant = header X-Ratectl-Tenant
tenant_template = {template}
tag = header X-Ratectl-Tag

[{template}]
requests = 500/min
"""


class Provider:
    """An in-memory provider recording the headers of each request."""

    def __init__(self):
        self.seen = []

    def __call__(self, request):
        self.seen.append(list(request.headers.raw))
        request.read()
        return httpx.Response(200, json={"usage": {"total_tokens": 7}})

    def names(self, i):
        return [n.lower() for n, _ in self.seen[i]]


def make_transport(tmp_path, template="t-*", sync=True):
    conf = tmp_path / "c.conf"
    conf.write_text(CONF.format(template=template))
    prov = Provider()
    cls = ratectl.httpx.Transport if sync else ratectl.httpx.AsyncTransport
    t = cls(str(conf), transport=httpx.MockTransport(prov),
            ledger_dir=str(tmp_path / "ledger"))
    return t, prov, str(tmp_path / "ledger")


HEADERS = [("content-type", "application/json"), ("X-Ratectl-Tenant", "alice"),
           ("x-ratectl-tag", "route/a"), ("X-Keep", "1"), ("X-RATECTL-TENANT", "bob")]


def admitted(ledger, name):
    """The budget's admissions; 0 when it was never made (nothing asked
    the ledger for it)."""
    try:
        return show(ledger, name)["counters"]["admitted"]
    except subprocess.CalledProcessError:
        return 0


def check_sent(prov, n):
    assert len(prov.seen) == n
    for i in range(n):
        names = prov.names(i)
        assert not [h for h in names if h.startswith(b"x-ratectl")], names
        assert b"x-keep" in names and b"content-type" in names


def test_provider_never_sees_ratectl_headers_and_the_tenant_is_charged(tmp_path):
    t, prov, ledger = make_transport(tmp_path)
    with httpx.Client(transport=t) as c:
        for _ in range(3):
            r = c.post(URL, content=chat_body(), headers=HEADERS)
            assert r.status_code == 200
            # the program's own request is left as it was
            assert r.request.headers.get_list("x-ratectl-tenant") == ["alice", "bob"]
    check_sent(prov, 3)
    tb, kb = show(ledger, "t-alice"), show(ledger, "mock")
    assert tb["counters"]["admitted"] == 3 and kb["counters"]["admitted"] == 3
    assert tb["origin"] == "t-*"
    assert [x["tag"] for x in tb["tags"]] == ["route/a"]


def test_async_provider_never_sees_ratectl_headers(tmp_path):
    t, prov, ledger = make_transport(tmp_path, sync=False)

    async def main():
        async with httpx.AsyncClient(transport=t) as c:
            rs = await asyncio.gather(*[c.post(URL, content=chat_body(), headers=HEADERS)
                                        for _ in range(4)])
            assert [r.status_code for r in rs] == [200] * 4
    asyncio.run(main())
    check_sent(prov, 4)
    assert show(ledger, "t-alice")["counters"]["admitted"] == 4


def test_unmatched_requests_keep_every_header(tmp_path):
    t, prov, _ = make_transport(tmp_path)
    with httpx.Client(transport=t) as c:
        c.post("https://elsewhere.test/v1/x", content=b"{}", headers=HEADERS)
    assert prov.names(0).count(b"x-ratectl-tenant") == 2


def test_a_tenant_header_of_another_name_is_the_programs(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[mock]\nmatch = api.example.test\nrequests = 100/min\n"
                    "tenant = header X-User-Id\ntenant_template = u-*\n[u-*]\nrequests = 10/min\n")
    prov = Provider()
    t = ratectl.httpx.Transport(str(conf), transport=httpx.MockTransport(prov),
                                ledger_dir=str(tmp_path / "ledger"))
    with httpx.Client(transport=t) as c:
        c.post(URL, content=chat_body(), headers={"X-User-Id": "carol"})
    assert b"x-user-id" in prov.names(0)
    assert show(str(tmp_path / "ledger"), "u-carol")["counters"]["admitted"] == 1


@pytest.mark.parametrize("sync", [True, False])
def test_tenant_values_at_and_past_a_budget_name(tmp_path, sync):
    """A template of '*' leaves the tenant all 64 characters: 63 and 64
    are sent (without the header) and charged; 65, 66 and 1 MiB raise
    ratectl.BadName before the provider is called, and charge nothing."""
    t, prov, ledger = make_transport(tmp_path, template="*", sync=sync)
    results = {}

    def post(c, n):
        try:
            return c.post(URL, content=chat_body(), headers={"X-Ratectl-Tenant": "a" * n})
        except ratectl.Error as e:
            return e

    async def apost(c, n):
        try:
            return await c.post(URL, content=chat_body(), headers={"X-Ratectl-Tenant": "a" * n})
        except ratectl.Error as e:
            return e
    sizes = [63, 64, 65, 66, 1 << 20]
    if sync:
        with httpx.Client(transport=t) as c:
            for n in sizes:
                results[n] = post(c, n)
    else:
        async def main():
            async with httpx.AsyncClient(transport=t) as c:
                for n in sizes:
                    results[n] = await apost(c, n)
        asyncio.run(main())
    for n in (63, 64):
        assert isinstance(results[n], httpx.Response) and results[n].status_code == 200
        assert show(ledger, "a" * n)["counters"]["admitted"] == 1
    for n in (65, 66, 1 << 20):
        e = results[n]
        assert isinstance(e, ratectl.BadName), (n, e)
        assert e.code == _http.RATECTL_EBADNAME
        assert "X-Ratectl-Tenant" in str(e) and "not sent" in str(e)
        assert len(str(e)) < 1000          # the value is not echoed whole
    assert len(prov.seen) == 2
    assert all(b"x-ratectl-tenant" not in prov.names(i) for i in range(2))
    assert show(ledger, "mock")["counters"]["admitted"] == 2


def test_bad_characters_are_refused_not_bent(tmp_path):
    t, prov, ledger = make_transport(tmp_path)
    with httpx.Client(transport=t) as c:
        for v in ("a/b", "a*b", "x y", "\u00e9".encode("utf-8")):
            with pytest.raises(ratectl.BadName):
                c.post(URL, content=chat_body(), headers={"X-Ratectl-Tenant": v})
    assert prov.seen == []
    assert admitted(ledger, "mock") == 0


def test_a_bad_tag_is_dropped_and_the_request_sent_untagged(tmp_path, caplog):
    t, prov, ledger = make_transport(tmp_path)
    with httpx.Client(transport=t) as c:
        r = c.post(URL, content=chat_body(),
                   headers={"X-Ratectl-Tenant": "dave", "X-Ratectl-Tag": "no blanks allowed"})
    assert r.status_code == 200
    assert b"x-ratectl-tag" not in prov.names(0)
    b = show(ledger, "t-dave")
    assert b["counters"]["admitted"] == 1 and b["tags"] == []
    assert any("is not a tag" in m for m in caplog.messages)
