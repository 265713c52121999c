/*
 * bench_memory.c - what 1,000 budgets cost: on the ledger's filesystem
 * (data.mdb, lock.mdb, the lease files) and in each process that uses
 * them (resident memory, address space, descriptors), plus the time of a
 * budget's first admission in a process, which opens its lease file.
 *
 * One process creates the budgets; then two fresh processes each open the
 * ledger and admit once in every budget: the first creates the lease
 * files, the second finds them (what every later process pays).  Memory
 * figures come from /proc/self/status before and after.
 *
 * Environment: RATECTL_BENCH_BUDGETS (default 1000), RATECTL_BENCH_TMPFS.
 */
#include <dirent.h>
#include <lmdb.h>
#include <sys/stat.h>

#include "bench.h"

typedef struct mem {
	long rss, anon, file, shmem, vsz;       /* kB, from /proc/self/status */
	long fds;
} mem;

typedef struct proc_result {
	mem before, opened, after;
	int64_t first_ns;           /* all first admissions */
	int64_t again_ns;           /* all second admissions */
} proc_result;

static long status_kb(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static mem mem_now(void)
{
	char buf[8192];
	mem m = { 0, 0, 0, 0, 0, 0 };
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
	snprintf(buf, len, "mem-%05ld", i);
}

static void admit_all(ratectl *h, long n)
{
	ratectl_cost c = { .requests = 1, .tokens = 100 };
	ratectl_lease lease;
	char name[32];
	long i;

	for (i = 0; i < n; i++) {
		budget_name(name, sizeof name, i);
		BENCH_CHECK(ratectl_try(h, name, &c, &lease, NULL));
		BENCH_CHECK(ratectl_release(h, &lease, RATECTL_UNKNOWN));
	}
}

/* A fresh process: open the ledger, admit once in every budget, again. */
static void user_process(proc_result *r, const char *dir, long n)
{
	ratectl *h;
	int64_t t;

	r->before = mem_now();
	BENCH_CHECK(ratectl_open(&h, dir, NULL));
	r->opened = mem_now();
	t = bench_now();
	admit_all(h, n);
	r->first_ns = bench_now() - t;
	r->after = mem_now();
	t = bench_now();
	admit_all(h, n);
	r->again_ns = bench_now() - t;
	ratectl_close(h);
}

static void run_user(proc_result *r, const char *dir, long n)
{
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		user_process(r, dir, n);
		_exit(0);
	}
	bench_reap(&pid, 1, "memory");
}

typedef struct files {
	long long size, alloc;      /* bytes: apparent, allocated */
	long count;
} files;

static files file_of(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;
	files f = { 0, 0, 0 };

	bench_path(p, sizeof p, dir, name);
	if (stat(p, &st) == 0)
		f = (files){ st.st_size, (long long)st.st_blocks * 512, 1 };
	return f;
}

static files leases_of(const char *dir)
{
	char p[PATH_MAX];
	files f = { 0, 0, 0 }, one;
	struct dirent *e;
	DIR *d;

	bench_path(p, sizeof p, dir, "leases");
	if (!(d = opendir(p)))
		bench_die("%s: %s", p, strerror(errno));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		one = file_of(p, e->d_name);
		f.size += one.size;
		f.alloc += one.alloc;
		f.count += one.count;
	}
	closedir(d);
	return f;
}

/* Pages LMDB actually uses, read through a read-only environment (no
 * other handle on it is open in this process by then). */
static long long lmdb_used(const char *dir)
{
	MDB_envinfo info;
	MDB_stat st;
	MDB_env *env;
	long long used = -1;

	if (mdb_env_create(&env) != 0)
		return -1;
	mdb_env_set_maxdbs(env, 4);
	if (mdb_env_open(env, dir, MDB_RDONLY, 0600) == 0 &&
	    mdb_env_info(env, &info) == 0 && mdb_env_stat(env, &st) == 0)
		used = ((long long)info.me_last_pgno + 1) * st.ms_psize;
	mdb_env_close(env);
	return used;
}

static void print_proc(const char *label, const proc_result *r, long n)
{
	char a[32], b[32];
	bench_row row = bench_row_begin("memory", label);

	printf("   %-18s VmRSS %ld KiB before open, +%ld KiB open, +%ld KiB after "
	       "%ld admissions\n", label, r->before.rss, r->opened.rss - r->before.rss,
	       r->after.rss - r->opened.rss, n);
	printf("   %-18s   of which anon +%ld, file +%ld, shmem +%ld KiB; address "
	       "space +%ld MiB; fds +%ld\n", "",
	       r->after.anon - r->before.anon, r->after.file - r->before.file,
	       r->after.shmem - r->before.shmem,
	       (r->after.vsz - r->before.vsz) / 1024, r->after.fds - r->before.fds);
	printf("   %-18s   first admission of a budget %s, later ones %s\n", "",
	       bench_fmt_ns(a, sizeof a, (double)r->first_ns / (double)n),
	       bench_fmt_ns(b, sizeof b, (double)r->again_ns / (double)n));
	bench_row_int(&row, "budgets", n);
	bench_row_int(&row, "rss_before_kib", r->before.rss);
	bench_row_int(&row, "rss_open_kib", r->opened.rss);
	bench_row_int(&row, "rss_after_kib", r->after.rss);
	bench_row_int(&row, "anon_delta_kib", r->after.anon - r->before.anon);
	bench_row_int(&row, "file_delta_kib", r->after.file - r->before.file);
	bench_row_int(&row, "shmem_delta_kib", r->after.shmem - r->before.shmem);
	bench_row_int(&row, "vsz_delta_kib", r->after.vsz - r->before.vsz);
	bench_row_int(&row, "fds_delta", r->after.fds - r->before.fds);
	bench_row_num(&row, "first_admission_ns", (double)r->first_ns / (double)n);
	bench_row_num(&row, "later_admission_ns", (double)r->again_ns / (double)n);
	bench_row_end(&row);
}

int main(void)
{
	long n = bench_env_long("RATECTL_BENCH_BUDGETS", 1000, 1, 100000), i;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	const char *base = bench_base(0);
	char dir[PATH_MAX], ldir[PATH_MAX], name[32], x[32], y[32], z[32];
	proc_result *res = bench_shared(2 * sizeof *res);
	files data, lock, leases;
	long long used;
	int64_t t;
	ratectl *h;

	bench_tmpdir(dir, sizeof dir, base, "mem");
	bench_path(ldir, sizeof ldir, dir, "ledger");
	/* The example budget: 500 requests/min, 200,000 tokens/min. */
	b.nlimits = 2;
	b.limits[0] = bench_limit(RATECTL_REQUESTS, 500, 60 * BENCH_SEC, 0);
	b.limits[1] = bench_limit(RATECTL_TOKENS, 200000, 60 * BENCH_SEC, 0);
	BENCH_CHECK(ratectl_open(&h, ldir, NULL));
	t = bench_now();
	for (i = 0; i < n; i++) {
		budget_name(name, sizeof name, i);
		BENCH_CHECK(ratectl_budget_set(h, name, &b, RATECTL_CREATE));
	}
	t = bench_now() - t;
	ratectl_close(h);

	run_user(&res[0], ldir, n);
	run_user(&res[1], ldir, n);
	data = file_of(ldir, "data.mdb");
	lock = file_of(ldir, "lock.mdb");
	leases = leases_of(ldir);
	used = lmdb_used(ldir);

	printf("\n5. Memory: %ld budgets (2 limits each, no cap), each admitted once "
	       "per process, %s (%s)\n", n, bench_fs_name(base), base);
	printf("   %-18s %s allocated (size %s), %s used by LMDB\n", "data.mdb",
	       bench_fmt_bytes(x, sizeof x, (double)data.alloc),
	       bench_fmt_bytes(y, sizeof y, (double)data.size),
	       used < 0 ? "?" : bench_fmt_bytes(z, sizeof z, (double)used));
	printf("   %-18s %s allocated\n", "lock.mdb",
	       bench_fmt_bytes(x, sizeof x, (double)lock.alloc));
	printf("   %-18s %ld files, %s allocated in all (%s each)\n", "lease files",
	       leases.count, bench_fmt_bytes(x, sizeof x, (double)leases.alloc),
	       bench_fmt_bytes(y, sizeof y, leases.count ?
	                       (double)leases.alloc / (double)leases.count : 0));
	printf("   %-18s %s each\n", "budget_set",
	       bench_fmt_ns(x, sizeof x, (double)t / (double)n));
	{
		bench_row row = bench_row_begin("memory", "files");

		bench_row_str(&row, "fs", bench_fs_name(base));
		bench_row_int(&row, "budgets", n);
		bench_row_int(&row, "data_mdb_alloc_bytes", data.alloc);
		bench_row_int(&row, "data_mdb_size_bytes", data.size);
		bench_row_int(&row, "data_mdb_used_bytes", used);
		bench_row_int(&row, "lock_mdb_alloc_bytes", lock.alloc);
		bench_row_int(&row, "lease_files", leases.count);
		bench_row_int(&row, "lease_alloc_bytes", leases.alloc);
		bench_row_num(&row, "budget_set_ns", (double)t / (double)n);
		bench_row_end(&row);
	}
	print_proc("first process", &res[0], n);
	print_proc("a later process", &res[1], n);
	bench_rmtree(dir);
	return 0;
}
