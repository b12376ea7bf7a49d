# SPDX-License-Identifier: MIT
"""The process examples print what the seeds' Python programs print (pids
aside): each is run beside CPython running the seed code with the same start
method, and the outputs are compared with every number replaced by N."""
import os
import re
import subprocess
import sys
import tempfile

build = os.environ.get("MPROC_BUILD_DIR", "build")
ex = os.path.join(build, "examples")

INFO = """
from multiprocessing import Process
import multiprocessing as mp
import os, sys

def info(title):
    print(title)
    print('module name:', __name__)
    print('parent process:', os.getppid())
    print('process id:', os.getpid())

def f(name):
    info('function f')
    print('hello', name)

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    info('main line')
    p = Process(target=f, args=('bob',))
    p.start()
    p.join()
"""

CONTEXTS = """
import multiprocessing as mp, sys

def foo(q):
    q.put('hello')

if __name__ == '__main__':
    ctx = mp.get_context(sys.argv[1])
    q = ctx.Queue()
    p = ctx.Process(target=foo, args=(q,))
    p.start()
    print(q.get())
    p.join()
"""

TERMINATE = """
import multiprocessing, time, signal
if __name__ == '__main__':
    p = multiprocessing.Process(target=time.sleep, args=(1000,))
    print(p, p.is_alive())
    p.start()
    print(p, p.is_alive())
    p.terminate()
    p.join()
    print(p, p.is_alive())
    print(p.exitcode == -signal.SIGTERM)
"""

METHODS = """
import multiprocessing
print(multiprocessing.get_all_start_methods())
print(multiprocessing.get_start_method())
"""


def norm(text):
    return re.sub(r"\d+", "N", text)


def run(args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{args} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def python(code, *args):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "seed.py")
        with open(path, "w") as f:
            f.write(code)
        return run([sys.executable, path, *args])


failures = 0


def check(name, ours, theirs):
    global failures
    if norm(ours) != norm(theirs):
        failures += 1
        print(f"MISMATCH {name}:\n--- ours\n{ours}--- python\n{theirs}")
    else:
        print(f"ok {name}")


for m in ("fork", "spawn", "forkserver"):
    check(f"process_info {m}", run([f"{ex}/process_info", m]),
          python(INFO, m))
    check(f"contexts {m}", run([f"{ex}/contexts", m]), python(CONTEXTS, m))

# threading has no CPython context: the child is a thread of the parent.
out = run([f"{ex}/process_info", "threading"]).splitlines()
assert out[0] == "main line" and out[4] == "function f", out
assert out[3] == out[7] and out[2] == out[6], "same process under threading"
assert out[8] == "hello bob", out
assert run([f"{ex}/contexts", "threading"]) == "hello\n"

check("terminate", run([f"{ex}/terminate"]), python(TERMINATE))
# Ours also offers mpire's 'threading' (last, so the default stays first).
theirs = python(METHODS).replace("]", ", 'threading']", 1)
check("start_methods", run([f"{ex}/start_methods"]), theirs)
sys.exit(1 if failures else 0)
