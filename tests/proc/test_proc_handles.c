/* SPDX-License-Identifier: MIT */
/* Handles in args: Connections (the seeds' Pipe example) under every start
 * method, process sentinels in mp_wait, and a handle type that refuses a
 * kind of child (MP_ECONTEXT) through mp_spawning_context(). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "proc/proc_internal.h"

static const char *const methods[] = {"fork", "spawn", "forkserver",
                                      "threading", NULL};

/* The seeds' f(conn): conn.send([42, None, 'hello']); conn.close() */
static int
f(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  if (!c)
    return 2;
  mp_obj *v = MP_LIST(mp_int_new(42), mp_none(), mp_str_new("hello"));
  int rc = mp_conn_send(c, v);
  mp_obj_free(v);
  mp_conn_close(c);
  return rc ? 3 : 0;
}

/* Echo: receive one value on the connection and send it back. */
static int
echo(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *v;
  if (!c || mp_conn_recv(c, &v, MP_FOREVER))
    return 2;
  int rc = mp_conn_send(c, v);
  mp_obj_free(v);
  return rc ? 3 : 0;
}

static void
test_pipe_in_args(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    mp_conn *parent, *child;
    MP_ASSERT_OK(mp_pipe(&parent, &child, 1));
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_process *p;
    mp_obj *args = MP_TUPLE(mp_conn_obj(child));
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = f,
                                                             .args = args}));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_process_start(p));
    if (strcmp(methods[i], "threading") != 0)
      MP_ASSERT_OK(mp_conn_close(child)); /* the child has its own */
    mp_obj *got;
    MP_ASSERT_OK(mp_conn_recv(parent, &got, 30));
    char *r = mp_obj_repr(got);
    assert_string_equal(r, "[42, None, 'hello']");
    mp_free(r);
    mp_obj_free(got);
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    int code;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(p);
    mp_conn_free(child);
    mp_conn_free(parent);
  }
}

static void
test_echo_and_wait(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, 1));
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_process *p;
    mp_obj *args = MP_TUPLE(mp_conn_obj(b));
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = echo,
                                                             .args = args}));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_process_start(p));
    mp_waitable w[] = {MP_WAITABLE_FD(mp_process_sentinel(p))};
    assert_int_equal(mp_wait(w, 1, 0.05), 0); /* still waiting for us */
    mp_obj *v = MP_DICT(mp_str_new("k"), mp_bytes_new("v", 1));
    MP_ASSERT_OK(mp_conn_send(a, v));
    mp_obj *back;
    MP_ASSERT_OK(mp_conn_recv(a, &back, 30));
    assert_true(mp_obj_equal(v, back));
    mp_obj_free(v);
    mp_obj_free(back);
    assert_int_equal(mp_wait(w, 1, 30), 1);
    assert_int_equal(w[0].ready, 1);
    MP_ASSERT_OK(mp_process_join(p, 0));
    mp_process_free(p);
    mp_conn_free(a);
    mp_conn_free(b);
  }
}

/* A toy handle type that, like a lock of Python's fork context, cannot be
 * sent to spawn or forkserver children. */
struct toy {
  int fd;
};

static void
toy_release(void *ptr)
{
  struct toy *t = ptr;
  close(t->fd);
  free(t);
}

static int
toy_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int), void *ud)
{
  struct toy *t = ptr;
  mp_context *ctx = mp_spawning_context();
  if (ctx && strcmp(mp_context_method(ctx), "fork") != 0)
    return mp_seterr(MP_ECONTEXT, "a toy can only be inherited by fork");
  *state = mp_none();
  return add_fd(ud, t->fd);
}

static int
toy_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  struct toy *t = malloc(sizeof *t);
  if (!t || nfds != 1) {
    for (size_t i = 0; i < nfds; i++)
      close(fds[i]);
    free(t);
    return MP_EMALFORMED;
  }
  t->fd = fds[0];
  *out = t;
  return 0;
}

static const mp_handle_type toy_type = {"test.Toy", toy_release, toy_reduce,
                                        toy_rebuild};

static int
toy_target(mp_obj *args)
{
  struct toy *t = mp_handle_get(mp_seq_item(args, 0), &toy_type);
  return t && write(t->fd, "x", 1) == 1 ? 0 : 1;
}

static void
test_context_check(void **state)
{
  (void)state;
  MP_ASSERT_OK(mp_handle_register(&toy_type));
  int pfd[2];
  assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
  struct toy *t = malloc(sizeof *t);
  t->fd = pfd[1];
  mp_obj *args = MP_TUPLE(mp_handle_new(&toy_type, t));
  for (int i = 0; methods[i]; i++) {
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = toy_target,
                                             .args = args}));
    int rc = mp_process_start(p);
    if (!strcmp(methods[i], "spawn") || !strcmp(methods[i], "forkserver")) {
      MP_ASSERT_ERR(rc, MP_ECONTEXT);
      assert_non_null(strstr(mp_errdetail(), "only be inherited by fork"));
      assert_int_equal(mp_process_pid(p), 0);
    } else {
      MP_ASSERT_OK(rc);
      MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
      int code;
      MP_ASSERT_OK(mp_process_exitcode(p, &code));
      assert_int_equal(code, 0);
      char c;
      assert_int_equal(read(pfd[0], &c, 1), 1);
    }
    mp_process_free(p);
  }
  mp_obj_free(args);
  close(pfd[0]);
}

/* A handle type the parent registered at run time (no constructor): a
 * spawn or forkserver child knows it by reference, like the target. */
static int
pipe_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int), void *ud)
{
  *state = mp_str_new("w");
  return add_fd(ud, ((struct toy *)ptr)->fd);
}

static const mp_handle_type pipe_type = {"test.PipeEnd", toy_release,
                                         pipe_reduce, toy_rebuild};

static int
pipe_target(mp_obj *args)
{
  struct toy *t = mp_handle_get(mp_seq_item(args, 0), &pipe_type);
  return t && write(t->fd, "y", 1) == 1 ? 0 : 1;
}

static void
test_handle_type_by_reference(void **state)
{
  (void)state;
  MP_ASSERT_OK(mp_handle_register(&pipe_type));
  int pfd[2];
  assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
  struct toy *t = malloc(sizeof *t);
  t->fd = pfd[1];
  mp_obj *args = MP_TUPLE(mp_handle_new(&pipe_type, t));
  for (int i = 0; methods[i]; i++) {
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = pipe_target,
                                             .args = args}));
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    int code;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    char c;
    assert_int_equal(read(pfd[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    mp_process_free(p);
  }
  mp_obj_free(args);
  close(pfd[0]);
}

/* A handle type known to the child only from the args, where the handle
 * sits in the keyword arguments of a NEWOBJ_EX record: the collector of
 * handle types looks there too (the child cannot rebuild it otherwise). */
static const mp_handle_type kwpipe_type = {"test.KwPipeEnd", toy_release,
                                           pipe_reduce, toy_rebuild};

static int
kwpipe_target(mp_obj *args)
{
  mp_obj *kwargs = NULL;
  if (mp_record_kwargs(mp_seq_item(args, 0), &kwargs) || !kwargs)
    return 2;
  struct toy *t = mp_handle_get(mp_dict_get_str(kwargs, "end"), &kwpipe_type);
  return t && write(t->fd, "k", 1) == 1 ? 0 : 1;
}

static void
test_handle_type_in_newobj_ex_kwargs(void **state)
{
  MP_ASSERT_OK(mp_handle_register(&kwpipe_type));
  int pfd[2];
  assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
  struct toy *t = malloc(sizeof *t);
  t->fd = pfd[1];
  mp_obj *rec = mp_record_newobj_ex_take(
      mp_global_new("m", "K"), mp_tuple_take(0),
      mp_dict_take(1, mp_str_new("end"), mp_handle_new(&kwpipe_type, t)));
  assert_non_null(rec);
  mp_obj *args = MP_TUPLE(rec);
  for (int i = 0; methods[i]; i++) {
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = kwpipe_target,
                                             .args = args}));
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    int code;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    if (code != 0)
      fail_msg("%s child exited %d", methods[i], code);
    char c;
    assert_int_equal(read(pfd[0], &c, 1), 1);
    assert_int_equal(c, 'k');
    mp_process_free(p);
  }
  mp_obj_free(args);
  close(pfd[0]);
}

/* At most 247 descriptors travel in a child's args: more is MP_ELIMIT, and
 * nothing is started. */
static void
test_too_many_descriptors(void **state)
{
  (void)state;
  MP_ASSERT_OK(mp_handle_register(&pipe_type));
  int pfd[2];
  assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
  mp_obj *list = mp_list_new();
  for (int i = 0; i < 251; i++) {
    struct toy *t = malloc(sizeof *t);
    t->fd = fcntl(pfd[1], F_DUPFD_CLOEXEC, 3);
    assert_true(t->fd >= 0);
    MP_ASSERT_OK(mp_list_append_take(list, mp_handle_new(&pipe_type, t)));
  }
  mp_obj *args = MP_TUPLE(list);
  const char *ms[] = {"spawn", "forkserver"};
  for (int i = 0; i < 2; i++) {
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(ms[i], &ctx));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = pipe_target,
                                             .args = args}));
    MP_ASSERT_ERR(mp_process_start(p), MP_ELIMIT);
    assert_int_equal(mp_process_pid(p), 0);
    mp_process_free(p);
  }
  mp_obj_free(args);
  close(pfd[0]);
  close(pfd[1]);
  /* not a context of ours */
  mp_context *bogus = (mp_context *)&pfd;
  mp_process *p;
  MP_ASSERT_ERR(mp_process_new(&p, bogus, NULL), MP_EINVAL);
}

static void
test_zz_stop_forkserver(void **state)
{
  (void)state;
  mp__forkserver_stop();
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_pipe_in_args),
    cmocka_unit_test(test_echo_and_wait),
    cmocka_unit_test(test_context_check),
    cmocka_unit_test(test_handle_type_by_reference),
    cmocka_unit_test(test_handle_type_in_newobj_ex_kwargs),
    cmocka_unit_test(test_too_many_descriptors),
    cmocka_unit_test(test_zz_stop_forkserver),
};

MP_TEST_MAIN(tests)
