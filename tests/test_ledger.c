/* test_ledger.c - the library through its public API, on temporary
 * ledgers, with an injected clock: no sleeps. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"
#include "../lib/internal.h"

typedef struct fixture {
	char *path;
	fake_clock clk;
	ratectl_clock clock;
	ratectl *h;
} fixture;

static ratectl *open_with(fixture *f, const char *boot_id)
{
	ratectl_options o = RATECTL_OPTIONS_INIT;
	ratectl *h = NULL;

	f->clock = (ratectl_clock){ fake_now, fake_sleep_until, fake_realtime,
	                            boot_id, &f->clk };
	o.clock = &f->clock;
	assert_int_equal(ratectl_open(&h, f->path, &o), 0);
	return h;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);

	f->path = tmp_ledger();
	f->clk.now = 1000 * SEC;
	f->clk.realtime = 1700000000 * SEC;
	f->h = open_with(f, "boot-a");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	ratectl_close(f->h);
	tmp_ledger_rm(f->path);
	free(f);
	return 0;
}

static void test_set_get_and_names(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(10, 5, 3);
	ratectl_budget_info info;

	assert_int_equal(ratectl_budget_set(f->h, "openai", &b, RATECTL_CREATE), 0);
	assert_int_equal(ratectl_budget_set(f->h, "openai", &b, RATECTL_CREATE),
	                 RATECTL_EEXISTS);
	assert_int_equal(ratectl_budget_set(f->h, "nope", &b, RATECTL_UPDATE),
	                 RATECTL_ENOTFOUND);
	assert_int_equal(ratectl_budget_get(f->h, "openai", &info), 0);
	assert_string_equal(info.name, "openai");
	assert_int_equal(info.config.limits[0].count, 10);
	assert_int_equal(info.state[0].available, 5);
	assert_int_equal(info.config.max_inflight, 3);
	assert_int_equal(ratectl_budget_set(f->h, "bad name", &b, 0), RATECTL_EBADNAME);
	assert_non_null(strstr(ratectl_errmsg(), "bad name"));
	assert_int_equal(ratectl_budget_set(f->h, ".hidden", &b, 0), RATECTL_EBADNAME);
	assert_int_equal(ratectl_budget_set(f->h, "", &b, 0), RATECTL_EBADNAME);
	b.limits[0].period_ns = SEC / 2;
	assert_int_equal(ratectl_budget_set(f->h, "x", &b, 0), RATECTL_EBADCONFIG);
	assert_non_null(strstr(ratectl_errmsg(), "period"));
	assert_int_equal(ratectl_budget_get(f->h, "missing", &info), RATECTL_ENOTFOUND);
	assert_int_equal(ratectl_budget_delete(f->h, "openai"), 0);
	assert_int_equal(ratectl_budget_get(f->h, "openai", &info), RATECTL_ENOTFOUND);
	assert_int_equal(ratectl_budget_delete(f->h, "openai"), RATECTL_ENOTFOUND);
}

static void test_try_burst_wait_hint(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(10, 5, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t wait;
	int i;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 5; i++) {
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), 0);
		assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
	}
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, SEC / 10);
	f->clk.now += wait - 1;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, 1);              /* rounded up, never 0 */
	f->clk.now += 1;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), 0);
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), RATECTL_EBADLEASE);
	c.requests = 6;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ETOOBIG);
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, -1), RATECTL_ETOOBIG);
	assert_int_equal(ratectl_try(f->h, "none", &c, &l, &wait), RATECTL_ENOTFOUND);
}

static void test_acquire_sleeps_exactly(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(2, 1, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int64_t t0 = f->clk.now;
	ratectl_budget_info info;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, 0), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, SEC), 0);
	assert_int_equal(f->clk.now - t0, SEC / 2);     /* one sleep, to the ns */
	assert_int_equal(f->clk.sleeps, 1);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	/* cannot be had within 100 ms: times out at the deadline */
	t0 = f->clk.now;
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, 100 * MSEC),
	                 RATECTL_ETIMEDOUT);
	assert_int_equal(f->clk.now - t0, 100 * MSEC);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.counters.admitted, 2);
	assert_int_equal(info.counters.waited, 1);
	assert_int_equal(info.counters.wait_ns, SEC / 2);
	assert_int_equal(info.counters.refused, 1);
}

static void test_acquire_interrupted_gives_back(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1, 1, 1);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	int64_t wait;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
	f->clk.interrupt_next = 1;
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l, -1), -EINTR);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.inflight, 0);     /* slot given back */
	/* the reservation was given back: the next wait is 1 s, not 2 */
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, SEC);
}

static void test_inflight_cap(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 2);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l[3];
	ratectl_lease_info li[4];
	ratectl_budget_info info;
	size_t n;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l[0], NULL), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l[1], NULL), 0);
	assert_int_equal(l[0].slot, 0);         /* each holds a slot */
	assert_int_equal(l[1].slot, 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l[2], NULL), RATECTL_EINFLIGHT);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.inflight, 2);
	/* one holder, this process, with both */
	assert_int_equal(ratectl_leases(f->h, "b", li, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(li[0].pid, getpid());
	assert_int_equal(li[0].alive, 1);
	assert_int_equal(li[0].count, 2);
	/* times out waiting for a slot */
	assert_int_equal(ratectl_acquire(f->h, "b", &c, &l[2], 50 * MSEC),
	                 RATECTL_ETIMEDOUT);
	assert_int_equal(ratectl_release(f->h, &l[0], RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l[2], NULL), 0);
	ratectl_release(f->h, &l[1], RATECTL_UNKNOWN);
	ratectl_release(f->h, &l[2], RATECTL_UNKNOWN);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.inflight, 0);
	assert_int_equal(info.dead, 0);
}

static void test_reconcile(void **state)
{
	fixture *f = *state;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost c = { 1, 800, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;

	b.nlimits = 2;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, 100, 60 * SEC, 0 };
	b.limits[1] = (ratectl_limit){ RATECTL_TOKENS, 1000, 60 * SEC, 0 };
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, 300), 0);     /* refund 500 */
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[1].available, 700);
	assert_int_equal(info.state[0].available, 99);
	c.tokens = 100;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, 400), 0);     /* debit 300 */
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[1].available, 300);
	assert_int_equal(info.counters.tokens_estimated, 900);
	assert_int_equal(info.counters.tokens_actual, 700);
	assert_int_equal(info.counters.tokens_reconciled, 900);
}

static void test_update_live_and_reset(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	int64_t wait;
	int i;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
		ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
	b = budget_simple(20, 20, 0);           /* doubled: 10 used of 20 */
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, RATECTL_UPDATE), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[0].available, 10);
	assert_int_equal(ratectl_budget_reset(f->h, "b"), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[0].available, 20);
	assert_int_equal(ratectl_cooldown(f->h, "b", 3 * SEC), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ECOOLDOWN);
	assert_int_equal(wait, 3 * SEC + SEC / 20);     /* then restarts empty */
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.cooldown_ns, 3 * SEC);
	assert_int_equal(ratectl_cooldown(f->h, "b", 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ELIMITED);
	assert_int_equal(wait, SEC / 20);       /* ended now, restarting empty */
	f->clk.now += wait;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_budget_reset(f->h, NULL), 0);
}

static void test_observe_tightens(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(100, 100, 0);
	ratectl_budget_info info;
	int changed = 0;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_observe(f->h, "b", RATECTL_REQUESTS, 3, SEC / 2, &changed), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[0].available, 3);
	assert_int_equal(ratectl_observe(f->h, "b", RATECTL_REQUESTS, 50, 0, &changed), 0);
	assert_int_equal(changed, 0);
}

static void test_retry_budget_and_check(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	int i, allowed = 0;

	assert_int_equal(ratectl_budget_check(&b), 0);
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	/* one retry allowed before anything was admitted, then 20% of 50 */
	assert_int_equal(ratectl_retry_take(f->h, "b", 20), 0);
	assert_int_equal(ratectl_retry_take(f->h, "b", 20), RATECTL_ELIMITED);
	for (i = 0; i < 50; i++) {
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
		ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
	while (ratectl_retry_take(f->h, "b", 20) == 0 && allowed < 100)
		allowed++;
	assert_int_equal(allowed + 1, 11);      /* (retries) <= 20% of 50 + 1 */
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.counters.retries, 11);
	b.limits[0].burst = (uint64_t)1 << 62;
	assert_int_equal(ratectl_budget_check(&b), RATECTL_EBADCONFIG);
	assert_non_null(strstr(ratectl_errmsg(), "burst"));
	b = budget_simple(10, 10, 0);
	b.batch_share = 101;
	assert_int_equal(ratectl_budget_check(&b), RATECTL_EBADCONFIG);
}

static void test_reboot_rebases(void **state)
{
	fixture *f = *state;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	int i;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, 60, 60 * SEC, 0 };
	b.max_inflight = 4;
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 60; i++) {
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
		/* the last lease is never released: its process "dies" in the reboot */
		if (i < 59)
			ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
	ratectl_close(f->h);
	/* New boot: the monotonic clock restarts near 0; 20 s of wall time
	 * passed.  No free burst: 20 of 60 have refilled, not all 60. */
	f->clk.realtime += f->clk.now + 20 * SEC - 5 * SEC;
	f->clk.now = 5 * SEC;
	f->h = open_with(f, "boot-b");
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[0].available, 20);
	assert_int_equal(info.inflight, 0);
	assert_int_equal(info.dead, 0);
}

static void test_unsafe_directories(void **state)
{
	fixture *f = *state;
	char link[600], other[600];
	ratectl *h = NULL;

	snprintf(link, sizeof link, "%s-link", f->path);
	assert_int_equal(symlink(f->path, link), 0);
	assert_int_equal(ratectl_open(&h, link, NULL), RATECTL_EUNSAFE);
	assert_non_null(strstr(ratectl_errmsg(), "symlink"));
	unlink(link);
	snprintf(other, sizeof other, "%s-open", f->path);
	assert_int_equal(mkdir(other, 0777), 0);
	assert_int_equal(chmod(other, 0777), 0);
	assert_int_equal(ratectl_open(&h, other, NULL), RATECTL_EUNSAFE);
	assert_non_null(strstr(ratectl_errmsg(), "writable by others"));
	if (geteuid() == 0) {
		assert_int_equal(chmod(other, 0700), 0);
		assert_int_equal(chown(other, 65534, 65534), 0);
		assert_int_equal(ratectl_open(&h, other, NULL), RATECTL_EUNSAFE);
		assert_non_null(strstr(ratectl_errmsg(), "owned by uid 65534"));
	}
	rmdir(other);
}

static void test_damaged_and_newer(void **state)
{
	fixture *f = *state;
	char data[600];
	ratectl *h = NULL;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 5, (void *)(uintptr_t)".meta" }, v;
	uint32_t meta[32];
	int fd;

	ratectl_close(f->h);
	f->h = NULL;
	/* a newer format version */
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 4);
	assert_int_equal(mdb_env_open(env, f->path, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	memcpy(meta, v.mv_data, v.mv_size);
	meta[1] = RATECTL_FORMAT_VERSION + 1;
	v.mv_data = meta;
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	assert_int_equal(ratectl_open(&h, f->path, NULL), RATECTL_EVERSION);
	assert_non_null(strstr(ratectl_errmsg(), "newer than this build"));
	/* a zeroed data file */
	snprintf(data, sizeof data, "%s/data.mdb", f->path);
	fd = open(data, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	{
		char zero[16384] = { 0 };
		assert_int_equal(write(fd, zero, sizeof zero), (ssize_t)sizeof zero);
	}
	close(fd);
	assert_int_equal(ratectl_open(&h, f->path, NULL), RATECTL_ECORRUPT);
	/* random bytes */
	fd = open(data, O_WRONLY | O_TRUNC);
	{
		char junk[16384];
		size_t i;
		for (i = 0; i < sizeof junk; i++)
			junk[i] = (char)(i * 7919 + 13);
		assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
	}
	close(fd);
	assert_int_equal(ratectl_open(&h, f->path, NULL), RATECTL_ECORRUPT);
	assert_non_null(strstr(ratectl_errmsg(), f->path));
	/* a truncated one */
	assert_int_equal(truncate(data, 100), 0);
	assert_int_equal(ratectl_open(&h, f->path, NULL), RATECTL_ECORRUPT);
}

static void test_foreign_lmdb_refused(void **state)
{
	fixture *f = *state;
	char dir[600];
	ratectl *h = NULL;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 3, (void *)(uintptr_t)"abc" }, v = { 3, (void *)(uintptr_t)"xyz" };
	int i;

	snprintf(dir, sizeof dir, "%s-foreign", f->path);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	for (i = 0; i < 5; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		k.mv_data = key;
		k.mv_size = strlen(key);
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	assert_int_equal(ratectl_open(&h, dir, NULL), RATECTL_ECORRUPT);
	assert_non_null(strstr(ratectl_errmsg(), "not a ratectl ledger"));
}

/* A full disk (here: a file-size limit) is a clear error, never a SIGBUS,
 * and what the ledger held stays usable. */
static void test_full_disk(void **state)
{
	fixture *f = *state;
	int status;
	pid_t pid;

	ratectl_close(f->h);
	f->h = NULL;
	if ((pid = fork()) == 0) {
		struct rlimit rl = { 3u << 20, 3u << 20 };
		ratectl_options o = RATECTL_OPTIONS_INIT;
		ratectl_budget b = budget_simple(10, 10, 2);
		ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
		char dir[600], name[32];
		ratectl_lease l;
		ratectl *h;
		int i, rc = 0;

		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		snprintf(dir, sizeof dir, "%s-full", f->path);
		/* the default map (8 MiB) cannot even be reserved */
		if (ratectl_open(&h, dir, NULL) != -EFBIG || !strstr(ratectl_errmsg(), dir))
			_exit(1);
		o.map_size = 1u << 20;
		if (ratectl_open(&h, dir, &o) != 0)
			_exit(2);
		for (i = 0; i < 100000 && rc == 0; i++) {
			snprintf(name, sizeof name, "b%d", i);
			rc = ratectl_budget_set(h, name, &b, 0);
		}
		if (rc != -EFBIG || i < 100)
			_exit(3);
		/* what was there still works */
		if (ratectl_try(h, "b0", &c, &l, NULL) != 0 ||
		    ratectl_release(h, &l, RATECTL_UNKNOWN) != 0)
			_exit(4);
		ratectl_close(h);
		if (ratectl_open(&h, dir, &o) != 0 || ratectl_try(h, "b1", &c, &l, NULL) != 0)
			_exit(5);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));             /* no SIGBUS */
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Two users share a ledger through a group only when set up for it. */
static void test_group_sharing(void **state)
{
	fixture *f = *state;
	ratectl_options o = RATECTL_OPTIONS_INIT;
	ratectl_budget b = budget_simple(10, 10, 2);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	char dir[600];
	ratectl_lease l;
	ratectl *h;
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		skip();
		return;
	}
	snprintf(dir, sizeof dir, "%s", f->path);
	*strrchr(dir, '/') = '\0';
	assert_int_equal(chmod(dir, 0711), 0);  /* the other user may pass */
	snprintf(dir, sizeof dir, "%s-shared", f->path);
	assert_int_equal(mkdir(dir, 02770), 0);
	assert_int_equal(chown(dir, 0, 4242), 0);
	assert_int_equal(chmod(dir, 02770), 0);
	o.shared_group = 1;
	assert_int_equal(ratectl_open(&h, dir, NULL), RATECTL_EUNSAFE);  /* group-writable */
	assert_int_equal(ratectl_open(&h, dir, &o), 0);
	assert_int_equal(ratectl_budget_set(h, "shared", &b, 0), 0);
	assert_int_equal(ratectl_try(h, "shared", &c, &l, NULL), 0);
	if ((pid = fork()) == 0) {
		gid_t g = 4242;
		ratectl_lease cl;
		ratectl *ch;

		if (setgroups(1, &g) != 0 || setgid(4242) != 0 || setuid(65534) != 0)
			_exit(1);
		/* Not its own, but a setgid directory of its group: shared
		 * without asking (root, not of the group, was refused above). */
		if (ratectl_open(&ch, dir, NULL) != 0)
			_exit(2);
		if (ratectl_try(ch, "shared", &c, &cl, NULL) != 0)
			_exit(4);
		if (ratectl_try(ch, "shared", &c, &cl, NULL) != RATECTL_EINFLIGHT)
			_exit(5);       /* the parent's slot counts for this user too */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	ratectl_release(h, &l, RATECTL_UNKNOWN);
	ratectl_close(h);
}

/* ---- what issue reports found: debt, reboots, forks, many budgets ------ */

/* Ending a cooldown early keeps the debt of admissions: a daily limit
 * with 900 of 1000 used has about 100 left, not 999. */
static void test_cooldown_end_keeps_debt(void **state)
{
	fixture *f = *state;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost c = { 1, 900, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	int64_t wait;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_TOKENS, 1000, 86400 * SEC, 0 };
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_cooldown(f->h, "b", 30 * SEC), 0);
	f->clk.now += SEC;
	assert_int_equal(ratectl_cooldown(f->h, "b", 0), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.cooldown_ns, 0);
	assert_int_equal(info.state[0].available, 100);
	c.tokens = 999;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, &wait), RATECTL_ELIMITED);
	assert_true(wait > 3600 * SEC);
	c.tokens = 100;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	/* and "cooldown 0" with none under way changes nothing */
	assert_int_equal(ratectl_budget_reset(f->h, "b"), 0);
	assert_int_equal(ratectl_cooldown(f->h, "b", 0), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[0].available, 1000);
}

/* A timeout of 0 is one try: admitted when it fits now.  On the real
 * clock: time moves between taking the deadline and deciding. */
static void test_acquire_timeout_zero(void **state)
{
	char *path = tmp_ledger();
	ratectl_budget b = budget_simple(10, 1, 0);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	const char *const names[] = { "b2" };
	ratectl_lease l;
	ratectl *h;

	(void)state;
	assert_int_equal(ratectl_open(&h, path, NULL), 0);
	assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
	assert_int_equal(ratectl_budget_set(h, "b2", &b, 0), 0);
	assert_int_equal(ratectl_acquire(h, "b", &c, &l, 0), 0);
	assert_int_equal(ratectl_release(h, &l, RATECTL_UNKNOWN), 0);
	assert_int_equal(ratectl_acquire(h, "b", &c, &l, 0), RATECTL_ETIMEDOUT);
	assert_int_equal(ratectl_acquire_many(h, names, 1, &c, &l, 0), 0);
	assert_int_equal(ratectl_release(h, &l, RATECTL_UNKNOWN), 0);
	ratectl_close(h);
	tmp_ledger_rm(path);
}

/* Real usage far over the estimate and the burst is charged in full. */
static void test_reconcile_debit_in_full(void **state)
{
	fixture *f = *state;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost c = { 1, 1000, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_TOKENS, 10000, 60 * SEC, 1000 };
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, 20000), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	/* 20,000 tokens at 10,000/min: two minutes to repay */
	assert_int_equal(info.state[0].until_full_ns, 120 * SEC);
	assert_int_equal(info.state[0].available, 0);
	/* an absurd report saturates, never wraps around to "full" */
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), RATECTL_ELIMITED);
	f->clk.now += 120 * SEC;
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	assert_int_equal(ratectl_release(f->h, &l, UINT64_MAX - 1), 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[0].available, 0);
	assert_true(info.state[0].until_full_ns > 100LL * 365 * 86400 * SEC);
}

/* Budget id's bucket in the wake file, as the previous boot left it. */
static rc_bucket *map_hdr(const char *path, uint32_t id, int *fd)
{
	char p[600];
	void *m;

	snprintf(p, sizeof p, "%s/wake", path);
	*fd = open(p, O_RDWR);
	assert_true(*fd >= 0);
	m = mmap(NULL, RC_WAKE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	assert_true(m != MAP_FAILED);
	return (rc_bucket *)((char *)m + RC_WAKE_HDR) + (id & (RC_NBUCKETS - 1));
}

/* A disk ledger rebooted with a cooldown, a batch reservation and a
 * watcher (a live pid) in its bucket: after the reboot acquire
 * returns, and nothing of the old boot's waiting remains. */
static void test_reboot_with_waiters(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(10, 10, 4);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL }, batch = { 1, 0, RATECTL_BATCH, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	rc_bucket *hd;
	int i, fd, status;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
		ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
	/* a batch place reserved ahead, then a long cooldown */
	assert_int_equal(ratectl_acquire(f->h, "b", &batch, &l, 10 * SEC), 0);
	ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	assert_int_equal(ratectl_cooldown(f->h, "b", 10 * SEC), 0);
	hd = map_hdr(f->path, 1, &fd);
	hd->watcher = 1;            /* a pid that lives: init */
	hd->waiters = 3;
	hd->cwaiters = 2;
	ratectl_close(f->h);
	/* New boot, 20 s after the old one's last moment. */
	f->clk.realtime += f->clk.now + 20 * SEC - 5 * SEC;
	f->clk.now = 5 * SEC;
	f->h = open_with(f, "boot-b");
	assert_int_equal(hd->watcher, 0);
	assert_int_equal(hd->waiters, 0);
	assert_int_equal(hd->cwaiters, 0);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	/* the 10 s cooldown ended while the host was down */
	assert_int_equal(info.cooldown_ns, 0);
	if ((pid = fork()) == 0) {
		alarm(10);      /* the bug: cancel and retry forever */
		if (ratectl_acquire(f->h, "b", &c, &l, 60 * SEC) != 0)
			_exit(1);
		if (ratectl_acquire(f->h, "b", &batch, &l, 60 * SEC) != 0)
			_exit(2);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	munmap((char *)hd - RC_WAKE_HDR - (1 & (RC_NBUCKETS - 1)) * sizeof *hd, RC_WAKE_SIZE);
	close(fd);
}

/* An NTP step forward later in the boot forgives no debt at the reboot. */
static void test_reboot_after_clock_step(void **state)
{
	fixture *f = *state;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	int i;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, 60, 60 * SEC, 0 };
	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	for (i = 0; i < 60; i++) {
		assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
		ratectl_release(f->h, &l, RATECTL_UNKNOWN);
	}
	/* The wall clock was 30 s behind; NTP steps it; the ledger hears of
	 * it at the next change (here a cooldown on another budget). */
	f->clk.realtime += 30 * SEC;
	assert_int_equal(ratectl_budget_set(f->h, "other", &b, 0), 0);
	ratectl_close(f->h);
	f->clk.realtime += f->clk.now + 20 * SEC - 5 * SEC;
	f->clk.now = 5 * SEC;
	f->h = open_with(f, "boot-b");
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.state[0].available, 20);     /* not 50 */
}

/* A forked child closing the handle it inherited (atexit) leaves the
 * parent's slots as they are. */
static void test_child_close_keeps_parent_slots(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 2);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease l;
	int status;
	pid_t pid;

	assert_int_equal(ratectl_budget_set(f->h, "b", &b, 0), 0);
	assert_int_equal(ratectl_try(f->h, "b", &c, &l, NULL), 0);
	if ((pid = fork()) == 0) {
		ratectl_close(f->h);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(ratectl_budget_get(f->h, "b", &info), 0);
	assert_int_equal(info.inflight, 1);
	assert_int_equal(info.dead, 0);
	assert_int_equal(ratectl_release(f->h, &l, RATECTL_UNKNOWN), 0);
}

static int count_admitted(const ratectl_budget_info *info, void *ctx)
{
	unsigned *n = ctx;

	n[0] += info->counters.admitted == 1;
	n[1] += info->inflight;
	return 0;
}

static unsigned count_files(const char *path)
{
	char cmd[700];
	unsigned n = 0;
	FILE *p;

	snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%u", &n), 1);
	pclose(p);
	return n;
}

/* Reading many budgets keeps no descriptor per budget, creates no file,
 * and reports what it reads, or fails: never a silent zero. */
static void test_read_many_budgets(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 2);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	char name[32];
	int i, status, p[2];
	unsigned files;
	pid_t holder, reader;

	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "b%03d", i);
		assert_int_equal(ratectl_budget_set(f->h, name, &b, 0), 0);
	}
	assert_int_equal(ratectl_budget_set(f->h, "never", &b, 0), 0);
	assert_int_equal(pipe(p), 0);
	if ((holder = fork()) == 0) {
		ratectl_lease l;

		prctl(PR_SET_PDEATHSIG, SIGKILL);       /* never outlives the test */
		for (i = 0; i < 300; i++) {
			snprintf(name, sizeof name, "b%03d", i);
			if (ratectl_try(f->h, name, &c, &l, NULL) != 0)
				_exit(1);
			if (i < 299)
				ratectl_release(f->h, &l, RATECTL_UNKNOWN);
		}
		if (write(p[1], "h", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	{
		char x;
		assert_int_equal(read(p[0], &x, 1), 1);
	}
	/* data.mdb, lock.mdb and wake, whatever the number of budgets */
	files = count_files(f->path);
	assert_int_equal(files, 3);

	if ((reader = fork()) == 0) {
		struct rlimit rl = { 64, 64 };
		ratectl_budget_info info;
		ratectl_lease_info li[2];
		unsigned n[2] = { 0, 0 };
		size_t nl;

		ratectl_close(f->h);
		setrlimit(RLIMIT_NOFILE, &rl);
		f->h = open_with(f, "boot-a");      /* the same boot */
		if (ratectl_budget_foreach(f->h, count_admitted, n) != 0)
			_exit(11);
		if (n[0] != 300 || n[1] != 1)
			_exit(12);
		if (ratectl_budget_get(f->h, "b299", &info) != 0 || info.inflight != 1 ||
		    ratectl_budget_get(f->h, "never", &info) != 0 ||
		    info.counters.admitted != 0)
			_exit(13);
		if (ratectl_leases(f->h, "b299", li, 2, &nl) != 0 || nl != 1 || !li[0].alive ||
		    ratectl_leases(f->h, "never", li, 2, &nl) != 0 || nl != 0)
			_exit(14);
		_exit(0);
	}
	assert_int_equal(waitpid(reader, &status, 0), reader);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(count_files(f->path), files);     /* a reader made none */
	kill(holder, SIGKILL);
	waitpid(holder, &status, 0);
}

/* ---- fork and threads ---------------------------------------------------- */

static void test_fork_children_use_parent_handle(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000, 1000, 8);
	ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_budget_info info;
	ratectl_lease parent_lease;
	int i, status;
	pid_t pid[4];

	ratectl_close(f->h);
	f->h = NULL;
	{
		ratectl *h;

		assert_int_equal(ratectl_open(&h, f->path, NULL), 0);
		assert_int_equal(ratectl_budget_set(h, "b", &b, 0), 0);
		assert_int_equal(ratectl_try(h, "b", &c, &parent_lease, NULL), 0);
		for (i = 0; i < 4; i++) {
			pid[i] = fork();
			if (pid[i] == 0) {
				ratectl_lease l;
				int rc = 0, j;

				/* the parent's lease is not the child's to release */
				if (ratectl_release(h, &parent_lease, RATECTL_UNKNOWN) !=
				    RATECTL_EFORKED)
					_exit(10);
				for (j = 0; j < 50 && rc == 0; j++) {
					rc = ratectl_try(h, "b", &c, &l, NULL);
					if (rc == 0)
						rc = ratectl_release(h, &l, RATECTL_UNKNOWN);
				}
				if (rc != 0)
					fprintf(stderr, "child: %s (%s)\n", ratectl_strerror(rc), ratectl_errmsg());
				_exit(rc == 0 ? 0 : 11);
			}
		}
		for (i = 0; i < 4; i++) {
			assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
		}
		assert_int_equal(ratectl_budget_get(h, "b", &info), 0);
		assert_int_equal(info.counters.admitted, 201);
		assert_int_equal(info.inflight, 1);     /* the parent's, still held */
		assert_int_equal(info.dead, 0);
		assert_int_equal(ratectl_release(h, &parent_lease, RATECTL_UNKNOWN), 0);
		assert_int_equal(ratectl_budget_get(h, "b", &info), 0);
		assert_int_equal(info.inflight, 0);
		ratectl_close(h);
	}
}

struct thread_arg {
	ratectl *h;
	int admitted;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	ratectl_cost c = { 1, 1, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l;
	int i;

	for (i = 0; i < 500; i++) {
		if (ratectl_try(a->h, "t", &c, &l, NULL) == 0) {
			a->admitted++;
			if (ratectl_release(a->h, &l, 1) != 0)
				return (void *)1;
		}
	}
	return NULL;
}

static void test_threads_share_handle(void **state)
{
	fixture *f = *state;
	ratectl_budget b = budget_simple(1000000, 1000000, 3);
	struct thread_arg args[8];
	pthread_t th[8];
	ratectl_budget_info info;
	ratectl *h;
	int i, total = 0;
	void *ret;

	assert_int_equal(ratectl_open(&h, f->path, NULL), 0);  /* shares f->h */
	assert_ptr_equal(h, f->h);
	assert_int_equal(ratectl_budget_set(h, "t", &b, 0), 0);
	for (i = 0; i < 8; i++) {
		args[i] = (struct thread_arg){ h, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
		total += args[i].admitted;
	}
	assert_int_equal(ratectl_budget_get(h, "t", &info), 0);
	assert_int_equal(info.counters.admitted, (uint64_t)total);
	assert_true(total > 0);
	assert_int_equal(info.inflight, 0);
	assert_int_equal(info.dead, 0);
	ratectl_close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_set_get_and_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_try_burst_wait_hint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acquire_sleeps_exactly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acquire_interrupted_gives_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_live_and_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_observe_tightens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_budget_and_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reboot_rebases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_directories, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_and_newer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_lmdb_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_sharing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fork_children_use_parent_handle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_share_handle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cooldown_end_keeps_debt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_debit_in_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acquire_timeout_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reboot_with_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reboot_after_clock_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_close_keeps_parent_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_many_budgets, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
