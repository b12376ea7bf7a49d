/* SPDX-License-Identifier: MIT */
/* The bootstrap of spawn and forkserver children: their instructions
 * (encoded here, sent as one message: a header and the payload, with the
 * descriptors), the child side that decodes them, and the takeover.
 *
 * A spawned child (spawn.c) is this program (or mp_set_executable's) run by
 * posix_spawn with fd 3 an AF_UNIX socket to its parent and __MPROC_BOOT=3
 * in its environment.  The library's constructor notices the variable,
 * removes it, and takes the process over once every constructor of the
 * program has run and before main() (mp__plat_run_after_ctors): it reads its instructions (who it is,
 * the target as a function reference, the args pickle and the descriptors
 * of the handles in it), runs the target and exits.
 *
 * "After every constructor": the main program's own constructors run after
 * the libraries' (and, with a static libmproc, after ours in its
 * .init_array).  So the constructor replaces the last entry of the main
 * program's DT_INIT_ARRAY with a trampoline that calls that entry and then
 * takes over; glibc reads the array as it walks it.  Where that is not
 * possible (no init array, or ours is its last entry) the takeover happens
 * in the constructor itself.
 *
 * A forkserver child is a spare the server forked ahead of time
 * (forkserver.c); it gets its instructions as one packet on the server's
 * control socket (or the header there and the payload in a memfd). */
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

#define BOOT_MAGIC 0x3242504du /* "MPB2" */
#define BOOT_PROCESS 1
#define BOOT_SERVER 2
/* Header flags: the payload is not in the message but in its last
 * descriptor, a memfd (a forkserver request too big for one packet). */
#define BOOT_F_MEMFD 1u
/* Descriptors of the args: what one message can carry (the kernel's
 * SCM_MAX_FD) less the first (spawn: the parent's pidfd), the inherited
 * ones and the last (spawn: the exit word's table; forkserver: the
 * payload's memfd). */
#define MAX_BOOT_FDS (MP__MAX_FDS_PER_MSG - 2 - MP__MAX_INHERIT)
#define MAX_HANDLE_TYPES 64
#define MAX_MSG_FDS (2 + MP__MAX_INHERIT + MAX_BOOT_FDS)

/* Every message starts with this (host order: it never leaves the host). */
struct boot_hdr {
  uint32_t magic, kind;
  uint32_t len;   /* payload bytes, after the header or in the memfd */
  uint32_t nfds;  /* descriptors attached */
  uint32_t flags; /* BOOT_F_* */
  uint32_t dest;  /* a forkserver request: the pid of the spare it is for */
};

/* ---- the instructions ------------------------------------------------------ */

/* Start a message: its header, filled in when it is sent. */
static int
begin_msg(mp__buf *b, uint32_t kind)
{
  struct boot_hdr h = {BOOT_MAGIC, kind, 0, 0, 0, 0};
  return mp__buf_append(b, &h, sizeof h);
}

static void
set_hdr(mp__buf *b, size_t nfds, uint32_t flags, pid_t dest)
{
  struct boot_hdr h;
  memcpy(&h, b->data, sizeof h);
  h.len = (uint32_t)(b->len - sizeof h);
  h.nfds = (uint32_t)nfds;
  h.flags = flags;
  h.dest = (uint32_t)dest;
  memcpy(b->data, &h, sizeof h);
}

void
mp__boot_msg_release(mp__boot_msg *m)
{
  mp__buf_release(&m->msg);
  mp_free(m->argfds);
  m->argfds = NULL;
  m->nargfds = 0;
  for (size_t i = 0; i < m->ninh; i++)
    mp__close(m->inhfds[i]);
  m->ninh = 0;
}

/* The hooks of mp__proc_inherit: set once each, never removed (lock-free,
 * so a fork child needs nothing reset). */
static _Atomic(const mp__inherit *) inherit_tab[MP__MAX_INHERIT];

int
mp__proc_inherit(const mp__inherit *h)
{
  for (int i = 0; i < MP__MAX_INHERIT; i++) {
    const mp__inherit *cur = atomic_load(&inherit_tab[i]);
    if (cur == h)
      return 0;
    if (!cur && atomic_compare_exchange_strong(&inherit_tab[i], &cur, h))
      return 0;
    if (cur == h) /* another thread registered it meanwhile */
      return 0;
  }
  return mp_seterr(MP_ELIMIT, "too many inherited descriptors");
}

/* Ask each hook for its descriptor; encode (count, (hook, word)...). */
static int
encode_inherited(mp__buf *b, mp__boot_msg *m)
{
  const mp__inherit *hooks[MP__MAX_INHERIT];
  uint64_t words[MP__MAX_INHERIT];
  int rc = 0;
  for (int i = 0; !rc && i < MP__MAX_INHERIT; i++) {
    const mp__inherit *h = atomic_load(&inherit_tab[i]);
    int fd = -1;
    uint64_t word = 0;
    if (h && (rc = h->give(&fd, &word)) == 0 && fd >= 0) {
      hooks[m->ninh] = h;
      words[m->ninh] = word;
      m->inhfds[m->ninh++] = fd;
    }
  }
  if (!rc)
    rc = mp__put_u32(b, (uint32_t)m->ninh);
  for (size_t i = 0; !rc && i < m->ninh; i++) {
    rc = mp__funcref_encode(hooks[i], 0, b);
    if (!rc)
      rc = mp__put_u64(b, words[i]);
  }
  return rc;
}

/* Encode everything before any process exists, so that an arg or a target
 * that cannot be sent fails mp_process_start without side effects. */
int
mp__boot_encode_process(mp_process *p, int use_pdeathsig, mp__boot_msg *m)
{
  mp__buf b = {0};
  void *pickle = NULL;
  size_t plen = 0, nargfds = 0;
  int *argfds = NULL;
  int rc;
  m->argfds = NULL;
  m->nargfds = 0;
  m->ninh = 0;
  m->exitfd = -1;
  m->msg = (mp__buf){0};
  const mp_handle_type *types[MAX_HANDLE_TYPES];
  size_t ntypes = 0;
  mp_process *cur = mp_current_process();

  mp__proc_set_spawning(&mp__contexts[p->method]);
  rc = mp_pickle_dumps_fds(p->args, NULL, &pickle, &plen, &argfds, &nargfds);
  mp__proc_set_spawning(NULL);
  if (rc)
    goto out;
  if (nargfds > MAX_BOOT_FDS) {
    rc = mp_seterr(MP_ELIMIT, "args hold %zu descriptors (at most %d)",
                   nargfds, MAX_BOOT_FDS);
    goto out;
  }
  rc = mp__proc_collect_handle_types(p->args, types, MAX_HANDLE_TYPES,
                                     &ntypes);
  if (rc)
    goto out;
  rc = begin_msg(&b, BOOT_PROCESS);
  pthread_mutex_lock(&cur->lock);
  if (!rc)
    rc = mp__put_u32(&b, mp__getpid());
  if (!rc)
    rc = mp__put_blob(&b, cur->name, strlen(cur->name));
  pthread_mutex_unlock(&cur->lock);
  if (!rc)
    rc = mp__put_blob(&b, p->name, strlen(p->name));
  if (!rc)
    rc = mp__put_blob(&b, p->identity, strlen(p->identity));
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)p->daemon);
  if (!rc)
    rc = mp__put_blob(&b, p->authkey, p->authkey_len);
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)mp_log_get_level());
  if (!rc)
    rc = mp__put_u32(&b, p->ctx ? (uint32_t)p->ctx->method : 0xffffffffu);
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)p->method);
  if (!rc) /* the child's default method is ours (-1: not fixed) */
    rc = mp__put_u32(&b, (uint32_t)mp__proc_default_method_now());
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)use_pdeathsig);
  if (!rc)
    rc = mp__put_u32(&b, p->target != NULL);
  if (!rc && p->target)
    rc = mp__funcref_encode((const void *)p->target, 1, &b);
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)ntypes);
  for (size_t i = 0; !rc && i < ntypes; i++)
    rc = mp__funcref_encode(types[i], 0, &b);
  if (!rc)
    rc = encode_inherited(&b, m);
  if (!rc)
    rc = mp__put_blob(&b, pickle, plen);
  /* Where the child reports its exit code (its table is the last fd). */
  if (!rc)
    rc = mp__put_u32(&b, p->exit_table == MP__XT_EXEC);
  if (!rc && p->exit_table == MP__XT_EXEC) {
    rc = mp__put_u32(&b, p->exit_index);
    if (!rc)
      rc = mp__put_u32(&b, p->exit_tag);
  }
out:
  mp_free(pickle);
  if (rc) {
    mp__buf_release(&b);
    mp_free(argfds);
    mp__boot_msg_release(m);
    return rc;
  }
  if (b.len - sizeof(struct boot_hdr) > UINT32_MAX - 4096) {
    mp__buf_release(&b);
    mp_free(argfds);
    mp__boot_msg_release(m);
    return mp_seterr(MP_ELIMIT, "the instructions of %s are too big",
                     p->name);
  }
  m->msg = b;
  m->argfds = argfds;
  m->nargfds = nargfds;
  m->exitfd = mp__exit_slot_fd(p);
  return 0;
}

/* fds[]: `first` (if >= 0), the inherited descriptors, the args' (m's);
 * returns the count. */
static size_t
msg_fds(const mp__boot_msg *m, int first, int *fds)
{
  size_t n = 0;
  if (first >= 0)
    fds[n++] = first;
  for (size_t i = 0; i < m->ninh; i++)
    fds[n++] = m->inhfds[i];
  for (size_t i = 0; i < m->nargfds; i++)
    fds[n++] = m->argfds[i];
  return n;
}

int
mp__boot_send_msg(int sock, mp__boot_msg *m)
{
  int fds[MAX_MSG_FDS];
  int self = mp__proc_self_pidfd();
  if (self < 0)
    return self;
  size_t nfds = msg_fds(m, self, fds);
  if (m->exitfd >= 0)
    fds[nfds++] = m->exitfd;
  set_hdr(&m->msg, nfds, 0, 0);
  int rc = mp__send_fds(sock, m->msg.data, m->msg.len, fds, nfds);
  mp__close(self);
  return rc;
}

/* One packet on a SOCK_SEQPACKET socket, with descriptors: 0 or -errno
 * (-EMSGSIZE when it is too big for the socket). */
static int
send_packet(int sock, const void *buf, size_t len, const int *fds,
            size_t nfds)
{
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int) * MP__MAX_FDS_PER_MSG)];
  } ctl;
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds) {
    memset(&ctl, 0, sizeof ctl);
    mh.msg_control = ctl.space;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
    if (errno != EINTR)
      return -errno;
  return 0;
}

int
mp__boot_send_request(int ctl, pid_t dest, mp__boot_msg *m)
{
  int fds[MAX_MSG_FDS];
  size_t nfds = msg_fds(m, -1, fds);
  int rc = MP_EMSGSIZE;
  if (m->msg.len <= MP__BOOT_INLINE_MAX) {
    set_hdr(&m->msg, nfds, 0, dest);
    rc = send_packet(ctl, m->msg.data, m->msg.len, fds, nfds);
  }
  if (rc != MP_EMSGSIZE)
    return rc;
  /* Too big for one packet (or for this system's socket buffers): the
   * payload goes in a memfd, the last descriptor. */
  size_t plen = m->msg.len - sizeof(struct boot_hdr);
  int mfd = mp__memfd_new("mproc-boot", plen);
  if (mfd < 0)
    return mfd;
  rc = mp__write_all(mfd, m->msg.data + sizeof(struct boot_hdr), plen);
  if (!rc) {
    fds[nfds++] = mfd;
    set_hdr(&m->msg, nfds, BOOT_F_MEMFD, dest);
    struct boot_hdr h;
    memcpy(&h, m->msg.data, sizeof h);
    h.len = (uint32_t)plen;
    rc = send_packet(ctl, &h, sizeof h, fds, nfds);
  }
  mp__close(mfd);
  return rc;
}

pid_t
mp__boot_request_dest(const uint8_t *msg, size_t len)
{
  struct boot_hdr h;
  if (len < sizeof h)
    return -1;
  memcpy(&h, msg, sizeof h);
  if (h.magic != BOOT_MAGIC || h.kind != BOOT_PROCESS)
    return -1;
  return (pid_t)h.dest;
}

/* ---- child side ------------------------------------------------------------ */

__attribute__((noreturn)) static void
boot_fail(int code, const char *fmt, ...)
{
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char line[1400];
  int n = snprintf(line, sizeof line, "mproc: child %d cannot start: %s\n",
                   (int)getpid(), msg);
  if (n > (int)sizeof line - 1)
    n = (int)sizeof line - 1;
  ssize_t w = write(2, line, (size_t)n);
  (void)w;
  _exit(code);
}

static char *
blob_str(const uint8_t *p, uint32_t n)
{
  char *s = malloc((size_t)n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

/* Become the child that `payload` describes.  fds: the inherited
 * descriptors, the args' descriptors, then the exit word's table if the
 * payload says so (all owned).  `to_free`: the payload's memory, or NULL. */
__attribute__((noreturn)) static void
boot_child(const uint8_t *payload, size_t len, void *to_free, int *fds,
           size_t nfds, int parent_sentinel, int forkserver_child)
{
  const uint8_t *p = payload, *end = payload + len;
  uint32_t v;
  int rc;
  /* The parent's instructions may load the objects they name (targets,
   * handle types and function values in the args): Python's import.  Only
   * they: trust ends once the args are decoded. */
  mp__funcref_trust(1);
  mp_process *self = mp__proc_alloc(MP__P_CURRENT);
  const uint8_t *s;
  uint32_t n, parent_pid, level, ctxm, method, defmethod, use_pdeathsig,
      has_target;
  char *parent_name = NULL;
  char err[1024] = "";
  if (!self)
    boot_fail(MP_EXIT_BOOTFAIL, "out of memory");
  if (mp__get_u32(&p, end, &parent_pid) || mp__get_blob(&p, end, &s, &n) ||
      !(parent_name = blob_str(s, n)) || mp__get_blob(&p, end, &s, &n) ||
      !(self->name = blob_str(s, n)) || mp__get_blob(&p, end, &s, &n) ||
      !(self->identity = blob_str(s, n)) || mp__get_u32(&p, end, &v) ||
      mp__get_blob(&p, end, &s, &n) || n == 0 ||
      !(self->authkey = malloc(n)))
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  self->daemon = v != 0;
  memcpy(self->authkey, s, n);
  self->authkey_len = n;
  if (mp__get_u32(&p, end, &level) || mp__get_u32(&p, end, &ctxm) ||
      mp__get_u32(&p, end, &method) || mp__get_u32(&p, end, &defmethod) ||
      mp__get_u32(&p, end, &use_pdeathsig) ||
      mp__get_u32(&p, end, &has_target) || method >= MP__M_COUNT ||
      (defmethod >= MP__M_COUNT && defmethod != 0xffffffffu))
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  mp__proc_set_default_method(defmethod < MP__M_COUNT ? (int)defmethod : -1);
  mp_log_set_level((int)level);
  mp__log_set_process_name(self->name);
  self->ctx = ctxm < MP__M_COUNT ? &mp__contexts[ctxm] : NULL;
  self->method = (int)method;
  if (has_target) {
    void *fn;
    rc = mp__funcref_decode(&p, end, &fn, err, sizeof err);
    if (rc)
      boot_fail(MP_EXIT_BADREF, "target of %s: %s", self->name, err);
    self->target = (mp_target_fn)fn;
  }
  uint32_t ntypes;
  if (mp__get_u32(&p, end, &ntypes) || ntypes > MAX_HANDLE_TYPES)
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  for (uint32_t i = 0; i < ntypes; i++) {
    void *t;
    rc = mp__funcref_decode(&p, end, &t, err, sizeof err);
    if (rc)
      boot_fail(MP_EXIT_BADREF, "a handle type in the args of %s: %s",
                self->name, err);
    /* The same type may already be registered by a constructor. */
    mp_handle_register((const mp_handle_type *)t);
  }
  uint32_t ninh;
  if (mp__get_u32(&p, end, &ninh) || ninh > MP__MAX_INHERIT || ninh > nfds)
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  for (uint32_t i = 0; i < ninh; i++) {
    void *h;
    uint64_t word;
    rc = mp__funcref_decode(&p, end, &h, err, sizeof err);
    if (rc)
      boot_fail(MP_EXIT_BADREF, "an inherited descriptor of %s: %s",
                self->name, err);
    if (mp__get_u64(&p, end, &word))
      boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
    ((const mp__inherit *)h)->take(fds[i], word);
  }
  uint32_t has_exit, exit_index = 0, exit_tag = 0;
  if (mp__get_blob(&p, end, &s, &n) || mp__get_u32(&p, end, &has_exit) ||
      (has_exit && (nfds < 1 + ninh || mp__get_u32(&p, end, &exit_index) ||
                    mp__get_u32(&p, end, &exit_tag))))
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  if (has_exit)
    mp__exit_slot_attach(self, fds[--nfds], exit_index, exit_tag);
  rc = mp_pickle_loads_fds(s, n, NULL, fds + ninh, nfds - ninh,
                           &self->args);
  mp__funcref_trust(0); /* what the target receives is a peer's */
  if (rc)
    boot_fail(MP_EXIT_BOOTFAIL, "rebuilding the args of %s: %s (%s)",
              self->name, mp_strerror(rc), mp_errdetail());
  free(to_free);
  self->creator_pid = (pid_t)parent_pid;
  int pdeath = use_pdeathsig ? MP__PDEATH_SIGNAL : MP__PDEATH_WATCH;
  if (forkserver_child) {
    /* A spare dies with the server (PR_SET_PDEATHSIG, set while it
     * waited): a daemon child keeps that, the others are freed of it. */
    pdeath = MP__PDEATH_ARMED;
    if (!self->daemon)
      mp__plat_set_pdeathsig(0, 0);
  }
  mp__proc_child_main(self, (pid_t)parent_pid, parent_name, parent_sentinel,
                      pdeath, (pid_t)parent_pid);
}

void
mp__boot_run(int sock)
{
  struct boot_hdr hdr;
  int fds[MAX_MSG_FDS];
  size_t got = 0, nfds = 0;
  int rc = mp__recv_fds(sock, &hdr, sizeof hdr, &got, fds, MAX_MSG_FDS,
                        &nfds);
  if (!rc && got == 0)
    boot_fail(MP_EXIT_BOOTFAIL, "the parent closed the connection");
  if (!rc && got < sizeof hdr)
    rc = mp__read_full(sock, (uint8_t *)&hdr + got, sizeof hdr - got, NULL);
  if (rc)
    boot_fail(MP_EXIT_BOOTFAIL, "reading instructions: %s", mp_strerror(rc));
  if (hdr.magic != BOOT_MAGIC || hdr.nfds != nfds || hdr.flags ||
      hdr.dest || hdr.len > (1u << 30))
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  uint8_t *payload = malloc(hdr.len ? hdr.len : 1);
  if (!payload)
    boot_fail(MP_EXIT_BOOTFAIL, "out of memory");
  rc = mp__read_full(sock, payload, hdr.len, NULL);
  if (rc)
    boot_fail(MP_EXIT_BOOTFAIL, "reading instructions: %s", mp_strerror(rc));
  mp__close(sock);
  const uint8_t *p = payload, *end = payload + hdr.len;

  if (hdr.kind == BOOT_SERVER) {
    uint32_t level, npre;
    if (nfds != 2 || mp__get_u32(&p, end, &level) ||
        mp__get_u32(&p, end, &npre) || npre > 4096)
      boot_fail(MP_EXIT_BOOTFAIL, "malformed forkserver instructions");
    mp_log_set_level((int)level);
    char **pre = calloc(npre ? npre : 1, sizeof *pre);
    for (uint32_t i = 0; pre && i < npre; i++) {
      const uint8_t *s;
      uint32_t n;
      if (mp__get_blob(&p, end, &s, &n) || !(pre[i] = blob_str(s, n)))
        boot_fail(MP_EXIT_BOOTFAIL, "malformed forkserver instructions");
    }
    free(payload);
    mp__forkserver_main(fds[0], fds[1], pre, npre);
  }
  if (hdr.kind != BOOT_PROCESS || nfds < 1)
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  boot_child(payload, hdr.len, payload, fds + 1, nfds - 1, fds[0], 0);
}

void
mp__boot_forkserver_child(const uint8_t *msg, size_t len, int *fds,
                          size_t nfds, int parent_sentinel)
{
  struct boot_hdr hdr;
  if (len < sizeof hdr)
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  memcpy(&hdr, msg, sizeof hdr);
  if (hdr.magic != BOOT_MAGIC || hdr.kind != BOOT_PROCESS ||
      hdr.nfds != nfds || hdr.len > (1u << 30))
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  const uint8_t *payload = msg + sizeof hdr;
  void *copy = NULL;
  if (hdr.flags & BOOT_F_MEMFD) {
    /* The payload is in the last descriptor. */
    if (len != sizeof hdr || nfds < 1 || hdr.len > (1u << 30) ||
        !(copy = malloc(hdr.len ? hdr.len : 1)))
      boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
    int mfd = fds[--nfds];
    for (size_t off = 0; off < hdr.len;) {
      ssize_t r = pread(mfd, (uint8_t *)copy + off, hdr.len - off, (off_t)off);
      if (r <= 0)
        boot_fail(MP_EXIT_BOOTFAIL, "reading instructions: %s",
                  r < 0 ? mp_strerror(mp__errno()) : "short");
      off += (size_t)r;
    }
    mp__close(mfd);
    payload = copy;
  } else if (len != sizeof hdr + hdr.len) {
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  }
  boot_child(payload, hdr.len, copy, fds, nfds, parent_sentinel, 1);
}

/* ---- the takeover ------------------------------------------------------ */

static int boot_fd = -1;

static void
takeover(int argc, char **argv, char **envp)
{
  (void)argc;
  (void)argv;
  (void)envp;
  mp__boot_run(boot_fd);
}

__attribute__((constructor)) static void
boot_ctor(int argc, char **argv, char **envp)
{
  const char *m = getenv(MP__BOOT_ENV);
  if (!m)
    return;
  boot_fd = atoi(m);
  /* The child's environment is the parent's, without the marker (also so
   * that a second copy of the library in this process stays out). */
  unsetenv(MP__BOOT_ENV);
  if (!mp__plat_run_after_ctors(boot_ctor, takeover))
    takeover(argc, argv, envp);
}

int
mp__boot_send_server(int sock, int ctl, char *const *preload, size_t n)
{
  mp__buf b = {0};
  int rc = begin_msg(&b, BOOT_SERVER);
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)mp_log_get_level());
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)n);
  for (size_t i = 0; !rc && i < n; i++)
    rc = mp__put_blob(&b, preload[i], strlen(preload[i]));
  int fds[2] = {ctl, mp__proc_self_pidfd()};
  if (!rc && fds[1] < 0)
    rc = fds[1];
  if (!rc) {
    set_hdr(&b, 2, 0, 0);
    rc = mp__send_fds(sock, b.data, b.len, fds, 2);
  }
  mp__close(fds[1]);
  mp__buf_release(&b);
  return rc;
}

/* ---- handle types in args ------------------------------------------------ */

static int
collect(const mp_obj *o, const mp_handle_type **types, size_t max, size_t *n,
        int depth)
{
  if (depth > MP_PICKLE_DEFAULT_MAX_DEPTH)
    return MP_ELIMIT;
  switch (mp_obj_type(o)) {
  case MP_T_HANDLE: {
    const mp_handle_type *t = mp_handle_type_of(o);
    for (size_t i = 0; i < *n; i++)
      if (types[i] == t)
        return 0;
    if (*n >= max)
      return MP_ELIMIT;
    types[(*n)++] = t;
    return 0;
  }
  case MP_T_TUPLE:
  case MP_T_LIST: {
    mp_obj *const *items;
    size_t len;
    if (mp_seq_items(o, &items, &len))
      return 0;
    for (size_t i = 0; i < len; i++) {
      int rc = collect(items[i], types, max, n, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  }
  case MP_T_DICT: {
    size_t pos = 0;
    mp_obj *k, *v;
    while (mp_dict_next(o, &pos, &k, &v)) {
      int rc = collect(k, types, max, n, depth + 1);
      if (!rc)
        rc = collect(v, types, max, n, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  }
  case MP_T_SET:
  case MP_T_FROZENSET: {
    size_t pos = 0;
    mp_obj *k;
    while (mp_set_next(o, &pos, &k)) {
      int rc = collect(k, types, max, n, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  }
  case MP_T_RECORD: {
    /* every part a pickle of it holds, NEWOBJ_EX's kwargs included */
    mp_obj *parts[6] = {0};
    if (mp_record_get(o, &parts[0], &parts[1], &parts[2], &parts[3],
                      &parts[4]))
      return 0;
    (void)mp_record_kwargs(o, &parts[5]);
    for (int i = 0; i < 6; i++) {
      int rc = parts[i] ? collect(parts[i], types, max, n, depth + 1) : 0;
      if (rc)
        return rc;
    }
    return 0;
  }
  default:
    return 0;
  }
}

int
mp__proc_collect_handle_types(const mp_obj *o, const mp_handle_type **types,
                              size_t max, size_t *n)
{
  *n = 0;
  return collect(o, types, max, n, 0);
}

