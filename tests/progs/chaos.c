/*
 * chaos - workers admit, hold and release against one budget while a
 * killer sends SIGKILL to random workers at random moments: inside LMDB
 * transactions, while waiting for their place or for a slot, while holding
 * a slot.  Every other worker takes a second budget ("chaos2", a key's
 * budget over the model's) in the same admission (ratectl_acquire_many),
 * which must give both or neither.  Afterwards it checks, from outside
 * the library:
 *   - neither in-flight cap was ever exceeded (each holder marks the slot
 *     it was given in a shared table with a compare-and-swap: two live
 *     holders of one slot, or a slot out of range, is a violation), and a
 *     two-budget admission holds a slot in each, at one admission time;
 *   - admissions stayed within the GCRA bound on every limit of both;
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
#define CAP2 2
#define RPS2 1000
#define RBURST2 20

struct shared {
	volatile int stop;
	volatile int killing[MAXW];    /* being killed: its marks are moot */
	volatile int owner[CAP];       /* slot -> worker index + 1 */
	volatile int owner2[CAP2];     /* the same for chaos2 */
	uint32_t violations;
	uint64_t n, n2;
	adm_rec req[MAX_REC];
	adm_rec tok[MAX_REC];
	adm_rec req2[MAX_REC];
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

/* Mark a slot's entry in an owner table as idx's: a live owner already
 * there is a violation. */
static void mark(struct shared *s, volatile int *owner, int idx)
{
	int prev = __sync_val_compare_and_swap(owner, 0, idx + 1);

	if (prev != 0 && !s->killing[prev - 1])
		__atomic_add_fetch(&s->violations, 1, __ATOMIC_SEQ_CST);
	*owner = idx + 1;
}

static void hold(struct shared *s, const ratectl_lease *l, const ratectl_lease *l2,
                 int idx)
{
	struct timespec t = { 0, (rand() % 300) * 1000 };

	mark(s, &s->owner[l->slot], idx);
	if (l2)
		mark(s, &s->owner2[l2->slot], idx);
	nanosleep(&t, NULL);
	if (l2)
		__sync_val_compare_and_swap(&s->owner2[l2->slot], idx + 1, 0);
	__sync_val_compare_and_swap(&s->owner[l->slot], idx + 1, 0);
}

static void worker(const char *path, struct shared *s, int idx)
{
	static const char *const both[] = { "chaos", "chaos2" };
	ratectl_lease l[2];
	int many = idx % 2;
	ratectl *h;
	int rc;

	if (ratectl_open(&h, path, NULL) != 0)
		_exit(3);
	srand((unsigned)getpid());
	while (!s->stop) {
		ratectl_cost c = { 1, 1 + (uint64_t)(rand() % 20), RATECTL_INTERACTIVE, NULL };

		rc = many ? ratectl_acquire_many(h, both, 2, &c, l, SEC)
		          : ratectl_acquire(h, "chaos", &c, &l[0], SEC);
		if (rc == RATECTL_ETIMEDOUT)
			continue;
		if (rc != 0) {
			fprintf(stderr, "chaos: worker %d: %s\n", idx, ratectl_errmsg());
			_exit(4);
		}
		record(s, &l[0], c.tokens);
		if (l[0].slot < 0 || l[0].slot >= CAP ||
		    (many && (l[1].slot < 0 || l[1].slot >= CAP2 ||
		              l[1].start_ns != l[0].start_ns))) {
			__atomic_add_fetch(&s->violations, 1, __ATOMIC_SEQ_CST);
			_exit(5);
		}
		if (many) {
			uint64_t k = __atomic_fetch_add(&s->n2, 1, __ATOMIC_SEQ_CST);

			if (k < MAX_REC)
				s->req2[k] = (adm_rec){ l[1].start_ns, 1 };
		}
		hold(s, &l[0], many ? &l[1] : NULL, idx);
		if (ratectl_release(h, &l[0], RATECTL_UNKNOWN) != 0 ||
		    (many && ratectl_release(h, &l[1], RATECTL_UNKNOWN) != 0))
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
		for (j = 0; j < CAP2; j++)
			__sync_val_compare_and_swap(&s->owner2[j], i + 1, 0);
		s->killing[i] = 0;
		kills++;
		pid[i] = spawn(path, s, i);
	}
	return kills;
}

/* After everyone is gone: nothing held, the dead reclaimed, all slots free. */
static int check_after(ratectl *h)
{
	ratectl_cost c = { 1, 1, RATECTL_INTERACTIVE, NULL };
	ratectl_lease l[CAP + 1];
	ratectl_budget_info info, info2;
	unsigned slots = 0, readers = 0;
	int i, bad = 0;

	if (ratectl_budget_get(h, "chaos", &info) != 0 || info.inflight != 0)
		bad++;
	if (ratectl_budget_get(h, "chaos2", &info2) != 0 || info2.inflight != 0)
		bad++;
	if (ratectl_reclaim(h, &slots, &readers) != 0 || slots != info.dead + info2.dead)
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

	uint64_t n2 = s->n2 < MAX_REC ? s->n2 : MAX_REC, req2;
	int64_t w2, T2 = SEC / RPS2;

	wr = bound_worst_excess(s->req, n, Tr, RBURST * Tr, &req);
	wt = bound_worst_excess(s->tok, n, Tt, TBURST * Tt, &tok);
	w2 = bound_worst_excess(s->req2, n2, T2, RBURST2 * T2, &req2);
	*admitted = req;
	if (wt > wr)
		wr = wt;
	return w2 > wr ? w2 : wr;
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
	b.nlimits = 1;
	b.limits[0] = (ratectl_limit){ RATECTL_REQUESTS, RPS2, SEC, RBURST2 };
	b.max_inflight = CAP2;
	if (ratectl_budget_set(h, "chaos2", &b, 0) != 0)
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
	printf("chaos: %d workers, %d s: %u kills survived, %llu admissions (%llu in "
	       "two budgets at once), %u cap violations, %s GCRA bound (worst %lld ns), "
	       "%d check failures\n",
	       nw, seconds, kills, (unsigned long long)admitted,
	       (unsigned long long)s->n2, s->violations,
	       worst <= 0 ? "within" : "OVER", (long long)worst, bad);
	printf("chaos: ledger %s\n", path);
	return s->violations == 0 && worst <= 0 && bad == 0 && kills > 0 ? 0 : 1;
}
