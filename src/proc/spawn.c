/* SPDX-License-Identifier: MIT */
/* The "spawn" start method: posix_spawn(3) of this program (or
 * mp_set_executable's) with a boot socket at fd 3; the library takes the
 * child over before main (boot.c) and sends it its instructions. */
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

static pthread_mutex_t exe_lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static char *g_executable; /* NULL: /proc/self/exe */

int
mp_set_executable(const char *path)
{
  mp__errdetail_clear();
  char *copy = NULL;
  if (path) {
    if (access(path, X_OK) != 0)
      return mp_seterr(mp__errno(), "cannot execute %s", path);
    if (!(copy = strdup(path)))
      return MP_ENOMEM;
  }
  mp__proc_init();
  pthread_mutex_lock(&exe_lock);
  free(g_executable);
  g_executable = copy;
  pthread_mutex_unlock(&exe_lock);
  return 0;
}

int
mp__boot_spawn_exe(int child_sock, pid_t *pid)
{
  int rc = 0, tmp = -1;
  if (child_sock == MP__BOOT_FD) {
    /* dup2(3, 3) would keep close-on-exec set. */
    if ((tmp = mp__dup(child_sock)) < 0)
      return tmp;
    child_sock = tmp;
  }
  size_t nenv = 0;
  while (environ && environ[nenv])
    nenv++;
  char **envp = malloc((nenv + 2) * sizeof *envp);
  if (!envp) {
    mp__close(tmp);
    return MP_ENOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++)
    if (strncmp(environ[i], MP__BOOT_ENV "=", sizeof MP__BOOT_ENV) != 0)
      envp[k++] = environ[i];
  char marker[] = MP__BOOT_ENV "=3";
  envp[k++] = marker;
  envp[k] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child_sock, MP__BOOT_FD);
  posix_spawn_file_actions_addclosefrom_np(&fa, MP__BOOT_FD + 1);
  pthread_mutex_lock(&exe_lock);
  char *path = strdup(g_executable ? g_executable : "/proc/self/exe");
  pthread_mutex_unlock(&exe_lock);
  char *argv[] = {program_invocation_name, (char *)"--mproc-child", NULL};
  if (!path)
    rc = MP_ENOMEM;
  else
    rc = -posix_spawn(pid, path, &fa, NULL, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  free(path);
  free(envp);
  mp__close(tmp);
  return rc;
}

static int
spawn_start(mp_process *p)
{
  mp__boot_msg msg;
  int rc = mp__exit_slot_get(p, MP__XT_EXEC);
  if (!rc)
    rc = mp__boot_encode_process(p, mp__proc_on_main_thread(), &msg);
  if (rc)
    return rc;
  int sv[2];
  if ((rc = mp__socketpair(SOCK_STREAM, sv)) != 0) {
    mp__boot_msg_release(&msg);
    return rc;
  }
  pid_t pid;
  rc = mp__boot_spawn_exe(sv[1], &pid);
  mp__close(sv[1]);
  if (rc) {
    mp__close(sv[0]);
    mp__boot_msg_release(&msg);
    return mp_seterr(rc, "posix_spawn failed");
  }
  int pidfd = mp__plat_pidfd_open(pid);
  if (pidfd < 0)
    rc = pidfd;
  if (!rc)
    rc = mp__boot_send_msg(sv[0], &msg);
  mp__close(sv[0]);
  mp__boot_msg_release(&msg);
  if (rc) {
    /* The child reads EOF and exits; make sure of it and reap it. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    mp__close(pidfd);
    return rc;
  }
  p->pid = pid;
  p->pidfd = p->sentinel = pidfd;
  return 0;
}

static void
spawn_after_fork(void)
{
  mp__mutex_reset(&exe_lock);
}

const mp__start_ops mp__spawn_ops = {
    .name = "spawn",
    .cls = "SpawnProcess",
    .start = spawn_start,
    .reap = mp__proc_reap_pidfd,
    .signal = mp__proc_signal_pidfd,
    .after_fork_child = spawn_after_fork,
    .child_exit = mp__proc_child_exit,
    .lost_why = "taken by someone else (SIGCHLD ignored or reaped "
                "elsewhere)",
};
