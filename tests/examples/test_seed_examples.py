# SPDX-License-Identifier: MIT
"""The seeds' smallest examples as C programs print what CPython prints
running the seed code, under every start method: process_hello (Process),
queue_basic (Queue), pipe_basic (Pipe), wait_readers (connection.wait, whose
lines come in any order: compared as sorted lists), pool_intro (Pool.map) and
pool_starmap_paths (mpire's start-method example, as Pool.starmap), and
logging_session (log_to_stderr at INFO around a Manager: stderr compared,
the manager's address normalised and the "created temp directory" line
dropped -- mproc's comes from the main process, CPython's from the
manager's -- each process's lines compared in order, their interleaving
not, under the three process start methods).
Under the C 'threading' method, CPython runs the same code with 'fork' (and
pool_intro with a ThreadPool)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

build = os.environ.get("MPROC_BUILD_DIR", "build")
ex = os.path.join(build, "examples")

HEAD = "import multiprocessing as mp, sys\nfrom multiprocessing import Process, Queue, Pipe, Pool, current_process\n"

SEEDS = {
    "process_hello": """
def f(name):
    print('hello', name)

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    p = Process(target=f, args=('bob',))
    p.start()
    p.join()
""",
    "queue_basic": """
def f(q):
    q.put([42, None, 'hello'])

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    q = Queue()
    p = Process(target=f, args=(q,))
    p.start()
    print(q.get())    # prints "[42, None, 'hello']"
    p.join()
""",
    "pipe_basic": """
def f(conn):
    conn.send([42, None, 'hello'])
    conn.close()

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    parent_conn, child_conn = Pipe()
    p = Process(target=f, args=(child_conn,))
    p.start()
    print(parent_conn.recv())   # prints "[42, None, 'hello']"
    p.join()
""",
    "wait_readers": """
from multiprocessing.connection import wait

def foo(w):
    for i in range(10):
        w.send((i, current_process().name))
    w.close()

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    readers = []
    for i in range(4):
        r, w = Pipe(duplex=False)
        readers.append(r)
        p = Process(target=foo, args=(w,))
        p.start()
        w.close()
    while readers:
        for r in wait(readers):
            try:
                msg = r.recv()
            except EOFError:
                readers.remove(r)
            else:
                print(msg)
""",
    "pool_intro": """
from multiprocessing.pool import ThreadPool

def f(x):
    return x*x

if __name__ == '__main__':
    threads = sys.argv[1] == 'threading'
    if not threads:
        mp.set_start_method(sys.argv[1])
    with (ThreadPool if threads else Pool)(5) as p:
        print(p.map(f, [1, 2, 3]))
""",
    "pool_starmap_paths": """
from multiprocessing.pool import ThreadPool

def working_job(folder, filename):
    import os
    return os.path.join(folder, filename)

if __name__ == '__main__':
    threads = sys.argv[1] == 'threading'
    if not threads:
        mp.set_start_method(sys.argv[1])
    with (ThreadPool if threads else Pool)(2) as pool:
        print(pool.starmap(working_job, [('folder', '0.p3'), ('folder', '1.p3')]))
""",
}
UNORDERED = {"wait_readers"}

# compared on stderr, under the process start methods only
LOGGED = {
    "logging_session": """
import logging

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    logger = mp.log_to_stderr()
    logger.setLevel(logging.INFO)
    logger.warning('doomed')
    m = mp.Manager()
    del m
""",
}


def by_process(lines):
    """Each process's lines in their order.  How two processes' lines
    interleave is not fixed, in CPython either: its manager reports its
    address before it logs "manager serving at", so the parent's "sending
    shutdown message" comes before or after that line from run to run."""
    procs = {}
    for line in lines:
        m = re.match(r"\[[A-Z]+/([^\]]+)\] ", line)
        procs.setdefault(m.group(1) if m else "", []).append(line)
    return procs


def normalise_log(text):
    out = []
    for line in text.splitlines():
        if "] created temp directory " in line:
            continue
        # CPython's server now and then fails to answer the shutdown request
        # of a client that hung up already (managers.py, Server._handle_request
        # logs it at INFO); mproc stops its server through a pipe, unanswered
        if re.search(r"\] (Failure to send message: | \.\.\. (request|exception) was )", line):
            continue
        out.append(re.sub(r"manager serving at '.*'$",
                          "manager serving at '<address>'", line))
    return out


def run(args, stream="stdout"):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{args} failed ({r.returncode}): {r.stderr}")
    return getattr(r, stream)


def unmapped_examples():
    """examples/README.md has a row for every program in examples/."""
    here = os.path.dirname(os.path.abspath(__file__))
    exdir = os.path.join(here, "..", "..", "examples")
    with open(os.path.join(exdir, "README.md")) as f:
        table = f.read()
    return [n[:-2] for n in sorted(os.listdir(exdir))
            if n.endswith(".c") and f"`{n[:-2]}`" not in table]


def main():
    failed = 0
    missing = unmapped_examples()
    if missing:
        print(f"FAIL examples/README.md has no row for: {', '.join(missing)}")
        failed += 1
    tmp = tempfile.mkdtemp()
    for name, seed in SEEDS.items():
        # a file, not -c: spawn and forkserver children import the main module
        script = os.path.join(tmp, name + ".py")
        with open(script, "w") as f:
            f.write(HEAD + seed)
        for method in ("fork", "spawn", "forkserver", "threading"):
            pymethod = method if method != "threading" or name.startswith("pool_") else "fork"
            want = run([sys.executable, script, pymethod])
            got = run([os.path.join(ex, name), method])
            if name in UNORDERED:
                want, got = sorted(want.splitlines()), sorted(got.splitlines())
            if want != got:
                print(f"FAIL {name} {method}:\n--- CPython\n{want}\n--- mproc\n{got}")
                failed += 1
            else:
                print(f"ok {name} {method}")
    for name, seed in LOGGED.items():
        script = os.path.join(tmp, name + ".py")
        with open(script, "w") as f:
            f.write(HEAD + seed)
        for method in ("fork", "spawn", "forkserver"):
            want = normalise_log(run([sys.executable, script, method], "stderr"))
            got = normalise_log(run([os.path.join(ex, name), method], "stderr"))
            if not want or by_process(want) != by_process(got):
                print(f"FAIL {name} {method}:\n--- CPython\n" + "\n".join(want)
                      + "\n--- mproc\n" + "\n".join(got))
                failed += 1
            else:
                print(f"ok {name} {method}")
    shutil.rmtree(tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
