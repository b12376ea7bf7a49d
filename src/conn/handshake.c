/* SPDX-License-Identifier: MIT */
/* The authentication handshake (see handshake.h).
 *
 * As challenger we send "#CHALLENGE#{sha256}" + 40 random bytes and accept a
 * 16-byte raw HMAC-MD5 of the whole challenge (CPython <= 3.11) or
 * "{name}" + HMAC-name (3.12+).  As responder we follow 3.12+: a 20-byte
 * challenge gets a raw HMAC-MD5, a "{name}"-prefixed one gets the same prefix
 * back with HMAC-name over the whole challenge. */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn/handshake.h"
#include "core/fd.h"
#include "core/hmac.h"

#define CHALLENGE "#CHALLENGE#"
#define WELCOME "#WELCOME#"
#define FAILURE "#FAILURE#"
#define CLEN (sizeof CHALLENGE - 1)
#define NONCE_LEN 40   /* CPython's MESSAGE_LENGTH */
#define LEGACY_LEN 20  /* a <= 3.11 challenge */
#define MD5_LEN 16     /* a <= 3.11 response */

enum {
  D_SEND_CH = 1, /* deliver: send the challenge */
  D_RECV_RESP,   /* deliver: read and check the response */
  D_SEND_RESULT, /* deliver: #WELCOME# or #FAILURE# */
  A_RECV_CH,     /* answer: read the challenge (and queue our response) */
  A_SEND_RESP,   /* answer: send the response */
  A_RECV_WELCOME,
  DONE
};

static const uint8_t steps_listener[] = { D_SEND_CH, D_RECV_RESP,
                                          D_SEND_RESULT, A_RECV_CH,
                                          A_SEND_RESP, A_RECV_WELCOME, DONE };
static const uint8_t steps_client[] = { A_RECV_CH, A_SEND_RESP,
                                        A_RECV_WELCOME, D_SEND_CH,
                                        D_RECV_RESP, D_SEND_RESULT, DONE };
static const uint8_t steps_deliver[] = { D_SEND_CH, D_RECV_RESP,
                                         D_SEND_RESULT, DONE };
static const uint8_t steps_answer[] = { A_RECV_CH, A_SEND_RESP,
                                        A_RECV_WELCOME, DONE };

static int
fail(mp__hs *h, const char *why)
{
  snprintf(h->why, sizeof h->why, "%s", why);
  h->status = MP_EAUTH;
  mp_seterr(MP_EAUTH, "%s", why);
  return h->status;
}

static void
queue_frame(mp__hs *h, const void *a, size_t alen, const void *b, size_t blen)
{
  size_t n = alen + blen;
  h->out[0] = (uint8_t)(n >> 24);
  h->out[1] = (uint8_t)(n >> 16);
  h->out[2] = (uint8_t)(n >> 8);
  h->out[3] = (uint8_t)n;
  memcpy(h->out + 4, a, alen);
  if (blen)
    memcpy(h->out + 4 + alen, b, blen);
  h->outpos = 0;
  h->outlen = 4 + n;
}

static int
cur(const mp__hs *h)
{
  return h->steps[h->step];
}

/* Enter the current step: only the challenge needs preparing. */
static int
enter_step(mp__hs *h)
{
  h->inhave = h->inhdr = h->inlen = 0;
  switch (cur(h)) {
  case D_SEND_CH: {
    static const char prefix[] = "{sha256}";
    memcpy(h->m, prefix, sizeof prefix - 1);
    if (mp__random_bytes(h->m + sizeof prefix - 1, NONCE_LEN))
      return fail(h, "no random bytes for the challenge");
    h->mlen = sizeof prefix - 1 + NONCE_LEN;
    queue_frame(h, CHALLENGE, CLEN, h->m, h->mlen);
    break;
  }
  case DONE:
    h->status = 1;
    break;
  default:
    break;
  }
  return h->status;
}

static int
next_step(mp__hs *h)
{
  h->step++;
  return enter_step(h);
}

int
mp__hs_init(mp__hs *h, int role, const void *key, size_t keylen,
            int refuse_md5)
{
  memset(h, 0, sizeof *h);
  switch (role) {
  case MP__HS_LISTENER: h->steps = steps_listener; break;
  case MP__HS_CLIENT: h->steps = steps_client; break;
  case MP__HS_DELIVER: h->steps = steps_deliver; break;
  case MP__HS_ANSWER: h->steps = steps_answer; break;
  default: return MP_EINVAL;
  }
  h->key = key;
  h->keylen = keylen;
  h->refuse_md5 = refuse_md5;
  enter_step(h);
  return h->status < 0 ? h->status : 0;
}

size_t
mp__hs_want(const mp__hs *h)
{
  if (h->status != 0 || mp__hs_pending_out(h))
    return 0;
  int s = cur(h);
  if (s != D_RECV_RESP && s != A_RECV_CH && s != A_RECV_WELCOME)
    return 0;
  if (h->inhave < 4)
    return 4 - h->inhave;
  if (!h->inhdr) /* the -1 escape: 8 more header bytes */
    return 12 - h->inhave;
  return h->inhdr + h->inlen - h->inhave;
}

/* CPython 3.12's _get_digest_name_and_payload: a 16- or 20-byte message is
 * legacy (md5, no prefix); otherwise "{name}" with the closing brace among
 * bytes 1..9 and an allowed name. */
static int
digest_of(const uint8_t *msg, size_t len, const char **name, size_t *nlen,
          const uint8_t **payload, size_t *plen)
{
  static const char *const allowed[] = { "md5", "sha256", "sha384",
                                         "sha3_256", "sha3_384" };
  if (len == LEGACY_LEN || len == MD5_LEN) {
    *name = "md5";
    *nlen = 3;
    *payload = msg;
    *plen = len;
    return 1; /* legacy */
  }
  if (len < 2 || msg[0] != '{')
    return -1;
  size_t lim = len < 10 ? len : 10;
  for (size_t i = 1; i < lim; i++) {
    if (msg[i] != '}')
      continue;
    for (size_t k = 0; k < MP__ARRAY_LEN(allowed); k++)
      if (strlen(allowed[k]) == i - 1 && !memcmp(allowed[k], msg + 1, i - 1)) {
        *name = allowed[k];
        *nlen = i - 1;
        *payload = msg + i + 1;
        *plen = len - i - 1;
        return 0;
      }
    return -1;
  }
  return -1;
}

static int
check_response(mp__hs *h, const uint8_t *r, size_t rlen)
{
  const char *name;
  size_t nlen, maclen;
  const uint8_t *mac;
  int legacy = digest_of(r, rlen, &name, &nlen, &mac, &maclen);
  if (legacy < 0)
    return fail(h, "response has an unsupported length, no digest prefix, "
                   "or an unsupported digest");
  if (h->refuse_md5 && nlen == 3)
    return fail(h, "peer answered with HMAC-MD5, which is refused");
  uint8_t want[MP__HMAC_MAX];
  size_t wlen;
  if (mp__hmac(name, nlen, h->key, h->keylen, h->m, h->mlen, want, &wlen))
    return fail(h, "digest unsupported by the crypto library");
  if (wlen != maclen)
    return fail(h, "digest received has the wrong length");
  if (!mp__ct_equal(want, mac, wlen))
    return fail(h, "digest received was wrong");
  return 0;
}

static int
make_response(mp__hs *h, const uint8_t *msg, size_t len)
{
  if (len < CLEN || memcmp(msg, CHALLENGE, CLEN))
    return fail(h, "protocol error: expected a challenge");
  msg += CLEN;
  len -= CLEN;
  if (len < LEGACY_LEN)
    return fail(h, "challenge too short");
  const char *name;
  size_t nlen, plen;
  const uint8_t *payload;
  int legacy = digest_of(msg, len, &name, &nlen, &payload, &plen);
  if (legacy < 0)
    return fail(h, "challenge has no digest prefix or an unsupported digest");
  if (h->refuse_md5 && nlen == 3)
    return fail(h, "peer asked for HMAC-MD5, which is refused");
  uint8_t mac[MP__HMAC_MAX];
  size_t maclen;
  if (mp__hmac(name, nlen, h->key, h->keylen, msg, len, mac, &maclen))
    return fail(h, "digest unsupported by the crypto library");
  if (legacy) {
    queue_frame(h, mac, maclen, NULL, 0);
  } else {
    uint8_t pre[12];
    pre[0] = '{';
    memcpy(pre + 1, name, nlen);
    pre[1 + nlen] = '}';
    uint8_t tmp[12 + MP__HMAC_MAX];
    memcpy(tmp, pre, nlen + 2);
    memcpy(tmp + nlen + 2, mac, maclen);
    queue_frame(h, tmp, nlen + 2 + maclen, NULL, 0);
  }
  return 0;
}

/* A whole frame is in h->in: act on it. */
static int
frame_done(mp__hs *h)
{
  const uint8_t *p = h->in + h->inhdr;
  size_t n = h->inlen;
  switch (cur(h)) {
  case D_RECV_RESP:
    if (check_response(h, p, n) < 0) {
      /* Tell the peer, then fail (CPython sends #FAILURE# too). */
      int code = h->status;
      char why[sizeof h->why];
      memcpy(why, h->why, sizeof why);
      h->status = 0;
      queue_frame(h, FAILURE, sizeof FAILURE - 1, NULL, 0);
      h->fail_after_send = code;
      memcpy(h->why, why, sizeof why);
      h->step++; /* D_SEND_RESULT */
      return 0;
    }
    queue_frame(h, WELCOME, sizeof WELCOME - 1, NULL, 0);
    return next_step(h);
  case A_RECV_CH:
    if (make_response(h, p, n) < 0)
      return h->status;
    return next_step(h);
  case A_RECV_WELCOME:
    if (n != sizeof WELCOME - 1 || memcmp(p, WELCOME, n))
      return fail(h, "digest sent was rejected");
    return next_step(h);
  default:
    return fail(h, "handshake out of step");
  }
}

int
mp__hs_feed(mp__hs *h, const uint8_t *p, size_t n)
{
  if (h->status != 0)
    return h->status;
  if (n > mp__hs_want(h))
    return fail(h, "handshake fed more than it asked for");
  memcpy(h->in + h->inhave, p, n);
  h->inhave += n;
  if (h->inhave == 4 && !h->inhdr) {
    uint32_t v = ((uint32_t)h->in[0] << 24) | ((uint32_t)h->in[1] << 16) |
                 ((uint32_t)h->in[2] << 8) | h->in[3];
    if (v == 0xFFFFFFFFu)
      return 0; /* 8 more bytes of length */
    if (v > MP__HS_MAX_FRAME)
      return fail(h, "handshake message too long or malformed");
    h->inhdr = 4;
    h->inlen = v;
  } else if (h->inhave == 12 && !h->inhdr) {
    uint64_t v = 0;
    for (int i = 4; i < 12; i++)
      v = (v << 8) | h->in[i];
    if (v > MP__HS_MAX_FRAME)
      return fail(h, "handshake message too long");
    h->inhdr = 12;
    h->inlen = (size_t)v;
  }
  if (h->inhdr && h->inhave == h->inhdr + h->inlen)
    return frame_done(h);
  return 0;
}

int
mp__hs_wrote(mp__hs *h, size_t n)
{
  if (h->status != 0)
    return h->status;
  h->outpos += n;
  if (h->outpos < h->outlen)
    return 0;
  h->outpos = h->outlen = 0;
  if (h->fail_after_send) {
    h->status = h->fail_after_send;
    mp_seterr(h->status, "%s", h->why);
    return h->status;
  }
  /* A send step is over once its frame is written. */
  int s = cur(h);
  if (s == D_SEND_CH || s == D_SEND_RESULT || s == A_SEND_RESP)
    return next_step(h);
  return 0;
}

int
mp__hs_pump(mp__hs *h, int fd)
{
  while (h->status == 0) {
    size_t out = mp__hs_pending_out(h);
    if (out) {
      ssize_t n = send(fd, h->out + h->outpos, out,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          return 0;
        return mp__errno();
      }
      mp__hs_wrote(h, (size_t)n);
      continue;
    }
    size_t want = mp__hs_want(h);
    if (!want)
      break;
    uint8_t buf[12 + MP__HS_MAX_FRAME];
    ssize_t n = recv(fd, buf, want, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      return mp__errno();
    }
    if (n == 0)
      return mp_seterr(MP_EEOF, "peer hung up during the handshake");
    mp__hs_feed(h, buf, (size_t)n);
  }
  return h->status;
}

int
mp__hs_drive(int fd, int role, const void *key, size_t keylen,
             int refuse_md5, mp__deadline dl)
{
  mp__hs h;
  int rc = mp__hs_init(&h, role, key, keylen, refuse_md5);
  if (rc)
    return rc;
  for (;;) {
    rc = mp__hs_pump(&h, fd);
    if (rc == 1)
      return 0;
    if (rc < 0) {
      if (rc == MP_EAUTH)
        mp_seterr(MP_EAUTH, "%s", h.why);
      return rc;
    }
    rc = mp__poll_fd(fd, mp__hs_pending_out(&h) ? POLLOUT : POLLIN, dl);
    if (rc < 0)
      return rc == MP_ETIMEDOUT
                 ? mp_seterr(MP_ETIMEDOUT, "handshake timed out")
                 : rc;
  }
}
