/* SPDX-License-Identifier: MIT */
/* Internals of the shared-objects layer (src/shared): the arena every
 * process-shared object lives in, and the base their handles are built on.
 * sync and shm (and the layers above them) build on it; it uses core,
 * platform and obj only.
 *
 * ---- the arena (arena.c) ----------------------------------------------------
 * Process-shared memory for every primitive and shared value, grown in
 * slabs.
 *
 * Each process allocates from slabs it created itself (a slab is one memfd
 * of 1 MiB, mapped once).  Objects inside a slab are addressed by offset,
 * never by pointer, so a slab may sit at a different address in each
 * process.  An object crosses to another process as (arena id, slab index,
 * slab size, offset) plus the slab's fd; the receiver maps each slab once
 * and caches it, so 100,000 locks cost a handful of fds and mappings.
 * Objects larger than a slab's biggest size class get a slab of their own.
 *
 * Every block carries a shared reference count (one per live handle in any
 * process).  When it drops to zero the block returns to its slab's owner:
 * directly when the owner frees it, through a lock-free "remote free" list
 * in the slab header otherwise.  A process keeps a slab mapped while it holds
 * handles into it; the last one unmaps it and closes the fd -- except for
 * one slab of its own, kept for its next objects (a pool's come and go with
 * the pool), so a program that freed every object holds at most one arena
 * fd and 1 MiB of address space; mp__arena_trim releases that too.
 *
 * After fork the child keeps the parent's slabs mapped (inherited objects
 * keep working) but never allocates from them: it starts its own slabs.
 * Handles a fork child inherits hold no shared reference of their own (each
 * reference remembers the pid that took it): as in Python, the creating
 * process owns an object it passed to fork children by inheritance and must
 * keep it while they use it.  Handles rebuilt from args (spawn, forkserver)
 * or received through a Connection hold their own reference.
 *
 * Nothing in a slab is trusted.  Any process holding a slab's fd may write
 * anything into it, and a peer on a Connection may send a memfd it wrote
 * itself.  So import maps only a memfd sealed against shrinking whose real
 * size (fstat) matches the description, checks that the described block lies
 * wholly inside it and says how many bytes it holds; callers read their
 * object's own sizes once at import and keep them in the handle.  The
 * allocator keeps its bookkeeping (which blocks exist, their size classes,
 * free lists) in local memory and checks every block other processes hand
 * back through the shared "remote free" list against it. */
#ifndef MPROC_SHARED_INTERNAL_H
#define MPROC_SHARED_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "mproc/obj.h"

typedef struct mp__slab mp__slab;

/* Where one block lives: the slab (local bookkeeping) and the data offset. */
typedef struct mp__shref {
  mp__slab *slab;
  uint32_t off;
  uint32_t pid; /* the process that took the shared reference */
} mp__shref;

/* A zeroed block of `size` bytes aligned to `align` (<= 64), with one shared
 * reference held by the caller.  `tag` (1..65535, the object's kind) is
 * recorded in the block so that import can refuse a block of another kind.
 * Returns the data pointer or NULL (errno-ish code in *err: MP_ENOMEM,
 * MP_EINVAL, -errno). */
void *mp__arena_alloc(size_t size, size_t align, unsigned tag,
                      mp__shref *ref, int *err);

/* Drop a shared reference taken by alloc, ref or import. */
void mp__arena_unref(mp__shref ref);
/* The data pointer of a block in this process. */
void *mp__arena_ptr(mp__shref ref);

/* Describe a block for another process.  *fd is the slab's fd, still owned
 * by the arena (the encoder sends a copy). */
typedef struct mp__arena_loc {
  uint64_t arena_id;
  uint32_t slab_index;
  uint64_t slab_size;
  uint32_t off;
} mp__arena_loc;
void mp__arena_export(mp__shref ref, mp__arena_loc *loc, int *fd);

/* Map (or find already mapped) the slab of `loc` and take a shared
 * reference to the block.  `fd` is consumed (kept or closed), also on
 * failure; fd < 0 means "must already be mapped here" (a second location on
 * the same fd, or fork children).  On success *ptr is the block's data and
 * *size the number of bytes at *ptr that lie inside the block (never past
 * the mapping).  MP_EMALFORMED (with a detail) when fd is not a sealed memfd
 * of the described size holding that slab, or loc does not describe a block
 * of that slab tagged `tag`; MP_ESTATE when the block was freed; MP_EBADF
 * when fd < 0 and the slab is not mapped here. */
int mp__arena_import(const mp__arena_loc *loc, int fd, unsigned tag,
                     mp__shref *ref, void **ptr, size_t *size);

/* One read of a field of shared memory that other processes may be
 * writing: what the caller checks and keeps is what it read (the compiler
 * may not read the field again in its place). */
#define MP__SHARED_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* Numbers for tests and benchmarks: slabs mapped in this process, bytes
 * mapped (the kept slab included). */
void mp__arena_stats(size_t *slabs, size_t *bytes);
/* Release the slab kept for reuse, if any. */
void mp__arena_trim(void);

/* The kinds of process-shared object, which are also their blocks' arena
 * tags: one list, so that no two kinds share a tag. */
enum {
  MP__K_LOCK = 1,
  MP__K_RLOCK,
  MP__K_SEM,
  MP__K_COND,
  MP__K_EVENT,
  MP__K_BARRIER,
  MP__K_VALUE,
  MP__K_ARRAY
};

/* ---- handle states (shobj.c) ------------------------------------------------
 * A shared object crosses to another process as a handle value whose state
 * holds its block's location, (arena id, slab index, slab size, offset, fd
 * index), the fd being its slab's.  A reduce context collects the fds of
 * one handle value once each (a Condition and its lock often share a slab);
 * a rebuild context hands each received fd to the arena at most once and
 * closes the others at the end. */
typedef struct mp__redctx {
  int (*add_fd)(void *fdctx, int fd);
  void *fdctx;
  int fds[16];
  int n;
} mp__redctx;
mp_obj *mp__loc_reduce(mp__redctx *c, mp__shref ref);

typedef struct mp__rebctx {
  int *fds;
  size_t nfds;
  unsigned char used[16];
} mp__rebctx;
/* Import the block `loc` describes, which must be tagged `tag`: *ptr and
 * *size as mp__arena_import gives them. */
int mp__loc_rebuild(mp__rebctx *c, const mp_obj *loc, unsigned tag,
                    mp__shref *ref, void **ptr, size_t *size);
/* Close the received fds no import took. */
void mp__rebctx_done(mp__rebctx *c);

/* ---- the shared-object base (shobj.c) ---------------------------------------
 * Every process-shared object (Lock, Semaphore, Condition, Event, Barrier,
 * Value, Array) is a block in the arena plus, in each process that uses it,
 * handles: the mp_lock, mp_sem ... pointers callers hold.  Each handle
 * starts with struct mp__shobj: a local reference count (the handle values
 * wrapping it hold references too), its kind, its block and its type.  The
 * type (mp__shtype) says how a handle is made from a block and what it adds
 * when it crosses processes; the base does the rest the same way for every
 * type: new, reference, free, wrapping in a handle value, reduce, rebuild.
 *
 * A handle's state is (location,) or (location, more), `more` being what
 * the type adds: the state of the shared object it holds (a Condition's
 * lock), a Lock's recursive flag, a Barrier's action. */
struct mp__shtype;

struct mp__shobj {
  _Atomic int refs;
  int kind; /* MP__K_*, also the block's arena tag */
  mp__shref ref;
  const struct mp__shtype *type;
};

/* What a new handle takes over besides its block: filled in by a type's
 * constructor (from its arguments) or from a received state. */
typedef struct mp__shmore {
  int kind;          /* the block's kind, for a type with two (Lock and
                        RLock); 0: the type's */
  void *sub;         /* the shared object it holds (see mp__shtype.sub) */
  int (*fn)(void *); /* a callback and its argument (a Barrier's action) */
  void *arg;
} mp__shmore;

typedef struct mp__shtype {
  /* The handle-value type, registered by the layer that defines the type:
   * its release and reduce are mp__shobj_free and mp__shobj_reduce, its
   * rebuild the one MP__SHTYPE defines. */
  mp_handle_type handle;
  int kind;     /* the kind of its objects (see mp__shmore.kind) */
  size_t size;  /* of the handle struct, which starts with mp__shobj */
  size_t block; /* the least size of a block: its shared header */
  size_t data;  /* where the handle keeps a pointer to its block's data (an
                   offsetof into the handle), 0: it does not */
  /* Fill in the handle's own fields from its block (h->ref, whose data
   * holds `size` >= `block` bytes: the size import reported, the shared
   * block's real extent).  Read each shared field it depends on (counts,
   * sizes) once, check it against `size` and keep it in the handle, so that
   * nothing written into the block later can lead an accessor outside it.
   * 0, or MP_EMALFORMED with a detail.  NULL: nothing to check. */
  int (*adopt)(struct mp__shobj *h, size_t size, const mp__shmore *more);
  /* A handle that holds another shared object (the lock of a Condition or
   * of a synchronized Value): where it keeps the pointer (an offsetof into
   * the handle) and that object's type; the base sets it from more->sub,
   * drops it with the handle, and makes its state the state's second item
   * (None for a NULL sub, which only a type with sub_optional accepts). */
  size_t sub;
  const struct mp__shtype *sub_type;
  int sub_optional;
  /* Or another second item of the state (NULL: none) ... */
  mp_obj *(*reduce_more)(mp__redctx *c, const struct mp__shobj *h);
  /* ... and back: fill in *more from it (0, or a code: nothing to drop). */
  int (*rebuild_more)(mp__rebctx *c, const mp_obj *item, mp__shmore *more);
} mp__shtype;

/* A new object of type t: a zeroed block of `size` bytes aligned to
 * `align` (<= 64), whose first `initlen` bytes are copied from `init` (its
 * shared header), and a handle adopting it.  `out` points to the caller's
 * handle pointer (an mp_sem ** ...), set to the handle or NULL.  `more`
 * (NULL: none) is taken over, also on failure (its sub is dropped then).
 * 0, MP_EINVAL (out NULL), MP_ENOMEM, or adopt's code. */
int mp__shobj_new(const mp__shtype *t, const mp__shmore *more, size_t size,
                  size_t align, const void *init, size_t initlen, void *out);
/* Take a local reference / drop one: the last one releases the object it
 * holds, its block's shared reference and the handle.  NULL is ignored. */
void *mp__shobj_ref(void *obj);
void mp__shobj_free(void *obj);
/* A handle value of type t holding a new reference to obj; NULL (with
 * MP_EINVAL) for a NULL obj, NULL on ENOMEM. */
mp_obj *mp__shobj_obj(const mp__shtype *t, void *obj);

/* mp_handle_type.reduce of every shared type, and the body of its rebuild
 * (a new handle with a shared reference of its own): 0, MP_EMALFORMED with
 * a detail, MP_ESTATE (the block was freed), MP_ENOMEM. */
int mp__shobj_reduce(void *obj, mp_obj **state,
                     int (*add_fd)(void *fdctx, int fd), void *fdctx);
int mp__shobj_rebuild(const mp__shtype *t, const mp_obj *state, int *fds,
                      size_t nfds, void **out);

/* Define the mp__shtype `var`, its handle-value type named `name`; the
 * other fields as designated initializers.  It defines var##_rebuild too
 * (mp_handle_type.rebuild is not told its type). */
#define MP__SHTYPE(var, name, ...)                                           \
  static int var##_rebuild(const mp_obj *state, int *fds, size_t nfds,       \
                           void **out)                                       \
  {                                                                          \
    return mp__shobj_rebuild(&(var), state, fds, nfds, out);                 \
  }                                                                          \
  const mp__shtype var = {                                                   \
      .handle = {name, mp__shobj_free, mp__shobj_reduce, var##_rebuild},     \
      __VA_ARGS__}

/* The public functions every shared type has: PFX_free, PFX_obj and
 * PFX_from_obj for handle type T of mp__shtype `var` (see sync.h). */
#define MP__SHOBJ_PUBLIC(pfx, T, var)                                        \
  void pfx##_free(T *x)                                                      \
  {                                                                          \
    mp__shobj_free(x);                                                       \
  }                                                                          \
  mp_obj *pfx##_obj(T *x)                                                    \
  {                                                                          \
    return mp__shobj_obj(&(var), x);                                         \
  }                                                                          \
  T *pfx##_from_obj(const mp_obj *o)                                         \
  {                                                                          \
    return mp_handle_get(o, &(var).handle);                                  \
  }

#endif
