/* SPDX-License-Identifier: MIT */
/* Connections beside CPython's multiprocessing.connection and the raw
 * system-call floor, in one run:
 *
 *   64-byte ping-pong round trip between two processes, pinned to one CPU
 *   and unpinned (docs/baseline.md explains why both);
 *   1 MiB messages one way (throughput);
 *   100 clients each connecting, authenticating and doing one round trip.
 *
 * Ours: mp_pipe / mp_listener + mp_client (with an authkey); ping-pong
 * also with mp_conn_set_readahead (one recv per message instead of two).  Raw floor: a
 * plain AF_UNIX socketpair with write/read of the same bytes (no framing),
 * and plain AF_UNIX connect/accept without a handshake.  CPython: Pipe() and
 * Listener/Client doing the same (bench_conn.py, run with python3).
 *
 * Usage: bench_conn [--quick]
 *        bench_conn --loop exact|readahead|floor N
 *            N ping-pong round trips and nothing else, pinned to CPU 0: for
 *            counting system calls and context switches (strace -f -c, perf
 *            stat -e context-switches), which load does not change. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

static int quick;

static double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
pin(int on)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  if (on) {
    CPU_SET(0, &set);
  } else {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++)
      CPU_SET(i, &set);
  }
  sched_setaffinity(0, sizeof set, &set);
}

static int
cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Medians of `reps` runs of fa and fb, interleaved (a, b, a, b ...) so that
 * load from elsewhere on the machine hits both alike. */
static void
medians(double (*fa)(int), double (*fb)(int), int n, int reps, double *ma,
        double *mb)
{
  double va[9], vb[9];
  for (int i = 0; i < reps; i++) {
    va[i] = fa(n);
    vb[i] = fb(n);
  }
  qsort(va, (size_t)reps, sizeof va[0], cmp_double);
  qsort(vb, (size_t)reps, sizeof vb[0], cmp_double);
  *ma = va[reps / 2];
  *mb = vb[reps / 2];
}

static void
read_full(int fd, void *buf, size_t n)
{
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, (char *)buf + got, n - got);
    if (k <= 0)
      exit(1);
    got += (size_t)k;
  }
}

static void
write_full(int fd, const void *buf, size_t n)
{
  size_t put = 0;
  while (put < n) {
    ssize_t k = write(fd, (const char *)buf + put, n - put);
    if (k <= 0)
      exit(1);
    put += (size_t)k;
  }
}

/* ---- ping-pong ------------------------------------------------------------ */

static double
raw_pingpong(int n)
{
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  char msg[64] = { 0 };
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    for (;;) {
      ssize_t k = read(sv[1], msg, sizeof msg);
      if (k <= 0)
        _exit(0);
      write_full(sv[1], msg, (size_t)k);
    }
  }
  close(sv[1]);
  for (int i = 0; i < 200; i++) {
    write_full(sv[0], msg, 64);
    read_full(sv[0], msg, 64);
  }
  double t = now();
  for (int i = 0; i < n; i++) {
    write_full(sv[0], msg, 64);
    read_full(sv[0], msg, 64);
  }
  t = now() - t;
  close(sv[0]);
  waitpid(pid, NULL, 0);
  return t / n;
}

static int g_readahead;

static double
mp_pingpong(int n)
{
  mp_conn *a, *b;
  if (mp_pipe(&a, &b, 1))
    exit(1);
  if (g_readahead) {
    mp_conn_set_readahead(a, 1);
    mp_conn_set_readahead(b, 1);
  }
  pid_t pid = fork();
  if (pid == 0) {
    mp_conn_close(a);
    char buf[64];
    size_t len;
    while (mp_conn_recv_bytes_into(b, buf, sizeof buf, 0, &len,
                                   MP_FOREVER) == 0)
      if (mp_conn_send_bytes(b, buf, len))
        break;
    _exit(0);
  }
  mp_conn_close(b);
  char msg[64] = { 0 };
  void *p;
  size_t len;
  for (int i = 0; i < 200; i++) {
    mp_conn_send_bytes(a, msg, 64);
    mp_conn_recv_bytes(a, &p, &len, 0, MP_FOREVER);
    mp_free(p);
  }
  double t = now();
  for (int i = 0; i < n; i++) {
    mp_conn_send_bytes(a, msg, 64);
    if (mp_conn_recv_bytes(a, &p, &len, 0, MP_FOREVER))
      exit(1);
    mp_free(p);
  }
  t = now() - t;
  mp_conn_free(a);
  mp_conn_free(b);
  waitpid(pid, NULL, 0);
  return t / n;
}

/* ---- 1 MiB one way ------------------------------------------------------ */

#define MIB (1 << 20)

static double
raw_throughput(int n)
{
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    char *buf = malloc(MIB);
    for (int i = 0; i < n; i++)
      read_full(sv[1], buf, MIB);
    write_full(sv[1], "d", 1);
    _exit(0);
  }
  close(sv[1]);
  char *msg = calloc(1, MIB);
  double t = now();
  for (int i = 0; i < n; i++)
    write_full(sv[0], msg, MIB);
  char d;
  read_full(sv[0], &d, 1);
  t = now() - t;
  close(sv[0]);
  waitpid(pid, NULL, 0);
  free(msg);
  return (double)n * MIB / t;
}

static double
mp_throughput(int n)
{
  mp_conn *a, *b;
  if (mp_pipe(&a, &b, 1))
    exit(1);
  pid_t pid = fork();
  if (pid == 0) {
    mp_conn_close(a);
    char *buf = malloc(MIB);
    size_t len;
    for (int i = 0; i < n; i++)
      if (mp_conn_recv_bytes_into(b, buf, MIB, 0, &len, MP_FOREVER))
        _exit(1);
    mp_conn_send_bytes(b, "d", 1);
    _exit(0);
  }
  mp_conn_close(b);
  char *msg = calloc(1, MIB);
  double t = now();
  for (int i = 0; i < n; i++)
    mp_conn_send_bytes(a, msg, MIB);
  void *p;
  size_t len;
  if (mp_conn_recv_bytes(a, &p, &len, 0, MP_FOREVER))
    exit(1);
  mp_free(p);
  t = now() - t;
  mp_conn_free(a);
  mp_conn_free(b);
  waitpid(pid, NULL, 0);
  free(msg);
  return (double)n * MIB / t;
}

/* ---- clients -------------------------------------------------------------- */

static double
raw_clients(int n)
{
  char path[108];
  snprintf(path, sizeof path, "/tmp/mproc-bench-%d.sock", (int)getpid());
  unlink(path);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strcpy(a.sun_path, path);
  bind(l, (struct sockaddr *)&a, sizeof a);
  listen(l, 128);
  double t = now();
  pid_t pid = fork();
  if (pid == 0) {
    char msg[64] = { 0 };
    for (int i = 0; i < n; i++) {
      int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(s, (struct sockaddr *)&a, sizeof a))
        _exit(1);
      write_full(s, msg, 64);
      read_full(s, msg, 64);
      close(s);
    }
    _exit(0);
  }
  char buf[64];
  for (int i = 0; i < n; i++) {
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    read_full(s, buf, 64);
    write_full(s, buf, 64);
    close(s);
  }
  waitpid(pid, NULL, 0);
  t = now() - t;
  close(l);
  unlink(path);
  return t / n;
}

static double
mp_clients(int n)
{
  mp_listener *l;
  if (mp_listener_new(&l, NULL,
                      &(mp_listener_opts){ .authkey = "k", .authkey_len = 1 }))
    exit(1);
  double t = now();
  pid_t pid = fork();
  if (pid == 0) {
    char msg[64] = { 0 };
    for (int i = 0; i < n; i++) {
      mp_conn *c;
      if (mp_client(&c, mp_listener_address(l),
                    &(mp_client_opts){ .authkey = "k", .authkey_len = 1 }))
        _exit(1);
      size_t len;
      mp_conn_send_bytes(c, msg, 64);
      mp_conn_recv_bytes_into(c, msg, 64, 0, &len, MP_FOREVER);
      mp_conn_free(c);
    }
    _exit(0);
  }
  for (int i = 0; i < n; i++) {
    mp_conn *c;
    if (mp_listener_accept(l, &c, 60))
      exit(1);
    void *p;
    size_t len;
    mp_conn_recv_bytes(c, &p, &len, 0, MP_FOREVER);
    mp_conn_send_bytes(c, p, len);
    mp_free(p);
    mp_conn_free(c);
  }
  waitpid(pid, NULL, 0);
  t = now() - t;
  mp_listener_free(l);
  return t / n;
}

/* ---- CPython ---------------------------------------------------------------- */

static char script[4096];

static double
python(const char *job, int n, int pinned)
{
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "%spython3 '%s' %s %d 2>/dev/null",
           pinned ? "taskset -c 0 " : "", script, job, n);
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
python_median(const char *job, int n, int pinned, int reps)
{
  double v[9];
  for (int i = 0; i < reps; i++)
    v[i] = python(job, n, pinned);
  qsort(v, (size_t)reps, sizeof v[0], cmp_double);
  return v[reps / 2];
}

static void
row_latency(const char *name, double ours, double raw, double py)
{
  printf("| %-34s | %9.2f us | %9.2f us | %9.2f us | %5.2fx | %5.2fx |\n",
         name, ours * 1e6, raw * 1e6, py * 1e6, ours / raw, py / ours);
}

int
main(int argc, char **argv)
{
  if (argc > 3 && !strcmp(argv[1], "--loop")) {
    int n = atoi(argv[3]);
    pin(1);
    g_readahead = !strcmp(argv[2], "readahead");
    double t = !strcmp(argv[2], "floor") ? raw_pingpong(n) : mp_pingpong(n);
    printf("%.2f us\n", t * 1e6);
    return 0;
  }
  quick = argc > 1 && !strcmp(argv[1], "--quick");
  const char *src = getenv("MPROC_SOURCE_DIR");
  if (src)
    snprintf(script, sizeof script, "%s/bench/bench_conn.py", src);
  else {
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    snprintf(slash ? slash + 1 : script,
             sizeof script - (size_t)(slash ? slash + 1 - script : 0),
             "bench_conn.py");
  }
  int reps = quick ? 3 : 5;
  int npin = quick ? 5000 : 20000, nun = quick ? 2000 : 5000;
  int nmib = quick ? 200 : 1000, ncl = 100;

  printf("bench_conn: mproc Connection vs raw AF_UNIX socketpair vs CPython "
         "%s (median of %d runs)\n\n", "multiprocessing", reps);
  printf("| %-34s | %12s | %12s | %12s | %6s | %6s |\n", "job", "mproc",
         "raw floor", "CPython", "/raw", "Py/us");
  printf("|%s|%s|%s|%s|%s|%s|\n", "------------------------------------",
         "--------------", "--------------", "--------------", "--------",
         "--------");
  double o, r, p;
  pin(1);
  medians(mp_pingpong, raw_pingpong, npin, reps, &o, &r);
  pin(0);
  p = python_median("pingpong", npin, 1, reps);
  row_latency("64 B ping-pong RTT, pinned (1 CPU)", o, r, p);
  double pun = python_median("pingpong", nun, 0, reps);
  medians(mp_pingpong, raw_pingpong, nun, reps, &o, &r);
  row_latency("64 B ping-pong RTT, unpinned", o, r, pun);
  /* the same with read-ahead on (an end read by one object only) */
  g_readahead = 1;
  pin(1);
  medians(mp_pingpong, raw_pingpong, npin, reps, &o, &r);
  pin(0);
  row_latency("  same, read-ahead on, pinned", o, r, p);
  medians(mp_pingpong, raw_pingpong, nun, reps, &o, &r);
  row_latency("  same, read-ahead on, unpinned", o, r, pun);
  g_readahead = 0;
  medians(mp_throughput, raw_throughput, nmib, reps, &o, &r);
  p = python_median("throughput", nmib, 0, reps);
  printf("| %-34s | %7.0f MB/s | %7.0f MB/s | %7.0f MB/s | %5.2fx | %5.2fx |\n",
         "1 MiB messages one way", o / 1e6, r / 1e6, p / 1e6, o / r, o / p);
  medians(mp_clients, raw_clients, ncl, reps, &o, &r);
  p = python_median("clients", ncl, 0, reps);
  row_latency("per client: connect+auth+1 RTT", o, r, p);
  printf("\n/raw: mproc relative to the raw floor (latency: lower is better, "
         "throughput: higher).\nPy/us: how many times faster mproc is than "
         "CPython.  The raw 'clients' floor has no handshake.\n");
  return 0;
}
