/* Semaphore / BoundedSemaphore: a futex count, lock-free on both paths. */
#include <limits.h>
#include <stdlib.h>

#include "mproc/sync.h"
#include "platform/futex.h"
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

int
mp__sem_adopt(mp__shref ref, size_t size, mp_sem **out)
{
  struct ssem *s = mp__arena_ptr(ref);
  if (size < sizeof *s)
    return mp_seterr(MP_EMALFORMED, "shared semaphore block too small");
  uint32_t maxvalue = MP__SHARED_LOAD(&s->maxvalue);
  uint32_t bounded = MP__SHARED_LOAD(&s->bounded);
  if (bounded > 1 || maxvalue > MP_SEM_VALUE_MAX
      || (!bounded && maxvalue != MP_SEM_VALUE_MAX))
    return mp_seterr(MP_EMALFORMED, "bad shared semaphore header");
  mp_sem *m = calloc(1, sizeof *m);
  if (!m)
    return MP_ENOMEM;
  atomic_init(&m->h.refs, 1);
  m->h.kind = MP__K_SEM;
  m->h.ref = ref;
  m->s = s;
  m->maxvalue = maxvalue;
  m->bounded = (int)bounded;
  *out = m;
  return 0;
}

int
mp_sem_new(mp_sem **out, int value, const mp_sem_opts *opts)
{
  if (!out)
    return MP_EINVAL;
  *out = NULL;
  if (value < 0)
    return mp_seterr(MP_EINVAL, "semaphore initial value must be >= 0");
  mp__shref ref;
  int err = 0;
  struct ssem *s = mp__arena_alloc(sizeof *s, 16, MP__K_SEM, &ref, &err);
  if (!s)
    return err;
  atomic_store(&s->value, (uint32_t)value);
  s->bounded = opts && opts->bounded;
  s->maxvalue = s->bounded ? (uint32_t)value : MP_SEM_VALUE_MAX;
  if ((err = mp__sem_adopt(ref, sizeof *s, out)) != 0)
    mp__arena_unref(ref);
  return err;
}

void
mp_sem_free(mp_sem *m)
{
  if (!m || atomic_fetch_sub(&m->h.refs, 1) != 1)
    return;
  mp__arena_unref(m->h.ref);
  free(m);
}

int
mp_sem_acquire(mp_sem *m, double timeout)
{
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
  if (!m)
    return MP_EINVAL;
  uint32_t v = atomic_load(&m->s->value);
  /* another process may have written any count: never return a code */
  return v > MP_SEM_VALUE_MAX ? MP_SEM_VALUE_MAX : (int)v;
}
