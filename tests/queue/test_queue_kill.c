/* SPDX-License-Identifier: MIT */
/* The Queue under SIGKILL at random instants (issue 10 §3), in a bounded
 * loop, under fork, spawn and forkserver.
 *
 * Producers put items whose every byte is derived from (producer id,
 * sequence number): a 16-byte header and a payload of 1..3000 bytes, one in
 * 64 larger than the 16 KiB segment, one in 256 of 64 KiB and more (a put
 * of the tuple copies that payload from the object, in place).  They use put_bytes, put_many_bytes
 * batches and put of an mp_obj (the tuple (id, seq, bytes), half of them
 * with a handle, whose descriptor travels beside the item), and after
 * each successful put store the last sequence number put in a shared
 * "acknowledged" array.  Every producer process has an id of its own, so a
 * killed producer's successor never reuses a sequence number.  Consumers
 * check every item byte for byte, check that each producer's items reach
 * each consumer in increasing order, and set one bit per (id, seq) in a
 * shared bitmap: a bit found set already is a duplicate.
 *
 * Producers are killed in one test, consumers in another (plain and
 * JoinableQueue).  In one more, every item is an object, half of them
 * 64 KiB or more, and consumers take them with mp_queue_get: a big item
 * is decoded straight out of the ring, so a kill lands inside that
 * decode too.  At the end consumers drain the queue and stop on a STOP
 * item; then every acknowledged put must have been received -- all of them
 * when only producers died (and each producer's received items are a
 * prefix of its sequence: a dead producer's last item is whole or absent),
 * at most one per killed consumer otherwise; qsize is 0; a JoinableQueue's
 * unfinished count lies between the items lost and the consumer kills.
 * Every wait is bounded: a hang fails the test. */
#define _GNU_SOURCE
#include "testutil.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "obj/obj_internal.h"
#include "proc/proc_internal.h"
#include "queue/queue_internal.h"

#define MAXIDS 1024     /* producer incarnations per test */
#define MAXSEQ 4096     /* items per incarnation */
#define NPROD 3
#define NCONS 2
#define ITEM_MAGIC 0x6b51u
#define BATCH 16

/* ctl (a raw Array of 'q'): */
enum { C_STOP = 0, C_ERR, C_ERRID, C_ERRSEQ, C_GOT, C_NCTL };

static uint64_t
mix(uint64_t x)
{
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  x *= UINT64_C(0xc4ceb9fe1a85ec53);
  x ^= x >> 33;
  return x;
}

static size_t
item_len(uint32_t id, uint32_t seq, int objects)
{
  uint64_t h = mix((uint64_t)id << 32 | seq);
  if (objects && (h & 1)) /* decoded out of the ring by mp_queue_get */
    return MP__PICKLE_INPLACE_MIN + (size_t)(h >> 8) % 40000;
  if ((h & 255) == 0) /* a put of the tuple copies this from the object */
    return MP__PICKLE_INPLACE_MIN + (size_t)(h >> 8) % 40000;
  if ((h & 63) == 0)
    return 16384 + (size_t)(h >> 8) % 24000; /* larger than a segment */
  return 16 + 1 + (size_t)(h >> 8) % 3000;
}

static void
fill(uint8_t *p, uint32_t id, uint32_t seq, size_t len)
{
  uint32_t hdr[4] = {ITEM_MAGIC, id, seq, (uint32_t)len};
  memcpy(p, hdr, 16);
  uint64_t s = mix((uint64_t)seq << 32 | id) | 1;
  for (size_t i = 16; i < len; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    p[i] = (uint8_t)s;
  }
}

/* 0 if p[0..len) is the item (id, seq) it claims to be. */
static int
check_item(const uint8_t *p, size_t len, uint32_t *id, uint32_t *seq)
{
  if (len < 16)
    return 1;
  uint32_t hdr[4];
  memcpy(hdr, p, 16);
  if (hdr[0] != ITEM_MAGIC || hdr[1] >= MAXIDS || hdr[2] >= MAXSEQ
      || hdr[3] != len
      || (item_len(hdr[1], hdr[2], 0) != len &&
          item_len(hdr[1], hdr[2], 1) != len)) /* either world's */
    return 2;
  *id = hdr[1];
  *seq = hdr[2];
  uint64_t s = mix((uint64_t)hdr[2] << 32 | hdr[1]) | 1;
  for (size_t i = 16; i < len; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    if (p[i] != (uint8_t)s)
      return 3;
  }
  return 0;
}

static int64_t *
slots(mp_array *a)
{
  return mp_array_ptr(a);
}

/* args: (queue, acks, ctl, id, objects): objects, every item a put of an
 * mp_obj */
static int
producer(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  mp_array *acks = mp_array_from_obj(mp_seq_item(args, 1));
  mp_array *ctl = mp_array_from_obj(mp_seq_item(args, 2));
  int64_t id64, objects;
  if (!q || !acks || !ctl || mp_int_get(mp_seq_item(args, 3), &id64) ||
      mp_int_get(mp_seq_item(args, 4), &objects))
    return 10;
  uint32_t id = (uint32_t)id64;
  int64_t *ack = &slots(acks)[id], *c = slots(ctl);
  uint8_t *buf = malloc((size_t)BATCH * (MP__PICKLE_INPLACE_MIN + 40000));
  if (!buf)
    return 11;
  uint64_t r = mix(id + 77);
  uint32_t seq = 0;
  while (seq < MAXSEQ && !__atomic_load_n(&c[C_STOP], __ATOMIC_ACQUIRE)) {
    r = mix(r);
    unsigned mode = objects ? 7 : (unsigned)(r % 8);
    int rc;
    uint32_t n = 1;
    if (mode < 4) {
      size_t len = item_len(id, seq, (int)objects);
      fill(buf, id, seq, len);
      rc = mp_queue_put_bytes(q, buf, len, 0.1);
    } else if (mode < 7) {
      mp_queue_buf b[BATCH];
      n = 1 + (uint32_t)(r >> 8) % BATCH;
      if (n > MAXSEQ - seq)
        n = MAXSEQ - seq;
      size_t at = 0;
      for (uint32_t i = 0; i < n; i++) {
        size_t len = item_len(id, seq + i, (int)objects);
        fill(buf + at, id, seq + i, len);
        b[i] = (mp_queue_buf){buf + at, len};
        at += len;
      }
      rc = mp_queue_put_many_bytes(q, b, n, 0.1);
      if (rc > 0) {
        n = (uint32_t)rc;
        rc = 0;
      }
    } else {
      size_t len = item_len(id, seq, (int)objects);
      fill(buf, id, seq, len);
      /* one in two holds a handle: its descriptor travels on the queue's
       * socket, sent before the record is claimed (a producer killed in
       * between leaves a message no record claims) */
      mp_obj *item = (r >> 20) & 1
                         ? MP_TUPLE(mp_int_new(id), mp_int_new(seq),
                                    mp_bytes_new(buf, len), mp_array_obj(ctl))
                         : MP_TUPLE(mp_int_new(id), mp_int_new(seq),
                                    mp_bytes_new(buf, len));
      if (!item)
        return 12;
      rc = mp_queue_put(q, item, 0.1);
      mp_obj_free(item);
    }
    if (rc == MP_EFULL)
      continue;
    if (rc != 0)
      return 20 + (rc < 0 ? -rc % 80 : 79);
    seq += n;
    __atomic_store_n(ack, (int64_t)seq - 1, __ATOMIC_RELEASE);
  }
  free(buf);
  /* done: idle until told to stop, so that it is still alive when killed */
  struct timespec tick = {0, 1000 * 1000};
  while (!__atomic_load_n(&c[C_STOP], __ATOMIC_ACQUIRE))
    nanosleep(&tick, NULL);
  return 0;
}

static void
report(int64_t *c, int64_t err, uint32_t id, uint32_t seq)
{
  int64_t zero = 0;
  if (__atomic_compare_exchange_n(&c[C_ERR], &zero, err, 0, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE)) {
    c[C_ERRID] = id;
    c[C_ERRSEQ] = seq;
  }
}

static int mark(int64_t *c, uint8_t *bits, int32_t *last, int rc,
                uint32_t id, uint32_t seq);

/* One object item taken (id, seq, bytes[, handle]), or the str "STOP". */
static int
take_obj(int64_t *c, uint8_t *bits, int32_t *last, mp_obj *o, int *stop)
{
  const char *t;
  size_t tl;
  if (mp_obj_type(o) == MP_T_STR && mp_str_get(o, &t, &tl) == 0 && tl == 4 &&
      memcmp(t, "STOP", 4) == 0) {
    *stop = 1;
    return 0;
  }
  int64_t i, s;
  const void *d;
  size_t dn;
  if (mp_int_get(mp_seq_item(o, 0), &i) || mp_int_get(mp_seq_item(o, 1), &s)
      || mp_bytes_get(mp_seq_item(o, 2), &d, &dn)) {
    report(c, 101, 0, 0);
    return 101;
  }
  uint32_t id = 0, seq = 0;
  int rc = check_item(d, dn, &id, &seq);
  if (rc == 0 && (id != i || seq != s))
    rc = 4;
  return mark(c, bits, last, rc, id, seq);
}

/* One item taken: check it, its order, and mark it.  0 or an error. */
static int
take(int64_t *c, uint8_t *bits, int32_t *last, const uint8_t *p, size_t len,
     int *stop)
{
  uint32_t id = 0, seq = 0;
  if (len == 4 && memcmp(p, "STOP", 4) == 0) {
    *stop = 1;
    return 0;
  }
  mp_obj *o = NULL;
  int rc;
  if (len > 0 && p[0] == 0x80) { /* a pickle: put of an mp_obj */
    if ((rc = mp_pickle_loads(p, len, NULL, &o)) != 0) {
      report(c, 100, 0, 0);
      return 100;
    }
    rc = take_obj(c, bits, last, o, stop);
    mp_obj_free(o);
    return rc;
  }
  rc = check_item(p, len, &id, &seq);
  return mark(c, bits, last, rc, id, seq);
}

/* An item checked (rc from check_item): its order, and mark it. */
static int
mark(int64_t *c, uint8_t *bits, int32_t *last, int rc, uint32_t id,
     uint32_t seq)
{
  if (rc) {
    report(c, 110 + rc, id, seq); /* a torn or foreign item */
    return 110 + rc;
  }
  if ((int32_t)seq <= last[id]) {
    report(c, 120, id, seq); /* out of order for this consumer */
    return 120;
  }
  last[id] = (int32_t)seq;
  size_t bit = (size_t)id * MAXSEQ + seq;
  if (__atomic_fetch_or(&bits[bit / 8], (uint8_t)(1u << (bit % 8)),
                        __ATOMIC_ACQ_REL)
      & (1u << (bit % 8))) {
    report(c, 121, id, seq); /* a duplicate */
    return 121;
  }
  __atomic_fetch_add(&c[C_GOT], 1, __ATOMIC_RELAXED);
  return 0;
}

/* args: (queue, bits, ctl, batches, joinable) */
static int
consumer(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  mp_array *ba = mp_array_from_obj(mp_seq_item(args, 1));
  mp_array *ctl = mp_array_from_obj(mp_seq_item(args, 2));
  int64_t batches, joinable, forever, objects;
  if (!q || !ba || !ctl || mp_int_get(mp_seq_item(args, 3), &batches)
      || mp_int_get(mp_seq_item(args, 4), &joinable)
      || mp_int_get(mp_seq_item(args, 5), &forever)
      || mp_int_get(mp_seq_item(args, 6), &objects))
    return 10;
  /* forever: waits without a timeout, their slices ended by this process's
   * slice clock from the first one */
  double tmo = forever ? MP_FOREVER : 0.2;
  if (forever)
    __atomic_store_n(&mp__slice_clock_after, 0, __ATOMIC_RELAXED);
  uint8_t *bits = mp_array_ptr(ba);
  int64_t *c = slots(ctl);
  int32_t *last = malloc(sizeof(int32_t) * MAXIDS);
  size_t bsize = 1 << 17;
  uint8_t *buf = malloc(bsize);
  if (!last || !buf)
    return 11;
  for (int i = 0; i < MAXIDS; i++)
    last[i] = -1;
  uint64_t r = mix((uint64_t)getpid());
  int stop = 0;
  while (!stop) {
    r = mix(r);
    int rc;
    if (objects) { /* mp_queue_get: a big item decoded out of the ring */
      mp_obj *o = NULL;
      rc = mp_queue_get(q, &o, tmo);
      if (rc == MP_EEMPTY)
        continue;
      if (rc < 0)
        return 30 + (-rc % 60);
      int e = take_obj(c, bits, last, o, &stop);
      mp_obj_free(o);
      if (e)
        return e;
      if (joinable && mp_queue_task_done(q) != 0)
        return 12;
    } else if (batches && (r & 1)) {
      mp_queue_buf items[8];
      rc = mp_queue_get_many_bytes(q, buf, bsize, items, 8, tmo);
      if (rc == MP_EEMPTY)
        continue;
      if (rc < 0)
        return 30 + (-rc % 60);
      for (int i = 0; i < rc; i++) {
        int st = 0;
        int e = take(c, bits, last, items[i].data, items[i].len, &st);
        if (e)
          return e;
        /* a batch may hold the STOP meant for another consumer: pass it on */
        if (st && stop && mp_queue_put_bytes(q, "STOP", 4, 10) != 0)
          return 13;
        stop |= st;
        if (joinable && mp_queue_task_done(q) != 0)
          return 12;
      }
    } else {
      void *p;
      size_t n;
      rc = mp_queue_get_bytes(q, &p, &n, tmo);
      if (rc == MP_EEMPTY)
        continue;
      if (rc < 0)
        return 30 + (-rc % 60);
      int e = take(c, bits, last, p, n, &stop);
      mp_free(p);
      if (e)
        return e;
      if (joinable && mp_queue_task_done(q) != 0)
        return 12;
    }
  }
  free(buf);
  free(last);
  return 0;
}

typedef struct world {
  mp_context *ctx;
  mp_queue *q;
  mp_array *acks, *bits, *ctl;
  int batches, joinable;
  int forever; /* consumers wait with MP_FOREVER */
  int objects; /* every item an object, taken with mp_queue_get */
  int nids;
  mp_process *prod[NPROD];
  int prod_id[NPROD];
  mp_process *cons[NCONS];
} world;

static mp_process *
start(world *w, int is_producer, int id)
{
  mp_obj *args =
      is_producer
          ? MP_TUPLE(mp_queue_obj(w->q), mp_array_obj(w->acks),
                     mp_array_obj(w->ctl), mp_int_new(id),
                     mp_int_new(w->objects))
          : MP_TUPLE(mp_queue_obj(w->q), mp_array_obj(w->bits),
                     mp_array_obj(w->ctl), mp_int_new(w->batches),
                     mp_int_new(w->joinable), mp_int_new(w->forever),
                     mp_int_new(w->objects));
  assert_non_null(args);
  mp_process *p;
  MP_ASSERT_OK(mp_process_new(
      &p, w->ctx,
      &(mp_process_opts){.target = is_producer ? producer : consumer,
                         .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  return p;
}

static void
check_ctl(world *w, const char *when)
{
  int64_t *c = slots(w->ctl);
  if (__atomic_load_n(&c[C_ERR], __ATOMIC_ACQUIRE))
    fail_msg("%s: consumer error %lld at producer %lld seq %lld", when,
             (long long)c[C_ERR], (long long)c[C_ERRID],
             (long long)c[C_ERRSEQ]);
}

/* Kill p (it must still be running: exit code -SIGKILL). */
static void
kill_it(world *w, mp_process **pp, const char *what)
{
  mp_process *p = *pp;
  MP_ASSERT_OK(mp_process_kill(p));
  MP_ASSERT_OK(mp_process_join(p, 30));
  int code = 0;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  check_ctl(w, what);
  if (code != -SIGKILL)
    fail_msg("%s exited with %d before it was killed", what, code);
  mp_process_free(p);
  *pp = NULL;
}

static void
end_ok(world *w, mp_process **pp, const char *what)
{
  mp_process *p = *pp;
  int rc = mp_process_join(p, 60);
  if (rc != 0) {
    if (getenv("QKILL_HANG_PAUSE")) { /* leave it for a debugger */
      fprintf(stderr, "hang: %s pid %d\n", what, mp_process_pid(p));
      pause();
    }
    mp_process_kill(p);
    mp_process_join(p, 30);
    fail_msg("%s did not end (hang?): qsize %d, count %llu, unfinished %llu",
             what, mp_queue_qsize(w->q), (unsigned long long)mp__q_count(w->q),
             (unsigned long long)mp__q_unfinished(w->q));
  }
  int code = -1;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  check_ctl(w, what);
  if (code != 0)
    fail_msg("%s exited with %d", what, code);
  mp_process_free(p);
  *pp = NULL;
}

static void
random_pause(unsigned max_us)
{
  struct timespec ts = {0, (long)(rand() % (max_us + 1)) * 1000L};
  nanosleep(&ts, NULL);
}

/* Wait (bounded) until producer `id` has put something, or (id < 0) the
 * consumers have taken more than `got_before` items. */
static void
wait_progress(world *w, int id, int64_t got_before)
{
  int64_t *a = slots(w->acks), *c = slots(w->ctl);
  struct timespec t0, now, tick = {0, 200 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (id >= 0 ? __atomic_load_n(&a[id], __ATOMIC_ACQUIRE) >= 0
                : __atomic_load_n(&c[C_GOT], __ATOMIC_ACQUIRE) > got_before)
      return;
    check_ctl(w, "waiting for progress");
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - t0.tv_sec > 30)
      fail_msg("no progress within 30 s (%s %d)", id >= 0 ? "producer" : "consumers", id);
    nanosleep(&tick, NULL);
  }
}

static int
rounds_for(const char *method, int fork_rounds)
{
  if (strcmp(method, "fork") == 0)
    return fork_rounds;
  if (strcmp(method, "forkserver") == 0)
    return fork_rounds / 2;
  return fork_rounds / 4; /* spawn: a fresh program each time */
}

/* The world of the test running now: if a check fails, its processes are
 * still running (producers idle until told to stop), and the exit would
 * join them for ever as it joins every non-daemon child.  Killed first. */
static world *live_world;

static void
kill_live_world(void *unused)
{
  (void)unused;
  world *w = live_world;
  if (!w)
    return;
  for (int i = 0; i < NPROD + NCONS; i++) {
    mp_process *p = i < NPROD ? w->prod[i] : w->cons[i - NPROD];
    if (p) {
      mp_process_kill(p);
      mp_process_join(p, 10);
    }
  }
  live_world = NULL;
}

static void
world_new(world *w, void **state, int joinable, int batches, size_t maxsize)
{
  static int exit_hook;
  if (!exit_hook++) /* before the exit joins the children */
    assert_non_null(
        mp__finalizer_add(MP__FINALIZE_CHILDREN + 1, kill_live_world, NULL));
  kill_live_world(NULL); /* the processes of a test that failed */
  memset(w, 0, sizeof *w);
  live_world = w;
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  w->ctx = mp_test_context(state);
  w->joinable = joinable;
  w->batches = batches;
  MP_ASSERT_OK(mp_queue_new(&w->q, &(mp_queue_opts){.maxsize = maxsize,
                                                    .joinable = joinable,
                                                    .segment_size = 16384}));
  MP_ASSERT_OK(mp_array_new(&w->acks, 'q', MAXIDS, NULL,
                            &(mp_value_opts){.raw = 1}));
  for (int i = 0; i < MAXIDS; i++)
    slots(w->acks)[i] = -1;
  MP_ASSERT_OK(mp_array_new(&w->bits, 'B', (size_t)MAXIDS * MAXSEQ / 8, NULL,
                            &(mp_value_opts){.raw = 1}));
  MP_ASSERT_OK(mp_array_new(&w->ctl, 'q', C_NCTL, NULL,
                            &(mp_value_opts){.raw = 1}));
}

/* Stop producers, drain with the consumers, check the accounting. */
static void
world_end(world *w, int consumer_kills, int exact)
{
  int64_t *c = slots(w->ctl), *a = slots(w->acks);
  __atomic_store_n(&c[C_STOP], 1, __ATOMIC_RELEASE);
  for (int i = 0; i < NPROD; i++)
    end_ok(w, &w->prod[i], "producer");
  mp_obj *stop_item = mp_str_new("STOP");
  for (int i = 0; i < NCONS; i++)
    MP_ASSERT_OK(w->objects ? mp_queue_put(w->q, stop_item, 10)
                            : mp_queue_put_bytes(w->q, "STOP", 4, 10));
  mp_obj_free(stop_item);
  for (int i = 0; i < NCONS; i++)
    end_ok(w, &w->cons[i], "consumer");
  live_world = NULL;
  check_ctl(w, "end");
  assert_int_equal(mp_queue_qsize(w->q), 0);
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_queue_get_bytes(w->q, &p, &n, 0), MP_EEMPTY);
  const uint8_t *bits = mp_array_ptr(w->bits);
  int64_t missing = 0, acked = 0;
  for (int id = 0; id < w->nids; id++) {
    int64_t hi = a[id];
    int seen_gap = 0;
    for (int64_t s = 0; s < MAXSEQ; s++) {
      size_t bit = (size_t)id * MAXSEQ + (size_t)s;
      int got = bits[bit / 8] >> (bit % 8) & 1;
      if (s <= hi) {
        acked++;
        missing += !got;
      }
      if (exact) {
        /* only producers died: each one's items arrived as a prefix */
        if (!got)
          seen_gap = 1;
        else if (seen_gap) {
          int64_t first = s - 1;
          while (first > 0) {
            size_t b = (size_t)id * MAXSEQ + (size_t)first - 1;
            if (bits[b / 8] >> (b % 8) & 1)
              break;
            first--;
          }
          fail_msg("producer %d: seq %lld received after a hole from seq "
                   "%lld (acknowledged up to %lld; %llu records padded)",
                   id, (long long)s, (long long)first, (long long)hi,
                   (unsigned long long)atomic_load(&w->q->h->padded));
        }
      } else if (got && s > hi + BATCH) {
        fail_msg("producer %d: seq %lld received, only %lld acknowledged", id,
                 (long long)s, (long long)hi);
      }
    }
  }
  print_message("  %d producers, %lld puts acknowledged, %lld received, "
                "%lld missing, %d consumer kills, %llu records padded\n",
                w->nids, (long long)acked, (long long)c[C_GOT],
                (long long)missing, consumer_kills,
                (unsigned long long)atomic_load(&w->q->h->padded));
  if (exact)
    assert_int_equal(missing, 0);
  else if (missing > consumer_kills)
    fail_msg("%lld acknowledged items missing, only %d consumer kills",
             (long long)missing, consumer_kills);
  if (w->joinable) {
    uint64_t unf = mp__q_unfinished(w->q);
    if ((int64_t)unf < missing || (int64_t)unf > consumer_kills)
      fail_msg("unfinished %llu: not between the %lld items lost and the %d "
               "consumer kills",
               (unsigned long long)unf, (long long)missing, consumer_kills);
    if (unf > 0)
      MP_ASSERT_ERR(mp_queue_join(w->q, 0), MP_ETIMEDOUT);
    for (uint64_t i = 0; i < unf; i++)
      MP_ASSERT_OK(mp_queue_task_done(w->q));
    MP_ASSERT_OK(mp_queue_join(w->q, 0));
    MP_ASSERT_ERR(mp_queue_task_done(w->q), MP_ESTATE);
  }
  mp_queue_free(w->q);
  mp_array_free(w->acks);
  mp_array_free(w->bits);
  mp_array_free(w->ctl);
}

static void
kill_producers(void **state, int joinable, int forever)
{
  static world w; /* static: still there for kill_live_world after a failed check */
  world_new(&w, state, joinable, 1, joinable || forever ? 0 : 2000);
  w.forever = forever;
  for (int i = 0; i < NCONS; i++)
    w.cons[i] = start(&w, 0, 0);
  for (int i = 0; i < NPROD; i++) {
    w.prod_id[i] = w.nids;
    w.prod[i] = start(&w, 1, w.nids++);
  }
  int rounds = rounds_for(mp_test_method(state), forever ? 150 : 300);
  for (int round = 0; round < rounds && w.nids < MAXIDS; round++) {
    int k = rand() % NPROD;
    /* wait until the victim is putting, then kill it anywhere */
    wait_progress(&w, w.prod_id[k], 0);
    random_pause(3000);
    kill_it(&w, &w.prod[k], "producer");
    w.prod_id[k] = w.nids;
    w.prod[k] = start(&w, 1, w.nids++);
  }
  world_end(&w, 0, 1);
}

static void
test_kill_producers(void **state)
{
  kill_producers(state, 0, 0);
}

/* Consumers asleep without a timeout on an unbounded queue: a producer
 * killed between its publish and its wake-up leaves them to the slice
 * clock. */
static void
test_kill_producers_forever(void **state)
{
  kill_producers(state, 0, 1);
}

static void
test_kill_producers_joinable(void **state)
{
  kill_producers(state, 1, 0);
}

static void
kill_consumers(void **state, int joinable, int forever, int objects)
{
  static world w; /* static: still there for kill_live_world after a failed check */
  world_new(&w, state, joinable, 0, objects ? 64 : 500);
  w.forever = forever;
  w.objects = objects;
  for (int i = 0; i < NCONS; i++)
    w.cons[i] = start(&w, 0, 0);
  for (int i = 0; i < NPROD; i++) {
    w.prod_id[i] = w.nids;
    w.prod[i] = start(&w, 1, w.nids++);
  }
  int rounds = rounds_for(mp_test_method(state), forever ? 100 : 200);
  int kills = 0;
  for (int round = 0; round < rounds; round++) {
    int k = rand() % NCONS;
    wait_progress(&w, -1, slots(w.ctl)[C_GOT]);
    random_pause(3000);
    kill_it(&w, &w.cons[k], "consumer");
    kills++;
    w.cons[k] = start(&w, 0, 0);
    /* producers that finished their sequence make room for new ones */
    for (int i = 0; i < NPROD && w.nids < MAXIDS; i++)
      if (__atomic_load_n(&slots(w.acks)[w.prod_id[i]], __ATOMIC_ACQUIRE)
          == MAXSEQ - 1) {
        kill_it(&w, &w.prod[i], "idle producer");
        w.prod_id[i] = w.nids;
        w.prod[i] = start(&w, 1, w.nids++);
      }
  }
  world_end(&w, kills, 0);
}

static void
test_kill_consumers(void **state)
{
  kill_consumers(state, 0, 0, 0);
}

/* The same with the survivors asleep without a timeout: a consumer killed
 * after its wake-up and before it passed the wake on leaves them to the
 * slice clock. */
static void
test_kill_consumers_forever(void **state)
{
  kill_consumers(state, 0, 1, 0);
}

static void
test_kill_consumers_joinable(void **state)
{
  kill_consumers(state, 1, 0, 0);
}

/* Every item an object, half of them decoded straight out of the ring:
 * a consumer killed inside that decode loses that one item, and the
 * queue goes on. */
static void
test_kill_consumers_decoding(void **state)
{
  kill_consumers(state, 0, 0, 1);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS(test_kill_producers),
    MP_TEST_METHODS(test_kill_producers_joinable),
    MP_TEST_METHODS(test_kill_producers_forever),
    MP_TEST_METHODS(test_kill_consumers),
    MP_TEST_METHODS(test_kill_consumers_joinable),
    MP_TEST_METHODS(test_kill_consumers_forever),
    MP_TEST_METHODS(test_kill_consumers_decoding),
};

MP_TEST_MAIN(tests)
