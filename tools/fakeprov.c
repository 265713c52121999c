/*
 * fakeprov.c - a fake LLM provider that rate-limits like the real ones.
 *
 * ratectl-fakeprov serves OpenAI- and Anthropic-shaped endpoints on a
 * loopback address and answers 429 to whatever exceeds its limits.  The
 * tests and the demo use it as the referee: everything that reaches it is
 * counted (GET /stats, --log), so a test can assert that many processes
 * sharing one ratectl budget never went over the provider's limit.
 *
 * A referee must not share the code it judges, so this file has its own
 * limiter and never includes lib/ or links libratectl.  Its GCRA rounds
 * the emission interval down: it may admit under a nanosecond per unit
 * early, but it never refuses a client that kept to the limit computed
 * exactly.  A 429 from it therefore always means "over the limit".
 *
 * One thread per connection (libmicrohttpd) lets a handler sleep out the
 * simulated latency without holding up anyone else; one mutex guards the
 * limits, the counters, the RNG and the log.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

#define PROG "ratectl-fakeprov"
#define NS_PER_MS INT64_C(1000000)
#define NS_PER_SEC INT64_C(1000000000)
#define NS_PER_MIN (60 * NS_PER_SEC)
#define BODY_CAP ((size_t)1 << 20)          /* larger bodies get 413 */
#define MAX_LATENCY_NS (60 * NS_PER_SEC)
#define MAX_TOKENS_CAP INT64_C(1000000000000) /* keeps sums far from overflow */
#define DRAIN_NS (2 * NS_PER_SEC)           /* shutdown waits this for replies */
#define MAX_CONNECTIONS 512u                /* one thread each */
#define IDLE_TIMEOUT_S 10u

enum { LIM_RPM, LIM_RPS, LIM_TPM, LIM_N };
enum { DIM_REQUESTS, DIM_TOKENS, DIM_N };

static const char *const lim_name[LIM_N] = {
	"requests per minute", "requests per second", "tokens per minute"
};
static const char *const dim_name[DIM_N] = { "requests", "tokens" };

/*
 * One GCRA limit: `count` units per `period`, at most `burst` at once.
 * tat is the theoretical arrival time: the bucket is full again at tat,
 * and a cost fits while its new tat stays within tau (burst * interval)
 * of now.  Times are nanoseconds since the server started.
 */
struct limit {
	int on;
	int dim;
	uint64_t count, burst;
	int64_t period, interval, tau, tat;
};

struct config {
	unsigned port;
	const char *bind;
	uint64_t rate[LIM_N];                 /* 0 = no such limit */
	uint64_t burst_requests, burst_tokens; /* 0 = one period's count */
	int64_t latency, jitter;
	double p429, p500;
	long retry_after;                     /* -1 = computed */
	const char *log_path, *port_file;
	uint64_t max_requests, max_seconds;   /* 0 = unbounded */
	uint64_t seed;
	uint64_t stream_bytes;                /* size of a streamed reply's text */
	int quiet;
};

struct stats {
	uint64_t requests, ok, limited, injected429, errors500, bad, tokens;
	uint64_t in_flight, max_in_flight;
};

struct server {
	struct config cfg;
	pthread_mutex_t mu;   /* guards everything below */
	pthread_cond_t cv;    /* in_flight fell, or stopping was set */
	struct limit lim[LIM_N];
	struct stats st;
	uint64_t rng;
	int64_t start_ns;     /* CLOCK_MONOTONIC */
	int64_t start_wall_ms;
	int stopping;
	int log_failed;
	FILE *logf;
	pthread_t main_thread;
};

/* What one connection has sent so far. */
struct request {
	char *body;
	size_t len, cap;
	int too_large;
	int api;              /* counted in in_flight */
};

/* What the limits say about one dimension, for the response headers. */
struct dimview {
	int on;
	uint64_t limit, remaining;
	int64_t reset;        /* ns until the bucket is full again */
};

struct verdict {
	int status;           /* 200, 429 or 500 */
	int injected;
	int never;            /* the cost exceeds a burst: no wait helps */
	int which;            /* the limit that refused */
	int64_t wait;         /* ns until the request would pass */
	long retry_after;     /* seconds, for Retry-After */
	uint64_t seq;
	int64_t latency;
	struct dimview dim[DIM_N];
};

struct usage {
	uint64_t prompt, completion, estimate;
	const char *model;    /* borrowed from the parsed body */
	int stream;           /* "stream": true */
	int include_usage;    /* "stream_options": {"include_usage": true} */
};

/* ---------------------------------------------------------------- */
/* Clock, RNG, text                                                 */
/* ---------------------------------------------------------------- */

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	/* Only fails for a bad clock id: nothing sensible to carry on with. */
	if (clock_gettime(id, &ts) != 0)
		abort();
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static struct timespec to_timespec(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / NS_PER_SEC), (long)(ns % NS_PER_SEC) };
	return ts;
}

/* splitmix64: tiny, seedable, and the same sequence everywhere. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Client bytes go into JSON strings, which must be valid UTF-8. */
static void sanitize(char *dst, size_t n, const char *src)
{
	size_t i = 0;

	for (; src[i] != '\0' && i + 1 < n; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

/*
 * Go's time.Duration.String() ("20ms", "1s", "6m0s", "1h0m0s"), which is
 * what OpenAI sends, at millisecond precision.  Rounded up: a client that
 * waits the stated time must find the bucket full.
 */
static void go_duration(char *buf, size_t n, int64_t ns)
{
	int64_t ms = (ns + NS_PER_MS - 1) / NS_PER_MS;
	int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60;
	char frac[16] = "";

	if (ms == 0) {
		snprintf(buf, n, "0s");
		return;
	}
	if (ms < 1000) {
		snprintf(buf, n, "%" PRId64 "ms", ms);
		return;
	}
	if (ms % 1000 != 0) {
		size_t end;
		snprintf(frac, sizeof frac, ".%03d", (int)(ms % 1000));
		for (end = strlen(frac); frac[end - 1] == '0'; end--)
			frac[end - 1] = '\0';
	}
	if (h > 0)
		snprintf(buf, n, "%" PRId64 "h%dm%d%ss", h, (int)m, (int)s, frac);
	else if (m > 0)
		snprintf(buf, n, "%dm%d%ss", (int)m, (int)s, frac);
	else
		snprintf(buf, n, "%d%ss", (int)s, frac);
}

/* RFC 3339 UTC time `ns` from now, rounded up to the second like the reset. */
static int rfc3339_after(char *buf, size_t n, int64_t ns)
{
	int64_t wall = clock_ns(CLOCK_REALTIME) + ns;
	time_t t = (time_t)((wall + NS_PER_SEC - 1) / NS_PER_SEC);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL)
		return -1;
	return strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 ? -1 : 0;
}

/*
 * pthread mutex and condition calls fail only on misuse (a bad or
 * destroyed object); carrying on after that would corrupt the counts the
 * tests rely on, so these stop the process instead.
 */
static void lock(struct server *s)
{
	if (pthread_mutex_lock(&s->mu) != 0)
		abort();
}

static void unlock(struct server *s)
{
	if (pthread_mutex_unlock(&s->mu) != 0)
		abort();
}

static void wake_all(struct server *s)
{
	if (pthread_cond_broadcast(&s->cv) != 0)
		abort();
}

/* Waits on s->cv until the absolute monotonic time; 0 when it passed. */
static int wait_until(struct server *s, const struct timespec *until)
{
	int rc = pthread_cond_timedwait(&s->cv, &s->mu, until);

	if (rc != 0 && rc != ETIMEDOUT)
		abort();
	return rc == ETIMEDOUT ? 0 : 1;
}

/* ---------------------------------------------------------------- */
/* The limiter                                                      */
/* ---------------------------------------------------------------- */

static void limits_init(struct server *s)
{
	static const int64_t period[LIM_N] = { NS_PER_MIN, NS_PER_SEC, NS_PER_MIN };
	const struct config *c = &s->cfg;

	for (int i = 0; i < LIM_N; i++) {
		struct limit *l = &s->lim[i];
		uint64_t burst = i == LIM_TPM ? c->burst_tokens : c->burst_requests;

		l->on = c->rate[i] != 0;
		if (!l->on)
			continue;
		l->dim = i == LIM_TPM ? DIM_TOKENS : DIM_REQUESTS;
		l->count = c->rate[i];
		l->burst = burst != 0 ? burst : l->count;
		l->period = period[i];
		l->interval = l->period / (int64_t)l->count; /* down: see top */
		l->tau = (int64_t)l->burst * l->interval;   /* checked in args */
		l->tat = 0;
	}
}

/* The tat that charging `cost` now would leave. */
static int64_t limit_next_tat(const struct limit *l, int64_t now, uint64_t cost)
{
	int64_t base = l->tat > now ? l->tat : now;

	/* cost <= burst here, so this stays below tau + now: no overflow. */
	return base + (int64_t)cost * l->interval;
}

/* 0 when `cost` fits now, else ns to wait; -1 when it never will. */
static int64_t limit_wait(const struct limit *l, int64_t now, uint64_t cost)
{
	int64_t over;

	if (!l->on)
		return 0;
	if (cost > l->burst)
		return -1;
	over = limit_next_tat(l, now, cost) - now - l->tau;
	return over > 0 ? over : 0;
}

static uint64_t limit_remaining(const struct limit *l, int64_t now)
{
	int64_t base = l->tat > now ? l->tat : now;

	return (uint64_t)((now + l->tau - base) / l->interval);
}

/* Per dimension, report the limit with the least left: it binds first. */
static void limits_view(const struct server *s, int64_t now, struct verdict *v)
{
	for (int i = 0; i < LIM_N; i++) {
		const struct limit *l = &s->lim[i];
		struct dimview *d = &v->dim[l->dim];
		uint64_t left;

		if (!l->on)
			continue;
		left = limit_remaining(l, now);
		if (d->on && left >= d->remaining)
			continue;
		d->on = 1;
		d->limit = l->count;
		d->remaining = left;
		d->reset = l->tat > now ? l->tat - now : 0;
	}
}

/*
 * All or nothing.  Tokens must fit at the estimate (prompt + max_tokens),
 * as providers check before generating, but the charge is the usage the
 * reply reports, as providers reconcile afterwards.
 */
static void limits_admit(struct server *s, int64_t now, const struct usage *u,
                         struct verdict *v)
{
	uint64_t used = u->prompt + u->completion;

	for (int i = 0; i < LIM_N; i++) {
		const struct limit *l = &s->lim[i];
		int64_t w = limit_wait(l, now, l->dim == DIM_TOKENS ? u->estimate : 1);

		/* A cost no wait can fit names its limit even if another waits longer. */
		if (w < 0) {
			v->never = 1;
			v->which = i;
			w = l->period;
		} else if (w > v->wait && !v->never) {
			v->which = i;
		}
		if (w > v->wait)
			v->wait = w;
	}
	if (v->wait > 0) {
		v->status = 429;
		s->st.limited++;
		return;
	}
	for (int i = 0; i < LIM_N; i++) {
		struct limit *l = &s->lim[i];
		if (l->on)
			l->tat = limit_next_tat(l, now, l->dim == DIM_TOKENS ? used : 1);
	}
	v->status = 200;
	s->st.ok++;
	s->st.tokens += used;
}

/* ---------------------------------------------------------------- */
/* Accounting: counters, log, --max-requests (all under s->mu)      */
/* ---------------------------------------------------------------- */

static json_t *remaining_json(const struct verdict *v, int dim)
{
	if (v == NULL || !v->dim[dim].on)
		return json_null();
	return json_integer((json_int_t)v->dim[dim].remaining);
}

static void log_request(struct server *s, int64_t now, const char *method,
                        const char *path, int status, uint64_t tokens,
                        const struct verdict *v)
{
	char m[16], p[256];
	json_t *o;
	int bad;

	if (s->logf == NULL)
		return;
	sanitize(m, sizeof m, method);
	sanitize(p, sizeof p, path);
	o = json_pack("{s:f,s:s,s:s,s:i,s:I,s:o,s:o,s:b}",
	              "t_ms", (double)(now / 1000) / 1000.0, "method", m,
	              "path", p, "status", status, "tokens", (json_int_t)tokens,
	              "remaining_requests", remaining_json(v, DIM_REQUESTS),
	              "remaining_tokens", remaining_json(v, DIM_TOKENS),
	              "injected", v != NULL && v->injected);
	/* %.15g prints t_ms as written ("12.345"), not as "12.345000000000001". */
	bad = o == NULL ||
	      json_dumpf(o, s->logf, JSON_COMPACT | JSON_REAL_PRECISION(15)) != 0 ||
	      fputc('\n', s->logf) == EOF || fflush(s->logf) != 0;
	json_decref(o);
	if (bad && !s->log_failed) {
		s->log_failed = 1;
		fprintf(stderr, PROG ": --log %s: write failed: %s; carrying on without it\n",
		        s->cfg.log_path, strerror(errno));
	}
}

/* Counts a request that reached a handler; --max-requests ends the run. */
static uint64_t count_request(struct server *s)
{
	uint64_t seq = ++s->st.requests;
	int rc;

	if (s->cfg.max_requests == 0 || seq != s->cfg.max_requests)
		return seq;
	/* The main thread sleeps in sigtimedwait(); this wakes it. */
	rc = pthread_kill(s->main_thread, SIGUSR1);
	if (rc != 0)
		fprintf(stderr, PROG ": cannot stop after --max-requests: %s\n", strerror(rc));
	return seq;
}

/* A request refused before the limiter: 400, 404, 413. */
static void count_other(struct server *s, const char *method, const char *path,
                        int status)
{
	lock(s);
	count_request(s);
	s->st.bad++;
	log_request(s, clock_ns(CLOCK_MONOTONIC) - s->start_ns, method, path,
	            status, 0, NULL);
	unlock(s);
}

/*
 * The referee's decision.  One draw decides injection (429 below p429,
 * 500 below p429 + p500), another the jitter, whatever the options, so a
 * seed gives the same sequence.  Injected failures charge nothing.
 */
static void decide(struct server *s, const struct usage *u, const char *path,
                   struct verdict *v)
{
	const struct config *c = &s->cfg;
	double r;
	uint64_t jit;
	int64_t now;

	memset(v, 0, sizeof *v);
	lock(s);
	now = clock_ns(CLOCK_MONOTONIC) - s->start_ns;
	v->seq = count_request(s);
	r = (double)(rng_next(&s->rng) >> 11) * 0x1p-53;
	jit = rng_next(&s->rng);
	if (r < c->p429) {
		v->status = 429;
		v->injected = 1;
		s->st.injected429++;
	} else if (r < c->p429 + c->p500) {
		v->status = 500;
		v->injected = 1;
		s->st.errors500++;
	} else {
		limits_admit(s, now, u, v);
	}
	if (v->status == 200)
		v->latency = c->latency + (c->jitter > 0 ? (int64_t)(jit % (uint64_t)(c->jitter + 1)) : 0);
	if (c->retry_after >= 0)
		v->retry_after = c->retry_after;
	else if (v->injected || v->wait <= NS_PER_SEC)
		v->retry_after = 1;
	else
		v->retry_after = (long)((v->wait + NS_PER_SEC - 1) / NS_PER_SEC);
	limits_view(s, now, v);
	log_request(s, now, "POST", path, v->status,
	            v->status == 200 ? u->prompt + u->completion : 0, v);
	unlock(s);
}

/* Sleeps the simulated latency; shutdown cuts it short. */
static void sleep_latency(struct server *s, int64_t ns)
{
	struct timespec until = to_timespec(clock_ns(CLOCK_MONOTONIC) + ns);

	lock(s);
	while (!s->stopping && ns > 0) {
		if (!wait_until(s, &until))
			break;
	}
	unlock(s);
}

/* ---------------------------------------------------------------- */
/* Responses                                                        */
/* ---------------------------------------------------------------- */

/* Adds header printf(name_fmt, dim) = value. */
static int add_hdr(struct MHD_Response *r, const char *name_fmt, const char *dim,
                   const char *value)
{
	char name[80];
	int n = snprintf(name, sizeof name, name_fmt, dim);

	if (n < 0 || (size_t)n >= sizeof name)
		return -1;
	return MHD_add_response_header(r, name, value) == MHD_YES ? 0 : -1;
}

static int add_limit_headers(struct MHD_Response *r, const struct verdict *v,
                             int anthropic)
{
	char lim[32], left[32], reset[32], at[32];

	for (int d = 0; d < DIM_N; d++) {
		const struct dimview *dv = &v->dim[d];

		if (!dv->on)
			continue;
		snprintf(lim, sizeof lim, "%" PRIu64, dv->limit);
		snprintf(left, sizeof left, "%" PRIu64, dv->remaining);
		go_duration(reset, sizeof reset, dv->reset);
		if (add_hdr(r, "x-ratelimit-limit-%s", dim_name[d], lim) < 0 ||
		    add_hdr(r, "x-ratelimit-remaining-%s", dim_name[d], left) < 0 ||
		    add_hdr(r, "x-ratelimit-reset-%s", dim_name[d], reset) < 0)
			return -1;
		if (!anthropic)
			continue;
		if (rfc3339_after(at, sizeof at, dv->reset) < 0 ||
		    add_hdr(r, "anthropic-ratelimit-%s-limit", dim_name[d], lim) < 0 ||
		    add_hdr(r, "anthropic-ratelimit-%s-remaining", dim_name[d], left) < 0 ||
		    add_hdr(r, "anthropic-ratelimit-%s-reset", dim_name[d], at) < 0)
			return -1;
	}
	if (v->status != 429)
		return 0;
	snprintf(lim, sizeof lim, "%ld", v->retry_after);
	return MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, lim) == MHD_YES ? 0 : -1;
}

/*
 * Queues `body` (a reference this takes, may be NULL after a failed pack)
 * as JSON.  MHD_NO makes MHD drop the connection: the client sees an
 * error rather than a half-made reply.
 */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             json_t *body, const struct verdict *v, int anthropic)
{
	enum MHD_Result ret = MHD_NO;
	struct MHD_Response *r = NULL;
	char *text = NULL;

	if (body == NULL)
		goto out;
	text = json_dumps(body, JSON_COMPACT);
	if (text == NULL)
		goto out;
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (r == NULL)
		goto out;
	text = NULL; /* r frees it */
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES)
		goto out;
	if (v != NULL && add_limit_headers(r, v, anthropic) < 0)
		goto out;
	ret = MHD_queue_response(c, status, r);
out:
	if (r != NULL)
		MHD_destroy_response(r);
	free(text);
	json_decref(body);
	return ret;
}

/* The error shape OpenAI uses; Anthropic's adds a top-level type. */
static json_t *error_body(const char *type, const char *msg, int anthropic)
{
	if (anthropic)
		return json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error",
		                 "type", type, "message", msg);
	return json_pack("{s:{s:s,s:s}}", "error", "type", type, "message", msg);
}

static json_t *failure_body(const struct server *s, const struct verdict *v,
                            int anthropic)
{
	const struct limit *l = &s->lim[v->which];
	char msg[256];

	if (v->status == 500)
		return error_body("server_error", "injected failure (--inject-500)", anthropic);
	if (v->injected)
		snprintf(msg, sizeof msg, "injected rate limit (--inject-429); retry after %ld s",
		         v->retry_after);
	else if (v->never)
		snprintf(msg, sizeof msg, "request needs more %s than the burst of %" PRIu64
		         " %s; it can never be admitted", dim_name[l->dim], l->burst, lim_name[v->which]);
	else
		snprintf(msg, sizeof msg, "rate limit reached for %s (limit %" PRIu64
		         ", burst %" PRIu64 "); retry after %ld s",
		         lim_name[v->which], l->count, l->burst, v->retry_after);
	return error_body("rate_limit_exceeded", msg, anthropic);
}

static json_t *success_body(const struct usage *u, const struct verdict *v,
                            int anthropic)
{
	char id[64], text[64];

	snprintf(text, sizeof text, "fakeprov reply %" PRIu64 ".", v->seq);
	if (anthropic) {
		snprintf(id, sizeof id, "msg_fake_%" PRIu64, v->seq);
		return json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:s}],s:s,s:{s:I,s:I}}",
		                 "id", id, "type", "message", "role", "assistant",
		                 "model", u->model, "content", "type", "text", "text", text,
		                 "stop_reason", "end_turn", "usage",
		                 "input_tokens", (json_int_t)u->prompt,
		                 "output_tokens", (json_int_t)u->completion);
	}
	snprintf(id, sizeof id, "chatcmpl-fake-%" PRIu64, v->seq);
	return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s},s:s}],s:{s:I,s:I,s:I}}",
	                 "id", id, "object", "chat.completion",
	                 "created", (json_int_t)time(NULL), "model", u->model,
	                 "choices", "index", 0, "message", "role", "assistant",
	                 "content", text, "finish_reason", "stop", "usage",
	                 "prompt_tokens", (json_int_t)u->prompt,
	                 "completion_tokens", (json_int_t)u->completion,
	                 "total_tokens", (json_int_t)(u->prompt + u->completion));
}

/* ---------------------------------------------------------------- */
/* Streamed replies (server-sent events)                            */
/* ---------------------------------------------------------------- */

/*
 * A reply to "stream": true, as OpenAI and Anthropic send it: a run of
 * SSE events whose text adds up to --stream-bytes, then the usage.  The
 * bytes depend on the request only (no ids, no times), so a test can
 * compare what a client received with a direct fetch.  They are handed to
 * libmicrohttpd in pieces of many sizes (sizes below, around the 2 KiB,
 * 4 KiB, 8 KiB and 16 KiB buffer sizes a client may have), each becoming
 * one HTTP chunk.
 */
static const size_t piece_sizes[] = {
	1, 2, 3, 7, 64, 511, 1000, 2047, 2048, 2049, 4095, 4096, 4097,
	8191, 8192, 8193, 12000, 16383, 16384, 16385, 24576, 32768, 65536,
};

struct strbuf {
	char *p;
	size_t len, cap;
	int failed;
};

static void sb_add(struct strbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_add(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *grown = realloc(b->p, cap);
		if (grown == NULL) {
			b->failed = 1;
			return;
		}
		b->p = grown;
		b->cap = cap;
	}
}

/*
 * Piece i of the text: words of varying length, and now and then text
 * that looks like usage to a careless scanner (escaped, as JSON strings
 * carry it) and SSE-looking text.
 */
static void text_piece(char *buf, size_t n, uint64_t i)
{
	static const char *const odd[] = {
		"{\\\"usage\\\":{\\\"total_tokens\\\":999999}}",
		"\\ndata: {\\\"usage\\\":{\\\"input_tokens\\\":7}}\\n\\n",
		"\\\"usage\\\": {\\\"output_tokens\\\": 5}",
	};
	size_t len = 1 + (size_t)(i * 37 % 180), k;

	if (i % 97 == 13) {
		snprintf(buf, n, "%s", odd[i / 97 % 3]);
		return;
	}
	for (k = 0; k < len && k + 1 < n; k++)
		buf[k] = k % 7 == 6 ? ' ' : (char)('a' + (i + k) % 26);
	buf[k] = '\0';
}

static void stream_openai(struct strbuf *b, const struct usage *u, uint64_t bytes)
{
	const char *head = "{\"id\":\"chatcmpl-fake-stream\",\"object\":\"chat.completion.chunk\","
	                   "\"created\":0,\"model\":\"fakeprov\"";
	const char *un = u->include_usage ? ",\"usage\":null" : "";
	char text[256];
	uint64_t i;

	sb_add(b, "data: %s,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
	       "\"content\":\"\"},\"finish_reason\":null}]%s}\n\n", head, un);
	for (i = 0; b->len < bytes && !b->failed; i++) {
		text_piece(text, sizeof text, i);
		if (i % 50 == 49)
			sb_add(b, ": keep-alive\n\n");
		sb_add(b, "data: %s,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},"
		       "\"finish_reason\":null}]%s}\n\n", head, text, un);
	}
	sb_add(b, "data: %s,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
	       "\"stop\"}]%s}\n\n", head, un);
	if (u->include_usage)
		sb_add(b, "data: %s,\"choices\":[],\"usage\":{\"prompt_tokens\":%" PRIu64
		       ",\"completion_tokens\":%" PRIu64 ",\"total_tokens\":%" PRIu64 "}}\n\n",
		       head, u->prompt, u->completion, u->prompt + u->completion);
	sb_add(b, "data: [DONE]\n\n");
}

static void stream_anthropic(struct strbuf *b, const struct usage *u, uint64_t bytes)
{
	char text[256];
	uint64_t i;

	sb_add(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
	       "{\"id\":\"msg_fake_stream\",\"type\":\"message\",\"role\":\"assistant\","
	       "\"content\":[],\"model\":\"fakeprov\",\"stop_reason\":null,"
	       "\"stop_sequence\":null,\"usage\":{\"input_tokens\":%" PRIu64
	       ",\"output_tokens\":1}}}\n\n", u->prompt);
	sb_add(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\","
	       "\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
	for (i = 0; b->len < bytes && !b->failed; i++) {
		text_piece(text, sizeof text, i);
		if (i % 50 == 49)
			sb_add(b, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
		sb_add(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
		       "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"%s\"}}\n\n", text);
	}
	sb_add(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
	       "\"index\":0}\n\n");
	sb_add(b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
	       "{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":"
	       "{\"output_tokens\":%" PRIu64 "}}\n\n", u->completion);
	sb_add(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

struct stream {
	char *p;
	size_t len;
	unsigned next;        /* index into piece_sizes */
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *st = cls;
	size_t n;

	if (pos >= st->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = piece_sizes[st->next++ % (sizeof piece_sizes / sizeof piece_sizes[0])];
	if (n > max)
		n = max;
	if (n > st->len - pos)
		n = st->len - (size_t)pos;
	memcpy(buf, st->p + pos, n);
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *st = cls;

	free(st->p);
	free(st);
}

static enum MHD_Result reply_stream(struct server *s, struct MHD_Connection *c,
                                    const struct usage *u, const struct verdict *v,
                                    int anthropic)
{
	struct strbuf b = { NULL, 0, 0, 0 };
	struct MHD_Response *r = NULL;
	struct stream *st = NULL;
	enum MHD_Result ret = MHD_NO;

	if (anthropic)
		stream_anthropic(&b, u, s->cfg.stream_bytes);
	else
		stream_openai(&b, u, s->cfg.stream_bytes);
	if (b.failed || !(st = calloc(1, sizeof *st)))
		goto out;
	st->p = b.p;
	st->len = b.len;
	b.p = NULL;
	/* Unknown size: chunked transfer encoding, one chunk a piece. */
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, stream_read, st,
	                                      stream_free);
	if (r == NULL) {
		stream_free(st);
		goto out;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	                            "text/event-stream") != MHD_YES ||
	    add_limit_headers(r, v, anthropic) < 0)
		goto out;
	ret = MHD_queue_response(c, 200, r);
out:
	if (r != NULL)
		MHD_destroy_response(r);
	free(b.p);
	return ret;
}

/* ---------------------------------------------------------------- */
/* Handlers                                                         */
/* ---------------------------------------------------------------- */

/*
 * Token accounting (also in --help): prompt = ceil(body bytes / 4);
 * max_tokens (or max_completion_tokens, absent = 0) bounds the
 * completion, which is ceil(max_tokens / 2).  An empty body is one
 * request and no tokens.  *doc keeps the body alive for u->model.
 */
static int parse_usage(const struct request *rq, struct usage *u, json_t **doc,
                       char *err, size_t errlen)
{
	json_error_t je;
	json_t *d, *mt, *model;
	json_int_t max = 0;

	memset(u, 0, sizeof *u);
	u->model = "fakeprov-1";
	u->prompt = (rq->len + 3) / 4;
	*doc = NULL;
	if (rq->len == 0)
		return 0;
	d = json_loadb(rq->body, rq->len, 0, &je);
	if (d == NULL || !json_is_object(d)) {
		snprintf(err, errlen, "body is not a JSON object: %s", d ? "wrong type" : je.text);
		json_decref(d);
		return -1;
	}
	mt = json_object_get(d, "max_tokens");
	if (mt == NULL || json_is_null(mt))
		mt = json_object_get(d, "max_completion_tokens");
	if (mt != NULL && !json_is_null(mt)) {
		max = json_is_integer(mt) ? json_integer_value(mt) : -1;
		if (max < 0 || max > MAX_TOKENS_CAP) {
			snprintf(err, errlen, "max_tokens must be an integer from 0 to %" PRId64,
			         MAX_TOKENS_CAP);
			json_decref(d);
			return -1;
		}
	}
	model = json_object_get(d, "model");
	if (json_is_string(model))
		u->model = json_string_value(model);
	u->stream = json_is_true(json_object_get(d, "stream"));
	u->include_usage = json_is_true(json_object_get(json_object_get(d,
	                   "stream_options"), "include_usage"));
	u->completion = ((uint64_t)max + 1) / 2;
	u->estimate = u->prompt + (uint64_t)max;
	*doc = d;
	return 0;
}

static enum MHD_Result handle_api(struct server *s, struct MHD_Connection *c,
                                  const struct request *rq, const char *url,
                                  int anthropic)
{
	struct usage u;
	struct verdict v;
	json_t *doc, *body;
	char err[256], clean[256];
	enum MHD_Result ret;

	if (rq->too_large) {
		count_other(s, "POST", url, 413);
		return reply(c, 413, error_body("invalid_request_error",
		             "request body larger than 1 MiB", anthropic), NULL, 0);
	}
	if (parse_usage(rq, &u, &doc, err, sizeof err) < 0) {
		count_other(s, "POST", url, 400);
		sanitize(clean, sizeof clean, err); /* jansson quotes the input */
		return reply(c, 400, error_body("invalid_request_error", clean, anthropic), NULL, 0);
	}
	if (strcmp(url, "/v1/embeddings") == 0) {
		u.completion = 0;       /* embeddings: the input is all of it */
		u.stream = 0;
	}
	decide(s, &u, url, &v);
	if (v.status == 200 && strcmp(url, "/v1/embeddings") == 0) {
		sleep_latency(s, v.latency);
		body = json_pack("{s:s,s:[{s:s,s:i,s:[f,f,f,f]}],s:s,s:{s:I,s:I}}",
		                 "object", "list", "data", "object", "embedding",
		                 "index", 0, "embedding", 0.25, -0.5, 0.125,
		                 (double)(v.seq % 1000) / 1000.0, "model", u.model,
		                 "usage", "prompt_tokens", (json_int_t)u.prompt,
		                 "total_tokens", (json_int_t)u.prompt);
		ret = reply(c, 200, body, &v, 0);
		json_decref(doc);
		return ret;
	}
	if (v.status == 200 && u.stream) {
		sleep_latency(s, v.latency);
		ret = reply_stream(s, c, &u, &v, anthropic);
		json_decref(doc);
		return ret;
	}
	if (v.status == 200) {
		sleep_latency(s, v.latency);
		body = success_body(&u, &v, anthropic);
	} else {
		body = failure_body(s, &v, anthropic);
	}
	ret = reply(c, (unsigned)v.status, body, &v, anthropic);
	json_decref(doc);
	return ret;
}

static enum MHD_Result handle_stats(struct server *s, struct MHD_Connection *c)
{
	struct stats st;
	int64_t now;

	lock(s);
	st = s->st;
	now = clock_ns(CLOCK_MONOTONIC) - s->start_ns;
	unlock(s);
	return reply(c, 200, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
	             "requests", (json_int_t)st.requests, "ok", (json_int_t)st.ok,
	             "limited_429", (json_int_t)st.limited,
	             "errors_500", (json_int_t)st.errors500,
	             "injected_429", (json_int_t)st.injected429,
	             "bad_requests", (json_int_t)st.bad, "tokens", (json_int_t)st.tokens,
	             "started_ms", (json_int_t)s->start_wall_ms,
	             "elapsed_ms", (json_int_t)(now / NS_PER_MS),
	             "in_flight", (json_int_t)st.in_flight,
	             "max_in_flight", (json_int_t)st.max_in_flight), NULL, 0);
}

static int is_api(const char *method, const char *url, int *anthropic)
{
	*anthropic = strcmp(url, "/v1/messages") == 0;
	return strcmp(method, MHD_HTTP_METHOD_POST) == 0 &&
	       (*anthropic || strcmp(url, "/v1/chat/completions") == 0 ||
	        strcmp(url, "/v1/embeddings") == 0);
}

/* First call for a request: headers only.  Refuses a declared huge body
 * now, before the client sends it (curl waits for 100-continue). */
static enum MHD_Result request_begin(struct server *s, struct MHD_Connection *c,
                                     const char *method, const char *url,
                                     void **con_cls)
{
	struct request *rq = calloc(1, sizeof *rq);
	const char *cl;
	int anthropic;

	if (rq == NULL)
		return MHD_NO;
	*con_cls = rq;
	rq->api = is_api(method, url, &anthropic);
	if (rq->api) {
		lock(s);
		if (++s->st.in_flight > s->st.max_in_flight)
			s->st.max_in_flight = s->st.in_flight;
		unlock(s);
	}
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (rq->api && cl != NULL && strtoull(cl, NULL, 10) > BODY_CAP) {
		rq->too_large = 1;
		return handle_api(s, c, rq, url, anthropic);
	}
	return MHD_YES;
}

/* Keeps up to BODY_CAP bytes; past that only notes that it was too big. */
static int request_append(struct request *rq, const char *data, size_t n)
{
	char *grown;
	size_t cap;

	if (rq->too_large || n > BODY_CAP - rq->len) {
		rq->too_large = 1;
		return 0;
	}
	if (rq->len + n > rq->cap) {
		for (cap = rq->cap ? rq->cap : 1024; cap < rq->len + n; cap *= 2)
			;
		if (cap > BODY_CAP)
			cap = BODY_CAP;
		grown = realloc(rq->body, cap);
		if (grown == NULL)
			return -1;
		rq->body = grown;
		rq->cap = cap;
	}
	memcpy(rq->body + rq->len, data, n);
	rq->len += n;
	return 0;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	struct request *rq = *con_cls;
	int anthropic;

	(void)version;
	if (rq == NULL)
		return request_begin(s, c, method, url, con_cls);
	if (*upload_size != 0) {
		if (request_append(rq, upload, *upload_size) < 0)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (is_api(method, url, &anthropic))
		return handle_api(s, c, rq, url, anthropic);
	if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 && strcmp(url, "/stats") == 0)
		return handle_stats(s, c);
	count_other(s, method, url, 404);
	return reply(c, 404, error_body("not_found", "no such endpoint: use POST "
	             "/v1/chat/completions, POST /v1/messages, POST /v1/embeddings or GET /stats", 0), NULL, 0);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct server *s = cls;
	struct request *rq = *con_cls;

	(void)c;
	(void)toe;
	if (rq == NULL)
		return;
	if (rq->api) {
		lock(s);
		s->st.in_flight--;
		wake_all(s); /* drain() may be waiting */
		unlock(s);
	}
	free(rq->body);
	free(rq);
	*con_cls = NULL;
}

/* ---------------------------------------------------------------- */
/* Arguments                                                        */
/* ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("usage: " PROG " [options]\n"
	"A fake LLM provider on a loopback address that rate-limits like the real ones.\n\n"
	"  --port N                port to listen on; 0 picks a free one (default 0)\n"
	"  --bind ADDR             loopback address only: 127.x.y.z, ::1 or localhost\n"
	"                          (default 127.0.0.1)\n"
	"  --port-file FILE        write the port there (atomically) once listening\n"
	"  --rpm N, --rps N        requests per minute, per second\n"
	"  --tpm N                 tokens per minute\n"
	"  --burst-requests N      burst of the request limits (default: one period's\n"
	"                          count, i.e. rpm for --rpm, rps for --rps)\n"
	"  --burst-tokens N        burst of --tpm (default: tpm)\n"
	"  --latency D             answer successes after D (e.g. 50ms, 1.5s; max 60s)\n"
	"  --latency-jitter D      plus a uniform 0..D\n"
	"  --inject-429 P          answer a fraction P (0..1) of requests 429 at random\n"
	"  --inject-500 P          answer a fraction P of requests 500 at random\n"
	"  --retry-after S         Retry-After for every 429 (default: the wait rounded\n"
	"                          up to whole seconds, at least 1; injected ones: 1)\n"
	"  --seed N                seed of the injection and jitter RNG (default 1)\n"
	"  --stream-bytes N        size of a streamed reply (\"stream\": true) before its\n"
	"                          closing events (default 131072, max 64 MiB)\n"
	"  --log FILE              one JSON line per request (file truncated first):\n"
	"                          t_ms, method, path, status, tokens,\n"
	"                          remaining_requests, remaining_tokens, injected\n"
	"  --max-requests N        exit after N requests (GET /stats not counted)\n"
	"  --max-seconds N         exit after N seconds\n"
	"  --quiet                 no start and summary lines on stderr\n"
	"  --help                  this text\n\n"
	"Endpoints: POST /v1/chat/completions (OpenAI shape), POST /v1/embeddings\n"
	"(OpenAI shape: a 4-number vector, usage prompt_tokens), POST /v1/messages\n"
	"(Anthropic shape), GET /stats (JSON: requests ok limited_429 errors_500\n"
	"injected_429 bad_requests tokens started_ms elapsed_ms in_flight\n"
	"max_in_flight; /stats itself is not counted).\n\n"
	"Tokens: prompt = ceil(body bytes / 4); completion = ceil(max_tokens / 2),\n"
	"where max_tokens (or max_completion_tokens) is read from the JSON body and\n"
	"is 0 when absent.  A request is admitted when prompt + max_tokens fits the\n"
	"token limit, and charged prompt + completion, the usage it reports.  An\n"
	"empty body is 1 request and 0 tokens.  A 429 charges nothing; neither do\n"
	"injected 429s and 500s, which are drawn before the limits are looked at.\n"
	"A cost above a burst gets 429 too (Retry-After: the period), though it can\n"
	"never be admitted.  Headers: x-ratelimit-{limit,remaining,reset}-{requests,\n"
	"tokens} (reset as a Go duration, rounded up to the ms) and, on /v1/messages,\n"
	"anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset} (reset as an\n"
	"RFC 3339 UTC time); with --rpm and --rps both, the request headers describe\n"
	"whichever has less left.\n\n"
	"Streaming: a body with \"stream\": true is answered as server-sent events in\n"
	"HTTP chunks of many sizes (1 byte to 64 KiB): OpenAI chat.completion.chunk\n"
	"events, closed by a usage event when stream_options.include_usage is true,\n"
	"then \"data: [DONE]\"; on /v1/messages Anthropic's message_start (input\n"
	"usage) ... message_delta (output usage), message_stop.  The bytes depend on\n"
	"the request only, so two fetches of one request are identical.\n\n"
	"Exit status: 0 after SIGINT, SIGTERM or a --max-* bound; 1 on a runtime\n"
	"error; 2 on bad arguments.\n", f);
}

static _Noreturn void bad_arg(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, PROG ": %s: '%s' %s\n", opt, val, why);
	exit(2);
}

static _Noreturn void bad_config(const char *msg)
{
	fprintf(stderr, PROG ": %s\n", msg);
	exit(2);
}

static uint64_t arg_u64(const char *opt, const char *val, uint64_t lo, uint64_t hi)
{
	unsigned long long n;
	char *end, why[96];

	errno = 0;
	/* strtoull alone would take " -1" as a huge number. */
	n = isdigit((unsigned char)val[0]) ? strtoull(val, &end, 10) : 0;
	if (!isdigit((unsigned char)val[0]) || *end != '\0')
		bad_arg(opt, val, "is not a number");
	if (errno == ERANGE || n < lo || n > hi) {
		snprintf(why, sizeof why, "is out of range (%" PRIu64 " to %" PRIu64 ")", lo, hi);
		bad_arg(opt, val, why);
	}
	return n;
}

/* "50ms", "1.5s", "250us", "2m"; a bare "0".  Exact integer arithmetic. */
static int64_t arg_duration(const char *opt, const char *val)
{
	static const struct { const char *name; int64_t ns; } units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "ms", NS_PER_MS }, { "s", NS_PER_SEC },
		{ "m", NS_PER_MIN },
	};
	const char *p = val;
	int64_t whole = 0, frac = 0, scale = 1;

	if (!isdigit((unsigned char)*p))
		bad_arg(opt, val, "is not a duration (like 50ms or 1.5s)");
	for (; isdigit((unsigned char)*p); p++) {
		whole = whole * 10 + (*p - '0');
		if (whole > MAX_LATENCY_NS)
			bad_arg(opt, val, "is out of range (at most 60s)");
	}
	if (*p == '.' && isdigit((unsigned char)p[1]))
		for (p++; isdigit((unsigned char)*p); p++)
			if (scale < NS_PER_SEC) {
				frac = frac * 10 + (*p - '0');
				scale *= 10;
			}
	if (*p == '\0' && whole == 0 && frac == 0)
		return 0;
	if (*p == '\0')
		bad_arg(opt, val, "needs a unit (ns, us, ms, s or m)");
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		int64_t u = units[i].ns;
		if (strcmp(p, units[i].name) != 0)
			continue;
		if (whole > MAX_LATENCY_NS / u)
			bad_arg(opt, val, "is out of range (at most 60s)");
		/* Units are 10^k or 60e9: one divides the other, so this is exact. */
		whole = whole * u + (u >= scale ? frac * (u / scale) : frac * u / scale);
		if (whole > MAX_LATENCY_NS)
			bad_arg(opt, val, "is out of range (at most 60s)");
		return whole;
	}
	bad_arg(opt, val, "is not a duration (a number and ns, us, ms, s or m)");
}

static double arg_fraction(const char *opt, const char *val)
{
	char *end;
	double x = strtod(val, &end);

	if (end == val || *end != '\0' || !isfinite(x))
		bad_arg(opt, val, "is not a number");
	if (x < 0.0 || x > 1.0)
		bad_arg(opt, val, "is not a fraction from 0 to 1");
	return x;
}

/* Fills *out; 0, or -1 for not an address, -2 for not loopback. */
static int loopback_addr(const char *host, unsigned port, struct sockaddr_storage *out)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;

	memset(out, 0, sizeof *out);
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		return (ntohl(a4->sin_addr.s_addr) >> 24) == 127 ? 0 : -2;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		return IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr) ? 0 : -2;
	}
	return -1;
}

/* Checks what no single option can: combinations and overflow. */
static void check_config(const struct config *c)
{
	struct sockaddr_storage ss;
	int rc = loopback_addr(c->bind, 0, &ss);

	if (rc == -1)
		bad_arg("--bind", c->bind, "is not a numeric IP address");
	if (rc == -2)
		bad_arg("--bind", c->bind, "is not a loopback address; fakeprov binds only "
		        "127.0.0.0/8 or ::1");
	if (c->p429 + c->p500 > 1.0)
		bad_config("--inject-429 plus --inject-500 is more than 1");
	if (c->burst_requests && !c->rate[LIM_RPM] && !c->rate[LIM_RPS])
		bad_config("--burst-requests needs --rpm or --rps");
	if (c->burst_tokens && !c->rate[LIM_TPM])
		bad_config("--burst-tokens needs --tpm");
	/* tau = burst * interval must leave int64 room for tat arithmetic. */
	for (int i = 0; i < LIM_N; i++) {
		uint64_t b = i == LIM_TPM ? c->burst_tokens : c->burst_requests;
		int64_t iv = c->rate[i] ? (i == LIM_RPS ? NS_PER_SEC : NS_PER_MIN) /
		                          (int64_t)c->rate[i] : 0;
		if (iv && (b ? b : c->rate[i]) > (uint64_t)(INT64_MAX / 4 / iv))
			bad_config(i == LIM_TPM ? "--burst-tokens is too large for --tpm" :
			           "--burst-requests is too large for --rpm/--rps");
	}
}

enum {
	OPT_PORT = 256, OPT_BIND, OPT_RPM, OPT_TPM, OPT_RPS, OPT_BREQ, OPT_BTOK,
	OPT_LAT, OPT_JIT, OPT_I429, OPT_I500, OPT_RETRY, OPT_LOG, OPT_PORTFILE,
	OPT_MAXREQ, OPT_MAXSEC, OPT_SEED, OPT_STREAM,
};

static const struct option long_opts[] = {
	{ "port", required_argument, NULL, OPT_PORT },
	{ "bind", required_argument, NULL, OPT_BIND },
	{ "rpm", required_argument, NULL, OPT_RPM },
	{ "tpm", required_argument, NULL, OPT_TPM },
	{ "rps", required_argument, NULL, OPT_RPS },
	{ "burst-requests", required_argument, NULL, OPT_BREQ },
	{ "burst-tokens", required_argument, NULL, OPT_BTOK },
	{ "latency", required_argument, NULL, OPT_LAT },
	{ "latency-jitter", required_argument, NULL, OPT_JIT },
	{ "inject-429", required_argument, NULL, OPT_I429 },
	{ "inject-500", required_argument, NULL, OPT_I500 },
	{ "retry-after", required_argument, NULL, OPT_RETRY },
	{ "log", required_argument, NULL, OPT_LOG },
	{ "port-file", required_argument, NULL, OPT_PORTFILE },
	{ "max-requests", required_argument, NULL, OPT_MAXREQ },
	{ "max-seconds", required_argument, NULL, OPT_MAXSEC },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "stream-bytes", required_argument, NULL, OPT_STREAM },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void parse_args(struct config *c, int argc, char **argv)
{
	const uint64_t big = UINT64_C(1000000000000000); /* 1e15 */
	int opt, idx = 0;

	memset(c, 0, sizeof *c);
	c->bind = "127.0.0.1";
	c->retry_after = -1;
	c->seed = 1;
	c->stream_bytes = 131072;
	while ((opt = getopt_long(argc, argv, "qh", long_opts, &idx)) != -1) {
		char name[32];

		/* For messages like "--rpm: 'abc' is not a number". */
		snprintf(name, sizeof name, "--%s", long_opts[idx].name);
		switch (opt) {
		case OPT_PORT: c->port = (unsigned)arg_u64(name, optarg, 0, 65535); break;
		case OPT_BIND: c->bind = optarg; break;
		case OPT_RPM: c->rate[LIM_RPM] = arg_u64(name, optarg, 1, 60 * (uint64_t)NS_PER_SEC); break;
		case OPT_TPM: c->rate[LIM_TPM] = arg_u64(name, optarg, 1, 60 * (uint64_t)NS_PER_SEC); break;
		case OPT_RPS: c->rate[LIM_RPS] = arg_u64(name, optarg, 1, (uint64_t)NS_PER_SEC); break;
		case OPT_BREQ: c->burst_requests = arg_u64(name, optarg, 1, big); break;
		case OPT_BTOK: c->burst_tokens = arg_u64(name, optarg, 1, big); break;
		case OPT_LAT: c->latency = arg_duration(name, optarg); break;
		case OPT_JIT: c->jitter = arg_duration(name, optarg); break;
		case OPT_I429: c->p429 = arg_fraction(name, optarg); break;
		case OPT_I500: c->p500 = arg_fraction(name, optarg); break;
		case OPT_RETRY: c->retry_after = (long)arg_u64(name, optarg, 0, 86400); break;
		case OPT_LOG: c->log_path = optarg; break;
		case OPT_PORTFILE: c->port_file = optarg; break;
		case OPT_MAXREQ: c->max_requests = arg_u64(name, optarg, 1, big); break;
		case OPT_MAXSEC: c->max_seconds = arg_u64(name, optarg, 1, 86400 * 365); break;
		case OPT_SEED: c->seed = arg_u64(name, optarg, 0, UINT64_MAX); break;
		case OPT_STREAM: c->stream_bytes = arg_u64(name, optarg, 0, 64 << 20); break;
		case 'q': c->quiet = 1; break;
		case 'h': usage(stdout); exit(0);
		default: fputs("try '" PROG " --help'\n", stderr); exit(2);
		}
	}
	if (optind < argc)
		bad_arg("arguments", argv[optind], "is not an option; try --help");
	check_config(c);
}

/* ---------------------------------------------------------------- */
/* Life cycle                                                       */
/* ---------------------------------------------------------------- */

static int server_init(struct server *s)
{
	pthread_condattr_t ca;
	int rc;

	s->start_ns = clock_ns(CLOCK_MONOTONIC);
	s->start_wall_ms = clock_ns(CLOCK_REALTIME) / NS_PER_MS;
	s->rng = s->cfg.seed;
	s->main_thread = pthread_self();
	limits_init(s);
	/* Latency sleeps measure a monotonic deadline, immune to clock steps. */
	if ((rc = pthread_condattr_init(&ca)) != 0) {
		fprintf(stderr, PROG ": cannot make a condition variable: %s\n", strerror(rc));
		return -1;
	}
	if ((rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) == 0)
		rc = pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		fprintf(stderr, PROG ": cannot make a condition variable: %s\n", strerror(rc));
		return -1;
	}
	if ((rc = pthread_mutex_init(&s->mu, NULL)) != 0) {
		fprintf(stderr, PROG ": cannot make a mutex: %s\n", strerror(rc));
		pthread_cond_destroy(&s->cv);
		return -1;
	}
	if (s->cfg.log_path != NULL && (s->logf = fopen(s->cfg.log_path, "w")) == NULL) {
		fprintf(stderr, PROG ": --log %s: %s\n", s->cfg.log_path, strerror(errno));
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		return -1;
	}
	return 0;
}

static void server_fini(struct server *s)
{
	if (s->logf != NULL && fclose(s->logf) != 0)
		fprintf(stderr, PROG ": --log %s: %s\n", s->cfg.log_path, strerror(errno));
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
}

static struct MHD_Daemon *start_daemon(struct server *s, unsigned *port)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	                 MHD_USE_AUTO | MHD_USE_ITC; /* ITC: MHD_quiesce_daemon */

	if (loopback_addr(s->cfg.bind, s->cfg.port, &ss) != 0)
		return NULL; /* check_config() already refused it */
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (!s->cfg.quiet)
		flags |= MHD_USE_ERROR_LOG;
	d = MHD_start_daemon(flags, (uint16_t)s->cfg.port, NULL, NULL, on_access, s,
	                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	                     MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS,
	                     MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
	                     MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, PROG ": cannot listen on %s port %u: %s\n", s->cfg.bind,
		        s->cfg.port, strerror(errno));
		return NULL;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0) {
		fprintf(stderr, PROG ": cannot tell which port it listens on\n");
		MHD_stop_daemon(d);
		return NULL;
	}
	*port = info->port;
	return d;
}

/* Tests poll for the file: it must never be seen half-written. */
static int write_port_file(const char *path, unsigned port)
{
	char tmp[4096];
	FILE *f;
	int ok, n = snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());

	if (n < 0 || (size_t)n >= sizeof tmp) {
		fprintf(stderr, PROG ": --port-file %s: path too long\n", path);
		return -1;
	}
	f = fopen(tmp, "w");
	if (f == NULL) {
		fprintf(stderr, PROG ": --port-file %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	ok = fprintf(f, "%u\n", port) > 0;
	ok = fclose(f) == 0 && ok; /* fclose flushes: its error counts */
	if (!ok || rename(tmp, path) != 0) {
		fprintf(stderr, PROG ": --port-file %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Returns when a signal or a --max-* bound says so. */
static void wait_for_stop(const struct server *s, const sigset_t *set)
{
	int64_t deadline = s->cfg.max_seconds ?
		s->start_ns + (int64_t)s->cfg.max_seconds * NS_PER_SEC : INT64_MAX;

	for (;;) {
		int64_t left = deadline - clock_ns(CLOCK_MONOTONIC);
		struct timespec ts;

		if (left <= 0)
			return;
		ts = to_timespec(left < 3600 * NS_PER_SEC ? left : 3600 * NS_PER_SEC);
		if (sigtimedwait(set, NULL, &ts) >= 0)
			return;
		if (errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, PROG ": sigtimedwait: %s\n", strerror(errno));
			return;
		}
	}
}

/* Stop accepting, let replies in progress finish (bounded), then stop. */
static void drain(struct server *s, struct MHD_Daemon *d)
{
	MHD_socket ls = MHD_quiesce_daemon(d);
	struct timespec until = to_timespec(clock_ns(CLOCK_MONOTONIC) + DRAIN_NS);

	lock(s);
	s->stopping = 1;
	wake_all(s); /* cut latency sleeps short */
	while (s->st.in_flight > 0) {
		if (!wait_until(s, &until))
			break;
	}
	unlock(s);
	MHD_stop_daemon(d);
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
}

static void print_summary(const struct server *s)
{
	double secs = (double)(clock_ns(CLOCK_MONOTONIC) - s->start_ns) / 1e9;
	const struct stats *st = &s->st;

	fprintf(stderr, "fakeprov: %" PRIu64 " requests, %" PRIu64 " ok, %" PRIu64
	        " 429, %" PRIu64 " 500, %.1f req/s\n", st->requests, st->ok,
	        st->limited + st->injected429, st->errors500,
	        secs > 0 ? (double)st->requests / secs : 0.0);
}

int main(int argc, char **argv)
{
	static struct server srv;
	struct MHD_Daemon *d = NULL;
	sigset_t set;
	unsigned port = 0;
	int rc = 1;

	parse_args(&srv.cfg, argc, argv);
	if (server_init(&srv) < 0)
		return 1;
	/* Blocked before MHD starts its threads, so they inherit the mask and
	 * only sigtimedwait() in this thread ever takes these signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		fprintf(stderr, PROG ": cannot set up signals\n");
		goto out;
	}
	json_object_seed(1); /* before any thread makes objects; no DoS on loopback */
	d = start_daemon(&srv, &port);
	if (d == NULL)
		goto out;
	if (srv.cfg.port_file != NULL && write_port_file(srv.cfg.port_file, port) < 0)
		goto out;
	if (!srv.cfg.quiet)
		fprintf(stderr, "fakeprov: listening on %s port %u\n", srv.cfg.bind, port);
	wait_for_stop(&srv, &set);
	rc = 0;
out:
	if (d != NULL)
		drain(&srv, d);
	if (rc == 0 && !srv.cfg.quiet)
		print_summary(&srv);
	server_fini(&srv);
	return rc;
}
