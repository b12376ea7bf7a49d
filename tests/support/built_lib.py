# SPDX-License-Identifier: MIT
"""The libmproc.so of the build tree under test, for tests that load it with
ctypes (MPROC_BUILD_DIR names the build tree; default: build)."""
import os
import subprocess
import sys


def libmproc_path():
    """Its path; exits 77 (the suite's "skipped") for a sanitizer build, whose
    runtime must be in the executable, which python3 is not: what these tests
    check is checked in the normal build."""
    lib = os.path.join(os.environ.get("MPROC_BUILD_DIR", "build"),
                       "libmproc.so")
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", lib],
                          capture_output=True, text=True).stdout
    if any(s in syms for s in ("__asan_", "__tsan_", "__msan_")):
        print("skipped: a sanitizer build cannot be loaded into python3")
        sys.exit(77)
    return lib
