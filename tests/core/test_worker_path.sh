#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shared library's link places the code a forked worker runs first and
# together (src/worker_path.txt, CMakeLists.txt): a worker's start and exit
# touch one or two 64 KiB windows of text, each a page fault with its
# fault-around, not one per window of the whole library.  Were the linker
# script or -ffunction-sections dropped, nothing else would fail, only
# start pools slower.  Checked on the layout: the functions of the start
# path that the library has (some are inlined) all lie in the section, in
# at most two windows (under a sanitizer, whose code is several times the
# size, only in the section).
set -euo pipefail
B=${MPROC_BUILD_DIR:?}
S=${MPROC_SOURCE_DIR:?}
if ! grep -q '^MPROC_HAVE_WORKER_PATH_LD:INTERNAL=1' "$B/CMakeCache.txt"; then
  echo "this build's linker takes no worker-path script: nothing to check"
  exit 77
fi
lib=$(ls "$B"/libmproc.so.*.* | head -1)
python3 - "$lib" "$S/src/worker_path.txt" "${MPROC_SANITIZE:-}" <<'PY'
import subprocess, sys
lib, listing, sanitizer = sys.argv[1:]
sec = None
for line in subprocess.run(["readelf", "-SW", lib], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    f = line.replace("[ ", "[").split()
    if len(f) > 5 and f[1] == ".text.mp_worker_path":
        sec = (int(f[3], 16), int(f[5], 16))
if not sec:
    sys.exit(lib + " has no .text.mp_worker_path section")
path = set()
for name in open(listing).read().split("\n"):  # up to the worker's exit
    if name and not name.startswith("#"):
        path.add(name)
        if name == "mp__plat_exit_now":
            break
found, windows, bad = 0, set(), []
for line in subprocess.run(["nm", lib], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    f = line.split()
    if len(f) == 3 and f[1] in "tT" and f[2] in path:
        a = int(f[0], 16)
        if not sec[0] <= a < sec[0] + sec[1]:
            bad.append(f[2] + " lies outside the section")
        windows.add(a // 65536)
        found += 1
if found < 20:
    bad.append("only %d start-path functions found" % found)
if len(windows) > 2 and not sanitizer:
    bad.append("the start path spans %d windows of 64 KiB" % len(windows))
if bad:
    sys.exit("\n".join(bad))
print("%d start-path functions in %d window(s)" % (found, len(windows)))
PY
