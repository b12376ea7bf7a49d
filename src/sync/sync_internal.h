/* SPDX-License-Identifier: MIT */
/* Internals of the sync layer shared by its files (and by src/shm, which
 * builds Value/Array on the same locks). */
#ifndef MPROC_SYNC_INTERNAL_H
#define MPROC_SYNC_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/internal.h"
#include "mproc/sync.h"
#include "shared/shared_internal.h"

/* ---- the shared lock word ------------------------------------------------
 * word: 0 = free, else owner pid | MP__LK_WAITERS (someone sleeps on it).
 * Pids fit in 22 bits (PID_MAX_LIMIT), so the top bits are free, as in the
 * kernel's robust-futex format. */
#define MP__LK_WAITERS 0x80000000u
#define MP__LK_PIDMASK 0x3fffffffu

struct mp__slock {
  _Atomic uint32_t word;
  uint32_t count;         /* RLock recursion level (owner only) */
  _Atomic uint64_t owner; /* owning thread (its thread pointer), 0 free */
  _Atomic uint64_t oinfo; /* owner pid << 40 | start time (pid reuse) */
};

/* 0, MP_ETIMEDOUT or MP_EOWNERDEAD (acquired). Non-recursive. */
int mp__slock_acquire(struct mp__slock *l, mp__deadline deadline);
/* Release whoever holds it: 0 or MP_ESTATE when free. */
int mp__slock_release(struct mp__slock *l);
int mp__slock_is_mine(const struct mp__slock *l);

/* ---- handles ----------------------------------------------------------------
 * Each primitive is a shared object (shared/shared_internal.h) of one of
 * these types, each defined in its primitive's file. */
extern const mp__shtype mp__lock_type, mp__sem_type, mp__event_type,
    mp__cond_type, mp__barrier_type;

/* Lock and RLock are one type: the kind (MP__K_LOCK, MP__K_RLOCK) tells. */
struct mp_lock {
  struct mp__shobj h;
  struct mp__slock *s;
};

/* Full release and re-acquire of a Lock/RLock around a wait (Condition). */
int mp__lock_save_release(mp_lock *l, uint32_t *saved);
int mp__lock_restore_acquire(mp_lock *l, uint32_t saved);

/* For tests: a Condition's waiters not yet notified (caller holds the
 * lock). */
int mp__cond_nwait_for_tests(mp_cond *c);

#endif
