/*
 * config.c - the config file through the public header
 * (ratectl_http_config_*), for tools and bindings that show or apply it:
 * conf.c's parse, each budget's match, model, key and also rules turned
 * back into the text the file would hold; the templates apart.  The texts live in one buffer
 * of the config, made at load: a file of 1 MiB yields at most a few MiB.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh.h"

struct ratectl_http_config {
	rh__conf *conf;
	char *text;                /* every budget's strings, NUL-separated */
	size_t len, cap;
	size_t (*off)[4];          /* per budget: match, models, keys, also */
};

/* Append s (n bytes) and a NUL to the text; -ENOMEM. */
static int put(struct ratectl_http_config *c, const char *s, size_t n)
{
	char *t;
	size_t cap;

	if (n + 1 > c->cap - c->len) {
		for (cap = c->cap ? c->cap : 4096; cap - c->len < n + 1; cap *= 2)
			;
		if (!(t = realloc(c->text, cap)))
			return -ENOMEM;
		c->text = t;
		c->cap = cap;
	}
	memcpy(c->text + c->len, s, n);
	c->text[c->len + n] = '\0';
	c->len += n + 1;
	return 0;
}

/* items[0..n) of size stride joined with ", " into buf. */
static size_t join(char *buf, size_t cap, const char *items, size_t stride, size_t n)
{
	size_t i, k = 0;

	buf[0] = '\0';
	for (i = 0; i < n && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "",
		                      items + i * stride);
	return k < cap ? k : cap - 1;
}

static size_t match_text(char *buf, size_t cap, const rh__conf_budget *b)
{
	size_t i, k = 0;

	buf[0] = '\0';
	for (i = 0; i < b->nmatch && k < cap; i++) {
		const rh__match *m = &b->match[i];
		int v6 = strchr(m->host, ':') != NULL;
		char port[16] = "";

		if (m->port)
			snprintf(port, sizeof port, ":%u", m->port);
		k += (size_t)snprintf(buf + k, cap - k, "%s%s%s%s%s%s", i ? ", " : "",
		                      v6 ? "[" : "", m->host, v6 ? "]" : "", port, m->path);
	}
	return k < cap ? k : cap - 1;
}

/* The texts of every budget, once. */
static int texts(struct ratectl_http_config *c)
{
	/* the longest: 16 rules of a 255-byte host, a port and a 255-byte path */
	char buf[RH_CONF_MAX_MATCH * 540];
	size_t i, n;
	int rc = 0;

	if (c->conf->nbudgets && !(c->off = calloc(c->conf->nbudgets, sizeof *c->off)))
		return -ENOMEM;
	for (i = 0; i < c->conf->nbudgets && rc == 0; i++) {
		const rh__conf_budget *b = &c->conf->budgets[i];

		c->off[i][0] = c->len;
		n = match_text(buf, sizeof buf, b);
		rc = put(c, buf, n);
		c->off[i][1] = c->len;
		n = join(buf, sizeof buf, b->models[0], sizeof b->models[0], b->nmodels);
		rc = rc ? rc : put(c, buf, n);
		c->off[i][2] = c->len;
		n = join(buf, sizeof buf, b->keys[0], sizeof b->keys[0], b->nkeys);
		rc = rc ? rc : put(c, buf, n);
		c->off[i][3] = c->len;
		n = join(buf, sizeof buf, b->also[0], sizeof b->also[0], b->nalso);
		rc = rc ? rc : put(c, buf, n);
	}
	return rc;
}

static int wrap(ratectl_http_config **out, rh__conf *conf)
{
	struct ratectl_http_config *c = calloc(1, sizeof *c);
	int rc;

	if (!c) {
		rh__conf_free(conf);
		return -ENOMEM;
	}
	c->conf = conf;
	if ((rc = texts(c)) != 0) {
		ratectl_http_config_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int ratectl_http_config_load(ratectl_http_config **out, const char *path,
                             char *err, size_t errlen)
{
	char e[1024];
	rh__conf *conf;
	int rc;

	*out = NULL;
	if ((rc = rh__conf_load(&conf, path, e, sizeof e)) != 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s", e);
		return rc;
	}
	return wrap(out, conf);
}

int ratectl_http_config_parse(ratectl_http_config **out, const char *name,
                              const char *text, size_t len, char *err, size_t errlen)
{
	char e[1024];
	rh__conf *conf;
	int rc;

	*out = NULL;
	if (!text)
		return -EINVAL;
	if ((rc = rh__conf_parse(&conf, name ? name : "config", text, len, e,
	                         sizeof e)) != 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s", e);
		return rc;
	}
	return wrap(out, conf);
}

size_t ratectl_http_config_count(const ratectl_http_config *c)
{
	return c ? c->conf->nbudgets : 0;
}

int ratectl_http_config_get(const ratectl_http_config *c, size_t i,
                            ratectl_http_config_budget *out)
{
	const rh__conf_budget *b;

	if (!c || !out || i >= c->conf->nbudgets)
		return -EINVAL;
	b = &c->conf->budgets[i];
	memset(out, 0, sizeof *out);
	out->name = b->name;
	out->budget = b->budget;
	out->match = c->text + c->off[i][0];
	out->models = c->text + c->off[i][1];
	out->keys = c->text + c->off[i][2];
	out->also = c->text + c->off[i][3];
	out->line = b->line;
	return 0;
}

int ratectl_http_config_find(const ratectl_http_config *c, const char *name,
                             size_t *index)
{
	const rh__conf_budget *b = c && name ? rh__conf_find(c->conf, name) : NULL;

	if (!b)
		return RATECTL_ENOTFOUND;
	if (index)
		*index = (size_t)(b - c->conf->budgets);
	return 0;
}

size_t ratectl_http_config_template_count(const ratectl_http_config *c)
{
	return c ? c->conf->ntemplates : 0;
}

int ratectl_http_config_template_get(const ratectl_http_config *c, size_t i,
                                     ratectl_http_config_budget *out)
{
	const rh__conf_budget *t;

	if (!c || !out || i >= c->conf->ntemplates)
		return -EINVAL;
	t = &c->conf->templates[i];
	memset(out, 0, sizeof *out);
	out->name = t->name;
	out->budget = t->budget;
	out->match = out->models = out->keys = out->also = "";
	out->line = t->line;
	return 0;
}

int ratectl_http_config_template_find(const ratectl_http_config *c,
                                      const char *pattern, size_t *index)
{
	const rh__conf_budget *t = c && pattern ?
		rh__conf_template_find(c->conf, pattern) : NULL;

	if (!t)
		return RATECTL_ENOTFOUND;
	if (index)
		*index = (size_t)(t - c->conf->templates);
	return 0;
}

const char *ratectl_http_config_default_path(void)
{
	return rh__conf_default_path();
}

void ratectl_http_config_free(ratectl_http_config *c)
{
	if (!c)
		return;
	rh__conf_free(c->conf);
	free(c->off);
	free(c->text);
	free(c);
}
