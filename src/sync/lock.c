/* SPDX-License-Identifier: MIT */
/* Lock and RLock on a futex word holding the owner's pid (see sync.h for
 * the owner-death mechanism). */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#include "mproc/sync.h"
#include "platform/platform.h"
#include "sync/sync_internal.h"

#define SLICE_MIN_NS 10000000LL  /* first liveness check after 10 ms */
#define SLICE_MAX_NS 200000000LL /* then at most every 200 ms */

/* pid << 40 | start time, cached per process (recomputed when the pid
 * changes, i.e. after fork). */
static _Atomic uint64_t g_oinfo MP__HOT_DATA;

static inline uint64_t
my_oinfo(uint32_t pid)
{
  uint64_t oi = atomic_load_explicit(&g_oinfo, memory_order_relaxed);
  if (MP__UNLIKELY((uint32_t)(oi >> 40) != pid)) {
    oi = (uint64_t)pid << 40
         | (mp__proc_starttime() & ((UINT64_C(1) << 40) - 1));
    atomic_store_explicit(&g_oinfo, oi, memory_order_relaxed);
  }
  return oi;
}

/* Is the holder `owner` (a pid) of l dead?  `full`: also read /proc. */
static int
owner_dead(struct mp__slock *l, uint32_t owner, int full)
{
  if (owner == mp__getpid())
    return 0;
  uint64_t oi = atomic_load_explicit(&l->oinfo, memory_order_relaxed);
  uint64_t start = (uint32_t)(oi >> 40) == owner
                       ? (oi & ((UINT64_C(1) << 40) - 1))
                       : 0;
  /* cheap: kill(pid, 0) only; full: also zombie and start time (pid
   * reuse), the start time being the one the owner wrote when it took the
   * lock (0 if that record belongs to another pid: not compared then) */
  return !mp__proc_alive(owner, start, !full);
}

/* This thread among the live threads of this process: the thread pointer
 * (a register read, where a cached kernel tid costs a TLS-descriptor call
 * in a shared library).  Like Python's get_ident(), which multiprocessing's
 * SemLock records as its owner, it may be reused once a thread exits. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_thread_pointer)
#define HAVE_THREAD_POINTER 1
#endif
#endif

static inline uint64_t
thread_id(void)
{
#ifdef HAVE_THREAD_POINTER
  return (uint64_t)(uintptr_t)__builtin_thread_pointer();
#else
  return (uint64_t)(uintptr_t)pthread_self();
#endif
}

/* The owner's bookkeeping, computed before the word is ours and stored
 * right after: whatever runs while the lock is held is time another
 * process may spend waiting for it.  The start time record is stored only
 * when the lock changes hands between processes (a process taking it back
 * is the common case under contention). */
struct owner {
  uint64_t thread, oinfo;
};

static inline struct owner
owner_of(uint32_t me)
{
  return (struct owner){thread_id(), my_oinfo(me)};
}

static inline void
took(struct mp__slock *l, struct owner o)
{
  atomic_store_explicit(&l->owner, o.thread, memory_order_relaxed);
  if (atomic_load_explicit(&l->oinfo, memory_order_relaxed) != o.oinfo)
    atomic_store_explicit(&l->oinfo, o.oinfo, memory_order_relaxed);
}

/* The word 0 -> me: the uncontended case. */
static inline int
try_take(struct mp__slock *l, uint32_t me, struct owner o)
{
  uint32_t v = 0;
  if (MP__LIKELY(atomic_compare_exchange_strong_explicit(
          &l->word, &v, me, memory_order_acquire, memory_order_relaxed))) {
    took(l, o);
    return 1;
  }
  return 0;
}

/* The lock after a first attempt found it taken.  No spinning: a waiter
 * polling the word would slow its holder down and take the lock over at
 * each release, handing it between processes at the cost of a cache line
 * transfer each time.  As on a default pthread mutex a waiter sleeps at
 * once, and a release makes a system call only when someone sleeps. */
static int
acquire_contended(struct mp__slock *l, uint32_t me, mp__deadline deadline)
{
  struct owner o = owner_of(me);
  uint32_t v;
  uint32_t mine = me; /* after sleeping once: keep the waiters bit set */
  int64_t slice = SLICE_MIN_NS;
  for (;;) {
    v = atomic_load_explicit(&l->word, memory_order_relaxed);
    if (v == 0) {
      if (atomic_compare_exchange_weak_explicit(&l->word, &v, mine,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        took(l, o);
        return 0;
      }
      continue;
    }
    uint32_t owner = v & MP__LK_PIDMASK;
    int64_t now = 0;
    if (deadline != MP__NO_DEADLINE && (now = mp__now_ns()) >= deadline) {
      if (owner_dead(l, owner, 0))
        goto takeover;
      return MP_ETIMEDOUT;
    }
    if (!(v & MP__LK_WAITERS)) {
      if (!atomic_compare_exchange_weak_explicit(
              &l->word, &v, v | MP__LK_WAITERS, memory_order_relaxed,
              memory_order_relaxed))
        continue;
      v |= MP__LK_WAITERS;
    }
    int r;
    if (deadline == MP__NO_DEADLINE) {
      r = mp__futex_wait_rel((uint32_t *)&l->word, v, slice);
    } else {
      mp__deadline wake = now + slice;
      r = mp__futex_wait((uint32_t *)&l->word, v,
                         deadline < wake ? deadline : wake);
    }
    mine = me | MP__LK_WAITERS;
    if (r == MP_ETIMEDOUT
        && atomic_load_explicit(&l->word, memory_order_relaxed) == v) {
      if (owner_dead(l, owner, 1))
        goto takeover;
      slice = slice * 2 > SLICE_MAX_NS ? SLICE_MAX_NS : slice * 2;
    }
    continue;
  takeover:
    /* Only one waiter wins the exchange from the dead owner's word. */
    if (atomic_compare_exchange_strong_explicit(
            &l->word, &v, me | MP__LK_WAITERS, memory_order_acquire,
            memory_order_relaxed)) {
      took(l, o);
      return MP_EOWNERDEAD;
    }
  }
}

MP__HOT int
mp__slock_acquire(struct mp__slock *l, mp__deadline deadline)
{
  uint32_t me = mp__getpid();
  if (try_take(l, me, owner_of(me)))
    return 0;
  return acquire_contended(l, me, deadline);
}

static inline int
release(struct mp__slock *l)
{
  if (atomic_load_explicit(&l->word, memory_order_relaxed) == 0)
    return MP_ESTATE;
  /* Clear the owner thread first: once the word is 0 a new owner may
   * write its own.  One exchange then (no compare-and-swap loop that
   * waiters setting their bit would make retry). */
  atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
  uint32_t v = atomic_exchange_explicit(&l->word, 0, memory_order_release);
  if (v == 0)
    return MP_ESTATE;
  if (v & MP__LK_WAITERS)
    mp__futex_wake((uint32_t *)&l->word, 1);
  return 0;
}

MP__HOT int
mp__slock_release(struct mp__slock *l)
{
  return release(l);
}

int
mp__slock_is_mine(const struct mp__slock *l)
{
  uint32_t v = atomic_load_explicit(&((struct mp__slock *)l)->word,
                                    memory_order_relaxed);
  return (v & MP__LK_PIDMASK) == mp__getpid()
         && atomic_load_explicit(&((struct mp__slock *)l)->owner,
                                 memory_order_relaxed)
                == thread_id();
}

/* ---- handles --------------------------------------------------------- */

/* state: (location, recursive) */
static mp_obj *
lock_reduce_more(mp__redctx *c, const struct mp__shobj *h)
{
  return mp_bool_new(h->kind == MP__K_RLOCK);
}

static int
lock_rebuild_more(mp__rebctx *c, const mp_obj *item, mp__shmore *more)
{
  int rec;
  if (mp_bool_get(item, &rec))
    return mp_seterr(MP_EMALFORMED, "bad lock state");
  more->kind = rec ? MP__K_RLOCK : MP__K_LOCK;
  return 0;
}

MP__SHTYPE(mp__lock_type, "mproc.Lock", .kind = MP__K_LOCK,
           .size = sizeof(mp_lock), .block = sizeof(struct mp__slock),
           .data = offsetof(mp_lock, s), .reduce_more = lock_reduce_more,
           .rebuild_more = lock_rebuild_more);

static int
lock_new(mp_lock **out, int recursive)
{
  return mp__shobj_new(
      &mp__lock_type,
      &(mp__shmore){.kind = recursive ? MP__K_RLOCK : MP__K_LOCK},
      sizeof(struct mp__slock), 16, NULL, 0, out);
}

int
mp_lock_new(mp_lock **out)
{
  mp__errdetail_clear();
  return lock_new(out, 0);
}

int
mp_rlock_new(mp_rlock **out)
{
  mp__errdetail_clear();
  return lock_new(out, 1);
}

void
mp_rlock_free(mp_rlock *l)
{
  mp_lock_free(l);
}

/* Lock acquire and release are the one exception to "every call clears the
 * error detail when it starts" (errors.h): they clear it only off their
 * fast path, which is a few nanoseconds, and a thread-local access from
 * the shared library is a call through a TLS descriptor -- a third of the
 * uncontended time and, under contention, time the lock is held.  Every
 * failure still leaves its own text or "". */
int
mp_lock_acquire(mp_lock *l, double timeout)
{
  if (MP__UNLIKELY(!l || timeout != timeout)) {
    mp__errdetail_clear();
    return l ? mp__timeout_check(timeout) : MP_EINVAL;
  }
  struct mp__slock *s = l->s;
  mp__deadline dl;
  uint32_t me = mp__getpid();
  struct owner o = owner_of(me);
  if (l->h.kind == MP__K_RLOCK) {
    if (try_take(s, me, o)) {
      s->count = 1;
      return 0;
    }
    mp__errdetail_clear();
    if (mp__slock_is_mine(s)) {
      if (s->count == UINT32_MAX)
        return mp_seterr(MP_EOVERFLOW, "RLock recursion level too deep");
      s->count++;
      return 0;
    }
    mp__deadline_set(timeout, &dl);
    int rc = acquire_contended(s, me, dl);
    if (rc == 0 || rc == MP_EOWNERDEAD)
      s->count = 1;
    return rc;
  }
  /* the uncontended path without a clock read */
  if (try_take(s, me, o))
    return 0;
  mp__errdetail_clear();
  mp__deadline_set(timeout, &dl);
  return acquire_contended(s, me, dl);
}

int
mp_rlock_acquire(mp_rlock *l, double timeout)
{
  return mp_lock_acquire(l, timeout);
}

int
mp_lock_release(mp_lock *l)
{
  /* clears the detail only when it fails (see mp_lock_acquire) */
  if (MP__UNLIKELY(!l)) {
    mp__errdetail_clear();
    return MP_EINVAL;
  }
  struct mp__slock *s = l->s;
  if (l->h.kind == MP__K_RLOCK) {
    if (!mp__slock_is_mine(s))
      return mp_seterr(MP_ENOTOWNER,
                       "cannot release un-acquired lock (not the owner)");
    if (--s->count > 0)
      return 0;
    return release(s);
  }
  /* release() fails only with MP_ESTATE, and that failure sets the text */
  int rc = release(s);
  if (rc == MP_ESTATE)
    return mp_seterr(MP_ESTATE, "semaphore or lock released too many times");
  return rc;
}

int
mp_rlock_release(mp_rlock *l)
{
  return mp_lock_release(l);
}

int
mp_lock_is_mine(const mp_lock *l)
{
  mp__errdetail_clear();
  return l ? mp__slock_is_mine(l->s) : 0;
}

int
mp_lock_is_recursive(const mp_lock *l)
{
  mp__errdetail_clear();
  return l && l->h.kind == MP__K_RLOCK;
}

int
mp_lock_locked(const mp_lock *l)
{
  mp__errdetail_clear();
  return l ? atomic_load(&l->s->word) != 0 : 0;
}

int
mp__lock_save_release(mp_lock *l, uint32_t *saved)
{
  if (!mp__slock_is_mine(l->s))
    return MP_ENOTOWNER;
  *saved = l->h.kind == MP__K_RLOCK ? l->s->count : 1;
  l->s->count = 0;
  return mp__slock_release(l->s);
}

int
mp__lock_restore_acquire(mp_lock *l, uint32_t saved)
{
  int rc = mp__slock_acquire(l->s, MP__NO_DEADLINE);
  if (l->h.kind == MP__K_RLOCK)
    l->s->count = saved;
  return rc;
}
