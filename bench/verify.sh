#!/usr/bin/env bash
# Benchmarks the wait a payment now has between its callback and its credit
# (issue 10: credit only what M-Pesa confirmed): STK (the STK push query)
# and paybill C2B (the Transaction Status result).  See bench/verify.py.
#
#   bench/verify.sh [N]      (default 20 of each)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}

bash scripts/deps.sh
make -s bin/chamad
export CHAMASMART_INSTANCE=bench
eval "$(bash scripts/services.sh env bench)"
cleanup() { bash scripts/services.sh stop bench || true; }
trap cleanup EXIT
bash scripts/services.sh start bench >/dev/null
python3 bench/verify.py --bin bin/chamad --n "$n"
