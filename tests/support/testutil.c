#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

const char *const mp_test_start_methods[] = {"fork", "spawn", "forkserver",
                                             NULL};

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

/* Shared-memory entries the library names with an "mproc" or "mp-" prefix. */
static int
count_shm(int report)
{
  DIR *d = opendir("/dev/shm");
  if (!d)
    return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "mproc", 5) && strncmp(e->d_name, "mp-", 3))
      continue;
    if (report)
      fprintf(stderr, "note: /dev/shm/%s exists\n", e->d_name);
    n++;
  }
  closedir(d);
  return n;
}

int
mp_test_run(const char *group, const struct CMUnitTest *tests, size_t n)
{
  for_each_fd(mark_start, NULL);
  int shm_before = count_shm(0);
  int failed = _cmocka_run_group_tests(group, tests, n, NULL, NULL);

  int leaks = 0;
  /* Give children that were just killed a moment to be reaped by whoever
   * owns them; then count them. A child left here is a failure. */
  for (int i = 0; i < 50 && count_children(0) > 0; i++)
    usleep(20000);
  leaks += count_children(1);
  for_each_fd(report_new, &leaks);
  int shm_after = count_shm(0);
  if (shm_after > shm_before) {
    count_shm(1);
    fprintf(stderr, "LEAK: %d /dev/shm entries appeared\n",
            shm_after - shm_before);
    leaks += shm_after - shm_before;
  }
  if (leaks)
    fprintf(stderr, "%s: %d leak(s) after the tests\n", group, leaks);
  return failed || leaks ? 1 : 0;
}
