/*
 * json.c - the --json output of list, show and metrics (schema version 1,
 * documented in ratectl(1)), built with jansson.
 *
 * Times are integer nanoseconds ("_ns" fields) so that nothing is lost to
 * floating point; counts are integers.  jansson's integers are signed 64
 * bits: counters beyond 2^63 (never reached in practice) are clamped.
 *
 * Every builder returns NULL if any part of it could not be built: a
 * document with a budget, limit or lease silently missing would be read
 * as the truth.  json_print() reports the NULL.
 */
#include <stdio.h>

#include "cli.h"

static json_t *jint(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *json_limit(const ratectl_limit_state *s)
{
	return json_pack("{s:s, s:o, s:I, s:o, s:o, s:I}",
	                 "dimension", fmt_dim(s->limit.dim),
	                 "count", jint(s->limit.count),
	                 "period_ns", (json_int_t)s->limit.period_ns,
	                 "burst", jint(s->limit.burst),
	                 "available", jint(s->available),
	                 "until_full_ns", (json_int_t)s->until_full_ns);
}

static json_t *json_counters(const ratectl_counters *k)
{
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	                 "admitted", jint(k->admitted),
	                 "refused", jint(k->refused),
	                 "waited", jint(k->waited),
	                 "wait_ns", jint(k->wait_ns),
	                 "tokens_estimated", jint(k->tokens_estimated),
	                 "tokens_actual", jint(k->tokens_actual),
	                 "tokens_reconciled", jint(k->tokens_reconciled),
	                 "reclaimed", jint(k->reclaimed),
	                 "retries", jint(k->retries));
}

/* Append v (stolen; NULL when it could not be built) to array a: a, or
 * NULL with both freed (jansson frees v when the append fails). */
static json_t *append(json_t *a, json_t *v)
{
	if (!a) {
		json_decref(v);
		return NULL;
	}
	if (json_array_append_new(a, v) != 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

static json_t *json_leases(const ratectl_lease_info *l, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		a = append(a, json_pack("{s:I, s:I, s:b, s:I, s:o}",
		                        "slot", (json_int_t)l[i].slot,
		                        "pid", (json_int_t)l[i].pid,
		                        "alive", l[i].alive,
		                        "age_ns", (json_int_t)l[i].age_ns,
		                        "tokens", jint(l[i].tokens)));
	return a;
}

/* A string, or null when empty: "" would read as a value that is set. */
static json_t *jstr_or_null(const char *v)
{
	return v[0] ? json_string(v) : json_null();
}

/*
 * "shared": how the budget is shared and what this host knows of Redis.
 * Names as ratectl(1) documents them, some not following the rest of the
 * schema on purpose: degraded_since is an RFC 3339 time (a moment to read
 * and to compare across hosts, not a duration), and the age of the last
 * sync is in ms, its field named so.  The password itself is never in the
 * ledger; where it comes from (a file, a variable's name) is.
 */
static json_t *json_shared(const ratectl_shared_state *s)
{
	char url[RATECTL_SHARE_URL_MAX + 1], since[FMT_LEN];

	return json_pack("{s:s, s:I, s:s, s:o, s:o, s:b, s:o, s:{s:I, s:I}, s:o, "
	                 "s:o, s:o, s:b, s:b, s:o}",
	                 "url", show_url(url, &s->share),
	                 "hosts", (json_int_t)s->share.hosts,
	                 "on_redis_error", (s->share.flags & RATECTL_SHARE_OPEN) ?
	                                   "open" : "share",
	                 "password_file", jstr_or_null(s->share.password_file),
	                 "password_env", jstr_or_null(s->share.password_env),
	                 "degraded", s->degraded,
	                 "degraded_since", s->degraded && s->degraded_since ?
	                                   json_string(fmt_utc(since, s->degraded_since)) :
	                                   json_null(),
	                 "credit", "requests", (json_int_t)s->credit[RATECTL_REQUESTS],
	                           "tokens", (json_int_t)s->credit[RATECTL_TOKENS],
	                 "last_sync_age_ms", s->last_sync_age_ns >= 0 ?
	                                     json_integer(s->last_sync_age_ns / 1000000) :
	                                     json_null(),
	                 "syncs", jint(s->syncs),
	                 "redis_commands", jint(s->redis_commands),
	                 "restored", s->restored,
	                 "sig_differs", s->sig_differs,
	                 "last_error", jstr_or_null(s->last_error));
}

/* Field names follow ratectl.h's structs, so that the schema in
 * ratectl(1) and the header read alike. */
json_t *json_budget(const ratectl_budget_info *in, const ratectl_shared_state *shared,
                    const ratectl_lease_info *leases, size_t nleases)
{
	json_t *limits = json_array(), *b;
	unsigned i;

	for (i = 0; limits && i < in->config.nlimits; i++)
		limits = append(limits, json_limit(&in->state[i]));
	/* "o" with a NULL value fails the pack, which frees the others. */
	b = json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
	              "name", in->name,
	              "limits", limits,
	              "concurrency", (json_int_t)in->config.max_inflight,
	              "inflight", (json_int_t)in->inflight,
	              "dead", (json_int_t)in->dead,
	              "cooldown_ns", (json_int_t)in->cooldown_ns,
	              "jitter_ns", (json_int_t)in->config.jitter_ns,
	              "batch_share", (json_int_t)in->config.batch_share,
	              "counters", json_counters(&in->counters),
	              "shared", shared ? json_shared(shared) : json_null());
	if (b && leases && json_object_set_new(b, "leases",
	                                       json_leases(leases, nleases)) != 0) {
		json_decref(b);
		return NULL;
	}
	return b;
}

/* The ledger path is in every document: output collected from several
 * hosts or ledgers still says where it came from. */
json_t *json_envelope(const cli *c)
{
	return json_pack("{s:i, s:s}", "version", CLI_JSON_VERSION,
	                 "ledger", c->h ? ratectl_path(c->h) : "");
}

json_t *json_list(const cli *c, const ratectl_budget_info *v,
                  ratectl_shared_state *const *shared, size_t n)
{
	json_t *root = json_envelope(c), *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		a = append(a, json_budget(&v[i], shared ? shared[i] : NULL, NULL, 0));
	if (!root) {
		json_decref(a);
		return NULL;
	}
	if (json_object_set_new(root, "budgets", a) != 0) {     /* frees a */
		json_decref(root);
		return NULL;
	}
	return root;
}

int json_print(const cli *c, json_t *j)
{
	int rc;

	if (!j) {
		cli_err(c, "cannot build the JSON output (out of memory)");
		return CLI_ERROR;
	}
	rc = json_dumpf(j, stdout, JSON_INDENT(2));
	json_decref(j);
	if (rc != 0 || fputc('\n', stdout) == EOF) {
		cli_err(c, "cannot write the JSON output");
		return CLI_ERROR;
	}
	return CLI_OK;
}
