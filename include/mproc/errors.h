/* SPDX-License-Identifier: MIT */
/* mproc error codes.
 *
 * Every fallible mproc function returns int: 0 on success, a negative code
 * on failure (a few document a non-negative count instead).  A failing system
 * call passes through as -errno (MP_ENOMEM == -ENOMEM, MP_EINVAL == -EINVAL,
 * ...).  Where POSIX names a condition, mproc's code for it IS that -errno
 * (libuv's rule: a caller never meets two codes for one condition):
 * MP_ETIMEDOUT == -ETIMEDOUT, MP_EMSGSIZE == -EMSGSIZE, MP_EOVERFLOW ==
 * -EOVERFLOW, MP_ENOTSUP == -ENOTSUP, MP_EOWNERDEAD == -EOWNERDEAD.
 * Conditions POSIX has no name for have mproc's own codes, below -4000 so no
 * errno reaches them.  Codes are never renumbered or reused; new ones are
 * appended.  (mproc 0.1 gave the five POSIX-named conditions own codes
 * -4001, -4010, -4014, -4016 and -4017; those values stay retired.)
 *
 * Text that a code cannot hold (which byte of a pickle was bad, a remote
 * traceback, the signal that killed a worker) is kept per thread and read
 * with mp_errdetail() right after the failing call. */
#ifndef MPROC_ERRORS_H
#define MPROC_ERRORS_H

#include <errno.h>

#include "mproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One list of every code mproc documents by name.
 * XX(NAME, value, message): MP_NAME == value. */
#define MP_ERRORS(XX)                                                           /* conditions POSIX names: the code is -errno */                              XX(ETIMEDOUT,    -ETIMEDOUT,    "timed out")                                  XX(EMSGSIZE,     -EMSGSIZE,     "message too big")                            XX(EOVERFLOW,    -EOVERFLOW,    "value does not fit")                         XX(ENOTSUP,      -ENOTSUP,      "not supported")                              XX(EOWNERDEAD,   -EOWNERDEAD,   "previous owner died; protected state may be inconsistent")   XX(EINVAL,       -EINVAL,       "invalid argument")                           XX(ENOMEM,       -ENOMEM,       "out of memory")                              XX(EBADF,        -EBADF,        "bad file descriptor")                        XX(EMFILE,       -EMFILE,       "too many open files")                        XX(EPIPE,        -EPIPE,        "broken pipe")                                XX(EAGAIN,       -EAGAIN,       "resource temporarily unavailable")           XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                         XX(ECONNRESET,   -ECONNRESET,   "connection reset by peer")                   XX(EADDRINUSE,   -EADDRINUSE,   "address already in use")                     XX(ENOENT,       -ENOENT,       "no such file or directory")                  XX(EEXIST,       -EEXIST,       "file exists")                                XX(EPERM,        -EPERM,        "operation not permitted")                    XX(EBUSY,        -EBUSY,        "resource busy")                              XX(ECHILD,       -ECHILD,       "no child processes")                         XX(EDEADLK,      -EDEADLK,      "resource deadlock would occur")              /* mproc's own conditions */                                                  XX(EEMPTY,       -4002, "empty")                                              XX(EFULL,        -4003, "full")                                               XX(EEOF,         -4004, "end of file")                                        XX(ECLOSED,      -4005, "object is closed")                                   XX(ESTATE,       -4006, "operation not valid in the object's state")          XX(EAUTH,        -4007, "authentication failed")                              XX(EREMOTE,      -4008, "remote error")                                       XX(ETOOSHORT,    -4009, "buffer too short")                                   XX(EMALFORMED,   -4011, "malformed data")                                     XX(EWORKERDIED,  -4012, "worker died")                                        XX(EBROKEN,      -4013, "broken barrier")                                     XX(ETYPE,        -4015, "wrong type")                                         XX(ELIMIT,       -4018, "limit exceeded")                                     XX(ECYCLE,       -4019, "structure contains itself")                          XX(ENOTFOUND,    -4020, "not found")                                          XX(EINDEX,       -4021, "index out of range")                                 XX(EBADREF,      -4022, "function reference cannot be resolved")              XX(EUNHASHABLE,  -4023, "unhashable value")                                   XX(ENOTOWNER,    -4024, "not the owner")                                      XX(ECONTEXT,     -4025, "object belongs to an incompatible context")

enum mp_errcode {
#define MP__XX(name, value, text) MP_##name = (value),
  MP_ERRORS(MP__XX)
#undef MP__XX
};

/* A static, human-readable text for any code: mproc's own, any -errno, and
 * 0 ("success").  Never NULL; unknown codes give "unknown error". */
MP_EXTERN const char *mp_strerror(int code);

/* The symbolic name of a code ("MP_EEOF", "MP_ENOMEM", "EHOSTDOWN" for other
 * -errno values, "MP_OK" for 0, "MP_EUNKNOWN" otherwise).  Never NULL. */
MP_EXTERN const char *mp_err_name(int code);

/* Details of the most recent failure in this thread: a NUL-terminated text,
 * "" when the failing call left none -- never the text of an earlier call.
 * Every mproc call that returns an error code resets it when it starts, so
 * read it right after the failing call; it is valid until the next mproc
 * call in this thread.  (mp_lock_acquire/mp_lock_release and their RLock
 * names, whose fast path is a few nanoseconds, reset it only when they do
 * not succeed at once; a failure of theirs, too, leaves its own text or "".) */
MP_EXTERN const char *mp_errdetail(void);

/* Set the detail text of this thread (printf format) and return `code`, so a
 * library function can write `return mp_seterr(MP_EMALFORMED, "...")`.
 * Exposed so that code built on mproc (handle types, registered manager
 * types) can report in the same way. */
MP_EXTERN int mp_seterr(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
