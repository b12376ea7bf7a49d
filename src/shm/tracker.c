/* SPDX-License-Identifier: MIT */
/* The resource tracker: a process that unlinks named resources (shared
 * memory segments, files) the program registered and did not unlink, once
 * every process of the program has closed the pipe to it -- normally or by
 * dying (SIGKILL included).
 *
 * It is made by a double fork (so it is never the program's child and
 * never a zombie of it) and, being forked from a possibly multi-threaded
 * program, only makes async-signal-safe calls: read, write, unlink, mmap,
 * close, _exit.  It keeps only the command pipe and stderr (for a warning
 * naming what leaked, as Python's tracker prints).  The protocol is one line per write (atomic below PIPE_BUF):
 * "R<t><name>\n" registers, "U<t><name>\n" unregisters; <t> is 's' (shm) or
 * 'f' (file). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"
#include "shm/shm_internal.h"

#define MAX_NAME 1024 /* a whole line stays below PIPE_BUF */

static pthread_mutex_t t_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t t_mu_once = PTHREAD_ONCE_INIT;

/* A fork child may find t_mu held by a thread it does not have (a pool
 * forks workers while other threads register segments): it starts with the
 * lock reset.  Not held across fork like the leaf locks: start_tracker
 * forks with it held. */
static void
t_mu_reset(void *arg)
{
  (void)arg;
  mp__mutex_reset(&t_mu);
}

static void
t_mu_hook(void)
{
  mp__fork_hook_add(NULL, NULL, t_mu_reset, NULL);
}

static void
lock_tracker(void)
{
  pthread_once(&t_mu_once, t_mu_hook);
  pthread_mutex_lock(&t_mu);
}
static int t_wfd = -1;
static pid_t t_pid;

/* ---- the tracker process ---------------------------------------------- */

struct entry {
  char type;
  char name[MAX_NAME + 1];
};

static size_t
slen(const char *s)
{
  size_t n = 0;
  while (s[n])
    n++;
  return n;
}

static int
seq(const char *a, const char *b)
{
  while (*a && *a == *b)
    a++, b++;
  return *a == *b;
}

static void
remove_resource(const struct entry *e)
{
  if (e->type == 's') {
    char path[MAX_NAME + 16] = "/dev/shm/";
    size_t k = slen(path), n = slen(e->name);
    for (size_t i = 0; i <= n; i++)
      path[k + i] = e->name[i];
    unlink(path);
  } else if (e->type == 'f') {
    unlink(e->name);
  }
}

static void __attribute__((noreturn))
tracker_main(int rfd)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGPIPE, &sa, NULL);
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  /* hold nothing of the program's: only the command pipe, stdio -> null */
  if (rfd != 3) {
    if (dup2(rfd, 3) < 0)
      _exit(1);
    rfd = 3;
  }
  mp__plat_close_from(4);
  /* stdin and stdout to /dev/null; stderr stays for the shutdown warning */
  int nul = open("/dev/null", O_RDWR);
  if (nul >= 0) {
    dup2(nul, 0);
    dup2(nul, 1);
    if (nul > 3)
      close(nul);
  }
  fcntl(rfd, F_SETFD, FD_CLOEXEC);
  prctl(PR_SET_NAME, "mproc-tracker", 0, 0, 0);

  size_t cap = 64, n = 0;
  struct entry *tab = mmap(NULL, cap * sizeof *tab, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (tab == MAP_FAILED)
    tab = NULL;
  char line[MAX_NAME + 4];
  size_t ll = 0;
  char buf[4096];
  for (;;) {
    ssize_t r = read(rfd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    for (ssize_t i = 0; i < r; i++) {
      char c = buf[i];
      if (c != '\n') {
        if (ll < sizeof line - 1)
          line[ll++] = c;
        continue;
      }
      line[ll] = '\0';
      size_t len = ll;
      ll = 0;
      if (len < 3 || (line[0] != 'R' && line[0] != 'U')
          || (line[1] != 's' && line[1] != 'f') || len - 2 > MAX_NAME)
        continue;
      const char *name = line + 2;
      size_t k;
      for (k = 0; k < n; k++)
        if (tab[k].type == line[1] && seq(tab[k].name, name))
          break;
      if (line[0] == 'U') {
        if (k < n)
          tab[k] = tab[--n];
        continue;
      }
      if (k < n || !tab)
        continue; /* already registered */
      if (n == cap) {
        void *nt = mremap(tab, cap * sizeof *tab, 2 * cap * sizeof *tab,
                          MREMAP_MAYMOVE);
        if (nt == MAP_FAILED)
          continue; /* no room: cannot track it */
        tab = nt;
        cap *= 2;
      }
      tab[n].type = line[1];
      memcpy(tab[n].name, name, len - 1);
      n++;
    }
  }
  /* every holder of the write end is gone: the program has ended */
  if (n > 0) { /* as Python's tracker, say so: these leaked */
    char num[24], *q = num + sizeof num;
    size_t v = n;
    do
      *--q = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    static const char a[] = "[WARNING/mproc-tracker] There appear to be ";
    static const char b[] = " leaked named resources to clean up at shutdown:";
    (void)!write(2, a, sizeof a - 1);
    (void)!write(2, q, (size_t)(num + sizeof num - q));
    (void)!write(2, b, sizeof b - 1);
    for (size_t k = 0; k < n; k++) {
      (void)!write(2, " ", 1);
      (void)!write(2, tab[k].name, slen(tab[k].name));
    }
    (void)!write(2, "\n", 1);
  }
  for (size_t k = 0; k < n; k++)
    remove_resource(&tab[k]);
  _exit(0);
}

/* ---- the program side --------------------------------------------------- */

/* Every process of the program holds the write end: fork children inherit
 * it, spawn and forkserver children are handed a copy (as Python hands its
 * tracker's fd to spawn children), so a segment stays while any of them
 * lives, also after the others were SIGKILLed. */
static int
give_fd(int *fd, uint64_t *word)
{
  int rc = 0;
  lock_tracker();
  *fd = -1;
  if (t_wfd >= 0) {
    int d = mp__dup(t_wfd);
    if (d < 0)
      rc = mp_seterr(d, "cannot hand the resource tracker to a child");
    else
      *fd = d;
  }
  *word = (uint64_t)t_pid;
  pthread_mutex_unlock(&t_mu);
  return rc;
}

static void take_fd(int fd, uint64_t word);

static const mp__inherit tracker_inherit = {give_fd, take_fd};

static void
take_fd(int fd, uint64_t word)
{
  lock_tracker();
  if (t_wfd >= 0) {
    mp__close(fd); /* keep the one this process already has */
  } else {
    t_wfd = fd;
    t_pid = (pid_t)word;
    mp__ignore_sigpipe();
    mp__proc_inherit(&tracker_inherit);
  }
  pthread_mutex_unlock(&t_mu);
}

static int
start_tracker(void)
{
  int p[2], s[2];
  int rc = mp__pipe(p);
  if (rc)
    return rc;
  if ((rc = mp__pipe(s))) {
    mp__close(p[0]);
    mp__close(p[1]);
    return rc;
  }
  pid_t mid = fork();
  if (mid < 0) {
    rc = mp__errno();
    mp__close(p[0]);
    mp__close(p[1]);
    mp__close(s[0]);
    mp__close(s[1]);
    return rc;
  }
  if (mid == 0) {
    pid_t tp = fork();
    if (tp == 0) {
      /* s[1] stays open until tracker_main has arranged its descriptors
       * (it closes every other one): the starter waits for that. */
      close(s[0]);
      close(p[1]);
      tracker_main(p[0]);
    }
    ssize_t w;
    do
      w = write(s[1], &tp, sizeof tp);
    while (w < 0 && errno == EINTR);
    _exit(tp > 0 ? 0 : 1);
  }
  mp__close(p[0]);
  mp__close(s[1]);
  pid_t tp = -1;
  size_t got = 0;
  rc = mp__read_full(s[0], &tp, sizeof tp, &got);
  if (!rc) {
    /* End of file once the tracker holds only its pipe (at fd 3) and stdio,
     * or died: mp_resource_tracker_pid() never names a half-made one. */
    char c;
    (void)mp__read_full(s[0], &c, 1, NULL);
  }
  mp__close(s[0]);
  int st;
  while (waitpid(mid, &st, 0) < 0 && errno == EINTR)
    ;
  if (rc || tp <= 0) {
    mp__close(p[1]);
    return rc ? rc : MP_EAGAIN;
  }
  t_wfd = p[1];
  t_pid = tp;
  mp__ignore_sigpipe();
  /* spawn and forkserver children started from now on get it too (the
   * only hook of its kind: it cannot run out of room) */
  (void)mp__proc_inherit(&tracker_inherit);
  return 0;
}

static int
send_line(char op, const char *type, const char *name)
{
  char t;
  if (!type || !name)
    return MP_EINVAL;
  if (strcmp(type, "shm") == 0)
    t = 's';
  else if (strcmp(type, "file") == 0)
    t = 'f';
  else
    return mp_seterr(MP_EINVAL, "unknown resource type '%s'", type);
  size_t n = strlen(name);
  if (n == 0 || n > MAX_NAME || memchr(name, '\n', n)
      || (t == 'f' && name[0] != '/') || (t == 's' && strchr(name, '/')))
    return mp_seterr(MP_EINVAL, "bad resource name");
  char line[MAX_NAME + 4];
  line[0] = op;
  line[1] = t;
  memcpy(line + 2, name, n);
  line[n + 2] = '\n';
  lock_tracker();
  int rc = 0;
  if (t_wfd < 0) {
    if (op == 'U') { /* nothing registered through us */
      pthread_mutex_unlock(&t_mu);
      return 0;
    }
    rc = start_tracker();
  }
  if (!rc) {
    rc = mp__write_all(t_wfd, line, n + 3);
    if (rc == MP_EPIPE) { /* the tracker died: start another */
      mp_log_warning("resource tracker died unexpectedly, relaunching; "
                     "resources it tracked might leak");
      mp__close(t_wfd);
      t_wfd = -1;
      if (op == 'R' && (rc = start_tracker()) == 0)
        rc = mp__write_all(t_wfd, line, n + 3);
      else if (op == 'U')
        rc = 0;
    }
  }
  pthread_mutex_unlock(&t_mu);
  return rc;
}

int
mp_resource_register(const char *type, const char *name)
{
  mp__errdetail_clear();
  return send_line('R', type, name);
}

int
mp_resource_unregister(const char *type, const char *name)
{
  mp__errdetail_clear();
  return send_line('U', type, name);
}

void
mp_resource_tracker_stop(void)
{
  lock_tracker();
  mp__close(t_wfd);
  t_wfd = -1;
  t_pid = 0;
  pthread_mutex_unlock(&t_mu);
}

int
mp_resource_tracker_pid(void)
{
  mp__errdetail_clear();
  lock_tracker();
  int p = t_wfd >= 0 ? (int)t_pid : 0;
  pthread_mutex_unlock(&t_mu);
  return p;
}
