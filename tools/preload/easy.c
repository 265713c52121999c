/*
 * easy.c - curl_easy_perform(): admit, perform, learn, release, and, when
 * the budget allows retries, send a refused request again.
 *
 * libcurl's own curl_easy_perform() drives the transfer through the
 * exported multi functions; shim_in_easy makes those pass straight
 * through, so a transfer is counted once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shim.h"

#define BACKOFF_BASE_NS (500 * SHIM_NS_PER_MS)
#define BACKOFF_CAP_NS (30 * SHIM_NS_PER_S)

__thread int shim_in_easy;

static CURLcode pass(const struct shim_curl *a, CURL *e)
{
	CURLcode rc;

	shim_in_easy = 1;
	rc = a->easy_perform(e);
	shim_in_easy = 0;
	return rc;
}

/* The transfer fails without being sent; the error buffer says why. */
static CURLcode refuse(const struct xfer *x)
{
	if (x->errbuf)
		snprintf(x->errbuf, CURL_ERROR_SIZE, "%s", x->refusal);
	return CURLE_ABORTED_BY_CALLBACK;
}

static long status_of(const struct shim_curl *a, CURL *e)
{
	long code = 0;

	if (a->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
		return 0;
	return code;
}

/* A thread's own generator: the jitter needs spread, not quality. */
static uint64_t rnd(void)
{
	static __thread uint64_t s;

	if (!s)
		s = (uint64_t)shim_now() ^ ((uint64_t)(uintptr_t)&s << 16) ^
			0x9E3779B97F4A7C15ull;
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

/* Full jitter: uniform in [0, min(cap, base * 2^attempt)).  The cooldown
 * the provider asked for is enforced by the next admission on top. */
static void backoff(unsigned attempt)
{
	int64_t span = BACKOFF_BASE_NS << (attempt < 6 ? attempt : 6);
	int64_t ns = (int64_t)(rnd() % (uint64_t)(span < BACKOFF_CAP_NS ? span : BACKOFF_CAP_NS));
	struct timespec ts = { ns / SHIM_NS_PER_S, ns % SHIM_NS_PER_S };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Only a request whose body is in memory (or absent) can be sent again. */
static int may_retry(const struct xfer *x, unsigned attempt)
{
	return attempt < x->pol.retries && x->body != SHIM_BODY_STREAM;
}

/* Did this attempt end in a refusal the program has not seen any of? */
static int refused_unseen(const struct xfer *x, long status, int tee)
{
	if (status != 429 && status != 503)
		return 0;
	return tee && (!x->tee->decided || x->tee->holding);
}

static CURLcode perform_matched(const struct shim_curl *a, struct xfer *x)
{
	unsigned attempt = 0;
	CURLcode rc;

	for (;;) {
		int adm = shim_admit(x, 1, NULL), hold, tee;
		long status;

		if (adm == SHIM_REFUSE)
			return refuse(x);
		hold = adm == SHIM_ADMITTED && may_retry(x, attempt);
		tee = adm == SHIM_ADMITTED && xfer_tee_begin(a, x, hold) == 0;
		rc = pass(a, x->e);
		status = status_of(a, x->e);
		if (adm == SHIM_ADMITTED) {
			shim_learn(a, x->e, x, status);
			shim_release(x, status);
		}
		if (hold && refused_unseen(x, status, tee) && shim_retry_take(x)) {
			xfer_tee_end(a, x);
			free(x->tee->held);
			x->tee->held = NULL;
			x->tee->nheld = 0;
			backoff(attempt++);
			continue;
		}
		if (tee)
			xfer_tee_replay(x);     /* a refusal held back in vain */
		xfer_tee_end(a, x);
		return rc;
	}
}

CURLcode curl_easy_perform(CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct shim_policy pol;
	struct xfer *x;

	if (!a) {
		shim_no_curl("curl_easy_perform");
		return CURLE_FAILED_INIT;
	}
	if (shim_in_easy)
		return a->easy_perform(e);
	x = xfer_get(e, 0);
	if (!shim_match(a, e, x, &pol) || (!x && !(x = xfer_get(e, 1))))
		return pass(a, e);
	x->pol = pol;
	x->estimate = shim_estimate(&pol, x);
	return perform_matched(a, x);
}
