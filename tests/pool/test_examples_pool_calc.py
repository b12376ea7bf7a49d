# SPDX-License-Identifier: MIT
"""examples/pool_calc prints what the seeds' Pool test() example
(calculate/mul/plus/f, error handling, timeouts) prints under CPython with
the same start method, the random sleeps scaled to 0-50 ms on both sides.

Compared line by line where CPython's output is deterministic, as sets
where it is not:
  - a worker's name is nondeterministic: it is replaced by WORKER, after
    checking it is the method's kind (ForkPoolWorker-N ...) with N in 1..4
    (the first pool of the program); CPython's ThreadPool names no worker
    (current_process() is MainProcess in a thread): mproc's ThreadPool
    workers are ThreadPoolWorker-N;
  - the imap_unordered section is compared as a set (and its size);
  - the timeout sections print a '.' per timeout, a number that depends on
    timing: the dots are removed (the lines otherwise compared as they are).
"""
import os
import re
import subprocess
import sys
import tempfile

build = os.environ.get("MPROC_BUILD_DIR", "build")
ex = os.path.join(build, "examples", "pool_calc")

SEED = r"""
import multiprocessing
import multiprocessing.pool
import time
import random
import sys

def calculate(func, args):
    result = func(*args)
    return '%s says that %s%s = %s' % (
        multiprocessing.current_process().name,
        func.__name__, args, result
        )

def calculatestar(args):
    return calculate(*args)

def mul(a, b):
    time.sleep(0.05 * random.random())
    return a * b

def plus(a, b):
    time.sleep(0.05 * random.random())
    return a + b

def f(x):
    return 1.0 / (x - 5.0)

def pow3(x):
    return x ** 3

def noop(x):
    pass

def test(method):
    PROCESSES = 4
    print('Creating pool with %d processes\n' % PROCESSES)

    if method == 'threading':
        pool = multiprocessing.pool.ThreadPool(PROCESSES)
    else:
        pool = multiprocessing.get_context(method).Pool(PROCESSES)
    with pool:
        TASKS = [(mul, (i, 7)) for i in range(10)] + \
                [(plus, (i, 8)) for i in range(10)]

        results = [pool.apply_async(calculate, t) for t in TASKS]
        imap_it = pool.imap(calculatestar, TASKS)
        imap_unordered_it = pool.imap_unordered(calculatestar, TASKS)

        print('Ordered results using pool.apply_async():')
        for r in results:
            print('\t', r.get())
        print()

        print('Ordered results using pool.imap():')
        for x in imap_it:
            print('\t', x)
        print()

        print('Unordered results using pool.imap_unordered():')
        for x in imap_unordered_it:
            print('\t', x)
        print()

        print('Ordered results using pool.map() --- will block till complete:')
        for x in pool.map(calculatestar, TASKS):
            print('\t', x)
        print()

        print('Testing error handling:')

        try:
            print(pool.apply(f, (5,)))
        except ZeroDivisionError:
            print('\tGot ZeroDivisionError as expected from pool.apply()')
        else:
            raise AssertionError('expected ZeroDivisionError')

        try:
            print(pool.map(f, list(range(10))))
        except ZeroDivisionError:
            print('\tGot ZeroDivisionError as expected from pool.map()')
        else:
            raise AssertionError('expected ZeroDivisionError')

        try:
            print(list(pool.imap(f, list(range(10)))))
        except ZeroDivisionError:
            print('\tGot ZeroDivisionError as expected from list(pool.imap())')
        else:
            raise AssertionError('expected ZeroDivisionError')

        it = pool.imap(f, list(range(10)))
        for i in range(10):
            try:
                x = next(it)
            except ZeroDivisionError:
                if i == 5:
                    pass
            except StopIteration:
                break
            else:
                if i == 5:
                    raise AssertionError('expected ZeroDivisionError')

        assert i == 9
        print('\tGot ZeroDivisionError as expected from IMapIterator.next()')
        print()

        print('Testing ApplyResult.get() with timeout:', end=' ')
        res = pool.apply_async(calculate, TASKS[0])
        while 1:
            sys.stdout.flush()
            try:
                sys.stdout.write('\n\t%s' % res.get(0.02))
                break
            except multiprocessing.TimeoutError:
                sys.stdout.write('.')
        print()
        print()

        print('Testing IMapIterator.next() with timeout:', end=' ')
        it = pool.imap(calculatestar, TASKS)
        while 1:
            sys.stdout.flush()
            try:
                sys.stdout.write('\n\t%s' % it.next(0.02))
            except StopIteration:
                break
            except multiprocessing.TimeoutError:
                sys.stdout.write('.')
        print()
        print()

if __name__ == '__main__':
    multiprocessing.freeze_support()
    test(sys.argv[1])
"""

KIND = {"fork": "ForkPoolWorker", "spawn": "SpawnPoolWorker",
        "forkserver": "ForkServerPoolWorker", "threading": "ThreadPoolWorker"}
NAME = re.compile(r"^\t ?(\S+) says that ")


def run(args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or r.stderr:
        raise SystemExit(f"{args} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def normalize(out, kind, who):
    """The output's sections, names and dots taken out (see above)."""
    lines = []
    for line in out.split("\n"):
        line = re.sub(r"(timeout:) \.*$", r"\1 ", line)
        line = re.sub(r"(= \d+)\.+$", r"\1", line)
        m = NAME.match(line)
        if m:
            name = m.group(1)
            ok = (name == "MainProcess" if kind is None else
                  re.fullmatch(kind + r"-[1-4]", name) is not None)
            if not ok:
                raise SystemExit(f"{who}: unexpected worker name {name!r} "
                                 f"in {line!r}")
            line = line.replace(name + " says", "WORKER says", 1)
        lines.append(line)
    # the imap_unordered section as a sorted list
    head = "Unordered results using pool.imap_unordered():"
    if head not in lines:
        raise SystemExit(f"{who}: no imap_unordered section: {out}")
    a = lines.index(head) + 1
    b = lines.index("", a)
    if b - a != 20:
        raise SystemExit(f"{who}: {b - a} imap_unordered lines, not 20")
    return lines[:a] + sorted(lines[a:b]) + lines[b:]


def main():
    with tempfile.TemporaryDirectory() as d:
        seed = os.path.join(d, "pool_calc_seed.py")
        with open(seed, "w") as fh:
            fh.write(SEED)
        for method in ("fork", "spawn", "forkserver", "threading"):
            mine = normalize(run([ex, method]), KIND[method], "mproc")
            py = normalize(run([sys.executable, seed, method]),
                           None if method == "threading" else KIND[method],
                           "CPython")
            if mine != py:
                import difflib
                diff = "\n".join(difflib.unified_diff(py, mine, "CPython",
                                                      "mproc", lineterm=""))
                raise SystemExit(f"{method}: output differs\n{diff}")
            print(f"pool_calc {method}: same as CPython ({len(mine)} lines)")


main()
