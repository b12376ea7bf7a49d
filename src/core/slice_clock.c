/* SPDX-License-Identifier: MIT */
/* The slice clock: bounded sleeps without a kernel timer per sleep.
 *
 * A wait that must not last for ever -- a queue's consumer on an empty
 * queue, whose producer may be killed between publishing an item and
 * waking it -- sleeps for a slice and looks again.  A futex wait with a
 * timeout arms and cancels an hrtimer each time: on these machines about
 * 0.4 us a wait, a fifth of a pinned put->get round trip.  Here the
 * process's waiters instead sleep without a timeout, each registered in a
 * slot, and one thread ("mproc-slice", every signal blocked) wakes every
 * registered word once per mp__slice_ns.  A sleeper is so woken within
 * about one period, as a timed wait of one slice would be, and a lost
 * wake-up costs what it cost before: one slice.
 *
 * The thread is started by the first slice wait after a process's first
 * mp__slice_clock_after (those, and every wait when the slots are full or
 * the thread cannot be made, are timed waits as before), so a short-lived
 * process never makes it.  It goes idle after two
 * periods with nobody registered, and the next registrant wakes it.  A
 * fork child has none (threads are not copied) and starts its own.
 *
 * A process may forgo it (mp__slice_clock_forgo): a pool worker does.  Its
 * second thread would make the process multi-threaded for good, and from
 * then on every reference count change is an atomic read-modify-write
 * instead of a plain store (obj's MP__SINGLE_THREADED): measured, a
 * worker's CPU per item of a map of ints rose 2.4x once its clock started,
 * against the 0.4 us a timed wait costs per idle wait.
 *
 * A wake of a word whose waiter has gone (its memory unmapped or reused)
 * is harmless: the kernel answers EFAULT, or its new waiters see a
 * spurious wake-up, which every futex user must accept. */
#include <limits.h>
#include <time.h>

#include "core/internal.h"
#include "platform/platform.h"

#define NSLOTS 64

int64_t mp__slice_ns = MP__SLICE_NS;
int mp__slice_clock_after = 16;

static _Atomic(uint32_t *) g_slot[NSLOTS];
static _Atomic uint32_t g_idle;  /* 1: the thread sleeps on it */
static _Atomic uint64_t g_ticks; /* ticks begun */
static _Atomic uint64_t g_sleeps; /* sleeps that registered (tests) */
static _Atomic int g_state;      /* 0 none, 1 running, -1 could not start */
static _Atomic uint32_t g_waits; /* slice waits so far (to the _after) */
static pthread_mutex_t g_mu MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER; /* starting it */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_ready; /* the fork hook is in place */

static void
forget_clock(void *arg)
{
  (void)arg;
  /* the parent's thread and sleepers are not in this process */
  for (int i = 0; i < NSLOTS; i++)
    atomic_store_explicit(&g_slot[i], NULL, memory_order_relaxed);
  atomic_store_explicit(&g_idle, 0, memory_order_relaxed);
  atomic_store_explicit(&g_state, 0, memory_order_relaxed);
  atomic_store_explicit(&g_waits, 0, memory_order_relaxed);
}

static void
install(void)
{
  g_ready = mp__fork_guard_mutex_reset(&g_mu, forget_clock, NULL) != NULL;
}

/* Wake every registered word; how many there were. */
static int
tick(void)
{
  atomic_fetch_add_explicit(&g_ticks, 1, memory_order_seq_cst);
  int n = 0;
  for (int i = 0; i < NSLOTS; i++) {
    uint32_t *w = atomic_load_explicit(&g_slot[i], memory_order_seq_cst);
    if (w) {
      mp__futex_wake(w, INT32_MAX);
      n++;
    }
  }
  return n;
}

static void *
clock_main(void *arg)
{
  (void)arg;
  int quiet = 0;
  for (;;) {
    int64_t ns = atomic_load_explicit((_Atomic int64_t *)&mp__slice_ns,
                                      memory_order_relaxed);
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) != 0)
      ; /* EINTR (every signal is blocked: a stop and continue) */
    if (tick() > 0) {
      quiet = 0;
      continue;
    }
    if (++quiet < 2)
      continue;
    /* Dekker with a registrant: it stores its slot and then looks at
     * g_idle; here g_idle is stored and then the slots are looked at. */
    atomic_store_explicit(&g_idle, 1, memory_order_seq_cst);
    int any = 0;
    for (int i = 0; i < NSLOTS && !any; i++)
      any = atomic_load_explicit(&g_slot[i], memory_order_seq_cst) != NULL;
    if (!any)
      mp__futex_wait((uint32_t *)&g_idle, 1, MP__NO_DEADLINE);
    atomic_store_explicit(&g_idle, 0, memory_order_relaxed);
    quiet = 0;
  }
  return NULL;
}

/* Start the thread once per process: 1 running, 0 not (yet, or never). */
static int
clock_running(void)
{
  int s = atomic_load_explicit(&g_state, memory_order_acquire);
  if (MP__LIKELY(s != 0))
    return s > 0;
  if (atomic_fetch_add_explicit(&g_waits, 1, memory_order_relaxed)
      < (uint32_t)__atomic_load_n(&mp__slice_clock_after, __ATOMIC_RELAXED))
    return 0;
  pthread_once(&g_once, install);
  if (!g_ready)
    return 0;
  pthread_mutex_lock(&g_mu);
  if ((s = atomic_load_explicit(&g_state, memory_order_relaxed)) == 0) {
    pthread_t t;
    s = mp__thread_start(&t, clock_main, NULL, 1, 64 * 1024, "mproc-slice")
            ? -1
            : 1;
    atomic_store_explicit(&g_state, s, memory_order_release);
  }
  pthread_mutex_unlock(&g_mu);
  return s > 0;
}

void
mp__futex_wait_slice(uint32_t *word, uint32_t val)
{
  if (!clock_running()) {
    mp__futex_wait_rel(word, val, mp__slice_ns);
    return;
  }
  /* Ticks counted before registering: one that comes between here and the
   * sleep may have passed this slot already, and then this sleep ends at
   * once, so that none lasts longer than about one period. */
  uint64_t t0 = atomic_load_explicit(&g_ticks, memory_order_seq_cst);
  /* threads start their search at different slots: few collisions */
  unsigned start = (unsigned)mp__gettid() % NSLOTS;
  int s = -1;
  for (unsigned k = 0; k < NSLOTS && s < 0; k++) {
    unsigned i = (start + k) % NSLOTS;
    uint32_t *none = NULL;
    if (atomic_load_explicit(&g_slot[i], memory_order_relaxed) == NULL &&
        atomic_compare_exchange_strong_explicit(&g_slot[i], &none, word,
                                                memory_order_seq_cst,
                                                memory_order_relaxed))
      s = (int)i;
  }
  if (s < 0) { /* every slot taken: a timed wait, as without the clock */
    mp__futex_wait_rel(word, val, mp__slice_ns);
    return;
  }
  atomic_fetch_add_explicit(&g_sleeps, 1, memory_order_relaxed);
  if (MP__UNLIKELY(atomic_load_explicit(&g_idle, memory_order_seq_cst))) {
    uint32_t one = 1;
    if (atomic_compare_exchange_strong_explicit(&g_idle, &one, 0,
                                                memory_order_seq_cst,
                                                memory_order_relaxed))
      mp__futex_wake((uint32_t *)&g_idle, 1);
  }
  if (atomic_load_explicit(&g_ticks, memory_order_seq_cst) == t0)
    mp__futex_wait(word, val, MP__NO_DEADLINE);
  atomic_store_explicit(&g_slot[s], NULL, memory_order_release);
}

void
mp__slice_clock_forgo(void)
{
  int none = 0;
  /* -1 is "could not start": every slice wait a timed one from now on */
  atomic_compare_exchange_strong_explicit(&g_state, &none, -1,
                                          memory_order_acq_rel,
                                          memory_order_acquire);
}

int
mp__slice_clock_state(void)
{
  if (atomic_load_explicit(&g_state, memory_order_acquire) <= 0)
    return 0;
  return atomic_load_explicit(&g_idle, memory_order_seq_cst) ? 2 : 1;
}

uint64_t
mp__slice_clock_sleeps(void)
{
  return atomic_load_explicit(&g_sleeps, memory_order_relaxed);
}
