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
#include <stdlib.h>

#include "cli.h"

/* The few fractions of the schema (a cache's hit_ratio) to 6 significant
 * digits: 0.4, not jansson's 0.40000000000000002. */
#define JSON_REAL JSON_REAL_PRECISION(6)

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
		a = append(a, json_pack("{s:I, s:I, s:b, s:I, s:o, s:I}",
		                        "slot", (json_int_t)l[i].slot,
		                        "pid", (json_int_t)l[i].pid,
		                        "alive", l[i].alive,
		                        "age_ns", (json_int_t)l[i].age_ns,
		                        "tokens", jint(l[i].tokens),
		                        "count", (json_int_t)l[i].count));
	return a;
}

/* A string, or null when empty: "" would read as a value that is set. */
static json_t *jstr_or_null(const char *v)
{
	return v[0] ? json_string(v) : json_null();
}

static json_t *json_tag(const ratectl_tag_info *t, int with_name)
{
	if (!with_name)
		return json_pack("{s:o, s:o}", "requests", jint(t->requests),
		                 "tokens", jint(t->tokens));
	return json_pack("{s:s, s:o, s:o, s:o}", "tag", t->tag,
	                 "requests", jint(t->requests), "tokens", jint(t->tokens),
	                 "error", jint(t->error));
}

/* "tags": the counted tags, most requests first; "tags_other": untagged
 * requests and tags no longer counted, together. */
static int json_tags(json_t *b, const cli_tags *t)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < t->n; i++)
		a = append(a, json_tag(&t->top[i], 1));
	if (json_object_set_new(b, "tags", a) != 0 ||
	    json_object_set_new(b, "tags_other", json_tag(&t->rest, 0)) != 0)
		return -1;
	return 0;
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
                    const ratectl_lease_info *leases, size_t nleases,
                    const cli_tags *tags)
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
	/* Issue 14's fields: a template's budget says which one made it;
	 * idle null when never admitted, as last_sync_age_ms is. */
	if (b && (json_object_set_new(b, "expire_ns",
	                              json_integer(in->config.expire_ns)) != 0 ||
	          json_object_set_new(b, "weight",
	                              json_integer(in->config.weight)) != 0 ||
	          json_object_set_new(b, "origin", jstr_or_null(in->config.origin)) != 0 ||
	          json_object_set_new(b, "idle_ns", in->idle_ns >= 0 ?
	                              json_integer(in->idle_ns) : json_null()) != 0)) {
		json_decref(b);
		return NULL;
	}
	if (b && leases && json_object_set_new(b, "leases",
	                                       json_leases(leases, nleases)) != 0) {
		json_decref(b);
		return NULL;
	}
	if (b && tags && json_tags(b, tags) != 0) {
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

/*
 * A document too large to build in memory (100,000 budgets) is written a
 * piece at a time: the envelope's head, each item as it is built (then
 * freed) on a line of its own, the tail.  A failure midway leaves the
 * document unfinished, which no JSON reader takes for a whole one, and
 * the command exits 1.
 */
static int put_item(json_t *j, const char *indent)
{
	/* One line an item: half the bytes of an indented one, and each
	 * budget one line for grep. */
	char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_REAL);

	if (!s)
		return -1;
	fputs(indent, stdout);
	fputs(s, stdout);
	free(s);
	return ferror(stdout) ? -1 : 0;
}

int json_stream_begin(const cli *c, json_stream *js)
{
	json_t *path = json_string(c->h ? ratectl_path(c->h) : "");
	int rc;

	js->c = c;
	js->items = 0;
	js->lists = 0;
	if (!path)
		return -1;
	printf("{\n  \"version\": %d,\n  \"ledger\": ", CLI_JSON_VERSION);
	rc = put_item(path, "");
	json_decref(path);
	return rc;
}

int json_stream_list(json_stream *js, const char *key)
{
	if (js->lists++)
		fputs(js->items ? "\n  ]" : "]", stdout);
	printf(",\n  \"%s\": [", key);
	js->items = 0;
	return ferror(stdout) ? -1 : 0;
}

int json_stream_item(json_stream *js, json_t *item)
{
	int rc;

	if (!item)
		return -1;
	fputs(js->items++ ? ",\n" : "\n", stdout);
	rc = put_item(item, "    ");
	json_decref(item);
	return rc;
}

int json_stream_end(json_stream *js)
{
	if (js->lists)
		fputs(js->items ? "\n  ]" : "]", stdout);
	printf("\n}\n");
	return ferror(stdout) ? -1 : 0;
}

int json_stream_fail(const json_stream *js)
{
	cli_err(js->c, "cannot build or write the JSON output");
	return CLI_ERROR;
}

int json_print(const cli *c, json_t *j)
{
	int rc;

	if (!j) {
		cli_err(c, "cannot build the JSON output (out of memory)");
		return CLI_ERROR;
	}
	rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL);
	json_decref(j);
	if (rc != 0 || fputc('\n', stdout) == EOF) {
		cli_err(c, "cannot write the JSON output");
		return CLI_ERROR;
	}
	return CLI_OK;
}
