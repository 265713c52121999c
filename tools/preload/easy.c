/*
 * easy.c - the curl_easy_* hooks: curl_easy_setopt() and the handle's
 * life (init, reset, duphandle, cleanup) record what the program sets
 * into its state (xfer.c); curl_easy_perform() admits, performs
 * (without ratectl's own request headers), learns, releases, and, when the
 * budget allows retries, sends a refused request again.
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
	else if (v)             /* HTTPGET, NOBODY */
		x->body = SHIM_BODY_NONE;
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
	case CURLOPT_MIMEPOST: case CURLOPT_HTTPHEADER:
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
	} else if (v) {         /* MIMEPOST, HTTPPOST */
		x->body = SHIM_BODY_STREAM;
	}
	return rc;
}

typedef void (*any_fn)(void);

/* Options whose value is a function pointer. */
static CURLcode set_fn(const struct shim_curl *a, CURL *e, CURLoption o, any_fn v)
{
	struct xfer *x;
	CURLcode rc;

	if (o != CURLOPT_WRITEFUNCTION && o != CURLOPT_PREREQFUNCTION)
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
static CURLcode refuse(const struct xfer *x)
{
	if (x->errbuf)
		snprintf(x->errbuf, CURL_ERROR_SIZE, "%s", x->refusal);
	return CURLE_ABORTED_BY_CALLBACK;
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

		if (adm == SHIM_REFUSE || shim_drop_begin(a, x) != 0)
			return refuse(x);
		hold = adm == SHIM_ADMITTED && may_retry(x, attempt);
		tee = adm == SHIM_ADMITTED && xfer_tee_begin(a, x, hold) == 0;
		rc = pass(a, x->e);
		status = status_of(a, x->e);
		if (adm == SHIM_ADMITTED) {
			shim_learn(a, x->e, x, status);
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
	x = xfer_get(e, 0);
	if (!shim_match(a, e, x, &pol))
		return pass(a, e);
	if (!x && !(x = xfer_get(e, 1))) {
		shim_policy_drop(&pol);
		return pass(a, e);
	}
	shim_policy_set(x, &pol);
	x->estimate = shim_estimate(&x->pol, x);
	rc = perform_matched(a, x);
	xfer_hdrs_end(a, x);    /* the program's header list back */
	return rc;
}
