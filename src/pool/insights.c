/* SPDX-License-Identifier: MIT */
/* Insights (mpire's enable_insights): reading the workers' figures from the
 * pool's shared block (pool_internal.h) and printing a summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool_internal.h"

/* A consistent copy of one worker's stats (the seqlock's reader side).
 * The worker writes a few words per task; a reader that keeps losing the
 * race takes the last copy after a bounded number of tries. */
static void
ws_read(mp__wstats *ws, mp__wstats *out)
{
  const int64_t *src = (const int64_t *)ws;
  int64_t *dst = (int64_t *)out;
  size_t words = sizeof *ws / sizeof(int64_t);
  for (int tries = 0; tries < 10000; tries++) {
    int64_t s1 = __atomic_load_n(&ws->seq, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < words; i++) /* acquires: see hooks.c */
      dst[i] = __atomic_load_n(&src[i], __ATOMIC_ACQUIRE);
    int64_t s2 = __atomic_load_n(&ws->seq, __ATOMIC_RELAXED);
    if (s1 == s2 && !(s1 & 1))
      return;
  }
}

int
mp_pool_insights_get(mp_pool *p, mp_pool_insights *out)
{
  mp__errdetail_clear();
  if (!p || !out)
    return mp_seterr(MP_EINVAL, "pool or out is NULL");
  memset(out, 0, sizeof *out);
  mp__poolx *x = mp__pool_x(p);
  if (!x->insights)
    return mp_seterr(MP_ESTATE, "the pool was made without insights "
                                "(mp_pool_opts.insights)");
  out->workers = calloc((size_t)x->nproc, sizeof *out->workers);
  mp__wstats *all = calloc((size_t)x->nproc, sizeof *all);
  if (!out->workers || !all) {
    free(out->workers);
    free(all);
    out->workers = NULL;
    return MP_ENOMEM;
  }
  out->nworkers = x->nproc;
  for (int k = 0; k < x->nproc; k++) {
    mp__wstats *s = &all[k];
    ws_read(&x->sh->w[k], s);
    out->workers[k] = (mp_pool_worker_insights){
        .id = k,
        .starts = (int)s->starts,
        .startup = (double)s->startup_ns / 1e9,
        .init = (double)s->init_ns / 1e9,
        .waiting = (double)s->wait_ns / 1e9,
        .working = (double)s->work_ns / 1e9,
        .exiting = (double)s->exit_ns / 1e9,
        .tasks = s->tasks,
        .jobs = s->jobs};
  }
  /* the slowest over all workers: merge the per-worker lists */
  for (;;) {
    int best = -1;
    for (int k = 0; k < x->nproc; k++)
      if (all[k].nslow > 0 && all[k].nslow <= MP__INSIGHT_TOP &&
          (best < 0 || all[k].slow[0].ns > all[best].slow[0].ns))
        best = k;
    if (best < 0 || out->nslowest == MP__INSIGHT_TOP)
      break;
    mp__slowrec *r = &all[best].slow[0];
    mp_pool_slow_task *t = &out->slowest[out->nslowest++];
    t->seconds = (double)r->ns / 1e9;
    t->worker = best;
    t->index = r->index < 0 ? 0 : (size_t)r->index;
    memcpy(t->args, r->repr, sizeof t->args);
    t->args[sizeof t->args - 1] = 0;
    /* pop it */
    memmove(&all[best].slow[0], &all[best].slow[1],
            (MP__INSIGHT_TOP - 1) * sizeof(mp__slowrec));
    all[best].nslow--;
  }
  free(all);
  return 0;
}

void
mp_pool_insights_release(mp_pool_insights *in)
{
  if (!in)
    return;
  free(in->workers);
  memset(in, 0, sizeof *in);
}

/* a row after its first column: starts, times, tasks, jobs, busy % */
#define ROW_TAIL " %6d %8.3fs %8.3fs %8.3fs %8.3fs %8.3fs %8lld %9lld %6.1f%%\n"

static double
pct(double part, double whole)
{
  return whole > 0 ? 100.0 * part / whole : 0.0;
}

int
mp_pool_insights_print(mp_pool *p, FILE *f)
{
  mp_pool_insights in;
  int rc = mp_pool_insights_get(p, &in);
  if (rc)
    return rc;
  if (!f)
    f = stdout;
  mp_pool_worker_insights tot = {.id = -1};
  fprintf(f, "Pool insights (%d workers)\n", in.nworkers);
  fprintf(f, "%6s %6s %9s %9s %9s %9s %9s %8s %9s %7s\n", "worker", "starts",
          "startup", "init", "waiting", "working", "exit", "tasks", "jobs",
          "busy");
  for (int k = 0; k < in.nworkers; k++) {
    mp_pool_worker_insights *w = &in.workers[k];
    fprintf(f, "%6d" ROW_TAIL, w->id, w->starts, w->startup, w->init,
            w->waiting, w->working, w->exiting, w->tasks, w->jobs,
            pct(w->working, w->working + w->waiting));
    tot.starts += w->starts;
    tot.startup += w->startup;
    tot.init += w->init;
    tot.waiting += w->waiting;
    tot.working += w->working;
    tot.exiting += w->exiting;
    tot.tasks += w->tasks;
    tot.jobs += w->jobs;
  }
  fprintf(f, "%6s" ROW_TAIL, "total", tot.starts, tot.startup, tot.init,
          tot.waiting, tot.working, tot.exiting, tot.tasks, tot.jobs,
          pct(tot.working, tot.working + tot.waiting));
  if (tot.tasks > 0)
    fprintf(f, "mean task time: %.6f s\n",
            tot.working / (double)tot.tasks);
  if (in.nslowest > 0) {
    fprintf(f, "slowest tasks:\n");
    for (int i = 0; i < in.nslowest; i++)
      fprintf(f, "  %d. %.6f s  worker %d  item %zu  args %s\n", i + 1,
              in.slowest[i].seconds, in.slowest[i].worker,
              in.slowest[i].index, in.slowest[i].args);
  }
  mp_pool_insights_release(&in);
  return ferror(f) ? MP_EPIPE : 0;
}
