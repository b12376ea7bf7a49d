# SPDX-License-Identifier: MIT
"""The benchmark report (make bench-report) from a saved run: both table
shapes the benchmarks print are read, every job with a number gets a PNG
chart and its table, rows that failed stay in the table without a bar, and
the page names the machine, the date and the commit."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, "tools", "bench_report.py")

RUN = """==== bench_wide
bench_wide: a wide table

| job                      |        mproc |    raw floor |      CPython |   /raw |  Py/us |
|--------------------------|--------------|--------------|--------------|--------|--------|
| 64 B ping-pong RTT       |     21.03 us |     18.76 us |     35.01 us |  1.12x |  1.66x |
| 1 MiB messages one way   |    3543 MB/s |    4310 MB/s |     455 MB/s |  0.82x |  7.78x |

==== bench_long
| job                      | implementation        |     result | unit      | ratio
|--------------------------|-----------------------|------------|-----------|------
| 64 B items one at a time | raw SPSC ring         |     24.800 | M items/s |
| 64 B items one at a time | mproc put/get         |      8.030 | M items/s | 0.32x raw
| 64 B items one at a time | CPython Queue         |      0.111 | M items/s |
| tuples                   | mproc put/get         |     FAILED | M items/s |
| tuples                   | CPython Queue         |      0.090 | M items/s |
"""


def main():
    failed = []
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "run.txt")
        with open(src, "w") as f:
            f.write(RUN)
        out = os.path.join(d, "report")
        r = subprocess.run([sys.executable, GEN, "--from", src, out], capture_output=True, text=True)
        print(r.stdout + r.stderr, end="")
        if r.returncode != 0:
            failed.append("the generator failed")
        if "2 benchmarks, 4 jobs, 4 charts" not in r.stdout:
            failed.append("expected 2 benchmarks, 4 jobs, 4 charts")
        for png in ("bench_wide-00.png", "bench_wide-01.png", "bench_long-00.png", "bench_long-01.png"):
            p = os.path.join(out, png)
            if not os.path.exists(p) or open(p, "rb").read(8) != b"\x89PNG\r\n\x1a\n":
                failed.append("no PNG " + png)
        page = open(os.path.join(out, "index.html")).read() if os.path.exists(os.path.join(out, "index.html")) else ""
        for text in ("Machine:", "Date:", "Commit:", "64 B ping-pong RTT", "1 MiB messages one way",
                     "64 B items one at a time", "FAILED", "0.32x raw", "bench-output.txt",
                     "<img src='bench_long-01.png'"):
            if text not in page:
                failed.append("index.html lacks %r" % text)
        if open(os.path.join(out, "bench-output.txt")).read() != RUN:
            failed.append("bench-output.txt is not the run's output")
    for f in failed:
        print("FAIL:", f)
    print("bench report: " + ("ok" if not failed else "%d failures" % len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
