/* SPDX-License-Identifier: MIT */
/* core/hmac.c: HMAC with every digest the handshake names (RFC 2202/4231
 * vectors, checked against CPython's hmac), libcrypto mapped only from the
 * first HMAC on, constant-time comparison and random bytes. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hmac.h"
#include "testutil.h"

/* 1 if libcrypto is mapped in this process. */
static int
crypto_mapped(void)
{
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  char line[4096];
  int found = 0;
  while (fgets(line, sizeof line, f))
    found |= strstr(line, "/libcrypto.so") != NULL;
  fclose(f);
  return found;
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", p[i]);
}

static int
mac_is(const char *digest, const char *key, const char *msg, const char *want)
{
  uint8_t out[MP__HMAC_MAX];
  size_t n = 0;
  if (mp__hmac(digest, strlen(digest), key, strlen(key), msg, strlen(msg), out,
               &n))
    return 0;
  char h[2 * MP__HMAC_MAX + 1];
  hex(out, n, h);
  return strcmp(h, want) == 0;
}

static const char jefe_msg[] = "what do ya want for nothing?";

/* In a fresh child (this program may have loaded it already): not mapped
 * before the first HMAC, mapped after it, and the MACs right. */
static void
test_libcrypto_loaded_on_first_hmac(void **state)
{
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (crypto_mapped())
      _exit(1);
    uint8_t r[32];
    if (mp__random_bytes(r, sizeof r) || crypto_mapped())
      _exit(2); /* random bytes need no libcrypto */
    if (!mac_is("sha256", "Jefe", jefe_msg,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
      _exit(3);
    _exit(crypto_mapped() ? 0 : 4);
  }
  assert_int_equal(mp_test_wait_child(pid, 60.0), 0);
}

/* The first HMAC of this process, from several threads at once: one load,
 * every MAC right (run under TSan too). */
static void *
mac_thread(void *arg)
{
  (void)arg;
  int ok = 1;
  for (int i = 0; i < 50; i++)
    ok &= mac_is("md5", "Jefe", jefe_msg, "750c783e6ab0b503eaa86e310a5db738");
  return ok ? arg : NULL;
}

static void
test_first_use_from_threads(void **state)
{
  (void)state;
  pthread_t th[4];
  int tag;
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, mac_thread, &tag), 0);
  for (int i = 0; i < 4; i++) {
    void *r = NULL;
    assert_int_equal(pthread_join(th[i], &r), 0);
    assert_ptr_equal(r, &tag);
  }
}

static void
test_every_digest(void **state)
{
  (void)state;
  assert_true(mac_is("md5", "Jefe", jefe_msg,
                     "750c783e6ab0b503eaa86e310a5db738"));
  assert_true(mac_is("sha256", "Jefe", jefe_msg,
                     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
  assert_true(mac_is("sha384", "Jefe", jefe_msg,
                     "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
                     "8e2240ca5e69e2c78b3239ecfab21649"));
  assert_true(mac_is("sha3_256", "Jefe", jefe_msg,
                     "c7d4072e788877ae3596bbb0da73b887c9171f93095b294ae857fbe2645e1ba5"));
  assert_true(mac_is("sha3_384", "Jefe", jefe_msg,
                     "f1101f8cbf9766fd6764d2ed61903f21ca9b18f57cf3e1a23ca13508a93243ce"
                     "48c045dc007f26a21b3f5e0e9df4c20a"));
  /* an empty key and message */
  assert_true(mac_is("sha256", "", "",
                     "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"));
  uint8_t out[MP__HMAC_MAX];
  size_t n;
  assert_int_equal(mp__hmac("sha1", 4, "k", 1, "m", 1, out, &n), MP_ENOTSUP);
  assert_int_equal(mp__hmac("sha2567", 7, "k", 1, "m", 1, out, &n), MP_ENOTSUP);
  assert_int_equal(mp__hmac("sha25", 5, "k", 1, "m", 1, out, &n), MP_ENOTSUP);
}

static void
test_ct_equal(void **state)
{
  (void)state;
  uint8_t a[48], b[48];
  for (size_t i = 0; i < sizeof a; i++)
    a[i] = b[i] = (uint8_t)(i * 7);
  assert_true(mp__ct_equal(a, b, sizeof a));
  assert_true(mp__ct_equal(a, b, 0));
  for (size_t i = 0; i < sizeof a; i += 13) {
    b[i] ^= 0x80;
    assert_false(mp__ct_equal(a, b, sizeof a));
    b[i] ^= 0x80;
  }
  b[sizeof b - 1] ^= 1;
  assert_false(mp__ct_equal(a, b, sizeof a));
  assert_true(mp__ct_equal(a, b, sizeof a - 1));
}

static void
test_random_bytes(void **state)
{
  (void)state;
  uint8_t a[32], b[32], z[32] = {0};
  assert_int_equal(mp__random_bytes(a, sizeof a), 0);
  assert_int_equal(mp__random_bytes(b, sizeof b), 0);
  assert_true(memcmp(a, b, sizeof a) != 0);
  assert_true(memcmp(a, z, sizeof a) != 0);
  assert_int_equal(mp__random_bytes(a, 0), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_libcrypto_loaded_on_first_hmac),
    cmocka_unit_test(test_first_use_from_threads),
    cmocka_unit_test(test_every_digest),
    cmocka_unit_test(test_ct_equal),
    cmocka_unit_test(test_random_bytes),
};

MP_TEST_MAIN(tests)
