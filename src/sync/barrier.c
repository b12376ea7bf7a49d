/* SPDX-License-Identifier: MIT */
/* Barrier, after threading.Barrier's state machine (filling, draining,
 * resetting, broken), on an internal owner-death-safe lock and a futex
 * sequence word.  Each waiter records its pid in a slot so that the others,
 * waking in slices, notice a waiter that died and break the barrier. */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

#include "mproc/sync.h"
#include "platform/platform.h"
#include "core/internal.h" /* function references */
#include "sync/sync_internal.h"

enum { FILLING = 0, DRAINING = 1, RESETTING = -1, BROKEN = -2 };
#define MAX_PARTIES 1000000
#define SLICE_NS 50000000LL /* dead-waiter check period */

struct slot {
  uint32_t pid;
  uint32_t pad;
  uint64_t start;
};

struct sbarrier {
  struct mp__slock lk;
  _Atomic uint32_t seq;
  _Atomic int32_t state;
  _Atomic uint32_t count;
  uint32_t parties;
  double timeout;
  struct slot w[];
};

struct mp_barrier {
  struct mp__shobj h;
  struct sbarrier *s;
  int (*action)(void *);
  void *arg;
  /* read once: the slots w[0..parties) are what the block holds, whatever
   * is written into the shared copies later */
  uint32_t parties;
  double timeout;
};

static size_t
barrier_size(uint32_t parties)
{
  return sizeof(struct sbarrier) + (size_t)parties * sizeof(struct slot);
}

/* The handle keeps more->fn and more->arg, its action. */
static int
barrier_adopt(struct mp__shobj *h, size_t size, const mp__shmore *more)
{
  struct sbarrier *s = mp__arena_ptr(h->ref);
  uint32_t parties = MP__SHARED_LOAD(&s->parties);
  double timeout;
  __atomic_load(&s->timeout, &timeout, __ATOMIC_RELAXED);
  if (parties < 1 || parties > MAX_PARTIES || barrier_size(parties) > size
      || !(timeout >= 0))
    return mp_seterr(MP_EMALFORMED, "bad shared barrier header (%u parties "
                     "in %zu bytes)", (unsigned)parties, size);
  mp_barrier *b = (mp_barrier *)h;
  b->action = more->fn;
  b->arg = more->arg;
  b->parties = parties;
  b->timeout = timeout;
  return 0;
}

/* state: (location, its action).  The action crosses as a function
 * reference of the process layer (object file, offset, build-id), resolved
 * in the receiver against its own load base; one that cannot be resolved
 * leaves the receiver's handle without an action.  Its argument pointer
 * only makes sense in the creating process and fork children: other
 * receivers call the action with NULL. */

static mp_obj *
fn_reduce(int (*fn)(void *))
{
  if (!fn)
    return mp_none();
  mp__buf b = {0};
  mp_obj *o;
  if (mp__funcref_encode((const void *)fn, 1, &b) == 0)
    o = mp_bytes_new(b.data, b.len);
  else
    o = mp_none();
  mp__buf_release(&b);
  return o;
}

static int (*fn_rebuild(const mp_obj *o))(void *)
{
  const void *data;
  size_t len;
  if (mp_obj_type(o) != MP_T_BYTES || mp_bytes_get(o, &data, &len))
    return NULL;
  const uint8_t *p = data;
  void *addr = NULL;
  char err[256];
  if (mp__funcref_decode_code(&p, p + len, &addr, err, sizeof err) != 0) {
    mp_log_warning("barrier action not available here: %s", err);
    return NULL;
  }
  return (int (*)(void *))addr;
}

static mp_obj *
barrier_reduce_more(mp__redctx *c, const struct mp__shobj *h)
{
  return fn_reduce(((const mp_barrier *)h)->action);
}

static int
barrier_rebuild_more(mp__rebctx *c, const mp_obj *item, mp__shmore *more)
{
  more->fn = fn_rebuild(item);
  return 0;
}

MP__SHTYPE(mp__barrier_type, "mproc.Barrier", .kind = MP__K_BARRIER,
           .size = sizeof(mp_barrier), .block = sizeof(struct sbarrier),
           .data = offsetof(mp_barrier, s), .adopt = barrier_adopt, .reduce_more = barrier_reduce_more,
           .rebuild_more = barrier_rebuild_more);

int
mp_barrier_new(mp_barrier **out, int parties, const mp_barrier_opts *opts)
{
  mp__errdetail_clear();
  if (!out)
    return MP_EINVAL;
  *out = NULL;
  if (parties < 1 || parties > MAX_PARTIES)
    return mp_seterr(MP_EINVAL, "parties must be in 1..%d", MAX_PARTIES);
  int rc = opts ? mp__timeout_field_check(opts->timeout, "mp_barrier_new") : 0;
  if (rc)
    return rc;
  struct sbarrier init = {.parties = (uint32_t)parties,
                          .timeout = opts && opts->timeout > 0 ? opts->timeout
                                                               : 0};
  mp__shmore more = {.fn = opts ? opts->action : NULL,
                     .arg = opts ? opts->arg : NULL};
  return mp__shobj_new(&mp__barrier_type, &more,
                       barrier_size((uint32_t)parties), 16, &init,
                       sizeof init, out);
}

static void
notify_all(struct sbarrier *s)
{
  atomic_fetch_add(&s->seq, 1);
  mp__futex_wake((uint32_t *)&s->seq, INT_MAX);
}

static void
set_state(struct sbarrier *s, int32_t st)
{
  atomic_store_explicit(&s->state, st, memory_order_relaxed);
}

static int32_t
state(struct sbarrier *s)
{
  return atomic_load_explicit(&s->state, memory_order_relaxed);
}

/* Remove waiters whose process died; returns how many (lock held). */
static uint32_t
purge_dead(struct sbarrier *s, uint32_t parties)
{
  uint32_t n = 0;
  for (uint32_t i = 0; i < parties; i++) {
    if (s->w[i].pid && !mp__proc_alive(s->w[i].pid, s->w[i].start, 0)) {
      s->w[i].pid = 0;
      n++;
    }
  }
  if (n) {
    uint32_t c = atomic_load_explicit(&s->count, memory_order_relaxed);
    c = c >= n ? c - n : 0;
    atomic_store_explicit(&s->count, c, memory_order_relaxed);
    /* a waiter that died on its way out of a draining (or resetting) round
     * would otherwise hold the next round back forever */
    int32_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    if (c == 0 && (st == DRAINING || st == RESETTING)) {
      atomic_store_explicit(&s->state, FILLING, memory_order_relaxed);
      atomic_fetch_add(&s->seq, 1);
      mp__futex_wake((uint32_t *)&s->seq, INT_MAX);
    }
  }
  return n;
}

static void
lock_barrier(struct sbarrier *s, uint32_t parties)
{
  if (mp__slock_acquire(&s->lk, MP__NO_DEADLINE) == MP_EOWNERDEAD) {
    /* a process died mid-update: drop dead waiters, break the round */
    purge_dead(s, parties);
    set_state(s, BROKEN);
    notify_all(s);
  }
}

/* Sleep until the state may have changed, a slice passes or the deadline.
 * MP_ETIMEDOUT at the deadline, 1 if a dead waiter was found, else 0. */
static int
cwait(struct sbarrier *s, uint32_t parties, mp__deadline dl)
{
  uint32_t seq0 = atomic_load(&s->seq);
  mp__slock_release(&s->lk);
  mp__deadline wake = mp__now_ns() + SLICE_NS;
  if (dl != MP__NO_DEADLINE && dl < wake)
    wake = dl;
  int r = mp__futex_wait((uint32_t *)&s->seq, seq0, wake);
  lock_barrier(s, parties);
  if (r == MP_ETIMEDOUT) {
    if (dl != MP__NO_DEADLINE && mp__now_ns() >= dl)
      return MP_ETIMEDOUT;
    if (purge_dead(s, parties))
      return 1;
  }
  return 0;
}

static void
break_barrier(struct sbarrier *s)
{
  set_state(s, BROKEN);
  notify_all(s);
}

int
mp_barrier_wait(mp_barrier *b, double timeout)
{
  mp__errdetail_clear();
  if (!b)
    return MP_EINVAL;
  struct sbarrier *s = b->s;
  uint32_t parties = b->parties;
  mp__deadline dl;
  int rc0 = mp__deadline_set(timeout, &dl);
  if (rc0)
    return rc0;
  lock_barrier(s, parties);
  /* a previous round still draining, or a reset in progress */
  while (state(s) == DRAINING || state(s) == RESETTING)
    cwait(s, parties, MP__NO_DEADLINE);
  if (state(s) < 0) {
    mp__slock_release(&s->lk);
    return mp_seterr(MP_EBROKEN, "barrier is broken");
  }
  uint32_t index = atomic_load_explicit(&s->count, memory_order_relaxed);
  if (index >= parties) { /* no real round gets here: a garbled count */
    break_barrier(s);
    mp__slock_release(&s->lk);
    return mp_seterr(MP_EBROKEN, "barrier state is corrupt");
  }
  atomic_store_explicit(&s->count, index + 1, memory_order_relaxed);
  uint32_t slot = 0;
  while (slot < parties && s->w[slot].pid)
    slot++;
  if (slot < parties) {
    s->w[slot].pid = mp__getpid();
    s->w[slot].start = mp__proc_starttime();
  }
  int ret = (int)index;
  if (index + 1 >= parties) {
    /* the last to arrive: a waiter that died meanwhile breaks the round
     * (the cheap check: kill(pid, 0); zombies are found by the sleepers) */
    int dead = 0;
    for (uint32_t i = 0; i < parties && !dead; i++)
      if (i != slot && s->w[i].pid && !mp__proc_alive(s->w[i].pid, 0, 1))
        dead = 1;
    if (dead)
      purge_dead(s, parties);
    int rc = dead ? MP_EBROKEN : b->action ? b->action(b->arg) : 0;
    if (rc != 0) {
      break_barrier(s);
      ret = rc < 0 ? rc : MP_EBROKEN;
    } else {
      set_state(s, DRAINING);
      notify_all(s);
    }
  } else {
    while (state(s) == FILLING) {
      int r = cwait(s, parties, dl);
      if (r != 0) { /* timed out, or a waiter died */
        break_barrier(s);
        break;
      }
    }
    if (state(s) < 0)
      ret = mp_seterr(MP_EBROKEN, "barrier broken while waiting");
  }
  /* exit */
  if (slot < parties)
    s->w[slot].pid = 0;
  uint32_t c = atomic_load_explicit(&s->count, memory_order_relaxed);
  if (c > 0)
    atomic_store_explicit(&s->count, --c, memory_order_relaxed);
  if (c == 0 && (state(s) == RESETTING || state(s) == DRAINING)) {
    set_state(s, FILLING);
    notify_all(s);
  }
  mp__slock_release(&s->lk);
  return ret;
}

int
mp_barrier_abort(mp_barrier *b)
{
  mp__errdetail_clear();
  if (!b)
    return MP_EINVAL;
  lock_barrier(b->s, b->parties);
  break_barrier(b->s);
  mp__slock_release(&b->s->lk);
  return 0;
}

int
mp_barrier_reset(mp_barrier *b)
{
  mp__errdetail_clear();
  if (!b)
    return MP_EINVAL;
  struct sbarrier *s = b->s;
  lock_barrier(s, b->parties);
  if (atomic_load(&s->count) > 0) {
    if (state(s) == FILLING || state(s) == BROKEN)
      set_state(s, RESETTING);
  } else {
    set_state(s, FILLING);
  }
  notify_all(s);
  mp__slock_release(&s->lk);
  return 0;
}

double
mp_barrier_timeout(const mp_barrier *b)
{
  double t = b ? b->timeout : 0; /* read once, checked, at rebuild */
  return t > 0 ? t : MP_FOREVER;
}

int
mp_barrier_parties(const mp_barrier *b)
{
  mp__errdetail_clear();
  return b ? (int)b->parties : MP_EINVAL;
}

int
mp_barrier_n_waiting(const mp_barrier *b)
{
  mp__errdetail_clear();
  if (!b)
    return MP_EINVAL;
  uint32_t n = atomic_load(&b->s->count);
  return state(b->s) == FILLING ? (int)(n < b->parties ? n : b->parties) : 0;
}

int
mp_barrier_broken(const mp_barrier *b)
{
  mp__errdetail_clear();
  if (!b)
    return MP_EINVAL;
  return state(b->s) == BROKEN;
}

