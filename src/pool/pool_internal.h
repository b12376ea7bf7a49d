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
 * Threads.  The result-handling thread (started by the first submission,
 * or by a worker's end before one: a pool closed with no work never has
 * one) takes results (and wake-ups) from the result queue in slices of
 * MP__POOL_TICK seconds, checks the workers'
 * liveness at least once per slice, replaces the dead, dispatches, and
 * completes results (callbacks outside the pool lock).  The process's
 * watcher thread (watch.c, one for every pool) blocks on the workers'
 * sentinels and, when one ends, flags it and puts a wake-up into the
 * pool's result queue: a death is handled at once,
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
/* A worker whose results come back quickly (the moving average of the gap
 * between them) holds more jobs: about MP__POOL_AHEAD_NS of its work, at
 * most MP__POOL_PREFETCH_MAX jobs.  Small tasks then do not wait for the
 * handler's round trip, nor for the handler itself when it is off its CPU
 * (4 threads on 2 CPUs: a caller, the handler, 2 workers), and at most
 * ~8 ms of work is bound to one worker ahead of time. */
#define MP__POOL_PREFETCH_MAX 128
#define MP__POOL_AHEAD_NS 8000000
/* Small jobs of one call handed to one worker at once go in one task
 * message (a batch, MP__TASK_BATCH) of up to this many items: one put,
 * one function reference and one wake-up for them all.  Bigger chunks go
 * one per message, so that a worker starts on the first while the next
 * is still being sent. */
#define MP__POOL_BATCH_MAX 64
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
enum { MP__TASK_APPLY = MP_POOL_JOB_APPLY, MP__TASK_MAP = MP_POOL_JOB_MAP,
       MP__TASK_STAR = MP_POOL_JOB_STARMAP, /* as pool.h names them */
       /* a map whose payload is packed ints (obj/packed.c): bytes of
        * native int64s, never handed to an executor */
       MP__TASK_MAP_I64 = 16,
       /* or'ed into a task message's kind: its payload is a list of the
        * payloads of consecutive jobs id, id+1, ... of that kind */
       MP__TASK_BATCH = 256 };
/* Chunks (and a job's results) of fewer items stay lists: packing would
 * save nothing there, and one-item chunks are imap's default. */
#define MP__PACK_MIN 8
/* Freed heap a worker process keeps for its next jobs (platform.h's
 * mp__plat_heap_keep): a few chunks of a million-item map. */
#define MP__WORKER_HEAP_KEEP ((size_t)64 << 20)
/* What a result collects. */
enum { MP__RES_APPLY = 1, MP__RES_MAP, MP__RES_IMAP, MP__RES_IMAP_UNORDERED };

/* AsyncResult and IMapIterator: n item slots filled by the handler. */
struct mp_result {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs; /* atomic: the caller's, and the pool's until all items landed */
  int kind;
  size_t n, left;
  size_t slots;    /* entries of the arrays below: n, or the ring's size */
  mp_obj **values; /* a new reference each, NULL for None */
  int *codes;      /* imap only: each position's code */
  char **details;  /* imap only: malloc'd text of a failed item, else NULL */
  unsigned char *done;
  uint16_t height; /* max mp__depth_above of the values stored */
  size_t nulls;    /* values stored as NULL (None or failed) */
  /* apply, map: the failure of the lowest index (what get reports) */
  size_t fail_index; /* SIZE_MAX: none */
  int fail_code;
  char *fail_detail; /* malloc'd */
  int ready;       /* every item landed (and the callback ran) */
  unsigned gen;    /* bumped (atomically, r->mu held) at every broadcast of
                    * cv: what a caller polls before it sleeps */
  int code;        /* apply/map: the final code */
  mp_obj *value;   /* apply: the value; map: the list */
  mp_result_cb callback;
  mp_error_cb error_callback;
  void *arg;
  /* imap */
  size_t next;     /* ordered: the next position to hand out */
  size_t *order;   /* unordered: positions in completion order */
  size_t order_len, order_pos;
  struct mp__bar *bar; /* its progress bar (progress.c), NULL: none */
  /* An imap fed by an item callback (iter.c): the item slots are a ring
   * of `ring` entries, position i in slot i % ring; n is SIZE_MAX until
   * the callback ends (then the number of positions); fed: positions
   * taken from the callback; low: (unordered) the oldest position not yet
   * handed out (done[] 2 marks one handed out above it); ended: the
   * callback ended (left counts one more until then). */
  size_t ring, fed, low;
  int ended;
};

struct mp_imap {
  struct mp_result r;
  struct mp__isrc *src; /* iter.c: the item callback, NULL: a list */
};

typedef struct mp__job {
  struct mp__job *next;
  uint64_t id;
  mp_task_fn fn;
  int kind;        /* MP__TASK_* */
  mp_obj *payload; /* apply: the args tuple; map/starmap: a list of items;
                    * MP__TASK_MAP_I64: the items packed */
  mp_result *r;
  size_t base, count; /* the items of r this job fills */
  int64_t timeout_ns; /* task_timeout; 0: none */
  int timed_out;      /* its worker was killed for it */
  int pslot;          /* its progress counter (progress.c); 0: none */
} mp__job;

typedef struct mp__jobq {
  mp__job *head, *tail;
  size_t len;
} mp__jobq;

/* result.c */
int mp__result_new(mp_result **out, int kind, size_t n, size_t struct_size);
/* Store item i (takes `value`; `detail` copied).  Returns 1 when it was the
 * last item (the caller then calls mp__result_finish, outside pool->mu). */
/* Items base..base+n, all succeeded, as n packed int64s (obj/packed.c):
 * the bulk form of mp__result_store_locked, for a map of ints. */
int mp__result_store_ints_locked(mp_result *r, size_t base,
                                 const uint8_t *packed, size_t n);
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
/* Wake r's waiters (r->mu held): bump r->gen, which callers poll before
 * they sleep (result.c), and broadcast r->cv.  Every change a waiter's
 * predicate reads goes through here. */
void mp__result_wake_locked(mp_result *r);

/* watch.c: the process's death watcher, one thread shared by every pool,
 * that polls the workers' sentinels (copies of them) and calls a watch's
 * notify(arg) from that thread as soon as one of its sentinels is ready.
 * The thread is started by the first mp__watch_start and stays (idle,
 * signals blocked) until exit or mp__watch_shutdown. */
typedef struct mp__watch mp__watch;
int mp__watch_new(mp__watch **out, int n, void (*notify)(void *), void *arg);
/* Have the thread watch w (starting it if need be), once the first
 * workers are forked. */
int mp__watch_start(mp__watch *w);
/* Watch `sentinel` (copied) as worker k's, in place of the previous one. */
int mp__watch_set(mp__watch *w, int k, int sentinel);
void mp__watch_clear(mp__watch *w, int k); /* stop watching worker k */
/* Stop watching all of w's workers (NULL ok): a closing pool's handler
 * does, as its last wait is for the workers themselves. */
void mp__watch_stop(mp__watch *w);
/* End the thread and close its pipe (for a leak check; a later
 * mp__watch_start starts it again). */
void mp__watch_shutdown(void);
/* Stop watching w and free it (NULL ok); once it returns, w's notify is
 * not running and will not be called. */
void mp__watch_free(mp__watch *w);

/* pool.c, for the other files */
int mp__pool_nproc(const mp_pool *p);
int mp__pool_threading(const mp_pool *p);
int mp__pool_running(mp_pool *p); /* not closed nor terminated */
uint64_t mp__pool_batches(mp_pool *p); /* batch task messages sent so far */
/* map_array.c: segments kept between calls; the pool's slot for them
 * (made by map_array, freed with the pool). */
typedef struct mp__ma_cache mp__ma_cache;
mp__ma_cache **mp__pool_ma_cache(mp_pool *p);
void mp__ma_cache_free(mp__ma_cache *c);

/* pool.c: submit one chunk of an iterator-fed imap: items `payload` (a
 * list, taken) at positions base.. of r.  0 or a code (the chunk was not
 * queued). */
int mp__pool_submit_chunk(mp_pool *p, mp_result *r, mp_task_fn fn,
                          mp_obj *payload, size_t base, size_t count,
                          double task_timeout);

/* iter.c */
struct mp__poolx;
typedef struct mp__isrc {
  pthread_mutex_t mu;      /* p (the pool detaches under it) */
  pthread_mutex_t feed_mu; /* one feeder at a time (the callback) */
  int refs;                /* the iterator's and the pool's list's */
  mp_pool *p;              /* NULL once the pool was freed */
  int dead;                /* atomic: the iterator was released */
  struct mp__isrc *next_src; /* the pool's list (x->iters) */
  mp_task_fn fn;
  int (*next)(void *arg, mp_obj **item);
  void *arg;
  size_t chunksize;
  double task_timeout;
} mp__isrc;
/* Take items from the callback while the window has room; at the start
 * of every mp_imap_next. */
void mp__iter_feed(mp_imap *it);
/* The iterator is being freed: end the feed, leave the pool's list. */
void mp__iter_release(mp_imap *it);
/* The pool is being freed: its iterators feed no more.  Lock order:
 * a source's mu, then pool->mu, then x->mu; never a source's under x->mu. */
void mp__iter_detach_all(struct mp__poolx *x);
void mp__isrc_unref(mp__isrc *s);

/* worker.c: the target of every worker process (or thread). */
int mp__pool_worker_main(mp_obj *args);
/* map_array.c: the task of map_array's jobs; it runs in the worker thread
 * itself on an executor's pool (claiming chunks and handing each to the
 * executor's run_array), never through the executor's run. */
int mp__ma_task(mp_obj *args, mp_obj **result);

/* ---- the extras: progress, insights, worker hooks -------------------------
 * (progress.c, insights.c, hooks.c; iter.c below)  Every pool has one
 * mp__poolx (p->x) and one small shared block (an mp_array; mp__xshared below) that its
 * workers write and the parent reads:
 *   - progress counters: MP__PROGRESS_SLOTS words; a map with `progress`
 *     on takes a free slot, its jobs carry the slot's number to the
 *     workers, and a worker adds 1 to that word after each item it ran
 *     (no other cost: jobs without a slot bump nothing).  The parent's
 *     result-handling thread calls mp__poolx_tick at least every
 *     MP__POOL_TICK, and that redraws each live bar at most every
 *     MP__PROGRESS_REDRAW seconds; the bar's last line (100%) is drawn
 *     when its result finishes.
 *   - insights: one mp__wstats per worker place (stable across a worker's
 *     replacement), written only by the worker in that place, under a
 *     sequence count so the parent reads a consistent copy.  Only written
 *     when the pool was made with insights on.
 * Any kind of map (map_array included) feeds them so:
 *   parent:  mp__bar *bar = NULL;
 *            if (opts->progress && n)
 *              rc = mp__bar_new(mp__pool_x(p), n, &bar);  (MP_EBUSY)
 *            ... send bar ? bar->slot : 0 to the workers with the work
 *            (pool.c's dispatch sends j->pslot as the task's item 4) ...
 *            once every item is done: mp__bar_end(bar, 1) (100%, frees
 *            the slot); terminated: mp__bar_end(bar, 0); never submitted:
 *            mp__bar_end(bar, -1).  Or set r->bar of the mp_result that
 *            collects the work: mp__result_finish / _unref end it.
 *   worker:  mp__wctx *wx = mp__wx_cur();  (set for the worker's life by
 *            mp__pool_worker_main; any job it runs can use it)
 *            per chunk: int64_t t0 = wx->insights ? mp__now_ns() : 0;
 *            ... per batch of elements (say every 1024 or per chunk):
 *            mp__wx_batch(wx, pslot, count, t0_batch, job, first, label)
 *            -- progress += count; with insights tasks += count and the
 *            batch a slowest-list candidate -- and at the chunk's end
 *            mp__wx_job_done(wx, t0) (jobs, working time).  Waiting time
 *            is measured by the worker loop around its mp_queue_get.
 *   mp__poolx_tick (the result-handling thread) does every redraw. */
#define MP__PROGRESS_SLOTS 32
#define MP__PROGRESS_REDRAW 0.1
#define MP__INSIGHT_TOP 5
#define MP__INSIGHT_REPR 64

typedef struct mp__slowrec {
  int64_t ns;    /* how long the item ran */
  int64_t job;   /* its job's id */
  int64_t index; /* its position in its map (apply: 0) */
  int64_t repr[MP__INSIGHT_REPR / 8]; /* its args' repr, NUL-terminated */
} mp__slowrec;

typedef struct mp__wstats {
  int64_t seq;        /* odd while the worker writes */
  int64_t spawned;    /* the parent: when it started the worker (ns) */
  int64_t starts;     /* workers started in this place */
  int64_t startup_ns, init_ns, wait_ns, work_ns, exit_ns;
  int64_t tasks, jobs;
  int64_t nslow;
  mp__slowrec slow[MP__INSIGHT_TOP]; /* slowest first */
} mp__wstats;

typedef struct mp__xshared {
  int64_t progress[MP__PROGRESS_SLOTS]; /* [0] unused: slot 0 means none */
  mp__wstats w[];                        /* one per worker place */
} mp__xshared;

typedef struct mp__bar {
  struct mp__bar *next;
  struct mp__poolx *x;
  int slot;
  size_t total;
  int64_t t0, last_draw;
  size_t last_n;
  int drawn;     /* lines or redraws so far */
  int tty;
} mp__bar;

typedef struct mp__poolx {
  pthread_mutex_t mu; /* bars, slots, exit_results */
  mp_array *arr;
  mp__xshared *sh;
  int nproc, threading, fork;
  int insights;
  int (*worker_exit)(mp_obj **result);
  mp_obj *state;   /* the initial worker state (NULL: an empty dict) */
  mp_obj *shared;  /* mp_pool_shared() in the workers */
  mp_obj *cpus;    /* NULL, or a list of nproc lists of CPU ids */
  uint64_t slots_used; /* progress slots taken (bit k) */
  mp__bar *bars;
  mp__isrc *iters; /* iterator-fed imaps on this pool (iter.c) */
  mp_obj *exit_results; /* a list */
  int64_t tick_last;
  /* mp_pool_opts.executor (a copy), has_exec 0: none.  Reaches the worker
   * threads by address in the extras item (item 7). */
  mp_pool_executor exec;
  int has_exec;
} mp__poolx;

/* hooks.c: the parent's side */
int mp__poolx_new(mp__poolx **out, const mp_pool_opts *opts, int nproc,
                  const char *method);
void mp__poolx_free(mp__poolx *x);
/* The extras item of worker k's arguments (a new reference; NULL: out of
 * memory); records when the worker is started. */
mp_obj *mp__poolx_worker_args(mp__poolx *x, int k);
/* A message of the extras (id 0) from a worker: 1 if it was one. */
int mp__poolx_message(mp__poolx *x, const mp_obj *msg);
/* Take what is left in the result queue after the workers ended (their
 * exit results). */
void mp__poolx_drain(mp__poolx *x, mp_queue *rq);
int64_t *mp__poolx_counters(mp__poolx *x);
/* pool.c: the pool's extras (mp__pool_running is declared above). */
mp__poolx *mp__pool_x(mp_pool *p);

/* hooks.c: the worker's side.  One per worker (thread-local in a
 * ThreadPool), set by mp__wx_enter for the worker's life. */
typedef struct mp__wctx {
  mp__xshared *sh;
  mp__wstats *ws;
  int place;
  int insights;
  int (*worker_exit)(mp_obj **result);
  mp_obj *state;
  mp_obj *shared;
  int64_t t_wait, t_job; /* insights: when the wait / the job began */
  /* The running task counted its own items (map_array's chunks, with
   * mp__wx_batch): the worker loop does not count it as one more. */
  int self_counted;
  const mp_pool_executor *exec; /* a remote executor's pool: NULL if none */
  /* A process worker keeps freed heap for its jobs (mp__plat_heap_keep),
   * set at its first task: mallopt consolidates the heap inherited from
   * the parent, copy-on-write faults a pool that never runs a task need
   * not pay. */
  int keep_heap;
} mp__wctx;
/* Read the extras item, pin the CPU, record the start-up: 0 or a code. */
int mp__wx_enter(mp__wctx *wx, const mp_obj *xargs, int place);
/* The initializer took from t0 to now. */
void mp__wx_init_done(mp__wctx *wx, int64_t t0);
/* Waiting for a task begins / ends. */
void mp__wx_wait_begin(mp__wctx *wx);
void mp__wx_wait_end(mp__wctx *wx);
/* Item `index` of job `job` ran from t0 to now with `args`; count it in
 * progress slot `pslot` (0: none). */
void mp__wx_item(mp__wctx *wx, int pslot, int64_t t0, uint64_t job,
                 int64_t index, const mp_obj *args);
/* The same for a batch of n items at positions index.. run from t0 to now
 * (an array map's elements: one call per batch, not per element); the
 * batch is one entry of the slowest list, `label` its text ("elements
 * 1000-1999"). */
void mp__wx_batch(mp__wctx *wx, int pslot, size_t n, int64_t t0, uint64_t job,
                  int64_t index, const char *label);
/* A job ran from t0 to now (jobs += 1, working time). */
void mp__wx_job_done(mp__wctx *wx, int64_t t0);
/* A clean end: run the exit hook, send its result (0, uid, "exit",
 * value) to rq. */
void mp__wx_exit(mp__wctx *wx, mp_queue *rq, uint64_t uid);
void mp__wx_leave(mp__wctx *wx);
mp__wctx *mp__wx_cur(void);
/* exec.c: a job of an executor's pool through exec->run, as run_job's
 * message (id, uid, values, errors). */
mp_obj *mp__exec_job(mp__wctx *wx, uint64_t id, uint64_t uid, mp_task_fn fn,
                     int kind, mp_obj *payload, const char *name, int pslot,
                     int64_t base, int64_t timeout_ns);

/* progress.c */
static inline void
mp__progress_add(int64_t *counters, int slot, int64_t n)
{
  if (slot > 0 && slot < MP__PROGRESS_SLOTS)
    __atomic_add_fetch(&counters[slot], n, __ATOMIC_RELAXED);
}
/* A bar over `total` items on stderr, its counter slot taken: 0, or
 * MP_EBUSY when every slot is in use. */
int mp__bar_new(mp__poolx *x, size_t total, mp__bar **out);
/* Draw the last line and free the bar and its slot.  complete 1: every
 * item is done (100%); 0: as counted (a terminated map); -1: draw
 * nothing (the map was never submitted). */
void mp__bar_end(mp__bar *b, int complete);
/* One drawing of a bar, tqdm's format (snprintf's return). */
int mp__bar_format(char *buf, size_t cap, size_t n, size_t total,
                   double elapsed);
/* Redraw the live bars (at most every MP__PROGRESS_REDRAW s). */
void mp__poolx_tick(mp__poolx *x);

#endif
