#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""libmproc loads late, with dlopen, into a running program: Python's ctypes
(a mixed C/Python program) and any plugin host.  The library's thread-locals
use TLS descriptors; an initial-exec one would mark it STATIC_TLS, and
dlopen would refuse it ("cannot allocate memory in static TLS block") once
its TLS outgrows the loader's small surplus.  Loads the library, makes and
frees a value, passes a timeout from new threads (TLS descriptors lost it
with glibc 2.36), and checks the dynamic section carries no STATIC_TLS flag."""
import ctypes
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "support"))
import built_lib  # noqa: E402

lib = built_lib.libmproc_path()
m = ctypes.CDLL(lib)
m.mp_int_new.restype = ctypes.c_void_p
m.mp_int_new.argtypes = [ctypes.c_int64]
m.mp_int_get.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
m.mp_obj_free.argtypes = [ctypes.c_void_p]
o = m.mp_int_new(123456789)
v = ctypes.c_int64()
if not o or m.mp_int_get(o, ctypes.byref(v)) != 0 or v.value != 123456789:
    sys.exit("FAIL: a value made through the dlopen'ed library")
m.mp_obj_free(o)

# A timeout passed from a thread's first call into the library arrives
# whole: with TLS descriptors, glibc's slow path (2.36 here) clobbered it
# (xmm0) in the first access of the thread to the library's dynamic TLS, and
# the get returned at once as if the timeout were 0.
vp = ctypes.c_void_p
m.mp_queue_new.argtypes = [ctypes.POINTER(vp), vp]
m.mp_queue_get_bytes.argtypes = [vp, ctypes.POINTER(vp),
                                 ctypes.POINTER(ctypes.c_size_t),
                                 ctypes.c_double]
m.mp_queue_free.argtypes = [vp]
q = vp()
if m.mp_queue_new(ctypes.byref(q), None) != 0:
    sys.exit("FAIL: mp_queue_new")
waited = []


def get_with_timeout():
    p, n = vp(), ctypes.c_size_t()
    t0 = time.monotonic()
    rc = m.mp_queue_get_bytes(q, ctypes.byref(p), ctypes.byref(n), 0.3)
    waited.append((rc, time.monotonic() - t0))


for _ in range(3):  # each a new thread: each its first access
    t = threading.Thread(target=get_with_timeout)
    t.start()
    t.join(30)
m.mp_queue_free(q)
EEMPTY = -4002
if len(waited) != 3 or any(rc != EEMPTY or dt < 0.25 for rc, dt in waited):
    sys.exit(f"FAIL: get(timeout=0.3) from new threads: {waited} "
             "(a timeout that arrived as 0 returns at once)")

flags = subprocess.run(["readelf", "-d", lib], capture_output=True,
                       text=True).stdout
if "STATIC_TLS" in flags:
    sys.exit("FAIL: libmproc.so is marked STATIC_TLS")
print("ok: dlopen'ed late, timeouts from new threads whole, no STATIC_TLS")
