// fuzz-sources: -Ilib/http lib/http/jcanon.c -ljansson
/*
 * fuzz_jcanon.c - the request body's canonical form (jcanon.c), the
 * response cache's key, on any bytes.  Checked, not just run: the form is
 * never longer than the text; the form of a form is itself; and, against
 * jansson as a referee, every text jansson reads (without duplicate keys,
 * nesting at most 64, no raw NUL byte, no backslash: a key written with an
 * escape has no form) has a form, and that form reads as the same JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* How deep a JSON value nests (jansson's tree). */
static int depth(json_t *v)
{
	size_t i;
	const char *k;
	json_t *x;
	int d = 0, e;

	if (json_is_array(v))
		json_array_foreach(v, i, x)
			if ((e = depth(x)) > d)
				d = e;
	if (json_is_object(v))
		json_object_foreach(v, k, x)
			if ((e = depth(x)) > d)
				d = e;
	return d + (json_is_array(v) || json_is_object(v));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *out = malloc(size + 1), *again = malloc(size + 1);
	const char *text = (const char *)data;
	struct rh__jcanon_top top;
	size_t n = 0, m = 0;
	json_t *a, *b;
	int rc;

	if (!out || !again)
		abort();
	rc = rh__jcanon(text, size, out, &n, &top);
	if (rc == 0) {
		if (n > size)
			abort();
		if (rh__jcanon(out, n, again, &m, NULL) != 0 || m != n ||
		    memcmp(out, again, n) != 0)
			abort();
	}
	/* jansson takes a raw NUL byte for the end of the text: not JSON,
	 * and not a text it can referee. */
	a = memchr(text, 0, size) ? NULL :
	    json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
	               JSON_ALLOW_NUL, NULL);
	if (a && depth(a) <= 64) {
		/* jansson reads it: it has a form, unless a key may be
		 * written with an escape (those have none, see jcanon.c) */
		if (rc != 0 && !memchr(text, '\\', size))
			abort();
		if (rc != 0) {
			json_decref(a);
			goto out;
		}
		b = json_loadb(out, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		if (!b || !json_equal(a, b))
			abort();
		json_decref(b);
	}
	json_decref(a);
out:
	free(out);
	free(again);
	return 0;
}
