# SPDX-License-Identifier: MIT
"""CPython's column of bench_conn: the same jobs with multiprocessing.

Usage: python3 bench_conn.py pingpong N | throughput N | clients N
Prints one number: seconds per round trip, bytes per second, or seconds per
client (connect + authenticate + one 64-byte round trip)."""
import sys
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Client, Listener


def echo(c):
    while True:
        m = c.recv_bytes()
        if m == b"stop":
            return
        c.send_bytes(m)


def pingpong(n):
    a, b = Pipe()
    p = Process(target=echo, args=(b,))
    p.start()
    b.close()
    msg = b"x" * 64
    for _ in range(200):
        a.send_bytes(msg)
        a.recv_bytes()
    t = time.perf_counter()
    for _ in range(n):
        a.send_bytes(msg)
        a.recv_bytes()
    dt = time.perf_counter() - t
    a.send_bytes(b"stop")
    p.join()
    return dt / n


def sink(c, n):
    for _ in range(n):
        c.recv_bytes()
    c.send_bytes(b"done")


def throughput(n):
    a, b = Pipe()
    p = Process(target=sink, args=(b, n))
    p.start()
    b.close()
    msg = b"x" * (1 << 20)
    t = time.perf_counter()
    for _ in range(n):
        a.send_bytes(msg)
    a.recv_bytes()
    dt = time.perf_counter() - t
    p.join()
    return n * len(msg) / dt


def client_loop(addr, n):
    for _ in range(n):
        with Client(addr, authkey=b"k") as c:
            c.send_bytes(b"x" * 64)
            c.recv_bytes()


def clients(n):
    with Listener(None, authkey=b"k", backlog=128) as l:
        p = Process(target=client_loop, args=(l.address, n))
        t = time.perf_counter()
        p.start()
        for _ in range(n):
            with l.accept() as c:
                c.send_bytes(c.recv_bytes())
        p.join()
        return (time.perf_counter() - t) / n


if __name__ == "__main__":
    job, n = sys.argv[1], int(sys.argv[2])
    print(repr({"pingpong": pingpong, "throughput": throughput,
                "clients": clients}[job](n)))
