/*
 * bench_fair.c - section 12: fair shares between tenants.  One key's
 * budget (200 requests/s, burst 10) saturated by two tenants: A with 100
 * worker processes, B with 2, each worker a loop of ratectl_acquire_many()
 * of {its tenant, the key} and the release of both, for 3 s.  The tenants
 * are budgets of their own, with a limit nobody reaches (1,000,000/min):
 *
 *   - fair:    tenants of weight 1 each.  B's share of the key's
 *              admissions must be at least 45% (half, less a little for
 *              the edges of the run).
 *   - A alone: the same, without B: A must use at least 99% of what the
 *              key allows over the run (burst + rate x time), so that the
 *              gate costs a tenant alone nothing.
 *   - control: the same two tenants with weight 0 (no fair shares): B
 *              gets about its share of the workers, 2 of 102.
 *
 * Admission times (ratectl_now() right after each admission) go to shared
 * memory; the table prints each tenant's admissions per 100 ms window of
 * the fair run, so that a miss shows when and how the shares went wrong.
 * Every worker dies with this program (PR_SET_PDEATHSIG), and one that is
 * still there 5 s after the end is killed and fails the run.
 *
 * Environment: RATECTL_BENCH_FAIR_MS (each run, default 3000),
 * RATECTL_BENCH_TMPFS.
 */
#include <signal.h>
#include <sys/prctl.h>

#include "bench.h"

#define RATE 200                /* the key's requests per second */
#define BURST 10
#define WORKERS_A 100
#define WORKERS_B 2
#define MAX_WORKERS (WORKERS_A + WORKERS_B)
#define MAX_TIMES 65536         /* admissions recorded per tenant */
#define WINDOW_NS (100 * BENCH_MS)

#define TARGET_B_SHARE 0.45
#define TARGET_A_USE 0.99

typedef struct fair_shared {
	int ready;
	int64_t start, end;         /* ratectl_now() of the workers' clock */
	uint64_t count[MAX_WORKERS];
	uint32_t ntimes[2];
	int64_t times[2][MAX_TIMES];
	int failed;
} fair_shared;

typedef struct fair_result {
	const char *key;
	int weight, workers[2];
	uint64_t admitted[2];
	int64_t first_ns;           /* the first admission, from the start */
	double share_b, use;
	uint64_t min_worker[2], max_worker[2];
	int64_t start, end;
} fair_result;

static const char *const tenant_name[2] = { "tenant-a", "tenant-b" };

static void make_budgets(const char *dir, int weight)
{
	ratectl_budget key = RATECTL_BUDGET_INIT, t = RATECTL_BUDGET_INIT;
	ratectl *h;
	int i;

	key.nlimits = 1;
	key.limits[0] = bench_limit(RATECTL_REQUESTS, RATE, BENCH_SEC, BURST);
	t.nlimits = 1;
	t.limits[0] = bench_limit(RATECTL_REQUESTS, 1000000, 60 * BENCH_SEC, 0);
	t.weight = (unsigned)weight;
	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	BENCH_CHECK(ratectl_budget_set(h, "key", &key, RATECTL_CREATE));
	for (i = 0; i < 2; i++)
		BENCH_CHECK(ratectl_budget_set(h, tenant_name[i], &t, RATECTL_CREATE));
	ratectl_close(h);
}

/* One worker of tenant `tenant`: acquire both, release both, until the
 * end; every admission's time recorded. */
static void worker(fair_shared *sh, const char *dir, int idx, int tenant)
{
	const char *names[2] = { tenant_name[tenant], "key" };
	ratectl_cost cost = { .requests = 1, .tokens = 0 };
	ratectl_lease lease[2];
	ratectl *h;
	int64_t start, end, now;
	uint64_t n = 0;
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while ((start = __atomic_load_n(&sh->start, __ATOMIC_ACQUIRE)) == 0)
		usleep(1000);
	end = sh->end;
	while ((now = ratectl_now(h)) < start)
		usleep((useconds_t)((start - now) / 1000 + 1));
	while ((now = ratectl_now(h)) < end) {
		rc = ratectl_acquire_many(h, names, 2, &cost, lease, end - now);
		if (rc == RATECTL_ETIMEDOUT)
			break;
		BENCH_CHECK(rc);
		now = ratectl_now(h);
		if (now < end) {
			uint32_t i = __atomic_fetch_add(&sh->ntimes[tenant], 1, __ATOMIC_RELAXED);

			if (i < MAX_TIMES)
				sh->times[tenant][i] = now;
			n++;
		}
		BENCH_CHECK(ratectl_release(h, &lease[0], RATECTL_UNKNOWN));
		BENCH_CHECK(ratectl_release(h, &lease[1], RATECTL_UNKNOWN));
	}
	sh->count[idx] = n;
	ratectl_close(h);
}

/* Every worker gone by end + 5 s; one left is killed and fails the run. */
static void reap_bounded(const pid_t *pids, int n, int64_t end_mono)
{
	int i, st, left = n, bad = 0;
	int *done = calloc((size_t)n, sizeof *done);

	if (!done)
		bench_die("out of memory");
	while (left > 0 && bench_now() < end_mono + 5 * BENCH_SEC) {
		for (i = 0; i < n; i++) {
			pid_t r;

			if (done[i])
				continue;
			r = waitpid(pids[i], &st, WNOHANG);
			if (r == pids[i]) {
				done[i] = 1;
				left--;
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
					bad++;
			} else if (r < 0 && errno != EINTR) {
				bench_die("waitpid: %s", strerror(errno));
			}
		}
		if (left > 0)
			usleep(10000);
	}
	for (i = 0; i < n; i++)
		if (!done[i]) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], &st, 0);
		}
	free(done);
	if (left > 0)
		bench_die("fairness: %d of %d workers still running 5 s after the end "
		          "(killed)", left, n);
	if (bad)
		bench_die("fairness: %d of %d workers failed", bad, n);
}

static void run(fair_result *res, const char *base, const char *key, int weight,
                int wa, int wb, int64_t dur, fair_shared *sh)
{
	char dir[PATH_MAX];
	pid_t pids[MAX_WORKERS];
	int64_t deadline = bench_now() + 30 * BENCH_SEC;
	ratectl *h;
	int i, n = wa + wb, t;

	bench_tmpdir(dir, sizeof dir, base, "fair");
	make_budgets(dir, weight);
	memset(sh, 0, sizeof *sh);
	fflush(stdout);
	for (i = 0; i < n; i++) {
		if ((pids[i] = fork()) < 0)
			bench_die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			worker(sh, dir, i, i < wa ? 0 : 1);
			_exit(0);
		}
	}
	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < n) {
		if (bench_now() > deadline)
			bench_die("fairness: workers not ready after 30 s");
		usleep(1000);
	}
	/* The workers' clock is the ledger's: read it through a handle. */
	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	sh->end = ratectl_now(h) + 50 * BENCH_MS + dur;
	__atomic_store_n(&sh->start, sh->end - dur, __ATOMIC_RELEASE);
	ratectl_close(h);
	reap_bounded(pids, n, bench_now() + 50 * BENCH_MS + dur);

	memset(res, 0, sizeof *res);
	res->key = key;
	res->weight = weight;
	res->workers[0] = wa;
	res->workers[1] = wb;
	res->start = sh->start;
	res->end = sh->end;
	res->first_ns = INT64_MAX;
	for (t = 0; t < 2; t++) {
		uint32_t k, m = sh->ntimes[t] < MAX_TIMES ? sh->ntimes[t] : MAX_TIMES;

		if (sh->ntimes[t] > MAX_TIMES)
			bench_die("fairness: more than %d admissions of one tenant", MAX_TIMES);
		for (k = 0; k < m; k++)
			if (sh->times[t][k] - sh->start < res->first_ns)
				res->first_ns = sh->times[t][k] - sh->start;
		res->min_worker[t] = UINT64_MAX;
	}
	for (i = 0; i < n; i++) {
		t = i < wa ? 0 : 1;
		res->admitted[t] += sh->count[i];
		if (sh->count[i] < res->min_worker[t])
			res->min_worker[t] = sh->count[i];
		if (sh->count[i] > res->max_worker[t])
			res->max_worker[t] = sh->count[i];
	}
	if (res->admitted[0] + res->admitted[1] == 0)
		bench_die("fairness: nothing admitted in %s", key);
	res->share_b = (double)res->admitted[1] / (double)(res->admitted[0] + res->admitted[1]);
	/* What the key allowed from the first admission on: its burst and
	 * its rate over the rest of the run. */
	res->use = (double)(res->admitted[0] + res->admitted[1]) /
	           (BURST + (double)(dur - res->first_ns) * RATE / BENCH_SEC);
	bench_rmtree(dir);
}

/* Admissions of tenant t per 100 ms window of the last run. */
static void windows(const fair_shared *sh, int t, int *w, int nw)
{
	uint32_t k;

	memset(w, 0, (size_t)nw * sizeof *w);
	for (k = 0; k < sh->ntimes[t] && k < MAX_TIMES; k++) {
		int64_t i = (sh->times[t][k] - sh->start) / WINDOW_NS;

		if (i >= 0 && i < nw)
			w[i]++;
	}
}

static void print_row(const fair_result *r)
{
	char label[64];
	int both = r->workers[1] > 0;

	snprintf(label, sizeof label, "%s (weight %d), %d + %d workers", r->key,
	         r->weight, r->workers[0], r->workers[1]);
	printf("   %-36s %7llu %7llu %7.1f%% %6.1f%%  %4llu-%-4llu %4llu-%-4llu",
	       label, (unsigned long long)r->admitted[0],
	       (unsigned long long)r->admitted[1], both ? 100.0 * r->share_b : 0.0,
	       100.0 * r->use, (unsigned long long)r->min_worker[0],
	       (unsigned long long)r->max_worker[0],
	       (unsigned long long)(both ? r->min_worker[1] : 0),
	       (unsigned long long)r->max_worker[1]);
	if (strcmp(r->key, "fair") == 0)
		printf("  B >= %.0f%% %s", 100 * TARGET_B_SHARE,
		       bench_verdict(r->share_b >= TARGET_B_SHARE));
	else if (strcmp(r->key, "alone") == 0)
		printf("  use >= %.0f%% %s", 100 * TARGET_A_USE,
		       bench_verdict(r->use >= TARGET_A_USE));
	printf("\n");
}

static void json_row(const fair_result *r, int64_t dur)
{
	bench_row row = bench_row_begin("fairness", r->key);

	bench_row_int(&row, "weight", r->weight);
	bench_row_int(&row, "workers_a", r->workers[0]);
	bench_row_int(&row, "workers_b", r->workers[1]);
	bench_row_int(&row, "rate_per_s", RATE);
	bench_row_int(&row, "burst", BURST);
	bench_row_num(&row, "seconds", (double)dur / BENCH_SEC);
	bench_row_int(&row, "admitted_a", (long long)r->admitted[0]);
	bench_row_int(&row, "admitted_b", (long long)r->admitted[1]);
	bench_row_num(&row, "share_b", r->share_b);
	bench_row_num(&row, "use", r->use);
	if (strcmp(r->key, "fair") == 0) {
		bench_row_num(&row, "target_share_b_at_least", TARGET_B_SHARE);
		bench_row_str(&row, "verdict", bench_verdict(r->share_b >= TARGET_B_SHARE));
	} else if (strcmp(r->key, "alone") == 0) {
		bench_row_num(&row, "target_use_at_least", TARGET_A_USE);
		bench_row_str(&row, "verdict", bench_verdict(r->use >= TARGET_A_USE));
	}
	bench_row_end(&row);
}

static void print_windows(const char *what, const int *w, int nw)
{
	int i;

	printf("     %-12s", what);
	for (i = 0; i < nw; i++)
		printf("%s%d", i ? " " : "", w[i]);
	printf("\n");
}

int main(int argc, char **argv)
{
	int64_t dur = bench_env_long("RATECTL_BENCH_FAIR_MS", 3000, 500, 60000) * BENCH_MS;
	const char *base = bench_base(0);
	fair_shared *sh = bench_shared(sizeof *sh);
	fair_result fair, alone, control;
	int nw = (int)(dur / WINDOW_NS), *wa, *wb;

	(void)argv;
	if (argc != 1)
		bench_die("usage: bench_fair");
	if (!(wa = calloc((size_t)nw, sizeof *wa)) || !(wb = calloc((size_t)nw, sizeof *wb)))
		bench_die("out of memory");
	printf("\n12. Fair shares: one key's budget (%d requests/s, burst %d) and two "
	       "tenants (weight 1,\n    1,000,000/min each); each worker a process "
	       "looping acquire_many({tenant, key}) +\n    2 releases, for %.1f s; "
	       "%s (%s)\n", RATE, BURST, (double)dur / BENCH_SEC, bench_fs_name(base), base);
	printf("   %-36s %7s %7s %8s %7s  %-9s %-9s\n", "run", "A", "B", "B share",
	       "used", "A/worker", "B/worker");

	run(&fair, base, "fair", 1, WORKERS_A, WORKERS_B, dur, sh);
	windows(sh, 0, wa, nw);
	windows(sh, 1, wb, nw);
	print_row(&fair);
	run(&alone, base, "alone", 1, WORKERS_A, 0, dur, sh);
	print_row(&alone);
	run(&control, base, "control", 0, WORKERS_A, WORKERS_B, dur, sh);
	print_row(&control);
	printf("   admissions per 100 ms window of the fair run (the key allows %d):\n",
	       RATE / 10);
	print_windows("A", wa, nw);
	print_windows("B", wb, nw);
	json_row(&fair, dur);
	json_row(&alone, dur);
	json_row(&control, dur);
	free(wa);
	free(wb);
	return 0;
}
