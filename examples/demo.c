/* SPDX-License-Identifier: MIT */
/* The mproc demo (`make demo`): a short tour of the library.
 *
 * 1. The value model: values Python's multiprocessing would pickle, built in
 *    C in one expression, pickled the way CPython pickles them, and printed
 *    back (after a round trip) exactly as Python's repr prints them.
 * 2. Processes under every start method, talking over a Pipe.
 * 3. Shared state: a Value whose lock's holder is killed, then incremented
 *    under that lock by four processes (MP_EOWNERDEAD means "acquired").
 * 4. Listener and Client with an authkey (CPython's handshake). */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

static void
show(const char *what, mp_obj *v)
{
  if (!v) {
    printf("  %-28s (could not build: %s)\n", what, mp_errdetail());
    failures++;
    return;
  }
  void *p;
  size_t n;
  int rc = mp_pickle_dumps(v, NULL, &p, &n);
  if (rc) {
    printf("  %-28s dumps failed: %s\n", what, mp_errdetail());
    failures++;
    mp_obj_free(v);
    return;
  }
  mp_obj *back = NULL;
  rc = mp_pickle_loads(p, n, NULL, &back);
  char *r = rc ? NULL : mp_obj_repr(back);
  char hex[3 * 12 + 1] = "";
  for (size_t i = 0; i < n && i < 12; i++)
    snprintf(hex + 3 * i, 4, "%02x ", ((unsigned char *)p)[i]);
  /* (content: a decoded object record is a new object, == only to itself) */
  int same = back && mp_obj_equal_content(v, back);
  printf("  %-28s %4zu bytes  %-37s -> %s%s\n", what, n, hex,
         r ? r : mp_errdetail(), same ? "" : "  (!)");
  if (!r || !same)
    failures++;
  mp_free(r);
  mp_free(p);
  mp_obj_free(back);
  mp_obj_free(v);
}

static void
section_values(void)
{
  printf("1. Values and pickles (CPython's protocol 4; repr as Python "
         "prints it)\n");
  show("a list", MP_LIST(mp_float_new(2.25), mp_none(), mp_str_new("junk"),
                         mp_global_new("builtins", "float")));
  show("a dict", MP_DICT(mp_float_new(0.25), mp_none(), mp_int_new(1),
                         mp_str_new("1"), mp_str_new("2"), mp_int_new(2)));
  show("bytes", mp_bytes_new("thank you", 9));
  show("a tuple", MP_TUPLE(mp_float_new(1.875), mp_float_new(-6.25)));
  show("quotes", MP_LIST(mp_str_new("it's"), mp_str_new("say \"hi\"")));
  show("text", mp_str_new("na\xc3\xafve \xe2\x82\xac \xf0\x9f\x90\x8d\t"));
  static const unsigned char two_70[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};
  show("big ints and floats",
       MP_TUPLE(mp_int_from_bytes(two_70, sizeof two_70),
                mp_uint_new(UINT64_MAX), mp_float_new(1e16),
                mp_float_new(1e-5), mp_float_new(-0.0)));
  show("sets", MP_LIST(MP_SET(mp_int_new(3)), MP_FROZENSET(mp_str_new("a")),
                       mp_set_new()));
  show("an exception (record)",
       mp_record_take(MP_RECORD_REDUCE, mp_global_new("builtins", "KeyError"),
                      MP_TUPLE(mp_str_new("missing"))));
  show("a bytearray (protocol 5)", mp_bytearray_new("ab", 2));

  /* 1 == 1.0 == True as dict keys, as in Python */
  mp_obj *d = MP_DICT(mp_int_new(1), mp_str_new("int"));
  mp_dict_set_take(d, mp_float_new(1.0), mp_str_new("float"));
  mp_dict_set_take(d, mp_bool_new(1), mp_str_new("bool"));
  show("{1: .., 1.0: .., True: ..}", d);

  /* Hostile input is refused, never trusted */
  static const unsigned char evil[] = {0x80, 4, 0x8e, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0x7f, '.'};
  mp_obj *v = NULL;
  int rc = mp_pickle_loads(evil, sizeof evil, NULL, &v);
  printf("  %-28s -> %s: %s\n", "a 9-EiB BINBYTES8 claim", mp_err_name(rc),
         mp_errdetail());
  if (rc != MP_EMALFORMED)
    failures++;
  mp_obj_free(v);
}

/* ---- 2. processes and pipes --------------------------------------------- */

/* A child: receives a value on the Connection in its args, answers with a
 * tuple of who it is and what it got. */
static int
echo_child(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *got = NULL;
  if (!c || mp_conn_recv(c, &got, 10) != 0)
    return 1;
  mp_obj *reply = MP_TUPLE(mp_str_new(mp_process_name(mp_current_process())),
                           got);
  int rc = reply ? mp_conn_send(c, reply) : MP_ENOMEM;
  mp_obj_free(reply);
  return rc ? 2 : 0;
}

static void
section_processes(void)
{
  printf("\n2. Processes and pipes (start methods, default first:");
  const char *const *methods = mp_get_all_start_methods();
  for (size_t i = 0; methods[i]; i++)
    printf(" %s", methods[i]);
  printf(")\n");
  for (size_t i = 0; methods[i]; i++) {
    mp_context *ctx;
    mp_conn *here, *there;
    mp_process *p = NULL;
    if (mp_get_context(methods[i], &ctx) || mp_pipe(&here, &there, 1)) {
      failures++;
      continue;
    }
    mp_obj *args = MP_TUPLE(mp_conn_obj(there));
    int rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = echo_child,
                                                         .args = args});
    mp_obj_free(args);
    if (rc == 0)
      rc = mp_process_start(p);
    mp_obj *hello = MP_LIST(mp_str_new("hello"), mp_float_new(2.5));
    mp_obj *reply = NULL;
    if (rc == 0)
      rc = mp_conn_send(here, hello);
    if (rc == 0)
      rc = mp_conn_recv(here, &reply, 10);
    int code = -1;
    if (p && mp_process_join(p, 10) == 0)
      mp_process_exitcode(p, &code);
    char *r = reply ? mp_obj_repr(reply) : NULL;
    printf("  %-10s child answered %s, exit code %d\n", methods[i],
           r ? r : mp_err_name(rc), code);
    if (rc || code != 0)
      failures++;
    mp_free(r);
    mp_obj_free(reply);
    mp_obj_free(hello);
    mp_process_free(p);
    mp_conn_free(here);
    mp_conn_free(there);
  }
}

/* ---- 3. shared state --------------------------------------------------- */

/* A child: 1000 increments of a Value under its lock.  A previous holder of
 * the lock may have died (one does, below): then the acquire returns
 * MP_EOWNERDEAD, which means "acquired" -- test it with mp_acquired(), not
 * `!= 0`, or this process would return holding the lock (sync.h). */
static int
count_child(mp_obj *args)
{
  mp_value *v = mp_value_from_obj(mp_seq_item(args, 0));
  mp_value *heirs = mp_value_from_obj(mp_seq_item(args, 1));
  if (!v || !heirs)
    return 1;
  mp_lock *l = mp_value_get_lock(v);
  for (int i = 0; i < 1000; i++) {
    int64_t x, n;
    int rc = mp_lock_acquire(l, MP_FOREVER);
    if (!mp_acquired(rc))
      return 2;
    if (rc == MP_EOWNERDEAD) {
      /* here the state would be repaired; the dead holder changed nothing,
       * so just count the heir (a RawValue guarded by the same lock) */
      mp_value_get_int(heirs, &n);
      mp_value_set_int(heirs, n + 1);
    }
    mp_value_get_int(v, &x); /* += 1 needs the lock around it */
    mp_value_set_int(v, x + 1);
    mp_lock_release(l);
  }
  return 0;
}

static int
hold_forever(mp_obj *args)
{
  mp_lock *l = mp_lock_from_obj(mp_seq_item(args, 0));
  mp_event *held = mp_event_from_obj(mp_seq_item(args, 1));
  if (!l || !held || !mp_acquired(mp_lock_acquire(l, 10)))
    return 1;
  mp_event_set(held);
  for (;;)
    pause(); /* until killed */
}

static void
section_shared(void)
{
  printf("\n3. Shared state\n");
  mp_context *ctx;
  mp_value *v, *heirs;
  mp_event *held;
  if (mp_get_context("spawn", &ctx) || mp_value_new(&v, 'i', NULL, NULL) ||
      mp_value_new(&heirs, 'i', NULL, &(mp_value_opts){.raw = 1}) ||
      mp_event_new(&held)) {
    failures++;
    return;
  }
  mp_lock *l = mp_value_get_lock(v);

  /* A child takes the Value's lock and is killed with SIGKILL holding it:
   * that does not wedge the lock. */
  mp_process *p = NULL;
  mp_obj *args = MP_TUPLE(mp_lock_obj(l), mp_event_obj(held));
  int rc = mp_process_new(&p, NULL, &(mp_process_opts){.target = hold_forever,
                                                        .args = args});
  mp_obj_free(args);
  if (rc == 0)
    rc = mp_process_start(p);
  if (rc == 0)
    rc = mp_event_wait(held, 10);
  int busy = rc == 0 ? mp_lock_acquire(l, 0.05) : rc;
  if (mp_acquired(busy))
    mp_lock_release(l);
  if (rc == 0)
    mp_process_kill(p);
  int code = 0;
  mp_process_join(p, 10);
  mp_process_exitcode(p, &code);
  mp_process_free(p);
  printf("  a child holds the Value's lock: acquire -> %s; child killed (exit "
         "code %d)\n",
         mp_err_name(busy), code);
  if (busy != MP_ETIMEDOUT || code != -9)
    failures++;

  /* Then four processes count under that lock: the first to take it is
   * told MP_EOWNERDEAD, holds it, and carries on. */
  mp_process *ps[4] = {0};
  for (int i = 0; i < 4; i++) {
    args = MP_TUPLE(mp_value_obj(v), mp_value_obj(heirs));
    if (mp_process_new(&ps[i], ctx, &(mp_process_opts){.target = count_child,
                                                        .args = args}) ||
        mp_process_start(ps[i]))
      failures++;
    mp_obj_free(args);
  }
  for (int i = 0; i < 4; i++) {
    int c = -1;
    if (mp_process_join(ps[i], 30) || mp_process_exitcode(ps[i], &c) || c)
      failures++;
    mp_process_free(ps[i]);
  }
  int64_t total = -1, n = -1;
  mp_value_get_int(v, &total);
  mp_value_get_int(heirs, &n);
  printf("  then 4 spawned processes x 1000 locked increments of it: %lld; in "
         "%lld of\n  them the first acquire -> MP_EOWNERDEAD, which means "
         "acquired: it carried on\n",
         (long long)total, (long long)n);
  if (total != 4000 || n != 1 || mp_lock_locked(l))
    failures++;
  mp_event_free(held);
  mp_value_free(heirs);
  mp_value_free(v);
}

/* ---- 4. Listener and Client -------------------------------------------- */

static int
client_child(mp_obj *args)
{
  const char *address, *key;
  size_t keylen;
  if (mp_str_get(mp_seq_item(args, 0), &address, NULL) ||
      mp_str_get(mp_seq_item(args, 1), &key, &keylen))
    return 1;
  mp_conn *c;
  if (mp_client(&c, address, &(mp_client_opts){.authkey = key,
                                               .authkey_len = keylen}))
    return 2;
  mp_obj *msg = MP_DICT(mp_str_new("from"), mp_str_new("client"),
                        mp_str_new("n"), mp_int_new(42));
  int rc = mp_conn_send(c, msg);
  mp_obj_free(msg);
  mp_conn_free(c);
  return rc ? 3 : 0;
}

static void
section_listener(void)
{
  printf("\n4. Listener and Client (CPython's HMAC handshake)\n");
  static const char key[] = "secret password";
  mp_listener *l;
  if (mp_listener_new(&l, "127.0.0.1:0",
                      &(mp_listener_opts){.authkey = key,
                                          .authkey_len = sizeof key - 1})) {
    failures++;
    return;
  }
  mp_process *p = NULL;
  mp_obj *args = MP_TUPLE(mp_str_new(mp_listener_address(l)),
                          mp_str_new(key));
  int rc = mp_process_new(&p, NULL, &(mp_process_opts){.target = client_child,
                                                        .args = args});
  mp_obj_free(args);
  if (rc == 0)
    rc = mp_process_start(p);
  mp_conn *c = NULL;
  mp_obj *got = NULL;
  if (rc == 0)
    rc = mp_listener_accept(l, &c, 10);
  if (rc == 0)
    rc = mp_conn_recv(c, &got, 10);
  char *r = got ? mp_obj_repr(got) : NULL;
  printf("  listening on %s; an authenticated client sent %s\n",
         mp_listener_address(l), r ? r : mp_err_name(rc));
  if (rc)
    failures++;
  mp_free(r);
  mp_obj_free(got);
  mp_conn_free(c);
  mp_process_join(p, 10);
  mp_process_free(p);
  mp_listener_free(l);
}

int
main(void)
{
  printf("mproc %s demo\n\n", MPROC_VERSION_STRING);
  section_values();
  section_processes();
  section_shared();
  section_listener();
  printf("\n%s\n", failures ? "demo: something went wrong" : "demo: ok");
  return failures ? 1 : 0;
}
