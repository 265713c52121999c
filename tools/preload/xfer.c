/*
 * xfer.c - the shim's state for each easy handle: what the program set
 * (recorded by the curl_easy_setopt hook in easy.c), and the tee that
 * reads a response's usage without disturbing the program's own write
 * callback (its buffers: tee.c).
 *
 * A leaf: it calls libcurl (curlapi.c) and the fork guard (guard.c),
 * never the multi or policy parts; the hooks call it.
 *
 * Options are passed through untouched except while a matched transfer
 * is in progress: then the shim's write callback (and, for a refused
 * multi transfer, its pre-request callback; for a request carrying
 * ratectl's own headers, a header list without them) is installed, and
 * what the program sets meanwhile is kept for when the transfer ends.  Handles
 * that never reach a matched host are never altered.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define NBUCKET 1024            /* power of two */

static pthread_mutex_t map_mu = PTHREAD_MUTEX_INITIALIZER;
static struct xfer *buckets[NBUCKET];

/* ---- the handle map ------------------------------------------------------- */

static size_t bucket_of(const void *e)
{
	uint64_t v = (uint64_t)(uintptr_t)e;

	v *= 0x9E3779B97F4A7C15ull;
	return (size_t)(v >> 40) & (NBUCKET - 1);
}

void xfer_defaults(struct xfer *x)
{
	x->fields = NULL;
	x->fields_size = -1;
	free(x->copy);          /* NULL in a new one (calloc) */
	x->copy = NULL;
	x->ncopy = 0;
	x->headers = NULL;
	x->body = SHIM_BODY_NONE;
	x->wfn = NULL;
	x->wdata = stdout;      /* libcurl's default CURLOPT_WRITEDATA */
	x->hfn = NULL;
	x->hdata = NULL;
	x->include_header = 0;
	x->nobody = 0;
	free(x->method);
	x->method = NULL;
	x->decoding = 0;
	x->no_content_decoding = 0;
	x->no_transfer_decoding = 0;
	x->method_lost = 0;
	x->range = 0;
	x->resume = 0;
	x->errbuf = NULL;
	x->prereq = NULL;
	x->prereq_data = NULL;
	x->curlu = NULL;
	x->port = 0;
}

struct xfer *xfer_get(CURL *e, int create)
{
	size_t b = bucket_of(e);
	struct xfer *x;

	shim_fork_guard(&map_mu);
	pthread_mutex_lock(&map_mu);
	for (x = buckets[b]; x && x->e != e; x = x->hnext)
		;
	if (!x && create && (x = calloc(1, sizeof *x))) {
		x->e = e;
		xfer_defaults(x);
		x->hnext = buckets[b];
		buckets[b] = x;
	}
	pthread_mutex_unlock(&map_mu);
	if (!x && create)
		shim_warn(SHIM_W_NOMEM, "out of memory: a transfer passes through");
	return x;
}

void xfer_drop(CURL *e)
{
	struct xfer **pp, *x = NULL;

	pthread_mutex_lock(&map_mu);
	for (pp = &buckets[bucket_of(e)]; *pp; pp = &(*pp)->hnext)
		if ((*pp)->e == e) {
			x = *pp;
			*pp = x->hnext;
			break;
		}
	pthread_mutex_unlock(&map_mu);
	if (x) {
		free(x->tee ? x->tee->held : NULL);
		free(x->tee);
		free(x->copy);
		free(x->own_hdrs);
		free(x->method);
		shim_hit_clear(x);
		shim_policy_drop(&x->pol);
		free(x);
	}
}

/* ---- request body --------------------------------------------------------- */

static uint64_t fields_len(const struct xfer *x)
{
	if (x->fields_size >= 0)
		return (uint64_t)x->fields_size;
	return x->fields ? strlen(x->fields) : 0;
}

void xfer_body(const struct xfer *x, const void **body, size_t *len, uint64_t *size)
{
	*body = NULL;
	*len = 0;
	*size = 0;
	if (x->body == SHIM_BODY_STREAM) {
		/* Only its declared size is known. */
		*size = x->fields_size > 0 ? (uint64_t)x->fields_size : 0;
	} else if (x->body == SHIM_BODY_FIELDS && x->copy) {
		*body = x->copy;
		*len = x->ncopy;
	} else if (x->body == SHIM_BODY_FIELDS && !x->fields) {
		*size = x->ncopy;       /* a copy we had no memory for */
	} else if (x->body == SHIM_BODY_FIELDS) {
		*body = x->fields;
		*len = (size_t)fields_len(x);
	}
}

/* ---- the tee -------------------------------------------------------------- */

static size_t prog_write(struct xfer *x, char *p, size_t size, size_t n)
{
	if (x->wfn)
		return x->wfn(p, size, n, x->wdata);
	return fwrite(p, size, n, x->wdata ? (FILE *)x->wdata : stdout);
}

static void decide(struct xfer *x)
{
	const struct shim_curl *a = shim_curl();
	long code = 0;

	x->tee->decided = 1;
	if (x->tee->may_hold && a->easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &code) ==
	    CURLE_OK && (code == 429 || code == 503))
		x->tee->holding = 1;
}

static size_t tee_write(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	struct shim_tee *t = x->tee;
	size_t len = size * n, r;

	if (!t->decided)
		decide(x);
	if (t->holding) {
		if (shim_tee_hold(t, p, len) == 0) {
			ratectl_http_response_body(x->pol.req, p, len);
			return len;
		}
		/* Too big to hold: give it all to the program, retry no more. */
		t->holding = 0;
		t->may_hold = 0;
		xfer_tee_replay(x);
	}
	r = prog_write(x, p, size, n);
	if (r == len)           /* else an error, or a pause: sent again */
		ratectl_http_response_body(x->pol.req, p, len);
	return r;
}

int xfer_tee_begin(const struct shim_curl *api, struct xfer *x, int may_hold)
{
	struct shim_tee *t = x->tee;

	if (!t) {
		if (!(t = x->tee = malloc(sizeof *t)))
			return -1;
		t->held = NULL;
	}
	shim_tee_drop_held(t);
	shim_tee_reset(t, may_hold);
	if (api->easy_setopt(x->e, CURLOPT_WRITEFUNCTION, tee_write) != CURLE_OK ||
	    api->easy_setopt(x->e, CURLOPT_WRITEDATA, x) != CURLE_OK) {
		api->easy_setopt(x->e, CURLOPT_WRITEFUNCTION, x->wfn);
		return -1;
	}
	x->tee_on = 1;
	return 0;
}

void xfer_tee_end(const struct shim_curl *api, struct xfer *x)
{
	if (!x->tee_on)
		return;
	x->tee_on = 0;
	api->easy_setopt(x->e, CURLOPT_WRITEFUNCTION, x->wfn);
	api->easy_setopt(x->e, CURLOPT_WRITEDATA, x->wdata);
}

void xfer_tee_replay(struct xfer *x)
{
	struct shim_tee *t = x->tee;
	size_t off = 0;

	/* In pieces no larger than libcurl's, as the program may assume. */
	while (t && off < t->nheld) {
		size_t k = t->nheld - off < CURL_MAX_WRITE_SIZE ?
			t->nheld - off : CURL_MAX_WRITE_SIZE;

		if (prog_write(x, t->held + off, 1, k) != k)
			break;
		off += k;
	}
	if (t)
		shim_tee_drop_held(t);
}

/* ---- the header list sent ------------------------------------------------ */

int xfer_hdrs_begin(const struct shim_curl *api, struct xfer *x,
                    const char *const *drop, size_t n)
{
	struct curl_slist *l;
	long gone;

	if (x->hdrs_on || n == 0)
		return 0;
	if ((gone = shim_hdrs_without(&l, x->headers, drop, n)) <= 0)
		return (int)gone;       /* none of them: the program's list as is */
	if (api->easy_setopt(x->e, CURLOPT_HTTPHEADER, l) != CURLE_OK) {
		free(l);
		return -1;
	}
	x->own_hdrs = l;
	x->hdrs_on = 1;
	return 0;
}

void xfer_hdrs_end(const struct shim_curl *api, struct xfer *x)
{
	if (!x->hdrs_on)
		return;
	api->easy_setopt(x->e, CURLOPT_HTTPHEADER, x->headers);
	xfer_hdrs_forget(x);
}

void xfer_hdrs_forget(struct xfer *x)
{
	x->hdrs_on = 0;
	free(x->own_hdrs);
	x->own_hdrs = NULL;
}

/* ---- refusing a multi transfer -------------------------------------------- */

/* Fails the transfer before its request is sent: libcurl reports it as
 * CURLE_ABORTED_BY_CALLBACK, through the program's usual path. */
static int refuse_prereq(void *ud, char *ip, char *lip, int port, int lport)
{
	(void)ud;
	(void)ip;
	(void)lip;
	(void)port;
	(void)lport;
	return CURL_PREREQFUNC_ABORT;
}

int xfer_abort_begin(const struct shim_curl *api, struct xfer *x)
{
	if (api->easy_setopt(x->e, CURLOPT_PREREQFUNCTION, refuse_prereq) != CURLE_OK)
		return -1;
	x->abort_on = 1;
	return 0;
}

void xfer_abort_end(const struct shim_curl *api, struct xfer *x)
{
	if (!x->abort_on)
		return;
	x->abort_on = 0;
	api->easy_setopt(x->e, CURLOPT_PREREQFUNCTION, x->prereq);
	api->easy_setopt(x->e, CURLOPT_PREREQDATA, x->prereq_data);
}
