/* testutil.h - temporary ledgers and an injected clock for the tests. */
#ifndef RATECTL_TESTUTIL_H
#define RATECTL_TESTUTIL_H

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratectl.h"

#define SEC 1000000000LL
#define MSEC 1000000LL

/* A clock the test moves: sleep_until jumps straight to the wake time. */
typedef struct fake_clock {
	int64_t now;
	int64_t realtime;
	int sleeps;
	int interrupt_next;        /* next sleep returns -EINTR */
} fake_clock;

static inline int64_t fake_now(void *ctx)
{
	return ((fake_clock *)ctx)->now;
}

static inline int64_t fake_realtime(void *ctx)
{
	fake_clock *c = ctx;

	return c->realtime + c->now;
}

static inline int fake_sleep_until(void *ctx, int64_t t)
{
	fake_clock *c = ctx;

	c->sleeps++;
	if (c->interrupt_next) {
		c->interrupt_next = 0;
		return -4;      /* -EINTR */
	}
	if (t > c->now)
		c->now = t;
	return 0;
}

/* A fresh ledger directory path under /tmp; removed by tmp_ledger_rm. */
static inline char *tmp_ledger(void)
{
	char tmpl[] = "/tmp/ratectl-test-XXXXXX";
	char *dir = mkdtemp(tmpl);
	char *path;

	assert_non_null(dir);
	path = malloc(strlen(dir) + 8);
	sprintf(path, "%s/ledger", dir);
	return path;
}

static inline void tmp_ledger_rm(char *path)
{
	char cmd[512];
	char *slash = strrchr(path, '/');

	*slash = '\0';         /* the mkdtemp directory holding the ledger */
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", path);
	free(path);
}

static inline ratectl_budget budget_simple(uint64_t rps, uint64_t burst,
                                           uint32_t inflight)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;

	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, rps, SEC, burst };
	b.max_inflight = inflight;
	return b;
}

/* The library's clock, for tests with real processes and real time. */
static inline int64_t mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* A fresh ledger opened with the injected clock at 100 s: cmocka setup
 * and teardown for tests whose logic runs on it. */
typedef struct clock_fixture {
	char *path;
	fake_clock clk;
	ratectl_clock clock;
	ratectl *h;
} clock_fixture;

static inline int clock_setup(void **state)
{
	clock_fixture *f = calloc(1, sizeof *f);
	ratectl_options o = RATECTL_OPTIONS_INIT;

	f->path = tmp_ledger();
	f->clk.now = 100 * SEC;
	f->clock = (ratectl_clock){ fake_now, fake_sleep_until, NULL, NULL, &f->clk };
	o.clock = &f->clock;
	assert_int_equal(ratectl_open(&f->h, f->path, &o), 0);
	*state = f;
	return 0;
}

static inline int clock_teardown(void **state)
{
	clock_fixture *f = *state;

	ratectl_close(f->h);
	tmp_ledger_rm(f->path);
	free(f);
	return 0;
}

/* Until pid is blocked in a sleep of the library: the kernel shows it in
 * futex or clock_nanosleep (/proc/PID/syscall) three looks in a row, 2 ms
 * apart: a state, not a guess of time.  Bounded: 5 s. */
static inline void until_blocked(pid_t pid)
{
	int64_t end = mono() + 5 * SEC;
	char path[64], buf[128];
	int seen = 0;

	snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
	while (mono() < end) {
		int fd = open(path, O_RDONLY), n;
		long nr = -1;

		assert_true(fd >= 0);
		n = (int)read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			nr = strtol(buf, NULL, 10);
		}
		/* three looks in a row, 2 ms apart: not a passing lock */
		if (nr == SYS_futex || nr == SYS_clock_nanosleep)
			seen++;
		else
			seen = 0;
		if (seen == 3)
			return;
		{
			struct timespec two = { 0, 2 * MSEC };

			nanosleep(&two, NULL);
		}
	}
	fail_msg("process %d never blocked", (int)pid);
}

#endif
