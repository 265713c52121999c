/*
 * bench_cache.c - section 13: the host-wide response cache.
 *
 * What a hit costs, without HTTP (rows interleaved, as bench_http): begin
 * (URL match, and the body's canonical key: jcanon.c, keys sorted,
 * SHA-256) + admit (a read transaction on the cache's environment, the
 * answer copied out) + the cached response + free; against the bare
 * copy of the answer and against a request the policy sends (try +
 * response + end, no cache).  Target: a hit within a few microseconds
 * (5) plus the copy.
 *
 * Then the repeated-prompt run: PROCS processes send 500 requests in all
 * over 20 distinct prompts through libratectl-http and libcurl to the
 * fake provider (loopback); the provider's own count says how many
 * reached it.  Target: 20.
 */
#include <curl/curl.h>

#include "bench.h"
#include "ratectl_http.h"

#define ROUNDS 20
#define PROCS 8
#define ASKED 500
#define PROMPTS 20

static const char conf_fmt[] =
	"[llm]\n"
	"match = %s\n"
	"requests = 1000000000/s\n"
	"tokens = 1000000000/s\n"
	"cache = 1h\n"
	"cache_size = 256M\n"
	"cache_entry_max = 1M\n"
	"[nocache]\n"
	"match = nocache.example.com\n"
	"requests = 1000000000/s\n"
	"tokens = 1000000000/s\n";

static const char req_body[] =
	"{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"max_tokens\":256,\"messages\":["
	"{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
	"{\"role\":\"user\",\"content\":\"Summarise the following paragraph in one "
	"sentence: rate limits are shared by every process on a host.\"}]}";

static const ratectl_http_header req_headers[] = {
	{ "Authorization", "Bearer sk-bench-0123456789abcdefghijklmnopqrstuvwxyz" },
	{ "Content-Type", "application/json" },
};

typedef struct cache_ctx {
	ratectl_http *http;
	const char *url;
	char *answer;              /* what the provider answered: the copy */
	size_t len;
	char *sink;
} cache_ctx;

static void hit_op(void *arg)
{
	cache_ctx *c = arg;
	ratectl_http_request *req;
	ratectl_http_local loc;
	int rc;

	BENCH_CHECK(ratectl_http_request_begin(&req, c->http, "POST", c->url, req_headers,
	                                       2, req_body, sizeof req_body - 1, 0));
	if (!req)
		bench_die("the benchmark's request matched no budget");
	if ((rc = ratectl_http_admit(req, 0)) != RATECTL_HTTP_CACHED)
		bench_die("a hit was expected: %s", ratectl_http_strerror(rc));
	BENCH_CHECK(ratectl_http_cached_response(req, &loc));
	if (loc.body_len != c->len)
		bench_die("the cached answer has %zu bytes, not %zu", loc.body_len, c->len);
	ratectl_http_request_free(req);
}

static void copy_op(void *arg)
{
	cache_ctx *c = arg;

	memcpy(c->sink, c->answer, c->len);
	__asm__ volatile("" : : "r"(c->sink) : "memory");
}

static void sent_op(void *arg)
{
	cache_ctx *c = arg;
	ratectl_http_request *req;
	int64_t wait;

	BENCH_CHECK(ratectl_http_request_begin(&req, c->http, "POST",
	                                       "https://nocache.example.com/v1/chat/completions",
	                                       req_headers, 2, req_body,
	                                       sizeof req_body - 1, 0));
	BENCH_CHECK(ratectl_http_try(req, &wait));
	BENCH_CHECK(ratectl_http_response_status(req, 200));
	BENCH_CHECK(ratectl_http_response_header(req, "content-type", "application/json"));
	BENCH_CHECK(ratectl_http_response_body(req, c->answer, 1024));
	BENCH_CHECK(ratectl_http_request_end(req, NULL));
	ratectl_http_request_free(req);
}

/* Store c->answer for the benchmark's request (a miss, then its end). */
static void store(cache_ctx *c)
{
	ratectl_http_request *req;
	int rc;

	BENCH_CHECK(ratectl_http_request_begin(&req, c->http, "POST", c->url, req_headers,
	                                       2, req_body, sizeof req_body - 1, 0));
	if ((rc = ratectl_http_admit(req, 0)) != 0)
		bench_die("the first request was not sent: %s", ratectl_http_strerror(rc));
	BENCH_CHECK(ratectl_http_response_status(req, 200));
	BENCH_CHECK(ratectl_http_response_header(req, "content-type", "application/json"));
	BENCH_CHECK(ratectl_http_response_body(req, c->answer, c->len));
	BENCH_CHECK(ratectl_http_response_complete(req));
	BENCH_CHECK(ratectl_http_request_end(req, NULL));
	ratectl_http_request_free(req);
}

/* ---- the repeated-prompt run ------------------------------------------- */

struct sink {
	ratectl_http_request *req;
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	ratectl_http_response_body(((struct sink *)arg)->req, p, sz * n);
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	char name[64], value[256];
	size_t len = sz * n, k;
	const char *colon = memchr(p, ':', len);

	if (colon && (size_t)(colon - p) < sizeof name) {
		memcpy(name, p, (size_t)(colon - p));
		name[colon - p] = '\0';
		for (colon++; colon < p + len && *colon == ' '; colon++)
			;
		k = (size_t)(p + len - colon);
		while (k && (colon[k - 1] == '\r' || colon[k - 1] == '\n'))
			k--;
		if (k < sizeof value) {
			memcpy(value, colon, k);
			value[k] = '\0';
			ratectl_http_response_header(((struct sink *)arg)->req, name, value);
		}
	}
	return len;
}

/* One process's share of the run: counts into shared[0] (sent) and [1]
 * (answered from the cache). */
static void client(const char *conf, const char *ledger, const char *url, int id,
                   long *counts)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	struct curl_slist *hl = NULL;
	ratectl_http *h;
	CURL *e;
	int k;

	o.config_text = conf;
	o.config_len = strlen(conf);
	o.ledger_dir = ledger;
	BENCH_CHECK(ratectl_http_open(&h, &o));
	if (!(e = curl_easy_init()))
		bench_die("curl_easy_init failed");
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Authorization: Bearer sk-bench");
	for (k = id; k < ASKED; k += PROCS) {
		char body[160];
		struct sink s;
		long code = 0;
		CURLcode cc;
		int rc;

		snprintf(body, sizeof body, "{\"model\":\"m\",\"temperature\":0,\"messages\":"
		         "[{\"role\":\"user\",\"content\":\"prompt %d\"}]}", k % PROMPTS);
		BENCH_CHECK(ratectl_http_request_begin(&s.req, h, "POST", url, req_headers,
		                                       1, body, strlen(body), 0));
		if (!s.req)
			bench_die("the run's request matched no budget");
		rc = ratectl_http_admit(s.req, 30 * BENCH_SEC);
		if (rc == RATECTL_HTTP_CACHED) {
			__atomic_add_fetch(&counts[1], 1, __ATOMIC_SEQ_CST);
			ratectl_http_request_free(s.req);
			continue;
		}
		if (rc != 0)
			bench_die("admission: %s", ratectl_http_strerror(rc));
		curl_easy_reset(e);
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
		curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(e, CURLOPT_HEADERDATA, &s);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
		cc = curl_easy_perform(e);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		ratectl_http_response_status(s.req, cc == CURLE_OK ? (int)code : 0);
		if (cc == CURLE_OK)
			ratectl_http_response_complete(s.req);
		ratectl_http_request_end(s.req, NULL);
		ratectl_http_request_free(s.req);
		__atomic_add_fetch(&counts[0], 1, __ATOMIC_SEQ_CST);
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(e);
	ratectl_http_close(h);
}

static size_t keep(char *p, size_t sz, size_t n, void *arg)
{
	size_t len = strlen(arg), m = sz * n;

	if (len + m < 1024) {
		memcpy((char *)arg + len, p, m);
		((char *)arg)[len + m] = '\0';
	}
	return m;
}

/* The provider's own count of requests (GET /stats). */
static long provider_count(const char *base)
{
	char url[160], out[1024] = "";
	const char *p;
	CURL *e = curl_easy_init();

	snprintf(url, sizeof url, "%s/stats", base);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)out);
	if (curl_easy_perform(e) != CURLE_OK)
		bench_die("GET %s failed", url);
	curl_easy_cleanup(e);
	if (!(p = strstr(out, "\"requests\":")))
		bench_die("/stats said no count: %s", out);
	return strtol(p + 11, NULL, 10);
}

static void repeated(const char *b, const char *dir)
{
	char fp[PATH_MAX], portf[PATH_MAX], ledger[PATH_MAX], port[16] = "";
	char base[64], url[128], match[64], conf[1024];
	long *counts = bench_shared(2 * sizeof(long)), seen;
	pid_t prov, kids[PROCS];
	int64_t t0, t1;
	int i;
	FILE *f;
	bench_row row;

	bench_path(fp, sizeof fp, b, "ratectl-fakeprov");
	bench_path(portf, sizeof portf, dir, "port");
	bench_path(ledger, sizeof ledger, dir, "ledger-run");
	if ((prov = fork()) == 0) {
		execl(fp, fp, "--port", "0", "--port-file", portf, "--rps", "100000",
		      "--tpm", "1000000000", "--latency", "20ms", "--max-seconds", "120",
		      "--quiet", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200 && !port[0]; i++) {
		struct timespec t = { 0, 25 * BENCH_MS };

		nanosleep(&t, NULL);    /* waiting for another program to start */
		if ((f = fopen(portf, "r"))) {
			if (!fgets(port, sizeof port, f))
				port[0] = '\0';
			fclose(f);
		}
	}
	if (!port[0])
		bench_die("the fake provider did not start (%s)", fp);
	port[strcspn(port, "\n")] = '\0';
	snprintf(base, sizeof base, "http://127.0.0.1:%s", port);
	snprintf(url, sizeof url, "%s/v1/chat/completions", base);
	snprintf(match, sizeof match, "127.0.0.1:%s/v1", port);
	snprintf(conf, sizeof conf, conf_fmt, match);
	t0 = bench_now();
	for (i = 0; i < PROCS; i++)
		if ((kids[i] = fork()) == 0) {
			client(conf, ledger, url, i, counts);
			_exit(0);
		}
	bench_reap(kids, PROCS, "a client of the repeated-prompt run");
	t1 = bench_now();
	seen = provider_count(base);
	kill(prov, SIGTERM);
	waitpid(prov, NULL, 0);

	printf("\n   repeated prompts: %d processes ask %d prompts %d times in all, each\n"
	       "   sent through libratectl-http and libcurl to the fake provider (20 ms)\n",
	       PROCS, PROMPTS, ASKED);
	printf("     asked %d; the provider saw %ld (target %d) %s; answered from the\n"
	       "     cache %ld (%.1f%% of requests saved); %.2f s in all\n", ASKED, seen,
	       PROMPTS, bench_verdict(seen == PROMPTS), counts[1],
	       100.0 * (double)(ASKED - seen) / ASKED, (double)(t1 - t0) / BENCH_SEC);
	row = bench_row_begin("cache", "repeated_prompts");
	bench_row_int(&row, "processes", PROCS);
	bench_row_int(&row, "asked", ASKED);
	bench_row_int(&row, "prompts", PROMPTS);
	bench_row_int(&row, "provider_saw", seen);
	bench_row_int(&row, "sent", counts[0]);
	bench_row_int(&row, "from_cache", counts[1]);
	bench_row_int(&row, "saved", ASKED - seen);
	bench_row_num(&row, "seconds", (double)(t1 - t0) / BENCH_SEC);
	bench_row_int(&row, "target_provider_saw", PROMPTS);
	bench_row_str(&row, "verdict", bench_verdict(seen == PROMPTS));
	bench_row_end(&row);
}

int main(void)
{
	size_t ops = (size_t)bench_env_long("RATECTL_BENCH_OPS", 100000, 1000, 100000000);
	const char *b = getenv("B") ? getenv("B") : "build";
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;
	char dir[PATH_MAX], ldir[PATH_MAX], conf[1024], m[32], p[32], a[32];
	const char *base = bench_base(0);
	static const size_t sizes[2] = { 1024, 64 * 1024 };
	bench_variant v[5];
	cache_ctx c[2];
	cpu_set_t cpus;
	double timer;
	int cpu, j;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	cpu = bench_pin(&cpus);
	timer = bench_timer_cost();
	bench_tmpdir(dir, sizeof dir, base, "cache");
	bench_path(ldir, sizeof ldir, dir, "ledger");
	snprintf(conf, sizeof conf, conf_fmt, "api.example.com/v1");
	o.config_text = conf;
	o.config_len = strlen(conf);
	o.ledger_dir = ldir;
	for (j = 0; j < 2; j++) {
		char url[96];

		snprintf(url, sizeof url, "https://api.example.com/v1/chat/completions?s=%zu",
		         sizes[j]);
		BENCH_CHECK(ratectl_http_open(&c[j].http, &o));
		c[j].url = strdup(url);
		c[j].len = sizes[j];
		c[j].answer = malloc(sizes[j]);
		c[j].sink = malloc(sizes[j]);
		memset(c[j].answer, 'a', sizes[j]);
		store(&c[j]);
	}
	v[0] = (bench_variant){ "hit_1k", "hit, 1 KiB answer: begin .. free",
	                        hit_op, &c[0], ops, { 0, 0, 0, 0 } };
	v[1] = (bench_variant){ "copy_1k", "... its copy alone (memcpy 1 KiB)",
	                        copy_op, &c[0], ops, { 0, 0, 0, 0 } };
	v[2] = (bench_variant){ "hit_64k", "hit, 64 KiB answer: begin .. free",
	                        hit_op, &c[1], ops, { 0, 0, 0, 0 } };
	v[3] = (bench_variant){ "copy_64k", "... its copy alone (memcpy 64 KiB)",
	                        copy_op, &c[1], ops, { 0, 0, 0, 0 } };
	v[4] = (bench_variant){ "sent_uncached", "a request sent, no cache: begin .. end",
	                        sent_op, &c[0], ops, { 0, 0, 0, 0 } };
	bench_measure(v, 5, ROUNDS, timer);

	printf("\n13. The response cache: %zu timed requests per row, rows interleaved in\n"
	       "   %d rounds, on CPU %d, %s (%s); a hit is begin (match, canonical key of a\n"
	       "   %zu-byte JSON body) + admit (a read transaction on DIR/cache, the\n"
	       "   answer copied) + the cached response + free\n",
	       ops, ROUNDS, cpu, bench_fs_name(base), base, sizeof req_body - 1);
	printf("     %-42s %10s %10s %10s\n", "", "median", "p99", "past copy");
	for (j = 0; j < 5; j++) {
		bench_row row = bench_row_begin("cache", v[j].key);
		double past = j == 0 || j == 2 ? v[j].st.median - v[j + 1].st.median : -1;

		printf("     %-42s %10s %10s", v[j].label,
		       bench_fmt_ns(m, sizeof m, v[j].st.median),
		       bench_fmt_ns(p, sizeof p, v[j].st.p99));
		bench_row_str(&row, "fs", bench_fs_name(base));
		bench_row_num(&row, "median_ns", v[j].st.median);
		bench_row_num(&row, "p99_ns", v[j].st.p99);
		bench_row_int(&row, "ops", (long long)v[j].st.n);
		if (past >= 0) {
			printf(" %10s   < 5 us %s", bench_fmt_ns(a, sizeof a, past),
			       bench_verdict(past < 5000.0));
			bench_row_num(&row, "past_copy_ns", past);
			bench_row_num(&row, "target_past_copy_below_ns", 5000.0);
			bench_row_str(&row, "verdict", bench_verdict(past < 5000.0));
		}
		printf("\n");
		bench_row_end(&row);
	}
	for (j = 0; j < 2; j++)
		ratectl_http_close(c[j].http);
	bench_unpin(&cpus);
	repeated(b, dir);
	bench_rmtree(dir);
	curl_global_cleanup();
	return 0;
}
