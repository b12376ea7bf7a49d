/* SPDX-License-Identifier: MIT */
/* The seeds' worker example: queues feed (func, args) tasks to four worker
 * processes and collect their results.
 *
 *   def worker(input, output):
 *       for func, args in iter(input.get, 'STOP'):
 *           result = calculate(func, args)
 *           output.put(result)
 *
 *   def calculate(func, args):
 *       result = func(*args)
 *       return '%s says that %s%s = %s' % \
 *           (current_process().name, func.__name__, args, result)
 *
 *   def mul(a, b):
 *       time.sleep(0.5*random.random())
 *       return a * b
 *
 *   def plus(a, b):
 *       time.sleep(0.5*random.random())
 *       return a + b
 *
 *   def test():
 *       NUMBER_OF_PROCESSES = 4
 *       TASKS1 = [(mul, (i, 7)) for i in range(20)]
 *       TASKS2 = [(plus, (i, 8)) for i in range(10)]
 *       task_queue = Queue()
 *       done_queue = Queue()
 *       for task in TASKS1:
 *           task_queue.put(task)
 *       for i in range(NUMBER_OF_PROCESSES):
 *           Process(target=worker, args=(task_queue, done_queue)).start()
 *       print('Unordered results:')
 *       for i in range(len(TASKS1)):
 *           print('\t', done_queue.get())
 *       for task in TASKS2:
 *           task_queue.put(task)
 *       for i in range(len(TASKS2)):
 *           print('\t', done_queue.get())
 *       for i in range(NUMBER_OF_PROCESSES):
 *           task_queue.put('STOP')
 *
 * The functions travel inside the items as function values (MP_FUNC), under
 * every start method.  The random sleep is scaled down to 0-50 ms.
 *
 * Usage: queue_workers [fork|spawn|forkserver|threading] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

enum { NUMBER_OF_PROCESSES = 4, NTASKS1 = 20, NTASKS2 = 10 };

/* rand_r state per worker (threading workers share one process) */
static _Thread_local unsigned seed;

static void
nap(void)
{
  long ns = (long)(0.05 * 1e9 * (rand_r(&seed) / (RAND_MAX + 1.0)));
  nanosleep(&(struct timespec){0, ns}, NULL);
}

static int
mul(int a, int b)
{
  nap();
  return a * b;
}

static int
plus(int a, int b)
{
  nap();
  return a + b;
}

/* func.__name__: the function value's repr is "<function NAME>" */
static void
func_name(const mp_obj *func, char *buf, size_t cap)
{
  char *r = mp_obj_repr(func);
  const char *p = r ? r : "?";
  if (strncmp(p, "<function ", 10) == 0)
    p += 10;
  snprintf(buf, cap, "%s", p);
  size_t n = strlen(buf);
  if (n && buf[n - 1] == '>')
    buf[n - 1] = '\0';
  mp_free(r);
}

/* '%s says that %s%s = %s' % (current_process().name, func.__name__, args,
 * result); NULL on a malformed task */
static mp_obj *
calculate(const mp_obj *task)
{
  mp_fn fn;
  mp_obj *args;
  int a, b;
  if (mp_args_parse(task, "FO:calculate", &fn, &args) ||
      mp_args_parse(args, "ii:func", &a, &b))
    return NULL;
  int result = ((int (*)(int, int))fn)(a, b);
  char name[256];
  func_name(mp_seq_item(task, 0), name, sizeof name);
  char *args_repr = mp_obj_repr(args);
  mp_obj *s = mp_str_printf("%s says that %s%s = %d",
                            mp_process_name(mp_current_process()), name,
                            args_repr ? args_repr : "?", result);
  mp_free(args_repr);
  return s;
}

static int
is_stop(const mp_obj *o)
{
  const char *s;
  size_t len;
  return mp_str_get(o, &s, &len) == 0 && strcmp(s, "STOP") == 0;
}

static int
worker(mp_obj *args)
{
  mp_queue *input, *output;
  if (mp_args_parse(args, "{Queue}{Queue}:worker", &input, &output)) {
    fprintf(stderr, "worker: %s\n", mp_errdetail());
    return 1;
  }
  seed = (unsigned)time(NULL) ^ (unsigned)getpid() * 2654435761u ^
         (unsigned)(uintptr_t)&seed;
  for (;;) {
    mp_obj *task;
    int rc = mp_queue_get(input, &task, MP_FOREVER);
    if (rc) {
      fprintf(stderr, "worker: get: %s: %s\n", mp_strerror(rc),
              mp_errdetail());
      return 1;
    }
    if (is_stop(task)) {
      mp_obj_free(task);
      return 0;
    }
    mp_obj *result = calculate(task);
    mp_obj_free(task);
    if (!result) {
      fprintf(stderr, "worker: bad task: %s\n", mp_errdetail());
      return 1;
    }
    rc = mp_queue_put(output, result, MP_FOREVER);
    mp_obj_free(result);
    if (rc) {
      fprintf(stderr, "worker: put: %s: %s\n", mp_strerror(rc),
              mp_errdetail());
      return 1;
    }
  }
}

static int
put_task(mp_queue *q, int (*func)(int, int), int a, int b)
{
  mp_obj *task = MP_TUPLE(MP_FUNC(func), MP_TUPLE(mp_int_new(a),
                                                  mp_int_new(b)));
  int rc = task ? mp_queue_put(q, task, MP_FOREVER) : MP_ENOMEM;
  mp_obj_free(task);
  return rc;
}

static int
print_results(mp_queue *done_queue, int n)
{
  for (int i = 0; i < n; i++) {
    mp_obj *r;
    const char *s;
    size_t len;
    int rc = mp_queue_get(done_queue, &r, MP_FOREVER);
    if (rc)
      return rc;
    if (mp_str_get(r, &s, &len) == 0)
      printf("\t %s\n", s); /* print('\t', x): the two joined by a space */
    mp_obj_free(r);
  }
  return 0;
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
  mp_queue *task_queue = NULL, *done_queue = NULL;
  mp_process *ps[NUMBER_OF_PROCESSES] = {0};
  int started = 0;
  if ((rc = mp_queue_new(&task_queue, NULL)) != 0 ||
      (rc = mp_queue_new(&done_queue, NULL)) != 0)
    goto out;

  /* submit tasks */
  for (int i = 0; i < NTASKS1 && !rc; i++)
    rc = put_task(task_queue, mul, i, 7);
  if (rc)
    goto out;

  /* start worker processes */
  for (; started < NUMBER_OF_PROCESSES; started++) {
    mp_obj *args = MP_TUPLE(mp_queue_obj(task_queue), mp_queue_obj(done_queue));
    rc = mp_process_new(&ps[started], ctx,
                        &(mp_process_opts){.target = worker, .args = args});
    mp_obj_free(args);
    if (rc || (rc = mp_process_start(ps[started])) != 0)
      goto out;
  }

  /* get and print results */
  printf("Unordered results:\n");
  if ((rc = print_results(done_queue, NTASKS1)) != 0)
    goto out;

  /* add more tasks using put() */
  for (int i = 0; i < NTASKS2 && !rc; i++)
    rc = put_task(task_queue, plus, i, 8);
  if (rc || (rc = print_results(done_queue, NTASKS2)) != 0)
    goto out;

out:
  /* tell child processes to stop (Python joins them at exit) */
  for (int i = 0; i < started; i++) {
    mp_obj *stop = mp_str_new("STOP");
    int r = mp_queue_put(task_queue, stop, MP_FOREVER);
    mp_obj_free(stop);
    if (r && !rc)
      rc = r;
  }
  for (int i = 0; i < started; i++) {
    int code = 0;
    mp_process_join(ps[i], MP_FOREVER);
    if (mp_process_exitcode(ps[i], &code) == 0 && code != 0 && !rc)
      rc = MP_ESTATE;
  }
  for (int i = 0; i < NUMBER_OF_PROCESSES; i++)
    mp_process_free(ps[i]);
  if (rc)
    fprintf(stderr, "queue_workers: %s: %s\n", mp_strerror(rc),
            mp_errdetail());
  mp_queue_free(task_queue);
  mp_queue_free(done_queue);
  return rc ? 1 : 0;
}
