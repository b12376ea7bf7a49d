#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpus of fuzz/fuzz_pickle_loads.c: real CPython pickles
of the value model's types (and a few records: class instances as dict keys
and set members, one instance used thrice, NEWOBJ_EX) at protocols 2-5,
and hand-made chains of containers linked through the memo (BINGET and an
opcode that adds to a container) at and past the default max_depth.

    python3 tools/gen_fuzz_corpus.py fuzz/corpus/fuzz_pickle_loads
"""
import collections
import os
import pickle
import sys



class C:
    pass


class Plain:
    def __init__(self):
        self.a = [1, 2]


class K:
    def __new__(cls, x, *, b):
        o = super().__new__(cls)
        o.x, o.b = x, b
        return o

    def __getnewargs_ex__(self):
        return (self.x,), {"b": self.b}


out = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/fuzz_pickle_loads"
os.makedirs(out, exist_ok=True)
s = [1, "x"]
c = C()
VALUES = [
    None, True, [0, 255, 256, 65535, 65536, -1, 2**31, -2**63, 2**64, 10**40],
    [1.5, -0.0, float("inf"), float("nan"), 1e300],
    ["", "h\u00e9", "\u20ac\U0001f40d", "\ud800", "x" * 300],
    [b"", b"\x00\xff", b"y" * 300, bytearray(b"ab"), bytearray()],
    ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
    {"a": (1,), 2: [3], (4, 5): {6: None}},
    [set(), {1, 2}, frozenset(), frozenset({"a", 3})],
    [s, s, (s, s)],
    list(range(1003)),
    {i: str(i) for i in range(20)},
    [KeyError("missing"), ValueError(1, "a"), float, collections.OrderedDict],
    collections.OrderedDict([(1, 2), (3, 4)]),
    [[[[[[[[[[]]]]]]]]]],
    {C(): 1, C(): 2},
    [{C(), C()}, frozenset([C(), C()])],
    {Plain(): 1},
    [c, c, {c: "v"}],
    K(1, b=2),
]
n = 0
for i, v in enumerate(VALUES):
    for proto in (2, 3, 4, 5):
        with open(os.path.join(out, "v%02d_p%d.pickle" % (i, proto)), "wb") as f:
            f.write(pickle.dumps(v, proto))
        n += 1
# a cycle (refused) and a recursive tuple
a = []
a.append(a)
t = ([],)
t[0].append(t)
for name, v in (("cycle_list", a), ("cycle_tuple", t)):
    for proto in (2, 4):
        with open(os.path.join(out, "%s_p%d.pickle" % (name, proto)), "wb") as f:
            f.write(pickle.dumps(v, proto))
        n += 1

# function values: mproc.func(ref) with placeholders fuzz_pickle_loads.c
# fills in -- the fuzz binary's build-id and an offset near one of its
# functions ("FZOF:" + a 24-bit signed delta) -- so that mutations explore
# references to the right build, which must still only ever resolve to a
# function start
import struct
import types

stub = types.ModuleType("mproc")


class Func:
    def __init__(self, ref):
        self.ref = ref

    def __reduce__(self):
        return (stub.func, (self.ref,))


def func(ref):
    return Func(ref)


func.__module__, func.__qualname__ = "mproc", "func"
stub.func = func
sys.modules["mproc"] = stub


def ref(delta, exec_=1, main=1, name=b""):
    return (struct.pack("<II", main, len(name)) + name + b"FZOF:" +
            struct.pack("<i", delta)[:3] + struct.pack("<I", 20) +
            b"MPROC-FUZZ-BUILD-ID!" + struct.pack("<II", 1, exec_))


FUNCS = [
    ("func", Func(ref(0))),
    ("func_task", (Func(ref(0)), (6, 7))),
    ("func_near", [Func(ref(1)), Func(ref(-16)), {Func(ref(0)): "k"}]),
    ("func_data", Func(ref(0, exec_=0))),
    ("func_lib", Func(ref(0, main=0, name=b"/lib/x86_64-linux-gnu/libc.so.6"))),
]
for name, v in FUNCS:
    for proto in (2, 4):
        with open(os.path.join(out, "%s_p%d.pickle" % (name, proto)), "wb") as f:
            f.write(pickle.dumps(v, proto))
        n += 1

def chain(kinds, n, forward):
    """n containers (kinds[i % len(kinds)]: list, dict, set, obj), each
    memoized, then container i linked into container i-1 via LONG_BINGET."""
    def get(i):
        return b"j" + i.to_bytes(4, "little")
    make = {"list": b"]", "dict": b"}", "set": b"\x8f", "obj": b"cm\nC\n)\x81"}
    p = [b"\x80\x04"]
    for i in range(n):
        p.append(make[kinds[i % len(kinds)]] + b"\x940")
    for s_ in range(1, n):
        i = s_ if forward else n - s_
        parent = kinds[(i - 1) % len(kinds)]
        if parent == "list":
            link = get(i) + b"a"
        elif parent == "dict":
            link = b"K\x00" + get(i) + b"s"
        elif parent == "set":
            link = b"(" + get(i) + b"\x90"
        else:
            link = get(i) + b"b"
        p.append(get(i - 1) + link + b"0")
    p.append(get(0) + b".")
    return b"".join(p)


MIXED = ["list", "dict", "set", "obj"]
RAW = {
    "newobj_ex_pickletester": b"cbuiltins\nint\n)}\x92.",
    "memo_chain_lists_1001_fwd": chain(["list"], 1001, True),
    "memo_chain_lists_1000_fwd": chain(["list"], 1000, True),
    "memo_chain_lists_30_back": chain(["list"], 30, False),
    "memo_chain_dicts_40_fwd": chain(["dict"], 40, True),
    "memo_chain_objs_40_fwd": chain(["obj"], 40, True),
    "memo_chain_mixed_41_fwd": chain(MIXED, 41, True),
    "memo_chain_mixed_1001_fwd": chain(MIXED, 1001, True),
}
for name, data in RAW.items():
    with open(os.path.join(out, name + ".pickle"), "wb") as f:
        f.write(data)
    n += 1
print("%d seeds in %s" % (n, out))
