/*
 * test_faults.c - failures injected under the library: a commit that
 * fails, with a map that cannot grow.
 *
 * This program defines mdb_txn_commit() itself; the library, linked in
 * statically, calls this one, which calls LMDB's own unless a failure is
 * asked for.  LMDB can fail a commit with MDB_MAP_FULL when it saves its
 * free-page list, after every write of the transaction succeeded; that
 * is rare and cannot be arranged from outside, so it is made here.
 */
#include <dlfcn.h>
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

static int fail_commits;        /* commits to fail with MDB_MAP_FULL */

int mdb_txn_commit(MDB_txn *txn)
{
	static int (*real)(MDB_txn *);

	if (!real)
		real = (int (*)(MDB_txn *))dlsym(RTLD_NEXT, "mdb_txn_commit");
	if (fail_commits > 0) {
		fail_commits--;
		mdb_txn_abort(txn);
		return MDB_MAP_FULL;
	}
	return real(txn);
}

/* An admission whose commit fails, and whose map cannot grow, gives its
 * in-flight slot back: the next admission gets it. */
static void test_failed_commit_keeps_no_slot(void **state)
{
	char *path = tmp_ledger();
	int status;
	pid_t pid;

	(void)state;
	if ((pid = fork()) == 0) {
		ratectl_budget b = budget_simple(1000, 1000, 1);
		ratectl_cost c = { 1, 0, RATECTL_INTERACTIVE, NULL };
		ratectl_budget_info info;
		char data[600];
		struct stat st;
		struct rlimit rl;
		ratectl_lease l;
		ratectl *h;
		int rc;

		if (ratectl_open(&h, path, NULL) != 0 ||
		    ratectl_budget_set(h, "b", &b, 0) != 0)
			_exit(1);
		/* warm up: the lease file exists and is open */
		if (ratectl_try(h, "b", &c, &l, NULL) != 0 ||
		    ratectl_release(h, &l, RATECTL_UNKNOWN) != 0)
			_exit(2);
		/* the map cannot grow past the file as it is */
		snprintf(data, sizeof data, "%s/data.mdb", path);
		if (stat(data, &st) != 0)
			_exit(3);
		signal(SIGXFSZ, SIG_IGN);
		rl.rlim_cur = rl.rlim_max = (rlim_t)st.st_size;
		setrlimit(RLIMIT_FSIZE, &rl);
		fail_commits = 1;
		rc = ratectl_try(h, "b", &c, &l, NULL);
		if (rc != -EFBIG && rc != -ENOSPC)
			_exit(4);
		if (ratectl_budget_get(h, "b", &info) != 0 || info.inflight != 0)
			_exit(5);
		/* the one slot is free: the next admission gets it */
		if (ratectl_try(h, "b", &c, &l, NULL) != 0)
			_exit(6);
		if (ratectl_release(h, &l, RATECTL_UNKNOWN) != 0)
			_exit(7);
		ratectl_close(h);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	tmp_ledger_rm(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_commit_keeps_no_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
