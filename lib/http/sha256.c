/*
 * sha256.c - SHA-256 (FIPS 180-4), for key ids only.  Written out here
 * rather than linked from a crypto library: libratectl-http is loaded
 * into arbitrary programs by the preload shim, which must not bring a
 * libcrypto of its own beside theirs.  Checked against the FIPS vectors
 * in tests/test_http.c.
 */
#include <string.h>

#include "rh.h"

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(uint32_t st[8], const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (; i < 64; i++)
		w[i] = (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10)) + w[i - 7] +
		       (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) + w[i - 16];
	a = st[0], b = st[1], c = st[2], d = st[3];
	e = st[4], f = st[5], g = st[6], h = st[7];
	for (i = 0; i < 64; i++) {
		t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g, g = f, f = e, e = d + t1;
		d = c, c = b, b = a, a = t1 + t2;
	}
	st[0] += a, st[1] += b, st[2] += c, st[3] += d;
	st[4] += e, st[5] += f, st[6] += g, st[7] += h;
}

/* ---- SHA extensions (x86) --------------------------------------------------
 *
 * The same compression with the CPU's SHA instructions when it has them
 * (CPUID 7.0:EBX bit 29), about six times faster: the response cache hashes
 * every cacheable request's body.  The message schedule runs four words
 * at a time, SHA256MSG1 and SHA256MSG2 a group ahead of the rounds.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define HAVE_SHA_NI 1

__attribute__((target("sha,sse4.1,ssse3")))
static void block_ni(uint32_t st[8], const uint8_t *p)
{
	const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i s0, s1, tmp, msg, m[4], abef, cdgh;
	int g;

	tmp = _mm_loadu_si128((const __m128i *)&st[0]);
	s1 = _mm_loadu_si128((const __m128i *)&st[4]);
	tmp = _mm_shuffle_epi32(tmp, 0xB1);          /* CDAB */
	s1 = _mm_shuffle_epi32(s1, 0x1B);            /* EFGH */
	s0 = _mm_alignr_epi8(tmp, s1, 8);            /* ABEF */
	s1 = _mm_blend_epi16(s1, tmp, 0xF0);         /* CDGH */
	abef = s0;
	cdgh = s1;
#pragma GCC unroll 16
	for (g = 0; g < 16; g++) {
		if (g < 4)
			m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)),
			                        mask);
		msg = _mm_add_epi32(m[g % 4], _mm_loadu_si128((const __m128i *)&K[4 * g]));
		s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
		if (g >= 3 && g <= 14) {
			tmp = _mm_alignr_epi8(m[g % 4], m[(g + 3) % 4], 4);
			m[(g + 1) % 4] = _mm_add_epi32(m[(g + 1) % 4], tmp);
			m[(g + 1) % 4] = _mm_sha256msg2_epu32(m[(g + 1) % 4], m[g % 4]);
		}
		msg = _mm_shuffle_epi32(msg, 0x0E);
		s0 = _mm_sha256rnds2_epu32(s0, s1, msg);
		if (g >= 1 && g <= 12)
			m[(g + 3) % 4] = _mm_sha256msg1_epu32(m[(g + 3) % 4], m[g % 4]);
	}
	s0 = _mm_add_epi32(s0, abef);
	s1 = _mm_add_epi32(s1, cdgh);
	tmp = _mm_shuffle_epi32(s0, 0x1B);           /* FEBA */
	s1 = _mm_shuffle_epi32(s1, 0xB1);            /* DCHG */
	s0 = _mm_blend_epi16(tmp, s1, 0xF0);         /* DCBA */
	s1 = _mm_alignr_epi8(s1, tmp, 8);            /* ABEF */
	_mm_storeu_si128((__m128i *)&st[0], s0);
	_mm_storeu_si128((__m128i *)&st[4], s1);
}

static int cpu_has_sha(void)
{
	unsigned a, b, c, d;

	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 29) & 1;
}
#endif

/* -1 not yet asked, 0 the portable code, 1 the SHA instructions; tests
 * set 0 to check the portable code on a machine that has them. */
int rh__sha256_ni = -1;

static void compress(uint32_t st[8], const uint8_t *p)
{
#ifdef HAVE_SHA_NI
	int ni = __atomic_load_n(&rh__sha256_ni, __ATOMIC_RELAXED);

	if (ni < 0) {
		ni = cpu_has_sha();
		__atomic_store_n(&rh__sha256_ni, ni, __ATOMIC_RELAXED);
	}
	if (ni) {
		block_ni(st, p);
		return;
	}
#endif
	block(st, p);
}

void rh__sha256_init(struct rh__sha256_ctx *c)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

	memcpy(c->st, iv, sizeof iv);
	c->nbuf = 0;
	c->len = 0;
}

void rh__sha256_update(struct rh__sha256_ctx *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t k;

	c->len += len;
	if (c->nbuf) {
		k = 64 - c->nbuf < len ? 64 - c->nbuf : len;
		memcpy(c->buf + c->nbuf, p, k);
		c->nbuf += k;
		p += k;
		len -= k;
		if (c->nbuf < 64)
			return;
		compress(c->st, c->buf);
		c->nbuf = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		compress(c->st, p);
	memcpy(c->buf, p, len);
	c->nbuf = len;
}

void rh__sha256_final(struct rh__sha256_ctx *c, uint8_t out[32])
{
	uint64_t bits = c->len * 8;
	uint8_t pad[72];
	size_t n = c->nbuf < 56 ? 56 - c->nbuf : 120 - c->nbuf;
	int i;

	memset(pad, 0, sizeof pad);
	pad[0] = 0x80;
	for (i = 0; i < 8; i++)
		pad[n + 7 - i] = (uint8_t)(bits >> (8 * i));
	rh__sha256_update(c, pad, n + 8);
	for (i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(c->st[i] >> 24);
		out[4 * i + 1] = (uint8_t)(c->st[i] >> 16);
		out[4 * i + 2] = (uint8_t)(c->st[i] >> 8);
		out[4 * i + 3] = (uint8_t)c->st[i];
	}
	/* A key's hash is as secret as the key for a moment: wipe the state. */
	memset(c, 0, sizeof *c);
}

void rh__sha256(const void *data, size_t len, uint8_t out[32])
{
	struct rh__sha256_ctx c;

	rh__sha256_init(&c);
	rh__sha256_update(&c, data, len);
	rh__sha256_final(&c, out);
}
