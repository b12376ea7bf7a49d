#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The whole test suite (what `make test` and CI run):
#   1. normal build (RelWithDebInfo, gcc, warnings are errors), every test
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build, every test
#   3. ThreadSanitizer build, the tests listed in tests/tsan-tests.txt
#   4. libFuzzer targets (clang, warnings are errors, ASan+UBSan), each for
#      FUZZ_SECONDS on its corpus
# Ends with one line "suite: N passed, N failed" and fails if anything did.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
passed=0
failed=0
failures=()

note() { printf '\n==== %s ====\n' "$*"; }

# run_ctest NAME BUILD_DIR [ctest args...]
run_ctest() {
  local name=$1 dir=$2; shift 2
  local log="$dir/ctest-summary.log"
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j"$JOBS" "$@") 2>&1 | tee "$log"
  local line p f t
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failures+=("$name: ctest did not run"); return
  fi
  f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  t=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  p=$((t - f))
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -eq 0 ] || failures+=("$name: $f of $t tests failed")
}

build() {
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null &&
    cmake --build "$dir" -j"$JOBS" 2>&1 | grep -E 'warning|error|Error' ; 
  test "${PIPESTATUS[0]}" -eq 0
}

note "1. normal build"
if build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-Werror; then
  run_ctest normal build
else
  failed=$((failed + 1)); failures+=("normal build failed")
fi

note "2. AddressSanitizer + UndefinedBehaviorSanitizer"
if build build-asan -DCMAKE_BUILD_TYPE=Debug -DMPROC_SANITIZE=address,undefined \
     -DMPROC_BUILD_BENCH=OFF; then
  run_ctest asan build-asan
else
  failed=$((failed + 1)); failures+=("asan build failed")
fi

regex=$(grep -v '^#' tests/tsan-tests.txt 2>/dev/null | sed '/^$/d' | paste -sd'|')
if [ -n "$regex" ]; then
  note "3. ThreadSanitizer (tests where threads meet)"
  if build build-tsan -DCMAKE_BUILD_TYPE=Debug -DMPROC_SANITIZE=thread \
       -DMPROC_BUILD_BENCH=OFF -DMPROC_BUILD_EXAMPLES=ON; then
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run_ctest tsan build-tsan -R "$regex"
  else
    failed=$((failed + 1)); failures+=("tsan build failed")
  fi
fi

if ls fuzz/fuzz_*.c >/dev/null 2>&1; then
  note "4. fuzzers (${FUZZ_SECONDS}s each)"
  if build build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS=-Werror -DCMAKE_BUILD_TYPE=Debug \
       -DMPROC_SANITIZE=address,undefined -DMPROC_BUILD_FUZZ=ON \
       -DMPROC_BUILD_TESTS=OFF -DMPROC_BUILD_BENCH=OFF -DMPROC_BUILD_EXAMPLES=OFF; then
    for f in build-fuzz/fuzz/fuzz_*; do
      name=$(basename "$f")
      work="build-fuzz/corpus-$name"
      rm -rf "$work"; mkdir -p "$work"
      seeds="fuzz/corpus/$name"
      [ -d "$seeds" ] || seeds=
      if "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
           -print_final_stats=0 "$work" $seeds >"build-fuzz/$name.log" 2>&1; then
        echo "fuzz $name: ok ($(grep -Eo '#[0-9]+' "build-fuzz/$name.log" | tail -1) runs)"
        passed=$((passed + 1))
      else
        tail -40 "build-fuzz/$name.log"
        failed=$((failed + 1)); failures+=("fuzz $name found a problem (build-fuzz/$name.log)")
      fi
    done
  else
    failed=$((failed + 1)); failures+=("fuzz build failed")
  fi
fi

note "summary"
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
