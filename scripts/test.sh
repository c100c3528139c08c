#!/usr/bin/env bash
# make test: installs what is missing, builds, starts a private PostgreSQL
# and Redis (the "test" instance), runs every test, stops what it started.
# The last line is "N passed, N failed".
#   scripts/test.sh [--sanitize] [-k SUBSTRING] [-j N]
# -j N: the integration tests on N worker processes (tests/run.py; default
# two per core, at most 8; -j 1 one after the other).
set -euo pipefail
cd "$(dirname "$0")/.."

san=0
args=()
for a in "$@"; do
  case "$a" in
    --sanitize) san=1 ;;
    *) args+=("$a") ;;
  esac
done

bash scripts/deps.sh
# the layers hold before anything is built (scripts/layers.py says why not)
if ! python3 scripts/layers.py; then
  echo "0 passed, 1 failed"
  exit 1
fi
if [ $san -eq 1 ]; then
  make -s -j2 SANITIZE=1
  BIN=bin/chamad-asan UNIT=bin/unit-tests-asan DBT=bin/db-tests-asan
  # LeakSanitizer runs at exit; a leak fails the process and the test
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
  make -s -j2
  BIN=bin/chamad UNIT=bin/unit-tests DBT=bin/db-tests
fi

export CHAMASMART_INSTANCE=test
eval "$(bash scripts/services.sh env test)"
started=0
cleanup() { [ $started -eq 1 ] && bash scripts/services.sh stop test || true; }
trap cleanup EXIT
bash scripts/services.sh start test
started=1

# each libFuzzer target runs FUZZ_SECONDS (0 skips them)
python3 tests/run.py --bin "$BIN" --unit "$UNIT" --dbtests "$DBT" --fuzz "${FUZZ_SECONDS:-10}" \
  ${args[@]+"${args[@]}"}
