#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Interop: mproc's Listener/Client/Connection against CPython's
multiprocessing.connection, with CPython 3.11 and 3.12+ on the other side
(docs/python-wire.md section 6, scenarios 1-8 and 15, plus the seeds'
Listener/Client example pair).

The C side is build/tests/helper_conn (and build/examples/conn_server,
conn_client); the Python side runs in a subprocess of each interpreter found.
"""
import glob
import os
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "tests", "helper_conn")
EXAMPLES = os.path.join(BUILD, "examples")
TIMEOUT = 120


def interpreters():
    """python3 (3.11) and 3.8, 3.12, 3.13 from pyenv, if present."""
    found = []
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        root = os.path.expanduser("~/.pyenv")
    root = os.environ.get("PYENV_ROOT", root or os.path.expanduser("~/.pyenv"))
    cands = [sys.executable]
    for v in ("3.8", "3.11", "3.12", "3.13"):
        cands += sorted(glob.glob(os.path.join(root, "versions", v + ".*",
                                               "bin", "python3")))
    seen = set()
    for p in cands:
        try:
            v = subprocess.run([p, "-c", "import sys;print('%d.%d'%sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if v and v not in seen and v in ("3.8", "3.11", "3.12", "3.13"):
            seen.add(v)
            found.append((v, p))
    for want in ("3.11", "3.12", "3.13"):
        if want not in seen:
            print("note: no Python %s found; its cases are skipped" % want)
    return found


PY_SERVER = r'''
import sys, ast, array, pickle, pickletools, io
from multiprocessing.connection import Listener
mode, addr, key, n = sys.argv[1], ast.literal_eval(sys.argv[2]), ast.literal_eval(sys.argv[3]), int(sys.argv[4])
with Listener(addr, authkey=key) as l:
    a = l.address
    if isinstance(a, tuple): a = '%s:%d' % a
    elif isinstance(a, bytes): a = '@' + a[1:].decode()
    elif a.startswith('\0'): a = '@' + a[1:]
    print('ADDRESS', a, flush=True)
    for i in range(n):
        try:
            c = l.accept()
        except Exception as e:
            print('ACCEPT', type(e).__name__, flush=True)
            continue
        print('ACCEPTED', flush=True)
        with c:
            try:
                if mode == 'seed':
                    c.send([2.25, None, 'junk', float])
                    c.send_bytes(b'hello')
                    c.send_bytes(array.array('i', [42, 1729]))
                    c.recv_bytes()
                while mode != 'seed':
                    if mode == 'bytes':
                        c.send_bytes(c.recv_bytes())
                    elif mode == 'obj':
                        c.send(c.recv())
                    elif mode == 'dis':
                        out = io.StringIO()
                        pickletools.dis(c.recv_bytes(), out)
                        c.send(out.getvalue())
            except EOFError:
                pass
'''

PY_CLIENT = r'''
import sys, ast, array, math, pickle
from multiprocessing.connection import Client
from multiprocessing import AuthenticationError, BufferTooShort
addr, key = ast.literal_eval(sys.argv[1]), ast.literal_eval(sys.argv[2])
try:
    c = Client(addr, authkey=key)
except Exception as e:
    print('CONNECT', type(e).__name__, e, flush=True)
    sys.exit(3)
exec(sys.argv[3])
c.close()
print('DONE', flush=True)
'''


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def start(cmd, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=e)
    first = p.stdout.readline().split()
    if not first or first[0] != "ADDRESS":
        p.kill()
        out, err = p.communicate()
        raise Fail("server did not start: %r %s %s" % (first, out, err))
    return p, first[1]


def finish(p):
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise Fail("server hung: %s %s" % (out, err))
    return out.splitlines(), err


def run(cmd, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                       env=e)
    return r.returncode, r.stdout.splitlines(), r.stderr


def py_addr(a):
    """mproc address string -> Python address literal."""
    if a.startswith("@"):
        return repr("\0" + a[1:])
    if a.startswith("/"):
        return repr(a)
    h, p = a.rsplit(":", 1)
    return repr((h, int(p)))


def py_server(py, mode, addr, key, n):
    return start([py, "-c", PY_SERVER, mode, addr, repr(key), str(n)])


def c_client(addr, key, *steps, env=None):
    return run([HELPER, "client", addr, key] + list(steps), env=env)


def c_server(mode, addr, key, n, env=None):
    return start([HELPER, mode, addr, key, str(n)], env=env)


def py_client(py, addr, key, script):
    return run([py, "-c", PY_CLIENT, py_addr(addr), repr(key), script])


TCP = repr(("127.0.0.1", 0))

# ---- scenarios -------------------------------------------------------------


def t_framing(ver, py):
    """1: frames of 0, 1, 16384, 16385 bytes and an escaped header."""
    s, a = py_server(py, "bytes", TCP, b"k", 1)
    rc, out, err = c_client(a, "k", "frames")
    finish(s)
    check(rc == 0 and out == ["OK frames"], (out, err))


def t_auth_c_client(ver, py):
    """2: the C client against a Python Listener, right key."""
    s, a = py_server(py, "obj", TCP, b"k", 2)
    rc, out, err = c_client(a, "k", "echoobj:ping", "echoobj:mixed")
    check(rc == 0, (out, err))
    # refusing legacy MD5 refuses a 3.11 listener only
    rc, out, err = c_client(a, "k", "echoobj:ping", env={"REFUSE_MD5": "1"})
    lines, _ = finish(s)
    if ver in ("3.8", "3.11"):
        check(rc == 3 and out[0].startswith("CONNECT MP_EAUTH"), out)
    else:
        check(rc == 0, (out, err))


def t_auth_py_client(ver, py):
    """3: a Python Client against the C Listener; values both ways."""
    s, a = c_server("serve-obj", "127.0.0.1:0", "k", 2)
    rc, out, err = py_client(py, a, b"k", r'''
c.send('ping'); assert c.recv() == 'ping'
v = [1, 'two', 3.0, None, True, b'\0\xff', (-1, -2**63), {'a': (1,)},
     bytearray(b'ab'), {7}, frozenset({1}), 2**100, -2**70, float, '\u20ac' * 3]
c.send(v); assert c.recv() == v
c.send_bytes(pickle.dumps(v, 2)); assert c.recv() == v
''')
    check(rc == 0 and out[-1] == "DONE", (out, err))
    # the C listener refusing legacy MD5 turns a 3.11 client away
    s.kill()
    finish(s)
    s, a = c_server("serve-obj", "127.0.0.1:0", "k", 1, env={"REFUSE_MD5": "1"})
    rc, out, err = py_client(py, a, b"k", "c.send(1); assert c.recv() == 1")
    lines, _ = finish(s)
    if ver in ("3.8", "3.11"):
        check(rc == 3 and "AuthenticationError" in out[0], out)
        check(lines[0].startswith("ACCEPT MP_EAUTH"), lines)
    else:
        check(rc == 0, (out, err))


def t_wrong_key(ver, py):
    """4: wrong keys both ways; the listener goes on serving."""
    s, a = c_server("serve-obj", "127.0.0.1:0", "k", 2)
    rc, out, err = py_client(py, a, b"bad", "")
    check(rc == 3 and out[0].startswith("CONNECT AuthenticationError"), out)
    rc, out, err = py_client(py, a, b"k", "c.send('x'); assert c.recv() == 'x'")
    check(rc == 0, (out, err))
    lines, _ = finish(s)
    check(lines[0].startswith("ACCEPT MP_EAUTH") and lines[1].startswith("ACCEPTED"),
          lines)
    s, a = py_server(py, "obj", TCP, b"k", 2)
    rc, out, err = c_client(a, "bad", "echoobj:ping")
    check(rc == 3 and out[0].startswith("CONNECT MP_EAUTH"), out)
    rc, out, err = c_client(a, "k", "echoobj:ping")
    check(rc == 0, (out, err))
    lines, _ = finish(s)
    check(lines[0] == "ACCEPT AuthenticationError" and lines[1] == "ACCEPTED", lines)


def t_decode_every_protocol(ver, py):
    """5, 7, 8: CPython's pickles of every protocol decode in C and come
    back equal; edge values; sharing; a cycle is refused cleanly."""
    s, a = c_server("serve-obj", "127.0.0.1:0", "k", 1)
    rc, out, err = py_client(py, a, b"k", r'''
V = [None, True, 0, 255, 256, 65536, -1, 2**31, -2**63, 2**64, 10**2000, 1.5, -0.0, float('inf'), '',
     'h\u00e9', '\u20ac'*100, 'x'*70000, b'', b'\x00\xff', b'y'*70000, bytearray(b'ab'), (), (1,),
     (1, 2, 3, 4), [1, [2]], list(range(2500)), {'a': (1,)}, set(range(1500)), frozenset({1}),
     {i: str(i) for i in range(1500)}]
for p in (2, 3, 4, 5):
    for v in V:
        c.send_bytes(pickle.dumps(v, p)); r = c.recv()
        assert r == v and type(r) == type(v), (p, v)
e = [2**63-1, -2**63-1, -(2**1000), 1e308, float('nan')]
c.send(e); r = c.recv()
assert r[:4] == e[:4] and math.isnan(r[4])
c.send('\ud800' if False else 'ok'); assert c.recv() == 'ok'
try:
    c.send('\ud800'); r = c.recv()
    assert r == '\ud800' or r.startswith('ERROR'), r
except UnicodeEncodeError:
    pass
s = [1]; c.send([s, s]); r = c.recv(); assert r == [s, s]
a = []; a.append(a); c.send(a); r = c.recv()
assert isinstance(r, str) and r.startswith('ERROR MP_ECYCLE'), r
c.send('ok'); assert c.recv() == 'ok'
''')
    finish(s)
    check(rc == 0 and out[-1] == "DONE", (out, err))


def t_c_encoder(ver, py):
    """6: values encoded in C load in Python (echoed back equal), and
    pickletools reads them."""
    s, a = py_server(py, "obj", TCP, b"k", 1)
    rc, out, err = c_client(a, "k", "echoobj:mixed", "echoobj:seed")
    finish(s)
    check(rc == 0, (out, err))
    s, a = py_server(py, "dis", TCP, b"k", 1)
    rc, out, err = c_client(a, "k", "sendobj:mixed", "recvobj")
    finish(s)
    check(rc == 0 and "STOP" in out[1], (out, err))


def t_big(ver, py):
    """64 MiB both ways."""
    n = 64 << 20
    s, a = py_server(py, "bytes", TCP, b"k", 1)
    rc, out, err = c_client(a, "k", "big:%d" % n)
    finish(s)
    check(rc == 0, (out, err))
    s, a = c_server("serve", "127.0.0.1:0", "k", 1)
    rc, out, err = py_client(py, a, b"k", r'''
b = bytes(range(256)) * (%d // 256)
c.send_bytes(b); assert c.recv_bytes() == b
''' % n)
    finish(s)
    check(rc == 0, (out, err))


def t_recv_bytes_into(ver, py):
    """recv_bytes_into on both sides, and the seed server with a C client."""
    s, a = py_server(py, "seed", TCP, b"secret password", 1)
    rc, out, err = c_client(a, "secret password", "recvobj", "recv", "into",
                            "send:bye")
    finish(s)
    check(rc == 0, (out, err))
    check(out[0] == "RECV [2.25, None, 'junk', <class 'float'>]", out)
    check(out[2] == "RECV 68656c6c6f", out)
    check(out[4] == "INTO 8 42 1729 0 0 0", out)
    s, a = c_server("serve", "127.0.0.1:0", "k", 1)
    rc, out, err = py_client(py, a, b"k", r'''
c.send_bytes(array.array('i', range(5)))
arr2 = array.array('i', [0] * 10)
assert c.recv_bytes_into(arr2) == 20 and list(arr2) == [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]
c.send_bytes(b'x' * 100)
try:
    c.recv_bytes_into(bytearray(10)); raise SystemExit('no BufferTooShort')
except BufferTooShort as e:
    assert e.args[0] == b'x' * 100
''')
    finish(s)
    check(rc == 0, (out, err))


def t_unix_addresses(ver, py):
    """15: Unix path and abstract addresses, both directions."""
    d = tempfile.mkdtemp(prefix="mproc-interop-")
    try:
        path = os.path.join(d, "mpc-test.sock")
        s, a = py_server(py, "obj", repr(path), b"k", 1)
        check(a == path, a)
        rc, out, err = c_client(a, "k", "echoobj:ping")
        finish(s)
        check(rc == 0, (out, err))
        name = "\0mpc-test-%d" % os.getpid()
        s, a = py_server(py, "obj", repr(name), b"k", 1)
        check(a == "@mpc-test-%d" % os.getpid(), a)
        rc, out, err = c_client(a, "k", "echoobj:ping")
        finish(s)
        check(rc == 0, (out, err))
        for addr in (os.path.join(d, "c.sock"), "@mpc-c-%d" % os.getpid(), "-"):
            s, a = c_server("serve-obj", addr, "k", 1)
            rc, out, err = py_client(py, a, b"k", "c.send('x'); assert c.recv() == 'x'")
            finish(s)
            check(rc == 0, (addr, out, err))
        check(not os.path.exists(os.path.join(d, "c.sock")), "path not removed")
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def t_empty_key(ver, py):
    """An empty key is a key: the C listener runs the handshake with it, and
    Python's Client (any version) does too."""
    s, a = c_server("serve-obj", "127.0.0.1:0", "=", 1)
    rc, out, err = py_client(py, a, b"", "c.send(1); assert c.recv() == 1")
    finish(s)
    check(rc == 0, (out, err))


def t_examples(ver, py):
    """The seeds' example pair: C server with Python client, Python server
    with C client, and C with C."""
    server = os.path.join(EXAMPLES, "conn_server")
    client = os.path.join(EXAMPLES, "conn_client")
    if not os.path.exists(server):
        print("   (examples not built; skipped)")
        return
    want = ["[2.25, None, 'junk', <class 'float'>]", "b'hello'", "8",
            "array('i', [42, 1729, 0, 0, 0])"]
    pyc = r'''
conn = c
print(conn.recv())
print(conn.recv_bytes())
arr = array.array('i', [0, 0, 0, 0, 0])
print(conn.recv_bytes_into(arr))
print(arr)
'''
    p = subprocess.Popen([server, "127.0.0.1:0", "secret password"],
                         stdout=subprocess.PIPE, text=True)
    first = p.stdout.readline().split()
    check(first[0] == "listening", first)
    a = first[-1]
    rc, out, err = py_client(py, a, b"secret password", pyc)
    sout = p.communicate(timeout=TIMEOUT)[0].splitlines()
    check(rc == 0 and out[:4] == want, (out, err))
    check(sout[0].startswith("connection accepted from 127.0.0.1:"), sout)
    s, a = py_server(py, "seed", TCP, b"secret password", 1)
    rc, out, err = run([client, a, "secret password"])
    finish(s)
    check(rc == 0 and out == want, (out, err))


def t_c_with_c(ver, py):
    server = os.path.join(EXAMPLES, "conn_server")
    client = os.path.join(EXAMPLES, "conn_client")
    if not os.path.exists(server):
        return
    want = ["[2.25, None, 'junk', <class 'float'>]", "b'hello'", "8",
            "array('i', [42, 1729, 0, 0, 0])"]
    p = subprocess.Popen([server, "localhost:0", "secret password"],
                         stdout=subprocess.PIPE, text=True)
    a = p.stdout.readline().split()[-1]
    rc, out, err = run([client, a, "secret password"])
    p.communicate(timeout=TIMEOUT)
    check(rc == 0 and out == want, (out, err))


CASES = [t_framing, t_auth_c_client, t_auth_py_client, t_wrong_key,
         t_decode_every_protocol, t_c_encoder, t_big, t_recv_bytes_into,
         t_unix_addresses, t_empty_key, t_examples]


def main():
    if not os.path.exists(HELPER):
        print("helper_conn not built at %s" % HELPER)
        return 1
    pys = interpreters()
    if not pys:
        print("no Python interpreter to test against")
        return 1
    failed = 0
    for ver, py in pys:
        for case in CASES:
            name = "%s [python %s]" % (case.__name__, ver)
            t0 = time.time()
            try:
                case(ver, py)
                print("ok   ", name, "(%.1fs)" % (time.time() - t0), flush=True)
            except (Fail, AssertionError, subprocess.TimeoutExpired) as e:
                failed += 1
                print("FAIL ", name, ":", e, flush=True)
    try:
        t_c_with_c(None, None)
        print("ok    t_c_with_c", flush=True)
    except (Fail, subprocess.TimeoutExpired) as e:
        failed += 1
        print("FAIL  t_c_with_c:", e)
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
