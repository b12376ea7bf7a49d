/* SPDX-License-Identifier: MIT */
/* The "fork" start method: fork(2), and the child runs the target on a
 * copy of the parent's memory. */
#include <errno.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

/* Resolve, in the parent, the lazily bound functions a fork child calls, so
 * that every child does not look them up again (and copy the GOT page). */
static void
prebind_nothing(void)
{
}

static void
prebind_once(void)
{
  char buf[16];
  static char src[16];
  static const char *volatile fmt = "%s"; /* real calls, not builtins */
  volatile size_t n = sizeof buf;
  pthread_mutex_t m;
  pthread_once_t once = PTHREAD_ONCE_INIT;
  snprintf(buf, sizeof buf, fmt, "");
  memset(buf, 0, n);
  memcpy(buf, src, n);
  static volatile int sink __attribute__((unused));
  sink = memcmp(buf, src, n);
  pthread_mutex_init(&m, NULL);
  pthread_mutex_destroy(&m);
  pthread_once(&once, prebind_nothing);
  (void)__fpending(stdout);
  (void)getppid();
  (void)getpid();
  (void)syscall(SYS_getpid); /* the child's exit (mp__plat_exit_now) */
  int sig;
  (void)prctl(PR_GET_PDEATHSIG, &sig); /* a daemon's PR_SET_PDEATHSIG */
  mp__log_set_process_name(mp__log_process_name());
  /* The child's log calls, where they print nothing. */
  if (!mp_log_enabled(MP_LOG_SUBDEBUG))
    mp_log(MP_LOG_SUBDEBUG, "%s", "");
}

void
mp__proc_prebind(void)
{
  static pthread_once_t prebound = PTHREAD_ONCE_INIT;
  pthread_once(&prebound, prebind_once);
}

static int
has_handles(const mp_obj *o)
{
  const mp_handle_type *t;
  size_t n = 0;
  return mp__proc_collect_handle_types(o, &t, 1, &n) != 0 || n > 0;
}

static int
fork_start(mp_process *p)
{
  /* Values holding handles are encoded once so that a handle that cannot
   * serve a fork child says so now (see mp_spawning_context). */
  if (has_handles(p->args)) {
    void *data;
    size_t len, nfds;
    int *fds;
    mp__proc_set_spawning(&mp__contexts[MP__M_FORK]);
    int rc = mp_pickle_dumps_fds(p->args, NULL, &data, &len, &fds, &nfds);
    mp__proc_set_spawning(NULL);
    if (rc)
      return rc;
    mp_free(data);
    mp_free(fds);
  }
  mp__proc_prebind();
  int rc = mp__exit_slot_get(p, MP__XT_FORK);
  if (rc)
    return rc;
  mp_process *cur = mp_current_process();
  int main_thread = mp__proc_on_main_thread();
  pid_t ppid = (pid_t)mp__getpid();
  /* A child of the main thread dies with the parent by PR_SET_PDEATHSIG and
   * opens the parent's pidfd itself, when first asked for its sentinel: a
   * pidfd costs microseconds to make and to close, on the path of every
   * pool start.  A child of another thread (a pool's replacement worker)
   * watches the parent's pidfd from its start: that one is opened here,
   * where a failure is the caller's error, and inherited. */
  int parent_sentinel = MP__SENTINEL_LAZY;
  if (!main_thread && (parent_sentinel = mp__proc_self_pidfd()) < 0)
    return parent_sentinel;
  /* Every page either side writes while the child lives costs a
   * copy-on-write fault: the bookkeeping is done before fork, and the
   * parent's name is read, not copied, by the child.  The lifecycle's
   * fork hooks have reset the layer's state in the child when fork
   * returns there. */
  pid_t pid = fork();
  if (pid == 0) {
    /* mp_process_start holds p->lock across the fork: this thread, the
     * child's only one, took it, so it releases it (re-initialising a held
     * mutex is what lock checkers, TSan's too, call a double lock). */
    pthread_mutex_unlock(&p->lock);
    mp__proc_child_main(p, ppid, cur->name, parent_sentinel,
                        main_thread ? MP__PDEATH_SIGNAL : MP__PDEATH_WATCH,
                        ppid);
  }
  int err = errno;
  /* At once: with SIGCHLD ignored a child that ends takes its pid along. */
  int pidfd = pid > 0 ? mp__plat_pidfd_open(pid) : -1;
  mp__close(parent_sentinel); /* the child's copy, if any, is its own */
  if (pid < 0)
    return -err;
  if (pidfd == -ESRCH) {
    /* It ran, ended and was reaped by someone else already; the reap reads
     * its exit word. */
    if ((rc = mp__proc_ended_sentinel()) < 0)
      return rc;
    p->pid = pid;
    p->sentinel = rc;
    return 0;
  }
  if (pidfd < 0) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    return pidfd;
  }
  p->pid = pid;
  p->pidfd = p->sentinel = pidfd;
  return 0;
}

const mp__start_ops mp__fork_ops = {
    .name = "fork",
    .cls = "ForkProcess",
    .start = fork_start,
    .reap = mp__proc_reap_pidfd,
    .signal = mp__proc_signal_pidfd,
    .child_exit = mp__proc_child_exit,
    .lost_why = "taken by someone else (SIGCHLD ignored or reaped "
                "elsewhere)",
};
