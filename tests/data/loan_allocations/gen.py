"""Writes generated.json: allocation cases with the expected splits computed
from the rule alone, without the SQL function (schema/74_loan_repay.sql
walks the instalments and takes from each component in turn; this computes
differently, by prefixes).

The rule (DOMAIN.md 2.7): lay every component of every instalment end to
end, in the order (instalment 1: penalty, fee, interest, principal;
instalment 2: ...).  After payments totalling T, exactly the first T cents
of that line are paid; whatever T goes past its end is the credit.  So
payment k's part of component c is |[T(k-1), T(k)) within c's stretch of
the line|, and its credit is what it brings past the end.  Penalties are all
levied before the first payment (the case table's setting).

  python3 gen.py           rewrites generated.json
  python3 gen.py --check   says whether it is current
"""
import json
import os
import random
import sys

COMPONENTS = ("penalty", "fee", "interest", "principal")


def overlap(a0, a1, b0, b1):
    return max(0, min(a1, b1) - max(a0, b0))


def expected(schedule, payments):
    stretches, start = [], 0
    for i, inst in enumerate(schedule):
        for c in COMPONENTS:
            stretches.append((i, c, start, start + inst[c]))
            start += inst[c]
    end = start
    splits, before = [], 0
    for p in payments:
        after = before + p
        split = {c: 0 for c in COMPONENTS}
        for _, c, s0, s1 in stretches:
            split[c] += overlap(before, after, s0, s1)
        split["credit"] = overlap(before, after, end, after if after > end else end)
        splits.append(split)
        before = after
    paid = [{c: 0 for c in COMPONENTS} for _ in schedule]
    for i, c, s0, s1 in stretches:
        paid[i][c] = overlap(0, before, s0, s1)
    status = []
    for i, inst in enumerate(schedule):
        if all(paid[i][c] == inst[c] for c in COMPONENTS):
            status.append("paid")
        elif inst["penalty"] > 0:
            status.append("overdue")  # a penalty is levied only on an instalment overdue
        elif any(paid[i][c] for c in COMPONENTS):
            status.append("partially_paid")
        else:
            status.append("pending")
    return splits, paid, status, before >= end


def case(rng, n):
    rows = []
    for i in range(rng.randint(1, 6)):
        rows.append({"principal": rng.randint(1, 200000), "interest": rng.choice([0, rng.randint(1, 20000)]),
                     "fee": rng.choice([0, 0, rng.randint(1, 5000)]) if i == 0 else 0,
                     "penalty": rng.choice([0, 0, rng.randint(1, 3000)])})
    total = sum(sum(r[c] for c in COMPONENTS) for r in rows)
    pays = []
    for _ in range(rng.randint(1, 5)):
        pays.append(rng.choice([rng.randint(1, 500), rng.randint(1, total), total // 3 + 1,
                                total + rng.randint(1, 9999)]))
    splits, paid, status, closed = expected(rows, pays)
    return {"name": "generated %d" % n, "schedule": rows, "payments": pays, "expected": splits,
            "paid_after": paid, "status_after": status, "closed": closed}


def main():
    rng = random.Random(20261101)
    out = {"about": "Written by gen.py from the rule (see its docstring); do not edit.",
           "cases": [case(rng, n) for n in range(1, 41)]}
    text = json.dumps(out, indent=1, sort_keys=True) + "\n"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated.json")
    if "--check" in sys.argv:
        ok = os.path.exists(path) and open(path).read() == text
        print("generated.json is %s" % ("current" if ok else "out of date"))
        sys.exit(0 if ok else 1)
    open(path, "w").write(text)


if __name__ == "__main__":
    main()
