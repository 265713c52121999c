"""await Ledger.aacquire(): the event-loop API from asyncio.  Order across
coroutines and processes, no thread per waiter, wake-ups through the
handle's event descriptor, cancellation and timeouts that give the place
back, a holder killed with SIGKILL."""
import asyncio
import json
import os
import threading
import time

import pytest

import ratectl

from conftest import spawn

MS = 1_000_000


def threads():
    return threading.active_count(), len(os.listdir("/proc/self/task"))


# A process that asks `n` times on the budget, in steps of `batch` every
# `gap_ms`, starting at ledger time `start_ns`; prints its records as JSON.
ASKER = r"""
import asyncio, json, os, sys, time, ratectl
path, budget, n, batch, gap_ms, start_ns = sys.argv[1:7]
n, batch, gap_ms, start_ns = int(n), int(batch), float(gap_ms), int(start_ns)
L = ratectl.Ledger(path)
recs = []
async def one(seq):
    before = L.now_ns()
    lease = await L.aacquire(budget)
    recs.append((os.getpid(), seq, before, lease.start_ns))
    lease.release()
async def main():
    await asyncio.sleep(max(0, (start_ns - L.now_ns()) / 1e9))
    tasks = []
    for i in range(n):
        tasks.append(asyncio.ensure_future(one(i)))
        if (i + 1) % batch == 0:
            await asyncio.sleep(gap_ms / 1000)
    await asyncio.gather(*tasks)
asyncio.run(main())
print(json.dumps(recs))
"""


async def ask_many(L, budget, n, batch, gap_ms, start_ns, on_peak=None):
    recs = []

    async def one(seq):
        before = L.now_ns()
        lease = await L.aacquire(budget)
        recs.append((os.getpid(), seq, before, lease.start_ns))
        lease.release()

    await asyncio.sleep(max(0, (start_ns - L.now_ns()) / 1e9))
    tasks = []
    for i in range(n):
        tasks.append(asyncio.ensure_future(one(i)))
        if (i + 1) % batch == 0:
            await asyncio.sleep(gap_ms / 1000)
    if on_peak:
        on_peak()
    await asyncio.gather(*tasks)
    return recs


def check_order(recs, margin_ns):
    """In each process, in the order of asking; across processes, whoever
    asked more than margin_ns before another is admitted no later."""
    by_pid = {}
    for pid, seq, before, start in recs:
        by_pid.setdefault(pid, []).append((seq, start))
    for pid, rs in by_pid.items():
        rs.sort()
        starts = [s for _, s in rs]
        assert starts == sorted(starts), "process %d admitted out of order" % pid
    rs = sorted(recs, key=lambda r: r[2])
    best = None       # latest admission of those asked more than margin earlier
    j = 0
    bad = 0
    for r in rs:
        while j < len(rs) and rs[j][2] < r[2] - margin_ns:
            best = rs[j][3] if best is None else max(best, rs[j][3])
            j += 1
        if best is not None and best > r[3]:
            bad += 1
    assert bad == 0, "%d admissions overtook someone who asked earlier" % bad


def test_1000_coroutines_and_other_processes_in_order(ledger, ledger_dir):
    rate = 2000                                  # one every 0.5 ms, no burst
    ledger.set("fifo", requests=(rate, 1, 1))
    start = ledger.now_ns() + 400 * MS           # everyone starts asking then
    others = [spawn(ASKER, ledger_dir, "fifo", 200, 20, 8, start) for _ in range(2)]
    before = threads()
    peak = []
    try:
        t0 = time.monotonic()
        mine = asyncio.run(asyncio.wait_for(
            ask_many(ledger, "fifo", 1000, 50, 10, start,
                     on_peak=lambda: peak.append(threads())), 20))
        elapsed = time.monotonic() - t0
        theirs = []
        for p in others:
            out, err = p.communicate(timeout=20)
            assert p.returncode == 0, err
            theirs += [tuple(r) for r in json.loads(out)]
    finally:
        for p in others:
            p.kill()
    assert len(mine) == 1000 and len(theirs) == 400
    everyone = mine + theirs
    check_order(everyone, margin_ns=20 * MS)
    starts = sorted(r[3] for r in everyone)
    # They really waited for the rate: 1400 admissions one every 0.5 ms.
    assert (starts[-1] - starts[0]) >= 0.9 * 1399 * 1e9 / rate
    assert elapsed < 10
    # No thread per waiter: the same threads with 1000 waiting as before.
    assert peak and peak[0] == before == threads()
    assert ledger.budget("fifo").counters.admitted == 1400


HOLDER = r"""
import sys, time, ratectl
L = ratectl.Ledger(sys.argv[1])
leases = [L.acquire(sys.argv[2]) for _ in range(int(sys.argv[3]))]
print("held", flush=True)
time.sleep(float(sys.argv[4]))
t = L.now_ns()
for l in leases:
    l.release()
print(t, flush=True)
time.sleep(60)
"""


def test_slot_waiters_are_woken_through_the_event_descriptor(ledger, ledger_dir):
    ledger.set("slots", requests="100000/s", concurrency=4)
    holder = spawn(HOLDER, ledger_dir, "slots", 4, 0.3)
    before = threads()
    inside = [0, 0]             # now, most at once
    firsts = []

    async def one():
        await with_lease_impl(ledger, "slots", inside, firsts)

    async def main():
        return await asyncio.gather(*(one() for _ in range(200)))

    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        asyncio.run(asyncio.wait_for(main(), 20))
        elapsed = time.monotonic() - t0
        released_ns = int(holder.stdout.readline())
    finally:
        holder.kill()
        holder.communicate()
    assert inside[1] <= 4
    # Woken by the other process's release, not by the 1 s fallback timer.
    assert min(firsts) - released_ns < 150 * MS
    # 200 holds of 10 ms, 4 at a time: 0.5 s; 50 fallback seconds if the
    # descriptor were not read.
    assert elapsed < 0.3 + 3
    # The library's dead-holder watcher (one per process and budget) at most.
    after = threads()
    assert after[0] <= before[0] + 1 and after[1] <= before[1] + 1
    assert ledger.budget("slots").inflight == 0


async def with_lease_impl(ledger, budget, inside, firsts):
    lease = await ledger.aacquire(budget)
    firsts.append(ledger.now_ns())
    inside[0] += 1
    inside[1] = max(inside)
    try:
        await asyncio.sleep(0.01)
    finally:
        inside[0] -= 1
        lease.release()


def test_cancelling_a_waiter_holds_nobody_up(ledger):
    gap = 50 * MS
    ledger.set("cancel", requests=(20, 1, 1))   # one every 50 ms, no burst
    n = 30
    admitted = {}

    async def one(k):
        lease = await ledger.aacquire("cancel")
        admitted[k] = (lease.start_ns, ledger.now_ns())
        lease.release()

    async def main():
        tasks = [asyncio.ensure_future(one(k)) for k in range(n)]
        await asyncio.sleep(0.15)
        tasks[10].cancel()                     # in the middle
        tasks[n - 1].cancel()                  # and the last: its place is free again
        return await asyncio.gather(*tasks, return_exceptions=True)

    res = asyncio.run(asyncio.wait_for(main(), 20))
    assert isinstance(res[10], asyncio.CancelledError)
    assert isinstance(res[n - 1], asyncio.CancelledError)
    assert sorted(admitted) == [k for k in range(n - 1) if k != 10]
    t0 = admitted[0][0]
    for k, (start, woke) in admitted.items():
        # at its place in the schedule, and woken then
        assert start <= t0 + k * gap + 1 * MS, k
        assert woke - start < 40 * MS, k
    # The last place (t0 + 29 gaps) was given back: it is free at its time.
    while ledger.now_ns() < t0 + (n - 1) * gap + 2 * MS:
        time.sleep(0.005)
    ledger.try_acquire("cancel").release()
    assert ledger.budget("cancel").counters.admitted == (n - 2) + 1


def test_cancelling_a_waiter_gives_its_slot_back(ledger):
    ledger.set("cslots", requests=(10, 1, 1), concurrency=2)   # one every 100 ms
    got = {}

    async def one(k):
        lease = await ledger.aacquire("cslots")
        got[k] = ledger.now_ns()
        await asyncio.sleep(0.5)
        lease.release()

    async def main():
        t0 = ledger.now_ns()
        tasks = [asyncio.ensure_future(one(k)) for k in range(3)]
        await asyncio.sleep(0.05)
        # 0 is in, 1 holds the other slot for its place at +100 ms, 2 waits
        # for a slot
        assert list(got) == [0] and ledger.budget("cslots").inflight == 2
        tasks[1].cancel()
        await asyncio.sleep(0)
        assert ledger.budget("cslots").inflight == 1
        res = await asyncio.gather(*tasks, return_exceptions=True)
        return t0, res

    t0, res = asyncio.run(asyncio.wait_for(main(), 10))
    assert isinstance(res[1], asyncio.CancelledError)
    assert sorted(got) == [0, 2]
    # 2 got the slot 1 gave back, woken through the descriptor, at the rate
    assert got[2] - t0 < 250 * MS
    assert ledger.budget("cslots").inflight == 0


def test_aacquire_timeout_admits_now_and_errors(ledger):
    ledger.set("to", requests=(10, 1, 1), concurrency=1)

    async def main():
        lease = await ledger.aacquire("to")         # free: admitted at once
        assert lease.held and lease.slot == 0
        t = time.monotonic()
        with pytest.raises(ratectl.TimedOut):
            await ledger.aacquire("to", timeout=0.2)
        assert 0.15 < time.monotonic() - t < 1
        lease.release()
        with pytest.raises(ratectl.NotFound):
            await ledger.aacquire("nope")
        with pytest.raises(ratectl.TooBig):
            await ledger.aacquire("to", requests=5)
        # the timed-out waiter left no slot and no place behind
        await asyncio.sleep(0.1)
        return (await ledger.aacquire("to", timeout=1))

    lease = asyncio.run(asyncio.wait_for(main(), 20))
    lease.release()
    info = ledger.budget("to")
    assert info.inflight == 0
    # counted as ratectl_acquire counts: the timeout a refusal, the waits
    # that were admitted not refusals
    assert info.counters.refused == 1


ASYNC_HOLDER = r"""
import asyncio, sys, ratectl
L = ratectl.Ledger(sys.argv[1])
async def main():
    lease = await L.aacquire(sys.argv[2])
    print("held", lease.slot, flush=True)
    await asyncio.sleep(60)           # mid-request
asyncio.run(main())
"""


def test_an_asyncio_worker_killed_mid_request_leaks_nothing(ledger, ledger_dir):
    ledger.set("kill", requests="1000/s", concurrency=1)
    worker = spawn(ASYNC_HOLDER, ledger_dir, "kill")
    try:
        assert worker.stdout.readline().split() == ["held", "0"]

        async def main():
            waiter = asyncio.ensure_future(ledger.aacquire("kill"))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            t = time.monotonic()
            worker.kill()
            lease = await asyncio.wait_for(waiter, 5)
            return lease, time.monotonic() - t

        lease, took = asyncio.run(asyncio.wait_for(main(), 20))
        assert lease.slot == 0 and took < 2
        lease.release()
    finally:
        worker.kill()
        worker.communicate()
    b = ledger.budget("kill")
    assert b.inflight == 0 and b.dead == 0 and b.counters.reclaimed == 1


CLOSE_WAITING = r"""
import asyncio, sys, ratectl
L = ratectl.Ledger(sys.argv[1])
L.set("cw", requests=(10, 1, 1), concurrency=2)
async def main():
    first = await L.aacquire("cw")
    tasks = [asyncio.ensure_future(L.aacquire("cw")) for _ in range(3)]
    await asyncio.sleep(0.05)       # one holds a slot for its place, two wait
    L.close()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    print(" ".join(type(r).__name__ for r in res), flush=True)
asyncio.run(main())
M = ratectl.Ledger(sys.argv[1])
print("inflight", M.budget("cw").inflight, flush=True)
"""


def test_closing_a_ledger_with_waiters_fails_them_cleanly(ledger_dir):
    # In a child: closing a handle with reservations pending crashes the
    # process inside libratectl unless they are cancelled first.
    p = spawn(CLOSE_WAITING, ledger_dir)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert out.split("\n")[:2] == ["Error Error Error", "inflight 0"]


def test_a_ledger_keeps_no_loop_alive(ledger):
    import gc
    import weakref
    ledger.set("loops", requests=(1000, 1, 1))
    refs = []

    async def main():
        refs.append(weakref.ref(asyncio.get_running_loop()))
        for _ in range(3):
            (await ledger.aacquire("loops")).release()

    for _ in range(5):
        asyncio.run(main())
    gc.collect()
    assert [r() for r in refs] == [None] * 5
    assert len(ledger._loops) == 0 and not ledger._pending
