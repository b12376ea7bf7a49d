/* SPDX-License-Identifier: MIT */
/* Stream helper for tests/obj/test_float_repr_oracle.py.
 *
 *   helper_float_repr
 *     in:  doubles as 8-byte little-endian bit patterns, until EOF
 *     out: the repr of each (mp_float_new + mp_obj_repr_buf: the public
 *          path), one per line
 *   helper_float_repr bench N SEED
 *     out: the mean time of a repr of N random bit patterns (xorshift; any
 *          pattern, NaNs included), through the public path and of the
 *          digit conversion alone (mp__float_repr), for before/after timing
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#include "obj/obj_internal.h"

static double
from_bits(uint64_t u)
{
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static int
repr_one(double v, char *out, size_t cap)
{
  mp_obj *o = mp_float_new(v);
  if (!o)
    return -1;
  int64_t n = mp_obj_repr_buf(o, out, cap);
  mp_obj_free(o);
  return n < 0 || (size_t)n >= cap ? -1 : (int)n;
}

static int
stream(void)
{
  unsigned char in[8 * 4096];
  char line[64];
  size_t got, have = 0;
  while ((got = fread(in + have, 1, sizeof in - have, stdin)) > 0) {
    have += got;
    size_t k;
    for (k = 0; k + 8 <= have; k += 8) {
      uint64_t u = 0;
      for (int b = 7; b >= 0; b--)
        u = u << 8 | in[k + (size_t)b];
      int n = repr_one(from_bits(u), line, sizeof line - 1);
      if (n < 0) {
        fprintf(stderr, "helper_float_repr: repr of %016llx failed: %s\n",
                (unsigned long long)u, mp_errdetail());
        return 1;
      }
      line[n++] = '\n';
      fwrite(line, 1, (size_t)n, stdout);
    }
    memmove(in, in + k, have - k);
    have -= k;
  }
  if (have) {
    fprintf(stderr, "helper_float_repr: %zu stray bytes at the end\n", have);
    return 1;
  }
  return fflush(stdout) ? 1 : 0;
}

static int
bench(long n, uint64_t seed, int public)
{
  uint64_t x = seed | 1;
  char line[64];
  size_t sum = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int len = public ? repr_one(from_bits(x), line, sizeof line)
                     : mp__float_repr(from_bits(x), line);
    if (len < 0)
      return 1;
    sum += (size_t)len;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
               (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n;
  printf("%s: %.1f ns per repr (%zu chars)\n",
         public ? "mp_obj_repr_buf" : "mp__float_repr", ns, sum);
  return 0;
}

int
main(int argc, char **argv)
{
  if (argc == 1)
    return stream();
  if (argc == 4 && !strcmp(argv[1], "bench"))
    return bench(atol(argv[2]), strtoull(argv[3], NULL, 0), 1) ||
           bench(atol(argv[2]), strtoull(argv[3], NULL, 0), 0);
  fprintf(stderr, "usage: helper_float_repr [bench N SEED]\n");
  return 2;
}
