#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The whole test suite (what `make test` and CI run):
#   1. normal build (RelWithDebInfo, gcc, warnings are errors), every test
#      (the install / pkg-config / find_package check among them)
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build (clang 19: its
#      runtime is fork-safe in threaded programs, gcc 12's is not), every
#      test
#   3. ThreadSanitizer build (clang 19 too), the tests listed in
#      tests/tsan-tests.txt
#   4. libFuzzer targets (clang, warnings are errors, ASan+UBSan), each for
#      FUZZ_SECONDS on its corpus
# Quiet: one line per stage as it ends, the output of whatever failed, and a
# table of the stages with counts and times.  The full logs stay in the
# files each line names.  Ends with "suite: N passed, N failed" and fails if
# anything did.  VERBOSE=1 streams the logs as well.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
VERBOSE=${VERBOSE:-0}
passed=0
failed=0
failures=()
rows=()
suite_start=$SECONDS

elapsed() { local s=$(($SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# out LOG: a command's output into LOG (and to the terminal with VERBOSE=1)
out() { if [ "$VERBOSE" = 1 ]; then tee "$1"; else cat >"$1"; fi; }

# row STAGE PASSED FAILED START LOG
row() {
  rows+=("$(printf '%-34s %7s %7s %9s  %s' "$1" "$2" "$3" "$(elapsed "$4")" "$5")")
  printf '%-34s %s passed, %s failed (%s)  log: %s\n' "$1" "$2" "$3" "$(elapsed "$4")" "$5"
}

# build STAGE DIR [cmake args...]: configure and build quietly; on failure
# print the errors and the log's tail.
build() {
  local stage=$1 dir=$2; shift 2
  local log="$dir/build.log" t0=$SECONDS
  mkdir -p "$dir"
  if { cmake -S . -B "$dir" "$@" && cmake --build "$dir" -j"$JOBS"; } 2>&1 | out "$log"; then
    rows+=("$(printf '%-34s %7s %7s %9s  %s' "$stage: build" ok "" "$(elapsed "$t0")" "$log")")
    echo "$stage: built ($(elapsed "$t0"))  log: $log"
    return 0
  fi
  echo "$stage: BUILD FAILED  log: $log"
  grep -E 'error|Error' "$log" | head -30
  tail -20 "$log"
  failed=$((failed + 1)); failures+=("$stage: build failed ($log)")
  rows+=("$(printf '%-34s %7s %7s %9s  %s' "$stage: build" "" FAILED "$(elapsed "$t0")" "$log")")
  return 1
}

# run_ctest STAGE BUILD_DIR [ctest args...]
run_ctest() {
  local stage=$1 dir=$2; shift 2
  local log="$dir/ctest.log" t0=$SECONDS
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j"$JOBS" "$@") 2>&1 | out "$log"
  local line p f t
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then
    tail -30 "$log"
    failed=$((failed + 1)); failures+=("$stage: ctest did not run ($log)")
    row "$stage: tests" 0 1 "$t0" "$log"
    return
  fi
  f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  t=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  p=$((t - f))
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    # the failing tests' own output (ctest printed it on failure), then
    # ctest's list of them
    if [ "$VERBOSE" != 1 ]; then
      awk '/tests? passed, [0-9]+ tests? failed/{exit} {print}' "$log" \
        | grep -v -E '^ *(Start|[0-9]+/[0-9]+ Test) .*(Passed|Start)' | tail -200
    fi
    sed -n '/The following tests FAILED/,$p' "$log"
    failures+=("$stage: $f of $t tests failed ($log)")
  fi
  row "$stage: tests" "$p" "$f" "$t0" "$log"
}

if build "normal" build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-Werror; then
  run_ctest "normal" build
fi

# A fork from a thread while another thread is inside malloc: gcc 12's
# libasan leaves its allocator's locks held in the child (which then hangs
# on its first allocation); LLVM's runtime (clang 19) takes them
# across fork, as glibc's malloc does.  tools/setup-deps.sh installs it.
ASAN_CC=$(command -v clang-19 || true)
if [ -z "$ASAN_CC" ]; then
  echo "asan+ubsan: clang-19 not found (tools/setup-deps.sh installs it)"
  failed=$((failed + 1)); failures+=("asan+ubsan: no clang-19")
elif build "asan+ubsan" build-asan -DCMAKE_C_COMPILER="$ASAN_CC" \
     -DCMAKE_BUILD_TYPE=Debug -DMPROC_SANITIZE=address,undefined \
     -DMPROC_BUILD_BENCH=OFF; then
  run_ctest "asan+ubsan" build-asan
fi

# ThreadSanitizer with the same compiler: its runtime, too, takes its locks
# across fork, so a child of a threaded program may start threads
# (die_after_fork=0): pools fork workers from a thread, and workers and
# manager servers run threads of their own.  gcc 12's runtime would hang
# there, as its ASan does.
regex=$(grep -v '^#' tests/tsan-tests.txt 2>/dev/null | sed '/^$/d' | paste -sd'|')
if [ -n "$regex" ] && [ -n "$ASAN_CC" ]; then
  if build "tsan" build-tsan -DCMAKE_C_COMPILER="$ASAN_CC" -DCMAKE_BUILD_TYPE=Debug \
       -DMPROC_SANITIZE=thread -DMPROC_BUILD_BENCH=OFF -DMPROC_BUILD_EXAMPLES=ON; then
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0" \
      run_ctest "tsan" build-tsan -R "$regex"
  fi
fi

if ls fuzz/fuzz_*.c >/dev/null 2>&1; then
  if build "fuzz" build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS=-Werror -DCMAKE_BUILD_TYPE=Debug \
       -DMPROC_SANITIZE=address,undefined -DMPROC_BUILD_FUZZ=ON \
       -DMPROC_BUILD_TESTS=OFF -DMPROC_BUILD_BENCH=OFF -DMPROC_BUILD_EXAMPLES=OFF; then
    t0=$SECONDS; fp=0; ff=0
    for f in build-fuzz/fuzz/fuzz_*; do
      name=$(basename "$f")
      work="build-fuzz/corpus-$name"
      rm -rf "$work"; mkdir -p "$work"
      seeds="fuzz/corpus/$name"
      [ -d "$seeds" ] || seeds=
      if "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
           -print_final_stats=0 "$work" $seeds >"build-fuzz/$name.log" 2>&1; then
        echo "fuzz $name: ok ($(grep -Eo '#[0-9]+' "build-fuzz/$name.log" | tail -1) runs)"
        fp=$((fp + 1))
      else
        tail -40 "build-fuzz/$name.log"
        ff=$((ff + 1)); failures+=("fuzz $name found a problem (build-fuzz/$name.log)")
      fi
    done
    passed=$((passed + fp)); failed=$((failed + ff))
    row "fuzz: ${FUZZ_SECONDS}s per target" "$fp" "$ff" "$t0" "build-fuzz/fuzz_*.log"
  fi
fi

echo
printf '%-34s %7s %7s %9s  %s\n' stage passed failed time log
printf '%s\n' "${rows[@]}"
printf '%-34s %7s %7s %9s\n' total "$passed" "$failed" "$(elapsed "$suite_start")"
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
