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
 *   check.c    check (and --repair), reclaim
 *   watch.c    watch
 *   metrics.c  metrics (Prometheus text, or JSON)
 *   run.c      run
 *   keyid.c    key-id
 */
#ifndef RATECTL_CLI_H
#define RATECTL_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "conf.h"
#include "ratectl.h"

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

/* Strict whole numbers for options: 0 or -1 (reported as usage). */
int cli_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* ---- fmt.c: human units and tables ---------------------------------------- */

#define FMT_LEN 64
#define FMT_LONG 320   /* room for several FMT_LEN pieces */

const char *fmt_count(char buf[FMT_LEN], uint64_t v);     /* 950, 12.5k, 2M */
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
void table_free(table *t);

/* ---- json.c --------------------------------------------------------------- */

/* The JSON object of one budget; shared NULL when it is not shared
 * ("shared": null), leases NULL when not wanted (no "leases"). */
json_t *json_budget(const ratectl_budget_info *in, const ratectl_shared_state *shared,
                    const ratectl_lease_info *leases, size_t nleases);
/* {"version": 1, "ledger": PATH} to which a command adds its data. */
json_t *json_envelope(const cli *c);
/* The envelope with "budgets": [one object per budget]; shared[i] as
 * from cli_shared(). */
json_t *json_list(const cli *c, const ratectl_budget_info *v,
                  ratectl_shared_state *const *shared, size_t n);
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
int cmd_watch(cli *c, int argc, char **argv);
int cmd_metrics(cli *c, int argc, char **argv);
int cmd_run(cli *c, int argc, char **argv);
int cmd_key_id(cli *c, int argc, char **argv);

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
