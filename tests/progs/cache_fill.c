/*
 * cache_fill - requests through libratectl-http to a budget with a
 * response cache (ratectl.conf(5) `cache`), answered here without any
 * network, so that tests/test_cache_cli.sh finds entries, hits, misses
 * and coalesced requests in the cache for `ratectl cache`, show and
 * metrics to report.
 *
 * usage: cache_fill CONFIG URL ACTION...
 *   get:BODY       one POST of BODY to URL: prints "miss" when it was
 *                  sent (answered 200 here, with a usage of 30 tokens, so
 *                  that the end stores it) or "hit" when the cache answered
 *   coalesce:BODY  two requests for BODY at once, one handle: the first is
 *                  admitted and fetches, the second (ratectl_http_try())
 *                  is told to wait; the first is answered and ended, then
 *                  the second is answered from it: prints "miss X" with X
 *                  the second's X-Ratectl-Cache ("coalesced", or "hit")
 *   fail:BODY      one request answered 500 (never stored): "miss"
 * The ledger is $RATECTL_LEDGER.  Exits 0, or 1 with a message on stderr
 * (an admission that neither admits nor hits is an error).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ratectl.h"
#include "ratectl_http.h"

#define SEC 1000000000LL

static const char answer[] =
	"{\"id\":\"cmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
	"\"message\":{\"role\":\"assistant\",\"content\":\"hello\"}}],"
	"\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}";

static const ratectl_http_header req_headers[] = {
	{ "Content-Type", "application/json" },
	{ "Authorization", "Bearer sk-cache-fill-test" },
};

static void nap(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / SEC), (long)(ns % SEC) };

	nanosleep(&ts, NULL);
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "cache_fill: %s: %s\n", what, ratectl_http_strerror(rc));
	return 1;
}

static int begin(ratectl_http *h, const char *url, const char *body,
                 ratectl_http_request **out)
{
	int rc = ratectl_http_request_begin(out, h, "POST", url, req_headers, 2, body,
	                                    strlen(body), 0);

	if (rc != 0)
		return fail("begin", rc);
	if (!*out) {
		fprintf(stderr, "cache_fill: %s matches no budget of the config\n", url);
		return 1;
	}
	return 0;
}

/* Answer an admitted request as the provider would, whole, and end it. */
static int respond(ratectl_http_request *r, int status)
{
	int rc;

	ratectl_http_response_status(r, status);
	ratectl_http_response_header(r, "Content-Type", "application/json");
	ratectl_http_response_body(r, answer, sizeof answer - 1);
	ratectl_http_response_complete(r);
	if ((rc = ratectl_http_request_end(r, NULL)) != 0)
		return fail("end", rc);
	return 0;
}

/* The X-Ratectl-Cache value of a cached answer, or NULL. */
static const char *cache_header(const ratectl_http_request *r)
{
	ratectl_http_local l;
	size_t i;

	if (ratectl_http_cached_response(r, &l) != 0)
		return NULL;
	for (i = 0; i < l.nheaders; i++)
		if (strcasecmp(l.headers[i].name, "X-Ratectl-Cache") == 0)
			return l.headers[i].value;
	return NULL;
}

static int get(ratectl_http *h, const char *url, const char *body, int status)
{
	ratectl_http_request *r;
	int rc;

	if (begin(h, url, body, &r) != 0)
		return 1;
	rc = ratectl_http_admit(r, 5 * SEC);
	if (rc == RATECTL_HTTP_CACHED) {
		printf("hit\n");
		rc = 0;
	} else if (rc == 0) {
		rc = respond(r, status);
		if (rc == 0)
			printf("miss\n");
	} else {
		fail("admit", rc);
		rc = 1;
	}
	ratectl_http_request_free(r);
	return rc ? 1 : 0;
}

static int coalesce(ratectl_http *h, const char *url, const char *body)
{
	ratectl_http_request *a = NULL, *b = NULL;
	const char *x;
	int64_t wait = 0;
	int rc = 1, i;

	if (begin(h, url, body, &a) != 0 || begin(h, url, body, &b) != 0)
		goto out;
	if ((rc = ratectl_http_admit(a, 5 * SEC)) != 0) {
		rc = fail("admit of the first (a hit already?)", rc);
		goto out;
	}
	if ((rc = ratectl_http_try(b, &wait)) != RATECTL_EPENDING) {
		rc = fail("try of the second, while the first fetches", rc);
		goto out;
	}
	if ((rc = respond(a, 200)) != 0)
		goto out;
	/* The answer is stored: the second finds it at its next look. */
	for (i = 0; i < 100; i++) {
		if ((rc = ratectl_http_try(b, &wait)) != RATECTL_EPENDING)
			break;
		nap(wait > 0 && wait < SEC / 10 ? wait : SEC / 100);
	}
	if (rc != RATECTL_HTTP_CACHED) {
		rc = fail("try of the second, once the first ended", rc);
		goto out;
	}
	x = cache_header(b);
	printf("miss %s\n", x ? x : "(no X-Ratectl-Cache)");
	rc = 0;
out:
	ratectl_http_request_free(b);
	ratectl_http_request_free(a);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	ratectl_http *h;
	int i, rc = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: cache_fill CONFIG URL get:BODY|coalesce:BODY|"
		        "fail:BODY...\n");
		return 2;
	}
	o.config_path = argv[1];
	o.ledger_dir = getenv("RATECTL_LEDGER");
	if ((rc = ratectl_http_open(&h, &o)) != 0)
		return fail("open", rc);
	for (i = 3; i < argc && rc == 0; i++) {
		if (strncmp(argv[i], "get:", 4) == 0)
			rc = get(h, argv[2], argv[i] + 4, 200);
		else if (strncmp(argv[i], "fail:", 5) == 0)
			rc = get(h, argv[2], argv[i] + 5, 500);
		else if (strncmp(argv[i], "coalesce:", 9) == 0)
			rc = coalesce(h, argv[2], argv[i] + 9);
		else {
			fprintf(stderr, "cache_fill: unknown action '%s'\n", argv[i]);
			rc = 2;
		}
		fflush(stdout);
	}
	ratectl_http_close(h);
	return rc;
}
