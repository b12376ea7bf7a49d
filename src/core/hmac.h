/* SPDX-License-Identifier: MIT */
/* HMAC (OpenSSL's libcrypto, loaded on first use), constant-time comparison
 * and random bytes, for the authentication handshake of connections and
 * managers. */
#ifndef MPROC_CORE_HMAC_H
#define MPROC_CORE_HMAC_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/opensslv.h>

/* The soname of the libcrypto whose headers we are built with: loaded on
 * the first HMAC, not linked. */
#define MP__HMAC_STR_(x) #x
#define MP__HMAC_STR(x) MP__HMAC_STR_(x)
#if defined(OPENSSL_VERSION_MAJOR) && OPENSSL_VERSION_MAJOR >= 3
#define MP__LIBCRYPTO "libcrypto.so." MP__HMAC_STR(OPENSSL_VERSION_MAJOR)
#else
#define MP__LIBCRYPTO "libcrypto.so.1.1"
#endif

/* Largest MAC any supported digest produces (sha384: 48). */
#define MP__HMAC_MAX 64

/* HMAC-<digest>(key, msg) into out (MP__HMAC_MAX bytes); *outlen is the MAC
 * length.  `digest` is a CPython name: "md5", "sha256", "sha384",
 * "sha3_256", "sha3_384" (of length `dlen`).  Returns 0, MP_ENOTSUP for
 * another name, a digest the crypto library refuses (FIPS md5) or a
 * libcrypto that cannot be loaded. */
int mp__hmac(const char *digest, size_t dlen, const void *key, size_t keylen,
             const void *msg, size_t msglen, uint8_t *out, size_t *outlen);

/* 1 if the n bytes are equal, 0 if not, in time independent of where they
 * differ. */
int mp__ct_equal(const void *a, const void *b, size_t n);

/* n cryptographically secure random bytes (the kernel's CSPRNG:
 * getrandom, else /dev/urandom).  0 or MP_ENOTSUP.  The one entry for secrets: authkeys and
 * handshake nonces. */
int mp__random_bytes(void *buf, size_t n);

#endif
