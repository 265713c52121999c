/*
 * show.c - `ratectl list` and `ratectl show NAME`: what the ledger holds
 * now, as aligned tables or as JSON; for a budget shared through Redis,
 * what this host knows of it (ratectl_budget_shared_state()); for a budget
 * with a response cache, its figures (cache.c).
 */
#include <errno.h>
#include <limits.h>
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

/*
 * The budgets f matches, from one snapshot, as rows (*v points into rows)
 * with how each is shared.  0 or an exit code, reported.
 */
struct rowsel {
	cli_rows rows;
	const cli_row **v;
	size_t n;
	ratectl_shared_state **sh;
};

static int rows_add(const ratectl_budget_info *in, void *ctx)
{
	return cli_rows_add(ctx, in);
}

static int show_read_rows(cli *c, const cli_filter *f, cli_rows *rows)
{
	int rc;

	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = cli_foreach(c, f, rows_add, rows, NULL)) != 0) {
		cli_rows_free(rows);
		return rc == -ENOMEM ? cli_oom(c) : cli_fail(c, rc, "cannot read the budgets");
	}
	return 0;
}

static int rowsel_read(cli *c, const cli_filter *f, struct rowsel *s)
{
	size_t i;
	int rc;

	memset(s, 0, sizeof *s);
	if ((rc = show_read_rows(c, f, &s->rows)) != 0)
		return rc;
	s->n = s->rows.n;
	if (!(s->v = malloc((s->n ? s->n : 1) * sizeof *s->v))) {
		cli_rows_free(&s->rows);
		return cli_oom(c);
	}
	for (i = 0; i < s->n; i++)
		s->v[i] = cli_rows_at(&s->rows, i);
	if ((rc = cli_shared_rows(c, s->v, s->n, &s->sh)) != 0) {
		free(s->v);
		cli_rows_free(&s->rows);
		return cli_fail(c, rc, "cannot read how the budgets are shared");
	}
	return 0;
}

static void rowsel_free(struct rowsel *s)
{
	cli_shared_free(s->sh, s->n);
	free(s->v);
	cli_rows_free(&s->rows);
}

/* list's columns past the five of show_summary_row(); the last four are
 * printed only when some budget has something to say in them, so that a
 * host that uses none of it sees the table it always had. */
enum { COL_IDLE = 5, COL_ORIGIN, COL_EXPIRE, COL_WEIGHT, COL_SHARED, NCOLS };

static int list_table(const cli *c, const struct rowsel *s)
{
	ratectl_budget_info in;
	char buf[64];
	unsigned mask = (1u << (COL_IDLE + 1)) - 1;
	table *t;
	size_t i;
	int rc;

	t = table_new(NCOLS);
	show_summary_header(t);
	table_cell(t, "IDLE");
	table_cell(t, "ORIGIN");
	table_cell(t, "EXPIRE");
	table_cell(t, "WEIGHT");
	table_cell(t, "SHARED");
	for (i = 0; i < s->n; i++) {
		cli_row_info(s->v[i], &in);
		show_summary_row(t, &in);
		table_cell(t, "%s", in.idle_ns < 0 ? "never" : fmt_dur(buf, in.idle_ns));
		table_cell(t, "%s", in.config.origin[0] ? in.config.origin : "-");
		table_cell(t, "%s", in.config.expire_ns ?
		           fmt_dur(buf, in.config.expire_ns) : "-");
		table_cell(t, in.config.weight ? "%u" : "-", in.config.weight);
		show_shared_cell(buf, sizeof buf, s->sh[i]);
		table_cell(t, "%s", buf);
		if (in.config.origin[0])
			mask |= 1u << COL_ORIGIN;
		if (in.config.expire_ns)
			mask |= 1u << COL_EXPIRE;
		if (in.config.weight)
			mask |= 1u << COL_WEIGHT;
		if (s->sh[i])
			mask |= 1u << COL_SHARED;
	}
	rc = table_print_cols(t, stdout, "", mask);
	table_free(t);
	return rc == 0 ? CLI_OK : cli_oom(c);
}

static int list_json(const cli *c, const struct rowsel *s)
{
	ratectl_budget_info in;
	json_stream js;
	size_t i;

	if (json_stream_begin(c, &js) != 0 || json_stream_list(&js, "budgets") != 0)
		return json_stream_fail(&js);
	for (i = 0; i < s->n; i++) {
		cli_row_info(s->v[i], &in);
		if (json_stream_item(&js, json_budget(&in, s->sh[i], NULL, 0, NULL)) != 0)
			return json_stream_fail(&js);
	}
	return json_stream_end(&js) == 0 ? CLI_OK : json_stream_fail(&js);
}

int cmd_list(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	struct rowsel s;
	cli_filter f;
	int o, json = 0, rc;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'j')
			return cli_badopt(c, o, argv);
		json = 1;
	}
	if ((rc = cli_filter_init(c, &f, argv + optind, argc - optind)) != 0)
		return rc;
	if ((rc = rowsel_read(c, &f, &s)) != 0)
		return rc;
	if (json) {
		rc = list_json(c, &s);
	} else if (s.n == 0 && f.n) {
		printf("no budget in ledger %s matches ", ratectl_path(c->h));
		cli_filter_say(&f, stdout);
		putchar('\n');
	} else if (s.n == 0) {  /* an empty table would say nothing useful */
		printf("no budgets in ledger %s; create one with `ratectl set` or "
		       "`ratectl apply`\n", ratectl_path(c->h));
	} else {
		rc = list_table(c, &s);
	}
	rowsel_free(&s);
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
	if (in->config.origin[0])
		printf("origin:     template [%s], made on first use\n", in->config.origin);
	if (in->config.weight)
		printf("weight:     %u (its share as a tenant)\n", in->config.weight);
	if (in->config.expire_ns)
		printf("expire:     removed after %s idle\n", fmt_dur(a, in->config.expire_ns));
	else
		printf("expire:     never\n");
	if (in->idle_ns >= 0)
		printf("idle:       %s since the last admission\n", fmt_dur(a, in->idle_ns));
	else
		printf("idle:       never admitted\n");
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

/* One row per holder process.  Dead holders are listed too: the operator
 * asking "who holds the slots?" needs to see the pid that died as much as
 * the ones that live. */
static int show_leases(const ratectl_lease_info *l, size_t n)
{
	char a[FMT_LEN], b[FMT_LEN];
	table *t;
	size_t i;
	int rc;

	if (n == 0)
		return 0;
	t = table_new(5);
	table_cell(t, "PID");
	table_cell(t, "HOLDER");
	table_cell(t, "SLOTS");
	table_cell(t, "OLDEST");
	table_cell(t, "TOKENS");
	for (i = 0; i < n; i++) {
		table_cell(t, "%d", l[i].pid);
		table_cell(t, "%s", l[i].alive ? "alive" : "dead");
		table_cell(t, "%u", l[i].count);
		table_cell(t, "%s", fmt_dur(a, l[i].age_ns));
		table_cell(t, "%s", fmt_count(b, l[i].tokens));
	}
	putchar('\n');
	rc = table_print(t, stdout, "");
	table_free(t);
	return rc;
}

/* Who used the budget: its busiest tags, then the rest.  A tag that took
 * the place of another inherited its counts, so its figures may be over
 * by up to its error (shown as ±N; exact when 0). */
static int show_tags(const cli_tags *g)
{
	char a[FMT_LEN], b[FMT_LEN];
	table *t;
	size_t i;
	int rc;

	if (g->n == 0)
		return 0;
	t = table_new(4);
	table_cell(t, "TAG");
	table_cell(t, "REQUESTS");
	table_cell(t, "TOKENS");
	table_cell(t, "ERROR");
	for (i = 0; i < g->n; i++) {
		table_cell(t, "%s", g->top[i].tag);
		table_cell(t, "%llu", (unsigned long long)g->top[i].requests);
		table_cell(t, "%s", fmt_count(a, g->top[i].tokens));
		if (g->top[i].error)
			table_cell(t, "±%s", fmt_count(b, g->top[i].error));
		else
			table_cell(t, "exact");
	}
	table_cell(t, "(other)");
	table_cell(t, "%llu", (unsigned long long)g->rest.requests);
	table_cell(t, "%s", fmt_count(a, g->rest.tokens));
	table_cell(t, "-");
	printf("\ntags (the %d busiest; (other): untagged and tags no longer counted):\n",
	       RATECTL_TAGS_TOP);
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

/* Everything show says of one budget, read afresh. */
struct shown {
	ratectl_budget_info in;
	ratectl_shared_state sh;
	ratectl_lease_info *l;
	size_t n;
	cli_tags tags;
	const ratectl_http_cache_stats *cache;   /* NULL: none (or unreadable) */
};

/*
 * The response caches for show: name's (NULL: every budget's) into *v,
 * *n.  One that cannot be read (damaged) never keeps the budgets from
 * being shown: it is said on stderr and shown as none.  0 or an exit code.
 */
static int show_caches(cli *c, const char *name, ratectl_http_cache_stats **v,
                       size_t *n)
{
	char why[PATH_MAX + 256];
	int rc = cli_caches(c, name, v, n);

	if (rc == -ENOMEM)
		return cli_oom(c);
	if (rc != 0)
		cli_err(c, "%s; shown without it", cli_cache_why(c, rc, why, sizeof why));
	return 0;
}

/* Several reads, not one snapshot: a lease may come or go in between, so
 * the holders can differ from the in-flight count by a slot or two.
 * 0, RATECTL_ENOTFOUND silently, or an exit code. */
static int shown_read(cli *c, const char *name, struct shown *s, int quiet_gone)
{
	int rc;

	memset(s, 0, sizeof *s);
	if ((rc = ratectl_budget_get(c->h, name, &s->in)) != 0 ||
	    (rc = ratectl_budget_shared_state(c->h, name, &s->sh)) != 0 ||
	    (rc = cli_tags_get(c, name, &s->tags)) != 0) {
		if (rc == RATECTL_ENOTFOUND && quiet_gone)
			return rc;
		return cli_fail(c, rc, name);
	}
	if ((rc = cli_leases(c, name, &s->l, &s->n)) != 0)
		return rc;
	return 0;
}

static json_t *shown_json(const struct shown *s)
{
	json_t *b = json_budget(&s->in, s->sh.share.url[0] ? &s->sh : NULL, s->l, s->n,
	                        &s->tags);

	/* "cache": show only, null when the budget has none. */
	if (b && json_object_set_new(b, "cache", s->cache ? json_cache(s->cache) :
	                             json_null()) != 0) {
		json_decref(b);
		return NULL;
	}
	return b;
}

static int shown_text(const cli *c, const struct shown *s)
{
	show_head(&s->in, ratectl_path(c->h));
	if (s->sh.share.url[0])
		show_shared(&s->in, &s->sh);
	if (show_limits(&s->in) != 0 || show_leases(s->l, s->n) != 0 ||
	    show_tags(&s->tags) != 0)
		return cli_oom(c);
	show_counters(&s->in.counters);
	if (s->cache)
		show_cache(s->cache);
	return CLI_OK;
}

static int show_one(cli *c, const char *name, int json)
{
	ratectl_http_cache_stats *k = NULL;
	struct shown s;
	json_t *root;
	size_t nk = 0;
	int rc;

	if ((rc = shown_read(c, name, &s, 0)) != 0)
		return rc;
	if ((rc = show_caches(c, name, &k, &nk)) != 0) {
		free(s.l);
		return rc;
	}
	s.cache = cli_cache_find(k, nk, name);
	if (json) {
		root = json_envelope(c);
		if (root && json_object_set_new(root, "budget", shown_json(&s)) != 0) {
			json_decref(root);
			root = NULL;    /* json_print() reports it */
		}
		rc = json_print(c, root);
	} else {
		rc = shown_text(c, &s);
	}
	free(s.l);
	free(k);
	return rc;
}

/* show PATTERN...: each budget matched, in name order; with --json a
 * "budgets" list, as list's but with leases and tags. */
static int show_many(cli *c, const cli_filter *f, int json)
{
	ratectl_http_cache_stats *k = NULL;
	cli_rows rows = { 0 };
	struct shown s;
	json_stream js;
	size_t i, shown = 0, nk = 0;
	int rc;

	if ((rc = show_read_rows(c, f, &rows)) != 0)
		return rc;
	if (rows.n == 0) {
		fprintf(stderr, "ratectl: show: no budget matches ");
		cli_filter_say(f, stderr);
		fputc('\n', stderr);
		cli_rows_free(&rows);
		return CLI_ERROR;
	}
	if ((rc = show_caches(c, NULL, &k, &nk)) != 0) {
		cli_rows_free(&rows);
		return rc;
	}
	if (json && (json_stream_begin(c, &js) != 0 ||
	             json_stream_list(&js, "budgets") != 0))
		rc = json_stream_fail(&js);
	for (i = 0; rc == 0 && i < rows.n; i++) {
		rc = shown_read(c, cli_rows_at(&rows, i)->name, &s, 1);
		if (rc == RATECTL_ENOTFOUND) {  /* deleted since: not there to show */
			rc = 0;
			continue;
		}
		if (rc != 0)
			break;
		s.cache = cli_cache_find(k, nk, s.in.name);
		if (json && json_stream_item(&js, shown_json(&s)) != 0)
			rc = json_stream_fail(&js);
		if (!json) {
			if (shown++)
				putchar('\n');
			rc = shown_text(c, &s);
		}
		free(s.l);
	}
	if (rc == 0 && json && json_stream_end(&js) != 0)
		rc = json_stream_fail(&js);
	free(k);
	cli_rows_free(&rows);
	return rc;
}

int cmd_show(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	cli_filter f;
	int o, json = 0, rc;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'j')
			return cli_badopt(c, o, argv);
		json = 1;
	}
	if (optind == argc)
		return cli_usage(c, "which budget?");
	if ((rc = cli_filter_init(c, &f, argv + optind, argc - optind)) != 0)
		return rc;
	if ((rc = cli_open(c)) != 0)
		return rc;
	/* One plain name is the budget itself (an error if it does not
	 * exist, "budget" in JSON); patterns are a selection. */
	if (cli_filter_literal(&f))
		return show_one(c, f.pats[0], json);
	return show_many(c, &f, json);
}
