/* SPDX-License-Identifier: MIT */
/* A child's own report of its exit code, for when waitpid cannot give it.
 *
 * A program that ignores SIGCHLD, sets SA_NOCLDWAIT or reaps with
 * waitpid(-1) in a handler takes its children's exit statuses away from the
 * library.  process.c then asks the kernel (a pidfd keeps the status since
 * Linux 6.15) and, failing that, this: a child that ends through the library
 * (its target returns, mp_exit) stores its code in a word of shared memory
 * just before it exits.
 *
 * One 64-bit word per running child: (tag << 32) | (code & 255), the tag
 * fresh for every start (never 0), so a word left by an earlier occupant of
 * the slot never passes for this child's.  Two tables:
 *   fork   an anonymous shared mapping, made once and kept: fork children
 *          inherit it, so a start costs no system call;
 *   exec   a memfd for spawn children, which map the page of their word.
 *          It is open only while spawn children run (a program that
 *          starts none holds no descriptor for it).
 * A fork child's own children get tables of its own (the inherited ones
 * are its parent's: slot numbers are handed out by the parent). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

#define XT_SLOTS (1u << 17) /* running children per table (1 MiB of words) */
#define XT_PAGE_SLOTS 512u  /* the exec table grows by 4 KiB */

struct xtable {
  pid_t owner;     /* the process the table belongs to (0: none yet) */
  uint64_t *used;  /* XT_SLOTS bits */
  uint32_t hint;   /* no free slot below word `hint` of `used` */
  uint32_t live;
  uint64_t *words; /* fork: the mapping */
  int fd;          /* exec: the memfd (-1: none) */
  uint32_t size;   /* exec: slots the memfd holds */
};

static pthread_mutex_t x_lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
/* written at each fork start and reap: beside the fork hooks' state */
static struct xtable xt[3] MP__FORK_DATA = {{.fd = -1}, {.fd = -1}, {.fd = -1}};
static uint32_t x_tag MP__FORK_DATA;

/* Make t this process's (x_lock held). */
static int
table_own(struct xtable *t, int kind, pid_t me)
{
  if (t->owner != me) {
    /* Inherited from a parent by fork, or never made: forget it (the
     * mapping stays, this process's own word may be in it; a memfd was
     * closed by mp__exit_after_fork_child). */
    *t = (struct xtable){.fd = -1};
    t->owner = me;
  }
  if (!t->used && !(t->used = calloc(XT_SLOTS / 64, sizeof *t->used)))
    return MP_ENOMEM;
  if (kind == MP__XT_FORK && !t->words) {
    void *m = mmap(NULL, (size_t)XT_SLOTS * 8, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
      return mp__errno();
    t->words = m;
  }
  if (kind == MP__XT_EXEC && t->fd < 0) {
    int fd = mp__memfd_new("mproc-exitcodes", 4096);
    if (fd < 0)
      return fd;
    t->fd = fd;
    t->size = XT_PAGE_SLOTS;
  }
  return 0;
}

int
mp__exit_slot_get(mp_process *p, int kind)
{
  struct xtable *t = &xt[kind];
  pthread_mutex_lock(&x_lock);
  int rc = table_own(t, kind, p->creator_pid);
  uint32_t i = XT_SLOTS;
  if (!rc) {
    for (uint32_t w = t->hint; w < XT_SLOTS / 64; w++)
      if (~t->used[w]) {
        t->hint = w;
        i = w * 64 + (uint32_t)__builtin_ctzll(~t->used[w]);
        break;
      }
    if (i == XT_SLOTS)
      rc = mp_seterr(MP_ELIMIT, "more than %u running children", XT_SLOTS);
  }
  if (!rc && kind == MP__XT_EXEC && i >= t->size) {
    uint32_t size = (i / XT_PAGE_SLOTS + 1) * XT_PAGE_SLOTS;
    if (ftruncate(t->fd, (off_t)size * 8) < 0)
      rc = mp__errno();
    else
      t->size = size;
  }
  if (rc) {
    if (t->live == 0 && t->fd >= 0) {
      mp__close(t->fd);
      t->fd = -1;
    }
    pthread_mutex_unlock(&x_lock);
    return rc;
  }
  t->used[i / 64] |= 1ull << (i % 64);
  t->live++;
  if (++x_tag == 0)
    x_tag = 1;
  p->exit_table = kind;
  p->exit_index = i;
  p->exit_tag = x_tag;
  p->exit_word = kind == MP__XT_FORK ? &t->words[i] : NULL;
  pthread_mutex_unlock(&x_lock);
  return 0;
}

int
mp__exit_slot_fd(const mp_process *p)
{
  return p->exit_table == MP__XT_EXEC ? xt[MP__XT_EXEC].fd : -1;
}

int
mp__exit_slot_read(const mp_process *p, int *code)
{
  uint64_t w = 0;
  if (p->exit_table == MP__XT_FORK) {
    w = __atomic_load_n(p->exit_word, __ATOMIC_ACQUIRE);
  } else if (p->exit_table == MP__XT_EXEC) {
    pthread_mutex_lock(&x_lock);
    ssize_t n = pread(xt[MP__XT_EXEC].fd, &w, sizeof w,
                      (off_t)p->exit_index * 8);
    pthread_mutex_unlock(&x_lock);
    if (n != (ssize_t)sizeof w)
      return 0;
  }
  if (p->exit_table == MP__XT_NONE || (uint32_t)(w >> 32) != p->exit_tag)
    return 0;
  *code = (int)(w & 255);
  return 1;
}

void
mp__exit_slot_put(mp_process *p)
{
  if (p->exit_table == MP__XT_NONE)
    return;
  struct xtable *t = &xt[p->exit_table];
  uint32_t i = p->exit_index;
  pthread_mutex_lock(&x_lock);
  t->used[i / 64] &= ~(1ull << (i % 64));
  if (i / 64 < t->hint)
    t->hint = i / 64;
  if (--t->live == 0 && t->fd >= 0) {
    mp__close(t->fd); /* the next spawn child gets a new one */
    t->fd = -1;
    t->size = 0;
  }
  pthread_mutex_unlock(&x_lock);
  p->exit_table = MP__XT_NONE;
  p->exit_word = NULL;
}

void
mp__exit_slot_attach(mp_process *self, int fd, uint32_t index, uint32_t tag)
{
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  off_t at = (off_t)index * 8, off = at & ~(off_t)(pg - 1);
  void *m = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
  mp__close(fd);
  if (m == MAP_FAILED)
    return;
  self->exit_word = (uint64_t *)((char *)m + (at - off));
  self->exit_tag = tag;
}

void
mp__exit_report(mp_process *self, int code)
{
  /* A process forked from the child outside the library has the same
   * word: only the child itself may speak through it. */
  if (self && self->exit_word && self->exit_tag && getpid() == self->pid)
    __atomic_store_n(self->exit_word,
                     (uint64_t)self->exit_tag << 32 | (uint32_t)(code & 255),
                     __ATOMIC_RELEASE);
}

void
mp__exit_after_fork_child(void)
{
  /* Reads only, unless there is something to undo: each write copies a
   * page in every fork child. */
  mp__mutex_reset(&x_lock);
  if (xt[MP__XT_EXEC].fd >= 0)
    mp__close(xt[MP__XT_EXEC].fd); /* the variable is reset by table_own */
}
