/* SPDX-License-Identifier: MIT */
/* Managers and proxies: multiprocessing.managers for C, wire-compatible
 * with CPython's in both roles (docs/python-wire.md section 4).
 *
 * A manager server holds objects by ident and serves calls on them to
 * clients that authenticate with its key: C programs through mp_proxy, and
 * CPython programs through their stock proxies -- SyncManager(address,
 * authkey).connect() then m.dict(), m.list(...), m.Queue() ... work against
 * a C server, and a C client works against a CPython BaseManager server.
 *
 *     mp_manager *m;
 *     mp_manager_new(&m, NULL);              // SyncManager(), every typeid
 *     mp_manager_start(m);                   // server in a child process
 *     mp_proxy *d;
 *     mp_manager_dict(m, &d);                // m.dict()
 *     mp_proxy_setitem(d, k, v);             // d[k] = v
 *     ...
 *     mp_proxy_free(d);                      // decref
 *     mp_manager_free(m);                    // shuts the server down
 *
 * The server.  mp_manager_start runs it in a child process of the
 * manager's context (any start method; "threading" runs it in a thread)
 * and returns once it listens.  The child is not a daemon (as CPython's,
 * so its objects may start processes of their own); it stops when its
 * parent dies, SIGKILLed included (it watches the parent's sentinel), and
 * is stopped by mp_manager_shutdown/free or at exit through a stop channel
 * (the start pipe, kept open: no connection or handshake).  Its default
 * address is a socket in one directory per process, removed at exit (as
 * CPython's get_temp_dir()).
 * mp_manager_serve_forever runs it in the calling thread until a client
 * sends shutdown (Python's get_server().serve_forever()).  One thread per
 * connection, as CPython.  A server method or object call that fails gets
 * the reply CPython's server would send: #ERROR with a builtins exception
 * for a method's error code (KeyError, IndexError, ValueError, TypeError,
 * ...; see mp_manager_method_fn), #TRACEBACK text otherwise.
 *
 * Types.  The SyncManager typeids are built in, with CPython's exposed
 * method names and semantics: dict, list, Namespace, Value, Array, Lock,
 * RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier, Queue,
 * JoinableQueue, and Iterator (the #PROXY result of dict.__iter__).  A
 * program adds its own C types with mp_manager_register (BaseManager.
 * register): a static mp_manager_type naming a create function and a table
 * of exposed methods.
 *
 * Objects live while their reference count is above zero: create makes
 * one reference (owned by the proxy it returns), a proxy rebuilt in another
 * process (passed in Process args, through a Connection or a Queue) takes
 * its own (incref), and freeing a proxy drops it (decref).  A proxy stored
 * inside a managed container keeps its referent alive until it is removed.
 * A client that disconnects without decref'ing leaks its objects until the
 * server stops, as with CPython: the protocol cannot tell a gone client's
 * references from a live process's (a Python process sends each decref on
 * a new connection).  opts.max_objects bounds what such clients can pile
 * up.  The references a server holds for the proxies its replies carry
 * (see "Nested proxies" below) are the exception: they end with the
 * connection, however the client ends.
 *
 * Proxies.  mp_proxy_call is Python's _callmethod(name, args, kwds): the
 * value, or an error code with the remote text in mp_errdetail()
 * (MP_EREMOTE for #TRACEBACK/#UNSERIALIZABLE; for #ERROR the code of the
 * exception: KeyError MP_ENOTFOUND, IndexError MP_EINDEX, ValueError
 * MP_EINVAL, TypeError MP_ETYPE, StopIteration MP_EEOF, queue.Empty
 * MP_EEMPTY, queue.Full MP_EFULL, RuntimeError MP_ESTATE, TimeoutError
 * MP_ETIMEDOUT, BrokenBarrierError MP_EBROKEN, AttributeError MP_ENOTFOUND,
 * any other MP_EREMOTE).  A #PROXY reply gives a proxy as a handle value
 * (mp_proxy_from_obj).  Each thread of a process uses its own connection
 * to a manager (opened on its first call, as CPython's per-thread
 * connection); a process never uses a connection of its parent's (a fork
 * child opens its own).  Typed calls below cover the common operations so
 * a C program never spells method names.
 *
 * Proxies are handles ("mproc.Proxy"): they travel in Process args under
 * every start method, through Connections and Queues, and inside values
 * sent to a manager (nested proxies).  The receiver increfs its copy and
 * decrefs it when freed; a fork child that uses an inherited proxy takes
 * its own reference on its first call.  Keep a proxy alive until the
 * receiver has it (as Python requires).  A proxy's key travels only in a
 * child's start instructions (Python's rule); elsewhere a rebuilt proxy
 * uses the key of a manager the receiving process already talks to at that
 * address, else its authkey (mp_process_authkey).  A proxy that holds a
 * reference in a process is decref'd when that process exits, if it was
 * not freed before (children included).  A thread's connection is closed
 * once the thread has ended (when another thread opens one) and when the
 * last proxy of that manager in the process goes.
 *
 * Nested proxies: on a manager connection a proxy travels as CPython's
 * RebuildProxy(ProxyClass, Token, 'pickle', kwds), in both directions, so
 * a proxy stored in a managed container (l.append(d), a Python client's
 * m.list([m.dict()])) keeps its referent alive in a C server and comes
 * back as a proxy of the same object, to C and CPython clients alike, over
 * AF_UNIX and TCP; a C client's proxies stored in a CPython server's
 * containers work the same way.  A server keeps a reference for each
 * proxy a reply carries until the client has made its own, so l.pop() of
 * a container's last reference hands over a live object (CPython's server
 * frees it first).  A C server leaves a proxy of another manager inert.
 * A CPython client rebuilds such proxies with its process's authkey
 * (CPython's rule): against a remote manager it must set
 * current_process().authkey to the manager's key.  docs/python-wire.md
 * section 4 has the details.
 *
 * Pool: SyncManager's Pool and AsyncResult typeids are served, running C
 * functions only (see mp_manager_pool).
 *
 * Threads: every function may be called from several threads. */
#ifndef MPROC_MANAGER_H
#define MPROC_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#include "obj.h"
#include "process.h"
#include "mproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_manager mp_manager;
typedef struct mp_proxy mp_proxy;

/* ---- registered C types ---------------------------------------------- */

/* An exposed method: called with the object, the call's args (a tuple,
 * never NULL) and kwds (a dict, never NULL), both borrowed.  Returns 0 and
 * a new reference in *result (NULL means None), or a negative code.  On a
 * code the method may set *result to the exception's args (a tuple; a
 * single value is wrapped) -- KeyError(key) is MP_ENOTFOUND with
 * *result = the key -- else the exception gets mp_errdetail()'s text.
 * Codes reach a Python client as builtins exceptions: MP_ENOTFOUND
 * KeyError, MP_EINDEX IndexError, MP_EINVAL ValueError, MP_ETYPE and
 * MP_EUNHASHABLE TypeError, MP_EEOF StopIteration, MP_EEMPTY queue.Empty,
 * MP_EFULL queue.Full, MP_ESTATE RuntimeError, MP_ETIMEDOUT TimeoutError,
 * MP_EBROKEN threading.BrokenBarrierError, MP_EOVERFLOW OverflowError,
 * MP_ENOMEM MemoryError; any other code as a #TRACEBACK text.  A C client
 * gets the code back with the text. */
typedef int (*mp_manager_method_fn)(void *obj, mp_obj *args, mp_obj *kwds,
                                    mp_obj **result);

typedef struct mp_manager_method {
  const char *name; /* a Python identifier for AutoProxy clients */
  mp_manager_method_fn fn;
  /* method_to_typeid: the result is an object of this typeid (the server
   * registers it and replies #PROXY); NULL: a plain value. */
  const char *typeid;
} mp_manager_method;

enum {
  /* The type's methods are thread-safe (and may block): the server calls
   * them concurrently.  Without it the server serialises the calls on each
   * object (a method must then not block for long). */
  MP_MANAGER_CONCURRENT = 1
};

typedef struct mp_manager_type {
  const char *typeid;
  /* Make an object from create's args (a tuple) and kwds (a dict), both
   * borrowed; 0 and *obj, or a code (with detail) that the client gets.
   * For a typeid that is only a #PROXY result type, create receives the
   * method's result value as args[0]. */
  int (*create)(mp_obj *args, mp_obj *kwds, void **obj);
  /* Release an object when its count reaches 0 (NULL: nothing). */
  void (*destroy)(void *obj);
  const mp_manager_method *methods; /* exposed methods */
  size_t nmethods;
  /* Optional: repr()/str() for the __repr__/__str__ fallbacks (a str
   * value; NULL: "<typeid object>"), and the referent as a value for
   * #GETVALUE (NULL: #TRACEBACK). */
  int (*repr)(void *obj, mp_obj **out);
  int (*getvalue)(void *obj, mp_obj **out);
  unsigned flags; /* MP_MANAGER_CONCURRENT */
  /* Optional, for MP_MANAGER_CONCURRENT types whose methods block: wake
   * every waiter because the server stops (they should fail). */
  void (*interrupt)(void *obj);
} mp_manager_type;

/* Register a C type under type->typeid (BaseManager.register), before the
 * server starts.  `type` must have static storage (it crosses to a spawn
 * server by reference, as functions do).  A built-in typeid may be
 * replaced.  MP_ESTATE after start, MP_EINVAL for a NULL or nameless type
 * or one that is not static, MP_ENOMEM. */
MP_EXTERN int mp_manager_register(mp_manager *m, const mp_manager_type *type);
/* Python's register(typeid, callable=lambda: shared): every create of
 * `typeid` returns the one object of the built-in typeid `base` (e.g.
 * "get_queue" -> "Queue") that the server makes when it starts, with
 * `base`'s exposed methods.  MP_ENOTFOUND for an unknown base. */
MP_EXTERN int mp_manager_register_shared(mp_manager *m, const char *typeid,
                                         const char *base);

/* ---- manager ----------------------------------------------------------- */

typedef struct mp_manager_opts {
  /* Address to serve on or connect to (conn.h syntax: "host:port", a
   * path, "@abstract").  NULL: a new AF_UNIX path (serving), which
   * mp_manager_address reports. */
  const char *address;
  /* Key of the handshake; NULL: this process's authkey (Python's
   * authkey=None falls back to current_process().authkey). */
  const void *authkey;
  size_t authkey_len;
  /* Context of the server process started by mp_manager_start (NULL: the
   * default context). */
  mp_context *ctx;
  /* Called in the server process before it serves (Python's initializer,
   * initargs); a nonzero return makes the start fail with MP_ESTATE. */
  mp_target_fn initializer;
  mp_obj *initargs;
  /* Most objects the server holds at once (0: 1,000,000); a create past
   * it gets an error reply (MemoryError for Python). */
  size_t max_objects;
  /* Most connections served at once (0: 1024); more are closed at once. */
  int max_connections;
  /* Largest request the server reads (0: 64 MiB); a larger one closes
   * that connection. */
  uint64_t max_request;
} mp_manager_opts;

/* BaseManager(address, authkey) / SyncManager(...): not started or
 * connected yet.  opts NULL: defaults.  0, MP_EINVAL, MP_ENOMEM. */
MP_EXTERN int mp_manager_new(mp_manager **out, const mp_manager_opts *opts);

/* Start the server in a child process (see the top) and wait until it
 * listens.  MP_ESTATE if already started or connected, or if the
 * initializer failed; the child's start errors otherwise. */
MP_EXTERN int mp_manager_start(mp_manager *m);

/* Python's connect(): check the server at opts.address answers (a dummy
 * request).  MP_EAUTH for a wrong key, connection errors. */
MP_EXTERN int mp_manager_connect(mp_manager *m);

/* Python's get_server().serve_forever(): serve in the calling thread
 * until a client sends shutdown (or mp_manager_shutdown from another
 * thread).  `ready`, if not NULL, is called once the server listens (its
 * address is then readable).  0 when stopped, or a listen error. */
MP_EXTERN int mp_manager_serve_forever(mp_manager *m,
                                       void (*ready)(mp_manager *m, void *arg),
                                       void *arg);

/* Stop the server: a started one is asked to shut down and joined (killed
 * after 1 s, as Python); one serving in this process (serve_forever in
 * another thread) stops.  For a connected manager, sends shutdown to the
 * remote server.  0, MP_ESTATE if there is nothing to stop. */
MP_EXTERN int mp_manager_shutdown(mp_manager *m);

/* Shut down a started server (as mp_manager_shutdown) and free.  Proxies
 * made from it stay valid objects whose calls fail once the server is
 * gone.  Also done at exit for managers not freed (Python's finalizer).
 * NULL is ignored. */
MP_EXTERN void mp_manager_free(mp_manager *m);

/* The address the server listens on (after start or while serving) or
 * that was given; NULL if none yet.  Valid while `m` lives. */
MP_EXTERN const char *mp_manager_address(const mp_manager *m);

/* Python's m.<typeid>(*args, **kwds): create an object on the server and a
 * proxy owning its reference.  args a tuple (NULL: ()), kwds a dict (NULL:
 * {}), borrowed.  The method's error code, MP_EREMOTE (an unknown typeid,
 * with the server's text), connection errors. */
MP_EXTERN int mp_manager_create(mp_manager *m, const char *typeid,
                                mp_obj *args, mp_obj *kwds, mp_proxy **out);

/* Server methods: number_of_objects (Python's _number_of_objects),
 * debug_info (*out to release with mp_free). */
MP_EXTERN int mp_manager_number_of_objects(mp_manager *m, int64_t *out);
MP_EXTERN int mp_manager_debug_info(mp_manager *m, char **out);

/* SyncManager's constructors. */
MP_EXTERN int mp_manager_dict(mp_manager *m, mp_proxy **out);
MP_EXTERN int mp_manager_list(mp_manager *m, mp_obj *init, mp_proxy **out);
MP_EXTERN int mp_manager_namespace(mp_manager *m, mp_proxy **out);
MP_EXTERN int mp_manager_value(mp_manager *m, const char *typecode,
                               mp_obj *value, mp_proxy **out);
MP_EXTERN int mp_manager_queue(mp_manager *m, int maxsize, mp_proxy **out);
MP_EXTERN int mp_manager_lock(mp_manager *m, mp_proxy **out);
MP_EXTERN int mp_manager_rlock(mp_manager *m, mp_proxy **out);
MP_EXTERN int mp_manager_event(mp_manager *m, mp_proxy **out);
MP_EXTERN int mp_manager_semaphore(mp_manager *m, int value, mp_proxy **out);
/* SyncManager.Pool(processes): a pool of worker processes in the server
 * (processes 0: its usable CPUs).  Its methods are CPython's PoolProxy
 * names, called with mp_proxy_call: apply, map, starmap (the value),
 * apply_async, map_async, starmap_async (an AsyncResult proxy: get,
 * wait, ready, successful), imap, imap_unordered (an Iterator proxy),
 * close, terminate, join.  func is a function value (MP_FUNC of an
 * mp_task_fn; a CPython client's Python function is a TypeError: the
 * server runs C), callbacks must be None, and any iterable value works as
 * the items.  The pool's last reference terminates it. */
MP_EXTERN int mp_manager_pool(mp_manager *m, int processes, mp_proxy **out);

/* ---- proxies -------------------------------------------------------------- */

/* Python's _callmethod(name, args, kwds).  args a tuple (NULL: ()), kwds
 * a dict (NULL: {}), borrowed.  0 and *out (a new reference; a #PROXY
 * result is a proxy handle value; out may be NULL to drop the value), or
 * a code as described at the top. */
MP_EXTERN int mp_proxy_call(mp_proxy *p, const char *method, mp_obj *args,
                            mp_obj *kwds, mp_obj **out);
/* _callmethod with the args taken over (the tuple is released, also on
 * failure). */
MP_EXTERN int mp_proxy_call_take(mp_proxy *p, const char *method,
                                 mp_obj *args, mp_obj **out);

/* Another reference to the same local proxy (returned; NULL passes). */
MP_EXTERN mp_proxy *mp_proxy_ref(mp_proxy *p);
/* Drop a reference; the last one decrefs the server object (in the
 * process that holds that reference).  NULL is ignored. */
MP_EXTERN void mp_proxy_free(mp_proxy *p);

/* The proxy's typeid, ident (borrowed) and exposed names (a tuple of
 * str, borrowed). */
MP_EXTERN const char *mp_proxy_typeid(const mp_proxy *p);
MP_EXTERN const char *mp_proxy_ident(const mp_proxy *p);
MP_EXTERN mp_obj *mp_proxy_exposed(const mp_proxy *p);
/* proxy._getvalue(): a copy of the referent (#GETVALUE). */
MP_EXTERN int mp_proxy_getvalue(mp_proxy *p, mp_obj **out);
/* repr of the referent (the server's __repr__), to release with mp_free. */
MP_EXTERN int mp_proxy_repr(mp_proxy *p, char **out);

/* A proxy as a handle value, holding its own reference (NULL on failure),
 * and the proxy inside one (borrowed; NULL if `o` is not a proxy). */
MP_EXTERN mp_obj *mp_proxy_obj(mp_proxy *p);
MP_EXTERN mp_proxy *mp_proxy_from_obj(const mp_obj *o);

/* ---- typed calls ----------------------------------------------------------
 * Each is one _callmethod of the named method; values are borrowed, results
 * new references.  Codes as mp_proxy_call. */

/* dict */
MP_EXTERN int mp_proxy_getitem(mp_proxy *p, mp_obj *key, mp_obj **out);   /* d[key], l[i] */
MP_EXTERN int mp_proxy_setitem(mp_proxy *p, mp_obj *key, mp_obj *value);  /* d[key] = v */
MP_EXTERN int mp_proxy_delitem(mp_proxy *p, mp_obj *key);                 /* del d[key] */
MP_EXTERN int mp_proxy_len(mp_proxy *p, int64_t *out);                    /* len() */
MP_EXTERN int mp_proxy_contains(mp_proxy *p, mp_obj *key);                /* 1, 0 or a code */
MP_EXTERN int mp_proxy_dict_get(mp_proxy *p, mp_obj *key, mp_obj *dflt, mp_obj **out);
MP_EXTERN int mp_proxy_dict_keys(mp_proxy *p, mp_obj **out);              /* a list */
MP_EXTERN int mp_proxy_dict_values(mp_proxy *p, mp_obj **out);
MP_EXTERN int mp_proxy_dict_items(mp_proxy *p, mp_obj **out);             /* list of pairs */
/* list */
MP_EXTERN int mp_proxy_list_append(mp_proxy *p, mp_obj *item);
MP_EXTERN int mp_proxy_list_extend(mp_proxy *p, mp_obj *items);
MP_EXTERN int mp_proxy_list_getitem(mp_proxy *p, int64_t i, mp_obj **out);
MP_EXTERN int mp_proxy_list_setitem(mp_proxy *p, int64_t i, mp_obj *item);
MP_EXTERN int mp_proxy_list_reverse(mp_proxy *p);
/* Namespace: ns.name / ns.name = v / del ns.name (MP_ENOTFOUND if absent) */
MP_EXTERN int mp_proxy_ns_get(mp_proxy *p, const char *name, mp_obj **out);
MP_EXTERN int mp_proxy_ns_set(mp_proxy *p, const char *name, mp_obj *value);
MP_EXTERN int mp_proxy_ns_del(mp_proxy *p, const char *name);
/* Value: v.value / v.value = x */
MP_EXTERN int mp_proxy_value_get(mp_proxy *p, mp_obj **out);
MP_EXTERN int mp_proxy_value_set(mp_proxy *p, mp_obj *value);
/* Queue: put/get with the one timeout rule (MP_FOREVER blocks; <= 0 is
 * put_nowait/get_nowait): MP_EFULL / MP_EEMPTY. */
MP_EXTERN int mp_proxy_queue_put(mp_proxy *p, mp_obj *item, double timeout);
MP_EXTERN int mp_proxy_queue_get(mp_proxy *p, mp_obj **out, double timeout);
MP_EXTERN int mp_proxy_queue_qsize(mp_proxy *p, int64_t *out);
/* Lock, RLock, Semaphore, Condition: acquire returns 0, or MP_ETIMEDOUT
 * when not acquired in time; release: 0 or MP_ESTATE (not held). */
MP_EXTERN int mp_proxy_acquire(mp_proxy *p, double timeout);
MP_EXTERN int mp_proxy_release(mp_proxy *p);
/* Event: set / clear / is_set (1 or 0) / wait (0, or MP_ETIMEDOUT). */
MP_EXTERN int mp_proxy_event_set(mp_proxy *p);
MP_EXTERN int mp_proxy_event_clear(mp_proxy *p);
MP_EXTERN int mp_proxy_event_is_set(mp_proxy *p);
MP_EXTERN int mp_proxy_event_wait(mp_proxy *p, double timeout);

#ifdef __cplusplus
}
#endif
#endif
