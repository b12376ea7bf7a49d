/* SPDX-License-Identifier: MIT */
/* The death watcher: one thread per process, shared by every pool in it,
 * that blocks in epoll_wait(2) on the sentinels of the pools' workers and a
 * control pipe, and calls a pool's notify function as soon as one of its
 * sentinels becomes ready (the worker ended), so the result handler
 * replaces a dead worker at once instead of at its next liveness poll.
 *
 * One thread for the process, started by the first pool and kept (idle in
 * poll, all signals blocked) until exit or mp__watch_shutdown: a thread
 * made and joined per pool was a fifth of the CPU a pool's start and end
 * cost (clone, its stack's copy-on-write faults after the workers' forks,
 * a control pipe, the exit's madvise and TLB shootdowns).
 *
 * The thread waits in epoll_wait on copies (dup) of the sentinels: a pool
 * adds a worker's copy to the epoll set and takes it out again (then
 * closes it) itself, and the thread is never woken for either.  A pool's
 * start and a close with no work left so cost the thread no wake-up at
 * all; each wake-up had put it on the other CPU while the pool's thread
 * forked, and every fork and copy-on-write fault then sent it a TLB
 * shoot-down (an interrupt across CPUs, a VM exit here).  An event names
 * the arming it is for by a serial number unique in the process, never by
 * the descriptor: an event the thread took just before its copy was taken
 * out and closed (and the number reused) finds no arming with its serial
 * and is dropped.  mp__watch_free returns only once the thread is not
 * calling (and will not call) that watch's notify. */
#include <errno.h>
#include <sys/epoll.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/fd.h"
#include "core/internal.h"
#include "pool/pool_internal.h"
#include "platform/platform.h"

struct mp__watch {
  mp__watch *next; /* the registered watches (g_mu) */
  uint64_t id;
  int registered;
  int n;
  int *fd;       /* n: a copy of worker k's sentinel, or -1 (g_mu) */
  uint64_t *arm; /* n: the serial of fd[k]'s arming, 0: not in the set */
  int *fired;    /* n: notify was called for fd[k] (g_mu) */
  void (*notify)(void *);
  void *arg;
};

static pthread_mutex_t g_mu MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond MP__FORK_DATA =
    PTHREAD_COND_INITIALIZER; /* g_calling */
static mp__watch *g_list MP__FORK_DATA;
static uint64_t g_next_id = 1;
static uint64_t g_next_arm = 1;
static int g_ep MP__FORK_DATA = -1; /* the epoll set (g_mu) */
/* written to make the thread look at g_stop */
static int g_ctl[2] MP__FORK_DATA = {-1, -1};
static int g_running MP__FORK_DATA, g_stop MP__FORK_DATA;
static pthread_t g_thread;
/* id of the watch whose notify runs, 0: none */
static uint64_t g_calling MP__FORK_DATA;
static mp__fork_hook *g_hook;
static pthread_once_t g_hook_once = PTHREAD_ONCE_INIT;

/* Make the thread look again (g_mu held: the pipe stays open). */
static void
poke(void)
{
  char c = 1;
  ssize_t r;
  do
    r = write(g_ctl[1], &c, 1);
  while (r < 0 && errno == EINTR);
  /* EAGAIN: the pipe is full, so the thread will look anyway */
}

/* Put w->fd[k] into the epoll set (g_mu held, the thread running).  If it
 * cannot, worker k is left to the pool's liveness poll. */
static void
arm(mp__watch *w, int k)
{
  if (w->fd[k] < 0 || w->arm[k] || w->fired[k] || g_ep < 0)
    return;
  uint64_t serial = g_next_arm++;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,
                           .data.u64 = serial};
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, w->fd[k], &ev) == 0)
    w->arm[k] = serial;
}

/* Take w->fd[k] out of the set and close it (g_mu held). */
static void
retire(mp__watch *w, int k)
{
  int fd = w->fd[k];
  if (fd < 0)
    return;
  if (w->arm[k] && g_ep >= 0)
    epoll_ctl(g_ep, EPOLL_CTL_DEL, fd, NULL);
  w->arm[k] = 0;
  w->fd[k] = -1;
  mp__close(fd);
}

/* The registered watch and slot armed with `serial` (g_mu held). */
static mp__watch *
find_arming(uint64_t serial, int *k)
{
  for (mp__watch *w = g_list; w; w = w->next)
    for (int i = 0; i < w->n; i++)
      if (w->arm[i] == serial) {
        *k = i;
        return w;
      }
  return NULL;
}

enum { MAX_EVENTS = 16 };

static void *
watch_main(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&g_mu);
  int ep = g_ep; /* closed only by mp__watch_shutdown, after the join */
  for (;;) {
    if (g_stop)
      break;
    pthread_mutex_unlock(&g_mu);
    struct epoll_event ev[MAX_EVENTS];
    int r = epoll_wait(ep, ev, MAX_EVENTS, -1);
    pthread_mutex_lock(&g_mu);
    /* Each watch that fired is told once per event it has, outside g_mu
     * (its notify may take locks a thread calling into the watch holds);
     * one told already this round is not told again. */
    uint64_t told[MAX_EVENTS];
    int ntold = 0;
    for (int i = 0; i < r; i++) {
      if (ev[i].data.u64 == 0) { /* the control pipe: g_stop */
        char buf[64];
        while (read(g_ctl[0], buf, sizeof buf) > 0)
          ;
        continue;
      }
      int k;
      mp__watch *w = find_arming(ev[i].data.u64, &k);
      if (!w || w->fired[k])
        continue; /* taken out (or replaced) meanwhile */
      w->fired[k] = 1;
      int seen = 0;
      for (int j = 0; j < ntold; j++)
        seen |= told[j] == w->id;
      if (seen)
        continue;
      told[ntold++] = w->id;
      g_calling = w->id;
      void (*notify)(void *) = w->notify;
      void *warg = w->arg;
      pthread_mutex_unlock(&g_mu);
      notify(warg);
      pthread_mutex_lock(&g_mu);
      g_calling = 0;
      pthread_cond_broadcast(&g_cond);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

/* A fork child has no watcher thread: what the parent's watched is not its
 * own (its pools are the parent's copies), so the copies, the epoll set
 * and the pipe are closed and the next pool starts a thread of the
 * child's. */
static void
forget_in_child(void *arg)
{
  (void)arg;
  for (mp__watch *w = g_list; w; w = w->next) {
    for (int k = 0; k < w->n; k++) {
      mp__close(w->fd[k]);
      w->fd[k] = -1;
      w->arm[k] = 0;
    }
    w->registered = 0;
  }
  g_list = NULL;
  mp__close(g_ep);
  mp__close(g_ctl[0]);
  mp__close(g_ctl[1]);
  g_ep = g_ctl[0] = g_ctl[1] = -1;
  g_running = g_stop = 0;
  g_calling = 0;
  pthread_cond_init(&g_cond, NULL);
}

int
mp__watch_new(mp__watch **out, int n, void (*notify)(void *), void *arg)
{
  mp__watch *w = calloc(1, sizeof *w);
  if (!w)
    return MP_ENOMEM;
  w->n = n;
  w->fd = malloc((size_t)n * sizeof *w->fd);
  w->arm = calloc((size_t)n, sizeof *w->arm);
  w->fired = calloc((size_t)n, sizeof *w->fired);
  if (!w->fd || !w->arm || !w->fired) {
    free(w->fd);
    free(w->arm);
    free(w->fired);
    free(w);
    return MP_ENOMEM;
  }
  for (int k = 0; k < n; k++)
    w->fd[k] = -1;
  w->notify = notify;
  w->arg = arg;
  *out = w;
  return 0;
}

static void
add_hook(void)
{
  /* a child finds g_mu unlocked, then forgets */
  g_hook = mp__fork_guard_mutex_reset(&g_mu, forget_in_child, NULL);
}

/* Close the epoll set and the pipe (g_mu held, no thread). */
static void
close_set(void)
{
  mp__close(g_ep);
  mp__close(g_ctl[0]);
  mp__close(g_ctl[1]);
  g_ep = g_ctl[0] = g_ctl[1] = -1;
}

/* Start the thread if it is not running (g_mu held; the fork hook in
 * place), with the registered watches' copies in its set. */
static int
ensure_thread(void)
{
  if (g_running)
    return 0;
  int rc = 0;
  if (g_ep < 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if ((g_ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
      rc = mp_seterr(mp__errno(), "epoll_create1 failed");
      g_ep = -1;
      return rc;
    }
    if ((rc = mp__pipe(g_ctl)) != 0 ||
        (rc = mp__fd_set_nonblock(g_ctl[0], 1)) != 0 ||
        (rc = mp__fd_set_nonblock(g_ctl[1], 1)) != 0 ||
        (epoll_ctl(g_ep, EPOLL_CTL_ADD, g_ctl[0], &ev) != 0 &&
         (rc = mp_seterr(mp__errno(), "epoll_ctl failed")) != 0)) {
      close_set();
      return rc;
    }
  }
  g_stop = 0;
  /* joinable: mp__watch_shutdown waits for its end */
  if ((rc = mp__thread_start(&g_thread, watch_main, NULL, 0, 0,
                             "mproc-watch")) != 0)
    return rc;
  g_running = 1;
  for (mp__watch *w = g_list; w; w = w->next) /* after a shutdown */
    for (int k = 0; k < w->n; k++)
      arm(w, k);
  return 0;
}

int
mp__watch_start(mp__watch *w)
{
  /* outside g_mu: a fork takes the registry's lock, then g_mu */
  pthread_once(&g_hook_once, add_hook);
  if (!g_hook)
    return MP_ENOMEM;
  pthread_mutex_lock(&g_mu);
  int rc = ensure_thread();
  if (rc == 0 && !w->registered) {
    w->id = g_next_id++;
    w->registered = 1;
    w->next = g_list;
    g_list = w;
    for (int k = 0; k < w->n; k++) /* the workers set before the start */
      arm(w, k);
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

int
mp__watch_set(mp__watch *w, int k, int sentinel)
{
  if (!w || k < 0 || k >= w->n)
    return MP_EINVAL;
  int fd = sentinel >= 0 ? mp__dup(sentinel) : -1;
  pthread_mutex_lock(&g_mu);
  retire(w, k);
  w->fd[k] = fd < 0 ? -1 : fd;
  w->fired[k] = 0;
  if (w->registered && g_running)
    arm(w, k);
  pthread_mutex_unlock(&g_mu);
  return fd < 0 && sentinel >= 0 ? fd : 0;
}

void
mp__watch_clear(mp__watch *w, int k)
{
  if (!w || k < 0 || k >= w->n)
    return;
  pthread_mutex_lock(&g_mu);
  retire(w, k);
  pthread_mutex_unlock(&g_mu);
}

/* Take w off the thread's list and close its copies (g_mu held). */
static void
unregister(mp__watch *w)
{
  if (w->registered) {
    mp__watch **pp = &g_list;
    while (*pp && *pp != w)
      pp = &(*pp)->next;
    if (*pp)
      *pp = w->next;
    w->registered = 0;
  }
  for (int k = 0; k < w->n; k++)
    retire(w, k);
}

void
mp__watch_stop(mp__watch *w)
{
  if (!w)
    return;
  pthread_mutex_lock(&g_mu);
  unregister(w);
  pthread_mutex_unlock(&g_mu);
}

void
mp__watch_free(mp__watch *w)
{
  if (!w)
    return;
  pthread_mutex_lock(&g_mu);
  unregister(w);
  /* never from the watcher's own thread: notify does not free a watch */
  while (w->id && g_calling == w->id)
    pthread_cond_wait(&g_cond, &g_mu);
  pthread_mutex_unlock(&g_mu);
  free(w->fd);
  free(w->arm);
  free(w->fired);
  free(w);
}

void
mp__watch_shutdown(void)
{
  pthread_mutex_lock(&g_mu);
  int running = g_running;
  g_stop = 1;
  if (running)
    poke();
  pthread_mutex_unlock(&g_mu);
  if (running)
    pthread_join(g_thread, NULL);
  pthread_mutex_lock(&g_mu);
  g_running = 0;
  /* watches still registered keep their copies (closed when freed), out
   * of the set that goes now; a next start arms them in a new one */
  for (mp__watch *w = g_list; w; w = w->next)
    for (int k = 0; k < w->n; k++)
      w->arm[k] = 0;
  close_set();
  pthread_mutex_unlock(&g_mu);
}
