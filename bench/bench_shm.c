/* SPDX-License-Identifier: MIT */
/* Shared-state benchmark: mproc beside CPython (bench_shm.py, run as a
 * python3 subprocess) and the raw system-call / memory floor.
 *
 *   SharedMemory create(4096) + close + unlink   us/cycle
 *   synchronized Value get + set                 ns/op
 *   Array of 1M doubles copied out               GB/s
 *
 * Usage: bench_shm [quick] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

static double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char pyscript[1024];

static double
python(const char *job, long n)
{
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "python3 %s %s %ld 2>/dev/null", pyscript, job,
           n);
  FILE *f = popen(cmd, "r");
  double v = -1;
  if (!f || fscanf(f, "%lf", &v) != 1)
    v = -1;
  if (f)
    pclose(f);
  return v;
}

static void
row(const char *job, const char *what, double v, const char *unit, double ref,
    const char *refname)
{
  if (v < 0)
    printf("| %-30s | %-28s | %10s | %-8s |\n", job, what, "n/a", unit);
  else if (ref > 0)
    printf("| %-30s | %-28s | %10.3f | %-8s | %.2fx %s\n", job, what, v, unit,
           v / ref, refname);
  else
    printf("| %-30s | %-28s | %10.3f | %-8s |\n", job, what, v, unit);
}

static double
raw_shm_cycle(long n)
{
  double t = now();
  for (long i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof name, "/mp-bench-%d-%ld", (int)getpid(), i);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) < 0)
      exit(1);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    munmap(p, 4096);
    close(fd);
    shm_unlink(name);
  }
  return (now() - t) / n * 1e6;
}

static double
mp_shm_cycle(long n)
{
  double t = now();
  for (long i = 0; i < n; i++) {
    mp_shm *m;
    if (mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = 4096}))
      exit(1);
    mp_shm_unlink(m);
    mp_shm_free(m);
  }
  return (now() - t) / n * 1e6;
}

int
main(int argc, char **argv)
{
  int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
  char src[1024];
  snprintf(src, sizeof src, "%s", __FILE__);
  snprintf(pyscript, sizeof pyscript, "%s/bench_shm.py", dirname(src));
  long NS = quick ? 500 : 5000, NV = quick ? 200000 : 5000000,
       NA = quick ? 20 : 200;

  printf("| %-30s | %-28s | %10s | %-8s | %s\n", "job", "implementation",
         "result", "unit", "ratio");
  printf("|--------------------------------|------------------------------|"
         "------------|----------|------\n");
  mp_shm_cycle(10); /* start the tracker outside the timing */
  double raw = raw_shm_cycle(NS);
  row("SharedMemory create+unlink", "shm_open+ftruncate+mmap", raw, "us",
      0, "");
  row("SharedMemory create+unlink", "mproc SharedMemory", mp_shm_cycle(NS),
      "us", raw, "of raw");
  row("SharedMemory create+unlink", "CPython SharedMemory",
      python("shm_cycle", NS), "us", raw, "of raw");

  mp_value *v;
  mp_value_new(&v, 'q', NULL, NULL);
  volatile int64_t plain = 0;
  double t = now();
  for (long i = 0; i < NV; i++)
    plain = plain + 1;
  double floor = (now() - t) / NV * 1e9;
  t = now();
  for (long i = 0; i < NV; i++) {
    int64_t x;
    mp_value_get_int(v, &x);
    mp_value_set_int(v, x + 1);
  }
  double mv = (now() - t) / NV * 1e9;
  row("Value get + set (synchronized)", "plain memory", floor, "ns", 0, "");
  row("Value get + set (synchronized)", "mproc Value", mv, "ns", floor,
      "of plain");
  row("Value get + set (synchronized)", "CPython Value",
      python("value_rw", NV / 10), "ns", floor, "of plain");
  mp_value_free(v);

  mp_array *a;
  mp_array_new(&a, 'd', 1000000, NULL, &(mp_value_opts){.raw = 1});
  double *dst = malloc(8000000);
  memset(dst, 1, 8000000);
  memcpy(dst, mp_array_ptr(a), 8000000); /* fault the pages in first */
  t = now();
  for (long i = 0; i < NA; i++)
    memcpy(dst, mp_array_ptr(a), 8000000);
  double mc = NA * 8e6 / (now() - t) / 1e9;
  t = now();
  for (long i = 0; i < NA; i++)
    mp_array_read(a, 0, 1000000, dst);
  double ma = NA * 8e6 / (now() - t) / 1e9;
  row("Array 1M doubles copied out", "memcpy", mc, "GB/s", 0, "");
  row("Array 1M doubles copied out", "mproc mp_array_read", ma, "GB/s", mc,
      "of memcpy");
  row("Array 1M doubles copied out", "CPython arr[:] (to a list)",
      python("array_copy", NA / 4 + 1), "GB/s", mc, "of memcpy");
  free(dst);
  mp_array_free(a);
  mp_resource_tracker_stop();
  return 0;
}
