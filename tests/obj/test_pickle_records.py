#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Records against CPython itself, under every CPython 3.11+ found.

1. Class instances as dict keys and set members ({C(): 1, C(): 2},
   {C(), C()}, frozenset([C(), C()]), {Plain(): 1}), and one instance used
   several times ([c, c, {c: 'v'}]), pickled by CPython at protocols 2-5:
   mproc decodes them (helper_pickle_oracle decode) and its re-encodings at
   every protocol load in CPython with every entry and the same sharing.
2. NEWOBJ_EX: CPython's pickletester vector and a class whose
   __getnewargs_ex__ returns keyword arguments decode, and mproc's
   re-encodings load to an equal object (NEWOBJ_EX again from protocol 4).
3. max_depth through the memo: 5,000 and 300,000 lists, each appended to
   the previous one through BINGET, are refused with MP_ELIMIT; 1,000 load
   and come back 1,000 deep.
"""
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import pythons  # noqa: E402

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "tests", "helper_pickle_oracle")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


class C:
    pass


class Plain:
    def __init__(self):
        self.a = [1, 2]
        self.b = {"k": "v"}


class K:
    def __new__(cls, x, *, b):
        o = super().__new__(cls)
        o.x, o.b = x, b
        return o

    def __getnewargs_ex__(self):
        return (self.x,), {"b": self.b}

    def __eq__(self, other):
        return type(other) is K and (self.x, self.b) == (other.x, other.b)

    __hash__ = None


class Helper:
    def __init__(self):
        self.p = subprocess.Popen([HELPER, "decode"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)

    def read(self, n):
        data = self.p.stdout.read(n)
        if len(data) != n:
            raise SystemExit("helper died (exit %s)" % self.p.wait())
        return data

    def blob(self):
        (n,) = struct.unpack("<I", self.read(4))
        return self.read(n)

    def decode(self, data):
        """(mproc's 5 re-encodings, None) or (None, error text)."""
        self.p.stdin.write(struct.pack("<I", len(data)) + data)
        self.p.stdin.flush()
        if self.read(1)[0]:
            return None, self.blob().decode()
        self.blob()  # repr
        self.blob()  # canonical repr
        return [self.blob() for _ in range(5)], None

    def close(self):
        self.p.stdin.close()
        check(self.p.wait() == 0, "helper exit status")


def opcodes(data):
    return {op.name for op, _, _ in pickletools.genops(data)}


def check_dict_keys(w):
    return (type(w) is dict and len(w) == 2 and all(type(k) is C for k in w)
            and sorted(w.values()) == [1, 2])


def check_set(w, t):
    return type(w) is t and len(w) == 2 and all(type(k) is C for k in w)


def check_plain(w):
    if type(w) is not dict or len(w) != 1:
        return False
    (k, v), = w.items()
    return type(k) is Plain and k.a == [1, 2] and k.b == {"k": "v"} and v == 1


def check_shared(w):
    return (type(w) is list and len(w) == 3 and type(w[0]) is C and
            w[0] is w[1] and w[2] == {w[0]: "v"})


def cases():
    c = C()
    return [
        ("{C(): 1, C(): 2}", {C(): 1, C(): 2}, check_dict_keys),
        ("{C(), C()}", {C(), C()}, lambda w: check_set(w, set)),
        ("frozenset([C(), C()])", frozenset([C(), C()]),
         lambda w: check_set(w, frozenset)),
        ("{Plain(): 1}", {Plain(): 1}, check_plain),
        ("[c, c, {c: 'v'}]", [c, c, {c: "v"}], check_shared),
        ("K(1, b=2)", K(1, b=2), lambda w: w == K(1, b=2)),
    ]


PROTOS_OUT = [0, 2, 3, 4, 5]  # the helper's re-encodings


def records(h):
    for name, v, ok in cases():
        for proto in (2, 3, 4, 5):
            data = pickle.dumps(v, proto)
            pickles, err = h.decode(data)
            where = "%s at protocol %d" % (name, proto)
            if err:
                check(False, "%s: mproc refused it: %s" % (where, err))
                continue
            for out, pk in zip(PROTOS_OUT, pickles):
                try:
                    w = pickle.loads(pk)
                except Exception as e:  # noqa
                    check(False, "%s: CPython cannot load mproc's protocol-%d "
                          "pickle: %r" % (where, out, e))
                    continue
                check(ok(w), "%s: mproc's protocol-%d re-encoding loads as %r"
                      % (where, out, w))
                if name.startswith("K") and proto >= 4:
                    want = "NEWOBJ_EX" if out in (0, 4, 5) else "REDUCE"
                    check(want in opcodes(pk), "%s: protocol-%d re-encoding "
                          "has no %s: %r" % (where, out, want, pk))
    # CPython's pickletester: int.__new__(int, *(), **{})
    pickles, err = h.decode(b"cbuiltins\nint\n)}\x92.")
    check(not err, "pickletester NEWOBJ_EX refused: %s" % err)
    for out, pk in zip(PROTOS_OUT, pickles or []):
        w = pickle.loads(pk)
        check(type(w) is int and w == 0, "NEWOBJ_EX int at %d: %r" % (out, w))


def memo_chain(n):
    """n lists, each memoized; then list i appended to list i-1 through
    LONG_BINGET, first to last; list 0."""
    get = [b"j" + struct.pack("<I", i) for i in range(n)]
    parts = [b"\x80\x04", b"]\x940" * n]
    for i in range(1, n):
        parts.append(get[i - 1] + get[i] + b"a0")
    parts.append(get[0] + b".")
    return b"".join(parts)


def depth(h):
    for n in (5000, 300000):
        t0 = time.monotonic()
        pickles, err = h.decode(memo_chain(n))
        check(err and "MP_ELIMIT" in err,
              "%d lists linked through the memo: %s" % (n, err or "accepted"))
        print("  %d-list memo chain refused in %.2f s" % (n, time.monotonic() - t0))
    pickles, err = h.decode(memo_chain(1000))
    check(not err, "1000 lists linked through the memo refused: %s" % err)
    for out, pk in zip(PROTOS_OUT, pickles or []):
        w, d = pickle.loads(pk), 0
        while w:
            check(type(w) is list and len(w) == 1, "chain shape at %d" % out)
            w, d = w[0], d + 1
        check(d == 999, "1000-deep chain came back %d deep" % (d + 1))


def interpreters():
    return pythons.find(lambda minor: minor >= 11)


def main():
    if not os.path.exists(HELPER):
        raise SystemExit("no helper at %s" % HELPER)
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        h = Helper()
        records(h)
        depth(h)
        h.close()
        print("python %s: %s" % (sys.version.split()[0],
                                 "%d failures" % len(failures) if failures else "ok"))
        sys.exit(1 if failures else 0)
    found = interpreters()
    if "3.11" not in found:
        raise SystemExit("no CPython 3.11 found")
    status = 0
    for v in sorted(found, key=lambda s: int(s.split(".")[1])):
        rc = subprocess.run([found[v], os.path.abspath(__file__), "--one"]).returncode
        if rc:
            print("FAILED under CPython %s (%s)" % (v, found[v]))
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
