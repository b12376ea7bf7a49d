/* SPDX-License-Identifier: MIT */
/* Unpacking argument tuples into C variables: Python's PyArg_ParseTuple,
 * for the tuples mproc hands a target, a task or a message.
 *
 *     static int
 *     worker(mp_obj *args)    // (conn, lock, n[, scale])
 *     {
 *       mp_conn *conn;
 *       mp_lock *lock;
 *       int n;
 *       double scale = 1.0;
 *       int rc = mp_args_parse(args, "{Connection}{Lock}i|d:worker", &conn,
 *                              &lock, &n, &scale);
 *       if (rc)
 *         return 1;    // mp_errdetail(): "worker() argument 3 must be int, not str"
 *       ...
 *
 * Every pointer stored is borrowed from `args` (valid while it lives; take
 * a reference -- mp_obj_ref, mp_conn_ref ... -- to keep one longer).  A
 * NULL variable pointer checks the item without storing it.
 *
 * Format letters, each taking the next item of `args` and the C variables
 * named after it (pointers to them, in order):
 *   i      int *           an int (a bool counts, as in Python) that fits
 *                          an int; MP_EOVERFLOW if it does not
 *   L      int64_t *       an int that fits int64_t (MP_EOVERFLOW)
 *   d      double *        a float, or an int converted as float(x) does
 *   p      int *           any value's truth (Python's bool(x)): 0 or 1
 *   s      const char **   a str: its UTF-8, NUL-terminated; one holding a
 *                          NUL is refused (MP_EINVAL), as Python does
 *   s#     const char **, size_t *   a str: its UTF-8 and byte length
 *   z, z#  as s, s#, and None gives NULL (and length 0)
 *   y      const void **, size_t *   bytes or bytearray: data and length (a
 *                          bytearray's data moves when it is resized)
 *   O      mp_obj **       any value
 *   F      mp_fn *         a function value (obj.h: mp_func_new)
 *   {Kind} T **            a handle of that kind, as the pointer its type
 *                          wraps.  Kind is looked up when the call runs: a
 *                          kind registered with mp_arg_kind_register, else
 *                          the handle type "mproc.Kind" (or "Kind" itself
 *                          when it has a dot).  So the library's own
 *                          handle types need no entry here:
 *                            {Connection}   mp_conn *
 *                            {Lock}         mp_lock * (a Lock or an RLock:
 *                                           one C type, as in sync.h)
 *                            {RLock}        mp_rlock * (an RLock only)
 *                            {Semaphore}    mp_sem * (bounded or not)
 *                            {Condition}    mp_cond *
 *                            {Event}        mp_event *
 *                            {Barrier}      mp_barrier *
 *                            {Value}        mp_value *
 *                            {Array}        mp_array *
 *                            {SharedMemory} mp_shm *
 *                            {Queue}        mp_queue * (queue.h)
 *                          and any program's own registered type works
 *                          the same way ({myapp.Thing}).
 *   H      const mp_handle_type *, void **   a handle of the given type
 *                          (the type comes first, as in PyArg's "O!")
 *   |      the items after it are optional: when `args` ends early, their
 *          variables are left as they were (give them defaults)
 *   :name  at the end: the function's name, for the error details
 * Whitespace between letters is ignored.
 *
 * Returns 0, or (nothing written then -- every item is checked before any
 * variable is):
 *   MP_EINDEX    too few or too many items ("worker() takes at least 3
 *                arguments (2 given)")
 *   MP_ETYPE     an item of the wrong type ("worker() argument 3 must be
 *                int, not str"; handles name their kind and type: "argument
 *                2 must be Lock, not mproc.Event")
 *   MP_EOVERFLOW an int that does not fit
 *   MP_EINVAL    NULL args or format, args not a tuple or list, a bad
 *                format, a kind that names no registered kind or handle
 *                type, a NUL inside an 's' str
 * with the detail in mp_errdetail().  Positions count from 1, as Python's
 * messages do. */
#ifndef MPROC_ARGS_H
#define MPROC_ARGS_H

#include <stdarg.h>

#include "mproc/version.h"
#include "obj.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Unpack the tuple `args` by `format` (the letters above) into the
 * variables that follow; nothing is written unless every item matches.
 * 0, or MP_EINDEX / MP_ETYPE / MP_EOVERFLOW / MP_EINVAL with a detail that
 * names the argument's position and the type expected.  _vparse: the same
 * with a va_list. */
MP_EXTERN int mp_args_parse(const mp_obj *args, const char *format, ...);
MP_EXTERN int mp_args_vparse(const mp_obj *args, const char *format,
                             va_list ap);

/* A kind for {Kind}: a handle type plus an optional check, for kinds that
 * share a type (RLock is a kind of "mproc.Lock" whose check is
 * mp_lock_is_recursive).  `check`, when not NULL, gets the handle's
 * pointer and returns nonzero if it is of this kind. */
typedef struct mp_arg_kind {
  const char *name;        /* the word between braces, e.g. "RLock" */
  const char *handle_type; /* a registered handle type, e.g. "mproc.Lock" */
  int (*check)(const void *ptr);
} mp_arg_kind;

/* Register a kind (the struct must outlive its use: static storage).
 * Idempotent for the same pointer; MP_EEXIST for another kind of the same
 * name; MP_EINVAL for a NULL or empty name or handle type. */
MP_EXTERN int mp_arg_kind_register(const mp_arg_kind *kind);

#ifdef __cplusplus
}
#endif
#endif
