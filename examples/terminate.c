/* SPDX-License-Identifier: MIT */
/* The seeds' terminate session:
 *
 *   >>> p = multiprocessing.Process(target=time.sleep, args=(1000,))
 *   >>> print(p, p.is_alive())
 *   <Process ... initial> False
 *   >>> p.start()
 *   >>> print(p, p.is_alive())
 *   <Process ... started> True
 *   >>> p.terminate()
 *   >>> time.sleep(0.1)
 *   >>> print(p, p.is_alive())
 *   <Process ... stopped exitcode=-SIGTERM> False
 *   >>> p.exitcode == -signal.SIGTERM
 *   True
 *
 * (We join instead of sleeping 0.1 s: waiting for the event, not a guess.) */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <mproc.h>

static int
sleep_target(mp_obj *args)
{
  int64_t secs = 0;
  mp_int_get(mp_seq_item(args, 0), &secs);
  sleep((unsigned)secs);
  return 0;
}

static void
show(mp_process *p)
{
  char repr[256];
  mp_process_repr(p, repr, sizeof repr);
  printf("%s %s\n", repr, mp_process_is_alive(p) == 1 ? "True" : "False");
}

int
main(void)
{
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_int_new(1000));
  int rc = mp_process_new(&p, NULL, &(mp_process_opts){.target = sleep_target,
                                                        .args = args});
  mp_obj_free(args);
  if (rc)
    return 1;
  show(p);
  if ((rc = mp_process_start(p)) != 0)
    return 1;
  show(p);
  mp_process_terminate(p);
  mp_process_join(p, MP_FOREVER);
  show(p);
  int code;
  mp_process_exitcode(p, &code);
  printf("%s\n", code == -SIGTERM ? "True" : "False");
  mp_process_free(p);
  return 0;
}
