/*
 * test_cache.c - the host-wide response cache of libratectl-http
 * (lib/http/cache.c): which requests are cached and under which key,
 * hits, stores, expiry, eviction, coalescing across processes, a killed
 * fetcher, and a damaged cache environment.  The provider is this test:
 * a request admitted (ratectl_http_admit() == 0) is one that would be
 * sent, and is counted as such.
 */
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"
#include "ratectl_http.h"
#include "rh.h"

struct fx {
	char *dir;
	ratectl_http *h;
};

static const char conf_text[] =
	"[llm]\n"
	"match = api.example.com/v1\n"
	"requests = 100000/min\n"
	"tokens = 100000000/min\n"
	"cache = 10m\n"
	"cache_size = 64K\n"
	"cache_entry_max = 8K\n"
	"retry_budget = 100%\n"
	"[emb]\n"
	"match = emb.example.com/v1\n"
	"requests = 100000/min\n"
	"cache = 10m\n"
	"cache_requests = embeddings\n"
	"[plain]\n"
	"match = plain.example.com\n"
	"requests = 100000/min\n";

#define URL "https://api.example.com/v1/chat/completions"
static const char det[] = "{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static int64_t fake_real = 1700000000LL * SEC;
static int64_t test_realtime(void)
{
	return fake_real;
}

static ratectl_http *open_h(const char *dir, const char *text)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	ratectl_http *h;

	o.config_text = text;
	o.config_len = strlen(text);
	o.ledger_dir = dir;
	assert_int_equal(ratectl_http_open(&h, &o), 0);
	return h;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	rh__cache_realtime = test_realtime;
	f->dir = tmp_ledger();
	f->h = open_h(f->dir, conf_text);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ratectl_http_close(f->h);
	tmp_ledger_rm(f->dir);
	free(f);
	return 0;
}

static const ratectl_http_header key1[] = { { "Authorization", "Bearer sk-one" } };
static const ratectl_http_header key2[] = { { "Authorization", "Bearer sk-two" } };

/*
 * One request: begin, admit; when admitted (sent), answer status with
 * body (complete when asked) and end.  Returns what admit returned;
 * *out gets the cached body's first bytes on a hit.
 */
static int ask(ratectl_http *h, const char *url, const ratectl_http_header *hd,
               const char *body, int status, const char *answer, int complete,
               char *out, size_t outlen)
{
	ratectl_http_request *r;
	ratectl_http_local loc;
	int rc;

	assert_int_equal(ratectl_http_request_begin(&r, h, "POST", url, hd, hd ? 1 : 0,
	                                            body, strlen(body), 0), 0);
	assert_non_null(r);
	rc = ratectl_http_admit(r, 5 * SEC);
	if (rc == 0) {
		ratectl_http_response_status(r, status);
		ratectl_http_response_header(r, "Content-Type", "application/json");
		ratectl_http_response_body(r, answer, strlen(answer));
		if (complete)
			ratectl_http_response_complete(r);
		assert_int_equal(ratectl_http_request_end(r, NULL), 0);
	} else if (rc == RATECTL_HTTP_CACHED) {
		assert_int_equal(ratectl_http_cached_response(r, &loc), 0);
		if (out) {
			size_t n = loc.body_len < outlen - 1 ? loc.body_len : outlen - 1;

			memcpy(out, loc.body, n);
			out[n] = '\0';
		}
	}
	ratectl_http_request_free(r);
	return rc;
}

static int cacheable(ratectl_http *h, const char *url, const char *body)
{
	ratectl_http_request *r;
	int c;

	assert_int_equal(ratectl_http_request_begin(&r, h, "POST", url, key1, 1, body,
	                                            strlen(body), 0), 0);
	assert_non_null(r);
	c = ratectl_http_request_info(r)->cacheable;
	ratectl_http_request_free(r);
	return c;
}

static ratectl_http_cache_stats stats_of(ratectl_http *h, const char *budget)
{
	ratectl_http_cache_stats s;

	memset(&s, 0, sizeof s);
	assert_true(ratectl_http_cache_stats_read(h, budget, &s, 1) >= 0);
	return s;
}

/* ---- which requests ------------------------------------------------------- */

static void test_which_requests(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cacheable(f->h, URL, det), 1);
	assert_int_equal(cacheable(f->h, URL, "{\"temperature\":0.0,\"model\":\"m\"}"), 1);
	assert_int_equal(cacheable(f->h, URL, "{\"temperature\":0.7,\"model\":\"m\"}"), 0);
	assert_int_equal(cacheable(f->h, URL, "{\"model\":\"m\"}"), 0);
	assert_int_equal(cacheable(f->h, URL, "{\"temperature\":0,\"stream\":true}"), 0);
	assert_int_equal(cacheable(f->h, URL, "{\"temperature\":0,\"stream\":false}"), 1);
	assert_int_equal(cacheable(f->h, URL, "{\"temperature\":0,"), 0);  /* not JSON */
	assert_int_equal(cacheable(f->h, URL, "{\"temperature\":0,\"temperature\":1}"), 0);
	assert_int_equal(cacheable(f->h, URL, "[1,2]"), 0);
	assert_int_equal(cacheable(f->h, "https://api.example.com/v1/embeddings",
	                           "{\"input\":\"x\"}"), 1);
	/* cache_requests = embeddings: nothing else, whatever its temperature */
	assert_int_equal(cacheable(f->h, "https://emb.example.com/v1/embeddings",
	                           "{\"input\":\"x\"}"), 1);
	assert_int_equal(cacheable(f->h, "https://emb.example.com/v1/chat/completions",
	                           det), 0);
	/* no `cache` */
	assert_int_equal(cacheable(f->h, "https://plain.example.com/v1/chat/completions",
	                           det), 0);
}

/* ---- hits and stores ------------------------------------------------------ */

static void test_hit_after_store(void **state)
{
	struct fx *f = *state;
	char got[256];
	ratectl_http_cache_stats s;
	ratectl_http_request *r;
	ratectl_http_local loc;
	ratectl_budget_info bi;
	ratectl *l;
	size_t i;

	assert_int_equal(ask(f->h, URL, key1, det, 200, "{\"answer\":42,\"usage\":"
	                     "{\"total_tokens\":7}}", 1, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, got, sizeof got),
	                 RATECTL_HTTP_CACHED);
	assert_string_equal(got, "{\"answer\":42,\"usage\":{\"total_tokens\":7}}");
	/* the same body, keys in another order and spaced otherwise */
	assert_int_equal(ask(f->h, URL, key1, "{ \"messages\" : [{\"content\":\"hi\","
	                     "\"role\":\"user\"}], \"temperature\": 0, \"model\": \"m\" }",
	                     200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	/* another key never shares it; nor another URL */
	assert_int_equal(ask(f->h, URL, key2, det, 200, "{\"k\":2,\"usage\":"
	                     "{\"total_tokens\":5}}", 1, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key2, det, 200, "{}", 1, got, sizeof got),
	                 RATECTL_HTTP_CACHED);
	assert_string_equal(got, "{\"k\":2,\"usage\":{\"total_tokens\":5}}");
	assert_int_equal(ask(f->h, URL "?x=1", key1, det, 200, "{}", 1, NULL, 0), 0);

	/* the answer's headers */
	assert_int_equal(ratectl_http_request_begin(&r, f->h, "POST", URL, key1, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(r, 0), RATECTL_HTTP_CACHED);
	assert_int_equal(ratectl_http_cached_response(r, &loc), 0);
	assert_int_equal(loc.status, 200);
	assert_int_equal(loc.nheaders, 3);
	for (i = 0; i < loc.nheaders; i++)
		if (strcmp(loc.headers[i].name, "x-ratectl-cache") == 0)
			assert_string_equal(loc.headers[i].value, "hit");
		else if (strcmp(loc.headers[i].name, "content-type") == 0)
			assert_string_equal(loc.headers[i].value, "application/json");
		else
			assert_string_equal(loc.headers[i].name, "age");
	assert_int_equal(ratectl_http_local_response(r, &loc), RATECTL_HTTP_ESTATE);
	ratectl_http_request_free(r);

	s = stats_of(f->h, "llm");
	assert_string_equal(s.budget, "llm");
	assert_int_equal(s.hits, 4);
	assert_int_equal(s.misses, 3);
	assert_int_equal(s.stores, 3);
	assert_int_equal(s.entries, 3);
	assert_int_equal(s.tokens_saved, 7 * 3 + 5);
	/* a hit is not admitted: the ledger counted the 3 sent only */
	assert_non_null(l = rh__ledger_now(f->h));
	assert_int_equal(ratectl_budget_get(l, "llm", &bi), 0);
	assert_int_equal(bi.counters.admitted, 3);
}

static void test_not_stored(void **state)
{
	struct fx *f = *state;
	char big[9000];

	/* not complete, not 2xx, too big: never kept */
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{\"a\":1}", 0, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key1, det, 500, "{\"a\":1}", 1, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key1, det, 429, "{\"a\":1}", 1, NULL, 0), 0);
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(ask(f->h, URL, key1, det, 200, big, 1, NULL, 0), 0);
	assert_int_equal(stats_of(f->h, "llm").stores, 0);
	/* 8K exactly is kept */
	big[8192] = '\0';
	assert_int_equal(ask(f->h, URL, key1, det, 200, big, 1, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	/* temperature 0.7 twice: sent twice */
	assert_int_equal(ask(f->h, URL, key1, "{\"temperature\":0.7}", 200, "{}", 1, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key1, "{\"temperature\":0.7}", 200, "{}", 1, NULL, 0), 0);
	assert_int_equal(stats_of(f->h, "llm").stores, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_which_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hit_after_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_stored, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
