/*
 * shim_peek - print one budget of a ledger as key=value lines, for the
 * shell tests of the preload shim (which cannot look into the ledger
 * otherwise without the ratectl command).
 *
 * usage: shim_peek LEDGER-DIR BUDGET
 * Prints admitted refused waited wait_ms tokens_estimated tokens_actual
 * tokens_reconciled retries inflight cooldown_ms, for the first limit of
 * each dimension requests_avail / tokens_avail and its count, and for
 * every limit <dim>_avail_<period in seconds>s (tokens_avail_86400s).
 * Exit 1 when the ledger or the budget cannot be read.
 */
#include <stdio.h>

#include "ratectl.h"

static void limits(const ratectl_budget_info *b)
{
	int seen[2] = { 0, 0 };
	unsigned i;

	for (i = 0; i < b->config.nlimits; i++) {
		const ratectl_limit_state *s = &b->state[i];
		const char *d = s->limit.dim == RATECTL_TOKENS ? "tokens" : "requests";

		printf("%s_avail_%llds=%llu\n", d,
		       (long long)(s->limit.period_ns / 1000000000),
		       (unsigned long long)s->available);
		if (seen[s->limit.dim]++)
			continue;
		printf("%s_avail=%llu\n%s_count=%llu\n%s_burst=%llu\n", d,
		       (unsigned long long)s->available, d,
		       (unsigned long long)s->limit.count, d,
		       (unsigned long long)s->limit.burst);
	}
}

int main(int argc, char **argv)
{
	ratectl_budget_info b;
	const ratectl_counters *c = &b.counters;
	ratectl *h;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: shim_peek LEDGER-DIR BUDGET\n");
		return 2;
	}
	if ((rc = ratectl_open(&h, argv[1], NULL)) != 0 ||
	    (rc = ratectl_budget_get(h, argv[2], &b)) != 0) {
		fprintf(stderr, "shim_peek: %s\n", *ratectl_errmsg() ?
		        ratectl_errmsg() : ratectl_strerror(rc));
		return 1;
	}
	printf("admitted=%llu\nrefused=%llu\nwaited=%llu\nwait_ms=%llu\n"
	       "tokens_estimated=%llu\ntokens_actual=%llu\ntokens_reconciled=%llu\n"
	       "retries=%llu\ninflight=%u\ncooldown_ms=%lld\n",
	       (unsigned long long)c->admitted, (unsigned long long)c->refused,
	       (unsigned long long)c->waited,
	       (unsigned long long)(c->wait_ns / 1000000),
	       (unsigned long long)c->tokens_estimated,
	       (unsigned long long)c->tokens_actual,
	       (unsigned long long)c->tokens_reconciled,
	       (unsigned long long)c->retries, b.inflight,
	       (long long)(b.cooldown_ns / 1000000));
	limits(&b);
	ratectl_close(h);
	return 0;
}
