/* SPDX-License-Identifier: MIT */
/* SyncManager's Pool and AsyncResult typeids: a pool of worker processes
 * living in the server, with the names CPython's PoolProxy calls (apply,
 * apply_async, map, map_async, starmap, starmap_async, imap,
 * imap_unordered, close, terminate, join) and its method_to_typeid
 * (the async forms give an AsyncResult, the imaps an Iterator).
 *
 * The tasks are C functions: the func argument must be a function value
 * (mproc.func, an mp_task_fn), which a C client sends with MP_FUNC and
 * the server resolves in its own image.  A CPython client can create,
 * close and join such a pool, but the Python function it passes is a
 * TypeError -- a C server cannot run Python code.  Callbacks
 * (callback=, error_callback=) would run in the server and are refused
 * the same way.  Freeing the pool's last reference terminates it. */
#include <stdlib.h>
#include <string.h>

#include "manager/manager_internal.h"
#include "manager/types_internal.h"

typedef struct mgr_pool {
  mgr_bhdr hdr;
  mp_pool *pool;
} mgr_pool;

/* An AsyncResult: the handle value of the mp_result it waits on. */
typedef struct mgr_result {
  mgr_bhdr hdr;
  mp_obj *h;
} mgr_result;

/* ---- the handle values a method gives to its result typeid -------------- */

static void
result_release(void *ptr)
{
  mp_result_free(ptr);
}

static void
imap_release(void *ptr)
{
  mp_imap_free(ptr);
}

/* Neither has reduce: they never leave the server. */
static const mp_handle_type result_handle = {
  .name = "mproc.manager.AsyncResult",
  .release = result_release,
};

const mp_handle_type mp__mgr_imap_handle = {
  .name = "mproc.manager.IMapIterator",
  .release = imap_release,
};

__attribute__((constructor)) static void
pool_handles_init(void)
{
  mp_handle_register(&result_handle);
  mp_handle_register(&mp__mgr_imap_handle);
}

/* ---- arguments ------------------------------------------------------------ */

/* Python's binding of (args, kwds) to the parameters `names` (the first
 * `required` of them required): out[i] borrowed or NULL.  TypeError
 * (MP_ETYPE) for too many, missing, unknown or repeated arguments. */
static int
bind(const char *fn, mp_obj *args, mp_obj *kwds, const char *const *names,
     size_t n, size_t required, mp_obj **out)
{
  mp_obj *const *a;
  size_t na;
  if (mp_seq_items(args, &a, &na))
    return mp_seterr(MP_ETYPE, "%s: args must be a tuple", fn);
  if (na > n)
    return mp_seterr(MP_ETYPE, "%s() takes at most %zu arguments (%zu given)",
                     fn, n, na);
  for (size_t i = 0; i < n; i++)
    out[i] = i < na ? a[i] : NULL;
  size_t pos = 0;
  mp_obj *k, *v;
  while (kwds && mp_dict_next(kwds, &pos, &k, &v)) {
    const char *name;
    size_t len, i;
    if (mp_str_get(k, &name, &len))
      return mp_seterr(MP_ETYPE, "%s: keywords must be strings", fn);
    for (i = 0; i < n && strcmp(names[i], name); i++)
      ;
    if (i == n)
      return mp_seterr(MP_ETYPE,
                       "%s() got an unexpected keyword argument '%s'", fn,
                       name);
    if (out[i])
      return mp_seterr(MP_ETYPE, "%s() got multiple values for argument "
                                 "'%s'", fn, name);
    out[i] = v;
  }
  for (size_t i = 0; i < required; i++)
    if (!out[i])
      return mp_seterr(MP_ETYPE, "%s() missing required argument '%s'", fn,
                       names[i]);
  return 0;
}

static int
is_none(const mp_obj *o)
{
  return !o || mp_obj_type(o) == MP_T_NONE;
}

static int
task_fn(const char *fn, const mp_obj *o, mp_task_fn *out)
{
  *out = (mp_task_fn)mp_func_get(o);
  if (!*out)
    return mp_seterr(MP_ETYPE,
                     "%s: a C manager's Pool runs C functions: func must be "
                     "a function value (mproc.func), not %s",
                     fn, mp_type_name(mp_obj_type(o)));
  return 0;
}

static int
no_callbacks(const char *fn, mp_obj *cb, mp_obj *ecb)
{
  if (!is_none(cb) || !is_none(ecb))
    return mp_seterr(MP_ETYPE, "%s: callbacks would run in the manager's "
                               "server; pass None and use get()",
                     fn);
  return 0;
}

static int
chunksize_arg(const char *fn, const mp_obj *o, size_t *out)
{
  int64_t v = 0;
  *out = 0;
  if (is_none(o))
    return 0;
  if (mp_int_get(o, &v))
    return mp_seterr(MP_ETYPE, "%s: chunksize must be an int or None", fn);
  if (v < 1)
    return mp_seterr(MP_EINVAL, "%s: chunksize must be 1 or more", fn);
  *out = (size_t)v;
  return 0;
}

/* ---- Pool ----------------------------------------------------------------- */

static int
pool_create(mp_obj *args, mp_obj *kwds, void **out)
{
  static const char *const names[] = {"processes", "initializer",
                                      "initargs", "maxtasksperchild"};
  mp_obj *a[4];
  int rc = bind("Pool", args, kwds, names, 4, 0, a);
  if (rc)
    return rc;
  mp_pool_opts o = {0};
  int64_t v;
  if (!is_none(a[0])) {
    if (mp_int_get(a[0], &v) || v < 1 || v > 4096)
      return mp_seterr(MP_EINVAL, "Number of processes must be at least 1");
    o.processes = (int)v;
  }
  if (!is_none(a[1]) &&
      !(o.initializer = (int (*)(mp_obj *))mp_func_get(a[1])))
    return mp_seterr(MP_ETYPE, "Pool: initializer must be a function value "
                               "(mproc.func) or None");
  if (!is_none(a[2]) && mp_obj_type(a[2]) != MP_T_TUPLE)
    return mp_seterr(MP_ETYPE, "Pool: initargs must be a tuple");
  o.initargs = is_none(a[2]) ? NULL : a[2];
  if (!is_none(a[3])) {
    if (mp_int_get(a[3], &v) || v < 1 || v > INT32_MAX)
      return mp_seterr(MP_EINVAL, "maxtasksperchild must be a positive int "
                                  "or None");
    o.maxtasksperchild = (int)v;
  }
  mgr_pool *p = calloc(1, sizeof *p);
  if (!p)
    return MP_ENOMEM;
  atomic_init(&p->hdr.refs, 1);
  if ((rc = mp_pool_new(&p->pool, &o))) {
    free(p);
    return rc;
  }
  *out = p;
  return 0;
}

static void
pool_destroy(void *ptr)
{
  mgr_pool *p = ptr;
  if (!p || atomic_fetch_sub(&p->hdr.refs, 1) != 1)
    return;
  /* no proxy is left to join it: its workers go now */
  mp_pool_terminate(p->pool);
  mp_pool_join(p->pool);
  mp_pool_free(p->pool);
  free(p);
}

#define POOL(ptr) mp_pool *pool = ((mgr_pool *)(ptr))->pool

static int
pool_apply(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  POOL(ptr);
  static const char *const names[] = {"func", "args", "kwds"};
  mp_obj *a[3];
  mp_task_fn fn;
  int rc = bind("apply", args, kwds, names, 3, 1, a);
  if (rc || (rc = task_fn("apply", a[0], &fn)))
    return rc;
  if (a[2] && mp_obj_type(a[2]) == MP_T_DICT && mp_obj_truthy(a[2]))
    return mp_seterr(MP_ETYPE, "apply: a C task takes no keyword arguments");
  mp_obj *targs = is_none(a[1]) ? mp_tuple_take(0) : mp_obj_ref(a[1]);
  if (!targs)
    return MP_ENOMEM;
  rc = mp_pool_apply(pool, fn, targs, res);
  mp_obj_free(targs);
  return rc;
}

static int
pool_apply_async(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  POOL(ptr);
  static const char *const names[] = {"func", "args", "kwds", "callback",
                                      "error_callback"};
  mp_obj *a[5];
  mp_task_fn fn;
  int rc = bind("apply_async", args, kwds, names, 5, 1, a);
  if (rc || (rc = task_fn("apply_async", a[0], &fn)) ||
      (rc = no_callbacks("apply_async", a[3], a[4])))
    return rc;
  if (a[2] && mp_obj_type(a[2]) == MP_T_DICT && mp_obj_truthy(a[2]))
    return mp_seterr(MP_ETYPE,
                     "apply_async: a C task takes no keyword arguments");
  mp_obj *targs = is_none(a[1]) ? mp_tuple_take(0) : mp_obj_ref(a[1]);
  if (!targs)
    return MP_ENOMEM;
  mp_result *r;
  rc = mp_pool_apply_async(pool, fn, targs, NULL, &r);
  mp_obj_free(targs);
  if (rc)
    return rc;
  *res = mp_handle_new(&result_handle, r);
  return *res ? 0 : MP_ENOMEM;
}

enum { MAP, STARMAP, MAP_ASYNC, STARMAP_ASYNC, IMAP, IMAP_UNORDERED };

/* map, starmap, their async forms and the imaps: (func, iterable,
 * chunksize[, callback, error_callback]) */
static int
pool_mapper(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res, int kind)
{
  static const char *const fns[] = {"map",       "starmap",
                                    "map_async", "starmap_async",
                                    "imap",      "imap_unordered"};
  static const char *const names[] = {"func", "iterable", "chunksize",
                                      "callback", "error_callback"};
  POOL(ptr);
  const char *name = fns[kind];
  int async = kind == MAP_ASYNC || kind == STARMAP_ASYNC;
  mp_obj *a[5];
  mp_task_fn fn;
  mp_map_opts o = {0};
  int rc = bind(name, args, kwds, names, async ? 5 : 3, 2, a);
  if (rc || (rc = task_fn(name, a[0], &fn)) ||
      (async && (rc = no_callbacks(name, a[3], a[4]))) ||
      (rc = chunksize_arg(name, a[2], &o.chunksize)))
    return rc;
  /* any iterable a client can send (list, tuple, range, set, dict...) */
  mp_obj *items;
  if ((rc = mp__mgr_iter_list(a[1], &items)))
    return rc;
  mp_result *r = NULL;
  mp_imap *it = NULL;
  switch (kind) {
  case MAP:
    rc = mp_pool_map(pool, fn, items, &o, res);
    break;
  case STARMAP:
    rc = mp_pool_starmap(pool, fn, items, &o, res);
    break;
  case MAP_ASYNC:
    rc = mp_pool_map_async(pool, fn, items, &o, &r);
    break;
  case STARMAP_ASYNC:
    rc = mp_pool_starmap_async(pool, fn, items, &o, &r);
    break;
  case IMAP:
    rc = mp_pool_imap(pool, fn, items, &o, &it);
    break;
  default:
    rc = mp_pool_imap_unordered(pool, fn, items, &o, &it);
    break;
  }
  mp_obj_free(items);
  if (rc || (!r && !it))
    return rc;
  *res = r ? mp_handle_new(&result_handle, r)
           : mp_handle_new(&mp__mgr_imap_handle, it);
  return *res ? 0 : MP_ENOMEM;
}

static int
pool_map(void *p, mp_obj *a, mp_obj *k, mp_obj **r)
{
  return pool_mapper(p, a, k, r, MAP);
}

static int
pool_starmap(void *p, mp_obj *a, mp_obj *k, mp_obj **r)
{
  return pool_mapper(p, a, k, r, STARMAP);
}

static int
pool_map_async(void *p, mp_obj *a, mp_obj *k, mp_obj **r)
{
  return pool_mapper(p, a, k, r, MAP_ASYNC);
}

static int
pool_starmap_async(void *p, mp_obj *a, mp_obj *k, mp_obj **r)
{
  return pool_mapper(p, a, k, r, STARMAP_ASYNC);
}

static int
pool_imap(void *p, mp_obj *a, mp_obj *k, mp_obj **r)
{
  return pool_mapper(p, a, k, r, IMAP);
}

static int
pool_imap_unordered(void *p, mp_obj *a, mp_obj *k, mp_obj **r)
{
  return pool_mapper(p, a, k, r, IMAP_UNORDERED);
}

static int
pool_close(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  POOL(ptr);
  int rc = mp__mgr_parse(args, ":close");
  if (rc || (rc = mp__mgr_nokw(kwds, "close")))
    return rc;
  return mp_pool_close(pool);
}

static int
pool_terminate(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  POOL(ptr);
  int rc = mp__mgr_parse(args, ":terminate");
  if (rc || (rc = mp__mgr_nokw(kwds, "terminate")))
    return rc;
  return mp_pool_terminate(pool);
}

static int
pool_join(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  POOL(ptr);
  int rc = mp__mgr_parse(args, ":join");
  if (rc || (rc = mp__mgr_nokw(kwds, "join")))
    return rc;
  rc = mp_pool_join(pool);
  /* Python: join() before close() or terminate() is a ValueError */
  return rc == MP_ESTATE ? mp_seterr(MP_EINVAL, "Pool is still running") : rc;
}

static const mp_manager_method pool_methods[] = {
    {"apply", pool_apply, NULL},
    {"apply_async", pool_apply_async, "AsyncResult"},
    {"close", pool_close, NULL},
    {"imap", pool_imap, "Iterator"},
    {"imap_unordered", pool_imap_unordered, "Iterator"},
    {"join", pool_join, NULL},
    {"map", pool_map, NULL},
    {"map_async", pool_map_async, "AsyncResult"},
    {"starmap", pool_starmap, NULL},
    {"starmap_async", pool_starmap_async, "AsyncResult"},
    {"terminate", pool_terminate, NULL},
};

const mp_manager_type mp__mgr_pool_type = {
    .typeid = "Pool",
    .create = pool_create,
    .destroy = pool_destroy,
    .methods = pool_methods,
    .nmethods = MP__ARRAY_LEN(pool_methods),
    .flags = MP_MANAGER_CONCURRENT, /* map and join block */
};

/* ---- AsyncResult (a #PROXY result type only) ------------------------------ */

static int
result_create(mp_obj *args, mp_obj *kwds, void **out)
{
  (void)kwds;
  mp_obj *h = mp_seq_item(args, 0);
  if (!h || !mp_handle_get(h, &result_handle))
    return mp_seterr(MP_ETYPE, "AsyncResult objects come from the Pool's "
                               "async methods");
  mgr_result *r = calloc(1, sizeof *r);
  if (!r)
    return MP_ENOMEM;
  atomic_init(&r->hdr.refs, 1);
  r->h = mp_obj_ref(h);
  *out = r;
  return 0;
}

static void
result_destroy(void *ptr)
{
  mgr_result *r = ptr;
  if (!r || atomic_fetch_sub(&r->hdr.refs, 1) != 1)
    return;
  mp_obj_free(r->h);
  free(r);
}

#define RESULT(ptr)                                                          \
  mp_result *r = mp_handle_get(((mgr_result *)(ptr))->h, &result_handle)

/* get(timeout=None) and wait(timeout=None) */
static int
timeout_of(const char *fn, mp_obj *args, mp_obj *kwds, double *t)
{
  static const char *const names[] = {"timeout"};
  mp_obj *a[1];
  int rc = bind(fn, args, kwds, names, 1, 0, a);
  return rc ? rc : mp__mgr_timeout_arg(a[0], t);
}

static int
result_get(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  RESULT(ptr);
  double t;
  int rc = timeout_of("get", args, kwds, &t);
  if (rc)
    return rc;
  rc = mp_result_get(r, res, t);
  if (rc == MP_ETIMEDOUT)
    mp_seterr(MP_ETIMEDOUT, "the result is not ready");
  return rc;
}

static int
result_wait(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  RESULT(ptr);
  double t;
  int rc = timeout_of("wait", args, kwds, &t);
  if (rc)
    return rc;
  rc = mp_result_wait(r, t);
  return rc == MP_ETIMEDOUT ? 0 : rc; /* Python's wait returns None */
}

static int
result_ready(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  RESULT(ptr);
  int rc = mp__mgr_parse(args, ":ready");
  if (rc || (rc = mp__mgr_nokw(kwds, "ready")))
    return rc;
  *res = mp_bool_new(mp_result_ready(r) == 1);
  return 0;
}

static int
result_successful(void *ptr, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  RESULT(ptr);
  int rc = mp__mgr_parse(args, ":successful");
  if (rc || (rc = mp__mgr_nokw(kwds, "successful")))
    return rc;
  rc = mp_result_successful(r);
  if (rc == MP_ESTATE) /* Python: ValueError("... not ready") */
    return mp_seterr(MP_EINVAL, "the result is not ready");
  if (rc < 0)
    return rc;
  *res = mp_bool_new(rc == 1);
  return 0;
}

static const mp_manager_method result_methods[] = {
    {"get", result_get, NULL},
    {"ready", result_ready, NULL},
    {"successful", result_successful, NULL},
    {"wait", result_wait, NULL},
};

const mp_manager_type mp__mgr_async_result_type = {
    .typeid = "AsyncResult",
    .create = result_create,
    .destroy = result_destroy,
    .methods = result_methods,
    .nmethods = MP__ARRAY_LEN(result_methods),
    .flags = MP_MANAGER_CONCURRENT, /* get and wait block */
};
