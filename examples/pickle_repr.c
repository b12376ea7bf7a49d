/* SPDX-License-Identifier: MIT */
/* pickle_repr: read one pickle on stdin, print its repr.
 *
 *     python3 -c "import pickle,sys; sys.stdout.buffer.write(pickle.dumps({1: 'a'}))" \
 *       | ./build/examples/pickle_repr
 *     {1: 'a'}
 *
 * Exit status 0; for input that is not a pickle mproc reads, a message on
 * stderr and status 1.  Nothing in the pickle is imported or run. */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
read_all(FILE *f, unsigned char **data, size_t *len)
{
  size_t cap = 1 << 16, n = 0;
  unsigned char *buf = malloc(cap);
  if (!buf)
    return -1;
  for (;;) {
    if (n == cap) {
      unsigned char *nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf);
        return -1;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    free(buf);
    return -1;
  }
  *data = buf;
  *len = n;
  return 0;
}

int
main(int argc, char **argv)
{
  if (argc != 1) {
    fprintf(stderr, "usage: %s < file.pickle\n", argv[0]);
    return 2;
  }
  unsigned char *data;
  size_t len;
  if (read_all(stdin, &data, &len)) {
    fprintf(stderr, "pickle_repr: cannot read stdin\n");
    return 1;
  }
  mp_obj *v;
  int rc = mp_pickle_loads(data, len, NULL, &v);
  free(data);
  if (rc) {
    fprintf(stderr, "pickle_repr: %s: %s\n", mp_strerror(rc), mp_errdetail());
    return 1;
  }
  char *r = mp_obj_repr(v);
  mp_obj_free(v);
  if (!r) {
    fprintf(stderr, "pickle_repr: cannot print: %s\n", mp_errdetail());
    return 1;
  }
  puts(r);
  mp_free(r);
  return 0;
}
