/*
 * bench.h - what the benchmark programs share: timing, percentiles,
 * temporary ledgers, the table's verdicts and the machine-readable rows.
 *
 * Every program prints its section of the table on stdout and appends one
 * JSON object per row to $RATECTL_BENCH_JSONL (when set); tests/bench/run.sh
 * gathers those into $B/bench/results.json.  A failing API call is a real
 * error: the program says what failed on stderr and exits 1.  A missed
 * target is not: it is printed as MISSED next to the figure.
 */
#ifndef RATECTL_BENCH_H
#define RATECTL_BENCH_H

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ratectl.h"

#define BENCH_SEC 1000000000LL
#define BENCH_MS 1000000LL

static inline void bench_die(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));

static inline void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("bench: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* A library call that must succeed: say which, with the library's detail. */
#define BENCH_CHECK(expr) do {                                                \
	int bench_rc_ = (expr);                                                   \
	if (bench_rc_ != 0)                                                       \
		bench_die("%s:%d: %s: %s (%s)", __FILE__, __LINE__, #expr,           \
		          ratectl_strerror(bench_rc_), ratectl_errmsg());            \
} while (0)

/* CLOCK_MONOTONIC through the vDSO: what every figure is timed with. */
static inline int64_t bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * BENCH_SEC + ts.tv_nsec;
}

static inline void bench_sleep_until(int64_t t)
{
	struct timespec ts = { (time_t)(t / BENCH_SEC), (long)(t % BENCH_SEC) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static inline long bench_env_long(const char *name, long def, long min, long max)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		bench_die("%s=%s: expected an integer in %ld..%ld", name, s, min, max);
	return v;
}

/* Shared, zeroed memory that forked workers write their results into. */
static inline void *bench_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bench_die("mmap %zu bytes: %s", size, strerror(errno));
	return p;
}

/* Wait for every forked worker; any that failed makes the run fail (it
 * printed its own reason). */
static inline void bench_reap(const pid_t *pids, int n, const char *what)
{
	int i, st, bad = 0;

	for (i = 0; i < n; i++) {
		while (waitpid(pids[i], &st, 0) < 0)
			if (errno != EINTR)
				bench_die("%s: waitpid: %s", what, strerror(errno));
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad++;
	}
	if (bad)
		bench_die("%s: %d of %d workers failed", what, bad, n);
}

/*
 * Keep this process on the CPU it is running on, until bench_unpin().  The
 * CPUs of a virtual machine can differ in speed (here by up to 1.6x, from
 * what shares them underneath); rows compared with each other must not be
 * measured on different ones.  Returns the CPU.  Forked workers inherit the
 * pin, so unpin before forking them.
 */
static inline int bench_pin(cpu_set_t *saved)
{
	cpu_set_t one;
	int cpu = sched_getcpu();

	if (sched_getaffinity(0, sizeof *saved, saved) != 0 || cpu < 0)
		bench_die("sched_getaffinity: %s", strerror(errno));
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof one, &one) != 0)
		bench_die("sched_setaffinity: %s", strerror(errno));
	return cpu;
}

static inline void bench_unpin(const cpu_set_t *saved)
{
	if (sched_setaffinity(0, sizeof *saved, saved) != 0)
		bench_die("sched_setaffinity: %s", strerror(errno));
}

/* ---- statistics --------------------------------------------------------- */

typedef struct bench_stats {
	double median;      /* ns */
	double p99;         /* ns */
	double mean;        /* ns */
	size_t n;
} bench_stats;

static inline int bench_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentiles of samples (sorted in place), each minus the
 * timer's own cost `bias`, never below 0. */
static inline bench_stats bench_stats_of(int64_t *s, size_t n, double bias)
{
	bench_stats st = { 0, 0, 0, n };
	double sum = 0;
	size_t i;

	if (n == 0)
		return st;
	qsort(s, n, sizeof *s, bench_cmp_i64);
	for (i = 0; i < n; i++)
		sum += (double)s[i];
	st.median = (double)s[(n - 1) / 2] - bias;
	st.p99 = (double)s[(size_t)((double)(n - 1) * 0.99)] - bias;
	st.mean = sum / (double)n - bias;
	if (st.median < 0)
		st.median = 0;
	if (st.p99 < 0)
		st.p99 = 0;
	if (st.mean < 0)
		st.mean = 0;
	return st;
}

/* The median cost of reading the clock twice back to back: what each
 * per-operation sample carries on top of the operation itself. */
static inline double bench_timer_cost(void)
{
	enum { N = 20001 };
	static int64_t s[N];
	int64_t a, b;
	size_t i;

	for (i = 0; i < N; i++) {
		a = bench_now();
		b = bench_now();
		s[i] = b - a;
	}
	qsort(s, N, sizeof *s, bench_cmp_i64);
	return (double)s[N / 2];
}

/*
 * One kind of operation to time.  Rows are measured together: each warms
 * up, then they take turns for `rounds` rounds, so drift in the machine's
 * speed hits them alike.  Every operation is timed on its own, so p99 is
 * a real per-operation figure; the timer's own cost is subtracted.
 */
typedef void (*bench_op_fn)(void *ctx);

typedef struct bench_variant {
	const char *key;            /* for the JSON row */
	const char *label;          /* for the table */
	bench_op_fn op;             /* dies on any failure */
	void *ctx;
	size_t ops;                 /* timed operations */
	bench_stats st;             /* result */
} bench_variant;

static inline void bench_measure(bench_variant *v, int nv, int rounds, double timer)
{
	int64_t **s;
	size_t *n, i;
	int r, j;

	if (nv <= 0)
		return;
	s = calloc((size_t)nv, sizeof *s);
	n = calloc((size_t)nv, sizeof *n);
	if (!s || !n)
		bench_die("out of memory");
	for (j = 0; j < nv; j++) {
		if (!(s[j] = malloc(v[j].ops * sizeof **s)))
			bench_die("out of memory");
		for (i = 0; i < v[j].ops / 10 + 100; i++)
			v[j].op(v[j].ctx);
	}
	for (r = 0; r < rounds; r++)
		for (j = 0; j < nv; j++) {
			size_t end = r == rounds - 1 ? v[j].ops : v[j].ops / (size_t)rounds * (size_t)(r + 1);

			for (i = n[j]; i < end; i++) {
				int64_t t0 = bench_now();

				v[j].op(v[j].ctx);
				s[j][i] = bench_now() - t0;
			}
			n[j] = end;
		}
	for (j = 0; j < nv; j++) {
		v[j].st = bench_stats_of(s[j], n[j], timer);
		free(s[j]);
	}
	free(s);
	free(n);
}

/* "0.43 us", "38.2 us", "1.21 ms": three significant figures. */
static inline const char *bench_fmt_ns(char *buf, size_t len, double ns)
{
	if (ns < 10e3)
		snprintf(buf, len, "%.2f us", ns / 1e3);
	else if (ns < 1e6)
		snprintf(buf, len, "%.1f us", ns / 1e3);
	else
		snprintf(buf, len, "%.2f ms", ns / 1e6);
	return buf;
}

/* "1.23 M/s", "456 k/s" */
static inline const char *bench_fmt_rate(char *buf, size_t len, double per_s)
{
	if (per_s >= 1e6)
		snprintf(buf, len, "%.2f M/s", per_s / 1e6);
	else if (per_s >= 1e3)
		snprintf(buf, len, "%.0f k/s", per_s / 1e3);
	else
		snprintf(buf, len, "%.0f /s", per_s);
	return buf;
}

static inline const char *bench_fmt_bytes(char *buf, size_t len, double b)
{
	if (b >= 1024.0 * 1024 * 1024)
		snprintf(buf, len, "%.2f GiB", b / (1024.0 * 1024 * 1024));
	else if (b >= 1024.0 * 1024)
		snprintf(buf, len, "%.1f MiB", b / (1024.0 * 1024));
	else if (b >= 1024.0)
		snprintf(buf, len, "%.1f KiB", b / 1024.0);
	else
		snprintf(buf, len, "%.0f B", b);
	return buf;
}

static inline const char *bench_verdict(int met)
{
	return met ? "ok" : "MISSED";
}

/* ---- temporary ledgers -------------------------------------------------- */

/* The filesystem a path lives on, by its magic number (statfs(2)). */
static inline const char *bench_fs_name(const char *path)
{
	struct statfs sf;

	if (statfs(path, &sf) != 0)
		return "?";
	switch ((unsigned long)sf.f_type) {
	case 0x01021994UL: return "tmpfs";
	case 0xEF53UL: return "ext4";
	case 0x58465342UL: return "xfs";
	case 0x9123683EUL: return "btrfs";
	case 0x794C7630UL: return "overlayfs";
	case 0x6969UL: return "nfs";
	default: return "other";
	}
}

/* dir/name into buf, or die: a truncated path would be someone else's. */
static inline void bench_path(char *buf, size_t len, const char *dir,
                              const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= len)
		bench_die("path too long: %s/%s", dir, name);
}

static inline int bench_rm_one(const char *p, const struct stat *st, int flag,
                               struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p) == 0 || errno == ENOENT ? 0 : -1;
}

/* The temporary directories this process made, so that a run that dies
 * (bench_die, exit) leaves none behind.  Only their maker removes them:
 * a forked worker that fails must not delete its parent's ledger. */
#define BENCH_MAX_DIRS 16
typedef struct bench_dirs {
	pid_t owner[BENCH_MAX_DIRS];
	char path[BENCH_MAX_DIRS][PATH_MAX];
	int atexit_set;
} bench_dirs;

static inline bench_dirs *bench_dirs_get(void)
{
	static bench_dirs d;

	return &d;
}

static inline void bench_rmtree(const char *dir)
{
	bench_dirs *d = bench_dirs_get();
	int i;

	if (nftw(dir, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		fprintf(stderr, "bench: cannot remove %s: %s\n", dir, strerror(errno));
	for (i = 0; i < BENCH_MAX_DIRS; i++)
		if (d->owner[i] && strcmp(d->path[i], dir) == 0)
			d->owner[i] = 0;
}

static inline void bench_rmtree_all(void)
{
	bench_dirs *d = bench_dirs_get();
	int i;

	for (i = 0; i < BENCH_MAX_DIRS; i++)
		if (d->owner[i] == getpid())
			bench_rmtree(d->path[i]);
}

/* A fresh directory base/ratectl-bench-<tag>-XXXXXX, in *out, removed at
 * exit if bench_rmtree() has not removed it by then. */
static inline void bench_tmpdir(char *out, size_t len, const char *base,
                                const char *tag)
{
	bench_dirs *d = bench_dirs_get();
	int i;

	if (snprintf(out, len, "%s/ratectl-bench-%s-XXXXXX", base, tag) >= (int)len)
		bench_die("path too long under %s", base);
	if (!mkdtemp(out))
		bench_die("cannot create a directory under %s: %s", base, strerror(errno));
	if (!d->atexit_set) {
		atexit(bench_rmtree_all);
		d->atexit_set = 1;
	}
	for (i = 0; i < BENCH_MAX_DIRS; i++)
		if (!d->owner[i] && strlen(out) < PATH_MAX) {
			d->owner[i] = getpid();
			strcpy(d->path[i], out);
			break;
		}
}

/* Where ledgers go: $RATECTL_BENCH_TMPFS (default /dev/shm) and, for the
 * disk rows, $RATECTL_BENCH_DISK (default /tmp). */
static inline const char *bench_base(int disk)
{
	const char *s = getenv(disk ? "RATECTL_BENCH_DISK" : "RATECTL_BENCH_TMPFS");

	if (s && *s)
		return s;
	if (!disk && access("/dev/shm", W_OK) == 0)
		return "/dev/shm";
	return "/tmp";
}

/* ---- machine-readable rows ---------------------------------------------- */

/*
 * One JSON object a line: {"section": ..., "row": ..., key: value, ...}.
 * Strings written here are the bench's own labels (no quotes or
 * backslashes in them), so they need no escaping beyond that check.
 */
typedef struct bench_row {
	FILE *f;
	int first;
} bench_row;

static inline void bench_row_str(bench_row *r, const char *k, const char *v)
{
	const char *p;

	if (!r->f)
		return;
	fprintf(r->f, "%s\"%s\": \"", r->first ? "" : ", ", k);
	for (p = v; *p; p++)
		fputc(*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ? '_' : *p, r->f);
	fputc('"', r->f);
	r->first = 0;
}

static inline bench_row bench_row_begin(const char *section, const char *row)
{
	const char *path = getenv("RATECTL_BENCH_JSONL");
	bench_row r = { NULL, 1 };

	if (path && *path && !(r.f = fopen(path, "a")))
		bench_die("cannot append to %s: %s", path, strerror(errno));
	if (r.f)
		fputc('{', r.f);
	bench_row_str(&r, "section", section);
	bench_row_str(&r, "row", row);
	return r;
}

static inline void bench_row_num(bench_row *r, const char *k, double v)
{
	if (!r->f)
		return;
	fprintf(r->f, "%s\"%s\": %.6g", r->first ? "" : ", ", k, v);
	r->first = 0;
}

static inline void bench_row_int(bench_row *r, const char *k, long long v)
{
	if (!r->f)
		return;
	fprintf(r->f, "%s\"%s\": %lld", r->first ? "" : ", ", k, v);
	r->first = 0;
}

static inline void bench_row_end(bench_row *r)
{
	if (!r->f)
		return;
	fputs("}\n", r->f);
	if (fclose(r->f) != 0)
		bench_die("writing the results: %s", strerror(errno));
	r->f = NULL;
}

/* ---- budgets ------------------------------------------------------------ */

/* Designated initializers: the public structs may grow fields. */
static inline ratectl_limit bench_limit(ratectl_dim dim, uint64_t count,
                                        int64_t period_ns, uint64_t burst)
{
	ratectl_limit l = { .dim = dim, .count = count, .period_ns = period_ns,
	                    .burst = burst };

	return l;
}

/* Limits nothing in a benchmark can reach (one unit a nanosecond, a
 * second's burst): every admission passes, so only the cost of deciding
 * is measured. */
static inline ratectl_budget bench_budget_huge(uint32_t max_inflight)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;

	b.nlimits = 2;
	b.limits[0] = bench_limit(RATECTL_REQUESTS, 1000000000, BENCH_SEC, 0);
	b.limits[1] = bench_limit(RATECTL_TOKENS, 1000000000, BENCH_SEC, 0);
	b.max_inflight = max_inflight;
	return b;
}

#endif
