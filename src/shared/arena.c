/* SPDX-License-Identifier: MIT */
/* The shared arena (see shared_internal.h for the design). */
#include "shared/shared_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"

#define SLAB_SIZE ((size_t)1 << 20)
#define SLAB_MAGIC UINT64_C(0x626c73636f72706d) /* "mprocslb" */
#define HDR_SIZE 64u                            /* slab header */
#define UNIT 64u /* blocks start on multiples of UNIT */
#define MIN_CLASS_SHIFT 6                       /* 64-byte blocks */
#define NCLASS 11                               /* 64 B .. 64 KiB */
#define DEDICATED 0xffu
#define NBUCKET 256
/* the largest slab: a block of the largest size alloc accepts (1 TiB) */
#define MAX_SLAB (((uint64_t)1 << 40) + 2 * 4096)
/* bounded retries of a CAS on a word other processes may hammer */
#define CAS_TRIES 100000

/* local state of a block start in a slab this process allocates from */
#define M_USED 0x80u /* allocated; the low 4 bits are its size class */
#define M_FREE 0x40u /* on the local free list */

/* At offset 0 of every slab, shared by every process that maps it. */
struct slab_hdr {
  uint64_t magic;
  uint64_t arena_id;
  uint64_t size;
  uint32_t index;
  _Atomic uint32_t remote_free; /* data offset of a freed block, 0: none */
};

/* 16 bytes right before every block's data. */
struct blk {
  _Atomic uint32_t refs;
  uint32_t size; /* bytes asked for (UINT32_MAX: that or more) */
  uint8_t cls;   /* size class, DEDICATED for a slab of its own */
  uint8_t lead;  /* data offset - block start: 16, 32 or 64 */
  uint16_t tag;  /* the object's kind (alloc's tag) */
  uint32_t next; /* remote-free link: data offset of the next freed block */
};

struct mp__slab {
  struct mp__slab *next;  /* hash chain */
  struct mp__slab *onext; /* list of slabs this process allocates from */
  uint64_t arena_id;
  uint32_t index;
  size_t size;
  uint8_t *base;
  int fd;
  size_t lrefs; /* local handles into this slab */
  int owned;    /* made to allocate from (see owns) */
  uint32_t bump;
  uint32_t freelist[NCLASS]; /* block starts, 0 ends; linked by link[] */
  /* Slabs made to allocate from: per UNIT, M_USED or M_FREE | class at a
   * block start (0 elsewhere), and the free-list links.  Local, so that
   * nothing another process writes into the slab can steer the allocator. */
  uint8_t *meta;
  uint32_t *link;
  size_t units; /* entries meta and link hold: they grow with bump (a new
                 * slab's whole tables would be 80 KiB cleared, and after a
                 * fork every one of those pages a copy-on-write fault) */
};

static pthread_mutex_t g_mu MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static mp__slab *g_tab[NBUCKET];
static mp__slab *g_owned MP__FORK_DATA; /* slabs with owned = 1 */
static mp__slab *g_cur MP__FORK_DATA; /* the slab bump allocation goes on in */
static uint64_t g_arena_id MP__FORK_DATA;
static uint32_t g_next_index MP__FORK_DATA;
/* An owned slab no handle uses any more, kept for the next allocations
 * instead of unmapped: a pool's objects come and go with it, and making a
 * slab (memfd, size, seals, map) and releasing it (unmap: a TLB flush on
 * every CPU the process ran on; close) was a tenth of a pool's start and
 * end.  One at most; mp__arena_trim releases it. */
static mp__slab *g_kept MP__FORK_DATA;
static size_t g_nslabs, g_bytes;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static mp__fork_hook *g_fork_hook; /* NULL: could not register (ENOMEM) */

static void
atfork_prepare(void *arg)
{
  pthread_mutex_lock(&g_mu);
}

static void
atfork_parent(void *arg)
{
  pthread_mutex_unlock(&g_mu);
}

/* Does this process allocate from s?  Only from the slabs it made to, in
 * its own arena: a fork child's is new (its id is made at its first
 * allocation), so it never allocates from its parent's -- without writing
 * to their records, each a copy-on-write fault in every fork child. */
static inline int
owns(const mp__slab *s)
{
  return s->owned && g_arena_id != 0 && s->arena_id == g_arena_id;
}

static void release_slab(mp__slab *s);

/* The child keeps every mapping (inherited handles stay valid) but becomes a
 * new arena: it never allocates from its parent's slabs (owns). */
static void
atfork_child(void *arg)
{
  /* the kept slab is not the child's to allocate from, and nothing of the
   * child refers to it: its mapping and fd go (only in a child forked
   * while one was kept: a pool's workers find theirs in use) */
  if (g_kept) {
    mp__slab *k = g_kept;
    g_kept = NULL;
    release_slab(k);
  }
  g_owned = NULL;
  g_cur = NULL;
  g_arena_id = 0;
  g_next_index = 0;
  /* The forking thread holds g_mu (prepare) and is the child's only
   * thread: unlock it, rather than re-init, so lock tracking (TSan's too)
   * sees it released. */
  pthread_mutex_unlock(&g_mu);
}

static void
init_once(void)
{
  g_fork_hook = mp__fork_hook_add(atfork_prepare, atfork_parent, atfork_child,
                                  NULL);
}

/* The arena is usable only with its fork hook in place: a fork child must
 * never allocate from its parent's slabs. */
static int
init(void)
{
  pthread_once(&g_once, init_once);
  return g_fork_hook ? 0
                     : mp_seterr(MP_ENOMEM, "cannot register the arena's "
                                            "fork hook");
}

static inline struct blk *
blk_of(uint8_t *base, uint32_t off)
{
  return (struct blk *)(base + off - sizeof(struct blk));
}

/* The lead of a block whose data is at `off` (blocks start on UNIT
 * boundaries and leads are 16, 32 or 64), 0 if no block can have it. */
static inline unsigned
lead_of(uint32_t off)
{
  switch (off % UNIT) {
  case 0: return 64;
  case 16: return 16;
  case 32: return 32;
  default: return 0;
  }
}

static unsigned
bucket(uint64_t id, uint32_t index)
{
  uint64_t h = (id ^ index) * UINT64_C(0x9e3779b97f4a7c15);
  return (unsigned)(h >> 56) % NBUCKET;
}

static mp__slab *
find_slab(uint64_t id, uint32_t index)
{
  for (mp__slab *s = g_tab[bucket(id, index)]; s; s = s->next)
    if (s->arena_id == id && s->index == index)
      return s;
  return NULL;
}

static void
insert_slab(mp__slab *s)
{
  unsigned b = bucket(s->arena_id, s->index);
  s->next = g_tab[b];
  g_tab[b] = s;
  g_nslabs++;
  g_bytes += s->size;
}

/* Forget a slab no local handle uses any more (g_mu held). */
static void
release_slab(mp__slab *s)
{
  mp__slab **pp = &g_tab[bucket(s->arena_id, s->index)];
  while (*pp && *pp != s)
    pp = &(*pp)->next;
  if (*pp)
    *pp = s->next;
  if (owns(s)) {
    pp = &g_owned;
    while (*pp && *pp != s)
      pp = &(*pp)->onext;
    if (*pp)
      *pp = s->onext;
  }
  if (g_cur == s)
    g_cur = NULL;
  if (g_kept == s)
    g_kept = NULL;
  g_nslabs--;
  g_bytes -= s->size;
  munmap(s->base, s->size);
  mp__close(s->fd);
  free(s->meta);
  free(s->link);
  free(s);
}

/* The last local handle of s is gone (g_mu held): keep it for reuse if it
 * is an owned slab of the common size and none is kept, else release it. */
static void
slab_unused(mp__slab *s)
{
  if (!g_kept && owns(s) && s->size == SLAB_SIZE)
    g_kept = s;
  else
    release_slab(s);
}

/* A local handle into s is taken (g_mu held). */
static inline void
slab_used(mp__slab *s)
{
  if (s->lrefs++ == 0 && g_kept == s)
    g_kept = NULL;
}

static uint64_t
arena_id(void)
{
  while (g_arena_id == 0) {
    if (mp__plat_random(&g_arena_id, sizeof g_arena_id))
      g_arena_id = (uint64_t)mp__now_ns() ^ ((uint64_t)mp__getpid() << 32);
  }
  return g_arena_id;
}

/* A new slab of `size` bytes (g_mu held). */
static mp__slab *
new_slab(size_t size, int owned, int *err)
{
  mp__slab *s = calloc(1, sizeof *s);
  if (!s) {
    *err = MP_ENOMEM;
    return NULL;
  }
  int fd = mp__memfd_new("mproc-arena", size);
  void *p = fd < 0 ? MAP_FAILED
                   : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
                          fd, 0);
  if (p == MAP_FAILED) {
    *err = fd < 0 ? fd : mp__errno();
    if (fd >= 0)
      mp__close(fd);
    free(s);
    return NULL;
  }
  s->arena_id = arena_id();
  s->index = g_next_index++;
  s->size = size;
  s->base = p;
  s->fd = fd;
  s->owned = owned;
  s->bump = HDR_SIZE;
  struct slab_hdr *h = p;
  h->magic = SLAB_MAGIC;
  h->arena_id = s->arena_id;
  h->size = size;
  h->index = s->index;
  insert_slab(s);
  if (owned) {
    s->onext = g_owned;
    g_owned = s;
  }
  return s;
}

/* Make owned slab s's meta and link cover its first `end` bytes (g_mu
 * held); 0 or MP_ENOMEM. */
static int
cover_units(mp__slab *s, size_t end)
{
  size_t need = (end + UNIT - 1) / UNIT;
  if (need <= s->units)
    return 0;
  size_t n = s->units ? s->units : 256;
  while (n < need)
    n *= 2;
  if (n > s->size / UNIT)
    n = s->size / UNIT;
  uint8_t *meta = realloc(s->meta, n);
  if (meta)
    s->meta = meta;
  uint32_t *link = meta ? realloc(s->link, n * sizeof *link) : NULL;
  if (!link)
    return MP_ENOMEM;
  s->link = link;
  memset(meta + s->units, 0, n - s->units);
  memset(link + s->units, 0, (n - s->units) * sizeof *link);
  s->units = n;
  return 0;
}

/* Put the block whose data is at `off` of owned slab s on its free list
 * (g_mu held).  A block that is not allocated (a forged or repeated free)
 * is left alone. */
static void
free_local(mp__slab *s, uint32_t off)
{
  unsigned lead = lead_of(off);
  if (!lead || off < HDR_SIZE + lead || off - lead >= s->bump)
    return;
  uint32_t u = (off - lead) / UNIT;
  uint8_t m = s->meta[u];
  if (!(m & M_USED))
    return;
  unsigned cls = m & 0x0fu;
  s->meta[u] = (uint8_t)(M_FREE | cls);
  s->link[u] = s->freelist[cls];
  s->freelist[cls] = off - lead;
}

/* Move blocks other processes freed onto the local free lists.  The chain
 * lives in shared memory: each entry must be a block of ours that is
 * allocated and unreferenced, and the walk is bounded; the first entry that
 * is not ends it (what follows is leaked rather than trusted). */
static void
drain_remote(mp__slab *s)
{
  struct slab_hdr *h = (struct slab_hdr *)s->base;
  if (atomic_load_explicit(&h->remote_free, memory_order_relaxed) == 0)
    return;
  uint32_t off = atomic_exchange_explicit(&h->remote_free, 0,
                                          memory_order_acquire);
  for (size_t left = s->size / UNIT; off && left; left--) {
    unsigned lead = lead_of(off);
    if (!lead || off < HDR_SIZE + lead || off - lead >= s->bump
        || !(s->meta[(off - lead) / UNIT] & M_USED))
      break;
    struct blk *b = blk_of(s->base, off);
    if (atomic_load_explicit(&b->refs, memory_order_relaxed) != 0)
      break;
    uint32_t nx = MP__SHARED_LOAD(&b->next);
    free_local(s, off);
    off = nx;
  }
}

void *
mp__arena_alloc(size_t size, size_t align, unsigned tag, mp__shref *ref,
                int *err)
{
  if (align == 0)
    align = 1;
  if (align > 64 || (align & (align - 1)) || size > ((size_t)1 << 40)
      || tag == 0 || tag > UINT16_MAX) {
    *err = MP_EINVAL;
    return NULL;
  }
  if ((*err = init()) != 0)
    return NULL;
  size_t lead = align <= 16 ? 16 : align;
  size_t need = size + lead;
  unsigned cls = 0;
  while (cls < NCLASS && ((size_t)1 << (cls + MIN_CLASS_SHIFT)) < need)
    cls++;

  pthread_mutex_lock(&g_mu);
  mp__slab *s = NULL;
  uint32_t start = 0;
  if (cls == NCLASS) { /* a slab of its own */
    size_t total = (HDR_SIZE + need + 4095) & ~(size_t)4095;
    s = new_slab(total, 0, err);
    if (!s)
      goto fail;
    start = HDR_SIZE;
    cls = DEDICATED;
  } else {
    size_t csize = (size_t)1 << (cls + MIN_CLASS_SHIFT);
    for (mp__slab *o = g_owned; o; o = o->onext) {
      drain_remote(o);
      if (o->freelist[cls]) {
        s = o;
        start = o->freelist[cls];
        o->freelist[cls] = o->link[start / UNIT];
        break;
      }
    }
    if (!s) {
      if (!g_cur || g_cur->bump + csize > g_cur->size) {
        g_cur = new_slab(SLAB_SIZE, 1, err);
        if (!g_cur)
          goto fail;
      }
      if ((*err = cover_units(g_cur, g_cur->bump + csize)) != 0)
        goto fail;
      s = g_cur;
      start = s->bump;
      s->bump += (uint32_t)csize;
    } else {
      /* a recycled block: clear it (a fresh one is zero already, and
       * clearing it would touch every page of it) */
      memset(s->base + start, 0, csize);
    }
    s->meta[start / UNIT] = (uint8_t)(M_USED | cls);
  }
  uint32_t off = start + (uint32_t)lead;
  struct blk *b = blk_of(s->base, off);
  b->size = (uint32_t)(size > UINT32_MAX ? UINT32_MAX : size);
  b->cls = (uint8_t)cls;
  b->lead = (uint8_t)lead;
  b->tag = (uint16_t)tag;
  b->next = 0;
  atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
  slab_used(s);
  pthread_mutex_unlock(&g_mu);
  ref->slab = s;
  ref->off = off;
  ref->pid = mp__getpid();
  return s->base + off;
fail:
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

void
mp__arena_unref(mp__shref ref)
{
  mp__slab *s = ref.slab;
  if (!s)
    return;
  struct blk *b = blk_of(s->base, ref.off);
  /* a handle inherited across fork holds no shared reference */
  int last = ref.pid == mp__getpid()
             && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel)
                    == 1;
  pthread_mutex_lock(&g_mu);
  if (last && owns(s)) {
    free_local(s, ref.off);
  } else if (last && b->cls != DEDICATED) {
    /* the owner checks what it drains; if others keep the head moving
     * this gives up (the block leaks) rather than spin */
    struct slab_hdr *h = (struct slab_hdr *)s->base;
    uint32_t head = atomic_load_explicit(&h->remote_free,
                                         memory_order_relaxed);
    for (int i = 0; i < CAS_TRIES; i++) {
      b->next = head;
      if (atomic_compare_exchange_weak_explicit(
              &h->remote_free, &head, ref.off, memory_order_release,
              memory_order_relaxed))
        break;
    }
  }
  if (--s->lrefs == 0)
    slab_unused(s);
  pthread_mutex_unlock(&g_mu);
}

void *
mp__arena_ptr(mp__shref ref)
{
  return ref.slab->base + ref.off;
}

void
mp__arena_export(mp__shref ref, mp__arena_loc *loc, int *fd)
{
  loc->arena_id = ref.slab->arena_id;
  loc->slab_index = ref.slab->index;
  loc->slab_size = ref.slab->size;
  loc->off = ref.off;
  *fd = ref.slab->fd;
}

/* Where the block whose data is at `off` lies in slab s (g_mu held): 0 and
 * in *avail the bytes of data it holds, or MP_EMALFORMED.  A slab this
 * process allocates from is judged by its local bookkeeping, any other by
 * its shared headers, read once and checked against the slab's real size. */
static int
check_block(mp__slab *s, uint32_t off, unsigned tag, size_t *avail)
{
  unsigned lead = lead_of(off);
  if (!lead || off < HDR_SIZE + lead || off >= s->size)
    return mp_seterr(MP_EMALFORMED, "no shared object can be at offset %u",
                     (unsigned)off);
  uint32_t start = off - lead;
  /* each field read once (refs, which threads here update, is not read) */
  struct blk *bp = blk_of(s->base, off), b;
  b.size = MP__SHARED_LOAD(&bp->size);
  b.cls = MP__SHARED_LOAD(&bp->cls);
  b.lead = MP__SHARED_LOAD(&bp->lead);
  b.tag = MP__SHARED_LOAD(&bp->tag);
  uint64_t extent;
  if (owns(s)) {
    uint8_t m = start < s->bump ? s->meta[start / UNIT] : 0;
    if (m & M_FREE)
      return mp_seterr(MP_ESTATE, "shared object was freed by its owner");
    if (!(m & M_USED))
      return mp_seterr(MP_EMALFORMED, "no shared object at offset %u",
                       (unsigned)off);
    extent = (uint64_t)1 << ((m & 0x0fu) + MIN_CLASS_SHIFT);
  } else if (b.cls == DEDICATED) {
    if (start != HDR_SIZE)
      return mp_seterr(MP_EMALFORMED, "bad shared block header");
    extent = s->size - start;
  } else {
    if (b.cls >= NCLASS)
      return mp_seterr(MP_EMALFORMED, "bad shared block header");
    extent = (uint64_t)1 << (b.cls + MIN_CLASS_SHIFT);
    if (extent > s->size - start)
      return mp_seterr(MP_EMALFORMED, "shared block runs past its slab");
  }
  if (b.lead != lead || b.size > extent - lead)
    return mp_seterr(MP_EMALFORMED, "bad shared block header");
  if (b.tag != tag)
    return mp_seterr(MP_EMALFORMED, "the shared block holds another kind "
                                    "of object");
  *avail = b.size == UINT32_MAX ? (size_t)(extent - lead) : b.size;
  return 0;
}

/* Map the slab `loc` describes from `fd` (consumed; g_mu held). */
static int
map_slab(const mp__arena_loc *loc, int fd, mp__slab **out)
{
  uint64_t real;
  if (!mp__memfd_size_fixed(fd, &real) || real != loc->slab_size) {
    mp__close(fd);
    return mp_seterr(MP_EMALFORMED, "slab fd is not a sealed memfd of the "
                                    "described size");
  }
  void *p = mmap(NULL, loc->slab_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
  if (p == MAP_FAILED) {
    int rc = mp__errno();
    mp__close(fd);
    return mp_seterr(rc == MP_ENOMEM ? MP_ENOMEM : MP_EMALFORMED,
                     "cannot map the slab (%s)", mp_strerror(rc));
  }
  struct slab_hdr *h = p;
  mp__slab *s = NULL;
  int rc = 0;
  if (MP__SHARED_LOAD(&h->magic) != SLAB_MAGIC
      || MP__SHARED_LOAD(&h->arena_id) != loc->arena_id
      || MP__SHARED_LOAD(&h->index) != loc->slab_index
      || MP__SHARED_LOAD(&h->size) != loc->slab_size)
    rc = mp_seterr(MP_EMALFORMED, "fd is not the described arena slab");
  else if (!(s = calloc(1, sizeof *s)))
    rc = MP_ENOMEM;
  if (rc) {
    munmap(p, loc->slab_size);
    mp__close(fd);
    return rc;
  }
  s->arena_id = loc->arena_id;
  s->index = loc->slab_index;
  s->size = loc->slab_size;
  s->base = p;
  s->fd = fd;
  insert_slab(s);
  *out = s;
  return 0;
}

int
mp__arena_import(const mp__arena_loc *loc, int fd, unsigned tag,
                 mp__shref *ref, void **ptr, size_t *size)
{
  int rc = init();
  if (rc) {
    mp__close(fd);
    return rc;
  }
  if (loc->slab_size < 4096 || loc->slab_size > MAX_SLAB
      || loc->slab_size % 4096) {
    mp__close(fd);
    return mp_seterr(MP_EMALFORMED, "bad slab size %llu",
                     (unsigned long long)loc->slab_size);
  }
  pthread_mutex_lock(&g_mu);
  mp__slab *s = find_slab(loc->arena_id, loc->slab_index);
  if (s) {
    mp__close(fd); /* mapped already: the copy is not needed */
    if (s->size != loc->slab_size) {
      rc = mp_seterr(MP_EMALFORMED, "slab size mismatch");
      goto out;
    }
  } else if (fd < 0) {
    rc = mp_seterr(MP_EBADF, "shared object arrived without its fd");
    goto out;
  } else if ((rc = map_slab(loc, fd, &s)) != 0) {
    goto out;
  }
  if ((rc = check_block(s, loc->off, tag, size)) != 0)
    goto drop;
  struct blk *b = blk_of(s->base, loc->off);
  uint32_t r = atomic_load_explicit(&b->refs, memory_order_relaxed);
  for (int i = 0;; i++) {
    if (r == 0) { /* freed meanwhile */
      rc = mp_seterr(MP_ESTATE, "shared object was freed by its owner");
      goto drop;
    }
    if (r == UINT32_MAX || i == CAS_TRIES) {
      rc = mp_seterr(MP_EMALFORMED, "shared reference count is unusable");
      goto drop;
    }
    if (atomic_compare_exchange_weak_explicit(&b->refs, &r, r + 1,
                                              memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  slab_used(s);
  ref->slab = s;
  ref->off = loc->off;
  ref->pid = mp__getpid();
  *ptr = s->base + loc->off;
  goto out;
drop:
  if (s->lrefs == 0 && s != g_kept)
    release_slab(s);
out:
  pthread_mutex_unlock(&g_mu);
  return rc;
}

void
mp__arena_trim(void)
{
  pthread_mutex_lock(&g_mu);
  if (g_kept)
    release_slab(g_kept);
  pthread_mutex_unlock(&g_mu);
}

void
mp__arena_stats(size_t *slabs, size_t *bytes)
{
  pthread_mutex_lock(&g_mu);
  if (slabs)
    *slabs = g_nslabs;
  if (bytes)
    *bytes = g_bytes;
  pthread_mutex_unlock(&g_mu);
}
