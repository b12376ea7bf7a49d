/* SPDX-License-Identifier: MIT */
/* bench_repr: repr of a list of 1,000,000 floats (random bit patterns, and
 * short decimals), mproc's shortest-round-trip repr beside CPython's
 * repr(list) doing the same job and the libc floor: snprintf("%.17g") of
 * each value (correctly rounded, not shortest; the cheapest round-trip
 * text libc has).  Best of 7.  CPython runs in a python3 subprocess in the
 * same run, on the same values (the bit patterns come from one seed). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#define N 1000000
#define RUNS 7

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64*: the same sequence the Python side computes. */
static uint64_t
next(uint64_t *s)
{
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static void
make_values(double *v, int decimals)
{
  uint64_t s = 88172645463325252ull;
  for (int i = 0; i < N; i++) {
    uint64_t b = next(&s);
    if (decimals) {
      v[i] = (double)(b % 1000000) / 1000.0;
    } else {
      memcpy(&v[i], &b, 8);
      if (!isfinite(v[i]))
        v[i] = 0.5;
    }
  }
}

static double
ours(const double *v)
{
  mp_obj *l = mp_list_new();
  for (int i = 0; i < N; i++)
    mp_list_append_take(l, mp_float_new(v[i]));
  double best = 1e9;
  for (int r = 0; r < RUNS; r++) {
    double t0 = now_s();
    char *s = mp_obj_repr(l);
    double t = now_s() - t0;
    if (!s)
      exit(1);
    mp_free(s);
    if (t < best)
      best = t;
  }
  mp_obj_free(l);
  return best;
}

static double
floor_libc(const double *v)
{
  char *buf = malloc((size_t)N * 26 + 2);
  double best = 1e9;
  for (int r = 0; r < RUNS; r++) {
    double t0 = now_s();
    size_t n = 0;
    buf[n++] = '[';
    for (int i = 0; i < N; i++)
      n += (size_t)snprintf(buf + n, 26, i ? ", %.17g" : "%.17g", v[i]);
    buf[n++] = ']';
    double t = now_s() - t0;
    if (t < best)
      best = t;
  }
  free(buf);
  return best;
}

static double
python(int decimals)
{
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "python3 -c '\n"
           "import struct, time, math\n"
           "s = 88172645463325252; M = (1 << 64) - 1; v = []\n"
           "for i in range(%d):\n"
           "    s ^= s >> 12; s ^= (s << 25) & M; s ^= s >> 27\n"
           "    b = (s * 2685821657736338717) & M\n"
           "    if %d: v.append((b %% 1000000) / 1000.0)\n"
           "    else:\n"
           "        x = struct.unpack(\"<d\", struct.pack(\"<Q\", b))[0]\n"
           "        v.append(x if math.isfinite(x) else 0.5)\n"
           "best = 1e9\n"
           "for r in range(%d):\n"
           "    t0 = time.perf_counter(); repr(v); best = min(best, time.perf_counter() - t0)\n"
           "print(best)'",
           N, decimals, RUNS);
  FILE *p = popen(cmd, "r");
  double t = -1;
  if (!p || fscanf(p, "%lf", &t) != 1)
    t = -1;
  if (p)
    pclose(p);
  return t;
}

int
main(void)
{
  double *v = malloc(sizeof *v * N);
  printf("bench_repr: repr of a list of %d floats, best of %d\n\n", N, RUNS);
  printf("| values | mproc | CPython | libc %%.17g floor | /floor | Py/us |\n");
  printf("|---|---|---|---|---|---|\n");
  for (int d = 0; d < 2; d++) {
    make_values(v, d);
    double o = ours(v), f = floor_libc(v), py = python(d);
    printf("| %s | %.1f ms | %.1f ms | %.1f ms | %.2fx | %.2fx |\n",
           d ? "short decimals" : "random bit patterns", o * 1e3, py * 1e3,
           f * 1e3, o / f, py / o);
  }
  printf("\n/floor: mproc's time over libc's (which prints 17 digits, not the\n"
         "shortest).  Py/us: how many times faster mproc is than CPython.\n");
  free(v);
  return 0;
}
