/* The forkserver: a single-threaded server, started with spawn on first
 * use, that forks children on request.
 *
 * Client side: one SOCK_SEQPACKET control socket; a request is one message
 * carrying two descriptors: the child's boot socket and one end of a status
 * socket.  The server forks; the child reads its instructions from the boot
 * socket (sent by the client directly, so the server never handles args or
 * their descriptors); the server sends the child's pid with a pidfd of it
 * and, once it has reaped it, its exit code (two int32) on the status
 * socket, whose other end is the process's sentinel.  Requests are single messages, so any thread
 * may make them at the same time.
 *
 * The server exits when the program that started it exits, whatever the
 * way (it watches that program's pidfd), or when the control socket closes.
 * Daemon children die with the server (parent-death signal: the server is
 * single-threaded, so that signal is reliable there).  If the server dies
 * first (killed), a status socket ends without a code: the client then
 * watches the child's pidfd itself (process.c).
 *
 * The server inherits through exec the signals the program ignores and the
 * mask of the thread that started it; it sets its own (an ignored SIGCHLD
 * would have the kernel reap its children behind its back) and gives its
 * children the inherited ones back. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t fs_pid;
static int fs_ctl = -1;
static char **fs_preload;
static size_t fs_npreload;
static int fs_stop_registered; /* this process's finalizer that stops it */

static void
stop_at_exit(void *arg)
{
  (void)arg;
  mp__forkserver_stop();
}

int
mp_set_forkserver_preload(const char *const *names, size_t n)
{
  if (n && !names)
    return MP_EINVAL;
  char **copy = calloc(n ? n : 1, sizeof *copy);
  if (!copy)
    return MP_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!names[i] || !(copy[i] = strdup(names[i]))) {
      for (size_t j = 0; j < i; j++)
        free(copy[j]);
      free(copy);
      return names[i] ? MP_ENOMEM : MP_EINVAL;
    }
  }
  mp__proc_init();
  pthread_mutex_lock(&fs_lock);
  char **old = fs_preload;
  size_t oldn = fs_npreload;
  fs_preload = copy;
  fs_npreload = n;
  pthread_mutex_unlock(&fs_lock);
  for (size_t i = 0; i < oldn; i++)
    free(old[i]);
  free(old);
  return 0;
}

pid_t
mp__forkserver_pid(void)
{
  pthread_mutex_lock(&fs_lock);
  pid_t p = fs_pid;
  pthread_mutex_unlock(&fs_lock);
  return p;
}

static void
reset_locked(void)
{
  mp__close(fs_ctl);
  fs_ctl = -1;
  __atomic_store_n(&fs_pid, 0, __ATOMIC_RELEASE);
}

static int
ensure_running_locked(void)
{
  if (fs_pid > 0) {
    int st;
    pid_t r = waitpid(fs_pid, &st, WNOHANG);
    if (r == 0)
      return 0;
    mp_log_warning("the forkserver (pid %d) died; starting another",
                   (int)fs_pid);
    reset_locked();
  }
  int ctl[2], boot[2];
  int rc = mp__socketpair(SOCK_SEQPACKET, ctl);
  if (rc)
    return rc;
  if ((rc = mp__socketpair(SOCK_STREAM, boot)) != 0) {
    mp__close(ctl[0]);
    mp__close(ctl[1]);
    return rc;
  }
  pid_t pid;
  rc = mp__boot_spawn_exe(boot[1], &pid);
  mp__close(boot[1]);
  if (!rc) {
    rc = mp__boot_send_server(boot[0], ctl[1], fs_preload, fs_npreload);
    if (rc) {
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    }
  }
  mp__close(boot[0]);
  mp__close(ctl[1]);
  if (rc) {
    mp__close(ctl[0]);
    return mp_seterr(rc, "cannot start the forkserver");
  }
  fs_ctl = ctl[0];
  __atomic_store_n(&fs_pid, pid, __ATOMIC_RELEASE);
  /* Stopped at exit after the children were joined (the server reports
   * their ends). */
  if (!fs_stop_registered &&
      mp__finalizer_add(MP__FINALIZE_LAST, stop_at_exit, NULL))
    fs_stop_registered = 1;
  mp_log_info("forkserver started (pid %d)", (int)pid);
  return 0;
}

static int
forkserver_start(mp_process *p)
{
  mp__boot_msg msg;
  int rc = mp__boot_encode_process(p, 1, &msg);
  if (rc)
    return rc;
  int boot[2], st[2];
  if ((rc = mp__socketpair(SOCK_STREAM, boot)) != 0) {
    mp__boot_msg_release(&msg);
    return rc;
  }
  if ((rc = mp__socketpair(SOCK_STREAM, st)) != 0) {
    mp__close(boot[0]);
    mp__close(boot[1]);
    mp__boot_msg_release(&msg);
    return rc;
  }
  int fds[2] = {boot[1], st[1]};
  pthread_mutex_lock(&fs_lock);
  rc = ensure_running_locked();
  if (!rc) {
    rc = mp__send_fds(fs_ctl, "F", 1, fds, 2);
    if (rc) {
      /* The server is gone: one restart. */
      reset_locked();
      rc = ensure_running_locked();
      if (!rc)
        rc = mp__send_fds(fs_ctl, "F", 1, fds, 2);
    }
  }
  pthread_mutex_unlock(&fs_lock);
  mp__close(boot[1]);
  mp__close(st[1]);
  if (rc) {
    mp__close(boot[0]);
    mp__close(st[0]);
    mp__boot_msg_release(&msg);
    return rc;
  }
  /* The instructions go straight away (the server is forking meanwhile);
   * the pid and a pidfd of the child come back on the status socket. */
  int send_rc = mp__boot_send_msg(boot[0], &msg);
  mp__close(boot[0]);
  mp__boot_msg_release(&msg);
  int32_t pid = 0;
  int pidfd = -1;
  size_t got = 0, nfd = 0;
  rc = mp__recv_fds(st[0], &pid, sizeof pid, &got, &pidfd, 1, &nfd);
  if (!rc && got > 0 && got < sizeof pid)
    rc = mp__read_full(st[0], (char *)&pid + got, sizeof pid - got, NULL);
  if (!rc && got == 0)
    rc = MP_EEOF;
  if (!rc && pid <= 0)
    rc = pid < 0 ? pid : MP_ECHILD;
  if (rc) {
    mp__close(pidfd);
    mp__close(st[0]);
    return mp_seterr(rc, "the forkserver could not fork");
  }
  if (send_rc) {
    /* The child exits on the closed boot socket; wait for its status so
     * that nothing is left behind. */
    int32_t code;
    mp__read_full(st[0], &code, sizeof code, NULL);
    mp__close(pidfd);
    mp__close(st[0]);
    return send_rc;
  }
  p->pid = pid;
  p->pidfd = pidfd;
  p->sentinel = p->status_fd = st[0];
  return 0;
}

static void
forkserver_after_fork(void)
{
  mp__mutex_reset(&fs_lock);
  /* The server belongs to our parent; ours, if needed, will be new. */
  if (fs_ctl >= 0) {
    mp__close(fs_ctl);
    fs_ctl = -1;
    __atomic_store_n(&fs_pid, 0, __ATOMIC_RELEASE);
  }
  if (fs_stop_registered)
    fs_stop_registered = 0;
}

void
mp__forkserver_stop(void)
{
  if (!__atomic_load_n(&fs_pid, __ATOMIC_ACQUIRE))
    return;
  pthread_mutex_lock(&fs_lock);
  if (fs_pid > 0) {
    mp__close(fs_ctl);
    while (waitpid(fs_pid, NULL, 0) < 0 && errno == EINTR)
      ;
    fs_ctl = -1;
    __atomic_store_n(&fs_pid, 0, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&fs_lock);
}

/* The forkserver died before it reported the exit of p's child (it was
 * killed, or stopped with children running): the child is an orphan now
 * and may still run.  Its pidfd takes over as the sentinel, under the same
 * number, so a descriptor already handed out stays good. */
static void
forkserver_lost(mp_process *p)
{
  mp_log_debug("the forkserver is gone: watching process %d itself",
               (int)p->pid);
  if (p->pidfd >= 0 && dup3(p->pidfd, p->status_fd, O_CLOEXEC) >= 0) {
    p->status_fd = -1;
    return;
  }
  mp__close(p->pidfd); /* nothing to watch it with */
  p->pidfd = -1;
  p->status_fd = -1;
}

static int
forkserver_reap(mp_process *p)
{
  if (p->status_fd >= 0) {
    struct pollfd pfd = {p->status_fd, POLLIN, 0};
    if (poll(&pfd, 1, 0) <= 0)
      return 0;
    int32_t code;
    if (mp__read_full(p->status_fd, &code, sizeof code, NULL) == 0) {
      p->exitcode = code;
      return 1;
    }
    forkserver_lost(p);
  }
  int st, known = mp__proc_lost_status(p, 1, &st);
  if (known > 0)
    p->exitcode = mp__proc_status_code(st);
  return known;
}

const mp__start_ops mp__forkserver_ops = {
    .name = "forkserver",
    .cls = "ForkServerProcess",
    .start = forkserver_start,
    .reap = forkserver_reap,
    .signal = mp__proc_signal_pidfd,
    .after_fork_child = forkserver_after_fork,
    .child_exit = mp__proc_child_exit,
    .lost_why = "the forkserver died before it ended",
};

/* ---- the server -------------------------------------------------------- */

struct entry {
  pid_t pid;
  int status_fd;
};

struct server {
  int ctl, client_pidfd, sfd;
  /* What the server inherited through exec from the program: the signals
   * it ignores and the mask of the thread that started the server.  The
   * server runs with its own; its children get these back, as spawn
   * children have them. */
  sigset_t old_ignored, old_mask;
  struct entry *tab;
  size_t ntab, cap;
  /* A child forked ahead of time, waiting for its boot socket: a request
   * then costs a hand-over instead of a fork (the next spare is forked
   * after the reply, off the requester's path). */
  pid_t spare_pid;
  int spare_sock;
};

/* In a new child: drop the server's descriptors and signal set-up. */
static void
child_setup(struct server *s)
{
  mp__close(s->ctl);
  mp__close(s->client_pidfd);
  mp__close(s->sfd);
  mp__close(s->spare_sock);
  for (size_t i = 0; i < s->ntab; i++)
    mp__close(s->tab[i].status_fd);
  free(s->tab);
  struct sigaction act;
  memset(&act, 0, sizeof act);
  sigemptyset(&act.sa_mask);
  for (int sig = 1; sig < NSIG; sig++) {
    int ign = sigismember(&s->old_ignored, sig) == 1;
    if (ign || sig == SIGINT || sig == SIGPIPE) {
      act.sa_handler = ign ? SIG_IGN : SIG_DFL;
      sigaction(sig, &act, NULL);
    }
  }
  sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
}

static void
fork_spare(struct server *s)
{
  int sv[2];
  if (mp__socketpair(SOCK_STREAM, sv) != 0)
    return;
  pid_t pid = fork();
  if (pid == 0) {
    mp__close(sv[0]);
    child_setup(s);
    char c;
    int boot = -1;
    size_t got = 0, n = 0;
    int rc = mp__recv_fds(sv[1], &c, 1, &got, &boot, 1, &n);
    if (rc || got == 0 || n != 1)
      _exit(0); /* the server is gone before it needed us */
    mp__close(sv[1]);
    mp__boot_run(boot, 1);
  }
  mp__close(sv[1]);
  if (pid < 0) {
    mp__close(sv[0]);
    return;
  }
  s->spare_pid = pid;
  s->spare_sock = sv[0];
}

static void
drop_spare(struct server *s)
{
  mp__close(s->spare_sock);
  s->spare_sock = -1;
  s->spare_pid = 0;
}

/* A child for the boot socket `boot`: the spare, or a new fork (which
 * closes `status`, the server's end of its status socket). */
static pid_t
new_child(struct server *s, int boot, int status)
{
  if (s->spare_pid > 0) {
    pid_t pid = s->spare_pid;
    int rc = mp__send_fds(s->spare_sock, "B", 1, &boot, 1);
    drop_spare(s);
    if (rc == 0)
      return pid;
    /* The spare died: it is reaped with the others; fork one now. */
  }
  pid_t pid = fork();
  if (pid == 0) {
    child_setup(s);
    mp__close(status);
    mp__boot_run(boot, 1);
  }
  return pid < 0 ? -errno : pid;
}

static void
reap(struct server *s)
{
  struct signalfd_siginfo si;
  while (read(s->sfd, &si, sizeof si) > 0)
    ;
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == s->spare_pid) {
      drop_spare(s);
      continue;
    }
    /* Exited or killed: nothing else is waited for. */
    int32_t code = WIFEXITED(status) ? WEXITSTATUS(status)
                                     : -WTERMSIG(status);
    for (size_t i = 0; i < s->ntab; i++) {
      if (s->tab[i].pid != pid)
        continue;
      mp__write_all(s->tab[i].status_fd, &code, sizeof code);
      mp__close(s->tab[i].status_fd);
      s->tab[i] = s->tab[--s->ntab];
      break;
    }
  }
}

/* One request: fds[0] the child's boot socket, fds[1] the status socket. */
static void
serve(struct server *s, int fds[2])
{
  if (s->ntab == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 16;
    struct entry *t = realloc(s->tab, ncap * sizeof *t);
    if (!t) {
      int32_t e = MP_ENOMEM;
      mp__send_fds(fds[1], &e, sizeof e, NULL, 0);
      mp__close(fds[0]);
      mp__close(fds[1]);
      return;
    }
    s->tab = t;
    s->cap = ncap;
  }
  pid_t pid = new_child(s, fds[0], fds[1]);
  mp__close(fds[0]);
  int32_t reply = (int32_t)pid;
  /* The client gets a pidfd from us, the parent, while the child cannot
   * have been reaped: no pid-reuse race. */
  int cpidfd = pid > 0 ? mp__plat_pidfd_open(pid) : -1;
  mp__send_fds(fds[1], &reply, sizeof reply, &cpidfd, cpidfd >= 0);
  mp__close(cpidfd);
  if (pid > 0)
    s->tab[s->ntab++] = (struct entry){pid, fds[1]};
  else
    mp__close(fds[1]);
}

void
mp__forkserver_main(int ctl, int client_pidfd, char **preload, size_t npreload)
{
  mp__log_set_process_name("ForkServer");
  for (size_t i = 0; i < npreload; i++) {
    if (!dlopen(preload[i], RTLD_NOW | RTLD_GLOBAL)) {
      const char *e = dlerror();
      mp_log_debug("forkserver: cannot preload %s: %s", preload[i],
                   e ? e : "?");
    }
  }
  struct server s = {.ctl = ctl, .client_pidfd = client_pidfd,
                     .spare_sock = -1};
  /* Warm what every child runs (lazy bindings, the codec's one-time set-up)
   * here, once, so that children inherit it done. */
  mp__proc_prebind();
  void *pk;
  size_t pklen;
  mp_obj *empty = mp_tuple_take(0), *back = NULL;
  if (empty && mp_pickle_dumps(empty, NULL, &pk, &pklen) == 0) {
    if (mp_pickle_loads_fds(pk, pklen, NULL, NULL, 0, &back) == 0)
      mp_obj_free(back);
    mp_free(pk);
  }
  mp_obj_free(empty);
  /* The server's own signal set-up, whatever the program's is: every
   * signal default (an ignored SIGCHLD would let the kernel reap the
   * children whose exit codes the server reports; exec already dropped
   * handlers and SA_NOCLDWAIT), but SIGINT ignored -- Ctrl-C goes to the
   * whole process group, the server stays out of it -- and SIGPIPE -- a
   * client may be gone; only SIGCHLD blocked, for the signalfd. */
  struct sigaction act, old;
  memset(&act, 0, sizeof act);
  sigemptyset(&act.sa_mask);
  sigemptyset(&s.old_ignored);
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old) != 0)
      continue; /* (and the C library's own signals) */
    int ign = old.sa_handler == SIG_IGN;
    if (ign)
      sigaddset(&s.old_ignored, sig);
    act.sa_handler = sig == SIGINT || sig == SIGPIPE ? SIG_IGN : SIG_DFL;
    if (ign || act.sa_handler == SIG_IGN)
      sigaction(sig, &act, NULL);
  }
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_SETMASK, &chld, &s.old_mask);
  s.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (s.sfd < 0)
    _exit(MP_EXIT_BOOTFAIL);
  for (;;) {
    if (s.spare_pid == 0)
      fork_spare(&s);
    struct pollfd pfd[3] = {{ctl, POLLIN, 0},
                            {client_pidfd, POLLIN, 0},
                            {s.sfd, POLLIN, 0}};
    if (poll(pfd, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (pfd[1].revents)
      break; /* the program that started us is gone */
    if (pfd[2].revents)
      reap(&s);
    if (pfd[0].revents & POLLIN) {
      char c;
      int fds[2];
      size_t got = 0, nfds = 0;
      int rc = mp__recv_fds(ctl, &c, 1, &got, fds, 2, &nfds);
      if (rc || got == 0)
        break;
      if (nfds != 2) {
        for (size_t i = 0; i < nfds; i++)
          mp__close(fds[i]);
        continue;
      }
      serve(&s, fds);
    } else if (pfd[0].revents) {
      break; /* hang-up: the client closed the control socket */
    }
  }
  _exit(0);
}
