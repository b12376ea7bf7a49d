/* SPDX-License-Identifier: MIT */
/* libFuzzer target: rebuilding sync/shm handles from hostile states and
 * hostile shared memory (what a peer on a Connection can send).
 *
 * Input (little-endian):
 *   u8  type    0 Lock  1 Semaphore  2 Event  3 Condition  4 Barrier
 *               5 Value  6 Array  7 SharedMemory (mod 8)
 *   u8  flags   see F_* below
 *   u16 pages   the forged slab is 4096 * (1 + pages % 16) bytes
 *   u32 off     the object's data offset (raw with F_RAWOFF, else placed
 *               on a block boundary of the slab: 64 * k + 16/32/64)
 *   u32 off2    the same for the lock of a Condition/Value/Array
 *   u32 claim   xored into the slab size the state claims (0: the truth)
 *   u32 remote  written into the slab's remote-free head before the free
 *   u8  n1, n2  lengths of the two images below
 *   then n1 bytes written at off - 16 (block header, then the object),
 *        n2 bytes written at off2 - 16, and the rest written at off - 16
 *        after a successful rebuild (another process rewriting it).
 * For SharedMemory the first image is the name, `off` the claimed size.
 *
 * Whatever the bytes, rebuild returns 0 or a code (the fds it was given are
 * closed on failure); a rebuilt object lies inside its slab, its accessors
 * stay inside it before and after the rewrite, and once it is released no
 * fd or mapping is left.  FUZZ_HANDLE_VERBOSE=1 prints each rebuild's result (for
 * checking that seeds are well-formed).  Calls never block: every wait has timeout 0, and locks are
 * probed without blocking before the calls that wait for them forever. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mproc.h>

#include "shm/shm_internal.h"
#include "fuzz.h"

#define F_NOSEAL 0x01u  /* leave the memfd resizable */
#define F_BADHDR 0x02u  /* do not write a correct slab header */
#define F_FIXTAG 0x04u  /* give the blocks the tag of their kind */
#define F_REC 0x08u     /* the lock is an RLock */
#define F_RAWOFF 0x10u  /* use off/off2 as they are */
#define F_LOCK2 0x20u   /* the lock lives in a second slab (fd index 1) */
#define F_OWN 0x40u     /* point into this process's own arena instead */
#define F_NOLOCK 0x80u  /* Value/Array: raw (no lock) */

#define MAGIC UINT64_C(0x626c73636f72706d)

static const char *const names[] = {
    "mproc.Lock",   "mproc.Semaphore", "mproc.Event", "mproc.Condition",
    "mproc.Barrier", "mproc.Value",    "mproc.Array", "mproc.SharedMemory"};
static const unsigned tags[] = {MP__K_LOCK,    MP__K_SEM,   MP__K_EVENT,
                                MP__K_COND,    MP__K_BARRIER, MP__K_VALUE,
                                MP__K_ARRAY,   0};

typedef struct slab {
  int fd;
  uint8_t *map;
  size_t size;
  uint64_t id;
} slab;

static uint32_t
rd32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
         | (uint32_t)p[3] << 24;
}

static void
die(const char *what)
{
  fprintf(stderr, "fuzz_handle_rebuild: %s (%s)\n", what, mp_errdetail());
  abort();
}

static int
make_slab(slab *s, size_t size, unsigned flags)
{
  static uint64_t n;
  s->fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (s->fd < 0)
    return -1;
  if (ftruncate(s->fd, (off_t)size) != 0
      || (!(flags & F_NOSEAL)
          && fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)) {
    close(s->fd);
    return -1;
  }
  s->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
  if (s->map == MAP_FAILED) {
    close(s->fd);
    return -1;
  }
  s->size = size;
  s->id = UINT64_C(0xf022000000000000) | ++n;
  return 0;
}

static void
drop_slab(slab *s)
{
  munmap(s->map, s->size);
  close(s->fd);
}

static void
put(slab *s, uint32_t at, const uint8_t *p, size_t n)
{
  if (at >= s->size)
    return;
  if (n > s->size - at)
    n = s->size - at;
  memcpy(s->map + at, p, n);
}

static void
fix_header(slab *s, unsigned flags)
{
  if (flags & F_BADHDR)
    return;
  uint64_t h[3] = {MAGIC, s->id, s->size};
  memcpy(s->map, h, sizeof h);
  memset(s->map + 24, 0, 4); /* index 0 */
}

static void
fix_tag(slab *s, uint32_t off, unsigned tag, unsigned flags)
{
  if ((flags & F_FIXTAG) && off >= 16 && off <= s->size) {
    uint16_t t = (uint16_t)tag;
    memcpy(s->map + off - 6, &t, 2); /* blk.tag */
  }
}

static uint32_t
place(uint32_t raw, size_t size, unsigned flags)
{
  if (flags & F_RAWOFF)
    return raw;
  static const uint32_t lead[] = {16, 32, 64, 16};
  size_t units = size / 64;
  return (uint32_t)(64 * (1 + (raw >> 2) % (units > 1 ? units - 1 : 1))
                    + lead[raw & 3]);
}

static mp_obj *
loc(uint64_t id, uint64_t size, uint32_t off, int fdidx)
{
  return MP_TUPLE(mp_uint_new(id), mp_int_new(0), mp_uint_new(size),
                  mp_uint_new(off), mp_int_new(fdidx));
}

/* Can `l` be taken now without blocking?  Leaves it as it was. */
static int
lock_free_now(mp_lock *l)
{
  if (!l)
    return 1;
  int rc = mp_lock_acquire(l, 0);
  if (rc != 0 && rc != MP_EOWNERDEAD)
    return 0;
  mp_lock_release(l);
  return mp_lock_acquire(l, 0) == 0 ? (mp_lock_release(l), 1) : 0;
}

/* The object's memory must lie inside [base + off, base + size). */
static void
inside(const void *p, size_t n, const uint8_t *base, size_t size)
{
  const uint8_t *q = p;
  if (q < base || q > base + size || n > (size_t)(base + size - q))
    die("object reaches outside its slab");
}

static const uint8_t *
base_of(mp__shref ref)
{
  return (const uint8_t *)mp__arena_ptr(ref) - ref.off;
}

static void
use_lock(mp_lock *l, size_t slab_size)
{
  inside(l->s, sizeof *l->s, base_of(l->h.ref), slab_size);
  int rc = mp_lock_acquire(l, 0);
  if (rc == 0 || rc == MP_EOWNERDEAD) {
    (void)mp_lock_is_mine(l);
    mp_lock_acquire(l, 0); /* an RLock again; a Lock times out */
    mp_lock_release(l);
  }
  (void)mp_lock_locked(l);
  mp_lock_release(l);
}

static void
use_value(mp_value *v, int is_array, size_t slab_size)
{
  inside(v->data, v->n * v->elsize, base_of(v->h.ref), slab_size);
  mp_lock *l = v->lock;
  if (!lock_free_now(l))
    return;
  mp_array *a = (mp_array *)v;
  size_t n = is_array ? mp_array_len(a) : 1;
  int64_t x;
  uint64_t u;
  double d;
  if (!is_array) {
    mp_value_get_int(v, &x);
    mp_value_get_uint(v, &u);
    mp_value_get_double(v, &d);
    if (lock_free_now(l))
      mp_value_set_int(v, -1);
    if (lock_free_now(l))
      mp_value_set_double(v, 0.5);
  } else {
    int64_t idx[] = {0, -1, (int64_t)n - 1, (int64_t)n, -(int64_t)n};
    for (size_t i = 0; i < 5; i++) {
      if (!lock_free_now(l))
        return;
      mp_array_get_int(a, idx[i], &x);
      mp_array_set_uint(a, idx[i], 7);
      if (!lock_free_now(l))
        return;
      mp_array_get_double(a, idx[i], &d);
      mp_array_set_double(a, idx[i], 1.5);
    }
    if (n * v->elsize <= 1 << 16) {
      void *buf = malloc(n * v->elsize + 1);
      if (buf && lock_free_now(l))
        mp_array_read(a, 0, n, buf);
      if (buf && lock_free_now(l))
        mp_array_write(a, 0, n, buf);
      free(buf);
    }
    char s[16];
    if (lock_free_now(l))
      mp_array_get_bytes(a, s, sizeof s);
    if (lock_free_now(l))
      mp_array_set_bytes(a, "ab", 2);
  }
  if (n <= 4096 && lock_free_now(l))
    mp_obj_free(is_array ? mp_array_to_obj(a) : mp_value_to_obj(v));
}

static void
use(int type, void *p, slab *s, uint32_t off, size_t slab_size)
{
  switch (type) {
  case 0:
    use_lock(p, slab_size);
    break;
  case 1:
    mp_sem_acquire(p, 0);
    mp_sem_release(p);
    if (mp_sem_get_value(p) < 0)
      die("semaphore count is negative");
    break;
  case 2:
    mp_event_set(p);
    mp_event_clear(p);
    mp_event_wait(p, 0);
    (void)mp_event_is_set(p);
    break;
  case 3: {
    mp_lock *l = mp_cond_lock(p);
    use_lock(l, slab_size);
    if (mp_cond_acquire(p, 0) == 0) {
      mp_cond_notify(p, 1);
      mp_cond_wait(p, 0);
      mp_cond_notify_all(p);
      mp_cond_release(p);
    }
    break;
  }
  case 4: {
    int parties = mp_barrier_parties(p);
    if (parties < 1 || (size_t)parties * 16 + 48 > slab_size - off)
      die("barrier has more parties than slots");
    /* a peer holding the internal lock, or a round never drained, would
     * make these wait (as in Python): not what is tested here */
    int32_t st;
    memset(s->map + off, 0, 8);
    memcpy(&st, s->map + off + 28, 4);
    if (st != 1 && st != -1)
      mp_barrier_wait(p, 0);
    memset(s->map + off, 0, 8);
    (void)mp_barrier_n_waiting(p);
    mp_barrier_reset(p);
    memset(s->map + off, 0, 8);
    mp_barrier_abort(p);
    (void)mp_barrier_broken(p);
    break;
  }
  case 5:
  case 6:
    use_value(p, type == 6, slab_size);
    break;
  }
}

static void
release(int type, void *p)
{
  switch (type) {
  case 0: mp_lock_free(p); break;
  case 1: mp_sem_free(p); break;
  case 2: mp_event_free(p); break;
  case 3: mp_cond_free(p); break;
  case 4: mp_barrier_free(p); break;
  case 5:
  case 6: mp_value_free(p); break;
  case 7: mp_shm_free(p); break;
  }
}

static void
must_be_closed(int fd)
{
  if (fd >= 0 && fcntl(fd, F_GETFD) != -1)
    die("a descriptor given to rebuild is still open");
}

/* Objects of this process's own arena, for F_OWN. */
static mp_lock *own_lock;
static mp_value *own_value;
static mp_array *own_array;

static int
fuzz_shm(const uint8_t *data, size_t size)
{
  size_t fsize = 4096 * (1 + (data[2] | data[3] << 8) % 16);
  uint64_t claim = rd32(data + 4);
  size_t n1 = data[20];
  const uint8_t *name = data + 24;
  if (n1 > size - 24)
    n1 = size - 24;
  mp_obj *nm = mp_str_new_len((const char *)name, n1);
  if (!nm)
    return 0;
  int fd = memfd_create("fuzz-shm", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, (off_t)fsize) != 0) {
    mp_obj_free(nm);
    if (fd >= 0)
      close(fd);
    return 0;
  }
  mp_obj *st = MP_TUPLE(nm, mp_uint_new(claim));
  void *out = NULL;
  int fds[1] = {fd};
  int rc = mp_handle_find(names[7])->rebuild(st, fds, 1, &out);
  if (getenv("FUZZ_HANDLE_VERBOSE"))
    fprintf(stderr, "%s: %s %s\n", names[7], mp_err_name(rc),
            rc ? mp_errdetail() : "");
  if (rc == 0) {
    mp_shm *m = out;
    if (mp_shm_size(m) > fsize)
      die("SharedMemory larger than its fd");
    memset(mp_shm_buf(m), 0x5a, mp_shm_size(m));
    mp_shm_free(m);
  }
  must_be_closed(fd);
  mp_obj_free(st);
  return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!own_lock) {
    /* link the handle types in from the static library (they register
     * themselves from constructors of the files these live in) */
    (void)mp_lock_obj(NULL);
    (void)mp_value_obj(NULL);
    if (mp_lock_new(&own_lock) || mp_value_new(&own_value, 'q', NULL, NULL)
        || mp_array_new(&own_array, 'd', 9, NULL, NULL))
      die("setup");
  }
  if (size < 24 || size > 1 << 16)
    return 0;
  int type = data[0] % 8;
  if (type == 7)
    return fuzz_shm(data, size);
  size_t slabs0, bytes0, slabs1, bytes1;
  mp__arena_stats(&slabs0, &bytes0);
  unsigned flags = data[1];
  size_t ssize = 4096 * (1 + (data[2] | data[3] << 8) % 16);
  uint32_t claim = rd32(data + 12), remote = rd32(data + 16);
  size_t n1 = data[20], n2 = data[21];
  const uint8_t *img = data + 24, *end = data + size;
  if (n1 > (size_t)(end - img))
    n1 = (size_t)(end - img);
  const uint8_t *img2 = img + n1;
  if (n2 > (size_t)(end - img2))
    n2 = (size_t)(end - img2);
  const uint8_t *rewrite = img2 + n2;

  slab s[2];
  if (make_slab(&s[0], ssize, flags))
    return 0;
  if (make_slab(&s[1], ssize, flags)) {
    drop_slab(&s[0]);
    return 0;
  }
  uint32_t off = place(rd32(data + 4), ssize, flags);
  uint32_t off2 = place(rd32(data + 8), ssize, flags);
  slab *ls = flags & F_LOCK2 ? &s[1] : &s[0];
  if (off >= 16)
    put(&s[0], off - 16, img, n1);
  if (off2 >= 16)
    put(ls, off2 - 16, img2, n2);
  fix_header(&s[0], flags);
  fix_header(&s[1], flags);
  fix_tag(&s[0], off, tags[type], flags);
  fix_tag(ls, off2, flags & F_REC ? MP__K_RLOCK : MP__K_LOCK, flags);

  /* the location: the forged slab, or a block of this process's arena */
  uint64_t id = s[0].id, claimed = ssize ^ claim;
  int fds[2] = {dup(s[0].fd), dup(s[1].fd)};
  if (flags & F_OWN) {
    mp__arena_loc own;
    int ofd;
    mp__shref r = type == 5   ? own_value->h.ref
                  : type == 6 ? ((mp_value *)own_array)->h.ref
                              : own_lock->h.ref;
    mp__arena_export(r, &own, &ofd);
    id = own.arena_id;
    claimed = own.slab_size ^ claim;
    off = (flags & F_RAWOFF) ? off : own.off + (rd32(data + 4) & 1 ? 64 : 0);
    close(fds[0]);
    fds[0] = dup(ofd);
  }
  mp_obj *lk = flags & F_NOLOCK
                   ? mp_none()
                   : MP_TUPLE(loc(flags & F_LOCK2 ? s[1].id : id,
                                  flags & F_LOCK2 ? ssize : claimed, off2,
                                  flags & F_LOCK2 ? 1 : 0),
                              mp_bool_new(!!(flags & F_REC)));
  mp_obj *l0 = loc(id, claimed, off, 0), *st;
  switch (type) {
  case 0: st = MP_TUPLE(l0, mp_bool_new(!!(flags & F_REC))); mp_obj_free(lk); break;
  case 1:
  case 2: st = MP_TUPLE(l0); mp_obj_free(lk); break;
  case 4: st = MP_TUPLE(l0, mp_none()); mp_obj_free(lk); break;
  default: st = MP_TUPLE(l0, lk); break;
  }
  void *out = NULL;
  int fd0 = fds[0], fd1 = fds[1];
  int rc = st ? mp_handle_find(names[type])->rebuild(st, fds, 2, &out)
              : (close(fds[0]), close(fds[1]), MP_ENOMEM);
  static int verbose = -1;
  if (verbose < 0)
    verbose = getenv("FUZZ_HANDLE_VERBOSE") != NULL;
  if (verbose)
    fprintf(stderr, "%s: %s %s\n", names[type], mp_err_name(rc),
            rc ? mp_errdetail() : "");
  if (rc == 0) {
    size_t lim = flags & F_OWN ? claimed ^ claim : ssize;
    use(type, out, &s[0], off, lim);
    if (!(flags & F_OWN) && off >= 16) {
      put(&s[0], off - 16, rewrite, (size_t)(end - rewrite));
      use(type, out, &s[0], off, lim);
      memcpy(s[0].map + 28, &remote, 4);
      memcpy(ls->map + 28, &remote, 4);
    }
    release(type, out);
  } else if (rc > 0) {
    die("rebuild returned a positive code");
  }
  if (flags & F_OWN) {
    /* a peer with our slab's fd garbles its remote-free list */
    mp__arena_loc own;
    int ofd;
    mp__arena_export(own_lock->h.ref, &own, &ofd);
    (void)ofd;
    uint8_t *base = (uint8_t *)own_lock->s - own_lock->h.ref.off;
    __atomic_store_n((uint32_t *)(base + 28), remote, __ATOMIC_RELAXED);
    mp_lock *t;
    if (mp_lock_new(&t) == 0)
      mp_lock_free(t);
  }
  must_be_closed(fd0);
  must_be_closed(fd1);
  mp_obj_free(st);
  drop_slab(&s[0]);
  drop_slab(&s[1]);
  mp__arena_stats(&slabs1, &bytes1);
  if (slabs1 != slabs0 || bytes1 != bytes0)
    die("a slab stayed mapped");
  return 0;
}
