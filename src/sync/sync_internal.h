/* Internals of the sync layer shared by its files (and by src/shm, which
 * builds Value/Array on the same locks and arena). */
#ifndef MPROC_SYNC_INTERNAL_H
#define MPROC_SYNC_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/internal.h"
#include "sync/arena.h"

/* ---- the shared lock word ------------------------------------------------
 * word: 0 = free, else owner pid | MP__LK_WAITERS (someone sleeps on it).
 * Pids fit in 22 bits (PID_MAX_LIMIT), so the top bits are free, as in the
 * kernel's robust-futex format. */
#define MP__LK_WAITERS 0x80000000u
#define MP__LK_PIDMASK 0x3fffffffu

struct mp__slock {
  _Atomic uint32_t word;
  _Atomic uint32_t tid;   /* owning thread, 0 when free */
  _Atomic uint64_t oinfo; /* owner pid << 40 | start time (pid reuse) */
  uint32_t count;         /* RLock recursion level (owner only) */
  uint32_t kind;          /* 0 Lock, 1 RLock */
};

/* Deadline for the sync convention: MP_FOREVER (or +inf) waits forever, any
 * other negative counts as 0. */
mp__deadline mp__sync_deadline(double timeout);

/* 0, MP_ETIMEDOUT or MP_EOWNERDEAD (acquired). Non-recursive. */
int mp__slock_acquire(struct mp__slock *l, mp__deadline deadline);
/* Release whoever holds it: 0 or MP_ESTATE when free. */
int mp__slock_release(struct mp__slock *l);
int mp__slock_is_mine(const struct mp__slock *l);

/* ---- local handles -------------------------------------------------------
 * Every primitive's handle starts with this header: a local reference count
 * (handle values hold references too) and the arena block it points into. */
struct mp__shobj {
  _Atomic int refs;
  int kind;
  mp__shref ref;
};

enum {
  MP__K_LOCK = 1,
  MP__K_RLOCK,
  MP__K_SEM,
  MP__K_COND,
  MP__K_EVENT,
  MP__K_BARRIER,
  MP__K_VALUE,
  MP__K_ARRAY
};

struct mp_lock {
  struct mp__shobj h;
  struct mp__slock *s;
};

/* Full release and re-acquire of a Lock/RLock around a wait (Condition). */
int mp__lock_save_release(mp_lock *l, uint32_t *saved);
int mp__lock_restore_acquire(mp_lock *l, uint32_t saved);

/* A handle for an existing shared lock (after import); takes over `ref`. */
mp_lock *mp__lock_wrap(mp__shref ref, int recursive);
mp_lock *mp__lock_ref(mp_lock *l);

/* Waits on a 32-bit sequence word, in slices, while also checking `check`
 * (NULL: none) after each slice; returns 0 (word changed / woken),
 * MP_ETIMEDOUT (deadline) or whatever nonzero `check` returns. */
int mp__seq_wait(_Atomic uint32_t *seq, uint32_t val, mp__deadline deadline);

#endif
