/*
 * run.c - `ratectl run NAME [--tokens N] [--timeout D] -- COMMAND ...`:
 * the limiter for shell users (`xargs -P 32 ratectl run openai -- curl`).
 *
 * Acquire one request (and N tokens), fork and exec the command, wait for
 * it, release, exit with its status.  The lease is an OFD lock held
 * through a descriptor of this process only (the library closes its lease
 * descriptors in a forked child, and they are close-on-exec), so the slot
 * is ours alone: if ratectl itself is killed, even with SIGKILL, the
 * kernel drops the lock and the next admission takes the slot back.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP sent to ratectl are passed on to the
 * command.  Those the kernel sends to the whole foreground process group
 * (Ctrl-C, a hangup) have reached the command already and are not sent a
 * second time.  While waiting for the budget, they end the wait: the
 * library gives back what it had reserved and ratectl exits 128+signal.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP };
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])

static volatile sig_atomic_t child;       /* pid once the command runs */
static volatile sig_atomic_t early_sig;   /* a signal that came before it */

static void on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (child <= 0)
		early_sig = sig;
	else if (si->si_code <= 0)              /* from kill(2), not the tty */
		kill((pid_t)child, sig);
}

/* No SA_RESTART: a signal must interrupt the library's wait (-EINTR). */
static void handle_signals(void)
{
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO;
	for (i = 0; i < NFORWARDED; i++)
		sigaction(forwarded[i], &sa, NULL);
}

static void put(const char *s)
{
	ssize_t n = write(STDERR_FILENO, s, strlen(s));

	(void)n;                /* nothing more to be done about stderr */
}

/*
 * In the child: default signals, the mask it had, then the command.  Only
 * async-signal-safe calls between fork and exec (the library may have a
 * thread running in the parent), so the message on failure is assembled
 * with write(2), not stdio or strerror.
 */
static void exec_child(char **cmd, const sigset_t *mask)
{
	size_t i;
	int e;

	for (i = 0; i < NFORWARDED; i++)
		signal(forwarded[i], SIG_DFL);
	sigprocmask(SIG_SETMASK, mask, NULL);
	execvp(cmd[0], cmd);
	e = errno;
	put("ratectl: run: ");
	put(cmd[0]);
	put(e == ENOENT ? ": command not found\n" : e == EACCES ?
	    ": permission denied\n" : ": cannot be run\n");
	_exit(e == ENOENT ? 127 : 126);        /* as the shell does */
}

static int exit_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return CLI_ERROR;
}

/* Run cmd and wait for it; returns its exit code as run's. */
static int spawn(cli *c, char **cmd)
{
	sigset_t all, old;
	pid_t pid;
	int st;

	/* Signals are held from before fork until child is set, so that none
	 * is lost in between: a pending one is forwarded at the unblock. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if (early_sig) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		return 128 + early_sig;
	}
	pid = fork();
	if (pid == 0)
		exec_child(cmd, &old);
	if (pid < 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		cli_err(c, "cannot start %s: %s", cmd[0], strerror(errno));
		return CLI_ERROR;
	}
	child = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			cli_err(c, "waiting for %s: %s", cmd[0], strerror(errno));
			return CLI_ERROR;
		}
	child = 0;
	return exit_status(st);
}

struct run_args {
	const char *name;
	ratectl_cost cost;
	int64_t timeout_ns;
	char **cmd;
};

/* Options go before or after NAME, then "--" (optional) and the command:
 * getopt stops at the first operand, so NAME's options are parsed in a
 * second pass that starts after it. */
static int run_options(cli *c, int argc, char **argv, struct run_args *a)
{
	static const struct option opts[] = {
		{ "tokens", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "batch", no_argument, NULL, 'b' },
		{ "tag", required_argument, NULL, 'g' },
		{ NULL, 0, NULL, 0 }
	};
	int pass, o, base = 0;

	for (pass = 0; pass < 2; pass++) {
		optind = 0;
		while ((o = cli_getopt(argc - base, argv + base, opts, 0)) != -1) {
			if (o == 'h') {
				cli_help(c);
				return -1;     /* done, successfully */
			}
			if (o == 't' && cli_parse_u64(optarg, INT64_MAX, &a->cost.tokens) != 0)
				return cli_usage(c, "--tokens: a whole number of tokens");
			if (o == 'T' && ratectl_parse_duration(optarg, &a->timeout_ns) != 0)
				return cli_usage(c, "--timeout: %s", ratectl_errmsg());
			if (o == 'g' && ratectl_tag_check(optarg) != 0)
				return cli_usage(c, "--tag '%s': 1 to %d characters of "
				                 "[A-Za-z0-9._:/-]", optarg, RATECTL_TAG_MAX);
			if (o == 'g')
				a->cost.tag = optarg;
			if (o == 'b')
				a->cost.priority = RATECTL_BATCH;
			else if (o != 't' && o != 'T' && o != 'g')
				return cli_badopt(c, o, argv + base);
		}
		base += optind;
		if (pass == 0) {
			if (base >= argc || strcmp(argv[base - 1], "--") == 0)
				return cli_usage(c, "which budget?");
			a->name = argv[base];
		}
	}
	if (base >= argc)
		return cli_usage(c, "no command to run; give it after --");
	a->cmd = argv + base;
	return 0;
}

int cmd_run(cli *c, int argc, char **argv)
{
	struct run_args a = { NULL, { 1, 0, RATECTL_INTERACTIVE, NULL }, -1, NULL };
	ratectl_lease lease;
	int rc, status;

	if ((rc = run_options(c, argc, argv, &a)) != 0)
		return rc < 0 ? CLI_OK : rc;
	if ((rc = cli_open(c)) != 0)
		return rc;
	handle_signals();
	rc = ratectl_acquire(c->h, a.name, &a.cost, &lease, a.timeout_ns);
	if (rc == -EINTR && early_sig)
		return 128 + early_sig;
	if (rc != 0)
		return cli_fail(c, rc, a.name);
	status = spawn(c, a.cmd);
	if ((rc = ratectl_release(c->h, &lease, RATECTL_UNKNOWN)) != 0)
		cli_fail(c, rc, "release");     /* the command's status still stands */
	return status;
}
