/* The shared arena (see arena.h for the design). */
#include "sync/arena.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/futex.h"

#define SLAB_SIZE ((size_t)1 << 20)
#define SLAB_MAGIC UINT64_C(0x626c73636f72706d) /* "mprocslb" */
#define HDR_SIZE 64u                            /* slab header */
#define MIN_CLASS_SHIFT 6                       /* 64-byte blocks */
#define NCLASS 11                               /* 64 B .. 64 KiB */
#define DEDICATED 0xffu
#define NBUCKET 256

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
  uint32_t size; /* bytes asked for */
  uint8_t cls;   /* size class, DEDICATED for a slab of its own */
  uint8_t lead;  /* data offset - block start */
  uint16_t pad;
  uint32_t next; /* free-list link: data offset of the next free block */
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
  int owned;    /* this process allocates from it */
  uint32_t bump;
  uint32_t freelist[NCLASS];
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static mp__slab *g_tab[NBUCKET];
static mp__slab *g_owned; /* slabs with owned = 1 */
static mp__slab *g_cur;   /* the slab bump allocation continues in */
static uint64_t g_arena_id;
static uint32_t g_next_index;
static size_t g_nslabs, g_bytes;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void
atfork_prepare(void)
{
  pthread_mutex_lock(&g_mu);
}

static void
atfork_parent(void)
{
  pthread_mutex_unlock(&g_mu);
}

/* The child keeps every mapping (inherited handles stay valid) but becomes a
 * new arena: it never allocates from its parent's slabs. */
static void
atfork_child(void)
{
  for (mp__slab *s = g_owned; s; s = s->onext)
    s->owned = 0;
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
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static inline struct blk *
blk_of(uint8_t *base, uint32_t off)
{
  return (struct blk *)(base + off - sizeof(struct blk));
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
  if (s->owned) {
    pp = &g_owned;
    while (*pp && *pp != s)
      pp = &(*pp)->onext;
    if (*pp)
      *pp = s->onext;
  }
  if (g_cur == s)
    g_cur = NULL;
  g_nslabs--;
  g_bytes -= s->size;
  munmap(s->base, s->size);
  mp__close(s->fd);
  free(s);
}

static uint64_t
arena_id(void)
{
  while (g_arena_id == 0) {
    if (getrandom(&g_arena_id, sizeof g_arena_id, 0) != sizeof g_arena_id)
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
  if (fd < 0) {
    free(s);
    *err = fd;
    return NULL;
  }
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    *err = mp__errno();
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

/* Move blocks other processes freed onto the local free lists. */
static void
drain_remote(mp__slab *s)
{
  struct slab_hdr *h = (struct slab_hdr *)s->base;
  if (atomic_load_explicit(&h->remote_free, memory_order_relaxed) == 0)
    return;
  uint32_t off = atomic_exchange_explicit(&h->remote_free, 0,
                                          memory_order_acquire);
  while (off) {
    struct blk *b = blk_of(s->base, off);
    uint32_t nx = b->next;
    uint32_t start = off - b->lead;
    unsigned cls = b->cls;
    *(uint32_t *)(s->base + start) = s->freelist[cls];
    s->freelist[cls] = start;
    off = nx;
  }
}

void *
mp__arena_alloc(size_t size, size_t align, mp__shref *ref, int *err)
{
  if (align == 0)
    align = 1;
  if (align > 64 || (align & (align - 1)) || size > ((size_t)1 << 40)) {
    *err = MP_EINVAL;
    return NULL;
  }
  pthread_once(&g_once, init_once);
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
        o->freelist[cls] = *(uint32_t *)(o->base + start);
        break;
      }
    }
    if (!s) {
      if (!g_cur || g_cur->bump + csize > g_cur->size) {
        g_cur = new_slab(SLAB_SIZE, 1, err);
        if (!g_cur)
          goto fail;
      }
      s = g_cur;
      start = s->bump;
      s->bump += (uint32_t)csize;
    }
    /* a recycled block: clear it (a fresh one is zero already) */
    memset(s->base + start, 0, csize);
  }
  uint32_t off = start + (uint32_t)lead;
  struct blk *b = blk_of(s->base, off);
  b->size = (uint32_t)(size > UINT32_MAX ? UINT32_MAX : size);
  b->cls = (uint8_t)cls;
  b->lead = (uint8_t)lead;
  b->next = 0;
  atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
  s->lrefs++;
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
  if (last && b->cls != DEDICATED) {
    if (s->owned) {
      uint32_t start = ref.off - b->lead;
      unsigned cls = b->cls;
      *(uint32_t *)(s->base + start) = s->freelist[cls];
      s->freelist[cls] = start;
    } else {
      struct slab_hdr *h = (struct slab_hdr *)s->base;
      uint32_t head = atomic_load_explicit(&h->remote_free,
                                           memory_order_relaxed);
      do
        b->next = head;
      while (!atomic_compare_exchange_weak_explicit(
          &h->remote_free, &head, ref.off, memory_order_release,
          memory_order_relaxed));
    }
  }
  if (--s->lrefs == 0)
    release_slab(s);
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

int
mp__arena_import(const mp__arena_loc *loc, int fd, mp__shref *ref,
                 void **ptr)
{
  pthread_once(&g_once, init_once);
  if (loc->slab_size < HDR_SIZE + 64 || loc->slab_size > ((uint64_t)1 << 42)
      || loc->off < HDR_SIZE + 16 || loc->off % 16
      || (uint64_t)loc->off + 1 > loc->slab_size) {
    mp__close(fd);
    return mp_seterr(MP_EMALFORMED, "shared object location out of range");
  }
  int rc = 0;
  pthread_mutex_lock(&g_mu);
  mp__slab *s = find_slab(loc->arena_id, loc->slab_index);
  if (s) {
    mp__close(fd); /* mapped already: the copy is not needed */
    if (s->size != loc->slab_size) {
      rc = mp_seterr(MP_EMALFORMED, "slab size mismatch");
      goto out;
    }
  } else {
    if (fd < 0) {
      rc = mp_seterr(MP_EBADF, "shared object arrived without its fd");
      goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < loc->slab_size) {
      mp__close(fd);
      rc = mp_seterr(MP_EMALFORMED, "slab fd smaller than described");
      goto out;
    }
    void *p = mmap(NULL, loc->slab_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);
    if (p == MAP_FAILED) {
      rc = mp__errno();
      mp__close(fd);
      goto out;
    }
    struct slab_hdr *h = p;
    if (h->magic != SLAB_MAGIC || h->arena_id != loc->arena_id
        || h->index != loc->slab_index || h->size != loc->slab_size) {
      munmap(p, loc->slab_size);
      mp__close(fd);
      rc = mp_seterr(MP_EMALFORMED, "fd is not the described arena slab");
      goto out;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
      munmap(p, loc->slab_size);
      mp__close(fd);
      rc = MP_ENOMEM;
      goto out;
    }
    s->arena_id = loc->arena_id;
    s->index = loc->slab_index;
    s->size = loc->slab_size;
    s->base = p;
    s->fd = fd;
    insert_slab(s);
  }
  struct blk *b = blk_of(s->base, loc->off);
  uint32_t r = atomic_load_explicit(&b->refs, memory_order_relaxed);
  do {
    if (r == 0) { /* freed meanwhile */
      rc = mp_seterr(MP_ESTATE, "shared object was freed by its owner");
      if (s->lrefs == 0)
        release_slab(s);
      goto out;
    }
  } while (!atomic_compare_exchange_weak_explicit(
      &b->refs, &r, r + 1, memory_order_relaxed, memory_order_relaxed));
  s->lrefs++;
  ref->slab = s;
  ref->off = loc->off;
  ref->pid = mp__getpid();
  *ptr = s->base + loc->off;
out:
  pthread_mutex_unlock(&g_mu);
  return rc;
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
