/*
 * main.c - `ratectl [--ledger DIR] [--config FILE] COMMAND ...`: global
 * options, the command table, and the top-level help.
 *
 * Every command is a function int fn(cli *, argc, argv) with argv[0] its
 * own name, returning the process's exit code (see cli.h).  A command
 * opens the ledger itself (cli_open()) when it needs it, so that --help
 * and usage errors never create a ledger directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The table is the one place a command is named: usage, dispatch and
 * help all come from it.  Help texts are kept next to their command so
 * that an option cannot be added without its line of help. */
static const cli_cmd commands[] = {
	{ "apply", cmd_apply, "create or update budgets from a config file",
	  "usage: ratectl apply [FILE] [--prune] [--dry-run]\n"
	  "\n"
	  "Create or update every budget of FILE (default: --config, $RATECTL_CONFIG\n"
	  "or /etc/ratectl.conf) in the ledger, live, and print what changed.\n"
	  "\n"
	  "  --prune     also delete budgets that the file does not name (not those\n"
	  "              made from one of its templates)\n"
	  "  --dry-run   print what would change, change nothing\n"
	  "\n"
	  "A template section ([user-*]) is not a budget: apply creates none for it;\n"
	  "its budgets are made on first use and removed once idle.\n" },
	{ "list", cmd_list, "one line per budget: limits, available, in flight",
	  "usage: ratectl list [PATTERN...] [--json]\n"
	  "\n"
	  "One row per budget whose name matches a PATTERN (a shell pattern such as\n"
	  "'user-*'; none: every budget): each limit's available units now out of\n"
	  "its burst, in-flight slots out of the cap, any cooldown and the time\n"
	  "since its last admission; when some budget has them, its ORIGIN (the\n"
	  "template that made it), EXPIRE (removed once idle that long) and\n"
	  "WEIGHT (as a tenant); when a budget is shared through Redis, a SHARED\n"
	  "column: its hosts, or DEGRADED and for how long.\n"
	  "\n"
	  "  --json      JSON instead (schema in ratectl(1))\n" },
	{ "show", cmd_show, "limits, leases and counters of one budget",
	  "usage: ratectl show NAME|PATTERN... [--json]\n"
	  "\n"
	  "Each limit (rate, burst, available now, time until full), each process\n"
	  "holding in-flight slots (pid, alive or dead, slots, age of the oldest,\n"
	  "estimated tokens), the busiest tags (requests, tokens, how much a count\n"
	  "may be over) and the rest, the cooldown, origin, weight, expiry, idle\n"
	  "time and the counters since the budget was created; for a budget shared through\n"
	  "Redis, its URL, hosts and fallback, whether Redis answers (or DEGRADED\n"
	  "since when, and why), the credit this host holds and its syncs; for a\n"
	  "budget with a response cache (`ratectl cache`), its entries, hits,\n"
	  "misses and the rest.\n"
	  "\n"
	  "  --json      JSON instead (schema in ratectl(1))\n" },
	{ "set", cmd_set, "create or change one budget",
	  "usage: ratectl set NAME [--requests LIST] [--tokens LIST] [--concurrency N]\n"
	  "                        [--burst B] [--jitter DURATION] [--batch-share P]\n"
	  "                        [--shared URL --hosts N [--password-file PATH |\n"
	  "                         --password-env NAME] [--on-redis-error share|open]]\n"
	  "                        [--no-shared] [--expire DURATION] [--weight N]\n"
	  "                        [--origin PATTERN]\n"
	  "\n"
	  "Create budget NAME or change it, live.  Options take the values of the\n"
	  "config file's keys (ratectl.conf(5)).  On an existing budget, what is not\n"
	  "given is kept: --requests replaces every requests limit, --tokens every\n"
	  "tokens limit, and --burst applies to the limits given with them.\n"
	  "\n"
	  "  --requests LIST     e.g. 500/min or \"500/min burst 50, 10000/day\"\n"
	  "  --tokens LIST       e.g. \"200000/min, 2000000/day\"\n"
	  "  --concurrency N     requests in flight at once, 0 for no cap\n"
	  "  --burst B           a duration of the rate (10s) or a request count\n"
	  "  --jitter DURATION   spread of waiters released after a cooldown\n"
	  "  --batch-share P     percent of the first limit kept for batch requests\n"
	  "\n"
	  "  --expire DURATION   remove it once idle this long (never: keep it)\n"
	  "  --weight N          its weight as a tenant, 0 (none) to 100\n"
	  "  --origin PATTERN    the template it is reported under ('' for none)\n"
	  "\n"
	  "Sharing with other hosts through Redis (ratectl.conf(5) `shared`):\n"
	  "  --shared URL        redis://HOST:PORT/DB or unix:///PATH?db=N\n"
	  "  --hosts N           hosts sharing it: each admits 1/N of every limit\n"
	  "                      while Redis is unreachable\n"
	  "  --password-file PATH  Redis password from this file (mode 0600)\n"
	  "  --password-env NAME   Redis password from this environment variable\n"
	  "  --on-redis-error share|open\n"
	  "                      Redis unreachable: 1/N of every limit (share), or\n"
	  "                      the budget's limits in full on this host (open)\n"
	  "  --no-shared         stop sharing\n" },
	{ "delete", cmd_delete, "delete a budget",
	  "usage: ratectl delete NAME\n" },
	{ "reset", cmd_reset, "refill limits and end cooldowns",
	  "usage: ratectl reset NAME | --all\n"
	  "\n"
	  "Refill every limit of NAME (or of every budget) and end its cooldown.\n"
	  "In-flight leases are left alone.\n" },
	{ "cooldown", cmd_cooldown, "pause a budget for every process",
	  "usage: ratectl cooldown NAME DURATION\n"
	  "\n"
	  "No process is admitted to NAME for DURATION (e.g. 30s, at most 1 day);\n"
	  "waiters are then released spread over the budget's jitter.  A duration of\n"
	  "0 ends a cooldown.\n" },
	{ "reclaim", cmd_reclaim, "free dead holders' slots and stale readers",
	  "usage: ratectl reclaim\n"
	  "\n"
	  "Release the in-flight slots of processes that died holding them, and the\n"
	  "LMDB reader slots of dead processes, and print how many.\n" },
	{ "sweep", cmd_sweep, "remove the budgets idle past their expire time",
	  "usage: ratectl sweep\n"
	  "\n"
	  "Remove now every budget idle for longer than its expire time (those\n"
	  "made from a template, typically), and print how many.  Admissions do\n"
	  "this a few hundred budgets at a time, so it is never required.\n" },
	{ "check", cmd_check, "verify the ledger; --repair rebuilds a damaged one",
	  "usage: ratectl check [--repair [--config FILE]]\n"
	  "\n"
	  "Verify the ledger: it opens (format version, damage), every budget record\n"
	  "reads back, values are in range, and every lease recorded held has a live\n"
	  "holder.  Exits 1 when a problem is found, printing it.\n"
	  "\n"
	  "  --repair          when the ledger or a record is damaged, move the\n"
	  "                    directory aside (DIR.damaged-YYYYmmdd-HHMMSS), create a\n"
	  "                    fresh ledger and every budget of the config file,\n"
	  "                    starting empty\n"
	  "  --config FILE     the config to rebuild from (default: the global\n"
	  "                    --config, $RATECTL_CONFIG or /etc/ratectl.conf)\n" },
	{ "watch", cmd_watch, "live view, refreshed every second",
	  "usage: ratectl watch [NAME] [--interval DURATION] [--count N]\n"
	  "\n"
	  "A live view of every budget (or NAME), refreshed every DURATION (1s).\n"
	  "On a terminal it redraws the screen; q or Ctrl-C exits.  Otherwise it\n"
	  "prints one line per budget per refresh.\n"
	  "\n"
	  "  --interval DURATION  time between refreshes (at least 100ms)\n"
	  "  --count N            stop after N refreshes\n" },
	{ "metrics", cmd_metrics, "Prometheus text exposition of every budget",
	  "usage: ratectl metrics [PATTERN...] [--top N | --all] [--json]\n"
	  "       ratectl metrics [PATTERN...] [--top N | --all] --listen ADDR:PORT\n"
	  "\n"
	  "Counters and gauges of every budget (or those matching a PATTERN) in the\n"
	  "Prometheus text format, for a node exporter textfile collector or an\n"
	  "HTTP wrapper; ratectl_shared_* for the budgets shared through Redis;\n"
	  "ratectl_tag_*_total for each budget's busiest tags; ratectl_cache_* for\n"
	  "the budgets with a response cache.  Budgets made from a template are\n"
	  "summed per template (ratectl_template_*), and only the top N of each by\n"
	  "admissions get series of their own: the output stays bounded however\n"
	  "many such budgets there are.\n"
	  "\n"
	  "  --top N     budgets of each template printed in full (default 10;\n"
	  "              0 to 10000)\n"
	  "  --all       every budget in full, as budgets without a template are\n"
	  "  --json      the same data as JSON (\"budgets\" as `list --json`, and\n"
	  "              \"templates\")\n"
	  "  --listen ADDR:PORT\n"
	  "              serve it over HTTP until SIGTERM: GET /metrics (this text,\n"
	  "              read afresh each time) and /healthz (200 ok, or 503 and\n"
	  "              why); ADDR 127.0.0.1, [::1], 0.0.0.0...; port 0: any free\n"
	  "              port, printed on stderr (\"listening on ADDR:PORT\")\n" },
	{ "cache", cmd_cache, "the host-wide response cache: its figures, or clear it",
	  "usage: ratectl cache stats [BUDGET|PATTERN...] [--json]\n"
	  "       ratectl cache clear [BUDGET] [--reset-counters]\n"
	  "\n"
	  "The answers that budgets with `cache` in ratectl.conf(5) keep for every\n"
	  "process of the host, beside the ledger (DIR/cache/).\n"
	  "\n"
	  "stats: one row per budget with a cache (or each matching a PATTERN):\n"
	  "entries held and their size, hits, coalesced (answered by a fetch they\n"
	  "waited for), misses, the hit ratio ((hits + coalesced) / all three),\n"
	  "stores, evictions (for room), expired, and the tokens the answers given\n"
	  "from the cache had used; and the budget's `cache` (TTL) and `cache_size`\n"
	  "when the config file (--config) reads.\n"
	  "\n"
	  "  --json            JSON instead (schema in ratectl(1))\n"
	  "\n"
	  "clear: remove the cached answers of BUDGET (none: of every budget) and\n"
	  "print how many were removed.\n"
	  "\n"
	  "  --reset-counters  set its counters (hits, misses...) to 0 as well\n" },
	{ "key-id", cmd_key_id, "the id of an API key, for a config `key =` rule",
	  "usage: ratectl key-id < FILE\n"
	  "\n"
	  "Read one API key from standard input and print its id: the first 16\n"
	  "hex digits of the SHA-256 of the key, without surrounding blanks or a\n"
	  "leading \"Bearer \".  A ratectl.conf(5) `key =` rule names keys by it.\n"
	  "The key is never taken as an argument (ps would show it) and never\n"
	  "printed; on a terminal it is read without echo.  One trailing newline\n"
	  "is dropped.  An empty key, several lines or more than 4096 bytes are\n"
	  "refused (exit 2).\n"
	  "\n"
	  "  printf %s \"$OPENAI_API_KEY\" | ratectl key-id\n" },
	{ "run", cmd_run, "run a command under a budget",
	  "usage: ratectl run NAME [--tokens N] [--timeout DURATION] [--batch]\n"
	  "                        [--tag TAG] -- COMMAND [ARGS...]\n"
	  "\n"
	  "Wait for one request (and N tokens) of budget NAME, run COMMAND, release\n"
	  "when it exits, and exit with its status (128+signal if it was killed).\n"
	  "SIGINT, SIGTERM and SIGHUP sent to ratectl are passed on to COMMAND.\n"
	  "\n"
	  "  --tokens N          tokens to charge (estimate), default 0\n"
	  "  --timeout DURATION  give up after DURATION and exit 75 (default: wait)\n"
	  "  --batch             wait as a batch request, behind interactive ones\n"
	  "  --tag TAG           count the request under TAG (`ratectl show NAME`)\n" },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage_all(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ratectl [--ledger DIR] [--config FILE] COMMAND [ARGS...]\n"
	        "       ratectl --version | --help\n\ncommands:\n");
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun `ratectl COMMAND --help` for a command's options.\n"
	        "The ledger is --ledger, $RATECTL_LEDGER, $XDG_RUNTIME_DIR/ratectl or\n"
	        "/tmp/ratectl-UID; the config file --config, $RATECTL_CONFIG or\n"
	        "/etc/ratectl.conf.  See ratectl(1) and ratectl.conf(5).\n");
}

static const cli_cmd *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Global options come before the command; "+" stops at the command.
 * Returns -1 to go on, or the exit code when done (--version, --help). */
static int global_options(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ledger", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int o;

	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (o) {
		case 'l': c->ledger = optarg; break;
		case 'c': c->config = optarg; break;
		case 'V':
			printf("ratectl %s (ledger format %d)\n", RATECTL_VERSION_STRING,
			       RATECTL_FORMAT_VERSION);
			return CLI_OK;
		case 'h':
			usage_all(stdout);
			return CLI_OK;
		default:
			usage_all(stderr);
			return CLI_USAGE;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	cli c = { 0 };
	int rc;

	if ((rc = global_options(&c, argc, argv)) >= 0)
		return rc;
	if (optind >= argc) {
		usage_all(stderr);
		return CLI_USAGE;
	}
	if (!(c.cmd = find_command(argv[optind]))) {
		fprintf(stderr, "ratectl: unknown command '%s'; see `ratectl --help`\n",
		        argv[optind]);
		return CLI_USAGE;
	}
	/* The command sees argv from its own name on, as if it were a program:
	 * its options then parse with getopt like any other. */
	argc -= optind;
	argv += optind;
	optind = 0;                /* glibc: start afresh for the command */
	rc = c.cmd->fn(&c, argc, argv);
	if (c.h)
		ratectl_close(c.h);
	/* `ratectl metrics > file` on a full disk must not exit 0.  A write
	 * that failed before this flush left its mark in the error flag. */
	if ((fflush(stdout) != 0 || ferror(stdout)) && rc == CLI_OK) {
		fprintf(stderr, "ratectl: %s: cannot write output\n", c.cmd->name);
		rc = CLI_ERROR;
	}
	return rc;
}
