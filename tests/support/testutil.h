/* SPDX-License-Identifier: MIT */
/* Test support shared by every cmocka test program.
 *
 * MP_TEST_MAIN(tests) runs the group and then checks that the program
 * leaked nothing: every fd open now was open before the tests ran, no child
 * process of ours is left (running or zombie), and every shared-memory
 * segment this program or its children created (shm_open is wrapped and
 * logs them) is gone.  A leak fails the program even when every test
 * passed. */
#ifndef MPROC_TESTUTIL_H
#define MPROC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

#include <mproc.h>

/* Assert that an mproc call returned 0; on failure print the code's name
 * and mp_errdetail(). */
#define MP_ASSERT_OK(expr)                                                   \
  do {                                                                       \
    int mp__rc = (expr);                                                     \
    if (mp__rc != 0)                                                         \
      fail_msg("%s -> %s (%d): %s", #expr, mp_err_name(mp__rc), mp__rc,      \
               mp_errdetail());                                              \
  } while (0)

/* Assert that an mproc call returned exactly the code `code`. */
#define MP_ASSERT_ERR(expr, code)                                            \
  do {                                                                       \
    int mp__rc = (expr);                                                     \
    if (mp__rc != (code))                                                    \
      fail_msg("%s -> %s (%d), expected %s (%d): %s", #expr,                 \
               mp_err_name(mp__rc), mp__rc, mp_err_name(code), (code),       \
               mp_errdetail());                                              \
  } while (0)

/* The link's --wrap=shm_open pair (testutil.c logs each segment created,
 * for the leak check; __real_shm_open is libc's). */
int __wrap_shm_open(const char *name, int oflag, mode_t mode);
int __real_shm_open(const char *name, int oflag, mode_t mode);

/* Number of open fds of this process. */
int mp_test_count_fds(void);

/* Run `tests` (a cmocka group) with leak checks around it; returns the exit
 * status for main.  A forkserver the tests started is stopped first (it is
 * this program's child until exit by design); nothing else is excused. */
int mp_test_run(const char *group, const struct CMUnitTest *tests, size_t n);

/* The same with `setup()` run first (its non-zero return ends the program
 * with that status): for programs that must, say, become a subreaper. */
#define MP_TEST_MAIN_WITH(tests, setup)                                      \
  int main(void)                                                             \
  {                                                                          \
    int mp__setup_rc = (setup)();                                            \
    if (mp__setup_rc)                                                        \
      return mp__setup_rc;                                                   \
    return mp_test_run(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));   \
  }

#define MP_TEST_MAIN(tests)                                                  \
  int main(void)                                                             \
  {                                                                          \
    return mp_test_run(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));   \
  }

/* The start methods that make OS processes, NULL-terminated ("fork",
 * "spawn", "forkserver"); tests that also apply to "threading" add it. */
extern const char *const mp_test_start_methods[];

/* Directory of the build tree (MPROC_BUILD_DIR) or "." */
const char *mp_test_build_dir(void);

/* ---- one test body under every start method ------------------------------
 * MP_TEST_METHODS(f) expands to one cmocka test per start method that makes
 * OS processes, named "f[fork]", "f[spawn]", "f[forkserver]", so a failure
 * names its method; MP_TEST_METHODS_THREADING(f) adds "f[threading]".  The
 * body reads its method with mp_test_method(state) or its context with
 * mp_test_context(state). */
#define MP__TEST_ONE(f, m) {#f "[" m "]", f, NULL, NULL, (void *)(m)}
#define MP_TEST_METHODS(f)                                                     MP__TEST_ONE(f, "fork"), MP__TEST_ONE(f, "spawn"),                               MP__TEST_ONE(f, "forkserver")
#define MP_TEST_METHODS_THREADING(f)                                           MP_TEST_METHODS(f), MP__TEST_ONE(f, "threading")
const char *mp_test_method(void **state);
mp_context *mp_test_context(void **state);

/* Seconds on CLOCK_MONOTONIC (for a test's bounds and deadlines). */
double mp_test_now(void);

/* ---- children the test forks itself --------------------------------------
 * Wait for `pid` at most `timeout` seconds (EINTR retried); a child still
 * running then is SIGKILLed and reaped, and the test fails.  Returns its
 * exit code, or 128 + the signal that ended it. */
int mp_test_wait_child(pid_t pid, double timeout);

/* Fork a child that takes `l` (a Lock or an RLock) and is SIGKILLed while
 * it holds it; returns once the child is dead and reaped. */
void mp_test_kill_holder(mp_lock *l);

/* A connected pair: a Pipe (duplex or not), asserted to succeed. */
void mp_test_pipe(mp_conn **r, mp_conn **w, int duplex);

/* Threads of this process named `name` (their comm); *blocked (if one is
 * found and blocked is not NULL) is the signal mask of the last one. */
int mp_test_threads_named(const char *name, unsigned long long *blocked);
/* Whether freed big blocks (obj/alloc_big.c) are kept for reuse: 0 where
 * every block is malloc's (AddressSanitizer).  The cache is left empty. */
int mp_test_big_cache_on(void);

/* Receive one message on `c` within `timeout` seconds and assert that it is
 * exactly the `wlen` bytes at `want`. */
void mp_test_recv_expect(mp_conn *c, const void *want, size_t wlen,
                         double timeout);

/* Assert that repr(o) is exactly `want`. */
void mp_test_assert_repr(const mp_obj *o, const char *want);

#endif
