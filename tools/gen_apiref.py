#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The API reference, generated from the public headers' comments.

    tools/gen_apiref.py OUTDIR        write OUTDIR/index.html and one page per
                                      header (OUTDIR/queue.html, ...)
    tools/gen_apiref.py --check       list every public function (MP_EXTERN)
                                      that has no doc comment; exit 1 if any

What counts as a function's doc comment, as the headers are written:
  - the comment block that ends on the line just above its declaration, or
    just above the run of declarations it belongs to (declarations on
    consecutive lines share the comment above the first: "mp_queue_empty /
    mp_queue_full" style groups);
    (a #define between them, naming a constant the comment explains, is
    part of the run);
  - or a comment on the declaration's own last line (`... ; /* NULL ignored */`).
A header's first comment after the SPDX line is its overview.  Types
(typedef struct ... { ... }) are listed with the comment above them and their
body, so that option fields' comments are on the page.
"""
import html
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = os.path.join(ROOT, "include", "mproc")


def strip_comment(text):
    """The words of a /* ... */ block, its leading stars gone."""
    text = text.strip()
    if text.startswith("/*"):
        text = text[2:]
    if text.endswith("*/"):
        text = text[:-2]
    lines = []
    for line in text.split("\n"):
        line = line.rstrip()
        s = line.lstrip()
        if s.startswith("* ") or s == "*":
            s = s[2:] if s.startswith("* ") else ""
            # keep the indentation after the star (code samples)
            lines.append(s)
        else:
            lines.append(line.strip() if not lines else line)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


class Item:
    def __init__(self, kind, name, decl, doc, line):
        self.kind, self.name, self.decl, self.doc, self.line = kind, name, decl, doc, line


def parse_header(path):
    """(overview, items): items in file order."""
    src = open(path, encoding="utf-8").read()
    lines = src.split("\n")
    n = len(lines)
    # comments by the line they end on
    comment_end = {}   # last line index -> (first line index, text)
    for m in re.finditer(r"/\*.*?\*/", src, re.S):
        first = src.count("\n", 0, m.start())
        last = src.count("\n", 0, m.end())
        comment_end[last] = (first, m.group(0))
    overview = ""
    for last in sorted(comment_end):
        first, text = comment_end[last]
        if "SPDX-License-Identifier" in text:
            continue
        overview = strip_comment(text)
        break

    def line_is_code(i):
        s = lines[i].strip()
        return bool(s) and not s.startswith("/*") and not s.startswith("*") \
            and not s.startswith("#") and not s.startswith("//")

    # the lines of every MP_EXTERN declaration (a run of them shares the
    # comment above its first)
    decl_at = set()
    i = 0
    while i < n:
        if re.match(r"\s*MP_EXTERN\b", lines[i]):
            decl_at.add(i)
            while ";" not in re.sub(r"/\*.*?\*/", "", lines[i]) and i + 1 < n:
                i += 1
                decl_at.add(i)
        i += 1

    items = []
    i = 0
    while i < n:
        s = lines[i]
        if re.match(r"\s*MP_EXTERN\b", s):
            start = i
            decl_lines = [s]
            while ";" not in re.sub(r"/\*.*?\*/", "", decl_lines[-1]) and i + 1 < n:
                i += 1
                decl_lines.append(lines[i])
            decl = "\n".join(decl_lines)
            trailing = None
            tm = re.search(r";\s*(/\*.*\*/)\s*$", decl_lines[-1])
            if tm:
                trailing = strip_comment(tm.group(1))
            code = re.sub(r"/\*.*?\*/", "", decl, flags=re.S)
            nm = re.search(r"\b(mp_[A-Za-z0-9_]+)\s*\(", code)
            if not nm:
                nm = re.search(r"\b(mp_[A-Za-z0-9_]+)\s*(\[|;)", code)
            name = nm.group(1) if nm else "?"
            doc = find_doc_above(start, lines, comment_end, decl_at)
            if trailing:
                doc = (doc + "\n" + trailing) if doc else trailing
            items.append(Item("function", name,
                              re.sub(r"\s*/\*.*?\*/\s*$", "", decl.strip()).replace("MP_EXTERN ", ""),
                              doc, start + 1))
        elif re.match(r"\s*typedef\s+(struct|enum|union)\b[^;]*\{", s) or \
                re.match(r"\s*typedef\b.*\(\*\s*mp_\w+\)", s):
            start = i
            depth = s.count("{") - s.count("}")
            body = [s]
            while (depth > 0 or ";" not in re.sub(r"/\*.*?\*/", "", body[-1])) and i + 1 < n:
                i += 1
                body.append(lines[i])
                depth += lines[i].count("{") - lines[i].count("}")
            text = "\n".join(body)
            nm = re.findall(r"\b(mp_[A-Za-z0-9_]+)\b", re.sub(r"/\*.*?\*/", "", text, flags=re.S))
            name = nm[-1] if nm else "?"
            items.append(Item("type", name, text, find_doc_above(start, lines, comment_end, decl_at), start + 1))
        i += 1
    return overview, items


def find_doc_above(start, lines, comment_end, decl_at):
    """The comment ending just above line `start`, or above the run of
    declarations that line belongs to."""
    j = start - 1
    while j >= 0:
        if j in comment_end:
            first, text = comment_end[j]
            if "SPDX-License-Identifier" in text:
                return ""
            # a comment that is the tail of a code line belongs to that line
            head = lines[first].split("/*")[0].strip()
            if head:
                if re.match(r"\s*MP_EXTERN\b", lines[first]) or head.endswith(";") \
                        or head.endswith(")") or head.endswith(","):
                    # the previous declaration's trailing comment: keep
                    # walking up through the run
                    j = first - 1
                    continue
                return ""
            return strip_comment(text)
        if j not in decl_at and not lines[j].startswith("#define"):
            return ""  # a blank line, or code that is not a declaration
        # part of the run of declarations above: keep walking
        j -= 1
    return ""


def headers():
    return sorted(f for f in os.listdir(INCLUDE) if f.endswith(".h") and f != "version.h")


def check():
    missing = []
    total = 0
    for h in headers():
        _, items = parse_header(os.path.join(INCLUDE, h))
        for it in items:
            if it.kind != "function":
                continue
            total += 1
            if not it.doc.strip():
                missing.append("include/mproc/%s:%d: %s has no doc comment" % (h, it.line, it.name))
    for m in missing:
        print(m)
    print("%d public functions, %d without a doc comment" % (total, len(missing)))
    return 1 if missing else 0


CSS = """body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto}
code{font-size:95%}.decl{background:#eef;padding:.5em;margin-top:1.5em}
.doc{white-space:pre-wrap;margin:.3em 0 0 1em}nav a{margin-right:.8em}"""


def page(title, body, names):
    nav = " ".join('<a href="%s.html">%s</a>' % (h[:-2], h) for h in names)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>%s</title>"
            "<style>%s</style></head><body><nav><a href='index.html'>index</a> %s</nav>"
            "<h1>%s</h1>%s</body></html>\n" % (html.escape(title), CSS, nav,
                                                html.escape(title), body))


def generate(outdir):
    os.makedirs(outdir, exist_ok=True)
    names = headers()
    index = ["<p>One page per public header of mproc, generated from the "
             "header comments by tools/gen_apiref.py.</p><ul>"]
    for h in names:
        overview, items = parse_header(os.path.join(INCLUDE, h))
        body = ["<p><code>#include &lt;mproc/%s&gt;</code></p>" % h]
        if overview:
            body.append('<div class="doc">%s</div>' % html.escape(overview))
        fns = [it for it in items if it.kind == "function"]
        types = [it for it in items if it.kind == "type"]
        body.append("<h2>Contents</h2><p>")
        body.append(" ".join('<a href="#%s"><code>%s</code></a>' % (it.name, it.name)
                             for it in types + fns))
        body.append("</p>")
        if types:
            body.append("<h2>Types</h2>")
            for it in types:
                body.append('<pre class="decl" id="%s">%s</pre>' % (it.name, html.escape(it.decl)))
                if it.doc:
                    body.append('<div class="doc">%s</div>' % html.escape(it.doc))
        body.append("<h2>Functions</h2>")
        for it in fns:
            body.append('<pre class="decl" id="%s">%s</pre>' % (it.name, html.escape(it.decl)))
            body.append('<div class="doc">%s</div>' % html.escape(it.doc or "(undocumented)"))
        with open(os.path.join(outdir, h[:-2] + ".html"), "w", encoding="utf-8") as f:
            f.write(page("mproc/" + h, "\n".join(body), names))
        first = overview.split("\n")[0] if overview else ""
        index.append('<li><a href="%s.html"><code>mproc/%s</code></a> -- %s (%d functions)</li>'
                     % (h[:-2], h, html.escape(first), len(fns)))
    index.append("</ul>")
    with open(os.path.join(outdir, "index.html"), "w", encoding="utf-8") as f:
        f.write(page("mproc API reference", "\n".join(index), names))
    print("API reference: %s/index.html (%d headers)" % (outdir, len(names)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--check":
        sys.exit(check())
    if len(sys.argv) == 2:
        sys.exit(generate(sys.argv[1]))
    print(__doc__.strip().split("\n\n")[0], file=sys.stderr)
    sys.exit(2)
