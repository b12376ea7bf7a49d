#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""examples/pickle_repr and examples/pickle_roundtrip, driven as a user
would: good input, bad input (non-zero exit, a message on stderr, nothing
on stdout), every protocol."""
import os
import pickle
import subprocess
import sys

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
REPR = os.path.join(BUILD, "examples", "pickle_repr")
ROUNDTRIP = os.path.join(BUILD, "examples", "pickle_roundtrip")
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def run(exe, args, data):
    return subprocess.run([exe, *args], input=data, capture_output=True, timeout=60)


VALUES = [{0.25: None, 1: "1", "2": 2}, [9, 8, 7], b"thank you", (1.875, -6.25),
          "it's", [2.25, None, "junk", float], {1, 2}, 2**100, bytearray(b"x"),
          KeyError("missing"), [], "\u20ac\U0001f40d\ud800"]

for v in VALUES:
    for proto in (2, 3, 4, 5):
        r = run(REPR, [], pickle.dumps(v, proto))
        check(r.returncode == 0, "pickle_repr exit %d for %r" % (r.returncode, v))
        want = repr(v) if not isinstance(v, set) else "{1, 2}"
        got = r.stdout.decode("utf-8", "surrogatepass")
        check(got == want + "\n", "pickle_repr %r at %d printed %r" % (v, proto, got))
        check(r.stderr == b"", "pickle_repr wrote to stderr: %r" % r.stderr)
    for out_proto in (0, 2, 3, 4, 5):
        r = run(ROUNDTRIP, [str(out_proto)], pickle.dumps(v, 4))
        check(r.returncode == 0, "pickle_roundtrip %d exit %d" % (out_proto, r.returncode))
        want_proto = out_proto or (5 if isinstance(v, bytearray) else 4)
        check(r.stdout[:2] == bytes([0x80, want_proto]),
              "pickle_roundtrip %d wrote protocol %r" % (out_proto, r.stdout[:2]))
        back = pickle.loads(r.stdout)
        if isinstance(v, BaseException):
            check(type(back) is type(v) and back.args == v.args, "roundtrip %r" % v)
        else:
            check(back == v and type(back) is type(v), "roundtrip %r -> %r" % (v, back))

good = pickle.dumps([1, "a"], 4)
a = []
a.append(a)
BAD = {
    "empty": b"",
    "truncated": good[:-3],
    "trailing bytes": good + b"x",
    "not a pickle": b"hello world\n",
    "protocol 6": b"\x80\x06N.",
    "a cycle": pickle.dumps(a, 4),
    "a huge length": b"\x80\x04X\xff\xff\xff\x7f.",
}
for name, data in BAD.items():
    for exe, args in ((REPR, []), (ROUNDTRIP, ["4"])):
        r = run(exe, args, data)
        check(r.returncode != 0, "%s accepted %s" % (os.path.basename(exe), name))
        check(r.stdout == b"", "%s wrote stdout for %s" % (os.path.basename(exe), name))
        check(len(r.stderr) > 10 and b"pickle" in r.stderr,
              "%s: no message for %s: %r" % (os.path.basename(exe), name, r.stderr))

for args in ([], ["1"], ["6"], ["x"], ["4", "5"]):
    r = run(ROUNDTRIP, args, good)
    check(r.returncode != 0 and b"usage" in r.stderr, "pickle_roundtrip %r accepted" % args)
r = run(REPR, ["extra"], good)
check(r.returncode != 0 and b"usage" in r.stderr, "pickle_repr accepted an argument")

if failures:
    sys.exit("%d failures" % failures)
print("pickle tools: ok")
