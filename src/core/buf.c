/* SPDX-License-Identifier: MIT */
/* Growable byte buffer, and mp_free. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

int
mp__buf_reserve(mp__buf *b, size_t extra)
{
  if (extra <= b->cap - b->len)
    return 0;
  if (extra > SIZE_MAX / 2 - b->len)
    return MP_ENOMEM;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p)
    return MP_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int
mp__buf_append(mp__buf *b, const void *p, size_t n)
{
  if (n == 0)
    return 0;
  if (mp__buf_reserve(b, n))
    return MP_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void
mp__buf_release(mp__buf *b)
{
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void
mp_free(void *p)
{
  free(p);
}
