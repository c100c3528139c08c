"""SMS test fixtures: the Africa's Talking SMS emulator (scripts/at-sms-emulator)
and Debian's Kannel with its fake SMSC (scripts/kannel.sh).

    from sms_fixtures import ATEmulator, Kannel

    at = ATEmulator(env)                       # free port; env.cleanup() stops it
    chamad = env.chamad({"CHAMAD_SMS_AT_URL": at.send_url, ...})
    at.control(status_code=405, status_count=1)
    msgs = at.wait_messages(1)                 # [{"id","to","message","from",...}]
    at.stop()

    k = Kannel(env, inbound_url=chamad.url + "/sms/kannel/inbound?from=%p&to=%P&text=%a&id=%I")
    k.inject("+254712345678", "12345", "BAL 4821")   # an MO SMS, as if typed on a phone
    k.wait_received(1)                         # [("CHAMASMART", "+254712345678", "text")]
    k.stop()

Both take env (tests/integration/harness.py Env) optionally: given, they are
added to env's process list so env.cleanup() stops them after the test, pass
or fail, and prints their log tail on failure.  Without env, call stop() (or
use them as context managers); anything left is stopped at interpreter exit.
"""
import json
import os
import re
import select
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from emulator_proc import EmulatorProcess, ROOT, _live, instance as _instance, logdir as _logdir, tail as _tail, request as _request

EMULATOR = os.path.join(ROOT, "scripts", "at-sms-emulator")
KANNEL_SH = os.path.join(ROOT, "scripts", "kannel.sh")



class ATEmulator(EmulatorProcess):
    """scripts/at-sms-emulator as a subprocess on a free loopback port.

    url          http://127.0.0.1:PORT
    send_url     url + "/version1/messaging" (what chamad posts to)
    api_key, username   what it accepts
    logpath      its --log file (one line per message); stderr goes to logpath + ".err"
    """

    def __init__(self, env=None, api_key="test-api-key", username="sandbox", dlr_url=None,
                 dlr_delay_ms=None, dlr_status=None, args=(), timeout=10):
        self.api_key = api_key
        self.username = username
        extra = ["--api-key", api_key, "--username", username] + \
            (["--dlr-url", dlr_url] if dlr_url else []) + \
            (["--dlr-delay-ms", str(dlr_delay_ms)] if dlr_delay_ms is not None else []) + \
            (["--dlr-status", dlr_status] if dlr_status else []) + list(args)
        self.spawn(None, "at-sms-emulator", "at-sms-emulator", extra, timeout)
        self.send_url = self.url + "/version1/messaging"
        if env is not None:
            env._procs.append(self)

    # -- the control API --
    def control(self, **kw):
        """POST /_control; returns the new state.  Keys: fail_http, drop,
        drop_after_accept, slow_ms, status_code, status_count, number_status,
        dlr_url, dlr_status, dlr_delay_ms, dlr_failure_reason,
        dlr_network_code, reset (see the script's header)."""
        st, body = _request("POST", self.url + "/_control", json.dumps(kw).encode(),
                            {"Content-Type": "application/json"})
        assert st == 200, "control %r -> %s %s" % (kw, st, body)
        return json.loads(body)

    def reset(self):
        return self.control(reset=True)

    def messages(self):
        """Every recipient that got 101 Success, oldest first."""
        return self._get("/_messages")

    def requests(self):
        return self._get("/_requests")

    def dlrs(self):
        return self._get("/_dlrs")

    def stats(self):
        return self._get("/_stats")

    def clear(self):
        st, body = _request("DELETE", self.url + "/_messages")
        assert st == 200, body

    def wait_messages(self, n, timeout=10):
        """Waits until at least n messages were accepted; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.messages()
            if len(m) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(m) >= n, "expected %d messages at the AT emulator, got %d: %r" % (n, len(m), m)
        return m

    def send(self, to, message, sender=None, api_key=None, username=None, accept_json=True):
        """Posts like AT's SDK would (for testing the emulator itself)."""
        f = {"username": username or self.username, "to": to, "message": message}
        if sender:
            f["from"] = sender
        h = {"apiKey": api_key or self.api_key, "Content-Type": "application/x-www-form-urlencoded"}
        if accept_json:
            h["Accept"] = "application/json"
        return _request("POST", self.send_url, urllib.parse.urlencode(f).encode(), h)



class _KannelProc:
    """What harness.Env.cleanup() expects of a process: poll()."""

    def __init__(self, kannel):
        self.k = kannel

    def poll(self):
        return None if self.k.running else 0


_GOT = re.compile(r"Got message \d+: <(.*)>$")
_TYPES = ("text", "data", "ucs-2", "udh")


def _urlbytes(s):
    return urllib.parse.unquote_to_bytes(s.replace("+", " "))


def _decode(b, ucs2=False):
    """Kannel hands fakesmsc UCS-2 bodies as the sendsms charset gave them:
    UTF-8 with charset=UTF-8 (its default), UTF-16BE with charset=UTF-16BE."""
    if ucs2:
        if b"\x00" not in b:
            try:
                return b.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return b.decode("utf-16-be", "replace")
    return b.decode("utf-8", "replace")


def _concat_info(udh):
    """(ref, total, seq) from a UDH with a concatenation element, else None."""
    i = 1
    while i + 1 < len(udh):
        iei, ln = udh[i], udh[i + 1]
        v = udh[i + 2:i + 2 + ln]
        if iei == 0x00 and ln == 3:
            return v[0], v[1], v[2]
        if iei == 0x08 and ln == 4:
            return (v[0] << 8) | v[1], v[2], v[3]
        i += 2 + ln
    return None


class Kannel:
    """scripts/kannel.sh for one instance (default: $CHAMASMART_INSTANCE or
    "test"), started with CHAMAD_INBOUND_URL = inbound_url.  A running Kannel
    with the same config is reused; a different inbound_url restarts it.

    sendsms_url, user, password   smsbox's sendsms and the sendsms-user
    fifo, out                     fakesmsc's stdin FIFO and its output file
    """

    def __init__(self, env=None, inbound_url=None, instance=None, start=True):
        self.instance = instance or _instance()
        self.inbound_url = inbound_url
        self.env = env
        self.running = False
        e = self._env()
        out = subprocess.run(["bash", KANNEL_SH, "env", self.instance], env=e,
                             capture_output=True, text=True, check=True).stdout
        v = {}
        for tok in shlex.split(out):
            if "=" in tok and tok != "export":
                k, _, val = tok.partition("=")
                v[k] = val
        self.sendsms_url = v["KANNEL_SENDSMS_URL"]
        self.user = v["KANNEL_USER"]
        self.password = v["KANNEL_PASS"]
        self.fifo = v["KANNEL_FAKESMSC_IN"]
        self.out = v["KANNEL_FAKESMSC_OUT"]
        self.admin_url = v["KANNEL_ADMIN_URL"]
        self.logpath = os.path.join(os.path.dirname(self.out), "smsbox.log")
        self.proc = _KannelProc(self)
        self._offset = 0
        if start:
            self.start()

    def _env(self, extra=None):
        e = dict(os.environ)
        if self.inbound_url:
            e["CHAMAD_INBOUND_URL"] = self.inbound_url
        e.update(extra or {})
        return e

    def start(self):
        p = subprocess.run(["bash", KANNEL_SH, "start", self.instance], env=self._env(),
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise AssertionError("kannel.sh start %s failed:\n%s%s" % (self.instance, p.stdout, p.stderr))
        self.running = True
        self.clear()  # a reused Kannel keeps fakesmsc.out: only what comes now counts
        if self not in _live:
            _live.append(self)
        if self.env is not None and self not in self.env._procs:
            self.env._procs.append(self)
        return self

    def stop(self, expect_rc=None, fast=False):
        """Stops all three processes.  fast: SIGKILL at once (0.05 s instead of ~1 s)."""
        if self in _live:
            _live.remove(self)
        extra = {"KANNEL_STOP_WAIT": "0"} if fast else None
        subprocess.run(["bash", KANNEL_SH, "stop", self.instance], env=self._env(extra),
                       capture_output=True, text=True)
        self.running = False
        return self.log()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        d = os.path.dirname(self.out)
        return "".join("== %s ==\n%s\n" % (n, _tail(os.path.join(d, n), 2000))
                       for n in ("fakesmsc.out", "bearerbox.log", "smsbox.log"))

    # -- MO: the phone sends --
    def inject(self, sender, to, text):
        """One MO SMS from `sender` to `to` (the short code), written to
        fakesmsc's FIFO as "SENDER TO text TEXT".  Kannel then calls the
        get-url.  Text is raw UTF-8 on one line, at most 255 bytes in all."""
        for name, val in (("sender", sender), ("to", to)):
            assert val and not re.search(r"\s", val), "%s must be one word: %r" % (name, val)
        assert "\n" not in text and "\r" not in text, "fakesmsc takes one line per message"
        line = ("%s %s text %s\n" % (sender, to, text)).encode("utf-8")
        assert len(line) <= 255, "fakesmsc reads at most 255 bytes per line (%d)" % len(line)
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:  # ENXIO: no reader, ENOENT: not started
            raise AssertionError("fakesmsc is not reading %s: %s" % (self.fifo, e))
        try:
            n = os.write(fd, line)  # < PIPE_BUF: all or nothing
            assert n == len(line)
        finally:
            os.close(fd)

    # -- MT: what reached the phones --
    def raw_received(self):
        """The "Got message" lines of fakesmsc.out since start (or clear())."""
        try:
            with open(self.out, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        out = []
        for ln in data.decode("utf-8", "replace").splitlines():
            m = _GOT.search(ln)
            if m:
                out.append(m.group(1))
        return out

    def received(self):
        """MT messages fakesmsc received, as (from, to, text) in arrival
        order.  Concatenated parts (UDH) are joined; a text with a newline,
        which fakesmsc shows as two lines, is put back together; data and
        UCS-2 bodies are decoded."""
        msgs = []
        groups = {}
        for content in self.raw_received():
            p = content.split(" ", 3)
            if len(p) < 4 or p[2] not in _TYPES:
                if msgs and msgs[-1] is not None:  # continuation after a newline
                    f, t, x = msgs[-1]
                    msgs[-1] = (f, t, x + "\n" + content)
                continue
            sender, to, typ, rest = p
            if typ == "text":
                msgs.append((sender, to, rest))
            elif typ == "data":
                msgs.append((sender, to, _decode(_urlbytes(rest))))
            elif typ == "ucs-2":
                msgs.append((sender, to, _decode(_urlbytes(rest), ucs2=True)))
            else:  # udh UDH data|ucs-2 BODY
                q = rest.split(" ", 2)
                udh = _urlbytes(q[0])
                body = _urlbytes(q[2]) if len(q) == 3 else b""
                ucs2 = len(q) == 3 and q[1] == "ucs-2"
                ci = _concat_info(udh)
                if not ci:
                    msgs.append((sender, to, _decode(body, ucs2)))
                    continue
                ref, total, seq = ci
                key = (sender, to, ref, total)
                g = groups.get(key)
                if g is None or seq in g["parts"]:
                    g = groups[key] = {"index": len(msgs), "parts": {}}
                    msgs.append(None)  # placeholder, kept in order of the first part
                g["parts"][seq] = (body, ucs2)
                if len(g["parts"]) == total:
                    parts = [g["parts"][i] for i in sorted(g["parts"])]
                    whole = b"".join(b for b, _ in parts)
                    msgs[g["index"]] = (sender, to, _decode(whole, parts[0][1]))
                    del groups[key]
        return [m for m in msgs if m is not None]

    def wait_received(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            r = self.received()
            if len(r) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(r) >= n, "expected %d MT messages at fakesmsc, got %d: %r" % (n, len(r), r)
        return r

    def clear(self):
        """received() forgets what fakesmsc got so far."""
        try:
            self._offset = os.path.getsize(self.out)
        except OSError:
            self._offset = 0

    # -- MT: sending as chamad would --
    def sendsms(self, to, text, sender=None, dlr_url=None, dlr_mask=None, **extra):
        """GET sendsms (smsbox takes its parameters in the query; a
        form-encoded POST gets 400 "Invalid content-type").  Returns
        (status, body): (202, "0: Accepted for delivery") on success."""
        q = {"username": self.user, "password": self.password, "to": to, "text": text}
        if sender:
            q["from"] = sender
        if dlr_url:
            q["dlr-url"] = dlr_url
            q["dlr-mask"] = str(dlr_mask if dlr_mask is not None else 31)
        elif dlr_mask is not None:
            q["dlr-mask"] = str(dlr_mask)
        q.update({k.replace("_", "-"): str(v) for k, v in extra.items()})
        return _request("GET", self.sendsms_url + "?" + urllib.parse.urlencode(q))
