/* SPDX-License-Identifier: MIT */
/* Queue handles: creation, mapping, references, the handle type that
 * carries a queue to other processes, and the state calls (qsize, close,
 * task_done, join). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "queue/queue_internal.h"

#define MAX_SEGMENT ((uint64_t)1 << 30)
#define MAX_RESERVE ((uint64_t)1 << 46) /* 64 TiB of address space */
#define JOIN_SLICE 200000000LL

/* The address range a queue with these limits maps: twice its cap (items
 * of many sizes fragment the file) plus the header and two segments. */
static uint64_t
reserve_for(uint64_t cap, uint64_t segsize)
{
  return MP__Q_PAGE_UP(2 * cap + MP__Q_PAGE + 2 * segsize);
}

static int
map_queue(mp_queue *q, uint64_t size)
{
  void *p = mmap(NULL, q->reserve, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_NORESERVE, q->memfd, 0);
  if (p == MAP_FAILED)
    return errno == ENOMEM ? mp_seterr(MP_ENOMEM, "queue: cannot map %llu "
                                                  "bytes of address space",
                                       (unsigned long long)q->reserve)
                           : mp__errno();
  q->base = p;
  q->h = p;
  atomic_store(&q->known, size < q->reserve ? size : q->reserve);
  return 0;
}

static void
queue_destroy(mp_queue *q)
{
  if (q->base)
    munmap(q->base, q->reserve);
  mp__close(q->memfd);
  mp__close(q->sock_put);
  mp__close(q->sock_get);
  free(q);
}

/* ---- queues kept for reuse ------------------------------------------------
 * A queue whose holders are all gone, as its owner vouches
 * (mp__queue_free_private: a pool's own queues once its workers ended),
 * keeps its file and mapping for this process's next mp_queue_new of the
 * same shape.  Unmapping a queue's reservation frees page tables, and that
 * flush interrupts every CPU the process ran on, idle ones included (tens
 * of microseconds each on a VM): a third of what ending a pool cost.  Its
 * file reads all zero again, as a new one does: nothing of the old queue
 * can show through (clear_file: its few pages of data zeroed, or, past
 * ZERO_MAX, the whole file a hole and the memory given back); its sockets
 * are kept when no message waits in them, else closed: what a kept queue
 * holds is its address range, one to three fds and at most ZERO_MAX bytes
 * of memory.  One unused for
 * more than CACHE_AGE_NS is unmapped at the next keep or take.  A fork
 * child unmaps the ones it inherited. */
#define CACHE_MAX 8
#define CACHE_AGE_NS 10000000000LL

static pthread_mutex_t g_cache_mu MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static struct {
  mp_queue *q;
  int64_t since;
} g_cache[CACHE_MAX] MP__FORK_DATA; /* written as each pool ends */
static int g_ncache MP__FORK_DATA;
static pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;
static int g_cache_ok; /* the fork hooks are in place */

static void
cache_forget(void *arg)
{
  (void)arg;
  for (int i = 0; i < g_ncache; i++)
    queue_destroy(g_cache[i].q);
  g_ncache = 0;
}

static void
cache_install(void)
{
  g_cache_ok =
      mp__fork_guard_mutex_reset(&g_cache_mu, cache_forget, NULL) != NULL;
}

/* Take out (g_cache_mu held) the kept queues unused for too long, into
 * old[] (destroyed by the caller, outside the lock). */
static int
cache_expire(mp_queue **old)
{
  int64_t now = mp__now_ns();
  int n = 0, k = 0;
  for (int i = 0; i < g_ncache; i++)
    if (now - g_cache[i].since > CACHE_AGE_NS)
      old[n++] = g_cache[i].q;
    else
      g_cache[k++] = g_cache[i];
  g_ncache = k;
  return n;
}

/* Make q's file (`size` bytes, no holder left anywhere) read as a new
 * queue's does: all zero.  0, or -1 (keep it not).
 *
 * A queue that carried little -- a pool's sentinels -- holds a few pages
 * of data, and zeroing those through the mapping is a memset.  Punching
 * the hole instead unmaps the file's pages from every mapping of it, and
 * that flushes the TLB of every CPU the process ran on: 15-20 us on a VM,
 * for each of a pool's queues at its end.  So the data's extents are found
 * with SEEK_DATA / SEEK_HOLE (which count a page swapped out as data) and
 * zeroed when they are few and at most ZERO_MAX bytes in all; else the
 * hole is punched and the memory given back.  A kept queue thus holds at
 * most ZERO_MAX bytes of memory. */
#define ZERO_MAX (64 * 1024)
#define ZERO_EXTENTS 8

static int
clear_file(mp_queue *q, off_t size)
{
  off_t ext[ZERO_EXTENTS][2];
  int n = 0;
  off_t pos = 0, data = 0;
  while (pos < size) {
    off_t d = lseek(q->memfd, pos, SEEK_DATA);
    if (d < 0 && errno == ENXIO)
      break; /* holes to the end */
    off_t h = d < 0 ? -1 : lseek(q->memfd, d, SEEK_HOLE);
    if (h < 0 || n == ZERO_EXTENTS || (data += h - d) > ZERO_MAX)
      goto punch;
    if (h > size)
      h = size;
    ext[n][0] = d;
    ext[n][1] = h;
    n++;
    pos = h;
  }
  for (int i = 0; i < n; i++)
    memset((uint8_t *)q->base + ext[i][0], 0, (size_t)(ext[i][1] - ext[i][0]));
  return 0;
punch:
  return fallocate(q->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                   size) < 0 ? -1 : 0;
}

/* Keep q (no holder left anywhere) for reuse: 1 kept, 0 not (destroy it). */
static int
cache_keep(mp_queue *q)
{
  pthread_once(&g_cache_once, cache_install);
  struct stat sb;
  /* only a queue that never grew: its shape is a new queue's */
  if (!g_cache_ok || !q->base || q->memfd < 0 || fstat(q->memfd, &sb) < 0 ||
      (uint64_t)sb.st_size != MP__Q_PAGE + q->segsize ||
      (uint64_t)sb.st_size > q->reserve || clear_file(q, sb.st_size) < 0)
    return 0;
  /* The sockets stay if no message waits in them (an old item's fds would
   * arrive with a new item), else they are made again at reuse. */
  char c;
  if (!(recv(q->sock_get, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
        errno == EAGAIN)) {
    mp__close(q->sock_put);
    mp__close(q->sock_get);
    q->sock_put = q->sock_get = -1;
  }
  mp_queue *old[CACHE_MAX];
  pthread_mutex_lock(&g_cache_mu);
  int nold = cache_expire(old), kept = 0;
  if (g_ncache < CACHE_MAX) {
    g_cache[g_ncache].q = q;
    g_cache[g_ncache].since = mp__now_ns();
    g_ncache++;
    kept = 1;
  }
  pthread_mutex_unlock(&g_cache_mu);
  for (int i = 0; i < nold; i++)
    queue_destroy(old[i]);
  return kept;
}

/* A kept queue of this shape, its file all hole again, or NULL. */
static mp_queue *
cache_take(uint64_t reserve, uint64_t segsize)
{
  pthread_once(&g_cache_once, cache_install);
  if (!g_cache_ok)
    return NULL;
  mp_queue *q = NULL, *old[CACHE_MAX];
  pthread_mutex_lock(&g_cache_mu);
  int nold = cache_expire(old);
  for (int i = g_ncache - 1; i >= 0 && !q; i--) /* the newest first */
    if (g_cache[i].q->reserve == reserve && g_cache[i].q->segsize == segsize) {
      q = g_cache[i].q;
      g_cache[i] = g_cache[--g_ncache];
    }
  pthread_mutex_unlock(&g_cache_mu);
  for (int i = 0; i < nold; i++)
    queue_destroy(old[i]);
  return q;
}

void
mp__queue_cache_trim(void)
{
  pthread_mutex_lock(&g_cache_mu);
  mp_queue *all[CACHE_MAX];
  int n = g_ncache;
  for (int i = 0; i < n; i++)
    all[i] = g_cache[i].q;
  g_ncache = 0;
  pthread_mutex_unlock(&g_cache_mu);
  for (int i = 0; i < n; i++)
    queue_destroy(all[i]);
}

int
mp__queue_cache_count(void)
{
  pthread_mutex_lock(&g_cache_mu);
  int n = g_ncache;
  pthread_mutex_unlock(&g_cache_mu);
  return n;
}

static mp_queue *
queue_alloc(void)
{
  mp_queue *q = calloc(1, sizeof *q);
  if (q) {
    atomic_init(&q->refs, 1);
    atomic_init(&q->spin_fails, MP__Q_SPIN_FAILS_MAX);
    q->memfd = q->sock_put = q->sock_get = -1;
  }
  return q;
}

static int
make_socket(mp_queue *q)
{
  int sv[2];
  /* Non-blocking, which every holder shares (one open file description
   * each end). */
  int rc = mp__socketpair(SOCK_SEQPACKET | SOCK_NONBLOCK, sv);
  if (rc)
    return rc;
  q->sock_put = sv[0];
  q->sock_get = sv[1];
  int big = 1 << 20; /* room for many items holding descriptors */
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  return 0;
}

int
mp_queue_new(mp_queue **out, const mp_queue_opts *opts)
{
  mp__errdetail_clear();
  if (!out)
    return mp_seterr(MP_EINVAL, "NULL out");
  *out = NULL;
  mp_queue_opts o = opts ? *opts : (mp_queue_opts){0};
  uint64_t max_message = o.max_message ? o.max_message
                                       : MP_QUEUE_DEFAULT_MAX_MESSAGE;
  uint64_t segsize = o.segment_size ? MP__Q_PAGE_UP(o.segment_size)
                                    : MP_QUEUE_DEFAULT_SEGMENT;
  uint64_t cap = o.memory_cap ? o.memory_cap : MP_QUEUE_DEFAULT_MEMORY_CAP;
  if (segsize < MP__Q_MIN_SEGMENT)
    segsize = MP__Q_MIN_SEGMENT;
  if (max_message > MP_QUEUE_MAX_MESSAGE)
    return mp_seterr(MP_EINVAL, "max_message above MP_QUEUE_MAX_MESSAGE");
  if (segsize > MAX_SEGMENT)
    return mp_seterr(MP_EINVAL, "segment_size above 1 GiB");
  if (cap < MP__Q_PAGE + segsize || cap > MAX_RESERVE / 4)
    return mp_seterr(MP_EINVAL, "memory_cap must hold at least one segment "
                                "and at most 16 TiB");
  mp_queue *q = queue_alloc();
  if (!q)
    return MP_ENOMEM;
  (void)mp__plat_spin_useful(); /* asked here, so fork children know */
  q->maxsize = o.maxsize;
  q->joinable = o.joinable != 0;
  q->max_message = max_message;
  q->cap = cap;
  q->segsize = segsize;
  q->reserve = reserve_for(cap, segsize);
  uint64_t size = MP__Q_PAGE + segsize;
  mp_queue *kept = cache_take(q->reserve, segsize);
  int rc = 0;
  if (kept) { /* its file, mapping and (if kept) sockets, in a new handle */
    q->memfd = kept->memfd;
    q->base = kept->base;
    q->h = (struct mp__qhdr *)(void *)q->base;
    atomic_store(&q->known, size);
    q->sock_put = kept->sock_put;
    q->sock_get = kept->sock_get;
    free(kept);
  } else if ((rc = mp__memfd_new_growable("mproc-queue", size)) >= 0) {
    q->memfd = rc;
    rc = map_queue(q, size);
  }
  if (rc >= 0 && q->sock_get < 0)
    rc = make_socket(q);
  if (rc < 0) {
    queue_destroy(q);
    return rc == -EMFILE ? MP_EMFILE : rc;
  }
  mp__q_init_layout(q);
  *out = q;
  return 0;
}

mp_queue *
mp_queue_ref(mp_queue *q)
{
  if (q)
    atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
  return q;
}

void
mp_queue_free(mp_queue *q)
{
  if (q && atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) == 1)
    queue_destroy(q);
}

void
mp__queue_free_private(mp_queue *q)
{
  if (q && atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) == 1
      && !cache_keep(q))
    queue_destroy(q);
}

/* ---- state -------------------------------------------------------------------- */

int
mp_queue_qsize(const mp_queue *q)
{
  mp__errdetail_clear();
  if (!q)
    return mp_seterr(MP_EINVAL, "NULL queue");
  uint64_t n = mp__q_count(q);
  return n > INT32_MAX ? mp_seterr(MP_EOVERFLOW, "qsize above INT_MAX")
                       : (int)n;
}

int
mp_queue_empty(const mp_queue *q)
{
  mp__errdetail_clear();
  if (!q)
    return mp_seterr(MP_EINVAL, "NULL queue");
  return mp__q_count(q) == 0;
}

int
mp_queue_full(const mp_queue *q)
{
  mp__errdetail_clear();
  if (!q)
    return mp_seterr(MP_EINVAL, "NULL queue");
  return q->maxsize && mp__q_count(q) >= q->maxsize;
}

size_t
mp_queue_maxsize(const mp_queue *q)
{
  return q ? (size_t)q->maxsize : 0;
}

/* Wake every sleeper of this queue (of every process): they look again
 * and the ones of this process see it closed. */
static void
wake_all(mp_queue *q)
{
  struct mp__qhdr *h = q->h;
  _Atomic uint32_t *words[] = {&h->put_seq, &h->get_seq, &h->done_seq};
  for (size_t i = 0; i < MP__ARRAY_LEN(words); i++) {
    atomic_fetch_add_explicit(words[i], 1, memory_order_seq_cst);
    mp__futex_wake((uint32_t *)words[i], INT32_MAX);
  }
}

int
mp_queue_close(mp_queue *q)
{
  mp__errdetail_clear();
  if (!q)
    return mp_seterr(MP_EINVAL, "NULL queue");
  if (!atomic_exchange(&q->closed, 1))
    wake_all(q);
  return 0;
}

int
mp_queue_join_thread(mp_queue *q)
{
  mp__errdetail_clear();
  return q ? 0 : mp_seterr(MP_EINVAL, "NULL queue");
}

int
mp_queue_cancel_join_thread(mp_queue *q)
{
  mp__errdetail_clear();
  return q ? 0 : mp_seterr(MP_EINVAL, "NULL queue");
}

int
mp_queue_task_done(mp_queue *q)
{
  mp__errdetail_clear();
  if (!q)
    return mp_seterr(MP_EINVAL, "NULL queue");
  if (!q->joinable)
    return mp_seterr(MP_ENOTSUP, "task_done on a queue that is not joinable");
  struct mp__qhdr *h = q->h;
  uint64_t d = atomic_load(&h->done);
  for (;;) {
    uint64_t gone = d + atomic_load(&h->padded);
    if (gone >= atomic_load(&h->reserved))
      return mp_seterr(MP_ESTATE, "task_done() called too many times");
    if (atomic_compare_exchange_weak(&h->done, &d, d + 1))
      break;
  }
  if (mp__q_unfinished(q) == 0) {
    mp__q_fence();
    if (atomic_load_explicit(&h->join_waiters, memory_order_relaxed)) {
      atomic_fetch_add_explicit(&h->done_seq, 1, memory_order_seq_cst);
      mp__futex_wake((uint32_t *)&h->done_seq, INT32_MAX);
    }
  }
  return 0;
}

int
mp_queue_join(mp_queue *q, double timeout)
{
  mp__errdetail_clear();
  if (!q)
    return mp_seterr(MP_EINVAL, "NULL queue");
  if (!q->joinable)
    return mp_seterr(MP_ENOTSUP, "join on a queue that is not joinable");
  struct mp__qhdr *h = q->h;
  if (mp__q_unfinished(q) == 0)
    return 0;
  mp__deadline dl;
  if (mp__deadline_set(timeout, &dl))
    return MP_EINVAL;
  for (;;) {
    atomic_fetch_add_explicit(&h->join_waiters, 1, memory_order_seq_cst);
    uint32_t seq = atomic_load_explicit(&h->done_seq, memory_order_seq_cst);
    int rc = 0;
    if (mp__q_unfinished(q) != 0) {
      int64_t now = mp__now_ns();
      if (dl <= now) {
        rc = MP_ETIMEDOUT;
      } else {
        mp__deadline until = dl - now > JOIN_SLICE ? now + JOIN_SLICE : dl;
        if (mp__futex_wait((uint32_t *)&h->done_seq, seq, until)
                == MP_ETIMEDOUT
            && until == dl)
          rc = MP_ETIMEDOUT;
      }
    }
    atomic_fetch_sub_explicit(&h->join_waiters, 1, memory_order_relaxed);
    if (mp__q_unfinished(q) == 0)
      return 0;
    if (rc)
      return mp_seterr(MP_ETIMEDOUT, "join: %llu items not done",
                       (unsigned long long)mp__q_unfinished(q));
  }
}

/* ---- the handle type -------------------------------------------------------------
 * state: (1,) -- the version of the layout; fds: the memfd and both ends of
 * the descriptor socket.  Everything else is read from the header, checked. */

static int
queue_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
             void *fdctx)
{
  mp_queue *q = ptr;
  int rc;
  if ((rc = add_fd(fdctx, q->memfd)) || (rc = add_fd(fdctx, q->sock_put))
      || (rc = add_fd(fdctx, q->sock_get)))
    return rc;
  *state = MP_TUPLE(mp_int_new(MP__Q_VERSION));
  return *state ? 0 : MP_ENOMEM;
}

static int
check_socket(int fd)
{
  int type = 0, domain = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0
      || type != SOCK_SEQPACKET)
    return 0;
  len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0
      || domain != AF_UNIX)
    return 0;
  return mp__fd_set_nonblock(fd, 1) == 0;
}

/* Adopt a queue described by a received memfd: its header is checked
 * (read with pread, before anything is mapped) and its limits are kept
 * in the handle. */
static int
queue_adopt(mp_queue *q)
{
  struct mp__qhdr h;
  uint64_t size;
  if (!mp__memfd_size_fixed(q->memfd, &size) || size < 2 * MP__Q_PAGE)
    return mp_seterr(MP_EMALFORMED, "queue: not a sealed memfd");
  if (pread(q->memfd, &h, sizeof h, 0) != (ssize_t)sizeof h)
    return mp_seterr(MP_EMALFORMED, "queue: header unreadable");
  if (h.magic != MP__Q_MAGIC || h.version != MP__Q_VERSION)
    return mp_seterr(MP_EMALFORMED, "queue: bad header magic or version");
  if (h.segment_size < MP__Q_MIN_SEGMENT || h.segment_size > MAX_SEGMENT
      || h.segment_size % MP__Q_PAGE || h.max_message > MP_QUEUE_MAX_MESSAGE
      || h.memory_cap < MP__Q_PAGE + h.segment_size
      || h.memory_cap > MAX_RESERVE / 4 || h.joinable > 1
      || h.reserve != reserve_for(h.memory_cap, h.segment_size))
    return mp_seterr(MP_EMALFORMED, "queue: bad header limits");
  q->maxsize = h.maxsize;
  q->joinable = (int)h.joinable;
  q->max_message = h.max_message;
  q->cap = h.memory_cap;
  q->segsize = h.segment_size;
  q->reserve = h.reserve;
  return map_queue(q, size);
}

static int
queue_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  int rc = 0;
  int64_t version = 0;
  mp_obj *const *items;
  size_t n = 0;
  if (nfds != 3 || mp_seq_items(state, &items, &n) || n != 1
      || mp_int_get(items[0], &version) || version != MP__Q_VERSION)
    rc = mp_seterr(MP_EMALFORMED, "bad queue state");
  mp_queue *q = rc ? NULL : queue_alloc();
  if (!rc && !q)
    rc = MP_ENOMEM;
  if (rc) {
    for (size_t i = 0; i < nfds; i++)
      mp__close(fds[i]);
    return rc;
  }
  q->memfd = fds[0];
  q->sock_put = fds[1];
  q->sock_get = fds[2];
  if (!check_socket(q->sock_put) || !check_socket(q->sock_get))
    rc = mp_seterr(MP_EMALFORMED, "queue: bad descriptor socket");
  if (!rc)
    rc = queue_adopt(q);
  if (rc) {
    queue_destroy(q);
    return rc;
  }
  *out = q;
  return 0;
}

static void
queue_release(void *ptr)
{
  mp_queue_free(ptr);
}

static const mp_handle_type queue_type = {"mproc.Queue", queue_release,
                                          queue_reduce, queue_rebuild};

__attribute__((constructor)) static void
register_queue_type(void)
{
  mp_handle_register(&queue_type);
}

const mp_handle_type *
mp_queue_handle_type(void)
{
  return &queue_type;
}

mp_obj *
mp_queue_obj(mp_queue *q)
{
  if (!q) {
    mp_seterr(MP_EINVAL, "NULL queue");
    return NULL;
  }
  return mp_handle_new(&queue_type, mp_queue_ref(q));
}

mp_queue *
mp_queue_from_obj(const mp_obj *o)
{
  return mp_handle_get(o, &queue_type);
}
