/*
 * tee.c - what the program's write callbacks get besides libcurl's own
 * calls: a refused response body held back for a retry (what the program
 * must not see when the shim sends the request again), and an answer from
 * the response cache delivered as libcurl delivers a response.  The usage
 * is read by libratectl-http from the bytes the shim feeds it.  Pure:
 * bytes in, no libcurl call, no I/O but the program's callbacks (see
 * http.h).  Invariant: nheld <= SHIM_HELD_MAX.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>          /* its constants only: nothing is linked */

#include "http.h"

_Static_assert(SHIM_HELD_MAX > 0,
               "no empty buffers");
_Static_assert(SHIM_HELD_MAX <= SIZE_MAX / 2, "held sizes cannot overflow");

void shim_tee_reset(struct shim_tee *t, int may_hold)
{
	t->decided = t->holding = 0;
	t->may_hold = may_hold;
	t->held = NULL;
	t->nheld = 0;
}

int shim_tee_hold(struct shim_tee *t, const char *p, size_t len)
{
	char *n;

	if (len > SHIM_HELD_MAX - t->nheld)
		return -1;
	if (!len)
		return 0;
	if (!(n = realloc(t->held, t->nheld + len)))
		return -1;
	memcpy(n + t->nheld, p, len);
	t->held = n;
	t->nheld += len;
	return 0;
}

void shim_tee_drop_held(struct shim_tee *t)
{
	free(t->held);
	t->held = NULL;
	t->nheld = 0;
}

/* ---- an answer from the response cache ------------------------------------ */

_Static_assert(SHIM_WRITE_MAX == CURL_MAX_WRITE_SIZE, "libcurl's largest write");

/* The program's write function, or libcurl's default: fwrite() to ud
 * (which libcurl would call with a NULL stream too; here that is a
 * failed write, not a crash). */
static size_t write_to(shim_write_fn fn, char *p, size_t n, void *ud)
{
	if (fn)
		return fn(p, 1, n, ud);
	return ud ? fwrite(p, 1, n, ud) : 0;
}

/* p[0..n) to the body stream in libcurl's pieces: 0, or an error. */
static int to_body(const struct shim_sink *s, const char *p, size_t n,
                   uint64_t *done)
{
	while (n > 0) {
		size_t k = n < SHIM_WRITE_MAX ? n : SHIM_WRITE_MAX;
		/* Callbacks take char *; none may change what it is given. */
		size_t w = write_to(s->wfn, (char *)p, k, s->wdata);

		if (w == CURL_WRITEFUNC_PAUSE)
			return SHIM_DELIVER_EPAUSE;
		if (w != k)
			return SHIM_DELIVER_EBODY;
		p += k;
		n -= k;
		if (done)
			*done += k;
	}
	return 0;
}

int shim_deliver(const struct shim_sink *s, const struct shim_head *h,
                 const char *body, size_t len, uint64_t *body_done)
{
	/* libcurl: a header callback, or, with only CURLOPT_HEADERDATA, the
	 * write function with it; with neither the head goes nowhere. */
	shim_write_fn hfn = s->hfn ? s->hfn : s->wfn;
	int heads = s->hfn || s->hdata, rc;
	size_t start = 0, w;
	unsigned i;

	if (body_done)
		*body_done = 0;
	for (i = 0; i < h->nlines; start = h->end[i++]) {
		char *line = h->mem + start;
		size_t n = h->end[i] - start;

		if (s->include_header && (rc = to_body(s, line, n, NULL)) != 0)
			return rc;
		if (!heads)
			continue;
		w = write_to(hfn, line, n, s->hdata);
		if (w == CURL_WRITEFUNC_PAUSE)
			return SHIM_DELIVER_EPAUSE;
		if (w != n)
			return SHIM_DELIVER_EHEAD;
	}
	if (s->nobody)
		return SHIM_DELIVERED;
	return to_body(s, body, len, body_done);
}
