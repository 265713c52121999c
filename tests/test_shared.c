/*
 * test_shared.c - budgets shared by many hosts through Redis (shared.c),
 * with a real redis-server the test starts on a unix socket and stops.
 * "Hosts" are separate ledgers in this process: each its own LMDB
 * environment, lease files and refiller threads, exactly as on separate
 * machines but for the kernel they share.  The refillers run on the real
 * clock; the tests wait for what they do with bounded polls.
 *
 * Also the format change that came with sharing: a version 1 ledger is
 * upgraded in place when it is opened.
 */
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

static char redis_dir[128];
static char redis_sock[200];
static pid_t redis_pid;

static void nap(int64_t ns)
{
	struct timespec ts = { ns / SEC, ns % SEC };

	nanosleep(&ts, NULL);
}

/* Start redis-server on the socket of redis_dir (again, after a kill). */
static void redis_spawn(void)
{
	int64_t until;

	unlink(redis_sock);
	redis_pid = fork();
	assert_true(redis_pid >= 0);
	if (redis_pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		/* Gone with the test, even when an assertion ends it early. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket",
		       redis_sock, "--save", "", "--appendonly", "no", "--dir", redis_dir,
		       (char *)NULL);
		_exit(127);
	}
	for (until = mono() + 10 * SEC; mono() < until; nap(10 * MSEC)) {
		struct stat st;
		int status;

		if (stat(redis_sock, &st) == 0)
			return;
		if (waitpid(redis_pid, &status, WNOHANG) == redis_pid)
			fail_msg("redis-server did not start (is it installed? tools/deps.sh "
			         "test installs it)");
	}
	fail_msg("redis-server: no socket %s after 10 s", redis_sock);
}

/* A private redis-server on a unix socket: nothing saved, nothing on TCP. */
static void redis_start(void)
{
	char tmpl[] = "/tmp/ratectl-shared-redis-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	snprintf(redis_dir, sizeof redis_dir, "%s", tmpl);
	snprintf(redis_sock, sizeof redis_sock, "%s/redis.sock", redis_dir);
	redis_spawn();
}

static void redis_kill(void)
{
	int status;

	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, &status, 0);
		redis_pid = 0;
	}
}

static void redis_stop(void)
{
	char cmd[256];

	redis_kill();
	if (!redis_dir[0])
		return;
	unlink(redis_sock);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", redis_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", redis_dir);
	redis_dir[0] = '\0';
}

/* After each test, whatever ended it: no server left behind. */
static int redis_teardown(void **st)
{
	(void)st;
	redis_stop();
	return 0;
}

/* redis-cli against the private server. */
static void redis_cli(const char *args)
{
	char cmd[512];

	snprintf(cmd, sizeof cmd, "redis-cli -s '%s' %s >/dev/null", redis_sock, args);
	assert_int_equal(system(cmd), 0);
}

static ratectl_share share_of(const char *url, unsigned hosts)
{
	ratectl_share s;

	memset(&s, 0, sizeof s);
	s.version = RATECTL_SHARE_VERSION;
	snprintf(s.url, sizeof s.url, "%s", url);
	s.hosts = hosts;
	return s;
}

static void redis_url(char *out, size_t n)
{
	snprintf(out, n, "unix://%s", redis_sock);
}

/* One request limit of count per second, burst. */
static void set_budget(ratectl *h, const char *name, uint64_t count, uint64_t burst)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;

	b.nlimits = 1;
	b.limits[0].dim = RATECTL_REQUESTS;
	b.limits[0].count = count;
	b.limits[0].period_ns = SEC;
	b.limits[0].burst = burst;
	assert_int_equal(ratectl_budget_set(h, name, &b, 0), 0);
}

static int state(ratectl *h, const char *name, ratectl_shared_state *st)
{
	return ratectl_budget_shared_state(h, name, st);
}

static const ratectl_cost one = { 1, 0, RATECTL_INTERACTIVE, NULL };

/* ---- the format ------------------------------------------------------------ */

/* A version 1 ledger (written before sharing existed) opens, is upgraded
 * in place to version 2, and keeps its budgets. */
static void test_format_upgrade(void **st)
{
	char *dir = tmp_ledger();
	ratectl *h;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 5, (void *)".meta" }, v;
	uint32_t meta[2];
	ratectl_lease l;

	(void)st;
	assert_int_equal(ratectl_open(&h, dir, NULL), 0);
	set_budget(h, "old", 10, 10);
	ratectl_close(h);
	/* Write version 1 into the format record, as an older build did. */
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	{
		char buf[256];

		assert_true(v.mv_size <= sizeof buf);
		memcpy(buf, v.mv_data, v.mv_size);
		memcpy(meta, buf, sizeof meta);
		assert_int_equal(meta[1], RATECTL_FORMAT_VERSION);
		meta[1] = 1;
		memcpy(buf, meta, sizeof meta);
		v.mv_data = buf;
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	assert_int_equal(ratectl_open(&h, dir, NULL), 0);
	assert_int_equal(ratectl_try(h, "old", &one, &l, NULL), 0);
	assert_int_equal(ratectl_release(h, &l, RATECTL_UNKNOWN), 0);
	ratectl_close(h);
	/* ... and the record now says this build's version. */
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	memcpy(meta, v.mv_data, sizeof meta);
	assert_int_equal(meta[1], RATECTL_FORMAT_VERSION);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	tmp_ledger_rm(dir);
}

/* ---- the API ----------------------------------------------------------------- */

static void test_share_api(void **st)
{
	char *dir = tmp_ledger();
	ratectl_shared_state ss;
	ratectl_share s;
	ratectl *h;
	char big[400];

	(void)st;
	assert_int_equal(ratectl_open(&h, dir, NULL), 0);
	set_budget(h, "b", 10, 10);
	s = share_of("redis://127.0.0.1:6379/0", 3);
	assert_int_equal(ratectl_budget_share(h, "nope", &s), RATECTL_ENOTFOUND);
	s = share_of("http://127.0.0.1/", 3);
	assert_int_equal(ratectl_budget_share(h, "b", &s), RATECTL_EBADCONFIG);
	assert_non_null(strstr(ratectl_errmsg(), "http://127.0.0.1/"));
	s = share_of("redis://127.0.0.1:6379/0", 0);
	assert_int_equal(ratectl_budget_share(h, "b", &s), RATECTL_EBADCONFIG);
	s = share_of("redis://127.0.0.1:6379/0", 3);
	snprintf(s.password_file, sizeof s.password_file, "/etc/pw");
	snprintf(s.password_env, sizeof s.password_env, "PW");
	assert_int_equal(ratectl_budget_share(h, "b", &s), RATECTL_EBADCONFIG);
	/* A string without its NUL inside the field is refused, not read past. */
	s = share_of("redis://127.0.0.1:6379/0", 3);
	memset(s.url, 'x', sizeof s.url);
	assert_int_equal(ratectl_budget_share(h, "b", &s), RATECTL_EBADCONFIG);
	memset(big, 'h', sizeof big);
	big[sizeof big - 1] = '\0';
	s = share_of("", 3);
	memcpy(s.url, "redis://", 8);
	memcpy(s.url + 8, big, sizeof s.url - 9);
	s.url[sizeof s.url - 1] = '\0';
	/* 255 bytes, the field's size - 1: a name of 247 bytes is a URL */
	assert_int_equal(strlen(s.url), RATECTL_SHARE_URL_MAX);
	assert_int_equal(ratectl_budget_share(h, "b", &s), 0);
	s = share_of("", 1);
	assert_int_equal(ratectl_budget_share(h, "b", &s), 0);

	/* Not shared: nothing to say. */
	assert_int_equal(state(h, "b", &ss), 0);
	assert_string_equal(ss.share.url, "");
	/* Shared (to a port nobody listens on): the state says so. */
	s = share_of("redis://127.0.0.1:1/0", 3);
	assert_int_equal(ratectl_budget_share(h, "b", &s), 0);
	assert_int_equal(state(h, "b", &ss), 0);
	assert_string_equal(ss.share.url, "redis://127.0.0.1:1/0");
	assert_int_equal(ss.share.hosts, 3);
	assert_int_equal(ss.credit[0], 0);
	/* New limits keep the sharing (an update must not quietly let this
	 * host admit its full limits). */
	set_budget(h, "b", 20, 20);
	assert_int_equal(state(h, "b", &ss), 0);
	assert_string_equal(ss.share.url, "redis://127.0.0.1:1/0");
	/* Stopped. */
	s = share_of("", 1);
	assert_int_equal(ratectl_budget_share(h, "b", &s), 0);
	assert_int_equal(state(h, "b", &ss), 0);
	assert_string_equal(ss.share.url, "");
	/* Deleted with its budget: a new budget of that name is not shared. */
	s = share_of("redis://127.0.0.1:1/0", 3);
	assert_int_equal(ratectl_budget_share(h, "b", &s), 0);
	assert_int_equal(ratectl_budget_delete(h, "b"), 0);
	set_budget(h, "b", 10, 10);
	assert_int_equal(state(h, "b", &ss), 0);
	assert_string_equal(ss.share.url, "");
	ratectl_close(h);
	tmp_ledger_rm(dir);
}

/* Redis unreachable: degraded, and each host admits 1/hosts of the limit
 * (40/s burst 8 over 4 hosts: burst 2, then 10/s). */
static void test_degraded_fallback(void **st)
{
	char *dir = tmp_ledger();
	ratectl_shared_state ss;
	ratectl_share s = share_of("redis://127.0.0.1:1/0", 4);
	ratectl_lease l;
	ratectl *h;
	int64_t t0, until, wait;
	unsigned admitted = 0;
	int rc;

	(void)st;
	assert_int_equal(ratectl_open(&h, dir, NULL), 0);
	set_budget(h, "d", 40, 8);
	assert_int_equal(ratectl_budget_share(h, "d", &s), 0);
	/* No credit before the first sync: refused (the refusal starts the
	 * refiller) until the sync fails. */
	for (until = mono() + 5 * SEC; mono() < until; nap(10 * MSEC)) {
		if (ratectl_try(h, "d", &one, &l, NULL) == 0)   /* degraded by now */
			ratectl_release(h, &l, RATECTL_UNKNOWN);
		assert_int_equal(state(h, "d", &ss), 0);
		if (ss.degraded)
			break;
	}
	assert_true(ss.degraded);
	assert_true(ss.degraded_since > 0);
	assert_true(ss.last_error[0] != '\0');
	t0 = mono();
	while (mono() - t0 < 1 * SEC) {
		rc = ratectl_try(h, "d", &one, &l, &wait);
		if (rc == 0) {
			admitted++;
			ratectl_release(h, &l, RATECTL_UNKNOWN);
		} else {
			assert_int_equal(rc, RATECTL_ELIMITED);
			nap(wait < 20 * MSEC ? wait : 20 * MSEC);
		}
	}
	/* 2 + 10/s over 1 s: 12, give or take the last one. */
	print_message("degraded: %u admitted in 1 s on a 1/4 share of 40/s burst 8\n",
	              admitted);
	assert_true(admitted >= 10 && admitted <= 13);
	ratectl_close(h);
	tmp_ledger_rm(dir);
}

/* The same with on_redis_error = open: the budget's own limits. */
static void test_degraded_open(void **st)
{
	char *dir = tmp_ledger();
	ratectl_shared_state ss;
	ratectl_share s = share_of("redis://127.0.0.1:1/0", 4);
	ratectl_lease l;
	ratectl *h;
	int64_t until;
	unsigned i;

	(void)st;
	s.flags = RATECTL_SHARE_OPEN;
	assert_int_equal(ratectl_open(&h, dir, NULL), 0);
	set_budget(h, "o", 40, 8);
	assert_int_equal(ratectl_budget_share(h, "o", &s), 0);
	for (until = mono() + 5 * SEC; mono() < until; nap(10 * MSEC)) {
		if (ratectl_try(h, "o", &one, &l, NULL) == 0)   /* degraded by now */
			ratectl_release(h, &l, RATECTL_UNKNOWN);
		assert_int_equal(state(h, "o", &ss), 0);
		if (ss.degraded)
			break;
	}
	assert_true(ss.degraded);
	assert_int_equal(ratectl_budget_reset(h, "o"), 0);   /* full again */
	for (i = 0; i < 8; i++) {
		assert_int_equal(ratectl_try(h, "o", &one, &l, NULL), 0);
		ratectl_release(h, &l, RATECTL_UNKNOWN);
	}
	assert_int_equal(ratectl_try(h, "o", &one, &l, NULL), RATECTL_ELIMITED);
	ratectl_close(h);
	tmp_ledger_rm(dir);
}

/* ---- with Redis ------------------------------------------------------------- */

struct hosts {
	char *dir[3];
	ratectl *h[3];
};

static void hosts_open(struct hosts *hs, unsigned n, const char *name,
                       uint64_t count, uint64_t burst)
{
	ratectl_share s;
	char url[256];
	unsigned i;

	redis_url(url, sizeof url);
	s = share_of(url, n);
	for (i = 0; i < n; i++) {
		hs->dir[i] = tmp_ledger();
		assert_int_equal(ratectl_open(&hs->h[i], hs->dir[i], NULL), 0);
		set_budget(hs->h[i], name, count, burst);
		assert_int_equal(ratectl_budget_share(hs->h[i], name, &s), 0);
	}
}

static void hosts_close(struct hosts *hs, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		ratectl_close(hs->h[i]);
		tmp_ledger_rm(hs->dir[i]);
	}
}

/* Admit in turns on every host for `ns`: how many each got. */
static void admit_for(struct hosts *hs, unsigned n, const char *name, int64_t ns,
                      unsigned *got, int64_t *first, int64_t *last)
{
	int64_t t0 = mono();
	ratectl_lease l;
	unsigned i;

	*first = *last = 0;
	while (mono() - t0 < ns) {
		for (i = 0; i < n; i++)
			if (ratectl_try(hs->h[i], name, &one, &l, NULL) == 0) {
				got[i]++;
				*last = mono();
				if (!*first)
					*first = *last;
				ratectl_release(hs->h[i], &l, RATECTL_UNKNOWN);
			}
		nap(200 * 1000);
	}
}

/* A waiter starved of credit is woken by the sync that brings it: well
 * before its own 50 ms look (a missed wake-up would cost those). */
static void test_credit_wakes_waiter(void **st)
{
	struct hosts hs;
	ratectl_lease l;
	int64_t t0, worst = 0;
	unsigned i;

	(void)st;
	redis_start();
	hosts_open(&hs, 1, "w", 1000, 1000);
	for (i = 0; i < 5; i++) {
		ratectl_share s;
		char url[256];

		/* Sharing again drops nothing, so start from an empty credit:
		 * a new budget each round. */
		if (i > 0) {
			char name[16];

			snprintf(name, sizeof name, "w%u", i);
			set_budget(hs.h[0], name, 1000, 1000);
			redis_url(url, sizeof url);
			s = share_of(url, 1);
			assert_int_equal(ratectl_budget_share(hs.h[0], name, &s), 0);
			t0 = mono();
			assert_int_equal(ratectl_acquire(hs.h[0], name, &one, &l, 5 * SEC), 0);
		} else {
			t0 = mono();
			assert_int_equal(ratectl_acquire(hs.h[0], "w", &one, &l, 5 * SEC), 0);
		}
		if (mono() - t0 > worst)
			worst = mono() - t0;
		ratectl_release(hs.h[0], &l, RATECTL_UNKNOWN);
	}
	print_message("the first admission of a new shared budget: %.1f ms at worst\n",
	              (double)worst / MSEC);
	{
		ratectl_shared_state ss;

		/* The commands counted include the connection's setup (SCRIPT
		 * LOAD at least) beside one EVALSHA a sync. */
		assert_int_equal(state(hs.h[0], "w", &ss), 0);
		assert_true(ss.syncs >= 1);
		assert_true(ss.redis_commands >= ss.syncs + 1);
	}
	assert_true(worst < 40 * MSEC);
	hosts_close(&hs, 1);
	redis_stop();
}

/* Three hosts on one shared budget of 100/s burst 10: together they never
 * pass burst + rate * t, and use most of it. */
static void test_three_hosts_one_bound(void **st)
{
	struct hosts hs;
	unsigned got[3] = { 0, 0, 0 }, total;
	int64_t first, last;
	double allowed;

	(void)st;
	redis_start();
	hosts_open(&hs, 3, "g", 100, 10);
	admit_for(&hs, 3, "g", 2 * SEC, got, &first, &last);
	total = got[0] + got[1] + got[2];
	allowed = 10 + 100.0 * (double)(last - first) / SEC;
	print_message("3 hosts: %u + %u + %u = %u admitted, %.0f allowed over %.2f s\n",
	              got[0], got[1], got[2], total, allowed, (double)(last - first) / SEC);
	assert_true(total <= allowed + 1);
	assert_true(total >= 0.85 * allowed);
	assert_true(got[0] > 0 && got[1] > 0 && got[2] > 0);
	hosts_close(&hs, 3);
	redis_stop();
}

/* A cooldown on one host reaches the others through Redis. */
static void test_cooldown_spreads(void **st)
{
	struct hosts hs;
	ratectl_budget_info bi;
	ratectl_shared_state ss;
	ratectl_lease l;
	int64_t t0, until;

	(void)st;
	redis_start();
	hosts_open(&hs, 2, "c", 100, 10);
	/* Both synced once (so each knows the server's clock). */
	for (until = mono() + 5 * SEC; mono() < until; nap(10 * MSEC)) {
		ratectl_shared_state s0;

		ratectl_try(hs.h[0], "c", &one, &l, NULL) == 0 ?
			(void)ratectl_release(hs.h[0], &l, RATECTL_UNKNOWN) : (void)0;
		ratectl_try(hs.h[1], "c", &one, &l, NULL) == 0 ?
			(void)ratectl_release(hs.h[1], &l, RATECTL_UNKNOWN) : (void)0;
		assert_int_equal(state(hs.h[0], "c", &s0), 0);
		assert_int_equal(state(hs.h[1], "c", &ss), 0);
		if (s0.syncs > 0 && ss.syncs > 0)
			break;
	}
	assert_true(ss.syncs > 0);
	t0 = mono();
	assert_int_equal(ratectl_cooldown(hs.h[0], "c", 5 * SEC), 0);
	for (until = t0 + 3 * SEC; mono() < until; nap(5 * MSEC)) {
		assert_int_equal(ratectl_budget_get(hs.h[1], "c", &bi), 0);
		if (bi.cooldown_ns > 0)
			break;
	}
	print_message("cooldown reached the other host after %.0f ms\n",
	              (double)(mono() - t0) / MSEC);
	assert_true(bi.cooldown_ns > 3 * SEC);
	/* Within the sync interval (1 s), a round trip and this poll. */
	assert_true(mono() - t0 < 1500 * MSEC);
	hosts_close(&hs, 2);
	redis_stop();
}

/* A provider's header that tightens a limit on one host reaches the
 * others: the global TAT moves, so a host that holds no credit must wait
 * for the bucket the header described (10/s, "0 left": 100 ms for the
 * next unit), where a full bucket would have given one at once. */
static void test_tightening_spreads(void **st)
{
	struct hosts hs;
	ratectl_window w = RATECTL_WINDOW_INIT;
	ratectl_shared_state s0, s1;
	ratectl_lease l;
	int64_t until, t0, waited;
	int changed = 0;

	(void)st;
	redis_start();
	hosts_open(&hs, 2, "t", 10, 10);
	/* Host 0 admits once (its refiller starts); host 1 has not admitted
	 * yet: no refiller, no credit. */
	assert_int_equal(ratectl_acquire(hs.h[0], "t", &one, &l, 3 * SEC), 0);
	ratectl_release(hs.h[0], &l, RATECTL_UNKNOWN);
	assert_int_equal(state(hs.h[0], "t", &s0), 0);
	assert_true(s0.syncs > 0);
	assert_int_equal(state(hs.h[1], "t", &s1), 0);
	assert_int_equal(s1.credit[0], 0);
	/* Host 0 hears "0 left, full again in 1 s" for the 10/s limit. */
	w.dim = RATECTL_REQUESTS;
	w.remaining = 0;
	w.reset_ns = SEC;
	w.limit = 10;
	w.window_ns = SEC;
	assert_int_equal(ratectl_observe_window(hs.h[0], "t", &w, &changed), 0);
	assert_int_equal(changed, 1);
	{
		uint64_t before = s0.syncs;

		for (until = mono() + 3 * SEC; mono() < until; nap(5 * MSEC)) {
			assert_int_equal(state(hs.h[0], "t", &s0), 0);
			if (s0.syncs > before)
				break;          /* host 0 pushed it */
		}
		assert_true(s0.syncs > before);
	}
	t0 = mono();
	assert_int_equal(ratectl_acquire(hs.h[1], "t", &one, &l, 3 * SEC), 0);
	waited = mono() - t0;
	ratectl_release(hs.h[1], &l, RATECTL_UNKNOWN);
	print_message("host 1's first unit after host 0's header: %.0f ms\n",
	              (double)waited / MSEC);
	assert_true(waited >= 60 * MSEC);
	hosts_close(&hs, 2);
	redis_stop();
}

/* Redis restarted empty: the next sync rebuilds it from the host's state
 * (restored), and no fresh burst is handed out. */
static void test_restart_empty_no_fresh_burst(void **st)
{
	struct hosts hs;
	ratectl_shared_state ss;
	unsigned got[2] = { 0, 0 }, total;
	int64_t first, last, until;
	double allowed;

	(void)st;
	redis_start();
	hosts_open(&hs, 2, "r", 50, 50);
	/* Spend the burst, then keep the rate busy. */
	admit_for(&hs, 2, "r", 1 * SEC, got, &first, &last);
	redis_cli("FLUSHALL");
	got[0] = got[1] = 0;
	admit_for(&hs, 2, "r", 1 * SEC, got, &first, &last);
	total = got[0] + got[1];
	/* After the flush: the rate only, plus the credit held at the flush
	 * (at most a chunk per host), never the burst of 50 again. */
	allowed = 50.0 * (double)(last - first) / SEC + 2 * 25;
	print_message("after FLUSHALL: %u admitted in %.2f s (fresh burst would add 50)\n",
	              total, (double)(last - first) / SEC);
	assert_true(total <= allowed);
	for (until = mono() + 2 * SEC; mono() < until; nap(10 * MSEC)) {
		assert_int_equal(state(hs.h[0], "r", &ss), 0);
		if (ss.syncs > 0 && !ss.degraded)
			break;
	}
	hosts_close(&hs, 2);
	redis_stop();
}

/* Redis killed: degraded (fallback share), then back when it returns. */
static void test_redis_down_and_back(void **st)
{
	struct hosts hs;
	ratectl_shared_state ss;
	ratectl_lease l;
	int64_t until;

	(void)st;
	redis_start();
	hosts_open(&hs, 1, "k", 100, 10);
	for (until = mono() + 5 * SEC; mono() < until; nap(10 * MSEC)) {
		if (ratectl_try(hs.h[0], "k", &one, &l, NULL) == 0)
			ratectl_release(hs.h[0], &l, RATECTL_UNKNOWN);
		assert_int_equal(state(hs.h[0], "k", &ss), 0);
		if (ss.syncs > 0)
			break;
	}
	assert_false(ss.degraded);
	redis_kill();
	for (until = mono() + 5 * SEC; mono() < until; nap(10 * MSEC)) {
		if (ratectl_try(hs.h[0], "k", &one, &l, NULL) == 0)
			ratectl_release(hs.h[0], &l, RATECTL_UNKNOWN);
		assert_int_equal(state(hs.h[0], "k", &ss), 0);
		if (ss.degraded)
			break;
	}
	assert_true(ss.degraded);
	print_message("degraded: %s\n", ss.last_error);
	/* Back, on the same socket, empty: sharing resumes within the
	 * reconnection backoff. */
	redis_spawn();
	for (until = mono() + 10 * SEC; mono() < until; nap(20 * MSEC)) {
		if (ratectl_try(hs.h[0], "k", &one, &l, NULL) == 0)
			ratectl_release(hs.h[0], &l, RATECTL_UNKNOWN);
		assert_int_equal(state(hs.h[0], "k", &ss), 0);
		if (!ss.degraded)
			break;
	}
	assert_false(ss.degraded);
	hosts_close(&hs, 1);
	redis_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_upgrade),
		cmocka_unit_test(test_share_api),
		cmocka_unit_test(test_degraded_fallback),
		cmocka_unit_test(test_degraded_open),
		cmocka_unit_test_teardown(test_credit_wakes_waiter, redis_teardown),
		cmocka_unit_test_teardown(test_three_hosts_one_bound, redis_teardown),
		cmocka_unit_test_teardown(test_cooldown_spreads, redis_teardown),
		cmocka_unit_test_teardown(test_tightening_spreads, redis_teardown),
		cmocka_unit_test_teardown(test_restart_empty_no_fresh_burst, redis_teardown),
		cmocka_unit_test_teardown(test_redis_down_and_back, redis_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
