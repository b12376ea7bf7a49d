/* SPDX-License-Identifier: MIT */
/* Internal helpers of the core layer, shared by every layer above it.
 * Names with the mp__ prefix are not part of the public API. */
#ifndef MPROC_CORE_INTERNAL_H
#define MPROC_CORE_INTERNAL_H

#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include "mproc.h"

#define MP__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MP__LIKELY(x) __builtin_expect(!!(x), 1)
#define MP__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the per-thread error detail (errors.c) ------------------------------
 * Every public function that returns an error code starts by clearing the
 * detail, so after a failure mp_errdetail() is that failure's own text or
 * "" -- never an earlier call's.  Internal code never tests whether the
 * detail is empty to decide what to report. */
#define MP__ERRDETAIL_CAP 512
extern _Thread_local char mp__errdetail_buf[MP__ERRDETAIL_CAP];
static inline void
mp__errdetail_clear(void)
{
  mp__errdetail_buf[0] = '\0';
}

/* -errno of the last failed system call, never 0. */
static inline int
mp__errno(void)
{
  return errno ? -errno : MP_EINVAL;
}

/* ---- logging ------------------------------------------------------------ */
void mp__log_set_process_name(const char *name);
const char *mp__log_process_name(void);

/* ---- time and deadlines --------------------------------------------------
 * The one timeout rule (a contract, errors.h/README): a `double timeout`
 * argument is seconds; > 0 waits that long, <= 0 (any negative included)
 * does not block, MP_FOREVER (+infinity) waits without limit, NaN is
 * MP_EINVAL.  In an options struct a timeout field of 0 means the
 * documented default; there a negative value is MP_EINVAL too.
 * A deadline is a CLOCK_MONOTONIC instant in nanoseconds; MP__NO_DEADLINE
 * means forever, 0 an instant long passed. */
typedef int64_t mp__deadline;
#define MP__NO_DEADLINE INT64_MAX

int64_t mp__now_ns(void);
/* The deadline of `timeout` by the rule above: 0, or MP_EINVAL for NaN
 * (*d then set to 0, so a caller that goes on does not block). */
int mp__deadline_set(double timeout, mp__deadline *d);
/* MP_EINVAL (with a detail) for NaN, else 0: for calls that check the
 * argument before they compute the deadline (their fast path reads no
 * clock). */
int mp__timeout_nan(void);
static inline int
mp__timeout_check(double timeout)
{
  return MP__UNLIKELY(timeout != timeout) ? mp__timeout_nan() : 0;
}
/* An options-struct timeout field: 0 (default), > 0 or MP_FOREVER; a
 * negative or NaN field is MP_EINVAL naming `what`. */
int mp__timeout_field_check(double timeout, const char *what);
/* Milliseconds left for poll(2): -1 forever, 0 when passed; rounded up so a
 * poll never wakes before the deadline. */
int mp__deadline_poll_ms(mp__deadline d);
/* Time left as a timespec (relative); returns 0, or MP_ETIMEDOUT if passed;
 * *forever set when there is no deadline. */
int mp__deadline_timespec(mp__deadline d, struct timespec *rel, int *forever);
int mp__deadline_passed(mp__deadline d);

/* ---- growable byte buffer ----------------------------------------------
 * Used by the codec and the framing code: append, and reserve room to write
 * into directly.  Grows geometrically; on failure the buffer is unchanged. */
typedef struct mp__buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} mp__buf;

int mp__buf_reserve(mp__buf *b, size_t extra); /* 0 or MP_ENOMEM */
int mp__buf_append(mp__buf *b, const void *p, size_t n);
static inline int
mp__buf_putc(mp__buf *b, uint8_t c)
{
  if (MP__UNLIKELY(b->len == b->cap) && mp__buf_reserve(b, 1))
    return MP_ENOMEM;
  b->data[b->len++] = c;
  return 0;
}
void mp__buf_release(mp__buf *b); /* frees data, zeroes the struct */

/* ---- lifecycle registry (lifecycle.c) -------------------------------------
 * Python's util.register_after_fork and util.Finalize.  Layers register
 * here; none calls pthread_atfork(3) or atexit(3) itself.
 *
 * Fork hooks run around every fork of the program: `prepare` in reverse
 * registration order before it, `parent` and `child` in registration order
 * after it (any of the three may be NULL).  NULL on ENOMEM. */
typedef struct mp__fork_hook mp__fork_hook;
mp__fork_hook *mp__fork_hook_add(void (*prepare)(void *arg),
                                 void (*parent)(void *arg),
                                 void (*child)(void *arg), void *arg);
void mp__fork_hook_remove(mp__fork_hook *h);
/* A process-wide mutex a fork child may take: held by the forking thread
 * across every fork (locked in prepare, unlocked in parent and child), so
 * the child never inherits it locked by a thread it does not have, nor the
 * state it guards half-changed.  Only for leaf locks, never held by a
 * thread that forks (that thread would wait on itself). */
mp__fork_hook *mp__fork_guard_mutex(pthread_mutex_t *m);
/* The same, and then in the child `reset(arg)` (after the unlock; the
 * child's only thread): for state a fork child must drop, such as what
 * threads of the parent own.  For the life of the process (not removed). */
mp__fork_hook *mp__fork_guard_mutex_reset(pthread_mutex_t *m,
                                          void (*reset)(void *arg),
                                          void *arg);
/* A process-private mutex of one object (a Connection's send or receive
 * lock, a proxy's...) that a fork child finds unlocked: a thread of the
 * parent may have held it at the fork, and that thread does not exist in
 * the child, which would wait on it for ever.  The first lock in a new
 * process re-initialises it (one compare of the cached pid per lock).
 * What it guards is as the fork left it: objects whose every change is
 * made between system calls (a receive blocked in recv) stay consistent. */
typedef struct mp__pmutex {
  pthread_mutex_t m;
  _Atomic uint32_t pid; /* the process whose threads use m */
} mp__pmutex;
void mp__pmutex_init(mp__pmutex *pm);
void mp__pmutex_destroy(mp__pmutex *pm);
void mp__pmutex_lock(mp__pmutex *pm);
void mp__pmutex_unlock(mp__pmutex *pm);
/* Install the fork handlers now (idempotent; mp__fork_hook_add does it):
 * for state reset in every fork child without a hook of its own, the
 * platform's pid cache. */
void mp__lifecycle_fork_init(void);

/* Finalizers run at most once, in the process that registered them: at
 * normal exit (or mp__lifecycle_shutdown) highest priority first, the most
 * recently registered first among equals; earlier by mp__finalizer_run.
 * A fork child inherits none.  Priorities used by mproc itself: */
#define MP__FINALIZE_POOL 15      /* Python's Pool: exitpriority 15 */
#define MP__FINALIZE_MANAGER 0    /* Python's BaseManager: exitpriority 0 */
#define MP__FINALIZE_CHILDREN (-1) /* terminate daemons, join the others */
#define MP__FINALIZE_LAST (-100)  /* the forkserver, the tracker link */
typedef struct mp__finalizer mp__finalizer;
/* NULL on ENOMEM or fn == NULL. */
mp__finalizer *mp__finalizer_add(int priority, void (*fn)(void *arg), void *arg);
/* Run it now if still pending (returns 1), else 0; the handle is gone. */
int mp__finalizer_run(mp__finalizer *f);
/* Drop it unrun if still pending; the handle is gone. */
void mp__finalizer_cancel(mp__finalizer *f);
/* Run every pending finalizer of this process, in exit order. */
void mp__lifecycle_shutdown(void);
/* Make the exit shutdown run before every exit handler registered so far
 * (atexit(3) runs the latest first): called right after a library that
 * registers its own teardown (libcrypto) is initialised, so that it is
 * still usable while our finalizers stop the threads that use it. */
void mp__lifecycle_exit_first(void);

/* ---- threads kept for reuse (threads.c) ------------------------------------
 * Run fn(arg) on a thread: a parked one if there is, else a new one; its id
 * in *tid.  fn runs with the caller's signal mask.  The thread is detached:
 * a caller waits for fn's end by its own means, and fn's last touch of the
 * caller's state is that signal.  Once fn returns the thread parks (every
 * signal blocked) for mp__thread_idle_ns at most, for the next run; a fork
 * child forgets the parked threads.  0, MP_ENOMEM or a pthread_create
 * code. */
int mp__thread_run(void (*fn)(void *), void *arg, pthread_t *tid);
extern int64_t mp__thread_idle_ns; /* 5 s; tests shorten it (atomically) */
int mp__thread_idle_count(void);   /* parked now (tests) */
/* Start one of the library's own threads: born with every signal blocked
 * (process-directed signals go to the program's threads), detached or
 * joinable, with a stack of `stack` bytes (0: the default), named `name`
 * for ps and top -H (NULL: unnamed).  0, MP_ENOMEM or a pthread_create
 * code. */
int mp__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, int detached,
                     size_t stack, const char *name);

/* ---- the slice clock (slice_clock.c) ---------------------------------------
 * A slice is how long a wait that must not last for ever (a producer may be
 * killed between its publish and its wake-up) sleeps before it looks again.
 * mp__futex_wait_slice sleeps while *word == val (a shared word) until
 * woken, or for about one slice: without a kernel timer once the process's
 * clock thread ("mproc-slice") runs -- it wakes every registered sleeper
 * once per mp__slice_ns -- and with a timed wait before that (a process's
 * first slice waits) or when it cannot register.  It returns when woken,
 * when the slice ended, spuriously, or at once if the word no longer held
 * val: the caller looks at its condition again in every case. */
#define MP__SLICE_NS 200000000LL
void mp__futex_wait_slice(uint32_t *word, uint32_t val);
extern int64_t mp__slice_ns;       /* MP__SLICE_NS; tests shorten it */
extern int mp__slice_clock_after;  /* timed slice waits before it starts: 16 */
/* This process will not start the clock (if it has not yet): its slice
 * waits are timed waits, and it stays single-threaded if it is.  For a
 * process whose work is reference counting -- a pool worker. */
void mp__slice_clock_forgo(void);
/* For tests: 0 no clock thread in this process, 1 ticking, 2 idle (nobody
 * registered for two periods: it sleeps until the next registrant). */
int mp__slice_clock_state(void);
uint64_t mp__slice_clock_sleeps(void); /* sleeps that registered (tests) */

/* ---- tiny serializer ------------------------------------------------------
 * Host-order fields and length-prefixed blobs, for messages between
 * processes of one machine (child instructions, function references). */
static inline int
mp__put_u32(mp__buf *b, uint32_t v)
{
  return mp__buf_append(b, &v, 4);
}
static inline int
mp__put_u64(mp__buf *b, uint64_t v)
{
  return mp__buf_append(b, &v, 8);
}
static inline int
mp__put_blob(mp__buf *b, const void *p, size_t n)
{
  int rc = mp__put_u32(b, (uint32_t)n);
  return rc ? rc : mp__buf_append(b, p, n);
}
static inline int
mp__get_u32(const uint8_t **p, const uint8_t *end, uint32_t *v)
{
  if (end - *p < 4)
    return MP_EMALFORMED;
  __builtin_memcpy(v, *p, 4);
  *p += 4;
  return 0;
}
static inline int
mp__get_u64(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
  if (end - *p < 8)
    return MP_EMALFORMED;
  __builtin_memcpy(v, *p, 8);
  *p += 8;
  return 0;
}
/* A borrowed view of a blob. */
static inline int
mp__get_blob(const uint8_t **p, const uint8_t *end, const uint8_t **data,
             uint32_t *n)
{
  if (mp__get_u32(p, end, n) || (size_t)(end - *p) < *n)
    return MP_EMALFORMED;
  *data = *p;
  *p += *n;
  return 0;
}

/* ---- function references (funcref.c) ----------------------------------------
 * A code or data address as (object file, offset from its load base, the
 * object's GNU build-id -- or its file identity when it has none), which a
 * process running a fresh image of the same program resolves against its
 * own load base (DESIGN 3.1).  Used by the child bootstrap (targets, handle
 * types), Barrier actions and function values (obj).
 *
 * Decoding never jumps anywhere; it refuses (MP_EBADREF) a reference to an
 * object that is not the same build, an offset outside the object's loaded
 * (exec: executable) segments and, for code (exec), an offset where no
 * function starts, judged by the object's symbol tables and unwind table
 * (mp__plat_func_info; an object that has neither is judged by its
 * segments alone) -- except on a thread that mp__funcref_trust() marked,
 * whose sender's addresses are its own function pointers.  It loads
 * (dlopen) an object that is not loaded yet only on such a thread: loading
 * runs the object's constructors, which only a trusted sender (the parent
 * of a child being booted) may cause. */
int mp__funcref_encode(const void *addr, int exec, mp__buf *b);
/* Decode one reference at *p (advancing it); on failure writes the reason
 * into err and returns MP_EBADREF (or MP_EMALFORMED). */
int mp__funcref_decode(const uint8_t **p, const uint8_t *end, void **addr,
                       char *err, size_t errcap);
/* The same for a reference that must be to code (encoded with exec). */
int mp__funcref_decode_code(const uint8_t **p, const uint8_t *end,
                            void **addr, char *err, size_t errcap);
/* Let decodes on this thread load objects that are not loaded (on != 0) or
 * not (0, the default). */
void mp__funcref_trust(int on);
/* Append a name for the function at `addr`: its symbol name when the
 * object's symbol tables have one starting there, else "at FILE+0xOFF"
 * (FILE the object's file name), else "at 0xADDR".  0 or MP_ENOMEM. */
int mp__funcref_describe(const void *addr, mp__buf *b);


#endif
