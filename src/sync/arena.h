/* The shared arena: process-shared memory for every primitive and shared
 * value, grown in slabs.
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
 * handles into it; the last one unmaps it and closes the fd, so a program
 * that freed every object holds no arena fd at all.
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
#ifndef MPROC_SYNC_ARENA_H
#define MPROC_SYNC_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

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
 * mapped. */
void mp__arena_stats(size_t *slabs, size_t *bytes);

#endif
