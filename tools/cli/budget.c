/*
 * budget.c - the commands that change budgets: apply (a whole config
 * file), set (one budget from options), delete, reset and cooldown.
 * apply and set make a budget's sharing through Redis (ratectl.conf(5)
 * `shared =`) match too, with ratectl_budget_share().
 *
 * Changes are live: the library rescales each kept limit's state to its
 * new rate and every process sees the change at its next admission, so
 * apply never has to stop anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct tally {
	unsigned created, updated, deleted, same;
};

static int limit_cmp(const void *a, const void *b)
{
	const ratectl_limit *x = a, *y = b;

	if (x->dim != y->dim)
		return x->dim < y->dim ? -1 : 1;
	return x->period_ns < y->period_ns ? -1 : x->period_ns > y->period_ns;
}

/* The configuration as the ledger stores it: bursts filled in, limits in
 * (dimension, period) order, so that two can be compared field by field. */
static ratectl_budget normal(const ratectl_budget *in)
{
	ratectl_budget b = *in;
	unsigned i;

	for (i = 0; i < b.nlimits; i++)
		if (b.limits[i].burst == 0)
			b.limits[i].burst = b.limits[i].count;
	if (b.batch_share == 0)
		b.batch_share = RATECTL_BATCH_SHARE_DEFAULT;
	qsort(b.limits, b.nlimits, sizeof b.limits[0], limit_cmp);
	return b;
}

/* Field by field: the structs have padding that memcmp would compare. */
static int same_budget(const ratectl_budget *a, const ratectl_budget *b)
{
	unsigned i;

	if (a->nlimits != b->nlimits || a->max_inflight != b->max_inflight ||
	    a->jitter_ns != b->jitter_ns || a->batch_share != b->batch_share ||
	    a->expire_ns != b->expire_ns || a->weight != b->weight ||
	    strcmp(a->origin, b->origin) != 0)
		return 0;
	for (i = 0; i < a->nlimits; i++)
		if (a->limits[i].dim != b->limits[i].dim ||
		    a->limits[i].count != b->limits[i].count ||
		    a->limits[i].period_ns != b->limits[i].period_ns ||
		    a->limits[i].burst != b->limits[i].burst)
			return 0;
	return 1;
}

/* One part of a budget in words: a dimension's limits, the cap, jitter. */
static void part(char *buf, size_t len, const ratectl_budget *b, int which)
{
	char one[FMT_LONG];
	size_t used = 0;
	unsigned i;

	buf[0] = '\0';
	if (which == 2) {
		snprintf(buf, len, "%u", b->max_inflight);
		return;
	}
	if (which == 3) {
		fmt_dur(one, b->jitter_ns);
		snprintf(buf, len, "%s", b->jitter_ns ? one : "default");
		return;
	}
	if (which == 4) {
		snprintf(buf, len, "%u%%", b->batch_share);
		return;
	}
	if (which == 5) {
		snprintf(buf, len, "%s", b->expire_ns ? fmt_dur(one, b->expire_ns) : "never");
		return;
	}
	if (which == 6) {
		snprintf(buf, len, "%u", b->weight);
		return;
	}
	if (which == 7) {
		snprintf(buf, len, "%s", b->origin[0] ? b->origin : "none");
		return;
	}
	for (i = 0; i < b->nlimits; i++)
		if (b->limits[i].dim == (ratectl_dim)which)
			used += (size_t)snprintf(buf + used, used < len ? len - used : 0,
			                         "%s%s", used ? ", " : "",
			                         fmt_limit(one, &b->limits[i]));
	if (used == 0)
		snprintf(buf, len, "none");
}

static const char *const part_names[] = { "requests", "tokens", "concurrency",
                                          "jitter", "batch share", "expire",
                                          "weight", "origin" };
#define NPARTS 8

/* "requests 500 per min; tokens 200k per min; concurrency 16" for a new
 * budget, "requests 500 per min -> 600 per min" for a change. */
static void describe(const ratectl_budget *old, const ratectl_budget *new)
{
	char a[512], b[512];
	const char *sep = "";
	int i;

	for (i = 0; i < NPARTS; i++) {
		part(b, sizeof b, new, i);
		if (old) {
			part(a, sizeof a, old, i);
			if (strcmp(a, b) != 0)
				printf("%s%s %s -> %s", sep, part_names[i], a, b);
			else
				continue;
		} else if (strcmp(b, "none") == 0 || strcmp(b, "0") == 0 ||
		           strcmp(b, "default") == 0 || strcmp(b, "never") == 0 || (i == 4 &&
		           new->batch_share == RATECTL_BATCH_SHARE_DEFAULT)) {
			continue;
		} else {
			printf("%s%s %s", sep, part_names[i], b);
		}
		sep = "; ";
	}
	putchar('\n');
}

/* ---- sharing ---------------------------------------------------------------- */

/* Two shares alike: both not shared, or every field the same. */
static int same_share(const ratectl_share *a, const ratectl_share *b)
{
	if (!a->url[0] || !b->url[0])
		return !a->url[0] && !b->url[0];
	return strcmp(a->url, b->url) == 0 && a->hosts == b->hosts &&
	       a->flags == b->flags &&
	       strcmp(a->password_file, b->password_file) == 0 &&
	       strcmp(a->password_env, b->password_env) == 0;
}

/* Where the password comes from, never what it is. */
static void password_part(char *buf, size_t len, const ratectl_share *s)
{
	if (s->password_file[0])
		snprintf(buf, len, "file %s", s->password_file);
	else if (s->password_env[0])
		snprintf(buf, len, "$%s", s->password_env);
	else
		snprintf(buf, len, "none");
}

static const char *fallback_part(const ratectl_share *s)
{
	return (s->flags & RATECTL_SHARE_OPEN) ? "open" : "share";
}

/*
 * "share openai: redis://10.0.0.5:6379/0, 3 hosts" for a budget that
 * starts sharing, "share openai: hosts 3 -> 5" for a change, and "stop
 * sharing openai"; as describe() does for the limits.
 */
static void describe_share(const char *name, const ratectl_share *old,
                           const ratectl_share *new)
{
	char a[RATECTL_SHARE_URL_MAX + 1], b[RATECTL_SHARE_URL_MAX + 1];
	char pa[RATECTL_SHARE_PATH_MAX + 16], pb[RATECTL_SHARE_PATH_MAX + 16];
	const char *sep = "";

	if (!new->url[0]) {
		printf("stop sharing %s\n", name);
		return;
	}
	password_part(pb, sizeof pb, new);
	if (!old->url[0]) {
		printf("share %s: %s, %u host%s", name, show_url(b, new), new->hosts,
		       new->hosts == 1 ? "" : "s");
		if (strcmp(pb, "none") != 0)
			printf(", password from %s", pb);
		if (new->flags & RATECTL_SHARE_OPEN)
			printf(", open when Redis is unreachable");
		putchar('\n');
		return;
	}
	printf("share %s: ", name);
	if (strcmp(old->url, new->url) != 0) {
		printf("url %s -> %s", show_url(a, old), show_url(b, new));
		sep = "; ";
	}
	if (old->hosts != new->hosts) {
		printf("%shosts %u -> %u", sep, old->hosts, new->hosts);
		sep = "; ";
	}
	password_part(pa, sizeof pa, old);
	if (strcmp(pa, pb) != 0) {
		printf("%spassword %s -> %s", sep, pa, pb);
		sep = "; ";
	}
	if (old->flags != new->flags)
		printf("%son_redis_error %s -> %s", sep, fallback_part(old),
		       fallback_part(new));
	putchar('\n');
}

/*
 * Create or update one budget from cb, limits and sharing; prints what it
 * did.  An unchanged budget is not written: a set, even to the same
 * values, would rescale its limits' state, and apply is meant to be run
 * again and again.  The limits come first: a budget must exist to be
 * shared.  --dry-run goes through the same path and stops short of the
 * writes, so that what it prints is what apply would do.
 */
static int apply_one(cli *c, const rh__conf_budget *cb, int dry, struct tally *t)
{
	ratectl_budget_info in;
	ratectl_shared_state ss;
	ratectl_budget was, want = normal(&cb->budget);
	int rc, exists, same_limits = 0, same_sharing;

	memset(&ss, 0, sizeof ss);
	rc = ratectl_budget_get(c->h, cb->name, &in);
	if (rc != 0 && rc != RATECTL_ENOTFOUND)
		return cli_fail(c, rc, cb->name);
	exists = rc == 0;
	if (exists) {
		was = normal(&in.config);
		same_limits = same_budget(&was, &want);
		if ((rc = ratectl_budget_shared_state(c->h, cb->name, &ss)) != 0)
			return cli_fail(c, rc, cb->name);
	}
	same_sharing = same_share(&ss.share, &cb->share);
	if (same_limits && same_sharing) {
		t->same++;
		return 0;
	}
	if (!same_limits) {
		if (!dry && (rc = ratectl_budget_set(c->h, cb->name, &cb->budget, 0)) != 0)
			return cli_fail(c, rc, cb->name);
		printf("%s %s: ", exists ? "update" : "create", cb->name);
		describe(exists ? &was : NULL, &want);
	}
	if (!same_sharing) {
		if (!dry && (rc = ratectl_budget_share(c->h, cb->name, &cb->share)) != 0)
			return cli_fail(c, rc, cb->name);
		describe_share(cb->name, &ss.share, &cb->share);
	}
	if (exists)
		t->updated++;
	else
		t->created++;
	return 0;
}

/*
 * Templates ([user-*]: a section name with a '*') are not budgets: their
 * budgets are made on first use, by the processes that admit, and removed
 * once idle.  The config lists them apart (conf->templates), so apply
 * creates no budget for one, and --prune keeps the budgets whose origin is
 * a template of the file: the file does not name them, and never will.
 */
static int conf_has_template(const rh__conf *conf, const char *origin)
{
	return origin[0] && rh__conf_template_find(conf, origin) != NULL;
}

/* Delete the budgets of the ledger that conf does not name.  Runs after
 * every create and update succeeded: an apply that fails half way never
 * leaves the host with fewer budgets than it had. */
static int prune(cli *c, const rh__conf *conf, int dry, struct tally *t)
{
	ratectl_budget_info *v;
	size_t n, i;
	int rc;

	if ((rc = cli_snapshot(c, &v, &n)) != 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++) {
		if (rh__conf_find(conf, v[i].name) ||
		    conf_has_template(conf, v[i].config.origin))
			continue;
		if (!dry && (rc = ratectl_budget_delete(c->h, v[i].name)) != 0 &&
		    rc != RATECTL_ENOTFOUND) {
			rc = cli_fail(c, rc, v[i].name);
			break;
		}
		rc = 0;
		printf("delete %s\n", v[i].name);
		t->deleted++;
	}
	free(v);
	return rc;
}

int cmd_apply(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "prune", no_argument, NULL, 'p' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 }
	};
	struct tally t = { 0, 0, 0, 0 };
	int o, rc, dry = 0, do_prune = 0;
	const char *path = c->config;
	rh__conf *conf;
	char err[1024];
	size_t i;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		switch (o) {
		case 'h': return cli_help(c);
		case 'p': do_prune = 1; break;
		case 'n': dry = 1; break;
		default: return cli_badopt(c, o, argv);
		}
	}
	if (optind + 1 < argc)
		return cli_usage(c, "one config file at a time");
	if (optind < argc)
		path = argv[optind];
	/* The whole file is read and validated before the ledger is touched:
	 * --prune acts on what the file leaves out, so a file that was not
	 * read to its end must delete nothing (rh__conf_load() fails then). */
	if ((rc = rh__conf_load(&conf, path, err, sizeof err)) != 0) {
		cli_err(c, "%s", err);
		return CLI_ERROR;
	}
	/* An empty file is more often a truncated one (a failed write, a `>`
	 * meant as `>>`) than a wish to delete every budget. */
	if (do_prune && conf->nbudgets == 0 && conf->ntemplates == 0) {
		cli_err(c, "%s names no budget: --prune would delete every budget; "
		        "refusing (delete them with `ratectl delete NAME`)", conf->path);
		rh__conf_free(conf);
		return CLI_ERROR;
	}
	if ((rc = cli_open(c)) == 0) {
		for (i = 0; i < conf->nbudgets && rc == 0; i++)
			rc = apply_one(c, &conf->budgets[i], dry, &t);
		if (rc == 0 && do_prune)
			rc = prune(c, conf, dry, &t);
	}
	if (rc == 0) {
		printf("%s: %u created, %u updated, %u deleted, %u unchanged", conf->path,
		       t.created, t.updated, t.deleted, t.same);
		if (conf->ntemplates)
			printf("; %zu template%s (budgets made on first use)",
			       conf->ntemplates, conf->ntemplates == 1 ? "" : "s");
		printf("%s\n", dry ? " (dry run: nothing was changed)" : "");
	}
	rh__conf_free(conf);
	return rc;
}

/* ---- set ------------------------------------------------------------------- */

/* Options of set, by value: given[] is indexed by it; the first
 * two are ratectl_dim values.  SET_SHARED .. SET_ON_ERR are the sharing
 * options, in that order. */
enum { SET_REQUESTS, SET_TOKENS, SET_CONCURRENCY, SET_JITTER, SET_BURST,
       SET_BATCH, SET_SHARED, SET_HOSTS, SET_PW_FILE, SET_PW_ENV, SET_ON_ERR,
       SET_NO_SHARED, SET_EXPIRE, SET_WEIGHT, SET_ORIGIN, SET_N };

static const struct option set_opts[] = {
	{ "requests", required_argument, NULL, SET_REQUESTS },
	{ "tokens", required_argument, NULL, SET_TOKENS },
	{ "concurrency", required_argument, NULL, SET_CONCURRENCY },
	{ "jitter", required_argument, NULL, SET_JITTER },
	{ "burst", required_argument, NULL, SET_BURST },
	{ "batch-share", required_argument, NULL, SET_BATCH },
	{ "shared", required_argument, NULL, SET_SHARED },
	{ "hosts", required_argument, NULL, SET_HOSTS },
	{ "password-file", required_argument, NULL, SET_PW_FILE },
	{ "password-env", required_argument, NULL, SET_PW_ENV },
	{ "on-redis-error", required_argument, NULL, SET_ON_ERR },
	{ "no-shared", no_argument, NULL, SET_NO_SHARED },
	{ "expire", required_argument, NULL, SET_EXPIRE },
	{ "weight", required_argument, NULL, SET_WEIGHT },
	{ "origin", required_argument, NULL, SET_ORIGIN },
	{ NULL, 0, NULL, 0 }
};

/* The config key each option stands for (--no-shared: none; the last
 * three are read here, see issue_options()). */
static const char *const set_keys[SET_N] = {
	"requests", "tokens", "concurrency", "jitter", "burst", "batch_share",
	"shared", "hosts", "password_file", "password_env", "on_redis_error", NULL,
	NULL, NULL, NULL
};

/* The longest --expire: as a template's `expire` (ratectl.conf(5)). */
#define EXPIRE_MAX_NS (366LL * 86400 * 1000000000LL)

/* --expire DURATION|never, --weight N, --origin PATTERN|'' into cb:
 * 0 or an exit code.  A budget's own fields, with no config key of a
 * budget's section (expire is a template's key there). */
static int issue_option(const cli *c, int o, const char *v, rh__conf_budget *cb)
{
	uint64_t w;
	int64_t ns;
	const char *p;

	switch (o) {
	case SET_EXPIRE:
		if (strcmp(v, "never") == 0) {
			cb->budget.expire_ns = 0;
			return 0;
		}
		if (ratectl_parse_duration(v, &ns) != 0 || ns < 0 || ns > EXPIRE_MAX_NS)
			return cli_usage(c, "--expire '%s': a duration (30s, 10m, 1h), 0 to "
			                 "366 days, or never", v);
		cb->budget.expire_ns = ns;
		return 0;
	case SET_WEIGHT:
		if (cli_parse_u64(v, RATECTL_WEIGHT_MAX, &w) != 0)
			return cli_usage(c, "--weight '%s': a whole number, 0 (not a tenant) "
			                 "to %d", v, RATECTL_WEIGHT_MAX);
		cb->budget.weight = (unsigned)w;
		return 0;
	case SET_ORIGIN:
		if (strlen(v) > RATECTL_NAME_MAX)
			return cli_usage(c, "--origin '%.32s...': longer than %d bytes", v,
			                 RATECTL_NAME_MAX);
		for (p = v; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
			      *p == '-' || *p == '*'))
				return cli_usage(c, "--origin '%s': '%c' is neither a name "
				                 "character ([A-Za-z0-9._-]) nor '*'", v, *p);
		snprintf(cb->budget.origin, sizeof cb->budget.origin, "%s", v);
		return 0;
	}
	return 0;
}

/* Longest values of --shared, --hosts (unused), --password-file and
 * --password-env: the fields of ratectl_share. */
static const size_t set_max[] = { RATECTL_SHARE_URL_MAX, 0, RATECTL_SHARE_PATH_MAX,
                                   RATECTL_SHARE_ENV_MAX };

/* A message of the config's parser or of the library without the key's
 * name that starts it ("shared: ..."): the caller names the option. */
static const char *unkeyed(const char *msg, const char *key)
{
	size_t n = strlen(key);

	return strncmp(msg, key, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ?
	       msg + n + 2 : msg;
}

/* Keep what the options did not replace from the budget as it is. */
static void merge(rh__conf_budget *cb, const ratectl_budget *old,
                  const int given[SET_N])
{
	unsigned i;

	for (i = 0; i < old->nlimits && cb->budget.nlimits < RATECTL_MAX_LIMITS; i++) {
		if (given[old->limits[i].dim])
			continue;
		cb->own_burst[cb->budget.nlimits] = 1;
		cb->budget.limits[cb->budget.nlimits++] = old->limits[i];
	}
	if (!given[SET_CONCURRENCY])
		cb->budget.max_inflight = old->max_inflight;
	if (!given[SET_JITTER])
		cb->budget.jitter_ns = old->jitter_ns;
	if (!given[SET_BATCH])
		cb->budget.batch_share = old->batch_share;
	if (!given[SET_EXPIRE])
		cb->budget.expire_ns = old->expire_ns;
	if (!given[SET_WEIGHT])
		cb->budget.weight = old->weight;
	if (!given[SET_ORIGIN])
		memcpy(cb->budget.origin, old->origin, sizeof cb->budget.origin);
}

/*
 * The sharing set asks for, into cb->share: the options over how the
 * budget is shared now (cur, url "" when it is not), as merge() does for
 * the limits: --hosts alone changes the hosts of a shared budget, and a
 * budget set without any sharing option stays as it is.  0 or an exit code.
 */
static int merge_share(const cli *c, rh__conf_budget *cb, const ratectl_share *cur,
                       const int given[SET_N])
{
	ratectl_share *s = &cb->share;
	int o;

	if (given[SET_NO_SHARED]) {
		memset(s, 0, sizeof *s);
		s->version = RATECTL_SHARE_VERSION;
		return 0;
	}
	if (!given[SET_SHARED] && !cur->url[0]) {
		for (o = SET_HOSTS; o <= SET_ON_ERR; o++)
			if (given[o])
				return cli_usage(c, "--%s: %s is not shared; give --shared URL "
				                 "too", set_opts[o].name, cb->name);
		return 0;
	}
	if (!given[SET_SHARED])
		memcpy(s->url, cur->url, sizeof s->url);
	if (cur->url[0]) {
		if (!given[SET_HOSTS])
			s->hosts = cur->hosts;
		if (!given[SET_ON_ERR])
			s->flags = cur->flags;
		if (!given[SET_PW_FILE] && !given[SET_PW_ENV]) {
			memcpy(s->password_file, cur->password_file, sizeof s->password_file);
			memcpy(s->password_env, cur->password_env, sizeof s->password_env);
		}
	}
	if (!s->hosts)
		return cli_usage(c, "--shared %s: give --hosts N too: while Redis is "
		                 "unreachable, each host admits 1/N of every limit", s->url);
	if (ratectl_share_check(s) != 0)
		return cli_usage(c, "%s", ratectl_errmsg());
	return 0;
}

/* What can be checked of the sharing options before the ledger is
 * opened: that they go together, and the URL (parsed, not connected to). */
static int check_share_options(const cli *c, const rh__conf_budget *cb,
                               const int given[SET_N])
{
	ratectl_share s = cb->share;
	int o;

	for (o = SET_SHARED; o <= SET_ON_ERR && given[SET_NO_SHARED]; o++)
		if (given[o])
			return cli_usage(c, "--no-shared and --%s: stop sharing, or share",
			                 set_opts[o].name);
	if (given[SET_PW_FILE] && given[SET_PW_ENV])
		return cli_usage(c, "--password-file %s and --password-env %s: the "
		                 "password comes from one or the other",
		                 s.password_file, s.password_env);
	if (!given[SET_SHARED])
		return 0;
	if (!s.hosts)
		s.hosts = 1;    /* checked once merged */
	if (ratectl_share_check(&s) != 0)
		return cli_usage(c, "--shared: %s", unkeyed(ratectl_errmsg(), "shared"));
	return 0;
}

/* Parse set's options into cb, as the config keys they stand for;
 * -1 when --help was printed, else 0 or an exit code. */
static int set_options(cli *c, int argc, char **argv, rh__conf_budget *cb,
                       int given[SET_N])
{
	char err[512];
	int o, rc;

	while ((o = cli_getopt(argc, argv, set_opts, 1)) != -1) {
		if (o == 'h') {
			cli_help(c);
			return -1;
		}
		if (o < 0 || o >= SET_N)
			return cli_badopt(c, o, argv);
		if (given[o]++)
			return cli_usage(c, "--%s given twice", set_opts[o].name);
		if (o >= SET_SHARED && o <= SET_PW_ENV && set_max[o - SET_SHARED] &&
		    strlen(optarg) > set_max[o - SET_SHARED])
			return cli_usage(c, "--%s '%.32s...': %zu bytes, longer than the %zu "
			                 "it may have", set_opts[o].name, optarg,
			                 strlen(optarg), set_max[o - SET_SHARED]);
		if (set_keys[o] &&
		    rh__conf_budget_key(cb, set_keys[o], optarg, err, sizeof err) != 0)
			return cli_usage(c, "--%s: %s", set_opts[o].name,
			                 unkeyed(err, set_keys[o]));
		if (o >= SET_EXPIRE && (rc = issue_option(c, o, optarg, cb)) != 0)
			return rc;
	}
	if (optind + 1 != argc)
		return cli_usage(c, optind < argc ? "one budget at a time" : "which budget?");
	if (ratectl_name_check(argv[optind]) != 0)
		return cli_usage(c, "%s", ratectl_errmsg());
	if (given[SET_BURST] && !given[SET_REQUESTS] && !given[SET_TOKENS])
		return cli_usage(c, "--burst applies to the limits given with --requests "
		                 "or --tokens");
	snprintf(cb->name, sizeof cb->name, "%s", argv[optind]);
	return check_share_options(c, cb, given);
}

int cmd_set(cli *c, int argc, char **argv)
{
	struct tally t = { 0, 0, 0, 0 };
	int rc, given[SET_N] = { 0 };
	ratectl_budget_info in;
	ratectl_shared_state ss;
	rh__conf_budget cb;
	char err[512];

	rh__conf_budget_init(&cb, "");
	memset(&ss, 0, sizeof ss);
	if ((rc = set_options(c, argc, argv, &cb, given)) != 0)
		return rc < 0 ? CLI_OK : rc;
	if ((rc = cli_open(c)) != 0)
		return rc;
	rc = ratectl_budget_get(c->h, cb.name, &in);
	if (rc != 0 && rc != RATECTL_ENOTFOUND)
		return cli_fail(c, rc, cb.name);
	if (rc == 0) {
		merge(&cb, &in.config, given);
		if ((rc = ratectl_budget_shared_state(c->h, cb.name, &ss)) != 0)
			return cli_fail(c, rc, cb.name);
	}
	if ((rc = merge_share(c, &cb, &ss.share, given)) != 0)
		return rc;
	if (rh__conf_budget_finish(&cb, err, sizeof err) != 0)
		return cli_usage(c, "%s%s", given[SET_BURST] ? "--burst: " : "", err);
	if (!rh__conf_budget_has_limit(&cb))
		return cli_usage(c, "a new budget needs --requests, --tokens or "
		                 "--concurrency");
	if ((rc = apply_one(c, &cb, 0, &t)) != 0)
		return rc;
	if (t.same)
		printf("unchanged %s\n", cb.name);
	return CLI_OK;
}

/* ---- delete, reset, cooldown ----------------------------------------------- */

/* Processes holding leases of a deleted budget release them harmlessly:
 * the library checks the budget's id, never just its name. */
int cmd_delete(cli *c, int argc, char **argv)
{
	int o, rc;

	while ((o = cli_getopt(argc, argv, NULL, 1)) != -1)
		return o == 'h' ? cli_help(c) : cli_badopt(c, o, argv);
	if (optind + 1 != argc)
		return cli_usage(c, optind < argc ? "one budget at a time" : "which budget?");
	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = ratectl_budget_delete(c->h, argv[optind])) != 0)
		return cli_fail(c, rc, argv[optind]);
	printf("deleted %s\n", argv[optind]);
	return CLI_OK;
}

int cmd_reset(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 }
	};
	const char *name = NULL;
	int o, rc, all = 0;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'a')
			return cli_badopt(c, o, argv);
		all = 1;
	}
	if (all == (optind < argc) || optind + 1 < argc)
		return cli_usage(c, "give one budget or --all");
	if (!all)
		name = argv[optind];
	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = ratectl_budget_reset(c->h, name)) != 0)
		return cli_fail(c, rc, name ? name : "reset");
	printf("reset %s: limits full, no cooldown\n", name ? name : "every budget");
	return CLI_OK;
}

int cmd_cooldown(cli *c, int argc, char **argv)
{
	ratectl_budget_info in;
	char d[FMT_LEN];
	int64_t ns;
	int o, rc;

	while ((o = cli_getopt(argc, argv, NULL, 1)) != -1)
		return o == 'h' ? cli_help(c) : cli_badopt(c, o, argv);
	if (optind + 2 != argc)
		return cli_usage(c, "give a budget and a duration");
	if (ratectl_parse_duration(argv[optind + 1], &ns) != 0)
		return cli_usage(c, "%s", ratectl_errmsg());
	if (ns > RATECTL_PERIOD_MAX)
		return cli_usage(c, "a cooldown lasts at most 1 day");
	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = ratectl_cooldown(c->h, argv[optind], ns)) != 0 ||
	    (rc = ratectl_budget_get(c->h, argv[optind], &in)) != 0)
		return cli_fail(c, rc, argv[optind]);
	/* A shorter cooldown than the one running does not replace it: say
	 * what is in force, not what was asked. */
	if (in.cooldown_ns)
		printf("%s: cooling down, %s left\n", in.name, fmt_dur(d, in.cooldown_ns));
	else
		printf("%s: no cooldown\n", in.name);
	return CLI_OK;
}
