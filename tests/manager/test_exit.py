#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Managers and program exit (the seeds' "Cleanup"), every start method:
a program that exits without freeing its started manager has shut the
server down by the time it is gone (its address refuses connections);
one that is SIGKILLed takes the server with it (it watches its parent).  The
default address's socket file and its per-process directory are removed
at a normal exit.  Driven
through tests/helper_mgr_exit."""
import os
import subprocess
import sys
import time
from multiprocessing.connection import Client

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "tests", "helper_mgr_exit")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def refused(addr):
    try:
        Client(addr, authkey=b"x").close()
    except (FileNotFoundError, ConnectionRefusedError):
        return True
    except Exception:
        return False
    return False


def gone(pid, deadline):
    """Wait (bounded) for the process to end: it is not our child."""
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


for method in ("fork", "spawn", "forkserver", "threading"):
    for mode in ("exit", "kill"):
        if method == "threading" and mode == "kill":
            continue  # the server is a thread of the killed process
        p = subprocess.run([HELPER, method, mode], capture_output=True,
                           text=True, timeout=120)
        parts = p.stdout.split()
        if len(parts) != 2:
            check(False, "%s %s: helper printed %r (%s)" % (method, mode,
                                                            p.stdout, p.stderr))
            continue
        addr, pid = parts[0], int(parts[1])
        if mode == "exit":
            check(p.returncode == 0, "%s: the program exits normally (%d)%s"
                  % (method, p.returncode,
                     "" if p.returncode == 0 else "\n" + p.stderr[-3000:]))
            check(refused(addr), "%s: its server was shut down by then" % method)
            check(not os.path.exists(addr) and
                  not os.path.exists(os.path.dirname(addr)),
                  "%s: its socket file and directory are removed" % method)
            if pid:
                check(gone(pid, time.monotonic() + 5), "%s: and its process is gone"
                      % method)
        else:
            check(p.returncode == -9, "%s: killed" % method)
            check(pid > 0 and gone(pid, time.monotonic() + 30),
                  "%s: the server died with its parent" % method)
        if addr.startswith("/"):
            try:
                os.unlink(addr)  # a killed server cannot remove its path
                os.rmdir(os.path.dirname(addr))
            except OSError:
                pass
sys.exit(1 if failures else 0)
