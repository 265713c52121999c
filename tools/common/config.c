/*
 * config.c - the ratectl config file (see config.h and ratectl.conf(5)).
 *
 * The file is INI, parsed with inih.  Debian's inih is built with only ';'
 * as an inline comment prefix, multi-line values on (an indented line
 * continues the previous value) and no line numbers in the handler.  The
 * documented format wants `# comment` after values, indentation that means
 * nothing, errors with line numbers, and empty or repeated sections caught.
 * So inih reads through our own line reader, which counts lines, strips
 * leading blanks (no line can then be a continuation) and inline comments
 * that start with a blank and '#', and notes each "[section]" header as it
 * passes.  inih still does the splitting into sections, keys and values.
 * What each key's value means is config_keys.c's business.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "config.h"

/* ---- match rules ---------------------------------------------------------- */

const rc_conf_budget *rc_conf_match(const rc_conf *conf, const char *host,
                                    unsigned port, const char *path)
{
	size_t i, j;

	if (!conf || !host)
		return NULL;
	if (!path)
		path = "";
	for (i = 0; i < conf->nbudgets; i++) {
		const rc_conf_budget *b = &conf->budgets[i];

		for (j = 0; j < b->nmatch; j++) {
			const rc_match *m = &b->match[j];

			if (strcasecmp(m->host, host) == 0 &&
			    (m->port == 0 || m->port == port) &&
			    strncmp(path, m->path, strlen(m->path)) == 0)
				return b;
		}
	}
	return NULL;
}

/* ---- the file ------------------------------------------------------------ */

struct parse {
	rc_conf *conf;
	FILE *f;
	char *buf;                 /* getline's buffer */
	size_t cap;
	unsigned line;
	rc_conf_budget *cur;       /* section being read; NULL before the first */
	struct {                   /* keys cur has set, and where */
		char name[24];
		unsigned line;
	} seen[24];
	unsigned nseen;
	int failed;
	char *err;
	size_t errlen;
};

static int perr(struct parse *p, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record the first error, as "FILE:LINE: what"; later ones are dropped. */
static int perr(struct parse *p, unsigned line, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (!p->failed) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
		snprintf(p->err, p->errlen, "%s:%u: %s", p->conf->path, line, msg);
	}
	p->failed = 1;
	return RATECTL_EBADCONFIG;
}

/* Line where the current section set key, or 0. */
static unsigned seen_line(const struct parse *p, const char *key)
{
	unsigned i;

	for (i = 0; i < p->nseen; i++)
		if (strcmp(p->seen[i].name, key) == 0)
			return p->seen[i].line;
	return 0;
}

/* A section is complete: bursts, and the rule that it must limit something. */
static int section_end(struct parse *p)
{
	rc_conf_budget *cb = p->cur;
	unsigned bl = seen_line(p, "burst");
	char msg[512];

	if (rc_conf_budget_finish(cb, msg, sizeof msg) != 0)
		return perr(p, bl ? bl : cb->line, "[%s]: key 'burst': %s", cb->name, msg);
	if (!rc_conf_budget_has_limit(cb))
		return perr(p, cb->line, "[%s]: no limit; give requests, tokens or "
		            "concurrency", cb->name);
	return 0;
}

static int section_start(struct parse *p, const char *line)
{
	const char *end = strchr(line, ']'), *s = line + 1;
	char name[RATECTL_NAME_MAX + 8];
	rc_conf_budget *nb;
	size_t i;

	if (!end)
		return perr(p, p->line, "no ']' after the section name");
	if (end[1 + strspn(end + 1, " \t\r\n")] != '\0')
		return perr(p, p->line, "unexpected text after ']'");
	s += strspn(s, " \t");
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	snprintf(name, sizeof name, "%.*s", (int)(end - s), s);
	if (ratectl_name_check(name) != 0)
		return perr(p, p->line, "section [%s]: %s", name, ratectl_errmsg());
	for (i = 0; i < p->conf->nbudgets; i++)
		if (strcmp(p->conf->budgets[i].name, name) == 0)
			return perr(p, p->line, "section [%s] appears twice (first on "
			            "line %u)", name, p->conf->budgets[i].line);
	if (p->cur && section_end(p) != 0)
		return RATECTL_EBADCONFIG;
	nb = realloc(p->conf->budgets, (p->conf->nbudgets + 1) * sizeof *nb);
	if (!nb)
		return perr(p, p->line, "out of memory");
	p->conf->budgets = nb;
	p->cur = &nb[p->conf->nbudgets++];
	rc_conf_budget_init(p->cur, name);
	p->cur->line = p->line;
	p->nseen = 0;
	return 0;
}

/* A '#' or ';' that follows a blank starts a comment ("[openai] ; x"
 * included, which inih would accept but section_start() could not). */
static void strip_comment(char *s)
{
	char *q;

	for (q = s; (q = strpbrk(q, "#;")) != NULL; q++)
		if (q > s && (q[-1] == ' ' || q[-1] == '\t')) {
			q[0] = '\n';
			q[1] = '\0';
			return;
		}
}

/* inih's line reader (fgets-like); see the top of the file for why. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	ssize_t n;
	char *s;

	if (p->failed || (n = getline(&p->buf, &p->cap, p->f)) < 0)
		return NULL;
	p->line++;
	for (s = p->buf; *s == ' ' || *s == '\t'; s++)
		;
	strip_comment(s);
	if (strlen(s) + 2 > (size_t)num) {
		perr(p, p->line, "line longer than %d characters", num - 3);
		return NULL;
	}
	if (*s == '[' && section_start(p, s) != 0)
		return NULL;
	memcpy(str, s, strlen(s) + 1);
	return str;
}

static int handler(void *user, const char *section, const char *name,
                   const char *value)
{
	struct parse *p = user;
	unsigned first;
	char msg[512];

	(void)section;          /* p->cur says the same, with a line number */
	if (p->failed)
		return 0;
	if (!p->cur) {
		perr(p, p->line, "key '%s' before any [section]", name);
		return 0;
	}
	if (!rc_conf_key_known(name)) {
		perr(p, p->line, "[%s]: unknown key '%s'", p->cur->name, name);
		return 0;
	}
	/* Known keys are short and few: seen[] cannot overflow. */
	if ((first = seen_line(p, name)) != 0 && strcmp(name, "match") != 0) {
		perr(p, p->line, "[%s]: key '%s' given twice (first on line %u)",
		     p->cur->name, name, first);
		return 0;
	}
	if (!first && p->nseen < sizeof p->seen / sizeof p->seen[0]) {
		snprintf(p->seen[p->nseen].name, sizeof p->seen[0].name, "%s", name);
		p->seen[p->nseen++].line = p->line;
	}
	if (rc_conf_budget_key(p->cur, name, value, msg, sizeof msg) != 0) {
		perr(p, p->line, "[%s]: key '%s': %s", p->cur->name, name, msg);
		return 0;
	}
	return 1;
}

static int parse_file(struct parse *p)
{
	int rc = ini_parse_stream(reader, p, handler, p);

	if (p->failed)
		return RATECTL_EBADCONFIG;
	if (rc > 0)
		return perr(p, (unsigned)rc, "expected 'key = value', '[section]' or a "
		            "comment");
	if (rc < 0)
		return perr(p, p->line, "out of memory");
	return p->cur ? section_end(p) : 0;
}

int rc_conf_load(rc_conf **out, const char *path, char *err, size_t errlen)
{
	struct parse p = { .err = err, .errlen = errlen };
	int rc;

	*out = NULL;
	if (!path)
		path = rc_conf_default_path();
	if (!(p.conf = calloc(1, sizeof *p.conf)))
		return -ENOMEM;
	snprintf(p.conf->path, sizeof p.conf->path, "%s", path);
	if (!(p.f = fopen(path, "re"))) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		rc_conf_free(p.conf);
		return rc;
	}
	rc = parse_file(&p);
	fclose(p.f);
	free(p.buf);
	if (rc != 0) {
		rc_conf_free(p.conf);
		return rc;
	}
	*out = p.conf;
	return 0;
}

void rc_conf_free(rc_conf *conf)
{
	if (!conf)
		return;
	free(conf->budgets);
	free(conf);
}

const char *rc_conf_default_path(void)
{
	const char *env = getenv("RATECTL_CONFIG");

	return env && *env ? env : "/etc/ratectl.conf";
}

const rc_conf_budget *rc_conf_find(const rc_conf *conf, const char *name)
{
	size_t i;

	for (i = 0; conf && i < conf->nbudgets; i++)
		if (strcmp(conf->budgets[i].name, name) == 0)
			return &conf->budgets[i];
	return NULL;
}
