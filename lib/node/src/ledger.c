/* ledger.c - libratectl for JavaScript: the ledger handle, budgets,
 * admission (try, and the event-loop reservation), leases.
 *
 * Lifetimes.  A ledger handle (rn_ledger) is counted: the JavaScript
 * Ledger holds one reference, and so does every lease and reservation
 * it gave out, so that a lease released, or garbage-collected, after
 * its Ledger never touches a freed handle.  close() closes the library
 * handle at once (its leases are then released without a count, as
 * ratectl_close() does); the struct goes with the last reference. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rn.h"

typedef struct rn_resv rn_resv;

typedef struct rn_ledger {
	ratectl *h;              /* NULL once closed */
	unsigned refs;
	rn_resv *pending;        /* pending reservations, cancelled by close */
} rn_ledger;

typedef struct rn_lease {
	ratectl_lease lease;
	rn_ledger *L;
} rn_lease;

struct rn_resv {
	ratectl_reservation r;
	/* The cost's tag: the library keeps the cost, tag pointer included,
	 * in the pending reservation, so the tag lives as long as r. */
	char tag[RATECTL_TAG_MAX + 1];
	rn_ledger *L;
	rn_resv *prev, *next;    /* in L->pending while pending */
	int pending;             /* r is pending: cancel it if dropped */
	int admitted;            /* r.lease is held and not yet taken */
};

static void set_pending(rn_resv *r, int pending)
{
	rn_ledger *L = r->L;

	if (pending == r->pending)
		return;
	if (pending) {
		r->prev = NULL;
		r->next = L->pending;
		if (L->pending)
			L->pending->prev = r;
		L->pending = r;
	} else {
		if (r->prev)
			r->prev->next = r->next;
		else
			L->pending = r->next;
		if (r->next)
			r->next->prev = r->prev;
		r->prev = r->next = NULL;
	}
	r->pending = pending;
}

static void ledger_unref(rn_ledger *L)
{
	if (--L->refs > 0)
		return;
	if (L->h)
		ratectl_close(L->h);
	free(L);
}

/* The handle of a live ledger, or NULL with an error thrown. */
static ratectl *live(napi_env env, rn_ledger *L)
{
	if (!L->h)
		rn_throw_rc(env, -EBADF, "ratectl.Ledger is closed");
	return L->h;
}

static void *external(napi_env env, napi_value v, const char *what)
{
	void *p = NULL;

	if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
		rn_throw_type(env, what);
		return NULL;
	}
	return p;
}

#define ARG_LEDGER(v) external(env, (v), "a ratectl ledger handle is needed")

static napi_value wrap(napi_env env, void *p, napi_finalize fin)
{
	napi_value ext;

	if (napi_create_external(env, p, fin, NULL, &ext) != napi_ok) {
		rn_throw_napi(env, "napi_create_external");
		return NULL;
	}
	return ext;
}

static void ledger_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	ledger_unref(data);
}

/* open(path?) */
static napi_value n_open(napi_env env, napi_callback_info info)
{
	napi_value argv[1], ext;
	char *path = NULL;
	rn_ledger *L;
	ratectl *h;
	int rc;

	if (rn_args(env, info, 1, argv))
		return NULL;
	if (!rn_is_nullish(env, argv[0]) && rn_string(env, argv[0], "path", &path, NULL))
		return NULL;
	rc = ratectl_open(&h, path, NULL);
	free(path);
	if (rc) {
		rn_throw_rc(env, rc, ratectl_errmsg());
		return NULL;
	}
	if (!(L = calloc(1, sizeof *L))) {
		ratectl_close(h);
		rn_throw_rc(env, -ENOMEM, NULL);
		return NULL;
	}
	L->h = h;
	L->refs = 1;
	if (!(ext = wrap(env, L, ledger_finalize)))
		ledger_unref(L);
	return ext;
}

static napi_value n_close(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_ledger *L;

	if (rn_args(env, info, 1, argv) || !(L = ARG_LEDGER(argv[0])))
		return NULL;
	/* No reservation may stay pending on a closed handle. */
	while (L->pending) {
		if (L->h)
			ratectl_reserve_cancel(L->h, &L->pending->r);
		set_pending(L->pending, 0);
	}
	if (L->h)
		ratectl_close(L->h);
	L->h = NULL;
	return rn_undefined(env);
}

static napi_value n_path(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_ledger *L;

	if (rn_args(env, info, 1, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L))
		return NULL;
	return rn_str(env, ratectl_path(L->h));
}

/* now(L) -> nanoseconds on the ledger's clock, as a number. */
static napi_value n_now(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_ledger *L;

	if (rn_args(env, info, 1, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L))
		return NULL;
	return rn_num(env, (double)ratectl_now(L->h));
}

/* A library call's result: undefined, or the error thrown. */
static napi_value result(napi_env env, int rc)
{
	if (rc) {
		rn_throw_rc(env, rc, ratectl_errmsg());
		return NULL;
	}
	return rn_undefined(env);
}

static int array_u64(napi_env env, napi_value arr, uint32_t i, const char *what, uint64_t *out)
{
	napi_value v;

	if (napi_get_element(env, arr, i, &v) != napi_ok) {
		rn_throw_napi(env, what);
		return -1;
	}
	return rn_u64(env, v, what, out);
}

/* A string argument into buf[cap] (cap - 1 bytes at most, NUL included
 * in cap), never cut: longer, or with a NUL inside, throws RatectlError
 * `code` (the library's own error for such a value) with `what` named.
 * Nullish: *has = 0 and buf "".  Not a string: TypeError. */
static int fixed_string(napi_env env, napi_value v, const char *what, char *buf,
                        size_t cap, int code, int *has)
{
	napi_valuetype t;
	char msg[128];
	size_t n = 0;

	buf[0] = '\0';
	*has = 0;
	if (rn_is_nullish(env, v))
		return 0;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
		snprintf(msg, sizeof msg, "%s must be a string", what);
		rn_throw_type(env, msg);
		return -1;
	}
	/* The length first: a copy into buf would silently cut a long value
	 * (at a character's boundary), and the cut value could be valid. */
	if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
		rn_throw_napi(env, what);
		return -1;
	}
	if (n >= cap) {
		snprintf(msg, sizeof msg, "invalid %s: longer than %zu bytes", what, cap - 1);
		rn_throw_rc(env, code, msg);
		return -1;
	}
	if (napi_get_value_string_utf8(env, v, buf, cap, &n) != napi_ok) {
		rn_throw_napi(env, what);
		return -1;
	}
	if (strlen(buf) != n) {
		snprintf(msg, sizeof msg, "invalid %s: contains a NUL character", what);
		rn_throw_rc(env, code, msg);
		return -1;
	}
	*has = 1;
	return 0;
}

/* A request's tag into buf[RATECTL_TAG_MAX + 1], checked by the library;
 * *has = 0 when there is none (undefined or null). */
static int tag_arg(napi_env env, napi_value v, char *buf, int *has)
{
	int rc;

	if (fixed_string(env, v, "tag", buf, RATECTL_TAG_MAX + 1, RATECTL_EBADNAME, has))
		return -1;
	if (*has && (rc = ratectl_tag_check(buf)) != 0) {
		rn_throw_rc(env, rc, ratectl_errmsg());
		return -1;
	}
	return 0;
}

/* set(L, name, dims[], counts[], periodsNs[], bursts[], maxInflight,
 *     jitterNs, batchShare, flags, expireNs, weight, origin) */
static napi_value n_set(napi_env env, napi_callback_info info)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;
	char name[RATECTL_NAME_MAX + 1];
	napi_value argv[13];
	uint64_t u, dim, inflight, share, flags, weight;
	int64_t jitter, expire;
	uint32_t n, i;
	rn_ledger *L;
	bool isarr;
	int has;

	if (rn_args(env, info, 13, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L) ||
	    rn_name(env, argv[1], name))
		return NULL;
	for (i = 2; i < 6; i++) {
		RN_CALL(env, napi_is_array(env, argv[i], &isarr));
		if (!isarr) {
			rn_throw_type(env, "set: limits must be arrays");
			return NULL;
		}
	}
	RN_CALL(env, napi_get_array_length(env, argv[2], &n));
	if (n > RATECTL_MAX_LIMITS) {
		rn_throw_rc(env, RATECTL_EBADCONFIG, "invalid budget configuration: more than 8 limits");
		return NULL;
	}
	for (i = 0; i < n; i++) {
		ratectl_limit *l = &b.limits[i];

		if (array_u64(env, argv[2], i, "limit dimension", &dim) ||
		    array_u64(env, argv[3], i, "limit count", &l->count) ||
		    array_u64(env, argv[4], i, "limit period", &u) ||
		    array_u64(env, argv[5], i, "limit burst", &l->burst))
			return NULL;
		l->dim = dim ? RATECTL_TOKENS : RATECTL_REQUESTS;
		l->period_ns = (int64_t)u;
	}
	b.nlimits = n;
	if (rn_u64(env, argv[6], "concurrency", &inflight) ||
	    rn_i64(env, argv[7], "jitter", &jitter) ||
	    rn_u64(env, argv[8], "batchShare", &share) ||
	    rn_u64(env, argv[9], "flags", &flags) ||
	    rn_i64(env, argv[10], "expire", &expire) ||
	    rn_u64(env, argv[11], "weight", &weight) ||
	    fixed_string(env, argv[12], "origin", b.origin, sizeof b.origin,
	                 RATECTL_EBADCONFIG, &has))
		return NULL;
	/* Checked here, not cast: a weight of 2^32 + 5 would be 5. */
	if (inflight > UINT32_MAX || share > 100 || flags > 7 || weight > UINT32_MAX) {
		rn_throw_rc(env, RATECTL_EBADCONFIG, "invalid budget configuration: "
		            "concurrency, batchShare (0..100), weight or flags out of range");
		return NULL;
	}
	b.max_inflight = (uint32_t)inflight;
	b.jitter_ns = jitter;
	b.batch_share = (unsigned)share;
	b.expire_ns = expire;
	b.weight = (unsigned)weight;
	return result(env, ratectl_budget_set(L->h, name, &b, (int)flags));
}

/* The budget name arguments of the one-name calls. */
static napi_value by_name(napi_env env, napi_callback_info info,
                          int (*fn)(ratectl *, const char *))
{
	char name[RATECTL_NAME_MAX + 1];
	napi_value argv[2];
	rn_ledger *L;

	if (rn_args(env, info, 2, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L))
		return NULL;
	if (fn == ratectl_budget_reset && rn_is_nullish(env, argv[1]))
		return result(env, ratectl_budget_reset(L->h, NULL));
	if (rn_name(env, argv[1], name))
		return NULL;
	return result(env, fn(L->h, name));
}

static napi_value n_delete(napi_env env, napi_callback_info info)
{
	return by_name(env, info, ratectl_budget_delete);
}

static napi_value n_reset(napi_env env, napi_callback_info info)
{
	return by_name(env, info, ratectl_budget_reset);
}

/* cooldown(L, name, ns) */
static napi_value n_cooldown(napi_env env, napi_callback_info info)
{
	char name[RATECTL_NAME_MAX + 1];
	napi_value argv[3];
	rn_ledger *L;
	int64_t ns;

	if (rn_args(env, info, 3, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L) ||
	    rn_name(env, argv[1], name) || rn_i64(env, argv[2], "duration", &ns))
		return NULL;
	if (ns < 0) {
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "a cooldown cannot be negative");
		return NULL;
	}
	return result(env, ratectl_cooldown(L->h, name, ns));
}

/* reclaim(L) -> [slots, readers] */
static napi_value n_reclaim(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	unsigned slots = 0, readers = 0;
	rn_ledger *L;
	int rc;

	if (rn_args(env, info, 1, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L))
		return NULL;
	if ((rc = ratectl_reclaim(L->h, &slots, &readers)) != 0)
		return result(env, rc);
	RN_CALL(env, napi_create_array_with_length(env, 2, &out));
	RN_CALL(env, napi_set_element(env, out, 0, rn_int(env, slots)));
	RN_CALL(env, napi_set_element(env, out, 1, rn_int(env, readers)));
	return out;
}

/* ---- budget info ------------------------------------------------------------ */

#define NS_PER_MS 1e6

static napi_value info_object(napi_env env, const ratectl_budget_info *bi)
{
	const ratectl_counters *c = &bi->counters;
	napi_value o, limits, l, cs;
	unsigned i;

	if (napi_create_object(env, &o) != napi_ok ||
	    napi_create_array_with_length(env, bi->config.nlimits, &limits) != napi_ok ||
	    napi_create_object(env, &cs) != napi_ok)
		return NULL;
	for (i = 0; i < bi->config.nlimits && i < RATECTL_MAX_LIMITS; i++) {
		const ratectl_limit_state *s = &bi->state[i];

		if (napi_create_object(env, &l) != napi_ok ||
		    rn_set(env, l, "dim", rn_str(env, s->limit.dim == RATECTL_TOKENS ?
		                                 "tokens" : "requests")) ||
		    rn_set(env, l, "count", rn_num(env, (double)s->limit.count)) ||
		    rn_set(env, l, "periodMs", rn_num(env, s->limit.period_ns / NS_PER_MS)) ||
		    rn_set(env, l, "burst", rn_num(env, (double)s->limit.burst)) ||
		    rn_set(env, l, "available", rn_num(env, (double)s->available)) ||
		    rn_set(env, l, "untilFullMs", rn_num(env, s->until_full_ns / NS_PER_MS)) ||
		    napi_set_element(env, limits, i, l) != napi_ok)
			return NULL;
	}
	if (rn_set(env, cs, "admitted", rn_num(env, (double)c->admitted)) ||
	    rn_set(env, cs, "refused", rn_num(env, (double)c->refused)) ||
	    rn_set(env, cs, "waited", rn_num(env, (double)c->waited)) ||
	    rn_set(env, cs, "waitMs", rn_num(env, c->wait_ns / NS_PER_MS)) ||
	    rn_set(env, cs, "tokensEstimated", rn_num(env, (double)c->tokens_estimated)) ||
	    rn_set(env, cs, "tokensActual", rn_num(env, (double)c->tokens_actual)) ||
	    rn_set(env, cs, "tokensReconciled", rn_num(env, (double)c->tokens_reconciled)) ||
	    rn_set(env, cs, "reclaimed", rn_num(env, (double)c->reclaimed)) ||
	    rn_set(env, cs, "retries", rn_num(env, (double)c->retries)) ||
	    rn_set(env, o, "name", rn_str(env, bi->name)) ||
	    rn_set(env, o, "limits", limits) ||
	    rn_set(env, o, "maxInflight", rn_int(env, bi->config.max_inflight)) ||
	    rn_set(env, o, "jitterMs", rn_num(env, bi->config.jitter_ns / NS_PER_MS)) ||
	    rn_set(env, o, "batchShare", rn_int(env, bi->config.batch_share)) ||
	    rn_set(env, o, "inflight", rn_int(env, bi->inflight)) ||
	    rn_set(env, o, "dead", rn_int(env, bi->dead)) ||
	    rn_set(env, o, "cooldownMs", rn_num(env, bi->cooldown_ns / NS_PER_MS)) ||
	    rn_set(env, o, "counters", cs) ||
	    rn_set(env, o, "expireMs", rn_num(env, bi->config.expire_ns / NS_PER_MS)) ||
	    rn_set(env, o, "weight", rn_int(env, bi->config.weight)) ||
	    rn_set(env, o, "origin", rn_strn(env, bi->config.origin, sizeof bi->config.origin)) ||
	    rn_set(env, o, "idleMs", bi->idle_ns < 0 ? rn_null(env) :
	                             rn_num(env, bi->idle_ns / NS_PER_MS)))
		return NULL;
	return o;
}

/* get(L, name) -> info */
static napi_value n_get(napi_env env, napi_callback_info info)
{
	char name[RATECTL_NAME_MAX + 1];
	ratectl_budget_info bi;
	napi_value argv[2], o;
	rn_ledger *L;
	int rc;

	if (rn_args(env, info, 2, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L) ||
	    rn_name(env, argv[1], name))
		return NULL;
	if ((rc = ratectl_budget_get(L->h, name, &bi)) != 0)
		return result(env, rc);
	if (!(o = info_object(env, &bi)))
		rn_throw_napi(env, "budget info");
	return o;
}

struct each_ctx {
	napi_env env;
	napi_value arr;
	uint32_t n;
};

static int each(const ratectl_budget_info *bi, void *arg)
{
	struct each_ctx *c = arg;
	napi_value o = info_object(c->env, bi);

	if (!o || napi_set_element(c->env, c->arr, c->n++, o) != napi_ok)
		return 1;   /* stop: thrown below */
	return 0;
}

/* list(L) -> [info], every budget from one snapshot */
static napi_value n_list(napi_env env, napi_callback_info info)
{
	struct each_ctx c = { env, NULL, 0 };
	napi_value argv[1];
	rn_ledger *L;
	int rc;

	if (rn_args(env, info, 1, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L))
		return NULL;
	RN_CALL(env, napi_create_array(env, &c.arr));
	rc = ratectl_budget_foreach(L->h, each, &c);
	if (rc == 1) {
		rn_throw_napi(env, "budget info");
		return NULL;
	}
	if (rc)
		return result(env, rc);
	return c.arr;
}

/* ---- tags, sweep ------------------------------------------------------------ */

static napi_value tag_object(napi_env env, const ratectl_tag_info *t)
{
	napi_value o;

	if (napi_create_object(env, &o) != napi_ok ||
	    rn_set(env, o, "tag", rn_strn(env, t->tag, sizeof t->tag)) ||
	    rn_set(env, o, "requests", rn_num(env, (double)t->requests)) ||
	    rn_set(env, o, "tokens", rn_num(env, (double)t->tokens)) ||
	    rn_set(env, o, "error", rn_num(env, (double)t->error)))
		return NULL;
	return o;
}

/* tags(L, name) -> { top: [{tag, requests, tokens, error}], rest } */
static napi_value n_tags(napi_env env, napi_callback_info info)
{
	ratectl_tag_info top[RATECTL_TAGS_TOP], rest;
	char name[RATECTL_NAME_MAX + 1];
	napi_value argv[2], o, arr, v;
	size_t n = 0, i;
	rn_ledger *L;
	int rc;

	if (rn_args(env, info, 2, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L) ||
	    rn_name(env, argv[1], name))
		return NULL;
	memset(&rest, 0, sizeof rest);
	if ((rc = ratectl_tags(L->h, name, top, RATECTL_TAGS_TOP, &n, &rest)) != 0)
		return result(env, rc);
	if (n > RATECTL_TAGS_TOP)   /* how many there are: only cap were filled */
		n = RATECTL_TAGS_TOP;
	RN_CALL(env, napi_create_object(env, &o));
	RN_CALL(env, napi_create_array_with_length(env, n, &arr));
	for (i = 0; i < n; i++) {
		if (!(v = tag_object(env, &top[i]))) {
			rn_throw_napi(env, "tag info");
			return NULL;
		}
		RN_CALL(env, napi_set_element(env, arr, (uint32_t)i, v));
	}
	if (!(v = tag_object(env, &rest)) || rn_set(env, o, "top", arr) ||
	    rn_set(env, o, "rest", v)) {
		rn_throw_napi(env, "tag info");
		return NULL;
	}
	return o;
}

/* sweep(L) -> budgets removed */
static napi_value n_sweep(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	unsigned removed = 0;
	rn_ledger *L;
	int rc;

	if (rn_args(env, info, 1, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L))
		return NULL;
	if ((rc = ratectl_sweep(L->h, &removed)) != 0)
		return result(env, rc);
	return rn_int(env, removed);
}

/* ---- leases ------------------------------------------------------------------ */

static void lease_finalize(napi_env env, void *data, void *hint)
{
	rn_lease *l = data;

	(void)env;
	(void)hint;
	/* Lost while held: the program can no longer release it, so its slot
	 * is freed here; the estimate stands. */
	if (l->lease.magic && l->L->h)
		ratectl_release(l->L->h, &l->lease, RATECTL_UNKNOWN);
	ledger_unref(l->L);
	free(l);
}

static napi_value new_lease(napi_env env, rn_ledger *L, const ratectl_lease *lease)
{
	rn_lease *l = malloc(sizeof *l);
	napi_value ext;

	if (!l) {
		if (L->h) {
			ratectl_lease tmp = *lease;

			ratectl_release(L->h, &tmp, RATECTL_UNKNOWN);
		}
		rn_throw_rc(env, -ENOMEM, NULL);
		return NULL;
	}
	l->lease = *lease;
	l->L = L;
	L->refs++;
	if (!(ext = wrap(env, l, lease_finalize)))
		lease_finalize(env, l, NULL);
	return ext;
}

/* The cost of argv[0..4): requests, tokens, priority, tag; the tag goes
 * to tag[RATECTL_TAG_MAX + 1], which must live as long as c is used. */
static int cost_args(napi_env env, napi_value *argv, ratectl_cost *c, char *tag)
{
	uint64_t prio;
	int has;

	memset(c, 0, sizeof *c);   /* every field, tag included: NULL, none */
	if (rn_u64(env, argv[0], "requests", &c->requests) ||
	    rn_u64(env, argv[1], "tokens", &c->tokens) ||
	    rn_u64(env, argv[2], "priority", &prio) ||
	    tag_arg(env, argv[3], tag, &has))
		return -1;
	c->priority = prio ? RATECTL_BATCH : RATECTL_INTERACTIVE;
	c->tag = has ? tag : NULL;
	return 0;
}

/* tryAcquire(L, name, requests, tokens, priority, tag) -> a lease, or the
 * code of a refusal (ELIMITED, ECOOLDOWN, EINFLIGHT; the wait in scratch). */
static napi_value n_try(napi_env env, napi_callback_info info)
{
	char name[RATECTL_NAME_MAX + 1], tag[RATECTL_TAG_MAX + 1];
	napi_value argv[6];
	ratectl_lease lease;
	ratectl_cost c;
	int64_t wait = 0;
	rn_ledger *L;
	int rc;

	if (rn_args(env, info, 6, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L) ||
	    rn_name(env, argv[1], name) || cost_args(env, argv + 2, &c, tag))
		return NULL;
	rc = ratectl_try(L->h, name, &c, &lease, &wait);
	if (rc == 0)
		return new_lease(env, L, &lease);
	if (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN || rc == RATECTL_EINFLIGHT) {
		rn_scratch_wait(env, wait, -1, 0);
		return rn_int(env, rc);
	}
	return result(env, rc);
}

#define ARG_LEASE(v) external(env, (v), "a ratectl lease is needed")

/* release(lease, actual) (actual < 0: unknown) -> undefined, or throws */
static napi_value n_release(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int64_t actual;
	rn_lease *l;

	if (rn_args(env, info, 2, argv) || !(l = ARG_LEASE(argv[0])) ||
	    rn_i64(env, argv[1], "actualTokens", &actual))
		return NULL;
	if (!l->lease.magic)
		return result(env, RATECTL_EBADLEASE);
	if (!l->L->h) {
		l->lease.magic = 0;   /* released when the ledger was closed */
		rn_throw_rc(env, RATECTL_EBADLEASE, "lease not held: its ratectl.Ledger was closed");
		return NULL;
	}
	return result(env, ratectl_release(l->L->h, &l->lease,
	                                   actual < 0 ? RATECTL_UNKNOWN : (uint64_t)actual));
}

/* leaseInfo(lease) -> [budget, tokens, slot, pid, startNs, held, tag] */
static napi_value n_lease_info(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out, v[7];
	rn_lease *l;
	uint32_t i;

	if (rn_args(env, info, 1, argv) || !(l = ARG_LEASE(argv[0])))
		return NULL;
	v[0] = rn_str(env, l->lease.name);
	v[1] = rn_num(env, (double)l->lease.tokens);
	v[2] = rn_int(env, l->lease.slot);
	v[3] = rn_int(env, l->lease.pid);
	v[4] = rn_num(env, (double)l->lease.start_ns);
	RN_CALL(env, napi_get_boolean(env, l->lease.magic != 0 && l->L->h, &v[5]));
	v[6] = l->lease.tag[0] ? rn_strn(env, l->lease.tag, sizeof l->lease.tag) : rn_null(env);
	RN_CALL(env, napi_create_array_with_length(env, 7, &out));
	for (i = 0; i < 7; i++)
		RN_CALL(env, napi_set_element(env, out, i, v[i]));
	return out;
}

/* ---- reservations (event loops) ---------------------------------------------- */

static void resv_finalize(napi_env env, void *data, void *hint)
{
	rn_resv *r = data;

	(void)env;
	(void)hint;
	if (r->L->h) {
		if (r->pending)
			ratectl_reserve_cancel(r->L->h, &r->r);
		else if (r->admitted)
			ratectl_release(r->L->h, &r->r.lease, RATECTL_UNKNOWN);
	}
	set_pending(r, 0);
	ledger_unref(r->L);
	free(r);
}

static void resv_state(napi_env env, rn_resv *r, int rc)
{
	set_pending(r, rc == RATECTL_EPENDING);
	r->admitted = rc == 0;
	if (r->pending)
		rn_scratch_wait(env, r->r.at_ns - ratectl_now(r->L->h), r->r.fd, 1);
}

/* reserve(L, name, requests, tokens, priority, tag) -> [reservation, code]:
 * code 0 (admitted: take its lease) or EPENDING (wait and fd in scratch);
 * any other outcome is thrown. */
static napi_value n_reserve(napi_env env, napi_callback_info info)
{
	char name[RATECTL_NAME_MAX + 1], tag[RATECTL_TAG_MAX + 1];
	napi_value argv[6], ext, out;
	ratectl_cost c;
	rn_ledger *L;
	rn_resv *r;
	int rc;

	if (rn_args(env, info, 6, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L) ||
	    rn_name(env, argv[1], name) || cost_args(env, argv + 2, &c, tag))
		return NULL;
	if (!(r = calloc(1, sizeof *r))) {
		rn_throw_rc(env, -ENOMEM, NULL);
		return NULL;
	}
	/* The reservation's own copy, alive while it is pending (the stack's
	 * is gone when this returns). */
	if (c.tag) {
		memcpy(r->tag, tag, sizeof r->tag);
		c.tag = r->tag;
	}
	r->r.version = RATECTL_RESERVATION_VERSION;
	r->r.fd = -1;
	r->L = L;
	L->refs++;
	rc = ratectl_reserve(L->h, name, &c, &r->r);
	if (rc != 0 && rc != RATECTL_EPENDING) {
		ledger_unref(L);
		free(r);
		return result(env, rc);
	}
	resv_state(env, r, rc);
	if (!(ext = wrap(env, r, resv_finalize))) {
		resv_finalize(env, r, NULL);
		return NULL;
	}
	RN_CALL(env, napi_create_array_with_length(env, 2, &out));
	RN_CALL(env, napi_set_element(env, out, 0, ext));
	RN_CALL(env, napi_set_element(env, out, 1, rn_int(env, rc)));
	return out;
}

#define ARG_RESV(v) external(env, (v), "a ratectl reservation is needed")

/* poll(reservation) -> 0 (admitted), EPENDING (scratch updated) or the
 * code of an error, after which it is no longer pending (error(code)
 * makes the exception). */
static napi_value n_poll(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_resv *r;
	int rc;

	if (rn_args(env, info, 1, argv) || !(r = ARG_RESV(argv[0])))
		return NULL;
	if (!r->pending)
		return rn_int(env, r->admitted ? 0 : RATECTL_EBADLEASE);
	if (!r->L->h) {
		set_pending(r, 0);
		rn_throw_rc(env, -EBADF, "ratectl.Ledger is closed");
		return NULL;
	}
	rc = ratectl_reserve_poll(r->L->h, &r->r);
	resv_state(env, r, rc);
	return rn_int(env, rc);
}

static napi_value n_cancel(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_resv *r;

	if (rn_args(env, info, 1, argv) || !(r = ARG_RESV(argv[0])))
		return NULL;
	if (r->pending && r->L->h)
		ratectl_reserve_cancel(r->L->h, &r->r);
	set_pending(r, 0);
	return rn_undefined(env);
}

/* expire(reservation): given up at its deadline (counted as a refusal) */
static napi_value n_expire(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_resv *r;

	if (rn_args(env, info, 1, argv) || !(r = ARG_RESV(argv[0])))
		return NULL;
	if (r->pending && r->L->h)
		ratectl_reserve_expire(r->L->h, &r->r);
	set_pending(r, 0);
	return rn_undefined(env);
}

/* take(reservation) -> the lease it was admitted with */
static napi_value n_take(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_resv *r;

	if (rn_args(env, info, 1, argv) || !(r = ARG_RESV(argv[0])))
		return NULL;
	if (!r->admitted)
		return result(env, RATECTL_EBADLEASE);
	r->admitted = 0;
	return new_lease(env, r->L, &r->r.lease);
}

/* drain(L) -> budgets changed, or -errno */
static napi_value n_drain(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	rn_ledger *L;

	if (rn_args(env, info, 1, argv) || !(L = ARG_LEDGER(argv[0])) || !live(env, L))
		return NULL;
	return rn_int(env, ratectl_events_drain(L->h));
}

/* parseRate("500/min") -> [count, periodNs] */
static napi_value n_parse_rate(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	uint64_t count;
	int64_t period;
	char *s;
	int rc;

	if (rn_args(env, info, 1, argv) || rn_string(env, argv[0], "rate", &s, NULL))
		return NULL;
	rc = ratectl_parse_rate(s, &count, &period);
	free(s);
	if (rc)
		return result(env, rc);
	RN_CALL(env, napi_create_array_with_length(env, 2, &out));
	RN_CALL(env, napi_set_element(env, out, 0, rn_num(env, (double)count)));
	RN_CALL(env, napi_set_element(env, out, 1, rn_num(env, (double)period)));
	return out;
}

/* parseDuration("1.5s") -> ns */
static napi_value n_parse_duration(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int64_t ns;
	char *s;
	int rc;

	if (rn_args(env, info, 1, argv) || rn_string(env, argv[0], "duration", &s, NULL))
		return NULL;
	rc = ratectl_parse_duration(s, &ns);
	free(s);
	if (rc)
		return result(env, rc);
	return rn_num(env, (double)ns);
}

#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default, NULL }

int rn_ledger_init(napi_env env, napi_value exports)
{
	napi_property_descriptor d[] = {
		FN("open", n_open), FN("close", n_close), FN("path", n_path),
		FN("now", n_now), FN("set", n_set), FN("delete", n_delete),
		FN("reset", n_reset), FN("cooldown", n_cooldown), FN("reclaim", n_reclaim),
		FN("get", n_get), FN("list", n_list), FN("tryAcquire", n_try),
		FN("release", n_release), FN("leaseInfo", n_lease_info),
		FN("reserve", n_reserve), FN("poll", n_poll), FN("cancel", n_cancel), FN("expire", n_expire),
		FN("take", n_take), FN("drain", n_drain), FN("parseRate", n_parse_rate),
		FN("parseDuration", n_parse_duration), FN("tags", n_tags), FN("sweep", n_sweep),
	};

	return napi_define_properties(env, exports, sizeof d / sizeof d[0], d) == napi_ok ? 0 : -1;
}
