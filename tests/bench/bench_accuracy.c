/*
 * bench_accuracy.c - does the shared limit hold, and is it used in full?
 *
 * 16 forked processes call ratectl_acquire() on one budget for a bounded
 * time, each recording every lease's admission time (lease.start_ns) and
 * cost into shared memory.  Afterwards, for every limit of the budget:
 *   - over-admission, exactly: over every window [t_i, t_j] of admission
 *     times, units admitted in it <= burst + (t_j - t_i) * count / period
 *     (the GCRA bound), checked over all i <= j in integer arithmetic;
 *     a window that breaks it is a violation (there must be none);
 *   - utilization: admitted / (burst + rate * elapsed) from the first
 *     admission to the deadline, for the limit that binds (target 99%).
 * Two budgets run at once, 16 processes on each, so that each dimension is
 * the binding one once: requests (200/s, burst 20) with costs of 1..199
 * tokens under a loose tokens limit, and tokens (20,000/s, burst 2,000)
 * under a loose requests limit.
 *
 * Environment: RATECTL_BENCH_SECONDS (default 10),
 * RATECTL_BENCH_TMPFS.
 */
#include "bench.h"

#define WORKERS 16

typedef struct rec {
	int64_t start;              /* lease.start_ns: the admission time */
	int64_t late;               /* when acquire returned, minus start */
	uint32_t tokens;
	uint32_t worker;
} rec;

typedef struct shared {
	int ready;
	int64_t start;              /* common start and deadline, BOOTTIME */
	int64_t deadline;
	uint64_t n;                 /* records taken */
	uint64_t per_worker[WORKERS];
	rec r[];
} shared;

typedef struct acc_case {
	const char *name;
	int binding;                /* index of the limit that should bind */
	ratectl_budget b;
} acc_case;

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void worker(shared *sh, size_t cap, const char *dir, const char *name,
                   uint32_t idx)
{
	uint32_t seed = 0x9E3779B9u * (idx + 1);
	ratectl_lease lease;
	ratectl *h;
	int64_t now, deadline;
	int rc;

	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&sh->start, __ATOMIC_ACQUIRE) == 0)
		usleep(200);
	deadline = sh->deadline;
	{
		struct timespec ts = { (time_t)(sh->start / BENCH_SEC),
		                       (long)(sh->start % BENCH_SEC) };

		while (clock_nanosleep(CLOCK_BOOTTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	while ((now = ratectl_now(h)) < deadline) {
		ratectl_cost c = { .requests = 1,
		                   .tokens = 1 + xorshift(&seed) % 199 };
		uint64_t i;

		rc = ratectl_acquire(h, name, &c, &lease, deadline - now);
		if (rc == RATECTL_ETIMEDOUT)
			continue;       /* the budget is taken up to the deadline */
		BENCH_CHECK(rc);
		now = ratectl_now(h);
		if ((i = __atomic_fetch_add(&sh->n, 1, __ATOMIC_SEQ_CST)) >= cap)
			bench_die("accuracy: more than %zu admissions: far over the "
			          "limit", cap);
		sh->r[i] = (rec){ lease.start_ns, now - lease.start_ns,
		                  (uint32_t)c.tokens, idx };
		sh->per_worker[idx]++;
		BENCH_CHECK(ratectl_release(h, &lease, RATECTL_UNKNOWN));
	}
	ratectl_close(h);
}

static int cmp_rec(const void *a, const void *b)
{
	const rec *x = a, *y = b;

	return (x->start > y->start) - (x->start < y->start);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/*
 * The GCRA bound over every window, in O(n): with S the prefix sums of
 * units in time order, window [i, j] breaks the bound iff
 *     (S_j - S_{i-1}) * P > b * P + (t_j - t_i) * C,
 * i.e. X_j - Y_i > b * P with X_j = S_j*P - t_j*C, Y_i = S_{i-1}*P - t_i*C:
 * for each j only the smallest Y_i with i <= j matters.  Times are taken
 * relative to the first admission and the products held in 128 bits, so
 * nothing rounds and nothing overflows.  Returns the number of window ends
 * j at which some window breaks the bound; *worst gets the largest excess
 * in units (negative: the tightest window's slack).
 */
static uint64_t check_bound(const rec *r, size_t n, const ratectl_limit *l,
                            uint64_t *units, double *worst)
{
	__int128 P = l->period_ns, C = (__int128)l->count;
	__int128 b = (__int128)(l->burst ? l->burst : l->count);
	__int128 S = 0, ymin = 0, ex, wmax = 0;
	uint64_t bad = 0;
	size_t j;

	for (j = 0; j < n; j++) {
		__int128 t = r[j].start - r[0].start, y;
		uint64_t u = l->dim == RATECTL_TOKENS ? r[j].tokens : 1;

		y = S * P - t * C;              /* Y_j uses S_{j-1} */
		if (j == 0 || y < ymin)
			ymin = y;
		S += u;
		ex = S * P - t * C - ymin - b * P;
		if (j == 0 || ex > wmax)
			wmax = ex;
		if (ex > 0)
			bad++;
	}
	*units = (uint64_t)S;
	*worst = (double)wmax / (double)P;
	return bad;
}

/* The checker must be able to fail: an exact GCRA schedule meets the
 * bound with no slack, and one unit more anywhere breaks it. */
static void check_self_test(void)
{
	ratectl_limit l = bench_limit(RATECTL_REQUESTS, 200, BENCH_SEC, 20);
	rec r[120];
	uint64_t units, bad;
	double worst;
	int i;

	for (i = 0; i < 120; i++)   /* burst of 20 at 0, then one every 5 ms */
		r[i] = (rec){ i < 20 ? 0 : (int64_t)(i - 19) * 5 * BENCH_MS, 0, 1, 0 };
	bad = check_bound(r, 120, &l, &units, &worst);
	if (bad != 0 || worst != 0.0 || units != 120)
		bench_die("accuracy self-test: exact schedule: %llu violations, "
		          "worst %.2f", (unsigned long long)bad, worst);
	r[70].start -= 1;           /* one admission 1 ns early */
	bad = check_bound(r, 120, &l, &units, &worst);
	if (bad == 0 || worst <= 0.0)
		bench_die("accuracy self-test: an early admission went unnoticed");
}

static void report(const acc_case *ph, shared *sh, int64_t seconds)
{
	size_t n = sh->n, i;
	int64_t *late, elapsed;
	uint64_t wmin = UINT64_MAX, wmax = 0;
	unsigned k;
	char a[32], b[32];

	if (n == 0)
		bench_die("accuracy: %s: nothing was admitted", ph->name);
	qsort(sh->r, n, sizeof *sh->r, cmp_rec);
	elapsed = sh->deadline - sh->r[0].start;
	for (k = 0; k < ph->b.nlimits; k++) {
		const ratectl_limit *l = &ph->b.limits[k];
		uint64_t burst = l->burst ? l->burst : l->count, units, bad;
		double worst, bound, util;
		char what[64];
		bench_row row;

		bad = check_bound(sh->r, n, l, &units, &worst);
		bound = (double)burst + (double)elapsed * (double)l->count /
		        (double)l->period_ns;
		util = (double)units / bound;
		snprintf(what, sizeof what, "%s %llu/s burst %llu",
		         l->dim == RATECTL_TOKENS ? "tokens" : "requests",
		         (unsigned long long)l->count, (unsigned long long)burst);
		printf("   %-8s %-27s %9llu %10.1f %8.2f %10llu %-6s %7.2f%%", ph->name,
		       what, (unsigned long long)units, bound, worst,
		       (unsigned long long)bad, bench_verdict(bad == 0), util * 100);
		row = bench_row_begin("accuracy", ph->name);
		bench_row_str(&row, "limit", what);
		bench_row_int(&row, "processes", WORKERS);
		bench_row_int(&row, "seconds", seconds);
		bench_row_int(&row, "admitted_units", (long long)units);
		bench_row_num(&row, "bound_units", bound);
		bench_row_num(&row, "worst_window_excess_units", worst);
		bench_row_int(&row, "violations", (long long)bad);
		bench_row_str(&row, "violations_verdict", bench_verdict(bad == 0));
		bench_row_num(&row, "utilization", util);
		if ((int)k == ph->binding) {
			printf("  >= 99%% %s\n", bench_verdict(util >= 0.99));
			bench_row_num(&row, "target_utilization_at_least", 0.99);
			bench_row_str(&row, "utilization_verdict",
			              bench_verdict(util >= 0.99));
		} else {
			printf("  (not binding)\n");
		}
		bench_row_end(&row);
	}
	if (!(late = malloc(n * sizeof *late)))
		bench_die("out of memory");
	for (i = 0; i < n; i++)
		late[i] = sh->r[i].late;
	qsort(late, n, sizeof *late, cmp_i64);
	for (k = 0; k < WORKERS; k++) {
		wmin = sh->per_worker[k] < wmin ? sh->per_worker[k] : wmin;
		wmax = sh->per_worker[k] > wmax ? sh->per_worker[k] : wmax;
	}
	printf("   %-8s wake-up after the admission time: median %s, p99 %s; "
	       "per process %llu..%llu\n", "", bench_fmt_ns(a, sizeof a, (double)late[(n - 1) / 2]),
	       bench_fmt_ns(b, sizeof b, (double)late[(size_t)((double)(n - 1) * 0.99)]),
	       (unsigned long long)wmin, (unsigned long long)wmax);
	{
		bench_row row = bench_row_begin("accuracy", ph->name);

		bench_row_num(&row, "wake_late_median_ns", (double)late[(n - 1) / 2]);
		bench_row_num(&row, "wake_late_p99_ns",
		              (double)late[(size_t)((double)(n - 1) * 0.99)]);
		bench_row_int(&row, "per_process_min", (long long)wmin);
		bench_row_int(&row, "per_process_max", (long long)wmax);
		bench_row_end(&row);
	}
	free(late);
}

/* Room for far more than the requests limit allows: running out is
 * itself proof of over-admission. */
static size_t capacity(const ratectl_budget *b, int64_t seconds)
{
	size_t cap = 0;
	unsigned k;

	for (k = 0; k < b->nlimits; k++)
		if (b->limits[k].dim == RATECTL_REQUESTS)
			cap = 2 * (size_t)(b->limits[k].burst + b->limits[k].count *
			                   (uint64_t)seconds) + 1000;
	return cap;
}

/* Both budgets at once, WORKERS processes on each, from one common start
 * to one common deadline: one ledger, as on a host with two providers. */
static void run_cases(const acc_case *cs, int ncases, const char *dir,
                      int64_t seconds)
{
	pid_t pids[2 * WORKERS];
	shared *sh[2];
	size_t cap[2], size[2];
	int64_t until, deadline;
	ratectl *h;
	int c, i, n = 0;

	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	for (c = 0; c < ncases; c++) {
		cap[c] = capacity(&cs[c].b, seconds);
		size[c] = sizeof *sh[c] + cap[c] * sizeof(rec);
		sh[c] = bench_shared(size[c]);
		BENCH_CHECK(ratectl_budget_set(h, cs[c].name, &cs[c].b, RATECTL_CREATE));
	}
	ratectl_close(h);       /* the workers open the ledger themselves */
	fflush(stdout);
	for (c = 0; c < ncases; c++)
		for (i = 0; i < WORKERS; i++, n++) {
			if ((pids[n] = fork()) < 0)
				bench_die("fork: %s", strerror(errno));
			if (pids[n] == 0) {
				worker(sh[c], cap[c], dir, cs[c].name, (uint32_t)i);
				_exit(0);
			}
		}
	until = bench_now() + 20 * BENCH_SEC;
	for (c = 0; c < ncases; c++)
		while (__atomic_load_n(&sh[c]->ready, __ATOMIC_SEQ_CST) < WORKERS) {
			if (bench_now() > until)
				bench_die("accuracy: workers not ready after 20 s");
			usleep(1000);
		}
	deadline = ratectl_now(NULL) + 50 * BENCH_MS + seconds * BENCH_SEC;
	for (c = 0; c < ncases; c++) {
		sh[c]->deadline = deadline;
		__atomic_store_n(&sh[c]->start, deadline - seconds * BENCH_SEC,
		                 __ATOMIC_RELEASE);
	}
	bench_reap(pids, n, "accuracy");
	for (c = 0; c < ncases; c++) {
		report(&cs[c], sh[c], seconds);
		munmap(sh[c], size[c]);
	}
}

int main(void)
{
	int64_t seconds = bench_env_long("RATECTL_BENCH_SECONDS", 10, 1, 3600);
	const char *base = bench_base(0);
	char dir[PATH_MAX], ldir[PATH_MAX];
	acc_case ph[2] = {
		{ "acc-req", 0, RATECTL_BUDGET_INIT },
		{ "acc-tok", 0, RATECTL_BUDGET_INIT },
	};

	/* Requests bind: 200/s; tokens allow 100,000/s, 2.5x the most that
	 * 200 requests of at most 199 tokens can take. */
	ph[0].b.nlimits = 2;
	ph[0].b.limits[0] = bench_limit(RATECTL_REQUESTS, 200, BENCH_SEC, 20);
	ph[0].b.limits[1] = bench_limit(RATECTL_TOKENS, 100000, BENCH_SEC, 10000);
	/* Tokens bind: 20,000/s is about 200 requests of 100 tokens; requests
	 * allow 1,000/s. */
	ph[1].b.nlimits = 2;
	ph[1].b.limits[0] = bench_limit(RATECTL_TOKENS, 20000, BENCH_SEC, 2000);
	ph[1].b.limits[1] = bench_limit(RATECTL_REQUESTS, 1000, BENCH_SEC, 100);

	check_self_test();
	bench_tmpdir(dir, sizeof dir, base, "acc");
	bench_path(ldir, sizeof ldir, dir, "ledger");
	printf("\n4. Accuracy: %d processes in ratectl_acquire() on each of two "
	       "budgets at once, %lld s,\n   request costs 1..199 tokens, %s (%s); "
	       "bound = burst + rate * (deadline - first admission);\n   worst = "
	       "largest excess over the GCRA bound of any window, in units "
	       "(<= 0 holds)\n", WORKERS, (long long)seconds, bench_fs_name(base), base);
	printf("   %-8s %-27s %9s %10s %8s %10s %-6s %8s\n", "budget", "limit",
	       "admitted", "bound", "worst", "violations", "", "used");
	run_cases(ph, 2, ldir, seconds);
	bench_rmtree(dir);
	return 0;
}
