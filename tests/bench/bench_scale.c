/*
 * bench_scale.c - section 11: what the number of budgets costs.  For 1,
 * 1,000 and 100,000 tenants' budgets in one tmpfs ledger (made from the
 * template "user-*", as lib/http makes them on first use: origin, expire
 * 1 h, weight 1): the time to create them, an admission on a budget drawn
 * among all of them, uniformly and by a Zipf law (s = 1: real tenants'
 * traffic is concentrated), next to the same admission in a ledger of one
 * such budget (taking turns), the process's descriptors, mappings and
 * resident memory before and after admitting once in every budget, the
 * ledger's pages in use per budget, and the time of `ratectl list` and
 * `ratectl metrics` on that ledger (bounded: sums per template and the top
 * 10), and of `ratectl metrics --all` on as many plain budgets (every
 * budget in full: its output grows with them).
 *
 * Format 3 keeps nothing per budget outside the ledger (no lease file,
 * one wake file for all): descriptors and mappings must not grow with the
 * budgets, and an admission's cost may only grow with the B-tree's depth.
 *
 * Each N is measured in a fresh process (forked after the budgets are
 * made, before anything else opens the ledger), as a worker that starts
 * using a host's budgets would; the pages in use are read by another,
 * through LMDB, read-only.
 *
 * Environment: RATECTL_BENCH_SCALE (the largest N, default 100000),
 * RATECTL_BENCH_OPS (timed admissions per row, default 200000),
 * RATECTL_BENCH_CLI (the ratectl command; default ../ratectl beside this
 * program's directory), RATECTL_BENCH_TMPFS.
 */
#include <dirent.h>
#include <libgen.h>
#include <math.h>

#include "bench.h"
#include "floor.h"

#define ROUNDS 20
#define NSIZES 3
#define CLI_RUNS 3              /* each command's time is the median of these */
#define EST_TOKENS 100
#define ZIPF_S 1.0              /* the skewed rows' exponent */
#define ZSEQ (1u << 20)         /* draws made before timing, read in turn */
#define TOP_PCT 1               /* "the top 1% of budgets get x%" */

/* Targets (issue 14). */
#define TARGET_ADMIT_RATIO 1.5  /* among N / one-budget ledger */
#define TARGET_CLI_NS (1 * BENCH_SEC)

typedef struct proc_snap {
	long fds, maps;
	long rss, anon, file, shmem;    /* kB */
} proc_snap;

/* What one N's measuring process found. */
typedef struct scale_result {
	proc_snap before, after;
	int64_t first_all_ns;       /* the first admission in every budget */
	bench_stats one, many, zipf;        /* admission: one budget, among N */
	bench_stats f_one, f_many, f_zipf;  /* the floor: one record, among N */
	double zipf_top_share;      /* of the draws, on the top TOP_PCT% */
	long zipf_distinct;         /* budgets the draws touch */
	/* From the read-only look at the ledger. */
	long psize, last_pgno, free_pages, entries;
	long rec_size;              /* a budget's record as stored */
} scale_result;

typedef struct cli_run {
	int64_t ns;
	long lines;
} cli_run;

typedef struct scale_row {
	unsigned n;
	int64_t create_ns;
	scale_result r;
	cli_run list, metrics, all;     /* all: metrics --all, plain budgets */
} scale_row;
/* ---- the process, from /proc --------------------------------------------- */

static long count_fds(void)
{
	struct dirent *e;
	long n = 0;
	DIR *d = opendir("/proc/self/fd");

	if (!d)
		bench_die("/proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;           /* the directory stream's own */
}

static long count_lines(const char *path)
{
	char buf[65536];
	long n = 0;
	size_t got, i;
	FILE *f = fopen(path, "r");

	if (!f)
		bench_die("%s: %s", path, strerror(errno));
	while ((got = fread(buf, 1, sizeof buf, f)) > 0)
		for (i = 0; i < got; i++)
			n += buf[i] == '\n';
	fclose(f);
	return n;
}

static long status_kb(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static proc_snap snap(void)
{
	char buf[8192];
	proc_snap s;
	size_t n;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		bench_die("/proc/self/status: %s", strerror(errno));
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	s.rss = status_kb(buf, "VmRSS:");
	s.anon = status_kb(buf, "RssAnon:");
	s.file = status_kb(buf, "RssFile:");
	s.shmem = status_kb(buf, "RssShmem:");
	/* fopen's stream is closed: neither count includes it. */
	s.maps = count_lines("/proc/self/maps");
	s.fds = count_fds();
	return s;
}

/* ---- budgets --------------------------------------------------------------- */

static char (*names)[16];

/* Tenants' names, as a template "user-*" makes them. */
static void names_make(unsigned n)
{
	unsigned i;

	if (!(names = malloc((size_t)n * sizeof *names)))
		bench_die("out of memory");
	for (i = 0; i < n; i++)
		snprintf(names[i], sizeof names[i], "user-%07u", i);
}

/* A map big enough that no run grows it (growing works, but it would be
 * timed): what the ledger uses per budget is printed, far below this. */
static size_t map_size_for(unsigned n)
{
	return ((size_t)16 << 20) + (size_t)n * 2048;
}

/* A tenant's budget as a template makes it (a requests and a tokens
 * limit, no cap, template defaults: expire 1 h, weight 1); plain: the
 * same limits, no origin, no expire, no weight. */
static ratectl_budget budget_of(int tenant)
{
	ratectl_budget b = bench_budget_huge(0);

	if (tenant) {
		b.expire_ns = 3600 * BENCH_SEC;
		b.weight = 1;
		snprintf(b.origin, sizeof b.origin, "user-*");
	}
	return b;
}

static int64_t create_budgets(const char *dir, unsigned n, int tenant)
{
	ratectl_options o = RATECTL_OPTIONS_INIT;
	ratectl_budget b = budget_of(tenant);
	ratectl *h;
	int64_t t0, t;
	unsigned i;

	o.map_size = map_size_for(n);
	BENCH_CHECK(ratectl_open(&h, dir, &o));
	t0 = bench_now();
	for (i = 0; i < n; i++)
		BENCH_CHECK(ratectl_budget_set(h, names[i], &b, RATECTL_CREATE));
	t = bench_now() - t0;
	ratectl_close(h);
	return t;
}

/* ---- which budget: uniform, or Zipf ----------------------------------------- */

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/*
 * ZSEQ draws of a budget index among n by a Zipf law of exponent s (rank
 * k drawn with probability proportional to 1/k^s), made before timing so
 * that a row pays one load per draw, as the uniform rows pay one xorshift.
 * Ranks go to budgets in random order: a hot tenant's name says nothing of
 * its traffic, so hot budgets are not neighbours in the B-tree.  Sets how
 * many draws fell on the top TOP_PCT% of ranks and how many budgets the
 * draws touch.
 */
static uint32_t *zipf_seq(unsigned n, double s, uint64_t seed, double *top_share,
                          long *distinct)
{
	double *cdf = malloc((size_t)n * sizeof *cdf), sum = 0;
	uint32_t *perm = malloc((size_t)n * sizeof *perm);
	uint32_t *seq = malloc((size_t)ZSEQ * sizeof *seq);
	unsigned char *seen = calloc(n, 1);
	unsigned i, top = n * TOP_PCT / 100 ? n * TOP_PCT / 100 : 1;
	long ntop = 0, nd = 0;

	if (!cdf || !perm || !seq || !seen)
		bench_die("out of memory");
	for (i = 0; i < n; i++) {
		sum += 1.0 / pow((double)(i + 1), s);
		cdf[i] = sum;
		perm[i] = i;
	}
	for (i = n; i > 1; i--) {       /* Fisher-Yates */
		unsigned j = (unsigned)(xorshift(&seed) % i);
		uint32_t t = perm[i - 1];

		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	for (i = 0; i < ZSEQ; i++) {
		/* u in (0, sum]: the first rank whose cdf reaches it. */
		double u = ((double)(xorshift(&seed) >> 11) + 1.0) / 9007199254740992.0 * sum;
		unsigned lo = 0, hi = n - 1;

		while (lo < hi) {
			unsigned mid = lo + (hi - lo) / 2;

			if (cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		ntop += lo < top;
		seq[i] = perm[lo];
		if (!seen[seq[i]]) {
			seen[seq[i]] = 1;
			nd++;
		}
	}
	*top_share = (double)ntop / ZSEQ;
	*distinct = nd;
	free(seen);
	free(perm);
	free(cdf);
	return seq;
}

/* ---- admission ------------------------------------------------------------- */

typedef struct pick_ctx {
	ratectl *h;
	unsigned n;                 /* budgets to draw from: names[0..n) */
	uint64_t x;                 /* xorshift state */
	const uint32_t *seq;        /* or the draws made beforehand */
	size_t pos;
} pick_ctx;

static void admit(ratectl *h, const char *name)
{
	ratectl_cost cost = { .requests = 1, .tokens = EST_TOKENS };
	ratectl_lease lease;

	BENCH_CHECK(ratectl_try(h, name, &cost, &lease, NULL));
	BENCH_CHECK(ratectl_release(h, &lease, RATECTL_UNKNOWN));
}

/* try + release on a budget drawn at random (the one-budget row draws
 * too, among 1, so the drawing costs the rows alike); or on the next of
 * the Zipf draws. */
static void pick_op(void *arg)
{
	pick_ctx *c = arg;

	if (c->seq)
		admit(c->h, names[c->seq[c->pos++ & (ZSEQ - 1)]]);
	else
		admit(c->h, names[xorshift(&c->x) % c->n]);
}

/* ---- the floor at scale ---------------------------------------------------- */

/* The floor of section 1 over N records of the size of the ledger's own
 * budget records (so that its B-tree has the depth the ledger's has): a
 * write transaction that finds one, drawn as the admissions draw, and
 * rewrites it (8 bytes changed), as an admission finds and rewrites its
 * budget's record. */
typedef struct floor_n {
	floor_env f;
	unsigned n;
	size_t vsize;
	uint64_t x;
	const uint32_t *seq;
	size_t pos;
} floor_n;

static void floor_n_open(floor_n *fn, const char *dir, unsigned n, size_t vsize,
                         uint64_t seed, const uint32_t *seq)
{
	unsigned char *val = calloc(1, vsize);
	MDB_val k, v = { vsize, val };
	MDB_txn *txn;
	unsigned i;

	if (!val)
		bench_die("out of memory");
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		bench_die("mkdir %s: %s", dir, strerror(errno));
	MDB_CHECK(mdb_env_create(&fn->f.env));
	MDB_CHECK(mdb_env_set_mapsize(fn->f.env, map_size_for(n)));
	MDB_CHECK(mdb_env_open(fn->f.env, dir, FLOOR_FLAGS, 0600));
	MDB_CHECK(mdb_txn_begin(fn->f.env, NULL, 0, &txn));
	MDB_CHECK(mdb_dbi_open(txn, NULL, 0, &fn->f.dbi));
	for (i = 0; i < n; i++) {
		k.mv_size = strlen(names[i]);
		k.mv_data = names[i];
		MDB_CHECK(mdb_put(txn, fn->f.dbi, &k, &v, 0));
	}
	MDB_CHECK(mdb_txn_commit(txn));
	free(val);
	fn->n = n;
	fn->vsize = vsize;
	fn->x = seed;
	fn->seq = seq;
	fn->pos = 0;
}

/* Up to 4 KiB: a budget record with 8 limits, an origin and tags' room. */
#define FLOOR_VALUE_MAX 4096

static void floor_n_op(void *arg)
{
	floor_n *fn = arg;
	unsigned char val[FLOOR_VALUE_MAX];
	MDB_val k, v;
	MDB_cursor *cur;
	MDB_txn *txn;
	uint64_t c;

	k.mv_data = names[fn->seq ? fn->seq[fn->pos++ & (ZSEQ - 1)]
	                          : xorshift(&fn->x) % fn->n];
	k.mv_size = strlen(k.mv_data);
	MDB_CHECK(mdb_txn_begin(fn->f.env, NULL, 0, &txn));
	MDB_CHECK(mdb_cursor_open(txn, fn->f.dbi, &cur));
	MDB_CHECK(mdb_cursor_get(cur, &k, &v, MDB_SET_KEY));
	memcpy(val, v.mv_data, fn->vsize);
	memcpy(&c, val, sizeof c);
	c++;
	memcpy(val, &c, sizeof c);
	v.mv_size = fn->vsize;
	v.mv_data = val;
	MDB_CHECK(mdb_cursor_put(cur, &k, &v, MDB_CURRENT));
	mdb_cursor_close(cur);
	MDB_CHECK(mdb_txn_commit(txn));
}

enum { V_ONE, V_MANY, V_ZIPF, V_FONE, V_FMANY, V_FZIPF, V_N };

static void measure(const char *one_dir, const char *dir, unsigned n, size_t ops,
                    double timer, scale_result *r)
{
	ratectl_options o = RATECTL_OPTIONS_INIT;
	pick_ctx one = { NULL, 1, 88172645463325252ULL, NULL, 0 };
	pick_ctx many = { NULL, n, 0x9E3779B97F4A7C15ULL, NULL, 0 }, zipf;
	char fdir[PATH_MAX];
	floor_n f_one, f_many, f_zipf;
	bench_variant v[V_N];
	uint32_t *seq;
	size_t vsize = (size_t)r->rec_size;
	int64_t t0;
	unsigned i;

	if (r->rec_size <= 0 || r->rec_size > FLOOR_VALUE_MAX)
		bench_die("scale: a budget record of %ld bytes", r->rec_size);
	seq = zipf_seq(n, ZIPF_S, 0x2545F4914F6CDD1DULL, &r->zipf_top_share,
	               &r->zipf_distinct);
	BENCH_CHECK(ratectl_open(&one.h, one_dir, NULL));
	o.map_size = map_size_for(n);
	BENCH_CHECK(ratectl_open(&many.h, dir, &o));
	zipf = (pick_ctx){ many.h, n, 0, seq, 0 };
	/* Whatever a process sets up at its first admission, set up. */
	admit(one.h, names[0]);
	admit(many.h, names[0]);
	r->before = snap();
	t0 = bench_now();
	for (i = 0; i < n; i++)
		admit(many.h, names[i]);
	r->first_all_ns = bench_now() - t0;
	r->after = snap();
	bench_path(fdir, sizeof fdir, dir, "floor1");
	floor_n_open(&f_one, fdir, 1, vsize, 88172645463325252ULL, NULL);
	bench_path(fdir, sizeof fdir, dir, "floorN");
	floor_n_open(&f_many, fdir, n, vsize, 0x9E3779B97F4A7C15ULL, NULL);
	f_zipf = f_many;        /* the same environment, drawn by Zipf */
	f_zipf.seq = seq;
	v[V_ONE] = (bench_variant){ "one", "one budget", pick_op, &one, ops, { 0, 0, 0, 0 } };
	v[V_MANY] = (bench_variant){ "many", "uniform among N", pick_op, &many, ops, { 0, 0, 0, 0 } };
	v[V_ZIPF] = (bench_variant){ "zipf", "Zipf among N", pick_op, &zipf, ops, { 0, 0, 0, 0 } };
	v[V_FONE] = (bench_variant){ "f_one", "floor, one", floor_n_op, &f_one, ops, { 0, 0, 0, 0 } };
	v[V_FMANY] = (bench_variant){ "f_many", "floor, uniform among N", floor_n_op, &f_many,
	                              ops, { 0, 0, 0, 0 } };
	v[V_FZIPF] = (bench_variant){ "f_zipf", "floor, Zipf among N", floor_n_op, &f_zipf,
	                              ops, { 0, 0, 0, 0 } };
	bench_measure(v, V_N, ROUNDS, timer);
	r->one = v[V_ONE].st;
	r->many = v[V_MANY].st;
	r->zipf = v[V_ZIPF].st;
	r->f_one = v[V_FONE].st;
	r->f_many = v[V_FMANY].st;
	r->f_zipf = v[V_FZIPF].st;
	mdb_env_close(f_many.f.env);
	mdb_env_close(f_one.f.env);
	ratectl_close(many.h);
	ratectl_close(one.h);
	free(seq);
}

/* Open dir's environment read-only, through LMDB (in a process with no
 * other handle on it). */
static MDB_env *ledger_peek(const char *dir, MDB_txn **txn)
{
	MDB_env *env;
	int rc;

	if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 4) != 0)
		bench_die("mdb_env_create");
	if ((rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0600)) != 0)
		bench_die("%s: mdb_env_open: %s", dir, mdb_strerror(rc));
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, txn)) != 0)
		bench_die("%s: mdb_txn_begin: %s", dir, mdb_strerror(rc));
	return env;
}

/* The size of names[0]'s record as stored (the ledger keeps budgets by
 * name in its one table): the floor's records are made as big. */
static void record_size(const char *dir, scale_result *r)
{
	MDB_txn *txn;
	MDB_env *env = ledger_peek(dir, &txn);
	MDB_val k = { strlen(names[0]), names[0] }, v;
	MDB_dbi dbi;
	int rc;

	if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0 ||
	    (rc = mdb_get(txn, dbi, &k, &v)) != 0)
		bench_die("%s: budget %s: %s", dir, names[0], mdb_strerror(rc));
	r->rec_size = (long)v.mv_size;
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* The ledger's pages in use: every page up to the last one written, less
 * the free list's (as mdb_stat -f counts them). */
static void ledger_pages(const char *dir, scale_result *r)
{
	MDB_txn *txn;
	MDB_env *env = ledger_peek(dir, &txn);
	MDB_cursor *cur;
	MDB_envinfo info;
	MDB_stat st;
	MDB_val k, v;
	long free_pages = 0;
	int rc;

	mdb_env_info(env, &info);
	mdb_env_stat(env, &st);
	if ((rc = mdb_cursor_open(txn, 0, &cur)) != 0)
		bench_die("%s: reading the free list: %s", dir, mdb_strerror(rc));
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		free_pages += (long)*(const size_t *)v.mv_data;
	mdb_cursor_close(cur);
	r->psize = st.ms_psize;
	r->last_pgno = (long)info.me_last_pgno;
	r->free_pages = free_pages;
	r->entries = (long)st.ms_entries;
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* Run fn in a fresh process, its result in *r. */
static void in_child(void (*fn)(void *), void *arg, const char *what)
{
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	bench_reap(&pid, 1, what);
}

struct measure_args {
	const char *one_dir, *dir;
	unsigned n;
	size_t ops;
	double timer;
	scale_result *r;            /* shared with the parent */
};

static void measure_child(void *arg)
{
	struct measure_args *a = arg;

	measure(a->one_dir, a->dir, a->n, a->ops, a->timer, a->r);
}

static void record_child(void *arg)
{
	struct measure_args *a = arg;

	record_size(a->dir, a->r);
}

static void pages_child(void *arg)
{
	struct measure_args *a = arg;

	ledger_pages(a->dir, a->r);
}

/* ---- the command ----------------------------------------------------------- */

/* `cli --ledger dir CMD [OPT]`, its output counted in lines; the median
 * time of CLI_RUNS runs, from fork to exit. */
static cli_run cli_time(const char *cli, const char *dir, const char *cmd, const char *opt)
{
	int64_t t[CLI_RUNS];
	cli_run out = { 0, 0 };
	int run;

	for (run = 0; run < CLI_RUNS; run++) {
		char buf[65536];
		int fds[2], st;
		long nl = 0;
		ssize_t got, i;
		int64_t t0;
		pid_t pid;

		if (pipe(fds) != 0)
			bench_die("pipe: %s", strerror(errno));
		fflush(stdout);
		t0 = bench_now();
		if ((pid = fork()) < 0)
			bench_die("fork: %s", strerror(errno));
		if (pid == 0) {
			dup2(fds[1], 1);
			close(fds[0]);
			close(fds[1]);
			execl(cli, cli, "--ledger", dir, cmd, opt, (char *)NULL);
			fprintf(stderr, "bench: error: exec %s: %s\n", cli, strerror(errno));
			_exit(127);
		}
		close(fds[1]);
		while ((got = read(fds[0], buf, sizeof buf)) != 0) {
			if (got < 0) {
				if (errno == EINTR)
					continue;
				bench_die("reading %s %s: %s", cli, cmd, strerror(errno));
			}
			for (i = 0; i < got; i++)
				nl += buf[i] == '\n';
		}
		close(fds[0]);
		while (waitpid(pid, &st, 0) < 0)
			if (errno != EINTR)
				bench_die("waitpid: %s", strerror(errno));
		t[run] = bench_now() - t0;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bench_die("%s --ledger %s %s %s failed (status %d)", cli, dir, cmd,
			          opt ? opt : "", st);
		out.lines = nl;
	}
	qsort(t, CLI_RUNS, sizeof *t, bench_cmp_i64);
	out.ns = t[CLI_RUNS / 2];
	return out;
}

static void cli_path(char *out, size_t len, const char *argv0)
{
	const char *env = getenv("RATECTL_BENCH_CLI");
	char self[PATH_MAX];

	if (env && *env) {
		snprintf(out, len, "%s", env);
	} else {
		if (!realpath(argv0, self))
			bench_die("%s: %s", argv0, strerror(errno));
		/* $B/bench/bench_scale -> $B/ratectl */
		snprintf(out, len, "%s/../ratectl", dirname(self));
	}
	if (access(out, X_OK) != 0)
		bench_die("no ratectl command at %s (build it, or set RATECTL_BENCH_CLI)", out);
}

/* ---- the table --------------------------------------------------------------- */

static double ratio(bench_stats a, bench_stats b)
{
	return a.median / b.median;
}

static void print_table(const scale_row *rows, int nrows, const char *fs, const char *base)
{
	char a[NSIZES][40], t[40];
	int i, many_ok = 1, zipf_ok = 1, const_ok = 1, list_ok = 1, metrics_ok = 1;
	const scale_row *big = &rows[nrows - 1];

#define LINE(label, fmt_expr, target, verdict) do {                           \
	for (i = 0; i < nrows; i++) {                                             \
		const scale_row *R = &rows[i];                                        \
		(void)R;                                                              \
		fmt_expr;                                                             \
	}                                                                         \
	printf("   %-36s", label);                                                \
	for (i = 0; i < nrows; i++)                                               \
		printf(" %15s", a[i]);                                                \
	printf("  %s %s\n", target, verdict);                                     \
} while (0)

	for (i = 0; i < nrows; i++) {
		const scale_result *r = &rows[i].r;

		if (rows[i].n > 1 && ratio(r->many, r->one) > TARGET_ADMIT_RATIO)
			many_ok = 0;
		if (rows[i].n > 1 && ratio(r->zipf, r->one) > TARGET_ADMIT_RATIO)
			zipf_ok = 0;
		if (r->after.fds != r->before.fds || r->after.maps != r->before.maps ||
		    r->after.fds != rows[0].r.after.fds || r->after.maps != rows[0].r.after.maps)
			const_ok = 0;
		if (rows[i].list.ns >= TARGET_CLI_NS)
			list_ok = 0;
		if (rows[i].metrics.ns >= TARGET_CLI_NS)
			metrics_ok = 0;
	}
	printf("\n11. Scale: N tenants' budgets (template \"user-*\": a requests and a "
	       "tokens limit, no cap,\n    expire 1 h, weight 1) in one ledger, %s (%s); "
	       "each N measured by a fresh\n    process; admissions take turns with a "
	       "ledger of one such budget\n", fs, base);
	printf("   %-36s", "budgets");
	for (i = 0; i < nrows; i++) {
		snprintf(t, sizeof t, "%u", rows[i].n);
		printf(" %15s", t);
	}
	printf("  target\n");
	LINE("create all (budget_set each)",
	     bench_fmt_ns(a[i], sizeof a[i], (double)R->create_ns), "", "");
	LINE("  per budget",
	     bench_fmt_ns(a[i], sizeof a[i], (double)R->create_ns / R->n), "", "");
	LINE("first admission in each, per budget",
	     bench_fmt_ns(a[i], sizeof a[i], (double)R->r.first_all_ns / R->n), "", "");
	LINE("try + release, one-budget ledger",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.one.median), "", "");
	LINE("try + release, uniform among N",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.many.median), "", "");
	LINE("  p99",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.many.p99), "", "");
	LINE("  / one-budget ledger",
	     snprintf(a[i], sizeof a[i], "%.2fx", ratio(R->r.many, R->r.one)),
	     "<= 1.5x", bench_verdict(many_ok));
	LINE("try + release, Zipf s=1 among N",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.zipf.median), "", "");
	LINE("  p99",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.zipf.p99), "", "");
	LINE("  / one-budget ledger",
	     snprintf(a[i], sizeof a[i], "%.2fx", ratio(R->r.zipf, R->r.one)),
	     "<= 1.5x", bench_verdict(zipf_ok));
	LINE("  draws on the top 1% of budgets",
	     snprintf(a[i], sizeof a[i], "%.0f%%", 100 * R->r.zipf_top_share), "", "");
	LINE("  budgets the draws touch",
	     snprintf(a[i], sizeof a[i], "%ld", R->r.zipf_distinct), "", "");
	LINE("floor: LMDB txn, one record",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.f_one.median), "", "");
	LINE("floor: uniform among N",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.f_many.median), "", "");
	LINE("  / one record",
	     snprintf(a[i], sizeof a[i], "%.2fx", ratio(R->r.f_many, R->r.f_one)), "", "");
	LINE("floor: Zipf among N",
	     bench_fmt_ns(a[i], sizeof a[i], R->r.f_zipf.median), "", "");
	LINE("  / one record",
	     snprintf(a[i], sizeof a[i], "%.2fx", ratio(R->r.f_zipf, R->r.f_one)), "", "");
	LINE("ratectl / floor, uniform among N",
	     snprintf(a[i], sizeof a[i], "%.2fx", ratio(R->r.many, R->r.f_many)), "", "");
	LINE("ratectl / floor, Zipf among N",
	     snprintf(a[i], sizeof a[i], "%.2fx", ratio(R->r.zipf, R->r.f_zipf)), "", "");
	LINE("descriptors, before -> after all",
	     snprintf(a[i], sizeof a[i], "%ld -> %ld", R->r.before.fds, R->r.after.fds),
	     "constant", bench_verdict(const_ok));
	LINE("mappings, before -> after all",
	     snprintf(a[i], sizeof a[i], "%ld -> %ld", R->r.before.maps, R->r.after.maps),
	     "constant", bench_verdict(const_ok));
	LINE("ledger pages in use",
	     bench_fmt_bytes(a[i], sizeof a[i], (double)(R->r.last_pgno + 1 - R->r.free_pages)
	                     * (double)R->r.psize), "", "");
	LINE("  per budget",
	     bench_fmt_bytes(a[i], sizeof a[i], (double)(R->r.last_pgno + 1 - R->r.free_pages)
	                     * (double)R->r.psize / R->n), "", "");
	LINE("RSS after all - before, per budget",
	     bench_fmt_bytes(a[i], sizeof a[i], (double)(R->r.after.rss - R->r.before.rss)
	                     * 1024.0 / R->n), "", "");
	LINE("  of which anonymous",
	     bench_fmt_bytes(a[i], sizeof a[i], (double)(R->r.after.anon - R->r.before.anon)
	                     * 1024.0 / R->n), "", "");
	LINE("ratectl list",
	     bench_fmt_ns(a[i], sizeof a[i], (double)R->list.ns), "< 1 s", bench_verdict(list_ok));
	LINE("  lines",
	     snprintf(a[i], sizeof a[i], "%ld", R->list.lines), "", "");
	LINE("ratectl metrics (template, top 10)",
	     bench_fmt_ns(a[i], sizeof a[i], (double)R->metrics.ns), "< 1 s",
	     bench_verdict(metrics_ok));
	LINE("  lines",
	     snprintf(a[i], sizeof a[i], "%ld", R->metrics.lines), "", "");
	LINE("metrics --all, N plain budgets",
	     bench_fmt_ns(a[i], sizeof a[i], (double)R->all.ns), "", "");
	LINE("  lines",
	     snprintf(a[i], sizeof a[i], "%ld", R->all.lines), "", "");
#undef LINE
	printf("   (Zipf: rank k drawn with weight 1/k, ranks given to budgets in random "
	       "order; the floor's records are %ld bytes, as the ledger's; RSS counts "
	       "the ledger's pages this process touched: shared, not its own; CLI times: "
	       "median of %d, from fork to exit, output to a pipe; metrics --all prints "
	       "every budget in full, as metrics does for budgets made by no template: "
	       "its output grows with the budgets, %ld lines at %u, and has no target)\n",
	       big->r.rec_size, CLI_RUNS, big->all.lines, big->n);

	for (i = 0; i < nrows; i++) {
		const scale_row *R = &rows[i];
		const scale_result *r = &R->r;
		double rm = ratio(r->many, r->one), rz = ratio(r->zipf, r->one);
		long used = (r->last_pgno + 1 - r->free_pages) * r->psize;
		bench_row row;

		snprintf(t, sizeof t, "n%u", R->n);
		row = bench_row_begin("scale", t);
		bench_row_int(&row, "budgets", R->n);
		bench_row_str(&row, "fs", fs);
		bench_row_str(&row, "origin", "user-*");
		bench_row_int(&row, "record_bytes", r->rec_size);
		bench_row_num(&row, "create_ns", (double)R->create_ns);
		bench_row_num(&row, "first_admission_each_ns", (double)r->first_all_ns / R->n);
		bench_row_num(&row, "one_median_ns", r->one.median);
		bench_row_num(&row, "median_ns", r->many.median);
		bench_row_num(&row, "p99_ns", r->many.p99);
		bench_row_num(&row, "ratio_to_one", rm);
		bench_row_num(&row, "zipf_s", ZIPF_S);
		bench_row_num(&row, "zipf_median_ns", r->zipf.median);
		bench_row_num(&row, "zipf_p99_ns", r->zipf.p99);
		bench_row_num(&row, "zipf_ratio_to_one", rz);
		bench_row_num(&row, "zipf_top1pct_share", r->zipf_top_share);
		bench_row_int(&row, "zipf_distinct_budgets", r->zipf_distinct);
		bench_row_num(&row, "floor_one_median_ns", r->f_one.median);
		bench_row_num(&row, "floor_many_median_ns", r->f_many.median);
		bench_row_num(&row, "floor_ratio_to_one", ratio(r->f_many, r->f_one));
		bench_row_num(&row, "floor_zipf_median_ns", r->f_zipf.median);
		bench_row_num(&row, "floor_zipf_ratio_to_one", ratio(r->f_zipf, r->f_one));
		bench_row_num(&row, "target_ratio_at_most", TARGET_ADMIT_RATIO);
		bench_row_str(&row, "verdict", bench_verdict(R->n == 1 || rm <= TARGET_ADMIT_RATIO));
		bench_row_str(&row, "zipf_verdict",
		              bench_verdict(R->n == 1 || rz <= TARGET_ADMIT_RATIO));
		bench_row_int(&row, "fds_before", r->before.fds);
		bench_row_int(&row, "fds_after", r->after.fds);
		bench_row_int(&row, "maps_before", r->before.maps);
		bench_row_int(&row, "maps_after", r->after.maps);
		bench_row_str(&row, "constant_verdict", bench_verdict(const_ok));
		bench_row_int(&row, "ledger_used_bytes", used);
		bench_row_num(&row, "ledger_bytes_per_budget", (double)used / R->n);
		bench_row_int(&row, "ledger_entries", r->entries);
		bench_row_num(&row, "rss_delta_bytes_per_budget",
		              (double)(r->after.rss - r->before.rss) * 1024.0 / R->n);
		bench_row_num(&row, "anon_delta_bytes_per_budget",
		              (double)(r->after.anon - r->before.anon) * 1024.0 / R->n);
		bench_row_num(&row, "list_ns", (double)R->list.ns);
		bench_row_num(&row, "metrics_ns", (double)R->metrics.ns);
		bench_row_num(&row, "metrics_all_plain_ns", (double)R->all.ns);
		bench_row_int(&row, "list_lines", R->list.lines);
		bench_row_int(&row, "metrics_lines", R->metrics.lines);
		bench_row_int(&row, "metrics_all_plain_lines", R->all.lines);
		bench_row_num(&row, "target_cli_below_ns", (double)TARGET_CLI_NS);
		bench_row_str(&row, "list_verdict", bench_verdict(R->list.ns < TARGET_CLI_NS));
		bench_row_str(&row, "metrics_verdict", bench_verdict(R->metrics.ns < TARGET_CLI_NS));
		bench_row_end(&row);
	}
}

int main(int argc, char **argv)
{
	unsigned sizes[NSIZES] = { 1, 1000, 100000 };
	size_t ops = (size_t)bench_env_long("RATECTL_BENCH_OPS", 200000, 1000, 100000000);
	const char *base = bench_base(0);
	char cli[PATH_MAX], dir[PATH_MAX], one_dir[PATH_MAX];
	scale_row rows[NSIZES];
	scale_result *shared;
	cpu_set_t cpus;
	double timer;
	int i;

	if (argc != 1)
		bench_die("usage: bench_scale");
	sizes[2] = (unsigned)bench_env_long("RATECTL_BENCH_SCALE", 100000, 1001, 9999999);
	cli_path(cli, sizeof cli, argv[0]);
	names_make(sizes[NSIZES - 1]);
	shared = bench_shared(sizeof *shared);
	bench_pin(&cpus);       /* the children too: rows compared run on one CPU */
	timer = bench_timer_cost();

	bench_tmpdir(one_dir, sizeof one_dir, base, "scale1");
	create_budgets(one_dir, 1, 1);
	for (i = 0; i < NSIZES; i++) {
		struct measure_args a = { one_dir, dir, sizes[i], ops, timer, shared };

		bench_tmpdir(dir, sizeof dir, base, "scale");
		memset(&rows[i], 0, sizeof rows[i]);
		rows[i].n = sizes[i];
		rows[i].create_ns = create_budgets(dir, sizes[i], 1);
		memset(shared, 0, sizeof *shared);
		in_child(record_child, &a, "scale: a record's size");
		in_child(measure_child, &a, "scale: admissions");
		in_child(pages_child, &a, "scale: ledger pages");
		rows[i].r = *shared;
		rows[i].list = cli_time(cli, dir, "list", NULL);
		rows[i].metrics = cli_time(cli, dir, "metrics", NULL);
		if (rows[i].list.lines < (long)sizes[i])
			bench_die("%s list on %u budgets printed %ld lines",
			          cli, sizes[i], rows[i].list.lines);
		bench_rmtree(dir);
		/* The same number of plain budgets, for metrics --all. */
		bench_tmpdir(dir, sizeof dir, base, "scaleplain");
		create_budgets(dir, sizes[i], 0);
		rows[i].all = cli_time(cli, dir, "metrics", "--all");
		if (rows[i].all.lines < (long)sizes[i])
			bench_die("%s metrics --all on %u budgets printed %ld lines",
			          cli, sizes[i], rows[i].all.lines);
		bench_rmtree(dir);
	}
	bench_rmtree(one_dir);
	bench_unpin(&cpus);
	print_table(rows, NSIZES, bench_fs_name(base), base);
	return 0;
}
