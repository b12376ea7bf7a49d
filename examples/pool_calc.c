/* SPDX-License-Identifier: MIT */
/* The seeds' Pool test() example (CPython's Doc/includes/mp_pool.py):
 *
 *   def calculate(func, args):
 *       result = func(*args)
 *       return '%s says that %s%s = %s' % (
 *           multiprocessing.current_process().name,
 *           func.__name__, args, result)
 *   def calculatestar(args):
 *       return calculate(*args)
 *   def mul(a, b):
 *       time.sleep(0.5 * random.random())
 *       return a * b
 *   def plus(a, b): ... a + b
 *   def f(x):
 *       return 1.0 / (x - 5.0)
 *
 *   with multiprocessing.Pool(4) as pool:
 *       TASKS = [(mul, (i, 7)) for i in range(10)] + \
 *               [(plus, (i, 8)) for i in range(10)]
 *       results = [pool.apply_async(calculate, t) for t in TASKS]
 *       imap_it = pool.imap(calculatestar, TASKS)
 *       imap_unordered_it = pool.imap_unordered(calculatestar, TASKS)
 *       ... print them, then pool.map(calculatestar, TASKS)
 *       ... error handling: f at x = 5 raises ZeroDivisionError from
 *           apply, map, list(imap) and IMapIterator.next()
 *       ... timeouts: res.get(0.02) and it.next(0.02) in loops that
 *           print '.' for each timeout
 *
 * Differences, all on purpose: the random sleeps are 0-50 ms instead of
 * 0-500 ms; f's division by zero is the code -EDOM ("float division by
 * zero" in its detail), the C stand-in for ZeroDivisionError; a C function
 * has no __name__, so calculate looks the name up in a small table.
 * Leaving Python's `with` block terminates the pool: mp_pool_free does.
 * Usage: pool_calc [fork|spawn|forkserver|threading]  (default: the
 * platform default) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

/* 0-50 ms, as time.sleep(0.05 * random.random()) */
static void
random_sleep(void)
{
  static _Thread_local unsigned seed;
  if (!seed)
    seed = (unsigned)getpid() ^ (unsigned)time(NULL) ^
           (unsigned)(uintptr_t)&seed;
  double s = 0.05 * ((double)rand_r(&seed) / ((double)RAND_MAX + 1));
  struct timespec ts = {0, (long)(s * 1e9)};
  nanosleep(&ts, NULL);
}

static int
mul(mp_obj *args, mp_obj **result)
{
  int64_t a, b;
  int rc = mp_args_parse(args, "LL:mul", &a, &b);
  if (rc)
    return rc;
  random_sleep();
  *result = mp_int_new(a * b);
  return *result ? 0 : MP_ENOMEM;
}

static int
plus(mp_obj *args, mp_obj **result)
{
  int64_t a, b;
  int rc = mp_args_parse(args, "LL:plus", &a, &b);
  if (rc)
    return rc;
  random_sleep();
  *result = mp_int_new(a + b);
  return *result ? 0 : MP_ENOMEM;
}

static int
f(mp_obj *args, mp_obj **result)
{
  double x;
  int rc = mp_args_parse(args, "d:f", &x);
  if (rc)
    return rc;
  if (x - 5.0 == 0.0)
    return mp_seterr(-EDOM, "float division by zero");
  *result = mp_float_new(1.0 / (x - 5.0));
  return *result ? 0 : MP_ENOMEM;
}

/* func.__name__ */
static const char *
func_name(mp_task_fn fn)
{
  return fn == mul ? "mul" : fn == plus ? "plus" : fn == f ? "f" : "?";
}

/* calculate(func, args): args is (func, args-tuple) */
static int
calculate(mp_obj *args, mp_obj **result)
{
  mp_fn fnv;
  mp_obj *fargs;
  int rc = mp_args_parse(args, "FO:calculate", &fnv, &fargs);
  if (rc)
    return rc;
  mp_task_fn fn = (mp_task_fn)fnv;
  mp_obj *value = NULL;
  if ((rc = fn(fargs, &value)) != 0)
    return rc;
  char *a = mp_obj_repr(fargs), *v = mp_obj_str(value);
  mp_obj_free(value);
  if (!a || !v) {
    free(a);
    free(v);
    return MP_ENOMEM;
  }
  char buf[512];
  snprintf(buf, sizeof buf, "%s says that %s%s = %s",
           mp_process_name(mp_current_process()), func_name(fn), a, v);
  free(a);
  free(v);
  *result = mp_str_new(buf);
  return *result ? 0 : MP_ENOMEM;
}

/* calculatestar(args): ((func, args),) */
static int
calculatestar(mp_obj *args, mp_obj **result)
{
  mp_obj *t;
  int rc = mp_args_parse(args, "O:calculatestar", &t);
  if (rc)
    return rc;
  return calculate(t, result);
}

static int
fail(const char *what, int rc)
{
  fflush(stdout);
  fprintf(stderr, "pool_calc: %s: %s: %s\n", what, mp_strerror(rc),
          mp_errdetail());
  exit(1);
}

/* print('\t', x) */
static void
print_tab(const mp_obj *x)
{
  fputs("\t ", stdout);
  mp_obj_print(x, stdout);
}

/* sys.stdout.write('\n\t%s' % x) */
static void
write_tab(const mp_obj *x)
{
  char *s = mp_obj_str(x);
  printf("\n\t%s", s ? s : "?");
  free(s);
}

/* Drain an iterator with print('\t', x) */
static void
print_all(mp_imap *it, const char *what)
{
  mp_obj *x;
  int rc;
  while ((rc = mp_imap_next(it, &x, MP_FOREVER)) == 0) {
    print_tab(x);
    mp_obj_free(x);
  }
  if (rc != MP_EEOF)
    fail(what, rc);
  mp_imap_free(it);
  puts("");
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  int rc;
  if (argc > 1 && (rc = mp_get_context(argv[1], &ctx)) != 0)
    return fail("context", rc);
  enum { PROCESSES = 4 };
  printf("Creating pool with %d processes\n\n", PROCESSES);
  fflush(stdout); /* before the workers start: a fork child inherits it */
  mp_pool *pool;
  if ((rc = mp_pool_new(&pool, &(mp_pool_opts){.processes = PROCESSES,
                                                .context = ctx})) != 0)
    return fail("Pool", rc);

  mp_obj *tasks = mp_list_new();
  for (int i = 0; i < 10; i++)
    mp_list_append_take(tasks, MP_TUPLE(MP_FUNC(mul),
                                        MP_TUPLE(mp_int_new(i),
                                                 mp_int_new(7))));
  for (int i = 0; i < 10; i++)
    mp_list_append_take(tasks, MP_TUPLE(MP_FUNC(plus),
                                        MP_TUPLE(mp_int_new(i),
                                                 mp_int_new(8))));
  size_t ntasks;
  mp_obj *const *task;
  if (!tasks || mp_seq_items(tasks, &task, &ntasks) != 0 || ntasks != 20)
    return fail("TASKS", MP_ENOMEM);

  mp_result *results[20];
  for (size_t k = 0; k < ntasks; k++)
    if ((rc = mp_pool_apply_async(pool, calculate, task[k], NULL,
                                  &results[k])) != 0)
      return fail("apply_async", rc);
  mp_imap *imap_it, *imap_unordered_it;
  if ((rc = mp_pool_imap(pool, calculatestar, tasks, NULL, &imap_it)) != 0)
    return fail("imap", rc);
  if ((rc = mp_pool_imap_unordered(pool, calculatestar, tasks, NULL,
                                   &imap_unordered_it)) != 0)
    return fail("imap_unordered", rc);

  puts("Ordered results using pool.apply_async():");
  for (size_t k = 0; k < ntasks; k++) {
    mp_obj *x;
    if ((rc = mp_result_get(results[k], &x, MP_FOREVER)) != 0)
      return fail("get", rc);
    print_tab(x);
    mp_obj_free(x);
    mp_result_free(results[k]);
  }
  puts("");

  puts("Ordered results using pool.imap():");
  print_all(imap_it, "imap next");
  puts("Unordered results using pool.imap_unordered():");
  print_all(imap_unordered_it, "imap_unordered next");

  puts("Ordered results using pool.map() --- will block till complete:");
  mp_obj *mapped;
  if ((rc = mp_pool_map(pool, calculatestar, tasks, NULL, &mapped)) != 0)
    return fail("map", rc);
  size_t nm;
  mp_obj *const *m;
  mp_seq_items(mapped, &m, &nm);
  for (size_t k = 0; k < nm; k++)
    print_tab(m[k]);
  mp_obj_free(mapped);
  puts("");

  /* Test error handling */
  puts("Testing error handling:");
  mp_obj *five = MP_TUPLE(mp_int_new(5)), *x = NULL;
  rc = mp_pool_apply(pool, f, five, &x);
  mp_obj_free(five);
  if (rc == -EDOM)
    puts("\tGot ZeroDivisionError as expected from pool.apply()");
  else
    return fail("expected ZeroDivisionError from apply", rc ? rc : MP_EINVAL);

  mp_obj *range = mp_list_new();
  for (int i = 0; i < 10; i++)
    mp_list_append_take(range, mp_int_new(i));
  rc = mp_pool_map(pool, f, range, NULL, &x);
  if (rc == -EDOM)
    puts("\tGot ZeroDivisionError as expected from pool.map()");
  else
    return fail("expected ZeroDivisionError from map", rc ? rc : MP_EINVAL);

  /* list(pool.imap(f, range(10))): stops at the first error */
  mp_imap *it;
  if ((rc = mp_pool_imap(pool, f, range, NULL, &it)) != 0)
    return fail("imap", rc);
  while ((rc = mp_imap_next(it, &x, MP_FOREVER)) == 0)
    mp_obj_free(x);
  mp_imap_free(it);
  if (rc == -EDOM)
    puts("\tGot ZeroDivisionError as expected from list(pool.imap())");
  else
    return fail("expected ZeroDivisionError from list(imap)", rc);

  if ((rc = mp_pool_imap(pool, f, range, NULL, &it)) != 0)
    return fail("imap", rc);
  int i;
  for (i = 0; i < 10; i++) {
    rc = mp_imap_next(it, &x, MP_FOREVER);
    if (rc == -EDOM) {
      if (i != 5)
        return fail("unexpected ZeroDivisionError", rc);
    } else if (rc == MP_EEOF) {
      break;
    } else if (rc != 0) {
      return fail("IMapIterator.next()", rc);
    } else {
      mp_obj_free(x);
      if (i == 5)
        return fail("expected ZeroDivisionError", MP_EINVAL);
    }
  }
  mp_imap_free(it);
  mp_obj_free(range);
  if (i != 10) /* Python's loop variable stays 9 after the loop */
    return fail("assert i == 9", MP_EINVAL);
  puts("\tGot ZeroDivisionError as expected from IMapIterator.next()");
  puts("");

  /* Testing timeouts */
  fputs("Testing ApplyResult.get() with timeout: ", stdout);
  mp_result *res;
  if ((rc = mp_pool_apply_async(pool, calculate, task[0], NULL, &res)) != 0)
    return fail("apply_async", rc);
  for (;;) {
    fflush(stdout);
    rc = mp_result_get(res, &x, 0.02);
    if (rc == 0) {
      write_tab(x);
      mp_obj_free(x);
      break;
    }
    if (rc != MP_ETIMEDOUT)
      return fail("get", rc);
    fputs(".", stdout);
  }
  mp_result_free(res);
  puts("");
  puts("");

  fputs("Testing IMapIterator.next() with timeout: ", stdout);
  if ((rc = mp_pool_imap(pool, calculatestar, tasks, NULL, &it)) != 0)
    return fail("imap", rc);
  for (;;) {
    fflush(stdout);
    rc = mp_imap_next(it, &x, 0.02);
    if (rc == 0) {
      write_tab(x);
      mp_obj_free(x);
    } else if (rc == MP_EEOF) {
      break;
    } else if (rc == MP_ETIMEDOUT) {
      fputs(".", stdout);
    } else {
      return fail("next", rc);
    }
  }
  mp_imap_free(it);
  puts("");
  puts("");
  fflush(stdout);

  /* the end of Python's `with` block: terminate */
  mp_pool_free(pool);
  mp_obj_free(tasks);
  return 0;
}
