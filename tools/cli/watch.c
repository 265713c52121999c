/*
 * watch.c - `ratectl watch [NAME]`: a live view, like top.
 *
 * On a terminal it redraws one screen (plain ANSI/VT100 sequences: the
 * alternate screen, clear, hide the cursor) and reads keys without Enter
 * so that `q` quits; Ctrl-C, SIGTERM and SIGHUP quit too, and Ctrl-Z
 * suspends.  Whatever ends it, the terminal is given back as it was:
 * signals only set flags, and the one exit path restores the screen and
 * the termios settings.  When stdout is not a terminal (a pipe, a log) it
 * prints one line per budget per refresh instead, with a timestamp.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define NS_PER_S 1000000000LL

static volatile sig_atomic_t quit_signal;   /* SIGINT, SIGTERM, SIGHUP */
static volatile sig_atomic_t stop_signal;   /* SIGTSTP: suspend */

static void on_quit(int sig)
{
	quit_signal = sig;
}

static void on_stop(int sig)
{
	(void)sig;
	stop_signal = 1;
}

struct watch {
	cli *c;
	const char *name;          /* one budget, or NULL for all */
	int64_t interval_ns;
	uint64_t count;            /* refreshes to do, 0: until quit */
	int screen;                /* stdout is a terminal: redraw */
	int keys;                  /* stdin is a terminal in key mode */
	struct termios saved;
	ratectl_budget_info *prev; /* last refresh, for the per-second rates */
	size_t nprev;
	int64_t prev_t;
	char err[512];             /* why a refresh failed, printed once the
	                              terminal is back: on the alternate screen
	                              it would vanish with it */
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void handlers(void (*quit)(int), void (*stop)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = quit;      /* no SA_RESTART: poll() must see EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = stop;
	sigaction(SIGTSTP, &sa, NULL);
}

static void term_enter(struct watch *w)
{
	struct termios t;

	if (w->screen)
		fputs("\033[?1049h\033[?25l", stdout);   /* alternate screen, no cursor */
	if (w->keys && tcgetattr(STDIN_FILENO, &w->saved) == 0) {
		t = w->saved;
		t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);   /* keys without Enter; ISIG stays */
		t.c_cc[VMIN] = 0;
		t.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &t) != 0)
			w->keys = 0;
	} else {
		w->keys = 0;
	}
	fflush(stdout);
}

static void term_leave(struct watch *w)
{
	if (w->keys)
		tcsetattr(STDIN_FILENO, TCSANOW, &w->saved);
	if (w->screen)
		fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
}

/* Give the terminal back, stop, and take it again when continued. */
static void suspend(struct watch *w)
{
	int keys = w->keys;

	stop_signal = 0;
	term_leave(w);
	signal(SIGTSTP, SIG_DFL);
	raise(SIGTSTP);
	/* ... stopped here until SIGCONT ... */
	handlers(on_quit, on_stop);
	w->keys = keys;
	term_enter(w);
}

static const ratectl_budget_info *find_prev(const struct watch *w, const char *name)
{
	size_t i;

	for (i = 0; i < w->nprev; i++)
		if (strcmp(w->prev[i].name, name) == 0)
			return &w->prev[i];
	return NULL;
}

/* Per-second rate of a counter since the last refresh, as "8.2" or "-". */
static const char *per_s(char buf[FMT_LEN], uint64_t now, const uint64_t *was,
                         int64_t dt)
{
	if (!was || dt <= 0 || now < *was) {
		snprintf(buf, FMT_LEN, "-");
		return buf;
	}
	snprintf(buf, FMT_LEN, "%.1f", (double)(now - *was) * NS_PER_S / (double)dt);
	return buf;
}

/* Watching one budget: who uses it, its busiest tags first (a top-style
 * view of ratectl_tags()).  Tags that cannot be read are said so, in one
 * line: the rest of the screen stands. */
#define WATCH_TAGS 10

static int draw_tags(struct watch *w, const char *name)
{
	ratectl_tag_info tags[WATCH_TAGS], rest;
	table *t;
	size_t n, i;
	int rc;

	if ((rc = ratectl_tags(w->c->h, name, tags, WATCH_TAGS, &n, &rest)) != 0) {
		printf("\ntags: %s\n", ratectl_strerror(rc));
		return 0;
	}
	if (n == 0)
		return 0;
	if (!(t = table_new(3)))
		return -1;
	table_cell(t, "TAG");
	table_cell(t, "REQUESTS");
	table_cell(t, "TOKENS");
	for (i = 0; i < n && i < WATCH_TAGS; i++) {
		table_cell(t, "%s", tags[i].tag);
		table_cell(t, "%llu", (unsigned long long)tags[i].requests);
		table_cell(t, "%llu", (unsigned long long)tags[i].tokens);
	}
	table_cell(t, "(other)");
	table_cell(t, "%llu", (unsigned long long)rest.requests);
	table_cell(t, "%llu", (unsigned long long)rest.tokens);
	putchar('\n');
	rc = table_print(t, stdout, "");
	table_free(t);
	return rc;
}

/* The same on one line: "; tags a=N b=M (other)=K". */
static void line_tags(struct watch *w, const char *name)
{
	ratectl_tag_info tags[WATCH_TAGS], rest;
	size_t n, i;

	if (ratectl_tags(w->c->h, name, tags, WATCH_TAGS, &n, &rest) != 0 || n == 0)
		return;
	printf("; tags");
	for (i = 0; i < n && i < WATCH_TAGS; i++)
		printf(" %s=%llu", tags[i].tag, (unsigned long long)tags[i].requests);
	printf(" (other)=%llu", (unsigned long long)rest.requests);
}

static int draw_screen(struct watch *w, const ratectl_budget_info *v, size_t n,
                       int64_t dt)
{
	char a[FMT_LEN], r[FMT_LEN];
	char stamp[32];
	time_t now = time(NULL);
	table *t = table_new(7);
	size_t i;
	int rc;

	strftime(stamp, sizeof stamp, "%H:%M:%S", localtime(&now));
	fputs("\033[H\033[2J", stdout);
	printf("ratectl watch  %s  ledger %s  (q quits)\n\n", stamp,
	       ratectl_path(w->c->h));
	show_summary_header(t);
	table_cell(t, "ADMITTED/S");
	table_cell(t, "REFUSED/S");
	for (i = 0; i < n; i++) {
		const ratectl_budget_info *p = find_prev(w, v[i].name);

		show_summary_row(t, &v[i]);
		table_cell(t, "%s", per_s(a, v[i].counters.admitted,
		                          p ? &p->counters.admitted : NULL, dt));
		table_cell(t, "%s", per_s(r, v[i].counters.refused,
		                          p ? &p->counters.refused : NULL, dt));
	}
	rc = table_print(t, stdout, "");
	table_free(t);
	if (n == 0)
		printf("no budgets\n");
	if (rc == 0 && w->name && n == 1)
		rc = draw_tags(w, v[0].name);
	return rc;
}

static void draw_lines(struct watch *w, const ratectl_budget_info *v, size_t n,
                       int64_t dt)
{
	char req[512], tok[512], inf[64], cd[FMT_LEN], a[FMT_LEN], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	size_t i;

	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
	for (i = 0; i < n; i++) {
		const ratectl_budget_info *p = find_prev(w, v[i].name);

		show_limits_cell(req, sizeof req, &v[i], RATECTL_REQUESTS);
		show_limits_cell(tok, sizeof tok, &v[i], RATECTL_TOKENS);
		show_inflight_cell(inf, sizeof inf, &v[i]);
		printf("%s %s requests %s; tokens %s; in flight %s; cooldown %s; "
		       "admitted/s %s", stamp, v[i].name, req, tok, inf,
		       v[i].cooldown_ns ? fmt_dur(cd, v[i].cooldown_ns) : "-",
		       per_s(a, v[i].counters.admitted, p ? &p->counters.admitted : NULL,
		             dt));
		if (w->name)
			line_tags(w, v[i].name);
		putchar('\n');
	}
	if (n == 0)
		printf("%s no budgets\n", stamp);
}

/* One refresh: snapshot, keep NAME only if given, draw.  0, or
 * CLI_ERROR with w->err set. */
static int refresh(struct watch *w)
{
	ratectl_budget_info *v;
	size_t n, i, k = 0;
	int64_t t = mono_ns();
	const char *detail;
	int rc;

	if ((rc = cli_budgets(w->c, &v, &n)) != 0) {
		detail = ratectl_errmsg();
		snprintf(w->err, sizeof w->err, "cannot read the budgets: %s",
		         detail && *detail ? detail : ratectl_strerror(rc));
		return CLI_ERROR;
	}
	for (i = 0; i < n; i++)
		if (!w->name || strcmp(v[i].name, w->name) == 0)
			v[k++] = v[i];
	if (w->screen && draw_screen(w, v, k, w->prev ? t - w->prev_t : 0) != 0) {
		snprintf(w->err, sizeof w->err, "out of memory");
		free(v);
		return CLI_ERROR;
	}
	if (!w->screen)
		draw_lines(w, v, k, w->prev ? t - w->prev_t : 0);
	fflush(stdout);
	free(w->prev);
	w->prev = v;
	w->nprev = k;
	w->prev_t = t;
	return 0;
}

/* Sleep one interval, reading keys; 1 when it is time to quit. */
static int pause_for(struct watch *w)
{
	int64_t end = mono_ns() + w->interval_ns, left;
	struct pollfd pfd = { STDIN_FILENO, POLLIN, 0 };
	char ch;

	while (!quit_signal && (left = end - mono_ns()) > 0) {
		int r = poll(&pfd, w->keys ? 1 : 0, (int)((left + 999999) / 1000000));

		if (stop_signal) {
			suspend(w);
			return 0;          /* redraw at once after a resume */
		}
		if (r > 0 && read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
			return 1;
		if (r < 0 && errno != EINTR)
			return 1;
	}
	return quit_signal != 0;
}

static int watch_options(struct watch *w, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 }
	};
	int o;

	while ((o = cli_getopt(argc, argv, opts, 1)) != -1) {
		if (o == 'h') {
			cli_help(w->c);
			return -1;         /* done, successfully */
		}
		if (o == 'i' && ratectl_parse_duration(optarg, &w->interval_ns) != 0)
			return cli_usage(w->c, "--interval: %s", ratectl_errmsg());
		if (o == 'i' && (w->interval_ns < NS_PER_S / 10 ||
		                 w->interval_ns > RATECTL_PERIOD_MAX))
			return cli_usage(w->c, "--interval: 100ms .. 1 day");
		if (o == 'n' && (cli_parse_u64(optarg, UINT32_MAX, &w->count) != 0 ||
		                 w->count == 0))
			return cli_usage(w->c, "--count: a whole number of refreshes, >= 1");
		if (o != 'i' && o != 'n')
			return cli_badopt(w->c, o, argv);
	}
	if (optind + 1 < argc)
		return cli_usage(w->c, "one budget at a time");
	w->name = optind < argc ? argv[optind] : NULL;
	return 0;
}

int cmd_watch(cli *c, int argc, char **argv)
{
	struct watch w = { .c = c, .interval_ns = NS_PER_S };
	ratectl_budget_info in;
	uint64_t i;
	int rc;

	if ((rc = watch_options(&w, argc, argv)) != 0)
		return rc < 0 ? CLI_OK : rc;
	if ((rc = cli_open(c)) != 0)
		return rc;
	if (w.name && (rc = ratectl_budget_get(c->h, w.name, &in)) != 0)
		return cli_fail(c, rc, w.name);
	w.screen = isatty(STDOUT_FILENO);
	w.keys = w.screen && isatty(STDIN_FILENO);
	handlers(on_quit, on_stop);
	term_enter(&w);
	for (i = 0; rc == 0; i++) {
		if ((rc = refresh(&w)) != 0 || (w.count && i + 1 >= w.count))
			break;
		if (pause_for(&w))
			break;
	}
	term_leave(&w);
	free(w.prev);
	if (rc != 0)
		cli_err(c, "%s", w.err);
	return rc;
}
