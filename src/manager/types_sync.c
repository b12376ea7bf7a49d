/* SPDX-License-Identifier: MIT */
/* SyncManager's synchronisation types and queues, as the threading and
 * queue modules behave inside CPython's server: Lock, RLock, Semaphore,
 * BoundedSemaphore, Condition, Event, Barrier, Queue, JoinableQueue.  The
 * server serves each connection in its own thread, so these are plain
 * in-process objects (a mutex and condition variables) whose owner, where
 * one matters (RLock, Condition), is the serving thread -- one per client
 * thread, as in CPython.
 *
 * Every wait ends when the server stops (the type's interrupt: a sticky
 * flag and a broadcast), with RuntimeError for the waiter. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager/manager_internal.h"
#include "manager/types_internal.h"

typedef struct waiter {
  int notified;
  struct waiter *next;
} waiter;

typedef struct sobj {
  mgr_bhdr hdr;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int interrupted;
  int kind;
  /* Lock / RLock */
  int locked;
  pthread_t owner;
  int64_t count;
  /* Semaphore */
  int64_t value, initial;
  int bounded;
  /* Condition: its lock (another sobj), its waiters */
  struct sobj *lock;
  pthread_cond_t wcv;
  waiter *waiters;
  /* Event */
  int flag;
  /* Barrier */
  int64_t parties, nwait, gen, epoch;
  int broken;
  double btimeout;
  /* Queue */
  mp_obj **items;
  size_t head, len, cap, maxsize;
  int64_t unfinished;
} sobj;

enum { K_LOCK, K_RLOCK, K_SEM, K_COND, K_EVENT, K_BARRIER, K_QUEUE };

static sobj *
sobj_new(int kind)
{
  sobj *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  atomic_init(&o->hdr.refs, 1);
  pthread_mutex_init(&o->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&o->cv, &ca);
  pthread_cond_init(&o->wcv, &ca);
  pthread_condattr_destroy(&ca);
  o->kind = kind;
  return o;
}

static void
sobj_destroy(void *p)
{
  sobj *o = p;
  if (!o || atomic_fetch_sub(&o->hdr.refs, 1) != 1)
    return;
  if (o->lock)
    sobj_destroy(o->lock);
  for (size_t i = 0; i < o->len; i++)
    mp_obj_free(o->items[(o->head + i) % o->cap]);
  free(o->items);
  pthread_cond_destroy(&o->cv);
  pthread_cond_destroy(&o->wcv);
  pthread_mutex_destroy(&o->mu);
  free(o);
}

static void
sobj_interrupt(void *p)
{
  sobj *o = p;
  sobj *l = o->lock ? o->lock : o;
  pthread_mutex_lock(&l->mu);
  o->interrupted = 1;
  l->interrupted = 1;
  pthread_cond_broadcast(&o->cv);
  pthread_cond_broadcast(&o->wcv);
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* Wait on cv with mu held until woken, the deadline, or the interrupt:
 * 0, MP_ETIMEDOUT, MP_ESTATE. */
static _Thread_local int no_wait;

void
mp__mgr_nowait(int on)
{
  no_wait = on;
}

static int
cv_wait(sobj *o, pthread_cond_t *cv, pthread_mutex_t *mu, mp__deadline d)
{
  if (o->interrupted)
    return mp_seterr(MP_ESTATE, "the manager server is shutting down");
  if (no_wait)
    return MP_ETIMEDOUT;
  /* wake at least every second to see whether the client is still there */
  int64_t now = mp__now_ns();
  if (now >= d)
    return MP_ETIMEDOUT;
  {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left = d - now;
    if (left > 1000000000)
      left = 1000000000;
    ts.tv_sec += left / 1000000000;
    ts.tv_nsec += left % 1000000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(cv, mu, &ts);
  }
  if (o->interrupted)
    return mp_seterr(MP_ESTATE, "the manager server is shutting down");
  if (mp__mgr_peer_gone())
    return mp_seterr(MP_ECONNRESET, "the client is gone");
  return 0;
}

/* MP_ECONNRESET when the client of this request has died since it sent
 * it, else 0: for a request about to take something (a lock, a count of
 * a semaphore, a queue's item) or to count as a Barrier's party.  A client killed after sending a blocking
 * call, before this thread got to it, would hold what it took for ever,
 * and cv_wait looks for a gone client only after a wait. */
static int
taker_gone(void)
{
  return mp__mgr_peer_gone() ? mp_seterr(MP_ECONNRESET, "the client is gone")
                             : 0;
}

/* Argument `i` or keyword `name` (borrowed), or NULL. */
static mp_obj *
arg(mp_obj *args, mp_obj *kwds, size_t i, const char *name)
{
  size_t n = 0;
  mp_obj_len(args, &n);
  if (i < n)
    return mp_seq_item(args, (int64_t)i);
  return name ? mp_dict_get_str(kwds, name) : NULL;
}

static int
nargs_max(mp_obj *args, size_t max, const char *fn)
{
  size_t n = 0;
  mp_obj_len(args, &n);
  if (n > max)
    return mp_seterr(MP_ETYPE, "%s() takes at most %zu arguments (%zu given)",
                     fn, max, n);
  return 0;
}

/* (blocking=True, timeout=None/-1) as the threading module reads them. */
static int
block_args(mp_obj *args, mp_obj *kwds, const char *fn, double *timeout)
{
  int rc = nargs_max(args, 2, fn);
  if (rc)
    return rc;
  mp_obj *b = arg(args, kwds, 0, "blocking");
  mp_obj *t = arg(args, kwds, 1, "timeout");
  int blocking = b ? mp_obj_truthy(b) : 1;
  double to = -1;
  if (t && mp_obj_type(t) != MP_T_NONE && mp_float_get(t, &to))
    return mp_seterr(MP_ETYPE, "timeout must be a number");
  if (to != to)
    return mp_seterr(MP_EINVAL, "timeout is NaN");
  if (!blocking && to != -1)
    return mp_seterr(MP_EINVAL, "can't specify a timeout for a non-blocking "
                                "call");
  *timeout = !blocking ? 0 : to < 0 ? MP_FOREVER : to;
  return 0;
}

static mp__deadline
deadline_of(double timeout)
{
  mp__deadline d;
  mp__deadline_set(timeout, &d);
  return d;
}

/* ---- Lock and RLock -------------------------------------------------------- */

static int
lock_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int rc = mp__mgr_parse(args, ":Lock");
  if (rc || (rc = mp__mgr_nokw(kwds, "Lock")))
    return rc;
  *out = sobj_new(K_LOCK);
  return *out ? 0 : MP_ENOMEM;
}

static int
rlock_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int rc = mp__mgr_parse(args, ":RLock");
  if (rc || (rc = mp__mgr_nokw(kwds, "RLock")))
    return rc;
  *out = sobj_new(K_RLOCK);
  return *out ? 0 : MP_ENOMEM;
}

/* With l->mu held: take the lock (1), or 0 if not in time, or a code. */
static int
lock_take(sobj *l, mp__deadline d)
{
  pthread_t me = pthread_self();
  if (l->kind == K_RLOCK && l->count && pthread_equal(l->owner, me)) {
    l->count++;
    return 1;
  }
  while (l->locked) {
    int rc = cv_wait(l, &l->cv, &l->mu, d);
    if (rc == MP_ETIMEDOUT)
      return 0;
    if (rc)
      return rc;
  }
  int rc = taker_gone();
  if (rc)
    return rc;
  l->locked = 1;
  l->owner = me;
  l->count = 1;
  return 1;
}

static int
lock_give(sobj *l)
{
  if (l->kind == K_RLOCK) {
    if (!l->count || !pthread_equal(l->owner, pthread_self()))
      return mp_seterr(MP_ESTATE, "cannot release un-acquired lock");
    if (--l->count)
      return 0;
  } else if (!l->locked) {
    return mp_seterr(MP_ESTATE, "release unlocked lock");
  }
  l->locked = 0;
  l->count = 0;
  pthread_cond_signal(&l->cv);
  return 0;
}

static int
lock_acquire(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p, *l = o->lock ? o->lock : o;
  double timeout;
  int rc = block_args(args, kwds, "acquire", &timeout);
  if (rc)
    return rc;
  pthread_mutex_lock(&l->mu);
  rc = lock_take(l, deadline_of(timeout));
  pthread_mutex_unlock(&l->mu);
  if (rc < 0)
    return rc;
  *res = mp_bool_new(rc);
  return 0;
}

static int
lock_release(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p, *l = o->lock ? o->lock : o;
  int rc = mp__mgr_parse(args, ":release");
  if (rc)
    return rc;
  pthread_mutex_lock(&l->mu);
  rc = lock_give(l);
  pthread_mutex_unlock(&l->mu);
  return rc;
}

static int
lock_repr(void *p, mp_obj **out)
{
  sobj *o = p;
  pthread_mutex_lock(&o->mu);
  int locked = o->locked;
  int64_t count = o->count;
  pthread_mutex_unlock(&o->mu);
  if (o->kind == K_RLOCK)
    *out = mp__mgr_fmt("<%s _thread.RLock object count=%lld>",
                       locked ? "locked" : "unlocked", (long long)count);
  else
    *out = mp__mgr_fmt("<%s _thread.lock object>",
                       locked ? "locked" : "unlocked");
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method lock_methods[] = {
  { "acquire", lock_acquire, NULL },
  { "release", lock_release, NULL },
};

const mp_manager_type mp__mgr_lock_type = {
  .typeid = "Lock",
  .create = lock_create,
  .destroy = sobj_destroy,
  .methods = lock_methods,
  .nmethods = MP__ARRAY_LEN(lock_methods),
  .repr = lock_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

const mp_manager_type mp__mgr_rlock_type = {
  .typeid = "RLock",
  .create = rlock_create,
  .destroy = sobj_destroy,
  .methods = lock_methods,
  .nmethods = MP__ARRAY_LEN(lock_methods),
  .repr = lock_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

/* ---- Semaphore and BoundedSemaphore ------------------------------------------ */

static int
sem_make(mp_obj *args, mp_obj *kwds, void **out, int bounded)
{
  int rc = nargs_max(args, 1, "Semaphore");
  if (rc)
    return rc;
  mp_obj *v = arg(args, kwds, 0, "value");
  int64_t value = 1;
  if (v && mp_int_get(v, &value))
    return mp_seterr(MP_ETYPE, "semaphore value must be an int");
  if (value < 0)
    return mp_seterr(MP_EINVAL, "semaphore initial value must be >= 0");
  sobj *o = sobj_new(K_SEM);
  if (!o)
    return MP_ENOMEM;
  o->value = o->initial = value;
  o->bounded = bounded;
  *out = o;
  return 0;
}

static int
sem_create(mp_obj *args, mp_obj *kwds, void **out)
{
  return sem_make(args, kwds, out, 0);
}

static int
bsem_create(mp_obj *args, mp_obj *kwds, void **out)
{
  return sem_make(args, kwds, out, 1);
}

static int
sem_acquire(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  double timeout;
  int rc = block_args(args, kwds, "acquire", &timeout);
  if (rc)
    return rc;
  mp__deadline d = deadline_of(timeout);
  int got = 0;
  pthread_mutex_lock(&o->mu);
  for (;;) {
    if (o->value > 0) {
      if ((rc = taker_gone()))
        break;
      o->value--;
      got = 1;
      break;
    }
    rc = cv_wait(o, &o->cv, &o->mu, d);
    if (rc)
      break;
  }
  pthread_mutex_unlock(&o->mu);
  if (rc && rc != MP_ETIMEDOUT)
    return rc;
  *res = mp_bool_new(got);
  return 0;
}

static int
sem_release(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int64_t n = 1;
  int rc = mp__mgr_parse(args, "|L:release", &n);
  if (rc)
    return rc;
  if (n < 1)
    return mp_seterr(MP_EINVAL, "n must be one or more");
  pthread_mutex_lock(&o->mu);
  if (o->bounded && o->value + n > o->initial) {
    rc = mp_seterr(MP_EINVAL, "Semaphore released too many times");
  } else {
    o->value += n;
    pthread_cond_broadcast(&o->cv);
  }
  pthread_mutex_unlock(&o->mu);
  return rc;
}

static int
sem_repr(void *p, mp_obj **out)
{
  sobj *o = p;
  pthread_mutex_lock(&o->mu);
  int64_t v = o->value;
  pthread_mutex_unlock(&o->mu);
  *out = o->bounded ? mp__mgr_fmt("<threading.BoundedSemaphore at %p: "
                                  "value=%lld/%lld>", p, (long long)v,
                                  (long long)o->initial)
                    : mp__mgr_fmt("<threading.Semaphore at %p: value=%lld>",
                                  p, (long long)v);
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method sem_methods[] = {
  { "acquire", sem_acquire, NULL },
  { "release", sem_release, NULL },
};

const mp_manager_type mp__mgr_semaphore_type = {
  .typeid = "Semaphore",
  .create = sem_create,
  .destroy = sobj_destroy,
  .methods = sem_methods,
  .nmethods = MP__ARRAY_LEN(sem_methods),
  .repr = sem_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

const mp_manager_type mp__mgr_bsemaphore_type = {
  .typeid = "BoundedSemaphore",
  .create = bsem_create,
  .destroy = sobj_destroy,
  .methods = sem_methods,
  .nmethods = MP__ARRAY_LEN(sem_methods),
  .repr = sem_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

/* ---- Condition ------------------------------------------------------------- */

static int
cond_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int rc = nargs_max(args, 1, "Condition");
  if (rc)
    return rc;
  mp_obj *lk = arg(args, kwds, 0, "lock");
  sobj *l = NULL;
  if (lk && mp_obj_type(lk) != MP_T_NONE) {
    /* a Lock or RLock of this same manager, passed as a proxy */
    void *pin = NULL;
    mp__mgr_server *srv = NULL;
    l = mp__mgr_proxy_local(lk, &mp__mgr_rlock_type, &pin, &srv);
    if (!l)
      l = mp__mgr_proxy_local(lk, &mp__mgr_lock_type, &pin, &srv);
    if (!l)
      return mp_seterr(MP_ETYPE, "Condition(lock): the lock must be a Lock "
                                 "or RLock of the same manager");
    atomic_fetch_add(&l->hdr.refs, 1);
    mp__mgr_server_unpin(srv, pin);
  } else if (!(l = sobj_new(K_RLOCK))) {
    return MP_ENOMEM;
  }
  sobj *c = sobj_new(K_COND);
  if (!c) {
    sobj_destroy(l);
    return MP_ENOMEM;
  }
  c->lock = l;
  *out = c;
  return 0;
}

static int
owned(sobj *l)
{
  return l->kind == K_RLOCK ? l->count && pthread_equal(l->owner, pthread_self())
                            : l->locked;
}

static int
cond_wait(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *c = p, *l = c->lock;
  int rc = nargs_max(args, 1, "wait");
  if (rc)
    return rc;
  double timeout;
  if ((rc = mp__mgr_timeout_arg(arg(args, kwds, 0, "timeout"), &timeout)))
    return rc;
  mp__deadline d = deadline_of(timeout);
  pthread_mutex_lock(&l->mu);
  if (!owned(l)) {
    pthread_mutex_unlock(&l->mu);
    return mp_seterr(MP_ESTATE, "cannot wait on un-acquired lock");
  }
  /* release the lock whole, wait to be notified, take it back */
  int64_t saved = l->count;
  l->locked = 0;
  l->count = 0;
  pthread_cond_signal(&l->cv);
  waiter w = { 0, c->waiters };
  c->waiters = &w;
  while (!w.notified && !(rc = cv_wait(c, &c->wcv, &l->mu, d)))
    ;
  if (!w.notified)
    for (waiter **pp = &c->waiters; *pp; pp = &(*pp)->next)
      if (*pp == &w) {
        *pp = w.next;
        break;
      }
  int took = 1;
  while (l->locked && !l->interrupted)
    pthread_cond_wait(&l->cv, &l->mu);
  if (l->locked)
    took = 0;
  if (took) {
    l->locked = 1;
    l->owner = pthread_self();
    l->count = saved;
  }
  pthread_mutex_unlock(&l->mu);
  if (rc && rc != MP_ETIMEDOUT)
    return rc;
  *res = mp_bool_new(w.notified);
  return 0;
}

static int
cond_notify_n(sobj *c, int64_t n)
{
  sobj *l = c->lock;
  pthread_mutex_lock(&l->mu);
  if (!owned(l)) {
    pthread_mutex_unlock(&l->mu);
    return mp_seterr(MP_ESTATE, "cannot notify on un-acquired lock");
  }
  /* the oldest waiters first: they are at the end of the list */
  for (; n > 0 && c->waiters; n--) {
    waiter **pp = &c->waiters;
    while ((*pp)->next)
      pp = &(*pp)->next;
    (*pp)->notified = 1;
    *pp = NULL;
  }
  pthread_cond_broadcast(&c->wcv);
  pthread_mutex_unlock(&l->mu);
  return 0;
}

static int
cond_notify(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int64_t n = 1;
  int rc = mp__mgr_parse(args, "|L:notify", &n);
  return rc ? rc : cond_notify_n(p, n);
}

static int
cond_notify_all(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int rc = mp__mgr_parse(args, ":notify_all");
  return rc ? rc : cond_notify_n(p, INT64_MAX);
}

static int
cond_repr(void *p, mp_obj **out)
{
  sobj *c = p;
  size_t n = 0;
  pthread_mutex_lock(&c->lock->mu);
  for (waiter *w = c->waiters; w; w = w->next)
    n++;
  pthread_mutex_unlock(&c->lock->mu);
  mp_obj *lr = NULL;
  lock_repr(c->lock, &lr);
  const char *s = "";
  size_t len;
  mp_str_get(lr, &s, &len);
  *out = mp__mgr_fmt("<Condition(%s, %zu)>", s, n);
  mp_obj_free(lr);
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method cond_methods[] = {
  { "acquire", lock_acquire, NULL },
  { "release", lock_release, NULL },
  { "wait", cond_wait, NULL },
  { "notify", cond_notify, NULL },
  { "notify_all", cond_notify_all, NULL },
};

const mp_manager_type mp__mgr_condition_type = {
  .typeid = "Condition",
  .create = cond_create,
  .destroy = sobj_destroy,
  .methods = cond_methods,
  .nmethods = MP__ARRAY_LEN(cond_methods),
  .repr = cond_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

/* ---- Event ------------------------------------------------------------------- */

static int
event_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int rc = mp__mgr_parse(args, ":Event");
  if (rc || (rc = mp__mgr_nokw(kwds, "Event")))
    return rc;
  *out = sobj_new(K_EVENT);
  return *out ? 0 : MP_ENOMEM;
}

static int
event_set(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":set");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  o->flag = 1;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  return 0;
}

static int
event_clear(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":clear");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  o->flag = 0;
  pthread_mutex_unlock(&o->mu);
  return 0;
}

static int
event_is_set(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":is_set");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  *res = mp_bool_new(o->flag);
  pthread_mutex_unlock(&o->mu);
  return 0;
}

static int
event_wait(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = nargs_max(args, 1, "wait");
  double timeout;
  if (rc || (rc = mp__mgr_timeout_arg(arg(args, kwds, 0, "timeout"),
                                      &timeout)))
    return rc;
  mp__deadline d = deadline_of(timeout);
  pthread_mutex_lock(&o->mu);
  while (!o->flag && !(rc = cv_wait(o, &o->cv, &o->mu, d)))
    ;
  int flag = o->flag;
  pthread_mutex_unlock(&o->mu);
  if (!flag && rc && rc != MP_ETIMEDOUT)
    return rc;
  *res = mp_bool_new(flag);
  return 0;
}

static int
event_repr(void *p, mp_obj **out)
{
  sobj *o = p;
  pthread_mutex_lock(&o->mu);
  int f = o->flag;
  pthread_mutex_unlock(&o->mu);
  *out = mp__mgr_fmt("<threading.Event at %p: %s>", p, f ? "set" : "unset");
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method event_methods[] = {
  { "is_set", event_is_set, NULL },
  { "set", event_set, NULL },
  { "clear", event_clear, NULL },
  { "wait", event_wait, NULL },
};

const mp_manager_type mp__mgr_event_type = {
  .typeid = "Event",
  .create = event_create,
  .destroy = sobj_destroy,
  .methods = event_methods,
  .nmethods = MP__ARRAY_LEN(event_methods),
  .repr = event_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

/* ---- Barrier ------------------------------------------------------------------ */

static int
barrier_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int rc = nargs_max(args, 3, "Barrier");
  if (rc)
    return rc;
  mp_obj *np = arg(args, kwds, 0, "parties");
  mp_obj *act = arg(args, kwds, 1, "action");
  mp_obj *to = arg(args, kwds, 2, "timeout");
  int64_t parties;
  if (!np || mp_int_get(np, &parties))
    return mp_seterr(MP_ETYPE, "Barrier() needs parties (an int)");
  if (parties < 1)
    return mp_seterr(MP_EINVAL, "parties must be > 0");
  if (act && mp_obj_type(act) != MP_T_NONE)
    return mp_seterr(MP_ETYPE, "a Barrier action cannot cross to the "
                               "manager server");
  double t = MP_FOREVER;
  if ((rc = mp__mgr_timeout_arg(to, &t)))
    return rc;
  sobj *o = sobj_new(K_BARRIER);
  if (!o)
    return MP_ENOMEM;
  o->parties = parties;
  o->btimeout = t;
  *out = o;
  return 0;
}

static int
broken_error(mp_obj **res)
{
  *res = mp__mgr_exc("threading", "BrokenBarrierError", NULL);
  return mp_seterr(MP_EBROKEN, "the barrier is broken");
}

static int
barrier_wait(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = nargs_max(args, 1, "wait");
  if (rc)
    return rc;
  double timeout = o->btimeout;
  mp_obj *t = arg(args, kwds, 0, "timeout");
  if (t && mp_obj_type(t) != MP_T_NONE &&
      (rc = mp__mgr_timeout_arg(t, &timeout)))
    return rc;
  mp__deadline d = deadline_of(timeout);
  /* a client gone before its wait was read is no party: it must not
   * release the others (one that dies while waiting stops counting too) */
  if ((rc = taker_gone()))
    return rc;
  pthread_mutex_lock(&o->mu);
  if (o->broken) {
    pthread_mutex_unlock(&o->mu);
    return broken_error(res);
  }
  int64_t idx = o->nwait++;
  if (o->nwait == o->parties) {
    o->nwait = 0;
    o->gen++;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    *res = mp_int_new(idx);
    return 0;
  }
  int64_t gen = o->gen, epoch = o->epoch;
  while (o->gen == gen && !o->broken && o->epoch == epoch &&
         !(rc = cv_wait(o, &o->cv, &o->mu, d)))
    ;
  int ok = o->gen != gen;
  if (!ok && rc == MP_ETIMEDOUT && !o->broken && o->epoch == epoch) {
    o->broken = 1; /* a timeout breaks the barrier, as Python's */
    pthread_cond_broadcast(&o->cv);
  }
  if (!ok && o->epoch == epoch && o->nwait > 0)
    o->nwait--;
  pthread_mutex_unlock(&o->mu);
  if (!ok)
    return rc == MP_ESTATE ? rc : broken_error(res);
  *res = mp_int_new(idx);
  return 0;
}

static int
barrier_abort(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":abort");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  o->broken = 1;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  return 0;
}

static int
barrier_reset(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":reset");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  o->epoch++; /* the waiters of now get BrokenBarrierError */
  o->nwait = 0;
  o->broken = 0;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  return 0;
}

static int
barrier_getattr(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  const char *name;
  int rc = mp__mgr_parse(args, "s:__getattribute__", &name);
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  if (!strcmp(name, "parties"))
    *res = mp_int_new(o->parties);
  else if (!strcmp(name, "n_waiting"))
    *res = mp_int_new(o->nwait);
  else if (!strcmp(name, "broken"))
    *res = mp_bool_new(o->broken);
  else
    rc = MP_ENOTFOUND;
  pthread_mutex_unlock(&o->mu);
  if (rc) {
    *res = mp__mgr_exc("builtins", "AttributeError",
                       mp__mgr_fmt("'Barrier' object has no attribute '%s'",
                                   name));
    return mp_seterr(rc, "'Barrier' object has no attribute '%s'", name);
  }
  return 0;
}

static int
barrier_repr(void *p, mp_obj **out)
{
  sobj *o = p;
  pthread_mutex_lock(&o->mu);
  *out = o->broken ? mp__mgr_fmt("<threading.Barrier at %p: broken>", p)
                   : mp__mgr_fmt("<threading.Barrier at %p: waiters=%lld/%lld>",
                                 p, (long long)o->nwait, (long long)o->parties);
  pthread_mutex_unlock(&o->mu);
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method barrier_methods[] = {
  { "__getattribute__", barrier_getattr, NULL },
  { "wait", barrier_wait, NULL },
  { "abort", barrier_abort, NULL },
  { "reset", barrier_reset, NULL },
};

const mp_manager_type mp__mgr_barrier_type = {
  .typeid = "Barrier",
  .create = barrier_create,
  .destroy = sobj_destroy,
  .methods = barrier_methods,
  .nmethods = MP__ARRAY_LEN(barrier_methods),
  .repr = barrier_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

/* ---- Queue, JoinableQueue (queue.Queue) ---------------------------------- */

static int
queue_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int rc = nargs_max(args, 1, "Queue");
  if (rc)
    return rc;
  mp_obj *m = arg(args, kwds, 0, "maxsize");
  int64_t maxsize = 0;
  if (m && mp_int_get(m, &maxsize))
    return mp_seterr(MP_ETYPE, "maxsize must be an int");
  sobj *o = sobj_new(K_QUEUE);
  if (!o)
    return MP_ENOMEM;
  o->maxsize = maxsize > 0 ? (size_t)maxsize : 0;
  *out = o;
  return 0;
}

/* (block=True, timeout=None) of put/get, after `skip` leading args. */
static int
queue_block(mp_obj *args, mp_obj *kwds, size_t skip, int nowait,
            double *timeout)
{
  if (nowait) {
    *timeout = 0;
    return nargs_max(args, skip, "get_nowait");
  }
  int rc = nargs_max(args, skip + 2, "put/get");
  if (rc)
    return rc;
  mp_obj *b = arg(args, kwds, skip, "block");
  mp_obj *t = arg(args, kwds, skip + 1, "timeout");
  double to = MP_FOREVER;
  if (t && (rc = mp__mgr_timeout_arg(t, &to)))
    return rc;
  if (to < 0)
    return mp_seterr(MP_EINVAL, "'timeout' must be a non-negative number");
  *timeout = b && !mp_obj_truthy(b) ? 0 : to;
  return 0;
}

static int
queue_put_impl(void *p, mp_obj *args, mp_obj *kwds, int nowait)
{
  sobj *o = p;
  mp_obj *item = arg(args, kwds, 0, "item");
  if (!item)
    return mp_seterr(MP_ETYPE, "put() missing required argument 'item'");
  double timeout;
  int rc = queue_block(args, kwds, 1, nowait, &timeout);
  if (rc)
    return rc;
  mp__deadline d = deadline_of(timeout);
  pthread_mutex_lock(&o->mu);
  while (o->maxsize && o->len >= o->maxsize &&
         !(rc = cv_wait(o, &o->cv, &o->mu, d)))
    ;
  if ((!o->maxsize || o->len < o->maxsize) && rc != MP_ECONNRESET &&
      rc != MP_ESTATE) {
    rc = 0;
    if (o->len == o->cap) {
      size_t nc = o->cap ? o->cap * 2 : 16;
      mp_obj **ni = malloc(nc * sizeof *ni);
      if (!ni) {
        rc = MP_ENOMEM;
      } else {
        for (size_t i = 0; i < o->len; i++)
          ni[i] = o->items[(o->head + i) % o->cap];
        free(o->items);
        o->items = ni;
        o->head = 0;
        o->cap = nc;
      }
    }
    if (!rc) {
      o->items[(o->head + o->len++) % o->cap] = mp_obj_ref(item);
      o->unfinished++;
      pthread_cond_broadcast(&o->cv);
    }
  } else if (rc == MP_ETIMEDOUT) {
    rc = MP_EFULL;
  }
  pthread_mutex_unlock(&o->mu);
  return rc;
}

static int
queue_get_impl(void *p, mp_obj *args, mp_obj *kwds, int nowait, mp_obj **res)
{
  sobj *o = p;
  double timeout;
  int rc = queue_block(args, kwds, 0, nowait, &timeout);
  if (rc)
    return rc;
  mp__deadline d = deadline_of(timeout);
  pthread_mutex_lock(&o->mu);
  while (!o->len && !(rc = cv_wait(o, &o->cv, &o->mu, d)))
    ;
  if (o->len && rc != MP_ECONNRESET && rc != MP_ESTATE &&
      !(rc = taker_gone())) {
    *res = o->items[o->head];
    o->head = (o->head + 1) % o->cap;
    o->len--;
    pthread_cond_broadcast(&o->cv);
  } else if (rc == MP_ETIMEDOUT) {
    rc = MP_EEMPTY;
  }
  pthread_mutex_unlock(&o->mu);
  return rc;
}

static int
q_put(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return queue_put_impl(p, args, kwds, 0);
}
static int
q_put_nowait(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return queue_put_impl(p, args, kwds, 1);
}
static int
q_get(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return queue_get_impl(p, args, kwds, 0, res);
}
static int
q_get_nowait(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return queue_get_impl(p, args, kwds, 1, res);
}

static int
q_state(void *p, mp_obj *args, int what, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":qsize");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  *res = what == 0   ? mp_int_new((int64_t)o->len)
         : what == 1 ? mp_bool_new(o->len == 0)
                     : mp_bool_new(o->maxsize && o->len >= o->maxsize);
  pthread_mutex_unlock(&o->mu);
  return 0;
}
static int
q_qsize(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return q_state(p, args, 0, res);
}
static int
q_empty(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return q_state(p, args, 1, res);
}
static int
q_full(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return q_state(p, args, 2, res);
}

static int
q_task_done(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":task_done");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  if (o->unfinished <= 0)
    rc = mp_seterr(MP_EINVAL, "task_done() called too many times");
  else if (--o->unfinished == 0)
    pthread_cond_broadcast(&o->wcv);
  pthread_mutex_unlock(&o->mu);
  return rc;
}

static int
q_join(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  sobj *o = p;
  int rc = mp__mgr_parse(args, ":join");
  if (rc)
    return rc;
  pthread_mutex_lock(&o->mu);
  while (o->unfinished > 0 &&
         !(rc = cv_wait(o, &o->wcv, &o->mu, MP__NO_DEADLINE)))
    ;
  pthread_mutex_unlock(&o->mu);
  return rc;
}

static int
q_repr(void *p, mp_obj **out)
{
  *out = mp__mgr_fmt("<queue.Queue object at %p>", p);
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method queue_methods[] = {
  { "empty", q_empty, NULL },
  { "full", q_full, NULL },
  { "get", q_get, NULL },
  { "get_nowait", q_get_nowait, NULL },
  { "join", q_join, NULL },
  { "put", q_put, NULL },
  { "put_nowait", q_put_nowait, NULL },
  { "qsize", q_qsize, NULL },
  { "task_done", q_task_done, NULL },
};

const mp_manager_type mp__mgr_queue_type = {
  .typeid = "Queue",
  .create = queue_create,
  .destroy = sobj_destroy,
  .methods = queue_methods,
  .nmethods = MP__ARRAY_LEN(queue_methods),
  .repr = q_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

const mp_manager_type mp__mgr_jqueue_type = {
  .typeid = "JoinableQueue",
  .create = queue_create,
  .destroy = sobj_destroy,
  .methods = queue_methods,
  .nmethods = MP__ARRAY_LEN(queue_methods),
  .repr = q_repr,
  .flags = MP_MANAGER_CONCURRENT,
  .interrupt = sobj_interrupt,
};

/* ---- the list of built-in types ------------------------------------------------ */

const mp_manager_type *const mp__mgr_builtin_types[] = {
  &mp__mgr_dict_type,      &mp__mgr_list_type,      &mp__mgr_iterator_type,
  &mp__mgr_namespace_type, &mp__mgr_value_type,     &mp__mgr_array_type,
  &mp__mgr_lock_type,      &mp__mgr_rlock_type,     &mp__mgr_semaphore_type,
  &mp__mgr_bsemaphore_type, &mp__mgr_condition_type, &mp__mgr_event_type,
  &mp__mgr_barrier_type,   &mp__mgr_queue_type,     &mp__mgr_jqueue_type,
  &mp__mgr_pool_type,      &mp__mgr_async_result_type,
  NULL,
};

int
mp__mgr_is_builtin(const mp_manager_type *t)
{
  for (size_t i = 0; mp__mgr_builtin_types[i]; i++)
    if (mp__mgr_builtin_types[i] == t)
      return 1;
  return 0;
}

void *
mp__mgr_builtin_ref(const mp_manager_type *t, void *obj)
{
  if (!mp__mgr_is_builtin(t))
    return NULL;
  atomic_fetch_add(&((mgr_bhdr *)obj)->refs, 1);
  return obj;
}
