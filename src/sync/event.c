/* SPDX-License-Identifier: MIT */
/* Event: one futex word -- 0 clear, 1 set, 2 clear with sleepers. */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

#include "mproc/sync.h"
#include "platform/platform.h"
#include "sync/sync_internal.h"

struct sevent {
  _Atomic uint32_t word;
};

struct mp_event {
  struct mp__shobj h;
  struct sevent *s;
};

/* state: (location,) */
MP__SHTYPE(mp__event_type, "mproc.Event", .kind = MP__K_EVENT,
           .size = sizeof(mp_event), .block = sizeof(struct sevent),
           .data = offsetof(mp_event, s));

int
mp_event_new(mp_event **out)
{
  mp__errdetail_clear();
  return mp__shobj_new(&mp__event_type, NULL, sizeof(struct sevent), 16,
                       NULL, 0, out);
}

int
mp_event_set(mp_event *e)
{
  mp__errdetail_clear();
  if (!e)
    return MP_EINVAL;
  if (atomic_exchange(&e->s->word, 1) == 2)
    mp__futex_wake((uint32_t *)&e->s->word, INT_MAX);
  return 0;
}

int
mp_event_clear(mp_event *e)
{
  mp__errdetail_clear();
  if (!e)
    return MP_EINVAL;
  uint32_t one = 1;
  atomic_compare_exchange_strong(&e->s->word, &one, 0);
  return 0;
}

int
mp_event_is_set(const mp_event *e)
{
  mp__errdetail_clear();
  if (!e)
    return MP_EINVAL;
  return atomic_load(&e->s->word) == 1;
}

int
mp_event_wait(mp_event *e, double timeout)
{
  mp__errdetail_clear();
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
