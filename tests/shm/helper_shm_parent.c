/* SPDX-License-Identifier: MIT */
/* Driven by test_tracker_children: creates a named SharedMemory, starts a
 * non-daemon child of the start method argv[1] and waits to be SIGKILLed.
 * On stdout, one line per write: "shm NAME", "tracker PID", then the
 * child's "child PID".  The child then waits for a line on stdin (the
 * driver's "go", sent once this process is dead), attaches to the segment
 * by name, reports "attached CODE" (0: it was there with its contents), and
 * exits when stdin reaches its end. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

#define CONTENTS "made by the parent"

static void
say(const char *kind, const char *what)
{
  char line[512];
  int n = snprintf(line, sizeof line, "%s %s\n", kind, what);
  if (write(1, line, (size_t)n) != n) /* one write: lines never mix */
    _exit(3);
}

/* One line (or the end) from stdin; 1 if a line came. */
static int
read_line(void)
{
  char c;
  ssize_t r;
  while ((r = read(0, &c, 1)) == 1)
    if (c == '\n')
      return 1;
  return 0;
}

static int
child(mp_obj *args)
{
  const char *name;
  size_t len;
  if (mp_str_get(mp_seq_item(args, 0), &name, &len))
    return 1;
  char pid[16];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  say("child", pid);
  if (!read_line())
    return 2;
  mp_shm *m;
  int rc = mp_shm_new(&m, name, &(mp_shm_opts){0});
  if (rc == 0) {
    if (mp_shm_size(m) < sizeof CONTENTS
        || memcmp(mp_shm_buf(m), CONTENTS, sizeof CONTENTS) != 0)
      rc = -1000; /* not the parent's segment */
    mp_shm_free(m);
  }
  char code[16];
  snprintf(code, sizeof code, "%d", rc);
  say("attached", code);
  while (read_line())
    ;
  return 0;
}

int
main(int argc, char **argv)
{
  if (argc < 2)
    return 2;
  mp_context *ctx;
  mp_shm *m;
  mp_process *p;
  if (mp_get_context(argv[1], &ctx)
      || mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = 4096}))
    return 4;
  memcpy(mp_shm_buf(m), CONTENTS, sizeof CONTENTS);
  say("shm", mp_shm_name(m));
  char tp[32];
  snprintf(tp, sizeof tp, "%d", mp_resource_tracker_pid());
  say("tracker", tp);
  mp_obj *args = MP_TUPLE(mp_str_new(mp_shm_name(m)));
  if (mp_process_new(&p, ctx, &(mp_process_opts){.target = child,
                                                 .args = args,
                                                 .daemon = MP_DAEMON_NO})
      || mp_process_start(p))
    return 5;
  mp_obj_free(args);
  for (;;)
    pause();
}
