/*
 * shared.c - budgets shared by many hosts through Redis.
 *
 * Redis holds the global GCRA of each limit (redis.c's script).  A host
 * holds credit: units it took from every limit of a dimension at once,
 * recorded in the ledger beside the budget (".s/NAME"), and spent by
 * admissions in their one transaction, after the local plan; so every
 * unit admitted on any host was first taken from the global GCRA, and
 * the local GCRA still paces the host at the budget's rates.
 *
 * Credit comes from the refiller: one thread per process and shared
 * budget, of which one per host at a time (the owner of an OFD lock on a
 * byte of the ledger's wake file, RC_REFILL_BASE + the budget's id,
 * dropped by the kernel if the process dies) talks to Redis.  It runs when an admission found too little
 * credit or left less than a low-water mark, and every RC_SYNC_NS
 * anyway: to take the next chunk (sized by the host's demand), to give
 * back what an idle host holds, to learn the global cooldown and to
 * spread this host's.  Each exchange carries the host's last known global
 * state, which the script keeps when Redis lost its own (restarted
 * empty).
 *
 * Redis unreachable: the budget is degraded (since a wall-clock time,
 * shown by `ratectl show`), and admissions spend the credit still held,
 * then a fallback share of every limit: 1/hosts of its rate and burst
 * (or, with RATECTL_SHARE_OPEN, the budget's own limits only).  The
 * refiller reconnects with a backoff from 100 ms to 5 s.
 *
 * Wake-ups (the table in wait.c): credit arriving and a budget turning
 * degraded wake rate waiters (RC_WAKE_RATE), who try again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "redis.h"

#define RC_NS_PER_S 1000000000LL
/* How often a host exchanges with Redis when nothing else asks: the
 * bound on how late a cooldown reaches it. */
#define RC_SYNC_NS (1000 * 1000000LL)
/* Demand is credit for this long ahead (at most the cap, caps_of())... */
#define RC_HORIZON_NS (1000 * 1000000LL)
/* ... and a host unused for this long gives its credit back. */
#define RC_IDLE_NS (2 * RC_NS_PER_S)
/* How long a starved admission waits before it looks again by itself:
 * what a missed wake-up would cost (the sync's credit wakes it). */
#define RC_STARVED_NS (50 * 1000000LL)
#define RC_BACKOFF_MIN (100 * 1000000LL)
#define RC_BACKOFF_MAX (5 * RC_NS_PER_S)
/* The refill lock: a byte just below the slot locks. */

/* ---- records ------------------------------------------------------------- */

/* ".c/NAME" and ".s/NAME": outside the budgets' key space (names cannot
 * start with '.'), so budget iteration never sees them. */
static MDB_val skey(char buf[RATECTL_NAME_MAX + 4], char kind, const char *name)
{
	size_t n = strlen(name);
	MDB_val k;

	buf[0] = '.';
	buf[1] = kind;
	buf[2] = '/';
	memcpy(buf + 3, name, n);
	k.mv_size = n + 3;
	k.mv_data = buf;
	return k;
}

static int st_get(ratectl *h, MDB_txn *txn, const char *name, uint32_t id,
                  rc_share_st *st)
{
	char kb[RATECTL_NAME_MAX + 4];
	MDB_val k = skey(kb, 's', name), v;
	int rc = mdb_get(txn, h->dbi, &k, &v);

	if (rc == MDB_NOTFOUND)
		return ratectl__err(RATECTL_ECORRUPT, "budget '%s': shared, but its credit "
		                    "record is missing; run `ratectl check --repair`", name);
	if (rc != 0)
		return ratectl__mdb_err(h, rc, name);
	if (v.mv_size != sizeof *st)
		goto bad;
	memcpy(st, v.mv_data, sizeof *st);
	if (st->magic != RC_SHARE_ST_MAGIC || st->budget_id != id)
		goto bad;
	st->last_error[sizeof st->last_error - 1] = '\0';
	return 0;
bad:
	return ratectl__err(RATECTL_ECORRUPT, "budget '%s': credit record is damaged; "
	                    "run `ratectl check --repair`", name);
}

static int st_put(ratectl *h, MDB_txn *txn, const char *name, const rc_share_st *st)
{
	char kb[RATECTL_NAME_MAX + 4];
	MDB_val k = skey(kb, 's', name), v = { sizeof *st, (void *)st };
	int rc = mdb_put(txn, h->dbi, &k, &v, 0);

	return rc == 0 || rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, name);
}

int ratectl_share_check(const ratectl_share *s)
{
	char err[256];

	if (!s || s->version != RATECTL_SHARE_VERSION)
		return ratectl__err(RATECTL_EBADCONFIG, "share: a ratectl_share of version "
		                    "%d is required", RATECTL_SHARE_VERSION);
	if (!memchr(s->url, '\0', sizeof s->url) ||
	    !memchr(s->password_file, '\0', sizeof s->password_file) ||
	    !memchr(s->password_env, '\0', sizeof s->password_env))
		return ratectl__err(RATECTL_EBADCONFIG, "share: a string is not terminated");
	if (!s->url[0])
		return 0;
	if (ratectl__redis_url_check(s->url, err, sizeof err) != 0)
		return ratectl__err(RATECTL_EBADCONFIG, "%s", err);
	if (s->hosts < 1 || s->hosts > 1000000)
		return ratectl__err(RATECTL_EBADCONFIG, "shared: hosts must be 1 .. 1000000, "
		                    "not %u", s->hosts);
	if (s->flags & ~(unsigned)RATECTL_SHARE_OPEN)
		return ratectl__err(RATECTL_EBADCONFIG, "shared: unknown flags 0x%x", s->flags);
	if (s->password_file[0] && s->password_env[0])
		return ratectl__err(RATECTL_EBADCONFIG, "shared: a password file or an "
		                    "environment variable, not both");
	return 0;
}

static int cfg_get(ratectl *h, MDB_txn *txn, const char *name, uint32_t id,
                   rc_share_cfg *cfg)
{
	char kb[RATECTL_NAME_MAX + 4];
	MDB_val k = skey(kb, 'c', name), v;
	int rc = mdb_get(txn, h->dbi, &k, &v);

	if (rc == MDB_NOTFOUND)
		return ratectl__err(RATECTL_ECORRUPT, "budget '%s': shared, but its Redis "
		                    "record is missing; run `ratectl check --repair`", name);
	if (rc != 0)
		return ratectl__mdb_err(h, rc, name);
	if (v.mv_size != sizeof *cfg)
		goto bad;
	memcpy(cfg, v.mv_data, sizeof *cfg);
	if (cfg->magic != RC_SHARE_CFG_MAGIC || cfg->budget_id != id ||
	    ratectl_share_check(&cfg->share) != 0 || !cfg->share.url[0])
		goto bad;
	return 0;
bad:
	return ratectl__err(RATECTL_ECORRUPT, "budget '%s': its Redis record is damaged; "
	                    "run `ratectl check --repair`", name);
}

int ratectl__share_drop(ratectl *h, MDB_txn *txn, const char *name)
{
	char kb[RATECTL_NAME_MAX + 4];
	const char kinds[2] = { 'c', 's' };
	unsigned i;
	int rc;

	for (i = 0; i < 2; i++) {
		MDB_val k = skey(kb, kinds[i], name);

		rc = mdb_del(txn, h->dbi, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return ratectl__mdb_err(h, rc, name);
	}
	return 0;
}

/* ---- the admission's part ------------------------------------------------ */

/* Which dimensions the budget limits. */
static void dims_of(const rc_budget_rec *rec, int has[2])
{
	unsigned i;

	has[0] = has[1] = 0;
	for (i = 0; i < rec->nlimits; i++)
		has[rec->lim[i].dim == RATECTL_TOKENS] = 1;
}

/* The fallback share of limit l: 1/hosts of its rate and of its burst. */
static void fallback_limit(const rc_limit *l, uint32_t hosts, int64_t tat, rc_limit *out)
{
	*out = *l;
	if (hosts > 1) {
		uint64_t burst = l->burst / hosts ? l->burst / hosts : 1;

		out->T = l->T > INT64_MAX / hosts ? INT64_MAX / 2 : l->T * (int64_t)hosts;
		out->burst = burst;
		out->tau = (uint64_t)out->T > (uint64_t)INT64_MAX / burst ? INT64_MAX / 2 :
		           out->T * (int64_t)burst;
	}
	out->tat = tat;
}

/* The most credit a host holds per dimension, and the burst the global
 * bucket keeps: credit is units taken out of the global bucket before
 * they are admitted, so the hosts' credit and the global bucket's burst
 * together must stay within the budget's burst for the global bound
 * burst + rate * t to hold.  Each of `hosts` hosts may hold up to
 * burst / (2 * hosts) of the tightest limit of a dimension (at least one
 * unit); the global bucket keeps the rest (at least half the burst). */
static void caps_of(const rc_budget_rec *rec, uint32_t hosts, int64_t cap[2])
{
	unsigned i;

	cap[0] = cap[1] = INT64_MAX;
	for (i = 0; i < rec->nlimits; i++) {
		int d = rec->lim[i].dim == RATECTL_TOKENS;
		uint64_t c = rec->lim[i].burst / (2 * (uint64_t)hosts);

		if ((int64_t)(c ? c : 1) < cap[d])
			cap[d] = (int64_t)(c ? c : 1);
	}
}

int ratectl__share_admit(const char *name, rc_budget_rec *rec, const ratectl_cost *cost,
                         int64_t now, int64_t t_adm, int64_t *retry_at, int *kick)
{
	rc_share_hot *sh = &rec->sh;
	int64_t need[2] = { 0, 0 };
	int has[2], d, rc;
	unsigned i;

	*kick = 0;
	dims_of(rec, has);
	need[0] = has[0] ? (int64_t)cost->requests : 0;
	need[1] = has[1] ? (int64_t)cost->tokens : 0;
	if (sh->credit[0] >= need[0] && sh->credit[1] >= need[1]) {
		for (d = 0; d < 2; d++) {
			int64_t low;

			sh->credit[d] -= need[d];
			sh->spent[d] += need[d];
			/* Under a third of the next chunk: ask for it now, while
			 * this one lasts.  The chunk is a second of demand, at
			 * most the cap. */
			low = sh->rate[d] < sh->cap[d] ? sh->rate[d] : sh->cap[d];
			if (has[d] && sh->credit[d] * 3 < low)
				*kick = 1;
		}
	} else if (!(sh->flags & RC_SH_DEGRADED)) {
		/* Nothing admitted: the transaction is abandoned, the refiller
		 * asked.  Its credit arriving wakes rate waiters. */
		*kick = 1;
		*retry_at = sh->eta > now + RC_STARVED_NS ? sh->eta : now + RC_STARVED_NS;
		return RATECTL_ELIMITED;
	} else if (!(sh->flags & RC_SH_OPEN)) {
		/* Degraded: the fallback share of every limit, at t_adm. */
		rc_limit fb[RATECTL_MAX_LIMITS];
		rc_sched none;
		int64_t t2 = t_adm;

		memset(&none, 0, sizeof none);
		for (i = 0; i < rec->nlimits; i++)
			fallback_limit(&rec->lim[i], sh->hosts, sh->fb_tat[i], &fb[i]);
		if ((rc = ratectl__gcra_plan(fb, rec->nlimits, &none, cost, t_adm, &t2)) != 0)
			return ratectl__err(rc, "budget '%s': the cost exceeds the burst of this "
			                    "host's share (1/%u) while Redis is unreachable",
			                    name, sh->hosts);
		if (t2 > t_adm) {
			*retry_at = t2;
			return RATECTL_ELIMITED;
		}
		ratectl__gcra_commit(fb, rec->nlimits, &none, cost, t_adm);
		for (i = 0; i < rec->nlimits; i++)
			sh->fb_tat[i] = fb[i].tat;
	}
	/* else degraded and open: the local limits only. */
	sh->last_use = now;
	return 0;
}

void ratectl__share_adjust(rc_budget_rec *rec, int64_t delta)
{
	int has[2];

	dims_of(rec, has);
	if (!(rec->reserved0 & RC_F_SHARED) || !has[1])
		return;
	/* A refund is credit again (beyond the cap it goes back at the next
	 * sync); a debit is owed to the global bucket before the next
	 * admission (credit may go below zero). */
	rec->sh.credit[1] -= delta;
	rec->sh.spent[1] += delta;
}

int ratectl__share_cooldown(ratectl *h, MDB_txn *txn, const char *name, int64_t until)
{
	rc_budget_rec rec;
	rc_share_st st;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, name, &rec)) != 0)
		return rc;
	if (!(rec.reserved0 & RC_F_SHARED))
		return 0;
	if ((rc = st_get(h, txn, name, rec.id, &st)) != 0)
		return rc;
	/* In server time, by the offset of the last sync (its error is half
	 * a round trip); before any sync the server's clock is unknown, and
	 * the cooldown stays this host's. */
	if (st.last_sync == 0 || until + st.offset <= st.push_cool)
		return 0;
	st.push_cool = until + st.offset;
	return st_put(h, txn, name, &st);
}

int ratectl__share_tighten(ratectl *h, MDB_txn *txn, const char *name, unsigned i,
                           int64_t tat)
{
	rc_budget_rec rec;
	rc_share_st st;
	int rc;

	if (i >= RATECTL_MAX_LIMITS || (rc = ratectl__rec_get(h, txn, name, &rec)) != 0)
		return i >= RATECTL_MAX_LIMITS ? 0 : rc;
	if (!(rec.reserved0 & RC_F_SHARED))
		return 0;
	if ((rc = st_get(h, txn, name, rec.id, &st)) != 0)
		return rc;
	/* As for a cooldown: in server time, once the offset is known. */
	if (st.last_sync == 0 || tat + st.offset <= st.push_tat[i])
		return 0;
	st.push_tat[i] = tat + st.offset;
	return st_put(h, txn, name, &st);
}

int ratectl__share_reboot(ratectl *h, MDB_txn *txn, const char *name, rc_budget_rec *rec)
{
	rc_share_st st;
	int rc;

	if (!(rec->reserved0 & RC_F_SHARED))
		return 0;
	/* Times of the last boot's clock mean nothing now: the next sync
	 * measures the offset again; the fallback share starts full. */
	rec->sh.last_use = rec->sh.eta = 0;
	memset(rec->sh.fb_tat, 0, sizeof rec->sh.fb_tat);
	if ((rc = st_get(h, txn, name, rec->id, &st)) != 0)
		return rc;
	st.last_sync = st.offset = st.window_start = 0;
	return st_put(h, txn, name, &st);
}

/* ---- the API --------------------------------------------------------------- */

struct share_ctx {
	const char *name;
	const ratectl_share *s;
	uint32_t id;
};

static int share_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct share_ctx *c = arg;
	char kb[RATECTL_NAME_MAX + 4];
	rc_budget_rec rec;
	rc_share_cfg cfg, old;
	rc_share_st st;
	MDB_val k, v;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, c->name, &rec)) != 0)
		return rc;
	c->id = rec.id;
	if (!c->s->url[0]) {
		if (!(rec.reserved0 & RC_F_SHARED))
			return 0;
		rec.reserved0 &= ~(uint32_t)RC_F_SHARED;
		memset(&rec.sh, 0, sizeof rec.sh);
		if ((rc = ratectl__share_drop(h, txn, c->name)) != 0 ||
		    (rc = ratectl__rec_put(h, txn, c->name, &rec)) != 0)
			return rc;
		return ratectl__meta_touch(h, txn);
	}
	memset(&cfg, 0, sizeof cfg);
	cfg.magic = RC_SHARE_CFG_MAGIC;
	cfg.budget_id = rec.id;
	cfg.share = *c->s;
	if (!(rec.reserved0 & RC_F_SHARED) || st_get(h, txn, c->name, rec.id, &st) != 0) {
		/* New: no credit until the first sync. */
		memset(&st, 0, sizeof st);
		st.magic = RC_SHARE_ST_MAGIC;
		st.budget_id = rec.id;
		memset(&rec.sh, 0, sizeof rec.sh);
	} else if (cfg_get(h, txn, c->name, rec.id, &old) == 0 &&
	           strcmp(old.share.url, c->s->url) != 0) {
		/* Another server: what was said of the last one is moot; the
		 * next sync tells (its credit stays: units taken are taken). */
		rec.sh.flags &= ~(uint32_t)RC_SH_DEGRADED;
		rec.sh.eta = 0;
		st.degraded_since = 0;
		st.last_error[0] = '\0';
	}
	rec.sh.hosts = c->s->hosts;
	rec.sh.flags = (rec.sh.flags & ~(uint32_t)RC_SH_OPEN) |
	               ((c->s->flags & RATECTL_SHARE_OPEN) ? RC_SH_OPEN : 0);
	caps_of(&rec, c->s->hosts, rec.sh.cap);
	rec.reserved0 |= RC_F_SHARED;
	k = skey(kb, 'c', c->name);
	v.mv_size = sizeof cfg;
	v.mv_data = &cfg;
	if ((rc = mdb_put(txn, h->dbi, &k, &v, 0)) != 0)
		return rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, c->name);
	if ((rc = st_put(h, txn, c->name, &st)) != 0 ||
	    (rc = ratectl__rec_put(h, txn, c->name, &rec)) != 0)
		return rc;
	return ratectl__meta_touch(h, txn);
}

int ratectl_budget_share(ratectl *h, const char *name, const ratectl_share *s)
{
	struct share_ctx c = { name, s, 0 };
	int rc;

	ratectl__err_clear();
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0 ||
	    (rc = ratectl_share_check(s)) != 0)
		return rc;
	/* Nothing connects here (an admin's command sets it up): the first
	 * admission in a process starts its refiller. */
	return ratectl__write(h, share_op, &c);
}

static int64_t wall_ns(const ratectl *h)
{
	struct timespec ts;

	if (h->clock.realtime)
		return h->clock.realtime(h->clock.ctx);
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * RC_NS_PER_S + ts.tv_nsec;
}

int ratectl_budget_shared_state(ratectl *h, const char *name, ratectl_shared_state *out)
{
	rc_budget_rec rec;
	rc_share_cfg cfg;
	rc_share_st st;
	MDB_txn *txn;
	int rc;

	ratectl__err_clear();
	memset(out, 0, sizeof *out);
	out->share.version = RATECTL_SHARE_VERSION;
	out->last_sync_age_ns = -1;
	if ((rc = ratectl__enter(h)) != 0 || (rc = ratectl_name_check(name)) != 0 ||
	    (rc = ratectl__read_begin(h, &txn)) != 0)
		return rc;
	if ((rc = ratectl__rec_get(h, txn, name, &rec)) == 0 &&
	    (rec.reserved0 & RC_F_SHARED) &&
	    (rc = cfg_get(h, txn, name, rec.id, &cfg)) == 0 &&
	    (rc = st_get(h, txn, name, rec.id, &st)) == 0) {
		out->share = cfg.share;
		out->degraded = !!(rec.sh.flags & RC_SH_DEGRADED);
		out->degraded_since = st.degraded_since;
		out->credit[0] = rec.sh.credit[0];
		out->credit[1] = rec.sh.credit[1];
		out->last_sync_age_ns = st.last_sync ? ratectl_now(h) - st.last_sync : -1;
		out->syncs = st.syncs;
		out->redis_commands = st.commands;
		out->restored = (int)st.restored;
		out->sig_differs = (int)st.sig_differs;
		memcpy(out->last_error, st.last_error, sizeof out->last_error);
		out->last_error[sizeof out->last_error - 1] = '\0';
	}
	ratectl__read_end(h, txn);
	return rc;
}

/* ---- the refiller ---------------------------------------------------------- */

typedef struct rc_refiller {
	struct rc_refiller *next;
	ratectl *h;
	uint32_t id;
	char name[RATECTL_NAME_MAX + 1];
	pid_t pid;                 /* the process it runs in */
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int kick;                  /* under mu */
	int stop;                  /* under mu */
	int64_t need[2];           /* the largest need seen since the last sync, under mu */
	rc_redis *conn;
	int64_t backoff;           /* the next reconnection's delay */
	int64_t retry_at;          /* no connection attempt before this */
	int64_t wake_at;           /* the script said: nothing before this */
	int64_t last_look;         /* when it last looked (atomic) */
} rc_refiller;

/* A low-water kick sooner than this after the refiller's last look is
 * dropped: it is on its way (the next chunk, or a wait Redis gave), and
 * waking it for every admission would only take the admitting CPU. */
#define RC_KICK_MIN_NS (10 * 1000000LL)

/* The budget's refill lock in the wake file: one refiller per host. */
static int refill_lock(ratectl *h, uint32_t id, int type)
{
	struct flock fl;

	memset(&fl, 0, sizeof fl);
	fl.l_type = (short)type;
	fl.l_whence = SEEK_SET;
	fl.l_start = RC_REFILL_BASE + (off_t)id;
	fl.l_len = 1;
	return fcntl(h->wfd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

struct sync_plan {
	rc_budget_rec rec;
	rc_share_cfg cfg;
	rc_share_st st;            /* as read */
	rc_take_req q;
	int64_t now;
	int new_window;            /* demand measured: its count starts again */
};

/* Read what a sync needs; 1 when the budget is gone or no longer shared. */
static int sync_read(rc_refiller *rf, struct sync_plan *p)
{
	ratectl *h = rf->h;
	MDB_txn *txn;
	int rc;

	if ((rc = ratectl__read_begin(h, &txn)) != 0)
		return rc;
	rc = ratectl__rec_get(h, txn, rf->name, &p->rec);
	if (rc == RATECTL_ENOTFOUND || (rc == 0 && (p->rec.id != rf->id ||
	                                            !(p->rec.reserved0 & RC_F_SHARED))))
		rc = 1;
	if (rc == 0 && (rc = cfg_get(h, txn, rf->name, p->rec.id, &p->cfg)) == 0)
		rc = st_get(h, txn, rf->name, p->rec.id, &p->st);
	ratectl__read_end(h, txn);
	return rc;
}

/* What to ask for: 0 when there is nothing to say and no sync is due. */
static int sync_plan(rc_refiller *rf, struct sync_plan *p, const int64_t need[2])
{
	rc_share_hot *sh = &p->rec.sh;
	rc_share_st *st = &p->st;
	rc_take_req *q = &p->q;
	int64_t cap[2], held, elapsed = st->window_start ? p->now - st->window_start : 0;
	int has[2], d, any = 0;
	unsigned i;

	memset(q, 0, sizeof *q);
	q->budget = rf->name;
	q->n = p->rec.nlimits;
	p->new_window = !st->window_start || elapsed >= RC_NS_PER_S / 10;
	caps_of(&p->rec, sh->hosts, cap);
	for (i = 0; i < p->rec.nlimits; i++) {
		const rc_limit *l = &p->rec.lim[i];
		int64_t keep = cap[l->dim == RATECTL_TOKENS] * (int64_t)sh->hosts;

		q->lim[i].dim = l->dim;
		q->lim[i].count = l->count;
		q->lim[i].period_ns = l->period;
		/* The global bucket keeps the burst less what the hosts may
		 * hold (caps_of()). */
		q->lim[i].burst = (uint64_t)keep < l->burst ? l->burst - (uint64_t)keep : 1;
		q->carried_tat[i] = st->g_tat[i];
		q->push_tat[i] = st->push_tat[i];
	}
	q->carried_cool = st->g_cool;
	q->carried_gen = st->g_gen;
	q->push_cool = st->push_cool;
	dims_of(&p->rec, has);
	for (d = 0; d < 2; d++) {
		int64_t target;

		sh->cap[d] = cap[d];
		if (!has[d])
			continue;
		/* Demand: the units spent since the window began, per second,
		 * smoothed (half the old, half the new); a window too short to
		 * say anything is left to grow. */
		if (p->new_window && elapsed > 0 && sh->spent[d] >= 0) {
			double r = (double)sh->spent[d] * RC_NS_PER_S / (double)elapsed;

			sh->rate[d] = (int64_t)((sh->rate[d] + r) / 2);
		}
		held = sh->credit[d];
		if (p->now - sh->last_use > RC_IDLE_NS && sh->last_use) {
			if (held > 0)
				q->give[d] = (uint64_t)held;     /* idle: all back */
			continue;
		}
		if (held > cap[d]) {
			q->give[d] = (uint64_t)(held - cap[d]);  /* refunds past the cap */
			continue;
		}
		/* A second of demand, at least what waits, at most the cap. */
		target = (int64_t)((double)sh->rate[d] * RC_HORIZON_NS / RC_NS_PER_S);
		if (target > cap[d])
			target = cap[d];
		if (target < need[d])
			target = need[d];
		if (target > held)
			q->want[d] = (uint64_t)(target - held);
		if (need[d] > held) {
			/* A starved host asks for a quarter of a chunk at least,
			 * so that a saturated budget is not shared a unit at a
			 * time (one round trip each). */
			int64_t min = (target < cap[d] ? target : cap[d]) / 4;

			q->need[d] = (uint64_t)((need[d] > min ? need[d] : min) - held);
			if (q->need[d] > q->want[d])
				q->want[d] = q->need[d];
		}
	}
	for (d = 0; d < 2; d++)
		any |= q->want[d] || q->give[d];
	for (i = 0; i < p->rec.nlimits; i++)
		any |= q->push_tat[i] != 0;
	/* Due a little early rather than a period late: the refiller wakes
	 * a period after its last look, which came before the last sync. */
	return any || q->push_cool || !st->last_sync ||
	       p->now - st->last_sync >= RC_SYNC_NS * 9 / 10;
}

struct sync_write {
	rc_refiller *rf;
	const struct sync_plan *p;
	const rc_take_res *res;     /* NULL: Redis could not be used */
	const char *err;
	int64_t reply_now;          /* the ledger's clock at the reply */
	uint64_t commands;
	int woke;
	int64_t cool_local;         /* a global cooldown to apply here, or 0 */
};

static int sync_write_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct sync_write *w = arg;
	const struct sync_plan *p = w->p;
	const rc_take_res *res = w->res;
	rc_budget_rec rec;
	rc_share_st st;
	int d, rc;
	unsigned i;

	w->woke = 0;
	w->cool_local = 0;
	if ((rc = ratectl__rec_get(h, txn, w->rf->name, &rec)) != 0)
		return rc;
	if (rec.id != w->rf->id || !(rec.reserved0 & RC_F_SHARED))
		return 1;
	if ((rc = st_get(h, txn, w->rf->name, rec.id, &st)) != 0)
		return rc;
	st.commands = st.commands + w->commands;
	if (!res) {
		if (!(rec.sh.flags & RC_SH_DEGRADED)) {
			rec.sh.flags |= RC_SH_DEGRADED;
			st.degraded_since = wall_ns(h);
			w->woke = 1;    /* waiters may use the fallback now */
		}
		snprintf(st.last_error, sizeof st.last_error, "%s", w->err ? w->err : "");
		if ((rc = st_put(h, txn, w->rf->name, &st)) != 0)
			return rc;
		return ratectl__rec_put(h, txn, w->rf->name, &rec);
	}
	/* Nothing granted for a need: the time it will fit, for the
	 * starved admissions to wait for. */
	rec.sh.eta = !res->got[0] && !res->got[1] && (p->q.need[0] || p->q.need[1]) ?
		w->reply_now + res->wait_ns : 0;
	for (d = 0; d < 2; d++) {
		rec.sh.credit[d] += (int64_t)res->got[d] - (int64_t)p->q.give[d];
		if (p->new_window)
			rec.sh.spent[d] -= p->rec.sh.spent[d];   /* what the plan counted */
		rec.sh.rate[d] = p->rec.sh.rate[d];
		rec.sh.cap[d] = p->rec.sh.cap[d];
		if (res->got[d])
			w->woke = 1;
	}
	if (p->new_window)
		st.window_start = p->now;           /* the next window */
	if (rec.sh.flags & RC_SH_DEGRADED)
		w->woke = 1;    /* back: waiters plan on credit again */
	rec.sh.flags &= ~(uint32_t)RC_SH_DEGRADED;
	st.degraded_since = 0;
	st.last_error[0] = '\0';
	st.offset = res->now - w->reply_now;
	st.last_sync = w->reply_now;
	for (i = 0; i < rec.nlimits; i++)
		st.g_tat[i] = res->tat[i];
	if (res->cool > st.g_cool && res->cool > res->now)
		w->cool_local = res->cool - st.offset;
	st.g_cool = res->cool;
	st.g_gen = res->gen;
	if (st.push_cool == p->q.push_cool)
		st.push_cool = 0;
	for (i = 0; i < rec.nlimits; i++)
		if (st.push_tat[i] == p->q.push_tat[i])
			st.push_tat[i] = 0;
	st.restored = (uint32_t)res->restored;
	st.sig_differs = (uint32_t)res->sig_differs;
	st.syncs++;
	if ((rc = st_put(h, txn, w->rf->name, &st)) != 0)
		return rc;
	return ratectl__rec_put(h, txn, w->rf->name, &rec);
}

/* Wake the budget's rate waiters: credit came, or the fallback applies. */
static void wake_rate(ratectl *h, uint32_t id)
{
	ratectl__wake(ratectl__lfile_find(h, id), RC_WAKE_RATE);
}

/* A global cooldown learned from Redis: this host pauses too, without
 * spreading it back (ratectl_cooldown() would). */
static void apply_cooldown(ratectl *h, const char *name, int64_t until)
{
	int64_t left = until - ratectl_now(h);

	if (left > 0)
		ratectl__cooldown_local(h, name, left > RATECTL_PERIOD_MAX ?
		                        RATECTL_PERIOD_MAX : left);
}

/* One exchange with Redis, under the refill lock.  *next: when the
 * refiller should look again at the latest. */
static void sync_once(rc_refiller *rf, const int64_t need[2], int64_t *next)
{
	ratectl *h = rf->h;
	struct sync_plan p;
	struct sync_write w;
	rc_take_res res;
	char err[200];
	uint64_t before = 0;
	int rc, opened = 0;

	*next = ratectl_now(h) + RC_SYNC_NS;
	if ((rc = sync_read(rf, &p)) != 0) {
		if (rc == 1) {
			pthread_mutex_lock(&rf->mu);
			rf->stop = 1;   /* deleted, or no longer shared */
			pthread_mutex_unlock(&rf->mu);
		}
		return;
	}
	p.now = ratectl_now(h);
	if (!sync_plan(rf, &p, need))
		return;
	memset(&w, 0, sizeof w);
	w.rf = rf;
	w.p = &p;
	err[0] = '\0';
	if (!rf->conn && p.now < rf->retry_at) {
		*next = rf->retry_at;
		return;         /* backing off; the degraded state stands */
	}
	if (!rf->conn) {
		rc_redis_cfg rcfg;

		memset(&rcfg, 0, sizeof rcfg);
		snprintf(rcfg.url, sizeof rcfg.url, "%s", p.cfg.share.url);
		snprintf(rcfg.password_file, sizeof rcfg.password_file, "%s",
		         p.cfg.share.password_file);
		snprintf(rcfg.password_env, sizeof rcfg.password_env, "%s",
		         p.cfg.share.password_env);
		rcfg.timeout_ns = RC_NS_PER_S;
		if ((rc = ratectl__redis_open(&rf->conn, &rcfg, err, sizeof err)) != 0)
			rf->conn = NULL;
		opened = 1;
	}
	if (rf->conn) {
		/* A connection opened just now counts its setup (AUTH, SELECT,
		 * SCRIPT LOAD) too: `before` stays 0. */
		if (!opened)
			before = ratectl__redis_commands(rf->conn);
		rc = ratectl__redis_take(rf->conn, &p.q, &res, err, sizeof err);
		w.commands = ratectl__redis_commands(rf->conn) - before;
		if (rc != 0) {
			ratectl__redis_close(rf->conn);
			rf->conn = NULL;
		}
	}
	w.reply_now = ratectl_now(h);
	if (rc != 0) {
		rf->backoff = rf->backoff ? rf->backoff * 2 : RC_BACKOFF_MIN;
		if (rf->backoff > RC_BACKOFF_MAX)
			rf->backoff = RC_BACKOFF_MAX;
		rf->retry_at = w.reply_now + rf->backoff;
		*next = rf->retry_at;
		w.res = NULL;
		w.err = err[0] ? err : ratectl_strerror(rc);
	} else {
		rf->backoff = 0;
		rf->retry_at = 0;
		w.res = &res;
		rf->wake_at = 0;
		if (!res.got[0] && !res.got[1] && (p.q.need[0] || p.q.need[1]) && res.wait_ns > 0)
			*next = rf->wake_at = w.reply_now + res.wait_ns;
	}
	if (ratectl__write(h, sync_write_op, &w) == 0) {
		if (w.woke)
			wake_rate(h, rf->id);
		if (w.cool_local)
			apply_cooldown(h, rf->name, w.cool_local);
	}
}

static void *refiller_main(void *arg)
{
	rc_refiller *rf = arg;
	ratectl *h = rf->h;
	int64_t need[2], next = 0;

	for (;;) {
		struct timespec ts;
		int64_t wait;

		pthread_mutex_lock(&rf->mu);
		wait = next - ratectl_now(h);
		/* After a sync that got nothing, kicks wait for the time the
		 * script gave: asking again sooner would only load Redis. */
		if (rf->wake_at > ratectl_now(h))
			rf->kick = 0;
		if (!rf->kick && !rf->stop && wait > 0) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += wait / RC_NS_PER_S;
			ts.tv_nsec += wait % RC_NS_PER_S;
			if (ts.tv_nsec >= RC_NS_PER_S) {
				ts.tv_sec++;
				ts.tv_nsec -= RC_NS_PER_S;
			}
			pthread_cond_timedwait(&rf->cv, &rf->mu, &ts);
		}
		if (rf->stop) {
			pthread_mutex_unlock(&rf->mu);
			break;
		}
		rf->kick = 0;
		need[0] = rf->need[0];
		need[1] = rf->need[1];
		rf->need[0] = rf->need[1] = 0;
		pthread_mutex_unlock(&rf->mu);
		__atomic_store_n(&rf->last_look, ratectl_now(h), __ATOMIC_RELAXED);

		next = ratectl_now(h) + RC_SYNC_NS;
		if (refill_lock(h, rf->id, F_WRLCK) != 0)
			continue;       /* another process of the host syncs */
		sync_once(rf, need, &next);
		refill_lock(h, rf->id, F_UNLCK);
	}
	if (rf->conn)
		ratectl__redis_close(rf->conn);
	rf->conn = NULL;
	return NULL;
}

void ratectl__share_kick(ratectl *h, const char *name, uint32_t id, const int64_t need[2],
                         int urgent)
{
	rc_refiller *rf;
	pid_t pid = getpid();
	pthread_condattr_t ca;

	pthread_mutex_lock(&h->share_mu);
	for (rf = h->refillers; rf; rf = rf->next)
		if (rf->id == id && rf->pid == pid && strcmp(rf->name, name) == 0)
			break;
	if (!rf && (rf = calloc(1, sizeof *rf)) != NULL) {
		/* A refiller of a parent process (fork) stays in the list,
		 * never touched: its thread is not in this process. */
		rf->h = h;
		rf->id = id;
		rf->pid = pid;
		snprintf(rf->name, sizeof rf->name, "%s", name);
		pthread_mutex_init(&rf->mu, NULL);
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&rf->cv, &ca);
		pthread_condattr_destroy(&ca);
		rf->kick = 1;
		if (pthread_create(&rf->thread, NULL, refiller_main, rf) == 0) {
			rf->started = 1;
			rf->next = h->refillers;
			h->refillers = rf;
		} else {
			pthread_cond_destroy(&rf->cv);
			pthread_mutex_destroy(&rf->mu);
			free(rf);
			rf = NULL;
		}
	}
	pthread_mutex_unlock(&h->share_mu);
	if (!rf)
		return;         /* no thread: the next admission asks again */
	if (!urgent &&
	    ratectl_now(h) - __atomic_load_n(&rf->last_look, __ATOMIC_RELAXED) < RC_KICK_MIN_NS)
		return;
	pthread_mutex_lock(&rf->mu);
	rf->kick = 1;
	if (need[0] > rf->need[0])
		rf->need[0] = need[0];
	if (need[1] > rf->need[1])
		rf->need[1] = need[1];
	pthread_cond_signal(&rf->cv);
	pthread_mutex_unlock(&rf->mu);
}

void ratectl__share_stop_all(ratectl *h)
{
	rc_refiller *rf, *next;
	pid_t pid = getpid();

	pthread_mutex_lock(&h->share_mu);
	rf = h->refillers;
	h->refillers = NULL;
	pthread_mutex_unlock(&h->share_mu);
	for (; rf; rf = next) {
		next = rf->next;
		if (rf->pid != pid || !rf->started)
			continue;       /* a parent's (fork): not ours to join or free */
		pthread_mutex_lock(&rf->mu);
		rf->stop = 1;
		pthread_cond_signal(&rf->cv);
		pthread_mutex_unlock(&rf->mu);
		pthread_join(rf->thread, NULL);
		pthread_cond_destroy(&rf->cv);
		pthread_mutex_destroy(&rf->mu);
		free(rf);
	}
}
