/* SPDX-License-Identifier: MIT */
/* Starts children under fork, spawn and forkserver -- daemons that would
 * sleep forever, and non-daemons that wait for their parent to die -- some
 * from a thread that exits at once (the parent-death signal's trap), prints
 * every pid (children and forkserver) on one line, and waits to be killed.
 * test_sigkill.py SIGKILLs it and checks that nothing is left running. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

#include "proc/proc_internal.h"

static int
sleeper(mp_obj *args)
{
  (void)args;
  for (;;)
    pause();
  return 0;
}

static int
orphan(mp_obj *args)
{
  (void)args;
  /* An orphan learns that its parent died, and exits. */
  return mp_process_join(mp_parent_process(), MP_FOREVER) == 0 ? 0 : 1;
}

static char pids[4096];

static void
start(const char *method, mp_target_fn fn, int daemon)
{
  mp_context *ctx;
  mp_process *p;
  if (mp_get_context(method, &ctx) ||
      mp_process_new(&p, ctx, &(mp_process_opts){
                                  .target = fn,
                                  .daemon = daemon ? MP_DAEMON_YES
                                                   : MP_DAEMON_NO}) ||
      mp_process_start(p)) {
    fprintf(stderr, "cannot start a %s child: %s\n", method, mp_errdetail());
    _exit(2);
  }
  snprintf(pids + strlen(pids), sizeof pids - strlen(pids), " %d",
           mp_process_pid(p));
  mp_process_free(p);
}

static void *
thread_starts(void *arg)
{
  (void)arg;
  start("fork", sleeper, 1);
  start("spawn", sleeper, 1);
  return NULL; /* this thread ends now: its daemons must live on */
}

int
main(void)
{
  const char *methods[] = {"fork", "spawn", "forkserver"};
  for (int i = 0; i < 3; i++) {
    start(methods[i], sleeper, 1);
    start(methods[i], orphan, 0);
  }
  pthread_t t;
  pthread_create(&t, NULL, thread_starts, NULL);
  pthread_join(t, NULL);
  usleep(100000);
  /* The daemons started by the exited thread must still be alive. */
  mp_process **list;
  size_t n;
  mp_active_children(&list, &n);
  if (n != 8) {
    fprintf(stderr, "expected 8 live children, found %zu\n", n);
    return 3;
  }
  mp_process_list_free(list, n);
  printf("PIDS%s %d\n", pids, (int)mp__forkserver_pid());
  fflush(stdout);
  for (;;)
    pause();
}
