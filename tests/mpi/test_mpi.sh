#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The MPI pool (libmproc-mpi) under mpirun: tests/mpi/mpi_test_pool.c under
# -n 3 and -n 2, a rank of another build (MP_EBADREF), a rank that dies
# (the job is aborted, nothing hangs), and the example's three lines.
# Skipped (77) only when MPI is absent: no mpirun, or no libmproc-mpi built.
set -u
B=${MPROC_BUILD_DIR:?}
T=$B/tests
if ! command -v mpirun >/dev/null 2>&1; then
  echo "skipped: mpirun not found (tools/setup-deps.sh installs openmpi-bin)"; exit 77
fi
if [ ! -x "$T/mpi_test_pool" ]; then
  echo "skipped: libmproc-mpi was not built (MPI not found by CMake: libopenmpi-dev)"; exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's own allocations are never freed: no leak check under ASan
# (the library's own memory errors are still caught)
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
# one node: shared memory only (no InfiniBand or TCP probing in a container;
# Open MPI's tcp btl also trips ThreadSanitizer inside MPI_Init)
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MPIRUN=(timeout 300 mpirun --oversubscribe)
segs_before=$(ls /dev/shm 2>/dev/null | grep "^mproc-mpi-" | sort)
fail=0
for n in 3 2; do
  if ! "${MPIRUN[@]}" -n $n "$T/mpi_test_pool" 2>"$T/mpi_test_pool.$n.err"; then
    echo "FAIL: mpi_test_pool under -n $n:"; cat "$T/mpi_test_pool.$n.err"; fail=1
  else
    grep "all checks passed" "$T/mpi_test_pool.$n.err"
  fi
done
# map_array's chunks as bytes in the messages (as between hosts), not
# through the same-node segments
if ! "${MPIRUN[@]}" -n 3 -x MPROC_MPI_NO_SHM=1 "$T/mpi_test_pool" 2>"$T/mpi_test_pool.noshm.err"; then
  echo "FAIL: mpi_test_pool with MPROC_MPI_NO_SHM=1:"; cat "$T/mpi_test_pool.noshm.err"; fail=1
else
  grep "all checks passed" "$T/mpi_test_pool.noshm.err"
fi
if ! "${MPIRUN[@]}" -n 1 "$T/mpi_test_pool" --badref : -n 1 "$T/mpi_test_pool_other" 2>"$T/mpi_badref.err"; then
  echo "FAIL: another build on rank 1:"; cat "$T/mpi_badref.err"; fail=1
else
  grep "all checks passed" "$T/mpi_badref.err"
fi
# a rank killed in a task: mpirun ends the job, non-zero, naming the rank
start=$(date +%s)
"${MPIRUN[@]}" -n 2 "$T/mpi_test_pool" --die >"$T/mpi_die.out" 2>&1
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ] || ! grep -q "rank 1.*signal 9" "$T/mpi_die.out" ||
   grep -q "not reached" "$T/mpi_die.out"; then
  echo "FAIL: a dead rank: rc=$rc"; cat "$T/mpi_die.out"; fail=1
else
  echo "a dead rank aborts the job in $(( $(date +%s) - start )) s (mpirun rc=$rc)"
fi
if [ -x "$B/examples/mpi_pool" ]; then
  out=$("${MPIRUN[@]}" -n 3 "$B/examples/mpi_pool")
  expect=$'map: 333833500\nmap_array: 999999000000.0\nranks: 1 2'
  if [ "$out" != "$expect" ]; then
    echo "FAIL: examples/mpi_pool printed:"; echo "$out"; fail=1
  else
    echo "examples/mpi_pool: ok"
  fi
fi
# rank 0 SIGKILLed after a map_array: its segments do not stay behind
"${MPIRUN[@]}" -n 3 "$T/mpi_test_pool" --kill0 >"$T/mpi_kill0.out" 2>&1
grep -q "kill0: mapped" "$T/mpi_kill0.out" || { echo "FAIL: --kill0 did not map:"; cat "$T/mpi_kill0.out"; fail=1; }
for i in $(seq 1 50); do # the tracker unlinks once every holder closed its pipe
  left=$(comm -13 <(echo "$segs_before") <(ls /dev/shm 2>/dev/null | grep "^mproc-mpi-" | sort))
  [ -z "$left" ] && break
  sleep 0.1
done
[ -z "$left" ] && echo "a killed rank 0 leaves no segment behind"
# rank 0 unlinked its map_array segments at exit
left=$(comm -13 <(echo "$segs_before") <(ls /dev/shm 2>/dev/null | grep "^mproc-mpi-" | sort))
if [ -n "$left" ]; then
  echo "FAIL: segments left in /dev/shm: $left"; fail=1
fi
exit $fail
