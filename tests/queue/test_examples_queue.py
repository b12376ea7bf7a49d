# SPDX-License-Identifier: MIT
"""The queue examples print what CPython prints running the same program
with the same start method: examples/queue_workers beside the seeds' worker
example (the set of result lines, which arrive in any order; process names
normalised), examples/queue_join beside its Python twin (the whole output).
threading has no CPython context: it is compared with CPython's fork run."""
import os
import re
import subprocess
import sys
import tempfile

build = os.environ.get("MPROC_BUILD_DIR", "build")
ex = os.path.join(build, "examples")

# The seeds' worker example, its random sleep scaled down to 0-50 ms (as in
# the C example), the start method from argv.
WORKERS = """
import time
import random
import sys

import multiprocessing
from multiprocessing import Process, Queue, current_process, freeze_support

def worker(input, output):
    for func, args in iter(input.get, 'STOP'):
        result = calculate(func, args)
        output.put(result)

def calculate(func, args):
    result = func(*args)
    return '%s says that %s%s = %s' % \\
        (current_process().name, func.__name__, args, result)

def mul(a, b):
    time.sleep(0.05*random.random())
    return a * b

def plus(a, b):
    time.sleep(0.05*random.random())
    return a + b

def test():
    NUMBER_OF_PROCESSES = 4
    TASKS1 = [(mul, (i, 7)) for i in range(20)]
    TASKS2 = [(plus, (i, 8)) for i in range(10)]

    task_queue = Queue()
    done_queue = Queue()

    for task in TASKS1:
        task_queue.put(task)

    for i in range(NUMBER_OF_PROCESSES):
        Process(target=worker, args=(task_queue, done_queue)).start()

    print('Unordered results:')
    for i in range(len(TASKS1)):
        print('\\t', done_queue.get())

    for task in TASKS2:
        task_queue.put(task)

    for i in range(len(TASKS2)):
        print('\\t', done_queue.get())

    for i in range(NUMBER_OF_PROCESSES):
        task_queue.put('STOP')

if __name__ == '__main__':
    freeze_support()
    multiprocessing.set_start_method(sys.argv[1])
    test()
"""

JOIN = """
import multiprocessing as mp
import sys

def worker(tasks, results):
    for n in iter(tasks.get, None):
        results.put(n * n)
        tasks.task_done()
    tasks.task_done()

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    tasks, results = mp.JoinableQueue(), mp.Queue()
    workers = [mp.Process(target=worker, args=(tasks, results))
               for _ in range(3)]
    for w in workers:
        w.start()
    for n in range(10):
        tasks.put(n)
    tasks.join()
    print('all tasks done, results waiting:', results.qsize())
    print('squares:', sorted(results.get() for _ in range(10)))
    for w in workers:
        tasks.put(None)
    tasks.join()
    for w in workers:
        w.join()
    print('workers stopped:', [w.exitcode for w in workers])
    try:
        tasks.task_done()
    except ValueError as e:
        print(e)
"""


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


def fail(name, msg, ours, theirs):
    global failures
    failures += 1
    print(f"MISMATCH {name}: {msg}\n--- ours\n{ours}--- python\n{theirs}")


LINE = re.compile(r"^\t Process-([1-4]) says that (mul|plus)\(\d+, \d+\) = \d+$")


def worker_lines(name, out):
    """(mul lines, plus lines), each sorted, names normalised; None if the
    output is not the example's shape."""
    lines = out.split("\n")
    if lines[0] != "Unordered results:" or lines[-1] != "" or len(lines) != 32:
        return None
    body = lines[1:31]
    if not all(LINE.match(x) for x in body):
        return None
    norm = [re.sub(r"Process-\d", "Process-N", x) for x in body]
    # the plus tasks are put only after the 20 mul results were printed
    return sorted(norm[:20]), sorted(norm[20:])


for m in ("fork", "spawn", "forkserver", "threading"):
    theirs = python(WORKERS, "fork" if m == "threading" else m)
    ours = run([f"{ex}/queue_workers", m])
    a, b = worker_lines(m, ours), worker_lines(m, theirs)
    if a is None or b is None:
        fail(f"queue_workers {m}", "not the example's shape", ours, theirs)
    elif a != b:
        fail(f"queue_workers {m}", "different result lines", ours, theirs)
    else:
        print(f"ok queue_workers {m}")

    theirs = python(JOIN, "fork" if m == "threading" else m)
    ours = run([f"{ex}/queue_join", m])
    if ours != theirs:
        fail(f"queue_join {m}", "different output", ours, theirs)
    else:
        print(f"ok queue_join {m}")

sys.exit(1 if failures else 0)
