#!/usr/bin/env python3
"""Runs every test: the C unit tests, then the integration tests under
tests/integration (test_*.py, each test_* function in file order, given the
shared Env).  Ends with the line "N passed, N failed".

    tests/run.py --bin bin/chamad --unit bin/unit-tests [-k SUBSTRING]
"""
import argparse
import importlib.util
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


def run_fuzz(seconds):
    """Each libFuzzer target for `seconds` on a copy of its seed corpus: a
    test that fails on any crash, leak or broken invariant."""
    passed = failed = 0
    names = subprocess.run(["make", "-s", "-f", os.path.join(HERE, "fuzz", "fuzz.mk"), "fuzz-names"],
                           capture_output=True, text=True, cwd=harness.ROOT, check=True).stdout.split()
    for t in names:
        p = subprocess.run(["bash", os.path.join(HERE, "fuzz", "run.sh"), str(seconds), t], capture_output=True,
                           text=True, cwd=harness.ROOT)
        m = re.search(r"^fuzz-%s: (\d+) runs, (\d+) crashes" % t, p.stdout, re.M)
        if p.returncode == 0 and m and m.group(2) == "0":
            passed += 1
            print("ok   fuzz/%s (%s runs in %d s)" % (t, m.group(1), seconds))
        else:
            failed += 1
            print("FAIL fuzz/%s\n%s%s" % (t, p.stdout, p.stderr))
    return passed, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--unit")
    ap.add_argument("--dbtests", help="C tests of the PostgreSQL pool (need the server)")
    ap.add_argument("-k", dest="pattern", default="")
    ap.add_argument("--fuzz", type=int, default=0, metavar="SECONDS",
                    help="also run each libFuzzer target this long (tests/fuzz/run.sh)")
    args = ap.parse_args()

    passed = failed = 0
    if args.unit and not args.pattern:
        p, f = run_unit(args.unit)
        passed += p
        failed += f

    env = harness.Env(os.path.abspath(args.bin))
    if args.dbtests and not args.pattern:
        p, f = run_unit(args.dbtests, {"CHAMAD_DATABASE_URL": env.fresh_db("chamasmart_pooltest")})
        passed += p
        failed += f
    if args.fuzz and not args.pattern:
        p, f = run_fuzz(args.fuzz)
        passed += p
        failed += f
    idir = os.path.join(HERE, "integration")
    for fname in sorted(os.listdir(idir)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(fname[:-3], os.path.join(idir, fname))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        names = [n for n in vars(mod) if n.startswith("test_") and callable(getattr(mod, n))]
        names.sort(key=lambda n: getattr(mod, n).__code__.co_firstlineno)
        for n in names:
            full = "%s.%s" % (fname[:-3], n)
            if args.pattern and args.pattern not in full:
                continue
            t0 = time.monotonic()
            try:
                getattr(mod, n)(env)
                env.cleanup()
                passed += 1
                print("ok   integration/%s (%.1fs)" % (full, time.monotonic() - t0), flush=True)
            except Exception:
                failed += 1
                print("FAIL integration/%s (%.1fs)" % (full, time.monotonic() - t0), flush=True)
                traceback.print_exc(file=sys.stdout)
                try:
                    env.cleanup(failed=True)
                except Exception:
                    traceback.print_exc(file=sys.stdout)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
