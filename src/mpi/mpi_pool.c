/* SPDX-License-Identifier: MIT */
/* libmproc-mpi: the Pool's remote executor over MPI (include/mproc/mpi.h).
 *
 * Rank 0.  An MPI pool is a pool.h pool with an executor: inflight worker
 * threads per rank, thread k talking to rank 1 + k % nranks with its own
 * tag (a pool reserves a block of tags), so that each thread's replies are
 * told apart by (source, tag) alone.  A thread sends its job (MPI_Isend,
 * then MPI_Test with a bounded backoff: never a blocking call under the
 * lock, which could deadlock with a rank's own pending send) and polls for
 * its reply (MPI_Improbe, backoff up to BACKOFF_MAX_NS).  Every MPI call on
 * rank 0 is under one mutex (MPI_THREAD_SERIALIZED).  Each job carries a
 * sequence number, echoed by the reply: a reply that comes after its
 * thread gave up (task_timeout) is recognised and dropped.
 *
 * Messages (on a duplicate of MPI_COMM_WORLD):
 *   job      tag T: u64 seq, u8 'J', pickle (fn, kind, payload)
 *   array    tag T: u64 seq, u8 'A', pickle (fn, shared, in_size,
 *            out_size, n); then, if n * in_size > 0, the in bytes (tag T)
 *   reply    tag T: u64 seq, pickle (0, values, errors) or (code, detail,
 *            None); an array reply is (code, bad, detail) then, when the
 *            code is 0 and n * out_size > 0, the out bytes (tag T)
 *   stop     tag 0 from rank 0; a rank answers bye (tag 0) once its own
 *            sends are done, and rank 0 drains every message until it has
 *            every bye, then MPI_Finalize.
 *
 * Ranks 1..N-1 are taken over in the library's constructor and serve:
 * MPI_Improbe on any tag from rank 0 with the same bounded backoff (an idle
 * rank sleeps, it does not spin), run the job, MPI_Isend the reply (kept
 * pending while the next job runs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mproc/mpi.h"
#include "mproc/pickle.h"
#include "mproc/shm.h"

#define BACKOFF_MAX_NS 500000 /* an idle poller sleeps at most 0.5 ms */
#define TAG_CTL 0
#define NAME_CAP 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int g_up;        /* MPI initialized by us, not yet finalized */
static int g_rank, g_size = 1;
static MPI_Comm g_comm = MPI_COMM_NULL;
static int g_next_tag = 1; /* under mu */
/* rank 0: g_local[r] is 1 when rank r shares rank 0's node (set at boot;
 * cleared if that rank cannot map our segments) */
static unsigned char *g_local;

void
mp_mpi_lock(void)
{
  pthread_mutex_lock(&mu);
}

void
mp_mpi_unlock(void)
{
  pthread_mutex_unlock(&mu);
}

int
mp_mpi_rank(void)
{
  return g_rank;
}

int
mp_mpi_size(void)
{
  return g_size;
}

/* ---- waiting without spinning -------------------------------------------- */

typedef struct backoff {
  long ns;
} backoff;

static void
backoff_wait(backoff *b)
{
  if (b->ns == 0) {
    b->ns = 1000;
    sched_yield();
    return;
  }
  struct timespec ts = {0, b->ns};
  nanosleep(&ts, NULL);
  if (b->ns < BACKOFF_MAX_NS)
    b->ns = b->ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : b->ns * 2;
}

static int64_t
now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The buffers of sends given up on (a terminated pool): MPI may read them
 * until the send completes, so they are freed after MPI_Finalize (under
 * mu). */
typedef struct grave {
  struct grave *next;
  void *buf;
} grave;
static grave *g_graves;

static const char terminated_text[] =
    "the pool was terminated (the rank goes on running the job it has, "
    "whose result is dropped: MPI cannot stop a rank)";

/* A complete send from rank 0: Isend, then Test under the lock with a
 * backoff between tries (other threads use MPI meanwhile).  `stop` (may be
 * NULL) set gives up with MP_ECLOSED -- if `owned`, which makes *bufp
 * MPI's until the send completes (NULL here: not to be freed); a buffer
 * not owned (the caller's) is waited for. */
static int
send_wait(void **bufp, size_t len, int dest, int tag, int owned,
          const _Atomic int *stop)
{
  const void *buf = *bufp;
  if (len > INT32_MAX)
    return mp_seterr(MP_EMSGSIZE, "a message of %zu bytes: MPI counts are "
                     "ints (use a smaller chunksize)", len);
  MPI_Request req;
  pthread_mutex_lock(&mu);
  int up = g_up;
  int rc = up ? MPI_Isend(buf, (int)len, MPI_BYTE, dest, tag, g_comm, &req)
              : MPI_ERR_OTHER;
  pthread_mutex_unlock(&mu);
  if (!up)
    return mp_seterr(MP_ECLOSED, "MPI is finalized (the program is exiting)");
  if (rc != MPI_SUCCESS)
    return mp_seterr(MP_EREMOTE, "MPI_Isend to rank %d failed (%d)", dest, rc);
  backoff b = {0};
  for (;;) {
    int done = 0;
    pthread_mutex_lock(&mu);
    up = g_up;
    rc = up ? MPI_Test(&req, &done, MPI_STATUS_IGNORE) : MPI_SUCCESS;
    if (up && rc == MPI_SUCCESS && !done && owned && stop &&
        atomic_load(stop)) {
      grave *gr = malloc(sizeof *gr);
      if (gr) { /* MPI completes the send on its own; the buffer waits */
        MPI_Request_free(&req);
        gr->buf = *bufp;
        gr->next = g_graves;
        g_graves = gr;
        *bufp = NULL;
        pthread_mutex_unlock(&mu);
        return mp_seterr(MP_ECLOSED, "%s", terminated_text);
      }
    }
    pthread_mutex_unlock(&mu);
    if (!up)
      return mp_seterr(MP_ECLOSED, "MPI is finalized (the program is "
                                   "exiting)");
    if (rc != MPI_SUCCESS)
      return mp_seterr(MP_EREMOTE, "MPI_Test failed (%d)", rc);
    if (done)
      return 0;
    backoff_wait(&b);
  }
}

/* Rank 0: receive the next message from `src` on `tag` (malloc'd), waiting
 * until deadline_ns (0: none) or `stop` is set.  0, MP_ETIMEDOUT,
 * MP_ECLOSED. */
static int
recv_wait(int src, int tag, int64_t deadline_ns, const _Atomic int *stop,
          void **out, size_t *len)
{
  backoff b = {0};
  for (;;) {
    int flag = 0, rc, up;
    MPI_Message msg;
    MPI_Status st;
    pthread_mutex_lock(&mu);
    up = g_up;
    rc = up ? MPI_Improbe(src, tag, g_comm, &flag, &msg, &st) : MPI_SUCCESS;
    if (up && rc == MPI_SUCCESS && flag) {
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      void *buf = malloc(count ? (size_t)count : 1);
      if (!buf) {
        /* receive it anyway, so that it does not block the next */
        char tmp;
        MPI_Mrecv(&tmp, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
        pthread_mutex_unlock(&mu);
        return MP_ENOMEM;
      }
      rc = MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
      pthread_mutex_unlock(&mu);
      if (rc != MPI_SUCCESS) {
        free(buf);
        return mp_seterr(MP_EREMOTE, "MPI_Mrecv failed (%d)", rc);
      }
      *out = buf;
      *len = (size_t)count;
      return 0;
    }
    pthread_mutex_unlock(&mu);
    if (!up)
      return mp_seterr(MP_ECLOSED, "MPI is finalized (the program is "
                                   "exiting)");
    if (rc != MPI_SUCCESS)
      return mp_seterr(MP_EREMOTE, "MPI_Improbe failed (%d)", rc);
    if (deadline_ns && now_ns() >= deadline_ns)
      return MP_ETIMEDOUT;
    if (stop && atomic_load(stop))
      return mp_seterr(MP_ECLOSED, "%s", terminated_text);
    backoff_wait(&b);
  }
}

/* ---- rank 0: the executor ------------------------------------------------- */

typedef struct mpi_pool_ctx {
  struct mpi_pool_ctx *next;
  int nranks;   /* ranks 1..nranks */
  int tag0;     /* thread k uses tag tag0 + k */
  uint64_t *seq; /* per thread: the last job's number */
  /* per thread: its segment for map_array chunks to ranks of this node
   * (NULL until needed) */
  struct seg *segs;
  int nthreads;
  _Atomic int terminated; /* mp_pool_terminate: waits give up */
} mpi_pool_ctx;

static mpi_pool_ctx *g_ctxs; /* under mu; freed at exit */

static int
rank_of(const mpi_pool_ctx *c, int worker)
{
  return 1 + worker % c->nranks;
}

/* The header and a pickle in one buffer. */
static int
frame(uint64_t seq, int type, const mp_obj *o, void **out, size_t *len)
{
  void *pk = NULL;
  size_t pl = 0;
  int rc = mp_pickle_dumps(o, NULL, &pk, &pl);
  if (rc)
    return rc;
  size_t hl = type ? 9 : 8;
  unsigned char *buf = malloc(hl + pl);
  if (!buf) {
    mp_free(pk);
    return MP_ENOMEM;
  }
  memcpy(buf, &seq, 8);
  if (type)
    buf[8] = (unsigned char)type;
  memcpy(buf + hl, pk, pl);
  mp_free(pk);
  *out = buf;
  *len = hl + pl;
  return 0;
}

static int
args_error(int rc, const char *what)
{
  if (rc == MP_ENOTSUP)
    return mp_seterr(rc, "an MPI pool's %s must be data values: a handle "
                     "(a queue, a lock, a segment...) cannot cross to "
                     "another rank", what);
  return mp_seterr(rc, "the %s cannot be pickled: %s", what, mp_errdetail());
}

/* Wait for the reply to job `seq` on the thread's tag, dropping the late
 * replies of jobs it gave up on. */
static int
reply_wait(mpi_pool_ctx *c, int worker, uint64_t seq, int64_t deadline,
           double timeout, void **buf, size_t *len)
{
  int src = rank_of(c, worker);
  for (;;) {
    int rc = recv_wait(src, c->tag0 + worker, deadline, &c->terminated, buf,
                       len);
    if (rc == MP_ETIMEDOUT)
      return mp_seterr(rc, "the task ran longer than its task_timeout of "
                       "%.3f s on MPIPoolWorker-%d (rank %d), which goes on "
                       "running it (MPI cannot stop a rank): its result "
                       "will be dropped", timeout, src, src);
    if (rc)
      return rc;
    uint64_t got = 0;
    if (*len >= 8)
      memcpy(&got, *buf, 8);
    if (*len >= 8 && got == seq)
      return 0;
    free(*buf); /* a reply to a job this thread gave up on */
    *buf = NULL;
  }
}

static int
exec_run(void *ctx, int worker, mp_task_fn fn, int kind, mp_obj *payload,
         double timeout, mp_obj **values, mp_obj **errors)
{
  mpi_pool_ctx *c = ctx;
  uint64_t seq = ++c->seq[worker];
  int dest = rank_of(c, worker), tag = c->tag0 + worker;
  mp_obj *job = MP_TUPLE(MP_FUNC(fn), mp_int_new(kind),
                         mp_obj_ref(payload));
  if (!job)
    return MP_ENOMEM;
  void *buf = NULL;
  size_t len = 0;
  int rc = frame(seq, 'J', job, &buf, &len);
  mp_obj_free(job);
  if (rc)
    return args_error(rc, kind == MP_POOL_JOB_APPLY ? "arguments" : "items");
  int64_t deadline = timeout > 0 ? now_ns() + (int64_t)(timeout * 1e9) : 0;
  rc = send_wait(&buf, len, dest, tag, 1, &c->terminated);
  free(buf);
  if (rc)
    return rc;
  rc = reply_wait(c, worker, seq, deadline, timeout, &buf, &len);
  if (rc)
    return rc;
  mp_obj *rep = NULL;
  rc = mp_pickle_loads((char *)buf + 8, len - 8, NULL, &rep);
  free(buf);
  if (rc)
    return mp_seterr(rc, "a bad reply from rank %d: %s", dest,
                     mp_errdetail());
  int64_t code;
  size_t n = 0;
  if (mp_obj_len(rep, &n) || n != 3 || mp_int_get(mp_seq_item(rep, 0), &code)) {
    mp_obj_free(rep);
    return mp_seterr(MP_EMALFORMED, "a bad reply from rank %d", dest);
  }
  if (code != 0) {
    const char *text = "";
    size_t tl;
    mp_str_get(mp_seq_item(rep, 1), &text, &tl);
    rc = mp_seterr((int)code, "%s", text);
    mp_obj_free(rep);
    return rc;
  }
  *values = mp_obj_ref(mp_seq_item(rep, 1));
  mp_obj *e = mp_seq_item(rep, 2);
  *errors = mp_obj_type(e) == MP_T_LIST ? mp_obj_ref(e) : NULL;
  mp_obj_free(rep);
  return 0;
}


/* ---- map_array on one node: the chunk's bytes in shared memory ------------
 * A rank on rank 0's node gets map_array chunks through a POSIX shared
 * memory segment of the sending thread ("/mproc-mpi-PID-TAG", in then out
 * bytes), copied into by rank 0 and out of after the reply; the message
 * only names it.  MPI's shared-memory transport copies each byte twice
 * and needs MPI calls to move it, so this is several times faster.  The
 * segments live until rank 0's exit (unlinked then); the resource tracker
 * knows them, so that a rank 0 killed before unlinking leaves none in
 * /dev/shm. */
typedef struct seg {
  char name[64];
  int fd;
  unsigned char *p;
  size_t size;
} seg;

static int
seg_fit(seg *g, int tag, size_t need)
{
  if (g->p && g->size >= need)
    return 0;
  if (!g->name[0]) {
    snprintf(g->name, sizeof g->name, "/mproc-mpi-%ld-%d", (long)getpid(),
             tag);
    g->fd = shm_open(g->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (g->fd < 0) {
      g->name[0] = 0;
      return -errno;
    }
    int rc = mp_resource_register("shm", g->name);
    if (rc) {
      close(g->fd);
      shm_unlink(g->name);
      g->name[0] = 0;
      return rc;
    }
  }
  size_t size = need < ((size_t)1 << 20) ? (size_t)1 << 20 : need;
  size = (size + 0xfffff) & ~(size_t)0xfffff;
  if (g->p)
    munmap(g->p, g->size);
  g->p = NULL;
  if (ftruncate(g->fd, (off_t)size) != 0)
    return -errno;
  void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
  if (m == MAP_FAILED)
    return -errno;
  g->p = m;
  g->size = size;
  return 0;
}

static void
seg_drop(seg *g)
{
  if (g->p)
    munmap(g->p, g->size);
  if (g->name[0]) {
    close(g->fd);
    shm_unlink(g->name);
    mp_resource_unregister("shm", g->name);
  }
  memset(g, 0, sizeof *g);
}

/* The ranks' side: mappings of rank 0's segments, by name. */
#define SEG_CACHE 64
static seg g_mapped[SEG_CACHE];
static unsigned g_mapped_next;

static unsigned char *
seg_map(const char *name, size_t size)
{
  for (int i = 0; i < SEG_CACHE; i++)
    if (g_mapped[i].p && !strcmp(g_mapped[i].name, name)) {
      if (g_mapped[i].size == size)
        return g_mapped[i].p;
      munmap(g_mapped[i].p, g_mapped[i].size);
      g_mapped[i].p = NULL;
    }
  int fd = shm_open(name, O_RDWR, 0);
  if (fd < 0)
    return NULL;
  void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED)
    return NULL;
  int k = -1;
  for (int i = 0; i < SEG_CACHE && k < 0; i++)
    if (!g_mapped[i].p)
      k = i;
  if (k < 0) {
    k = (int)(g_mapped_next++ % SEG_CACHE);
    munmap(g_mapped[k].p, g_mapped[k].size);
  }
  snprintf(g_mapped[k].name, sizeof g_mapped[k].name, "%s", name);
  g_mapped[k].p = m;
  g_mapped[k].size = size;
  return m;
}

/* An array chunk's reply: (code, index of the failing element, its text,
 * flag) -- the flag says the rank mapped the segment ('S' jobs) or that
 * the out bytes follow ('A' jobs).  0, or the wait's or MP_EMALFORMED. */
static int
array_reply(mpi_pool_ctx *c, int worker, uint64_t seq, int64_t *code,
            uint64_t *at, char *text, size_t cap, int64_t *flag)
{
  void *buf = NULL;
  size_t len = 0;
  int rc = reply_wait(c, worker, seq, 0, 0, &buf, &len);
  if (rc)
    return rc;
  mp_obj *rep = NULL;
  rc = mp_pickle_loads((char *)buf + 8, len - 8, NULL, &rep);
  free(buf);
  size_t k = 0;
  const char *t = "";
  size_t tl;
  if (rc || mp_obj_len(rep, &k) || k != 4 ||
      mp_int_get(mp_seq_item(rep, 0), code) ||
      mp_uint_get(mp_seq_item(rep, 1), at) ||
      mp_int_get(mp_seq_item(rep, 3), flag)) {
    mp_obj_free(rep);
    return mp_seterr(MP_EMALFORMED, "a bad reply from rank %d",
                     rank_of(c, worker));
  }
  if (mp_str_get(mp_seq_item(rep, 2), &t, &tl) != 0)
    t = "";
  snprintf(text, cap, "%s", t);
  mp_obj_free(rep);
  return 0;
}

/* A chunk through the thread's segment: 0 or the element's code; 1: the
 * rank cannot use the segment (send the bytes instead). */
static int
seg_run_array(mpi_pool_ctx *c, int worker, mp_elem_fn fn,
              const mp_obj *shared, const void *in, size_t in_size, void *out,
              size_t out_size, size_t n, size_t *bad)
{
  int dest = rank_of(c, worker), tag = c->tag0 + worker;
  seg *g = &c->segs[worker];
  size_t nin = n * in_size, nout = n * out_size;
  if (nin > SIZE_MAX - nout || seg_fit(g, tag, nin + nout) != 0)
    return 1;
  if (nin)
    memcpy(g->p, in, nin);
  uint64_t seq = ++c->seq[worker];
  mp_obj *hdr = MP_TUPLE(MP_FUNC(fn),
                         shared ? mp_obj_ref((mp_obj *)shared) : mp_none(),
                         mp_uint_new(in_size), mp_uint_new(out_size),
                         mp_uint_new(n), mp_str_new(g->name),
                         mp_uint_new(g->size));
  if (!hdr)
    return MP_ENOMEM;
  void *buf = NULL;
  size_t len = 0;
  int rc = frame(seq, 'S', hdr, &buf, &len);
  mp_obj_free(hdr);
  if (rc)
    return args_error(rc, "shared value");
  rc = send_wait(&buf, len, dest, tag, 1, &c->terminated);
  free(buf);
  int64_t code, mapped;
  uint64_t at;
  char text[1024];
  if (!rc)
    rc = array_reply(c, worker, seq, &code, &at, text, sizeof text, &mapped);
  if (rc)
    return rc;
  if (!mapped) { /* it could not open the segment: not this way again */
    __atomic_store_n(&g_local[dest], 0, __ATOMIC_RELAXED);
    return 1;
  }
  if (nout)
    memcpy(out, g->p + nin, nout);
  if (code != 0) {
    *bad = (size_t)at;
    return mp_seterr((int)code, "%s", text);
  }
  return 0;
}

static int
exec_run_array(void *ctx, int worker, mp_elem_fn fn, const mp_obj *shared,
               const void *in, size_t in_size, void *out, size_t out_size,
               size_t n, size_t *bad)
{
  mpi_pool_ctx *c = ctx;
  *bad = 0;
  if (g_local && __atomic_load_n(&g_local[rank_of(c, worker)],
                                 __ATOMIC_RELAXED) &&
      (in_size || out_size)) {
    int rc = seg_run_array(c, worker, fn, shared, in, in_size, out, out_size,
                           n, bad);
    if (rc != 1)
      return rc;
  }
  uint64_t seq = ++c->seq[worker];
  int dest = rank_of(c, worker), tag = c->tag0 + worker;
  mp_obj *hdr = MP_TUPLE(MP_FUNC(fn),
                         shared ? mp_obj_ref((mp_obj *)shared) : mp_none(),
                         mp_uint_new(in_size), mp_uint_new(out_size),
                         mp_uint_new(n));
  if (!hdr)
    return MP_ENOMEM;
  void *buf = NULL;
  size_t len = 0;
  int rc = frame(seq, 'A', hdr, &buf, &len);
  mp_obj_free(hdr);
  if (rc)
    return args_error(rc, "shared value");
  rc = send_wait(&buf, len, dest, tag, 1, &c->terminated);
  free(buf);
  if (!rc && in_size && n)
    rc = send_wait((void **)&in, n * in_size, dest, tag, 0, &c->terminated);
  int64_t code, has_out;
  uint64_t at;
  char text[1024];
  if (!rc)
    rc = array_reply(c, worker, seq, &code, &at, text, sizeof text, &has_out);
  if (rc)
    return rc;
  if (out_size && n && has_out) {
    if ((rc = reply_wait(c, worker, seq, 0, 0, &buf, &len)) != 0)
      return rc;
    if (len != 8 + n * out_size) {
      free(buf);
      return mp_seterr(MP_EMALFORMED, "rank %d sent %zu bytes for %zu "
                       "elements of %zu", dest, len - 8, n, out_size);
    }
    memcpy(out, (char *)buf + 8, n * out_size);
    free(buf);
  }
  if (code != 0) {
    *bad = (size_t)at;
    return mp_seterr((int)code, "%s", text);
  }
  return 0;
}

/* mp_pool_terminate: the worker threads stop waiting for their ranks.  A
 * rank finishes the job it has (MPI cannot interrupt it) and its reply is
 * drained at exit. */
static void
exec_terminate(void *ctx)
{
  mpi_pool_ctx *c = ctx;
  atomic_store(&c->terminated, 1);
}

int
mp_mpi_pool_new(mp_pool **out, const mp_pool_opts *opts,
                const mp_mpi_opts *mopts)
{
  static const mp_pool_opts no_opts;
  static const mp_mpi_opts no_mopts;
  if (!out)
    return mp_seterr(MP_EINVAL, "out is NULL");
  *out = NULL;
  if (!opts)
    opts = &no_opts;
  if (!mopts)
    mopts = &no_mopts;
  if (!g_up || g_size < 2 || g_rank != 0)
    return mp_seterr(MP_ESTATE, !g_up && g_size < 2
                     ? "not an MPI job of 2 ranks or more: launch the "
                       "program with mpirun -n N (N >= 2)"
                     : g_rank != 0 ? "an MPI pool is made on rank 0 only"
                                   : g_up ? "an MPI job of one rank has no "
                                            "workers"
                                          : "MPI is finalized");
  if (opts->processes < 0 || opts->processes > g_size - 1 ||
      mopts->inflight < 0)
    return mp_seterr(MP_EINVAL, "processes must be 0..%d (the ranks but "
                     "rank 0) and inflight not negative", g_size - 1);
  if (opts->initializer || opts->initargs || opts->maxtasksperchild ||
      opts->worker_exit || opts->worker_state || opts->shared ||
      opts->cpu_ids || opts->context || opts->executor)
    return mp_seterr(MP_ENOTSUP, "an MPI pool takes processes and insights "
                     "only: initializer, maxtasksperchild, worker hooks, "
                     "worker_state, shared, cpu_ids, context and executor "
                     "would run on rank 0's threads, not on the ranks");
  int nranks = opts->processes ? opts->processes : g_size - 1;
  int inflight = mopts->inflight ? mopts->inflight : 2;
  int nthreads = nranks * inflight;
  mpi_pool_ctx *c = calloc(1, sizeof *c);
  if (!c || !(c->seq = calloc((size_t)nthreads, sizeof *c->seq)) ||
      !(c->segs = calloc((size_t)nthreads, sizeof *c->segs))) {
    if (c)
      free(c->seq);
    free(c);
    return MP_ENOMEM;
  }
  c->nthreads = nthreads;
  c->nranks = nranks;
  pthread_mutex_lock(&mu);
  int tag_ub = 32767, *ub = NULL, flag = 0;
  if (MPI_Comm_get_attr(g_comm, MPI_TAG_UB, &ub, &flag) == MPI_SUCCESS &&
      flag && ub)
    tag_ub = *ub;
  if (g_next_tag + nthreads > tag_ub)
    g_next_tag = 1; /* wrapped: pools long gone reused their tags */
  c->tag0 = g_next_tag;
  g_next_tag += nthreads;
  c->next = g_ctxs;
  g_ctxs = c;
  pthread_mutex_unlock(&mu);
  mp_pool_executor ex = {.run = exec_run, .run_array = exec_run_array,
                         .terminate = exec_terminate, .ctx = c};
  mp_pool_opts po = {.processes = nthreads, .insights = opts->insights,
                     .executor = &ex};
  return mp_pool_new(out, &po);
}

/* ---- ranks 1..N-1: the server --------------------------------------------- */

typedef struct pending {
  struct pending *next;
  MPI_Request req;
  void *buf;
} pending;

static void
pending_test(pending **list)
{
  for (pending **pp = list; *pp;) {
    int done = 0;
    MPI_Test(&(*pp)->req, &done, MPI_STATUS_IGNORE);
    if (done) {
      pending *p = *pp;
      *pp = p->next;
      free(p->buf);
      free(p);
    } else {
      pp = &(*pp)->next;
    }
  }
}

/* Send buf (taken) to rank 0 without waiting for it to arrive. */
static void
post(pending **list, void *buf, size_t len, int tag)
{
  pending *p = malloc(sizeof *p);
  if (!p || len > INT32_MAX ||
      MPI_Isend(buf, (int)len, MPI_BYTE, 0, tag, g_comm, &p->req) !=
          MPI_SUCCESS) {
    /* nothing can tell rank 0: it would wait for this reply forever */
    fprintf(stderr, "mproc-mpi: rank %d cannot send a reply of %zu bytes\n",
            g_rank, len);
    MPI_Abort(MPI_COMM_WORLD, 70);
  }
  p->buf = buf;
  p->next = *list;
  *list = p;
}

static void
post_obj(pending **list, uint64_t seq, mp_obj *o, int tag)
{
  void *buf;
  size_t len;
  int rc = frame(seq, 0, o, &buf, &len);
  mp_obj_free(o);
  if (rc) {
    char text[512];
    snprintf(text, sizeof text, "MPIPoolWorker-%d: the result cannot be "
             "sent: %s%s%s", g_rank, mp_err_name(rc),
             mp_errdetail()[0] ? ": " : "",
             rc == MP_ENOTSUP ? "a handle cannot cross to another rank"
                              : mp_errdetail());
    mp_obj *err = MP_TUPLE(mp_int_new(rc), mp_str_new(text), mp_none());
    rc = err ? frame(seq, 0, err, &buf, &len) : MP_ENOMEM;
    mp_obj_free(err);
    if (rc) {
      fprintf(stderr, "mproc-mpi: rank %d: out of memory\n", g_rank);
      MPI_Abort(MPI_COMM_WORLD, 70);
    }
  }
  post(list, buf, len, tag);
}

static char *
task_detail(int rc)
{
  const char *text = mp_errdetail();
  char buf[1024];
  if (rc > 0)
    text = "task returned a positive value, not 0 or a negative code";
  else if (!text[0])
    text = mp_strerror(rc);
  snprintf(buf, sizeof buf, "MPIPoolWorker-%d: %s", g_rank, text);
  return strdup(buf);
}

/* (0, values, errors) for a job, or (code, detail, None). */
static mp_obj *
serve_job(const void *data, size_t len)
{
  mp_obj *job = NULL;
  char text[1024];
  int rc = mp_pickle_loads(data, len, NULL, &job);
  mp_task_fn fn = NULL;
  int64_t kind = 0;
  mp_obj *payload = NULL;
  if (!rc && (mp_obj_len(job, &(size_t){0}) ||
              !(fn = (mp_task_fn)mp_func_get(mp_seq_item(job, 0))) ||
              mp_int_get(mp_seq_item(job, 1), &kind)))
    rc = mp_seterr(MP_EMALFORMED, "a bad job message");
  if (rc) {
    snprintf(text, sizeof text, "MPIPoolWorker-%d: the task cannot be "
             "received: %s%s%s", g_rank, mp_err_name(rc),
             mp_errdetail()[0] ? ": " : "", mp_errdetail());
    mp_obj_free(job);
    return MP_TUPLE(mp_int_new(rc < 0 ? rc : MP_EINVAL), mp_str_new(text),
                    mp_none());
  }
  payload = mp_seq_item(job, 2);
  mp_obj *const *items = NULL;
  size_t n = 1;
  if (kind != MP_POOL_JOB_APPLY && mp_seq_items(payload, &items, &n) != 0)
    n = 0;
  mp_obj *values = mp_list_new(), *errors = NULL;
  mp_seterr(0, "%s", ""); /* no earlier text in a task's */
  for (size_t i = 0; values && i < n; i++) {
    mp_obj *args = NULL, *res = NULL;
    char *detail = NULL;
    rc = mp_pool_job_args(kind, payload, i, &args);
    if (!rc) {
      rc = fn(args, &res);
      mp_obj_free(args);
    }
    if (rc != 0) {
      detail = task_detail(rc);
      mp_seterr(0, "%s", ""); /* none of this text in the next item's */
      mp_obj_free(res);
      res = NULL;
      if (!errors)
        errors = mp_list_new();
      if (errors)
        mp_list_append_take(errors, MP_TUPLE(mp_int_new((int64_t)i),
                                             mp_int_new(rc < 0 ? rc
                                                               : MP_EINVAL),
                                             mp_str_new(detail ? detail
                                                               : "")));
      free(detail);
    }
    mp_list_append_take(values, res ? res : mp_none());
  }
  mp_obj_free(job);
  if (!values)
    return NULL;
  return MP_TUPLE(mp_int_new(0), values, errors ? errors : mp_none());
}

/* fn over n elements of in (in_size each) into out: 0, or the first
 * failing element's code (a positive return: MP_EINVAL), its index in *bad
 * and its text in text; the other elements are computed all the same. */
static int
run_elements(mp_elem_fn fn, const mp_obj *shared, const unsigned char *ip,
             uint64_t in_size, unsigned char *op, uint64_t out_size,
             uint64_t n, uint64_t *bad, char *text, size_t cap)
{
  int rc = 0;
  mp_seterr(0, "%s", ""); /* no earlier text in an element's */
  for (uint64_t i = 0; i < n; i++) {
    int erc = fn(ip ? ip + i * in_size : NULL, op ? op + i * out_size : NULL,
                 shared);
    if (erc != 0 && !rc) {
      char *d = task_detail(erc);
      snprintf(text, cap, "%s", d ? d : "");
      free(d);
      rc = erc < 0 ? erc : MP_EINVAL;
      *bad = i;
    }
    if (erc != 0)
      mp_seterr(0, "%s", "");
  }
  return rc;
}

/* An array job: header (fn, shared, in_size, out_size, n), then the in
 * bytes; replies (code, bad, detail) and, on success, the out bytes. */
static void
serve_array(pending **list, uint64_t seq, const void *data, size_t len,
            int tag)
{
  mp_obj *hdr = NULL;
  char text[1024] = "";
  uint64_t in_size = 0, out_size = 0, n = 0, bad = 0;
  mp_elem_fn fn = NULL;
  int rc = mp_pickle_loads(data, len, NULL, &hdr);
  if (!rc && (!(fn = (mp_elem_fn)mp_func_get(mp_seq_item(hdr, 0))) ||
              mp_uint_get(mp_seq_item(hdr, 2), &in_size) ||
              mp_uint_get(mp_seq_item(hdr, 3), &out_size) ||
              mp_uint_get(mp_seq_item(hdr, 4), &n) ||
              (in_size && n > SIZE_MAX / in_size) ||
              (out_size && n > SIZE_MAX / out_size)))
    rc = mp_seterr(MP_EMALFORMED, "a bad map_array message");
  /* the in bytes follow whatever the header said: take them first */
  void *in = NULL;
  if (in_size && n) {
    MPI_Status st;
    int count = 0;
    MPI_Message msg;
    MPI_Mprobe(0, tag, g_comm, &msg, &st);
    MPI_Get_count(&st, MPI_BYTE, &count);
    in = malloc(count ? (size_t)count : 1);
    if (!in) {
      fprintf(stderr, "mproc-mpi: rank %d: out of memory\n", g_rank);
      MPI_Abort(MPI_COMM_WORLD, 70);
    }
    MPI_Mrecv(in, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    if (!rc && (size_t)count != n * in_size)
      rc = mp_seterr(MP_EMALFORMED, "map_array: %d bytes for %llu elements",
                     count, (unsigned long long)n);
  }
  if (rc)
    snprintf(text, sizeof text, "MPIPoolWorker-%d: the task cannot be "
             "received: %s%s%s", g_rank, mp_err_name(rc),
             mp_errdetail()[0] ? ": " : "", mp_errdetail());
  unsigned char *out = NULL;
  if (!rc && out_size && n) {
    out = malloc(8 + n * out_size);
    if (!out)
      rc = mp_seterr(MP_ENOMEM, "MPIPoolWorker-%d: no memory for the "
                     "results", g_rank);
    else
      memcpy(out, &seq, 8);
  }
  if (!rc) {
    const mp_obj *shared = mp_obj_type(mp_seq_item(hdr, 1)) == MP_T_NONE
                               ? NULL
                               : mp_seq_item(hdr, 1);
    const unsigned char *ip = in;
    unsigned char *op = out ? out + 8 : NULL;
    rc = run_elements(fn, shared, ip, in_size, op, out_size, n, &bad, text,
                      sizeof text);
  }
  free(in);
  mp_obj_free(hdr);
  /* the out bytes also when an element failed: the others are computed */
  post_obj(list, seq, MP_TUPLE(mp_int_new(rc), mp_uint_new(bad),
                               mp_str_new(text), mp_int_new(out != NULL)),
           tag);
  if (out)
    post(list, out, 8 + n * out_size, tag);
}


/* A map_array chunk in rank 0's segment: header (fn, shared, in_size,
 * out_size, n, name, size); replies (code, bad, detail, mapped). */
static void
serve_seg(pending **list, uint64_t seq, const void *data, size_t len, int tag)
{
  mp_obj *hdr = NULL;
  char text[1024] = "";
  uint64_t in_size = 0, out_size = 0, n = 0, bad = 0, size = 0;
  const char *name = NULL;
  size_t nl;
  mp_elem_fn fn = NULL;
  int rc = mp_pickle_loads(data, len, NULL, &hdr);
  if (!rc && (!(fn = (mp_elem_fn)mp_func_get(mp_seq_item(hdr, 0))) ||
              mp_uint_get(mp_seq_item(hdr, 2), &in_size) ||
              mp_uint_get(mp_seq_item(hdr, 3), &out_size) ||
              mp_uint_get(mp_seq_item(hdr, 4), &n) ||
              mp_str_get(mp_seq_item(hdr, 5), &name, &nl) ||
              mp_uint_get(mp_seq_item(hdr, 6), &size) ||
              (in_size && n > SIZE_MAX / in_size) ||
              (out_size && n > SIZE_MAX / out_size) ||
              n * in_size > size || n * out_size > size - n * in_size))
    rc = mp_seterr(MP_EMALFORMED, "a bad map_array message");
  unsigned char *m = rc ? NULL : seg_map(name, (size_t)size);
  if (rc)
    snprintf(text, sizeof text, "MPIPoolWorker-%d: the task cannot be "
             "received: %s%s%s", g_rank, mp_err_name(rc),
             mp_errdetail()[0] ? ": " : "", mp_errdetail());
  if (m) {
    const mp_obj *shared = mp_obj_type(mp_seq_item(hdr, 1)) == MP_T_NONE
                               ? NULL
                               : mp_seq_item(hdr, 1);
    unsigned char *ip = in_size ? m : NULL;
    unsigned char *op = out_size ? m + n * in_size : NULL;
    rc = run_elements(fn, shared, ip, in_size, op, out_size, n, &bad, text,
                      sizeof text);
  }
  mp_obj_free(hdr);
  post_obj(list, seq, MP_TUPLE(mp_int_new(rc), mp_uint_new(bad),
                               mp_str_new(text), mp_int_new(m != NULL || rc)),
           tag);
}

static void
serve(void)
{
  pending *list = NULL;
  backoff b = {0};
  for (;;) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    MPI_Improbe(0, MPI_ANY_TAG, g_comm, &flag, &msg, &st);
    if (!flag) {
      pending_test(&list);
      backoff_wait(&b);
      continue;
    }
    b.ns = 0;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    unsigned char *buf = malloc(count ? (size_t)count : 1);
    if (!buf) {
      fprintf(stderr, "mproc-mpi: rank %d: out of memory\n", g_rank);
      MPI_Abort(MPI_COMM_WORLD, 70);
    }
    MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    int tag = st.MPI_TAG;
    if (tag == TAG_CTL) { /* stop: finish our sends, then say bye */
      free(buf);
      while (list) {
        pending_test(&list);
        if (list)
          backoff_wait(&b);
      }
      char bye = 0;
      MPI_Request req;
      MPI_Isend(&bye, 1, MPI_BYTE, 0, TAG_CTL, g_comm, &req);
      int done = 0;
      b.ns = 0;
      while (!done) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done)
          backoff_wait(&b);
      }
      return;
    }
    uint64_t seq = 0;
    if (count >= 9) {
      memcpy(&seq, buf, 8);
      if (buf[8] == 'J') {
        mp_obj *rep = serve_job(buf + 9, (size_t)count - 9);
        if (!rep)
          rep = MP_TUPLE(mp_int_new(MP_ENOMEM), mp_str_new("out of memory"),
                         mp_none());
        post_obj(&list, seq, rep, tag);
      } else if (buf[8] == 'S') {
        serve_seg(&list, seq, buf + 9, (size_t)count - 9, tag);
      } else if (buf[8] == 'A') {
        serve_array(&list, seq, buf + 9, (size_t)count - 9, tag);
      }
    }
    free(buf);
    pending_test(&list);
  }
}

/* ---- start and end --------------------------------------------------------- */

/* Rank 0 at exit: stop the ranks, take every message still coming, free
 * the communicator, finalize. */
static void
mpi_fini(void)
{
  pthread_mutex_lock(&mu);
  if (!g_up) {
    pthread_mutex_unlock(&mu);
    return;
  }
  char stop = 0;
  MPI_Request *reqs = calloc((size_t)g_size, sizeof *reqs);
  for (int r = 1; reqs && r < g_size; r++)
    MPI_Isend(&stop, 1, MPI_BYTE, r, TAG_CTL, g_comm, &reqs[r]);
  int byes = 0;
  backoff b = {0};
  while (reqs && byes < g_size - 1) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, g_comm, &flag, &msg, &st);
    if (!flag) {
      backoff_wait(&b);
      continue;
    }
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    void *buf = malloc(count ? (size_t)count : 1);
    MPI_Mrecv(buf, buf ? count : 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    free(buf);
    if (st.MPI_TAG == TAG_CTL)
      byes++;
  }
  if (reqs)
    MPI_Waitall(g_size - 1, reqs + 1, MPI_STATUSES_IGNORE);
  free(reqs);
  MPI_Comm_free(&g_comm);
  g_up = 0;
  MPI_Finalize();
  while (g_ctxs) {
    mpi_pool_ctx *c = g_ctxs;
    g_ctxs = c->next;
    for (int k = 0; k < c->nthreads; k++)
      seg_drop(&c->segs[k]);
    free(c->segs);
    free(c->seq);
    free(c);
  }
  free(g_local);
  g_local = NULL;
  while (g_graves) {
    grave *gr = g_graves;
    g_graves = gr->next;
    free(gr->buf);
    free(gr);
  }
  pthread_mutex_unlock(&mu);
}

/* Launched by mpirun (or another PMI launcher): initialize MPI; ranks
 * other than 0 serve and exit here, before main. */
__attribute__((constructor)) static void
mpi_boot(void)
{
  if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") &&
      !getenv("PMIX_RANK") && !getenv("PMI_RANK"))
    return; /* a singleton: MPI untouched, mp_mpi_pool_new says so */
  int provided = 0, inited = 0;
  MPI_Initialized(&inited);
  if (inited)
    return;
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) !=
      MPI_SUCCESS)
    return;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
  /* which ranks share rank 0's node (collective: every rank takes part) */
  MPI_Comm node;
  if (MPI_Comm_split_type(g_comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL,
                          &node) == MPI_SUCCESS) {
    if (g_rank == 0 && getenv("MPROC_MPI_NO_SHM") == NULL &&
        (g_local = calloc((size_t)g_size, 1)) != NULL) {
      MPI_Group wg, ng;
      MPI_Comm_group(g_comm, &wg);
      MPI_Comm_group(node, &ng);
      for (int r = 1; r < g_size; r++) {
        int nr = MPI_UNDEFINED;
        MPI_Group_translate_ranks(wg, 1, &r, ng, &nr);
        g_local[r] = nr != MPI_UNDEFINED;
      }
      MPI_Group_free(&wg);
      MPI_Group_free(&ng);
    }
    MPI_Comm_free(&node);
  }
  g_up = 1;
  if (g_rank == 0) {
    if (provided < MPI_THREAD_SERIALIZED)
      fprintf(stderr, "mproc-mpi: MPI gives thread level %d, below "
              "MPI_THREAD_SERIALIZED: the MPI pool may misbehave\n", provided);
    atexit(mpi_fini);
    return;
  }
  serve();
  MPI_Comm_free(&g_comm);
  g_up = 0;
  MPI_Finalize();
  exit(0);
}
