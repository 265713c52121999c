/*
 * bench_wait.c - waiting, measured: fairness across 16 processes, wake-up
 * latency after a release and after a holder's SIGKILL, the CPU that 64
 * idle waiters burn, and the rate spike when a cooldown ends.
 */
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/resource.h>

#include "bench.h"

#define NFAIR 16
#define NIDLE 64
#define NSPIKE 32

static ratectl *open_fresh(char *dir, size_t len, const char *tag)
{
	ratectl *h;

	bench_tmpdir(dir, len, bench_base(0), tag);
	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	return h;
}

static ratectl_budget one_limit(uint64_t count, int64_t period, uint64_t burst,
                                uint32_t inflight)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, count, period, burst };
	b.max_inflight = inflight;
	return b;
}

/* ---- fairness ----------------------------------------------------------- */

static void fairness(int64_t seconds)
{
	char dir[PATH_MAX];
	ratectl *h = open_fresh(dir, sizeof dir, "fair");
	ratectl_budget b = one_limit(500, BENCH_SEC, 10, 0);
	uint64_t *count = bench_shared(NFAIR * sizeof *count);
	int64_t t_end = bench_now() + seconds * BENCH_SEC;
	double sum = 0, sq = 0, jain;
	pid_t pid[NFAIR];
	bench_row r;
	int i;

	BENCH_CHECK(ratectl_budget_set(h, "fair", &b, 0));
	for (i = 0; i < NFAIR; i++) {
		if ((pid[i] = fork()) == 0) {
			ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
			ratectl_lease l;
			int64_t now;

			while ((now = bench_now()) < t_end) {
				int rc = ratectl_acquire(h, "fair", &c, &l, t_end - now);

				if (rc == RATECTL_ETIMEDOUT)
					break;
				BENCH_CHECK(rc);
				count[i]++;
				BENCH_CHECK(ratectl_release(h, &l, RATECTL_UNKNOWN));
			}
			_exit(0);
		}
	}
	bench_reap(pid, NFAIR, "fairness");
	for (i = 0; i < NFAIR; i++) {
		sum += (double)count[i];
		sq += (double)count[i] * (double)count[i];
	}
	jain = sq > 0 ? sum * sum / (NFAIR * sq) : 0;
	printf("  fairness, %d processes, %lld s on 500/s:  Jain index %.4f  "
	       "(%.0f admissions, target >= 0.99: %s)\n", NFAIR, (long long)seconds,
	       jain, sum, bench_verdict(jain >= 0.99));
	r = bench_row_begin("wait", "fairness");
	bench_row_num(&r, "jain", jain);
	bench_row_num(&r, "admissions", sum);
	bench_row_str(&r, "verdict", bench_verdict(jain >= 0.99));
	bench_row_end(&r);
	ratectl_close(h);
	bench_rmtree(dir);
}

/* ---- wake-up after a release ------------------------------------------- */

struct pingpong {
	int64_t released;          /* when the holder called release */
	int64_t lat[2000];
	uint32_t n;
};

static void pingpong_worker(ratectl *h, struct pingpong *pp, int rounds)
{
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	struct timespec hold = { 0, 1000000 };
	ratectl_lease l;
	int i;

	for (i = 0; i < rounds; i++) {
		BENCH_CHECK(ratectl_acquire(h, "pp", &c, &l, 10 * BENCH_SEC));
		if (__atomic_load_n(&pp->released, __ATOMIC_ACQUIRE)) {
			uint32_t k = __atomic_fetch_add(&pp->n, 1, __ATOMIC_SEQ_CST);

			if (k < 2000)
				pp->lat[k] = bench_now() - pp->released;
		}
		nanosleep(&hold, NULL);         /* the other is surely asleep now */
		__atomic_store_n(&pp->released, bench_now(), __ATOMIC_RELEASE);
		BENCH_CHECK(ratectl_release(h, &l, RATECTL_UNKNOWN));
	}
	_exit(0);
}

static void wake_after_release(void)
{
	char dir[PATH_MAX], a[32], b50[32];
	ratectl *h = open_fresh(dir, sizeof dir, "pp");
	ratectl_budget b = one_limit(1000000, BENCH_SEC, 1000000, 1);
	struct pingpong *pp = bench_shared(sizeof *pp);
	bench_stats st;
	pid_t pid[2];
	bench_row r;
	int i;

	BENCH_CHECK(ratectl_budget_set(h, "pp", &b, 0));
	for (i = 0; i < 2; i++)
		if ((pid[i] = fork()) == 0)
			pingpong_worker(h, pp, 300);
	bench_reap(pid, 2, "wake-up after release");
	st = bench_stats_of(pp->lat, pp->n < 2000 ? pp->n : 2000, 0);
	printf("  wake-up after a release (slot waiter):  p50 %s  p99 %s  "
	       "(%zu samples, target p99 <= 2 ms: %s)\n",
	       bench_fmt_ns(b50, sizeof b50, st.median),
	       bench_fmt_ns(a, sizeof a, st.p99), st.n, bench_verdict(st.p99 <= 2e6));
	r = bench_row_begin("wait", "wake_after_release");
	bench_row_num(&r, "p50_ns", st.median);
	bench_row_num(&r, "p99_ns", st.p99);
	bench_row_str(&r, "verdict", bench_verdict(st.p99 <= 2e6));
	bench_row_end(&r);
	ratectl_close(h);
	bench_rmtree(dir);
}

/* ---- wake-up after a holder's SIGKILL ----------------------------------- */

/* One holder killed while a waiter sleeps for its slot.  *from_kill gets
 * the time from kill() to the waiter's wake-up; the result is the time from
 * the holder's exit (its pidfd readable: its descriptors, so its lock, are
 * gone, which is when the slot frees) to the wake-up. */
static int64_t one_kill(ratectl *h, int64_t *woke, int64_t *from_kill)
{
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	struct timespec settle = { 0, 5000000 };
	struct pollfd pfd;
	int p[2], st;
	pid_t holder, waiter;
	ratectl_lease l;
	int64_t t_kill, t_exit;
	char x;

	if (pipe(p) != 0)
		bench_die("pipe: %s", strerror(errno));
	if ((holder = fork()) == 0) {
		BENCH_CHECK(ratectl_try(h, "k", &c, &l, NULL));
		if (write(p[1], "h", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	if (read(p[0], &x, 1) != 1)
		bench_die("holder did not start");
	if ((waiter = fork()) == 0) {
		ratectl_budget_info info;

		/* open the child's own environment first: not part of the wake-up */
		BENCH_CHECK(ratectl_budget_get(h, "k", &info));
		if (write(p[1], "w", 1) != 1)
			_exit(1);
		BENCH_CHECK(ratectl_acquire(h, "k", &c, &l, 10 * BENCH_SEC));
		*woke = bench_now();
		BENCH_CHECK(ratectl_release(h, &l, RATECTL_UNKNOWN));
		_exit(0);
	}
	if (read(p[0], &x, 1) != 1)
		bench_die("waiter did not start");
	nanosleep(&settle, NULL);           /* the waiter is asleep by now */
	pfd.fd = (int)syscall(SYS_pidfd_open, holder, 0);
	pfd.events = POLLIN;
	if (pfd.fd < 0)
		bench_die("pidfd_open: %s", strerror(errno));
	t_kill = bench_now();
	kill(holder, SIGKILL);
	if (poll(&pfd, 1, 10000) != 1)
		bench_die("the holder did not die");
	t_exit = bench_now();
	close(pfd.fd);
	waitpid(holder, &st, 0);
	bench_reap(&waiter, 1, "wake-up after SIGKILL");
	close(p[0]);
	close(p[1]);
	*from_kill = *woke - t_kill;
	return *woke - t_exit;
}

static void wake_after_kill(void)
{
	char dir[PATH_MAX], a[32], b50[32], k50[32], k99[32];
	ratectl *h = open_fresh(dir, sizeof dir, "kill");
	ratectl_budget b = one_limit(1000000, BENCH_SEC, 1000000, 1);
	int64_t *woke = bench_shared(sizeof *woke), lat[100], from_kill[100];
	bench_stats st, sk;
	bench_row r;
	int i;

	BENCH_CHECK(ratectl_budget_set(h, "k", &b, 0));
	for (i = 0; i < 100; i++)
		lat[i] = one_kill(h, woke, &from_kill[i]);
	st = bench_stats_of(lat, 100, 0);
	sk = bench_stats_of(from_kill, 100, 0);
	printf("  wake-up after a holder's SIGKILL:        p50 %s  p99 %s  from its "
	       "exit (target p99 <= 2 ms: %s);\n"
	       "                                            p50 %s  p99 %s  from "
	       "kill(), with the kernel's teardown\n",
	       bench_fmt_ns(b50, sizeof b50, st.median),
	       bench_fmt_ns(a, sizeof a, st.p99), bench_verdict(st.p99 <= 2e6),
	       bench_fmt_ns(k50, sizeof k50, sk.median),
	       bench_fmt_ns(k99, sizeof k99, sk.p99));
	r = bench_row_begin("wait", "wake_after_kill");
	bench_row_num(&r, "p50_ns", st.median);
	bench_row_num(&r, "p99_ns", st.p99);
	bench_row_num(&r, "from_kill_p50_ns", sk.median);
	bench_row_num(&r, "from_kill_p99_ns", sk.p99);
	bench_row_str(&r, "verdict", bench_verdict(st.p99 <= 2e6));
	bench_row_end(&r);
	ratectl_close(h);
	bench_rmtree(dir);
}

/* ---- idle waiters ------------------------------------------------------- */

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU that NIDLE processes burn while waiting `seconds` on an exhausted
 * budget, as a share of one core.  Each counts its own CPU around the
 * wait only: starting a process and opening the ledger are not waiting.
 * slots: wait for in-flight slots instead of for rate. */
static void idle_cpu(int64_t seconds, int slots)
{
	char dir[PATH_MAX];
	ratectl *h = open_fresh(dir, sizeof dir, "idle");
	ratectl_budget b = slots ? one_limit(1000000, BENCH_SEC, 1000000, 1)
	                         : one_limit(1, 86400 * BENCH_SEC, 1, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	double *cpu = bench_shared(NIDLE * sizeof *cpu), total = 0, share;
	ratectl_lease held;
	pid_t pid[NIDLE];
	bench_row r;
	int i;

	BENCH_CHECK(ratectl_budget_set(h, "idle", &b, 0));
	BENCH_CHECK(ratectl_try(h, "idle", &c, &held, NULL));    /* exhaust it */
	for (i = 0; i < NIDLE; i++) {
		if ((pid[i] = fork()) == 0) {
			ratectl_budget_info info;
			ratectl_lease l;
			double c0;
			int rc;

			BENCH_CHECK(ratectl_budget_get(h, "idle", &info));
			c0 = cpu_seconds();
			rc = ratectl_acquire(h, "idle", &c, &l, seconds * BENCH_SEC);
			cpu[i] = cpu_seconds() - c0;
			_exit(rc == RATECTL_ETIMEDOUT ? 0 : 1);
		}
	}
	bench_reap(pid, NIDLE, "idle waiters");
	for (i = 0; i < NIDLE; i++)
		total += cpu[i];
	share = total / (double)seconds;
	printf("  %d idle waiters, %lld s, on %s:  %.3f%% of one core in all "
	       "(target < 1%%: %s)\n", NIDLE, (long long)seconds,
	       slots ? "in-flight slots" : "an exhausted rate", 100 * share,
	       bench_verdict(share < 0.01));
	r = bench_row_begin("wait", slots ? "idle_cpu_slots" : "idle_cpu_rate");
	bench_row_num(&r, "core_share", share);
	bench_row_str(&r, "verdict", bench_verdict(share < 0.01));
	bench_row_end(&r);
	BENCH_CHECK(ratectl_release(h, &held, RATECTL_UNKNOWN));
	ratectl_close(h);
	bench_rmtree(dir);
}

/* ---- the spike after a cooldown ----------------------------------------- */

struct spike {
	uint32_t n;
	int64_t t[20000];
};

static void spike_after_cooldown(void)
{
	char dir[PATH_MAX];
	ratectl *h = open_fresh(dir, sizeof dir, "spike");
	ratectl_budget b = one_limit(100, BENCH_SEC, 100, 0);
	struct spike *s = bench_shared(sizeof *s);
	int64_t t_end, cool_end, maxwin = 0;
	pid_t pid[NSPIKE];
	bench_row r;
	uint32_t i, j, n;

	b.jitter_ns = BENCH_SEC;
	BENCH_CHECK(ratectl_budget_set(h, "spike", &b, 0));
	BENCH_CHECK(ratectl_cooldown(h, "spike", 1 * BENCH_SEC));
	cool_end = ratectl_now(h) + BENCH_SEC;
	t_end = bench_now() + 3 * BENCH_SEC;
	for (i = 0; i < NSPIKE; i++) {
		if ((pid[i] = fork()) == 0) {
			ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
			ratectl_lease l;
			int64_t now;

			while ((now = bench_now()) < t_end) {
				int rc = ratectl_acquire(h, "spike", &c, &l, t_end - now);

				if (rc == RATECTL_ETIMEDOUT)
					break;
				BENCH_CHECK(rc);
				j = __atomic_fetch_add(&s->n, 1, __ATOMIC_SEQ_CST);
				if (j < 20000)
					s->t[j] = l.start_ns;
				BENCH_CHECK(ratectl_release(h, &l, RATECTL_UNKNOWN));
			}
			_exit(0);
		}
	}
	bench_reap(pid, NSPIKE, "cooldown spike");
	n = s->n < 20000 ? s->n : 20000;
	qsort(s->t, n, sizeof *s->t, bench_cmp_i64);
	for (i = 0, j = 0; i < n; i++) {
		while (s->t[i] - s->t[j] >= 100 * BENCH_MS)
			j++;
		if (s->t[i] >= cool_end && (int64_t)(i - j + 1) > maxwin)
			maxwin = i - j + 1;
	}
	printf("  after a 1 s cooldown, %d waiters, 100/s burst 100, 1 s jitter: "
	       "at most %lld in any 100 ms (rate: 10; burst at once: 100): %s\n",
	       NSPIKE, (long long)maxwin, bench_verdict(maxwin <= 20));
	r = bench_row_begin("wait", "cooldown_spike");
	bench_row_int(&r, "max_per_100ms", maxwin);
	bench_row_int(&r, "rate_per_100ms", 10);
	bench_row_str(&r, "verdict", bench_verdict(maxwin <= 20));
	bench_row_end(&r);
	ratectl_close(h);
	bench_rmtree(dir);
}

int main(void)
{
	int64_t seconds = bench_env_long("RATECTL_BENCH_SECONDS", 10, 1, 600);

	printf("\nwaiting (issue: fair, prompt, cheap, no herd)\n");
	fairness(seconds);
	wake_after_release();
	wake_after_kill();
	idle_cpu(seconds, 0);
	idle_cpu(seconds, 1);
	spike_after_cooldown();
	return 0;
}
