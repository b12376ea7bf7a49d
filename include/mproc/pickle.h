/* SPDX-License-Identifier: MIT */
/* The pickle codec: mp_obj <-> bytes CPython's pickle reads and writes.
 *
 * mp_pickle_dumps writes the data subset of pickle protocols 2-5 that
 * CPython 3.8+ loads to an equal value.  By default it writes protocol 4
 * (CPython's default through 3.13), or 5 when the value holds a bytearray
 * (BYTEARRAY8); 2, 3, 4 or 5 may be asked for.  It writes no FRAME, and a
 * memo only for object records: a sub-value that appears twice is written
 * twice, except an object record (equal only to itself, see obj.h), which
 * is written once and fetched from the memo after, so that it loads as one
 * object again, in CPython as in mproc.
 *
 * mp_pickle_loads reads every pickle CPython writes for the value model's
 * types at protocols 2-5 (frames, memo, all int/str/bytes/container opcodes,
 * the protocol-2/3 spellings of bytes, bytearray, set and frozenset as calls
 * to _codecs.encode, builtins.bytearray, builtins.set, ... and their
 * __builtin__ names).  Any other class or function reference, and any object
 * built from one (REDUCE, NEWOBJ, NEWOBJ_EX), becomes an inert record (see
 * obj.h) that dumps writes back with the same meaning (NEWOBJ_EX, which
 * protocols 2 and 3 lack, as copyreg.__newobj_ex__(cls, args, kwargs)
 * there; loads reads that back as NEWOBJ_EX).  NOTHING IS EVER IMPORTED OR
 * CALLED: loading a hostile pickle is safe.  The one reference resolved is
 * mproc.func, a function value (obj.h): to a function already loaded, of
 * the same build, where a function starts -- or MP_EBADREF; never loaded,
 * never called.
 *
 * Protocol 0-2 pickles name Python 2 modules and classes (CPython 3 itself
 * writes int as __builtin__.long at protocol 2); they are mapped to their
 * Python 3 names as CPython's fix_imports does.
 *
 * Limits: nesting depth, input size and (for dumps) output size are bounded
 * (see mp_pickle_opts); memory use and time are linear in the input.  The
 * depth bound holds for the value loads returns however the pickle linked
 * it (a container fetched from the memo and added to after others hold it
 * included).  Truncated,
 * corrupt or hostile input returns MP_EMALFORMED (with the offset and the
 * reason in mp_errdetail()), MP_ENOTSUP for a PROTO above 5, MP_ELIMIT past
 * a limit, MP_ECYCLE for a structure that contains itself (legal in Python,
 * refused here, the moment it would be made; the value is never built) and
 * MP_EOVERFLOW never: big ints are kept exactly.
 *
 * Shared sub-values: loads gives every memo reference the same refcounted
 * object (one Python object is one record); dumps writes a shared sub-value
 * other than an object record once per use, so a value whose sharing
 * doubles at every level encodes to an exponentially larger pickle (bounded
 * by max_size). */
#ifndef MPROC_PICKLE_H
#define MPROC_PICKLE_H

#include <stddef.h>

#include "obj.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MP_PICKLE_DEFAULT_MAX_DEPTH 1000
/* dumps refuses output above this size unless told otherwise (1 TiB: in
 * practice, memory is the limit). */
#define MP_PICKLE_DEFAULT_MAX_SIZE ((size_t)1 << 40)

typedef struct mp_pickle_opts {
  /* dumps: 2, 3, 4 or 5; 0 means the default (4, or 5 for a bytearray).
   * Protocols 2 and 3 write bytearray, set and frozenset the way CPython
   * does at those protocols. */
  int protocol;
  /* Maximum nesting of containers: a container is one deeper than the
   * deepest container it holds, a record's parts count as its items, an
   * empty container or a class reference is 1 (0: MP_PICKLE_DEFAULT_MAX_DEPTH;
   * values above 20000 count as 20000, to keep the C stack safe). */
  int max_depth;
  /* loads: refuse input longer than this; dumps: refuse to produce more
   * (0: MP_PICKLE_DEFAULT_MAX_SIZE). */
  size_t max_size;
} mp_pickle_opts;

/* Encode `o`.  On success *out is a buffer of *len bytes to release with
 * mp_free().  MP_ENOTSUP for a value holding a handle (use the _fds variant
 * over a channel that carries descriptors), MP_ECYCLE, MP_ELIMIT, MP_ENOMEM,
 * MP_EINVAL (NULL arguments, bad protocol). */
MP_EXTERN int mp_pickle_dumps(const mp_obj *o, const mp_pickle_opts *opts,
                              void **out, size_t *len);

/* Decode one pickle: exactly `len` bytes that end with STOP (trailing bytes
 * are MP_EMALFORMED).  On success *out is a new reference. */
MP_EXTERN int mp_pickle_loads(const void *data, size_t len,
                              const mp_pickle_opts *opts, mp_obj **out);

/* Handle-carrying variants, for channels that pass file descriptors
 * (AF_UNIX, inheritance).  dumps_fds encodes each handle through its type's
 * `reduce` and returns the fds to send in *fds (a malloc'd array to release
 * with mp_free(), NULL when there are none; each fd appears once however
 * many handles use it; the fds themselves stay owned by their objects).
 * A handle is written as mproc.handle(type name, state, (fd index, ...)):
 * STACK_GLOBAL 'mproc' 'handle' (GLOBAL at protocols 2/3), the 3-tuple,
 * REDUCE.  At most 64 fds per handle (MP_ELIMIT).
 *
 * loads_fds takes ownership of the `nfds` received fds, also when it fails:
 * each is given to the `rebuild` of the handle that uses it (a second
 * handle on the same fd gets a dup), any left over is closed, and on
 * failure every fd is closed exactly once (rebuilt handles are released).
 * Errors beyond loads': MP_ENOTFOUND for a handle type not registered in
 * this process, MP_EMALFORMED for a bad fd index, and whatever `rebuild`
 * returns.  Plain mp_pickle_loads leaves an mproc.handle inert (a record);
 * plain mp_pickle_dumps of a value holding a handle returns MP_ENOTSUP. */
MP_EXTERN int mp_pickle_dumps_fds(const mp_obj *o, const mp_pickle_opts *opts,
                                  void **out, size_t *len, int **fds,
                                  size_t *nfds);
MP_EXTERN int mp_pickle_loads_fds(const void *data, size_t len,
                                  const mp_pickle_opts *opts, int *fds,
                                  size_t nfds, mp_obj **out);

#ifdef __cplusplus
}
#endif
#endif
