/* SPDX-License-Identifier: MIT */
/* The life of a pool worker: run the initializer, then take jobs from this
 * worker's own task queue, record each in the worker's slot before running
 * it, and put its results into the pool's result queue (see
 * pool_internal.h for why the slot makes a death exact). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"
#include "pool/pool_internal.h"

/* One call of the task; on failure *detail is "NAME: text" (malloc'd). */
static int
run_one(mp_task_fn fn, mp_obj *args, const char *name, mp_obj **value,
        char **detail)
{
  mp_obj *res = NULL;
  *value = NULL;
  *detail = NULL;
  int rc = fn(args, &res);
  if (rc == 0) {
    *value = res;
    return 0;
  }
  const char *text = mp_errdetail();
  char buf[MP__ERRDETAIL_CAP + 32];
  if (rc > 0) {
    snprintf(buf, sizeof buf, "task returned %d, not 0 or a negative code",
             rc);
    text = buf;
    rc = MP_EINVAL;
  } else if (!text[0]) {
    text = mp_strerror(rc);
  }
  mp_obj_free(res);
  size_t len = strlen(name) + strlen(text) + 3;
  *detail = malloc(len);
  if (*detail)
    snprintf(*detail, len, "%s: %s", name, text);
  return rc;
}

/* A job's values, kept packed (bytes of int64s) while every one is a plain
 * int, as a list from the first that is not. */
typedef struct values_out {
  mp_obj *list;  /* NULL while packed */
  mp_obj *bytes; /* the packed values, NULL once a list */
  uint8_t *d;
  size_t n;      /* values stored */
} values_out;

/* `in`: the job's packed items, or NULL.  When the job alone holds them,
 * the values are written over them (item i is read before value i is
 * written): no second buffer of the chunk's size to bring into the cache. */
static int
values_begin(values_out *vo, size_t n, mp_obj *in)
{
  *vo = (values_out){0};
  if (n >= MP__PACK_MIN && in && (vo->d = mp__bytes_writable(in)) != NULL) {
    vo->bytes = mp_obj_ref(in);
    return 0;
  }
  if (n >= MP__PACK_MIN &&
      (vo->bytes = mp__bytes_alloc(n * sizeof(int64_t), &vo->d)) != NULL)
    return 0;
  return (vo->list = mp_list_new()) != NULL ? 0 : MP_ENOMEM;
}

/* Store the next value (taken; NULL: the item failed, or None). */
static void
values_add(values_out *vo, mp_obj *value, int failed)
{
  int64_t x = 0;
  if (vo->bytes && (failed || mp__int_plain(value, &x))) {
    memcpy(vo->d + vo->n++ * sizeof x, &x, sizeof x); /* failed: unread */
    mp__release(value);
    return;
  }
  if (vo->bytes) { /* the first value that is not an int: a list from here */
    vo->list = mp_list_new();
    for (size_t i = 0; vo->list && i < vo->n; i++) {
      memcpy(&x, vo->d + i * sizeof x, sizeof x);
      mp_list_append_take(vo->list, mp_int_new(x));
    }
    mp_obj_free(vo->bytes);
    vo->bytes = NULL;
  }
  vo->n++;
  if (vo->list)
    mp_list_append_take(vo->list, value ? value : mp_none());
  else
    mp_obj_free(value);
}

/* The message (job id, worker uid, values, errors): values a list of count
 * items (None where one failed) or packed ints (values_out), errors None or
 * a list of (index, code, detail). */
static mp_obj *
run_job(uint64_t id, uint64_t uid, mp_task_fn fn, int kind, mp_obj *payload,
        const char *name, mp__wctx *wx, int pslot, int64_t base)
{
  mp_obj *errors = NULL;
  mp_obj *const *items = NULL;
  const uint8_t *ints = NULL; /* MP__TASK_MAP_I64 */
  size_t n = 1;
  if (kind == MP__TASK_MAP_I64) {
    const void *d;
    if (mp_bytes_get(payload, &d, &n) != 0)
      n = 0;
    ints = d;
    n /= sizeof(int64_t);
  } else if (kind != MP__TASK_APPLY && mp_seq_items(payload, &items, &n) != 0) {
    n = 0;
  }
  values_out vo;
  if (values_begin(&vo, kind == MP__TASK_APPLY ? 0 : n,
                   ints ? payload : NULL) != 0)
    return NULL;
  mp_obj *args = NULL;
  for (size_t i = 0; i < n; i++) {
    int rc = 0;
    if (ints) { /* (v,), rewritten in place when the last call kept none */
      int64_t v;
      memcpy(&v, ints + i * sizeof v, sizeof v);
      if (!(args = mp__args1_int(args, v)))
        rc = mp_seterr(MP_ENOMEM, "out of memory building the arguments");
    } else {
      rc = mp_pool_job_args(kind, payload, i, &args);
    }
    mp_obj *value = NULL;
    char *detail = NULL;
    if (rc) {
      char buf[256];
      snprintf(buf, sizeof buf, "%s: %s", name, mp_errdetail());
      detail = strdup(buf);
    } else {
      int64_t t0 = wx->insights ? mp__now_ns() : 0;
      wx->self_counted = 0;
      rc = run_one(fn, args, name, &value, &detail);
      if ((pslot || wx->insights) && !wx->self_counted)
        mp__wx_item(wx, pslot, t0, id, base + (int64_t)i, args);
      wx->self_counted = 0;
      if (!ints) {
        mp_obj_free(args);
        args = NULL;
      }
    }
    if (rc != 0) {
      if (!errors)
        errors = mp_list_new();
      if (errors)
        mp_list_append_take(errors,
                            mp_tuple_take(3, mp_int_new((int64_t)i),
                                          mp_int_new(rc),
                                          mp_str_new(detail ? detail : name)));
      free(detail);
    }
    values_add(&vo, value, rc != 0);
  }
  mp_obj_free(args);
  return mp_tuple_take(4, mp_uint_new(id), mp_uint_new(uid),
                       vo.bytes ? vo.bytes : vo.list,
                       errors ? errors : mp_none());
}

/* The same job reported as failed item by item (a result that could not be
 * sent: unpicklable, too big). */
static mp_obj *
failed_job(uint64_t id, uint64_t uid, size_t n, int code, const char *name,
           const char *why)
{
  mp_obj *values = mp_list_new(), *errors = mp_list_new();
  char buf[MP__ERRDETAIL_CAP + 128];
  snprintf(buf, sizeof buf, "%s: the result cannot be sent: %s", name, why);
  for (size_t i = 0; values && errors && i < n; i++) {
    mp_list_append_take(values, mp_none());
    mp_list_append_take(errors, mp_tuple_take(3, mp_int_new((int64_t)i),
                                              mp_int_new(code),
                                              mp_str_new(buf)));
  }
  return mp_tuple_take(4, mp_uint_new(id), mp_uint_new(uid), values, errors);
}

/* What a job needs from its worker besides the job. */
typedef struct job_ctx {
  mp_queue *rq;
  uint64_t uid;
  const char *name;
  int64_t *slot, *started;
  mp__wctx *wx;
} job_ctx;

/* Run one job and put its result: 0, or the worker's exit code (the slot
 * then says running: the job fails as died). */
static int
job_run_report(job_ctx *c, uint64_t id, mp_task_fn fn, int kind,
               mp_obj *payload, int pslot, int64_t base, int64_t tmo)
{
  mp__wctx *wx = c->wx;
  /* Recorded before the task runs: a death from here on fails it.  The
   * start time first, so that a reader who sees this id reads this
   * task's start or a later one (never a false timeout). */
  __atomic_store_n(c->started, mp__now_ns(), __ATOMIC_SEQ_CST);
  __atomic_store_n(c->slot, (int64_t)id, __ATOMIC_SEQ_CST);
  int64_t t_job = wx->insights ? mp__now_ns() : 0;
  mp_obj *msg = wx->exec && fn != mp__ma_task
                    ? mp__exec_job(wx, id, c->uid, fn, kind, payload, c->name,
                                   pslot, base, tmo)
                    : run_job(id, c->uid, fn, kind, payload, c->name, wx,
                              pslot, base);
  mp__wx_job_done(wx, t_job);
  int rc = msg ? mp_queue_put(c->rq, msg, MP_FOREVER) : MP_ENOMEM;
  if (rc != 0) {
    char why[MP__ERRDETAIL_CAP + 32];
    snprintf(why, sizeof why, "%s%s%s", mp_err_name(rc),
             mp_errdetail()[0] ? ": " : "", mp_errdetail());
    size_t n = 1;
    if (kind != MP__TASK_APPLY && mp_obj_len(payload, &n) == 0 &&
        kind == MP__TASK_MAP_I64)
      n /= sizeof(int64_t); /* the bytes' length */
    mp_obj_free(msg);
    msg = failed_job(id, c->uid, n, rc, c->name, why);
    rc = msg ? mp_queue_put(c->rq, msg, MP_FOREVER) : MP_ENOMEM;
  }
  mp_obj_free(msg);
  if (rc != 0)
    return MP__WEXIT_SEND;
  __atomic_store_n(c->slot, (int64_t)id | MP__SLOT_DONE, __ATOMIC_SEQ_CST);
  return 0;
}

int
mp__pool_worker_main(mp_obj *args)
{
  mp_queue *tq = mp_queue_from_obj(mp_seq_item(args, 0));
  mp_queue *rq = mp_queue_from_obj(mp_seq_item(args, 1));
  mp_array *slots = mp_array_from_obj(mp_seq_item(args, 2));
  int64_t idx, maxtasks, stop;
  uint64_t uid;
  if (!tq || !rq || !slots || mp_int_get(mp_seq_item(args, 3), &idx) ||
      mp_uint_get(mp_seq_item(args, 4), &uid) ||
      mp_int_get(mp_seq_item(args, 7), &maxtasks) ||
      mp_int_get(mp_seq_item(args, 8), &stop) || idx < 0 || stop <= idx + 1 ||
      (size_t)stop >= mp_array_len(slots))
    return MP__WEXIT_BADARGS;
  int64_t *slot = (int64_t *)mp_array_ptr(slots) + idx;
  int64_t *started = slot + 1; /* when the slot's task started (ns) */
  int64_t *stopflag = (int64_t *)mp_array_ptr(slots) + stop;
  mp_process *me = mp_current_process();
  const char *name = mp_process_name(me);
  const char *method = mp_context_method(mp_process_context(me));
  if (method && strcmp(method, "threading"))
    mp__slice_clock_forgo(); /* a process of our own: stay single-threaded */
  mp__wctx wx;
  if (mp__wx_enter(&wx, mp_seq_item(args, 9), (int)(idx / 2)) != 0) {
    mp__wx_leave(&wx);
    return MP__WEXIT_BADARGS;
  }
  int (*init)(mp_obj *) =
      (int (*)(mp_obj *))mp_func_get(mp_seq_item(args, 5));
  if (init) {
    int64_t t0 = mp__now_ns();
    int rc = init(mp_seq_item(args, 6));
    mp__wx_init_done(&wx, t0);
    if (rc != 0) {
      /* (0, uid, code, text): the pool reports it instead of restarting
       * workers that fail the same way forever (CPython's trap) */
      char buf[MP__ERRDETAIL_CAP + 160];
      snprintf(buf, sizeof buf, "%s: the initializer failed: %s%s%s", name,
               mp_err_name(rc), mp_errdetail()[0] ? ": " : "",
               mp_errdetail());
      mp_obj *msg = MP_TUPLE(mp_uint_new(0), mp_uint_new(uid),
                             mp_int_new(rc < 0 ? rc : MP_EINVAL),
                             mp_str_new(buf));
      if (msg)
        mp_queue_put(rq, msg, MP_FOREVER);
      mp_obj_free(msg);
      mp__wx_leave(&wx);
      return MP__WEXIT_INIT;
    }
  }

  job_ctx jc = {.rq = rq, .uid = uid, .name = name, .slot = slot,
                .started = started, .wx = &wx};
  for (int64_t done = 0; maxtasks == 0 || done < maxtasks; done++) {
    mp_obj *task = NULL;
    mp__wx_wait_begin(&wx);
    if (mp_queue_get(tq, &task, MP_FOREVER) != 0) {
      mp__wx_leave(&wx);
      return MP__WEXIT_QUEUE;
    }
    mp__wx_wait_end(&wx);
    uint64_t id;
    mp_task_fn fn;
    int64_t kind;
    if (mp_obj_type(task) != MP_T_TUPLE ||
        __atomic_load_n(stopflag, __ATOMIC_ACQUIRE)) {
      mp_obj_free(task); /* None: the pool is closing */
      if (!__atomic_load_n(stopflag, __ATOMIC_ACQUIRE))
        mp__wx_exit(&wx, rq, uid); /* closing, not terminated */
      mp__wx_leave(&wx);
      return 0;
    }
    if (mp_uint_get(mp_seq_item(task, 0), &id) ||
        !(fn = (mp_task_fn)mp_func_get(mp_seq_item(task, 1))) ||
        mp_int_get(mp_seq_item(task, 2), &kind)) {
      mp_obj_free(task);
      mp__wx_leave(&wx);
      return MP__WEXIT_BADARGS;
    }
    /* Fields 4 to 6 may be absent (0).  Looked at by count, not through
     * mp_seq_item: an index out of range formats an error detail, three
     * times a task. */
    mp_obj *const *tf;
    size_t ntf = 0;
    mp_seq_items(task, &tf, &ntf);
    int64_t pslot = 0, base = 0, tmo = 0;
    if (ntf > 4)
      mp_int_get(tf[4], &pslot);
    if (ntf > 5)
      mp_int_get(tf[5], &base);
    if (ntf > 6)
      mp_int_get(tf[6], &tmo);
    mp_obj *payload = mp_seq_item(task, 3);
    if (MP__UNLIKELY(wx.keep_heap)) {
      wx.keep_heap = 0;
      mp__plat_heap_keep(MP__WORKER_HEAP_KEEP);
    }
    int rc = 0;
    if (kind & MP__TASK_BATCH) { /* jobs id, id+1, ...: one payload each */
      mp_obj *const *pl;
      size_t np = 0;
      if (mp_obj_type(payload) != MP_T_LIST || mp_seq_items(payload, &pl, &np))
        rc = MP__WEXIT_BADARGS;
      kind &= ~(int64_t)MP__TASK_BATCH;
      for (size_t i = 0; rc == 0 && i < np; i++) {
        if (i > 0 && __atomic_load_n(stopflag, __ATOMIC_ACQUIRE)) {
          rc = -1; /* terminated: the rest fail in the parent */
          break;
        }
        rc = job_run_report(&jc, id + i, fn, (int)kind, pl[i], 0, 0, 0);
      }
      done += np ? (int64_t)np - 1 : 0;
    } else {
      rc = job_run_report(&jc, id, fn, (int)kind, payload, (int)pslot, base,
                          tmo);
    }
    mp_obj_free(task);
    if (rc != 0) {
      mp__wx_leave(&wx);
      return rc < 0 ? 0 : rc;
    }
  }
  mp__wx_exit(&wx, rq, uid); /* maxtasksperchild: a clean end */
  mp__wx_leave(&wx);
  return 0;
}
