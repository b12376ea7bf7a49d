/* SPDX-License-Identifier: MIT */
/* Internal layout of mp_obj values, shared by the files of src/obj/.
 *
 * Every value starts with the same 8-byte header: an atomic reference count,
 * the type and a few flags.  Immortal values (None, True, False, the small
 * ints) carry a count at or above MP__RC_IMMORTAL and are never changed.
 * str/bytes keep their data inline, after the header (one allocation). */
#ifndef MPROC_OBJ_INTERNAL_H
#define MPROC_OBJ_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "platform/platform.h"

struct mp_obj {
  uint32_t rc; /* accessed with __atomic builtins */
  uint8_t type;
  uint8_t flags;
  uint16_t depth; /* containers: nesting depth (saturating), else 0 */
};

#define MP__RC_IMMORTAL 0x40000000u

/* flags */
#define MP__F_BIG 0x01     /* int: arbitrary size (mp__bigint) */
#define MP__F_ASCII 0x02   /* str: all code points < 0x80 */
#define MP__F_FETCHED 0x04 /* loads: container fetched from the memo */
#define MP__F_HEIGHT 0x08  /* loads: depth verified exact (see check_heights) */
#define MP__F_POOLED 0x10  /* memory from alloc.c's pools */
#define MP__F_POOL64 0x20  /* ... of the 64-byte class */
#define MP__F_BIGMEM 0x40  /* memory from mp__big_alloc */
#define MP__F_POOL16 0x80  /* ... of the 16-byte class (neither: 32) */

#define MP__SMALL_MIN (-5)
#define MP__SMALL_MAX 1024

typedef struct mp__int {
  mp_obj h;
  int64_t v;
} mp__int;

/* An int that does not fit int64: minimal little-endian two's complement
 * (n >= 9). */
typedef struct mp__bigint {
  mp_obj h;
  size_t n;
  uint8_t le[];
} mp__bigint;

typedef struct mp__float {
  mp_obj h;
  double v;
} mp__float;

typedef struct mp__str {
  mp_obj h;
  uint64_t hash; /* 0: not computed yet (atomic, relaxed) */
  size_t len;    /* bytes */
  size_t ncp;    /* code points */
  char s[];      /* UTF-8, NUL-terminated */
} mp__str;

typedef struct mp__bytes {
  mp_obj h;
  uint64_t hash;
  size_t len;
  uint8_t d[]; /* NUL-terminated for convenience */
} mp__bytes;

typedef struct mp__bytearray {
  mp_obj h;
  size_t len, cap;
  uint8_t *d;
} mp__bytearray;

typedef struct mp__tuple {
  mp_obj h;
  size_t n;
  mp_obj *items[];
} mp__tuple;

typedef struct mp__list {
  mp_obj h;
  size_t n, cap;
  mp_obj **items;
} mp__list;

/* Insertion-ordered hash table (dict, set, frozenset): a dense array of
 * entries in insertion order, and a sparse power-of-two index of entry
 * numbers probed linearly.  A deleted entry keeps its slot with key NULL
 * until the next resize compacts the array. */
typedef struct mp__entry {
  uint64_t hash;
  mp_obj *key;
  mp_obj *value; /* NULL for sets */
} mp__entry;

typedef struct mp__table {
  size_t used;    /* live entries */
  size_t n;       /* entries in use, deleted ones included */
  size_t cap;     /* entries allocated */
  size_t mask;    /* index size - 1 (index size is a power of two) */
  /* low 32 bits: MP__IX_EMPTY, MP__IX_DUMMY or an entry number; high 32
   * bits: the top half of the entry's hash, so that a probe touches the
   * entries array only when the hashes agree */
  uint64_t *index;
  mp__entry *e;
} mp__table;

#define MP__IX_EMPTY 0xffffffffu
#define MP__IX_DUMMY 0xfffffffeu
#define MP__IX(slot) ((uint32_t)(slot))
#define MP__IX_TAG(hash) ((uint64_t)(hash) >> 32)
#define MP__IX_SLOT(n, hash) (((uint64_t)MP__IX_TAG(hash) << 32) | (uint32_t)(n))

typedef struct mp__dict {
  mp_obj h;
  mp__table t;
} mp__dict; /* also set and frozenset */

typedef struct mp__record {
  mp_obj h;
  uint8_t kind;
  /* GLOBAL */
  char *module, *name;
  /* REDUCE / NEWOBJ / NEWOBJ_EX */
  mp_obj *callable, *args, *state, *listitems, *dictitems;
  mp_obj *kwargs; /* NEWOBJ_EX only: a dict */
} mp__record;

/* The parts of an object record, in a fixed order (NULL where absent), for
 * the walkers that treat them alike (cycle checks, heights, copy, free). */
#define MP__RECORD_NPARTS 6
static inline void
mp__record_parts(const mp__record *r, mp_obj *parts[MP__RECORD_NPARTS])
{
  parts[0] = r->callable;
  parts[1] = r->args;
  parts[2] = r->kwargs;
  parts[3] = r->state;
  parts[4] = r->listitems;
  parts[5] = r->dictitems;
}

typedef struct mp__handle {
  mp_obj h;
  const mp_handle_type *type;
  void *ptr;
} mp__handle;

/* ---- helpers shared by the files of this layer ---------------------------- */

/* (the library does not link libm) */
static inline int
mp__dbl_is_int(double d)
{
  if (d != d || d - d != 0)
    return 0; /* nan, inf */
  if (__builtin_fabs(d) >= 4503599627370496.0) /* 2**52: all integers */
    return 1;
  return d == (double)(int64_t)d;
}

/* 2**e for -1022 <= e <= 1023 */
static inline double
mp__pow2(int e)
{
  uint64_t b = (uint64_t)(e + 1023) << 52;
  double d;
  memcpy(&d, &b, 8);
  return d;
}

/* A reference more.  In a single-threaded process a plain store does
 * (nothing can race it); the locked add costs ~20 cycles, which was half
 * of a pool worker's time on a map of ints. */
static inline mp_obj *
mp__newref(mp_obj *o)
{
  uint32_t rc = __atomic_load_n(&o->rc, __ATOMIC_RELAXED);
  if (rc >= MP__RC_IMMORTAL)
    return o;
  if (MP__SINGLE_THREADED())
    __atomic_store_n(&o->rc, rc + 1, __ATOMIC_RELAXED);
  else
    __atomic_fetch_add(&o->rc, 1, __ATOMIC_RELAXED);
  return o;
}

#define MP__T(o) ((mp_type)(o)->type)
#define MP__AS(type, o) ((type *)(o))

extern mp_obj mp__none_obj, mp__true_obj, mp__false_obj;
extern mp__int mp__small_ints[MP__SMALL_MAX - MP__SMALL_MIN + 1];

/* alloc.c: a new object of `size` bytes with rc 1 (NULL and MP_ENOMEM in
 * the detail), and its release (never free() an object). */
void *mp__obj_alloc(size_t size, mp_type t);
void mp__obj_dealloc(mp_obj *o);
/* The release of n objects with one look at this thread's free lists (a
 * list of a million ints is released a run at a time). */
void mp__obj_dealloc_many(mp_obj *const *objs, size_t n);
/* Up to n new objects of `size` bytes into out (rc 1, type t, the rest of
 * each the caller's to fill), with one look at this thread's free lists;
 * returns how many (fewer than n: out of memory, MP_ENOMEM set). */
size_t mp__obj_alloc_many(size_t size, mp_type t, size_t n, mp_obj **out);
/* Slab memory carved so far for the blocks of block_size bytes (16, 32 or
 * 64): for tests; 0 when the pools are off (AddressSanitizer). */
size_t mp__obj_slab_bytes(size_t block_size);

/* alloc_big.c: blocks that may be large -- a list's storage (every list's:
 * mp__list_adopt takes, and mp__list_take_items hands out, such blocks),
 * objects of MP__BIG_MIN bytes or more.  From MP__BIG_MIN on they are
 * mappings kept for reuse when freed, so that arrays made and dropped
 * again and again (a pool's map, round after round) do not fault their
 * pages in every time.  NULL on ENOMEM, with no detail set; `zero` clears
 * the block.  Any thread may free or grow any block.  64 KiB, not more:
 * glibc trims a thread arena's top on the free of a block of 128 KiB, so
 * a pool's handler taking messages of that size from malloc faulted each
 * one in again. */
#define MP__BIG_MIN ((size_t)64 << 10)
/* Freed blocks the cache keeps: at most this many, and this many bytes.  A
 * map of a million items has more than 16 blocks of a megabyte or more
 * alive at once (the chunks packed, the results received, the result
 * array); with 16 the count evicted the 8 MB result array every few maps,
 * and the next one faulted its 2,048 pages in again. */
#define MP__BIG_CACHE_N 64
#define MP__BIG_CACHE_BYTES ((size_t)64 << 20)
void *mp__big_alloc(size_t n, int zero);
void *mp__big_realloc(void *p, size_t n);
void mp__big_free(void *p);
/* Give every cached block back to the system. */
void mp__big_trim(void);
/* Bytes of freed blocks kept for reuse now: for tests. */
size_t mp__big_cached_bytes(void);
/* How long a freed block stays cached unused (10 s; tests shorten it). */
extern int64_t mp__big_decay_ns;

static inline mp_obj *
mp__int_fast(int64_t v)
{
  if (v >= MP__SMALL_MIN && v <= MP__SMALL_MAX)
    return &mp__small_ints[v - MP__SMALL_MIN].h;
  return mp_int_new(v);
}

/* ---- str (str.c), UTF-8 (utf8.c), tuple and list (seq.c) ----------------- */
/* Build a str from UTF-8 the caller has validated (ascii: all < 0x80). */
mp_obj *mp__str_new_valid(const char *s, size_t len, size_t ncp, int ascii);
/* A bytes object of len bytes left for the caller to fill (*data). */
mp_obj *mp__bytes_alloc(size_t len, uint8_t **data);
/* Validate UTF-8 (surrogates allowed); 0 and the code point count, or
 * MP_EMALFORMED with *bad set to the offset of the first bad byte. */
int mp__utf8_check(const uint8_t *s, size_t len, size_t *ncp, size_t *bad);
/* Decode one code point of valid UTF-8 at s; returns its length. */
size_t mp__utf8_decode(const uint8_t *s, uint32_t *cp);

mp_obj *mp__tuple_alloc(size_t n); /* items zeroed; caller fills them */
int mp__list_reserve(mp__list *l, size_t extra);
/* Append `item`, taking the caller's reference (no checks). */
int mp__list_push(mp__list *l, mp_obj *item);
mp_obj *mp__list_alloc(size_t cap);
/* A list that takes over `items` (from mp__big_alloc, n references; NULL entries
 * become None) with `depth` (0: worked out here, a pass over the items;
 * else the caller's max of mp__depth_above over them, and no NULL among
 * them); NULL: out of memory, the items still the caller's. */
mp_obj *mp__list_adopt(mp_obj **items, size_t n, uint16_t depth);
/* Move the items out of `list`, whose one reference the caller holds
 * (directly or through containers only it holds): *items is the array
 * (mp__big_free it) of *n references now the caller's, and the list is
 * empty.
 * MP_ETYPE (not a list), MP_EBUSY (another reference: nothing moved). */
int mp__list_take_items(mp_obj *list, mp_obj ***items, size_t *n);
void mp__set_depth_from(mp_obj *c, const mp_obj *item);
/* The depth a container holding `item` has at least. */
uint16_t mp__depth_above(const mp_obj *item);

/* ---- packed ints (packed.c): the pool's fast lane ------------------------ */
/* 1 and *v when o is a plain int (the int type, within int64), else 0. */
static inline int
mp__int_plain(const mp_obj *o, int64_t *v)
{
  if (!o || MP__T(o) != MP_T_INT || (o->flags & MP__F_BIG))
    return 0;
  *v = MP__AS(const mp__int, o)->v;
  return 1;
}
/* The n items as a bytes object of native int64s; NULL when one is not a
 * plain int (no error set) or out of memory (MP_ENOMEM set). */
mp_obj *mp__ints_pack(mp_obj *const *items, size_t n);
/* The args tuple (v,), rewriting `reuse` (a previous result of this call,
 * or NULL) when only the caller holds it and its item: a map over packed
 * ints allocates nothing per item.  Takes `reuse` in every case; NULL:
 * out of memory.
 *
 * Inline (a map's loop calls it per item) for the common case: the tuple
 * and its int held by the caller alone, v not a small int.  Nobody else
 * holds the tuple, so nobody holds its item through it; the item is
 * rewritten when nobody holds it directly either: observably the same as
 * a new (v,).  The rest (a small int, a new item or tuple) is
 * mp__args1_int_other's. */
mp_obj *mp__args1_int_other(mp_obj *reuse, int64_t v);
static inline mp_obj *
mp__args1_int(mp_obj *reuse, int64_t v)
{
  if (reuse && (v < MP__SMALL_MIN || v > MP__SMALL_MAX) &&
      MP__T(reuse) == MP_T_TUPLE && MP__AS(mp__tuple, reuse)->n == 1 &&
      __atomic_load_n(&reuse->rc, __ATOMIC_ACQUIRE) == 1) {
    mp_obj *item = MP__AS(mp__tuple, reuse)->items[0];
    if (MP__T(item) == MP_T_INT && !(item->flags & MP__F_BIG) &&
        __atomic_load_n(&item->rc, __ATOMIC_ACQUIRE) == 1) {
      MP__AS(mp__int, item)->v = v;
      return reuse;
    }
  }
  return mp__args1_int_other(reuse, v);
}
/* The data of bytes object `b` for writing, when only the caller holds it
 * (its one reference, not immortal): a worker writes a chunk's results
 * over the chunk's packed items, read just before, instead of into a
 * fresh buffer.  NULL otherwise. */
uint8_t *mp__bytes_writable(mp_obj *b);
/* The n native int64s at `packed` as int objects into out[0..n): one
 * allocator call per few hundred, not one each.  Returns how many were
 * made; fewer than n only out of memory (MP_ENOMEM set). */
size_t mp__ints_unpack(const uint8_t *packed, size_t n, mp_obj **out);

/* ---- hashing (compare.c) -------------------------------------------------- */
/* mp__siphash's domain tags: equal bytes of another kind hash apart. */
enum { MP__HASH_STR = 1, MP__HASH_BYTES = 2, MP__HASH_INT = 3, MP__HASH_GLOBAL = 4 };
uint64_t mp__siphash(const void *data, size_t len, uint64_t tag);
uint64_t mp__hash_i64(int64_t v);
/* 0 and the hash; MP_EUNHASHABLE; MP_ELIMIT (too deep). */
int mp__hash(const mp_obj *o, uint64_t *out, int depth);

/* Table operations: value NULL for sets.  _take variants take the caller's
 * references to key (and value) also on failure. */
int mp__table_set_take(mp__dict *d, mp_obj *key, mp_obj *value, int is_set);
/* Entry for key, or NULL; *rc gets 0 or an error code. */
mp__entry *mp__table_find(const mp__dict *d, const mp_obj *key, int *rc);
/* Insert with a precomputed hash, for building sets/dicts quickly. */
int mp__table_insert_hashed(mp__dict *d, mp_obj *key, mp_obj *value,
                            uint64_t hash, int is_set);
mp_obj *mp__dict_alloc(mp_type t);

/* ---- ints (int.c) --------------------------------------------------------- */
/* Normalised int from LE two's complement bytes (may return a small int). */
mp_obj *mp__int_from_le(const uint8_t *le, size_t n);
/* Minimal LE bytes of an int64 into buf (>= 8 bytes); returns the count. */
size_t mp__i64_to_le(int64_t v, uint8_t *buf);
/* Exact LE bytes of an integral double beyond int64 into buf (>= 136);
 * returns the count. */
size_t mp__double_to_le(double d, uint8_t *buf);
int mp__bigint_to_double(const mp__bigint *b, double *out);
/* Decimal text of a big int appended to buf; 0, MP_ENOMEM or MP_ELIMIT. */
int mp__bigint_decimal(const mp__bigint *b, mp__buf *buf);

/* ---- comparison (compare.c) ------------------------------------------------ */
/* Python ==; identity counts as equal when `ident` (container items). */
int mp__equal(const mp_obj *a, const mp_obj *b, int ident, int depth);

/* ---- identity maps (ptrmap.c) ---------------------------------------------
 * From a value's address to a word: deep copy's original -> copy, the
 * pickler's record -> memo index.  Zero-initialised it is empty. */
typedef struct mp__ptrmap {
  const void **key;
  uintptr_t *val;
  size_t n, mask;
} mp__ptrmap;
/* 1 and *val if key is in it, else 0. */
int mp__ptrmap_get(const mp__ptrmap *m, const void *key, uintptr_t *val);
/* Add key (not in it yet): 0 or MP_ENOMEM (detail set). */
int mp__ptrmap_put(mp__ptrmap *m, const void *key, uintptr_t val);
/* Free its storage; it is empty again. */
void mp__ptrmap_release(mp__ptrmap *m);

/* ---- repr (repr.c) -------------------------------------------------------- */
/* A walk (repr, pickle) found its path of containers, path[0..n), too
 * long for max_depth: MP_ECYCLE if a container repeats on it (the value
 * contains itself), else MP_ELIMIT; sets the detail either way. */
int mp__depth_error(const mp_obj *const *path, int n, int max_depth);
int mp__repr(const mp_obj *o, mp__buf *b, int depth, int max_depth,
             const mp_obj **path);
int mp__float_repr(double v, char *out); /* float_repr.c; out >= 32 bytes, returns length */

/* ---- compat_names.c (generated): Python 2 names of protocol 0-2 pickles,
 * mapped in place to their Python 3 names (CPython's fix_imports) */
void mp__compat_name(const char **module, const char **name);

/* ---- unicode_printable.c (generated) --------------------------------------- */
int mp__unicode_printable(uint32_t cp);
extern const char mp__unicode_version[];

/* ---- function values (func.c) ---------------------------------------------- */
/* "<function NAME>" (or "<function at FILE+0xOFF>"). */
int mp__func_repr(const mp_obj *o, mp__buf *b);
/* The function's reference (the argument of mproc.func in a pickle);
 * MP_EBADREF (detail set) for an address in no loaded object. */
int mp__func_ref(const mp_obj *o, mp__buf *b);
/* A function value from a reference; NULL with *rc MP_EBADREF (another
 * build, not a function start ...), MP_EMALFORMED or MP_ENOMEM and the
 * detail set. */
mp_obj *mp__func_from_ref(const void *data, size_t len, int *rc);

/* ---- CPython proxies on a manager's wire (pickle_dump.c, pickle_load.c) ----
 * CPython pickles a manager proxy as RebuildProxy(ProxyClass, Token,
 * serializer, kwds) and rebuilds it wherever it is loaded.  The manager
 * layer installs these hooks; they act only on a thread that has turned
 * mp__proxy_wire_on up (around a manager request or reply), so that other
 * channels keep the mproc.handle form (which carries descriptors and an
 * authkey) and a loads of untrusted bytes elsewhere never dials out.
 *   write: the plain value to pickle in place of a handle of `type`;
 *   read:  given a RebuildProxy call's arguments, the value to load in its
 *          place (*out NULL: leave the call inert); 0 or a code. */
typedef struct mp__proxy_wire {
  const mp_handle_type *type;
  int (*write)(void *ptr, mp_obj **value);
  int (*read)(const mp_obj *args, mp_obj **out);
} mp__proxy_wire;
void mp__pickle_set_proxy_wire(const mp__proxy_wire *w);

/* A pickle that lives only until it is sent (a queue put, a connection
 * send): written into this thread's scratch buffer, which is kept between
 * calls, instead of a fresh malloc.  Default options; with_fds as
 * mp_pickle_dumps_fds.  Release it with mp__pickled_release (also frees
 * fds) before this thread pickles into the scratch again: a second
 * mp__pickle_dumps_tmp before that gets a malloc'd buffer. */
/* With `in_place`, a bytes or str payload of MP__PICKLE_INPLACE_MIN bytes
 * or more is not copied into the buffer: the pickle is then the buffer
 * with each such payload inserted at its offset (segs), total bytes in
 * all, and only mp__pickled_copy writes it out -- a queue put copies a
 * big payload once, into the ring, not twice.  The payloads stay the
 * object's: keep it alive and unchanged until the copy. */
#define MP__PICKLE_INPLACE_MIN ((size_t)64 << 10)
typedef struct mp__pickle_seg {
  size_t at; /* offset in data where the payload goes */
  const void *ptr;
  size_t len;
} mp__pickle_seg;
typedef struct mp__pickled {
  const void *data;
  size_t len; /* bytes at data */
  size_t total; /* bytes of the pickle: len plus the segments' */
  int *fds;
  size_t nfds;
  mp__pickle_seg *segs;
  size_t nsegs;
  int scratch; /* data is the thread's scratch buffer */
} mp__pickled;
int mp__pickle_dumps_tmp(const mp_obj *o, int with_fds, int in_place,
                         mp__pickled *out);
/* Write the whole pickle (total bytes) to dst. */
void mp__pickled_copy(const mp__pickled *p, void *dst);
void mp__pickled_release(mp__pickled *p);
/* mp_pickle_loads_fds of the len bytes at `src`, memory another process
 * may write while this runs (a queue's ring): each byte of src is read
 * once, into `scratch` (len bytes, the caller's) as the parse reaches it,
 * or -- a large bytes payload -- straight into its object, so a writer
 * can change what the value holds but not what the parser saw. */
int mp__pickle_loads_shared(const void *src, size_t len, void *scratch,
                            const mp_pickle_opts *opts, int *fds,
                            size_t nfds, mp_obj **out);
/* Its read-ahead (bytes copied into scratch past what the parse needs)
 * and the least part of a bytes payload not yet read ahead that is copied
 * straight: tests and the fuzzer make them small. */
extern size_t mp__pickle_fill_ahead, mp__pickle_direct_min;
extern const mp__proxy_wire *mp__proxy_wire_hooks;
extern _Thread_local int mp__proxy_wire_on;

/* Releases every reference held by a value of type t and frees it. */
void mp__obj_destroy(mp_obj *o);

/* A reference less; 1 when it was the last (the caller destroys). */
static inline int
mp__unref_to_zero(mp_obj *c)
{
  if (!c)
    return 0;
  uint32_t rc = __atomic_load_n(&c->rc, __ATOMIC_ACQUIRE);
  if (rc >= MP__RC_IMMORTAL)
    return 0;
  /* The common decode-then-free case: we hold the only reference, nobody
   * else can take one, so no atomic read-modify-write is needed. */
  if (rc == 1)
    return 1;
  if (MP__SINGLE_THREADED()) { /* see mp__newref */
    __atomic_store_n(&c->rc, rc - 1, __ATOMIC_RELAXED);
    return 0;
  }
  return __atomic_sub_fetch(&c->rc, 1, __ATOMIC_ACQ_REL) == 0;
}

/* mp_obj_free, inlined into the library's per-item loops (a call to the
 * public name goes through the PLT). */
static inline void
mp__release(mp_obj *o)
{
  if (mp__unref_to_zero(o))
    mp__obj_destroy(o);
}

/* Depth used by recursive operations (repr, equal, hash, copy) */
#define MP__MAX_RECURSION MP_PICKLE_DEFAULT_MAX_DEPTH
/* Upper bound for a caller-set max_depth (C stack safety) */
#define MP__DEPTH_CAP 20000

#endif
