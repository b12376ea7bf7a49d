/* SPDX-License-Identifier: MIT */
/* Driven by test_tracker: creates named resources, reports them on stdout
 * (one line each: "shm NAME", "file PATH", then "READY"), and waits to be
 * SIGKILLed.  argv[1]: the start method of a daemon child that creates one
 * more segment ("none": no child). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

static void
say(const char *kind, const char *what)
{
  char line[512];
  int n = snprintf(line, sizeof line, "%s %s\n", kind, what);
  if (write(1, line, (size_t)n) != n) /* one write: lines never mix */
    _exit(3);
}

static int
child(mp_obj *args)
{
  mp_event *ready = mp_event_from_obj(mp_seq_item(args, 0));
  mp_shm *m;
  if (mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = 10000}))
    return 1;
  say("shm", mp_shm_name(m));
  mp_event_set(ready);
  for (;;)
    pause();
}

int
main(int argc, char **argv)
{
  const char *method = argc > 1 ? argv[1] : "none";
  for (int i = 0; i < 2; i++) {
    mp_shm *m;
    if (mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = 4096}))
      return 1;
    say("shm", mp_shm_name(m));
  }
  char path[64];
  snprintf(path, sizeof path, "/tmp/mproc-tracked-%d", (int)getpid());
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 || mp_resource_register("file", path))
    return 2;
  close(fd);
  say("file", path);
  /* a segment created and unlinked properly is forgotten */
  mp_shm *gone;
  if (mp_shm_new(&gone, NULL, &(mp_shm_opts){.create = 1, .size = 1})
      || mp_shm_unlink(gone))
    return 4;
  mp_shm_free(gone);
  if (strcmp(method, "none") != 0) {
    mp_context *ctx;
    mp_event *ready;
    mp_process *p;
    if (mp_get_context(method, &ctx) || mp_event_new(&ready))
      return 5;
    mp_obj *args = MP_TUPLE(mp_event_obj(ready));
    if (mp_process_new(&p, ctx, &(mp_process_opts){.target = child,
                                                   .args = args,
                                                   .daemon = MP_DAEMON_YES})
        || mp_process_start(p))
      return 6;
    mp_obj_free(args);
    if (mp_event_wait(ready, 60))
      return 7;
  }
  char tp[32];
  snprintf(tp, sizeof tp, "%d", mp_resource_tracker_pid());
  say("tracker", tp);
  say("READY", "");
  for (;;)
    pause();
}
