/*
 * bench_http.c - what the HTTP policy (libratectl-http) adds to a request,
 * without any HTTP: one request's whole life through the public API,
 * next to the bare admission it is built on, measured in the same run on
 * the same tmpfs ledger, taking turns (bench_measure(), as bench_admit).
 *
 *   policy: ratectl_http_request_begin (URL match, model, key id, estimate)
 *           + ratectl_http_try + response status 200 + the six OpenAI
 *           x-ratelimit-* headers and content-type + a JSON chat completion
 *           body with usage + ratectl_http_request_end (learn the windows,
 *           release with the usage) + ratectl_http_request_free
 *   bare:   ratectl_try + ratectl_release (no cap, no count)
 *   and the policy's request again without the rate-limit headers (each
 *   window learned is one ratectl_observe_window() transaction).
 *
 * The budget never binds (bench_budget_huge's limits): only the cost of
 * deciding is measured.  The headers say more is left than the ledger
 * thinks, so they are read and matched to their windows but change
 * nothing that would slow later rows.
 */
#include "bench.h"
#include "ratectl_http.h"

#define ROUNDS 20

static const char conf_text[] =
	"[openai]\n"
	"match = api.openai.com/v1\n"
	"requests = 1000000000/s\n"
	"tokens = 1000000000/s\n";

static const char url[] = "https://api.openai.com/v1/chat/completions";

static const char req_body[] =
	"{\"model\":\"gpt-4o-mini\",\"max_tokens\":256,\"messages\":["
	"{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
	"{\"role\":\"user\",\"content\":\"Summarise the following paragraph in one "
	"sentence: rate limits are shared by every process on a host.\"}]}";

static const ratectl_http_header req_headers[] = {
	{ "Authorization", "Bearer sk-bench-0123456789abcdefghijklmnopqrstuvwxyz" },
	{ "Content-Type", "application/json" },
};

/* What api.openai.com sends with a chat completion. */
static const ratectl_http_header resp_headers[] = {
	{ "content-type", "application/json" },
	{ "x-ratelimit-limit-requests", "1000000000" },
	{ "x-ratelimit-limit-tokens", "1000000000" },
	{ "x-ratelimit-remaining-requests", "999999999" },
	{ "x-ratelimit-remaining-tokens", "999999000" },
	{ "x-ratelimit-reset-requests", "6ms" },
	{ "x-ratelimit-reset-tokens", "1ms" },
};

static const char resp_body[] =
	"{\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion\","
	"\"created\":1741569952,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{"
	"\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Every process "
	"on a host shares one rate limit.\",\"refusal\":null,\"annotations\":[]},"
	"\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":41,"
	"\"completion_tokens\":9,\"total_tokens\":50,\"prompt_tokens_details\":{"
	"\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{"
	"\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
	"\"rejected_prediction_tokens\":0}},\"service_tier\":\"default\","
	"\"system_fingerprint\":\"fp_06737a9306\"}";

typedef struct http_ctx {
	ratectl_http *http;
	ratectl *h;
	size_t nheaders;           /* of resp_headers: 1 is content-type alone */
} http_ctx;

static void policy_op(void *arg)
{
	http_ctx *c = arg;
	ratectl_http_request *req;
	ratectl_http_outcome out;
	int64_t wait;

	BENCH_CHECK(ratectl_http_request_begin(&req, c->http, "POST", url, req_headers, 2,
	                                       req_body, sizeof req_body - 1, 0));
	if (!req)
		bench_die("the benchmark's request matched no budget");
	BENCH_CHECK(ratectl_http_try(req, &wait));
	BENCH_CHECK(ratectl_http_response_status(req, 200));
	BENCH_CHECK(ratectl_http_response_headers(req, resp_headers, c->nheaders));
	BENCH_CHECK(ratectl_http_response_body(req, resp_body, sizeof resp_body - 1));
	BENCH_CHECK(ratectl_http_request_end(req, &out));
	if (!out.usage_known || out.tokens != 50 || out.windows != (c->nheaders > 1 ? 2 : 0))
		bench_die("the policy read usage %llu (known %d) and %u windows, "
		          "expected 50 and %d", (unsigned long long)out.tokens,
		          out.usage_known, out.windows, c->nheaders > 1 ? 2 : 0);
	ratectl_http_request_free(req);
}

static void bare_op(void *arg)
{
	http_ctx *c = arg;
	ratectl_cost cost = { .requests = 1, .tokens = 100 };
	ratectl_lease lease;

	BENCH_CHECK(ratectl_try(c->h, "bare", &cost, &lease, NULL));
	BENCH_CHECK(ratectl_release(c->h, &lease, RATECTL_UNKNOWN));
}

int main(void)
{
	size_t ops = (size_t)bench_env_long("RATECTL_BENCH_OPS", 200000, 1000, 100000000);
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	ratectl_budget huge = bench_budget_huge(0);
	char dir[PATH_MAX], ldir[PATH_MAX], m[32], p[32], a[32];
	const char *base = bench_base(0);
	bench_variant v[3];
	cpu_set_t cpus;
	http_ctx c, plain;
	double timer, added;
	int cpu, j;

	cpu = bench_pin(&cpus);
	timer = bench_timer_cost();
	bench_tmpdir(dir, sizeof dir, base, "http");
	bench_path(ldir, sizeof ldir, dir, "ledger");
	BENCH_CHECK(ratectl_open(&c.h, ldir, NULL));
	BENCH_CHECK(ratectl_budget_set(c.h, "bare", &huge, 0));
	o.config_text = conf_text;
	o.config_len = sizeof conf_text - 1;
	o.ledger = c.h;
	BENCH_CHECK(ratectl_http_open(&c.http, &o));
	c.nheaders = sizeof resp_headers / sizeof resp_headers[0];
	plain = c;
	plain.nheaders = 1;

	v[0] = (bench_variant){ "bare", "ratectl_try + ratectl_release",
	                        bare_op, &c, ops, { 0, 0, 0, 0 } };
	v[1] = (bench_variant){ "policy", "HTTP policy: begin .. end, no HTTP",
	                        policy_op, &c, ops, { 0, 0, 0, 0 } };
	v[2] = (bench_variant){ "policy_nolimits", "... the same without x-ratelimit-*",
	                        policy_op, &plain, ops, { 0, 0, 0, 0 } };
	bench_measure(v, 3, ROUNDS, timer);
	added = v[1].st.median - v[0].st.median;

	printf("\n7. The HTTP policy per request, without HTTP: %zu timed requests per row,\n"
	       "   rows interleaved in %d rounds, on CPU %d, %s (%s); a request is\n"
	       "   begin (URL, model, key id, estimate) + try + status 200 + 7 OpenAI\n"
	       "   headers + a 1 KiB JSON body with usage + end (learn, release) + free\n",
	       ops, ROUNDS, cpu, bench_fs_name(base), base);
	printf("     %-42s %10s %10s %10s\n", "", "median", "p99", "added");
	for (j = 0; j < 3; j++) {
		bench_row row = bench_row_begin("http", v[j].key);

		printf("     %-42s %10s %10s", v[j].label,
		       bench_fmt_ns(m, sizeof m, v[j].st.median),
		       bench_fmt_ns(p, sizeof p, v[j].st.p99));
		bench_row_str(&row, "fs", bench_fs_name(base));
		bench_row_str(&row, "dir", base);
		bench_row_num(&row, "median_ns", v[j].st.median);
		bench_row_num(&row, "p99_ns", v[j].st.p99);
		bench_row_num(&row, "mean_ns", v[j].st.mean);
		bench_row_int(&row, "ops", (long long)v[j].st.n);
		if (j == 2) {
			printf(" %10s", bench_fmt_ns(a, sizeof a, v[2].st.median - v[0].st.median));
			bench_row_num(&row, "added_ns", v[2].st.median - v[0].st.median);
		}
		if (j == 1) {
			/* "A few microseconds": what the policy adds over the
			 * admission it makes anyway. */
			printf(" %10s   < 5 us %s", bench_fmt_ns(a, sizeof a, added),
			       bench_verdict(added < 5000.0));
			bench_row_num(&row, "added_ns", added);
			bench_row_num(&row, "ratio_to_bare", v[1].st.median / v[0].st.median);
			bench_row_num(&row, "target_added_below_ns", 5000.0);
			bench_row_str(&row, "verdict", bench_verdict(added < 5000.0));
		}
		printf("\n");
		bench_row_end(&row);
	}
	ratectl_http_close(c.http);
	ratectl_close(c.h);
	bench_unpin(&cpus);
	bench_rmtree(dir);
	return 0;
}
