/* SPDX-License-Identifier: MIT */
/* LD_PRELOADed beside a libmproc built with -finstrument-functions: in
 * every process forked from the traced program (pool workers, the
 * forkserver and its children), writes each function of libmproc the first
 * time it is entered, as its offset in the library, one per line, to
 * $MPROC_TRACE_DIR/<pid>.  Used by trace.sh; not part of the library. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NSEEN 8192
#define NOTRACE __attribute__((no_instrument_function))

static pid_t g_first; /* the traced program's pid (the first caller's) */
static pid_t g_pid;   /* this process's, once it is a traced child */
static int g_fd = -1, g_busy;
static uintptr_t g_seen[NSEEN];

void __cyg_profile_func_enter(void *fn, void *site) NOTRACE;
void __cyg_profile_func_exit(void *fn, void *site) NOTRACE;

/* The pid by system call: this runs inside fork handlers, before any
 * cache of it is right. */
NOTRACE static pid_t
pid_now(void)
{
  return (pid_t)syscall(SYS_getpid);
}

NOTRACE static void
note(uintptr_t a)
{
  unsigned h = (unsigned)((a >> 4) * 2654435761u) % NSEEN;
  while (g_seen[h] && g_seen[h] != a)
    h = (h + 1) % NSEEN;
  if (g_seen[h])
    return;
  g_seen[h] = a;
  Dl_info di;
  if (!dladdr((void *)a, &di))
    return;
  if (g_fd < 0) {
    const char *dir = getenv("MPROC_TRACE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%d", dir ? dir : ".", (int)g_pid);
    g_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  }
  char line[32];
  int n = snprintf(line, sizeof line, "%lx\n",
                   (unsigned long)(a - (uintptr_t)di.dli_fbase));
  if (g_fd >= 0 && write(g_fd, line, (size_t)n) != n)
    g_fd = -1;
}

void
__cyg_profile_func_enter(void *fn, void *site)
{
  (void)site;
  if (g_busy)
    return;
  g_busy = 1;
  pid_t p = pid_now();
  if (!g_first)
    g_first = p;
  if (p != g_first) {
    if (p != g_pid) { /* a new child: start its own list */
      g_pid = p;
      g_fd = -1;
      for (int i = 0; i < NSEEN; i++)
        g_seen[i] = 0;
    }
    note((uintptr_t)fn);
  }
  g_busy = 0;
}

void
__cyg_profile_func_exit(void *fn, void *site)
{
  (void)fn;
  (void)site;
}
