# SPDX-License-Identifier: MIT
"""CPython column of bench_pool: the same jobs with multiprocessing.Pool.
Usage: bench_pool.py JOB METHOD N  -> prints one number
  JOB  map       Pool(2).map(f, range(N)), default chunks     seconds
       apply     N apply_async(f, (1,)).get() one at a time    us per trip
       imapu     imap_unordered(f, range(N), chunksize=1)      items/s
       start     Pool(2) + close + join, N times               ms per pool
The pool is started before the clock starts (except for start)."""
import multiprocessing as mp
import sys
import time


def f(x):
    return x


def main():
    job, method, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = mp.get_context(method)
    if job == 'start':
        best = None
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(n):
                p = ctx.Pool(2)
                p.close()
                p.join()
            dt = (time.perf_counter() - t) / n * 1e3
            best = dt if best is None else min(best, dt)
        print(best)
        return
    with ctx.Pool(2) as p:
        p.map(f, range(100))  # workers up
        best = None
        for _ in range(3):
            t = time.perf_counter()
            if job == 'map':
                out = p.map(f, range(n))
                assert len(out) == n and out[-1] == n - 1
                v = time.perf_counter() - t
            elif job == 'apply':
                for _ in range(n):
                    p.apply_async(f, (1,)).get()
                v = (time.perf_counter() - t) / n * 1e6
            elif job == 'imapu':
                s = sum(p.imap_unordered(f, range(n), chunksize=1))
                assert s == n * (n - 1) // 2
                v = n / (time.perf_counter() - t)
            else:
                sys.exit(2)
            if job == 'imapu':
                best = v if best is None else max(best, v)
            else:
                best = v if best is None else min(best, v)
        print(best)


if __name__ == '__main__':
    main()
