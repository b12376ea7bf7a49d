/* SPDX-License-Identifier: MIT */
/* The death watcher: one thread per process, shared by every pool in it,
 * that blocks in poll(2) on the sentinels of the pools' workers and a
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
 * The thread polls copies (dup) of the sentinels, which only it closes,
 * between two polls (or mp__watch_shutdown, with it gone): a pool may free
 * a worker (and its sentinel) at any time without the watcher ever polling
 * a closed or reused descriptor.  Each watch has an id unique in the
 * process, so that a poll result is never credited to a newer watch that
 * happens to live at a freed one's address.  mp__watch_free returns only
 * once the thread is not calling (and will not call) that watch's notify. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/fd.h"
#include "core/internal.h"
#include "pool/pool_internal.h"

struct mp__watch {
  mp__watch *next; /* the registered watches (g_mu) */
  uint64_t id;
  int registered;
  int n;
  int *fd;    /* n: a copy of worker k's sentinel, or -1 (g_mu) */
  int *fired; /* n: notify was called for fd[k] (g_mu) */
  void (*notify)(void *);
  void *arg;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER; /* g_calling */
static mp__watch *g_list;
static uint64_t g_next_id = 1;
static int g_ctl[2] = {-1, -1}; /* written to make the thread look again */
static int *g_retired;          /* copies to close, by the thread */
static int g_nretired, g_capretired;
static int g_running, g_stop;
static pthread_t g_thread;
static uint64_t g_calling; /* id of the watch whose notify runs, 0: none */
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

static void
close_retired(void)
{
  for (int i = 0; i < g_nretired; i++)
    mp__close(g_retired[i]);
  g_nretired = 0;
}

/* The poll set and, per entry, whose it is. */
typedef struct pollset {
  struct pollfd *pf;
  uint64_t *id;
  int *k;
  int n, cap;
} pollset;

static int
pollset_add(pollset *s, int fd, uint64_t id, int k)
{
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 16;
    struct pollfd *pf = realloc(s->pf, (size_t)cap * sizeof *pf);
    if (pf)
      s->pf = pf;
    uint64_t *ids = pf ? realloc(s->id, (size_t)cap * sizeof *ids) : NULL;
    if (ids)
      s->id = ids;
    int *ks = ids ? realloc(s->k, (size_t)cap * sizeof *ks) : NULL;
    if (!ks)
      return MP_ENOMEM; /* that worker is left to the liveness poll */
    s->k = ks;
    s->cap = cap;
  }
  s->pf[s->n] = (struct pollfd){.fd = fd, .events = POLLIN};
  s->id[s->n] = id;
  s->k[s->n] = k;
  s->n++;
  return 0;
}

static mp__watch *
find(uint64_t id)
{
  for (mp__watch *w = g_list; w; w = w->next)
    if (w->id == id)
      return w;
  return NULL;
}

static void *
watch_main(void *arg)
{
  (void)arg;
  pollset s = {0};
  pthread_mutex_lock(&g_mu);
  for (;;) {
    if (g_stop)
      break;
    close_retired();
    s.n = 0;
    pollset_add(&s, g_ctl[0], 0, -1);
    for (mp__watch *w = g_list; w; w = w->next)
      for (int k = 0; k < w->n; k++)
        if (w->fd[k] >= 0 && !w->fired[k])
          pollset_add(&s, w->fd[k], w->id, k);
    pthread_mutex_unlock(&g_mu);
    /* (no memory for even the pipe's entry: look again in a while) */
    int r = poll(s.pf, (nfds_t)s.n, s.n ? -1 : 10);
    if (s.n && s.pf[0].revents) {
      char buf[64];
      while (read(g_ctl[0], buf, sizeof buf) > 0)
        ;
    }
    pthread_mutex_lock(&g_mu);
    if (r <= 0)
      continue; /* EINTR, ENOMEM: look again */
    /* Each watch that fired is told once a round, outside g_mu (its
     * notify may take locks a thread calling into the watch holds). */
    for (int i = 1; i < s.n; i++) {
      if (!s.pf[i].revents)
        continue;
      mp__watch *w = find(s.id[i]);
      if (!w || w->fd[s.k[i]] != s.pf[i].fd || w->fired[s.k[i]])
        continue; /* cleared or replaced meanwhile */
      w->fired[s.k[i]] = 1;
      for (int j = i + 1; j < s.n; j++) /* its other ends this round */
        if (s.pf[j].revents && s.id[j] == w->id
            && w->fd[s.k[j]] == s.pf[j].fd)
          w->fired[s.k[j]] = 1;
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
  free(s.pf);
  free(s.id);
  free(s.k);
  return NULL;
}

/* Hand w->fd[k] to the thread to close (g_mu held); closed here when the
 * thread is not running (it polls nothing then).  Not woken for it: a
 * retired copy is a worker that ended or is about to (its sentinel wakes
 * the thread), or one it ignores until its next look. */
static void
retire(mp__watch *w, int k)
{
  int fd = w->fd[k];
  if (fd < 0)
    return;
  w->fd[k] = -1;
  if (!g_running) {
    mp__close(fd);
    return;
  }
  if (g_nretired == g_capretired) {
    int cap = g_capretired ? 2 * g_capretired : 16;
    int *nr = realloc(g_retired, (size_t)cap * sizeof *nr);
    if (!nr) { /* keep it polled, but as no watch's: ignored until shutdown */
      w->fd[k] = fd;
      w->fired[k] = 1;
      return;
    }
    g_retired = nr;
    g_capretired = cap;
  }
  g_retired[g_nretired++] = fd;
}

/* A fork child has no watcher thread: what the parent's watched is not its
 * own (its pools are the parent's copies), so the copies and the pipe are
 * closed and the next pool starts a thread of the child's. */
static void
forget_in_child(void *arg)
{
  (void)arg;
  for (mp__watch *w = g_list; w; w = w->next) {
    for (int k = 0; k < w->n; k++) {
      mp__close(w->fd[k]);
      w->fd[k] = -1;
    }
    w->registered = 0;
  }
  g_list = NULL;
  close_retired();
  mp__close(g_ctl[0]);
  mp__close(g_ctl[1]);
  g_ctl[0] = g_ctl[1] = -1;
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
  w->fired = calloc((size_t)n, sizeof *w->fired);
  if (!w->fd || !w->fired) {
    free(w->fd);
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

/* Start the thread if it is not running (g_mu held; the fork hook in
 * place). */
static int
ensure_thread(void)
{
  if (g_running)
    return 0;
  int rc = 0;
  if (g_ctl[0] < 0) {
    if ((rc = mp__pipe(g_ctl)) != 0)
      return rc;
    if ((rc = mp__fd_set_nonblock(g_ctl[0], 1)) != 0 ||
        (rc = mp__fd_set_nonblock(g_ctl[1], 1)) != 0) {
      mp__close(g_ctl[0]);
      mp__close(g_ctl[1]);
      g_ctl[0] = g_ctl[1] = -1;
      return rc;
    }
  }
  g_stop = 0;
  /* joinable: mp__watch_shutdown waits for its end */
  if ((rc = mp__thread_start(&g_thread, watch_main, NULL, 0, 0,
                             "mproc-watch")) != 0)
    return rc;
  g_running = 1;
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
  }
  if (rc == 0)
    poke(); /* one look for the workers set before the start */
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
  if (w->fd[k] < 0) {
    w->fd[k] = fd < 0 ? -1 : fd;
    w->fired[k] = 0;
  } else {
    mp__close(fd); /* could not retire the old one: no watching for k */
  }
  if (w->registered && g_running)
    poke();
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

/* Take w off the thread's list and give its copies back (g_mu held). */
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
  /* watches still registered keep their copies (closed when freed) */
  close_retired();
  if (!g_list) {
    mp__close(g_ctl[0]);
    mp__close(g_ctl[1]);
    g_ctl[0] = g_ctl[1] = -1;
  }
  pthread_mutex_unlock(&g_mu);
}
