/*
 * jcanon.c - a request body in a canonical form, for the response cache's
 * key (cache.c): the JSON text checked against RFC 8259's grammar, with
 * the blanks between tokens removed and every object's members sorted by
 * their keys.  Two clients that write one request with members in other
 * orders, or spaced otherwise, get one key; two different requests never
 * do (the form keeps every token as written, so it is one-to-one).
 *
 * Why not jansson: as for jscan.h, the shim lives in arbitrary programs,
 * which may carry their own JSON library; and a tree of objects built and
 * freed per request cost about 10 us where this costs well under one.
 * Strings and numbers are kept as written (escapes not decoded, "0.0"
 * not made "0"): two spellings of one value are two keys, which costs a
 * miss, never a wrong answer.  Duplicate keys make no canonical form (a
 * reader may take either value), nor do keys written with an escape
 * (which could spell a duplicate): such a body is not cached.
 */
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

#define DEPTH_MAX 64
#define INLINE_MEMBERS 16

struct canon {
	const char *p, *end;
	char *out;                 /* at least end - p bytes */
	size_t n;
	int depth;
	/* the top-level object's members the policy asks about */
	int top;
	const char *temp, *stream; /* their values as written, or NULL */
	size_t temp_len, stream_len;
};

static void skip_ws(struct canon *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' ||
	                         *c->p == '\r'))
		c->p++;
}

static int hex(char x)
{
	return (x >= '0' && x <= '9') || (x >= 'a' && x <= 'f') || (x >= 'A' && x <= 'F');
}

/* A string at c->p (its quote), copied as written. */
static int string(struct canon *c)
{
	const char *s = c->p++;

	while (c->p < c->end) {
		unsigned char x = (unsigned char)*c->p;

		if (x == '"') {
			c->p++;
			memcpy(c->out + c->n, s, (size_t)(c->p - s));
			c->n += (size_t)(c->p - s);
			return 0;
		}
		if (x < 0x20)
			return -1;
		if (x == '\\') {
			if (c->end - c->p < 2)
				return -1;
			switch (c->p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f':
			case 'n': case 'r': case 't':
				c->p += 2;
				continue;
			case 'u':
				if (c->end - c->p < 6 || !hex(c->p[2]) || !hex(c->p[3]) ||
				    !hex(c->p[4]) || !hex(c->p[5]))
					return -1;
				c->p += 6;
				continue;
			default:
				return -1;
			}
		}
		c->p++;
	}
	return -1;
}

static int digits(struct canon *c)
{
	const char *s = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return c->p > s ? 0 : -1;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, as written.  A number
 * must be followed by something that ends it (not cut by the end). */
static int number(struct canon *c)
{
	const char *s = c->p;

	if (*c->p == '-')
		c->p++;
	if (c->p < c->end && *c->p == '0')
		c->p++;
	else if (digits(c) != 0)
		return -1;
	if (c->p < c->end && *c->p == '.') {
		c->p++;
		if (digits(c) != 0)
			return -1;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (digits(c) != 0)
			return -1;
	}
	memcpy(c->out + c->n, s, (size_t)(c->p - s));
	c->n += (size_t)(c->p - s);
	return 0;
}

static int literal(struct canon *c, const char *w, size_t len)
{
	if ((size_t)(c->end - c->p) < len || memcmp(c->p, w, len) != 0)
		return -1;
	memcpy(c->out + c->n, w, len);
	c->n += len;
	c->p += len;
	return 0;
}

static int value(struct canon *c);

/* One member of an object as written into out: key at key, its length,
 * and the whole "key":value at off, len. */
struct member {
	size_t key, key_len, off, len;
};

static int key_cmp(const char *base, const struct member *a, const struct member *b)
{
	size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
	int d = memcmp(base + a->key, base + b->key, n);

	return d ? d : (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

static int member_cmp(const void *a, const void *b, void *base)
{
	return key_cmp(base, a, b);
}

/* n log n whatever the body (a flat object of 100,000 keys is a body a
 * client may send): glibc's qsort_r, which passes the text along. */
static void sort_members(const char *base, struct member *m, size_t n)
{
	qsort_r(m, n, sizeof *m, member_cmp, (void *)base);
}

static int object(struct canon *c)
{
	struct member inl[INLINE_MEMBERS], *m = inl, *grown;
	size_t n = 0, cap = INLINE_MEMBERS, start, i, at;
	int top = c->depth == 1, rc = -1;
	char *tmp = NULL;

	c->p++;                                  /* { */
	start = c->n;
	c->out[c->n++] = '{';
	skip_ws(c);
	if (c->p < c->end && *c->p == '}') {
		c->p++;
		c->out[c->n++] = '}';
		return 0;
	}
	for (;;) {
		struct member *x;

		if (n == cap) {
			cap *= 2;
			if (!(grown = m == inl ? malloc(cap * sizeof *m) :
			              realloc(m, cap * sizeof *m)))
				goto out;
			if (m == inl)
				memcpy(grown, inl, sizeof inl);
			m = grown;
		}
		x = &m[n++];
		skip_ws(c);
		if (c->p >= c->end || *c->p != '"')
			goto out;
		x->off = c->n;
		x->key = c->n;
		if (string(c) != 0)
			goto out;
		x->key_len = c->n - x->key;
		/* A key written with an escape ("\u0069nput") is the same key
		 * as another spelling: sorted and compared as written, the two
		 * could be taken for two members, and two bodies a reader sees
		 * differently would have one form.  No form, not cached. */
		if (memchr(c->out + x->key, '\\', x->key_len))
			goto out;
		skip_ws(c);
		if (c->p >= c->end || *c->p != ':')
			goto out;
		c->p++;
		c->out[c->n++] = ':';
		skip_ws(c);
		{
			const char *vs = c->p;

			if (value(c) != 0)
				goto out;
			if (top) {
				size_t kl = x->key_len, vl = (size_t)(c->p - vs);
				const char *k = c->out + x->key;

				if (kl == 13 && memcmp(k, "\"temperature\"", 13) == 0) {
					c->temp = vs;
					c->temp_len = vl;
				} else if (kl == 8 && memcmp(k, "\"stream\"", 8) == 0) {
					c->stream = vs;
					c->stream_len = vl;
				}
			}
		}
		x->len = c->n - x->off;
		skip_ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (c->p < c->end && *c->p == '}') {
			c->p++;
			break;
		}
		goto out;
	}
	/* The members in the order of their keys; a key twice: no form. */
	sort_members(c->out, m, n);
	for (i = 1; i < n; i++)
		if (key_cmp(c->out, &m[i - 1], &m[i]) == 0)
			goto out;
	if (!(tmp = malloc(c->n - start)))
		goto out;
	memcpy(tmp, c->out + start, c->n - start);
	at = start + 1;
	for (i = 0; i < n; i++) {
		if (i)
			c->out[at++] = ',';
		memcpy(c->out + at, tmp + (m[i].off - start), m[i].len);
		at += m[i].len;
	}
	c->out[at++] = '}';
	c->n = at;
	rc = 0;
out:
	free(tmp);
	if (m != inl)
		free(m);
	return rc;
}

static int array(struct canon *c)
{
	c->p++;                                  /* [ */
	c->out[c->n++] = '[';
	skip_ws(c);
	if (c->p < c->end && *c->p == ']') {
		c->p++;
		c->out[c->n++] = ']';
		return 0;
	}
	for (;;) {
		skip_ws(c);
		if (value(c) != 0)
			return -1;
		skip_ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			c->out[c->n++] = ',';
			continue;
		}
		if (c->p < c->end && *c->p == ']') {
			c->p++;
			c->out[c->n++] = ']';
			return 0;
		}
		return -1;
	}
}

static int value(struct canon *c)
{
	int rc;

	if (c->p >= c->end)
		return -1;
	switch (*c->p) {
	case '{':
	case '[':
		if (++c->depth > DEPTH_MAX)
			return -1;
		rc = *c->p == '{' ? object(c) : array(c);
		c->depth--;
		return rc;
	case '"':
		return string(c);
	case 't':
		return literal(c, "true", 4);
	case 'f':
		return literal(c, "false", 5);
	case 'n':
		return literal(c, "null", 4);
	default:
		if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))
			return number(c);
		return -1;
	}
}

/* A number token that is zero: its digits before the exponent all 0. */
static int is_zero(const char *v, size_t len)
{
	size_t i;

	if (!v || len == 0)
		return 0;
	for (i = *v == '-'; i < len && v[i] != 'e' && v[i] != 'E'; i++)
		if (v[i] != '0' && v[i] != '.')
			return 0;
	return v[*v == '-'] == '0';
}

int rh__jcanon(const char *text, size_t len, char *out, size_t *out_len,
               struct rh__jcanon_top *top)
{
	struct canon c;

	memset(&c, 0, sizeof c);
	c.p = text;
	c.end = text + len;
	c.out = out;
	skip_ws(&c);
	if (value(&c) != 0)
		return -1;
	skip_ws(&c);
	if (c.p != c.end)
		return -1;
	*out_len = c.n;
	if (top) {
		top->object = len > 0 && out[0] == '{';
		top->temperature_zero = is_zero(c.temp, c.temp_len);
		top->has_temperature = c.temp != NULL;
		top->stream = c.stream && !(c.stream_len == 5 && memcmp(c.stream, "false", 5) == 0) &&
		              !(c.stream_len == 4 && memcmp(c.stream, "null", 4) == 0);
	}
	return 0;
}
