/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the queue's record reader over corrupt shared memory
 * (a buggy process may scribble on a queue it holds: issue 10 §3).
 *
 * Input:
 *   u8 flags    bit 0 joinable, bit 1 bounded (maxsize 4), bit 2 rebuild
 *               mode, bits 3-5 items put first (0..7; one larger than the
 *               16 KiB segment when bit 6), bit 7 an item holding a handle
 *   then patches, each:
 *     u8  where  0 the header page, 1 anywhere in use, 2 around the head,
 *                3 around the tail; bit 2: write an interesting 8-byte
 *                value (table below, by `n`) at the 8-aligned offset
 *                instead of the bytes
 *     u16 off    (little-endian) offset in that region
 *     u8  n      up to 16 bytes follow
 *
 * Queue mode: create a queue (16 KiB segments, small max_message and memory
 * cap), put the items, apply the patches to its mapping (base and length
 * from mp__queue_mem_for_tests), then call get_bytes, get, get_bytes_into,
 * get_many_bytes, put_bytes, put_many_bytes, qsize, empty, full, task_done
 * and join, with timeout 0, a few times each.  Every call returns; a code
 * must be 0, a documented positive count, or a negative code.
 * Rebuild mode: the same queue is pickled with its descriptors, the
 * patches are applied to its header page, and it is rebuilt from the
 * pickle and dups of the descriptors; a rebuilt queue is used as above.
 * Nothing may crash, hang, or read outside the mapping (a read past the
 * file's end is a SIGBUS; inside the reservation but beyond the file,
 * ASan cannot see it, so the library's bounds checks are what is tested). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

#include "fuzz.h"
#include "queue/queue_internal.h"

static void
die(const char *what, int rc)
{
  fprintf(stderr, "fuzz_queue_records: %s (%d %s: %s)\n", what, rc,
          mp_err_name(rc), mp_errdetail());
  abort();
}

static void
code(const char *what, int rc, int max_pos)
{
  if (rc > max_pos)
    die(what, rc);
}

static void
exercise(mp_queue *q)
{
  for (int round = 0; round < 3; round++) {
    void *p = NULL;
    size_t n = 0;
    int rc = mp_queue_get_bytes(q, &p, &n, 0);
    code("get_bytes", rc, 0);
    if (rc == 0) {
      if (!p || n > (1 << 16))
        die("get_bytes gave an item larger than max_message", rc);
      mp_free(p);
    }
    mp_obj *o = NULL;
    rc = mp_queue_get(q, &o, 0);
    code("get", rc, 0);
    if (rc == 0)
      mp_obj_free(o);
    uint8_t buf[2048];
    rc = mp_queue_get_bytes_into(q, buf, sizeof buf, &n, 0);
    code("get_bytes_into", rc, 0);
    if (rc == 0 && n > sizeof buf)
      die("get_bytes_into overflowed", rc);
    mp_queue_buf items[4];
    rc = mp_queue_get_many_bytes(q, buf, sizeof buf, items, 4, 0);
    code("get_many_bytes", rc, 4);
    for (int i = 0; i < rc; i++)
      if ((const uint8_t *)items[i].data < buf
          || (const uint8_t *)items[i].data + items[i].len > buf + sizeof buf)
        die("get_many_bytes pointed outside its buffer", rc);
    rc = mp_queue_put_bytes(q, "fuzz", 4, 0);
    code("put_bytes", rc, 0);
    mp_queue_buf b[3] = {{"a", 1}, {buf, 300}, {"", 0}};
    memset(buf, 0x42, 300);
    rc = mp_queue_put_many_bytes(q, b, 3, 0);
    code("put_many_bytes", rc, 3);
    (void)mp_queue_qsize(q);
    code("empty", mp_queue_empty(q), 1);
    code("full", mp_queue_full(q), 1);
    code("task_done", mp_queue_task_done(q), 0);
    code("join", mp_queue_join(q, 0), 0);
  }
}

static const uint64_t interesting[16] = {
    0, 1, 8, 16, 4095, 4096, 4096 + 64, 16384, 0xffffffffu, UINT64_MAX,
    UINT64_C(1) << 54 | 16,               /* a WRITING word, length 16 */
    UINT64_C(2) << 54 | 0xfffffff0u,      /* READY, a huge length */
    UINT64_C(3) << 54 | 1u << 20,         /* READING */
    UINT64_C(5) << 54 | 8,                /* PAD */
    UINT64_C(1) << 57 | UINT64_C(2) << 54 | 24, /* READY with fds */
    UINT64_C(0x8000000000000000)};

static void
patch(mp_queue *q, const uint8_t *d, size_t size, int header_only)
{
  uint8_t *base;
  size_t len;
  mp__queue_mem_for_tests(q, &base, &len);
  while (size >= 4) {
    unsigned where = d[0];
    size_t off = (size_t)d[1] | (size_t)d[2] << 8, n = d[3] % 17;
    d += 4;
    size -= 4;
    if (n > size)
      n = size;
    size_t region = 0, rlen = MP__Q_PAGE;
    if (!header_only) {
      uint64_t head = atomic_load(&q->h->head), tail = atomic_load(&q->h->tail);
      switch (where & 3) {
      case 1: rlen = len; break;
      case 2: region = head > 256 ? head - 256 : 0; rlen = 512; break;
      case 3: region = tail > 256 ? tail - 256 : 0; rlen = 512; break;
      }
    }
    if (region >= len)
      region = 0;
    if (rlen > len - region)
      rlen = len - region;
    off = region + off % rlen;
    if (where & 4) {
      off &= ~(size_t)7;
      if (off + 8 <= len)
        memcpy(base + off, &interesting[n % 16], 8);
    } else {
      if (n > len - off)
        n = len - off;
      memcpy(base + off, d, n);
    }
    d += (where & 4) ? 0 : n;
    size -= (where & 4) ? 0 : n;
  }
}

static mp_queue *
fresh(unsigned flags)
{
  mp_queue *q;
  int rc = mp_queue_new(&q, &(mp_queue_opts){.maxsize = flags & 2 ? 4 : 0,
                                             .joinable = flags & 1,
                                             .max_message = 1 << 16,
                                             .memory_cap = 1 << 20,
                                             .segment_size = 16384});
  if (rc)
    die("mp_queue_new", rc);
  static uint8_t big[20000];
  unsigned items = flags >> 3 & 7;
  for (unsigned i = 0; i < items; i++) {
    int big_one = (flags & 0x40) && i == 1;
    size_t n = big_one ? sizeof big : 1 + i * 37;
    memset(big, (int)i, n);
    rc = mp_queue_put_bytes(q, big, n, 0);
    if (rc && rc != MP_EFULL)
      die("put", rc);
  }
  if (flags & 0x80) {
    mp_queue *inner;
    if ((rc = mp_queue_new(&inner, NULL)))
      die("inner queue", rc);
    mp_obj *o = MP_TUPLE(mp_str_new("handle"), mp_queue_obj(inner));
    rc = mp_queue_put(q, o, 0);
    if (rc && rc != MP_EFULL)
      die("put of a handle", rc);
    mp_obj_free(o);
    mp_queue_free(inner);
  }
  return q;
}

static void
rebuild(mp_queue *q, const uint8_t *d, size_t size)
{
  mp_obj *o = mp_queue_obj(q);
  void *pk;
  size_t pn, nfds;
  int *fds;
  int rc = mp_pickle_dumps_fds(o, NULL, &pk, &pn, &fds, &nfds);
  mp_obj_free(o);
  if (rc)
    die("dumps_fds", rc);
  int mine[8];
  if (nfds > 8)
    die("too many fds", (int)nfds);
  for (size_t i = 0; i < nfds; i++)
    mine[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
  mp_free(fds);
  patch(q, d, size, 1);
  mp_obj *got = NULL;
  rc = mp_pickle_loads_fds(pk, pn, NULL, mine, nfds, &got);
  mp_free(pk);
  code("rebuild", rc, 0);
  if (rc == 0) {
    mp_queue *r = mp_queue_from_obj(got);
    if (!r)
      die("rebuilt value is not a queue", 0);
    exercise(r);
    mp_obj_free(got);
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > 4096)
    return 0;
  unsigned flags = data[0];
  mp_queue *q = fresh(flags);
  if (flags & 4) {
    rebuild(q, data + 1, size - 1);
  } else {
    patch(q, data + 1, size - 1, 0);
    exercise(q);
  }
  mp_queue_free(q);
  return 0;
}
