/* SPDX-License-Identifier: MIT */
/* A job of a pool made with a remote executor (mp_pool_opts.executor):
 * the worker thread hands it to the executor's run and turns what comes
 * back into the worker's ordinary result message, so the parent's side of
 * the pool cannot tell it from a local job. */
#include <stdio.h>
#include <string.h>

#include "pool/pool_internal.h"

MP_EXTERN int
mp_pool_job_args(int kind, mp_obj *payload, size_t i, mp_obj **args)
{
  if (!args || !payload)
    return mp_seterr(MP_EINVAL, "mp_pool_job_args: NULL argument");
  *args = NULL;
  if (kind == MP_POOL_JOB_APPLY) {
    if (i != 0)
      return mp_seterr(MP_EINDEX, "an apply job has one item");
    *args = mp_obj_ref(payload);
    return 0;
  }
  mp_obj *const *items;
  size_t n;
  if ((kind != MP_POOL_JOB_MAP && kind != MP_POOL_JOB_STARMAP) ||
      mp_seq_items(payload, &items, &n) != 0)
    return mp_seterr(MP_EINVAL, "mp_pool_job_args: kind %d with a payload "
                     "that is not a list of items", kind);
  if (i >= n)
    return mp_seterr(MP_EINDEX, "item %zu of a job of %zu", i, n);
  if (kind == MP_POOL_JOB_MAP)
    *args = mp_tuple_from(1, &items[i]);
  else if (mp_obj_type(items[i]) == MP_T_TUPLE)
    *args = mp_obj_ref(items[i]);
  else if (mp_obj_type(items[i]) == MP_T_LIST) {
    mp_obj *const *sub;
    size_t m;
    mp_seq_items(items[i], &sub, &m);
    *args = mp_tuple_from(m, sub);
  } else {
    return mp_seterr(MP_ETYPE, "starmap item is not a tuple or a list");
  }
  return *args ? 0 : mp_seterr(MP_ENOMEM, "out of memory building the "
                                          "arguments");
}

/* values: a list of n, None where failed; errors: every item failed with
 * `code` and `text` (a job-level failure of the executor). */
static mp_obj *
failed_all(uint64_t id, uint64_t uid, size_t n, int code, const char *text)
{
  mp_obj *values = mp_list_new(), *errors = mp_list_new();
  for (size_t i = 0; values && errors && i < n; i++) {
    mp_list_append_take(values, mp_none());
    mp_list_append_take(errors, mp_tuple_take(3, mp_int_new((int64_t)i),
                                              mp_int_new(code),
                                              mp_str_new(text)));
  }
  return mp_tuple_take(4, mp_uint_new(id), mp_uint_new(uid), values, errors);
}

mp_obj *
mp__exec_job(mp__wctx *wx, uint64_t id, uint64_t uid, mp_task_fn fn, int kind,
             mp_obj *payload, const char *name, int pslot, int64_t base,
             int64_t timeout_ns)
{
  size_t n = 1;
  if (kind != MP__TASK_APPLY && mp_obj_len(payload, &n) != 0)
    n = 0;
  int64_t t0 = wx->insights ? mp__now_ns() : 0;
  mp_obj *values = NULL, *errors = NULL;
  mp__errdetail_clear();
  int rc = wx->exec->run(wx->exec->ctx, wx->place, fn, kind, payload,
                         (double)timeout_ns / 1e9, &values, &errors);
  size_t got = 0;
  if (rc == 0 && (mp_obj_type(values) != MP_T_LIST ||
                  mp_obj_len(values, &got) != 0 || got != n ||
                  (errors && mp_obj_type(errors) != MP_T_LIST))) {
    rc = MP_EMALFORMED;
    mp_seterr(rc, "the executor returned %zu values for %zu items", got, n);
  }
  if (pslot || wx->insights) {
    char label[64];
    snprintf(label, sizeof label, "items %lld-%lld", (long long)base,
             (long long)base + (long long)n - 1);
    mp__wx_batch(wx, pslot, n, t0, id, base, label);
  }
  if (rc != 0) {
    mp_obj_free(values);
    mp_obj_free(errors);
    char text[MP__ERRDETAIL_CAP + 64];
    if (rc > 0)
      rc = MP_EINVAL;
    /* the executor's text names the remote worker; else ours */
    if (mp_errdetail()[0])
      snprintf(text, sizeof text, "%s", mp_errdetail());
    else
      snprintf(text, sizeof text, "%s: %s", name, mp_strerror(rc));
    return failed_all(id, uid, n, rc, text);
  }
  return mp_tuple_take(4, mp_uint_new(id), mp_uint_new(uid), values,
                       errors ? errors : mp_none());
}
