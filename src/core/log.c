/* SPDX-License-Identifier: MIT */
/* The process-wide logger (see include/mproc/log.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/internal.h"
#include "platform/platform.h"

static atomic_int log_level = MP_LOG_OFF;
static atomic_int env_read;
static pthread_mutex_t handler_lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t handler_lock_once = PTHREAD_ONCE_INIT;

/* Fork children take this lock too (a pool forks workers while other threads log): held across every fork
 * (mp__fork_guard_mutex), registered at its first use. */
static void
handler_lock_guard(void)
{
  mp__fork_guard_mutex(&handler_lock);
}

static void
lock_handler(void)
{
  pthread_once(&handler_lock_once, handler_lock_guard);
  pthread_mutex_lock(&handler_lock);
}

static mp_log_handler handler_fn; /* NULL: stderr */
static void *handler_ud;

/* The current process's name, kept here so the lowest layer can log it; the
 * process layer updates it in every child before user code runs. */
static char process_name[128] MP__FORK_DATA = "MainProcess";

/* Called in every new child: plain copies, not snprintf, so a fork child
 * does not fault in printf's code just to be named. */
void
mp__log_set_process_name(const char *name)
{
  size_t n = name ? strlen(name) : 0;
  if (n > sizeof process_name - 1)
    n = sizeof process_name - 1;
  if (n)
    memcpy(process_name, name, n);
  process_name[n] = '\0';
}

const char *
mp__log_process_name(void)
{
  return process_name;
}

static const struct {
  int level;
  const char *name;
} level_names[] = {
    {MP_LOG_NOTSET, "NOTSET"},   {MP_LOG_SUBDEBUG, "SUBDEBUG"},
    {MP_LOG_DEBUG, "DEBUG"},     {MP_LOG_INFO, "INFO"},
    {MP_LOG_SUBWARNING, "SUBWARNING"}, {MP_LOG_WARNING, "WARNING"},
    {MP_LOG_ERROR, "ERROR"},     {MP_LOG_CRITICAL, "CRITICAL"},
    {MP_LOG_OFF, "OFF"},
};

const char *
mp_log_level_name(int level)
{
  static _Thread_local char buf[32];
  for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
    if (level_names[i].level == level)
      return level_names[i].name;
  snprintf(buf, sizeof buf, "Level %d", level);
  return buf;
}

int
mp_log_parse_level(const char *text)
{
  mp__errdetail_clear();
  if (!text || !*text)
    return mp_seterr(MP_EINVAL, "no log level given");
  for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
    if (strcasecmp(text, level_names[i].name) == 0)
      return level_names[i].level;
  if (strcasecmp(text, "warn") == 0)
    return MP_LOG_WARNING;
  char *end;
  long v = strtol(text, &end, 10);
  if (*end == '\0' && v >= 0 && v <= MP_LOG_OFF)
    return (int)v;
  return mp_seterr(MP_EINVAL, "unknown log level '%.40s'", text);
}

/* MPROC_LOG is read once; an explicit mp_log_set_level() wins over it. */
static void
read_env_once(void)
{
  if (atomic_load_explicit(&env_read, memory_order_acquire))
    return;
  int expected = 0;
  if (!atomic_compare_exchange_strong(&env_read, &expected, 1))
    return;
  const char *e = getenv("MPROC_LOG");
  if (!e || !*e)
    return;
  int lvl = mp_log_parse_level(e);
  if (lvl < 0)
    mp_seterr(0, NULL); /* a bad MPROC_LOG is ignored; leave no detail behind */
  else
    atomic_store(&log_level, lvl);
}

__attribute__((constructor)) static void
log_init(void)
{
  read_env_once();
}

void
mp_log_set_level(int level)
{
  read_env_once();
  atomic_store(&log_level, level);
}

int
mp_log_get_level(void)
{
  read_env_once();
  return atomic_load(&log_level);
}

int
mp_log_to_stderr(int level)
{
  mp__errdetail_clear();
  read_env_once();
  lock_handler();
  handler_fn = NULL;
  handler_ud = NULL;
  pthread_mutex_unlock(&handler_lock);
  if (level == MP_LOG_NOTSET)
    level = atomic_load(&log_level) == MP_LOG_OFF ? MP_LOG_WARNING
                                                  : atomic_load(&log_level);
  atomic_store(&log_level, level);
  return 0;
}

void
mp_log_set_handler(mp_log_handler fn, void *ud)
{
  lock_handler();
  handler_fn = fn;
  handler_ud = ud;
  pthread_mutex_unlock(&handler_lock);
}

int
mp_log_enabled(int level)
{
  read_env_once();
  return level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void
mp_logv(int level, const char *fmt, va_list ap)
{
  if (!mp_log_enabled(level))
    return;
  int saved = errno;
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  lock_handler();
  mp_log_handler fn = handler_fn;
  void *ud = handler_ud;
  pthread_mutex_unlock(&handler_lock);
  if (fn) {
    fn(level, process_name, msg, ud);
  } else {
    char line[1300];
    int n = snprintf(line, sizeof line, "[%s/%s] %s\n",
                     mp_log_level_name(level), process_name, msg);
    if (n > (int)sizeof line - 1) {
      n = (int)sizeof line - 1;
      line[n - 1] = '\n';
    }
    /* One write: lines from several processes do not interleave. */
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = write(2, line + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        break;
      off += w;
    }
  }
  errno = saved;
}

void
mp_log(int level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  mp_logv(level, fmt, ap);
  va_end(ap);
}
