/* SPDX-License-Identifier: MIT */
/* Internals of the manager layer: the protocol's messages (protocol.c),
 * the server (server.c), the built-in types (types_data.c, types_sync.c),
 * the client side (proxy.c) and the manager object (manager.c).
 * Wire facts: docs/python-wire.md section 4. */
#ifndef MPROC_MANAGER_INTERNAL_H
#define MPROC_MANAGER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/internal.h"
#include "mproc.h"

/* ---- protocol.c: requests, replies, Token, exceptions ------------------ */

/* (ident or None, method, args, kwds): args/kwds borrowed, NULL for () / {}. */
mp_obj *mp__mgr_request(const char *ident, const char *method, mp_obj *args,
                        mp_obj *kwds);
/* The parts of a request, borrowed from it (ident NULL for None).
 * MP_EMALFORMED with a detail when it is not a request. */
int mp__mgr_request_parts(const mp_obj *req, const char **ident,
                          const char **method, mp_obj **args, mp_obj **kwds);
/* (kind, value): takes `value` (NULL: None). */
mp_obj *mp__mgr_reply_take(const char *kind, mp_obj *value);
/* ('#TRACEBACK', text) in the shape of Python's format_exc(). */
mp_obj *mp__mgr_traceback(const char *exc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The reply for a method's failure `code`: #ERROR with the builtins
 * exception of the code (args: `exc_args` taken, a tuple or a single value
 * or NULL for (detail,)), or #TRACEBACK text. */
mp_obj *mp__mgr_error_reply(int code, const char *detail, mp_obj *exc_args);
/* Read a reply.  0: #RETURN, *value a new reference.  1: #PROXY, *value the
 * (exposed, token) pair.  Otherwise a code with the remote text as the
 * detail (see manager.h for the exception -> code map). */
int mp__mgr_reply_read(const mp_obj *reply, mp_obj **value);
/* Token(typeid, address, id) as a pickled Token object, and its parts
 * (borrowed).  `address` in conn.h syntax; written the way CPython's server
 * writes its address (tuple, str path, abstract bytes). */
mp_obj *mp__mgr_token_new(const char *typeid, const char *address,
                          const char *ident);
int mp__mgr_token_parts(const mp_obj *tok, const char **typeid,
                        const char **ident);
mp_obj *mp__mgr_address_obj(const char *address);
/* The inverse: our spelling of a Python address object -- a path, "@name"
 * (abstract), or "host:port" ("[host]:port" for an IPv6 host) -- into buf.
 * MP_EINVAL for any other value or one that does not fit. */
int mp__mgr_address_str(const mp_obj *a, char *buf, size_t cap);
/* A tuple of the names of a method table (the exposed list). */
mp_obj *mp__mgr_exposed(const mp_manager_type *t);
/* Items of an iterable value a Python client may send (list, tuple, set,
 * frozenset, dict keys, str? no; range(...) records) as a new list.
 * MP_ETYPE otherwise. */
int mp__mgr_iter_list(const mp_obj *o, mp_obj **out);

/* ---- types_data.c, types_sync.c, types_pool.c: the SyncManager types --- */
extern const mp_manager_type mp__mgr_dict_type, mp__mgr_list_type,
    mp__mgr_iterator_type, mp__mgr_namespace_type, mp__mgr_value_type,
    mp__mgr_array_type;
extern const mp_manager_type mp__mgr_lock_type, mp__mgr_rlock_type,
    mp__mgr_semaphore_type, mp__mgr_bsemaphore_type, mp__mgr_condition_type,
    mp__mgr_event_type, mp__mgr_barrier_type, mp__mgr_queue_type,
    mp__mgr_jqueue_type;
/* types_pool.c: Pool and AsyncResult */
extern const mp_manager_type mp__mgr_pool_type, mp__mgr_async_result_type;
/* Every built-in type, NULL-terminated. */
extern const mp_manager_type *const mp__mgr_builtin_types[];
/* Another reference to a built-in object (for shared typeids); NULL if the
 * type's objects are not shared this way. */
void *mp__mgr_builtin_ref(const mp_manager_type *t, void *obj);
int mp__mgr_is_builtin(const mp_manager_type *t);
/* Make every wait of a built-in object on this thread time out at once
 * (the fuzzer dispatches on one thread: nothing may block it). */
void mp__mgr_nowait(int on);
/* A timeout argument as Python passes it (None: forever) into seconds. */
int mp__mgr_timeout_arg(const mp_obj *o, double *out);
/* A str value of a C string, or NULL. */
mp_obj *mp__mgr_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- server.c ---------------------------------------------------------- */
typedef struct mp__mgr_server mp__mgr_server;

typedef struct mp__mgr_limits {
  size_t max_objects;
  int max_connections;
  uint64_t max_request;
} mp__mgr_limits;

/* A server with the built-in types plus `types` (n) and shared typeids
 * (pairs name, base), listening at `address` (NULL: a new AF_UNIX path). */
int mp__mgr_server_new(mp__mgr_server **out, const char *address,
                       const void *authkey, size_t authkey_len,
                       const mp_manager_type *const *types, size_t ntypes,
                       char *const *shared, size_t nshared,
                       const mp__mgr_limits *limits);
const char *mp__mgr_server_address(const mp__mgr_server *s);
/* CPython's INFO line "manager serving at <address repr>"; logged before
 * the address is reported to whoever waits for it, so that it comes before
 * anything that waiter logs next. */
void mp__mgr_server_log_serving(const mp__mgr_server *s);
const void *mp__mgr_server_key(const mp__mgr_server *s, size_t *len);
/* Serve until shutdown (a client's, or mp__mgr_server_stop). */
int mp__mgr_server_serve(mp__mgr_server *s);
/* Watch a descriptor (two at most; MP_ELIMIT) whose readability stops the
 * serve loop: the stop channel of a server started by mp_manager_start, so
 * that its parent stops it without a connection, handshake and shutdown
 * call, and the parent's sentinel, so that it stops when its parent dies. */
int mp__mgr_server_watch_fd(mp__mgr_server *s, int fd);
/* Ask a serving server to stop (any thread, async-signal-unsafe). */
void mp__mgr_server_stop(mp__mgr_server *s);
void mp__mgr_server_free(mp__mgr_server *s);
/* Whether the client of the connection this thread serves has hung up
 * (a killed client): a built-in object's wait then gives up instead of
 * taking what it waited for (a queue item would be lost).  0 outside a
 * serving thread. */
int mp__mgr_peer_gone(void);
/* The server the calling thread serves (NULL outside a serving thread):
 * proxies decoded there that name it are local to it. */
mp__mgr_server *mp__mgr_server_current(void);
/* References the server keeps for local proxies (nested proxies):
 * incref an ident of `s` (MP_ENOTFOUND if unknown) and decref it. */
int mp__mgr_server_incref(mp__mgr_server *s, const char *ident);
void mp__mgr_server_decref(mp__mgr_server *s, const char *ident);
/* A reference for a proxy of `ident` that the reply being pickled on this
 * server thread carries, held until the client increfs it (or sends its
 * next request, or goes); 0 and nothing held outside a reply. */
int mp__mgr_server_hold(mp__mgr_server *s, const char *ident);
/* The object of a local proxy, pinned (NULL if gone or of another type);
 * release with mp__mgr_server_unpin. */
void *mp__mgr_server_pin(mp__mgr_server *s, const char *ident,
                         const mp_manager_type *type, void **pin);
void mp__mgr_server_unpin(mp__mgr_server *s, void *pin);
/* A fuzzer's entry: dispatch one request pickle on a server that is not
 * listening (no connection); returns the reply pickle. */
int mp__mgr_server_dispatch_bytes(mp__mgr_server *s, const void *req,
                                  size_t len, void **reply, size_t *rlen);
void mp__mgr_server_reset(mp__mgr_server *s);

/* ---- proxy.c ------------------------------------------------------------- */
/* A proxy for (typeid, ident) at `address`, adopting the reference the
 * server made for it (incref 0) or taking one (incref 1). */
int mp__mgr_proxy_new(mp_proxy **out, const char *address, const void *key,
                      size_t keylen, const char *typeid, const char *ident,
                      mp_obj *exposed, int incref);
/* One-shot server method call: connect, request, one reply. */
int mp__mgr_call_server(const char *address, const void *key, size_t keylen,
                        const char *method, mp_obj *args, mp_obj *kwds,
                        mp_obj **out);
/* The local-proxy object (the referent of a proxy owned by a server in
 * this process), pinned; see mp__mgr_server_pin. */
void *mp__mgr_proxy_local(const mp_obj *o, const mp_manager_type *type,
                          void **pin, mp__mgr_server **srv);

#endif
