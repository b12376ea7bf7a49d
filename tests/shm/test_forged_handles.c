/* SPDX-License-Identifier: MIT */
/* A hostile peer on a Connection sends mproc.handle(...) values with memfds
 * it wrote itself (issue 8, item 1).  Every field of the state and of the
 * memory is the peer's choice: rebuild must refuse what does not describe
 * an object lying wholly inside a slab of the right kind (MP_EMALFORMED with
 * a detail, the received fds closed), and once rebuilt no accessor may
 * leave the object whatever the peer writes into the shared headers later.
 *
 * The forger writes the arena's layout from its own definitions below, as
 * a peer reading arena.c would; a well-formed forgery is accepted (each
 * group checks that first), so each refusal is the one field changed. */
#define _GNU_SOURCE
#include "testutil.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc/proc_internal.h" /* mp__forkserver_stop */
#include "shm/shm_internal.h"   /* MP__K_* tags, struct mp_lock, mp_value */

/* ---- the arena's shared layout, as an attacker writes it --------------- */

#define F_MAGIC UINT64_C(0x626c73636f72706d)
#define F_DEDICATED 0xffu

struct f_slab {
  uint64_t magic, arena_id, size;
  uint32_t index, remote_free;
};
struct f_blk { /* the 16 bytes before a block's data */
  uint32_t refs, size;
  uint8_t cls, lead;
  uint16_t tag;
  uint32_t next;
};
struct f_sval { /* Value/Array header; data at `hdr` */
  uint8_t typecode, pad[3];
  uint32_t elsize;
  uint64_t n;
  uint32_t hdr, pad2;
};
struct f_sem {
  uint32_t value, nwait, maxvalue, bounded;
};
struct f_barrier {
  uint32_t word, count; /* the internal lock */
  uint64_t owner, oinfo;
  uint32_t seq;
  int32_t state;
  uint32_t nwaiting, parties;
  double timeout;
  struct {
    uint32_t pid, pad;
    uint64_t start;
  } w[];
};

typedef struct forged {
  int fd;
  uint8_t *map;
  size_t size;
  uint64_t id;
} forged;

/* A slab of `size` bytes, sealed against shrinking as the arena's are
 * (unless !sealed), with a correct header. */
static void
forge_slab(forged *f, size_t size, int sealed)
{
  static uint64_t n;
  f->fd = memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  assert_true(f->fd >= 0);
  assert_int_equal(ftruncate(f->fd, (off_t)size), 0);
  if (sealed)
    assert_int_equal(fcntl(f->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW),
                     0);
  f->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
  assert_true(f->map != MAP_FAILED);
  f->size = size;
  f->id = UINT64_C(0xf00d000000000000) | ((uint64_t)getpid() << 16) | ++n;
  struct f_slab *h = (struct f_slab *)f->map;
  h->magic = F_MAGIC;
  h->arena_id = f->id;
  h->size = size;
  h->index = 0;
}

static void
unforge(forged *f)
{
  munmap(f->map, f->size);
  close(f->fd);
}

/* A live block (one reference) whose data is at `off`, lead 16. */
static struct f_blk *
forge_block(forged *f, uint32_t off, uint8_t cls, uint32_t size, unsigned tag)
{
  struct f_blk *b = (struct f_blk *)(f->map + off - sizeof *b);
  b->refs = 1;
  b->size = size;
  b->cls = cls;
  b->lead = 16;
  b->tag = (uint16_t)tag;
  return b;
}

static mp_obj *
loc_of(const forged *f, uint64_t slab_size, uint64_t off)
{
  return MP_TUPLE(mp_uint_new(f->id), mp_int_new(0), mp_uint_new(slab_size),
                  mp_uint_new(off), mp_int_new(0));
}

/* ---- the hostile sender: a frame written on the socket by hand ---------- */

/* mproc.handle(type, state, (0,)) with `fd` attached, as any peer can send
 * it (state taken over). */
static void
send_raw(mp_conn *w, const char *type, mp_obj *state, int fd)
{
  mp_obj *call = mp_record_take(
      MP_RECORD_REDUCE, mp_global_new("mproc", "handle"),
      MP_TUPLE(mp_str_new(type), state, MP_TUPLE(mp_int_new(0))));
  void *data;
  size_t len;
  MP_ASSERT_OK(mp_pickle_dumps(call, NULL, &data, &len));
  mp_obj_free(call);
  uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16),
                    (uint8_t)(len >> 8), (uint8_t)len};
  struct iovec iov[2] = {{hdr, 4}, {data, len}};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } cm;
  memset(&cm, 0, sizeof cm);
  struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
  if (fd >= 0) {
    m.msg_control = cm.buf;
    m.msg_controllen = sizeof cm.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  assert_int_equal(sendmsg(mp_conn_fileno(w), &m, MSG_NOSIGNAL),
                   (ssize_t)(4 + len));
  mp_free(data);
}

static mp_conn *g_r, *g_w;

static int
setup_pipe(void **state)
{
  return mp_pipe(&g_r, &g_w, 1) ? -1 : 0;
}

static int
teardown_pipe(void **state)
{
  mp_conn_free(g_r);
  mp_conn_free(g_w);
  return 0;
}

/* Send and receive a forgery: the received value (the caller frees it) or
 * NULL with the code in *rc. */
static mp_obj *
deliver(const char *type, mp_obj *state, int fd, int *rc)
{
  send_raw(g_w, type, state, fd);
  mp_obj *o = NULL;
  *rc = mp_conn_recv(g_r, &o, 10);
  return *rc ? NULL : o;
}

/* A forgery must be refused with MP_EMALFORMED and a detail, and leave no
 * descriptor behind (the received copy of `fd` is closed). */
#define REFUSED(type, state, fd, what)                                       \
  do {                                                                       \
    int fds0_ = mp_test_count_fds(), rc_;                                    \
    mp_obj *o_ = deliver(type, state, fd, &rc_);                             \
    if (rc_ != MP_EMALFORMED)                                                \
      fail_msg("%s (%s): %s, expected MP_EMALFORMED: %s", type, what,        \
               mp_err_name(rc_), mp_errdetail());                            \
    assert_null(o_);                                                         \
    assert_true(mp_errdetail()[0] != '\0');                                  \
    assert_int_equal(mp_test_count_fds(), fds0_);                            \
  } while (0)

#define AR_OFF 80u /* block start 64 (after the slab header), lead 16 */

static void
forge_array(forged *f, uint8_t cls, char tc, uint32_t elsize, uint64_t n,
            uint32_t hdr)
{
  forge_block(f, AR_OFF, cls, (uint32_t)(32 + n * elsize), MP__K_ARRAY);
  struct f_sval *s = (struct f_sval *)(f->map + AR_OFF);
  s->typecode = (uint8_t)tc;
  s->elsize = elsize;
  s->n = n;
  s->hdr = hdr;
}

static mp_obj *
array_state(const forged *f)
{
  return MP_TUPLE(loc_of(f, f->size, AR_OFF), mp_none());
}

/* ---- the two forgeries ------------------------------------------ */

/* mproc.Array whose header says n = 2**40: refused.  The same block with
 * n = 2 works, and only inside its two elements. */
static void
test_array_with_huge_n(void **state)
{
  int fds0 = mp_test_count_fds();
  forged f;
  forge_slab(&f, 1 << 16, 1);
  forge_array(&f, 0, 'i', 4, 2, 32);
  int rc;
  mp_obj *o = deliver("mproc.Array", array_state(&f), f.fd, &rc);
  MP_ASSERT_OK(rc);
  mp_array *a = mp_array_from_obj(o);
  assert_int_equal(mp_array_len(a), 2);
  MP_ASSERT_OK(mp_array_set_int(a, -1, 77));
  assert_int_equal(*(int32_t *)(f.map + AR_OFF + 32 + 4), 77);
  MP_ASSERT_ERR(mp_array_set_int(a, 2, 1), MP_EINDEX);
  mp_obj_free(o);

  forge_array(&f, 0, 'i', 4, (uint64_t)1 << 40, 32);
  REFUSED("mproc.Array", array_state(&f), f.fd, "n = 2**40");
  unforge(&f);
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* mproc.RLock placed 16 bytes before the end of its slab: refused.  The
 * same lock further in works. */
static void
test_rlock_at_slab_end(void **state)
{
  int fds0 = mp_test_count_fds();
  forged f;
  forge_slab(&f, 1 << 16, 1);
  forge_block(&f, AR_OFF, 0, 24, MP__K_RLOCK);
  int rc;
  mp_obj *o = deliver(
      "mproc.Lock",
      MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_bool_new(1)), f.fd, &rc);
  MP_ASSERT_OK(rc);
  mp_lock *l = mp_lock_from_obj(o);
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  assert_int_equal(*(uint32_t *)(f.map + AR_OFF) & MP__LK_PIDMASK,
                   (uint32_t)getpid());
  MP_ASSERT_OK(mp_lock_release(l));
  mp_obj_free(o);

  uint32_t end = (uint32_t)f.size - 16;
  forge_block(&f, end, 0, 24, MP__K_RLOCK);
  REFUSED("mproc.Lock", MP_TUPLE(loc_of(&f, f.size, end), mp_bool_new(1)),
          f.fd, "16 bytes before the end of the slab");
  /* the same claiming a slab of its own */
  forge_block(&f, end, F_DEDICATED, 24, MP__K_RLOCK);
  REFUSED("mproc.Lock", MP_TUPLE(loc_of(&f, f.size, end), mp_bool_new(1)),
          f.fd, "dedicated block at the end of the slab");
  /* in the last 64-byte block: a 128-byte class runs past the end, a
   * 64-byte one holds the lock and works up to the slab's last bytes */
  uint32_t last = (uint32_t)f.size - 48;
  forge_block(&f, last, 1, 24, MP__K_RLOCK);
  REFUSED("mproc.Lock", MP_TUPLE(loc_of(&f, f.size, last), mp_bool_new(1)),
          f.fd, "block running past the end of the slab");
  forge_block(&f, last, 0, 49, MP__K_RLOCK);
  REFUSED("mproc.Lock", MP_TUPLE(loc_of(&f, f.size, last), mp_bool_new(1)),
          f.fd, "block size past the end of the slab");
  forge_block(&f, last, 0, 16, MP__K_RLOCK);
  REFUSED("mproc.Lock", MP_TUPLE(loc_of(&f, f.size, last), mp_bool_new(1)),
          f.fd, "block smaller than a lock");
  forge_block(&f, last, 0, 24, MP__K_RLOCK);
  o = deliver("mproc.Lock", MP_TUPLE(loc_of(&f, f.size, last), mp_bool_new(1)),
              f.fd, &rc);
  MP_ASSERT_OK(rc);
  l = mp_lock_from_obj(o);
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  MP_ASSERT_OK(mp_lock_acquire(l, 0)); /* recursion count at the end */
  MP_ASSERT_OK(mp_lock_release(l));
  MP_ASSERT_OK(mp_lock_release(l));
  mp_obj_free(o);
  unforge(&f);
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* ---- every other field ------------------------------------------------ */

static void
test_array_header_fields(void **state)
{
  int fds0 = mp_test_count_fds();
  forged f;
  forge_slab(&f, 1 << 16, 1);
  struct {
    uint8_t cls;
    char tc;
    uint32_t elsize;
    uint64_t n;
    uint32_t hdr;
    const char *what;
  } bad[] = {
      {0, 'i', 4, 5, 32, "5 ints in a 48-byte block"},
      {0, 'i', 4096, 1, 32, "element size not the typecode's"},
      {0, 'z', 4, 1, 32, "unknown typecode"},
      {0, 0, 0, 1, 32, "zero element size"},
      {0, 0, UINT32_MAX, 1, 32, "4 GiB struct"},
      {0, 'i', 4, 1, 0x80000000u, "header past the block"},
      {0, 'i', 4, 1, 8, "header inside itself"},
      {0, 'd', 8, 1, 40, "misaligned data"},
      {0, 'q', 8, UINT64_MAX, 32, "n = 2**64 - 1"},
      {0, 'q', 8, (UINT64_MAX / 8) + 2, 32, "n * elsize wraps"},
      {11, 'i', 4, 1, 32, "size class past the largest"},
      {10, 'i', 4, 1, 32, "64 KiB block in a 64 KiB slab after its header"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    forge_array(&f, bad[i].cls, bad[i].tc, bad[i].elsize, bad[i].n,
                bad[i].hdr);
    REFUSED("mproc.Array", array_state(&f), f.fd, bad[i].what);
  }
  /* a Value must hold exactly one element */
  forge_block(&f, AR_OFF, 0, 40, MP__K_VALUE);
  struct f_sval *s = (struct f_sval *)(f.map + AR_OFF);
  *s = (struct f_sval){.typecode = 'i', .elsize = 4, .n = 3, .hdr = 32};
  REFUSED("mproc.Value", array_state(&f), f.fd, "a Value of 3 elements");
  unforge(&f);
  assert_int_equal(mp_test_count_fds(), fds0);
}

static void
test_block_and_slab_fields(void **state)
{
  int fds0 = mp_test_count_fds();
  forged f;
  forge_slab(&f, 1 << 16, 1);
  forge_array(&f, 0, 'i', 4, 2, 32);
  struct f_blk *b = (struct f_blk *)(f.map + AR_OFF - 16);
  struct f_slab *h = (struct f_slab *)f.map;

  b->lead = 32;
  REFUSED("mproc.Array", array_state(&f), f.fd, "lead not the offset's");
  b->lead = 16;
  b->size = 1 << 20;
  REFUSED("mproc.Array", array_state(&f), f.fd, "block size past its class");
  b->size = 40;
  b->tag = MP__K_LOCK;
  REFUSED("mproc.Array", array_state(&f), f.fd, "a Lock block as an Array");
  b->tag = MP__K_ARRAY;
  b->refs = UINT32_MAX;
  REFUSED("mproc.Array", array_state(&f), f.fd, "reference count at max");
  b->refs = 1;

  /* offsets: inside the slab header, not on a block boundary, past the end */
  uint64_t offs[] = {16, 48, 72, AR_OFF + 8, (uint64_t)f.size,
                     (uint64_t)f.size + 16, UINT32_MAX - 15};
  for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
    REFUSED("mproc.Array", MP_TUPLE(loc_of(&f, f.size, offs[i]), mp_none()),
            f.fd, "offset");
  /* slab sizes: larger than the memfd, smaller, not a page multiple, huge */
  uint64_t sizes[] = {(uint64_t)f.size * 2, (uint64_t)f.size / 2,
                      (uint64_t)f.size + 16, (uint64_t)1 << 40,
                      UINT64_MAX - 4095, 0};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    REFUSED("mproc.Array", MP_TUPLE(loc_of(&f, sizes[i], AR_OFF), mp_none()),
            f.fd, "slab size");
  /* the slab header itself */
  h->size = (uint64_t)1 << 40;
  REFUSED("mproc.Array", array_state(&f), f.fd, "slab header size");
  h->size = f.size;
  h->magic ^= 1;
  REFUSED("mproc.Array", array_state(&f), f.fd, "slab magic");
  h->magic = F_MAGIC;
  /* still well-formed after all that */
  int rc;
  mp_obj *o = deliver("mproc.Array", array_state(&f), f.fd, &rc);
  MP_ASSERT_OK(rc);
  mp_obj_free(o);
  unforge(&f);

  /* a slab that may shrink under the receiver's mapping */
  forge_slab(&f, 1 << 16, 0);
  forge_array(&f, 0, 'i', 4, 2, 32);
  REFUSED("mproc.Array", array_state(&f), f.fd, "unsealed memfd");
  unforge(&f);
  /* descriptors that are no slab at all */
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  forge_slab(&f, 1 << 16, 1);
  REFUSED("mproc.Array", array_state(&f), sv[0], "a socket");
  int dn = open("/dev/zero", O_RDWR | O_CLOEXEC);
  REFUSED("mproc.Array", array_state(&f), dn, "/dev/zero");
  close(dn);
  close(sv[0]);
  close(sv[1]);
  unforge(&f);
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* Lock, Semaphore, Event, Condition and Barrier blocks too small for their
 * object, or with headers describing more than the block holds. */
static void
test_other_types(void **state)
{
  int fds0 = mp_test_count_fds();
  forged f;
  forge_slab(&f, 1 << 16, 1);
  /* a well-formed Lock for the Condition, in the next block */
  uint32_t lock_off = 128 + 16;
  forge_block(&f, lock_off, 0, 24, MP__K_LOCK);
  struct {
    const char *type;
    unsigned tag;
    uint32_t size;
  } small[] = {
      {"mproc.Lock", MP__K_LOCK, 8},
      {"mproc.Semaphore", MP__K_SEM, 8},
      {"mproc.Condition", MP__K_COND, 8},
      {"mproc.Barrier", MP__K_BARRIER, 40},
  };
  for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
    forge_block(&f, AR_OFF, 0, small[i].size, small[i].tag);
    mp_obj *st;
    if (small[i].tag == MP__K_LOCK)
      st = MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_bool_new(0));
    else if (small[i].tag == MP__K_COND)
      st = MP_TUPLE(loc_of(&f, f.size, AR_OFF),
                    MP_TUPLE(loc_of(&f, f.size, lock_off), mp_bool_new(0)));
    else if (small[i].tag == MP__K_BARRIER)
      st = MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_none());
    else
      st = MP_TUPLE(loc_of(&f, f.size, AR_OFF));
    REFUSED(small[i].type, st, f.fd, "block too small");
  }
  /* an Event needs 4 bytes: a zero-sized block is refused */
  forge_block(&f, AR_OFF, 0, 0, MP__K_EVENT);
  REFUSED("mproc.Event", MP_TUPLE(loc_of(&f, f.size, AR_OFF)), f.fd,
          "empty block");

  /* semaphore headers */
  struct f_sem *sm = (struct f_sem *)(f.map + AR_OFF);
  forge_block(&f, AR_OFF, 0, 16, MP__K_SEM);
  struct f_sem sems[] = {{0, 0, MP_SEM_VALUE_MAX + 1u, 1},
                         {0, 0, 5, 0},
                         {0, 0, 5, 2}};
  for (size_t i = 0; i < 3; i++) {
    *sm = sems[i];
    REFUSED("mproc.Semaphore", MP_TUPLE(loc_of(&f, f.size, AR_OFF)), f.fd,
            "semaphore header");
  }
  /* barrier headers: more parties than slots, none, NaN timeout */
  struct f_barrier *br = (struct f_barrier *)(f.map + AR_OFF);
  forge_block(&f, AR_OFF, 1, 48 + 2 * 16, MP__K_BARRIER);
  uint32_t parties[] = {3, 0, 1000001, UINT32_MAX};
  for (size_t i = 0; i < sizeof parties / sizeof parties[0]; i++) {
    memset(br, 0, 80);
    br->parties = parties[i];
    REFUSED("mproc.Barrier", MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_none()),
            f.fd, "barrier parties");
  }
  br->parties = 2;
  br->timeout = -1;
  REFUSED("mproc.Barrier", MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_none()),
          f.fd, "negative barrier timeout");
  br->timeout = 0.0 / 0.0;
  REFUSED("mproc.Barrier", MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_none()),
          f.fd, "NaN barrier timeout");
  br->timeout = 0;
  int rc;
  mp_obj *o = deliver("mproc.Barrier",
                      MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_none()), f.fd,
                      &rc);
  MP_ASSERT_OK(rc);
  assert_int_equal(mp_barrier_parties(mp_barrier_from_obj(o)), 2);
  mp_obj_free(o);
  unforge(&f);
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* A genuine block of this process sent back as another kind. */
static void
test_wrong_kind_of_own_block(void **state)
{
  mp_value *v;
  MP_ASSERT_OK(mp_value_new(&v, 'i', NULL, &(mp_value_opts){.raw = 1}));
  mp__arena_loc loc;
  int sfd;
  mp__arena_export(v->h.ref, &loc, &sfd);
  const char *as[] = {"mproc.Lock", "mproc.Array", "mproc.Semaphore",
                      "mproc.Event", "mproc.Barrier"};
  for (size_t i = 0; i < sizeof as / sizeof as[0]; i++) {
    mp_obj *l = MP_TUPLE(mp_uint_new(loc.arena_id), mp_uint_new(loc.slab_index),
                         mp_uint_new(loc.slab_size), mp_uint_new(loc.off),
                         mp_int_new(0));
    mp_obj *st = strcmp(as[i], "mproc.Lock") == 0
                     ? MP_TUPLE(l, mp_bool_new(0))
                 : strcmp(as[i], "mproc.Array") == 0
                         || strcmp(as[i], "mproc.Barrier") == 0
                     ? MP_TUPLE(l, mp_none())
                     : MP_TUPLE(l);
    REFUSED(as[i], st, sfd, "a Value block");
  }
  int rc;
  mp_obj *o = deliver(
      "mproc.Value",
      MP_TUPLE(MP_TUPLE(mp_uint_new(loc.arena_id), mp_uint_new(loc.slab_index),
                        mp_uint_new(loc.slab_size), mp_uint_new(loc.off),
                        mp_int_new(0)),
               mp_none()),
      sfd, &rc);
  MP_ASSERT_OK(rc);
  MP_ASSERT_OK(mp_value_set_int(mp_value_from_obj(o), 5));
  int64_t x;
  MP_ASSERT_OK(mp_value_get_int(v, &x));
  assert_int_equal(x, 5);
  mp_obj_free(o);
  mp_value_free(v);
}

/* States with one item too many or too few, around genuine blocks of this
 * process: every type takes exactly (location,) or (location, more). */
static mp_obj *
own_loc(const void *obj)
{
  mp__arena_loc loc;
  int fd;
  mp__arena_export(((const struct mp__shobj *)obj)->ref, &loc, &fd);
  return MP_TUPLE(mp_uint_new(loc.arena_id), mp_uint_new(loc.slab_index),
                  mp_uint_new(loc.slab_size), mp_uint_new(loc.off),
                  mp_int_new(0));
}

static int
own_fd(const void *obj)
{
  mp__arena_loc loc;
  int fd;
  mp__arena_export(((const struct mp__shobj *)obj)->ref, &loc, &fd);
  return fd;
}

static void
test_state_item_counts(void **state)
{
  mp__arena_trim(); /* what earlier tests left kept for reuse */
  int fds0 = mp_test_count_fds();
  mp_sem *sem;
  mp_event *ev;
  mp_barrier *bar;
  mp_lock *lk;
  mp_cond *cv;
  mp_value *val;
  MP_ASSERT_OK(mp_sem_new(&sem, 1, NULL));
  MP_ASSERT_OK(mp_event_new(&ev));
  MP_ASSERT_OK(mp_barrier_new(&bar, 2, NULL));
  MP_ASSERT_OK(mp_lock_new(&lk));
  MP_ASSERT_OK(mp_cond_new(&cv, lk));
  MP_ASSERT_OK(mp_value_new(&val, 'i', NULL, &(mp_value_opts){.raw = 1}));
  /* one slab (each state names fd 0 for every location in it) */
  int fd = own_fd(sem);
  const void *objs[] = {ev, bar, lk, cv, val};
  for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
    assert_int_equal(own_fd(objs[i]), fd);
#define LOC(x) own_loc(x)
#define LOCK_ST() MP_TUPLE(LOC(lk), mp_bool_new(0))
  REFUSED("mproc.Semaphore", MP_TUPLE(LOC(sem), mp_none()), fd, "2 items");
  REFUSED("mproc.Event", MP_TUPLE(LOC(ev), mp_none()), fd, "2 items");
  REFUSED("mproc.Barrier", MP_TUPLE(LOC(bar)), fd, "no action item");
  REFUSED("mproc.Barrier", MP_TUPLE(LOC(bar), mp_none(), mp_none()), fd,
          "3 items");
  REFUSED("mproc.Lock", MP_TUPLE(LOC(lk)), fd, "no recursive flag");
  REFUSED("mproc.Lock", MP_TUPLE(LOC(lk), mp_bool_new(0), mp_none()), fd,
          "3 items");
  REFUSED("mproc.Condition", MP_TUPLE(LOC(cv)), fd, "no lock");
  REFUSED("mproc.Condition", MP_TUPLE(LOC(cv), mp_none()), fd,
          "None for its lock");
  REFUSED("mproc.Condition", MP_TUPLE(LOC(cv), LOCK_ST(), mp_none()), fd,
          "3 items");
  REFUSED("mproc.Condition",
          MP_TUPLE(LOC(cv), MP_TUPLE(LOC(lk), mp_bool_new(0), mp_none())),
          fd, "a lock state of 3 items");
  REFUSED("mproc.Value", MP_TUPLE(LOC(val)), fd, "no lock item");
  REFUSED("mproc.Value", MP_TUPLE(LOC(val), mp_none(), mp_none()), fd,
          "3 items");
  /* the right counts work */
  struct {
    const char *type;
    mp_obj *st;
  } ok[] = {
      {"mproc.Semaphore", MP_TUPLE(LOC(sem))},
      {"mproc.Event", MP_TUPLE(LOC(ev))},
      {"mproc.Barrier", MP_TUPLE(LOC(bar), mp_none())},
      {"mproc.Lock", LOCK_ST()},
      {"mproc.Condition", MP_TUPLE(LOC(cv), LOCK_ST())},
      {"mproc.Value", MP_TUPLE(LOC(val), mp_none())},
  };
#undef LOC
#undef LOCK_ST
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int rc;
    mp_obj *o = deliver(ok[i].type, ok[i].st, fd, &rc);
    MP_ASSERT_OK(rc);
    assert_non_null(mp_handle_get(o, mp_handle_find(ok[i].type)));
    mp_obj_free(o);
  }
  mp_sem_free(sem);
  mp_event_free(ev);
  mp_barrier_free(bar);
  mp_cond_free(cv);
  mp_lock_free(lk);
  mp_value_free(val);
  mp__arena_trim(); /* the slab kept for reuse */
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* ---- headers rewritten after a successful rebuild ----------------------- */

static void
test_headers_rewritten_after_rebuild(void **state)
{
  int fds0 = mp_test_count_fds();
  forged f;
  forge_slab(&f, 1 << 16, 1);
  forge_array(&f, 1, 'q', 8, 4, 32);
  int64_t *data = (int64_t *)(f.map + AR_OFF + 32);
  for (int i = 0; i < 4; i++)
    data[i] = 10 + i;
  int rc;
  mp_obj *o = deliver("mproc.Array", array_state(&f), f.fd, &rc);
  MP_ASSERT_OK(rc);
  mp_array *a = mp_array_from_obj(o);
  /* the peer now claims a huge array of huge doubles far away */
  struct f_sval *s = (struct f_sval *)(f.map + AR_OFF);
  *s = (struct f_sval){.typecode = 'd', .elsize = 1u << 20,
                       .n = (uint64_t)1 << 40, .hdr = 0x40000000u};
  assert_int_equal(mp_array_len(a), 4);
  assert_int_equal(mp_array_typecode(a), 'q');
  assert_int_equal(mp_array_elsize(a), 8);
  int64_t x;
  MP_ASSERT_OK(mp_array_get_int(a, -1, &x));
  assert_int_equal(x, 13);
  MP_ASSERT_ERR(mp_array_get_int(a, 4, &x), MP_EINDEX);
  MP_ASSERT_ERR(mp_array_set_int(a, -5, 0), MP_EINDEX);
  int64_t all[4];
  MP_ASSERT_OK(mp_array_read(a, 0, 4, all));
  assert_int_equal(all[0], 10);
  MP_ASSERT_ERR(mp_array_read(a, 1, 4, all), MP_EINDEX);
  mp_obj *lst = mp_array_to_obj(a);
  mp_obj *const *items;
  size_t nitems;
  MP_ASSERT_OK(mp_seq_items(lst, &items, &nitems));
  assert_int_equal(nitems, 4);
  mp_obj_free(lst);
  /* and garbles the block header and the remote-free list */
  struct f_blk *b = (struct f_blk *)(f.map + AR_OFF - 16);
  b->cls = 200;
  b->lead = 3;
  b->size = UINT32_MAX;
  ((struct f_slab *)f.map)->remote_free = 0xfffffff0u;
  mp_obj_free(o); /* drops the block: must not follow any of it */

  /* a semaphore whose bound is raised afterwards */
  struct f_sem *sm = (struct f_sem *)(f.map + AR_OFF);
  forge_block(&f, AR_OFF, 0, 16, MP__K_SEM);
  *sm = (struct f_sem){.value = 0, .maxvalue = 1, .bounded = 1};
  o = deliver("mproc.Semaphore", MP_TUPLE(loc_of(&f, f.size, AR_OFF)), f.fd,
              &rc);
  MP_ASSERT_OK(rc);
  mp_sem *sem = mp_sem_from_obj(o);
  MP_ASSERT_OK(mp_sem_release(sem));
  sm->maxvalue = UINT32_MAX;
  sm->bounded = 0;
  MP_ASSERT_ERR(mp_sem_release(sem), MP_EOVERFLOW); /* still bounded at 1 */
  sm->value = UINT32_MAX;
  assert_true(mp_sem_get_value(sem) >= 0); /* never a code */
  mp_obj_free(o);

  /* a barrier whose party count grows afterwards */
  struct f_barrier *br = (struct f_barrier *)(f.map + AR_OFF);
  forge_block(&f, AR_OFF, 1, 48 + 2 * 16, MP__K_BARRIER);
  memset(br, 0, 80);
  br->parties = 2;
  o = deliver("mproc.Barrier", MP_TUPLE(loc_of(&f, f.size, AR_OFF), mp_none()),
              f.fd, &rc);
  MP_ASSERT_OK(rc);
  mp_barrier *bar = mp_barrier_from_obj(o);
  br->parties = 1000000;
  /* every slot taken by a live process: the slot search must stop at 2 */
  for (int i = 0; i < 2; i++)
    br->w[i].pid = (uint32_t)getpid();
  assert_int_equal(mp_barrier_parties(bar), 2);
  MP_ASSERT_ERR(mp_barrier_wait(bar, 0), MP_EBROKEN); /* times out alone */
  MP_ASSERT_OK(mp_barrier_reset(bar));
  br->nwaiting = 0xfffffff0u;
  assert_true(mp_barrier_n_waiting(bar) >= 0);
  MP_ASSERT_ERR(mp_barrier_wait(bar, 0), MP_EBROKEN); /* a garbled count */
  mp_obj_free(o);

  /* an event word set to garbage: wait times out, it does not spin */
  forge_block(&f, AR_OFF, 0, 4, MP__K_EVENT);
  *(uint32_t *)(f.map + AR_OFF) = 0;
  o = deliver("mproc.Event", MP_TUPLE(loc_of(&f, f.size, AR_OFF)), f.fd, &rc);
  MP_ASSERT_OK(rc);
  *(uint32_t *)(f.map + AR_OFF) = 77;
  assert_int_equal(mp_event_is_set(mp_event_from_obj(o)), 0);
  MP_ASSERT_ERR(mp_event_wait(mp_event_from_obj(o), 0.05), MP_ETIMEDOUT);
  assert_int_equal(*(uint32_t *)(f.map + AR_OFF), 2); /* a sleeper marked */
  MP_ASSERT_OK(mp_event_set(mp_event_from_obj(o)));
  assert_int_equal(mp_event_is_set(mp_event_from_obj(o)), 1);
  mp_obj_free(o);

  unforge(&f);
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* ---- a peer holding one of our slabs writes into our allocator's parts -- */

static uint8_t *
slab_base(mp_lock *l)
{
  return (uint8_t *)l->s - l->h.ref.off;
}

static void
test_hostile_writes_into_own_slab(void **state)
{
  mp_lock *keep, *victim;
  MP_ASSERT_OK(mp_lock_new(&keep));
  MP_ASSERT_OK(mp_lock_new(&victim));
  uint8_t *base = slab_base(keep);
  assert_ptr_equal(base, slab_base(victim));
  struct f_slab *h = (struct f_slab *)base;
  /* a block header garbled before its last reference is dropped */
  struct f_blk *b = (struct f_blk *)((uint8_t *)victim->s - 16);
  uint32_t voff = victim->h.ref.off;
  b->cls = 200;
  b->lead = 3;
  b->tag = 0;
  mp_lock_free(victim); /* freed by the local bookkeeping, not the header */
  mp_lock *again;
  MP_ASSERT_OK(mp_lock_new(&again));
  assert_int_equal(again->h.ref.off, voff); /* recycled in its own class */
  mp_lock_free(again);

  /* remote frees that point anywhere: outside the slab, into its header,
   * at a live block, at a free block, in a cycle */
  uint32_t wild[] = {0xfffffff0u, 16, 8, keep->h.ref.off, voff,
                     keep->h.ref.off + 4};
  for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
    h->remote_free = wild[i];
    mp_lock *n;
    MP_ASSERT_OK(mp_lock_new(&n)); /* drains the list */
    assert_int_not_equal(n->h.ref.off, keep->h.ref.off);
    mp_lock_free(n);
  }
  /* a live block offered with a forged zero count, linked to itself: the
   * walk ends (the peer can make two of our objects share its block, as
   * it could write into that block anyway, but never leave the slab) */
  ((struct f_blk *)((uint8_t *)keep->s - 16))->next = keep->h.ref.off;
  ((struct f_blk *)((uint8_t *)keep->s - 16))->refs = 0;
  h->remote_free = keep->h.ref.off;
  mp_lock *n;
  MP_ASSERT_OK(mp_lock_new(&n));
  ((struct f_blk *)((uint8_t *)keep->s - 16))->refs = 2;
  /* whatever was drained, allocated blocks are never handed out again */
  mp_lock *many[64];
  for (int i = 0; i < 64; i++) {
    MP_ASSERT_OK(mp_lock_new(&many[i]));
    for (int j = 0; j < i; j++)
      assert_int_not_equal(many[i]->h.ref.off, many[j]->h.ref.off);
    assert_true(many[i]->h.ref.off != n->h.ref.off);
  }
  for (int i = 0; i < 64; i++)
    mp_lock_free(many[i]);
  mp_lock_free(n);
  mp_lock_free(keep);
}

/* ---- SharedMemory --------------------------------------------------------- */

static void
test_shared_memory_forgeries(void **state)
{
  int fds0 = mp_test_count_fds();
  int fd = memfd_create("forged-shm", MFD_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, 4096), 0);
  const char *names[] = {"a/../../x", "", "/", "..", "x/y"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    REFUSED("mproc.SharedMemory",
            MP_TUPLE(mp_str_new(names[i]), mp_uint_new(64)), fd, names[i]);
  char longname[300];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  REFUSED("mproc.SharedMemory",
          MP_TUPLE(mp_str_new(longname), mp_uint_new(64)), fd, "long name");
  REFUSED("mproc.SharedMemory",
          MP_TUPLE(mp_str_new_len("ab\0cd", 5), mp_uint_new(64)), fd,
          "NUL in the name");
  REFUSED("mproc.SharedMemory",
          MP_TUPLE(mp_str_new("mp-forged"), mp_uint_new(8192)), fd,
          "larger than the fd");
  REFUSED("mproc.SharedMemory",
          MP_TUPLE(mp_str_new("mp-forged"), mp_uint_new(UINT64_MAX)), fd,
          "2**64 - 1 bytes");
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  REFUSED("mproc.SharedMemory",
          MP_TUPLE(mp_str_new("mp-forged"), mp_uint_new(1)), sv[0], "socket");
  close(sv[0]);
  close(sv[1]);
  int rc;
  mp_obj *o = deliver("mproc.SharedMemory",
                      MP_TUPLE(mp_str_new("mp-forged"), mp_uint_new(4096)),
                      fd, &rc);
  MP_ASSERT_OK(rc);
  assert_int_equal(mp_shm_size(mp_shm_from_obj(o)), 4096);
  mp_obj_free(o);
  close(fd);
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* ---- the forgeries sent by a child of each start method ----------------- */

/* args: (writer,).  Sends the two forgeries, then waits for the
 * parent's word to unmap (the parent reads while the child still holds
 * its mappings, as a live attacker would). */
static int
t_forger(mp_obj *args)
{
  mp_conn *w = mp_conn_from_obj(mp_seq_item(args, 0));
  if (!w)
    return 10;
  forged f;
  forge_slab(&f, 1 << 16, 1);
  forge_array(&f, 0, 'i', 4, (uint64_t)1 << 40, 32);
  send_raw(w, "mproc.Array", array_state(&f), f.fd);
  uint32_t end = (uint32_t)f.size - 16;
  forge_block(&f, end, 0, 24, MP__K_RLOCK);
  send_raw(w, "mproc.Lock", MP_TUPLE(loc_of(&f, f.size, end), mp_bool_new(1)),
           f.fd);
  mp_obj *done = NULL;
  int rc = mp_conn_recv(w, &done, 60);
  mp_obj_free(done);
  unforge(&f);
  return rc ? 11 : 0;
}

static void
test_forgeries_from_children(void **state)
{
  for (const char *const *m = mp_test_start_methods; *m; m++) {
    mp_conn *r, *w;
    MP_ASSERT_OK(mp_pipe(&r, &w, 1));
    int fds0 = mp_test_count_fds();
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(*m, &ctx));
    mp_process *p;
    mp_obj *args = MP_TUPLE(mp_conn_obj(w));
    MP_ASSERT_OK(mp_process_new(
        &p, ctx, &(mp_process_opts){.target = t_forger, .args = args}));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_process_start(p));
    for (int i = 0; i < 2; i++) {
      mp_obj *o = NULL;
      int rc = mp_conn_recv(r, &o, 60);
      if (rc != MP_EMALFORMED)
        fail_msg("%s: forgery %d -> %s: %s", *m, i, mp_err_name(rc),
                 mp_errdetail());
      assert_null(o);
    }
    mp_obj *ok = mp_none();
    MP_ASSERT_OK(mp_conn_send(r, ok));
    mp_obj_free(ok);
    MP_ASSERT_OK(mp_process_join(p, 60));
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    MP_ASSERT_OK(mp_process_close(p));
    mp_process_free(p);
    if (strcmp(*m, "forkserver") == 0)
      mp__forkserver_stop(); /* its socket is no fd of the forgeries */
    assert_int_equal(mp_test_count_fds(), fds0);
    mp_conn_free(r);
    mp_conn_free(w);
  }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_array_with_huge_n, setup_pipe,
                                    teardown_pipe),
    cmocka_unit_test_setup_teardown(test_rlock_at_slab_end, setup_pipe,
                                    teardown_pipe),
    cmocka_unit_test_setup_teardown(test_array_header_fields, setup_pipe,
                                    teardown_pipe),
    cmocka_unit_test_setup_teardown(test_block_and_slab_fields, setup_pipe,
                                    teardown_pipe),
    cmocka_unit_test_setup_teardown(test_other_types, setup_pipe,
                                    teardown_pipe),
    cmocka_unit_test_setup_teardown(test_state_item_counts, setup_pipe,
                                    teardown_pipe),
    cmocka_unit_test_setup_teardown(test_wrong_kind_of_own_block,
                                    setup_pipe, teardown_pipe),
    cmocka_unit_test_setup_teardown(test_headers_rewritten_after_rebuild,
                                    setup_pipe, teardown_pipe),
    cmocka_unit_test(test_hostile_writes_into_own_slab),
    cmocka_unit_test_setup_teardown(test_shared_memory_forgeries,
                                    setup_pipe, teardown_pipe),
    cmocka_unit_test(test_forgeries_from_children),
};

MP_TEST_MAIN(tests)
