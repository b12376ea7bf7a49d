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
 * CPython / ours.  Usage: bench_process [--quick] */
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

extern char **environ;

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

/* Ours and the floor alternate, so that load from elsewhere on the machine
 * weighs on both alike; medians. */
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

int
main(int argc, char **argv)
{
  if (argc > 1 && !strcmp(argv[1], "--exit"))
    return 0;
  int quick = argc > 1 && !strcmp(argv[1], "--quick");
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0)
    return 1;
  self[len] = '\0';
  static const struct {
    const char *method;
    int n_ours, n_py;
  } rows[] = {{"fork", 2000, 300},
              {"spawn", 500, 20},
              {"forkserver", 1000, 100},
              {"threading", 5000, 1000}};
  cpu_set_t all;
  sched_getaffinity(0, sizeof all, &all);
  printf("start+join latency, median microseconds (lower is better)\n");
  for (int pinned = 1; pinned >= 0; pinned--) {
    if (pinned) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(0, &one);
      sched_setaffinity(0, sizeof one, &one);
    } else {
      sched_setaffinity(0, sizeof all, &all);
    }
    printf("\n%s\n", pinned ? "pinned to CPU 0 (taskset -c 0)" : "unpinned");
    printf("%-11s %10s %10s %10s %12s %14s\n", "method", "mproc", "CPython",
           "floor", "mproc/floor", "CPython/mproc");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
      int n = quick ? rows[i].n_ours / 10 : rows[i].n_ours;
      int np = quick ? rows[i].n_py / 10 + 1 : rows[i].n_py;
      double o, fl;
      measure(rows[i].method, n, self, &o, &fl);
      double py = cpython(rows[i].method, np);
      printf("%-11s %10.1f %10.1f %10.1f %11.2fx %13.1fx\n", rows[i].method,
             o, py, fl, o / fl, py > 0 ? py / o : 0.0);
      fflush(stdout);
    }
  }
  printf("\nfloor: fork+_exit+waitpid (fork, forkserver); posix_spawn of this "
         "program exiting at once (spawn); pthread_create+join (threading)\n");
  return 0;
}
