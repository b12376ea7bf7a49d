# SPDX-License-Identifier: MIT
"""At normal exit a program's non-daemon children are joined and its daemon
children terminated (Python's util._exit_function): helper_atexit returns
from main while they run; its late children still print, and its daemons
are gone the moment it has exited (terminated and reaped, not orphaned)."""
import os
import subprocess
import sys

build = os.environ.get("MPROC_BUILD_DIR", "build")
r = subprocess.run([os.path.join(build, "tests", "helper_atexit")],
                   capture_output=True, text=True, timeout=60)
assert r.returncode == 0, (r.returncode, r.stderr)
lines = r.stdout.splitlines()
assert sorted(x for x in lines if x.startswith("done")) == [
    "done fork", "done forkserver", "done spawn"], lines
daemons = [int(x) for x in next(x for x in lines
                                if x.startswith("DAEMONS")).split()[1:]]
assert len(daemons) == 3


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


left = [p for p in daemons if running(p)]
assert not left, f"daemon children left running: {left}"
print("ok")
