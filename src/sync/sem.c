/* SPDX-License-Identifier: MIT */
/* Semaphore / BoundedSemaphore: a futex count, lock-free on both paths. */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

#include "mproc/sync.h"
#include "platform/platform.h"
#include "sync/sync_internal.h"

struct ssem {
  _Atomic uint32_t value;
  _Atomic uint32_t nwait; /* sleepers: release skips the wake when 0 */
  uint32_t maxvalue;      /* bounded: the initial value; else MAX */
  uint32_t bounded;
};

struct mp_sem {
  struct mp__shobj h;
  struct ssem *s;
  uint32_t maxvalue; /* read once: the shared copy may be rewritten */
  int bounded;
};

static int
sem_adopt(struct mp__shobj *h, size_t size, const mp__shmore *more)
{
  struct ssem *s = mp__arena_ptr(h->ref);
  uint32_t maxvalue = MP__SHARED_LOAD(&s->maxvalue);
  uint32_t bounded = MP__SHARED_LOAD(&s->bounded);
  if (bounded > 1 || maxvalue > MP_SEM_VALUE_MAX
      || (!bounded && maxvalue != MP_SEM_VALUE_MAX))
    return mp_seterr(MP_EMALFORMED, "bad shared semaphore header");
  mp_sem *m = (mp_sem *)h;
  m->maxvalue = maxvalue;
  m->bounded = (int)bounded;
  return 0;
}

/* state: (location,) */
MP__SHTYPE(mp__sem_type, "mproc.Semaphore", .kind = MP__K_SEM,
           .size = sizeof(mp_sem), .block = sizeof(struct ssem),
           .data = offsetof(mp_sem, s), .adopt = sem_adopt);

int
mp_sem_new(mp_sem **out, int value, const mp_sem_opts *opts)
{
  mp__errdetail_clear();
  if (value < 0) {
    if (out)
      *out = NULL;
    return mp_seterr(MP_EINVAL, "semaphore initial value must be >= 0");
  }
  int bounded = opts && opts->bounded;
  struct ssem init = {.value = (uint32_t)value,
                      .bounded = (uint32_t)bounded,
                      .maxvalue = bounded ? (uint32_t)value
                                          : MP_SEM_VALUE_MAX};
  return mp__shobj_new(&mp__sem_type, NULL, sizeof init, 16, &init,
                       sizeof init, out);
}

int
mp_sem_acquire(mp_sem *m, double timeout)
{
  mp__errdetail_clear();
  if (!m)
    return MP_EINVAL;
  int rc0 = mp__timeout_check(timeout);
  if (rc0)
    return rc0;
  struct ssem *s = m->s;
  mp__deadline dl = 0;
  int have_dl = 0;
  for (;;) {
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    while (v > 0)
      if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1,
                                                memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    if (!have_dl) {
      mp__deadline_set(timeout, &dl);
      have_dl = 1;
    }
    if (dl != MP__NO_DEADLINE && mp__now_ns() >= dl)
      return MP_ETIMEDOUT;
    /* seq_cst pairs with release(): either it sees our nwait or we see its
     * value (the futex re-checks value == 0 atomically). */
    atomic_fetch_add(&s->nwait, 1);
    int r = mp__futex_wait((uint32_t *)&s->value, 0, dl);
    atomic_fetch_sub(&s->nwait, 1);
    (void)r; /* re-check the count whatever woke us */
  }
}

int
mp_sem_release(mp_sem *m)
{
  mp__errdetail_clear();
  if (!m)
    return MP_EINVAL;
  struct ssem *s = m->s;
  uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
  do {
    if (v >= m->maxvalue)
      return mp_seterr(MP_EOVERFLOW, m->bounded
                                         ? "semaphore released too many times"
                                         : "semaphore count at its maximum");
  } while (!atomic_compare_exchange_weak(&s->value, &v, v + 1));
  if (atomic_load(&s->nwait))
    mp__futex_wake((uint32_t *)&s->value, 1);
  return 0;
}

int
mp_sem_get_value(const mp_sem *m)
{
  mp__errdetail_clear();
  if (!m)
    return MP_EINVAL;
  uint32_t v = atomic_load(&m->s->value);
  /* another process may have written any count: never return a code */
  return v > MP_SEM_VALUE_MAX ? MP_SEM_VALUE_MAX : (int)v;
}
