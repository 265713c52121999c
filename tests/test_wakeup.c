/*
 * test_wakeup.c - the wake-up table of lib/wait.c, a test per row: every
 * state change that can let a waiter in wakes it, promptly.
 *
 * Each test forks a waiter that opens the ledger and calls
 * ratectl_acquire() with a generous deadline, waits until the kernel
 * shows it blocked (in futex or clock_nanosleep, from /proc/PID/syscall:
 * a state, not a guess of time), makes the change, and asserts that the
 * waiter got its answer well before the deadline, and before the slot
 * waiters' one-second tick where that matters.  Every wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"


static void pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * MSEC };

	nanosleep(&ts, NULL);
}

/* What a waiter reports. */
struct rec {
	int rc;
	int64_t t_done;
	int64_t start_ns;
};

static struct rec *rec_new(void)
{
	struct rec *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
	                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(r != MAP_FAILED);
	r->rc = 1;
	return r;
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* A process that asks for c in budget `name` with timeout, and reports. */
static pid_t waiter(const char *path, const char *name, ratectl_cost c,
                    int64_t timeout, struct rec *r)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct sigaction sa = { .sa_handler = on_usr1 };   /* no SA_RESTART */
		ratectl_lease l;
		ratectl *h;

		sigaction(SIGUSR1, &sa, NULL);
		if (ratectl_open(&h, path, NULL) != 0)
			_exit(3);
		r->rc = ratectl_acquire(h, name, &c, &l, timeout);
		r->t_done = mono();
		if (r->rc == 0)
			r->start_ns = l.start_ns;
		_exit(0);       /* a lease still held goes with the process */
	}
	return pid;
}

/* The waiter's exit, within limit_ns (then it is killed: a failure). */
static void reap(pid_t pid, int64_t limit_ns)
{
	int64_t end = mono() + limit_ns;
	int status;

	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (mono() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("waiter %d still waiting after %lld ms", (int)pid,
			         (long long)(limit_ns / MSEC));
		}
		pause_ms(2);
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

typedef struct fixture {
	char *path;
	ratectl *h;
	struct rec *r;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);

	f->path = tmp_ledger();
	assert_int_equal(ratectl_open(&f->h, f->path, NULL), 0);
	f->r = rec_new();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	if (f->h)
		ratectl_close(f->h);
	munmap(f->r, sizeof *f->r);
	tmp_ledger_rm(f->path);
	free(f);
	return 0;
}

static const ratectl_cost one = { 1, 0, RATECTL_INTERACTIVE, NULL };

/* A budget of one request every `period`, burst 1, `cap` in flight. */
static void set_slow(fixture *f, int64_t period, uint32_t cap)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, 1, period, 1 };
	b.max_inflight = cap;
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
}

/* Row: slot released. */
static void test_release_wakes_slot_waiter(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	pid = waiter(f->path, "b", one, 10 * SEC, f->r);
	until_blocked(pid);
	t0 = mono();
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
	reap(pid, 3 * SEC);
	assert_int_equal(f->r->rc, 0);
	assert_true(f->r->t_done - t0 < 900 * MSEC);     /* not the deadline */
}

/* Row: ratectl_close() with leases held. */
static void test_close_wakes_slot_waiter(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	pid = waiter(f->path, "b", one, 10 * SEC, f->r);
	until_blocked(pid);
	t0 = mono();
	ratectl_close(f->h);            /* the lease is never released */
	f->h = NULL;
	reap(pid, 3 * SEC);
	assert_int_equal(f->r->rc, 0);
	/* the holder lives on: neither the watcher nor a tick (1 s) was
	 * needed; a margin for a loaded machine */
	assert_true(f->r->t_done - t0 < 600 * MSEC);
}

/* A holder whose lock goes while its process lives (it execs: the lease
 * descriptor is close-on-exec), so no pidfd ever tells the watcher.
 * This is what a death beyond the watcher's RC_WATCH_MAX holders, or
 * without pidfd_open, looks like to a waiter.  Returns the holder. */
static pid_t holder_then_exec(fixture *f, int *go)
{
	int ready[2], start[2];
	pid_t pid;
	char x;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(start), 0);
	if ((pid = fork()) == 0) {
		ratectl_lease l;
		ratectl *h;

		if (ratectl_open(&h, f->path, NULL) != 0 ||
		    ratectl_try(h, "b", &one, &l, NULL) != 0 ||
		    write(ready[1], "r", 1) != 1 || read(start[0], &x, 1) != 1)
			_exit(1);
		execlp("sleep", "sleep", "30", (char *)NULL);
		_exit(1);
	}
	assert_int_equal(read(ready[0], &x, 1), 1);
	close(ready[0]);
	close(ready[1]);
	close(start[0]);
	*go = start[1];
	return pid;
}

/* Until slot 0's lock is free (the holder exec'ed), bounded. */
static void until_lock_dropped(fixture *f)
{
	int64_t end = mono() + 5 * SEC;
	ratectl_lease_info li;
	size_t n;

	for (;;) {
		assert_int_equal(ratectl_leases(f->h, "b", &li, 1, &n), 0);
		if (n == 1 && !li.alive)
			return;
		assert_true(mono() < end);
		pause_ms(1);
	}
}

/* Row: holder died where the watcher cannot see it: the tick retries. */
static void test_unwatched_death_costs_a_tick(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	int64_t t0;
	pid_t holder, pid;
	int go;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	holder = holder_then_exec(f, &go);
	pid = waiter(f->path, "b", one, 6 * SEC, f->r);
	until_blocked(pid);
	assert_int_equal(write(go, "g", 1), 1);
	until_lock_dropped(f);
	t0 = mono();
	reap(pid, 4 * SEC);
	printf("# slot of an unwatched holder taken after %.0f ms\n",
	       (double)(f->r->t_done - t0) / MSEC);
	assert_int_equal(f->r->rc, 0);
	assert_true(f->r->t_done - t0 < 1500 * MSEC);   /* one tick, not the deadline */
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	close(go);
}

/* Row: reclaim freed dead slots. */
static void test_reclaim_wakes_slot_waiter(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	unsigned slots = 0;
	int64_t t0;
	pid_t holder, pid;
	int go;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	holder = holder_then_exec(f, &go);
	pid = waiter(f->path, "b", one, 6 * SEC, f->r);
	until_blocked(pid);
	assert_int_equal(write(go, "g", 1), 1);
	until_lock_dropped(f);
	t0 = mono();
	assert_int_equal(ratectl_reclaim(f->h, &slots, NULL), 0);
	reap(pid, 4 * SEC);
	assert_int_equal(f->r->rc, 0);
	/* slots is 0 when the waiter's tick took it first: still no miss */
	assert_true(slots <= 1);
	assert_true(f->r->t_done - t0 < 600 * MSEC);     /* before the tick */
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	close(go);
}

/* Row: reconcile refunded tokens. */
static void test_refund_wakes_rate_waiter(void **state)
{
	fixture *f = *state;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost big = { 1, 100, RATECTL_INTERACTIVE, NULL }, half = { 1, 50, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_TOKENS, 100, 3600 * SEC, 100 };
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &big, &l, NULL), 0);
	/* 50 tokens come back by refill only in half an hour: past its
	 * deadline, so it waits for a change, with no place reserved */
	pid = waiter(f->path, "b", half, 5 * SEC, f->r);
	until_blocked(pid);
	t0 = mono();
	assert_int_equal(ratectl_release(f->h, &l, 10), 0);     /* 90 back */
	reap(pid, 4 * SEC);
	assert_int_equal(f->r->rc, 0);
	assert_true(f->r->t_done - t0 < 900 * MSEC);     /* not the deadline */
}

/* Row: a reservation given back (its waiter interrupted). */
static void test_undo_wakes_rate_waiter(void **state)
{
	fixture *f = *state;
	struct rec *r2 = rec_new();
	ratectl_lease l;
	pid_t first, second;

	set_slow(f, 2 * SEC, 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	first = waiter(f->path, "b", one, 10 * SEC, f->r);     /* reserves +2 s */
	until_blocked(first);
	/* +4 s is past its 3 s: it waits for a change */
	second = waiter(f->path, "b", one, 3 * SEC, r2);
	until_blocked(second);
	kill(first, SIGUSR1);
	reap(first, 2 * SEC);
	assert_int_equal(f->r->rc, -EINTR);
	reap(second, 4 * SEC);
	assert_int_equal(r2->rc, 0);    /* the place given back was its */
	munmap(r2, sizeof *r2);
}

/* Row: budget updated. */
static void test_update_wakes_waiters(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	pid = waiter(f->path, "b", one, 10 * SEC, f->r);
	until_blocked(pid);
	t0 = mono();
	b.max_inflight = 2;
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	reap(pid, 3 * SEC);
	assert_int_equal(f->r->rc, 0);
	assert_true(f->r->t_done - t0 < 900 * MSEC);     /* not the deadline */
}

/* Row: reset.  A place reserved before it is void: its waiter plans
 * again, at once, and the reset's fresh burst is not given twice. */
static void test_reset_voids_reservations(void **state)
{
	fixture *f = *state;
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	set_slow(f, 2 * SEC, 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	pid = waiter(f->path, "b", one, 10 * SEC, f->r);       /* reserves +2 s */
	until_blocked(pid);
	t0 = mono();
	assert_int_equal(ratectl_budget_reset(f->h, "b"), 0);
	reap(pid, 3 * SEC);
	assert_int_equal(f->r->rc, 0);
	assert_true(f->r->t_done - t0 < 900 * MSEC);     /* not the deadline */
	/* the waiter took the burst of 1: nothing else before +2 s */
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), RATECTL_ELIMITED);
}

/* Row: budget deleted. */
static void test_delete_wakes_waiters(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	pid = waiter(f->path, "b", one, 5 * SEC, f->r);
	until_blocked(pid);
	t0 = mono();
	assert_int_equal(ratectl_budget_delete(f->h, "b"), 0);
	reap(pid, 4 * SEC);
	assert_int_equal(f->r->rc, RATECTL_ENOTFOUND);
	assert_true(f->r->t_done - t0 < 900 * MSEC);     /* not the deadline */
}

/* Row: cooldown begins.  A place inside it is given back and taken
 * again after it. */
static void test_cooldown_start_gives_back(void **state)
{
	fixture *f = *state;
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	set_slow(f, SEC, 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	pid = waiter(f->path, "b", one, 10 * SEC, f->r);       /* reserves +1 s */
	until_blocked(pid);
	t0 = mono();
	assert_int_equal(ratectl_cooldown(f->h, "b", 2 * SEC), 0);
	reap(pid, 5 * SEC);
	assert_int_equal(f->r->rc, 0);
	assert_true(f->r->start_ns >= t0 + 2 * SEC);           /* not inside it */
}

/* Row: cooldown ends early.  Its waiters are let in at once, and the
 * debt of earlier admissions stays. */
static void test_cooldown_end_wakes_waiters(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 0);
	ratectl_lease l;
	int64_t t0;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_cooldown(f->h, "b", 30 * SEC), 0);
	pid = waiter(f->path, "b", one, 60 * SEC, f->r);
	until_blocked(pid);
	t0 = mono();
	assert_int_equal(ratectl_cooldown(f->h, "b", 0), 0);
	reap(pid, 3 * SEC);
	assert_int_equal(f->r->rc, 0);
	/* after a pause the bucket restarts empty: one interval, 100 ms */
	assert_true(f->r->t_done - t0 < 900 * MSEC);     /* not its 30 s */
	(void)l;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_release_wakes_slot_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_wakes_slot_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwatched_death_costs_a_tick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_wakes_slot_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refund_wakes_rate_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_undo_wakes_rate_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_wakes_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_voids_reservations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_wakes_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cooldown_start_gives_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cooldown_end_wakes_waiters, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
