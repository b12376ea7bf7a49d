/* SPDX-License-Identifier: MIT */
/* Helpers every C benchmark uses: the clock, shared anonymous memory, bare
 * futex calls, and running the CPython side (bench_X.py beside bench_X.c)
 * as a subprocess that prints one number. */
#ifndef MPROC_BENCH_UTIL_H
#define MPROC_BENCH_UTIL_H

#include <libgen.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BENCH_UNUSED __attribute__((unused))

static BENCH_UNUSED double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* n bytes of MAP_SHARED anonymous memory (exits on failure) */
static BENCH_UNUSED void *
shared(size_t n)
{
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  return p;
}

static BENCH_UNUSED void
futex_wait(_Atomic uint32_t *w, uint32_t v)
{
  syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

/* The same wait with a relative timeout (the kernel arms a timer). */
static BENCH_UNUSED void
futex_wait_for(_Atomic uint32_t *w, uint32_t v, long ns)
{
  struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
  syscall(SYS_futex, w, FUTEX_WAIT, v, &ts, NULL, 0);
}

static BENCH_UNUSED void
futex_wake(_Atomic uint32_t *w, int n)
{
  syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* The path of the CPython script beside `source` (pass __FILE__):
 * <dir of source>/<name>. */
static BENCH_UNUSED void
bench_script(char *out, size_t cap, const char *source, const char *name)
{
  char src[1024];
  snprintf(src, sizeof src, "%s", source);
  snprintf(out, cap, "%s/%s", dirname(src), name);
}

/* Run `python3 SCRIPT ARGS` (pinned to CPU `pin_cpu` when >= 0) and read
 * the one number it prints; -1 if it fails. */
static BENCH_UNUSED double
bench_python(const char *script, const char *args, int pin_cpu)
{
  char cmd[2048], pin[32] = "";
  if (pin_cpu >= 0)
    snprintf(pin, sizeof pin, "taskset -c %d ", pin_cpu);
  snprintf(cmd, sizeof cmd, "%spython3 %s %s 2>/dev/null", pin, script, args);
  FILE *f = popen(cmd, "r");
  double v = -1;
  if (!f || fscanf(f, "%lf", &v) != 1)
    v = -1;
  if (f)
    pclose(f);
  return v;
}

/* The jobs named on the command line (after "quick"), or all when none
 * is: 1 if `job` is to run. */
static BENCH_UNUSED int
bench_want(int argc, char **argv, const char *job)
{
  int first = argc > 1 && strcmp(argv[1], "quick") == 0 ? 2 : 1;
  if (argc <= first)
    return 1;
  for (int i = first; i < argc; i++)
    if (strcmp(argv[i], job) == 0)
      return 1;
  return 0;
}

/* The run's scale: 0.1 for "quick", MPROC_BENCH_SCALE when set, else
 * `deflt`. */
static BENCH_UNUSED double
bench_scale(int argc, char **argv, double deflt)
{
  double scale = argc > 1 && strcmp(argv[1], "quick") == 0 ? 0.1 : deflt;
  const char *env = getenv("MPROC_BENCH_SCALE");
  if (env && atof(env) > 0)
    scale = atof(env);
  return scale;
}

#endif
