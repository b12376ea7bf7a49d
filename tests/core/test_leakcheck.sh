#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The leak checks of MP_TEST_MAIN work: a program that leaks an fd, a child
# process or a shared-memory segment fails, naming the leak; one that leaks
# nothing passes.
set -uo pipefail
H="${MPROC_BUILD_DIR:?}/tests/helper_leaky"
MPROC_LEAK=none "$H" >/dev/null 2>&1 || { echo "a clean program failed"; exit 1; }
for kind in fd child shm; do
  out=$(MPROC_LEAK=$kind "$H" 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then echo "leak of a $kind not detected"; echo "$out"; exit 1; fi
  case $kind in
    fd) grep -q "LEAK: fd" <<<"$out" ;;
    child) grep -q "LEAK: child process" <<<"$out" ;;
    shm) grep -q "LEAK: shared-memory segment" <<<"$out" ;;
  esac || { echo "no LEAK line for a $kind:"; echo "$out"; exit 1; }
done
echo "leak checks catch fds, children and segments"
