/*
 * test_event.c - ratectl_reserve(), the event-loop API: admitted at once
 * or a place in line and a time to look again; a descriptor that becomes
 * readable when a slot may be free; cancel gives the place back; 1,000
 * waiters in one process, beside another process, in order, with no
 * thread.  The logic with the injected clock; real processes bounded.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"


static const ratectl_cost one = { 1, 0, RATECTL_INTERACTIVE, NULL };

/* Admitted while the burst lasts, then a place and its time. */
static void test_now_or_a_place(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 2, 0);
	ratectl_reservation r = RATECTL_RESERVATION_INIT;
	int64_t t0 = f->clk.now;
	int i;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), 0);
		assert_int_equal(ratectl_release(f->h, &r.lease, RATECTL_UNKNOWN), 0);
	}
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	assert_int_equal(r.at_ns, t0 + 100 * MSEC);
	assert_true(r.fd >= 0);
	/* pending: not again, and not before its time */
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), -EBUSY);
	f->clk.now = r.at_ns - 1;
	assert_int_equal(ratectl_reserve_poll(f->h, &r), RATECTL_EPENDING);
	f->clk.now = r.at_ns;
	assert_int_equal(ratectl_reserve_poll(f->h, &r), 0);
	assert_int_equal(r.lease.start_ns, t0 + 100 * MSEC);
	assert_int_equal(r.fd, -1);
	assert_int_equal(ratectl_reserve_poll(f->h, &r), RATECTL_EBADLEASE);
	assert_int_equal(ratectl_release(f->h, &r.lease, RATECTL_UNKNOWN), 0);
	/* errors are those of ratectl_try() */
	assert_int_equal(ratectl_reserve(f->h, "nope", &one, &r), RATECTL_ENOTFOUND);
	{
		ratectl_cost big = { 3, 0, RATECTL_INTERACTIVE, NULL };

		assert_int_equal(ratectl_reserve(f->h, "b", &big, &r), RATECTL_ETOOBIG);
	}
}

/* The counters see a reservation as they see ratectl_acquire(): one
 * admitted after waiting is a wait (with its time), not a refusal; one
 * given up at its deadline (ratectl_reserve_expire) is a refusal; one
 * cancelled is neither. */
static void test_counters_like_acquire(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 1, 0);
	ratectl_reservation r = RATECTL_RESERVATION_INIT;
	ratectl_budget_info bi;
	ratectl_lease l;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	f->clk.now = r.at_ns;
	assert_int_equal(ratectl_reserve_poll(f->h, &r), 0);
	assert_int_equal(ratectl_release(f->h, &r.lease, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &bi), 0);
	assert_int_equal(bi.counters.admitted, 2);
	assert_int_equal(bi.counters.refused, 0);
	assert_int_equal(bi.counters.waited, 1);
	assert_int_equal(bi.counters.wait_ns, 100 * MSEC);

	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	ratectl_reserve_cancel(f->h, &r);
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	assert_int_equal(ratectl_reserve_expire(f->h, &r), RATECTL_ETIMEDOUT);
	assert_int_equal(ratectl_reserve_poll(f->h, &r), RATECTL_EBADLEASE);   /* not pending */
	assert_int_equal(ratectl_budget_get(f->h, "b", &bi), 0);
	assert_int_equal(bi.counters.admitted, 2);
	assert_int_equal(bi.counters.refused, 1);
	assert_int_equal(bi.counters.waited, 1);
	/* its place was given back: the next asker gets the same time */
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	assert_int_equal(r.at_ns, f->clk.now + 100 * MSEC);
	ratectl_reserve_cancel(f->h, &r);
}

/* Places are kept in the order asked; the last one cancelled is given
 * back, one with others behind it is skipped. */
static void test_cancel_gives_back(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 1, 0);
	ratectl_reservation r[3] = { RATECTL_RESERVATION_INIT, RATECTL_RESERVATION_INIT,
	                             RATECTL_RESERVATION_INIT };
	ratectl_reservation again = RATECTL_RESERVATION_INIT;
	int64_t t0 = f->clk.now;
	int i;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r[0]), 0);
	for (i = 1; i < 3; i++) {
		assert_int_equal(ratectl_reserve(f->h, "b", &one, &r[i]), RATECTL_EPENDING);
		assert_int_equal(r[i].at_ns, t0 + i * 100 * MSEC);
	}
	ratectl_reserve_cancel(f->h, &r[2]);        /* the last: given back */
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &again), RATECTL_EPENDING);
	assert_int_equal(again.at_ns, t0 + 200 * MSEC);
	ratectl_reserve_cancel(f->h, &r[1]);        /* someone behind: skipped */
	ratectl_reserve_cancel(f->h, &again);
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &again), RATECTL_EPENDING);
	assert_int_equal(again.at_ns, t0 + 200 * MSEC);
	ratectl_reserve_cancel(f->h, &again);
	ratectl_reserve_cancel(f->h, &again);       /* twice: nothing */
	assert_int_equal(ratectl_release(f->h, &r[0].lease, RATECTL_UNKNOWN), 0);
}

/* A place voided by a reset is taken again; one overtaken by a cooldown
 * waits for its end; a deleted budget ends the wait. */
static void test_reset_cooldown_delete(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(1, 1, 0);
	ratectl_reservation r = RATECTL_RESERVATION_INIT;
	int64_t t0 = f->clk.now;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), 0);
	assert_int_equal(ratectl_release(f->h, &r.lease, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	assert_int_equal(r.at_ns, t0 + SEC);
	assert_int_equal(ratectl_budget_reset(f->h, "b"), 0);
	assert_int_equal(ratectl_reserve_poll(f->h, &r), 0);       /* at once */
	assert_int_equal(r.lease.start_ns, t0);
	assert_int_equal(ratectl_release(f->h, &r.lease, RATECTL_UNKNOWN), 0);

	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	assert_int_equal(ratectl_cooldown(f->h, "b", 5 * SEC), 0);
	assert_int_equal(ratectl_reserve_poll(f->h, &r), RATECTL_EPENDING);
	assert_int_equal(r.at_ns, t0 + 5 * SEC);
	f->clk.now = r.at_ns;
	while (ratectl_reserve_poll(f->h, &r) == RATECTL_EPENDING)
		f->clk.now = r.at_ns;
	assert_true(r.lease.start_ns >= t0 + 5 * SEC);
	assert_int_equal(ratectl_release(f->h, &r.lease, RATECTL_UNKNOWN), 0);

	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	assert_int_equal(ratectl_budget_delete(f->h, "b"), 0);
	f->clk.now = r.at_ns;
	assert_int_equal(ratectl_reserve_poll(f->h, &r), RATECTL_ENOTFOUND);
	assert_int_equal(ratectl_reserve_poll(f->h, &r), RATECTL_EBADLEASE);
}

/* A place holds its in-flight slot; cancelling frees it. */
static void test_cancel_frees_slot(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 1, 1);
	ratectl_reservation r = RATECTL_RESERVATION_INIT;
	ratectl_budget_info info;
	ratectl_lease l;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_reserve(f->h, "b", &one, &r), RATECTL_EPENDING);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.inflight, 1);
	ratectl_reserve_cancel(f->h, &r);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.inflight, 0);
}

/* ---- real processes -------------------------------------------------------- */

/* A slot released by another process makes the descriptor readable. */
static void test_slot_release_wakes_fd(void **state)
{
	char *path = tmp_ledger();
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_reservation r = RATECTL_RESERVATION_INIT;
	int go[2], ready[2], status, rc;
	struct pollfd pfd;
	int64_t t0, took;
	ratectl *h;
	pid_t pid;
	char x;

	(void)state;
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	if ((pid = fork()) == 0) {
		ratectl_lease l;

		if (ratectl_try(h, "b", &one, &l, NULL) != 0 || write(ready[1], "r", 1) != 1 ||
		    read(go[0], &x, 1) != 1)
			_exit(1);
		_exit(ratectl_release(h, &l, RATECTL_UNKNOWN) == 0 ? 0 : 2);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	assert_int_equal(ratectl_reserve(h, "b", &one, &r), RATECTL_EPENDING);
	assert_true(r.fd >= 0);
	assert_true(r.at_ns - mono() <= SEC);           /* the tick */
	pfd = (struct pollfd){ r.fd, POLLIN, 0 };
	assert_int_equal(poll(&pfd, 1, 0), 0);          /* nothing yet */
	t0 = mono();
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	took = mono() - t0;
	assert_true(ratectl_events_drain(h) >= 1);
	assert_int_equal(poll(&pfd, 1, 0), 0);          /* drained */
	rc = ratectl_reserve_poll(h, &r);
	assert_int_equal(rc, 0);
	printf("# descriptor readable %.3f ms after the release\n", (double)took / MSEC);
	assert_true(took < 500 * MSEC);                 /* not the tick */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(ratectl_release(h, &r.lease, RATECTL_UNKNOWN), 0);
	ratectl_close(h);
	tmp_ledger_rm(path);
}

static int threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

#define NWAIT 1000
#define NOTHER 50

struct other {
	int64_t asked[NOTHER];
	int64_t granted[NOTHER];
};

/* 1,000 reservations in one process, served by a poll() loop, while
 * another process waits in ratectl_acquire(): everyone in the order they
 * asked, no thread started, no call that blocks the loop. */
static void test_thousand_waiters(void **state)
{
	char *path = tmp_ledger();
	struct other *o = mmap(NULL, sizeof *o, PROT_READ | PROT_WRITE,
	                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ratectl_budget b = budget_simple(2000, 1, 0);
	ratectl_reservation *r = calloc(NWAIT, sizeof *r);
	int64_t *asked = calloc(NWAIT, sizeof *asked), slowest = 0;
	int i, j, left, status, nthreads, go[2];
	ratectl *h;
	pid_t pid;
	char x;

	(void)state;
	assert_int_equal(pipe(go), 0);
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	if ((pid = fork()) == 0) {
		ratectl_budget_info info;
		ratectl_lease l;

		/* open this process's own environment before asking */
		if (ratectl_budget_get(h, "b", &info) != 0 || read(go[0], &x, 1) != 1)
			_exit(1);
		for (i = 0; i < NOTHER; i++) {
			o->asked[i] = mono();
			if (ratectl_acquire(h, "b", &one, &l, 10 * SEC) != 0)
				_exit(2);
			o->granted[i] = l.start_ns;
			ratectl_release(h, &l, RATECTL_UNKNOWN);
		}
		_exit(0);
	}
	nthreads = threads();
	assert_int_equal(write(go[1], "g", 1), 1);
	left = NWAIT;
	for (i = 0; i < NWAIT; i++) {
		int rc;

		r[i] = (ratectl_reservation)RATECTL_RESERVATION_INIT;
		asked[i] = mono();
		rc = ratectl_reserve(h, "b", &one, &r[i]);
		assert_true(rc == 0 || rc == RATECTL_EPENDING);
		if (rc == 0) {
			r[i].at_ns = -1;        /* done */
			ratectl_release(h, &r[i].lease, RATECTL_UNKNOWN);
			left--;
		}
	}
	/* the loop: sleep in poll() until the next time or an event */
	while (left > 0) {
		int64_t next = INT64_MAX, now, ms;
		struct pollfd pfd = { -1, POLLIN, 0 };

		for (i = 0; i < NWAIT; i++)
			if (r[i].at_ns >= 0 && r[i].lease.magic == 0) {
				if (r[i].at_ns < next)
					next = r[i].at_ns;
				pfd.fd = r[i].fd;
			}
		if (next == INT64_MAX)
			break;
		now = mono();
		ms = next > now ? (next - now + MSEC - 1) / MSEC : 0;
		assert_true(poll(&pfd, pfd.fd >= 0, (int)ms) >= 0);
		if (pfd.fd >= 0 && (pfd.revents & POLLIN))
			ratectl_events_drain(h);
		now = mono();
		for (i = 0; i < NWAIT; i++) {
			int64_t t;
			int rc;

			if (r[i].at_ns < 0 || r[i].lease.magic != 0 || r[i].at_ns > now)
				continue;
			t = mono();
			rc = ratectl_reserve_poll(h, &r[i]);
			t = mono() - t;
			if (t > slowest)
				slowest = t;
			assert_true(rc == 0 || rc == RATECTL_EPENDING);
			if (rc == 0) {
				left--;
				r[i].at_ns = -1 - r[i].lease.start_ns;  /* keep the time */
				ratectl_release(h, &r[i].lease, RATECTL_UNKNOWN);
				r[i].lease.magic = 1;
			}
		}
	}
	assert_int_equal(left, 0);
	assert_int_equal(threads(), nthreads);          /* no thread per waiter, none at all */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* first come, first served, across both processes */
	for (i = 0; i < NWAIT; i++) {
		int64_t gi = -1 - r[i].at_ns;

		if (r[i].lease.magic != 1)
			continue;       /* admitted at once */
		for (j = i + 1; j < NWAIT; j++)
			if (r[j].lease.magic == 1)
				assert_true(gi < -1 - r[j].at_ns);
		for (j = 0; j < NOTHER; j++) {
			/* asks 2 ms apart or more: the time from asking to
			 * the transaction is microseconds */
			if (o->asked[j] + 2 * MSEC < asked[i])
				assert_true(o->granted[j] < gi);
			if (o->asked[j] > asked[i] + 2 * MSEC)
				assert_true(o->granted[j] > gi);
		}
	}
	printf("# %d reservations served by one poll() loop; slowest call %.1f us; "
	       "threads %d\n", NWAIT, (double)slowest / 1000, threads());
	assert_true(slowest < 20 * MSEC);       /* the bench measures it; this bounds it */
	free(r);
	free(asked);
	munmap(o, sizeof *o);
	ratectl_close(h);
	tmp_ledger_rm(path);
}

/* Closing the handle while a reservation waits for a slot (its watch
 * thread running) neither crashes nor leaves the thread behind. */
static void test_close_with_pending_slot_wait(void **state)
{
	char *path = tmp_ledger();
	ratectl_budget b = budget_simple(1000, 1000, 1);
	int status, ready[2];
	ratectl *h;
	pid_t holder, pid;
	char x;

	(void)state;
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	if ((holder = fork()) == 0) {
		ratectl_lease l;

		prctl(PR_SET_PDEATHSIG, SIGKILL);       /* never outlives the test */
		if (ratectl_try(h, "b", &one, &l, NULL) != 0 || write(ready[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	ratectl_close(h);
	if ((pid = fork()) == 0) {
		ratectl_reservation r = RATECTL_RESERVATION_INIT;
		int i;

		alarm(10);
		for (i = 0; i < 20; i++) {
			if (ratectl_open(&h, path, NULL) != 0 ||
			    ratectl_reserve(h, "b", &one, &r) != RATECTL_EPENDING)
				_exit(2);
			ratectl_close(h);       /* the reservation still pending */
			memset(&r, 0, sizeof r);
			r.version = RATECTL_RESERVATION_VERSION;
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	tmp_ledger_rm(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_now_or_a_place, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_counters_like_acquire, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_gives_back, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_reset_cooldown_delete, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_frees_slot, clock_setup, clock_teardown),
		cmocka_unit_test(test_slot_release_wakes_fd),
		cmocka_unit_test(test_thousand_waiters),
		cmocka_unit_test(test_close_with_pending_slot_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
