/* SPDX-License-Identifier: MIT */
/* Logging: the analog of multiprocessing.get_logger() / log_to_stderr().
 *
 * mproc logs what it does (children started and reaped, the forkserver,
 * managers...) through one process-wide logger.  Like Python's, it is silent
 * until enabled: by mp_log_to_stderr(), by mp_log_set_level() together with a
 * handler, or by the environment variable MPROC_LOG=debug|info|warning|error
 * (read once, at the first log call or at load time).
 *
 * The stderr handler writes one line per message, in one write(2) so lines
 * from several processes do not interleave:
 *     [LEVEL/ProcessName] message
 * e.g. "[WARNING/MainProcess] doomed".  ProcessName is the current process's
 * name (mp_process_name of mp_current_process()).
 *
 * At MP_LOG_INFO mproc writes the lines CPython's multiprocessing writes at
 * INFO over a process's life: "child process calling self.run()", "process
 * shutting down", "process exiting with exitcode N", "calling terminate()
 * for daemon NAME", "calling join() for process NAME", and for managers
 * "created temp directory DIR", "manager serving at 'ADDRESS'" and "sending
 * shutdown message to manager".  Below it, at MP_LOG_DEBUG and
 * MP_LOG_SUBDEBUG, what mproc itself does (processes started, the
 * forkserver, listeners). */
#ifndef MPROC_LOG_H
#define MPROC_LOG_H

#include <stdarg.h>

#include "mproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels, with Python's numbers (logging and multiprocessing.util). */
enum mp_log_level {
  MP_LOG_NOTSET = 0,
  MP_LOG_SUBDEBUG = 5,
  MP_LOG_DEBUG = 10,
  MP_LOG_INFO = 20,
  MP_LOG_SUBWARNING = 25,
  MP_LOG_WARNING = 30,
  MP_LOG_ERROR = 40,
  MP_LOG_CRITICAL = 50,
  MP_LOG_OFF = 1000 /* the default: nothing is emitted */
};

/* A sink for log records: `line` is the formatted message (no level, no
 * process name, no newline).  Called from any thread; must not call back into
 * the logger. */
typedef void (*mp_log_handler)(int level, const char *process_name,
                               const char *line, void *ud);

/* Send records to stderr in the format above and set the threshold to
 * `level`.  MP_LOG_NOTSET (Python's log_to_stderr() without a level) keeps
 * the current threshold, or makes it MP_LOG_WARNING while logging was off:
 * Python's logger with no level of its own inherits the root's WARNING.
 * Returns 0. */
MP_EXTERN int mp_log_to_stderr(int level);

/* Set the threshold: records below it are dropped.  MP_LOG_OFF silences. */
MP_EXTERN void mp_log_set_level(int level);
MP_EXTERN int mp_log_get_level(void);

/* Replace the handler (NULL restores the stderr handler).  The level is left
 * as it is. */
MP_EXTERN void mp_log_set_handler(mp_log_handler fn, void *ud);

/* Is a record at `level` emitted? Cheap: use it to skip building costly
 * arguments. */
MP_EXTERN int mp_log_enabled(int level);

/* Emit a record (printf format).  Safe from any thread; never changes errno;
 * a message is truncated at 1 KiB. */
MP_EXTERN void mp_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
MP_EXTERN void mp_logv(int level, const char *fmt, va_list ap);

/* The name used for `level` ("DEBUG", "INFO", "Level 7" for others...). */
MP_EXTERN const char *mp_log_level_name(int level);

/* Parse "debug", "INFO", "subwarning", "20"... into a level (>= 0);
 * MP_EINVAL (with a detail) for NULL, "" or a text that names no level. */
MP_EXTERN int mp_log_parse_level(const char *text);

#define mp_log_debug(...) mp_log(MP_LOG_DEBUG, __VA_ARGS__)
#define mp_log_info(...) mp_log(MP_LOG_INFO, __VA_ARGS__)
#define mp_log_warning(...) mp_log(MP_LOG_WARNING, __VA_ARGS__)
#define mp_log_error(...) mp_log(MP_LOG_ERROR, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
