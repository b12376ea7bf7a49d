/* SPDX-License-Identifier: MIT */
/* The "threading" start method (mpire's): a process object backed by a
 * thread of this process.  It cannot be signalled; mp_exit ends the
 * thread; its "pid" is the thread's kernel id. */
#include <setjmp.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

static _Thread_local mp_process *tls_current;
static _Thread_local jmp_buf *tls_exit_jmp;
static _Thread_local int tls_exit_code;

mp_process *
mp__thread_current(void)
{
  return tls_current;
}

static void *
thread_main(void *arg)
{
  mp_process *p = arg;
  atomic_store(&p->pid, (pid_t)mp__gettid());
  tls_current = p;
  jmp_buf jb;
  int code;
  tls_exit_jmp = &jb;
  if (setjmp(jb) == 0)
    code = p->target ? p->target(p->args) : 0;
  else
    code = tls_exit_code;
  tls_exit_jmp = NULL;
  tls_current = NULL;
  /* The args are no longer needed: drop them (and the descriptors their
   * handles hold) before the thread is seen to end. */
  pthread_mutex_lock(&p->lock);
  mp_obj *args = p->args;
  p->args = NULL;
  pthread_mutex_unlock(&p->lock);
  mp_obj_free(args);
  p->exitcode = code;
  atomic_store_explicit(&p->thread_done, 1, memory_order_release);
  int wfd = p->thread_wfd;
  p->thread_wfd = -1;
  mp__close(wfd); /* wakes the sentinel */
  mp_process_free(p);
  return NULL;
}

static int
thread_start(mp_process *p)
{
  int fds[2];
  int rc = mp__pipe(fds);
  if (rc)
    return rc;
  p->sentinel = fds[0];
  p->thread_wfd = fds[1];
  mp_process_ref(p);
  rc = -pthread_create(&p->thread, NULL, thread_main, p);
  if (rc) {
    mp_process_free(p);
    mp__close(fds[0]);
    mp__close(fds[1]);
    p->sentinel = p->thread_wfd = -1;
    return rc;
  }
  return 0;
}

static int
thread_reap(mp_process *p)
{
  if (!atomic_load_explicit(&p->thread_done, memory_order_acquire))
    return 0;
  pthread_join(p->thread, NULL);
  return 1;
}

__attribute__((noreturn)) static void
thread_exit(mp_process *self, int code)
{
  (void)self;
  tls_exit_code = code;
  longjmp(*tls_exit_jmp, 1);
}

static void
thread_after_fork(void)
{
  /* A fork from a threading child: the new process is no thread of ours. */
  if (tls_current)
    tls_current = NULL;
}

const mp__start_ops mp__thread_ops = {
    .name = "threading",
    .cls = "ThreadProcess",
    .flags = MP__OPS_THREAD,
    .start = thread_start,
    .reap = thread_reap,
    .after_fork_child = thread_after_fork,
    .child_exit = thread_exit,
    .lost_why = "",
};
