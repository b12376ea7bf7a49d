# SPDX-License-Identifier: MIT
"""CPython column of bench_shm.  Usage: bench_shm.py JOB N -> one number."""
import multiprocessing as mp
import sys
import time
from multiprocessing import shared_memory


def shm_cycle(n):  # us per create(4096) + close + unlink
    t = time.perf_counter()
    for _ in range(n):
        s = shared_memory.SharedMemory(create=True, size=4096)
        s.close()
        s.unlink()
    return (time.perf_counter() - t) / n * 1e6


def value_rw(n):  # ns per get+set of a synchronized Value
    v = mp.Value('q', 0)
    t = time.perf_counter()
    for _ in range(n):
        v.value = v.value + 1
    return (time.perf_counter() - t) / n * 1e9


def array_copy(n):  # GB/s, arr[:] of a 1M-double Array (lock=False)
    a = mp.Array('d', 1000000, lock=False)
    t = time.perf_counter()
    for _ in range(n):
        a[:]
    return n * 8e6 / (time.perf_counter() - t) / 1e9


if __name__ == "__main__":
    job, n = sys.argv[1], int(sys.argv[2])
    print(f"{globals()[job](n):.6g}")
