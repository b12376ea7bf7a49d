# SPDX-License-Identifier: MIT
"""bench_mpi_pool's map with mpi4py.futures, under the same mpirun:

    mpirun -n 3 /usr/bin/python3 -m mpi4py.futures bench/mpi/bench_mpi4py.py

(Debian's python3-mpi4py installs for /usr/bin/python3.)  The map of a
trivial task over 100,000 items, with mproc's default chunksize for the same
number of workers, ceil(n / (4 * workers)), and with mpi4py's default, 1.
Best of 3 (1 for chunksize 1)."""
import math
import sys
import time

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor


def ident(x):
    return x


def main():
    n = 100000
    with MPIPoolExecutor() as ex:
        workers = MPI.COMM_WORLD.Get_size() - 1
        # rows of bench_mpi_pool's table (tools/run-bench.sh prints them
        # right after it)
        sys.stderr.write("bench_mpi4py: %d workers\n" % workers)
        for cs, reps in ((math.ceil(n / (4 * workers)), 3), (1, 1)):
            best = 1e9
            for _ in range(reps):
                t0 = time.perf_counter()
                out = list(ex.map(ident, range(n), chunksize=cs))
                best = min(best, time.perf_counter() - t0)
                assert out[-1] == n - 1
            impl = "CPython mpi4py.futures, chunksize %d" % cs
            print("| %-22s | %-42s | %12.0f | %-10s |"
                  % ("map 100000 ints", impl, n / best, "items/s"))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
