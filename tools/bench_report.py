#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The benchmark report: every benchmark run once, each job charted.

    tools/bench_report.py BUILD [OUTDIR]      run tools/run-bench.sh BUILD, then
                                              write OUTDIR (default bench/report)
    tools/bench_report.py --from FILE [OUTDIR]  the same from a saved run

OUTDIR gets index.html, one PNG chart per job (rendered by gnuplot), and
bench-output.txt (the benchmarks' own output, as they printed it).  Each
chart puts mproc beside CPython and the raw floor for one job, as bars (log
scale when the values span more than 20x), with the rows of the benchmark's
table beneath it.  The page names the machine, the date and the commit.

The benchmarks print markdown tables of two shapes, both read here:
  long:  | job | implementation | result | unit | ratio   (queue, sync, shm, pool, mpi_pool)
  wide:  | job | mproc | raw floor | CPython | /raw | Py/us |     (conn, process, pickle, manager)
        where a cell is "41.34 us" and a cell ending in "x" is a ratio.
"""
import datetime
import html
import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_UNIT = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([A-Za-z/%][\w/ %.]*)?\s*$")
LOWER_IS_BETTER = re.compile(r"^(ns|us|ms|s|sec|seconds?)(/|\b)|/trip|/op|/call|latency", re.I)


class Job:
    def __init__(self, bench, name):
        self.bench, self.name = bench, name
        self.bars = []   # (implementation, value, unit)
        self.rows = []   # table rows as printed (list of cells)
        self.header = []


def kind_of(impl):
    s = impl.lower()
    if "mproc" in s:
        return "mproc"
    if "cpython" in s or "python" in s or s.startswith("py"):
        return "CPython"
    return "floor"


def split_row(line):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells


def parse(text):
    """[(bench name, [Job])] in the order printed."""
    benches = []
    cur = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^==== (\S+)", line)
        if m:
            cur = (m.group(1), [])
            benches.append(cur)
            i += 1
            continue
        if line.startswith("|") and cur is not None:
            header = split_row(line)
            i += 1
            table = []
            while i < len(lines) and lines[i].startswith("|"):
                if not re.match(r"^\|[-| ]+$", lines[i].rstrip()):
                    table.append(split_row(lines[i]))
                i += 1
            read_table(cur, header, table)
            continue
        i += 1
    return benches


def read_table(bench, header, table):
    name, jobs = bench
    lower = [h.lower() for h in header]
    by_name = {}

    def job(n):
        if n not in by_name:
            by_name[n] = Job(name, n)
            by_name[n].header = header
            jobs.append(by_name[n])
        return by_name[n]

    if "implementation" in lower:
        ji, ii = 0, lower.index("implementation")
        vi = ii + 1
        ui = ii + 2 if len(header) > ii + 2 else None
        last = ""
        for row in table:
            if len(row) <= vi:
                continue
            jn = row[ji] or last
            last = jn
            j = job(jn)
            j.rows.append(row)
            try:
                v = float(row[vi])
            except ValueError:
                continue  # n/a, FAILED
            unit = row[ui] if ui is not None and ui < len(row) else ""
            j.bars.append((row[ii], v, unit))
    else:
        for row in table:
            if not row:
                continue
            j = job(row[0])
            j.rows.append(row)
            for h, cell in zip(header[1:], row[1:]):
                if cell.endswith("x") or not cell:
                    continue  # a ratio
                m = NUM_UNIT.match(cell)
                if m:
                    j.bars.append((h, float(m.group(1)), (m.group(2) or "").strip()))


def gnuplot_chart(job, path):
    """A bar chart of the job's bars into path (PNG).  False if gnuplot is
    missing or failed."""
    bars = [b for b in job.bars if b[1] > 0]
    if not bars:
        return False
    units = sorted(set(b[2] for b in bars))
    unit = units[0] if len(units) == 1 else " / ".join(units)
    vals = [b[1] for b in bars]
    logscale = max(vals) / min(vals) > 20
    better = "lower is better" if LOWER_IS_BETTER.search(unit) else "higher is better"
    colours = {"mproc": "#1f77b4", "CPython": "#ff7f0e", "floor": "#7f7f7f"}
    data = path + ".dat"
    with open(data, "w") as f:
        for k, (impl, v, _) in enumerate(bars):
            label = impl.replace('"', "'")
            f.write('%d "%s" %g 0x%s\n' % (k, label, v, colours[kind_of(impl)][1:]))
    title = "%s (%s)" % (job.name, better)
    script = [
        "set terminal pngcairo noenhanced size 900,%d font 'sans,10'" % (140 + 34 * len(bars)),
        "set output '%s'" % path,
        "set title \"%s\"" % title.replace('"', "'"),
        "unset key",
        "set style fill solid 0.85 border -1",
        "set xlabel \"%s%s\"" % (unit.replace('"', "'"), " (log scale)" if logscale else ""),
        "set yrange [%f:-0.6]" % (len(bars) - 0.4),
        "set ytics nomirror",
        "set grid xtics",
        "set offsets 0, graph 0.12, 0, 0",
    ]
    if logscale:
        script.append("set logscale x")
        script.append("set xrange [%g:*]" % (min(vals) / 3))
    else:
        script.append("set xrange [0:*]")
    script.append(
        "plot '%s' using (%s):1:(%s):($3):($1-0.35):($1+0.35):4:ytic(2) with boxxyerror lc rgb variable, "
        "'' using 3:1:(sprintf(' %%.3g', $3)) with labels left"
        % (data, "%g" % (min(vals) / 3) if logscale else "0", "%g" % (min(vals) / 3) if logscale else "0"))
    try:
        r = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True,
                           capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    os.unlink(data)
    if r.returncode != 0:
        sys.stderr.write("gnuplot failed for %s: %s\n" % (job.name, r.stderr))
        return False
    return os.path.exists(path)


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else n
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "?"
    return "%s; %s; %d CPUs (%d usable); load average at the start %s; Python %s" % (
        platform.platform(), cpu or "unknown CPU", n, usable, load, platform.python_version())


def commit():
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return r.stdout.strip() + (" (with local changes)" if dirty else "") if r.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def write_report(text, outdir, started):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "bench-output.txt"), "w") as f:
        f.write(text)
    benches = parse(text)
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mproc benchmarks</title>",
           "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:.5em 0 2em}td,th{border:1px solid #ccc;padding:.2em .5em;"
           "font-size:90%}td.n{text-align:right}img{max-width:100%}"
           ".mproc{color:#1f77b4}.CPython{color:#ff7f0e}.floor{color:#555}</style></head><body>",
           "<h1>mproc benchmarks</h1>",
           "<p>Machine: %s<br>Date: %s<br>Commit: %s</p>" % (
               html.escape(machine()), html.escape(started), html.escape(commit())),
           "<p>Each benchmark runs mproc beside CPython's multiprocessing doing the same job and "
           "beside the raw system-call floor, in one run. Bars: <span class='mproc'>mproc</span>, "
           "<span class='CPython'>CPython</span>, <span class='floor'>the floor</span>. "
           "The benchmarks' own output: <a href='bench-output.txt'>bench-output.txt</a>.</p>"]
    nchart = 0
    toc = []
    body = []
    for bench, jobs in benches:
        toc.append("<li><a href='#%s'>%s</a> (%d jobs)</li>" % (bench, bench, len(jobs)))
        body.append("<h2 id='%s'>%s</h2>" % (bench, html.escape(bench)))
        for k, job in enumerate(jobs):
            png = "%s-%02d.png" % (bench, k)
            body.append("<h3>%s</h3>" % html.escape(job.name))
            if gnuplot_chart(job, os.path.join(outdir, png)):
                nchart += 1
                body.append("<img src='%s' alt='%s'>" % (png, html.escape(job.name)))
            body.append("<table><tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(h) for h in job.header))
            for row in job.rows:
                body.append("<tr>%s</tr>" % "".join(
                    "<td%s>%s</td>" % (" class='n'" if NUM_UNIT.match(c) else "", html.escape(c))
                    for c in row))
            body.append("</table>")
    out.append("<ul>%s</ul>" % "".join(toc))
    out += body
    out.append("</body></html>")
    with open(os.path.join(outdir, "index.html"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    njobs = sum(len(j) for _, j in benches)
    print("bench report: %s/index.html (%d benchmarks, %d jobs, %d charts)"
          % (outdir, len(benches), njobs, nchart))
    return 0 if njobs and nchart == sum(1 for _, js in benches for j in js if any(b[1] > 0 for b in j.bars)) else 1


def main(argv):
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if len(argv) >= 2 and argv[0] == "--from":
        text = open(argv[1], encoding="utf-8").read()
        outdir = argv[2] if len(argv) > 2 else os.path.join(ROOT, "bench", "report")
    elif len(argv) >= 1:
        outdir = argv[1] if len(argv) > 1 else os.path.join(ROOT, "bench", "report")
        r = subprocess.run([os.path.join(ROOT, "tools", "run-bench.sh"), argv[0]],
                           stdout=subprocess.PIPE, text=True)
        text = r.stdout
        if r.returncode != 0:
            sys.stderr.write("a benchmark failed (its rows say FAILED); the report shows the rest\n")
    else:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    return write_report(text, outdir, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
