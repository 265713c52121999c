/*
 * test_http.c - libratectl-http through its public API, with recorded
 * requests, header sets and bodies of OpenAI (chat completions,
 * responses, embeddings; JSON and streamed), Anthropic (messages, JSON
 * and streamed) and Azure OpenAI; model and key matching; SDK retries
 * against the retry budget; tenants' budgets made from templates, and
 * tags; and the fixed buffers at their sizes.  Each test has its own
 * ledger and an in-memory config.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
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

/* ---- templates and tenants -------------------------------------------------- */

/* A config's error, compared by its start. */
static void config_refused(const char *text, const char *want)
{
	char err[768];
	rh__conf *c;

	err[0] = '\0';
	if (rh__conf_parse(&c, "c", text, strlen(text), err, sizeof err) !=
	    RATECTL_EBADCONFIG || c != NULL || strncmp(err, want, strlen(want)) != 0)
		fail_msg("%s\n  want '%s'\n  got  '%s'", text, want, err);
}

static void test_templates_in_the_config(void **state)
{
	static const char text[] =
		"[user-*]\n"
		"requests = 5/min\n"
		"expire = 30min\n"
		"weight = 3\n"
		"[openai]\n"
		"match = api.openai.com\n"
		"requests = 10/s\n"
		"tenant = header X-Ratectl-Tenant\n"
		"tenant_template = user-*\n"
		"tenant_default = anon\n"
		"tag = header X-Ratectl-Tag\n"
		"weight = 2\n"
		"[team-*]\n"
		"tokens = 1000/min\n"
		"[*]\n"
		"requests = 1/s\n"
		"expire = never\n"
		"[keyed]\n"
		"match = k.test\n"
		"requests = 1/s\n"
		"tenant = key\n"
		"tenant_template = *\n";
	const rh__conf_budget *b, *t;
	ratectl_http_config *hc;
	ratectl_http_config_budget cb;
	char err[512];
	rh__conf *c;
	size_t i;

	(void)state;
	assert_int_equal(rh__conf_parse(&c, "c", text, sizeof text - 1, err, sizeof err), 0);
	/* budgets first, then templates, each in the order of the file */
	assert_int_equal(c->nbudgets, 2);
	assert_int_equal(c->ntemplates, 3);
	assert_string_equal(c->budgets[0].name, "openai");
	assert_string_equal(c->budgets[1].name, "keyed");
	assert_string_equal(c->templates[0].name, "user-*");
	assert_string_equal(c->templates[1].name, "team-*");
	assert_string_equal(c->templates[2].name, "*");
	t = rh__conf_template_find(c, "user-*");
	assert_ptr_equal(t, &c->templates[0]);
	assert_int_equal(t->is_template, 1);
	assert_int_equal(t->line, 1);
	assert_int_equal(t->budget.expire_ns, 30 * 60 * SEC);
	assert_int_equal(t->budget.weight, 3);
	assert_string_equal(t->budget.origin, "user-*");
	assert_int_equal(t->budget.limits[0].count, 5);
	/* the defaults: an hour, weight 1; never is 0 */
	t = rh__conf_template_find(c, "team-*");
	assert_int_equal(t->budget.expire_ns, 3600 * SEC);
	assert_int_equal(t->budget.weight, 1);
	assert_string_equal(t->budget.origin, "team-*");
	assert_int_equal(rh__conf_template_find(c, "*")->budget.expire_ns, 0);
	/* a budget is no template, a template no budget */
	b = rh__conf_find(c, "openai");
	assert_non_null(b);
	assert_int_equal(b->is_template, 0);
	assert_int_equal(b->budget.weight, 2);
	assert_int_equal(b->budget.expire_ns, 0);
	assert_string_equal(b->budget.origin, "");
	assert_int_equal(b->tenant_from, RH_TENANT_HEADER);
	assert_string_equal(b->tenant_header, "X-Ratectl-Tenant");
	assert_string_equal(b->tenant_template, "user-*");
	assert_string_equal(b->tenant_default, "anon");
	assert_string_equal(b->tag_header, "X-Ratectl-Tag");
	assert_int_equal(rh__conf_find(c, "keyed")->tenant_from, RH_TENANT_KEY);
	assert_null(rh__conf_find(c, "user-*"));
	assert_null(rh__conf_template_find(c, "openai"));
	assert_ptr_equal(rh__conf_match(c, "api.openai.com", 443, "/v1", NULL, NULL), b);
	rh__conf_free(c);

	/* through the public header: templates apart from the budgets */
	assert_int_equal(ratectl_http_config_parse(&hc, "t.conf", text, sizeof text - 1,
	                                           err, sizeof err), 0);
	assert_int_equal(ratectl_http_config_count(hc), 2);
	assert_int_equal(ratectl_http_config_template_count(hc), 3);
	assert_int_equal(ratectl_http_config_template_count(NULL), 0);
	assert_int_equal(ratectl_http_config_template_get(hc, 0, &cb), 0);
	assert_string_equal(cb.name, "user-*");
	assert_string_equal(cb.match, "");
	assert_string_equal(cb.also, "");
	assert_int_equal(cb.line, 1);
	assert_int_equal(cb.budget.weight, 3);
	assert_string_equal(cb.budget.origin, "user-*");
	assert_int_equal(ratectl_http_config_template_get(hc, 3, &cb), -EINVAL);
	assert_int_equal(ratectl_http_config_template_find(hc, "team-*", &i), 0);
	assert_int_equal(i, 1);
	assert_int_equal(ratectl_http_config_template_find(hc, "openai", &i),
	                 RATECTL_ENOTFOUND);
	assert_int_equal(ratectl_http_config_find(hc, "user-*", &i), RATECTL_ENOTFOUND);
	for (i = 0; i < ratectl_http_config_count(hc); i++) {
		assert_int_equal(ratectl_http_config_get(hc, i, &cb), 0);
		assert_null(strchr(cb.name, '*'));
	}
	assert_int_equal(ratectl_http_config_get(hc, 0, &cb), 0);
	assert_int_equal(cb.line, 5);
	assert_string_equal(cb.match, "api.openai.com");
	ratectl_http_config_free(hc);
}

/* Every refusal names the file, the line, the section and the key. */
static void test_templates_refused(void **state)
{
	static const struct { const char *text, *err; } bad[] = {
		{ "[a*b*]\nrequests = 1/s\n", "c:1: template [a*b*]: 'a*b*': a "
		  "template's name has one '*'" },
		{ "[us er-*]\nrequests = 1/s\n", "c:1: template [us er-*]: 'us er-*': "
		  "with its '*' replaced, not a budget name" },
		{ "[-*]\nrequests = 1/s\n", "c:1: template [-*]: '-*': with its '*' "
		  "replaced, not a budget name" },
		{ "[user-*]\nrequests = 1/s\n[user-*]\nrequests = 1/s\n",
		  "c:3: section [user-*] appears twice (first on line 1)" },
		{ "[user-*]\nrequests = 1/s\nmatch = a.com\n",
		  "c:3: [user-*]: key 'match': not in a template" },
		{ "[user-*]\nrequests = 1/s\nshared = redis://h\n",
		  "c:3: [user-*]: key 'shared': not in a template" },
		{ "[user-*]\nrequests = 1/s\ntenant = key\n",
		  "c:3: [user-*]: key 'tenant': not in a template" },
		{ "[a]\nrequests = 1/s\nexpire = 1h\n",
		  "c:3: [a]: key 'expire': only in a template" },
		{ "[user-*]\nrequests = 1/s\nweight = 0\n",
		  "c:3: [user-*]: key 'weight': '0': must be 1 .. 100" },
		{ "[user-*]\nrequests = 1/s\nweight = 101\n",
		  "c:3: [user-*]: key 'weight': '101': must be 1 .. 100" },
		{ "[user-*]\nrequests = 1/s\nexpire = soon\n",
		  "c:3: [user-*]: key 'expire': " },
		{ "[user-*]\nrequests = 1/s\nexpire = 400d\n",
		  "c:3: [user-*]: key 'expire': duration '400d' must be 0 (never) .. 366 days" },
		{ "[user-*]\nexpire = 1h\n", "c:1: [user-*]: no limit" },
		{ "[a]\nrequests = 1/s\ntenant = header X-T\n",
		  "c:3: [a]: key 'tenant': give the template of the tenants' budgets" },
		{ "[a]\nrequests = 1/s\ntenant_template = u-*\n[u-*]\nrequests = 1/s\n",
		  "c:3: [a]: key 'tenant_template': say where the tenant comes from" },
		{ "[a]\nrequests = 1/s\ntenant_default = x\n",
		  "c:3: [a]: key 'tenant_default': goes with `tenant`" },
		{ "[a]\nrequests = 1/s\ntenant = key\ntenant_template = u-*\n",
		  "c:4: [a]: key 'tenant_template': no template [u-*] in the file" },
		{ "[a]\nrequests = 1/s\ntenant = key\ntenant_template = user\n",
		  "c:4: [a]: key 'tenant_template': 'user': a template's name has one '*'" },
		{ "[a]\nrequests = 1/s\ntenant = cookie\n",
		  "c:3: [a]: key 'tenant': tenant: expected `header NAME` or `key`" },
		{ "[a]\nrequests = 1/s\ntenant = header X Y\n",
		  "c:3: [a]: key 'tenant': tenant: 'X Y' is not a header name" },
		/* 65 characters */
		{ "[a]\nrequests = 1/s\ntenant = header "
		  "X-123456789012345678901234567890123456789012345678901234567890123\n",
		  "c:3: [a]: key 'tenant': tenant: give `header NAME`, a header name of "
		  "1 to 64 characters" },
		{ "[a]\nrequests = 1/s\ntag = header\n",
		  "c:3: [a]: key 'tag': tag: expected `header NAME`" },
		{ "[a]\nrequests = 1/s\ntag = key\n",
		  "c:3: [a]: key 'tag': tag: expected `header NAME`" },
		/* 49 characters around the '*' leave 15 for a key id of 16 */
		{ "[a]\nrequests = 1/s\ntenant = key\ntenant_template = "
		  "k-1234567890123456789012345678901234567890123456-*\n"
		  "[k-1234567890123456789012345678901234567890123456-*]\nrequests = 1/s\n",
		  "c:4: [a]: key 'tenant_template': tenant = key puts a key id of 16 "
		  "characters in it: tenant '0123456789abcdef': longer than the 15 "
		  "characters template [k-" },
		{ "[a]\nrequests = 1/s\ntenant = header X-T\ntenant_template = u-*\n"
		  "tenant_default = a b\n[u-*]\nrequests = 1/s\n",
		  "c:5: [a]: key 'tenant_default': tenant 'a b': [u-a b] is not a budget name" },
		{ "[a]\nrequests = 1/s\nalso = u-*\n[u-*]\nrequests = 1/s\n",
		  "c:3: [a]: key 'also': no budget [u-*] in the file" },
		/* 8 budgets by also, and the tenant's: 9 */
		{ "[a]\nrequests=1/s\ntenant = key\ntenant_template = u-*\n"
		  "also=b,c,d,e,f,g,h\n[b]\nrequests=1/s\n[c]\nrequests=1/s\n[d]\n"
		  "requests=1/s\n[e]\nrequests=1/s\n[f]\nrequests=1/s\n[g]\nrequests=1/s\n"
		  "[h]\nrequests=1/s\n[u-*]\nrequests=1/s\n",
		  "c:4: [a]: key 'tenant_template': with the tenant's budget, charges "
		  "more than 8 budgets" },
	};
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		config_refused(bad[i].text, bad[i].err);
}

/*
 * The policy's tenants over a ledger on the injected clock: [openai] is
 * the key's budget, 3/min; each end user's budget, from [user-*], 1/min
 * (both with a cap on requests in flight, so that their slots show).
 * [keyed] takes the tenant from the key id, or "anon" without a key.
 */
static const char tenant_text[] =
	"[openai]\n"
	"match = api.openai.com/v1\n"
	"requests = 3/min\n"
	"tokens = 100000/min\n"
	"concurrency = 8\n"
	"tenant = header X-Ratectl-Tenant\n"
	"tenant_template = user-*\n"
	"tag = header X-Ratectl-Tag\n"
	"[keyed]\n"
	"match = keyed.test\n"
	"requests = 100/min\n"
	"tenant = key\n"
	"tenant_template = k-*\n"
	"tenant_default = anon\n"
	"tag = header X-Ratectl-Tag\n"
	"[same]\n"
	"match = same.test\n"
	"requests = 100/min\n"
	"tenant = header x-ratectl-tenant\n"
	"tenant_template = *\n"
	"[user-*]\n"
	"requests = 1/min\n"
	"tokens = 50000/min\n"
	"concurrency = 4\n"
	"expire = 2s\n"
	"weight = 3\n"
	"[k-*]\n"
	"requests = 10/min\n"
	"[*]\n"
	"requests = 10/min\n";

struct tfx {
	clock_fixture *c;
	ratectl_http *h;
	int notices;
	char notice[1024];
};

static void count_notice(void *ctx, int kind, const char *msg)
{
	struct tfx *f = ctx;

	assert_int_equal(kind, RATECTL_HTTP_NOTICE_BADTAG);
	f->notices++;
	snprintf(f->notice, sizeof f->notice, "%s", msg);
}

static int setup_tenant(void **state)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	struct tfx *f = calloc(1, sizeof *f);
	void *cs;

	clock_setup(&cs);
	f->c = cs;
	o.config_text = tenant_text;
	o.config_len = sizeof tenant_text - 1;
	o.ledger = f->c->h;
	o.notice = count_notice;
	o.notice_ctx = f;
	assert_int_equal(ratectl_http_open(&f->h, &o), 0);
	*state = f;
	return 0;
}

static int teardown_tenant(void **state)
{
	struct tfx *f = *state;
	void *cs = f->c;

	ratectl_http_close(f->h);
	clock_teardown(&cs);
	free(f);
	return 0;
}

/* A request to url with header name: value (none when name is NULL). */
static ratectl_http_request *begin_h(ratectl_http *h, const char *url,
                                     const char *name, const char *value)
{
	ratectl_http_header rq[1] = { { name, value } };
	ratectl_http_request *r;

	assert_int_equal(ratectl_http_request_begin(&r, h, "POST", url, rq, name ? 1 : 0,
	                                            "{}", 2, 0), 0);
	assert_non_null(r);
	return r;
}

#define OPENAI "https://api.openai.com/v1/chat/completions"

static ratectl_http_request *begin_tenant(ratectl_http *h, const char *tenant)
{
	return begin_h(h, OPENAI, tenant ? "X-Ratectl-Tenant" : NULL, tenant);
}

static int exists(ratectl *l, const char *name)
{
	ratectl_budget_info bi;
	int rc = ratectl_budget_get(l, name, &bi);

	assert_true(rc == 0 || rc == RATECTL_ENOTFOUND);
	return rc == 0;
}

static ratectl_budget_info info_of(ratectl *l, const char *name)
{
	ratectl_budget_info bi;

	assert_int_equal(ratectl_budget_get(l, name, &bi), 0);
	return bi;
}

/* The tenant's budget is made from its template at the first request
 * that needs it, and charged first, with the key's, in one admission. */
static void test_tenant_created_on_first_use(void **state)
{
	struct tfx *f = *state;
	ratectl *l = f->c->h;
	ratectl_http_request *r = begin_tenant(f->h, "alice");
	const ratectl_http_info *in = ratectl_http_request_info(r);
	ratectl_budget_info bi;

	assert_string_equal(in->budget, "openai");
	assert_int_equal(in->nbudgets, 2);
	assert_string_equal(in->budgets[0], "user-alice");
	assert_string_equal(in->budgets[1], "openai");
	assert_string_equal(in->tenant, "user-alice");
	/* ratectl's own headers, for adapters that can drop them */
	assert_int_equal(in->ndrop_headers, 2);
	assert_string_equal(in->drop_headers[0], "X-Ratectl-Tenant");
	assert_string_equal(in->drop_headers[1], "X-Ratectl-Tag");
	assert_false(exists(l, "user-alice"));
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	bi = info_of(l, "user-alice");
	assert_string_equal(bi.config.origin, "user-*");
	assert_int_equal(bi.config.expire_ns, 2 * SEC);
	assert_int_equal(bi.config.weight, 3);
	assert_int_equal(bi.config.nlimits, 2);
	assert_int_equal(bi.config.limits[0].count, 1);
	assert_int_equal(bi.counters.admitted, 1);
	assert_int_equal(bi.inflight, 1);
	assert_int_equal(info_of(l, "openai").counters.admitted, 1);
	assert_int_equal(info_of(l, "openai").config.weight, 0);
	end_ok(r);
	assert_int_equal(info_of(l, "user-alice").inflight, 0);
	assert_int_equal(info_of(l, "openai").inflight, 0);
	ratectl_http_request_free(r);

	/* without the header: the key's budget alone */
	r = begin_tenant(f->h, NULL);
	in = ratectl_http_request_info(r);
	assert_int_equal(in->nbudgets, 1);
	assert_string_equal(in->budgets[0], "openai");
	assert_null(in->tenant);
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	end_ok(r);
	ratectl_http_request_free(r);
	assert_int_equal(info_of(l, "openai").counters.admitted, 2);
	assert_int_equal(info_of(l, "user-alice").counters.admitted, 1);
}

/* The tenant's budget made by another process first: EEXISTS is success,
 * and what that process made is kept. */
static void test_tenant_exists_already(void **state)
{
	struct tfx *f = *state;
	ratectl *l = f->c->h;
	ratectl_budget b = budget_simple(7, 7, 0);
	ratectl_http_request *r;

	b.limits[0].period_ns = 60 * SEC;
	b.expire_ns = 3600 * SEC;
	b.weight = 5;
	snprintf(b.origin, sizeof b.origin, "user-*");
	assert_int_equal(ratectl_budget_set(l, "user-bob", &b, RATECTL_CREATE), 0);
	/* openai is not in the ledger yet: the admission makes both, and
	 * finds user-bob there */
	assert_false(exists(l, "openai"));
	r = begin_tenant(f->h, "bob");
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	assert_int_equal(info_of(l, "user-bob").config.limits[0].count, 7);
	assert_int_equal(info_of(l, "user-bob").config.weight, 5);
	assert_int_equal(info_of(l, "user-bob").counters.admitted, 1);
	assert_int_equal(info_of(l, "openai").counters.admitted, 1);
	end_ok(r);
	ratectl_http_request_free(r);
}

/* All or none: a request refused by its tenant's budget charges the
 * key's nothing, and one refused by the key's charges the tenant's
 * nothing; both blocking and not. */
static void test_tenant_all_or_none(void **state)
{
	struct tfx *f = *state;
	ratectl *l = f->c->h;
	ratectl_http_request *r[6];
	const char *who[6] = { "alice", "alice", "bob", "carol", "dave", "dave" };
	int64_t wait;
	unsigned i;

	for (i = 0; i < 6; i++)
		r[i] = begin_tenant(f->h, who[i]);
	assert_int_equal(ratectl_http_try(r[0], &wait), 0);
	/* alice's 1/min is spent: openai keeps its 2 left */
	assert_int_equal(ratectl_http_try(r[1], &wait), RATECTL_ELIMITED);
	assert_true(wait > 50 * SEC);
	assert_int_equal(ratectl_http_admit(r[1], 10 * MSEC), RATECTL_ETIMEDOUT);
	assert_int_equal(info_of(l, "openai").counters.admitted, 1);
	assert_int_equal(info_of(l, "user-alice").counters.admitted, 1);
	assert_int_equal(ratectl_http_try(r[2], &wait), 0);
	assert_int_equal(ratectl_http_try(r[3], &wait), 0);
	/* openai's 3/min is spent: dave's own budget is charged nothing */
	assert_int_equal(ratectl_http_try(r[4], &wait), RATECTL_ELIMITED);
	assert_int_equal(info_of(l, "user-dave").counters.admitted, 0);
	assert_int_equal(ratectl_http_admit(r[5], 10 * MSEC), RATECTL_ETIMEDOUT);
	assert_int_equal(info_of(l, "user-dave").counters.admitted, 0);
	assert_int_equal(info_of(l, "openai").counters.admitted, 3);
	for (i = 0; i < 6; i++)
		ratectl_http_request_free(r[i]);
	assert_int_equal(info_of(l, "openai").inflight, 0);
}

/* An idle tenant's budget is removed once it expires (2 s idle, and full
 * again: a minute of 1/min), and made again by its next request; one
 * removed while a request waits for it is made again at the next poll. */
static void test_tenant_expired_then_made_again(void **state)
{
	struct tfx *f = *state;
	ratectl *l = f->c->h;
	fake_clock *clk = &f->c->clk;
	ratectl_http_request *r = begin_tenant(f->h, "erin"), *p[4];
	ratectl_http_wait w;
	unsigned removed = 0, i;

	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	end_ok(r);
	ratectl_http_request_free(r);
	clk->now += 61 * SEC;
	assert_int_equal(ratectl_sweep(l, &removed), 0);
	assert_int_equal(removed, 1);           /* user-erin; openai never expires */
	assert_false(exists(l, "user-erin"));
	r = begin_tenant(f->h, "erin");
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	assert_int_equal(info_of(l, "user-erin").counters.admitted, 1);
	assert_string_equal(info_of(l, "user-erin").config.origin, "user-*");
	end_ok(r);
	ratectl_http_request_free(r);

	/* openai spent by three tenants: frank waits (nothing held) */
	for (i = 0; i < 3; i++) {
		p[i] = begin_tenant(f->h, i == 0 ? "gina" : i == 1 ? "hal" : "ivy");
		assert_int_equal(ratectl_http_reserve(p[i], 60 * SEC, &w),
		                 i < 2 ? 0 : RATECTL_EPENDING);
	}
	p[3] = begin_tenant(f->h, "frank");
	assert_int_equal(ratectl_http_reserve(p[3], 60 * SEC, &w), RATECTL_EPENDING);
	assert_int_equal(w.fifo, 0);
	assert_int_equal(info_of(l, "user-frank").counters.admitted, 0);
	/* another process removes frank's budget meanwhile */
	assert_int_equal(ratectl_budget_delete(l, "user-frank"), 0);
	clk->now += 40 * SEC;
	assert_int_equal(ratectl_http_reserve_poll(p[2], &w), 0);
	assert_int_equal(ratectl_http_reserve_poll(p[3], &w), 0);
	assert_int_equal(info_of(l, "user-frank").counters.admitted, 1);
	assert_int_equal(info_of(l, "user-frank").config.weight, 3);
	for (i = 0; i < 4; i++)
		ratectl_http_request_free(p[i]);
}

/* tenant = key: the key id's budget; no key: tenant_default. */
static void test_tenant_from_key(void **state)
{
	struct tfx *f = *state;
	ratectl_http_request *r = begin_h(f->h, "https://keyed.test/v1", "Authorization",
	                                  "Bearer sk-test-1");
	const ratectl_http_info *in = ratectl_http_request_info(r);

	assert_string_equal(in->tenant, "k-db567a0dd8d24a1a");
	assert_string_equal(in->budgets[1], "keyed");
	assert_int_equal(in->ndrop_headers, 1);         /* the tag's alone */
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	assert_string_equal(info_of(f->c->h, "k-db567a0dd8d24a1a").config.origin, "k-*");
	end_ok(r);
	ratectl_http_request_free(r);
	r = begin_h(f->h, "https://keyed.test/v1", NULL, NULL);
	assert_string_equal(ratectl_http_request_info(r)->tenant, "k-anon");
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	end_ok(r);
	ratectl_http_request_free(r);
	assert_int_equal(info_of(f->c->h, "k-anon").counters.admitted, 1);
	assert_int_equal(info_of(f->c->h, "keyed").counters.admitted, 2);
}

/* A string of len bytes of c whose NUL is the last readable byte before
 * a PROT_NONE page, so that reading past it crashes. */
struct guarded {
	char *map, *s;
	size_t maplen;
};

static struct guarded guarded(size_t len, char c)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t area = (len + 1 + page - 1) / page * page;
	struct guarded g;

	g.maplen = area + page;
	g.map = mmap(NULL, g.maplen, PROT_READ | PROT_WRITE,
	             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g.map != MAP_FAILED);
	assert_int_equal(mprotect(g.map + area, page, PROT_NONE), 0);
	g.s = g.map + area - len - 1;
	memset(g.s, c, len);
	g.s[len] = '\0';
	return g;
}

static void guarded_free(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

/* Tenant header values at the room the template leaves (59 for user-*:
 * 58, 59, 60 and 1 MiB), laid before a guard page; values that make no
 * budget name; blanks around; none.  A bad one is refused by every kind
 * of admission, and charges nothing. */
static void test_tenant_header_values(void **state)
{
	static const char *const bad[] = { "a b", "al*ce", "x/y", "\xc3\xa9", "a\tb" };
	const size_t sizes[] = { 58, 59, 60, 1 << 20 };
	struct tfx *f = *state;
	ratectl *l = f->c->h;
	ratectl_http_request *r;
	ratectl_http_wait w;
	int64_t wait;
	unsigned i;

	for (i = 0; i < 4; i++) {
		struct guarded g = guarded(sizes[i], 'a');
		char want[RATECTL_NAME_MAX + 1];

		r = begin_tenant(f->h, g.s);
		if (sizes[i] <= 59) {
			snprintf(want, sizeof want, "user-%s", g.s);
			assert_string_equal(ratectl_http_request_info(r)->tenant, want);
			assert_int_equal(strlen(want), sizes[i] + 5);
			assert_int_equal(ratectl_http_try(r, &wait), 0);
			assert_int_equal(info_of(l, want).counters.admitted, 1);
			end_ok(r);
		} else {
			assert_null(ratectl_http_request_info(r)->tenant);
			assert_int_equal(ratectl_http_try(r, &wait), RATECTL_EBADNAME);
			assert_non_null(strstr(ratectl_http_request_why(r), "budget 'openai': "
			                "header X-Ratectl-Tenant: tenant 'aaaaaaaaaa"));
			assert_non_null(strstr(ratectl_http_request_why(r), "': longer "
			                "than the 59 characters template [user-*] leaves"));
			/* the value shown is cut at 64 bytes, and says so */
			assert_int_equal(strstr(ratectl_http_request_why(r), "...'") != NULL,
			                 sizes[i] > 64);
		}
		ratectl_http_request_free(r);
		guarded_free(&g);
	}
	assert_int_equal(info_of(l, "openai").counters.admitted, 2);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = begin_tenant(f->h, bad[i]);
		assert_int_equal(ratectl_http_admit(r, SEC), RATECTL_EBADNAME);
		assert_non_null(strstr(ratectl_http_request_why(r), "is not a budget name"));
		assert_int_equal(ratectl_http_try(r, &wait), RATECTL_EBADNAME);
		assert_int_equal(ratectl_http_reserve(r, SEC, &w), RATECTL_EBADNAME);
		assert_int_equal(ratectl_http_request_end(r, NULL), RATECTL_HTTP_ESTATE);
		ratectl_http_request_free(r);
	}
	r = begin_tenant(f->h, "\xc3\xa9");
	assert_int_equal(ratectl_http_try(r, &wait), RATECTL_EBADNAME);
	assert_non_null(strstr(ratectl_http_request_why(r), "tenant '?" "?'"));
	ratectl_http_request_free(r);
	assert_int_equal(info_of(l, "openai").counters.admitted, 2);
	assert_int_equal(info_of(l, "openai").counters.refused, 0);
	/* blanks around are not the value's; a blank value is none */
	r = begin_tenant(f->h, " \tbob\t ");
	assert_string_equal(ratectl_http_request_info(r)->tenant, "user-bob");
	ratectl_http_request_free(r);
	r = begin_tenant(f->h, " \t ");
	assert_null(ratectl_http_request_info(r)->tenant);
	assert_int_equal(ratectl_http_request_info(r)->nbudgets, 1);
	ratectl_http_request_free(r);
	/* the template "*": a tenant named as the budget charged already */
	r = begin_h(f->h, "http://same.test/", "X-Ratectl-Tenant", "same");
	assert_int_equal(ratectl_http_admit(r, SEC), RATECTL_EBADNAME);
	assert_non_null(strstr(ratectl_http_request_why(r), "[same] is one this "
	                "request is charged to already"));
	ratectl_http_request_free(r);
	r = begin_h(f->h, "http://same.test/", "X-Ratectl-Tenant", "other");
	assert_string_equal(ratectl_http_request_info(r)->tenant, "other");
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	end_ok(r);
	ratectl_http_request_free(r);
}

/* The requests counted for tag in budget name (0: not counted), and how
 * many tags it counts (ntags, may be NULL). */
static uint64_t tag_requests(ratectl *l, const char *name, const char *tag,
                             size_t *ntags)
{
	ratectl_tag_info t[RATECTL_TAGS_TOP];
	size_t n, i;
	uint64_t k = 0;

	assert_int_equal(ratectl_tags(l, name, t, RATECTL_TAGS_TOP, &n, NULL), 0);
	for (i = 0; i < n; i++)
		if (strcmp(t[i].tag, tag) == 0)
			k = t[i].requests;
	if (ntags)
		*ntags = n;
	return k;
}

/* A request's tag from its tag header, counted in every budget it is
 * charged to; an invalid tag (too long, bad bytes) dropped with one
 * notice; the per-request setter. */
static void test_tags(void **state)
{
	const size_t sizes[] = { 47, 48, 49, 1 << 20 };
	struct tfx *f = *state;
	ratectl *l = f->c->h;
	ratectl_http_header rq[2] = { { "X-Ratectl-Tenant", "alice" },
	                              { "X-Ratectl-Tag", "route:/chat" } };
	ratectl_http_request *r, *p[4];
	ratectl_http_outcome o;
	ratectl_http_wait w;
	char t48[RATECTL_TAG_MAX + 1];
	size_t ntags;
	unsigned i;

	assert_int_equal(ratectl_http_request_begin(&r, f->h, "POST", OPENAI, rq, 2,
	                                            "{}", 2, 0), 0);
	assert_string_equal(ratectl_http_request_info(r)->tag, "route:/chat");
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	ratectl_http_response_status(r, 200);
	ratectl_http_response_body(r, "{\"usage\":{\"total_tokens\":10}}", 30);
	assert_int_equal(ratectl_http_request_end(r, &o), 0);
	ratectl_http_request_free(r);
	assert_int_equal(tag_requests(l, "openai", "route:/chat", NULL), 1);
	assert_int_equal(tag_requests(l, "user-alice", "route:/chat", NULL), 1);
	{
		ratectl_tag_info t[RATECTL_TAGS_TOP];
		size_t n;

		/* charged the estimate, corrected to the usage at release */
		assert_int_equal(ratectl_tags(l, "user-alice", t, RATECTL_TAGS_TOP, &n,
		                              NULL), 0);
		assert_int_equal(n, 1);
		assert_int_equal(t[0].tokens, 10);
	}

	/* the tag header at 47, 48, 49 and 1 MiB bytes, before a guard page */
	for (i = 0; i < 4; i++) {
		struct guarded g = guarded(sizes[i], 't');

		r = begin_h(f->h, "https://keyed.test/", "X-Ratectl-Tag", g.s);
		assert_string_equal(ratectl_http_request_info(r)->tag,
		                    sizes[i] <= RATECTL_TAG_MAX ? g.s : "");
		assert_int_equal(ratectl_http_admit(r, SEC), 0);
		end_ok(r);
		ratectl_http_request_free(r);
		guarded_free(&g);
	}
	assert_int_equal(f->notices, 1);        /* the 49 bytes; 1 MiB said nothing */
	assert_non_null(strstr(f->notice, "budget 'keyed': header X-Ratectl-Tag: 'ttt"));
	assert_non_null(strstr(f->notice, "...' is not a tag"));
	r = begin_h(f->h, "https://keyed.test/", "X-Ratectl-Tag", "bad tag");
	assert_string_equal(ratectl_http_request_info(r)->tag, "");
	ratectl_http_request_free(r);
	assert_int_equal(f->notices, 1);
	memset(t48, 't', RATECTL_TAG_MAX);
	t48[RATECTL_TAG_MAX] = '\0';
	assert_int_equal(tag_requests(l, "k-anon", t48, NULL), 1);
	assert_int_equal(tag_requests(l, "keyed", t48 + 1, &ntags), 1);
	assert_int_equal(ntags, 2);     /* the 49 bytes and 1 MiB: untagged, not cut */

	/* the setter: good, bad (left as it was), none */
	r = begin_h(f->h, "https://keyed.test/", NULL, NULL);
	assert_int_equal(ratectl_http_request_tag(r, "batch.nightly"), 0);
	assert_string_equal(ratectl_http_request_info(r)->tag, "batch.nightly");
	assert_int_equal(ratectl_http_request_tag(r, "no spaces"), RATECTL_EBADNAME);
	assert_int_equal(ratectl_http_request_tag(r, t48 - 0), 0);
	assert_int_equal(ratectl_http_request_tag(r, "batch.nightly"), 0);
	{
		struct guarded g = guarded(1 << 20, 'x');

		assert_int_equal(ratectl_http_request_tag(r, g.s), RATECTL_EBADNAME);
		guarded_free(&g);
	}
	assert_string_equal(ratectl_http_request_info(r)->tag, "batch.nightly");
	assert_int_equal(ratectl_http_admit(r, SEC), 0);
	end_ok(r);
	assert_int_equal(ratectl_http_request_tag(r, NULL), 0);
	assert_string_equal(ratectl_http_request_info(r)->tag, "");
	assert_int_equal(ratectl_http_admit(r, SEC), 0);     /* untagged now */
	end_ok(r);
	ratectl_http_request_free(r);
	assert_int_equal(tag_requests(l, "keyed", "batch.nightly", &ntags), 1);
	assert_int_equal(ntags, 3);     /* the last one untagged */

	/* no new tag while pending: openai spent by three tenants */
	for (i = 0; i < 4; i++) {
		p[i] = begin_tenant(f->h, i == 0 ? "bob" : i == 1 ? "carol" : "dave");
		assert_int_equal(ratectl_http_reserve(p[i], 60 * SEC, &w),
		                 i < 2 ? 0 : RATECTL_EPENDING);
	}
	assert_int_equal(ratectl_http_request_tag(p[2], "late"), RATECTL_HTTP_ESTATE);
	assert_int_equal(ratectl_http_request_tag(p[1], "next"), 0);  /* admitted */
	for (i = 0; i < 4; i++)
		ratectl_http_request_free(p[i]);
}

/* Processes making one tenant's budget at once: one makes it, the others
 * find it (EEXISTS), every request is admitted once. */
static const char race_text[] =
	"[openai]\n"
	"match = api.openai.com/v1\n"
	"requests = 100/min\n"
	"tenant = header X-Ratectl-Tenant\n"
	"tenant_template = user-*\n"
	"[user-*]\n"
	"requests = 100/min\n";

static void test_tenant_made_by_many_processes(void **state)
{
	enum { N = 6 };
	char *dir = tmp_ledger(), c;
	ratectl_budget_info bi;
	pid_t pid[N];
	int go[2], st, i;
	ratectl *l;

	(void)state;
	assert_int_equal(pipe(go), 0);
	for (i = 0; i < N; i++) {
		assert_true((pid[i] = fork()) >= 0);
		if (pid[i] == 0) {
			ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
			ratectl_http_request *r;
			ratectl_http *h;
			ratectl *led;
			int rc = 1;

			close(go[1]);
			/* the ledger opened and the request begun before the
			 * start, so that they race on making the budgets */
			if (ratectl_open(&led, dir, NULL) != 0)
				_exit(2);
			o.config_text = race_text;
			o.config_len = sizeof race_text - 1;
			o.ledger = led;
			if (ratectl_http_open(&h, &o) != 0)
				_exit(2);
			r = begin_tenant(h, "zoe");
			if (read(go[0], &c, 1) == 0 && ratectl_http_admit(r, 5 * SEC) == 0) {
				ratectl_http_response_status(r, 200);
				rc = ratectl_http_request_end(r, NULL) == 0 ? 0 : 3;
			}
			ratectl_http_request_free(r);
			ratectl_http_close(h);
			ratectl_close(led);
			_exit(rc);
		}
	}
	close(go[0]);
	close(go[1]);                           /* all go */
	for (i = 0; i < N; i++) {
		assert_int_equal(waitpid(pid[i], &st, 0), pid[i]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	assert_int_equal(ratectl_open(&l, dir, NULL), 0);
	assert_int_equal(ratectl_budget_get(l, "user-zoe", &bi), 0);
	assert_int_equal(bi.counters.admitted, N);
	assert_string_equal(bi.config.origin, "user-*");
	assert_int_equal(bi.config.weight, 1);
	assert_int_equal(ratectl_budget_get(l, "openai", &bi), 0);
	assert_int_equal(bi.counters.admitted, N);
	ratectl_close(l);
	tmp_ledger_rm(dir);
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
		cmocka_unit_test(test_templates_in_the_config),
		cmocka_unit_test(test_templates_refused),
		cmocka_unit_test_setup_teardown(test_tenant_created_on_first_use, setup_tenant,
		                                teardown_tenant),
		cmocka_unit_test_setup_teardown(test_tenant_exists_already, setup_tenant,
		                                teardown_tenant),
		cmocka_unit_test_setup_teardown(test_tenant_all_or_none, setup_tenant,
		                                teardown_tenant),
		cmocka_unit_test_setup_teardown(test_tenant_expired_then_made_again,
		                                setup_tenant, teardown_tenant),
		cmocka_unit_test_setup_teardown(test_tenant_from_key, setup_tenant,
		                                teardown_tenant),
		cmocka_unit_test_setup_teardown(test_tenant_header_values, setup_tenant,
		                                teardown_tenant),
		cmocka_unit_test_setup_teardown(test_tags, setup_tenant, teardown_tenant),
		cmocka_unit_test(test_tenant_made_by_many_processes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
