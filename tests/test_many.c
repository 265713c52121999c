/*
 * test_many.c - one cost in several budgets at once (a model's budget and
 * its key's): all admitted in one transaction, or none charged.  Logic
 * with the injected clock; then processes mixing single and multi-budget
 * admissions, every budget's bound checked from outside.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "bound.h"
#include "testutil.h"

static const char *const both[] = { "model", "key" };
static const ratectl_cost one = { 1, 0, RATECTL_INTERACTIVE, NULL };

static uint64_t avail(clock_fixture *f, const char *name)
{
	ratectl_budget_info info;

	assert_int_equal(ratectl_budget_get(f->h, name, &info), 0);
	return info.state[0].available;
}

static uint32_t inflight(clock_fixture *f, const char *name)
{
	ratectl_budget_info info;

	assert_int_equal(ratectl_budget_get(f->h, name, &info), 0);
	return info.inflight;
}

/* A refusal by either budget charges neither. */
static void test_all_or_nothing(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget m = budget_simple(10, 2, 0), k = budget_simple(10, 5, 0);
	ratectl_lease l[2];
	int64_t wait;
	int i;

	assert_int_equal(ratectl_budget_set(f->h, "model", &m, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "key", &k, 0), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(ratectl_try_many(f->h, both, 2, &one, l, NULL), 0);
		assert_string_equal(l[0].name, "model");
		assert_string_equal(l[1].name, "key");
		assert_int_equal(l[0].start_ns, l[1].start_ns);
		assert_int_equal(ratectl_release(f->h, &l[0], RATECTL_UNKNOWN), 0);
		assert_int_equal(ratectl_release(f->h, &l[1], RATECTL_UNKNOWN), 0);
	}
	assert_int_equal(ratectl_try_many(f->h, both, 2, &one, l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, 100 * MSEC);
	assert_int_equal(avail(f, "key"), 3);           /* untouched by the refusal */
	assert_int_equal(avail(f, "model"), 0);
	/* the key's own traffic still passes */
	assert_int_equal(ratectl_try(f->h, "key", &one, &l[1], NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l[1], RATECTL_UNKNOWN), 0);
	assert_int_equal(avail(f, "key"), 2);
}

/* A slot missing in one budget: the other's slot is not kept. */
static void test_slots_all_or_nothing(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget m = budget_simple(100, 100, 1), k = budget_simple(100, 100, 1);
	ratectl_lease l[2], held;

	assert_int_equal(ratectl_budget_set(f->h, "model", &m, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "key", &k, 0), 0);
	assert_int_equal(ratectl_try(f->h, "key", &one, &held, NULL), 0);
	assert_int_equal(ratectl_try_many(f->h, both, 2, &one, l, NULL), RATECTL_EINFLIGHT);
	assert_int_equal(inflight(f, "model"), 0);
	assert_int_equal(avail(f, "model"), 100);
	assert_int_equal(ratectl_release(f->h, &held, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_try_many(f->h, both, 2, &one, l, NULL), 0);
	assert_int_equal(inflight(f, "model"), 1);
	assert_int_equal(inflight(f, "key"), 1);
	assert_int_equal(ratectl_release(f->h, &l[0], RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_release(f->h, &l[1], RATECTL_UNKNOWN), 0);
}

/* Waiting: one admission time for all, the latest any needs; release
 * reconciles each budget on its own. */
static void test_acquire_waits_for_the_binding_one(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget m = RATECTL_BUDGET_INIT, k = RATECTL_BUDGET_INIT;
	ratectl_cost c = { 1, 100, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l[2];
	int64_t t0 = f->clk.now;
	ratectl_budget_info info;

	m.nlimits = k.nlimits = 1;
	m.limits[0] = (ratectl_limit){ RATECTL_TOKENS, 1000, SEC, 100 };
	k.limits[0] = (ratectl_limit){ RATECTL_TOKENS, 100, SEC, 200 };
	assert_int_equal(ratectl_budget_set(f->h, "model", &m, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "key", &k, 0), 0);
	assert_int_equal(ratectl_acquire_many(f->h, both, 2, &c, l, SEC), 0);
	ratectl_release(f->h, &l[0], RATECTL_UNKNOWN);
	ratectl_release(f->h, &l[1], RATECTL_UNKNOWN);
	assert_int_equal(ratectl_acquire_many(f->h, both, 2, &c, l, SEC), 0);
	ratectl_release(f->h, &l[0], RATECTL_UNKNOWN);
	ratectl_release(f->h, &l[1], RATECTL_UNKNOWN);
	/* model refills in 0.1 s, key in 1 s: the key binds */
	assert_int_equal(ratectl_acquire_many(f->h, both, 2, &c, l, 2 * SEC), 0);
	assert_int_equal(l[0].start_ns, t0 + SEC);
	assert_int_equal(l[1].start_ns, t0 + SEC);
	/* a deadline before it: nothing reserved in either */
	assert_int_equal(ratectl_acquire_many(f->h, both, 2, &c, l, SEC / 2),
	                 RATECTL_ETIMEDOUT);
	assert_int_equal(ratectl_release(f->h, &l[0], 40), RATECTL_EBADLEASE);
	assert_int_equal(ratectl_acquire_many(f->h, both, 2, &c, l, 2 * SEC), 0);
	assert_int_equal(ratectl_release(f->h, &l[0], 40), 0);      /* refund 60 */
	assert_int_equal(ratectl_release(f->h, &l[1], 100), 0);
	assert_int_equal(ratectl_budget_get(f->h, "model", &info), 0);
	assert_int_equal(info.counters.tokens_actual, 40);
	assert_int_equal(ratectl_budget_get(f->h, "key", &info), 0);
	assert_int_equal(info.counters.tokens_actual, 100);
}

/* What can never pass, or does not exist, or is asked wrongly, says so. */
static void test_errors(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget m = budget_simple(10, 2, 0), k = budget_simple(10, 5, 0);
	ratectl_cost big = { 3, 0, RATECTL_INTERACTIVE, NULL };
	const char *const twice[] = { "model", "model" };
	const char *const missing[] = { "model", "nope" };
	const char *const nine[9] = { "a", "b", "c", "d", "e", "f", "g", "h", "i" };
	ratectl_lease l[9];
	int64_t wait;

	assert_int_equal(ratectl_budget_set(f->h, "model", &m, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "key", &k, 0), 0);
	assert_int_equal(ratectl_try_many(f->h, both, 2, &big, l, NULL), RATECTL_ETOOBIG);
	assert_int_equal(ratectl_try_many(f->h, missing, 2, &one, l, NULL), RATECTL_ENOTFOUND);
	assert_int_equal(avail(f, "model"), 2);
	assert_int_equal(ratectl_try_many(f->h, twice, 2, &one, l, NULL), -EINVAL);
	assert_int_equal(ratectl_try_many(f->h, both, 0, &one, l, NULL), -EINVAL);
	assert_int_equal(ratectl_try_many(f->h, nine, 9, &one, l, NULL), -EINVAL);
	assert_int_equal(ratectl_cooldown(f->h, "key", SEC), 0);
	assert_int_equal(ratectl_try_many(f->h, both, 2, &one, l, &wait), RATECTL_ECOOLDOWN);
	assert_true(wait >= SEC);
	assert_int_equal(avail(f, "model"), 2);
}

/* ---- processes -------------------------------------------------------- */

#define NPROC 8
#define MAX_REC 60000

struct shared {
	uint32_t n;
	struct { int64_t t; uint8_t a, b; } r[MAX_REC];
};


/* Workers 0-3 take both budgets at once, 4-5 "a" alone, 6-7 "b" alone. */
static void worker(const char *path, struct shared *s, int idx, int64_t t_end)
{
	const char *const ab[] = { "a", "b" };
	ratectl_lease l[2];
	ratectl *h;
	int64_t now;

	if (ratectl_open(&h, path, NULL) != 0)
		_exit(3);
	while ((now = mono()) < t_end) {
		int rc, a = idx < 6, b = idx < 4 || idx >= 6;
		uint32_t k;

		if (idx < 4)
			rc = ratectl_acquire_many(h, ab, 2, &one, l, t_end - now);
		else
			rc = ratectl_acquire(h, a ? "a" : "b", &one, &l[0], t_end - now);
		if (rc == RATECTL_ETIMEDOUT)
			break;
		if (rc != 0)
			_exit(4);
		k = __atomic_fetch_add(&s->n, 1, __ATOMIC_SEQ_CST);
		if (k < MAX_REC) {
			s->r[k].t = l[0].start_ns;
			s->r[k].a = (uint8_t)a;
			s->r[k].b = (uint8_t)b;
		}
		ratectl_release(h, &l[0], RATECTL_UNKNOWN);
		if (idx < 4)
			ratectl_release(h, &l[1], RATECTL_UNKNOWN);
	}
	ratectl_close(h);
	_exit(0);
}

static void test_processes_within_every_bound(void **state)
{
	char *path = tmp_ledger();
	struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
	                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ratectl_budget a = budget_simple(300, 10, 0), b = budget_simple(200, 10, 0);
	ratectl_budget_info ia, ib;
	adm_rec *ra, *rb;
	uint64_t na = 0, nb = 0, ta, tb, both_n = 0;
	int64_t wa, wb, t_end;
	uint32_t i, n;
	pid_t pid[NPROC];
	ratectl *h;
	int status;

	(void)state;
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "a", &a, 0), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	t_end = mono() + 2 * SEC;
	for (i = 0; i < NPROC; i++)
		if ((pid[i] = fork()) == 0)
			worker(path, s, (int)i, t_end);
	for (i = 0; i < NPROC; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	n = s->n;
	assert_true(n > 100 && n < MAX_REC);
	ra = malloc(n * sizeof *ra);
	rb = malloc(n * sizeof *rb);
	for (i = 0; i < n; i++) {
		if (s->r[i].a)
			ra[na++] = (adm_rec){ s->r[i].t, 1 };
		if (s->r[i].b)
			rb[nb++] = (adm_rec){ s->r[i].t, 1 };
		both_n += s->r[i].a && s->r[i].b;
	}
	wa = bound_worst_excess(ra, na, SEC / 300 + 1, 10 * (SEC / 300 + 1), &ta);
	wb = bound_worst_excess(rb, nb, SEC / 200, 10 * (SEC / 200), &tb);
	printf("# %u admissions (%llu in both at once): worst excess a %lld ns, b %lld ns\n",
	       n, (unsigned long long)both_n, (long long)wa, (long long)wb);
	assert_true(wa <= 0);
	assert_true(wb <= 0);
	assert_true(both_n > 0);
	/* the ledger counted exactly what the workers saw */
	assert_int_equal(ratectl_budget_get(h, "a", &ia), 0);
	assert_int_equal(ratectl_budget_get(h, "b", &ib), 0);
	assert_int_equal(ia.counters.admitted, na);
	assert_int_equal(ib.counters.admitted, nb);
	free(ra);
	free(rb);
	ratectl_close(h);
	munmap(s, sizeof *s);
	tmp_ledger_rm(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_all_or_nothing, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_slots_all_or_nothing, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_acquire_waits_for_the_binding_one, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_errors, clock_setup, clock_teardown),
		cmocka_unit_test(test_processes_within_every_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
