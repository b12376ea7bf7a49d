/* SPDX-License-Identifier: MIT */
/* The resource tracker counts every child as a process of the program
 * (issue 8, item 8): a segment the parent created stays while a child it
 * started still lives, even after the parent was SIGKILLed, and is removed
 * (with the leak warning) once every process of the program has ended --
 * under fork, spawn and forkserver.
 *
 * Whether the tracker will act is decided by one thing: does any process
 * still hold the write end of its pipe?  Right after the parent is reaped
 * (its descriptors closed) this test looks at the tracker's read end (a copy
 * taken with pidfd_getfd): a hang-up there means no process of the program
 * holds it any more, so the segment is about to go while the child lives.
 * That makes the failure certain instead of a race with the tracker.  The
 * child then attaches by name, as a program would.
 *
 * This process becomes a child subreaper so that it can wait for the
 * orphans (the child, the forkserver, the tracker). */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/* Wait for every child (the helper's orphans are reparented to us); a
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

/* The tracker's command pipe (its fd 3 once mp_resource_tracker_pid names
 * it, see tracker_main), copied here; -1 with `why` set if it cannot be. */
static int
tracker_read_end(pid_t tracker, char *why, size_t cap)
{
  char path[64], target[256] = "";
  snprintf(path, sizeof path, "/proc/%d/fd/3", (int)tracker);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n <= 0 || strncmp(target, "pipe:", 5) != 0) {
    snprintf(why, cap, "tracker %d has no pipe at fd 3 (%s)", (int)tracker,
             target);
    return -1;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, tracker, 0);
  int fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, 3, 0);
  if (fd < 0)
    snprintf(why, cap, "pidfd_getfd of tracker %d: %s", (int)tracker,
             strerror(errno));
  if (pidfd >= 0)
    close(pidfd);
  return fd;
}

static void
run_case(const char *method)
{
  int out[2], err[2], in[2];
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  assert_int_equal(pipe2(err, O_CLOEXEC), 0);
  assert_int_equal(pipe2(in, O_CLOEXEC), 0);
  char exe[512];
  snprintf(exe, sizeof exe, "%s/tests/helper_shm_parent", mp_test_build_dir());
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execl(exe, exe, method, (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  FILE *f = fdopen(out[0], "r");
  char line[512], name[512] = "";
  pid_t tracker = 0, child = 0;
  while (!child && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "shm ", 4) == 0)
      snprintf(name, sizeof name, "%s", line + 4);
    else if (strncmp(line, "tracker ", 8) == 0)
      tracker = atoi(line + 8);
    else if (strncmp(line, "child ", 6) == 0)
      child = atoi(line + 6);
  }
  char path[600], why[400] = "the helper did not report its segment, "
                             "tracker and child";
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  int trd = name[0] && tracker > 0 && child > 0
                ? tracker_read_end(tracker, why, sizeof why)
                : -1;
  if (trd < 0) { /* end everything before failing: the next case reaps */
    kill(pid, SIGKILL);
    close(in[1]);
    fclose(f);
    reap_all(60);
    close(err[0]);
    fail_msg("%s: %s", method, why);
  }

  kill(pid, SIGKILL);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  /* The parent's descriptors are closed now: does anyone hold the pipe? */
  struct pollfd pfd = {trd, POLLIN, 0};
  assert_true(poll(&pfd, 1, 0) >= 0);
  int orphaned = (pfd.revents & POLLHUP) != 0;
  close(trd);

  /* The child, alive, attaches by name after its parent's death. */
  assert_int_equal(write(in[1], "go\n", 3), 3);
  int attached = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "attached ", 9) == 0) {
      attached = atoi(line + 9);
      break;
    }
  int there_meanwhile = access(path, F_OK) == 0;
  close(in[1]); /* the child ends; the tracker is the last one */
  fclose(f);
  reap_all(60);
  char errtext[8192];
  size_t elen = 0;
  ssize_t r;
  while (elen < sizeof errtext - 1
         && (r = read(err[0], errtext + elen, sizeof errtext - 1 - elen)) > 0)
    elen += (size_t)r;
  errtext[elen] = '\0';
  close(err[0]);

  if (orphaned)
    fail_msg("%s: no process holds the tracker's pipe while the child lives "
             "(it removes the segment under the child)", method);
  if (attached != 0)
    fail_msg("%s: the child could not attach after its parent's death: %s "
             "(%d)", method, mp_err_name(attached), attached);
  assert_true(there_meanwhile);
  if (access(path, F_OK) == 0)
    fail_msg("%s: %s left behind once every process ended", method, path);
  if (!strstr(errtext, "leaked named resources") || !strstr(errtext, name))
    fail_msg("%s: no leak warning naming %s; stderr was:\n%s", method, name,
             errtext);
}

static void
test_parent_killed_fork_child(void **state)
{
  (void)state;
  run_case("fork");
}

static void
test_parent_killed_spawn_child(void **state)
{
  (void)state;
  run_case("spawn");
}

static void
test_parent_killed_forkserver_child(void **state)
{
  (void)state;
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
    cmocka_unit_test(test_parent_killed_fork_child),
    cmocka_unit_test(test_parent_killed_spawn_child),
    cmocka_unit_test(test_parent_killed_forkserver_child),
};

MP_TEST_MAIN_WITH(tests, become_subreaper)
