/*
 * metrics.c - `ratectl metrics`: every budget's counters and gauges in the
 * Prometheus text exposition format (version 0.0.4), for a node exporter
 * textfile collector or a small HTTP wrapper.
 *
 * The format wants all samples of one metric family together, after its
 * HELP and TYPE lines, so the budgets are read once into a snapshot and
 * the output is written family by family.  Units are in the names
 * (_seconds, _total) as the Prometheus naming guide asks.  Label values
 * need no escaping: budget names are [A-Za-z0-9._-] (ratectl_name_check).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

#define NS_PER_S 1e9

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
	double (*value)(const ratectl_budget_info *in, unsigned i);
};

#define COUNTER(field) \
	static double v_##field(const ratectl_budget_info *in, unsigned i) \
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

static double v_wait(const ratectl_budget_info *in, unsigned i)
{
	(void)i;
	return (double)in->counters.wait_ns / NS_PER_S;
}

static double v_inflight(const ratectl_budget_info *in, unsigned i)
{
	(void)i;
	return in->inflight;
}

static double v_dead(const ratectl_budget_info *in, unsigned i)
{
	(void)i;
	return in->dead;
}

static double v_max(const ratectl_budget_info *in, unsigned i)
{
	(void)i;
	return in->config.max_inflight;
}

static double v_cooldown(const ratectl_budget_info *in, unsigned i)
{
	(void)i;
	return secs(in->cooldown_ns);
}

static double v_per_second(const ratectl_budget_info *in, unsigned i)
{
	return (double)in->state[i].limit.count / secs(in->state[i].limit.period_ns);
}

static double v_burst(const ratectl_budget_info *in, unsigned i)
{
	return (double)in->state[i].limit.burst;
}

static double v_available(const ratectl_budget_info *in, unsigned i)
{
	return (double)in->state[i].available;
}

static double v_full(const ratectl_budget_info *in, unsigned i)
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

/* %.15g: integers print as integers up to 10^15, fractions without the
 * noise of the last binary digits, and both parse back in Prometheus. */
static void sample(const struct family *f, const ratectl_budget_info *in, unsigned i)
{
	const ratectl_limit *l = &in->state[i].limit;

	if (f->per_limit)
		printf("%s{budget=\"%s\",dimension=\"%s\",period_seconds=\"%.9g\"} %.15g\n",
		       f->name, in->name, fmt_dim(l->dim), secs(l->period_ns),
		       f->value(in, i));
	else
		printf("%s{budget=\"%s\"} %.15g\n", f->name, in->name, f->value(in, 0));
}

static void shared_exposition(const ratectl_budget_info *v,
                              ratectl_shared_state *const *sh, size_t n)
{
	size_t f, b;
	unsigned d;
	int any = 0;

	for (b = 0; b < n && !any; b++)
		any = sh[b] != NULL;
	for (f = 0; any && f < sizeof sfamilies / sizeof sfamilies[0]; f++) {
		const struct sfamily *sf = &sfamilies[f];

		printf("# HELP %s %s\n# TYPE %s %s\n", sf->name, sf->help, sf->name,
		       sf->type);
		for (b = 0; b < n; b++) {
			if (!sh[b])
				continue;
			if (!sf->per_dim)
				printf("%s{budget=\"%s\"} %.15g\n", sf->name, v[b].name,
				       sf->value(sh[b], 0));
			for (d = 0; sf->per_dim && d < 2; d++)
				printf("%s{budget=\"%s\",dimension=\"%s\"} %.15g\n", sf->name,
				       v[b].name, fmt_dim((ratectl_dim)d), sf->value(sh[b], d));
		}
	}
}

static void exposition(const ratectl_budget_info *v, ratectl_shared_state *const *sh,
                       size_t n)
{
	size_t f, b;
	unsigned i;

	for (f = 0; f < sizeof families / sizeof families[0]; f++) {
		printf("# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
		       families[f].name, families[f].type);
		for (b = 0; b < n; b++) {
			if (!families[f].per_limit)
				sample(&families[f], &v[b], 0);
			for (i = 0; families[f].per_limit && i < v[b].config.nlimits; i++)
				sample(&families[f], &v[b], i);
		}
	}
	shared_exposition(v, sh, n);
}

int cmd_metrics(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	ratectl_shared_state **sh;
	ratectl_budget_info *v;
	size_t n;
	int o, json = 0, rc;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h')
			return cli_help(c);
		if (o != 'j')
			return cli_badopt(c, o, argv);
		json = 1;
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_snapshot(c, &v, &n)) != 0)
		return rc;
	if ((rc = cli_shared(c, v, n, &sh)) != 0) {
		free(v);
		return cli_fail(c, rc, "cannot read how the budgets are shared");
	}
	if (json)
		rc = json_print(c, json_list(c, v, sh, n));
	else
		exposition(v, sh, n);
	cli_shared_free(sh, n);
	free(v);
	return rc;
}
