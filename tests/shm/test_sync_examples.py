# SPDX-License-Identifier: MIT
"""The seed examples of locks, shared values and sharedctypes, run under
every start method: their output must match Python's exactly (lock_print:
ten intact lines, in any order)."""
import os
import subprocess
import sys

build = os.environ.get("MPROC_BUILD_DIR", "build")
examples = os.path.join(build, "examples")
methods = ["fork", "spawn", "forkserver", "threading"]
expected = {
    "shared_values": "3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]\n",
    "sharedctypes": "49\n0.1111111111111111\nHELLO WORLD\n"
                    "[(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)]\n",
}
failed = 0
ran = 0
for name in ["shared_values", "sharedctypes", "lock_print"]:
    exe = os.path.join(examples, name)
    if not os.path.exists(exe):
        print(f"SKIP {name}: not built")
        continue
    for m in methods:
        ran += 1
        r = subprocess.run([exe, m], capture_output=True, text=True,
                           timeout=120)
        ok = r.returncode == 0
        if name == "lock_print":
            lines = r.stdout.splitlines()
            ok = ok and sorted(lines) == sorted(f"hello world {i}"
                                                for i in range(10))
        else:
            ok = ok and r.stdout == expected[name]
        if not ok:
            failed += 1
            print(f"FAIL {name} {m}: rc={r.returncode}\n{r.stdout}{r.stderr}")
        else:
            print(f"ok   {name} {m}")
if ran == 0:
    print("no example built")
    sys.exit(1)
sys.exit(1 if failed else 0)
