# SPDX-License-Identifier: MIT
"""examples/pool_progress (an array map) under every start method (stderr a
pipe): the checksum on stdout is the one Python computes for the same sums
(same order of additions, so the same doubles), stderr holds progress
lines in tqdm's format ending with 100%, and stdout has the insights
table: a row per worker whose tasks (elements) add up to N, the total row,
and the 5 slowest chunks."""
import os
import re
import subprocess

build = os.environ.get("MPROC_BUILD_DIR", "build")
ex = os.path.join(build, "examples", "pool_progress")
N = 3000
BAR = re.compile(r"^ *\d+%\|.{10}\| \d+/\d+ \[\d\d:\d\d<(\d\d:\d\d|\?), "
                 r"(\d+\.\dit/s|\?it/s|\d+\.\ds/it)\]$")


def checksum(n):
    total = 0.0
    for x in range(n):
        s = 0.0
        for k in range(1, 5000 + 10 * (x % 1000) + 1):
            s += 1.0 / k
        total += s
    return f"{n} results, checksum {total:.6e}"


def main():
    want = checksum(N)
    for method in ("fork", "spawn", "forkserver", "threading"):
        r = subprocess.run([ex, method, str(N)], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"{method}: failed ({r.returncode}): {r.stderr}")
        out = r.stdout.splitlines()
        err = r.stderr.splitlines()
        if not err or any(not BAR.match(l) for l in err) or \
                not err[-1].startswith(f"100%|██████████| {N}/{N} ["):
            raise SystemExit(f"{method}: bad progress lines: {err}")
        if out[0] != want:
            raise SystemExit(f"{method}: {out[0]!r}, expected {want!r}")
        if out[1] != "Pool insights (2 workers)" or \
                not out[2].split()[:3] == ["worker", "starts", "startup"]:
            raise SystemExit(f"{method}: no insights table: {out}")
        rows = [l.split() for l in out[3:5]]
        if [r_[0] for r_ in rows] != ["0", "1"] or \
                sum(int(r_[7]) for r_ in rows) != N:
            raise SystemExit(f"{method}: bad worker rows: {out[3:5]}")
        if out[5].split()[0] != "total" or int(out[5].split()[7]) != N:
            raise SystemExit(f"{method}: bad total row: {out[5]}")
        slow = [l for l in out if re.match(r"^  \d\. \d+\.\d+ s  worker [01]"
                                           r"  item \d+  args elements \d+-\d+$", l)]
        if len(slow) != 5 or out[-6] != "slowest tasks:":
            raise SystemExit(f"{method}: bad slowest tasks: {out}")
        print(f"pool_progress {method}: ok")


main()
