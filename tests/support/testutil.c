/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "testutil.h"

#include "obj/obj_internal.h"
#include "pool/pool_internal.h"
#include "proc/proc_internal.h"
#include "queue/queue_internal.h"
#include "shared/shared_internal.h"

/* Weak: a program that uses no pool or queue links neither layer (a layer
 * brings its registrations with it: the obj tests check a world without
 * Queue). */
#pragma weak mp__watch_shutdown
#pragma weak mp__queue_cache_trim
#pragma weak mp__arena_trim

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

const char *const mp_test_start_methods[] = {"fork", "spawn", "forkserver",
                                             NULL};

const char *
mp_test_method(void **state)
{
  return state && *state ? (const char *)*state : "fork";
}

mp_context *
mp_test_context(void **state)
{
  mp_context *ctx = NULL;
  if (mp_get_context(mp_test_method(state), &ctx) != 0)
    fail_msg("no context for start method %s: %s", mp_test_method(state),
             mp_errdetail());
  return ctx;
}

int
mp_test_wait_child(pid_t pid, double timeout)
{
  int st;
  struct timespec nap = {0, 1000000};
  for (double waited = 0;; waited += 0.001) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR)
      fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
    if (waited >= timeout) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
      fail_msg("child %d still running after %.1f s (killed)", (int)pid,
               timeout);
    }
    nanosleep(&nap, NULL);
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void
mp_test_kill_holder(mp_lock *l)
{
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (!mp_acquired(mp_lock_acquire(l, MP_FOREVER)))
      _exit(1);
    if (write(p[1], "x", 1) != 1)
      _exit(2);
    for (;;)
      pause();
  }
  assert_true(pid > 0);
  close(p[1]);
  char c;
  ssize_t n;
  while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
    ;
  close(p[0]);
  if (n != 1) {
    mp_test_wait_child(pid, 10);
    fail_msg("lock holder did not take the lock");
  }
  kill(pid, SIGKILL);
  assert_int_equal(mp_test_wait_child(pid, 10), 128 + SIGKILL);
}

void
mp_test_pipe(mp_conn **r, mp_conn **w, int duplex)
{
  MP_ASSERT_OK(mp_pipe(r, w, duplex));
}

void
mp_test_assert_repr(const mp_obj *o, const char *want)
{
  char *r = mp_obj_repr(o);
  assert_non_null(r);
  if (strcmp(r, want)) {
    print_error("repr %s, want %s\n", r, want);
    mp_free(r);
    fail();
  }
  mp_free(r);
}

const char *
mp_test_build_dir(void)
{
  const char *d = getenv("MPROC_BUILD_DIR");
  return d ? d : ".";
}

/* A bitmap of the fds open at start. */
#define MAX_TRACKED_FD 4096
static unsigned char fds_at_start[MAX_TRACKED_FD];

static int
for_each_fd(void (*fn)(int fd, void *ud), void *ud)
{
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    int fd = atoi(e->d_name);
    if (fd != self)
      fn(fd, ud);
  }
  closedir(d);
  return 0;
}

static void
count_one(int fd, void *ud)
{
  (void)fd;
  ++*(int *)ud;
}

int
mp_test_count_fds(void)
{
  int n = 0;
  for_each_fd(count_one, &n);
  return n;
}

static void
mark_start(int fd, void *ud)
{
  (void)ud;
  if (fd >= 0 && fd < MAX_TRACKED_FD)
    fds_at_start[fd] = 1;
}

static void
report_new(int fd, void *ud)
{
  if (fd >= 0 && fd < MAX_TRACKED_FD && fds_at_start[fd])
    return;
  char path[64], target[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  target[n > 0 ? n : 0] = '\0';
  fprintf(stderr, "LEAK: fd %d left open (%s)\n", fd, target);
  ++*(int *)ud;
}

/* Children of this process, from /proc (zombies included). */
static int
count_children(int report)
{
  int n = 0;
  pid_t me = getpid();
  DIR *d = opendir("/proc");
  if (!d)
    return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "re");
    if (!f)
      continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *rp = strrchr(buf, ')');
    if (!rp)
      continue;
    char state;
    int ppid;
    if (sscanf(rp + 2, "%c %d", &state, &ppid) != 2 || ppid != me)
      continue;
    n++;
    if (report)
      fprintf(stderr, "LEAK: child process %s left behind (state %c): %s\n",
              e->d_name, state, buf);
  }
  closedir(d);
  return n;
}

/* Shared-memory segments.  Test programs run side by side (ctest -j), and
 * segment names are random, so counting /dev/shm entries would blame one
 * program for another's segments.  Instead every test program and helper is
 * linked with --wrap=shm_open: each segment created by this program or any
 * of its children (they inherit MP_TEST_SHM_LOG) is logged by name, and at
 * the end every logged name must be gone. */
#define SHM_LOG_ENV "MP_TEST_SHM_LOG"

int
__wrap_shm_open(const char *name, int oflag, mode_t mode)
{
  int fd = __real_shm_open(name, oflag, mode);
  const char *log = getenv(SHM_LOG_ENV);
  if (fd >= 0 && (oflag & O_CREAT) && log) {
    /* only async-signal-safe calls: fork children of threaded tests */
    int saved = errno;
    int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (lfd >= 0) {
      char line[300];
      size_t n = strlen(name);
      if (n > sizeof line - 2)
        n = sizeof line - 2;
      memcpy(line, name, n);
      line[n++] = '\n';
      ssize_t w = write(lfd, line, n); /* O_APPEND: one line, one write */
      (void)w;
      close(lfd);
    }
    errno = saved;
  }
  return fd;
}

static char shm_log[256];

static void
shm_log_start(void)
{
  const char *tmp = getenv("TMPDIR");
  snprintf(shm_log, sizeof shm_log, "%s/mproc-test-shm-%d.log",
           tmp && *tmp ? tmp : "/tmp", (int)getpid());
  unlink(shm_log);
  setenv(SHM_LOG_ENV, shm_log, 1);
}

/* Segments created during the tests that still exist. */
static int
shm_left_behind(void)
{
  FILE *f = fopen(shm_log, "re");
  if (!f)
    return 0; /* nothing was created */
  int n = 0;
  char line[300];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    const char *name = line[0] == '/' ? line + 1 : line;
    char path[320];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    if (access(path, F_OK) == 0) {
      fprintf(stderr, "LEAK: shared-memory segment %s left behind\n", name);
      n++;
      unlink(path); /* do not leave it for the next run */
    }
  }
  fclose(f);
  unlink(shm_log);
  return n;
}

int
mp_test_run(const char *group, const struct CMUnitTest *tests, size_t n)
{
  for_each_fd(mark_start, NULL);
  shm_log_start();
  int failed = _cmocka_run_group_tests(group, tests, n, NULL, NULL);

  /* The forkserver, if a test started one, is this program's child by
   * design (it lives until exit): stopped before children are counted. */
  mp__forkserver_stop();
  /* So is the pools' death watcher thread (it lives until exit): its pipe
   * is not a leak. */
  if (mp__watch_shutdown)
    mp__watch_shutdown();
  if (mp__queue_cache_trim)
    mp__queue_cache_trim(); /* and the queues kept for reuse */
  if (mp__arena_trim)
    mp__arena_trim(); /* and the arena's kept slab */
  int leaks = 0;
  /* Give children that were just killed a moment to be reaped by whoever
   * owns them; then count them. A child left here is a failure. */
  for (int i = 0; i < 50 && count_children(0) > 0; i++)
    usleep(20000);
  leaks += count_children(1);
  for_each_fd(report_new, &leaks);
  leaks += shm_left_behind();
  if (leaks)
    fprintf(stderr, "%s: %d leak(s) after the tests\n", group, leaks);
  return failed || leaks ? 1 : 0;
}

/* Threads of this process whose name is `name`; *blocked (if one is found)
 * is the signal mask of the last one (SigBlk of its status). */
int
mp_test_threads_named(const char *name, unsigned long long *blocked)
{
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char path[300], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue; /* ended meanwhile */
    int match = fgets(line, sizeof line, f) &&
                strncmp(line, name, strlen(name)) == 0 &&
                line[strlen(name)] == '\n';
    fclose(f);
    if (!match)
      continue;
    n++;
    snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    if (blocked && (f = fopen(path, "r")) != NULL) {
      while (fgets(line, sizeof line, f))
        if (sscanf(line, "SigBlk: %llx", blocked) == 1)
          break;
      fclose(f);
    }
  }
  closedir(d);
  return n;
}

double
mp_test_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
mp_test_recv_expect(mp_conn *c, const void *want, size_t wlen, double timeout)
{
  void *p = NULL;
  size_t n = 0;
  MP_ASSERT_OK(mp_conn_recv_bytes(c, &p, &n, 0, timeout));
  assert_int_equal(n, wlen);
  if (wlen)
    assert_memory_equal(p, want, wlen);
  mp_free(p);
}

int
mp_test_big_cache_on(void)
{
  void *p = mp__big_alloc(MP__BIG_MIN, 0);
  if (!p)
    return 0;
  mp__big_free(p);
  int kept = mp__big_cached_bytes() > 0;
  mp__big_trim();
  return kept;
}
