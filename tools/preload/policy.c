/*
 * policy.c - what the shim does with a transfer: which budget its URL
 * matches (the config file, reloaded when it changes), what it costs,
 * admission and release against the ledger, what the provider's answer
 * teaches the ledger, and on_error when the ledger cannot be used.
 *
 * The ledger holds the live budgets.  The shim creates a budget missing
 * from it from the config file, but never changes an existing one:
 * `ratectl apply` does that, and `ratectl set` changes made live are not
 * undone by the next process that starts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "shim.h"

#define CONF_CHECK_NS SHIM_NS_PER_S     /* look at the file's mtime this often */
#define LEDGER_RETRY_NS SHIM_NS_PER_S   /* try opening a failed ledger again */
#define COOLDOWN_DEFAULT_NS SHIM_NS_PER_S  /* a 429 that says nothing */
#define COOLDOWN_MAX_NS (3600 * SHIM_NS_PER_S)

static pthread_mutex_t conf_mu = PTHREAD_MUTEX_INITIALIZER;
static rc_conf *conf;
static int conf_seen;              /* the file was looked at once */
static struct stat conf_st;        /* the file last loaded (or refused) */
static int64_t conf_next;

static pthread_mutex_t ledger_mu = PTHREAD_MUTEX_INITIALIZER;
static ratectl *ledger;
static int64_t ledger_next;
static char ledger_why[512];

/* ---- the config file ------------------------------------------------------ */

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Load the file once, then look at it at most once a second and reload
 * when it changed.  A bad edit keeps the configuration in force. */
static void conf_refresh_locked(void)
{
	const char *path = rc_conf_default_path();
	int64_t now = shim_clock_ns(CLOCK_MONOTONIC_COARSE);
	char err[512];
	struct stat st;
	rc_conf *n;

	if (conf_seen && now < conf_next)
		return;
	conf_next = now + CONF_CHECK_NS;
	if (stat(path, &st) != 0) {
		if (!conf)
			shim_warn(SHIM_W_NOCONF, "no config file %s (%s): transfers pass "
			          "through; set RATECTL_CONFIG", path, strerror(errno));
		conf_seen = 1;
		return;
	}
	if (conf_seen && same_file(&st, &conf_st))
		return;
	conf_seen = 1;
	conf_st = st;
	if (rc_conf_load(&n, path, err, sizeof err) != 0) {
		shim_warn(SHIM_W_BADCONF, "%s; %s", err, conf ?
		          "keeping the configuration loaded before" :
		          "transfers pass through");
		return;
	}
	rc_conf_free(conf);
	conf = n;
}

static void policy_copy(struct shim_policy *p, const rc_conf_budget *b)
{
	memcpy(p->name, b->name, sizeof p->name);
	p->on_error = b->on_error;
	p->retries = b->retries;
	p->retry_percent = b->retry_percent;
	p->timeout_ns = b->timeout_ns;
	p->bytes_per_token = b->bytes_per_token ? b->bytes_per_token : 4;
	p->default_max_tokens = b->default_max_tokens;
}

/* ---- matching ------------------------------------------------------------- */

/*
 * scheme://[userinfo@]host[:port][/path][?query][#frag] into host (no
 * brackets for IPv6), port (the scheme's default when absent) and path
 * (no query).  A URL without a scheme is http, as libcurl guesses.
 * Returns -1 for other schemes: only HTTP is ours.
 */
static int url_split(const char *u, char *host, size_t hl, unsigned *port,
                     char *path, size_t pl)
{
	const char *h = strstr(u, "://"), *ae, *at, *he, *q, *pe;
	unsigned long v;

	*port = 80;
	if (h && (size_t)(h - u) == 5 && strncasecmp(u, "https", 5) == 0)
		*port = 443;
	else if (h && !((size_t)(h - u) == 4 && strncasecmp(u, "http", 4) == 0))
		return -1;
	h = h ? h + 3 : u;
	ae = h + strcspn(h, "/?#");
	for (at = NULL, q = h; q < ae; q++)
		if (*q == '@')
			at = q;
	if (at)
		h = at + 1;
	if (*h == '[') {
		if (!(he = memchr(h, ']', (size_t)(ae - h))))
			return -1;
		q = he + 1;
		h++;
	} else {
		he = memchr(h, ':', (size_t)(ae - h));
		he = he ? he : ae;
		q = he;
	}
	if (he > h && he[-1] == '.')
		he--;                   /* "api.openai.com." */
	if (he == h || (size_t)(he - h) >= hl)
		return -1;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	if (q < ae && *q == ':' && q + 1 < ae) {
		v = strtoul(q + 1, NULL, 10);
		if (v == 0 || v > 65535)
			return -1;
		*port = (unsigned)v;
	}
	pe = ae + strcspn(ae, "?#");
	if (*ae != '/' || (size_t)(pe - ae) >= pl)
		pe = ae;        /* no path (or absurdly long): match as "/" */
	snprintf(path, pl, "%.*s", pe > ae ? (int)(pe - ae) : 1, pe > ae ? ae : "/");
	return 0;
}

int shim_match(const struct shim_curl *api, CURL *e, const struct xfer *x,
               struct shim_policy *pol)
{
	char host[256], path[1024], *u = NULL;
	const rc_conf_budget *b = NULL;
	unsigned port;
	int rc;

	if (x && x->curlu && api->url_get) {
		if (api->url_get(x->curlu, CURLUPART_URL, &u, 0) != CURLUE_OK || !u)
			return 0;
		rc = url_split(u, host, sizeof host, &port, path, sizeof path);
		api->free(u);
	} else {
		/* Filled from CURLOPT_URL at setopt time (libcurl >= 7.62). */
		if (api->easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &u) != CURLE_OK || !u)
			return 0;
		rc = url_split(u, host, sizeof host, &port, path, sizeof path);
	}
	if (rc != 0)
		return 0;
	if (x && x->port)
		port = x->port;
	shim_fork_guard(&conf_mu);
	pthread_mutex_lock(&conf_mu);
	conf_refresh_locked();
	if (conf && (b = rc_conf_match(conf, host, port, path)))
		policy_copy(pol, b);
	pthread_mutex_unlock(&conf_mu);
	return b != NULL;
}

uint64_t shim_estimate(const struct shim_policy *pol, const struct xfer *x)
{
	uint64_t bytes = 0, prompt;
	int64_t max = -1;

	if (x)
		xfer_body(x, &bytes, &max);
	prompt = (bytes + pol->bytes_per_token - 1) / pol->bytes_per_token;
	return prompt + (max >= 0 ? (uint64_t)max : pol->default_max_tokens);
}

/* ---- the ledger ----------------------------------------------------------- */

/* Once open, the handle is kept for the life of the process. */
static ratectl *ledger_now(void)
{
	return __atomic_load_n(&ledger, __ATOMIC_ACQUIRE);
}

/*
 * The process's handle, opened at the first matched transfer; after a
 * failure, tried again at most once a second.  NULL when unusable, with
 * the reason in why.
 *
 * ratectl_open() runs outside ledger_mu: it takes the library's registry
 * lock, which the library's fork handler takes before the shim's handler
 * takes ledger_mu (handlers registered later run first), so holding
 * ledger_mu across it could deadlock against a fork in another thread.
 * Threads that open at once (the first transfers of a process) race to
 * publish; the library hands them the same shared handle, and a loser
 * closes its reference.
 */
static ratectl *ledger_get(char *why, size_t len)
{
	int64_t now = shim_clock_ns(CLOCK_MONOTONIC_COARSE);
	ratectl *h = ledger_now(), *n = NULL, *none = NULL;
	int rc, try = 0;

	if (h)
		return h;
	shim_fork_guard(&ledger_mu);
	pthread_mutex_lock(&ledger_mu);
	try = now >= ledger_next;       /* 0 until an open failed */
	pthread_mutex_unlock(&ledger_mu);
	if (try) {
		if ((rc = ratectl_open(&n, NULL, NULL)) == 0) {
			if (!__atomic_compare_exchange_n(&ledger, &none, n, 0,
			                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				ratectl_close(n);       /* another thread published first */
		} else {
			pthread_mutex_lock(&ledger_mu);
			ledger_next = now + LEDGER_RETRY_NS;
			snprintf(ledger_why, sizeof ledger_why, "%s", *ratectl_errmsg() ?
			         ratectl_errmsg() : ratectl_strerror(rc));
			pthread_mutex_unlock(&ledger_mu);
		}
	}
	if ((h = ledger_now()))
		return h;
	pthread_mutex_lock(&ledger_mu);
	snprintf(why, len, "%s", ledger_why[0] ? ledger_why : "not opened yet");
	pthread_mutex_unlock(&ledger_mu);
	return NULL;
}

/* The ledger cannot be used: on_error decides. */
static int unusable(struct xfer *x, const char *why)
{
	if (x->pol.on_error == RC_ON_ERROR_CLOSED) {
		shim_refusal_closed(x->refusal, sizeof x->refusal, x->pol.name, why);
		shim_warn(SHIM_W_LEDGER, "ledger unusable: %s; budget '%s' has on_error "
		          "= closed: its transfers fail", why, x->pol.name);
		return SHIM_REFUSE;
	}
	shim_warn(SHIM_W_LEDGER, "ledger unusable: %s; on_error = open: transfers "
	          "pass through unthrottled", why);
	return SHIM_PASS;
}

/* A budget in the config but not yet in the ledger is created from it. */
static int create_budget(ratectl *h, const char *name)
{
	ratectl_budget b;
	const rc_conf_budget *cb;
	int found = 0, rc;

	pthread_mutex_lock(&conf_mu);
	if (conf && (cb = rc_conf_find(conf, name))) {
		b = cb->budget;
		found = 1;
	}
	pthread_mutex_unlock(&conf_mu);
	if (!found)
		return RATECTL_ENOTFOUND;
	rc = ratectl_budget_set(h, name, &b, RATECTL_CREATE);
	return rc == RATECTL_EEXISTS ? 0 : rc;
}

/*
 * The cost can never pass (RATECTL_ETOOBIG): name the limit it exceeds.
 * The estimate is not cut to the burst: admitted at a discount, such
 * requests would reach the provider at many times the budget.
 */
static int too_big(ratectl *h, struct xfer *x, const ratectl_cost *c)
{
	ratectl_budget_info info;
	uint64_t burst = 0, cost = 0;
	const char *dim = "tokens";
	unsigned i;

	if (ratectl_budget_get(h, x->pol.name, &info) == 0)
		for (i = 0; i < info.config.nlimits && !burst; i++) {
			const ratectl_limit *l = &info.state[i].limit;
			uint64_t need = l->dim == RATECTL_TOKENS ? c->tokens : c->requests;

			if (need > l->burst) {
				burst = l->burst;
				cost = need;
				dim = l->dim == RATECTL_TOKENS ? "tokens" : "requests";
			}
		}
	shim_refusal_toobig(x->refusal, sizeof x->refusal, x->pol.name, dim,
	                    cost ? cost : c->tokens, burst);
	shim_warn(SHIM_W_TOOBIG, "%s", x->refusal);
	return SHIM_REFUSE;
}

/* ratectl_acquire(), carrying on after signals until the deadline. */
static int acquire(ratectl *h, struct xfer *x, const ratectl_cost *c)
{
	int64_t deadline = shim_now() + x->pol.timeout_ns, left;
	int rc;

	do {
		left = deadline - shim_now();
		rc = ratectl_acquire(h, x->pol.name, c, &x->lease, left > 0 ? left : 0);
	} while (rc == -EINTR && deadline > shim_now());
	return rc == -EINTR ? RATECTL_ETIMEDOUT : rc;
}

int shim_admit(struct xfer *x, int block, int64_t *wait_ns)
{
	ratectl_cost c = { .requests = 1, .tokens = x->estimate };
	int created = 0, rc;
	char why[512];
	ratectl *h;

	x->leased = 0;
	x->refusal[0] = '\0';
	if (!(h = ledger_get(why, sizeof why)))
		return unusable(x, why);
	for (;;) {
		rc = block ? acquire(h, x, &c) :
			ratectl_try(h, x->pol.name, &c, &x->lease, wait_ns);
		if (rc == 0) {
			x->leased = 1;
			return SHIM_ADMITTED;
		}
		if (rc == RATECTL_ENOTFOUND && !created++ &&
		    (rc = create_budget(h, x->pol.name)) == 0)
			continue;
		if (rc == RATECTL_ETOOBIG)
			return too_big(h, x, &c);
		if (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN ||
		    rc == RATECTL_EINFLIGHT)
			return SHIM_WAIT;
		if (rc == RATECTL_ETIMEDOUT) {
			shim_refusal_timeout(x->refusal, sizeof x->refusal, x->pol.name,
			                     x->pol.timeout_ns);
			return SHIM_REFUSE;
		}
		snprintf(why, sizeof why, "%s", *ratectl_errmsg() ? ratectl_errmsg() :
		         ratectl_strerror(rc));
		return unusable(x, why);
	}
}

void shim_release(struct xfer *x, long status)
{
	uint64_t tokens = RATECTL_UNKNOWN, used;
	ratectl *h = ledger_now();

	if (!x->leased)
		return;
	x->leased = 0;
	if (status == 429 || status < 0)
		tokens = 0;             /* refused, or never sent: nothing used */
	else if (x->tee && shim_tee_usage(x->tee, &used))
		tokens = used;          /* in full, however far above the estimate */
	if (h)
		ratectl_release(h, &x->lease, tokens);
}

int shim_retry_take(const struct xfer *x)
{
	ratectl *h = ledger_now();

	return h && ratectl_retry_take(h, x->pol.name, x->pol.retry_percent) == 0;
}

/* ---- learning from the response ------------------------------------------- */

static const char *header(const struct shim_curl *a, CURL *e, const char *name)
{
	struct curl_header *hh;

	if (!a->easy_header ||
	    a->easy_header(e, name, 0, CURLH_HEADER, -1, &hh) != CURLHE_OK)
		return NULL;
	return hh->value;
}

/* How long the provider asks us to wait, from retry-after-ms, Retry-After
 * or, without curl_easy_header(), CURLINFO_RETRY_AFTER. */
static int retry_after(const struct shim_curl *a, CURL *e, int64_t *ns)
{
	const char *v = header(a, e, "retry-after-ms");
	curl_off_t secs = 0;
	uint64_t ms;

	if (v && shim_hdr_count(v, &ms) == 0 && ms < (uint64_t)COOLDOWN_MAX_NS / SHIM_NS_PER_MS) {
		*ns = (int64_t)ms * SHIM_NS_PER_MS;
		return 0;
	}
	if ((v = header(a, e, "retry-after")))
		return ratectl_parse_retry_after(v, shim_clock_ns(CLOCK_REALTIME), ns) == 0 ? 0 : -1;
	if (!a->easy_header && a->easy_getinfo(e, CURLINFO_RETRY_AFTER, &secs) ==
	    CURLE_OK && secs > 0) {
		*ns = (int64_t)secs * SHIM_NS_PER_S;
		return 0;
	}
	return -1;
}

/* Header values for shim_hdr_windows(), copied: a value curl_easy_header()
 * returns is promised only until its next call. */
struct hget {
	const struct shim_curl *a;
	CURL *e;
	struct shim_hdr_copies c;
};

static const char *hget(void *ctx, const char *name)
{
	struct hget *g = ctx;

	return shim_hdr_keep(&g->c, header(g->a, g->e, name));
}

void shim_learn(const struct shim_curl *a, CURL *e, const struct xfer *x,
                long status)
{
	ratectl_window w[SHIM_HDR_WINDOWS];
	ratectl *h = ledger_now();
	const char *n = x->pol.name;
	struct hget g;
	int64_t wait;
	size_t i, k;

	if (!h)
		return;
	if (status == 429 || status == 503) {
		if (retry_after(a, e, &wait) != 0)
			wait = status == 429 ? COOLDOWN_DEFAULT_NS : 0;
		if (wait > 0)   /* 0 would end a cooldown another process began */
			ratectl_cooldown(h, n, wait < COOLDOWN_MAX_NS ? wait : COOLDOWN_MAX_NS);
	}
	if (!a->easy_header)
		return;
	g.a = a;
	g.e = e;
	g.c.next = 0;
	k = shim_hdr_windows(hget, &g, shim_clock_ns(CLOCK_REALTIME), w, SHIM_HDR_WINDOWS);
	for (i = 0; i < k; i++)
		ratectl_observe_window(h, n, &w[i], NULL);
}
