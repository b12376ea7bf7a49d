/* SPDX-License-Identifier: MIT */
/* The queue's log in shared memory: claiming, committing, taking and
 * finishing records, journals, and the life of segments (see
 * queue_internal.h for the layout and docs/queue.md for the reasoning). */
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/platform.h"
#include "queue/queue_internal.h"

#define ROUND8(x) (((uint64_t)(x) + 7) & ~(uint64_t)7)
#define WALK_MAX (1u << 22) /* bound on any walk over shared structures */
#define TAKE_RUN MP__Q_RUN
#define CLAIM_RUN MP__Q_RUN
#define SPINS 64            /* tries on a busy side lock before sleeping */
#define HOFF(field) ((uint64_t)offsetof(struct mp__qhdr, field))
#define SOFF(seg, field) ((seg) + (uint64_t)offsetof(struct mp__qseg, field))
#define ROFF(rec, field) ((rec) + (uint64_t)offsetof(struct mp__qrec, field))

static inline _Atomic uint64_t *
qword(mp_queue *q, uint64_t off)
{
  return (_Atomic uint64_t *)(void *)(q->base + off);
}

static inline uint64_t
ld(_Atomic uint64_t *p)
{
  return atomic_load_explicit(p, memory_order_acquire);
}

static inline void
st(_Atomic uint64_t *p, uint64_t v)
{
  atomic_store_explicit(p, v, memory_order_relaxed);
}

/* pid << 40 | start time of this process, recomputed after fork. */
static _Atomic uint64_t g_aux MP__HOT_DATA;

MP__HOT static uint64_t
my_aux(void)
{
  uint32_t pid = mp__getpid();
  uint64_t a = atomic_load_explicit(&g_aux, memory_order_relaxed);
  if (MP__UNLIKELY((uint32_t)(a >> 40) != pid)) {
    a = (uint64_t)pid << 40
        | (mp__proc_starttime() & ((UINT64_C(1) << 40) - 1));
    atomic_store_explicit(&g_aux, a, memory_order_relaxed);
  }
  return a;
}

/* Is the owner of record word w (with its aux word) still alive?
 * `cheap`: only kill(pid, 0) (a zombie counts as alive). */
static int
owner_alive(struct mp__qrec *r, uint64_t w, int cheap)
{
  uint32_t pid = MP__QW_PID(w);
  if (pid == mp__getpid())
    return 1; /* another thread of ours */
  uint64_t aux = atomic_load_explicit(&r->aux, memory_order_relaxed);
  uint64_t start =
      (uint32_t)(aux >> 40) == pid ? (aux & ((UINT64_C(1) << 40) - 1)) : 0;
  return mp__proc_alive(pid, start, cheap);
}

int
mp__q_known(mp_queue *q, uint64_t end)
{
  if (MP__LIKELY(end <= atomic_load_explicit(&q->known, memory_order_relaxed)))
    return 0;
  struct stat sb;
  if (end > q->reserve || fstat(q->memfd, &sb) < 0)
    return mp_seterr(MP_EMALFORMED, "queue: shared memory refers to offset "
                                    "%llu, outside its file",
                     (unsigned long long)end);
  uint64_t sz = (uint64_t)sb.st_size;
  if (sz > q->reserve)
    sz = q->reserve;
  /* The file never shrinks (sealed), so what fstat saw stays valid. */
  uint64_t k = atomic_load_explicit(&q->known, memory_order_relaxed);
  while (sz > k && !atomic_compare_exchange_weak_explicit(
                       &q->known, &k, sz, memory_order_relaxed,
                       memory_order_relaxed))
    ;
  if (end <= sz)
    return 0;
  return mp_seterr(MP_EMALFORMED,
                   "queue: shared memory refers to offset %llu, outside its "
                   "file (%llu bytes)",
                   (unsigned long long)end, (unsigned long long)sz);
}

/* The segment at file offset `off`, checked: NULL (detail set) unless it
 * is page aligned, lies inside the file and carries the segment tag. */
MP__HOT static struct mp__qseg *
seg_get(mp_queue *q, uint64_t off, uint64_t *size)
{
  /* A segment's size never changes once made (segments are never split or
   * merged), so one this process checked before is known good. */
  uint64_t c = atomic_load_explicit(&q->seg_cache, memory_order_relaxed);
  if (c && (c >> 20) << 12 == off) {
    *size = (c & 0xfffff) << 12;
    return (struct mp__qseg *)(void *)(q->base + off);
  }
  if (off < MP__Q_PAGE || off % MP__Q_PAGE || off >= q->reserve
      || mp__q_known(q, off + MP__Q_PAGE)) {
    mp_seterr(MP_EMALFORMED, "queue: bad segment offset %llu",
              (unsigned long long)off);
    return NULL;
  }
  struct mp__qseg *s = (struct mp__qseg *)(void *)(q->base + off);
  uint64_t tag = atomic_load_explicit(&s->tag, memory_order_acquire);
  uint64_t sz = MP__SHARED_LOAD(&s->size);
  if ((uint32_t)tag != MP__Q_SEG_MAGIC || sz < MP__Q_PAGE || sz % MP__Q_PAGE
      || sz > q->reserve - off || mp__q_known(q, off + sz)) {
    mp_seterr(MP_EMALFORMED, "queue: corrupt segment header at %llu",
              (unsigned long long)off);
    return NULL;
  }
  *size = sz;
  if (off >> 12 < (UINT64_C(1) << 44) && sz >> 12 <= 0xfffff)
    atomic_store_explicit(&q->seg_cache, (off >> 12) << 20 | sz >> 12,
                          memory_order_relaxed);
  return s;
}

/* ---- journals ------------------------------------------------------------- */

static inline void
j_reset(struct mp__qjournal *j)
{
  j->n = 0;
}

static inline void
j_add(struct mp__qjournal *j, uint64_t off, uint64_t val)
{
  /* Opaque to the optimiser: it would merge two constant offsets (and a
   * count) into one 16-byte load from .rodata -- a page of data a get or
   * a put touches for nothing else. */
  __asm__("" : "+r"(off));
  j->e[j->n].off = off;
  j->e[j->n].val = val;
  j->n++;
}

/* The terminator: a zero record word right after the last record claimed,
 * where the next will go (unless no header fits before the segment's end).
 * Consumers know the log ends there by that word alone, without reading the
 * tail, which producers write on every claim (a cache line moving between
 * CPUs per item).  Whatever a recycled segment held beyond it is never
 * read. */
static inline void
j_terminate(struct mp__qjournal *j, uint64_t pos, uint64_t seg_end)
{
  if (seg_end - pos >= MP__Q_RECHDR)
    j_add(j, ROFF(pos, w), 0);
}

MP__HOT_DATA int mp__q_die_in_journal_for_tests;

/* Arm, apply in order (the last store, the publication, with release),
 * disarm. */
MP__HOT static void
j_apply(mp_queue *q, struct mp__qjournal *j)
{
  uint64_t n = j->n;
  /* armed before any store it covers (a release fence orders the stores
   * before and after it: free on x86, a store barrier elsewhere) */
#ifdef MP__Q_TSAN
  atomic_exchange_explicit(&j->armed, 1, memory_order_seq_cst);
#else
  atomic_store_explicit(&j->armed, 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
#endif
  /* each store a release (plain stores on x86): a consumer that reads a
   * segment's end or link sees the record headers stored before it */
  if (MP__UNLIKELY(mp__q_die_in_journal_for_tests > 0)
      && n >= (uint64_t)mp__q_die_in_journal_for_tests)
    n = (uint64_t)mp__q_die_in_journal_for_tests - 1; /* then _exit below */
  for (uint64_t i = 0; i < n; i++)
    atomic_store_explicit(qword(q, j->e[i].off), j->e[i].val,
                          memory_order_release);
  if (MP__UNLIKELY(n < j->n))
    _exit(0); /* killed with the journal half applied (tests only) */
  atomic_store_explicit(&j->armed, 0, memory_order_release);
}

/* A journal left armed by a holder that died: apply it unless its
 * publication already happened.  The offsets come from shared memory, so
 * each is checked against the file first. */
static int
j_replay(mp_queue *q, struct mp__qjournal *j)
{
  if (!atomic_load_explicit(&j->armed, memory_order_acquire))
    return 0;
  uint64_t n = MP__SHARED_LOAD(&j->n), off[MP__Q_JMAX], val[MP__Q_JMAX];
  int rc = 0;
  if (n == 0 || n > MP__Q_JMAX)
    rc = mp_seterr(MP_EMALFORMED, "queue: corrupt journal");
  for (uint64_t i = 0; !rc && i < n; i++) {
    off[i] = MP__SHARED_LOAD(&j->e[i].off);
    val[i] = MP__SHARED_LOAD(&j->e[i].val);
    if (off[i] % 8 || off[i] > q->reserve - 8 || mp__q_known(q, off[i] + 8))
      rc = mp_seterr(MP_EMALFORMED, "queue: corrupt journal");
  }
  if (!rc && ld(qword(q, off[n - 1])) != val[n - 1]) {
    for (uint64_t i = 0; i + 1 < n; i++)
      st(qword(q, off[i]), val[i]);
    atomic_store_explicit(qword(q, off[n - 1]), val[n - 1],
                          memory_order_release);
  }
  atomic_store_explicit(&j->armed, 0, memory_order_release);
  return rc;
}

/* ---- the side locks ---------------------------------------------------------
 * Critical sections are a few stores, so a busy lock is usually free again
 * within a spin; only then does a locker sleep (the robust lock's slices).
 * The deadline is computed by the caller only when the spin failed. */

/* Held now (0 or MP_EOWNERDEAD from the lock): finish a dead holder's
 * work if its journal is armed. */
static int
side_held(mp_queue *q, struct mp__slock *l, struct mp__qjournal *j)
{
  int rc;
  if (MP__UNLIKELY(atomic_load_explicit(&j->armed, memory_order_acquire))
      && (rc = j_replay(q, j)) != 0) {
    mp__slock_release(l);
    return rc;
  }
  return 0;
}

MP__HOT static int
side_try(mp_queue *q, struct mp__slock *l, struct mp__qjournal *j)
{
  for (int i = 0; i < SPINS; i++) {
    uint32_t v = 0;
    if (atomic_load_explicit(&l->word, memory_order_relaxed) == 0
        && atomic_compare_exchange_weak_explicit(&l->word, &v, mp__getpid(),
                                                 memory_order_acquire,
                                                 memory_order_relaxed)) {
      /* the owner record is only read by waiters checking liveness */
      atomic_store_explicit(&l->oinfo, my_aux(), memory_order_relaxed);
      return side_held(q, l, j);
    }
    MP__CPU_RELAX();
  }
  return 1;
}

static int
side_lock(mp_queue *q, struct mp__slock *l, struct mp__qjournal *j,
          mp__deadline dl)
{
  int rc = mp__slock_acquire(l, dl);
  return rc == MP_ETIMEDOUT ? rc : side_held(q, l, j);
}

MP__HOT int
mp__q_try_lock(mp_queue *q, int put)
{
  struct mp__qhdr *h = q->h;
  return put ? side_try(q, &h->put_lock, &h->pj)
             : side_try(q, &h->get_lock, &h->gj);
}

int
mp__q_put_lock(mp_queue *q, mp__deadline dl)
{
  return side_lock(q, &q->h->put_lock, &q->h->pj, dl);
}

MP__HOT void
mp__q_put_unlock(mp_queue *q)
{
  mp__slock_release(&q->h->put_lock);
}

int
mp__q_get_lock(mp_queue *q, mp__deadline dl)
{
  return side_lock(q, &q->h->get_lock, &q->h->gj, dl);
}

MP__HOT void
mp__q_get_unlock(mp_queue *q)
{
  mp__slock_release(&q->h->get_lock);
}

/* ---- counts ------------------------------------------------------------------
 * The later counter is read last, so a difference is never negative. */
uint64_t
mp__q_count(const mp_queue *q)
{
  struct mp__qhdr *h = q->h;
  uint64_t gone = ld(&h->taken) + ld(&h->padded);
  uint64_t r = ld(&h->reserved);
  return r > gone ? r - gone : 0;
}

uint64_t
mp__q_unfinished(const mp_queue *q)
{
  struct mp__qhdr *h = q->h;
  uint64_t gone = ld(&h->done) + ld(&h->padded);
  uint64_t r = ld(&h->reserved);
  return r > gone ? r - gone : 0;
}

/* ---- segments ---------------------------------------------------------------- */

static uint64_t
keep_budget(const mp_queue *q)
{
  uint64_t k = 8 * q->segsize;
  return k < ((uint64_t)16 << 20) ? (uint64_t)16 << 20 : k;
}

/* Has every record of the (passed, sealed) segment been copied out?  The
 * counter says so unless a reader died; then the records tell: a record
 * still READING by a dead process is finished on its behalf (its item is
 * lost -- the one the dead consumer was taking). */
static int
seg_finished(mp_queue *q, struct mp__qseg *s, uint64_t off, uint64_t sz)
{
  if ((uint32_t)ld(&s->finished) >= ld(&s->nrec))
    return 1;
  uint64_t sealed = ld(&s->sealed);
  if (sealed < off + MP__Q_SEGHDR || sealed > off + sz)
    return 0; /* corrupt: keep it rather than reuse memory in use */
  uint64_t r = off + MP__Q_SEGHDR;
  for (unsigned n = 0; r < sealed && n < WALK_MAX; n++) {
    if (sealed - r < MP__Q_RECHDR)
      return 0;
    struct mp__qrec *rec = (struct mp__qrec *)(void *)(q->base + r);
    uint64_t w = ld(&rec->w);
    uint64_t reclen = MP__Q_RECHDR + ROUND8(MP__QW_LEN(w));
    if (reclen > sealed - r)
      return 0;
    unsigned state = MP__QW_STATE(w);
    if (state == MP__QR_READING) {
      if (owner_alive(rec, w, 0))
        return 0;
      uint64_t done = MP__QW_MAKE(MP__QR_DONE, MP__QW_FLAGS(w), 0,
                                  MP__QW_LEN(w));
      if (!atomic_compare_exchange_strong(&rec->w, &w, done))
        return 0; /* it changed under us: look again next time */
    } else if (state != MP__QR_DONE && state != MP__QR_PAD) {
      return 0;
    }
    r += reclen;
  }
  return r == sealed;
}

/* Recycle segments from the oldest while the head has left them and they
 * are finished (put lock held).  Each recycling is one journal. */
static void
reclaim(mp_queue *q)
{
  struct mp__qhdr *h = q->h;
  struct mp__qjournal *j = &h->pj;
  for (int i = 0; i < 256; i++) {
    uint64_t o = ld(&h->oldest), sz;
    if (o == ld(&h->head_seg))
      return;
    struct mp__qseg *s = seg_get(q, o, &sz);
    if (!s || !seg_finished(q, s, o, sz))
      return;
    uint64_t nx = ld(&s->next), nsz;
    if (!seg_get(q, nx, &nsz))
      return;
    int punch = ld(&h->free_committed) + sz > keep_budget(q);
    /* Give the memory back to the system; the header page stays.  Done
     * before the journal: if we die here, the segment is punched but still
     * finished, and the next producer recycles it. */
    if (punch && fallocate(q->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           (off_t)(o + MP__Q_PAGE),
                           (off_t)(sz - MP__Q_PAGE)) < 0)
      punch = 0;
    _Atomic uint64_t *list = sz == q->segsize ? &h->free_std : &h->free_big;
    uint64_t list_off = sz == q->segsize ? HOFF(free_std) : HOFF(free_big);
    j_reset(j);
    j_add(j, SOFF(o, free_next), ld(list));
    j_add(j, SOFF(o, tag), MP__QSEG_TAG(punch ? MP__QS_PUNCHED : MP__QS_FREE));
    if (punch)
      j_add(j, HOFF(mem_used), ld(&h->mem_used) - (sz - MP__Q_PAGE));
    else
      j_add(j, HOFF(free_committed), ld(&h->free_committed) + sz);
    j_add(j, list_off, o);
    j_add(j, HOFF(oldest), nx);
    j_apply(q, j);
  }
}

static int
cap_full(mp_queue *q, uint64_t more)
{
  return mp_seterr(MP_EFULL,
                   "queue: memory cap reached (%llu bytes in use, %llu more "
                   "needed, cap %llu)",
                   (unsigned long long)ld(&q->h->mem_used),
                   (unsigned long long)more, (unsigned long long)q->cap);
}

/* Find room for a segment of `want` bytes (a free one, or the file grown)
 * and add to j the stores that take it and initialise it: 0, *out and its
 * size *out_size; or MP_EFULL / MP_EMALFORMED / -errno. */
static int
seg_alloc(mp_queue *q, uint64_t want, struct mp__qjournal *j, uint64_t *out,
          uint64_t *out_size)
{
  struct mp__qhdr *h = q->h;
  uint64_t mem = ld(&h->mem_used);
  uint64_t pick = 0, pick_sz = 0, pick_link = 0;
  /* a free segment: the first standard one, or the smallest big one that
   * fits */
  uint64_t link = want == q->segsize ? HOFF(free_std) : HOFF(free_big);
  uint64_t s = ld(qword(q, link));
  for (unsigned n = 0; s && n < 4096; n++) {
    uint64_t sz;
    struct mp__qseg *seg = seg_get(q, s, &sz);
    if (!seg)
      return MP_EMALFORMED;
    unsigned state = (unsigned)(ld(&seg->tag) >> 32);
    if (state != MP__QS_FREE && state != MP__QS_PUNCHED)
      return mp_seterr(MP_EMALFORMED, "queue: corrupt free list");
    if (sz >= want && (!pick || sz < pick_sz)) {
      pick = s, pick_sz = sz, pick_link = link;
      if (want == q->segsize || sz == want)
        break;
    }
    link = SOFF(s, free_next);
    s = ld(qword(q, link));
  }
  if (pick) {
    struct mp__qseg *seg = (struct mp__qseg *)(void *)(q->base + pick);
    int punched = (unsigned)(ld(&seg->tag) >> 32) == MP__QS_PUNCHED;
    if (punched && mem + pick_sz - MP__Q_PAGE > q->cap)
      return cap_full(q, pick_sz - MP__Q_PAGE);
    j_add(j, pick_link, ld(&seg->free_next));
    if (punched)
      j_add(j, HOFF(mem_used), mem + pick_sz - MP__Q_PAGE);
    else
      j_add(j, HOFF(free_committed), ld(&h->free_committed) - pick_sz);
  } else {
    uint64_t end = ld(&h->file_used);
    if (end % MP__Q_PAGE || end > q->reserve)
      return mp_seterr(MP_EMALFORMED, "queue: corrupt file extent");
    if (mem + want > q->cap)
      return cap_full(q, want);
    if (want > q->reserve - end)
      return mp_seterr(MP_EFULL,
                       "queue: address reservation of %llu bytes used up "
                       "(fragmented by items of many sizes)",
                       (unsigned long long)q->reserve);
    struct stat sb;
    if (fstat(q->memfd, &sb) < 0)
      return mp__errno();
    /* grow, never shrink: a producer that died here may have grown it */
    if ((uint64_t)sb.st_size < end + want
        && ftruncate(q->memfd, (off_t)(end + want)) < 0)
      return errno == EFBIG || errno == ENOSPC ? cap_full(q, want)
                                               : mp__errno();
    if (mp__q_known(q, end + want))
      return MP_EMALFORMED;
    pick = end, pick_sz = want;
    j_add(j, SOFF(pick, size), want);
    j_add(j, HOFF(file_used), end + want);
    j_add(j, HOFF(mem_used), mem + want);
  }
  j_add(j, SOFF(pick, sealed), 0);
  j_add(j, SOFF(pick, next), 0);
  j_add(j, SOFF(pick, nrec), 0);
  /* a new generation: counts of its previous life no longer land */
  j_add(j, SOFF(pick, finished),
        ((ld(&((struct mp__qseg *)(void *)(q->base + pick))->finished) >> 32)
         + 1) << 32);
  j_add(j, SOFF(pick, tag), MP__QSEG_TAG(MP__QS_LIVE));
  *out = pick;
  *out_size = pick_sz;
  return 0;
}

/* ---- producers --------------------------------------------------------------- */

MP__HOT int
mp__q_claim(mp_queue *q, uint32_t len, unsigned flags, mp__qclaim *c)
{
  struct mp__qhdr *h = q->h;
  struct mp__qjournal *j = &h->pj;
  uint64_t reclen = MP__Q_RECHDR + ROUND8(len), ssz;
  uint64_t ts = ld(&h->tail_seg), t = ld(&h->tail), rec;
  if (!seg_get(q, ts, &ssz))
    return MP_EMALFORMED;
  if (t < ts + MP__Q_SEGHDR || t > ts + ssz || t % 8)
    return mp_seterr(MP_EMALFORMED, "queue: corrupt tail");
  uint64_t w = MP__QW_MAKE(MP__QR_WRITING, flags, mp__getpid(), len);
  if (reclen <= ts + ssz - t) {
    /* the count lives in the producers' cache line, not in the segment
     * header consumers write to */
    j_reset(j);
    j_add(j, HOFF(tail_nrec), ld(&h->tail_nrec) + 1);
    rec = t;
    j_add(j, ROFF(rec, aux), my_aux());
    j_add(j, ROFF(rec, w), w);
    j_terminate(j, rec + reclen, ts + ssz);
  } else {
    uint64_t need = MP__Q_SEGHDR + reclen, nseg = 0, nsz = 0;
    uint64_t want = need <= q->segsize ? q->segsize : MP__Q_PAGE_UP(need);
    reclaim(q);
    j_reset(j);
    int rc = seg_alloc(q, want, j, &nseg, &nsz);
    if (rc)
      return rc;
    /* the new segment's first record and terminator before the link to
     * it: a consumer that follows the link finds them */
    rec = nseg + MP__Q_SEGHDR;
    j_add(j, ROFF(rec, aux), my_aux());
    j_add(j, ROFF(rec, w), w);
    j_terminate(j, rec + reclen, nseg + nsz);
    /* the link before the seal: a consumer that reads the seal next reads
     * the link, even while this journal is half applied (we are preempted
     * or killed between the two stores) */
    j_add(j, SOFF(ts, nrec), ld(&h->tail_nrec));
    j_add(j, SOFF(ts, next), nseg);
    j_add(j, SOFF(ts, sealed), t);
    j_add(j, HOFF(tail_nrec), 1);
    j_add(j, HOFF(tail_seg), nseg);
  }
  j_add(j, HOFF(reserved), ld(&h->reserved) + 1);
  j_add(j, HOFF(tail), rec + reclen);
  j_apply(q, j);
  c->rec = (struct mp__qrec *)(void *)(q->base + rec);
  c->payload = q->base + rec + MP__Q_RECHDR;
  c->w = w;
  return 0;
}

int
mp__q_claim_run(mp_queue *q, const uint32_t *lens, size_t n, mp__qclaim *c)
{
  struct mp__qhdr *h = q->h;
  struct mp__qjournal *j = &h->pj;
  uint64_t ts = ld(&h->tail_seg), t = ld(&h->tail), ssz;
  if (n > CLAIM_RUN)
    n = CLAIM_RUN;
  if (!seg_get(q, ts, &ssz))
    return MP_EMALFORMED;
  if (t < ts + MP__Q_SEGHDR || t > ts + ssz || t % 8)
    return mp_seterr(MP_EMALFORMED, "queue: corrupt tail");
  uint64_t room = ts + ssz - t, need = 0;
  size_t k = 0;
  while (k < n && (need += MP__Q_RECHDR + ROUND8(lens[k])) <= room)
    k++;
  if (k <= 1) /* the first needs a new segment, or there is only one */
  {
    int rc = mp__q_claim(q, lens[0], 0, c);
    return rc ? rc : 1;
  }
  uint32_t pid = mp__getpid();
  uint64_t aux = my_aux(), p = t;
  j_reset(j);
  for (size_t i = 0; i < k; i++) {
    uint64_t w = MP__QW_MAKE(MP__QR_WRITING, 0, pid, lens[i]);
    j_add(j, ROFF(p, aux), aux);
    j_add(j, ROFF(p, w), w);
    c[i].rec = (struct mp__qrec *)(void *)(q->base + p);
    c[i].payload = q->base + p + MP__Q_RECHDR;
    c[i].w = w;
    p += MP__Q_RECHDR + ROUND8(lens[i]);
  }
  j_terminate(j, p, ts + ssz);
  j_add(j, HOFF(tail_nrec), ld(&h->tail_nrec) + k);
  j_add(j, HOFF(reserved), ld(&h->reserved) + k);
  j_add(j, HOFF(tail), p);
  j_apply(q, j);
  return (int)k;
}

/* READY from WRITING.  Fails only if our record was skipped as a dead
 * producer's, which a live process never is; then the put must not report
 * success. */
int
mp__q_commit_quiet(const mp__qclaim *c)
{
  uint64_t w = c->w;
  uint64_t ready = MP__QW_MAKE(MP__QR_READY, MP__QW_FLAGS(w), 0,
                               MP__QW_LEN(w));
  return atomic_compare_exchange_strong_explicit(&c->rec->w, &w, ready,
                                                 memory_order_seq_cst,
                                                 memory_order_relaxed)
             ? 0
             : mp_seterr(MP_ESTATE, "queue: this item's record was "
                                    "skipped as a dead producer's");
}

/* Dekker with a consumer going to sleep: it counts itself a waiter and then
 * looks at the head record; we published (seq_cst) and then look for
 * waiters.  Once after a batch: a consumer that looked after the first
 * commit saw an item and did not sleep. */
MP__HOT void
mp__q_wake_consumer(mp_queue *q)
{
  if (atomic_load_explicit(&q->h->get_waiters, memory_order_seq_cst)
      && !atomic_exchange_explicit(&q->h->put_signalled, 1,
                                   memory_order_seq_cst)) {
    atomic_fetch_add_explicit(&q->h->put_seq, 1, memory_order_seq_cst);
    mp__futex_wake((uint32_t *)&q->h->put_seq, 1);
  }
}

MP__HOT int
mp__q_commit(mp_queue *q, const mp__qclaim *c)
{
  int rc = mp__q_commit_quiet(c);
  mp__q_wake_consumer(q);
  return rc;
}

MP__HOT_DATA void (*mp__q_pad_hook_for_tests)(struct mp__qrec *rec);

/* ---- consumers --------------------------------------------------------------- */

static void
wake_joiners(mp_queue *q)
{
  struct mp__qhdr *h = q->h;
  mp__q_fence();
  if (atomic_load_explicit(&h->join_waiters, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&h->done_seq, 1, memory_order_seq_cst);
    mp__futex_wake((uint32_t *)&h->done_seq, INT32_MAX);
  }
}

MP__HOT int
mp__q_take(mp_queue *q, size_t maxlen, size_t max_n, int check_dead,
           mp__qtake *t, uint64_t *wait_w, struct mp__qrec **wait_rec)
{
  struct mp__qhdr *h = q->h;
  struct mp__qjournal *j = &h->gj;
  *wait_w = 0;
  unsigned rechecked = 0;
  for (unsigned iter = 0; iter < WALK_MAX; iter++) {
    uint64_t hs = ld(&h->head_seg), hd = ld(&h->head), sz;
    struct mp__qseg *s = seg_get(q, hs, &sz);
    if (!s)
      return MP_EMALFORMED;
    if (hd < hs + MP__Q_SEGHDR || hd > hs + sz || hd % 8)
      return mp_seterr(MP_EMALFORMED, "queue: corrupt head");
    uint64_t sealed = ld(&s->sealed);
    if (sealed) {
      if (sealed < hs + MP__Q_SEGHDR || sealed > hs + sz || hd > sealed)
        return mp_seterr(MP_EMALFORMED, "queue: corrupt segment end");
      if (hd == sealed) { /* on to the next segment */
        uint64_t nx = ld(&s->next), nsz;
        if (!seg_get(q, nx, &nsz))
          return MP_EMALFORMED;
        j_reset(j);
        j_add(j, HOFF(head_seg), nx);
        j_add(j, HOFF(head), nx + MP__Q_SEGHDR);
        j_apply(q, j);
        continue;
      }
    }
    uint64_t end = sealed ? sealed : hs + sz;
    struct mp__qrec *rec = (struct mp__qrec *)(void *)(q->base + hd);
    uint64_t w = end - hd >= MP__Q_RECHDR ? ld(&rec->w) : 0;
    if (MP__QW_STATE(w) == MP__QR_EMPTY) {
      /* The terminator, or the end of the segment: the log ends here.  The
       * tail agrees, unless a producer is publishing right now (the loads
       * above missed some of its stores): then one more look sees them. */
      if (ld(&h->tail) == hd)
        return 0;
      if (!rechecked++)
        continue;
      return mp_seterr(MP_EMALFORMED,
                       "queue: record at %llu is in state 0 at the head",
                       (unsigned long long)hd);
    }
    rechecked = 0;
    uint32_t len = MP__QW_LEN(w);
    uint64_t reclen = MP__Q_RECHDR + ROUND8(len);
    if (reclen > end - hd || len > q->max_message + sizeof(struct mp__qfds_prefix))
      return mp_seterr(MP_EMALFORMED, "queue: corrupt record at %llu",
                       (unsigned long long)hd);
    unsigned state = MP__QW_STATE(w), flags = MP__QW_FLAGS(w);
    if (state == MP__QR_READY) {
      size_t plen = len;
      if (flags & MP__QR_FDS) {
        if (len < sizeof(struct mp__qfds_prefix))
          return mp_seterr(MP_EMALFORMED, "queue: corrupt record at %llu",
                           (unsigned long long)hd);
        plen -= sizeof(struct mp__qfds_prefix);
      }
      if (plen > maxlen) {
        t->len = (uint32_t)plen;
        t->flags = flags;
        return MP_EMSGSIZE;
      }
      /* Take it, and the READY records right behind it in this segment
       * (up to max_n, within the budget, none holding descriptors): one
       * journal for the run. */
      uint32_t pid = mp__getpid();
      uint32_t gen = (uint32_t)(ld(&s->finished) >> 32);
      uint64_t aux = my_aux(), p = hd;
      uint64_t lim = end; /* a terminator ends the run before it */
      size_t k = 0, used = 0;
      if (max_n > TAKE_RUN)
        max_n = TAKE_RUN;
      j_reset(j);
      for (;;) {
        uint64_t rw = MP__QW_MAKE(MP__QR_READING, flags, pid, len);
        j_add(j, ROFF(p, aux), aux);
        j_add(j, ROFF(p, w), rw);
        t[k].rec = rec;
        t[k].payload = q->base + p + MP__Q_RECHDR;
        t[k].len = len;
        t[k].flags = flags;
        t[k].seg = hs;
        t[k].w = rw;
        t[k].gen = gen;
        k++;
        used += plen;
        p += reclen;
        if (k == max_n || (flags & MP__QR_FDS) || lim - p < MP__Q_RECHDR)
          break;
        rec = (struct mp__qrec *)(void *)(q->base + p);
        w = ld(&rec->w);
        len = MP__QW_LEN(w);
        reclen = MP__Q_RECHDR + ROUND8(len);
        flags = MP__QW_FLAGS(w);
        plen = len;
        if (MP__QW_STATE(w) != MP__QR_READY || (flags & MP__QR_FDS)
            || reclen > lim - p || plen > maxlen - used)
          break;
      }
      j_add(j, HOFF(taken), ld(&h->taken) + k);
      j_add(j, HOFF(head), p);
      j_apply(q, j);
      return (int)k;
    }
    if (state == MP__QR_WRITING) {
      /* A record this process saw stalled before (the same word at the
       * same place) is checked: cheaply the second time, fully after that
       * or after a waited slice. */
      uint64_t key = hd ^ (w * UINT64_C(0x9e3779b97f4a7c15));
      int look = check_dead ? 2 : 0;
      if (!look) {
        if (atomic_load_explicit(&q->stall_w, memory_order_relaxed) != key) {
          atomic_store_explicit(&q->stall_w, key, memory_order_relaxed);
          atomic_store_explicit(&q->stall_n, 0, memory_order_relaxed);
        } else {
          look = atomic_fetch_add_explicit(&q->stall_n, 1,
                                           memory_order_relaxed)
                     ? 2
                     : 1;
        }
      }
      /* A record whose claim is not yet published (the put journal is
       * armed: its producer is inside it, or died there and the next one
       * will finish it) is waited for, never padded: the journal would
       * write it again. */
      if (!look || owner_alive(rec, w, look == 1)
          || atomic_load_explicit(&h->pj.armed, memory_order_acquire)) {
        *wait_w = w;
        *wait_rec = rec;
        return 0;
      }
      /* Its producer died before committing -- or committed just now and
       * then exited: only a compare-and-swap from the very word we judged
       * may turn the record into padding. */
      uint64_t pad = MP__QW_MAKE(MP__QR_PAD, 0, 0, len);
      if (MP__UNLIKELY(mp__q_pad_hook_for_tests != NULL))
        mp__q_pad_hook_for_tests(rec);
      if (!atomic_compare_exchange_strong_explicit(&rec->w, &w, pad,
                                                   memory_order_acq_rel,
                                                   memory_order_acquire))
        continue; /* it changed: look again */
      state = MP__QR_PAD;
    }
    if (state == MP__QR_PAD) {
      /* A skipped record at the head: account for it and move on (also
       * when a consumer died between the CAS above and this journal). */
      j_reset(j);
      j_add(j, HOFF(padded), ld(&h->padded) + 1);
      j_add(j, HOFF(head), hd + reclen);
      j_apply(q, j);
      atomic_fetch_add_explicit(&s->finished, 1, memory_order_release);
      /* room for a bounded queue's producers, and maybe an empty join */
      atomic_fetch_add_explicit(&h->get_seq, 1, memory_order_seq_cst);
      mp__futex_wake((uint32_t *)&h->get_seq, 1);
      wake_joiners(q);
      continue;
    }
    return mp_seterr(MP_EMALFORMED,
                     "queue: record at %llu is in state %u at the head",
                     (unsigned long long)hd, state);
  }
  return mp_seterr(MP_EMALFORMED, "queue: the log does not end");
}

/* Count n records finished in segment `seg` of generation `gen`. */
static void
count_finished(mp_queue *q, uint64_t seg, uint32_t gen, uint64_t n)
{
  struct mp__qseg *s = (struct mp__qseg *)(void *)(q->base + seg);
  /* release: our reads of the payloads come before their reuse.  Counted
   * only in the generation they were taken from. */
  uint64_t v = atomic_load_explicit(&s->finished, memory_order_relaxed);
  while ((uint32_t)(v >> 32) == gen
         && !atomic_compare_exchange_weak_explicit(&s->finished, &v, v + n,
                                                   memory_order_release,
                                                   memory_order_relaxed))
    ;
}

MP__HOT void
mp__q_finish_many(mp_queue *q, const mp__qtake *t, size_t n)
{
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    /* Only we move our record out of READING (the recycling scan finishes
     * only dead readers' records), and the segment is not recycled before
     * we count it: a plain store does. */
    uint64_t w = t[i].w;
    atomic_store_explicit(&t[i].rec->w,
                          MP__QW_MAKE(MP__QR_DONE, MP__QW_FLAGS(w), 0,
                                      MP__QW_LEN(w)),
                          memory_order_release);
    run++;
    if (i + 1 == n || t[i + 1].seg != t[i].seg || t[i + 1].gen != t[i].gen) {
      count_finished(q, t[i].seg, t[i].gen, run);
      run = 0;
    }
  }
}

MP__HOT void
mp__q_finish(mp_queue *q, const mp__qtake *t)
{
  mp__q_finish_many(q, t, 1);
}

/* ---- layout ------------------------------------------------------------------ */

void
mp__q_init_layout(mp_queue *q)
{
  struct mp__qhdr *h = q->h;
  h->magic = MP__Q_MAGIC;
  h->version = MP__Q_VERSION;
  h->joinable = (uint32_t)q->joinable;
  h->maxsize = q->maxsize;
  h->max_message = q->max_message;
  h->memory_cap = q->cap;
  h->segment_size = q->segsize;
  h->reserve = q->reserve;
  uint64_t s0 = MP__Q_PAGE;
  struct mp__qseg *s = (struct mp__qseg *)(void *)(q->base + s0);
  s->size = q->segsize;
  st(&s->tag, MP__QSEG_TAG(MP__QS_LIVE));
  st(&h->tail_seg, s0);
  st(&h->head_seg, s0);
  st(&h->oldest, s0);
  st(&h->tail, s0 + MP__Q_SEGHDR);
  st(&h->head, s0 + MP__Q_SEGHDR);
  st(&h->file_used, s0 + q->segsize);
  st(&h->mem_used, s0 + q->segsize);
}

void
mp__queue_mem_for_tests(mp_queue *q, uint8_t **base, size_t *len)
{
  *base = q->base;
  *len = (size_t)atomic_load(&q->known);
}

void
mp__queue_stats_for_tests(mp_queue *q, size_t *free_segs, uint64_t *mem_used,
                          uint64_t *file_used)
{
  size_t n = 0;
  uint64_t lists[2] = {ld(&q->h->free_std), ld(&q->h->free_big)};
  for (int i = 0; i < 2; i++)
    for (uint64_t s = lists[i], sz; s && n < 1000000; n++) {
      struct mp__qseg *seg = seg_get(q, s, &sz);
      if (!seg)
        break;
      s = ld(&seg->free_next);
    }
  *free_segs = n;
  *mem_used = ld(&q->h->mem_used);
  *file_used = ld(&q->h->file_used);
}
