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

/* ---- handle values (handles.c) -------------------------------------------
 * A reduce context collects the fds of one handle once each; a block's
 * location becomes (arena id, slab index, slab size, offset, fd index). */
#include "mproc/obj.h"
typedef struct mp__redctx {
  int (*add_fd)(void *fdctx, int fd);
  void *fdctx;
  int fds[16];
  int n;
} mp__redctx;
mp_obj *mp__loc_reduce(mp__redctx *c, mp__shref ref);
/* Rebuild side: `used` marks fds handed to the arena (the caller closes
 * the others at the end). */
typedef struct mp__rebctx {
  int *fds;
  size_t nfds;
  unsigned char used[16];
} mp__rebctx;
int mp__loc_rebuild(mp__rebctx *c, const mp_obj *loc, mp__shref *ref,
                    void **ptr);
void mp__rebctx_done(mp__rebctx *c);
/* A lock as (loc, recursive) and back (a new handle with its reference). */
mp_obj *mp__lock_reduce_state(mp__redctx *c, mp_lock *l);
int mp__lock_rebuild_state(mp__rebctx *c, const mp_obj *st, mp_lock **out);

#endif
