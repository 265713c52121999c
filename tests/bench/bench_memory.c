/*
 * bench_memory.c - section 5: what a budget costs and what a process
 * costs, in format 3 (no file per budget: a budget is its record in the
 * ledger, in-flight slots are counted there and owned by one ".h" holder
 * record per budget and process, and one `wake` file serves every budget).
 *
 * Three ledgers of N budgets each (2 limits): plain; tenants' (origin
 * "user-*", expire 1 h, weight 1, as a template makes them); capped (at
 * most 16 in flight).  For each: the ledger's bytes in use per budget
 * after budget_set, then two fresh processes one after the other open it
 * and admit once in every budget, then once more; the ledger is read
 * again after each (a capped budget keeps a holder record per process
 * that took a slot, at count 0 after the release), and after a
 * ratectl_reclaim() once both have exited.  Per process: descriptors,
 * mappings, VmRSS (anonymous, file, shared) and address space after the
 * open, after one admission, and after admitting in every budget.
 *
 * Last, one capped budget admitted once by each of 100 short-lived
 * processes: the holder records they leave, what is left after a process
 * fills the cap (its next try refused), and after one that fills it and
 * calls ratectl_reclaim() while its slots are held.
 *
 * Targets (issue 14): a process's descriptors and mappings after admitting
 * in all N budgets are those after its first admission, and its anonymous
 * memory grows by a page at most in all: what a process costs does not
 * depend on the number of budgets (the ledger's pages it touches are
 * shared memory: the ledger's, counted once on the host).
 *
 * Environment: RATECTL_BENCH_BUDGETS (default 1000), RATECTL_BENCH_TMPFS.
 */
#include <dirent.h>
#include <lmdb.h>
#include <sys/stat.h>

#include "bench.h"

#define CAP 16
#define SHORT_LIVED 100
#define ANON_SLACK_KIB 4        /* a page: malloc's own arenas may move */

typedef struct mem {
	long rss, anon, file, shmem, vsz;       /* kB, from /proc/self/status */
	long fds, maps;
} mem;

typedef struct proc_result {
	mem before, opened, one, after;
	int64_t first_ns;           /* all first admissions */
	int64_t again_ns;           /* all second admissions */
} proc_result;

typedef struct ledger_use {
	long long used;             /* bytes in pages in use (less the free list) */
	long entries;               /* records in the table */
} ledger_use;

enum { K_PLAIN, K_TENANT, K_CAPPED, K_COUNT };
static const char *const kind_label[K_COUNT] = { "plain", "tenant (user-*)", "cap 16" };
static const char *const kind_key[K_COUNT] = { "plain", "tenant", "capped" };

/* What the run found, in memory shared with the processes it forks. */
typedef struct result {
	proc_result proc[K_COUNT][2];
	ledger_use set[K_COUNT], after[K_COUNT][2], reclaimed[K_COUNT];
	int64_t set_ns[K_COUNT];
	ledger_use short_before, short_after, short_filled, short_reclaimed;
} result;

static long status_kb(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtol(p + strlen(key), NULL, 10) : -1;
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

static mem mem_now(void)
{
	char buf[8192];
	mem m = { 0, 0, 0, 0, 0, 0, 0 };
	struct dirent *e;
	FILE *f = fopen("/proc/self/status", "r");
	size_t n;
	DIR *d;

	if (!f)
		bench_die("/proc/self/status: %s", strerror(errno));
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	m.rss = status_kb(buf, "VmRSS:");
	m.anon = status_kb(buf, "RssAnon:");
	m.file = status_kb(buf, "RssFile:");
	m.shmem = status_kb(buf, "RssShmem:");
	m.vsz = status_kb(buf, "VmSize:");
	m.maps = count_lines("/proc/self/maps");
	if (!(d = opendir("/proc/self/fd")))
		bench_die("/proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			m.fds++;
	closedir(d);
	m.fds--;        /* the directory stream's own descriptor */
	return m;
}

static void budget_name(char *buf, size_t len, long i)
{
	snprintf(buf, len, "user-%05ld", i);
}

static void admit(ratectl *h, const char *name)
{
	ratectl_cost c = { .requests = 1, .tokens = 100 };
	ratectl_lease lease;

	BENCH_CHECK(ratectl_try(h, name, &c, &lease, NULL));
	BENCH_CHECK(ratectl_release(h, &lease, RATECTL_UNKNOWN));
}

static void admit_all(ratectl *h, long n)
{
	char name[32];
	long i;

	for (i = 0; i < n; i++) {
		budget_name(name, sizeof name, i);
		admit(h, name);
	}
}

/* A fresh process: open the ledger, admit once in the first budget, in
 * every budget, and in every budget again. */
static void user_process(proc_result *r, const char *dir, long n)
{
	char name[32];
	ratectl *h;
	int64_t t;

	r->before = mem_now();
	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	r->opened = mem_now();
	budget_name(name, sizeof name, 0);
	t = bench_now();
	admit(h, name);
	r->one = mem_now();
	admit_all(h, n);
	r->first_ns = bench_now() - t;  /* budget 0 twice: one admission more, n in all */
	r->after = mem_now();
	t = bench_now();
	admit_all(h, n);
	r->again_ns = bench_now() - t;
	ratectl_close(h);
}

/* Fork, run fn(arg) in the child, wait for it. */
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

struct args {
	const char *dir;
	long n;
	proc_result *proc;
	ledger_use *use;
};

static void user_child(void *arg)
{
	struct args *a = arg;

	user_process(a->proc, a->dir, a->n);
}

/* Pages LMDB uses (up to the last written, less the free list's, as
 * mdb_stat -f counts) and records, read through a read-only environment
 * in a process with no other handle on it. */
static void use_child(void *arg)
{
	struct args *a = arg;
	MDB_envinfo info;
	MDB_cursor *cur;
	MDB_stat st;
	MDB_env *env;
	MDB_txn *txn;
	MDB_val k, v;
	long long free_pages = 0;
	int rc;

	if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 4) != 0)
		bench_die("mdb_env_create");
	if ((rc = mdb_env_open(env, a->dir, MDB_RDONLY | MDB_NOTLS, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_cursor_open(txn, 0, &cur)) != 0)      /* 0: the free list */
		bench_die("%s: %s", a->dir, mdb_strerror(rc));
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		free_pages += (long long)*(const size_t *)v.mv_data;
	mdb_cursor_close(cur);
	mdb_env_info(env, &info);
	mdb_env_stat(env, &st);
	a->use->used = ((long long)info.me_last_pgno + 1 - free_pages) * st.ms_psize;
	a->use->entries = (long)st.ms_entries;
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static ledger_use use_of(const char *dir)
{
	ledger_use *u = bench_shared(sizeof *u);
	struct args a = { dir, 0, NULL, u };
	ledger_use r;

	in_child(use_child, &a, "memory: ledger use");
	r = *u;
	munmap(u, sizeof *u);
	return r;
}

static void reclaim_child(void *arg)
{
	struct args *a = arg;
	ratectl *h;

	BENCH_CHECK(ratectl_open(&h, a->dir, NULL));
	BENCH_CHECK(ratectl_reclaim(h, NULL, NULL));
	ratectl_close(h);
}

/* A process that admits once in budget 0 and exits. */
static void short_child(void *arg)
{
	struct args *a = arg;
	char name[32];
	ratectl *h;

	budget_name(name, sizeof name, 0);
	BENCH_CHECK(ratectl_open(&h, a->dir, NULL));
	admit(h, name);
	ratectl_close(h);
}

/* A process that takes every slot of budget 0 and one more (refused:
 * the admission that finds them run out takes back dead holders'). */
static void fill_child(void *arg)
{
	struct args *a = arg;
	ratectl_cost c = { .requests = 1, .tokens = 100 };
	ratectl_lease lease[CAP + 1];
	char name[32];
	ratectl *h;
	int i, rc;
	unsigned slots;

	budget_name(name, sizeof name, 0);
	BENCH_CHECK(ratectl_open(&h, a->dir, NULL));
	for (i = 0; i < CAP; i++)
		BENCH_CHECK(ratectl_try(h, name, &c, &lease[i], NULL));
	if ((rc = ratectl_try(h, name, &c, &lease[CAP], NULL)) != RATECTL_EINFLIGHT)
		bench_die("memory: slot %d of a cap of %d: %s, not RATECTL_EINFLIGHT",
		          CAP + 1, CAP, ratectl_strerror(rc));
	if (a->n == 2)          /* and a reclaim while the slots are held */
		BENCH_CHECK(ratectl_reclaim(h, &slots, NULL));
	for (i = 0; i < CAP; i++)
		BENCH_CHECK(ratectl_release(h, &lease[i], RATECTL_UNKNOWN));
	ratectl_close(h);
}

static ratectl_budget budget_of(int kind)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;

	/* The example budget: 500 requests/min, 200,000 tokens/min. */
	b.nlimits = 2;
	b.limits[0] = bench_limit(RATECTL_REQUESTS, 500, 60 * BENCH_SEC, 0);
	b.limits[1] = bench_limit(RATECTL_TOKENS, 200000, 60 * BENCH_SEC, 0);
	if (kind == K_TENANT) {
		b.expire_ns = 3600 * BENCH_SEC;
		b.weight = 1;
		snprintf(b.origin, sizeof b.origin, "user-*");
	} else if (kind == K_CAPPED) {
		b.max_inflight = CAP;
	}
	return b;
}

static void run_kind(result *res, int kind, const char *dir, long n)
{
	ratectl_budget b = budget_of(kind);
	struct args a = { dir, n, NULL, NULL };
	char name[32];
	ratectl *h;
	int64_t t;
	long i;
	int p;

	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	t = bench_now();
	for (i = 0; i < n; i++) {
		budget_name(name, sizeof name, i);
		BENCH_CHECK(ratectl_budget_set(h, name, &b, RATECTL_CREATE));
	}
	res->set_ns[kind] = bench_now() - t;
	ratectl_close(h);
	res->set[kind] = use_of(dir);
	for (p = 0; p < 2; p++) {
		a.proc = &res->proc[kind][p];
		in_child(user_child, &a, "memory: a process");
		res->after[kind][p] = use_of(dir);
	}
	in_child(reclaim_child, &a, "memory: reclaim");
	res->reclaimed[kind] = use_of(dir);
}

static void short_lived(result *res, const char *dir)
{
	ratectl_budget b = budget_of(K_CAPPED);
	struct args a = { dir, 1, NULL, NULL };
	char name[32];
	ratectl *h;
	int i;

	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	budget_name(name, sizeof name, 0);
	BENCH_CHECK(ratectl_budget_set(h, name, &b, RATECTL_CREATE));
	ratectl_close(h);
	res->short_before = use_of(dir);
	for (i = 0; i < SHORT_LIVED; i++)
		in_child(short_child, &a, "memory: a short-lived process");
	res->short_after = use_of(dir);
	in_child(fill_child, &a, "memory: filling the cap");
	res->short_filled = use_of(dir);
	a.n = 2;
	in_child(fill_child, &a, "memory: filling the cap, reclaim");
	res->short_reclaimed = use_of(dir);
}

/* ---- the table ------------------------------------------------------------- */

static const char *per(char *buf, size_t len, long long bytes, long n)
{
	return bench_fmt_bytes(buf, len, (double)bytes / (double)n);
}

static void print_ledger(const result *r, long n)
{
	char a[K_COUNT][32];
	int k;

#define ROW(label, expr) do {                                                 \
	for (k = 0; k < K_COUNT; k++)                                             \
		expr;                                                                 \
	printf("   %-44s %16s %16s %16s\n", label, a[0], a[1], a[2]);          \
} while (0)

	printf("   %-44s %16s %16s %16s\n", "a budget, in the ledger", kind_label[0],
	       kind_label[1], kind_label[2]);
	ROW("budget_set, each",
	    bench_fmt_ns(a[k], sizeof a[k], (double)r->set_ns[k] / (double)n));
	ROW("ledger in use after budget_set, per budget",
	    per(a[k], sizeof a[k], r->set[k].used, n));
	ROW("  records per budget",
	    snprintf(a[k], sizeof a[k], "%.2f", (double)r->set[k].entries / (double)n));
	ROW("+ after a process admitted in each, per budget",
	    per(a[k], sizeof a[k], r->after[k][0].used - r->set[k].used, n));
	ROW("+ after a second process, per budget",
	    per(a[k], sizeof a[k], r->after[k][1].used - r->after[k][0].used, n));
	ROW("  records per budget after both",
	    snprintf(a[k], sizeof a[k], "%.2f", (double)r->after[k][1].entries / (double)n));
	ROW("  after ratectl_reclaim, both exited",
	    snprintf(a[k], sizeof a[k], "%.2f", (double)r->reclaimed[k].entries / (double)n));
#undef ROW
	for (k = 0; k < K_COUNT; k++) {
		bench_row row = bench_row_begin("memory", kind_key[k]);

		bench_row_int(&row, "budgets", n);
		bench_row_num(&row, "budget_set_ns", (double)r->set_ns[k] / (double)n);
		bench_row_num(&row, "ledger_bytes_per_budget", (double)r->set[k].used / (double)n);
		bench_row_int(&row, "ledger_entries", r->set[k].entries);
		bench_row_num(&row, "after_process1_bytes_per_budget",
		              (double)(r->after[k][0].used - r->set[k].used) / (double)n);
		bench_row_num(&row, "after_process2_bytes_per_budget",
		              (double)(r->after[k][1].used - r->after[k][0].used) / (double)n);
		bench_row_int(&row, "entries_after_2_processes", r->after[k][1].entries);
		bench_row_int(&row, "entries_after_reclaim", r->reclaimed[k].entries);
		bench_row_end(&row);
	}
}

static void print_proc(const char *kind, const char *label, const proc_result *r, long n,
                       int *ok)
{
	char a[32], b[32], key[64];
	int met = r->after.fds == r->one.fds && r->after.maps == r->one.maps &&
	          r->after.anon - r->one.anon <= ANON_SLACK_KIB;
	bench_row row;

	*ok &= met;
	printf("   %-8s %-16s fds %ld -> %ld -> %ld, mappings %ld -> %ld -> %ld   %s\n",
	       kind, label, r->before.fds, r->one.fds, r->after.fds, r->before.maps,
	       r->one.maps, r->after.maps, bench_verdict(met));
	printf("   %-25s VmRSS +%ld KiB open, +%ld first admission, +%ld all %ld "
	       "(anon +%ld, file +%ld, shmem +%ld); address space +%ld KiB\n", "",
	       r->opened.rss - r->before.rss, r->one.rss - r->opened.rss,
	       r->after.rss - r->one.rss, n, r->after.anon - r->one.anon,
	       r->after.file - r->one.file, r->after.shmem - r->one.shmem,
	       r->after.vsz - r->before.vsz);
	printf("   %-25s first admission of a budget %s, later ones %s\n", "",
	       bench_fmt_ns(a, sizeof a, (double)r->first_ns / (double)(n + 1)),
	       bench_fmt_ns(b, sizeof b, (double)r->again_ns / (double)n));
	snprintf(key, sizeof key, "%s_%s", kind, label[0] == 'f' ? "process1" : "process2");
	row = bench_row_begin("memory", key);
	bench_row_int(&row, "budgets", n);
	bench_row_int(&row, "fds_before_open", r->before.fds);
	bench_row_int(&row, "fds_one", r->one.fds);
	bench_row_int(&row, "fds_all", r->after.fds);
	bench_row_int(&row, "maps_before_open", r->before.maps);
	bench_row_int(&row, "maps_one", r->one.maps);
	bench_row_int(&row, "maps_all", r->after.maps);
	bench_row_int(&row, "rss_before_kib", r->before.rss);
	bench_row_int(&row, "rss_open_kib", r->opened.rss);
	bench_row_int(&row, "rss_one_kib", r->one.rss);
	bench_row_int(&row, "rss_all_kib", r->after.rss);
	bench_row_int(&row, "anon_all_minus_one_kib", r->after.anon - r->one.anon);
	bench_row_int(&row, "file_all_minus_one_kib", r->after.file - r->one.file);
	bench_row_int(&row, "shmem_all_minus_one_kib", r->after.shmem - r->one.shmem);
	bench_row_int(&row, "vsz_delta_kib", r->after.vsz - r->before.vsz);
	bench_row_num(&row, "first_admission_ns", (double)r->first_ns / (double)(n + 1));
	bench_row_num(&row, "later_admission_ns", (double)r->again_ns / (double)n);
	bench_row_int(&row, "target_anon_growth_below_kib", ANON_SLACK_KIB);
	bench_row_str(&row, "verdict", bench_verdict(met));
	bench_row_end(&row);
}

int main(void)
{
	long n = bench_env_long("RATECTL_BENCH_BUDGETS", 1000, 1, 99999);
	const char *base = bench_base(0);
	char dir[PATH_MAX], ldir[PATH_MAX], x[32], y[32];
	result *res = bench_shared(sizeof *res);
	int k, ok = 1;

	bench_tmpdir(dir, sizeof dir, base, "mem");
	for (k = 0; k < K_COUNT; k++) {
		bench_path(ldir, sizeof ldir, dir, kind_key[k]);
		run_kind(res, k, ldir, n);
	}
	bench_path(ldir, sizeof ldir, dir, "short");
	short_lived(res, ldir);

	printf("\n5. Memory: %ld budgets (500 requests/min, 200,000 tokens/min) in each "
	       "of three ledgers, %s (%s);\n   two processes one after the other admit "
	       "once in every budget; no file per budget\n", n, bench_fs_name(base), base);
	print_ledger(res, n);
	printf("   a process: before open -> after one admission -> after admitting "
	       "in all %ld\n   (target: fds and mappings unchanged by the %ld, "
	       "anonymous memory at most +%d KiB)\n", n, n, ANON_SLACK_KIB);
	for (k = 0; k < K_COUNT; k++) {
		print_proc(kind_key[k], "first process", &res->proc[k][0], n, &ok);
		print_proc(kind_key[k], "a later process", &res->proc[k][1], n, &ok);
	}
	printf("   one cap-16 budget, %d short-lived processes admitting once each: "
	       "%ld records -> %ld (%s of ledger more);\n   after a process filled "
	       "the cap (a try refused): %ld records; after one filled it and called "
	       "ratectl_reclaim(): %ld (%s)\n", SHORT_LIVED, res->short_before.entries,
	       res->short_after.entries,
	       bench_fmt_bytes(x, sizeof x, (double)(res->short_after.used - res->short_before.used)),
	       res->short_filled.entries, res->short_reclaimed.entries,
	       bench_fmt_bytes(y, sizeof y, (double)res->short_reclaimed.used));
	{
		bench_row row = bench_row_begin("memory", "short_lived");

		bench_row_int(&row, "processes", SHORT_LIVED);
		bench_row_int(&row, "entries_before", res->short_before.entries);
		bench_row_int(&row, "entries_after", res->short_after.entries);
		bench_row_int(&row, "bytes_before", res->short_before.used);
		bench_row_int(&row, "bytes_after", res->short_after.used);
		bench_row_int(&row, "entries_after_cap_filled", res->short_filled.entries);
		bench_row_int(&row, "bytes_after_cap_filled", res->short_filled.used);
		bench_row_int(&row, "entries_after_reclaim_cap_full", res->short_reclaimed.entries);
		bench_row_end(&row);
	}
	bench_rmtree(dir);
	return 0;
}
