/* SPDX-License-Identifier: MIT */
/* imap and imap_unordered over an item callback: the items are taken
 * lazily, by whoever calls mp_imap_next, while the window of items taken
 * and not yet handed out has room; the result's item slots are a ring as
 * big as the window (pool_internal.h, struct mp_result), so neither the
 * number of items nor a slow consumer makes memory grow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool_internal.h"

void
mp__isrc_unref(mp__isrc *s)
{
  if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->feed_mu);
  free(s);
}

/* No more items: every position taken is all there is. */
static void
end_feed(mp_result *r)
{
  pthread_mutex_lock(&r->mu);
  if (r->ended) {
    pthread_mutex_unlock(&r->mu);
    return;
  }
  r->ended = 1;
  r->n = r->fed;
  int last = --r->left == 0;
  mp__result_wake_locked(r);
  pthread_mutex_unlock(&r->mu);
  if (last)
    mp__result_finish(r, 0);
}

/* Take `count` more positions; returns the first. */
static size_t
take_positions(mp_result *r, size_t count)
{
  pthread_mutex_lock(&r->mu);
  size_t base = r->fed;
  r->fed += count;
  r->left += count;
  pthread_mutex_unlock(&r->mu);
  return base;
}

/* The window's room: positions that may still be taken (0 once ended). */
static size_t
room(mp_result *r)
{
  pthread_mutex_lock(&r->mu);
  size_t start = r->kind == MP__RES_IMAP ? r->next : r->low;
  size_t n = r->ended ? 0 : r->ring - (r->fed - start);
  pthread_mutex_unlock(&r->mu);
  return n;
}

/* The items end with an error at the next position. */
static void
fail_at_end(mp_result *r, int code, const char *detail)
{
  size_t at = take_positions(r, 1);
  mp__result_store(r, at, code, NULL, detail); /* never the last: ended */
  end_feed(r);
}

void
mp__iter_feed(mp_imap *it)
{
  mp__isrc *src = it->src;
  mp_result *r = &it->r;
  pthread_mutex_lock(&src->feed_mu);
  size_t k;
  while ((k = room(r)) > 0) {
    if (k > src->chunksize)
      k = src->chunksize;
    mp_obj *payload = mp_list_new();
    if (!payload) {
      fail_at_end(r, MP_ENOMEM, "out of memory taking items");
      break;
    }
    int stop = 0;
    char detail[MP__ERRDETAIL_CAP + 64] = "";
    size_t count = 0;
    while (count < k) {
      mp_obj *item = NULL;
      mp__errdetail_clear();
      int rc = src->next(src->arg, &item);
      if (rc == 0) {
        if (mp_list_append_take(payload, item ? item : mp_none()) != 0) {
          stop = MP_ENOMEM;
          snprintf(detail, sizeof detail, "out of memory taking items");
          break;
        }
        count++;
        continue;
      }
      mp_obj_free(item);
      stop = rc > 0 ? MP_EINVAL : rc;
      if (rc > 0)
        snprintf(detail, sizeof detail, "the item callback returned %d, "
                                        "not 0 or a negative code", rc);
      else
        snprintf(detail, sizeof detail, "the item callback failed: %s",
                 mp_errdetail()[0] ? mp_errdetail() : mp_strerror(rc));
      break;
    }
    if (count > 0) {
      size_t base = take_positions(r, count);
      pthread_mutex_lock(&src->mu);
      int rc;
      if (src->p) {
        rc = mp__pool_submit_chunk(src->p, r, src->fn, payload, base, count,
                                   src->task_timeout);
      } else {
        mp_obj_free(payload);
        rc = mp_seterr(MP_ECLOSED, "the pool was freed");
      }
      pthread_mutex_unlock(&src->mu);
      payload = NULL; /* taken, also on failure */
      if (rc) {
        char why[MP__ERRDETAIL_CAP + 32];
        snprintf(why, sizeof why, "cannot submit the items: %s",
                 mp_errdetail()[0] ? mp_errdetail() : mp_strerror(rc));
        for (size_t i = 0; i < count; i++)
          mp__result_store(r, base + i, rc, NULL, why);
        end_feed(r);
        break;
      }
    }
    mp_obj_free(payload);
    if (stop == MP_EEOF) {
      end_feed(r);
      break;
    }
    if (stop) {
      fail_at_end(r, stop, detail);
      break;
    }
  }
  pthread_mutex_unlock(&src->feed_mu);
  mp__errdetail_clear(); /* what the callback left is not the caller's */
}

void
mp__iter_release(mp_imap *it)
{
  mp__isrc *src = it->src;
  pthread_mutex_lock(&src->feed_mu); /* no feeder runs from here on */
  end_feed(&it->r);
  pthread_mutex_unlock(&src->feed_mu);
  __atomic_store_n(&src->dead, 1, __ATOMIC_RELEASE);
  it->src = NULL;
  mp__isrc_unref(src);
}

void
mp__iter_detach_all(mp__poolx *x)
{
  pthread_mutex_lock(&x->mu);
  mp__isrc *s = x->iters;
  x->iters = NULL;
  pthread_mutex_unlock(&x->mu);
  /* without x->mu: a feeder holds s->mu while it submits (pool->mu), and
   * the result-handling thread takes x->mu under pool->mu */
  while (s) {
    mp__isrc *next = s->next_src;
    pthread_mutex_lock(&s->mu);
    s->p = NULL;
    pthread_mutex_unlock(&s->mu);
    mp__isrc_unref(s);
    s = next;
  }
}

/* Put src on the pool's list, dropping released ones (x->mu held; no
 * source's mu taken under it: see mp__iter_detach_all). */
static void
attach(mp__poolx *x, mp__isrc *src)
{
  mp__isrc **pp = &x->iters;
  while (*pp) {
    mp__isrc *s = *pp;
    if (__atomic_load_n(&s->dead, __ATOMIC_ACQUIRE)) {
      *pp = s->next_src;
      mp__isrc_unref(s);
    } else {
      pp = &s->next_src;
    }
  }
  __atomic_add_fetch(&src->refs, 1, __ATOMIC_RELAXED);
  src->next_src = x->iters;
  x->iters = src;
}

static int
imap_iter(mp_pool *p, mp_task_fn fn, mp_next_fn next, void *arg,
          const mp_map_opts *opts, int kind, mp_imap **out)
{
  static const mp_map_opts defaults;
  if (!opts)
    opts = &defaults;
  if (out)
    *out = NULL;
  if (!p || !fn || !next || !out)
    return mp_seterr(MP_EINVAL, "pool, fn, next or out is NULL");
  mp__poolx *x = mp__pool_x(p);
  if (!mp__pool_running(p))
    return mp_seterr(MP_ESTATE, "the pool is not running (closed or "
                                "terminated)");
  int rc = mp__timeout_field_check(opts->task_timeout, "task_timeout");
  if (rc)
    return rc;
  if (opts->task_timeout != 0 && x->threading)
    return mp_seterr(MP_ENOTSUP, "task_timeout needs worker processes: a "
                                 "thread cannot be stopped");
  if (opts->progress)
    return mp_seterr(MP_ENOTSUP, "no progress bar for an iterator-fed imap "
                                 "(its total is unknown)");
  size_t cs = opts->chunksize ? opts->chunksize : 1;
  size_t window = opts->max_inflight;
  if (window == 0)
    window = 4 * (size_t)x->nproc * cs;
  if (window < cs)
    return mp_seterr(MP_EINVAL, "max_inflight (%zu) is smaller than "
                                "chunksize (%zu)", window, cs);
  if (window > (SIZE_MAX / 64))
    return mp_seterr(MP_EINVAL, "max_inflight is too big");
  mp_result *r;
  if ((rc = mp__result_new(&r, kind, window, sizeof(mp_imap))) != 0)
    return rc;
  r->ring = window;
  r->n = SIZE_MAX; /* unknown until the callback ends */
  r->left = 1;     /* the feed itself, until it ends */
  mp_imap *it = (mp_imap *)r;
  mp__isrc *src = calloc(1, sizeof *src);
  if (!src) {
    mp__result_unref(r);
    mp__result_unref(r);
    return MP_ENOMEM;
  }
  pthread_mutex_init(&src->mu, NULL);
  pthread_mutex_init(&src->feed_mu, NULL);
  src->refs = 1;
  src->p = p;
  src->fn = fn;
  src->next = next;
  src->arg = arg;
  src->chunksize = cs;
  src->task_timeout = opts->task_timeout;
  it->src = src;
  pthread_mutex_lock(&x->mu);
  attach(x, src);
  pthread_mutex_unlock(&x->mu);
  mp__iter_feed(it);
  *out = it;
  return 0;
}

int
mp_pool_imap_iter(mp_pool *p, mp_task_fn fn, mp_next_fn next, void *arg,
                  const mp_map_opts *opts, mp_imap **out)
{
  mp__errdetail_clear();
  return imap_iter(p, fn, next, arg, opts, MP__RES_IMAP, out);
}

int
mp_pool_imap_unordered_iter(mp_pool *p, mp_task_fn fn, mp_next_fn next,
                            void *arg, const mp_map_opts *opts, mp_imap **out)
{
  mp__errdetail_clear();
  return imap_iter(p, fn, next, arg, opts, MP__RES_IMAP_UNORDERED, out);
}
