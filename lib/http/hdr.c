/*
 * hdr.c - what providers' rate-limit headers say, as ratectl_windows:
 * one window per header family and dimension, never applied beyond it
 * (ratectl_observe_window()).  Pure: header values in through a lookup
 * function, numbers out (see rh.h).
 *
 * Which dimension and window each describes:
 *   x-ratelimit-*-requests / -tokens (OpenAI, Azure OpenAI): requests /
 *     tokens per minute; -limit- is the count, -reset- a Go duration.
 *   anthropic-ratelimit-requests-* / -tokens-*: per minute; -reset an
 *     RFC 3339 time.  -input-tokens-* and -output-tokens-* are separate
 *     limits at Anthropic, ratectl counts input and output together: they
 *     are read as tokens only when no plain -tokens-* header came, and then
 *     each tightens the tokens limit (the smaller remainder wins).
 *   RateLimit-Policy: "p";q=100;w=60 and RateLimit: "p";r=50;t=30 (IETF
 *     draft-ietf-httpapi-ratelimit-headers): matched by policy name; the
 *     window is w seconds (unknown without a policy), the count q; tokens
 *     when the policy's name contains "token", else requests (the draft
 *     counts "quota units", and requests is what a plain API counts).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rh.h"

#define NS_PER_S 1000000000LL
#define MINUTE_NS (60 * NS_PER_S)
/* Longest reset or window believed, in seconds: a year and a bit. */
#define SECONDS_MAX (400LL * 86400)

_Static_assert(SECONDS_MAX * NS_PER_S > 0 && SECONDS_MAX < INT64_MAX / NS_PER_S,
               "seconds in range convert to nanoseconds without overflow");
_Static_assert(RH_HDR_NAME_MAX >= 1 && RH_HDR_VALUE_MAX >= 16, "usable sizes");
_Static_assert(RH_HDR_KEEP >= 3, "read_family() holds three values at once");
_Static_assert(sizeof ((struct rh__hdr_copies *)0)->buf[0] == RH_HDR_VALUE_MAX + 1,
               "a value of RH_HDR_VALUE_MAX bytes and its NUL fit");

int rh__hdr_count(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	int digits = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	for (; *s >= '0' && *s <= '9'; s++, digits++) {
		uint64_t d = (uint64_t)(*s - '0');

		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	while (*s == ' ' || *s == '\t')
		s++;
	if (!digits || *s)
		return -1;
	*v = x;
	return 0;
}

const char *rh__hdr_keep(struct rh__hdr_copies *c, const char *v)
{
	size_t n;
	char *b;

	if (!v || (n = strnlen(v, RH_HDR_VALUE_MAX + 1)) > RH_HDR_VALUE_MAX)
		return NULL;
	b = c->buf[c->next++ % RH_HDR_KEEP];
	memcpy(b, v, n);
	b[n] = '\0';
	return b;
}

/* Append one window unless it cannot be trusted. */
static void add(ratectl_window *out, size_t cap, size_t *n, ratectl_dim dim,
                uint64_t remaining, int64_t reset_ns, uint64_t limit,
                int64_t window_ns)
{
	ratectl_window w = RATECTL_WINDOW_INIT;

	if (*n >= cap || (remaining == 0 && reset_ns <= 0))
		return;         /* "0 left" with no end in sight: noise */
	w.dim = dim;
	w.remaining = remaining;
	w.reset_ns = reset_ns > 0 ? reset_ns : 0;
	w.limit = limit;
	w.window_ns = window_ns;
	out[(*n)++] = w;
}

/* One family: <prefix><a>-<b>, where a-b is dimension-part (Anthropic)
 * or part-dimension (OpenAI), part one of limit, remaining, reset. */
struct family {
	const char *prefix;     /* "x-ratelimit-" or "anthropic-ratelimit-" */
	int what_first;         /* dimension name before limit/remaining/reset */
	int rfc3339;
};

/* Names are joined by hand: this runs for every response, and snprintf
 * was a tenth of the policy's time. */
static const char *get_part(rh__hdr_get get, void *ctx, const struct family *f,
                            const char *dimname, const char *part)
{
	const char *a = f->what_first ? dimname : part, *b = f->what_first ? part : dimname;
	size_t lp = strlen(f->prefix), la = strlen(a), lb = strlen(b);
	char name[96];

	if (lp + la + 1 + lb >= sizeof name)
		return NULL;
	memcpy(name, f->prefix, lp);
	memcpy(name + lp, a, la);
	name[lp + la] = '-';
	memcpy(name + lp + la + 1, b, lb + 1);
	return get(ctx, name);
}

static int read_family(rh__hdr_get get, void *ctx, int64_t wall_now_ns,
                       const struct family *f, const char *dimname, ratectl_dim dim,
                       ratectl_window *out, size_t cap, size_t *n)
{
	const char *rem = get_part(get, ctx, f, dimname, "remaining"), *lim, *reset;
	uint64_t r, l = 0;
	int64_t ns = -1, t;

	/* no remaining count, no window: the other two are not looked up */
	if (!rem || rh__hdr_count(rem, &r) != 0)
		return 0;
	lim = get_part(get, ctx, f, dimname, "limit");
	reset = get_part(get, ctx, f, dimname, "reset");
	if (lim && rh__hdr_count(lim, &l) != 0)
		l = 0;
	if (reset && !f->rfc3339 && ratectl_parse_go_duration(reset, &t) == 0)
		ns = t;
	else if (reset && f->rfc3339 && ratectl_parse_rfc3339(reset, &t) == 0)
		ns = t > wall_now_ns ? t - wall_now_ns : 0;
	if (ns > SECONDS_MAX * NS_PER_S)
		return 0;
	add(out, cap, n, dim, r, ns, l, MINUTE_NS);
	return 1;
}

/* ---- the IETF draft ------------------------------------------------------- */

struct item {
	char name[RH_HDR_NAME_MAX + 1];
	int64_t p[4];           /* q w r t, -1 absent */
};

enum { P_Q, P_W, P_R, P_T };

/* A non-negative sf-integer at *s (at most 15 digits), else -1. */
static int64_t sf_int(const char **s, const char *end)
{
	int64_t v = 0;
	int d = 0;

	while (*s < end && **s >= '0' && **s <= '9' && d < 16) {
		v = v * 10 + (**s - '0');
		(*s)++;
		d++;
	}
	return d == 0 || d > 15 ? -1 : v;
}

/*
 * A structured-field list of the draft's shape, `"name";k=v;k=v, ...`,
 * read from the first RH_HDR_VALUE_MAX bytes of v into items[0..cap).
 * What does not parse ends the list; a member with an odd shape is
 * skipped to the next comma.
 */
static size_t sf_list(const char *v, struct item *items, size_t cap)
{
	const char *s = v, *end = v + strnlen(v, RH_HDR_VALUE_MAX);
	size_t n = 0;

	while (s < end && n < cap) {
		struct item *it = &items[n];
		size_t k = 0;

		memset(it->p, 0xff, sizeof it->p);      /* all -1 */
		while (s < end && (*s == ' ' || *s == '\t' || *s == ','))
			s++;
		if (s == end)
			break;
		/* the name: a quoted string or a token */
		if (*s == '"') {
			for (s++; s < end && *s != '"'; s++) {
				if (*s == '\\' && s + 1 < end)
					s++;
				if (k < RH_HDR_NAME_MAX)
					it->name[k++] = *s;
			}
			s += s < end;
		} else {
			for (; s < end && *s != ';' && *s != ',' && *s != ' '; s++)
				if (k < RH_HDR_NAME_MAX)
					it->name[k++] = *s;
		}
		it->name[k] = '\0';
		/* parameters */
		while (s < end && *s == ';') {
			const char *key = ++s;
			int64_t val;
			int which;

			while (s < end && *s != '=' && *s != ';' && *s != ',')
				s++;
			if (s == end || *s != '=')
				continue;
			which = s - key != 1 ? -1 : *key == 'q' ? P_Q : *key == 'w' ? P_W :
				*key == 'r' ? P_R : *key == 't' ? P_T : -1;
			s++;
			val = sf_int(&s, end);
			if (which >= 0)
				it->p[which] = val;
			while (s < end && *s != ';' && *s != ',')
				s++;    /* the rest of an odd value */
		}
		while (s < end && *s != ',')
			s++;
		n++;
	}
	return n;
}

static int has_token(const char *name)
{
	return strcasestr(name, "token") != NULL;
}

static void read_ietf(rh__hdr_get get, void *ctx, ratectl_window *out,
                      size_t cap, size_t *n)
{
	struct item pol[RH_HDR_WINDOWS], cur[RH_HDR_WINDOWS];
	const char *pv = get(ctx, "ratelimit-policy"), *cv = get(ctx, "ratelimit");
	size_t np = pv ? sf_list(pv, pol, RH_HDR_WINDOWS) : 0;
	size_t nc = cv ? sf_list(cv, cur, RH_HDR_WINDOWS) : 0;
	size_t i, j;

	for (i = 0; i < nc; i++) {
		const struct item *c = &cur[i], *p = NULL;
		int64_t w = 0, q = 0;

		if (c->p[P_R] < 0 || c->p[P_T] > SECONDS_MAX)
			continue;
		for (j = 0; j < np && !p; j++)
			if (strcmp(pol[j].name, c->name) == 0)
				p = &pol[j];
		if (p && p->p[P_W] > 0 && p->p[P_W] <= SECONDS_MAX)
			w = p->p[P_W];
		if (p && p->p[P_Q] > 0)
			q = p->p[P_Q];
		add(out, cap, n, has_token(c->name) ? RATECTL_TOKENS : RATECTL_REQUESTS,
		    (uint64_t)c->p[P_R], c->p[P_T] >= 0 ? c->p[P_T] * NS_PER_S : -1,
		    (uint64_t)q, w * NS_PER_S);
	}
}

size_t rh__hdr_windows(rh__hdr_get get, void *ctx, int64_t wall_now_ns,
                        ratectl_window *out, size_t cap)
{
	static const struct family openai = { "x-ratelimit-", 0, 0 };
	static const struct family anthropic = { "anthropic-ratelimit-", 1, 1 };
	size_t n = 0;

	read_family(get, ctx, wall_now_ns, &openai, "requests", RATECTL_REQUESTS, out, cap, &n);
	read_family(get, ctx, wall_now_ns, &openai, "tokens", RATECTL_TOKENS, out, cap, &n);
	read_family(get, ctx, wall_now_ns, &anthropic, "requests", RATECTL_REQUESTS, out, cap, &n);
	if (!read_family(get, ctx, wall_now_ns, &anthropic, "tokens", RATECTL_TOKENS,
	                 out, cap, &n)) {
		read_family(get, ctx, wall_now_ns, &anthropic, "input-tokens",
		            RATECTL_TOKENS, out, cap, &n);
		read_family(get, ctx, wall_now_ns, &anthropic, "output-tokens",
		            RATECTL_TOKENS, out, cap, &n);
	}
	read_ietf(get, ctx, out, cap, &n);
	return n;
}

/* ---- the kept response headers -------------------------------------------- */

const char *const rh__hdr_names[] = {
	"retry-after", "retry-after-ms", "content-type",
	"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
	"x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
	"x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
	"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
	"anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-limit",
	"anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset",
	"anthropic-ratelimit-input-tokens-limit",
	"anthropic-ratelimit-input-tokens-remaining",
	"anthropic-ratelimit-input-tokens-reset",
	"anthropic-ratelimit-output-tokens-limit",
	"anthropic-ratelimit-output-tokens-remaining",
	"anthropic-ratelimit-output-tokens-reset",
	"ratelimit", "ratelimit-policy",
	NULL
};
const size_t rh__hdr_nnames = sizeof rh__hdr_names / sizeof rh__hdr_names[0] - 1;

_Static_assert(sizeof rh__hdr_names / sizeof rh__hdr_names[0] - 1 <= RH_HDR_SLOTS,
               "a slot for every name read");
_Static_assert(RH_HDR_ARENA < 65536, "arena offsets fit 16 bits");

void rh__hdrs_reset(struct rh__hdrs *h)
{
	h->used = 0;
	h->n = 0;
}

static int wanted(const char *name)
{
	size_t i;

	for (i = 0; i < rh__hdr_nnames; i++)
		if (strcasecmp(rh__hdr_names[i], name) == 0)
			return 1;
	return 0;
}

int rh__hdrs_add(struct rh__hdrs *h, const char *name, const char *value)
{
	size_t nl, vl;

	if (!name || !value || !wanted(name))
		return -1;
	if (rh__hdrs_get(h, name))
		return 0;               /* the first of repeated names wins */
	nl = strlen(name);
	vl = strnlen(value, RH_HDR_VALUE_MAX + 1);
	if (vl > RH_HDR_VALUE_MAX || h->n >= RH_HDR_SLOTS ||
	    nl + vl + 2 > RH_HDR_ARENA - h->used)
		return -1;
	h->slot[h->n].name = (uint16_t)h->used;
	memcpy(h->arena + h->used, name, nl + 1);
	h->used += nl + 1;
	h->slot[h->n].value = (uint16_t)h->used;
	memcpy(h->arena + h->used, value, vl);
	h->arena[h->used + vl] = '\0';
	h->used += vl + 1;
	h->n++;
	return 0;
}

const char *rh__hdrs_get(const struct rh__hdrs *h, const char *name)
{
	unsigned i;

	for (i = 0; i < h->n; i++)
		if (strcasecmp(h->arena + h->slot[i].name, name) == 0)
			return h->arena + h->slot[i].value;
	return NULL;
}
