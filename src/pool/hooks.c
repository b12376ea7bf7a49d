/* SPDX-License-Identifier: MIT */
/* mpire's worker extras: the pool's shared block (progress counters and
 * insights, pool_internal.h), the worker's id, state, shared data, exit
 * hook and CPU pinning -- the parent's side (mp__poolx) and the worker's
 * (mp__wctx). */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/log.h"
#include "platform/platform.h"
#include "pool/pool_internal.h"

/* ---- the parent's side --------------------------------------------------- */

/* One entry of cpu_ids as a list of CPU ids the parent may run on (a new
 * list), or NULL with the error set. */
static mp_obj *
cpu_entry(const mp_obj *e, const cpu_set_t *allowed, int *rc)
{
  mp_obj *const *v;
  size_t n;
  mp_obj *one[1];
  if (mp_obj_type(e) == MP_T_INT) {
    one[0] = (mp_obj *)e;
    v = one;
    n = 1;
  } else if (mp_obj_type(e) != MP_T_LIST && mp_obj_type(e) != MP_T_TUPLE) {
    *rc = mp_seterr(MP_EINVAL, "cpu_ids: each entry must be an int or a "
                               "list of ints");
    return NULL;
  } else {
    mp_seq_items(e, &v, &n);
  }
  if (n == 0) {
    *rc = mp_seterr(MP_EINVAL, "cpu_ids: an entry lists no CPU");
    return NULL;
  }
  mp_obj *out = mp_list_new();
  for (size_t i = 0; out && i < n; i++) {
    int64_t c;
    if (mp_obj_type(v[i]) != MP_T_INT || mp_int_get(v[i], &c) != 0) {
      mp_obj_free(out);
      *rc = mp_seterr(MP_EINVAL, "cpu_ids: a CPU id must be an int");
      return NULL;
    }
    if (c < 0 || c >= CPU_SETSIZE || !CPU_ISSET((int)c, allowed)) {
      mp_obj_free(out);
      *rc = mp_seterr(MP_EINVAL, "cpu_ids: CPU %lld is not one this "
                                 "process may run on", (long long)c);
      return NULL;
    }
    if (mp_list_append_take(out, mp_int_new(c)) != 0) {
      mp_obj_free(out);
      out = NULL;
    }
  }
  if (!out)
    *rc = MP_ENOMEM;
  return out;
}

/* opts->cpu_ids as nproc lists (x->cpus). */
static int
parse_cpus(mp__poolx *x, const mp_obj *ids, int nproc)
{
  mp_obj *const *v;
  size_t n;
  if (mp_obj_type(ids) != MP_T_LIST && mp_obj_type(ids) != MP_T_TUPLE)
    return mp_seterr(MP_EINVAL, "cpu_ids must be a list");
  mp_seq_items(ids, &v, &n);
  if (n != 1 && n != (size_t)nproc)
    return mp_seterr(MP_EINVAL, "cpu_ids has %zu entries: it must have 1 "
                                "or one per worker (%d)", n, nproc);
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
    return mp_seterr(-errno, "sched_getaffinity failed");
  if (!(x->cpus = mp_list_new()))
    return MP_ENOMEM;
  for (int k = 0; k < nproc; k++) {
    int rc = 0;
    mp_obj *e = cpu_entry(v[n == 1 ? 0 : k], &allowed, &rc);
    if (!e)
      return rc ? rc : MP_ENOMEM;
    if (mp_list_append_take(x->cpus, e) != 0)
      return MP_ENOMEM;
  }
  return 0;
}

int
mp__poolx_new(mp__poolx **out, const mp_pool_opts *opts, int nproc,
              const char *method)
{
  *out = NULL;
  if (opts->worker_state && mp_obj_type(opts->worker_state) != MP_T_DICT)
    return mp_seterr(MP_EINVAL, "worker_state must be a dict");
  mp__poolx *x = calloc(1, sizeof *x);
  if (!x)
    return MP_ENOMEM;
  pthread_mutex_init(&x->mu, NULL);
  x->nproc = nproc;
  x->threading = strcmp(method, "threading") == 0;
  x->fork = strcmp(method, "fork") == 0;
  x->insights = opts->insights != 0;
  x->worker_exit = opts->worker_exit;
  x->state = mp_obj_ref(opts->worker_state);
  x->shared = mp_obj_ref(opts->shared);
  if (opts->executor) {
    x->exec = *opts->executor;
    x->has_exec = 1;
  }
  int rc = 0;
  if (opts->cpu_ids && (rc = parse_cpus(x, opts->cpu_ids, nproc)) != 0)
    goto fail;
  if (!(x->exit_results = mp_list_new())) {
    rc = MP_ENOMEM;
    goto fail;
  }
  size_t size = sizeof(mp__xshared) + (size_t)nproc * sizeof(mp__wstats);
  if ((rc = mp_array_new_struct(&x->arr, size, 8, 1, NULL,
                                &(mp_value_opts){.raw = 1})) != 0)
    goto fail;
  x->sh = mp_array_ptr(x->arr);
  *out = x;
  return 0;
fail:
  mp__poolx_free(x);
  return rc;
}

void
mp__poolx_free(mp__poolx *x)
{
  if (!x)
    return;
  while (x->bars) /* never: every bar ends with its result */
    mp__bar_end(x->bars, 0);
  mp__iter_detach_all(x);
  mp_array_free(x->arr);
  mp_obj_free(x->state);
  mp_obj_free(x->shared);
  mp_obj_free(x->cpus);
  mp_obj_free(x->exit_results);
  pthread_mutex_destroy(&x->mu);
  free(x);
}

int64_t *
mp__poolx_counters(mp__poolx *x)
{
  return x->sh->progress;
}

/* (block, insights, exit hook, state, shared mode, shared, cpus, executor,
 * threading) */
mp_obj *
mp__poolx_worker_args(mp__poolx *x, int k)
{
  __atomic_store_n(&x->sh->w[k].spawned, mp__now_ns(), __ATOMIC_RELAXED);
  /* fork and threads: the parent's own object (copy-on-write / shared);
   * spawn, forkserver: pickled with the worker's arguments */
  int by_address = (x->fork || x->threading) && x->shared;
  return MP_TUPLE(mp_array_obj(x->arr), mp_int_new(x->insights),
                  x->worker_exit ? MP_FUNC(x->worker_exit) : mp_none(),
                  x->state ? mp_obj_ref(x->state) : mp_none(),
                  mp_int_new(by_address),
                  by_address ? mp_uint_new((uint64_t)(uintptr_t)x->shared)
                  : x->shared ? mp_obj_ref(x->shared)
                              : mp_none(),
                  x->cpus ? mp_obj_ref(mp_seq_item(x->cpus, (size_t)k))
                          : mp_none(),
                  x->has_exec ? mp_uint_new((uint64_t)(uintptr_t)&x->exec)
                              : mp_none(),
                  mp_int_new(x->threading));
}

int
mp__poolx_message(mp__poolx *x, const mp_obj *msg)
{
  const char *tag;
  size_t tl;
  if (mp_obj_len(msg, &tl) != 0 || tl != 4 ||
      mp_str_get(mp_seq_item(msg, 2), &tag, &tl) != 0 || strcmp(tag, "exit"))
    return 0;
  pthread_mutex_lock(&x->mu);
  if (mp_list_append(x->exit_results, mp_seq_item(msg, 3)) != 0)
    mp_log_warning("pool: out of memory keeping an exit hook's result");
  pthread_mutex_unlock(&x->mu);
  return 1;
}

void
mp__poolx_drain(mp__poolx *x, mp_queue *rq)
{
  mp_obj *items[64];
  int n;
  while (x && rq && (n = mp_queue_get_many(rq, items, 64, 0)) > 0)
    for (int i = 0; i < n; i++) {
      uint64_t id;
      if (mp_obj_type(items[i]) == MP_T_TUPLE &&
          mp_uint_get(mp_seq_item(items[i], 0), &id) == 0 && id == 0)
        mp__poolx_message(x, items[i]);
      mp_obj_free(items[i]);
    }
}

int
mp_pool_exit_results(mp_pool *p, mp_obj **out)
{
  mp__errdetail_clear();
  if (!p || !out)
    return mp_seterr(MP_EINVAL, "pool or out is NULL");
  mp__poolx *x = mp__pool_x(p);
  pthread_mutex_lock(&x->mu);
  *out = mp_obj_copy(x->exit_results);
  pthread_mutex_unlock(&x->mu);
  return *out ? 0 : MP_ENOMEM;
}

/* ---- the worker's side --------------------------------------------------- */

static _Thread_local mp__wctx *cur;

mp__wctx *
mp__wx_cur(void)
{
  return cur;
}

/* The seqlock around a worker's writes of its stats (pool_internal.h).
 * No fences (TSan does not model them): every data store is a release, so
 * a reader whose acquire load sees one also sees the odd count before it;
 * the reader's loads are acquires (insights.c). */
static void
ws_begin(mp__wstats *ws)
{
  int64_t s = __atomic_load_n(&ws->seq, __ATOMIC_RELAXED);
  __atomic_store_n(&ws->seq, s + 1, __ATOMIC_RELAXED);
}

static void
ws_end(mp__wstats *ws)
{
  int64_t s = __atomic_load_n(&ws->seq, __ATOMIC_RELAXED);
  __atomic_store_n(&ws->seq, s + 1, __ATOMIC_RELEASE);
}

static void
ws_add(int64_t *field, int64_t v)
{
  __atomic_store_n(field, __atomic_load_n(field, __ATOMIC_RELAXED) + v,
                   __ATOMIC_RELEASE);
}

int
mp__wx_enter(mp__wctx *wx, const mp_obj *xa, int place)
{
  *wx = (mp__wctx){.place = place};
  mp_array *arr = mp_array_from_obj(mp_seq_item(xa, 0));
  int64_t insights, by_address;
  if (!arr || mp_int_get(mp_seq_item(xa, 1), &insights) ||
      mp_int_get(mp_seq_item(xa, 4), &by_address) ||
      mp_array_len(arr) * mp_array_elsize(arr) <
          sizeof(mp__xshared) + (size_t)(place + 1) * sizeof(mp__wstats))
    return MP_EINVAL;
  wx->sh = mp_array_ptr(arr);
  wx->ws = &wx->sh->w[place];
  wx->insights = insights != 0;
  wx->worker_exit = (int (*)(mp_obj **))mp_func_get(mp_seq_item(xa, 2));
  mp_obj *st = mp_seq_item(xa, 3);
  wx->state = mp_obj_type(st) == MP_T_DICT ? mp_obj_copy(st) : mp_dict_new();
  if (!wx->state)
    return MP_ENOMEM;
  mp_obj *sh = mp_seq_item(xa, 5);
  uint64_t addr;
  if (by_address && mp_uint_get(sh, &addr) == 0)
    wx->shared = (mp_obj *)(uintptr_t)addr;
  else if (!by_address && mp_obj_type(sh) != MP_T_NONE)
    wx->shared = sh;
  uint64_t exec;
  mp_obj *ex = mp_seq_item(xa, 7); /* None, or the executor's address */
  if (mp_obj_type(ex) == MP_T_INT && mp_uint_get(ex, &exec) == 0 && exec)
    wx->exec = (const mp_pool_executor *)(uintptr_t)exec;
  int64_t threading = 1;
  mp_int_get(mp_seq_item(xa, 8), &threading);
  wx->keep_heap = !threading; /* a process of its own: see mp__wctx */
  mp_obj *cpus = mp_seq_item(xa, 6);
  if (mp_obj_type(cpus) == MP_T_LIST) {
    cpu_set_t set;
    CPU_ZERO(&set);
    mp_obj *const *v;
    size_t n;
    mp_seq_items(cpus, &v, &n);
    for (size_t i = 0; i < n; i++) {
      int64_t c;
      if (mp_int_get(v[i], &c) == 0 && c >= 0 && c < CPU_SETSIZE)
        CPU_SET((int)c, &set);
    }
    /* pid 0: the calling thread (a ThreadPool pins its thread only) */
    if (sched_setaffinity(0, sizeof set, &set) != 0)
      mp_log_warning("pool: worker %d: sched_setaffinity failed: %s", place,
                     strerror(errno));
  }
  cur = wx;
  if (wx->insights) {
    int64_t now = mp__now_ns();
    int64_t spawned = __atomic_load_n(&wx->ws->spawned, __ATOMIC_RELAXED);
    ws_begin(wx->ws);
    ws_add(&wx->ws->starts, 1);
    if (spawned && now > spawned)
      ws_add(&wx->ws->startup_ns, now - spawned);
    ws_end(wx->ws);
  }
  return 0;
}

void
mp__wx_init_done(mp__wctx *wx, int64_t t0)
{
  if (!wx->insights)
    return;
  ws_begin(wx->ws);
  ws_add(&wx->ws->init_ns, mp__now_ns() - t0);
  ws_end(wx->ws);
}

void
mp__wx_wait_begin(mp__wctx *wx)
{
  if (wx->insights)
    wx->t_wait = mp__now_ns();
}

void
mp__wx_wait_end(mp__wctx *wx)
{
  if (!wx->insights)
    return;
  int64_t now = mp__now_ns();
  ws_begin(wx->ws);
  ws_add(&wx->ws->wait_ns, now - wx->t_wait);
  ws_end(wx->ws);
}

/* Keep the item among the worker's slowest (slowest first); its text is
 * repr(args), or `label` when args is NULL. */
static void
note_slow(mp__wstats *ws, int64_t ns, uint64_t job, int64_t index,
          const mp_obj *args, const char *label)
{
  int64_t n = __atomic_load_n(&ws->nslow, __ATOMIC_RELAXED);
  if (n == MP__INSIGHT_TOP &&
      ns <= __atomic_load_n(&ws->slow[n - 1].ns, __ATOMIC_RELAXED))
    return;
  int64_t at = n < MP__INSIGHT_TOP ? n : MP__INSIGHT_TOP - 1;
  while (at > 0 && __atomic_load_n(&ws->slow[at - 1].ns, __ATOMIC_RELAXED) < ns)
    at--;
  union {
    char c[MP__INSIGHT_REPR];
    int64_t w[MP__INSIGHT_REPR / 8];
  } text;
  memset(&text, 0, sizeof text);
  if (!args)
    snprintf(text.c, sizeof text.c, "%s", label ? label : "");
  else if (mp_obj_repr_buf(args, text.c, sizeof text.c) < 0)
    snprintf(text.c, sizeof text.c, "?");
  ws_begin(ws);
  int64_t last = n < MP__INSIGHT_TOP ? n : MP__INSIGHT_TOP - 1;
  for (int64_t i = last; i > at; i--) { /* shift down, word by word */
    mp__slowrec *d = &ws->slow[i], *s = &ws->slow[i - 1];
    __atomic_store_n(&d->ns, __atomic_load_n(&s->ns, __ATOMIC_RELAXED),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&d->job, __atomic_load_n(&s->job, __ATOMIC_RELAXED),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&d->index, __atomic_load_n(&s->index, __ATOMIC_RELAXED),
                     __ATOMIC_RELEASE);
    for (int w = 0; w < MP__INSIGHT_REPR / 8; w++)
      __atomic_store_n(&d->repr[w],
                       __atomic_load_n(&s->repr[w], __ATOMIC_RELAXED),
                       __ATOMIC_RELEASE);
  }
  mp__slowrec *r = &ws->slow[at];
  __atomic_store_n(&r->ns, ns, __ATOMIC_RELEASE);
  __atomic_store_n(&r->job, (int64_t)job, __ATOMIC_RELEASE);
  __atomic_store_n(&r->index, index, __ATOMIC_RELEASE);
  for (int w = 0; w < MP__INSIGHT_REPR / 8; w++)
    __atomic_store_n(&r->repr[w], text.w[w], __ATOMIC_RELEASE);
  if (n < MP__INSIGHT_TOP)
    __atomic_store_n(&ws->nslow, n + 1, __ATOMIC_RELEASE);
  ws_end(ws);
}

void
mp__wx_item(mp__wctx *wx, int pslot, int64_t t0, uint64_t job, int64_t index,
            const mp_obj *args)
{
  if (!wx->sh)
    return;
  mp__progress_add(wx->sh->progress, pslot, 1);
  if (!wx->insights)
    return;
  int64_t ns = mp__now_ns() - t0;
  ws_begin(wx->ws);
  ws_add(&wx->ws->tasks, 1);
  ws_end(wx->ws);
  note_slow(wx->ws, ns, job, index, args, NULL);
}

void
mp__wx_batch(mp__wctx *wx, int pslot, size_t n, int64_t t0, uint64_t job,
             int64_t index, const char *label)
{
  if (!wx->sh)
    return;
  mp__progress_add(wx->sh->progress, pslot, (int64_t)n);
  if (!wx->insights)
    return;
  int64_t ns = mp__now_ns() - t0;
  ws_begin(wx->ws);
  ws_add(&wx->ws->tasks, (int64_t)n);
  ws_end(wx->ws);
  note_slow(wx->ws, ns, job, index, NULL, label);
}

void
mp__wx_job_done(mp__wctx *wx, int64_t t0)
{
  if (!wx->insights)
    return;
  int64_t now = mp__now_ns();
  ws_begin(wx->ws);
  ws_add(&wx->ws->jobs, 1);
  ws_add(&wx->ws->work_ns, now - t0);
  ws_end(wx->ws);
}

void
mp__wx_exit(mp__wctx *wx, mp_queue *rq, uint64_t uid)
{
  if (!wx->worker_exit)
    return;
  int64_t t0 = mp__now_ns();
  mp_obj *res = NULL;
  mp__errdetail_clear();
  int rc = wx->worker_exit(&res);
  if (wx->insights) {
    ws_begin(wx->ws);
    ws_add(&wx->ws->exit_ns, mp__now_ns() - t0);
    ws_end(wx->ws);
  }
  if (rc != 0) {
    mp_log_warning("pool: %s: the exit hook failed: %s%s%s",
                   mp_process_name(mp_current_process()), mp_err_name(rc),
                   mp_errdetail()[0] ? ": " : "", mp_errdetail());
    mp_obj_free(res);
    return;
  }
  mp_obj *msg = MP_TUPLE(mp_uint_new(0), mp_uint_new(uid), mp_str_new("exit"),
                         res ? res : mp_none());
  if (!msg || (rc = mp_queue_put(rq, msg, MP_FOREVER)) != 0)
    mp_log_warning("pool: %s: cannot send the exit hook's result: %s",
                   mp_process_name(mp_current_process()),
                   mp_err_name(msg ? rc : MP_ENOMEM));
  mp_obj_free(msg);
}

void
mp__wx_leave(mp__wctx *wx)
{
  if (cur == wx)
    cur = NULL;
  mp_obj_free(wx->state);
  wx->state = NULL;
}

int
mp_pool_worker_id(void)
{
  return cur ? cur->place : -1;
}

mp_obj *
mp_pool_worker_state(void)
{
  return cur ? cur->state : NULL;
}

const mp_obj *
mp_pool_shared(void)
{
  return cur ? cur->shared : NULL;
}
