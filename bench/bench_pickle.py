#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""CPython column of bench_pickle: the same three jobs with the C pickle
module at protocol 4, best of N.  Prints one JSON object; with a directory
argument, also writes each job's pickle there (bench_pickle loads them, so
mproc decodes exactly what CPython writes: frames, memo and all)."""
import json
import os
import pickle
import sys
import time

N = int(os.environ.get("BENCH_RUNS", "7"))


def jobs():
    return {
        "ints": list(range(1000000)),
        "dict": {"key%d" % i: i * 0.5 for i in range(100000)},
        "bytes": bytes(range(256)) * (10 * 1024 * 1024 // 256),
    }


def best(f):
    t = float("inf")
    for _ in range(N):
        t0 = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - t0)
    return t


def main():
    out = {}
    outdir = sys.argv[1] if len(sys.argv) > 1 else None
    for name, v in jobs().items():
        p = pickle.dumps(v, 4)
        out[name] = {
            "size": len(p),
            "dumps": best(lambda: pickle.dumps(v, 4)),
            "loads": best(lambda: pickle.loads(p)),
        }
        if outdir:
            with open(os.path.join(outdir, name + ".pickle"), "wb") as f:
                f.write(p)
    out["python"] = sys.version.split()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
