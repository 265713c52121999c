// fuzz-sources: -Ilib/http lib/http/*.c lib/*.c -linih -llmdb -lhiredis -lpthread
/*
 * fuzz_http_response.c - a response through the public API of
 * libratectl-http, on any bytes: a request to a budget of an in-memory
 * config is admitted (ratectl_http_try) on a ledger in a temporary
 * directory, then given a status, headers (rate-limit headers,
 * Retry-After, retry-after-ms, ...) and a body in pieces, and ended.
 *
 * Input: byte 0 picks the status, byte 1 whether the request says it is
 * an SDK retry; then "name: value" lines up to an empty line; the rest is
 * the body, cut into pieces whose sizes come from the body's own bytes.
 * The outcome is checked against the header's contract: the status given
 * back, a cooldown only after 429/503 and never above an hour, at most
 * RH_HDR_WINDOWS windows learned, nothing charged for a 429, a retry only
 * after 429/503 with a backoff under 30 s.  The same response given again
 * as one header array (ratectl_http_response_headers) must teach the
 * same.  The budget is reset after each input, so every input starts
 * from a refilled budget without a cooldown.
 */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratectl.h"
#include "ratectl_http.h"
#include "rh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NS_PER_S 1000000000LL
#define MAX_HEADERS 40

static const char conf_text[] =
	"[fz]\nmatch = api.example.test\nrequests = 1000000/s\n"
	"tokens = 1000000000/min\nretries = 3\nretry_budget = 50%\n";
static const char url[] = "https://api.example.test/v1/chat/completions";
/* Each request's body differs (a counter of fixed width, so the estimate
 * does not): a request that failed is otherwise recognised when seen
 * again, and every input after a 429 would be a retry. */
static const char req_fmt[] = "{\"model\":\"m\",\"max_tokens\":100,"
                              "\"messages\":[{\"role\":\"user\",\"content\":\"%016llx\"}]}";
static unsigned long long nreq;
static const int statuses[] = { 200, 429, 503, 0, 500, 408, 201, 409, 400, 404 };

static char dir[64];
static ratectl *ledger;
static ratectl_http *http;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void cleanup(void)
{
	if (http)
		ratectl_http_close(http);
	if (ledger)
		ratectl_close(ledger);
	if (dir[0])
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(dir, sizeof dir, "%s/ratectl-fuzz.XXXXXX", base);
	if (!mkdtemp(dir) || ratectl_open(&ledger, dir, NULL) != 0) {
		fprintf(stderr, "fuzz_http_response: ledger in %s: %s\n", dir,
		        ratectl_errmsg());
		abort();
	}
	o.config_text = conf_text;
	o.config_len = sizeof conf_text - 1;
	o.ledger = ledger;
	if (ratectl_http_open(&http, &o) != 0)
		abort();
	atexit(cleanup);
}

struct response {
	int status;
	int sdk_retry;
	ratectl_http_header h[MAX_HEADERS];
	size_t nh;
	const uint8_t *body;
	size_t body_len;
};

/* Split the input (copied into text, NUL-terminated) into a response. */
static void parse(char *text, size_t size, struct response *r)
{
	char *p = text + (size < 2 ? size : 2), *end = text + size, *nl, *colon;

	uint8_t b0 = size > 0 ? (uint8_t)text[0] : 0;

	/* 0..199: the usual codes, 200..255: 300..355 (redirects, odd ones) */
	r->status = b0 < 200 ? statuses[b0 % 10] : 100 + b0;
	r->sdk_retry = size > 1 && (text[1] & 1);
	r->nh = 0;
	while (p < end && *p != '\n' && r->nh < MAX_HEADERS) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		*nl = '\0';
		if ((colon = strchr(p, ':'))) {
			*colon = '\0';
			r->h[r->nh].name = p;
			r->h[r->nh].value = colon + 1 + (colon[1] == ' ');
			r->nh++;
		}
		p = nl + 1;
	}
	if (p < end && *p == '\n')
		p++;
	r->body = (const uint8_t *)(p < end ? p : end);
	r->body_len = p < end ? (size_t)(end - p) : 0;
}

/* Feed the body in pieces of 1 + its byte at each cut, each piece in a
 * block of exactly its size (ASan catches a read past it). */
static void feed_body(ratectl_http_request *req, const struct response *r)
{
	size_t off = 0, len;
	char *piece;

	while (off < r->body_len) {
		len = 1 + r->body[off] % 64;
		len = len > r->body_len - off ? r->body_len - off : len;
		if (!(piece = malloc(len)))
			abort();
		memcpy(piece, r->body + off, len);
		ratectl_http_response_body(req, piece, len);
		free(piece);
		off += len;
	}
}

static void check_outcome(const struct response *r, const ratectl_http_outcome *o)
{
	int refused = r->status == 429 || r->status == 503;

	if (o->status != r->status || o->attempt != 1 ||
	    o->cooldown_ns < 0 || o->cooldown_ns > 3600 * NS_PER_S ||
	    (o->cooldown_ns > 0 && !refused) ||
	    o->windows > RH_HDR_WINDOWS ||
	    (r->status == 429 && (o->tokens != 0 || o->usage_known)) ||
	    (o->retry && !refused) ||
	    o->retry_after_ns < 0 || o->retry_after_ns >= 30 * NS_PER_S ||
	    (!o->retry && o->retry_after_ns != 0))
		abort();
}

/* One attempt: begin, admit, the response, end; the outcome in *o.
 * Returns 0, or 1 when the retry budget answered locally. */
static int attempt(const struct response *r, int as_array, ratectl_http_outcome *o)
{
	ratectl_http_header rh[2] = { { "Authorization", "Bearer sk-fuzz" },
	                              { "x-stainless-retry-count", "1" } };
	ratectl_http_request *req;
	ratectl_http_local local;
	char body[160];
	int64_t wait;
	size_t i;
	int rc;

	snprintf(body, sizeof body, req_fmt, nreq++);
	if (ratectl_http_request_begin(&req, http, "POST", url, rh, r->sdk_retry ? 2 : 1,
	                               body, strlen(body), 0) != 0 || !req ||
	    ratectl_http_request_info(req)->is_retry != r->sdk_retry)
		abort();
	rc = ratectl_http_try(req, &wait);
	if (rc == RATECTL_HTTP_ERETRYBUDGET) {
		/* Past the retry budget: a local 429 telling the SDK to stop. */
		if (!r->sdk_retry || ratectl_http_local_response(req, &local) != 0 ||
		    local.status != 429 || local.nheaders < 1 ||
		    strcmp(local.headers[0].name, "x-should-retry") != 0 ||
		    strcmp(local.headers[0].value, "false") != 0 || !local.body_len)
			abort();
		ratectl_http_request_free(req);
		return 1;
	}
	if (rc != 0) {
		fprintf(stderr, "fuzz_http_response: a reset budget refused: %s (%s)\n",
		        ratectl_http_strerror(rc), ratectl_http_request_why(req));
		abort();
	}
	ratectl_http_response_status(req, r->status);
	if (as_array)
		ratectl_http_response_headers(req, r->h, r->nh);
	else
		for (i = 0; i < r->nh; i++)
			ratectl_http_response_header(req, r->h[i].name, r->h[i].value);
	feed_body(req, r);
	if (ratectl_http_request_end(req, o) != 0)
		abort();
	check_outcome(r, o);
	/* The attempt is over: a second end is out of order. */
	if (ratectl_http_request_end(req, NULL) != RATECTL_HTTP_ESTATE)
		abort();
	ratectl_http_request_free(req);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ratectl_http_outcome a, b;
	struct response r;
	char *text;
	int la, lb;

	if (!http)
		setup();
	if (!(text = malloc(size + 1)))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	parse(text, size, &r);
	la = attempt(&r, 0, &a);
	if (ratectl_budget_reset(ledger, "fz") != 0)
		abort();
	lb = attempt(&r, 1, &b);
	/* One response teaches the same however its headers are handed in
	 * (a retry answered locally has nothing to compare). */
	if (!la && !lb && (a.windows != b.windows || a.tokens != b.tokens ||
	                   a.usage_known != b.usage_known ||
	                   (a.cooldown_ns > 0) != (b.cooldown_ns > 0)))
		abort();
	if (ratectl_budget_reset(ledger, "fz") != 0)
		abort();
	free(text);
	return 0;
}
