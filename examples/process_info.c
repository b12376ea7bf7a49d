/* SPDX-License-Identifier: MIT */
/* The seeds' info() example: which process runs what.
 *
 *   def info(title):
 *       print(title)
 *       print('module name:', __name__)
 *       print('parent process:', os.getppid())
 *       print('process id:', os.getpid())
 *
 *   def f(name):
 *       info('function f')
 *       print('hello', name)
 *
 *   if __name__ == '__main__':
 *       info('main line')
 *       p = Process(target=f, args=('bob',))
 *       p.start()
 *       p.join()
 *
 * Usage: process_info [fork|spawn|forkserver|threading]
 * ("module name" reads as Python's: __mp_main__ in a fresh image.) */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

static void
info(const char *title)
{
  mp_context *ctx = mp_process_context(mp_current_process());
  const char *m = ctx ? mp_context_method(ctx) : "";
  int fresh = mp_parent_process() &&
              (!strcmp(m, "spawn") || !strcmp(m, "forkserver"));
  printf("%s\n", title);
  printf("module name: %s\n", fresh ? "__mp_main__" : "__main__");
  printf("parent process: %d\n", (int)getppid());
  printf("process id: %d\n", (int)getpid());
}

static int
f(mp_obj *args)
{
  const char *name;
  size_t len;
  info("function f");
  if (mp_str_get(mp_seq_item(args, 0), &name, &len) == 0)
    printf("hello %s\n", name);
  return 0;
}

int
main(int argc, char **argv)
{
  const char *method = argc > 1 ? argv[1] : NULL;
  mp_context *ctx;
  mp_process *p;
  int rc = mp_get_context(method, &ctx);
  if (rc) {
    fprintf(stderr, "process_info: %s\n", mp_errdetail());
    return 2;
  }
  info("main line");
  mp_obj *args = MP_TUPLE(mp_str_new("bob"));
  rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = f, .args = args});
  mp_obj_free(args);
  if (!rc)
    rc = mp_process_start(p);
  if (!rc)
    rc = mp_process_join(p, MP_FOREVER);
  if (rc) {
    fprintf(stderr, "process_info: %s: %s\n", mp_strerror(rc), mp_errdetail());
    return 1;
  }
  mp_process_free(p);
  return 0;
}
