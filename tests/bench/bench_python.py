"""make bench, section 8: the Python binding's admission cost.

One pair is ``ledger.try_acquire(budget, tokens=100).release()`` on an
uncapped budget (1e9 requests and tokens a second) in a tmpfs ledger,
next to the same two calls made through ctypes without the binding's
Python (the floor of calling C from Python) and the C library's own
ratectl_try + ratectl_release (bench_http's "bare" row of this run, or
bench_http run now when that row is missing).  Timed in batches of 1000
pairs, the variants taking turns over several rounds, pinned to one CPU.
Target: at most 5 us per pair.  Appends one JSON row to
$RATECTL_BENCH_JSONL like the C benchmarks.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "lib", "python"))

import ratectl  # noqa: E402
from ratectl import ledger as lm  # noqa: E402

TARGET_NS = 5000
BATCH = 1000
ROUNDS = 10


def c_bare_ns(jsonl):
    """bench_http's ratectl_try + ratectl_release median, from this run."""
    rows = []
    if jsonl and os.path.exists(jsonl):
        with open(jsonl) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    if not any(r.get("section") == "http" and r.get("row") == "bare" for r in rows):
        exe = os.path.join(os.environ.get("B", os.path.join(TOP, "build")), "bench", "bench_http")
        if not os.path.isabs(exe):
            exe = os.path.join(TOP, exe)
        if not os.access(exe, os.X_OK):
            return None
        fd, tmp = tempfile.mkstemp()
        os.close(fd)
        try:
            env = dict(os.environ, RATECTL_BENCH_JSONL=tmp, RATECTL_BENCH_OPS="100000")
            subprocess.run([exe], env=env, stdout=subprocess.DEVNULL, check=True, timeout=300)
            with open(tmp) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        finally:
            os.unlink(tmp)
    for r in rows:
        if r.get("section") == "http" and r.get("row") == "bare":
            return r["median_ns"]
    return None


def fmt(ns):
    return "%.2f us" % (ns / 1000) if ns >= 1000 else "%.0f ns" % ns


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main():
    ops = int(os.environ.get("RATECTL_BENCH_OPS", "200000"))
    base = os.environ.get("RATECTL_BENCH_TMPFS") or (
        "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")
    cpu = os.sched_getaffinity(0)
    here = sorted(cpu)[-1]
    os.sched_setaffinity(0, {here})
    d = tempfile.mkdtemp(prefix="ratectl-bench-python-", dir=base)
    try:
        L = ratectl.Ledger(os.path.join(d, "ledger"))
        L.set("huge", requests=(10 ** 9, 1), tokens=(10 ** 9, 1))
        h, lease, wait = L._h, lm._Lease(), ctypes.c_int64()
        cost = lm._Cost(1, 100, 0)
        c_try, c_release, unknown = lm._c_try, lm._c_release, lm.UNKNOWN
        try_acquire = L.try_acquire
        perf = time.perf_counter_ns

        def binding(n):
            for _ in range(n):
                try_acquire("huge", tokens=100).release()

        def raw(n):
            for _ in range(n):
                if c_try(h, b"huge", cost, lease, wait) or c_release(h, lease, unknown):
                    raise RuntimeError("ratectl_try/release failed")

        variants = [("python", "ledger.try_acquire() + lease.release()", binding, []),
                    ("ctypes", "the same two calls through bare ctypes", raw, [])]
        binding(BATCH)
        raw(BATCH)
        per_round = max(1, ops // ROUNDS // BATCH)
        for _ in range(ROUNDS):
            for key, label, fn, samples in variants:
                for _ in range(per_round):
                    t = perf()
                    fn(BATCH)
                    samples.append((perf() - t) / BATCH)
        L.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
        os.sched_setaffinity(0, cpu)

    jsonl = os.environ.get("RATECTL_BENCH_JSONL")
    c_ns = c_bare_ns(jsonl)
    py = variants[0][3]
    med, p99 = pct(py, 0.5), pct(py, 0.99)
    ok = med <= TARGET_NS
    print("\n8. The Python binding per admission (ctypes, /usr/bin/python3 %d.%d): %d pairs\n"
          "   a row, in batches of %d, rows interleaved in %d rounds, on CPU %d, tmpfs (%s);\n"
          "   a pair is try_acquire + release on an uncapped budget, tokens=100"
          % (sys.version_info[0], sys.version_info[1], len(py) * BATCH, BATCH, ROUNDS,
             here, base))
    print("     %-42s %10s %10s %10s" % ("", "median", "p99", "vs C"))
    for key, label, fn, samples in variants:
        m = pct(samples, 0.5)
        line = "     %-42s %10s %10s" % (label, fmt(m), fmt(pct(samples, 0.99)))
        row = {"section": "python", "row": key, "fs": "tmpfs", "dir": base,
               "median_ns": round(m), "p99_ns": round(pct(samples, 0.99)),
               "ops": len(samples) * BATCH}
        if c_ns:
            line += " %9.1fx" % (m / c_ns)
            row["c_median_ns"] = c_ns
        if key == "python":
            line += "   <= 5 us %s" % ("ok" if ok else "MISSED")
            row.update({"target_below_ns": TARGET_NS, "verdict": "ok" if ok else "MISSED"})
        print(line)
        if jsonl:
            with open(jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")
    print("     %-42s %10s" % ("C: ratectl_try + ratectl_release (7., bare)",
                               fmt(c_ns) if c_ns else "n/a"))
    if not c_ns:
        print("     (no C figure: build/bench/bench_http is missing)")
    transport_row(base, jsonl)
    return 0


def transport_row(base, jsonl):
    """What ratectl.httpx.Transport adds to a request: an httpx.Client
    around httpx.MockTransport (no network: an OpenAI-style JSON answer
    with usage and x-ratelimit-* headers), with and without the
    transport, taking turns."""
    try:
        import httpx
        import ratectl.httpx as rhttpx
    except ImportError as e:
        print("     ratectl.httpx.Transport: skipped (%s)" % e)
        return
    body = (b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":'
            b'{"role":"assistant","content":"hello"}}],"usage":{"prompt_tokens":12,'
            b'"completion_tokens":20,"total_tokens":32}}')
    headers = {"content-type": "application/json",
               "x-ratelimit-limit-requests": "1000000000",
               "x-ratelimit-remaining-requests": "999999999",
               "x-ratelimit-reset-requests": "1ms",
               "x-ratelimit-limit-tokens": "1000000000",
               "x-ratelimit-remaining-tokens": "999999000",
               "x-ratelimit-reset-tokens": "1ms"}
    req = b'{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}'

    def answer(request):
        return httpx.Response(200, headers=headers, content=body)

    d = tempfile.mkdtemp(prefix="ratectl-bench-httpx-", dir=base)
    try:
        conf = ("[mock]\nmatch = api.example.test\nrequests = 1000000000/s\n"
                "tokens = 1000000000/s\n")
        plain = httpx.Client(transport=httpx.MockTransport(answer))
        metered = httpx.Client(transport=rhttpx.Transport(
            transport=httpx.MockTransport(answer), config_text=conf,
            ledger_dir=os.path.join(d, "ledger")))
        url = "https://api.example.test/v1/chat/completions"
        perf = time.perf_counter_ns
        samples = {"plain": [], "metered": []}

        def run(c, n):
            for _ in range(n):
                c.post(url, content=req).read()

        run(plain, 50)
        run(metered, 50)
        for _ in range(10):
            for key, c in (("plain", plain), ("metered", metered)):
                t = perf()
                run(c, 100)
                samples[key].append((perf() - t) / 100)
        plain.close()
        metered.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    mp, mm = pct(samples["plain"], 0.5), pct(samples["metered"], 0.5)
    print("     %-42s %10s" % ("httpx.Client + MockTransport, a request", fmt(mp)))
    print("     %-42s %10s %10s %10s" % ("... through ratectl.httpx.Transport", fmt(mm),
                                         "", "+" + fmt(mm - mp)))
    if jsonl:
        with open(jsonl, "a") as f:
            f.write(json.dumps({"section": "python", "row": "httpx_transport",
                                "median_ns": round(mm), "plain_median_ns": round(mp),
                                "added_ns": round(mm - mp), "ops": 1000}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
