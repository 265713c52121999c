/*
 * test_tenants.c - many budgets and many tenants: tags, budgets that expire
 * when idle, fair shares among tenants, descriptors that do not grow with
 * the number of budgets, processes' liveness across fork, and the upgrade
 * of a format-2 ledger.
 */
#include <errno.h>
#include <dirent.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "testutil.h"
#include "../lib/internal.h"

static const ratectl_cost one = { 1, 0, RATECTL_INTERACTIVE, NULL };

static ratectl_budget tenant_budget(unsigned weight, int64_t expire)
{
	ratectl_budget b = budget_simple(1000000, 1000000, 0);

	b.weight = weight;
	b.expire_ns = expire;
	snprintf(b.origin, sizeof b.origin, "t-*");
	return b;
}

/* ---- tags ----------------------------------------------------------------- */

static ratectl_cost tagged(const char *tag, uint64_t tokens)
{
	ratectl_cost c = { 1, tokens, RATECTL_INTERACTIVE, tag };

	return c;
}

static void test_tags_counted(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 0);
	ratectl_tag_info t[RATECTL_TAGS_TOP], rest;
	ratectl_cost c;
	ratectl_lease l[6];
	size_t n;
	int i;

	b.nlimits = 2;
	b.limits[1] = (ratectl_limit){ RATECTL_TOKENS, 100000, 60 * SEC, 0 };
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 3; i++) {
		c = tagged("route:/chat", 10);
		assert_int_equal(ratectl_try(f->h, "b", &c, &l[i], NULL), 0);
		assert_string_equal(l[i].tag, "route:/chat");
	}
	c = tagged("embed", 10);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l[3], NULL), 0);
	c = tagged(NULL, 7);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l[4], NULL), 0);
	assert_string_equal(l[4].tag, "");
	c = tagged("", 7);              /* "" is no tag */
	assert_int_equal(ratectl_try(f->h, "b", &c, &l[5], NULL), 0);
	/* the reconcile moves the tag's tokens with the charge */
	assert_int_equal(ratectl_release(f->h, &l[0], 25), 0);
	assert_int_equal(ratectl_release(f->h, &l[3], 4), 0);
	assert_int_equal(ratectl_tags(f->h, "b", t, RATECTL_TAGS_TOP, &n, &rest), 0);
	assert_int_equal(n, 2);
	assert_string_equal(t[0].tag, "route:/chat");
	assert_int_equal(t[0].requests, 3);
	assert_int_equal(t[0].tokens, 45);
	assert_int_equal(t[0].error, 0);
	assert_string_equal(t[1].tag, "embed");
	assert_int_equal(t[1].requests, 1);
	assert_int_equal(t[1].tokens, 4);
	assert_int_equal(rest.requests, 2);
	assert_int_equal(rest.tokens, 14);
	/* cap 1: the busiest only, n says how many there are */
	assert_int_equal(ratectl_tags(f->h, "b", t, 1, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_string_equal(t[0].tag, "route:/chat");
	assert_int_equal(ratectl_tags(f->h, "none", t, 1, &n, NULL), RATECTL_ENOTFOUND);
}

/* More tags than are counted: the memory stays bounded, the busy tag
 * stays, and no request is lost from the totals. */
static void test_tags_bounded(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(100000, 100000, 0);
	ratectl_tag_info t[RATECTL_TAGS_TOP + 8], rest;
	ratectl_cost c;
	ratectl_lease l;
	uint64_t sum = 0;
	char tag[32];
	size_t n, i;
	int k;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (k = 0; k < 200; k++) {
		snprintf(tag, sizeof tag, "user-action-%d", k);
		c = tagged(tag, 1);
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
		ratectl_release(f->h, &l, RATECTL_UNKNOWN);
		if (k % 4 == 0) {       /* one tag in four requests is "hot" */
			c = tagged("hot", 1);
			assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
			ratectl_release(f->h, &l, RATECTL_UNKNOWN);
		}
	}
	assert_int_equal(ratectl_tags(f->h, "b", t, RATECTL_TAGS_TOP + 8, &n, &rest), 0);
	assert_int_equal(n, RATECTL_TAGS_TOP);
	assert_string_equal(t[0].tag, "hot");
	assert_true(t[0].requests >= 50);
	assert_true(t[0].requests - t[0].error <= 50);
	for (i = 0; i < n; i++)
		sum += t[i].requests - t[i].error;
	assert_int_equal(sum + rest.requests, 250);
}

/* The tag buffer at its size - 1, size, size + 1 and far beyond, and
 * bytes outside the set: refused before anything is charged. */
static void test_tag_sizes(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 0);
	ratectl_budget_info info;
	ratectl_cost c;
	ratectl_lease l;
	char *big = malloc(100001);
	size_t sizes[] = { RATECTL_TAG_MAX - 1, RATECTL_TAG_MAX };
	size_t i;

	assert_non_null(big);
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 2; i++) {
		memset(big, 'a', sizes[i]);
		big[sizes[i]] = '\0';
		c = tagged(big, 0);
		assert_int_equal(ratectl_tag_check(big), 0);
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
		assert_string_equal(l.tag, big);
		ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
	memset(big, 'a', 100000);
	big[RATECTL_TAG_MAX + 1] = '\0';
	assert_int_equal(ratectl_tag_check(big), RATECTL_EBADNAME);
	c = tagged(big, 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), RATECTL_EBADNAME);
	big[RATECTL_TAG_MAX + 1] = 'a';
	big[100000] = '\0';
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, 0), RATECTL_EBADNAME);
	assert_int_equal(ratectl_tag_check("a b"), RATECTL_EBADNAME);
	assert_int_equal(ratectl_tag_check("caf\xc3\xa9"), RATECTL_EBADNAME);
	assert_int_equal(ratectl_tag_check(""), RATECTL_EBADNAME);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.counters.admitted, 2);
	free(big);
}

/* ---- budgets that expire -------------------------------------------------- */

static void test_expire_sweep(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 1);
	ratectl_budget_info info;
	ratectl_lease l, held;
	unsigned removed;

	b.expire_ns = 10 * SEC;
	snprintf(b.origin, sizeof b.origin, "u-*");
	assert_int_equal(ratectl_budget_set(f->h, "u-idle", &b, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "u-held", &b, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "u-debt", &b, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "u-never", &b, 0), 0);
	b.expire_ns = 0;
	assert_int_equal(ratectl_budget_set(f->h, "keep", &b, 0), 0);
	assert_int_equal(ratectl_budget_get(f->h, "u-never", &info), 0);
	assert_int_equal(info.idle_ns, -1);
	assert_int_equal(info.config.expire_ns, 10 * SEC);
	assert_string_equal(info.config.origin, "u-*");

	assert_int_equal(ratectl_try(f->h, "u-idle", &one, &l, NULL), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_try(f->h, "u-held", &one, &held, NULL), 0);
	assert_int_equal(ratectl_try(f->h, "keep", &one, &l, NULL), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	{       /* a debt that outlasts the idle time: 300 tokens at 10/s */
		ratectl_budget d = b;
		ratectl_cost big = { 1, 10, RATECTL_INTERACTIVE, NULL };

		d.expire_ns = 10 * SEC;
		d.nlimits = 2;
		d.limits[1] = (ratectl_limit){ RATECTL_TOKENS, 10, SEC, 10 };
		assert_int_equal(ratectl_budget_set(f->h, "u-debt", &d, 0), 0);
		assert_int_equal(ratectl_try(f->h, "u-debt", &big, &l, NULL), 0);
		assert_int_equal(ratectl_release(f->h, &l, 300), 0);
	}
	f->clk.now += 5 * SEC;
	assert_int_equal(ratectl_sweep(f->h, &removed), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(ratectl_budget_get(f->h, "u-idle", &info), 0);
	assert_int_equal(info.idle_ns, 5 * SEC);

	f->clk.now += 6 * SEC;          /* 11 s idle */
	assert_int_equal(ratectl_sweep(f->h, &removed), 0);
	/* u-idle and u-never go; u-held has a slot in flight, u-debt a
	 * debt, keep no expire */
	assert_int_equal(removed, 2);
	assert_int_equal(ratectl_budget_get(f->h, "u-idle", &info), RATECTL_ENOTFOUND);
	assert_int_equal(ratectl_budget_get(f->h, "u-never", &info), RATECTL_ENOTFOUND);
	assert_int_equal(ratectl_budget_get(f->h, "u-held", &info), 0);
	assert_int_equal(ratectl_budget_get(f->h, "u-debt", &info), 0);
	assert_int_equal(ratectl_budget_get(f->h, "keep", &info), 0);

	assert_int_equal(ratectl_release(f->h, &held, RATECTL_UNKNOWN), 0);
	f->clk.now += 30 * SEC;         /* the debt repaid, all idle */
	assert_int_equal(ratectl_sweep(f->h, &removed), 0);
	assert_int_equal(removed, 2);
	assert_int_equal(ratectl_budget_get(f->h, "keep", &info), 0);
	/* made again on first use, it starts afresh */
	b.expire_ns = 10 * SEC;
	assert_int_equal(ratectl_budget_set(f->h, "u-idle", &b, RATECTL_CREATE), 0);
	assert_int_equal(ratectl_budget_get(f->h, "u-idle", &info), 0);
	assert_int_equal(info.counters.admitted, 0);
}

/* Nobody calls ratectl_sweep(): admissions do a step when one is due in
 * the host, at most every RATECTL_SWEEP_NS. */
static void test_expire_by_admissions(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 0);
	ratectl_budget_info info;
	ratectl_lease l;

	assert_int_equal(ratectl_budget_set(f->h, "k", &b, 0), 0);
	b.expire_ns = 2 * SEC;
	assert_int_equal(ratectl_budget_set(f->h, "u-1", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "u-1", &one, &l, NULL), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	f->clk.now += 3 * SEC;
	assert_int_equal(ratectl_try(f->h, "k", &one, &l, NULL), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_budget_get(f->h, "u-1", &info), RATECTL_ENOTFOUND);
	/* the next step is RATECTL_SWEEP_NS away: a budget idle now stays
	 * until then */
	assert_int_equal(ratectl_budget_set(f->h, "u-2", &b, 0), 0);
	f->clk.now += 3 * SEC;
	assert_int_equal(ratectl_try(f->h, "k", &one, &l, NULL), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_budget_get(f->h, "u-2", &info), RATECTL_ENOTFOUND);
}

/* ---- descriptors, mappings and liveness ---------------------------------- */

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int count_lines(const char *path)
{
	FILE *fp = fopen(path, "r");
	int n = 0, ch;

	assert_non_null(fp);
	while ((ch = fgetc(fp)) != EOF)
		n += ch == '\n';
	fclose(fp);
	return n;
}

/* A process admitting in 5,000 budgets, capped or not, keeps the
 * descriptors and mappings it had after its first admission. */
static void test_descriptors_constant(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 0);
	ratectl_lease l;
	char name[32];
	int i, fds, maps;

	for (i = 0; i < 5000; i++) {
		b.max_inflight = i % 2 ? 4 : 0;
		snprintf(name, sizeof name, "t-%05d", i);
		assert_int_equal(ratectl_budget_set(f->h, name, &b, 0), 0);
	}
	assert_int_equal(ratectl_try(f->h, "t-00001", &one, &l, NULL), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	fds = count_dir("/proc/self/fd");
	maps = count_lines("/proc/self/maps");
	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "t-%05d", i);
		assert_int_equal(ratectl_try(f->h, name, &one, &l, NULL), 0);
		if (i % 3)
			ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
	assert_int_equal(count_dir("/proc/self/fd"), fds);
	assert_int_equal(count_lines("/proc/self/maps"), maps);
	/* the ledger directory has its three files */
	assert_int_equal(count_dir(f->path), 3);
}

/* A holder's fork child that never uses ratectl must not keep its dead
 * parent's slots alive: the descriptor holding the parent's liveness
 * lock is closed in the child at the fork. */
static void test_fork_child_keeps_no_parent_alive(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_budget_info info;
	ratectl_lease l;
	int p[2], status;
	pid_t holder, grandchild = 0;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(pipe(p), 0);
	if ((holder = fork()) == 0) {
		pid_t g;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (ratectl_try(f->h, "b", &one, &l, NULL) != 0)
			_exit(1);
		if ((g = fork()) == 0) {
			/* Running: fork() has returned here, after the handler
			 * that closes the inherited descriptor.  (Until a child
			 * first runs, its copy holds the lock: a moment.) */
			g = getpid();
			if (write(p[1], &g, sizeof g) != (ssize_t)sizeof g)
				_exit(2);
			alarm(20);      /* outlives its parent; the test kills it */
			pause();
			_exit(0);
		}
		pause();
		_exit(0);
	}
	assert_int_equal(read(p[0], &grandchild, sizeof grandchild), (ssize_t)sizeof grandchild);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), RATECTL_EINFLIGHT);
	kill(holder, SIGKILL);
	assert_int_equal(waitpid(holder, &status, 0), holder);
	/* the grandchild lives on, with the inherited descriptor closed */
	assert_int_equal(kill(grandchild, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.inflight, 1);
	assert_int_equal(info.dead, 0);
	assert_int_equal(info.counters.reclaimed, 1);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	kill(grandchild, SIGKILL);
	close(p[0]);
	close(p[1]);
}

static unsigned count_holder_records(ratectl *h)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k = { 2, (void *)".h" }, v;
	unsigned n = 0;
	int rc;

	assert_int_equal(ratectl__read_begin(h, &txn), 0);
	assert_int_equal(mdb_cursor_open(txn, h->dbi, &cur), 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 &&
	     k.mv_size >= 2 && memcmp(k.mv_data, ".h", 2) == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		n++;
	mdb_cursor_close(cur);
	ratectl__read_end(h, txn);
	return n;
}

/* Every process that ever held a slot leaves a holder record at 0 (kept
 * for its next slot); once it is gone, the sweep drops it, and so does a
 * refused admission that looked for dead holders: a capped budget does
 * not grow with the processes that used it (cron jobs, xargs -P). */
static void test_dead_holders_records_dropped(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_lease l, mine;
	unsigned removed;
	int i, status;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 5; i++) {
		if ((pid = fork()) == 0) {
			if (ratectl_try(f->h, "b", &one, &l, NULL) != 0)
				_exit(1);
			ratectl_release(f->h, &l, RATECTL_UNKNOWN);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(count_holder_records(f->h), 5);
	assert_int_equal(ratectl_sweep(f->h, &removed), 0);
	assert_int_equal(count_holder_records(f->h), 0);
	/* this process's own record stays at 0 for its next slot */
	assert_int_equal(ratectl_try(f->h, "b", &one, &mine, NULL), 0);
	ratectl_release(f->h, &mine, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_sweep(f->h, &removed), 0);
	assert_int_equal(count_holder_records(f->h), 1);
	/* a refused try that dropped dead records keeps that */
	for (i = 0; i < 3; i++) {
		if ((pid = fork()) == 0) {
			if (ratectl_try(f->h, "b", &one, &l, NULL) != 0)
				_exit(1);
			ratectl_release(f->h, &l, RATECTL_UNKNOWN);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
	}
	assert_int_equal(count_holder_records(f->h), 4);
	assert_int_equal(ratectl_try(f->h, "b", &one, &mine, NULL), 0);
	if ((pid = fork()) == 0)
		_exit(ratectl_try(f->h, "b", &one, &l, NULL) == RATECTL_EINFLIGHT ? 0 : 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* mine, and the refused child's own new one (it died since) */
	assert_true(count_holder_records(f->h) <= 2);
	ratectl_release(f->h, &mine, RATECTL_UNKNOWN);
}

/* A damaged holder record: an error naming it wherever it is read, never
 * taken for a dead holder's (its count is unknown) nor rewritten. */
static void test_damaged_holder(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 1);
	ratectl_budget_info info;
	ratectl_lease_info li[2];
	ratectl_lease l;
	unsigned char kb[RC_HOLDER_KEY_LEN] = { '.', 'h' };
	MDB_val k = { sizeof kb, kb }, v = { 3, (void *)"bad" };
	MDB_txn *txn;
	unsigned slots;
	size_t n;
	int rc;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	/* a second holder's record, damaged, under a key nobody holds */
	ratectl__key_be32(kb + 2, 1);
	memset(kb + 6, 0x11, 8);
	assert_int_equal(mdb_txn_begin(f->h->env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, f->h->dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), RATECTL_ECORRUPT);
	assert_non_null(strstr(ratectl_errmsg(), "damaged"));
	assert_int_equal(ratectl_leases(f->h, "b", li, 2, &n), RATECTL_ECORRUPT);
	/* full: the admission looks for the dead, and leaves it */
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL) == 0, 0);
	assert_int_equal(ratectl_reclaim(f->h, &slots, NULL), 0);
	assert_int_equal(ratectl_sweep(f->h, NULL), 0);
	assert_int_equal(ratectl__read_begin(f->h, &txn), 0);
	rc = mdb_get(txn, f->h->dbi, &k, &v);
	ratectl__read_end(f->h, txn);
	assert_int_equal(rc, 0);
	assert_int_equal(v.mv_size, 3);
}

/* The origin's buffer: 64 bytes and a NUL, or refused (never read past). */
static void test_origin_sizes(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 0);
	ratectl_budget_info info;

	memset(b.origin, 'u', RATECTL_NAME_MAX - 1);
	b.origin[RATECTL_NAME_MAX - 1] = '\0';
	assert_int_equal(ratectl_budget_set(f->h, "a", &b, 0), 0);
	memset(b.origin, 'u', RATECTL_NAME_MAX);
	b.origin[RATECTL_NAME_MAX - 1] = '*';
	b.origin[RATECTL_NAME_MAX] = '\0';
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(strlen(info.config.origin), RATECTL_NAME_MAX);
	assert_int_equal(info.config.origin[RATECTL_NAME_MAX - 1], '*');
	memset(b.origin, 'u', sizeof b.origin);     /* no NUL in the 65 */
	assert_int_equal(ratectl_budget_set(f->h, "c", &b, 0), RATECTL_EBADCONFIG);
	assert_int_equal(ratectl_budget_check(&b), RATECTL_EBADCONFIG);
	snprintf(b.origin, sizeof b.origin, "user *");
	assert_int_equal(ratectl_budget_set(f->h, "c", &b, 0), RATECTL_EBADCONFIG);
	assert_int_equal(ratectl_budget_get(f->h, "c", &info), RATECTL_ENOTFOUND);
}

/* A setgid directory of one of our groups, owned by someone else (the
 * packages' /run/ratectl, root:ratectl 2770) is shared without asking;
 * without the setgid bit it is refused as before. */
static void test_group_directory_shared(void **state)
{
	clock_fixture *f = *state;
	char *path = tmp_ledger();
	ratectl *h = NULL;
	struct stat st;
	char file[700];

	(void)f;
	if (geteuid() != 0) {
		print_message("skipped: needs root to give the directory away\n");
		tmp_ledger_rm(path);
		return;
	}
	assert_int_equal(mkdir(path, 0770), 0);
	assert_int_equal(chown(path, 65534, getegid()), 0);
	assert_int_equal(chmod(path, 0770), 0);
	assert_int_equal(ratectl_open(&h, path, NULL), RATECTL_EUNSAFE);
	assert_null(h);
	assert_int_equal(chmod(path, 02770), 0);
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	snprintf(file, sizeof file, "%s/wake", path);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	ratectl_close(h);
	assert_int_equal(chmod(path, 02777), 0);        /* others may write */
	assert_int_equal(ratectl_open(&h, path, NULL), RATECTL_EUNSAFE);
	tmp_ledger_rm(path);
}

/* ---- fair shares ----------------------------------------------------------- */

static void run_weighted(const char *path, unsigned wa, unsigned wb, unsigned na,
                         unsigned nb, unsigned *got_a, unsigned *got_b);

/* Real processes on a real clock: a saturated key budget of 100/s (no
 * burst), tenant A with 8 processes, tenant B with 1, for 1.5 s.  Each
 * returns its admission count through a pipe. */
static void run_tenants(const char *path, unsigned weight, unsigned na, unsigned nb,
                        unsigned *got_a, unsigned *got_b)
{
	run_weighted(path, weight, weight, na, nb, got_a, got_b);
}

static void run_weighted(const char *path, unsigned wa, unsigned wb, unsigned na,
                         unsigned nb, unsigned *got_a, unsigned *got_b)
{
	ratectl_budget k = budget_simple(100, 1, 0), t = tenant_budget(wa, 0);
	pid_t pid[16];
	unsigned i, n = na + nb;
	int p[2], status;
	ratectl *h;
	int64_t end;

	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "key", &k, 0), 0);
	assert_int_equal(ratectl_budget_set(h, "t-a", &t, 0), 0);
	t.weight = wb;
	assert_int_equal(ratectl_budget_set(h, "t-b", &t, 0), 0);
	ratectl_close(h);
	assert_int_equal(pipe(p), 0);
	end = mono() + 1500 * MSEC;
	for (i = 0; i < n; i++) {
		if ((pid[i] = fork()) == 0) {
			const char *names[2] = { i < na ? "t-a" : "t-b", "key" };
			ratectl_lease l[2];
			unsigned got = 0;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			alarm(10);
			if (ratectl_open(&h, path, NULL) != 0)
				_exit(1);
			while (mono() < end)
				if (ratectl_acquire_many(h, names, 2, &one, l, 200 * MSEC) == 0) {
					if (l[0].start_ns < end)
						got++;
					ratectl_release(h, &l[0], RATECTL_UNKNOWN);
					ratectl_release(h, &l[1], RATECTL_UNKNOWN);
				}
			if (write(p[1], (unsigned[2]){ i < na, got }, 2 * sizeof(unsigned)) < 0)
				_exit(2);
			_exit(0);
		}
	}
	*got_a = *got_b = 0;
	for (i = 0; i < n; i++) {
		unsigned r[2];

		assert_int_equal(read(p[0], r, sizeof r), (ssize_t)sizeof r);
		*(r[0] ? got_a : got_b) += r[1];
	}
	for (i = 0; i < n; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	close(p[0]);
	close(p[1]);
}

static void test_fair_shares(void **state)
{
	clock_fixture *f = *state;
	char *path = tmp_ledger(), *control = tmp_ledger(), *alone = tmp_ledger();
	unsigned a, b;

	(void)f;
	/* Without weights: B's one process gets about 1 place in 9. */
	run_tenants(control, 0, 8, 1, &a, &b);
	print_message("no tenants: A %u, B %u (B %.0f%%)\n", a, b, 100.0 * b / (a + b));
	assert_true(b * 100 < (a + b) * 30);
	/* Tenants of weight 1: B half the budget, whatever A's number. */
	run_tenants(path, 1, 8, 1, &a, &b);
	print_message("tenants: A %u, B %u (B %.0f%%)\n", a, b, 100.0 * b / (a + b));
	assert_true(a + b >= 140);      /* 150 in 1.5 s at 100/s */
	assert_true(b * 100 >= (a + b) * 40);
	/* A alone takes all of it. */
	run_tenants(alone, 1, 8, 0, &a, &b);
	print_message("A alone: %u\n", a);
	assert_true(a >= 140);
	/* Weights: B of weight 3 with 3 processes against A of weight 1 with
	 * 6: B three quarters. */
	tmp_ledger_rm(path);
	path = tmp_ledger();
	run_weighted(path, 1, 3, 6, 3, &a, &b);
	print_message("weights 1:3: A %u, B %u (B %.0f%%)\n", a, b, 100.0 * b / (a + b));
	assert_true(b * 100 >= (a + b) * 65 && b * 100 <= (a + b) * 85);
	tmp_ledger_rm(path);
	tmp_ledger_rm(control);
	tmp_ledger_rm(alone);
}

/* Within a tenant, its requests go in the order they asked: three
 * processes of tenant A behind a place of A's that is 300 ms ahead. */
static void test_fifo_within_tenant(void **state)
{
	clock_fixture *f = *state;
	char *path = tmp_ledger();
	ratectl_budget k = budget_simple(10, 1, 0), t = tenant_budget(1, 0);
	const char *names[2] = { "t-a", "key" };
	ratectl_lease l[2];
	pid_t pid[3];
	int p[2], status, i;
	ratectl *h;
	int order[3];

	(void)f;
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "key", &k, 0), 0);
	assert_int_equal(ratectl_budget_set(h, "t-a", &t, 0), 0);
	/* the key's one place now, then A's place 100 ms ahead, held by a
	 * process that waits for it */
	assert_int_equal(ratectl_acquire_many(h, names, 2, &one, l, SEC), 0);
	assert_int_equal(pipe(p), 0);
	for (i = 0; i < 3; i++) {
		if ((pid[i] = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			alarm(10);
			if (ratectl_acquire_many(h, names, 2, &one, l, 5 * SEC) != 0)
				_exit(1);
			if (write(p[1], &i, sizeof i) != (ssize_t)sizeof i)
				_exit(2);
			_exit(0);
		}
		until_blocked(pid[i]);
	}
	for (i = 0; i < 3; i++)
		assert_int_equal(read(p[0], &order[i], sizeof order[i]), (ssize_t)sizeof order[i]);
	for (i = 0; i < 3; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		assert_int_equal(order[i], i);
	}
	ratectl_close(h);
	close(p[0]);
	close(p[1]);
	tmp_ledger_rm(path);
}

/* A tenant's waiter that gives up leaves no hole in the line: the next
 * goes at once, not after the grace a dead one costs. */
static void test_ticket_given_up(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget k = budget_simple(10, 1, 0), t = tenant_budget(1, 0);
	const char *names[2] = { "t-a", "key" };
	ratectl_lease l[2];

	assert_int_equal(ratectl_budget_set(f->h, "key", &k, 0), 0);
	assert_int_equal(ratectl_budget_set(f->h, "t-a", &t, 0), 0);
	assert_int_equal(ratectl_acquire_many(f->h, names, 2, &one, l, 0), 0);
	/* the next place is 100 ms ahead: a 50 ms deadline cannot have it */
	assert_int_equal(ratectl_acquire_many(f->h, names, 2, &one, l, 50 * MSEC),
	                 RATECTL_ETIMEDOUT);
	{
		rc_budget_rec rec;
		MDB_txn *txn;

		assert_int_equal(ratectl__read_begin(f->h, &txn), 0);
		assert_int_equal(ratectl__rec_get(f->h, txn, "t-a", &rec), 0);
		ratectl__read_end(f->h, txn);
		assert_true(rec.tn.tk_serve == rec.tn.tk_next);        /* no line */
	}
	assert_int_equal(ratectl_acquire_many(f->h, names, 2, &one, l, SEC), 0);
	assert_true(f->clk.now <= 100 * SEC + 200 * MSEC);
}

/* A waiter holding a ticket in a tenant that is deleted and made again
 * meanwhile: its ticket means nothing in the new line; it lines up anew
 * and the new record stays sound (the old ticket, served there, used to
 * leave it damaged for every process). */
static void test_ticket_of_a_tenant_made_again(void **state)
{
	clock_fixture *f = *state;
	char *path = tmp_ledger();
	ratectl_budget k = budget_simple(1, 1, 0), t = tenant_budget(1, SEC);
	const char *names[2] = { "t-a", "key" };
	ratectl_budget_info info;
	ratectl_lease l[2];
	pid_t pid[2];
	int i, status;
	ratectl *h;

	(void)f;
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "key", &k, 0), 0);
	assert_int_equal(ratectl_budget_set(h, "t-a", &t, 0), 0);
	assert_int_equal(ratectl_acquire_many(h, names, 2, &one, l, 0), 0);
	/* the first waits for its place 1 s ahead; the second, in line
	 * behind the shut gate, is stopped */
	for (i = 0; i < 2; i++) {
		if ((pid[i] = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			alarm(10);
			_exit(ratectl_acquire_many(h, names, 2, &one, l, 5 * SEC) == 0 ? 0 : 1);
		}
		until_blocked(pid[i]);
	}
	kill(pid[1], SIGSTOP);
	assert_int_equal(ratectl_budget_delete(h, "t-a"), 0);
	assert_int_equal(ratectl_budget_set(h, "t-a", &t, RATECTL_CREATE), 0);
	assert_int_equal(waitpid(pid[0], &status, 0), pid[0]);
	kill(pid[1], SIGCONT);
	assert_int_equal(waitpid(pid[1], &status, 0), pid[1]);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(ratectl_budget_get(h, "t-a", &info), 0);
	assert_int_equal(info.counters.admitted, 2);     /* both, in the new one */
	{
		rc_budget_rec rec;
		MDB_txn *txn;

		assert_int_equal(ratectl__read_begin(h, &txn), 0);
		assert_int_equal(ratectl__rec_get(h, txn, "t-a", &rec), 0);
		ratectl__read_end(h, txn);
		assert_true(rec.tn.tk_serve == rec.tn.tk_next);
	}
	ratectl_close(h);
	tmp_ledger_rm(path);
}

/* ---- upgrade from format 2 -------------------------------------------------- */

/* Write format version fmt into the ledger's format record, in txn. */
static void meta_format(MDB_txn *txn, MDB_dbi dbi, uint32_t fmt)
{
	MDB_val mk = { 5, (void *)".meta" }, v;
	unsigned char m[256];

	assert_int_equal(mdb_get(txn, dbi, &mk, &v), 0);
	assert_true(v.mv_size <= sizeof m);
	memcpy(m, v.mv_data, v.mv_size);
	memcpy(m + 4, &fmt, 4);
	v.mv_data = m;
	assert_int_equal(mdb_put(txn, dbi, &mk, &v, 0), 0);
}

/* A format-2 ledger as the previous release wrote it: records without
 * the in-flight count and counters, which lived in leases/<id>. */
static void test_upgrade_from_format_2(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 2);
	ratectl_budget_info info;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 1, (void *)"b" }, v;
	rc_budget_rec rec;
	unsigned char old[sizeof rec];
	uint32_t magic = RC_BUDGET_MAGIC_V2;
	size_t fixed = offsetof(rc_budget_rec, reserved0) + 4 + 8, lim;
	char lease[700], dir[600];
	unsigned char hdr[4096] = { 0 };
	uint64_t counters[9] = { 7, 3, 2, 1000, 70, 60, 65, 1, 0 };
	int fd;
	ratectl_lease l;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	ratectl_close(f->h);
	f->h = NULL;
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, f->path, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	memcpy(&rec, v.mv_data, v.mv_size);
	lim = rec.nlimits * sizeof(rc_limit);
	memset(old, 0, sizeof old);
	memcpy(old, &rec, offsetof(rc_budget_rec, reserved0) + 4);
	memcpy(old, &magic, 4);
	memcpy(old + fixed, (char *)&rec + offsetof(rc_budget_rec, lim), lim);
	v = (MDB_val){ fixed + lim, old };
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	meta_format(txn, dbi, 2);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	snprintf(dir, sizeof dir, "%s/leases", f->path);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(lease, sizeof lease, "%s/%u", dir, rec.id);
	memcpy(hdr + 40, counters, sizeof counters);
	fd = open(lease, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, hdr, sizeof hdr), (ssize_t)sizeof hdr);
	close(fd);

	{
		ratectl_options o = RATECTL_OPTIONS_INIT;

		o.clock = &f->clock;
		assert_int_equal(ratectl_open(&f->h, f->path, &o), 0);
	}
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.counters.admitted, 7);
	assert_int_equal(info.counters.refused, 3);
	assert_int_equal(info.counters.wait_ns, 1000);
	assert_int_equal(info.counters.tokens_reconciled, 65);
	assert_int_equal(info.config.max_inflight, 2);
	assert_int_equal(info.state[0].available, 10);
	assert_int_equal(ratectl_try(f->h, "b", &one, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.counters.admitted, 8);
}

/* A damaged format-2 record stops the upgrade with its name; nothing is
 * written (the ledger still says format 2). */
static void test_upgrade_damaged(void **state)
{
	clock_fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 0);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 1, (void *)"b" }, v, mk = { 5, (void *)".meta" };
	uint32_t junk[8] = { RC_BUDGET_MAGIC_V2, 1, 9, 0 }, fmt;
	ratectl_options o = RATECTL_OPTIONS_INIT;
	ratectl *h = NULL;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	ratectl_close(f->h);
	f->h = NULL;
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, f->path, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	v = (MDB_val){ sizeof junk, junk };
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	meta_format(txn, dbi, 2);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	o.clock = &f->clock;
	assert_int_equal(ratectl_open(&h, f->path, &o), RATECTL_ECORRUPT);
	assert_non_null(strstr(ratectl_errmsg(), "budget 'b'"));
	assert_null(h);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, f->path, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &mk, &v), 0);
	memcpy(&fmt, (char *)v.mv_data + 4, 4);
	assert_int_equal(fmt, 2);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	/* clock_teardown closes f->h: give it one on a fresh ledger */
	tmp_ledger_rm(f->path);
	f->path = tmp_ledger();
	assert_int_equal(ratectl_open(&f->h, f->path, &o), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tags_counted, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_tags_bounded, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_tag_sizes, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_expire_sweep, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_expire_by_admissions, clock_setup,
		                                clock_teardown),
		cmocka_unit_test_setup_teardown(test_descriptors_constant, clock_setup,
		                                clock_teardown),
		cmocka_unit_test_setup_teardown(test_fork_child_keeps_no_parent_alive,
		                                clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_holder, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_origin_sizes, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_group_directory_shared, clock_setup,
		                                clock_teardown),
		cmocka_unit_test_setup_teardown(test_dead_holders_records_dropped, clock_setup,
		                                clock_teardown),
		cmocka_unit_test_setup_teardown(test_ticket_given_up, clock_setup,
		                                clock_teardown),
		cmocka_unit_test_setup_teardown(test_fifo_within_tenant, clock_setup,
		                                clock_teardown),
		cmocka_unit_test_setup_teardown(test_ticket_of_a_tenant_made_again,
		                                clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_fair_shares, clock_setup, clock_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_from_format_2, clock_setup,
		                                clock_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_damaged, clock_setup,
		                                clock_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
