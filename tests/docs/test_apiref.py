# SPDX-License-Identifier: MIT
"""The API reference: every public function has a doc comment, and the
generated reference has one page per header naming every function."""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, "tools", "gen_apiref.py")
INCLUDE = os.path.join(ROOT, "include", "mproc")


def main():
    failed = 0
    # 1. the check itself: no undocumented public function
    r = subprocess.run([sys.executable, GEN, "--check"], capture_output=True, text=True)
    print(r.stdout, end="")
    if r.returncode != 0:
        print("FAIL: public functions without a doc comment (above)")
        failed += 1

    # 2. the check catches one: a header with an undocumented function
    #    (the generator is pointed at a scratch copy of the headers)
    with tempfile.TemporaryDirectory() as d:
        inc = os.path.join(d, "include", "mproc")
        os.makedirs(inc)
        os.makedirs(os.path.join(d, "tools"))
        with open(os.path.join(inc, "x.h"), "w") as f:
            f.write("/* SPDX-License-Identifier: MIT */\n/* A test header. */\n"
                    "/* Documented. */\nMP_EXTERN int mp_x_doc(void);\n\n"
                    "MP_EXTERN int mp_x_undoc(int a,\n                        int b);\n")
        with open(GEN) as src, open(os.path.join(d, "tools", "gen_apiref.py"), "w") as dst:
            dst.write(src.read())
        r = subprocess.run([sys.executable, os.path.join(d, "tools", "gen_apiref.py"), "--check"],
                           capture_output=True, text=True)
        if r.returncode != 1 or "mp_x_undoc" not in r.stdout or "mp_x_doc " in r.stdout:
            print("FAIL: the check did not report exactly mp_x_undoc:\n" + r.stdout)
            failed += 1

    # 3. the reference: a page per header, each public function on its page
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([sys.executable, GEN, out], capture_output=True, text=True)
        if r.returncode != 0:
            print("FAIL: generating the reference:\n" + r.stdout + r.stderr)
            return 1
        headers = sorted(h for h in os.listdir(INCLUDE) if h.endswith(".h") and h != "version.h")
        index = open(os.path.join(out, "index.html")).read()
        for h in headers:
            page = os.path.join(out, h[:-2] + ".html")
            if not os.path.exists(page):
                print("FAIL: no page for", h)
                failed += 1
                continue
            if ('href="%s.html"' % h[:-2]) not in index:
                print("FAIL: index does not link", h)
                failed += 1
            text = open(page).read()
            names = re.findall(r"MP_EXTERN[^;(]*?\b(mp_\w+)\s*\(", open(os.path.join(INCLUDE, h)).read())
            for name in names:
                if ('id="%s"' % name) not in text:
                    print("FAIL: %s not on %s's page" % (name, h))
                    failed += 1
            if "(undocumented)" in text:
                print("FAIL: an undocumented entry on", h)
                failed += 1
    print("apiref: %s" % ("ok" if not failed else "%d failures" % failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
