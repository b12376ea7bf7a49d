/* SPDX-License-Identifier: MIT */
/* fd helpers: CLOEXEC, off-stdio numbering, full reads/writes across
 * signals, deadlines, SCM_RIGHTS passing and its limits. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/fd.h"
#include "testutil.h"

#include <math.h>

static void
test_pipe_is_cloexec_and_off_stdio(void **state)
{
  /* With stdin closed, a naive pipe() would return fd 0. */
  int saved = dup(0);
  close(0);
  int p[2];
  MP_ASSERT_OK(mp__pipe(p));
  assert_true(p[0] > 2 && p[1] > 2);
  assert_true(fcntl(p[0], F_GETFD) & FD_CLOEXEC);
  assert_true(fcntl(p[1], F_GETFD) & FD_CLOEXEC);
  assert_false(mp__fd_is_open(0));
  dup2(saved, 0);
  close(saved);
  mp__close(p[0]);
  mp__close(p[1]);
  int s[2];
  MP_ASSERT_OK(mp__socketpair(SOCK_STREAM, s));
  assert_true(fcntl(s[0], F_GETFD) & FD_CLOEXEC);
  int d = mp__dup(s[0]);
  assert_true(d > 2);
  assert_true(fcntl(d, F_GETFD) & FD_CLOEXEC);
  mp__close(d);
  mp__close(s[0]);
  mp__close(s[1]);
  MP_ASSERT_ERR(mp__dup(-1), MP_EBADF);
  MP_ASSERT_ERR(mp__fd_set_cloexec(-1, 1), MP_EBADF);
  MP_ASSERT_ERR(mp__fd_set_nonblock(-1, 1), MP_EBADF);
}

struct writer {
  int fd;
  size_t len;
};

static void *
write_big(void *arg)
{
  struct writer *w = arg;
  char *buf = malloc(w->len);
  for (size_t i = 0; i < w->len; i++)
    buf[i] = (char)(i * 7);
  intptr_t rc = mp__write_all(w->fd, buf, w->len);
  free(buf);
  return (void *)rc;
}

static void
on_alarm(int sig)
{
  (void)sig;
}

static void
test_full_io_survives_signals_and_partial_transfers(void **state)
{
  /* 4 MiB through a pipe (64 KiB buffer) while SIGALRM interrupts the
   * blocked calls every millisecond: every byte arrives, in order. */
  struct sigaction sa = {.sa_handler = on_alarm}, old;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, &old); /* no SA_RESTART: calls see EINTR */
  struct itimerval it = {{0, 1000}, {0, 1000}}, oldit;
  setitimer(ITIMER_REAL, &it, &oldit);
  int p[2];
  MP_ASSERT_OK(mp__pipe(p));
  struct writer w = {p[1], 4 << 20};
  pthread_t t;
  pthread_create(&t, NULL, write_big, &w);
  char *buf = malloc(w.len);
  size_t got = 0;
  MP_ASSERT_OK(mp__read_full(p[0], buf, w.len, &got));
  assert_int_equal(got, w.len);
  void *rc;
  pthread_join(t, &rc);
  assert_int_equal((intptr_t)rc, 0);
  for (size_t i = 0; i < w.len; i++)
    if (buf[i] != (char)(i * 7))
      fail_msg("byte %zu differs", i);
  free(buf);
  setitimer(ITIMER_REAL, &oldit, NULL);
  sigaction(SIGALRM, &old, NULL);
  /* EOF: a clean one at a boundary, and one in the middle */
  char small[8];
  MP_ASSERT_OK(mp__write_all(p[1], "abc", 3));
  mp__close(p[1]);
  MP_ASSERT_ERR(mp__read_full(p[0], small, 8, &got), MP_EEOF);
  assert_int_equal(got, 3);
  MP_ASSERT_ERR(mp__read_full(p[0], small, 8, &got), MP_EEOF);
  assert_int_equal(got, 0);
  mp__close(p[0]);
}

static void
test_write_to_closed_reader_is_epipe(void **state)
{
  mp__ignore_sigpipe();
  int p[2];
  MP_ASSERT_OK(mp__pipe(p));
  mp__close(p[0]);
  MP_ASSERT_ERR(mp__write_all(p[1], "x", 1), MP_EPIPE);
  mp__close(p[1]);
  int s[2];
  MP_ASSERT_OK(mp__socketpair(SOCK_STREAM, s));
  mp__close(s[0]);
  MP_ASSERT_ERR(mp__write_all(s[1], "x", 1), MP_EPIPE);
  mp__close(s[1]);
}

/* A deadline by the one timeout rule (the argument is known valid). */
static mp__deadline
dl_in(double timeout)
{
  mp__deadline d;
  assert_int_equal(mp__deadline_set(timeout, &d), 0);
  return d;
}

static void
test_poll_deadline(void **state)
{
  int p[2];
  MP_ASSERT_OK(mp__pipe(p));
  int64_t t0 = mp__now_ns();
  MP_ASSERT_ERR(mp__poll_fd(p[0], POLLIN, dl_in(0.05)),
                MP_ETIMEDOUT);
  assert_true(mp__now_ns() - t0 >= 50000000); /* never wakes early */
  MP_ASSERT_ERR(mp__poll_fd(p[0], POLLIN, dl_in(0)), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp__write_all(p[1], "x", 1));
  assert_true(mp__poll_fd(p[0], POLLIN, dl_in(0)) & POLLIN);
  mp__close(p[1]);
  mp__close(p[0]);
  MP_ASSERT_ERR(mp__poll_fd(p[0], POLLIN, dl_in(0)), MP_EBADF);
}

static void
test_pass_fds(void **state)
{
  int s[2], p[2];
  MP_ASSERT_OK(mp__socketpair(SOCK_STREAM, s));
  MP_ASSERT_OK(mp__pipe(p));
  int two[2] = {p[0], p[1]};
  MP_ASSERT_OK(mp__send_fds(s[0], "hello", 5, two, 2));
  char buf[16];
  size_t got, n;
  int fds[4];
  MP_ASSERT_OK(mp__recv_fds(s[1], buf, sizeof buf, &got, fds, 4, &n));
  assert_int_equal(got, 5);
  assert_memory_equal(buf, "hello", 5);
  assert_int_equal(n, 2);
  assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  /* the received pair is the same pipe */
  MP_ASSERT_OK(mp__write_all(fds[1], "z", 1));
  MP_ASSERT_OK(mp__read_full(p[0], buf, 1, NULL));
  assert_int_equal(buf[0], 'z');
  mp__close(fds[0]);
  mp__close(fds[1]);
  /* more fds than the receiver accepts: all closed, MP_ELIMIT */
  int before = mp_test_count_fds();
  MP_ASSERT_OK(mp__send_fds(s[0], "x", 1, two, 2));
  MP_ASSERT_ERR(mp__recv_fds(s[1], buf, sizeof buf, &got, fds, 1, &n),
                MP_ELIMIT);
  assert_int_equal(mp_test_count_fds(), before);
  int many[MP__MAX_FDS_PER_MSG + 1];
  for (int i = 0; i <= MP__MAX_FDS_PER_MSG; i++)
    many[i] = p[0];
  MP_ASSERT_ERR(mp__send_fds(s[0], "x", 1, many, MP__MAX_FDS_PER_MSG + 1),
                MP_ELIMIT);
  MP_ASSERT_ERR(mp__send_fds(s[0], "", 0, two, 1), MP_EINVAL);
  /* EOF */
  mp__close(s[0]);
  MP_ASSERT_OK(mp__recv_fds(s[1], buf, sizeof buf, &got, fds, 4, &n));
  assert_int_equal(got, 0);
  assert_int_equal(n, 0);
  mp__close(s[1]);
  mp__close(p[0]);
  mp__close(p[1]);
}

static void
test_deadlines(void **state)
{
  assert_int_equal(dl_in(MP_FOREVER), MP__NO_DEADLINE);
  assert_int_equal(mp__deadline_poll_ms(MP__NO_DEADLINE), -1);
  assert_int_equal(mp__deadline_poll_ms(dl_in(0)), 0);
  int ms = mp__deadline_poll_ms(dl_in(1.0005));
  assert_true(ms >= 1000 && ms <= 1001);
  struct timespec ts;
  int forever;
  MP_ASSERT_OK(mp__deadline_timespec(MP__NO_DEADLINE, &ts, &forever));
  assert_true(forever);
  MP_ASSERT_ERR(mp__deadline_timespec(dl_in(0), &ts, &forever),
                MP_ETIMEDOUT);
  assert_false(mp__deadline_passed(dl_in(10)));

  /* the one rule: <= 0 (negative included) does not block, +inf and huge
   * values have no limit, NaN is MP_EINVAL */
  mp__deadline d = 123;
  assert_true(MP_FOREVER > 0 && isinf(MP_FOREVER));
  assert_int_equal(dl_in(MP_FOREVER), MP__NO_DEADLINE);
  assert_int_equal(dl_in(1e12), MP__NO_DEADLINE);
  assert_true(mp__deadline_passed(dl_in(-1.0)));
  assert_true(mp__deadline_passed(dl_in(-HUGE_VAL)));
  assert_true(mp__deadline_passed(dl_in(0.0)));
  assert_int_equal(mp__deadline_poll_ms(dl_in(-5)), 0);
  MP_ASSERT_ERR(mp__deadline_set(NAN, &d), MP_EINVAL);
  assert_true(mp__deadline_passed(d)); /* a caller going on does not block */
  MP_ASSERT_ERR(mp__timeout_check(NAN), MP_EINVAL);
  MP_ASSERT_OK(mp__timeout_check(-1));
  MP_ASSERT_OK(mp__timeout_field_check(0, "t"));
  MP_ASSERT_OK(mp__timeout_field_check(MP_FOREVER, "t"));
  MP_ASSERT_ERR(mp__timeout_field_check(-1, "t"), MP_EINVAL);
  MP_ASSERT_ERR(mp__timeout_field_check(NAN, "t"), MP_EINVAL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_pipe_is_cloexec_and_off_stdio),
    cmocka_unit_test(test_full_io_survives_signals_and_partial_transfers),
    cmocka_unit_test(test_write_to_closed_reader_is_epipe),
    cmocka_unit_test(test_poll_deadline),
    cmocka_unit_test(test_pass_fds),
    cmocka_unit_test(test_deadlines),
};

MP_TEST_MAIN(tests)
