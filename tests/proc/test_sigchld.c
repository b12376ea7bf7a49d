/* SPDX-License-Identifier: MIT */
/* Exit codes and liveness when the program takes SIGCHLD for itself: it
 * ignores it, sets SA_NOCLDWAIT, or reaps every child with waitpid(-1) in a
 * handler.  Under each of those and each start method that makes a
 * process:
 *   - a child that ends through the library (its target returns 5, or
 *     mp_exit(6)) ends (join 0, is_alive 0) with that exit code;
 *   - a child killed with SIGKILL gives -9 when its status can be known
 *     (the forkserver reaps its children; Linux 6.15 keeps every status on
 *     the pidfd; the program's handler left it to the library) and
 *     MP_ECHILD when it cannot -- never a made-up number;
 *   - a child that calls _exit(7) itself (not through the library) likewise.
 * Each case also runs with the kernel's record ignored, as on older
 * kernels, so that the library's own channel is what reports.
 * And: the forkserver runs with its own signal set-up whatever the
 * program's, its children get the program's (as spawn children); a
 * forkserver child whose server is killed is still running, then ends
 * without a made-up code. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

static const char *const os_methods[] = {"fork", "spawn", "forkserver", NULL};

enum { M_IGN, M_NOCLDWAIT, M_HANDLER, M_COUNT };
static const char *const mode_names[] = {"SIG_IGN", "SA_NOCLDWAIT",
                                         "a reaping handler"};

/* ---- the program's SIGCHLD ---------------------------------------------- */

#define MAX_REAPED 4096
static pid_t reaped[MAX_REAPED];
static volatile sig_atomic_t nreaped;

/* A program's own reaper: takes every child's status. */
static void
reaper(int sig)
{
  (void)sig;
  int saved = errno, st;
  pid_t r;
  while ((r = waitpid(-1, &st, WNOHANG)) > 0)
    if (nreaped < MAX_REAPED)
      reaped[nreaped++] = r;
  errno = saved;
}

static int
reaped_by_handler(pid_t pid)
{
  for (int i = 0; i < nreaped; i++)
    if (reaped[i] == pid)
      return 1;
  return 0;
}

static struct sigaction saved_chld, saved_usr1;
static sigset_t saved_mask;

static void
set_mode(int mode)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  if (mode == M_IGN) {
    sa.sa_handler = SIG_IGN;
  } else if (mode == M_NOCLDWAIT) {
    sa.sa_handler = SIG_DFL;
    sa.sa_flags = SA_NOCLDWAIT;
  } else {
    sa.sa_handler = reaper;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  }
  nreaped = 0;
  assert_int_equal(sigaction(SIGCHLD, &sa, NULL), 0);
}

static void
restore_mode(void)
{
  assert_int_equal(sigaction(SIGCHLD, &saved_chld, NULL), 0);
}

static void
restore_all(void)
{
  restore_mode();
  assert_int_equal(sigaction(SIGUSR1, &saved_usr1, NULL), 0);
  assert_int_equal(sigprocmask(SIG_SETMASK, &saved_mask, NULL), 0);
}

/* Does this kernel keep a reaped process's status on its pidfd? */
static int
kernel_keeps_status(void)
{
  pid_t pid = fork();
  if (pid == 0)
    _exit(3);
  assert_true(pid > 0);
  int fd = mp__plat_pidfd_open(pid);
  assert_int_equal(waitpid(pid, NULL, 0), pid);
  int st = 0, rc = fd >= 0 ? mp__plat_pidfd_exit_status(fd, &st) : -1;
  if (fd >= 0)
    close(fd);
  return rc == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 3;
}

static int g_kernel_keeps;
static int g_ignore_kernel; /* mp__proc_test_ignore_pidfd_exit's setting */

static void
ignore_kernel(int on)
{
  g_ignore_kernel = on;
  mp__proc_test_ignore_pidfd_exit(on);
}

static int
setup(void **state)
{
  (void)state;
  assert_int_equal(sigaction(SIGCHLD, NULL, &saved_chld), 0);
  assert_int_equal(sigaction(SIGUSR1, NULL, &saved_usr1), 0);
  assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &saved_mask), 0);
  g_kernel_keeps = kernel_keeps_status();
  return 0;
}

static int
teardown(void **state)
{
  (void)state;
  restore_all(); /* also after a failed assertion */
  ignore_kernel(0);
  mp__forkserver_stop();
  return 0;
}

/* ---- targets ---------------------------------------------------------------- */

static int
t_return5(mp_obj *args)
{
  (void)args;
  return 5;
}

static int
t_mp_exit6(mp_obj *args)
{
  (void)args;
  mp_exit(6);
}

static int
t_raw_exit7(mp_obj *args)
{
  (void)args;
  _exit(7);
}

static int
t_forever(mp_obj *args)
{
  (void)args;
  while (pause() < 0)
    ;
  return 0;
}

/* args: (connection,): says "up", waits for a message, returns 5. */
static int
t_wait_then5(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  void *buf;
  size_t len;
  if (!c || mp_conn_send_bytes(c, "up", 2))
    return 40;
  if (mp_conn_recv_bytes(c, &buf, &len, 0, MP_FOREVER))
    return 41;
  mp_free(buf);
  return 5;
}

/* The signals whose dispositions a child compares with its parent's. */
static const int checked_sigs[] = {SIGUSR1, SIGCHLD, SIGINT, SIGPIPE};
#define N_CHECKED (sizeof checked_sigs / sizeof checked_sigs[0])

static int
ignored_mask(void)
{
  int m = 0;
  for (size_t i = 0; i < N_CHECKED; i++) {
    struct sigaction sa;
    sigaction(checked_sigs[i], NULL, &sa);
    if (sa.sa_handler == SIG_IGN)
      m |= 1 << i;
  }
  return m;
}

/* args: (ignored_mask() of the program,): the child has the program's
 * ignored signals and its mask (SIGUSR2 blocked, SIGCHLD not). */
static int
t_check_signals(mp_obj *args)
{
  int64_t want;
  if (mp_int_get(mp_seq_item(args, 0), &want))
    return 50;
  if (ignored_mask() != want)
    return 51;
  sigset_t mask;
  sigprocmask(SIG_SETMASK, NULL, &mask);
  if (sigismember(&mask, SIGUSR2) != 1 || sigismember(&mask, SIGCHLD) != 0)
    return 52;
  return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static mp_process *
make(const char *method, mp_target_fn fn, mp_obj *args)
{
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context(method, &ctx));
  mp_process *p = NULL;
  MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = fn,
                                                           .args = args}));
  mp_obj_free(args);
  return p;
}

/* A bound for a join that must succeed (a broken build would hang). */
#define JOIN_BOUND 60.0

/* Run fn under `method`; SIGKILL it if kill_it.  `code` is its exit code;
 * `via_library`: it ends through the library (return, mp_exit). */
static void
expect_end(const char *method, int mode, mp_target_fn fn, int kill_it,
           int code, int via_library)
{
  mp_process *p = make(method, fn, NULL);
  MP_ASSERT_OK(mp_process_start(p));
  pid_t pid = mp_process_pid(p);
  /* A fork child that ended and was reaped by someone else before its
   * pidfd could be opened (microseconds after the fork) has none: then
   * only its own report can tell. */
  int watched = p->pidfd >= 0;
  if (kill_it)
    MP_ASSERT_OK(mp_process_kill(p));
  MP_ASSERT_OK(mp_process_join(p, JOIN_BOUND));
  assert_int_equal(mp_process_is_alive(p), 0);
  int got = -1000;
  int rc = mp_process_exitcode(p, &got);
  /* What the design promises: the forkserver reaps its own children; the
   * kernel (6.15) keeps every status on the pidfd; a child that ends
   * through the library reports its code itself; with a reaping handler
   * a child the handler did not take was reaped by the library. */
  int kernel = g_kernel_keeps && !g_ignore_kernel;
  int knowable = !strcmp(method, "forkserver") || (kernel && watched) ||
                 via_library || (mode == M_HANDLER && !reaped_by_handler(pid));
  if (knowable) {
    if (rc != 0 || got != code)
      fail_msg("%s, %s, kernel record %s: exit code %d (rc %s), expected %d",
               method, mode_names[mode], kernel ? "used" : "ignored", got,
               mp_err_name(rc), code);
  } else {
    if (rc != MP_ECHILD || got != -1000)
      fail_msg("%s, %s, kernel record ignored: exit code %d (rc %s), "
               "expected MP_ECHILD", method, mode_names[mode], got,
               mp_err_name(rc));
    char repr[256];
    mp_process_repr(p, repr, sizeof repr);
    assert_non_null(strstr(repr, " stopped"));
    assert_null(strstr(repr, "exitcode"));
  }
  MP_ASSERT_OK(mp_process_close(p));
  mp_process_free(p);
}

/* ---- tests -------------------------------------------------------------------- */

static void
test_exit_codes_when_sigchld_is_taken(void **state)
{
  (void)state;
  for (int mode = 0; mode < M_COUNT; mode++) {
    /* A new server, started under the program's disposition (it inherits
     * an ignored SIGCHLD through exec). */
    mp__forkserver_stop();
    set_mode(mode);
    for (int ign = 0; ign < 2; ign++) {
      ignore_kernel(ign);
      for (int i = 0; os_methods[i]; i++) {
        expect_end(os_methods[i], mode, t_return5, 0, 5, 1);
        expect_end(os_methods[i], mode, t_mp_exit6, 0, 6, 1);
        expect_end(os_methods[i], mode, t_raw_exit7, 0, 7, 0);
        expect_end(os_methods[i], mode, t_forever, 1, -SIGKILL, 0);
      }
    }
    ignore_kernel(0);
    restore_mode();
    mp__forkserver_stop();
  }
}

/* Issue 8, item 2: the server inherited an ignored SIGCHLD and the kernel
 * reaped its children behind it: join waited forever. */
static void
test_forkserver_child_ends(void **state)
{
  (void)state;
  for (int mode = 0; mode < M_COUNT; mode++) {
    mp__forkserver_stop();
    set_mode(mode);
    mp_process *p = make("forkserver", t_return5, NULL);
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_OK(mp_process_join(p, JOIN_BOUND));
    assert_int_equal(mp_process_is_alive(p), 0);
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 5);
    MP_ASSERT_OK(mp_process_close(p));
    mp_process_free(p);
    restore_mode();
  }
  mp__forkserver_stop();
}

/* Many children at once, ended in another order than started: each word
 * is its own child's. */
static void
test_many_children_ignored_sigchld(void **state)
{
  (void)state;
  set_mode(M_IGN);
  ignore_kernel(1);
  enum { N = 40 };
  mp_process *ps[N];
  for (int i = 0; i < N; i++) {
    ps[i] = make(i % 2 ? "spawn" : "fork", i % 4 < 2 ? t_return5 : t_mp_exit6,
                 NULL);
    MP_ASSERT_OK(mp_process_start(ps[i]));
  }
  for (int i = N - 1; i >= 0; i--) {
    MP_ASSERT_OK(mp_process_join(ps[i], JOIN_BOUND));
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(ps[i], &code));
    assert_int_equal(code, i % 4 < 2 ? 5 : 6);
    MP_ASSERT_OK(mp_process_close(ps[i]));
    mp_process_free(ps[i]);
  }
  ignore_kernel(0);
  restore_mode();
}

static uint64_t
proc_status_mask(pid_t pid, const char *field)
{
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "re");
  assert_non_null(f);
  uint64_t v = ~0ull;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':')
      v = strtoull(line + n + 1, NULL, 16);
  fclose(f);
  return v;
}

#define SIGBIT(s) (1ull << ((s) - 1))
/* Signals 32 and 33 are the C library's own (posix_spawn leaves them
 * ignored until glibc sets them up): not the program's business. */
#define LIBC_SIGS (SIGBIT(32) | SIGBIT(33))

/* The forkserver sets its own dispositions whatever the program's; its
 * children get the program's, as spawn children do. */
static void
test_forkserver_signal_setup(void **state)
{
  (void)state;
  struct sigaction ign;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  for (int chld_ign = 0; chld_ign < 2; chld_ign++) {
    mp__forkserver_stop();
    assert_int_equal(sigaction(SIGUSR1, &ign, NULL), 0);
    assert_int_equal(sigprocmask(SIG_BLOCK, &usr2, NULL), 0);
    if (chld_ign)
      set_mode(M_IGN);
    int want = ignored_mask();
    for (int i = 0; os_methods[i]; i++) {
      if (!strcmp(os_methods[i], "fork"))
        continue; /* a fork child is a copy: nothing to check */
      mp_process *p = make(os_methods[i], t_check_signals,
                           MP_TUPLE(mp_int_new(want)));
      MP_ASSERT_OK(mp_process_start(p));
      MP_ASSERT_OK(mp_process_join(p, JOIN_BOUND));
      int code = -1;
      MP_ASSERT_OK(mp_process_exitcode(p, &code));
      if (code != 0)
        fail_msg("%s child: signal check %d failed", os_methods[i], code);
      MP_ASSERT_OK(mp_process_close(p));
      mp_process_free(p);
    }
    pid_t server = mp__forkserver_pid();
    assert_true(server > 0);
    assert_int_equal(proc_status_mask(server, "SigIgn") & ~LIBC_SIGS,
                     SIGBIT(SIGINT) | SIGBIT(SIGPIPE));
    assert_int_equal(proc_status_mask(server, "SigBlk"), SIGBIT(SIGCHLD));
    restore_all();
  }
  mp__forkserver_stop();
}

/* The forkserver is killed while its child runs: the child is still
 * running (not "ended with 255"), its sentinel is not ready, and once it
 * ends its exit code is its own or MP_ECHILD. */
static void
test_forkserver_killed_under_running_child(void **state)
{
  (void)state;
  for (int ign = 0; ign < 2; ign++) {
    ignore_kernel(ign);
    mp__forkserver_stop();
    mp_conn *mine, *theirs;
    MP_ASSERT_OK(mp_pipe(&mine, &theirs, 1));
    mp_process *p = make("forkserver", t_wait_then5,
                         MP_TUPLE(mp_conn_obj(theirs)));
    MP_ASSERT_OK(mp_process_start(p));
    mp_conn_free(theirs);
    void *buf;
    size_t len;
    MP_ASSERT_OK(mp_conn_recv_bytes(mine, &buf, &len, 0, JOIN_BOUND));
    mp_free(buf);
    pid_t server = mp__forkserver_pid();
    assert_true(server > 0);
    assert_int_equal(kill(server, SIGKILL), 0);
    assert_int_equal(waitpid(server, NULL, 0), server);

    assert_int_equal(mp_process_is_alive(p), 1);
    int code = -1000;
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), MP_ESTATE);
    struct pollfd pfd = {mp_process_sentinel(p), POLLIN, 0};
    assert_true(pfd.fd >= 0);
    assert_int_equal(poll(&pfd, 1, 0), 0);
    MP_ASSERT_ERR(mp_process_join(p, 0), MP_ETIMEDOUT);

    MP_ASSERT_OK(mp_conn_send_bytes(mine, "go", 2));
    MP_ASSERT_OK(mp_process_join(p, JOIN_BOUND));
    assert_int_equal(mp_process_is_alive(p), 0);
    assert_int_equal(poll(&pfd, 1, 0), 1);
    int rc = mp_process_exitcode(p, &code);
    /* Its reaper is now whoever adopted it: the kernel has its status
     * only once that one reaped it (Linux 6.15), and nobody else does. */
    if (ign || !g_kernel_keeps)
      assert_int_equal(rc, MP_ECHILD);
    else if (rc != MP_ECHILD && !(rc == 0 && code == 5))
      fail_msg("exit code %d (rc %s): expected 5 or MP_ECHILD", code,
               mp_err_name(rc));
    MP_ASSERT_OK(mp_process_close(p));
    mp_process_free(p);
    mp_conn_free(mine);
  }
  ignore_kernel(0);
  mp__forkserver_stop();
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_forkserver_child_ends, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_exit_codes_when_sigchld_is_taken,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_many_children_ignored_sigchld,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_forkserver_signal_setup, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(
        test_forkserver_killed_under_running_child, setup, teardown),
};

MP_TEST_MAIN(tests)
