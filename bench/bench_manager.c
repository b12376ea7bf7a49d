/* SPDX-License-Identifier: MIT */
/* Managers beside CPython's and beside the raw floor, in one run:
 *
 *   dict __setitem__ + __getitem__ round trips, C client -> C server, vs a
 *   bare AF_UNIX request/response of the same bytes (the floor) and vs
 *   CPython client -> CPython server;
 *   the same from a CPython client -> C server, vs CPython -> CPython;
 *   8 client processes hammering one dict (set operations per second);
 *   manager start + shutdown, per start method.
 *
 * CPython's column: bench_manager.py, run with python3.
 * Usage: bench_manager [--quick] */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

static int quick;
static char script[4096];

static double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double
python(const char *args)
{
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "python3 '%s' %s 2>/dev/null", script, args);
  FILE *f = popen(cmd, "r");
  if (!f)
    return -1;
  double v = -1;
  if (fscanf(f, "%lf", &v) != 1)
    v = -1;
  pclose(f);
  return v;
}

static double
median3(double a, double b, double c)
{
  double v[3] = { a, b, c };
  qsort(v, 3, sizeof v[0], cmp_double);
  return v[1];
}

static void
die(const char *what, int rc)
{
  fprintf(stderr, "bench_manager: %s: %s (%s)\n", what, mp_strerror(rc),
          mp_errdetail());
  exit(1);
}

/* ---- dict round trips ------------------------------------------------------ */

static double
c_pairs(mp_proxy *d, int n)
{
  mp_obj *k[64];
  for (int i = 0; i < 64; i++)
    k[i] = mp_int_new(i);
  mp_obj *got;
  for (int i = 0; i < 100; i++) {
    mp_proxy_setitem(d, k[i % 64], k[i % 64]);
    mp_proxy_getitem(d, k[i % 64], &got);
    mp_obj_free(got);
  }
  double t = now();
  for (int i = 0; i < n; i++) {
    int rc = mp_proxy_setitem(d, k[i % 64], k[i % 64]);
    if (!rc)
      rc = mp_proxy_getitem(d, k[i % 64], &got);
    if (rc)
      die("dict pair", rc);
    mp_obj_free(got);
  }
  t = (now() - t) / n;
  for (int i = 0; i < 64; i++)
    mp_obj_free(k[i]);
  return t;
}

/* The floor: the same request and reply bytes over a bare AF_UNIX
 * socketpair, an echo process answering each request with the reply. */
static double
raw_pairs(int n)
{
  mp_obj *set = MP_TUPLE(mp_str_new("1a"), mp_str_new("__setitem__"),
                         MP_TUPLE(mp_int_new(7), mp_int_new(7)), mp_dict_new());
  mp_obj *get = MP_TUPLE(mp_str_new("1a"), mp_str_new("__getitem__"),
                         MP_TUPLE(mp_int_new(7)), mp_dict_new());
  mp_obj *r1 = MP_TUPLE(mp_str_new("#RETURN"), mp_none());
  mp_obj *r2 = MP_TUPLE(mp_str_new("#RETURN"), mp_int_new(7));
  void *b[4];
  size_t l[4];
  mp_obj *all[4] = { set, r1, get, r2 };
  for (int i = 0; i < 4; i++) {
    mp_pickle_dumps(all[i], NULL, &b[i], &l[i]);
    mp_obj_free(all[i]);
  }
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    char buf[256];
    for (int i = 0; i < 2 * (n + 100); i++) {
      size_t want = 4 + l[(i & 1) ? 2 : 0];
      size_t got = 0;
      while (got < want) {
        ssize_t r = read(sv[1], buf, want - got);
        if (r <= 0)
          _exit(0);
        got += (size_t)r;
      }
      uint8_t hdr[4];
      size_t rl = l[(i & 1) ? 3 : 1];
      hdr[0] = 0, hdr[1] = 0, hdr[2] = (uint8_t)(rl >> 8), hdr[3] = (uint8_t)rl;
      memcpy(buf, hdr, 4);
      memcpy(buf + 4, b[(i & 1) ? 3 : 1], rl);
      if (write(sv[1], buf, 4 + rl) < 0)
        _exit(1);
    }
    _exit(0);
  }
  close(sv[1]);
  char out[256], in[256];
  double t = 0;
  for (int i = 0; i < n + 100; i++) {
    if (i == 100)
      t = now();
    for (int k = 0; k < 2; k++) {
      size_t ql = l[k * 2], rl = l[k * 2 + 1];
      out[0] = 0, out[1] = 0, out[2] = (uint8_t)(ql >> 8), out[3] = (uint8_t)ql;
      memcpy(out + 4, b[k * 2], ql);
      if (write(sv[0], out, 4 + ql) < 0)
        die("raw write", -1);
      size_t got = 0;
      while (got < 4 + rl) {
        ssize_t r = read(sv[0], in, 4 + rl - got);
        if (r <= 0)
          die("raw read", -1);
        got += (size_t)r;
      }
    }
  }
  t = (now() - t) / n;
  close(sv[0]);
  waitpid(pid, NULL, 0);
  for (int i = 0; i < 4; i++)
    mp_free(b[i]);
  return t;
}

/* ---- 8 processes hammering one dict ----------------------------------------- */

static int
hammer_child(mp_obj *args)
{
  mp_proxy *d = mp_proxy_from_obj(mp_seq_item(args, 0));
  int64_t n, k;
  mp_int_get(mp_seq_item(args, 1), &n);
  mp_int_get(mp_seq_item(args, 2), &k);
  for (int64_t i = 0; i < n; i++) {
    mp_obj *key = MP_TUPLE(mp_int_new(k), mp_int_new(i % 64));
    mp_obj *v = mp_int_new(i);
    int rc = mp_proxy_setitem(d, key, v);
    mp_obj_free(key);
    mp_obj_free(v);
    if (rc)
      return 1;
  }
  return 0;
}

static double
c_hammer(mp_manager *m, int n, int procs)
{
  mp_proxy *d;
  int rc = mp_manager_dict(m, &d);
  if (rc)
    die("dict", rc);
  mp_process *p[16];
  double t = now();
  for (int k = 0; k < procs; k++) {
    mp_obj *args = MP_TUPLE(mp_proxy_obj(d), mp_int_new(n), mp_int_new(k));
    if ((rc = mp_process_new(&p[k], NULL, &(mp_process_opts){
                                              .target = hammer_child,
                                              .args = args })) ||
        (rc = mp_process_start(p[k])))
      die("start", rc);
    mp_obj_free(args);
  }
  for (int k = 0; k < procs; k++) {
    mp_process_join(p[k], MP_FOREVER);
    mp_process_free(p[k]);
  }
  t = now() - t;
  mp_proxy_free(d);
  return (double)n * procs / t;
}

/* ---- start + shutdown --------------------------------------------------------- */

static double
c_start(const char *method, int n)
{
  mp_context *ctx;
  mp_get_context(method, &ctx);
  double t = now();
  for (int i = 0; i < n; i++) {
    mp_manager *m;
    int rc = mp_manager_new(&m, &(mp_manager_opts){ .ctx = ctx });
    if (!rc)
      rc = mp_manager_start(m);
    if (rc)
      die("start", rc);
    mp_manager_free(m);
  }
  return (now() - t) / n;
}

/* ---- a C server for the CPython client ---------------------------------------- */

static void
ready(mp_manager *m, void *arg)
{
  pthread_mutex_t *mu = arg;
  pthread_mutex_unlock(mu);
}

static void *
serve(void *arg)
{
  mp_manager *m = arg;
  extern pthread_mutex_t serve_mu;
  mp_manager_serve_forever(m, ready, &serve_mu);
  return NULL;
}

pthread_mutex_t serve_mu = PTHREAD_MUTEX_INITIALIZER;

int
main(int argc, char **argv)
{
  quick = argc > 1 && !strcmp(argv[1], "--quick");
  const char *src = getenv("MPROC_SOURCE_DIR");
  if (src) {
    snprintf(script, sizeof script, "%s/bench/bench_manager.py", src);
  } else {
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    snprintf(slash ? slash + 1 : script,
             sizeof script - (size_t)(slash ? slash + 1 - script : 0),
             "bench_manager.py");
  }
  int n = quick ? 2000 : 10000, nh = quick ? 500 : 2000, ns = quick ? 5 : 20;
  char args[512];

  mp_manager *m;
  int rc = mp_manager_new(&m, NULL);
  if (!rc)
    rc = mp_manager_start(m);
  if (rc)
    die("start", rc);
  mp_proxy *d;
  if ((rc = mp_manager_dict(m, &d)))
    die("dict", rc);
  double c = median3(c_pairs(d, n), c_pairs(d, n), c_pairs(d, n));
  mp_proxy_free(d);
  double raw = median3(raw_pairs(n), raw_pairs(n), raw_pairs(n));
  snprintf(args, sizeof args, "dict %d", n / 2);
  double py = median3(python(args), python(args), python(args));

  /* CPython client against a C server in this process */
  mp_manager *srv;
  /* an AF_UNIX path, as SyncManager() uses: the same transport */
  mp_manager_new(&srv, &(mp_manager_opts){ .authkey = "bench",
                                           .authkey_len = 5 });
  pthread_mutex_lock(&serve_mu);
  pthread_t th;
  pthread_create(&th, NULL, serve, srv);
  pthread_mutex_lock(&serve_mu); /* unlocked by ready() */
  snprintf(args, sizeof args, "dict %d %s bench", n / 2,
           mp_manager_address(srv));
  double pyc = median3(python(args), python(args), python(args));
  mp_manager *stop;
  mp_manager_new(&stop, &(mp_manager_opts){ .address = mp_manager_address(srv),
                                            .authkey = "bench",
                                            .authkey_len = 5 });
  mp_manager_connect(stop);
  mp_manager_shutdown(stop);
  mp_manager_free(stop);
  pthread_join(th, NULL);
  mp_manager_free(srv);

  double ch = c_hammer(m, nh, 8);
  snprintf(args, sizeof args, "hammer %d 8", nh);
  double pyh = python(args);
  mp_manager_free(m);

  printf("bench_manager: mproc managers vs raw AF_UNIX request/response vs "
         "CPython multiprocessing.managers (median of 3)\n\n");
  printf("| job | mproc | raw floor | CPython | ratio |\n|---|---|---|---|---|\n");
  printf("| dict set+get pair, C client -> C server | %.1f us | %.1f us | "
         "%.1f us (CPython<->CPython) | %.2fx the floor, %.1fx faster than "
         "CPython |\n", c * 1e6, raw * 1e6, py * 1e6, c / raw, py / c);
  printf("| dict set+get pair, CPython client -> C server | %.1f us | | "
         "%.1f us (CPython<->CPython) | %.2fx faster |\n", pyc * 1e6,
         py * 1e6, py / pyc);
  printf("| 8 processes hammering one dict | %.0f sets/s | | %.0f sets/s | "
         "%.1fx CPython |\n", ch, pyh, ch / pyh);
  const char *methods[] = { "fork", "spawn", "forkserver" };
  for (int i = 0; i < 3; i++) {
    double cs = c_start(methods[i], ns);
    snprintf(args, sizeof args, "start %d %s", quick ? 2 : 5, methods[i]);
    double ps = python(args);
    printf("| manager start + shutdown, %s | %.2f ms | | %.2f ms | %.1fx "
           "faster |\n", methods[i], cs * 1e3, ps * 1e3, ps / cs);
  }
  return 0;
}
