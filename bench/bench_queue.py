# SPDX-License-Identifier: MIT
"""CPython column of bench_queue: the same jobs with multiprocessing's Queue
and SimpleQueue (start method fork).
Usage: bench_queue.py JOB KIND N [PINNED]  -> prints one number
  KIND   Queue or SimpleQueue
  JOB    bytes64  64-byte bytes items, 1 producer -> 1 consumer   items/s
         bytes64x2 the same, 2 producers -> 2 consumers             items/s
         tuple    (i, 2.5, 'abcdefgh', None) items, 1 -> 1          items/s
         mib      1 MiB bytes items, 1 -> 1                          bytes/s
         pingpong put->get round trips over two queues               us/trip
Timing starts when every process is running (they meet at a Barrier) and
ends when all have finished."""
import multiprocessing as mp
import os
import sys
import time


def _produce(q, go, n, item, stop):
    go.wait()
    put = q.put
    for _ in range(n):
        put(item)
    if stop:
        put(None)


def _produce_tuples(q, go, n):
    go.wait()
    put = q.put
    for i in range(n):
        put((i, 2.5, 'abcdefgh', None))


def _consume(q, go, n, size):
    go.wait()
    get = q.get
    for _ in range(n):
        if len(get()) != size:
            sys.exit(3)


def _consume_until_none(q, go, count):
    go.wait()
    get = q.get
    c = 0
    while get() is not None:
        c += 1
    count.value = c


def _consume_tuples(q, go, n):
    go.wait()
    get = q.get
    for i in range(n):
        if get()[0] != i:
            sys.exit(3)


def _timed(procs, go):
    for p in procs:
        p.start()
    go.wait()  # every process is running
    t = time.perf_counter()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t
    if any(p.exitcode for p in procs):
        sys.exit(1)
    return dt


def bytes64(Q, n, size=64):
    q, go = Q(), mp.Barrier(3)
    item = bytes(size)
    procs = [mp.Process(target=_produce, args=(q, go, n, item, False)),
             mp.Process(target=_consume, args=(q, go, n, size))]
    return n / _timed(procs, go)


def bytes64x2(Q, n):
    q, go = Q(), mp.Barrier(5)
    counts = [mp.Value('q', 0) for _ in range(2)]
    item = bytes(64)
    procs = [mp.Process(target=_produce, args=(q, go, n, item, True))
             for _ in range(2)]
    procs += [mp.Process(target=_consume_until_none, args=(q, go, c))
              for c in counts]
    dt = _timed(procs, go)
    if sum(c.value for c in counts) != 2 * n:
        sys.exit(1)
    return 2 * n / dt


def tuple_(Q, n):
    q, go = Q(), mp.Barrier(3)
    procs = [mp.Process(target=_produce_tuples, args=(q, go, n)),
             mp.Process(target=_consume_tuples, args=(q, go, n))]
    return n / _timed(procs, go)


def mib(Q, n):
    return bytes64(Q, n, 1 << 20) * (1 << 20)


def _pong(a, b, n):
    get, put = a.get, b.put
    for _ in range(n + 1):
        put(get())


def pingpong(Q, n):
    a, b = Q(), Q()
    p = mp.Process(target=_pong, args=(a, b, n))
    p.start()
    msg = bytes(8)
    a.put(msg)  # one warm-up trip: the child is running
    b.get()
    t = time.perf_counter()
    for _ in range(n):
        a.put(msg)
        b.get()
    dt = time.perf_counter() - t
    p.join()
    return dt / n * 1e6


JOBS = {"bytes64": bytes64, "bytes64x2": bytes64x2, "tuple": tuple_,
        "mib": mib, "pingpong": pingpong}

if __name__ == "__main__":
    mp.set_start_method("fork")
    job, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if len(sys.argv) > 4 and sys.argv[4] == "1":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    Q = {"Queue": mp.Queue, "SimpleQueue": mp.SimpleQueue}[kind]
    print(f"{JOBS[job](Q, n):.6g}")
