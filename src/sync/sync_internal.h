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
  uint32_t kind;          /* 0 Lock, 1 RLock (informative: the block's
                             arena tag is what import checks) */
};

/* 0, MP_ETIMEDOUT or MP_EOWNERDEAD (acquired). Non-recursive. */
int mp__slock_acquire(struct mp__slock *l, mp__deadline deadline);
/* Release whoever holds it: 0 or MP_ESTATE when free. */
int mp__slock_release(struct mp__slock *l);
int mp__slock_is_mine(const struct mp__slock *l);

/* ---- local handles -------------------------------------------------------
 * Every primitive's handle starts with this header: a local reference count
 * (handle values hold references too) and the arena block it points into.
 * The kind is also the block's arena tag. */
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

/* ---- adopting a block ------------------------------------------------------
 * Make the handle of a new or imported block `ref` whose data holds `size`
 * bytes (the size import reported: the shared block's real extent).  Each
 * reads the shared fields it depends on (counts, sizes) once, checks them
 * against `size` and keeps them in the handle, so nothing written into the
 * block later can lead an accessor outside it.  0 (the handle takes over
 * ref, and lock for a Condition), MP_EMALFORMED with a detail, MP_ENOMEM;
 * on failure the caller still owns ref and lock. */
int mp__lock_adopt(mp__shref ref, size_t size, int recursive, mp_lock **out);
int mp__sem_adopt(mp__shref ref, size_t size, mp_sem **out);
int mp__event_adopt(mp__shref ref, size_t size, mp_event **out);
int mp__cond_adopt(mp__shref ref, size_t size, mp_lock *lock, mp_cond **out);
int mp__barrier_adopt(mp__shref ref, size_t size, int (*action)(void *),
                      void *arg, mp_barrier **out);
mp_lock *mp__lock_ref(mp_lock *l);
/* A Condition's lock (borrowed); a Barrier's action and its argument. */
mp_lock *mp__cond_lock(mp_cond *c);
void mp__barrier_action(mp_barrier *b, int (**action)(void *), void **arg);

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
/* Import the block `loc` describes, which must be tagged `tag`: *ptr and
 * *size as mp__arena_import gives them. */
int mp__loc_rebuild(mp__rebctx *c, const mp_obj *loc, unsigned tag,
                    mp__shref *ref, void **ptr, size_t *size);
void mp__rebctx_done(mp__rebctx *c);
/* A lock as (loc, recursive) and back (a new handle with its reference). */
mp_obj *mp__lock_reduce_state(mp__redctx *c, mp_lock *l);
int mp__lock_rebuild_state(mp__rebctx *c, const mp_obj *st, mp_lock **out);

#endif
