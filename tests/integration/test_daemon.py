"""The daemon core against the real PostgreSQL and Redis: health, metrics,
HTTP limits, configuration, logging, signals, and recovery when either
dependency dies, stops answering, or comes back."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import ROOT, http

# tests/run.py -j N: these run alone, nothing else in flight.  They stop,
# restart or freeze (SIGSTOP) the PostgreSQL or Redis every worker shares,
# or (pg_terminate_backend) cut connections to it.
SERIAL = {"test_request_deadline", "test_redis_stalled_command_times_out", "test_redis_restart",
          "test_postgres_restart", "test_pg_terminate_backend", "test_client_gone_before_answer",
          "test_sigterm_drains_in_flight"}


def redis_pid(env):
    with open(os.path.join(ROOT, ".run", env.instance, "redis", "redis.pid")) as f:
        return int(f.read().strip())


@contextlib.contextmanager
def frozen(pid):
    """Stops a server process (it keeps its sockets open but answers
    nothing) for the length of the block, and always thaws it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def chamad_backends(env):
    return [int(r[0]) for r in env.psql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'chamad' AND datname = current_database()")]


def test_healthz_and_metrics(env):
    c = env.chamad()
    r = c.wait_health(200)
    body = r.json()
    assert body["status"] == "ok" and body["postgres"]["status"] == "up" and body["redis"]["status"] == "up"
    assert r.headers["Content-Type"] == "application/json"
    m = c.get("/metrics")
    assert m.status == 200 and m.headers["Content-Type"].startswith("text/plain")
    for series in ('chamad_http_requests_total{route="healthz",code="200"}',
                   'chamad_http_request_duration_seconds_bucket{route="healthz",le="+Inf"}',
                   "chamad_db_pool_size 4", "chamad_db_pool_busy", "chamad_db_pool_queued",
                   "chamad_db_reconnects_total", "chamad_redis_up 1", "# TYPE chamad_http_request_duration_seconds histogram"):
        assert series in m.body, series
    c.stop()


def test_http_errors_are_short_and_clear(env):
    c = env.chamad({"CHAMAD_HTTP_MAX_BODY": "1024"})
    r = c.get("/no/such/route")
    assert r.status == 404 and r.json() == {"error": "no such route"}
    r = c.post("/healthz", b"x")
    assert r.status == 405
    r = c.post("/healthz", b"x" * 2000)
    assert r.status == 413
    # junk on the wire gets 400 and the daemon carries on
    s = socket.create_connection(("127.0.0.1", c.port))
    s.sendall(b"\x00\xffGARBAGE / HTTP/9\r\n\r\n")
    s.settimeout(5)
    data = s.recv(200)
    s.close()
    assert data.startswith(b"HTTP/1.1 400"), data
    assert c.get("/healthz").status == 200
    c.stop()


def test_request_id_on_every_line(env):
    c = env.chamad()
    r = c.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r2 = c.get("/metrics", headers={"X-Request-Id": "bad id with spaces"})
    made_up = r2.headers["X-Request-Id"]
    assert made_up != "bad id with spaces" and len(made_up) > 4
    log = c.stop()
    assert "req=abc-123 GET /healthz -> 200" in log
    assert "req=%s GET /metrics -> 200" % made_up in log


def test_json_log_lines(env):
    c = env.chamad({"CHAMAD_LOG_FORMAT": "json"})
    c.get("/healthz", headers={"X-Request-Id": "json-1"})
    log = c.stop()
    lines = [l for l in log.splitlines() if l.strip()]
    assert lines
    parsed = [json.loads(l) for l in lines]  # every line is one JSON object
    assert all({"ts", "level", "msg"} <= set(p) for p in parsed)
    assert any(p.get("req") == "json-1" and "GET /healthz -> 200" in p["msg"] for p in parsed)


def test_check_config_and_help(env):
    def run(args, extra=None):
        e = dict(os.environ)
        e.update(extra or {})
        return subprocess.run([env.bin] + args, capture_output=True, text=True, env=e, cwd=ROOT)

    p = run(["--check-config", "-c", os.path.join(ROOT, "etc", "chamad.conf")])
    assert p.returncode == 0, p.stderr
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("[database]\npool_size = lots\n")
    p = run(["--check-config", "-c", f.name])
    assert p.returncode == 1 and "pool_size" in p.stderr and ":2:" in p.stderr, p.stderr
    os.unlink(f.name)
    p = run(["--check-config"], {"CHAMAD_REDIS_URL": "http://wrong"})
    assert p.returncode == 1 and "CHAMAD_REDIS_URL" in p.stderr, p.stderr
    p = run(["--check-config", "-c", "/nonexistent.conf"])
    assert p.returncode == 1 and "/nonexistent.conf" in p.stderr
    p = run(["--help"])
    assert p.returncode == 0
    for word in ("CHAMAD_DATABASE_URL", "CHAMAD_REDIS_URL", "CHAMAD_HTTP_LISTEN", "migrate", "--check-config"):
        assert word in p.stdout, word
    # every key of the table is documented in etc/chamad.conf with its default
    conf = open(os.path.join(ROOT, "etc", "chamad.conf")).read()
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("[") and "default" in line:
            section, key = line[1:].split("]")[0], line.split("]")[1].split()[0]
            assert "[%s]" % section in conf and ("# %s = " % key in conf or "\n%s = " % key in conf), key


def test_request_deadline(env):
    """A request whose work outlives [http] request_timeout_ms gets 503 in
    time; the late answer from Redis is then dropped safely."""
    c = env.chamad({"CHAMAD_HTTP_REQUEST_TIMEOUT_MS": "300", "CHAMAD_REDIS_COMMAND_TIMEOUT_MS": "2000"})
    c.wait_health(200)
    with frozen(redis_pid(env)):
        r = c.get("/healthz")
    # the request's own deadline answered, not Redis' later timeout
    assert r.status == 503 and r.json()["error"] == "request timed out, please try again", r.body
    c.wait_health(200)
    c.stop()


def test_redis_stalled_command_times_out(env):
    c = env.chamad({"CHAMAD_REDIS_COMMAND_TIMEOUT_MS": "300"})
    c.wait_health(200)
    with frozen(redis_pid(env)):
        r = c.get("/healthz")
        assert r.status == 503, r.body
        assert r.json()["down"] == ["redis"] and "timed out" in r.json()["redis"]["error"], r.body
        # the timeout dropped the connection: the next command fails fast
        # (refused as not connected) instead of waiting on a stalled server
        r = c.get("/healthz")
        assert r.status == 503 and "redis is not connected" in r.json()["redis"]["error"], r.body
    c.wait_health(200)
    assert "chamad_redis_timeouts_total 1" in c.get("/metrics").body or \
        "chamad_redis_timeouts_total" in c.get("/metrics").body
    c.stop()


def test_redis_restart(env):
    c = env.chamad()
    c.wait_health(200)
    env.services("redis-stop")
    r = c.wait_health(503, timeout=10)
    assert r.json()["down"] == ["redis"], r.body
    assert "chamad_redis_up 0" in c.get("/metrics").body
    env.services("redis-start")
    c.wait_health(200, timeout=15)
    m = c.get("/metrics").body
    assert "chamad_redis_up 1" in m and "chamad_redis_reconnects_total 0" not in m
    c.stop()


def test_redis_handshake_failure_is_named(env):
    """A wrong Redis password: the connection is dropped from inside the
    AUTH reply callback (the path our adapter's re-entrancy guard protects);
    /healthz names Redis and the log says why."""
    c = env.chamad({"CHAMAD_REDIS_URL": "redis://:wrong@127.0.0.1:%d/%d" % (env.redis_port, env.redis_db),
                    "CHAMAD_REDIS_RECONNECT_MIN_MS": "50", "CHAMAD_REDIS_RECONNECT_MAX_MS": "100"})
    r = c.wait_health(503)
    assert r.json()["down"] == ["redis"], r.body
    time.sleep(0.5)  # several attempts, each dropped inside the callback
    log = c.stop()
    assert "handshake failed" in log and "AUTH" in log


def test_postgres_restart(env):
    c = env.chamad()
    c.wait_health(200)
    env.services("pg-stop")
    try:
        r = c.wait_health(503, timeout=10)
        assert r.json()["down"] == ["postgres"], r.body
        # while PostgreSQL is down, queries are refused at once as
        # unavailable; none waits for a connection or its deadline
        for _ in range(5):
            r = c.get("/healthz")
            assert r.status == 503 and r.json()["postgres"]["error"].startswith("unavailable"), r.body
        assert "chamad_db_pool_connected 0" in c.get("/metrics").body
    finally:
        env.services("pg-start")
    c.wait_health(200, timeout=20)
    assert "chamad_db_pool_connected 4" in c.get("/metrics").body or c.get("/healthz").status == 200
    c.stop()


def test_pg_terminate_backend(env):
    c = env.chamad()
    c.wait_health(200)
    before = chamad_backends(env)
    assert len(before) == 4, before
    env.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE application_name = 'chamad' AND datname = current_database()")
    # every request gets an answer (200 or 503, never a hang) and it recovers
    for _ in range(20):
        assert c.get("/healthz").status in (200, 503)
    c.wait_health(200)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(chamad_backends(env)) < 4:
        time.sleep(0.1)
    after = chamad_backends(env)
    assert len(after) == 4 and not set(after) & set(before), (before, after)
    m = c.get("/metrics").body
    assert "chamad_db_reconnects_total 0" not in m
    log = c.stop()
    assert "connection lost" in log


def test_db_queue_bound_and_query_timeout(env):
    """One connection, no waiting room: with the backend frozen, the running
    query hits the client-side timeout (and the connection is replaced),
    and a second query is refused at once as busy."""
    c = env.chamad({"CHAMAD_DATABASE_POOL_SIZE": "1", "CHAMAD_DATABASE_QUEUE_MAX": "0",
                    "CHAMAD_DATABASE_QUERY_TIMEOUT_MS": "800", "CHAMAD_HTTP_REQUEST_TIMEOUT_MS": "5000"})
    c.wait_health(200)
    (pid,) = chamad_backends(env)
    results = {}
    with frozen(pid):
        t = threading.Thread(target=lambda: results.setdefault("slow", c.get("/healthz")))
        t.start()
        time.sleep(0.2)
        busy = c.get("/healthz")
        t.join()
    assert busy.status == 503 and "busy" in busy.json()["postgres"]["error"], busy.body
    slow = results["slow"]
    assert slow.status == 503 and "timeout" in slow.json()["postgres"]["error"], slow.body
    c.wait_health(200)
    assert "chamad_db_timeouts_total 1" in c.get("/metrics").body
    c.stop()


def test_client_gone_before_answer(env):
    c = env.chamad({"CHAMAD_REDIS_COMMAND_TIMEOUT_MS": "700"})
    c.wait_health(200)
    with frozen(redis_pid(env)):
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", c.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.close()
        time.sleep(1.2)
    c.wait_health(200)
    c.stop()  # exit 0 and, under ASan, no use-after-free


def test_sigterm_drains_in_flight(env):
    c = env.chamad({"CHAMAD_REDIS_COMMAND_TIMEOUT_MS": "1500", "CHAMAD_HTTP_REQUEST_TIMEOUT_MS": "5000"})
    c.wait_health(200)
    out = {}
    with frozen(redis_pid(env)):
        t = threading.Thread(target=lambda: out.setdefault("r", c.get("/healthz")))
        t.start()
        time.sleep(0.3)
        c.signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = False
        try:
            socket.create_connection(("127.0.0.1", c.port), timeout=1).close()
        except OSError:
            refused = True
        t.join()
    assert refused, "still accepting after SIGTERM"
    assert out["r"].status == 503 and out["r"].json()["down"] == ["redis"], out["r"].body
    c.proc.wait(timeout=10)
    log = c.stop()
    assert "drained" in log and c.proc.returncode == 0


def test_sighup_reload_without_dropping(env):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("[log]\nlevel = info\n")
        path = f.name
    c = env.chamad(args=["-c", path])
    c.wait_health(200)
    failures = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            r = c.get("/healthz")
            if r.status != 200:
                failures.append(r.status)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        with open(path, "w") as f:
            f.write("[log]\nlevel = debug\n[database]\npool_size = 9\n")
        c.signal(signal.SIGHUP)
        time.sleep(0.5)
        with open(path, "w") as f:
            f.write("[log]\nlevel = nonsense\n")
        c.signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    os.unlink(path)
    assert not failures, failures
    assert c.get("/healthz").status == 200
    log = c.stop()
    assert "reload: [log] level changed" in log
    assert "[database] pool_size changed but needs a restart" in log
    assert "reload refused" in log and "[log] level" in log
