/*-------------------------------------------------------------------------
 *
 * sha256.c
 *		SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) for the audit
 *		trail.
 *
 * Why not pg_cryptohash: an audit event takes about twenty short SHA-256
 * computations (the event hash, and per personal field an HMAC and a
 * commitment).  Through pg_cryptohash each one creates, initialises and
 * frees an OpenSSL EVP context, and OpenSSL 3 looks the algorithm up under
 * a lock on every initialisation: a profile of the expiry sweep showed
 * about 14% of the sweeper's CPU in libcrypto for about 40 blocks of
 * actual hashing per event.  Here a state is a plain struct: HMAC key
 * blocks are absorbed once per chain secret and copied per field, and
 * nothing is allocated.
 *
 * The compression function uses the x86 SHA extensions when the CPU has
 * them (checked once, with CPUID) and portable C otherwise.  Both are
 * checked against PostgreSQL's sha256() by sql/audit_encoding.sql, which
 * forces the portable code for part of its events with the developer
 * setting consent.sha256_portable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/pg_bswap.h"

#include "sha256.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SHA256_X86
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32 K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROTR(x, n)	(((x) >> (n)) | ((x) << (32 - (n))))

static void
blocks_portable(uint32 *state, const uint8 *data, size_t nblocks)
{
	while (nblocks-- > 0)
	{
		uint32		w[64];
		uint32		a = state[0],
					b = state[1],
					c = state[2],
					d = state[3],
					e = state[4],
					f = state[5],
					g = state[6],
					h = state[7];

		for (int t = 0; t < 16; t++)
			w[t] = ((uint32) data[4 * t] << 24) | ((uint32) data[4 * t + 1] << 16) |
				((uint32) data[4 * t + 2] << 8) | (uint32) data[4 * t + 3];
		for (int t = 16; t < 64; t++)
		{
			uint32		s0 = ROTR(w[t - 15], 7) ^ ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
			uint32		s1 = ROTR(w[t - 2], 17) ^ ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);

			w[t] = w[t - 16] + s0 + w[t - 7] + s1;
		}
		for (int t = 0; t < 64; t++)
		{
			uint32		t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) +
				((e & f) ^ (~e & g)) + K[t] + w[t];
			uint32		t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) +
				((a & b) ^ (a & c) ^ (b & c));

			h = g;
			g = f;
			f = e;
			e = d + t1;
			d = c;
			c = b;
			b = a;
			a = t1 + t2;
		}
		state[0] += a;
		state[1] += b;
		state[2] += c;
		state[3] += d;
		state[4] += e;
		state[5] += f;
		state[6] += g;
		state[7] += h;
		data += SHA256_BLOCK_LEN;
	}
}

#ifdef SHA256_X86
/*
 * The SHA extensions keep the state as ABEF and CDGH and do two rounds per
 * instruction; the message schedule takes four words at a time:
 * W[t..t+3] = msg2(msg1(W[t-16..], W[t-12..]) + W[t-7..t-4], W[t-4..t-1]).
 */
__attribute__((target("sha,sse4.1,ssse3")))
static void
blocks_shani(uint32 *state, const uint8 *data, size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i		tmp,
				abef,
				cdgh;

	tmp = _mm_loadu_si128((const __m128i *) &state[0]);	/* DCBA */
	cdgh = _mm_loadu_si128((const __m128i *) &state[4]);	/* HGFE */
	tmp = _mm_shuffle_epi32(tmp, 0xB1);	/* CDAB */
	cdgh = _mm_shuffle_epi32(cdgh, 0x1B);	/* EFGH */
	abef = _mm_alignr_epi8(tmp, cdgh, 8);	/* ABEF */
	cdgh = _mm_blend_epi16(cdgh, tmp, 0xF0);	/* CDGH */

	while (nblocks-- > 0)
	{
		__m128i		abef_save = abef;
		__m128i		cdgh_save = cdgh;
		__m128i		w[4];

		for (int i = 0; i < 16; i++)
		{
			__m128i		m;

			if (i < 4)
				w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *) (data + 16 * i)), bswap);
			else
			{
				__m128i		x = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);

				x = _mm_add_epi32(x, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
				w[i & 3] = _mm_sha256msg2_epu32(x, w[(i + 3) & 3]);
			}
			m = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *) &K[4 * i]));
			cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m);
			m = _mm_shuffle_epi32(m, 0x0E);
			abef = _mm_sha256rnds2_epu32(abef, cdgh, m);
		}
		abef = _mm_add_epi32(abef, abef_save);
		cdgh = _mm_add_epi32(cdgh, cdgh_save);
		data += SHA256_BLOCK_LEN;
	}

	tmp = _mm_shuffle_epi32(abef, 0x1B);	/* FEBA */
	cdgh = _mm_shuffle_epi32(cdgh, 0xB1);	/* DCHG */
	abef = _mm_blend_epi16(tmp, cdgh, 0xF0);	/* DCBA */
	cdgh = _mm_alignr_epi8(cdgh, tmp, 8);	/* HGFE */
	_mm_storeu_si128((__m128i *) &state[0], abef);
	_mm_storeu_si128((__m128i *) &state[4], cdgh);
}

static bool
cpu_has_sha(void)
{
	unsigned int a,
				b,
				c,
				d;

	if (!__get_cpuid(1, &a, &b, &c, &d) ||
		!(c & (1u << 9)) ||		/* SSSE3 */
		!(c & (1u << 19)))		/* SSE4.1 */
		return false;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return (b & (1u << 29)) != 0;	/* SHA */
}
#endif

typedef void (*blocks_fn) (uint32 *state, const uint8 *data, size_t nblocks);

static blocks_fn blocks = NULL;

/* consent.sha256_portable: a developer setting, so that tests run both */
bool		consent_sha256_portable = false;

static inline void
compress(uint32 *state, const uint8 *data, size_t nblocks)
{
	if (unlikely(blocks == NULL))
	{
#ifdef SHA256_X86
		blocks = cpu_has_sha() ? blocks_shani : blocks_portable;
#else
		blocks = blocks_portable;
#endif
	}
	if (unlikely(consent_sha256_portable))
		blocks_portable(state, data, nblocks);
	else
		blocks(state, data, nblocks);
}

bool
sha256_accelerated(void)
{
	uint32		h[8] = {0};
	uint8		zero[SHA256_BLOCK_LEN] = {0};

	compress(h, zero, 1);
	return blocks != blocks_portable;
}

void
sha256_init(Sha256 *s)
{
	static const uint32 iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
	};

	memcpy(s->h, iv, sizeof(iv));
	s->bytes = 0;
	s->used = 0;
}

void
sha256_update(Sha256 *s, const void *data, size_t len)
{
	const uint8 *p = (const uint8 *) data;

	s->bytes += len;
	if (s->used > 0)
	{
		size_t		n = Min(len, (size_t) (SHA256_BLOCK_LEN - s->used));

		memcpy(s->buf + s->used, p, n);
		s->used += n;
		p += n;
		len -= n;
		if (s->used < SHA256_BLOCK_LEN)
			return;
		compress(s->h, s->buf, 1);
		s->used = 0;
	}
	if (len >= SHA256_BLOCK_LEN)
	{
		size_t		n = len / SHA256_BLOCK_LEN;

		compress(s->h, p, n);
		p += n * SHA256_BLOCK_LEN;
		len -= n * SHA256_BLOCK_LEN;
	}
	if (len > 0)
	{
		memcpy(s->buf, p, len);
		s->used = len;
	}
}

void
sha256_final(Sha256 *s, uint8 *out)
{
	uint64		bits = pg_hton64(s->bytes * 8);

	s->buf[s->used++] = 0x80;
	if (s->used > SHA256_BLOCK_LEN - 8)
	{
		memset(s->buf + s->used, 0, SHA256_BLOCK_LEN - s->used);
		compress(s->h, s->buf, 1);
		s->used = 0;
	}
	memset(s->buf + s->used, 0, SHA256_BLOCK_LEN - 8 - s->used);
	memcpy(s->buf + SHA256_BLOCK_LEN - 8, &bits, 8);
	compress(s->h, s->buf, 1);
	for (int i = 0; i < 8; i++)
	{
		uint32		v = pg_hton32(s->h[i]);

		memcpy(out + 4 * i, &v, 4);
	}
}

void
sha256_hmac_key(Sha256Hmac *h, const uint8 *key, size_t keylen)
{
	uint8		pad[SHA256_BLOCK_LEN];

	Assert(keylen <= SHA256_BLOCK_LEN);
	memset(pad, 0, sizeof(pad));
	memcpy(pad, key, keylen);
	for (int i = 0; i < SHA256_BLOCK_LEN; i++)
		pad[i] ^= 0x36;
	sha256_init(&h->inner);
	sha256_update(&h->inner, pad, SHA256_BLOCK_LEN);
	for (int i = 0; i < SHA256_BLOCK_LEN; i++)
		pad[i] ^= 0x36 ^ 0x5c;
	sha256_init(&h->outer);
	sha256_update(&h->outer, pad, SHA256_BLOCK_LEN);
}

void
sha256_hmac(const Sha256Hmac *h,
			const void *msg1, size_t len1,
			const void *msg2, size_t len2,
			const void *msg3, size_t len3,
			uint8 *out)
{
	Sha256		s = h->inner;
	uint8		inner[SHA256_LEN];

	if (len1)
		sha256_update(&s, msg1, len1);
	if (len2)
		sha256_update(&s, msg2, len2);
	if (len3)
		sha256_update(&s, msg3, len3);
	sha256_final(&s, inner);
	s = h->outer;
	sha256_update(&s, inner, SHA256_LEN);
	sha256_final(&s, out);
}
