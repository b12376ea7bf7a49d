#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Managers against CPython, both roles, under every CPython 3.8+ found
(3.11's HMAC-MD5 handshake and 3.12+'s {sha256} included):

- a C server (examples/manager_server) with CPython's SyncManager client:
  every SyncManager typeid through the stock proxies, KeyError / IndexError
  / AttributeError / queue.Empty / RuntimeError / ValueError replies,
  RemoteError for an unexposed method, number_of_objects back to 0, a
  BaseManager registering get_queue, a wrong key, shutdown by dispatch;
- a C client (tests/helper_mgr_client) of a CPython server (a SyncManager
  subclass registering get_queue): create, calls, #ERROR KeyError,
  #TRACEBACK, #PROXY Iterator, get_methods with a C-encoded Token, nested
  proxies, every SyncManager type's exposed methods with CPython's
  answers, decref to 0, shutdown -- and the same client against the C
  server;
- a C server with a registered C type and a CPython client: the type's
  codes arrive as ValueError / IndexError / KeyError(key) / TypeError /
  RemoteError, its method_to_typeid result as an Iterator proxy;
- the seeds' remote-manager trio with either side in C
  (examples/queue_manager_server, queue_manager_client);
- examples/manager_dict_list and manager_custom print what CPython prints
  for the seeds' Server-process and customized-managers examples, under
  every start method.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "support"))
import pythons  # noqa: E402

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
EX = os.path.join(BUILD, "examples")
HELPER = os.path.join(BUILD, "tests", "helper_mgr_client")
HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 120
failures = []

PY_SERVER = r'''
import queue, sys
from multiprocessing.managers import SyncManager
class QM(SyncManager): pass
_q = queue.Queue()
QM.register('get_queue', callable=lambda: _q)
s = QM(address=('127.0.0.1', 0), authkey=sys.argv[1].encode()).get_server()
print('serving on %s:%d' % s.address, flush=True)
s.serve_forever()
'''

SEED = r'''
import sys
from multiprocessing import get_context
def f(d, l):
    d[1] = '1'
    d['2'] = 2
    d[0.25] = None
    l.reverse()
if __name__ == '__main__':
    ctx = get_context(sys.argv[1] if sys.argv[1] != 'threading' else 'fork')
    with ctx.Manager() as manager:
        d = manager.dict()
        l = manager.list(range(10))
        p = ctx.Process(target=f, args=(d, l))
        p.start()
        p.join()
        print(d)
        print(l)
'''


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def start(cmd):
    """A server printing 'serving on ADDRESS' first; (process, address)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline().split()
    if len(line) != 3 or line[:2] != ["serving", "on"]:
        p.kill()
        raise SystemExit("server %s did not start: %r %s" %
                         (cmd, line, p.stderr.read()))
    return p, line[2]


def stop(p, what):
    try:
        p.wait(timeout=10)
        check(p.returncode == 0, what + " (exit %s)" % p.returncode)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        check(False, what + " did not exit")


def run(cmd, what, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                       env=env)
    check(r.returncode == 0, "%s%s" % (what, "" if r.returncode == 0 else
                                       ":\n" + r.stdout + r.stderr))
    return r.stdout


def t_c_server_py_client(ver, py):
    srv, addr = start([os.path.join(EX, "manager_server"), "127.0.0.1:0", "k"])
    try:
        run([py, os.path.join(HERE, "mgr_pyclient.py"), addr, "shutdown"],
            "%s client -> C server: SyncManager types, errors, refcounts" % ver)
    finally:
        stop(srv, "%s: C server stops on the Python client's shutdown" % ver)


PY_COUNTER = r'''
import gc, sys
from multiprocessing.managers import SyncManager, RemoteError
host, port = sys.argv[1].rsplit(':', 1)
class M(SyncManager): pass
M.register('Counter')
m = M(address=(host, int(port)), authkey=b'k'); m.connect()
c = m.Counter(3)
assert sorted(c._exposed_) == ['add', 'fail', 'item', 'key', 'kind', 'squares'], c._exposed_
assert c.add(2) == 5
def raises(exc, f, *a):
    try:
        f(*a)
    except exc as e:
        return e
    raise SystemExit('no %s from %s' % (exc.__name__, f))
assert 'negative step -1' in str(raises(ValueError, c.add, -1))
raises(IndexError, c.item, 0)
assert raises(KeyError, c.key, 'k').args == ('k',)
raises(TypeError, c.kind, 'x')
assert 'MP_EBADF' in str(raises(RemoteError, c.fail))
assert list(c.squares()) == [0, 1, 4, 9, 16]
del c; gc.collect()
assert m._number_of_objects() == 0
from multiprocessing.connection import Client
from multiprocessing.managers import dispatch
dispatch(Client((host, int(port)), authkey=b'k'), None, 'shutdown')
print('ok')
'''


def t_registered_type_py_client(ver, py):
    srv, addr = start([os.path.join(BUILD, "tests", "helper_mgr_server"),
                       "127.0.0.1:0", "k"])
    try:
        out = run([py, "-c", PY_COUNTER, addr],
                  "%s client of a registered C type: codes as builtins "
                  "exceptions, #PROXY Iterator" % ver)
        check(out == "ok\n", "%s: the Counter checks ran" % ver)
    finally:
        stop(srv, "%s: C server with a registered type stops" % ver)


def t_py_server_c_client(ver, py):
    srv, addr = start([py, "-c", PY_SERVER, "k"])
    env = dict(os.environ, HELPER_SHUTDOWN="1")
    try:
        run([HELPER, addr, "k"], "C client -> %s server" % ver, env=env)
    finally:
        stop(srv, "%s server stops on the C client's shutdown" % ver)


def t_c_server_c_client():
    # the same checks a C client runs against CPython's servers, against
    # ours: both servers give the same answers
    srv, addr = start([os.path.join(EX, "manager_server"), "127.0.0.1:0", "k"])
    env = dict(os.environ, HELPER_SHUTDOWN="1")
    try:
        run([HELPER, addr, "k"], "C client -> C server", env=env)
    finally:
        stop(srv, "C server stops on the C client's shutdown")


def t_queue_trio(ver, py):
    # C server, a Python client puts, the C client gets
    srv, addr = start([os.path.join(EX, "queue_manager_server"),
                       "127.0.0.1:0", "abracadabra"])
    try:
        host, port = addr.rsplit(":", 1)
        run([py, "-c", "from multiprocessing.managers import BaseManager\n"
             "class QM(BaseManager): pass\n"
             "QM.register('get_queue')\n"
             "m = QM(address=(%r, %s), authkey=b'abracadabra'); m.connect()\n"
             "m.get_queue().put('hello')\n" % (host, port)],
            "%s client puts on the C queue server" % ver)
        out = run([os.path.join(EX, "queue_manager_client"), addr,
                   "abracadabra", "get"], "C client gets")
        check(out == "'hello'\n", "C client got 'hello' from %s's put" % ver)
    finally:
        srv.kill()
        srv.wait()
    # Python server, C clients put and get
    srv, addr = start([py, "-c", PY_SERVER, "abracadabra"])
    try:
        run([os.path.join(EX, "queue_manager_client"), addr, "abracadabra",
             "put", "from C"], "C client puts on the %s server" % ver)
        out = run([os.path.join(EX, "queue_manager_client"), addr,
                   "abracadabra", "get"], "C client gets")
        check(out == "'from C'\n", "C clients through the %s queue" % ver)
    finally:
        srv.kill()
        srv.wait()


def t_dict_list_example(py):
    # a file, not -c: spawn children re-import the main module
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(SEED)
    try:
        for method in ("fork", "spawn", "forkserver", "threading"):
            dict_list_one(py, f.name, method)
    finally:
        os.unlink(f.name)


def dict_list_one(py, seed, method):
    want = subprocess.run([py, seed, method], capture_output=True,
                          text=True, timeout=TIMEOUT).stdout
    got = run([os.path.join(EX, "manager_dict_list"), method],
              "manager_dict_list %s runs" % method)
    check(got == want and want.startswith("{1: '1', '2': 2, 0.25: None}"),
          "manager_dict_list %s prints what CPython prints: %r vs %r"
          % (method, got, want))


def t_custom_example(py):
    want = subprocess.run([py, os.path.join(HERE, "seed_custom_managers.py")],
                          capture_output=True, text=True,
                          timeout=TIMEOUT).stdout
    check("op.pow(2, 94) = 19807040628566084398385987584" in want,
          "CPython runs the customized-managers seed")
    for method in ("fork", "spawn", "forkserver", "threading"):
        got = run([os.path.join(EX, "manager_custom"), method],
                  "manager_custom %s runs" % method)
        check(got == want, "manager_custom %s prints what CPython prints:\n%s"
              "\nvs\n%s" % (method, got, want))


def main():
    found = pythons.find(lambda minor: minor >= 8, include_self=True)
    for want in ("3.11", "3.13"):
        if want not in found:
            print("note: no Python %s found" % want)
    for ver, py in sorted(found.items()):
        t_c_server_py_client(ver, py)
        t_py_server_c_client(ver, py)
        t_registered_type_py_client(ver, py)
        t_queue_trio(ver, py)
    t_c_server_c_client()
    t_dict_list_example(found.get("3.11", sys.executable))
    t_custom_example(found.get("3.11", sys.executable))
    if failures:
        print("%d failed" % len(failures))
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
