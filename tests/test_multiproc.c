/*
 * test_multiproc.c - real processes on one ledger: 16 forked workers
 * admitting against one budget stay within the GCRA bound on every limit
 * and use at least 99% of it.  Bounded in time.  (Workers killed at random
 * moments: tests/progs/chaos.c, run by tests/test_chaos.sh.)
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "bound.h"
#include "testutil.h"

#define NPROC 16
#define MAX_REC 200000

/* Shared with the workers: one record per admission. */
struct shared {
	uint32_t n;
	int64_t t[MAX_REC];
	uint32_t tokens[MAX_REC];
};

static struct shared *shared_map(void)
{
	void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 0, sizeof(struct shared));
	return p;
}


static void worker_bound(const char *path, struct shared *s, int idx,
                         int64_t t_end)
{
	ratectl_cost c = { 1, 10 + (uint64_t)(idx % 4) * 5, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	ratectl *h;
	int rc;

	if (ratectl_open(&h, path, NULL) != 0)
		_exit(3);
	for (;;) {
		int64_t now = mono();

		if (now >= t_end)
			break;
		rc = ratectl_acquire(h, "shared", &c, &l, t_end - now);
		if (rc == RATECTL_ETIMEDOUT)
			break;
		if (rc != 0)
			_exit(4);
		{
			uint32_t k = __atomic_fetch_add(&s->n, 1, __ATOMIC_SEQ_CST);

			if (k < MAX_REC) {
				s->t[k] = l.start_ns;
				s->tokens[k] = (uint32_t)c.tokens;
			}
		}
		if (ratectl_release(h, &l, RATECTL_UNKNOWN) != 0)
			_exit(5);
	}
	ratectl_close(h);
	_exit(0);
}

static void test_sixteen_processes_within_bound(void **state)
{
	char *path = tmp_ledger();
	struct shared *s = shared_map();
	ratectl_budget b = RATECTL_BUDGET_INIT;
	uint64_t req_total, tok_total;
	int64_t worst_r, worst_t, t_end, elapsed;
	double util_r, util_t;
	adm_rec *req, *tok;
	uint32_t i, n;
	pid_t pid[NPROC];
	ratectl *h;
	int status;

	(void)state;
	b.nlimits = 2;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, 400, SEC, 20 };
	b.limits[1] = (ratectl_limit){ RATECTL_TOKENS, 6000, SEC, 300 };
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "shared", &b, 0), 0);
	t_end = mono() + 2500 * MSEC;
	for (i = 0; i < NPROC; i++)
		if ((pid[i] = fork()) == 0)
			worker_bound(path, s, (int)i, t_end);
	for (i = 0; i < NPROC; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	n = s->n;
	assert_true(n > 100 && n < MAX_REC);
	req = malloc(n * sizeof *req);
	tok = malloc(n * sizeof *tok);
	for (i = 0; i < n; i++) {
		req[i] = (adm_rec){ s->t[i], 1 };
		tok[i] = (adm_rec){ s->t[i], s->tokens[i] };
	}
	worst_r = bound_worst_excess(req, n, SEC / 400, 20 * (SEC / 400), &req_total);
	worst_t = bound_worst_excess(tok, n, (SEC + 5999) / 6000,
	                             300 * ((SEC + 5999) / 6000), &tok_total);
	elapsed = req[n - 1].t - req[0].t;
	util_r = (double)req_total / (20 + (double)elapsed * 400 / SEC);
	util_t = (double)tok_total / (300 + (double)elapsed * 6000 / SEC);
	printf("# %u admissions in %.3f s: requests %.4f, tokens %.4f of the bound; "
	       "worst excess %lld / %lld ns\n", n, (double)elapsed / SEC, util_r,
	       util_t, (long long)worst_r, (long long)worst_t);
	assert_true(worst_r <= 0);
	assert_true(worst_t <= 0);
	/* The binding limit is used to at least 99%.  Not asserted in a
	 * sanitizer build (RATECTL_SANITIZER): there the workers themselves
	 * are too slow to keep the schedule full; the bound still holds. */
	if (!getenv("RATECTL_SANITIZER") || !*getenv("RATECTL_SANITIZER"))
		assert_true(util_r >= 0.99 || util_t >= 0.99);
	free(req);
	free(tok);
	ratectl_close(h);
	munmap(s, sizeof *s);
	tmp_ledger_rm(path);
}

/* Cooldowns begun and ended early, again and again, while 16 processes
 * admit: no window ever passes more than the bound. */
static void test_cooldowns_ended_early_within_bound(void **state)
{
	char *path = tmp_ledger();
	struct shared *s = shared_map();
	ratectl_budget b = RATECTL_BUDGET_INIT;
	uint64_t req_total;
	int64_t worst_r, t_end;
	adm_rec *req;
	uint32_t i, n;
	pid_t pid[NPROC];
	ratectl *h;
	int status, k = 0;

	(void)state;
	b.nlimits = 2;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, 400, SEC, 20 };
	b.limits[1] = (ratectl_limit){ RATECTL_TOKENS, 1000000, SEC, 100000 };
	b.jitter_ns = 10 * MSEC;
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "shared", &b, 0), 0);
	t_end = mono() + 2500 * MSEC;
	for (i = 0; i < NPROC; i++)
		if ((pid[i] = fork()) == 0)
			worker_bound(path, s, (int)i, t_end);
	/* the load: a pause of 300 ms, ended after 30 to 120 ms */
	while (mono() < t_end - 200 * MSEC) {
		struct timespec a = { 0, (30 + 30 * (k++ % 4)) * MSEC }, gap = { 0, 80 * MSEC };

		assert_int_equal(ratectl_cooldown(h, "shared", 300 * MSEC), 0);
		nanosleep(&a, NULL);
		assert_int_equal(ratectl_cooldown(h, "shared", 0), 0);
		nanosleep(&gap, NULL);
	}
	for (i = 0; i < NPROC; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	n = s->n;
	assert_true(n > 100 && n < MAX_REC);
	req = malloc(n * sizeof *req);
	for (i = 0; i < n; i++)
		req[i] = (adm_rec){ s->t[i], 1 };
	worst_r = bound_worst_excess(req, n, SEC / 400, 20 * (SEC / 400), &req_total);
	printf("# %u admissions, %d cooldowns ended early: worst excess %lld ns "
	       "(%.1f requests)\n", n, k, (long long)worst_r, (double)worst_r / (SEC / 400));
	assert_true(worst_r <= 0);
	free(req);
	ratectl_close(h);
	munmap(s, sizeof *s);
	tmp_ledger_rm(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sixteen_processes_within_bound),
		cmocka_unit_test(test_cooldowns_ended_early_within_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
