"""Tags: a request's tag through try_acquire, acquire and aacquire, checked
by the library at every length around RATECTL_TAG_MAX and far past it,
in multi-byte UTF-8 and with a NUL; Ledger.tags() at and around
RATECTL_TAGS_TOP; a pending reservation's tag alive until it is admitted."""
import asyncio
import gc

import pytest

import ratectl
from ratectl import ledger as L_mod

TAG_MAX = L_mod.TAG_MAX
TAGS_TOP = L_mod.TAGS_TOP


def test_the_constants_are_the_headers():
    # test_ledger.py checks them against the compiler; these tests lean on them.
    assert (TAG_MAX, TAGS_TOP) == (48, 32)


def counted(ledger, name):
    t = ledger.tags(name)
    return {x.tag: (x.requests, x.tokens) for x in t.top}, t.rest


# ---- lengths ------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, TAG_MAX - 1, TAG_MAX])
def test_tags_up_to_the_maximum_pass_and_are_counted_whole(ledger, n):
    ledger.set("b", requests="1000/s", tokens="100000/min")
    tag = ("route:/v1/chat.x_y-" * 10)[:n]
    lease = ledger.try_acquire("b", tokens=7, tag=tag)
    assert lease.tag == tag
    lease.release(actual_tokens=5)
    with ledger.acquire("b", tokens=3, tag=tag, timeout=5) as lease:
        assert lease.tag == tag
    top, rest = counted(ledger, "b")
    assert top == {tag: (2, 8)}
    assert rest.tag == "" and rest.requests == 0


@pytest.mark.parametrize("n", [TAG_MAX + 1, TAG_MAX + 2, 4096, 100_000])
def test_longer_tags_are_bad_names_and_charge_nothing(ledger, n):
    ledger.set("b", requests="1000/s")
    tag = "a" * n
    for call in (lambda: ledger.try_acquire("b", tag=tag),
                 lambda: ledger.acquire("b", tag=tag, timeout=1),
                 lambda: ledger.acquire("b", tag=tag, timeout=0),
                 lambda: asyncio.run(ledger.aacquire("b", tag=tag, timeout=1))):
        with pytest.raises(ratectl.BadName):
            call()
    # the same as bytes
    with pytest.raises(ratectl.BadName):
        ledger.try_acquire("b", tag=tag.encode())
    b = ledger.budget("b")
    assert b.counters.admitted == 0 and b.limits[0].available == 1000
    top, rest = counted(ledger, "b")
    assert top == {} and rest.requests == 0


@pytest.mark.parametrize("tag", [
    "é" * (TAG_MAX // 2),          # 48 bytes, 24 characters
    "é" * (TAG_MAX // 2 + 1),      # 50 bytes
    "a" * (TAG_MAX - 1) + "é",     # 49 bytes, the last character cut in two by 48
    "a" * (TAG_MAX - 2) + "é",     # 48 bytes
    "日本", "route 1", "tag\n", "",
    "\ud800",                      # a lone surrogate: no UTF-8 at all
])
def test_tags_outside_the_alphabet_are_bad_names(ledger, tag):
    ledger.set("b", requests="1000/s")
    with pytest.raises(ratectl.BadName):
        ledger.try_acquire("b", tag=tag)
    with pytest.raises(ratectl.BadName):
        asyncio.run(ledger.aacquire("b", tag=tag))
    assert ledger.budget("b").counters.admitted == 0


@pytest.mark.parametrize("tag", ["ab\0cd", "\0", "a" * TAG_MAX + "\0", "ok\0" + "x" * 100_000])
def test_a_nul_never_cuts_a_tag_into_another(ledger, tag):
    ledger.set("b", requests="1000/s")
    with pytest.raises(ratectl.BadName):
        ledger.try_acquire("b", tag=tag)
    with pytest.raises(ratectl.BadName):
        ledger.acquire("b", tag=tag)
    assert ledger.budget("b").counters.admitted == 0
    assert counted(ledger, "b")[0] == {}


@pytest.mark.parametrize("tag", [5, 1.5, ["a"], object(), bytearray(b"a")])
def test_a_tag_that_is_not_a_string_is_a_type_error(ledger, tag):
    ledger.set("b", requests="1000/s")
    with pytest.raises(TypeError):
        ledger.try_acquire("b", tag=tag)
    with pytest.raises(TypeError):
        ledger.acquire("b", tag=tag)
    with pytest.raises(TypeError):
        asyncio.run(ledger.aacquire("b", tag=tag))
    assert ledger.budget("b").counters.admitted == 0


def test_untagged_requests_count_in_the_rest(ledger):
    ledger.set("b", requests="1000/s", tokens="100000/min")
    ledger.try_acquire("b", tokens=10).release()
    ledger.try_acquire("b", tokens=20, tag=None).release()
    lease = ledger.try_acquire("b", tokens=30, tag="x")
    assert lease.tag == "x"
    lease.release()
    top, rest = counted(ledger, "b")
    assert top == {"x": (1, 30)}
    assert (rest.tag, rest.requests, rest.tokens) == ("", 2, 30)
    assert ledger.try_acquire("b").tag is None


def test_tags_of_a_missing_budget(ledger):
    with pytest.raises(ratectl.NotFound):
        ledger.tags("nope")
    with pytest.raises(ratectl.BadName):
        ledger.tags("-bad")


# ---- how many are counted ---------------------------------------------------------

@pytest.mark.parametrize("k", [TAGS_TOP - 1, TAGS_TOP, TAGS_TOP + 1, 500])
def test_at_most_the_top_tags_are_counted(ledger, k):
    ledger.set("b", requests="100000/s", tokens="10000000/min")
    truth = {}
    # tag i asked i % 7 + 1 times: counts that differ, ties among them
    for i in range(k):
        tag = "t%d" % i
        for _ in range(i % 7 + 1):
            ledger.try_acquire("b", tokens=2, tag=tag).release()
        truth[tag] = i % 7 + 1
    t = ledger.tags("b")
    assert len(t.top) == min(k, TAGS_TOP)
    assert [x.requests for x in t.top] == sorted((x.requests for x in t.top), reverse=True)
    assert len({x.tag for x in t.top}) == len(t.top)
    if k <= TAGS_TOP:
        assert {x.tag: x.requests for x in t.top} == truth
        assert all(x.error == 0 and x.tokens == 2 * x.requests for x in t.top)
        assert t.rest.requests == 0
    else:
        for x in t.top:      # space-saving: over by at most its error
            assert x.requests - x.error <= truth[x.tag] <= x.requests
    b = ledger.budget("b")
    assert b.counters.admitted == sum(truth.values())


# ---- a pending reservation's tag ------------------------------------------------------

def test_a_waiting_aacquire_keeps_its_tag_until_admitted(ledger):
    """The library keeps the cost, its tag's pointer with it, in a pending
    reservation; what that pointer points to must outlive the wait,
    whatever Python allocates meanwhile."""
    ledger.set("w", requests=(20, 1, 1))      # one every 50 ms
    ledger.try_acquire("w").release()

    async def main():
        tags = ["wait-%02d" % i for i in range(5)]
        tasks = [asyncio.ensure_future(ledger.aacquire("w", tag="".join(t))) for t in tags]
        await asyncio.sleep(0)                 # every one reserved
        assert not any(t.done() for t in tasks)
        junk = []
        for _ in range(20):                    # reuse whatever memory was freed
            gc.collect()
            junk.extend(("JUNK-%02d" % (i % 100)).encode() for i in range(20000))
            await asyncio.sleep(0.01)
        leases = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert [x.tag for x in leases] == tags
        for x in leases:
            x.release()
        return tags

    tags = asyncio.run(main())
    top, _ = counted(ledger, "w")
    assert top == {t: (1, 0) for t in tags}


def test_a_cancelled_tagged_waiter_counts_nothing(ledger):
    ledger.set("w", requests=(1, 60, 1))
    ledger.try_acquire("w").release()

    async def main():
        task = asyncio.ensure_future(ledger.aacquire("w", tag="gone"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    top, rest = counted(ledger, "w")
    assert "gone" not in top and rest.requests == 1
