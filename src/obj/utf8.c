/* SPDX-License-Identifier: MIT */
/* UTF-8 validation and decoding, for str values and the pickle codec. */
#include <stddef.h>
#include <stdint.h>

#include "obj/obj_internal.h"

/* ---- UTF-8 ---------------------------------------------------------------- */

int
mp__utf8_check(const uint8_t *s, size_t len, size_t *ncp, size_t *bad)
{
  size_t i = 0, n = 0;
  while (i < len) {
    /* ASCII runs, 8 bytes at a time */
    while (i + 8 <= len) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull)
        break;
      i += 8;
      n += 8;
    }
    if (i >= len)
      break;
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      n++;
      continue;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
      need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c == 0xe0)
        lo = 0xa0; /* no overlong forms; surrogates (ED A0..BF) allowed */
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f; /* nothing above U+10FFFF */
    } else
      goto fail;
    if (len - i - 1 < need)
      goto fail;
    if (s[i + 1] < lo || s[i + 1] > hi)
      goto fail;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        goto fail;
    i += need + 1;
    n++;
  }
  *ncp = n;
  return 0;
fail:
  if (bad)
    *bad = i;
  return MP_EMALFORMED;
}

size_t
mp__utf8_decode(const uint8_t *s, uint32_t *cp)
{
  uint8_t c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c < 0xe0) {
    *cp = ((uint32_t)(c & 0x1f) << 6) | (s[1] & 0x3f);
    return 2;
  }
  if (c < 0xf0) {
    *cp = ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) |
          (s[2] & 0x3f);
    return 3;
  }
  *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
        ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
  return 4;
}
