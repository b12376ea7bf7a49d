/* SPDX-License-Identifier: MIT */
/* The lifecycle registry: fork hooks run in pthread_atfork's order around
 * every fork; finalizers run once, highest priority first (latest first
 * among equals), in the process that registered them only. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/hmac.h"
#include "core/internal.h"
#include "platform/platform.h"
#include "testutil.h"

static char g_log[64];
static size_t g_len;

static void
note(void *arg)
{
  if (g_len + 1 < sizeof g_log)
    g_log[g_len++] = *(const char *)arg;
  g_log[g_len] = '\0';
}

static void
reset_log(void)
{
  g_len = 0;
  g_log[0] = '\0';
}

/* Wait for pid; its exit status, or -1. */
static int
exit_status_of(pid_t pid)
{
  int st;
  pid_t r;
  while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
    ;
  return r == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint32_t g_hook_pid, g_hook_tid;

static void
record_ids(void *arg)
{
  g_hook_pid = mp__getpid();
  g_hook_tid = mp__gettid();
}

/* The pid cache is reset in a fork child before any hook runs, also a hook
 * registered before the cache was first filled (the order its reset was
 * once installed in). */
static void
test_fork_child_hooks_see_the_childs_pid(void **state)
{
  /* first test of the program: nothing has read the pid yet */
  assert_int_equal(__atomic_load_n(&mp__g_pid, __ATOMIC_RELAXED), 0);
  mp__fork_hook *h = mp__fork_hook_add(NULL, NULL, record_ids, NULL);
  assert_non_null(h);
  assert_int_equal(mp__getpid(), (uint32_t)getpid());
  assert_int_equal(mp__gettid(), (uint32_t)getpid());
  pid_t pid = fork();
  if (pid == 0) {
    uint32_t me = (uint32_t)getpid();
    _exit(g_hook_pid == me && g_hook_tid == me && mp__getpid() == me ? 0 : 1);
  }
  assert_true(pid > 0);
  assert_int_equal(exit_status_of(pid), 0);
  mp__fork_hook_remove(h);
}

/* Field 22 of /proc/self/stat (this test's own reading); 0 on failure. */
static uint64_t
proc_stat_start(void)
{
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  for (int field = 2; p && field < 22; field++)
    p = strchr(p + 1, ' ');
  return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* A fork child knows its start time from the clock readings around the
 * fork (no /proc read), and it is the kernel's: the pid-reuse guard of
 * every lock and queue compares it with what /proc shows others. */
static void
test_fork_child_knows_its_start_time(void **state)
{
  uint64_t mine = proc_stat_start();
  assert_true(mine > 0);
  assert_int_equal(mp__proc_starttime(), mine);
  int known = 0, unknown = 0;
  for (int i = 0; i < 200; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      uint64_t k = mp__proc_starttime_known();
      uint64_t real = proc_stat_start();
      _exit(k == 0 ? 2 : k == real && mp__proc_starttime() == real ? 0 : 1);
    }
    assert_true(pid > 0);
    int st = exit_status_of(pid);
    assert_true(st == 0 || st == 2); /* 1: a start time that is wrong */
    known += st == 0;
    unknown += st == 2;
  }
  /* the readings straddle a tick boundary now and then (more often under
   * a sanitizer's slower fork): then the child reads /proc instead */
  print_message("start time known in %d of 200 fork children\n", known);
  assert_int_equal(known + unknown, 200);
  assert_true(known >= 100);
}

static pthread_mutex_t g_guarded = PTHREAD_MUTEX_INITIALIZER;
static int g_reset_ran;

static void
reset_guarded(void *arg)
{
  g_reset_ran = *(int *)arg;
}

/* A guarded mutex with a reset: a fork child finds the mutex unlocked and
 * the reset run (with its argument); the parent runs no reset and keeps
 * the mutex usable. */
static void
test_fork_guard_mutex_reset(void **state)
{
  static int mark = 7;
  mp__fork_hook *h = mp__fork_guard_mutex_reset(&g_guarded, reset_guarded,
                                                &mark);
  assert_non_null(h);
  pid_t pid = fork();
  if (pid == 0) {
    int ok = g_reset_ran == 7 && pthread_mutex_trylock(&g_guarded) == 0;
    _exit(ok ? 0 : 1);
  }
  assert_true(pid > 0);
  assert_int_equal(exit_status_of(pid), 0);
  assert_int_equal(g_reset_ran, 0);
  assert_int_equal(pthread_mutex_trylock(&g_guarded), 0);
  pthread_mutex_unlock(&g_guarded); /* (the hook stays: it is for life) */
}

static void
test_fork_hooks_run_in_atfork_order(void **state)
{
  static const char p1 = 'a', p2 = 'b', p3 = 'c';
  mp__fork_hook *h1 = mp__fork_hook_add(note, note, note, (void *)&p1);
  mp__fork_hook *h2 = mp__fork_hook_add(note, NULL, note, (void *)&p2);
  mp__fork_hook *h3 = mp__fork_hook_add(NULL, note, note, (void *)&p3);
  assert_non_null(h1);
  assert_non_null(h2);
  assert_non_null(h3);
  reset_log();
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* prepare: h2, h1 (reverse); child: h1, h2, h3 */
    ssize_t w = write(pfd[1], g_log, g_len);
    _exit(w == (ssize_t)g_len ? 0 : 1);
  }
  assert_true(pid > 0);
  close(pfd[1]);
  char child[64] = {0};
  ssize_t n = read(pfd[0], child, sizeof child - 1);
  close(pfd[0]);
  assert_int_equal(exit_status_of(pid), 0);
  assert_true(n > 0);
  assert_string_equal(child, "baabc");
  /* parent: prepare h2, h1, then parent hooks h1, h3 */
  assert_string_equal(g_log, "baac");

  /* A removed hook no longer runs; the others keep their order. */
  mp__fork_hook_remove(h2);
  reset_log();
  pid = fork();
  if (pid == 0)
    _exit(strcmp(g_log, "aac") == 0 ? 0 : 1);
  assert_int_equal(exit_status_of(pid), 0);
  assert_string_equal(g_log, "aac");
  mp__fork_hook_remove(h1);
  mp__fork_hook_remove(h3);
  mp__fork_hook_remove(NULL);
  reset_log();
  pid = fork();
  if (pid == 0)
    _exit(g_len == 0 ? 0 : 1);
  assert_int_equal(exit_status_of(pid), 0);
  assert_int_equal(g_len, 0);
}

static void
test_finalizers_run_once_in_priority_order(void **state)
{
  static const char a = 'a', b = 'b', c = 'c', d = 'd', e = 'e';
  reset_log();
  mp__finalizer *fa = mp__finalizer_add(0, note, (void *)&a);
  mp__finalizer *fb = mp__finalizer_add(15, note, (void *)&b);
  mp__finalizer *fc = mp__finalizer_add(0, note, (void *)&c);
  mp__finalizer *fd = mp__finalizer_add(-1, note, (void *)&d);
  mp__finalizer *fe = mp__finalizer_add(5, note, (void *)&e);
  assert_non_null(fa);
  assert_non_null(fb);
  assert_non_null(fc);
  assert_non_null(fd);
  assert_non_null(fe);
  assert_null(mp__finalizer_add(1, NULL, NULL));
  /* run early: once, and not again at shutdown */
  assert_int_equal(mp__finalizer_run(fe), 1);
  assert_string_equal(g_log, "e");
  mp__finalizer_cancel(fd);
  mp__finalizer_run(NULL);
  mp__finalizer_cancel(NULL);
  mp__lifecycle_shutdown();
  /* 15 first; among the two 0s the later (c) first; d was cancelled */
  assert_string_equal(g_log, "ebca");
  mp__lifecycle_shutdown();
  assert_string_equal(g_log, "ebca");
}

/* A finalizer may register another while finalizers run; it runs too. */
static void
register_more(void *arg)
{
  static const char late = 'L';
  note(arg);
  mp__finalizer_add(-5, note, (void *)&late);
}

static void
test_finalizer_registered_during_shutdown_runs(void **state)
{
  static const char m = 'M';
  reset_log();
  assert_non_null(mp__finalizer_add(3, register_more, (void *)&m));
  mp__lifecycle_shutdown();
  assert_string_equal(g_log, "ML");
}

static int g_report_fd = -1;

static void
report(void *arg)
{
  ssize_t w = write(g_report_fd, arg, 1);
  (void)w;
}

static void
test_exit_runs_own_finalizers_not_the_parents(void **state)
{
  static const char parent = 'P', c1 = '1', c2 = '2';
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  g_report_fd = pfd[1];
  mp__finalizer *fp = mp__finalizer_add(100, report, (void *)&parent);
  assert_non_null(fp);
  pid_t pid = fork();
  if (pid == 0) {
    /* the parent's finalizer is not ours; a handle to it is inert here */
    assert_int_equal(mp__finalizer_run(fp), 0);
    mp__finalizer_add(1, report, (void *)&c1);
    mp__finalizer_add(2, report, (void *)&c2);
    exit(0); /* normal exit runs the finalizers */
  }
  assert_true(pid > 0);
  close(pfd[1]);
  assert_int_equal(exit_status_of(pid), 0);
  char got[16] = {0};
  ssize_t n = read(pfd[0], got, sizeof got - 1);
  assert_int_equal(n, 2);
  assert_string_equal(got, "21");
  /* the parent's own finalizer is still pending here, and runs once */
  int again[2];
  assert_int_equal(pipe(again), 0);
  g_report_fd = again[1];
  assert_int_equal(mp__finalizer_run(fp), 1);
  close(again[1]);
  n = read(again[0], got, sizeof got - 1);
  assert_int_equal(n, 1);
  assert_int_equal(got[0], 'P');
  close(again[0]);
  close(pfd[0]);
  g_report_fd = -1;
}

/* libcrypto registers its exit teardown when it is first loaded, after
 * ours; our finalizers (which stop the threads that authenticate) must
 * still find it usable.  In a fork child that has not loaded it yet: an
 * HMAC loads it, and a finalizer's HMAC at exit must give the same MAC. */
static void
fin_hmac(void *arg)
{
  (void)arg;
  uint8_t mac[MP__HMAC_MAX];
  size_t n = 0;
  int rc = mp__hmac("sha256", 6, "key", 3, "msg", 3, mac, &n);
  if (rc || write(g_report_fd, mac, n) != (ssize_t)n)
    _exit(5);
}

static void
test_finalizers_run_before_libcryptos_teardown(void **state)
{
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    g_report_fd = pfd[1];
    if (dlopen(MP__LIBCRYPTO, RTLD_NOW | RTLD_NOLOAD))
      _exit(3); /* loaded already: this would not test the order */
    mp__finalizer_add(0, fin_hmac, NULL); /* our exit handler: first */
    uint8_t mac[MP__HMAC_MAX];
    size_t n = 0;
    if (mp__hmac("sha256", 6, "key", 3, "msg", 3, mac, &n) ||
        write(pfd[1], mac, n) != (ssize_t)n)
      _exit(4);
    exit(0);
  }
  assert_true(pid > 0);
  close(pfd[1]);
  assert_int_equal(exit_status_of(pid), 0);
  uint8_t got[2 * MP__HMAC_MAX];
  size_t len = 0;
  ssize_t r;
  while ((r = read(pfd[0], got + len, sizeof got - len)) > 0)
    len += (size_t)r;
  close(pfd[0]);
  assert_int_equal(len, 64); /* at use, then at exit */
  assert_memory_equal(got, got + 32, 32);
}

/* Registration from several threads while others fork: no lost hook, no
 * deadlock in the child (the registry's locks are released there). */
static void *
register_loop(void *arg)
{
  (void)arg;
  for (int i = 0; i < 200; i++) {
    mp__fork_hook *h = mp__fork_hook_add(NULL, NULL, NULL, NULL);
    mp__finalizer *f = mp__finalizer_add(i, note, NULL);
    mp__fork_hook_remove(h);
    mp__finalizer_cancel(f);
  }
  return NULL;
}

static void
test_fork_while_threads_register(void **state)
{
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&t[i], NULL, register_loop, NULL), 0);
  for (int i = 0; i < 20; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      /* both registries usable in the child */
      mp__fork_hook *h = mp__fork_hook_add(NULL, NULL, NULL, NULL);
      mp__finalizer *f = mp__finalizer_add(0, note, NULL);
      mp__fork_hook_remove(h);
      mp__finalizer_cancel(f);
      /* exit_group, as mproc's own children end: _exit would run
       * ThreadSanitizer's exit checks, which count the parent's threads
       * (absent here) as leaked */
      syscall(SYS_exit_group, h && f ? 0 : 1);
    }
    assert_int_equal(exit_status_of(pid), 0);
  }
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fork_child_hooks_see_the_childs_pid),
    cmocka_unit_test(test_fork_hooks_run_in_atfork_order),
    cmocka_unit_test(test_fork_child_knows_its_start_time),
    cmocka_unit_test(test_fork_guard_mutex_reset),
    cmocka_unit_test(test_finalizers_run_once_in_priority_order),
    cmocka_unit_test(test_finalizer_registered_during_shutdown_runs),
    cmocka_unit_test(test_exit_runs_own_finalizers_not_the_parents),
    cmocka_unit_test(test_fork_while_threads_register),
    cmocka_unit_test(test_finalizers_run_before_libcryptos_teardown),
};

MP_TEST_MAIN(tests)
