/* SPDX-License-Identifier: MIT */
/* The registry of children: every started, unreaped child of this process;
 * reaping (through the child's start method); active_children; and exit
 * handling -- Python's util._exit_function, a lifecycle finalizer of
 * priority MP__FINALIZE_CHILDREN: daemon children terminated, the others
 * joined, after every finalizer of priority >= 0 (a later layer's) and
 * before the forkserver and the tracker link go (MP__FINALIZE_LAST). */
#include <poll.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "platform/platform.h"
#include "proc/proc_internal.h"

/* Reset in fork children (children_after_fork). */
static pthread_mutex_t g_lock MP__FORK_DATA =
    PTHREAD_MUTEX_INITIALIZER; /* the registry */
static mp_process *reg_first MP__FORK_DATA;
static int g_exit_registered MP__FORK_DATA; /* this process's exit finalizer */

/* ---- the registry ------------------------------------------------------- */

void
mp__proc_reg_add(mp_process *p)
{
  pthread_mutex_lock(&g_lock);
  mp_process_ref(p);
  p->reg_prev = NULL;
  p->reg_next = reg_first;
  if (reg_first)
    reg_first->reg_prev = p;
  reg_first = p;
  p->registered = 1;
  pthread_mutex_unlock(&g_lock);
}

void
mp__proc_reg_remove(mp_process *p)
{
  pthread_mutex_lock(&g_lock);
  int was = p->registered;
  if (was) {
    if (p->reg_prev)
      p->reg_prev->reg_next = p->reg_next;
    else
      reg_first = p->reg_next;
    if (p->reg_next)
      p->reg_next->reg_prev = p->reg_prev;
    p->reg_prev = p->reg_next = NULL;
    p->registered = 0;
  }
  pthread_mutex_unlock(&g_lock);
  if (was)
    mp_process_free(p);
}

/* References to every registered child (the caller frees them). */
static int
reg_snapshot(mp_process ***out, size_t *n)
{
  pthread_mutex_lock(&g_lock);
  size_t count = 0;
  for (mp_process *q = reg_first; q; q = q->reg_next)
    count++;
  mp_process **list = malloc((count ? count : 1) * sizeof *list);
  if (!list) {
    pthread_mutex_unlock(&g_lock);
    return MP_ENOMEM;
  }
  size_t i = 0;
  for (mp_process *q = reg_first; q; q = q->reg_next)
    list[i++] = mp_process_ref(q);
  pthread_mutex_unlock(&g_lock);
  *out = list;
  *n = count;
  return 0;
}

static void
children_after_fork(void *arg)
{
  (void)arg;
  /* The parent's children are not ours; nor is its exit finalizer (the
   * lifecycle registry dropped it). */
  mp__mutex_reset(&g_lock);
  if (reg_first)
    reg_first = NULL;
  if (g_exit_registered)
    g_exit_registered = 0;
}

/* ---- reaping ------------------------------------------------------------- */

int
mp__proc_status_code(int st)
{
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  return -WTERMSIG(st); /* WIFSIGNALED: nothing else is waited for */
}

static atomic_int ignore_pidfd_exit;

void
mp__proc_test_ignore_pidfd_exit(int on)
{
  atomic_store(&ignore_pidfd_exit, on);
}

int
mp__proc_lost_status(mp_process *p, int orphan, int *st)
{
  if (p->pidfd >= 0) {
    struct pollfd pfd = {p->pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) <= 0)
      return 0;
    /* The kernel keeps the status for pidfds once the process is released
     * (Linux 6.15).  Not released yet: a child of ours that waitpid no
     * longer finds is being reaped by someone, a matter of microseconds;
     * an orphan may wait for its reaper indefinitely, so it is not waited
     * for. */
    int rc = atomic_load(&ignore_pidfd_exit)
                 ? -ENOSYS
                 : mp__plat_pidfd_exit_status(p->pidfd, st);
    if (rc == 1 || (rc == 0 && !orphan))
      return rc;
  } /* else it had ended before a pidfd could be opened (fork.c) */
  int code;
  if (mp__exit_slot_read(p, &code)) {
    *st = W_EXITCODE(code, 0);
    return 1;
  }
  return -1;
}

int
mp__proc_reap_pidfd(mp_process *p)
{
  int st;
  pid_t r = p->pidfd >= 0 ? mp__plat_pidfd_reap(p->pidfd, p->pid, &st)
                          : -ECHILD;
  if (r == 0)
    return 0;
  if (r < 0) {
    int known = mp__proc_lost_status(p, 0, &st);
    if (known <= 0)
      return known;
    mp_log_debug("process %d was reaped by someone else", (int)p->pid);
  }
  p->exitcode = mp__proc_status_code(st);
  return 1;
}

int
mp__proc_signal_pidfd(mp_process *p, int sig)
{
  int rc = mp__plat_pidfd_signal(p->pidfd, sig);
  return rc == -ESRCH ? 0 : rc; /* it ended meanwhile */
}

int
mp__proc_reap(mp_process *p)
{
  if (p->state == MP__S_DONE)
    return 1;
  if (p->state != MP__S_STARTED)
    return 0;
  int r = mp__proc_ops(p)->reap(p);
  if (r == 0)
    return 0;
  p->exit_unknown = r < 0;
  mp__exit_slot_put(p);
  p->state = MP__S_DONE;
  if (p->exit_unknown)
    mp_log_debug("process %s (pid %d) ended; its exit status is lost",
                 p->name, (int)p->pid);
  else
    mp_log_debug("process %s (pid %d) ended with exit code %d", p->name,
                 (int)p->pid, p->exitcode);
  return 1;
}

void
mp__proc_cleanup_children(void)
{
  mp_process **list;
  size_t n;
  if (reg_snapshot(&list, &n) != 0)
    return;
  for (size_t i = 0; i < n; i++) {
    mp_process *q = list[i];
    pthread_mutex_lock(&q->lock);
    int done = mp__proc_reap(q);
    pthread_mutex_unlock(&q->lock);
    if (done)
      mp__proc_reg_remove(q);
  }
  mp_process_list_free(list, n);
}

int
mp_active_children(mp_process ***out, size_t *n)
{
  mp__errdetail_clear();
  if (!out || !n)
    return MP_EINVAL;
  mp__proc_cleanup_children();
  int rc = reg_snapshot(out, n);
  if (rc)
    return rc;
  /* Drop those that ended between the cleanup and the snapshot. */
  size_t k = 0;
  for (size_t i = 0; i < *n; i++) {
    mp_process *q = (*out)[i];
    pthread_mutex_lock(&q->lock);
    int done = mp__proc_reap(q);
    pthread_mutex_unlock(&q->lock);
    if (done) {
      mp__proc_reg_remove(q);
      mp_process_free(q);
    } else {
      (*out)[k++] = q;
    }
  }
  *n = k;
  return 0;
}

/* ---- exit handling --------------------------------------------------------- */

/* Python's util._exit_function, between the finalizers of priority >= 0
 * and the rest: terminate daemonic children, join all others.  A daemonic
 * child that cannot be signalled (a thread) is left alone, as Python's
 * daemon threads. */
static void
exit_children(void *arg)
{
  (void)arg;
  mp_process **list;
  size_t n;
  if (mp_active_children(&list, &n) != 0)
    return;
  for (size_t i = 0; i < n; i++)
    if (list[i]->daemon && mp__proc_ops(list[i])->signal) {
      mp_log_info("calling terminate() for daemon %s", list[i]->name);
      mp_process_terminate(list[i]);
    }
  for (size_t i = 0; i < n; i++)
    if (!list[i]->daemon || mp__proc_ops(list[i])->signal) {
      mp_log_info("calling join() for process %s", list[i]->name);
      mp_process_join(list[i], MP_FOREVER);
    }
  mp_process_list_free(list, n);
}

void
mp__proc_children_started(void)
{
  pthread_mutex_lock(&g_lock);
  int need = !g_exit_registered;
  g_exit_registered = 1;
  pthread_mutex_unlock(&g_lock);
  if (need && !mp__finalizer_add(MP__FINALIZE_CHILDREN, exit_children, NULL)) {
    pthread_mutex_lock(&g_lock);
    g_exit_registered = 0; /* out of memory: the next start tries again */
    pthread_mutex_unlock(&g_lock);
  }
}

void
mp__proc_children_init(void)
{
  mp__fork_hook_add(NULL, NULL, children_after_fork, NULL);
}
