// fuzz-sources: -Ilib/http lib/http/match.c lib/http/sha256.c -ldl
/*
 * fuzz_http_keyid.c - key ids (ratectl_http_key_id(), rh__key_id_of()) on
 * any bytes, checked against the rule of ratectl.conf(5), not just run:
 *   - the id is 16 lower-case hex digits, or -EINVAL exactly when nothing
 *     is left once blanks and a leading "Bearer" are taken off;
 *   - it is the first 8 bytes of the SHA-256 of what is left, computed by
 *     the system's libcrypto (loaded with dlopen when present, so the
 *     target needs no crypto headers): lib/http/sha256.c at every length
 *     and padding boundary the fuzzer reaches;
 *   - surrounding blanks and a "Bearer " in front do not change the id;
 *   - rh__key_id_of() picks x-api-key, else Authorization, else api-key,
 *     whatever the names' case and order.
 * The key is passed in a block of exactly its size, so that ASan catches
 * a read past it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef unsigned char *(*sha256_fn)(const unsigned char *d, size_t n, unsigned char *md);
static sha256_fn ref_sha256;
static int ref_tried;

static void load_reference(void)
{
	static const char *const names[] = { "libcrypto.so.3", "libcrypto.so" };
	size_t i;
	void *lib;

	ref_tried = 1;
	for (i = 0; i < sizeof names / sizeof names[0] && !ref_sha256; i++)
		if ((lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL)))
			ref_sha256 = (sha256_fn)(uintptr_t)dlsym(lib, "SHA256");
	if (!ref_sha256)
		fprintf(stderr, "fuzz_http_keyid: no libcrypto SHA256: ids are not "
		        "compared with a reference\n");
}

static int blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The documented rule, written out independently: what is hashed. */
static void rule(const char *k, size_t n, const char **s, size_t *len)
{
	const char *b = k, *e = k + n;

	while (b < e && blank(*b))
		b++;
	while (e > b && blank(e[-1]))
		e--;
	if (e - b >= 6 && strncasecmp(b, "bearer", 6) == 0 && (e - b == 6 || blank(b[6]))) {
		b += 6;
		while (b < e && blank(*b))
			b++;
	}
	*s = b;
	*len = (size_t)(e - b);
}

/* Whether k, without its blanks, starts with the word "Bearer". */
static int bearer_first(const char *k, size_t n)
{
	const char *s;
	size_t len, i = 0;

	while (i < n && blank(k[i]))
		i++;
	rule(k, n, &s, &len);
	return s != k + i;
}

/* The id of k[0..n) from an exact-size copy; rc returned, id into out. */
static int id_of(const char *k, size_t n, char out[RATECTL_HTTP_KEY_ID_LEN + 1])
{
	char *copy = malloc(n ? n : 1);
	int rc;

	if (!copy)
		abort();
	memcpy(copy, k, n);
	memset(out, 'X', RATECTL_HTTP_KEY_ID_LEN + 1);
	rc = ratectl_http_key_id(out, copy, n);
	free(copy);
	return rc;
}

static void check_id(const char *id)
{
	int i;

	for (i = 0; i < RATECTL_HTTP_KEY_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			abort();
	if (id[RATECTL_HTTP_KEY_ID_LEN] != '\0')
		abort();
}

/* The id agrees with the reference SHA-256 of what the rule leaves. */
static void check_reference(const char *id, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	int i;

	if (!ref_sha256)
		return;
	ref_sha256((const unsigned char *)s, len, md);
	for (i = 0; i < RATECTL_HTTP_KEY_ID_LEN / 2; i++)
		if (id[2 * i] != hex[md[i] >> 4] || id[2 * i + 1] != hex[md[i] & 15])
			abort();
}

/* Request headers from the input: which key header is read. */
static void check_headers(const uint8_t *data, size_t size)
{
	static const char *const names[] = {
		"x-api-key", "Authorization", "API-KEY", "X-Api-Key", "authorization",
		"api-key", "content-type", "x-api-keys"
	};
	ratectl_http_header h[4];
	char vals[4][64], id[RH_KEY_ID_LEN + 1], want[RH_KEY_ID_LEN + 1];
	const char *pick = NULL;
	size_t n = 0, i, p, k;
	int got, prio;
	int best = 99;

	/* up to 4 headers, each a byte for its name and a cut of the rest
	 * for its value */
	for (i = 0, p = 0; i < 4 && p < size; i++) {
		h[i].name = names[data[p++] & 7];
		k = (size - p) / (4 - i);
		k = k > 63 ? 63 : k;
		memcpy(vals[i], data + p, k);
		vals[i][k] = '\0';
		h[i].value = vals[i];
		p += k;
		n++;
	}
	for (i = 0; i < n; i++) {
		prio = strcasecmp(h[i].name, "x-api-key") == 0 ? 0 :
			strcasecmp(h[i].name, "authorization") == 0 ? 1 :
			strcasecmp(h[i].name, "api-key") == 0 ? 2 : 99;
		if (prio < best) {
			best = prio;
			pick = h[i].value;
		}
	}
	got = rh__key_id_of(h, n, id);
	if (!pick) {
		if (got)
			abort();
		return;
	}
	if (got != (ratectl_http_key_id(want, pick, strlen(pick)) == 0))
		abort();
	if (got && strcmp(id, want) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[RATECTL_HTTP_KEY_ID_LEN + 1], id2[RATECTL_HTTP_KEY_ID_LEN + 1];
	const char *k = (const char *)data, *s, *s2;
	size_t len, len2;
	char *wrapped;
	int rc;

	if (!ref_tried)
		load_reference();
	rule(k, size, &s, &len);
	rc = id_of(k, size, id);
	if (len == 0) {
		if (rc != -EINVAL)
			abort();
	} else {
		if (rc != 0)
			abort();
		check_id(id);
		check_reference(id, s, len);
		/* Blanks around it and a "Bearer " before it: one key, one id
		 * (unless what is left is itself "Bearer ...": one goes). */
		if (!(wrapped = malloc(size + 12)))
			abort();
		memcpy(wrapped, " \tBearer  ", 10);
		memcpy(wrapped + 10, k, size);
		memcpy(wrapped + 10 + size, "\r\n", 2);
		if (id_of(wrapped, size + 12, id2) != 0)
			abort();
		check_id(id2);
		rule(wrapped, size + 12, &s2, &len2);
		check_reference(id2, s2, len2);
		if (!bearer_first(k, size) && strcmp(id, id2) != 0)
			abort();
		free(wrapped);
	}
	check_headers(data, size);
	return 0;
}
