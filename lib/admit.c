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
	int64_t start;             /* when it was asked: its wait, counted */
	int waited;                /* it has waited already */
	/* results */
	rc_lfile *lf;              /* the budget's bucket */
	uint32_t id;
	int32_t slot;              /* 0: a slot taken with it; -1 none */
	uint32_t seq;              /* release_seq before deciding */
	uint32_t cseq;             /* change_seq before deciding */
	uint32_t vseq;             /* vseq before deciding */
	uint32_t epoch;            /* the record's epoch */
	int watching;              /* this wait watches for dead holders */
	int moved;                 /* records inserted or deleted in the txn */
	int refused;               /* committed, but this refusal to return */
	int64_t t_adm;
	int64_t cooldown_until;
	int64_t counted_wait;      /* wait_ns counted with the charge; -1 none */
	int64_t before[RATECTL_MAX_LIMITS];
	int64_t after[RATECTL_MAX_LIMITS];
	/* A shared budget's refiller to wake after the commit (shared.c):
	 * 1 a low-water mark, 2 starved. */
	int kick;
	int64_t need[2];
};

/* Plan, on a record already read: c->t_adm, or why never or not now. */
static int admit_plan(ratectl *h, struct admit_ctx *c, rc_budget_rec *rec)
{
	rc_bucket *hd;
	int rc;

	c->id = rec->id;
	c->lf = ratectl__lfile_find(h, rec->id);
	hd = c->lf->hdr;
	c->cooldown_until = rec->sched.cooldown_until;
	c->epoch = rec->epoch;
	/* Read before deciding: a change or release after this wakes a wait. */
	c->seq = __atomic_load_n(&hd->release_seq, __ATOMIC_SEQ_CST);
	c->cseq = __atomic_load_n(&hd->change_seq, __ATOMIC_SEQ_CST);
	c->vseq = __atomic_load_n(&hd->vseq, __ATOMIC_SEQ_CST);
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

/* Charge at c->t_adm (no earlier than the plan's): 0, or why not.  The
 * slot, the counters and the tag go in the same transaction. */
static int admit_charge(ratectl *h, MDB_txn *txn, struct admit_ctx *c,
                        rc_budget_rec *rec)
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
	if (rec->max_inflight) {
		if ((rc = ratectl__slot_claim(h, txn, rec, c->t_adm, c->cost->tokens,
		                              &c->moved)) != 0)
			return rc;
		c->slot = 0;
	}
	for (i = 0; i < rec->nlimits; i++)
		c->before[i] = rec->lim[i].tat;
	ratectl__gcra_commit(rec->lim, rec->nlimits, &rec->sched, c->cost, c->t_adm);
	for (i = 0; i < rec->nlimits; i++)
		c->after[i] = rec->lim[i].tat;
	if (c->cost->priority == RATECTL_BATCH && c->t_adm > c->now)
		ratectl__batch_commit(rec->lim, rec->nlimits, &rec->sched, c->cost,
		                      rec->batch_share, c->t_adm);
	rec->counters[RC_C_ADMITTED]++;
	rec->counters[RC_C_TOK_EST] += c->cost->tokens;
	c->counted_wait = -1;
	if (c->waited || c->t_adm > c->now) {
		int64_t w = (c->t_adm > c->now ? c->t_adm : c->now) - c->start;

		c->counted_wait = w > 0 ? w : 0;
		rec->counters[RC_C_WAITED]++;
		rec->counters[RC_C_WAIT_NS] += (uint64_t)c->counted_wait;
	}
	if (c->t_adm > rec->last_use)
		rec->last_use = c->t_adm;
	if (c->cost->tag && c->cost->tag[0] &&
	    (rc = ratectl__tag_count(h, txn, rec->id, c->cost->tag, 1,
	                             (int64_t)c->cost->tokens)) != 0)
		return rc;
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
static int admit_rec(ratectl *h, MDB_txn *txn, struct admit_ctx *c, rc_budget_rec *rec)
{
	int rc = admit_plan(h, c, rec);

	if (rc == 0)
		rc = admit_charge(h, txn, c, rec);
	if (rc == 0)
		rc = admit_shared(c, rec);
	return rc;
}

static int admit_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct admit_ctx *c = arg;
	MDB_cursor *cur = NULL;
	rc_budget_rec rec;
	int rc;

	c->slot = -1;           /* a previous attempt did not commit */
	c->moved = 0;
	c->refused = 0;
	if ((rc = ratectl__rec_fetch(h, txn, c->name, &rec, &cur)) == 0 &&
	    (rc = admit_rec(h, txn, c, &rec)) == RATECTL_EINFLIGHT && c->moved) {
		/* Refused, but dead holders' records were dropped on the way:
		 * keep that (commit), and say no. */
		c->refused = rc;
		rc = ratectl__rec_put(h, txn, c->name, &rec);
	} else if (rc == 0) {
		/* A record inserted or deleted in this transaction (a new
		 * holder, a dead one's, the tags) may have split or merged the
		 * cursor's page: write by key.  Records updated in place (a
		 * holder's count) leave it where it is. */
		if (c->moved || (c->cost->tag && c->cost->tag[0]))
			rc = ratectl__rec_put(h, txn, c->name, &rec);
		else
			rc = ratectl__rec_store(h, cur, c->name, &rec);
	}
	if (cur)
		mdb_cursor_close(cur);
	if (rc != 0)
		c->slot = -1;
	return rc;
}

static void sweep_maybe(ratectl *h, int64_t now);

static int admit_write(ratectl *h, struct admit_ctx *c)
{
	int rc;

	c->kick = 0;
	rc = ratectl__write(h, admit_op, c);
	if (rc == 0 && c->refused)
		rc = c->refused;
	if (rc != 0)
		c->slot = -1;
	if (c->kick)
		ratectl__share_kick(h, c->name, c->id, c->need, c->kick == 2);
	sweep_maybe(h, c->now);
	return rc;
}

/* Give back a reservation that will not be used (signal, cooldown): its
 * place, its slot and what its charge counted. */
static int undo_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct admit_ctx *c = arg;
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, c->name, &rec)) != 0)
		return rc == RATECTL_ENOTFOUND ? 1 : rc;
	if (rec.id != c->id)
		return 1;
	if (c->slot >= 0 && (rc = ratectl__slot_put(h, txn, &rec, c->cost->tokens)) != 0)
		return rc;
	if (rec.epoch == c->epoch) {    /* else void: no place left to give */
		ratectl__gcra_undo(rec.lim, rec.nlimits, c->before, c->after);
		ratectl__wake(c->lf, RC_WAKE_RATE);     /* the place is free again */
	}
	if (rec.counters[RC_C_ADMITTED])
		rec.counters[RC_C_ADMITTED]--;
	rec.counters[RC_C_TOK_EST] -= rec.counters[RC_C_TOK_EST] >= c->cost->tokens ?
	                              c->cost->tokens : rec.counters[RC_C_TOK_EST];
	if (c->counted_wait >= 0) {
		if (rec.counters[RC_C_WAITED])
			rec.counters[RC_C_WAITED]--;
		rec.counters[RC_C_WAIT_NS] -= rec.counters[RC_C_WAIT_NS] >=
			(uint64_t)c->counted_wait ? (uint64_t)c->counted_wait :
			rec.counters[RC_C_WAIT_NS];
	}
	if (c->cost->tag && c->cost->tag[0] &&
	    (rc = ratectl__tag_count(h, txn, rec.id, c->cost->tag, -1,
	                             -(int64_t)c->cost->tokens)) != 0)
		return rc;
	return ratectl__rec_put(h, txn, c->name, &rec);
}

/* Give back the slot, the place and the counts (the place only unless
 * the reservation was void: nothing of it is left to give back). */
static void cancel(ratectl *h, struct admit_ctx *c)
{
	ratectl__write(h, undo_op, c);
	c->slot = -1;
}

static void grant(ratectl *h, struct admit_ctx *c, ratectl_lease *lease)
{
	lease->magic = RC_LEASE_HELD;
	lease->budget_id = c->id;
	if (lease->name != c->name)     /* checked: at most RATECTL_NAME_MAX */
		memcpy(lease->name, c->name, strlen(c->name) + 1);
	lease->slot = c->slot;
	lease->pid = h->pid;
	lease->tokens = c->cost->tokens;
	lease->start_ns = c->t_adm;
	lease->fork_gen = h->fork_gen;
	if (!c->cost->tag)
		lease->tag[0] = '\0';
	else if (lease->tag != c->cost->tag)    /* checked: at most RATECTL_TAG_MAX */
		memcpy(lease->tag, c->cost->tag, strlen(c->cost->tag) + 1);
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
	if (c->tag && c->tag[0] && (rc = ratectl_tag_check(c->tag)) != 0)
		return rc;
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	return ratectl_name_check(name);
}

static int refusal(int rc)
{
	return rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN ||
	       rc == RATECTL_EINFLIGHT;
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
	c.now = c.latest = c.start = ratectl_now(h);
	rc = admit_write(h, &c);
	if (rc == 0) {
		grant(h, &c, lease);
		return 0;
	}
	if (rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN) {
		if (wait_ns)
			*wait_ns = c.t_adm - c.now;     /* > 0: t_adm > latest = now */
	}
	if (refusal(rc))
		ratectl__count_later(h, name, c.id, RC_C_REFUSED, 1);
	return rc;
}

static int timed_out(ratectl *h, struct admit_ctx *c, const char *name)
{
	ratectl__err(RATECTL_ETIMEDOUT, "budget '%s': not admitted before the "
	             "deadline", name);
	ratectl__count_later(h, name, c->id, RC_C_REFUSED, 1);
	return RATECTL_ETIMEDOUT;
}

static int acquire_loop(ratectl *h, struct admit_ctx *c, int64_t deadline);

int ratectl_acquire(ratectl *h, const char *name, const ratectl_cost *cost,
                    ratectl_lease *lease, int64_t timeout_ns)
{
	struct admit_ctx c = { .name = name, .cost = cost, .slot = -1 };
	int64_t deadline;
	int rc;

	if ((rc = admit_begin(h, name, cost, lease)) != 0)
		return rc;
	c.start = ratectl_now(h);
	deadline = timeout_ns < 0 || timeout_ns > INT64_MAX - c.start ?
		INT64_MAX : c.start + timeout_ns;
	rc = acquire_loop(h, &c, deadline);
	if (c.watching)
		ratectl__slot_unwatch(h, c.lf, &c.watching);
	if (rc != 0)
		return rc;
	grant(h, &c, lease);
	return 0;
}

static rc_place place_of(const struct admit_ctx *c)
{
	return (rc_place){ c->name, c->id, c->epoch, c->vseq, c->t_adm,
	                   c->cooldown_until };
}

/* Reserve a place (and a slot) and sleep until it; or wait for a slot,
 * for the cooldown to end, or for a change that may let us in. */
static int acquire_loop(ratectl *h, struct admit_ctx *c, int64_t deadline)
{
	int rc;

	for (;;) {
		rc_place pl;

		c->now = ratectl_now(h);
		/* A deadline already past (timeout 0) still admits what fits now. */
		c->latest = deadline > c->now ? deadline : c->now;
		rc = admit_write(h, c);
		if (refusal(rc)) {
			if (c->now >= deadline)
				return timed_out(h, c, c->name);
			c->waited = 1;
			if (rc == RATECTL_EINFLIGHT)
				rc = ratectl__slot_wait(h, c->lf, c->id, c->seq, deadline,
				                        &c->watching);
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
		pl = place_of(c);
		rc = ratectl__reserved_wait(h, &pl);
		if (rc == 0)
			return 0;
		cancel(h, c);   /* a void place is not given back: undo_op sees it */
		c->waited = 1;
		if (rc < 0)
			return rc;
	}
}

/* ---- the sweep of idle budgets (budget.c), now and then ------------------ */

static void sweep_maybe(ratectl *h, int64_t now)
{
	if (now < __atomic_load_n(&h->sweep_next, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&h->sweep_next, now + RATECTL_SWEEP_NS, __ATOMIC_RELAXED);
	ratectl__sweep_step(h, now);
}

/* ---- several budgets at once --------------------------------------------- */

/*
 * Fair shares.  A tenant (names[0] of weight w > 0) keeps in its record the
 * times of its last w places (gate[]): its next request may take a place
 * ahead in the other budgets only when one of them has come (the gate is
 * open at the earliest of them).  Its requests line up for that by
 * tickets: a request that finds others of its tenant waiting, or the gate
 * shut, takes the next ticket and goes when its ticket is served and the
 * gate is open.  A ticket whose holder gave up is skipped; one whose
 * holder died (it cannot say so) is skipped once the gate has been open
 * for RC_TICKET_GRACE_NS without it.  A request that can be admitted now
 * takes no future place, so it needs no gate, only no line ahead of it.
 */
#define RC_TICKET_GRACE_NS 50000000LL

struct many_ctx {
	unsigned n;
	int64_t now, latest, start;
	int waited;
	int which;                 /* the budget that refused or binds the time */
	int no_ticket;             /* try: never take one */
	uint64_t ticket;           /* our ticket + 1; 0 none */
	uint32_t ticket_id;        /* ... in the tenant of this id */
	int gated;                 /* refused by the gate: sleep until gate_at */
	int64_t gate_at;
	struct admit_ctx c[RATECTL_MANY_MAX];
};

static int64_t gate_open_at(const rc_budget_rec *t)
{
	int64_t at = INT64_MAX;
	uint32_t i, w = t->weight < RC_GATE_MAX ? t->weight : RC_GATE_MAX;

	for (i = 0; i < w; i++)
		if (t->tn.gate[i] < at)
			at = t->tn.gate[i];
	return at;
}

/* Skip the tickets whose holders gave up. */
static void tickets_settle(rc_tenant_hot *tn, int64_t now)
{
	while (tn->tk_serve < tn->tk_next && (tn->tk_gone & 1)) {
		tn->tk_serve++;
		tn->tk_gone >>= 1;
		tn->tk_since = now;
	}
}

static void ticket_next(rc_tenant_hot *tn, int64_t now)
{
	if (tn->tk_serve == tn->tk_next)
		return;
	tn->tk_serve++;
	tn->tk_gone >>= 1;
	tn->tk_since = now;
	tickets_settle(tn, now);
}

/* May the request go through the gate of tenant t, wanting admission at
 * time `when`?  1 yes, 0 no (m->gated, m->gate_at set).  Changes to the
 * tenant's line are in t, to be written. */
static int gate_pass(struct many_ctx *m, rc_budget_rec *t, int64_t when)
{
	rc_tenant_hot *tn = &t->tn;
	int64_t open_at = gate_open_at(t), now = m->now;
	int open = when <= now || open_at <= now;
	uint64_t mine;

	tickets_settle(tn, now);
	/* A ticket of a tenant removed and made again (another id), or one
	 * the line no longer has: none. */
	if (m->ticket && (m->ticket_id != t->id || m->ticket - 1 >= tn->tk_next))
		m->ticket = 0;
	if (!m->ticket) {
		if (tn->tk_serve == tn->tk_next && open)
			return 1;
		m->gated = 1;
		m->gate_at = open ? now + RC_TICKET_GRACE_NS : open_at;
		if (m->no_ticket)
			return 0;
		if (tn->tk_serve == tn->tk_next)
			tn->tk_since = open_at > now ? open_at : now;
		m->ticket = ++tn->tk_next;      /* ticket tk_next - 1, stored + 1 */
		m->ticket_id = t->id;
		return 0;
	}
	mine = m->ticket - 1;
	if (mine > tn->tk_serve && open) {
		int64_t since = tn->tk_since > open_at ? tn->tk_since : open_at;

		/* The head's holder is gone without a word: skip it. */
		if (now - since > RC_TICKET_GRACE_NS)
			ticket_next(tn, now);
	}
	if (mine <= tn->tk_serve && open)
		return 1;
	m->gated = 1;
	m->gate_at = mine <= tn->tk_serve ? open_at : now + RC_TICKET_GRACE_NS;
	if (mine <= tn->tk_serve && open_at > tn->tk_since)
		tn->tk_since = open_at;
	return 0;
}

/* Through the gate: the ticket is served, the place remembered. */
static void gate_through(struct many_ctx *m, rc_budget_rec *t, int64_t when)
{
	rc_tenant_hot *tn = &t->tn;
	uint32_t i, w = t->weight < RC_GATE_MAX ? t->weight : RC_GATE_MAX, lo = 0;

	if (m->ticket && m->ticket - 1 == tn->tk_serve)
		ticket_next(tn, m->now);
	m->ticket = 0;
	if (when <= m->now)
		return;         /* no place ahead */
	for (i = 1; i < w; i++)
		if (tn->gate[i] < tn->gate[lo])
			lo = i;
	tn->gate[lo] = when;
}

/* Plan every budget, charge all at the latest time any needs, write all:
 * one transaction, all or nothing. */
static int many_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct many_ctx *m = arg;
	rc_budget_rec rec[RATECTL_MANY_MAX];
	uint64_t ticket = m->ticket, served = 0;
	int64_t t = 0;
	unsigned i;
	int rc = 0, tenant;

	m->gated = 0;
	for (i = 0; i < m->n && rc == 0; i++) {
		struct admit_ctx *c = &m->c[i];

		c->now = m->now;
		c->latest = m->latest;
		c->start = m->start;
		c->waited = m->waited;
		c->slot = -1;
		m->which = (int)i;
		if ((rc = ratectl__rec_get(h, txn, c->name, &rec[i])) == 0 &&
		    (rc = admit_plan(h, c, &rec[i])) == 0 && c->t_adm > t)
			t = c->t_adm;
	}
	for (i = 0; i < m->n && rc == 0; i++) {
		if (m->c[i].t_adm == t)
			m->which = (int)i;      /* the binding one, to wait on */
		m->c[i].t_adm = t;
	}
	if (rc == 0 && t > m->latest)
		rc = RATECTL_ELIMITED;
	tenant = rc == 0 && m->n > 1 && (rec[0].reserved0 & RC_F_TENANT);
	if (tenant) {
		served = rec[0].tn.tk_serve;
		if (!gate_pass(m, &rec[0], t)) {
			m->which = 0;
			m->c[0].t_adm = m->gate_at;
			if (m->no_ticket)
				return RATECTL_ELIMITED;
			/* In line: the ticket is written, nothing is charged. */
			if ((rc = ratectl__rec_put(h, txn, m->c[0].name, &rec[0])) != 0)
				m->ticket = ticket;
			else if (rec[0].tn.tk_serve != served)
				ratectl__wake(m->c[0].lf, RC_WAKE_RATE);
			return rc;
		}
		gate_through(m, &rec[0], t);
		/* The next in line looks again. */
		if (rec[0].tn.tk_serve != served)
			ratectl__wake(m->c[0].lf, RC_WAKE_RATE);
	}
	for (i = 0; i < m->n && rc == 0; i++)
		if ((rc = admit_charge(h, txn, &m->c[i], &rec[i])) != 0 ||
		    (rc = admit_shared(&m->c[i], &rec[i])) != 0)
			m->which = (int)i;
	for (i = 0; i < m->n && rc == 0; i++)
		rc = ratectl__rec_put(h, txn, m->c[i].name, &rec[i]);
	if (rc != 0) {
		for (i = 0; i < m->n; i++)
			m->c[i].slot = -1;
		m->ticket = ticket;     /* not written: the line is as it was */
	}
	return rc;
}

static void many_kick(ratectl *h, struct many_ctx *m)
{
	unsigned i;

	for (i = 0; i < m->n; i++)
		if (m->c[i].kick) {
			int urgent = m->c[i].kick == 2;

			m->c[i].kick = 0;
			ratectl__share_kick(h, m->c[i].name, m->c[i].id, m->c[i].need,
			                    urgent);
		}
}

static int many_write(ratectl *h, struct many_ctx *m)
{
	int rc;

	for (unsigned i = 0; i < m->n; i++)
		m->c[i].kick = 0;
	rc = ratectl__write(h, many_op, m);
	many_kick(h, m);
	sweep_maybe(h, m->now);
	if (rc == 0 && m->gated)
		return RATECTL_ELIMITED;
	return rc;
}

/* Give up our ticket, if we hold one (timeout, error, signal). */
static int ticket_drop_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct many_ctx *m = arg;
	rc_budget_rec rec;
	uint64_t mine = m->ticket - 1;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, m->c[0].name, &rec)) != 0)
		return rc == RATECTL_ENOTFOUND ? 1 : rc;
	if (rec.id != m->ticket_id || !(rec.reserved0 & RC_F_TENANT) ||
	    mine < rec.tn.tk_serve ||
	    mine >= rec.tn.tk_next)
		return 1;
	if (mine == rec.tn.tk_serve)
		ticket_next(&rec.tn, ratectl_now(h));
	else if (mine - rec.tn.tk_serve < 64)
		rec.tn.tk_gone |= (uint64_t)1 << (mine - rec.tn.tk_serve);
	else
		return 1;       /* far behind: the grace skips it */
	ratectl__wake(ratectl__lfile_find(h, rec.id), RC_WAKE_RATE);
	return ratectl__rec_put(h, txn, m->c[0].name, &rec);
}

static void ticket_drop(ratectl *h, struct many_ctx *m)
{
	char keep[RATECTL_ERRMSG_KEEP];

	if (!m->ticket)
		return;
	ratectl__err_save(keep, sizeof keep);
	ratectl__write(h, ticket_drop_op, m);
	ratectl__err_restore(keep);
	m->ticket = 0;
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
	if (cost->tag && cost->tag[0] && (rc = ratectl_tag_check(cost->tag)) != 0)
		return rc;
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
	m.now = m.latest = m.start = ratectl_now(h);
	m.no_ticket = 1;
	if ((rc = many_write(h, &m)) == 0) {
		many_grant(h, &m, leases);
		return 0;
	}
	if ((rc == RATECTL_ELIMITED || rc == RATECTL_ECOOLDOWN) && wait_ns) {
		int64_t w = m.c[m.which].t_adm - m.now;

		*wait_ns = w > 0 ? w : 1;
	}
	if (refusal(rc))
		ratectl__count_later(h, m.c[m.which].name, m.c[m.which].id,
		                     RC_C_REFUSED, 1);
	return rc;
}

/* Give every place back in one transaction (those not void). */
static int many_undo_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct many_ctx *m = arg;
	unsigned i;
	int rc;

	for (i = 0; i < m->n; i++)
		if ((rc = undo_op(h, txn, &m->c[i])) < 0)
			return rc;
	return 0;
}

/* Sleep until the place, on the binding budget's words; then every
 * budget's place must still stand: 0, or > 0 to plan again, or -EINTR. */
static int many_sleep(ratectl *h, struct many_ctx *m)
{
	rc_place pl = place_of(&m->c[m->which]);
	unsigned i;
	int rc;

	rc = ratectl__reserved_wait(h, &pl);
	for (i = 0; i < m->n && rc == 0; i++) {
		pl = place_of(&m->c[i]);
		rc = ratectl__place_check(h, &pl);
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
	m.start = ratectl_now(h);
	deadline = timeout_ns < 0 || timeout_ns > INT64_MAX - m.start ?
		INT64_MAX : m.start + timeout_ns;
	for (;;) {
		struct admit_ctx *w;

		m.now = ratectl_now(h);
		m.latest = deadline > m.now ? deadline : m.now;
		rc = many_write(h, &m);
		w = &m.c[m.which];
		if (refusal(rc)) {
			if (m.now >= deadline) {
				rc = timed_out(h, w, w->name);
				break;
			}
			m.waited = 1;
			if (rc == RATECTL_EINFLIGHT) {
				if (watching && watched != w->lf)
					ratectl__slot_unwatch(h, watched, &watching);
				watched = w->lf;
				rc = ratectl__slot_wait(h, w->lf, w->id, w->seq, deadline,
				                        &watching);
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
		/* A void place is not given back: undo_op sees the epoch. */
		ratectl__write(h, many_undo_op, &m);
		for (unsigned i = 0; i < m.n; i++)
			m.c[i].slot = -1;
		m.waited = 1;
		if (rc < 0)
			break;
	}
	if (watching)
		ratectl__slot_unwatch(h, watched, &watching);
	if (rc != 0)
		ticket_drop(h, &m);
	if (rc == 0)
		many_grant(h, &m, leases);
	return rc;
}

/* ---- release ------------------------------------------------------------- */

struct release_ctx {
	const ratectl_lease *lease;
	uint64_t actual;
	int64_t delta;
	int64_t now;
};

static int release_rec(ratectl *h, MDB_txn *txn, struct release_ctx *c,
                       rc_budget_rec *r);

/* One transaction: the slot back, the tokens reconciled and counted. */
static int release_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct release_ctx *c = arg;
	const ratectl_lease *l = c->lease;
	MDB_cursor *cur = NULL;
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_fetch(h, txn, l->name, &rec, &cur)) != 0) {
		if (cur)
			mdb_cursor_close(cur);
		return rc == RATECTL_ENOTFOUND ? 1 : rc;
	}
	rc = release_rec(h, txn, c, &rec);
	/* The holder's record changed in place and a tag's too (its count is
	 * kept, never inserted here): the cursor stands. */
	if (rc == 0)
		rc = ratectl__rec_store(h, cur, l->name, &rec);
	mdb_cursor_close(cur);
	return rc;
}

static int release_rec(ratectl *h, MDB_txn *txn, struct release_ctx *c,
                       rc_budget_rec *r)
{
	const ratectl_lease *l = c->lease;
	rc_budget_rec rec = *r;
	int rc;

	if (rec.id != l->budget_id)
		return 1;       /* deleted and created again: not ours to adjust */
	if (l->slot >= 0 && (rc = ratectl__slot_put(h, txn, &rec, l->tokens)) != 0)
		return rc;
	if (c->actual != RATECTL_UNKNOWN) {
		rec.counters[RC_C_TOK_ACTUAL] += c->actual;
		rec.counters[RC_C_TOK_RECONCILED] += l->tokens;
		if (c->delta != 0) {
			ratectl__gcra_adjust(rec.lim, rec.nlimits, RATECTL_TOKENS, c->delta,
			                     c->now);
			ratectl__share_adjust(&rec, c->delta);
			if (c->delta < 0)       /* a refund may let one in */
				ratectl__wake(ratectl__lfile_find(h, rec.id), RC_WAKE_RATE);
			if (l->tag[0] && (rc = ratectl__tag_count(h, txn, rec.id, l->tag, 0,
			                                          c->delta)) != 0)
				return rc;
		}
	}
	*r = rec;
	return 0;
}

int ratectl_release(ratectl *h, ratectl_lease *lease, uint64_t actual_tokens)
{
	struct release_ctx c = { .lease = lease, .actual = actual_tokens };
	int rc;

	ratectl__err_clear();
	if (!lease || lease->magic != RC_LEASE_HELD)
		return ratectl__err(RATECTL_EBADLEASE, "release: lease is not held");
	if (lease->fork_gen != __atomic_load_n(&ratectl__fork_gen, __ATOMIC_ACQUIRE))
		return ratectl__err(RATECTL_EFORKED, "release: lease of budget '%s' "
		                    "was taken by process %d", lease->name, lease->pid);
	if ((rc = ratectl__enter(h)) != 0)
		return rc;
	lease->magic = 0;
	if (actual_tokens == RATECTL_UNKNOWN && lease->slot < 0)
		return 0;       /* nothing to give back, nothing to count */
	if (actual_tokens != RATECTL_UNKNOWN) {
		uint64_t a = actual_tokens > (uint64_t)INT64_MAX / 2 ?
			(uint64_t)INT64_MAX / 2 : actual_tokens;

		c.delta = (int64_t)a - (int64_t)lease->tokens;
	}
	c.now = ratectl_now(h);
	rc = ratectl__write(h, release_op, &c);
	if (rc < 0 && lease->slot >= 0 && actual_tokens != RATECTL_UNKNOWN) {
		/* The slot at least (else it stays held until this process
		 * exits); the error is the one to report. */
		char keep[RATECTL_ERRMSG_KEEP];

		ratectl__err_save(keep, sizeof keep);
		c.actual = RATECTL_UNKNOWN;
		ratectl__write(h, release_op, &c);
		ratectl__err_restore(keep);
	}
	return rc;
}

/* ---- reservations for event loops ---------------------------------------- */

/* How often a reservation waiting for a slot looks again regardless. */
#define RC_RESV_TICK_NS 1000000000LL

static rc_resv *resv_of(ratectl_reservation *r)
{
	return (rc_resv *)(void *)r->priv;
}

/* The handle's inotify descriptor, watching the wake file: -1 if none can
 * be had (then the caller has at_ns only, which the tick bounds). */
static int events_watch(ratectl *h)
{
	char path[PATH_MAX];
	int fd;

	pthread_mutex_lock(&h->mu);
	if (h->ifd < 0 && (fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) >= 0) {
		snprintf(path, sizeof path, "%s/wake", h->path);
		if (inotify_add_watch(fd, path, IN_MODIFY) < 0)
			close(fd);
		else
			h->ifd = fd;
	}
	pthread_mutex_unlock(&h->mu);
	return h->ifd;
}

/* r is no longer pending: stop counting and watching for it. */
static void resv_done(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p = resv_of(r);
	rc_lfile *lf = ratectl__lfile_find(h, p->id);

	if (p->counted)
		__atomic_sub_fetch(&lf->hdr->ewaiters, 1, __ATOMIC_ACQ_REL);
	if (p->watching)
		ratectl__slot_unwatch(h, lf, &p->watching);
	p->counted = 0;
	p->magic = 0;
	r->fd = -1;
}

/* Pending on budget p->id: counted in its bucket, r->fd set. */
static void resv_pend(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p = resv_of(r);

	if (!p->counted) {
		__atomic_add_fetch(&ratectl__lfile_find(h, p->id)->hdr->ewaiters, 1,
		                   __ATOMIC_ACQ_REL);
		p->counted = 1;
	}
	p->magic = RC_RESV_MAGIC;
	p->fork_gen = h->fork_gen;
	r->fd = events_watch(h);
}

/* The cost as asked, its tag kept in the reservation's lease. */
static void resv_cost(ratectl_reservation *r, ratectl_cost *cost)
{
	*cost = resv_of(r)->cost;
	cost->tag = r->lease.tag[0] ? r->lease.tag : NULL;
}

/* One admission attempt for r, reserving any future time: 0 admitted,
 * RATECTL_EPENDING, or an error (r then not pending). */
static int resv_step(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p = resv_of(r);
	ratectl_cost cost;
	struct admit_ctx c = { .name = r->lease.name, .cost = &cost, .slot = -1 };
	int rc, pending;

	resv_cost(r, &cost);
	c.now = ratectl_now(h);
	c.latest = INT64_MAX;
	c.start = p->start;
	c.waited = p->state != 0;
	rc = admit_write(h, &c);
	pending = rc == 0 ? c.t_adm > c.now : refusal(rc);
	if (p->magic == RC_RESV_MAGIC && (!pending || p->id != c.id))
		resv_done(h, r);        /* not pending there any more */
	if (!pending) {
		if (rc == 0)
			grant(h, &c, &r->lease);
		return rc;
	}
	p->id = c.id;
	p->slot = c.slot;
	if (rc == 0) {                  /* a place, later */
		p->state = RC_RS_PLACE;
		p->t_adm = c.t_adm;
		p->epoch = c.epoch;
		p->vseq = c.vseq;
		p->counted_wait = c.counted_wait;
		p->cooldown_until = c.cooldown_until;
		memcpy(p->before, c.before, sizeof p->before);
		memcpy(p->after, c.after, sizeof p->after);
		r->at_ns = c.t_adm;
	} else {
		p->state = RC_RS_WAIT;
		if (rc == RATECTL_EINFLIGHT) {
			r->at_ns = c.now + RC_RESV_TICK_NS;
			ratectl__slot_watch(h, c.lf, c.id, &p->watching);
		} else {
			r->at_ns = rc == RATECTL_ECOOLDOWN ? c.cooldown_until : c.t_adm;
		}
	}
	resv_pend(h, r);
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
	p->cost.tag = NULL;     /* kept in r->lease.tag: the caller's may go */
	p->slot = -1;
	p->start = ratectl_now(h);
	snprintf(r->lease.name, sizeof r->lease.name, "%s", name);
	snprintf(r->lease.tag, sizeof r->lease.tag, "%s", c->tag ? c->tag : "");
	r->at_ns = 0;
	r->fd = -1;
	return resv_step(h, r);
}

/* The context a place was taken with, to grant or give it back. */
static void resv_ctx(ratectl *h, ratectl_reservation *r, ratectl_cost *cost,
                     struct admit_ctx *c)
{
	rc_resv *p = resv_of(r);

	resv_cost(r, cost);
	*c = (struct admit_ctx){ .name = r->lease.name, .cost = cost,
	                         .lf = ratectl__lfile_find(h, p->id), .id = p->id,
	                         .slot = p->slot, .t_adm = p->t_adm,
	                         .epoch = p->epoch, .vseq = p->vseq,
	                         .counted_wait = p->counted_wait,
	                         .cooldown_until = p->cooldown_until };
	memcpy(c->before, p->before, sizeof c->before);
	memcpy(c->after, p->after, sizeof c->after);
}

static int resv_check(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p = resv_of(r);

	ratectl__err_clear();
	if (!r || r->version != RATECTL_RESERVATION_VERSION || p->magic != RC_RESV_MAGIC)
		return ratectl__err(RATECTL_EBADLEASE, "reservation is not pending");
	if (p->fork_gen != __atomic_load_n(&ratectl__fork_gen, __ATOMIC_ACQUIRE))
		return ratectl__err(RATECTL_EFORKED, "reservation of budget '%s' was "
		                    "made by another process", r->lease.name);
	return ratectl__enter(h);
}

int ratectl_reserve_poll(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p = resv_of(r);
	struct admit_ctx c;
	ratectl_cost cost;
	int rc;

	if ((rc = resv_check(h, r)) != 0)
		return rc;
	if (p->state == RC_RS_PLACE) {
		rc_place pl = { r->lease.name, p->id, p->epoch, p->vseq, p->t_adm,
		                p->cooldown_until };

		resv_ctx(h, r, &cost, &c);
		/* Cheap while the bucket's vseq stands: no transaction. */
		rc = ratectl__place_check(h, &pl);
		if (rc < 0)
			return rc;
		if (rc > 0) {   /* a cooldown took its time, or it is void */
			cancel(h, &c);
			p->slot = -1;
			return resv_step(h, r);
		}
		p->vseq = pl.vseq;
		if (ratectl_now(h) < p->t_adm) {
			r->at_ns = p->t_adm;
			return RATECTL_EPENDING;
		}
		resv_done(h, r);
		grant(h, &c, &r->lease);
		return 0;
	}
	return resv_step(h, r);
}

void ratectl_reserve_cancel(ratectl *h, ratectl_reservation *r)
{
	rc_resv *p;
	struct admit_ctx c;
	ratectl_cost cost;

	if (!r || resv_check(h, r) != 0)
		return;
	p = resv_of(r);
	if (p->state == RC_RS_PLACE) {
		resv_ctx(h, r, &cost, &c);
		cancel(h, &c);
	}
	resv_done(h, r);
}

int ratectl_reserve_expire(ratectl *h, ratectl_reservation *r)
{
	const char *name;
	uint32_t id;

	if (!r || resv_check(h, r) != 0)
		return RATECTL_ETIMEDOUT;
	name = r->lease.name;
	id = resv_of(r)->id;
	ratectl_reserve_cancel(h, r);
	ratectl__count_later(h, name, id, RC_C_REFUSED, 1);
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
