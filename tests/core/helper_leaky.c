/* SPDX-License-Identifier: MIT */
/* A cmocka program that leaks what MPROC_LEAK names ("fd", "child",
 * "shm", "none"): test_leakcheck.sh checks that MP_TEST_MAIN catches each. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"

static void
test_leak(void **state)
{
  const char *what = getenv("MPROC_LEAK");
  assert_non_null(what);
  if (strcmp(what, "fd") == 0) {
    assert_true(open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0);
  } else if (strcmp(what, "child") == 0) {
    pid_t pid = fork();
    if (pid == 0) {
      /* outlive the check, then go away by ourselves (not holding the
       * caller's output pipe meanwhile) */
      close(1);
      close(2);
      alarm(3);
      pause();
      _exit(0);
    }
    assert_true(pid > 0);
  } else if (strcmp(what, "shm") == 0) {
    mp_shm *m;
    MP_ASSERT_OK(mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = 16}));
    /* closed but never unlinked: a leak (the tracker would clean it only
     * when the program ends) */
    mp_shm_free(m);
  }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_leak),
};

MP_TEST_MAIN(tests)
