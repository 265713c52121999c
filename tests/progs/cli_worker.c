/*
 * cli_worker - a client for tests/test_cli.sh: admits one request at a
 * time against a budget for a while, printing the time of each admission,
 * so that the shell test can check from outside what `ratectl apply` did
 * to the pace of processes that were already running.
 *
 * usage: cli_worker LEDGER BUDGET SECONDS   admit until SECONDS have passed;
 *                                           print one line per admission:
 *                                           its time in ns (the lease's
 *                                           start_ns, on ratectl_now's clock)
 *        cli_worker LEDGER --now            print ratectl_now() and exit
 *
 * Exits 0 when every admission either succeeded or timed out at the end,
 * 1 on any other error (printed to stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratectl.h"

#define SEC 1000000000LL

static int fail(const char *what, int rc)
{
	fprintf(stderr, "cli_worker: %s: %s (%s)\n", what, ratectl_strerror(rc),
	        ratectl_errmsg());
	return 1;
}

static int admit_until(ratectl *h, const char *name, int64_t end)
{
	ratectl_cost cost = { 1, 0, RATECTL_INTERACTIVE, NULL };
	ratectl_lease lease;
	int64_t now;
	int rc;

	while ((now = ratectl_now(h)) < end) {
		rc = ratectl_acquire(h, name, &cost, &lease, end - now);
		if (rc == RATECTL_ETIMEDOUT)
			break;
		if (rc != 0)
			return fail("acquire", rc);
		/* The admission time the library granted, not when this
		 * process got to run again: the bound holds on the former. */
		printf("%lld\n", (long long)lease.start_ns);
		if ((rc = ratectl_release(h, &lease, RATECTL_UNKNOWN)) != 0)
			return fail("release", rc);
	}
	return 0;
}

int main(int argc, char **argv)
{
	ratectl *h;
	int rc;

	if (argc < 3 || (strcmp(argv[2], "--now") != 0 && argc != 4)) {
		fprintf(stderr, "usage: cli_worker LEDGER BUDGET SECONDS | LEDGER --now\n");
		return 2;
	}
	if ((rc = ratectl_open(&h, argv[1], NULL)) != 0)
		return fail("open", rc);
	if (strcmp(argv[2], "--now") == 0)
		printf("%lld\n", (long long)ratectl_now(h));
	else
		rc = admit_until(h, argv[2], ratectl_now(h) + (int64_t)(atof(argv[3]) * SEC));
	ratectl_close(h);
	return rc;
}
