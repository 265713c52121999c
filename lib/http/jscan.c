/*
 * jscan.c - reading a few integers out of JSON text without a JSON library
 * (see jscan.h for why).  Every function stays within text[0..len) and
 * treats anything unexpected as "not found".
 */
#include <string.h>

#include "jscan.h"

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_blank(const char *p, const char *end)
{
	while (p < end && is_blank(*p))
		p++;
	return p;
}

/*
 * p is at a string's opening quote: return the position after its closing
 * quote, or end when it is not closed.  memchr() finds the candidate
 * quotes, so long prompts cost little; a quote preceded by an odd number
 * of backslashes is escaped.
 */
static const char *skip_string(const char *p, const char *end)
{
	const char *from = p + 1;

	while (from < end) {
		const char *q = memchr(from, '"', (size_t)(end - from));
		const char *b;

		if (!q)
			return end;
		for (b = q; b > from && b[-1] == '\\'; b--)
			;
		if (((q - b) & 1) == 0)
			return q + 1;
		from = q + 1;
	}
	return end;
}

/*
 * A non-negative integer at p, followed by something that ends a JSON
 * number: a number cut short by the end of the text is not trusted.
 * A fraction is dropped ("100.0"); an exponent is refused.
 */
static int read_uint(const char *p, const char *end, uint64_t *v, const char **after)
{
	uint64_t x = 0;
	const char *s = p;

	while (p < end && *p >= '0' && *p <= '9') {
		if (x < RH_JSCAN_INT_MAX)
			x = x * 10 + (uint64_t)(*p - '0');
		p++;
	}
	if (p == s)
		return 0;
	if (p < end && *p == '.')
		for (p++; p < end && *p >= '0' && *p <= '9'; p++)
			;
	if (p == end || *p == 'e' || *p == 'E' || *p == '-' || *p == '+')
		return 0;
	*v = x < RH_JSCAN_INT_MAX ? x : RH_JSCAN_INT_MAX;
	*after = p;
	return 1;
}

static int key_index(const char *k, size_t klen, const char *const *keys,
                     unsigned nkeys)
{
	unsigned i;

	for (i = 0; i < nkeys; i++)
		if (strlen(keys[i]) == klen && memcmp(keys[i], k, klen) == 0)
			return (int)i;
	return -1;
}

unsigned rh__jscan_members(const char *text, size_t len, const char *const *keys,
                       unsigned nkeys, uint64_t *out)
{
	const char *end = text + len;
	const char *p = skip_blank(text, end);
	unsigned found = 0;
	int depth = 1;

	if (nkeys > 16 || p == end || *p != '{')
		return 0;
	for (p++; p < end;) {
		const char *ks, *q;
		uint64_t v;
		int i;

		if (*p != '"') {
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				break;
			p++;
			continue;
		}
		ks = p + 1;
		p = skip_string(p, end);
		if (depth != 1 || p == end)
			continue;
		/* At depth 1 a string followed by ':' is a member name. */
		q = skip_blank(p, end);
		if (q == end || *q != ':')
			continue;
		i = key_index(ks, (size_t)(p - 1 - ks), keys, nkeys);
		p = skip_blank(q + 1, end);
		if (i < 0 || (found & (1u << i)) || !read_uint(p, end, &v, &q))
			continue;
		out[i] = v;
		found |= 1u << i;
		p = q;
	}
	return found;
}

int rh__jscan_max_tokens(const char *body, size_t len, uint64_t *max)
{
	static const char *const keys[] = {
		"max_tokens", "max_completion_tokens", "max_output_tokens"
	};
	uint64_t v[3] = { 0, 0, 0 };
	unsigned f = rh__jscan_members(body, len, keys, 3, v);

	if (!f)
		return 0;
	/* Several present: the API takes one; charge the largest. */
	*max = v[0] > v[1] ? v[0] : v[1];
	*max = *max > v[2] ? *max : v[2];
	return 1;
}

int rh__jscan_string(const char *text, size_t len, const char *key, char *out,
                     size_t cap)
{
	const char *end = text + len;
	const char *p = skip_blank(text, end);
	size_t klen = strlen(key);
	int depth = 1;

	if (p == end || *p != '{' || cap == 0)
		return 0;
	for (p++; p < end;) {
		const char *ks, *q, *vs;

		if (*p != '"') {
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				break;
			p++;
			continue;
		}
		ks = p + 1;
		p = skip_string(p, end);
		if (depth != 1 || p == end)
			continue;
		q = skip_blank(p, end);
		if (q == end || *q != ':' || (size_t)(p - 1 - ks) != klen ||
		    memcmp(ks, key, klen) != 0)
			continue;
		q = skip_blank(q + 1, end);
		if (q == end || *q != '"')
			return 0;
		vs = q + 1;
		p = skip_string(q, end);
		if (p == end && p[-1] != '"')
			return 0;       /* cut short */
		/* A model name has no escapes; one that has any is not matched
		 * rather than matched wrongly. */
		if ((size_t)(p - 1 - vs) >= cap || memchr(vs, '\\', (size_t)(p - 1 - vs)))
			return 0;
		memcpy(out, vs, (size_t)(p - 1 - vs));
		out[p - 1 - vs] = '\0';
		return 1;
	}
	return 0;
}
