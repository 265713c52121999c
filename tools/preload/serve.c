/*
 * serve.c - a transfer answered from the host-wide response cache: the
 * answer given to the program as libcurl gives a response (its head to
 * the header callback, its body to the write callback: hdrs.c and tee.c
 * make and deliver them), and what curl_easy_getinfo() and
 * curl_easy_header() say of the handle until its next transfer.
 *
 * A leaf, like xfer.c: it calls the program's callbacks, libcurl's
 * getinfo for what it does not answer itself, and the pure parts; never
 * the hooks, the multi or the policy parts.
 *
 * Nothing is sent for a hit, so libcurl's own record of the handle still
 * describes its previous transfer (or none).  The shim answers, for such a
 * handle, every getinfo item that describes the response or the
 * connection, as libcurl would after a transfer that received this answer
 * without connecting; the items that come from the handle's options
 * (CURLINFO_PRIVATE, CURLINFO_EFFECTIVE_URL, ...) are libcurl's.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shim.h"

/* Handles whose getinfo the shim answers: none (the usual case) lets
 * curl_easy_getinfo() pass through without a lookup. */
static unsigned nhits;

int shim_hits_any(void)
{
	return __atomic_load_n(&nhits, __ATOMIC_RELAXED) != 0;
}

void shim_hit_clear(struct xfer *x)
{
	if (x->hit.on)
		__atomic_fetch_sub(&nhits, 1, __ATOMIC_RELAXED);
	shim_head_free(&x->hit.head);
	memset(&x->hit, 0, sizeof x->hit);
}

int shim_hit_begin(struct xfer *x, const ratectl_http_local *r, int https)
{
	shim_hit_clear(x);
	if (shim_head_make(&x->hit.head, r->status, r->headers, r->nheaders,
	                   r->body_len) != 0)
		return -1;
	x->hit.status = r->status;
	x->hit.body = r->body;
	x->hit.nbody = r->body_len;
	x->hit.https = https;
	x->hit.rc = CURLE_OK;
	x->hit.on = 1;
	__atomic_fetch_add(&nhits, 1, __ATOMIC_RELAXED);
	return 0;
}

CURLcode shim_hit_deliver(struct xfer *x)
{
	struct shim_sink s = {
		x->wfn, x->wdata, x->hfn, x->hdata, x->include_header, x->nobody
	};
	const char *why = NULL;
	int rc;

	rc = shim_deliver(&s, &x->hit.head, x->hit.body, x->hit.nbody, &x->hit.ndone);
	x->hit.body = NULL;     /* the request's: not to be used after this */
	x->hit.total_ns = shim_clock_ns(CLOCK_MONOTONIC) - x->t0;
	if (x->hit.total_ns <= 0)
		x->hit.total_ns = 1;
	switch (rc) {
	case SHIM_DELIVERED:
		x->hit.rc = CURLE_OK;
		return CURLE_OK;
	case SHIM_DELIVER_EHEAD:
		why = "Failed writing header";
		break;
	case SHIM_DELIVER_EPAUSE:
		why = "ratectl: the write callback asked to pause an answer from "
		      "the response cache, which is given whole at once";
		break;
	default:
		why = "Failure writing output to destination";
	}
	/* libcurl's own messages for the same failures (lib/sendf.c). */
	if (x->errbuf)
		snprintf(x->errbuf, CURL_ERROR_SIZE, "%s", why);
	x->hit.rc = CURLE_WRITE_ERROR;
	return CURLE_WRITE_ERROR;
}

/* ---- curl_easy_getinfo ---------------------------------------------------- */

static void put_long(void *arg, long v)
{
	*(long *)arg = v;
}

static void put_off(void *arg, curl_off_t v)
{
	*(curl_off_t *)arg = v;
}

static void put_double(void *arg, double v)
{
	*(double *)arg = v;
}

static void put_str(void *arg, const char *v)
{
	/* libcurl hands out char *; the program must not change it. */
	*(char **)arg = (char *)v;
}

/* The items libcurl deprecated (the double sizes and speeds, PROTOCOL)
 * are still asked for by programs: they are answered too. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* The response's items. */
static int answer_response(const struct shim_hit *h, CURLINFO info, void *arg)
{
	switch (info) {
	case CURLINFO_RESPONSE_CODE: put_long(arg, h->status); return 1;
	case CURLINFO_HTTP_CONNECTCODE: put_long(arg, 0); return 1;
	case CURLINFO_HTTP_VERSION: put_long(arg, CURL_HTTP_VERSION_1_1); return 1;
	case CURLINFO_CONTENT_TYPE: put_str(arg, h->head.ctype); return 1;
	case CURLINFO_HEADER_SIZE: put_long(arg, (long)h->head.len); return 1;
	case CURLINFO_REQUEST_SIZE: put_long(arg, 0); return 1;
	case CURLINFO_SIZE_DOWNLOAD: put_double(arg, (double)h->ndone); return 1;
	case CURLINFO_SIZE_DOWNLOAD_T: put_off(arg, (curl_off_t)h->ndone); return 1;
	case CURLINFO_CONTENT_LENGTH_DOWNLOAD: put_double(arg, (double)h->nbody); return 1;
	case CURLINFO_CONTENT_LENGTH_DOWNLOAD_T: put_off(arg, (curl_off_t)h->nbody); return 1;
	case CURLINFO_SIZE_UPLOAD: put_double(arg, 0); return 1;
	case CURLINFO_SIZE_UPLOAD_T: put_off(arg, 0); return 1;
	case CURLINFO_CONTENT_LENGTH_UPLOAD: put_double(arg, -1); return 1;
	case CURLINFO_CONTENT_LENGTH_UPLOAD_T: put_off(arg, -1); return 1;
	case CURLINFO_REDIRECT_COUNT: put_long(arg, 0); return 1;
	case CURLINFO_REDIRECT_URL: put_str(arg, NULL); return 1;
	case CURLINFO_RETRY_AFTER: put_off(arg, 0); return 1;
	case CURLINFO_CONDITION_UNMET: put_long(arg, 0); return 1;
	case CURLINFO_FILETIME: put_long(arg, -1); return 1;
	case CURLINFO_FILETIME_T: put_off(arg, -1); return 1;
	case CURLINFO_HTTPAUTH_AVAIL: case CURLINFO_PROXYAUTH_AVAIL:
		put_long(arg, 0);
		return 1;
	default: return 0;
	}
}

/* The times: all of it is the time to give the answer; no name lookup,
 * no connection. */
static int answer_times(const struct shim_hit *h, CURLINFO info, void *arg)
{
	double s = (double)h->total_ns / 1e9;
	curl_off_t us = (curl_off_t)(h->total_ns / 1000);

	switch (info) {
	case CURLINFO_TOTAL_TIME: case CURLINFO_STARTTRANSFER_TIME:
		put_double(arg, s);
		return 1;
	case CURLINFO_TOTAL_TIME_T: case CURLINFO_STARTTRANSFER_TIME_T:
		put_off(arg, us);
		return 1;
	case CURLINFO_NAMELOOKUP_TIME: case CURLINFO_CONNECT_TIME:
	case CURLINFO_APPCONNECT_TIME: case CURLINFO_PRETRANSFER_TIME:
	case CURLINFO_REDIRECT_TIME:
		put_double(arg, 0);
		return 1;
	case CURLINFO_NAMELOOKUP_TIME_T: case CURLINFO_CONNECT_TIME_T:
	case CURLINFO_APPCONNECT_TIME_T: case CURLINFO_PRETRANSFER_TIME_T:
	case CURLINFO_REDIRECT_TIME_T:
		put_off(arg, 0);
		return 1;
	case CURLINFO_SPEED_DOWNLOAD:
		put_double(arg, (double)h->ndone / s);
		return 1;
	case CURLINFO_SPEED_DOWNLOAD_T:
		put_off(arg, (curl_off_t)((double)h->ndone / s));
		return 1;
	case CURLINFO_SPEED_UPLOAD: put_double(arg, 0); return 1;
	case CURLINFO_SPEED_UPLOAD_T: put_off(arg, 0); return 1;
	default: return 0;
	}
}

/* The connection's: there was none. */
static int answer_connection(const struct shim_hit *h, CURLINFO info, void *arg)
{
	switch (info) {
	/* libcurl's names (conn->handler->scheme), which the curl command
	 * compares to pick HTTP behaviour (curl -i shows headers only then). */
	case CURLINFO_SCHEME: put_str(arg, h->https ? "HTTPS" : "HTTP"); return 1;
	case CURLINFO_PROTOCOL:
		put_long(arg, h->https ? CURLPROTO_HTTPS : CURLPROTO_HTTP);
		return 1;
	case CURLINFO_PRIMARY_IP: case CURLINFO_LOCAL_IP: put_str(arg, ""); return 1;
	case CURLINFO_PRIMARY_PORT: case CURLINFO_LOCAL_PORT: put_long(arg, 0); return 1;
	case CURLINFO_NUM_CONNECTS: put_long(arg, 0); return 1;
	case CURLINFO_OS_ERRNO: put_long(arg, 0); return 1;
	case CURLINFO_SSL_VERIFYRESULT: case CURLINFO_PROXY_SSL_VERIFYRESULT:
		put_long(arg, 0);
		return 1;
	default: return 0;
	}
}

#pragma GCC diagnostic pop

int shim_hit_info(const struct xfer *x, CURLINFO info, void *arg)
{
	if (!x->hit.on || !arg)
		return 0;
	return answer_response(&x->hit, info, arg) || answer_times(&x->hit, info, arg) ||
	       answer_connection(&x->hit, info, arg);
}

/* ---- curl_easy_header ----------------------------------------------------- */

/* Point x->hit.ch at header `at` of the head, the index-th of its name. */
static struct curl_header *header_at(struct xfer *x, unsigned at)
{
	const struct shim_head *h = &x->hit.head;
	size_t amount = 0, index = 0;
	unsigned i;

	for (i = 0; i < h->nhdrs; i++)
		if (strcasecmp(h->name[i], h->name[at]) == 0) {
			if (i < at)
				index++;
			amount++;
		}
	x->hit.ch.name = (char *)h->name[at];
	x->hit.ch.value = (char *)h->value[at];
	x->hit.ch.amount = amount;
	x->hit.ch.index = index;
	x->hit.ch.origin = CURLH_HEADER;
	x->hit.ch.anchor = NULL;
	x->hit.ch_at = at;
	return &x->hit.ch;
}

CURLHcode shim_hit_header(struct xfer *x, const char *name, size_t index,
                          unsigned int origin, int request, struct curl_header **hout)
{
	const struct shim_head *h = &x->hit.head;
	size_t n = 0;
	unsigned i;

	if (!name || !hout || request < -1)
		return CURLHE_BAD_ARGUMENT;
	*hout = NULL;
	if (request > 0)
		return CURLHE_NOREQUEST;        /* one response: request 0 */
	for (i = 0; (origin & CURLH_HEADER) && i < h->nhdrs; i++)
		if (strcasecmp(h->name[i], name) == 0 && n++ == index) {
			*hout = header_at(x, i);
			return CURLHE_OK;
		}
	return n ? CURLHE_BADINDEX : CURLHE_MISSING;
}

struct curl_header *shim_hit_nextheader(struct xfer *x, unsigned int origin,
                                        int request, struct curl_header *prev)
{
	unsigned at = prev ? x->hit.ch_at + 1 : 0;

	if (!(origin & CURLH_HEADER) || request > 0 || request < -1 ||
	    (prev && prev != &x->hit.ch) || at >= x->hit.head.nhdrs)
		return NULL;
	return header_at(x, at);
}
