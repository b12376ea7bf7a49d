/* SPDX-License-Identifier: MIT */
/* The resource tracker: a program SIGKILLed while holding named segments
 * (and a registered file) leaves nothing behind, whichever start method made
 * the children that created some of them.  This process becomes a child
 * subreaper so that it can wait for the (orphaned) trackers to finish. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int
exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0;
}

/* Wait for every child (the helper, and orphans reparented to us); a
 * SIGALRM ends the test program if something never exits. */
static void
reap_all(unsigned timeout)
{
  alarm(timeout);
  int st;
  while (waitpid(-1, &st, 0) > 0 || errno == EINTR)
    ;
  assert_int_equal(errno, ECHILD);
  alarm(0);
}

static void
run_case(const char *method)
{
  int out[2];
  assert_int_equal(pipe(out), 0);
  char exe[512];
  snprintf(exe, sizeof exe, "%s/tests/helper_shm_holder", mp_test_build_dir());
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    execl(exe, exe, method, (char *)NULL);
    _exit(127);
  }
  close(out[1]);
  FILE *f = fdopen(out[0], "r");
  char line[512], paths[8][600];
  int n = 0, ready = 0, trackers = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "READY", 5) == 0) {
      ready = 1;
      break;
    }
    if (strncmp(line, "shm ", 4) == 0 && n < 8)
      snprintf(paths[n++], sizeof paths[0], "/dev/shm/%s", line + 4);
    else if (strncmp(line, "file ", 5) == 0 && n < 8)
      snprintf(paths[n++], sizeof paths[0], "%s", line + 5);
    else if (strncmp(line, "tracker ", 8) == 0)
      trackers = atoi(line + 8);
  }
  assert_true(ready);
  assert_true(trackers > 0);
  assert_int_equal(n, strcmp(method, "none") ? 4 : 3);
  for (int i = 0; i < n; i++)
    if (!exists(paths[i]))
      fail_msg("%s missing before the kill", paths[i]);
  kill(pid, SIGKILL);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  fclose(f);
  /* the daemon child dies with its parent; the trackers see EOF, clean up
   * and exit: once every orphan is reaped, nothing may remain */
  reap_all(30);
  for (int i = 0; i < n; i++)
    if (exists(paths[i]))
      fail_msg("%s left behind after SIGKILL (%s)", paths[i], method);
}

static void
test_kill9_no_children(void **state)
{
  run_case("none");
}

static void
test_kill9_fork_child(void **state)
{
  run_case("fork");
}

static void
test_kill9_spawn_child(void **state)
{
  run_case("spawn");
}

static void
test_kill9_forkserver_child(void **state)
{
  run_case("forkserver");
}

/* Orphaned grandchildren (the tracker among them) are reparented to us, so
 * the leak check can see and reap them. */
static int
become_subreaper(void)
{
  return prctl(PR_SET_CHILD_SUBREAPER, 1) != 0;
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_kill9_no_children),
    cmocka_unit_test(test_kill9_fork_child),
    cmocka_unit_test(test_kill9_spawn_child),
    cmocka_unit_test(test_kill9_forkserver_child),
};

MP_TEST_MAIN_WITH(tests, become_subreaper)
