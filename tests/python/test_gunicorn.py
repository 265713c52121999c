"""gunicorn's pre-forked sync workers sharing one budget through the transport.

8 sync workers (gunicorn --preload: the app and its httpx client are built
in the master and used in the forked workers) serve a WSGI app that makes
one chat completion to the fake provider per request, through
ratectl.httpx.Transport.  16 client threads drive it over a unix socket.
The provider allows 20 requests/s with a burst of 10; the budget is 20/s,
burst 1: zero 429s, at least 90% of the limit.  The same server with a
plain httpx client gets 429s (the control).
"""
import os
import shutil
import socket
import subprocess
import textwrap
import threading

import httpx
import pytest

import helpers
from helpers import FakeProvider, show, write_config

if not shutil.which("gunicorn"):
    pytest.skip("gunicorn is not installed", allow_module_level=True)

CLIENTS = 16
PER_CLIENT = 8     # 128 requests: 6.4 s at 20/s

APP = textwrap.dedent('''
    """The WSGI app of test_gunicorn.py: one chat completion per request."""
    import os

    import httpx

    import ratectl.httpx

    URL = os.environ["FAKE_URL"] + "/v1/chat/completions"
    BODY = b'{"model": "gpt-4o-mini", "max_tokens": 100, "messages": []}'
    if os.environ.get("RATECTL_OFF"):
        client = httpx.Client(timeout=30)
    else:
        client = httpx.Client(transport=ratectl.httpx.Transport(), timeout=30)


    def app(environ, start_response):
        r = client.post(URL, content=BODY, headers={"content-type": "application/json"})
        out = ("%d %d\\n" % (r.status_code, os.getpid())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(out)))])
        return [out]
''')


def serve_and_drive(tmp, fp, ratectl_on):
    app_dir = os.path.join(tmp, "app")
    os.makedirs(app_dir, exist_ok=True)
    with open(os.path.join(app_dir, "rcwsgi.py"), "w") as f:
        f.write(APP)
    conf = write_config(os.path.join(tmp, "c.conf"), fp.port, "fake", "requests = 20/s burst 1")
    sock = os.path.join(tmp, "g.sock")
    env = helpers.env_with(FAKE_URL=fp.url, RATECTL_CONFIG=conf,
                           RATECTL_LEDGER=os.path.join(tmp, "ledger"))
    env["PYTHONPATH"] = app_dir + os.pathsep + env["PYTHONPATH"]
    if not ratectl_on:
        env["RATECTL_OFF"] = "1"
    g = subprocess.Popen(
        [helpers.PYTHON, "-m", "gunicorn", "--workers", "8", "--worker-class", "sync",
         "--preload", "--bind", "unix:" + sock, "--timeout", "60", "--log-level", "warning",
         "rcwsgi:app"],
        cwd=app_dir, env=env, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tmp, "gunicorn.err"), "w"), start_new_session=True)
    try:
        def up():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(sock)
                return True
            except OSError:
                return False
            finally:
                s.close()
        assert helpers.wait_for(up, 20), open(os.path.join(tmp, "gunicorn.err")).read()
        answers = []
        lock = threading.Lock()

        def client():
            t = httpx.HTTPTransport(uds=sock)
            with httpx.Client(transport=t, timeout=60) as c:
                for _ in range(PER_CLIENT):
                    line = c.get("http://app/").text.split()
                    with lock:
                        answers.append(line)
        ths = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(60)
        return answers, fp.stats()
    finally:
        helpers.stop_group(g)


def test_gunicorn_sync_workers_share_one_budget(tmp_path):
    tmp = str(tmp_path)
    with FakeProvider(tmp, "--rps", 20, "--burst-requests", 10) as fp:
        answers, st = serve_and_drive(tmp, fp, ratectl_on=True)
        rate = helpers.rate(fp.log)
        print("with ratectl: %s, %.1f/s" % (st, rate))
        n = CLIENTS * PER_CLIENT
        assert len(answers) == n
        assert all(code == "200" for code, _ in answers)
        assert len({pid for _, pid in answers}) >= 4   # several workers served
        assert st["limited_429"] == 0, st
        assert st["ok"] == n
        assert rate >= 0.9 * 20, rate
        b = show(os.path.join(tmp, "ledger"), "fake")
        assert b["counters"]["admitted"] == n
        assert b["inflight"] == 0


def test_gunicorn_without_ratectl_gets_429s(tmp_path):
    tmp = str(tmp_path)
    with FakeProvider(tmp, "--rps", 20, "--burst-requests", 10) as fp:
        answers, st = serve_and_drive(tmp, fp, ratectl_on=False)
        print("without ratectl: %s" % st)
        assert st["limited_429"] > 0, st
