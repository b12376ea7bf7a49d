/* SPDX-License-Identifier: MIT */
/* Allocation of small values.
 *
 * Decoding a pickle makes one object per int, float or short str, and
 * releasing the result frees them all again; malloc/free of millions of
 * tiny blocks dominated the codec's profile.  Objects of at most 16, 32 or
 * 64 bytes therefore come from per-thread free lists, refilled from 64 KiB
 * slabs (or from blocks that exited threads gave back).  Slab memory is
 * kept for reuse, never returned to the system, and capped per size class
 * (POOL_CAP); past the cap, objects come from malloc.  An object records
 * where it came from in its header (MP__F_POOLED), so it can be freed by
 * any thread. */
#include <pthread.h>
#include <stdlib.h>

#include "obj/obj_internal.h"
#include "platform/platform.h"

/* Under AddressSanitizer every object is a malloc of its own, so that a
 * use after release is caught instead of hidden by the pool. */
#if defined(__SANITIZE_ADDRESS__)
#define NO_POOL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_POOL 1
#endif
#endif
#ifndef NO_POOL
#define NO_POOL 0
#endif

#define SLAB 65536
#define POOL_CAP ((size_t)128 << 20) /* bytes of slabs per size class */

/* A free block: two words, so that an int or a float (16 bytes) takes a
 * block of its size -- half the memory a million of them walk through.
 * Blocks move between threads in batches: a batch is a list through
 * `next`; the first block's `aux` links the next batch on the shared
 * stack, the second block's holds the batch's length (a batch of one has
 * no second block). */
typedef struct blk {
  struct blk *next;
  uintptr_t aux;
} blk;

#define NCLASS 3

static void
batch_seal(blk *head, size_t n, blk *next_batch)
{
  head->aux = (uintptr_t)next_batch;
  if (head->next)
    head->next->aux = n;
}

static size_t
batch_count(const blk *head)
{
  return head->next ? (size_t)head->next->aux : 1;
}

typedef struct pool {
  size_t size;
  size_t batch;      /* blocks per batch: a slab's worth */
  size_t slab_bytes; /* under lock */
  blk *spare;        /* a stack of batches given back (under lock) */
  void *slabs;       /* slab list, so that the memory stays reachable */
} pool;

static pool pools[NCLASS] = {{16, SLAB / 16, 0, NULL, NULL},
                             {32, SLAB / 32, 0, NULL, NULL},
                             {64, SLAB / 64, 0, NULL, NULL}};
static pthread_mutex_t lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
/* Per-thread free lists.  The build uses TLS descriptors (CMakeLists.txt),
 * so this costs no __tls_get_addr call per allocation when the library is
 * loaded at startup, and the library can still be dlopen'ed late (an
 * initial-exec model would make it refuse to load there).
 *
 * A thread keeps at most two batches' worth of free blocks; what it frees
 * beyond that collects in `spill` and goes to the shared stack a batch at a
 * time.  Without that, blocks one thread allocates and another frees (a
 * pool's result handler decoding, the caller releasing the results) pile
 * up in the freeing thread while the allocating one carves new slabs, until
 * the cap sends every allocation to malloc. */
static _Thread_local struct {
  blk *free[NCLASS], *spill[NCLASS];
  size_t nfree[NCLASS], nspill[NCLASS];
  int registered;
} tl; /* one variable: one TLS address computation per call, not two */

/* This thread's lists, looked up once by the caller: the compiler would
 * otherwise recompute the address (a __tls_get_addr call in a shared
 * library) at each use rather than keep it in a register; the empty asm
 * makes the pointer opaque, so it is kept. */
static inline __typeof__(tl) *
tl_lists(void)
{
  __typeof__(tl) *me = &tl;
  __asm__("" : "+r"(me));
  return me;
}

static void
give_batch(int c, blk *head, size_t n)
{
  pthread_mutex_lock(&lock);
  batch_seal(head, n, pools[c].spare);
  pools[c].spare = head;
  pthread_mutex_unlock(&lock);
}

/* a thread's free blocks go to the shared stack when it exits */
static void
thread_exit(void *arg)
{
  (void)arg;
  for (int c = 0; c < NCLASS; c++) {
    if (tl.free[c])
      give_batch(c, tl.free[c], tl.nfree[c]);
    if (tl.spill[c])
      give_batch(c, tl.spill[c], tl.nspill[c]);
    tl.free[c] = tl.spill[c] = NULL;
    tl.nfree[c] = tl.nspill[c] = 0;
  }
}

static void
init(void)
{
  pthread_key_create(&key, thread_exit);
  mp__fork_guard_mutex(&lock);
}

static void
register_thread(void)
{
  if (!tl.registered) {
    pthread_once(&once, init);
    pthread_setspecific(key, (void *)1);
    tl.registered = 1;
  }
}

/* Refill this thread's list of class c; 0 or -1 (pool full). */
static int
refill(int c)
{
  register_thread();
  if (tl.spill[c]) {
    tl.free[c] = tl.spill[c];
    tl.nfree[c] = tl.nspill[c];
    tl.spill[c] = NULL;
    tl.nspill[c] = 0;
    return 0;
  }
  pool *p = &pools[c];
  pthread_mutex_lock(&lock);
  if (p->spare) { /* a batch given back */
    blk *head = p->spare;
    p->spare = (blk *)head->aux;
    pthread_mutex_unlock(&lock);
    tl.free[c] = head;
    tl.nfree[c] = batch_count(head);
    return 0;
  }
  if (p->slab_bytes + SLAB > POOL_CAP) {
    pthread_mutex_unlock(&lock);
    return -1;
  }
  char *s = malloc(SLAB);
  if (!s) {
    pthread_mutex_unlock(&lock);
    return -1;
  }
  p->slab_bytes += SLAB;
  /* the first block links the slab list */
  *(void **)s = p->slabs;
  p->slabs = s;
  pthread_mutex_unlock(&lock);
  blk *head = NULL;
  size_t n = 0;
  for (size_t off = SLAB - p->size; off >= p->size; off -= p->size, n++) {
    blk *b = (blk *)(s + off);
    b->next = head;
    head = b;
  }
  tl.free[c] = head;
  tl.nfree[c] = n;
  return 0;
}

/* The class of a block of `size` bytes, or -1 (malloc or the big blocks). */
static inline int
size_class(size_t size)
{
  return NO_POOL ? -1 : size <= 16 ? 0 : size <= 32 ? 1 : size <= 64 ? 2 : -1;
}

/* The header flags saying where a block came from, and back. */
static inline uint8_t
class_flags(int c)
{
  return MP__F_POOLED | (c == 0 ? MP__F_POOL16 : c == 2 ? MP__F_POOL64 : 0);
}

static inline int
flags_class(uint8_t flags)
{
  return (flags & MP__F_POOL16) ? 0 : (flags & MP__F_POOL64) ? 2 : 1;
}

static inline mp_obj *
init_header(mp_obj *o, mp_type t, uint8_t flags)
{
  o->rc = 1;
  o->type = (uint8_t)t;
  o->flags = flags;
  o->depth = 0;
  return o;
}

/* A new object from this thread's list of class c; NULL when the pool is
 * full (the caller falls back to malloc). */
static inline mp_obj *
pop_block(int c, mp_type t)
{
  __typeof__(tl) *me = tl_lists();
  if (!me->free[c] && refill(c) != 0)
    return NULL;
  blk *b = me->free[c];
  me->free[c] = b->next;
  me->nfree[c]--;
  return init_header((mp_obj *)b, t, class_flags(c));
}

void *
mp__obj_alloc(size_t size, mp_type t)
{
  int c = size_class(size);
  mp_obj *o;
  if (c >= 0 && (o = pop_block(c, t)) != NULL)
    return o;
  uint8_t flags = 0;
  if (size >= MP__BIG_MIN) { /* a big value's memory is kept */
    o = mp__big_alloc(size, 0);
    flags = MP__F_BIGMEM;
  } else {
    o = malloc(size);
  }
  if (!o) {
    mp_seterr(MP_ENOMEM, "out of memory");
    return NULL;
  }
  return init_header(o, t, flags);
}

size_t
mp__obj_alloc_many(size_t size, mp_type t, size_t n, mp_obj **out)
{
  size_t k = 0;
  int c = size_class(size);
  if (c >= 0) { /* until the pool is full: malloc below */
    /* One look-up of the thread's lists for the whole run: a thread-local
     * costs a __tls_get_addr call per access in a shared library, and
     * two per object were a fifth of a pool's result handler decoding a
     * map's ints. */
    __typeof__(tl) *me = tl_lists();
    uint8_t flags = class_flags(c);
    while (k < n) {
      if (!me->free[c] && refill(c) != 0)
        break;
      blk *b = me->free[c];
      size_t j = 0;
      for (; k < n && b; j++) {
        blk *next = b->next; /* the header overwrites the link */
        out[k++] = init_header((mp_obj *)b, t, flags);
        b = next;
      }
      me->free[c] = b;
      me->nfree[c] = b && me->nfree[c] > j ? me->nfree[c] - j : 0;
    }
  }
  for (; k < n; k++)
    if (!(out[k] = mp__obj_alloc(size, t)))
      break;
  return k;
}

/* A pooled object back onto the lists `me` (this thread's). */
static inline void
dealloc_pooled(__typeof__(tl) *me, mp_obj *o)
{
  int c = flags_class(o->flags);
  blk *b = (blk *)o;
  if (me->nfree[c] < 2 * pools[c].batch) {
    b->next = me->free[c];
    me->free[c] = b;
    me->nfree[c]++;
  } else {
    b->next = me->spill[c];
    me->spill[c] = b;
    if (++me->nspill[c] == pools[c].batch) {
      give_batch(c, me->spill[c], me->nspill[c]);
      me->spill[c] = NULL;
      me->nspill[c] = 0;
    }
  }
}

static void
dealloc_unpooled(mp_obj *o)
{
  if (o->flags & MP__F_BIGMEM)
    mp__big_free(o);
  else
    free(o);
}

void
mp__obj_dealloc(mp_obj *o)
{
  if (!(o->flags & MP__F_POOLED)) {
    dealloc_unpooled(o);
    return;
  }
  __typeof__(tl) *me = tl_lists(); /* one look-up, not three */
  dealloc_pooled(me, o);
  /* a thread that frees but never allocated: still give back at exit */
  if (!me->registered)
    register_thread();
}

void
mp__obj_dealloc_many(mp_obj *const *objs, size_t n)
{
  __typeof__(tl) *me = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!(objs[i]->flags & MP__F_POOLED)) {
      dealloc_unpooled(objs[i]);
      continue;
    }
    if (!me)
      me = tl_lists();
    dealloc_pooled(me, objs[i]);
  }
  if (me && !me->registered)
    register_thread();
}

size_t
mp__obj_slab_bytes(size_t block_size)
{
  size_t n = 0;
  pthread_mutex_lock(&lock);
  for (int c = 0; c < NCLASS; c++)
    if (pools[c].size == block_size)
      n = pools[c].slab_bytes;
  pthread_mutex_unlock(&lock);
  return n;
}
