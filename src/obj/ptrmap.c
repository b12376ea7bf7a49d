/* SPDX-License-Identifier: MIT */
/* Identity maps keyed by address (obj_internal.h): open addressing with
 * linear probing, at most half full. */
#include <stdlib.h>

#include "obj/obj_internal.h"

static size_t
slot_of(const void *p, size_t mask)
{
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (size_t)x & mask;
}

int
mp__ptrmap_get(const mp__ptrmap *m, const void *key, uintptr_t *val)
{
  if (!m->key)
    return 0;
  for (size_t i = slot_of(key, m->mask); m->key[i]; i = (i + 1) & m->mask)
    if (m->key[i] == key) {
      *val = m->val[i];
      return 1;
    }
  return 0;
}

int
mp__ptrmap_put(mp__ptrmap *m, const void *key, uintptr_t val)
{
  if (!m->key || (m->n + 1) * 2 > m->mask + 1) {
    size_t size = m->key ? (m->mask + 1) * 2 : 16;
    const void **nk = calloc(size, sizeof *nk);
    uintptr_t *nv = calloc(size, sizeof *nv);
    if (!nk || !nv) {
      free(nk);
      free(nv);
      return mp_seterr(MP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; m->key && i <= m->mask; i++) {
      if (!m->key[i])
        continue;
      size_t j = slot_of(m->key[i], size - 1);
      while (nk[j])
        j = (j + 1) & (size - 1);
      nk[j] = m->key[i];
      nv[j] = m->val[i];
    }
    free(m->key);
    free(m->val);
    m->key = nk;
    m->val = nv;
    m->mask = size - 1;
  }
  size_t i = slot_of(key, m->mask);
  while (m->key[i])
    i = (i + 1) & m->mask;
  m->key[i] = key;
  m->val[i] = val;
  m->n++;
  return 0;
}

void
mp__ptrmap_release(mp__ptrmap *m)
{
  free(m->key);
  free(m->val);
  *m = (mp__ptrmap){0};
}
