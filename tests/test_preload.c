/*
 * test_preload.c - the preload shim's pure parts in-process (no libcurl,
 * no LD_PRELOAD), so that ASan and UBSan see them: the held body
 * (tools/preload/tee.c), the program's header list read and copied
 * without ratectl's own headers (hdrs.c, and with the policy: a tenant
 * header of 63 to 66 bytes and 1 MiB), and the parts of libratectl-http
 * it relied on:
 * usage read from a body as it streams (lib/http/body.c over usage.c),
 * providers' rate-limit headers (hdr.c), refusal messages (msg.c) and
 * the JSON scanner (jscan.c); and an answer from the response cache as
 * the shim gives it to a program: its head (hdrs.c) and its delivery to
 * the program's callbacks by libcurl's rules (tee.c).  Every fixed buffer
 * and cap is tried at its size - 1, size, size + 1 and 10 x size; bodies
 * are fed in pieces of many sizes, short ones at every split.
 */
#include <curl/curl.h>          /* CURL_ERROR_SIZE only: nothing is linked */

#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"
#include "http.h"
#include "rh.h"

static const size_t pieces[] = {
	1, 2, 7, 100, 2047, 2048, 2049, 4095, 4096, 8191, 8192, 8193, 16384, 65536,
};
#define NPIECES (sizeof pieces / sizeof pieces[0])

/* A body of n deterministic bytes, in a block of exactly n (ASan). */
static char *body(size_t n, unsigned seed)
{
	char *p = malloc(n ? n : 1);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < n; i++)
		p[i] = (char)('a' + (i * 7 + seed) % 26);
	return p;
}

static struct shim_tee *tee_new(void)
{
	struct shim_tee *t = malloc(sizeof *t);

	assert_non_null(t);
	memset(t, 0x5a, sizeof *t);
	shim_tee_reset(t, 0);
	return t;
}

static void test_tee_held_at_its_size(void **state)
{
	const size_t sizes[] = { SHIM_HELD_MAX - 1, SHIM_HELD_MAX, SHIM_HELD_MAX + 1,
	                         10 * SHIM_HELD_MAX };
	unsigned i, k;

	(void)state;
	for (i = 0; i < 4; i++)
		for (k = 0; k < NPIECES; k += 3) {
			size_t n = sizes[i], off = 0, kk = k;
			char *p = body(n, i);
			struct shim_tee *t = tee_new();
			int refused = 0;

			while (off < n && !refused) {
				size_t len = pieces[kk++ % NPIECES];

				len = len > n - off ? n - off : len;
				if (shim_tee_hold(t, p + off, len) != 0)
					refused = 1;
				else
					off += len;
				assert_true(t->nheld <= SHIM_HELD_MAX);
			}
			assert_int_equal(refused, n > SHIM_HELD_MAX);
			assert_int_equal(t->nheld, off);
			assert_memory_equal(t->held, p, off);
			shim_tee_drop_held(t);
			assert_null(t->held);
			assert_int_equal(t->nheld, 0);
			free(t);
			free(p);
		}
}

/* ---- usage from bodies and streams ---------------------------------------- */

struct sb {
	char *p;
	size_t n;
};

static void sb_add(struct sb *b, const char *s)
{
	size_t k = strlen(s);

	b->p = realloc(b->p, b->n + k + 1);
	assert_non_null(b->p);
	memcpy(b->p + b->n, s, k + 1);
	b->n += k;
}

/* An SSE stream of at least n bytes, as the providers send it. */
static struct sb stream(int anthropic, int with_usage, size_t n)
{
	struct sb b = { NULL, 0 };
	char line[512];
	unsigned i;

	if (anthropic)
		sb_add(&b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
		       "{\"id\":\"m\",\"usage\":{\"input_tokens\":1234,\"output_tokens\":1}}}\n\n");
	for (i = 0; b.n < n; i++) {
		/* text that looks like usage, escaped as JSON strings carry it */
		snprintf(line, sizeof line, anthropic ?
		         "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
		         "\"delta\":{\"text\":\"w%u {\\\"usage\\\":{\\\"input_tokens\\\":9}}\"}}\n\n" :
		         "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"w%u "
		         "{\\\"usage\\\":{\\\"total_tokens\\\":9}}\"}}],\"usage\":null}\n\n", i);
		sb_add(&b, line);
	}
	if (anthropic)
		sb_add(&b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":"
		       "{\"output_tokens\":4321}}\n\nevent: message_stop\ndata: "
		       "{\"type\":\"message_stop\"}\n\n");
	else if (with_usage)
		sb_add(&b, "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
		       "1000,\"completion_tokens\":555,\"total_tokens\":1555}}\n\ndata: [DONE]\n\n");
	else
		sb_add(&b, "data: [DONE]\n\n");
	return b;
}

/* The policy's body scanner, poisoned around; content type ct (NULL: the
 * body decides). */
static struct rh__body *rbody_new(void)
{
	struct rh__body *t = malloc(sizeof *t);

	assert_non_null(t);
	memset(t, 0x5a, sizeof *t);
	rh__body_reset(t);
	return t;
}

static int usage_of(const char *p, size_t n, unsigned k0, const char *ct,
                    uint64_t *tokens)
{
	struct rh__body *t = rbody_new();
	size_t off = 0, k = k0;
	int found;

	while (off < n) {
		size_t len = pieces[k++ % NPIECES];

		len = len > n - off ? n - off : len;
		rh__body_feed(t, ct, p + off, len);
		off += len;
	}
	assert_int_equal(t->total, n);
	found = rh__body_usage(t, tokens);
	free(t);
	return found;
}

static void test_usage_of_streams(void **state)
{
	const size_t sizes[] = { 100, 2047, 2049, 8191, 8193, 100 << 10, 1 << 20 };
	unsigned i, k;
	uint64_t v;

	(void)state;
	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		struct sb o = stream(0, 1, sizes[i]), a = stream(1, 1, sizes[i]),
			  none = stream(0, 0, sizes[i]);

		for (k = 0; k < NPIECES; k++) {
			const char *ct = k % 2 ? "text/event-stream; charset=utf-8" : NULL;

			v = 0;
			assert_int_equal(usage_of(o.p, o.n, k, ct, &v), 1);
			assert_int_equal(v, 1555);
			v = 0;
			assert_int_equal(usage_of(a.p, a.n, k, ct, &v), 1);
			assert_int_equal(v, 1234 + 4321);
			assert_int_equal(usage_of(none.p, none.n, k, ct, &v), 0);
		}
		free(o.p);
		free(a.p);
		free(none.p);
	}
}

/* A short body cut in two at every place gives the same answer. */
static void test_usage_at_every_split(void **state)
{
	struct sb a = stream(1, 1, 600);
	size_t cut;
	uint64_t v;

	(void)state;
	for (cut = 0; cut <= a.n; cut++) {
		struct rh__body *t = rbody_new();

		rh__body_feed(t, NULL, a.p, cut);
		rh__body_feed(t, NULL, a.p + cut, a.n - cut);
		v = 0;
		assert_int_equal(rh__body_usage(t, &v), 1);
		assert_int_equal(v, 1234 + 4321);
		free(t);
	}
	free(a.p);
}

/* ---- the JSON scanner's limits ------------------------------------------- */

static void test_jscan_limits(void **state)
{
	static const char *const keys[17] = {
		"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9",
		"k10", "k11", "k12", "k13", "k14", "k15", "k16",
	};
	char text[256], num[64];
	uint64_t out[17], v;
	const uint64_t vals[] = { RH_JSCAN_INT_MAX - 1, RH_JSCAN_INT_MAX, RH_JSCAN_INT_MAX + 1,
	                          10 * RH_JSCAN_INT_MAX };
	unsigned i;

	(void)state;
	snprintf(text, sizeof text, "{\"k15\":5,\"k0\":1}");
	assert_int_equal(rh__jscan_members(text, strlen(text), keys, 15, out), 1u);
	assert_int_equal(rh__jscan_members(text, strlen(text), keys, 16, out), 1u | 1u << 15);
	assert_int_equal(out[15], 5);
	assert_int_equal(rh__jscan_members(text, strlen(text), keys, 17, out), 0);  /* > 16 keys */
	for (i = 0; i < 4; i++) {
		snprintf(num, sizeof num, "{\"max_tokens\":%llu}", (unsigned long long)vals[i]);
		assert_int_equal(rh__jscan_max_tokens(num, strlen(num), &v), 1);
		assert_int_equal(v, vals[i] < RH_JSCAN_INT_MAX ? vals[i] : RH_JSCAN_INT_MAX);
	}
	/* 10x the digits of any count */
	memset(text, '9', 200);
	memcpy(text, "{\"max_tokens\":", 14);
	memcpy(text + 200, "}", 2);
	assert_int_equal(rh__jscan_max_tokens(text, strlen(text), &v), 1);
	assert_int_equal(v, RH_JSCAN_INT_MAX);
}

/* ---- headers ------------------------------------------------------------- */

struct hdrs {
	const char *const *kv;          /* name, value, ..., NULL */
};

static const char *get(void *ctx, const char *name)
{
	const struct hdrs *h = ctx;
	const char *const *p;

	for (p = h->kv; *p; p += 2)
		if (strcasecmp(p[0], name) == 0)
			return p[1];
	return NULL;
}

#define NOW (1764460800LL * SEC)        /* 2025-11-30T00:00:00Z */

static size_t windows(const char *const *kv, ratectl_window *w)
{
	struct hdrs h = { kv };

	memset(w, 0, sizeof *w * RH_HDR_WINDOWS);
	return rh__hdr_windows(get, &h, NOW, w, RH_HDR_WINDOWS);
}

static void test_headers_openai_azure(void **state)
{
	static const char *const openai[] = {
		"x-ratelimit-limit-requests", "10000", "x-ratelimit-limit-tokens", "200000",
		"x-ratelimit-remaining-requests", "9999", "x-ratelimit-remaining-tokens", "190000",
		"x-ratelimit-reset-requests", "6ms", "x-ratelimit-reset-tokens", "3s", NULL,
	};
	static const char *const azure[] = {
		"x-ratelimit-remaining-requests", "1199", "x-ratelimit-remaining-tokens", "190000",
		"x-ratelimit-limit-tokens", "-1", NULL,
	};
	ratectl_window w[RH_HDR_WINDOWS];

	(void)state;
	assert_int_equal(windows(openai, w), 2);
	assert_int_equal(w[0].dim, RATECTL_REQUESTS);
	assert_int_equal(w[0].remaining, 9999);
	assert_int_equal(w[0].limit, 10000);
	assert_int_equal(w[0].reset_ns, 6 * MSEC);
	assert_int_equal(w[0].window_ns, 60 * SEC);
	assert_int_equal(w[1].dim, RATECTL_TOKENS);
	assert_int_equal(w[1].remaining, 190000);
	assert_int_equal(w[1].limit, 200000);
	assert_int_equal(w[1].reset_ns, 3 * SEC);
	assert_int_equal(windows(azure, w), 2);
	assert_int_equal(w[1].remaining, 190000);
	assert_int_equal(w[1].limit, 0);        /* "-1": unknown */
	assert_int_equal(w[1].reset_ns, 0);
	assert_int_equal(w[1].window_ns, 60 * SEC);
}

static void test_headers_anthropic(void **state)
{
	static const char *const full[] = {
		"anthropic-ratelimit-requests-limit", "4000",
		"anthropic-ratelimit-requests-remaining", "3999",
		"anthropic-ratelimit-requests-reset", "2025-11-30T00:00:01Z",
		"anthropic-ratelimit-tokens-limit", "200000",
		"anthropic-ratelimit-tokens-remaining", "190000",
		"anthropic-ratelimit-tokens-reset", "2025-11-30T00:00:03Z",
		"anthropic-ratelimit-input-tokens-remaining", "1",
		"anthropic-ratelimit-output-tokens-remaining", "2", NULL,
	};
	static const char *const split[] = {
		"anthropic-ratelimit-input-tokens-limit", "160000",
		"anthropic-ratelimit-input-tokens-remaining", "150000",
		"anthropic-ratelimit-input-tokens-reset", "2025-11-30T00:00:03Z",
		"anthropic-ratelimit-output-tokens-limit", "40000",
		"anthropic-ratelimit-output-tokens-remaining", "39000",
		"anthropic-ratelimit-output-tokens-reset", "2025-11-29T23:59:00Z", NULL,
	};
	ratectl_window w[RH_HDR_WINDOWS];

	(void)state;
	/* With a plain tokens header, input and output are not read. */
	assert_int_equal(windows(full, w), 2);
	assert_int_equal(w[0].reset_ns, 1 * SEC);
	assert_int_equal(w[1].dim, RATECTL_TOKENS);
	assert_int_equal(w[1].remaining, 190000);
	assert_int_equal(w[1].limit, 200000);
	assert_int_equal(w[1].reset_ns, 3 * SEC);
	assert_int_equal(windows(split, w), 2);
	assert_int_equal(w[0].dim, RATECTL_TOKENS);
	assert_int_equal(w[0].remaining, 150000);
	assert_int_equal(w[1].remaining, 39000);
	assert_int_equal(w[1].reset_ns, 0);     /* in the past: full now */
}

static void test_headers_ietf(void **state)
{
	static const char *const one[] = {
		"RateLimit-Policy", "\"burst\";q=100;w=60, \"tokens-daily\";q=2000000;w=86400",
		"RateLimit", "\"burst\";r=50;t=30, \"tokens-daily\";r=1900000;t=3600", NULL,
	};
	static const char *const nopolicy[] = { "RateLimit", "\"x\";r=7;t=2", NULL };
	static const char *const odd[] = {
		"RateLimit-Policy", ";;;,,\"\\\"q\";q=;w=abc, tok;q=99999999999999999999",
		"RateLimit", "\"p\";r=-1, \"p\";r=0, \"p\";t=5, \"unterminated", NULL,
	};
	ratectl_window w[RH_HDR_WINDOWS];

	(void)state;
	assert_int_equal(windows(one, w), 2);
	assert_int_equal(w[0].dim, RATECTL_REQUESTS);
	assert_int_equal(w[0].remaining, 50);
	assert_int_equal(w[0].limit, 100);
	assert_int_equal(w[0].window_ns, 60 * SEC);
	assert_int_equal(w[0].reset_ns, 30 * SEC);
	assert_int_equal(w[1].dim, RATECTL_TOKENS);
	assert_int_equal(w[1].window_ns, 86400 * SEC);
	assert_int_equal(windows(nopolicy, w), 1);
	assert_int_equal(w[0].window_ns, 0);    /* unknown: the library picks */
	assert_int_equal(windows(odd, w), 0);
}

static void test_headers_untrusted(void **state)
{
	static const char *const bad[] = {
		"x-ratelimit-remaining-requests", "-1", "x-ratelimit-reset-requests", "1s",
		"x-ratelimit-remaining-tokens", "lots",
		"anthropic-ratelimit-requests-remaining", "0",      /* no reset */
		"anthropic-ratelimit-tokens-remaining", "18446744073709551616", NULL,
	};
	ratectl_window w[RH_HDR_WINDOWS];
	uint64_t v;

	(void)state;
	assert_int_equal(windows(bad, w), 0);
	assert_int_equal(rh__hdr_count(" 18446744073709551615\t", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(rh__hdr_count("18446744073709551616", &v), -1);
	assert_int_equal(rh__hdr_count("", &v), -1);
	assert_int_equal(rh__hdr_count("1 2", &v), -1);
}

/* A value of n bytes: digits (a count) of that length, in a block of n+1. */
static char *digits(size_t n)
{
	char *p = malloc(n + 1);

	assert_non_null(p);
	memset(p, ' ', n);
	if (n)
		p[n - 1] = '7';
	p[n] = '\0';
	return p;
}

static void test_header_value_buffer(void **state)
{
	const size_t sizes[] = { RH_HDR_VALUE_MAX - 1, RH_HDR_VALUE_MAX,
	                         RH_HDR_VALUE_MAX + 1, 10 * RH_HDR_VALUE_MAX };
	struct rh__hdr_copies *c = malloc(sizeof *c);
	unsigned i, r;

	(void)state;
	assert_non_null(c);
	c->next = 0;
	for (i = 0; i < 4; i++) {
		char *v = digits(sizes[i]);
		const char *const kv[] = { "x-ratelimit-remaining-tokens", v,
		                           "x-ratelimit-reset-tokens", "1s", NULL };
		ratectl_window w[RH_HDR_WINDOWS];
		int fits = sizes[i] <= RH_HDR_VALUE_MAX;

		for (r = 0; r < 2 * RH_HDR_KEEP; r++) {
			const char *k = rh__hdr_keep(c, v);

			if (fits) {
				assert_non_null(k);
				assert_string_equal(k, v);
			} else {
				assert_null(k);
			}
		}
		assert_null(rh__hdr_keep(c, NULL));
		/* windows() reads values directly here: any length parses */
		assert_int_equal(windows(kv, w), 1);
		assert_int_equal(w[0].remaining, 7);
		free(v);
	}
	free(c);
}

static void test_ietf_name_and_list_sizes(void **state)
{
	const size_t sizes[] = { RH_HDR_NAME_MAX - 1, RH_HDR_NAME_MAX,
	                         RH_HDR_NAME_MAX + 1, 10 * RH_HDR_NAME_MAX };
	unsigned i;

	(void)state;
	for (i = 0; i < 4; i++) {
		char *name = malloc(sizes[i] + 1), *pol, *cur;
		ratectl_window w[RH_HDR_WINDOWS];

		assert_non_null(name);
		memset(name, 'n', sizes[i]);
		name[sizes[i]] = '\0';
		assert_true(asprintf(&pol, "\"%s\";q=100;w=60", name) > 0);
		assert_true(asprintf(&cur, "\"%s\";r=5;t=1", name) > 0);
		{
			const char *const kv[] = { "RateLimit-Policy", pol, "RateLimit", cur, NULL };

			assert_int_equal(windows(kv, w), 1);
			assert_int_equal(w[0].window_ns, 60 * SEC);   /* matched */
			assert_int_equal(w[0].remaining, 5);
		}
		free(pol);
		free(cur);
		free(name);
	}
	/* Lists of RH_HDR_WINDOWS - 1 to 10 x items: at most cap windows. */
	for (i = RH_HDR_WINDOWS - 1; i <= 10 * RH_HDR_WINDOWS; i += i < RH_HDR_WINDOWS + 1 ? 1 : 10 * RH_HDR_WINDOWS) {
		char *cur = malloc(16 * i + 1);
		size_t off = 0;
		unsigned k;
		ratectl_window w[RH_HDR_WINDOWS];

		assert_non_null(cur);
		for (k = 0; k < i; k++)
			off += (size_t)sprintf(cur + off, "%s\"p%u\";r=%u;t=1", k ? ", " : "", k, k + 1);
		{
			const char *const kv[] = { "RateLimit", cur, NULL };

			assert_int_equal(windows(kv, w), i < RH_HDR_WINDOWS ? i : RH_HDR_WINDOWS);
		}
		free(cur);
	}
}

/* ---- refusal messages ---------------------------------------------------- */

static void test_refusal_buffer(void **state)
{
	/* Budget names that make the message size - 1, size, size + 1 and 10x
	 * size long without the cut. */
	char probe[4 * CURL_ERROR_SIZE];
	size_t base, want[4] = { CURL_ERROR_SIZE - 1, CURL_ERROR_SIZE, CURL_ERROR_SIZE + 1,
	                         10 * CURL_ERROR_SIZE };
	unsigned i;

	(void)state;
	base = strlen(rh__refusal_toobig(probe, sizeof probe, "", "tokens", 20019, 1000));
	for (i = 0; i < 4; i++) {
		size_t nl = want[i] - base;
		char *name = malloc(nl + 1), *buf = malloc(CURL_ERROR_SIZE), *full;

		assert_non_null(name);
		assert_non_null(buf);
		memset(name, 'b', nl);
		name[nl] = '\0';
		full = malloc(want[i] + 1);
		assert_non_null(full);
		assert_int_equal(strlen(rh__refusal_toobig(full, want[i] + 1, name, "tokens",
		                                            20019, 1000)), want[i]);
		rh__refusal_toobig(buf, CURL_ERROR_SIZE, name, "tokens", 20019, 1000);
		assert_int_equal(strlen(buf), want[i] < CURL_ERROR_SIZE ? want[i] : CURL_ERROR_SIZE - 1);
		assert_memory_equal(buf, full, strlen(buf));
		rh__refusal_timeout(buf, CURL_ERROR_SIZE, name, 60 * SEC);
		assert_true(strlen(buf) < CURL_ERROR_SIZE);
		rh__refusal_closed(buf, CURL_ERROR_SIZE, "b", name);   /* why cut at 120 */
		assert_true(strlen(buf) < CURL_ERROR_SIZE);
		free(full);
		free(buf);
		free(name);
	}
	assert_string_equal(rh__refusal_toobig(probe, sizeof probe, "big", "tokens", 20019, 1000),
	                    "ratectl: budget 'big': this request needs 20019 tokens, more than "
	                    "the burst of 1000: it can never be admitted; lower its max_tokens "
	                    "or raise the burst");
	assert_string_equal(rh__refusal_timeout(probe, sizeof probe, "slow", SEC),
	                    "ratectl: budget 'slow' was not available within 1s");
}

/* ---- the program's header list (hdrs.c) ----------------------------------- */

/* A curl_slist of the strings v[0..n), each node and string in a block
 * of its own (ASan sees a read past one); freed with list_free(). */
static struct curl_slist *list_of(const char *const *v, size_t n)
{
	struct curl_slist *head = NULL, **tail = &head;
	size_t i;

	for (i = 0; i < n; i++) {
		struct curl_slist *c = malloc(sizeof *c);

		assert_non_null(c);
		c->data = v[i] ? strdup(v[i]) : NULL;
		assert_true(!v[i] || c->data);
		c->next = NULL;
		*tail = c;
		tail = &c->next;
	}
	return head;
}

static void list_free(struct curl_slist *l)
{
	while (l) {
		struct curl_slist *n = l->next;

		free(l->data);
		free(l);
		l = n;
	}
}

/* The nodes and strings of l, to check that nothing changed them. */
struct shape {
	const struct curl_slist *node[32];
	const char *data[32];
	char text[32][128];
	size_t n;
};

static void shape_take(struct shape *s, const struct curl_slist *l)
{
	for (s->n = 0; l; l = l->next, s->n++) {
		assert_true(s->n < 32);
		s->node[s->n] = l;
		s->data[s->n] = l->data;
		snprintf(s->text[s->n], sizeof s->text[0], "%s", l->data ? l->data : "(null)");
	}
}

static void shape_same(const struct shape *s, const struct curl_slist *l)
{
	size_t i;

	for (i = 0; l; l = l->next, i++) {
		assert_true(i < s->n);
		assert_ptr_equal(l, s->node[i]);
		assert_ptr_equal(l->data, s->data[i]);
		assert_string_equal(l->data ? l->data : "(null)", s->text[i]);
	}
	assert_int_equal(i, s->n);
}

static void test_hdrs_read_every_form(void **state)
{
	static const char *const v[] = {
		"Authorization: Bearer sk-1",     /* 0 */
		"X-Ratectl-Tenant:   alice ",     /* 1: the library trims the value */
		"X-Empty;",                       /* 2: libcurl's empty header */
		"no separator at all",            /* not a header */
		"Semi; with text after",          /* not sent by libcurl */
		"Spaced-Name \t: v",              /* 3: name without the blanks */
		"a:b:c",                          /* 4: the first colon */
		": no name",                      /* not a header */
		NULL,                             /* a node without a string */
		"X-Removed:",                     /* 5: "" (not sent by libcurl) */
		"semi;colon: both",               /* 6: the colon decides */
	};
	static const char *const names[] = {
		"Authorization", "X-Ratectl-Tenant", "X-Empty", "Spaced-Name", "a",
		"X-Removed", "semi;colon",
	};
	static const char *const values[] = {
		"Bearer sk-1", "alice ", "", "v", "b:c", "", "both",
	};
	struct curl_slist *l = list_of(v, sizeof v / sizeof v[0]);
	struct shim_hdrs h = { (void *)1, 99 };
	struct shape sh;
	size_t i;

	(void)state;
	shape_take(&sh, l);
	assert_int_equal(shim_hdrs_read(&h, l), 0);
	assert_int_equal(h.n, 7);
	for (i = 0; i < h.n; i++) {
		assert_string_equal(h.v[i].name, names[i]);
		assert_string_equal(h.v[i].value, values[i]);
	}
	/* values point into the program's strings, never copied */
	assert_ptr_equal(h.v[0].value, l->data + strlen("Authorization: "));
	shape_same(&sh, l);
	shim_hdrs_free(&h);
	assert_null(h.v);
	assert_int_equal(h.n, 0);
	/* no list, and a list of no header */
	assert_int_equal(shim_hdrs_read(&h, NULL), 0);
	assert_null(h.v);
	assert_int_equal(h.n, 0);
	list_free(l);
	l = list_of(v + 3, 2);
	assert_int_equal(shim_hdrs_read(&h, l), 0);
	assert_null(h.v);
	assert_int_equal(h.n, 0);
	list_free(l);
}

/* Names of 63 to 66 bytes and 1 MiB, values of 1 MiB: copied whole, in
 * a block of exactly the size needed (ASan: a byte past is a crash). */
static void test_hdrs_read_long_names(void **state)
{
	const size_t lens[] = { 1, 63, 64, 65, 66, 1 << 20 };
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		size_t k = lens[i];
		char *e = malloc(k + 2 + (1 << 20) + 1);
		const char *v[2];
		struct curl_slist *l;
		struct shim_hdrs h;

		assert_non_null(e);
		memset(e, 'n', k);
		memcpy(e + k, ": ", 2);
		memset(e + k + 2, 'v', 1 << 20);
		e[k + 2 + (1 << 20)] = '\0';
		v[0] = e;
		v[1] = "After: 1";
		l = list_of(v, 2);
		assert_int_equal(shim_hdrs_read(&h, l), 0);
		assert_int_equal(h.n, 2);
		assert_int_equal(strlen(h.v[0].name), k);
		assert_memory_equal(h.v[0].name, e, k);
		assert_int_equal(strlen(h.v[0].value), 1 << 20);
		assert_string_equal(h.v[1].name, "After");
		assert_string_equal(h.v[1].value, "1");
		shim_hdrs_free(&h);
		list_free(l);
		free(e);
	}
}

static const char *const drop2[] = { "X-Ratectl-Tenant", "X-Ratectl-Tag" };

static void test_hdrs_without_drops_only_those(void **state)
{
	static const char *const v[] = {
		"Accept: */*",
		"X-Ratectl-Tenant: alice",        /* dropped */
		"x-ratectl-tag: route/a",         /* dropped, any case */
		"X-Ratectl-Tenantx: 1",           /* kept: another name */
		"X-Ratectl-Tenan: 1",             /* kept */
		"X-RATECTL-TENANT;",              /* dropped: the empty form */
		"X-Ratectl-Tag : v",              /* dropped: blanks before ':' */
		"X-Ratectl-Other: 1",             /* kept: not configured */
		"x-ratectl-tenant: bob",          /* dropped: a repeat */
		NULL,                             /* kept as it is */
		"Content-Type: application/json",
	};
	static const int kept[] = { 0, 3, 4, 7, 9, 10 };
	struct curl_slist *l = list_of(v, sizeof v / sizeof v[0]), *out = (void *)1;
	const struct curl_slist *p, *q;
	struct shape sh;
	unsigned i = 0;

	(void)state;
	shape_take(&sh, l);
	assert_int_equal(shim_hdrs_without(&out, l, drop2, 2), 5);
	assert_non_null(out);
	for (p = out; p; p = p->next, i++) {
		assert_true(i < sizeof kept / sizeof kept[0]);
		/* the program's own string, not a copy, in a node of ours */
		assert_ptr_equal(p->data, sh.data[kept[i]]);
		for (q = l; q; q = q->next)
			assert_ptr_not_equal(p, q);
	}
	assert_int_equal(i, sizeof kept / sizeof kept[0]);
	shape_same(&sh, l);
	free(out);
	/* nothing to drop: the program's list as it is */
	out = (void *)1;
	assert_int_equal(shim_hdrs_without(&out, l, drop2, 0), 0);
	assert_null(out);
	{
		static const char *const other[] = { "X-Nothing" };

		out = (void *)1;
		assert_int_equal(shim_hdrs_without(&out, l, other, 1), 0);
		assert_null(out);
	}
	out = (void *)1;
	assert_int_equal(shim_hdrs_without(&out, NULL, drop2, 2), 0);
	assert_null(out);
	shape_same(&sh, l);
	list_free(l);
	/* all of them dropped: no list to send at all */
	l = list_of(v + 1, 2);
	out = (void *)1;
	assert_int_equal(shim_hdrs_without(&out, l, drop2, 2), 2);
	assert_null(out);
	list_free(l);
}

/* Many entries: one block of nodes, in order. */
static void test_hdrs_without_many(void **state)
{
	enum { N = 10000 };
	static char buf[N][32];
	const char **v = malloc(N * sizeof *v);
	struct curl_slist *l, *out;
	const struct curl_slist *p;
	struct shim_hdrs h;
	size_t i, n = 0;

	(void)state;
	assert_non_null(v);
	for (i = 0; i < N; i++) {
		snprintf(buf[i], sizeof buf[i], i % 3 ? "H%zu: %zu" : "x-ratectl-tag: %zu", i, i);
		v[i] = buf[i];
	}
	l = list_of(v, N);
	assert_int_equal(shim_hdrs_read(&h, l), 0);
	assert_int_equal(h.n, N);
	shim_hdrs_free(&h);
	assert_int_equal(shim_hdrs_without(&out, l, drop2, 2), (N + 2) / 3);
	for (p = out, i = 1; p; p = p->next, n++, i += i % 3 == 1 ? 1 : 2)
		assert_string_equal(p->data, buf[i]);
	assert_int_equal(n, N - (N + 2) / 3);
	free(out);
	list_free(l);
	free(v);
}

/*
 * The shim's chain in-process, as policy.c and xfer.c run it: the list
 * read, the request begun with a tenant header of 63, 64, 65, 66 bytes
 * and 1 MiB (its end right before a PROT_NONE page), the tenant taken or
 * refused (RATECTL_EBADNAME at admission), and the list to send without
 * ratectl's headers whatever the value.
 */
static void test_hdrs_tenant_values_through_the_policy(void **state)
{
	static const char conf[] =
		"[fake]\nmatch = api.example.test\nrequests = 100/s\n"
		"tenant = header X-Ratectl-Tenant\ntenant_template = *\n"
		"tag = header X-Ratectl-Tag\n[*]\nrequests = 50/s\n";
	const size_t lens[] = { 63, 64, 65, 66, 1 << 20 };
	long pg = sysconf(_SC_PAGESIZE);
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	char *dir = tmp_ledger();
	ratectl_http *h;
	unsigned i;

	(void)state;
	o.config_text = conf;
	o.config_len = sizeof conf - 1;
	o.ledger_dir = dir;
	assert_int_equal(ratectl_http_open(&h, &o), 0);
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		size_t k = strlen("X-Ratectl-Tenant: "), n = k + lens[i] + 1;
		size_t span = (n + (size_t)pg - 1) / (size_t)pg * (size_t)pg + (size_t)pg;
		char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *e = m + (span - (size_t)pg) - n;
		const ratectl_http_info *info;
		ratectl_http_request *req;
		struct curl_slist tag = { (char *)"X-Ratectl-Tag: route/a", NULL };
		struct curl_slist ent = { NULL, &tag }, *out;
		struct curl_slist keep = { (char *)"Accept: */*", &ent };
		struct shim_hdrs hs;
		int rc;

		assert_true(m != MAP_FAILED);
		assert_int_equal(mprotect(m + span - (size_t)pg, (size_t)pg, PROT_NONE), 0);
		memcpy(e, "X-Ratectl-Tenant: ", k);
		memset(e + k, 'a', lens[i]);
		e[n - 1] = '\0';
		ent.data = e;
		assert_int_equal(shim_hdrs_read(&hs, &keep), 0);
		assert_int_equal(hs.n, 3);
		assert_int_equal(ratectl_http_request_begin(&req, h, "POST",
		                 "https://api.example.test/v1/chat/completions", hs.v, hs.n,
		                 "{}", 2, 0), 0);
		shim_hdrs_free(&hs);
		assert_non_null(req);
		info = ratectl_http_request_info(req);
		assert_int_equal(info->ndrop_headers, 2);
		if (lens[i] <= RATECTL_NAME_MAX) {
			assert_non_null(info->tenant);
			assert_int_equal(strlen(info->tenant), lens[i]);
			assert_string_equal(info->tag, "route/a");
			rc = ratectl_http_admit(req, 0);
			assert_int_equal(rc, 0);
		} else {
			assert_null(info->tenant);
			rc = ratectl_http_admit(req, 0);
			assert_int_equal(rc, RATECTL_EBADNAME);
			assert_non_null(strstr(ratectl_http_request_why(req), "not sent"));
		}
		/* whatever the value, the list to send has only Accept */
		assert_int_equal(shim_hdrs_without(&out, &keep, info->drop_headers,
		                                   info->ndrop_headers), 2);
		assert_non_null(out);
		assert_ptr_equal(out->data, keep.data);
		assert_null(out->next);
		free(out);
		ratectl_http_request_free(req);
		munmap(m, span);
	}
	ratectl_http_close(h);
	tmp_ledger_rm(dir);
}

/* ---- an answer from the response cache: its head (hdrs.c) ---------------- */

/* n bytes of c and a NUL, the NUL the last byte before a PROT_NONE page
 * (nul = 0: the n bytes end there), so that a read past them crashes. */
struct guarded {
	char *map;
	size_t span;
	char *s;
};

static struct guarded guarded(size_t n, char c, int nul)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), data;
	struct guarded g;

	data = (n + 1 + pg - 1) / pg * pg;
	g.span = data + pg;
	g.map = mmap(NULL, g.span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g.map != MAP_FAILED);
	assert_int_equal(mprotect(g.map + data, pg, PROT_NONE), 0);
	g.s = g.map + data - n - (nul ? 1 : 0);
	memset(g.s, c, n);
	if (nul)
		g.s[n] = '\0';
	return g;
}

static void guarded_free(struct guarded *g)
{
	munmap(g->map, g->span);
}

/* The lines of h tile mem[0..len), each ending in CRLF with no CR or LF
 * before, none longer than libcurl's cap, the last one blank. */
static void head_check(const struct shim_head *h)
{
	size_t start = 0;
	unsigned i;

	assert_true(h->nlines >= 3 && h->nlines <= SHIM_HEAD_LINES);
	assert_int_equal(h->nhdrs, h->nlines - 2);
	for (i = 0; i < h->nlines; start = h->end[i++]) {
		size_t n = h->end[i] - start;

		assert_true(n >= 2 && n <= SHIM_HEAD_LINE_MAX);
		assert_memory_equal(h->mem + h->end[i] - 2, "\r\n", 2);
		assert_null(memchr(h->mem + start, '\r', n - 2));
		assert_null(memchr(h->mem + start, '\n', n - 2));
	}
	assert_int_equal(start, h->len);
	assert_int_equal(h->end[h->nlines - 1] - h->end[h->nlines - 2], 2);
	assert_memory_equal(h->mem, "HTTP/1.1 ", 9);
	assert_string_equal(h->name[h->nhdrs - 1], "Content-Length");
}

/* Is "name: value\r\n" a line of h? */
static int head_has(const struct shim_head *h, const char *name, const char *value)
{
	size_t start = 0, nl = strlen(name), vl = strlen(value);
	unsigned i;

	for (i = 0; i < h->nlines; start = h->end[i++])
		if (h->end[i] - start == nl + vl + 4 && memcmp(h->mem + start, name, nl) == 0 &&
		    memcmp(h->mem + start + nl, ": ", 2) == 0 &&
		    memcmp(h->mem + start + nl + 2, value, vl) == 0)
			return 1;
	return 0;
}

/* A header line of SHIM_HEAD_LINE_MAX - 1, the cap, + 1 and 10 x the cap,
 * from a long value and from a long name (each at a page's end): kept up
 * to the cap, left out past it, the others kept either way. */
static void test_head_line_at_its_cap(void **state)
{
	const size_t lines[] = { SHIM_HEAD_LINE_MAX - 1, SHIM_HEAD_LINE_MAX,
	                         SHIM_HEAD_LINE_MAX + 1, 10 * SHIM_HEAD_LINE_MAX };
	unsigned i, long_name;

	(void)state;
	for (i = 0; i < 4; i++)
		for (long_name = 0; long_name < 2; long_name++) {
			/* "name: value\r\n": 4 bytes besides name and value */
			struct guarded g = guarded(lines[i] - 4 - (long_name ? 0 : 6),
			                           long_name ? 'n' : 'v', 1);
			ratectl_http_header hs[3] = {
				{ "content-type", "application/json" },
				{ long_name ? g.s : "x-long", long_name ? "" : g.s },
				{ "x-ratectl-cache", "hit" },
			};
			int fits = lines[i] <= SHIM_HEAD_LINE_MAX;
			struct shim_head h;

			assert_int_equal(shim_head_make(&h, 200, hs, 3, 262), 0);
			head_check(&h);
			assert_int_equal(h.nhdrs, fits ? 4 : 3);
			assert_true(head_has(&h, "content-type", "application/json"));
			assert_true(head_has(&h, "x-ratectl-cache", "hit"));
			assert_true(head_has(&h, "Content-Length", "262"));
			assert_int_equal(head_has(&h, hs[1].name, hs[1].value), fits);
			if (fits) {
				assert_int_equal(h.end[2] - h.end[1], lines[i]);
				assert_string_equal(h.name[1], hs[1].name);
				assert_string_equal(h.value[1], hs[1].value);
			}
			assert_string_equal(h.ctype, "application/json");
			shim_head_free(&h);
			assert_null(h.mem);
			guarded_free(&g);
		}
}

/* The status line, Content-Length at its widest, and what is left out: a
 * CR or LF that would start a header of its own, a bad name, the
 * answer's own Content-Length, more headers than ratectl_http_local has. */
static void test_head_forms(void **state)
{
	static const char typical[] =
		"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
		"x-ratectl-cache: hit\r\nage: 3\r\nContent-Length: 262\r\n\r\n";
	const ratectl_http_header hit[] = {
		{ "content-type", "application/json" }, { "x-ratectl-cache", "hit" },
		{ "age", "3" },
	};
	const ratectl_http_header bad[] = {
		{ "x-a", "1\r\nX-Evil: 1" }, { "x-b", "1\nX-Evil: 1" }, { "x c", "1" },
		{ "x:d", "1" }, { "", "1" }, { NULL, "1" }, { "x-e", NULL },
		{ "CONTENT-LENGTH", "5" }, { "Content-Type", "text/plain" },
		{ "content-type", "text/html" }, { "x-f", "" }, { "x-g", "7" },
		{ "x-h", "8" },
	};
	struct shim_head h;

	(void)state;
	assert_int_equal(shim_head_make(&h, 200, hit, 3, 262), 0);
	head_check(&h);
	assert_int_equal(h.len, sizeof typical - 1);
	assert_memory_equal(h.mem, typical, h.len);
	assert_string_equal(h.ctype, "application/json");
	shim_head_free(&h);

	assert_int_equal(shim_head_make(&h, 203, NULL, 0, 0), 0);
	head_check(&h);
	assert_int_equal(h.nhdrs, 1);
	assert_memory_equal(h.mem, "HTTP/1.1 203 Non-Authoritative Information\r\n"
	                    "Content-Length: 0\r\n\r\n", h.len);
	assert_null(h.ctype);
	shim_head_free(&h);

	assert_int_equal(shim_head_make(&h, -2147483647 - 1, NULL, 0, UINT64_MAX), 0);
	head_check(&h);
	assert_memory_equal(h.mem, "HTTP/1.1 -2147483648 \r\n"
	                    "Content-Length: 18446744073709551615\r\n\r\n", h.len);
	shim_head_free(&h);

	/* Of the bad ones, only Content-Type (the first), x-f, x-g, x-h get
	 * in, and only 4 headers of the answer are kept. */
	assert_int_equal(shim_head_make(&h, 299, bad, sizeof bad / sizeof bad[0], 1), 0);
	head_check(&h);
	assert_memory_equal(h.mem, "HTTP/1.1 299 \r\n", 15);
	assert_int_equal(h.nhdrs, 5);
	assert_true(head_has(&h, "Content-Type", "text/plain"));
	assert_true(head_has(&h, "content-type", "text/html"));
	assert_true(head_has(&h, "x-f", ""));
	assert_true(head_has(&h, "x-g", "7"));
	assert_false(head_has(&h, "x-h", "8"));
	assert_true(head_has(&h, "Content-Length", "1"));
	assert_null(memmem(h.mem, h.len, "Evil", 4));
	assert_string_equal(h.ctype, "text/plain");
	shim_head_free(&h);
}

/* ---- ... and its delivery (tee.c) ----------------------------------------- */

/* A program's callback that records what it is given. */
struct rec {
	char *p;
	size_t n;
	unsigned calls;
	size_t largest;
	unsigned fail_call;     /* this call (from 1) answers `answer` */
	size_t answer;
};

static size_t rec_write(char *p, size_t size, size_t n, void *ud)
{
	struct rec *r = ud;
	size_t len = size * n;

	assert_int_equal(size, 1);
	r->calls++;
	if (len > r->largest)
		r->largest = len;
	if (r->fail_call && r->calls == r->fail_call)
		return r->answer;
	r->p = realloc(r->p, r->n + len + 1);
	assert_non_null(r->p);
	memcpy(r->p + r->n, p, len);
	r->n += len;
	return len;
}

static void rec_reset(struct rec *r)
{
	free(r->p);
	memset(r, 0, sizeof *r);
}

/* What a FILE holds now. */
static size_t file_bytes(FILE *f, char *buf, size_t cap)
{
	size_t n;

	fflush(f);
	rewind(f);
	n = fread(buf, 1, cap, f);
	rewind(f);
	assert_int_equal(ftruncate(fileno(f), 0), 0);
	return n;
}

/* libcurl's rules (lib/sendf.c chop_write): the head to the header
 * callback, else with only HEADERDATA to the write function with it,
 * else nowhere; CURLOPT_HEADER puts it in the body stream too; NOBODY
 * leaves the body out; no write function is fwrite(). */
static void test_deliver_where_libcurl_would(void **state)
{
	const ratectl_http_header hs[] = { { "content-type", "application/json" } };
	static const char body[] = "{\"usage\":{\"total_tokens\":3}}";
	size_t nb = sizeof body - 1;
	struct rec w = { 0 }, hd = { 0 };
	struct shim_head h;
	struct shim_sink s;
	uint64_t done;
	char buf[512];
	FILE *fw = tmpfile(), *fh = tmpfile();

	(void)state;
	assert_non_null(fw);
	assert_non_null(fh);
	assert_int_equal(shim_head_make(&h, 200, hs, 1, nb), 0);

	/* a header callback */
	s = (struct shim_sink){ rec_write, &w, rec_write, &hd, 0, 0 };
	assert_int_equal(shim_deliver(&s, &h, body, nb, &done), SHIM_DELIVERED);
	assert_int_equal(done, nb);
	assert_int_equal(hd.n, h.len);
	assert_memory_equal(hd.p, h.mem, h.len);
	assert_int_equal(hd.calls, h.nlines);           /* one line a call */
	assert_int_equal(w.n, nb);
	assert_memory_equal(w.p, body, nb);
	rec_reset(&w);
	rec_reset(&hd);

	/* HEADERDATA only: the write function gets the head, with it */
	s = (struct shim_sink){ rec_write, &w, NULL, &hd, 0, 0 };
	assert_int_equal(shim_deliver(&s, &h, body, nb, NULL), SHIM_DELIVERED);
	assert_int_equal(hd.n, h.len);
	assert_memory_equal(hd.p, h.mem, h.len);
	assert_int_equal(w.n, nb);
	rec_reset(&w);
	rec_reset(&hd);

	/* neither: the head goes nowhere */
	s = (struct shim_sink){ rec_write, &w, NULL, NULL, 0, 0 };
	assert_int_equal(shim_deliver(&s, &h, body, nb, NULL), SHIM_DELIVERED);
	assert_int_equal(w.n, nb);
	assert_memory_equal(w.p, body, nb);
	rec_reset(&w);

	/* CURLOPT_HEADER: the head in the body stream, and to the callback */
	s = (struct shim_sink){ rec_write, &w, rec_write, &hd, 1, 0 };
	assert_int_equal(shim_deliver(&s, &h, body, nb, &done), SHIM_DELIVERED);
	assert_int_equal(done, nb);
	assert_int_equal(w.n, h.len + nb);
	assert_memory_equal(w.p, h.mem, h.len);
	assert_memory_equal(w.p + h.len, body, nb);
	assert_int_equal(hd.n, h.len);
	rec_reset(&w);
	rec_reset(&hd);

	/* NOBODY: the head only */
	s = (struct shim_sink){ rec_write, &w, rec_write, &hd, 0, 1 };
	assert_int_equal(shim_deliver(&s, &h, body, nb, &done), SHIM_DELIVERED);
	assert_int_equal(done, 0);
	assert_int_equal(w.calls, 0);
	assert_int_equal(hd.n, h.len);
	rec_reset(&w);
	rec_reset(&hd);

	/* no write function: fwrite() to WRITEDATA, and to HEADERDATA */
	s = (struct shim_sink){ NULL, fw, NULL, fh, 0, 0 };
	assert_int_equal(shim_deliver(&s, &h, body, nb, NULL), SHIM_DELIVERED);
	assert_int_equal(file_bytes(fw, buf, sizeof buf), nb);
	assert_memory_equal(buf, body, nb);
	assert_int_equal(file_bytes(fh, buf, sizeof buf), h.len);
	assert_memory_equal(buf, h.mem, h.len);

	/* ... a NULL stream is a failed write, not a crash */
	s = (struct shim_sink){ NULL, NULL, NULL, NULL, 0, 0 };
	assert_int_equal(shim_deliver(&s, &h, body, nb, &done), SHIM_DELIVER_EBODY);
	assert_int_equal(done, 0);

	shim_head_free(&h);
	fclose(fw);
	fclose(fh);
}

/* Bodies of 0, SHIM_WRITE_MAX - 1, the cap, + 1 and 10 x the cap, each
 * at a page's end: in pieces of at most the cap, whole, in order. */
static void test_deliver_pieces_at_the_cap(void **state)
{
	const size_t sizes[] = { 0, SHIM_WRITE_MAX - 1, SHIM_WRITE_MAX, SHIM_WRITE_MAX + 1,
	                         10 * SHIM_WRITE_MAX };
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		struct guarded g = guarded(sizes[i], 'b', 0);
		struct rec w = { 0 };
		struct shim_sink s = { rec_write, &w, NULL, NULL, 0, 0 };
		struct shim_head h;
		uint64_t done = 7;
		size_t k;

		for (k = 0; k < sizes[i]; k++)
			g.s[k] = (char)('a' + k % 23);
		assert_int_equal(shim_head_make(&h, 200, NULL, 0, sizes[i]), 0);
		assert_int_equal(shim_deliver(&s, &h, g.s, sizes[i], &done), SHIM_DELIVERED);
		assert_int_equal(done, sizes[i]);
		assert_int_equal(w.n, sizes[i]);
		assert_int_equal(w.calls, (sizes[i] + SHIM_WRITE_MAX - 1) / SHIM_WRITE_MAX);
		assert_true(w.largest <= SHIM_WRITE_MAX);
		if (sizes[i])
			assert_memory_equal(w.p, g.s, sizes[i]);
		rec_reset(&w);
		shim_head_free(&h);
		guarded_free(&g);
	}
}

/* A callback that takes less than it is given stops the delivery: a
 * short body write (first, middle, last piece) or one in the body stream
 * while it holds the head, a short header write, and a pause (which an
 * answer given whole cannot honour), each said apart. */
static void test_deliver_refusals(void **state)
{
	const size_t n = 3 * SHIM_WRITE_MAX + 5;
	const unsigned at[] = { 1, 2, 4 };
	struct guarded g = guarded(n, 'z', 0);
	struct rec w = { 0 }, hd = { 0 };
	struct shim_sink s;
	struct shim_head h;
	uint64_t done;
	unsigned i;

	(void)state;
	assert_int_equal(shim_head_make(&h, 200, NULL, 0, n), 0);
	for (i = 0; i < 3; i++) {
		s = (struct shim_sink){ rec_write, &w, rec_write, &hd, 0, 0 };
		w.fail_call = at[i];
		w.answer = 1;
		assert_int_equal(shim_deliver(&s, &h, g.s, n, &done), SHIM_DELIVER_EBODY);
		assert_int_equal(done, (at[i] - 1) * SHIM_WRITE_MAX);
		assert_int_equal(w.calls, at[i]);
		rec_reset(&w);
		rec_reset(&hd);
	}
	/* the head's second line refused in the body stream (CURLOPT_HEADER) */
	s = (struct shim_sink){ rec_write, &w, rec_write, &hd, 1, 0 };
	w.fail_call = 2;
	w.answer = 0;
	assert_int_equal(shim_deliver(&s, &h, g.s, n, &done), SHIM_DELIVER_EBODY);
	assert_int_equal(done, 0);
	assert_int_equal(hd.calls, 1);
	rec_reset(&w);
	rec_reset(&hd);
	/* a header callback refusing its second line: no body at all */
	s = (struct shim_sink){ rec_write, &w, rec_write, &hd, 0, 0 };
	hd.fail_call = 2;
	hd.answer = 0;
	assert_int_equal(shim_deliver(&s, &h, g.s, n, &done), SHIM_DELIVER_EHEAD);
	assert_int_equal(done, 0);
	assert_int_equal(w.calls, 0);
	rec_reset(&w);
	rec_reset(&hd);
	/* pauses */
	s = (struct shim_sink){ rec_write, &w, rec_write, &hd, 0, 0 };
	hd.fail_call = 1;
	hd.answer = CURL_WRITEFUNC_PAUSE;
	assert_int_equal(shim_deliver(&s, &h, g.s, n, NULL), SHIM_DELIVER_EPAUSE);
	assert_int_equal(w.calls, 0);
	rec_reset(&hd);
	w.fail_call = 2;
	w.answer = CURL_WRITEFUNC_PAUSE;
	assert_int_equal(shim_deliver(&s, &h, g.s, n, &done), SHIM_DELIVER_EPAUSE);
	assert_int_equal(done, SHIM_WRITE_MAX);
	rec_reset(&w);
	rec_reset(&hd);
	shim_head_free(&h);
	guarded_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tee_held_at_its_size),
		cmocka_unit_test(test_usage_of_streams),
		cmocka_unit_test(test_usage_at_every_split),
		cmocka_unit_test(test_jscan_limits),
		cmocka_unit_test(test_headers_openai_azure),
		cmocka_unit_test(test_headers_anthropic),
		cmocka_unit_test(test_headers_ietf),
		cmocka_unit_test(test_headers_untrusted),
		cmocka_unit_test(test_header_value_buffer),
		cmocka_unit_test(test_ietf_name_and_list_sizes),
		cmocka_unit_test(test_refusal_buffer),
		cmocka_unit_test(test_hdrs_read_every_form),
		cmocka_unit_test(test_hdrs_read_long_names),
		cmocka_unit_test(test_hdrs_without_drops_only_those),
		cmocka_unit_test(test_hdrs_without_many),
		cmocka_unit_test(test_hdrs_tenant_values_through_the_policy),
		cmocka_unit_test(test_head_line_at_its_cap),
		cmocka_unit_test(test_head_forms),
		cmocka_unit_test(test_deliver_where_libcurl_would),
		cmocka_unit_test(test_deliver_pieces_at_the_cap),
		cmocka_unit_test(test_deliver_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
