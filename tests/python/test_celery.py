"""Celery's prefork pool (8 processes) sharing one budget through the transport.

A real worker (`celery worker --pool prefork --concurrency 8`) takes tasks
from a real broker (a private redis-server on a unix socket); each task
makes one chat completion to the fake provider through
ratectl.httpx.Transport.  The provider allows 20 requests/s with a burst
of 10; the budget is 20/s, burst 1.  With ratectl: zero 429s and at least
90% of the provider's limit.  The same tasks with a plain httpx transport
(RATECTL_OFF=1) get 429s: the test can fail.

Celery's own `rate_limit` could not do this: it is per worker process.
"""
import os
import subprocess
import textwrap

import pytest

import helpers
from helpers import FakeProvider, Redis, show, write_config

pytest.importorskip("celery")
pytest.importorskip("redis")

N = 120          # tasks: 6 s at 20/s

APP = textwrap.dedent('''
    """The Celery app of test_celery.py: one chat completion per task."""
    import os

    import httpx
    from celery import Celery

    import ratectl.httpx

    app = Celery("rcapp", broker=os.environ["BROKER_URL"])
    app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=1,
                    task_acks_late=True, broker_connection_retry_on_startup=True)

    # Built in the parent, before the pool forks: the transport opens
    # nothing until the first request, in each child.
    if os.environ.get("RATECTL_OFF"):
        client = httpx.Client(timeout=30)
    else:
        client = httpx.Client(transport=ratectl.httpx.Transport(), timeout=30)

    @app.task
    def chat(url, body):
        code = client.post(url, content=body.encode(),
                           headers={"content-type": "application/json"}).status_code
        with open(os.environ["PIDS_FILE"], "a") as f:   # which pool process
            f.write("%d %d\\n" % (os.getpid(), code))
        return code
''')


def pids(tmp):
    try:
        with open(os.path.join(tmp, "pids")) as f:
            return [line.split() for line in f if line.strip()]
    except OSError:
        return []


def run_worker_and_tasks(tmp, fp, broker, ratectl_on):
    app_dir = os.path.join(tmp, "app")
    os.makedirs(app_dir, exist_ok=True)
    with open(os.path.join(app_dir, "rcapp.py"), "w") as f:
        f.write(APP)
    conf = write_config(os.path.join(tmp, "c.conf"), fp.port, "fake", "requests = 20/s burst 1")
    env = helpers.env_with(BROKER_URL=broker, RATECTL_CONFIG=conf,
                           RATECTL_LEDGER=os.path.join(tmp, "ledger"),
                           PIDS_FILE=os.path.join(tmp, "pids"))
    env["PYTHONPATH"] = app_dir + os.pathsep + env["PYTHONPATH"]
    if not ratectl_on:
        env["RATECTL_OFF"] = "1"
    worker = subprocess.Popen(
        [helpers.PYTHON, "-m", "celery", "-A", "rcapp", "worker", "--pool", "prefork",
         "--concurrency", "8", "--loglevel", "WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=app_dir, env=env, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tmp, "worker.err"), "w"), start_new_session=True)
    try:
        # Queue the tasks from another process (the broker holds them until
        # the pool is up).
        send = ("import rcapp, helpers; body = helpers.chat_body().decode(); "
                "[rcapp.chat.delay(%r, body) for _ in range(%d)]" % (fp.url + "/v1/chat/completions", N))
        env2 = dict(env)
        env2["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.path.dirname(os.path.abspath(__file__))
        subprocess.run([helpers.PYTHON, "-c", send], cwd=app_dir, env=env2, check=True, timeout=30)
        done = helpers.wait_for(lambda: fp.stats()["requests"] >= N, timeout=45, step=0.2)
        assert done, "only %d of %d tasks reached the provider (worker.err: %s)" % (
            fp.stats()["requests"], N, open(os.path.join(tmp, "worker.err")).read()[-2000:])
        helpers.wait_for(lambda: len(pids(tmp)) >= N, timeout=10)
        return fp.stats()
    finally:
        helpers.stop_group(worker)


def test_celery_prefork_shares_one_budget(tmp_path):
    tmp = str(tmp_path)
    with Redis(tmp) as r, FakeProvider(tmp, "--rps", 20, "--burst-requests", 10) as fp:
        st = run_worker_and_tasks(tmp, fp, r.url, ratectl_on=True)
        rate = helpers.rate(fp.log)
        print("with ratectl: %s, %.1f/s" % (st, rate))
        assert st["limited_429"] == 0, st
        assert st["ok"] == N
        done = pids(tmp)
        assert len(done) == N and all(code == "200" for _, code in done)
        assert len({pid for pid, _ in done}) >= 4   # the pool's processes shared the work
        assert rate >= 0.9 * 20, rate
        b = show(os.path.join(tmp, "ledger"), "fake")
        assert b["counters"]["admitted"] == N
        assert b["inflight"] == 0


def test_celery_without_ratectl_gets_429s(tmp_path):
    """The control: the same pool and tasks, a plain httpx client."""
    tmp = str(tmp_path)
    with Redis(tmp) as r, FakeProvider(tmp, "--rps", 20, "--burst-requests", 10) as fp:
        st = run_worker_and_tasks(tmp, fp, r.url, ratectl_on=False)
        print("without ratectl: %s" % st)
        assert st["limited_429"] > 0, st
