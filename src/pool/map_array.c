/* SPDX-License-Identifier: MIT */
/* mp_pool_map_array: a C function over a C array of fixed-size elements,
 * with no pickling of the elements.
 *
 * The parent cuts the n elements into chunks and sends each worker ONE
 * apply task (mp__ma_task) naming the memory: `in` and `out` as shared-memory
 * segments (the caller's own SharedMemory when the array lies in one, else
 * an anonymous segment the parent copies `in` into / `out` out of: one copy
 * each way), or as plain addresses for a ThreadPool.  A control segment
 * holds the next chunk to claim (workers take chunks with an atomic add, so
 * uneven costs balance), how many chunks of `in` are copied, a done flag
 * per chunk and each task's first error.
 *
 * The copies overlap the workers' work: the parent copies `in` in chunk
 * order after starting the tasks (a worker that claims a chunk not there
 * yet waits on the `ready` count), then copies out each chunk whose done
 * flag is set until every task has its result, then the rest.  Copying
 * first and last instead made the two 80 MB copies of a 10 M-double map
 * serial: 0.63-0.74x the raw floor, against 0.99-1.02x overlapped. (A
 * worker reading the caller's memory with process_vm_readv and writing
 * it with process_vm_writev was slower still: 227-264 M elements/s,
 * pinning pages per call.)
 *
 * A worker that dies is the pool's ordinary case (its task fails with
 * MP_EWORKERDIED, the worker is replaced); the other tasks drain the
 * counter, and the chunks left without their done flag (the dead worker's
 * chunk in progress) run once more, in one task, on a live worker.  If that
 * task dies too, the call returns MP_EWORKERDIED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sched.h>
#include <sys/stat.h>

#include "platform/platform.h"
#include "pool/pool_internal.h"
#include "shm/shm_internal.h"

#define MA_CHUNKS_PER_WORKER 64
#define MA_TEXT 240

typedef struct ma_hdr {
  int64_t next;     /* the next chunk to claim (atomic) */
  uint32_t ready;   /* chunks of `in` copied so far (MA_ALL: every one) */
  uint32_t waiters; /* workers asleep on `ready` */
  int64_t pad[6];
} ma_hdr;

/* `ready` when `in` needs no copy, or has been copied whole */
#define MA_ALL UINT32_MAX

typedef struct ma_err {
  int64_t index; /* the first failing element of this task */
  int32_t code;  /* 0: none failed */
  int32_t pad;
  char text[MA_TEXT];
} ma_err;

static size_t
ma_done_off(void)
{
  return sizeof(ma_hdr);
}

static size_t
ma_err_off(size_t nchunks)
{
  return sizeof(ma_hdr) + ((nchunks + 63) & ~(size_t)63);
}

static size_t
ma_ctl_size(size_t nchunks, size_t nerr)
{
  return ma_err_off(nchunks) + nerr * sizeof(ma_err);
}

/* A worker keeps the segments of its last calls mapped (the parent reuses
 * its segments too), so a repeated map_array finds its page tables filled
 * instead of faulting every page again.  Process workers only (a thread
 * gets addresses); one task at a time per process. */
#define MA_KEEP 2
static struct {
  mp_shm *m;
  dev_t dev;
  ino_t ino;
} ma_kept[MA_KEEP];
static unsigned ma_kept_next;

/* The mapping to use for segment m: a kept one of the same file, or m
 * (then kept, its pages filled now for reading or writing). */
static mp_shm *
ma_mapping(mp_shm *m, int write)
{
  struct stat st;
  if (fstat(mp__shm_fd(m), &st) != 0)
    return m;
  for (int i = 0; i < MA_KEEP; i++)
    if (ma_kept[i].m && ma_kept[i].dev == st.st_dev &&
        ma_kept[i].ino == st.st_ino &&
        mp_shm_size(ma_kept[i].m) == mp_shm_size(m) &&
        mp_shm_buf(ma_kept[i].m))
      return ma_kept[i].m;
  unsigned k = ma_kept_next++ % MA_KEEP;
  mp_shm_free(ma_kept[k].m);
  ma_kept[k].m = mp__shm_ref(m);
  ma_kept[k].dev = st.st_dev;
  ma_kept[k].ino = st.st_ino;
  mp__plat_prefault(mp_shm_buf(m), mp_shm_size(m), write);
  return m;
}

/* The memory an argument names: a segment and an offset, an address (a
 * ThreadPool), or None (no bytes).  NULL when it does not hold `len` bytes. */
static uint8_t *
ma_mem(const mp_obj *o, const mp_obj *off, size_t len, int write, int *ok)
{
  uint64_t a;
  *ok = 1;
  if (mp_obj_type(o) == MP_T_NONE)
    return NULL;
  if (mp_obj_type(o) == MP_T_INT && !mp_uint_get(o, &a))
    return (uint8_t *)(uintptr_t)a;
  mp_shm *m = mp_shm_from_obj(o);
  if (m && mp_shm_buf(m))
    m = ma_mapping(m, write);
  uint64_t at;
  if (!m || mp_uint_get(off, &at) || !mp_shm_buf(m) ||
      at > mp_shm_size(m) || len > mp_shm_size(m) - at) {
    *ok = 0;
    return NULL;
  }
  return (uint8_t *)mp_shm_buf(m) + at;
}

/* Chunk c of `in` is there: the parent copies a private `in` into the
 * segment chunk by chunk while the workers already run, so that the copy
 * overlaps their work instead of preceding it.  A brief poll, then a
 * sleep (bounded: the parent wakes the word as it goes). */
static void
ma_wait_ready(ma_hdr *h, uint64_t c)
{
  for (int turn = 0;; turn++) {
    uint32_t r = __atomic_load_n(&h->ready, __ATOMIC_ACQUIRE);
    if (r == MA_ALL || r > c)
      return;
    if (turn < 200) {
      MP__CPU_RELAX();
      if (turn % 50 == 49)
        sched_yield();
      continue;
    }
    __atomic_fetch_add(&h->waiters, 1, __ATOMIC_SEQ_CST);
    r = __atomic_load_n(&h->ready, __ATOMIC_SEQ_CST);
    if (r != MA_ALL && r <= c)
      mp__futex_wait_rel(&h->ready, r, 10 * 1000 * 1000);
    __atomic_fetch_sub(&h->waiters, 1, __ATOMIC_SEQ_CST);
  }
}

/* A chunk [lo, hi) ended (it began at t0): the progress bar and insights
 * hear of it, once per chunk. */
static void
ma_report(mp__wctx *wx, uint64_t pslot, size_t lo, size_t hi, int64_t t0,
          uint64_t c)
{
  if (!wx)
    return;
  char label[64] = "";
  if (wx->insights)
    snprintf(label, sizeof label, "elements %zu-%zu", lo, hi - 1);
  mp__wx_batch(wx, (int)pslot, hi - lo, t0, c, (int64_t)lo, label);
}

/* The task each worker runs: args (fn, shared, ctl, in, in_off, in_size,
 * out, out_off, out_size, n, chunk, slot, retry, bar) -- retry None (claim
 * from the counter) or a list of chunk numbers; bar the progress counter
 * slot of the call's bar (0: none). */
int
mp__ma_task(mp_obj *args, mp_obj **result)
{
  *result = NULL;
  mp_obj *const *a;
  size_t na;
  uint64_t in_size, out_size, n, chunk, slot, pslot;
  if (mp_seq_items(args, &a, &na) || na != 14 ||
      mp_uint_get(a[5], &in_size) || mp_uint_get(a[8], &out_size) ||
      mp_uint_get(a[9], &n) || mp_uint_get(a[10], &chunk) ||
      mp_uint_get(a[11], &slot) || mp_uint_get(a[13], &pslot) ||
      chunk == 0 || n == 0 || pslot >= MP__PROGRESS_SLOTS)
    return mp_seterr(MP_EMALFORMED, "bad map_array task");
  mp_elem_fn fn = (mp_elem_fn)mp_func_get(a[0]);
  const mp_obj *shared = mp_obj_type(a[1]) == MP_T_NONE ? NULL : a[1];
  size_t nchunks = (size_t)((n + chunk - 1) / chunk);
  mp_shm *ctl = mp_shm_from_obj(a[2]);
  if (!fn || !ctl || !mp_shm_buf(ctl) ||
      mp_shm_size(ctl) < ma_ctl_size(nchunks, slot + 1) ||
      (in_size && n > SIZE_MAX / in_size) ||
      (out_size && n > SIZE_MAX / out_size))
    return mp_seterr(MP_EMALFORMED, "bad map_array task");
  int ok_in, ok_out;
  uint8_t *in = ma_mem(a[3], a[4], (size_t)(n * in_size), 0, &ok_in);
  uint8_t *out = ma_mem(a[6], a[7], (size_t)(n * out_size), 1, &ok_out);
  if (!ok_in || !ok_out)
    return mp_seterr(MP_EMALFORMED, "map_array memory is not what the task "
                                    "says");
  uint8_t *base = mp_shm_buf(ctl);
  ma_hdr *hdr = (ma_hdr *)base;
  uint8_t *done = base + ma_done_off();
  ma_err *err = (ma_err *)(base + ma_err_off(nchunks)) + slot;
  mp_obj *const *retry = NULL;
  size_t nretry = 0, ri = 0;
  if (mp_obj_type(a[12]) != MP_T_NONE && mp_seq_items(a[12], &retry, &nretry))
    return mp_seterr(MP_EMALFORMED, "bad map_array retry list");
  const char *name = mp_process_name(mp_current_process());
  /* progress and insights: one report per chunk, not per element */
  mp__wctx *wx = mp__wx_cur();
  if (wx)
    wx->self_counted = 1;
  for (;;) {
    uint64_t c;
    if (retry) {
      if (ri == nretry)
        break;
      if (mp_uint_get(retry[ri++], &c) || c >= nchunks)
        continue;
    } else {
      c = (uint64_t)__atomic_fetch_add(&hdr->next, 1, __ATOMIC_RELAXED);
      if (c >= nchunks)
        break;
    }
    size_t lo = (size_t)(c * chunk), hi = (size_t)(lo + chunk);
    if (hi > n)
      hi = (size_t)n;
    ma_wait_ready(hdr, c);
    int64_t t0 = wx && wx->insights ? mp__now_ns() : 0;
    if (wx && wx->exec) { /* the chunk's bytes go to the executor */
      size_t bad = 0;
      int rc = wx->exec->run_array(wx->exec->ctx, wx->place, fn, shared,
                                   in ? in + lo * in_size : NULL,
                                   (size_t)in_size,
                                   out ? out + lo * out_size : NULL,
                                   (size_t)out_size, hi - lo, &bad);
      if (rc != 0 && err->code == 0) {
        snprintf(err->text, sizeof err->text, "%s",
                 mp_errdetail()[0] ? mp_errdetail() : mp_strerror(rc));
        err->index = (int64_t)(lo + (bad < hi - lo ? bad : 0));
        __atomic_store_n(&err->code, rc < 0 ? rc : MP_EINVAL,
                         __ATOMIC_RELEASE);
      }
      mp__errdetail_clear();
      __atomic_store_n(&done[c], 1, __ATOMIC_RELEASE);
      ma_report(wx, pslot, lo, hi, t0, c);
      continue;
    }
    for (size_t i = lo; i < hi; i++) {
      int rc = fn(in ? in + i * in_size : NULL, out ? out + i * out_size : NULL,
                  shared);
      if (rc != 0 && err->code == 0) {
        const char *text = mp_errdetail();
        if (rc > 0) {
          text = "the element function returned a positive value";
          rc = MP_EINVAL;
        } else if (!text[0]) {
          text = mp_strerror(rc);
        }
        snprintf(err->text, sizeof err->text, "%s: %s", name, text);
        err->index = (int64_t)i;
        __atomic_store_n(&err->code, rc, __ATOMIC_RELEASE);
      }
      if (rc != 0)
        mp__errdetail_clear();
    }
    __atomic_store_n(&done[c], 1, __ATOMIC_RELEASE);
    ma_report(wx, pslot, lo, hi, t0, c);
  }
  return 0;
}

/* Where `mem` (len bytes) goes to the workers: args[at] and args[at + 1]. */
typedef struct ma_side {
  mp_shm *seg;     /* the segment the workers map (NULL: address or none) */
  size_t off;
  int scratch;     /* seg is ours: copied in / out by the parent */
} ma_side;

/* The pool's kept segments: one for `in`, one for `out`, reused by the
 * next call that fits (a call while another runs makes its own). */
struct mp__ma_cache {
  pthread_mutex_t mu;
  mp_shm *seg[2];
};

void
mp__ma_cache_free(mp__ma_cache *c)
{
  if (!c)
    return;
  mp_shm_free(c->seg[0]);
  mp_shm_free(c->seg[1]);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* A segment of at least len bytes: the kept one of that side if it fits
 * (taken out of the cache), else a new one. */
static int
ma_scratch(mp__ma_cache *c, int side, size_t len, mp_shm **out)
{
  *out = NULL;
  if (c) {
    pthread_mutex_lock(&c->mu);
    if (c->seg[side] && mp_shm_size(c->seg[side]) >= len &&
        mp_shm_size(c->seg[side]) / 2 <= len) {
      *out = c->seg[side];
      c->seg[side] = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (*out)
      return 0;
  }
  int rc = mp__shm_anon(out, len);
  if (!rc) /* its pages now, in one call */
    mp__plat_prefault(mp_shm_buf(*out), len, 1);
  return rc;
}

/* Give a scratch segment back to the cache (or free it). */
static void
ma_scratch_keep(mp__ma_cache *c, int side, mp_shm *seg)
{
  if (c && seg) {
    pthread_mutex_lock(&c->mu);
    mp_shm *old = c->seg[side];
    c->seg[side] = seg;
    pthread_mutex_unlock(&c->mu);
    mp_shm_free(old);
  } else {
    mp_shm_free(seg);
  }
}

static int
ma_side_new(ma_side *s, mp__ma_cache *c, int side, const void *mem,
            size_t len, int threading, int copy_in)
{
  *s = (ma_side){0};
  if (!mem || len == 0 || threading)
    return 0;
  if ((s->seg = mp__shm_find(mem, len, &s->off)) != NULL)
    return 0; /* already shared: no copy */
  int rc = ma_scratch(c, side, len, &s->seg);
  if (rc)
    return rc;
  s->scratch = 1;
  if (copy_in)
    memcpy(mp_shm_buf(s->seg), mem, len);
  return 0;
}

/* The copies go in pieces of at least this many bytes (whole chunks), so
 * that a small chunksize does not make them element by element. */
#define MA_COPY_MIN ((size_t)64 << 10)

/* Copy `in` into the segment in chunk order, publishing each piece as
 * ready. */
static void
ma_copy_in(ma_hdr *h, void *seg, const void *in, size_t in_size, size_t n,
           size_t chunk, size_t nchunks)
{
  size_t per = chunk * in_size;
  size_t step = per >= MA_COPY_MIN ? 1 : (MA_COPY_MIN + per - 1) / per;
  for (size_t c = 0; c < nchunks; c += step) {
    size_t c2 = nchunks - c > step ? c + step : nchunks;
    size_t lo = c * chunk, hi = c2 * chunk < n ? c2 * chunk : n;
    memcpy((uint8_t *)seg + lo * in_size, (const uint8_t *)in + lo * in_size,
           (hi - lo) * in_size);
    __atomic_store_n(&h->ready, (uint32_t)c2, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&h->waiters, __ATOMIC_SEQ_CST))
      mp__futex_wake(&h->ready, INT32_MAX);
  }
  __atomic_store_n(&h->ready, MA_ALL, __ATOMIC_SEQ_CST);
  mp__futex_wake(&h->ready, INT32_MAX);
}

/* Copy out the chunks of [from, to) not copied yet (copied NULL: none
 * was): every one (all), or those whose done flag is set; a run of such
 * chunks in one copy.  Returns how many chunks it copied. */
static size_t
ma_copy_out(uint8_t *copied, const uint8_t *done, void *out, const void *seg,
            size_t out_size, size_t n, size_t chunk, size_t from, size_t to,
            int all)
{
  size_t k = 0;
  for (size_t c = from; c < to;) {
    size_t e = c;
    while (e < to && !(copied && copied[e]) &&
           (all || __atomic_load_n(&done[e], __ATOMIC_ACQUIRE)))
      e++;
    if (e == c) {
      c++;
      continue;
    }
    size_t lo = c * chunk, hi = e * chunk < n ? e * chunk : n;
    memcpy((uint8_t *)out + lo * out_size,
           (const uint8_t *)seg + lo * out_size, (hi - lo) * out_size);
    if (copied)
      memset(copied + c, 1, e - c);
    k += e - c;
    c = e;
  }
  return k;
}

/* While the tasks run, copy out each chunk as it ends; only the chunks
 * claimed so far (below the counter) are looked at.  Returns when every
 * task has its result (a dead worker's task too: the pool fails it), so
 * this never waits on a chunk that will not end. */
static void
ma_copy_out_while(ma_hdr *h, mp_result **res, size_t ntasks,
                  const uint8_t *done, uint8_t *copied, void *out,
                  const void *seg, size_t out_size, size_t n, size_t chunk,
                  size_t nchunks)
{
  size_t t = 0, first = 0;
  for (;;) {
    while (first < nchunks && copied[first])
      first++;
    int64_t claimed = __atomic_load_n(&h->next, __ATOMIC_ACQUIRE);
    size_t to = claimed < 0 ? 0
                : (uint64_t)claimed < nchunks ? (size_t)claimed
                                              : nchunks;
    size_t k = ma_copy_out(copied, done, out, seg, out_size, n, chunk, first,
                           to, 0);
    while (t < ntasks && mp_result_ready(res[t]) == 1)
      t++;
    if (t == ntasks)
      return;
    if (k == 0) /* nothing ended since: let the workers run */
      mp_result_wait(res[t], 200e-6);
  }
}

static mp_obj *
ma_side_obj(const ma_side *s, const void *mem, size_t len)
{
  if (s->seg)
    return mp_shm_obj(s->seg);
  if (!mem || len == 0)
    return mp_none();
  return mp_uint_new((uint64_t)(uintptr_t)mem);
}

static mp_obj *
ma_args(mp_elem_fn fn, const mp_obj *shared, mp_shm *ctl, const ma_side *si,
        const void *in, size_t in_size, const ma_side *so, void *out,
        size_t out_size, size_t n, size_t chunk, size_t slot, mp_obj *retry,
        int pslot)
{
  return MP_TUPLE(MP_FUNC(fn), shared ? mp_obj_ref((mp_obj *)shared)
                                      : mp_none(),
                  mp_shm_obj(ctl), ma_side_obj(si, in, n * in_size),
                  mp_uint_new(si->off), mp_uint_new(in_size),
                  ma_side_obj(so, out, n * out_size), mp_uint_new(so->off),
                  mp_uint_new(out_size), mp_uint_new(n), mp_uint_new(chunk),
                  mp_uint_new(slot), retry ? retry : mp_none(),
                  mp_uint_new((uint64_t)pslot));
}

int
mp_pool_map_array(mp_pool *p, mp_elem_fn fn, const void *in, size_t in_size,
                  void *out, size_t out_size, size_t n, const mp_obj *shared,
                  const mp_map_opts *opts)
{
  mp__errdetail_clear();
  static const mp_map_opts defaults;
  if (!opts)
    opts = &defaults;
  if (!p || !fn)
    return mp_seterr(MP_EINVAL, "pool or fn is NULL");
  if (n && ((in_size && !in) || (out_size && !out)))
    return mp_seterr(MP_EINVAL, "in or out is NULL");
  if ((in_size && n > SIZE_MAX / in_size) ||
      (out_size && n > SIZE_MAX / out_size))
    return mp_seterr(MP_EOVERFLOW, "n elements of that size do not fit in "
                                   "memory");
  if (opts->task_timeout != 0)
    return mp_seterr(opts->task_timeout != opts->task_timeout ||
                             opts->task_timeout < 0
                         ? MP_EINVAL
                         : MP_ENOTSUP,
                     "map_array has no task_timeout (a worker runs many "
                     "chunks in one task)");
  if (opts->callback || opts->error_callback)
    return mp_seterr(MP_EINVAL, "map_array takes no callbacks");
  if (mp__pool_x(p)->has_exec && !mp__pool_x(p)->exec.run_array)
    return mp_seterr(MP_ENOTSUP, "this pool's executor has no map_array");
  if (!mp__pool_running(p))
    return mp_seterr(MP_ESTATE, "the pool is not running (closed or "
                                "terminated)");
  if (n == 0)
    return 0;
  mp__bar *bar = NULL; /* the progress bar: every element counts */
  if (opts->progress) {
    int brc = mp__bar_new(mp__pool_x(p), n, &bar);
    if (brc)
      return brc;
  }
  size_t nproc = (size_t)mp__pool_nproc(p);
  int threading = mp__pool_threading(p);
  size_t chunk = opts->chunksize;
  if (chunk == 0) {
    size_t d = nproc * MA_CHUNKS_PER_WORKER;
    chunk = n / d + (n % d != 0);
  }
  size_t nchunks = n / chunk + (n % chunk != 0);
  size_t ntasks = nchunks < nproc ? nchunks : nproc;

  mp_shm *ctl = NULL;
  ma_side si = {0}, so = {0};
  mp_result **res = calloc(ntasks, sizeof *res);
  int rc = res ? 0 : MP_ENOMEM;
  if (!rc)
    rc = mp__shm_anon(&ctl, ma_ctl_size(nchunks, ntasks + 1));
  mp__ma_cache **cp = mp__pool_ma_cache(p), *cache = NULL;
  if (!rc && !threading) {
    /* made once, on the first call (two at once: one of them is kept) */
    cache = __atomic_load_n(cp, __ATOMIC_ACQUIRE);
    if (!cache && (cache = calloc(1, sizeof *cache)) != NULL) {
      pthread_mutex_init(&cache->mu, NULL);
      mp__ma_cache *expected = NULL;
      if (!__atomic_compare_exchange_n(cp, &expected, cache, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        mp__ma_cache_free(cache);
        cache = expected;
      }
    }
  }
  /* A private `in` is copied chunk by chunk after the tasks start (the
   * workers wait for each chunk); `out` likewise, as chunks end. */
  int pipe_in = nchunks < MA_ALL;
  if (!rc)
    rc = ma_side_new(&si, cache, 0, in, n * in_size, threading, !pipe_in);
  if (!rc)
    rc = ma_side_new(&so, cache, 1, out, n * out_size, threading, 0);
  ma_hdr *hdr = ctl ? (ma_hdr *)mp_shm_buf(ctl) : NULL;
  if (!rc && !(pipe_in && si.scratch))
    __atomic_store_n(&hdr->ready, MA_ALL, __ATOMIC_RELEASE);
  size_t started = 0;
  for (; !rc && started < ntasks; started++) {
    mp_obj *args = ma_args(fn, shared, ctl, &si, in, in_size, &so, out,
                           out_size, n, chunk, started, NULL,
                           bar ? bar->slot : 0);
    rc = args ? mp_pool_apply_async(p, mp__ma_task, args, NULL, &res[started])
              : MP_ENOMEM;
    mp_obj_free(args);
    if (rc)
      break;
  }
  uint8_t *done = ctl ? (uint8_t *)mp_shm_buf(ctl) + ma_done_off() : NULL;
  uint8_t *copied = NULL; /* chunks of `out` copied out already */
  if (started && pipe_in && si.scratch)
    ma_copy_in(hdr, mp_shm_buf(si.seg), in, in_size, n, chunk, nchunks);
  if (started && so.scratch && (copied = calloc(nchunks, 1)) != NULL)
    ma_copy_out_while(hdr, res, started, done, copied, out,
                      mp_shm_buf(so.seg), out_size, n, chunk, nchunks);
  /* Wait for every task started, whatever happened to the others: they
   * use the memory. */
  int died = 0;
  char why[MP__ERRDETAIL_CAP] = "";
  for (size_t t = 0; t < started; t++) {
    mp_obj *v = NULL;
    int trc = mp_result_get(res[t], &v, MP_FOREVER);
    mp_obj_free(v);
    if (trc == MP_EWORKERDIED) {
      died = 1;
      snprintf(why, sizeof why, "%s", mp_errdetail());
    } else if (trc && !rc) {
      snprintf(why, sizeof why, "%s", mp_errdetail());
      rc = mp_seterr(trc, "%s", why);
    }
    mp_result_free(res[t]);
  }
  if (!rc && died) {
    /* the chunks a dead worker left: once more, in one task */
    mp_obj *list = mp_list_new();
    for (size_t c = 0; list && c < nchunks; c++)
      if (!__atomic_load_n(&done[c], __ATOMIC_ACQUIRE) &&
          mp_list_append_take(list, mp_uint_new(c)) != 0) {
        mp_obj_free(list);
        list = NULL;
      }
    mp_result *r = NULL;
    mp_obj *args = list ? ma_args(fn, shared, ctl, &si, in, in_size, &so, out,
                                  out_size, n, chunk, ntasks, list,
                                  bar ? bar->slot : 0)
                        : NULL;
    rc = args ? mp_pool_apply_async(p, mp__ma_task, args, NULL, &r) : MP_ENOMEM;
    mp_obj_free(args);
    if (!rc) {
      mp_obj *v = NULL;
      int trc = mp_result_get(r, &v, MP_FOREVER);
      mp_obj_free(v);
      mp_result_free(r);
      if (trc == MP_EWORKERDIED)
        snprintf(why, sizeof why, "%s", mp_errdetail());
      else if (trc) {
        snprintf(why, sizeof why, "%s", mp_errdetail());
        rc = mp_seterr(trc, "%s", why);
      }
    }
    for (size_t c = 0; !rc && c < nchunks; c++)
      if (!__atomic_load_n(&done[c], __ATOMIC_ACQUIRE)) {
        size_t hi = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        rc = mp_seterr(MP_EWORKERDIED, "elements %zu to %zu were not "
                       "computed: their worker died, and again when they "
                       "ran once more: %s", c * chunk, hi - 1, why);
      }
  }
  if (!rc && ctl) { /* the failing element of the lowest index */
    ma_err *err = (ma_err *)((uint8_t *)mp_shm_buf(ctl) +
                             ma_err_off(nchunks));
    size_t best = SIZE_MAX;
    for (size_t t = 0; t <= ntasks; t++) {
      int code = __atomic_load_n(&err[t].code, __ATOMIC_ACQUIRE);
      if (code < 0 && err[t].index >= 0 && (uint64_t)err[t].index < n &&
          (best == SIZE_MAX || err[t].index < err[best].index))
        best = t;
    }
    if (best != SIZE_MAX) {
      err[best].text[MA_TEXT - 1] = 0;
      rc = mp_seterr(err[best].code, "element %lld: %s",
                     (long long)err[best].index, err[best].text);
    }
  }
  if (so.scratch && started) /* what was not copied as it ended */
    ma_copy_out(copied, done, out, mp_shm_buf(so.seg), out_size, n, chunk, 0,
                nchunks, 1);
  free(copied);
  snprintf(why, sizeof why, "%s", rc ? mp_errdetail() : "");
  /* these clear the detail */
  if (si.scratch)
    ma_scratch_keep(cache, 0, si.seg);
  else
    mp_shm_free(si.seg);
  if (so.scratch)
    ma_scratch_keep(cache, 1, so.seg);
  else
    mp_shm_free(so.seg);
  mp_shm_free(ctl);
  free(res);
  /* the last line: 100% when every element was computed; as counted when
   * the call failed after starting; none if nothing started */
  mp__bar_end(bar, started ? (rc == 0 ? 1 : 0) : -1);
  return rc && why[0] ? mp_seterr(rc, "%s", why) : rc;
}
