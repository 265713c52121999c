/*
 * easy.c - the curl_easy_* hooks: curl_easy_setopt() and the handle's
 * life (init, reset, duphandle, cleanup) record what the program sets
 * into its state (xfer.c); curl_easy_perform() admits, performs
 * (without ratectl's own request headers), learns, releases, and, when the
 * budget allows retries, sends a refused request again.  A request whose
 * answer is in the response cache is not sent: the answer is given to the
 * program's callbacks (serve.c), and curl_easy_getinfo() and
 * curl_easy_header() answer for it until the handle's next transfer.
 *
 * libcurl's own curl_easy_perform() drives the transfer through the
 * exported multi functions; shim_in_easy makes those pass straight
 * through, so a transfer is counted once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim.h"


/* COPYPOSTFIELDS: libcurl copies the data and the caller may free it
 * right after, so the shim keeps a copy too (the policy reads the model
 * and max_tokens from it at the transfer).  Without memory only its size
 * is known. */
static void note_copy(struct xfer *x, const char *data)
{
	size_t n = x->fields_size >= 0 ? (size_t)x->fields_size : data ? strlen(data) : 0;

	free(x->copy);
	x->fields = NULL;
	x->ncopy = n;
	if ((x->copy = malloc(n ? n : 1)) && data)
		memcpy(x->copy, data, n);
	x->body = SHIM_BODY_FIELDS;
}

/* CUSTOMREQUEST: libcurl copies it, so the shim does (the method keys the
 * response cache).  Without memory it is known to be some other method:
 * "?", which nothing caches. */
static void note_method(struct xfer *x, const char *m)
{
	free(x->method);
	x->method = NULL;
	x->method_lost = 0;
	if (m && !(x->method = strdup(m)))
		x->method_lost = 1;
}

/* ---- curl_easy_setopt ----------------------------------------------------- */

/* Options whose value is long. */
static CURLcode set_long(const struct shim_curl *a, CURL *e, CURLoption o, long v)
{
	CURLcode rc = a->easy_setopt(e, o, v);
	struct xfer *x;

	if (rc != CURLE_OK)
		return rc;
	switch (o) {
	case CURLOPT_POSTFIELDSIZE: case CURLOPT_POST: case CURLOPT_HTTPGET:
	case CURLOPT_NOBODY: case CURLOPT_UPLOAD: case CURLOPT_PORT:
	case CURLOPT_HEADER: case CURLOPT_HTTP_CONTENT_DECODING:
	case CURLOPT_HTTP_TRANSFER_DECODING: case CURLOPT_RESUME_FROM:
		break;
	default:
		return rc;
	}
	if (!(x = xfer_get(e, 1)))
		return rc;
	if (o == CURLOPT_POSTFIELDSIZE)
		x->fields_size = v;
	else if (o == CURLOPT_PORT)
		x->port = v > 0 && v < 65536 ? (unsigned)v : 0;
	else if (o == CURLOPT_POST)
		x->body = !v ? SHIM_BODY_NONE : x->fields || x->copy ?
			SHIM_BODY_FIELDS : SHIM_BODY_STREAM;
	else if (o == CURLOPT_UPLOAD)
		x->body = v ? SHIM_BODY_STREAM : SHIM_BODY_NONE;
	else if (o == CURLOPT_HEADER)
		x->include_header = v != 0;
	else if (o == CURLOPT_HTTP_CONTENT_DECODING)
		x->no_content_decoding = v == 0;
	else if (o == CURLOPT_HTTP_TRANSFER_DECODING)
		x->no_transfer_decoding = v == 0;
	else if (o == CURLOPT_RESUME_FROM)
		x->resume = v != 0;
	else if (v)             /* HTTPGET, NOBODY */
		x->body = SHIM_BODY_NONE;
	/* libcurl: POST, UPLOAD and HTTPGET imply a body in the answer. */
	if (o == CURLOPT_NOBODY)
		x->nobody = v != 0;
	else if ((o == CURLOPT_POST || o == CURLOPT_UPLOAD || o == CURLOPT_HTTPGET) && v)
		x->nobody = 0;
	return rc;
}

/* Options whose value is a data pointer. */
static CURLcode set_ptr(const struct shim_curl *a, CURL *e, CURLoption o, void *v)
{
	struct xfer *x;
	CURLcode rc;

	switch (o) {
	case CURLOPT_POSTFIELDS: case CURLOPT_COPYPOSTFIELDS: case CURLOPT_WRITEDATA:
	case CURLOPT_ERRORBUFFER: case CURLOPT_PREREQDATA: case CURLOPT_CURLU:
	case CURLOPT_MIMEPOST: case CURLOPT_HTTPHEADER: case CURLOPT_HEADERDATA:
	case CURLOPT_CUSTOMREQUEST: case CURLOPT_ACCEPT_ENCODING: case CURLOPT_RANGE:
/* Deprecated, but programs still set it and its body cannot be re-sent. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	case CURLOPT_HTTPPOST:
#pragma GCC diagnostic pop
		break;
	default:
		return a->easy_setopt(e, o, v);
	}
	x = xfer_get(e, 1);
	/* While ours are installed, the program's are kept for later. */
	if (x && o == CURLOPT_WRITEDATA && x->tee_on) {
		x->wdata = v;
		return CURLE_OK;
	}
	if (x && o == CURLOPT_PREREQDATA && x->abort_on) {
		x->prereq_data = v;
		return CURLE_OK;
	}
	if (x && o == CURLOPT_HTTPHEADER && x->hdrs_on) {
		x->headers = v;         /* libcurl gets it back at the end */
		return CURLE_OK;
	}
	if ((rc = a->easy_setopt(e, o, v)) != CURLE_OK || !x)
		return rc;
	if (o == CURLOPT_POSTFIELDS) {
		x->fields = v;
		free(x->copy);
		x->copy = NULL;
		x->body = v ? SHIM_BODY_FIELDS : SHIM_BODY_STREAM;
	} else if (o == CURLOPT_COPYPOSTFIELDS) {
		note_copy(x, v);
	} else if (o == CURLOPT_WRITEDATA) {
		x->wdata = v;
	} else if (o == CURLOPT_ERRORBUFFER) {
		x->errbuf = v;
	} else if (o == CURLOPT_PREREQDATA) {
		x->prereq_data = v;
	} else if (o == CURLOPT_CURLU) {
		x->curlu = v;
	} else if (o == CURLOPT_HTTPHEADER) {
		x->headers = v;
	} else if (o == CURLOPT_HEADERDATA) {
		x->hdata = v;
	} else if (o == CURLOPT_CUSTOMREQUEST) {
		note_method(x, v);
	} else if (o == CURLOPT_ACCEPT_ENCODING) {
		x->decoding = v != NULL;
	} else if (o == CURLOPT_RANGE) {
		x->range = v != NULL;
	} else if (v) {         /* MIMEPOST, HTTPPOST */
		x->body = SHIM_BODY_STREAM;
		x->nobody = 0;
	}
	return rc;
}

typedef void (*any_fn)(void);

/* Options whose value is a function pointer. */
static CURLcode set_fn(const struct shim_curl *a, CURL *e, CURLoption o, any_fn v)
{
	struct xfer *x;
	CURLcode rc;

	if (o != CURLOPT_WRITEFUNCTION && o != CURLOPT_PREREQFUNCTION &&
	    o != CURLOPT_HEADERFUNCTION)
		return a->easy_setopt(e, o, v);
	x = xfer_get(e, 1);
	if (x && o == CURLOPT_WRITEFUNCTION && x->tee_on) {
		x->wfn = (curl_write_callback)v;
		return CURLE_OK;
	}
	if (x && o == CURLOPT_PREREQFUNCTION && x->abort_on) {
		x->prereq = (curl_prereq_callback)v;
		return CURLE_OK;
	}
	if ((rc = a->easy_setopt(e, o, v)) != CURLE_OK || !x)
		return rc;
	if (o == CURLOPT_WRITEFUNCTION)
		x->wfn = (curl_write_callback)v;
	else if (o == CURLOPT_HEADERFUNCTION)
		x->hfn = (curl_write_callback)v;
	else
		x->prereq = (curl_prereq_callback)v;
	return rc;
}

/*
 * The argument is read with the type libcurl itself reads for the
 * option's range (long, pointer, function pointer, curl_off_t), so what
 * reaches libcurl is exactly what the program passed.
 */
CURLcode curl_easy_setopt(CURL *e, CURLoption o, ...)
{
	const struct shim_curl *a = shim_curl();
	CURLcode rc;
	va_list ap;

	if (!a) {
		shim_no_curl("curl_easy_setopt");
		return CURLE_FAILED_INIT;
	}
	va_start(ap, o);
	if (o < CURLOPTTYPE_OBJECTPOINT) {
		rc = set_long(a, e, o, va_arg(ap, long));
	} else if (o < CURLOPTTYPE_FUNCTIONPOINT || o >= CURLOPTTYPE_BLOB) {
		rc = set_ptr(a, e, o, va_arg(ap, void *));
	} else if (o < CURLOPTTYPE_OFF_T) {
		rc = set_fn(a, e, o, va_arg(ap, any_fn));
	} else {
		curl_off_t v = va_arg(ap, curl_off_t);
		struct xfer *x;

		rc = a->easy_setopt(e, o, v);
		if (rc == CURLE_OK && o == CURLOPT_POSTFIELDSIZE_LARGE &&
		    (x = xfer_get(e, 1)))
			x->fields_size = v;
		else if (rc == CURLE_OK && o == CURLOPT_RESUME_FROM_LARGE &&
		         (x = xfer_get(e, 1)))
			x->resume = v != 0;
	}
	va_end(ap);
	return rc;
}

/* ---- handle life ---------------------------------------------------------- */

void curl_easy_reset(CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct xfer *x;

	if (!a) {
		shim_no_curl("curl_easy_reset");
		return;
	}
	a->easy_reset(e);
	if ((x = xfer_get(e, 0))) {
		shim_hit_clear(x);
		xfer_defaults(x);
		x->tee_on = x->abort_on = 0;   /* reset removed ours too */
		xfer_hdrs_forget(x);
	}
}

/*
 * libcurl creates handles of its own (DNS-over-HTTPS) and frees them
 * without curl_easy_cleanup(); a new handle at such an address must not
 * inherit what the shim remembered about the old one.
 */
CURL *curl_easy_init(void)
{
	const struct shim_curl *a = shim_curl();
	struct xfer *x;
	CURL *e;

	if (!a) {
		shim_no_curl("curl_easy_init");
		return NULL;
	}
	if ((e = a->easy_init()) && (x = xfer_get(e, 0))) {
		shim_multi_forget(x);
		xfer_drop(e);
	}
	return e;
}

CURL *curl_easy_duphandle(CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct xfer *x, *y;
	CURL *d;

	if (!a) {
		shim_no_curl("curl_easy_duphandle");
		return NULL;
	}
	if (!(d = a->easy_duphandle(e)))
		return d;
	xfer_drop(d);
	if (!(x = xfer_get(e, 0)) || !(y = xfer_get(d, 1)))
		return d;
	y->fields = x->fields;
	y->fields_size = x->fields_size;
	if (x->copy && (y->copy = malloc(x->ncopy ? x->ncopy : 1)))
		memcpy(y->copy, x->copy, x->ncopy);
	y->ncopy = x->ncopy;
	y->headers = x->headers;
	y->body = x->body;
	y->wfn = x->wfn;
	y->wdata = x->wdata;
	y->hfn = x->hfn;
	y->hdata = x->hdata;
	y->include_header = x->include_header;
	y->nobody = x->nobody;
	note_method(y, x->method);
	y->method_lost |= x->method_lost;
	y->decoding = x->decoding;
	y->no_content_decoding = x->no_content_decoding;
	y->no_transfer_decoding = x->no_transfer_decoding;
	y->range = x->range;
	y->resume = x->resume;
	y->errbuf = x->errbuf;
	y->prereq = x->prereq;
	y->prereq_data = x->prereq_data;
	y->port = x->port;
	/* The copy must not inherit callbacks that point at x. */
	if (x->tee_on) {
		a->easy_setopt(d, CURLOPT_WRITEFUNCTION, x->wfn);
		a->easy_setopt(d, CURLOPT_WRITEDATA, x->wdata);
	}
	if (x->abort_on) {
		a->easy_setopt(d, CURLOPT_PREREQFUNCTION, x->prereq);
		a->easy_setopt(d, CURLOPT_PREREQDATA, x->prereq_data);
	}
	/* Nor x's header list, which is freed when x's transfer ends. */
	if (x->hdrs_on)
		a->easy_setopt(d, CURLOPT_HTTPHEADER, x->headers);
	return d;
}

void curl_easy_cleanup(CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct xfer *x;

	if (!a) {
		shim_no_curl("curl_easy_cleanup");
		return;
	}
	if (e && (x = xfer_get(e, 0))) {
		shim_multi_detach(a, x);        /* a transfer still in a multi */
		xfer_drop(e);
	}
	if (e)
		shim_multi_gone(e);     /* a done message the shim keeps for it */
	a->easy_cleanup(e);
}

/* ---- curl_easy_perform ---------------------------------------------------- */

static CURLcode pass(const struct shim_curl *a, CURL *e)
{
	CURLcode rc;

	shim_in_easy = 1;
	rc = a->easy_perform(e);
	shim_in_easy = 0;
	return rc;
}

/* The transfer fails without being sent; the error buffer says why. */
static CURLcode refuse(struct xfer *x)
{
	if (x->errbuf)
		snprintf(x->errbuf, CURL_ERROR_SIZE, "%s", x->refusal);
	shim_policy_done(x);
	return CURLE_ABORTED_BY_CALLBACK;
}

/* The answer is in the response cache: the program gets it, nothing is
 * sent. */
static CURLcode serve(struct xfer *x)
{
	CURLcode rc = shim_hit_deliver(x);

	shim_policy_done(x);    /* nothing to end: nothing was admitted */
	return rc;
}

static long status_of(const struct shim_curl *a, CURL *e)
{
	long code = 0;

	if (a->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
		return 0;
	return code;
}

/* The policy's backoff (full jitter); the cooldown the provider asked
 * for is enforced by the next admission on top. */
static void backoff(int64_t ns)
{
	struct timespec ts = { ns / SHIM_NS_PER_S, ns % SHIM_NS_PER_S };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Only a request whose body is in memory (or absent) can be sent again. */
static int may_retry(const struct xfer *x, unsigned attempt)
{
	return attempt < x->pol.retries && x->body != SHIM_BODY_STREAM;
}

/* Did this attempt end in a refusal the program has not seen any of? */
static int refused_unseen(const struct xfer *x, long status, int tee)
{
	if (status != 429 && status != 503)
		return 0;
	return tee && (!x->tee->decided || x->tee->holding);
}

static CURLcode perform_matched(const struct shim_curl *a, struct xfer *x)
{
	unsigned attempt = 0;
	CURLcode rc;

	for (;;) {
		int adm = shim_admit(x, 1, NULL), hold, tee;
		int64_t again = -1;
		long status;

		if (adm == SHIM_CACHED)
			return serve(x);
		if (adm == SHIM_REFUSE || shim_drop_begin(a, x) != 0)
			return refuse(x);
		hold = adm == SHIM_ADMITTED && may_retry(x, attempt);
		tee = adm == SHIM_ADMITTED && xfer_tee_begin(a, x, hold) == 0;
		rc = pass(a, x->e);
		status = status_of(a, x->e);
		if (adm == SHIM_ADMITTED) {
			shim_learn(a, x->e, x, status);
			/* The tee fed the policy every byte the program took. */
			if (tee && rc == CURLE_OK)
				shim_complete(a, x->e, x);
			again = shim_release(x, status, hold && refused_unseen(x, status, tee));
		}
		if (again >= 0) {
			xfer_tee_end(a, x);
			shim_tee_drop_held(x->tee);
			backoff(again);
			attempt++;
			continue;
		}
		if (tee)
			xfer_tee_replay(x);     /* a refusal held back in vain */
		xfer_tee_end(a, x);
		return rc;
	}
}

CURLcode curl_easy_perform(CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct shim_policy pol;
	struct xfer *x;
	CURLcode rc;

	if (!a) {
		shim_no_curl("curl_easy_perform");
		return CURLE_FAILED_INIT;
	}
	if (shim_in_easy)
		return a->easy_perform(e);
	if ((x = xfer_get(e, 0))) {
		/* In a multi for the program, not in libcurl's (parked, or an
		 * answer from the cache): libcurl's own refusal. */
		if (x->multi && (x->parked || x->served)) {
			if (x->errbuf)
				snprintf(x->errbuf, CURL_ERROR_SIZE,
				         "easy handle already used in multi handle");
			return CURLE_FAILED_INIT;
		}
		shim_hit_clear(x);      /* getinfo is libcurl's again */
	}
	if (!shim_match(a, e, x, &pol))
		return pass(a, e);
	if (!x && !(x = xfer_get(e, 1))) {
		shim_policy_drop(&pol);
		return pass(a, e);
	}
	x->t0 = shim_clock_ns(CLOCK_MONOTONIC);
	shim_policy_set(x, &pol);
	x->estimate = shim_estimate(&x->pol, x);
	rc = perform_matched(a, x);
	xfer_hdrs_end(a, x);    /* the program's header list back */
	return rc;
}

/* ---- what a transfer answered from the cache says ------------------------- */

/*
 * Every item takes one pointer (curl/curl.h).  The shim answers for a
 * handle whose last transfer was answered from the response cache
 * (serve.c); everything else is libcurl's.
 */
CURLcode curl_easy_getinfo(CURL *e, CURLINFO info, ...)
{
	const struct shim_curl *a = shim_curl();
	struct xfer *x;
	va_list ap;
	void *arg;

	va_start(ap, info);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!a) {
		shim_no_curl("curl_easy_getinfo");
		return CURLE_FAILED_INIT;
	}
	if (shim_hits_any() && e && (x = xfer_get(e, 0)) && shim_hit_info(x, info, arg))
		return CURLE_OK;
	return a->easy_getinfo(e, info, arg);
}

CURLHcode curl_easy_header(CURL *e, const char *name, size_t index,
                           unsigned int origin, int request, struct curl_header **hout)
{
	const struct shim_curl *a = shim_curl();
	struct xfer *x;

	if (!a) {
		shim_no_curl("curl_easy_header");
		return CURLHE_NOT_BUILT_IN;
	}
	if (shim_hits_any() && e && (x = xfer_get(e, 0)) && x->hit.on)
		return shim_hit_header(x, name, index, origin, request, hout);
	if (!a->easy_header)
		return CURLHE_NOT_BUILT_IN;
	return a->easy_header(e, name, index, origin, request, hout);
}

struct curl_header *curl_easy_nextheader(CURL *e, unsigned int origin, int request,
                                         struct curl_header *prev)
{
	const struct shim_curl *a = shim_curl();
	struct xfer *x;

	if (!a) {
		shim_no_curl("curl_easy_nextheader");
		return NULL;
	}
	if (shim_hits_any() && e && (x = xfer_get(e, 0)) && x->hit.on)
		return shim_hit_nextheader(x, origin, request, prev);
	if (!a->easy_nextheader)
		return NULL;
	return a->easy_nextheader(e, origin, request, prev);
}
