/* SPDX-License-Identifier: MIT */
/* Allocation of small values.
 *
 * Decoding a pickle makes one object per int, float or short str, and
 * releasing the result frees them all again; malloc/free of millions of
 * tiny blocks dominated the codec's profile.  Objects of at most 32 or 64
 * bytes therefore come from per-thread free lists, refilled from 64 KiB
 * slabs (or from blocks that exited threads gave back).  Slab memory is
 * kept for reuse, never returned to the system, and capped per size class
 * (POOL_CAP); past the cap, objects come from malloc.  An object records
 * where it came from in its header (MP__F_POOLED), so it can be freed by
 * any thread. */
#include <pthread.h>
#include <stdlib.h>

#include "obj/obj_internal.h"

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

typedef struct blk {
  struct blk *next;
} blk;

typedef struct pool {
  size_t size;
  size_t slab_bytes; /* under lock */
  blk *spare;        /* blocks given back by exited threads (under lock) */
  void *slabs;       /* slab list, so that the memory stays reachable */
} pool;

static pool pools[2] = {{32, 0, NULL, NULL}, {64, 0, NULL, NULL}};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
/* Per-thread free lists.  The build uses TLS descriptors (CMakeLists.txt),
 * so this costs no __tls_get_addr call per allocation when the library is
 * loaded at startup, and the library can still be dlopen'ed late (an
 * initial-exec model would make it refuse to load there). */
static _Thread_local struct {
  blk *free[2];
  int registered;
} tl; /* one variable: one TLS address computation per call, not two */

/* a thread's free blocks go to the shared spare lists when it exits */
static void
thread_exit(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&lock);
  for (int c = 0; c < 2; c++) {
    while (tl.free[c]) {
      blk *b = tl.free[c];
      tl.free[c] = b->next;
      b->next = pools[c].spare;
      pools[c].spare = b;
    }
  }
  pthread_mutex_unlock(&lock);
}

static void
init(void)
{
  pthread_key_create(&key, thread_exit);
  mp__fork_guard_mutex(&lock);
}

/* Refill this thread's list of class c; 0 or -1 (pool full). */
static int
refill(int c)
{
  if (!tl.registered) {
    pthread_once(&once, init);
    pthread_setspecific(key, (void *)1);
    tl.registered = 1;
  }
  pool *p = &pools[c];
  pthread_mutex_lock(&lock);
  if (p->spare) {
    /* take up to one slab's worth of given-back blocks */
    blk *head = p->spare, *b = head;
    for (size_t k = 1; k < SLAB / p->size && b->next; k++)
      b = b->next;
    p->spare = b->next;
    b->next = NULL;
    tl.free[c] = head;
    pthread_mutex_unlock(&lock);
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
  for (size_t off = SLAB - p->size; off >= p->size; off -= p->size) {
    blk *b = (blk *)(s + off);
    b->next = head;
    head = b;
  }
  tl.free[c] = head;
  return 0;
}

void *
mp__obj_alloc(size_t size, mp_type t)
{
  mp_obj *o = NULL;
  int c = NO_POOL ? -1 : size <= 32 ? 0 : size <= 64 ? 1 : -1;
  uint8_t flags = 0;
  if (c >= 0 && (tl.free[c] || refill(c) == 0)) {
    blk *b = tl.free[c];
    tl.free[c] = b->next;
    o = (mp_obj *)b;
    flags = MP__F_POOLED | (c ? MP__F_POOL64 : 0);
  } else {
    o = malloc(size);
    if (!o) {
      mp_seterr(MP_ENOMEM, "out of memory");
      return NULL;
    }
  }
  o->rc = 1;
  o->type = (uint8_t)t;
  o->flags = flags;
  o->depth = 0;
  return o;
}

void
mp__obj_dealloc(mp_obj *o)
{
  if (o->flags & MP__F_POOLED) {
    int c = (o->flags & MP__F_POOL64) ? 1 : 0;
    blk *b = (blk *)o;
    b->next = tl.free[c];
    tl.free[c] = b;
    if (!tl.registered) {
      /* a thread that frees but never allocated: still give back at exit */
      pthread_once(&once, init);
      pthread_setspecific(key, (void *)1);
      tl.registered = 1;
    }
  } else {
    free(o);
  }
}
