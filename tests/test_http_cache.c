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
#include <sys/prctl.h>
#include <sys/resource.h>
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
	"requests = 100000/min\n"
	"[big]\n"
	"match = big.example.com\n"
	"requests = 100000/min\n"
	"cache = 10m\n"
	"cache_entry_max = 1M\n"
	"retry_budget = 100%\n"
	"[tight]\n"
	"match = tight.example.com\n"
	"requests = 100000/min\n"
	"concurrency = 1\n"
	"cache = 10m\n";

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

/* The value of header name of a cached answer, or "". */
static const char *hval(const ratectl_http_local *loc, const char *name)
{
	size_t i;

	for (i = 0; i < loc->nheaders; i++)
		if (strcmp(loc->headers[i].name, name) == 0)
			return loc->headers[i].value;
	return "";
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

/* ---- expiry and eviction -------------------------------------------------- */

static void test_expiry(void **state)
{
	struct fx *f = *state;
	ratectl_http_cache_stats s;

	assert_int_equal(ask(f->h, URL, key1, det, 200, "{\"v\":1}", 1, NULL, 0), 0);
	fake_real += 599 * SEC;
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	fake_real += 1 * SEC;             /* 10 minutes: gone */
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{\"v\":2}", 1, NULL, 0), 0);
	s = stats_of(f->h, "llm");
	assert_int_equal(s.expired, 1);
	assert_int_equal(s.entries, 1);
	assert_int_equal(s.stores, 2);
	/* a clock set back far: the entry is not trusted */
	fake_real -= 3600 * SEC;
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{\"v\":3}", 1, NULL, 0), 0);
	fake_real += 3600 * SEC;
}

static void test_eviction(void **state)
{
	struct fx *f = *state;
	ratectl_http_cache_stats s;
	char body[128], answer[4000];
	int i;

	memset(answer, 'a', sizeof answer - 1);
	answer[sizeof answer - 1] = '\0';
	/* 64K of cache_size holds 15 answers of about 4 KiB */
	for (i = 0; i < 40; i++) {
		snprintf(body, sizeof body, "{\"temperature\":0,\"n\":%d}", i);
		fake_real += SEC;
		assert_int_equal(ask(f->h, URL, key1, body, 200, answer, 1, NULL, 0), 0);
		s = stats_of(f->h, "llm");
		assert_true(s.bytes <= 64 * 1024);
	}
	s = stats_of(f->h, "llm");
	assert_int_equal(s.stores, 40);
	assert_int_equal(s.evictions + s.entries, 40);
	assert_true(s.entries >= 14 && s.entries <= 16);
	/* the oldest went first, the newest is there */
	assert_int_equal(ask(f->h, URL, key1, "{\"temperature\":0,\"n\":39}", 200, "{}", 1,
	                     NULL, 0), RATECTL_HTTP_CACHED);
	assert_int_equal(ask(f->h, URL, key1, "{\"temperature\":0,\"n\":0}", 200, "{}", 1,
	                     NULL, 0), 0);
	/* clear: one budget, then counters */
	s = stats_of(f->h, "llm");
	assert_int_equal(ratectl_http_cache_clear(f->h, "emb", 0), 0);
	assert_int_equal(ratectl_http_cache_clear(f->h, "llm", 0), (int64_t)s.entries);
	s = stats_of(f->h, "llm");
	assert_int_equal(s.entries, 0);
	assert_int_equal(s.bytes, 0);
	assert_int_equal(s.stores, 41);
	assert_int_equal(ratectl_http_cache_clear(f->h, NULL, 1), 0);
	s = stats_of(f->h, "llm");
	assert_int_equal(s.stores, 0);
	assert_int_equal(ask(f->h, URL, key1, "{\"temperature\":0,\"n\":39}", 200, "{}", 1,
	                     NULL, 0), 0);
	assert_int_equal(ratectl_http_cache_clear(f->h, "no/such", 0), -EINVAL);
}

/* ---- coalescing ----------------------------------------------------------- */

/* What the children share: how many requests were sent, how many were
 * answered from the cache. */
struct shared {
	int sent, cached, coalesced, other, asking;
};

static struct shared *shared_new(void)
{
	struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
	                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof *sh);
	return sh;
}

/* A child's request: when it is the one sent, it waits for the parent's
 * byte on go before answering, so that the others find it fetching. */
static void child_ask(const char *dir, const char *body, struct shared *sh, int go)
{
	ratectl_http *h;
	ratectl_http_request *r;
	ratectl_http_local loc;
	char c;
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlives a failed test */
	h = open_h(dir, conf_text);
	if (ratectl_http_request_begin(&r, h, "POST", URL, key1, 1, body, strlen(body), 0))
		_exit(3);
	__atomic_add_fetch(&sh->asking, 1, __ATOMIC_SEQ_CST);
	rc = ratectl_http_admit(r, 20 * SEC);
	if (rc == 0) {
		__atomic_add_fetch(&sh->sent, 1, __ATOMIC_SEQ_CST);
		if (go >= 0 && read(go, &c, 1) != 1)
			_exit(4);
		ratectl_http_response_status(r, 200);
		ratectl_http_response_body(r, "{\"ok\":1}", 8);
		ratectl_http_response_complete(r);
		ratectl_http_request_end(r, NULL);
	} else if (rc == RATECTL_HTTP_CACHED &&
	           ratectl_http_cached_response(r, &loc) == 0 && loc.body_len == 8 &&
	           memcmp(loc.body, "{\"ok\":1}", 8) == 0) {
		__atomic_add_fetch(strcmp(hval(&loc, "x-ratectl-cache"), "coalesced") == 0 ? &sh->coalesced :
		                   &sh->cached, 1, __ATOMIC_SEQ_CST);
	} else {
		__atomic_add_fetch(&sh->other, 1, __ATOMIC_SEQ_CST);
	}
	ratectl_http_request_free(r);
	ratectl_http_close(h);
	_exit(0);
}

static void reap(int n)
{
	int st, i;

	for (i = 0; i < n; i++) {
		assert_true(wait(&st) > 0);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
}

/* 32 processes ask for one new answer at once: one is sent. */
static void test_stampede(void **state)
{
	struct fx *f = *state;
	ratectl_http_cache_stats s;
	struct shared *sh = shared_new();
	int go[2], i;

	assert_int_equal(pipe(go), 0);
	rh__cache_realtime = NULL;        /* children of real processes: real time */
	for (i = 0; i < 32; i++)
		if (fork() == 0) {
			close(go[1]);
			child_ask(f->dir, det, sh, go[0]);
		}
	close(go[0]);
	/* The one sent holds its answer until every other is about to ask:
	 * most wait for it (coalesced), the last may find it stored (hits);
	 * either way, one is sent. */
	while (__atomic_load_n(&sh->sent, __ATOMIC_SEQ_CST) == 0 ||
	       __atomic_load_n(&sh->asking, __ATOMIC_SEQ_CST) < 32)
		usleep(1000);
	assert_int_equal(write(go[1], "g", 1), 1);
	reap(32);
	close(go[1]);
	assert_int_equal(sh->sent, 1);
	assert_int_equal(sh->other, 0);
	assert_int_equal(sh->cached + sh->coalesced, 31);
	s = stats_of(f->h, "llm");
	assert_int_equal(s.misses, 1);
	assert_int_equal(s.hits + s.coalesced, 31);
	print_message("stampede of 32: 1 sent, %d waited for it, %d found it stored\n",
	              sh->coalesced, sh->cached);
	munmap(sh, sizeof *sh);
	rh__cache_realtime = test_realtime;
}

/* A fetcher killed: a waiter takes the fetch over, long before its own
 * deadline (20 s) and the fetch's (10 min). */
static void test_fetcher_killed(void **state)
{
	struct fx *f = *state;
	struct shared *sh = shared_new();
	int go[2], st;
	pid_t a, b;
	int64_t t0;

	assert_int_equal(pipe(go), 0);
	rh__cache_realtime = NULL;
	if ((a = fork()) == 0) {
		close(go[1]);
		child_ask(f->dir, det, sh, go[0]);    /* never gets its byte */
	}
	while (__atomic_load_n(&sh->sent, __ATOMIC_SEQ_CST) == 0)
		usleep(1000);
	t0 = mono();
	if ((b = fork()) == 0) {
		close(go[1]);
		child_ask(f->dir, det, sh, -1);
	}
	kill(a, SIGKILL);
	assert_int_equal(waitpid(a, &st, 0), a);
	assert_int_equal(waitpid(b, &st, 0), b);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(sh->sent, 2);        /* b fetched in a's place */
	assert_int_equal(sh->other, 0);
	assert_true(mono() - t0 < 10 * SEC);
	print_message("the waiter fetched %lld ms after the fetcher was killed\n",
	              (long long)((mono() - t0) / MSEC));
	/* its answer is stored */
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	close(go[0]);
	close(go[1]);
	munmap(sh, sizeof *sh);
	rh__cache_realtime = test_realtime;
}

/* Is pid asleep in futex(2)?  (/proc/PID/syscall names the system call a
 * blocked process is in: 202 on x86-64.) */
static int in_futex(pid_t pid)
{
	char path[64], buf[64] = "";
	FILE *fp;

	snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
	if (!(fp = fopen(path, "r")))
		return 0;
	if (!fgets(buf, sizeof buf, fp))
		buf[0] = '\0';
	fclose(fp);
	return atoi(buf) == SYS_futex;
}

/*
 * The rows of the response cache in lib/wait.c's table: a fetch that ends
 * wakes its key's waiters, whether it stored an answer (they get it,
 * "coalesced") or not (one of them fetches).  A waiter's own looks are
 * made 30 s apart here, past its 10 s deadline: only the wake-up can let
 * it in.
 */
static void fetch_end_wakes(struct fx *f, int status, int want)
{
	struct shared *sh = shared_new();
	ratectl_http_request *a;
	int64_t t0;
	pid_t p;
	int st;

	rh__cache_realtime = NULL;
	assert_int_equal(ratectl_http_request_begin(&a, f->h, "POST", URL, key2, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(a, 0), 0);               /* fetching */
	if ((p = fork()) == 0) {
		ratectl_http *h = open_h(f->dir, conf_text);
		ratectl_http_request *b;
		ratectl_http_local loc;
		int rc;

		if (ratectl_http_request_begin(&b, h, "POST", URL, key2, 1, det,
		                               strlen(det), 0) != 0)
			_exit(3);
		rc = ratectl_http_admit(b, 10 * SEC);
		if (rc == RATECTL_HTTP_CACHED && ratectl_http_cached_response(b, &loc) == 0 &&
		    strcmp(hval(&loc, "x-ratectl-cache"), "coalesced") == 0)
			sh->coalesced = 1;
		else if (rc == 0)
			sh->sent = 1;
		ratectl_http_request_free(b);
		ratectl_http_close(h);
		_exit(0);
	}
	t0 = mono();
	while (!in_futex(p) && mono() - t0 < 5 * SEC)
		usleep(1000);          /* until the child sleeps on the bucket */
	assert_true(in_futex(p));
	ratectl_http_response_status(a, status);
	ratectl_http_response_body(a, "{\"w\":1}", 7);
	ratectl_http_response_complete(a);
	assert_int_equal(ratectl_http_request_end(a, NULL), 0);
	ratectl_http_request_free(a);
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(want == RATECTL_HTTP_CACHED ? sh->coalesced : sh->sent, 1);
	assert_true(mono() - t0 < 8 * SEC);
	munmap(sh, sizeof *sh);
	rh__cache_realtime = test_realtime;
}

static void test_fetch_stored_wakes_waiters(void **state)
{
	int64_t slice = rh__cache_slice_ns;

	rh__cache_slice_ns = 30 * SEC;
	fetch_end_wakes(*state, 200, RATECTL_HTTP_CACHED);
	rh__cache_slice_ns = slice;
}

static void test_fetch_failed_wakes_waiters(void **state)
{
	int64_t slice = rh__cache_slice_ns;

	rh__cache_slice_ns = 30 * SEC;
	fetch_end_wakes(*state, 500, 0);
	rh__cache_slice_ns = slice;
}

/* Children that wait for the parent's fetch of url's det (with key2),
 * each answering 200 if it is sent: n of them, asleep in futex(2) before
 * this returns. */
static void waiters(struct fx *f, const char *url, int n, struct shared *sh, pid_t *pids)
{
	int64_t t0;
	int i;

	for (i = 0; i < n; i++)
		if ((pids[i] = fork()) == 0) {
			ratectl_http *h = open_h(f->dir, conf_text);
			ratectl_http_request *b;
			int rc;

			if (ratectl_http_request_begin(&b, h, "POST", url, key2, 1, det,
			                               strlen(det), 0) != 0 || !b)
				_exit(3);
			rc = ratectl_http_admit(b, 10 * SEC);
			if (rc == 0) {
				__atomic_add_fetch(&sh->sent, 1, __ATOMIC_SEQ_CST);
				ratectl_http_response_status(b, 200);
				ratectl_http_response_body(b, "{}", 2);
				ratectl_http_response_complete(b);
				ratectl_http_request_end(b, NULL);
			} else {
				__atomic_add_fetch(rc == RATECTL_HTTP_CACHED ? &sh->coalesced :
				                   &sh->other, 1, __ATOMIC_SEQ_CST);
			}
			ratectl_http_request_free(b);
			ratectl_http_close(h);
			_exit(0);
		}
	t0 = mono();
	for (i = 0; i < n; i++)
		while (!in_futex(pids[i]) && mono() - t0 < 5 * SEC)
			usleep(1000);      /* until each sleeps on the bucket */
	for (i = 0; i < n; i++)
		assert_true(in_futex(pids[i]));
}

static void reap_pids(const pid_t *pids, int n)
{
	int i, st;

	for (i = 0; i < n; i++) {
		assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
}

/* A fetch whose answer is too big to keep: the 4 that waited for it are
 * sent at once, uncached, not one after another (each would get an
 * answer as big); a request that comes later fetches anew. */
static void test_waiters_pass_after_unkept_answer(void **state)
{
	struct fx *f = *state;
	struct shared *sh = shared_new();
	ratectl_http_request *a;
	int64_t slice = rh__cache_slice_ns;
	pid_t pids[4];

	rh__cache_realtime = NULL;
	rh__cache_slice_ns = 30 * SEC;
	assert_int_equal(ratectl_http_request_begin(&a, f->h, "POST", URL, key2, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(a, 0), 0);
	waiters(f, URL, 4, sh, pids);
	{
		static char big[9000];

		memset(big, 'b', sizeof big);          /* cache_entry_max is 8K */
		ratectl_http_response_status(a, 200);
		ratectl_http_response_body(a, big, sizeof big);
		ratectl_http_response_complete(a);
	}
	assert_int_equal(ratectl_http_request_end(a, NULL), 0);
	ratectl_http_request_free(a);
	reap_pids(pids, 4);
	assert_int_equal(sh->sent, 4);            /* all of them, uncached */
	assert_int_equal(sh->coalesced + sh->other, 0);
	assert_int_equal(stats_of(f->h, "llm").stores, 0);
	/* a newcomer fetches, and its answer is kept */
	assert_int_equal(ask(f->h, URL, key2, det, 200, "{}", 1, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key2, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	rh__cache_slice_ns = slice;
	rh__cache_realtime = test_realtime;
	munmap(sh, sizeof *sh);
}

/* The fetcher cannot store (its data file may not grow: a full disk):
 * the fetch ends all the same, and those waiting for it go on at once,
 * not after their deadline. */
static void test_store_fails_fetch_ends(void **state)
{
	static const char url[] = "https://big.example.com/v1/chat/completions";
	struct fx *f = *state;
	struct shared *sh = shared_new();
	char path[512];
	struct stat st;
	int64_t slice = rh__cache_slice_ns, t0;
	pid_t p, pids[2];
	int go[2], back[2], stw;

	rh__cache_realtime = NULL;
	rh__cache_slice_ns = 30 * SEC;
	assert_int_equal(ask(f->h, url, key1, det, 200, "{}", 1, NULL, 0), 0);  /* made */
	snprintf(path, sizeof path, "%s/cache/data.mdb", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(back), 0);
	if ((p = fork()) == 0) {
		struct rlimit rl = { (rlim_t)st.st_size, (rlim_t)st.st_size };
		ratectl_http *h = open_h(f->dir, conf_text);
		ratectl_http_request *a;
		static char answer[600000];
		char c;

		prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlives a failed test */
		signal(SIGXFSZ, SIG_IGN);
		if (ratectl_http_request_begin(&a, h, "POST", url, key2, 1, det,
		                               strlen(det), 0) != 0 || ratectl_http_admit(a, 0) != 0)
			_exit(3);
		if (write(back[1], "f", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(4);
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(5);
		memset(answer, 'x', sizeof answer);
		ratectl_http_response_status(a, 200);
		ratectl_http_response_body(a, answer, sizeof answer);
		ratectl_http_response_complete(a);
		ratectl_http_request_end(a, NULL);
		ratectl_http_request_free(a);
		pause();               /* alive: its liveness lock held */
		_exit(0);
	}
	{
		char c;

		assert_int_equal(read(back[0], &c, 1), 1);
		assert_int_equal(c, 'f');
	}
	waiters(f, url, 2, sh, pids);
	t0 = mono();
	assert_int_equal(write(go[1], "g", 1), 1);
	reap_pids(pids, 2);
	assert_true(mono() - t0 < 8 * SEC);
	assert_int_equal(sh->other, 0);
	assert_true(sh->sent >= 1);
	kill(p, SIGKILL);
	assert_int_equal(waitpid(p, &stw, 0), p);
	close(go[0]);
	close(go[1]);
	close(back[0]);
	close(back[1]);
	rh__cache_slice_ns = slice;
	rh__cache_realtime = test_realtime;
	munmap(sh, sizeof *sh);
}

/* One request with a content type of len bytes: sent, then asked again.
 * Returns what the second admission said; *ct its content type. */
static int ctype_round(ratectl_http *h, size_t len, char *ct, size_t ctlen)
{
	char body[96], *type = malloc(len + 1);
	ratectl_http_request *r;
	ratectl_http_local loc;
	int rc;

	assert_non_null(type);
	memset(type, 'a', len);
	memcpy(type, "text/", len < 5 ? len : 5);
	type[len] = '\0';
	snprintf(body, sizeof body, "{\"temperature\":0,\"ct\":%zu}", len);
	assert_int_equal(ratectl_http_request_begin(&r, h, "POST", URL, key1, 1, body,
	                                            strlen(body), 0), 0);
	assert_int_equal(ratectl_http_admit(r, 0), 0);
	ratectl_http_response_status(r, 200);
	ratectl_http_response_header(r, "Content-Type", type);
	ratectl_http_response_body(r, "{}", 2);
	ratectl_http_response_complete(r);
	ratectl_http_request_end(r, NULL);
	ratectl_http_request_free(r);
	assert_int_equal(ratectl_http_request_begin(&r, h, "POST", URL, key1, 1, body,
	                                            strlen(body), 0), 0);
	rc = ratectl_http_admit(r, 0);
	ct[0] = '\0';
	if (rc == RATECTL_HTTP_CACHED) {
		assert_int_equal(ratectl_http_cached_response(r, &loc), 0);
		snprintf(ct, ctlen, "%s", hval(&loc, "content-type"));
	} else {
		ratectl_http_response_status(r, 200);
		ratectl_http_request_end(r, NULL);
	}
	ratectl_http_request_free(r);
	free(type);
	return rc;
}

/* A content type is kept whole (up to 255 bytes) or the answer is not
 * kept: 254, 255, 256 and 2550 bytes (longer than a header value the
 * policy reads, 1024: then there is none to keep). */
static void test_content_type_sizes(void **state)
{
	struct fx *f = *state;
	char ct[4096];

	assert_int_equal(ctype_round(f->h, 254, ct, sizeof ct), RATECTL_HTTP_CACHED);
	assert_int_equal(strlen(ct), 254);
	assert_int_equal(ctype_round(f->h, 255, ct, sizeof ct), RATECTL_HTTP_CACHED);
	assert_int_equal(strlen(ct), 255);
	assert_int_equal(ctype_round(f->h, 256, ct, sizeof ct), 0);
	assert_int_equal(ctype_round(f->h, 2550, ct, sizeof ct), RATECTL_HTTP_CACHED);
	assert_string_equal(ct, "");
}

/* Bodies around the key's 4 KiB stack buffer (4095, 4096, 4097 and
 * 40960 bytes): each cached under its own key, found again. */
static void test_body_sizes(void **state)
{
	static const size_t sizes[] = { 4095, 4096, 4097, 40960 };
	struct fx *f = *state;
	size_t i, k;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char *body = malloc(sizes[i] + 1);
		size_t pre = strlen("{\"temperature\":0,\"p\":\"");

		assert_non_null(body);
		memcpy(body, "{\"temperature\":0,\"p\":\"", pre);
		for (k = pre; k < sizes[i] - 2; k++)
			body[k] = (char)('a' + k % 26);
		memcpy(body + sizes[i] - 2, "\"}", 3);
		assert_int_equal(strlen(body), sizes[i]);
		assert_int_equal(cacheable(f->h, URL, body), 1);
		assert_int_equal(ask(f->h, URL, key1, body, 200, "{}", 1, NULL, 0), 0);
		assert_int_equal(ask(f->h, URL, key1, body, 200, "{}", 1, NULL, 0),
		                 RATECTL_HTTP_CACHED);
		free(body);
	}
}

/* Credentials in any header keep callers apart; other headers do not. */
static void test_credentials_apart(void **state)
{
	static const ratectl_http_header g1[] = { { "X-Goog-Api-Key", "one" },
	                                          { "X-Request-Id", "1" } };
	static const ratectl_http_header g2[] = { { "x-goog-api-key", "two" },
	                                          { "X-Request-Id", "1" } };
	static const ratectl_http_header g1b[] = { { "X-Goog-Api-Key", "one" },
	                                           { "X-Request-Id", "2" } };
	static const ratectl_http_header ck[] = { { "Cookie", "session=a" } };
	static const ratectl_http_header tok[] = { { "X-Auth-Token", "t1" } };
	char longname[700];
	ratectl_http_header lh[1] = { { longname, "v1" } };
	static const size_t lens[] = { 62, 63, 64, 640 };
	struct fx *f = *state;
	ratectl_http_request *r;
	int i;
	const ratectl_http_header *sets[] = { g1, g2, ck, tok };
	size_t ns[] = { 2, 2, 1, 1 };

	for (i = 0; i < 4; i++) {
		assert_int_equal(ratectl_http_request_begin(&r, f->h, "POST", URL, sets[i], ns[i],
		                                            det, strlen(det), 0), 0);
		assert_int_equal(ratectl_http_admit(r, 0), 0);            /* each a miss */
		ratectl_http_response_status(r, 200);
		ratectl_http_response_complete(r);
		ratectl_http_request_end(r, NULL);
		ratectl_http_request_free(r);
	}
	assert_int_equal(ratectl_http_request_begin(&r, f->h, "POST", URL, g1b, 2, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(r, 0), RATECTL_HTTP_CACHED);
	ratectl_http_request_free(r);
	/* credential headers with long names (62, 63, 64, 640 bytes): each
	 * value its own answer */
	for (i = 0; i < 4; i++) {
		memset(longname, 'x', lens[i]);
		memcpy(longname + lens[i] - 3, "key", 4);
		lh[0].value = "v1";
		assert_int_equal(ask(f->h, URL, lh, det, 200, "{}", 1, NULL, 0), 0);
		lh[0].value = "v2";
		assert_int_equal(ask(f->h, URL, lh, det, 200, "{}", 1, NULL, 0), 0);
		assert_int_equal(ask(f->h, URL, lh, det, 200, "{}", 1, NULL, 0),
		                 RATECTL_HTTP_CACHED);
	}
}

/* A second handle naming the ledger otherwise ("DIR/") shares the one
 * environment: the first handle's cache still works after it read. */
static void test_one_environment_per_directory(void **state)
{
	struct fx *f = *state;
	ratectl_http_cache_stats s;
	ratectl_http *b;
	char other[600];

	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, NULL, 0), 0);
	snprintf(other, sizeof other, "%s/", f->dir);
	b = open_h(other, conf_text);
	assert_int_equal(ratectl_http_cache_stats_read(b, "llm", &s, 1), 1);
	assert_int_equal(ask(b, URL, key1, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	ratectl_http_close(b);
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	assert_int_equal(stats_of(f->h, "llm").hits, 2);
}

/* An event loop's request waits for another's fetch without blocking. */
static void test_reserve_waits_for_fetch(void **state)
{
	struct fx *f = *state;
	ratectl_http_request *a, *b;
	ratectl_http_wait w;
	ratectl_http_local loc;
	int64_t wait_ns = 0;

	assert_int_equal(ratectl_http_request_begin(&a, f->h, "POST", URL, key1, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_request_begin(&b, f->h, "POST", URL, key1, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(a, 0), 0);               /* fetching */
	assert_int_equal(ratectl_http_try(b, &wait_ns), RATECTL_EPENDING);
	assert_true(wait_ns > 0 && wait_ns <= 20 * MSEC);
	assert_int_equal(ratectl_http_reserve(b, 5 * SEC, &w), RATECTL_EPENDING);
	assert_int_equal(w.fd, -1);
	assert_int_equal(w.fifo, 0);
	assert_true(w.wait_ns > 0 && w.wait_ns <= 20 * MSEC);
	assert_int_equal(ratectl_http_reserve_poll(b, &w), RATECTL_EPENDING);
	assert_int_equal(ratectl_http_admit(b, 0), RATECTL_HTTP_ESTATE);
	ratectl_http_response_status(a, 200);
	ratectl_http_response_body(a, "{\"x\":1}", 7);
	ratectl_http_response_complete(a);
	assert_int_equal(ratectl_http_request_end(a, NULL), 0);
	assert_int_equal(ratectl_http_reserve_poll(b, &w), RATECTL_HTTP_CACHED);
	assert_int_equal(ratectl_http_cached_response(b, &loc), 0);
	assert_int_equal(loc.body_len, 7);
	assert_string_equal(hval(&loc, "x-ratectl-cache"), "coalesced");
	assert_string_equal(hval(&loc, "content-type"), "");
	assert_string_equal(hval(&loc, "age"), "0");
	ratectl_http_request_free(a);
	ratectl_http_request_free(b);

	/* a fetch given up (freed unsent): the waiter fetches itself */
	assert_int_equal(ratectl_http_request_begin(&a, f->h, "POST", URL, key2, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_request_begin(&b, f->h, "POST", URL, key2, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(a, 0), 0);
	assert_int_equal(ratectl_http_reserve(b, 5 * SEC, &w), RATECTL_EPENDING);
	ratectl_http_request_free(a);
	assert_int_equal(ratectl_http_reserve_poll(b, &w), 0);
	ratectl_http_request_free(b);
	assert_int_equal(stats_of(f->h, "llm").stores, 1);
}

/* A fetch whose admission is refused for good is given up at once; a
 * try that is to be tried again keeps it. */
static void test_refused_fetch_given_up(void **state)
{
	static const char url[] = "https://tight.example.com/v1/chat/completions";
	static const char other[] = "{\"temperature\":0,\"n\":2}";
	struct fx *f = *state;
	ratectl_http_request *a, *b, *c;
	int64_t w;

	assert_int_equal(ratectl_http_request_begin(&a, f->h, "POST", url, key1, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(a, 0), 0);          /* holds the slot */
	assert_int_equal(ratectl_http_request_begin(&b, f->h, "POST", url, key1, 1, other,
	                                            strlen(other), 0), 0);
	assert_int_equal(ratectl_http_request_begin(&c, f->h, "POST", url, key1, 1, other,
	                                            strlen(other), 0), 0);
	/* a try: kept (c waits for b's answer) */
	assert_int_equal(ratectl_http_try(b, &w), RATECTL_EINFLIGHT);
	assert_int_equal(ratectl_http_try(c, &w), RATECTL_EPENDING);
	/* refused for good: given up, c fetches in its turn */
	assert_int_equal(ratectl_http_admit(b, 0), RATECTL_ETIMEDOUT);
	assert_int_equal(ratectl_http_try(c, &w), RATECTL_EINFLIGHT);
	ratectl_http_request_free(c);
	ratectl_http_request_free(b);
	ratectl_http_request_free(a);
}

/* A request admitted in the parent and freed in a child: the parent's
 * fetch stands. */
static void test_fork_child_free(void **state)
{
	struct fx *f = *state;
	ratectl_http_request *a;
	pid_t p;
	int st;

	assert_int_equal(ratectl_http_request_begin(&a, f->h, "POST", URL, key1, 1, det,
	                                            strlen(det), 0), 0);
	assert_int_equal(ratectl_http_admit(a, 0), 0);
	if ((p = fork()) == 0) {
		ratectl_http_request *b;
		int64_t w;

		ratectl_http_request_free(a);
		if (ratectl_http_request_begin(&b, f->h, "POST", URL, key1, 1, det,
		                               strlen(det), 0) != 0)
			_exit(2);
		/* the parent still fetches it */
		_exit(ratectl_http_try(b, &w) == RATECTL_EPENDING ? 0 : 1);
	}
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	ratectl_http_response_status(a, 200);
	ratectl_http_response_body(a, "{}", 2);
	ratectl_http_response_complete(a);
	ratectl_http_request_end(a, NULL);
	ratectl_http_request_free(a);
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
}

/* Many processes, 20 prompts, 500 requests in all: 20 are sent. */
static void test_repeated_prompts(void **state)
{
	struct fx *f = *state;
	struct shared *sh = shared_new();
	int i, k;

	rh__cache_realtime = NULL;
	for (i = 0; i < 10; i++)
		if (fork() == 0) {
			ratectl_http *h = open_h(f->dir, conf_text);

			for (k = 0; k < 50; k++) {
				char body[96];
				int rc;

				snprintf(body, sizeof body, "{\"temperature\":0,\"prompt\":%d}",
				         (k * 7 + i) % 20);
				rc = ask(h, URL, key1, body, 200, "{\"ok\":1}", 1, NULL, 0);
				__atomic_add_fetch(rc == 0 ? &sh->sent : rc == RATECTL_HTTP_CACHED ?
				                   &sh->cached : &sh->other, 1, __ATOMIC_SEQ_CST);
			}
			ratectl_http_close(h);
			_exit(0);
		}
	reap(10);
	assert_int_equal(sh->sent, 20);
	assert_int_equal(sh->cached, 480);
	assert_int_equal(sh->other, 0);
	munmap(sh, sizeof *sh);
	rh__cache_realtime = test_realtime;
}

/* A process that never closes its handle: its hits are written when it
 * exits. */
static void test_hits_written_at_exit(void **state)
{
	struct fx *f = *state;
	pid_t p;
	int st;

	if ((p = fork()) == 0) {
		ratectl_http *h = open_h(f->dir, conf_text);
		int i;

		for (i = 0; i < 3; i++)
			if (ask(h, URL, key1, det, 200, "{}", 1, NULL, 0) != (i ? RATECTL_HTTP_CACHED : 0))
				_exit(2);
		exit(0);                 /* h left open */
	}
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(stats_of(f->h, "llm").hits, 2);
}

/* ---- damage ----------------------------------------------------------------- */

static void test_damaged_cache_rebuilt(void **state)
{
	struct fx *f = *state;
	char path[512], junk[8192];
	ratectl_budget_info bi;
	ratectl_http_cache_stats s;
	uint64_t admitted;
	FILE *fp;

	assert_int_equal(ask(f->h, URL, key1, det, 200, "{\"v\":1}", 1, NULL, 0), 0);
	assert_int_equal(ratectl_budget_get(rh__ledger_now(f->h), "llm", &bi), 0);
	admitted = bi.counters.admitted;
	ratectl_http_close(f->h);
	snprintf(path, sizeof path, "%s/cache/data.mdb", f->dir);
	memset(junk, 0x5a, sizeof junk);
	assert_non_null(fp = fopen(path, "r+"));
	assert_int_equal(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
	fclose(fp);
	f->h = open_h(f->dir, conf_text);
	/* read only: said, not repaired */
	assert_int_equal(ratectl_http_cache_stats_read(f->h, NULL, &s, 1), RATECTL_ECORRUPT);
	/* a request: the cache is made again, the request fetched and kept */
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{\"v\":2}", 1, NULL, 0), 0);
	assert_int_equal(ask(f->h, URL, key1, det, 200, "{}", 1, NULL, 0), RATECTL_HTTP_CACHED);
	s = stats_of(f->h, "llm");
	assert_int_equal(s.stores, 1);
	/* the budgets are untouched */
	assert_int_equal(ratectl_budget_get(rh__ledger_now(f->h), "llm", &bi), 0);
	assert_int_equal(bi.counters.admitted, admitted + 1);
}

/* ---- the config ------------------------------------------------------------- */

static void test_config_errors(void **state)
{
	static const struct { const char *text, *want; } bad[] = {
		{ "[a]\nrequests = 1/s\ncache = 1x\n", "config:3: [a]: key 'cache'" },
		{ "[a]\nrequests = 1/s\ncache = 31d\n", "config:3: [a]: key 'cache'" },
		{ "[a]\nrequests = 1/s\ncache_size = 1M\n", "config:3: [a]: key 'cache_size': goes with `cache" },
		{ "[a]\nrequests = 1/s\ncache = 1m\ncache_size = 100\n", "config:4: [a]: key 'cache_size'" },
		{ "[a]\nrequests = 1/s\ncache = 1m\ncache_size = 2G\n", "config:4: [a]: key 'cache_size'" },
		{ "[a]\nrequests = 1/s\ncache = 1m\ncache_size = 1M\ncache_entry_max = 2M\n",
		  "config:5: [a]: key 'cache_entry_max': 2097152 bytes is more than cache_size" },
		{ "[a]\nrequests = 1/s\ncache = 1m\ncache_requests = some\n",
		  "config:4: [a]: key 'cache_requests': 'some': expected deterministic" },
		{ "[a-*]\nrequests = 1/s\ncache = 1m\n", "config:3: [a-*]: key 'cache': not in a template" },
	};
	ratectl_http_config *c;
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(ratectl_http_config_parse(&c, NULL, bad[i].text,
		                 strlen(bad[i].text), err, sizeof err), RATECTL_EBADCONFIG);
		if (strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
			fail_msg("%zu: '%s' does not begin with '%s'", i, err, bad[i].want);
	}
	{
		static const char good[] = "[a]\nrequests = 1/s\ncache = 1h\ncache_size = 1G\n"
		                           "cache_entry_max = 64M\ncache_requests = any\n"
		                           "[b]\nrequests = 1/s\ncache = off\n";

		if (ratectl_http_config_parse(&c, NULL, good, sizeof good - 1, err,
		                              sizeof err) != 0)
			fail_msg("%s", err);
	}
	ratectl_http_config_free(c);
}

/* ---- SHA-256, both ways -------------------------------------------------- */

static void hexof(const uint8_t d[32], char out[65])
{
	int i;

	for (i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* FIPS 180-2 vectors, and the SHA instructions against the portable
 * code on every length to 300 in pieces of every size: the same digest. */
static void test_sha256(void **state)
{
	static const struct { const char *in, *want; } v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	uint8_t buf[300] = { 0 }, a[32], b[32];
	char hex[65];
	struct rh__sha256_ctx c;
	int ni, way;
	size_t i, len, piece, at;

	(void)state;
	rh__sha256_ni = -1;
	rh__sha256(buf, 0, a);        /* asks the CPU */
	ni = rh__sha256_ni;
	print_message("SHA instructions: %s\n", ni ? "used" : "not on this CPU");
	for (way = ni; way >= 0; way--) {
		rh__sha256_ni = way;
		for (i = 0; i < sizeof v / sizeof v[0]; i++) {
			rh__sha256(v[i].in, strlen(v[i].in), a);
			hexof(a, hex);
			assert_string_equal(hex, v[i].want);
		}
	}
	for (i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (len = 0; len <= sizeof buf; len++) {
		rh__sha256_ni = 0;
		rh__sha256(buf, len, a);
		rh__sha256_ni = ni;
		for (piece = 1; piece <= 70; piece += 23) {
			rh__sha256_init(&c);
			for (at = 0; at < len; at += piece)
				rh__sha256_update(&c, buf + at, len - at < piece ? len - at : piece);
			rh__sha256_final(&c, b);
			assert_memory_equal(a, b, 32);
		}
	}
	rh__sha256_ni = -1;
}

/* ---- the canonical form ------------------------------------------------------ */

static const char *canon(const char *in, char *out)
{
	size_t n;

	if (rh__jcanon(in, strlen(in), out, &n, NULL) != 0)
		return NULL;
	out[n] = '\0';
	return out;
}

static int top_of(const char *in, struct rh__jcanon_top *top)
{
	char out[256];
	size_t n;

	return rh__jcanon(in, strlen(in), out, &n, top);
}

static void test_canonical_form(void **state)
{
	static const struct { const char *in, *want; } ok[] = {
		{ " { \"b\" : 1 , \"a\" : [ 1 , { \"d\":null, \"c\":true } ] } ",
		  "{\"a\":[1,{\"c\":true,\"d\":null}],\"b\":1}" },
		{ "{\"a b\":\" x  y \"}", "{\"a b\":\" x  y \"}" },     /* blanks in strings */
		{ "{\"ab\":1,\"a\":2,\"\":3}", "{\"\":3,\"a\":2,\"ab\":1}" },
		{ "[]", "[]" }, { "{}", "{}" }, { "\"s\"", "\"s\"" },
		{ "-0.5e+10", "-0.5e+10" }, { "0", "0" },
		{ "{\"q\":\"a\\\"b\\\\c\\u00e9\\n\"}", "{\"q\":\"a\\\"b\\\\c\\u00e9\\n\"}" },
	};
	static const char *const bad[] = {
		"", " ", "{", "}", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1,]", "[1 2]",
		"01", "1.", ".5", "1e", "-", "+1", "tru", "nul", "\"abc", "\"a\\x\"",
		"\"\\u12\"", "\"a\nb\"", "{\"a\":1,\"a\":2}", "{\"a\":1} x", "NaN",
		/* one key two ways, and any escaped key */
		"{\"input\":\"cat\",\"\\u0069nput\":\"dog\"}", "{\"\\u0069nput\":\"dog\",\"input\":\"cat\"}",
		"{\"temperature\":0,\"temperatur\\u0065\":1}", "[{\"a\\\"b\":1}]",
	};
	char out[256], deep[300];
	struct rh__jcanon_top top;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		const char *got = canon(ok[i].in, out);

		if (!got || strcmp(got, ok[i].want) != 0)
			fail_msg("%s: got %s, want %s", ok[i].in, got ? got : "(none)", ok[i].want);
		/* the form of a form is itself */
		assert_string_equal(canon(ok[i].want, deep), ok[i].want);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (canon(bad[i], out))
			fail_msg("'%s' has a form: %s", bad[i], out);
	/* nesting: 64 levels, not 65 */
	memset(deep, '[', 64);
	memset(deep + 64, ']', 64);
	deep[128] = '\0';
	assert_non_null(canon(deep, out));
	memset(deep, '[', 65);
	memset(deep + 65, ']', 65);
	deep[130] = '\0';
	assert_null(canon(deep, out));
	/* what the top level says */
	assert_int_equal(top_of("{\"temperature\":0.0,\"stream\":false}", &top), 0);
	assert_true(top.object && top.has_temperature && top.temperature_zero && !top.stream);
	assert_int_equal(top_of("{\"x\":{\"temperature\":0},\"stream\":null}", &top), 0);
	assert_true(!top.has_temperature && !top.stream);
	assert_int_equal(top_of("{\"temperature\":-0e3,\"stream\":1}", &top), 0);
	assert_true(top.temperature_zero && top.stream);
	assert_int_equal(top_of("{\"temperature\":0.01}", &top), 0);
	assert_false(top.temperature_zero);
	assert_int_equal(top_of("{\"temperature\":\"0\"}", &top), 0);
	assert_false(top.temperature_zero);
	/* 100,000 members in reverse order: sorted (n log n: a flat body a
	 * client sends must not stall the program) */
	{
		size_t cap = 2000000, m;
		char *big = malloc(cap), *form = malloc(cap), *p = big;

		assert_non_null(big);
		assert_non_null(form);
		*p++ = '{';
		for (i = 100000; i > 0; i--)
			p += sprintf(p, "\"k%06zu\":1%s", i, i > 1 ? "," : "}");
		assert_int_equal(rh__jcanon(big, (size_t)(p - big), form, &m, NULL), 0);
		assert_int_equal(memcmp(form, "{\"k000001\":1,\"k000002\":1,", 25), 0);
		free(big);
		free(form);
	}
	/* an object of many members (past the inline table) */
	{
		char big[2048] = "{", form[2048], *p = big + 1;

		for (i = 40; i > 0; i--)
			p += sprintf(p, "\"k%02zu\":%zu%s", i, i, i > 1 ? "," : "}");
		assert_int_equal(rh__jcanon(big, strlen(big), form, &n, NULL), 0);
		assert_int_equal(n, strlen(big));
		assert_int_equal(memcmp(form, "{\"k01\":1,\"k02\":2,", 17), 0);
		assert_int_equal(memcmp(form + n - 10, ",\"k40\":40}", 10), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_which_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hit_after_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_stored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stampede, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetcher_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_stored_wakes_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_failed_wakes_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waiters_pass_after_unkept_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_fails_fetch_ends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credentials_apart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_content_type_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_environment_per_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_waits_for_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_fetch_given_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fork_child_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeated_prompts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hits_written_at_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_cache_rebuilt, setup, teardown),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_canonical_form),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
