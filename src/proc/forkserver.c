/* SPDX-License-Identifier: MIT */
/* The "forkserver" start method: a single-threaded server, started with
 * spawn on first use, forks children on request.
 *
 * A start is one packet, sent without waiting for anything.  The server
 * keeps a child forked ahead, a spare, blocked reading the control socket
 * (SOCK_SEQPACKET: one message per packet, so any thread of the program
 * may send at any time), and announces it to the client on that socket
 * before it is needed: its pid, a pidfd of it and the read end of its
 * status pipe.  To start a child the client takes the announcement and
 * sends its request: the child's instructions (boot.c; a large payload
 * rides in a memfd) with the args' descriptors, addressed to that spare's
 * pid.  The spare reads it, tells the server it was taken (the server
 * forks and announces the next one) and runs.  Neither the server nor a
 * reply is on the path of a start: the client sends one packet and waits
 * for nothing, the child wakes once.  The server reaps, and writes the exit code (an
 * int32) into the status pipe, whose read end is the process's sentinel.
 *
 * A spare that dies untaken (someone killed it) has its announcement
 * dropped by the client if it is seen dead, else the request sent to it is
 * dropped by whoever reads it (its pid is not theirs) and the process
 * reads as the spare ended.  When the server cannot fork, it announces the
 * error instead: that start fails with it, and the client's nudge (a
 * one-byte packet) has the server try again for the next.
 *
 * The server exits when the program that started it exits, whatever the
 * way (it watches that program's pidfd), or when the control socket closes.
 * Spares die with the server (parent-death signal: the server is
 * single-threaded, so that signal is reliable there), and so do daemon
 * children; other children are freed of it when they take a request.  If
 * the server dies first (killed), a status pipe ends without a code: the
 * client then watches the child's pidfd itself.  A server found dead at a
 * start (its control socket or the announced status pipe at its end) is
 * replaced, once per start.
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
#include <sys/auxv.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

static pthread_mutex_t fs_lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static pid_t fs_pid;
static int fs_ctl = -1;
static char **fs_preload;
static size_t fs_npreload;
static int fs_stop_registered; /* this process's finalizer that stops it */
static int fs_nudge; /* the last announcement was an error: ask again */
/* An announcement: a spare's pid with its pidfd and status pipe, or the
 * error the server met making one. */
struct spare {
  int32_t pid;
  int fds[2]; /* pidfd, status pipe */
};
/* A spare taken from the server whose request could not be sent: the
 * next start's (the server announces the next only once it is used). */
static struct spare fs_kept = {0, {-1, -1}};

static void
stop_at_exit(void *arg)
{
  (void)arg;
  mp__forkserver_stop();
}

int
mp_set_forkserver_preload(const char *const *names, size_t n)
{
  mp__errdetail_clear();
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
drop_kept_locked(void)
{
  mp__close(fs_kept.fds[0]);
  mp__close(fs_kept.fds[1]);
  fs_kept = (struct spare){0, {-1, -1}};
}

static void
reset_locked(void)
{
  mp__close(fs_ctl);
  fs_ctl = -1;
  fs_nudge = 0;
  drop_kept_locked();
  __atomic_store_n(&fs_pid, 0, __ATOMIC_RELEASE);
}

static int
ensure_running_locked(void)
{
  if (fs_pid > 0)
    return 0;
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
  mp_log_debug("forkserver started (pid %d)", (int)pid);
  return 0;
}

/* The server is gone (fs_lock held): its end of the control socket or of
 * a status pipe is closed.  Make sure (it may still be exiting), reap it
 * and forget it. */
static void
server_gone_locked(void)
{
  mp_log_warning("the forkserver (pid %d) died; starting another",
                 (int)fs_pid);
  kill(fs_pid, SIGKILL);
  while (waitpid(fs_pid, NULL, 0) < 0 && errno == EINTR)
    ;
  reset_locked();
}


/* Take the next usable announcement (fs_lock held; waits for the server to
 * make one): the kept one, else the server's next.  0, the server's error,
 * or MP_EEOF when the server is gone.  After an error the server tries
 * again only when asked, at the next start: so that start sees how things
 * are then. */
static int
next_spare_locked(struct spare *sp)
{
  if (fs_nudge) {
    if (send(fs_ctl, "R", 1, MSG_NOSIGNAL) != 1)
      return MP_EEOF;
    fs_nudge = 0;
  }
  for (;;) {
    if (fs_kept.pid > 0) {
      *sp = fs_kept;
      fs_kept = (struct spare){0, {-1, -1}};
    } else {
      size_t got = 0, nfds = 0;
      sp->fds[0] = sp->fds[1] = -1;
      int rc = mp__recv_fds(fs_ctl, &sp->pid, sizeof sp->pid, &got, sp->fds,
                            2, &nfds);
      if (rc || got == 0)
        return MP_EEOF;
      if (got == sizeof sp->pid && sp->pid < 0 && nfds == 0) {
        fs_nudge = 1;
        return sp->pid;
      }
      if (got != sizeof sp->pid || sp->pid <= 0 || nfds != 2) {
        mp__close(sp->fds[0]);
        mp__close(sp->fds[1]);
        return MP_EEOF; /* not our server's */
      }
    }
    /* Still good?  A dead spare's pidfd is readable (its status pipe too,
     * once the server reaped it); the status pipe alone only at its end,
     * when the server is dead. */
    struct pollfd pfd[2] = {{sp->fds[0], POLLIN, 0}, {sp->fds[1], POLLIN, 0}};
    if (poll(pfd, 2, 0) == 0)
      return 0;
    mp__close(sp->fds[0]);
    mp__close(sp->fds[1]);
    if (!pfd[0].revents)
      return MP_EEOF;
  }
}

static int
forkserver_start(mp_process *p)
{
  mp__boot_msg msg;
  int rc = mp__boot_encode_process(p, 1, &msg);
  if (rc)
    return rc;
  struct spare sp = {0, {-1, -1}};
  pthread_mutex_lock(&fs_lock);
  for (int attempt = 0;; attempt++) {
    rc = ensure_running_locked();
    if (!rc)
      rc = next_spare_locked(&sp);
    if (!rc) {
      rc = mp__boot_send_request(fs_ctl, sp.pid, &msg);
      if (rc == -EPIPE || rc == -ECONNRESET) {
        mp__close(sp.fds[0]);
        mp__close(sp.fds[1]);
        rc = MP_EEOF;
      } else if (rc) {
        fs_kept = sp; /* still waiting for a request: the next start's */
      }
    }
    if (rc != MP_EEOF || attempt > 0)
      break;
    server_gone_locked(); /* and one more try with a new one */
  }
  pthread_mutex_unlock(&fs_lock);
  mp__boot_msg_release(&msg);
  if (rc)
    return mp_seterr(rc, "the forkserver could not start the child");
  p->pid = sp.pid;
  p->pidfd = sp.fds[0];
  p->sentinel = p->status_fd = sp.fds[1];
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
  if (fs_kept.pid)
    drop_kept_locked();
  if (fs_stop_registered)
    fs_stop_registered = 0;
  if (fs_nudge)
    fs_nudge = 0;
}

void
mp__forkserver_stop(void)
{
  if (!__atomic_load_n(&fs_pid, __ATOMIC_ACQUIRE))
    return;
  pthread_mutex_lock(&fs_lock);
  if (fs_pid > 0) {
    pid_t pid = fs_pid;
    reset_locked(); /* the server ends on its control socket's end */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
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
    /* The server writes the code (4 bytes, atomically) once it reaped
     * the child; the read end does not block. */
    int32_t code;
    ssize_t n;
    while ((n = read(p->status_fd, &code, sizeof code)) < 0 && errno == EINTR)
      ;
    if (n < 0 && errno == EAGAIN)
      return 0;
    if (n == (ssize_t)sizeof code) {
      p->exitcode = code;
      return 1;
    }
    forkserver_lost(p); /* end of file: the server is gone */
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
  pid_t me;
  /* What the server inherited through exec from the program: the signals
   * it ignores and the mask of the thread that started the server.  The
   * server runs with its own; its children get these back, as spawn
   * children have them. */
  sigset_t old_ignored, old_mask;
  /* Every child not reaped yet, the spare too, with the write end of its
   * status pipe. */
  struct entry *tab;
  size_t ntab, cap;
  /* The spare: announced, reading the control socket.  0: none (the
   * server could not make one and reads the control socket itself, for the
   * client's nudge). */
  pid_t spare_pid;
  /* A pipe every spare inherits: a spare that took a request writes its
   * pid there (a spare that dies untaken is seen by the reap). */
  int taken[2];
};

/* A packet read by a spare. */
static uint8_t req[MP__BOOT_INLINE_MAX + 1];
static int req_fds[MP__MAX_FDS_PER_MSG];

/* In a new spare: drop the server's descriptors and signal set-up (the
 * control socket and the program's pidfd stay: the spare reads the one,
 * and the other is its parent sentinel), and die with the server until a
 * request says otherwise. */
static void
child_setup(struct server *s)
{
  mp__close(s->sfd);
  mp__close(s->taken[0]);
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
  if (mp__plat_set_pdeathsig(SIGKILL, s->me) != 0)
    _exit(0); /* the server is gone already */
}

/* The spare: wait for the request addressed to it, then become its
 * child. */
__attribute__((noreturn)) static void
spare_main(struct server *s)
{
  child_setup(s);
  pid_t me = (pid_t)mp__getpid();
  size_t got, nfds;
  for (;;) {
    int rc = mp__recv_fds(s->ctl, req, sizeof req, &got, req_fds,
                          MP__MAX_FDS_PER_MSG, &nfds);
    if (rc == MP_ELIMIT)
      continue;
    if (rc || got == 0)
      _exit(0); /* the program closed the control socket */
    if (mp__boot_request_dest(req, got) == me)
      break;
    /* For a spare that died before it could read it: dropped. */
    for (size_t i = 0; i < nfds; i++)
      mp__close(req_fds[i]);
  }
  mp__close(s->ctl);
  /* The server forks the next spare while this one starts. */
  int32_t word = (int32_t)me;
  ssize_t w = write(s->taken[1], &word, sizeof word);
  (void)w;
  mp__close(s->taken[1]);
  mp__boot_forkserver_child(req, got, req_fds, nfds, s->client_pidfd);
}

static int
table_room(struct server *s)
{
  if (s->ntab < s->cap)
    return 0;
  size_t ncap = s->cap ? s->cap * 2 : 16;
  struct entry *t = realloc(s->tab, ncap * sizeof *t);
  if (!t)
    return MP_ENOMEM;
  s->tab = t;
  s->cap = ncap;
  return 0;
}

/* Spares that took a request: 1 if the current one did. */
static int
read_taken(struct server *s)
{
  int32_t pids[64];
  ssize_t n;
  int current = 0;
  while ((n = read(s->taken[0], pids, sizeof pids)) > 0) {
    for (size_t i = 0; i < (size_t)n / sizeof pids[0]; i++)
      current |= s->spare_pid && pids[i] == s->spare_pid;
    if (n < (ssize_t)sizeof pids)
      break;
  }
  if (current)
    s->spare_pid = 0;
  return current;
}

/* The status pipe: its read end, the client's, does not block (a reap
 * just reads).  Kept off fds 0-2 like every descriptor of the library. */
static int
status_pipe(int st[2])
{
  if (pipe2(st, O_CLOEXEC | O_NONBLOCK) < 0)
    return mp__errno();
  for (int i = 0; i < 2; i++)
    if (st[i] < 3) {
      int fd = mp__dup(st[i]);
      mp__close(st[i]);
      st[i] = fd;
    }
  if (st[0] >= 0 && st[1] >= 0)
    return 0;
  mp__close(st[0]);
  mp__close(st[1]);
  return MP_EMFILE;
}

/* Fork a spare and announce it, or announce the error that prevented it:
 * 0, or -1 when the client is gone. */
static int
announce(struct server *s)
{
  /* st, the status pipe: the server writes the exit code, the client
   * reads it (end of file if the server died). */
  int st[2] = {-1, -1}, pidfd = -1;
  int32_t pid = table_room(s);
  if (!pid) {
    pid = fork();
    if (pid == 0)
      spare_main(s);
    int err = 0;
    if (pid < 0)
      err = mp__errno();
    /* (the server's pidfd of its own child: no pid-reuse race) */
    else if ((pidfd = mp__plat_pidfd_open(pid)) < 0)
      err = pidfd;
    else
      err = status_pipe(st);
    if (err && pid > 0) {
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    }
    if (err)
      pid = err;
  }
  int rc;
  if (pid > 0) {
    /* The client gets the pidfd and the status pipe's read end. */
    int fds[2] = {pidfd, st[0]};
    rc = mp__send_fds(s->ctl, &pid, sizeof pid, fds, 2);
    s->tab[s->ntab++] = (struct entry){pid, st[1]}; /* room made above */
    s->spare_pid = pid;
  } else {
    mp__close(st[1]);
    rc = mp__send_fds(s->ctl, &pid, sizeof pid, NULL, 0);
  }
  mp__close(pidfd);
  mp__close(st[0]);
  return rc ? -1 : 0;
}

/* No spare: the server reads the control socket.  1 for the client's
 * nudge (announce again), 0 for a request to a spare that died (dropped),
 * -1 when the socket has ended. */
static int
read_nudge(struct server *s)
{
  size_t got = 0, nfds = 0;
  int rc = mp__recv_fds(s->ctl, req, sizeof req, &got, req_fds,
                        MP__MAX_FDS_PER_MSG, &nfds);
  if (rc == MP_ELIMIT)
    return 0;
  if (rc || got == 0)
    return -1;
  for (size_t i = 0; i < nfds; i++)
    mp__close(req_fds[i]);
  return got == 1 && req[0] == 'R' && nfds == 0;
}

/* Reap every child that ended and report its exit code; 1 if the spare
 * was one of them. */
static int
reap(struct server *s)
{
  struct signalfd_siginfo si[8];
  while (read(s->sfd, si, sizeof si) == (ssize_t)sizeof si)
    ;
  int status, spare_gone = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    /* Exited or killed: nothing else is waited for. */
    int32_t code = WIFEXITED(status) ? WEXITSTATUS(status)
                                     : -WTERMSIG(status);
    for (size_t i = 0; i < s->ntab; i++) {
      if (s->tab[i].pid != pid)
        continue;
      ssize_t w = write(s->tab[i].status_fd, &code, sizeof code);
      (void)w; /* (EPIPE: the client is done with it) */
      mp__close(s->tab[i].status_fd);
      s->tab[i] = s->tab[--s->ntab];
      break;
    }
    if (pid == s->spare_pid) {
      s->spare_pid = 0; /* (a word it may have left no longer matches) */
      spare_gone = 1;
    }
  }
  return spare_gone;
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
                     .me = (pid_t)mp__getpid()};
  /* Warm what every child runs (lazy bindings, the codec's one-time set-up,
   * this process's once-flag) here, once, so that children inherit it
   * done. */
  mp__proc_prebind();
  (void)mp_current_process();
  sigset_t warm;
  sigemptyset(&warm);
  (void)sigismember(&warm, SIGINT);
  ssize_t w = write(-1, "", 0);
  (void)w;
  void *pk;
  size_t pklen;
  /* A function of the program crosses too (its entry point): the
   * program's symbol table is read here once -- a child's target is checked
   * against it, and each child would open, map and parse the executable
   * again -- and the reference's decoding is bound. */
  uintptr_t entry = (uintptr_t)getauxval(AT_ENTRY);
  mp_obj *fn = entry ? mp_func_new((mp_fn)entry) : NULL;
  mp_obj *empty = fn ? mp_tuple_take(1, fn) : mp_tuple_take(0), *back = NULL;
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
  if (s.sfd < 0 || mp__pipe(s.taken) || mp__fd_set_nonblock(s.taken[0], 1))
    _exit(MP_EXIT_BOOTFAIL);
  if (announce(&s) < 0)
    _exit(0);
  for (;;) {
    /* With a spare, the spare reads the control socket: the server only
     * watches it for its end. */
    struct pollfd pfd[4] = {{ctl, s.spare_pid ? 0 : POLLIN, 0},
                            {client_pidfd, POLLIN, 0},
                            {s.sfd, POLLIN, 0},
                            {s.taken[0], POLLIN, 0}};
    if (poll(pfd, 4, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (pfd[1].revents)
      break; /* the program that started us is gone */
    /* The next spare once this one is gone: taken (its word in the
     * pipe) or dead; or, after an error, when the client asks. */
    int again = 0;
    if (pfd[3].revents)
      again = read_taken(&s);
    if (pfd[2].revents)
      again |= reap(&s);
    if (pfd[0].revents & POLLIN) {
      int r = read_nudge(&s);
      if (r < 0)
        break;
      again |= r;
    } else if (pfd[0].revents) {
      break; /* hang-up: the client closed the control socket */
    }
    if (again && !s.spare_pid && announce(&s) < 0)
      break;
  }
  _exit(0);
}
