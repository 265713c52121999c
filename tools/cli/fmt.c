/*
 * fmt.c - numbers for people: counts with k/M/G, durations with their
 * unit, rates per named period, and tables with aligned columns.
 *
 * Counts are truncated, never rounded up: "1999 of 2000 available" must
 * not read as "2k/2k", which would look full.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define NS_PER_S 1000000000LL

/* v in steps of base with units[] ("kMG..."), one decimal when it says
 * something, truncated; below `small`, whole with suffix ("" or "B"). */
static const char *fmt_scaled(char buf[FMT_LEN], uint64_t v, uint64_t base,
                              uint64_t small, const char *units, const char *suffix)
{
	uint64_t div = base;
	int u = 0;

	if (v < small) {
		snprintf(buf, FMT_LEN, "%llu%s", (unsigned long long)v, suffix);
		return buf;
	}
	while (v / div >= base && u < 5) {
		div *= base;
		u++;
	}
	if (v / div >= 100 || (v % div) * 10 / div == 0)
		snprintf(buf, FMT_LEN, "%llu%c", (unsigned long long)(v / div), units[u]);
	else
		snprintf(buf, FMT_LEN, "%llu.%llu%c", (unsigned long long)(v / div),
		         (unsigned long long)((v % div) * 10 / div), units[u]);
	return buf;
}

const char *fmt_count(char buf[FMT_LEN], uint64_t v)
{
	return fmt_scaled(buf, v, 1000, 10000, "kMGTPE", "");
}

/* Sizes as the config file writes them (`cache_size = 64M`): B, then K,
 * M, G, T of 1024, truncated like counts: "950B", "12.5K", "64M". */
const char *fmt_bytes(char buf[FMT_LEN], uint64_t v)
{
	return fmt_scaled(buf, v, 1024, 1024, "KMGTPE", "B");
}

/*
 * The two largest units that matter, as people read them: "250ms", "1.2s"
 * (a tenth of a second is worth showing below 10 s, where waits live),
 * "45s", "2m05s", "1h05m", "2d03h".  Truncated like counts: "full in 0s"
 * must mean full.
 */
const char *fmt_dur(char buf[FMT_LEN], int64_t ns)
{
	long long s;

	if (ns < 0)
		ns = 0;
	s = (long long)(ns / NS_PER_S);
	if (ns == 0)
		snprintf(buf, FMT_LEN, "0s");
	else if (ns < 1000)
		snprintf(buf, FMT_LEN, "%lldns", (long long)ns);
	else if (ns < 1000000)
		snprintf(buf, FMT_LEN, "%lldus", (long long)(ns / 1000));
	else if (ns < NS_PER_S)
		snprintf(buf, FMT_LEN, "%lldms", (long long)(ns / 1000000));
	else if (ns < 10 * NS_PER_S && ns % NS_PER_S >= NS_PER_S / 10)
		snprintf(buf, FMT_LEN, "%lld.%llds", s,
		         (long long)(ns % NS_PER_S / (NS_PER_S / 10)));
	else if (s < 60)
		snprintf(buf, FMT_LEN, "%llds", s);
	else if (s < 3600)
		snprintf(buf, FMT_LEN, s % 60 ? "%lldm%02llds" : "%lldm", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, FMT_LEN, s / 60 % 60 ? "%lldh%02lldm" : "%lldh", s / 3600,
		         s / 60 % 60);
	else
		snprintf(buf, FMT_LEN, s / 3600 % 24 ? "%lldd%02lldh" : "%lldd", s / 86400,
		         s / 3600 % 24);
	return buf;
}

/* The period of a rate: the named units the config file's rates use
 * ("500 per min"), else a duration ("500 per 10s"). */
const char *fmt_period(char buf[FMT_LEN], int64_t ns)
{
	static const struct { int64_t ns; const char *name; } named[] = {
		{ NS_PER_S, "s" }, { 60 * NS_PER_S, "min" }, { 3600 * NS_PER_S, "h" },
		{ 86400 * NS_PER_S, "day" },
	};
	size_t i;

	for (i = 0; i < sizeof named / sizeof named[0]; i++)
		if (named[i].ns == ns) {
			snprintf(buf, FMT_LEN, "%s", named[i].name);
			return buf;
		}
	return fmt_dur(buf, ns);
}

const char *fmt_dim(ratectl_dim dim)
{
	return dim == RATECTL_TOKENS ? "tokens" : "requests";
}

const char *fmt_limit(char buf[FMT_LONG], const ratectl_limit *l)
{
	char c[FMT_LEN], p[FMT_LEN], b[FMT_LEN];
	uint64_t burst = l->burst ? l->burst : l->count;

	fmt_count(c, l->count);
	fmt_period(p, l->period_ns);
	if (burst == l->count)
		snprintf(buf, FMT_LONG, "%s per %s", c, p);
	else
		snprintf(buf, FMT_LONG, "%s per %s burst %s", c, p, fmt_count(b, burst));
	return buf;
}

const char *fmt_avail(char buf[FMT_LONG], const ratectl_limit_state *s)
{
	char a[FMT_LEN], b[FMT_LEN], c[FMT_LEN], p[FMT_LEN];
	const ratectl_limit *l = &s->limit;

	fmt_count(a, s->available);
	fmt_count(b, l->burst);
	fmt_period(p, l->period_ns);
	if (l->burst == l->count)
		snprintf(buf, FMT_LONG, "%s/%s per %s", a, b, p);
	else
		snprintf(buf, FMT_LONG, "%s/%s of %s per %s", a, b,
		         fmt_count(c, l->count), p);
	return buf;
}

const char *fmt_utc(char buf[FMT_LEN], int64_t ns)
{
	time_t t = (time_t)(ns / NS_PER_S);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || strftime(buf, FMT_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, FMT_LEN, "%lld s after the epoch", (long long)t);
	return buf;
}

int64_t fmt_wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- tables ---------------------------------------------------------------- */

/* Cells are kept row-major in one growing buffer, each ending in '\0',
 * found by their offsets: widths are known only when every row is in, and
 * 100,000 rows must not cost a million small allocations. */
struct table {
	unsigned ncols;
	size_t ncells, cap;
	size_t *off;               /* cell i starts at text + off[i] */
	char *text;
	size_t used, size;
	int lost;                  /* a cell could not be allocated */
};

table *table_new(unsigned ncols)
{
	table *t = calloc(1, sizeof *t);

	if (t)
		t->ncols = ncols;
	return t;
}

static int grow(void **p, size_t *cap, size_t need, size_t unit)
{
	size_t n = *cap ? *cap : 64;
	void *v;

	while (n < need)
		n *= 2;
	if (n == *cap)
		return 0;
	if (!(v = realloc(*p, n * unit)))
		return -1;
	*p = v;
	*cap = n;
	return 0;
}

void table_cell(table *t, const char *fmt, ...)
{
	va_list ap;
	int len;

	/* A cell lost would shift every later one into the wrong column, or
	 * show a blank for a figure: table_print() then prints nothing and
	 * says so. */
	if (!t || t->lost)
		return;
	if (grow((void **)&t->off, &t->cap, t->ncells + 1, sizeof *t->off) != 0) {
		t->lost = 1;
		return;
	}
	for (;;) {
		size_t room = t->size - t->used;

		va_start(ap, fmt);
		len = vsnprintf(t->text ? t->text + t->used : NULL, room, fmt, ap);
		va_end(ap);
		if (len < 0) {
			t->lost = 1;
			return;
		}
		if ((size_t)len < room)
			break;
		if (grow((void **)&t->text, &t->size, t->used + (size_t)len + 1, 1) != 0) {
			t->lost = 1;
			return;
		}
	}
	t->off[t->ncells++] = t->used;
	t->used += (size_t)len + 1;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; s && *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

int table_print_cols(const table *t, FILE *f, const char *indent, unsigned mask)
{
	size_t w[16] = { 0 }, i;
	unsigned col, last = 0;

	if (!t || t->lost || t->ncols == 0 || t->ncols > 16)
		return -ENOMEM;
	for (col = 0; col < t->ncols; col++)
		if (mask & (1u << col))
			last = col;
	for (i = 0; i < t->ncells; i++)
		if (width(t->text + t->off[i]) > w[i % t->ncols])
			w[i % t->ncols] = width(t->text + t->off[i]);
	for (i = 0; i < t->ncells; i++) {
		const char *s = t->text + t->off[i];

		col = (unsigned)(i % t->ncols);
		if (col == 0)
			fputs(indent ? indent : "", f);
		if (mask & (1u << col)) {
			fputs(s, f);
			/* No trailing blanks: the last column is not padded. */
			if (col < last && i + 1 < t->ncells)
				fprintf(f, "%*s", (int)(w[col] - width(s) + 2), "");
		}
		if (col + 1 == t->ncols || i + 1 == t->ncells)
			fputc('\n', f);
	}
	return 0;
}

int table_print(const table *t, FILE *f, const char *indent)
{
	return table_print_cols(t, f, indent, ~0u);
}

void table_free(table *t)
{
	if (!t)
		return;
	free(t->off);
	free(t->text);
	free(t);
}
