"""Helpers for the transport, Celery, gunicorn and example tests.

The fake provider (build/ratectl-fakeprov) is the referee: it is started
on a free loopback port (--port 0 --port-file, as tests/test_shim.sh
does), bounded by --max-seconds, and its GET /stats says how many
requests it answered and how many it refused with 429.  The ledger is
read back with `build/ratectl show NAME --json`, a separate program, so
the tests do not judge the library with the library.
"""
import json
import os
import subprocess
import tempfile
import time
import urllib.request

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.path.join(TOP, os.environ.get("B") or "build")
FAKEPROV = os.path.join(BUILD, "ratectl-fakeprov")
RATECTL = os.path.join(BUILD, "ratectl")
PYLIB = os.path.join(TOP, "lib", "python")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"


def wait_for(pred, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class FakeProvider:
    """A running ratectl-fakeprov; ``url`` is http://127.0.0.1:PORT."""

    def __init__(self, tmp, *args, max_seconds=90):
        self.tmp = tmp
        port_file = os.path.join(tmp, "fakeprov-%d.port" % id(self))
        self.log = os.path.join(tmp, "fakeprov-%d.log" % id(self))
        self.proc = subprocess.Popen(
            [FAKEPROV, "--port", "0", "--port-file", port_file, "--quiet",
             "--max-seconds", str(max_seconds), "--log", self.log] + [str(a) for a in args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def port():
            try:
                with open(port_file) as f:
                    return f.read().strip()
            except OSError:
                return None
        p = wait_for(port, 10)
        if not p:
            self.stop()
            raise RuntimeError("fakeprov did not start: %s" % self.proc.stderr.read())
        self.port = int(p)
        self.url = "http://127.0.0.1:%d" % self.port

    def stats(self):
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def write_config(path, port, name="fake", *lines):
    """A config whose one budget [name] matches the provider's port."""
    with open(path, "w") as f:
        f.write("[%s]\nmatch = 127.0.0.1:%d\n" % (name, port))
        for line in lines:
            f.write(line + "\n")
    return path


def show(ledger, budget):
    """The budget as `ratectl show NAME --json` prints it (the "budget" object)."""
    out = subprocess.run([RATECTL, "--ledger", ledger, "show", budget, "--json"],
                         check=True, capture_output=True, timeout=10).stdout
    return json.loads(out)["budget"]


def env_with(**kw):
    """os.environ plus PYTHONPATH=lib/python and the given variables."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PYLIB + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for k, v in kw.items():
        env[k] = str(v)
    return env


def tmpdir():
    return tempfile.mkdtemp(prefix="ratectl-py-")


def chat_body(max_tokens=100, stream=False, include_usage=False, model="gpt-4o-mini"):
    b = {"model": model, "max_tokens": max_tokens,
         "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        b["stream"] = True
        if include_usage:
            b["stream_options"] = {"include_usage": True}
    return json.dumps(b).encode()


def provider_tokens(body):
    """The tokens the fake provider reports for a request body."""
    b = json.loads(body)
    return -(-len(body) // 4) + -(-int(b.get("max_tokens", 0)) // 2)


def rate(log):
    """Answers with status 200 per second at the provider, from its --log
    (first to last), as tests/test_shim.sh's rate() reads it."""
    ts = []
    with open(log) as f:
        for line in f:
            e = json.loads(line)
            if e.get("status") == 200:
                ts.append(e["t_ms"])
    ts.sort()
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return 0.0
    return (len(ts) - 1) * 1000.0 / (ts[-1] - ts[0])


def stop_group(proc, sig=None, timeout=15):
    """Stop a process started with start_new_session=True, and its children
    (its process group, whose id is its pid: only what the test started)."""
    import signal as _signal
    if proc.poll() is None:
        try:
            # The leader first (gunicorn's master and Celery's main process
            # stop their workers themselves), then whatever is left.
            os.kill(proc.pid, sig or _signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, _signal.SIGKILL)   # stragglers of the group
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(5)


class Redis:
    """A private redis-server on a unix socket, nothing saved."""

    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "redis.sock")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        if not wait_for(lambda: os.path.exists(self.sock), 10):
            self.stop()
            raise RuntimeError("redis-server did not start")
        self.url = "redis+socket://" + self.sock

    def stop(self):
        stop_group(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def check_layouts(header, structs, constants):
    """Compile a C program printing the size of every struct in `structs`
    (C name -> ctypes mirror), the offset and size of every field the
    mirror has, and the value of every constant in `constants`; assert
    each equals the mirror's.  Returns how many were checked (None: no C
    compiler here)."""
    import ctypes
    import shutil
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "%s"' % header,
             "int main(void) {"]
    for t, cls in structs.items():
        lines.append('printf("%s size %%zu\\n", sizeof(%s));' % (t, t))
        for f, _ in cls._fields_:
            lines.append('printf("%s.%s %%zu %%zu\\n", offsetof(%s, %s), '
                         'sizeof(((%s *)0)->%s));' % (t, f, t, f, t, f))
    for k in constants:
        lines.append('printf("%s %%lld\\n", (long long)%s);' % (k, k))
    lines += ["return 0;", "}"]
    d = tempfile.mkdtemp()
    try:
        src, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run([cc, "-I", os.path.join(TOP, "include"), "-o", exe, src], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(d)
    checked = 0
    for line in out.splitlines():
        key, *values = line.split(" ")
        if key in constants:
            assert constants[key] == int(values[0]), key
        elif values[0] == "size":
            assert ctypes.sizeof(structs[key]) == int(values[1]), key
        else:
            t, field = key.split(".")
            desc = getattr(structs[t], field)
            assert (desc.offset, desc.size) == (int(values[0]), int(values[1])), key
        checked += 1
    assert checked == len(constants) + sum(1 + len(c._fields_) for c in structs.values())
    return checked
