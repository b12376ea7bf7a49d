/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the authentication handshake state machine, in all
 * four roles (listener, client, deliver only, answer only), fed with
 * arbitrary peer bytes.  Byte 0 picks the role and options, byte 1 the key
 * length; then the key; the rest is what the peer says, handed over in the
 * sizes the machine asks for.  A second mode plays the machine against a
 * well-behaved partner of the opposite role with the fuzzer flipping bytes
 * in transit, to reach the late states. */
#include <stdint.h>
#include <string.h>

#include "conn/handshake.h"
#include "fuzz.h"

static const int opposite[] = { 0, MP__HS_CLIENT, MP__HS_LISTENER,
                                MP__HS_ANSWER, MP__HS_DELIVER };

static void
against_input(int role, int refuse, const uint8_t *key, size_t klen,
              const uint8_t *in, size_t n)
{
  mp__hs h;
  if (mp__hs_init(&h, role, key, klen, refuse))
    return;
  size_t off = 0;
  for (int guard = 0; guard < 10000 && h.status == 0; guard++) {
    size_t out = mp__hs_pending_out(&h);
    if (out) {
      mp__hs_wrote(&h, out > 7 ? out / 2 : out); /* partial writes too */
      continue;
    }
    size_t want = mp__hs_want(&h);
    if (!want || off == n)
      break;
    size_t k = want < n - off ? want : n - off;
    if (k > 1 && (in[off] & 1))
      k = 1; /* byte-at-a-time delivery */
    mp__hs_feed(&h, in + off, k);
    off += k;
  }
}

/* Two machines talk; byte i of the input, if present, is XORed into the
 * i-th byte that crosses. */
static void
against_partner(int role, const uint8_t *key, size_t klen,
                const uint8_t *flip, size_t nflip)
{
  mp__hs a, b;
  if (mp__hs_init(&a, role, key, klen, 0) ||
      mp__hs_init(&b, opposite[role], key, klen, 0))
    return;
  size_t crossed = 0;
  for (int guard = 0; guard < 1000; guard++) {
    int moved = 0;
    mp__hs *from[2] = { &a, &b }, *to[2] = { &b, &a };
    for (int d = 0; d < 2; d++) {
      mp__hs *x = from[d], *y = to[d];
      while (mp__hs_pending_out(x) && x->status == 0 && y->status == 0) {
        size_t want = mp__hs_want(y);
        if (!want)
          break;
        uint8_t byte = x->out[x->outpos];
        if (crossed < nflip)
          byte ^= flip[crossed];
        crossed++;
        mp__hs_wrote(x, 1);
        mp__hs_feed(y, &byte, 1);
        moved = 1;
      }
    }
    if (!moved)
      break;
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  int role = 1 + (data[0] & 3);
  int refuse = (data[0] >> 2) & 1;
  int partner = (data[0] >> 3) & 1;
  size_t klen = data[1] % 64;
  if (klen > size - 2)
    klen = size - 2;
  const uint8_t *key = data + 2;
  const uint8_t *rest = data + 2 + klen;
  size_t n = size - 2 - klen;
  if (partner)
    against_partner(role, key, klen, rest, n);
  else
    against_input(role, refuse, key, klen, rest, n);
  return 0;
}
