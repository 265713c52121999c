/*
 * admit.c - admission: try, acquire (fair, by reservation), release.
 *
 * One admission is one LMDB write transaction: read the budget's record,
 * plan with the GCRA arithmetic (gcra.c), take an in-flight slot if the
 * budget caps them (lease.c), write the record back.  Nothing else: no
 * fsync, no second transaction, no allocation.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "internal.h"

struct admit_ctx {
	const char *name;
	const ratectl_cost *cost;
	int64_t now;
	int64_t latest;            /* latest admission time accepted */
	/* results */
	rc_lfile *lf;
	uint32_t id;
	int32_t slot;
	uint32_t seq;              /* release_seq before deciding */
	uint32_t cseq;             /* change_seq before deciding */
	uint32_t epoch;            /* reservations' epoch before deciding */
	int watching;              /* this wait watches for dead holders */
	int64_t t_adm;
	int64_t cooldown_until;
	int64_t before[RATECTL_MAX_LIMITS];
	int64_t after[RATECTL_MAX_LIMITS];
	/* A shared budget's refiller to wake after the commit (shared.c):
	 * 1 a low-water mark, 2 starved. */
	int kick;
	int64_t need[2];
};

/* Plan, on a record already read: c->t_adm, or why never or not now. */
static int admit_plan(struct admit_ctx *c, rc_budget_rec *rec)
{
	rc_lease_hdr *hd = c->lf->hdr;
	int rc;

	c->id = rec->id;
	c->cooldown_until = rec->sched.cooldown_until;
	/* Read before deciding: a change or release after this wakes a wait. */
	c->seq = __atomic_load_n(&hd->release_seq, __ATOMIC_SEQ_CST);
	c->cseq = __atomic_load_n(&hd->change_seq, __ATOMIC_SEQ_CST);
	c->epoch = __atomic_load_n(&hd->epoch, __ATOMIC_SEQ_CST);
	/* The mirror follows the record (a stale one would send reserved
	 * waiters back in line forever). */
	if (__atomic_load_n(&hd->cooldown_until, __ATOMIC_RELAXED) != c->cooldown_until)
		__atomic_store_n(&hd->cooldown_until, c->cooldown_until, __ATOMIC_RELEASE);
	rc = ratectl__gcra_plan(rec->lim, rec->nlimits, &rec->sched, c->cost, c->now,
	                        &c->t_adm);
	if (rc != 0)
		return ratectl__err(rc, "budget '%s': cost of %llu requests, %llu "
		                    "tokens exceeds a limit's burst", c->name,
		                    (unsigned long long)c->cost->requests,
		                    (unsigned long long)c->cost->tokens);
	/* Nobody reserves during a cooldown: it may end early (wait.c). */
	if (c->cooldown_until > c->now)
		return RATECTL_ECOOLDOWN;
	return 0;
}

/* Charge at c->t_adm (no earlier than the plan's): 0, or why not. */
static int admit_charge(ratectl *h, struct admit_ctx *c, rc_budget_rec *rec)
{
	unsigned i;
	int rc;

	if (c->t_adm > c->latest)
		return RATECTL_ELIMITED;
	/* Batch waits in line only within its guaranteed share; otherwise it
	 * takes what is free when it comes back at t_adm, after everyone who
	 * reserved meanwhile. */
	if (c->cost->priority == RATECTL_BATCH && c->t_adm > c->now &&
	    !ratectl__batch_may_reserve(&rec->sched, c->t_adm))
		return RATECTL_ELIMITED;
	if (rec->max_inflight &&
	    (rc = ratectl__slot_claim(c->lf, rec->max_inflight, h->pid, c->t_adm,
	                              c->cost->tokens, &c->slot)) != 0)
		return rc;
	for (i = 0; i < rec->nlimits; i++)
		c->before[i] = rec->lim[i].tat;
	ratectl__gcra_commit(rec->lim, rec->nlimits, &rec->sched, c->cost, c->t_adm);
	for (i = 0; i < rec->nlimits; i++)
		c->after[i] = rec->lim[i].tat;
	if (c->cost->priority == RATECTL_BATCH && c->t_adm > c->now)
		ratectl__batch_commit(rec->lim, rec->nlimits, &rec->sched, c->cost,
		                      rec->batch_share, c->t_adm);
	return 0;
}

/* A shared budget: spend the host's credit (shared.c) for what was just
 * charged.  Without credit the admission waits, as for a rate, until
 * the refiller's credit wakes it or RC_STARVED_NS passes. */
static int admit_shared(struct admit_ctx *c, rc_budget_rec *rec)
{
	int64_t retry_at = 0;
	int kick = 0, rc;

	if (!(rec->reserved0 & RC_F_SHARED))
		return 0;
	rc = ratectl__share_admit(c->name, rec, c->cost, c->now, c->t_adm, &retry_at,
	                          &kick);
	if (kick) {
		/* Starved: it waits for this much; else a low-water mark. */
		c->kick = rc == RATECTL_ELIMITED ? 2 : 1;
		c->need[0] = c->kick == 2 ? (int64_t)c->cost->requests : 0;
		c->need[1] = c->kick == 2 ? (int64_t)c->cost->tokens : 0;
	}
	if (rc == RATECTL_ELIMITED)
		c->t_adm = retry_at > c->now ? retry_at : c->now + 1;
	return rc;
}

/* Decide and charge, on a record already read: 0, or why not. */
static int admit_rec(ratectl *h, struct admit_ctx *c, rc_budget_rec *rec)
{
	int rc = admit_plan(c, rec);

	if (rc == 0)
		rc = admit_charge(h, c, rec);
	if (rc == 0 && (rc = admit_shared(c, rec)) != 0 && c->slot >= 0) {
		ratectl__slot_release(c->lf, c->slot);
		c->slot = -1;
	}
	return rc;
}

/* Not yet opened in this process: opening (and perhaps creating) the file
 * takes tens of microseconds, which must not be spent holding the host's
 * write lock.  Abort; admit_write() opens it and tries again. */
#define RC_NEED_LFILE (RATECTL_ERR_BASE - 100)

static int lease_file(ratectl *h, struct admit_ctx *c, uint32_t id)
{
	c->id = id;
	c->lf = ratectl__lfile_find(h, id);
	return c->lf ? 0 : RC_NEED_LFILE;
}

static int admit_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct admit_ctx *c = arg;
	MDB_cursor *cur = NULL;
	rc_budget_rec rec;
	int rc;

	if (c->slot >= 0) {     /* a previous attempt's commit failed */
		ratectl__slot_release(c->lf, c->slot);
		c->slot = -1;
	}
	if ((rc = ratectl__rec_fetch(h, txn, c->name, &rec, &cur)) == 0 &&
	    (rc = lease_file(h, c, rec.id)) == 0 &&
	    (rc = admit_rec(h, c, &rec)) == 0 &&
	    (rc = ratectl__rec_store(h, cur, c->name, &rec)) != 0 && c->slot >= 0) {
		ratectl__slot_release(c->lf, c->slot);
		c->slot = -1;
	}
	if (cur)
		mdb_cursor_close(cur);
	return rc;
}

static int admit_write_once(ratectl *h, struct admit_ctx *c);

static int admit_write(ratectl *h, struct admit_ctx *c)
{
	int rc;

	c->kick = 0;
	rc = admit_write_once(h, c);
	if (c->kick)
		ratectl__share_kick(h, c->name, c->id, c->need, c->kick == 2);
	return rc;
}

static int admit_write_once(ratectl *h, struct admit_ctx *c)
{
	int rc, tries;

	for (tries = 0; tries < 4; tries++) {
		rc = ratectl__write(h, admit_op, c);
		if (rc != 0 && c->slot >= 0) {
			/* Claimed in a transaction that did not commit (the map
			 * could not grow): the slot is not ours to keep. */
			ratectl__slot_release(c->lf, c->slot);
			c->slot = -1;
		}
		if (rc != RC_NEED_LFILE)
			return rc;
		if ((rc = ratectl__lfile_get(h, c->id, &c->lf)) != 0)
			return rc;
	}
	return ratectl__err(RATECTL_ELMDB, "budget '%s': lease file keeps "
	                    "changing", c->name);
}

/* Give back a reservation that will not be used (signal, cooldown). */
static int undo_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct admit_ctx *c = arg;
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, c->name, &rec)) != 0)
		return rc == RATECTL_ENOTFOUND ? 1 : rc;
	if (rec.id != c->id)
		return 1;
	ratectl__gcra_undo(rec.lim, rec.nlimits, c->before, c->after);
	ratectl__wake(c->lf, RC_WAKE_RATE);     /* the place is free again */
	return ratectl__rec_put(h, txn, c->name, &rec);
}

/* Give back the slot, and the place too unless the reservation was void
 * (reset or deleted: nothing of it is left to give back). */
static void cancel(ratectl *h, struct admit_ctx *c, int give_back)
{
	if (c->slot >= 0)
		ratectl__slot_release(c->lf, c->slot);
	c->slot = -1;
	if (give_back)
		ratectl__write(h, undo_op, c);
}

static void grant(ratectl *h, struct admit_ctx *c, ratectl_lease *lease)
{
	lease->magic = RC_LEASE_HELD;
	lease->budget_id = c->id;
	if (lease->name != c->name)
		strcpy(lease->name, c->name);
	lease->slot = c->slot;
	lease->pid = h->pid;
	lease->tokens = c->cost->tokens;
	lease->start_ns = c->t_adm;
	lease->fork_gen = h->fork_gen;
	ratectl__count(c->lf, RC_C_ADMITTED, 1);
	ratectl__count(c->lf, RC_C_TOK_EST, c->cost->tokens);
}

static int admit_begin(ratectl *h, const char *name, const ratectl_cost *c,
                       ratectl_lease *lease)
{
	int rc;

	ratectl__err_clear();
	if (lease)
		lease->magic = 0;
	if (!c || !lease)
		return ratectl__err(-EINVAL, "admission: cost and lease are required");
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	return ratectl_name_check(name);
}

int ratectl_try(ratectl *h, const char *name, const ratectl_cost *cost,
                ratectl_lease *lease, int64_t *wait_ns)
{
	struct admit_ctx c = { .name = name, .cost = cost, .slot = -1 };
	int rc;

	if (wait_ns)
		*wait_ns = 0;
	if ((rc = admit_begin(h, name, cost, lease)) != 0)
		return rc;
	c.now = c.latest = ratectl_now(h);
	rc = admit_write(h, &c);
	if (rc == 0) {
		grant(h, &c, lease);
		return 0;
	}
	if (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN) {
		if (wait_ns)
			*wait_ns = c.t_adm - c.now;     /* > 0: t_adm > latest = now */
	}
	if (c.lf && (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN ||
	             rc == RATECTL_EINFLIGHT))
		ratectl__count(c.lf, RC_C_REFUSED, 1);
	return rc;
}

static int timed_out(ratectl *h, struct admit_ctx *c, const char *name)
{
	if (c->lf)
		ratectl__count(c->lf, RC_C_REFUSED, 1);
	(void)h;
	return ratectl__err(RATECTL_ETIMEDOUT, "budget '%s': not admitted before "
	                    "the deadline", name);
}

static int acquire_loop(ratectl *h, struct admit_ctx *c, int64_t deadline,
                        int *waited);

int ratectl_acquire(ratectl *h, const char *name, const ratectl_cost *cost,
                    ratectl_lease *lease, int64_t timeout_ns)
{
	struct admit_ctx c = { .name = name, .cost = cost, .slot = -1 };
	int64_t start, deadline;
	int rc, waited = 0;

	if ((rc = admit_begin(h, name, cost, lease)) != 0)
		return rc;
	start = ratectl_now(h);
	deadline = timeout_ns < 0 || timeout_ns > INT64_MAX - start ?
		INT64_MAX : start + timeout_ns;
	rc = acquire_loop(h, &c, deadline, &waited);
	if (c.watching)
		ratectl__slot_unwatch(h, c.lf, &c.watching);
	if (rc != 0)
		return rc;
	grant(h, &c, lease);
	if (waited) {
		int64_t w = ratectl_now(h) - start;

		ratectl__count(c.lf, RC_C_WAITED, 1);
		ratectl__count(c.lf, RC_C_WAIT_NS, w > 0 ? (uint64_t)w : 0);
	}
	return 0;
}

/* Reserve a place (and a slot) and sleep until it; or wait for a slot,
 * for the cooldown to end, or for a change that may let us in. */
static int acquire_loop(ratectl *h, struct admit_ctx *c, int64_t deadline,
                        int *waited)
{
	int rc;

	for (;;) {
		c->now = ratectl_now(h);
		/* A deadline already past (timeout 0) still admits what fits now. */
		c->latest = deadline > c->now ? deadline : c->now;
		rc = admit_write(h, c);
		if (rc == RATECTL_EINFLIGHT || rc == RATECTL_ELIMITED ||
		    rc == RATECTL_ECOOLDOWN) {
			if (c->now >= deadline)
				return timed_out(h, c, c->name);
			*waited = 1;
			if (rc == RATECTL_EINFLIGHT)
				rc = ratectl__slot_wait(h, c->lf, c->seq, deadline, &c->watching);
			else if (rc == RATECTL_ECOOLDOWN)
				rc = ratectl__change_wait(h, c->lf, c->cseq,
				                          c->cooldown_until < deadline ?
				                          c->cooldown_until : deadline);
			else    /* past the deadline, or batch beyond its share */
				rc = ratectl__change_wait(h, c->lf, c->cseq,
				                          c->t_adm < deadline ? c->t_adm : deadline);
			if (rc != 0)
				return rc;
			continue;
		}
		if (rc != 0)
			return rc;
		if (c->t_adm > c->now)
			*waited = 1;
		rc = ratectl__reserved_wait(h, c->lf, c->t_adm, c->cooldown_until, c->epoch);
		if (rc == 0)
			return 0;
		cancel(h, c, rc != 2);
		if (rc < 0)
			return rc;
	}
}

/* ---- several budgets at once --------------------------------------------- */

struct many_ctx {
	unsigned n;
	int64_t now, latest;
	int which;                 /* the budget that refused or binds the time */
	struct admit_ctx c[RATECTL_MANY_MAX];
};

static void many_unclaim(struct many_ctx *m)
{
	unsigned i;

	for (i = 0; i < m->n; i++)
		if (m->c[i].slot >= 0) {
			ratectl__slot_release(m->c[i].lf, m->c[i].slot);
			m->c[i].slot = -1;
		}
}

/* Plan every budget, charge all at the latest time any needs, write all:
 * one transaction, all or nothing. */
static int many_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct many_ctx *m = arg;
	rc_budget_rec rec[RATECTL_MANY_MAX];
	int64_t t = 0;
	unsigned i;
	int rc = 0;

	many_unclaim(m);        /* a previous attempt's commit failed */
	for (i = 0; i < m->n && rc == 0; i++) {
		struct admit_ctx *c = &m->c[i];

		c->now = m->now;
		c->latest = m->latest;
		m->which = (int)i;
		if ((rc = ratectl__rec_get(h, txn, c->name, &rec[i])) == 0 &&
		    (rc = lease_file(h, c, rec[i].id)) == 0 &&
		    (rc = admit_plan(c, &rec[i])) == 0 && c->t_adm > t)
			t = c->t_adm;
	}
	for (i = 0; i < m->n && rc == 0; i++) {
		if (m->c[i].t_adm == t)
			m->which = (int)i;      /* the binding one, to wait on */
		m->c[i].t_adm = t;
	}
	if (rc == 0 && t > m->latest)
		rc = RATECTL_ELIMITED;
	for (i = 0; i < m->n && rc == 0; i++)
		if ((rc = admit_charge(h, &m->c[i], &rec[i])) != 0 ||
		    (rc = admit_shared(&m->c[i], &rec[i])) != 0)
			m->which = (int)i;
	for (i = 0; i < m->n && rc == 0; i++)
		rc = ratectl__rec_put(h, txn, m->c[i].name, &rec[i]);
	if (rc != 0)
		many_unclaim(m);
	return rc;
}

static void many_kick(ratectl *h, struct many_ctx *m)
{
	unsigned i;

	for (i = 0; i < m->n; i++)
		if (m->c[i].kick) {
			m->c[i].kick = 0;
			ratectl__share_kick(h, m->c[i].name, m->c[i].id, m->c[i].need,
			                    m->c[i].kick == 2);
		}
}

static int many_write(ratectl *h, struct many_ctx *m)
{
	unsigned tries;
	int rc;

	for (tries = 0; tries < m->n + 4; tries++) {
		struct admit_ctx *c;

		rc = ratectl__write(h, many_op, m);
		if (rc != 0)
			many_unclaim(m);
		many_kick(h, m);
		if (rc != RC_NEED_LFILE)
			return rc;
		c = &m->c[m->which];
		if ((rc = ratectl__lfile_get(h, c->id, &c->lf)) != 0)
			return rc;
	}
	return ratectl__err(RATECTL_ELMDB, "budgets: lease files keep changing");
}

static int many_begin(ratectl *h, const char *const *names, unsigned n,
                      const ratectl_cost *cost, ratectl_lease *leases,
                      struct many_ctx *m)
{
	unsigned i, j;
	int rc;

	ratectl__err_clear();
	if (!names || !cost || !leases || n < 1 || n > RATECTL_MANY_MAX)
		return ratectl__err(-EINVAL, "admission: 1 to %d budgets, a cost and "
		                    "as many leases", RATECTL_MANY_MAX);
	for (i = 0; i < n; i++)
		leases[i].magic = 0;
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	memset(m, 0, sizeof *m);
	m->n = n;
	for (i = 0; i < n; i++) {
		if ((rc = ratectl_name_check(names[i])) != 0)
			return rc;
		for (j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return ratectl__err(-EINVAL, "admission: budget '%s' named "
				                    "twice", names[i]);
		m->c[i] = (struct admit_ctx){ .name = names[i], .cost = cost, .slot = -1 };
	}
	return 0;
}

static void many_grant(ratectl *h, struct many_ctx *m, ratectl_lease *leases)
{
	unsigned i;

	for (i = 0; i < m->n; i++)
		grant(h, &m->c[i], &leases[i]);
}

int ratectl_try_many(ratectl *h, const char *const *names, unsigned n,
                     const ratectl_cost *c, ratectl_lease *leases, int64_t *wait_ns)
{
	struct many_ctx m;
	int rc;

	if (wait_ns)
		*wait_ns = 0;
	if ((rc = many_begin(h, names, n, c, leases, &m)) != 0)
		return rc;
	m.now = m.latest = ratectl_now(h);
	if ((rc = many_write(h, &m)) == 0) {
		many_grant(h, &m, leases);
		return 0;
	}
	if ((rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN) && wait_ns)
		*wait_ns = m.c[m.which].t_adm - m.now;
	if (m.c[m.which].lf && (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN ||
	                        rc == RATECTL_EINFLIGHT))
		ratectl__count(m.c[m.which].lf, RC_C_REFUSED, 1);
	return rc;
}

/* Give every place back in one transaction (those not void). */
static int many_undo_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct many_ctx *m = arg;
	unsigned i;
	int rc;

	for (i = 0; i < m->n; i++) {
		struct admit_ctx *c = &m->c[i];
		rc_budget_rec rec;

		if (__atomic_load_n(&c->lf->hdr->epoch, __ATOMIC_SEQ_CST) != c->epoch)
			continue;
		if ((rc = ratectl__rec_get(h, txn, c->name, &rec)) == RATECTL_ENOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		if (rec.id != c->id)
			continue;
		ratectl__gcra_undo(rec.lim, rec.nlimits, c->before, c->after);
		ratectl__wake(c->lf, RC_WAKE_RATE);
		if ((rc = ratectl__rec_put(h, txn, c->name, &rec)) != 0)
			return rc;
	}
	return 0;
}

/* Sleep until the place, on the binding budget's words; then every
 * budget's place must still stand: 0, or > 0 to plan again, or -EINTR. */
static int many_sleep(ratectl *h, struct many_ctx *m)
{
	struct admit_ctx *b = &m->c[m->which];
	unsigned i;
	int rc;

	rc = ratectl__reserved_wait(h, b->lf, b->t_adm, b->cooldown_until, b->epoch);
	for (i = 0; i < m->n && rc == 0; i++) {
		struct admit_ctx *c = &m->c[i];

		if (__atomic_load_n(&c->lf->hdr->epoch, __ATOMIC_SEQ_CST) != c->epoch ||
		    (__atomic_load_n(&c->lf->hdr->cooldown_until, __ATOMIC_ACQUIRE) >
		     c->t_adm && c->cooldown_until <= c->t_adm))
			rc = 1;
	}
	return rc;
}

int ratectl_acquire_many(ratectl *h, const char *const *names, unsigned n,
                         const ratectl_cost *cost, ratectl_lease *leases,
                         int64_t timeout_ns)
{
	struct many_ctx m;
	rc_lfile *watched = NULL;
	int64_t deadline;
	int rc, watching = 0;

	if ((rc = many_begin(h, names, n, cost, leases, &m)) != 0)
		return rc;
	m.now = ratectl_now(h);
	deadline = timeout_ns < 0 || timeout_ns > INT64_MAX - m.now ?
		INT64_MAX : m.now + timeout_ns;
	for (;;) {
		struct admit_ctx *w;

		m.now = ratectl_now(h);
		m.latest = deadline > m.now ? deadline : m.now;
		rc = many_write(h, &m);
		w = &m.c[m.which];
		if (rc == RATECTL_EINFLIGHT || rc == RATECTL_ELIMITED ||
		    rc == RATECTL_ECOOLDOWN) {
			if (m.now >= deadline) {
				rc = timed_out(h, w, w->name);
				break;
			}
			if (rc == RATECTL_EINFLIGHT) {
				if (watching && watched != w->lf)
					ratectl__slot_unwatch(h, watched, &watching);
				watched = w->lf;
				rc = ratectl__slot_wait(h, w->lf, w->seq, deadline, &watching);
			} else {
				int64_t until = rc == RATECTL_ECOOLDOWN ? w->cooldown_until
				                                        : w->t_adm;

				rc = ratectl__change_wait(h, w->lf, w->cseq,
				                          until < deadline ? until : deadline);
			}
			if (rc == 0)
				continue;
			break;
		}
		if (rc != 0 || (rc = many_sleep(h, &m)) == 0)
			break;
		many_unclaim(&m);
		ratectl__write(h, many_undo_op, &m);
		if (rc < 0)
			break;
	}
	if (watching)
		ratectl__slot_unwatch(h, watched, &watching);
	if (rc == 0)
		many_grant(h, &m, leases);
	return rc;
}

/* ---- release ------------------------------------------------------------- */

struct reconcile_ctx {
	const ratectl_lease *lease;
	rc_lfile *lf;
	int64_t delta;
	int64_t now;
};

static int reconcile_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct reconcile_ctx *c = arg;
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, c->lease->name, &rec)) != 0)
		return rc == RATECTL_ENOTFOUND ? 1 : rc;
	if (rec.id != c->lease->budget_id)
		return 1;       /* deleted and created again: not ours to adjust */
	ratectl__gcra_adjust(rec.lim, rec.nlimits, RATECTL_TOKENS, c->delta, c->now);
	ratectl__share_adjust(&rec, c->delta);
	if (c->delta < 0 && c->lf)
		ratectl__wake(c->lf, RC_WAKE_RATE);     /* a refund may let one in */
	return ratectl__rec_put(h, txn, c->lease->name, &rec);
}

int ratectl_release(ratectl *h, ratectl_lease *lease, uint64_t actual_tokens)
{
	struct reconcile_ctx c = { .lease = lease };
	rc_lfile *lf = NULL;
	int rc;

	ratectl__err_clear();
	if (!lease || lease->magic != RC_LEASE_HELD)
		return ratectl__err(RATECTL_EBADLEASE, "release: lease is not held");
	if (lease->fork_gen != __atomic_load_n(&ratectl__fork_gen, __ATOMIC_ACQUIRE))
		return ratectl__err(RATECTL_EFORKED, "release: lease of budget '%s' "
		                    "was taken by process %d", lease->name, lease->pid);
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	lf = ratectl__lfile_find(h, lease->budget_id);
	if (!lf && lease->slot >= 0)    /* cannot be: the admission opened it */
		rc = ratectl__lfile_get(h, lease->budget_id, &lf);
	lease->magic = 0;
	if (rc == 0 && lease->slot >= 0)
		ratectl__slot_release(lf, lease->slot);
	if (actual_tokens == RATECTL_UNKNOWN)
		return rc;
	if (lf) {
		ratectl__count(lf, RC_C_TOK_ACTUAL, actual_tokens);
		ratectl__count(lf, RC_C_TOK_RECONCILED, lease->tokens);
	}
	if (actual_tokens == lease->tokens)
		return rc;
	if (actual_tokens > (uint64_t)INT64_MAX / 2)
		actual_tokens = (uint64_t)INT64_MAX / 2;
	c.delta = (int64_t)actual_tokens - (int64_t)lease->tokens;
	c.now = ratectl_now(h);
	c.lf = lf;
	return ratectl__write(h, reconcile_op, &c);
}

/* ---- reservations for event loops ---------------------------------------- */

/* How often a reservation waiting for a slot looks again regardless. */
#define RC_RESV_TICK_NS 1000000000LL

static rc_resv *resv_of(ratectl_reservation *r)
{
	return (rc_resv *)(void *)r->priv;
}

/* The handle's inotify descriptor, watching lf's file: -1 if none can be
 * had (then the caller has at_ns only, which the tick bounds). */
static int events_watch(ratectl *h, rc_lfile *lf)
{
	char path[PATH_MAX];

	pthread_mutex_lock(&h->mu);
	if (h->ifd < 0)
		h->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	pthread_mutex_unlock(&h->mu);
	if (h->ifd < 0)
		return -1;
	snprintf(path, sizeof path, "%s/leases/%u", h->path, lf->id);
	return inotify_add_watch(h->ifd, path, IN_MODIFY) < 0 ? -1 : h->ifd;
}

/* r is no longer pending: stop counting and watching for it. */
static void resv_done(ratectl *h, ratectl_reservation *r, rc_lfile *lf)
{
	rc_resv *p = resv_of(r);

	if (lf && p->counted)
		__atomic_sub_fetch(&lf->hdr->ewaiters, 1, __ATOMIC_ACQ_REL);
	if (lf && p->watching)
		ratectl__slot_unwatch(h, lf, &p->watching);
	p->counted = 0;
	p->magic = 0;
	r->fd = -1;
}

/* Pending on lf: counted there, watched, r->fd set. */
static void resv_pend(ratectl *h, ratectl_reservation *r, rc_lfile *lf)
{
	rc_resv *p = resv_of(r);

	if (!p->counted) {
		__atomic_add_fetch(&lf->hdr->ewaiters, 1, __ATOMIC_ACQ_REL);
		p->counted = 1;
	}
	p->magic = RC_RESV_MAGIC;
	p->fork_gen = h->fork_gen;
	r->fd = events_watch(h, lf);
}

/* An admission that waited, counted as ratectl_acquire() counts it. */
static void count_waited(ratectl *h, rc_lfile *lf, int64_t start)
{
	int64_t w = ratectl_now(h) - start;

	ratectl__count(lf, RC_C_WAITED, 1);
	ratectl__count(lf, RC_C_WAIT_NS, w > 0 ? (uint64_t)w : 0);
}

/* One admission attempt for r, reserving any future time: 0 admitted,
 * RATECTL_EPENDING, or an error (r then not pending). */
static int resv_step(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p = resv_of(r);
	struct admit_ctx c = { .name = r->lease.name, .cost = &p->cost, .slot = -1 };
	rc_lfile *old = p->id ? ratectl__lfile_find(h, p->id) : NULL;
	int rc, pending;

	c.now = ratectl_now(h);
	c.latest = INT64_MAX;
	rc = admit_write(h, &c);
	pending = rc == 0 ? c.t_adm > c.now : rc == RATECTL_EINFLIGHT ||
	          rc == RATECTL_ECOOLDOWN || rc == RATECTL_ELIMITED;
	if (old && (!pending || old != c.lf))
		resv_done(h, r, old);   /* not pending there any more */
	if (!pending) {
		if (rc == 0) {
			grant(h, &c, &r->lease);
			if (p->state)   /* it was pending: it waited */
				count_waited(h, c.lf, p->start);
		}
		return rc;
	}
	p->id = c.id;
	p->slot = c.slot;
	if (rc == 0) {                  /* a place, later */
		p->state = RC_RS_PLACE;
		p->t_adm = c.t_adm;
		p->epoch = c.epoch;
		p->cooldown_until = c.cooldown_until;
		memcpy(p->before, c.before, sizeof p->before);
		memcpy(p->after, c.after, sizeof p->after);
		r->at_ns = c.t_adm;
	} else {
		p->state = RC_RS_WAIT;
		if (rc == RATECTL_EINFLIGHT) {
			r->at_ns = c.now + RC_RESV_TICK_NS;
			ratectl__slot_watch(h, c.lf, &p->watching);
		} else {
			r->at_ns = rc == RATECTL_ECOOLDOWN ? c.cooldown_until : c.t_adm;
		}
	}
	resv_pend(h, r, c.lf);
	return RATECTL_EPENDING;
}

int ratectl_reserve(ratectl *h, const char *name, const ratectl_cost *c,
                    ratectl_reservation *r)
{
	rc_resv *p;
	int rc;

	if (!r || r->version != RATECTL_RESERVATION_VERSION)
		return ratectl__err(-EINVAL, "reserve: a reservation of version %d is "
		                    "required", RATECTL_RESERVATION_VERSION);
	p = resv_of(r);
	if (p->magic == RC_RESV_MAGIC)
		return ratectl__err(-EBUSY, "reserve: this reservation is pending; poll "
		                    "or cancel it first");
	if ((rc = admit_begin(h, name, c, &r->lease)) != 0)
		return rc;
	memset(p, 0, sizeof *p);
	p->cost = *c;
	p->slot = -1;
	p->start = ratectl_now(h);
	snprintf(r->lease.name, sizeof r->lease.name, "%s", name);
	r->at_ns = 0;
	r->fd = -1;
	return resv_step(h, r);
}

/* The context a place was taken with, to grant or give it back. */
static void resv_ctx(ratectl_reservation *r, rc_lfile *lf, struct admit_ctx *c)
{
	rc_resv *p = resv_of(r);

	*c = (struct admit_ctx){ .name = r->lease.name, .cost = &p->cost, .lf = lf,
	                         .id = p->id, .slot = p->slot, .t_adm = p->t_adm };
	memcpy(c->before, p->before, sizeof c->before);
	memcpy(c->after, p->after, sizeof c->after);
}

static int resv_check(ratectl *h, ratectl_reservation *r, rc_lfile **lf)
{
	rc_resv *p = resv_of(r);
	int rc;

	ratectl__err_clear();
	if (!r || r->version != RATECTL_RESERVATION_VERSION || p->magic != RC_RESV_MAGIC)
		return ratectl__err(RATECTL_EBADLEASE, "reservation is not pending");
	if (p->fork_gen != __atomic_load_n(&ratectl__fork_gen, __ATOMIC_ACQUIRE))
		return ratectl__err(RATECTL_EFORKED, "reservation of budget '%s' was "
		                    "made by another process", r->lease.name);
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	*lf = ratectl__lfile_find(h, p->id);
	return *lf ? 0 : ratectl__err(RATECTL_EBADLEASE, "reservation: budget "
	                               "'%s' is not open here", r->lease.name);
}

int ratectl_reserve_poll(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p = resv_of(r);
	struct admit_ctx c;
	rc_lfile *lf = NULL;
	int rc;

	if ((rc = resv_check(h, r, &lf)) != 0)
		return rc;
	if (p->state == RC_RS_PLACE) {
		rc_lease_hdr *hd = lf->hdr;

		resv_ctx(r, lf, &c);
		if (__atomic_load_n(&hd->epoch, __ATOMIC_SEQ_CST) != p->epoch) {
			cancel(h, &c, 0);       /* void: nothing left to give back */
			p->slot = -1;
			return resv_step(h, r);
		}
		if (__atomic_load_n(&hd->cooldown_until, __ATOMIC_ACQUIRE) > p->t_adm &&
		    p->cooldown_until <= p->t_adm) {
			cancel(h, &c, 1);       /* a cooldown took its time */
			p->slot = -1;
			return resv_step(h, r);
		}
		if (ratectl_now(h) < p->t_adm) {
			r->at_ns = p->t_adm;
			return RATECTL_EPENDING;
		}
		resv_done(h, r, lf);
		grant(h, &c, &r->lease);
		count_waited(h, lf, p->start);
		return 0;
	}
	return resv_step(h, r);
}

void ratectl_reserve_cancel(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p;
	struct admit_ctx c;
	rc_lfile *lf = NULL;

	if (!r || resv_check(h, r, &lf) != 0)
		return;
	p = resv_of(r);
	if (p->state == RC_RS_PLACE) {
		resv_ctx(r, lf, &c);
		cancel(h, &c, 1);
	}
	resv_done(h, r, lf);
}

int ratectl_reserve_expire(ratectl *h, ratectl_reservation *r)
{
	rc_lfile *lf = NULL;
	const char *name;

	if (!r || resv_check(h, r, &lf) != 0)
		return RATECTL_ETIMEDOUT;
	name = r->lease.name;
	ratectl_reserve_cancel(h, r);
	ratectl__count(lf, RC_C_REFUSED, 1);
	return ratectl__err(RATECTL_ETIMEDOUT, "budget '%s': not admitted before the deadline",
	                    name);
}

int ratectl_events_drain(ratectl *h)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int n = 0;

	if (h->ifd < 0)
		return 0;
	for (;;) {
		ssize_t got = read(h->ifd, buf, sizeof buf);
		size_t off = 0;

		if (got < 0)
			return errno == EAGAIN ? n : -errno;
		if (got == 0)
			return n;
		while (off + sizeof(struct inotify_event) <= (size_t)got) {
			const struct inotify_event *e = (const void *)(buf + off);

			off += sizeof *e + e->len;
			n++;
		}
	}
}
