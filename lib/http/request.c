/*
 * request.c - one request through the policy: begin (match, estimate,
 * is it a retry), admission (the retry budget first, then the ledger),
 * the response (status, headers, body, kept in fixed space), and the end
 * of an attempt (learn, release with the real usage, retry or not).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rh.h"

#define COOLDOWN_DEFAULT_NS RH_NS_PER_S   /* a 429 that says nothing */
#define COOLDOWN_MAX_NS (3600 * RH_NS_PER_S)
#define MODEL_MAX 128

enum { ST_BEGUN, ST_ADMITTED, ST_PASSED, ST_ENDED, ST_PENDING, ST_CACHED };

/* How admit() admits: waiting, trying once, or taking a place in line. */
enum { M_BLOCK, M_TRY, M_RESERVE };

/* Several budgets have no reservation of their own: a pending request
 * blocked by in-flight slots tries again this often. */
#define MANY_SLOT_POLL_NS (50 * RH_NS_PER_MS)

/* Budgets missing from the ledger are created this many times for one
 * admission at most: a tenant's budget made on first use may be removed
 * by another process (expired, deleted) before it is admitted in. */
#define CREATE_TRIES 3

_Static_assert(RATECTL_HTTP_MAX_BUDGETS == RATECTL_MANY_MAX,
               "info.budgets holds every budget one admission can charge");

struct ratectl_http_request {
	ratectl_http *h;
	struct rh__policy pol;
	ratectl_http_info info;
	uint64_t hash;             /* method, URL, body: rh__request_hash() */
	int resendable;            /* the body is in memory, or there is none */
	int state;                 /* ST_* */
	int leased;                /* leases[0..pol.n) are held */
	ratectl_lease leases[RATECTL_MANY_MAX];
	/* ST_PENDING (ratectl_http_reserve()): one budget's place in line,
	 * or, for several, when to try again; the deadline on ratectl_now(). */
	ratectl_reservation res;
	int64_t retry_at, deadline, timeout;
	int retry_charged;         /* the retry budget was charged for it */
	int own_retry;             /* the next admission is a retry we decided */
	int last_rc;               /* of the last admission */
	unsigned attempt;          /* admissions so far */
	int status, have_status;
	int tenant_rc;             /* 0, or why no admission can be: a bad tenant */
	char tag[RATECTL_TAG_MAX + 1];   /* ratectl_cost.tag, "" none */
	char why[512];
	char local_after[24];
	char local_body[640];
	struct rh__cache_req cache;  /* info.cacheable: its part in the cache */
	struct rh__hdrs hdrs;
	struct rh__body body;
};

/* ---- begin ---------------------------------------------------------------- */

/* x-stainless-retry-count: the openai and anthropic SDKs' attempt number. */
static unsigned sdk_retry_count(const ratectl_http_header *hd, size_t n)
{
	const char *v = rh__req_header(hd, n, "x-stainless-retry-count");
	uint64_t c;

	if (!v || rh__hdr_count(v, &c) != 0)
		return 0;
	return c > 1000 ? 1000 : (unsigned)c;
}

/* A header value without the blanks around it (RFC 9110's OWS), looking
 * at no more than max + 1 bytes of it: *len is max + 1 when it is longer
 * than max. */
static const char *ows_trim(const char *v, size_t max, size_t *len)
{
	size_t n;

	while (*v == ' ' || *v == '\t')
		v++;
	n = strnlen(v, max + 1);
	if (n <= max)
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
	*len = n;
	return v;
}

/*
 * The request's tenant (ratectl.conf(5) `tenant`): the value of its
 * tenant header or its key id, else the budget's tenant_default, made
 * into a budget name by the template and put first among the budgets
 * charged (the core's fair shares apply to the first).  None: the
 * request is charged as if there were no tenant keys.  A value that
 * makes no valid name, or one the request is charged to already, is
 * RATECTL_EBADNAME with r->why: never a name cut or changed.
 */
static int tenant_of(ratectl_http_request *r, const ratectl_http_header *hd,
                     size_t nhd, const char *key_id)
{
	struct rh__policy *pol = &r->pol;
	char name[RATECTL_NAME_MAX + 1], msg[320], from[RH_CONF_HEADER_MAX + 16];
	const char *v = NULL;
	size_t len = 0;
	unsigned i;

	if (pol->tenant_from == RH_TENANT_HEADER &&
	    (v = rh__req_header(hd, nhd, pol->tenant_header)) != NULL)
		v = ows_trim(v, RATECTL_NAME_MAX, &len);
	else if (pol->tenant_from == RH_TENANT_KEY && key_id)
		len = strlen(v = key_id);
	snprintf(from, sizeof from, pol->tenant_from == RH_TENANT_KEY ? "key id" :
	         "header %s", pol->tenant_header);
	if ((!v || len == 0) && pol->tenant_default[0]) {
		len = strlen(v = pol->tenant_default);
		snprintf(from, sizeof from, "tenant_default");
	}
	if (!v || len == 0)
		return 0;
	if (rh__tenant_name(name, pol->tenant_template, v, len, msg, sizeof msg) != 0) {
		snprintf(r->why, sizeof r->why, "budget '%s': %s: %s; the request is "
		         "not sent", pol->name, from, msg);
		return RATECTL_EBADNAME;
	}
	for (i = 0; i < pol->n; i++)
		if (strcmp(pol->names[i], name) == 0) {
			snprintf(r->why, sizeof r->why, "budget '%s': %s: the tenant's "
			         "budget [%s] is one this request is charged to already; "
			         "the request is not sent", pol->name, from, name);
			return RATECTL_EBADNAME;
		}
	if (pol->n >= RATECTL_MANY_MAX) {    /* a loaded config leaves room */
		snprintf(r->why, sizeof r->why, "budget '%s': no room for the "
		         "tenant's budget among %d", pol->name, RATECTL_MANY_MAX);
		return RATECTL_EBADCONFIG;
	}
	memmove(pol->names[1], pol->names[0], pol->n * sizeof pol->names[0]);
	memcpy(pol->names[0], name, sizeof name);
	pol->n++;
	pol->tenant = 1;
	return 0;
}

/* The request's tag from its tag header, when valid; an invalid one is
 * dropped (the request is counted untagged) and said once per handle. */
static void tag_of(ratectl_http_request *r, const ratectl_http_header *hd, size_t nhd)
{
	char shown[RATECTL_TAG_MAX + 1];
	const char *v;
	size_t len, i;

	if (!r->pol.tag_header[0] ||
	    !(v = rh__req_header(hd, nhd, r->pol.tag_header)))
		return;
	v = ows_trim(v, RATECTL_TAG_MAX, &len);
	if (len == 0)
		return;
	if (len <= RATECTL_TAG_MAX) {
		memcpy(r->tag, v, len);
		r->tag[len] = '\0';
		if (ratectl_tag_check(r->tag) == 0)
			return;
		r->tag[0] = '\0';
	}
	if (__atomic_exchange_n(&r->h->told_badtag, 1, __ATOMIC_RELAXED))
		return;
	for (i = 0; i < len && i < RATECTL_TAG_MAX; i++)
		shown[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	shown[i] = '\0';
	rh__notice(r->h, RATECTL_HTTP_NOTICE_BADTAG, "budget '%s': header %s: '%s%s' "
	           "is not a tag (1 to %d characters of A-Z a-z 0-9 . _ : / -): "
	           "such requests are counted without a tag (said once)",
	           r->pol.name, r->pol.tag_header, shown, len > i ? "..." : "",
	           RATECTL_TAG_MAX);
}

/* The request header names the policy reads that are ratectl's own
 * (X-Ratectl-*), for adapters that can keep them from the provider. */
static void drop_headers(ratectl_http_request *r)
{
	const char *hn[2] = { r->pol.tenant_from == RH_TENANT_HEADER ?
	                      r->pol.tenant_header : "", r->pol.tag_header };
	unsigned i, k = 0;

	for (i = 0; i < 2; i++)
		if (strncasecmp(hn[i], "x-ratectl-", 10) == 0 &&
		    !(k == 1 && strcasecmp(hn[i], r->info.drop_headers[0]) == 0))
			r->info.drop_headers[k++] = hn[i];
	r->info.ndrop_headers = k;
}

static uint64_t estimate(const struct rh__policy *pol, const void *body,
                         size_t len, uint64_t size)
{
	uint64_t bytes = body ? len : size, max;
	uint64_t prompt = bytes / pol->bytes_per_token + (bytes % pol->bytes_per_token != 0);

	if (body && rh__jscan_max_tokens(body, len, &max))
		return prompt + max;
	return prompt + pol->default_max_tokens;
}

int ratectl_http_request_begin(ratectl_http_request **out, ratectl_http *h,
                               const char *method, const char *url,
                               const ratectl_http_header *headers, size_t nheaders,
                               const void *body, size_t body_len, uint64_t body_size)
{
	char host[256], path[1024], model[MODEL_MAX], key[RH_KEY_ID_LEN + 1];
	int have_model = 0, have_key;
	struct rh__policy pol;
	ratectl_http_request *r;
	unsigned port, sdk, i;
	uint64_t hash;

	*out = NULL;
	if (!h || !url)
		return -EINVAL;
	if (!method)
		method = "GET";
	if (rh__url_split(url, host, sizeof host, &port, path, sizeof path) != 0)
		return 0;
	if (body && body_len)
		have_model = rh__jscan_string(body, body_len, "model", model, sizeof model);
	have_key = rh__key_id_of(headers, nheaders, key);
	if (!rh__policy_match(h, host, port, path, have_model ? model : NULL,
	                      have_key ? key : NULL, &pol))
		return 0;
	if (!(r = malloc(sizeof *r)))
		return -ENOMEM;
	memset(r, 0, offsetof(struct ratectl_http_request, hdrs));
	rh__hdrs_reset(&r->hdrs);
	rh__body_reset(&r->body);
	r->h = h;
	r->pol = pol;
	r->resendable = body != NULL || body_size == 0;
	if (pol.tenant_from)
		r->tenant_rc = tenant_of(r, headers, nheaders, have_key ? key : NULL);
	tag_of(r, headers, nheaders);
	r->info.budget = r->pol.name;
	for (i = 0; i < r->pol.n; i++)
		r->info.budgets[i] = r->pol.names[i];
	r->info.nbudgets = r->pol.n;
	r->info.tenant = r->pol.tenant ? r->pol.names[0] : NULL;
	r->info.tag = r->tag;
	drop_headers(r);
	r->info.estimate = estimate(&pol, body, body_len, body_size);
	r->info.timeout_ns = pol.timeout_ns;
	r->info.on_error_closed = pol.on_error == RH_ON_ERROR_CLOSED;
	r->info.retries = pol.retries;
	r->info.retry_percent = pol.retry_percent;
	if (pol.cache_ttl_ns && r->tenant_rc == 0)
		r->info.cacheable = rh__cache_key(&r->pol, method, url, path, headers,
		                                  nheaders, body, body ? body_len : 0,
		                                  r->cache.key);
	hash = rh__request_hash(method, url, body, body ? body_len : 0);
	r->hash = hash;
	if ((sdk = sdk_retry_count(headers, nheaders)) > 0) {
		r->info.is_retry = 1;
		r->info.retry_count = sdk;
	}
	pthread_mutex_lock(&h->mu);
	if (rh__seen_take(&h->seen, hash, rh__clock(CLOCK_MONOTONIC)) && !sdk) {
		r->info.is_retry = 1;
		r->info.retry_count = 1;
	}
	pthread_mutex_unlock(&h->mu);
	*out = r;
	return 0;
}

const ratectl_http_info *ratectl_http_request_info(const ratectl_http_request *req)
{
	return &req->info;
}

const char *ratectl_http_request_why(const ratectl_http_request *req)
{
	return req->why;
}

/* ---- admission ------------------------------------------------------------ */

/* The ledger cannot be used: on_error decides. */
static int unusable(ratectl_http_request *r, int rc, const char *why)
{
	if (r->pol.on_error == RH_ON_ERROR_CLOSED) {
		rh__refusal_closed(r->why, sizeof r->why, r->pol.name, why);
		rh__notice(r->h, RATECTL_HTTP_NOTICE_LEDGER, "ledger unusable: %s; budget "
		           "'%s' has on_error = closed: its transfers fail", why, r->pol.name);
		return rc < 0 ? rc : -EIO;
	}
	rh__notice(r->h, RATECTL_HTTP_NOTICE_LEDGER, "ledger unusable: %s; on_error = "
	           "open: transfers pass through unthrottled", why);
	r->state = ST_PASSED;
	return RATECTL_HTTP_PASS;
}

/*
 * Budgets in the config but not yet in the ledger are created from it;
 * a tenant's budget from its template (with its expire, weight and
 * origin), unless the file has a budget of that name.  A budget that
 * exists already (another process was first) is left as it is.
 */
static int create_budgets(ratectl_http_request *r, ratectl *l)
{
	ratectl_budget b;
	ratectl_share sh;
	unsigned i;
	int rc;

	for (i = 0; i < r->pol.n; i++) {
		rc = rh__conf_budget_of(r->h, r->pol.names[i], &b, &sh);
		if (rc == RATECTL_ENOTFOUND && i == 0 && r->pol.tenant) {
			b = r->pol.tenant_budget;
			memset(&sh, 0, sizeof sh);
			rc = 0;
		}
		if (rc != 0)
			return rc;
		rc = ratectl_budget_set(l, r->pol.names[i], &b, RATECTL_CREATE);
		if (rc == RATECTL_EEXISTS)
			continue;
		/* Created here: shared as the config says (`ratectl apply`
		 * changes existing budgets). */
		if (rc == 0 && sh.url[0])
			rc = ratectl_budget_share(l, r->pol.names[i], &sh);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/*
 * The cost can never pass (RATECTL_ETOOBIG): name the limit it exceeds.
 * The estimate is not cut to the burst: admitted at a discount, such
 * requests would reach the provider at many times the budget.
 */
static int too_big(ratectl_http_request *r, ratectl *l, const ratectl_cost *c)
{
	ratectl_budget_info info;
	uint64_t burst = 0, cost = 0;
	const char *dim = "tokens", *name = r->pol.name;
	unsigned i, k;

	for (k = 0; k < r->pol.n && !burst; k++)
		if (ratectl_budget_get(l, r->pol.names[k], &info) == 0)
			for (i = 0; i < info.config.nlimits && !burst; i++) {
				const ratectl_limit *lm = &info.state[i].limit;
				uint64_t need = lm->dim == RATECTL_TOKENS ? c->tokens :
				                c->requests;

				if (need > lm->burst) {
					burst = lm->burst;
					cost = need;
					dim = lm->dim == RATECTL_TOKENS ? "tokens" : "requests";
					name = r->pol.names[k];
				}
			}
	rh__refusal_toobig(r->why, sizeof r->why, name, dim,
	                   cost ? cost : c->tokens, burst);
	rh__notice(r->h, RATECTL_HTTP_NOTICE_TOOBIG, "%s", r->why);
	return RATECTL_ETOOBIG;
}

/* The names of the budgets charged, for the _many calls. */
static void names_of(const ratectl_http_request *r, const char **names)
{
	unsigned i;

	for (i = 0; i < r->pol.n; i++)
		names[i] = r->pol.names[i];
}

/* ratectl_acquire() (_many for several budgets: all or none), carrying
 * on after signals until the deadline. */
static int acquire(ratectl *l, ratectl_http_request *r, const ratectl_cost *c,
                   int64_t deadline)
{
	const char *names[RATECTL_MANY_MAX];
	int64_t left;
	int rc;

	names_of(r, names);
	do {
		left = deadline - ratectl_now(l);
		left = left > 0 ? left : 0;
		rc = r->pol.n == 1 ?
			ratectl_acquire(l, r->pol.name, c, &r->leases[0], left) :
			ratectl_acquire_many(l, names, r->pol.n, c, r->leases, left);
	} while (rc == -EINTR && deadline > ratectl_now(l));
	return rc == -EINTR ? RATECTL_ETIMEDOUT : rc;
}

/* ratectl_try(), or ratectl_try_many(). */
static int try_now(ratectl *l, ratectl_http_request *r, const ratectl_cost *c,
                   int64_t *wait_ns)
{
	const char *names[RATECTL_MANY_MAX];

	if (r->pol.n == 1)
		return ratectl_try(l, r->pol.name, c, &r->leases[0], wait_ns);
	names_of(r, names);
	return ratectl_try_many(l, names, r->pol.n, c, r->leases, wait_ns);
}

/* Release every lease held, with tokens (RATECTL_UNKNOWN: the estimate). */
static void release_all(ratectl_http_request *r, ratectl *l, uint64_t tokens)
{
	unsigned i;

	for (i = 0; i < r->pol.n; i++)
		ratectl_release(l, &r->leases[i], tokens);
}

/* A retry of the SDK's or the client's own: charged to the host-wide
 * retry budget once; past it, the answer is a local 429. */
static int charge_retry(ratectl_http_request *r, ratectl *l)
{
	ratectl_budget_info bi;
	int64_t after = RH_NS_PER_S;
	int rc;

	r->retry_charged = 1;
	rc = ratectl_retry_take(l, r->pol.name, r->pol.retry_percent);
	if (rc == RATECTL_ENOTFOUND && create_budgets(r, l) == 0)
		rc = ratectl_retry_take(l, r->pol.name, r->pol.retry_percent);
	if (rc != RATECTL_ELIMITED)
		return 0;       /* allowed, or the ledger's trouble: admission says */
	if (ratectl_budget_get(l, r->pol.name, &bi) == 0 && bi.cooldown_ns > after)
		after = bi.cooldown_ns;
	snprintf(r->local_after, sizeof r->local_after, "%lld",
	         (long long)((after + RH_NS_PER_S - 1) / RH_NS_PER_S));
	rh__refusal_retries(r->why, sizeof r->why, r->pol.name, r->pol.retry_percent);
	snprintf(r->local_body, sizeof r->local_body, "{\"error\":{\"message\":\"%s\","
	         "\"type\":\"rate_limit_error\",\"code\":\"ratectl_retry_budget\"}}\n",
	         r->why);
	return RATECTL_HTTP_ERETRYBUDGET;
}

static int is_wait(int rc)
{
	return rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN || rc == RATECTL_EINFLIGHT;
}

/*
 * The event loop's first step: admitted now, refused at once when the
 * budget says it cannot be had before the deadline (nothing reserved, as
 * ratectl_acquire() does), else pending: one budget takes its place in
 * line (ratectl_reserve()); several only note when to try again.
 */
static int reserve_first(ratectl *l, ratectl_http_request *r, const ratectl_cost *c)
{
	int64_t hint = 0, now = ratectl_now(l);
	int rc;

	if (r->pol.n == 1) {
		/* The reservation first, not a try: a request that waits its
		 * turn is counted as a wait, not as a refusal. */
		r->res = (ratectl_reservation)RATECTL_RESERVATION_INIT;
		rc = ratectl_reserve(l, r->pol.name, c, &r->res);
		if (rc == 0)
			r->leases[0] = r->res.lease;
		if (rc != RATECTL_EPENDING || r->res.at_ns <= r->deadline)
			return rc;
		/* Its time is past the deadline, or it waits for a slot with
		 * the one-second look past a deadline closer than that: the
		 * try's hint tells the two apart. */
		ratectl_reserve_cancel(l, &r->res);
		rc = try_now(l, r, c, &hint);
		if (!is_wait(rc))
			return rc;
		if (hint > r->deadline - now)
			return RATECTL_ETIMEDOUT;
		r->res = (ratectl_reservation)RATECTL_RESERVATION_INIT;
		rc = ratectl_reserve(l, r->pol.name, c, &r->res);
		if (rc == 0)
			r->leases[0] = r->res.lease;
		return rc;
	}
	rc = try_now(l, r, c, &hint);
	if (!is_wait(rc))
		return rc;
	if (hint > r->deadline - now)
		return RATECTL_ETIMEDOUT;
	r->retry_at = now + (hint ? hint : MANY_SLOT_POLL_NS);
	return RATECTL_EPENDING;
}

static int admitted(ratectl_http_request *r)
{
	r->leased = 1;
	r->state = ST_ADMITTED;
	r->own_retry = 0;
	r->attempt++;
	return 0;
}

/* The cost of one attempt: one request, the estimate, the tag. */
static ratectl_cost cost_of(const ratectl_http_request *r)
{
	ratectl_cost c = { 1, r->info.estimate, RATECTL_INTERACTIVE,
	                   r->tag[0] ? r->tag : NULL };

	return c;
}

static int admit(ratectl_http_request *r, int mode, int64_t timeout, int64_t *wait_ns)
{
	ratectl_cost c = cost_of(r);
	int created = 0, rc;
	char why[512];
	ratectl *l;

	if (r->state == ST_ADMITTED || r->state == ST_PASSED || r->state == ST_PENDING)
		return RATECTL_HTTP_ESTATE;
	if (r->tenant_rc)
		return r->tenant_rc;    /* r->why says why, from begin */
	r->why[0] = '\0';
	if (wait_ns)
		*wait_ns = 0;
	if (timeout < 0)
		timeout = r->pol.timeout_ns;
	if (r->info.cacheable && !r->cache.fetching && !r->cache.off) {
		int64_t t0 = rh__clock(CLOCK_MONOTONIC), hint = 0;

		/* A try never waits: no deadline of its own. */
		if (!r->cache.waiting)
			r->cache.deadline = mode == M_TRY ? INT64_MAX : t0 + timeout;
		switch ((rc = rh__cache_lookup(r->h, &r->pol, &r->cache, mode == M_BLOCK,
		                               &hint))) {
		case RH_CACHE_HIT:
			r->cache.waiting = 0;
			r->state = ST_CACHED;
			return RATECTL_HTTP_CACHED;
		case RH_CACHE_WAIT:
			if (mode == M_TRY) {
				if (wait_ns)
					*wait_ns = hint > 0 ? hint : 1;
				return RATECTL_EPENDING;
			}
			r->cache.waiting = 1;
			r->retry_at = t0 + hint;
			r->state = ST_PENDING;
			return RATECTL_EPENDING;
		case RATECTL_ETIMEDOUT:
			r->cache.waiting = 0;
			snprintf(r->why, sizeof r->why, "budget '%s': waited %lld ms for "
			         "the answer another request is fetching for the response "
			         "cache; the request is not sent", r->pol.name,
			         (long long)(timeout / RH_NS_PER_MS));
			return rc;
		case RH_CACHE_FETCH:
			break;
		default:                /* RH_CACHE_OFF: sent as if uncached */
			r->cache.off = 1;
		}
		r->cache.waiting = 0;
		/* The time spent waiting for another's fetch is the admission's. */
		if (mode != M_TRY) {
			timeout = r->cache.deadline - rh__clock(CLOCK_MONOTONIC);
			if (timeout < 0)
				timeout = 0;
		}
	}
	if (!(l = rh__ledger(r->h, why, sizeof why, &rc)))
		return unusable(r, rc, why);
	if (r->info.is_retry && !r->retry_charged && !r->own_retry &&
	    (rc = charge_retry(r, l)) != 0)
		return rc;
	r->timeout = timeout;
	r->deadline = ratectl_now(l) + timeout;
	for (;;) {
		rc = mode == M_BLOCK ? acquire(l, r, &c, r->deadline) :
		     mode == M_TRY ? try_now(l, r, &c, wait_ns) : reserve_first(l, r, &c);
		if (rc == 0)
			return admitted(r);
		if (rc == RATECTL_EPENDING) {
			r->state = ST_PENDING;
			return rc;
		}
		if (rc == RATECTL_ENOTFOUND && created++ < CREATE_TRIES &&
		    (rc = create_budgets(r, l)) == 0)
			continue;
		if (rc == RATECTL_ETOOBIG)
			return too_big(r, l, &c);
		if (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN ||
		    rc == RATECTL_EINFLIGHT)
			return rc;
		if (rc == RATECTL_ETIMEDOUT) {
			rh__refusal_timeout(r->why, sizeof r->why, r->pol.name, timeout);
			return rc;
		}
		snprintf(why, sizeof why, "%s", *ratectl_errmsg() ? ratectl_errmsg() :
		         ratectl_strerror(rc));
		return unusable(r, rc, why);
	}
}

/* A request that fetches an answer for the cache and is refused for good
 * (not a try to be tried again) gives the fetch up at once: those waiting
 * for its answer go on without it. */
static int fetch_left(ratectl_http_request *r, int rc)
{
	if (r->cache.fetching && rc < 0 && rc != RATECTL_EPENDING && !is_wait(rc))
		rh__cache_finish(r->h, &r->pol, &r->cache, 0, 0, NULL, 0);
	return rc;
}

int ratectl_http_admit(ratectl_http_request *req, int64_t timeout_ns)
{
	return req->last_rc = fetch_left(req, admit(req, M_BLOCK, timeout_ns, NULL));
}

int ratectl_http_try(ratectl_http_request *req, int64_t *wait_ns)
{
	return req->last_rc = fetch_left(req, admit(req, M_TRY, 0, wait_ns));
}

/* ---- admission for event loops ---------------------------------------------- */

static void cache_fill_wait(const ratectl_http_request *r, ratectl_http_wait *w)
{
	int64_t now = rh__clock(CLOCK_MONOTONIC);

	if (!w)
		return;
	w->wait_ns = r->retry_at > now ? r->retry_at - now : 0;
	w->fd = -1;
	w->fifo = 0;
}

static void fill_wait(const ratectl_http_request *r, ratectl *l, ratectl_http_wait *w)
{
	int64_t now = ratectl_now(l), at = r->pol.n == 1 ? r->res.at_ns : r->retry_at;

	if (!w)
		return;
	if (at > r->deadline)
		at = r->deadline;
	w->wait_ns = at > now ? at - now : 0;
	w->fd = r->pol.n == 1 ? r->res.fd : -1;
	w->fifo = r->pol.n == 1;
}

int ratectl_http_reserve(ratectl_http_request *req, int64_t timeout_ns,
                         ratectl_http_wait *w)
{
	ratectl *l;
	int rc;

	if (w) {
		w->wait_ns = 0;
		w->fd = -1;
		w->fifo = req->pol.n == 1;
	}
	rc = req->last_rc = fetch_left(req, admit(req, M_RESERVE, timeout_ns, NULL));
	if (rc == RATECTL_EPENDING && req->cache.waiting)
		cache_fill_wait(req, w);
	else if (rc == RATECTL_EPENDING && (l = rh__ledger_now(req->h)))
		fill_wait(req, l, w);
	return rc;
}

/* Pending on another's fetch: look again after a while; no descriptor
 * says when it ended. */
static int cache_poll(ratectl_http_request *req, ratectl_http_wait *w)
{
	int64_t left = req->cache.deadline - rh__clock(CLOCK_MONOTONIC);
	ratectl *l;
	int rc;

	req->state = ST_BEGUN;
	rc = fetch_left(req, admit(req, M_RESERVE, left > 0 ? left : 0, NULL));
	if (rc == RATECTL_EPENDING && req->cache.waiting)
		cache_fill_wait(req, w);
	else if (rc == RATECTL_EPENDING && (l = rh__ledger_now(req->h)))
		fill_wait(req, l, w);
	return req->last_rc = rc;
}

/* One more try, for several budgets: 0, RATECTL_EPENDING, or an error.
 * Nothing is held while pending, so a tenant's budget may have expired
 * since: it is made again. */
static int many_poll(ratectl_http_request *r, ratectl *l)
{
	ratectl_cost c = cost_of(r);
	int64_t hint = 0;
	int rc = try_now(l, r, &c, &hint);

	if (rc == RATECTL_ENOTFOUND && create_budgets(r, l) == 0)
		rc = try_now(l, r, &c, &hint);
	if (!is_wait(rc))
		return rc;
	r->retry_at = ratectl_now(l) + (hint ? hint : MANY_SLOT_POLL_NS);
	return RATECTL_EPENDING;
}

int ratectl_http_reserve_poll(ratectl_http_request *req, ratectl_http_wait *w)
{
	ratectl *l = rh__ledger_now(req->h);
	int rc;

	if (req->state == ST_PENDING && req->cache.waiting)
		return cache_poll(req, w);
	if (req->state != ST_PENDING || !l)
		return RATECTL_HTTP_ESTATE;
	rc = req->pol.n == 1 ? ratectl_reserve_poll(l, &req->res) : many_poll(req, l);
	if (rc == 0) {
		if (req->pol.n == 1)
			req->leases[0] = req->res.lease;
		return req->last_rc = admitted(req);
	}
	if (rc == RATECTL_EPENDING && ratectl_now(l) < req->deadline) {
		fill_wait(req, l, w);
		return req->last_rc = rc;
	}
	if (rc == RATECTL_EPENDING) {
		if (req->pol.n == 1)
			ratectl_reserve_expire(l, &req->res);   /* counted as refused */
		rh__refusal_timeout(req->why, sizeof req->why, req->pol.name, req->timeout);
		rc = RATECTL_ETIMEDOUT;
	} else {
		snprintf(req->why, sizeof req->why, "%s", *ratectl_errmsg() ?
		         ratectl_errmsg() : ratectl_strerror(rc));
	}
	req->state = ST_BEGUN;
	return req->last_rc = fetch_left(req, rc);
}

void ratectl_http_reserve_cancel(ratectl_http_request *req)
{
	ratectl *l = rh__ledger_now(req->h);

	if (req->state != ST_PENDING)
		return;
	if (req->cache.waiting) {
		req->cache.waiting = 0;
		req->state = ST_BEGUN;
		return;
	}
	if (req->pol.n == 1 && l)
		ratectl_reserve_cancel(l, &req->res);
	req->state = ST_BEGUN;
}

int ratectl_http_events_drain(ratectl_http *h)
{
	ratectl *l = rh__ledger_now(h);

	return l ? ratectl_events_drain(l) : 0;
}

int ratectl_http_local_response(const ratectl_http_request *req,
                                ratectl_http_local *out)
{
	if (req->last_rc != RATECTL_HTTP_ERETRYBUDGET)
		return RATECTL_HTTP_ESTATE;
	memset(out, 0, sizeof *out);
	out->status = 429;
	out->headers[0].name = "x-should-retry";
	out->headers[0].value = "false";
	out->headers[1].name = "retry-after";
	out->headers[1].value = req->local_after;
	out->headers[2].name = "content-type";
	out->headers[2].value = "application/json";
	out->headers[3].name = "x-ratectl";
	out->headers[3].value = "retry-budget";
	out->nheaders = 4;
	out->body = req->local_body;
	out->body_len = strlen(req->local_body);
	return 0;
}

int ratectl_http_cached_response(const ratectl_http_request *req,
                                 ratectl_http_local *out)
{
	const struct rh__cache_req *q = &req->cache;
	size_t n = 0;

	if (req->last_rc != RATECTL_HTTP_CACHED || req->state != ST_CACHED)
		return RATECTL_HTTP_ESTATE;
	memset(out, 0, sizeof *out);
	out->status = q->hit_status;
	if (q->hit_ctype[0]) {
		out->headers[n].name = "content-type";
		out->headers[n++].value = q->hit_ctype;
	}
	out->headers[n].name = "x-ratectl-cache";
	out->headers[n++].value = q->hit_coalesced ? "coalesced" : "hit";
	out->headers[n].name = "age";
	out->headers[n++].value = q->hit_age;
	out->nheaders = n;
	out->body = q->hit_body ? q->hit_body : "";
	out->body_len = q->hit_len;
	return 0;
}

int ratectl_http_response_complete(ratectl_http_request *req)
{
	req->cache.complete = 1;
	return 0;
}

/* ---- the response --------------------------------------------------------- */

int ratectl_http_response_status(ratectl_http_request *req, int status)
{
	req->status = status;
	req->have_status = 1;
	return 0;
}

int ratectl_http_response_header(ratectl_http_request *req, const char *name,
                                 const char *value)
{
	rh__hdrs_add(&req->hdrs, name, value);
	return 0;
}

int ratectl_http_response_headers(ratectl_http_request *req,
                                  const ratectl_http_header *headers, size_t n)
{
	size_t i;

	for (i = 0; headers && i < n; i++)
		rh__hdrs_add(&req->hdrs, headers[i].name, headers[i].value);
	return 0;
}

const char *const *ratectl_http_header_names(size_t *n)
{
	if (n)
		*n = rh__hdr_nnames;
	return rh__hdr_names;
}

int ratectl_http_response_body(ratectl_http_request *req, const void *data,
                               size_t len)
{
	if (data && len) {
		rh__body_feed(&req->body, rh__hdrs_get(&req->hdrs, "content-type"),
		              data, len);
		rh__cache_feed(&req->pol, &req->cache, data, len);
	}
	return 0;
}

/* ---- the end of an attempt ------------------------------------------------ */

static const char *hget(void *ctx, const char *name)
{
	return rh__hdrs_get(ctx, name);
}

/* How long the provider asks us to wait: retry-after-ms, else Retry-After. */
static int retry_after(const struct rh__hdrs *hd, int64_t *ns)
{
	const char *v = rh__hdrs_get(hd, "retry-after-ms");
	uint64_t ms;

	if (v && rh__hdr_count(v, &ms) == 0 && ms < (uint64_t)COOLDOWN_MAX_NS / RH_NS_PER_MS) {
		*ns = (int64_t)ms * RH_NS_PER_MS;
		return 0;
	}
	if ((v = rh__hdrs_get(hd, "retry-after")))
		return ratectl_parse_retry_after(v, rh__clock(CLOCK_REALTIME), ns) == 0 ? 0 : -1;
	return -1;
}

static void learn(ratectl_http_request *r, ratectl *l, ratectl_http_outcome *o)
{
	ratectl_window w[RH_HDR_WINDOWS];
	int64_t wait;
	size_t k;

	if (r->status == 429 || r->status == 503) {
		if (retry_after(&r->hdrs, &wait) != 0)
			wait = r->status == 429 ? COOLDOWN_DEFAULT_NS : 0;
		if (wait > COOLDOWN_MAX_NS)
			wait = COOLDOWN_MAX_NS;
		/* 0 would end a cooldown another process began */
		if (wait > 0 && ratectl_cooldown(l, r->pol.name, wait) == 0)
			o->cooldown_ns = wait;
	}
	k = rh__hdr_windows(hget, &r->hdrs, rh__clock(CLOCK_REALTIME), w, RH_HDR_WINDOWS);
	/* every window of the response in one transaction */
	if (k > 0 && ratectl_observe_windows(l, r->pol.name, w, k, NULL) == 0)
		o->windows = (unsigned)k;
}

static int failed(int status)
{
	return status == 0 || status == 408 || status == 409 || status == 429 ||
	       status >= 500;
}

int ratectl_http_request_end(ratectl_http_request *req, ratectl_http_outcome *out)
{
	ratectl_http_outcome o;
	ratectl *l = rh__ledger_now(req->h);
	uint64_t used;

	if (req->state == ST_CACHED) {
		/* Answered from the cache: nothing was sent, charged or learned. */
		memset(&o, 0, sizeof o);
		o.status = req->cache.hit_status;
		o.attempt = req->attempt;
		req->state = ST_ENDED;
		if (out)
			*out = o;
		return 0;
	}
	if (req->state != ST_ADMITTED && req->state != ST_PASSED)
		return RATECTL_HTTP_ESTATE;
	memset(&o, 0, sizeof o);
	o.status = req->have_status ? req->status : -1;
	o.attempt = req->attempt;
	o.tokens = req->info.estimate;
	if (o.status != 429 && o.status >= 0 && rh__body_usage(&req->body, &used)) {
		o.tokens = used;        /* in full, however far above the estimate */
		o.usage_known = 1;
	}
	if (o.status == 429 || o.status < 0)
		o.tokens = 0;           /* refused, or never sent: nothing used */
	if (req->leased && l) {
		if (o.status >= 0)
			learn(req, l, &o);
		release_all(req, l, o.usage_known || o.tokens == 0 ?
		            o.tokens : RATECTL_UNKNOWN);
	}
	/* A failure is remembered so that the same request sent again is known
	 * for a retry; an answer forgets it (a request sent again after its
	 * retry succeeded is a new request). */
	if (o.status >= 0) {
		int64_t now = rh__clock(CLOCK_MONOTONIC);

		pthread_mutex_lock(&req->h->mu);
		if (failed(o.status))
			rh__seen_put(&req->h->seen, req->hash, now);
		else
			rh__seen_take(&req->h->seen, req->hash, now);
		pthread_mutex_unlock(&req->h->mu);
	}
	if (req->leased && (o.status == 429 || o.status == 503) && req->resendable &&
	    req->attempt <= req->pol.retries && l &&
	    ratectl_retry_take(l, req->pol.name, req->pol.retry_percent) == 0) {
		o.retry = 1;
		req->own_retry = 1;
		pthread_mutex_lock(&req->h->mu);
		o.retry_after_ns = rh__backoff(req->attempt - 1, rh__rand(&req->h->rnd));
		pthread_mutex_unlock(&req->h->mu);
	}
	/* The fetch for the cache ends with the last attempt: a whole 2xx
	 * answer is stored. */
	if (req->cache.fetching && !o.retry)
		rh__cache_finish(req->h, &req->pol, &req->cache,
		                 req->cache.complete && o.status >= 200 && o.status < 300,
		                 o.status, rh__hdrs_get(&req->hdrs, "content-type"),
		                 o.usage_known ? o.tokens : req->info.estimate);
	rh__cache_attempt_reset(&req->cache);
	req->leased = 0;
	req->state = ST_ENDED;
	req->have_status = 0;
	rh__hdrs_reset(&req->hdrs);
	rh__body_reset(&req->body);
	if (out)
		*out = o;
	return 0;
}

int ratectl_http_request_tag(ratectl_http_request *req, const char *tag)
{
	size_t len;

	if (req->state == ST_PENDING)
		return RATECTL_HTTP_ESTATE;
	if (!tag || !tag[0]) {
		req->tag[0] = '\0';
		return 0;
	}
	if ((len = strnlen(tag, RATECTL_TAG_MAX + 1)) > RATECTL_TAG_MAX ||
	    ratectl_tag_check(tag) != 0)
		return RATECTL_EBADNAME;
	memcpy(req->tag, tag, len + 1);
	return 0;
}

void ratectl_http_request_set_resendable(ratectl_http_request *req, int yes)
{
	req->resendable = yes != 0;
}

void ratectl_http_request_free(ratectl_http_request *req)
{
	ratectl *l;

	if (!req)
		return;
	ratectl_http_reserve_cancel(req);
	if (req->leased && (l = rh__ledger_now(req->h)))
		release_all(req, l, 0);
	rh__cache_req_free(req->h, &req->pol, &req->cache);
	free(req);
}
