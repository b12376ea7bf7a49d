/* SPDX-License-Identifier: MIT */
/* Condition over a Lock or RLock.
 *
 * Shared state, changed only with the user's lock held: `nwait` counts
 * waiters not yet notified, `tokens` counts notifications not yet taken;
 * `seq` is the futex word sleepers wait on.  A waiter leaves by taking a
 * token (notified) or, at its deadline, by decrementing nwait; a waiter that
 * wakes and finds no token sleeps again.  So notify(n) wakes at most n and
 * no notification is lost, whichever waiter happens to take it. */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

#include "mproc/sync.h"
#include "platform/platform.h"
#include "sync/sync_internal.h"

struct scond {
  _Atomic uint32_t seq;
  _Atomic uint32_t nwait;
  _Atomic uint32_t tokens;
};

struct mp_cond {
  struct mp__shobj h;
  struct scond *s;
  mp_lock *lock; /* its own reference (mp__shtype.sub) */
};

/* state: (location, the state of its lock) */
MP__SHTYPE(mp__cond_type, "mproc.Condition", .kind = MP__K_COND,
           .size = sizeof(mp_cond), .block = sizeof(struct scond),
           .data = offsetof(mp_cond, s), .sub = offsetof(mp_cond, lock),
           .sub_type = &mp__lock_type);

int
mp_cond_new(mp_cond **out, mp_lock *lock)
{
  mp__errdetail_clear();
  if (!out)
    return MP_EINVAL;
  int rc;
  if (lock)
    mp__shobj_ref(lock);
  else if ((rc = mp_rlock_new(&lock)) != 0) {
    *out = NULL;
    return rc;
  }
  return mp__shobj_new(&mp__cond_type, &(mp__shmore){.sub = lock},
                       sizeof(struct scond), 16, NULL, 0, out);
}

mp_lock *
mp_cond_lock(mp_cond *c)
{
  return c ? c->lock : NULL;
}

int
mp_cond_acquire(mp_cond *c, double timeout)
{
  mp__errdetail_clear();
  return c ? mp_lock_acquire(c->lock, timeout) : MP_EINVAL;
}

int
mp_cond_release(mp_cond *c)
{
  mp__errdetail_clear();
  return c ? mp_lock_release(c->lock) : MP_EINVAL;
}

static int
cond_wait(mp_cond *c, mp__deadline dl)
{
  struct scond *s = c->s;
  if (!mp__slock_is_mine(c->lock->s))
    return mp_seterr(MP_ENOTOWNER, "cannot wait on un-acquired lock");
  atomic_fetch_add_explicit(&s->nwait, 1, memory_order_relaxed);
  int dead = 0;
  for (;;) {
    uint32_t seq0 = atomic_load_explicit(&s->seq, memory_order_relaxed);
    uint32_t saved;
    mp__lock_save_release(c->lock, &saved);
    int r = mp__futex_wait((uint32_t *)&s->seq, seq0, dl);
    if (mp__lock_restore_acquire(c->lock, saved) == MP_EOWNERDEAD)
      dead = 1;
    uint32_t t = atomic_load_explicit(&s->tokens, memory_order_relaxed);
    if (t > 0) {
      atomic_store_explicit(&s->tokens, t - 1, memory_order_relaxed);
      return dead ? MP_EOWNERDEAD : 0;
    }
    if (r == MP_ETIMEDOUT
        || (dl != MP__NO_DEADLINE && mp__now_ns() >= dl)) {
      uint32_t n = atomic_load_explicit(&s->nwait, memory_order_relaxed);
      if (n > 0) /* a dead waiter's notify may have been taken */
        atomic_store_explicit(&s->nwait, n - 1, memory_order_relaxed);
      return dead ? MP_EOWNERDEAD : MP_ETIMEDOUT;
    }
  }
}

int
mp_cond_wait(mp_cond *c, double timeout)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  mp__deadline dl;
  int rc = mp__deadline_set(timeout, &dl);
  return rc ? rc : cond_wait(c, dl);
}

int
mp_cond_wait_for(mp_cond *c, int (*pred)(void *), void *arg, double timeout)
{
  if (!c || !pred)
    return MP_EINVAL;
  if (!mp__slock_is_mine(c->lock->s))
    return mp_seterr(MP_ENOTOWNER, "cannot wait on un-acquired lock");
  mp__deadline dl;
  int rc = mp__deadline_set(timeout, &dl);
  if (rc)
    return rc;
  int dead = 0;
  for (;;) {
    if (pred(arg))
      return dead ? MP_EOWNERDEAD : 0;
    if (dl != MP__NO_DEADLINE && mp__now_ns() >= dl)
      return MP_ETIMEDOUT;
    int rc = cond_wait(c, dl);
    if (rc == MP_EOWNERDEAD)
      dead = 1;
    else if (rc == MP_ETIMEDOUT)
      return pred(arg) ? (dead ? MP_EOWNERDEAD : 0) : MP_ETIMEDOUT;
    else if (rc != 0)
      return rc;
  }
}

int
mp_cond_notify(mp_cond *c, int n)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  struct scond *s = c->s;
  if (!mp__slock_is_mine(c->lock->s))
    return mp_seterr(MP_ENOTOWNER, "cannot notify on un-acquired lock");
  uint32_t w = atomic_load_explicit(&s->nwait, memory_order_relaxed);
  uint32_t k = n <= 0 ? 0 : ((uint32_t)n < w ? (uint32_t)n : w);
  if (k == 0)
    return 0;
  atomic_store_explicit(&s->nwait, w - k, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->tokens, k, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
  mp__futex_wake((uint32_t *)&s->seq, k > INT_MAX ? INT_MAX : (int)k);
  return 0;
}

int
mp_cond_notify_all(mp_cond *c)
{
  mp__errdetail_clear();
  return mp_cond_notify(c, INT_MAX);
}

int
mp__cond_nwait_for_tests(mp_cond *c)
{
  return (int)atomic_load(&c->s->nwait);
}
