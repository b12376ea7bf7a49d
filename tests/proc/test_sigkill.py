# SPDX-License-Identifier: MIT
"""A SIGKILL of the main process leaves no mproc process running.

helper_orphans starts daemon and non-daemon children under fork, spawn and
forkserver (some from a thread that has exited) and prints their pids and the
forkserver's.  We SIGKILL it and check from outside, for a few seconds, that
every one of those processes is gone (daemons die with their parent; the
others notice its death and exit; the forkserver exits)."""
import os
import signal
import subprocess
import sys
import time

build = os.environ.get("MPROC_BUILD_DIR", "build")
helper = os.path.join(build, "tests", "helper_orphans")


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def main():
    p = subprocess.Popen([helper], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("PIDS"):
        p.kill()
        p.wait()
        print("helper failed:", line, file=sys.stderr)
        return 1
    pids = [int(x) for x in line.split()[1:]]
    assert len(pids) == 9 and all(x > 0 for x in pids), pids
    assert all(running(x) for x in pids), "children should be running"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [x for x in pids if running(x)]
        if not left:
            print("ok: all", len(pids), "processes gone")
            return 0
        time.sleep(0.05)
    for x in left:
        try:
            print("left running:", x, open(f"/proc/{x}/cmdline").read(),
                  file=sys.stderr)
            os.kill(x, signal.SIGKILL)
        except OSError:
            pass
    return 1


sys.exit(main())
