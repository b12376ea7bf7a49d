/* SPDX-License-Identifier: MIT */
/* bench_pickle: the pickle codec beside CPython's C pickle and memcpy.
 *
 * Jobs (the issue's): a list of 1,000,000 small ints (range(10**6)), a dict
 * of 100,000 str -> float, a 10 MiB bytes object; dumps and loads at
 * protocol 4.  mproc loads the very pickle CPython wrote (frames, memo) and
 * also its own.  CPython runs in a python3 subprocess in the same run
 * (bench_pickle.py beside this file); the floor is a memcpy of the pickle's
 * size into a buffer already touched.  Best of N runs (BENCH_RUNS, 7);
 * MB/s are of pickle bytes.  Single-threaded throughput, so no pinning. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

static int runs = 7;

static double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct job {
  const char *name, *what;
  mp_obj *v;
  /* CPython's figures */
  double py_dumps, py_loads;
  size_t py_size;
  unsigned char *py_pickle;
  size_t py_len;
} job;

static mp_obj *
make_ints(void)
{
  mp_obj *l = mp_list_new();
  for (int64_t i = 0; i < 1000000; i++)
    if (mp_list_append_take(l, mp_int_new(i)))
      abort();
  return l;
}

static mp_obj *
make_dict(void)
{
  mp_obj *d = mp_dict_new();
  for (int i = 0; i < 100000; i++)
    if (mp_dict_set_take(d, mp_str_printf("key%d", i), mp_float_new(i * 0.5)))
      abort();
  return d;
}

static mp_obj *
make_bytes(void)
{
  size_t n = 10 * 1024 * 1024;
  unsigned char *b = malloc(n);
  for (size_t i = 0; i < n; i++)
    b[i] = (unsigned char)i;
  mp_obj *o = mp_bytes_new(b, n);
  free(b);
  return o;
}

static double
json_num(const char *js, const char *job, const char *key)
{
  const char *p = strstr(js, job);
  if (!p)
    return -1;
  p = strstr(p, key);
  if (!p)
    return -1;
  return atof(p + strlen(key) + 2); /* "key": value */
}

static unsigned char *
read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return b;
}

static const char *py_version = "?";

static int
run_cpython(job *jobs, int njobs)
{
  char script[4096];
  snprintf(script, sizeof script, "%s", __FILE__);
  char *dot = strrchr(script, '.');
  if (!dot)
    return -1;
  strcpy(dot, ".py");
  char dir[] = "/tmp/mproc-bench-XXXXXX";
  if (!mkdtemp(dir))
    return -1;
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "BENCH_RUNS=%d python3 '%s' '%s'", runs, script,
           dir);
  FILE *p = popen(cmd, "r");
  static char js[4096];
  size_t n = p ? fread(js, 1, sizeof js - 1, p) : 0;
  js[n] = 0;
  if (!p || pclose(p) != 0 || n == 0) {
    fprintf(stderr, "bench_pickle: %s failed\n", cmd);
    return -1;
  }
  char *v = strstr(js, "\"python\": \"");
  if (v) {
    static char ver[32];
    sscanf(v + 11, "%31[^\"]", ver);
    py_version = ver;
  }
  for (int i = 0; i < njobs; i++) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\"", jobs[i].name);
    jobs[i].py_dumps = json_num(js, key, "\"dumps\"");
    jobs[i].py_loads = json_num(js, key, "\"loads\"");
    jobs[i].py_size = (size_t)json_num(js, key, "\"size\"");
    char path[512];
    snprintf(path, sizeof path, "%s/%s.pickle", dir, jobs[i].name);
    jobs[i].py_pickle = read_file(path, &jobs[i].py_len);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

static double
time_dumps(const mp_obj *v, size_t *size)
{
  double best = 1e9;
  for (int r = 0; r < runs; r++) {
    void *p;
    size_t n;
    double t0 = now();
    if (mp_pickle_dumps(v, NULL, &p, &n))
      abort();
    double t = now() - t0;
    mp_free(p);
    *size = n;
    if (t < best)
      best = t;
  }
  return best;
}

static double
time_loads(const void *p, size_t n)
{
  double best = 1e9;
  mp_obj *warm; /* untimed: fills the allocator's pools */
  if (mp_pickle_loads(p, n, NULL, &warm) == 0)
    mp_obj_free(warm);
  for (int r = 0; r < runs; r++) {
    mp_obj *v;
    double t0 = now();
    int rc = mp_pickle_loads(p, n, NULL, &v);
    double t = now() - t0;
    if (rc) {
      fprintf(stderr, "loads: %s\n", mp_errdetail());
      abort();
    }
    mp_obj_free(v);
    if (t < best)
      best = t;
  }
  return best;
}

static double
time_memcpy(size_t n)
{
  unsigned char *a = malloc(n), *b = malloc(n);
  memset(a, 1, n);
  memset(b, 2, n);
  double best = 1e9;
  for (int r = 0; r < runs; r++) {
    double t0 = now();
    memcpy(b, a, n);
    __asm__ volatile("" : : "r"(b) : "memory");
    double t = now() - t0;
    if (t < best)
      best = t;
  }
  free(a);
  free(b);
  return best;
}

int
main(void)
{
  if (getenv("BENCH_RUNS"))
    runs = atoi(getenv("BENCH_RUNS")) > 0 ? atoi(getenv("BENCH_RUNS")) : 7;
  job jobs[] = {
      {"ints", "list of 1,000,000 small ints", make_ints()},
      {"dict", "dict of 100,000 str -> float", make_dict()},
      {"bytes", "10 MiB bytes object", make_bytes()},
  };
  int njobs = 3;
  int have_py = run_cpython(jobs, njobs) == 0;
  printf("pickle codec, protocol 4, best of %d (mproc %s, CPython %s)\n\n",
         runs, MPROC_VERSION_STRING, py_version);
  /* a markdown table of the report's wide shape (tools/bench_report.py):
   * times, then ratios (a cell ending in x) */
  printf("| %-54s | %10s | %10s | %10s | %9s | %9s |\n", "job", "mproc",
         "CPython", "memcpy", "speedup", "of floor");
  printf("|--------------------------------------------------------|------------|------------|"
         "------------|-----------|-----------|\n");
  for (int i = 0; i < njobs; i++) {
    job *j = &jobs[i];
    size_t size = 0;
    double d = time_dumps(j->v, &size);
    void *own;
    size_t ownlen;
    mp_pickle_dumps(j->v, NULL, &own, &ownlen);
    double l_own = time_loads(own, ownlen);
    double l_py = have_py && j->py_pickle ? time_loads(j->py_pickle, j->py_len)
                                          : -1;
    double floor = time_memcpy(size);
    char name[64], py[24] = "-", sp[16] = "-";
    snprintf(name, sizeof name, "%s: dumps", j->what);
    if (have_py) {
      snprintf(py, sizeof py, "%.2f ms", j->py_dumps * 1e3);
      snprintf(sp, sizeof sp, "%.2fx", j->py_dumps / d);
    }
    printf("| %-54s | %7.2f ms | %10s | %7.3f ms | %9s | %8.2fx |\n", name,
           d * 1e3, py, floor * 1e3, sp, floor / d);
    if (l_py >= 0) {
      double f2 = time_memcpy(j->py_len);
      snprintf(name, sizeof name, "%s: loads (CPython's pickle)", j->what);
      printf("| %-54s | %7.2f ms | %7.2f ms | %7.3f ms | %8.2fx | %8.2fx |\n",
             name, l_py * 1e3, j->py_loads * 1e3, f2 * 1e3, j->py_loads / l_py,
             f2 / l_py);
    }
    snprintf(name, sizeof name, "%s: loads (own pickle)", j->what);
    printf("| %-54s | %7.2f ms | %10s | %7.3f ms | %9s | %8.2fx |\n", name,
           l_own * 1e3, "-", floor * 1e3, "-", floor / l_own);
    mp_free(own);
    free(j->py_pickle);
    mp_obj_free(j->v);
  }
  printf("\nspeedup = CPython time / mproc time; of floor = memcpy time / "
         "mproc time (1.00x = memcpy bandwidth).\n");
  return 0;
}
