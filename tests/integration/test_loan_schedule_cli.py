"""`chamad loan-schedule`: the schedule as CSV, to the cent, for every case
in tests/data/loan_schedules/ (expected rows computed there by gen.py with
Python fractions, independently of the C code), and bad arguments refused
with exit 2 and a line naming the option.  Needs no services: the command
reads no configuration, database or network."""
import datetime
import os
import subprocess

from harness import ROOT

CASES = os.path.join(ROOT, "tests", "data", "loan_schedules")
# a refusal's name (the .err file) -> the option the message names
OPTION = {"principal": "--principal", "term": "--term", "rate": "--rate-bp", "grace": "--grace",
          "start": "--start"}


def run(env, args, extra_env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CHAMAD_")}
    e.update(extra_env or {})
    return subprocess.run([env.bin, "loan-schedule"] + args, capture_output=True, text=True, env=e, cwd=ROOT,
                          timeout=60)


def case_args(name):
    """A case's .in as command-line options (grace only when given)."""
    kv = dict(line.split("=", 1) for line in open(os.path.join(CASES, name + ".in")).read().splitlines())
    args = []
    for k, v in kv.items():
        if k == "grace_kind" and v == "none":
            continue
        if k == "grace" and v == "0":
            continue
        args += ["--" + k.replace("_", "-"), v]
    return args


def without(args, option):
    i = args.index(option)
    return args[:i] + args[i + 2:]


def case_names():
    return sorted(f[:-3] for f in os.listdir(CASES) if f.endswith(".in"))


def test_loan_schedule_cases_are_the_generators(env):
    """The files are what gen.py computes now (nobody edited an expected
    row by hand to make the C code pass)."""
    p = subprocess.run(["python3", os.path.join(CASES, "gen.py"), "--check"], capture_output=True, text=True,
                       cwd=CASES, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_loan_schedule_cli_prints_every_case(env):
    schedules = refusals = 0
    for name in case_names():
        p = run(env, case_args(name))
        csv = os.path.join(CASES, name + ".csv")
        if os.path.exists(csv):
            assert p.returncode == 0 and p.stderr == "", (name, p.returncode, p.stderr)
            assert p.stdout == open(csv).read(), (name, p.stdout[:400])
            schedules += 1
        else:
            why = open(os.path.join(CASES, name + ".err")).read().strip()
            assert p.returncode == 2 and p.stdout == "", (name, p.returncode, p.stdout)
            assert p.stderr.startswith("chamad: loan-schedule: " + OPTION[why] + ": "), (name, p.stderr)
            refusals += 1
    assert schedules >= 30 and refusals >= 5, (schedules, refusals)


def test_loan_schedule_cli_bad_arguments(env):
    good = case_args("02_domain_reducing_2_3")
    bad = [
        (["--bogus", "1"] + good, "--bogus"),
        (good + ["--principal"], "--principal"),                 # no value
        (good + ["extra"], '"extra"'),
        (without(good, "--frequency"), "--frequency is required"),
        (without(good, "--rate-bp"), "--rate-bp is required"),
        (without(good, "--principal"), "--principal is required"),
        (good + ["--method", "annuity"], '--method "annuity"'),
        (good + ["--per", "week"], '--per "week"'),
        (good + ["--frequency", "daily"], '--frequency "daily"'),
        (good + ["--principal", "1,000"], '--principal "1,000"'),
        (good + ["--principal", "-5"], '--principal "-5"'),
        (good + ["--principal", "10.005"], '--principal "10.005"'),
        (good + ["--term", "six"], '--term "six"'),
        (good + ["--start", "15/01/2025"], '--start "15/01/2025"'),
        (good + ["--grace-kind", "principal"], "--grace-kind needs --grace"),
        (good + ["--grace", "2", "--grace-kind", "none"], '--grace-kind "none"'),
        (good + ["--grace", "2"], "--grace: "),                   # a grace needs its kind
        (good + ["--grace", "6", "--grace-kind", "principal"], "--grace: "),
        (good + ["--term", "0"], "--term: "),
        (good + ["--term", "521"], "--term: "),
        (good + ["--rate-bp", "-1"], "--rate-bp: "),
        (good + ["--per", "year", "--rate-bp", "120001"], "--rate-bp: "),
        (good + ["--principal", "0"], "--principal: "),
    ]
    for args, says in bad:
        p = run(env, args)
        assert p.returncode == 2 and p.stdout == "", (args, p.returncode, p.stdout)
        assert p.stderr.startswith("chamad: loan-schedule: ") and says in p.stderr, (args, p.stderr)
        assert p.stderr.count("\n") == 1, (args, p.stderr)
    # the last of a repeated option counts, as getopt does everywhere
    p = run(env, good + ["--term", "6"])
    assert p.returncode == 0 and p.stdout == open(os.path.join(CASES, "02_domain_reducing_2_3.csv")).read()


def test_loan_schedule_cli_help_and_no_configuration(env):
    p = run(env, ["--help"])
    assert p.returncode == 0 and "--grace-kind principal|interest_free" in p.stdout, p.stdout
    p = subprocess.run([env.bin, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and "loan-schedule --principal KES" in p.stdout
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "chamad loan-schedule" in readme
    # no configuration is read: a missing required file changes nothing
    args = case_args("04_flat_monthly")
    want = open(os.path.join(CASES, "04_flat_monthly.csv")).read()
    p = run(env, args, {"CHAMAD_CONFIG": "/nonexistent/chamad.conf"})
    assert p.returncode == 0 and p.stdout == want, p.stderr
    p = subprocess.run([env.bin, "-c", "/nonexistent/chamad.conf", "loan-schedule"] + args, capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 0 and p.stdout == want, p.stderr
    # without --start the loan starts today: the first weekly instalment a week on
    args = without(case_args("05_flat_weekly"), "--start")
    before = datetime.date.today()
    p = run(env, args)
    after = datetime.date.today()
    first = p.stdout.splitlines()[1].split(",")[1]
    assert p.returncode == 0 and first in ((before + datetime.timedelta(days=7)).isoformat(),
                                           (after + datetime.timedelta(days=7)).isoformat()), p.stdout
    # the rest of the rows do not depend on the date
    want = [line.split(",", 2)[2] for line in open(os.path.join(CASES, "05_flat_weekly.csv")).read().splitlines()]
    assert [line.split(",", 2)[2] for line in p.stdout.splitlines()] == want
