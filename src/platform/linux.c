/* SPDX-License-Identifier: MIT */
/* Linux implementation of the platform contract (platform.h). */
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "platform/platform.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#define MP__P_PIDFD 3 /* linux/wait.h's P_PIDFD (glibc 2.36 lacks it) */
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

int
mp__plat_pidfd_open(pid_t pid)
{
  /* pidfds are always close-on-exec. */
  long fd = syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -errno : (int)fd;
}

int
mp__plat_pidfd_signal(int pidfd, int sig)
{
  return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

pid_t
mp__plat_pidfd_reap(int pidfd, pid_t pid, int *status)
{
  static atomic_int no_p_pidfd; /* Linux 5.3: pidfds, but no P_PIDFD */
  if (!atomic_load_explicit(&no_p_pidfd, memory_order_relaxed)) {
    siginfo_t si;
    si.si_pid = 0;
    int rc;
    do
      rc = waitid((idtype_t)MP__P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) {
      if (si.si_pid == 0)
        return 0;
      *status = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0)
                : si.si_code == CLD_DUMPED ? si.si_status | WCOREFLAG
                                           : si.si_status;
      return si.si_pid;
    }
    if (errno != EINVAL)
      return -errno;
    atomic_store_explicit(&no_p_pidfd, 1, memory_order_relaxed);
  }
  pid_t r;
  do
    r = waitpid(pid, status, WNOHANG);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

/* PIDFD_GET_INFO (Linux 6.13; PIDFD_INFO_EXIT since 6.15): the first,
 * fixed-size version of struct pidfd_info, which every later kernel
 * accepts. */
struct mp__pidfd_info {
  uint64_t mask, cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code;
};
#define MP__PIDFD_INFO_EXIT (1ull << 3)
#define MP__PIDFD_GET_INFO _IOWR(0xFF, 11, struct mp__pidfd_info)

int
mp__plat_pidfd_exit_status(int pidfd, int *status)
{
  struct mp__pidfd_info info;
  memset(&info, 0, sizeof info);
  info.mask = MP__PIDFD_INFO_EXIT;
  if (ioctl(pidfd, MP__PIDFD_GET_INFO, &info) < 0)
    return -ENOSYS; /* no such ioctl, or (6.13, 6.14) reaped without it */
  if (!(info.mask & MP__PIDFD_INFO_EXIT))
    return 0; /* not released yet: the kernel records it then */
  *status = info.exit_code;
  return 1;
}

int
mp__plat_set_pdeathsig(int sig, pid_t expected_ppid)
{
  if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) < 0)
    return -errno;
  /* The parent may have died before the prctl: then we were reparented. */
  if (sig && getppid() != expected_ppid)
    return -ESRCH;
  return 0;
}

void
mp__plat_close_from(int lowfd)
{
  if (syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0) == 0)
    return;
  DIR *d = opendir("/proc/self/fd");
  if (!d) {
    for (int fd = lowfd; fd < 65536; fd++)
      close(fd);
    return;
  }
  int self = dirfd(d);
  struct dirent *e;
  int fds[256], n = 0;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd >= lowfd && fd != self && n < 256)
      fds[n++] = fd;
  }
  closedir(d);
  for (int i = 0; i < n; i++)
    close(fds[i]);
}

int
mp__plat_random(void *buf, size_t n)
{
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && errno == ENOSYS)
      break;
    if (r <= 0)
      return r < 0 ? -errno : -EIO;
    p += r;
    n -= (size_t)r;
  }
  if (n == 0)
    return 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      int e = r < 0 ? errno : EIO;
      close(fd);
      return -e;
    }
    p += r;
    n -= (size_t)r;
  }
  close(fd);
  return 0;
}

void
mp__plat_exit_now(int code)
{
  syscall(SYS_exit_group, code);
  _exit(code);
}

/* ---- running after every constructor ------------------------------------ */

static mp__plat_init_fn g_saved_last_init, g_after_ctors;

/* The slot's function is called as the dynamic loader calls every
 * DT_INIT_ARRAY entry: with (argc, argv, envp), whatever it was declared
 * with (usually no parameters).  That is the ELF convention, which clang's
 * -fsanitize=function checks against the C declaration: not here. */
#if defined(__clang__)
__attribute__((no_sanitize("function")))
#endif
static void
after_ctors_trampoline(int argc, char **argv, char **envp)
{
  if (g_saved_last_init)
    g_saved_last_init(argc, argv, envp);
  g_after_ctors(argc, argv, envp);
}

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

int
mp__plat_run_after_ctors(mp__plat_init_fn self, mp__plat_init_fn fn)
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
  size_t n = size / sizeof(mp__plat_init_fn);
  if (!arr || n == 0)
    return 0;
  mp__plat_init_fn *slot = (mp__plat_init_fn *)arr + (n - 1);
  if (*slot == self)
    return 0; /* the caller is the last constructor: nothing runs after it */
  uintptr_t a = (uintptr_t)slot;
  long pg = sysconf(_SC_PAGESIZE);
  uintptr_t page = a & ~((uintptr_t)pg - 1);
  int in_relro = a >= relro_lo && a < relro_hi;
  if (in_relro && mprotect((void *)page, (size_t)pg, PROT_READ | PROT_WRITE))
    return 0;
  g_saved_last_init = *slot;
  g_after_ctors = fn;
  *slot = after_ctors_trampoline;
  if (in_relro)
    mprotect((void *)page, (size_t)pg, PROT_READ);
  return 1;
}

int
mp__plat_cpu_count(void)
{
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : -ENOSYS;
}

/* The smallest cgroup v2 cpu.max quota (in CPUs, rounded up) on the path
 * from our cgroup to the root; 0 when unlimited or unknown. */
static int
cgroup_quota_cpus(void)
{
  char line[4096];
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f)
    return 0;
  char path[4096] = "";
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "0::", 3) == 0) {
      snprintf(path, sizeof path, "%s", line + 3);
      path[strcspn(path, "\n")] = '\0';
      break;
    }
  }
  fclose(f);
  if (!path[0])
    return 0;
  int best = 0;
  for (;;) {
    char file[4200];
    snprintf(file, sizeof file, "/sys/fs/cgroup%s/cpu.max",
             strcmp(path, "/") == 0 ? "" : path);
    FILE *c = fopen(file, "re");
    if (c) {
      char quota[64];
      unsigned long long period = 0;
      if (fscanf(c, "%63s %llu", quota, &period) == 2 &&
          strcmp(quota, "max") != 0 && period > 0) {
        unsigned long long q = strtoull(quota, NULL, 10);
        int cpus = (int)((q + period - 1) / period);
        if (cpus < 1)
          cpus = 1;
        if (best == 0 || cpus < best)
          best = cpus;
      }
      fclose(c);
    }
    char *slash = strrchr(path, '/');
    if (!slash || slash == path) {
      if (strcmp(path, "/") == 0)
        break;
      strcpy(path, "/");
      continue;
    }
    *slash = '\0';
  }
  return best;
}

/* CPUs in this thread's affinity mask; 0 if unknown. */
static int
affinity_cpus(void)
{
  int n = 0;
  for (int size = 1024; size <= 1 << 20; size *= 2) {
    cpu_set_t *set = CPU_ALLOC(size);
    if (!set)
      break;
    size_t bytes = CPU_ALLOC_SIZE(size);
    int rc = sched_getaffinity(0, bytes, set);
    if (rc == 0)
      n = CPU_COUNT_S(bytes, set);
    CPU_FREE(set);
    if (rc == 0 || errno != EINVAL)
      break;
  }
  return n;
}

MP__HOT int
mp__plat_spin_useful(void)
{
  static _Atomic int cpus MP__HOT_DATA, quota;
  static _Atomic unsigned calls MP__HOT_DATA;
  static _Atomic int64_t quota_at; /* coarse ms + 1; 0: never read */
  int n = atomic_load_explicit(&cpus, memory_order_relaxed);
  if (!n || atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) % 256
                == 0) {
    /* The affinity is one system call; the cgroup quota is files to open
     * and read (tens of microseconds), so it is read at most once a
     * second. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
    int64_t at = atomic_load_explicit(&quota_at, memory_order_relaxed);
    if (!at || now - at >= 1000) {
      atomic_store_explicit(&quota, cgroup_quota_cpus(), memory_order_relaxed);
      atomic_store_explicit(&quota_at, now, memory_order_relaxed);
    }
    int q = atomic_load_explicit(&quota, memory_order_relaxed);
    n = affinity_cpus();
    if (n <= 0)
      n = mp__plat_cpu_count();
    if (q > 0 && q < n)
      n = q;
    if (n < 1)
      n = 1;
    atomic_store_explicit(&cpus, n, memory_order_relaxed);
  }
  return n > 1;
}

int
mp__plat_cpu_usable(void)
{
  int n = affinity_cpus();
  if (n <= 0)
    n = mp__plat_cpu_count();
  if (n <= 0)
    return -ENOSYS;
  int q = cgroup_quota_cpus();
  return q > 0 && q < n ? q : n;
}

int
mp__plat_exe_path(char *buf, size_t cap)
{
  ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
  if (n < 0)
    return -errno;
  if ((size_t)n >= cap - 1)
    return -ENAMETOOLONG;
  buf[n] = '\0';
  return 0;
}

/* ---- loaded objects and build-ids ------------------------------------- */

static void
read_build_id(struct dl_phdr_info *info, uint8_t *id, size_t *idlen)
{
  *idlen = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE)
      continue;
    const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
    const uint8_t *end = p + ph->p_memsz;
    size_t align = ph->p_align == 8 ? 8 : 4;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
      const uint8_t *name = p + sizeof *n;
      const uint8_t *desc = name + ((n->n_namesz + align - 1) & ~(align - 1));
      const uint8_t *next = desc + ((n->n_descsz + align - 1) & ~(align - 1));
      if (next > end || desc + n->n_descsz > end)
        break;
      if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
          memcmp(name, "GNU", 4) == 0 && n->n_descsz <= 64) {
        memcpy(id, desc, n->n_descsz);
        *idlen = n->n_descsz;
        return;
      }
      p = next;
    }
  }
}

static int
seg_contains(struct dl_phdr_info *info, uintptr_t a, int exec)
{
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD)
      continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (a >= lo && a < lo + ph->p_memsz && (!exec || (ph->p_flags & PF_X)))
      return 1;
  }
  return 0;
}

struct of_ctx {
  uintptr_t addr;
  mp__plat_object *out;
  int found;
  int index;
};

static int
object_of_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
  struct of_ctx *c = ud;
  int idx = c->index++;
  if (!seg_contains(info, c->addr, 0))
    return 0;
  c->found = 1;
  c->out->is_main = idx == 0;
  snprintf(c->out->name, sizeof c->out->name, "%s",
           idx == 0 || !info->dlpi_name ? "" : info->dlpi_name);
  c->out->base = info->dlpi_addr;
  read_build_id(info, c->out->id, &c->out->idlen);
  return 1;
}

int
mp__plat_object_of(const void *addr, mp__plat_object *out)
{
  struct of_ctx c = {(uintptr_t)addr, out, 0, 0};
  dl_iterate_phdr(object_of_cb, &c);
  return c.found ? 0 : -ENOENT;
}

struct find_ctx {
  const uint8_t *id;
  size_t idlen;
  int want_main;
  const char *name;
  uint64_t off;
  int exec;
  uintptr_t base;
  int result; /* 1 found, -EFAULT bad offset, 0 not found */
  int index;
};

static int
find_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
  struct find_ctx *c = ud;
  int idx = c->index++;
  int match;
  if (c->idlen) {
    uint8_t id[64];
    size_t idlen;
    read_build_id(info, id, &idlen);
    match = idlen == c->idlen && memcmp(id, c->id, idlen) == 0;
    /* The main program is only ever itself: a library with the same id
     * (impossible in practice) must not stand in for it. */
    if (match && c->want_main != (idx == 0))
      match = 0;
  } else if (c->want_main) {
    match = idx == 0;
  } else {
    match = idx != 0 && info->dlpi_name && strcmp(info->dlpi_name, c->name) == 0;
  }
  if (!match)
    return 0;
  c->base = info->dlpi_addr;
  c->result = seg_contains(info, info->dlpi_addr + c->off, c->exec) ? 1 : -EFAULT;
  return 1;
}

int
mp__plat_object_find(const uint8_t *id, size_t idlen, int want_main,
                     const char *name, uint64_t off, int exec,
                     uintptr_t *base)
{
  struct find_ctx c = {id, idlen, want_main, name, off, exec, 0, 0, 0};
  dl_iterate_phdr(find_cb, &c);
  if (c.result == 1) {
    *base = c.base;
    return 0;
  }
  return c.result ? c.result : -ENOENT;
}

static int
gen_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
  uint64_t *g = ud;
  if (size >= offsetof(struct dl_phdr_info, dlpi_subs) +
                  sizeof info->dlpi_subs)
    *g = (uint64_t)(info->dlpi_adds + info->dlpi_subs); /* both only grow */
  return 1; /* the first object carries the counts: enough */
}

uint64_t
mp__plat_objects_gen(void)
{
  uint64_t g = 0;
  dl_iterate_phdr(gen_cb, &g);
  return g;
}

struct byname_ctx {
  const char *name;
  uint8_t *id;
  size_t *idlen;
  int found;
  int index;
};

static int
byname_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
  struct byname_ctx *c = ud;
  int idx = c->index++;
  if (idx == 0 || !info->dlpi_name || strcmp(info->dlpi_name, c->name) != 0)
    return 0;
  read_build_id(info, c->id, c->idlen);
  c->found = 1;
  return 1;
}

int
mp__plat_object_id_by_name(const char *name, uint8_t *id, size_t *idlen,
                           int *found_main)
{
  struct byname_ctx c = {name, id, idlen, 0, 0};
  dl_iterate_phdr(byname_cb, &c);
  if (found_main)
    *found_main = 0;
  return c.found ? 0 : -ENOENT;
}

/* ---- function symbols ------------------------------------------------------
 * Which code addresses of a loaded object are function starts, and their
 * names.  Three sources, any of which may be missing:
 *   - the dynamic symbols, through dladdr1 (exported functions);
 *   - the object file's .symtab (static functions too), read once per
 *     loaded object from the file it was loaded from -- only when that
 *     file's build-id is the loaded object's, so a file rebuilt since it was
 *     loaded is not believed;
 *   - the unwind index (PT_GNU_EH_FRAME, in memory): one entry per
 *     function compiled with unwind tables, even in a stripped object.
 * A name is the dynamic symbol's when one starts there, else the .symtab's
 * (a global before a weak before a local one).
 * The .symtab copies are cached for the life of the process (names handed
 * out stay valid): a fixed table of slots filled lock-free, so a fork child
 * of a thread that was filling one never waits for it. */

struct mp__sym {
  uint64_t off;  /* from the load base */
  uint32_t name; /* into strs */
  uint32_t global; /* 2 global, 1 weak, 0 local: names are chosen so */
};

struct mp__symtab {
  uintptr_t base;
  int is_main;
  uint8_t id[64];
  size_t idlen;
  char *dlname;
  size_t n;
  struct mp__sym *syms; /* sorted by off, then globals first */
  char *strs;
};

#define SYMTAB_SLOTS 64
static _Atomic(struct mp__symtab *) symtabs[SYMTAB_SLOTS];

static int
sym_cmp(const void *a, const void *b)
{
  const struct mp__sym *x = a, *y = b;
  if (x->off != y->off)
    return x->off < y->off ? -1 : 1;
  return (int)y->global - (int)x->global;
}

/* The build-id note among the section headers of a mapped file. */
static int
file_build_id(const uint8_t *m, size_t size, const ElfW(Shdr) *sh,
              size_t shnum, const uint8_t **id, size_t *idlen)
{
  for (size_t i = 0; i < shnum; i++) {
    if (sh[i].sh_type != SHT_NOTE || sh[i].sh_offset > size ||
        sh[i].sh_size > size - sh[i].sh_offset)
      continue;
    const uint8_t *p = m + sh[i].sh_offset, *end = p + sh[i].sh_size;
    size_t align = sh[i].sh_addralign == 8 ? 8 : 4;
    while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) n;
      memcpy(&n, p, sizeof n);
      size_t nsz = (n.n_namesz + align - 1) & ~(align - 1);
      size_t dsz = (n.n_descsz + align - 1) & ~(align - 1);
      const uint8_t *name = p + sizeof n;
      if (nsz > (size_t)(end - name) || dsz > (size_t)(end - name) - nsz)
        break;
      if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 &&
          memcmp(name, "GNU", 4) == 0 && n.n_descsz <= 64) {
        *id = name + nsz;
        *idlen = n.n_descsz;
        return 0;
      }
      p = name + nsz + dsz;
    }
  }
  return -ENOENT;
}

/* Read the function symbols of .symtab from the mapped file into t. */
static int
read_symtab(struct mp__symtab *t, const uint8_t *m, size_t size)
{
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)m;
  if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
      eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_shoff > size ||
      eh->e_shnum > (size - eh->e_shoff) / sizeof(ElfW(Shdr)))
    return -ENOEXEC;
  const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(m + eh->e_shoff);
  size_t shnum = eh->e_shnum;
  const uint8_t *fid = NULL;
  size_t fidlen = 0;
  if (t->idlen && (file_build_id(m, size, sh, shnum, &fid, &fidlen) != 0 ||
                   fidlen != t->idlen || memcmp(fid, t->id, fidlen) != 0))
    return -ESTALE; /* not the file that was loaded */
  for (size_t i = 0; i < shnum; i++) {
    if (sh[i].sh_type != SHT_SYMTAB)
      continue;
    const ElfW(Shdr) *ss = &sh[i];
    if (ss->sh_entsize != sizeof(ElfW(Sym)) || ss->sh_link >= shnum ||
        ss->sh_offset > size || ss->sh_size > size - ss->sh_offset)
      return -ENOEXEC;
    const ElfW(Shdr) *st = &sh[ss->sh_link];
    if (st->sh_offset > size || st->sh_size > size - st->sh_offset)
      return -ENOEXEC;
    const ElfW(Sym) *sym = (const ElfW(Sym) *)(m + ss->sh_offset);
    size_t nsym = ss->sh_size / sizeof *sym;
    const char *str = (const char *)(m + st->sh_offset);
    size_t strsize = st->sh_size;
    size_t n = 0, nstr = 0;
    for (int pass = 0; pass < 2; pass++) {
      n = 0;
      size_t k = 0;
      for (size_t j = 0; j < nsym; j++) {
        int type = ELF64_ST_TYPE(sym[j].st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) ||
            sym[j].st_value == 0 || sym[j].st_name >= strsize)
          continue;
        const char *nm = str + sym[j].st_name;
        size_t len = strnlen(nm, strsize - sym[j].st_name);
        if (pass == 1) {
          t->syms[n].off = sym[j].st_value;
          t->syms[n].name = (uint32_t)k;
          int bind = ELF64_ST_BIND(sym[j].st_info);
          t->syms[n].global = bind == STB_GLOBAL ? 2 : bind == STB_WEAK;
          memcpy(t->strs + k, nm, len);
          t->strs[k + len] = '\0';
        }
        k += len + 1;
        n++;
      }
      if (pass == 0) {
        nstr = k;
        if (nstr > UINT32_MAX)
          return -E2BIG;
        t->syms = malloc((n ? n : 1) * sizeof *t->syms);
        t->strs = malloc(nstr ? nstr : 1);
        if (!t->syms || !t->strs)
          return -ENOMEM;
      }
    }
    t->n = n;
    qsort(t->syms, n, sizeof *t->syms, sym_cmp);
    return 0;
  }
  return -ENOENT; /* stripped */
}

static void
symtab_free(struct mp__symtab *t)
{
  if (t) {
    free(t->syms);
    free(t->strs);
    free(t->dlname);
    free(t);
  }
}

static int
symtab_is(const struct mp__symtab *t, uintptr_t base, int is_main,
          const uint8_t *id, size_t idlen, const char *dlname)
{
  return t->base == base && t->is_main == is_main && t->idlen == idlen &&
         memcmp(t->id, id, idlen) == 0 && strcmp(t->dlname, dlname) == 0;
}

/* The cached .symtab of a loaded object (NULL when it has none we can
 * believe). */
static const struct mp__symtab *
symtab_of(uintptr_t base, int is_main, const uint8_t *id, size_t idlen,
          const char *dlname)
{
  size_t i;
  for (i = 0; i < SYMTAB_SLOTS; i++) {
    struct mp__symtab *t = atomic_load_explicit(&symtabs[i],
                                                memory_order_acquire);
    if (!t)
      break;
    if (symtab_is(t, base, is_main, id, idlen, dlname))
      return t->n ? t : NULL;
  }
  if (i == SYMTAB_SLOTS)
    return NULL; /* full: the other sources still answer */
  struct mp__symtab *t = calloc(1, sizeof *t);
  if (!t || !(t->dlname = strdup(dlname))) {
    free(t);
    return NULL;
  }
  t->base = base;
  t->is_main = is_main;
  memcpy(t->id, id, idlen);
  t->idlen = idlen;
  int fd = open(is_main ? "/proc/self/exe" : dlname, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
      if (read_symtab(t, m, (size_t)st.st_size) != 0) {
        free(t->syms);
        free(t->strs);
        t->syms = NULL;
        t->strs = NULL;
        t->n = 0; /* remembered as "none" */
      }
      munmap(m, (size_t)st.st_size);
    }
  }
  if (fd >= 0)
    close(fd);
  /* Publish it in the first free slot; a thread that raced us with the
   * same object wins and ours goes. */
  for (; i < SYMTAB_SLOTS; i++) {
    struct mp__symtab *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&symtabs[i], &expected, t,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
      return t->n ? t : NULL;
    if (symtab_is(expected, base, is_main, id, idlen, dlname)) {
      symtab_free(t);
      return expected->n ? expected : NULL;
    }
  }
  symtab_free(t);
  return NULL;
}

/* Binary search of the unwind index (.eh_frame_hdr) for a function that
 * starts at addr: 1 yes, 0 no, -1 no usable index. */
static int
eh_index_has(const uint8_t *hdr, size_t size, uintptr_t addr)
{
  if (size < 4 || hdr[0] != 1)
    return -1;
  size_t ptrsz;
  switch (hdr[1] & 0x0f) { /* eh_frame_ptr: skipped */
  case 0x03: case 0x0b: ptrsz = 4; break;
  case 0x00: case 0x04: case 0x0c: ptrsz = 8; break;
  default: return -1;
  }
  /* fde_count: udata4/sdata4, absolute; table: datarel sdata4 pairs */
  if ((hdr[2] != 0x03 && hdr[2] != 0x0b) || hdr[3] != 0x3b ||
      size < 4 + ptrsz + 4)
    return -1;
  uint32_t count;
  memcpy(&count, hdr + 4 + ptrsz, 4);
  const uint8_t *tab = hdr + 4 + ptrsz + 4;
  if (count > (size - 4 - ptrsz - 4) / 8)
    return -1;
  int64_t want = (int64_t)(addr - (uintptr_t)hdr);
  size_t lo = 0, hi = count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int32_t loc;
    memcpy(&loc, tab + mid * 8, 4);
    if (loc == want)
      return 1;
    if (loc < want)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

struct fi_ctx {
  uintptr_t addr;
  int found, index, is_main;
  uintptr_t base;
  uint8_t id[64];
  size_t idlen;
  const char *dlname;
  const uint8_t *eh;
  size_t ehsize;
};

static int
func_info_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
  struct fi_ctx *c = ud;
  int idx = c->index++;
  if (!seg_contains(info, c->addr, 1))
    return 0;
  c->found = 1;
  c->is_main = idx == 0;
  c->base = info->dlpi_addr;
  c->dlname = idx == 0 || !info->dlpi_name ? "" : info->dlpi_name;
  read_build_id(info, c->id, &c->idlen);
  for (int i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) {
      c->eh = (const uint8_t *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
      c->ehsize = info->dlpi_phdr[i].p_memsz;
    }
  return 1;
}

int
mp__plat_func_info(const void *addr, const char **name)
{
  struct fi_ctx c;
  memset(&c, 0, sizeof c);
  c.addr = (uintptr_t)addr;
  if (name)
    *name = NULL;
  dl_iterate_phdr(func_info_cb, &c);
  if (!c.found)
    return -ENOENT;
  int known = 0;
  /* an exported name first (the one a program links against) ... */
  Dl_info di;
  const ElfW(Sym) *sym = NULL;
  if (dladdr1(addr, &di, (void **)&sym, RTLD_DL_SYMENT) && sym &&
      di.dli_saddr == addr &&
      (ELF64_ST_TYPE(sym->st_info) == STT_FUNC ||
       ELF64_ST_TYPE(sym->st_info) == STT_GNU_IFUNC)) {
    if (name)
      *name = di.dli_sname;
    return MP__PLAT_FN_START;
  }
  /* ... then the file's symbols, which name static functions too */
  const struct mp__symtab *t =
      symtab_of(c.base, c.is_main, c.id, c.idlen, c.dlname);
  if (t) {
    known = 1;
    uint64_t off = (uint64_t)(c.addr - c.base);
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (t->syms[mid].off < off)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < t->n && t->syms[lo].off == off) {
      if (name)
        *name = t->strs + t->syms[lo].name;
      return MP__PLAT_FN_START;
    }
  }
  if (c.eh) {
    int r = eh_index_has(c.eh, c.ehsize, c.addr);
    if (r == 1)
      return MP__PLAT_FN_START;
    if (r == 0)
      known = 1;
  }
  return known ? MP__PLAT_FN_INSIDE : MP__PLAT_FN_UNKNOWN;
}

void
mp__plat_heap_keep(size_t keep)
{
#ifdef __GLIBC__
  if (getenv("GLIBC_TUNABLES") || getenv("MALLOC_TRIM_THRESHOLD_") ||
      getenv("MALLOC_MMAP_THRESHOLD_"))
    return;
  if (keep > INT_MAX)
    keep = INT_MAX;
  (void)mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's own maximum */
  (void)mallopt(M_TRIM_THRESHOLD, (int)keep);
#else
  (void)keep;
#endif
}

void
mp__plat_prefault(void *addr, size_t len, int write)
{
#ifdef MADV_POPULATE_WRITE
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)addr & ~(page - 1);
  uintptr_t e = ((uintptr_t)addr + len + page - 1) & ~(page - 1);
  if (len)
    (void)madvise((void *)a, e - a,
                  write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
#else
  (void)addr, (void)len, (void)write;
#endif
}
