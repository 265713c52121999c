// fuzz-sources: -Ilib/http lib/http/jscan.c lib/http/hdr.c lib/http/body.c lib/http/usage.c
/*
 * fuzz_jscan.c - the pure parts of the HTTP policy on any bytes: the
 * request-body reader (model, max_tokens: jscan.c), a response body fed
 * to body.c in pieces whose sizes come from the input, and the rate-limit
 * headers (the input split at NULs into header values: hdr.c).  All of it
 * reads bodies and headers from the network, unterminated.  Checked, not
 * just run: a model read is a string the body holds between quotes,
 * without quote or escape, within its buffer; max_tokens is capped;
 * blanks before the body change neither; and a response body's usage does
 * not depend on how it is cut, under each Content-Type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rh.h"

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

/* The request-body reader: what begin() takes from a body. */
static void check_request(const char *body, size_t size)
{
	char model[128], model2[128], quoted[130], *padded;
	uint64_t max = 0, max2 = 0;
	int has_model, has_max;
	size_t n;

	memset(model, 'X', sizeof model);
	has_model = rh__jscan_string(body, size, "model", model, sizeof model);
	has_max = rh__jscan_max_tokens(body, size, &max);
	if (has_model) {
		n = strnlen(model, sizeof model);
		if (n == sizeof model || strpbrk(model, "\"\\"))
			abort();
		/* The body holds it after a quote.  (Its closing quote is not
		 * checked: a raw NUL, which JSON forbids in a string, is copied
		 * and cuts the C string short.) */
		quoted[0] = '"';
		memcpy(quoted + 1, model, n);
		if (!memmem(body, size, quoted, n + 1))
			abort();
	}
	if (has_max && max > RH_JSCAN_INT_MAX)
		abort();
	/* The same body after blanks: the same model and max_tokens. */
	if (!(padded = malloc(size + 3)))
		abort();
	memcpy(padded, " \r\n", 3);
	memcpy(padded + 3, body, size);
	if (rh__jscan_string(padded, size + 3, "model", model2, sizeof model2) != has_model ||
	    (has_model && strcmp(model, model2) != 0) ||
	    rh__jscan_max_tokens(padded, size + 3, &max2) != has_max ||
	    (has_max && max != max2))
		abort();
	free(padded);
}

/* Usage of body[0..size) fed to body.c whole, or in pieces whose sizes
 * come from the bytes themselves (some large), each in its own block. */
static int body_usage(const char *ct, const char *buf, size_t size, int cut,
                      uint64_t *tokens)
{
	struct rh__body *b = malloc(sizeof *b);
	size_t off = 0, len;
	char *piece;
	int got;

	if (!b)
		abort();
	rh__body_reset(b);
	while (off < size) {
		len = !cut ? size : 1 + (size_t)(uint8_t)buf[off] *
			((uint8_t)buf[off] & 1 ? 97 : 1);
		len = len > size - off ? size - off : len;
		if (!(piece = malloc(len)))
			abort();
		memcpy(piece, buf + off, len);
		rh__body_feed(b, ct, piece, len);
		free(piece);
		off += len;
	}
	*tokens = 0;
	got = rh__body_usage(b, tokens);
	free(b);
	return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = { NULL, "text/event-stream; charset=utf-8",
	                                     "application/json" };
	/* An exact-size copy: any read past the end is caught by ASan. */
	char *buf = malloc(size ? size : 1), *z = malloc(size + 1);
	size_t off = 0, i = 0;
	ratectl_window w[RH_HDR_WINDOWS];
	struct vals vs = { { NULL } };
	uint64_t a, b;

	if (!buf || !z)
		goto out;
	memcpy(buf, data, size);
	check_request(buf, size);
	for (i = 0; i < sizeof types / sizeof types[0]; i++)
		if (body_usage(types[i], buf, size, 0, &a) != body_usage(types[i], buf, size, 1, &b) ||
		    a != b)
			abort();
	/* headers: NUL-separated values */
	memcpy(z, data, size);
	z[size] = '\0';
	for (off = 0, i = 0; off <= size && i < NNAMES; i++) {
		vs.v[i] = z + off;
		off += strlen(z + off) + 1;
	}
	(void)rh__hdr_windows(get, &vs, 1764460800LL * 1000000000LL, w, RH_HDR_WINDOWS);
out:
	free(z);
	free(buf);
	return 0;
}
