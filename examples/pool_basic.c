/* SPDX-License-Identifier: MIT */
/* The seeds' "Using a pool of workers" example:
 *
 *   def f(x):
 *       return x*x
 *
 *   with Pool(processes=4) as pool:
 *       print(pool.map(f, range(10)))
 *       for i in pool.imap_unordered(f, range(10)):
 *           print(i)
 *       res = pool.apply_async(f, (20,))
 *       print(res.get(timeout=1))
 *       res = pool.apply_async(os.getpid, ())
 *       print(res.get(timeout=1))
 *       multiple_results = [pool.apply_async(os.getpid, ()) for i in range(4)]
 *       print([res.get(timeout=1) for res in multiple_results])
 *       res = pool.apply_async(time.sleep, (10,))
 *       try:
 *           print(res.get(timeout=1))
 *       except TimeoutError:
 *           print("We lacked patience and got a multiprocessing.TimeoutError")
 *       print("For the moment, the pool remains available for more work")
 *   print("Now the pool is closed and no longer available")
 *
 * Leaving Python's `with` block terminates the pool: mp_pool_free does.
 * Usage: pool_basic [fork|spawn|forkserver|threading]  (default: the
 * platform default) */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

static int
f(mp_obj *args, mp_obj **result)
{
  int64_t x;
  int rc = mp_args_parse(args, "L:f", &x);
  if (rc)
    return rc;
  *result = mp_int_new(x * x);
  return *result ? 0 : MP_ENOMEM;
}

static int
getpid_task(mp_obj *args, mp_obj **result)
{
  (void)args;
  *result = mp_int_new(getpid());
  return *result ? 0 : MP_ENOMEM;
}

static int
sleep_task(mp_obj *args, mp_obj **result)
{
  double s;
  int rc = mp_args_parse(args, "d:sleep", &s);
  if (rc)
    return rc;
  struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
  *result = NULL; /* None */
  return 0;
}

static int
fail(const char *what, int rc)
{
  fprintf(stderr, "pool_basic: %s: %s: %s\n", what, mp_strerror(rc),
          mp_errdetail());
  return 1;
}

/* Print one result as Python's print() would (str and a newline). */
static void
print_obj(const mp_obj *o)
{
  mp_obj_print(o, stdout);
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  int rc;
  if (argc > 1 && (rc = mp_get_context(argv[1], &ctx)) != 0)
    return fail("context", rc);
  mp_pool *pool;
  if ((rc = mp_pool_new(&pool, &(mp_pool_opts){.processes = 4,
                                                .context = ctx})) != 0)
    return fail("Pool", rc);

  mp_obj *range = mp_list_new();
  for (int i = 0; i < 10; i++)
    mp_list_append_take(range, mp_int_new(i));

  mp_obj *squares;
  if ((rc = mp_pool_map(pool, f, range, NULL, &squares)) != 0)
    return fail("map", rc);
  print_obj(squares);
  mp_obj_free(squares);

  mp_imap *it;
  if ((rc = mp_pool_imap_unordered(pool, f, range, NULL, &it)) != 0)
    return fail("imap_unordered", rc);
  mp_obj *i;
  while ((rc = mp_imap_next(it, &i, MP_FOREVER)) == 0) {
    print_obj(i);
    mp_obj_free(i);
  }
  mp_imap_free(it);
  if (rc != MP_EEOF)
    return fail("imap_unordered next", rc);

  mp_result *res;
  mp_obj *v, *args = MP_TUPLE(mp_int_new(20));
  if ((rc = mp_pool_apply_async(pool, f, args, NULL, &res)) != 0
      || (rc = mp_result_get(res, &v, 1)) != 0)
    return fail("apply_async(f, (20,))", rc);
  print_obj(v);
  mp_obj_free(v);
  mp_result_free(res);
  mp_obj_free(args);

  mp_obj *empty = mp_tuple_take(0);
  if ((rc = mp_pool_apply_async(pool, getpid_task, empty, NULL, &res)) != 0
      || (rc = mp_result_get(res, &v, 1)) != 0)
    return fail("apply_async(os.getpid, ())", rc);
  print_obj(v);
  mp_obj_free(v);
  mp_result_free(res);

  mp_result *multiple[4];
  for (int k = 0; k < 4; k++)
    if ((rc = mp_pool_apply_async(pool, getpid_task, empty, NULL,
                                  &multiple[k])) != 0)
      return fail("apply_async", rc);
  mp_obj *pids = mp_list_new();
  for (int k = 0; k < 4; k++) {
    if ((rc = mp_result_get(multiple[k], &v, 1)) != 0)
      return fail("get", rc);
    mp_list_append_take(pids, v);
    mp_result_free(multiple[k]);
  }
  print_obj(pids);
  mp_obj_free(pids);
  mp_obj_free(empty);

  args = MP_TUPLE(mp_int_new(10));
  if ((rc = mp_pool_apply_async(pool, sleep_task, args, NULL, &res)) != 0)
    return fail("apply_async(time.sleep, (10,))", rc);
  rc = mp_result_get(res, &v, 1);
  if (rc == 0) {
    print_obj(v);
    mp_obj_free(v);
  } else if (rc == MP_ETIMEDOUT) {
    puts("We lacked patience and got a multiprocessing.TimeoutError");
  } else {
    return fail("get", rc);
  }
  mp_obj_free(args);
  puts("For the moment, the pool remains available for more work");
  fflush(stdout);

  /* the end of Python's `with` block: terminate */
  mp_result_free(res);
  mp_pool_free(pool);
  mp_obj_free(range);
  puts("Now the pool is closed and no longer available");
  return 0;
}
