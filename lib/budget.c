/*
 * budget.c - budgets in the ledger: names, records, and the operations on
 * them other than admission (create, update, delete, reset, cooldown,
 * tightening from provider headers, inspection, reclaim).
 */
#include <errno.h>
#include <stdio.h>
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

/* Wake budget id's waiters (ratectl__wake), and put the record's
 * cooldown end in the header's mirror when cooldown_until >= 0.  No lease
 * file: nobody ever waited, nothing to do.  Called inside the write
 * transaction that makes the change: see wait.c. */
static int wake_budget(ratectl *h, uint32_t id, int what, int64_t cooldown_until)
{
	rc_lfile tmp, *lf;
	int rc;

	if ((rc = ratectl__lfile_peek(h, id, &tmp, &lf)) != 0)
		return rc > 0 ? 0 : rc;
	if (cooldown_until >= 0)
		__atomic_store_n(&lf->hdr->cooldown_until, cooldown_until,
		                 __ATOMIC_RELEASE);
	ratectl__wake(lf, what);
	ratectl__lfile_unpeek(&tmp, lf);
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
	memcpy(rec.lim, c->lim, sizeof rec.lim);
	if ((rc = ratectl__meta_touch(h, txn)) != 0)
		return rc;
	if (exists) {
		rec.id = old.id;
		rec.sched = old.sched;
		/* New limits, the same sharing: its credit and records stay
		 * (shared.c), its caps follow the new bursts at the next sync. */
		rec.reserved0 = old.reserved0 & RC_F_SHARED;
		rec.sh = old.sh;
		/* Waiters look again once this commits: the limits changed. */
		if ((rc = wake_budget(h, rec.id, RC_WAKE_SLOTS | RC_WAKE_RATE, 0)) != 0)
			return rc;
		for (i = 0; i < rec.nlimits; i++)
			for (j = 0; j < old.nlimits; j++)
				if (old.lim[j].dim == rec.lim[i].dim &&
				    old.lim[j].period == rec.lim[i].period)
					ratectl__gcra_rescale(&rec.lim[i], &old.lim[j], now);
	} else if ((rc = ratectl__meta_next_id(h, txn, &rec.id)) != 0) {
		return rc;
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
	    (rc = ratectl__meta_touch(h, txn)) != 0)
		return rc;
	/* Its waiters fail with RATECTL_ENOTFOUND once this commits. */
	return c->id ? wake_budget(h, c->id, RC_WAKE_VOID, -1) : 0;
}

int ratectl_budget_delete(ratectl *h, const char *name)
{
	struct del_ctx c = { name, 0 };
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0 ||
	    (rc = ratectl__write(h, delete_op, &c)) != 0)
		return rc;
	return c.id ? ratectl__lfile_unlink(h, c.id) : 0;
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
	return wake_budget(h, rec->id, RC_WAKE_VOID, 0);
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
	return wake_budget(h, rec->id, RC_WAKE_RATE | RC_WAKE_RESERVED, until);
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

/* Fill *out from rec and, when the budget has one, its lease file, read
 * without creating it or keeping a descriptor: a read-only look at
 * thousands of budgets must not exhaust descriptors or make files, and
 * what cannot be read is an error, never a zero. */
static int info_fill(ratectl *h, const char *name, const rc_budget_rec *rec,
                     int64_t now, ratectl_budget_info *out)
{
	rc_lfile tmp, *lf;
	unsigned i;
	int rc;

	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", name);
	out->config.version = RATECTL_BUDGET_VERSION;
	out->config.nlimits = rec->nlimits;
	out->config.max_inflight = rec->max_inflight;
	out->config.jitter_ns = rec->jitter;
	out->config.batch_share = rec->batch_share;
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
	if ((rc = ratectl__lfile_peek(h, rec->id, &tmp, &lf)) != 0)
		return rc > 0 ? 0 : rc;         /* no file: never admitted */
	for (i = 0; i < RC_C_COUNT; i++)
		(&out->counters.admitted)[i] =
			__atomic_load_n(&lf->hdr->counters[i], __ATOMIC_RELAXED);
	for (i = 0; i < lf->hdr->hiwater && i < RATECTL_MAX_INFLIGHT; i++) {
		if (lf->slots[i].state != RC_SLOT_HELD)
			continue;
		if (ratectl__slot_locked(lf, i))
			out->inflight++;
		else
			out->dead++;
	}
	ratectl__lfile_unpeek(&tmp, lf);
	return 0;
}

/* Entry point of the read-only calls on one budget: its record from a
 * read transaction. */
static int budget_read(ratectl *h, const char *name, rc_budget_rec *rec)
{
	MDB_txn *txn;
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0 ||
	    (rc = ratectl__read_begin(h, &txn)) != 0)
		return rc;
	rc = ratectl__rec_get(h, txn, name, rec);
	ratectl__read_end(h, txn);
	return rc;
}

int ratectl_budget_get(ratectl *h, const char *name, ratectl_budget_info *out)
{
	rc_budget_rec rec;
	int rc;

	if ((rc = budget_read(h, name, &rec)) == 0)
		rc = info_fill(h, name, &rec, ratectl_now(h), out);
	return rc;
}
struct foreach_ctx {
	int (*fn)(const ratectl_budget_info *info, void *ctx);
	void *ctx;
};

static int foreach_each(ratectl *h, MDB_txn *txn, const char *name,
                        const MDB_val *v, void *arg)
{
	struct foreach_ctx *c = arg;
	ratectl_budget_info info;
	rc_budget_rec rec;
	int rc;

	(void)txn;
	if ((rc = ratectl__rec_load(name, v, &rec)) != 0 ||
	    (rc = info_fill(h, name, &rec, ratectl_now(h), &info)) != 0)
		return rc;
	return c->fn(&info, c->ctx);
}

int ratectl_budget_foreach(ratectl *h,
                           int (*fn)(const ratectl_budget_info *info, void *ctx),
                           void *ctx)
{
	struct foreach_ctx c = { fn, ctx };
	MDB_txn *txn;
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl__read_begin(h, &txn)) != 0)
		return rc;
	rc = ratectl__budget_each(h, txn, foreach_each, &c);
	ratectl__read_end(h, txn);
	return rc;
}

int ratectl_leases(ratectl *h, const char *name, ratectl_lease_info *out,
                   size_t cap, size_t *n)
{
	int64_t now = ratectl_now(h);
	rc_budget_rec rec;
	rc_lfile tmp, *lf;
	uint32_t i;
	int rc;

	*n = 0;
	if ((rc = budget_read(h, name, &rec)) != 0)
		return rc;
	if ((rc = ratectl__lfile_peek(h, rec.id, &tmp, &lf)) != 0)
		return rc > 0 ? 0 : rc;
	for (i = 0; i < lf->hdr->hiwater && i < RATECTL_MAX_INFLIGHT; i++) {
		const rc_slot *s = &lf->slots[i];

		if (s->state != RC_SLOT_HELD)
			continue;
		if (*n < cap)
			out[*n] = (ratectl_lease_info){ i, s->pid, ratectl__slot_locked(lf, i),
			                                now - s->start, s->tokens };
		(*n)++;
	}
	ratectl__lfile_unpeek(&tmp, lf);
	return 0;
}

/* A damaged record must not stop the others' slots from coming back:
 * only the id is read. */
static int reclaim_each(ratectl *h, MDB_txn *txn, const char *name,
                        const MDB_val *v, void *ctx)
{
	unsigned *slots = ctx;
	rc_lfile tmp, *lf;
	uint32_t id;
	int rc;

	(void)txn;
	(void)name;
	if (v->mv_size < RC_REC_SIZE(0))
		return 0;
	memcpy(&id, (const char *)v->mv_data + offsetof(rc_budget_rec, id), sizeof id);
	if ((rc = ratectl__lfile_peek(h, id, &tmp, &lf)) != 0)
		return rc > 0 ? 0 : rc;
	*slots += ratectl__slot_reclaim(lf);
	ratectl__lfile_unpeek(&tmp, lf);
	return 0;
}

/* Inside a write transaction, so that no admission probes the same slots. */
static int reclaim_op(ratectl *h, MDB_txn *txn, void *arg)
{
	unsigned *slots = arg;
	int rc;

	*slots = 0;
	rc = ratectl__budget_each(h, txn, reclaim_each, slots);
	return rc != 0 ? rc : 1;        /* nothing written: abort */
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
		*slots = freed;
	if (readers)
		*readers = (unsigned)dead;
	return rc;
}

/* Lock-free on the shared counters: a compare-and-swap loop keeps the
 * share exact across processes without a transaction. */
int ratectl_retry_take(ratectl *h, const char *name, unsigned percent)
{
	rc_budget_rec rec;
	rc_lfile *lf;
	uint64_t r, admitted;
	int rc;

	if ((rc = budget_read(h, name, &rec)) != 0 ||
	    (rc = ratectl__lfile_get(h, rec.id, &lf)) != 0)
		return rc;
	r = __atomic_load_n(&lf->hdr->counters[RC_C_RETRIES], __ATOMIC_RELAXED);
	do {
		admitted = __atomic_load_n(&lf->hdr->counters[RC_C_ADMITTED],
		                           __ATOMIC_RELAXED);
		if ((r + 1) * 100 > admitted * percent + 100)
			return RATECTL_ELIMITED;
	} while (!__atomic_compare_exchange_n(&lf->hdr->counters[RC_C_RETRIES], &r,
	                                      r + 1, 0, __ATOMIC_RELAXED,
	                                      __ATOMIC_RELAXED));
	return 0;
}
