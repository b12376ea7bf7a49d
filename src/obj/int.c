/* SPDX-License-Identifier: MIT */
/* Ints of any size.  A value that fits int64 is always an mp__int (small
 * ones are immortal); a larger one keeps its pickle LONG payload exactly:
 * minimal little-endian two's complement bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* Largest big int printed in decimal (bytes).  Python refuses ints of more
 * than 4300 digits by default; this allows ten times that, and keeps the
 * quadratic conversion bounded. */
#define MAX_DECIMAL_BYTES 18000

static size_t
trim(const uint8_t *le, size_t n)
{
  while (n > 1 && ((le[n - 1] == 0x00 && !(le[n - 2] & 0x80)) ||
                   (le[n - 1] == 0xff && (le[n - 2] & 0x80))))
    n--;
  if (n == 1 && le[0] == 0)
    n = 0;
  return n;
}

size_t
mp__i64_to_le(int64_t v, uint8_t *buf)
{
  uint64_t u = (uint64_t)v;
  for (int k = 0; k < 8; k++)
    buf[k] = (uint8_t)(u >> (8 * k));
  return trim(buf, 8);
}

mp_obj *
mp__int_from_le(const uint8_t *le, size_t n)
{
  n = trim(le, n);
  if (n <= 8) {
    uint64_t u = 0;
    if (n && (le[n - 1] & 0x80))
      u = ~(uint64_t)0; /* sign-extend */
    for (size_t k = n; k-- > 0;)
      u = (u << 8) | le[k];
    return mp_int_new((int64_t)u);
  }
  if (n > SIZE_MAX - sizeof(mp__bigint)) {
    mp_seterr(MP_ENOMEM, "int too large");
    return NULL;
  }
  mp__bigint *b = mp__obj_alloc(sizeof *b + n, MP_T_INT);
  if (!b)
    return NULL;
  b->h.flags |= MP__F_BIG;
  b->n = n;
  memcpy(b->le, le, n);
  return &b->h;
}

/* Two's complement negation in place. */
static void
negate(uint8_t *p, size_t n)
{
  unsigned carry = 1;
  for (size_t k = 0; k < n; k++) {
    unsigned x = (uint8_t)~p[k] + carry;
    p[k] = (uint8_t)x;
    carry = x >> 8;
  }
}

size_t
mp__double_to_le(double d, uint8_t *buf)
{
  /* d is an integer with |d| >= 2**63 (and finite): m * 2**e exactly */
  int neg = d < 0;
  uint64_t bits;
  memcpy(&bits, &d, 8);
  int e = (int)((bits >> 52) & 0x7ff) - 1075; /* |d| = m * 2**e, e >= 11 */
  uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
  size_t nbytes = (size_t)(53 + e) / 8 + 2; /* magnitude + sign byte */
  memset(buf, 0, nbytes);
  /* place m shifted left by e bits */
  size_t byte = (size_t)e / 8;
  unsigned bit = (unsigned)e % 8;
  unsigned __int128 w = (unsigned __int128)m << bit;
  for (size_t k = 0; k < 9 && byte + k < nbytes; k++)
    buf[byte + k] = (uint8_t)(w >> (8 * k));
  if (neg)
    negate(buf, nbytes);
  return trim(buf, nbytes);
}

int
mp__bigint_to_double(const mp__bigint *b, double *out)
{
  size_t n = b->n;
  int neg = (b->le[n - 1] & 0x80) != 0;
  uint8_t stackbuf[64];
  uint8_t *mag = n <= sizeof stackbuf ? stackbuf : malloc(n);
  if (!mag)
    return mp_seterr(MP_ENOMEM, "out of memory");
  memcpy(mag, b->le, n);
  if (neg)
    negate(mag, n);
  size_t top = n;
  while (top > 0 && mag[top - 1] == 0)
    top--;
  /* the top 64 bits of the magnitude, the rest folded into a sticky bit so
   * the conversion rounds once, correctly (half to even) */
  size_t nbits = (top - 1) * 8;
  for (uint8_t t = mag[top - 1]; t; t >>= 1)
    nbits++;
  size_t shift = nbits > 64 ? nbits - 64 : 0;
  uint64_t m = 0;
  for (size_t k = 0; k < 64 && shift + k < nbits; k++) {
    size_t bit = shift + k;
    if (mag[bit / 8] >> (bit % 8) & 1)
      m |= (uint64_t)1 << k;
  }
  int sticky = 0;
  for (size_t bit = 0; bit < shift && !sticky; bit++)
    if (mag[bit / 8] >> (bit % 8) & 1)
      sticky = 1;
  if (mag != stackbuf)
    free(mag);
  if (sticky)
    m |= 1; /* below the 53-bit rounding position: only breaks ties */
  double d = (double)m;
  while (shift > 0 && !isinf(d)) {
    size_t step = shift > 1000 ? 1000 : shift;
    d *= mp__pow2((int)step);
    shift -= step;
  }
  if (isinf(d))
    return mp_seterr(MP_EOVERFLOW, "int too large to convert to float");
  *out = neg ? -d : d;
  return 0;
}

int
mp__bigint_decimal(const mp__bigint *b, mp__buf *buf)
{
  size_t n = b->n;
  if (n > MAX_DECIMAL_BYTES)
    return mp_seterr(MP_ELIMIT,
                     "int of %zu bytes is too large to print in decimal", n);
  int neg = (b->le[n - 1] & 0x80) != 0;
  uint8_t *mag = malloc(n);
  size_t nl = (n + 3) / 4;
  uint32_t *limb = calloc(nl, sizeof *limb);
  /* base 10**9 digits, least significant first: at most 10/9 * 2.41 per
   * byte */
  size_t maxd = n * 27 / 10 / 9 + 2;
  uint32_t *dig = malloc(maxd * sizeof *dig);
  if (!mag || !limb || !dig) {
    free(mag);
    free(limb);
    free(dig);
    return mp_seterr(MP_ENOMEM, "out of memory");
  }
  memcpy(mag, b->le, n);
  if (neg)
    negate(mag, n);
  for (size_t k = 0; k < n; k++)
    limb[k / 4] |= (uint32_t)mag[k] << (8 * (k % 4));
  free(mag);
  size_t top = nl;
  size_t nd = 0;
  while (top > 0 && limb[top - 1] == 0)
    top--;
  while (top > 0) {
    uint64_t rem = 0;
    for (size_t k = top; k-- > 0;) {
      uint64_t cur = (rem << 32) | limb[k];
      limb[k] = (uint32_t)(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    dig[nd++] = (uint32_t)rem;
    while (top > 0 && limb[top - 1] == 0)
      top--;
  }
  free(limb);
  int rc = mp__buf_reserve(buf, nd * 9 + 2);
  if (rc) {
    free(dig);
    return mp_seterr(MP_ENOMEM, "out of memory");
  }
  char tmp[16];
  int l;
  if (neg)
    buf->data[buf->len++] = '-';
  l = snprintf(tmp, sizeof tmp, "%u", dig[nd - 1]);
  memcpy(buf->data + buf->len, tmp, (size_t)l);
  buf->len += (size_t)l;
  for (size_t k = nd - 1; k-- > 0;) {
    snprintf(tmp, sizeof tmp, "%09u", dig[k]);
    memcpy(buf->data + buf->len, tmp, 9);
    buf->len += 9;
  }
  free(dig);
  return 0;
}
