/*
 * xfer.c - the shim's state for each easy handle: what the program set
 * (curl_easy_setopt), and the tee that reads a response's usage without
 * disturbing the program's own write callback.
 *
 * Options are passed through untouched except while a matched transfer
 * is in progress: then the shim's write callback (and, for a refused
 * multi transfer, its pre-request callback) is installed, and what the
 * program sets meanwhile is kept for when the transfer ends.  Handles
 * that never reach a matched host are never altered.
 */
#include <pthread.h>
#include <stdarg.h>
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

static void program_defaults(struct xfer *x)
{
	x->fields = NULL;
	x->fields_size = -1;
	x->copied = 0;
	x->copied_bytes = 0;
	x->copied_max = -1;
	x->body = SHIM_BODY_NONE;
	x->wfn = NULL;
	x->wdata = stdout;      /* libcurl's default CURLOPT_WRITEDATA */
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
		program_defaults(x);
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

void xfer_body(const struct xfer *x, uint64_t *bytes, int64_t *max_tokens)
{
	uint64_t m;

	*bytes = 0;
	*max_tokens = -1;
	if (x->body == SHIM_BODY_STREAM) {
		/* Only its declared size is known. */
		*bytes = x->fields_size > 0 ? (uint64_t)x->fields_size : 0;
	} else if (x->body == SHIM_BODY_FIELDS && x->copied) {
		*bytes = x->copied_bytes;
		*max_tokens = x->copied_max;
	} else if (x->body == SHIM_BODY_FIELDS && x->fields) {
		*bytes = fields_len(x);
		if (jscan_max_tokens(x->fields, (size_t)*bytes, &m))
			*max_tokens = (int64_t)m;
	}
}

/* COPYPOSTFIELDS: libcurl copies the data and the caller may free it
 * right after, so it is read now. */
static void note_copy(struct xfer *x, const char *data)
{
	uint64_t m;

	x->fields = NULL;
	x->copied = 1;
	x->copied_bytes = x->fields_size >= 0 ? (uint64_t)x->fields_size :
		data ? strlen(data) : 0;
	x->copied_max = data && jscan_max_tokens(data, (size_t)x->copied_bytes, &m) ?
		(int64_t)m : -1;
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
		x->body = !v ? SHIM_BODY_NONE : x->fields || x->copied ?
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
	case CURLOPT_MIMEPOST:
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
	if ((rc = a->easy_setopt(e, o, v)) != CURLE_OK || !x)
		return rc;
	if (o == CURLOPT_POSTFIELDS) {
		x->fields = v;
		x->copied = 0;
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
		program_defaults(x);
		x->tee_on = x->abort_on = 0;   /* reset removed ours too */
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
	y->copied = x->copied;
	y->copied_bytes = x->copied_bytes;
	y->copied_max = x->copied_max;
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

/* ---- the tee -------------------------------------------------------------- */

static size_t prog_write(struct xfer *x, char *p, size_t size, size_t n)
{
	if (x->wfn)
		return x->wfn(p, size, n, x->wdata);
	return fwrite(p, size, n, x->wdata ? (FILE *)x->wdata : stdout);
}

/* Keep the first SHIM_HEAD_MAX and the last SHIM_TAIL_MAX bytes.  The
 * tail buffer is twice that size so that bytes move once per SHIM_TAIL_MAX
 * appended, not at every write. */
static void capture(struct shim_tee *t, const char *p, size_t len)
{
	size_t k;

	if (t->nhead < SHIM_HEAD_MAX) {
		k = len < SHIM_HEAD_MAX - t->nhead ? len : SHIM_HEAD_MAX - t->nhead;
		memcpy(t->head + t->nhead, p, k);
		t->nhead += k;
	}
	t->total += len;
	if (len >= SHIM_TAIL_MAX) {
		memcpy(t->tail, p + len - SHIM_TAIL_MAX, SHIM_TAIL_MAX);
		t->ntail = SHIM_TAIL_MAX;
		return;
	}
	if (t->ntail + len > sizeof t->tail) {
		memmove(t->tail, t->tail + t->ntail - SHIM_TAIL_MAX, SHIM_TAIL_MAX);
		t->ntail = SHIM_TAIL_MAX;
	}
	memcpy(t->tail + t->ntail, p, len);
	t->ntail += len;
}

/* Hold back a refused response's body: the retry's replaces it. */
static int hold(struct shim_tee *t, const char *p, size_t len)
{
	char *n;

	if (t->nheld + len > SHIM_HELD_MAX)
		return -1;
	if (!(n = realloc(t->held, t->nheld + len)))
		return -1;
	memcpy(n + t->nheld, p, len);
	t->held = n;
	t->nheld += len;
	return 0;
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
		if (hold(t, p, len) == 0) {
			capture(t, p, len);
			return len;
		}
		/* Too big to hold: give it all to the program, retry no more. */
		t->holding = 0;
		t->may_hold = 0;
		xfer_tee_replay(x);
	}
	r = prog_write(x, p, size, n);
	if (r == len)
		capture(t, p, len);
	return r;
}

int xfer_tee_begin(const struct shim_curl *api, struct xfer *x, int may_hold)
{
	struct shim_tee *t = x->tee;

	if (!t && !(t = x->tee = malloc(sizeof *t)))
		return -1;
	t->nhead = t->ntail = 0;
	t->total = 0;
	t->decided = t->holding = 0;
	t->may_hold = may_hold;
	t->held = NULL;
	t->nheld = 0;
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
	if (t) {
		free(t->held);
		t->held = NULL;
		t->nheld = 0;
	}
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
