#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""libmproc loads late, with dlopen, into a running program: Python's ctypes
(a mixed C/Python program) and any plugin host.  The library's thread-locals
use TLS descriptors; an initial-exec one would mark it STATIC_TLS, and
dlopen would refuse it ("cannot allocate memory in static TLS block") once
its TLS outgrows the loader's small surplus.  Loads the library, makes and
frees a value, and checks the dynamic section carries no STATIC_TLS flag."""
import ctypes
import os
import subprocess
import sys

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
lib = os.path.join(BUILD, "libmproc.so")
syms = subprocess.run(["readelf", "--dyn-syms", "-W", lib],
                      capture_output=True, text=True).stdout
if any(s in syms for s in ("__asan_", "__tsan_", "__msan_")):
    # a sanitizer build needs its runtime in the executable, which python3
    # is not: the property is checked in the normal build
    print("skipped: a sanitizer build cannot be loaded into python3")
    sys.exit(77)
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
flags = subprocess.run(["readelf", "-d", lib], capture_output=True,
                       text=True).stdout
if "STATIC_TLS" in flags:
    sys.exit("FAIL: libmproc.so is marked STATIC_TLS")
print("ok: dlopen'ed late, no STATIC_TLS")
