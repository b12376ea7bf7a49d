/* Event: one futex word -- 0 clear, 1 set, 2 clear with sleepers. */
#include <limits.h>
#include <stdlib.h>

#include "mproc/sync.h"
#include "platform/futex.h"
#include "sync/sync_internal.h"

struct sevent {
  _Atomic uint32_t word;
};

struct mp_event {
  struct mp__shobj h;
  struct sevent *s;
};

int
mp__event_adopt(mp__shref ref, size_t size, mp_event **out)
{
  if (size < sizeof(struct sevent))
    return mp_seterr(MP_EMALFORMED, "shared event block too small");
  mp_event *e = calloc(1, sizeof *e);
  if (!e)
    return MP_ENOMEM;
  atomic_init(&e->h.refs, 1);
  e->h.kind = MP__K_EVENT;
  e->h.ref = ref;
  e->s = mp__arena_ptr(ref);
  *out = e;
  return 0;
}

int
mp_event_new(mp_event **out)
{
  if (!out)
    return MP_EINVAL;
  *out = NULL;
  mp__shref ref;
  int err = 0;
  if (!mp__arena_alloc(sizeof(struct sevent), 16, MP__K_EVENT, &ref, &err))
    return err;
  if ((err = mp__event_adopt(ref, sizeof(struct sevent), out)) != 0)
    mp__arena_unref(ref);
  return err;
}

void
mp_event_free(mp_event *e)
{
  if (!e || atomic_fetch_sub(&e->h.refs, 1) != 1)
    return;
  mp__arena_unref(e->h.ref);
  free(e);
}

int
mp_event_set(mp_event *e)
{
  if (!e)
    return MP_EINVAL;
  if (atomic_exchange(&e->s->word, 1) == 2)
    mp__futex_wake((uint32_t *)&e->s->word, INT_MAX);
  return 0;
}

int
mp_event_clear(mp_event *e)
{
  if (!e)
    return MP_EINVAL;
  uint32_t one = 1;
  atomic_compare_exchange_strong(&e->s->word, &one, 0);
  return 0;
}

int
mp_event_is_set(const mp_event *e)
{
  if (!e)
    return MP_EINVAL;
  return atomic_load(&e->s->word) == 1;
}

int
mp_event_wait(mp_event *e, double timeout)
{
  if (!e)
    return MP_EINVAL;
  if (atomic_load_explicit(&e->s->word, memory_order_acquire) == 1)
    return mp__timeout_check(timeout);
  mp__deadline dl;
  int rc = mp__deadline_set(timeout, &dl);
  if (rc)
    return rc;
  for (;;) {
    uint32_t v = atomic_load_explicit(&e->s->word, memory_order_acquire);
    if (v == 1)
      return 0;
    if (dl != MP__NO_DEADLINE && mp__now_ns() >= dl)
      return MP_ETIMEDOUT;
    /* clear (0, or a word another process garbled): mark a sleeper */
    if (v != 2 && !atomic_compare_exchange_strong(&e->s->word, &v, 2))
      continue;
    mp__futex_wait((uint32_t *)&e->s->word, 2, dl);
  }
}
