# SPDX-License-Identifier: MIT
"""The pool's progress bar (mp_map_opts.progress), driven through
tests/pool/helper_progress under every start method and every map kind
(map_array included: it counts elements as each chunk ends):

  - stderr a terminal (a pty): the bar is redrawn in place (\\r), the first
    drawing is the empty bar, the counts never go back, at least one
    drawing lies between 0 and the total, and the last is 100% with the
    total and a newline;
  - stderr not a terminal (a pipe): whole lines only, each in the format,
    no line twice, the last 100%;
  - every drawing is tqdm's format: ' 45%|████▌     | 450/1000
    [00:02<00:03, 180.2it/s]' (s/it below 1 item a second) with the bar
    matching the count;
  - with two chunks of 30 items, the counts between show single items
    (the workers count items, not chunks)."""
import os
import pty
import re
import subprocess
import sys

build = os.environ.get("MPROC_BUILD_DIR", "build")
helper = os.path.join(build, "tests", "helper_progress")

LINE = re.compile(r"^ *(\d+)%\|(.{10})\| (\d+)/(\d+) "
                  r"\[(\d\d:\d\d)<(\d\d:\d\d|\?), "
                  r"(\d+\.\dit/s|\?it/s|\d+\.\ds/it)\]$")
EIGHTHS = " ▏▎▍▌▋▊▉"


def check_line(s, total, who):
    m = LINE.match(s)
    if not m:
        raise SystemExit(f"{who}: not a progress line: {s!r}")
    pct, bar, n, tot = int(m[1]), m[2], int(m[3]), int(m[4])
    if tot != total or not 0 <= n <= total:
        raise SystemExit(f"{who}: bad counts in {s!r}")
    if pct != n * 100 // total:
        raise SystemExit(f"{who}: percent {pct} for {n}/{total}: {s!r}")
    eighths = n * 80 // total
    want = "█" * (eighths // 8)
    if eighths % 8:
        want += EIGHTHS[eighths % 8]
    want = want.ljust(10)
    if bar != want:
        raise SystemExit(f"{who}: bar {bar!r}, expected {want!r}: {s!r}")
    if n == 0 and (m[6] != "?" or m[7] != "?it/s"):
        raise SystemExit(f"{who}: no rate yet, expected '?': {s!r}")
    return n


def run_pipe(args):
    r = subprocess.run(args, capture_output=True, timeout=300)
    if r.returncode != 0 or r.stdout.decode().strip() != f"ok {args[3]}":
        raise SystemExit(f"{args}: failed ({r.returncode}): {r.stderr!r}")
    return r.stderr.decode()


def run_tty(args):
    master, slave = pty.openpty()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = p.stdout.read().decode()
    rc = p.wait(timeout=300)
    if rc != 0 or out.strip() != f"ok {args[3]}":
        raise SystemExit(f"{args}: failed ({rc}): {b''.join(chunks)!r}")
    return b"".join(chunks).decode()


def check_tty(err, total, who):
    if not err.startswith("\r") or not err.endswith("\n"):
        raise SystemExit(f"{who}: expected \\r redraws ending in a newline: "
                         f"{err!r}")
    if err.count("\n") != 1 and err.count("\r\n") != 1:
        raise SystemExit(f"{who}: more than one line: {err!r}")
    parts = [s for s in re.split(r"[\r\n]+", err) if s]
    counts = [check_line(s, total, who) for s in parts]
    if counts[0] != 0 or counts[-1] != total:
        raise SystemExit(f"{who}: first {counts[0]}, last {counts[-1]}")
    if counts != sorted(counts):
        raise SystemExit(f"{who}: counts went back: {counts}")
    if not any(0 < c < total for c in counts):
        raise SystemExit(f"{who}: no drawing between 0 and {total}: {counts}")
    return counts


def check_pipe(err, total, who):
    if "\r" in err or not err.endswith("\n"):
        raise SystemExit(f"{who}: expected plain lines: {err!r}")
    lines = err.splitlines()
    counts = [check_line(s, total, who) for s in lines]
    if counts[-1] != total or len(set(lines)) != len(lines):
        raise SystemExit(f"{who}: bad lines: {lines}")
    if counts != sorted(counts):
        raise SystemExit(f"{who}: counts went back: {counts}")


def main():
    for method in ("fork", "spawn", "forkserver", "threading"):
        for kind in ("map", "starmap", "map_async", "starmap_async", "imap",
                     "imap_unordered", "map_array"):
            args = [helper, method, kind, "60", "1", "20"]
            who = f"{method} {kind}"
            check_tty(run_tty(args), 60, who + " (tty)")
            check_pipe(run_pipe(args), 60, who + " (pipe)")
        # two chunks of 30: the drawings between show single items
        args = [helper, method, "map", "60", "30", "20"]
        counts = check_tty(run_tty(args), 60, method + " chunks")
        if not any(c not in (0, 30, 60) for c in counts):
            raise SystemExit(f"{method}: counts by chunk only: {counts}")
        # map_array counts whole chunks: chunks of 10 show multiples of 10
        args = [helper, method, "map_array", "60", "10", "20"]
        counts = check_tty(run_tty(args), 60, method + " map_array chunks")
        if any(c % 10 for c in counts) or not any(0 < c < 60 for c in counts):
            raise SystemExit(f"{method}: map_array counts not by chunk: {counts}")
        # an empty map draws nothing
        err = run_pipe([helper, method, "map", "0", "1", "0"])
        if err:
            raise SystemExit(f"{method}: an empty map drew {err!r}")
        print(f"progress {method}: ok")


main()
