/* Linux implementation of the platform contract (platform.h). */
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

pid_t
mp__plat_gettid(void)
{
  return (pid_t)syscall(SYS_gettid);
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

int
mp__plat_cpu_usable(void)
{
  int n = 0;
  cpu_set_t *set = NULL;
  for (int size = 1024; size <= 1 << 20; size *= 2) {
    set = CPU_ALLOC(size);
    if (!set)
      break;
    size_t bytes = CPU_ALLOC_SIZE(size);
    if (sched_getaffinity(0, bytes, set) == 0) {
      n = CPU_COUNT_S(bytes, set);
      CPU_FREE(set);
      break;
    }
    CPU_FREE(set);
    if (errno != EINVAL)
      break;
  }
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
