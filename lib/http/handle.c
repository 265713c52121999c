/*
 * handle.c - one ratectl_http: the config file (loaded at the first
 * request, looked at no more than once a second, reloaded when it
 * changed), the ledger (opened at the first matched request), notices,
 * and the fork handlers that keep the handles' mutexes usable in a child.
 *
 * The ledger holds the live budgets.  A budget in the config but not yet
 * in the ledger is created from it; an existing one is never changed
 * here: `ratectl apply` does that, and `ratectl set` changes made live
 * are not undone by the next process that starts.
 *
 * Locks: h->mu guards the config, the retry table and the ledger's retry
 * time; it is never held across a call into libratectl, whose fork
 * handler takes its registry lock after ours is taken (handlers
 * registered later run first), so holding h->mu across ratectl_open()
 * could deadlock against a fork in another thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rh.h"

#define CONF_CHECK_NS RH_NS_PER_S     /* look at the file's mtime this often */
#define LEDGER_RETRY_NS RH_NS_PER_S   /* try opening a failed ledger again */

int64_t rh__clock(int clock_id)
{
	struct timespec ts;

	clock_gettime((clockid_t)clock_id, &ts);
	return (int64_t)ts.tv_sec * RH_NS_PER_S + ts.tv_nsec;
}

/* ---- fork ----------------------------------------------------------------- */

/* Every open handle, so that fork() waits for no h->mu to be held. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static ratectl_http *reg;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
	ratectl_http *h;

	pthread_mutex_lock(&reg_mu);
	for (h = reg; h; h = h->next)
		pthread_mutex_lock(&h->mu);
}

static void fork_after(void)
{
	ratectl_http *h;

	for (h = reg; h; h = h->next)
		pthread_mutex_unlock(&h->mu);
	pthread_mutex_unlock(&reg_mu);
}

static void reg_init(void)
{
	pthread_atfork(fork_prepare, fork_after, fork_after);
}

/* ---- notices -------------------------------------------------------------- */

void rh__notice(ratectl_http *h, int kind, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!h->notice)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	h->notice(h->notice_ctx, kind, msg);
}

/* ---- open, close ---------------------------------------------------------- */

int ratectl_http_open(ratectl_http **out, const ratectl_http_options *opts)
{
	static const ratectl_http_options none = RATECTL_HTTP_OPTIONS_INIT;
	char err[512];
	ratectl_http *h;
	int rc;

	*out = NULL;
	if (!opts)
		opts = &none;
	if (opts->version != RATECTL_HTTP_OPTIONS_VERSION ||
	    (opts->config_path && strlen(opts->config_path) >= sizeof h->path) ||
	    (opts->ledger_dir && strlen(opts->ledger_dir) >= sizeof h->ledger_dir))
		return -EINVAL;
	if (!(h = calloc(1, sizeof *h)))
		return -ENOMEM;
	pthread_mutex_init(&h->mu, NULL);
	h->notice = opts->notice;
	h->notice_ctx = opts->notice_ctx;
	h->ledger = opts->ledger;
	h->own_ledger = !opts->ledger;
	snprintf(h->ledger_dir, sizeof h->ledger_dir, "%s", opts->ledger_dir ?
	         opts->ledger_dir : "");
	h->rnd = (uint64_t)rh__clock(CLOCK_MONOTONIC) ^ ((uint64_t)getpid() << 32) ^
	         (uint64_t)(uintptr_t)h;
	h->rnd = h->rnd ? h->rnd : 1;
	if (opts->config_text) {
		rc = rh__conf_parse(&h->conf, "config", opts->config_text,
		                    opts->config_len, err, sizeof err);
		if (rc != 0) {
			/* libratectl's ratectl_errmsg() is not ours to set:
			 * the notice callback hears where the error is. */
			if (h->notice)
				h->notice(h->notice_ctx, RATECTL_HTTP_NOTICE_BADCONFIG, err);
			pthread_mutex_destroy(&h->mu);
			free(h);
			return rc;
		}
		h->conf_seen = 1;       /* never reloaded: path stays "" */
	} else {
		snprintf(h->path, sizeof h->path, "%s", opts->config_path ?
		         opts->config_path : rh__conf_default_path());
	}
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg_mu);
	h->next = reg;
	reg = h;
	pthread_mutex_unlock(&reg_mu);
	*out = h;
	return 0;
}

void ratectl_http_close(ratectl_http *h)
{
	ratectl_http **pp;

	if (!h)
		return;
	pthread_mutex_lock(&reg_mu);
	for (pp = &reg; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	pthread_mutex_unlock(&reg_mu);
	rh__cache_release(h->cache);
	if (h->own_ledger && h->ledger)
		ratectl_close(h->ledger);
	rh__conf_free(h->conf);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* ---- the config file ------------------------------------------------------ */

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Load the file once, then look at it at most once a second and reload
 * when it changed.  A bad edit keeps the configuration in force.  What to
 * tell goes into msg (kind *kind), said once the lock is dropped. */
static void conf_refresh_locked(ratectl_http *h, int *kind, char *msg, size_t len)
{
	int64_t now;
	char err[512];
	struct stat st;
	rh__conf *n;

	if (!h->path[0])
		return;
	now = rh__clock(CLOCK_MONOTONIC_COARSE);
	if (h->conf_seen && now < h->conf_next)
		return;
	h->conf_next = now + CONF_CHECK_NS;
	if (stat(h->path, &st) != 0) {
		if (!h->conf) {
			*kind = RATECTL_HTTP_NOTICE_NOCONFIG;
			snprintf(msg, len, "no config file %.900s (%s): transfers pass "
			         "through; set RATECTL_CONFIG", h->path, strerror(errno));
		}
		h->conf_seen = 1;
		return;
	}
	if (h->conf_seen && same_file(&st, &h->conf_st))
		return;
	h->conf_seen = 1;
	h->conf_st = st;
	if (rh__conf_load(&n, h->path, err, sizeof err) != 0) {
		*kind = RATECTL_HTTP_NOTICE_BADCONFIG;
		snprintf(msg, len, "%s; %s", err, h->conf ?
		         "keeping the configuration loaded before" :
		         "transfers pass through");
		return;
	}
	rh__conf_free(h->conf);
	h->conf = n;
}

static void policy_copy(struct rh__policy *p, const rh__conf *conf,
                        const rh__conf_budget *b)
{
	const char *names[RATECTL_MANY_MAX], *bad;
	int i, n = rh__conf_charged(conf, b, names, RATECTL_MANY_MAX, &bad);
	const rh__conf_budget *t;

	/* A loaded config was checked: n < 1 cannot happen; b alone then. */
	if (n < 1) {
		names[0] = b->name;
		n = 1;
	}
	for (i = 0; i < n; i++)
		memcpy(p->names[i], names[i], sizeof p->names[i]);
	p->n = (unsigned)n;
	memcpy(p->name, b->name, sizeof p->name);
	p->on_error = b->on_error;
	p->retries = b->retries;
	p->retry_percent = b->retry_percent;
	p->timeout_ns = b->timeout_ns;
	p->bytes_per_token = b->bytes_per_token ? b->bytes_per_token : 4;
	p->default_max_tokens = b->default_max_tokens;
	p->tenant = 0;
	p->tenant_from = RH_TENANT_NONE;
	if (b->tenant_from && (t = rh__conf_template_find(conf, b->tenant_template))) {
		p->tenant_from = b->tenant_from;
		memcpy(p->tenant_header, b->tenant_header, sizeof p->tenant_header);
		memcpy(p->tenant_template, t->name, sizeof p->tenant_template);
		memcpy(p->tenant_default, b->tenant_default, sizeof p->tenant_default);
		p->tenant_budget = t->budget;
	}
	memcpy(p->tag_header, b->tag_header, sizeof p->tag_header);
	p->cache_ttl_ns = b->cache_ttl_ns;
	p->cache_size = b->cache_size;
	p->cache_entry_max = b->cache_entry_max;
	p->cache_requests = b->cache_requests;
}

int rh__policy_match(ratectl_http *h, const char *host, unsigned port,
                     const char *path, const char *model, const char *key_id,
                     struct rh__policy *pol)
{
	const rh__conf_budget *b = NULL;
	char msg[1024];
	int kind = 0;

	pthread_mutex_lock(&h->mu);
	conf_refresh_locked(h, &kind, msg, sizeof msg);
	if (h->conf && (b = rh__conf_match(h->conf, host, port, path, model, key_id)))
		policy_copy(pol, h->conf, b);
	pthread_mutex_unlock(&h->mu);
	if (kind)
		rh__notice(h, kind, "%s", msg);
	return b != NULL;
}

int rh__conf_budget_of(ratectl_http *h, const char *name, ratectl_budget *out,
                       ratectl_share *share)
{
	const rh__conf_budget *cb;
	int rc = RATECTL_ENOTFOUND;

	pthread_mutex_lock(&h->mu);
	if (h->conf && (cb = rh__conf_find(h->conf, name))) {
		*out = cb->budget;
		*share = cb->share;
		rc = 0;
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

/* ---- the ledger ----------------------------------------------------------- */

ratectl *rh__ledger_now(ratectl_http *h)
{
	return __atomic_load_n(&h->ledger, __ATOMIC_ACQUIRE);
}

/*
 * Opened at the first matched request; after a failure, tried again at
 * most once a second.  Threads that open at once race to publish; the
 * library hands them the same shared handle, and a loser closes its
 * reference.
 */
ratectl *rh__ledger(ratectl_http *h, char *why, size_t len, int *err)
{
	int64_t now = rh__clock(CLOCK_MONOTONIC_COARSE);
	ratectl *l = rh__ledger_now(h), *n = NULL, *none = NULL;
	int rc, try;

	if (l)
		return l;
	pthread_mutex_lock(&h->mu);
	try = now >= h->ledger_next;
	pthread_mutex_unlock(&h->mu);
	if (try) {
		if ((rc = ratectl_open(&n, h->ledger_dir[0] ? h->ledger_dir : NULL, NULL)) == 0) {
			if (!__atomic_compare_exchange_n(&h->ledger, &none, n, 0,
			                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				ratectl_close(n);
		} else {
			pthread_mutex_lock(&h->mu);
			h->ledger_next = now + LEDGER_RETRY_NS;
			h->ledger_rc = rc;
			snprintf(h->ledger_why, sizeof h->ledger_why, "%s", *ratectl_errmsg() ?
			         ratectl_errmsg() : ratectl_strerror(rc));
			pthread_mutex_unlock(&h->mu);
		}
	}
	if ((l = rh__ledger_now(h)))
		return l;
	pthread_mutex_lock(&h->mu);
	snprintf(why, len, "%s", h->ledger_why[0] ? h->ledger_why : "not opened yet");
	*err = h->ledger_rc ? h->ledger_rc : -EAGAIN;
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* ---- errors --------------------------------------------------------------- */

const char *ratectl_http_strerror(int code)
{
	switch (code) {
#define RATECTL_HTTP__ERRSTR(name, off, desc) case RATECTL_HTTP_E##name: return desc;
	RATECTL_HTTP_ERRNO_MAP(RATECTL_HTTP__ERRSTR)
#undef RATECTL_HTTP__ERRSTR
	case RATECTL_HTTP_PASS:
		return "ledger unusable: pass through (on_error = open)";
	default:
		return ratectl_strerror(code);
	}
}
