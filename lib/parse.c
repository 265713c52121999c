/*
 * parse.c - the small text formats shared by the tools, the shim and the
 * config file: durations ("1.5s", "10 min"), rates ("500/min"), Go
 * durations from OpenAI's x-ratelimit-reset-* headers ("6m0s"), HTTP
 * Retry-After values and RFC 3339 timestamps.
 *
 * Why hand-written: no Debian library parses these formats.  strtod() and
 * strptime() follow the locale (a "," decimal point, localised month
 * names), timegm()/mktime() go through TZ and the C library's tz tables,
 * and nothing parses Go durations or "2,000,000/day" at all.  The preload
 * shim parses provider headers on the request path of someone else's
 * process, so the parsers must also be allocation-free, reentrant and
 * unable to fail for any reason but the text itself.  Hence: our own
 * digit loops with overflow checks, and days-from-civil arithmetic for
 * dates.  Every input is fuzzed (tests/fuzz/fuzz_parse.c).
 *
 * Every parser works on the input trimmed of ASCII blanks, as a range
 * [b, e) found with one strlen(), and never looks at a byte outside it.
 * Times are exact integer nanoseconds; a fraction finer than a nanosecond
 * is rounded up for delays (waiting a hair longer is harmless; waking a
 * hair early only earns another refusal) and truncated for timestamps (as
 * RFC 3339 readers conventionally do).  Outputs are written only on
 * success.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

#define NS_PER_US INT64_C(1000)
#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define NS_PER_MIN (60 * NS_PER_S)
#define NS_PER_H (60 * NS_PER_MIN)
#define NS_PER_DAY (24 * NS_PER_H)
#define S_PER_DAY INT64_C(86400)

/* How much of the input a message quotes: enough to recognise it, not so
 * much that the 512-byte message loses its explanation. */
#define SHOW_MAX 80

/* The input being parsed and the cursor in it. */
typedef struct scan {
	const char *what;   /* "duration", "rate", ... for messages */
	const char *b, *e;  /* the input without leading/trailing blanks */
	const char *p;      /* cursor, b <= p <= e */
} scan;

/* ---------------------------------------------------------------------- */
/* Characters and messages                                                */
/* ---------------------------------------------------------------------- */

/* ASCII only, whatever the locale says. */
static int is_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	       c == '\f';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static void scan_init(scan *sc, const char *what, const char *s)
{
	const char *e = s + strlen(s);

	while (is_blank((unsigned char)*s))
		s++;
	while (e > s && is_blank((unsigned char)e[-1]))
		e--;
	sc->what = what;
	sc->b = sc->p = s;
	sc->e = e;
}

/* The byte at the cursor, or -1 at the end: never reads past e. */
static int peek(const scan *sc)
{
	return sc->p < sc->e ? (unsigned char)*sc->p : -1;
}

static int accept(scan *sc, int c)
{
	if (peek(sc) != c)
		return 0;
	sc->p++;
	return 1;
}

static void skip_blanks(scan *sc)
{
	while (is_blank(peek(sc)))
		sc->p++;
}

/*
 * Copy [p, e) into buf for a message: control bytes become '?' (the text
 * may come from a network header and the message may reach a terminal),
 * and a long text is cut with "...".  Bytes >= 0x80 pass, so "µs" shows.
 */
static const char *show(char *buf, size_t len, const char *p, const char *e)
{
	size_t n = 0;

	for (; p < e && n + 4 < len; p++) {
		unsigned char c = (unsigned char)*p;
		buf[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (p < e) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* Fail with "<what> '<input>': <detail>" and RATECTL_EPARSE. */
static int fail(const scan *sc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(const scan *sc, const char *fmt, ...)
{
	char in[SHOW_MAX], detail[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return ratectl__err(RATECTL_EPARSE, "%s '%s': %s", sc->what,
	                    show(in, sizeof in, sc->b, sc->e), detail);
}

/* Fail naming the unexpected text from the cursor on. */
static int fail_rest(const scan *sc, const char *where)
{
	const char *p = sc->p;
	char rest[SHOW_MAX];

	while (p < sc->e && is_blank((unsigned char)*p))
		p++;
	if (p == sc->e)
		return fail(sc, "unexpected end of text %s", where);
	return fail(sc, "unexpected '%s' %s", show(rest, sizeof rest, p, sc->e),
	            where);
}

/* ---------------------------------------------------------------------- */
/* Numbers                                                                */
/* ---------------------------------------------------------------------- */

/* A decimal number as written: integer part and fraction digits. */
typedef struct decimal {
	uint64_t ip;
	const char *fb, *fe; /* fraction digits, fb == fe when none */
} decimal;

/* Whether a decimal number starts at the cursor: "5", ".5". */
static int at_number(const scan *sc)
{
	return is_digit(peek(sc)) ||
	       (peek(sc) == '.' && sc->p + 1 < sc->e && is_digit(sc->p[1]));
}

/*
 * Read digits[.digits] where at_number() holds, so there is a digit on at
 * least one side of the point, as Go allows: "5", "5.", ".5".  The integer
 * part must fit uint64_t; the fraction may be of any length and is kept
 * as text.
 */
static int scan_decimal(scan *sc, decimal *d)
{
	const char *start = sc->p;
	char num[SHOW_MAX];

	d->ip = 0;
	for (; is_digit(peek(sc)); sc->p++) {
		uint64_t digit = (uint64_t)(*sc->p - '0');
		if (__builtin_mul_overflow(d->ip, 10, &d->ip) ||
		    __builtin_add_overflow(d->ip, digit, &d->ip)) {
			while (is_digit(peek(sc)))
				sc->p++;
			return fail(sc, "number '%s' is too large",
			            show(num, sizeof num, start, sc->p));
		}
	}
	d->fb = d->fe = sc->p;
	if (accept(sc, '.')) {
		d->fb = sc->p;
		while (is_digit(peek(sc)))
			sc->p++;
		d->fe = sc->p;
	}
	return 0;
}

/*
 * ceil(0.<digits> * unit) for unit <= NS_PER_DAY, exactly, for any number
 * of digits.  Horner's rule from the last digit, taking the ceiling at
 * each step: ceil((a + ceil(x)) / 10) == ceil((a + x) / 10) for integer a,
 * so the result is the ceiling of the exact product.  Every intermediate
 * stays below 10 * unit, far from overflow.
 */
static uint64_t frac_ceil(const char *fb, const char *fe, uint64_t unit)
{
	uint64_t v = 0;

	while (fe > fb) {
		uint64_t digit = (uint64_t)(*--fe - '0');
		v = (digit * unit + v + 9) / 10;
	}
	return v;
}

/* *ns = d * unit, rounded up to a nanosecond; fails when over INT64_MAX. */
static int scale(const scan *sc, const decimal *d, int64_t unit, int64_t *ns)
{
	uint64_t whole, frac = frac_ceil(d->fb, d->fe, (uint64_t)unit);

	if (__builtin_mul_overflow(d->ip, (uint64_t)unit, &whole) ||
	    __builtin_add_overflow(whole, frac, &whole) ||
	    whole > (uint64_t)INT64_MAX)
		return fail(sc, "too large; at most 9223372036 seconds "
		                "(about 292 years)");
	*ns = (int64_t)whole;
	return 0;
}

/* Exactly n digits (for dates and times). */
static int scan_fixed(scan *sc, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (!is_digit(peek(sc)))
			return -1;
		*v = *v * 10 + (*sc->p++ - '0');
	}
	return 0;
}

/* One or two digits (a day of the month, "6" or "06"). */
static int scan_1or2(scan *sc, int *v)
{
	if (scan_fixed(sc, 1, v) < 0)
		return -1;
	if (is_digit(peek(sc)))
		*v = *v * 10 + (*sc->p++ - '0');
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Units                                                                  */
/* ---------------------------------------------------------------------- */

typedef struct unit {
	const char *name;
	int64_t ns;
} unit;

/* Human units, matched without regard to case. */
static const unit human_units[] = {
	{ "ns", 1 }, { "us", NS_PER_US }, { "\xc2\xb5s", NS_PER_US },
	{ "ms", NS_PER_MS },
	{ "s", NS_PER_S }, { "sec", NS_PER_S }, { "secs", NS_PER_S },
	{ "second", NS_PER_S }, { "seconds", NS_PER_S },
	{ "m", NS_PER_MIN }, { "min", NS_PER_MIN }, { "mins", NS_PER_MIN },
	{ "minute", NS_PER_MIN }, { "minutes", NS_PER_MIN },
	{ "h", NS_PER_H }, { "hr", NS_PER_H }, { "hrs", NS_PER_H },
	{ "hour", NS_PER_H }, { "hours", NS_PER_H },
	{ "d", NS_PER_DAY }, { "day", NS_PER_DAY }, { "days", NS_PER_DAY },
};

/* Go's time.ParseDuration units, case-sensitive as in Go: "µs" is U+00B5
 * MICRO SIGN and "μs" U+03BC GREEK SMALL LETTER MU; Go takes both. */
static const unit go_units[] = {
	{ "ns", 1 }, { "us", NS_PER_US }, { "\xc2\xb5s", NS_PER_US },
	{ "\xce\xbcs", NS_PER_US }, { "ms", NS_PER_MS }, { "s", NS_PER_S },
	{ "m", NS_PER_MIN }, { "h", NS_PER_H },
};

#define HUMAN_UNITS "ns, us, ms, s, min, h or d"
#define GO_UNITS "ns, us, \xc2\xb5s, ms, s, m or h"

/* Whether [p, e) spells name, ASCII case folded when fold is set. */
static int word_is(const char *p, const char *e, const char *name, int fold)
{
	for (; p < e && *name; p++, name++) {
		int c = (unsigned char)*p, n = (unsigned char)*name;
		if (fold ? to_lower(c) != to_lower(n) : c != n)
			return 0;
	}
	return p == e && !*name;
}

static const unit *find_unit(const unit *tab, size_t n, const char *p,
                             const char *e, int fold)
{
	for (size_t i = 0; i < n; i++)
		if (word_is(p, e, tab[i].name, fold))
			return &tab[i];
	return NULL;
}

/* A unit word of the human forms: ASCII letters, or UTF-8 bytes for µ. */
static const char *word_end(const scan *sc)
{
	const char *q = sc->p;

	while (q < sc->e && (is_alpha((unsigned char)*q) || (*q & 0x80)))
		q++;
	return q;
}

/* Read a human unit word at the cursor into *ns. */
static int scan_human_unit(scan *sc, int64_t *ns)
{
	char w[SHOW_MAX];
	const char *q = word_end(sc);
	const unit *u;

	if (q == sc->p)
		return fail_rest(sc, "where a unit was expected (" HUMAN_UNITS ")");
	u = find_unit(human_units, sizeof human_units / sizeof *human_units,
	              sc->p, q, 1);
	if (!u)
		return fail(sc, "unknown unit '%s'; expected " HUMAN_UNITS,
		            show(w, sizeof w, sc->p, q));
	sc->p = q;
	*ns = u->ns;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Durations and rates                                                    */
/* ---------------------------------------------------------------------- */

static int reject_sign(const scan *sc)
{
	if (peek(sc) == '-')
		return fail(sc, "negative values are not allowed");
	return 0;
}

/*
 * number [blanks] unit, as in "1.5s", "10 min", "3 days".  A bare number
 * is refused unless it is zero: "10" could mean seconds to one reader and
 * milliseconds to another, while zero is zero in every unit.
 */
static int scan_term(scan *sc, int64_t *ns)
{
	int64_t unit_ns;
	decimal d;
	int rc;

	if ((rc = reject_sign(sc)) < 0)
		return rc;
	if (!at_number(sc))
		return fail_rest(sc, "where a number was expected");
	if ((rc = scan_decimal(sc, &d)) < 0)
		return rc;
	skip_blanks(sc);
	/* Zero: no integer part, and no fraction even at a unit of 1 ns. */
	if (sc->p == sc->e && d.ip == 0 && frac_ceil(d.fb, d.fe, 1) == 0) {
		*ns = 0;
		return 0;
	}
	if (sc->p == sc->e)
		return fail(sc, "a number needs a unit, as in '10s' or '10ms' "
		                "(" HUMAN_UNITS ")");
	if ((rc = scan_human_unit(sc, &unit_ns)) < 0)
		return rc;
	return scale(sc, &d, unit_ns, ns);
}

int ratectl_parse_duration(const char *s, int64_t *ns)
{
	int64_t v = 0;
	scan sc;
	int rc;

	ratectl__err_clear();
	scan_init(&sc, "duration", s);
	if (sc.p == sc.e)
		return fail(&sc, "empty; expected a number and a unit, as in "
		                 "'1.5s' or '10 min'");
	if ((rc = scan_term(&sc, &v)) < 0)
		return rc;
	skip_blanks(&sc);
	if (sc.p != sc.e)
		return fail_rest(&sc, "after unit");
	*ns = v;
	return 0;
}

/*
 * A count with optional digit group separators: "2,000,000", "10_000".
 * Groups after a separator must have three digits, so that "1,5" (one and
 * a half in much of Europe) is refused rather than read as fifteen.
 */
static int check_groups(const scan *sc, const char *p, const char *q)
{
	int group = 0, seps = 0;
	char num[SHOW_MAX];

	for (const char *r = p; r < q; r++) {
		if (is_digit(*r)) {
			group++;
			continue;
		}
		/* The group before a separator: 1 to 3 digits if first, else 3. */
		if (seps++ == 0 ? group < 1 || group > 3 : group != 3)
			goto bad;
		group = 0;
	}
	if (seps == 0 || group == 3)
		return 0;
bad:
	return fail(sc, "count '%s': digit groups must have three digits, "
	            "as in '2,000,000'", show(num, sizeof num, p, q));
}

static int scan_count(scan *sc, uint64_t *count)
{
	const char *q = sc->p;
	char num[SHOW_MAX];
	uint64_t v = 0;
	int rc;

	while (q < sc->e && (is_digit(*q) || *q == ',' || *q == '_'))
		q++;
	if ((rc = check_groups(sc, sc->p, q)) < 0)
		return rc;
	for (const char *p = sc->p; p < q; p++) {
		if (!is_digit(*p))
			continue;
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return fail(sc, "count '%s' is too large",
			            show(num, sizeof num, sc->p, q));
	}
	sc->p = q;
	*count = v;
	return 0;
}

/* The separator between count and period: '/' or the word "per". */
static int scan_per(scan *sc)
{
	const char *q;

	skip_blanks(sc);
	if (accept(sc, '/'))
		return 0;
	q = word_end(sc);
	if (q == sc->p || !word_is(sc->p, q, "per", 1)) {
		if (peek(sc) == '.')
			return fail(sc, "the count must be a whole number");
		return fail_rest(sc, "after the count; expected '/' or 'per'");
	}
	sc->p = q;
	return 0;
}

/* The period: a unit ("min") or a number and a unit ("10s"). */
static int scan_period(scan *sc, int64_t *period_ns)
{
	skip_blanks(sc);
	if (sc->p == sc->e)
		return fail(sc, "missing period after the count; expected for "
		                "example '/min' or 'per hour'");
	if (at_number(sc) || peek(sc) == '-')
		return scan_term(sc, period_ns);
	return scan_human_unit(sc, period_ns);
}

int ratectl_parse_rate(const char *s, uint64_t *count, int64_t *period_ns)
{
	uint64_t c = 0;
	int64_t per = 0;
	scan sc;
	int rc;

	ratectl__err_clear();
	scan_init(&sc, "rate", s);
	if (sc.p == sc.e)
		return fail(&sc, "empty; expected a count and a period, as in "
		                 "'500/min' or '5 per hour'");
	if ((rc = reject_sign(&sc)) < 0)
		return rc;
	if (!is_digit(peek(&sc)))
		return fail_rest(&sc, "where a count was expected");
	if ((rc = scan_count(&sc, &c)) < 0 || (rc = scan_per(&sc)) < 0 ||
	    (rc = scan_period(&sc, &per)) < 0)
		return rc;
	skip_blanks(&sc);
	if (sc.p != sc.e)
		return fail_rest(&sc, "after the period");
	if (c == 0)
		return fail(&sc, "the count must be at least 1");
	if (per == 0)
		return fail(&sc, "the period must be longer than zero");
	*count = c;
	*period_ns = per;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Go durations                                                           */
/* ---------------------------------------------------------------------- */

/* One Go term: a number and a unit that runs to the next digit or '.'. */
static int scan_go_term(scan *sc, int64_t *ns)
{
	const unit *u;
	const char *q;
	char w[SHOW_MAX];
	decimal d;
	int rc;

	if (!at_number(sc))
		return fail_rest(sc, "where a number was expected");
	if ((rc = scan_decimal(sc, &d)) < 0)
		return rc;
	for (q = sc->p; q < sc->e && !is_digit(*q) && *q != '.'; q++)
		continue;
	if (q == sc->p)
		return fail(sc, "missing unit after a number; expected " GO_UNITS);
	u = find_unit(go_units, sizeof go_units / sizeof *go_units, sc->p, q, 0);
	if (!u)
		return fail(sc, "unknown unit '%s'; expected " GO_UNITS,
		            show(w, sizeof w, sc->p, q));
	sc->p = q;
	return scale(sc, &d, u->ns, ns);
}

int ratectl_parse_go_duration(const char *s, int64_t *ns)
{
	int64_t total = 0, term = 0;
	scan sc;
	int rc;

	ratectl__err_clear();
	scan_init(&sc, "Go duration", s);
	if (sc.p == sc.e)
		return fail(&sc, "empty; expected for example '6m0s' or '20ms'");
	if ((rc = reject_sign(&sc)) < 0)
		return rc;
	accept(&sc, '+');
	/* As in Go, "0" is the one number allowed without a unit. */
	if (sc.e - sc.p == 1 && *sc.p == '0') {
		*ns = 0;
		return 0;
	}
	do {
		if ((rc = scan_go_term(&sc, &term)) < 0)
			return rc;
		if (__builtin_add_overflow(total, term, &total))
			return fail(&sc, "too large; at most 9223372036 seconds "
			                 "(about 292 years)");
	} while (sc.p < sc.e);
	*ns = total;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Calendar arithmetic                                                    */
/* ---------------------------------------------------------------------- */

/* A broken-down UTC time as read from the text, before validation. */
typedef struct civil {
	int year, mon, day, hour, min, sec;
} civil;

static const char *const month_names[12] = {
	"January", "February", "March", "April", "May", "June", "July",
	"August", "September", "October", "November", "December"
};

static int is_leap(int y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int days_in_month(int y, int m)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	                             30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/*
 * Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): exact for every year, no tables, no time zone.
 */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;                        /* [0, 399] */
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* [0, 146096] */
	return era * 146097 + doe - 719468;
}

/* The Gregorian year containing day z since 1970-01-01 (the inverse). */
static int64_t year_from_days(int64_t z)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	return yoe + era * 400 + (mp >= 10);
}

/* Check the ranges of c (a leap second, :60, is allowed). */
static int check_civil(const scan *sc, const civil *c)
{
	if (c->mon < 1 || c->mon > 12)
		return fail(sc, "month %d is not 1 to 12", c->mon);
	if (c->day < 1 || c->day > days_in_month(c->year, c->mon))
		return fail(sc, "day %d is not in %s %04d", c->day,
		            month_names[c->mon - 1], c->year);
	if (c->hour > 23 || c->min > 59 || c->sec > 60)
		return fail(sc, "time %02d:%02d:%02d is not a time of day",
		            c->hour, c->min, c->sec);
	return 0;
}

/* Seconds since the epoch of a checked c; years 0-9999 cannot overflow. */
static int64_t civil_to_unix(const civil *c)
{
	return days_from_civil(c->year, c->mon, c->day) * S_PER_DAY +
	       c->hour * 3600 + c->min * 60 + c->sec;
}

/* "hh:mm:ss", two digits each. */
static int scan_clock(scan *sc, civil *c)
{
	if (scan_fixed(sc, 2, &c->hour) < 0 || !accept(sc, ':') ||
	    scan_fixed(sc, 2, &c->min) < 0 || !accept(sc, ':') ||
	    scan_fixed(sc, 2, &c->sec) < 0)
		return fail_rest(sc, "where a time 'hh:mm:ss' was expected");
	return 0;
}

/* ---------------------------------------------------------------------- */
/* HTTP dates (RFC 9110 section 5.6.7)                                    */
/* ---------------------------------------------------------------------- */

static const char *const wday_names[7] = {
	"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
	"Sunday"
};

/* Whether [p, e) is the three-letter abbreviation of name, any case. */
static int word_is_abbrev(const char *p, const char *e, const char *name)
{
	char abbrev[4] = { name[0], name[1], name[2], '\0' };

	return word_is(p, e, abbrev, 1);
}

/*
 * A weekday, "Sun" or "Sunday", in any case: RFC 9110 makes the names
 * case-sensitive, but a sender that gets the case wrong still means the
 * same instant.  The weekday is not checked against the date for the same
 * reason: it says nothing the date does not.
 */
static int scan_weekday(scan *sc)
{
	const char *q = word_end(sc);

	for (int i = 0; i < 7; i++) {
		if (word_is(sc->p, q, wday_names[i], 1) ||
		    word_is_abbrev(sc->p, q, wday_names[i])) {
			sc->p = q;
			return 0;
		}
	}
	return fail(sc, "expected delta-seconds such as '120' or an HTTP "
	                "date such as 'Sun, 06 Nov 1994 08:49:37 GMT'");
}

/* A three-letter month, "Nov", any case. */
static int scan_month(scan *sc, civil *c)
{
	const char *q = word_end(sc);

	for (int i = 0; i < 12; i++) {
		if (word_is_abbrev(sc->p, q, month_names[i])) {
			c->mon = i + 1;
			sc->p = q;
			return 0;
		}
	}
	return fail_rest(sc, "where a month such as 'Nov' was expected");
}

/* At least one blank between fields; more are tolerated (asctime pads
 * its day with one). */
static int need_blank(scan *sc, const char *where)
{
	if (!is_blank(peek(sc)))
		return fail_rest(sc, where);
	skip_blanks(sc);
	return 0;
}

static int scan_gmt(scan *sc)
{
	const char *q = word_end(sc);

	if (!word_is(sc->p, q, "GMT", 1))
		return fail_rest(sc, "where 'GMT' was expected");
	sc->p = q;
	return 0;
}

/*
 * The full year of RFC 850's two-digit year: RFC 9110 reads a year that
 * would be more than 50 years after now as the most recent past year with
 * the same two digits.
 */
static int full_year(int yy, int64_t now_unix_ns)
{
	int64_t s = now_unix_ns / NS_PER_S;
	int64_t days = s / S_PER_DAY - (s % S_PER_DAY < 0);
	int64_t now_year = year_from_days(days);   /* 1677..2262 */
	int64_t y = now_year - now_year % 100 + yy;

	if (y > now_year + 50)
		y -= 100;
	return (int)y;
}

/* After "Sun,": " 06 Nov 1994" (IMF-fixdate) or " 06-Nov-94" (RFC 850),
 * then " 08:49:37 GMT". */
static int scan_imf_or_rfc850(scan *sc, civil *c, int64_t now_unix_ns)
{
	int rc;

	skip_blanks(sc);
	if (scan_1or2(sc, &c->day) < 0)
		return fail_rest(sc, "where a day of the month was expected");
	if (accept(sc, '-')) {
		if ((rc = scan_month(sc, c)) < 0)
			return rc;
		if (!accept(sc, '-') || scan_fixed(sc, 2, &c->year) < 0)
			return fail_rest(sc, "where '-yy' was expected");
		c->year = full_year(c->year, now_unix_ns);
	} else if ((rc = need_blank(sc, "after the day")) < 0 ||
	           (rc = scan_month(sc, c)) < 0 ||
	           (rc = need_blank(sc, "after the month")) < 0) {
		return rc;
	} else if (scan_fixed(sc, 4, &c->year) < 0) {
		return fail_rest(sc, "where a four-digit year was expected");
	}
	if ((rc = need_blank(sc, "after the date")) < 0 ||
	    (rc = scan_clock(sc, c)) < 0 ||
	    (rc = need_blank(sc, "after the time")) < 0)
		return rc;
	return scan_gmt(sc);
}

/* After "Sun": " Nov  6 08:49:37 1994" (asctime, implicitly GMT). */
static int scan_asctime(scan *sc, civil *c)
{
	int rc;

	if ((rc = need_blank(sc, "after the weekday")) < 0 ||
	    (rc = scan_month(sc, c)) < 0 ||
	    (rc = need_blank(sc, "after the month")) < 0)
		return rc;
	if (scan_1or2(sc, &c->day) < 0)
		return fail_rest(sc, "where a day of the month was expected");
	if ((rc = need_blank(sc, "after the day")) < 0 ||
	    (rc = scan_clock(sc, c)) < 0 ||
	    (rc = need_blank(sc, "after the time")) < 0)
		return rc;
	if (scan_fixed(sc, 4, &c->year) < 0)
		return fail_rest(sc, "where a four-digit year was expected");
	return 0;
}

/* An HTTP date in any of its three forms: *unix_s. */
static int scan_http_date(scan *sc, int64_t now_unix_ns, int64_t *unix_s)
{
	civil c = { 0, 0, 0, 0, 0, 0 };
	int rc;

	if ((rc = scan_weekday(sc)) < 0)
		return rc;
	if (accept(sc, ','))
		rc = scan_imf_or_rfc850(sc, &c, now_unix_ns);
	else
		rc = scan_asctime(sc, &c);
	if (rc < 0)
		return rc;
	if (sc->p != sc->e)
		return fail_rest(sc, "after the date");
	if ((rc = check_civil(sc, &c)) < 0)
		return rc;
	*unix_s = civil_to_unix(&c);
	return 0;
}

/* The delay from now until unix_s: 0 when it is past. */
static int delay_until(const scan *sc, int64_t unix_s, int64_t now_unix_ns,
                       int64_t *ns)
{
	int64_t t, d;

	if (__builtin_mul_overflow(unix_s, NS_PER_S, &t)) {
		if (unix_s < 0) {       /* before 1677: long past */
			*ns = 0;
			return 0;
		}
		return fail(sc, "the date is too far in the future");
	}
	if (__builtin_sub_overflow(t, now_unix_ns, &d)) {
		if (t < now_unix_ns) {
			*ns = 0;
			return 0;
		}
		return fail(sc, "the date is too far in the future");
	}
	*ns = d > 0 ? d : 0;
	return 0;
}

int ratectl_parse_retry_after(const char *s, int64_t now_unix_ns, int64_t *ns)
{
	int64_t v = 0, unix_s = 0;
	decimal d;
	scan sc;
	int rc;

	ratectl__err_clear();
	scan_init(&sc, "Retry-After", s);
	if (sc.p == sc.e)
		return fail(&sc, "empty; expected delta-seconds such as '120' "
		                 "or an HTTP date");
	if ((rc = reject_sign(&sc)) < 0)
		return rc;
	if (at_number(&sc)) {
		/* Delta-seconds; fractions are not in RFC 9110 but some
		 * gateways send them, and they are unambiguous. */
		if ((rc = scan_decimal(&sc, &d)) < 0)
			return rc;
		if (sc.p != sc.e)
			return fail_rest(&sc, "after the number of seconds");
		rc = scale(&sc, &d, NS_PER_S, &v);
	} else {
		rc = scan_http_date(&sc, now_unix_ns, &unix_s);
		if (rc == 0)
			rc = delay_until(&sc, unix_s, now_unix_ns, &v);
	}
	if (rc < 0)
		return rc;
	*ns = v;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* RFC 3339                                                               */
/* ---------------------------------------------------------------------- */

/* "YYYY-MM-DD" and the separator before the time. */
static int scan_rfc3339_date(scan *sc, civil *c)
{
	if (scan_fixed(sc, 4, &c->year) < 0 || !accept(sc, '-') ||
	    scan_fixed(sc, 2, &c->mon) < 0 || !accept(sc, '-') ||
	    scan_fixed(sc, 2, &c->day) < 0)
		return fail_rest(sc, "where a date 'YYYY-MM-DD' was expected");
	/* RFC 3339 section 5.6 allows 't' and, by its note, a space. */
	if (!accept(sc, 'T') && !accept(sc, 't') && !accept(sc, ' '))
		return fail_rest(sc, "after the date; expected 'T'");
	return 0;
}

/* ".digits": nanoseconds, digits beyond the ninth truncated. */
static int scan_rfc3339_frac(scan *sc, int64_t *frac_ns)
{
	int64_t v = 0;
	int n = 0;

	*frac_ns = 0;
	if (!accept(sc, '.'))
		return 0;
	if (!is_digit(peek(sc)))
		return fail_rest(sc, "after '.'; expected fractional seconds");
	for (; is_digit(peek(sc)); sc->p++) {
		if (n < 9) {
			v = v * 10 + (*sc->p - '0');
			n++;
		}
	}
	for (; n < 9; n++)
		v *= 10;
	*frac_ns = v;
	return 0;
}

/* "Z" or "+hh:mm" / "-hh:mm": seconds east of UTC. */
static int scan_rfc3339_offset(scan *sc, int64_t *off_s)
{
	int sign, h, m;

	if (accept(sc, 'Z') || accept(sc, 'z')) {
		*off_s = 0;
		return 0;
	}
	sign = peek(sc) == '-' ? -1 : 1;
	if ((!accept(sc, '+') && !accept(sc, '-')) ||
	    scan_fixed(sc, 2, &h) < 0 || !accept(sc, ':') ||
	    scan_fixed(sc, 2, &m) < 0)
		return fail_rest(sc, "where 'Z' or an offset '+hh:mm' was "
		                     "expected");
	if (h > 23 || m > 59)
		return fail(sc, "offset %02d:%02d is out of range", h, m);
	*off_s = sign * (h * 3600 + m * 60);
	return 0;
}

int ratectl_parse_rfc3339(const char *s, int64_t *unix_ns)
{
	civil c = { 0, 0, 0, 0, 0, 0 };
	int64_t frac = 0, off = 0, secs, v;
	scan sc;
	int rc;

	ratectl__err_clear();
	scan_init(&sc, "RFC 3339 time", s);
	if (sc.p == sc.e)
		return fail(&sc, "empty; expected for example "
		                 "'2026-11-25T17:03:00Z'");
	if ((rc = scan_rfc3339_date(&sc, &c)) < 0 ||
	    (rc = scan_clock(&sc, &c)) < 0 ||
	    (rc = scan_rfc3339_frac(&sc, &frac)) < 0 ||
	    (rc = scan_rfc3339_offset(&sc, &off)) < 0)
		return rc;
	if (sc.p != sc.e)
		return fail_rest(&sc, "after the offset");
	if ((rc = check_civil(&sc, &c)) < 0)
		return rc;
	secs = civil_to_unix(&c) - off;
	/* Borrow a second before the epoch so that secs * 1e9 overflows only
	 * when the result itself is out of range. */
	if (secs < 0 && frac > 0) {
		secs++;
		frac -= NS_PER_S;
	}
	if (__builtin_mul_overflow(secs, NS_PER_S, &v) ||
	    __builtin_add_overflow(v, frac, &v))
		return fail(&sc, "outside the years 1677 to 2262 that int64 "
		                 "nanoseconds can hold");
	*unix_ns = v;
	return 0;
}
