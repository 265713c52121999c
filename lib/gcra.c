/*
 * gcra.c - the admission arithmetic (see gcra.h).  Pure: no I/O, no clock.
 *
 * All quantities are int64 nanoseconds or unsigned unit counts.  Limits are
 * validated so that tau <= RC_TAU_MAX; every sum below then stays far from
 * overflow for any boot-relative time (< 2^62 ns, 146 years).
 */
#include <limits.h>

#include "error.h"
#include "gcra.h"

/* Largest tolerance accepted: one year.  Keeps sums of times in range. */
#define RC_TAU_MAX (366LL * 86400 * 1000000000)

/* After a cooldown a limit restarts empty, but never more than this much
 * of its rate short: a 429 says nothing about a day's budget. */
#define RC_COOLDOWN_EMPTY (60LL * 1000000000)

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

static uint64_t cost_of(const ratectl_cost *c, uint32_t dim)
{
	return dim == RATECTL_TOKENS ? c->tokens : c->requests;
}

int ratectl__limit_init(rc_limit *l, const ratectl_limit *cfg)
{
	const char *dim = cfg->dim == RATECTL_TOKENS ? "tokens" : "requests";
	uint64_t burst = cfg->burst ? cfg->burst : cfg->count;
	int64_t T, tau;

	if (cfg->dim != RATECTL_REQUESTS && cfg->dim != RATECTL_TOKENS)
		return ratectl__err(RATECTL_EBADCONFIG, "limit: unknown dimension %d",
		                    (int)cfg->dim);
	if (cfg->period_ns < RATECTL_PERIOD_MIN || cfg->period_ns > RATECTL_PERIOD_MAX)
		return ratectl__err(RATECTL_EBADCONFIG,
		                    "%s limit: period %lld ns is outside 1 s .. 1 day",
		                    dim, (long long)cfg->period_ns);
	if (cfg->count < 1 || cfg->count > (uint64_t)cfg->period_ns)
		return ratectl__err(RATECTL_EBADCONFIG,
		                    "%s limit: count %llu must be 1 .. %lld (one a nanosecond)",
		                    dim, (unsigned long long)cfg->count,
		                    (long long)cfg->period_ns);
	/* Round T up: the limit may be under-used by < 1 ns a unit, never exceeded. */
	T = (int64_t)(((uint64_t)cfg->period_ns + cfg->count - 1) / cfg->count);
	if (burst > (uint64_t)(RC_TAU_MAX / T))
		return ratectl__err(RATECTL_EBADCONFIG,
		                    "%s limit: burst %llu is more than a year of the rate",
		                    dim, (unsigned long long)burst);
	tau = T * (int64_t)burst;
	*l = (rc_limit){ .dim = cfg->dim, .count = cfg->count, .period = cfg->period_ns,
	                 .burst = burst, .T = T, .tau = tau, .tat = 0 };
	return 0;
}

int64_t ratectl__gcra_floor(const rc_limit *l, const rc_sched *s)
{
	if (s->cooldown_until == 0)
		return 0;
	return s->cooldown_until + (l->tau < RC_COOLDOWN_EMPTY ? l->tau : RC_COOLDOWN_EMPTY);
}

/* The TAT that admissions see: the stored one, or the empty bucket that
 * follows a cooldown if that is later. */
static int64_t tat_of(const rc_limit *l, const rc_sched *s)
{
	return max64(l->tat, ratectl__gcra_floor(l, s));
}

int ratectl__gcra_plan(const rc_limit *l, unsigned n, const rc_sched *s,
                       const ratectl_cost *c, int64_t now, int64_t *t_adm)
{
	int64_t t = max64(now, s->cooldown_until);
	unsigned i;

	for (i = 0; i < n; i++) {
		uint64_t units = cost_of(c, l[i].dim);

		if (units == 0)
			continue;
		if (units > l[i].burst)
			return RATECTL_ETOOBIG;
		/* Conforms at t iff max(tat, t) + units*T - tau <= t, i.e.
		 * t >= tat + units*T - tau (the other case always holds). */
		t = max64(t, tat_of(&l[i], s) + (int64_t)units * l[i].T - l[i].tau);
	}
	if (t < s->ramp_end)
		t = max64(t, s->ramp_next);
	*t_adm = t;
	return 0;
}

void ratectl__gcra_commit(rc_limit *l, unsigned n, rc_sched *s,
                          const ratectl_cost *c, int64_t t_adm)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		uint64_t units = cost_of(c, l[i].dim);

		if (units)
			l[i].tat = max64(tat_of(&l[i], s), t_adm) + (int64_t)units * l[i].T;
	}
	if (t_adm < s->ramp_end)
		s->ramp_next = t_adm + s->ramp_step;
}

void ratectl__gcra_undo(rc_limit *l, unsigned n, const int64_t *before,
                        const int64_t *after)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (l[i].tat == after[i])
			l[i].tat = before[i];
}

/* t + units * T, saturating at RC_TIME_MAX; t, units >= 0. */
static int64_t later_by(int64_t t, uint64_t units, int64_t T)
{
	uint64_t d;

	if (__builtin_mul_overflow(units, (uint64_t)T, &d) ||
	    d > (uint64_t)(RC_TIME_MAX - t))
		return RC_TIME_MAX;
	return t + (int64_t)d;
}

void ratectl__gcra_adjust(rc_limit *l, unsigned n, ratectl_dim dim,
                          int64_t delta, int64_t now)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		int64_t base = max64(l[i].tat, now);
		uint64_t units;

		if (l[i].dim != (uint32_t)dim || delta == 0)
			continue;
		if (delta > 0) {
			l[i].tat = later_by(base, (uint64_t)delta, l[i].T);
			continue;
		}
		/* A refund: any TAT at or before now means "full". */
		units = (uint64_t)-(delta + 1) + 1;
		if (later_by(now, units, l[i].T) >= base)
			l[i].tat = now;
		else
			l[i].tat = base - (int64_t)units * l[i].T;
	}
}

uint64_t ratectl__gcra_available(const rc_limit *l, int64_t now)
{
	int64_t debt = l->tat > now ? l->tat - now : 0;

	if (debt >= l->tau)
		return 0;
	return (uint64_t)((l->tau - debt) / l->T);
}

int64_t ratectl__gcra_until_full(const rc_limit *l, int64_t now)
{
	return l->tat > now ? l->tat - now : 0;
}

int ratectl__gcra_window_match(const rc_limit *l, unsigned n,
                               const ratectl_window *w)
{
	int by_period = -1, by_count = -1, shortest = -1;
	unsigned i;

	for (i = 0; i < n; i++) {
		if (l[i].dim != (uint32_t)w->dim)
			continue;
		/* A window's figures say nothing about a longer one: its
		 * refill is slower, and shrinking it to a minute's remainder
		 * would throttle to the daily rate. */
		if (w->window_ns > 0 && l[i].period > w->window_ns)
			continue;
		if (w->window_ns > 0 && l[i].period == w->window_ns && by_period < 0)
			by_period = (int)i;
		if (w->limit > 0 && l[i].count == w->limit && by_count < 0)
			by_count = (int)i;
		if (shortest < 0 || l[i].period < l[shortest].period)
			shortest = (int)i;
	}
	return by_period >= 0 ? by_period : by_count >= 0 ? by_count : shortest;
}

int ratectl__gcra_tighten(rc_limit *l, uint64_t remaining, int64_t reset,
                          int64_t now)
{
	int64_t debt, want;

	/* Providers refill continuously: `remaining` may pass now, and the
	 * limit is full again only after `reset`.  Believe whichever says
	 * less is available; never loosen. */
	debt = remaining >= l->burst ? 0 : l->tau - (int64_t)remaining * l->T;
	if (reset > debt)
		debt = reset < l->tau ? reset : l->tau;
	want = now + debt;
	if (debt > 0 && want > l->tat) {
		l->tat = want;
		return 1;
	}
	return 0;
}

void ratectl__gcra_cooldown(rc_limit *l, unsigned n, rc_sched *s,
                            int64_t until, int64_t jitter)
{
	uint64_t burst = 0;
	unsigned i;

	/* The limits' TATs are not touched: the empty bucket after the pause
	 * is a floor derived from cooldown_until (ratectl__gcra_floor), so
	 * moving the end, earlier or later, moves only the pause's own debt,
	 * never the debt of admissions. */
	for (i = 0; i < n; i++)
		if (l[i].dim == RATECTL_REQUESTS && (burst == 0 || l[i].burst < burst))
			burst = l[i].burst;
	if (burst == 0)
		burst = 10;     /* no request limit: spread the first ten */
	s->cooldown_until = until;
	s->ramp_next = until;
	s->ramp_end = until + jitter;
	s->ramp_step = jitter / (int64_t)burst;
}

int ratectl__batch_may_reserve(const rc_sched *s, int64_t t)
{
	return s->batch_tat <= t;
}

void ratectl__batch_commit(const rc_limit *l, unsigned n, rc_sched *s,
                           const ratectl_cost *c, unsigned share, int64_t t)
{
	uint64_t units;

	if (n == 0 || share == 0)
		return;
	units = cost_of(c, l[0].dim);
	/* units <= burst, so units * T <= tau <= one year: no overflow. */
	s->batch_tat = max64(s->batch_tat, t) +
		(int64_t)units * l[0].T / (int64_t)share * 100;
}

void ratectl__gcra_reset(rc_limit *l, unsigned n, rc_sched *s)
{
	unsigned i;

	for (i = 0; i < n; i++)
		l[i].tat = 0;
	*s = (rc_sched){ 0, 0, 0, 0, 0 };
}

static int64_t rebase_time(int64_t t, int64_t shift, int64_t stamp, int64_t now)
{
	int64_t owed = t > stamp ? t - stamp : 0, moved;

	if (t == 0)
		return 0;
	if (__builtin_add_overflow(t, shift, &moved))
		moved = shift > 0 ? RC_TIME_MAX : 0;
	if (moved - now > owed)
		moved = now + owed;
	return moved < 0 ? 0 : moved > RC_TIME_MAX ? RC_TIME_MAX : moved;
}

void ratectl__gcra_rebase(rc_limit *l, unsigned n, rc_sched *s, int64_t shift,
                          int64_t stamp, int64_t now)
{
	unsigned i;

	for (i = 0; i < n; i++)
		l[i].tat = rebase_time(l[i].tat, shift, stamp, now);
	s->cooldown_until = rebase_time(s->cooldown_until, shift, stamp, now);
	s->ramp_end = rebase_time(s->ramp_end, shift, stamp, now);
	s->ramp_next = rebase_time(s->ramp_next, shift, stamp, now);
	s->batch_tat = rebase_time(s->batch_tat, shift, stamp, now);
}

void ratectl__gcra_rescale(rc_limit *l, const rc_limit *old, int64_t now)
{
	int64_t debt = old->tat > now ? old->tat - now : 0;
	uint64_t units = (uint64_t)((debt + old->T - 1) / old->T);

	l->tat = units ? later_by(now, units, l->T) : 0;
}
