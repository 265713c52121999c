/*
 * bench_admit.c - what one admission costs, next to the floor it is built
 * on: a bare LMDB write transaction updating one 8-byte value in its own
 * environment, opened with the ledger's flags, on the same filesystem.
 *
 * Section 1: one process, per-operation latency (median, p99).
 * Section 2: aggregate admissions/s of 1..16 forked processes on one budget.
 *
 * Usage: bench_admit                    the two sections (run.sh runs it)
 *        bench_admit --profile WHAT [N] N untimed operations of WHAT (hot,
 *                                       capped, tagged or floor) in a fresh tmpfs
 *                                       ledger, to run under perf or callgrind
 * Environment: RATECTL_BENCH_OPS (timed operations per row, default
 * 200000), RATECTL_BENCH_TPUT_MS (duration of each throughput point,
 * default 1000), RATECTL_BENCH_TMPFS and RATECTL_BENCH_DISK (see bench.h).
 */
#include "bench.h"
#include "floor.h"

#define ROUNDS 20       /* rows take turns, so drift hits them alike */
#define MAX_PROCS 16
#define SLICES 5        /* per throughput point, odd: the median is one */
static const int nprocs[] = { 1, 2, 4, 8, 16 };

/* Estimated tokens of one request, and what it "really" used. */
#define EST_TOKENS 100
#define ACTUAL_TOKENS 60

/* ---- ratectl operations -------------------------------------------------- */

typedef struct adm_ctx {
	ratectl *h;
	const char *name;
	uint64_t actual;    /* RATECTL_UNKNOWN: release without a count */
	const char *tag;    /* the cost's tag, or NULL */
} adm_ctx;

static void adm_op(void *arg)
{
	adm_ctx *c = arg;
	ratectl_cost cost = { .requests = 1, .tokens = EST_TOKENS, .tag = c->tag };
	ratectl_lease lease;

	BENCH_CHECK(ratectl_try(c->h, c->name, &cost, &lease, NULL));
	BENCH_CHECK(ratectl_release(c->h, &lease, c->actual));
}

/* The event-loop reservation, admitted at once, next to ratectl_try(). */
static void reserve_op(void *arg)
{
	adm_ctx *c = arg;
	ratectl_cost cost = { .requests = 1, .tokens = EST_TOKENS };
	ratectl_reservation r = RATECTL_RESERVATION_INIT;

	BENCH_CHECK(ratectl_reserve(c->h, c->name, &cost, &r));
	BENCH_CHECK(ratectl_release(c->h, &r.lease, c->actual));
}

/* One cost in two budgets at once (a model's and its key's). */
static void many_op(void *arg)
{
	static const char *const names[] = { "hot", "hot2" };
	adm_ctx *c = arg;
	ratectl_cost cost = { .requests = 1, .tokens = EST_TOKENS };
	ratectl_lease lease[2];

	BENCH_CHECK(ratectl_try_many(c->h, names, 2, &cost, lease, NULL));
	BENCH_CHECK(ratectl_release(c->h, &lease[0], c->actual));
	BENCH_CHECK(ratectl_release(c->h, &lease[1], c->actual));
}

/* A ledger with the budgets the rows use: "hot" and "hot2" (a requests
 * and a tokens limit, no cap) and "capped" (the same, at most CAP in
 * flight). */
#define CAP 16
static ratectl *ledger_open(const char *dir)
{
	ratectl_budget hot = bench_budget_huge(0), capped = bench_budget_huge(CAP);
	ratectl *h;

	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	BENCH_CHECK(ratectl_budget_set(h, "hot", &hot, 0));
	BENCH_CHECK(ratectl_budget_set(h, "hot2", &hot, 0));
	BENCH_CHECK(ratectl_budget_set(h, "capped", &capped, 0));
	return h;
}

/* ---- section 1: latency ------------------------------------------------- */

/* The rows, and which floor each is compared with: one transaction, or
 * two for a release that writes too (a slot freed, a charge corrected). */
enum { V_FLOOR, V_FLOOR2, V_HOT, V_ACTUAL, V_CAPPED, V_TAGGED, V_RESERVE,
       V_MANY2, V_COUNT };
static const int v_ref[V_COUNT] = { V_FLOOR, V_FLOOR, V_FLOOR, V_FLOOR2,
                                    V_FLOOR2, V_FLOOR, V_FLOOR, V_FLOOR };
/* Targets: the hot path under 2x one transaction; a capped budget
 * released with its actual count within 2x of two (issue 14). */
static double v_target(int j)
{
	return j == V_HOT ? 2.0 : j == V_CAPPED ? 2.0 : 0;
}

static void latency_fs(const char *base, int disk, size_t ops, double timer)
{
	char dir[PATH_MAX], ldir[PATH_MAX], fdir[PATH_MAX];
	char m[32], p[32];
	const char *fs = bench_fs_name(base);
	floor_env fl;
	ratectl *h;
	adm_ctx hot, act, cap, tag;
	bench_variant v[V_COUNT];
	int j;

	bench_tmpdir(dir, sizeof dir, base, disk ? "disk" : "tmpfs");
	bench_path(ldir, sizeof ldir, dir, "ledger");
	bench_path(fdir, sizeof fdir, dir, "floor");
	h = ledger_open(ldir);
	floor_open(&fl, fdir);
	hot = (adm_ctx){ h, "hot", RATECTL_UNKNOWN, NULL };
	act = (adm_ctx){ h, "hot", ACTUAL_TOKENS, NULL };
	cap = (adm_ctx){ h, "capped", ACTUAL_TOKENS, NULL };
	tag = (adm_ctx){ h, "hot", RATECTL_UNKNOWN, "route:/v1/chat" };
	v[V_FLOOR] = (bench_variant){ "floor", "floor: LMDB write txn, one 8-byte value",
	                              floor_op, &fl, ops, { 0, 0, 0, 0 } };
	v[V_FLOOR2] = (bench_variant){ "floor2", "floor x2: two such transactions",
	                               floor2_op, &fl, ops, { 0, 0, 0, 0 } };
	v[V_HOT] = (bench_variant){ "hot", "try + release, 2 limits, no cap",
	                            adm_op, &hot, ops, { 0, 0, 0, 0 } };
	v[V_ACTUAL] = (bench_variant){ "actual", "try + release(actual), no cap",
	                               adm_op, &act, ops, { 0, 0, 0, 0 } };
	v[V_CAPPED] = (bench_variant){ "capped", "try + release(actual), cap 16",
	                               adm_op, &cap, ops, { 0, 0, 0, 0 } };
	v[V_TAGGED] = (bench_variant){ "tagged", "try + release, no cap, cost.tag set",
	                               adm_op, &tag, ops, { 0, 0, 0, 0 } };
	v[V_RESERVE] = (bench_variant){ "reserve", "reserve (event loop) + release, at once",
	                                reserve_op, &hot, ops, { 0, 0, 0, 0 } };
	v[V_MANY2] = (bench_variant){ "many2", "try_many + 2 releases, 2 budgets",
	                              many_op, &hot, ops, { 0, 0, 0, 0 } };
	bench_measure(v, V_COUNT, ROUNDS, timer);

	printf("   %s (%s)\n", fs, base);
	for (j = 0; j < V_COUNT; j++) {
		double ratio = v[j].st.median / v[V_FLOOR].st.median;
		double rref = v[j].st.median / v[v_ref[j]].st.median;
		double target = v_target(j);
		bench_row row = bench_row_begin("admission", v[j].key);

		printf("     %-42s %10s %10s %7.2fx", v[j].label,
		       bench_fmt_ns(m, sizeof m, v[j].st.median),
		       bench_fmt_ns(p, sizeof p, v[j].st.p99), ratio);
		if (v_ref[j] == V_FLOOR2)
			printf(" %7.2fx", rref);
		else
			printf(" %8s", "");
		bench_row_str(&row, "fs", fs);
		bench_row_str(&row, "dir", base);
		bench_row_num(&row, "median_ns", v[j].st.median);
		bench_row_num(&row, "p99_ns", v[j].st.p99);
		bench_row_num(&row, "mean_ns", v[j].st.mean);
		bench_row_int(&row, "ops", (long long)v[j].st.n);
		bench_row_num(&row, "ratio_to_floor", ratio);
		if (v_ref[j] == V_FLOOR2)
			bench_row_num(&row, "ratio_to_floor2", rref);
		if (j == V_TAGGED) {
			/* What a tag adds, against the same admission untagged. */
			double added = v[j].st.median - v[V_HOT].st.median;

			printf("   tag adds %s", bench_fmt_ns(m, sizeof m, added));
			bench_row_num(&row, "added_to_hot_ns", added);
		}
		if (target > 0) {
			printf("   <= %gx %s", target, bench_verdict(rref <= target));
			bench_row_num(&row, v_ref[j] == V_FLOOR2 ? "target_ratio_to_floor2_at_most"
			                                         : "target_ratio_at_most", target);
			bench_row_str(&row, "verdict", bench_verdict(rref <= target));
		}
		printf("\n");
		bench_row_end(&row);
	}
	ratectl_close(h);
	mdb_env_close(fl.env);
	bench_rmtree(dir);
}

/* ---- section 2: throughput ---------------------------------------------- */

typedef struct tput_shared {
	int ready;
	int64_t start;              /* 0 until every worker is ready */
	int64_t end;
	uint64_t count[MAX_PROCS];
} tput_shared;

/* One forked worker: open its own handle, wait for the common start, then
 * admit in a loop until the common end. */
static void tput_worker(tput_shared *sh, int idx, const char *dir, int use_floor)
{
	adm_ctx c = { NULL, "hot", RATECTL_UNKNOWN, NULL };
	floor_env fl;
	uint64_t n = 0;
	int64_t start, end;
	int i;

	if (use_floor)
		floor_open(&fl, dir);
	else
		BENCH_CHECK(ratectl_open(&c.h, dir, NULL));
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while ((start = __atomic_load_n(&sh->start, __ATOMIC_ACQUIRE)) == 0)
		usleep(200);
	end = sh->end;
	bench_sleep_until(start);
	/* Read the clock every 16 operations: its cost stays out of the loop. */
	while (bench_now() < end) {
		for (i = 0; i < 16; i++) {
			if (use_floor)
				floor_op(&fl);
			else
				adm_op(&c);
		}
		n += 16;
	}
	sh->count[idx] = n;
	if (use_floor)
		mdb_env_close(fl.env);
	else
		ratectl_close(c.h);
}

static double tput_run(const char *dir, int procs, int use_floor, int64_t dur)
{
	tput_shared *sh = bench_shared(sizeof *sh);
	pid_t pids[MAX_PROCS];
	int64_t deadline = bench_now() + 20 * BENCH_SEC;
	uint64_t total = 0;
	int i;

	fflush(stdout);
	for (i = 0; i < procs; i++) {
		if ((pids[i] = fork()) < 0)
			bench_die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			tput_worker(sh, i, dir, use_floor);
			_exit(0);
		}
	}
	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < procs) {
		if (bench_now() > deadline)
			bench_die("throughput: workers not ready after 20 s");
		usleep(1000);
	}
	sh->end = bench_now() + 20 * BENCH_MS + dur;
	__atomic_store_n(&sh->start, sh->end - dur, __ATOMIC_RELEASE);
	bench_reap(pids, procs, "throughput");
	for (i = 0; i < procs; i++)
		total += sh->count[i];
	munmap(sh, sizeof *sh);
	return (double)total * BENCH_SEC / (double)dur;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* "1.23 M/s (0.98-1.40)": the median slice and the range of all; sorts v. */
static const char *fmt_slices(char *buf, size_t len, double *v)
{
	char m[32];

	qsort(v, SLICES, sizeof *v, cmp_double);
	snprintf(buf, len, "%s (%.2f-%.2f)", bench_fmt_rate(m, sizeof m, v[SLICES / 2]),
	         v[0] / 1e6, v[SLICES - 1] / 1e6);
	return buf;
}

/* Each point: SLICES slices of dur/SLICES, ratectl and the floor taking
 * turns, and the median slice of each: contention on few CPUs makes single
 * slices swing (a preempted lock holder stalls everyone). */
static void throughput(const char *base, int64_t dur)
{
	char dir[PATH_MAX], ldir[PATH_MAX], fdir[PATH_MAX];
	char a[64], b[64], key[32];
	double r[SLICES], f[SLICES], rm, fm;
	ratectl *h;
	size_t i;
	int k;

	bench_tmpdir(dir, sizeof dir, base, "tput");
	bench_path(ldir, sizeof ldir, dir, "ledger");
	bench_path(fdir, sizeof fdir, dir, "floor");
	/* The budget is made here; the workers open the ledger themselves,
	 * as independent processes would. */
	h = ledger_open(ldir);
	ratectl_close(h);
	printf("\n2. Aggregate admissions/s on one budget: forked workers, each "
	       "its own handle, try + release\n   in a loop; median of %d slices "
	       "of %.2f s (and their range, in M/s), taking\n   turns with the "
	       "floor; %s (%s)\n", SLICES,
	       (double)dur / SLICES / BENCH_SEC, bench_fs_name(base), base);
	printf("   %5s %24s %24s %14s\n", "procs", "ratectl", "floor", "ratectl/floor");
	for (i = 0; i < sizeof nprocs / sizeof nprocs[0]; i++) {
		bench_row row = bench_row_begin("throughput", "try+release");

		for (k = 0; k < SLICES; k++) {
			r[k] = tput_run(ldir, nprocs[i], 0, dur / SLICES);
			f[k] = tput_run(fdir, nprocs[i], 1, dur / SLICES);
		}
		for (k = 0; k < SLICES; k++) {
			snprintf(key, sizeof key, "ratectl_slice%d_per_s", k);
			bench_row_num(&row, key, r[k]);
			snprintf(key, sizeof key, "floor_slice%d_per_s", k);
			bench_row_num(&row, key, f[k]);
		}
		fmt_slices(a, sizeof a, r);     /* sorts r and f */
		fmt_slices(b, sizeof b, f);
		rm = r[SLICES / 2];
		fm = f[SLICES / 2];
		printf("   %5d %24s %24s %13.2fx\n", nprocs[i], a, b, rm / fm);
		bench_row_int(&row, "procs", nprocs[i]);
		bench_row_str(&row, "fs", bench_fs_name(base));
		bench_row_num(&row, "ratectl_per_s", rm);
		bench_row_num(&row, "floor_per_s", fm);
		bench_row_num(&row, "ratio_to_floor", rm / fm);
		bench_row_end(&row);
	}
	bench_rmtree(dir);
}

/* ---- profiling mode ----------------------------------------------------- */

static int profile(const char *what, long n)
{
	char dir[PATH_MAX], ldir[PATH_MAX], fdir[PATH_MAX];
	floor_env fl;
	ratectl *h;
	adm_ctx c;
	long i;

	bench_tmpdir(dir, sizeof dir, bench_base(0), "prof");
	bench_path(ldir, sizeof ldir, dir, "ledger");
	bench_path(fdir, sizeof fdir, dir, "floor");
	h = ledger_open(ldir);
	floor_open(&fl, fdir);
	c = (adm_ctx){ h, "hot", RATECTL_UNKNOWN, NULL };
	if (strcmp(what, "capped") == 0)
		c = (adm_ctx){ h, "capped", ACTUAL_TOKENS, NULL };
	else if (strcmp(what, "tagged") == 0)
		c = (adm_ctx){ h, "hot", RATECTL_UNKNOWN, "route:/v1/chat" };
	else if (strcmp(what, "hot") != 0 && strcmp(what, "floor") != 0)
		bench_die("--profile: expected hot, capped, tagged or floor, not %s", what);
	for (i = 0; i < n; i++) {
		if (strcmp(what, "floor") == 0)
			floor_op(&fl);
		else
			adm_op(&c);
	}
	ratectl_close(h);
	mdb_env_close(fl.env);
	bench_rmtree(dir);
	return 0;
}

int main(int argc, char **argv)
{
	size_t ops = (size_t)bench_env_long("RATECTL_BENCH_OPS", 200000, 1000, 100000000);
	int64_t dur = bench_env_long("RATECTL_BENCH_TPUT_MS", 1000, 10, 60000) * BENCH_MS;
	cpu_set_t cpus;
	double timer;
	int cpu;

	if (argc >= 3 && strcmp(argv[1], "--profile") == 0)
		return profile(argv[2], argc > 3 ? atol(argv[3]) : 1000000);
	if (argc != 1)
		bench_die("usage: bench_admit [--profile hot|capped|tagged|floor [N]]");

	cpu = bench_pin(&cpus);
	timer = bench_timer_cost();
	printf("1. One admission in one process: %zu timed operations per row after "
	       "%zu warm-up,\n   rows interleaved in %d rounds, on CPU %d; "
	       "clock_gettime around each operation,\n   its own cost (%.0f ns) "
	       "subtracted\n", ops, ops / 10 + 100, ROUNDS, cpu, timer);
	printf("     %-42s %10s %10s %8s %8s\n", "", "median", "p99", "/floor", "/floor2");
	{
		bench_row row = bench_row_begin("admission", "timer");

		bench_row_num(&row, "timer_ns", timer);
		bench_row_end(&row);
	}
	latency_fs(bench_base(0), 0, ops, timer);
	latency_fs(bench_base(1), 1, ops, timer);
	bench_unpin(&cpus);     /* the workers go where the scheduler puts them */
	throughput(bench_base(0), dur);
	return 0;
}
