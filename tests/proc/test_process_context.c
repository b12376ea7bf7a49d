/* SPDX-License-Identifier: MIT */
/* A child knows how it was started (issue 8, item 11): in a child of the
 * default context mp_get_start_method(1) names the method that started it
 * (Python's spawn and forkserver children take their parent's start
 * method), and mp_process_context(mp_current_process()) is the context it
 * was started with -- under every start method.  A child's default method
 * is its parent's as it was at start, fixed or not. */
#define _GNU_SOURCE
#include <string.h>

#include "testutil.h"
#include "proc/proc_internal.h"

static const char *const methods[] = {"fork", "spawn", "forkserver",
                                      "threading", NULL};

static mp_obj *
str_or_none(const char *s)
{
  return s ? mp_str_new(s) : mp_none();
}

/* Send (get_start_method(1), method of the current process's context). */
static int
report(mp_obj *args)
{
  mp_conn *w = mp_conn_from_obj(mp_seq_item(args, 0));
  if (!w)
    return 2;
  mp_context *ctx = mp_process_context(mp_current_process());
  mp_obj *v = MP_TUPLE(str_or_none(mp_get_start_method(1)),
                       str_or_none(ctx ? mp_context_method(ctx) : NULL));
  int rc = mp_conn_send(w, v);
  mp_obj_free(v);
  return rc ? 3 : 0;
}

/* Start `report` in `ctx` and check what the child said. */
static void
check_child(const char *method, mp_context *ctx, const char *want_default)
{
  mp_conn *r, *w;
  MP_ASSERT_OK(mp_pipe(&r, &w, 0));
  mp_obj *args = MP_TUPLE(mp_conn_obj(w));
  mp_process *p;
  MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = report,
                                                           .args = args}));
  mp_obj_free(args);
  mp_context *want_ctx;
  MP_ASSERT_OK(mp_get_context(method, &want_ctx));
  mp_context *dflt;
  MP_ASSERT_OK(mp_get_context(NULL, &dflt));
  /* Before start: the context it was made with (NULL: the default). */
  assert_ptr_equal(mp_process_context(p), ctx == dflt ? NULL : ctx);
  MP_ASSERT_OK(mp_process_start(p));
  /* Once started, the parent's view names the method too. */
  assert_ptr_equal(mp_process_context(p), want_ctx);
  mp_obj *got;
  MP_ASSERT_OK(mp_conn_recv(r, &got, 60));
  mp_obj *sm = mp_seq_item(got, 0), *cm = mp_seq_item(got, 1);
  const char *s;
  size_t len;
  if (want_default) {
    if (mp_str_get(sm, &s, &len) != 0)
      fail_msg("%s child: mp_get_start_method(1) is None, want '%s'", method,
               want_default);
    assert_string_equal(s, want_default);
  } else {
    assert_true(mp_obj_type(sm) == MP_T_NONE);
  }
  if (mp_str_get(cm, &s, &len) != 0)
    fail_msg("%s child: mp_process_context(mp_current_process()) is NULL",
             method);
  assert_string_equal(s, method);
  mp_obj_free(got);
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  mp_conn_free(w);
  mp_conn_free(r);
}

static void
test_default_context_child(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    MP_ASSERT_OK(mp_set_start_method(methods[i], 1));
    check_child(methods[i], NULL, methods[i]);
    mp_context *dflt;
    MP_ASSERT_OK(mp_get_context(NULL, &dflt));
    check_child(methods[i], dflt, methods[i]);
  }
  MP_ASSERT_OK(mp_set_start_method(NULL, 1));
  mp__forkserver_stop();
}

static void
test_explicit_context_child(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    /* The parent's default unfixed: so is the child's. */
    MP_ASSERT_OK(mp_set_start_method(NULL, 1));
    check_child(methods[i], ctx, NULL);
    assert_null(mp_get_start_method(1)); /* starting did not fix it */
    /* Fixed to another method: the child has the same default. */
    const char *other = strcmp(methods[i], "fork") ? "fork" : "spawn";
    MP_ASSERT_OK(mp_set_start_method(other, 1));
    check_child(methods[i], ctx, other);
  }
  MP_ASSERT_OK(mp_set_start_method(NULL, 1));
  mp__forkserver_stop();
}

/* The main process was started by no context. */
static void
test_main_process(void **state)
{
  (void)state;
  assert_null(mp_process_context(mp_current_process()));
  assert_null(mp_parent_process());
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_main_process),
    cmocka_unit_test(test_default_context_child),
    cmocka_unit_test(test_explicit_context_child),
};

MP_TEST_MAIN(tests)
