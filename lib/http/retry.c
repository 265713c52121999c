/*
 * retry.c - retries: recognising one (the same request failed a moment
 * ago), the backoff before sending one again, and the generator behind
 * its jitter.  Pure: an explicit now, no I/O, no locks (handle.c holds
 * the table under its mutex).
 *
 * Why remember failures and not every request: identical requests are
 * normal (the same prompt sampled twice, a poll); the same request
 * right after a 429, a 5xx or no answer is a retry, whoever sends it.
 */
#include <string.h>

#include "rh.h"

#define BACKOFF_BASE_NS (500 * RH_NS_PER_MS)
#define BACKOFF_CAP_NS (30 * RH_NS_PER_S)

/* A multiply-xorshift mix eight bytes at a time: a long prompt is hashed
 * at memory speed.  Not for adversaries: a collision only makes one
 * request count as a retry of another that failed within the minute. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t w;

	for (; n >= 8; n -= 8, s += 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
		h ^= h >> 29;
	}
	for (w = n; n; n--)
		w = w << 8 | s[n - 1];
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 32);
}

uint64_t rh__request_hash(const char *method, const char *url, const void *body,
                          size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = fnv(h, method, strlen(method) + 1);
	h = fnv(h, url, strlen(url) + 1);
	h = body ? fnv(h, body, len) : h;
	return h ? h : 1;       /* 0 marks an empty slot */
}

/* Open addressing over a few neighbours; the oldest of them is replaced. */
#define PROBES 4

int rh__seen_take(struct rh__seen *s, uint64_t hash, int64_t now)
{
	unsigned i, k;

	for (i = 0; i < PROBES; i++) {
		k = (unsigned)(hash + i) % RH_SEEN_SLOTS;
		if (s->hash[k] == hash) {
			int hit = now - s->at[k] <= RH_SEEN_NS;

			s->hash[k] = 0;
			return hit;
		}
	}
	return 0;
}

void rh__seen_put(struct rh__seen *s, uint64_t hash, int64_t now)
{
	unsigned i, k, old = (unsigned)hash % RH_SEEN_SLOTS;

	for (i = 0; i < PROBES; i++) {
		k = (unsigned)(hash + i) % RH_SEEN_SLOTS;
		if (s->hash[k] == hash || s->hash[k] == 0) {
			old = k;
			break;
		}
		if (s->at[k] < s->at[old])
			old = k;
	}
	s->hash[old] = hash;
	s->at[old] = now;
}

uint64_t rh__rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

int64_t rh__backoff(unsigned attempt, uint64_t r)
{
	int64_t span = BACKOFF_BASE_NS << (attempt < 6 ? attempt : 6);

	if (span > BACKOFF_CAP_NS)
		span = BACKOFF_CAP_NS;
	return (int64_t)(r % (uint64_t)span);
}
