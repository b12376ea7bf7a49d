/* SPDX-License-Identifier: MIT */
/* Logging: silent by default, [LEVEL/ProcessName] lines on stderr, levels,
 * handlers, MPROC_LOG. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"
#include "testutil.h"

/* Run fn in a child with stderr captured; return what it wrote. */
static char *
capture_stderr(void (*fn)(void), const char *env_log)
{
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(p[1], 2);
    close(p[0]);
    close(p[1]);
    if (env_log)
      setenv("MPROC_LOG", env_log, 1);
    fn();
    _exit(0);
  }
  close(p[1]);
  static char buf[4096];
  size_t n = 0;
  ssize_t r;
  while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0)
    n += (size_t)r;
  buf[n] = '\0';
  close(p[0]);
  int st;
  waitpid(pid, &st, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  return buf;
}

static void
log_without_enabling(void)
{
  mp_log_warning("doomed");
  mp_log_error("also silent");
}

static void
log_to_stderr_info(void)
{
  mp_log_to_stderr(MP_LOG_NOTSET); /* Python's default: WARNING */
  mp_log_info("not shown");
  mp_log_warning("doomed");
  mp_log_set_level(MP_LOG_INFO);
  mp_log_info("child process calling self.run()");
  mp_log_debug("not shown either");
  mp__log_set_process_name("SyncManager-1");
  mp_log(MP_LOG_SUBWARNING, "sub %d", 25);
  mp_log(7, "level seven");
  mp_log_set_level(MP_LOG_OFF);
  mp_log_error("silenced again");
}

/* MPROC_LOG is read when the library loads: run a fresh program. */
static void
run_helper_log(void)
{
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
  if (n <= 0)
    _exit(3);
  path[n] = '\0';
  strcpy(strrchr(path, '/') + 1, "helper_log");
  execl(path, path, (char *)NULL);
  _exit(4);
}

static void
test_silent_by_default(void **state)
{
  assert_string_equal(capture_stderr(log_without_enabling, NULL), "");
}

static void
test_format_and_levels(void **state)
{
  assert_string_equal(capture_stderr(log_to_stderr_info, NULL),
                      "[WARNING/MainProcess] doomed\n"
                      "[INFO/MainProcess] child process calling self.run()\n"
                      "[SUBWARNING/SyncManager-1] sub 25\n");
}

static void
test_env_variable(void **state)
{
  assert_string_equal(capture_stderr(run_helper_log, "debug"),
                      "[DEBUG/MainProcess] debug via env\n");
  assert_string_equal(capture_stderr(run_helper_log, "bogus"), "");
  assert_string_equal(capture_stderr(run_helper_log, "5"),
                      "[DEBUG/MainProcess] debug via env\n"
                      "[SUBDEBUG/MainProcess] below debug\n");
}

struct seen {
  int n, level;
  char line[64], proc[64];
};

static void
handler(int level, const char *process_name, const char *line, void *ud)
{
  struct seen *s = ud;
  s->n++;
  s->level = level;
  snprintf(s->line, sizeof s->line, "%s", line);
  snprintf(s->proc, sizeof s->proc, "%s", process_name);
}

static void
test_handler_and_parse(void **state)
{
  struct seen s = {0};
  int old = mp_log_get_level();
  mp_log_set_handler(handler, &s);
  mp_log_set_level(MP_LOG_ERROR);
  assert_false(mp_log_enabled(MP_LOG_WARNING));
  assert_true(mp_log_enabled(MP_LOG_CRITICAL));
  mp_log_warning("dropped");
  mp_log_error("kept %s", "this");
  assert_int_equal(s.n, 1);
  assert_int_equal(s.level, MP_LOG_ERROR);
  assert_string_equal(s.line, "kept this");
  assert_string_equal(s.proc, "MainProcess");
  /* long messages are truncated, never overflow */
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  mp_log_error("%s", big);
  assert_int_equal(s.n, 2);
  mp_log_set_handler(NULL, NULL);
  mp_log_set_level(old);
  assert_int_equal(mp_log_parse_level("debug"), MP_LOG_DEBUG);
  assert_int_equal(mp_log_parse_level("WARNING"), MP_LOG_WARNING);
  assert_int_equal(mp_log_parse_level("warn"), MP_LOG_WARNING);
  assert_int_equal(mp_log_parse_level("20"), 20);
  assert_int_equal(mp_log_parse_level("loud"), MP_EINVAL);
  assert_int_equal(mp_log_parse_level(""), MP_EINVAL);
  assert_int_equal(mp_log_parse_level(NULL), MP_EINVAL);
  assert_string_equal(mp_log_level_name(MP_LOG_INFO), "INFO");
  assert_string_equal(mp_log_level_name(7), "Level 7");
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_silent_by_default),
    cmocka_unit_test(test_format_and_levels),
    cmocka_unit_test(test_env_variable),
    cmocka_unit_test(test_handler_and_parse),
};

MP_TEST_MAIN(tests)
