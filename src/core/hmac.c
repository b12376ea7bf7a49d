/* SPDX-License-Identifier: MIT */
/* HMAC, constant-time comparison and random bytes, via OpenSSL libcrypto. */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "core/hmac.h"
#include "core/internal.h"
#include "platform/platform.h"

/* CPython's names (multiprocessing.connection._ALLOWED_DIGESTS) and
 * OpenSSL's for the same digest. */
static const struct {
  const char *py;
  const char *ossl;
} digests[] = {
  { "md5", "MD5" },
  { "sha256", "SHA256" },
  { "sha384", "SHA384" },
  { "sha3_256", "SHA3-256" },
  { "sha3_384", "SHA3-384" },
};

int
mp__hmac(const char *digest, size_t dlen, const void *key, size_t keylen,
         const void *msg, size_t msglen, uint8_t *out, size_t *outlen)
{
  const EVP_MD *md = NULL;
  for (size_t i = 0; i < MP__ARRAY_LEN(digests); i++)
    if (strlen(digests[i].py) == dlen && !memcmp(digests[i].py, digest, dlen)) {
      md = EVP_get_digestbyname(digests[i].ossl);
      break;
    }
  if (!md)
    return MP_ENOTSUP;
  if (keylen > INT32_MAX)
    return MP_EINVAL;
  /* HMAC() wants a non-NULL key even when it is empty. */
  static const uint8_t empty[1];
  unsigned int n = 0;
  if (!HMAC(md, keylen ? key : empty, (int)keylen, msg, msglen, out, &n))
    return MP_ENOTSUP;
  *outlen = n;
  return 0;
}

int
mp__ct_equal(const void *a, const void *b, size_t n)
{
  return CRYPTO_memcmp(a, b, n) == 0;
}

int
mp__random_bytes(void *buf, size_t n)
{
  if (n <= INT_MAX && RAND_bytes(buf, (int)n) == 1)
    return 0;
  /* The kernel's CSPRNG is as good a source when libcrypto's fails. */
  return mp__plat_random(buf, n) ? MP_ENOTSUP : 0;
}
