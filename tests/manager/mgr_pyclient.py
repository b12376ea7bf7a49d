# SPDX-License-Identifier: MIT
"""A CPython SyncManager client of a C manager server, run by
test_interop.py: mgr_pyclient.py HOST:PORT [shutdown].  Every SyncManager
typeid through CPython's stock proxies, the error replies, refcounts back
to 0, a BaseManager get_queue, a wrong key; prints one line per check."""
import gc, sys, time
from multiprocessing.managers import SyncManager, BaseManager, RemoteError
host, port = sys.argv[1].rsplit(':', 1)
addr = (host, int(port))
class QM(SyncManager): pass
QM.register('get_queue')
m = QM(address=addr, authkey=b'k'); m.connect()
def check(cond, what):
    if not cond:
        raise SystemExit('FAIL ' + what)
    print('ok', what)
check(m._number_of_objects() == 0, 'no objects')
q = m.get_queue(); q.put({'a': (1, 2**70)}); check(q.get() == {'a': (1, 2**70)}, 'get_queue put/get')
d = m.dict(); d['k'] = [1, 'two', 3.0]; check(d['k'] == [1, 'two', 3.0] and len(d) == 1, 'dict')
try: d['missing']; raise SystemExit('no KeyError')
except KeyError as e: check(e.args == ('missing',), 'KeyError')
try: q._callmethod('nosuch'); raise SystemExit('no RemoteError')
except RemoteError as e: check('nosuch' in str(e), 'RemoteError for an unexposed method')
d.update({'x': 1}, y=2); check(sorted(d.keys()) == ['k', 'x', 'y'], 'update/keys')
check(list(iter(d)) == ['k', 'x', 'y'], 'iter (Iterator proxy)')
check(d.get('nope', 5) == 5 and d.pop('x') == 1 and d.setdefault('z', 9) == 9, 'get/pop/setdefault')
check(str(d) == "{'k': [1, 'two', 3.0], 'y': 2, 'z': 9}", 'str(d) %s' % d)
check(d.copy() == {'k': [1, 'two', 3.0], 'y': 2, 'z': 9} and d._getvalue() == d.copy(), 'copy/_getvalue')
check('k' in d and 'q' not in d, '__contains__')
del d['k']; check(len(d) == 2, '__delitem__')
l = m.list(range(10)); l.reverse(); check(l[:] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0] and str(l) == '[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]', 'list(range(10))')
l.append(10); l.extend([11]); l += [12]; l.insert(0, -1); check(len(l) == 14 and l[0] == -1 and l[-1] == 12, 'append/extend/+=/insert')
l.sort(); check(l[0] == -1 and l[13] == 12 and l.index(5) == 6 and l.count(5) == 1, 'sort/index/count')
check(l.pop() == 12 and l[1:3] == [0, 1], 'pop/slice'); l.remove(0); del l[0]; check(l[0] == 1, 'remove/del')
try: l[99]; raise SystemExit('no IndexError')
except IndexError: check(True, 'IndexError')
l *= 2; check(len(l) == 22, '*=')
ns = m.Namespace(); ns.x = 10; ns.y = 'hello'; check(ns.x == 10 and ns.y == 'hello', 'Namespace')
check(str(ns) == "Namespace(x=10, y='hello')", 'Namespace repr')
try: ns.nope; raise SystemExit('no AttributeError')
except AttributeError: check(True, 'AttributeError')
del ns.x
v = m.Value('i', 7); check(v.value == 7, 'Value'); v.value = 8; check(v.get() == 8, 'Value set')
a = m.Array('i', [1, 2, 3]); a[0] = 5; check(len(a) == 3 and a[0] == 5 and a[2] == 3, 'Array')
mq = m.Queue(); mq.put(1); mq.put_nowait(2); check(mq.qsize() == 2 and mq.get() == 1 and mq.get_nowait() == 2 and mq.empty(), 'Queue')
import queue as _queue
try: mq.get(timeout=0.05); raise SystemExit('no Empty')
except _queue.Empty: check(True, 'queue.Empty')
jq = m.JoinableQueue(); jq.put(1); jq.get(); jq.task_done(); jq.join(); check(True, 'JoinableQueue')
lk = m.Lock(); check(lk.acquire() and not lk.acquire(False) and not lk.acquire(True, 0.05), 'Lock'); lk.release()
with lk: pass
rl = m.RLock(); rl.acquire(); rl.acquire(); rl.release(); rl.release(); check(True, 'RLock')
try: lk.release(); raise SystemExit('no error')
except RuntimeError: check(True, 'release unlocked -> RuntimeError')
sem = m.Semaphore(2); check(sem.acquire() and sem.acquire() and not sem.acquire(False), 'Semaphore'); sem.release()
bs = m.BoundedSemaphore(1)
try: bs.release(); raise SystemExit('no ValueError')
except ValueError: check(True, 'BoundedSemaphore')
ev = m.Event(); check(not ev.is_set() and not ev.wait(0.05), 'Event unset'); ev.set(); check(ev.is_set() and ev.wait(), 'Event set'); ev.clear()
c = m.Condition(); c.acquire(); check(c.wait(0.05) is False, 'Condition wait timeout'); c.notify(); c.notify_all(); c.release()
lk2 = m.Lock(); c2 = m.Condition(lk2); c2.acquire(); check(not lk2.acquire(False), 'Condition(lock) shares the Lock'); c2.release(); check(lk2.acquire(False), 'Condition(lock) released it'); lk2.release()
b = m.Barrier(1); check(b.parties == 1 and b.n_waiting == 0 and not b.broken and b.wait() == 0, 'Barrier')
b.abort(); check(b.broken, 'Barrier abort')
# nested proxies: CPython pickles a proxy as RebuildProxy(...); the C server
# keeps the referent alive while a container holds it and sends it back as
# a proxy (of the same object), over TCP
# (CPython rebuilds such a proxy with the process's authkey, as it would
# against its own server: a client of a remote manager sets it)
import multiprocessing
multiprocessing.current_process().authkey = b'k'
base = m._number_of_objects()
nd = m.dict(); nd['a'] = 1
nl = m.list(); nl.append(nd)
del nd; gc.collect()
x = nl[0]
check(type(x).__name__ == 'DictProxy' and x['a'] == 1, 'a dict proxy stored in a list comes back as a DictProxy')
x['b'] = 2; del x; gc.collect()
check(nl[0]['b'] == 2 and nl[0]._token.id == nl[0]._token.id, 'the same dict, held only by the list')
check(m._number_of_objects() == base + 2, 'a reply\'s proxy leaves no reference behind: %d' % m._number_of_objects())
nl.pop(); gc.collect()
check(m._number_of_objects() == base + 1, 'popping the item frees the dict: %d' % m._number_of_objects())
nested = m.list([m.dict({'i': i}) for i in range(3)]); gc.collect()
check([p['i'] for p in nested[:]] == [0, 1, 2], 'create with proxies in its args')
q2 = m.Queue(); lst = m.list([q2]); lst[0].put('via nested'); check(q2.get() == 'via nested', 'an AutoProxy (Queue) nested and back')
outer = m.dict({'inner': m.list([1, 2])}); gc.collect()
outer['inner'].append(3); check(outer['inner'][:] == [1, 2, 3], 'dict of list, through __getitem__')
del nl, nested, q2, lst, outer; gc.collect()
check(m._number_of_objects() == base, 'nested proxies all freed: %d' % m._number_of_objects())
# Pool: CPython's PoolProxy against the C server's pool, which runs C
# functions only -- a Python function is a TypeError, the rest works
pl = m.Pool(2)
try: pl.map(abs, [1, -2]); raise SystemExit('no TypeError')
except TypeError as e: check('function value' in str(e), 'Pool.map of a Python function: TypeError')
try: pl.apply_async(abs, (1,)); raise SystemExit('no TypeError')
except TypeError: check(True, 'Pool.apply_async of a Python function: TypeError')
pl.close(); pl.join(); check(True, 'Pool close/join')
with m.Pool(1) as pl2: pass
del pl, pl2; gc.collect()
check(m._number_of_objects() == base, 'Pools freed: %d' % m._number_of_objects())
check(m._number_of_objects() > 0, 'objects exist')
check(isinstance(m._debug_info(), str) and 'refcount=' in m._debug_info(), 'debug_info %r' % m._debug_info()[:60])
del q, d, l, ns, v, a, mq, jq, lk, rl, sem, bs, ev, c, b, lk2, c2
gc.collect()
check(m._number_of_objects() == 0, 'number_of_objects back to 0')
# BaseManager with get_queue only
class BM(BaseManager): pass
BM.register('get_queue')
bm = BM(address=addr, authkey=b'k'); bm.connect()
bq = bm.get_queue(); bq.put('hello'); check(bq.get() == 'hello', 'BaseManager get_queue')
del bq; gc.collect()
bad = QM(address=addr, authkey=b'wrong')
try: bad.connect(); raise SystemExit('no AuthenticationError')
except Exception as e: check(type(e).__name__ == 'AuthenticationError', 'wrong key')
if len(sys.argv) > 2:
    from multiprocessing.connection import Client
    from multiprocessing.managers import dispatch
    check(dispatch(Client(addr, authkey=b'k'), None, 'shutdown') is None, 'shutdown')
