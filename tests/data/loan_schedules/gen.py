#!/usr/bin/env python3
"""Writes the loan-schedule cases: NN_name.in and NN_name.csv (or .err).

    python3 gen.py            rewrite every case file here
    python3 gen.py --check    exit 1 (naming the file) when a file differs

How this was written: from the formulas of DOMAIN.md 2.2-2.6 (Fineract's
LoanApplicationTerms as the reference) and the choices set down in README.md
beside this script, with exact fractions.Fraction arithmetic and Python's
datetime/calendar for dates.  It never reads, imports or runs the C code
(src/base/loansched.c); the two are independent implementations of one
specification, and the unit and integration tests compare them to the cent.
It also checks itself against DOMAIN.md's worked examples (typed in below
from the tables, in shillings; a principal of KES 100.00 gives the same
digits in cents).
"""
import calendar
import datetime
import os
import sys
from fractions import Fraction as F

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = "n,due_date,principal_cents,interest_cents,instalment_cents,balance_cents"
KEYS = ("principal", "rate_bp", "per", "method", "term", "frequency", "grace", "grace_kind", "start")
PERIODS_A_YEAR = {"monthly": 12, "biweekly": 26, "weekly": 52}
MAX_CENTS = 10 ** 13
MAX_RATE = {"month": 10000, "year": 120000, "term": 100000}


class Refused(Exception):
    pass


def rnd(x):
    """HALF_EVEN to an integer, written out (not trusting round())."""
    x = F(x)
    fl = x.numerator // x.denominator
    rest = x - fl
    if rest > F(1, 2) or (rest == F(1, 2) and fl % 2 == 1):
        return fl + 1
    return fl


def floor(x):
    x = F(x)
    return x.numerator // x.denominator


def cents(kes):
    """'1234.5' -> 123450: at most two decimals, no sign."""
    whole, _, frac = kes.partition(".")
    if not whole.isdigit() or (frac and (not frac.isdigit() or len(frac) > 2)) or (kes.endswith(".")):
        raise Refused("principal")
    return int(whole) * 100 + int((frac + "00")[:2])


def period_rate(bp, per, freq, n):
    if per == "term":
        return F(bp, 10000 * n)
    if per == "month":
        return F(bp, 10000) * 12 / PERIODS_A_YEAR[freq]
    return F(bp, 10000) / PERIODS_A_YEAR[freq]


def due_dates(start, freq, n):
    y, m, d = (int(v) for v in start.split("-"))
    s = datetime.date(y, m, d)
    out = []
    for k in range(1, n + 1):
        if freq == "weekly":
            out.append(s + datetime.timedelta(days=7 * k))
        elif freq == "biweekly":
            out.append(s + datetime.timedelta(days=14 * k))
        else:
            mm = s.month - 1 + k
            yy, mm = s.year + mm // 12, mm % 12 + 1
            out.append(datetime.date(yy, mm, min(s.day, calendar.monthrange(yy, mm)[1])))
    return [x.isoformat() for x in out]


def validate(c):
    p = cents(c["principal"])
    if not 1 <= p <= MAX_CENTS:
        raise Refused("principal")
    n = int(c["term"])
    if not 1 <= n <= 520:
        raise Refused("term")
    if not 0 <= int(c["rate_bp"]) <= MAX_RATE[c["per"]]:
        raise Refused("rate")
    g = int(c["grace"])
    if not 0 <= g < n:
        raise Refused("grace")
    try:
        y, m, d = (int(v) for v in c["start"].split("-"))
        datetime.date(y, m, d)
    except ValueError:
        raise Refused("start")
    if not 1970 <= y <= 2999:
        raise Refused("start")
    if g > 0 and c["grace_kind"] == "none":
        raise Refused("grace")
    return p, n, g


def schedule(c):
    """The rows [(n, due, principal, interest, instalment, balance)]."""
    P, n, g = validate(c)
    r = period_rate(int(c["rate_bp"]), c["per"], c["frequency"], n)
    kind = c["grace_kind"] if g else "none"
    m = n - g
    method = c["method"]
    prin, intr = [0] * n, [0] * n
    if method == "flat":
        bearing = list(range(n)) if kind != "interest_free" else list(range(g, n))
        total = rnd(P * r * len(bearing))
        share = floor(F(total, len(bearing)))
        for i in bearing:
            intr[i] = share
        intr[bearing[-1]] = total - share * (len(bearing) - 1)
        pshare = floor(F(P, m))
        for i in range(g, n):
            prin[i] = pshare
        prin[n - 1] = P - pshare * (m - 1)
    else:
        B = P
        for i in range(g):
            intr[i] = rnd(P * r) if kind == "principal" else 0
        if method == "reducing":
            A = rnd(F(P, m)) if r == 0 else rnd(P * r / (1 - (1 + r) ** -m))
        else:
            pshare = floor(F(P, m))
        for i in range(g, n):
            intr[i] = rnd(B * r)
            if i == n - 1:
                prin[i] = B
            elif method == "reducing":
                assert A - intr[i] >= 0
                prin[i] = min(A - intr[i], B)
            else:
                prin[i] = min(pshare, B)
            B -= prin[i]
    rows, B = [], P
    for i, due in enumerate(due_dates(c["start"], c["frequency"], n)):
        B -= prin[i]
        rows.append((i + 1, due, prin[i], intr[i], prin[i] + intr[i], B))
    assert sum(x[2] for x in rows) == P and rows[-1][5] == 0 and min(x[5] for x in rows) >= 0
    assert min(x[3] for x in rows) >= 0 and min(x[2] for x in rows) >= 0
    return rows


def case(principal, rate_bp, per, method, term, frequency, grace=0, grace_kind="none", start="2025-01-15"):
    return dict(principal=principal, rate_bp=str(rate_bp), per=per, method=method, term=str(term),
                frequency=frequency, grace=str(grace), grace_kind=grace_kind, start=start)


CASES = [
    # DOMAIN.md's worked examples (KES 100.00 = the tables' 10,000 in cents)
    ("domain_flat_2_2", case("100", 200, "month", "flat", 6, "monthly")),
    ("domain_reducing_2_3", case("100", 100, "month", "reducing", 6, "monthly")),
    ("domain_equal_principal_2_4", case("100", 100, "month", "equal_principal", 6, "monthly")),
    # every method x frequency
    ("flat_monthly", case("10000", 200, "month", "flat", 6, "monthly")),
    ("flat_weekly", case("5000", 2400, "year", "flat", 12, "weekly")),
    ("flat_biweekly", case("7500.50", 300, "month", "flat", 8, "biweekly")),
    ("reducing_monthly", case("10000", 100, "month", "reducing", 6, "monthly")),
    ("reducing_weekly", case("20000", 1800, "year", "reducing", 26, "weekly")),
    ("reducing_biweekly", case("15000", 250, "month", "reducing", 10, "biweekly")),
    ("equal_principal_monthly", case("10000", 100, "month", "equal_principal", 6, "monthly")),
    ("equal_principal_weekly", case("3000", 150, "month", "equal_principal", 9, "weekly")),
    ("equal_principal_biweekly", case("12345.67", 1500, "year", "equal_principal", 13, "biweekly")),
    # grace, both kinds, every method
    ("flat_grace_principal", case("10000", 200, "month", "flat", 8, "monthly", 2, "principal")),
    ("flat_grace_interest_free", case("10000", 200, "month", "flat", 8, "monthly", 2, "interest_free")),
    ("reducing_grace_principal", case("50000", 150, "month", "reducing", 12, "monthly", 3, "principal")),
    ("reducing_grace_interest_free", case("50000", 150, "month", "reducing", 12, "monthly", 3, "interest_free")),
    ("equal_principal_grace_principal", case("8000", 1200, "year", "equal_principal", 10, "weekly", 4, "principal")),
    ("equal_principal_grace_interest_free",
     case("8000", 1200, "year", "equal_principal", 10, "biweekly", 4, "interest_free")),
    ("reducing_grace_all_but_one", case("1000", 500, "month", "reducing", 5, "monthly", 4, "principal")),
    # rates per term
    ("flat_per_term", case("10000", 1000, "term", "flat", 4, "monthly")),
    ("reducing_per_term", case("10000", 1000, "term", "reducing", 4, "weekly")),
    ("equal_principal_per_term_grace", case("9999.99", 1200, "term", "equal_principal", 7, "biweekly", 1, "principal")),
    ("flat_per_term_interest_free", case("6000", 900, "term", "flat", 6, "weekly", 3, "interest_free")),
    # tiny principals: the residues
    ("flat_one_cent", case("0.01", 200, "month", "flat", 12, "monthly")),
    ("reducing_tiny", case("0.07", 300, "month", "reducing", 10, "weekly")),
    ("equal_principal_tiny", case("0.05", 1000, "month", "equal_principal", 6, "biweekly")),
    ("reducing_tiny_zero_rate", case("1.50", 0, "month", "reducing", 100, "weekly")),
    ("reducing_tiny_high_rate", case("0.10", 10000, "month", "reducing", 10, "monthly")),
    # HALF_EVEN ties: 0.5 cent (down to 0) and 1.5 cents (up to 2) of interest
    ("tie_half_even_down", case("0.50", 100, "month", "equal_principal", 1, "monthly")),
    ("tie_half_even_up", case("1.50", 100, "month", "reducing", 1, "monthly")),
    ("tie_flat_total", case("2.50", 100, "month", "flat", 1, "monthly")),
    # large principals
    ("large_reducing_long", case("50000000", 1200, "year", "reducing", 360, "monthly")),
    ("large_flat_weekly", case("99999999999.99", 5000, "year", "flat", 104, "weekly")),
    ("maximum_principal_reducing", case("100000000000", 10000, "month", "reducing", 520, "weekly")),
    # zero rate
    ("zero_rate_flat", case("1000", 0, "month", "flat", 7, "monthly")),
    ("zero_rate_reducing", case("1000", 0, "year", "reducing", 7, "biweekly")),
    ("zero_rate_equal_principal", case("1000", 0, "term", "equal_principal", 7, "weekly", 2, "principal")),
    # term 1
    ("term_one_flat", case("2500", 500, "month", "flat", 1, "weekly")),
    ("term_one_reducing", case("2500", 500, "term", "reducing", 1, "monthly")),
    ("term_one_equal_principal", case("2500", 2400, "year", "equal_principal", 1, "biweekly")),
    # month ends and leap years
    ("month_end_31_jan", case("3100", 100, "month", "reducing", 14, "monthly", start="2027-01-31")),
    ("leap_29_feb", case("2900", 100, "month", "equal_principal", 13, "monthly", start="2028-02-29")),
    ("year_end_weekly", case("5200", 100, "month", "flat", 6, "weekly", start="2026-12-29")),
    # refusals
    ("refused_zero_term", case("1000", 100, "month", "flat", 0, "monthly")),
    ("refused_term_too_long", case("1000", 100, "month", "flat", 521, "weekly")),
    ("refused_zero_principal", case("0", 100, "month", "flat", 6, "monthly")),
    ("refused_too_large", case("100000000000.01", 100, "month", "flat", 6, "monthly")),
    ("refused_rate", case("1000", 10001, "month", "reducing", 6, "monthly")),
    ("refused_grace_is_term", case("1000", 100, "month", "reducing", 6, "monthly", 6, "principal")),
    ("refused_start", case("1000", 100, "month", "reducing", 6, "monthly", start="2027-02-29")),
    ("refused_grace_without_kind", case("1000", 100, "month", "flat", 6, "monthly", 2)),
    ("refused_negative_rate", case("1000", -1, "year", "flat", 6, "monthly")),
]

# DOMAIN.md 2.2-2.4's tables: (principal, interest, instalment) per row
DOMAIN = {
    "domain_flat_2_2": [(1666, 200, 1866)] * 5 + [(1670, 200, 1870)],
    "domain_reducing_2_3": [(1625, 100, 1725), (1641, 84, 1725), (1658, 67, 1725), (1674, 51, 1725),
                            (1691, 34, 1725), (1711, 17, 1728)],
    "domain_equal_principal_2_4": [(1666, 100, 1766), (1666, 83, 1749), (1666, 67, 1733), (1666, 50, 1716),
                                   (1666, 33, 1699), (1670, 17, 1687)],
}


def files():
    out = {}
    for i, (name, c) in enumerate(CASES, 1):
        base = "%02d_%s" % (i, name)
        out[base + ".in"] = "".join("%s=%s\n" % (k, c[k]) for k in KEYS)
        try:
            rows = schedule(c)
        except Refused as e:
            out[base + ".err"] = "%s\n" % e.args[0]
            continue
        if name in DOMAIN:
            assert [(x[2], x[3], x[4]) for x in rows] == DOMAIN[name], name
        out[base + ".csv"] = HEADER + "\n" + "".join("%d,%s,%d,%d,%d,%d\n" % x for x in rows)
    return out


def main():
    check = "--check" in sys.argv[1:]
    want = files()
    bad = 0
    for f in sorted(os.listdir(HERE)):
        if f.endswith((".in", ".csv", ".err")) and f not in want:
            print("stale file %s" % f)
            bad = 1
            if not check:
                os.remove(os.path.join(HERE, f))
    for f, text in sorted(want.items()):
        path = os.path.join(HERE, f)
        have = open(path).read() if os.path.exists(path) else None
        if have != text:
            bad = 1
            print("%s %s" % ("differs:" if check else "wrote", f))
            if not check:
                with open(path, "w") as fh:
                    fh.write(text)
    sys.exit(bad if check else 0)


if __name__ == "__main__":
    main()
