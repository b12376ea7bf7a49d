#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A function value's pickle, mproc.func(ref), in CPython: it loads inertly
(an Unpickler whose find_class maps mproc.func to a stand-in, or a stand-in
module named mproc), pickletools reads it, and what CPython writes back at
protocols 2-5 is the same function to another process of the same build
(helper_func call runs the task).  Changing the reference's bytes in Python
gives MP_EBADREF or MP_EMALFORMED, never a call.  Runs under this
interpreter and every CPython 3.8+ under $(pyenv root)/versions."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import pythons  # noqa: E402

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "tests", "helper_func")

PEER = r'''
import io, pickle, pickletools, sys, types

data = sys.stdin.buffer.read()
pickletools.dis(data, out=io.StringIO())

class Func:
    def __init__(self, ref):
        self.ref = ref
    def __reduce__(self):
        return (stub.func, (self.ref,))

def func(ref):
    assert type(ref) is bytes
    return Func(ref)

# 1. inert: no module at all, a find_class that knows only mproc.func (and
#    the codec protocol 2 spells bytes with)
class Inert(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("mproc", "func"):
            return func
        if (module, name) == ("_codecs", "encode"):  # bytes at protocol 2
            import codecs
            return codecs.encode
        raise pickle.UnpicklingError("refused %s.%s" % (module, name))

task = Inert(io.BytesIO(data)).load()
assert isinstance(task[0], Func) and task[1] == (6, 7), task

# 2. a stand-in module: plain pickle.loads, and dumps writes mproc.func back
stub = types.ModuleType("mproc")
func.__module__ = "mproc"
func.__qualname__ = "func"
stub.func = func
sys.modules["mproc"] = stub
task2 = pickle.loads(data)
assert task2[0].ref == task[0].ref
out = []
for proto in (2, 3, 4, 5):
    if proto <= pickle.HIGHEST_PROTOCOL:
        out.append(pickle.dumps(task2, protocol=proto))
# 3. forged: one byte of the build-id, the offset, and a truncation
ref = task[0].ref
forged = [ref[:-1], ref[:8] + bytes([ref[8] ^ 1]) + ref[9:]]
# the build-id blob sits after is_main (4), name (4 + 0), off (8), len (4)
forged.append(ref[:20] + bytes([ref[20] ^ 0xff]) + ref[21:])
for r in forged:
    out.append(pickle.dumps((Func(r), (6, 7)), protocol=4))
sys.stdout.buffer.write(repr(out).encode())
'''


def interpreters():
    return pythons.find(lambda minor: minor >= 8, include_self=True)


def call(pickle_bytes):
    r = subprocess.run([HELPER, "call"], input=pickle_bytes, capture_output=True, check=True)
    return r.stdout.decode().strip()


def main():
    failures = 0
    for version, exe in sorted(interpreters().items()):
        before = failures
        for proto in (0, 2, 3, 4, 5):
            data = subprocess.run([HELPER, "dump", str(proto)], capture_output=True,
                                  check=True).stdout
            assert call(data) == "RESULT 42 (<function mul>, (6, 7))", call(data)
            peer = subprocess.run([exe, "-c", PEER], input=data, capture_output=True)
            if peer.returncode != 0:
                print("FAIL python %s proto %d: %s" % (version, proto, peer.stderr.decode()))
                failures += 1
                continue
            outs = eval(peer.stdout.decode())
            back, forged = outs[:-3], outs[-3:]
            for b in back:
                got = call(b)
                if got != "RESULT 42 (<function mul>, (6, 7))":
                    print("FAIL python %s proto %d: CPython's re-pickle gave %s" % (version, proto, got))
                    failures += 1
            expect = ["ERROR MP_EMALFORMED", "ERROR MP_EBADREF pickle: mproc.func: no function starts",
                      "ERROR MP_EBADREF pickle: mproc.func: the executable is not the same build"]
            for b, want in zip(forged, expect):
                got = call(b)
                if not got.startswith(want):
                    print("FAIL python %s proto %d: forged reference gave %s" % (version, proto, got))
                    failures += 1
        if failures == before:
            print("python %s: mproc.func loads inertly and round-trips" % version)
    if failures:
        raise SystemExit("%d failures" % failures)


if __name__ == "__main__":
    main()
