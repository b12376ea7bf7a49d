/* SPDX-License-Identifier: MIT */
/* A started process lets go of its args (issue 8, item 10): as Python's
 * start() drops target and args, the parent's copy of the args -- and so
 * the descriptors their handles hold -- goes once the child has its own:
 * after the fork, once a spawn or forkserver child's instructions are sent,
 * and when a threading child ends. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "proc/proc_internal.h"

static const char *const methods[] = {"fork", "spawn", "forkserver",
                                      "threading", NULL};

/* The seeds' foo(w): ten (i, name) messages.  It does not close w: the end
 * closes with the child (and, under threading, with the args it drops). */
static int
foo(mp_obj *args)
{
  mp_conn *w = mp_conn_from_obj(mp_seq_item(args, 0));
  if (!w)
    return 2;
  for (int i = 0; i < 10; i++) {
    mp_obj *msg = MP_TUPLE(mp_int_new(i),
                           mp_str_new(mp_process_name(mp_current_process())));
    int rc = mp_conn_send(w, msg);
    mp_obj_free(msg);
    if (rc)
      return 3;
  }
  return 0;
}

/* The seeds' connection.wait() example, with the writer ends freed (not
 * closed) after start: a process that kept its args would keep each writer
 * open and wait() would never see the readers' end. */
static void
wait_example(const char *method)
{
  enum { N = 4 };
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context(method, &ctx));
  mp_conn *readers[N];
  mp_process *procs[N];
  for (int i = 0; i < N; i++) {
    mp_conn *w;
    MP_ASSERT_OK(mp_pipe(&readers[i], &w, 0));
    mp_obj *args = MP_TUPLE(mp_conn_obj(w));
    MP_ASSERT_OK(mp_process_new(&procs[i], ctx,
                                &(mp_process_opts){.target = foo,
                                                   .args = args}));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_process_start(procs[i]));
    mp_conn_free(w); /* what a newcomer writes for Python's w.close() */
  }
  int got[N] = {0}, open = N;
  while (open > 0) {
    mp_waitable items[N];
    int idx[N], n = 0;
    for (int i = 0; i < N; i++)
      if (readers[i]) {
        idx[n] = i;
        items[n++] = MP_WAITABLE_CONN(readers[i]);
      }
    /* A generous bound turns the old hang into a failure. */
    int rc = mp_wait(items, (size_t)n, 60);
    if (rc == MP_ETIMEDOUT)
      fail_msg("%s: wait() never saw the end of %d reader(s): a writer is "
               "still held in the parent", method, open);
    assert_true(rc > 0);
    for (int k = 0; k < n; k++) {
      if (!items[k].ready)
        continue;
      int i = idx[k];
      mp_obj *msg;
      rc = mp_conn_recv(readers[i], &msg, 0);
      if (rc == MP_EEOF) {
        mp_conn_free(readers[i]);
        readers[i] = NULL;
        open--;
        continue;
      }
      MP_ASSERT_OK(rc);
      int64_t v;
      MP_ASSERT_OK(mp_int_get(mp_seq_item(msg, 0), &v));
      assert_int_equal(v, got[i]++);
      const char *name;
      size_t len;
      MP_ASSERT_OK(mp_str_get(mp_seq_item(msg, 1), &name, &len));
      assert_string_equal(name, mp_process_name(procs[i]));
      mp_obj_free(msg);
    }
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(got[i], 10);
    MP_ASSERT_OK(mp_process_join(procs[i], 60));
    int code;
    MP_ASSERT_OK(mp_process_exitcode(procs[i], &code));
    assert_int_equal(code, 0);
    mp_process_free(procs[i]);
  }
}

static void
test_wait_example_writers_freed(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++)
    wait_example(methods[i]);
  mp__forkserver_stop();
}

/* Sends "hi" on the connection in args once told to on the other one. */
static int
hi_when_told(mp_obj *args)
{
  mp_conn *w = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_conn *go = mp_conn_from_obj(mp_seq_item(args, 1));
  mp_obj *o;
  if (!w || !go || mp_conn_recv(go, &o, 60))
    return 2;
  mp_obj_free(o);
  o = mp_str_new("hi");
  int rc = mp_conn_send(w, o);
  mp_obj_free(o);
  return rc ? 3 : 0;
}

/* Is `fd` (once the file with inode `ino`) closed here? */
static int
fd_closed(int fd, ino_t ino)
{
  struct stat st;
  if (fstat(fd, &st) != 0)
    return errno == EBADF;
  return st.st_ino != ino; /* the number was reused: ours is gone */
}

/* An end passed in args (the caller's reference dropped before start) is
 * closed in the parent as soon as start returns, while the child still
 * uses its own copy; under threading, once the child ended. */
static void
test_arg_fd_closed_after_start(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    int threading = strcmp(methods[i], "threading") == 0;
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_conn *r, *w, *go_r, *go_w;
    MP_ASSERT_OK(mp_pipe(&r, &w, 0));
    MP_ASSERT_OK(mp_pipe(&go_r, &go_w, 0));
    int wfd = mp_conn_fileno(w);
    struct stat st;
    assert_int_equal(fstat(wfd, &st), 0);
    mp_obj *args = MP_TUPLE(mp_conn_obj(w), mp_conn_obj(go_r));
    mp_conn_free(w);
    mp_conn_free(go_r);
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = hi_when_told,
                                             .args = args}));
    mp_obj_free(args); /* the process holds the only references now */
    assert_false(fd_closed(wfd, st.st_ino));
    MP_ASSERT_OK(mp_process_start(p));
    if (!threading && !fd_closed(wfd, st.st_ino))
      fail_msg("%s: the parent still holds the descriptor of its args after "
               "start", methods[i]);
    if (threading)
      assert_false(fd_closed(wfd, st.st_ino)); /* the thread uses it */
    /* The child's copy works, and is the only one: EOF when it ends. */
    mp_obj *o = mp_none();
    MP_ASSERT_OK(mp_conn_send(go_w, o));
    mp_obj_free(o);
    MP_ASSERT_OK(mp_conn_recv(r, &o, 60));
    const char *s;
    size_t len;
    MP_ASSERT_OK(mp_str_get(o, &s, &len));
    assert_string_equal(s, "hi");
    mp_obj_free(o);
    MP_ASSERT_ERR(mp_conn_recv(r, &o, 60), MP_EEOF);
    MP_ASSERT_OK(mp_process_join(p, 60));
    int code;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    if (!fd_closed(wfd, st.st_ino))
      fail_msg("%s: the args' descriptor outlived the child", methods[i]);
    mp_process_free(p);
    mp_conn_free(r);
    mp_conn_free(go_w);
  }
  mp__forkserver_stop();
}

/* A start that fails keeps the args: the process can be started again and
 * its child gets them.  (The first spawn execs a file that is not a
 * program.) */
static int
exit_with_arg(mp_obj *args)
{
  int64_t v = -1;
  mp_int_get(mp_seq_item(args, 0), &v);
  return (int)v;
}

static void
test_failed_start_keeps_args(void **state)
{
  (void)state;
  char bogus[] = "/tmp/mproc-not-a-program-XXXXXX";
  int fd = mkstemp(bogus);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "\x7f\x01garbage", 9), 9);
  assert_int_equal(fchmod(fd, 0700), 0);
  close(fd);
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context("spawn", &ctx));
  mp_obj *args = MP_TUPLE(mp_int_new(7));
  mp_process *p;
  MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                           .target = exit_with_arg,
                                           .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_set_executable(bogus));
  int rc = mp_process_start(p);
  MP_ASSERT_OK(mp_set_executable(NULL));
  unlink(bogus);
  assert_true(rc < 0);
  MP_ASSERT_OK(mp_process_start(p));
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 7);
  mp_process_free(p);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_wait_example_writers_freed),
    cmocka_unit_test(test_arg_fd_closed_after_start),
    cmocka_unit_test(test_failed_start_keeps_args),
};

MP_TEST_MAIN(tests)
