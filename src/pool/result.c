/* SPDX-License-Identifier: MIT */
/* AsyncResult and IMapIterator: item slots the result-handling thread
 * fills, a condition variable the callers wait on. */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obj/obj_internal.h"
#include "pool/pool_internal.h"

int
mp__result_new(mp_result **out, int kind, size_t n, size_t struct_size)
{
  mp_result *r = calloc(1, struct_size);
  if (!r)
    return MP_ENOMEM;
  size_t cap = n ? n : 1;
  int is_imap = kind == MP__RES_IMAP || kind == MP__RES_IMAP_UNORDERED;
  r->slots = cap;
  /* A map's slots become its list.  They are not cleared: each is written
   * when its item lands, and done[] says which have (8 MB for a million
   * items, cleared before the first job could go out).  Both from the big
   * block cache: a map a round would fault them in anew. */
  int lazy = kind == MP__RES_MAP;
  r->values = mp__big_alloc(cap * sizeof *r->values, !lazy);
  r->done = mp__big_alloc(cap, 1);
  if (is_imap) { /* each position's own outcome; apply/map: the first */
    r->codes = calloc(cap, sizeof *r->codes);
    r->details = calloc(cap, sizeof *r->details);
  }
  if (kind == MP__RES_IMAP_UNORDERED)
    r->order = calloc(cap, sizeof *r->order);
  if (!r->values || !r->done || (is_imap && (!r->codes || !r->details)) ||
      (kind == MP__RES_IMAP_UNORDERED && !r->order)) {
    mp__big_free(r->values);
    free(r->codes);
    free(r->details);
    mp__big_free(r->done);
    free(r->order);
    free(r);
    return MP_ENOMEM;
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&r->mu, NULL);
  r->kind = kind;
  r->n = n;
  r->left = n;
  r->fail_index = SIZE_MAX;
  r->refs = 2; /* the caller's and the pool's */
  *out = r;
  return 0;
}

void
mp__result_unref(mp_result *r)
{
  if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  mp__bar_end(r->bar, -1); /* a result never submitted */
  for (size_t i = 0; r->values && i < r->slots; i++) /* NULL: a map's */
    if (r->kind != MP__RES_MAP || r->done[i])        /* list took them */
      mp_obj_free(r->values[i]);
  for (size_t i = 0; r->details && i < r->slots; i++)
    free(r->details[i]);
  free(r->fail_detail);
  mp_obj_free(r->value);
  mp__big_free(r->values);
  free(r->codes);
  free(r->details);
  mp__big_free(r->done);
  free(r->order);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

int
mp__result_store_locked(mp_result *r, size_t i, int code, mp_obj *value,
                        const char *detail)
{
  size_t s = r->ring ? i % r->ring : i; /* its slot (iter.c: a ring) */
  if (i >= r->n || r->done[s]) { /* never: each item lands once */
    mp_obj_free(value);
    return 0;
  }
  r->values[s] = value;
  if (value) { /* what the map's list will need, while value is hot */
    uint16_t d = mp__depth_above(value);
    if (d > r->height)
      r->height = d;
  } else {
    r->nulls++;
  }
  if (code != 0 && r->codes) {
    r->codes[s] = code;
    r->details[s] = strdup(detail ? detail : "");
  } else if (code != 0 && i < r->fail_index) { /* apply, map: the first */
    free(r->fail_detail);
    r->fail_index = i;
    r->fail_code = code;
    r->fail_detail = strdup(detail ? detail : "");
  }
  r->done[s] = 1;
  if (r->order)
    r->order[r->ring ? r->order_len++ % r->ring : r->order_len++] = i;
  return --r->left == 0;
}

static int
none_done(const unsigned char *done, size_t n)
{
  unsigned char any = 0;
  for (size_t i = 0; i < n; i++) /* vectorized: no early exit */
    any |= done[i];
  return !any;
}

int
mp__result_store_ints_locked(mp_result *r, size_t base, const uint8_t *packed,
                             size_t n)
{
  enum { RUN = 1024 };
  mp_obj *made[RUN];
  int last = 0;
  size_t k0 = 0;
  /* A map's chunk (no ring, no completion order), none of it stored yet:
   * the ints are made straight into the value array. */
  if (!r->ring && !r->order && base <= r->n && n <= r->n - base &&
      none_done(r->done + base, n)) {
    k0 = mp__ints_unpack(packed, n, r->values + base);
    memset(r->done + base, 1, k0);
    r->left -= k0;
    last = k0 > 0 && r->left == 0;
  }
  for (; k0 < n; k0 += RUN) {
    size_t m = n - k0 < RUN ? n - k0 : RUN;
    size_t got = mp__ints_unpack(packed + k0 * sizeof(int64_t), m, made);
    for (size_t j = 0; j < m; j++) {
      size_t i = base + k0 + j, s = r->ring ? i % r->ring : i;
      mp_obj *v = j < got ? made[j] : NULL;
      if (i >= r->n || r->done[s]) { /* never: each item lands once */
        mp_obj_free(v);
        continue;
      }
      if (!v) {
        last |= mp__result_store_locked(r, i, MP_ENOMEM, NULL,
                                        "out of memory storing a result");
        continue;
      }
      r->values[s] = v; /* an int: no height to note (a list of ints is 1) */
      r->done[s] = 1;
      if (r->order)
        r->order[r->ring ? r->order_len++ % r->ring : r->order_len++] = i;
      last |= --r->left == 0;
    }
  }
  if (r->height < 1)
    r->height = 1;
  return last;
}

void
mp__result_wake_locked(mp_result *r)
{
  __atomic_add_fetch(&r->gen, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&r->cv);
}

void
mp__result_lock(mp_result *r)
{
  pthread_mutex_lock(&r->mu);
}

void
mp__result_unlock(mp_result *r)
{
  if (r->kind == MP__RES_IMAP || r->kind == MP__RES_IMAP_UNORDERED)
    mp__result_wake_locked(r);
  pthread_mutex_unlock(&r->mu);
}

int
mp__result_store(mp_result *r, size_t i, int code, mp_obj *value,
                 const char *detail)
{
  mp__result_lock(r);
  int last = mp__result_store_locked(r, i, code, value, detail);
  mp__result_unlock(r);
  return last;
}

void
mp__result_finish(mp_result *r, int quiet)
{
  /* Every item has landed: nothing writes the slots any more. */
  mp__bar_end(r->bar, quiet ? 0 : 1);
  r->bar = NULL;
  int code = r->fail_code; /* apply, map: the lowest failing index */
  const char *detail = r->fail_detail;
  mp_obj *value = NULL;
  if (r->kind == MP__RES_APPLY && code == 0) {
    value = r->values[0];
    r->values[0] = NULL;
  } else if (r->kind == MP__RES_MAP && code == 0) {
    /* the list takes the slots over: no copy of a million pointers */
    for (size_t i = 0; r->nulls && i < r->n; i++)
      if (!r->values[i]) {
        r->values[i] = mp_none();
        r->height = r->height > 1 ? r->height : 1;
      }
    if ((value = mp__list_adopt(r->values, r->n, r->height)) != NULL) {
      r->values = NULL; /* every item has landed: no store reads them */
    } else {
      code = MP_ENOMEM;
      detail = "out of memory building the result list";
    }
  }
  int is_imap = r->kind == MP__RES_IMAP || r->kind == MP__RES_IMAP_UNORDERED;
  if (!quiet && !is_imap) {
    if (code == 0 && r->callback)
      r->callback(value, r->arg);
    else if (code != 0 && r->error_callback)
      r->error_callback(code, detail ? detail : "", r->arg);
  }
  pthread_mutex_lock(&r->mu);
  r->code = code;
  if (code != 0 && !r->fail_detail)
    r->fail_detail = strdup(detail ? detail : "");
  r->value = value;
  r->ready = 1;
  mp__result_wake_locked(r);
  pthread_mutex_unlock(&r->mu);
  mp__result_unref(r);
}

/* The final text of a failed apply/map (lowest failing index). */
static const char *
final_detail(const mp_result *r)
{
  return r->fail_detail ? r->fail_detail : "";
}

/* A caller about to sleep on a result polls it first, while results have
 * been arriving soon after callers began to wait.  A round trip to a
 * worker is three wake-ups in a row (caller -> worker -> result handler ->
 * caller); each wake-up of a thread asleep on an idle CPU costs tens of
 * microseconds on a VM, and a caller that stays awake keeps its CPU busy,
 * so the handler's wake-up lands on a running CPU too: an apply_async +
 * get round trip went from ~65 to ~10-25 us, with less CPU, not more
 * (docs/performance.md).  The poll lasts twice the recent wait (a moving
 * average over this process's result waits, slept or polled, timed out
 * included), at most RESULT_SPIN_MAX_NS, and not at all while recent waits
 * are longer than that: a caller waiting on long tasks does not burn a CPU
 * the workers need. */
#define RESULT_SPIN_MAX_NS 100000LL
static _Atomic int64_t g_recent_wait_ns = RESULT_SPIN_MAX_NS / 2;

static int64_t
poll_budget(void)
{
  int64_t w = atomic_load_explicit(&g_recent_wait_ns, memory_order_relaxed);
  if (w > RESULT_SPIN_MAX_NS)
    return 0;
  return 2 * w < RESULT_SPIN_MAX_NS ? 2 * w : RESULT_SPIN_MAX_NS;
}

/* A wait of `ns` ended: the average moves a quarter of the way to it
 * (updates that race lose one sample, which does not matter here). */
static void
note_wait(int64_t ns)
{
  int64_t w = atomic_load_explicit(&g_recent_wait_ns, memory_order_relaxed);
  atomic_store_explicit(&g_recent_wait_ns, w + (ns - w) / 4,
                        memory_order_relaxed);
}

/* Poll r (r->mu held, and held again on return) until `pred` holds or the
 * poll's time is up: 1 if `pred` holds.  Polls r->gen, which every change
 * a predicate reads bumps (mp__result_wake_locked), without the lock. */
static int
poll_before_sleep(mp_result *r, int64_t now, mp__deadline d,
                  int (*pred)(const mp_result *))
{
  int64_t budget = poll_budget();
  if (budget == 0 || d <= now || !mp__plat_spin_useful())
    return 0;
  int64_t until = now + budget < d ? now + budget : d;
  unsigned gen = __atomic_load_n(&r->gen, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&r->mu);
  for (unsigned i = 1;; i++) {
    if (__atomic_load_n(&r->gen, __ATOMIC_ACQUIRE) != gen) {
      pthread_mutex_lock(&r->mu);
      if (pred(r))
        return 1;
      gen = __atomic_load_n(&r->gen, __ATOMIC_RELAXED);
      pthread_mutex_unlock(&r->mu);
    }
    MP__CPU_RELAX();
    if (i % 64 != 0)
      continue;
    /* let a thread waiting for this CPU run: it may be the handler */
    sched_yield();
    if (mp__now_ns() >= until)
      break;
  }
  pthread_mutex_lock(&r->mu);
  return pred(r);
}

/* Wait on r->cv (r->mu held) until `pred` or the deadline. */
static int
wait_until(mp_result *r, mp__deadline d, int (*pred)(const mp_result *))
{
  if (pred(r))
    return 0;
  int64_t start = mp__now_ns();
  int rc = 0;
  if (poll_before_sleep(r, start, d, pred))
    goto done;
  while (!pred(r)) {
    if (d == MP__NO_DEADLINE) {
      pthread_cond_wait(&r->cv, &r->mu);
      continue;
    }
    if (mp__now_ns() >= d) {
      rc = MP_ETIMEDOUT;
      break;
    }
    struct timespec ts = {.tv_sec = (time_t)(d / 1000000000),
                          .tv_nsec = (long)(d % 1000000000)};
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
  }
done:
  note_wait(mp__now_ns() - start);
  return rc;
}

static int
is_ready(const mp_result *r)
{
  return r->ready;
}

int
mp_result_wait(mp_result *r, double timeout)
{
  mp__errdetail_clear();
  mp__deadline d;
  if (!r)
    return mp_seterr(MP_EINVAL, "result is NULL");
  int rc = mp__deadline_set(timeout, &d);
  if (rc)
    return rc;
  pthread_mutex_lock(&r->mu);
  rc = wait_until(r, d, is_ready);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int
mp_result_get(mp_result *r, mp_obj **out, double timeout)
{
  mp__errdetail_clear();
  if (!r || !out)
    return mp_seterr(MP_EINVAL, "result or out is NULL");
  *out = NULL;
  mp__deadline d;
  int rc = mp__deadline_set(timeout, &d);
  if (rc)
    return rc;
  pthread_mutex_lock(&r->mu);
  rc = wait_until(r, d, is_ready);
  if (rc == 0) {
    rc = r->code;
    if (rc == 0)
      *out = mp_obj_ref(r->value);
    else
      mp_seterr(rc, "%s", final_detail(r));
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int
mp_result_ready(const mp_result *r)
{
  if (!r)
    return MP_EINVAL;
  mp_result *m = (mp_result *)r;
  pthread_mutex_lock(&m->mu);
  int v = m->ready;
  pthread_mutex_unlock(&m->mu);
  return v;
}

int
mp_result_successful(const mp_result *r)
{
  mp__errdetail_clear();
  if (!r)
    return mp_seterr(MP_EINVAL, "result is NULL");
  mp_result *m = (mp_result *)r;
  pthread_mutex_lock(&m->mu);
  int v = m->ready ? m->code == 0 : MP_ESTATE;
  pthread_mutex_unlock(&m->mu);
  if (v == MP_ESTATE)
    return mp_seterr(MP_ESTATE, "result is not ready");
  return v;
}

void
mp_result_free(mp_result *r)
{
  mp__result_unref(r);
}

/* ---- IMapIterator ---------------------------------------------------- */

static int
imap_has_next(const mp_result *r)
{
  if (r->kind == MP__RES_IMAP)
    return r->next >= r->n ||
           r->done[r->ring ? r->next % r->ring : r->next] == 1;
  return r->order_pos >= r->n || r->order_pos < r->order_len;
}

int
mp_imap_next(mp_imap *it, mp_obj **out, double timeout)
{
  mp__errdetail_clear();
  if (!it || !out)
    return mp_seterr(MP_EINVAL, "iterator or out is NULL");
  *out = NULL;
  mp_result *r = &it->r;
  mp__deadline d;
  int rc = mp__deadline_set(timeout, &d);
  if (rc)
    return rc;
  if (it->src)
    mp__iter_feed(it); /* top the window up first (iter.c) */
  pthread_mutex_lock(&r->mu);
  rc = wait_until(r, d, imap_has_next);
  if (rc == 0) {
    size_t i;
    if (r->kind == MP__RES_IMAP)
      i = r->next < r->n ? r->next++ : r->n;
    else if (r->order_pos >= r->n)
      i = r->n;
    else
      i = r->order[r->ring ? r->order_pos++ % r->ring : r->order_pos++];
    if (i >= r->n) {
      rc = MP_EEOF;
    } else {
      size_t s = r->ring ? i % r->ring : i;
      rc = r->codes[s];
      if (rc == 0) {
        *out = r->values[s]; /* handed over: each position once */
        r->values[s] = NULL;
      } else {
        mp_seterr(rc, "%s", r->details[s] ? r->details[s] : "");
      }
      if (r->ring) { /* the slot is free again (oldest first) */
        free(r->details[s]);
        r->details[s] = NULL;
        r->codes[s] = 0;
        if (r->kind == MP__RES_IMAP) {
          r->done[s] = 0;
          r->low = r->next;
        } else { /* 2: handed out, its slot freed once `low` passes it */
          r->done[s] = 2;
          for (; r->low < r->fed && r->done[r->low % r->ring] == 2; r->low++)
            r->done[r->low % r->ring] = 0;
        }
      }
    }
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

void
mp_imap_free(mp_imap *it)
{
  if (!it)
    return;
  if (it->src)
    mp__iter_release(it);
  mp__result_unref(&it->r);
}
