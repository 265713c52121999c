/*
 * check.c - `ratectl check [--repair]`, `ratectl reclaim` and `ratectl sweep`.
 *
 * check looks at the ledger only through the public API: the open itself
 * verifies the format version and the LMDB file, ratectl_budget_foreach()
 * validates every budget record (RATECTL_ECORRUPT on a damaged one),
 * ratectl_leases() compares the in-flight table with the locks, and the
 * values it reports are checked against the limits the header documents.
 *
 * --repair acts only on damage (a ledger that cannot be opened, or a
 * damaged record): the directory is moved aside, not deleted, so nothing
 * is lost for a post-mortem, and the budgets are rebuilt from the config
 * with RATECTL_EMPTY because what was used recently is unknown: starting
 * empty can only under-use the provider's limit, never exceed it.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define NS_PER_S 1000000000LL
#define YEAR_NS (366LL * 86400 * NS_PER_S)
#define JITTER_MAX_NS (3600 * NS_PER_S)

struct check {
	cli *c;
	unsigned problems, warnings, budgets;
	int damaged;               /* what --repair can fix */
};

static void report(struct check *k, int problem, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct check *k, int problem, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", problem ? "problem" : "warning");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (problem)
		k->problems++;
	else
		k->warnings++;
}

/* The ranges ratectl.h documents for a limit, and what its state can be:
 * available never above the burst, debt never beyond a year (the library
 * caps any one charge at a few bursts). */
static void check_limit(struct check *k, const char *name, unsigned i,
                        const ratectl_limit_state *s)
{
	const ratectl_limit *l = &s->limit;

	if (l->dim != RATECTL_REQUESTS && l->dim != RATECTL_TOKENS)
		report(k, 1, "%s: limit %u: unknown dimension %d", name, i, (int)l->dim);
	if (l->period_ns < RATECTL_PERIOD_MIN || l->period_ns > RATECTL_PERIOD_MAX ||
	    l->count < 1 || l->count > (uint64_t)l->period_ns || l->burst < 1)
		report(k, 1, "%s: limit %u: count %llu per %lld ns, burst %llu is out "
		       "of range", name, i, (unsigned long long)l->count,
		       (long long)l->period_ns, (unsigned long long)l->burst);
	if (s->available > l->burst)
		report(k, 1, "%s: limit %u: %llu available, more than its burst %llu",
		       name, i, (unsigned long long)s->available,
		       (unsigned long long)l->burst);
	if (s->until_full_ns < 0 || s->until_full_ns > YEAR_NS)
		report(k, 1, "%s: limit %u: full again only in %lld s; `ratectl reset "
		       "%s` refills it", name, i, (long long)(s->until_full_ns / NS_PER_S),
		       name);
}

static int check_budget(const ratectl_budget_info *in, void *ctx)
{
	struct check *k = ctx;
	const ratectl_budget *b = &in->config;
	unsigned i;

	k->budgets++;
	if (b->nlimits > RATECTL_MAX_LIMITS) {
		report(k, 1, "%s: %u limits, at most %d", in->name, b->nlimits,
		       RATECTL_MAX_LIMITS);
		return 0;
	}
	for (i = 0; i < b->nlimits; i++)
		check_limit(k, in->name, i, &in->state[i]);
	if (b->max_inflight > RATECTL_MAX_INFLIGHT ||
	    in->inflight + in->dead > RATECTL_MAX_INFLIGHT)
		report(k, 1, "%s: concurrency %u, %u in flight, %u dead: out of range",
		       in->name, b->max_inflight, in->inflight, in->dead);
	if (in->cooldown_ns < 0 || in->cooldown_ns > RATECTL_PERIOD_MAX)
		report(k, 1, "%s: cooldown of %lld s is out of range; `ratectl cooldown "
		       "%s 0` ends it", in->name, (long long)(in->cooldown_ns / NS_PER_S),
		       in->name);
	if (b->jitter_ns < 0 || b->jitter_ns > JITTER_MAX_NS)
		report(k, 1, "%s: jitter %lld ns is out of range", in->name,
		       (long long)b->jitter_ns);
	if (b->weight > RATECTL_WEIGHT_MAX || b->expire_ns < 0 ||
	    b->origin[sizeof b->origin - 1] != '\0')
		report(k, 1, "%s: weight %u, expire %lld ns or its origin is out of range",
		       in->name, b->weight, (long long)b->expire_ns);
	if (in->counters.tokens_reconciled > in->counters.tokens_estimated ||
	    in->counters.waited > in->counters.admitted)
		report(k, 1, "%s: counters disagree (reconciled > estimated, or "
		       "waited > admitted)", in->name);
	return 0;
}

/* The holders of a budget's slots against the processes, for one budget. */
static void check_leases(struct check *k, const ratectl_budget_info *in)
{
	ratectl_lease_info *l;
	size_t n, i, slots = 0;

	if (cli_leases(k->c, in->name, &l, &n) != 0) {
		k->problems++;
		return;
	}
	for (i = 0; i < n; i++) {
		slots += l[i].count;
		if (!l[i].alive)
			report(k, 0, "%s: holder pid %d died holding %u slot%s; "
			       "`ratectl reclaim` or the next admission frees them",
			       in->name, l[i].pid, l[i].count, l[i].count == 1 ? "" : "s");
		else if (kill(l[i].pid, 0) != 0 && errno == ESRCH)
			report(k, 1, "%s: holder pid %d is taken for alive but does not "
			       "exist (%u slot%s)", in->name, l[i].pid, l[i].count,
			       l[i].count == 1 ? "" : "s");
	}
	if (in->config.max_inflight && slots > in->config.max_inflight)
		report(k, 0, "%s: %zu slots held, more than the cap of %u (it was "
		       "lowered; they stay held until released)", in->name, slots,
		       in->config.max_inflight);
	free(l);
}

/* A shared budget's records read back (a damaged one is what --repair
 * rebuilds), and what an operator must hear of: Redis unreachable, or
 * another host sharing the budget with other limits. */
static void check_shared(struct check *k, const ratectl_budget_info *in)
{
	ratectl_shared_state s;
	char a[FMT_LEN], b[FMT_LEN];
	int rc;

	rc = ratectl_budget_shared_state(k->c->h, in->name, &s);
	if (rc == RATECTL_ENOTFOUND || (rc == 0 && !s.share.url[0]))
		return;
	if (rc != 0) {
		k->damaged |= rc == RATECTL_ECORRUPT;
		report(k, 1, "%s", *ratectl_errmsg() ? ratectl_errmsg() :
		       ratectl_strerror(rc));
		return;
	}
	if (s.degraded)
		report(k, 0, "%s: shared, but Redis is unreachable since %s (%s): %s; "
		       "this host admits its fallback share", in->name,
		       fmt_utc(a, s.degraded_since),
		       fmt_dur(b, fmt_wall_now() - s.degraded_since),
		       s.last_error[0] ? s.last_error : "no detail");
	if (s.sig_differs)
		report(k, 0, "%s: another host shares it with other limits; apply the "
		       "same config on every host", in->name);
}

/* Open and walk the ledger; sets k->damaged when --repair applies. */
static void check_ledger(struct check *k, const char *dir)
{
	ratectl_budget_info *v;
	size_t n, i;
	int rc;

	if ((rc = cli_open_dir(k->c, dir)) != 0) {
		k->damaged = rc == RATECTL_ECORRUPT;
		report(k, 1, "%s", *ratectl_errmsg() ? ratectl_errmsg() :
		       ratectl_strerror(rc));
		return;
	}
	printf("ok: ledger %s opens (a format this build reads, version %d)\n", dir,
	       RATECTL_FORMAT_VERSION);
	if ((rc = ratectl_budget_foreach(k->c->h, check_budget, k)) != 0) {
		k->damaged = rc == RATECTL_ECORRUPT;
		report(k, 1, "%s (budgets after it were not checked)",
		       *ratectl_errmsg() ? ratectl_errmsg() : ratectl_strerror(rc));
		return;
	}
	/* Leases from a second snapshot: foreach's callback runs inside a
	 * read transaction, where another call into the library must not. */
	if (cli_snapshot(k->c, &v, &n) != 0) {
		k->problems++;
		return;
	}
	for (i = 0; i < n; i++) {
		/* Nothing held, no holder to look at: 100,000 idle budgets cost
		 * no read each. */
		if (v[i].inflight || v[i].dead)
			check_leases(k, &v[i]);
		check_shared(k, &v[i]);
	}
	free(v);
}

/* DIR.damaged-YYYYmmdd-HHMMSS, with -2, -3... if taken. */
static int aside_name(char *buf, size_t len, const char *dir)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	struct stat st;
	int i;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
	for (i = 1; i < 100; i++) {
		int n = i == 1 ? snprintf(buf, len, "%s.damaged-%s", dir, stamp) :
			snprintf(buf, len, "%s.damaged-%s-%d", dir, stamp, i);

		if (n < 0 || (size_t)n >= len)
			return -ENAMETOOLONG;
		if (lstat(buf, &st) != 0 && errno == ENOENT)
			return 0;
	}
	return -EEXIST;
}

static int rebuild(cli *c, const char *dir, const rh__conf *conf)
{
	char aside[PATH_MAX];
	struct stat st;
	size_t i;
	int rc, shared;

	if (c->h) {
		ratectl_close(c->h);
		c->h = NULL;
	}
	shared = lstat(dir, &st) == 0 && (st.st_mode & S_IWGRP);
	if ((rc = aside_name(aside, sizeof aside, dir)) != 0 || rename(dir, aside) != 0) {
		cli_err(c, "cannot move %s aside: %s", dir, strerror(rc ? -rc : errno));
		return CLI_ERROR;
	}
	printf("repair: moved the damaged ledger to %s\n", aside);
	/* A ledger shared with a group stays shared (cli_open_dir() follows
	 * the directory's mode): the workers of that group must still get in. */
	if (shared && mkdir(dir, 0700) == 0 &&
	    (chown(dir, (uid_t)-1, st.st_gid) != 0 ||
	     chmod(dir, (st.st_mode & 07777) | S_ISGID) != 0))
		cli_err(c, "%s: cannot share it with group %u as before: %s", dir,
		        (unsigned)st.st_gid, strerror(errno));
	if ((rc = cli_open(c)) != 0)
		return rc;
	for (i = 0; i < conf->nbudgets; i++) {
		const rh__conf_budget *b = &conf->budgets[i];

		rc = ratectl_budget_set(c->h, b->name, &b->budget,
		                        RATECTL_CREATE | RATECTL_EMPTY);
		/* Shared: with no credit, which the first admission takes. */
		if (rc == 0 && b->share.url[0])
			rc = ratectl_budget_share(c->h, b->name, &b->share);
		if (rc != 0)
			return cli_fail(c, rc, b->name);
		printf("repair: created %s from %s, starting empty%s\n", b->name,
		       conf->path, b->share.url[0] ? ", shared" : "");
	}
	printf("repair: ledger %s rebuilt with %zu budgets; restart the processes "
	       "that had it open (they keep using the old one until they do)\n",
	       dir, conf->nbudgets);
	return CLI_OK;
}

static int repair(cli *c, const char *dir, const char *path)
{
	rh__conf *conf;
	char err[1024];
	int rc;

	if (!path)
		path = c->config ? c->config : rh__conf_default_path();
	if ((rc = rh__conf_load(&conf, path, err, sizeof err)) != 0) {
		cli_err(c, "--repair rebuilds the budgets from the config file, and "
		        "needs one: %s; give it with --config FILE", err);
		return CLI_ERROR;
	}
	rc = rebuild(c, dir, conf);
	rh__conf_free(conf);
	return rc;
}

/* Findings go to stdout, as the command's output; only failures to run
 * the check go to stderr. */
int cmd_check(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "config", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 }
	};
	struct check k = { .c = c };
	const char *config = NULL;
	char dir[PATH_MAX];
	struct stat st;
	int o, do_repair = 0;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		switch (o) {
		case 'h': return cli_help(c);
		case 'r': do_repair = 1; break;
		case 'c': config = optarg; break;
		default: return cli_badopt(c, o, argv);
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (config && !do_repair)
		return cli_usage(c, "--config goes with --repair");
	if (cli_ledger_dir(c, dir, sizeof dir) != 0) {
		cli_err(c, "ledger path too long");
		return CLI_ERROR;
	}
	/* Opening would create a missing ledger: that is not what was asked. */
	if (lstat(dir, &st) != 0) {
		report(&k, 1, "no ledger at %s: %s", dir, strerror(errno));
		return CLI_ERROR;
	}
	check_ledger(&k, dir);
	printf("check: ledger %s: %u budgets, %u problems, %u warnings\n", dir,
	       k.budgets, k.problems, k.warnings);
	if (do_repair && k.damaged)
		return repair(c, dir, config);
	if (do_repair && k.problems)
		printf("repair: nothing damaged; --repair does not fix the problems "
		       "above\n");
	else if (do_repair)
		printf("repair: nothing to repair\n");
	return k.problems ? CLI_ERROR : CLI_OK;
}

/* Budgets are removed once idle for their expire_ns by the processes that
 * admit, a few hundred at a time; sweep removes every one due now, which
 * an operator may want before a list or a metrics scrape. */
int cmd_sweep(cli *c, int argc, char **argv)
{
	unsigned removed = 0;
	int o, rc;

	while ((o = cli_getopt(argc, argv, NULL, 1)) != -1)
		return o == 'h' ? cli_help(c) : cli_badopt(c, o, argv);
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = ratectl_sweep(c->h, &removed)) != 0)
		return cli_fail(c, rc, "sweep");
	printf("removed %u idle budget%s past their expire time\n", removed,
	       removed == 1 ? "" : "s");
	return CLI_OK;
}

int cmd_reclaim(cli *c, int argc, char **argv)
{
	unsigned slots = 0, readers = 0;
	int o, rc;

	while ((o = cli_getopt(argc, argv, NULL, 1)) != -1)
		return o == 'h' ? cli_help(c) : cli_badopt(c, o, argv);
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = ratectl_reclaim(c->h, &slots, &readers)) != 0)
		return cli_fail(c, rc, "reclaim");
	printf("reclaimed %u in-flight slots of dead holders and %u stale reader "
	       "slots\n", slots, readers);
	return CLI_OK;
}
