/*
 * shim_jscan - tests and a bounded fuzz of the policy's JSON scanners
 * (lib/http/jscan.c, and usage.c through body.c, compiled in here), run
 * by tests/test_shim.sh.
 *
 *   1. known bodies and responses, with what must be read from them;
 *   2. generated request bodies: random members, strings full of quotes,
 *      backslashes and the key's own text, nested objects with their own
 *      max_tokens; the top-level value must come back exactly;
 *   3. every prefix of those (truncated bodies) and random bytes: nothing
 *      may be read outside the input, which is copied into a buffer of
 *      exactly its size (the asan build catches a byte too far).
 *
 * usage: shim_jscan [ITERATIONS] [SEED]     exit 1 on any failure
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/http/jscan.c"
#include "../../lib/http/usage.c"
#include "../../lib/http/body.c"

static int fails;
static unsigned long long state = 88172645463325252ull;

static unsigned rnd(unsigned n)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return (unsigned)(state % n);
}

static void check(int cond, const char *what, const char *input)
{
	if (!cond && fails++ < 10)
		fprintf(stderr, "shim_jscan: %s: %.200s\n", what, input);
}

/* Scan a private copy of exactly len bytes (no terminator to lean on). */
static int max_of(const char *s, size_t len, uint64_t *v)
{
	char *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, s, len);
	r = rh__jscan_max_tokens(copy, len, v);
	free(copy);
	return r;
}

static int usage_of(const char *s, uint64_t *v)
{
	size_t len = strlen(s);
	char *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, s, len);
	{
		struct rh__body b;

		rh__body_reset(&b);
		rh__body_feed(&b, NULL, copy, len);
		r = rh__body_usage(&b, v);
	}
	free(copy);
	return r;
}

static void known(void)
{
	static const struct { const char *s; int found; uint64_t v; } req[] = {
		{ "{\"model\":\"x\",\"max_tokens\":100}", 1, 100 },
		{ " {\"max_completion_tokens\" : 42 , \"a\":1}", 1, 42 },
		{ "{\"max_tokens\":10,\"max_completion_tokens\":30}", 1, 30 },
		{ "{\"m\":\"\\\"max_tokens\\\": 5\",\"max_tokens\":7}", 1, 7 },
		{ "{\"m\":{\"max_tokens\":5}}", 0, 0 },
		{ "{\"m\":[{\"max_tokens\":5}],\"max_tokens\":9}", 1, 9 },
		{ "{\"max_tokens\":-1}", 0, 0 },
		{ "{\"max_tokens\":1e3}", 0, 0 },
		{ "{\"max_tokens\":100.0}", 1, 100 },
		{ "{\"max_tokens\":12", 0, 0 },
		{ "[{\"max_tokens\":1}]", 0, 0 },
		{ "max_tokens=5&x=1", 0, 0 },
		{ "{\"a\\\\\":\"b\",\"max_tokens\":3}", 1, 3 },
		{ "{\"max_tokens\":99999999999999999999999}", 1, RH_JSCAN_INT_MAX },
		{ "", 0, 0 },
	};
	static const struct { const char *s; int found; uint64_t v; } resp[] = {
		{ "{\"id\":\"x\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,"
		  "\"total_tokens\":15,\"prompt_tokens_details\":{\"cached_tokens\":3}}}", 1, 15 },
		{ "{\"type\":\"message\",\"usage\":{\"input_tokens\":12,\"output_tokens\":30}}", 1, 42 },
		{ "{\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6}}", 1, 10 },
		{ "{\"content\":\"\\\"usage\\\":{\\\"total_tokens\\\":999}\"}", 0, 0 },
		{ "{\"error\":{\"type\":\"rate_limit_exceeded\"}}", 0, 0 },
		{ "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
		  "{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: "
		  "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n", 1, 40 },
		{ "data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
		  "\"completion_tokens\":4,\"total_tokens\":7}}\n\ndata: [DONE]\n\n", 1, 7 },
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof req / sizeof req[0]; i++) {
		int f = max_of(req[i].s, strlen(req[i].s), &v);

		check(f == req[i].found && (!f || v == req[i].v), "max_tokens", req[i].s);
	}
	for (i = 0; i < sizeof resp / sizeof resp[0]; i++) {
		int f = usage_of(resp[i].s, &v);

		check(f == resp[i].found && (!f || v == resp[i].v), "usage", resp[i].s);
	}
}

/* A JSON string with the characters that trip naive scanners; a member
 * name starts with 'k' so that it is never the key itself. */
static void gen_string(char *b, size_t *n, int name)
{
	static const char *const bits[] = {
		"a", "\\\"", "\\\\", "max_tokens", "\\\"max_tokens\\\": 5", "{", "}",
		"[", ":", ",", " ", "\\n", "\\u0022", "usage",
	};
	unsigned k = rnd(8);

	b[(*n)++] = '"';
	if (name)
		b[(*n)++] = 'k';
	while (k--) {
		const char *s = bits[rnd(sizeof bits / sizeof bits[0])];

		memcpy(b + *n, s, strlen(s));
		*n += strlen(s);
	}
	b[(*n)++] = '"';
}

static void gen_value(char *b, size_t *n, int depth)
{
	unsigned k = rnd(depth > 2 ? 3 : 5), i;

	if (k == 0) {
		gen_string(b, n, 0);
	} else if (k == 1 || k == 2) {
		*n += (size_t)sprintf(b + *n, "%u", rnd(100000));
	} else if (k == 3) {            /* a nested object with a decoy */
		*n += (size_t)sprintf(b + *n, "{\"max_tokens\":%u,\"x\":", rnd(50));
		gen_value(b, n, depth + 1);
		b[(*n)++] = '}';
	} else {
		b[(*n)++] = '[';
		for (i = rnd(3); i > 0; i--) {
			gen_value(b, n, depth + 1);
			if (i > 1)
				b[(*n)++] = ',';
		}
		b[(*n)++] = ']';
	}
}

/* {members..., "max_tokens": V, members...} with V at a random place. */
static size_t gen_body(char *b, unsigned *v)
{
	unsigned members = rnd(6), at = rnd(members + 1), i;
	size_t n = 0;

	*v = rnd(1000000);
	b[n++] = '{';
	for (i = 0; i <= members; i++) {
		if (i) {                /* separators with and without blanks */
			if (rnd(2))
				b[n++] = ' ';
			b[n++] = ',';
			if (rnd(2))
				b[n++] = '\n';
		}
		if (i == at) {
			n += (size_t)sprintf(b + n, "\"max_tokens\" :%s%u", rnd(2) ? " " : "", *v);
			continue;
		}
		gen_string(b, &n, 1);
		b[n++] = ':';
		gen_value(b, &n, 0);
	}
	b[n++] = '}';
	return n;
}

static void generated(unsigned iters)
{
	char *b = malloc(1 << 16);
	unsigned i, v;
	uint64_t got;

	for (i = 0; i < iters; i++) {
		size_t n = gen_body(b, &v), cut;

		b[n] = '\0';
		check(max_of(b, n, &got) == 1 && got == v, "generated body", b);
		cut = rnd((unsigned)n);         /* a truncated body: must not crash */
		max_of(b, cut, &got);
	}
	for (i = 0; i < iters; i++) {   /* random bytes from JSON's alphabet */
		static const char alpha[] = "{}[]\":,\\ 0123456789usagemax_tokens";
		size_t n = rnd(200), k;

		for (k = 0; k < n; k++)
			b[k] = alpha[rnd(sizeof alpha - 1)];
		max_of(b, n, &got);
		b[n] = '\0';
		usage_of(b, &got);
	}
	free(b);
}

int main(int argc, char **argv)
{
	unsigned iters = argc > 1 ? (unsigned)atoi(argv[1]) : 20000;

	if (argc > 2)
		state = strtoull(argv[2], NULL, 10) | 1;
	known();
	generated(iters);
	printf("jscan: %u generated bodies, %d failures\n", iters, fails);
	return fails ? 1 : 0;
}
