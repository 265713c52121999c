"""The README's Python examples (tests/python/examples/), run as they are.

NOTE: the openai SDK is not installable on these machines (no PyPI).
When `import openai` fails for the interpreter, these tests put
tests/python/examples/stub/ on PYTHONPATH: a STAND-IN `openai` module that
does what the SDK does with `http_client` (POST /chat/completions through
it, with the SDK's headers and retries) and nothing more.  When the real
SDK is importable, it is used and the stub is not on the path.  Each test
prints which one ran.
"""
import os
import subprocess

import pytest

import helpers
from helpers import FakeProvider, Redis, show, write_config

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "examples")
STUB = os.path.join(EXAMPLES, "stub")


def real_openai():
    return subprocess.run([helpers.PYTHON, "-c", "import openai"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def example_env(tmp, fp, conf, **kw):
    env = helpers.env_with(OPENAI_API_KEY="sk-test-not-a-key", OPENAI_BASE_URL=fp.url + "/v1",
                           RATECTL_CONFIG=conf, RATECTL_LEDGER=os.path.join(tmp, "ledger"), **kw)
    path = [EXAMPLES]
    if not real_openai():
        path.append(STUB)   # the stand-in, only because the SDK is absent
    env["PYTHONPATH"] = os.pathsep.join(path + [env["PYTHONPATH"]])
    return env


def which_openai(env):
    return subprocess.run(
        [helpers.PYTHON, "-c", "import openai; print('STUB' if getattr(openai, 'STUB', 0) "
         "else 'openai ' + openai.__version__)"],
        env=env, capture_output=True, text=True, timeout=20).stdout.strip()


def test_openai_sdk_example(tmp_path):
    """10 copies of the three-line example at once, against a provider
    that allows 2 requests/s (burst 3): all answered, zero 429s."""
    tmp = str(tmp_path)
    with FakeProvider(tmp, "--rps", 2, "--burst-requests", 3) as fp:
        conf = write_config(os.path.join(tmp, "c.conf"), fp.port, "openai",
                            "requests = 2/s burst 1")
        env = example_env(tmp, fp, conf)
        print("openai module:", which_openai(env))
        procs = [subprocess.Popen([helpers.PYTHON, os.path.join(EXAMPLES, "openai_sdk.py")],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(10)]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=40)
            assert p.returncode == 0, err
            outs.append(out)
        st = fp.stats()
        assert st["limited_429"] == 0, st
        assert st["ok"] == 10
        tokens = [int(o.split("tokens:")[1]) for o in outs]
        b = show(os.path.join(tmp, "ledger"), "openai")
        assert b["counters"]["admitted"] == 10
        assert b["counters"]["tokens_actual"] == sum(tokens)


def test_celery_example(tmp_path):
    """The Celery example's worker, 8 prefork processes, 60 tasks against a
    provider of 20 requests/s: zero 429s, every task reached it once."""
    pytest.importorskip("celery")
    n = 60
    tmp = str(tmp_path)
    with Redis(tmp) as r, FakeProvider(tmp, "--rps", 20, "--burst-requests", 10) as fp:
        conf = write_config(os.path.join(tmp, "c.conf"), fp.port, "openai",
                            "requests = 20/s burst 1")
        env = example_env(tmp, fp, conf, CELERY_BROKER_URL=r.url)
        print("openai module:", which_openai(env))
        worker = subprocess.Popen(
            [helpers.PYTHON, "-m", "celery", "-A", "celery_tasks", "worker", "--concurrency", "8",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=EXAMPLES, env=env, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, "worker.err"), "w"), start_new_session=True)
        try:
            subprocess.run([helpers.PYTHON, "-c",
                            "import celery_tasks as t\n"
                            "for i in range(%d): t.summarize.delay('text %%d' %% i)" % n],
                           cwd=EXAMPLES, env=env, check=True, timeout=30)
            done = helpers.wait_for(lambda: fp.stats()["requests"] >= n, timeout=40, step=0.2)
            assert done, open(os.path.join(tmp, "worker.err")).read()[-2000:]
        finally:
            helpers.stop_group(worker)
        st = fp.stats()
        assert st["limited_429"] == 0, st
        assert st["ok"] == n
        assert show(os.path.join(tmp, "ledger"), "openai")["counters"]["admitted"] == n
        assert helpers.rate(fp.log) >= 0.9 * 20


def test_openai_sdk_example_unmatched_gets_429s(tmp_path):
    """The control: the same 10 copies, the config's budget on another port
    (the requests are not ratectl's and pass untouched): the provider
    refuses some, so the test above can fail."""
    tmp = str(tmp_path)
    with FakeProvider(tmp, "--rps", 2, "--burst-requests", 3) as fp:
        conf = write_config(os.path.join(tmp, "c.conf"), fp.port + 1 if fp.port < 65535 else 1,
                            "openai", "requests = 2/s burst 1")
        env = example_env(tmp, fp, conf)
        procs = [subprocess.Popen([helpers.PYTHON, os.path.join(EXAMPLES, "openai_sdk.py")],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(10)]
        for p in procs:
            p.wait(40)
        assert fp.stats()["limited_429"] > 0
