/* SPDX-License-Identifier: MIT */
/* Function values across processes: the seeds' worker task
 * (mul, (i, 7)) = MP_TUPLE(MP_FUNC(mul), MP_TUPLE(i, 7)) reaches a child
 * under fork, spawn, forkserver and threading -- in its args and through a
 * Pipe -- and through a TCP Listener/Client between two mproc processes;
 * the child calls it and sends back the result and functions of its own.
 * A program of another build refuses our functions (and we its) with
 * MP_EBADREF; a function of a library the child has not loaded is loaded
 * from the parent's instructions, never from a peer's message. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "proc/proc_internal.h"

#define AUTHKEY "funcs"

int mul(int a, int b);
int
mul(int a, int b)
{
  return a * b;
}

static int
add_static(int a, int b)
{
  return a + b;
}

/* A (func, (a, b)) task: the result, or INT32_MIN if it is not one. */
static int64_t
call_task(const mp_obj *task)
{
  int (*f)(int, int) = (int (*)(int, int))mp_func_get(mp_seq_item(task, 0));
  mp_obj *args = mp_seq_item(task, 1);
  int64_t a, b;
  if (!f || mp_int_get(mp_seq_item(args, 0), &a) ||
      mp_int_get(mp_seq_item(args, 1), &b))
    return INT32_MIN;
  return f((int)a, (int)b);
}

/* Serve tasks from c until None: send each result back. */
static int
serve(mp_conn *c)
{
  for (;;) {
    mp_obj *task;
    int rc = mp_conn_recv(c, &task, 60);
    if (rc)
      return 10;
    if (mp_obj_type(task) == MP_T_NONE) {
      mp_obj_free(task);
      return 0;
    }
    mp_obj *r = mp_int_new(call_task(task));
    mp_obj_free(task);
    rc = mp_conn_send(c, r);
    mp_obj_free(r);
    if (rc)
      return 11;
  }
}

/* args: (conn, task).  Sends (result of task, its repr, a function of
 * ours, {function: name}), then serves tasks from the pipe. */
static int
t_worker(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *task = mp_seq_item(args, 1);
  if (!c || !task)
    return 2;
  char *r = mp_obj_repr(task);
  mp_obj *reply = MP_TUPLE(mp_int_new(call_task(task)), mp_str_new(r),
                           MP_FUNC(add_static),
                           MP_DICT(MP_FUNC(mul), mp_str_new("mul")));
  mp_free(r);
  int rc = mp_conn_send(c, reply);
  mp_obj_free(reply);
  if (rc)
    return 3;
  return serve(c);
}

/* Round-trips n tasks through c (the peer serves them). */
static void
drive(mp_conn *c, int n)
{
  for (int i = 0; i < n; i++) {
    mp_obj *task = MP_TUPLE(i % 2 ? MP_FUNC(mul) : MP_FUNC(add_static),
                            MP_TUPLE(mp_int_new(i), mp_int_new(7)));
    MP_ASSERT_OK(mp_conn_send(c, task));
    mp_obj_free(task);
    mp_obj *got;
    MP_ASSERT_OK(mp_conn_recv(c, &got, 60));
    int64_t v;
    MP_ASSERT_OK(mp_int_get(got, &v));
    assert_int_equal(v, i % 2 ? i * 7 : i + 7);
    mp_obj_free(got);
  }
  mp_obj *none = mp_none();
  MP_ASSERT_OK(mp_conn_send(c, none));
}

static void
join_ok(mp_process *p)
{
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code = -1000;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
}

static mp_process *
start(const char *method, mp_target_fn fn, mp_obj *args)
{
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context(method, &ctx));
  mp_process *p = NULL;
  assert_non_null(args);
  MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = fn,
                                                           .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  return p;
}

static void
test_pipe_and_args(void **state)
{
  const char *method = *state;
  mp_conn *parent, *child;
  MP_ASSERT_OK(mp_pipe(&parent, &child, 1));
  mp_process *p = start(method, t_worker,
                        MP_TUPLE(mp_conn_obj(child),
                                 MP_TUPLE(MP_FUNC(mul),
                                          MP_TUPLE(mp_int_new(3),
                                                   mp_int_new(7)))));
  mp_conn_free(child);
  mp_obj *reply;
  MP_ASSERT_OK(mp_conn_recv(parent, &reply, 60));
  int64_t v;
  MP_ASSERT_OK(mp_int_get(mp_seq_item(reply, 0), &v));
  assert_int_equal(v, 21);
  const char *s;
  size_t n;
  MP_ASSERT_OK(mp_str_get(mp_seq_item(reply, 1), &s, &n));
  assert_string_equal(s, "(<function mul>, (3, 7))");
  /* the child's functions are ours at our addresses */
  assert_ptr_equal(mp_func_get(mp_seq_item(reply, 2)), (mp_fn)add_static);
  mp_obj *key = MP_FUNC(mul);
  MP_ASSERT_OK(mp_str_get(mp_dict_get(mp_seq_item(reply, 3), key), &s, &n));
  assert_string_equal(s, "mul");
  mp_obj_free(key);
  mp_obj_free(reply);
  drive(parent, 20);
  join_ok(p);
  mp_conn_free(parent);
}

/* ---- TCP between two mproc processes -------------------------------------- */

static int
t_tcp_client(mp_obj *args)
{
  const char *address;
  size_t n;
  if (mp_str_get(mp_seq_item(args, 0), &address, &n))
    return 2;
  mp_conn *c;
  int rc = mp_client(&c, address,
                     &(mp_client_opts){.authkey = AUTHKEY,
                                       .authkey_len = strlen(AUTHKEY),
                                       .timeout = 60});
  if (rc)
    return 3;
  rc = serve(c);
  mp_conn_free(c);
  return rc;
}

static void
test_tcp(void **state)
{
  const char *method = *state;
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0",
                               &(mp_listener_opts){
                                   .authkey = AUTHKEY,
                                   .authkey_len = strlen(AUTHKEY)}));
  mp_process *p = start(method, t_tcp_client,
                        MP_TUPLE(mp_str_new(mp_listener_address(l))));
  mp_conn *c;
  MP_ASSERT_OK(mp_listener_accept(l, &c, 60));
  drive(c, 20);
  join_ok(p);
  mp_conn_free(c);
  mp_listener_free(l);
}

/* ---- a function of a library only the parent loaded ----------------------- */

static void
plugin_path(char *path, size_t cap)
{
  snprintf(path, cap, "%s/tests/libplugin_proctarget.so", mp_test_build_dir());
}

/* args: (function, conn): returns the function's result (7) after checking
 * what a function sent through the pipe gives. */
static int
t_call_plugin(mp_obj *args)
{
  int (*f)(void) = (int (*)(void))mp_func_get(mp_seq_item(args, 0));
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 1));
  if (!f || !c)
    return 2;
  int r = f();
  /* now loaded here (or inherited): the same function through the pipe
   * resolves too */
  mp_obj *v;
  int rc = mp_conn_recv(c, &v, 60);
  mp_obj *reply = rc ? mp_str_new(mp_err_name(rc))
                     : mp_int_new(((int (*)(void))mp_func_get(v))());
  mp_obj_free(v);
  rc = mp_conn_send(c, reply);
  mp_obj_free(reply);
  return rc ? 3 : r;
}

static void
test_plugin_in_args(void **state)
{
  const char *method = *state;
  char path[4096];
  plugin_path(path, sizeof path);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  mp_fn pf = (mp_fn)dlsym(h, "plugin_marker");
  assert_non_null(pf);
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  mp_process *p = start(method, t_call_plugin,
                        MP_TUPLE(mp_func_new(pf), mp_conn_obj(b)));
  mp_conn_free(b);
  mp_obj *fv = mp_func_new(pf);
  MP_ASSERT_OK(mp_conn_send(a, fv));
  mp_obj_free(fv);
  mp_obj *got;
  MP_ASSERT_OK(mp_conn_recv(a, &got, 60));
  int64_t v = 0;
  MP_ASSERT_OK(mp_int_get(got, &v));
  assert_int_equal(v, 7);
  mp_obj_free(got);
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 7);
  mp_process_free(p);
  mp_conn_free(a);
  dlclose(h);
}

/* args: (conn,): receives one value and replies with the error name of
 * the decode (a peer's message never loads a library). */
static int
t_recv_code(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *v = NULL;
  int rc = mp_conn_recv(c, &v, 60);
  mp_obj_free(v);
  mp_obj *reply = MP_TUPLE(mp_str_new(mp_err_name(rc)),
                           mp_str_new(rc ? mp_errdetail() : ""));
  rc = mp_conn_send(c, reply);
  mp_obj_free(reply);
  return rc ? 3 : 0;
}

static void
test_plugin_not_loaded_from_pipe(void **state)
{
  (void)state;
  char path[4096];
  plugin_path(path, sizeof path);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  mp_fn pf = (mp_fn)dlsym(h, "plugin_marker");
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  /* a spawn child has not loaded the plugin; the value arrives from a
   * peer, not in its instructions */
  mp_process *p = start("spawn", t_recv_code, MP_TUPLE(mp_conn_obj(b)));
  mp_conn_free(b);
  mp_obj *fv = mp_func_new(pf);
  MP_ASSERT_OK(mp_conn_send(a, fv));
  mp_obj_free(fv);
  mp_obj *got;
  MP_ASSERT_OK(mp_conn_recv(a, &got, 60));
  const char *s;
  size_t n;
  MP_ASSERT_OK(mp_str_get(mp_seq_item(got, 0), &s, &n));
  assert_string_equal(s, "MP_EBADREF");
  MP_ASSERT_OK(mp_str_get(mp_seq_item(got, 1), &s, &n));
  assert_non_null(strstr(s, "never loads"));
  mp_obj_free(got);
  join_ok(p);
  mp_conn_free(a);
  dlclose(h);
}

/* ---- another build -------------------------------------------------------- */

/* helper_funcpeer ADDRESS connects, replies to our function with the code
 * its decode gave, then sends one of its functions and a plain value. */
static void
test_other_build(void **state)
{
  (void)state;
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0",
                               &(mp_listener_opts){
                                   .authkey = AUTHKEY,
                                   .authkey_len = strlen(AUTHKEY)}));
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/helper_funcpeer", mp_test_build_dir());
  char *argv[] = {path, (char *)mp_listener_address(l), NULL};
  pid_t pid;
  assert_int_equal(posix_spawn(&pid, path, NULL, NULL, argv, environ), 0);
  mp_conn *c;
  MP_ASSERT_OK(mp_listener_accept(l, &c, 60));
  mp_obj *task = MP_TUPLE(MP_FUNC(mul), MP_TUPLE(mp_int_new(1), mp_int_new(7)));
  MP_ASSERT_OK(mp_conn_send(c, task));
  mp_obj_free(task);
  mp_obj *got;
  MP_ASSERT_OK(mp_conn_recv(c, &got, 60));
  const char *s;
  size_t n;
  MP_ASSERT_OK(mp_str_get(mp_seq_item(got, 0), &s, &n));
  assert_string_equal(s, "MP_EBADREF");
  MP_ASSERT_OK(mp_str_get(mp_seq_item(got, 1), &s, &n));
  assert_non_null(strstr(s, "not the same build"));
  mp_obj_free(got);
  /* its function is not ours */
  got = NULL;
  MP_ASSERT_ERR(mp_conn_recv(c, &got, 60), MP_EBADREF);
  assert_null(got);
  /* and the connection goes on */
  MP_ASSERT_OK(mp_conn_recv(c, &got, 60));
  MP_ASSERT_OK(mp_str_get(got, &s, &n));
  assert_string_equal(s, "done");
  mp_obj_free(got);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  mp_conn_free(c);
  mp_listener_free(l);
}

static void
test_zz_stop_forkserver(void **state)
{
  (void)state;
  mp__forkserver_stop();
}

#define PER_METHOD(fn)                                                       \
  {#fn "/fork", fn, NULL, NULL, (void *)"fork"},                             \
      {#fn "/spawn", fn, NULL, NULL, (void *)"spawn"},                       \
      {#fn "/forkserver", fn, NULL, NULL, (void *)"forkserver"},             \
      {#fn "/threading", fn, NULL, NULL, (void *)"threading"}

static const struct CMUnitTest tests[] = {
    PER_METHOD(test_pipe_and_args),
    PER_METHOD(test_tcp),
    PER_METHOD(test_plugin_in_args),
    cmocka_unit_test(test_plugin_not_loaded_from_pipe),
    cmocka_unit_test(test_other_build),
    cmocka_unit_test(test_zz_stop_forkserver),
};

MP_TEST_MAIN(tests)
