/* SPDX-License-Identifier: MIT */
/* Helper for tests/obj/test_func_python.py:
 *
 *   helper_func dump PROTO   writes a pickle (protocol PROTO, 0: default) of
 *                            the task (mul, (6, 7)) to stdout
 *   helper_func call         reads a pickle from stdin, loads it, calls the
 *                            task and prints "RESULT <n> <repr>", or
 *                            "ERROR <code name> <detail>" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

int mul(int a, int b);
int
mul(int a, int b)
{
  return a * b;
}

int
main(int argc, char **argv)
{
  if (argc == 3 && strcmp(argv[1], "dump") == 0) {
    mp_obj *task = MP_TUPLE(MP_FUNC(mul),
                            MP_TUPLE(mp_int_new(6), mp_int_new(7)));
    void *p;
    size_t n;
    int rc = mp_pickle_dumps(task, &(mp_pickle_opts){.protocol = atoi(argv[2])},
                             &p, &n);
    mp_obj_free(task);
    if (rc)
      return 1;
    fwrite(p, 1, n, stdout);
    mp_free(p);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "call") == 0) {
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, stdin);
    mp_obj *task;
    int rc = mp_pickle_loads(buf, n, NULL, &task);
    if (rc) {
      printf("ERROR %s %s\n", mp_err_name(rc), mp_errdetail());
      return 0;
    }
    int (*f)(int, int) = (int (*)(int, int))mp_func_get(mp_seq_item(task, 0));
    int64_t a, b;
    mp_obj *args = mp_seq_item(task, 1);
    if (!f || mp_int_get(mp_seq_item(args, 0), &a) ||
        mp_int_get(mp_seq_item(args, 1), &b)) {
      printf("ERROR not-a-task\n");
      mp_obj_free(task);
      return 0;
    }
    char *r = mp_obj_repr(task);
    printf("RESULT %d %s\n", f((int)a, (int)b), r);
    mp_free(r);
    mp_obj_free(task);
    return 0;
  }
  return 2;
}
