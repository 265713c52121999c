/*
 * body.c - the usage a response body reports, read as it streams through
 * (usage.c's scanner; nothing of the body is kept).  Pure: bytes in, no
 * I/O (see rh.h).
 *
 * JSON or SSE is decided at the first byte that is not blank, once:
 *   1. the response's Content-Type: text/event-stream is SSE; a JSON type
 *      (application/json, application/problem+json, ...) is JSON;
 *   2. otherwise the body itself: '{' or '[' is JSON, anything else SSE
 *      (an event stream begins with "data:", "event:", "id:" or ':').
 * The request's "stream": true is not consulted: a streamed request that
 * is refused (400, 429, 500) is answered with a JSON error, and a body
 * says what it is more reliably than the request that asked for it.
 */
#include <string.h>
#include <strings.h>

#include "rh.h"

void rh__body_reset(struct rh__body *b)
{
	b->started = 0;
	b->total = 0;
}

static int blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* 1 SSE, 0 JSON, -1 the type does not say. */
static int type_says(const char *ct)
{
	size_t n;

	if (!ct)
		return -1;
	while (blank(*ct))
		ct++;
	n = strcspn(ct, ";");
	if (n >= 17 && strncasecmp(ct, "text/event-stream", 17) == 0)
		return 1;
	for (; n >= 4; ct++, n--)
		if (strncasecmp(ct, "json", 4) == 0)
			return 0;
	return -1;
}

void rh__body_feed(struct rh__body *b, const char *content_type, const char *p,
                   size_t len)
{
	int sse;

	b->total += len;
	if (!b->started) {
		/* Leading blanks mean nothing in either form: skipped, so that
		 * the sniff sees the first real byte. */
		while (len && blank(*p)) {
			p++;
			len--;
		}
		if (!len)
			return;
		if ((sse = type_says(content_type)) < 0)
			sse = *p != '{' && *p != '[';
		rh_usage_init(&b->p, sse);
		b->started = 1;
	}
	/* A sticky error ends the scan; what was found before it stays. */
	(void)rh_usage_feed(&b->p, p, len);
}

int rh__body_usage(struct rh__body *b, uint64_t *tokens)
{
	rh_usage u;

	if (!b->started)
		return 0;
	/* Whatever the error (a body cut short, not JSON after its usage, a
	 * count past 64 bits), usage already reported was spent. */
	(void)rh_usage_finish(&b->p, &u);
	if (u.have_total) {
		*tokens = u.total;
		return 1;
	}
	if (u.have_input || u.have_output) {
		*tokens = (u.have_input ? u.input : 0) + (u.have_output ? u.output : 0);
		return 1;
	}
	return 0;
}
