/* SPDX-License-Identifier: MIT */
/* The death watcher: a thread that blocks in poll(2) on the sentinels of a
 * pool's workers and a control pipe, and calls the pool's notify function
 * as soon as a sentinel becomes ready (the worker ended), so the result
 * handler replaces a dead worker at once instead of at its next liveness
 * poll.
 *
 * The watcher polls on copies (dup) of the sentinels, which only its own
 * thread closes, between two polls: the pool may free a worker (and its
 * sentinel) at any time without the watcher ever polling a closed or
 * reused descriptor. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/fd.h"
#include "pool/pool_internal.h"

struct mp__watch {
  pthread_mutex_t mu;
  int ctl[2];   /* written to make the thread look again */
  int n;
  int *fd;      /* n: a copy of worker k's sentinel, or -1 (mu) */
  int *fired;   /* n: notify was called for fd[k] (mu) */
  int *retired; /* copies to close, by the thread (mu) */
  int nretired, capretired;
  int stop;     /* (mu) */
  void (*notify)(void *);
  void *arg;
  pthread_t thread;
  int running;
};

static void
poke(mp__watch *w)
{
  char c = 1;
  ssize_t r;
  do
    r = write(w->ctl[1], &c, 1);
  while (r < 0 && errno == EINTR);
  /* EAGAIN: the pipe is full, so the thread will look anyway */
}

static void *
watch_main(void *arg)
{
  mp__watch *w = arg;
  struct pollfd *pf = calloc((size_t)w->n + 1, sizeof *pf);
  int *which = calloc((size_t)w->n + 1, sizeof *which);
  if (!pf || !which) { /* the handler's liveness poll still works */
    free(pf);
    free(which);
    return NULL;
  }
  for (;;) {
    pthread_mutex_lock(&w->mu);
    if (w->stop) {
      pthread_mutex_unlock(&w->mu);
      break;
    }
    for (int i = 0; i < w->nretired; i++)
      mp__close(w->retired[i]);
    w->nretired = 0;
    int m = 0;
    pf[m++] = (struct pollfd){.fd = w->ctl[0], .events = POLLIN};
    for (int k = 0; k < w->n; k++)
      if (w->fd[k] >= 0 && !w->fired[k]) {
        which[m] = k;
        pf[m++] = (struct pollfd){.fd = w->fd[k], .events = POLLIN};
      }
    pthread_mutex_unlock(&w->mu);
    int r = poll(pf, (nfds_t)m, -1);
    if (r < 0)
      continue; /* EINTR (ENOMEM: try again) */
    if (pf[0].revents) {
      char buf[64];
      while (read(w->ctl[0], buf, sizeof buf) > 0)
        ;
    }
    int any = 0;
    pthread_mutex_lock(&w->mu);
    for (int i = 1; i < m; i++)
      if (pf[i].revents && w->fd[which[i]] == pf[i].fd) {
        w->fired[which[i]] = 1;
        any = 1;
      }
    pthread_mutex_unlock(&w->mu);
    if (any)
      w->notify(w->arg);
  }
  free(pf);
  free(which);
  return NULL;
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
  w->capretired = 2 * n + 4;
  w->retired = malloc((size_t)w->capretired * sizeof *w->retired);
  w->ctl[0] = w->ctl[1] = -1;
  int rc = MP_ENOMEM;
  if (!w->fd || !w->fired || !w->retired)
    goto fail;
  for (int k = 0; k < n; k++)
    w->fd[k] = -1;
  w->notify = notify;
  w->arg = arg;
  pthread_mutex_init(&w->mu, NULL);
  if ((rc = mp__pipe(w->ctl)) != 0)
    goto fail_mu;
  if ((rc = mp__fd_set_nonblock(w->ctl[0], 1)) != 0 ||
      (rc = mp__fd_set_nonblock(w->ctl[1], 1)) != 0)
    goto fail_pipe;
  *out = w;
  return 0;
fail_pipe:
  mp__close(w->ctl[0]);
  mp__close(w->ctl[1]);
fail_mu:
  pthread_mutex_destroy(&w->mu);
fail:
  free(w->fd);
  free(w->fired);
  free(w->retired);
  free(w);
  return rc;
}

/* Hand fd[k] to the thread to close (mu held); kept in place (watched,
 * but ignored once fired) only when the list cannot grow. */
static void
retire(mp__watch *w, int k)
{
  if (w->fd[k] < 0)
    return;
  if (w->nretired == w->capretired) {
    int cap = 2 * w->capretired;
    int *nr = realloc(w->retired, (size_t)cap * sizeof *nr);
    if (!nr)
      return;
    w->retired = nr;
    w->capretired = cap;
  }
  w->retired[w->nretired++] = w->fd[k];
  w->fd[k] = -1;
}

int
mp__watch_set(mp__watch *w, int k, int sentinel)
{
  if (!w || k < 0 || k >= w->n)
    return MP_EINVAL;
  int fd = sentinel >= 0 ? mp__dup(sentinel) : -1;
  pthread_mutex_lock(&w->mu);
  retire(w, k);
  if (w->fd[k] < 0) {
    w->fd[k] = fd < 0 ? -1 : fd;
    w->fired[k] = 0;
  } else {
    mp__close(fd); /* could not retire the old one: no watching for k */
  }
  pthread_mutex_unlock(&w->mu);
  if (w->running)
    poke(w);
  return fd < 0 && sentinel >= 0 ? fd : 0;
}

void
mp__watch_clear(mp__watch *w, int k)
{
  if (!w || k < 0 || k >= w->n)
    return;
  pthread_mutex_lock(&w->mu);
  retire(w, k);
  pthread_mutex_unlock(&w->mu);
  if (w->running)
    poke(w);
}

int
mp__watch_start(mp__watch *w)
{
  int rc = -pthread_create(&w->thread, NULL, watch_main, w);
  if (rc == 0)
    w->running = 1;
  return rc;
}

void
mp__watch_stop(mp__watch *w)
{
  if (!w || !w->running)
    return;
  pthread_mutex_lock(&w->mu);
  int was = w->stop;
  w->stop = 1;
  pthread_mutex_unlock(&w->mu);
  if (!was)
    poke(w);
}

void
mp__watch_free(mp__watch *w)
{
  if (!w)
    return;
  if (w->running) {
    mp__watch_stop(w);
    pthread_join(w->thread, NULL);
  }
  for (int i = 0; i < w->nretired; i++)
    mp__close(w->retired[i]);
  for (int k = 0; k < w->n; k++)
    mp__close(w->fd[k]);
  mp__close(w->ctl[0]);
  mp__close(w->ctl[1]);
  pthread_mutex_destroy(&w->mu);
  free(w->fd);
  free(w->fired);
  free(w->retired);
  free(w);
}
