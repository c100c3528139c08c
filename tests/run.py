#!/usr/bin/env python3
"""Runs every test: the C unit tests, then the integration tests under
tests/integration (test_*.py, each test_* function in file order, given the
shared Env).  Ends with the line "N passed, N failed".

    tests/run.py --bin bin/chamad --unit bin/unit-tests [-k SUBSTRING] [-j N]

-j N (default: two per core, at most 8) runs the integration tests on N
worker processes, each with its own harness.Env (worker=1..N: its own
databases, Redis database index, port range and log folder).  A module's
SERIAL (True, or a set of its test names) makes its tests run alone, after
the others, with nothing else in flight: tests that stop or freeze the
shared servers, use the one Kannel, or measure time.  -j 1 runs everything
one after the other in this process with one Env, as before.
"""
import argparse
import contextlib
import importlib.util
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))

import harness  # noqa: E402


def run_unit(path, extra_env=None):
    e = dict(os.environ)
    e.update(extra_env or {})
    p = subprocess.run([path], capture_output=True, text=True, env=e, cwd=harness.ROOT)
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    m = re.search(r"^(\d+) passed, (\d+) failed$", p.stdout, re.M)
    if not m:
        print("FAIL %s: no summary line (exit %d)" % (path, p.returncode))
        return 0, 1
    passed, failed = int(m.group(1)), int(m.group(2))
    if p.returncode != 0 and failed == 0:
        failed = 1
    return passed, failed


def run_fuzz(seconds, jobs=1):
    """Each libFuzzer target for `seconds` on a copy of its seed corpus: a
    test that fails on any crash, leak or broken invariant.  `jobs` targets
    at once (one per core: each still has a core of its own for its
    seconds); built once first, since tests/fuzz/run.sh builds too."""
    passed = failed = 0
    names = subprocess.run(["make", "-s", "-f", os.path.join(HERE, "fuzz", "fuzz.mk"), "fuzz-names"],
                           capture_output=True, text=True, cwd=harness.ROOT, check=True).stdout.split()
    if jobs > 1:
        subprocess.run(["make", "-s", "-f", os.path.join(HERE, "fuzz", "fuzz.mk"), "fuzz"],
                       capture_output=True, cwd=harness.ROOT)
    running = []
    todo = list(names)
    while todo or running:
        while todo and len(running) < jobs:
            t = todo.pop(0)
            running.append((t, subprocess.Popen(["bash", os.path.join(HERE, "fuzz", "run.sh"), str(seconds), t],
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                cwd=harness.ROOT)))
        t, proc = running.pop(0)
        out, err = proc.communicate()
        m = re.search(r"^fuzz-%s: (\d+) runs, (\d+) crashes" % t, out, re.M)
        if proc.returncode == 0 and m and m.group(2) == "0":
            passed += 1
            print("ok   fuzz/%s (%s runs in %d s)" % (t, m.group(1), seconds), flush=True)
        else:
            failed += 1
            print("FAIL fuzz/%s\n%s%s" % (t, out, err), flush=True)
    return passed, failed


def collect(pattern):
    """The integration tests in run order, as (file, name, serial): each
    test_* function of tests/integration/test_*.py in file order.  serial:
    the module's SERIAL is True, or a collection naming the function (in a
    parallel run such a test runs alone, nothing else in flight)."""
    idir = os.path.join(HERE, "integration")
    tests = []
    for fname in sorted(os.listdir(idir)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        mod = load(fname)
        names = [n for n in vars(mod) if n.startswith("test_") and callable(getattr(mod, n))]
        names.sort(key=lambda n: getattr(mod, n).__code__.co_firstlineno)
        serial = getattr(mod, "SERIAL", False)
        for n in names:
            full = "%s.%s" % (fname[:-3], n)
            if pattern and pattern not in full:
                continue
            tests.append((fname, n, serial is True or (serial is not False and n in serial)))
    return tests


_mods = {}


def load(fname):
    if fname not in _mods:
        spec = importlib.util.spec_from_file_location(fname[:-3], os.path.join(HERE, "integration", fname))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _mods[fname] = mod
    return _mods[fname]


def run_one(env, fname, n):
    """One test, as today: its ok/FAIL line, on failure the traceback and
    the log tails of what it started.  Returns True if it passed."""
    full = "%s.%s" % (fname[:-3], n)
    t0 = time.monotonic()
    try:
        getattr(load(fname), n)(env)
        env.cleanup()
        print("ok   integration/%s (%.1fs)" % (full, time.monotonic() - t0), flush=True)
        return True
    except Exception:
        print("FAIL integration/%s (%.1fs)" % (full, time.monotonic() - t0), flush=True)
        traceback.print_exc(file=sys.stdout)
        try:
            env.cleanup(failed=True)
        except Exception:
            traceback.print_exc(file=sys.stdout)
        return False


def worker_main(worker, binpath, ports, conn):
    """A worker process of a parallel run: its own Env (databases, Redis
    index, log folder, port range); runs the tests the parent sends, one at
    a time, and sends back (passed, output, seconds) for each, the output
    (ok/FAIL line, traceback, log tails) kept whole so that the parent
    prints it in one piece."""
    os.environ["CHAMASMART_TEST_PORTS"] = ports
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            env = harness.Env(binpath, worker=worker)
    except Exception:
        conn.send(("init", False, buf.getvalue() + traceback.format_exc(), 0.0))
        return
    conn.send(("init", True, buf.getvalue(), 0.0))
    while True:
        task = conn.recv()
        if task is None:
            break
        fname, n = task
        buf = io.StringIO()
        t0 = time.monotonic()
        with contextlib.redirect_stdout(buf):
            ok = run_one(env, fname, n)
        conn.send(("%s.%s" % (fname[:-3], n), ok, buf.getvalue(), time.monotonic() - t0))
    conn.close()


def durations_path():
    return os.path.join(harness.ROOT, ".run", os.environ.get("CHAMASMART_INSTANCE", "test"), "durations.json")


def run_parallel(binpath, tests, jobs):
    """The tests on `jobs` worker processes: the parallel ones longest
    first (by the last run's times, .run/<instance>/durations.json), then
    each serial one alone.  Returns (passed, failed)."""
    try:
        with open(durations_path()) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = {}
    par = [t for t in tests if not t[2]]
    ser = [t for t in tests if t[2]]
    # unknown tests first (they may be long); the sort is stable: file order otherwise
    par.sort(key=lambda t: -last.get("%s.%s" % (t[0][:-3], t[1]), 1e9))
    jobs = max(1, min(jobs, len(par)))
    ctx = multiprocessing.get_context("spawn")
    # per-worker port ranges, below the ephemeral range (32768-) and above
    # the services' ports (scripts/services.sh, scripts/kannel.sh)
    width = min(500, 5500 // jobs)
    workers = {}
    for w in range(1, jobs + 1):
        lo = 27000 + (w - 1) * width
        a, b = ctx.Pipe()
        p = ctx.Process(target=worker_main, args=(w, binpath, "%d-%d" % (lo, lo + width - 1), b), daemon=True)
        p.start()
        b.close()
        workers[a] = {"proc": p, "task": None, "ready": False}
    passed = failed = 0
    times = dict(last)
    queue = list(par)

    def busy():
        return [c for c, w in workers.items() if w["task"] is not None or not w["ready"]]

    def dispatch(conn, t):
        workers[conn]["task"] = t
        conn.send((t[0], t[1]))

    while queue or ser or busy():
        for conn, w in workers.items():
            if w["ready"] and w["task"] is None:
                if queue:
                    dispatch(conn, queue.pop(0))
                elif ser and not busy():
                    dispatch(conn, ser.pop(0))
                    break  # alone: nothing else goes out until it is back
        live = busy()
        if not live:
            continue
        for conn in multiprocessing.connection.wait(live):
            w = workers[conn]
            try:
                name, ok, out, secs = conn.recv()
            except EOFError:
                del workers[conn]
                if w["task"] is not None:
                    failed += 1
                    print("FAIL integration/%s.%s (worker died, exit %s)" % (
                        w["task"][0][:-3], w["task"][1], w["proc"].exitcode), flush=True)
                else:
                    raise SystemExit("worker died at start (exit %s)" % w["proc"].exitcode)
                if not workers:
                    raise SystemExit("every worker died")
                continue
            sys.stdout.write(out)
            sys.stdout.flush()
            if name == "init":
                if not ok:
                    raise SystemExit("a worker could not set up its Env")
                w["ready"] = True
                continue
            w["task"] = None
            times[name] = round(secs, 2)
            if ok:
                passed += 1
            else:
                failed += 1
    for conn, w in workers.items():
        conn.send(None)
    for conn, w in workers.items():
        w["proc"].join(timeout=60)
    try:
        os.makedirs(os.path.dirname(durations_path()), exist_ok=True)
        with open(durations_path(), "w") as f:
            json.dump(times, f, indent=0, sort_keys=True)
    except OSError:
        pass
    return passed, failed


def default_jobs():
    """Two workers a core: the integration tests mostly wait (daemons
    starting, timeouts); at most 8 (PostgreSQL's max_connections = 200,
    Redis's databases)."""
    return max(1, min(8, 2 * (os.cpu_count() or 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--unit")
    ap.add_argument("--dbtests", help="C tests of the PostgreSQL pool (need the server)")
    ap.add_argument("-k", dest="pattern", default="")
    ap.add_argument("-j", "--jobs", type=int, default=default_jobs(),
                    help="integration tests on this many worker processes (default %(default)s; "
                         "1: one after the other in this process)")
    ap.add_argument("--fuzz", type=int, default=0, metavar="SECONDS",
                    help="also run each libFuzzer target this long (tests/fuzz/run.sh)")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error("-j wants at least 1")

    passed = failed = 0
    if args.unit and not args.pattern:
        p, f = run_unit(args.unit)
        passed += p
        failed += f

    if args.jobs == 1:
        env = harness.Env(os.path.abspath(args.bin))
    if args.dbtests and not args.pattern:
        if args.jobs == 1:
            url = env.fresh_db("chamasmart_pooltest")
        else:
            url = harness.Env.bare().fresh_db("chamasmart_pooltest")
        p, f = run_unit(args.dbtests, {"CHAMAD_DATABASE_URL": url})
        passed += p
        failed += f
    if args.fuzz and not args.pattern:
        p, f = run_fuzz(args.fuzz, 1 if args.jobs == 1 else (os.cpu_count() or 1))
        passed += p
        failed += f
    tests = collect(args.pattern)
    if args.jobs == 1:
        for fname, n, _ in tests:
            if run_one(env, fname, n):
                passed += 1
            else:
                failed += 1
    else:
        p, f = run_parallel(os.path.abspath(args.bin), tests, args.jobs)
        passed += p
        failed += f
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
