/* SPDX-License-Identifier: MIT */
/* mp_obj: the value model -- what a Python program would pickle.
 *
 * A value is a tree (or a DAG: a sub-value may be shared) of:
 *   none, bool, int, float, str, bytes, bytearray,
 *   tuple, list, dict, set, frozenset,
 *   record  -- anything else a pickle may name, kept as inert data: a class
 *              or function reference (module, name), or an object built from
 *              one (callable, args, state, appended items, set items).
 *              Nothing is ever imported, resolved or called.
 *   handle  -- a live OS-backed object (Connection, Lock, Queue, ...) that
 *              later layers define; crosses processes as file descriptors.
 *   function -- a C function pointer (mp_func_new); crosses processes as a
 *              reference to the same function of the same build.
 *
 * Ownership (one rule).  Every function that returns `mp_obj *` returns a new
 * reference, which the caller releases with mp_obj_free().  Values are
 * reference counted, so a sub-value may sit in several containers; a
 * function that borrows says so ("borrowed": valid while its container
 * lives).  Functions whose name ends in _take take ownership of the values
 * passed to them, *also when they fail*, so a nested value is built in one
 * expression without leaks:
 *
 *     mp_obj *v = MP_LIST(mp_float_new(2.25), mp_none(), mp_str_new("junk"),
 *                         mp_global_new("builtins", "float"));
 *     if (!v) ... // out of memory (or a bad item) somewhere inside
 *
 * A constructor returns NULL on failure (out of memory; invalid input such as
 * bad UTF-8, with the reason in mp_errdetail()); a _take function given a
 * NULL item fails and releases the other items, so NULL propagates outward.
 * Its detail then names the NULL item ("list item 1 of 4 is NULL"), which
 * replaces the reason the failing constructor gave: check a constructor's
 * result on its own where that reason matters.
 *
 * None, True, False and the small ints (-5..1024) are immortal:
 * mp_obj_free() on them is a harmless no-op, as for every other value whose
 * count is not yet zero.  Releasing is iterative: a deeply nested value
 * does not recurse on the C stack.
 *
 * Memory: values of up to 64 bytes (ints, floats, short str, empty
 * containers' headers) come from per-thread pools refilled from 64 KiB
 * slabs; pool memory is reused but not returned to the system (at most
 * 128 MiB per size class, then plain malloc).
 *
 * Threads: reference counts are atomic, so values that nobody mutates may be
 * shared and released from several threads.  Mutating a list, dict, set or
 * bytearray while another thread reads it needs the caller's own lock.
 *
 * Equality and hashing follow Python: 1 == 1.0 == True (the same dict key),
 * containers compare by content, nan != nan (but a container holding the
 * same nan object equals itself, as in Python).  Records follow Python's
 * defaults for what they stand for:
 *   - a class or function reference (MP_RECORD_GLOBAL; a singleton in
 *     Python) equals every reference to the same module and name;
 *   - an object (REDUCE, NEWOBJ, NEWOBJ_EX: anything built from a class
 *     reference) is equal only to itself and hashes by identity, as
 *     object.__eq__/__hash__ do.  Its content is never compared: the
 *     codec cannot know the class's own __eq__, and only identity keeps
 *     every entry of a dict or set that had several instances as keys.
 *     So each decoded object is its own key ({C(): 1, C(): 2} from Python
 *     loads with both entries), the same Python object referenced twice in
 *     one pickle is one record (the memo), and two records a C program
 *     builds with equal content are two keys.  An object record is hashable
 *     even when its state holds a list or dict.
 * mp_obj_equal_content compares objects by their parts instead (the check
 * that a value survived a round trip).  Hashes are salted per process (like
 * Python's str hashing) so hostile keys cannot force collisions; never
 * store a hash across processes.
 *
 * Cycles: a container that contains itself cannot be pickled, printed or
 * compared; mp_list_append() and friends refuse to make a container hold
 * itself directly, and the codec refuses cycles it meets (MP_ECYCLE). */
#ifndef MPROC_OBJ_H
#define MPROC_OBJ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_obj mp_obj;

typedef enum mp_type {
  MP_T_NONE = 0,
  MP_T_BOOL,
  MP_T_INT,
  MP_T_FLOAT,
  MP_T_STR,
  MP_T_BYTES,
  MP_T_BYTEARRAY,
  MP_T_TUPLE,
  MP_T_LIST,
  MP_T_DICT,
  MP_T_SET,
  MP_T_FROZENSET,
  MP_T_RECORD,
  MP_T_HANDLE,
  MP_T_FUNC /* a C function (mp_func_new) */
} mp_type;

/* ---- generic ------------------------------------------------------------ */

/* The type of `o` (MP_T_NONE for NULL). */
MP_EXTERN mp_type mp_obj_type(const mp_obj *o);
/* Python's name of a type: "NoneType", "bool", "int", "float", "str",
 * "bytes", "bytearray", "tuple", "list", "dict", "set", "frozenset",
 * "record", "handle", "function". */
MP_EXTERN const char *mp_type_name(mp_type t);

/* Take another reference to `o` and return it (NULL passes through). */
MP_EXTERN mp_obj *mp_obj_ref(mp_obj *o);
/* Release a reference; the value is destroyed when the last one goes.
 * NULL is ignored. */
MP_EXTERN void mp_obj_free(mp_obj *o);

/* Python's ==, with records as described above (an object record equals
 * itself only).  Never fails: values that cannot be compared are unequal. */
MP_EXTERN int mp_obj_equal(const mp_obj *a, const mp_obj *b);
/* Like mp_obj_equal, except that object records compare by their parts
 * (kind, callable, args, kwargs, state, list and dict items, each compared
 * this same way) instead of by identity: 1 when `b` is what a pickle round
 * trip (CPython's or mproc's), a connection or mp_obj_copy makes of `a`.
 * Dicts and sets whose keys hold object records are matched in order
 * first, then (if that fails) by searching, which is quadratic in their
 * size.  Never fails. */
MP_EXTERN int mp_obj_equal_content(const mp_obj *a, const mp_obj *b);
/* Python's hash() contract (equal values, equal hashes).  Returns 0, or
 * MP_EUNHASHABLE for list, dict, set, bytearray and anything containing one
 * (an object record is hashable whatever it holds: it hashes by identity);
 * MP_EINVAL for NULL arguments. */
MP_EXTERN int mp_obj_hash(const mp_obj *o, uint64_t *out);
/* A deep copy: new containers all the way down (shared sub-values stay shared
 * in the copy), dict keys and set members included; strings and other
 * immutable leaves, class references and handles are shared.  Object
 * records are copied too, so, as with Python's copy.deepcopy of an object
 * without __eq__, the copy of a value holding one is not mp_obj_equal to
 * the original (a copied record is a new object: a new key), but it is
 * mp_obj_equal_content.  NULL on failure. */
MP_EXTERN mp_obj *mp_obj_copy(const mp_obj *o);

/* repr(o), exactly as Python prints it: "{0.25: None, 1: '1', '2': 2}",
 * "b'thank you'", "(1,)", "frozenset({1})", "<class 'float'>" ...  (A set
 * prints its elements in insertion order; Python's order follows its hash.)
 * Returns a NUL-terminated string to release with mp_free(), or NULL (out of
 * memory, a cycle, nesting deeper than the codec's default limit, or an int
 * of more than about 43,000 digits -- Python itself refuses 4,300 -- with
 * the reason in mp_errdetail()).  Records print as Python would print the
 * object where that is knowable: "<class 'mod.Name'>" for a reference
 * ("<class 'float'>" for builtins), "Name(arg, ...)" for an object built by
 * a call with no state (None and {} count as none), no keyword arguments
 * ({} counts as none) and no items, so exceptions read right; any other
 * object prints as
 * "<mod.Name object: args=(...), kwargs={...}, state=..., listitems=[...],
 * dictitems=[(k, v), ...]>" with the parts it has.  A handle prints as
 * "<TypeName object at 0x...>".  Strings escape what Python's
 * str.isprintable() calls non-printable, by the Unicode 15.1 table (see
 * tools/gen_unicode_printable.py). */
MP_EXTERN char *mp_obj_repr(const mp_obj *o);
/* Like mp_obj_repr, into `buf` of `cap` bytes (always NUL-terminated when
 * cap > 0).  Returns the full length the repr needs (not counting the NUL),
 * or a negative code. */
MP_EXTERN int64_t mp_obj_repr_buf(const mp_obj *o, char *buf, size_t cap);

/* str(o), as Python's: the text itself for a str (its UTF-8; a NUL inside
 * it ends the C string early: mp_str_get gives the length), repr(o) for
 * anything else.  A NUL-terminated string to release with mp_free(), or
 * NULL as mp_obj_repr. */
MP_EXTERN char *mp_obj_str(const mp_obj *o);
/* print(o, file=f): str(o) and a newline, written to `f` (NULL: stdout)
 * in one stdio call, so lines of several threads do not mix.  Not flushed
 * (Python's print does not flush either).  0, what mp_obj_str fails with,
 * or -errno if the write fails. */
MP_EXTERN int mp_obj_print(const mp_obj *o, FILE *f);

/* Release memory the library returned (repr strings, pickles). */
MP_EXTERN void mp_free(void *p);

/* Number of items (str: code points; bytes/bytearray: bytes; containers:
 * items).  Returns 0 and sets *out, or MP_ETYPE for scalars. */
MP_EXTERN int mp_obj_len(const mp_obj *o, size_t *out);

/* ---- scalars ------------------------------------------------------------ */

/* None, True/False (immortal singletons: never fail), and ints from C
 * integers (NULL only when out of memory; small ints are immortal). */
MP_EXTERN mp_obj *mp_none(void);
MP_EXTERN mp_obj *mp_bool_new(int v);
MP_EXTERN mp_obj *mp_int_new(int64_t v);
MP_EXTERN mp_obj *mp_uint_new(uint64_t v);
/* An int of any size from `n` bytes of little-endian two's complement (the
 * pickle LONG layout).  n == 0 means 0. */
MP_EXTERN mp_obj *mp_int_from_bytes(const void *le, size_t n);
MP_EXTERN mp_obj *mp_float_new(double v);

/* 0 and the value; MP_ETYPE if `o` is not an int (bool counts as int, as in
 * Python); MP_EOVERFLOW if the int does not fit (never truncated). */
MP_EXTERN int mp_int_get(const mp_obj *o, int64_t *out);
MP_EXTERN int mp_uint_get(const mp_obj *o, uint64_t *out);
/* The int as minimal little-endian two's complement (the LONG1 payload; 0
 * is zero bytes).  *le is borrowed from `o` for big ints or written into
 * `scratch` (16 bytes) for small ones.  MP_ETYPE if not an int. */
MP_EXTERN int mp_int_bytes(const mp_obj *o, uint8_t scratch[16],
                           const uint8_t **le, size_t *n);
/* 0 and the value of a float, or of an int/bool converted (as float(x));
 * MP_EOVERFLOW for an int too large for a double, MP_ETYPE otherwise. */
MP_EXTERN int mp_float_get(const mp_obj *o, double *out);
/* 0 and 0/1 for a bool; MP_ETYPE otherwise. */
MP_EXTERN int mp_bool_get(const mp_obj *o, int *out);
/* Python truthiness (None, False, 0, 0.0, empty: false). */
MP_EXTERN int mp_obj_truthy(const mp_obj *o);

/* ---- str, bytes, bytearray ---------------------------------------------- */

/* A str from UTF-8.  Lone surrogates (U+D800..DFFF encoded in 3 bytes, as
 * CPython's 'surrogatepass' writes them) are accepted, since Python strs can
 * hold them; overlong forms, bytes that are not UTF-8 and code points above
 * U+10FFFF are refused (NULL, MP_EMALFORMED in mp_errdetail()). */
MP_EXTERN mp_obj *mp_str_new(const char *nul_terminated);
MP_EXTERN mp_obj *mp_str_new_len(const char *utf8, size_t len);
/* printf into a new str (the result must be valid UTF-8). */
MP_EXTERN mp_obj *mp_str_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
MP_EXTERN mp_obj *mp_bytes_new(const void *data, size_t len);
MP_EXTERN mp_obj *mp_bytearray_new(const void *data, size_t len);

/* Borrowed view of a str's UTF-8 (NUL-terminated) and its byte length. */
MP_EXTERN int mp_str_get(const mp_obj *o, const char **utf8, size_t *len);
/* Borrowed view of bytes or bytearray data (a bytearray's pointer is valid
 * until it is resized). */
MP_EXTERN int mp_bytes_get(const mp_obj *o, const void **data, size_t *len);
/* Writable view of a bytearray's data. */
MP_EXTERN int mp_bytearray_data(mp_obj *o, void **data, size_t *len);
MP_EXTERN int mp_bytearray_resize(mp_obj *o, size_t len);

/* ---- tuple and list ----------------------------------------------------- */

/* A tuple / list of `n` items, taking ownership of them (see above). */
MP_EXTERN mp_obj *mp_tuple_take(size_t n, ...);
MP_EXTERN mp_obj *mp_list_take(size_t n, ...);
/* From an array of `n` borrowed items (each gets a new reference). */
MP_EXTERN mp_obj *mp_tuple_from(size_t n, mp_obj *const *items);
MP_EXTERN mp_obj *mp_list_from(size_t n, mp_obj *const *items);
MP_EXTERN mp_obj *mp_list_new(void);

/* Borrowed item `i` of a tuple or list (negative i counts from the end, as
 * in Python); NULL if out of range or not a sequence. */
MP_EXTERN mp_obj *mp_seq_item(const mp_obj *seq, int64_t i);
/* Borrowed item array and count of a tuple or list (valid until the list is
 * modified).  MP_ETYPE otherwise. */
MP_EXTERN int mp_seq_items(const mp_obj *seq, mp_obj *const **items,
                           size_t *n);

/* list.append: the list takes a new reference to `item` (_take: the
 * caller's reference).  MP_ETYPE if not a list, MP_ECYCLE if item is the
 * list itself, MP_ENOMEM. */
MP_EXTERN int mp_list_append(mp_obj *list, mp_obj *item);
MP_EXTERN int mp_list_append_take(mp_obj *list, mp_obj *item);
/* list[i] = item (negative i from the end); MP_EINDEX when out of range. */
MP_EXTERN int mp_list_set(mp_obj *list, int64_t i, mp_obj *item);
/* list.pop(i): the caller receives the item's reference in *out (NULL out:
 * released).  MP_EINDEX when out of range or empty. */
MP_EXTERN int mp_list_pop(mp_obj *list, int64_t i, mp_obj **out);

/* ---- dict --------------------------------------------------------------- */

/* dicts keep insertion order; keys may be any hashable value. */
MP_EXTERN mp_obj *mp_dict_new(void);
/* A dict from `npairs` key, value pairs (2*npairs arguments), taking
 * ownership of them. */
MP_EXTERN mp_obj *mp_dict_take(size_t npairs, ...);
/* d[key] = value, the dict taking new references (_take: the caller's).
 * MP_EUNHASHABLE for an unhashable key, MP_ETYPE if d is not a dict,
 * MP_ECYCLE if value is d itself. */
MP_EXTERN int mp_dict_set(mp_obj *d, mp_obj *key, mp_obj *value);
MP_EXTERN int mp_dict_set_take(mp_obj *d, mp_obj *key, mp_obj *value);
/* Borrowed d[key], or NULL when absent (or unhashable, or not a dict). */
MP_EXTERN mp_obj *mp_dict_get(const mp_obj *d, const mp_obj *key);
MP_EXTERN mp_obj *mp_dict_get_str(const mp_obj *d, const char *key);
/* d[key] for a str key of `len` bytes of UTF-8 (NULs allowed; NULL key
 * only with len 0). */
MP_EXTERN mp_obj *mp_dict_get_strn(const mp_obj *d, const char *key,
                                   size_t len);
/* del d[key]: 0, MP_ENOTFOUND, MP_EUNHASHABLE or MP_ETYPE. */
MP_EXTERN int mp_dict_del(mp_obj *d, const mp_obj *key);
/* Iterate in insertion order: start with *pos = 0; returns 1 and borrowed
 * key/value (either pointer may be NULL) while items remain, then 0.  The
 * dict must not change during the iteration. */
MP_EXTERN int mp_dict_next(const mp_obj *d, size_t *pos, mp_obj **key,
                           mp_obj **value);

/* ---- set and frozenset -------------------------------------------------- */

/* An empty set / frozenset (NULL when out of memory). */
MP_EXTERN mp_obj *mp_set_new(void);
MP_EXTERN mp_obj *mp_frozenset_new(void);
/* A set / frozenset of `n` items, taking ownership (duplicates collapse). */
MP_EXTERN mp_obj *mp_set_take(size_t n, ...);
MP_EXTERN mp_obj *mp_frozenset_take(size_t n, ...);
/* set.add (a frozenset can be filled this way only while the caller holds
 * the one reference, i.e. while building it).  MP_EUNHASHABLE, MP_ETYPE. */
MP_EXTERN int mp_set_add(mp_obj *set, mp_obj *item);
MP_EXTERN int mp_set_add_take(mp_obj *set, mp_obj *item);
/* 1 if present, 0 if not, or a negative code. */
MP_EXTERN int mp_set_contains(const mp_obj *set, const mp_obj *item);
/* 0, MP_ENOTFOUND, MP_EUNHASHABLE, MP_ETYPE. */
MP_EXTERN int mp_set_discard(mp_obj *set, const mp_obj *item);
/* Iterate like mp_dict_next. */
MP_EXTERN int mp_set_next(const mp_obj *set, size_t *pos, mp_obj **item);

/* ---- records: inert references and objects ------------------------------ */

typedef enum mp_record_kind {
  MP_RECORD_GLOBAL = 1, /* a class or function reference: module + name */
  MP_RECORD_REDUCE,     /* callable(*args), as pickle's REDUCE */
  MP_RECORD_NEWOBJ,     /* cls.__new__(cls, *args), as pickle's NEWOBJ */
  MP_RECORD_NEWOBJ_EX   /* cls.__new__(cls, *args, **kwargs): NEWOBJ_EX */
} mp_record_kind;

/* A reference to `module`.`name` ("builtins", "float").  The Python 2
 * module names "__builtin__" and "exceptions" are stored as "builtins". */
MP_EXTERN mp_obj *mp_global_new(const char *module, const char *name);
/* An object made by calling `callable` (usually a global) with the tuple
 * `args` (kind MP_RECORD_REDUCE or MP_RECORD_NEWOBJ); takes ownership of
 * both. */
MP_EXTERN mp_obj *mp_record_take(mp_record_kind kind, mp_obj *callable,
                                 mp_obj *args);
/* An object made by cls.__new__(cls, *args, **kwargs): what CPython writes
 * at protocol 4+ (NEWOBJ_EX) for a class whose __getnewargs_ex__ returns
 * keyword arguments.  `args` a tuple, `kwargs` a dict; takes ownership of
 * all three (MP_ETYPE in the detail for other types). */
MP_EXTERN mp_obj *mp_record_newobj_ex_take(mp_obj *cls, mp_obj *args,
                                           mp_obj *kwargs);

/* The kind of a record: 0 and *out, MP_ETYPE if `o` is not a record,
 * MP_EINVAL for NULL arguments. */
MP_EXTERN int mp_record_kind_of(const mp_obj *o, mp_record_kind *out);
/* Borrowed module and name of a MP_RECORD_GLOBAL. */
MP_EXTERN int mp_global_get(const mp_obj *o, const char **module,
                            const char **name);
/* Borrowed parts of an object record (REDUCE/NEWOBJ/NEWOBJ_EX): its
 * callable (the class for NEWOBJ and NEWOBJ_EX), args, state (pickle's
 * BUILD argument; NULL if none), list items (a list appended to the object;
 * NULL if none) and dict items (a list of (key, value) tuples set on it;
 * NULL if none).  Any pointer may be NULL.  MP_ETYPE for a class reference
 * or a value that is not a record. */
MP_EXTERN int mp_record_get(const mp_obj *o, mp_obj **callable,
                            mp_obj **args, mp_obj **state,
                            mp_obj **listitems, mp_obj **dictitems);
/* Borrowed keyword arguments of a NEWOBJ_EX record (a dict), NULL for the
 * other object kinds; MP_ETYPE as mp_record_get. */
MP_EXTERN int mp_record_kwargs(const mp_obj *o, mp_obj **kwargs);
/* Set (replace) the state / append a list item / a dict item; _take. */
MP_EXTERN int mp_record_set_state_take(mp_obj *o, mp_obj *state);
MP_EXTERN int mp_record_append_take(mp_obj *o, mp_obj *item);
MP_EXTERN int mp_record_setitem_take(mp_obj *o, mp_obj *key, mp_obj *value);

/* ---- handles ------------------------------------------------------------
 * A handle wraps a live object of a later layer (a Connection, a Lock...).
 * Its type describes how it is released and how it crosses a process
 * boundary: `reduce` turns it into plain data plus file descriptors, and
 * `rebuild` makes a working object from them in the receiving process.
 * Types are registered by name so a receiver can find `rebuild`. */
typedef struct mp_handle_type {
  const char *name; /* unique, e.g. "mproc.Connection" */
  /* Release the reference the handle value held on `ptr`. */
  void (*release)(void *ptr);
  /* Describe `ptr` for another process: set *state to a plain value (no
   * handles) and append the fds it needs with add_fd (the fds stay owned by
   * the object; the encoder sends copies).  Returns 0 or a code. */
  int (*reduce)(void *ptr, mp_obj **state,
                int (*add_fd)(void *fdctx, int fd), void *fdctx);
  /* Build a new object from a reduced state in this process; `fds` are owned
   * by rebuild (it must close or keep each of them, also on failure). */
  int (*rebuild)(const mp_obj *state, int *fds, size_t nfds, void **out);
} mp_handle_type;

/* Register a handle type (idempotent for the same pointer; MP_EEXIST for a
 * different type of the same name).  Types must be registered in every
 * process that receives them: register them from a constructor or before
 * starting children. */
MP_EXTERN int mp_handle_register(const mp_handle_type *type);
MP_EXTERN const mp_handle_type *mp_handle_find(const char *name);

/* A value wrapping `ptr`; takes over one reference on ptr (type->release is
 * called when the value is destroyed, also if this fails). */
MP_EXTERN mp_obj *mp_handle_new(const mp_handle_type *type, void *ptr);
/* The wrapped pointer if `o` is a handle of `type` (NULL type: any), else
 * NULL. */
MP_EXTERN void *mp_handle_get(const mp_obj *o, const mp_handle_type *type);
MP_EXTERN const mp_handle_type *mp_handle_type_of(const mp_obj *o);

/* ---- function values --------------------------------------------------------
 * A C function as a value, so that a task can be (function, args) as in
 * Python -- the seeds' worker example puts (mul, (i, 7)) in a queue:
 *
 *     mp_obj *task = MP_TUPLE(MP_FUNC(mul),
 *                             MP_TUPLE(mp_int_new(i), mp_int_new(7)));
 *     ...
 *     int (*f)(int, int) = (int (*)(int, int))mp_func_get(mp_seq_item(task, 0));
 *
 * The value holds the pointer and nothing else: mproc never calls it, and
 * nothing checks that it is called with the type it had (cast it back to
 * its own type, as with dlsym).  Any function works: static ones, ones in
 * shared libraries; no registration, no -rdynamic.
 *
 * Across processes.  Fork and threading children see the same pointer.  In
 * every other case -- spawn and forkserver children, Connections (AF_UNIX
 * and TCP) between mproc processes, inside any container -- it travels as a
 * function reference, (object file, offset from its load base, build-id),
 * and the receiver gets the same function at its own load address.  A
 * receiver running another build of that object (or without it loaded)
 * gets MP_EBADREF from the decode, never a wrong address.  In a pickle a
 * function value is mproc.func(ref) -- STACK_GLOBAL 'mproc' 'func' (GLOBAL
 * at protocols 2/3), the bytes `ref`, TUPLE1, REDUCE -- which a CPython
 * peer can load inertly (an Unpickler whose find_class maps mproc.func to a
 * stand-in) and send back unchanged.  docs/function-values.md describes
 * `ref`.
 *
 * Trust.  Decoding an mproc.func (mp_pickle_loads, mp_conn_recv ...)
 * yields a function of an object already loaded in the receiver, of the
 * same build-id (file identity for an object without one), at an offset
 * inside an executable segment where a function starts according to the
 * object's symbol table, dynamic symbols or unwind index (an object that
 * has none of them is judged by its segments alone).  Decoding never loads
 * an object and never calls anything, so hostile bytes cannot run code;
 * they can hand you any function of your own program.  Calling what a peer
 * sent is your decision: treat a received function value as Python treats
 * an unpickled function, and authenticate the peer (authkey) first.  (A
 * spawn or forkserver child does load, from its trusted parent's
 * instructions, an object its args name that it has not loaded yet.)
 *
 * Equality and hashing are by address.  repr() is "<function NAME>" with
 * the symbol name when the object's symbol tables have one for it (static
 * functions included, unless the file is stripped), else
 * "<function at FILE+0xOFF>". */
typedef void (*mp_fn)(void); /* any function pointer, cast */

/* A new function value (NULL when out of memory, or fn is NULL:
 * MP_EINVAL in mp_errdetail()). */
MP_EXTERN mp_obj *mp_func_new(mp_fn fn);
/* The pointer, or NULL if `o` is not a function value. */
MP_EXTERN mp_fn mp_func_get(const mp_obj *o);
#define MP_FUNC(f) mp_func_new((mp_fn)(f))

/* ---- building values in one expression ---------------------------------- */

#define MP__NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13,   \
                   _14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24,    \
                   _25, _26, _27, _28, _29, _30, _31, _32, N, ...)           \
  N
#define MP__NARGS(...)                                                       \
  MP__NARGS_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21,    \
             20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,   \
             3, 2, 1, 0)

/* MP_TUPLE(a, b, c), MP_LIST(...), MP_SET(...), MP_FROZENSET(...): 1 to 32
 * items taken over; MP_DICT(k1, v1, k2, v2, ...): up to 16 pairs.  Empty
 * ones: mp_tuple_take(0), mp_list_new(), mp_dict_new(), mp_set_new(). */
#define MP_TUPLE(...) mp_tuple_take(MP__NARGS(__VA_ARGS__), __VA_ARGS__)
#define MP_LIST(...) mp_list_take(MP__NARGS(__VA_ARGS__), __VA_ARGS__)
#define MP_SET(...) mp_set_take(MP__NARGS(__VA_ARGS__), __VA_ARGS__)
#define MP_FROZENSET(...) mp_frozenset_take(MP__NARGS(__VA_ARGS__), __VA_ARGS__)
#define MP_DICT(...) mp_dict_take(MP__NARGS(__VA_ARGS__) / 2, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
