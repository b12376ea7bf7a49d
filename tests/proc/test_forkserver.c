/* SPDX-License-Identifier: MIT */
/* The forkserver's start protocol (forkserver.c): a start is one packet to
 * an announced spare.  Instructions of every size (inline, and in a memfd
 * past what one packet carries) under every method; a spare or a server
 * that died before a start; a server that cannot fork (the error is the
 * start's, and the next start after fork works again succeeds); many
 * children started at once from several threads, all running together;
 * neither the server nor a child of a program that never authenticated maps
 * libcrypto (it is loaded on the first HMAC). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc/proc_internal.h"
#include "testutil.h"

/* A bound for a join that must succeed (a broken build would hang). */
#define JOIN_BOUND 60.0

static uint64_t
checksum(const uint8_t *p, size_t n)
{
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static int
count_fds(void)
{
  return mp_test_count_fds() - 3; /* beyond stdio */
}

/* args: (conn, bytes): sends back (len, checksum, descriptors beyond
 * stdio) and returns 0. */
static int
t_echo_sum(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  const void *data;
  size_t len;
  if (!c || mp_bytes_get(mp_seq_item(args, 1), &data, &len))
    return 40;
  uint64_t out[3] = {len, checksum((const uint8_t *)data, len),
                     (uint64_t)count_fds()};
  return mp_conn_send_bytes(c, out, sizeof out) ? 41 : 0;
}

static mp_process *
start(mp_context *ctx, mp_target_fn fn, mp_obj *args)
{
  mp_process *p = NULL;
  MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = fn,
                                                           .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  return p;
}

static void
expect_code(mp_process *p, int want)
{
  MP_ASSERT_OK(mp_process_join(p, JOIN_BOUND));
  int code = -1000;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, want);
  mp_process_free(p);
}

/* 1 if the maps of process `pid` (0: this one) name libcrypto. */
static int
maps_crypto(pid_t pid)
{
  char path[64];
  snprintf(path, sizeof path, pid ? "/proc/%d/maps" : "/proc/self/maps",
           (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char line[4096];
  int found = 0;
  while (fgets(line, sizeof line, f))
    found |= strstr(line, "/libcrypto.so") != NULL;
  fclose(f);
  return found;
}

static int
t_crypto_mapped(mp_obj *args)
{
  (void)args;
  return maps_crypto(0) == 0 ? 0 : 7;
}

/* Nothing here authenticates: no process maps libcrypto (every fork of
 * the server copies a smaller address space). */
static void
test_no_libcrypto_without_auth(void **state)
{
  mp_context *ctx = mp_test_context(state);
  assert_int_equal(maps_crypto(0), 0);
  expect_code(start(ctx, t_crypto_mapped, mp_tuple_take(0)), 0);
  if (!strcmp(mp_test_method(state), "forkserver")) {
    pid_t fs = mp__forkserver_pid();
    assert_true(fs > 0);
    assert_int_equal(maps_crypto(fs), 0);
  }
}

/* Instructions around the size one packet carries and far past it. */
static void
test_instructions_of_every_size(void **state)
{
  mp_context *ctx = mp_test_context(state);
  const size_t sizes[] = {0, 100, MP__BOOT_INLINE_MAX - 400,
                          MP__BOOT_INLINE_MAX - 200, MP__BOOT_INLINE_MAX,
                          MP__BOOT_INLINE_MAX + 1, 4u << 20};
  uint8_t *buf = malloc(4u << 20);
  assert_non_null(buf);
  for (size_t i = 0; i < (4u << 20); i++)
    buf[i] = (uint8_t)(i * 131 + (i >> 9));
  int fork_child = !strcmp(mp_test_method(state), "fork");
  for (size_t k = 0; k < MP__ARRAY_LEN(sizes); k++) {
    mp_conn *mine, *theirs;
    mp_test_pipe(&mine, &theirs, 1);
    mp_process *p = start(ctx, t_echo_sum,
                          MP_TUPLE(mp_conn_obj(theirs),
                                   mp_bytes_new(buf, sizes[k])));
    mp_conn_free(theirs);
    void *reply;
    size_t len;
    MP_ASSERT_OK(mp_conn_recv_bytes(mine, &reply, &len, 0, JOIN_BOUND));
    assert_int_equal(len, 3 * sizeof(uint64_t));
    uint64_t got[3];
    memcpy(got, reply, sizeof got);
    mp_free(reply);
    assert_int_equal(got[0], sizes[k]);
    assert_true(got[1] == checksum(buf, sizes[k]));
    /* spawn, forkserver: the parent's pidfd and the connection, nothing
     * of the way the instructions came */
    if (!fork_child)
      assert_int_equal(got[2], 2);
    expect_code(p, 0);
    mp_conn_free(mine);
  }
  free(buf);
}

static int
t_return(mp_obj *args)
{
  int64_t v = 0;
  mp_int_get(mp_seq_item(args, 0), &v);
  return (int)v;
}

/* The server's child that is not running a target: its spare (0 if it
 * has none; the test runs no forkserver child meanwhile). */
static pid_t
find_spare(pid_t server)
{
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)server,
           (int)server);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  pid_t spare = 0;
  for (char *s = strtok(buf, " \n"); s; s = strtok(NULL, " \n")) {
    assert_int_equal(spare, 0); /* one spare at a time */
    spare = atoi(s);
  }
  return spare;
}

/* The server's spare, once there is one (the server forks it after the
 * last was taken, maybe right now). */
static pid_t
wait_spare(pid_t server)
{
  pid_t spare;
  mp__deadline dl;
  mp__deadline_set(JOIN_BOUND, &dl);
  while (!(spare = find_spare(server)) && !mp__deadline_passed(dl))
    sched_yield();
  return spare;
}

/* Wait until the process of `pidfd` has ended. */
static void
wait_ended(int pidfd)
{
  struct pollfd pfd = {pidfd, POLLIN, 0};
  assert_int_equal(poll(&pfd, 1, (int)(JOIN_BOUND * 1000)), 1);
}

/* Someone kills the announced spare: the next start is not spoiled. */
static void
test_spare_killed(void **state)
{
  (void)state;
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context("forkserver", &ctx));
  expect_code(start(ctx, t_return, MP_TUPLE(mp_int_new(3))), 3);
  pid_t server = mp__forkserver_pid();
  assert_true(server > 0);
  for (int round = 0; round < 3; round++) {
    pid_t spare = wait_spare(server);
    assert_true(spare > 0);
    int fd = (int)syscall(SYS_pidfd_open, spare, 0);
    assert_true(fd >= 0);
    assert_int_equal(kill(spare, SIGKILL), 0);
    wait_ended(fd);
    close(fd);
    expect_code(start(ctx, t_return, MP_TUPLE(mp_int_new(10 + round))),
                10 + round);
  }
  assert_int_equal(mp__forkserver_pid(), server);
  mp__forkserver_stop();
}

/* The server was killed between starts: the next start makes another. */
static void
test_server_killed_between_starts(void **state)
{
  (void)state;
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context("forkserver", &ctx));
  for (int round = 0; round < 3; round++) {
    expect_code(start(ctx, t_return, MP_TUPLE(mp_int_new(round))), round);
    pid_t server = mp__forkserver_pid();
    assert_true(server > 0);
    assert_int_equal(kill(server, SIGKILL), 0);
    assert_int_equal(waitpid(server, NULL, 0), server);
    expect_code(start(ctx, t_return, MP_TUPLE(mp_int_new(7))), 7);
    pid_t again = mp__forkserver_pid();
    assert_true(again > 0 && again != server);
  }
  mp__forkserver_stop();
}

/* In a child of the test, exits with 0 or the step that failed. */
static int
run(mp_context *ctx, int code)
{
  mp_process *p;
  if (mp_process_new(&p, ctx,
                     &(mp_process_opts){.target = t_return,
                                        .args = MP_TUPLE(mp_int_new(code))}))
    return -1;
  int rc = mp_process_start(p);
  if (!rc && !(rc = mp_process_join(p, JOIN_BOUND))) {
    int got = -1;
    rc = mp_process_exitcode(p, &got);
    if (!rc && got != code)
      rc = MP_EINVAL;
  }
  mp_process_free(p);
  return rc;
}

/* A server that cannot fork: the start that finds no spare fails with the
 * error (EAGAIN, the process limit); once forking works again the next
 * start succeeds.  In a child of the test as a user nothing else runs as
 * (a uid of its own pid: root's processes know no RLIMIT_NPROC). */
static void
test_server_cannot_fork(void **state)
{
  (void)state;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    uid_t lone = (uid_t)(1000000 + getpid());
    mp_context *ctx;
    if (setgid(lone) || setuid(lone) || mp_get_context("forkserver", &ctx))
      _exit(2);
    if (run(ctx, 1))
      _exit(3);
    pid_t server = mp__forkserver_pid();
    if (server <= 0 || wait_spare(server) <= 0)
      _exit(4);
    /* From now on the server cannot fork: the announced spare still
     * serves one start, the next finds none. */
    struct rlimit lim;
    if (prlimit(server, RLIMIT_NPROC, NULL, &lim))
      _exit(5);
    rlim_t was = lim.rlim_cur;
    lim.rlim_cur = 1;
    if (prlimit(server, RLIMIT_NPROC, &lim, NULL))
      _exit(6);
    if (run(ctx, 2))
      _exit(7);
    int rc = run(ctx, 3);
    if (rc != -EAGAIN) {
      fprintf(stderr, "start: %s, expected EAGAIN\n", mp_err_name(rc));
      _exit(8);
    }
    if (mp__forkserver_pid() != server)
      _exit(9); /* the same server: only its fork failed */
    lim.rlim_cur = was;
    if (prlimit(server, RLIMIT_NPROC, &lim, NULL))
      _exit(10);
    if (run(ctx, 4) || mp__forkserver_pid() != server)
      _exit(11);
    mp__forkserver_stop();
    _exit(0);
  }
  assert_true(pid > 0);
  assert_int_equal(mp_test_wait_child(pid, JOIN_BOUND), 0);
}

/* A request that cannot be sent (here: no descriptor left for the memfd of
 * instructions too big for a packet) fails its start; the spare it was for
 * is not lost: it serves the next start. */
static void
test_unsent_request_keeps_spare(void **state)
{
  (void)state;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    mp_context *ctx;
    if (mp_get_context("forkserver", &ctx) || run(ctx, 1))
      _exit(2);
    pid_t spare = wait_spare(mp__forkserver_pid());
    if (spare <= 0)
      _exit(3);
    /* Every descriptor taken but two: the announcement's pidfd and
     * status pipe. */
    struct rlimit lim, was;
    if (getrlimit(RLIMIT_NOFILE, &was))
      _exit(4);
    lim = was;
    lim.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &lim))
      _exit(5);
    int fill[64], n = 0;
    while (n < 64 && (fill[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
      n++;
    if (n < 2 || errno != EMFILE)
      _exit(6);
    close(fill[--n]);
    close(fill[--n]);
    static uint8_t big[MP__BOOT_INLINE_MAX * 2];
    mp_process *p;
    if (mp_process_new(&p, ctx,
                       &(mp_process_opts){
                           .target = t_return,
                           .args = MP_TUPLE(mp_int_new(5),
                                            mp_bytes_new(big, sizeof big))}))
      _exit(7);
    int rc = mp_process_start(p);
    if (rc != -EMFILE) {
      fprintf(stderr, "start: %s, expected EMFILE\n", mp_err_name(rc));
      _exit(8);
    }
    mp_process_free(p);
    while (n > 0)
      close(fill[--n]);
    if (setrlimit(RLIMIT_NOFILE, &was))
      _exit(9);
    if (mp_process_new(&p, ctx,
                       &(mp_process_opts){.target = t_return,
                                          .args = MP_TUPLE(mp_int_new(6))}) ||
        mp_process_start(p))
      _exit(10);
    if (mp_process_pid(p) != spare)
      _exit(11); /* the kept spare, not a new one */
    int code = -1;
    if (mp_process_join(p, JOIN_BOUND) || mp_process_exitcode(p, &code) ||
        code != 6)
      _exit(12);
    mp_process_free(p);
    mp__forkserver_stop();
    _exit(0);
  }
  assert_true(pid > 0);
  assert_int_equal(mp_test_wait_child(pid, JOIN_BOUND), 0);
}

/* args: (conn,): waits for a message, returns 5. */
static int
t_wait5(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  void *buf;
  size_t len;
  if (!c || mp_conn_recv_bytes(c, &buf, &len, 0, JOIN_BOUND))
    return 41;
  mp_free(buf);
  return 5;
}

#define NTHREADS 4
#define PER_THREAD 6

struct starter {
  mp_context *ctx;
  mp_process *ps[PER_THREAD];
  mp_conn *go[PER_THREAD];
  int failures;
};

static void *
starter_main(void *arg)
{
  struct starter *s = arg;
  for (int k = 0; k < PER_THREAD; k++) {
    mp_conn *theirs;
    if (mp_pipe(&s->go[k], &theirs, 1)) {
      s->failures++;
      continue;
    }
    mp_obj *args = MP_TUPLE(mp_conn_obj(theirs));
    if (mp_process_new(&s->ps[k], s->ctx,
                       &(mp_process_opts){.target = t_wait5, .args = args}) ||
        mp_process_start(s->ps[k]))
      s->failures++;
    mp_obj_free(args);
    mp_conn_free(theirs);
  }
  return NULL;
}

/* Many children started from several threads at once, all running
 * together (each start needs the spare the one before it left). */
static void
test_concurrent_starts_run_together(void **state)
{
  (void)state;
  struct starter st[NTHREADS];
  pthread_t th[NTHREADS];
  memset(st, 0, sizeof st);
  for (int i = 0; i < NTHREADS; i++) {
    MP_ASSERT_OK(mp_get_context("forkserver", &st[i].ctx));
    assert_int_equal(pthread_create(&th[i], NULL, starter_main, &st[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  for (int i = 0; i < NTHREADS; i++) {
    assert_int_equal(st[i].failures, 0);
    for (int k = 0; k < PER_THREAD; k++)
      assert_int_equal(mp_process_is_alive(st[i].ps[k]), 1);
  }
  for (int i = 0; i < NTHREADS; i++)
    for (int k = 0; k < PER_THREAD; k++) {
      MP_ASSERT_OK(mp_conn_send_bytes(st[i].go[k], "go", 2));
      expect_code(st[i].ps[k], 5);
      mp_conn_free(st[i].go[k]);
    }
  mp__forkserver_stop();
}

static void
test_zz_stop_forkserver(void **state)
{
  (void)state;
  mp__forkserver_stop();
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS(test_no_libcrypto_without_auth),
    MP_TEST_METHODS(test_instructions_of_every_size),
    cmocka_unit_test(test_spare_killed),
    cmocka_unit_test(test_server_killed_between_starts),
    cmocka_unit_test(test_server_cannot_fork),
    cmocka_unit_test(test_unsent_request_keeps_spare),
    cmocka_unit_test(test_concurrent_starts_run_together),
    cmocka_unit_test(test_zz_stop_forkserver),
};

MP_TEST_MAIN(tests)
