/* SPDX-License-Identifier: MIT */
/* Processes, contexts and start methods: every Process behaviour under each
 * start method it applies to, with each error code. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "proc/proc_internal.h"

static const char *const methods[] = {"fork", "spawn", "forkserver",
                                      "threading", NULL};
static const char *const os_methods[] = {"fork", "spawn", "forkserver", NULL};

static int
sanitized(void)
{
  const char *s = getenv("MPROC_SANITIZE");
  return s && *s;
}

static mp_process *
make(const char *method, mp_target_fn fn, mp_obj *args)
{
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context(method, &ctx));
  mp_process *p = NULL;
  MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = fn,
                                                           .args = args}));
  mp_obj_free(args);
  return p;
}

static int
run(const char *method, mp_target_fn fn, mp_obj *args)
{
  mp_process *p = make(method, fn, args);
  MP_ASSERT_OK(mp_process_start(p));
  MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
  int code = -1000;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  MP_ASSERT_OK(mp_process_close(p));
  mp_process_free(p);
  return code;
}

/* ---- targets --------------------------------------------------------------- */

static int
t_return7(mp_obj *args)
{
  (void)args;
  return 7;
}

static int
t_exit5(mp_obj *args)
{
  (void)args;
  mp_exit(5);
}

static volatile int thread_release;

static int
t_forever(mp_obj *args)
{
  (void)args;
  if (mp_current_process() != NULL && mp_process_pid(mp_current_process()) !=
                                          getpid()) {
    /* threading: wait for the flag instead */
    while (!__atomic_load_n(&thread_release, __ATOMIC_ACQUIRE))
      usleep(1000);
    return 0;
  }
  for (;;)
    pause();
}

/* args: (42, 'bob', b'\x00\xff') */
static int
t_check_args(mp_obj *args)
{
  int64_t v;
  const char *s;
  size_t n;
  const void *b;
  size_t bl;
  if (mp_obj_type(args) != MP_T_TUPLE || mp_obj_len(args, &n) || n != 3)
    return 10;
  if (mp_int_get(mp_seq_item(args, 0), &v) || v != 42)
    return 11;
  if (mp_str_get(mp_seq_item(args, 1), &s, &n) || strcmp(s, "bob"))
    return 12;
  if (mp_bytes_get(mp_seq_item(args, 2), &b, &bl) || bl != 2 ||
      memcmp(b, "\x00\xff", 2))
    return 13;
  return 0;
}

/* args: (expected name, parent pid, expected getppid or 0, method) */
static int
t_identity(mp_obj *args)
{
  const char *name, *method;
  size_t n;
  int64_t ppid, real_ppid;
  mp_str_get(mp_seq_item(args, 0), &name, &n);
  mp_int_get(mp_seq_item(args, 1), &ppid);
  mp_int_get(mp_seq_item(args, 2), &real_ppid);
  mp_str_get(mp_seq_item(args, 3), &method, &n);
  mp_process *me = mp_current_process();
  if (strcmp(mp_process_name(me), name))
    return 20;
  if (strcmp(method, "threading") && strcmp(mp__log_process_name(), name))
    return 19; /* log lines carry the child's name */
  mp_process *par = mp_parent_process();
  if (!par)
    return 21;
  if (strcmp(method, "threading") == 0) {
    if (strcmp(mp_process_name(par), "MainProcess"))
      return 22;
    return mp_process_pid(me) == getpid() ? 23 : 0;
  }
  if (mp_process_pid(par) != ppid || strcmp(mp_process_name(par),
                                            "MainProcess"))
    return 24;
  if (getppid() != real_ppid)
    return 25;
  if (mp_process_is_alive(par) != 1)
    return 26;
  /* the parent's sentinel: not ready while it lives (a fork child opens
   * it at this first use) */
  int sentinel = mp_process_sentinel(par);
  struct pollfd pfd = {sentinel, POLLIN, 0};
  if (sentinel < 0 || poll(&pfd, 1, 0) != 0 ||
      mp_process_sentinel(par) != sentinel)
    return 31;
  if (mp_process_pid(me) != getpid())
    return 27;
  /* Only the creator: the current process cannot be started or joined. */
  if (mp_process_start(me) != MP_ENOTOWNER)
    return 28;
  if (mp_process_join(me, 0) != MP_EDEADLK)
    return 29;
  if (mp_process_terminate(par) != MP_ENOTOWNER)
    return 30;
  return 0;
}

static int
t_daemon_child(mp_obj *args)
{
  (void)args;
  if (!mp_process_daemon(mp_current_process()))
    return 40;
  mp_context *ctx;
  mp_get_context("fork", &ctx);
  mp_process *c;
  if (mp_process_new(&c, ctx, NULL))
    return 41;
  int rc = mp_process_start(c);
  mp_process_free(c);
  return rc == MP_EPERM ? 0 : 42;
}

/* args: (authkey bytes,) */
static int
t_authkey(mp_obj *args)
{
  const void *want;
  size_t wl, kl;
  const uint8_t *key;
  mp_bytes_get(mp_seq_item(args, 0), &want, &wl);
  if (mp_process_authkey(mp_current_process(), &key, &kl))
    return 50;
  return kl == wl && memcmp(key, want, kl) == 0 ? 0 : 51;
}

/* A child whose parent has died, asked about the parent only then (a fork
 * child opens the parent's sentinel at first use: it must not find some
 * other process under the dead parent's pid).  Reports into the Value. */
static int
t_orphan_checks(mp_obj *args)
{
  mp_value *v = mp_value_from_obj(mp_seq_item(args, 0));
  int64_t ppid;
  if (!v || mp_int_get(mp_seq_item(args, 1), &ppid))
    return 1;
  int rc = 0;
  for (int i = 0; getppid() == (pid_t)ppid && !rc; i++)
    if (i == 10000) /* 10 s */
      rc = 40;
    else
      usleep(1000);
  mp_process *par = mp_parent_process();
  if (rc)
    ;
  else if (!par || mp_process_pid(par) != ppid)
    rc = 41;
  else if (mp_process_is_alive(par) != 0)
    rc = 42;
  else if (mp_process_join(par, 10) != 0)
    rc = 43;
  else {
    int sentinel = mp_process_sentinel(par);
    struct pollfd pfd = {sentinel, POLLIN, 0};
    if (sentinel < 0 || poll(&pfd, 1, 0) != 1)
      rc = 44;
  }
  mp_value_set_int(v, rc);
  return 0;
}

/* A fork child asked for its parent's sentinel with no fd left to open it
 * in: the descriptor limit's error, with the detail; nothing is kept, and
 * is_alive, which needs no fd, still answers. */
static int
t_sentinel_no_fds(mp_obj *args)
{
  (void)args;
  mp_process *par = mp_parent_process();
  struct rlimit rl;
  if (!par || getrlimit(RLIMIT_NOFILE, &rl))
    return 1;
  rl.rlim_cur = 0;
  if (setrlimit(RLIMIT_NOFILE, &rl))
    return 2;
  if (mp_process_sentinel(par) != MP_EMFILE ||
      !strstr(mp_errdetail(), "cannot watch the parent"))
    return 3;
  if (mp_process_join(par, 0) != MP_EMFILE)
    return 4;
  if (mp_process_is_alive(par) != 1)
    return 5;
  return 0;
}

/* Waits for the parent's end through its sentinel (a fork child opens it
 * at this first use), then says so in the Value. */
static int
t_watch_parent(mp_obj *args)
{
  mp_value *v = mp_value_from_obj(mp_seq_item(args, 0));
  if (!v)
    return 1;
  int rc = mp_process_join(mp_parent_process(), 30);
  mp_value_set_int(v, rc == 0 ? 1 : 100 - rc);
  return 0;
}

/* Starts t_watch_parent under fork, says so in the Value (-1), then waits
 * to be killed. */
static int
t_start_watcher_and_wait(mp_obj *args)
{
  mp_context *ctx;
  mp_process *p;
  mp_value *v = mp_value_from_obj(mp_seq_item(args, 0));
  if (!v || mp_get_context("fork", &ctx) ||
      mp_process_new(&p, ctx,
                     &(mp_process_opts){
                         .target = t_watch_parent,
                         .args = MP_TUPLE(mp_obj_ref(mp_seq_item(args, 0)))}) ||
      mp_process_start(p))
    _exit(2);
  mp_value_set_int(v, -1);
  for (;;)
    pause();
}

/* Starts t_orphan_checks under args[1] and dies at once, unjoined. */
static int
t_orphaning(mp_obj *args)
{
  const char *method;
  size_t n;
  mp_context *ctx;
  mp_process *p;
  if (mp_str_get(mp_seq_item(args, 1), &method, &n) ||
      mp_get_context(method, &ctx) ||
      mp_process_new(&p, ctx,
                     &(mp_process_opts){
                         .target = t_orphan_checks,
                         .args = MP_TUPLE(mp_obj_ref(mp_seq_item(args, 0)),
                                          mp_int_new(getpid()))}) ||
      mp_process_start(p))
    _exit(2);
  _exit(0);
}

static int global_value = 1;
static int ctor_value;

/* Children run after every constructor of the program (and before main). */
__attribute__((constructor)) static void
set_ctor_value(void)
{
  ctor_value = 5;
}

static int
t_ctor(mp_obj *args)
{
  (void)args;
  return ctor_value;
}

static int
t_global(mp_obj *args)
{
  (void)args;
  return global_value;
}

/* The descriptors a spawn/forkserver child holds beyond stdio. */
static int
t_count_fds(mp_obj *args)
{
  (void)args;
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.' && atoi(e->d_name) > 2 && atoi(e->d_name) != dirfd(d))
      n++;
  closedir(d);
  return n;
}


/* args: (cwd,) -- the environment and working directory are the parent's,
 * without the library's boot marker. */
static int
t_env_cwd(mp_obj *args)
{
  const char *want;
  size_t n;
  char cwd[4096];
  mp_str_get(mp_seq_item(args, 0), &want, &n);
  if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, want))
    return 60;
  const char *v = getenv("MPROC_TEST_VAR");
  if (!v || strcmp(v, "xyz"))
    return 61;
  return getenv("__MPROC_BOOT") ? 62 : 0;
}

static int
t_grandchild_name(mp_obj *args)
{
  (void)args;
  mp_process *c;
  if (mp_process_new(&c, NULL, NULL))
    return 70;
  char want[256];
  snprintf(want, sizeof want, "%s:1", mp_process_name(mp_current_process()));
  int ok = strcmp(mp_process_name(c), want) == 0;
  mp_process_free(c);
  return ok ? 0 : 71;
}

/* A fork child holds copies of its parent's process objects: only their
 * creator may use them. */
static mp_process *g_sibling;

static int
t_not_owner(mp_obj *args)
{
  (void)args;
  int code;
  if (mp_process_join(g_sibling, 0) != MP_ENOTOWNER)
    return 80;
  if (mp_process_is_alive(g_sibling) != MP_ENOTOWNER)
    return 81;
  if (mp_process_exitcode(g_sibling, &code) != MP_ENOTOWNER)
    return 82;
  if (mp_process_kill(g_sibling) != MP_ENOTOWNER)
    return 83;
  if (mp_process_start(g_sibling) != MP_ENOTOWNER)
    return 84;
  return 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_contexts(void **state)
{
  (void)state;
  mp_context *ctx;
  MP_ASSERT_ERR(mp_get_context("nope", &ctx), MP_EINVAL);
  for (int i = 0; methods[i]; i++) {
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    assert_string_equal(mp_context_method(ctx), methods[i]);
  }
  const char *const *all = mp_get_all_start_methods();
  assert_string_equal(all[0], "fork");
  assert_string_equal(all[1], "spawn");
  assert_string_equal(all[2], "forkserver");
  assert_string_equal(all[3], "threading");
  assert_null(all[4]);
  assert_null(mp_get_start_method(1));
  MP_ASSERT_ERR(mp_set_start_method("bogus", 0), MP_EINVAL);
  MP_ASSERT_OK(mp_set_start_method("spawn", 0));
  assert_string_equal(mp_get_start_method(1), "spawn");
  MP_ASSERT_ERR(mp_set_start_method("fork", 0), MP_ESTATE);
  MP_ASSERT_OK(mp_set_start_method("forkserver", 1));
  assert_string_equal(mp_get_start_method(0), "forkserver");
  MP_ASSERT_OK(mp_set_start_method(NULL, 1));
  assert_null(mp_get_start_method(1));
  assert_string_equal(mp_get_start_method(0), "fork"); /* fixes it */
  MP_ASSERT_ERR(mp_set_start_method("spawn", 0), MP_ESTATE);
  MP_ASSERT_OK(mp_get_context(NULL, &ctx));
  assert_string_equal(mp_context_method(ctx), "fork");
  MP_ASSERT_OK(mp_set_start_method(NULL, 1));
}

static void
test_lifecycle(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    const char *m = methods[i];
    mp_process *p = make(m, t_return7, NULL);
    int code;
    assert_int_equal(mp_process_pid(p), 0);
    assert_int_equal(mp_process_is_alive(p), 0);
    MP_ASSERT_ERR(mp_process_join(p, 0), MP_ESTATE);
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), MP_ESTATE);
    MP_ASSERT_ERR(mp_process_sentinel(p), MP_ESTATE);
    MP_ASSERT_ERR(mp_process_terminate(p),
                  strcmp(m, "threading") ? MP_ESTATE : MP_ENOTSUP);
    MP_ASSERT_OK(mp_process_set_daemon(p, 0));
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_ERR(mp_process_start(p), MP_ESTATE);
    MP_ASSERT_ERR(mp_process_set_daemon(p, 1), MP_ESTATE);
    assert_true(mp_process_pid(p) > 0);
    int s = mp_process_sentinel(p);
    assert_true(s >= 0);
    struct pollfd pfd = {s, POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, -1), 1); /* readable once it ended */
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    MP_ASSERT_OK(mp_process_join(p, 0)); /* any number of times */
    assert_int_equal(mp_process_is_alive(p), 0);
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 7);
    if (strcmp(m, "threading")) {
      MP_ASSERT_OK(mp_process_terminate(p)); /* ended: a no-op */
      MP_ASSERT_OK(mp_process_kill(p));
    } else {
      MP_ASSERT_ERR(mp_process_kill(p), MP_ENOTSUP);
    }
    MP_ASSERT_OK(mp_process_close(p));
    MP_ASSERT_OK(mp_process_close(p));
    MP_ASSERT_ERR(mp_process_pid(p), MP_ECLOSED);
    MP_ASSERT_ERR(mp_process_join(p, 0), MP_ECLOSED);
    MP_ASSERT_ERR(mp_process_is_alive(p), MP_ECLOSED);
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), MP_ECLOSED);
    MP_ASSERT_ERR(mp_process_start(p), MP_ECLOSED);
    MP_ASSERT_ERR(mp_process_sentinel(p), MP_ECLOSED);
    MP_ASSERT_ERR(mp_process_set_daemon(p, 1), MP_ECLOSED);
    mp_process_free(p);
  }
}

static void
test_exit_codes(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    assert_int_equal(run(methods[i], t_return7, NULL), 7);
    assert_int_equal(run(methods[i], t_exit5, NULL), 5);
    assert_int_equal(run(methods[i], NULL, NULL), 0);
  }
}

static void
test_args(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++)
    assert_int_equal(run(methods[i], t_check_args,
                         MP_TUPLE(mp_int_new(42), mp_str_new("bob"),
                                  mp_bytes_new("\x00\xff", 2))),
                     0);
  mp_process *p;
  MP_ASSERT_ERR(mp_process_new(&p, NULL, &(mp_process_opts){
                                              .args = mp_none()}),
                MP_ETYPE);
}

static void
test_terminate_kill_close_busy(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    const char *m = methods[i];
    int threading = strcmp(m, "threading") == 0;
    mp_process *p = make(m, t_forever, NULL);
    char repr[256];
    mp_process_repr(p, repr, sizeof repr);
    assert_non_null(strstr(repr, " initial>"));
    __atomic_store_n(&thread_release, 0, __ATOMIC_RELEASE);
    MP_ASSERT_OK(mp_process_start(p));
    assert_int_equal(mp_process_is_alive(p), 1);
    MP_ASSERT_ERR(mp_process_join(p, 0.05), MP_ETIMEDOUT);
    MP_ASSERT_ERR(mp_process_close(p), MP_EBUSY);
    mp_process_repr(p, repr, sizeof repr);
    assert_non_null(strstr(repr, " started>"));
    int code;
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), MP_ESTATE);
    if (threading) {
      MP_ASSERT_ERR(mp_process_terminate(p), MP_ENOTSUP);
      MP_ASSERT_ERR(mp_process_kill(p), MP_ENOTSUP);
      __atomic_store_n(&thread_release, 1, __ATOMIC_RELEASE);
      MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
      MP_ASSERT_OK(mp_process_exitcode(p, &code));
      assert_int_equal(code, 0);
    } else {
      MP_ASSERT_OK(mp_process_terminate(p));
      MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
      MP_ASSERT_OK(mp_process_exitcode(p, &code));
      assert_int_equal(code, -SIGTERM);
      mp_process_repr(p, repr, sizeof repr);
      assert_non_null(strstr(repr, " stopped exitcode=-SIGTERM>"));
      MP_ASSERT_OK(mp_process_close(p));
      mp_process_free(p);
      p = make(m, t_forever, NULL);
      MP_ASSERT_OK(mp_process_start(p));
      MP_ASSERT_OK(mp_process_kill(p));
      MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
      MP_ASSERT_OK(mp_process_exitcode(p, &code));
      assert_int_equal(code, -SIGKILL);
    }
    MP_ASSERT_OK(mp_process_close(p));
    mp_process_free(p);
  }
}

static void
test_names_and_parents(void **state)
{
  (void)state;
  mp_process *me = mp_current_process();
  assert_string_equal(mp_process_name(me), "MainProcess");
  assert_null(mp_parent_process());
  assert_int_equal(mp_process_is_alive(me), 1);
  MP_ASSERT_ERR(mp_process_join(me, 0), MP_EDEADLK);
  MP_ASSERT_ERR(mp_process_start(me), MP_ENOTOWNER);
  int code;
  MP_ASSERT_ERR(mp_process_exitcode(me, &code), MP_ENOTOWNER);
  assert_int_equal(mp_process_pid(me), getpid());
  char repr[200];
  mp_process_repr(me, repr, sizeof repr);
  assert_string_equal(repr, "<_MainProcess name='MainProcess' started>");

  mp_process *a, *b;
  MP_ASSERT_OK(mp_process_new(&a, NULL, NULL));
  MP_ASSERT_OK(mp_process_new(&b, NULL, NULL));
  unsigned na, nb;
  assert_int_equal(sscanf(mp_process_name(a), "Process-%u", &na), 1);
  assert_int_equal(sscanf(mp_process_name(b), "Process-%u", &nb), 1);
  assert_int_equal(nb, na + 1);
  MP_ASSERT_OK(mp_process_set_name(a, "renamed"));
  assert_string_equal(mp_process_name(a), "renamed");
  mp_process_free(a);
  mp_process_free(b);

  for (int i = 0; methods[i]; i++) {
    const char *m = methods[i];
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(m, &ctx));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = t_identity,
                                             .name = "worker-x"}));
    int64_t real_ppid = getpid();
    if (strcmp(m, "forkserver") == 0) {
      /* start the server first so its pid is known */
      mp_process *warm = make(m, NULL, NULL);
      MP_ASSERT_OK(mp_process_start(warm));
      MP_ASSERT_OK(mp_process_join(warm, MP_FOREVER));
      mp_process_free(warm);
      real_ppid = mp__forkserver_pid();
    }
    mp_obj *args = MP_TUPLE(mp_str_new("worker-x"), mp_int_new(getpid()),
                            mp_int_new(real_ppid), mp_str_new(m));
    mp_obj_free(p->args);
    p->args = args;
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(p);
  }
}

static void
test_daemon(void **state)
{
  (void)state;
  for (int i = 0; os_methods[i]; i++) {
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(os_methods[i], &ctx));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = t_daemon_child,
                                             .daemon = MP_DAEMON_YES}));
    assert_int_equal(mp_process_daemon(p), 1);
    char repr[200];
    mp_process_repr(p, repr, sizeof repr);
    assert_non_null(strstr(repr, " daemon>"));
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    int code;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(p);
  }
}

static void
test_authkey(void **state)
{
  (void)state;
  const uint8_t *key;
  size_t len;
  MP_ASSERT_OK(mp_process_authkey(mp_current_process(), &key, &len));
  assert_int_equal(len, 32);
  for (int i = 0; methods[i]; i++) {
    MP_ASSERT_OK(mp_process_authkey(mp_current_process(), &key, &len));
    assert_int_equal(run(methods[i], t_authkey,
                         MP_TUPLE(mp_bytes_new(key, len))), 0);
    /* a key of its own */
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
        .target = t_authkey, .args = NULL, .authkey = "secret",
        .authkey_len = 6}));
    mp_obj_free(p->args);
    p->args = MP_TUPLE(mp_bytes_new("secret", 6));
    MP_ASSERT_ERR(mp_process_set_authkey(p, "", 0), MP_EINVAL);
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_ERR(mp_process_set_authkey(p, "x", 1), MP_ESTATE);
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    int code;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(p);
  }
}

static void
test_globals(void **state)
{
  (void)state;
  global_value = 9;
  assert_int_equal(run("fork", t_global, NULL), 9);
  assert_int_equal(run("threading", t_global, NULL), 9);
  /* A fresh image: a global set in the parent is not visible. */
  assert_int_equal(run("spawn", t_global, NULL), 1);
  assert_int_equal(run("forkserver", t_global, NULL), 1);
  global_value = 1;
  for (int i = 0; methods[i]; i++)
    assert_int_equal(run(methods[i], t_ctor, NULL), 5);
}

static void
test_error_codes(void **state)
{
  (void)state;
  mp_process *p;
  MP_ASSERT_ERR(mp_process_new(NULL, NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_process_new(&p, NULL, &(mp_process_opts){
                                             .authkey = "k",
                                             .authkey_len = 0}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_process_new(&p, NULL, &(mp_process_opts){.daemon = 7}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_set_forkserver_preload(NULL, 2), MP_EINVAL);
  const char *bad[] = {"a", NULL};
  MP_ASSERT_ERR(mp_set_forkserver_preload(bad, 2), MP_EINVAL);

  p = make("fork", t_return7, NULL);
  MP_ASSERT_ERR(mp_process_set_name(p, NULL), MP_EINVAL);
  MP_ASSERT_OK(mp_process_close(p)); /* never started: closes */
  MP_ASSERT_ERR(mp_process_terminate(p), MP_ECLOSED);
  MP_ASSERT_ERR(mp_process_kill(p), MP_ECLOSED);
  const uint8_t *key;
  size_t len;
  MP_ASSERT_ERR(mp_process_authkey(p, &key, &len), MP_ECLOSED);
  MP_ASSERT_ERR(mp_process_set_authkey(p, "k", 1), MP_ECLOSED);
  mp_process_free(p);

  /* Only the creator: a fork child and its copy of a sibling. */
  g_sibling = make("fork", t_forever, NULL);
  MP_ASSERT_OK(mp_process_start(g_sibling));
  assert_int_equal(run("fork", t_not_owner, NULL), 0);
  MP_ASSERT_OK(mp_process_kill(g_sibling));
  MP_ASSERT_OK(mp_process_join(g_sibling, MP_FOREVER));
  mp_process_free(g_sibling);
  g_sibling = NULL;
}

static void
test_env_cwd_nested_names(void **state)
{
  (void)state;
  char cwd[4096];
  assert_non_null(getcwd(cwd, sizeof cwd));
  /* A forkserver child has the environment of the server, which is the
   * program's as it was when the server started (as in Python). */
  mp__forkserver_stop();
  setenv("MPROC_TEST_VAR", "xyz", 1);
  for (int i = 0; methods[i]; i++) {
    assert_int_equal(run(methods[i], t_env_cwd, MP_TUPLE(mp_str_new(cwd))),
                     0);
    /* a child's children are named Process-N:1, Process-N:2 ... */
    assert_int_equal(run(methods[i], t_grandchild_name, NULL), 0);
  }
  unsetenv("MPROC_TEST_VAR");
}

static void
test_parent_dead_before_asked(void **state)
{
  (void)state;
  const char *grandchild[] = {"fork", "spawn", NULL};
  for (int i = 0; os_methods[i]; i++)
    for (int k = 0; grandchild[k]; k++) {
      mp_value *v;
      MP_ASSERT_OK(mp_value_new_int(&v, 'i', -1, NULL));
      assert_int_equal(run(os_methods[i], t_orphaning,
                           MP_TUPLE(mp_value_obj(v),
                                    mp_str_new(grandchild[k]))),
                       0);
      int64_t rc = -1;
      for (int t = 0; rc == -1 && t < 20000; t++) { /* 20 s */
        MP_ASSERT_OK(mp_value_get_int(v, &rc));
        if (rc == -1)
          usleep(1000);
      }
      if (rc != 0)
        fail_msg("%s child of a %s child: %d", grandchild[k], os_methods[i],
                 (int)rc);
      mp_value_free(v);
    }
}

static void
test_parent_sentinel_without_fds(void **state)
{
  (void)state;
  assert_int_equal(run("fork", t_sentinel_no_fds, NULL), 0);
}

/* The parent SIGKILLed at a random instant around its child's first look
 * at its sentinel (before the pidfd is open, between the open and the
 * getppid check, while it waits): the child's join returns every time. */
static void
test_parent_killed_while_child_opens_its_sentinel(void **state)
{
  (void)state;
  srand(4242);
  for (int i = 0; i < 30; i++) {
    mp_value *v;
    MP_ASSERT_OK(mp_value_new_int(&v, 'i', 0, NULL));
    mp_process *p = make("fork", t_start_watcher_and_wait,
                         MP_TUPLE(mp_value_obj(v)));
    MP_ASSERT_OK(mp_process_start(p));
    int64_t seen = 0;
    for (int t = 0; seen == 0 && t < 20000; t++) { /* its child started */
      MP_ASSERT_OK(mp_value_get_int(v, &seen));
      if (seen == 0)
        usleep(100);
    }
    assert_int_equal(seen, -1);
    usleep((useconds_t)(rand() % 1000)); /* around the child's first look */
    MP_ASSERT_OK(mp_process_kill(p));
    MP_ASSERT_OK(mp_process_join(p, 30));
    mp_process_free(p);
    for (int t = 0; seen == -1 && t < 20000; t++) { /* 20 s */
      MP_ASSERT_OK(mp_value_get_int(v, &seen));
      if (seen == -1)
        usleep(1000);
    }
    if (seen != 1)
      fail_msg("round %d: the child's join gave %d", i,
               seen == -1 ? 0 : (int)(100 - seen));
    mp_value_free(v);
  }
}

static void
test_child_fds(void **state)
{
  (void)state;
  /* Only the parent's pidfd (mp_parent_process's sentinel) beyond stdio. */
  assert_int_equal(run("spawn", t_count_fds, NULL), 1);
  assert_int_equal(run("forkserver", t_count_fds, NULL), 1);
}

static void
test_active_children(void **state)
{
  (void)state;
  for (int i = 0; os_methods[i]; i++) {
    mp_process *ps[3];
    for (int k = 0; k < 3; k++) {
      ps[k] = make(os_methods[i], t_forever, NULL);
      MP_ASSERT_OK(mp_process_start(ps[k]));
    }
    mp_process **list;
    size_t n;
    MP_ASSERT_OK(mp_active_children(&list, &n));
    assert_int_equal(n, 3);
    mp_process_list_free(list, n);
    for (int k = 0; k < 3; k++)
      MP_ASSERT_OK(mp_process_kill(ps[k]));
    /* freed while running or ended: the library still reaps them */
    for (int k = 0; k < 3; k++)
      mp_process_free(ps[k]);
    for (int tries = 0;; tries++) {
      MP_ASSERT_OK(mp_active_children(&list, &n));
      mp_process_list_free(list, n);
      if (n == 0)
        break;
      assert_true(tries < 100000);
      usleep(100);
    }
  }
}

static char
proc_state(int pid)
{
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *rp = strrchr(buf, ')');
  return rp ? rp[2] : 0;
}

static void
wait_sentinel(mp_process *p)
{
  struct pollfd pfd = {mp_process_sentinel(p), POLLIN, 0};
  assert_int_equal(poll(&pfd, 1, -1), 1);
}

/* Finished children are reaped by is_alive, active_children (tested above)
 * and by the next start: no zombies pile up. */
static void
test_reaping(void **state)
{
  (void)state;
  const char *ms[] = {"fork", "spawn"};
  for (int i = 0; i < 2; i++) {
    mp_process *p = make(ms[i], t_return7, NULL);
    MP_ASSERT_OK(mp_process_start(p));
    int pid = mp_process_pid(p);
    wait_sentinel(p);
    assert_int_equal(proc_state(pid), 'Z');
    assert_int_equal(mp_process_is_alive(p), 0);
    assert_int_equal(proc_state(pid), 0);
    mp_process_free(p);

    mp_process *q = make(ms[i], t_return7, NULL);
    MP_ASSERT_OK(mp_process_start(q));
    pid = mp_process_pid(q);
    wait_sentinel(q);
    mp_process_free(q); /* not joined, not closed */
    assert_int_equal(proc_state(pid), 'Z');
    mp_process *r = make(ms[i], t_return7, NULL);
    MP_ASSERT_OK(mp_process_start(r));
    assert_int_equal(proc_state(pid), 0);
    MP_ASSERT_OK(mp_process_join(r, MP_FOREVER));
    mp_process_free(r);
  }
}

/* A target that is not in any loaded object cannot be sent to a fresh
 * image: start refuses it, nothing is started. */
static void
test_bad_reference(void **state)
{
  (void)state;
  void *heap = malloc(64);
  const char *ms[] = {"spawn", "forkserver"};
  for (int i = 0; i < 2; i++) {
    mp_process *p = make(ms[i], (mp_target_fn)(uintptr_t)heap, NULL);
    MP_ASSERT_ERR(mp_process_start(p), MP_EBADREF);
    assert_int_equal(mp_process_pid(p), 0);
    assert_int_equal(mp_process_is_alive(p), 0);
    mp_process_free(p);
  }
  free(heap);
}

static void
test_many(void **state)
{
  (void)state;
  int count = sanitized() ? 100 : 1000;
  int fds = mp_test_count_fds();
  for (int i = 0; methods[i]; i++) {
    for (int k = 0; k < count; k++) {
      mp_process *p = make(methods[i], t_return7, NULL);
      MP_ASSERT_OK(mp_process_start(p));
      MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
      mp_process_free(p); /* no close: free releases everything */
    }
    mp_process **list;
    size_t n;
    MP_ASSERT_OK(mp_active_children(&list, &n));
    assert_int_equal(n, 0);
    mp_process_list_free(list, n);
    /* the forkserver holds its control socket (one fd) */
    assert_in_range(mp_test_count_fds(), fds, fds + 1);
  }
}

struct starter {
  const char *method;
  int n;
  int failures;
};

static void *
starter_main(void *arg)
{
  struct starter *s = arg;
  for (int k = 0; k < s->n; k++) {
    mp_context *ctx;
    mp_process *p = NULL;
    int code = -1;
    if (mp_get_context(s->method, &ctx) ||
        mp_process_new(&p, ctx, &(mp_process_opts){.target = t_return7}) ||
        mp_process_start(p) || mp_process_join(p, MP_FOREVER) ||
        mp_process_exitcode(p, &code) || code != 7)
      s->failures++;
    mp_process_free(p);
  }
  return NULL;
}

static void
test_threads_start_concurrently(void **state)
{
  (void)state;
  for (int i = 0; methods[i]; i++) {
    pthread_t t[4];
    struct starter s[4];
    for (int k = 0; k < 4; k++) {
      s[k] = (struct starter){methods[i], sanitized() ? 5 : 25, 0};
      pthread_create(&t[k], NULL, starter_main, &s[k]);
    }
    for (int k = 0; k < 4; k++) {
      pthread_join(t[k], NULL);
      assert_int_equal(s[k].failures, 0);
    }
  }
}

static void
test_function_refs(void **state)
{
  (void)state;
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/libplugin_proctarget.so",
           mp_test_build_dir());
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  mp_target_fn fn = (mp_target_fn)dlsym(h, "plugin_target");
  assert_non_null(fn);
  for (int i = 0; methods[i]; i++)
    assert_int_equal(run(methods[i], fn, NULL), 42);
  dlclose(h);

  /* Another program as the executable: the child refuses the reference. */
  snprintf(path, sizeof path, "%s/tests/helper_other", mp_test_build_dir());
  MP_ASSERT_ERR(mp_set_executable("/nonexistent/program"), MP_ENOENT);
  MP_ASSERT_OK(mp_set_executable(path));
  int code = run("spawn", t_return7, NULL);
  MP_ASSERT_OK(mp_set_executable(NULL));
  assert_int_equal(code, MP_EXIT_BADREF);
  assert_int_equal(run("spawn", t_return7, NULL), 7);
}

static int
t_plugin_loaded(mp_obj *args)
{
  const char *path;
  size_t n;
  mp_str_get(mp_seq_item(args, 0), &path, &n);
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (!h)
    return 1;
  dlclose(h);
  return 0;
}

static void
test_forkserver_preload(void **state)
{
  (void)state;
  mp__forkserver_stop();
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/libplugin_proctarget.so",
           mp_test_build_dir());
  const char *names[] = {"libdoes-not-exist.so", path};
  MP_ASSERT_OK(mp_set_forkserver_preload(names, 2));
  assert_int_equal(run("forkserver", t_plugin_loaded,
                       MP_TUPLE(mp_str_new(path))), 0);
  assert_int_equal(run("spawn", t_plugin_loaded, MP_TUPLE(mp_str_new(path))),
                   1);
  mp__forkserver_stop();
  MP_ASSERT_OK(mp_set_forkserver_preload(NULL, 0));
  assert_int_equal(run("forkserver", t_plugin_loaded,
                       MP_TUPLE(mp_str_new(path))), 1);
}

static void
test_cpu_count(void **state)
{
  (void)state;
  int n = mp_cpu_count(), u = mp_cpu_count_usable();
  assert_true(n >= 1);
  assert_true(u >= 1 && u <= n);
  cpu_set_t set;
  assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
  assert_true(u <= CPU_COUNT(&set));
}

static void
test_zz_stop_forkserver(void **state)
{
  (void)state;
  mp__forkserver_stop();
  assert_int_equal(mp__forkserver_pid(), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_contexts),
    cmocka_unit_test(test_lifecycle),
    cmocka_unit_test(test_exit_codes),
    cmocka_unit_test(test_args),
    cmocka_unit_test(test_terminate_kill_close_busy),
    cmocka_unit_test(test_names_and_parents),
    cmocka_unit_test(test_daemon),
    cmocka_unit_test(test_authkey),
    cmocka_unit_test(test_globals),
    cmocka_unit_test(test_error_codes),
    cmocka_unit_test(test_env_cwd_nested_names),
    cmocka_unit_test(test_child_fds),
    cmocka_unit_test(test_parent_dead_before_asked),
    cmocka_unit_test(test_parent_sentinel_without_fds),
    cmocka_unit_test(test_parent_killed_while_child_opens_its_sentinel),
    cmocka_unit_test(test_active_children),
    cmocka_unit_test(test_function_refs),
    cmocka_unit_test(test_forkserver_preload),
    cmocka_unit_test(test_reaping),
    cmocka_unit_test(test_bad_reference),
    cmocka_unit_test(test_many),
    cmocka_unit_test(test_threads_start_concurrently),
    cmocka_unit_test(test_cpu_count),
    cmocka_unit_test(test_zz_stop_forkserver),
};

MP_TEST_MAIN(tests)
