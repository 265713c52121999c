/*
 * chaos - workers admit, hold and release against one budget while a
 * killer sends SIGKILL to random workers at random moments: inside LMDB
 * transactions, while waiting for their place or for a slot, while holding
 * a slot.  Afterwards it checks, from outside the library:
 *   - the in-flight cap was never exceeded (each holder marks the slot it
 *     was given in a shared table with a compare-and-swap: two live holders
 *     of one slot, or a slot out of range, is a violation);
 *   - admissions stayed within the GCRA bound on every limit;
 *   - the ledger opens, no slot is held, dead holders' records reclaim, and
 *     every slot can be taken again.
 * Prints its figures and exits 0 only if all violations are 0.
 *
 * usage: chaos [-w workers] [-s seconds] [-l ledger-dir]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bound.h"
#include "ratectl.h"

#define SEC 1000000000LL
#define MAXW 64
#define CAP 4
#define MAX_REC 2000000
#define RPS 2000
#define RBURST 50
#define TPS 20000
#define TBURST 1000

struct shared {
	volatile int stop;
	volatile int killing[MAXW];    /* being killed: its marks are moot */
	volatile int owner[CAP];       /* slot -> worker index + 1 */
	uint32_t violations;
	uint64_t n;
	adm_rec req[MAX_REC];
	adm_rec tok[MAX_REC];
};

static int64_t mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void record(struct shared *s, const ratectl_lease *l, uint64_t tokens)
{
	uint64_t k = __atomic_fetch_add(&s->n, 1, __ATOMIC_SEQ_CST);

	if (k < MAX_REC) {
		s->req[k] = (adm_rec){ l->start_ns, 1 };
		s->tok[k] = (adm_rec){ l->start_ns, tokens };
	}
}

static void hold(struct shared *s, const ratectl_lease *l, int idx)
{
	struct timespec t = { 0, (rand() % 300) * 1000 };
	int prev = __sync_val_compare_and_swap(&s->owner[l->slot], 0, idx + 1);

	if (prev != 0 && !s->killing[prev - 1])
		__atomic_add_fetch(&s->violations, 1, __ATOMIC_SEQ_CST);
	s->owner[l->slot] = idx + 1;
	nanosleep(&t, NULL);
	__sync_val_compare_and_swap(&s->owner[l->slot], idx + 1, 0);
}

static void worker(const char *path, struct shared *s, int idx)
{
	ratectl_lease l;
	ratectl *h;
	int rc;

	if (ratectl_open(&h, path, NULL) != 0)
		_exit(3);
	srand((unsigned)getpid());
	while (!s->stop) {
		ratectl_cost c = { 1, 1 + (uint64_t)(rand() % 20), RATECTL_INTERACTIVE };

		rc = ratectl_acquire(h, "chaos", &c, &l, SEC);
		if (rc == RATECTL_ETIMEDOUT)
			continue;
		if (rc != 0) {
			fprintf(stderr, "chaos: worker %d: %s\n", idx, ratectl_errmsg());
			_exit(4);
		}
		record(s, &l, c.tokens);
		if (l.slot < 0 || l.slot >= CAP) {
			__atomic_add_fetch(&s->violations, 1, __ATOMIC_SEQ_CST);
			_exit(5);
		}
		hold(s, &l, idx);
		if (ratectl_release(h, &l, RATECTL_UNKNOWN) != 0)
			_exit(6);
	}
	ratectl_close(h);
	_exit(0);
}

static pid_t spawn(const char *path, struct shared *s, int idx)
{
	pid_t pid = fork();

	if (pid == 0)
		worker(path, s, idx);
	return pid;
}

/* Kill random workers at random moments until `seconds` pass. */
static unsigned killer(const char *path, struct shared *s, pid_t *pid, int nw,
                       int seconds)
{
	int64_t t_end = mono() + seconds * SEC;
	unsigned kills = 0;
	int i, j, status;

	while (mono() < t_end) {
		struct timespec gap = { 0, (1 + rand() % 20) * 1000000 };

		nanosleep(&gap, NULL);
		i = rand() % nw;
		s->killing[i] = 1;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		kill(pid[i], SIGKILL);
		if (waitpid(pid[i], &status, 0) != pid[i] ||
		    (WIFEXITED(status) && WEXITSTATUS(status) != 0)) {
			fprintf(stderr, "chaos: worker %d failed (status %d)\n", i, status);
			s->violations++;
		}
		for (j = 0; j < CAP; j++)
			__sync_val_compare_and_swap(&s->owner[j], i + 1, 0);
		s->killing[i] = 0;
		kills++;
		pid[i] = spawn(path, s, i);
	}
	return kills;
}

/* After everyone is gone: nothing held, the dead reclaimed, all slots free. */
static int check_after(ratectl *h)
{
	ratectl_cost c = { 1, 1, RATECTL_INTERACTIVE };
	ratectl_lease l[CAP + 1];
	ratectl_budget_info info;
	unsigned slots = 0, readers = 0;
	int i, bad = 0;

	if (ratectl_budget_get(h, "chaos", &info) != 0 || info.inflight != 0)
		bad++;
	if (ratectl_reclaim(h, &slots, &readers) != 0 || slots != info.dead)
		bad++;
	if (ratectl_budget_reset(h, "chaos") != 0)
		bad++;
	for (i = 0; i < CAP; i++)
		if (ratectl_try(h, "chaos", &c, &l[i], NULL) != 0)
			bad++;
	if (ratectl_try(h, "chaos", &c, &l[CAP], NULL) != RATECTL_EINFLIGHT)
		bad++;
	for (i = 0; i < CAP; i++)
		ratectl_release(h, &l[i], RATECTL_UNKNOWN);
	printf("chaos: after: %u dead holders' slots and %u stale readers reclaimed\n",
	       slots, readers);
	return bad;
}

static int64_t check_bound(struct shared *s, uint64_t *admitted)
{
	uint64_t n = s->n < MAX_REC ? s->n : MAX_REC, req, tok;
	int64_t wr, wt, Tr = SEC / RPS, Tt = (SEC + TPS - 1) / TPS;

	wr = bound_worst_excess(s->req, n, Tr, RBURST * Tr, &req);
	wt = bound_worst_excess(s->tok, n, Tt, TBURST * Tt, &tok);
	*admitted = req;
	return wr > wt ? wr : wt;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	char tmp[] = "/tmp/ratectl-chaos-XXXXXX";
	int nw = 16, seconds = 5, opt, i, status, bad;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	pid_t pid[MAXW];
	struct shared *s;
	uint64_t admitted;
	unsigned kills;
	int64_t worst;
	ratectl *h;

	while ((opt = getopt(argc, argv, "w:s:l:")) != -1) {
		if (opt == 'w')
			nw = atoi(optarg);
		else if (opt == 's')
			seconds = atoi(optarg);
		else if (opt == 'l')
			path = optarg;
		else
			return 2;
	}
	if (nw < 1 || nw > MAXW || seconds < 1 || seconds > 3600) {
		fprintf(stderr, "usage: chaos [-w 1..%d] [-s 1..3600] [-l ledger]\n", MAXW);
		return 2;
	}
	if (!path && !(path = mkdtemp(tmp)))
		return 1;
	s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	         -1, 0);
	if (s == MAP_FAILED || ratectl_open(&h, path, NULL) != 0) {
		fprintf(stderr, "chaos: %s\n", ratectl_errmsg());
		return 1;
	}
	b.nlimits = 2;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, RPS, SEC, RBURST };
	b.limits[1] = (ratectl_limit){ RATECTL_TOKENS, TPS, SEC, TBURST };
	b.max_inflight = CAP;
	if (ratectl_budget_set(h, "chaos", &b, 0) != 0)
		return 1;
	srand((unsigned)getpid());
	for (i = 0; i < nw; i++)
		pid[i] = spawn(path, s, i);
	kills = killer(path, s, pid, nw, seconds);
	s->stop = 1;
	for (i = 0; i < nw; i++)
		if (waitpid(pid[i], &status, 0) != pid[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			s->violations++;
	worst = check_bound(s, &admitted);
	bad = check_after(h);
	ratectl_close(h);
	printf("chaos: %d workers, %d s: %u kills survived, %llu admissions, "
	       "%u cap violations, %s GCRA bound (worst %lld ns), %d check failures\n",
	       nw, seconds, kills, (unsigned long long)admitted, s->violations,
	       worst <= 0 ? "within" : "OVER", (long long)worst, bad);
	printf("chaos: ledger %s\n", path);
	return s->violations == 0 && worst <= 0 && bad == 0 && kills > 0 ? 0 : 1;
}
