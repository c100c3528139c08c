#!/usr/bin/env bash
# Builds the libFuzzer targets (make -f tests/fuzz/fuzz.mk, so it works
# with or without the include in the Makefile) and runs each for SECONDS
# seconds on a copy of its seed corpus (build/fuzz/corpus-<target>; tests/fuzz/corpus is not
# touched).  Prints one line per target and exits non-zero if any target
# crashed, leaked, timed out or broke an invariant; the input is kept in
# build/fuzz/artifacts-<target>/ and the report in build/fuzz/fuzz-<target>.log.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     (default 20 s; every target of fuzz.mk FUZZ_NAMES)
#   CLANG=clang-14 tests/fuzz/run.sh 60 menu
# The grown corpora stay in build/fuzz/corpus-<target>; to keep new seeds,
#   bin/fuzz-at -merge=1 tests/fuzz/corpus/at build/fuzz/corpus-at
set -uo pipefail
cd "$(dirname "$0")/../.."

dur=${1:-20}
shift || true
case "$dur" in ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
targets=("$@")
[ ${#targets[@]} -eq 0 ] && mapfile -t targets < <(make -s -f tests/fuzz/fuzz.mk fuzz-names)

command -v "${CLANG:-clang}" >/dev/null || { echo "fuzz: ${CLANG:-clang} not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p build/fuzz
if ! make -s -f tests/fuzz/fuzz.mk fuzz >build/fuzz/build.log 2>&1; then
  cat build/fuzz/build.log >&2
  echo "fuzz: build failed" >&2
  exit 2
fi

# Symbolized stacks need llvm-symbolizer (package llvm, or llvm-14 off PATH).
if ! command -v llvm-symbolizer >/dev/null && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

# Sanitizer reports end the run (libFuzzer saves the input); leaks count.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
for t in "${targets[@]}"; do
  bin=bin/fuzz-$t
  [ -x "$bin" ] || { echo "fuzz-$t: no such target" >&2; failed=1; continue; }
  work=build/fuzz/corpus-$t
  art=build/fuzz/artifacts-$t
  log=build/fuzz/fuzz-$t.log
  rm -rf "$work" "$art"
  mkdir -p "$work" "$art"
  if [ -d "tests/fuzz/corpus/$t" ]; then
    cp -r "tests/fuzz/corpus/$t/." "$work/"
  fi
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")

  # In a subshell so bash's "Aborted" notice lands in the log too.
  ("$bin" -max_len=65536 -timeout=5 -max_total_time="$dur" -print_final_stats=1 \
    -artifact_prefix="$art/" ${dict[@]+"${dict[@]}"} "$work"; exit $?) >"$log" 2>&1
  rc=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  if [ -z "$runs" ]; then
    runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
  fi
  crashes=$(find "$art" -type f | wc -l)
  if [ $rc -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1	# died without saving an input (e.g. at start-up)
  fi
  cov=$(sed -n 's/^#[0-9]*.*cov: \([0-9]*\).*/\1/p' "$log" | tail -1)
  echo "fuzz-$t: ${runs:-0} runs, $crashes crashes (cov ${cov:-?}, corpus $(find "$work" -type f | wc -l) files, exit $rc)"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    find "$art" -type f | sed 's/^/  input: /'
    echo "  log: $log"
    grep -E 'ERROR: |INVARIANT BROKEN|runtime error|SUMMARY' "$log" | head -5 | sed 's/^/  /'
  fi
done
exit $failed
