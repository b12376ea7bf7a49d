/* SPDX-License-Identifier: MIT */
/* The unbounded queue at size (issue 10 §2): a producer child puts 1 GiB of
 * 64 KiB items and exits before any consumer starts, and a consumer then
 * gets them all; one 1 GiB item; 1,000,000 tiny items in order.  Contents
 * are checked cheaply: one word every 4 KiB (and each item's first word).
 * Skipped on a machine with less than 4 GiB available. */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc/proc_internal.h"
#include "queue/queue_internal.h"

#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define ITEM (64 * 1024)
#define NBIG (GIB / ITEM)

static void
need_memory(void)
{
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  unsigned long long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
      break;
  if (f)
    fclose(f);
  if (kb < 4ull << 20) {
    print_message("skipped: %llu MiB available, 4096 MiB needed\n", kb >> 10);
    skip();
  }
}

/* one 8-byte word every 4 KiB (and at the start): item i, offset o */
static void
stamp(uint8_t *p, size_t len, uint64_t i)
{
  for (size_t o = 0; o + 8 <= len; o += 4096) {
    uint64_t v = i * UINT64_C(0x9e3779b97f4a7c15) ^ o;
    memcpy(p + o, &v, 8);
  }
}

static int
stamped(const uint8_t *p, size_t len, uint64_t i)
{
  for (size_t o = 0; o + 8 <= len; o += 4096) {
    uint64_t v = i * UINT64_C(0x9e3779b97f4a7c15) ^ o, got;
    memcpy(&got, p + o, 8);
    if (got != v)
      return 0;
  }
  return 1;
}

static int
put_gib(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  uint8_t *buf = malloc(ITEM);
  if (!q || !buf)
    return 1;
  memset(buf, 0xa5, ITEM);
  for (size_t i = 0; i < NBIG; i++) {
    stamp(buf, ITEM, i);
    if (mp_queue_put_bytes(q, buf, ITEM, 0) != 0) /* never blocks: unbounded */
      return 2;
  }
  free(buf);
  return 0;
}

static void
test_producer_puts_1gib_and_exits(void **state)
{
  need_memory();
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context("fork", &ctx));
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_obj *args = MP_TUPLE(mp_queue_obj(q));
  mp_process *p;
  MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = put_gib,
                                                           .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  MP_ASSERT_OK(mp_process_join(p, 120));
  int code = -1;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  /* the producer is gone; its gigabyte is still there */
  assert_int_equal(mp_queue_qsize(q), (int)NBIG);
  uint8_t *buf = malloc(ITEM);
  assert_non_null(buf);
  for (size_t i = 0; i < NBIG; i++) {
    size_t len;
    MP_ASSERT_OK(mp_queue_get_bytes_into(q, buf, ITEM, &len, 0));
    assert_int_equal(len, ITEM);
    if (!stamped(buf, len, i) || buf[8] != 0xa5)
      fail_msg("item %zu is not what was put", i);
  }
  free(buf);
  assert_int_equal(mp_queue_qsize(q), 0);
  mp_queue_free(q);
}

static void
test_one_gib_item(void **state)
{
  need_memory();
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.max_message = GIB,
                                                 .memory_cap = 5 * GIB / 2}));
  uint8_t *buf = malloc(GIB);
  assert_non_null(buf);
  stamp(buf, GIB, 7);
  MP_ASSERT_OK(mp_queue_put_bytes(q, buf, GIB, 0));
  free(buf);
  assert_int_equal(mp_queue_qsize(q), 1);
  void *out;
  size_t len;
  MP_ASSERT_OK(mp_queue_get_bytes(q, &out, &len, 0));
  assert_int_equal(len, GIB);
  assert_true(stamped(out, len, 7));
  mp_free(out);
  /* one byte more than max_message is refused */
  MP_ASSERT_ERR(mp_queue_put_bytes(q, "", GIB + 1, 0), MP_EMSGSIZE);
  mp_queue_free(q);
}

static void
test_a_million_tiny_items(void **state)
{
  need_memory();
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  enum { N = 1000000 };
  for (uint32_t i = 0; i < N; i++)
    MP_ASSERT_OK(mp_queue_put_bytes(q, &i, sizeof i, 0));
  assert_int_equal(mp_queue_qsize(q), N);
  for (uint32_t i = 0; i < N; i++) {
    uint32_t v;
    size_t len;
    MP_ASSERT_OK(mp_queue_get_bytes_into(q, &v, sizeof v, &len, 0));
    if (len != sizeof v || v != i)
      fail_msg("item %u: got %u (%zu bytes)", i, v, len);
  }
  assert_int_equal(mp_queue_qsize(q), 0);
  mp_queue_free(q);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_producer_puts_1gib_and_exits),
    cmocka_unit_test(test_one_gib_item),
    cmocka_unit_test(test_a_million_tiny_items),
};

MP_TEST_MAIN(tests)
