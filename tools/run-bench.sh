#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run every benchmark of a build (default: build/).  Each prints its own
# table: mproc beside CPython's multiprocessing and the raw system-call floor,
# with ratios.
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")/.."
status=0
for b in "$B"/bench/bench_*; do
  [ -x "$b" ] || continue
  echo "==== $(basename "$b")"
  "$b" || status=1
  echo
done
exit $status
