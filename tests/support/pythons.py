# SPDX-License-Identifier: MIT
"""The CPython interpreters a test runs against: this one and those under
$(pyenv root)/versions (or ~/.pyenv), one per minor version."""
import glob
import os
import subprocess
import sys


def version_of(exe):
    """'3.11' for an interpreter, or None if it does not run."""
    try:
        return subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def find(accept, include_self=False):
    """{'3.x': path} for every interpreter whose version `accept(minor)`
    takes (minor: the x of 3.x), this interpreter first if include_self."""
    found = {}
    if include_self:
        found["%d.%d" % sys.version_info[:2]] = sys.executable
    roots = []
    try:
        r = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            roots.append(r.stdout.strip())
    except OSError:
        pass
    roots.append(os.path.expanduser("~/.pyenv"))
    for root in roots:
        for exe in sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3"))):
            v = version_of(exe)
            if v and v.startswith("3.") and accept(int(v.split(".")[1])):
                found.setdefault(v, exe)
    return found
