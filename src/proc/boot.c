/* spawn, and the bootstrap of spawn and forkserver children.
 *
 * A spawned child is this program (or mp_set_executable's) run by
 * posix_spawn with fd 3 an AF_UNIX socket to its parent and __MPROC_BOOT=3
 * in its environment.  The library's constructor notices the variable,
 * removes it, and takes the process over once every constructor of the
 * program has run and before main(): it reads its instructions (who it is,
 * the target as a function reference, the args pickle and the descriptors
 * of the handles in it), runs the target and exits.
 *
 * "After every constructor": the main program's own constructors run after
 * the libraries' (and, with a static libmproc, after ours in its
 * .init_array).  So the constructor replaces the last entry of the main
 * program's DT_INIT_ARRAY with a trampoline that calls that entry and then
 * takes over; glibc reads the array as it walks it.  Where that is not
 * possible (no init array, or ours is its last entry) the takeover happens
 * in the constructor itself. */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
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

#define BOOT_MAGIC 0x3142504du /* "MPB1" */
#define BOOT_PROCESS 1
#define BOOT_SERVER 2
/* Descriptors of the args: what one message can carry (the kernel's
 * SCM_MAX_FD) less the parent's pidfd, the inherited ones and the exit
 * word's table. */
#define MAX_BOOT_FDS (MP__MAX_FDS_PER_MSG - 2 - MP__MAX_INHERIT)
#define MAX_HANDLE_TYPES 64
/* The parent's pidfd, the inherited descriptors, the args' descriptors. */
#define MAX_MSG_FDS (2 + MP__MAX_INHERIT + MAX_BOOT_FDS)

/* ---- the instructions ------------------------------------------------------ */

static int
send_boot(int sock, uint32_t kind, const mp__buf *payload, const int *fds,
          size_t nfds)
{
  uint32_t hdr[4] = {BOOT_MAGIC, kind, (uint32_t)payload->len,
                     (uint32_t)nfds};
  int rc = mp__send_fds(sock, hdr, sizeof hdr, fds, nfds);
  if (!rc && payload->len)
    rc = mp__write_all(sock, payload->data, payload->len);
  return rc;
}

void
mp__boot_msg_release(mp__boot_msg *m)
{
  mp__buf_release(&m->payload);
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
  m->payload = (mp__buf){0};
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
  pthread_mutex_lock(&cur->lock);
  rc = mp__put_u32(&b, (uint32_t)getpid());
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
  m->payload = b;
  m->argfds = argfds;
  m->nargfds = nargfds;
  m->exitfd = mp__exit_slot_fd(p);
  return 0;
}

int
mp__boot_send_msg(int sock, const mp__boot_msg *m)
{
  int fds[MAX_MSG_FDS];
  fds[0] = mp__proc_self_pidfd();
  if (fds[0] < 0)
    return fds[0];
  for (size_t i = 0; i < m->ninh; i++)
    fds[1 + i] = m->inhfds[i];
  for (size_t i = 0; i < m->nargfds; i++)
    fds[1 + m->ninh + i] = m->argfds[i];
  size_t nfds = 1 + m->ninh + m->nargfds;
  if (m->exitfd >= 0)
    fds[nfds++] = m->exitfd;
  int rc = send_boot(sock, BOOT_PROCESS, &m->payload, fds, nfds);
  mp__close(fds[0]);
  return rc;
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

void
mp__boot_run(int sock, int forkserver_child)
{
  pid_t ppid_at_start = getppid();
  uint32_t hdr[4];
  int fds[MAX_MSG_FDS];
  size_t got = 0, nfds = 0;
  int rc = mp__recv_fds(sock, hdr, sizeof hdr, &got, fds, MAX_MSG_FDS, &nfds);
  if (!rc && got == 0)
    boot_fail(MP_EXIT_BOOTFAIL, "the parent closed the connection");
  if (!rc && got < sizeof hdr)
    rc = mp__read_full(sock, (uint8_t *)hdr + got, sizeof hdr - got, NULL);
  if (rc)
    boot_fail(MP_EXIT_BOOTFAIL, "reading instructions: %s", mp_strerror(rc));
  if (hdr[0] != BOOT_MAGIC || hdr[3] != nfds || hdr[2] > (1u << 30))
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  uint8_t *payload = malloc(hdr[2] ? hdr[2] : 1);
  if (!payload)
    boot_fail(MP_EXIT_BOOTFAIL, "out of memory");
  rc = mp__read_full(sock, payload, hdr[2], NULL);
  if (rc)
    boot_fail(MP_EXIT_BOOTFAIL, "reading instructions: %s", mp_strerror(rc));
  mp__close(sock);
  const uint8_t *p = payload, *end = payload + hdr[2];
  uint32_t v;

  if (hdr[1] == BOOT_SERVER) {
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
  if (hdr[1] != BOOT_PROCESS || nfds < 1)
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
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
  if (mp__get_u32(&p, end, &ninh) || ninh > MP__MAX_INHERIT ||
      ninh > nfds - 1)
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
    ((const mp__inherit *)h)->take(fds[1 + i], word);
  }
  uint32_t has_exit, exit_index = 0, exit_tag = 0;
  if (mp__get_blob(&p, end, &s, &n) || mp__get_u32(&p, end, &has_exit) ||
      (has_exit && (nfds < 2 + ninh || mp__get_u32(&p, end, &exit_index) ||
                    mp__get_u32(&p, end, &exit_tag))))
    boot_fail(MP_EXIT_BOOTFAIL, "malformed instructions");
  if (has_exit)
    mp__exit_slot_attach(self, fds[--nfds], exit_index, exit_tag);
  rc = mp_pickle_loads_fds(s, n, NULL, fds + 1 + ninh, nfds - 1 - ninh,
                           &self->args);
  mp__funcref_trust(0); /* what the target receives is a peer's */
  if (rc)
    boot_fail(MP_EXIT_BOOTFAIL, "rebuilding the args of %s: %s (%s)",
              self->name, mp_strerror(rc), mp_errdetail());
  free(payload);
  self->creator_pid = (pid_t)parent_pid;
  mp__proc_child_main(self, (pid_t)parent_pid, parent_name, fds[0],
                      forkserver_child || use_pdeathsig ? MP__PDEATH_SIGNAL
                                                        : MP__PDEATH_WATCH,
                      forkserver_child ? ppid_at_start : (pid_t)parent_pid);
}

/* ---- the takeover ------------------------------------------------------ */

typedef void (*init_fn)(int, char **, char **);
static int boot_fd = -1;
static init_fn saved_last_init;

static void
takeover(int argc, char **argv, char **envp)
{
  (void)argc;
  (void)argv;
  (void)envp;
  mp__boot_run(boot_fd, 0);
}

static void
trampoline(int argc, char **argv, char **envp)
{
  if (saved_last_init)
    saved_last_init(argc, argv, envp);
  takeover(argc, argv, envp);
}

static void boot_ctor(int argc, char **argv, char **envp);

struct main_info {
  uintptr_t base;
  const ElfW(Phdr) *phdr;
  int phnum;
};

static int
main_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
  struct main_info *m = ud;
  m->base = info->dlpi_addr;
  m->phdr = info->dlpi_phdr;
  m->phnum = info->dlpi_phnum;
  return 1; /* the first object is the main program */
}

/* Make `trampoline` the last constructor of the main program; 0 if that
 * cannot be done (then take over at once). */
static int
defer_takeover(void)
{
  struct main_info m = {0};
  dl_iterate_phdr(main_cb, &m);
  const ElfW(Dyn) *dyn = NULL;
  uintptr_t relro_lo = 0, relro_hi = 0;
  for (int i = 0; i < m.phnum; i++) {
    if (m.phdr[i].p_type == PT_DYNAMIC)
      dyn = (const ElfW(Dyn) *)(m.base + m.phdr[i].p_vaddr);
    if (m.phdr[i].p_type == PT_GNU_RELRO) {
      relro_lo = m.base + m.phdr[i].p_vaddr;
      relro_hi = relro_lo + m.phdr[i].p_memsz;
    }
  }
  if (!dyn)
    return 0;
  uintptr_t arr = 0;
  size_t size = 0;
  for (; dyn->d_tag != DT_NULL; dyn++) {
    if (dyn->d_tag == DT_INIT_ARRAY)
      arr = m.base + dyn->d_un.d_ptr;
    else if (dyn->d_tag == DT_INIT_ARRAYSZ)
      size = dyn->d_un.d_val;
  }
  size_t n = size / sizeof(init_fn);
  if (!arr || n == 0)
    return 0;
  init_fn *slot = (init_fn *)arr + (n - 1);
  if (*slot == boot_ctor)
    return 0; /* we are the last constructor: nothing runs after us */
  uintptr_t a = (uintptr_t)slot;
  long pg = sysconf(_SC_PAGESIZE);
  uintptr_t page = a & ~((uintptr_t)pg - 1);
  int in_relro = a >= relro_lo && a < relro_hi;
  if (in_relro && mprotect((void *)page, (size_t)pg, PROT_READ | PROT_WRITE))
    return 0;
  saved_last_init = *slot;
  *slot = trampoline;
  if (in_relro)
    mprotect((void *)page, (size_t)pg, PROT_READ);
  return 1;
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
  if (!defer_takeover())
    takeover(argc, argv, envp);
}

int
mp__boot_send_server(int sock, int ctl, char *const *preload, size_t n)
{
  mp__buf b = {0};
  int rc = mp__put_u32(&b, (uint32_t)mp_log_get_level());
  if (!rc)
    rc = mp__put_u32(&b, (uint32_t)n);
  for (size_t i = 0; !rc && i < n; i++)
    rc = mp__put_blob(&b, preload[i], strlen(preload[i]));
  int fds[2] = {ctl, mp__proc_self_pidfd()};
  if (!rc && fds[1] < 0)
    rc = fds[1];
  if (!rc)
    rc = send_boot(sock, BOOT_SERVER, &b, fds, 2);
  mp__close(fds[1]);
  mp__buf_release(&b);
  return rc;
}
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
    mp_obj *parts[5] = {0};
    if (mp_record_get(o, &parts[0], &parts[1], &parts[2], &parts[3],
                      &parts[4]))
      return 0;
    for (int i = 0; i < 5; i++) {
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

