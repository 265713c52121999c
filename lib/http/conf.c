/*
 * config.c - the ratectl config file (see config.h and ratectl.conf(5)).
 *
 * The file is read whole into memory first, and only then parsed: a
 * budget is deleted by `apply --prune` on the strength of a file that is
 * not in it, so a file that could not be read to its end (a read error,
 * a directory, a FIFO, a device, anything over RH_CONF_MAX_SIZE) must be
 * an error, never a short file.  The read is bounded: the type and size
 * are checked on the opened descriptor, and at most one byte more than
 * the limit is ever read, so /dev/zero or a file growing under us costs
 * at most the limit.
 *
 * The text is INI, parsed with inih.  Debian's inih is built with only ';'
 * as an inline comment prefix, multi-line values on (an indented line
 * continues the previous value) and no line numbers in the handler.  The
 * documented format wants `# comment` after values, indentation that means
 * nothing, errors with line numbers, and empty or repeated sections caught.
 * So inih reads through our own line reader over the buffer, which counts
 * lines, strips leading blanks (no line can then be a continuation) and
 * inline comments that start with a blank and '#', and notes each
 * "[section]" header as it passes.  inih still does the splitting into
 * sections, keys and values.  What each key's value means is
 * config_keys.c's business.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "conf.h"

/* ---- match rules ---------------------------------------------------------- */

/* Iterative, with one backtrack point: linear-ish, no recursion depth
 * an adversarial pattern could exploit. */
int rh__glob(const char *pat, const char *s)
{
	const char *star = NULL, *back = NULL;

	while (*s) {
		if (*pat == '*') {
			star = pat++;
			back = s;
		} else if (*pat == *s) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++back;
		} else {
			return 0;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/* The budget's model and key conditions, when it has any. */
static int extra_match(const rh__conf_budget *b, const char *model, const char *key_id)
{
	size_t i;
	int ok;

	if (b->nmodels) {
		for (ok = 0, i = 0; model && i < b->nmodels && !ok; i++)
			ok = rh__glob(b->models[i], model);
		if (!ok)
			return 0;
	}
	if (b->nkeys) {
		for (ok = 0, i = 0; key_id && i < b->nkeys && !ok; i++)
			ok = strcmp(b->keys[i], key_id) == 0;
		if (!ok)
			return 0;
	}
	return 1;
}

/* Depth first; each call adds a new name, so the depth is at most cap. */
static int charged_add(const rh__conf *conf, const rh__conf_budget *b,
                       const char **names, unsigned *n, unsigned cap,
                       const char **bad)
{
	const rh__conf_budget *a;
	unsigned i;
	int rc;

	for (i = 0; i < *n; i++)
		if (strcmp(names[i], b->name) == 0)
			return 0;
	if (*n >= cap)
		return -E2BIG;
	names[(*n)++] = b->name;
	for (i = 0; i < b->nalso; i++) {
		if (!(a = rh__conf_find(conf, b->also[i]))) {
			*bad = b->also[i];
			return RATECTL_ENOTFOUND;
		}
		if ((rc = charged_add(conf, a, names, n, cap, bad)) != 0)
			return rc;
	}
	return 0;
}

int rh__conf_charged(const rh__conf *conf, const rh__conf_budget *b,
                     const char **names, unsigned cap, const char **bad)
{
	unsigned n = 0;
	int rc = charged_add(conf, b, names, &n, cap, bad);

	return rc ? rc : (int)n;
}

const rh__conf_budget *rh__conf_match(const rh__conf *conf, const char *host,
                                      unsigned port, const char *path,
                                      const char *model, const char *key_id)
{
	size_t i, j;

	if (!conf || !host)
		return NULL;
	if (!path)
		path = "";
	for (i = 0; i < conf->nbudgets; i++) {
		const rh__conf_budget *b = &conf->budgets[i];

		for (j = 0; j < b->nmatch; j++) {
			const rh__match *m = &b->match[j];

			if (strcasecmp(m->host, host) == 0 &&
			    (m->port == 0 || m->port == port) &&
			    strncmp(path, m->path, strlen(m->path)) == 0 &&
			    extra_match(b, model, key_id))
				return b;
		}
	}
	return NULL;
}

/* ---- the file ------------------------------------------------------------ */

struct parse {
	rh__conf *conf;
	size_t cap;                /* of conf->budgets */
	char *pos, *end;           /* the rest of the text; *end is '\0' */
	unsigned line;
	rh__conf_budget *cur;       /* section being read; NULL before the first */
	struct {                   /* keys cur has set, and where */
		char name[24];
		unsigned line;
	} seen[32];
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

/* A section is complete: bursts, the keys that go together, and the rule
 * that it must limit something. */
static int section_end(struct parse *p)
{
	rh__conf_budget *cb = p->cur;
	unsigned bl = seen_line(p, "burst"), sl = seen_line(p, "shared"), kl;
	const char *key;
	char msg[512];

	if (rh__conf_budget_finish(cb, msg, sizeof msg) != 0)
		return perr(p, bl ? bl : cb->line, "[%s]: key 'burst': %s", cb->name, msg);
	if (rh__conf_share_finish(cb, msg, sizeof msg) != 0)
		return perr(p, sl ? sl : cb->line, "[%s]: key 'shared': %s", cb->name, msg);
	if (rh__conf_tenant_finish(cb, &key, msg, sizeof msg) != 0) {
		kl = seen_line(p, key);
		return perr(p, kl ? kl : cb->line, "[%s]: key '%s': %s", cb->name, key, msg);
	}
	if (rh__conf_cache_finish(cb, &key, msg, sizeof msg) != 0) {
		kl = seen_line(p, key);
		return perr(p, kl ? kl : cb->line, "[%s]: key '%s': %s", cb->name, key, msg);
	}
	if (!rh__conf_budget_has_limit(cb))
		return perr(p, cb->line, "[%s]: no limit; give requests, tokens or "
		            "concurrency", cb->name);
	return 0;
}

/*
 * A file of 1 MiB holds tens of thousands of sections: finding a repeated
 * name by scanning the ones before, and growing the array one budget at a
 * time, would be quadratic (minutes under ASan for 20,000).  So names go
 * into an open-addressing hash, and the array grows by half each time.
 */
static size_t name_hash(const char *s)
{
	size_t h = 2166136261u;    /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The slot of name in conf->index: where it is, or the free one it would
 * take.  The index is kept over twice as large as the budgets. */
static uint32_t *index_slot(const rh__conf *conf, const char *name)
{
	size_t i = name_hash(name) & (conf->icap - 1);

	while (conf->index[i] && strcmp(conf->budgets[conf->index[i] - 1].name, name))
		i = (i + 1) & (conf->icap - 1);
	return &conf->index[i];
}

/* Room for one more budget, in the array and in the index. */
static int budgets_grow(struct parse *p)
{
	size_t n = p->conf->nbudgets, i, icap;
	rh__conf_budget *nb;
	uint32_t *ni, *old;

	if (n == UINT32_MAX - 1)
		return -ENOMEM;
	if (n == p->cap) {
		/* p->cur, the section being read, is the last one: moved too. */
		p->cap = p->cap ? p->cap + p->cap / 2 : 8;
		if (!(nb = realloc(p->conf->budgets, p->cap * sizeof *nb)))
			return -ENOMEM;
		p->conf->budgets = nb;
		if (p->cur)
			p->cur = &nb[n - 1];
	}
	if (2 * (n + 1) < p->conf->icap)
		return 0;
	icap = p->conf->icap ? 2 * p->conf->icap : 16;
	if (!(ni = calloc(icap, sizeof *ni)))
		return -ENOMEM;
	old = p->conf->index;
	p->conf->index = ni;
	p->conf->icap = icap;
	for (i = 0; i < n; i++)
		*index_slot(p->conf, p->conf->budgets[i].name) = (uint32_t)i + 1;
	free(old);
	return 0;
}

static int section_start(struct parse *p, const char *line)
{
	const char *end = strchr(line, ']'), *s = line + 1;
	char name[RATECTL_NAME_MAX + 8];
	uint32_t *slot;

	if (!end)
		return perr(p, p->line, "no ']' after the section name");
	if (end[1 + strspn(end + 1, " \t\r\n")] != '\0')
		return perr(p, p->line, "unexpected text after ']'");
	s += strspn(s, " \t");
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	snprintf(name, sizeof name, "%.*s", (int)(end - s), s);
	if (strchr(name, '*')) {
		char msg[512];

		if (rh__conf_pattern_check(name, msg, sizeof msg) != 0)
			return perr(p, p->line, "template [%s]: %s", name, msg);
	} else if (ratectl_name_check(name) != 0) {
		return perr(p, p->line, "section [%s]: %s", name, ratectl_errmsg());
	}
	if (budgets_grow(p) != 0)
		return perr(p, p->line, "out of memory");
	if (*(slot = index_slot(p->conf, name)) != 0)
		return perr(p, p->line, "section [%s] appears twice (first on "
		            "line %u)", name, p->conf->budgets[*slot - 1].line);
	if (p->cur && section_end(p) != 0)
		return RATECTL_EBADCONFIG;
	p->cur = &p->conf->budgets[p->conf->nbudgets++];
	*slot = (uint32_t)p->conf->nbudgets;
	rh__conf_budget_init(p->cur, name);
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

/*
 * inih's line reader (fgets-like) over the text; see the top of the file
 * for why.  Each line is cut off in place (its '\n' becomes '\0'), so that
 * the comment and section code never look past it.
 */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *s, *nl;
	size_t len;

	if (p->failed || p->pos >= p->end)
		return NULL;
	s = p->pos;
	if ((nl = memchr(s, '\n', (size_t)(p->end - s))) != NULL) {
		*nl = '\0';
		p->pos = nl + 1;
	} else {
		p->pos = p->end;
	}
	p->line++;
	s += strspn(s, " \t");
	strip_comment(s);
	if ((len = strlen(s)) + 2 > (size_t)num) {
		perr(p, p->line, "line longer than %d characters", num - 3);
		return NULL;
	}
	if (*s == '[' && section_start(p, s) != 0)
		return NULL;
	memcpy(str, s, len + 1);
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
	if (!rh__conf_key_known(name)) {
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
	if (rh__conf_budget_key(p->cur, name, value, msg, sizeof msg) != 0) {
		perr(p, p->line, "[%s]: key '%s': %s", p->cur->name, name, msg);
		return 0;
	}
	if (strcmp(name, "also") == 0)
		p->cur->also_line = p->line;
	if (strcmp(name, "tenant_template") == 0)
		p->cur->tenant_line = p->line;
	if (strcmp(name, "tenant_default") == 0)
		p->cur->tenant_default_line = p->line;
	return 1;
}

static int parse_text(struct parse *p)
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

/* The file is text: a NUL would cut a value short unseen. */
static int check_text(struct parse *p, const char *text, size_t len)
{
	const char *nul = memchr(text, '\0', len), *q, *bol = text;
	unsigned line = 1;

	if (!nul)
		return 0;
	for (q = text; (q = memchr(q, '\n', (size_t)(nul - q))) != NULL; bol = ++q)
		line++;
	return perr(p, line, "a NUL byte (column %zu); a config file is text",
	            (size_t)(nul - bol) + 1);
}

/* Every `also` names a budget of the file, and no budget is charged
 * with more than RATECTL_MANY_MAX in all: admission never finds out. */
static int check_also(struct parse *p)
{
	const char *names[RATECTL_MANY_MAX], *bad = "";
	size_t i;
	int n;

	for (i = 0; i < p->conf->nbudgets; i++) {
		const rh__conf_budget *b = &p->conf->budgets[i];

		if (!b->nalso)
			continue;
		n = rh__conf_charged(p->conf, b, names, RATECTL_MANY_MAX, &bad);
		if (n == RATECTL_ENOTFOUND)
			return perr(p, b->also_line, "[%s]: key 'also': no budget [%s] "
			            "in the file", b->name, bad);
		if (n < 0)
			return perr(p, b->also_line, "[%s]: key 'also': charges more "
			            "than %d budgets in all (with the budgets their own "
			            "'also' names)", b->name, RATECTL_MANY_MAX);
	}
	return 0;
}

/*
 * Templates go after the budgets, each kind in the order of the file, so
 * that whatever walks conf->budgets (matching, `ratectl apply`) meets
 * budgets only; the index is made again over the new order.
 */
static int split_templates(struct parse *p)
{
	rh__conf *conf = p->conf;
	size_t n = conf->nbudgets, nt = 0, nb = 0, i;
	rh__conf_budget *t;

	for (i = 0; i < n; i++)
		nt += conf->budgets[i].is_template != 0;
	if (nt) {
		if (!(t = malloc(nt * sizeof *t)))
			return perr(p, p->line, "out of memory");
		for (i = 0, nt = 0; i < n; i++) {
			if (conf->budgets[i].is_template)
				t[nt++] = conf->budgets[i];
			else if (nb++ != i)
				conf->budgets[nb - 1] = conf->budgets[i];
		}
		memcpy(conf->budgets + nb, t, nt * sizeof *t);
		free(t);
		memset(conf->index, 0, conf->icap * sizeof *conf->index);
		for (i = 0; i < n; i++)
			*index_slot(conf, conf->budgets[i].name) = (uint32_t)i + 1;
	}
	conf->nbudgets = n - nt;
	conf->ntemplates = nt;
	conf->templates = conf->budgets ? conf->budgets + conf->nbudgets : NULL;
	return 0;
}

/*
 * Every tenant_template names a template of the file; the tenant's budget
 * fits in a request's RATECTL_MANY_MAX budgets; a key id (tenant = key)
 * and tenant_default make valid names with it.
 */
static int check_tenants(struct parse *p)
{
	const char *names[RATECTL_MANY_MAX], *bad = "";
	char name[RATECTL_NAME_MAX + 1], msg[512];
	const rh__conf_budget *t;
	size_t i;

	for (i = 0; i < p->conf->nbudgets; i++) {
		const rh__conf_budget *b = &p->conf->budgets[i];

		if (!b->tenant_from)
			continue;
		if (!(t = rh__conf_template_find(p->conf, b->tenant_template)))
			return perr(p, b->tenant_line, "[%s]: key 'tenant_template': no "
			            "template [%s] in the file", b->name, b->tenant_template);
		if (rh__conf_charged(p->conf, b, names, RATECTL_MANY_MAX - 1, &bad) < 0)
			return perr(p, b->tenant_line, "[%s]: key 'tenant_template': with "
			            "the tenant's budget, charges more than %d budgets in "
			            "all", b->name, RATECTL_MANY_MAX);
		if (b->tenant_from == RH_TENANT_KEY &&
		    rh__tenant_name(name, t->name, "0123456789abcdef", RH_KEY_ID_LEN,
		                    msg, sizeof msg) != 0)
			return perr(p, b->tenant_line, "[%s]: key 'tenant_template': "
			            "tenant = key puts a key id of %d characters in it: %s",
			            b->name, RH_KEY_ID_LEN, msg);
		if (b->tenant_default[0] &&
		    rh__tenant_name(name, t->name, b->tenant_default,
		                    strlen(b->tenant_default), msg, sizeof msg) != 0)
			return perr(p, b->tenant_default_line, "[%s]: key 'tenant_default': "
			            "%s", b->name, msg);
	}
	return 0;
}

/* Parse text[0..len), which has a '\0' after it and is ours to cut up. */
static int parse_buf(rh__conf **out, const char *name, char *text, size_t len,
                     char *err, size_t errlen)
{
	struct parse p = { .err = err, .errlen = errlen };
	int rc;

	*out = NULL;
	if (!(p.conf = calloc(1, sizeof *p.conf))) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	snprintf(p.conf->path, sizeof p.conf->path, "%s", name);
	/* A UTF-8 byte order mark would hide the first section from
	 * section_start() (inih skips it, but only after the reader ran). */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
		text += 3;
		len -= 3;
	}
	p.pos = text;
	p.end = text + len;
	if ((rc = check_text(&p, text, len)) == 0 && (rc = parse_text(&p)) == 0 &&
	    (rc = split_templates(&p)) == 0 && (rc = check_also(&p)) == 0)
		rc = check_tenants(&p);
	if (rc != 0) {
		rh__conf_free(p.conf);
		return rc;
	}
	*out = p.conf;
	return 0;
}

int rh__conf_parse(rh__conf **out, const char *name, const char *text, size_t len,
                  char *err, size_t errlen)
{
	char *buf;
	int rc;

	*out = NULL;
	if (!(buf = malloc(len + 1))) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	rc = parse_buf(out, name, buf, len, err, errlen);
	free(buf);
	return rc;
}

/* What a file that is not a regular file is, for the message. */
static const char *file_type(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	if (S_ISSOCK(mode))
		return "a socket";
	return "not a regular file";
}

/*
 * Read the whole of fd (a regular file of st_size bytes when checked)
 * into *out, with a '\0' after it.  The size is only a hint: a file in
 * /proc says 0 and a file may grow, so the buffer grows too, up to one
 * byte past the limit, which is then an error.  A read error is an error:
 * taking it for the end of the file would make a short file of it.
 */
static int read_all(int fd, const char *path, off_t st_size, char **out,
                    size_t *len, char *err, size_t errlen)
{
	size_t cap = 4096, n = 0;
	char *buf, *nb;
	ssize_t r;
	int rc;

	/* Room for the stated size and one byte more, to see it grow. */
	if ((size_t)st_size >= cap)
		cap = (size_t)st_size < RH_CONF_MAX_SIZE ? (size_t)st_size + 1 :
		      RH_CONF_MAX_SIZE + 1;
	if (!(buf = malloc(cap + 1)))
		goto nomem;
	for (;;) {
		if (n == cap) {
			if (cap > RH_CONF_MAX_SIZE)
				break;
			cap = cap <= RH_CONF_MAX_SIZE / 2 ? cap * 2 : RH_CONF_MAX_SIZE + 1;
			if (!(nb = realloc(buf, cap + 1)))
				goto nomem;
			buf = nb;
		}
		if ((r = read(fd, buf + n, cap - n)) == 0)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
			goto fail;
		}
		n += (size_t)r;
	}
	if (n > RH_CONF_MAX_SIZE) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s: larger than %d bytes (1 MiB), the most a "
		         "config file may hold", path, RH_CONF_MAX_SIZE);
		goto fail;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
nomem:
	rc = -ENOMEM;
	snprintf(err, errlen, "%s: out of memory", path);
fail:
	free(buf);
	return rc;
}

/*
 * Open without blocking (a FIFO without a writer would block the open
 * itself) and without taking a terminal, check what was opened, then
 * read it.  The checks are on the descriptor, not the path, so that what
 * is read is what was checked.
 */
static int read_file(const char *path, char **out, size_t *len, char *err,
                     size_t errlen)
{
	struct stat st;
	int fd, rc;

	*out = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = RATECTL_EBADCONFIG;
		snprintf(err, errlen, "%s: is %s, not a regular file; give the config "
		         "file itself", path, file_type(st.st_mode));
	} else if (st.st_size > RH_CONF_MAX_SIZE) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s: %lld bytes, more than the %d bytes (1 MiB) "
		         "a config file may hold", path, (long long)st.st_size,
		         RH_CONF_MAX_SIZE);
	} else if (fcntl(fd, F_SETFL, 0) != 0) {       /* blocking reads again */
		rc = -errno;
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
	} else {
		rc = read_all(fd, path, st.st_size, out, len, err, errlen);
	}
	close(fd);
	return rc;
}

int rh__conf_load(rh__conf **out, const char *path, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	if (!path)
		path = rh__conf_default_path();
	if ((rc = read_file(path, &text, &len, err, errlen)) != 0)
		return rc;
	rc = parse_buf(out, path, text, len, err, errlen);
	free(text);
	return rc;
}

void rh__conf_free(rh__conf *conf)
{
	if (!conf)
		return;
	free(conf->budgets);
	free(conf->index);
	free(conf);
}

const char *rh__conf_default_path(void)
{
	const char *env = getenv("RATECTL_CONFIG");

	return env && *env ? env : "/etc/ratectl.conf";
}

const rh__conf_budget *rh__conf_find(const rh__conf *conf, const char *name)
{
	uint32_t i;

	if (!conf || conf->icap == 0 || (i = *index_slot(conf, name)) == 0 ||
	    i > conf->nbudgets)
		return NULL;
	return &conf->budgets[i - 1];
}

const rh__conf_budget *rh__conf_template_find(const rh__conf *conf,
                                              const char *pattern)
{
	uint32_t i;

	if (!conf || conf->icap == 0 || (i = *index_slot(conf, pattern)) == 0 ||
	    i <= conf->nbudgets)
		return NULL;
	return &conf->budgets[i - 1];
}
