/* SPDX-License-Identifier: MIT */
/* Synchronization primitives shared between processes (and threads):
 * Lock, RLock, Semaphore / BoundedSemaphore, Condition, Event, Barrier --
 * Python's multiprocessing.synchronize, for C.
 *
 * Where they live.  Every primitive is a few words in the shared arena
 * (memfd-backed memory grown in 1 MiB slabs, see
 * src/shared/shared_internal.h), built on futexes.  Objects are created in
 * a process and reach other processes as Process arguments (they are handle
 * values: mp_lock_obj() & co.), or by plain inheritance across fork().
 * 100,000 locks cost a handful of fds and mappings, not 100,000.
 *
 * Timeouts.  Every wait takes `double timeout` seconds by the one rule:
 * > 0 waits that long, <= 0 (any negative value included, as in
 * multiprocessing) does not block, MP_FOREVER waits without limit, NaN is
 * MP_EINVAL.  A wait that times out returns MP_ETIMEDOUT (where Python
 * returns False).  Waits are never interrupted by signals.
 *
 * Owner death.  A process that dies (SIGKILL included) while holding a Lock,
 * an RLock or a Condition's lock does not wedge the others: the next
 * acquirer gets the lock *and* the code MP_EOWNERDEAD, which means "you hold
 * the lock now, but the state it protects may be inconsistent".  So a
 * nonzero return does not mean "not acquired": the natural
 * `if (mp_lock_acquire(l, t) != 0) return ...;` returns holding the lock
 * once its previous owner died.  Test the result with mp_acquired(), true
 * for 0 and MP_EOWNERDEAD:
 *
 *     int rc = mp_lock_acquire(l, timeout);
 *     if (!mp_acquired(rc))
 *       return rc;              // not acquired (MP_ETIMEDOUT, ...)
 *     if (rc == MP_EOWNERDEAD)
 *       repair(&state);         // held; a dead owner may have left it torn
 *     update(&state);
 *     mp_lock_release(l);
 *
 * The same holds for mp_rlock_acquire and mp_cond_acquire.  mp_cond_wait
 * and mp_cond_wait_for (called with the lock held) return with it held,
 * MP_EOWNERDEAD or not.  A Value/Array accessor that returns MP_EOWNERDEAD
 * has done its job and released the lock (mp_acquired(rc) is true: "done";
 * mp_array_get_bytes, whose result is a length, returns the length).
 *
 * Mechanism:
 * the lock word holds the owner's pid (plus a waiters bit, like the kernel's
 * robust futexes) and the owner records its process start time; a waiter
 * sleeps in bounded slices (10 ms growing to 200 ms) and after each one asks
 * whether the owner process still exists (kill(pid, 0), then /proc/<pid>/stat
 * for zombies and pid reuse).  A non-blocking attempt (timeout 0) only does
 * the cheap kill(pid, 0) check.  Only a dead *process* counts: a thread that
 * exits while holding a lock leaves it held, as in Python (a Lock may be
 * released by any thread anyway).  A process that dies while waiting at a
 * Barrier breaks it (MP_EBROKEN for the others).  Semaphore counts are not
 * owned (any process may release), so nothing is returned for a dead
 * process's count.  A Condition waiter that dies while waiting stays counted
 * as a waiter: a later notify may then leave a wake-up unused, which makes
 * a later wait return early once (a spurious wake-up; wait_for is immune). 
 *
 * Threads and fork.  Every function is thread-safe.  Objects stay valid in
 * fork children; the child frees its copies with the same _free calls.
 *
 * Lifetime.  `_new` returns a handle with one reference; `_free` drops it.
 * The shared memory of an object lives while any process holds a handle to
 * it that it made or received (Process args under spawn/forkserver, a
 * Connection).  Handles a fork child merely inherited do not keep it alive:
 * as in Python, the creating process must keep an object it passed to fork
 * (or threading) children by inheritance until they are done with it.
 * Freeing a primitive that another thread of the same process is blocked on
 * is undefined (as for pthread objects). */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "mproc/version.h"
#include "errors.h"
#include "obj.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Lock and RLock ------------------------------------------------------
 * One type for both kinds: mp_rlock is an mp_lock made recursive, so every
 * mp_lock_* function also takes an RLock (Condition, Value and Array accept
 * either).
 *
 * Lock: non-recursive; any process or thread may release it; acquiring it
 * twice from one thread deadlocks (times out), as in Python.
 * RLock: owned by one (process, thread); the owner may acquire it again and
 * must release it as many times.  A thread is told apart from the other
 * live threads of its process as Python's threading.get_ident() tells it
 * (which multiprocessing records as a lock's owner): a thread that exits
 * holding an RLock may leave it to a thread started later. */
typedef struct mp_lock mp_lock;
typedef struct mp_lock mp_rlock;

/* A new, unlocked Lock / RLock.  0, MP_EINVAL (out NULL), MP_ENOMEM, -errno
 * (memfd/mmap failure). */
MP_EXTERN int mp_lock_new(mp_lock **out);
MP_EXTERN int mp_rlock_new(mp_rlock **out);
/* Drop the caller's reference (NULL ignored).  Freeing a held lock does not
 * release it for other processes. */
MP_EXTERN void mp_lock_free(mp_lock *lock);
MP_EXTERN void mp_rlock_free(mp_rlock *lock);

/* acquire(block=True, timeout): 0 acquired; MP_ETIMEDOUT not acquired within
 * `timeout` (0: do not block); MP_EOWNERDEAD acquired, but the previous
 * owner process died holding it; MP_EOVERFLOW an RLock's recursion count
 * would pass UINT32_MAX; MP_EINVAL NULL. */
MP_EXTERN int mp_lock_acquire(mp_lock *lock, double timeout);
MP_EXTERN int mp_rlock_acquire(mp_rlock *lock, double timeout);
/* 1 if `rc`, returned by an acquire, means the caller now holds the lock (0
 * or MP_EOWNERDEAD), else 0.  See "Owner death" above. */
static inline int
mp_acquired(int rc)
{
  return rc == 0 || rc == MP_EOWNERDEAD;
}
/* release(): 0; MP_ESTATE a Lock that is not locked (Python's ValueError);
 * MP_ENOTOWNER an RLock not owned by the calling process+thread (also when
 * unlocked: Python's AssertionError); MP_EINVAL NULL. */
MP_EXTERN int mp_lock_release(mp_lock *lock);
MP_EXTERN int mp_rlock_release(mp_rlock *lock);
/* 1 if the calling thread (of this process) holds the lock, else 0. */
MP_EXTERN int mp_lock_is_mine(const mp_lock *lock);
/* 1 for an RLock, 0 for a Lock. */
MP_EXTERN int mp_lock_is_recursive(const mp_lock *lock);
/* 1 if locked by anyone, else 0 (a snapshot). */
MP_EXTERN int mp_lock_locked(const mp_lock *lock);

/* ---- Semaphore and BoundedSemaphore ------------------------------------- */
typedef struct mp_sem mp_sem;
typedef struct mp_sem_opts {
  int bounded; /* nonzero: BoundedSemaphore -- release above the initial
                  value fails with MP_EOVERFLOW */
} mp_sem_opts;
#define MP_SEM_VALUE_MAX INT32_MAX

/* Semaphore(value).  MP_EINVAL if value < 0 or > MP_SEM_VALUE_MAX. */
MP_EXTERN int mp_sem_new(mp_sem **out, int value, const mp_sem_opts *opts);
MP_EXTERN void mp_sem_free(mp_sem *sem);
/* acquire(block, timeout): 0 or MP_ETIMEDOUT. */
MP_EXTERN int mp_sem_acquire(mp_sem *sem, double timeout);
/* release(): 0; MP_EOVERFLOW for a bounded semaphore already at its initial
 * value ("released too many times") or a count at MP_SEM_VALUE_MAX. */
MP_EXTERN int mp_sem_release(mp_sem *sem);
/* get_value(): the current count (>= 0), or MP_EINVAL. */
MP_EXTERN int mp_sem_get_value(const mp_sem *sem);

/* ---- Condition ------------------------------------------------------------
 * Condition(lock): over a given Lock or RLock (the condition takes its own
 * reference to it) or, when lock is NULL, over a new RLock of its own. */
typedef struct mp_cond mp_cond;
/* 0, MP_EINVAL (out NULL), MP_ENOMEM, -errno; _free drops the caller's
 * reference (NULL ignored). */
MP_EXTERN int mp_cond_new(mp_cond **out, mp_lock *lock);
MP_EXTERN void mp_cond_free(mp_cond *cond);
/* The underlying lock (borrowed: valid while the condition lives). */
MP_EXTERN mp_lock *mp_cond_lock(mp_cond *cond);
/* acquire / release of the underlying lock (as mp_lock_acquire/release). */
MP_EXTERN int mp_cond_acquire(mp_cond *cond, double timeout);
MP_EXTERN int mp_cond_release(mp_cond *cond);
/* wait(timeout): release the lock (all recursion levels of an RLock), sleep
 * until notified or the timeout, then re-acquire the lock (without limit,
 * as in Python) and restore its recursion level.  0 notified; MP_ETIMEDOUT;
 * MP_ENOTOWNER the caller does not hold the lock (Python's RuntimeError);
 * MP_EOWNERDEAD notified or timed out, and the lock, re-acquired, had been
 * held by a process that died. */
MP_EXTERN int mp_cond_wait(mp_cond *cond, double timeout);
/* wait_for(predicate, timeout): wait until pred(arg) returns nonzero,
 * checking it first and after each wake-up, with the lock held.  0 when the
 * predicate became true, MP_ETIMEDOUT when it was still false at the
 * deadline, MP_ENOTOWNER, MP_EINVAL (NULL pred). */
MP_EXTERN int mp_cond_wait_for(mp_cond *cond, int (*pred)(void *arg),
                               void *arg, double timeout);
/* notify(n): wake up at most n waiters (n <= 0 wakes none); notify_all():
 * all current waiters.  The caller must hold the lock: MP_ENOTOWNER
 * otherwise. */
MP_EXTERN int mp_cond_notify(mp_cond *cond, int n);
MP_EXTERN int mp_cond_notify_all(mp_cond *cond);

/* ---- Event --------------------------------------------------------------- */
typedef struct mp_event mp_event;
/* A new, clear Event: 0, MP_EINVAL (out NULL), MP_ENOMEM, -errno; _free
 * drops the caller's reference (NULL ignored).  set() wakes every waiter
 * and keeps the flag set; clear() resets it; both return 0 or MP_EINVAL. */
MP_EXTERN int mp_event_new(mp_event **out);
MP_EXTERN void mp_event_free(mp_event *ev);
MP_EXTERN int mp_event_set(mp_event *ev);
MP_EXTERN int mp_event_clear(mp_event *ev);
/* 1 if set, 0 if not (MP_EINVAL for NULL). */
MP_EXTERN int mp_event_is_set(const mp_event *ev);
/* wait(timeout): 0 once the flag is set (at once if it is), MP_ETIMEDOUT. */
MP_EXTERN int mp_event_wait(mp_event *ev, double timeout);

/* ---- Barrier --------------------------------------------------------------
 * Barrier(parties, action, timeout).  `action`, if given, is called by
 * exactly one of the waiters of each round -- the last to arrive -- before
 * any of them is released; a nonzero return breaks the barrier.  The action
 * is a plain function pointer: it crosses to fork children as is and to
 * spawn/forkserver children as a function reference (see process.h); a
 * child that cannot resolve it runs no action. */
typedef struct mp_barrier mp_barrier;
typedef struct mp_barrier_opts {
  int (*action)(void *arg); /* NULL: none */
  void *arg;                /* passed to action (meaningful per process) */
  /* The default for waits, read back with mp_barrier_timeout (Python's
   * Barrier(timeout=)); 0: none (MP_FOREVER).  Negative or NaN: MP_EINVAL. */
  double timeout;
} mp_barrier_opts;

/* MP_EINVAL unless 1 <= parties <= 1,000,000 and the options are valid. */
MP_EXTERN int mp_barrier_new(mp_barrier **out, int parties,
                             const mp_barrier_opts *opts);
MP_EXTERN void mp_barrier_free(mp_barrier *b);
/* wait(timeout): pass the barrier when `parties` waiters have arrived.
 * Returns the arrival index (0 .. parties-1, distinct for each waiter of a
 * round), or MP_EBROKEN when the barrier is or becomes broken (abort, reset
 * while waiting, a waiter timing out or dying, the action failing -- the
 * waiter whose wait timed out gets MP_EBROKEN too, as in Python), or the
 * action's negative code for the waiter that ran a failing action.
 * `timeout` follows the one rule (MP_FOREVER: no limit); Python's
 * wait() with no argument, which uses the barrier's default, is
 * mp_barrier_wait(b, mp_barrier_timeout(b)). */
MP_EXTERN int mp_barrier_wait(mp_barrier *b, double timeout);
/* The barrier's default timeout (opts.timeout), MP_FOREVER when it has
 * none (or b is NULL). */
MP_EXTERN double mp_barrier_timeout(const mp_barrier *b);
/* abort(): put the barrier into the broken state (waiters get MP_EBROKEN). */
MP_EXTERN int mp_barrier_abort(mp_barrier *b);
/* reset(): back to the empty state; current waiters get MP_EBROKEN. */
MP_EXTERN int mp_barrier_reset(mp_barrier *b);
MP_EXTERN int mp_barrier_parties(const mp_barrier *b);
/* Number of waiters currently blocked in wait (0 while draining). */
MP_EXTERN int mp_barrier_n_waiting(const mp_barrier *b);
/* 1 if broken, else 0. */
MP_EXTERN int mp_barrier_broken(const mp_barrier *b);

/* ---- passing to other processes -----------------------------------------
 * A handle value (mp_obj of type MP_T_HANDLE) wrapping a primitive, to put
 * in Process args, send through a Connection or Queue: the receiver gets a
 * handle to the *same* shared object.  `_obj` returns a new reference (the
 * value holds its own reference to the primitive; NULL on failure);
 * `_from_obj` returns the primitive inside a value, borrowed from it, or
 * NULL if the value is not one.
 *
 * A receiver trusts nothing it is sent.  A handle whose state, fd or
 * shared memory does not describe an object of its type lying wholly inside
 * a slab of the arena (a memfd sealed against shrinking, of the size its
 * header states) is refused with MP_EMALFORMED (mp_errdetail says what was
 * wrong) and its fds are closed: mp_conn_recv and mp_pickle_loads_fds
 * return that code.  The sizes an object depends on (an Array's length and
 * element size, a Barrier's parties, a BoundedSemaphore's bound) are read
 * once when the handle is made; whatever another process writes into the
 * shared memory afterwards, no call reaches outside the object.
 * (A Barrier's action crosses as a function reference, which the receiver
 * resolves and may load, as for Process targets: receive Barriers only
 * from peers you would let start your functions.) */
MP_EXTERN mp_obj *mp_lock_obj(mp_lock *lock);
MP_EXTERN mp_lock *mp_lock_from_obj(const mp_obj *o);
MP_EXTERN mp_obj *mp_sem_obj(mp_sem *sem);
MP_EXTERN mp_sem *mp_sem_from_obj(const mp_obj *o);
MP_EXTERN mp_obj *mp_cond_obj(mp_cond *cond);
MP_EXTERN mp_cond *mp_cond_from_obj(const mp_obj *o);
MP_EXTERN mp_obj *mp_event_obj(mp_event *ev);
MP_EXTERN mp_event *mp_event_from_obj(const mp_obj *o);
MP_EXTERN mp_obj *mp_barrier_obj(mp_barrier *b);
MP_EXTERN mp_barrier *mp_barrier_from_obj(const mp_obj *o);

#ifdef __cplusplus
}
#endif
#endif
