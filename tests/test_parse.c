/*
 * test_parse.c - the parsers of durations, rates, Go durations,
 * Retry-After and RFC 3339 (lib/parse.c): every accepted form with its
 * exact value, and every rejection with its message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ratectl.h"

#define US INT64_C(1000)
#define MS INT64_C(1000000)
#define S INT64_C(1000000000)
#define MIN (60 * S)
#define H (60 * MIN)
#define DAY (24 * H)

/* A value the parsers never produce, to see that failures leave the
 * outputs alone. */
#define UNTOUCHED INT64_C(-7777)

/* "now" for Retry-After: 2025-11-25T17:00:00Z. */
#define NOW (INT64_C(1764090000) * S)

typedef struct {
	const char *s;
	int64_t want;
} ok_case;

typedef struct {
	const char *s;
	const char *frag; /* must appear in ratectl_errmsg() */
} bad_case;

/*
 * A rejection: RATECTL_EPARSE, outputs untouched, and a message that
 * quotes the offending text.  Inputs are quoted trimmed, so the check
 * uses frag, which the table gives as the text the message must name.
 */
static void check_bad(int rc, const char *s, const char *frag, int64_t out)
{
	const char *msg = ratectl_errmsg();

	if (rc != RATECTL_EPARSE || msg[0] == '\0' || !strstr(msg, frag) ||
	    out != UNTOUCHED)
		print_error("input '%s': rc %d, out %lld, message \"%s\", "
		            "expected it to contain \"%s\"\n", s, rc,
		            (long long)out, msg, frag);
	assert_int_equal(rc, RATECTL_EPARSE);
	assert_true(msg[0] != '\0');
	assert_non_null(strstr(msg, frag));
	assert_int_equal(out, UNTOUCHED);
}

/* A success: the exact value, and no message left from before. */
static void check_ok(int rc, const char *s, int64_t got, int64_t want)
{
	if (rc != 0 || got != want)
		print_error("input '%s': rc %d (%s), got %lld, want %lld\n", s,
		            rc, ratectl_errmsg(), (long long)got, (long long)want);
	assert_int_equal(rc, 0);
	assert_true(got == want);
	assert_string_equal(ratectl_errmsg(), "");
}

#define N(a) (sizeof(a) / sizeof *(a))

/* ---------------------------------------------------------------------- */
/* ratectl_parse_duration                                                 */
/* ---------------------------------------------------------------------- */

static const ok_case duration_ok[] = {
	{ "1.5s", 1500 * MS },
	{ "250ms", 250 * MS },
	{ "10 min", 10 * MIN },
	{ "2h", 2 * H },
	{ "1day", DAY },
	{ "3 days", 3 * DAY },
	{ "0", 0 },
	{ "0.0", 0 },
	{ "7ns", 7 },
	{ "7us", 7 * US },
	{ "7\xc2\xb5s", 7 * US },
	{ "7ms", 7 * MS },
	{ "7s", 7 * S }, { "7sec", 7 * S }, { "7secs", 7 * S },
	{ "7second", 7 * S }, { "7 seconds", 7 * S },
	{ "7m", 7 * MIN }, { "7min", 7 * MIN }, { "7mins", 7 * MIN },
	{ "7minute", 7 * MIN }, { "7 minutes", 7 * MIN },
	{ "7h", 7 * H }, { "7hr", 7 * H }, { "7hrs", 7 * H },
	{ "7hour", 7 * H }, { "7 hours", 7 * H },
	{ "7d", 7 * DAY }, { "7day", 7 * DAY }, { "7days", 7 * DAY },
	/* Units in any case. */
	{ "10 MIN", 10 * MIN }, { "2H", 2 * H }, { "1Day", DAY },
	{ "5 Seconds", 5 * S }, { "3MS", 3 * MS },
	/* Blanks around and between. */
	{ " \t1.5s\n ", 1500 * MS }, { "10 \t min", 10 * MIN },
	/* Fractions: exact when representable. */
	{ "0.25 min", 15 * S }, { ".5s", 500 * MS }, { "0.001ms", 1 * US },
	{ "1.5h", 90 * MIN }, { "0.5d", 12 * H },
	{ "2.000000000000000000000000000s", 2 * S },
	/* Finer than a nanosecond: rounded up. */
	{ "1.5ns", 2 }, { "0.1ns", 1 }, { "0.0000000001s", 1 },
	{ "1.0000000001s", S + 1 }, { "0.3333333333333333333333us", 334 },
	{ "1.00000000000000000000000000000000001ns", 2 },
	/* Leading zeros never overflow. */
	{ "0000000000000000000000000000000042s", 42 * S },
	/* The largest values. */
	{ "9223372036854775807ns", INT64_MAX },
	{ "9223372036.854775807s", INT64_MAX },
	{ "106751d", 106751 * DAY },
};

static const bad_case duration_bad[] = {
	{ "", "duration ''" },
	{ "   ", "empty" },
	{ "10", "duration '10'" },
	{ "1.5", "needs a unit" },
	{ "-1s", "duration '-1s': negative" },
	{ "+1s", "'+1s'" },
	{ "10 mins x", "duration '10 mins x': unexpected 'x' after unit" },
	{ "10x", "unknown unit 'x'" },
	{ "10 fortnights", "unknown unit 'fortnights'" },
	{ "s", "unexpected 's' where a number was expected" },
	{ "1e3s", "unknown unit 'e'" },
	{ "1..5s", "'1..5s'" },
	{ ".s", "'.s'" },
	{ "10 /", "unexpected '/'" },
	{ "1h30m", "unexpected '30m' after unit" },
	{ "1,000s", "'1,000s'" },
	{ "5 s s", "unexpected 's' after unit" },
	{ "nan", "'nan'" },
	{ "\x01", "'?'" },
};

static const bad_case duration_overflow[] = {
	{ "9223372036854775808ns", "too large" },
	{ "9223372036.854775808s", "too large" },
	{ "9223372036.8547758071s", "too large" }, /* rounds up past max */
	{ "106752d", "too large" },
	{ "18446744073709551615ns", "too large" },
	{ "18446744073709551616ns", "number '18446744073709551616' is too large" },
	{ "99999999999999999999999999s", "too large" },
};

static void test_duration_accepts(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(duration_ok); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_duration(duration_ok[i].s, &ns);
		check_ok(rc, duration_ok[i].s, ns, duration_ok[i].want);
	}
}

static void test_duration_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(duration_bad); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_duration(duration_bad[i].s, &ns);
		check_bad(rc, duration_bad[i].s, duration_bad[i].frag, ns);
	}
}

static void test_duration_overflow(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(duration_overflow); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_duration(duration_overflow[i].s, &ns);
		check_bad(rc, duration_overflow[i].s, duration_overflow[i].frag,
		          ns);
		assert_non_null(strstr(ratectl_errmsg(), duration_overflow[i].s));
	}
}

/* A success clears the message of an earlier failure. */
static void test_success_clears_message(void **state)
{
	int64_t ns;

	(void)state;
	assert_int_equal(ratectl_parse_duration("bad", &ns), RATECTL_EPARSE);
	assert_true(ratectl_errmsg()[0] != '\0');
	assert_int_equal(ratectl_parse_duration("1s", &ns), 0);
	assert_string_equal(ratectl_errmsg(), "");
}

/* A long input is quoted cut short, and control bytes are masked. */
static void test_message_is_bounded(void **state)
{
	char big[2000];
	int64_t ns = UNTOUCHED;

	(void)state;
	memset(big, '7', sizeof big - 2);
	big[sizeof big - 2] = 'q';
	big[sizeof big - 1] = '\0';
	check_bad(ratectl_parse_duration(big, &ns), "big", "duration '7777", ns);
	assert_non_null(strstr(ratectl_errmsg(), "...'"));
	assert_true(strlen(ratectl_errmsg()) < 512);

	check_bad(ratectl_parse_duration("1\x1b[2Jx", &ns), "esc",
	          "'1?[2Jx'", ns);
}

/* ---------------------------------------------------------------------- */
/* ratectl_parse_rate                                                     */
/* ---------------------------------------------------------------------- */

typedef struct {
	const char *s;
	uint64_t count;
	int64_t period;
} rate_case;

static const rate_case rate_ok[] = {
	{ "500/min", 500, MIN },
	{ "200000 / minute", 200000, MIN },
	{ "2,000,000/day", 2000000, DAY },
	{ "10/s", 10, S },
	{ "5 per hour", 5, H },
	{ "100/10s", 100, 10 * S },
	{ "100 / 10 min", 100, 10 * MIN },
	{ "1/1.5s", 1, 1500 * MS },
	{ "10_000/sec", 10000, S },
	{ "1_000_000 PER DAY", 1000000, DAY },
	{ "123,456/h", 123456, H },
	{ "1/d", 1, DAY },
	{ "3 per 2 hours", 3, 2 * H },
	{ " \t60/minute\n", 60, MIN },
	{ "18446744073709551615/day", UINT64_MAX, DAY },
	/* Not the parser's business: the library checks the period range. */
	{ "5/ms", 5, MS },
};

static const bad_case rate_bad[] = {
	{ "", "rate ''" },
	{ "0/s", "rate '0/s': the count must be at least 1" },
	{ "-5/s", "negative" },
	{ "10/-1s", "negative" },
	{ "1.5/s", "whole number" },
	{ "1,5/s", "count '1,5'" },
	{ "1,,000/s", "count '1,,000'" },
	{ "1000,/s", "count '1000,'" },
	{ "1000,000/s", "count '1000,000'" },
	{ "_1/s", "where a count was expected" },
	{ "5 perhour", "unexpected 'perhour'" },
	{ "5 hour", "unexpected 'hour'" },
	{ "5/", "missing period" },
	{ "5 per", "missing period" },
	{ "100/10", "needs a unit" },
	{ "100/0s", "longer than zero" },
	{ "100/0", "longer than zero" },
	{ "10/fortnight", "unknown unit 'fortnight'" },
	{ "10/s extra", "unexpected 'extra' after the period" },
	{ "10/s/s", "unexpected '/s'" },
	{ "per hour", "'per hour'" },
	{ "/min", "'/min'" },
	{ "18446744073709551616/s", "count '18446744073709551616' is too large" },
	{ "1/9223372036854775808ns", "too large" },
};

static void test_rate_accepts(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(rate_ok); i++) {
		uint64_t count = 0;
		int64_t period = UNTOUCHED;
		int rc = ratectl_parse_rate(rate_ok[i].s, &count, &period);
		check_ok(rc, rate_ok[i].s, period, rate_ok[i].period);
		assert_true(count == rate_ok[i].count);
	}
}

static void test_rate_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(rate_bad); i++) {
		uint64_t count = 12345;
		int64_t period = UNTOUCHED;
		int rc = ratectl_parse_rate(rate_bad[i].s, &count, &period);
		check_bad(rc, rate_bad[i].s, rate_bad[i].frag, period);
		assert_int_equal(count, 12345);
	}
}

/* ---------------------------------------------------------------------- */
/* ratectl_parse_go_duration                                              */
/* ---------------------------------------------------------------------- */

static const ok_case go_ok[] = {
	{ "6m0s", 6 * MIN },
	{ "20ms", 20 * MS },
	{ "1h2m3.5s", H + 2 * MIN + 3500 * MS },
	{ "0s", 0 },
	{ "0", 0 },
	{ "+5s", 5 * S },
	{ "1.5s", 1500 * MS },
	{ "7.66s", 7660 * MS },
	{ "2m59.56s", 2 * MIN + 59560 * MS },
	{ "17ns", 17 },
	{ "3us", 3 * US },
	{ "3\xc2\xb5s", 3 * US },   /* U+00B5 MICRO SIGN */
	{ "3\xce\xbcs", 3 * US },   /* U+03BC GREEK SMALL LETTER MU */
	{ "1.s", S },
	{ ".5m", 30 * S },
	{ "1h1h", 2 * H },
	{ "  6m0s\r\n", 6 * MIN },
	{ "1.0000000001s", S + 1 }, /* rounded up (Go would truncate) */
	{ "0.5ns", 1 },
	{ "2562047h47m16.854775807s", INT64_MAX },
};

static const bad_case go_bad[] = {
	{ "", "Go duration ''" },
	{ "-1s", "negative" },
	{ "5", "Go duration '5': missing unit" },
	{ "1s2", "missing unit" },
	{ "1h 2m", "unknown unit 'h '" },
	{ "1H", "unknown unit 'H'" },
	{ "1d", "unknown unit 'd'" },
	{ "1sec", "unknown unit 'sec'" },
	{ "s", "unexpected 's' where a number was expected" },
	{ ".s", "'.s'" },
	{ "+", "unexpected end of text" },
	{ "00", "missing unit" },
	{ "6m0s garbage", "unknown unit 's garbage'" },
	{ "2562047h47m16.854775808s", "too large" },
	{ "3000000h", "too large" },
	{ "9223372036854775807ns1ns", "too large" },
	{ "99999999999999999999h", "is too large" },
};

static void test_go_accepts(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(go_ok); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_go_duration(go_ok[i].s, &ns);
		check_ok(rc, go_ok[i].s, ns, go_ok[i].want);
	}
}

static void test_go_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(go_bad); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_go_duration(go_bad[i].s, &ns);
		check_bad(rc, go_bad[i].s, go_bad[i].frag, ns);
	}
}

/* ---------------------------------------------------------------------- */
/* ratectl_parse_retry_after                                              */
/* ---------------------------------------------------------------------- */

typedef struct {
	const char *s;
	int64_t now;
	int64_t want;
} retry_case;

#define T(unix_s) (INT64_C(unix_s) * S)

static const retry_case retry_ok[] = {
	{ "120", NOW, 120 * S },
	{ "0", NOW, 0 },
	{ "1.5", NOW, 1500 * MS },
	{ " 120 ", NOW, 120 * S },
	{ "0.0000000001", NOW, 1 },            /* rounded up */
	{ "9223372036", NOW, 9223372036 * S },
	/* The three HTTP date forms of one instant. */
	{ "Sun, 06 Nov 1994 08:49:37 GMT", T(784111777) - 10 * S, 10 * S },
	{ "Sunday, 06-Nov-94 08:49:37 GMT", T(784111777) - 10 * S, 10 * S },
	{ "Sun Nov  6 08:49:37 1994", T(784111777) - 10 * S, 10 * S },
	{ "Sun Nov 6 08:49:37 1994", T(784111777) - 10 * S, 10 * S },
	{ "sun, 06 nov 1994 08:49:37 gmt", T(784111777) - 1, 1 },
	{ "Sun, 6 Nov 1994 08:49:37 GMT", T(784111777), 0 },
	{ "Wed, 26 Nov 2025 17:00:00 GMT", NOW, DAY },
	{ "Tue, 25 Nov 2025 17:00:01 GMT", NOW, S },
	/* In the past: no delay. */
	{ "Sun, 06 Nov 1994 08:49:37 GMT", NOW, 0 },
	{ "Tue, 25 Nov 2025 16:59:59 GMT", NOW, 0 },
	{ "Mon, 01 Jan 0001 00:00:00 GMT", NOW, 0 },
	{ "Sun, 06 Nov 1994 08:49:37 GMT", INT64_MAX, 0 },
	/* Leap years: 2024 and 2000 (400), leap seconds. */
	{ "Thu, 29 Feb 2024 00:00:00 GMT", T(1709164800) - DAY, DAY },
	{ "Tue, 29 Feb 2028 00:00:00 GMT", NOW, T(1835395200) - NOW },
	{ "Tue, 29 Feb 2000 12:00:00 GMT", T(951825600) - S, S },
	{ "Wed, 31 Dec 2025 23:59:60 GMT", NOW, T(1767225600) - NOW },
	/* RFC 850 years: more than 50 years ahead means the last century. */
	{ "Tuesday, 01-Jan-75 00:00:00 GMT", NOW, T(3313526400) - NOW },
	{ "Wednesday, 01-Jan-76 00:00:00 GMT", NOW, 0 },
	{ "Wednesday, 26-Nov-25 17:00:00 GMT", NOW, DAY },
	/* Far in the future, yet within int64 nanoseconds. */
	{ "Mon, 01 Mar 2100 00:00:00 GMT", NOW, T(4107542400) - NOW },
};

static const bad_case retry_bad[] = {
	{ "", "Retry-After ''" },
	{ "soon", "Retry-After 'soon': expected delta-seconds" },
	{ "-1", "negative" },
	{ "120s", "unexpected 's' after the number of seconds" },
	{ "1 20", "unexpected '20'" },
	{ "9223372037", "too large" },
	{ "99999999999999999999999", "is too large" },
	{ "Sun, 31 Nov 1994 08:49:37 GMT", "day 31 is not in November 1994" },
	{ "Thu, 29 Feb 2025 00:00:00 GMT", "day 29 is not in February 2025" },
	{ "Thu, 29 Feb 1900 00:00:00 GMT", "day 29 is not in February 1900" },
	{ "Sun, 00 Nov 1994 08:49:37 GMT", "day 0 is not" },
	{ "Sun, 06 Nov 1994 24:00:00 GMT", "time 24:00:00" },
	{ "Sun, 06 Nov 1994 08:60:00 GMT", "time 08:60:00" },
	{ "Sun, 06 Nov 1994 08:00:61 GMT", "time 08:00:61" },
	{ "Sun, 06 Nov 1994 8:49:37 GMT", "where a time 'hh:mm:ss'" },
	{ "Sun, 06 Nov 1994 08:49:37", "end of text after the time" },
	{ "Sun, 06 Nov 1994 08:49:37 UTC", "where 'GMT' was expected" },
	{ "Sun, 06 Nov 1994 08:49:37 PST", "unexpected 'PST'" },
	{ "Sun, 06 Nov 1994 08:49:37 GMT+1", "unexpected '+1' after the date" },
	{ "Sun, 06 Foo 1994 08:49:37 GMT", "unexpected 'Foo 1994" },
	{ "Sun, 06 Nov 94 08:49:37 GMT", "four-digit year" },
	{ "Sun, 106 Nov 1994 08:49:37 GMT", "unexpected '6 Nov" },
	{ "Sunday, 06-Nov-1994 08:49:37 GMT", "unexpected '94 08:49:37" },
	{ "Sunday, 06-Nov 94 08:49:37 GMT", "where '-yy' was expected" },
	{ "Sun Nov  6 08:49:37", "unexpected end of text after the time" },
	{ "Sun Nov  6 08:49:37 1994 GMT", "unexpected 'GMT' after the date" },
	{ "Sun,", "where a day of the month" },
	{ "Someday, 06 Nov 1994 08:49:37 GMT", "'Someday, 06 Nov" },
	{ "Wed, 26 Nov 9999 17:00:00 GMT", "too far in the future" },
};

static void test_retry_after_accepts(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(retry_ok); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_retry_after(retry_ok[i].s, retry_ok[i].now,
		                                   &ns);
		check_ok(rc, retry_ok[i].s, ns, retry_ok[i].want);
	}
}

static void test_retry_after_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(retry_bad); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_retry_after(retry_bad[i].s, NOW, &ns);
		check_bad(rc, retry_bad[i].s, retry_bad[i].frag, ns);
	}
}

/* A date past "now" by more than int64 nanoseconds can span, from a
 * "now" far in the past: refused, not wrapped. */
static void test_retry_after_extreme_now(void **state)
{
	int64_t ns = UNTOUCHED;

	(void)state;
	check_bad(ratectl_parse_retry_after("Mon, 01 Mar 2100 00:00:00 GMT",
	                                    INT64_MIN, &ns),
	          "2100", "too far in the future", ns);
	assert_int_equal(ratectl_parse_retry_after(
	                         "Mon, 01 Jan 1900 00:00:00 GMT", INT64_MIN, &ns), 0);
	assert_true(ns > 0);
}

/* ---------------------------------------------------------------------- */
/* ratectl_parse_rfc3339                                                  */
/* ---------------------------------------------------------------------- */

static const ok_case rfc3339_ok[] = {
	{ "2026-11-25T17:03:00Z", T(1795626180) },
	{ "2026-11-25t17:03:00z", T(1795626180) },
	{ "2026-11-25 17:03:00Z", T(1795626180) },
	{ "  2026-11-25T17:03:00Z\n", T(1795626180) },
	{ "2026-11-25T19:03:00+02:00", T(1795626180) },
	{ "2026-11-25T11:33:00-05:30", T(1795626180) },
	{ "2026-11-25T17:03:00-00:00", T(1795626180) },
	{ "2026-11-25T17:03:00.5Z", T(1795626180) + 500 * MS },
	{ "2026-11-25T17:03:00.123456789Z", T(1795626180) + 123456789 },
	/* Beyond nanoseconds: truncated. */
	{ "2026-11-25T17:03:00.1234567899999Z", T(1795626180) + 123456789 },
	{ "1970-01-01T00:00:00Z", 0 },
	{ "1969-12-31T23:59:59Z", -S },
	{ "1969-12-31T23:59:59.5Z", -500 * MS },
	/* Leap days and leap seconds. */
	{ "2024-02-29T00:00:00Z", T(1709164800) },
	{ "2000-02-29T12:00:00Z", T(951825600) },
	{ "2016-12-31T23:59:60Z", T(1483228800) },
	/* The ends of int64 nanoseconds. */
	{ "2262-04-11T23:47:16.854775807Z", INT64_MAX },
	{ "1677-09-21T00:12:43.145224192Z", INT64_MIN },
};

static const bad_case rfc3339_bad[] = {
	{ "", "RFC 3339 time ''" },
	{ "2026-11-25T17:03:00", "unexpected end of text where 'Z'" },
	{ "2026-11-25T17:03Z", "unexpected 'Z' where a time" },
	{ "2026-11-25X17:03:00Z", "unexpected 'X17:03:00Z' after the date" },
	{ "2026-11-25", "after the date" },
	{ "26-11-25T17:03:00Z", "where a date 'YYYY-MM-DD'" },
	{ "2026/11/25T17:03:00Z", "where a date" },
	{ "2026-11-25T17:03:00.Z", "fractional seconds" },
	{ "2026-11-25T17:03:00+2:00", "offset '+hh:mm'" },
	{ "2026-11-25T17:03:00+0200", "offset '+hh:mm'" },
	{ "2026-11-25T17:03:00+24:00", "offset 24:00 is out of range" },
	{ "2026-11-25T17:03:00+02:60", "offset 02:60" },
	{ "2026-11-25T17:03:00ZZ", "unexpected 'Z' after the offset" },
	{ "2026-11-25T24:00:00Z", "time 24:00:00" },
	{ "2026-00-10T00:00:00Z", "month 0 is not 1 to 12" },
	{ "2026-13-10T00:00:00Z", "month 13" },
	{ "2026-11-31T00:00:00Z", "day 31 is not in November 2026" },
	{ "2023-02-29T00:00:00Z", "day 29 is not in February 2023" },
	{ "1900-02-29T00:00:00Z", "day 29 is not in February 1900" },
	{ "2262-04-11T23:47:16.854775808Z", "outside the years 1677 to 2262" },
	{ "1677-09-21T00:12:43.145224191Z", "outside the years" },
	{ "9999-12-31T23:59:59Z", "outside the years" },
	{ "-2026-11-25T17:03:00Z", "'-2026-11-25T17:03:00Z'" },
};

static void test_rfc3339_accepts(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(rfc3339_ok); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_rfc3339(rfc3339_ok[i].s, &ns);
		check_ok(rc, rfc3339_ok[i].s, ns, rfc3339_ok[i].want);
	}
}

static void test_rfc3339_rejects(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(rfc3339_bad); i++) {
		int64_t ns = UNTOUCHED;
		int rc = ratectl_parse_rfc3339(rfc3339_bad[i].s, &ns);
		check_bad(rc, rfc3339_bad[i].s, rfc3339_bad[i].frag, ns);
	}
}

/*
 * Every day from 1600 to 2400 through both date parsers, against a day
 * count kept by stepping the calendar by hand: catches any error in the
 * days-from-civil arithmetic, leap years included.
 */
static void test_calendar_walk(void **state)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	                             30, 31 };
	static const char *const mon[12] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	int64_t day = -11670912000 / 86400 - 31 - 29; /* 1600-01-01 */

	(void)state;
	for (int y = 1600; y < 2400; y++) {
		int leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
		for (int m = 1; m <= 12; m++) {
			int n = dim[m - 1] + (m == 2 && leap);
			for (int d = 1; d <= n; d++, day++) {
				char buf[64];
				int64_t got = UNTOUCHED;
				int64_t unix_s = day * 86400 + 3723;
				snprintf(buf, sizeof buf, "Mon, %02d %s %04d 01:02:03 GMT",
				         d, mon[m - 1], y);
				/* Only where int64 nanoseconds reach. */
				if (y < 1678 || y > 2261)
					continue;
				assert_int_equal(ratectl_parse_retry_after(buf,
				                 (unix_s - 1) * S, &got), 0);
				assert_true(got == S);
				snprintf(buf, sizeof buf, "%04d-%02d-%02dT01:02:03Z",
				         y, m, d);
				assert_int_equal(ratectl_parse_rfc3339(buf, &got), 0);
				assert_true(got == unix_s * S);
			}
			/* The day after the last is refused. */
			char bad[64];
			int64_t out = UNTOUCHED;
			snprintf(bad, sizeof bad, "%04d-%02d-%02dT00:00:00Z", y, m,
			         n + 1);
			check_bad(ratectl_parse_rfc3339(bad, &out), bad, "is not in",
			          out);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_accepts),
		cmocka_unit_test(test_duration_rejects),
		cmocka_unit_test(test_duration_overflow),
		cmocka_unit_test(test_success_clears_message),
		cmocka_unit_test(test_message_is_bounded),
		cmocka_unit_test(test_rate_accepts),
		cmocka_unit_test(test_rate_rejects),
		cmocka_unit_test(test_go_accepts),
		cmocka_unit_test(test_go_rejects),
		cmocka_unit_test(test_retry_after_accepts),
		cmocka_unit_test(test_retry_after_rejects),
		cmocka_unit_test(test_retry_after_extreme_now),
		cmocka_unit_test(test_rfc3339_accepts),
		cmocka_unit_test(test_rfc3339_rejects),
		cmocka_unit_test(test_calendar_walk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
