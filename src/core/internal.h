/* Internal helpers of the core layer, shared by every layer above it.
 * Names with the mp__ prefix are not part of the public API. */
#ifndef MPROC_CORE_INTERNAL_H
#define MPROC_CORE_INTERNAL_H

#include <stdint.h>
#include <errno.h>
#include <stddef.h>
#include <time.h>

#include "mproc.h"

#define MP__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MP__LIKELY(x) __builtin_expect(!!(x), 1)
#define MP__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* -errno of the last failed system call, never 0. */
static inline int
mp__errno(void)
{
  return errno ? -errno : MP_EINVAL;
}

/* ---- logging ------------------------------------------------------------ */
void mp__log_set_process_name(const char *name);
const char *mp__log_process_name(void);

/* ---- time and deadlines --------------------------------------------------
 * Every blocking call takes `double timeout` seconds (0: do not block,
 * MP_FOREVER or any negative: no limit -- except where a doc says negative
 * counts as 0).  A deadline is a CLOCK_MONOTONIC instant in nanoseconds;
 * MP__NO_DEADLINE means forever. */
typedef int64_t mp__deadline;
#define MP__NO_DEADLINE INT64_MAX

int64_t mp__now_ns(void);
/* Deadline `timeout` seconds from now (negative: no deadline). */
mp__deadline mp__deadline_in(double timeout);
/* Milliseconds left for poll(2): -1 forever, 0 when passed; rounded up so a
 * poll never wakes before the deadline. */
int mp__deadline_poll_ms(mp__deadline d);
/* Time left as a timespec (relative); returns 0, or MP_ETIMEDOUT if passed;
 * *forever set when there is no deadline. */
int mp__deadline_timespec(mp__deadline d, struct timespec *rel, int *forever);
int mp__deadline_passed(mp__deadline d);

/* ---- growable byte buffer ----------------------------------------------
 * Used by the codec and the framing code: append, and reserve room to write
 * into directly.  Grows geometrically; on failure the buffer is unchanged. */
typedef struct mp__buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} mp__buf;

int mp__buf_reserve(mp__buf *b, size_t extra); /* 0 or MP_ENOMEM */
int mp__buf_append(mp__buf *b, const void *p, size_t n);
static inline int
mp__buf_putc(mp__buf *b, uint8_t c)
{
  if (MP__UNLIKELY(b->len == b->cap) && mp__buf_reserve(b, 1))
    return MP_ENOMEM;
  b->data[b->len++] = c;
  return 0;
}
void mp__buf_release(mp__buf *b); /* frees data, zeroes the struct */

/* ---- tiny serializer ------------------------------------------------------
 * Host-order fields and length-prefixed blobs, for messages between
 * processes of one machine (child instructions, function references). */
static inline int
mp__put_u32(mp__buf *b, uint32_t v)
{
  return mp__buf_append(b, &v, 4);
}
static inline int
mp__put_u64(mp__buf *b, uint64_t v)
{
  return mp__buf_append(b, &v, 8);
}
static inline int
mp__put_blob(mp__buf *b, const void *p, size_t n)
{
  int rc = mp__put_u32(b, (uint32_t)n);
  return rc ? rc : mp__buf_append(b, p, n);
}
static inline int
mp__get_u32(const uint8_t **p, const uint8_t *end, uint32_t *v)
{
  if (end - *p < 4)
    return MP_EMALFORMED;
  __builtin_memcpy(v, *p, 4);
  *p += 4;
  return 0;
}
static inline int
mp__get_u64(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
  if (end - *p < 8)
    return MP_EMALFORMED;
  __builtin_memcpy(v, *p, 8);
  *p += 8;
  return 0;
}
/* A borrowed view of a blob. */
static inline int
mp__get_blob(const uint8_t **p, const uint8_t *end, const uint8_t **data,
             uint32_t *n)
{
  if (mp__get_u32(p, end, n) || (size_t)(end - *p) < *n)
    return MP_EMALFORMED;
  *data = *p;
  *p += *n;
  return 0;
}

/* ---- function references (funcref.c) ----------------------------------------
 * A code or data address as (object file, offset from its load base, the
 * object's GNU build-id -- or its file identity when it has none), which a
 * process running a fresh image of the same program resolves against its
 * own load base (DESIGN 3.1).  Used by the child bootstrap (targets, handle
 * types), Barrier actions and function values (obj).
 *
 * Decoding never jumps anywhere; it refuses (MP_EBADREF) a reference to an
 * object that is not the same build, an offset outside the object's loaded
 * (exec: executable) segments and, for code (exec), an offset where no
 * function starts, judged by the object's symbol tables and unwind table
 * (mp__plat_func_info; an object that has neither is judged by its
 * segments alone).  It loads (dlopen) an object that is not loaded yet only
 * on a thread that mp__funcref_trust() marked: loading runs the object's
 * constructors, which only a trusted sender (the parent of a child being
 * booted) may cause. */
int mp__funcref_encode(const void *addr, int exec, mp__buf *b);
/* Decode one reference at *p (advancing it); on failure writes the reason
 * into err and returns MP_EBADREF (or MP_EMALFORMED). */
int mp__funcref_decode(const uint8_t **p, const uint8_t *end, void **addr,
                       char *err, size_t errcap);
/* The same for a reference that must be to code (encoded with exec). */
int mp__funcref_decode_code(const uint8_t **p, const uint8_t *end,
                            void **addr, char *err, size_t errcap);
/* Let decodes on this thread load objects that are not loaded (on != 0) or
 * not (0, the default). */
void mp__funcref_trust(int on);
/* Append a name for the function at `addr`: its symbol name when the
 * object's symbol tables have one starting there, else "at FILE+0xOFF"
 * (FILE the object's file name), else "at 0xADDR".  0 or MP_ENOMEM. */
int mp__funcref_describe(const void *addr, mp__buf *b);


#endif
