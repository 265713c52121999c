/*
 * fuzz_parse.c - libFuzzer target for every parser of lib/parse.c.
 *
 * Each input goes to all five parsers (a header value may reach any of
 * them), and the results are checked against the contract, not just run:
 * a failure is RATECTL_EPARSE with a message, a success has no message,
 * and durations are never negative.  ASan catches any read past the
 * terminating NUL, since the copy is allocated to the exact length.
 */
// fuzz-sources: lib/parse.c lib/error.c
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratectl.h"

/* Abort (a crash libFuzzer records) when rc breaks the contract. */
static void check(int rc)
{
	const char *msg = ratectl_errmsg();

	if (rc == 0 ? msg[0] != '\0' : rc != RATECTL_EPARSE || msg[0] == '\0')
		abort();
	if (strlen(msg) >= 512)
		abort();
}

static void check_duration(int rc, int64_t ns)
{
	check(rc);
	if (rc == 0 && ns < 0)
		abort();
}

/* "now" values for Retry-After: a realistic one and both extremes. */
static const int64_t nows[] = {
	INT64_C(1764090000000000000), 0, INT64_MIN, INT64_MAX
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	uint64_t count;
	int64_t ns;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	ns = -1;
	check_duration(ratectl_parse_duration(s, &ns), ns);
	ns = -1;
	check_duration(ratectl_parse_go_duration(s, &ns), ns);
	ns = -1;
	int rc = ratectl_parse_rate(s, &count, &ns);
	check_duration(rc, ns);
	if (rc == 0 && (count == 0 || ns == 0))
		abort();
	for (size_t i = 0; i < sizeof nows / sizeof *nows; i++) {
		ns = -1;
		check_duration(ratectl_parse_retry_after(s, nows[i], &ns), ns);
	}
	check(ratectl_parse_rfc3339(s, &ns));
	free(s);
	return 0;
}
