/* SPDX-License-Identifier: MIT */
/* Runs one map with the progress bar on, for test_pool_progress.py:
 *   helper_progress METHOD KIND N CHUNKSIZE SLEEP_MS
 * KIND: map, starmap, map_async, starmap_async, imap, imap_unordered,
 * map_array (an element function over int64s; the bar counts elements).
 * Checks the results, prints "ok N" on stdout; the bar goes to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

static int
slow_square(mp_obj *args, mp_obj **result)
{
  int64_t x, ms;
  int rc = mp_args_parse(args, "LL:slow_square", &x, &ms);
  if (rc)
    return rc;
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
  *result = mp_int_new(x * x);
  return *result ? 0 : MP_ENOMEM;
}

/* map_array's element: in x, out x * x, after SLEEP_MS (shared: an int) */
static int
slow_square_elem(const void *in, void *out, const mp_obj *shared)
{
  int64_t x = *(const int64_t *)in, ms = 0;
  mp_int_get(shared, &ms);
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
  *(int64_t *)out = x * x;
  return 0;
}

/* map's items are 1-tuples: unpack them */
static int
slow_square1(mp_obj *args, mp_obj **result)
{
  return slow_square(mp_seq_item(args, 0), result);
}

static int
die(const char *what, int rc)
{
  fprintf(stderr, "helper_progress: %s: %s: %s\n", what, mp_strerror(rc),
          mp_errdetail());
  return 1;
}

int
main(int argc, char **argv)
{
  if (argc != 6)
    return die("usage: METHOD KIND N CHUNKSIZE SLEEP_MS", MP_EINVAL);
  mp_context *ctx;
  int rc = mp_get_context(argv[1], &ctx);
  if (rc)
    return die("context", rc);
  const char *kind = argv[2];
  long n = atol(argv[3]);
  mp_map_opts opts = {.chunksize = (size_t)atol(argv[4]), .progress = 1};
  long ms = atol(argv[5]);
  mp_pool *p;
  if ((rc = mp_pool_new(&p, &(mp_pool_opts){.processes = 2, .context = ctx})))
    return die("pool", rc);
  mp_obj *items = mp_list_new();
  for (long i = 0; i < n; i++)
    mp_list_append_take(items, MP_TUPLE(mp_int_new(i), mp_int_new(ms)));
  int star = strstr(kind, "starmap") != NULL;
  mp_task_fn fn = star ? slow_square : slow_square1;
  mp_obj *out = NULL;
  int64_t sum = 0;
  if (!strcmp(kind, "map") || !strcmp(kind, "starmap")) {
    rc = star ? mp_pool_starmap(p, fn, items, &opts, &out)
              : mp_pool_map(p, fn, items, &opts, &out);
  } else if (!strcmp(kind, "map_async") || !strcmp(kind, "starmap_async")) {
    mp_result *r;
    rc = star ? mp_pool_starmap_async(p, fn, items, &opts, &r)
              : mp_pool_map_async(p, fn, items, &opts, &r);
    if (!rc) {
      rc = mp_result_get(r, &out, MP_FOREVER);
      mp_result_free(r);
    }
  } else if (!strcmp(kind, "imap") || !strcmp(kind, "imap_unordered")) {
    mp_imap *it;
    rc = !strcmp(kind, "imap") ? mp_pool_imap(p, fn, items, &opts, &it)
                               : mp_pool_imap_unordered(p, fn, items, &opts,
                                                        &it);
    if (!rc) {
      out = mp_list_new();
      mp_obj *v;
      while ((rc = mp_imap_next(it, &v, MP_FOREVER)) == 0)
        mp_list_append_take(out, v);
      mp_imap_free(it);
      if (rc == MP_EEOF)
        rc = 0;
    }
  } else if (!strcmp(kind, "map_array")) {
    int64_t *xs = calloc((size_t)n + 1, sizeof *xs);
    int64_t *ys = calloc((size_t)n + 1, sizeof *ys);
    mp_obj *sleep_ms = mp_int_new(ms);
    for (long i = 0; xs && i < n; i++)
      xs[i] = i;
    rc = !xs || !ys || !sleep_ms
             ? MP_ENOMEM
             : mp_pool_map_array(p, slow_square_elem, xs, sizeof *xs, ys,
                                 sizeof *ys, (size_t)n, sleep_ms, &opts);
    out = mp_list_new();
    for (long i = 0; !rc && i < n; i++)
      mp_list_append_take(out, mp_int_new(ys[i]));
    mp_obj_free(sleep_ms);
    free(xs);
    free(ys);
  } else {
    return die("unknown kind", MP_EINVAL);
  }
  if (rc)
    return die(kind, rc);
  mp_obj *const *v;
  size_t len;
  mp_seq_items(out, &v, &len);
  for (size_t i = 0; i < len; i++) {
    int64_t x;
    if (mp_int_get(v[i], &x) == 0)
      sum += x;
  }
  int64_t want = 0;
  for (long i = 0; i < n; i++)
    want += (int64_t)i * i;
  mp_obj_free(out);
  mp_obj_free(items);
  mp_pool_close(p);
  mp_pool_join(p);
  mp_pool_free(p);
  if ((long)len != n || sum != want)
    return die("wrong results", MP_EINVAL);
  printf("ok %ld\n", n);
  return 0;
}
