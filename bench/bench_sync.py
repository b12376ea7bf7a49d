# SPDX-License-Identifier: MIT
"""CPython column of bench_sync: the same jobs with multiprocessing.
Usage: bench_sync.py JOB N  -> prints one number (see each job)."""
import multiprocessing as mp
import sys
import time


def uncontended(n):  # ns per acquire+release
    lock = mp.Lock()
    t = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - t) / n * 1e9


def _count(lock, counter, n):
    for _ in range(n):
        with lock:
            counter.value += 1


def counter(n):  # ops/s, 2 processes incrementing a raw counter under a Lock
    lock = mp.Lock()
    c = mp.RawValue('q', 0)
    ps = [mp.Process(target=_count, args=(lock, c, n)) for _ in range(2)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    dt = time.perf_counter() - t
    assert c.value == 2 * n
    return 2 * n / dt


def _pong(a, b, n):
    for _ in range(n):
        a.wait()
        a.clear()
        b.set()


def pingpong(n):  # us per round trip, Event ping-pong between 2 processes
    a, b = mp.Event(), mp.Event()
    p = mp.Process(target=_pong, args=(a, b, n))
    p.start()
    t = time.perf_counter()
    for _ in range(n):
        a.set()
        b.wait()
        b.clear()
    dt = time.perf_counter() - t
    p.join()
    return dt / n * 1e6


def _vinc(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def value(n):  # ops/s, 2 processes: with v.get_lock(): v.value += 1
    v = mp.Value('q', 0)
    ps = [mp.Process(target=_vinc, args=(v, n)) for _ in range(2)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    dt = time.perf_counter() - t
    assert v.value == 2 * n
    return 2 * n / dt


if __name__ == "__main__":
    mp.set_start_method("fork")
    job, n = sys.argv[1], int(sys.argv[2])
    print(f"{globals()[job](n):.6g}")
