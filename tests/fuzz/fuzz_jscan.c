// fuzz-sources: -Ilib/http lib/http/jscan.c lib/http/tee.c lib/http/hdr.c
/*
 * fuzz_jscan.c - the shim's pure HTTP policy on any bytes: the JSON
 * scanner (request max_tokens, response usage), the tee fed the input in
 * pieces whose sizes come from the input, and the rate-limit headers
 * (the input split at NULs into header values).  All of it reads bodies
 * and headers from the network, unterminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rh.h"
#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
	"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
	"anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset",
	"anthropic-ratelimit-input-tokens-remaining", "ratelimit-policy", "ratelimit",
};
#define NNAMES (sizeof names / sizeof names[0])

struct vals {
	const char *v[NNAMES];
};

static const char *get(void *ctx, const char *name)
{
	struct vals *vs = ctx;
	size_t i;

	for (i = 0; i < NNAMES; i++)
		if (!strcmp(names[i], name))
			return vs->v[i];
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: any read past the end is caught by ASan. */
	char *buf = malloc(size ? size : 1), *z = malloc(size + 1);
	size_t half = size / 2, off = 0, i = 0;
	struct rh__tee *t = malloc(sizeof *t);
	ratectl_window w[RH_HDR_WINDOWS];
	struct vals vs = { { NULL } };
	uint64_t v;

	if (!buf || !z || !t)
		goto out;
	memcpy(buf, data, size);
	(void)rh__jscan_max_tokens(buf, size, &v);
	(void)rh__jscan_usage(buf, size, buf, size, &v);
	(void)rh__jscan_usage(buf, half, buf + half, size - half, &v);
	/* the tee: piece sizes from the bytes themselves, some large */
	rh__tee_reset(t);
	while (off < size) {
		size_t len = 1 + (size_t)(uint8_t)buf[off] * ((uint8_t)buf[off] & 1 ? 97 : 1);

		len = len > size - off ? size - off : len;
		rh__tee_capture(t, buf + off, len);
		off += len;
	}
	(void)rh__tee_usage(t, &v);
	/* headers: NUL-separated values */
	memcpy(z, data, size);
	z[size] = '\0';
	for (off = 0; off <= size && i < NNAMES; i++) {
		vs.v[i] = z + off;
		off += strlen(z + off) + 1;
	}
	(void)rh__hdr_windows(get, &vs, 1764460800LL * 1000000000LL, w, RH_HDR_WINDOWS);
out:
	free(t);
	free(z);
	free(buf);
	return 0;
}
