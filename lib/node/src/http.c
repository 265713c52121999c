/* http.c - libratectl-http for JavaScript: the policy handle, a
 * request's life (begin, reserve / poll / cancel, the response, end,
 * free), the local 429, the response cache's answers and counters, and
 * key ids.  ratectl.fetch() (fetch.js) is
 * written over these.
 *
 * A request (rn_req) holds a reference on its handle (rn_http), so that
 * a request freed or garbage-collected after its handle never uses a
 * freed one; the handle is closed with its last reference. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rn.h"

typedef struct rn_http {
	ratectl_http *h;
	unsigned refs;
	napi_env env;
	napi_ref notice;         /* function(message), or NULL: stderr */
} rn_http;

typedef struct rn_req {
	ratectl_http_request *req;   /* NULL once freed */
	rn_http *H;
} rn_req;

static void http_unref(rn_http *H)
{
	if (--H->refs > 0)
		return;
	ratectl_http_close(H->h);
	H->h = NULL;
	/* H->notice is deleted by the finalizer that dropped the last
	 * reference, which has the env to do it. */
	free(H);
}

static void *external(napi_env env, napi_value v, const char *what)
{
	void *p = NULL;

	if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
		rn_throw_type(env, what);
		return NULL;
	}
	return p;
}

#define ARG_HTTP(v) external(env, (v), "a ratectl HTTP handle is needed")
#define ARG_REQ(v) external(env, (v), "a ratectl request is needed")

/* A request still usable, or NULL with an error thrown. */
static rn_req *arg_live_req(napi_env env, napi_value v)
{
	rn_req *r = ARG_REQ(v);

	if (r && !r->req) {
		rn_throw_rc(env, RATECTL_HTTP_ESTATE, "ratectl request already ended and freed");
		return NULL;
	}
	return r;
}

static napi_value result(napi_env env, int rc, const char *detail)
{
	if (rc < 0) {
		rn_throw_rc(env, rc, detail);
		return NULL;
	}
	return rn_undefined(env);
}

/* Notices (a config that stopped loading, an estimate too big): to the
 * JavaScript function given at open (process.emitWarning), else stderr.
 * Called on the JavaScript thread, inside a call of ours. */
static void notice(void *ctx, int kind, const char *msg)
{
	rn_http *H = ctx;
	napi_env env = H->env;
	napi_value fn, recv, argv[1];
	bool pending = false;

	(void)kind;
	if (H->notice && napi_is_exception_pending(env, &pending) == napi_ok && !pending &&
	    napi_get_reference_value(env, H->notice, &fn) == napi_ok && fn &&
	    napi_get_undefined(env, &recv) == napi_ok &&
	    napi_create_string_utf8(env, msg ? msg : "", NAPI_AUTO_LENGTH, &argv[0]) == napi_ok &&
	    napi_call_function(env, recv, fn, 1, argv, NULL) == napi_ok)
		return;
	if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
		napi_value exc;

		napi_get_and_clear_last_exception(env, &exc);   /* not ours to raise here */
	}
	fprintf(stderr, "ratectl: %s\n", msg ? msg : "");
}

static void http_finalize(napi_env env, void *data, void *hint)
{
	rn_http *H = data;

	(void)hint;
	if (H->notice)
		napi_delete_reference(env, H->notice);
	H->notice = NULL;
	http_unref(H);
}

/* httpOpen(configPath?, configText?, ledgerDir?, notice?) */
static napi_value n_http_open(napi_env env, napi_callback_info info)
{
	ratectl_http_options o;
	napi_value argv[4], ext;
	char *path = NULL, *text = NULL, *dir = NULL;
	size_t tlen = 0;
	napi_valuetype t;
	rn_http *H;
	int rc;

	if (rn_args(env, info, 4, argv))
		return NULL;
	if ((!rn_is_nullish(env, argv[0]) && rn_string(env, argv[0], "config", &path, NULL)) ||
	    (!rn_is_nullish(env, argv[1]) && rn_string(env, argv[1], "configText", &text, &tlen)) ||
	    (!rn_is_nullish(env, argv[2]) && rn_string(env, argv[2], "ledger", &dir, NULL)))
		goto fail;
	if (!(H = calloc(1, sizeof *H))) {
		rn_throw_rc(env, -ENOMEM, NULL);
		goto fail;
	}
	H->env = env;
	H->refs = 1;
	if (napi_typeof(env, argv[3], &t) == napi_ok && t == napi_function &&
	    napi_create_reference(env, argv[3], 1, &H->notice) != napi_ok) {
		free(H);
		rn_throw_napi(env, "httpOpen");
		goto fail;
	}
	memset(&o, 0, sizeof o);
	o.version = RATECTL_HTTP_OPTIONS_VERSION;
	o.config_path = path;
	o.config_text = text;
	o.config_len = tlen;
	o.ledger_dir = dir;
	o.notice = notice;
	o.notice_ctx = H;
	rc = ratectl_http_open(&H->h, &o);
	free(path);
	free(text);
	free(dir);
	path = text = dir = NULL;
	if (rc < 0) {
		if (H->notice)
			napi_delete_reference(env, H->notice);
		free(H);
		rn_throw_rc(env, rc, NULL);
		return NULL;
	}
	if (napi_create_external(env, H, http_finalize, NULL, &ext) != napi_ok) {
		http_finalize(env, H, NULL);
		rn_throw_napi(env, "napi_create_external");
		return NULL;
	}
	return ext;
fail:
	free(path);
	free(text);
	free(dir);
	return NULL;
}

static void req_finalize(napi_env env, void *data, void *hint)
{
	rn_req *r = data;

	(void)env;
	(void)hint;
	/* Dropped unfinished (a response never read to its end nor
	 * cancelled): free releases its lease as never sent. */
	if (r->req)
		ratectl_http_request_free(r->req);
	http_unref(r->H);
	free(r);
}

/* Headers come as one flat array of strings: [name0, value0, name1, ...].
 * Copied into one allocation: *out (an array of n headers) owns them. */
static int flat_headers(napi_env env, napi_value arr, ratectl_http_header **out, size_t *n)
{
	ratectl_http_header *hs = NULL;
	uint32_t len, i;
	bool isarr;
	char **strs = NULL;
	int rc = -1;

	*out = NULL;
	*n = 0;
	if (rn_is_nullish(env, arr))
		return 0;
	if (napi_is_array(env, arr, &isarr) != napi_ok || !isarr ||
	    napi_get_array_length(env, arr, &len) != napi_ok || len % 2) {
		rn_throw_type(env, "headers must be a flat array of names and values");
		return -1;
	}
	if (len == 0)
		return 0;
	if (!(hs = calloc(len / 2, sizeof *hs)) || !(strs = calloc(len, sizeof *strs))) {
		free(hs);
		rn_throw_rc(env, -ENOMEM, NULL);
		return -1;
	}
	for (i = 0; i < len; i++) {
		napi_value v;

		if (napi_get_element(env, arr, i, &v) != napi_ok) {
			rn_throw_napi(env, "headers");
			goto out;
		}
		if (rn_string(env, v, i % 2 ? "a header value" : "a header name", &strs[i], NULL))
			goto out;
	}
	for (i = 0; i < len / 2; i++) {
		hs[i].name = strs[2 * i];
		hs[i].value = strs[2 * i + 1];
	}
	*out = hs;
	*n = len / 2;
	hs = NULL;
	rc = 0;
out:
	if (rc) {
		for (i = 0; i < len; i++)
			free(strs[i]);
		free(hs);
	}
	free(strs);
	return rc;
}

static void headers_free(ratectl_http_header *hs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free((char *)hs[i].name);
		free((char *)hs[i].value);
	}
	free(hs);
}

/* The bytes of a Buffer, a Uint8Array or any typed array / ArrayBuffer
 * (not copied: valid during this call), or a string (copied to *copy). */
static int bytes(napi_env env, napi_value v, const void **data, size_t *len, char **copy)
{
	napi_valuetype t;
	bool is;

	*data = NULL;
	*len = 0;
	*copy = NULL;
	if (rn_is_nullish(env, v))
		return 0;
	if (napi_typeof(env, v, &t) == napi_ok && t == napi_string) {
		if (rn_string(env, v, "body", copy, len))
			return -1;
		*data = *copy;
		return 0;
	}
	if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
		napi_typedarray_type tt;
		napi_value ab;
		size_t n, off;
		void *p;

		if (napi_get_typedarray_info(env, v, &tt, &n, &p, &ab, &off) != napi_ok)
			goto bad;
		switch (tt) {
		case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array:
			break;
		case napi_int16_array: case napi_uint16_array:
			n *= 2;
			break;
		case napi_int32_array: case napi_uint32_array: case napi_float32_array:
			n *= 4;
			break;
		default:
			n *= 8;
			break;
		}
		*data = p;
		*len = n;
		return 0;
	}
	if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
		void *p;
		size_t n;

		if (napi_get_arraybuffer_info(env, v, &p, &n) != napi_ok)
			goto bad;
		*data = p;
		*len = n;
		return 0;
	}
	if (napi_is_dataview(env, v, &is) == napi_ok && is) {
		napi_value ab;
		size_t n, off;
		void *p;

		if (napi_get_dataview_info(env, v, &n, &p, &ab, &off) != napi_ok)
			goto bad;
		*data = p;
		*len = n;
		return 0;
	}
bad:
	rn_throw_type(env, "bytes must be a string, a Buffer, a typed array or an ArrayBuffer");
	return -1;
}

/* begin(H, method, url, headers, body, bodySize) -> a request, or null
 * when no budget matches (send it untouched). */
static napi_value n_begin(napi_env env, napi_callback_info info)
{
	napi_value argv[6], ext;
	char *method = NULL, *url = NULL, *copy = NULL;
	ratectl_http_header *hs = NULL;
	ratectl_http_request *req = NULL;
	const void *body;
	size_t nh = 0, blen;
	uint64_t bsize = 0;
	rn_http *H;
	rn_req *r;
	int rc;

	if (rn_args(env, info, 6, argv) || !(H = ARG_HTTP(argv[0])) ||
	    rn_string(env, argv[1], "method", &method, NULL))
		return NULL;
	if (rn_string(env, argv[2], "url", &url, NULL) ||
	    flat_headers(env, argv[3], &hs, &nh) ||
	    bytes(env, argv[4], &body, &blen, &copy) ||
	    (!rn_is_nullish(env, argv[5]) && rn_u64(env, argv[5], "bodySize", &bsize))) {
		ext = NULL;
		goto out;
	}
	rc = ratectl_http_request_begin(&req, H->h, method, url, hs, nh, body, blen, bsize);
	if (rc < 0) {
		ext = result(env, rc, NULL);
		goto out;
	}
	if (!req) {
		napi_get_null(env, &ext);
		goto out;
	}
	if (!(r = malloc(sizeof *r))) {
		ratectl_http_request_free(req);
		ext = result(env, -ENOMEM, NULL);
		goto out;
	}
	r->req = req;
	r->H = H;
	H->refs++;
	if (napi_create_external(env, r, req_finalize, NULL, &ext) != napi_ok) {
		req_finalize(env, r, NULL);
		rn_throw_napi(env, "napi_create_external");
		ext = NULL;
	}
out:
	free(method);
	free(url);
	free(copy);
	headers_free(hs, nh);
	return ext;
}

/* info(req) -> what the request is charged to and how it is handled */
static napi_value n_info(napi_env env, napi_callback_info info)
{
	const ratectl_http_info *i;
	napi_value argv[1], o, arr, drop;
	unsigned k, ndrop;
	rn_req *r;

	if (rn_args(env, info, 1, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	i = ratectl_http_request_info(r->req);
	ndrop = i->ndrop_headers < 2 ? i->ndrop_headers : 2;
	RN_CALL(env, napi_create_object(env, &o));
	RN_CALL(env, napi_create_array_with_length(env, i->nbudgets, &arr));
	for (k = 0; k < i->nbudgets && k < RATECTL_HTTP_MAX_BUDGETS; k++)
		RN_CALL(env, napi_set_element(env, arr, k, rn_str(env, i->budgets[k])));
	/* ratectl's own request headers, for fetch to remove before sending */
	RN_CALL(env, napi_create_array_with_length(env, ndrop, &drop));
	for (k = 0; k < ndrop; k++)
		RN_CALL(env, napi_set_element(env, drop, k, rn_str(env, i->drop_headers[k])));
	if (rn_set(env, o, "budget", rn_str(env, i->budget)) ||
	    rn_set(env, o, "budgets", arr) ||
	    rn_set(env, o, "estimate", rn_num(env, (double)i->estimate)) ||
	    rn_set(env, o, "isRetry", rn_int(env, i->is_retry)) ||
	    rn_set(env, o, "retryCount", rn_int(env, i->retry_count)) ||
	    rn_set(env, o, "timeoutMs", rn_num(env, i->timeout_ns / 1e6)) ||
	    rn_set(env, o, "onErrorClosed", rn_int(env, i->on_error_closed)) ||
	    rn_set(env, o, "retries", rn_int(env, i->retries)) ||
	    rn_set(env, o, "retryPercent", rn_int(env, i->retry_percent)) ||
	    rn_set(env, o, "tenant", i->tenant ? rn_str(env, i->tenant) : rn_null(env)) ||
	    rn_set(env, o, "tag", rn_str(env, i->tag)) ||
	    rn_set(env, o, "dropHeaders", drop) ||
	    rn_set(env, o, "cacheable", rn_int(env, i->cacheable))) {
		rn_throw_napi(env, "request info");
		return NULL;
	}
	return o;
}

/* httpReserve(req) -> 0, HTTP_PASS, EPENDING (wait, fd, fifo in scratch)
 * or a refusal's code (why(req) says why); the budget's timeout bounds it. */
static napi_value n_reserve(napi_env env, napi_callback_info info)
{
	ratectl_http_wait w = { 0, -1, 0 };
	napi_value argv[1];
	rn_req *r;
	int rc;

	if (rn_args(env, info, 1, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	rc = ratectl_http_reserve(r->req, -1, &w);
	if (rc == RATECTL_EPENDING)
		rn_scratch_wait(env, w.wait_ns, w.fd, w.fifo);
	return rn_int(env, rc);
}

static napi_value n_poll(napi_env env, napi_callback_info info)
{
	ratectl_http_wait w = { 0, -1, 0 };
	napi_value argv[1];
	rn_req *r;
	int rc;

	if (rn_args(env, info, 1, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	rc = ratectl_http_reserve_poll(r->req, &w);
	if (rc == RATECTL_EPENDING)
		rn_scratch_wait(env, w.wait_ns, w.fd, w.fifo);
	return rn_int(env, rc);
}

static napi_value n_cancel(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_req *r;

	if (rn_args(env, info, 1, argv) || !(r = ARG_REQ(argv[0])))
		return NULL;
	if (r->req)
		ratectl_http_reserve_cancel(r->req);
	return rn_undefined(env);
}

static napi_value n_drain(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_http *H;

	if (rn_args(env, info, 1, argv) || !(H = ARG_HTTP(argv[0])))
		return NULL;
	return rn_int(env, ratectl_http_events_drain(H->h));
}

static napi_value n_why(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_req *r;

	if (rn_args(env, info, 1, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	return rn_str(env, ratectl_http_request_why(r->req));
}

/* An answer the library made or kept, as {status, headers: [name, value,
 * ...], body: Buffer}; the body is copied, since req owns the bytes. */
static napi_value local_js(napi_env env, const ratectl_http_local *loc)
{
	napi_value o, hs, body;
	size_t i, n = loc->nheaders < 4 ? loc->nheaders : 4;

	RN_CALL(env, napi_create_object(env, &o));
	RN_CALL(env, napi_create_array_with_length(env, 2 * n, &hs));
	for (i = 0; i < n; i++) {
		RN_CALL(env, napi_set_element(env, hs, (uint32_t)(2 * i),
		                              rn_str(env, loc->headers[i].name)));
		RN_CALL(env, napi_set_element(env, hs, (uint32_t)(2 * i + 1),
		                              rn_str(env, loc->headers[i].value)));
	}
	RN_CALL(env, napi_create_buffer_copy(env, loc->body_len, loc->body ? loc->body : "",
	                                     NULL, &body));
	if (rn_set(env, o, "status", rn_int(env, loc->status)) || rn_set(env, o, "headers", hs) ||
	    rn_set(env, o, "body", body)) {
		rn_throw_napi(env, "local response");
		return NULL;
	}
	return o;
}

/* An answer made without sending: get's (local or cached) for argv[0]. */
static napi_value answer_of(napi_env env, napi_callback_info info,
                            int (*get)(const ratectl_http_request *, ratectl_http_local *))
{
	ratectl_http_local loc;
	napi_value argv[1];
	rn_req *r;
	int rc;

	if (rn_args(env, info, 1, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	if ((rc = get(r->req, &loc)) < 0)
		return result(env, rc, NULL);
	return local_js(env, &loc);
}

/* localResponse(req): the 429 of RATECTL_HTTP_ERETRYBUDGET */
static napi_value n_local(napi_env env, napi_callback_info info)
{
	return answer_of(env, info, ratectl_http_local_response);
}

/* cachedResponse(req): the answer of RATECTL_HTTP_CACHED, from the
 * host-wide response cache */
static napi_value n_cached(napi_env env, napi_callback_info info)
{
	return answer_of(env, info, ratectl_http_cached_response);
}

/* status(req, code) */
static napi_value n_status(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int64_t code;
	rn_req *r;

	if (rn_args(env, info, 2, argv) || !(r = arg_live_req(env, argv[0])) ||
	    rn_i64(env, argv[1], "status", &code))
		return NULL;
	if (code < 0 || code > 999) {
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "an HTTP status is 0..999");
		return NULL;
	}
	return result(env, ratectl_http_response_status(r->req, (int)code), NULL);
}

/* headers(req, [name, value, ...]) */
static napi_value n_headers(napi_env env, napi_callback_info info)
{
	ratectl_http_header *hs;
	napi_value argv[2], out;
	size_t n;
	rn_req *r;

	if (rn_args(env, info, 2, argv) || !(r = arg_live_req(env, argv[0])) ||
	    flat_headers(env, argv[1], &hs, &n))
		return NULL;
	out = result(env, ratectl_http_response_headers(r->req, hs, n), NULL);
	headers_free(hs, n);
	return out;
}

/* body(req, chunk): decoded body bytes as they stream through */
static napi_value n_body(napi_env env, napi_callback_info info)
{
	napi_value argv[2], out;
	const void *data;
	size_t len;
	char *copy;
	rn_req *r;

	if (rn_args(env, info, 2, argv) || !(r = arg_live_req(env, argv[0])) ||
	    bytes(env, argv[1], &data, &len, &copy))
		return NULL;
	out = result(env, len ? ratectl_http_response_body(r->req, data, len) : 0, NULL);
	free(copy);
	return out;
}

/* complete(req): the body given is the whole body, read to its end
 * without error; only then may the end store it in the response cache */
static napi_value n_complete(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_req *r;

	if (rn_args(env, info, 1, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	return result(env, ratectl_http_response_complete(r->req), NULL);
}

static napi_value n_resendable(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	bool yes = false;
	rn_req *r;

	if (rn_args(env, info, 2, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	RN_CALL(env, napi_get_value_bool(env, argv[1], &yes));
	ratectl_http_request_set_resendable(r->req, yes);
	return rn_undefined(env);
}

/* end(req) -> the outcome of the attempt */
static napi_value n_end(napi_env env, napi_callback_info info)
{
	ratectl_http_outcome out;
	napi_value argv[1], o;
	rn_req *r;
	int rc;

	if (rn_args(env, info, 1, argv) || !(r = arg_live_req(env, argv[0])))
		return NULL;
	if ((rc = ratectl_http_request_end(r->req, &out)) < 0)
		return result(env, rc, NULL);
	RN_CALL(env, napi_create_object(env, &o));
	if (rn_set(env, o, "status", rn_int(env, out.status)) ||
	    rn_set(env, o, "tokens", rn_num(env, (double)out.tokens)) ||
	    rn_set(env, o, "usageKnown", rn_int(env, out.usage_known)) ||
	    rn_set(env, o, "cooldownMs", rn_num(env, out.cooldown_ns / 1e6)) ||
	    rn_set(env, o, "windows", rn_int(env, out.windows)) ||
	    rn_set(env, o, "retry", rn_int(env, out.retry)) ||
	    rn_set(env, o, "retryAfterMs", rn_num(env, out.retry_after_ns / 1e6)) ||
	    rn_set(env, o, "attempt", rn_int(env, out.attempt))) {
		rn_throw_napi(env, "outcome");
		return NULL;
	}
	return o;
}

/* free(req): idempotent; a lease still held is released as never sent */
static napi_value n_free(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_req *r;

	if (rn_args(env, info, 1, argv) || !(r = ARG_REQ(argv[0])))
		return NULL;
	if (r->req)
		ratectl_http_request_free(r->req);
	r->req = NULL;
	return rn_undefined(env);
}

/* The counters of one budget's cache as JavaScript reads them. */
static napi_value cache_stats_js(napi_env env, const ratectl_http_cache_stats *st)
{
	napi_value o;

	RN_CALL(env, napi_create_object(env, &o));
	if (rn_set(env, o, "budget", rn_strn(env, st->budget, sizeof st->budget)) ||
	    rn_set(env, o, "entries", rn_num(env, (double)st->entries)) ||
	    rn_set(env, o, "bytes", rn_num(env, (double)st->bytes)) ||
	    rn_set(env, o, "hits", rn_num(env, (double)st->hits)) ||
	    rn_set(env, o, "coalesced", rn_num(env, (double)st->coalesced)) ||
	    rn_set(env, o, "misses", rn_num(env, (double)st->misses)) ||
	    rn_set(env, o, "stores", rn_num(env, (double)st->stores)) ||
	    rn_set(env, o, "evictions", rn_num(env, (double)st->evictions)) ||
	    rn_set(env, o, "expired", rn_num(env, (double)st->expired)) ||
	    rn_set(env, o, "tokensSaved", rn_num(env, (double)st->tokens_saved))) {
		rn_throw_napi(env, "cache stats");
		return NULL;
	}
	return o;
}

/* cacheStats(H, budget?) -> [{budget, entries, ...}], sorted by name.
 * Read twice when there are more budgets than the first guess holds
 * (one may be made in between: what the second read found is kept). */
static napi_value n_cache_stats(napi_env env, napi_callback_info info)
{
	char budget[RATECTL_NAME_MAX + 1];
	ratectl_http_cache_stats *st = NULL, *grown;
	napi_value argv[2], arr = NULL, v;
	size_t cap = 16, i;
	rn_http *H;
	int n;

	if (rn_args(env, info, 2, argv) || !(H = ARG_HTTP(argv[0])))
		return NULL;
	if (!rn_is_nullish(env, argv[1]) && rn_name(env, argv[1], budget))
		return NULL;
	for (;;) {
		if (!(grown = realloc(st, cap * sizeof *st))) {
			rn_throw_rc(env, -ENOMEM, NULL);
			goto out;
		}
		st = grown;
		n = ratectl_http_cache_stats_read(H->h, rn_is_nullish(env, argv[1]) ? NULL : budget,
		                                  st, cap);
		if (n < 0) {
			rn_throw_rc(env, n, NULL);
			goto out;
		}
		if ((size_t)n <= cap)
			break;
		cap = (size_t)n + 16;
	}
	if (napi_create_array_with_length(env, (size_t)n, &arr) != napi_ok) {
		rn_throw_napi(env, "cache stats");
		arr = NULL;
		goto out;
	}
	for (i = 0; i < (size_t)n; i++) {
		if (!(v = cache_stats_js(env, &st[i])) ||
		    napi_set_element(env, arr, (uint32_t)i, v) != napi_ok) {
			if (v)
				rn_throw_napi(env, "cache stats");
			arr = NULL;
			goto out;
		}
	}
out:
	free(st);
	return arr;
}

/* cacheClear(H, budget?, resetCounters?) -> entries removed */
static napi_value n_cache_clear(napi_env env, napi_callback_info info)
{
	char budget[RATECTL_NAME_MAX + 1];
	napi_value argv[3];
	bool reset = false;
	int64_t n;
	rn_http *H;

	if (rn_args(env, info, 3, argv) || !(H = ARG_HTTP(argv[0])))
		return NULL;
	if (!rn_is_nullish(env, argv[1]) && rn_name(env, argv[1], budget))
		return NULL;
	if (!rn_is_nullish(env, argv[2]))
		RN_CALL(env, napi_get_value_bool(env, argv[2], &reset));
	n = ratectl_http_cache_clear(H->h, rn_is_nullish(env, argv[1]) ? NULL : budget, reset);
	if (n < 0)
		return result(env, (int)n, NULL);
	return rn_int(env, n);
}

/* keyId(key) -> the 16 hex digits a config's `key =` names */
static napi_value n_key_id(napi_env env, napi_callback_info info)
{
	char out[RATECTL_HTTP_KEY_ID_LEN + 1];
	napi_value argv[1], v;
	const void *data;
	size_t len;
	char *copy;
	int rc;

	if (rn_args(env, info, 1, argv) || bytes(env, argv[0], &data, &len, &copy))
		return NULL;
	rc = ratectl_http_key_id(out, data ? data : "", len);
	free(copy);
	if (rc < 0)
		return result(env, rc, NULL);
	v = rn_str(env, out);
	return v;
}

#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default, NULL }

int rn_http_init(napi_env env, napi_value exports)
{
	napi_property_descriptor d[] = {
		FN("httpOpen", n_http_open), FN("begin", n_begin), FN("info", n_info),
		FN("httpReserve", n_reserve), FN("httpPoll", n_poll),
		FN("httpCancel", n_cancel), FN("httpDrain", n_drain), FN("why", n_why),
		FN("localResponse", n_local), FN("cachedResponse", n_cached),
		FN("complete", n_complete), FN("cacheStats", n_cache_stats),
		FN("cacheClear", n_cache_clear), FN("status", n_status),
		FN("headers", n_headers), FN("body", n_body),
		FN("setResendable", n_resendable), FN("end", n_end), FN("free", n_free),
		FN("keyId", n_key_id),
	};

	return napi_define_properties(env, exports, sizeof d / sizeof d[0], d) == napi_ok ? 0 : -1;
}
