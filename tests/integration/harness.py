"""Shared pieces of the integration tests: the private PostgreSQL and Redis
that scripts/services.sh started for the "test" instance, fresh databases,
and chamad processes.

Conventions: a test is a function test_*(env) in tests/integration/test_*.py
that raises (assert) on failure.  Anything it starts through env is stopped
by env.cleanup() after it, pass or fail.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The one callback secret of the tests (config_validate wants at least 32
# characters of [A-Za-z0-9_-] for M-Pesa, and for any secret on a
# non-loopback listen): the M-Pesa path secret and the aggregators' and
# SMS providers' X-Chamad-Secret alike.
MPESA_SECRET = "t3st-cb-Secret_0123456789abcdefghij"
# Where the tests' Daraja emulator calls from.
MPESA_ALLOW_IPS = "safaricom:127.0.0.1"


# Ports handed out by free_port() in a parallel run (tests/run.py -j N sets
# CHAMASMART_TEST_PORTS=LO-HI, one range per worker): below Linux's
# ephemeral range, so neither another worker's bind(0) nor any outgoing
# connection can take a port between free_port() and the daemon's bind.
_ports = {"range": None, "next": None}


def free_port():
    rng = os.environ.get("CHAMASMART_TEST_PORTS")
    if not rng:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port
    lo, hi = (int(x) for x in rng.split("-"))
    if _ports["range"] != (lo, hi):
        _ports["range"], _ports["next"] = (lo, hi), lo
    # round robin through the range, so a port just closed (a daemon just
    # stopped) is not handed out again at once; skip any in use
    for _ in range(hi - lo + 1):
        port = _ports["next"]
        _ports["next"] = lo if port >= hi else port + 1
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free port in %s" % rng)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


def http(method, url, body=None, headers=None, timeout=15):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, dict(r.headers), r.read().decode())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read().decode())


class Chamad:
    """One chamad process on a free port, its log kept in memory-friendly
    file under .run/test/logs.  stop() sends SIGTERM and checks exit 0 and
    that no sanitizer report appeared."""

    def __init__(self, env, extra_env=None, args=None):
        self.env = env
        listen = (extra_env or {}).get("CHAMAD_HTTP_LISTEN")
        self.port = int(listen.rsplit(":", 1)[1]) if listen else free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        os.makedirs(env.logdir, exist_ok=True)
        self.logpath = os.path.join(env.logdir, "chamad-%d.log" % self.port)
        e = dict(os.environ)
        e.update(env.base_env())
        e["CHAMAD_HTTP_LISTEN"] = "127.0.0.1:%d" % self.port
        e.update(extra_env or {})
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen([env.bin] + (args or []), env=e, stdout=self.logf,
                                     stderr=subprocess.STDOUT, cwd=ROOT)
        env._procs.append(self)
        self.wait_listening()

    def wait_listening(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("chamad exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("chamad did not listen on %d:\n%s" % (self.port, self.log()))

    def get(self, path, **kw):
        return http("GET", self.url + path, **kw)

    def post(self, path, body=b"", **kw):
        return http("POST", self.url + path, body=body, **kw)

    def wait_health(self, status, timeout=20):
        """Polls /healthz until it answers `status`; returns the response."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.get("/healthz")
            if last.status == status:
                return last
            time.sleep(0.1)
        raise AssertionError("healthz never became %d, last %s %s" % (
            status, last and last.status, last and last.body))

    def log(self):
        if not self.logf.closed:
            self.logf.flush()
        with open(self.logpath) as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, expect_rc=0, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("chamad did not stop on SIGTERM:\n" + self.log()[-3000:])
        if not self.logf.closed:
            self.logf.close()
        text = self.log()
        check_sanitizers(text)
        if expect_rc is not None:
            assert self.proc.returncode == expect_rc, "exit %s:\n%s" % (self.proc.returncode, text[-3000:])
        return text


def check_sanitizers(text):
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in text, "sanitizer report:\n" + text[-6000:]


class Env:
    """worker: 0 in a sequential run; 1..N for each worker process of a
    parallel run (tests/run.py -j N), which then has databases of its own
    (every fresh_db name gets the suffix _w<worker>), its own Redis
    database index (worker) and its own log folder, so workers share only
    the servers."""

    def __init__(self, binpath, worker=0, setup=True):
        self.bin = binpath
        self.root = ROOT
        self.worker = worker
        # scripts/services.sh instance (and its ports) this run uses
        self.instance = os.environ.get("CHAMASMART_INSTANCE", "test")
        self.pg_port = int(os.environ.get("CHAMASMART_PG_PORT", "25433"))
        self.redis_port = int(os.environ.get("CHAMASMART_REDIS_PORT", "26380"))
        self.redis_db = worker
        self.db_suffix = "_w%d" % worker if worker else ""
        self.logdir = os.path.join(ROOT, ".run", self.instance, "logs")
        if worker:
            self.logdir = os.path.join(self.logdir, "w%d" % worker)
        self._procs = []
        self._dbs = []
        if setup:
            self.db_url = self.fresh_db("chamasmart_test")
            self.migrate(self.db_url, check=True)

    @classmethod
    def bare(cls):
        """For the servers only (fresh_db, psql with a URL): no database of
        its own, no daemon binary."""
        return cls(None, setup=False)

    # -- PostgreSQL --
    def url_for(self, db):
        return "postgresql://chamasmart@127.0.0.1:%d/%s" % (self.pg_port, db)

    def redis_url(self, db=None, port=None):
        """This worker's Redis database (db None), on the test Redis or on
        `port` (a proxy in front of it)."""
        return "redis://127.0.0.1:%d/%d" % (port or self.redis_port, self.redis_db if db is None else db)

    def base_env(self):
        return {
            "CHAMAD_DATABASE_URL": self.db_url,
            "CHAMAD_REDIS_URL": self.redis_url(),
            "CHAMAD_DATABASE_MIGRATIONS_DIR": os.path.join(ROOT, "migrations"),
            "CHAMAD_DATABASE_SCHEMA_DIR": os.path.join(ROOT, "schema"),
            # M-Pesa refuses to start without both (a test turns it on
            # with [mpesa] consumer_key)
            "CHAMAD_MPESA_CALLBACK_SECRET": MPESA_SECRET,
            "CHAMAD_MPESA_ALLOW_IPS": MPESA_ALLOW_IPS,
        }

    def psql(self, sql, db_url=None, check=True):
        """Runs sql with psql; returns rows as lists of strings (tab-separated
        unaligned output).  Raises on error when check is true."""
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t",
                            db_url or self.db_url, "-c", sql],
                           capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError("psql failed: %s\n%s" % (sql[:200], p.stderr))
        if not check:
            return p
        return [line.split("\t") for line in p.stdout.splitlines() if line != ""]

    def psql_error(self, sql, db_url=None):
        """Runs sql expecting it to fail; returns the error text."""
        p = self.psql(sql, db_url, check=False)
        assert p.returncode != 0, "expected an error from: %s" % sql[:200]
        return p.stderr

    def fresh_db(self, name):
        name += self.db_suffix
        admin = self.url_for("postgres")
        self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, admin)
        self.psql("CREATE DATABASE %s" % name, admin)
        return self.url_for(name)

    def migrate(self, db_url, check=True, migrations_dir=None, schema_dir=None):
        """chamad migrate: the migrations, then the schema files (schema/)
        that changed.  A test that builds an older database passes the
        migrations of then and an empty schema_dir."""
        e = dict(os.environ)
        e["CHAMAD_DATABASE_URL"] = db_url
        e["CHAMAD_DATABASE_MIGRATIONS_DIR"] = migrations_dir or os.path.join(ROOT, "migrations")
        e["CHAMAD_DATABASE_SCHEMA_DIR"] = os.path.join(ROOT, "schema") if schema_dir is None else schema_dir
        p = subprocess.run([self.bin, "migrate"], env=e, capture_output=True, text=True, cwd=ROOT)
        check_sanitizers(p.stdout + p.stderr)
        if check:
            assert p.returncode == 0, "migrate failed:\n%s%s" % (p.stdout, p.stderr)
        return p

    # -- services --
    def services(self, action):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "services.sh"), action, self.instance],
                       check=True, capture_output=True)

    def chamad(self, extra_env=None, args=None):
        return Chamad(self, extra_env, args)

    def cleanup(self, failed=False):
        procs, self._procs = self._procs, []
        errors = []
        for c in procs:
            if c.proc.poll() is None:
                try:
                    c.stop(expect_rc=None)
                except AssertionError as e:
                    errors.append(str(e))
            if failed:
                print("---- chamad log (%s) ----\n%s" % (c.logpath, c.log()[-4000:]))
        # Services a test stopped come back for the next one.
        self.services("start")
        if errors and not failed:
            raise AssertionError("\n".join(errors))
