/*
 * metrics.c - `ratectl metrics`: every budget's counters and gauges in the
 * Prometheus text exposition format (version 0.0.4), for a node exporter
 * textfile collector or a small HTTP wrapper.
 *
 * The format wants all samples of one metric family together, after its
 * HELP and TYPE lines, so the budgets are read once into a snapshot and
 * the output is written family by family.  Units are in the names
 * (_seconds, _total) as the Prometheus naming guide asks.  Label values
 * need no escaping: budget names are [A-Za-z0-9._-] (ratectl_name_check),
 * tags [A-Za-z0-9._:/-], templates names and '*'.
 *
 * The output is bounded however many budgets templates make (100,000
 * users, one budget each): the budgets made from a template are summed per
 * template (ratectl_template_*) and only the --top N of each by admissions
 * get series of their own; every other budget is printed in full.  The
 * snapshot keeps compact rows of the budgets printed and a heap of N per
 * template, so memory and time grow with the budgets printed, and reading
 * 100,000 is one pass.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define NS_PER_S 1e9
#define TOP_DEFAULT 10
#define TOP_MAX 10000

static double secs(int64_t ns)
{
	return (double)ns / NS_PER_S;
}

/* One family: its value for a budget, or for limit i of a budget. */
struct family {
	const char *name;
	const char *type;
	const char *help;
	int per_limit;
	double (*value)(const cli_row *in, unsigned i);
};

#define COUNTER(field) \
	static double v_##field(const cli_row *in, unsigned i) \
	{ (void)i; return (double)in->counters.field; }
COUNTER(admitted)
COUNTER(refused)
COUNTER(waited)
COUNTER(tokens_estimated)
COUNTER(tokens_actual)
COUNTER(tokens_reconciled)
COUNTER(reclaimed)
COUNTER(retries)
#undef COUNTER

static double v_wait(const cli_row *in, unsigned i)
{
	(void)i;
	return (double)in->counters.wait_ns / NS_PER_S;
}

static double v_inflight(const cli_row *in, unsigned i)
{
	(void)i;
	return in->inflight;
}

static double v_dead(const cli_row *in, unsigned i)
{
	(void)i;
	return in->dead;
}

static double v_max(const cli_row *in, unsigned i)
{
	(void)i;
	return in->max_inflight;
}

static double v_cooldown(const cli_row *in, unsigned i)
{
	(void)i;
	return secs(in->cooldown_ns);
}

static double v_per_second(const cli_row *in, unsigned i)
{
	return (double)in->state[i].limit.count / secs(in->state[i].limit.period_ns);
}

static double v_burst(const cli_row *in, unsigned i)
{
	return (double)in->state[i].limit.burst;
}

static double v_available(const cli_row *in, unsigned i)
{
	return (double)in->state[i].available;
}

static double v_full(const cli_row *in, unsigned i)
{
	return secs(in->state[i].until_full_ns);
}

static const struct family families[] = {
	{ "ratectl_admitted_total", "counter",
	  "Requests admitted (leases granted) since the budget was created.", 0, v_admitted },
	{ "ratectl_refused_total", "counter",
	  "Admissions refused, and waits that timed out.", 0, v_refused },
	{ "ratectl_waited_total", "counter",
	  "Admissions that had to wait for the budget.", 0, v_waited },
	{ "ratectl_wait_seconds_total", "counter",
	  "Time spent waiting by the admissions that waited.", 0, v_wait },
	{ "ratectl_tokens_estimated_total", "counter",
	  "Tokens charged at admission (estimates).", 0, v_tokens_estimated },
	{ "ratectl_tokens_actual_total", "counter",
	  "Tokens actually used, as reported at release.", 0, v_tokens_actual },
	{ "ratectl_tokens_reconciled_total", "counter",
	  "Estimated tokens of the leases whose actual use was reported.", 0,
	  v_tokens_reconciled },
	{ "ratectl_reclaimed_total", "counter",
	  "In-flight slots taken back from processes that died holding them.", 0,
	  v_reclaimed },
	{ "ratectl_retries_total", "counter",
	  "Retries allowed by the retry budget.", 0, v_retries },
	{ "ratectl_inflight", "gauge",
	  "Requests in flight now (slots whose holder is alive).", 0, v_inflight },
	{ "ratectl_inflight_dead", "gauge",
	  "Slots recorded held whose holder died; reclaimed at the next admission.",
	  0, v_dead },
	/* 0 is "no cap" rather than a missing sample, so that a budget's
	 * series do not appear and vanish when its cap is set or removed. */
	{ "ratectl_inflight_max", "gauge",
	  "Cap on requests in flight; 0 when there is none.", 0, v_max },
	{ "ratectl_cooldown_seconds", "gauge",
	  "Time left in the budget's cooldown; 0 when none.", 0, v_cooldown },
	{ "ratectl_limit_per_second", "gauge",
	  "A limit's rate, in units per second.", 1, v_per_second },
	{ "ratectl_limit_burst", "gauge",
	  "Units of a limit that may pass at once.", 1, v_burst },
	{ "ratectl_limit_available", "gauge",
	  "Units of a limit that could pass now.", 1, v_available },
	{ "ratectl_limit_full_seconds", "gauge",
	  "Time until a limit is full again.", 1, v_full },
};

/*
 * Families of shared budgets only (ratectl_budget_shared_state()), whose
 * samples exist for the budgets that are shared; on a host that shares
 * nothing the families are left out altogether.  Credit is per dimension,
 * labelled as the limits are (dimension=), so that the two join.
 */
struct sfamily {
	const char *name;
	const char *type;
	const char *help;
	int per_dim;
	double (*value)(const ratectl_shared_state *s, unsigned d);
};

static double s_shared(const ratectl_shared_state *s, unsigned d)
{
	(void)s;
	(void)d;
	return 1;
}

static double s_degraded(const ratectl_shared_state *s, unsigned d)
{
	(void)d;
	return s->degraded;
}

static double s_since(const ratectl_shared_state *s, unsigned d)
{
	(void)d;
	return s->degraded ? secs(s->degraded_since) : 0;
}

static double s_credit(const ratectl_shared_state *s, unsigned d)
{
	return (double)s->credit[d];
}

static double s_syncs(const ratectl_shared_state *s, unsigned d)
{
	(void)d;
	return (double)s->syncs;
}

static double s_commands(const ratectl_shared_state *s, unsigned d)
{
	(void)d;
	return (double)s->redis_commands;
}

static const struct sfamily sfamilies[] = {
	{ "ratectl_shared", "gauge",
	  "1: the budget is shared with other hosts through Redis.", 0, s_shared },
	{ "ratectl_shared_degraded", "gauge",
	  "1: Redis is unreachable and this host admits its fallback share.", 0,
	  s_degraded },
	{ "ratectl_shared_degraded_since_seconds", "gauge",
	  "Unix time at which the budget became degraded; 0 when it is not.", 0,
	  s_since },
	{ "ratectl_shared_credit", "gauge",
	  "Units taken from Redis and not yet spent on this host; negative: a debt.",
	  1, s_credit },
	{ "ratectl_shared_syncs_total", "counter",
	  "Exchanges of this host with Redis for the budget.", 0, s_syncs },
	{ "ratectl_shared_redis_commands_total", "counter",
	  "Redis commands sent by this host for the budget.", 0, s_commands },
};

/*
 * Families of the response caches (ratectl_http_cache_stats_read()), for
 * the budgets printed in full that have one: bounded as they are.  Left
 * out when none has.
 */
struct cfamily {
	const char *name;
	const char *type;
	const char *help;
	size_t off;                /* of its uint64_t in ratectl_http_cache_stats */
};

#define CSTAT(field) offsetof(ratectl_http_cache_stats, field)
static const struct cfamily cfamilies[] = {
	{ "ratectl_cache_hits_total", "counter",
	  "Requests answered from the response cache.", CSTAT(hits) },
	{ "ratectl_cache_coalesced_total", "counter",
	  "Requests answered by another request's fetch they waited for.",
	  CSTAT(coalesced) },
	{ "ratectl_cache_misses_total", "counter",
	  "Cacheable requests sent to the provider.", CSTAT(misses) },
	{ "ratectl_cache_stores_total", "counter",
	  "Answers stored in the response cache.", CSTAT(stores) },
	{ "ratectl_cache_evictions_total", "counter",
	  "Answers removed to make room (cache_size).", CSTAT(evictions) },
	{ "ratectl_cache_expired_total", "counter",
	  "Answers removed past their time to live.", CSTAT(expired) },
	{ "ratectl_cache_tokens_saved_total", "counter",
	  "Tokens of the answers given from the response cache.", CSTAT(tokens_saved) },
	{ "ratectl_cache_entries", "gauge",
	  "Answers held in the response cache now.", CSTAT(entries) },
	{ "ratectl_cache_bytes", "gauge",
	  "Size of the answers held: bodies, headers and keys, in bytes.", CSTAT(bytes) },
};
#undef CSTAT

/* ---- output ----------------------------------------------------------------- */

/* %.15g: integers print as integers up to 10^15, fractions without the
 * noise of the last binary digits, and both parse back in Prometheus.
 * Integers, nearly every sample, are written without printf: 100,000
 * budgets make two million samples. */
static void put_value(FILE *o, double v)
{
	char buf[32], *p = buf + sizeof buf;
	uint64_t u;

	if (v >= 0 && v < 1e15 && v == (double)(uint64_t)v) {
		u = (uint64_t)v;
		*--p = '\0';
		do
			*--p = (char)('0' + u % 10);
		while ((u /= 10) != 0);
		fputs(p, o);
	} else {
		fprintf(o, "%.15g", v);
	}
	putc('\n', o);
}

/* A label value as the exposition format wants it: \, " and newline
 * escaped (names never hold them; this is for what might). */
static void put_label(FILE *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			putc('\\', o);
		if (*s == '\n')
			fputs("\\n", o);
		else
			putc(*s, o);
	}
}

static void head(FILE *o, const char *name, const char *help, const char *type)
{
	fprintf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(FILE *o, const struct family *f, const cli_row *in, unsigned i)
{
	const ratectl_limit *l = &in->state[i].limit;

	fputs(f->name, o);
	fputs("{budget=\"", o);
	put_label(o, in->name);
	if (f->per_limit)
		fprintf(o, "\",dimension=\"%s\",period_seconds=\"%.9g\"} ", fmt_dim(l->dim),
		       secs(l->period_ns));
	else
		fputs("\"} ", o);
	put_value(o, f->value(in, i));
}

static void shared_exposition(FILE *o, const cli_row *const *v, ratectl_shared_state *const *sh,
                              size_t n)
{
	size_t f, b;
	unsigned d;
	int any = 0;

	for (b = 0; b < n && !any; b++)
		any = sh[b] != NULL;
	for (f = 0; any && f < sizeof sfamilies / sizeof sfamilies[0]; f++) {
		const struct sfamily *sf = &sfamilies[f];

		head(o, sf->name, sf->help, sf->type);
		for (b = 0; b < n; b++) {
			if (!sh[b])
				continue;
			if (!sf->per_dim)
				fprintf(o, "%s{budget=\"%s\"} %.15g\n", sf->name, v[b]->name,
				       sf->value(sh[b], 0));
			for (d = 0; sf->per_dim && d < 2; d++)
				fprintf(o, "%s{budget=\"%s\",dimension=\"%s\"} %.15g\n", sf->name,
				       v[b]->name, fmt_dim((ratectl_dim)d), sf->value(sh[b], d));
		}
	}
}

static uint64_t cstat(const ratectl_http_cache_stats *k, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)k + off, sizeof v);
	return v;
}

static void cache_exposition(FILE *o, const cli_row *const *v, size_t n,
                             const ratectl_http_cache_stats *k, size_t nk)
{
	const ratectl_http_cache_stats *s;
	size_t f, b;
	int any = 0;

	for (b = 0; b < n && !any; b++)
		any = cli_cache_find(k, nk, v[b]->name) != NULL;
	for (f = 0; any && f < sizeof cfamilies / sizeof cfamilies[0]; f++) {
		head(o, cfamilies[f].name, cfamilies[f].help, cfamilies[f].type);
		for (b = 0; b < n; b++) {
			if (!(s = cli_cache_find(k, nk, v[b]->name)))
				continue;
			fprintf(o, "%s{budget=\"", cfamilies[f].name);
			put_label(o, v[b]->name);
			fputs("\"} ", o);
			put_value(o, (double)cstat(s, cfamilies[f].off));
		}
	}
}

/* The caches, for metrics: 0 and *k, *nk; or, when they cannot be read
 * (damaged), 0 and none with why in note (one line) for the caller to
 * say; -ENOMEM. */
static int metrics_caches(cli *c, ratectl_http_cache_stats **k, size_t *nk,
                          char *note, size_t notelen)
{
	int rc = cli_caches(c, NULL, k, nk);
	char *p;

	note[0] = '\0';
	if (rc == -ENOMEM || rc == 0)
		return rc;
	cli_cache_why(c, rc, note, notelen);
	for (p = note; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return 0;
}

/* ---- templates: one series each, and their top N budgets ------------------ */

struct tmpl {
	char origin[RATECTL_NAME_MAX + 1];
	uint64_t budgets, inflight, dead;
	ratectl_counters sum;
	cli_row **top;             /* a heap: top[0] the least admitted kept */
	size_t ntop;
};

struct mctx {
	cli_rows plain;            /* the budgets printed in full */
	struct tmpl *t;
	size_t nt, tcap;
	size_t *index;             /* hash of origins: tmpl i + 1, or 0 */
	size_t icap;
	size_t top;                /* N of each template kept */
	int all;                   /* --all: every budget printed, none summed */
};

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static int index_put(struct mctx *m, size_t k)
{
	size_t i = hash(m->t[k].origin) & (m->icap - 1);

	while (m->index[i])
		i = (i + 1) & (m->icap - 1);
	m->index[i] = k + 1;
	return 0;
}

/* The template named origin, created when first seen; NULL: no memory. */
static struct tmpl *tmpl_of(struct mctx *m, const char *origin)
{
	size_t i, k;
	void *p;

	for (i = m->icap ? hash(origin) & (m->icap - 1) : 0; m->icap && m->index[i];
	     i = (i + 1) & (m->icap - 1))
		if (strcmp(m->t[m->index[i] - 1].origin, origin) == 0)
			return &m->t[m->index[i] - 1];
	if (m->nt == m->tcap) {
		size_t cap = m->tcap ? m->tcap * 2 : 8;

		if (!(p = realloc(m->t, cap * sizeof *m->t)))
			return NULL;
		m->t = p;
		m->tcap = cap;
	}
	memset(&m->t[m->nt], 0, sizeof m->t[0]);
	snprintf(m->t[m->nt].origin, sizeof m->t[0].origin, "%s", origin);
	m->nt++;
	/* The index at most half full: rebuilt twice as large. */
	if (2 * m->nt > m->icap) {
		size_t cap = m->icap ? m->icap * 2 : 16;

		if (!(p = calloc(cap, sizeof *m->index))) {
			m->nt--;
			return NULL;
		}
		free(m->index);
		m->index = p;
		m->icap = cap;
		for (k = 0; k < m->nt; k++)
			index_put(m, k);
	} else {
		index_put(m, m->nt - 1);
	}
	return &m->t[m->nt - 1];
}

/* a ranks below b: fewer admissions, or as many and a later name (the
 * snapshot comes in name order, so of equals the first ones are kept). */
static int below(const cli_row *a, const cli_row *b)
{
	if (a->counters.admitted != b->counters.admitted)
		return a->counters.admitted < b->counters.admitted;
	return strcmp(a->name, b->name) > 0;
}

static void sift_down(cli_row **h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		cli_row *x;

		if (l < n && below(h[l], h[m]))
			m = l;
		if (r < n && below(h[r], h[m]))
			m = r;
		if (m == i)
			return;
		x = h[i];
		h[i] = h[m];
		h[m] = x;
		i = m;
	}
}

/* Keep in among the top N of t: 0 or -ENOMEM. */
static int top_offer(struct mctx *m, struct tmpl *t, const ratectl_budget_info *in)
{
	cli_row probe, *r;
	size_t i;

	if (m->top == 0)
		return 0;
	if (t->ntop == m->top) {
		/* Compared on what below() reads, without copying the row. */
		memcpy(probe.name, in->name, sizeof probe.name);
		probe.counters = in->counters;
		if (!below(t->top[0], &probe))
			return 0;
		cli_row_fill(t->top[0], in);
		sift_down(t->top, t->ntop, 0);
		return 0;
	}
	if (!t->top && !(t->top = calloc(m->top, sizeof *t->top)))
		return -ENOMEM;
	if (!(r = malloc(cli_row_size(RATECTL_MAX_LIMITS))))
		return -ENOMEM;
	cli_row_fill(r, in);
	/* Sift up. */
	for (i = t->ntop++; i > 0 && below(r, t->top[(i - 1) / 2]); i = (i - 1) / 2)
		t->top[i] = t->top[(i - 1) / 2];
	t->top[i] = r;
	return 0;
}

static void add_counters(ratectl_counters *s, const ratectl_counters *k)
{
	s->admitted += k->admitted;
	s->refused += k->refused;
	s->waited += k->waited;
	s->wait_ns += k->wait_ns;
	s->tokens_estimated += k->tokens_estimated;
	s->tokens_actual += k->tokens_actual;
	s->tokens_reconciled += k->tokens_reconciled;
	s->reclaimed += k->reclaimed;
	s->retries += k->retries;
}

/* The snapshot's callback: no call into the library from here. */
static int collect(const ratectl_budget_info *in, void *ctx)
{
	struct mctx *m = ctx;
	struct tmpl *t;

	if (!in->config.origin[0])
		return cli_rows_add(&m->plain, in);
	if (!(t = tmpl_of(m, in->config.origin)))
		return -ENOMEM;
	t->budgets++;
	t->inflight += in->inflight;
	t->dead += in->dead;
	add_counters(&t->sum, &in->counters);
	/* --all: every budget in full, and still the template sums */
	return m->all ? cli_rows_add(&m->plain, in) : top_offer(m, t, in);
}

static void mctx_free(struct mctx *m)
{
	size_t i, k;

	for (i = 0; i < m->nt; i++) {
		for (k = 0; k < m->t[i].ntop; k++)
			free(m->t[i].top[k]);
		free(m->t[i].top);
	}
	free(m->t);
	free(m->index);
	cli_rows_free(&m->plain);
}

static int by_name(const void *a, const void *b)
{
	return strcmp((*(const cli_row *const *)a)->name,
	              (*(const cli_row *const *)b)->name);
}

/* Most admitted first: a template's top N, once the heap is done with. */
static int by_rank(const void *a, const void *b)
{
	const cli_row *x = *(const cli_row *const *)a, *y = *(const cli_row *const *)b;

	return below(x, y) - below(y, x);
}

static int by_origin(const void *a, const void *b)
{
	return strcmp(((const struct tmpl *)a)->origin, ((const struct tmpl *)b)->origin);
}

/* The budgets printed in full, in name order: the plain ones (already
 * in order) and each template's top N.  NULL: no memory. */
static const cli_row **printed(const struct mctx *m, size_t *n)
{
	const cli_row **v;
	size_t i, k, tops = 0;

	for (i = 0; i < m->nt; i++)
		tops += m->t[i].ntop;
	*n = m->plain.n + tops;
	if (!(v = malloc((*n ? *n : 1) * sizeof *v)))
		return NULL;
	for (i = 0; i < m->plain.n; i++)
		v[i] = cli_rows_at(&m->plain, i);
	for (i = 0, k = m->plain.n; i < m->nt; i++)
		if (m->t[i].ntop)       /* (no top: --top 0, and no array) */
			memcpy(v + k, m->t[i].top, m->t[i].ntop * sizeof *v), k += m->t[i].ntop;
	if (tops)
		qsort(v, *n, sizeof *v, by_name);
	return v;
}

/* Families of the templates, each summed over every budget it made. */
struct tfamily {
	const char *name;
	const char *type;
	const char *help;
	double (*value)(const struct tmpl *t);
};

#define TSUM(field) \
	static double t_##field(const struct tmpl *t) { return (double)t->sum.field; }
TSUM(admitted)
TSUM(refused)
TSUM(waited)
TSUM(tokens_estimated)
TSUM(tokens_actual)
TSUM(tokens_reconciled)
TSUM(reclaimed)
TSUM(retries)
#undef TSUM

static double t_budgets(const struct tmpl *t) { return (double)t->budgets; }
static double t_wait(const struct tmpl *t) { return (double)t->sum.wait_ns / NS_PER_S; }
static double t_inflight(const struct tmpl *t) { return (double)t->inflight; }
static double t_dead(const struct tmpl *t) { return (double)t->dead; }

static const struct tfamily tfamilies[] = {
	{ "ratectl_template_budgets", "gauge",
	  "Budgets made from the template on first use that exist now.", t_budgets },
	{ "ratectl_template_admitted_total", "counter",
	  "Requests admitted, summed over the template's budgets.", t_admitted },
	{ "ratectl_template_refused_total", "counter",
	  "Admissions refused and waits timed out, summed over the template's budgets.",
	  t_refused },
	{ "ratectl_template_waited_total", "counter",
	  "Admissions that waited, summed over the template's budgets.", t_waited },
	{ "ratectl_template_wait_seconds_total", "counter",
	  "Time waited, summed over the template's budgets.", t_wait },
	{ "ratectl_template_tokens_estimated_total", "counter",
	  "Tokens charged at admission, summed over the template's budgets.",
	  t_tokens_estimated },
	{ "ratectl_template_tokens_actual_total", "counter",
	  "Tokens reported at release, summed over the template's budgets.",
	  t_tokens_actual },
	{ "ratectl_template_tokens_reconciled_total", "counter",
	  "Estimates of the leases reported, summed over the template's budgets.",
	  t_tokens_reconciled },
	{ "ratectl_template_reclaimed_total", "counter",
	  "Slots taken back from dead holders, summed over the template's budgets.",
	  t_reclaimed },
	{ "ratectl_template_retries_total", "counter",
	  "Retries allowed, summed over the template's budgets.", t_retries },
	{ "ratectl_template_inflight", "gauge",
	  "Requests in flight now in the template's budgets.", t_inflight },
	{ "ratectl_template_inflight_dead", "gauge",
	  "Slots held by dead processes in the template's budgets.", t_dead },
};

static void template_exposition(FILE *o, const struct mctx *m)
{
	size_t f, i;

	for (f = 0; m->nt && f < sizeof tfamilies / sizeof tfamilies[0]; f++) {
		head(o, tfamilies[f].name, tfamilies[f].help, tfamilies[f].type);
		for (i = 0; i < m->nt; i++) {
			fprintf(o, "%s{template=\"", tfamilies[f].name);
			put_label(o, m->t[i].origin);
			fputs("\"} ", o);
			put_value(o, tfamilies[f].value(&m->t[i]));
		}
	}
}

/*
 * Per-tag counters of the budgets printed in full that have counted tags:
 * the top tags and the rest (tag=""), so at most RATECTL_TAGS_TOP + 1
 * series a budget.  One read per budget that ever admitted (tags are
 * counted at admission).  The tokens family is kept in memory while the
 * requests one is written: each family's samples go together.
 */
static int tag_exposition(FILE *o, cli *c, const cli_row *const *v, size_t n)
{
	char *tok = NULL;
	size_t toklen = 0, i, k;
	FILE *t = open_memstream(&tok, &toklen);
	cli_tags g;
	int rc = 0, any = 0;

	if (!t)
		return -ENOMEM;
	for (i = 0; i < n && rc == 0; i++) {
		if (v[i]->counters.admitted == 0)
			continue;
		rc = cli_tags_get(c, v[i]->name, &g);
		if (rc == RATECTL_ENOTFOUND) {     /* deleted since the snapshot */
			rc = 0;
			continue;
		}
		if (rc != 0 || g.n == 0)
			continue;
		if (!any++)
			head(o, "ratectl_tag_requests_total",
			     "Requests admitted with a tag, for the budget's busiest tags; "
			     "tag=\"\": the rest.", "counter");
		for (k = 0; k <= g.n; k++) {
			const ratectl_tag_info *x = k < g.n ? &g.top[k] : &g.rest;

			fprintf(o, "ratectl_tag_requests_total{budget=\"%s\",tag=\"", v[i]->name);
			put_label(o, k < g.n ? x->tag : "");
			fputs("\"} ", o);
			put_value(o, (double)x->requests);
			fprintf(t, "ratectl_tag_tokens_total{budget=\"%s\",tag=\"%s\"} %llu\n",
			        v[i]->name, k < g.n ? x->tag : "",
			        (unsigned long long)x->tokens);
		}
	}
	if (fclose(t) != 0 && rc == 0)
		rc = -ENOMEM;
	if (rc == 0 && any) {
		head(o, "ratectl_tag_tokens_total",
		     "Tokens charged with a tag (estimates, corrected at release), for "
		     "the budget's busiest tags; tag=\"\": the rest.", "counter");
		fwrite(tok, 1, toklen, o);
	}
	free(tok);
	return rc;
}

static void exposition(FILE *o, const cli_row *const *v, ratectl_shared_state *const *sh,
                       size_t n, const struct mctx *m)
{
	size_t f, b;
	unsigned i;

	for (f = 0; f < sizeof families / sizeof families[0]; f++) {
		head(o, families[f].name, families[f].help, families[f].type);
		for (b = 0; b < n; b++) {
			if (!families[f].per_limit)
				sample(o, &families[f], v[b], 0);
			for (i = 0; families[f].per_limit && i < v[b]->nlimits; i++)
				sample(o, &families[f], v[b], i);
		}
	}
	template_exposition(o, m);
	shared_exposition(o, v, sh, n);
}

/* ---- JSON ------------------------------------------------------------------------ */

static json_t *json_template(const struct tmpl *t)
{
	json_t *top = json_array(), *o;
	size_t i;

	for (i = 0; top && i < t->ntop; i++)
		if (json_array_append_new(top, json_string(t->top[i]->name)) != 0) {
			json_decref(top);
			top = NULL;
		}
	o = json_pack("{s:s, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
	              "s:I, s:I}, s:o}",
	              "template", t->origin,
	              "budgets", (json_int_t)t->budgets,
	              "inflight", (json_int_t)t->inflight,
	              "dead", (json_int_t)t->dead,
	              "counters",
	              "admitted", (json_int_t)t->sum.admitted,
	              "refused", (json_int_t)t->sum.refused,
	              "waited", (json_int_t)t->sum.waited,
	              "wait_ns", (json_int_t)t->sum.wait_ns,
	              "tokens_estimated", (json_int_t)t->sum.tokens_estimated,
	              "tokens_actual", (json_int_t)t->sum.tokens_actual,
	              "tokens_reconciled", (json_int_t)t->sum.tokens_reconciled,
	              "reclaimed", (json_int_t)t->sum.reclaimed,
	              "retries", (json_int_t)t->sum.retries,
	              "top", top);
	return o;
}

static int metrics_json(const cli *c, const cli_row *const *v,
                        ratectl_shared_state *const *sh, size_t n,
                        const struct mctx *m, const ratectl_http_cache_stats *k,
                        size_t nk)
{
	const ratectl_http_cache_stats *one;
	ratectl_budget_info in;
	json_stream js;
	size_t i;

	if (json_stream_begin(c, &js) != 0 || json_stream_list(&js, "budgets") != 0)
		return json_stream_fail(&js);
	for (i = 0; i < n; i++) {
		cli_row_info(v[i], &in);
		if (json_stream_item(&js, json_budget(&in, sh[i], NULL, 0, NULL)) != 0)
			return json_stream_fail(&js);
	}
	if (json_stream_list(&js, "templates") != 0)
		return json_stream_fail(&js);
	for (i = 0; i < m->nt; i++)
		if (json_stream_item(&js, json_template(&m->t[i])) != 0)
			return json_stream_fail(&js);
	/* The caches of the budgets printed in full, as `cache stats --json`. */
	if (json_stream_list(&js, "caches") != 0)
		return json_stream_fail(&js);
	for (i = 0; i < n; i++)
		if ((one = cli_cache_find(k, nk, v[i]->name)) &&
		    json_stream_item(&js, json_cache(one)) != 0)
			return json_stream_fail(&js);
	return json_stream_end(&js) == 0 ? CLI_OK : json_stream_fail(&js);
}

/* ---- one scrape: a snapshot, then its exposition or JSON ------------------------- */

struct scrape {
	struct mctx m;
	const cli_row **v;         /* the budgets printed in full, in name order */
	ratectl_shared_state **sh; /* how each of v is shared */
	size_t n;
};

static void scrape_free(struct scrape *s)
{
	cli_shared_free(s->sh, s->n);
	free(s->v);
	mctx_free(&s->m);
}

/* Read the budgets q asks for from one snapshot on the open ledger: 0, or
 * the library's code (-ENOMEM included) with *what saying what failed. */
static int scrape(cli *c, const metrics_query *q, struct scrape *s, const char **what)
{
	size_t i;
	int rc;

	memset(s, 0, sizeof *s);
	s->m.top = q->top;
	s->m.all = q->all;
	*what = "cannot read the budgets";
	if ((rc = cli_foreach(c, &q->filter, collect, &s->m, NULL)) != 0)
		return rc;
	/* (qsort wants an array even of nothing: none without templates) */
	if (s->m.nt)
		qsort(s->m.t, s->m.nt, sizeof *s->m.t, by_origin);   /* the index is done with */
	for (i = 0; i < s->m.nt; i++)
		if (s->m.t[i].ntop)
			qsort(s->m.t[i].top, s->m.t[i].ntop, sizeof *s->m.t[i].top, by_rank);
	if (!(s->v = printed(&s->m, &s->n)))
		return -ENOMEM;
	*what = "cannot read how the budgets are shared";
	return cli_shared_rows(c, s->v, s->n, &s->sh);
}

int metrics_text(cli *c, const metrics_query *q, FILE *out, const char **what,
                 char *note, size_t notelen)
{
	ratectl_http_cache_stats *k = NULL;
	struct scrape s;
	size_t nk = 0;
	int rc;

	note[0] = '\0';
	if ((rc = scrape(c, q, &s, what)) == 0) {
		*what = "cannot read the response cache";
		rc = metrics_caches(c, &k, &nk, note, notelen);
	}
	if (rc == 0) {
		/* A comment, first: scrapers skip it, a reader of the file sees it. */
		if (note[0])
			fprintf(out, "# ratectl: %s; its families are left out\n", note);
		exposition(out, s.v, s.sh, s.n, &s.m);
		cache_exposition(out, s.v, s.n, k, nk);
		*what = "cannot read the tags";
		rc = tag_exposition(out, c, s.v, s.n);
	}
	free(k);
	scrape_free(&s);
	return rc;
}

/* ---- the command ----------------------------------------------------------------- */

static int metrics_options(cli *c, int argc, char **argv, metrics_query *q, int *json,
                           const char **listen)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "top", required_argument, NULL, 't' },
		{ "all", no_argument, NULL, 'a' },
		{ "listen", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t v;
	int o, top = 0;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		switch (o) {
		case 'h': cli_help(c); return -1;
		case 'j': *json = 1; break;
		case 'a': q->all = 1; break;
		case 'l': *listen = optarg; break;
		case 't':
			if (cli_parse_u64(optarg, TOP_MAX, &v) != 0)
				return cli_usage(c, "--top '%s': a whole number of budgets, 0 to %d",
				                 optarg, TOP_MAX);
			q->top = (size_t)v;
			top = 1;
			break;
		default: return cli_badopt(c, o, argv);
		}
	}
	if (top && q->all)
		return cli_usage(c, "--top and --all: the top N of each template, or "
		                 "every budget");
	if (*json && *listen)
		return cli_usage(c, "--json and --listen: the exporter serves the text "
		                 "format only");
	return 0;
}

int cmd_metrics(cli *c, int argc, char **argv)
{
	metrics_query q = { .top = TOP_DEFAULT };
	const char *listen = NULL, *what;
	ratectl_http_cache_stats *k = NULL;
	char note[PATH_MAX + 256];
	struct scrape s;
	size_t nk = 0;
	int json = 0, rc;

	if ((rc = metrics_options(c, argc, argv, &q, &json, &listen)) != 0)
		return rc < 0 ? CLI_OK : rc;
	if ((rc = cli_filter_init(c, &q.filter, argv + optind, argc - optind)) != 0)
		return rc;
	if (listen)
		return metrics_serve(c, &q, listen);
	if ((rc = cli_open(c)) != 0)
		return rc;
	if (!json) {
		rc = metrics_text(c, &q, stdout, &what, note, sizeof note);
	} else if ((rc = scrape(c, &q, &s, &what)) == 0) {
		if ((rc = metrics_caches(c, &k, &nk, note, sizeof note)) == 0) {
			if (note[0])    /* said before the output: it may be long */
				cli_err(c, "%s; printed without it", note);
			rc = metrics_json(c, s.v, s.sh, s.n, &s.m, k, nk);
		}
		free(k);
		scrape_free(&s);
		return rc == -ENOMEM ? cli_oom(c) : rc;
	} else {
		scrape_free(&s);
	}
	if (rc == 0 && note[0])
		cli_err(c, "%s; printed without it", note);
	if (rc == -ENOMEM)
		return cli_oom(c);
	return rc ? cli_fail(c, rc, what) : CLI_OK;
}
