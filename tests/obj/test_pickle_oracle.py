#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Oracle test of the pickle codec against CPython itself.

1. Thousands of random values (nested containers, ints at the 64-bit edges
   and big ints, -0.0, inf, nan, non-ASCII and astral str, lone surrogates,
   empty containers, shared sub-objects that CPython writes through its
   memo, large bytes, sets, frozensets, records: exceptions, class
   references and objects with state) are pickled by CPython at protocols
   2, 3, 4 and 5 and decoded by mproc (helper_pickle_oracle decode).
   mproc's repr must equal Python's (sets compared through a canonical
   repr with sorted members), and mproc's re-encodings at its default
   protocol and at 2, 3, 4 and 5 must unpickle in CPython to an equal value
   of the same types.
2. The reverse: random values built in C (seeded PRNG in the helper) are
   pickled by mproc, loaded by CPython and compared with the repr mproc
   printed; the five encodings must load to the same value.

Each check runs under this interpreter and under every other CPython found
among python3.11 and 3.12+ (pyenv versions), at least one of which must be
present.  The seed is printed; MPROC_ORACLE_SEED=N reproduces a run.
"""
import collections
import datetime
import fractions
import math
import os
import random
import struct
import subprocess
import sys
import types
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import pythons  # noqa: E402

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "tests", "helper_pickle_oracle")
SANITIZED = bool(os.environ.get("MPROC_SANITIZE"))
N_PER_PROTO = int(os.environ.get("MPROC_ORACLE_N", 300 if SANITIZED else 1000))
N_GENERATED = 2 * N_PER_PROTO


# ---- canonical repr: repr with set members sorted (helper does the same) --

def canon(v):
    t = type(v)
    if t is tuple:
        inner = ", ".join(canon(x) for x in v)
        return "(" + inner + (",)" if len(v) == 1 else ")")
    if t is list:
        return "[" + ", ".join(canon(x) for x in v) + "]"
    if t is dict:
        return "{" + ", ".join(canon(k) + ": " + canon(x) for k, x in v.items()) + "}"
    if t is set or t is frozenset:
        if not v:
            return "set()" if t is set else "frozenset()"
        inner = "{" + ", ".join(sorted(canon(x) for x in v)) + "}"
        return inner if t is set else "frozenset(" + inner + ")"
    return repr(v)


OPAQUE = (datetime.date, fractions.Fraction, collections.OrderedDict,
          uuid.UUID, types.SimpleNamespace, collections.Counter)


def has_set(v):
    if type(v) in (set, frozenset):
        return True
    if type(v) in (list, tuple):
        return any(has_set(x) for x in v)
    if type(v) is dict:
        return any(has_set(k) or has_set(x) for k, x in v.items())
    if isinstance(v, BaseException):
        return has_set(v.args)
    return False


def opaque(v):
    """True if mproc's repr of v is not Python's (objects with state)."""
    if isinstance(v, OPAQUE):
        return True
    if isinstance(v, BaseException):
        return bool(v.__dict__) or any(opaque(a) for a in v.args)
    if type(v) in (list, tuple, set, frozenset):
        return any(opaque(x) for x in v)
    if type(v) is dict:
        return any(opaque(k) or opaque(x) for k, x in v.items())
    return False


def same(a, b, depth=0):
    """Deep equality with the same types; nan equals nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, BaseException):
        return same(a.args, b.args) and same(getattr(a, "__dict__", {}),
                                             getattr(b, "__dict__", {}))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        # insertion order is part of a dict's value: compare pairwise
        return len(a) == len(b) and all(
            same(k, l) and same(x, y)
            for (k, x), (l, y) in zip(a.items(), b.items()))
    if type(a) in (set, frozenset):
        return sorted(map(canon, a)) == sorted(map(canon, b))
    return a == b


# ---- random values in Python ----------------------------------------------

EDGE_INTS = [0, 1, -1, 255, 256, 65535, 65536, -5, 1024, 1025, 2**31 - 1,
             -2**31, 2**31, -2**31 - 1, 2**63 - 1, -2**63, 2**63, -2**63 - 1,
             2**64 - 1, 2**64, 2**70, -(2**1000), 10**2000, 2**2047, -(2**2048)]
EDGE_FLOATS = [0.0, -0.0, 1.0, 0.1, -1.5, 1e16, 1e15, 1e-5, 1e-4, 1e308,
               5e-324, float("inf"), float("-inf"), float("nan"), 2.0**70,
               123456789.125, 1e22]


def rand_char(r):
    while True:
        c = r.choice([r.randrange(0x20, 0x7f)] * 6 + [
            r.randrange(0, 0x20), r.randrange(0x7f, 0x100),
            r.randrange(0x100, 0x800), r.randrange(0x800, 0x10000),
            r.randrange(0xd800, 0xe000), r.randrange(0x10000, 0x110000)])
        ch = chr(c)
        # code points unassigned in this Python's Unicode may be assigned in
        # mproc's (newer) table: skip them
        import unicodedata
        if unicodedata.category(ch) != "Cn" or c >= 0x10fffe:
            return ch


def rand_str(r):
    n = r.choice([0, 1, 3, 8, 20, 100, 300])
    if r.random() < 0.002:
        return "x" * 70000
    return "".join(rand_char(r) for _ in range(r.randrange(n + 1)))


def rand_int(r):
    k = r.randrange(4)
    if k == 0:
        return r.choice(EDGE_INTS)
    if k == 1:
        return r.getrandbits(64) - 2**63 >> r.randrange(64)
    if k == 2:
        return r.getrandbits(r.randrange(1, 400)) * r.choice([1, -1])
    return r.randrange(-500, 1500)


def rand_float(r):
    if r.random() < 0.5:
        return r.choice(EDGE_FLOATS)
    return struct.unpack("<d", r.getrandbits(64).to_bytes(8, "little"))[0]


def rand_hashable(r, depth):
    k = r.randrange(7 if depth < 3 else 5)
    if k == 0:
        return rand_int(r)
    if k == 1:
        return rand_float(r)
    if k == 2:
        return rand_str(r)
    if k == 3:
        return r.randbytes(r.randrange(9))
    if k == 4:
        return r.choice([None, True, False])
    if k == 5:
        return tuple(rand_hashable(r, depth + 1) for _ in range(r.randrange(4)))
    return frozenset(rand_hashable(r, depth + 1) for _ in range(r.randrange(4)))


def rand_record(r):
    k = r.randrange(12)
    if k == 0:
        return KeyError(rand_str(r))
    if k == 1:
        return ValueError(r.randrange(100), rand_str(r))
    if k == 2:
        return r.choice([float, int, dict, KeyError, collections.OrderedDict])
    if k == 3:
        return RuntimeError()
    if k == 4:
        e = KeyError("noted")
        if hasattr(e, "add_note"):
            e.add_note("a note")  # BUILD with a dict state
        return e
    if k == 5:
        return datetime.date(2000 + r.randrange(50), 1 + r.randrange(12), 1)
    if k == 6:
        return fractions.Fraction(r.randrange(1, 100), r.randrange(1, 100))
    if k == 7:
        return collections.OrderedDict((i, rand_str(r)) for i in range(r.randrange(4)))
    if k == 8:
        return uuid.UUID(int=r.getrandbits(128))
    if k == 9:
        return types.SimpleNamespace(a=r.randrange(10), b=[1, 2])
    if k == 10:
        return collections.Counter(rand_str(r))
    return IndexError(r.randrange(10))


def rand_value(r, depth, pool):
    k = r.randrange(13 if depth < 4 else 6)
    if k <= 4:
        return rand_hashable(r, depth)
    if k == 5:
        n = r.choice([0, 1, 10, 255, 256, 3000]) if r.random() < 0.98 else 100000
        b = r.randbytes(n)
        return b if r.random() < 0.75 else bytearray(b)
    # big containers (several batches of 1000) only at the top, of scalars
    big = depth == 0 and r.random() < 0.05
    if k in (6, 7):
        if big:
            v = [rand_hashable(r, 3) for _ in range(r.randrange(2500))]
        else:
            v = [rand_value(r, depth + 1, pool) for _ in range(r.randrange(6))]
    elif k == 8:
        v = tuple(rand_value(r, depth + 1, pool) for _ in range(r.randrange(5)))
    elif k in (9, 10):
        if big:
            v = {rand_hashable(r, 3): rand_hashable(r, 3) for _ in range(r.randrange(2500))}
        else:
            v = {rand_hashable(r, depth + 1): rand_value(r, depth + 1, pool)
                 for _ in range(r.randrange(6))}
    elif k == 11:
        n = r.randrange(2500) if big else r.randrange(6)
        s = {rand_hashable(r, depth + 1) for _ in range(n)}
        v = s if r.random() < 0.6 else frozenset(s)
    else:
        v = rand_record(r)
    # shared sub-objects: CPython writes the second use through its memo.
    # The pool only holds values made deep inside (never wrapped ones), so
    # sharing does not compound into exponentially large trees.
    if depth <= 1 and pool and r.random() < 0.2:
        v = [v, r.choice(pool), r.choice(pool)]
    elif depth >= 2 and r.random() < 0.3:
        pool.append(v)
        del pool[:-20]
    return v


# ---- talking to the helper ----------------------------------------------------

class Helper:
    def __init__(self, *args):
        self.p = subprocess.Popen([HELPER, *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)

    def read(self, n):
        data = self.p.stdout.read(n)
        if len(data) != n:
            raise SystemExit("helper died (exit %s)" % self.p.wait())
        return data

    def blob(self):
        (n,) = struct.unpack("<I", self.read(4))
        return self.read(n)

    def result(self):
        rep = self.blob().decode("utf-8", "surrogatepass")
        can = self.blob().decode("utf-8", "surrogatepass")
        pickles = [self.blob() for _ in range(5)]
        return rep, can, pickles

    def decode(self, data):
        self.p.stdin.write(struct.pack("<I", len(data)) + data)
        self.p.stdin.flush()
        status = self.read(1)[0]
        if status:
            return None, self.blob().decode()
        return self.result(), None

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait()
        if rc:
            raise SystemExit("helper exited with %d" % rc)


import pickle

PROTOS = [0, 2, 3, 4, 5]
failures = []


def fail(msg):
    failures.append(msg)
    if len(msg) > 3000:
        path = "oracle-failure-%d.txt" % len(failures)
        with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(msg)
        msg = msg[:1500] + "... (whole message in %s)" % os.path.abspath(path)
    print("FAIL:", msg.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)
    if len(failures) > 20:
        raise SystemExit("too many failures")


def has_bytearray(v):
    if isinstance(v, bytearray):
        return True
    if type(v) in (list, tuple, set, frozenset):
        return any(has_bytearray(x) for x in v)
    if type(v) is dict:
        return any(has_bytearray(x) for x in v.values())
    return False


def check_reencodings(v, pickles, where):
    for proto, pk in zip(PROTOS, pickles):
        want = 5 if (proto == 0 and has_bytearray(v)) else (proto or 4)
        if pk[:2] != bytes([0x80, want]):
            fail("%s: re-encoding at %s starts %r" % (where, proto, pk[:2]))
        try:
            w = pickle.loads(pk)
        except Exception as e:  # noqa
            fail("%s: CPython cannot load mproc's protocol-%s pickle: %r\n%r"
                 % (where, proto, e, pk[:200]))
            continue
        if not same(v, w):
            fail("%s: protocol-%s re-encoding loads as %r, not %r"
                 % (where, proto, w, v))


def python_to_c(seed):
    r = random.Random(seed)
    h = Helper("decode")
    pool = []
    n = 0
    for proto in (2, 3, 4, 5):
        for i in range(N_PER_PROTO):
            v = rand_value(r, 0, pool)
            data = pickle.dumps(v, proto)
            res, err = h.decode(data)
            where = "python->c proto %d value %d" % (proto, i)
            if err:
                fail("%s: mproc refused %r: %s" % (where, v, err))
                continue
            rep, can, pickles = res
            if not opaque(v):
                if can != canon(v):
                    fail("%s: repr\n  mproc  %s\n  python %s" % (where, can, canon(v)))
                elif not has_set(v) and rep != repr(v):
                    fail("%s: repr %s != %s" % (where, rep, repr(v)))
            check_reencodings(v, pickles, where)
            n += 1
    # cycles are refused cleanly, and the helper keeps going
    a = []
    a.append(a)
    t = ([],)
    t[0].append(t)
    d = {}
    d["self"] = [d]
    for v in (a, t, d):
        for proto in (2, 3, 4, 5):
            res, err = h.decode(pickle.dumps(v, proto))
            if not err or "MP_ECYCLE" not in err:
                fail("cycle %r at %d: %s" % (type(v), proto, err or "accepted"))
    res, err = h.decode(pickle.dumps("ok"))
    if err or res[0] != "'ok'":
        fail("helper unusable after a cycle")
    h.close()
    return n


def c_to_python(seed):
    h = Helper("generate", str(seed), str(N_GENERATED))
    for i in range(N_GENERATED):
        rep, can, pickles = h.result()
        where = "c->python value %d (seed %d)" % (i, seed)
        values = []
        for proto, pk in zip(PROTOS, pickles):
            try:
                values.append(pickle.loads(pk))
            except Exception as e:  # noqa
                fail("%s: CPython cannot load protocol %s: %r\n%r" % (where, proto, e, pk[:300]))
        if not values:
            continue
        v = values[0]
        if canon(v) != can:
            fail("%s: CPython reads\n  %s\nmproc printed\n  %s" % (where, canon(v), can))
        elif not has_set(v) and repr(v) != rep:
            fail("%s: repr %s != %s" % (where, repr(v), rep))
        for w in values[1:]:
            if not same(v, w):
                fail("%s: encodings disagree: %r vs %r" % (where, v, w))
    h.close()
    return N_GENERATED


def interpreters():
    return pythons.find(lambda minor: minor >= 11)


def main():
    if not os.path.exists(HELPER):
        raise SystemExit("no helper at %s" % HELPER)
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        seed = int(sys.argv[2])
        n1 = python_to_c(seed)
        n2 = c_to_python(seed)
        print("python %s: %d CPython pickles decoded, %d C values loaded by CPython"
              % (sys.version.split()[0], n1, n2))
        if failures:
            raise SystemExit("%d failures" % len(failures))
        return
    seed = int(os.environ.get("MPROC_ORACLE_SEED", random.SystemRandom().randrange(2**32)))
    print("seed %d (MPROC_ORACLE_SEED=%d reproduces)" % (seed, seed))
    found = interpreters()
    wanted = ["3.11"] + sorted((v for v in found if v != "3.11"),
                               key=lambda s: int(s.split(".")[1]))[-1:]
    ran = 0
    status = 0
    for v in wanted:
        exe = found.get(v)
        if not exe:
            print("note: no CPython %s found, skipped" % v)
            continue
        rc = subprocess.run([exe, os.path.abspath(__file__), "--one", str(seed)]).returncode
        ran += 1
        if rc:
            print("FAILED under CPython %s (%s)" % (v, exe))
            status = 1
    if ran == 0:
        raise SystemExit("no CPython 3.11 or 3.12+ found")
    sys.exit(status)


if __name__ == "__main__":
    main()
