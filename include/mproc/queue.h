/* SPDX-License-Identifier: MIT */
/* Queues shared between processes and threads: Queue, SimpleQueue and
 * JoinableQueue -- Python's multiprocessing.Queue & co., for C.
 *
 * Where the items live.  In process-shared memory (a memfd every holder of
 * the queue maps), not in the process that put them: there is no feeder
 * thread and no per-process buffer.  When mp_queue_put returns 0 the item
 * is in the queue, so a process may put and exit at once, and joining a
 * process that put items before they were taken never deadlocks (the trap
 * multiprocessing's "joining processes that use queues" warns about does not
 * exist here).  The memory grows as items arrive: maxsize 0 really is
 * unbounded, up to a memory cap (mp_queue_opts.memory_cap) at which put
 * returns MP_EFULL with a detail.  When the last process holding the queue
 * ends, however it ends, the kernel frees everything: no /dev/shm entry, no
 * file, nothing to clean up.
 *
 * Items.  mp_queue_put stores the pickle of a value (the codec of pickle.h);
 * mp_queue_put_bytes stores bytes as they are.  Both are read by either
 * get: mp_queue_get unpickles what it takes (MP_EMALFORMED, the item
 * consumed, when it is not a pickle), mp_queue_get_bytes returns the stored
 * bytes (for a put item: its pickle).  An item may hold handles
 * (Connections, locks, Values/Arrays, SharedMemory, other queues) and
 * function values; their descriptors travel beside the shared memory, over
 * a socket the queue owns, and the handles arrive working.  Items holding
 * descriptors are limited by that socket's kernel buffer (a few thousand
 * waiting at once): beyond it put waits, like a full queue.
 * mp_queue_get_bytes of an item holding descriptors closes them.
 *
 * Crash safety.  Any process using the queue may be SIGKILLed at any
 * instant, and the queue keeps working for the others at once:
 *  - a producer killed inside a put: its item is delivered whole or not at
 *    all (the record it was writing is skipped once its death is seen:
 *    within the liveness slice, 10 to 200 ms); no consumer ever sees part of
 *    an item;
 *  - a consumer killed inside a get loses at most the item it was taking
 *    (the one it had claimed and was copying out); every other item stays;
 *  - qsize, the room of a bounded queue and a JoinableQueue's unfinished
 *    count stay exact: a skipped item is not counted.  A consumer that dies
 *    between get and task_done leaves its item unfinished: join waits for it
 *    (nobody can know whether its work was done); use join's timeout.
 * Waiters sleep on futexes in bounded slices and check the liveness of the
 * process they wait for (the lock layer's mechanism, sync.h).  A process
 * that has waited without a timeout more than 16 times runs one helper
 * thread, "mproc-slice" (every signal blocked, idle when nobody waits), that
 * ends those slices instead of a kernel timer per wait (docs/queue.md).  Shared memory
 * may be scribbled on by a buggy process: every header read from it is
 * checked before use, and a corrupt queue gives MP_EMALFORMED, never a read
 * outside the mapping.
 *
 * Threads, fork, handles.  Every function is thread-safe; several threads of
 * one process may put and get at once.  A queue is a handle value
 * (mp_queue_obj): it is passed to children as a Process argument under
 * every start method, through Connections, and inside other queues' items,
 * and fork children may use the queue they inherited.
 *
 * Timeouts follow the one rule (errors.h): > 0 seconds, <= 0 do not block
 * (get_nowait / put_nowait), MP_FOREVER without limit, NaN MP_EINVAL.
 *
 * Python's names: Queue(maxsize) is mp_queue_new with opts.maxsize;
 * JoinableQueue is opts.joinable = 1; SimpleQueue is a queue with default
 * options (mp_queue_new(&q, NULL)) and its empty/get/put/close are
 * mp_queue_empty/get/put/close.  queue.Empty and queue.Full are MP_EEMPTY and
 * MP_EFULL; Python's ValueError on a closed queue is MP_ECLOSED, on an
 * extra task_done MP_ESTATE. */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "mproc/version.h"
#include "errors.h"
#include "obj.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_queue mp_queue;

/* Every zero field means its documented default. */
typedef struct mp_queue_opts {
  size_t maxsize;     /* items; 0 = unbounded, as Python's Queue() */
  int joinable;       /* JoinableQueue: task_done / join */
  size_t max_message; /* largest item in bytes; 0 = MP_QUEUE_DEFAULT_MAX_MESSAGE
                         (at most MP_QUEUE_MAX_MESSAGE) */
  /* Bytes of shared memory the queue may hold (items waiting, plus memory
   * kept for reuse); 0 = MP_QUEUE_DEFAULT_MEMORY_CAP.  A put that would
   * pass it returns MP_EFULL with a detail, also on an unbounded queue. */
  uint64_t memory_cap;
  /* Items are written into segments of this many bytes (rounded up to a
   * page; 0 = MP_QUEUE_DEFAULT_SEGMENT); a larger item gets a segment of
   * its own.  Freed segments are kept for reuse. */
  size_t segment_size;
} mp_queue_opts;

#define MP_QUEUE_DEFAULT_MAX_MESSAGE ((size_t)1 << 28)      /* 256 MiB */
#define MP_QUEUE_MAX_MESSAGE ((size_t)0xffffffffu - 4096)   /* ~4 GiB */
#define MP_QUEUE_DEFAULT_MEMORY_CAP ((uint64_t)8 << 30)     /* 8 GiB */
#define MP_QUEUE_DEFAULT_SEGMENT ((size_t)256 << 10)        /* 256 KiB */

/* A new empty queue (opts NULL: Queue() -- unbounded, not joinable).
 * 0, MP_EINVAL (out NULL, max_message above MP_QUEUE_MAX_MESSAGE,
 * memory_cap below one segment), MP_ENOMEM, MP_EMFILE or -errno (memfd,
 * socket, mmap). */
MP_EXTERN int mp_queue_new(mp_queue **out, const mp_queue_opts *opts);
/* Another reference to the same handle (NULL ignored, returned). */
MP_EXTERN mp_queue *mp_queue_ref(mp_queue *q);
/* Drop a reference; the last one unmaps the queue in this process and
 * closes its descriptors (the items stay for other holders).  NULL ignored.
 * Freeing a queue another thread of this process is blocked on is
 * undefined, as for pthread objects. */
MP_EXTERN void mp_queue_free(mp_queue *q);

/* put(item, block, timeout): 0 once the item is in the queue; MP_EFULL no
 * room within `timeout` (a bounded queue holding maxsize items; the memory
 * cap, with a detail); MP_EMSGSIZE the item is larger than max_message;
 * MP_ECLOSED this process closed the queue; MP_ENOTSUP a value that cannot
 * be pickled (a handle type without reduce); the codec's codes (MP_ECYCLE,
 * MP_ELIMIT, MP_ENOMEM); MP_EINVAL NULL or NaN timeout; MP_EMALFORMED the
 * shared memory is corrupt. */
MP_EXTERN int mp_queue_put(mp_queue *q, const mp_obj *item, double timeout);
/* get(block, timeout): 0 and *out (a new reference); MP_EEMPTY nothing to
 * take within `timeout` (0 included: get_nowait); MP_ECLOSED; MP_EMALFORMED
 * the item taken is not a pickle (it is consumed) or the shared memory is
 * corrupt; the codec's codes; MP_EINVAL. */
MP_EXTERN int mp_queue_get(mp_queue *q, mp_obj **out, double timeout);
/* The same with bytes as they are: put_bytes stores len bytes (len 0
 * allowed); get_bytes sets *out to a buffer of *len bytes to release with
 * mp_free() (never NULL on success, also for an empty item). */
MP_EXTERN int mp_queue_put_bytes(mp_queue *q, const void *buf, size_t len,
                                 double timeout);
MP_EXTERN int mp_queue_get_bytes(mp_queue *q, void **out, size_t *len,
                                 double timeout);
/* get_bytes into the caller's buffer of `size` bytes: 0 and *len;
 * MP_EMSGSIZE (with *len the item's size) when it does not fit -- the item
 * then stays in the queue, first in line. */
MP_EXTERN int mp_queue_get_bytes_into(mp_queue *q, void *buf, size_t size,
                                      size_t *len, double timeout);

/* ---- batches (faster-fifo's put_many / get_many) --------------------------
 * One call puts or takes many items, paying the synchronisation once. */
typedef struct mp_queue_buf {
  const void *data;
  size_t len;
} mp_queue_buf;
/* Put items[0..n) in order: the number put (1..n; fewer than n only when
 * room ran out after the first), or the codes of put when not even the
 * first could be put within `timeout` (MP_EFULL...).  n 0 returns 0. */
MP_EXTERN int mp_queue_put_many_bytes(mp_queue *q, const mp_queue_buf *items,
                                      size_t n, double timeout);
MP_EXTERN int mp_queue_put_many(mp_queue *q, const mp_obj *const *items,
                                size_t n, double timeout);
/* Take up to max_items items, waiting up to `timeout` for the first only:
 * the number taken (>= 1) or the codes of get (MP_EEMPTY...).
 * get_many_bytes copies them one after another into buf (`size` bytes: the
 * byte budget) and points items[i] into it; it stops before an item that
 * does not fit, and returns MP_EMSGSIZE (the item staying first in line)
 * when not even the first fits.  get_many sets out[0..count) to new
 * references. */
MP_EXTERN int mp_queue_get_many_bytes(mp_queue *q, void *buf, size_t size,
                                      mp_queue_buf *items, size_t max_items,
                                      double timeout);
MP_EXTERN int mp_queue_get_many(mp_queue *q, mp_obj **out, size_t max_items,
                                double timeout);

/* ---- state ------------------------------------------------------------------
 * qsize: the exact number of items in the queue (>= 0; a negative code:
 * MP_EINVAL, MP_EMALFORMED).  It counts every item whose put has claimed
 * its place, so an item still being copied in by a producer counts (as in
 * Python, whose qsize counts items its feeder thread has not written yet):
 * a get_nowait may find it not ready and return MP_EEMPTY.  empty and full
 * are 1 or 0 (or a code), exact at the instant they read; full is always 0
 * for an unbounded queue. */
MP_EXTERN int mp_queue_qsize(const mp_queue *q);
MP_EXTERN int mp_queue_empty(const mp_queue *q);
MP_EXTERN int mp_queue_full(const mp_queue *q);
/* maxsize as created (0: unbounded). */
MP_EXTERN size_t mp_queue_maxsize(const mp_queue *q);

/* close(): this process puts and gets no more (MP_ECLOSED from then on);
 * other processes and their items are unaffected.  Threads of this process
 * blocked in put or get return MP_ECLOSED within a liveness slice.  A second
 * close is 0.  The handle still needs mp_queue_free. */
MP_EXTERN int mp_queue_close(mp_queue *q);
/* join_thread() and cancel_join_thread(): Python's Queue has a feeder
 * thread that must flush before its process exits; here put writes into
 * shared memory itself, so there is nothing to wait for or to cancel: both
 * return 0 at once (MP_EINVAL for NULL). */
MP_EXTERN int mp_queue_join_thread(mp_queue *q);
MP_EXTERN int mp_queue_cancel_join_thread(mp_queue *q);

/* ---- JoinableQueue ----------------------------------------------------------
 * task_done(): one item taken earlier is finished; MP_ESTATE when called
 * more often than items were taken (Python's ValueError), MP_ENOTSUP on a
 * queue that is not joinable.  join(timeout): 0 once every item ever put has
 * been marked done (at once if so already); MP_ETIMEDOUT; MP_ENOTSUP. */
MP_EXTERN int mp_queue_task_done(mp_queue *q);
MP_EXTERN int mp_queue_join(mp_queue *q, double timeout);

/* ---- as a value ------------------------------------------------------------
 * A handle value (type name "mproc.Queue") holding a new reference: put it
 * in Process args, send it over a Connection, put it in another queue.
 * mp_queue_from_obj returns the queue of such a value (borrowed), NULL if o
 * is not one.  In mp_args_parse, "{Queue}" takes one. */
MP_EXTERN mp_obj *mp_queue_obj(mp_queue *q);
MP_EXTERN mp_queue *mp_queue_from_obj(const mp_obj *o);
MP_EXTERN const mp_handle_type *mp_queue_handle_type(void);

#ifdef __cplusplus
}
#endif
#endif
