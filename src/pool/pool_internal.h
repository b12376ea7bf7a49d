/* SPDX-License-Identifier: MIT */
/* Internals of the pool layer (src/pool): Pool, ThreadPool, AsyncResult
 * and IMapIterator.  The public contract is include/mproc/pool.h.
 *
 * Jobs.  A call is cut into jobs (one per apply, one per chunk of a map);
 * a job is handed to ONE worker, through that worker's own task queue, and
 * the parent remembers which jobs it handed to which worker, in order.  A
 * worker runs its jobs in that order; before it runs one it writes the
 * job's id into its slot of a shared array (slots[index]), and once the
 * result is in the result queue it sets MP__SLOT_DONE in the slot.  (Each
 * worker has two words, slots[2k] the job id and slots[2k+1] when it
 * started, for task timeouts; slots[2n] tells workers to stop.)  So when
 * a worker is found dead the parent knows exactly, from the slot and its
 * list:
 *   - jobs before the slot's job: finished, their results already in the
 *     result queue (put returned before the worker took the next job): they
 *     wait for them ("orphans");
 *   - the slot's job: if DONE, an orphan too; else it was running: it fails
 *     with MP_EWORKERDIED;
 *   - jobs after it: never started (still in the dead worker's queue, or
 *     lost inside its mp_queue_get, which a consumer killed there does:
 *     docs/queue.md) -- they go back to the front of the backlog and run on
 *     another worker.
 * A shared task queue (CPython's design) cannot tell a task lost inside a
 * dead worker's get from one a live worker has just taken and not yet
 * recorded; one queue per worker makes the answer exact and needs no
 * timing guess.  The cost is that the parent dispatches: each worker holds
 * at most MP__POOL_PREFETCH jobs not yet answered (MP__POOL_PREFETCH_QUICK
 * while its results come back quickly), and the next is handed to it when
 * a result comes back.
 *
 * Threads.  The result-handling thread takes results (and wake-ups) from
 * the result queue in slices of MP__POOL_TICK seconds, checks the workers'
 * liveness at least once per slice, replaces the dead, dispatches, and
 * completes results (callbacks outside the pool lock).  A watcher thread
 * (watch.c) blocks on the workers' sentinels and, when one ends, flags it
 * and puts a wake-up into the result queue: a death is handled at once,
 * so replacing a worker costs about a process start; the slice remains
 * for task timeouts and as a fallback.  Submitting threads
 * dispatch too.  Lock order: pool->mu, then a result's mu. */
#ifndef MPROC_POOL_INTERNAL_H
#define MPROC_POOL_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "core/internal.h"
#include "mproc/pool.h"
#include "mproc/queue.h"
#include "mproc/shm.h"

#define MP__POOL_PREFETCH 2
/* A worker whose results come back faster than MP__POOL_QUICK_NS apart
 * (a moving average) holds up to MP__POOL_PREFETCH_QUICK jobs: small tasks
 * then do not wait for the handler's round trip, and at most ~16 ms of
 * work is bound to one worker ahead of time. */
#define MP__POOL_PREFETCH_QUICK 16
#define MP__POOL_QUICK_NS 1000000
#define MP__POOL_TICK 0.05
#define MP__SLOT_DONE ((int64_t)1 << 62)

/* Worker exit codes the parent may see (besides 0, a clean end). */
enum {
  MP__WEXIT_BADARGS = 2,
  MP__WEXIT_INIT = 3,
  MP__WEXIT_QUEUE = 4,
  MP__WEXIT_SEND = 5
};

/* What a job's payload is. */
enum { MP__TASK_APPLY = 1, MP__TASK_MAP = 2, MP__TASK_STAR = 3 };
/* What a result collects. */
enum { MP__RES_APPLY = 1, MP__RES_MAP, MP__RES_IMAP, MP__RES_IMAP_UNORDERED };

/* AsyncResult and IMapIterator: n item slots filled by the handler. */
struct mp_result {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs; /* atomic: the caller's, and the pool's until all items landed */
  int kind;
  size_t n, left;
  mp_obj **values; /* n: a new reference each, NULL for None */
  int *codes;      /* n */
  char **details;  /* n: malloc'd text of a failed item, else NULL */
  unsigned char *done; /* n */
  int ready;       /* every item landed (and the callback ran) */
  int code;        /* apply/map: the final code */
  mp_obj *value;   /* apply: the value; map: the list */
  mp_result_cb callback;
  mp_error_cb error_callback;
  void *arg;
  /* imap */
  size_t next;     /* ordered: the next position to hand out */
  size_t *order;   /* unordered: positions in completion order */
  size_t order_len, order_pos;
};

struct mp_imap {
  struct mp_result r;
};

typedef struct mp__job {
  struct mp__job *next;
  uint64_t id;
  mp_task_fn fn;
  int kind;        /* MP__TASK_* */
  mp_obj *payload; /* apply: the args tuple; map/starmap: a list of items */
  mp_result *r;
  size_t base, count; /* the items of r this job fills */
  int64_t timeout_ns; /* task_timeout; 0: none */
  int timed_out;      /* its worker was killed for it */
} mp__job;

typedef struct mp__jobq {
  mp__job *head, *tail;
  size_t len;
} mp__jobq;

/* result.c */
int mp__result_new(mp_result **out, int kind, size_t n, size_t struct_size);
/* Store item i (takes `value`; `detail` copied).  Returns 1 when it was the
 * last item (the caller then calls mp__result_finish, outside pool->mu). */
int mp__result_store(mp_result *r, size_t i, int code, mp_obj *value,
                     const char *detail);
/* Build the final value, run the callback (unless `quiet`), mark ready,
 * wake the waiters, drop the pool's reference. */
void mp__result_finish(mp_result *r, int quiet);
/* The same store for many items under one lock: lock, store_locked each,
 * unlock (which wakes iterators). */
void mp__result_lock(mp_result *r);
int mp__result_store_locked(mp_result *r, size_t i, int code, mp_obj *value,
                            const char *detail);
void mp__result_unlock(mp_result *r);
void mp__result_unref(mp_result *r);

/* watch.c: a thread that polls the workers' sentinels (copies of them)
 * and calls notify(arg) from that thread as soon as one is ready. */
typedef struct mp__watch mp__watch;
int mp__watch_new(mp__watch **out, int n, void (*notify)(void *), void *arg);
/* Watch `sentinel` (copied) as worker k's, in place of the previous one. */
int mp__watch_set(mp__watch *w, int k, int sentinel);
void mp__watch_clear(mp__watch *w, int k); /* stop watching worker k */
void mp__watch_free(mp__watch *w);         /* stops the thread; NULL ok */

/* pool.c, for the other files */
int mp__pool_nproc(const mp_pool *p);
int mp__pool_threading(const mp_pool *p);
int mp__pool_running(mp_pool *p); /* not closed nor terminated */
/* map_array.c: segments kept between calls; the pool's slot for them
 * (made by map_array, freed with the pool). */
typedef struct mp__ma_cache mp__ma_cache;
mp__ma_cache **mp__pool_ma_cache(mp_pool *p);
void mp__ma_cache_free(mp__ma_cache *c);

/* worker.c: the target of every worker process (or thread). */
int mp__pool_worker_main(mp_obj *args);

#endif
