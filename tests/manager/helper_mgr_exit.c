/* SPDX-License-Identifier: MIT */
/* Python's "Cleanup" for managers, driven by test_exit.py:
 * helper_mgr_exit METHOD exit|kill.  Starts a manager's server with that
 * start method, holds a proxy, prints "ADDRESS PID" (the server's address
 * and the pid of its process), then returns from main without freeing
 * anything (exit: the at-exit shutdown must stop the server) or SIGKILLs
 * itself (kill: the server must stop when its parent dies). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <mproc.h>

/* Globals, so the sanitizers' leak check sees them as still reachable:
 * they are left on purpose. */
static mp_manager *m;
static mp_proxy *d;

int
main(int argc, char **argv)
{
  if (argc != 3)
    return 2;
  mp_context *ctx;
  if (mp_get_context(argv[1], &ctx))
    return 2;
  if (mp_manager_new(&m, &(mp_manager_opts){ .ctx = ctx }) ||
      mp_manager_start(m) || mp_manager_dict(m, &d))
    return 3;
  mp_process **kids;
  size_t n;
  int pid = 0;
  if (!mp_active_children(&kids, &n)) {
    if (n == 1)
      pid = mp_process_pid(kids[0]);
    mp_process_list_free(kids, n);
  }
  printf("%s %d\n", mp_manager_address(m), pid);
  fflush(stdout);
  if (!strcmp(argv[2], "kill"))
    raise(SIGKILL);
  return 0; /* m and d are left for the exit handlers */
}
