/*
 * cli.h - what the files of the `ratectl` command share: the command
 * table's types, messages and exit codes, option parsing, human units,
 * aligned tables and the JSON form of a budget.
 *
 * One file per command group, as libgit2's src/cli/ does:
 *   main.c     global options, the command table, help
 *   util.c     messages, opening the ledger, options, snapshots
 *   fmt.c      human units ("12.5k", "1.2s", "500 per min") and tables
 *   json.c     the JSON schema (version 1) shared by list, show, metrics
 *   budget.c   apply, set, delete, reset, cooldown
 *   show.c     list, show
 *   check.c    check (and --repair), reclaim, sweep
 *   watch.c    watch
 *   metrics.c  metrics (Prometheus text, or JSON)
 *   serve.c    metrics --listen: the exporter over HTTP
 *   run.c      run
 *   keyid.c    key-id
 *   cache.c    cache stats, cache clear; the cache of show and metrics
 */
#ifndef RATECTL_CLI_H
#define RATECTL_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "conf.h"
#include "ratectl.h"
#include "ratectl_http.h"

/* Exit codes, documented in ratectl(1). */
enum {
	CLI_OK = 0,
	CLI_ERROR = 1,
	CLI_USAGE = 2,
	CLI_TEMPFAIL = 75       /* EX_TEMPFAIL: the budget could not be had in time */
};

/* Version of the --json schema; bumped on an incompatible change. */
#define CLI_JSON_VERSION 1

typedef struct cli_cmd cli_cmd;

typedef struct cli {
	const char *ledger;        /* --ledger, or NULL: ratectl_default_dir() */
	const char *config;        /* --config, or NULL: rh__conf_default_path() */
	const cli_cmd *cmd;        /* the running command */
	ratectl *h;                /* opened by cli_open(), closed by main */
} cli;

struct cli_cmd {
	const char *name;
	int (*fn)(cli *c, int argc, char **argv);
	const char *summary;       /* one line for `ratectl --help` */
	const char *help;          /* usage and options for `COMMAND --help` */
};

/* ---- util.c: messages, ledger, options --------------------------------- */

/* "ratectl: COMMAND: message" on stderr. */
void cli_err(const cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Report library failure rc of `what` with ratectl_errmsg()'s detail;
 * returns the exit code (CLI_TEMPFAIL for RATECTL_ETIMEDOUT, else 1). */
int cli_fail(const cli *c, int rc, const char *what);
/* "out of memory" on stderr; returns CLI_ERROR. */
int cli_oom(const cli *c);
/* Print the command's usage line to stderr; returns CLI_USAGE. */
int cli_usage(const cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print the command's help to stdout; returns CLI_OK. */
int cli_help(const cli *c);

/*
 * getopt_long over a command's arguments, argv[0] being the command name.
 * Adds --help (returns 'h').  permute = 0 stops at the first operand.
 * Returns like getopt_long, and ':' for a missing value; give those and
 * '?' to cli_badopt(), which reports them as a usage error.
 */
int cli_getopt(int argc, char **argv, const struct option *opts, int permute);
int cli_badopt(const cli *c, int o, char **argv);

/* Open c->h on the ledger (c->ledger or the default); 0 or an exit code. */
int cli_open(cli *c);
/* Open c->h on dir, silently: 0 or the library's code. */
int cli_open_dir(cli *c, const char *dir);
/* The ledger directory that cli_open() would use, into buf. */
int cli_ledger_dir(const cli *c, char *buf, size_t len);

/* Every budget, from one snapshot, in name order; free with free().
 * Opens the ledger; a failure is reported and returned as an exit code. */
int cli_snapshot(cli *c, ratectl_budget_info **out, size_t *n);
/* The same on an open ledger, silently: 0 or the library's code. */
int cli_budgets(cli *c, ratectl_budget_info **out, size_t *n);
/* The leases of budget name (recorded, alive or dead); free with free(). */
int cli_leases(cli *c, const char *name, ratectl_lease_info **out, size_t *n);

/*
 * How each budget of v (from cli_budgets()) is shared: out[i] is NULL
 * when v[i] is not shared (or was deleted since the snapshot), else its
 * ratectl_budget_shared_state().  Free with cli_shared_free().  Silent:
 * 0 or the library's code (a damaged sharing record is an error, never
 * shown as "not shared").
 */
int cli_shared(cli *c, const ratectl_budget_info *v, size_t n,
               ratectl_shared_state ***out);
void cli_shared_free(ratectl_shared_state **s, size_t n);
/* The same for rows (cli_row, below). */
typedef struct cli_row cli_row;
int cli_shared_rows(cli *c, const cli_row *const *v, size_t n,
                    ratectl_shared_state ***out);

/*
 * Budget name filters: shell patterns (fnmatch(3): * ? [...]) given as
 * operands, `ratectl list 'user-*'`.  No pattern matches every budget.
 */
typedef struct cli_filter {
	char **pats;
	int n;
} cli_filter;

/* Take argv's n operands as patterns: 0, or a usage error (an empty
 * pattern, a character no name has) as an exit code. */
int cli_filter_init(const cli *c, cli_filter *f, char **pats, int n);
int cli_filter_match(const cli_filter *f, const char *name);
/* 1 when f is one plain name, without a glob character. */
int cli_filter_literal(const cli_filter *f);
/* "'a', 'b' or 'c'" on out, for messages. */
void cli_filter_say(const cli_filter *f, FILE *out);
/*
 * ratectl_budget_foreach() on the open ledger over the budgets f matches:
 * one snapshot, in name order, nothing copied, so that 100,000 budgets
 * stream in constant memory.  fn must not call into the library (it runs
 * inside the snapshot's read transaction).  *matched (may be NULL): how
 * many fn was called for.  Returns like ratectl_budget_foreach().
 */
int cli_foreach(cli *c, const cli_filter *f,
                int (*fn)(const ratectl_budget_info *in, void *ctx), void *ctx,
                size_t *matched);

/*
 * A compact copy of a ratectl_budget_info: only the limits it has, so that
 * 100,000 budgets read in one snapshot take ~30 MB, not ~90.  Rows live in
 * a cli_rows arena; cli_row_info() expands one back (config.limits[i] is
 * then state[i].limit, burst filled in).
 */
struct cli_row {
	char name[RATECTL_NAME_MAX + 1];
	char origin[RATECTL_NAME_MAX + 1];
	uint32_t nlimits, max_inflight, inflight, dead;
	unsigned batch_share, weight;
	int64_t jitter_ns, expire_ns, cooldown_ns, idle_ns;
	ratectl_counters counters;
	ratectl_limit_state state[];   /* nlimits of them */
};

typedef struct cli_rows {
	char *buf;                 /* the rows, each 8-byte aligned */
	size_t used, size;
	size_t *off;               /* row i at buf + off[i] */
	size_t n, cap;
} cli_rows;

/* Append a copy of in: 0 or -ENOMEM.  Safe inside a foreach callback. */
int cli_rows_add(cli_rows *r, const ratectl_budget_info *in);
const cli_row *cli_rows_at(const cli_rows *r, size_t i);
void cli_rows_free(cli_rows *r);
/* The row's size in bytes, and copies between rows and infos. */
size_t cli_row_size(uint32_t nlimits);
void cli_row_fill(cli_row *out, const ratectl_budget_info *in);
void cli_row_info(const cli_row *r, ratectl_budget_info *out);

/* Strict whole numbers for options: 0 or -1 (reported as usage). */
int cli_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* ---- fmt.c: human units and tables ---------------------------------------- */

#define FMT_LEN 64
#define FMT_LONG 320   /* room for several FMT_LEN pieces */

const char *fmt_count(char buf[FMT_LEN], uint64_t v);     /* 950, 12.5k, 2M */
const char *fmt_bytes(char buf[FMT_LEN], uint64_t v);     /* 950B, 12.5K, 64M */
const char *fmt_dur(char buf[FMT_LEN], int64_t ns);       /* 250ms, 1.2s, 2m05s */
const char *fmt_period(char buf[FMT_LEN], int64_t ns);    /* s, min, h, day, 10s */
const char *fmt_dim(ratectl_dim dim);                     /* requests, tokens */
/* "500 per min", and " burst 84" when the burst is not the count. */
const char *fmt_limit(char buf[FMT_LONG], const ratectl_limit *l);
/* "498/500 per min" (or "48/50 of 500 per min" when burst != count). */
const char *fmt_avail(char buf[FMT_LONG], const ratectl_limit_state *s);
/* A wall-clock time (ns since the epoch) in RFC 3339, UTC, to the second:
 * "2026-11-30T04:10:02Z". */
const char *fmt_utc(char buf[FMT_LEN], int64_t ns);
/* The wall clock now, ns since the epoch (what degraded_since counts in). */
int64_t fmt_wall_now(void);

/*
 * An aligned table: cells are added left to right, row by row, and
 * printed with each column as wide as its widest cell.  If the table or
 * any cell could not be allocated, table_print() prints nothing and
 * returns -ENOMEM (else 0): a partial table would misplace figures.
 */
typedef struct table table;
table *table_new(unsigned ncols);
void table_cell(table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int table_print(const table *t, FILE *f, const char *indent);
/* The same with only the columns whose bit is set in mask (bit 0: the
 * first): columns that would say nothing for every row can be left out
 * once every row is in. */
int table_print_cols(const table *t, FILE *f, const char *indent, unsigned mask);
void table_free(table *t);

/* ---- json.c --------------------------------------------------------------- */

/* A budget's tags (ratectl_tags()): the counted ones and the rest. */
typedef struct cli_tags {
	ratectl_tag_info top[RATECTL_TAGS_TOP];
	size_t n;
	ratectl_tag_info rest;
} cli_tags;

/* Budget name's tags into *t: 0 or the library's code. */
int cli_tags_get(cli *c, const char *name, cli_tags *t);

/* The JSON object of one budget; shared NULL when it is not shared
 * ("shared": null), leases NULL when not wanted (no "leases"), tags NULL
 * when not wanted (no "tags" nor "tags_other"). */
json_t *json_budget(const ratectl_budget_info *in, const ratectl_shared_state *shared,
                    const ratectl_lease_info *leases, size_t nleases,
                    const cli_tags *tags);
/* {"version": 1, "ledger": PATH} to which a command adds its data. */
json_t *json_envelope(const cli *c);
/*
 * The envelope written as it is built, for lists of any length:
 * begin, then for each list json_stream_list(key) and its items (each
 * stolen), then end.  Each returns 0 or -1 (json_stream_fail() reports it
 * and gives the exit code).
 */
typedef struct json_stream {
	const cli *c;
	size_t items;
	unsigned lists;
} json_stream;
int json_stream_begin(const cli *c, json_stream *js);
int json_stream_list(json_stream *js, const char *key);
int json_stream_item(json_stream *js, json_t *item);
int json_stream_end(json_stream *js);
int json_stream_fail(const json_stream *js);
/* Print j (stolen) to stdout; 0 or an exit code. */
int json_print(const cli *c, json_t *j);

/* ---- commands --------------------------------------------------------- */

int cmd_apply(cli *c, int argc, char **argv);
int cmd_set(cli *c, int argc, char **argv);
int cmd_delete(cli *c, int argc, char **argv);
int cmd_reset(cli *c, int argc, char **argv);
int cmd_cooldown(cli *c, int argc, char **argv);
int cmd_list(cli *c, int argc, char **argv);
int cmd_show(cli *c, int argc, char **argv);
int cmd_check(cli *c, int argc, char **argv);
int cmd_reclaim(cli *c, int argc, char **argv);
int cmd_sweep(cli *c, int argc, char **argv);
int cmd_watch(cli *c, int argc, char **argv);
int cmd_metrics(cli *c, int argc, char **argv);
int cmd_run(cli *c, int argc, char **argv);
int cmd_key_id(cli *c, int argc, char **argv);
int cmd_cache(cli *c, int argc, char **argv);

/* metrics.c: what `metrics` prints, for the exporter (serve.c). */
typedef struct metrics_query {
	cli_filter filter;         /* the budgets asked for */
	size_t top;                /* budgets of each template printed in full */
	int all;                   /* every budget in full, none summed */
} metrics_query;
/*
 * The Prometheus text exposition of q, from one snapshot of the open
 * ledger c->h, to out.  0, or the library's code (-ENOMEM included) with
 * *what saying what could not be read.  Write errors are out's.  A
 * response cache that cannot be read leaves its families out, with a
 * comment line in out saying why, and why in note[0..notelen) ("" when
 * it was read), for the caller to say too.
 */
int metrics_text(cli *c, const metrics_query *q, FILE *out, const char **what,
                 char *note, size_t notelen);
/* serve.c: serve q at ADDR:PORT until SIGTERM or SIGINT; an exit code. */
int metrics_serve(cli *c, const metrics_query *q, const char *addr);

/* ---- cache.c: the host-wide response cache (ratectl_http.h) ----------------- */

/*
 * The response caches beside the open ledger c->h (DIR/cache/): every
 * budget's (budget NULL) or budget's only, into *out (free with free()),
 * *n of them, in name order (strcmp).  *n = 0 when there is none (the
 * cache is never created by reading it).  Silent: 0, or the library's code
 * (RATECTL_ECORRUPT: damaged) for cli_cache_why().
 */
int cli_caches(cli *c, const char *budget, ratectl_http_cache_stats **out, size_t *n);
/* The cache of budget name in v[0..n) from cli_caches(), or NULL. */
const ratectl_http_cache_stats *cli_cache_find(const ratectl_http_cache_stats *v,
                                               size_t n, const char *name);
/* What a failure rc of the cache calls means, naming DIR/cache, into buf
 * (what show and metrics say before printing the rest); buf. */
const char *cli_cache_why(const cli *c, int rc, char *buf, size_t len);
/* The "response cache:" block of `show NAME`, and the JSON object of a
 * cache (show, metrics and cache stats --json). */
void show_cache(const ratectl_http_cache_stats *s);
json_t *json_cache(const ratectl_http_cache_stats *s);

/* show.c: the one-line summary used by list and watch. */
void show_limits_cell(char *buf, size_t len, const ratectl_budget_info *in,
                      ratectl_dim dim);
void show_inflight_cell(char *buf, size_t len, const ratectl_budget_info *in);
/* The five summary columns (budget, requests, tokens, in flight, cooldown). */
void show_summary_header(table *t);
void show_summary_row(table *t, const ratectl_budget_info *in);
/* The SHARED cell of list and watch: "-", "3 hosts" or "DEGRADED 3m12s". */
void show_shared_cell(char *buf, size_t len, const ratectl_shared_state *s);
/* s->share.url with any user information ("user:pass@") blanked out: the
 * library refuses a URL that carries a password, but what is printed must
 * not depend on every writer of the ledger having been this build. */
const char *show_url(char buf[RATECTL_SHARE_URL_MAX + 1], const ratectl_share *s);

#endif
