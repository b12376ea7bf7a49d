/* SPDX-License-Identifier: MIT */
/* Normal exit with children still running, as Python's _exit_function:
 * daemon children are terminated, the others joined.  Starts, under fork,
 * spawn and forkserver, a non-daemon child that finishes a little later
 * (printing "done <method>") and a daemon that would sleep forever; prints
 * the daemons' pids and returns from main.  test_atexit.py checks the rest
 * from outside. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

static int
late(mp_obj *args)
{
  const char *m;
  size_t n;
  mp_str_get(mp_seq_item(args, 0), &m, &n);
  usleep(200000);
  printf("done %s\n", m);
  return 0;
}

static int
sleeper(mp_obj *args)
{
  (void)args;
  for (;;)
    pause();
  return 0;
}

int
main(void)
{
  const char *methods[] = {"fork", "spawn", "forkserver"};
  char pids[256] = "";
  for (int i = 0; i < 3; i++) {
    mp_context *ctx;
    mp_process *a, *d;
    mp_obj *args = MP_TUPLE(mp_str_new(methods[i]));
    if (mp_get_context(methods[i], &ctx) ||
        mp_process_new(&a, ctx, &(mp_process_opts){.target = late,
                                                    .args = args}) ||
        mp_process_new(&d, ctx, &(mp_process_opts){.target = sleeper,
                                                    .daemon = MP_DAEMON_YES}) ||
        mp_process_start(a) || mp_process_start(d)) {
      fprintf(stderr, "helper_atexit: %s\n", mp_errdetail());
      return 2;
    }
    mp_obj_free(args);
    snprintf(pids + strlen(pids), sizeof pids - strlen(pids), " %d",
             mp_process_pid(d));
    mp_process_free(a); /* freed, still running: joined at exit anyway */
    mp_process_free(d);
  }
  printf("DAEMONS%s\n", pids);
  return 0;
}
