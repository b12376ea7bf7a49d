/* SPDX-License-Identifier: MIT */
/* Values over connections, and Connections inside values: sent over an
 * AF_UNIX connection (SCM_RIGHTS) and given to child processes under every
 * start method. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "proc/proc_internal.h"

static void
test_values_round_trip(void **state)
{
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  mp_obj *v = MP_LIST(mp_int_new(1), mp_str_new("hello"), mp_none(),
                      MP_DICT(mp_str_new("k"), mp_float_new(1.5)),
                      mp_global_new("builtins", "float"));
  MP_ASSERT_OK(mp_conn_send(a, v));
  mp_obj *r;
  MP_ASSERT_OK(mp_conn_recv(b, &r, 5));
  assert_true(mp_obj_equal(v, r));
  mp_obj_free(r);
  /* a message that is not a pickle: the codec's error, the connection
   * stays usable (the frame was consumed) */
  MP_ASSERT_OK(mp_conn_send_bytes(a, "garbage", 7));
  MP_ASSERT_ERR(mp_conn_recv(b, &r, 5), MP_EMALFORMED);
  MP_ASSERT_OK(mp_conn_send(a, v));
  MP_ASSERT_OK(mp_conn_recv(b, &r, 5));
  assert_true(mp_obj_equal(v, r));
  mp_obj_free(r);
  /* recv_bytes sees the pickle CPython would read (protocol 4) */
  MP_ASSERT_OK(mp_conn_send(a, v));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
  assert_true(n > 2 && ((uint8_t *)p)[0] == 0x80 && ((uint8_t *)p)[1] == 4);
  mp_free(p);
  MP_ASSERT_ERR(mp_conn_send(a, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_conn_recv(b, NULL, 0), MP_EINVAL);
  MP_ASSERT_ERR(mp_conn_recv(b, &r, 0), MP_ETIMEDOUT);
  mp_conn_close(a);
  MP_ASSERT_ERR(mp_conn_recv(b, &r, 5), MP_EEOF);
  mp_obj_free(v);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_connection_over_connection(void **state)
{
  mp_conn *a, *b, *x, *y;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  MP_ASSERT_OK(mp_pipe(&x, &y, 1));
  mp_obj *h = mp_conn_obj(x);
  assert_true(mp_conn_from_obj(h) == x);
  assert_null(mp_conn_from_obj(mp_none()));
  assert_true(mp_handle_type_of(h) == mp_conn_handle_type());
  mp_obj *v = MP_LIST(h, mp_str_new("tag"));
  MP_ASSERT_OK(mp_conn_send(a, v));
  mp_obj_free(v); /* drops the handle's reference; x is still ours */
  mp_obj *r;
  MP_ASSERT_OK(mp_conn_recv(b, &r, 5));
  mp_conn *x2 = mp_conn_from_obj(mp_seq_item(r, 0));
  assert_non_null(x2);
  assert_true(x2 != x);
  assert_int_not_equal(mp_conn_fileno(x2), mp_conn_fileno(x));
  assert_true(mp_conn_readable(x2) && mp_conn_writable(x2));
  /* the received connection works, also after the original is closed */
  mp_conn_ref(x2);
  mp_obj_free(r);
  MP_ASSERT_OK(mp_conn_close(x));
  MP_ASSERT_OK(mp_conn_send_bytes(x2, "through", 7));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes(y, &p, &n, 0, 5));
  assert_int_equal(n, 7);
  mp_free(p);
  /* direction flags travel: a read-only end arrives read-only */
  mp_conn *ro, *wo;
  MP_ASSERT_OK(mp_pipe(&ro, &wo, 0));
  v = MP_TUPLE(mp_conn_obj(ro), mp_conn_obj(wo));
  MP_ASSERT_OK(mp_conn_send(a, v));
  mp_obj_free(v);
  MP_ASSERT_OK(mp_conn_recv(b, &r, 5));
  mp_conn *ro2 = mp_conn_from_obj(mp_seq_item(r, 0));
  mp_conn *wo2 = mp_conn_from_obj(mp_seq_item(r, 1));
  assert_true(mp_conn_readable(ro2) && !mp_conn_writable(ro2));
  assert_true(!mp_conn_readable(wo2) && mp_conn_writable(wo2));
  MP_ASSERT_OK(mp_conn_send_bytes(wo2, "ro", 2));
  MP_ASSERT_OK(mp_conn_recv_bytes(ro, &p, &n, 0, 5));
  mp_free(p);
  mp_obj_free(r);
  /* a closed connection cannot be sent */
  v = mp_conn_obj(x);
  MP_ASSERT_ERR(mp_conn_send(a, v), MP_ECLOSED);
  mp_obj_free(v);
  mp_conn_free(ro);
  mp_conn_free(wo);
  mp_conn_free(x2);
  mp_conn_free(a);
  mp_conn_free(b);
  mp_conn_free(x);
  mp_conn_free(y);
}

static void
test_many_handles_and_limits(void **state)
{
  enum { N = 100 };
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  mp_conn *ends[2 * N];
  mp_obj *list = mp_list_new();
  for (int i = 0; i < N; i++) {
    MP_ASSERT_OK(mp_pipe(&ends[2 * i], &ends[2 * i + 1], 1));
    MP_ASSERT_OK(mp_list_append_take(list, mp_conn_obj(ends[2 * i])));
  }
  int before = mp_test_count_fds();
  MP_ASSERT_OK(mp_conn_send(a, list));
  mp_obj *r;
  MP_ASSERT_OK(mp_conn_recv(b, &r, 5));
  assert_int_equal(mp_test_count_fds(), before + N);
  for (int i = 0; i < N; i++) {
    mp_conn *c = mp_conn_from_obj(mp_seq_item(r, i));
    char msg[16];
    int len = snprintf(msg, sizeof msg, "%d", i);
    MP_ASSERT_OK(mp_conn_send_bytes(c, msg, (size_t)len));
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_conn_recv_bytes(ends[2 * i + 1], &p, &n, 0, 5));
    assert_memory_equal(p, msg, n);
    mp_free(p);
  }
  mp_obj_free(r);
  assert_int_equal(mp_test_count_fds(), before);
  /* descriptors that come with a message read as bytes are closed */
  MP_ASSERT_OK(mp_conn_send(a, list));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
  mp_free(p);
  assert_int_equal(mp_test_count_fds(), before);
  mp_obj_free(list);
  /* more than the kernel passes in one message */
  mp_conn *more[2 * 127];
  list = mp_list_new();
  for (int i = 0; i < 127; i++) {
    MP_ASSERT_OK(mp_pipe(&more[2 * i], &more[2 * i + 1], 1));
    mp_list_append_take(list, mp_conn_obj(more[2 * i]));
    mp_list_append_take(list, mp_conn_obj(more[2 * i + 1]));
  }
  MP_ASSERT_ERR(mp_conn_send(a, list), MP_ELIMIT);
  assert_int_equal(mp_conn_poll(b, 0), 0); /* nothing was sent */
  mp_obj_free(list);
  for (int i = 0; i < 2 * 127; i++)
    mp_conn_free(more[i]);
  for (int i = 0; i < 2 * N; i++)
    mp_conn_free(ends[i]);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
test_handles_need_af_unix(void **state)
{
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0", NULL));
  mp_conn *c, *s;
  MP_ASSERT_OK(mp_client(&c, mp_listener_address(l), NULL));
  MP_ASSERT_OK(mp_listener_accept(l, &s, 5));
  mp_conn *x, *y;
  MP_ASSERT_OK(mp_pipe(&x, &y, 1));
  mp_obj *v = MP_LIST(mp_conn_obj(x));
  MP_ASSERT_ERR(mp_conn_send(c, v), MP_ENOTSUP);
  assert_int_equal(mp_conn_poll(s, 0), 0);
  /* plain values are fine over TCP */
  mp_obj *plain = mp_str_new("tcp");
  MP_ASSERT_OK(mp_conn_send(c, plain));
  mp_obj *r;
  MP_ASSERT_OK(mp_conn_recv(s, &r, 5));
  assert_true(mp_obj_equal(r, plain));
  mp_obj_free(r);
  mp_obj_free(plain);
  mp_obj_free(v);
  mp_conn_free(x);
  mp_conn_free(y);
  mp_conn_free(c);
  mp_conn_free(s);
  mp_listener_free(l);
}

/* With read-ahead, one read may return the tail of a message and the head
 * of the next (with its descriptors): each message still gets exactly the
 * descriptors sent with it. */
static void
check_through(mp_obj *h, mp_conn *peer, const char *tag)
{
  mp_conn *c = mp_conn_from_obj(h);
  assert_non_null(c);
  MP_ASSERT_OK(mp_conn_send_bytes(c, tag, strlen(tag)));
  mp_test_recv_expect(peer, tag, strlen(tag), 5);
}

static void
test_readahead_descriptors(void **state)
{
  mp_conn *a, *b, *x[3], *px[3];
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  MP_ASSERT_OK(mp_conn_set_readahead(b, 1));
  for (int i = 0; i < 3; i++)
    MP_ASSERT_OK(mp_pipe(&x[i], &px[i], 1));
  int before = mp_test_count_fds();
  for (int round = 0; round < 2; round++) {
    mp_obj *B = MP_LIST(mp_str_new("B"), mp_conn_obj(x[0]));
    mp_obj *D = MP_TUPLE(mp_conn_obj(x[1]), mp_conn_obj(x[2]));
    MP_ASSERT_OK(mp_conn_send_bytes(a, "A", 1));
    MP_ASSERT_OK(mp_conn_send(a, B));
    MP_ASSERT_OK(mp_conn_send_bytes(a, "C", 1));
    MP_ASSERT_OK(mp_conn_send(a, D));
    MP_ASSERT_OK(mp_conn_send(a, B)); /* read as bytes: its fd is closed */
    MP_ASSERT_OK(mp_conn_send_bytes(a, "E", 1));
    mp_obj_free(B);
    mp_obj_free(D);
    void *p;
    size_t n;
    mp_obj *r;
    MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
    assert_int_equal(n, 1);
    mp_free(p);
    MP_ASSERT_OK(mp_conn_recv(b, &r, 5));
    check_through(mp_seq_item(r, 1), px[0], "x0");
    mp_obj_free(r);
    MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
    assert_int_equal(n, 1);
    mp_free(p);
    MP_ASSERT_OK(mp_conn_recv(b, &r, 5));
    check_through(mp_seq_item(r, 0), px[1], "x1");
    check_through(mp_seq_item(r, 1), px[2], "x2");
    mp_obj_free(r);
    MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
    mp_free(p);
    MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
    assert_int_equal(n, 1);
    mp_free(p);
    assert_int_equal(mp_test_count_fds(), before);
  }
  /* a connection holding read-ahead bytes cannot be sent away */
  MP_ASSERT_OK(mp_conn_send_bytes(a, "1", 1));
  MP_ASSERT_OK(mp_conn_send_bytes(a, "2", 1));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
  mp_free(p);
  mp_obj *hb = mp_conn_obj(b);
  MP_ASSERT_ERR(mp_conn_send(px[0], hb), MP_EBUSY);
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
  mp_free(p);
  MP_ASSERT_OK(mp_conn_send(px[0], hb)); /* nothing buffered now */
  mp_obj *r;
  MP_ASSERT_OK(mp_conn_recv(x[0], &r, 5));
  mp_obj_free(r);
  mp_obj_free(hb);
  for (int i = 0; i < 3; i++) {
    mp_conn_free(x[i]);
    mp_conn_free(px[i]);
  }
  mp_conn_free(a);
  mp_conn_free(b);
}

/* ---- child processes ----------------------------------------------------- */

/* seeds: def f(conn): conn.send([42, None, 'hello']); conn.close() */
static int
pipe_target(mp_obj *args)
{
  mp_conn *conn = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *v = MP_LIST(mp_int_new(42), mp_none(), mp_str_new("hello"));
  int rc = mp_conn_send(conn, v);
  mp_obj_free(v);
  mp_conn_close(conn);
  return rc ? 1 : 0;
}

/* seeds' wait example: def foo(w): for i in range(10): w.send((i,
 * current_process().name)); w.close() */
static int
wait_target(mp_obj *args)
{
  mp_conn *w = mp_conn_from_obj(mp_seq_item(args, 0));
  for (int i = 0; i < 10; i++) {
    mp_obj *v = MP_TUPLE(mp_int_new(i),
                         mp_str_new(mp_process_name(mp_current_process())));
    int rc = mp_conn_send(w, v);
    mp_obj_free(v);
    if (rc)
      return 1;
  }
  mp_conn_close(w);
  return 0;
}

/* A child that receives a Connection over the Connection it was given, and
 * answers through the received one. */
static int
relay_target(mp_obj *args)
{
  mp_conn *ctl = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *v;
  if (mp_conn_recv(ctl, &v, 30))
    return 1;
  mp_conn *back = mp_conn_from_obj(v);
  int rc = back ? mp_conn_send_bytes(back, "relayed", 7) : 2;
  mp_obj_free(v);
  return rc ? 3 : 0;
}

static const char *const methods[] = { "fork", "spawn", "forkserver",
                                       "threading" };

static void
start_child(const char *method, mp_target_fn fn, mp_obj *args,
            mp_process **out)
{
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context(method, &ctx));
  MP_ASSERT_OK(mp_process_new(out, ctx,
                              &(mp_process_opts){ .target = fn,
                                                  .args = args }));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(*out));
}

static void
join_ok(mp_process *p)
{
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code = -1;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
}

static void
test_seed_pipe_example_every_method(void **state)
{
  for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
    mp_conn *parent_conn, *child_conn;
    MP_ASSERT_OK(mp_pipe(&parent_conn, &child_conn, 1));
    mp_process *p;
    start_child(methods[m], pipe_target, MP_TUPLE(mp_conn_obj(child_conn)),
                &p);
    mp_obj *r;
    MP_ASSERT_OK(mp_conn_recv(parent_conn, &r, 60));
    char *s = mp_obj_repr(r);
    assert_string_equal(s, "[42, None, 'hello']");
    mp_free(s);
    mp_obj_free(r);
    join_ok(p);
    mp_conn_free(parent_conn);
    mp_conn_free(child_conn);
  }
}

static void
test_seed_wait_example_every_method(void **state)
{
  enum { W = 4, M = 10 };
  for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
    int threading = !strcmp(methods[m], "threading");
    mp_conn *readers[W];
    mp_process *procs[W];
    for (int i = 0; i < W; i++) {
      mp_conn *r, *w;
      MP_ASSERT_OK(mp_pipe(&r, &w, 0));
      readers[i] = r;
      start_child(methods[m], wait_target, MP_TUPLE(mp_conn_obj(w)),
                  &procs[i]);
      /* "close the writable end now to be sure that p is the only process
       * which owns a handle for it" -- a threading child shares this very
       * object, and closes it itself */
      if (!threading)
        MP_ASSERT_OK(mp_conn_close(w));
      mp_conn_free(w);
    }
    mp_conn *list[W];
    memcpy(list, readers, sizeof list);
    int live = W, got[W] = { 0 };
    while (live) {
      mp_waitable w[W];
      for (int i = 0; i < live; i++)
        w[i] = MP_WAITABLE_CONN(list[i]);
      assert_true(mp_wait(w, (size_t)live, 60) > 0);
      for (int i = live - 1; i >= 0; i--) {
        if (!w[i].ready)
          continue;
        mp_obj *msg;
        int rc = mp_conn_recv(list[i], &msg, 60);
        if (rc == MP_EEOF) {
          list[i] = list[--live];
          continue;
        }
        MP_ASSERT_OK(rc);
        int64_t k;
        MP_ASSERT_OK(mp_int_get(mp_seq_item(msg, 0), &k));
        const char *name;
        size_t nl;
        MP_ASSERT_OK(mp_str_get(mp_seq_item(msg, 1), &name, &nl));
        int who = -1;
        for (int j = 0; j < W; j++)
          if (!strcmp(name, mp_process_name(procs[j])))
            who = j;
        assert_true(who >= 0);
        assert_int_equal(k, got[who]);
        got[who]++;
        mp_obj_free(msg);
      }
    }
    for (int i = 0; i < W; i++) {
      assert_int_equal(got[i], M);
      join_ok(procs[i]);
      mp_conn_free(readers[i]);
    }
  }
}

static void
test_connection_sent_to_a_child(void **state)
{
  for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
    mp_conn *ctl_parent, *ctl_child, *back_r, *back_w;
    MP_ASSERT_OK(mp_pipe(&ctl_parent, &ctl_child, 1));
    MP_ASSERT_OK(mp_pipe(&back_r, &back_w, 0));
    mp_process *p;
    start_child(methods[m], relay_target, MP_TUPLE(mp_conn_obj(ctl_child)),
                &p);
    mp_obj *h = mp_conn_obj(back_w);
    MP_ASSERT_OK(mp_conn_send(ctl_parent, h));
    mp_obj_free(h);
    mp_test_recv_expect(back_r, "relayed", 7, 60);
    join_ok(p);
    mp_conn_free(ctl_parent);
    mp_conn_free(ctl_child);
    mp_conn_free(back_r);
    mp_conn_free(back_w);
  }
}

/* A child that says hello, then waits for "go" before it exits. */
static int
hello_target(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  if (mp_conn_send_bytes(c, "hello", 5))
    return 1;
  void *p;
  size_t n;
  if (mp_conn_recv_bytes(c, &p, &n, 0, 60))
    return 2;
  mp_free(p);
  return 0;
}

/* mp_wait over a connection and a process sentinel together. */
static void
test_wait_with_sentinels(void **state)
{
  for (size_t m = 0; m < 3; m++) { /* the OS start methods */
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, 1));
    mp_process *p;
    start_child(methods[m], hello_target, MP_TUPLE(mp_conn_obj(b)), &p);
    int sentinel = mp_process_sentinel(p);
    assert_true(sentinel >= 0);
    mp_waitable w[] = { MP_WAITABLE_CONN(a), MP_WAITABLE_FD(sentinel) };
    assert_int_equal(mp_wait(w, 2, 60), 1);
    assert_true(w[0].ready && !w[1].ready);
    void *d;
    size_t n;
    MP_ASSERT_OK(mp_conn_recv_bytes(a, &d, &n, 0, 5));
    mp_free(d);
    MP_ASSERT_OK(mp_conn_send_bytes(a, "go", 2));
    /* the child ends: its sentinel becomes ready */
    mp_waitable ws[] = { MP_WAITABLE_FD(sentinel) };
    assert_int_equal(mp_wait(ws, 1, 60), 1);
    join_ok(p);
    mp_conn_free(a);
    mp_conn_free(b);
  }
}

/* The forkserver is a process of this program's: stop it before the leak
 * check counts children and descriptors. */
static void
test_zz_stop_forkserver(void **state)
{
  mp__forkserver_stop();
}

static const struct CMUnitTest tests[] = {
  cmocka_unit_test(test_values_round_trip),
  cmocka_unit_test(test_connection_over_connection),
  cmocka_unit_test(test_many_handles_and_limits),
  cmocka_unit_test(test_handles_need_af_unix),
  cmocka_unit_test(test_readahead_descriptors),
  cmocka_unit_test(test_seed_pipe_example_every_method),
  cmocka_unit_test(test_seed_wait_example_every_method),
  cmocka_unit_test(test_connection_sent_to_a_child),
  cmocka_unit_test(test_wait_with_sentinels),
  cmocka_unit_test(test_zz_stop_forkserver),
};

MP_TEST_MAIN(tests)
