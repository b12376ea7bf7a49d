/* SPDX-License-Identifier: MIT */
/* Start+join latency of a process per start method: mproc beside CPython's
 * multiprocessing doing the same with the same method (bench_process.py)
 * and beside the system-call floor, pinned to one CPU and unpinned.
 *
 *   fork        mproc fork      | CPython fork       | fork+_exit+waitpid
 *   spawn       mproc spawn     | CPython spawn      | posix_spawn of this
 *                                                       program, exiting at once
 *   forkserver  mproc (warm)    | CPython (warm)     | fork+_exit+waitpid
 *   threading   mproc threading | multiprocessing.dummy | pthread_create+join
 *
 * Figures are medians in microseconds; ratios are ours / floor and
 * CPython / ours.  Ours and the floor alternate start by start, so that
 * load from elsewhere weighs on both alike; with --best K each row is
 * measured K times and the lowest median of each column is kept (the
 * machine is shared: the best of K interleaved runs is the figure least
 * disturbed by others).
 *
 *   bench_process [--quick] [--best K] [--only METHOD] [--no-python]
 *   bench_process --loop METHOD|floor N [pin]
 *       N start+joins and nothing else (METHOD's, or the raw fork floor),
 *       pinned to CPU 0 with "pin": for counting system calls and context
 *       switches (strace -f -c, perf stat -e context-switches), which load
 *       does not change. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

static double
now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
  qsort(v, (size_t)n, sizeof *v, cmp);
  return v[n / 2];
}

static int
target(mp_obj *args)
{
  (void)args;
  return 0;
}

static void *
nothing(void *arg)
{
  return arg;
}

static void
ours_once(mp_context *ctx, const char *method)
{
  mp_process *p;
  if (mp_process_new(&p, ctx, &(mp_process_opts){.target = target}) ||
      mp_process_start(p) || mp_process_join(p, MP_FOREVER)) {
    fprintf(stderr, "bench_process: %s: %s\n", method, mp_errdetail());
    exit(1);
  }
  mp_process_free(p);
}

static void
floor_once(const char *method, const char *self)
{
  if (!strcmp(method, "spawn")) {
    pid_t pid;
    char *argv[] = {(char *)self, (char *)"--exit", NULL};
    if (posix_spawn(&pid, self, NULL, NULL, argv, environ) == 0)
      waitpid(pid, NULL, 0);
  } else if (!strcmp(method, "threading")) {
    pthread_t th;
    pthread_create(&th, NULL, nothing, NULL);
    pthread_join(th, NULL);
  } else {
    pid_t pid = fork();
    if (pid == 0)
      _exit(0);
    waitpid(pid, NULL, 0);
  }
}

/* Ours and the floor alternate, start by start; medians. */
static void
measure(const char *method, int n, const char *self, double *ours,
        double *floor_us)
{
  mp_context *ctx;
  mp_get_context(method, &ctx);
  double *a = malloc(sizeof(double) * (size_t)n);
  double *b = malloc(sizeof(double) * (size_t)n);
  ours_once(ctx, method); /* warm-up (starts the forkserver) */
  floor_once(method, self);
  for (int i = 0; i < n; i++) {
    double t0 = now_us();
    ours_once(ctx, method);
    double t1 = now_us();
    floor_once(method, self);
    double t2 = now_us();
    a[i] = t1 - t0;
    b[i] = t2 - t1;
  }
  *ours = median(a, n);
  *floor_us = median(b, n);
  free(a);
  free(b);
}

static double
cpython(const char *method, int n)
{
  char dir[4096], cmd[8400];
  snprintf(dir, sizeof dir, "%s", __FILE__);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  else
    strcpy(dir, ".");
  snprintf(cmd, sizeof cmd, "python3 %s/bench_process.py %s %d 2>/dev/null",
           dir, method, n);
  FILE *f = popen(cmd, "r");
  double v = 0;
  if (!f || fscanf(f, "%lf", &v) != 1)
    v = 0;
  if (f)
    pclose(f);
  return v;
}

static void
pin(int on, const cpu_set_t *all)
{
  if (on) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
  } else {
    sched_setaffinity(0, sizeof *all, all);
  }
}

/* --loop: n start+joins of `method` ("floor": the raw fork floor). */
static int
loop(const char *method, int n, const char *self)
{
  mp_context *ctx = NULL;
  int raw = !strcmp(method, "floor");
  if (!raw && mp_get_context(method, &ctx)) {
    fprintf(stderr, "bench_process: no method %s\n", method);
    return 2;
  }
  for (int i = 0; i < n; i++) {
    if (raw)
      floor_once("fork", self);
    else
      ours_once(ctx, method);
  }
  return 0;
}

int
main(int argc, char **argv)
{
  if (argc > 1 && !strcmp(argv[1], "--exit"))
    return 0;
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0)
    return 1;
  self[len] = '\0';
  cpu_set_t all;
  sched_getaffinity(0, sizeof all, &all);
  if (argc > 3 && !strcmp(argv[1], "--loop")) {
    pin(argc > 4 && !strcmp(argv[4], "pin"), &all);
    return loop(argv[2], atoi(argv[3]), self);
  }
  int quick = 0, best = 1, python = 1;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--no-python"))
      python = 0;
    else if (!strcmp(argv[i], "--best") && i + 1 < argc)
      best = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 1;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else {
      fprintf(stderr, "usage: bench_process [--quick] [--best K] [--only "
                      "METHOD] [--no-python] | --loop METHOD|floor N [pin]\n");
      return 2;
    }
  }
  static const struct {
    const char *method;
    int n_ours, n_py;
  } rows[] = {{"fork", 2000, 300},
              {"spawn", 500, 20},
              {"forkserver", 1000, 100},
              {"threading", 5000, 1000}};
  printf("start+join latency, median microseconds (lower is better)");
  if (best > 1)
    printf(", best of %d interleaved runs", best);
  printf("\n");
  for (int pinned = 1; pinned >= 0; pinned--) {
    pin(pinned, &all);
    printf("\n%s\n\n", pinned ? "pinned to CPU 0 (taskset -c 0)" : "unpinned");
    /* a markdown table of the report's wide shape (tools/bench_report.py) */
    printf("| %-29s | %11s | %11s | %11s | %11s | %13s |\n", "job", "mproc",
           "CPython", "raw floor", "mproc/floor", "CPython/mproc");
    printf("|-------------------------------|-------------|-------------|"
           "-------------|-------------|---------------|\n");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
      if (only && strcmp(only, rows[i].method))
        continue;
      int n = quick ? rows[i].n_ours / 10 : rows[i].n_ours;
      int np = quick ? rows[i].n_py / 10 + 1 : rows[i].n_py;
      double o = 0, fl = 0;
      for (int k = 0; k < best; k++) {
        double ok, flk;
        measure(rows[i].method, n, self, &ok, &flk);
        if (k == 0 || ok < o)
          o = ok;
        if (k == 0 || flk < fl)
          fl = flk;
      }
      double py = python ? cpython(rows[i].method, np) : 0;
      char pys[24] = "-", ratio[16] = "-", jobname[40];
      if (py > 0) {
        snprintf(pys, sizeof pys, "%.1f us", py);
        snprintf(ratio, sizeof ratio, "%.1fx", py / o);
      }
      snprintf(jobname, sizeof jobname, "%s start+join%s", rows[i].method,
               pinned ? ", pinned" : "");
      printf("| %-29s | %8.1f us | %11s | %8.1f us | %10.2fx | %13s |\n",
             jobname, o, pys, fl, o / fl, ratio);
      fflush(stdout);
    }
  }
  printf("\nfloor: fork+_exit+waitpid (fork, forkserver); posix_spawn of this "
         "program exiting at once (spawn); pthread_create+join (threading)\n");
  return 0;
}
