/* test_gcra.c - the admission arithmetic, pure, with explicit times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../lib/gcra.h"

#define S 1000000000LL

static rc_limit mk(ratectl_dim dim, uint64_t count, int64_t period, uint64_t burst)
{
	ratectl_limit cfg = { dim, count, period, burst };
	rc_limit l;

	assert_int_equal(ratectl__limit_init(&l, &cfg), 0);
	return l;
}

static const rc_sched none = { 0, 0, 0, 0, 0 };

/* Admit cost c at `now` if it conforms; 1 if admitted. */
static int admit(rc_limit *l, unsigned n, rc_sched *s, uint64_t req, uint64_t tok,
                 int64_t now, int64_t *wait)
{
	ratectl_cost c = { req, tok, RATECTL_INTERACTIVE, NULL };
	int64_t t;

	assert_int_equal(ratectl__gcra_plan(l, n, s, &c, now, &t), 0);
	if (wait)
		*wait = t - now;
	if (t > now)
		return 0;
	ratectl__gcra_commit(l, n, s, &c, t);
	return 1;
}

static void test_burst_then_refused(void **state)
{
	rc_limit l = mk(RATECTL_REQUESTS, 10, S, 0);
	rc_sched s = none;
	int64_t now = 1000 * S, wait;
	int i;

	(void)state;
	for (i = 0; i < 10; i++)
		assert_true(admit(&l, 1, &s, 1, 0, now, NULL));
	assert_false(admit(&l, 1, &s, 1, 0, now, &wait));
	assert_int_equal(wait, S / 10);         /* exactly one emission interval */
	assert_false(admit(&l, 1, &s, 1, 0, now + wait - 1, NULL));
	assert_true(admit(&l, 1, &s, 1, 0, now + wait, NULL));
}

static void test_steady_rate_bound(void **state)
{
	/* 7 per second does not divide: T rounds up, never over the limit. */
	rc_limit l = mk(RATECTL_REQUESTS, 7, S, 3);
	rc_sched s = none;
	int64_t now = 5 * S, t;
	uint64_t passed = 0;

	(void)state;
	assert_int_equal(l.T, 142857143);
	for (t = now; t < now + 100 * S; t += S / 1000)
		while (admit(&l, 1, &s, 1, 0, t, NULL))
			passed++;
	/* burst + d/T_true = 3 + 700; rounding T up costs under one unit. */
	assert_true(passed <= 3 + 700);
	assert_true(passed >= 3 + 699);
}

static void test_multi_limit_all_or_nothing(void **state)
{
	rc_limit l[2] = { mk(RATECTL_REQUESTS, 100, 60 * S, 0),
	                  mk(RATECTL_TOKENS, 1000, 60 * S, 0) };
	rc_sched s = none;
	int64_t now = 100 * S, wait, tat_req;

	(void)state;
	assert_true(admit(l, 2, &s, 1, 900, now, NULL));
	tat_req = l[0].tat;
	/* tokens refuse: requests must not be charged either */
	assert_false(admit(l, 2, &s, 1, 200, now, &wait));
	assert_int_equal(l[0].tat, tat_req);
	assert_int_equal(wait, 100 * l[1].T);   /* 100 tokens short */
	assert_true(admit(l, 2, &s, 1, 200, now + wait, NULL));
}

static void test_wait_charged_at_admission_time(void **state)
{
	/* A later admission time must charge every limit at that time, or a
	 * limit that had room would see a burst beyond its bound later. */
	rc_limit l[2] = { mk(RATECTL_REQUESTS, 10, 10 * S, 10),
	                  mk(RATECTL_TOKENS, 10, 10 * S, 10) };
	rc_sched s = none;
	ratectl_cost c = { 10, 10, RATECTL_INTERACTIVE, NULL };
	int64_t t;

	(void)state;
	l[1].tat = 5 * S + 10 * S;      /* tokens empty until 15 s */
	assert_int_equal(ratectl__gcra_plan(l, 2, &s, &c, 5 * S, &t), 0);
	assert_int_equal(t, 15 * S);
	ratectl__gcra_commit(l, 2, &s, &c, t);
	assert_int_equal(l[0].tat, 15 * S + 10 * S);
}

static void test_toobig(void **state)
{
	rc_limit l = mk(RATECTL_TOKENS, 1000, 60 * S, 500);
	ratectl_cost c = { 1, 501, RATECTL_INTERACTIVE, NULL };
	int64_t t;

	(void)state;
	assert_int_equal(ratectl__gcra_plan(&l, 1, &none, &c, S, &t), RATECTL_ETOOBIG);
	c.tokens = 500;
	assert_int_equal(ratectl__gcra_plan(&l, 1, &none, &c, S, &t), 0);
}

static void test_reconcile_refund_and_debit(void **state)
{
	rc_limit l = mk(RATECTL_TOKENS, 1000, S, 0);
	rc_sched s = none;
	int64_t now = 10 * S;

	(void)state;
	assert_true(admit(&l, 1, &s, 1, 800, now, NULL));
	assert_int_equal(ratectl__gcra_available(&l, now), 200);
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, -600, now);   /* used 200 */
	assert_int_equal(ratectl__gcra_available(&l, now), 800);
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, 500, now);    /* used 700 */
	assert_int_equal(ratectl__gcra_available(&l, now), 300);
	/* a refund never makes more than a full bucket */
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, -100000, now);
	assert_int_equal(ratectl__gcra_available(&l, now), 1000);
	/* an extra debit of another dimension leaves it alone */
	ratectl__gcra_adjust(&l, 1, RATECTL_REQUESTS, 500, now);
	assert_int_equal(ratectl__gcra_available(&l, now), 1000);
}

static void test_undo_only_when_last(void **state)
{
	rc_limit l = mk(RATECTL_REQUESTS, 1, S, 1);
	rc_sched s = none;
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	int64_t before, after, t1, t2, tat_after_second;

	(void)state;
	assert_true(admit(&l, 1, &s, 1, 0, S, NULL));
	before = l.tat;
	assert_int_equal(ratectl__gcra_plan(&l, 1, &s, &c, S, &t1), 0);
	ratectl__gcra_commit(&l, 1, &s, &c, t1);          /* reserved at 2 s */
	after = l.tat;
	assert_int_equal(t1, 2 * S);
	ratectl__gcra_undo(&l, 1, &before, &after);
	assert_int_equal(l.tat, before);                   /* given back */
	ratectl__gcra_commit(&l, 1, &s, &c, t1);
	assert_int_equal(ratectl__gcra_plan(&l, 1, &s, &c, S, &t2), 0);
	ratectl__gcra_commit(&l, 1, &s, &c, t2);          /* someone behind */
	tat_after_second = l.tat;
	ratectl__gcra_undo(&l, 1, &before, &after);
	assert_int_equal(l.tat, tat_after_second);         /* skipped, kept */
}

static void test_reservations_fifo(void **state)
{
	rc_limit l = mk(RATECTL_REQUESTS, 10, S, 1);
	rc_sched s = none;
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	int64_t t, prev = 0;
	int i;

	(void)state;
	for (i = 0; i < 20; i++) {
		assert_int_equal(ratectl__gcra_plan(&l, 1, &s, &c, S, &t), 0);
		ratectl__gcra_commit(&l, 1, &s, &c, t);
		if (i > 0)
			assert_int_equal(t - prev, S / 10);   /* evenly, in order */
		prev = t;
	}
}

static void test_big_reservation_first(void **state)
{
	rc_limit l = mk(RATECTL_TOKENS, 1000, S, 1000);
	rc_sched s = none;
	ratectl_cost big = { 1, 900, RATECTL_INTERACTIVE, NULL }, small = { 1, 1, RATECTL_INTERACTIVE, NULL };
	int64_t t_big, t;
	int i;

	(void)state;
	l.tat = S + S;                          /* empty at 1 s */
	assert_int_equal(ratectl__gcra_plan(&l, 1, &s, &big, S, &t_big), 0);
	ratectl__gcra_commit(&l, 1, &s, &big, t_big);
	for (i = 0; i < 100; i++) {             /* a stream of small ones */
		assert_int_equal(ratectl__gcra_plan(&l, 1, &s, &small, S, &t), 0);
		assert_true(t >= t_big);
		ratectl__gcra_commit(&l, 1, &s, &small, t);
	}
}

static void test_tighten(void **state)
{
	rc_limit l = mk(RATECTL_REQUESTS, 60, 60 * S, 0);
	int64_t now = 10 * S, wait;
	rc_sched s = none;
	int i;

	(void)state;
	/* Provider: 5 remain, full again in 30 s.  The ledger thought 60. */
	assert_int_equal(ratectl__gcra_tighten(&l, 5, 30 * S, now), 1);
	for (i = 0; i < 5; i++)
		assert_true(admit(&l, 1, &s, 1, 0, now, NULL));
	assert_false(admit(&l, 1, &s, 1, 0, now, &wait));
	assert_int_equal(wait, S);                 /* then at the limit's rate */
	/* never loosens */
	assert_int_equal(ratectl__gcra_tighten(&l, 59, S, now), 0);
	/* a reset longer than what is missing: full only after it */
	l = mk(RATECTL_REQUESTS, 60, 60 * S, 0);
	assert_int_equal(ratectl__gcra_tighten(&l, 59, 50 * S, now), 1);
	assert_int_equal(ratectl__gcra_until_full(&l, now), 50 * S);
	assert_int_equal(ratectl__gcra_available(&l, now), 10);
}

static void test_cooldown_spreads(void **state)
{
	rc_limit l = mk(RATECTL_REQUESTS, 100, S, 10);
	rc_sched s = none;
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	int64_t t, prev = 0;
	int i;

	(void)state;
	ratectl__gcra_cooldown(&l, 1, &s, 5 * S, S);      /* until 5 s, 1 s jitter */
	for (i = 0; i < 10; i++) {
		assert_int_equal(ratectl__gcra_plan(&l, 1, &s, &c, 2 * S, &t), 0);
		ratectl__gcra_commit(&l, 1, &s, &c, t);
		assert_true(t >= 5 * S);
		if (i > 0)
			assert_int_equal(t - prev, S / 10);       /* burst spread over 1 s */
		prev = t;
	}
}

/* Ending a cooldown early drops only the pause's own debt: a daily
 * limit with 900 of 1000 used keeps its 900. */
static void test_cooldown_end_keeps_debt(void **state)
{
	rc_limit l = mk(RATECTL_TOKENS, 1000, 86400 * S, 0);
	rc_sched s = none;
	int64_t now = 100 * S, wait;
	rc_limit eff;

	(void)state;
	assert_true(admit(&l, 1, &s, 0, 900, now, NULL));
	ratectl__gcra_cooldown(&l, 1, &s, now + 30 * S, S);    /* a 30 s pause */
	assert_false(admit(&l, 1, &s, 0, 1, now, &wait));
	assert_true(wait >= 30 * S);
	ratectl__gcra_cooldown(&l, 1, &s, now + S, S);         /* ended at now + 1 s */
	eff = l;
	if (ratectl__gcra_floor(&l, &s) > eff.tat)
		eff.tat = ratectl__gcra_floor(&l, &s);
	assert_int_equal(ratectl__gcra_available(&eff, now + S), 100);
	assert_false(admit(&l, 1, &s, 0, 999, now + S, &wait));
	assert_true(wait > 3600 * S);                          /* a day's refill, not now */
	assert_true(admit(&l, 1, &s, 0, 100, now + S, NULL));
	/* and the empty bucket after a pause is a floor, not a charge: on a
	 * per-second limit it lasts one burst of the rate */
	l = mk(RATECTL_REQUESTS, 10, S, 0);
	s = none;
	ratectl__gcra_cooldown(&l, 1, &s, now, 0);
	assert_int_equal(l.tat, 0);
	assert_int_equal(ratectl__gcra_floor(&l, &s), now + S);
	assert_false(admit(&l, 1, &s, 1, 0, now, &wait));
	assert_int_equal(wait, S / 10);
}

/* A reconcile debit is charged in full, however far past the burst, and
 * saturates instead of overflowing. */
static void test_debit_in_full(void **state)
{
	rc_limit l = mk(RATECTL_TOKENS, 10000, 60 * S, 1000);
	int64_t now = 10 * S;

	(void)state;
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, 20000, now);
	assert_int_equal(ratectl__gcra_until_full(&l, now), 20000 * l.T);
	assert_int_equal(ratectl__gcra_available(&l, now), 0);
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, -19000, now);
	assert_int_equal(ratectl__gcra_until_full(&l, now), 1000 * l.T);
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, -INT64_MAX, now);
	assert_int_equal(l.tat, now);                      /* full, not before now */
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, INT64_MAX / 2, now);
	assert_int_equal(l.tat, RC_TIME_MAX);              /* saturated */
	ratectl__gcra_adjust(&l, 1, RATECTL_TOKENS, INT64_MAX / 2, now);
	assert_int_equal(l.tat, RC_TIME_MAX);
	/* a rescale keeps a large debt too */
	{
		rc_limit old = mk(RATECTL_TOKENS, 10000, 60 * S, 1000), nu;

		ratectl__gcra_adjust(&old, 1, RATECTL_TOKENS, 50000, now);
		nu = mk(RATECTL_TOKENS, 20000, 60 * S, 1000);
		ratectl__gcra_rescale(&nu, &old, now);
		assert_int_equal(ratectl__gcra_until_full(&nu, now), 50000 * nu.T);
	}
}

/* A header describes one window: only the limit of that window moves. */
static void test_window_match(void **state)
{
	rc_limit l[3] = { mk(RATECTL_REQUESTS, 500, 60 * S, 0),
	                  mk(RATECTL_TOKENS, 2000000, 86400 * S, 0),
	                  mk(RATECTL_TOKENS, 200000, 60 * S, 0) };
	ratectl_window w = RATECTL_WINDOW_INIT;

	(void)state;
	w.dim = RATECTL_TOKENS;
	w.window_ns = 60 * S;
	w.limit = 200000;
	assert_int_equal(ratectl__gcra_window_match(l, 3, &w), 2);
	w.limit = 2000000;          /* the count alone cannot pick a longer window */
	assert_int_equal(ratectl__gcra_window_match(l, 3, &w), 2);
	w.window_ns = 0;            /* window unknown: the count decides */
	assert_int_equal(ratectl__gcra_window_match(l, 3, &w), 1);
	w.limit = 7;                /* no count matches: the shortest period */
	assert_int_equal(ratectl__gcra_window_match(l, 3, &w), 2);
	w.window_ns = S;            /* a 1 s window says nothing of a minute */
	assert_int_equal(ratectl__gcra_window_match(l, 3, &w), -1);
	/* a day limit alone is never moved by a per-minute header */
	w.window_ns = 60 * S;
	w.limit = 0;
	assert_int_equal(ratectl__gcra_window_match(&l[1], 1, &w), -1);
	w.dim = RATECTL_REQUESTS;
	assert_int_equal(ratectl__gcra_window_match(l, 3, &w), 0);
}

/* Rebasing after a reboot: every stored time moves by the shift, none
 * beyond what was owed at the stamp, 0 stays 0, no overflow. */
static void test_rebase(void **state)
{
	rc_limit l[2] = { mk(RATECTL_REQUESTS, 60, 60 * S, 0),
	                  mk(RATECTL_TOKENS, 1000, 86400 * S, 0) };
	rc_sched s = { 0, 0, 0, 0, 0 };
	int64_t stamp = 900 * S, now = 5 * S;

	(void)state;
	l[0].tat = 1000 * S;        /* owed 100 s at the stamp */
	l[1].tat = 0;
	s.cooldown_until = 950 * S;
	s.batch_tat = 980 * S;
	s.ramp_end = 951 * S;
	s.ramp_next = 950 * S;
	/* old boot's t is wall t + off_old; 20 s down: shift = -(1000 - 5 - 20) s */
	ratectl__gcra_rebase(l, 2, &s, -975 * S, stamp, now);
	assert_int_equal(l[0].tat, 25 * S);
	assert_int_equal(l[1].tat, 0);
	assert_int_equal(s.cooldown_until, 0);         /* ended while down */
	assert_int_equal(s.batch_tat, 5 * S);
	assert_int_equal(s.ramp_end, 0);
	assert_int_equal(s.ramp_next, 0);
	/* a wall clock set back across the reboot: at most what was owed */
	l[0].tat = 1000 * S;
	s.batch_tat = 980 * S;
	ratectl__gcra_rebase(l, 2, &s, 86400 * 365 * S, stamp, now);
	assert_int_equal(l[0].tat, now + 100 * S);
	assert_int_equal(s.batch_tat, now + 80 * S);
	/* shifts that would overflow saturate */
	l[0].tat = 1000 * S;
	ratectl__gcra_rebase(l, 2, &s, INT64_MAX, stamp, now);
	assert_int_equal(l[0].tat, now + 100 * S);
	l[0].tat = 1000 * S;
	ratectl__gcra_rebase(l, 2, &s, INT64_MIN, stamp, now);
	assert_int_equal(l[0].tat, 0);
}

static void test_limit_validation(void **state)
{
	ratectl_limit bad[] = {
		{ RATECTL_REQUESTS, 0, S, 0 },
		{ RATECTL_REQUESTS, 10, S / 2, 0 },
		{ RATECTL_REQUESTS, 10, 86400 * S + 1, 0 },
		{ (ratectl_dim)7, 10, S, 0 },
		{ RATECTL_TOKENS, (uint64_t)S + 1, S, 0 },
		{ RATECTL_TOKENS, 1, 86400 * S, 400 },  /* burst over a year */
	};
	rc_limit l;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(ratectl__limit_init(&l, &bad[i]), RATECTL_EBADCONFIG);
}

static void test_rescale(void **state)
{
	rc_limit old = mk(RATECTL_REQUESTS, 10, S, 0);
	rc_limit nu = mk(RATECTL_REQUESTS, 20, S, 0);
	rc_sched s = none;
	int i;

	(void)state;
	for (i = 0; i < 10; i++)
		assert_true(admit(&old, 1, &s, 1, 0, S, NULL));
	ratectl__gcra_rescale(&nu, &old, S);
	assert_int_equal(ratectl__gcra_available(&nu, S), 10);  /* 10 used of 20 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_refused),
		cmocka_unit_test(test_steady_rate_bound),
		cmocka_unit_test(test_multi_limit_all_or_nothing),
		cmocka_unit_test(test_wait_charged_at_admission_time),
		cmocka_unit_test(test_toobig),
		cmocka_unit_test(test_reconcile_refund_and_debit),
		cmocka_unit_test(test_undo_only_when_last),
		cmocka_unit_test(test_reservations_fifo),
		cmocka_unit_test(test_big_reservation_first),
		cmocka_unit_test(test_tighten),
		cmocka_unit_test(test_cooldown_spreads),
		cmocka_unit_test(test_cooldown_end_keeps_debt),
		cmocka_unit_test(test_debit_in_full),
		cmocka_unit_test(test_window_match),
		cmocka_unit_test(test_rebase),
		cmocka_unit_test(test_limit_validation),
		cmocka_unit_test(test_rescale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
