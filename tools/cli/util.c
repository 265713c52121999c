/*
 * util.c - what every command needs: messages on stderr, option parsing
 * with --help, opening the ledger, and copies of the ledger's budgets and
 * leases that a command can sort, print and free.
 */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void vmsg(const cli *c, const char *fmt, va_list ap)
{
	fprintf(stderr, "ratectl: ");
	if (c && c->cmd)
		fprintf(stderr, "%s: ", c->cmd->name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cli_err(const cli *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(c, fmt, ap);
	va_end(ap);
}

int cli_fail(const cli *c, int rc, const char *what)
{
	const char *detail = ratectl_errmsg();

	/* The detail names the file, budget or value; the code's description
	 * covers failures that set none (an errno from the system). */
	if (detail && *detail)
		cli_err(c, "%s: %s", what, detail);
	else
		cli_err(c, "%s: %s", what, ratectl_strerror(rc));
	return rc == RATECTL_ETIMEDOUT ? CLI_TEMPFAIL : CLI_ERROR;
}

int cli_oom(const cli *c)
{
	cli_err(c, "out of memory");
	return CLI_ERROR;
}

int cli_usage(const cli *c, const char *fmt, ...)
{
	const char *u = c->cmd->help;
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vmsg(c, fmt, ap);
		va_end(ap);
	}
	/* The help's usage lines end at its first blank line. */
	fprintf(stderr, "%.*s\n", (int)(strstr(u, "\n\n") ? strstr(u, "\n\n") - u :
	                                (ptrdiff_t)strcspn(u, "\n")), u);
	fprintf(stderr, "Try `ratectl %s --help`.\n", c->cmd->name);
	return CLI_USAGE;
}

int cli_help(const cli *c)
{
	fputs(c->cmd->help, stdout);
	return CLI_OK;
}

int cli_getopt(int argc, char **argv, const struct option *opts, int permute)
{
	struct option all[24];
	size_t n = 0;

	while (opts && opts[n].name && n < 22) {
		all[n] = opts[n];
		n++;
	}
	all[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	all[n] = (struct option){ NULL, 0, NULL, 0 };
	/* ":" first (after "+") makes a missing argument ':' rather than '?'
	 * with getopt's own message; we print ours. */
	return getopt_long(argc, argv, permute ? ":h" : "+:h", all, NULL);
}

int cli_badopt(const cli *c, int o, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (o == ':')
		return cli_usage(c, "option '%s' needs a value", arg);
	if (optopt && optopt != '?')
		return cli_usage(c, "unknown option '-%c'", optopt);
	return cli_usage(c, "unknown option '%s'", arg);
}

int cli_ledger_dir(const cli *c, char *buf, size_t len)
{
	if (c->ledger) {
		if ((size_t)snprintf(buf, len, "%s", c->ledger) >= len)
			return -ENAMETOOLONG;
		return 0;
	}
	return ratectl_default_dir(buf, len);
}

/*
 * The library refuses a group-writable ledger directory unless asked to
 * share it with the group (ratectl_options.shared_group).  The admin tool
 * follows what the directory already is, so that one command works on a
 * private and on a shared ledger alike; it never makes one shared.
 */
int cli_open_dir(cli *c, const char *dir)
{
	ratectl_options opts = RATECTL_OPTIONS_INIT;
	struct stat st;
	int rc;

	if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & S_IWGRP))
		opts.shared_group = 1;
	if ((rc = ratectl_open(&c->h, dir, &opts)) != 0)
		c->h = NULL;
	return rc;
}

int cli_open(cli *c)
{
	char dir[PATH_MAX];
	int rc;

	if (c->h)
		return 0;
	if ((rc = cli_ledger_dir(c, dir, sizeof dir)) != 0) {
		cli_err(c, "ledger path too long");
		return CLI_ERROR;
	}
	if ((rc = cli_open_dir(c, dir)) != 0) {
		c->h = NULL;
		return cli_fail(c, rc, "cannot open the ledger");
	}
	return 0;
}

struct snap {
	ratectl_budget_info *v;
	size_t n, cap;
};

static int snap_add(const ratectl_budget_info *info, void *ctx)
{
	struct snap *s = ctx;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		ratectl_budget_info *v = realloc(s->v, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = *info;
	return 0;
}

int cli_budgets(cli *c, ratectl_budget_info **out, size_t *n)
{
	struct snap s = { NULL, 0, 0 };
	int rc;

	*out = NULL;
	*n = 0;
	/* All or nothing: a budget whose state could not be read fails the
	 * whole snapshot, rather than showing as zeros among the others. */
	if ((rc = ratectl_budget_foreach(c->h, snap_add, &s)) != 0) {
		free(s.v);
		return rc;
	}
	*out = s.v;
	*n = s.n;
	return 0;
}

int cli_snapshot(cli *c, ratectl_budget_info **out, size_t *n)
{
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = cli_open(c)) != 0)
		return rc;
	if ((rc = cli_budgets(c, out, n)) != 0)
		return cli_fail(c, rc, "cannot read the budgets");
	return 0;
}

int cli_leases(cli *c, const char *name, ratectl_lease_info **out, size_t *n)
{
	ratectl_lease_info *v = NULL, *nv;
	size_t cap = 0;
	int rc;

	*out = NULL;
	/* Slots may be taken between the two calls: grow until it fits. */
	for (;;) {
		if ((rc = ratectl_leases(c->h, name, v, cap, n)) != 0) {
			free(v);
			return cli_fail(c, rc, name);
		}
		if (*n <= cap)
			break;
		cap = *n + 16;
		if (!(nv = realloc(v, cap * sizeof *v))) {
			free(v);
			cli_err(c, "out of memory");
			return CLI_ERROR;
		}
		v = nv;
	}
	*out = v;
	return 0;
}

/*
 * One read per budget, after the snapshot: the library has no "every
 * budget's sharing" call, and ratectl_budget_info does not say which are
 * shared.  A read is a few microseconds (an LMDB read transaction, no
 * file opened), so 20,000 budgets cost a fraction of a second.  Only the
 * shared ones are kept, so the memory is in proportion to them.
 */
static int shared_of(cli *c, size_t n, const char *(*name)(const void *, size_t),
                     const void *v, ratectl_shared_state ***out)
{
	ratectl_shared_state **s, one;
	size_t i;
	int rc = 0;

	*out = NULL;
	if (!(s = calloc(n ? n : 1, sizeof *s)))
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		rc = ratectl_budget_shared_state(c->h, name(v, i), &one);
		if (rc == RATECTL_ENOTFOUND) {  /* deleted since the snapshot */
			rc = 0;
			continue;
		}
		if (rc != 0)
			break;
		if (!one.share.url[0])
			continue;
		if (!(s[i] = malloc(sizeof one))) {
			rc = -ENOMEM;
			break;
		}
		*s[i] = one;
	}
	if (rc != 0) {
		cli_shared_free(s, n);
		return rc;
	}
	*out = s;
	return 0;
}

static const char *info_name(const void *v, size_t i)
{
	return ((const ratectl_budget_info *)v)[i].name;
}

static const char *row_name(const void *v, size_t i)
{
	return ((const cli_row *const *)v)[i]->name;
}

int cli_shared(cli *c, const ratectl_budget_info *v, size_t n,
               ratectl_shared_state ***out)
{
	return shared_of(c, n, info_name, v, out);
}

int cli_shared_rows(cli *c, const cli_row *const *v, size_t n,
                    ratectl_shared_state ***out)
{
	return shared_of(c, n, row_name, v, out);
}

void cli_shared_free(ratectl_shared_state **s, size_t n)
{
	size_t i;

	for (i = 0; s && i < n; i++)
		free(s[i]);
	free(s);
}

/* Name characters (ratectl_name_check()) and the glob's own. */
static int pattern_char(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' ||
	       ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '!' ||
	       ch == '^';
}

int cli_filter_init(const cli *c, cli_filter *f, char **pats, int n)
{
	int i;
	const char *p;

	f->pats = pats;
	f->n = n > 0 ? n : 0;
	for (i = 0; i < f->n; i++) {
		/* A pattern that no budget name can match is a typo, said now
		 * rather than as an empty list that looks like no budgets. */
		if (!pats[i][0])
			return cli_usage(c, "an empty pattern matches no budget");
		if (strlen(pats[i]) > 4 * RATECTL_NAME_MAX)
			return cli_usage(c, "pattern '%.32s...' is longer than %d bytes",
			                 pats[i], 4 * RATECTL_NAME_MAX);
		for (p = pats[i]; *p; p++)
			if (!pattern_char((unsigned char)*p))
				return cli_usage(c, "pattern '%s': '%c' is in no budget name "
				                 "(names are [A-Za-z0-9._-]; patterns add "
				                 "* ? [...])", pats[i], *p);
	}
	return 0;
}

int cli_filter_match(const cli_filter *f, const char *name)
{
	int i;

	if (!f || f->n == 0)
		return 1;
	for (i = 0; i < f->n; i++)
		if (fnmatch(f->pats[i], name, 0) == 0)
			return 1;
	return 0;
}

int cli_filter_literal(const cli_filter *f)
{
	return f->n == 1 && !strpbrk(f->pats[0], "*?[");
}

void cli_filter_say(const cli_filter *f, FILE *out)
{
	int i;

	for (i = 0; i < f->n; i++)
		fprintf(out, "%s'%s'", i == 0 ? "" : i + 1 == f->n ? " or " : ", ",
		        f->pats[i]);
}

struct filtered {
	const cli_filter *f;
	int (*fn)(const ratectl_budget_info *in, void *ctx);
	void *ctx;
	size_t matched;
};

static int filtered_one(const ratectl_budget_info *in, void *ctx)
{
	struct filtered *x = ctx;

	if (!cli_filter_match(x->f, in->name))
		return 0;
	x->matched++;
	return x->fn(in, x->ctx);
}

int cli_foreach(cli *c, const cli_filter *f,
                int (*fn)(const ratectl_budget_info *in, void *ctx), void *ctx,
                size_t *matched)
{
	struct filtered x = { f, fn, ctx, 0 };
	int rc;

	rc = ratectl_budget_foreach(c->h, filtered_one, &x);
	if (matched)
		*matched = x.matched;
	return rc;
}

size_t cli_row_size(uint32_t nlimits)
{
	size_t n = sizeof(cli_row) + nlimits * sizeof(ratectl_limit_state);

	return (n + 7) & ~(size_t)7;
}

void cli_row_fill(cli_row *out, const ratectl_budget_info *in)
{
	uint32_t n = in->config.nlimits <= RATECTL_MAX_LIMITS ? in->config.nlimits :
	             RATECTL_MAX_LIMITS;

	memcpy(out->name, in->name, sizeof out->name);
	memcpy(out->origin, in->config.origin, sizeof out->origin);
	out->name[RATECTL_NAME_MAX] = out->origin[RATECTL_NAME_MAX] = '\0';
	out->nlimits = n;
	out->max_inflight = in->config.max_inflight;
	out->inflight = in->inflight;
	out->dead = in->dead;
	out->batch_share = in->config.batch_share;
	out->weight = in->config.weight;
	out->jitter_ns = in->config.jitter_ns;
	out->expire_ns = in->config.expire_ns;
	out->cooldown_ns = in->cooldown_ns;
	out->idle_ns = in->idle_ns;
	out->counters = in->counters;
	memcpy(out->state, in->state, n * sizeof in->state[0]);
}

void cli_row_info(const cli_row *r, ratectl_budget_info *out)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;
	uint32_t i;

	memset(out, 0, sizeof *out);
	memcpy(out->name, r->name, sizeof out->name);
	b.nlimits = r->nlimits;
	for (i = 0; i < r->nlimits; i++) {
		b.limits[i] = r->state[i].limit;
		out->state[i] = r->state[i];
	}
	b.max_inflight = r->max_inflight;
	b.jitter_ns = r->jitter_ns;
	b.batch_share = r->batch_share;
	b.expire_ns = r->expire_ns;
	b.weight = r->weight;
	memcpy(b.origin, r->origin, sizeof b.origin);
	out->config = b;
	out->inflight = r->inflight;
	out->dead = r->dead;
	out->cooldown_ns = r->cooldown_ns;
	out->counters = r->counters;
	out->idle_ns = r->idle_ns;
}

int cli_rows_add(cli_rows *r, const ratectl_budget_info *in)
{
	size_t need = cli_row_size(in->config.nlimits <= RATECTL_MAX_LIMITS ?
	                           in->config.nlimits : RATECTL_MAX_LIMITS);
	void *p;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256;

		if (!(p = realloc(r->off, cap * sizeof *r->off)))
			return -ENOMEM;
		r->off = p;
		r->cap = cap;
	}
	if (r->used + need > r->size) {
		size_t size = r->size ? r->size * 2 : 64 * 1024;

		while (size < r->used + need)
			size *= 2;
		if (!(p = realloc(r->buf, size)))
			return -ENOMEM;
		r->buf = p;
		r->size = size;
	}
	cli_row_fill((cli_row *)(void *)(r->buf + r->used), in);
	r->off[r->n++] = r->used;
	r->used += need;
	return 0;
}

const cli_row *cli_rows_at(const cli_rows *r, size_t i)
{
	return (const cli_row *)(const void *)(r->buf + r->off[i]);
}

void cli_rows_free(cli_rows *r)
{
	free(r->buf);
	free(r->off);
	memset(r, 0, sizeof *r);
}

int cli_tags_get(cli *c, const char *name, cli_tags *t)
{
	int rc;

	memset(t, 0, sizeof *t);
	rc = ratectl_tags(c->h, name, t->top, RATECTL_TAGS_TOP, &t->n, &t->rest);
	if (t->n > RATECTL_TAGS_TOP)
		t->n = RATECTL_TAGS_TOP;
	return rc;
}

int cli_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}
