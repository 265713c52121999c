/*
 * policy.c - the adapter between the hooks and libratectl-http, which
 * holds the policy itself (the config file, matching, the estimate,
 * admission, learning, retries): here a transfer's URL, headers and body
 * are handed to it, its answers turned into what the hooks do, and its
 * notices printed once on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "shim.h"

/* The process's policy handle, made at the first transfer and kept for
 * the life of the process.  Opening reads nothing yet. */
static ratectl_http *http;

static void notice(void *ctx, int kind, const char *msg)
{
	(void)ctx;
	switch (kind) {
	case RATECTL_HTTP_NOTICE_NOCONFIG: shim_warn(SHIM_W_NOCONF, "%s", msg); break;
	case RATECTL_HTTP_NOTICE_BADCONFIG: shim_warn(SHIM_W_BADCONF, "%s", msg); break;
	case RATECTL_HTTP_NOTICE_LEDGER: shim_warn(SHIM_W_LEDGER, "%s", msg); break;
	case RATECTL_HTTP_NOTICE_TOOBIG: shim_warn(SHIM_W_TOOBIG, "%s", msg); break;
	case RATECTL_HTTP_NOTICE_BADTAG: shim_warn(SHIM_W_BADTAG, "%s", msg); break;
	default: shim_warn(SHIM_W_NOTICE, "%s", msg); break;
	}
}

static ratectl_http *http_get(void)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	ratectl_http *h = __atomic_load_n(&http, __ATOMIC_ACQUIRE), *none = NULL;

	if (h)
		return h;
	o.notice = notice;
	if (ratectl_http_open(&h, &o) != 0) {
		shim_warn(SHIM_W_NOMEM, "out of memory: transfers pass through");
		return NULL;
	}
	if (!__atomic_compare_exchange_n(&http, &none, h, 0, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE)) {
		ratectl_http_close(h);  /* another thread published first */
		h = none;
	}
	return h;
}

/* ---- matching ------------------------------------------------------------- */

/* u with its port replaced by port (CURLOPT_PORT), into buf. */
static const char *with_port(const char *u, unsigned port, char *buf, size_t len)
{
	const char *h = strstr(u, "://"), *ae, *pe;
	int n;

	h = h ? h + 3 : u;
	ae = h + strcspn(h, "/?#");
	pe = ae;
	if (*h == '[') {
		const char *b = memchr(h, ']', (size_t)(ae - h));
		pe = b ? b + 1 : ae;
	} else {
		const char *c = memchr(h, ':', (size_t)(ae - h));
		pe = c ? c : ae;
	}
	n = snprintf(buf, len, "%.*s:%u%s", (int)(pe - u), u, port, ae);
	return n > 0 && (size_t)n < len ? buf : u;
}

/* Without memory for all of the program's headers (hdrs.c), those the
 * policy always reads (keys, SDK retries) are found in place: the names
 * are ours, the values point into the program's list.  A tenant or tag
 * header is then not seen. */
#define REQ_HDRS 8

static size_t req_headers(const struct curl_slist *l, ratectl_http_header *out)
{
	static const char *const names[] = {
		"authorization", "x-api-key", "api-key", "x-stainless-retry-count"
	};
	size_t n = 0, i, k;

	for (; l && n < REQ_HDRS; l = l->next) {
		if (!l->data)
			continue;
		for (i = 0; i < sizeof names / sizeof names[0]; i++) {
			k = strlen(names[i]);
			if (strncasecmp(l->data, names[i], k) == 0 && l->data[k] == ':') {
				const char *v = l->data + k + 1;

				v += strspn(v, " \t");
				out[n].name = names[i];
				out[n++].value = v;
				break;
			}
		}
	}
	return n;
}

/* The method libcurl will send, as far as the options tell: the policy
 * keys the response cache and knows retries by it.  A body sent from a
 * callback is a POST whose body the policy cannot see (never cached). */
static const char *method_of(const struct xfer *x)
{
	if (!x)
		return "GET";
	if (x->method)
		return x->method;
	if (x->method_lost)
		return "?";
	if (x->nobody)
		return "HEAD";
	return x->body != SHIM_BODY_NONE ? "POST" : "GET";
}

int shim_match(const struct shim_curl *api, CURL *e, const struct xfer *x,
               struct shim_policy *pol)
{
	ratectl_http_header fixed[REQ_HDRS];
	struct shim_hdrs hs = { NULL, 0 };
	char *u = NULL, buf[4096];
	const char *url;
	const void *body = NULL;
	size_t len = 0, nh = 0;
	uint64_t size = 0;
	ratectl_http *h;
	int rc;

	memset(pol, 0, sizeof *pol);
	if (!(h = http_get()))
		return 0;
	if (x && x->curlu && api->url_get) {
		if (api->url_get(x->curlu, CURLUPART_URL, &u, 0) != CURLUE_OK || !u)
			return 0;
		snprintf(buf, sizeof buf, "%s", u);
		api->free(u);
		u = buf;
	} else if (api->easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &u) != CURLE_OK || !u) {
		/* Filled from CURLOPT_URL at setopt time (libcurl >= 7.62). */
		return 0;
	}
	url = x && x->port ? with_port(u, x->port, buf, sizeof buf) : u;
	if (x) {
		xfer_body(x, &body, &len, &size);
		if (shim_hdrs_read(&hs, x->headers) != 0) {
			shim_warn(SHIM_W_NOMEM, "out of memory reading a request's "
			          "headers: its tenant and tag are not seen");
			nh = req_headers(x->headers, fixed);
		}
	}
	rc = ratectl_http_request_begin(&pol->req, h, method_of(x), url,
	                                hs.v ? hs.v : fixed, hs.v ? hs.n : nh,
	                                body, len, size);
	shim_hdrs_free(&hs);
	if (rc != 0 || !pol->req)
		return 0;
	{
		const ratectl_http_info *i = ratectl_http_request_info(pol->req);

		snprintf(pol->name, sizeof pol->name, "%s", i->budget);
		pol->retries = i->retries;
		pol->timeout_ns = i->timeout_ns;
		pol->https = strncasecmp(url, "https:", 6) == 0;
	}
	return 1;
}

uint64_t shim_estimate(const struct shim_policy *pol, const struct xfer *x)
{
	(void)x;
	return pol->req ? ratectl_http_request_info(pol->req)->estimate : 0;
}

void shim_policy_drop(struct shim_policy *pol)
{
	ratectl_http_request_free(pol->req);
	pol->req = NULL;
}

void shim_policy_set(struct xfer *x, struct shim_policy *pol)
{
	if (x->pol.req != pol->req)
		shim_policy_drop(&x->pol);
	x->pol = *pol;
	pol->req = NULL;
}

void shim_policy_done(struct xfer *x)
{
	shim_policy_drop(&x->pol);
}

void shim_refuse_timeout(struct xfer *x)
{
	snprintf(x->refusal, sizeof x->refusal, "ratectl: budget '%s' was not "
	         "available within %.3gs", x->pol.name, (double)x->pol.timeout_ns / 1e9);
}

/* ---- admission ------------------------------------------------------------ */

/* The answer is in the response cache: take it for delivery. */
static int cached(struct xfer *x)
{
	ratectl_http_local r;

	if (ratectl_http_cached_response(x->pol.req, &r) == 0 &&
	    shim_hit_begin(x, &r, x->pol.https) == 0)
		return SHIM_CACHED;
	snprintf(x->refusal, sizeof x->refusal, "ratectl: budget '%s': out of memory "
	         "giving the answer from the response cache; the request is not sent",
	         x->pol.name);
	shim_warn(SHIM_W_NOMEM, "%s", x->refusal);
	return SHIM_REFUSE;
}

int shim_admit(struct xfer *x, int block, int64_t *wait_ns)
{
	int rc;

	x->leased = 0;
	x->refusal[0] = '\0';
	rc = block ? ratectl_http_admit(x->pol.req, -1) :
		ratectl_http_try(x->pol.req, wait_ns);
	if (rc == 0) {
		x->leased = 1;
		return SHIM_ADMITTED;
	}
	if (rc == RATECTL_HTTP_PASS) {
		/* Nothing is learned from a transfer passed through: end it now,
		 * so that a fetch for the response cache it took is given up at
		 * once, not when the handle is used again. */
		ratectl_http_request_end(x->pol.req, NULL);
		return SHIM_PASS;
	}
	if (rc == RATECTL_HTTP_CACHED)
		return cached(x);
	if (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN ||
	    rc == RATECTL_EINFLIGHT || rc == RATECTL_EPENDING)
		return SHIM_WAIT;
	snprintf(x->refusal, sizeof x->refusal, "%s",
	         *ratectl_http_request_why(x->pol.req) ?
	         ratectl_http_request_why(x->pol.req) : ratectl_http_strerror(rc));
	/* A tenant header that makes no budget name: the program's bug, said
	 * once on stderr; each such transfer fails with the reason. */
	if (rc == RATECTL_EBADNAME)
		shim_warn(SHIM_W_BADNAME, "%s", x->refusal);
	return SHIM_REFUSE;
}

int shim_drop_begin(const struct shim_curl *api, struct xfer *x)
{
	const ratectl_http_info *i = ratectl_http_request_info(x->pol.req);
	size_t n = i->ndrop_headers < 2 ? i->ndrop_headers : 2;

	if (xfer_hdrs_begin(api, x, i->drop_headers, n) == 0)
		return 0;
	shim_release(x, -1, 0);
	snprintf(x->refusal, sizeof x->refusal, "ratectl: budget '%s': out of memory "
	         "removing ratectl's own headers (%s) from the request; it is not sent",
	         x->pol.name, i->drop_headers[0]);
	shim_warn(SHIM_W_NOMEM, "%s", x->refusal);
	return -1;
}

int64_t shim_release(struct xfer *x, long status, int may_resend)
{
	ratectl_http_outcome o;

	if (!x->leased)
		return -1;
	x->leased = 0;
	if (status >= 0)
		ratectl_http_response_status(x->pol.req, (int)status);
	ratectl_http_request_set_resendable(x->pol.req, may_resend);
	if (ratectl_http_request_end(x->pol.req, &o) != 0 || !o.retry || !may_resend)
		return -1;
	return o.retry_after_ns;
}

/* ---- the response --------------------------------------------------------- */

void shim_learn(const struct shim_curl *a, CURL *e, const struct xfer *x,
                long status)
{
	const char *const *names;
	struct curl_header *hh;
	curl_off_t secs = 0;
	size_t n, i;
	char v[32];

	if (!x->leased)
		return;
	ratectl_http_response_status(x->pol.req, (int)status);
	if (!a->easy_header) {
		/* Before 7.83 only Retry-After in seconds can be had. */
		if (a->easy_getinfo(e, CURLINFO_RETRY_AFTER, &secs) == CURLE_OK && secs > 0) {
			snprintf(v, sizeof v, "%lld", (long long)secs);
			ratectl_http_response_header(x->pol.req, "retry-after", v);
		}
		return;
	}
	/* Each value is handed over (and copied) before the next lookup: a
	 * value curl_easy_header() returns lasts only until its next call. */
	names = ratectl_http_header_names(&n);
	for (i = 0; i < n; i++)
		if (a->easy_header(e, names[i], 0, CURLH_HEADER, -1, &hh) == CURLHE_OK)
			ratectl_http_response_header(x->pol.req, names[i], hh->value);
}

/* ---- the response cache --------------------------------------------------- */

/* Did libcurl hand the program the body as the provider encoded it
 * (Content-Encoding it was not asked to decode)?  Then what the tee fed
 * is not the answer a client asking for it again should get.  Unknown
 * without curl_easy_header() (libcurl < 7.83): taken as encoded. */
static int body_encoded(const struct shim_curl *a, CURL *e, const struct xfer *x)
{
	struct curl_header *hh;

	if (!a->easy_header)
		return 1;
	if (a->easy_header(e, "content-encoding", 0, CURLH_HEADER, -1, &hh) != CURLHE_OK ||
	    !hh->value || !hh->value[0] || strcasecmp(hh->value, "identity") == 0)
		return 0;
	return !x->decoding || x->no_content_decoding;
}

void shim_complete(const struct shim_curl *a, CURL *e, const struct xfer *x)
{
	if (!x->pol.req || !ratectl_http_request_info(x->pol.req)->cacheable)
		return;
	/* The program's body stream held the head too (CURLOPT_HEADER), or
	 * was a part (a range), or no body at all (NOBODY), or undecoded. */
	if (x->include_header || x->nobody || x->range || x->resume ||
	    x->no_transfer_decoding ||
	    body_encoded(a, e, x))
		return;
	ratectl_http_response_complete(x->pol.req);
}
