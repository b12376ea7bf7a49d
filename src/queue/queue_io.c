/* SPDX-License-Identifier: MIT */
/* Putting and getting: single items and batches, bytes and pickled values,
 * the descriptors that travel beside an item, and the waits (for an item,
 * for room, for a producer still copying). */
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/fd.h"
#include "mproc/pickle.h"
#include "platform/platform.h"
#include "obj/obj_internal.h"
#include "queue/queue_internal.h"

#define BATCH 64                  /* records claimed or taken per lock hold */
#define SLICE_MIN 10000000LL      /* first liveness look at a stalled writer */
#define SLICE_MAX MP__SLICE_NS     /* and at most this long between looks */
#define LOCK_FLOOR 20000000LL     /* a busy side lock is waited for this long
                                     even by a call that must not block */
#define SPIN_NS 50000LL           /* poll this long before sleeping */
#define SPIN_MAX_NS 2000000LL     /* ... at most, for a large item's copy */

/* The deadline of a call, computed when it first has to wait (a put or get
 * that finds what it needs reads no clock). */
typedef struct lazy_dl {
  double timeout;
  mp__deadline dl;
  int set;
} lazy_dl;

static mp__deadline
deadline_of(lazy_dl *l)
{
  if (!l->set) {
    mp__deadline_set(l->timeout, &l->dl); /* NaN was refused earlier */
    l->set = 1;
  }
  return l->dl;
}

/* A side lock for a call whose own deadline may be 0: the lock is held for
 * a few stores at a time, so waiting for it is not "blocking" -- but a
 * holder that is stopped or dying is waited for only LOCK_FLOOR. */
static int
lock_side(mp_queue *q, int put, lazy_dl *l)
{
  int rc = mp__q_try_lock(q, put);
  if (rc <= 0)
    return rc;
  mp__deadline dl = deadline_of(l);
  if (dl != MP__NO_DEADLINE) {
    mp__deadline floor = mp__now_ns() + LOCK_FLOOR;
    if (dl < floor)
      dl = floor;
  }
  return put ? mp__q_put_lock(q, dl) : mp__q_get_lock(q, dl);
}

/* Sleep on `word` while it holds `val`, at most `slice` ns and not past
 * the deadline: 0 (woken, or the slice ended), MP_ETIMEDOUT (the deadline
 * passed). */
MP__HOT static int
sleep_on(_Atomic uint32_t *word, uint32_t val, mp__deadline dl, int64_t slice)
{
  if (dl == MP__NO_DEADLINE) { /* no clock to read: only the slice ends it */
    if (slice == SLICE_MAX) /* the process's slice clock: no timer armed */
      mp__futex_wait_slice((uint32_t *)word, val);
    else
      mp__futex_wait_rel((uint32_t *)word, val, slice);
    return 0;
  }
  int64_t now = mp__now_ns();
  if (dl <= now)
    return MP_ETIMEDOUT;
  int64_t wait = dl - now > slice ? slice : dl - now;
  if (mp__futex_wait_rel((uint32_t *)word, val, wait) == MP_ETIMEDOUT
      && wait == dl - now)
    return MP_ETIMEDOUT;
  return 0;
}

/* Poll `ready` for up to SPIN_NS, without a system call: a consumer that
 * caught up with its producer usually sees the next item within
 * microseconds, and sleeping would cost a futex wait, a wake and two
 * context switches per item. */
MP__HOT static int
spin_until(int (*ready)(mp_queue *, void *), mp_queue *q, void *arg,
           mp__deadline dl, int64_t spin_ns)
{
  if (!mp__plat_spin_useful())
    return 0;
  /* Adaptive: every poll in a row that ended without the item halves the
   * next one (down to 1/64, where a new handle starts), so an idle
   * consumer -- a pool worker waiting for tasks -- stops burning the CPU
   * its peers need, while a busy one keeps catching items without
   * sleeping.  A poll that pays doubles the next one: where polls pay
   * about half the time the budget settles (a reset to the whole budget on
   * every success had a pool's workers and handler, four threads on two
   * CPUs, polling away a third of the CPU time). */
  int fails = atomic_load_explicit(&q->spin_fails, memory_order_relaxed);
  spin_ns >>= fails;
  int64_t until = mp__now_ns() + spin_ns;
  if (dl < until)
    until = dl;
  for (unsigned i = 1;; i++) {
    if (ready(q, arg)) {
      if (fails)
        atomic_store_explicit(&q->spin_fails, fails - 1, memory_order_relaxed);
      return 1;
    }
    MP__CPU_RELAX();
    if (i % 64 != 0)
      continue;
    /* Every few microseconds, let a thread that waits for this CPU run:
     * with more runnable threads than CPUs (a pool: its workers, handler
     * and caller on two CPUs) the peer this poll waits for may be that
     * thread.  With nothing else to run, sched_yield returns at once. */
    sched_yield();
    if (mp__now_ns() >= until) {
      if (fails < MP__Q_SPIN_FAILS_MAX)
        atomic_store_explicit(&q->spin_fails, fails + 1,
                              memory_order_relaxed);
      return 0;
    }
  }
}

static int
check_closed(const mp_queue *q)
{
  return atomic_load_explicit(&q->closed, memory_order_relaxed)
             ? mp_seterr(MP_ECLOSED, "queue is closed in this process")
             : 0;
}

/* ---- descriptors beside items ------------------------------------------------
 * Messages on the queue's socket: {seq, nfds, magic} with the fds attached.
 * A producer sends one (put lock held) just before claiming its record, so
 * messages are in the order of their records; consumers receive under the
 * get lock, in record order, and throw away messages older than the one
 * they want (their producer died before claiming). */
static int
send_fds(mp_queue *q, uint64_t seq, const int *fds, size_t nfds)
{
  struct mp__qfds_prefix m = {seq, (uint32_t)nfds, MP__Q_FDS_MAGIC};
  struct iovec iov = {&m, sizeof m};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MP__MAX_FDS_PER_MSG)];
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = u.buf,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
  memset(u.buf, 0, sizeof u.buf);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  for (;;) {
    if (sendmsg(q->sock_put, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
      return 0;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
      return -EAGAIN;
    if (errno == ETOOMANYREFS)
      return mp_seterr(MP_EFULL, "queue: too many descriptors in flight "
                                 "(the kernel's limit for this user)");
    return mp__errno();
  }
}

/* Receive the descriptors of the record whose prefix is `p` (get lock
 * held): 0 with *fds (malloc'd) and *nfds. */
static int
recv_fds(mp_queue *q, const struct mp__qfds_prefix *p, int **fds,
         size_t *nfds)
{
  *fds = NULL;
  *nfds = 0;
  if (p->magic != MP__Q_FDS_MAGIC || p->nfds == 0
      || p->nfds > MP__MAX_FDS_PER_MSG)
    return mp_seterr(MP_EMALFORMED, "queue: corrupt descriptor record");
  int got[MP__MAX_FDS_PER_MSG];
  for (int tries = 0; tries < 100000; tries++) {
    struct mp__qfds_prefix m;
    size_t len = 0, n = 0;
    /* never waits: the message was sent before its record was claimed */
    int rc = mp__recv_fds_until(q->sock_get, &m, sizeof m, &len, got,
                                MP__MAX_FDS_PER_MSG, &n, 0);
    if (rc == MP_ETIMEDOUT || rc == -EAGAIN || (rc == 0 && len == 0))
      return mp_seterr(MP_EMALFORMED,
                       "queue: the descriptors of an item are missing");
    if (rc == MP_ELIMIT)
      continue; /* not ours (ours has at most the limit); dropped */
    if (rc < 0)
      return rc;
    if (len == sizeof m && m.magic == MP__Q_FDS_MAGIC && m.seq < p->seq) {
      for (size_t i = 0; i < n; i++) /* a dead producer's, never claimed */
        mp__close(got[i]);
      continue;
    }
    if (len != sizeof m || m.magic != MP__Q_FDS_MAGIC || m.seq != p->seq
        || n != p->nfds) {
      for (size_t i = 0; i < n; i++)
        mp__close(got[i]);
      return mp_seterr(MP_EMALFORMED,
                       "queue: descriptor message out of order");
    }
    int *out = malloc(n * sizeof *out);
    if (!out) {
      for (size_t i = 0; i < n; i++)
        mp__close(got[i]);
      return MP_ENOMEM;
    }
    memcpy(out, got, n * sizeof *out);
    *fds = out;
    *nfds = n;
    atomic_store_explicit(&q->h->fd_seen, p->seq, memory_order_relaxed);
    return 0;
  }
  return mp_seterr(MP_EMALFORMED, "queue: descriptor socket flooded");
}

static void
close_fds(int *fds, size_t n)
{
  for (size_t i = 0; i < n; i++)
    mp__close(fds[i]);
  free(fds);
}

/* ---- put ------------------------------------------------------------------------ */

typedef struct qsrc {
  const void *data;
  size_t len;
  const int *fds;
  size_t nfds;
  const mp__pickled *pk; /* or NULL: the item is data; else len is its total */
} qsrc;

static int
has_room(mp_queue *q, void *arg)
{
  (void)arg;
  return mp__q_count(q) < q->maxsize;
}

/* Wait for room in a bounded queue: 0, MP_EFULL (deadline), MP_ECLOSED. */
static int
wait_room(mp_queue *q, lazy_dl *l)
{
  struct mp__qhdr *h = q->h;
  mp__deadline dl = deadline_of(l);
  if (dl == 0)
    return mp_seterr(MP_EFULL, "queue is full (%llu items)",
                     (unsigned long long)q->maxsize);
  if (spin_until(has_room, q, NULL, dl, SPIN_NS))
    return 0;
  atomic_fetch_add_explicit(&h->put_waiters, 1, memory_order_seq_cst);
  uint32_t seq = atomic_load_explicit(&h->get_seq, memory_order_seq_cst);
  int rc = 0;
  if (mp__q_count(q) >= q->maxsize)
    rc = sleep_on(&h->get_seq, seq, dl, SLICE_MAX);
  atomic_fetch_sub_explicit(&h->put_waiters, 1, memory_order_relaxed);
  atomic_store_explicit(&h->get_signalled, 0, memory_order_seq_cst);
  if (check_closed(q))
    return MP_ECLOSED;
  return rc == MP_ETIMEDOUT ? mp_seterr(MP_EFULL, "queue is full (%llu items)",
                                        (unsigned long long)q->maxsize)
                            : 0;
}

/* Put items[0..n): how many were put (>= 1), or a code if none was. */
static int
put_src(mp_queue *q, const qsrc *items, size_t n, double timeout)
{
  if (!q || (n && !items))
    return mp_seterr(MP_EINVAL, "NULL queue or items");
  if (mp__timeout_check(timeout))
    return MP_EINVAL;
  if (n > INT32_MAX)
    n = INT32_MAX;
  for (size_t i = 0; i < n; i++) {
    if (items[i].len > q->max_message)
      return mp_seterr(MP_EMSGSIZE,
                       "queue item of %zu bytes is larger than max_message "
                       "(%llu)",
                       items[i].len, (unsigned long long)q->max_message);
    if (items[i].nfds > MP__MAX_FDS_PER_MSG)
      return mp_seterr(MP_ELIMIT, "a queue item may carry at most %d "
                                  "descriptors",
                       MP__MAX_FDS_PER_MSG);
  }
  struct mp__qhdr *h = q->h;
  lazy_dl l = {timeout, 0, 0};
  size_t done = 0;
  int rc = 0;
  while (done < n) {
    if ((rc = check_closed(q)) != 0)
      break;
    if ((rc = lock_side(q, 1, &l)) != 0) {
      if (rc == MP_ETIMEDOUT)
        rc = mp_seterr(MP_EFULL, "queue: the put side stayed locked");
      break;
    }
    mp__qclaim cl[BATCH];
    size_t k = 0;
    int why = 0; /* 1: no room; 2: descriptor socket full */
    while (done + k < n && k < BATCH) {
      if (q->maxsize && mp__q_count(q) >= q->maxsize) {
        why = 1;
        break;
      }
      const qsrc *it = &items[done + k];
      uint32_t len = (uint32_t)it->len;
      unsigned flags = 0;
      uint64_t seq = 0;
      if (it->nfds) {
        /* the number is burnt before the send: a message whose sender
         * died is never taken for a later one */
        seq = atomic_load_explicit(&h->fd_seq, memory_order_relaxed) + 1;
        atomic_store_explicit(&h->fd_seq, seq, memory_order_release);
        if ((rc = send_fds(q, seq, it->fds, it->nfds)) == -EAGAIN) {
          rc = 0;
          why = 2;
          break;
        }
        if (rc)
          break;
        flags = MP__QR_FDS;
        len += (uint32_t)sizeof(struct mp__qfds_prefix);
      }
      if (!it->nfds) {
        /* a run of plain items in one journal */
        uint32_t lens[MP__Q_RUN];
        size_t m = 0, cap = BATCH - k;
        if (q->maxsize) {
          uint64_t c = mp__q_count(q);
          cap = c >= q->maxsize ? 1 : (q->maxsize - c < cap ? q->maxsize - c : cap);
        }
        while (m < MP__Q_RUN && m < cap && done + k + m < n
               && !items[done + k + m].nfds)
          lens[m] = (uint32_t)items[done + k + m].len, m++;
        if ((rc = mp__q_claim_run(q, lens, m, &cl[k])) < 0)
          break;
        k += (size_t)rc;
        rc = 0;
        continue;
      }
      if ((rc = mp__q_claim(q, len, flags, &cl[k])) != 0)
        break;
      if (it->nfds) {
        struct mp__qfds_prefix p = {seq, (uint32_t)it->nfds, MP__Q_FDS_MAGIC};
        memcpy(cl[k].payload, &p, sizeof p);
      }
      k++;
    }
    /* room left for another waiting producer? pass the wake on */
    if (k && q->maxsize && mp__q_count(q) < q->maxsize
        && atomic_load_explicit(&h->put_waiters, memory_order_seq_cst)) {
      atomic_fetch_add_explicit(&h->get_seq, 1, memory_order_seq_cst);
      mp__futex_wake((uint32_t *)&h->get_seq, 1);
    }
    mp__q_put_unlock(q);
    size_t ok = k;
    for (size_t i = 0; i < k; i++) {
      const qsrc *it = &items[done + i];
      size_t skip = it->nfds ? sizeof(struct mp__qfds_prefix) : 0;
      if (it->pk && it->pk->nsegs) /* big payloads straight from the object */
        mp__pickled_copy(it->pk, cl[i].payload + skip);
      else if (it->len)
        mp__q_copy(cl[i].payload + skip, it->data, it->len);
      int c = mp__q_commit_quiet(&cl[i]);
      if (c && ok == k) {
        ok = i;
        rc = c;
      }
    }
    if (k)
      mp__q_wake_consumer(q);
    done += ok;
    if (rc || done == n)
      break;
    if (why == 1 && (rc = wait_room(q, &l)) != 0)
      break;
    if (why == 2) {
      rc = mp__poll_fd(q->sock_put, POLLOUT, deadline_of(&l));
      if (rc == MP_ETIMEDOUT) {
        rc = mp_seterr(MP_EFULL, "queue: too many items holding descriptors "
                                 "are waiting (the socket buffer is full)");
        break;
      }
      if (rc < 0)
        break;
      rc = 0;
    }
  }
  return done ? (int)done : rc;
}

MP__HOT int
mp_queue_put_bytes(mp_queue *q, const void *buf, size_t len, double timeout)
{
  mp__errdetail_clear();
  if (!buf && len)
    return mp_seterr(MP_EINVAL, "NULL buffer");
  /* The common case in one pass: the put lock free at once, room, a
   * plain record; anything else takes the general path. */
  if (MP__LIKELY(q && timeout == timeout && len <= q->max_message
                 && !atomic_load_explicit(&q->closed, memory_order_relaxed)
                 && mp__q_try_lock(q, 1) == 0)) {
    if (!q->maxsize || mp__q_count(q) < q->maxsize) {
      mp__qclaim c;
      int rc = mp__q_claim(q, (uint32_t)len, 0, &c);
      mp__q_put_unlock(q);
      if (rc)
        return rc;
      if (len)
        mp__q_copy(c.payload, buf, len);
      return mp__q_commit(q, &c);
    }
    mp__q_put_unlock(q);
  }
  qsrc s = {buf, len, NULL, 0, NULL};
  int rc = put_src(q, &s, 1, timeout);
  return rc < 0 ? rc : 0;
}

int
mp_queue_put_many_bytes(mp_queue *q, const mp_queue_buf *items, size_t n,
                        double timeout)
{
  mp__errdetail_clear();
  if (n == 0)
    return q ? 0 : MP_EINVAL;
  if (!items)
    return MP_EINVAL;
  qsrc local[BATCH];
  int total = 0;
  /* in slices, so that no allocation is needed */
  for (size_t off = 0; off < n;) {
    size_t m = n - off < BATCH ? n - off : BATCH;
    for (size_t i = 0; i < m; i++) {
      if (!items[off + i].data && items[off + i].len)
        return total ? total : mp_seterr(MP_EINVAL, "NULL buffer");
      local[i] =
          (qsrc){items[off + i].data, items[off + i].len, NULL, 0, NULL};
    }
    int rc = put_src(q, local, m, total ? 0 : timeout);
    if (rc < 0)
      return total ? total : rc;
    total += rc;
    off += (size_t)rc;
    if ((size_t)rc < m || total == INT32_MAX)
      break;
  }
  return total;
}

/* Pickle items (with their descriptors) and put them. */
static int
put_objs(mp_queue *q, const mp_obj *const *items, size_t n, double timeout)
{
  if (!q || !items)
    return MP_EINVAL;
  if (n > BATCH)
    n = BATCH;
  qsrc src[BATCH];
  mp__pickled pk[BATCH]; /* the first in the thread's scratch buffer */
  size_t made = 0;
  int rc = 0;
  for (; made < n; made++) {
    if (!items[made]) {
      rc = mp_seterr(MP_EINVAL, "NULL item");
      break;
    }
    if ((rc = mp__pickle_dumps_tmp(items[made], 1, 1, &pk[made])) != 0)
      break;
    src[made] = (qsrc){pk[made].data, pk[made].total, pk[made].fds,
                       pk[made].nfds, &pk[made]};
  }
  if (made)
    rc = put_src(q, src, made, timeout);
  for (size_t i = 0; i < made; i++)
    mp__pickled_release(&pk[i]);
  return rc;
}

int
mp_queue_put(mp_queue *q, const mp_obj *item, double timeout)
{
  mp__errdetail_clear();
  if (!item)
    return mp_seterr(MP_EINVAL, "NULL item");
  int rc = put_objs(q, &item, 1, timeout);
  return rc < 0 ? rc : 0;
}

int
mp_queue_put_many(mp_queue *q, const mp_obj *const *items, size_t n,
                  double timeout)
{
  mp__errdetail_clear();
  if (n == 0)
    return q ? 0 : MP_EINVAL;
  int total = 0;
  for (size_t off = 0; off < n;) {
    int rc = put_objs(q, items + off, n - off, total ? 0 : timeout);
    if (rc < 0)
      return total ? total : rc;
    total += rc;
    off += (size_t)rc;
    if (rc < BATCH && off < n)
      break;
  }
  return total;
}

/* ---- get ------------------------------------------------------------------------ */

typedef struct qgot {
  mp__qtake t;
  int *fds;
  size_t nfds;
} qgot;

/* Under the get lock, for a record just taken that holds descriptors:
 * step its payload past the prefix and receive them (closed at once unless
 * `want_fds`).  On failure the item is unusable: finished here, the code
 * returned. */
static int
take_fds(mp_queue *q, qgot *g, int want_fds)
{
  struct mp__qfds_prefix p;
  memcpy(&p, g->t.payload, sizeof p);
  g->t.payload += sizeof p;
  g->t.len -= (uint32_t)sizeof p;
  int rc = recv_fds(q, &p, &g->fds, &g->nfds);
  if (rc == 0 && !want_fds) {
    close_fds(g->fds, g->nfds);
    g->fds = NULL;
    g->nfds = 0;
  }
  if (rc)
    mp__q_finish(q, &g->t);
  return rc;
}

/* After taking: room for a bounded queue's producers; another consumer
 * woken if items remain (a wake-up one consumer did not use is passed on). */
MP__HOT static void
after_take(mp_queue *q, size_t k)
{
  struct mp__qhdr *h = q->h;
  /* Dekker with a producer going to sleep for room: only a bounded queue
   * has such producers (the chain wake below is best effort) */
  if (q->maxsize)
    mp__q_fence();
  if (q->maxsize
      && atomic_load_explicit(&h->put_waiters, memory_order_relaxed)
      && !atomic_exchange_explicit(&h->get_signalled, 1,
                                   memory_order_seq_cst)) {
    atomic_fetch_add_explicit(&h->get_seq, 1, memory_order_seq_cst);
    mp__futex_wake((uint32_t *)&h->get_seq, (int)k);
  }
  if (atomic_load_explicit(&h->get_waiters, memory_order_relaxed)
      && atomic_load_explicit(&h->head, memory_order_relaxed)
             != atomic_load_explicit(&h->tail, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&h->put_seq, 1, memory_order_seq_cst);
    mp__futex_wake((uint32_t *)&h->put_seq, 1);
  }
}

struct spin_arg {
  uint64_t ww;
  struct mp__qrec *wrec;
};

/* Something to look at: the stalled record changed, or the tail moved. */
MP__HOT static int
item_ready(mp_queue *q, void *arg)
{
  struct spin_arg *a = arg;
  if (a->ww)
    return atomic_load_explicit(&a->wrec->w, memory_order_acquire) != a->ww;
  return atomic_load_explicit(&q->h->head, memory_order_relaxed)
         != atomic_load_explicit(&q->h->tail, memory_order_acquire);
}

/* Take up to `max` items, waiting up to the timeout for the first.  Each
 * must fit the budget left (`budget` bytes in all; SIZE_MAX: no budget).
 * Returns k >= 1, or MP_EEMPTY, MP_EMSGSIZE (got[0].t.len: the first
 * item's size, which stays), MP_ECLOSED, MP_EMALFORMED, MP_EINVAL. */
MP__HOT static int
take_some(mp_queue *q, qgot *got, size_t max, size_t budget, double timeout,
          int want_fds, int empty_seen)
{
  struct mp__qhdr *h = q->h;
  if (mp__timeout_check(timeout))
    return MP_EINVAL;
  lazy_dl l = {timeout, 0, 0};
  uint64_t last_w = 0;
  int64_t slice = SLICE_MIN;
  int full_check = 0;
  for (;;) {
    uint64_t ww = 0;
    struct mp__qrec *wrec = NULL;
    int rc;
    if (empty_seen) {
      /* the caller has just looked, under the lock: straight to waiting */
      empty_seen = 0;
      rc = check_closed(q);
      if (rc)
        return rc;
    } else {
      rc = check_closed(q);
      if (rc)
        return rc;
      if ((rc = lock_side(q, 0, &l)) != 0)
        return rc == MP_ETIMEDOUT
                   ? mp_seterr(MP_EEMPTY, "queue: the get side stayed locked")
                   : rc;
      size_t k = 0, used = 0;
      while (k < max) {
        size_t room = budget == SIZE_MAX ? SIZE_MAX : budget - used;
        /* Sized to the call (one record for a get): a run's 1.5 KiB on
         * the stack of every get would push the frames of the wait below
         * it onto another page, which a trip after a context switch then
         * has to walk to. */
        size_t run = max - k < MP__Q_RUN ? max - k : MP__Q_RUN;
        mp__qtake tk[run];
        rc = mp__q_take(q, room, max - k, full_check, tk, &ww, &wrec);
        if (rc <= 0) {
          if (rc == MP_EMSGSIZE)
            got[k].t = tk[0];
          break;
        }
        for (int i = 0; i < rc - 1; i++, k++) { /* none holds descriptors */
          got[k].t = tk[i];
          got[k].fds = NULL;
          got[k].nfds = 0;
          if (budget != SIZE_MAX)
            used += tk[i].len;
        }
        got[k].t = tk[rc - 1];
        rc = 1;
        got[k].fds = NULL;
        got[k].nfds = 0;
        if ((got[k].t.flags & MP__QR_FDS)
            && (rc = take_fds(q, &got[k], want_fds)) != 0)
          break; /* the item is unusable: consumed, reported */
        if (budget != SIZE_MAX)
          used += got[k].t.len;
        k++;
      }
      if (k || rc == 0)
        after_take(q, k);
      mp__q_get_unlock(q);
      if (k)
        return (int)k;
      if (rc < 0)
        return rc; /* MP_EMSGSIZE (got[0].t.len set), MP_EMALFORMED */
    }
    /* Nothing to take: wait for a commit (or, on a stalled writer, for a
     * slice, and then ask whether it is alive). */
    mp__deadline dl = deadline_of(&l);
    if (ww && ww == last_w) {
      full_check = 1;
      slice = slice * 2 > SLICE_MAX ? SLICE_MAX : slice * 2;
    } else {
      last_w = ww;
      full_check = 0;
      slice = ww ? SLICE_MIN : SLICE_MAX;
    }
    if (dl == 0)
      return mp_seterr(MP_EEMPTY, "queue is empty");
    /* A producer copying a large item in will be a while: poll for about
     * as long as the copy takes (at ~4 GB/s), so that the consumer is not
     * asleep -- a cross-CPU wake-up costs tens of microseconds -- when it
     * ends. */
    struct spin_arg sa = {ww, wrec};
    int64_t spin = SPIN_NS;
    if (ww) {
      spin += (int64_t)(MP__QW_LEN(ww) / 4);
      if (spin > SPIN_MAX_NS)
        spin = SPIN_MAX_NS;
    }
    if (spin_until(item_ready, q, &sa, dl, spin))
      continue;
    atomic_fetch_add_explicit(&h->get_waiters, 1, memory_order_seq_cst);
    uint32_t seq = atomic_load_explicit(&h->put_seq, memory_order_seq_cst);
    int ready = ww ? atomic_load_explicit(&wrec->w, memory_order_seq_cst) != ww
                   : atomic_load_explicit(&h->head, memory_order_seq_cst)
                         != atomic_load_explicit(&h->tail,
                                                 memory_order_seq_cst);
    rc = ready ? 0 : sleep_on(&h->put_seq, seq, dl, slice);
    atomic_fetch_sub_explicit(&h->get_waiters, 1, memory_order_relaxed);
    atomic_store_explicit(&h->put_signalled, 0, memory_order_seq_cst);
    if (rc == MP_ETIMEDOUT) {
      /* one last look (a stalled writer's liveness included), then the
       * zero deadline makes the loop give up */
      l.dl = 0;
      if (ww)
        full_check = 1;
      continue;
    }
  }
}

int
mp_queue_get_bytes(mp_queue *q, void **out, size_t *len, double timeout)
{
  mp__errdetail_clear();
  if (!q || !out || !len)
    return mp_seterr(MP_EINVAL, "NULL argument");
  *out = NULL;
  *len = 0;
  qgot g;
  int rc = take_some(q, &g, 1, SIZE_MAX, timeout, 0, 0);
  if (rc < 0)
    return rc;
  void *buf = malloc(g.t.len ? g.t.len : 1);
  if (buf && g.t.len)
    mp__q_copy(buf, g.t.payload, g.t.len);
  mp__q_finish(q, &g.t);
  if (!buf)
    return MP_ENOMEM; /* the item is lost: it was taken */
  *out = buf;
  *len = g.t.len;
  return 0;
}

MP__HOT int
mp_queue_get_bytes_into(mp_queue *q, void *buf, size_t size, size_t *len,
                        double timeout)
{
  mp__errdetail_clear();
  if (!q || (!buf && size) || !len)
    return mp_seterr(MP_EINVAL, "NULL argument");
  *len = 0;
  qgot g;
  int empty_seen = 0;
  /* The common case in one pass: the get lock free at once and a plain
   * READY record first; anything else (empty, a writer still copying,
   * descriptors, too large) takes the general path, which looks again. */
  if (MP__LIKELY(timeout == timeout
                 && !atomic_load_explicit(&q->closed, memory_order_relaxed)
                 && mp__q_try_lock(q, 0) == 0)) {
    uint64_t ww;
    struct mp__qrec *wrec;
    int r = mp__q_take(q, size, 1, 0, &g.t, &ww, &wrec);
    if (r == 1 && !(g.t.flags & MP__QR_FDS)) {
      after_take(q, 1);
      mp__q_get_unlock(q);
      if (g.t.len)
        mp__q_copy(buf, g.t.payload, g.t.len);
      mp__q_finish(q, &g.t);
      *len = g.t.len;
      return 0;
    }
    if (r == 1) { /* descriptors, which get_bytes closes */
      g.fds = NULL;
      g.nfds = 0;
      int rc = take_fds(q, &g, 0);
      after_take(q, 1);
      mp__q_get_unlock(q);
      if (rc)
        return rc;
      if (g.t.len)
        mp__q_copy(buf, g.t.payload, g.t.len);
      mp__q_finish(q, &g.t);
      *len = g.t.len;
      return 0;
    }
    /* nothing at all (no writer still copying either): what the general
     * path would do after its own look, then it goes straight to waiting */
    if (r == 0 && ww == 0) {
      after_take(q, 0);
      empty_seen = 1;
    }
    mp__q_get_unlock(q);
    if (r < 0 && r != MP_EMSGSIZE)
      return r;
  }
  int rc = take_some(q, &g, 1, size, timeout, 0, empty_seen);
  if (rc == MP_EMSGSIZE) {
    *len = g.t.len;
    return mp_seterr(MP_EMSGSIZE, "queue item of %u bytes does not fit a "
                                  "buffer of %zu",
                     g.t.len, size);
  }
  if (rc < 0)
    return rc;
  if (g.t.len)
    mp__q_copy(buf, g.t.payload, g.t.len);
  mp__q_finish(q, &g.t);
  *len = g.t.len;
  return 0;
}

int
mp_queue_get_many_bytes(mp_queue *q, void *buf, size_t size,
                        mp_queue_buf *items, size_t max_items, double timeout)
{
  mp__errdetail_clear();
  if (!q || (!buf && size) || !items)
    return mp_seterr(MP_EINVAL, "NULL argument");
  if (max_items == 0)
    return 0;
  qgot g[BATCH];
  size_t total = 0, used = 0;
  while (total < max_items && total < INT32_MAX) {
    size_t want = max_items - total < BATCH ? max_items - total : BATCH;
    int rc = take_some(q, g, want, size - used, total ? 0 : timeout, 0, 0);
    if (rc < 0) {
      if (total)
        break;
      if (rc == MP_EMSGSIZE)
        return mp_seterr(MP_EMSGSIZE, "queue item of %u bytes does not fit "
                                      "a buffer of %zu",
                         g[0].t.len, size);
      return rc;
    }
    mp__qtake fin[BATCH];
    for (int i = 0; i < rc; i++) {
      uint8_t *dst = (uint8_t *)buf + used;
      if (g[i].t.len)
        mp__q_copy(dst, g[i].t.payload, g[i].t.len);
      fin[i] = g[i].t;
      items[total].data = dst;
      items[total].len = g[i].t.len;
      used += g[i].t.len;
      total++;
    }
    mp__q_finish_many(q, fin, (size_t)rc);
    if ((size_t)rc < want)
      break;
  }
  return (int)total;
}

/* Copy out, unpickle with the item's descriptors, finish. */
static int
load_got(mp_queue *q, qgot *g, mp_obj **out)
{
  /* The pickle is copied out of shared memory before it is decoded (another
   * process may reuse the record once it is finished); a small one on the
   * stack, a big one in a block the big-block cache keeps: a fresh malloc
   * of a megabyte was a fresh mapping, faulted in page by page, at every
   * message of a pool's map until glibc's thresholds settled. */
  uint8_t local[1024];
  int big = g->t.len >= MP__BIG_MIN;
  void *copy = g->t.len <= sizeof local ? local
               : big                    ? mp__big_alloc(g->t.len, 0)
                                        : malloc(g->t.len);
  if (!copy) {
    mp__q_finish(q, &g->t);
    close_fds(g->fds, g->nfds);
    return MP_ENOMEM;
  }
  int rc;
  if (big) {
    /* Decoded as it is copied out (mp__pickle_loads_shared): a large
     * bytes payload -- a pool's chunk of packed ints -- goes from the
     * ring straight into its object, one copy instead of two.  The
     * record stays ours (READING) until then. */
    rc = mp__pickle_loads_shared(g->t.payload, g->t.len, copy, NULL, g->fds,
                                 g->nfds, out);
    mp__q_finish(q, &g->t);
  } else {
    if (g->t.len)
      memcpy(copy, g->t.payload, g->t.len);
    mp__q_finish(q, &g->t);
    rc = mp_pickle_loads_fds(copy, g->t.len, NULL, g->fds, g->nfds, out);
  }
  free(g->fds); /* the fds themselves are the loader's now */
  if (big)
    mp__big_free(copy);
  else if (copy != local)
    free(copy);
  return rc;
}

int
mp_queue_get(mp_queue *q, mp_obj **out, double timeout)
{
  mp__errdetail_clear();
  if (!q || !out)
    return mp_seterr(MP_EINVAL, "NULL argument");
  *out = NULL;
  qgot g;
  int rc = take_some(q, &g, 1, SIZE_MAX, timeout, 1, 0);
  if (rc < 0)
    return rc;
  return load_got(q, &g, out);
}

int
mp_queue_get_many(mp_queue *q, mp_obj **out, size_t max_items, double timeout)
{
  mp__errdetail_clear();
  if (!q || !out)
    return mp_seterr(MP_EINVAL, "NULL argument");
  if (max_items == 0)
    return 0;
  qgot g[BATCH];
  size_t want = max_items < BATCH ? max_items : BATCH;
  int rc = take_some(q, g, want, SIZE_MAX, timeout, 1, 0);
  if (rc < 0)
    return rc;
  int n = 0, err = 0;
  for (int i = 0; i < rc; i++) {
    mp_obj *o = NULL;
    int r = load_got(q, &g[i], &o);
    if (r) {
      if (!err)
        err = r;
      continue; /* a bad item is consumed; the others are delivered */
    }
    out[n++] = o;
  }
  return n ? n : err;
}
