/*
 * msg.c - why a transfer is refused, in the words the program sees: its
 * error buffer (CURL_ERROR_SIZE bytes) and curl's "curl: (42) ..." line.
 * Pure (see rh.h).  Each says what failed, on which budget, with the
 * figures, and what to do.
 */
#include <stdio.h>

#include "rh.h"

#define NS_PER_S 1e9

char *rh__refusal_toobig(char *buf, size_t n, const char *budget,
                          const char *dim, uint64_t cost, uint64_t burst)
{
	snprintf(buf, n, "ratectl: budget '%s': this request needs %llu %s, "
	         "more than the burst of %llu: it can never be admitted; lower its "
	         "max_tokens or raise the burst", budget, (unsigned long long)cost,
	         dim, (unsigned long long)burst);
	return buf;
}

char *rh__refusal_timeout(char *buf, size_t n, const char *budget,
                           int64_t timeout_ns)
{
	snprintf(buf, n, "ratectl: budget '%s' was not available within %.3gs",
	         budget, (double)timeout_ns / NS_PER_S);
	return buf;
}

char *rh__refusal_closed(char *buf, size_t n, const char *budget,
                          const char *why)
{
	snprintf(buf, n, "ratectl: budget '%s': ledger unusable (%.120s); "
	         "on_error = closed", budget, why);
	return buf;
}

char *rh__refusal_retries(char *buf, size_t n, const char *budget,
                          unsigned percent)
{
	snprintf(buf, n, "ratectl: budget '%s': this retry would exceed the "
	         "host-wide retry budget (%u%% of requests): answered locally with "
	         "a 429 and x-should-retry: false", budget, percent);
	return buf;
}
