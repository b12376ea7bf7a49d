#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run every benchmark of a build (default: build/).  Each prints its own
# table: mproc beside CPython's multiprocessing and the raw system-call floor,
# with ratios.
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")/.."
status=0

# The MPI pool's benchmark runs under mpirun (3 ranks: 2 workers), and
# mpi4py.futures doing the same map under the same mpirun adds its rows to
# the table.  Skipped without mpirun; the mpi4py rows without mpi4py.
mpi_bench() {
  if ! command -v mpirun >/dev/null 2>&1; then
    echo "skipped: no mpirun"
    return 0
  fi
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
  timeout 900 mpirun --oversubscribe -n 3 "$1" || return 1
  if /usr/bin/python3 -c 'import mpi4py' 2>/dev/null; then
    timeout 900 mpirun --oversubscribe -n 3 /usr/bin/python3 -m mpi4py.futures \
      bench/mpi/bench_mpi4py.py 2>/dev/null || echo "(mpi4py.futures run failed)"
  fi
}

for b in "$B"/bench/bench_*; do
  [ -x "$b" ] || continue
  echo "==== $(basename "$b")"
  case $(basename "$b") in
    bench_mpi_pool) mpi_bench "$b" || status=1 ;;
    *) "$b" || status=1 ;;
  esac
  echo
done
exit $status
