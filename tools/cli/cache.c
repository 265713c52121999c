/*
 * cache.c - `ratectl cache stats` and `ratectl cache clear`: the host-wide
 * response cache of libratectl-http (ratectl_http.h, ratectl.conf(5)
 * `cache`), and what show and metrics print of it.
 *
 * The cache is an LMDB environment of its own beside the ledger
 * (DIR/cache/).  It is read through a ratectl_http handle made for each
 * call over the command's open ledger (opts.ledger, so that the ledger's
 * environment is never opened twice in the process) and closed at once:
 * the exporter, which opens the ledger afresh for each scrape, then reads
 * the cache as it is too, also after it was removed and made again.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- reading ----------------------------------------------------------------- */

static int http_open(cli *c, ratectl_http **out)
{
	ratectl_http_options o = RATECTL_HTTP_OPTIONS_INIT;

	/* The config the command uses (NULL: $RATECTL_CONFIG or
	 * /etc/ratectl.conf); the cache calls read none of it. */
	o.config_path = c->config;
	o.ledger = c->h;
	o.ledger_dir = ratectl_path(c->h);
	return ratectl_http_open(out, &o);
}

static int by_budget(const void *a, const void *b)
{
	return strcmp(((const ratectl_http_cache_stats *)a)->budget,
	              ((const ratectl_http_cache_stats *)b)->budget);
}

int cli_caches(cli *c, const char *budget, ratectl_http_cache_stats **out, size_t *n)
{
	ratectl_http_cache_stats *v = NULL, *nv;
	ratectl_http *h = NULL;
	size_t cap = budget ? 1 : 16;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = http_open(c, &h)) != 0)
		return rc;
	/* Budgets may gain a cache between two reads: grow until it fits. */
	for (;;) {
		if (!(nv = realloc(v, cap * sizeof *v))) {
			rc = -ENOMEM;
			break;
		}
		v = nv;
		rc = ratectl_http_cache_stats_read(h, budget, v, cap);
		if (rc < 0 || (size_t)rc <= cap)
			break;
		cap = (size_t)rc + 16;
	}
	ratectl_http_close(h);
	if (rc < 0) {
		free(v);
		return rc;
	}
	/* The library's order is LMDB's (bytes); ours is strcmp's, that of
	 * the budgets metrics prints, so that cli_cache_find() can search. */
	for (*n = 0; *n < (size_t)rc; (*n)++)
		v[*n].budget[RATECTL_NAME_MAX] = '\0';
	if (*n > 1)
		qsort(v, *n, sizeof *v, by_budget);
	*out = v;
	return 0;
}

const ratectl_http_cache_stats *cli_cache_find(const ratectl_http_cache_stats *v,
                                               size_t n, const char *name)
{
	ratectl_http_cache_stats key;

	if (n == 0 || strlen(name) > RATECTL_NAME_MAX)
		return NULL;
	memcpy(key.budget, name, strlen(name) + 1);
	return bsearch(&key, v, n, sizeof *v, by_budget);
}

const char *cli_cache_why(const cli *c, int rc, char *buf, size_t len)
{
	const char *dir = c->h ? ratectl_path(c->h) : "?";

	/* The cache calls leave no detail in ratectl_errmsg() (what is there
	 * is another call's): the code says it all. */
	if (rc == RATECTL_ECORRUPT)
		snprintf(buf, len, "the response cache %s/cache is damaged; the next "
		         "request that uses it makes it again, as `ratectl cache clear` "
		         "does", dir);
	else
		snprintf(buf, len, "the response cache %s/cache cannot be used: %s", dir,
		         ratectl_http_strerror(rc));
	return buf;
}

/* (hits + coalesced) of every lookup: both were answered without being
 * sent.  < 0 when there was no lookup yet. */
static double hit_ratio(const ratectl_http_cache_stats *s)
{
	double served = (double)s->hits + (double)s->coalesced;

	if (served + (double)s->misses == 0)
		return -1;
	return served / (served + (double)s->misses);
}

static const char *ratio_cell(char buf[FMT_LEN], const ratectl_http_cache_stats *s)
{
	double r = hit_ratio(s);

	if (r < 0)
		snprintf(buf, FMT_LEN, "-");
	else
		snprintf(buf, FMT_LEN, "%.1f%%", 100 * r);
	return buf;
}

/* ---- what show and metrics print ------------------------------------------------ */

void show_cache(const ratectl_http_cache_stats *s)
{
	char a[FMT_LEN], b[FMT_LEN];

	printf("\nresponse cache:\n");
	printf("  entries            %llu (%s)\n", (unsigned long long)s->entries,
	       fmt_bytes(a, s->bytes));
	printf("  hits               %llu\n", (unsigned long long)s->hits);
	printf("  coalesced          %llu\n", (unsigned long long)s->coalesced);
	printf("  misses             %llu\n", (unsigned long long)s->misses);
	printf("  hit ratio          %s\n", ratio_cell(b, s));
	printf("  stores             %llu\n", (unsigned long long)s->stores);
	printf("  evictions          %llu\n", (unsigned long long)s->evictions);
	printf("  expired            %llu\n", (unsigned long long)s->expired);
	printf("  tokens saved       %s\n", fmt_count(a, s->tokens_saved));
}

static json_t *jcount(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

json_t *json_cache(const ratectl_http_cache_stats *s)
{
	double r = hit_ratio(s);

	return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	                 "budget", s->budget,
	                 "entries", jcount(s->entries),
	                 "bytes", jcount(s->bytes),
	                 "hits", jcount(s->hits),
	                 "coalesced", jcount(s->coalesced),
	                 "misses", jcount(s->misses),
	                 "hit_ratio", r < 0 ? json_null() : json_real(r),
	                 "stores", jcount(s->stores),
	                 "evictions", jcount(s->evictions),
	                 "expired", jcount(s->expired),
	                 "tokens_saved", jcount(s->tokens_saved));
}

/* ---- cache stats ------------------------------------------------------------------ */

/*
 * What the config says of the caches, when it can be read: the config
 * (free with rh__conf_free()), or NULL.  Never an error: the figures are
 * the ledger's, and the config may be another host's, absent or being
 * edited; its columns are then left out.
 */
static rh__conf *stats_conf(const cli *c)
{
	rh__conf *conf;
	char err[256];

	if (rh__conf_load(&conf, c->config, err, sizeof err) != 0)
		return NULL;
	return conf;
}

/* budget's section in conf when it has `cache`, else NULL. */
static const rh__conf_budget *conf_cache(const rh__conf *conf, const char *budget)
{
	const rh__conf_budget *b = conf ? rh__conf_find(conf, budget) : NULL;

	return b && b->cache_ttl_ns > 0 ? b : NULL;
}

static const char *requests_name(int r)
{
	return r == RH_CACHE_ANY ? "any" : r == RH_CACHE_EMBEDDINGS ? "embeddings" :
	       "deterministic";
}

/* json_cache() and "config": the budget's cache keys, or null when the
 * config cannot be read or has no `cache` for it. */
static json_t *json_cache_conf(const ratectl_http_cache_stats *s, const rh__conf *conf)
{
	const rh__conf_budget *b = conf_cache(conf, s->budget);
	json_t *o = json_cache(s), *k;

	k = !b ? json_null() :
	    json_pack("{s:I, s:o, s:o, s:s}",
	              "ttl_ns", (json_int_t)b->cache_ttl_ns,
	              "size", jcount(b->cache_size),
	              "entry_max", jcount(b->cache_entry_max),
	              "requests", requests_name(b->cache_requests));
	if (o && json_object_set_new(o, "config", k) != 0) {
		json_decref(o);
		return NULL;
	}
	if (!o)
		json_decref(k);
	return o;
}

/* The table's columns; the last two (the config's) only when known. */
enum { COL_TTL = 11, COL_CAP, NCOLS };

static int stats_table(const cli *c, const ratectl_http_cache_stats *v, size_t n,
                       const rh__conf *conf)
{
	const rh__conf_budget *b;
	unsigned mask = (1u << COL_TTL) - 1;
	char a[FMT_LEN];
	table *t = table_new(NCOLS);
	size_t i;
	int rc;

	table_cell(t, "BUDGET");
	table_cell(t, "ENTRIES");
	table_cell(t, "SIZE");
	table_cell(t, "HITS");
	table_cell(t, "COALESCED");
	table_cell(t, "MISSES");
	table_cell(t, "HIT RATIO");
	table_cell(t, "STORES");
	table_cell(t, "EVICTIONS");
	table_cell(t, "EXPIRED");
	table_cell(t, "TOKENS SAVED");
	table_cell(t, "TTL");
	table_cell(t, "CACHE SIZE");
	for (i = 0; i < n; i++) {
		table_cell(t, "%s", v[i].budget);
		table_cell(t, "%llu", (unsigned long long)v[i].entries);
		table_cell(t, "%s", fmt_bytes(a, v[i].bytes));
		table_cell(t, "%llu", (unsigned long long)v[i].hits);
		table_cell(t, "%llu", (unsigned long long)v[i].coalesced);
		table_cell(t, "%llu", (unsigned long long)v[i].misses);
		table_cell(t, "%s", ratio_cell(a, &v[i]));
		table_cell(t, "%llu", (unsigned long long)v[i].stores);
		table_cell(t, "%llu", (unsigned long long)v[i].evictions);
		table_cell(t, "%llu", (unsigned long long)v[i].expired);
		table_cell(t, "%s", fmt_count(a, v[i].tokens_saved));
		if ((b = conf_cache(conf, v[i].budget)))
			mask |= 1u << COL_TTL | 1u << COL_CAP;
		table_cell(t, "%s", b ? fmt_dur(a, b->cache_ttl_ns) : "-");
		table_cell(t, "%s", b ? fmt_bytes(a, b->cache_size) : "-");
	}
	rc = table_print_cols(t, stdout, "", mask);
	table_free(t);
	return rc == 0 ? CLI_OK : cli_oom(c);
}

static int stats_json(const cli *c, const ratectl_http_cache_stats *v, size_t n,
                      const rh__conf *conf)
{
	json_t *root = json_envelope(c), *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_cache_conf(&v[i], conf)) != 0) {
			json_decref(a);
			a = NULL;
		}
	if (!a || !root || json_object_set_new(root, "caches", a) != 0) {
		json_decref(root);
		root = NULL;            /* json_print() reports it */
	}
	return json_print(c, root);
}

/* Keep the caches f matches, in place: how many. */
static size_t stats_filter(const cli_filter *f, ratectl_http_cache_stats *v, size_t n)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++)
		if (cli_filter_match(f, v[i].budget))
			v[k++] = v[i];
	return k;
}

static int cache_stats(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	ratectl_http_cache_stats *v;
	char why[PATH_MAX + 256];
	rh__conf *conf = NULL;
	cli_filter f;
	size_t n;
	int o, json = 0, one, rc;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'j')
			return cli_badopt(c, o, argv);
		json = 1;
	}
	if ((rc = cli_filter_init(c, &f, argv + optind, argc - optind)) != 0)
		return rc;
	if ((rc = cli_open(c)) != 0)
		return rc;
	/* One plain name is read alone; patterns select among them all (as
	 * does a word that is no name, which then matches none). */
	one = cli_filter_literal(&f) && ratectl_name_check(f.pats[0]) == 0;
	rc = cli_caches(c, one ? f.pats[0] : NULL, &v, &n);
	if (rc == -ENOMEM)
		return cli_oom(c);
	if (rc != 0) {
		cli_err(c, "%s", cli_cache_why(c, rc, why, sizeof why));
		return CLI_ERROR;
	}
	n = stats_filter(&f, v, n);
	if (n)
		conf = stats_conf(c);
	if (json) {
		rc = stats_json(c, v, n, conf);
	} else if (n == 0 && f.n) {
		printf("no response cache in ledger %s for ", ratectl_path(c->h));
		cli_filter_say(&f, stdout);
		printf(" (see `cache` in ratectl.conf(5))\n");
	} else if (n == 0) {
		printf("no response cache in ledger %s: no budget has `cache` in "
		       "ratectl.conf(5), or none was used yet\n", ratectl_path(c->h));
	} else {
		rc = stats_table(c, v, n, conf);
	}
	rh__conf_free(conf);
	free(v);
	return rc;
}

/* ---- cache clear ------------------------------------------------------------------ */

static int cache_clear(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "reset-counters", no_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 }
	};
	const char *name = NULL;
	char why[PATH_MAX + 256];
	ratectl_http *h;
	int64_t removed;
	int o, reset = 0, rc;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'r')
			return cli_badopt(c, o, argv);
		reset = 1;
	}
	if (argc - optind > 1)
		return cli_usage(c, "clear: one budget at a time, or none for every "
		                 "budget ('%s' is one too many)", argv[optind + 1]);
	if (optind < argc) {
		name = argv[optind];
		if (strpbrk(name, "*?["))
			return cli_usage(c, "clear: '%s' is a pattern; give one budget's "
			                 "name, or none for every budget", name);
		if (ratectl_name_check(name) != 0)
			return cli_usage(c, "clear: '%s' is not a budget name "
			                 "([A-Za-z0-9._-], 1 to %d of them)", name,
			                 RATECTL_NAME_MAX);
	}
	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = http_open(c, &h)) != 0) {
		cli_err(c, "%s", cli_cache_why(c, rc, why, sizeof why));
		return CLI_ERROR;
	}
	removed = ratectl_http_cache_clear(h, name, reset);
	ratectl_http_close(h);
	if (removed < 0) {
		cli_err(c, "%s", cli_cache_why(c, (int)removed, why, sizeof why));
		return CLI_ERROR;
	}
	printf("removed %lld entr%s from the response cache of ", (long long)removed,
	       removed == 1 ? "y" : "ies");
	if (name)
		printf("'%s'", name);
	else
		printf("every budget");
	printf("%s\n", reset ? "; counters reset" : "");
	return CLI_OK;
}

/* ---- the command ------------------------------------------------------------------ */

int cmd_cache(cli *c, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub)
		return cli_usage(c, "stats or clear?");
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)
		return cli_help(c);
	/* The subcommand's arguments parse as a command's own, argv[0] its
	 * name: getopt starts afresh. */
	optind = 0;
	if (strcmp(sub, "stats") == 0)
		return cache_stats(c, argc - 1, argv + 1);
	if (strcmp(sub, "clear") == 0)
		return cache_clear(c, argc - 1, argv + 1);
	return cli_usage(c, "unknown subcommand '%s': stats or clear", sub);
}
