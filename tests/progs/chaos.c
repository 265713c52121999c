/*
 * chaos - workers admit, hold and release against shared budgets while a
 * killer sends SIGKILL to random processes at random moments: inside LMDB
 * transactions, while waiting for their place or for a slot, while holding
 * a slot.  Three kinds of process:
 *   - chaos workers admit against "chaos"; every other one takes a second
 *     budget ("chaos2", a key's budget over the model's) in the same
 *     admission (ratectl_acquire_many), which must give both or neither;
 *   - tenants' workers admit against a tenant's budget "t-0".."t-63" and
 *     the key's budget "key" in one admission, the tenant first (weight 1:
 *     fair shares), making the tenant's budget on first use as a template
 *     would (a 1 s expire, a cap of TCAP) and again whenever it is gone
 *     (RATECTL_ENOTFOUND; RATECTL_EEXISTS from a racing process is fine).
 *     The tenants in use move on every SLICE_NS, so that each one falls
 *     idle long enough to be removed and is then made again; and now and
 *     then a worker picks one that is due to be removed at that moment.
 *     The first of them is never killed and now and then holds its lease
 *     longer than the expire, as a long streamed response would;
 *   - a sweeper looks at every budget's holders every few milliseconds
 *     and calls ratectl_sweep() now and then (admissions take the sweep's
 *     steps in between).
 * It checks, from outside the library, during the run:
 *   - no budget ever had more live holders than its cap: each holder sets
 *     its bit in the budget's word of a shared table, and a word with more
 *     bits than the cap while no kill was under way is a violation; a
 *     two-budget admission holds a slot in each, at one admission time;
 *   - no budget's recorded holders, live and dead, exceeded its cap (the
 *     sweeper's looks);
 *   - no tenant's budget was removed sooner than its expire after it was
 *     last made or admitted against (RATECTL_ENOTFOUND seen too early),
 *     nor while a slot of it was held: before each release, the library
 *     still lists the holder's slots in the tenant's and the key's budgets;
 *   - no admission failed with a code other than 0, RATECTL_ETIMEDOUT and,
 *     for tenants, RATECTL_ENOTFOUND; no process failed;
 * and afterwards:
 *   - admissions stayed within the GCRA bound on every limit of "chaos",
 *     "chaos2" and "key" (a tenant's budget starts full when made again);
 *   - the ledger opens, no live slot is held, dead holders' slots reclaim
 *     and then no budget has any, and every slot of "chaos" and "key" can
 *     be taken again;
 *   - one sweep on a clock an hour ahead removes every tenant's budget
 *     left (nothing in flight, every limit full) and nothing else.
 * Prints its figures and exits 0 only if every violation is 0 and the run
 * covered what it is for: kills and, in runs of 3 s or more, tenants'
 * budgets removed and made again while admitted against.
 *
 * usage: chaos [-w workers] [-t tenants' workers] [-s seconds] [-l ledger-dir]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bound.h"
#include "ratectl.h"

#define SEC 1000000000LL
#define MS 1000000LL
#define MAXP 64                 /* workers, tenants' workers and the sweeper */
#define MAX_REC 2000000
#define CAP 4
#define RPS 2000
#define RBURST 50
#define TPS 20000
#define TBURST 1000
#define CAP2 2
#define RPS2 1000
#define RBURST2 20
/* The key: tenants' admissions saturate it, so their fair shares apply. */
#define KCAP 4
#define KRPS 500
#define KBURST 20
/* Tenants: NTEN budgets, PER_SLICE of them in use for SLICE_NS at a time,
 * so each is idle 1.5 s of every 1.6 s: longer than its expire plus its
 * refill plus a sweep step. */
#define NTEN 64
#define PER_SLICE 4
#define NSLICE (NTEN / PER_SLICE)
#define SLICE_NS (100 * MS)
#define STRAY_AGO 12            /* slices since a stray pick's tenant was used */
#define STRAY 16                /* 1 pick in STRAY is a stray */
#define TCAP 2
#define TRPS 200
#define TBURSTT 10
#define EXPIRE SEC
#define SWEEP_EVERY 64          /* 1 look in SWEEP_EVERY sweeps too */
#define STOP_NS (10 * SEC)      /* to stop, at most */
#define LONG_NS (EXPIRE + 500 * MS)   /* a long request: past the expire */
#define LONG_EVERY 8            /* 1 request of the long one's in LONG_EVERY */
#define MISSES 16               /* RATECTL_ENOTFOUND in a row on one tenant */

enum { B_CHAOS, B_CHAOS2, B_KEY, B_TEN0, NB = B_TEN0 + NTEN };

struct shared {
	volatile int stop;
	int64_t t0;                 /* the tenants' slices start here */
	uint64_t kill_seq;          /* odd while a kill is under way */
	uint64_t held[NB];          /* budget -> a bit per process holding it */
	int64_t touch[NTEN];        /* tenant -> latest known creation or use */
	uint32_t violations;        /* over a cap, seen from outside */
	uint32_t failures;          /* failed processes, unexpected codes */
	uint32_t over;              /* looks that found holders over a cap */
	uint32_t early;             /* tenants' budgets removed too early */
	uint32_t lost;              /* slots no longer listed while held */
	uint64_t created, raced, notfound, timedout, tadm, longs;
	uint64_t sweeps, swept, looks;
	uint64_t n, n2, nk;
	adm_rec req[MAX_REC];
	adm_rec tok[MAX_REC];
	adm_rec req2[MAX_REC];
	adm_rec key[MAX_REC];
};

static int64_t mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void add(uint64_t *n, uint64_t v)
{
	__atomic_add_fetch(n, v, __ATOMIC_SEQ_CST);
}

static void add32(uint32_t *n)
{
	__atomic_add_fetch(n, 1, __ATOMIC_SEQ_CST);
}

/* Raise *t to v (a tenant's latest known use). */
static void touch(int64_t *t, int64_t v)
{
	int64_t old = __atomic_load_n(t, __ATOMIC_SEQ_CST);

	while (old < v && !__atomic_compare_exchange_n(t, &old, v, 0, __ATOMIC_SEQ_CST,
	                                               __ATOMIC_SEQ_CST))
		;
}

static uint64_t slot_of(uint64_t *n)
{
	return __atomic_fetch_add(n, 1, __ATOMIC_SEQ_CST);
}

/* Process idx holds budget b.  A bit is set after the admission returns
 * and cleared before the release, so while no kill is under way, more
 * bits than the cap means more live holders than the cap.  The bits of a
 * process being killed are stale from its death (when its slots become
 * free) until the killer clears them: no judgement across a kill. */
static void mark(struct shared *s, int b, int idx, unsigned cap)
{
	uint64_t e1 = __atomic_load_n(&s->kill_seq, __ATOMIC_SEQ_CST), m, e2;

	m = __atomic_or_fetch(&s->held[b], 1ULL << idx, __ATOMIC_SEQ_CST);
	e2 = __atomic_load_n(&s->kill_seq, __ATOMIC_SEQ_CST);
	if ((unsigned)__builtin_popcountll(m) > cap && e1 == e2 && !(e1 & 1))
		add32(&s->violations);
}

static void unmark(struct shared *s, int b, int idx)
{
	__atomic_and_fetch(&s->held[b], ~(1ULL << idx), __ATOMIC_SEQ_CST);
}

static void fail(struct shared *s, int idx, const char *what, int rc)
{
	add32(&s->failures);
	fprintf(stderr, "chaos: process %d: %s: %s (%s)\n", idx, what,
	        ratectl_strerror(rc), ratectl_errmsg());
	_exit(4);
}

/* The request's work. */
static void work(void)
{
	struct timespec t = { 0, (rand() % 300) * 1000 };

	nanosleep(&t, NULL);
}

/* Hold l of "chaos" (and l2 of "chaos2") for a while, then release. */
static void hold(ratectl *h, struct shared *s, int idx, ratectl_lease *l,
                 ratectl_lease *l2)
{
	int rc;

	mark(s, B_CHAOS, idx, CAP);
	if (l2)
		mark(s, B_CHAOS2, idx, CAP2);
	work();
	if (l2)
		unmark(s, B_CHAOS2, idx);
	unmark(s, B_CHAOS, idx);
	if ((rc = ratectl_release(h, l, RATECTL_UNKNOWN)) != 0 ||
	    (l2 && (rc = ratectl_release(h, l2, RATECTL_UNKNOWN)) != 0))
		fail(s, idx, "release", rc);
}

static void worker(ratectl *h, struct shared *s, int idx)
{
	static const char *const both[] = { "chaos", "chaos2" };
	ratectl_lease l[2];
	int many = idx % 2, rc;
	uint64_t k;

	while (!s->stop) {
		ratectl_cost c = { 1, 1 + (uint64_t)(rand() % 20), RATECTL_INTERACTIVE, NULL };

		rc = many ? ratectl_acquire_many(h, both, 2, &c, l, SEC)
		          : ratectl_acquire(h, "chaos", &c, &l[0], SEC);
		if (rc == RATECTL_ETIMEDOUT)
			continue;
		if (rc != 0)
			fail(s, idx, "admission", rc);
		if ((k = slot_of(&s->n)) < MAX_REC) {
			s->req[k] = (adm_rec){ l[0].start_ns, 1 };
			s->tok[k] = (adm_rec){ l[0].start_ns, c.tokens };
		}
		/* Capped budgets give a slot (-1 is for no cap); a two-budget
		 * admission is charged at one time in both. */
		if (l[0].slot < 0 || (many && (l[1].slot < 0 ||
		                               l[1].start_ns != l[0].start_ns))) {
			add32(&s->violations);
			fail(s, idx, "lease without a slot, or at two times", 0);
		}
		if (many && (k = slot_of(&s->n2)) < MAX_REC)
			s->req2[k] = (adm_rec){ l[1].start_ns, 1 };
		hold(h, s, idx, &l[0], many ? &l[1] : NULL);
	}
}

/* The tenant to admit against: one of the slice's, or a stray one last
 * used STRAY_AGO slices ago, whose budget is about due to be removed. */
static int pick(const struct shared *s)
{
	int64_t slice = (mono() - s->t0) / SLICE_NS;

	if (rand() % STRAY == 0)
		slice += NSLICE - STRAY_AGO;
	return (int)(slice % NSLICE) * PER_SLICE + rand() % PER_SLICE;
}

/* Make tenant t's budget, as a template would on first use. */
static void make(ratectl *h, struct shared *s, int idx, int t, const char *name)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;
	int64_t before = mono();
	int rc;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, TRPS, SEC, TBURSTT };
	b.max_inflight = TCAP;
	b.expire_ns = EXPIRE;
	b.weight = 1;
	snprintf(b.origin, sizeof b.origin, "t-*");
	rc = ratectl_budget_set(h, name, &b, RATECTL_CREATE);
	if (rc == 0) {
		add(&s->created, 1);
		/* Made no earlier than this: idle from here at the soonest. */
		touch(&s->touch[t], before);
	} else if (rc == RATECTL_EEXISTS) {
		add(&s->raced, 1);
	} else {
		fail(s, idx, name, rc);
	}
}

/* A long request, cut short when the run stops. */
static void work_long(const struct shared *s)
{
	int64_t t_end = mono() + LONG_NS;
	struct timespec step = { 0, 50 * MS };

	while (!s->stop && mono() < t_end)
		nanosleep(&step, NULL);
}

/* Does the library list this process among the holders of `name`? */
static int listed(ratectl *h, const char *name)
{
	ratectl_lease_info li[MAXP];
	size_t n = 0, i;

	if (ratectl_leases(h, name, li, MAXP, &n) != 0)
		return 0;
	for (i = 0; i < n && i < MAXP; i++)
		if (li[i].pid == getpid() && li[i].alive && li[i].count >= 1)
			return 1;
	return 0;
}

static void tenant_worker(ratectl *h, struct shared *s, int idx, int longone)
{
	char name[16];
	const char *names[2] = { name, "key" };
	ratectl_lease l[2];
	int t = 0, misses = 0, rc;
	uint64_t k;

	while (!s->stop) {
		ratectl_cost c = { 1, 1 + (uint64_t)(rand() % 20), RATECTL_INTERACTIVE, NULL };
		int64_t since;

		if (misses == 0)
			t = pick(s);
		snprintf(name, sizeof name, "t-%d", t);
		/* Read before asking: that use was of a budget that existed then. */
		since = __atomic_load_n(&s->touch[t], __ATOMIC_SEQ_CST);
		rc = ratectl_acquire_many(h, names, 2, &c, l, SEC);
		if (rc == RATECTL_ENOTFOUND) {
			/* Removed after `since`, and before now: too early if now is
			 * less than its expire after a use.  Never a false alarm:
			 * the library's last use is `since` or later. */
			if (since && mono() < since + EXPIRE) {
				add32(&s->early);
				fprintf(stderr, "chaos: %s removed %lld ms after its last use\n",
				        name, (long long)((mono() - since) / MS));
			}
			add(&s->notfound, 1);
			if (++misses > MISSES)
				fail(s, idx, "made again and again, never found", rc);
			/* Sometimes slow to make it, as a process descheduled
			 * here would be: others find it gone too, and race. */
			if (rand() % 2)
				work();
			make(h, s, idx, t, name);
			continue;
		}
		misses = 0;
		if (rc == RATECTL_ETIMEDOUT) {
			add(&s->timedout, 1);
			continue;
		}
		if (rc != 0)
			fail(s, idx, "tenant's admission", rc);
		touch(&s->touch[t], l[0].start_ns);
		add(&s->tadm, 1);
		if (l[0].slot < 0 || l[1].slot < 0 || l[1].start_ns != l[0].start_ns) {
			add32(&s->violations);
			fail(s, idx, "tenant's lease without a slot, or at two times", 0);
		}
		if ((k = slot_of(&s->nk)) < MAX_REC)
			s->key[k] = (adm_rec){ l[1].start_ns, 1 };
		mark(s, B_TEN0 + t, idx, TCAP);
		mark(s, B_KEY, idx, KCAP);
		if (longone && rand() % LONG_EVERY == 0) {
			work_long(s);
			add(&s->longs, 1);
		} else {
			work();
		}
		if (!listed(h, name) || !listed(h, "key")) {
			add32(&s->lost);
			fprintf(stderr, "chaos: %s: a slot held is no longer listed\n", name);
		}
		unmark(s, B_KEY, idx);
		unmark(s, B_TEN0 + t, idx);
		if ((rc = ratectl_release(h, &l[0], RATECTL_UNKNOWN)) != 0 ||
		    (rc = ratectl_release(h, &l[1], RATECTL_UNKNOWN)) != 0)
			fail(s, idx, "tenant's release", rc);
	}
}

/* A look at every budget: its holders, live and dead, within its cap. */
static int look(const ratectl_budget_info *info, void *ctx)
{
	struct shared *s = ctx;

	if (info->config.max_inflight &&
	    info->inflight + info->dead > info->config.max_inflight) {
		add32(&s->over);
		fprintf(stderr, "chaos: %s: %u live and %u dead holders, cap %u\n",
		        info->name, info->inflight, info->dead, info->config.max_inflight);
	}
	return 0;
}

static void sweeper(ratectl *h, struct shared *s, int idx)
{
	unsigned removed;
	int rc;

	while (!s->stop) {
		struct timespec gap = { 0, (2 + rand() % 8) * MS };

		nanosleep(&gap, NULL);
		/* Now and then only: each call puts the host's next sweep step
		 * RATECTL_SWEEP_NS on, and admissions should take steps too. */
		if (rand() % SWEEP_EVERY == 0) {
			if ((rc = ratectl_sweep(h, &removed)) != 0)
				fail(s, idx, "sweep", rc);
			add(&s->sweeps, 1);
			add(&s->swept, removed);
		}
		if ((rc = ratectl_budget_foreach(h, look, s)) != 0)
			fail(s, idx, "look", rc);
		add(&s->looks, 1);
	}
}

static pid_t spawn(const char *path, struct shared *s, int idx, int nw, int nt)
{
	pid_t parent = getpid(), pid = fork();
	ratectl *h;

	if (pid != 0)
		return pid;
	/* Killed with the parent (by the test's timeout, say): never left
	 * running. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(5);
	if (ratectl_open(&h, path, NULL) != 0)
		fail(s, idx, "open", -1);
	srand((unsigned)getpid());
	if (idx < nw)
		worker(h, s, idx);
	else if (idx < nw + nt)
		tenant_worker(h, s, idx, idx == nw);
	else
		sweeper(h, s, idx);
	ratectl_close(h);
	_exit(0);
}

/* Kill random processes at random moments until `seconds` pass; kills[0]
 * counts them all, kills[1] tenants' workers, kills[2] the sweeper. */
static void killer(const char *path, struct shared *s, pid_t *pid, int nw, int nt,
                   int seconds, unsigned kills[3])
{
	int64_t t_end = mono() + seconds * SEC;
	int np = nw + nt + 1, i, b, status;

	while (mono() < t_end) {
		struct timespec gap = { 0, (1 + rand() % 20) * MS };

		nanosleep(&gap, NULL);
		do
			i = rand() % np;
		while (nt > 0 && i == nw);      /* the long one is spared */
		add(&s->kill_seq, 1);
		kill(pid[i], SIGKILL);
		if (waitpid(pid[i], &status, 0) != pid[i] ||
		    (WIFEXITED(status) && WEXITSTATUS(status) != 0)) {
			fprintf(stderr, "chaos: process %d failed (status %d)\n", i, status);
			add32(&s->failures);
		}
		for (b = 0; b < NB; b++)
			unmark(s, b, i);
		add(&s->kill_seq, 1);
		kills[0]++;
		kills[1] += i >= nw && i < nw + nt;
		kills[2] += i == nw + nt;
		pid[i] = spawn(path, s, i, nw, nt);
	}
}

/* Wait for everyone to finish: a second for the last admission's timeout,
 * and more.  A process still there after STOP_NS hangs: killed, and a
 * failure. */
static void reap(struct shared *s, pid_t *pid, int np)
{
	int64_t t_end = mono() + STOP_NS;
	int i, left = np, status;

	while (left > 0) {
		struct timespec gap = { 0, 10 * MS };

		for (i = 0; i < np; i++) {
			pid_t r;

			if (pid[i] <= 0 || (r = waitpid(pid[i], &status, WNOHANG)) == 0)
				continue;
			if (r != pid[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				fprintf(stderr, "chaos: process %d failed (status %d)\n", i, status);
				add32(&s->failures);
			}
			pid[i] = 0;
			left--;
		}
		if (left > 0 && mono() > t_end) {
			for (i = 0; i < np; i++)
				if (pid[i] > 0) {
					fprintf(stderr, "chaos: process %d hangs\n", i);
					kill(pid[i], SIGKILL);
					waitpid(pid[i], &status, 0);
					add32(&s->failures);
				}
			break;
		}
		if (left > 0)
			nanosleep(&gap, NULL);
	}
}

struct tally {
	unsigned live, dead, tenants, all;
};

static int tally(const ratectl_budget_info *info, void *ctx)
{
	struct tally *t = ctx;

	if (info->inflight)
		printf("chaos: after: %s holds %u live slots\n", info->name, info->inflight);
	t->live += info->inflight;
	t->dead += info->dead;
	t->tenants += strncmp(info->name, "t-", 2) == 0;
	t->all++;
	return 0;
}

/* Every slot of budget `name` can be taken, and no more. */
static int take_all(ratectl *h, const char *name, unsigned cap)
{
	ratectl_cost c = { 1, 1, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l[CAP + KCAP];
	unsigned i;
	int bad = 0;

	if (ratectl_budget_reset(h, name) != 0)
		bad++;
	for (i = 0; i < cap; i++)
		if (ratectl_try(h, name, &c, &l[i], NULL) != 0)
			bad++;
	if (ratectl_try(h, name, &c, &l[cap], NULL) != RATECTL_EINFLIGHT)
		bad++;
	for (i = 0; i < cap; i++)
		ratectl_release(h, &l[i], RATECTL_UNKNOWN);
	return bad;
}

/* After everyone is gone: nothing held, the dead reclaimed, all slots
 * free; *tenants gets how many tenants' budgets are left. */
static int check_after(ratectl *h, unsigned *tenants)
{
	struct tally before = { 0, 0, 0, 0 }, after = { 0, 0, 0, 0 };
	unsigned slots = 0, readers = 0;
	int bad = 0;

	if (ratectl_budget_foreach(h, tally, &before) != 0 || before.live != 0)
		bad++;
	if (ratectl_reclaim(h, &slots, &readers) != 0 || slots != before.dead)
		bad++;
	if (ratectl_budget_foreach(h, tally, &after) != 0 || after.live + after.dead != 0)
		bad++;
	bad += take_all(h, "chaos", CAP) + take_all(h, "key", KCAP);
	printf("chaos: after: %u dead holders' slots and %u stale readers reclaimed\n",
	       slots, readers);
	*tenants = before.tenants;
	return bad;
}

static int64_t ahead_ns;

static int64_t ahead_now(void *ctx)
{
	(void)ctx;
	return mono() + ahead_ns;
}

static int ahead_sleep(void *ctx, int64_t t)
{
	struct timespec ts = { (t - ahead_ns) / SEC, (t - ahead_ns) % SEC };

	(void)ctx;
	return clock_nanosleep(CLOCK_BOOTTIME, TIMER_ABSTIME, &ts, NULL) == EINTR ?
		-EINTR : 0;
}

static int64_t ahead_real(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec + ahead_ns;
}

/* An hour on (a clock injected: no waiting), every tenant's budget left
 * (*tenants: those check_after()'s admissions' sweep step left) is idle,
 * and one sweep removes them all, and only them. */
static int check_expired(const char *path, unsigned *tenants, unsigned *removed)
{
	ratectl_clock clk = { ahead_now, ahead_sleep, ahead_real, NULL, NULL };
	ratectl_options o = RATECTL_OPTIONS_INIT;
	struct tally before = { 0, 0, 0, 0 }, after = { 0, 0, 0, 0 };
	ratectl *h;
	int bad = 0;

	ahead_ns = 3600 * SEC;
	o.clock = &clk;
	if (ratectl_open(&h, path, &o) != 0)
		return 1;
	if (ratectl_budget_foreach(h, tally, &before) != 0)
		bad++;
	*tenants = before.tenants;
	if (ratectl_sweep(h, removed) != 0 || *removed != before.tenants)
		bad++;
	if (ratectl_budget_foreach(h, tally, &after) != 0 || after.tenants != 0 ||
	    after.all != B_TEN0 || after.live + after.dead != 0)
		bad++;
	ratectl_close(h);
	return bad;
}

static int64_t check_bound(struct shared *s, uint64_t *admitted)
{
	uint64_t n = s->n < MAX_REC ? s->n : MAX_REC, req, tok;
	uint64_t n2 = s->n2 < MAX_REC ? s->n2 : MAX_REC, req2;
	uint64_t nk = s->nk < MAX_REC ? s->nk : MAX_REC, reqk;
	int64_t Tr = SEC / RPS, Tt = (SEC + TPS - 1) / TPS, T2 = SEC / RPS2, Tk = SEC / KRPS;
	int64_t w[4];
	int64_t worst = INT64_MIN;
	int i;

	w[0] = bound_worst_excess(s->req, n, Tr, RBURST * Tr, &req);
	w[1] = bound_worst_excess(s->tok, n, Tt, TBURST * Tt, &tok);
	w[2] = bound_worst_excess(s->req2, n2, T2, RBURST2 * T2, &req2);
	w[3] = bound_worst_excess(s->key, nk, Tk, KBURST * Tk, &reqk);
	for (i = 0; i < 4; i++)
		if (w[i] > worst)
			worst = w[i];
	*admitted = req;
	return worst;
}

static int make_budgets(ratectl *h)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;

	b.nlimits = 2;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, RPS, SEC, RBURST };
	b.limits[1] = (ratectl_limit){ RATECTL_TOKENS, TPS, SEC, TBURST };
	b.max_inflight = CAP;
	if (ratectl_budget_set(h, "chaos", &b, 0) != 0)
		return -1;
	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, RPS2, SEC, RBURST2 };
	b.max_inflight = CAP2;
	if (ratectl_budget_set(h, "chaos2", &b, 0) != 0)
		return -1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, KRPS, SEC, KBURST };
	b.max_inflight = KCAP;
	return ratectl_budget_set(h, "key", &b, 0);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	char tmp[] = "/tmp/ratectl-chaos-XXXXXX";
	int nw = 16, nt = 4, seconds = 5, opt, i, bad, covered;
	unsigned kills[3] = { 0, 0, 0 }, tenants = 0, swept = 0, removed = 0;
	pid_t pid[MAXP];
	struct shared *s;
	uint64_t admitted, expired;
	int64_t worst;
	ratectl *h;

	while ((opt = getopt(argc, argv, "w:t:s:l:")) != -1) {
		if (opt == 'w')
			nw = atoi(optarg);
		else if (opt == 't')
			nt = atoi(optarg);
		else if (opt == 's')
			seconds = atoi(optarg);
		else if (opt == 'l')
			path = optarg;
		else
			return 2;
	}
	if (nw < 1 || nt < 0 || nw + nt + 1 > MAXP || seconds < 1 || seconds > 3600) {
		fprintf(stderr, "usage: chaos [-w 1..] [-t 0..] (with -w + -t at most %d) "
		        "[-s 1..3600] [-l ledger]\n", MAXP - 1);
		return 2;
	}
	if (!path && !(path = mkdtemp(tmp)))
		return 1;
	s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	         -1, 0);
	if (s == MAP_FAILED || ratectl_open(&h, path, NULL) != 0 || make_budgets(h) != 0) {
		fprintf(stderr, "chaos: %s\n", ratectl_errmsg());
		return 1;
	}
	srand((unsigned)getpid());
	s->t0 = mono();
	for (i = 0; i < nw + nt + 1; i++)
		pid[i] = spawn(path, s, i, nw, nt);
	killer(path, s, pid, nw, nt, seconds, kills);
	s->stop = 1;
	reap(s, pid, nw + nt + 1);
	worst = check_bound(s, &admitted);
	bad = check_after(h, &tenants);
	ratectl_close(h);
	bad += check_expired(path, &swept, &removed);
	/* Every budget made past those left was removed while the run went on. */
	expired = s->created > tenants ? s->created - tenants : 0;
	covered = kills[0] > 0 && (nt == 0 || seconds < 3 || (s->tadm > 0 && expired > 0));
	printf("chaos: %d workers, %d s: %u kills survived, %llu admissions (%llu in "
	       "two budgets at once), %u cap violations, %s GCRA bound (worst %lld ns), "
	       "%d check failures\n",
	       nw, seconds, kills[0], (unsigned long long)admitted,
	       (unsigned long long)s->n2, s->violations,
	       worst <= 0 ? "within" : "OVER", (long long)worst, bad);
	printf("chaos: tenants: %d workers (%u kills): %llu admissions with the key, "
	       "%llu budgets made (%llu races lost), %llu not found, %llu removed during "
	       "the run (%llu by %llu ratectl_sweep() calls, the rest by admissions; "
	       "%u kills of the sweeper), %u left (%u after the checks' admissions), "
	       "%u removed an hour on; %llu timeouts\n",
	       nt, kills[1], (unsigned long long)s->tadm,
	       (unsigned long long)s->created, (unsigned long long)s->raced,
	       (unsigned long long)s->notfound, (unsigned long long)expired,
	       (unsigned long long)s->swept, (unsigned long long)s->sweeps, kills[2],
	       tenants, swept, removed, (unsigned long long)s->timedout);
	printf("chaos: %u removed too early, %u slots lost while held (%llu long requests), "
	       "%u looks over a cap (of %llu), %u failures%s\n",
	       s->early, s->lost, (unsigned long long)s->longs, s->over,
	       (unsigned long long)s->looks, s->failures,
	       covered ? "" : "; NOT COVERED: no kill, or no tenant's budget removed");
	printf("chaos: ledger %s\n", path);
	return s->violations == 0 && s->failures == 0 && s->over == 0 && s->early == 0 &&
	       s->lost == 0 &&
	       worst <= 0 && bad == 0 && covered ? 0 : 1;
}
