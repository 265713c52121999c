/*
 * show.c - `ratectl list` and `ratectl show NAME`: what the ledger holds
 * now, as aligned tables or as JSON; for a budget shared through Redis,
 * what this host knows of it (ratectl_budget_shared_state()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/*
 * "498/500 per min, 1.9M/2M per day", or "-" when dim has no limit.  The
 * denominator is the burst, what "full" means, since available never
 * exceeds it; when the burst is not the count the rate is spelled out
 * ("48/50 of 500 per min"), or 48/50 would read as a rate of 50.
 */
void show_limits_cell(char *buf, size_t len, const ratectl_budget_info *in,
                      ratectl_dim dim)
{
	char one[FMT_LONG];
	size_t used = 0;
	unsigned i;

	buf[0] = '\0';
	for (i = 0; i < in->config.nlimits; i++) {
		if (in->state[i].limit.dim != dim)
			continue;
		fmt_avail(one, &in->state[i]);
		used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
		                         used ? ", " : "", one);
	}
	if (used == 0)
		snprintf(buf, len, "-");
}

/* "3/16", "3/16 (1 dead)", or "-" when the budget has no cap: without
 * one the library takes no slots, so there is nothing to count. */
void show_inflight_cell(char *buf, size_t len, const ratectl_budget_info *in)
{
	int n;

	if (in->config.max_inflight == 0 && in->inflight == 0 && in->dead == 0) {
		snprintf(buf, len, "-");
		return;
	}
	n = snprintf(buf, len, "%u/%u", in->inflight, in->config.max_inflight);
	if (in->dead && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, " (%u dead)", in->dead);
}

void show_summary_header(table *t)
{
	table_cell(t, "BUDGET");
	table_cell(t, "REQUESTS");
	table_cell(t, "TOKENS");
	table_cell(t, "IN FLIGHT");
	table_cell(t, "COOLDOWN");
}

/* One row per budget, so that the table stays one screen wide even with
 * several limits: they share a cell per dimension. */
void show_summary_row(table *t, const ratectl_budget_info *in)
{
	char req[512], tok[512], inf[64], cd[FMT_LEN];

	show_limits_cell(req, sizeof req, in, RATECTL_REQUESTS);
	show_limits_cell(tok, sizeof tok, in, RATECTL_TOKENS);
	show_inflight_cell(inf, sizeof inf, in);
	table_cell(t, "%s", in->name);
	table_cell(t, "%s", req);
	table_cell(t, "%s", tok);
	table_cell(t, "%s", inf);
	table_cell(t, "%s", in->cooldown_ns ? fmt_dur(cd, in->cooldown_ns) : "-");
}

const char *show_url(char buf[RATECTL_SHARE_URL_MAX + 1], const ratectl_share *s)
{
	const char *auth = strstr(s->url, "://"), *at = NULL, *p;

	/* "user:pass@" can only come before the host's end, as the library's
	 * own messages read it: an '@' in a unix socket's path is kept. */
	for (p = auth ? auth + 3 : ""; *p && *p != '/' && *p != '?' && *p != '#'; p++)
		if (*p == '@')
			at = p;
	if (at)
		snprintf(buf, RATECTL_SHARE_URL_MAX + 1, "%.*s***%s",
		         (int)(auth + 3 - s->url), s->url, at);
	else
		snprintf(buf, RATECTL_SHARE_URL_MAX + 1, "%s", s->url);
	return buf;
}

void show_shared_cell(char *buf, size_t len, const ratectl_shared_state *s)
{
	char d[FMT_LEN];

	if (!s || !s->share.url[0])
		snprintf(buf, len, "-");
	else if (s->degraded && s->degraded_since)
		snprintf(buf, len, "DEGRADED %s",
		         fmt_dur(d, fmt_wall_now() - s->degraded_since));
	else if (s->degraded)
		snprintf(buf, len, "DEGRADED");
	else
		snprintf(buf, len, "%u host%s", s->share.hosts, s->share.hosts == 1 ? "" : "s");
}

/* The SHARED column only when some budget is shared: a host that shares
 * nothing sees the table it always had. */
static int list_table(const cli *c, const ratectl_budget_info *v,
                      ratectl_shared_state *const *shared, size_t n)
{
	char sh[64];
	int any = 0, rc;
	table *t;
	size_t i;

	for (i = 0; i < n && !any; i++)
		any = shared[i] != NULL;
	t = table_new(any ? 6 : 5);
	show_summary_header(t);
	if (any)
		table_cell(t, "SHARED");
	for (i = 0; i < n; i++) {
		show_summary_row(t, &v[i]);
		if (any) {
			show_shared_cell(sh, sizeof sh, shared[i]);
			table_cell(t, "%s", sh);
		}
	}
	rc = table_print(t, stdout, "");
	table_free(t);
	return rc == 0 ? CLI_OK : cli_oom(c);
}

int cmd_list(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	ratectl_shared_state **sh;
	ratectl_budget_info *v;
	size_t n;
	int o, json = 0, rc;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'j')
			return cli_badopt(c, o, argv);
		json = 1;
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_snapshot(c, &v, &n)) != 0)
		return rc;
	if ((rc = cli_shared(c, v, n, &sh)) != 0) {
		free(v);
		return cli_fail(c, rc, "cannot read how the budgets are shared");
	}
	if (json)
		rc = json_print(c, json_list(c, v, sh, n));
	else if (n == 0)        /* an empty table would say nothing useful */
		printf("no budgets in ledger %s; create one with `ratectl set` or "
		       "`ratectl apply`\n", ratectl_path(c->h));
	else
		rc = list_table(c, v, sh, n);
	cli_shared_free(sh, n);
	free(v);
	return rc;
}

/* ---- show ------------------------------------------------------------------ */

static void show_head(const ratectl_budget_info *in, const char *ledger)
{
	char a[FMT_LEN], b[64];

	printf("budget:     %s\n", in->name);
	printf("ledger:     %s\n", ledger);
	if (in->config.max_inflight)
		printf("in flight:  %u of %u", in->inflight, in->config.max_inflight);
	else
		printf("in flight:  not capped");
	if (in->dead)
		printf(" (%u dead; `ratectl reclaim` or the next admission frees them)",
		       in->dead);
	printf("\ncooldown:   %s\n", in->cooldown_ns ?
	       (snprintf(b, sizeof b, "%s left", fmt_dur(a, in->cooldown_ns)), b) :
	       "none");
	printf("jitter:     %s\n", in->config.jitter_ns ?
	       fmt_dur(a, in->config.jitter_ns) : "1s (default)");
	printf("batch:      %u%% of the first limit kept for batch requests\n",
	       in->config.batch_share);
}

static int show_limits(const ratectl_budget_info *in)
{
	char a[FMT_LEN], b[FMT_LEN], d[FMT_LEN], p[FMT_LEN];
	table *t;
	unsigned i;
	int rc;

	if (in->config.nlimits == 0) {
		printf("\nno rate limits (concurrency only)\n");
		return 0;
	}
	t = table_new(5);
	table_cell(t, "LIMIT");
	table_cell(t, "RATE");
	table_cell(t, "BURST");
	table_cell(t, "AVAILABLE");
	table_cell(t, "FULL IN");
	for (i = 0; i < in->config.nlimits; i++) {
		const ratectl_limit_state *s = &in->state[i];

		table_cell(t, "%s", fmt_dim(s->limit.dim));
		table_cell(t, "%s per %s", fmt_count(a, s->limit.count),
		           fmt_period(p, s->limit.period_ns));
		table_cell(t, "%s", fmt_count(b, s->limit.burst));
		table_cell(t, "%s", fmt_count(a, s->available));
		table_cell(t, "%s", s->until_full_ns ? fmt_dur(d, s->until_full_ns) : "full");
	}
	putchar('\n');
	rc = table_print(t, stdout, "");
	table_free(t);
	return rc;
}

/* Dead holders are listed too: the operator asking "who holds the slots?"
 * needs to see the pid that died as much as the ones that live. */
static int show_leases(const ratectl_lease_info *l, size_t n)
{
	char a[FMT_LEN], b[FMT_LEN];
	table *t;
	size_t i;
	int rc;

	if (n == 0)
		return 0;
	t = table_new(5);
	table_cell(t, "SLOT");
	table_cell(t, "PID");
	table_cell(t, "HOLDER");
	table_cell(t, "AGE");
	table_cell(t, "TOKENS");
	for (i = 0; i < n; i++) {
		table_cell(t, "%u", l[i].slot);
		table_cell(t, "%d", l[i].pid);
		table_cell(t, "%s", l[i].alive ? "alive" : "dead");
		table_cell(t, "%s", fmt_dur(a, l[i].age_ns));
		table_cell(t, "%s", fmt_count(b, l[i].tokens));
	}
	putchar('\n');
	rc = table_print(t, stdout, "");
	table_free(t);
	return rc;
}

/* "requests 120, tokens -300 (a debt, ...)": the dimensions the budget
 * limits; credit in a dimension it does not limit is never taken. */
static void credit_line(const ratectl_budget_info *in, const ratectl_shared_state *s)
{
	int has[2] = { 0, 0 }, d, any = 0;
	unsigned i;

	for (i = 0; i < in->config.nlimits; i++)
		has[in->config.limits[i].dim == RATECTL_TOKENS] = 1;
	printf("  credit held        ");
	for (d = 0; d < 2; d++) {
		if (!has[d])
			continue;
		printf("%s%s %lld", any++ ? ", " : "", fmt_dim((ratectl_dim)d),
		       (long long)s->credit[d]);
		if (s->credit[d] < 0)
			printf(" (a debt, paid from the next credit)");
	}
	printf("%s\n", any ? "" : "none (no rate limit to share)");
}

/*
 * What a shared budget's host knows: where Redis is (never a password;
 * where it comes from), the fallback, whether Redis answers, the credit
 * this host holds, and the two conditions an operator must act on.
 */
static void show_shared(const ratectl_budget_info *in, const ratectl_shared_state *s)
{
	char url[RATECTL_SHARE_URL_MAX + 1], a[FMT_LEN], b[FMT_LEN];

	printf("\nshared through Redis:\n");
	printf("  url                %s\n", show_url(url, &s->share));
	printf("  hosts              %u\n", s->share.hosts);
	if (s->share.flags & RATECTL_SHARE_OPEN)
		printf("  fallback           open: the budget's limits in full on this host "
		       "while Redis is unreachable\n");
	else
		printf("  fallback           share 1/%u of every limit while Redis is "
		       "unreachable\n", s->share.hosts);
	if (s->share.password_file[0])
		printf("  password           from file %s\n", s->share.password_file);
	else if (s->share.password_env[0])
		printf("  password           from $%s\n", s->share.password_env);
	else
		printf("  password           none\n");
	if (s->degraded) {
		printf("  state              DEGRADED");
		if (s->degraded_since)
			printf(" since %s (%s)", fmt_utc(a, s->degraded_since),
			       fmt_dur(b, fmt_wall_now() - s->degraded_since));
		printf("%s%s\n", s->last_error[0] ? ": " : "", s->last_error);
	} else if (s->last_sync_age_ns >= 0) {
		printf("  state              ok, last sync %s ago\n",
		       fmt_dur(a, s->last_sync_age_ns));
	} else {
		printf("  state              not synced yet (at the first admission)\n");
	}
	credit_line(in, s);
	printf("  syncs              %llu\n", (unsigned long long)s->syncs);
	printf("  redis commands     %llu\n", (unsigned long long)s->redis_commands);
	if (s->restored)
		printf("  warning: Redis was found empty (restarted, flushed or expired) and "
		       "rebuilt from this host's last known state\n");
	if (s->sig_differs)
		printf("  warning: another host shares this budget with other limits; "
		       "apply the same config on every host\n");
}

static void show_counters(const ratectl_counters *k)
{
	char a[FMT_LEN], b[FMT_LEN];

	printf("\ncounters since the budget was created:\n");
	printf("  admitted           %llu\n", (unsigned long long)k->admitted);
	printf("  refused            %llu\n", (unsigned long long)k->refused);
	printf("  waited             %llu (%s in total)\n",
	       (unsigned long long)k->waited, fmt_dur(a, (int64_t)k->wait_ns));
	printf("  tokens estimated   %s\n", fmt_count(a, k->tokens_estimated));
	printf("  tokens reconciled  %s actual for %s estimated\n",
	       fmt_count(a, k->tokens_actual), fmt_count(b, k->tokens_reconciled));
	printf("  slots reclaimed    %llu\n", (unsigned long long)k->reclaimed);
	printf("  retries            %llu\n", (unsigned long long)k->retries);
}

int cmd_show(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	ratectl_budget_info in;
	ratectl_shared_state sh;
	ratectl_lease_info *l = NULL;
	size_t n = 0;
	int o, json = 0, rc;
	json_t *root;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'j')
			return cli_badopt(c, o, argv);
		json = 1;
	}
	if (optind + 1 != argc)
		return cli_usage(c, optind < argc ? "one budget at a time" : "which budget?");
	if ((rc = cli_open(c)) != 0)
		return rc;
	/* Two reads, not one snapshot: a lease may come or go in between, so
	 * the table can differ from the in-flight count by a lease or two. */
	if ((rc = ratectl_budget_get(c->h, argv[optind], &in)) != 0)
		return cli_fail(c, rc, argv[optind]);
	if ((rc = ratectl_budget_shared_state(c->h, argv[optind], &sh)) != 0)
		return cli_fail(c, rc, argv[optind]);
	if ((rc = cli_leases(c, argv[optind], &l, &n)) != 0)
		return rc;
	if (json) {
		root = json_envelope(c);
		if (root && json_object_set_new(root, "budget",
		                                json_budget(&in, sh.share.url[0] ? &sh : NULL,
		                                            l, n)) != 0) {
			json_decref(root);
			root = NULL;    /* json_print() reports it */
		}
		rc = json_print(c, root);
	} else {
		show_head(&in, ratectl_path(c->h));
		if (sh.share.url[0])
			show_shared(&in, &sh);
		if (show_limits(&in) != 0 || show_leases(l, n) != 0)
			rc = cli_oom(c);
		else
			show_counters(&in.counters);
	}
	free(l);
	return rc;
}
