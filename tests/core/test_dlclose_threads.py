#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A plugin host may dlclose libmproc after using it, while a thread the
library started lives on (the slice clock here; the pool's death watcher
likewise): unmapping the library's code under that thread would crash the
host at its next tick.  The library is linked -z nodelete, so dlclose leaves
it loaded.  Loads it, makes a queue's getter sleep often enough to start the
slice clock, frees everything, dlcloses the library and lives on for three
of the clock's periods; then checks the dynamic section's NODELETE flag."""
import ctypes
import os
import subprocess
import sys
import threading
import time
import _ctypes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "support"))
import built_lib  # noqa: E402

lib = built_lib.libmproc_path()


def threads_named(name):
    n = 0
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                n += f.read().strip() == name
        except OSError:
            pass
    return n


m = ctypes.CDLL(lib)
vp = ctypes.c_void_p
m.mp_queue_new.argtypes = [ctypes.POINTER(vp), vp]
m.mp_queue_put_bytes.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t,
                                 ctypes.c_double]
m.mp_queue_get_bytes.argtypes = [vp, ctypes.POINTER(vp),
                                 ctypes.POINTER(ctypes.c_size_t),
                                 ctypes.c_double]
m.mp_queue_free.argtypes = [vp]
m.mp_free.argtypes = [vp]
q = vp()
if m.mp_queue_new(ctypes.byref(q), None) != 0:
    sys.exit("FAIL: mp_queue_new")
N = 24  # more waits without a timeout than the 16 before the clock starts
got = []


def getter():
    for _ in range(N):
        p, n = vp(), ctypes.c_size_t()
        rc = m.mp_queue_get_bytes(q, ctypes.byref(p), ctypes.byref(n),
                                  float("inf"))
        got.append(rc)
        if rc == 0:
            m.mp_free(p)


t = threading.Thread(target=getter)
t.start()
for i in range(N):
    time.sleep(0.005)  # the getter is asleep by then
    if m.mp_queue_put_bytes(q, b"item", 4, 0.0) != 0:
        sys.exit("FAIL: put")
t.join(30)
if t.is_alive() or got != [0] * N:
    sys.exit(f"FAIL: the getter got {got}")
if threads_named("mproc-slice") != 1:
    sys.exit("FAIL: no slice clock thread started (the test tests nothing)")
m.mp_queue_free(q)
handle = m._handle
del m
_ctypes.dlclose(handle)
time.sleep(0.7)  # three periods: the clock thread wakes, runs its code
if threads_named("mproc-slice") != 1:
    sys.exit("FAIL: the clock thread is gone")
flags = subprocess.run(["readelf", "-d", lib], capture_output=True,
                       text=True).stdout
if "NODELETE" not in flags:
    sys.exit("FAIL: libmproc.so is not marked NODELETE")
print("ok: dlclose left the library loaded; its thread lives on")
