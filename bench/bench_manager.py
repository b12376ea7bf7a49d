# SPDX-License-Identifier: MIT
"""CPython's column of bench_manager: the same jobs with multiprocessing's
managers.

Usage: python3 bench_manager.py dict N            (seconds per set+get pair)
       python3 bench_manager.py dict N ADDRESS K   (the same against a
                                                    running server, key K;
                                                    ADDRESS a path or host:port)
       python3 bench_manager.py hammer N P        (set ops per second, P clients)
       python3 bench_manager.py start N METHOD    (seconds per start+shutdown)
Prints one number."""
import sys
import time
import multiprocessing as mp
from multiprocessing.managers import SyncManager


def pairs(d, n):
    for i in range(100):
        d[i] = i
        d[i]
    t = time.perf_counter()
    for i in range(n):
        d[i] = i
        d[i]
    return (time.perf_counter() - t) / n


def hammer_one(d, n, k):
    for i in range(n):
        d[(k, i % 64)] = i


def main():
    job, n = sys.argv[1], int(sys.argv[2])
    if job == "dict" and len(sys.argv) > 3:
        a = sys.argv[3]
        if "/" not in a:
            host, port = a.rsplit(":", 1)
            a = (host, int(port))
        m = SyncManager(address=a, authkey=sys.argv[4].encode())
        m.connect()
        print(pairs(m.dict(), n))
    elif job == "dict":
        with SyncManager() as m:
            print(pairs(m.dict(), n))
    elif job == "hammer":
        procs = int(sys.argv[3])
        with SyncManager() as m:
            d = m.dict()
            ps = [mp.Process(target=hammer_one, args=(d, n, k)) for k in range(procs)]
            t = time.perf_counter()
            for p in ps:
                p.start()
            for p in ps:
                p.join()
            print(n * procs / (time.perf_counter() - t))
    elif job == "start":
        ctx = mp.get_context(sys.argv[3])
        t = time.perf_counter()
        for _ in range(n):
            m = SyncManager(ctx=ctx)
            m.start()
            m.shutdown()
        print((time.perf_counter() - t) / n)


if __name__ == "__main__":
    main()
