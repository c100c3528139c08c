"""One loopback emulator process for the tests (scripts/at-sms-emulator,
scripts/daraja-emulator): started on a free port, its first stdout line
"<name> listening on http://127.0.0.1:PORT" read for the address, its log
kept under .run/<instance>/logs, stopped by env.cleanup() (or at exit), and
the small HTTP helper the fixtures share."""
import atexit
import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

_live = []


@atexit.register
def _stop_leftovers():
    for obj in list(_live):
        try:
            obj.stop(fast=True)
        except Exception:
            pass


def instance():
    return os.environ.get("CHAMASMART_INSTANCE", "test")


def logdir():
    d = os.path.join(ROOT, ".run", instance(), "logs")
    os.makedirs(d, exist_ok=True)
    return d


def tail(path, n=4000):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def request(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


class EmulatorProcess:
    """Base of the emulator fixtures: spawn(), url/port, log(), stop()."""

    _n = 0

    def spawn(self, env, name, script, args, timeout=10):
        EmulatorProcess._n += 1
        self.logpath = os.path.join(logdir(), "%s-%d-%d.log" % (name, os.getpid(), EmulatorProcess._n))
        cmd = [sys.executable, os.path.join(ROOT, "scripts", script), "--port", "0", "--log", self.logpath]
        self._err = open(self.logpath + ".err", "w")
        # stdout: only the first line is ever written, so the pipe cannot fill
        self.proc = subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=ROOT)
        _live.append(self)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 256)
                if not ch:
                    break
                line += ch
        m = re.match(rb"%s listening on (http://\S+:(\d+))" % name.encode(), line)
        if not m:
            self.stop(fast=True)
            raise AssertionError("%s did not start: %r\n%s" % (name, line, tail(self.logpath + ".err")))
        self.url = m.group(1).decode()
        self.port = int(m.group(2))
        if env is not None:
            env._procs.append(self)

    def _get(self, path):
        st, body = request("GET", self.url + path)
        assert st == 200, "%s -> %s %s" % (path, st, body)
        return json.loads(body)

    def log(self):
        return tail(self.logpath) + tail(self.logpath + ".err")

    def stop(self, expect_rc=None, fast=False):
        if self in _live:
            _live.remove(self)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if not self._err.closed:
            self._err.close()
        return self.log()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
