# SPDX-License-Identifier: MIT
"""examples/pool_basic prints what the seeds' "Using a pool of workers"
example prints under CPython with the same start method: the map line, the
imap_unordered numbers (as a set: their order is arbitrary), 400, a pid, a
list of 4 pids, the TimeoutError line and the two closing lines.  Pids are
compared as "a number" (and the list as 4 numbers)."""
import os
import re
import subprocess
import sys
import tempfile

build = os.environ.get("MPROC_BUILD_DIR", "build")
ex = os.path.join(build, "examples", "pool_basic")

SEED = """
from multiprocessing import Pool, TimeoutError
import multiprocessing as mp
import time
import os, sys

def f(x):
    return x*x

if __name__ == '__main__':
    ctx = mp.get_context(sys.argv[1])
    with ctx.Pool(processes=4) as pool:
        print(pool.map(f, range(10)))
        for i in pool.imap_unordered(f, range(10)):
            print(i)
        res = pool.apply_async(f, (20,))
        print(res.get(timeout=1))
        res = pool.apply_async(os.getpid, ())
        print(res.get(timeout=1))
        multiple_results = [pool.apply_async(os.getpid, ()) for i in range(4)]
        print([res.get(timeout=1) for res in multiple_results])
        res = pool.apply_async(time.sleep, (10,))
        try:
            print(res.get(timeout=1))
        except TimeoutError:
            print("We lacked patience and got a multiprocessing.TimeoutError")
        print("For the moment, the pool remains available for more work")
    print("Now the pool is closed and no longer available")
"""


def run(args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{args} failed ({r.returncode}): {r.stderr}")
    return r.stdout.splitlines()


def shape(lines):
    """(map line, set of unordered numbers, the rest with pids as N)."""
    if len(lines) != 17:
        raise SystemExit(f"expected 17 lines, got {len(lines)}: {lines}")
    rest = [re.sub(r"\d+", "N", l) if k in (12, 13) else l
            for k, l in enumerate(lines)][11:]
    return lines[0], sorted(lines[1:11]), rest


def main():
    with tempfile.TemporaryDirectory() as d:
        seed = os.path.join(d, "pool_seed.py")
        with open(seed, "w") as fh:
            fh.write(SEED)
        for method in ("fork", "spawn", "forkserver", "threading"):
            mine = shape(run([ex, method]))
            # CPython's ThreadPool is multiprocessing.pool.ThreadPool: the
            # seed with a fork context stands in for its output
            py = shape(run([sys.executable, seed,
                            "fork" if method == "threading" else method]))
            if mine != py:
                raise SystemExit(f"{method}: output differs\nmproc:   {mine}"
                                 f"\nCPython: {py}")
            print(f"pool_basic {method}: same as CPython")


main()
