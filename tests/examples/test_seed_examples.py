# SPDX-License-Identifier: MIT
"""The seeds' smallest examples as C programs print what CPython prints
running the seed code, under every start method: process_hello (Process),
queue_basic (Queue), pipe_basic (Pipe), wait_readers (connection.wait, whose
lines come in any order: compared as sorted lists), pool_intro (Pool.map) and
pool_starmap_paths (mpire's start-method example, as Pool.starmap).
Under the C 'threading' method, CPython runs the same code with 'fork' (and
pool_intro with a ThreadPool)."""
import os
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


def run(args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{args} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def main():
    failed = 0
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
    shutil.rmtree(tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
