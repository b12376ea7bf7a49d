/* SPDX-License-Identifier: MIT */
/* Progress bars on stderr, in tqdm's format, fed by counters the workers
 * bump in the pool's shared block (pool_internal.h: how any map feeds
 * one).  On a terminal a bar is one line redrawn in place; otherwise a
 * plain line at most every MP__BAR_PLAIN_EVERY seconds; the last line
 * always. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/pool_internal.h"

#define MP__BAR_WIDTH 10
#define MP__BAR_PLAIN_EVERY 2.0
#define MP__BAR_TTY_IDLE 1.0 /* redraw an unchanged bar (its clock) */

/* "mm:ss", or "h:mm:ss" from an hour on */
static void
fmt_time(char *buf, size_t cap, double s)
{
  if (s < 0)
    s = 0;
  long t = (long)s;
  if (t >= 3600)
    snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

/* " 45%|████▌     | 450/1000 [00:02<00:03, 180.2it/s]" */
int
mp__bar_format(char *buf, size_t cap, size_t n, size_t total, double elapsed)
{
  static const char *const eighths[8] = {"",  "▏", "▎", "▍",
                                         "▌", "▋", "▊", "▉"};
  if (n > total)
    n = total;
  /* integers: 29/100 is 29%, never 28.999...% */
  unsigned pct = total ? (unsigned)((unsigned long long)n * 100 / total) : 100;
  char bar[MP__BAR_WIDTH * 4 + 1];
  size_t bl = 0;
  int cells = total ? (int)((unsigned long long)n * MP__BAR_WIDTH * 8 / total)
                    : MP__BAR_WIDTH * 8; /* in eighths */
  int full = cells / 8, part = cells % 8, used = 0;
  for (; used < full; used++) {
    memcpy(bar + bl, "█", 3);
    bl += 3;
  }
  if (part && used < MP__BAR_WIDTH) {
    size_t pl = strlen(eighths[part]);
    memcpy(bar + bl, eighths[part], pl);
    bl += pl;
    used++;
  }
  for (; used < MP__BAR_WIDTH; used++)
    bar[bl++] = ' ';
  bar[bl] = 0;
  double rate = elapsed > 0 && n ? (double)n / elapsed : 0;
  char el[32], rem[32], rt[32];
  fmt_time(el, sizeof el, elapsed);
  if (rate > 0) {
    fmt_time(rem, sizeof rem, (double)(total - n) / rate);
    if (rate >= 1) /* tqdm turns slow rates over: seconds per item */
      snprintf(rt, sizeof rt, "%.1fit/s", rate);
    else
      snprintf(rt, sizeof rt, "%.1fs/it", 1 / rate);
  } else {
    snprintf(rem, sizeof rem, "?");
    snprintf(rt, sizeof rt, "?it/s");
  }
  return snprintf(buf, cap, "%3u%%|%s| %zu/%zu [%s<%s, %s]", pct, bar, n,
                  total, el, rem, rt);
}

static void
write_all(const char *s, size_t len)
{
  while (len) {
    ssize_t w = write(STDERR_FILENO, s, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return; /* stderr is gone: a bar is not worth failing for */
    s += w;
    len -= (size_t)w;
  }
}

/* Draw b with n done (x->mu held); `last`: the final line. */
static void
draw(mp__bar *b, size_t n, int64_t now, int last)
{
  char line[256], out[300];
  int len = mp__bar_format(line, sizeof line, n, b->total,
                       (double)(now - b->t0) / 1e9);
  if (len < 0)
    return;
  if (len >= (int)sizeof line)
    len = (int)sizeof line - 1;
  int ol;
  if (b->tty)
    ol = snprintf(out, sizeof out, "\r%s%s", line, last ? "\n" : "");
  else
    ol = snprintf(out, sizeof out, "%s\n", line);
  if (ol > 0)
    write_all(out, (size_t)ol < sizeof out ? (size_t)ol : sizeof out - 1);
  b->last_draw = now;
  b->last_n = n;
  b->drawn++;
}

static size_t
bar_count(mp__bar *b)
{
  int64_t v = __atomic_load_n(&b->x->sh->progress[b->slot], __ATOMIC_RELAXED);
  if (v < 0)
    v = 0;
  return (size_t)v < b->total ? (size_t)v : b->total;
}

int
mp__bar_new(mp__poolx *x, size_t total, mp__bar **out)
{
  *out = NULL;
  mp__bar *b = calloc(1, sizeof *b);
  if (!b)
    return MP_ENOMEM;
  pthread_mutex_lock(&x->mu);
  int slot = 0;
  for (int k = 1; k < MP__PROGRESS_SLOTS && !slot; k++)
    if (!(x->slots_used & ((uint64_t)1 << k)))
      slot = k;
  if (!slot) {
    pthread_mutex_unlock(&x->mu);
    free(b);
    return mp_seterr(MP_EBUSY, "too many progress bars at once (%d)",
                     MP__PROGRESS_SLOTS - 1);
  }
  x->slots_used |= (uint64_t)1 << slot;
  __atomic_store_n(&x->sh->progress[slot], 0, __ATOMIC_RELAXED);
  *b = (mp__bar){.next = x->bars, .x = x, .slot = slot, .total = total,
                 .t0 = mp__now_ns(), .tty = isatty(STDERR_FILENO) == 1};
  b->last_draw = b->t0;
  __atomic_store_n(&x->bars, b, __ATOMIC_RELAXED);
  if (b->tty)
    draw(b, 0, b->t0, 0); /* tqdm shows the empty bar at once */
  pthread_mutex_unlock(&x->mu);
  *out = b;
  return 0;
}

void
mp__bar_end(mp__bar *b, int complete)
{
  if (!b)
    return;
  mp__poolx *x = b->x;
  pthread_mutex_lock(&x->mu);
  for (mp__bar **pp = &x->bars; *pp; pp = &(*pp)->next)
    if (*pp == b) {
      __atomic_store_n(pp, b->next, __ATOMIC_RELAXED);
      break;
    }
  if (complete >= 0)
    draw(b, complete ? b->total : bar_count(b), mp__now_ns(), 1);
  x->slots_used &= ~((uint64_t)1 << b->slot);
  pthread_mutex_unlock(&x->mu);
  free(b);
}

void
mp__poolx_tick(mp__poolx *x)
{
  if (!x || !__atomic_load_n(&x->bars, __ATOMIC_RELAXED))
    return;
  int64_t now = mp__now_ns();
  if (now - x->tick_last < (int64_t)(MP__PROGRESS_REDRAW * 1e9))
    return;
  x->tick_last = now;
  pthread_mutex_lock(&x->mu);
  for (mp__bar *b = x->bars; b; b = b->next) {
    size_t n = bar_count(b);
    double since = (double)(now - b->last_draw) / 1e9;
    if (b->tty ? n != b->last_n || since >= MP__BAR_TTY_IDLE
               : n != b->last_n && since >= MP__BAR_PLAIN_EVERY)
      draw(b, n, now, 0);
  }
  pthread_mutex_unlock(&x->mu);
}
