/* SPDX-License-Identifier: MIT */
/* Internals of the queue layer (src/queue): Queue, SimpleQueue and
 * JoinableQueue on process-shared memory.  The public contract is
 * include/mproc/queue.h; the mechanism is described in docs/queue.md.  In
 * short:
 *
 * One memfd per queue, sealed against shrinking, mapped by every holder at
 * a reservation large enough for the queue's memory cap (so growing the
 * file never moves the mapping).  Page 0 is the header; the rest is a
 * sequence of segments laid end to end.  The items form a log: a linked
 * list of segments, records written one after another in each, from the
 * oldest segment not yet recycled, through the head segment (where
 * consumers take) to the tail segment (where producers write).  Producers
 * recycle the oldest segment once the head has left it and every record in
 * it has been copied out (a counter says so; when it disagrees, because a
 * reader died, the records themselves are checked).
 *
 * A record is a 16-byte header and its payload, 8-aligned:
 *   w   = flags << 57 | state << 54 | owner pid << 32 | payload length
 *   aux = owner pid << 40 | owner start time (40 bits): pid reuse
 * Producers claim a place under the put lock (a few stores), copy the
 * payload with no lock held, and commit with one CAS (WRITING -> READY).
 * Consumers take under the get lock (READY -> READING, head moved on), copy
 * out with no lock held (a big item: decoded as it is copied, each byte
 * read once, mp__pickle_loads_shared), and finish (READING -> DONE).  The
 * locks are the sync layer's robust locks: a process killed while holding
 * one hands the next locker MP_EOWNERDEAD, and that locker replays the
 * dead holder's journal.  A record left WRITING by a dead producer becomes padding when it
 * reaches the head; one left READING by a dead consumer is found when its
 * segment is recycled.
 *
 * Journals.  Each critical section changes several words (a record header,
 * counters, the tail or the head).  It writes the new values into the
 * lock's journal -- (offset, value) stores ending with the publication --
 * arms it, applies the stores in order and disarms it.  A locker inheriting
 * the lock from a dead holder finds the journal armed and applies it again
 * unless the publication already happened; so a critical section takes
 * effect wholly or not at all.
 *
 * Nothing read from shared memory is trusted: every offset is checked
 * against the part of the file known to exist before it is used, sizes are
 * read once, and walks are bounded. */
#ifndef MPROC_QUEUE_INTERNAL_H
#define MPROC_QUEUE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "mproc/queue.h"
#include "sync/sync_internal.h"

/* ThreadSanitizer does not model atomic_thread_fence (gcc warns, -Wtsan):
 * under it a full fence is a read-modify-write of a local word instead (a
 * locked instruction orders the same on x86), which it understands. */
#if defined(__SANITIZE_THREAD__)
#define MP__Q_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MP__Q_TSAN 1
#endif
#endif
static inline void
mp__q_fence(void)
{
#ifdef MP__Q_TSAN
  _Atomic int local = 0;
  atomic_fetch_add_explicit(&local, 0, memory_order_seq_cst);
#else
  atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* MP__CPU_RELAX: platform/platform.h */

/* memcpy for an item's bytes: inline up to 32 bytes (two overlapping
 * fixed-size copies), libc's beyond.  A small item's put or get then
 * stays in the queue's own pages of code (see MP__HOT). */
static inline void
mp__q_copy(void *dst, const void *src, size_t n)
{
  unsigned char *d = dst;
  const unsigned char *s = src;
  if (n > 32) {
    memcpy(d, s, n);
  } else if (n >= 16) {
    memcpy(d, s, 16);
    memcpy(d + n - 16, s + n - 16, 16);
  } else if (n >= 8) {
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    memcpy(d, s, 4);
    memcpy(d + n - 4, s + n - 4, 4);
  } else if (n) {
    d[0] = s[0];
    d[n / 2] = s[n / 2];
    d[n - 1] = s[n - 1];
  }
}
#define MP__Q_PAGE_UP(x)                                                     \
  (((uint64_t)(x) + MP__Q_PAGE - 1) & ~(uint64_t)(MP__Q_PAGE - 1))

#define MP__Q_MAGIC UINT64_C(0x3165756575517063) /* "cpQueue1" */
#define MP__Q_VERSION 1u
#define MP__Q_SEG_MAGIC UINT32_C(0x67655371) /* "qSeg" */
#define MP__Q_PAGE 4096u
#define MP__Q_SPIN_FAILS_MAX 6 /* a poll is cut to 1/64 at most */
#define MP__Q_SEGHDR 64u /* segment header; records start after it */
#define MP__Q_RECHDR 16u
#define MP__Q_MIN_SEGMENT (16u * 1024u)

/* Record states. */
enum {
  MP__QR_EMPTY = 0, /* never written: invalid below the tail */
  MP__QR_WRITING,   /* claimed; its owner is copying the payload in */
  MP__QR_READY,     /* committed; may be taken */
  MP__QR_READING,   /* taken; its owner is copying it out */
  MP__QR_DONE,      /* copied out */
  MP__QR_PAD        /* skipped: its producer died before committing */
};
#define MP__QR_FDS 1u /* flag: the payload starts with an mp__qfds_prefix */

#define MP__QW_LEN(w) ((uint32_t)(w))
#define MP__QW_PID(w) ((uint32_t)((w) >> 32) & 0x3fffffu)
#define MP__QW_STATE(w) ((unsigned)((w) >> 54) & 7u)
#define MP__QW_FLAGS(w) ((unsigned)((w) >> 57))
#define MP__QW_MAKE(state, flags, pid, len)                                  \
  ((uint64_t)(flags) << 57 | (uint64_t)(state) << 54                         \
   | (uint64_t)((pid) & 0x3fffffu) << 32 | (uint64_t)(uint32_t)(len))

/* The payload prefix of an item holding descriptors: the sequence number
 * of the message on the queue's socket that carries them. */
struct mp__qfds_prefix {
  uint64_t seq;
  uint32_t nfds;
  uint32_t magic;
};
#define MP__Q_FDS_MAGIC UINT32_C(0x73644671) /* "qFds" */

struct mp__qrec {
  _Atomic uint64_t w;
  _Atomic uint64_t aux;
};

#define MP__Q_JMAX 72 /* a run of 32 records: 2 stores each + 3 */
#define MP__Q_RUN 32  /* records claimed or taken per journal */
struct mp__qjournal {
  _Atomic uint64_t armed;
  uint64_t n;
  struct {
    uint64_t off, val;
  } e[MP__Q_JMAX];
};

struct mp__qseg {
  _Atomic uint64_t tag;      /* MP__Q_SEG_MAGIC | state << 32 */
  uint64_t size;             /* bytes, header included, a page multiple */
  _Atomic uint64_t sealed;   /* where its records end once the tail left */
  _Atomic uint64_t next;     /* the next segment of the log; 0 */
  _Atomic uint64_t nrec;     /* records in it, written when it is sealed */
  /* generation << 32 | records copied out or skipped: a reader late with
   * its count (the segment already recycled, found finished by its records)
   * must not count in the segment's next life */
  _Atomic uint64_t finished;
  _Atomic uint64_t free_next; /* free list link (put lock) */
  uint64_t spare;
};
enum { MP__QS_LIVE = 1, MP__QS_FREE, MP__QS_PUNCHED };
#define MP__QSEG_TAG(state) ((uint64_t)MP__Q_SEG_MAGIC | (uint64_t)(state) << 32)

struct mp__qhdr {
  uint64_t magic;
  uint32_t version, joinable;
  uint64_t maxsize, max_message, memory_cap, segment_size, reserve;

  /* producers (put lock) */
  _Alignas(64) struct mp__slock put_lock;
  struct mp__qjournal pj;
  _Atomic uint64_t tail;     /* where the next record goes */
  _Atomic uint64_t tail_seg; /* the segment it is in */
  _Atomic uint64_t tail_nrec; /* records claimed in that segment so far */
  _Atomic uint64_t reserved; /* items ever claimed */
  _Atomic uint64_t oldest;   /* the oldest segment not recycled */
  _Atomic uint64_t file_used; /* end of the last segment */
  _Atomic uint64_t mem_used; /* bytes of segments not punched */
  _Atomic uint64_t free_std, free_big; /* free lists of segments */
  _Atomic uint64_t free_committed;     /* bytes on them not punched */
  _Atomic uint64_t fd_seq;   /* last fd message sent */

  /* consumers (get lock) */
  _Alignas(64) struct mp__slock get_lock;
  struct mp__qjournal gj;
  _Atomic uint64_t head; /* the next record to take */
  _Atomic uint64_t head_seg;
  _Atomic uint64_t taken;  /* items ever taken */
  _Atomic uint64_t padded; /* items skipped (dead producers) */
  _Atomic uint64_t fd_seen; /* last fd message received */

  /* anyone */
  _Alignas(64) _Atomic uint64_t done; /* task_done calls */
  /* A waker sets *_signalled before its futex wake and the woken clears it:
   * while a wake is on its way, more commits (or takes) make no system
   * call -- a sleeping consumer would otherwise cost its producer one
   * futex wake per item until it runs again. */
  _Alignas(64) _Atomic uint32_t put_seq; /* futex: a record was committed */
  _Atomic uint32_t get_waiters;
  _Atomic uint32_t put_signalled;
  _Alignas(64) _Atomic uint32_t get_seq; /* futex: room was made */
  _Atomic uint32_t put_waiters;
  _Atomic uint32_t get_signalled;
  _Alignas(64) _Atomic uint32_t done_seq; /* futex: the unfinished count fell */
  _Atomic uint32_t join_waiters;
};

_Static_assert(sizeof(struct mp__qhdr) <= MP__Q_PAGE,
               "the queue header fits its page");

/* One process's handle. */
struct mp_queue {
  _Atomic int refs;
  _Atomic int closed;
  int memfd, sock_put, sock_get;
  uint8_t *base; /* the mapping, `reserve` bytes */
  struct mp__qhdr *h;
  _Atomic uint64_t known; /* bytes of the file known to exist */
  /* read from the header once, at creation or rebuild */
  uint64_t maxsize, max_message, cap, segsize, reserve;
  int joinable;
  /* a stalled head record seen by this process, and how often */
  _Atomic uint64_t stall_w;
  _Atomic int stall_n;
  /* polls before sleeping that ended empty, in a row (spin_until); a new
   * handle starts at MP__Q_SPIN_FAILS_MAX, with no evidence yet that a
   * poll pays (a fresh pool worker's first wait for a task would burn
   * 50 us of the CPU its parent is forking the next worker on) */
  _Atomic int spin_fails;
  /* the last segment checked: offset >> 12 << 20 | size >> 12 */
  _Atomic uint64_t seg_cache;
};

/* ---- queues kept for reuse (queue.c) ----------------------------------------
 * Drop a reference to a queue no other process holds any more, as the
 * caller knows (a pool's own queues, its workers ended): the last one keeps
 * the queue's file and mapping for this process's next queue of the same
 * shape (its memory given back, its contents gone).  With mp_queue_free
 * that is never assumed: a queue handed to other processes may live on. */
void mp__queue_free_private(mp_queue *q);
/* Unmap every kept queue now (a leak check; otherwise one unused for 10 s
 * goes at the next keep or take). */
void mp__queue_cache_trim(void);
int mp__queue_cache_count(void); /* kept now (tests) */

/* ---- the log (ring.c) -------------------------------------------------------
 * Lock a side, replaying a dead holder's journal: 0, MP_ETIMEDOUT,
 * MP_EMALFORMED (a journal that does not fit the file). */
int mp__q_put_lock(mp_queue *q, mp__deadline dl);
/* Spin briefly for a side (put != 0: the put side): 0 held (journal
 * replayed), 1 still busy, MP_EMALFORMED. */
int mp__q_try_lock(mp_queue *q, int put);
void mp__q_put_unlock(mp_queue *q);
int mp__q_get_lock(mp_queue *q, mp__deadline dl);
void mp__q_get_unlock(mp_queue *q);

/* Items in the queue (reserved - taken - padded), and not yet done. */
uint64_t mp__q_count(const mp_queue *q);
uint64_t mp__q_unfinished(const mp_queue *q);

/* A claimed place for one record. */
typedef struct mp__qclaim {
  struct mp__qrec *rec;
  uint8_t *payload;
  uint64_t w; /* the WRITING word */
} mp__qclaim;
/* Under the put lock: claim a record of `len` payload bytes: 0, MP_EFULL
 * (the memory cap, with a detail), MP_EMALFORMED, -errno (growing the
 * file). */
int mp__q_claim(mp_queue *q, uint32_t len, unsigned flags, mp__qclaim *c);
/* Claim records of lens[0..n) (no descriptors) in one journal while they
 * fit the tail segment (at most MP__Q_RUN): the number claimed (>= 1), or
 * mp__q_claim's codes. */
int mp__q_claim_run(mp_queue *q, const uint32_t *lens, size_t n,
                    mp__qclaim *c);
/* After the copy, with no lock held: make the record READY.  0, or
 * MP_ESTATE if the record was skipped meanwhile (judged a dead producer's:
 * never for a live process). */
int mp__q_commit(mp_queue *q, const mp__qclaim *c);
/* mp__q_commit in two halves, for a batch: each record made READY as its
 * copy ends, and one look for a sleeping consumer after the last. */
int mp__q_commit_quiet(const mp__qclaim *c);
void mp__q_wake_consumer(mp_queue *q);

/* What mp__q_take took. */
typedef struct mp__qtake {
  struct mp__qrec *rec;
  const uint8_t *payload;
  uint32_t len;
  unsigned flags;
  uint64_t seg; /* its segment (file offset) */
  uint64_t w;   /* the READING word */
  uint32_t gen; /* the segment's generation when it was taken */
} mp__qtake;
/* Under the get lock: take the first record if it is READY, and the READY
 * records right behind it in its segment (up to max_n -- at most
 * MP__Q_RUN --
 * within `maxlen` bytes in all, stopping after one holding descriptors):
 * the number taken (>= 1) and t[0..n).  0
 * nothing to take: empty (*wait_w 0) or its producer still copying (*wait_w
 * the record's word, *wait_rec the record).  MP_EMSGSIZE (nothing taken)
 * when its payload is longer than `maxlen`, with t->len and t->flags set;
 * MP_EMALFORMED.  A producer still copying is asked whether it is alive
 * (its record skipped if not) when `check_dead`, or when this process saw
 * the same record stalled before. */
int mp__q_take(mp_queue *q, size_t maxlen, size_t max_n, int check_dead,
               mp__qtake *t, uint64_t *wait_w, struct mp__qrec **wait_rec);
/* After copying out, no lock held (the _many form counts a run of records
 * of one segment at once). */
void mp__q_finish(mp_queue *q, const mp__qtake *t);
void mp__q_finish_many(mp_queue *q, const mp__qtake *t, size_t n);

/* Lay out a new queue's header and first segment (file already sized). */
void mp__q_init_layout(mp_queue *q);
/* Refresh the known file size (fstat); 0 if `end` lies inside the file. */
int mp__q_known(mp_queue *q, uint64_t end);

/* For tests: called (when set) after a stalled record's writer was judged
 * dead and before the record is turned into padding -- where a writer's
 * commit and exit can slip in. */
extern void (*mp__q_pad_hook_for_tests)(struct mp__qrec *rec);
/* Tests only: k > 0 makes the next journal of at least k stores apply the
 * first k - 1 and _exit(0), as a process killed inside it. */
extern int mp__q_die_in_journal_for_tests;

/* For tests and the fuzzer: the mapping and the bytes of it in use; the
 * segments on the free lists and the memory in use. */
void mp__queue_mem_for_tests(mp_queue *q, uint8_t **base, size_t *len);
void mp__queue_stats_for_tests(mp_queue *q, size_t *free_segs,
                               uint64_t *mem_used, uint64_t *file_used);

#endif
