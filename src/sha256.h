/*-------------------------------------------------------------------------
 *
 * sha256.h
 *		SHA-256 and HMAC-SHA256 for the audit trail's hash chains, with
 *		copyable states (see sha256.c for why not pg_cryptohash).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONSENT_SHA256_H
#define CONSENT_SHA256_H

#include "postgres.h"

#define SHA256_LEN			32
#define SHA256_BLOCK_LEN	64

typedef struct Sha256
{
	uint32		h[8];
	uint64		bytes;			/* message length so far */
	int			used;			/* bytes waiting in buf */
	uint8		buf[SHA256_BLOCK_LEN];
} Sha256;

/* HMAC-SHA256 under one key: the states after the padded key blocks. */
typedef struct Sha256Hmac
{
	Sha256		inner;
	Sha256		outer;
} Sha256Hmac;

extern void sha256_init(Sha256 *s);
extern void sha256_update(Sha256 *s, const void *data, size_t len);
extern void sha256_final(Sha256 *s, uint8 *out);

/* Prepare an HMAC key of at most 64 bytes; then any number of MACs. */
extern void sha256_hmac_key(Sha256Hmac *h, const uint8 *key, size_t keylen);
extern void sha256_hmac(const Sha256Hmac *h,
						const void *msg1, size_t len1,
						const void *msg2, size_t len2,
						const void *msg3, size_t len3,
						uint8 *out);

/* true when the SHA extensions of the CPU are used */
extern bool sha256_accelerated(void);

extern bool consent_sha256_portable;

#endif							/* CONSENT_SHA256_H */
