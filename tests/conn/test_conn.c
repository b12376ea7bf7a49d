/* SPDX-License-Identifier: MIT */
/* Connection: Pipe, framing, limits, bad input, timeouts, poll, wait,
 * signals and threads. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn/conn_internal.h"
#include "testutil.h"

/* The second run of the tests turns read-ahead on for every pair. */
static int g_readahead;

static void
pair(mp_conn **a, mp_conn **b)
{
  MP_ASSERT_OK(mp_pipe(a, b, 1));
  if (g_readahead) {
    MP_ASSERT_OK(mp_conn_set_readahead(*a, 1));
    MP_ASSERT_OK(mp_conn_set_readahead(*b, 1));
  }
}

/* Write raw bytes to a connection's socket, bypassing the framing. */
static void
raw(mp_conn *c, const void *p, size_t n)
{
  assert_int_equal(write(mp_conn_fileno(c), p, n), (ssize_t)n);
}

static void
test_duplex_bytes(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_send_bytes(a, "thank you", 9));
  mp_test_recv_expect(b, "thank you", 9, 5.0);
  MP_ASSERT_OK(mp_conn_send_bytes(b, "back", 4));
  mp_test_recv_expect(a, "back", 4, 5.0);
  /* an empty message is a message */
  MP_ASSERT_OK(mp_conn_send_bytes(a, NULL, 0));
  mp_test_recv_expect(b, "", 0, 5.0);
  /* sizes around CPython's one-write threshold */
  size_t sizes[] = { 1, 16384, 16385, 70000 };
  for (size_t i = 0; i < 4; i++) {
    char *buf = malloc(sizes[i]);
    for (size_t k = 0; k < sizes[i]; k++)
      buf[k] = (char)(k * 7 + i);
    MP_ASSERT_OK(mp_conn_send_bytes(a, buf, sizes[i]));
    mp_test_recv_expect(b, buf, sizes[i], 5.0);
    free(buf);
  }
  assert_true(mp_conn_readable(a) && mp_conn_writable(a));
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_wire_format(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_send_bytes(a, "hello", 5));
  unsigned char got[9];
  assert_int_equal(read(mp_conn_fileno(b), got, 9), 9);
  assert_memory_equal(got, "\0\0\0\5hello", 9);
  /* the -1 escape with a 64-bit length is accepted for any length */
  raw(a, "\xff\xff\xff\xff\0\0\0\0\0\0\0\5world", 17);
  mp_test_recv_expect(b, "world", 5, 5.0);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* Small messages go out as one contiguous write (header and payload
 * copied together), larger ones as header + payload: the same bytes on
 * the wire either way, on a socket and on an OS pipe, and a small message
 * still carries descriptors. */
static void
wire_is(mp_conn *w, mp_conn *r, size_t len)
{
  uint8_t *buf = malloc(len + 1), *got = malloc(len + 4);
  for (size_t k = 0; k < len; k++)
    buf[k] = (uint8_t)(k * 13 + len);
  MP_ASSERT_OK(mp_conn_send_bytes(w, buf, len));
  size_t have = 0;
  while (have < len + 4) {
    ssize_t n = read(mp_conn_fileno(r), got + have, len + 4 - have);
    assert_true(n > 0);
    have += (size_t)n;
  }
  uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16),
                    (uint8_t)(len >> 8), (uint8_t)len};
  assert_memory_equal(got, hdr, 4);
  if (len)
    assert_memory_equal(got + 4, buf, len);
  assert_int_equal(mp_conn_poll(r, 0), 0); /* nothing more */
  free(buf);
  free(got);
}

static void
test_small_and_large_sends(void **state)
{
  size_t sizes[] = {0, 1, 63, 64, 511, 512, 513, 4096, 70000};
  for (int duplex = 1; duplex >= 0; duplex--) {
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, duplex));
    mp_conn *r = duplex ? b : a, *w = duplex ? a : b;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      if (sizes[i] > 60000 && !duplex)
        continue; /* (past what an OS pipe holds unread) */
      wire_is(w, r, sizes[i]);
    }
    mp_conn_free(a);
    mp_conn_free(b);
  }
  mp_conn *a, *b;
  pair(&a, &b);
  int p[2];
  assert_int_equal(pipe(p), 0);
  MP_ASSERT_OK(mp__conn_send_msg(a, "fd", 2, &p[1], 1));
  MP_ASSERT_OK(mp__conn_send_msg(a, "after", 5, NULL, 0));
  void *out = NULL;
  size_t n = 0, nfds = 0;
  int *fds = NULL;
  MP_ASSERT_OK(mp__conn_recv_msg(b, &out, &n, 0, &fds, &nfds, 5.0));
  assert_int_equal(n, 2);
  assert_memory_equal(out, "fd", 2);
  assert_int_equal(nfds, 1);
  assert_int_equal(write(fds[0], "z", 1), 1);
  char z = 0;
  assert_int_equal(read(p[0], &z, 1), 1);
  assert_int_equal(z, 'z');
  close(fds[0]);
  free(fds);
  mp_free(out);
  mp_test_recv_expect(b, "after", 5, 5.0);
  close(p[0]);
  close(p[1]);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_send_bytes_at(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  const char *s = "0123456789";
  MP_ASSERT_OK(mp_conn_send_bytes_at(a, s, 10, 3, 4));
  mp_test_recv_expect(b, "3456", 4, 5.0);
  MP_ASSERT_OK(mp_conn_send_bytes_at(a, s, 10, 7, MP_CONN_REST));
  mp_test_recv_expect(b, "789", 3, 5.0);
  MP_ASSERT_OK(mp_conn_send_bytes_at(a, s, 10, 10, MP_CONN_REST));
  mp_test_recv_expect(b, "", 0, 5.0);
  MP_ASSERT_ERR(mp_conn_send_bytes_at(a, s, 10, 11, 0), MP_EINVAL);
  MP_ASSERT_ERR(mp_conn_send_bytes_at(a, s, 10, 5, 6), MP_EINVAL);
  MP_ASSERT_ERR(mp_conn_send_bytes(NULL, s, 1), MP_EINVAL);
  /* nothing was sent by the failures */
  assert_int_equal(mp_conn_poll(b, 0), 0);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_simplex(void **state)
{
  mp_conn *r, *w;
  MP_ASSERT_OK(mp_pipe(&r, &w, 0));
  assert_true(mp_conn_readable(r) && !mp_conn_writable(r));
  assert_true(!mp_conn_readable(w) && mp_conn_writable(w));
  MP_ASSERT_ERR(mp_conn_send_bytes(r, "x", 1), MP_ESTATE);
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_conn_recv_bytes(w, &p, &n, 0, 0), MP_ESTATE);
  MP_ASSERT_ERR(mp_conn_poll(w, 0), MP_ESTATE);
  MP_ASSERT_OK(mp_conn_send_bytes(w, "one way", 7));
  mp_test_recv_expect(r, "one way", 7, 5.0);
  mp_conn_free(r);
  mp_conn_free(w);
}

static void
test_eof_and_close(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_send_bytes(a, "last", 4));
  MP_ASSERT_OK(mp_conn_close(a));
  MP_ASSERT_ERR(mp_conn_close(a), MP_ECLOSED);
  MP_ASSERT_ERR(mp_conn_send_bytes(a, "x", 1), MP_ECLOSED);
  MP_ASSERT_ERR(mp_conn_fileno(a), MP_ECLOSED);
  assert_true(mp_conn_closed(a) && !mp_conn_readable(a));
  /* data sent before the close still arrives, then EOF, every time */
  mp_test_recv_expect(b, "last", 4, 5.0);
  assert_int_equal(mp_conn_poll(b, 0), 1);
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, MP_FOREVER), MP_EEOF);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, MP_FOREVER), MP_EEOF);
  /* writing to a peer that is gone: EPIPE, never SIGPIPE */
  MP_ASSERT_ERR(mp_conn_send_bytes(b, "x", 1), MP_EPIPE);
  /* another reference keeps the object, not the descriptor */
  mp_conn *b2 = mp_conn_ref(b);
  MP_ASSERT_OK(mp_conn_close(b));
  MP_ASSERT_ERR(mp_conn_poll(b2, 0), MP_ECLOSED);
  mp_conn_free(b2);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_maxlength(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_send_bytes(a, "0123456789", 10));
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 9, 1.0), MP_EMSGSIZE);
  /* as in Python, the connection is no longer readable */
  assert_false(mp_conn_readable(b));
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 0), MP_ESTATE);
  MP_ASSERT_ERR(mp_conn_poll(b, 0), MP_ESTATE);
  /* but still writable */
  MP_ASSERT_OK(mp_conn_send_bytes(b, "ok", 2));
  mp_test_recv_expect(a, "ok", 2, 5.0);
  mp_conn_free(a);
  mp_conn_free(b);

  /* exactly maxlength is fine */
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_send_bytes(a, "0123456789", 10));
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 10, 1.0));
  mp_free(p);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_hostile_lengths(void **state)
{
  mp_conn *a, *b;
  void *p;
  size_t n;
  /* 2 GiB - 1 announced, nothing sent: refused from the header alone with
   * the default 1 GiB maximum (no allocation happens). */
  pair(&a, &b);
  raw(a, "\x7f\xff\xff\xff", 4);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_EMSGSIZE);
  mp_conn_free(a);
  mp_conn_free(b);
  /* 2^62 through the escape, with the limit raised to 8 GiB */
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_set_max_recv(b, (uint64_t)8 << 30));
  assert_true(mp_conn_max_recv(b) == (uint64_t)8 << 30);
  raw(a, "\xff\xff\xff\xff\x40\0\0\0\0\0\0\0", 12);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_EMSGSIZE);
  mp_conn_free(a);
  mp_conn_free(b);
  /* with no limit at all, the same header reserves no memory: the receive
   * waits for bytes (and times out) instead of failing to allocate 4 EiB */
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_set_max_recv(b, UINT64_MAX));
  raw(a, "\xff\xff\xff\xff\x40\0\0\0\0\0\0\0", 12);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 0.05), MP_ETIMEDOUT);
  mp_conn_free(a);
  mp_conn_free(b);
  /* a small configured maximum */
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_set_max_recv(b, 100));
  char buf[101] = { 0 };
  MP_ASSERT_OK(mp_conn_send_bytes(a, buf, 100));
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 1.0));
  mp_free(p);
  MP_ASSERT_OK(mp_conn_send_bytes(a, buf, 101));
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_EMSGSIZE);
  mp_conn_free(a);
  mp_conn_free(b);
  /* a large announced length that really arrives only in part: the buffer
   * grows with the data, and the peer's death is reported as torn */
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_set_max_recv(b, UINT64_MAX));
  raw(a, "\xff\xff\xff\xff\0\0\0\x10\0\0\0\0" "abc", 15); /* 64 GiB */
  MP_ASSERT_OK(mp_conn_close(a));
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 5.0), MP_EMALFORMED);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 5.0), MP_EEOF);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_malformed(void **state)
{
  mp_conn *a, *b;
  void *p;
  size_t n;
  /* a negative length other than the escape */
  pair(&a, &b);
  raw(a, "\xff\xff\xff\xfe", 4);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_EMALFORMED);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_ESTATE);
  mp_conn_free(a);
  mp_conn_free(b);
  /* a truncated header */
  pair(&a, &b);
  raw(a, "\0\0", 2);
  MP_ASSERT_OK(mp_conn_close(a));
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_EMALFORMED);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_EEOF);
  mp_conn_free(a);
  mp_conn_free(b);
  /* a truncated escape header */
  pair(&a, &b);
  raw(a, "\xff\xff\xff\xff\0\0", 6);
  MP_ASSERT_OK(mp_conn_close(a));
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 1.0), MP_EMALFORMED);
  mp_conn_free(a);
  mp_conn_free(b);
  /* the peer closing in the middle of a message (recv_bytes_into too) */
  pair(&a, &b);
  raw(a, "\0\0\0\x0a" "abcd", 8);
  MP_ASSERT_OK(mp_conn_close(a));
  char buf[16];
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, sizeof buf, 0, &n, 1.0),
                MP_EMALFORMED);
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, sizeof buf, 0, &n, 1.0),
                MP_EEOF);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_recv_bytes_into(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  int arr1[5] = { 0, 1, 2, 3, 4 };
  int arr2[10] = { 0 };
  size_t n = 0;
  MP_ASSERT_OK(mp_conn_send_bytes(a, arr1, sizeof arr1));
  MP_ASSERT_OK(mp_conn_recv_bytes_into(b, arr2, sizeof arr2, 0, &n, 1.0));
  assert_int_equal(n, sizeof arr1);
  int want[10] = { 0, 1, 2, 3, 4, 0, 0, 0, 0, 0 };
  assert_memory_equal(arr2, want, sizeof want);
  /* with an offset */
  MP_ASSERT_OK(mp_conn_send_bytes(a, "xy", 2));
  char buf[8] = "--------";
  MP_ASSERT_OK(mp_conn_recv_bytes_into(b, buf, 8, 3, &n, 1.0));
  assert_int_equal(n, 2);
  assert_memory_equal(buf, "---xy---", 8);
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 8, 9, &n, 0), MP_EINVAL);
  /* too short: the whole message stays, for a bigger buffer or recv_bytes */
  MP_ASSERT_OK(mp_conn_send_bytes(a, "0123456789", 10));
  MP_ASSERT_OK(mp_conn_send_bytes(a, "after", 5));
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 8, 0, &n, 1.0), MP_ETOOSHORT);
  assert_int_equal(n, 10);
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 8, 0, &n, 1.0), MP_ETOOSHORT);
  char big[12];
  MP_ASSERT_OK(mp_conn_recv_bytes_into(b, big, 12, 2, &n, 1.0));
  assert_int_equal(n, 10);
  assert_memory_equal(big + 2, "0123456789", 10);
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 3, 0, &n, 1.0), MP_ETOOSHORT);
  mp_test_recv_expect(b, "after", 5, 5.0);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_timeouts_keep_partial_messages(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 0), MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 0.05), MP_ETIMEDOUT);
  assert_int_equal(mp_conn_poll(b, 0), 0);
  assert_int_equal(mp_conn_poll(b, 0.02), 0);
  /* half a header, then half a payload: each receive times out and the
   * next continues the same message */
  raw(a, "\0\0", 2);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 0.01), MP_ETIMEDOUT);
  raw(a, "\0\x06" "abc", 5);
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &p, &n, 0, 0.01), MP_ETIMEDOUT);
  char buf[8];
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 8, 0, &n, 0), MP_ETIMEDOUT);
  raw(a, "def", 3);
  mp_test_recv_expect(b, "abcdef", 6, 5.0);
  /* recv_bytes_into reading straight into the caller's buffer, too */
  raw(a, "\0\0\0\x06" "ab", 6);
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 8, 0, &n, 0.01),
                MP_ETIMEDOUT);
  raw(a, "cd", 2);
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 8, 0, &n, 0.01),
                MP_ETIMEDOUT);
  raw(a, "ef", 2);
  memset(buf, 0, sizeof buf);
  MP_ASSERT_OK(mp_conn_recv_bytes_into(b, buf, 8, 0, &n, 1.0));
  assert_int_equal(n, 6);
  assert_memory_equal(buf, "abcdef", 6);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_send_timeout(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_set_send_timeout(a, 0.05));
  /* fill the socket buffer with small messages until a send times out */
  char msg[1000] = { 0 };
  int rc, sent = 0;
  while ((rc = mp_conn_send_bytes(a, msg, sizeof msg)) == 0)
    sent++;
  assert_int_equal(rc, MP_ETIMEDOUT);
  assert_true(sent > 10);
  /* a big message now starts (some bytes fit) and times out: the
   * connection stops being writable rather than send a torn message */
  for (int i = 0; i < sent; i++) {
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 1.0));
    assert_int_equal(n, sizeof msg);
    mp_free(p);
  }
  size_t bigsz = 64 << 20;
  char *big = calloc(1, bigsz);
  MP_ASSERT_ERR(mp_conn_send_bytes(a, big, bigsz), MP_ETIMEDOUT);
  assert_false(mp_conn_writable(a));
  MP_ASSERT_ERR(mp_conn_send_bytes(a, "x", 1), MP_ESTATE);
  free(big);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* ---- large messages ----------------------------------------------------- */

struct sender {
  mp_conn *c;
  const void *buf;
  size_t len;
  int rc;
};

static void *
send_thread(void *arg)
{
  struct sender *s = arg;
  s->rc = mp_conn_send_bytes(s->c, s->buf, s->len);
  return NULL;
}

static void
test_64mib(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  size_t len = 64u << 20;
  uint8_t *buf = malloc(len);
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t)(i * 131 + (i >> 20));
  struct sender s = { a, buf, len, -1 };
  pthread_t t;
  pthread_create(&t, NULL, send_thread, &s);
  mp_test_recv_expect(b, buf, len, 5.0);
  pthread_join(t, NULL);
  MP_ASSERT_OK(s.rc);
  /* and into a caller's buffer */
  s.rc = -1;
  pthread_create(&t, NULL, send_thread, &s);
  uint8_t *into = malloc(len + 8);
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes_into(b, into, len + 8, 8, &n, 30.0));
  assert_int_equal(n, len);
  assert_memory_equal(into + 8, buf, len);
  pthread_join(t, NULL);
  MP_ASSERT_OK(s.rc);
  free(into);
  free(buf);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* One real message above 4 GiB: the escape header on the wire, both ways of
 * receiving it.  The source is untouched anonymous memory (zero pages, no
 * RAM) with a few marked bytes; only the receiver needs the real 4 GiB. */
static void
test_over_4gib(void **state)
{
  const char *san = getenv("MPROC_SANITIZE");
  if ((san && *san) || getenv("MPROC_SKIP_BIG")) {
    printf("# skipped: the > 4 GiB message runs in the normal build only\n");
    skip();
  }
  size_t len = ((size_t)4 << 30) + 3;
  uint8_t *src = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  assert_true(src != MAP_FAILED);
  size_t marks[] = { 0, 1u << 31, ((size_t)1 << 32) - 1, (size_t)1 << 32,
                     len - 1 };
  for (size_t i = 0; i < 5; i++)
    src[marks[i]] = (uint8_t)(0xA0 + i);
  mp_conn *a, *b;
  pair(&a, &b);
  MP_ASSERT_OK(mp_conn_set_max_recv(b, UINT64_MAX));
  struct sender s = { a, src, len, -1 };
  pthread_t t;
  pthread_create(&t, NULL, send_thread, &s);
  /* the header as CPython writes it: -1, then the 64-bit length */
  uint8_t hdr[12];
  size_t need = 0;
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, hdr, 12, 0, &need, 60.0),
                MP_ETOOSHORT);
  assert_true(need == len);
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 600.0));
  pthread_join(t, NULL);
  MP_ASSERT_OK(s.rc);
  assert_true(n == len);
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(((uint8_t *)p)[marks[i]], 0xA0 + i);
  assert_int_equal(((uint8_t *)p)[12345], 0);
  mp_free(p);
  /* the raw header bytes */
  s.rc = -1;
  s.len = ((size_t)1 << 31) + 1; /* just past the 31-bit limit */
  pthread_create(&t, NULL, send_thread, &s);
  assert_int_equal(read(mp_conn_fileno(b), hdr, 12), 12);
  assert_memory_equal(hdr, "\xff\xff\xff\xff\0\0\0\0\x80\0\0\x01", 12);
  /* drain the rest */
  size_t left = s.len;
  uint8_t *sink = malloc(1 << 20);
  while (left) {
    ssize_t k = read(mp_conn_fileno(b), sink, left < (1 << 20) ? left : (1 << 20));
    assert_true(k > 0);
    left -= (size_t)k;
  }
  free(sink);
  pthread_join(t, NULL);
  MP_ASSERT_OK(s.rc);
  munmap(src, len);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* ---- threads ------------------------------------------------------------- */

struct tsend {
  mp_conn *c;
  int id;
  int count;
};

static void *
tsend_thread(void *arg)
{
  struct tsend *t = arg;
  uint8_t buf[70000];
  for (int i = 0; i < t->count; i++) {
    /* sizes from tiny to larger than a socket buffer write */
    size_t len = 8 + (size_t)((i * 7919) % (sizeof buf - 8));
    memset(buf, t->id, len);
    memcpy(buf, &i, sizeof i);
    if (mp_conn_send_bytes(t->c, buf, len))
      return (void *)1;
  }
  return NULL;
}

static void
test_two_threads_never_interleave(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  enum { N = 400 };
  struct tsend t1 = { a, 0x11, N }, t2 = { a, 0x22, N };
  pthread_t th1, th2;
  pthread_create(&th1, NULL, tsend_thread, &t1);
  pthread_create(&th2, NULL, tsend_thread, &t2);
  int next[2] = { 0, 0 };
  for (int k = 0; k < 2 * N; k++) {
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 30.0));
    uint8_t *u = p;
    int i;
    memcpy(&i, u, sizeof i);
    uint8_t id = u[n - 1];
    assert_true(id == 0x11 || id == 0x22);
    int w = id == 0x22;
    assert_int_equal(i, next[w]); /* each sender's messages in order */
    next[w]++;
    assert_int_equal(n, 8 + (size_t)((i * 7919) % (70000 - 8)));
    for (size_t j = sizeof i; j < n; j++)
      if (u[j] != id)
        fail_msg("message %d of sender %x torn at byte %zu", i, id, j);
    mp_free(p);
  }
  void *r1, *r2;
  pthread_join(th1, &r1);
  pthread_join(th2, &r2);
  assert_null(r1);
  assert_null(r2);
  mp_conn_free(a);
  mp_conn_free(b);
}

struct trecv {
  mp_conn *c;
  int got;
};

static void *
trecv_thread(void *arg)
{
  struct trecv *t = arg;
  for (;;) {
    void *p;
    size_t n;
    int rc = mp_conn_recv_bytes(t->c, &p, &n, 0, 30.0);
    if (rc)
      return rc == MP_EEOF ? NULL : (void *)1;
    /* every message is whole: its bytes all equal its first */
    for (size_t j = 1; j < n; j++)
      if (((uint8_t *)p)[j] != ((uint8_t *)p)[0])
        return (void *)2;
    t->got++;
    mp_free(p);
  }
}

static void
test_two_threads_receiving(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  struct trecv r1 = { b, 0 }, r2 = { b, 0 };
  pthread_t th1, th2;
  pthread_create(&th1, NULL, trecv_thread, &r1);
  pthread_create(&th2, NULL, trecv_thread, &r2);
  uint8_t buf[5000];
  for (int i = 0; i < 1000; i++) {
    size_t len = 1 + (size_t)(i * 31) % sizeof buf;
    memset(buf, i & 0xff, len);
    MP_ASSERT_OK(mp_conn_send_bytes(a, buf, len));
  }
  MP_ASSERT_OK(mp_conn_close(a));
  void *x1, *x2;
  pthread_join(th1, &x1);
  pthread_join(th2, &x2);
  assert_null(x1);
  assert_null(x2);
  assert_int_equal(r1.got + r2.got, 1000);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* ---- signals ------------------------------------------------------------- */

static atomic_int signals_seen; /* lock-free: safe in a handler */

static void
on_signal(int sig)
{
  (void)sig;
  atomic_fetch_add(&signals_seen, 1);
}

struct pester {
  pthread_t target;
  atomic_int stop;
};

static void *
pester_thread(void *arg)
{
  struct pester *p = arg;
  while (!atomic_load(&p->stop)) {
    pthread_kill(p->target, SIGUSR1);
    usleep(2000);
  }
  return NULL;
}

struct delayed {
  mp_conn *c;
  size_t len;
};

static void *
delayed_send(void *arg)
{
  struct delayed *d = arg;
  /* wait until the receiver has been interrupted many times */
  while (signals_seen < 20)
    usleep(1000);
  uint8_t *buf = calloc(1, d->len);
  int rc = mp_conn_send_bytes(d->c, buf, d->len);
  free(buf);
  return rc ? (void *)1 : NULL;
}

static void
test_eintr_never_surfaces(void **state)
{
  /* A handler without SA_RESTART makes every blocking call fail with EINTR
   * when the signal lands; mproc must retry (with the time left). */
  struct sigaction sa = { .sa_handler = on_signal }, old;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, &old);
  mp_conn *a, *b;
  pair(&a, &b);
  signals_seen = 0;
  struct pester p = { .target = pthread_self() };
  pthread_t pt, st;
  pthread_create(&pt, NULL, pester_thread, &p);
  /* blocked in a receive (forever), in poll, in wait, in a timed receive */
  struct delayed d = { a, 3 << 20 };
  pthread_create(&st, NULL, delayed_send, &d);
  void *m;
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &m, &n, 0, MP_FOREVER));
  assert_int_equal(n, d.len);
  mp_free(m);
  void *r;
  pthread_join(st, &r);
  assert_null(r);
  signals_seen = 0;
  pthread_create(&st, NULL, delayed_send, &d);
  assert_int_equal(mp_conn_poll(b, MP_FOREVER), 1);
  mp_waitable w[] = { MP_WAITABLE_CONN(b) };
  assert_int_equal(mp_wait(w, 1, 60.0), 1);
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &m, &n, 0, 60.0));
  mp_free(m);
  pthread_join(st, &r);
  assert_null(r);
  /* a timed receive still times out on time despite the signals */
  signals_seen = 0;
  MP_ASSERT_ERR(mp_conn_recv_bytes(b, &m, &n, 0, 0.2), MP_ETIMEDOUT);
  assert_true(signals_seen > 0);
  /* a big send blocked on a full socket, interrupted, completes */
  struct sender s = { a, NULL, 8 << 20, -1 };
  s.buf = calloc(1, s.len);
  /* the pester thread targets this thread; send from here, read there */
  struct trecv rr = { b, 0 };
  pthread_t rt;
  pthread_create(&rt, NULL, trecv_thread, &rr);
  MP_ASSERT_OK(mp_conn_send_bytes(a, s.buf, s.len));
  MP_ASSERT_OK(mp_conn_close(a));
  pthread_join(rt, &r);
  assert_null(r);
  assert_int_equal(rr.got, 1);
  free((void *)s.buf);
  atomic_store(&p.stop, 1);
  pthread_join(pt, NULL);
  sigaction(SIGUSR1, &old, NULL);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* ---- poll and wait ------------------------------------------------------- */

static void
test_poll(void **state)
{
  mp_conn *a, *b;
  pair(&a, &b);
  assert_int_equal(mp_conn_poll(b, 0), 0);
  MP_ASSERT_OK(mp_conn_send_bytes(a, "x", 1));
  assert_int_equal(mp_conn_poll(b, 0), 1);
  assert_int_equal(mp_conn_poll(b, MP_FOREVER), 1);
  mp_test_recv_expect(b, "x", 1, 5.0);
  assert_int_equal(mp_conn_poll(b, 0), 0);
  MP_ASSERT_ERR(mp_conn_poll(NULL, 0), MP_EINVAL);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_wait_items(void **state)
{
  mp_conn *a1, *b1, *a2, *b2;
  pair(&a1, &b1);
  pair(&a2, &b2);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  mp_waitable w[] = { MP_WAITABLE_CONN(b1), MP_WAITABLE_CONN(b2),
                      MP_WAITABLE_FD(pfd[0]) };
  assert_int_equal(mp_wait(w, 3, 0), 0);
  assert_int_equal(mp_wait(w, 3, 0.02), 0);
  MP_ASSERT_OK(mp_conn_send_bytes(a2, "x", 1));
  assert_int_equal(mp_wait(w, 3, MP_FOREVER), 1);
  assert_true(!w[0].ready && w[1].ready && !w[2].ready);
  /* a raw fd that hangs up (a process sentinel) is ready */
  close(pfd[1]);
  /* a closed peer is ready */
  MP_ASSERT_OK(mp_conn_close(a1));
  assert_int_equal(mp_wait(w, 3, MP_FOREVER), 3);
  assert_true(w[0].ready && w[1].ready && w[2].ready);
  /* bad items */
  mp_waitable bad[] = { MP_WAITABLE_FD(-1) };
  MP_ASSERT_ERR(mp_wait(bad, 1, 0), MP_EINVAL);
  MP_ASSERT_OK(mp_conn_close(b2));
  MP_ASSERT_ERR(mp_wait(w, 2, 0), MP_ECLOSED);
  mp_waitable wo[] = { MP_WAITABLE_CONN(a2) };
  mp_conn *r, *wr;
  MP_ASSERT_OK(mp_pipe(&r, &wr, 0));
  wo[0].u.conn = wr;
  MP_ASSERT_ERR(mp_wait(wo, 1, 0), MP_ESTATE);
  assert_int_equal(mp_wait(NULL, 0, 0), 0);
  close(pfd[0]);
  mp_conn_free(r);
  mp_conn_free(wr);
  mp_conn_free(a1);
  mp_conn_free(b1);
  mp_conn_free(a2);
  mp_conn_free(b2);
}

/* The seeds' wait() example: 4 writers each send 10 messages and close;
 * the reader removes a reader from its list when it reports EOF.  Writers
 * are forked processes (the fork start method's situation: each child holds
 * only its own write end). */
static void
test_seed_wait_example(void **state)
{
  enum { W = 4, M = 10 };
  mp_conn *readers[W];
  pid_t pids[W];
  for (int i = 0; i < W; i++) {
    mp_conn *r, *w;
    MP_ASSERT_OK(mp_pipe(&r, &w, 0));
    readers[i] = r;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      for (int k = 0; k < i; k++)
        mp_conn_close(readers[k]);
      mp_conn_close(r);
      for (int k = 0; k < M; k++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "(%d, 'Process-%d')", k, i + 1);
        if (mp_conn_send_bytes(w, msg, (size_t)len))
          _exit(1);
      }
      mp_conn_close(w);
      _exit(0);
    }
    pids[i] = pid;
    /* close our copy of the write end so the child's close means EOF */
    MP_ASSERT_OK(mp_conn_close(w));
    mp_conn_free(w);
  }
  int live = W, got[W] = { 0 };
  mp_conn *list[W];
  memcpy(list, readers, sizeof list);
  while (live) {
    mp_waitable w[W];
    for (int i = 0; i < live; i++)
      w[i] = MP_WAITABLE_CONN(list[i]);
    int n = mp_wait(w, (size_t)live, MP_FOREVER);
    assert_true(n > 0);
    for (int i = live - 1; i >= 0; i--) {
      if (!w[i].ready)
        continue;
      void *p;
      size_t len;
      int rc = mp_conn_recv_bytes(list[i], &p, &len, 0, MP_FOREVER);
      if (rc == MP_EEOF) {
        list[i] = list[--live];
        continue;
      }
      MP_ASSERT_OK(rc);
      int k, who;
      assert_int_equal(sscanf(p, "(%d, 'Process-%d')", &k, &who), 2);
      assert_int_equal(k, got[who - 1]); /* in order per writer */
      got[who - 1]++;
      mp_free(p);
    }
  }
  for (int i = 0; i < W; i++) {
    assert_int_equal(got[i], M);
    int st;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mp_conn_free(readers[i]);
  }
}

static void
test_new_fd(void **state)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_conn_new_fd(&a, sv[0], 1, 1));
  MP_ASSERT_OK(mp_conn_new_fd(&b, sv[1], 1, 0));
  assert_int_equal(mp_conn_fileno(a), sv[0]);
  MP_ASSERT_OK(mp_conn_send_bytes(a, "fd", 2));
  mp_test_recv_expect(b, "fd", 2, 5.0);
  MP_ASSERT_ERR(mp_conn_new_fd(&a, -1, 1, 1), MP_EINVAL);
  MP_ASSERT_ERR(mp_conn_new_fd(&a, 1000, 1, 1), MP_EBADF);
  MP_ASSERT_ERR(mp_conn_new_fd(&a, sv[0], 0, 0), MP_EINVAL);
  mp_conn_free(a);
  mp_conn_free(b);
  /* a plain pipe works too */
  int p[2];
  assert_int_equal(pipe(p), 0);
  mp_conn *r, *w;
  MP_ASSERT_OK(mp_conn_new_fd(&r, p[0], 1, 0));
  MP_ASSERT_OK(mp_conn_new_fd(&w, p[1], 0, 1));
  MP_ASSERT_OK(mp_conn_send_bytes(w, "pipe", 4));
  mp_test_recv_expect(r, "pipe", 4, 5.0);
  void *m;
  size_t n;
  MP_ASSERT_ERR(mp_conn_recv_bytes(r, &m, &n, 0, 0.01), MP_ETIMEDOUT);
  mp_conn_free(w);
  MP_ASSERT_ERR(mp_conn_recv_bytes(r, &m, &n, 0, 1.0), MP_EEOF);
  mp_conn_free(r);
}

/* Read-ahead: messages past the current one wait in the object; poll and
 * wait see them; it cannot be turned off while it holds bytes. */
static void
test_readahead_buffers(void **state)
{
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  MP_ASSERT_OK(mp_conn_set_readahead(b, 1));
  MP_ASSERT_OK(mp_conn_send_bytes(a, "one", 3));
  MP_ASSERT_OK(mp_conn_send_bytes(a, "two", 3));
  MP_ASSERT_OK(mp_conn_send_bytes(a, "three", 5));
  mp_test_recv_expect(b, "one", 3, 5.0);
  /* the others were read ahead: the socket itself is empty now */
  struct pollfd pf = { .fd = mp_conn_fileno(b), .events = POLLIN };
  assert_int_equal(poll(&pf, 1, 0), 0);
  assert_int_equal(mp_conn_poll(b, 0), 1);
  mp_waitable w[] = { MP_WAITABLE_CONN(b) };
  assert_int_equal(mp_wait(w, 1, 0), 1);
  MP_ASSERT_ERR(mp_conn_set_readahead(b, 0), MP_EBUSY);
  char buf[2];
  size_t n;
  MP_ASSERT_ERR(mp_conn_recv_bytes_into(b, buf, 2, 0, &n, 0), MP_ETOOSHORT);
  assert_int_equal(n, 3);
  mp_test_recv_expect(b, "two", 3, 5.0);
  mp_test_recv_expect(b, "three", 5, 5.0);
  assert_int_equal(mp_conn_poll(b, 0), 0);
  MP_ASSERT_OK(mp_conn_set_readahead(b, 0));
  MP_ASSERT_OK(mp_conn_send_bytes(a, "four", 4));
  mp_test_recv_expect(b, "four", 4, 5.0);
  MP_ASSERT_ERR(mp_conn_set_readahead(NULL, 1), MP_EINVAL);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* The tests built on pair() again with read-ahead on, named
 * "test[readahead]" so a failure says which mode it was. */
static int
readahead_on(void **state)
{
  g_readahead = 1;
  return 0;
}

static int
readahead_off(void **state)
{
  g_readahead = 0;
  return 0;
}

#define RA(f) {#f "[readahead]", f, readahead_on, readahead_off, NULL}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_duplex_bytes),
    cmocka_unit_test(test_wire_format),
    cmocka_unit_test(test_send_bytes_at),
    cmocka_unit_test(test_small_and_large_sends),
    cmocka_unit_test(test_simplex),
    cmocka_unit_test(test_eof_and_close),
    cmocka_unit_test(test_maxlength),
    cmocka_unit_test(test_hostile_lengths),
    cmocka_unit_test(test_malformed),
    cmocka_unit_test(test_recv_bytes_into),
    cmocka_unit_test(test_timeouts_keep_partial_messages),
    cmocka_unit_test(test_send_timeout),
    cmocka_unit_test(test_64mib),
    cmocka_unit_test(test_over_4gib),
    cmocka_unit_test(test_two_threads_never_interleave),
    cmocka_unit_test(test_two_threads_receiving),
    cmocka_unit_test(test_eintr_never_surfaces),
    cmocka_unit_test(test_poll),
    cmocka_unit_test(test_wait_items),
    cmocka_unit_test(test_seed_wait_example),
    cmocka_unit_test(test_new_fd),
    RA(test_readahead_buffers),
    RA(test_duplex_bytes),
    RA(test_wire_format),
    RA(test_send_bytes_at),
    RA(test_small_and_large_sends),
    RA(test_eof_and_close),
    RA(test_maxlength),
    RA(test_hostile_lengths),
    RA(test_malformed),
    RA(test_recv_bytes_into),
    RA(test_timeouts_keep_partial_messages),
    RA(test_64mib),
    RA(test_two_threads_never_interleave),
    RA(test_two_threads_receiving),
    RA(test_eintr_never_surfaces),
    RA(test_poll),
    RA(test_wait_items),
};

MP_TEST_MAIN(tests)
