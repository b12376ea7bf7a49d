/* SPDX-License-Identifier: MIT */
/* Pools of worker processes: multiprocessing.Pool, AsyncResult,
 * IMapIterator and ThreadPool, for C.
 *
 * A pool starts `processes` workers with its context (fork, spawn,
 * forkserver; a pool on the "threading" context is a ThreadPool: its
 * workers are threads) and runs tasks in them.  A task is a C function
 * (mp_task_fn) and its arguments; the function crosses to the workers as a
 * function reference (every start method, no registration: process.h), the
 * arguments and the results as pickles (they must be values mp_queue_put
 * accepts: plain data, function values, handles).
 *
 * Tasks and results.  mp_task_fn is called in a worker with an args tuple:
 * the given args for apply, (item,) for map and imap, the item itself (a
 * tuple or list) for starmap.  It returns 0 and sets *result (left NULL:
 * None), or a negative code; the mp_seterr() text it left travels back with
 * it, prefixed by the worker's name ("ForkPoolWorker-3: ...").  A positive
 * return is reported as MP_EINVAL.  A result that cannot be pickled makes
 * that item fail with the codec's code.  Every item runs: an item that
 * fails does not stop the others (no fail-fast).
 *
 * Where a call reports a task's failure it returns that code and
 * mp_errdetail() holds the text: apply, get, map (and their async forms)
 * report the failing item of the lowest index; mp_imap_next reports each at
 * its position and goes on.
 *
 * Workers are named as Python's: ForkPoolWorker-N, SpawnPoolWorker-N,
 * ForkServerPoolWorker-N (N the process's child number, as Process-N);
 * ThreadPool workers are ThreadPoolWorker-N.  They are daemons: killing the
 * parent leaves none running (process.h).
 *
 * Crash safety.  A worker that dies while it runs a task -- SIGKILL, a
 * segfault, exit() inside the task -- fails that task (for map: the items
 * of the chunk it was running) with MP_EWORKERDIED, with a detail naming
 * the worker, its pid and the signal or exit status; the worker is
 * replaced and every other task still completes: tasks queued to the dead
 * worker that it had not started run on another worker.  Nothing hangs:
 * the death is seen at once (a thread of the pool waits on the workers'
 * sentinels), and replacing the worker costs about a process start.  (Tasks are handed to one worker
 * each, so the pool always knows which tasks a worker held; see
 * src/pool/pool_internal.h.)  A task may also be given a task_timeout,
 * after which its worker is killed and replaced and the task is
 * MP_ETIMEDOUT.
 *
 * Callbacks (mp_apply_opts, mp_map_opts) run in the parent, on the pool's
 * one result-handling thread, in the order results complete, before the
 * result becomes ready.  A callback must return soon: while it runs no
 * other result is handled and no dead worker is replaced.  It must not
 * wait for a result of the same pool, nor call mp_pool_join,
 * mp_pool_terminate or mp_pool_free of its pool (MP_EDEADLK).
 *
 * Life.  mp_pool_close: no new tasks (MP_ESTATE from then on: Python's
 * ValueError "Pool not running"); mp_pool_join (after close or terminate,
 * else MP_ESTATE) waits until every task is done and the workers have
 * exited.  mp_pool_terminate stops the workers at once (SIGTERM, SIGKILL
 * after 1 s if a worker is still there); results not ready then become
 * ready with MP_ECLOSED (no callback runs for them).  ThreadPool: a thread
 * cannot be stopped, so terminate lets each thread finish the task it is
 * running (its result is discarded) and waits for it.  mp_pool_free of a
 * pool not yet joined terminates it (Python's `with` block), as does the
 * program's exit.  Results and iterators stay valid after the pool is
 * freed (each holds its own reference).
 *
 * Threads: every function may be called from any thread.  Timeouts follow
 * the one rule (errors.h). */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include <stddef.h>
#include <stdio.h>

#include "mproc/version.h"
#include "errors.h"
#include "obj.h"
#include "process.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_pool mp_pool;
typedef struct mp_result mp_result; /* AsyncResult */
typedef struct mp_imap mp_imap;     /* IMapIterator */

/* A task: called with an args tuple -- (item,) for map/imap, the item itself
 * (a tuple) for starmap, the given args for apply -- returns 0 and sets
 * *result (NULL means None), or returns a negative code (mp_seterr() text
 * travels back with it). */
typedef int (*mp_task_fn)(mp_obj *args, mp_obj **result);
/* An element of an array map: reads in, writes out. */
typedef int (*mp_elem_fn)(const void *in, void *out, const mp_obj *shared);

/* ---- remote executors: how other transports plug in ----------------------
 * A pool made with mp_pool_opts.executor runs its jobs elsewhere (another
 * host, an MPI rank: include/mproc/mpi.h is one).  Its `processes` workers
 * are threads of this process, as a ThreadPool's; each hands every job it
 * takes to the executor and stores what comes back, so everything else of
 * the Pool -- chunking, prefetch, callbacks, imap, timeouts on get,
 * progress, insights, map_array's chunk claiming -- works unchanged.  The
 * executor is called on worker threads, concurrently for different
 * `worker`s (0..processes-1, a worker's place), one job at a time per
 * worker; it must be thread-safe across workers.
 *
 * run: one job.  kind MP_POOL_JOB_APPLY: payload is the args tuple (one
 * item); MP_POOL_JOB_MAP: payload a list of items, call fn((item,));
 * MP_POOL_JOB_STARMAP: fn(item) (a tuple or list; else MP_ETYPE).
 * `timeout` is the job's task_timeout in seconds (0: none): past it the
 * executor gives up and returns MP_ETIMEDOUT.  Returns 0 with *values a
 * new list of one value per item (None where an item failed) and *errors
 * NULL or a new list of (index, code, detail) tuples, detail the item's
 * text (by convention "WorkerName: text"); or a negative code, with its
 * mp_seterr text, that fails every item of the job.
 *
 * run_array: map_array's chunk of n elements, given as bytes (in: n *
 * in_size, NULL when in_size is 0; out: n * out_size, written by the
 * executor).  0; or the code of the first failing element, *bad its
 * position in the chunk and mp_seterr its text (a transport failure: the
 * code with *bad 0).  NULL: map_array on the pool is MP_ENOTSUP.
 *
 * terminate: called once by mp_pool_terminate (and by mp_pool_free of a
 * pool not joined) before the pool waits for its worker threads: the run
 * and run_array calls in flight must return soon (MP_ECLOSED), abandoning
 * their jobs, whose results the pool drops.  NULL: terminate waits for the
 * jobs in flight to end. */
enum { MP_POOL_JOB_APPLY = 1, MP_POOL_JOB_MAP = 2, MP_POOL_JOB_STARMAP = 3 };
/* For an executor's far side: the args tuple of item `i` of a job of
 * `kind`, as a local pool's worker builds it -- the payload itself for
 * MP_POOL_JOB_APPLY (i 0), (item,) for MP_POOL_JOB_MAP, the item as a
 * tuple for MP_POOL_JOB_STARMAP.  0 and *args (a new reference), or
 * MP_ETYPE (a starmap item that is not a tuple or a list), MP_EINDEX (i
 * past the job's items), MP_EINVAL (NULL, or an unknown kind, or a map
 * payload that is not a list or tuple), MP_ENOMEM. */
MP_EXTERN int mp_pool_job_args(int kind, mp_obj *payload, size_t i,
                               mp_obj **args);
typedef struct mp_pool_executor {
  int (*run)(void *ctx, int worker, mp_task_fn fn, int kind, mp_obj *payload,
             double timeout, mp_obj **values, mp_obj **errors);
  int (*run_array)(void *ctx, int worker, mp_elem_fn fn, const mp_obj *shared,
                   const void *in, size_t in_size, void *out, size_t out_size,
                   size_t n, size_t *bad);
  void *ctx;
  void (*terminate)(void *ctx);
} mp_pool_executor;

typedef struct mp_pool_opts {
  int processes;                        /* 0: mp_cpu_count_usable() */
  mp_context *context;                  /* NULL: the default context */
  /* Run once in each worker (replacements included) before its first
   * task.  A nonzero return ends that worker, and the pool then fails
   * every task not yet started -- and every later one -- with that code
   * (a positive one as MP_EINVAL), the detail naming the worker and the
   * initializer's text; it does not restart workers that would fail the
   * same way forever (CPython's trap). */
  int (*initializer)(mp_obj *initargs);
  mp_obj *initargs;                     /* a tuple (NULL: ()) */
  /* A worker exits after this many tasks (a chunk of a map is one task)
   * and is replaced; 0: unlimited. */
  int maxtasksperchild;
  /* mpire's enable_insights: the workers record how long they took to
   * start, to run the initializer, how long they waited for tasks and
   * worked, how many tasks they ran, and the slowest tasks
   * (mp_pool_insights below).  0: off, and nothing is measured. */
  int insights;
  /* mpire's worker_exit: run in a worker when it ends cleanly (after
   * close, or replaced after maxtasksperchild; not when it is terminated
   * or dies).  It may read the worker's state; it returns 0 and sets
   * *result (NULL: None), collected by mp_pool_exit_results, or a negative
   * code, logged as a warning with its text. */
  int (*worker_exit)(mp_obj **result);
  /* The initial value of each worker's state (mp_pool_worker_state): a
   * dict, copied into each worker (NULL: an empty dict; not a dict:
   * MP_EINVAL). */
  mp_obj *worker_state;
  /* Data every worker can read with mp_pool_shared(), given once per
   * worker: under fork the parent's own object, inherited copy-on-write
   * (never pickled); under spawn and forkserver pickled once per worker
   * (replacements included); in a ThreadPool the same object (read it,
   * do not change it: the threads share it).  Any value mp_queue_put
   * accepts.  NULL: mp_pool_shared() is NULL. */
  mp_obj *shared;
  /* mpire's cpu_ids: pin the workers to CPUs.  NULL: no pinning; else a
   * list of 1 entry (every worker gets it) or of `processes` entries
   * (worker k gets entry k, replacements included), each an int (one
   * CPU) or a list of ints (any of those CPUs).  A CPU id the parent may
   * not run on (sched_getaffinity), a list of another length or an entry
   * of another type: MP_EINVAL at mp_pool_new.  ThreadPool workers are
   * pinned the same way (the thread only). */
  mp_obj *cpu_ids;
  /* Run the jobs through a remote executor (above; copied, with its ctx
   * borrowed for the pool's life): the pool is then a ThreadPool of
   * `processes` threads whatever `context` says, except that task_timeout
   * is passed to the executor instead of being MP_ENOTSUP.  NULL: the
   * pool runs its jobs itself. */
  const mp_pool_executor *executor;
} mp_pool_opts;

/* Called on the result-handling thread (see Callbacks above).  `value` is
 * borrowed: the result (a list for map_async), NULL for None.  `detail` is
 * the failure's text. */
typedef void (*mp_result_cb)(mp_obj *value, void *arg);
typedef void (*mp_error_cb)(int code, const char *detail, void *arg);

/* Every zero field means its default. */
typedef struct mp_apply_opts {
  mp_result_cb callback;       /* on success */
  mp_error_cb error_callback;  /* on failure (not on MP_ECLOSED) */
  void *arg;                   /* passed to both */
  /* mpire's task_timeout, billiard's hard limit: a task still running
   * after this many seconds is stopped -- its worker is SIGKILLed and
   * replaced -- and its result is MP_ETIMEDOUT with a detail.  0 or
   * MP_FOREVER: no limit; negative or NaN: MP_EINVAL.  Checked every
   * MP__POOL_TICK (50 ms), so a task may run up to that much longer.  A
   * ThreadPool cannot stop a thread: MP_ENOTSUP. */
  double task_timeout;
} mp_apply_opts;

typedef struct mp_map_opts {
  /* Items per task.  0: map/starmap (and their async forms) use Python's
   * default, ceil(len / (4 * processes)); imap and imap_unordered use 1. */
  size_t chunksize;
  mp_result_cb callback;       /* map_async/starmap_async: on success */
  mp_error_cb error_callback;  /* map_async/starmap_async: on failure */
  void *arg;
  /* As mp_apply_opts.task_timeout, for each task: a chunk of `chunksize`
   * items (use chunksize 1 for a limit per item); every item of a chunk
   * stopped so is MP_ETIMEDOUT. */
  double task_timeout;
  /* A progress bar on stderr while the map runs (map, starmap, imap, map_array,
   * imap_unordered and the async forms), in tqdm's format:
   *   45%|████▌     | 450/1000 [00:02<00:03, 180.2it/s]
   * (items done / total, elapsed < remaining, rate: s/it below one item
   * a second; h:mm:ss from an hour on).  The workers count
   * each item as it finishes (one shared add; nothing when off); the
   * parent's result-handling thread redraws at most 10 times a second.
   * On a terminal the bar is one line redrawn in place (\r); when stderr
   * is not a terminal a plain line is printed at most every 2 s (never
   * the same line twice).  Either way the last line, printed when every
   * item is done, shows the total (100%) and ends with a newline.  Bars of
   * concurrent maps share the terminal line.  At most 31 bars at a time
   * per pool: MP_EBUSY beyond.  Empty maps draw nothing.  Not for the
   * iterator-fed imaps (MP_ENOTSUP: no total to show). */
  int progress;
  /* The iterator-fed imaps (mp_pool_imap_iter): at most this many items
   * taken from the callback and not yet handed out by mp_imap_next (the
   * backpressure; also the iterator's memory, a slot per item).  0: 4 x
   * processes x chunksize. */
  size_t max_inflight;
} mp_map_opts;

/* Pool(processes, initializer, initargs, maxtasksperchild, context): start
 * the workers and the result-handling thread.  0; MP_EINVAL (out NULL,
 * processes or maxtasksperchild negative, initargs not a tuple);
 * MP_ENOMEM; what mp_process_start or mp_queue_new fails with (the workers
 * already started are stopped). */
MP_EXTERN int mp_pool_new(mp_pool **out, const mp_pool_opts *opts);

/* apply(fn, args): run fn(args) in a worker and wait for it.  0 and *out
 * (a new reference, NULL for None); the task's code (mp_errdetail() its
 * text); MP_EWORKERDIED; MP_ECLOSED (the pool was terminated meanwhile);
 * MP_ESTATE the pool is closed; MP_EINVAL (p or fn NULL, args not a tuple:
 * NULL means ()); the codec's codes for args that cannot be pickled. */
MP_EXTERN int mp_pool_apply(mp_pool *p, mp_task_fn fn, mp_obj *args,
                            mp_obj **out);
/* apply_async: 0 and *out, a result to release with mp_result_free;
 * MP_ESTATE, MP_EINVAL, MP_ENOTSUP (task_timeout on a ThreadPool),
 * MP_ENOMEM.  The result's get may return MP_ETIMEDOUT for a task stopped
 * by its task_timeout (ready() then says 1). */
MP_EXTERN int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, mp_obj *args,
                                  const mp_apply_opts *opts, mp_result **out);
/* map(fn, items): fn((item,)) for each item of a list or tuple, in chunks;
 * 0 and *out, a list of the results in order; the lowest-index failing
 * item's code (text in mp_errdetail()); MP_EWORKERDIED; MP_ETIMEDOUT (a
 * chunk stopped by task_timeout); MP_ECLOSED; MP_ESTATE; MP_EINVAL (NULL,
 * items not a list or tuple); MP_ENOTSUP (task_timeout on a ThreadPool);
 * MP_EBUSY (progress: too many bars at once). */
MP_EXTERN int mp_pool_map(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                          const mp_map_opts *opts, mp_obj **out); /* a list */
/* starmap: fn(item) for each item, which must be a tuple or a list (an
 * item that is not fails with MP_ETYPE). */
MP_EXTERN int mp_pool_starmap(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                              const mp_map_opts *opts, mp_obj **out);
/* The same without waiting: *out a result whose value is the list. */
MP_EXTERN int mp_pool_map_async(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                                const mp_map_opts *opts, mp_result **out);
MP_EXTERN int mp_pool_starmap_async(mp_pool *p, mp_task_fn fn,
                                    const mp_obj *items,
                                    const mp_map_opts *opts, mp_result **out);
/* imap / imap_unordered: an iterator over the results, in order / as they
 * complete.  Release with mp_imap_free (the tasks still run). */
MP_EXTERN int mp_pool_imap(mp_pool *p, mp_task_fn fn, const mp_obj *items,
                           const mp_map_opts *opts, mp_imap **out);
MP_EXTERN int mp_pool_imap_unordered(mp_pool *p, mp_task_fn fn,
                                     const mp_obj *items,
                                     const mp_map_opts *opts, mp_imap **out);
/* An item source for unbounded imaps: returns 0 and sets *item (a new
 * reference the pool takes; NULL: None), MP_EEOF when there are no more,
 * or a negative code, which ends the items: the iterator yields that code
 * (with the mp_seterr text) in that position, after the items before it,
 * then MP_EEOF.  Called with `arg`, by mp_pool_imap_iter and then at the
 * start of each mp_imap_next, on the calling thread, never by two threads
 * at once, and never again after it ended. */
typedef int (*mp_next_fn)(void *arg, mp_obj **item);
/* imap / imap_unordered over the items `next` produces, lazily (Python's
 * imap over a generator, with a bound CPython lacks): items are taken
 * while fewer than opts->max_inflight are taken and not yet handed out
 * (for imap_unordered: while the oldest item not yet handed out is fewer
 * than max_inflight positions back), in chunks of opts->chunksize
 * (default 1), so memory stays bounded whatever the number of items.  If
 * the consumer stops calling mp_imap_next the workers run out of work:
 * that is the backpressure.  Everything else is mp_pool_imap's: results
 * in order / as they complete, errors per item, MP_EEOF after the last.
 * A task fails with MP_ESTATE (the pool is not running) for items taken
 * after close or terminate.  0; MP_EINVAL (NULL p, fn, next or out);
 * MP_ENOTSUP (progress; task_timeout on a ThreadPool); MP_ESTATE;
 * MP_ENOMEM.  mp_imap_free before the end stops taking items (those
 * taken still run).  The iterator outlives the pool (mp_pool_free): it
 * takes no more items then: the next position fails with MP_ECLOSED. */
MP_EXTERN int mp_pool_imap_iter(mp_pool *p, mp_task_fn fn, mp_next_fn next,
                                void *arg, const mp_map_opts *opts,
                                mp_imap **out);
MP_EXTERN int mp_pool_imap_unordered_iter(mp_pool *p, mp_task_fn fn,
                                          mp_next_fn next, void *arg,
                                          const mp_map_opts *opts,
                                          mp_imap **out);
/* next(timeout): 0 and *out (a new reference, NULL for None) for the next
 * result; that item's code (mp_errdetail() its text; the iterator moves
 * on past it, as Python's next() raising the task's exception);
 * MP_EEOF after the last (Python's StopIteration); MP_ETIMEDOUT (the
 * iterator stays where it was); MP_EINVAL. */
MP_EXTERN int mp_imap_next(mp_imap *it, mp_obj **out, double timeout);
MP_EXTERN void mp_imap_free(mp_imap *it); /* NULL ignored */

/* map_array(fn, in, out): fn(in + i * in_size, out + i * out_size, shared)
 * for each i < n, in the workers, with no pickling of the elements.
 * Workers read `in` and write `out` through shared memory: when an array
 * lies inside a SharedMemory segment of this process (mp_shm_new) the
 * workers map that segment and use it in place; otherwise the array is
 * copied once into an anonymous segment (`in`) or out of one (`out`), by
 * the calling thread while the workers run: `in` chunk by chunk ahead of
 * them (a worker that claims a chunk not copied yet waits for it), `out`
 * chunk by chunk as each ends.  A ThreadPool uses both arrays in place.  So fn
 * must not read *out (its content is the caller's only in place, else
 * unspecified) and must write every byte of its out element.  The pool
 * keeps its last call's segments (and each worker its mappings of them)
 * for the next call, so a repeated map_array pays no page faults; they go
 * with the pool.
 * in_size 0: fn gets NULL for in (likewise out).  `shared` (NULL: fn gets
 * NULL) is sent once per worker task, as a pickle (plain data, handles).
 *
 * The elements are cut into chunks (opts->chunksize; 0: about 64 per
 * worker) that the workers claim one after another from a shared counter,
 * so uneven element costs balance.  An element that fails (a negative
 * return; a positive one counts as MP_EINVAL) does not stop the others:
 * the call returns the code of the failing element of the lowest index,
 * mp_errdetail() "element I: <worker name>: <its text>".
 *
 * Crash safety: a worker that dies in the middle (signal, exit) leaves the
 * chunk it was running unfinished; once the others are done, the
 * unfinished chunks run once more on another worker, so the call still
 * succeeds -- fn may thus run twice for some elements of that chunk, and
 * must depend only on its element.  If a chunk's worker dies again, the
 * call returns MP_EWORKERDIED, the detail naming the elements not computed
 * and how the worker died (every other element is computed).
 *
 * 0; the failing element's code; MP_EWORKERDIED; MP_EINVAL (p or fn NULL,
 * in or out NULL with a nonzero size and n, callbacks given, a NaN or
 * negative task_timeout); MP_EOVERFLOW (n * size does not fit); MP_ENOTSUP
 * (a task_timeout: a worker runs many chunks in one task); MP_EBUSY
 * (progress: too many bars at once).  With progress, the bar counts
 * elements as each chunk ends; with insights, each chunk is one entry of
 * a worker's tasks ("elements A-B" in the slowest list);
 * MP_ESTATE (the pool is closed or terminated); MP_ECLOSED (terminated
 * meanwhile); MP_ENOMEM or a system code for the segments.  n 0: 0 at once
 * (MP_ESTATE on a closed pool). */
MP_EXTERN int mp_pool_map_array(mp_pool *p, mp_elem_fn fn, const void *in,
                                size_t in_size, void *out, size_t out_size,
                                size_t n, const mp_obj *shared,
                                const mp_map_opts *opts);

/* ---- mpire's extras ------------------------------------------------------ */

/* Inside a task, the initializer or the exit hook (in a worker): */
/* The worker's place, 0..processes-1, the same for a worker that replaces
 * it; -1 outside a worker. */
MP_EXTERN int mp_pool_worker_id(void);
/* The worker's state: a dict (borrowed) that lives as long as the worker
 * (replacements start again from mp_pool_opts.worker_state), which its
 * tasks, initializer and exit hook may read and change; NULL outside a
 * worker. */
MP_EXTERN mp_obj *mp_pool_worker_state(void);
/* mp_pool_opts.shared as this worker received it (borrowed; do not
 * change it); NULL outside a worker or when none was given. */
MP_EXTERN const mp_obj *mp_pool_shared(void);

/* The exit hooks' results so far, in the order the workers ended: 0 and
 * *out a new list (complete after mp_pool_join); MP_EINVAL. */
MP_EXTERN int mp_pool_exit_results(mp_pool *p, mp_obj **out);

/* Insights (mp_pool_opts.insights), summed per worker place over the
 * workers that ran there.  Times in seconds. */
typedef struct mp_pool_worker_insights {
  int id;              /* the place (mp_pool_worker_id) */
  int starts;          /* workers started there (replacements: > 1) */
  double startup;      /* from the start request to the worker's code */
  double init;         /* in the initializer */
  double waiting;      /* waiting for tasks */
  double working;      /* running tasks (a map's chunk counts whole) */
  double exiting;      /* in the exit hook */
  long long tasks;     /* task calls (items of maps, applies) */
  long long jobs;      /* jobs (an apply, a chunk of a map) */
} mp_pool_worker_insights;

typedef struct mp_pool_slow_task {
  double seconds;
  int worker;          /* its place */
  size_t index;        /* the item's position in its map (apply: 0) */
  char args[64];       /* repr of its args tuple, truncated */
} mp_pool_slow_task;

typedef struct mp_pool_insights {
  int nworkers;
  mp_pool_worker_insights *workers; /* nworkers, malloc'd */
  int nslowest;
  mp_pool_slow_task slowest[5];     /* slowest first, over every worker */
} mp_pool_insights;

/* Read the insights: 0 and *out (release with mp_pool_insights_release);
 * MP_ESTATE if the pool was made without insights; MP_EINVAL; MP_ENOMEM.
 * Exact once the workers are idle (after a map returned, or join); while
 * they run, each worker's figures are a consistent snapshot.  Still
 * readable after close, join and terminate, until mp_pool_free. */
MP_EXTERN int mp_pool_insights_get(mp_pool *p, mp_pool_insights *out);
MP_EXTERN void mp_pool_insights_release(mp_pool_insights *in);
/* Print a summary table (per worker, totals, the slowest tasks) to `f`
 * (NULL: stdout): 0, or as mp_pool_insights_get. */
MP_EXTERN int mp_pool_insights_print(mp_pool *p, FILE *f);

/* AsyncResult.get(timeout): 0 and *out (a new reference; NULL for None) --
 * may be called any number of times; the task's code with its text;
 * MP_EWORKERDIED; MP_ECLOSED (the pool was terminated first);
 * MP_ETIMEDOUT not ready within `timeout` (Python's
 * multiprocessing.TimeoutError; the result stays gettable); MP_EINVAL. */
MP_EXTERN int mp_result_get(mp_result *r, mp_obj **out, double timeout);
/* wait(timeout): 0 once ready, MP_ETIMEDOUT, MP_EINVAL.
 *
 * How get, wait and mp_imap_next wait: while results have been coming back
 * within about 100 us of a caller starting to wait (this process's recent
 * waits), a caller polls for up to twice that before it sleeps -- a round
 * trip then costs no sleep and wake-up of the caller, and keeps the CPUs
 * the handler and workers run on awake.  Otherwise, and after the poll, it
 * sleeps; a caller waiting on long tasks does not poll at all. */
MP_EXTERN int mp_result_wait(mp_result *r, double timeout);
/* ready(): 1 or 0 (MP_EINVAL for NULL). */
MP_EXTERN int mp_result_ready(const mp_result *r);
/* successful(): 1 or 0 once ready; MP_ESTATE before (Python's
 * ValueError); MP_EINVAL. */
MP_EXTERN int mp_result_successful(const mp_result *r);
/* Release the result (NULL ignored); its task still runs. */
MP_EXTERN void mp_result_free(mp_result *r);

/* close(): 0 (again: 0); MP_EINVAL. */
MP_EXTERN int mp_pool_close(mp_pool *p);
/* terminate(): 0 once the workers are gone (bounded: about 1 s whatever
 * they do, except a ThreadPool's running task); MP_EDEADLK from a
 * callback; MP_EINVAL. */
MP_EXTERN int mp_pool_terminate(mp_pool *p);
/* join(): 0 once the work is done and the workers exited; MP_ESTATE while
 * the pool runs (not closed or terminated); MP_EDEADLK from a callback;
 * MP_EINVAL. */
MP_EXTERN int mp_pool_join(mp_pool *p);
/* Terminate (if not joined) and release.  NULL ignored. */
MP_EXTERN void mp_pool_free(mp_pool *p);

#ifdef __cplusplus
}
#endif
#endif
