/* SPDX-License-Identifier: MIT */
/* SharedMemory: create / attach / close / unlink, names, sizes, passing in
 * Process args under every start method, and the error codes.  (The
 * tracker's clean-up after SIGKILL is test_tracker.c.) */
#define _GNU_SOURCE
#include "testutil.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc/proc_internal.h"

static int
exists(const char *name)
{
  char path[300];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  struct stat st;
  return stat(path, &st) == 0;
}

static void
test_create_attach_unlink(void **state)
{
  char name[64];
  snprintf(name, sizeof name, "mproc-test-%d", (int)getpid());
  mp_shm *a, *b;
  MP_ASSERT_ERR(mp_shm_new(&a, name, &(mp_shm_opts){.create = 1}), MP_EINVAL);
  MP_ASSERT_ERR(mp_shm_new(&a, name, NULL), MP_ENOENT);
  MP_ASSERT_OK(mp_shm_new(&a, name, &(mp_shm_opts){.create = 1, .size = 100}));
  assert_true(exists(name));
  assert_string_equal(mp_shm_name(a), name);
  assert_int_equal(mp_shm_size(a), 100);
  assert_true(mp_resource_tracker_pid() > 0);
  MP_ASSERT_ERR(mp_shm_new(&b, name, &(mp_shm_opts){.create = 1, .size = 10}),
                MP_EEXIST);
  /* attach: whole segment, a leading '/' is accepted */
  char slash[80];
  snprintf(slash, sizeof slash, "/%s", name);
  MP_ASSERT_OK(mp_shm_new(&b, slash, NULL));
  assert_int_equal(mp_shm_size(b), 100);
  memcpy(mp_shm_buf(a), "shared bytes", 13);
  assert_string_equal(mp_shm_buf(b), "shared bytes");
  MP_ASSERT_OK(mp_shm_close(b));
  assert_null(mp_shm_buf(b));
  MP_ASSERT_OK(mp_shm_close(b)); /* idempotent */
  mp_shm_free(b);
  MP_ASSERT_OK(mp_shm_new(&b, name, &(mp_shm_opts){.size = 50}));
  assert_int_equal(mp_shm_size(b), 50);
  mp_shm_free(b);
  MP_ASSERT_ERR(mp_shm_new(&b, name, &(mp_shm_opts){.size = 101}), MP_EINVAL);
  MP_ASSERT_OK(mp_shm_unlink(a));
  assert_false(exists(name));
  MP_ASSERT_ERR(mp_shm_unlink(a), MP_ENOENT);
  /* the mapping outlives the name */
  assert_string_equal(mp_shm_buf(a), "shared bytes");
  mp_shm_free(a);

  /* names */
  MP_ASSERT_ERR(mp_shm_new(&a, NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_shm_new(&a, "a/b", &(mp_shm_opts){.create = 1, .size = 1}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_shm_new(&a, "", &(mp_shm_opts){.create = 1, .size = 1}),
                MP_EINVAL);
  char longname[300];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  MP_ASSERT_ERR(mp_shm_new(&a, longname, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_shm_new(NULL, "x", NULL), MP_EINVAL);
  MP_ASSERT_OK(mp_shm_new(&a, NULL, &(mp_shm_opts){.create = 1, .size = 1}));
  assert_memory_equal(mp_shm_name(a), "mp-", 3);
  MP_ASSERT_OK(mp_shm_new(&b, NULL, &(mp_shm_opts){.create = 1, .size = 1}));
  assert_string_not_equal(mp_shm_name(a), mp_shm_name(b));
  MP_ASSERT_OK(mp_shm_unlink(a));
  MP_ASSERT_OK(mp_shm_unlink(b));
  mp_shm_free(a);
  mp_shm_free(b);
  MP_ASSERT_ERR(mp_shm_close(NULL), MP_EINVAL);
  mp_shm_free(NULL);
}

static void
test_resource_api(void **state)
{
  MP_ASSERT_ERR(mp_resource_register("semaphore", "x"), MP_EINVAL);
  MP_ASSERT_ERR(mp_resource_register("file", "relative"), MP_EINVAL);
  MP_ASSERT_ERR(mp_resource_register("shm", "a/b"), MP_EINVAL);
  MP_ASSERT_ERR(mp_resource_register("shm", ""), MP_EINVAL);
  MP_ASSERT_ERR(mp_resource_register(NULL, "x"), MP_EINVAL);
  MP_ASSERT_OK(mp_resource_register("file", "/nonexistent/mproc-x"));
  MP_ASSERT_OK(mp_resource_unregister("file", "/nonexistent/mproc-x"));
}

/* args: (shm,) -- the child writes and unlinks */
static int
t_write_shm(mp_obj *args)
{
  mp_shm *m = mp_shm_from_obj(mp_seq_item(args, 0));
  if (!m || mp_shm_size(m) != 4096)
    return 1;
  const char *msg = "written by the child";
  memcpy((char *)mp_shm_buf(m) + 100, msg, strlen(msg) + 1);
  /* attach by name too */
  mp_shm *n;
  if (mp_shm_new(&n, mp_shm_name(m), NULL) != 0)
    return 2;
  int ok = strcmp((char *)mp_shm_buf(n) + 100, msg) == 0;
  mp_shm_free(n);
  return ok ? 0 : 3;
}

static void
test_in_process_args(void **state)
{
  static const char *const methods[] = {"fork", "spawn", "forkserver",
                                        "threading", NULL};
  for (int i = 0; methods[i]; i++) {
    mp_shm *m;
    MP_ASSERT_OK(mp_shm_new(&m, NULL,
                            &(mp_shm_opts){.create = 1, .size = 4096}));
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(methods[i], &ctx));
    mp_process *p;
    mp_obj *args = MP_TUPLE(mp_shm_obj(m));
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){
                                             .target = t_write_shm,
                                             .args = args}));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_OK(mp_process_join(p, 60));
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(p);
    assert_string_equal((char *)mp_shm_buf(m) + 100, "written by the child");
    MP_ASSERT_OK(mp_shm_unlink(m));
    mp_shm_free(m);
  }
}

/* The tracker killed behind our back: the next registration starts a new
 * one, which then does the job. */
static void
test_tracker_relaunch(void **state)
{
  mp_shm *m;
  MP_ASSERT_OK(mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = 1}));
  int old = mp_resource_tracker_pid();
  assert_true(old > 0);
  int pfd = (int)syscall(SYS_pidfd_open, old, 0);
  assert_true(pfd >= 0);
  assert_int_equal(kill(old, SIGKILL), 0);
  struct pollfd p = {.fd = pfd, .events = POLLIN};
  assert_int_equal(poll(&p, 1, 30000), 1); /* it has exited */
  close(pfd);
  mp_shm *n;
  MP_ASSERT_OK(mp_shm_new(&n, NULL, &(mp_shm_opts){.create = 1, .size = 1}));
  int now = mp_resource_tracker_pid();
  assert_true(now > 0 && now != old);
  MP_ASSERT_OK(mp_shm_unlink(m));
  MP_ASSERT_OK(mp_shm_unlink(n));
  mp_shm_free(m);
  mp_shm_free(n);
}

static void
test_teardown(void **state)
{
  mp__forkserver_stop();
  mp_resource_tracker_stop();
  assert_int_equal(mp_resource_tracker_pid(), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_create_attach_unlink),
    cmocka_unit_test(test_resource_api),
    cmocka_unit_test(test_in_process_args),
    cmocka_unit_test(test_tracker_relaunch),
    cmocka_unit_test(test_teardown),
};

MP_TEST_MAIN(tests)
