/*
 * budget.c - budgets in the ledger: names, records, and the operations on
 * them other than admission (create, update, delete, reset, cooldown,
 * tightening from provider headers, inspection, reclaim).
 */
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define RC_JITTER_DEFAULT 1000000000LL         /* 1 s */
#define RC_JITTER_MAX (3600LL * 1000000000)    /* 1 h */

int ratectl_name_check(const char *name)
{
	size_t i, n = name ? strlen(name) : 0;

	if (n == 0 || n > RATECTL_NAME_MAX)
		return ratectl__err(RATECTL_EBADNAME, "budget name '%s': must be 1 to "
		                    "%d characters", name ? name : "", RATECTL_NAME_MAX);
	if (name[0] == '.' || name[0] == '-')
		return ratectl__err(RATECTL_EBADNAME, "budget name '%s': must not start "
		                    "with '%c'", name, name[0]);
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return ratectl__err(RATECTL_EBADNAME, "budget name '%s': character "
			                    "%zu is not one of A-Z a-z 0-9 . _ -", name, i + 1);
	}
	return 0;
}

/* ---- create, update, delete --------------------------------------------- */

/* Wake budget id's waiters (ratectl__wake).  Called inside the write
 * transaction that makes the change: see wait.c. */
static int wake_budget(ratectl *h, uint32_t id, int what)
{
	ratectl__wake(ratectl__lfile_find(h, id), what);
	return 0;
}

/* A template's pattern: 1 to 64 bytes of name characters and '*'. */
static int origin_check(const char *o)
{
	size_t i, n = strnlen(o, RATECTL_NAME_MAX + 1);

	if (n > RATECTL_NAME_MAX)
		return ratectl__err(RATECTL_EBADCONFIG, "budget: origin is over %d "
		                    "bytes or not terminated", RATECTL_NAME_MAX);
	for (i = 0; i < n; i++) {
		char c = o[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
		      c == '*'))
			return ratectl__err(RATECTL_EBADCONFIG, "budget: origin '%s': "
			                    "character %zu is not one of A-Z a-z 0-9 . _ "
			                    "- *", o, i + 1);
	}
	return 0;
}

struct set_ctx {
	const char *name;
	const ratectl_budget *b;
	rc_limit lim[RATECTL_MAX_LIMITS];
	int flags;
};

static int config_check(const ratectl_budget *b, rc_limit *lim)
{
	unsigned i, j;
	int rc;

	if (!b || b->version != RATECTL_BUDGET_VERSION)
		return ratectl__err(RATECTL_EBADCONFIG, "budget: version %u unknown "
		                    "(expected %u)", b ? b->version : 0,
		                    RATECTL_BUDGET_VERSION);
	if (b->nlimits > RATECTL_MAX_LIMITS)
		return ratectl__err(RATECTL_EBADCONFIG, "budget: %u limits, at most %d",
		                    b->nlimits, RATECTL_MAX_LIMITS);
	if (b->max_inflight > RATECTL_MAX_INFLIGHT)
		return ratectl__err(RATECTL_EBADCONFIG, "budget: concurrency %u, at most "
		                    "%d", b->max_inflight, RATECTL_MAX_INFLIGHT);
	if (b->jitter_ns < 0 || b->jitter_ns > RC_JITTER_MAX)
		return ratectl__err(RATECTL_EBADCONFIG, "budget: jitter must be 0 .. 1 h");
	if (b->batch_share > 100)
		return ratectl__err(RATECTL_EBADCONFIG, "budget: batch share %u%% is "
		                    "over 100%%", b->batch_share);
	if (b->expire_ns < 0 || (b->expire_ns > 0 && b->expire_ns < RATECTL_PERIOD_MIN))
		return ratectl__err(RATECTL_EBADCONFIG, "budget: expire must be 0 "
		                    "(never) or at least 1 s");
	if (b->weight > RATECTL_WEIGHT_MAX)
		return ratectl__err(RATECTL_EBADCONFIG, "budget: weight %u is over %d",
		                    b->weight, RATECTL_WEIGHT_MAX);
	if ((rc = origin_check(b->origin)) != 0)
		return rc;
	for (i = 0; i < b->nlimits; i++) {
		if ((rc = ratectl__limit_init(&lim[i], &b->limits[i])) != 0)
			return rc;
		for (j = 0; j < i; j++)
			if (lim[j].dim == lim[i].dim && lim[j].period == lim[i].period)
				return ratectl__err(RATECTL_EBADCONFIG, "budget: two %s limits "
				                    "with the same period",
				                    lim[i].dim ? "tokens" : "requests");
	}
	return 0;
}

static int set_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct set_ctx *c = arg;
	rc_budget_rec old, rec;
	int64_t now = ratectl_now(h);
	unsigned i, j;
	int rc, exists;

	rc = ratectl__rec_get(h, txn, c->name, &old);
	if (rc != 0 && rc != RATECTL_ENOTFOUND)
		return rc;
	exists = rc == 0;
	if (exists && (c->flags & RATECTL_CREATE))
		return ratectl__err(RATECTL_EEXISTS, "budget '%s' already exists", c->name);
	if (!exists && (c->flags & RATECTL_UPDATE))
		return ratectl__err(RATECTL_ENOTFOUND, "no budget '%s'", c->name);
	memset(&rec, 0, sizeof rec);
	rec.magic = RC_BUDGET_MAGIC;
	rec.nlimits = c->b->nlimits;
	rec.max_inflight = c->b->max_inflight;
	rec.jitter = c->b->jitter_ns;
	rec.batch_share = c->b->batch_share ? c->b->batch_share : RATECTL_BATCH_SHARE_DEFAULT;
	rec.expire = c->b->expire_ns;
	rec.weight = c->b->weight;
	if (rec.weight)
		rec.reserved0 |= RC_F_TENANT;
	if (c->b->origin[0]) {
		rec.reserved0 |= RC_F_ORIGIN;
		snprintf(rec.origin, sizeof rec.origin, "%s", c->b->origin);
	}
	memcpy(rec.lim, c->lim, sizeof rec.lim);
	if ((rc = ratectl__meta_touch(h, txn)) != 0)
		return rc;
	if (exists) {
		rec.id = old.id;
		rec.sched = old.sched;
		/* New limits, the same sharing: its credit and records stay
		 * (shared.c), its caps follow the new bursts at the next sync. */
		rec.reserved0 |= old.reserved0 & RC_F_SHARED;
		rec.sh = old.sh;
		/* Its in-flight slots, counters, use, line and epoch stay. */
		rec.inflight = old.inflight;
		rec.epoch = old.epoch;
		rec.last_use = old.last_use;
		rec.made = old.made;
		memcpy(rec.counters, old.counters, sizeof rec.counters);
		if (rec.weight)
			rec.tn = old.tn;
		/* Waiters look again once this commits: the limits changed. */
		if ((rc = wake_budget(h, rec.id, RC_WAKE_SLOTS | RC_WAKE_RATE)) != 0)
			return rc;
		for (i = 0; i < rec.nlimits; i++)
			for (j = 0; j < old.nlimits; j++)
				if (old.lim[j].dim == rec.lim[i].dim &&
				    old.lim[j].period == rec.lim[i].period)
					ratectl__gcra_rescale(&rec.lim[i], &old.lim[j], now);
	} else if ((rc = ratectl__meta_next_id(h, txn, &rec.id)) != 0) {
		return rc;
	} else {
		rec.made = now;         /* idle from now on, until used */
	}
	for (i = 0; c->flags & RATECTL_EMPTY && i < rec.nlimits; i++)
		if (rec.lim[i].tat == 0)
			rec.lim[i].tat = now + rec.lim[i].tau;
	return ratectl__rec_put(h, txn, c->name, &rec);
}

int ratectl_budget_check(const ratectl_budget *b)
{
	rc_limit lim[RATECTL_MAX_LIMITS];

	ratectl__err_clear();
	return config_check(b, lim);
}

int ratectl_budget_set(ratectl *h, const char *name, const ratectl_budget *b,
                       int flags)
{
	struct set_ctx c = { .name = name, .b = b, .flags = flags };
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0 ||
	    (rc = config_check(b, c.lim)) != 0)
		return rc;
	return ratectl__write(h, set_op, &c);
}

struct del_ctx {
	const char *name;
	uint32_t id;
};

static int delete_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct del_ctx *c = arg;
	MDB_val k = { strlen(c->name), (void *)c->name }, v;
	int rc;

	rc = mdb_get(txn, h->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return ratectl__err(RATECTL_ENOTFOUND, "no budget '%s'", c->name);
	if (rc != 0)
		return ratectl__mdb_err(h, rc, c->name);
	/* A damaged record must still be deletable: read only its id. */
	c->id = 0;
	if (v.mv_size >= RC_REC_SIZE(0))
		memcpy(&c->id, (const char *)v.mv_data + offsetof(rc_budget_rec, id),
		       sizeof c->id);
	if ((rc = mdb_del(txn, h->dbi, &k, NULL)) != 0)
		return ratectl__mdb_err(h, rc, c->name);
	if ((rc = ratectl__share_drop(h, txn, c->name)) != 0 ||
	    (c->id && (rc = ratectl__holders_drop(h, txn, c->id)) != 0) ||
	    (c->id && (rc = ratectl__tags_drop(h, txn, c->id)) != 0) ||
	    (rc = ratectl__meta_touch(h, txn)) != 0)
		return rc;
	/* Its waiters fail with RATECTL_ENOTFOUND once this commits. */
	return c->id ? wake_budget(h, c->id, RC_WAKE_VOID) : 0;
}

int ratectl_budget_delete(ratectl *h, const char *name)
{
	struct del_ctx c = { name, 0 };
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0)
		return rc;
	return ratectl__write(h, delete_op, &c);
}

/* ---- one-record updates -------------------------------------------------- */

struct mod_ctx {
	const char *name;
	int (*fn)(ratectl *h, rc_budget_rec *rec, struct mod_ctx *c);
	int64_t now;
	int64_t arg;
	const ratectl_window *window;
	size_t nwindows;
	int changed;
	int no_touch;              /* per response: leave the wall-clock sample */
	int local;                 /* a cooldown learned from Redis: not spread */
	uint32_t kick_id;          /* a shared budget's refiller to wake after */
	MDB_txn *txn;              /* of the record being changed ... */
	const char *cur;           /* ... and its name */
};

static int mod_one(ratectl *h, MDB_txn *txn, struct mod_ctx *c, const char *name)
{
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, name, &rec)) != 0)
		return rc;
	c->txn = txn;
	c->cur = name;
	if ((rc = c->fn(h, &rec, c)) != 0)
		return rc;
	return ratectl__rec_put(h, txn, name, &rec);
}

static int mod_each(ratectl *h, MDB_txn *txn, const char *name,
                    const MDB_val *v, void *ctx)
{
	(void)v;
	return mod_one(h, txn, ctx, name);
}

static int mod_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct mod_ctx *c = arg;
	int rc;

	if (!c->no_touch && (rc = ratectl__meta_touch(h, txn)) != 0)
		return rc;
	if (c->name)
		return mod_one(h, txn, c, c->name);
	return ratectl__budget_each(h, txn, mod_each, c);
}

static int modify(ratectl *h, struct mod_ctx *c)
{
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	if (c->name && (rc = ratectl_name_check(c->name)) != 0)
		return rc;
	c->now = ratectl_now(h);
	return ratectl__write(h, mod_op, c);
}

static int reset_fn(ratectl *h, rc_budget_rec *rec, struct mod_ctx *c)
{
	(void)c;
	ratectl__gcra_reset(rec->lim, rec->nlimits, &rec->sched);
	/* Every place reserved is gone with the TATs: its waiters plan again. */
	rec->epoch++;
	return wake_budget(h, rec->id, RC_WAKE_VOID);
}

int ratectl_budget_reset(ratectl *h, const char *name)
{
	struct mod_ctx c = { .name = name, .fn = reset_fn };

	return modify(h, &c);
}

static int cooldown_fn(ratectl *h, rc_budget_rec *rec, struct mod_ctx *c)
{
	int64_t jitter = rec->jitter ? rec->jitter : RC_JITTER_DEFAULT;
	int64_t until = c->now + c->arg;
	int rc;

	/* A later end replaces the current one, and 0 ends one under way;
	 * anything else changes nothing. */
	if (c->arg != 0 ? until <= rec->sched.cooldown_until
	                : rec->sched.cooldown_until <= c->now)
		return 0;
	/* Ending a cooldown early releases its waiters spread out too. */
	ratectl__gcra_cooldown(rec->lim, rec->nlimits, &rec->sched, until, jitter);
	/* A shared budget's pause reaches the other hosts through Redis. */
	if (c->arg != 0 && !c->local && (rec->reserved0 & RC_F_SHARED)) {
		if ((rc = ratectl__share_cooldown(h, c->txn, c->cur, until)) != 0)
			return rc;
		c->kick_id = rec->id;
	}
	return wake_budget(h, rec->id, RC_WAKE_RATE | RC_WAKE_RESERVED);
}

int ratectl_cooldown(ratectl *h, const char *name, int64_t duration_ns)
{
	struct mod_ctx c = { .name = name, .fn = cooldown_fn, .arg = duration_ns };

	int rc;

	if (!name || duration_ns < 0 || duration_ns > RATECTL_PERIOD_MAX)
		return ratectl__err(-EINVAL, "cooldown: a budget name and a duration "
		                    "of 0 .. 1 day");
	if ((rc = modify(h, &c)) == 0 && c.kick_id) {
		int64_t none[2] = { 0, 0 };

		ratectl__share_kick(h, name, c.kick_id, none, 1);   /* spread it now */
	}
	return rc;
}

int ratectl__cooldown_local(ratectl *h, const char *name, int64_t duration_ns)
{
	struct mod_ctx c = { .name = name, .fn = cooldown_fn, .arg = duration_ns,
	                     .local = 1 };

	return modify(h, &c);
}

static int observe_fn(ratectl *h, rc_budget_rec *rec, struct mod_ctx *c)
{
	size_t k;
	int rc;

	c->changed = 0;
	for (k = 0; k < c->nwindows; k++) {
		const ratectl_window *w = &c->window[k];
		int i = ratectl__gcra_window_match(rec->lim, rec->nlimits, w);

		if (i >= 0 && ratectl__gcra_tighten(&rec->lim[i], w->remaining,
		                                    w->reset_ns, c->now)) {
			c->changed++;
			/* A shared budget: the other hosts learn it from Redis. */
			if ((rec->reserved0 & RC_F_SHARED) &&
			    (rc = ratectl__share_tighten(h, c->txn, c->cur, (unsigned)i,
			                                 rec->lim[i].tat)) != 0)
				return rc;
			if (rec->reserved0 & RC_F_SHARED)
				c->kick_id = rec->id;
		}
	}
	return c->changed ? 0 : 1;      /* nothing to write: abort */
}

int ratectl_observe_windows(ratectl *h, const char *name, const ratectl_window *w,
                            size_t n, int *changed)
{
	struct mod_ctx c = { .name = name, .fn = observe_fn, .window = w,
	                     .nwindows = n, .no_touch = 1 };
	size_t k;
	int rc;

	if (changed)
		*changed = 0;
	if (!name || (!w && n > 0) || n > RATECTL_MAX_LIMITS * 2)
		return ratectl__err(-EINVAL, "observe: bad arguments");
	for (k = 0; k < n; k++)
		if (w[k].version != RATECTL_WINDOW_VERSION ||
		    (w[k].dim != RATECTL_REQUESTS && w[k].dim != RATECTL_TOKENS) ||
		    w[k].reset_ns < 0 || w[k].window_ns < 0)
			return ratectl__err(-EINVAL, "observe: window %zu: bad values", k);
	if (n == 0)
		return 0;
	rc = modify(h, &c);
	if (changed)
		*changed = c.changed;
	if (rc == 0 && c.kick_id) {
		int64_t none[2] = { 0, 0 };

		ratectl__share_kick(h, name, c.kick_id, none, 1);   /* spread it now */
	}
	return rc;
}

int ratectl_observe_window(ratectl *h, const char *name, const ratectl_window *w,
                           int *changed)
{
	int n = 0, rc;

	if (!w)
		return ratectl__err(-EINVAL, "observe: bad arguments");
	rc = ratectl_observe_windows(h, name, w, 1, &n);
	if (changed)
		*changed = n > 0;
	return rc;
}

int ratectl_observe(ratectl *h, const char *name, ratectl_dim dim,
                    uint64_t remaining, int64_t reset_ns, int *changed)
{
	ratectl_window w = RATECTL_WINDOW_INIT;

	w.dim = dim;
	w.remaining = remaining;
	w.reset_ns = reset_ns;
	return ratectl_observe_window(h, name, &w, changed);
}

/* ---- inspection ---------------------------------------------------------- */

struct live_ctx {
	uint32_t inflight, dead;
};

static int live_count(ratectl *h, uint64_t key, const rc_holder *hd, int alive,
                      void *arg)
{
	struct live_ctx *c = arg;

	(void)h;
	(void)key;
	if (alive)
		c->inflight += hd->count;
	else
		c->dead += hd->count;
	return 0;
}

/* Fill *out from rec (and its holders, when it has slots in flight), in
 * txn: everything is in the ledger, so a look at 100,000 budgets opens
 * nothing. */
static int info_fill(ratectl *h, MDB_txn *txn, const char *name,
                     const rc_budget_rec *rec, int64_t now, ratectl_budget_info *out)
{
	unsigned i;
	int rc;

	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", name);
	out->config.version = RATECTL_BUDGET_VERSION;
	out->config.nlimits = rec->nlimits;
	out->config.max_inflight = rec->max_inflight;
	out->config.jitter_ns = rec->jitter;
	out->config.batch_share = rec->batch_share;
	out->config.expire_ns = rec->expire;
	out->config.weight = rec->weight;
	if (rec->reserved0 & RC_F_ORIGIN)
		snprintf(out->config.origin, sizeof out->config.origin, "%.*s",
		         RATECTL_NAME_MAX, rec->origin);
	for (i = 0; i < rec->nlimits; i++) {
		rc_limit l = rec->lim[i];
		ratectl_limit cfg = { (ratectl_dim)l.dim, l.count, l.period, l.burst };
		int64_t floor = ratectl__gcra_floor(&l, &rec->sched);

		if (floor > l.tat)      /* the empty bucket after a cooldown */
			l.tat = floor;
		out->config.limits[i] = cfg;
		out->state[i].limit = cfg;
		out->state[i].available = ratectl__gcra_available(&l, now);
		out->state[i].until_full_ns = ratectl__gcra_until_full(&l, now);
	}
	if (rec->sched.cooldown_until > now)
		out->cooldown_ns = rec->sched.cooldown_until - now;
	for (i = 0; i < RC_C_COUNT; i++)
		(&out->counters.admitted)[i] = rec->counters[i];
	out->idle_ns = rec->last_use == 0 ? -1 :
	               now > rec->last_use ? now - rec->last_use : 0;
	if (rec->inflight) {
		struct live_ctx c = { 0, 0 };

		if ((rc = ratectl__holders_each(h, txn, rec->id, live_count, &c)) != 0)
			return rc;
		out->inflight = c.inflight;
		out->dead = c.dead;
	}
	return 0;
}

/* Entry point of the read-only calls on one budget: its record from a
 * read transaction, left open for the caller to end. */
static int budget_read(ratectl *h, const char *name, rc_budget_rec *rec, MDB_txn **txn)
{
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0 ||
	    (rc = ratectl__read_begin(h, txn)) != 0)
		return rc;
	if ((rc = ratectl__rec_get(h, *txn, name, rec)) != 0)
		ratectl__read_end(h, *txn);
	return rc;
}

int ratectl_budget_get(ratectl *h, const char *name, ratectl_budget_info *out)
{
	rc_budget_rec rec;
	MDB_txn *txn;
	int rc;

	if ((rc = budget_read(h, name, &rec, &txn)) != 0)
		return rc;
	rc = info_fill(h, txn, name, &rec, ratectl_now(h), out);
	ratectl__read_end(h, txn);
	return rc;
}

struct foreach_ctx {
	int (*fn)(const ratectl_budget_info *info, void *ctx);
	void *ctx;
	int64_t now;
};

static int foreach_each(ratectl *h, MDB_txn *txn, const char *name,
                        const MDB_val *v, void *arg)
{
	struct foreach_ctx *c = arg;
	ratectl_budget_info info;
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_load(name, v, &rec)) != 0 ||
	    (rc = info_fill(h, txn, name, &rec, c->now, &info)) != 0)
		return rc;
	return c->fn(&info, c->ctx);
}

int ratectl_budget_foreach(ratectl *h,
                           int (*fn)(const ratectl_budget_info *info, void *ctx),
                           void *ctx)
{
	struct foreach_ctx c = { fn, ctx, 0 };
	MDB_txn *txn;
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl__read_begin(h, &txn)) != 0)
		return rc;
	c.now = ratectl_now(h);
	rc = ratectl__budget_each(h, txn, foreach_each, &c);
	ratectl__read_end(h, txn);
	return rc;
}

struct leases_ctx {
	ratectl_lease_info *out;
	size_t cap, n;
	int64_t now;
};

static int lease_one(ratectl *h, uint64_t key, const rc_holder *hd, int alive,
                     void *arg)
{
	struct leases_ctx *c = arg;

	(void)h;
	(void)key;
	if (c->n < c->cap)
		c->out[c->n] = (ratectl_lease_info){ (uint32_t)c->n, hd->pid, alive,
		                                     c->now - hd->since, hd->tokens,
		                                     hd->count };
	c->n++;
	return 0;
}

int ratectl_leases(ratectl *h, const char *name, ratectl_lease_info *out,
                   size_t cap, size_t *n)
{
	struct leases_ctx c = { out, cap, 0, 0 };
	rc_budget_rec rec;
	MDB_txn *txn;
	int rc;

	*n = 0;
	if ((rc = budget_read(h, name, &rec, &txn)) != 0)
		return rc;
	c.now = ratectl_now(h);
	rc = ratectl__holders_each(h, txn, rec.id, lease_one, &c);
	ratectl__read_end(h, txn);
	*n = c.n;
	return rc;
}

/* Every budget with slots recorded: those of dead holders come back. */
static int reclaim_each(ratectl *h, MDB_txn *txn, const char *name,
                        const MDB_val *v, void *ctx)
{
	unsigned *slots = ctx;
	rc_budget_rec rec;
	int rc;

	/* A damaged record must not stop the others' slots from coming
	 * back: it is skipped (`ratectl check` reports it). */
	if (ratectl__rec_load(name, v, &rec) != 0 || rec.inflight == 0)
		return 0;
	if ((rc = ratectl__slot_reclaim(h, txn, &rec, NULL)) < 0)
		return rc;
	if (rc == 0)
		return 0;
	*slots += (unsigned)rc;
	return ratectl__rec_put(h, txn, name, &rec);
}

static int reclaim_op(ratectl *h, MDB_txn *txn, void *arg)
{
	unsigned *slots = arg;
	int rc;

	*slots = 0;
	if ((rc = ratectl__budget_each(h, txn, reclaim_each, slots)) != 0)
		return rc;
	/* and the records dead processes left with nothing held */
	return ratectl__holders_gc(h, txn, NULL, UINT_MAX);
}

int ratectl_reclaim(ratectl *h, unsigned *slots, unsigned *readers)
{
	unsigned freed = 0;
	int rc, dead = 0;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	mdb_reader_check(h->env, &dead);
	rc = ratectl__write(h, reclaim_op, &freed);
	if (slots)
		*slots = rc == 0 ? freed : 0;
	if (readers)
		*readers = (unsigned)dead;
	return rc;
}

/* In a transaction: the share stays exact across processes. */
struct retry_ctx {
	const char *name;
	unsigned percent;
	int allowed;
};

static int retry_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct retry_ctx *c = arg;
	rc_budget_rec rec;
	uint64_t r;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, c->name, &rec)) != 0)
		return rc;
	r = rec.counters[RC_C_RETRIES];
	if ((r + 1) * 100 > rec.counters[RC_C_ADMITTED] * c->percent + 100) {
		c->allowed = 0;
		return 1;
	}
	c->allowed = 1;
	rec.counters[RC_C_RETRIES] = r + 1;
	return ratectl__rec_put(h, txn, c->name, &rec);
}

int ratectl_retry_take(ratectl *h, const char *name, unsigned percent)
{
	struct retry_ctx c = { name, percent, 0 };
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0 ||
	    (rc = ratectl__write(h, retry_op, &c)) != 0)
		return rc;
	return c.allowed ? 0 : RATECTL_ELIMITED;
}

/* ---- tags ------------------------------------------------------------------ */

static int tag_cmp(const void *a, const void *b)
{
	const ratectl_tag_info *x = a, *y = b;

	if (x->requests != y->requests)
		return x->requests < y->requests ? 1 : -1;
	return strcmp(x->tag, y->tag);
}

int ratectl_tags(ratectl *h, const char *name, ratectl_tag_info *out, size_t cap,
                 size_t *n, ratectl_tag_info *rest)
{
	ratectl_tag_info all[RATECTL_TAGS_TOP];
	uint64_t req, tok;
	rc_budget_rec rec;
	rc_tags_rec t;
	MDB_txn *txn;
	unsigned i;
	int rc;

	if (n)
		*n = 0;
	if (rest)
		memset(rest, 0, sizeof *rest);
	if (!n || (cap && !out))
		return ratectl__err(-EINVAL, "tags: n and, with cap, out are required");
	if ((rc = budget_read(h, name, &rec, &txn)) != 0)
		return rc;
	rc = ratectl__tags_read(h, txn, rec.id, &t);
	ratectl__read_end(h, txn);
	if (rc != 0)
		return rc;
	/* The rest is what the counted tags do not hold: untagged requests
	 * are not written anywhere at admission (they cost nothing), so it is
	 * the budget's totals less the tags'. */
	req = rec.counters[RC_C_ADMITTED];
	tok = rec.counters[RC_C_TOK_EST] - rec.counters[RC_C_TOK_RECONCILED] +
	      rec.counters[RC_C_TOK_ACTUAL];
	for (i = 0; i < t.n; i++) {
		uint64_t r = t.ent[i].requests - t.ent[i].error;

		req = req > r ? req - r : 0;
		tok = tok > t.ent[i].tokens ? tok - t.ent[i].tokens : 0;
	}
	for (i = 0; i < t.n; i++) {
		memset(&all[i], 0, sizeof all[i]);
		snprintf(all[i].tag, sizeof all[i].tag, "%s", t.ent[i].tag);
		all[i].requests = t.ent[i].requests;
		all[i].tokens = t.ent[i].tokens;
		all[i].error = t.ent[i].error;
	}
	qsort(all, t.n, sizeof all[0], tag_cmp);
	for (i = 0; i < t.n && i < cap; i++)
		out[i] = all[i];
	*n = t.n;
	if (rest) {
		rest->requests = req;
		rest->tokens = tok;
	}
	return 0;
}

/* ---- the sweep of idle budgets ------------------------------------------- */

/*
 * Budgets with an expire time are removed once idle: nothing admitted for
 * that long, nothing in flight, every limit full (no place reserved, no
 * debt), no cooldown.  The host's sweep lives in ".w": when it is next
 * due and where it stopped.  Any process whose admission finds it due
 * takes the next RC_SWEEP_BATCH budgets in one transaction and moves the
 * time RATECTL_SWEEP_NS on, so the host does one step at a time, every
 * RATECTL_SWEEP_NS at most: a pass over 100,000 budgets takes about 50
 * s, and no admission waits for more than one step.
 */
#define RC_SWEEP_BATCH 512
#define RC_SWEEP_KEY ".w"

typedef struct rc_sweep_rec {
	int64_t due;               /* ledger clock */
	char next[RATECTL_NAME_MAX + 1];   /* where the next step starts */
	unsigned char hnext[RC_HOLDER_KEY_LEN];  /* ... among the holders */
} rc_sweep_rec;

/* 1 idle, 2 idle but for slots recorded in flight (their holders may be
 * dead: reclaim first), 0 not. */
static int idle(const rc_budget_rec *rec, int64_t now)
{
	int64_t since = rec->last_use > rec->made ? rec->last_use : rec->made;
	unsigned i;

	if (rec->expire <= 0 || rec->sched.cooldown_until > now ||
	    now - since < rec->expire)
		return 0;
	/* someone of the tenant is in line for it (a line that has not moved
	 * for the idle time was left by the dead: it does not count) */
	if ((rec->reserved0 & RC_F_TENANT) && rec->tn.tk_serve != rec->tn.tk_next &&
	    now - rec->tn.tk_since < rec->expire)
		return 0;
	for (i = 0; i < rec->nlimits; i++)
		if (rec->lim[i].tat > now)
			return 0;
	return rec->inflight ? 2 : 1;
}

struct sweep_ctx {
	int64_t now;
	int all;                   /* the whole ledger (ratectl_sweep) */
	unsigned removed;
	int due;                   /* a step was due and taken */
};

static int sweep_get(ratectl *h, MDB_txn *txn, rc_sweep_rec *sw)
{
	MDB_val k = { sizeof RC_SWEEP_KEY - 1, (void *)RC_SWEEP_KEY }, v;
	int rc = mdb_get(txn, h->dbi, &k, &v);

	memset(sw, 0, sizeof *sw);
	if (rc == 0 && v.mv_size == sizeof *sw)
		memcpy(sw, v.mv_data, sizeof *sw);
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return ratectl__mdb_err(h, rc, "read the sweep");
	sw->next[RATECTL_NAME_MAX] = '\0';      /* damaged: start over */
	return 0;
}

/* Remove budget `name` (id). */
static int sweep_remove(ratectl *h, MDB_txn *txn, const char *name, uint32_t id)
{
	MDB_val k = { strlen(name), (void *)name };
	int rc;

	if ((rc = mdb_del(txn, h->dbi, &k, NULL)) != 0)
		return rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, name);
	if ((rc = ratectl__share_drop(h, txn, name)) != 0 ||
	    (rc = ratectl__holders_drop(h, txn, id)) != 0 ||
	    (rc = ratectl__tags_drop(h, txn, id)) != 0)
		return rc;
	return wake_budget(h, id, RC_WAKE_VOID);
}

struct sweep_victim {
	char name[RATECTL_NAME_MAX + 1];
	uint32_t id;
	int held;                  /* slots recorded: reclaim, then look again */
};

/* One step: up to RC_SWEEP_BATCH budgets from `from` looked at, the idle
 * ones noted in v[] (removed after, with the cursor closed); next gets
 * where the following step starts ("" at the end). */
static int sweep_scan(ratectl *h, MDB_txn *txn, const char *from, int64_t now,
                      struct sweep_victim *v, unsigned *nv, char *next)
{
	MDB_val bk = { strlen(from), (void *)from }, bv;
	MDB_cursor *cur;
	unsigned seen;
	int rc;

	*nv = 0;
	next[0] = '\0';
	if ((rc = mdb_cursor_open(txn, h->dbi, &cur)) != 0)
		return ratectl__mdb_err(h, rc, "sweep");
	rc = bk.mv_size ? mdb_cursor_get(cur, &bk, &bv, MDB_SET_RANGE)
	                : mdb_cursor_get(cur, &bk, &bv, MDB_FIRST);
	for (seen = 0; rc == 0 && seen < RC_SWEEP_BATCH; seen++) {
		rc_budget_rec rec;
		char name[RATECTL_NAME_MAX + 1];

		if (rc_budget_key(&bk) && bk.mv_size <= RATECTL_NAME_MAX) {
			memcpy(name, bk.mv_data, bk.mv_size);
			name[bk.mv_size] = '\0';
			/* Damaged records are left for `ratectl check`. */
			int why;

			if (ratectl__rec_load(name, &bv, &rec) == 0 &&
			    (why = idle(&rec, now)) != 0) {
				memcpy(v[*nv].name, name, sizeof name);
				v[*nv].held = why == 2;
				v[(*nv)++].id = rec.id;
			}
		}
		rc = mdb_cursor_get(cur, &bk, &bv, MDB_NEXT);
	}
	if (rc == 0 && bk.mv_size <= RATECTL_NAME_MAX) {
		memcpy(next, bk.mv_data, bk.mv_size);
		next[bk.mv_size] = '\0';
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return ratectl__mdb_err(h, rc, "sweep");
	return 0;
}

static int sweep_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct sweep_ctx *c = arg;
	static _Thread_local struct sweep_victim v[RC_SWEEP_BATCH];
	MDB_val k = { sizeof RC_SWEEP_KEY - 1, (void *)RC_SWEEP_KEY }, val;
	char from[RATECTL_NAME_MAX + 1];
	rc_sweep_rec sw;
	unsigned nv, i;
	int rc;

	c->removed = 0;
	c->due = 0;
	if ((rc = sweep_get(h, txn, &sw)) != 0)
		return rc;
	if (!c->all && sw.due > c->now)
		return 1;       /* another process did it */
	c->due = 1;
	if (c->all)
		from[0] = '\0';
	else
		memcpy(from, sw.next, sizeof from);
	do {
		if ((rc = sweep_scan(h, txn, from, c->now, v, &nv, sw.next)) != 0)
			return rc;
		for (i = 0; i < nv; i++) {
			if (v[i].held) {
				/* Slots of holders that died: taken back, and the
				 * budget goes if that was all. */
				rc_budget_rec rec;

				if ((rc = ratectl__rec_get(h, txn, v[i].name, &rec)) != 0 ||
				    (rc = ratectl__slot_reclaim(h, txn, &rec, NULL)) < 0)
					return rc;
				if (rec.inflight) {
					if (rc > 0 && (rc = ratectl__rec_put(h, txn, v[i].name,
					                                     &rec)) != 0)
						return rc;
					continue;
				}
			}
			if ((rc = sweep_remove(h, txn, v[i].name, v[i].id)) != 0)
				return rc;
			c->removed++;
		}
		memcpy(from, sw.next, sizeof from);
	} while (c->all && from[0]);
	/* The records of dead processes that held nothing (a holder's record
	 * stays at 0 for its next slot) go a few at a time too. */
	if ((rc = ratectl__holders_gc(h, txn, c->all ? NULL : sw.hnext,
	                              c->all ? UINT_MAX : RC_SWEEP_BATCH)) != 0)
		return rc;
	sw.due = c->now + RATECTL_SWEEP_NS;
	val = (MDB_val){ sizeof sw, &sw };
	rc = mdb_put(txn, h->dbi, &k, &val, 0);
	return rc == 0 || rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, "write the sweep");
}

void ratectl__sweep_step(ratectl *h, int64_t now)
{
	struct sweep_ctx c = { now, 0, 0, 0 };
	char keep[RATECTL_ERRMSG_KEEP];
	rc_sweep_rec sw;
	MDB_txn *txn;

	/* A look first, without the write lock: most processes find that
	 * another did it, and learn when the next is due. */
	if (ratectl__read_begin(h, &txn) != 0)
		return;
	if (sweep_get(h, txn, &sw) != 0)
		sw.due = now + RATECTL_SWEEP_NS;
	ratectl__read_end(h, txn);
	if (sw.due > now) {
		__atomic_store_n(&h->sweep_next, sw.due, __ATOMIC_RELAXED);
		return;
	}
	ratectl__err_save(keep, sizeof keep);
	ratectl__write(h, sweep_op, &c);
	ratectl__err_restore(keep);
}

int ratectl_sweep(ratectl *h, unsigned *removed)
{
	struct sweep_ctx c = { 0, 1, 0, 0 };
	int rc;

	ratectl__err_clear();
	if (removed)
		*removed = 0;
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	c.now = ratectl_now(h);
	if ((rc = ratectl__write(h, sweep_op, &c)) == 0 && removed)
		*removed = c.removed;
	return rc;
}
