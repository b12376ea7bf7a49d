/* SPDX-License-Identifier: MIT */
/* A manager server facing bad clients: malformed requests and pickles,
 * unknown server methods and idents, wrong arity, a frame over the
 * request limit, a client that stops mid-request, idle connections (with
 * and without a handshake), a flood of creates past the object limit, a
 * client blocked in a call when the server shuts down, a client killed
 * mid-call.  Each gets an error reply or a closed connection; the server
 * keeps serving the others. */
#define _GNU_SOURCE
#include "testutil.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "manager/manager_internal.h"
#include "proc/proc_internal.h"

#define KEY "hostile"

static mp_manager *
started(size_t max_objects, uint64_t max_request)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .authkey = KEY,
                                      .authkey_len = strlen(KEY),
                                      .max_objects = max_objects,
                                      .max_request = max_request }));
  MP_ASSERT_OK(mp_manager_start(m));
  return m;
}

static mp_conn *
dial(mp_manager *m)
{
  mp_conn *c;
  MP_ASSERT_OK(mp_client(&c, mp_manager_address(m),
                         &(mp_client_opts){ .authkey = KEY,
                                            .authkey_len = strlen(KEY) }));
  return c;
}

/* Send `req` (taken) and expect a reply of `kind` whose text has `needle`. */
static void
expect(mp_conn *c, mp_obj *req, const char *kind, const char *needle)
{
  assert_non_null(req);
  MP_ASSERT_OK(mp_conn_send(c, req));
  mp_obj_free(req);
  mp_obj *reply = NULL;
  MP_ASSERT_OK(mp_conn_recv(c, &reply, 30));
  const char *k = "";
  size_t len;
  MP_ASSERT_OK(mp_str_get(mp_seq_item(reply, 0), &k, &len));
  assert_string_equal(k, kind);
  char *text = mp_obj_str(mp_seq_item(reply, 1));
  if (needle && !strstr(text, needle))
    fail_msg("reply %s %s lacks %s", k, text, needle);
  mp_free(text);
  mp_obj_free(reply);
}

static void
assert_serving(mp_manager *m)
{
  int64_t n = -1;
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
}

static void
test_malformed_requests(void **state)
{
  mp_manager *m = started(0, 0);
  mp_conn *c = dial(m);
  /* not a 4-tuple: the reply of a one-shot connection, then it closes */
  expect(c, MP_TUPLE(mp_int_new(1), mp_int_new(2)), "#TRACEBACK", "4-tuple");
  mp_obj *x = NULL;
  MP_ASSERT_ERR(mp_conn_recv(c, &x, 30), MP_EEOF);
  mp_conn_free(c);
  /* bytes that are no pickle */
  c = dial(m);
  MP_ASSERT_OK(mp_conn_send_bytes(c, "\x80\x04garbage", 9));
  MP_ASSERT_OK(mp_conn_recv(c, &x, 30));
  char *r = mp_obj_repr(x);
  assert_non_null(strstr(r, "#TRACEBACK"));
  mp_free(r);
  mp_obj_free(x);
  mp_conn_free(c);
  /* an unknown server method, CPython's text */
  c = dial(m);
  expect(c, mp__mgr_request(NULL, "nosuch", NULL, NULL), "#TRACEBACK",
         "'nosuch' unrecognized");
  mp_conn_free(c);
  /* create with no typeid, bad arity and an unknown typeid */
  c = dial(m);
  expect(c, mp__mgr_request(NULL, "create", NULL, NULL), "#TRACEBACK",
         "typeid");
  mp_conn_free(c);
  c = dial(m);
  mp_obj *a = MP_TUPLE(mp_str_new("Lock"), mp_int_new(1), mp_int_new(2));
  expect(c, mp__mgr_request(NULL, "create", a, NULL), "#ERROR", "Lock");
  mp_obj_free(a);
  mp_conn_free(c);
  c = dial(m);
  a = MP_TUPLE(mp_int_new(5));
  expect(c, mp__mgr_request(NULL, "incref", a, NULL), "#TRACEBACK", "ident");
  mp_obj_free(a);
  mp_conn_free(c);
  c = dial(m);
  a = MP_TUPLE(mp_str_new("ffffff"));
  expect(c, mp__mgr_request(NULL, "decref", a, NULL), "#TRACEBACK",
         "KeyError");
  mp_obj_free(a);
  mp_conn_free(c);
  /* the serve loop: an unknown ident, a server method by name, a bad
   * pickle -- each an error reply, and the loop goes on */
  c = dial(m);
  a = MP_TUPLE(mp_str_new("MainProcess"));
  expect(c, mp__mgr_request(NULL, "accept_connection", a, NULL), "#RETURN",
         NULL);
  mp_obj_free(a);
  expect(c, mp__mgr_request("abc", "get", NULL, NULL), "#TRACEBACK",
         "KeyError");
  expect(c, mp__mgr_request("not hex!", "get", NULL, NULL), "#TRACEBACK",
         "KeyError");
  MP_ASSERT_OK(mp_conn_send_bytes(c, "\x80\x04\x95", 3));
  MP_ASSERT_OK(mp_conn_recv(c, &x, 30));
  mp_obj_free(x);
  expect(c, mp__mgr_request(NULL, "dummy", NULL, NULL), "#TRACEBACK",
         "KeyError");
  mp_conn_free(c);
  assert_serving(m);
  mp_manager_free(m);
}

/* RebuildProxy calls a client sends (CPython's pickled proxies): one naming
 * another manager is kept inert -- the server never dials out on a
 * client's word (a connect to a black-holed address would hang this test)
 * --, one naming an ident the server does not hold is an UnpicklingError
 * reply, and a call of the wrong shape stays inert; the loop goes on. */
static mp_obj *
rebuild_proxy(const char *address, const char *ident, int nargs)
{
  mp_obj *tok = mp__mgr_token_new("dict", address, ident);
  mp_obj *args = nargs == 4
                     ? MP_TUPLE(mp_global_new("multiprocessing.managers",
                                              "DictProxy"),
                                tok, mp_str_new("pickle"), mp_dict_new())
                     : MP_TUPLE(mp_global_new("multiprocessing.managers",
                                              "DictProxy"),
                                tok, mp_str_new("pickle"));
  return mp_record_take(MP_RECORD_REDUCE,
                        mp_global_new("multiprocessing.managers",
                                      "RebuildProxy"),
                        args);
}

static void
test_foreign_proxies(void **state)
{
  (void)state;
  mp_manager *m = started(0, 0);
  mp_proxy *l;
  MP_ASSERT_OK(mp_manager_list(m, NULL, &l));
  mp_conn *c = dial(m);
  mp_obj *a = MP_TUPLE(mp_str_new("MainProcess"));
  expect(c, mp__mgr_request(NULL, "accept_connection", a, NULL), "#RETURN",
         NULL);
  mp_obj_free(a);
  const char *ident = mp_proxy_ident(l);
  a = MP_TUPLE(rebuild_proxy("10.255.255.1:9", "ab", 4));
  expect(c, mp__mgr_request(ident, "append", a, NULL), "#RETURN", NULL);
  mp_obj_free(a);
  a = MP_TUPLE(rebuild_proxy(mp_manager_address(m), "ffff", 4));
  expect(c, mp__mgr_request(ident, "append", a, NULL), "#TRACEBACK",
         "UnpicklingError");
  mp_obj_free(a);
  a = MP_TUPLE(rebuild_proxy(mp_manager_address(m), "ffff", 3));
  expect(c, mp__mgr_request(ident, "append", a, NULL), "#RETURN", NULL);
  mp_obj_free(a);
  mp_conn_free(c);
  int64_t n = -1;
  MP_ASSERT_OK(mp_proxy_len(l, &n));
  assert_int_equal(n, 2); /* the two inert calls */
  mp_proxy_free(l);
  assert_serving(m);
  mp_manager_free(m);
}

static void
test_wrong_arity_on_objects(void **state)
{
  mp_manager *m = started(0, 0);
  mp_proxy *d, *q;
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  MP_ASSERT_OK(mp_manager_queue(m, 0, &q));
  mp_obj *out = NULL;
  MP_ASSERT_ERR(mp_proxy_call_take(d, "__setitem__", MP_TUPLE(mp_int_new(1)),
                                   &out), MP_ETYPE);
  MP_ASSERT_ERR(mp_proxy_call_take(d, "keys", MP_TUPLE(mp_int_new(1)), &out),
                MP_ETYPE);
  MP_ASSERT_ERR(mp_proxy_call_take(q, "put", mp_tuple_take(0), &out),
                MP_ETYPE);
  MP_ASSERT_ERR(mp_proxy_call_take(q, "get", MP_TUPLE(mp_bool_new(1),
                                                      mp_float_new(-1)),
                                   &out), MP_EINVAL);
  MP_ASSERT_ERR(mp_proxy_call_take(q, "get", MP_TUPLE(mp_str_new("x"),
                                                      mp_str_new("y")),
                                   &out), MP_ETYPE);
  mp_proxy_free(d);
  mp_proxy_free(q);
  assert_serving(m);
  mp_manager_free(m);
}

static void
test_huge_frame_and_torn_request(void **state)
{
  mp_manager *m = started(0, 1 << 20);
  /* a header announcing 2 GiB: the server closes that connection */
  mp_conn *c = dial(m);
  int fd = mp_conn_fileno(c);
  const uint8_t huge[] = { 0x7f, 0xff, 0xff, 0xff };
  assert_int_equal(write(fd, huge, 4), 4);
  mp_obj *x = NULL;
  int rc = mp_conn_recv(c, &x, 30);
  assert_true(rc == MP_EEOF || rc == MP_ECONNRESET);
  mp_conn_free(c);
  /* a request whose payload stops half-way, then the client goes */
  c = dial(m);
  fd = mp_conn_fileno(c);
  const uint8_t part[] = { 0, 0, 0, 100, 0x80, 0x04 };
  assert_int_equal(write(fd, part, sizeof part), (ssize_t)sizeof part);
  mp_conn_free(c);
  /* a message over the limit by a little, sent whole */
  c = dial(m);
  void *big = calloc(1, (1 << 20) + 10);
  rc = mp_conn_send_bytes(c, big, (1 << 20) + 10);
  free(big);
  rc = mp_conn_recv(c, &x, 30);
  assert_true(rc == MP_EEOF || rc == MP_ECONNRESET);
  mp_conn_free(c);
  assert_serving(m);
  mp_manager_free(m);
}

static void
test_idle_connections(void **state)
{
  mp_manager *m = started(0, 0);
  enum { N = 100 };
  mp_conn *idle[N];
  for (int i = 0; i < N; i++)
    idle[i] = dial(m); /* authenticated, never sending */
  /* and some that never even answer the challenge */
  mp_conn *mute[10];
  for (int i = 0; i < 10; i++)
    MP_ASSERT_OK(mp_client(&mute[i], mp_manager_address(m), NULL));
  mp_proxy *d;
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  mp_obj *k = mp_int_new(1);
  MP_ASSERT_OK(mp_proxy_setitem(d, k, k));
  mp_obj_free(k);
  mp_proxy_free(d);
  for (int i = 0; i < N; i++)
    mp_conn_free(idle[i]);
  for (int i = 0; i < 10; i++)
    mp_conn_free(mute[i]);
  assert_serving(m);
  mp_manager_free(m); /* shutdown with those threads still around */
}

static void
test_object_limit(void **state)
{
  mp_manager *m = started(5, 0);
  mp_proxy *p[6];
  for (int i = 0; i < 5; i++)
    MP_ASSERT_OK(mp_manager_lock(m, &p[i]));
  /* the server's MemoryError */
  MP_ASSERT_ERR(mp_manager_lock(m, &p[5]), MP_ENOMEM);
  assert_non_null(strstr(mp_errdetail(), "MemoryError"));
  mp_proxy_free(p[0]);
  MP_ASSERT_OK(mp_manager_lock(m, &p[0]));
  for (int i = 0; i < 5; i++)
    mp_proxy_free(p[i]);
  int64_t n = -1;
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
  assert_int_equal(n, 0);
  mp_manager_free(m);
}

typedef struct blocked {
  mp_proxy *q, *ev;
  int rc;
} blocked;

static void *
block_in_get(void *arg)
{
  blocked *b = arg;
  mp_obj *x = NULL;
  mp_proxy_event_set(b->ev);
  b->rc = mp_proxy_queue_get(b->q, &x, MP_FOREVER);
  mp_obj_free(x);
  return NULL;
}

/* Whether the get is already waiting in the server or arrives after the
 * shutdown, it must end with an error, never hang. */
static void
test_shutdown_under_a_blocked_client(void **state)
{
  mp_manager *m = started(0, 0);
  blocked b = { 0 };
  MP_ASSERT_OK(mp_manager_queue(m, 0, &b.q));
  MP_ASSERT_OK(mp_manager_event(m, &b.ev));
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, block_in_get, &b), 0);
  MP_ASSERT_OK(mp_proxy_event_wait(b.ev, 60));
  MP_ASSERT_OK(mp_manager_shutdown(m));
  pthread_join(th, NULL);
  assert_true(b.rc < 0);
  mp_proxy_free(b.q); /* the server is gone: the decref just fails */
  mp_proxy_free(b.ev);
  mp_manager_free(m);
}

static int
child_blocks(mp_obj *args)
{
  mp_proxy *q = mp_proxy_from_obj(mp_seq_item(args, 0));
  mp_proxy *started_ev = mp_proxy_from_obj(mp_seq_item(args, 1));
  if (mp_proxy_event_set(started_ev))
    return 1;
  mp_obj *x = NULL;
  mp_proxy_queue_get(q, &x, MP_FOREVER); /* killed here */
  return 2;
}

static void
test_client_killed_mid_call(void **state)
{
  mp_manager *m = started(0, 0);
  mp_proxy *q, *ev;
  MP_ASSERT_OK(mp_manager_queue(m, 0, &q));
  MP_ASSERT_OK(mp_manager_event(m, &ev));
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_proxy_obj(q), mp_proxy_obj(ev));
  MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                              &(mp_process_opts){ .target = child_blocks,
                                                  .args = args }));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  MP_ASSERT_OK(mp_proxy_event_wait(ev, 60));
  MP_ASSERT_OK(mp_process_kill(p));
  MP_ASSERT_OK(mp_process_join(p, 60));
  mp_process_free(p);
  /* the server goes on: the queue still works for us */
  mp_obj *one = mp_int_new(1), *got = NULL;
  MP_ASSERT_OK(mp_proxy_queue_put(q, one, MP_FOREVER));
  MP_ASSERT_OK(mp_proxy_queue_get(q, &got, 30));
  mp_obj_free(got);
  mp_obj_free(one);
  mp_proxy_free(q);
  mp_proxy_free(ev);
  mp_manager_free(m);
}

/* Requests that would take something, read after their client has gone:
 * a client pipelines a blocking acquire of a held lock (its thread waits
 * in it), then an acquire of a free lock, of a semaphore, a queue get and
 * a Barrier wait, and half-closes its connection.  When the server thread gets to them the
 * client is gone; the lock, the semaphore's count and the item stay for
 * the clients that remain (a take with no wait found the client gone only
 * when it had waited first; the dead client then held the lock for ever). */
static void
test_gone_client_takes_nothing(void **state)
{
  (void)state;
  mp_manager *m = started(0, 0);
  mp_proxy *held, *lock, *sem, *q, *barrier;
  mp_obj *one_party = MP_TUPLE(mp_int_new(1));
  MP_ASSERT_OK(mp_manager_create(m, "Barrier", one_party, NULL, &barrier));
  mp_obj_free(one_party);
  MP_ASSERT_OK(mp_manager_lock(m, &held));
  MP_ASSERT_OK(mp_manager_lock(m, &lock));
  MP_ASSERT_OK(mp_manager_semaphore(m, 1, &sem));
  MP_ASSERT_OK(mp_manager_queue(m, 0, &q));
  mp_obj *one = mp_int_new(1), *got = NULL;
  MP_ASSERT_OK(mp_proxy_queue_put(q, one, MP_FOREVER));
  MP_ASSERT_OK(mp_proxy_acquire(held, MP_FOREVER));
  mp_conn *c = dial(m);
  mp_obj *a = MP_TUPLE(mp_str_new("Gone"));
  expect(c, mp__mgr_request(NULL, "accept_connection", a, NULL), "#RETURN",
         NULL);
  mp_obj_free(a);
  a = MP_TUPLE(mp_bool_new(1), mp_float_new(0.5)); /* waits 0.5 s */
  mp_obj *reqs[] = {
      mp__mgr_request(mp_proxy_ident(held), "acquire", a, NULL),
      mp__mgr_request(mp_proxy_ident(lock), "acquire", NULL, NULL),
      mp__mgr_request(mp_proxy_ident(sem), "acquire", NULL, NULL),
      mp__mgr_request(mp_proxy_ident(q), "get", NULL, NULL),
      /* a wait that would complete a Barrier of one party */
      mp__mgr_request(mp_proxy_ident(barrier), "wait", NULL, NULL),
  };
  mp_obj_free(a);
  for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
    MP_ASSERT_OK(mp_conn_send(c, reqs[i]));
    mp_obj_free(reqs[i]);
  }
  assert_int_equal(shutdown(mp_conn_fileno(c), SHUT_WR), 0);
  /* each reply says the client is gone; none took anything */
  for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
    mp_obj *reply = NULL;
    MP_ASSERT_OK(mp_conn_recv(c, &reply, 30));
    const char *k = "";
    size_t len;
    MP_ASSERT_OK(mp_str_get(mp_seq_item(reply, 0), &k, &len));
    if (strcmp(k, "#RETURN") == 0)
      fail_msg("request %zu of a gone client was served", i);
    mp_obj_free(reply);
  }
  mp_conn_free(c);
  MP_ASSERT_OK(mp_proxy_acquire(lock, 0));
  MP_ASSERT_OK(mp_proxy_acquire(sem, 0));
  MP_ASSERT_OK(mp_proxy_queue_get(q, &got, 0));
  assert_int_equal(mp_obj_equal(got, one), 1);
  mp_obj_free(got);
  mp_obj_free(one);
  MP_ASSERT_OK(mp_proxy_release(held));
  mp_proxy_free(held);
  mp_proxy_free(lock);
  mp_proxy_free(sem);
  mp_proxy_free(q);
  mp_proxy_free(barrier);
  mp_manager_free(m);
}

/* A client SIGKILLed after a reply handed it a proxy and before its incref:
 * the reference the server holds for it goes with the connection, so the
 * object is freed (a hold that outlived its client would leak it). */
static int
child_takes_no_ref(mp_obj *args)
{
  const char *address, *ident;
  size_t len;
  mp_proxy *ev = mp_proxy_from_obj(mp_seq_item(args, 2));
  if (mp_str_get(mp_seq_item(args, 0), &address, &len) ||
      mp_str_get(mp_seq_item(args, 1), &ident, &len) || !ev)
    return 1;
  mp_conn *c;
  if (mp_client(&c, address, &(mp_client_opts){ .authkey = KEY,
                                                .authkey_len = strlen(KEY) }))
    return 2;
  mp_obj *a = MP_TUPLE(mp_str_new("Killed"));
  mp_obj *req = mp__mgr_request(NULL, "accept_connection", a, NULL);
  mp_obj_free(a);
  mp_obj *reply = NULL;
  if (mp_conn_send(c, req) || mp_conn_recv(c, &reply, 30))
    return 3;
  mp_obj_free(req);
  mp_obj_free(reply);
  /* pop() the list's only item: the reply carries the dict's proxy; read
   * as bytes, it is never rebuilt, so this client never increfs it */
  req = mp__mgr_request(ident, "pop", NULL, NULL);
  void *bytes;
  if (mp_conn_send(c, req) || mp_conn_recv_bytes(c, &bytes, &len, 0, 30))
    return 4;
  mp_obj_free(req);
  mp_free(bytes);
  if (mp_proxy_event_set(ev))
    return 5;
  for (;;)
    pause(); /* killed here, the connection open */
}

static void
test_client_killed_holding_a_reply_proxy(void **state)
{
  mp_manager *m = started(0, 0);
  mp_proxy *l, *d, *ev;
  MP_ASSERT_OK(mp_manager_list(m, NULL, &l));
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  MP_ASSERT_OK(mp_manager_event(m, &ev));
  mp_obj *h = mp_proxy_obj(d);
  MP_ASSERT_OK(mp_proxy_list_append(l, h));
  mp_obj_free(h);
  mp_proxy_free(d); /* the list holds the dict now */
  int64_t n = -1;
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
  assert_int_equal(n, 3);
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_str_new(mp_manager_address(m)),
                          mp_str_new(mp_proxy_ident(l)), mp_proxy_obj(ev));
  MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                              &(mp_process_opts){ .target = child_takes_no_ref,
                                                  .args = args }));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  MP_ASSERT_OK(mp_proxy_event_wait(ev, 60));
  /* popped from the list, the dict lives on the server's hold */
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
  assert_int_equal(n, 3);
  MP_ASSERT_OK(mp_process_kill(p));
  MP_ASSERT_OK(mp_process_join(p, 60));
  mp_process_free(p);
  /* the server sees the connection end (asynchronously) and drops it */
  for (int i = 0; i < 1000; i++) {
    MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
    if (n == 2)
      break;
    usleep(10000);
  }
  assert_int_equal(n, 2);
  mp_proxy_free(l);
  mp_proxy_free(ev);
  /* the event's reference the child took (its proxy, rebuilt there) died
   * with it undecref'd: that one stays, as documented in manager.h */
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
  assert_int_equal(n, 1);
  mp_manager_free(m);
}

/* Clients SIGKILLed at random instants (a bounded loop) while they store
 * dict proxies in a shared list, take them out again and use them: the
 * server goes on, and every proxy the list holds afterwards names a live
 * dict -- whatever instant a kill landed in (mid-request, between a reply
 * and its incref, mid-decref), no reference was dropped twice or too
 * early.  (References a killed client made itself stay: documented.) */
static int
child_churns(mp_obj *args)
{
  const char *address;
  size_t len;
  mp_proxy *l = mp_proxy_from_obj(mp_seq_item(args, 1));
  mp_array *stored = mp_array_from_obj(mp_seq_item(args, 2));
  if (mp_str_get(mp_seq_item(args, 0), &address, &len) || !l || !stored)
    return 1;
  int64_t *nstored = mp_array_ptr(stored);
  mp_manager *m;
  if (mp_manager_new(&m, &(mp_manager_opts){ .address = address,
                                             .authkey = KEY,
                                             .authkey_len = strlen(KEY) }) ||
      mp_manager_connect(m))
    return 2;
  mp_obj *k = mp_str_new("k");
  for (int64_t i = 0;; i++) {
    mp_proxy *d;
    mp_obj *v = mp_int_new(i), *h, *got = NULL;
    if (mp_manager_dict(m, &d) || mp_proxy_setitem(d, k, v))
      return 3;
    h = mp_proxy_obj(d);
    if (mp_proxy_list_append(l, h))
      return 4;
    __atomic_add_fetch(nstored, 1, __ATOMIC_SEQ_CST);
    mp_obj_free(h);
    mp_proxy_free(d);
    int64_t n = 0;
    if (mp_proxy_len(l, &n))
      return 5;
    if (n > 4) {
      if (mp_proxy_call_take(l, "pop", MP_TUPLE(mp_int_new(0)), &got) ||
          !mp_proxy_from_obj(got))
        return 6;
      mp_obj *x = NULL;
      if (mp_proxy_getitem(mp_proxy_from_obj(got), k, &x))
        return 7;
      mp_obj_free(x);
      mp_obj_free(got);
    }
    mp_obj_free(v);
  }
}

static void
test_clients_killed_while_nesting(void **state)
{
  mp_manager *m = started(0, 0);
  mp_proxy *l;
  MP_ASSERT_OK(mp_manager_list(m, NULL, &l));
  long seed = (long)time(NULL) ^ getpid();
  srand48(seed);
  print_message("seed %ld\n", seed);
  mp_array *stored;
  MP_ASSERT_OK(mp_array_new(&stored, 'q', 1, NULL,
                            &(mp_value_opts){.raw = 1}));
  int64_t *nstored = mp_array_ptr(stored);
  for (int round = 0; round < 20; round++) {
    mp_process *p;
    mp_obj *args = MP_TUPLE(mp_str_new(mp_manager_address(m)),
                            mp_proxy_obj(l), mp_array_obj(stored));
    MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                                &(mp_process_opts){ .target = child_churns,
                                                    .args = args }));
    mp_obj_free(args);
    int64_t before = __atomic_load_n(nstored, __ATOMIC_SEQ_CST);
    MP_ASSERT_OK(mp_process_start(p));
    /* Killed while it churns, at a random instant: first it must have
     * stored a proxy (a spawn child under a sanitizer takes longer to get
     * there than the longest pause below). */
    double until = mp_test_now() + 60;
    while (__atomic_load_n(nstored, __ATOMIC_SEQ_CST) == before &&
           mp_test_now() < until)
      usleep(1000);
    assert_true(__atomic_load_n(nstored, __ATOMIC_SEQ_CST) > before);
    usleep((useconds_t)(5000 + lrand48() % 30000));
    MP_ASSERT_OK(mp_process_kill(p));
    MP_ASSERT_OK(mp_process_join(p, 60));
    /* it ran until killed: any exit code of its own is a failed call */
    int code = 0;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, -SIGKILL);
    mp_process_free(p);
  }
  mp_array_free(stored);
  /* Every dict the list still holds is alive and readable.  One request
   * reads the list whole: the server may still be serving a killed
   * child's last pop (read from its connection before the kill), so the
   * list can shrink between a len() and a getitem(). */
  mp_obj *all = NULL;
  MP_ASSERT_OK(mp_proxy_getvalue(l, &all));
  size_t n = 0;
  MP_ASSERT_OK(mp_obj_len(all, &n));
  assert_true(n > 0); /* the children got as far as storing proxies */
  mp_obj *k = mp_str_new("k");
  for (size_t i = 0; i < n; i++) {
    mp_obj *x = NULL;
    mp_proxy *d = mp_proxy_from_obj(mp_seq_item(all, (int64_t)i));
    assert_non_null(d);
    MP_ASSERT_OK(mp_proxy_getitem(d, k, &x));
    mp_obj_free(x);
  }
  mp_obj_free(all);
  mp_obj_free(k);
  mp_proxy_free(l);
  assert_serving(m);
  mp_manager_free(m);
}

/* ---- a server killed under its clients ---------------------------------- */

static void
tell_ready(mp_manager *m, void *arg)
{
  mp_obj *a = mp_str_new(mp_manager_address(m));
  mp_conn_send(arg, a);
  mp_obj_free(a);
}

static int
serve_child(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  const char *path;
  size_t len;
  if (!c || mp_str_get(mp_seq_item(args, 1), &path, &len))
    return 1;
  mp_manager *m;
  if (mp_manager_new(&m, &(mp_manager_opts){ .address = path,
                                             .authkey = KEY,
                                             .authkey_len = strlen(KEY) }))
    return 2;
  int rc = mp_manager_serve_forever(m, tell_ready, c);
  mp_manager_free(m);
  return rc ? 3 : 0;
}

static void
test_server_killed_under_clients(void **state)
{
  char dir[] = "/tmp/mproc-mgr-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/mgr.sock", dir);
  mp_conn *r, *w;
  MP_ASSERT_OK(mp_pipe(&r, &w, 0));
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_conn_obj(w), mp_str_new(path));
  mp_conn_free(w);
  MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                              &(mp_process_opts){ .target = serve_child,
                                                  .args = args }));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  mp_obj *addr = NULL;
  MP_ASSERT_OK(mp_conn_recv(r, &addr, 60));
  mp_conn_free(r);
  mp_obj_free(addr);
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .address = path, .authkey = KEY,
                                      .authkey_len = strlen(KEY) }));
  MP_ASSERT_OK(mp_manager_connect(m));
  blocked b = { 0 };
  MP_ASSERT_OK(mp_manager_queue(m, 0, &b.q));
  MP_ASSERT_OK(mp_manager_event(m, &b.ev));
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, block_in_get, &b), 0);
  MP_ASSERT_OK(mp_proxy_event_wait(b.ev, 60));
  MP_ASSERT_OK(mp_process_kill(p));
  MP_ASSERT_OK(mp_process_join(p, 60));
  mp_process_free(p);
  pthread_join(th, NULL);
  assert_true(b.rc < 0); /* the blocked get ends with an error */
  mp_obj *x = NULL;
  assert_true(mp_proxy_queue_get(b.q, &x, 0) < 0);
  mp_proxy *d = NULL;
  assert_true(mp_manager_dict(m, &d) < 0);
  mp_proxy_free(b.q);
  mp_proxy_free(b.ev);
  mp_manager_free(m);
  unlink(path);
  rmdir(dir);
}

static const struct CMUnitTest tests[] = {
  cmocka_unit_test(test_malformed_requests),
  cmocka_unit_test(test_foreign_proxies),
  cmocka_unit_test(test_wrong_arity_on_objects),
  cmocka_unit_test(test_huge_frame_and_torn_request),
  cmocka_unit_test(test_idle_connections),
  cmocka_unit_test(test_object_limit),
  cmocka_unit_test(test_shutdown_under_a_blocked_client),
  MP_TEST_METHODS(test_client_killed_mid_call),
  cmocka_unit_test(test_gone_client_takes_nothing),
  MP_TEST_METHODS(test_client_killed_holding_a_reply_proxy),
  MP_TEST_METHODS(test_clients_killed_while_nesting),
  MP_TEST_METHODS(test_server_killed_under_clients),
};

MP_TEST_MAIN(tests)
