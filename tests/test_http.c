/*
 * test_http.c - libratectl-http through its public API, with recorded
 * requests, header sets and bodies of OpenAI (chat completions,
 * responses, embeddings; JSON and streamed), Anthropic (messages, JSON
 * and streamed) and Azure OpenAI; model and key matching; SDK retries
 * against the retry budget; and the fixed buffers at their sizes.  Each
 * test has its own ledger and an in-memory config.
 */
#include <errno.h>
#include <time.h>

#include "testutil.h"
#include "ratectl_http.h"
#include "rh.h"

struct fx {
	char *dir;
	ratectl_http *h;
};

static const char conf_text[] =
	"[gpt4o-k1]\n"
	"match = api.openai.com/v1\n"
	"model = gpt-4o*, o1-*\n"
	"key = db567a0dd8d24a1a\n"      /* ratectl_http_key_id("sk-test-1") */
	"requests = 100/min\n"
	"tokens = 100000/min\n"
	"retry_budget = 0%\n"
	"[openai]\n"
	"match = api.openai.com/v1\n"
	"requests = 100/min\n"
	"tokens = 100000/min\n"
	"retries = 2\n"
	"retry_budget = 100%\n"
	"[anthropic]\n"
	"match = api.anthropic.com/v1/messages\n"
	"requests = 50/min\n"
	"tokens = 40000/min\n"
	"[azure]\n"
	"match = myres.openai.azure.com\n"
	"requests = 60/min\n"
	"tokens = 60000/min\n";

static int setup(void **state)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	struct fx *f = calloc(1, sizeof *f);

	f->dir = tmp_ledger();
	o.config_text = conf_text;
	o.config_len = sizeof conf_text - 1;
	o.ledger_dir = f->dir;
	assert_int_equal(ratectl_http_open(&f->h, &o), 0);
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

/* One whole request: begin, admit, the response fed in pieces of `piece`
 * bytes, end. */
static ratectl_http_outcome run(ratectl_http *h, const char *url,
                                const ratectl_http_header *rq, size_t nrq,
                                const char *body, int status,
                                const ratectl_http_header *rs, size_t nrs,
                                const char *rbody, size_t piece, const char *budget)
{
	ratectl_http_request *r;
	ratectl_http_outcome o;
	size_t off = 0, n = rbody ? strlen(rbody) : 0;

	assert_int_equal(ratectl_http_request_begin(&r, h, "POST", url, rq, nrq, body,
	                                            body ? strlen(body) : 0, 0), 0);
	assert_non_null(r);
	assert_string_equal(ratectl_http_request_info(r)->budget, budget);
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	ratectl_http_response_status(r, status);
	ratectl_http_response_headers(r, rs, nrs);
	while (off < n) {
		size_t k = n - off < piece ? n - off : piece;

		ratectl_http_response_body(r, rbody + off, k);
		off += k;
	}
	assert_int_equal(ratectl_http_request_end(r, &o), 0);
	ratectl_http_request_free(r);
	return o;
}

static const size_t pieces[] = { 1, 7, 100, 1 << 20 };

/* ---- recorded exchanges --------------------------------------------------- */

static const ratectl_http_header openai_hdrs[] = {
	{ "x-ratelimit-limit-requests", "100" },
	{ "x-ratelimit-remaining-requests", "99" },
	{ "x-ratelimit-reset-requests", "600ms" },
	{ "x-ratelimit-limit-tokens", "100000" },
	{ "x-ratelimit-remaining-tokens", "99948" },
	{ "x-ratelimit-reset-tokens", "31ms" },
	{ "content-type", "application/json" },
};

static void test_openai_chat_json(void **state)
{
	struct fx *f = *state;
	const char *body = "{\"model\":\"gpt-3.5-turbo\",\"max_tokens\":50,"
	                   "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	const char *resp = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
	                   "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	                   "\"content\":\"Hello\"}}],\"usage\":{\"prompt_tokens\":9,"
	                   "\"completion_tokens\":12,\"total_tokens\":21}}";
	unsigned i;

	for (i = 0; i < 4; i++) {
		ratectl_http_outcome o = run(f->h, "https://api.openai.com/v1/chat/completions",
		                             NULL, 0, body, 200, openai_hdrs, 7, resp,
		                             pieces[i], "openai");

		assert_int_equal(o.status, 200);
		assert_int_equal(o.usage_known, 1);
		assert_int_equal(o.tokens, 21);
		assert_int_equal(o.windows, 2);
		assert_int_equal(o.retry, 0);
	}
}

static void test_openai_chat_stream(void **state)
{
	struct fx *f = *state;
	const char *body = "{\"model\":\"gpt-3.5-turbo\",\"stream\":true,"
	                   "\"stream_options\":{\"include_usage\":true},\"messages\":[]}";
	const char *resp =
		"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"He\"}}],\"usage\":null}\n\n"
		"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"llo\"}}],\"usage\":null}\n\n"
		"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":8,"
		"\"completion_tokens\":2,\"total_tokens\":10}}\n\n"
		"data: [DONE]\n\n";
	unsigned i;

	for (i = 0; i < 4; i++) {
		ratectl_http_outcome o = run(f->h, "https://api.openai.com/v1/chat/completions",
		                             NULL, 0, body, 200, NULL, 0, resp, pieces[i], "openai");

		assert_int_equal(o.usage_known, 1);
		assert_int_equal(o.tokens, 10);
	}
}

static void test_openai_responses_and_embeddings(void **state)
{
	struct fx *f = *state;
	ratectl_http_outcome o;

	o = run(f->h, "https://api.openai.com/v1/responses", NULL, 0,
	        "{\"model\":\"gpt-4.1\",\"input\":\"hi\",\"max_output_tokens\":64}", 200,
	        NULL, 0, "{\"id\":\"resp_1\",\"object\":\"response\",\"output\":[],"
	        "\"usage\":{\"input_tokens\":36,\"output_tokens\":87,\"total_tokens\":123}}",
	        5, "openai");
	assert_int_equal(o.tokens, 123);
	o = run(f->h, "https://api.openai.com/v1/embeddings", NULL, 0,
	        "{\"model\":\"text-embedding-3-small\",\"input\":\"hello\"}", 200, NULL, 0,
	        "{\"object\":\"list\",\"data\":[{\"embedding\":[0.1,0.2]}],"
	        "\"usage\":{\"prompt_tokens\":5,\"total_tokens\":5}}", 3, "openai");
	assert_int_equal(o.tokens, 5);
}

/*
 * Usage that sits in neither the first 2 KiB nor the last 8 KiB of a body
 * (what the policy kept of a body before it read usage incrementally): a
 * JSON answer with usage between 3 KiB of metadata and 16 KiB of content,
 * and a stream whose usage event is followed by 10 KiB of keep-alive
 * comments.  Fed in pieces of every size.
 */
static void test_usage_in_the_middle(void **state)
{
	struct fx *f = *state;
	const char *body = "{\"model\":\"gpt-3.5-turbo\",\"max_tokens\":50,\"messages\":[]}";
	const ratectl_http_header sse[] = { { "content-type", "text/event-stream" } };
	size_t cap = 64 << 10, n;
	char *json = malloc(cap), *stream = malloc(cap);
	unsigned i, k;

	n = (size_t)snprintf(json, cap, "{\"id\":\"chatcmpl-1\",\"system_fingerprint\":\"");
	memset(json + n, 'f', 3 << 10);
	n += 3 << 10;
	n += (size_t)snprintf(json + n, cap - n, "\",\"usage\":{\"prompt_tokens\":9,"
	                      "\"completion_tokens\":4000,\"total_tokens\":4009},"
	                      "\"choices\":[{\"message\":{\"content\":\"");
	memset(json + n, 'x', 16 << 10);
	n += 16 << 10;
	snprintf(json + n, cap - n, "\"}}]}");

	n = (size_t)snprintf(stream, cap, "data: {\"choices\":[{\"delta\":{\"content\":\"");
	memset(stream + n, 'y', 3 << 10);
	n += 3 << 10;
	n += (size_t)snprintf(stream + n, cap - n, "\"}}]}\n\n"
	                      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,"
	                      "\"completion_tokens\":1200,\"total_tokens\":1208}}\n\n");
	for (k = 0; k < 800; k++)
		n += (size_t)snprintf(stream + n, cap - n, ": keep-alive\n\n");
	snprintf(stream + n, cap - n, "data: [DONE]\n\n");
	assert_true(strlen(json) > (3 << 10) + (16 << 10) && strlen(stream) > (13 << 10));

	for (i = 0; i < 4; i++) {
		ratectl_http_outcome o = run(f->h, "https://api.openai.com/v1/chat/completions",
		                             NULL, 0, body, 200, NULL, 0, json, pieces[i], "openai");

		assert_int_equal(o.usage_known, 1);
		assert_int_equal(o.tokens, 4009);
		o = run(f->h, "https://api.openai.com/v1/chat/completions", NULL, 0, body, 200,
		        sse, 1, stream, pieces[i], "openai");
		assert_int_equal(o.usage_known, 1);
		assert_int_equal(o.tokens, 1208);
	}
	free(json);
	free(stream);
}

/* Resets are RFC 3339 times: 30 s from now, filled in at run time. */
static char reset_at[32];
static ratectl_http_header anthropic_hdrs[] = {
	{ "anthropic-ratelimit-requests-limit", "50" },
	{ "anthropic-ratelimit-requests-remaining", "49" },
	{ "anthropic-ratelimit-requests-reset", reset_at },
	{ "anthropic-ratelimit-tokens-limit", "40000" },
	{ "anthropic-ratelimit-tokens-remaining", "39000" },
	{ "anthropic-ratelimit-tokens-reset", reset_at },
};

static void test_anthropic_json_and_stream(void **state)
{
	struct fx *f = *state;
	const ratectl_http_header rq[] = { { "x-api-key", "sk-ant-x" },
	                                   { "anthropic-version", "2023-06-01" } };
	const char *body = "{\"model\":\"claude-3-5-sonnet\",\"max_tokens\":1024,"
	                   "\"messages\":[]}";
	const char *stream =
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
		"\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
		"\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
		"{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n"
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
	ratectl_http_outcome o;
	time_t t = time(NULL) + 30;
	struct tm tm;
	unsigned i;

	strftime(reset_at, sizeof reset_at, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	o = run(f->h, "https://api.anthropic.com/v1/messages", rq, 2, body, 200,
	        anthropic_hdrs, 6, "{\"id\":\"msg_1\",\"type\":\"message\",\"content\":[],"
	        "\"usage\":{\"input_tokens\":10,\"output_tokens\":20}}", 4, "anthropic");
	assert_int_equal(o.tokens, 30);
	assert_int_equal(o.windows, 2);
	for (i = 0; i < 4; i++) {
		o = run(f->h, "https://api.anthropic.com/v1/messages", rq, 2, body, 200,
		        NULL, 0, stream, pieces[i], "anthropic");
		assert_int_equal(o.usage_known, 1);
		assert_int_equal(o.tokens, 25 + 15);
	}
}

static void test_azure(void **state)
{
	struct fx *f = *state;
	const ratectl_http_header rq[] = { { "api-key", "azkey" } };
	ratectl_http_outcome o;

	o = run(f->h, "https://myres.openai.azure.com/openai/deployments/gpt4/chat/"
	        "completions?api-version=2024-06-01", rq, 1,
	        "{\"messages\":[],\"max_tokens\":100}", 200, openai_hdrs, 6,
	        "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
	        "\"total_tokens\":7}}", 2, "azure");
	assert_int_equal(o.tokens, 7);
	assert_int_equal(o.windows, 2);
}

/* ---- matching and estimates ----------------------------------------------- */

static void test_key_id(void **state)
{
	char id[RATECTL_HTTP_KEY_ID_LEN + 1], id2[sizeof id];

	(void)state;
	/* FIPS 180-2: SHA-256("abc") = ba7816bf 8f01cfea ... */
	assert_int_equal(ratectl_http_key_id(id, "abc", 3), 0);
	assert_string_equal(id, "ba7816bf8f01cfea");
	assert_int_equal(ratectl_http_key_id(id2, " Bearer abc\r\n", 13), 0);
	assert_string_equal(id2, id);
	/* 56 and 64 bytes: padding into a second block */
	assert_int_equal(ratectl_http_key_id(id, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56), 0);
	assert_string_equal(id, "248d6a61d20638b8");
	assert_int_equal(ratectl_http_key_id(id, "", 0), -EINVAL);
	assert_int_equal(ratectl_http_key_id(id, "Bearer  ", 8), -EINVAL);
	assert_int_equal(ratectl_http_key_id(id, "sk-test-1", 9), 0);
	assert_string_equal(id, "db567a0dd8d24a1a");
}

static const char *budget_of(ratectl_http *h, const char *model, const char *auth)
{
	static char name[RATECTL_NAME_MAX + 1];
	ratectl_http_header rq[1] = { { "Authorization", auth } };
	ratectl_http_request *r;
	char body[256];

	snprintf(body, sizeof body, "{\"messages\":[],\"model\":\"%s\"}", model);
	assert_int_equal(ratectl_http_request_begin(&r, h, "POST",
	                 "https://api.openai.com/v1/chat/completions", rq, auth ? 1 : 0,
	                 body, strlen(body), 0), 0);
	if (!r)
		return "";
	snprintf(name, sizeof name, "%s", ratectl_http_request_info(r)->budget);
	ratectl_http_request_free(r);
	return name;
}

static void test_model_and_key(void **state)
{
	struct fx *f = *state;
	ratectl_http_request *r;

	assert_string_equal(budget_of(f->h, "gpt-4o-mini", "Bearer sk-test-1"), "gpt4o-k1");
	assert_string_equal(budget_of(f->h, "o1-preview", "Bearer sk-test-1"), "gpt4o-k1");
	assert_string_equal(budget_of(f->h, "gpt-4o", "Bearer sk-test-2"), "openai");
	assert_string_equal(budget_of(f->h, "gpt-4o", NULL), "openai");
	assert_string_equal(budget_of(f->h, "gpt-3.5-turbo", "Bearer sk-test-1"), "openai");
	assert_string_equal(budget_of(f->h, "xgpt-4o", "Bearer sk-test-1"), "openai");
	/* another host, another scheme: not ours */
	assert_int_equal(ratectl_http_request_begin(&r, f->h, "GET",
	                 "https://example.com/v1", NULL, 0, NULL, 0, 0), 0);
	assert_null(r);
	assert_int_equal(ratectl_http_request_begin(&r, f->h, "GET",
	                 "ftp://api.openai.com/v1", NULL, 0, NULL, 0, 0), 0);
	assert_null(r);
	assert_int_equal(rh__glob("a*b*c", "aXXbYc"), 1);
	assert_int_equal(rh__glob("a*b*c", "aXXbY"), 0);
	assert_int_equal(rh__glob("*", ""), 1);
	assert_int_equal(rh__glob("", "x"), 0);
}

static uint64_t estimate_of(ratectl_http *h, const char *body, uint64_t size)
{
	ratectl_http_request *r;
	uint64_t e;

	assert_int_equal(ratectl_http_request_begin(&r, h, "POST",
	                 "https://api.openai.com/v1/chat/completions", NULL, 0, body,
	                 body ? strlen(body) : 0, size), 0);
	e = ratectl_http_request_info(r)->estimate;
	ratectl_http_request_free(r);
	return e;
}

static void test_estimates(void **state)
{
	struct fx *f = *state;

	(void)state;
	assert_int_equal(estimate_of(f->h, "{\"max_tokens\":100}", 0), 100 + 5);
	assert_int_equal(estimate_of(f->h, "{\"max_completion_tokens\":7}  ", 0), 7 + 8);
	assert_int_equal(estimate_of(f->h, "{\"max_output_tokens\":64}", 0), 64 + 6);
	assert_int_equal(estimate_of(f->h, "{}", 0), 1);
	assert_int_equal(estimate_of(f->h, NULL, 4001), 1001);  /* declared size */
}

/* ---- learning and retries ------------------------------------------------- */

static void test_429_cooldown_and_own_retry(void **state)
{
	struct fx *f = *state;
	const ratectl_http_header rs[] = { { "retry-after-ms", "1500" },
	                                   { "retry-after", "9" } };
	ratectl_http_request *r;
	ratectl_http_outcome o;
	ratectl_budget_info bi;
	ratectl *l;

	assert_int_equal(ratectl_http_request_begin(&r, f->h, "POST",
	                 "https://api.openai.com/v1/chat/completions", NULL, 0, "{}", 2, 0), 0);
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	assert_int_equal(ratectl_http_admit(r, SEC), RATECTL_HTTP_ESTATE);
	ratectl_http_response_status(r, 429);
	ratectl_http_response_headers(r, rs, 2);
	assert_int_equal(ratectl_http_request_end(r, &o), 0);
	assert_int_equal(o.cooldown_ns, 1500 * MSEC);
	assert_int_equal(o.tokens, 0);
	assert_int_equal(o.retry, 1);           /* retries = 2 */
	assert_true(o.retry_after_ns >= 0 && o.retry_after_ns < 500 * MSEC);
	assert_int_equal(ratectl_http_request_end(r, &o), RATECTL_HTTP_ESTATE);
	assert_int_equal(ratectl_open(&l, f->dir, NULL), 0);
	assert_int_equal(ratectl_budget_get(l, "openai", &bi), 0);
	assert_true(bi.cooldown_ns > 0 && bi.cooldown_ns <= 1500 * MSEC);
	assert_int_equal(bi.counters.retries, 1);
	ratectl_budget_reset(l, "openai");
	ratectl_close(l);
	/* the retry is admitted without charging the retry budget again */
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	ratectl_http_response_status(r, 200);
	assert_int_equal(ratectl_http_request_end(r, &o), 0);
	assert_int_equal(o.attempt, 2);
	assert_int_equal(o.retry, 0);
	ratectl_http_request_free(r);
}

/* x-stainless-retry-count > 0 is charged to the retry budget (0% here:
 * one retry allowed by the allowance, the next answered locally). */
static void test_sdk_retries_past_the_budget(void **state)
{
	struct fx *f = *state;
	const char *body = "{\"model\":\"gpt-4o\",\"messages\":[]}";
	ratectl_http_header rq[] = { { "authorization", "Bearer sk-test-1" },
	                             { "x-stainless-retry-count", "0" } };
	ratectl_http_request *r;
	ratectl_http_local loc;
	int i;

	for (i = 0; i < 3; i++) {
		rq[1].value = i == 0 ? "0" : i == 1 ? "1" : "2";
		assert_int_equal(ratectl_http_request_begin(&r, f->h, "POST",
		                 "https://api.openai.com/v1/chat/completions", rq, 2, body,
		                 strlen(body), 0), 0);
		assert_string_equal(ratectl_http_request_info(r)->budget, "gpt4o-k1");
		assert_int_equal(ratectl_http_request_info(r)->is_retry, i > 0);
		assert_int_equal(ratectl_http_request_info(r)->retry_count, (unsigned)i);
		if (i < 2) {
			assert_int_equal(ratectl_http_admit(r, SEC), 0);
			assert_int_equal(ratectl_http_local_response(r, &loc), RATECTL_HTTP_ESTATE);
			ratectl_http_response_status(r, 500);   /* 429 would pause it */
			assert_int_equal(ratectl_http_request_end(r, NULL), 0);
		} else {
			assert_int_equal(ratectl_http_admit(r, SEC), RATECTL_HTTP_ERETRYBUDGET);
			assert_non_null(strstr(ratectl_http_request_why(r), "retry budget"));
			assert_int_equal(ratectl_http_local_response(r, &loc), 0);
			assert_int_equal(loc.status, 429);
			assert_string_equal(loc.headers[0].name, "x-should-retry");
			assert_string_equal(loc.headers[0].value, "false");
			assert_string_equal(loc.headers[1].name, "retry-after");
			assert_true(atoi(loc.headers[1].value) >= 1);
			assert_non_null(strstr(loc.body, "ratectl_retry_budget"));
			assert_int_equal(ratectl_http_request_end(r, NULL), RATECTL_HTTP_ESTATE);
		}
		ratectl_http_request_free(r);
	}
}

/* Without the SDK's header: the same request after a failure is a retry;
 * after an answer it is a new request. */
static void test_same_request_again(void **state)
{
	struct fx *f = *state;
	const char *url = "https://api.openai.com/v1/chat/completions";
	const char *body = "{\"messages\":[{\"content\":\"same\"}]}";
	int status[] = { 500, 200, 200 }, retry[] = { 0, 1, 0 };
	ratectl_http_request *r;
	int i;

	for (i = 0; i < 3; i++) {
		assert_int_equal(ratectl_http_request_begin(&r, f->h, "POST", url, NULL, 0,
		                 body, strlen(body), 0), 0);
		assert_int_equal(ratectl_http_request_info(r)->is_retry, retry[i]);
		assert_int_equal(ratectl_http_admit(r, SEC), 0);
		ratectl_http_response_status(r, status[i]);
		assert_int_equal(ratectl_http_request_end(r, NULL), 0);
		ratectl_http_request_free(r);
	}
}

/* ---- several budgets at once (also) --------------------------------------- */

/* A per-model budget of key 1 that names the key's own budget, which names
 * the organisation's: a gpt-4o request of key 1 is charged to all three. */
static const char also_text[] =
	"[k1-gpt4o]\n"
	"match = api.openai.com/v1\n"
	"model = gpt-4o*\n"
	"key = db567a0dd8d24a1a\n"
	"requests = 2/min\n"
	"tokens = 100000/min\n"
	"also = k1\n"
	"[k1]\n"
	"match = api.openai.com/v1\n"
	"key = db567a0dd8d24a1a\n"
	"requests = 3/min\n"
	"tokens = 100000/min\n"
	"also = org\n"
	"[org]\n"
	"match = api.openai.com\n"
	"requests = 100/min\n"
	"tokens = 100000/min\n";

static int setup_also(void **state)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	struct fx *f = calloc(1, sizeof *f);

	f->dir = tmp_ledger();
	o.config_text = also_text;
	o.config_len = sizeof also_text - 1;
	o.ledger_dir = f->dir;
	assert_int_equal(ratectl_http_open(&f->h, &o), 0);
	*state = f;
	return 0;
}

static ratectl_http_request *begin_model(ratectl_http *h, const char *model)
{
	ratectl_http_header rq[1] = { { "Authorization", "Bearer sk-test-1" } };
	ratectl_http_request *r;
	char body[256];

	snprintf(body, sizeof body, "{\"model\":\"%s\",\"max_tokens\":96,"
	         "\"messages\":[]}", model);
	assert_int_equal(ratectl_http_request_begin(&r, h, "POST",
	                 "https://api.openai.com/v1/chat/completions", rq, 1, body,
	                 strlen(body), 0), 0);
	assert_non_null(r);
	return r;
}

static ratectl_counters counters_of(ratectl *l, const char *name)
{
	ratectl_budget_info bi;

	assert_int_equal(ratectl_budget_get(l, name, &bi), 0);
	return bi.counters;
}

/* All or none: a request refused by one of its budgets leaves the others
 * untouched; released and reconciled in each. */
static void test_several_budgets_all_or_none(void **state)
{
	struct fx *f = *state;
	const char *const names[] = { "k1-gpt4o", "k1", "org" };
	const uint64_t admitted[][3] = {
		{ 1, 1, 1 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 3, 3 }, { 2, 3, 3 },
	};
	ratectl_http_request *r[5];
	ratectl_http_outcome o;
	const ratectl_http_info *in;
	int64_t wait;
	ratectl *l;
	unsigned i, k;

	r[0] = begin_model(f->h, "gpt-4o");
	in = ratectl_http_request_info(r[0]);
	assert_int_equal(in->nbudgets, 3);
	assert_string_equal(in->budget, "k1-gpt4o");
	for (k = 0; k < 3; k++)
		assert_string_equal(in->budgets[k], names[k]);
	assert_int_equal(ratectl_http_try(r[0], &wait), 0);
	assert_int_equal(ratectl_open(&l, f->dir, NULL), 0);
	/* gpt-4o: 2 pass, the third is refused by k1-gpt4o (2/min) and
	 * charges neither k1 nor org; gpt-3.5 (k1 and org) takes k1's third,
	 * then is refused by k1 and charges org nothing. */
	for (i = 1; i < 5; i++) {
		r[i] = begin_model(f->h, i < 3 ? "gpt-4o" : "gpt-3.5-turbo");
		assert_int_equal(ratectl_http_request_info(r[i])->nbudgets, i < 3 ? 3 : 2);
		assert_int_equal(ratectl_http_try(r[i], &wait),
		                 i == 1 || i == 3 ? 0 : RATECTL_ELIMITED);
		if (i == 2 || i == 4)
			assert_true(wait >= 1);
	}
	for (k = 0; k < 3; k++)
		assert_int_equal(counters_of(l, names[k]).admitted, admitted[4][k]);
	assert_string_equal(ratectl_http_request_info(r[3])->budgets[1], "org");
	/* the blocking admission too: nothing charged when it times out */
	assert_int_equal(ratectl_http_admit(r[2], 10 * MSEC), RATECTL_ETIMEDOUT);
	for (k = 0; k < 3; k++)
		assert_int_equal(counters_of(l, names[k]).admitted, admitted[4][k]);
	/* usage 10 reconciles every budget of the request; each was charged
	 * the estimates of the requests it admitted */
	ratectl_http_response_status(r[0], 200);
	ratectl_http_response_body(r[0], "{\"usage\":{\"total_tokens\":10}}", 30);
	assert_int_equal(ratectl_http_request_end(r[0], &o), 0);
	assert_int_equal(o.tokens, 10);
	for (k = 0; k < 3; k++) {
		ratectl_counters c = counters_of(l, names[k]);

		uint64_t e4 = ratectl_http_request_info(r[0])->estimate,
			 e35 = ratectl_http_request_info(r[3])->estimate;

		assert_int_equal(c.tokens_actual, 10);
		assert_int_equal(c.tokens_reconciled, e4);
		assert_int_equal(c.tokens_estimated, k == 0 ? 2 * e4 : 2 * e4 + e35);
	}
	for (i = 0; i < 5; i++)
		ratectl_http_request_free(r[i]);       /* leases held: released */
	for (k = 0; k < 3; k++) {
		ratectl_budget_info bi;

		assert_int_equal(ratectl_budget_get(l, names[k], &bi), 0);
		assert_int_equal(bi.inflight, 0);
	}
	ratectl_close(l);
}

/* also names budgets of the file, not itself, at most 8 in all. */
static void test_also_in_the_config(void **state)
{
	static const struct { const char *text, *err; } bad[] = {
		{ "[a]\nrequests = 1/s\nalso = b\n", "c:3: [a]: key 'also': no budget [b]" },
		{ "[a]\nrequests = 1/s\nalso = a\n", "c:3: [a]: key 'also': 'a' is this" },
		{ "[a]\nrequests = 1/s\nalso = b, b\n[b]\nrequests = 1/s\n",
		  "c:3: [a]: key 'also': 'b' is named twice" },
		{ "[a]\nalso = b,c,d,e,f,g,h,i\nrequests = 1/s\n", "c:2: [a]: key 'also': "
		  "more than 7 budgets" },
		/* a chain of 9 */
		{ "[a]\nrequests=1/s\nalso=b\n[b]\nrequests=1/s\nalso=c\n[c]\nrequests=1/s\n"
		  "also=d\n[d]\nrequests=1/s\nalso=e\n[e]\nrequests=1/s\nalso=f\n[f]\n"
		  "requests=1/s\nalso=g\n[g]\nrequests=1/s\nalso=h\n[h]\nrequests=1/s\n"
		  "also=i\n[i]\nrequests=1/s\n", "c:3: [a]: key 'also': charges more than 8" },
	};
	const char *names[RATECTL_MANY_MAX], *no;
	char err[512];
	rh__conf *c;
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(rh__conf_parse(&c, "c", bad[i].text, strlen(bad[i].text),
		                                err, sizeof err), RATECTL_EBADCONFIG);
		if (strncmp(err, bad[i].err, strlen(bad[i].err)) != 0)
			fail_msg("%s: got '%s'", bad[i].err, err);
	}
	/* a chain of 8, and a cycle: each budget once, depth first */
	assert_int_equal(rh__conf_parse(&c, "c", bad[4].text, strlen(bad[4].text) - 20,
	                                err, sizeof err), RATECTL_EBADCONFIG);
	{
		static const char ok[] = "[a]\nrequests=1/s\nalso=b, d\n[b]\nrequests=1/s\n"
		                         "also=c\n[c]\nrequests=1/s\nalso=a\n[d]\nrequests=1/s\n";

		assert_int_equal(rh__conf_parse(&c, "c", ok, sizeof ok - 1, err, sizeof err), 0);
		assert_int_equal(rh__conf_charged(c, rh__conf_find(c, "a"), names,
		                                  RATECTL_MANY_MAX, &no), 4);
		assert_string_equal(names[0], "a");
		assert_string_equal(names[1], "b");
		assert_string_equal(names[2], "c");
		assert_string_equal(names[3], "d");
		assert_int_equal(rh__conf_charged(c, rh__conf_find(c, "c"), names,
		                                  RATECTL_MANY_MAX, &no), 4);
		assert_string_equal(names[3], "d");
		rh__conf_free(c);
	}
}

/* ---- admission for event loops -------------------------------------------- */

static const char ev_text[] =
	"[ev]\n"
	"match = ev.test/one\n"
	"requests = 10/s burst 1\n"
	"[slots]\n"
	"match = ev.test/slots\n"
	"concurrency = 1\n"
	"[ev-a]\n"
	"match = ev.test/two\n"
	"requests = 100/s burst 1\n"
	"also = ev-b\n"
	"[ev-b]\n"
	"match = ev.test/b\n"
	"requests = 10/s burst 1\n";

/* The policy over a ledger on the injected clock (testutil.h). */
struct evfx {
	clock_fixture *c;
	ratectl_http *h;
};

static int setup_ev(void **state)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	struct evfx *f = calloc(1, sizeof *f);
	void *cs;

	clock_setup(&cs);
	f->c = cs;
	o.config_text = ev_text;
	o.config_len = sizeof ev_text - 1;
	o.ledger = f->c->h;
	assert_int_equal(ratectl_http_open(&f->h, &o), 0);
	*state = f;
	return 0;
}

static int teardown_ev(void **state)
{
	struct evfx *f = *state;
	void *cs = f->c;

	ratectl_http_close(f->h);
	clock_teardown(&cs);
	free(f);
	return 0;
}

static ratectl_http_request *begin_at(ratectl_http *h, const char *path)
{
	ratectl_http_request *r;
	char url[128];

	snprintf(url, sizeof url, "http://ev.test%s", path);
	assert_int_equal(ratectl_http_request_begin(&r, h, "GET", url, NULL, 0, NULL, 0, 0), 0);
	assert_non_null(r);
	return r;
}

static void end_ok(ratectl_http_request *r)
{
	ratectl_http_response_status(r, 200);
	assert_int_equal(ratectl_http_request_end(r, NULL), 0);
}

/* One budget: admitted now, or a place in line kept in order, its time
 * and the event descriptor; a blocking try cannot jump the line; cancel
 * gives the last place back; a timeout that cannot be met reserves
 * nothing. */
static void test_reserve_in_order(void **state)
{
	struct evfx *f = *state;
	fake_clock *clk = &f->c->clk;
	ratectl_http_request *r[8];
	ratectl_http_wait w;
	int64_t t0 = clk->now, wait;
	unsigned i;

	for (i = 0; i < 8; i++)
		r[i] = begin_at(f->h, "/one");
	assert_int_equal(ratectl_http_reserve(r[0], SEC, &w), 0);
	assert_int_equal(ratectl_http_reserve(r[0], SEC, &w), RATECTL_HTTP_ESTATE);
	end_ok(r[0]);
	for (i = 1; i <= 3; i++) {
		assert_int_equal(ratectl_http_reserve(r[i], SEC, &w), RATECTL_EPENDING);
		assert_int_equal(w.wait_ns, i * 100 * MSEC);
		assert_true(w.fd >= 0);
		assert_int_equal(w.fifo, 1);
	}
	/* pending: only poll, cancel and free */
	assert_int_equal(ratectl_http_admit(r[1], 0), RATECTL_HTTP_ESTATE);
	assert_int_equal(ratectl_http_request_end(r[1], NULL), RATECTL_HTTP_ESTATE);
	/* the places are taken: a try waits behind them */
	assert_int_equal(ratectl_http_try(r[4], &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, 400 * MSEC);
	assert_true(ratectl_http_events_drain(f->h) >= 0);
	assert_int_equal(ratectl_http_reserve_poll(r[1], &w), RATECTL_EPENDING);
	clk->now = t0 + 100 * MSEC;
	assert_int_equal(ratectl_http_reserve_poll(r[2], &w), RATECTL_EPENDING);
	assert_int_equal(w.wait_ns, 100 * MSEC);
	assert_int_equal(ratectl_http_reserve_poll(r[1], &w), 0);
	assert_int_equal(ratectl_http_reserve_poll(r[1], &w), RATECTL_HTTP_ESTATE);
	end_ok(r[1]);
	/* the last place cancelled is given back to the next */
	ratectl_http_reserve_cancel(r[3]);
	ratectl_http_reserve_cancel(r[3]);
	assert_int_equal(ratectl_http_reserve(r[5], SEC, &w), RATECTL_EPENDING);
	assert_int_equal(w.wait_ns, 200 * MSEC);
	/* 50 ms cannot be met (the next place is 300 ms away): nothing kept */
	assert_int_equal(ratectl_http_reserve(r[6], 50 * MSEC, &w), RATECTL_ETIMEDOUT);
	assert_non_null(strstr(ratectl_http_request_why(r[6]), "ev"));
	assert_int_equal(ratectl_http_reserve(r[7], SEC, &w), RATECTL_EPENDING);
	assert_int_equal(w.wait_ns, 300 * MSEC);
	clk->now = t0 + 400 * MSEC;
	assert_int_equal(ratectl_http_reserve_poll(r[2], &w), 0);
	assert_int_equal(ratectl_http_reserve_poll(r[5], &w), 0);
	assert_int_equal(ratectl_http_reserve_poll(r[7], &w), 0);
	for (i = 0; i < 8; i++)
		ratectl_http_request_free(r[i]);
	{
		ratectl_budget_info bi;

		assert_int_equal(ratectl_budget_get(f->c->h, "ev", &bi), 0);
		assert_int_equal(bi.counters.admitted, 5);
		/* Waiting one's turn is a wait, not a refusal: the refusals
		 * are r[4]'s try and r[6]'s deadline; r[1], r[2], r[5] and
		 * r[7] waited (r[3] was cancelled: neither). */
		assert_int_equal(bi.counters.refused, 2);
		assert_int_equal(bi.counters.waited, 4);
	}
}

/* A slot: the wait is bounded by the timeout, and the place given back
 * when it passes; a release lets the next one in. */
static void test_reserve_slot_and_timeout(void **state)
{
	struct evfx *f = *state;
	fake_clock *clk = &f->c->clk;
	ratectl_http_request *a = begin_at(f->h, "/slots"), *b = begin_at(f->h, "/slots");
	ratectl_http_wait w;
	ratectl_budget_info bi;

	assert_int_equal(ratectl_http_reserve(a, -1, &w), 0);
	assert_int_equal(ratectl_http_reserve(b, 300 * MSEC, &w), RATECTL_EPENDING);
	assert_int_equal(w.wait_ns, 300 * MSEC);        /* the deadline, before the tick */
	assert_true(w.fd >= 0);
	clk->now += 300 * MSEC;
	assert_int_equal(ratectl_http_reserve_poll(b, &w), RATECTL_ETIMEDOUT);
	assert_non_null(strstr(ratectl_http_request_why(b), "slots"));
	assert_int_equal(ratectl_http_reserve_poll(b, &w), RATECTL_HTTP_ESTATE);
	/* again, and this time the slot comes free */
	assert_int_equal(ratectl_http_reserve(b, 10 * SEC, &w), RATECTL_EPENDING);
	end_ok(a);
	assert_true(ratectl_http_events_drain(f->h) >= 0);
	assert_int_equal(ratectl_http_reserve_poll(b, &w), 0);
	assert_int_equal(ratectl_budget_get(f->c->h, "slots", &bi), 0);
	assert_int_equal(bi.inflight, 1);
	ratectl_http_request_free(b);
	ratectl_http_request_free(a);
	assert_int_equal(ratectl_budget_get(f->c->h, "slots", &bi), 0);
	assert_int_equal(bi.inflight, 0);
}

/* Several budgets: no place in line, the budgets' hint; all or none. */
static void test_reserve_several_budgets(void **state)
{
	struct evfx *f = *state;
	fake_clock *clk = &f->c->clk;
	ratectl_http_request *a = begin_at(f->h, "/two"), *b = begin_at(f->h, "/two");
	ratectl_http_wait w;
	ratectl_budget_info bi;

	assert_int_equal(ratectl_http_request_info(a)->nbudgets, 2);
	assert_int_equal(ratectl_http_reserve(a, SEC, &w), 0);
	assert_int_equal(ratectl_http_reserve(b, SEC, &w), RATECTL_EPENDING);
	assert_int_equal(w.fifo, 0);
	assert_int_equal(w.fd, -1);
	assert_int_equal(w.wait_ns, 100 * MSEC);        /* ev-b: 10/s */
	assert_int_equal(ratectl_budget_get(f->c->h, "ev-a", &bi), 0);
	assert_int_equal(bi.counters.admitted, 1);      /* nothing charged */
	clk->now += 50 * MSEC;
	assert_int_equal(ratectl_http_reserve_poll(b, &w), RATECTL_EPENDING);
	assert_int_equal(w.wait_ns, 50 * MSEC);
	clk->now += 50 * MSEC;
	assert_int_equal(ratectl_http_reserve_poll(b, &w), 0);
	assert_int_equal(ratectl_budget_get(f->c->h, "ev-a", &bi), 0);
	assert_int_equal(bi.counters.admitted, 2);
	assert_int_equal(ratectl_budget_get(f->c->h, "ev-b", &bi), 0);
	assert_int_equal(bi.counters.admitted, 2);
	/* a timeout the hint says cannot be met */
	ratectl_http_request_free(b);
	b = begin_at(f->h, "/two");
	assert_int_equal(ratectl_http_reserve(b, 10 * MSEC, &w), RATECTL_ETIMEDOUT);
	ratectl_http_request_free(b);
	ratectl_http_request_free(a);
}

/* ---- the config through the public header ---------------------------------- */

static void keep_notice(void *ctx, int kind, const char *msg)
{
	assert_int_equal(kind, RATECTL_HTTP_NOTICE_BADCONFIG);
	snprintf(ctx, 512, "%s", msg);
}

static void test_config_api(void **state)
{
	static const char text[] =
		"[a]\n"
		"match = API.example.com, [::1]:8080/v1 , h:443\n"
		"match = other.example\n"
		"model = gpt-4o*, o1-*\n"
		"key = db567a0dd8d24a1a\n"
		"requests = 10/s\n"
		"also = b\n"
		"\n"
		"[b]\n"
		"tokens = 1000/min\n";
	ratectl_http_config *c;
	ratectl_http_config_budget b;
	char err[512], path[] = "/tmp/ratectl-conf-XXXXXX";
	size_t i;
	int fd;

	(void)state;
	assert_int_equal(ratectl_http_config_parse(&c, "t.conf", text, sizeof text - 1,
	                                           err, sizeof err), 0);
	assert_int_equal(ratectl_http_config_count(c), 2);
	assert_int_equal(ratectl_http_config_get(c, 0, &b), 0);
	assert_string_equal(b.name, "a");
	assert_string_equal(b.match, "api.example.com, [::1]:8080/v1, h:443, other.example");
	assert_string_equal(b.models, "gpt-4o*, o1-*");
	assert_string_equal(b.keys, "db567a0dd8d24a1a");
	assert_string_equal(b.also, "b");
	assert_int_equal(b.line, 1);
	assert_int_equal(b.budget.nlimits, 1);
	assert_int_equal(b.budget.limits[0].count, 10);
	assert_int_equal(ratectl_http_config_get(c, 1, &b), 0);
	assert_string_equal(b.name, "b");
	assert_string_equal(b.match, "");
	assert_string_equal(b.also, "");
	assert_int_equal(b.line, 9);
	assert_int_equal(ratectl_http_config_get(c, 2, &b), -EINVAL);
	assert_int_equal(ratectl_http_config_find(c, "b", &i), 0);
	assert_int_equal(i, 1);
	assert_int_equal(ratectl_http_config_find(c, "z", &i), RATECTL_ENOTFOUND);
	ratectl_http_config_free(c);
	ratectl_http_config_free(NULL);

	/* from a file; errors name the file and line */
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(write(fd, strstr(text, "[b]"), 22), 22);
	close(fd);
	assert_int_equal(ratectl_http_config_load(&c, path, err, sizeof err), 0);
	assert_int_equal(ratectl_http_config_count(c), 1);
	ratectl_http_config_free(c);
	assert_int_equal(ratectl_http_config_parse(&c, "t.conf", "[a]\nx = 1\n", 10,
	                                           err, sizeof err), RATECTL_EBADCONFIG);
	assert_null(c);
	assert_string_equal(err, "t.conf:2: [a]: unknown key 'x'");
	unlink(path);
	assert_true(ratectl_http_config_load(&c, path, err, sizeof err) == -ENOENT);
	assert_non_null(strstr(err, path));
	/* a handle over a bad config text says where, through its notices */
	{
		ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
		ratectl_http *h;

		err[0] = '\0';
		o.config_text = "[a]\nx = 1\n";
		o.config_len = 10;
		o.notice = keep_notice;
		o.notice_ctx = err;
		assert_int_equal(ratectl_http_open(&h, &o), RATECTL_EBADCONFIG);
		assert_string_equal(err, "config:2: [a]: unknown key 'x'");
	}
}

/* ---- fixed buffers at size - 1, size, size + 1, 10 x ---------------------- */

static void test_header_value_sizes(void **state)
{
	const size_t sizes[] = { RH_HDR_VALUE_MAX - 1, RH_HDR_VALUE_MAX,
	                         RH_HDR_VALUE_MAX + 1, 10 * RH_HDR_VALUE_MAX };
	struct rh__hdrs *h = malloc(sizeof *h);
	unsigned i;

	(void)state;
	for (i = 0; i < 4; i++) {
		char *v = malloc(sizes[i] + 1);

		memset(v, '7', sizes[i]);
		v[sizes[i]] = '\0';
		rh__hdrs_reset(h);
		assert_int_equal(rh__hdrs_add(h, "Retry-After", v), sizes[i] <= RH_HDR_VALUE_MAX ? 0 : -1);
		if (sizes[i] <= RH_HDR_VALUE_MAX)
			assert_string_equal(rh__hdrs_get(h, "retry-after"), v);
		else
			assert_null(rh__hdrs_get(h, "retry-after"));
		free(v);
	}
	/* an unwanted name is not kept; the first of a repeated name wins */
	rh__hdrs_reset(h);
	assert_int_equal(rh__hdrs_add(h, "x-other", "1"), -1);
	assert_int_equal(rh__hdrs_add(h, "retry-after", "1"), 0);
	assert_int_equal(rh__hdrs_add(h, "RETRY-AFTER", "2"), 0);
	assert_string_equal(rh__hdrs_get(h, "retry-after"), "1");
	free(h);
}

/* The arena at its size: every wanted header at the longest value fits
 * until the arena is full, and the one that does not fit is dropped whole. */
static void test_header_arena_full(void **state)
{
	struct rh__hdrs *h = malloc(sizeof *h);
	char v[RH_HDR_VALUE_MAX + 1];
	size_t i, kept = 0, used = 0;

	(void)state;
	memset(v, '1', RH_HDR_VALUE_MAX);
	v[RH_HDR_VALUE_MAX] = '\0';
	rh__hdrs_reset(h);
	for (i = 0; i < rh__hdr_nnames; i++) {
		size_t need = strlen(rh__hdr_names[i]) + RH_HDR_VALUE_MAX + 2;
		int fits = used + need <= RH_HDR_ARENA;

		assert_int_equal(rh__hdrs_add(h, rh__hdr_names[i], v), fits ? 0 : -1);
		if (fits) {
			used += need;
			kept++;
		}
		assert_true(h->used <= RH_HDR_ARENA);
	}
	assert_int_equal(h->n, kept);
	assert_true(kept >= 3 && kept < rh__hdr_nnames);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_openai_chat_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_openai_chat_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_openai_responses_and_embeddings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_in_the_middle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_anthropic_json_and_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_azure, setup, teardown),
		cmocka_unit_test(test_key_id),
		cmocka_unit_test_setup_teardown(test_model_and_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_estimates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_429_cooldown_and_own_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sdk_retries_past_the_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_request_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_several_budgets_all_or_none, setup_also, teardown),
		cmocka_unit_test(test_also_in_the_config),
		cmocka_unit_test(test_config_api),
		cmocka_unit_test_setup_teardown(test_reserve_in_order, setup_ev, teardown_ev),
		cmocka_unit_test_setup_teardown(test_reserve_slot_and_timeout, setup_ev, teardown_ev),
		cmocka_unit_test_setup_teardown(test_reserve_several_budgets, setup_ev, teardown_ev),
		cmocka_unit_test(test_header_value_sizes),
		cmocka_unit_test(test_header_arena_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
