/* SPDX-License-Identifier: MIT */
/* The seeds' logging session (multiprocessing.log_to_stderr):
 *
 *   >>> import multiprocessing, logging
 *   >>> logger = multiprocessing.log_to_stderr()
 *   >>> logger.setLevel(logging.INFO)
 *   >>> logger.warning('doomed')
 *   [WARNING/MainProcess] doomed
 *   >>> m = multiprocessing.Manager()
 *   [INFO/SyncManager-...] child process calling self.run()
 *   ...
 *   >>> del m
 *   [INFO/MainProcess] sending shutdown message to manager
 *   [INFO/SyncManager-...] process shutting down
 *   [INFO/SyncManager-...] process exiting with exitcode 0
 *
 * The lines go to stderr, each in one write(2), from both processes.  One
 * difference: "created temp directory" comes from the main process here
 * (mproc makes the directory of its managers' sockets in the parent, which
 * picks the address), from the manager's process in CPython.
 *
 * Usage: logging_session [fork|spawn|forkserver]  (default: the default
 * start method) */
#include <stdio.h>

#include <mproc.h>

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  int rc = argc > 1 ? mp_get_context(argv[1], &ctx) : 0;
  mp_log_to_stderr(MP_LOG_NOTSET);  /* logger = log_to_stderr() */
  mp_log_set_level(MP_LOG_INFO);    /* logger.setLevel(logging.INFO) */
  mp_log_warning("doomed");         /* logger.warning('doomed') */
  mp_manager *m = NULL;             /* m = multiprocessing.Manager() */
  if (!rc)
    rc = mp_manager_new(&m, &(mp_manager_opts){.ctx = ctx});
  if (!rc)
    rc = mp_manager_start(m);
  mp_manager_free(m);               /* del m */
  if (rc)
    fprintf(stderr, "logging_session: %s: %s\n", mp_strerror(rc),
            mp_errdetail());
  return rc ? 1 : 0;
}
