/* SPDX-License-Identifier: MIT */
/* Large blocks: a list's storage, a bytes, str or tuple of 64 KiB or more.
 *
 * A pool's map makes and drops arrays of megabytes every round: the result
 * list's 8 MB of pointers for a million items, a chunk's packed ints, the
 * decoded results.  From malloc each such array is a fresh mapping (or a
 * heap top that glibc trims again), so every round faults its pages in
 * anew -- about 2 us a page on a VM with a memory cgroup, 4 ms for 8 MB,
 * more than the map's own work on them.  Blocks of at least MP__BIG_MIN
 * bytes are therefore mapped here and, once freed, kept in a small cache
 * (CACHE_N blocks, CACHE_BYTES in all) for the next block of about their
 * size, pages still in.  Smaller blocks are malloc's.  Each block starts
 * with a header: its mapping's length (0: from malloc) and the size asked
 * for, so that free and realloc need no size from the caller.
 *
 * A cached block not reused within DECAY_NS is unmapped at the next use of
 * the cache (jemalloc's dirty-page decay, without its thread), so memory
 * a burst of work left behind does not stay with the process.
 *
 * The cache is process-wide, under one leaf mutex.  A fork child empties
 * it: its blocks are the parent's pages, copied on the first write, so
 * reusing one there would fault every page anyway.  mp__big_trim gives all
 * of it back (a pool's end).  Under AddressSanitizer every block is a
 * malloc of its own, so that overruns stay visible. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "obj/obj_internal.h"
#include "platform/platform.h"

#if defined(__SANITIZE_ADDRESS__)
#define NO_MAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_MAP 1
#endif
#endif
#ifndef NO_MAP
#define NO_MAP 0
#endif

#define PAGE ((size_t)4096)
#define CACHE_N MP__BIG_CACHE_N
#define CACHE_BYTES MP__BIG_CACHE_BYTES
#define DECAY_NS ((int64_t)10 * 1000000000)
int64_t mp__big_decay_ns = DECAY_NS;

typedef struct bighdr {
  size_t map;  /* length of the mapping the block starts; 0: malloc'd */
  size_t size; /* bytes asked for, after the header */
} bighdr;

_Static_assert(sizeof(bighdr) == 16, "blocks stay 16-byte aligned");

static struct {
  pthread_mutex_t lock;
  bighdr *blk[CACHE_N]; /* oldest first */
  int64_t freed[CACHE_N]; /* when each was freed (CLOCK_MONOTONIC_COARSE) */
  size_t n, bytes;
} cache MP__FORK_DATA = {PTHREAD_MUTEX_INITIALIZER, {NULL}, {0}, 0, 0};
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int64_t
coarse_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Remove entry i of the cache (under the lock); returns the block. */
static bighdr *
remove_locked(size_t i)
{
  bighdr *h = cache.blk[i];
  size_t rest = cache.n - i - 1;
  memmove(&cache.blk[i], &cache.blk[i + 1], rest * sizeof *cache.blk);
  memmove(&cache.freed[i], &cache.freed[i + 1], rest * sizeof *cache.freed);
  cache.n--;
  cache.bytes -= h->map;
  return h;
}

/* Move the blocks freed longer than DECAY_NS ago (the oldest first in the
 * array) to out; returns how many. */
static size_t
decay_locked(int64_t now, bighdr **out)
{
  size_t k = 0;
  while (cache.n > 0 && now - cache.freed[0] > mp__big_decay_ns)
    out[k++] = remove_locked(0);
  return k;
}

static void
unmap_all(bighdr **v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    munmap(v[i], v[i]->map);
}

/* Take every cached block out (under the lock) into v; returns how many. */
static size_t
take_all_locked(bighdr **v)
{
  size_t n = cache.n;
  memcpy(v, cache.blk, n * sizeof *v);
  cache.n = 0;
  cache.bytes = 0;
  return n;
}

static void
fork_child(void *arg)
{
  (void)arg;
  bighdr *v[CACHE_N];
  pthread_mutex_lock(&cache.lock);
  size_t n = take_all_locked(v);
  pthread_mutex_unlock(&cache.lock);
  unmap_all(v, n);
}

static void
init(void)
{
  /* the guard first: the child hook runs after it has unlocked */
  mp__fork_guard_mutex(&cache.lock);
  mp__fork_hook_add(NULL, NULL, fork_child, NULL);
}

/* A cached block of at least len bytes and at most twice that, the
 * smallest; NULL if none. */
static bighdr *
cache_take(size_t len)
{
  bighdr *old[CACHE_N];
  pthread_once(&once, init);
  int64_t now = coarse_now();
  pthread_mutex_lock(&cache.lock);
  size_t nold = decay_locked(now, old);
  size_t best = CACHE_N;
  for (size_t i = 0; i < cache.n; i++) {
    size_t m = cache.blk[i]->map;
    if (m >= len && m / 2 <= len &&
        (best == CACHE_N || m < cache.blk[best]->map))
      best = i;
  }
  bighdr *h = best < CACHE_N ? remove_locked(best) : NULL;
  pthread_mutex_unlock(&cache.lock);
  unmap_all(old, nold);
  return h;
}

static void
cache_put(bighdr *h)
{
  bighdr *out[CACHE_N + 1];
  pthread_once(&once, init);
  int64_t now = coarse_now();
  pthread_mutex_lock(&cache.lock);
  size_t nout = decay_locked(now, out);
  if (h->map > CACHE_BYTES) {
    out[nout++] = h;
  } else {
    while (cache.n == CACHE_N || cache.bytes + h->map > CACHE_BYTES)
      out[nout++] = remove_locked(0); /* the oldest goes */
    cache.freed[cache.n] = now;
    cache.blk[cache.n++] = h;
    cache.bytes += h->map;
  }
  pthread_mutex_unlock(&cache.lock);
  unmap_all(out, nout); /* outside the lock: an unmap takes a while */
}

/* The mapping length for n bytes after the header; 0 if too large. */
static size_t
map_len(size_t n)
{
  if (n > SIZE_MAX - sizeof(bighdr) - PAGE)
    return 0;
  return (n + sizeof(bighdr) + PAGE - 1) & ~(PAGE - 1);
}

void *
mp__big_alloc(size_t n, int zero)
{
  bighdr *h;
  if (NO_MAP || n < MP__BIG_MIN) {
    if (n > SIZE_MAX - sizeof *h)
      return NULL;
    h = zero ? calloc(1, sizeof *h + n) : malloc(sizeof *h + n);
    if (!h)
      return NULL;
    h->map = 0;
  } else {
    size_t len = map_len(n);
    if (!len)
      return NULL;
    if ((h = cache_take(len)) != NULL) {
      if (zero)
        memset(h + 1, 0, n);
    } else {
      void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED)
        return NULL;
      h = m; /* fresh pages read as zero */
      h->map = len;
    }
  }
  h->size = n;
  return h + 1;
}

void *
mp__big_realloc(void *p, size_t n)
{
  if (!p)
    return mp__big_alloc(n, 0);
  bighdr *h = (bighdr *)p - 1;
  if (h->map == 0 && (NO_MAP || n < MP__BIG_MIN)) { /* stays malloc's */
    if (n > SIZE_MAX - sizeof *h)
      return NULL;
    bighdr *g = realloc(h, sizeof *h + n);
    if (!g)
      return NULL;
    g->size = n;
    return g + 1;
  }
  if (h->map != 0) {
    size_t len = map_len(n);
    if (!len)
      return NULL;
    if (len <= h->map) { /* fits (a shrink keeps the pages: rare) */
      h->size = n;
      return p;
    }
    /* grow in place or move the pages: no copy either way */
    void *m = mremap(h, h->map, len, MREMAP_MAYMOVE);
    if (m == MAP_FAILED)
      return NULL;
    h = m;
    h->map = len;
    h->size = n;
    return h + 1;
  }
  /* from malloc to a mapping */
  void *q = mp__big_alloc(n, 0);
  if (!q)
    return NULL;
  memcpy(q, p, h->size < n ? h->size : n);
  free(h);
  return q;
}

void
mp__big_free(void *p)
{
  if (!p)
    return;
  bighdr *h = (bighdr *)p - 1;
  if (h->map == 0)
    free(h);
  else
    cache_put(h);
}

void
mp__big_trim(void)
{
  bighdr *v[CACHE_N];
  pthread_mutex_lock(&cache.lock);
  size_t n = take_all_locked(v);
  pthread_mutex_unlock(&cache.lock);
  unmap_all(v, n);
}

size_t
mp__big_cached_bytes(void)
{
  pthread_mutex_lock(&cache.lock);
  size_t n = cache.bytes;
  pthread_mutex_unlock(&cache.lock);
  return n;
}
