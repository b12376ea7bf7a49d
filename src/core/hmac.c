/* SPDX-License-Identifier: MIT */
/* HMAC via OpenSSL's libcrypto, loaded on first use; constant-time
 * comparison and random bytes without it.
 *
 * libcrypto is not linked: a process that never authenticates (the
 * forkserver, most children) never maps it, and every fork of such a
 * process copies a smaller address space.  The first HMAC dlopens it
 * (the soname of the OpenSSL whose headers we were built with) and looks
 * up the two entry points used here; their types come from those headers. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

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

static struct {
  __typeof__(&EVP_get_digestbyname) get_digestbyname;
  __typeof__(&HMAC) hmac;
} crypto;
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;

static void
crypto_load(void)
{
  /* Never closed: libcrypto registers its own exit handler. */
  void *lib = dlopen(MP__LIBCRYPTO, RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    return;
  __typeof__(crypto) c;
  __typeof__(&OPENSSL_init_crypto) init;
  *(void **)&init = dlsym(lib, "OPENSSL_init_crypto");
  *(void **)&c.get_digestbyname = dlsym(lib, "EVP_get_digestbyname");
  *(void **)&c.hmac = dlsym(lib, "HMAC");
  if (!init || !c.get_digestbyname || !c.hmac)
    return;
  /* libcrypto's exit handler (OPENSSL_cleanup, registered by its first
   * initialisation, now) tears down its per-thread state.  Exit handlers
   * run last-registered first, so ours would run after it, and the
   * threads our finalizers stop (a manager's connection threads, a pool's)
   * would still be using libcrypto -- and their state, its key deleted,
   * would leak.  Initialise it here, then register our exit shutdown once
   * more so that it runs first.  (The digests are what
   * EVP_get_digestbyname would initialise; with no option bits the call
   * returns before registering anything.) */
  if (init(OPENSSL_INIT_ADD_ALL_DIGESTS, NULL) != 1)
    return;
  mp__lifecycle_exit_first();
  crypto = c;
}

int
mp__hmac(const char *digest, size_t dlen, const void *key, size_t keylen,
         const void *msg, size_t msglen, uint8_t *out, size_t *outlen)
{
  const char *name = NULL;
  for (size_t i = 0; i < MP__ARRAY_LEN(digests); i++)
    if (strlen(digests[i].py) == dlen && !memcmp(digests[i].py, digest, dlen))
      name = digests[i].ossl;
  if (!name)
    return MP_ENOTSUP;
  if (keylen > INT32_MAX)
    return MP_EINVAL;
  pthread_once(&crypto_once, crypto_load);
  if (!crypto.hmac)
    return mp_seterr(MP_ENOTSUP, "cannot load %s for HMAC", MP__LIBCRYPTO);
  const EVP_MD *md = crypto.get_digestbyname(name);
  if (!md)
    return MP_ENOTSUP;
  /* HMAC() wants a non-NULL key even when it is empty. */
  static const uint8_t empty[1];
  unsigned int n = 0;
  if (!crypto.hmac(md, keylen ? key : empty, (int)keylen, msg, msglen, out,
                   &n))
    return MP_ENOTSUP;
  *outlen = n;
  return 0;
}

int
mp__ct_equal(const void *a, const void *b, size_t n)
{
  /* Every byte is looked at; the volatile keeps the compiler from
   * stopping at the first difference. */
  const volatile uint8_t *x = a, *y = b;
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++)
    acc |= (uint8_t)(x[i] ^ y[i]);
  return acc == 0;
}

int
mp__random_bytes(void *buf, size_t n)
{
  /* The kernel's CSPRNG (getrandom), which is what libcrypto seeds from. */
  return mp__plat_random(buf, n) ? MP_ENOTSUP : 0;
}
