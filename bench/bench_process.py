# SPDX-License-Identifier: MIT
"""CPython's column of bench_process: start+join latency of a Process with
the given start method (median, microseconds).  Usage: method n"""
import multiprocessing as mp
import multiprocessing.dummy
import statistics
import sys
import time


def f():
    pass


if __name__ == "__main__":
    method, n = sys.argv[1], int(sys.argv[2])
    if method == "threading":
        make = multiprocessing.dummy.Process
    else:
        make = mp.get_context(method).Process
    p = make(target=f)  # warm up (starts the forkserver)
    p.start()
    p.join()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        p = make(target=f)
        p.start()
        p.join()
        ts.append(time.perf_counter() - t)
    print(f"{statistics.median(ts) * 1e6:.1f}")
