/* SPDX-License-Identifier: MIT */
/* Decoding out of shared memory (mp__pickle_loads_shared), as a queue
 * decodes a big item straight out of its ring: the same decisions and
 * values as mp_pickle_loads_fds, a large bytes payload copied once (never
 * into the scratch buffer), and a writer changing the memory during the
 * decode changes at most the payload's bytes, never what the parser saw. */
#define _GNU_SOURCE /* memmem */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"
#include "testutil.h"

static void *
pickle_of(mp_obj *v, size_t *len)
{
  void *buf = NULL;
  MP_ASSERT_OK(mp_pickle_dumps(v, NULL, &buf, len));
  mp_obj_free(v);
  return buf;
}

/* (7, b"x" * n, "text", [1, 2**40, -3]): a pool message's shape */
static void *
message(size_t n, size_t *len)
{
  uint8_t *d;
  mp_obj *b = mp__bytes_alloc(n, &d);
  assert_non_null(b);
  for (size_t i = 0; i < n; i++)
    d[i] = (uint8_t)(i * 31 + 7);
  return pickle_of(MP_TUPLE(mp_int_new(7), b, mp_str_new("text"),
                            MP_LIST(mp_int_new(1),
                                    mp_int_new((int64_t)1 << 40),
                                    mp_int_new(-3))),
                   len);
}

/* The decoder's read-ahead and direct-copy sizes (8192 and 4096 by
 * default). */
static void
set_sizes(size_t ahead, size_t direct)
{
  mp__pickle_fill_ahead = ahead;
  mp__pickle_direct_min = direct;
}

/* Where message()'s payload starts in its pickle: the first occurrence of
 * its first 64 bytes. */
static size_t
payload_start(const uint8_t *p, size_t len)
{
  uint8_t head[64];
  for (size_t i = 0; i < sizeof head; i++)
    head[i] = (uint8_t)(i * 31 + 7);
  const uint8_t *at = memmem(p, len, head, sizeof head);
  assert_non_null(at);
  return (size_t)(at - p);
}

/* rc of both decodings equal, and their values' reprs */
static void
agree(const void *src, size_t len)
{
  mp_obj *a = NULL, *b = NULL;
  void *scratch = malloc(len ? len : 1);
  int ra = mp_pickle_loads_fds(src, len, NULL, NULL, 0, &a);
  int rb = mp__pickle_loads_shared(src, len, scratch, NULL, NULL, 0, &b);
  free(scratch);
  assert_int_equal(rb, ra);
  if (ra == 0) {
    char *x = mp_obj_repr(a), *y = mp_obj_repr(b);
    assert_string_equal(x, y);
    mp_free(x);
    mp_free(y);
  }
  mp_obj_free(a);
  mp_obj_free(b);
}

static void
test_same_as_loads(void **state)
{
  (void)state;
  size_t sizes[] = {0, 1, 100, 5000, 70000};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t len;
    void *p = message(sizes[k], &len);
    agree(p, len);
    /* every split of read-ahead and direct copy */
    for (size_t ahead = 1; ahead <= 40; ahead += 3)
      for (size_t direct = 1; direct <= 9; direct += 4) {
        set_sizes(ahead, direct);
        agree(p, len);
      }
    set_sizes(8192, 4096);
    mp_free(p);
  }
  /* a long str (read ahead, then checked as UTF-8) and a big int */
  size_t len;
  char *text = malloc(60001);
  memset(text, 'a', 60000);
  text[60000] = 0;
  void *p = pickle_of(MP_TUPLE(mp_str_new(text), mp_int_new(INT64_MIN)), &len);
  agree(p, len);
  mp_free(p);
  free(text);
}

static void
test_truncated_and_corrupt_agree(void **state)
{
  (void)state;
  size_t len;
  uint8_t *p = message(20000, &len);
  set_sizes(64, 16);
  for (size_t cut = 0; cut < len; cut += cut < 64 ? 1 : 97)
    agree(p, cut);
  uint8_t *q = malloc(len);
  for (size_t at = 0; at < len; at += at < 64 ? 1 : 211) {
    memcpy(q, p, len);
    q[at] ^= 0x5a;
    agree(q, len);
  }
  free(q);
  set_sizes(8192, 4096);
  mp_free(p);
}

static void
test_big_payload_skips_scratch(void **state)
{
  (void)state;
  size_t n = 1 << 20, len;
  uint8_t *p = message(n, &len);
  uint8_t *scratch = malloc(len);
  memset(scratch, 0xAA, len);
  mp_obj *v = NULL;
  MP_ASSERT_OK(mp__pickle_loads_shared(p, len, scratch, NULL, NULL, 0, &v));
  const void *d;
  size_t dl;
  MP_ASSERT_OK(mp_bytes_get(mp_seq_item(v, 1), &d, &dl));
  assert_int_equal(dl, n);
  size_t start = payload_start(p, len);
  assert_memory_equal(d, p + start, n);
  /* the payload's second half never went through the scratch buffer */
  size_t mid = start + n / 2;
  for (size_t i = mid; i < mid + 4096; i++)
    assert_int_equal(scratch[i], 0xAA);
  mp_obj_free(v);
  free(scratch);
  mp_free(p);
}

/* A writer flipping bytes of the payload while decodes run: every decode
 * succeeds with a payload of the right length (payload bytes are data, so
 * only they can change); flipping any byte: a code, never a crash. */
typedef struct flipper {
  uint8_t *mem;
  size_t from, to;
  volatile int stop;
} flipper;

static void *
flip(void *arg)
{
  flipper *f = arg;
  size_t i = f->from;
  while (!f->stop) {
    __atomic_fetch_xor(&f->mem[i], 0xff, __ATOMIC_RELAXED);
    if (++i >= f->to)
      i = f->from;
  }
  return NULL;
}

static void
decode_under(flipper *f, size_t len, int must_succeed, size_t n)
{
  pthread_t t;
  uint8_t *scratch = malloc(len);
  f->stop = 0;
  assert_int_equal(pthread_create(&t, NULL, flip, f), 0);
  for (int round = 0; round < 200; round++) {
    mp_obj *v = NULL;
    int rc = mp__pickle_loads_shared(f->mem, len, scratch, NULL, NULL, 0, &v);
    if (must_succeed) {
      MP_ASSERT_OK(rc);
      const void *d;
      size_t dl;
      MP_ASSERT_OK(mp_bytes_get(mp_seq_item(v, 1), &d, &dl));
      assert_int_equal(dl, n);
    } else {
      assert_true(rc <= 0); /* a value, or a code */
      assert_true(rc == 0 || v == NULL);
    }
    mp_obj_free(v);
  }
  f->stop = 1;
  pthread_join(t, NULL);
  free(scratch);
}

static void
test_writer_during_decode(void **state)
{
  (void)state;
  size_t n = 256 << 10, len;
  uint8_t *p = message(n, &len);
  uint8_t *mem = malloc(len);
  memcpy(mem, p, len);
  size_t start = payload_start(p, len);
  flipper f = {mem, start + n / 4, start + 3 * n / 4, 0};
  decode_under(&f, len, 1, n);
  memcpy(mem, p, len);
  f.from = 0;
  f.to = len;
  decode_under(&f, len, 0, n);
  free(mem);
  mp_free(p);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_same_as_loads),
    cmocka_unit_test(test_truncated_and_corrupt_agree),
    cmocka_unit_test(test_big_payload_skips_scratch),
    cmocka_unit_test(test_writer_during_decode),
};

MP_TEST_MAIN(tests)
