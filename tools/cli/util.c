/*
 * util.c - what every command needs: messages on stderr, option parsing
 * with --help, opening the ledger, and copies of the ledger's budgets and
 * leases that a command can sort, print and free.
 */
#include <errno.h>
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
	struct option all[16];
	size_t n = 0;

	while (opts && opts[n].name && n < 14) {
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
int cli_shared(cli *c, const ratectl_budget_info *v, size_t n,
               ratectl_shared_state ***out)
{
	ratectl_shared_state **s, one;
	size_t i;
	int rc = 0;

	*out = NULL;
	if (!(s = calloc(n ? n : 1, sizeof *s)))
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		rc = ratectl_budget_shared_state(c->h, v[i].name, &one);
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

void cli_shared_free(ratectl_shared_state **s, size_t n)
{
	size_t i;

	for (i = 0; s && i < n; i++)
		free(s[i]);
	free(s);
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
