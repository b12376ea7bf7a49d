/* SPDX-License-Identifier: MIT */
/* pickle_roundtrip PROTOCOL: read one pickle on stdin, write mproc's own
 * encoding of the same value at PROTOCOL (2, 3, 4 or 5; 0 = mproc's
 * default) on stdout.
 *
 *     python3 -c "import pickle,sys; sys.stdout.buffer.write(pickle.dumps([1, 2.5], 2))" \
 *       | ./build/examples/pickle_roundtrip 4 \
 *       | python3 -c "import pickle,sys; print(pickle.load(sys.stdin.buffer))"
 *     [1, 2.5]
 *
 * Bad input or a bad protocol: a message on stderr and a non-zero status. */
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
  char *end;
  long proto = argc == 2 ? strtol(argv[1], &end, 10) : -1;
  if (argc != 2 || *end || (proto != 0 && (proto < 2 || proto > 5))) {
    fprintf(stderr, "usage: %s PROTOCOL (2, 3, 4, 5, or 0 for the default)"
                    " < in.pickle > out.pickle\n", argv[0]);
    return 2;
  }
  unsigned char *data;
  size_t len;
  if (read_all(stdin, &data, &len)) {
    fprintf(stderr, "pickle_roundtrip: cannot read stdin\n");
    return 1;
  }
  mp_obj *v;
  int rc = mp_pickle_loads(data, len, NULL, &v);
  free(data);
  if (rc) {
    fprintf(stderr, "pickle_roundtrip: %s: %s\n", mp_strerror(rc),
            mp_errdetail());
    return 1;
  }
  void *out;
  size_t outlen;
  rc = mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = (int)proto}, &out,
                       &outlen);
  mp_obj_free(v);
  if (rc) {
    fprintf(stderr, "pickle_roundtrip: cannot encode: %s: %s\n",
            mp_strerror(rc), mp_errdetail());
    return 1;
  }
  size_t w = fwrite(out, 1, outlen, stdout);
  mp_free(out);
  if (w != outlen || fflush(stdout)) {
    fprintf(stderr, "pickle_roundtrip: cannot write stdout\n");
    return 1;
  }
  return 0;
}
