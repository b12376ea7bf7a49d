/* SPDX-License-Identifier: MIT */
/* Shared state between processes: Value and Array (Python's shared ctypes,
 * multiprocessing.sharedctypes) and named SharedMemory segments
 * (multiprocessing.shared_memory) with the resource tracker.
 *
 * Value / Array.  Typed memory in the shared arena (see sync.h), reaching
 * other processes as Process arguments (mp_value_obj, mp_array_obj) or by
 * inheritance across fork.  Typecodes are those of Python's array module,
 * with the C types ctypes gives them on Linux/LP64:
 *   'c' char (a byte)      'b' signed char   'B' unsigned char
 *   'h' short              'H' unsigned short
 *   'i' int                'I' unsigned int
 *   'l' long               'L' unsigned long
 *   'q' long long          'Q' unsigned long long
 *   'f' float              'd' double
 * and any user-defined struct given its size and alignment (<= 64), the
 * analog of a ctypes.Structure.
 *
 * Synchronization, as in Python: by default (lock = true) a new RLock is
 * made and every accessor below takes it for the duration of the access;
 * opts.lock gives an existing Lock or RLock to use instead (a reference is
 * taken); opts.raw makes a RawValue / RawArray (no lock: accessors are plain
 * loads and stores).  A read-modify-write such as `+= 1` needs the lock held
 * around it: mp_lock_acquire(mp_value_get_lock(v), ...) -- with an RLock the
 * accessors inside work while you hold it.  Accessors return MP_EOWNERDEAD
 * (after doing their job) if the lock they took had a dead owner.
 *
 * Conversions are checked: storing a number that does not fit the type
 * returns MP_EOVERFLOW (Python's array module; ctypes would truncate), an
 * integer accessor on 'f'/'d' or a struct returns MP_ETYPE, a float accessor
 * on an integer type MP_ETYPE, an index out of range MP_EINDEX (negative
 * indexes count from the end). */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "mproc/version.h"
#include "obj.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_value mp_value;
typedef struct mp_array mp_array;

typedef struct mp_value_opts {
  int raw;       /* nonzero: no lock (lock=False: RawValue / RawArray) */
  mp_lock *lock; /* use this Lock or RLock (NULL: a new RLock unless raw) */
} mp_value_opts;

/* ---- Value ---------------------------------------------------------------
 * Value(typecode, init): `init` points at one C value of the typecode's type
 * (a double for 'd', an int for 'i' ...), or NULL for zero.  MP_EINVAL for an
 * unknown typecode or NULL out; MP_ENOMEM; -errno. */
MP_EXTERN int mp_value_new(mp_value **out, char typecode, const void *init,
                           const mp_value_opts *opts);
/* Value(MyStruct, ...): `size` bytes aligned to `align` (power of two <=
 * 64), initialised from `init` (size bytes) or zeroed. */
MP_EXTERN int mp_value_new_struct(mp_value **out, size_t size, size_t align,
                                  const void *init,
                                  const mp_value_opts *opts);
/* Typed Value(typecode, init), with no untyped pointer:
 * _int / _uint for an integer typecode ('c' takes a byte value 0..255) or
 * a float one (converted, as Python's Value('d', 3)); _double for 'f' or
 * 'd' (MP_ETYPE for an integer typecode, as Python's TypeError).
 * MP_EOVERFLOW (and no Value) if init does not fit the type; otherwise as
 * mp_value_new. */
MP_EXTERN int mp_value_new_int(mp_value **out, char typecode, int64_t init,
                               const mp_value_opts *opts);
MP_EXTERN int mp_value_new_uint(mp_value **out, char typecode, uint64_t init,
                                const mp_value_opts *opts);
MP_EXTERN int mp_value_new_double(mp_value **out, char typecode, double init,
                                  const mp_value_opts *opts);
MP_EXTERN void mp_value_free(mp_value *v);

/* The typecode ('\0' for a struct) and size in bytes. */
MP_EXTERN char mp_value_typecode(const mp_value *v);
MP_EXTERN size_t mp_value_size(const mp_value *v);
/* The memory itself (get_obj(); unsynchronized access). */
MP_EXTERN void *mp_value_ptr(mp_value *v);
/* get_lock(): the lock (borrowed), NULL for a raw value. */
MP_EXTERN mp_lock *mp_value_get_lock(mp_value *v);

/* .value for integer typecodes ('c' reads as its byte value 0..255). */
MP_EXTERN int mp_value_get_int(mp_value *v, int64_t *out);
MP_EXTERN int mp_value_set_int(mp_value *v, int64_t x);
/* The same for values above INT64_MAX ('Q', 'L'). */
MP_EXTERN int mp_value_get_uint(mp_value *v, uint64_t *out);
MP_EXTERN int mp_value_set_uint(mp_value *v, uint64_t x);
/* .value for 'f' and 'd' (a 'f' stores the nearest float; MP_EOVERFLOW if
 * finite x is out of float range). */
MP_EXTERN int mp_value_get_double(mp_value *v, double *out);
MP_EXTERN int mp_value_set_double(mp_value *v, double x);
/* v.value += delta as one atomic step, with the new value in *result (NULL:
 * not wanted): concurrent adds from any processes and threads never lose
 * an update, with or without a lock.  The update itself is a
 * compare-and-swap on the shared memory; a synchronized Value also takes
 * its lock around it, so that it composes with read-modify-writes that
 * other code does under mp_value_get_lock (with the default RLock, a
 * caller that holds the lock may call it); a raw Value is lock-free.
 * Integer typecodes only (MP_ETYPE for 'f', 'd', structs, Arrays).
 * MP_EOVERFLOW, nothing stored, if the result does not fit the type or
 * int64_t.  MP_EOWNERDEAD as the other accessors. */
MP_EXTERN int mp_value_add(mp_value *v, int64_t delta, int64_t *result);
/* Copy the whole value out / in (any type; size bytes), under the lock. */
MP_EXTERN int mp_value_read(mp_value *v, void *dst);
MP_EXTERN int mp_value_write(mp_value *v, const void *src);
/* The value as an mp_obj (int, float, or bytes of length 1 for 'c'; bytes
 * of the struct for a struct).  NULL on failure. */
MP_EXTERN mp_obj *mp_value_to_obj(mp_value *v);

/* ---- Array ---------------------------------------------------------------
 * Array(typecode, size_or_initializer): `n` elements, copied from `init`
 * (n C values) or zeroed when init is NULL. */
MP_EXTERN int mp_array_new(mp_array **out, char typecode, size_t n,
                           const void *init, const mp_value_opts *opts);
/* An array of `n` structs of `elsize` bytes aligned to `align`. */
MP_EXTERN int mp_array_new_struct(mp_array **out, size_t elsize,
                                  size_t align, size_t n, const void *init,
                                  const mp_value_opts *opts);
MP_EXTERN void mp_array_free(mp_array *a);

/* The typecode (as mp_value_typecode), the number of elements, the
 * size of one element, the elements themselves (raw access: hold the lock
 * around it), and the lock (NULL for a RawArray; borrowed). */
MP_EXTERN char mp_array_typecode(const mp_array *a);
MP_EXTERN size_t mp_array_len(const mp_array *a);
MP_EXTERN size_t mp_array_elsize(const mp_array *a);
MP_EXTERN void *mp_array_ptr(mp_array *a);
MP_EXTERN mp_lock *mp_array_get_lock(mp_array *a);

/* a[i] (negative i from the end). */
MP_EXTERN int mp_array_get_int(mp_array *a, int64_t i, int64_t *out);
MP_EXTERN int mp_array_set_int(mp_array *a, int64_t i, int64_t x);
MP_EXTERN int mp_array_get_uint(mp_array *a, int64_t i, uint64_t *out);
MP_EXTERN int mp_array_set_uint(mp_array *a, int64_t i, uint64_t x);
MP_EXTERN int mp_array_get_double(mp_array *a, int64_t i, double *out);
MP_EXTERN int mp_array_set_double(mp_array *a, int64_t i, double x);
/* a[start:start+count] copied out / in as raw elements, under the lock
 * once.  MP_EINDEX unless start + count <= len. */
MP_EXTERN int mp_array_read(mp_array *a, size_t start, size_t count,
                            void *dst);
MP_EXTERN int mp_array_write(mp_array *a, size_t start, size_t count,
                             const void *src);
/* For 'c' arrays, ctypes' .value: the bytes up to the first NUL, copied to
 * buf (NUL-terminated when cap > 0); returns their length (>= 0) or a
 * code.  MP_ETYPE for other typecodes. */
MP_EXTERN int64_t mp_array_get_bytes(mp_array *a, char *buf, size_t cap);
/* .value = bytes: stores len bytes and a NUL terminator if there is room;
 * MP_EOVERFLOW if len > length ("byte string too long"). */
MP_EXTERN int mp_array_set_bytes(mp_array *a, const void *data, size_t len);
/* a[:] as an mp_obj: a list of ints or floats, bytes for 'c' (all of it,
 * ctypes' .raw), a list of bytes for structs.  NULL on failure. */
MP_EXTERN mp_obj *mp_array_to_obj(mp_array *a);

/* Handle values for Process args (see sync.h "passing to other
 * processes").  The receiver's Value/Array shares the memory and the lock. */
MP_EXTERN mp_obj *mp_value_obj(mp_value *v);
MP_EXTERN mp_value *mp_value_from_obj(const mp_obj *o);
MP_EXTERN mp_obj *mp_array_obj(mp_array *a);
MP_EXTERN mp_array *mp_array_from_obj(const mp_obj *o);

/* ---- SharedMemory ----------------------------------------------------------
 * A named POSIX shared-memory segment (/dev/shm/<name>), as
 * multiprocessing.shared_memory.SharedMemory.  Names: up to 200 bytes, no
 * '/' (a leading '/' is accepted and dropped).  Generated names start with
 * "mp-".
 *
 * A segment this program created is registered with the resource tracker
 * (below) until mp_shm_unlink; attaching does not register. */
typedef struct mp_shm mp_shm;

typedef struct mp_shm_opts {
  int create;  /* nonzero: create a new segment (fails with MP_EEXIST if the
                  name exists); 0: attach to an existing one */
  size_t size; /* create: the size (> 0, else MP_EINVAL); attach: 0 = the
                  segment's size, else at most that (MP_EINVAL if larger) */
} mp_shm_opts;

/* SharedMemory(name, create, size).  name NULL with create: a fresh
 * generated name; name NULL without create: MP_EINVAL.  Returns 0,
 * MP_EINVAL, MP_EEXIST, MP_ENOENT (attach to a missing name), -errno. */
MP_EXTERN int mp_shm_new(mp_shm **out, const char *name,
                         const mp_shm_opts *opts);
/* close(): unmap this process's view (buf becomes NULL).  Idempotent. */
MP_EXTERN int mp_shm_close(mp_shm *shm);
/* unlink(): remove the name (the memory lives while anyone maps it) and
 * unregister it from the tracker.  MP_ENOENT if already gone. */
MP_EXTERN int mp_shm_unlink(mp_shm *shm);
/* close() and release the object; does NOT unlink (as in Python). */
MP_EXTERN void mp_shm_free(mp_shm *shm);
MP_EXTERN const char *mp_shm_name(const mp_shm *shm); /* without '/' */
MP_EXTERN void *mp_shm_buf(mp_shm *shm);              /* NULL once closed */
MP_EXTERN size_t mp_shm_size(const mp_shm *shm);

/* A handle value: the receiver attaches to the same segment (by its fd, so
 * it works even after unlink; the name is kept for unlink).  A received
 * state whose name mp_shm_new would refuse, or whose fd is not a
 * shared-memory file at least as large as the state says, is MP_EMALFORMED
 * (fd closed).  Unlike the arena's slabs, a named segment can be truncated
 * by any process that can open it, as in Python: then touching the pages
 * past its new end raises SIGBUS. */
MP_EXTERN mp_obj *mp_shm_obj(mp_shm *shm);
MP_EXTERN mp_shm *mp_shm_from_obj(const mp_obj *o);

/* ---- the resource tracker --------------------------------------------------
 * A small process, started on the first registration, that removes named
 * resources the program created and did not remove, once every process of
 * the program has ended -- also when they were SIGKILLed.  It learns of the
 * end by EOF on a pipe whose write end every process of the program holds:
 * fork children inherit it and spawn and forkserver children are handed a
 * copy with their instructions (as Python hands its tracker's descriptor to
 * spawn children), so a segment the parent created stays while any child
 * lives, also after the parent was killed.  That holds for children started
 * after the tracker was (the program's first registration); a child started
 * before that which registers something starts a tracker of its own, which
 * watches it and its own children.  It is not a child of the
 * program (it is started through a double fork) and ignores SIGINT and
 * SIGTERM, so ^C on the program does not prevent the clean-up.
 *
 * Like Python's, it says on stderr what it removed ("[WARNING/mproc-tracker]
 * There appear to be N leaked named resources to clean up at shutdown: ...").
 *
 * Types: "shm" (a POSIX shared-memory name, removed with shm_unlink) and
 * "file" (an absolute path, removed with unlink).  Registering returns 0,
 * MP_EINVAL (unknown type; a name that is empty, longer than 1024 bytes,
 * holds a newline, a '/' for "shm", or is not absolute for "file"), or
 * -errno when the tracker cannot be started. */
MP_EXTERN int mp_resource_register(const char *type, const char *name);
MP_EXTERN int mp_resource_unregister(const char *type, const char *name);
/* Close this process's connection to the tracker (it cleans up after every
 * other holder has closed too).  The next registration starts a new one.
 * For programs (and tests) that must not keep the pipe fd open. */
MP_EXTERN void mp_resource_tracker_stop(void);
/* The tracker's pid, or 0 if this process has none (it started none and
 * was started by no process that had one). */
MP_EXTERN int mp_resource_tracker_pid(void);

#ifdef __cplusplus
}
#endif
#endif
