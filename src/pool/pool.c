/* SPDX-License-Identifier: MIT */
/* Pool and ThreadPool: the workers, the dispatch of jobs to them, the
 * result-handling thread and the life of the pool (close, terminate, join).
 * The mechanism (one task queue per worker, slots) is described in
 * pool_internal.h. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/log.h"
#include "obj/obj_internal.h"
#include "pool/pool_internal.h"
#include "queue/queue_internal.h"

enum { POOL_RUN = 0, POOL_CLOSE = 1, POOL_TERMINATE = 2 };

typedef struct worker {
  mp_process *proc; /* NULL: no worker in this place */
  mp_queue *tq;     /* its task queue */
  uint64_t uid;     /* unique within the pool */
  mp__jobq jobs;    /* handed to it, not answered, in order */
  int64_t assigned; /* jobs ever handed to it (maxtasksperchild) */
  int stopping;     /* the closing sentinel was sent */
  int64_t last_result_ns, gap_ns; /* time between its results (average) */
} worker;

struct mp_pool {
  pthread_mutex_t mu;
  int state;
  mp_context *ctx;
  int threading;
  const char *prefix; /* "ForkPoolWorker" ... */
  int nproc;
  worker *w;
  mp_queue *rq;
  mp_array *slots; /* nproc slots + the stop flag */
  int64_t *slotp;
  int (*init)(mp_obj *);
  mp_obj *initargs;
  int maxtasks;
  mp__jobq backlog; /* not yet handed to a worker */
  mp__jobq orphans; /* finished by a dead worker, result on its way */
  size_t outstanding; /* jobs not answered: backlog + workers + orphans */
  uint64_t next_id, next_uid;
  pthread_t handler; /* a kept thread (core/threads.c): not joined */
  int handler_running;
  int handler_done;          /* handler_main returned (mu) */
  pthread_cond_t handler_cv; /* handler_done was set */
  pthread_mutex_t join_mu;
  int finished; /* workers gone, resources released */
  mp__finalizer *fin;
  int boot_deaths;       /* workers in a row that exited before a task */
  int init_error;        /* an initializer failed: every job fails so */
  char init_detail[MP__ERRDETAIL_CAP];
  mp__watch *watch; /* the death watcher (NULL: the liveness poll only) */
  int death_seen;   /* atomic: the watcher saw a worker end */
  mp__ma_cache *ma_cache; /* map_array's segments kept for the next call */
  mp__poolx *x;          /* progress, insights, worker hooks (hooks.c) */
  uint64_t batches;      /* batch task messages sent (for the tests) */
};

/* ---- job lists ---------------------------------------------------------- */

static void
jobq_push(mp__jobq *q, mp__job *j)
{
  j->next = NULL;
  if (q->tail)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  q->len++;
}

static mp__job *
jobq_pop(mp__jobq *q)
{
  mp__job *j = q->head;
  if (j) {
    q->head = j->next;
    if (!q->head)
      q->tail = NULL;
    q->len--;
    j->next = NULL;
  }
  return j;
}

/* Remove the job of id `id` (NULL when absent). */
static mp__job *
jobq_take(mp__jobq *q, uint64_t id)
{
  mp__job *prev = NULL;
  for (mp__job *j = q->head; j; prev = j, j = j->next) {
    if (j->id != id)
      continue;
    if (prev)
      prev->next = j->next;
    else
      q->head = j->next;
    if (q->tail == j)
      q->tail = prev;
    q->len--;
    j->next = NULL;
    return j;
  }
  return NULL;
}

/* Put the list `src` in front of `dst`. */
static void
jobq_prepend(mp__jobq *dst, mp__jobq *src)
{
  if (!src->head)
    return;
  src->tail->next = dst->head;
  if (!dst->tail)
    dst->tail = src->tail;
  dst->head = src->head;
  dst->len += src->len;
  *src = (mp__jobq){0};
}

static void
job_free(mp__job *j)
{
  mp_obj_free(j->payload);
  free(j);
}

/* ---- completing jobs ------------------------------------------------------
 * Results whose last item landed are collected under pool->mu and finished
 * (callbacks) after it is released. */
typedef struct finished_list {
  mp_result **r;
  size_t n, cap;
} finished_list;

static void
finished_add(finished_list *f, mp_result *r)
{
  if (f->n == f->cap) {
    size_t cap = f->cap ? 2 * f->cap : 16;
    mp_result **nr = realloc(f->r, cap * sizeof *nr);
    if (!nr) { /* finish it now, under the lock: better than losing it */
      mp__result_finish(r, 0);
      return;
    }
    f->r = nr;
    f->cap = cap;
  }
  f->r[f->n++] = r;
}

static void
finished_run(finished_list *f, int quiet)
{
  for (size_t i = 0; i < f->n; i++)
    mp__result_finish(f->r[i], quiet);
  free(f->r);
  *f = (finished_list){0};
}

/* Every item of the job fails with `code` (pool->mu held). */
static void
job_fail(mp_pool *p, mp__job *j, int code, const char *detail,
         finished_list *f)
{
  for (size_t i = 0; i < j->count; i++)
    if (mp__result_store(j->r, j->base + i, code, NULL, detail))
      finished_add(f, j->r);
  p->outstanding--;
  job_free(j);
}

/* The result whose lock a run of messages holds: consecutive results of
 * one call (the usual case) are stored under one lock and one wake-up of
 * its waiters, not one per message -- a caller polling an imap took the
 * lock at each wake-up, and the handler then queued for it at the next
 * message (a futex sleep and wake per item). */
typedef struct held_result {
  mp_result *r;
} held_result;

static void
hold_result(held_result *h, mp_result *r)
{
  if (h->r == r)
    return;
  if (h->r)
    mp__result_unlock(h->r);
  mp__result_lock(r);
  h->r = r;
}

static void
release_result(held_result *h)
{
  if (h->r)
    mp__result_unlock(h->r);
  h->r = NULL;
}

/* How fast worker w answers: the average gap between its results. */
static void
note_result(worker *w)
{
  int64_t now = mp__now_ns();
  if (w->last_result_ns) {
    int64_t gap = now - w->last_result_ns;
    w->gap_ns = w->gap_ns ? (7 * w->gap_ns + gap) / 8 : gap;
  }
  w->last_result_ns = now;
}

static size_t
prefetch_of(const worker *w)
{
  if (!w->gap_ns)
    return MP__POOL_PREFETCH;
  int64_t k = MP__POOL_AHEAD_NS / w->gap_ns;
  return k < MP__POOL_PREFETCH       ? MP__POOL_PREFETCH
         : k > MP__POOL_PREFETCH_MAX ? MP__POOL_PREFETCH_MAX
                                     : (size_t)k;
}

/* A result message (id, uid, values, errors) from a worker (its result
 * locked into *h; the caller releases it before anything else locks a
 * result). */
static void
handle_message(mp_pool *p, mp_obj *msg, held_result *h, finished_list *f)
{
  uint64_t id, uid;
  mp_obj *values = mp_seq_item(msg, 2), *errors = mp_seq_item(msg, 3);
  if (mp_obj_type(msg) != MP_T_TUPLE || mp_uint_get(mp_seq_item(msg, 0), &id) ||
      mp_uint_get(mp_seq_item(msg, 1), &uid))
    return; /* a wake-up (None) */
  if (id == 0 && mp__poolx_message(p->x, msg))
    return; /* (0, uid, "exit", value): an exit hook's result */
  if (id == 0) { /* (0, uid, code, text): an initializer failed */
    int64_t code;
    const char *text;
    size_t tl;
    if (!p->init_error && !mp_int_get(values, &code) && code < 0 &&
        code >= INT32_MIN && !mp_str_get(errors, &text, &tl)) {
      p->init_error = (int)code;
      snprintf(p->init_detail, sizeof p->init_detail, "%s", text);
      mp_log_warning("pool: %s", text);
    }
    return;
  }
  /* values: a list, or (all plain ints) packed */
  const uint8_t *packed = NULL;
  size_t packed_len = 0;
  if (mp_obj_type(values) == MP_T_BYTES) {
    const void *d;
    if (mp_bytes_get(values, &d, &packed_len) != 0)
      return;
    packed = d;
  } else if (mp_obj_type(values) != MP_T_LIST) {
    return;
  }
  mp__job *j = NULL;
  for (int k = 0; k < p->nproc && !j; k++)
    if (p->w[k].proc && p->w[k].uid == uid) {
      j = jobq_take(&p->w[k].jobs, id);
      note_result(&p->w[k]);
    }
  if (!j)
    j = jobq_take(&p->orphans, id);
  if (!j)
    return; /* already failed (terminate) */
  /* The values move from the message (ours alone: just decoded) into the
   * result: no reference taken here and dropped with the message. */
  mp_obj **vals = NULL;
  size_t nv = 0;
  if (packed) {
    nv = packed_len / sizeof(int64_t);
  } else if (mp__list_take_items(values, &vals, &nv) != 0) {
    mp_obj *const *shared_vals;
    mp_seq_items(values, &shared_vals, &nv);
    vals = mp__big_alloc((nv ? nv : 1) * sizeof *vals, 0);
    if (!vals)
      nv = 0;
    for (size_t i = 0; i < nv; i++)
      vals[i] = mp_obj_ref(shared_vals[i]);
  }
  mp_obj *const *errs = NULL;
  size_t ne = 0;
  if (mp_obj_type(errors) == MP_T_LIST)
    mp_seq_items(errors, &errs, &ne);
  size_t e = 0;
  int last = 0;
  hold_result(h, j->r);
  int bulk = packed && ne == 0 && nv == j->count; /* ints that all ran */
  if (bulk)
    last = mp__result_store_ints_locked(j->r, j->base, packed, nv);
  for (size_t i = 0; !bulk && i < j->count; i++) {
    int code = 0;
    const char *detail = NULL;
    int64_t ei = -1, ec = 0;
    size_t dl;
    /* errors are in index order */
    while (e < ne && (mp_int_get(mp_seq_item(errs[e], 0), &ei) || ei < (int64_t)i))
      e++;
    if (e < ne && ei == (int64_t)i && !mp_int_get(mp_seq_item(errs[e], 1), &ec) &&
        ec < 0 && ec >= INT32_MIN) {
      code = (int)ec;
      if (mp_str_get(mp_seq_item(errs[e], 2), &detail, &dl))
        detail = "";
    }
    mp_obj *v = NULL;
    if (packed && i < nv) {
      int64_t x;
      memcpy(&x, packed + i * sizeof x, sizeof x);
      if (code == 0 && !(v = mp__int_fast(x))) {
        code = MP_ENOMEM;
        detail = "out of memory storing a result";
      }
    } else if (i < nv) {
      v = vals[i];
      vals[i] = NULL;
      if (code != 0 || mp_obj_type(v) == MP_T_NONE) {
        mp_obj_free(v);
        v = NULL;
      }
    }
    if (code == 0 && i >= nv) {
      code = MP_EMALFORMED;
      detail = "a worker's result message has too few values";
    }
    last |= mp__result_store_locked(j->r, j->base + i, code, v, detail);
  }
  if (last)
    finished_add(f, j->r);
  for (size_t i = j->count; vals && i < nv; i++)
    mp_obj_free(vals[i]);
  mp__big_free(vals);
  p->outstanding--;
  p->boot_deaths = 0;
  job_free(j);
}

/* ---- workers ---------------------------------------------------------------- */

static void
watch_worker(mp_pool *p, int k)
{
  if (p->watch &&
      mp__watch_set(p->watch, k, mp_process_sentinel(p->w[k].proc)) != 0)
    mp_log_debug("pool: worker %d is not watched (%s): its death is seen "
                 "by the liveness poll", k, mp_errdetail());
}

static int
start_worker(mp_pool *p, int k)
{
  worker *w = &p->w[k];
  int rc = w->tq ? 0 : mp_queue_new(&w->tq, NULL);
  if (rc)
    return rc;
  w->uid = ++p->next_uid;
  w->assigned = 0;
  w->stopping = 0;
  w->last_result_ns = w->gap_ns = 0;
  __atomic_store_n(&p->slotp[2 * k], 0, __ATOMIC_SEQ_CST);
  mp_obj *args = MP_TUPLE(
      mp_queue_obj(w->tq), mp_queue_obj(p->rq), mp_array_obj(p->slots),
      mp_int_new(2 * k), mp_uint_new(w->uid),
      p->init ? MP_FUNC(p->init) : mp_none(),
      p->initargs ? mp_obj_ref(p->initargs) : mp_tuple_take(0),
      mp_int_new(p->maxtasks), mp_int_new(2 * p->nproc),
      mp__poolx_worker_args(p->x, k));
  if (!args) {
    rc = MP_ENOMEM;
    goto fail;
  }
  rc = mp_process_new(&w->proc, p->ctx,
                      &(mp_process_opts){.target = mp__pool_worker_main,
                                         .args = args,
                                         .daemon = MP_DAEMON_YES});
  mp_obj_free(args);
  if (rc)
    goto fail;
  /* Python's name: the process's own with Process -> <Kind>PoolWorker */
  const char *pn = mp_process_name(w->proc);
  const char *num = strchr(pn, '-');
  char name[128];
  snprintf(name, sizeof name, "%s%s", p->prefix, num ? num : "");
  if ((rc = mp_process_set_name(w->proc, name)) != 0 ||
      (rc = mp_process_start(w->proc)) != 0) {
    mp_process_free(w->proc);
    w->proc = NULL;
    goto fail;
  }
  watch_worker(p, k);
  return 0;
fail:
  mp_queue_free(w->tq);
  w->tq = NULL;
  return rc;
}

/* Text of how worker k ended: "NAME (pid N) killed by signal 9 (Killed)". */
static void
describe_death(worker *w, char *buf, size_t cap)
{
  int code = 0;
  int pid = mp_process_pid(w->proc);
  int rc = mp_process_exitcode(w->proc, &code);
  if (rc != 0)
    snprintf(buf, cap, "%s (pid %d) died (exit status lost: %s)",
             mp_process_name(w->proc), pid, mp_err_name(rc));
  else if (code < 0)
    snprintf(buf, cap, "%s (pid %d) was killed by signal %d (%s)",
             mp_process_name(w->proc), pid, -code, strsignal(-code));
  else
    snprintf(buf, cap, "%s (pid %d) exited with code %d",
             mp_process_name(w->proc), pid, code);
}

/* Worker k has ended: sort its jobs (pool_internal.h) and free it. */
static void
bury_worker(mp_pool *p, int k, finished_list *f)
{
  worker *w = &p->w[k];
  mp_process_join(w->proc, MP_FOREVER); /* it has ended: returns at once */
  int64_t slot = __atomic_load_n(&p->slotp[2 * k], __ATOMIC_SEQ_CST);
  uint64_t running = (uint64_t)(slot & ~MP__SLOT_DONE);
  int done = (slot & MP__SLOT_DONE) != 0;
  int found = 0;
  for (mp__job *j = w->jobs.head; j; j = j->next)
    found |= slot != 0 && j->id == running;
  mp__jobq later = {0};
  char why[300];
  describe_death(w, why, sizeof why);
  mp_log_debug("pool: %s", why);
  /* A worker that never took a task and ended as one that cannot start
   * (another build of the program, instructions unreadable, bad args)
   * would be restarted forever: the pool fails its work instead, as for
   * a failing initializer. */
  int ecode;
  if (slot == 0 && !p->init_error &&
      mp_process_exitcode(w->proc, &ecode) == 0 &&
      (ecode == MP_EXIT_BADREF || ecode == MP_EXIT_BOOTFAIL ||
       ecode == MP__WEXIT_BADARGS)) {
    p->init_error = ecode == MP_EXIT_BADREF ? MP_EBADREF : MP_EWORKERDIED;
    snprintf(p->init_detail, sizeof p->init_detail,
             "a worker could not start: %s", why);
    mp_log_warning("pool: %s", p->init_detail);
  }
  /* Likewise workers that keep exiting on their own (a code, not a
   * signal) before their first task, with no task answered meanwhile: a
   * crash at start-up, which a restart repeats. */
  else if (slot == 0 && !p->init_error &&
           mp_process_exitcode(w->proc, &ecode) == 0 && ecode > 0 &&
           ecode != MP__WEXIT_INIT && ++p->boot_deaths >= 3) {
    p->init_error = MP_EWORKERDIED;
    snprintf(p->init_detail, sizeof p->init_detail,
             "workers keep dying before their first task: %s", why);
    mp_log_warning("pool: %s", p->init_detail);
  }
  if (found) {
    mp__job *j;
    while ((j = jobq_pop(&w->jobs)) != NULL) {
      if (j->id != running) {
        jobq_push(&p->orphans, j); /* finished before: result on its way */
      } else {
        if (done) {
          jobq_push(&p->orphans, j);
        } else {
          char detail[400];
          if (j->timed_out) {
            snprintf(detail, sizeof detail,
                     "the task ran longer than its task_timeout of %.3f s: "
                     "%s", (double)j->timeout_ns / 1e9, why);
            job_fail(p, j, MP_ETIMEDOUT, detail, f);
          } else {
            snprintf(detail, sizeof detail, "%s while running the task",
                     why);
            mp_log_debug("pool: %s", detail);
            job_fail(p, j, MP_EWORKERDIED, detail, f);
          }
        }
        break;
      }
    }
  }
  /* what is left never started: to the front of the backlog, in order */
  jobq_prepend(&later, &w->jobs);
  jobq_prepend(&p->backlog, &later);
  mp__watch_clear(p->watch, k);
  mp_process_free(w->proc);
  w->proc = NULL;
  mp__queue_free_private(w->tq); /* its only other holder ended */
  w->tq = NULL;
}

/* Whether the pool needs workers: running, or closing with work left. */
static int
wants_workers(mp_pool *p)
{
  return p->state == POOL_RUN || (p->state == POOL_CLOSE && p->outstanding);
}

/* Find dead workers, sort their jobs, replace them (pool->mu held). */
static void
check_workers(mp_pool *p, finished_list *f)
{
  int drained = 0, live = 0, start_rc = 0;
  char start_detail[MP__ERRDETAIL_CAP + 64] = "";
  int64_t now = mp__now_ns();
  for (int k = 0; k < p->nproc; k++) {
    worker *w = &p->w[k];
    /* a task past its task_timeout: kill its worker (bury then fails it
     * with MP_ETIMEDOUT) */
    int64_t slot = __atomic_load_n(&p->slotp[2 * k], __ATOMIC_SEQ_CST);
    if (w->proc && !p->threading && slot && !(slot & MP__SLOT_DONE))
      for (mp__job *j = w->jobs.head; j; j = j->next) {
        if (j->id != (uint64_t)slot)
          continue;
        int64_t t0 = __atomic_load_n(&p->slotp[2 * k + 1], __ATOMIC_SEQ_CST);
        if (j->timeout_ns && !j->timed_out && now - t0 > j->timeout_ns) {
          j->timed_out = 1;
          mp_process_kill(w->proc);
          mp_process_join(w->proc, 1.0);
        }
        break;
      }
    if (w->proc && mp_process_is_alive(w->proc) == 0) {
      /* results it sent before it died are answers, not deaths: take
       * what the result queue holds first */
      mp_obj *items[64];
      int n;
      held_result h = {0};
      while (!drained && (n = mp_queue_get_many(p->rq, items, 64, 0)) > 0)
        for (int i = 0; i < n; i++) {
          handle_message(p, items[i], &h, f);
          mp_obj_free(items[i]);
        }
      release_result(&h);
      drained = 1;
      bury_worker(p, k, f);
    }
  }
  /* What the dead workers' tasks became is told before their replacements
   * start (a start costs a fork or an exec): finish those results now,
   * outside the lock as always (only this thread buries and starts
   * workers, so the worker table is as left). */
  if (f->n) {
    pthread_mutex_unlock(&p->mu);
    finished_run(f, 0);
    pthread_mutex_lock(&p->mu);
  }
  for (int k = 0; k < p->nproc; k++) {
    worker *w = &p->w[k];
    if (!w->proc && wants_workers(p) && !p->init_error) {
      int rc = start_worker(p, k);
      if (rc) {
        start_rc = rc;
        snprintf(start_detail, sizeof start_detail,
                 "cannot start a worker: %s%s%s", mp_err_name(rc),
                 mp_errdetail()[0] ? ": " : "", mp_errdetail());
        mp_log_warning("pool: %s", start_detail);
      }
    }
    live += w->proc != NULL;
  }
  /* No worker at all and none can be started: what waits would wait
   * forever, so it fails with the reason (a later tick tries again for
   * later work). */
  if (!live && start_rc) {
    mp__job *j;
    while ((j = jobq_pop(&p->backlog)) != NULL)
      job_fail(p, j, start_rc, start_detail, f);
  }
}

/* Whether job b may follow job a in one batch: the same call's next job,
 * in the plain task form (no extras), and not map_array's task (each of
 * those must reach a worker of its own). */
static int
batchable(const mp_pool *p, const mp__job *a, const mp__job *b)
{
  return b && b->id == a->id + 1 && b->fn == a->fn && b->kind == a->kind &&
         b->r == a->r && !b->pslot && !p->x->has_exec && !p->x->insights &&
         b->fn != mp__ma_task;
}

/* Hand worker w up to `room` (> 1) jobs from the backlog's head in one
 * batch (pool->mu held): 1 if it did (at least two jobs), 0 if the head
 * does not batch, -1 if the batch could not be sent -- its jobs are still
 * at the backlog's head then, for the one-by-one path to send or fail one
 * at a time. */
static int
dispatch_batch(mp_pool *p, worker *w, size_t room)
{
  mp__job *first = p->backlog.head;
  if (!first || first->pslot || !batchable(p, first, first->next) ||
      first->count + first->next->count > MP__POOL_BATCH_MAX)
    return 0;
  mp_obj *payloads = mp_list_new();
  size_t n = 0, items = 0;
  for (mp__job *j = first, *prev = NULL; payloads && j && n < room;
       prev = j, j = j->next) {
    if ((prev && !batchable(p, prev, j)) ||
        items + j->count > MP__POOL_BATCH_MAX ||
        mp_list_append(payloads, j->payload) != 0)
      break;
    items += j->count;
    n++;
  }
  int rc = MP_ENOMEM;
  if (n > 1) {
    mp_obj *task = MP_TUPLE(mp_uint_new(first->id), MP_FUNC(first->fn),
                            mp_int_new(first->kind | MP__TASK_BATCH),
                            mp_obj_ref(payloads));
    rc = task ? mp_queue_put(w->tq, task, 0) : MP_ENOMEM;
    mp_obj_free(task);
  }
  mp_obj_free(payloads);
  if (rc != 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    jobq_push(&w->jobs, jobq_pop(&p->backlog));
    w->assigned++;
  }
  p->batches++;
  return 1;
}

/* Hand backlog jobs to workers with room (pool->mu held). */
static void
dispatch(mp_pool *p, finished_list *f)
{
  int no_batch = 0; /* a batch failed to go: the rest one by one */
  if (p->init_error) {
    mp__job *j;
    while ((j = jobq_pop(&p->backlog)) != NULL)
      job_fail(p, j, p->init_error, p->init_detail, f);
    return;
  }
  while (p->backlog.head) {
    int best = -1;
    for (int k = 0; k < p->nproc; k++) {
      worker *w = &p->w[k];
      if (!w->proc || w->stopping || w->jobs.len >= prefetch_of(w) ||
          (p->maxtasks && w->assigned >= p->maxtasks))
        continue;
      if (best < 0 || w->jobs.len < p->w[best].jobs.len)
        best = k;
    }
    if (best < 0)
      return;
    worker *w = &p->w[best];
    size_t room = prefetch_of(w) - w->jobs.len;
    if (p->maxtasks && (int64_t)room > p->maxtasks - w->assigned)
      room = (size_t)(p->maxtasks - w->assigned);
    if (!no_batch && room > 1) {
      int b = dispatch_batch(p, w, room);
      if (b > 0)
        continue;
      no_batch = b < 0;
    }
    mp__job *j = jobq_pop(&p->backlog);
    /* the extras (progress slot, first position) only when used */
    mp_obj *task =
        p->x->has_exec /* the task_timeout too: the executor applies it */
            ? MP_TUPLE(mp_uint_new(j->id), MP_FUNC(j->fn),
                       mp_int_new(j->kind), mp_obj_ref(j->payload),
                       mp_int_new(j->pslot), mp_uint_new(j->base),
                       mp_int_new(j->timeout_ns))
        : j->pslot || p->x->insights
            ? MP_TUPLE(mp_uint_new(j->id), MP_FUNC(j->fn),
                       mp_int_new(j->kind), mp_obj_ref(j->payload),
                       mp_int_new(j->pslot), mp_uint_new(j->base))
            : MP_TUPLE(mp_uint_new(j->id), MP_FUNC(j->fn),
                       mp_int_new(j->kind), mp_obj_ref(j->payload));
    int rc = task ? mp_queue_put(w->tq, task, 0) : MP_ENOMEM;
    mp_obj_free(task);
    if (rc) { /* the arguments cannot be sent: that job's error */
      char detail[MP__ERRDETAIL_CAP + 64];
      snprintf(detail, sizeof detail, "cannot send the task: %s%s%s",
               mp_err_name(rc), mp_errdetail()[0] ? ": " : "",
               mp_errdetail());
      job_fail(p, j, rc, detail, f);
      continue;
    }
    jobq_push(&w->jobs, j);
    w->assigned++;
  }
}

static void
wake_handler(mp_pool *p)
{
  mp_obj *none = mp_none();
  mp_queue_put(p->rq, none, MP_FOREVER);
}

/* A closed pool with no work left (p->mu held): each worker's sentinel,
 * once. */
static void
send_sentinels(mp_pool *p)
{
  for (int k = 0; k < p->nproc; k++)
    if (p->w[k].proc && !p->w[k].stopping) {
      p->w[k].stopping = 1;
      mp_queue_put(p->w[k].tq, mp_none(), MP_FOREVER);
    }
}

static void handler_main(void *arg);

/* Start the result-handling thread if it is not running (p->mu held, the
 * pool running).  It starts with the first submission, or when a worker
 * ends before one: a pool made, closed and joined with no work never wakes
 * a thread beside its own.  Its start there ran on the other CPU while the
 * workers were forked, and each fork and copy-on-write fault then sent it
 * a TLB shoot-down (docs/performance.md). */
static int
ensure_handler(mp_pool *p)
{
  if (p->handler_running)
    return 0;
  int rc = mp__thread_run(handler_main, p, &p->handler);
  if (rc == 0)
    p->handler_running = 1;
  return rc;
}

/* The watcher saw a worker end (on the watcher's thread): the handler
 * replaces it, started for it if need be. */
static void
on_worker_end(void *arg)
{
  mp_pool *p = arg;
  __atomic_store_n(&p->death_seen, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_lock(&p->mu);
  if (p->state == POOL_RUN && ensure_handler(p) != 0)
    mp_log_debug("pool: no result handler to replace an ended worker (%s): "
                 "the next submission starts one", mp_errdetail());
  pthread_mutex_unlock(&p->mu);
  wake_handler(p);
}

static void
handler_main(void *arg)
{
  mp_pool *p = arg;
  mp_obj *items[64];
  int64_t last_check = 0;
  for (;;) {
    int n = mp_queue_get_many(p->rq, items, 64, MP__POOL_TICK);
    finished_list f = {0};
    pthread_mutex_lock(&p->mu);
    held_result h = {0};
    for (int i = 0; i < n; i++) {
      handle_message(p, items[i], &h, &f);
      mp_obj_free(items[i]);
    }
    release_result(&h);
    int64_t now = mp__now_ns();
    int death = __atomic_exchange_n(&p->death_seen, 0, __ATOMIC_SEQ_CST);
    if (death || n <= 0 || now - last_check >= (int64_t)(MP__POOL_TICK * 1e9)) {
      check_workers(p, &f);
      last_check = now;
    }
    dispatch(p, &f);
    int quit = p->state == POOL_TERMINATE;
    int closing = p->state == POOL_CLOSE && p->outstanding == 0;
    if (closing)
      send_sentinels(p);
    pthread_mutex_unlock(&p->mu);
    finished_run(&f, 0);
    mp__poolx_tick(p->x);
    if (quit)
      break;
    if (closing) {
      /* Idle workers exit on their sentinel; a worker that died meanwhile
       * has ended too.  Nothing else can happen to the pool now (closed,
       * no work): the joining thread waits for the workers itself
       * (shutdown_pool), woken by their ends directly rather than through
       * this thread's.  The watcher is not needed any more either. */
      mp__watch_stop(p->watch);
      break;
    }
  }
  /* the last touch of the pool: finish() may free it right after */
  pthread_mutex_lock(&p->mu);
  p->handler_done = 1;
  pthread_cond_broadcast(&p->handler_cv);
  pthread_mutex_unlock(&p->mu);
}

/* ---- the pool -------------------------------------------------------------- */

static void
pool_at_exit(void *arg)
{
  mp_pool *p = arg;
  p->fin = NULL; /* the registry drops it */
  mp_pool_terminate(p);
}

static int shutdown_pool(mp_pool *p, int terminate);

int
mp_pool_new(mp_pool **out, const mp_pool_opts *opts)
{
  mp__errdetail_clear();
  static const mp_pool_opts defaults;
  if (!opts)
    opts = &defaults;
  if (!out)
    return mp_seterr(MP_EINVAL, "out is NULL");
  *out = NULL;
  if (opts->processes < 0 || opts->maxtasksperchild < 0)
    return mp_seterr(MP_EINVAL, "processes and maxtasksperchild must be >= 0");
  if (opts->initargs && mp_obj_type(opts->initargs) != MP_T_TUPLE)
    return mp_seterr(MP_EINVAL, "initargs must be a tuple");
  int nproc = opts->processes;
  if (nproc == 0) {
    nproc = mp_cpu_count_usable();
    if (nproc <= 0)
      nproc = 1;
  }
  /* The pool's concrete context: the default one's method, fixed now. */
  mp_context *ctx = opts->context;
  /* an executor's workers are threads (mp_pool_executor) */
  const char *method =
      opts->executor ? "threading" : mp_context_method(ctx);
  int rc = mp_get_context(method, &ctx);
  if (rc)
    return rc;
  mp_pool *p = calloc(1, sizeof *p);
  if (!p)
    return MP_ENOMEM;
  p->w = calloc((size_t)nproc, sizeof *p->w);
  if (!p->w) {
    free(p);
    return MP_ENOMEM;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->join_mu, NULL);
  pthread_cond_init(&p->handler_cv, NULL);
  p->ctx = ctx;
  p->nproc = nproc;
  p->threading = strcmp(method, "threading") == 0;
  p->prefix = !strcmp(method, "fork")         ? "ForkPoolWorker"
              : !strcmp(method, "spawn")      ? "SpawnPoolWorker"
              : !strcmp(method, "forkserver") ? "ForkServerPoolWorker"
                                              : "ThreadPoolWorker";
  p->init = opts->initializer;
  p->initargs = mp_obj_ref(opts->initargs);
  p->maxtasks = opts->maxtasksperchild;
  if ((rc = mp__poolx_new(&p->x, opts, nproc, method)) != 0 ||
      (rc = mp_queue_new(&p->rq, NULL)) != 0 ||
      (rc = mp_array_new(&p->slots, 'q', 2 * (size_t)nproc + 1, NULL,
                         &(mp_value_opts){.raw = 1})) != 0)
    goto fail;
  p->slotp = mp_array_ptr(p->slots);
  if ((rc = mp__watch_new(&p->watch, nproc, on_worker_end, p)) != 0)
    goto fail;
  /* Every worker's task queue before the first fork: a queue kept for
   * reuse (queue.c) that a fork child inherits is the child's to unmap and
   * close, a sixth of a fork worker's start. */
  for (int k = 0; k < nproc; k++)
    if ((rc = mp_queue_new(&p->w[k].tq, NULL)) != 0)
      goto fail;
  for (int k = 0; k < nproc; k++)
    if ((rc = start_worker(p, k)) != 0)
      goto fail;
  if ((rc = mp__watch_start(p->watch)) != 0)
    goto fail;
  p->fin = mp__finalizer_add(MP__FINALIZE_POOL, pool_at_exit, p);
  *out = p;
  return 0;
fail:;
  char detail[MP__ERRDETAIL_CAP];
  snprintf(detail, sizeof detail, "%s", mp_errdetail());
  p->state = POOL_TERMINATE;
  shutdown_pool(p, 1);
  mp_pool_free(p);
  return detail[0] ? mp_seterr(rc, "%s", detail) : rc;
}

/* Stop the workers (terminate: at once; else they have exited), fail what
 * is left with MP_ECLOSED, release the queues.  The handler thread is gone
 * (or never ran); join_mu held or the pool not yet published. */
static int
shutdown_pool(mp_pool *p, int terminate)
{
  mp__watch_free(p->watch); /* it wakes the handler through p->rq */
  p->watch = NULL;
  if (terminate && p->slotp) {
    __atomic_store_n(&p->slotp[2 * p->nproc], 1, __ATOMIC_SEQ_CST);
    if (p->x->has_exec && p->x->exec.terminate) /* jobs in flight give up */
      p->x->exec.terminate(p->x->exec.ctx);
    for (int k = 0; k < p->nproc; k++) {
      worker *w = &p->w[k];
      if (!w->proc)
        continue;
      if (p->threading)
        mp_queue_put(w->tq, mp_none(), MP_FOREVER); /* wake it to stop */
      else
        mp_process_terminate(w->proc);
    }
    for (int k = 0; k < p->nproc; k++) {
      worker *w = &p->w[k];
      if (w->proc && !p->threading &&
          mp_process_join(w->proc, 1.0) == MP_ETIMEDOUT)
        mp_process_kill(w->proc);
    }
  }
  finished_list f = {0};
  pthread_mutex_lock(&p->mu);
  for (int k = 0; k < p->nproc; k++) {
    worker *w = &p->w[k];
    if (w->proc) {
      mp_process_join(w->proc, MP_FOREVER);
      mp_process_free(w->proc);
      w->proc = NULL;
    }
    jobq_prepend(&p->backlog, &w->jobs);
    mp__queue_free_private(w->tq); /* its worker ended */
    w->tq = NULL;
  }
  jobq_prepend(&p->backlog, &p->orphans);
  mp__job *j;
  while ((j = jobq_pop(&p->backlog)) != NULL)
    job_fail(p, j, MP_ECLOSED, "the pool was terminated", &f);
  mp_queue *rq = p->rq;
  p->rq = NULL;
  pthread_mutex_unlock(&p->mu);
  finished_run(&f, 1);
  mp__poolx_drain(p->x, rq); /* the exit hooks' results */
  mp__queue_free_private(rq); /* every worker ended */
  mp_array_free(p->slots);
  p->slots = NULL;
  p->slotp = NULL;
  p->finished = 1;
  return 0;
}

/* Wait for the handler and shut down (join_mu held). */
static int
finish(mp_pool *p, int terminate)
{
  pthread_mutex_lock(&p->mu);
  if (terminate)
    p->state = POOL_TERMINATE; /* no handler starts from here on */
  int running = p->handler_running; /* (a closed pool starts none either) */
  pthread_mutex_unlock(&p->mu);
  if (running) {
    if (terminate)
      wake_handler(p);
    pthread_mutex_lock(&p->mu);
    while (!p->handler_done)
      pthread_cond_wait(&p->handler_cv, &p->mu);
    p->handler_running = 0;
    pthread_mutex_unlock(&p->mu);
  }
  return shutdown_pool(p, terminate);
}

static int
in_handler(mp_pool *p)
{
  pthread_mutex_lock(&p->mu);
  int in = p->handler_running && pthread_equal(pthread_self(), p->handler);
  pthread_mutex_unlock(&p->mu);
  return in;
}

int
mp_pool_close(mp_pool *p)
{
  mp__errdetail_clear();
  if (!p)
    return mp_seterr(MP_EINVAL, "pool is NULL");
  pthread_mutex_lock(&p->mu);
  if (p->state == POOL_RUN) {
    p->state = POOL_CLOSE;
    if (p->rq) { /* under the lock: a terminate frees it under the lock */
      /* With no work left the workers get their sentinels from here, as
       * the handler would once woken: a wake-up less before they end.
       * Their ends are no deaths to handle then: not watched (the watcher
       * thread is not woken by them). */
      if (p->outstanding == 0) {
        mp__watch_stop(p->watch);
        send_sentinels(p);
      }
      wake_handler(p);
    }
  }
  pthread_mutex_unlock(&p->mu);
  return 0;
}

int
mp_pool_terminate(mp_pool *p)
{
  mp__errdetail_clear();
  if (!p)
    return mp_seterr(MP_EINVAL, "pool is NULL");
  if (in_handler(p))
    return mp_seterr(MP_EDEADLK, "terminate called from a pool callback");
  pthread_mutex_lock(&p->join_mu);
  int rc = p->finished ? 0 : finish(p, 1);
  pthread_mutex_unlock(&p->join_mu);
  return rc;
}

int
mp_pool_join(mp_pool *p)
{
  mp__errdetail_clear();
  if (!p)
    return mp_seterr(MP_EINVAL, "pool is NULL");
  if (in_handler(p))
    return mp_seterr(MP_EDEADLK, "join called from a pool callback");
  pthread_mutex_lock(&p->mu);
  int running = p->state == POOL_RUN;
  pthread_mutex_unlock(&p->mu);
  if (running)
    return mp_seterr(MP_ESTATE, "the pool is still running: close or "
                                "terminate it first");
  pthread_mutex_lock(&p->join_mu);
  int rc = p->finished ? 0 : finish(p, 0);
  pthread_mutex_unlock(&p->join_mu);
  return rc;
}

void
mp_pool_free(mp_pool *p)
{
  if (!p || in_handler(p))
    return;
  if (p->fin) {
    mp__finalizer_cancel(p->fin);
    p->fin = NULL;
  }
  pthread_mutex_lock(&p->join_mu);
  if (!p->finished)
    finish(p, 1);
  pthread_mutex_unlock(&p->join_mu);
  mp__ma_cache_free(p->ma_cache);
  mp_obj_free(p->initargs);
  mp__poolx_free(p->x);
  free(p->w);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->join_mu);
  pthread_cond_destroy(&p->handler_cv);
  free(p);
  mp__big_trim(); /* the big arrays its maps left cached for reuse */
}

/* ---- submitting ------------------------------------------------------------ */

/* Queue the jobs (built by the caller, r's items) and dispatch (pool->mu
 * held). */
static void
enqueue(mp_pool *p, mp__jobq *jobs, finished_list *f)
{
  for (mp__job *j = jobs->head; j; j = j->next)
    j->id = ++p->next_id;
  /* behind what waits already */
  mp__jobq old = p->backlog;
  p->backlog = *jobs;
  *jobs = (mp__jobq){0};
  jobq_prepend(&p->backlog, &old);
  dispatch(p, f);
}

/* A call's first jobs, with `more` of its jobs still to come (submit_more):
 * they count as outstanding from now, so a close meanwhile waits for them
 * (no sentinel goes out while they are missing). */
static int
submit(mp_pool *p, mp__jobq *jobs, size_t more)
{
  finished_list f = {0};
  pthread_mutex_lock(&p->mu);
  if (p->state != POOL_RUN) {
    pthread_mutex_unlock(&p->mu);
    return mp_seterr(MP_ESTATE, "the pool is not running (closed or "
                                "terminated)");
  }
  int rc = ensure_handler(p);
  if (rc) {
    pthread_mutex_unlock(&p->mu);
    char why[MP__ERRDETAIL_CAP];
    snprintf(why, sizeof why, "%s",
             mp_errdetail()[0] ? mp_errdetail() : mp_strerror(rc));
    return mp_seterr(rc, "cannot start the pool's result handler: %s", why);
  }
  p->outstanding += jobs->len + more;
  enqueue(p, jobs, &f);
  pthread_mutex_unlock(&p->mu);
  finished_run(&f, 0);
  return 0;
}

/* More of a submitted call's jobs (counted already).  The call was
 * accepted, so a close does not refuse them; after a terminate they fail
 * as the jobs it found did. */
static void
submit_more(mp_pool *p, mp__jobq *jobs)
{
  finished_list f = {0};
  pthread_mutex_lock(&p->mu);
  if (p->state == POOL_TERMINATE || p->finished) {
    mp__job *j;
    while ((j = jobq_pop(jobs)) != NULL)
      job_fail(p, j, MP_ECLOSED, "the pool was terminated", &f);
  } else {
    enqueue(p, jobs, &f);
  }
  pthread_mutex_unlock(&p->mu);
  finished_run(&f, 0);
}

/* A call whose remaining `jobs` jobs (items from..r->n) could not be built:
 * those items fail with `code`, and the jobs stop counting. */
static void
submit_abort(mp_pool *p, mp_result *r, size_t from, size_t jobs, int code,
             const char *detail)
{
  finished_list f = {0};
  pthread_mutex_lock(&p->mu);
  for (size_t i = from; i < r->n; i++)
    if (mp__result_store(r, i, code, NULL, detail))
      finished_add(&f, r);
  p->outstanding -= jobs;
  int idle = p->state == POOL_CLOSE && p->outstanding == 0 && p->rq;
  pthread_mutex_unlock(&p->mu);
  if (idle)
    wake_handler(p); /* it sends the sentinels */
  finished_run(&f, 0);
}

static void
jobs_free(mp__jobq *q)
{
  mp__job *j;
  while ((j = jobq_pop(q)) != NULL)
    job_free(j);
}

static int
check_reserved(mp_pool *p, double task_timeout, int progress)
{
  (void)progress;
  int rc = mp__timeout_field_check(task_timeout, "task_timeout");
  if (rc)
    return rc;
  if (task_timeout != 0 && p->threading && !p->x->has_exec)
    return mp_seterr(MP_ENOTSUP, "task_timeout needs worker processes: a "
                                 "thread cannot be stopped");
  return 0;
}

static int64_t
timeout_ns(double t)
{
  return t == 0 || t == MP_FOREVER ? 0 : t * 1e9 < 1 ? 1 : (int64_t)(t * 1e9);
}

int
mp_pool_apply_async(mp_pool *p, mp_task_fn fn, mp_obj *args,
                    const mp_apply_opts *opts, mp_result **out)
{
  mp__errdetail_clear();
  static const mp_apply_opts defaults;
  if (!opts)
    opts = &defaults;
  if (out)
    *out = NULL;
  if (!p || !fn || !out)
    return mp_seterr(MP_EINVAL, "pool, fn or out is NULL");
  if (args && mp_obj_type(args) != MP_T_TUPLE)
    return mp_seterr(MP_EINVAL, "args must be a tuple");
  int rc = check_reserved(p, opts->task_timeout, 0);
  if (rc)
    return rc;
  mp_result *r;
  if ((rc = mp__result_new(&r, MP__RES_APPLY, 1, sizeof *r)) != 0)
    return rc;
  r->callback = opts->callback;
  r->error_callback = opts->error_callback;
  r->arg = opts->arg;
  mp__job *j = calloc(1, sizeof *j);
  mp_obj *payload = args ? mp_obj_ref(args) : mp_tuple_take(0);
  if (!j || !payload) {
    free(j);
    mp_obj_free(payload);
    mp__result_unref(r);
    mp__result_unref(r);
    return MP_ENOMEM;
  }
  *j = (mp__job){.fn = fn, .kind = MP__TASK_APPLY, .payload = payload,
                 .r = r, .base = 0, .count = 1,
                 .timeout_ns = timeout_ns(opts->task_timeout)};
  mp__jobq q = {0};
  jobq_push(&q, j);
  if ((rc = submit(p, &q, 0)) != 0) {
    jobs_free(&q);
    mp__result_unref(r);
    mp__result_unref(r);
    return rc;
  }
  *out = r;
  return 0;
}

int
mp_pool_apply(mp_pool *p, mp_task_fn fn, mp_obj *args, mp_obj **out)
{
  mp__errdetail_clear();
  if (!out)
    return mp_seterr(MP_EINVAL, "out is NULL");
  *out = NULL;
  mp_result *r;
  int rc = mp_pool_apply_async(p, fn, args, NULL, &r);
  if (rc)
    return rc;
  rc = mp_result_get(r, out, MP_FOREVER);
  mp_result_free(r);
  return rc;
}

/* map, starmap, imap, imap_unordered: a result of `kind` over `items`. */
static int
map_common(mp_pool *p, mp_task_fn fn, const mp_obj *items,
           const mp_map_opts *opts, int task_kind, int res_kind,
           size_t struct_size, mp_result **out)
{
  static const mp_map_opts defaults;
  if (!opts)
    opts = &defaults;
  if (out)
    *out = NULL;
  if (!p || !fn || !items || !out)
    return mp_seterr(MP_EINVAL, "pool, fn, items or out is NULL");
  mp_obj *const *v;
  size_t n;
  if (mp_seq_items(items, &v, &n) != 0)
    return mp_seterr(MP_EINVAL, "items must be a list or a tuple");
  int rc = check_reserved(p, opts->task_timeout, opts->progress);
  if (rc)
    return rc;
  size_t cs = opts->chunksize;
  if (cs == 0) {
    if (res_kind == MP__RES_MAP) { /* CPython: divmod(len, 4 * workers) */
      size_t d = 4 * (size_t)p->nproc;
      cs = n / d + (n % d != 0);
    }
    if (cs == 0)
      cs = 1;
  }
  mp_result *r;
  if ((rc = mp__result_new(&r, res_kind, n, struct_size)) != 0)
    return rc;
  r->callback = opts->callback;
  r->error_callback = opts->error_callback;
  r->arg = opts->arg;
  if (opts->progress && n > 0 && (rc = mp__bar_new(p->x, n, &r->bar)) != 0) {
    mp__result_unref(r);
    mp__result_unref(r);
    return rc;
  }
  /* The jobs go out as they are built, in batches of 1, 2, 4, ... jobs:
   * the workers start on the first chunk while the rest are packed, and a
   * map of many small chunks still takes the pool's lock rarely. */
  size_t njobs = n / cs + (n % cs != 0), sent = 0, batch = 1, unsent_from = 0;
  mp__jobq q = {0};
  for (size_t base = 0; base < n; base += cs) {
    size_t count = n - base < cs ? n - base : cs;
    mp__job *j = calloc(1, sizeof *j);
    int kind = task_kind;
    mp_obj *payload = NULL;
    if (kind == MP__TASK_MAP && count >= MP__PACK_MIN && !p->x->has_exec &&
        (payload = mp__ints_pack(v + base, count)) != NULL)
      kind = MP__TASK_MAP_I64;
    else
      payload = mp_list_from(count, v + base);
    if (!j || !payload) {
      free(j);
      mp_obj_free(payload);
      jobs_free(&q);
      if (sent) { /* accepted already: the rest of its items fail */
        submit_abort(p, r, unsent_from, njobs - sent, MP_ENOMEM,
                     "out of memory building the jobs");
        *out = r;
        return 0;
      }
      mp__result_unref(r);
      mp__result_unref(r);
      return MP_ENOMEM;
    }
    *j = (mp__job){.fn = fn, .kind = kind, .payload = payload, .r = r,
                   .base = base, .count = count,
                   .timeout_ns = timeout_ns(opts->task_timeout),
                   .pslot = r->bar ? r->bar->slot : 0};
    jobq_push(&q, j);
    if (q.len < batch && base + count < n)
      continue;
    size_t len = q.len;
    if (sent == 0 && (rc = submit(p, &q, njobs - len)) != 0) {
      jobs_free(&q);
      mp__result_unref(r);
      mp__result_unref(r);
      return rc;
    }
    if (sent)
      submit_more(p, &q);
    sent += len;
    unsent_from = base + count;
    if (batch < 1024)
      batch *= 2;
  }
  if (n == 0) { /* nothing to run: ready at once (no callback thread) */
    pthread_mutex_lock(&p->mu);
    int running = p->state == POOL_RUN;
    pthread_mutex_unlock(&p->mu);
    if (!running) {
      mp__result_unref(r);
      mp__result_unref(r);
      return mp_seterr(MP_ESTATE, "the pool is not running");
    }
    mp__result_finish(r, 0);
  }
  *out = r;
  return 0;
}

int
mp_pool_map_async(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                  const mp_map_opts *opts, mp_result **out)
{
  mp__errdetail_clear();
  return map_common(p, fn, items, opts, MP__TASK_MAP, MP__RES_MAP,
                    sizeof(mp_result), out);
}

int
mp_pool_starmap_async(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                      const mp_map_opts *opts, mp_result **out)
{
  mp__errdetail_clear();
  return map_common(p, fn, items, opts, MP__TASK_STAR, MP__RES_MAP,
                    sizeof(mp_result), out);
}

static int
map_wait(int rc, mp_result **rp, mp_obj **out)
{
  if (rc)
    return rc;
  mp_result *r = *rp;
  rc = mp_result_get(r, out, MP_FOREVER);
  mp_result_free(r);
  return rc;
}

int
mp_pool_map(mp_pool *p, mp_task_fn fn, const mp_obj *items,
            const mp_map_opts *opts, mp_obj **out)
{
  mp__errdetail_clear();
  if (!out)
    return mp_seterr(MP_EINVAL, "out is NULL");
  *out = NULL;
  mp_result *r;
  return map_wait(mp_pool_map_async(p, fn, items, opts, &r), &r, out);
}

int
mp_pool_starmap(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                const mp_map_opts *opts, mp_obj **out)
{
  mp__errdetail_clear();
  if (!out)
    return mp_seterr(MP_EINVAL, "out is NULL");
  *out = NULL;
  mp_result *r;
  return map_wait(mp_pool_starmap_async(p, fn, items, opts, &r), &r, out);
}

int
mp_pool_imap(mp_pool *p, mp_task_fn fn, const mp_obj *items,
             const mp_map_opts *opts, mp_imap **out)
{
  mp__errdetail_clear();
  return map_common(p, fn, items, opts, MP__TASK_MAP, MP__RES_IMAP,
                    sizeof(mp_imap), (mp_result **)out);
}

int
mp_pool_imap_unordered(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                       const mp_map_opts *opts, mp_imap **out)
{
  mp__errdetail_clear();
  return map_common(p, fn, items, opts, MP__TASK_MAP, MP__RES_IMAP_UNORDERED,
                    sizeof(mp_imap), (mp_result **)out);
}

/* ---- for the pool's other files (pool_internal.h) ------------------------ */

uint64_t
mp__pool_batches(mp_pool *p)
{
  pthread_mutex_lock(&p->mu);
  uint64_t n = p->batches;
  pthread_mutex_unlock(&p->mu);
  return n;
}

int
mp__pool_nproc(const mp_pool *p)
{
  return p->nproc;
}

int
mp__pool_threading(const mp_pool *p)
{
  return p->threading;
}

mp__ma_cache **
mp__pool_ma_cache(mp_pool *p)
{
  return &p->ma_cache;
}

int
mp__pool_running(mp_pool *p)
{
  pthread_mutex_lock(&p->mu);
  int running = p->state == POOL_RUN;
  pthread_mutex_unlock(&p->mu);
  return running;
}

mp__poolx *
mp__pool_x(mp_pool *p)
{
  return p->x;
}

int
mp__pool_submit_chunk(mp_pool *p, mp_result *r, mp_task_fn fn,
                      mp_obj *payload, size_t base, size_t count,
                      double task_timeout)
{
  mp__job *j = calloc(1, sizeof *j);
  if (!j) {
    mp_obj_free(payload);
    return MP_ENOMEM;
  }
  *j = (mp__job){.fn = fn, .kind = MP__TASK_MAP, .payload = payload, .r = r,
                 .base = base, .count = count,
                 .timeout_ns = timeout_ns(task_timeout)};
  mp__jobq q = {0};
  jobq_push(&q, j);
  int rc = submit(p, &q, 0);
  if (rc)
    jobs_free(&q);
  return rc;
}
