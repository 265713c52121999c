/*
 * test_wait.c - waiting: order, giving up, signals, dead holders, and the
 * spread-out release after a cooldown.  Logic with the injected clock;
 * the few multi-process checks are bounded and assert on recorded times.
 */
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"


/* A waiter whose place is past its deadline reserves nothing: the next
 * asker's wait is what it would have been without it. */
static void test_give_up_reserves_nothing(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(2, 1, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t wait, t0;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, SEC / 2);
	t0 = f->clk.now;
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, 100 * MSEC), RATECTL_ETIMEDOUT);
	assert_int_equal(f->clk.now - t0, 100 * MSEC);  /* returned at its deadline */
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, SEC / 2 - 100 * MSEC);
}

/* A large request reserves its place like any other: small requests that
 * ask after it are scheduled behind it, however many there are. */
static void test_large_request_not_starved(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost big = { 1, 900, RATECTL_INTERACTIVE, NULL }, small = { 1, 10, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t t0 = f->clk.now, wait;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_TOKENS, 1000, SEC, 1000 };
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &big, &l, NULL), 0);
	/* 100 left: the big one waits exactly for the 800 it lacks */
	assert_int_equal(ratectl_acquire(f->h, "b", &big, &l, -1), 0);
	assert_int_equal(f->clk.now - t0, 800 * MSEC);
	/* and a small one asking at that moment is behind it: the bucket is
	 * empty, so it waits its own 10 ms rather than going first */
	assert_int_equal(ratectl_try(f->h, "b", &small, &l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, 10 * MSEC);
}

/* After a cooldown the waiters are released spread over the jitter
 * window, in order, not all at its end. */
static void test_cooldown_releases_spread(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(100, 10, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t start = f->clk.now, prev = 0;
	int i;

	b.jitter_ns = SEC;
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_cooldown(f->h, "b", 2 * SEC), 0);
	for (i = 0; i < 10; i++) {
		f->clk.now = start;     /* all asked during the cooldown */
		assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, -1), 0);
		/* the bucket restarts empty: one interval (10 ms), then the
		 * burst of 10 is spread over the 1 s jitter window */
		assert_int_equal(l.start_ns - start, 2 * SEC + 10 * MSEC + i * (SEC / 10));
		assert_true(l.start_ns > prev);
		prev = l.start_ns;
		ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
}

/* ---- real processes -------------------------------------------------------- */

struct order_rec {
	int64_t asked[8];
	int64_t granted[8];
};

static void test_fifo_across_processes(void **state)
{
	char *path = tmp_ledger();
	struct order_rec *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
	                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ratectl_budget b = budget_simple(20, 1, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	pid_t pid[8];
	ratectl *h;
	int i, j, status;

	(void)state;
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(h, "b", &c, &l, NULL), 0);   /* empty it */
	for (i = 0; i < 8; i++) {
		struct timespec gap = { 0, 20 * MSEC };

		if ((pid[i] = fork()) == 0) {
			ratectl_budget_info info;

			/* open this process's own environment before asking */
			if (ratectl_budget_get(h, "b", &info) != 0)
				_exit(2);
			r->asked[i] = mono();
			if (ratectl_acquire(h, "b", &c, &l, 5 * SEC) != 0)
				_exit(1);
			r->granted[i] = l.start_ns;
			_exit(0);
		}
		nanosleep(&gap, NULL);
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	/* whoever asked first was granted first, one emission interval apart */
	for (i = 0; i < 8; i++)
		for (j = 0; j < 8; j++)
			if (r->asked[i] < r->asked[j])
				assert_true(r->granted[i] < r->granted[j]);
	ratectl_close(h);
	munmap(r, sizeof *r);
	tmp_ledger_rm(path);
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void test_signal_interrupts_wait(void **state)
{
	char *path = tmp_ledger();
	ratectl_budget b = budget_simple(1, 1, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t wait;
	int status, p[2];
	ratectl *h;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(h, "b", &c, &l, NULL), 0);
	if ((pid = fork()) == 0) {
		struct sigaction sa = { .sa_handler = on_usr1 };
		char x = 'r';
		int rc;

		sigaction(SIGUSR1, &sa, NULL);          /* no SA_RESTART */
		if (write(p[1], &x, 1) != 1)
			_exit(2);
		rc = ratectl_acquire(h, "b", &c, &l, 30 * SEC);
		_exit(rc == -EINTR ? 0 : 1);
	}
	{
		char x;
		int64_t t0;

		assert_int_equal(read(p[0], &x, 1), 1);
		/* the child waits ~1 s for its place; interrupt it while it does */
		until_blocked(pid);
		assert_int_equal(ratectl_try(h, "b", &c, &l, &wait), RATECTL_ELIMITED);
		assert_true(wait > SEC);        /* its place is reserved ahead of ours */
		t0 = mono();
		kill(pid, SIGUSR1);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_true(mono() - t0 < 900 * MSEC);  /* not after its full wait */
	}
	ratectl_close(h);
	tmp_ledger_rm(path);
}

/* A slot whose holder is killed goes to the waiter promptly. */
static void test_dead_holder_wakes_waiter(void **state)
{
	char *path = tmp_ledger();
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t t0, took;
	int status, p[2];
	ratectl *h;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	if ((pid = fork()) == 0) {
		char x = 'h';

		if (ratectl_try(h, "b", &c, &l, NULL) != 0 || write(p[1], &x, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	{
		char x;
		assert_int_equal(read(p[0], &x, 1), 1);
	}
	assert_int_equal(ratectl_try(h, "b", &c, &l, NULL), RATECTL_EINFLIGHT);
	kill(pid, SIGKILL);
	t0 = mono();
	assert_int_equal(ratectl_acquire(h, "b", &c, &l, 5 * SEC), 0);
	took = mono() - t0;
	printf("# slot of a killed holder taken after %.3f ms\n", (double)took / MSEC);
	assert_true(took < 500 * MSEC);     /* the bench measures p99 */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(ratectl_release(h, &l, RATECTL_UNKNOWN), 0);
	ratectl_close(h);
	tmp_ledger_rm(path);
}

/* Interactive requests go first; batch keeps its guaranteed 10%. */
static void test_priority_share(void **state)
{
	char *path = tmp_ledger();
	uint64_t *count = mmap(NULL, 2 * sizeof *count, PROT_READ | PROT_WRITE,
	                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ratectl_budget b = budget_simple(200, 5, 0);
	int64_t t_end;
	double batch;
	pid_t pid[8];
	ratectl *h;
	int i, status;

	(void)state;
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	t_end = mono() + 2 * SEC;
	for (i = 0; i < 8; i++) {
		if ((pid[i] = fork()) == 0) {
			ratectl_cost c = { 1, 0, i < 4 ? RATECTL_INTERACTIVE : RATECTL_BATCH, NULL };
			ratectl_lease l;
			int64_t now;

			while ((now = mono()) < t_end) {
				if (ratectl_acquire(h, "b", &c, &l, t_end - now) != 0)
					break;
				__atomic_add_fetch(&count[i < 4 ? 0 : 1], 1, __ATOMIC_SEQ_CST);
				ratectl_release(h, &l, RATECTL_UNKNOWN);
			}
			_exit(0);
		}
	}
	for (i = 0; i < 8; i++)
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
	batch = (double)count[1] / (double)(count[0] + count[1]);
	printf("# interactive %llu, batch %llu (%.1f%%)\n",
	       (unsigned long long)count[0], (unsigned long long)count[1], 100 * batch);
	assert_true(count[0] + count[1] > 300);
	assert_true(batch >= 0.07);      /* its 10%, less the partial windows at the ends */
	assert_true(batch <= 0.30);      /* and interactive first */
	ratectl_close(h);
	munmap(count, 2 * sizeof *count);
	tmp_ledger_rm(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_give_up_reserves_nothing, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_large_request_not_starved, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_cooldown_releases_spread, clock_setup, clock_teardown),
		cmocka_unit_test(test_fifo_across_processes),
		cmocka_unit_test(test_signal_interrupts_wait),
		cmocka_unit_test(test_dead_holder_wakes_waiter),
		cmocka_unit_test(test_priority_share),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
