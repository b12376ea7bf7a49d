/* SPDX-License-Identifier: MIT */
/* A JoinableQueue: worker processes take numbers, put their squares on a
 * results queue and mark each task done; the main process joins the queue,
 * which returns once every task put has been marked done.
 *
 *   def worker(tasks, results):
 *       for n in iter(tasks.get, None):
 *           results.put(n * n)
 *           tasks.task_done()
 *       tasks.task_done()                       # the None
 *
 *   if __name__ == '__main__':
 *       mp.set_start_method(sys.argv[1])
 *       tasks, results = mp.JoinableQueue(), mp.Queue()
 *       workers = [mp.Process(target=worker, args=(tasks, results))
 *                  for _ in range(3)]
 *       for w in workers:
 *           w.start()
 *       for n in range(10):
 *           tasks.put(n)
 *       tasks.join()
 *       print('all tasks done, results waiting:', results.qsize())
 *       print('squares:', sorted(results.get() for _ in range(10)))
 *       for w in workers:
 *           tasks.put(None)
 *       tasks.join()
 *       for w in workers:
 *           w.join()
 *       print('workers stopped:', [w.exitcode for w in workers])
 *       try:
 *           tasks.task_done()
 *       except ValueError as e:
 *           print(e)
 *
 * Usage: queue_join [fork|spawn|forkserver|threading] */
#include <stdio.h>
#include <stdlib.h>

#include <mproc.h>

enum { NWORKERS = 3, NTASKS = 10 };

static int
worker(mp_obj *args)
{
  mp_queue *tasks, *results;
  if (mp_args_parse(args, "{Queue}{Queue}:worker", &tasks, &results)) {
    fprintf(stderr, "worker: %s\n", mp_errdetail());
    return 1;
  }
  for (;;) {
    mp_obj *item;
    int64_t n;
    int rc = mp_queue_get(tasks, &item, MP_FOREVER);
    if (rc)
      return 1;
    int stop = mp_obj_type(item) == MP_T_NONE;
    if (!stop && (rc = mp_int_get(item, &n)) == 0) {
      mp_obj *sq = mp_int_new(n * n);
      rc = mp_queue_put(results, sq, MP_FOREVER);
      mp_obj_free(sq);
    }
    mp_obj_free(item);
    /* after the result is in its queue: join then means "results ready" */
    if (rc || (rc = mp_queue_task_done(tasks)) != 0) {
      fprintf(stderr, "worker: %s: %s\n", mp_strerror(rc), mp_errdetail());
      return 1;
    }
    if (stop)
      return 0;
  }
}

static int
cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int
put_obj(mp_queue *q, mp_obj *o)
{
  int rc = o ? mp_queue_put(q, o, MP_FOREVER) : MP_ENOMEM;
  mp_obj_free(o);
  return rc;
}

int
main(int argc, char **argv)
{
  mp_context *ctx;
  int rc = mp_get_context(argc > 1 ? argv[1] : NULL, &ctx);
  if (rc) {
    fprintf(stderr, "usage: %s [fork|spawn|forkserver|threading]\n", argv[0]);
    return 2;
  }
  mp_queue *tasks = NULL, *results = NULL;
  mp_process *ws[NWORKERS] = {0};
  int started = 0;
  if ((rc = mp_queue_new(&tasks, &(mp_queue_opts){.joinable = 1})) != 0 ||
      (rc = mp_queue_new(&results, NULL)) != 0)
    goto out;
  for (; started < NWORKERS; started++) {
    mp_obj *args = MP_TUPLE(mp_queue_obj(tasks), mp_queue_obj(results));
    rc = mp_process_new(&ws[started], ctx,
                        &(mp_process_opts){.target = worker, .args = args});
    mp_obj_free(args);
    if (rc || (rc = mp_process_start(ws[started])) != 0)
      goto out;
  }
  for (int n = 0; n < NTASKS && !rc; n++)
    rc = put_obj(tasks, mp_int_new(n));
  if (rc || (rc = mp_queue_join(tasks, MP_FOREVER)) != 0)
    goto out;
  printf("all tasks done, results waiting: %d\n", mp_queue_qsize(results));

  int64_t sq[NTASKS];
  for (int i = 0; i < NTASKS; i++) {
    mp_obj *r;
    if ((rc = mp_queue_get(results, &r, MP_FOREVER)) != 0)
      goto out;
    rc = mp_int_get(r, &sq[i]);
    mp_obj_free(r);
    if (rc)
      goto out;
  }
  qsort(sq, NTASKS, sizeof sq[0], cmp_i64);
  printf("squares: [");
  for (int i = 0; i < NTASKS; i++)
    printf("%s%lld", i ? ", " : "", (long long)sq[i]);
  printf("]\n");

out:
  for (int i = 0; i < started; i++) {
    int r = put_obj(tasks, mp_none());
    if (r && !rc)
      rc = r;
  }
  if (!rc)
    rc = mp_queue_join(tasks, MP_FOREVER);
  for (int i = 0; i < started; i++)
    mp_process_join(ws[i], MP_FOREVER);
  if (!rc) {
    printf("workers stopped: [");
    for (int i = 0; i < NWORKERS; i++) {
      int code = -1;
      mp_process_exitcode(ws[i], &code);
      printf("%s%d", i ? ", " : "", code);
    }
    printf("]\n");
    /* every task is done: one more task_done is Python's ValueError */
    if (mp_queue_task_done(tasks) == MP_ESTATE)
      printf("task_done() called too many times\n");
    else
      rc = MP_ESTATE;
  }
  for (int i = 0; i < NWORKERS; i++)
    mp_process_free(ws[i]);
  if (rc)
    fprintf(stderr, "queue_join: %s: %s\n", mp_strerror(rc), mp_errdetail());
  mp_queue_free(tasks);
  mp_queue_free(results);
  return rc ? 1 : 0;
}
