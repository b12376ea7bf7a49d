/* SPDX-License-Identifier: MIT */
/* SharedMemory: named POSIX shared-memory segments. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "shm/shm_internal.h"

#define MAX_SHM_NAME 200

struct mp_shm {
  _Atomic int refs;
  mp__pmutex mu; /* a fork child finds it unlocked */
  char name[MAX_SHM_NAME + 1];
  int fd;
  void *buf;
  size_t size;
  int tracked; /* created here and not unlinked yet */
  struct mp_shm *reg_prev, *reg_next; /* the mapped ones (mp__shm_find) */
};

/* ---- the segments mapped in this process, for mp__shm_find ----------- */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static mp_shm *reg_head;

/* A fork child must not inherit reg_mu held by another thread (a pool's
 * fork worker maps segments at once). */
static void
reg_lock_hook(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&reg_mu);
}

static void
reg_unlock_hook(void *arg)
{
  (void)arg;
  pthread_mutex_unlock(&reg_mu);
}

static void
reg_init(void)
{
  mp__fork_hook_add(reg_lock_hook, reg_unlock_hook, reg_unlock_hook, NULL);
}

static void
reg_add(mp_shm *m)
{
  pthread_once(&reg_once, reg_init);
  pthread_mutex_lock(&reg_mu);
  m->reg_prev = NULL;
  m->reg_next = reg_head;
  if (reg_head)
    reg_head->reg_prev = m;
  reg_head = m;
  pthread_mutex_unlock(&reg_mu);
}

/* m->mu held, m->buf still set */
static void
reg_remove(mp_shm *m)
{
  pthread_mutex_lock(&reg_mu);
  if (m->reg_prev)
    m->reg_prev->reg_next = m->reg_next;
  else if (reg_head == m)
    reg_head = m->reg_next;
  if (m->reg_next)
    m->reg_next->reg_prev = m->reg_prev;
  m->reg_prev = m->reg_next = NULL;
  pthread_mutex_unlock(&reg_mu);
}

mp_shm *
mp__shm_find(const void *p, size_t len, size_t *off)
{
  uintptr_t a = (uintptr_t)p;
  mp_shm *found = NULL;
  pthread_once(&reg_once, reg_init);
  pthread_mutex_lock(&reg_mu);
  for (mp_shm *m = reg_head; m && !found; m = m->reg_next) {
    uintptr_t b = (uintptr_t)m->buf;
    if (a >= b && a - b <= m->size && len <= m->size - (a - b)) {
      found = mp__shm_ref(m);
      *off = a - b;
    }
  }
  pthread_mutex_unlock(&reg_mu);
  return found;
}

int
mp__shm_anon(mp_shm **out, size_t size)
{
  *out = NULL;
  int fd = mp__memfd_new("mproc-shm", size);
  if (fd < 0)
    return fd;
  int err = 0;
  /* a valid name that names nothing in /dev/shm: it is never unlinked */
  mp_shm *m = mp__shm_wrap("mproc_anon", fd, size, &err);
  if (!m)
    return err;
  *out = m;
  return 0;
}

mp_shm *
mp__shm_ref(mp_shm *m)
{
  atomic_fetch_add(&m->refs, 1);
  return m;
}

static int
check_name(const char *name, char *out)
{
  if (name[0] == '/')
    name++;
  size_t n = strlen(name);
  if (n == 0 || n > MAX_SHM_NAME || strchr(name, '/')
      || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return mp_seterr(MP_EINVAL, "bad shared memory name");
  memcpy(out, name, n + 1);
  return 0;
}

int
mp__shm_check_name(const char *name, char *out)
{
  return check_name(name, out);
}

static void
gen_name(char *out)
{
  uint8_t r[8];
  if (mp__plat_random(r, sizeof r)) {
    uint64_t t = (uint64_t)mp__now_ns() ^ ((uint64_t)getpid() << 32);
    memcpy(r, &t, sizeof r);
  }
  snprintf(out, MAX_SHM_NAME + 1, "mp-%02x%02x%02x%02x%02x%02x%02x%02x", r[0],
           r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
}

static int
shm_open_name(const char *name, int flags)
{
  char path[MAX_SHM_NAME + 2];
  snprintf(path, sizeof path, "/%s", name);
  int fd = shm_open(path, flags | O_CLOEXEC, 0600);
  if (fd < 0)
    return mp__errno();
  return mp__fd_off_stdio(fd);
}

mp_shm *
mp__shm_wrap(const char *name, int fd, size_t size, int *err)
{
  mp_shm *m = calloc(1, sizeof *m);
  if (!m) {
    mp__close(fd);
    *err = MP_ENOMEM;
    return NULL;
  }
  void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
  if (p == MAP_FAILED) {
    *err = mp__errno();
    mp__close(fd);
    free(m);
    return NULL;
  }
  atomic_init(&m->refs, 1);
  mp__pmutex_init(&m->mu);
  snprintf(m->name, sizeof m->name, "%s", name);
  m->fd = fd;
  m->buf = p;
  m->size = size;
  reg_add(m);
  return m;
}

int
mp_shm_new(mp_shm **out, const char *name, const mp_shm_opts *opts)
{
  mp__errdetail_clear();
  if (!out)
    return MP_EINVAL;
  *out = NULL;
  int create = opts && opts->create;
  size_t size = opts ? opts->size : 0;
  char nm[MAX_SHM_NAME + 1];
  int rc, fd;
  if (name && (rc = check_name(name, nm)))
    return rc;
  if (create) {
    if (size == 0)
      return mp_seterr(MP_EINVAL, "'size' must be a positive number "
                                  "different from zero");
    for (int tries = 0;; tries++) {
      if (!name)
        gen_name(nm);
      fd = shm_open_name(nm, O_RDWR | O_CREAT | O_EXCL);
      if (fd == MP_EEXIST && !name && tries < 100)
        continue;
      break;
    }
    if (fd < 0)
      return fd == MP_EEXIST
                 ? mp_seterr(fd, "shared memory '%s' already exists", nm)
                 : fd;
    if (ftruncate(fd, (off_t)size) < 0) {
      rc = mp__errno();
      mp__close(fd);
      shm_unlink(nm);
      return rc;
    }
  } else {
    if (!name)
      return mp_seterr(MP_EINVAL, "attaching needs a name");
    fd = shm_open_name(nm, O_RDWR);
    if (fd < 0)
      return fd == MP_ENOENT
                 ? mp_seterr(fd, "no shared memory named '%s'", nm)
                 : fd;
    struct stat st;
    if (fstat(fd, &st) < 0) {
      rc = mp__errno();
      mp__close(fd);
      return rc;
    }
    if (size > (size_t)st.st_size) {
      mp__close(fd);
      return mp_seterr(MP_EINVAL, "size %zu larger than the segment (%lld)",
                       size, (long long)st.st_size);
    }
    if (size == 0)
      size = (size_t)st.st_size;
    if (size == 0) {
      mp__close(fd);
      return mp_seterr(MP_EINVAL, "cannot map an empty segment");
    }
  }
  int err = 0;
  mp_shm *m = mp__shm_wrap(nm, fd, size, &err);
  if (!m) {
    if (create)
      shm_unlink(nm);
    return err;
  }
  if (create) {
    if ((rc = mp_resource_register("shm", nm)) != 0) {
      mp_shm_free(m);
      shm_unlink(nm);
      return rc;
    }
    m->tracked = 1;
  }
  *out = m;
  return 0;
}

int
mp_shm_close(mp_shm *m)
{
  mp__errdetail_clear();
  if (!m)
    return MP_EINVAL;
  mp__pmutex_lock(&m->mu);
  if (m->buf) {
    reg_remove(m);
    munmap(m->buf, m->size ? m->size : 1);
    m->buf = NULL;
  }
  mp__close(m->fd);
  m->fd = -1;
  mp__pmutex_unlock(&m->mu);
  return 0;
}

int
mp_shm_unlink(mp_shm *m)
{
  mp__errdetail_clear();
  if (!m)
    return MP_EINVAL;
  char path[MAX_SHM_NAME + 2];
  snprintf(path, sizeof path, "/%s", m->name);
  int rc = shm_unlink(path) < 0 ? mp__errno() : 0;
  mp__pmutex_lock(&m->mu);
  int tracked = m->tracked;
  m->tracked = 0;
  mp__pmutex_unlock(&m->mu);
  /* Python unregisters on every unlink (a segment created elsewhere was
   * registered by its creator, which would otherwise remove it later) */
  if (rc == 0 || tracked)
    mp_resource_unregister("shm", m->name);
  return rc;
}

void
mp_shm_free(mp_shm *m)
{
  if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
    return;
  mp_shm_close(m);
  mp__pmutex_destroy(&m->mu);
  free(m);
}

const char *
mp_shm_name(const mp_shm *m)
{
  return m ? m->name : NULL;
}

void *
mp_shm_buf(mp_shm *m)
{
  return m ? m->buf : NULL;
}

size_t
mp_shm_size(const mp_shm *m)
{
  return m ? m->size : 0;
}

int
mp__shm_fd(mp_shm *m)
{
  return m->fd;
}
