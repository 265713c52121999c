/*
 * wait.c - sleeping until something changes, without polling.
 *
 * Each budget's bucket in the wake file (lease.c; budgets whose ids fall
 * in the same bucket share it, and wake each other's waiters now and then,
 * who look and sleep again) maps two futex words.  release_seq is for slot
 * waiters (EINFLIGHT); change_seq for everyone else who waits: rate
 * waiters with no place reserved (the place lies past their deadline, a
 * batch request beyond its share, anyone during a cooldown) and waiters
 * asleep on a reserved place.  A state change bumps the words it concerns
 * and wakes their sleepers; a sleeper compares the word before sleeping,
 * so a change between its decision and its sleep is never missed.  On
 * change_seq, waiters asleep on a reserved place are woken only by what
 * can concern a place (a cooldown, a void: "all" below), not by refunds
 * and updates, which only rate waiters with no place can use (futex
 * bitsets).  Every
 * change that is made inside a write transaction wakes before the commit:
 * a woken waiter tries again in a write transaction of its own, which
 * waits for that commit, so it sees the change.
 *
 * Who wakes whom.  Each row has a test in tests/test_wakeup.c named after
 * it, but for those that name another file:
 *
 *  state change                    words           who gets in        test_wakeup ...
 *  ------------------------------  --------------  -----------------  ------------------------------
 *  slot released (release, an      release         slot waiters       release_wakes_slot_waiter
 *   admission given up)
 *  holder died (watcher's pidfd)   release         slot waiters       test_wait dead_holder_wakes_waiter
 *  holder died unseen (over        none: the tick  slot waiters       unwatched_death_costs_a_tick
 *   RC_WATCH_MAX holders, no        retries
 *   pidfd_open)
 *  ratectl_close(), leases held    release         slot waiters       close_wakes_slot_waiter
 *  reclaim freed dead slots        release         slot waiters       reclaim_wakes_slot_waiter
 *   (ratectl_reclaim, an admission
 *   finding all slots held, the
 *   sweep)
 *  reconcile refunded tokens       change          rate waiters       refund_wakes_rate_waiter
 *  a reserved place given back     change          rate waiters       undo_wakes_rate_waiter
 *  budget updated                  release,        all (reserved      update_wakes_waiters
 *                                   change          keep their place)
 *  budget reset                    release,        all; reserved      reset_voids_reservations
 *                                   change, vseq    plan again (the
 *                                                   record's epoch)
 *  budget deleted                  release,        all: they fail     delete_wakes_waiters
 *                                   change, vseq    RATECTL_ENOTFOUND
 *  budget removed idle (the        release,        all: they fail     test_http
 *   sweep)                          change, vseq    RATECTL_ENOTFOUND   tenant_expired_then_made_again
 *                                                   (the HTTP policy
 *                                                   makes it again)
 *  a tenant's turn passes (its     change          its waiters in     test_tenants fifo_within_tenant,
 *   ticket served, given up or                      line               ticket_given_up
 *   skipped)
 *  cooldown begins                 change (all)    reserved inside    cooldown_start_gives_back
 *                                                   it give back
 *  cooldown ends early             change (all)    cooldown waiters   cooldown_end_wakes_waiters
 *  reboot                          buckets reset   none survive one   test_ledger reboot_with_waiters
 *  shared: credit arrives (a sync  change          rate waiters       test_shared credit_wakes_waiter
 *   with Redis granted units)                       (starved: they
 *                                                    also look again
 *                                                    every 50 ms)
 *  shared: Redis unreachable       change          rate waiters: the  test_shared degraded_fallback
 *   (degraded) or back                              fallback, or
 *                                                    credit again
 *
 * The response cache of libratectl-http (lib/http/cache.c) has futex words
 * of its own, in DIR/cache/wake, a bucket per answer's key; its waiters
 * wait for another request's fetch of the same answer:
 *
 *  a fetch ends, its answer        cache bucket    its key's waiters  test_http_cache
 *   stored                                          (a hit)             fetch_stored_wakes_waiters
 *  a fetch ends with nothing to    cache bucket    one of them        test_http_cache
 *   store (an error, a non-2xx,                     fetches             fetch_failed_wakes_waiters
 *   too big, the request freed)
 *  the fetcher dies                none: a waiter  one of them        test_http_cache
 *                                   looks again     fetches             fetcher_killed
 *                                   every 100 ms
 *
 * Whether a reserved place still stands (no reset voided it, no cooldown
 * covers it) is the record's to say, not the bucket's, which other budgets
 * share.  A cooldown or a void moves the bucket's vseq, before its commit
 * as every wake-up; a waiter on a place that sees vseq moved looks at the
 * record in a write transaction, which runs after that commit
 * (ratectl__place_check), and otherwise needs no transaction at all.
 *
 * Nobody reserves a place during a cooldown: those waiters sleep on
 * change_seq until it ends or is ended, then line up.  So ending a pause
 * early voids no reservation.
 *
 * A holder that dies sends no wake-up.  So one waiting process, the
 * watcher (its pid in the header, taken by compare-and-swap), runs a small
 * thread that polls pidfds of the slots' holders: the kernel makes a pidfd
 * readable when its process has exited, after its descriptors, and so its
 * slot locks, are gone.  The thread then bumps the word and wakes everyone.
 * A slot waiter also tries again every RC_TICK_NS whatever happens, so a
 * death the watcher cannot see (more holders than it watches, no pidfds)
 * or any wake-up still missed costs at most that tick; and checks every
 * RC_WATCH_CHECK_NS that the watcher lives, taking over if not.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/*
 * How often a waiter checks that the watcher lives.  A watcher that stops
 * waiting hands over at once; only one killed while waiting leaves a gap,
 * and only for holders that die in it (releases still wake at once), and
 * the tick covers it.  Checking every second cost 64 idle waiters 0.4% of
 * a core.  How often the watch thread refreshes its list of holders: new
 * holders come only after a wake-up, which refreshes it anyway.  And how
 * often a slot waiter tries again regardless.
 */
#define RC_WATCH_CHECK_NS 5000000000LL
#define RC_WATCH_REFRESH_MS 100
#define RC_WATCH_MAX 256
#define RC_TICK_NS 1000000000LL

/* Who sleeps on change_seq, as futex bitset masks: a refund wakes only
 * those it may let in, not every waiter asleep on a place it holds. */
#define RC_BIT_RATE 1u          /* no place reserved: any change may help */
#define RC_BIT_RESERVED 2u      /* asleep on a place: cooldowns and voids */
#define RC_BIT_ANY 0xffffffffu

static int futex_wait(uint32_t *word, uint32_t val, int64_t ns, uint32_t mask)
{
	struct timespec ts;
	int64_t nsec;

	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	nsec = ts.tv_nsec + ns % 1000000000;
	ts.tv_sec += (time_t)(ns / 1000000000 + nsec / 1000000000);
	ts.tv_nsec = (long)(nsec % 1000000000);
	if (syscall(SYS_futex, word, FUTEX_WAIT_BITSET, val, &ts, NULL, mask) == 0)
		return 0;
	return errno == EINTR ? -EINTR : 0;    /* EAGAIN, ETIMEDOUT: look again */
}

static void wake_word(uint32_t *word, uint32_t *sleepers, uint32_t mask)
{
	__atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(sleepers, __ATOMIC_SEQ_CST) > 0)
		syscall(SYS_futex, word, FUTEX_WAKE_BITSET, INT_MAX, NULL, NULL, mask);
}

void ratectl__wake(rc_lfile *lf, int what)
{
	rc_bucket *b = lf->hdr;
	uint32_t mask = 0;

	if (!b)
		return;
	if (what & (RC_WAKE_VOID | RC_WAKE_RESERVED))
		__atomic_add_fetch(&b->vseq, 1, __ATOMIC_SEQ_CST);
	if (what & (RC_WAKE_SLOTS | RC_WAKE_VOID))
		wake_word(&b->release_seq, &b->waiters, RC_BIT_ANY);
	if (what & (RC_WAKE_RATE | RC_WAKE_VOID))
		mask |= RC_BIT_RATE;
	if (what & (RC_WAKE_RESERVED | RC_WAKE_VOID))
		mask |= RC_BIT_RESERVED;
	if (mask)
		wake_word(&b->change_seq, &b->cwaiters, mask);
	/* Event loops wait on inotify, which a write to the file wakes (a
	 * store through the mapping would not): write a word that never
	 * changes.  Every event loop watching the file wakes, and looks at
	 * its reservations without a transaction when they are not due. */
	if (__atomic_load_n(&b->ewaiters, __ATOMIC_ACQUIRE) > 0 && lf->h->wfd >= 0) {
		uint32_t zero = 0;
		off_t at = (off_t)((char *)&b->poke - (char *)lf->h->wake);

		if (pwrite(lf->h->wfd, &zero, sizeof zero, at) < 0)
			(void)0;        /* the waiter's one-second look covers it */
	}
}

/* Sleep on word until it moves from seq and a wake-up for mask comes,
 * `ns` pass, or a signal. */
static int sleep_on(uint32_t *word, uint32_t *sleepers, uint32_t seq, int64_t ns,
                    uint32_t mask)
{
	int rc = 0;

	__atomic_add_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == seq)
		rc = futex_wait(word, seq, ns, mask);
	__atomic_sub_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
	return rc;
}

/* ---- the watch thread -------------------------------------------------- */

/* pidfds of the processes holding slots in the bucket's budgets, not
 * counting this one.  A holder already gone means a slot to take now:
 * return -1. */
struct holders_ctx {
	struct pollfd *pfd;
	int cap, k, gone;
	int32_t me;
};

static int holder_pidfd(ratectl *h, uint64_t key, const rc_holder *hd, int alive,
                        void *arg)
{
	struct holders_ctx *c = arg;
	int fd;

	(void)h;
	(void)key;
	if (!alive) {
		c->gone = 1;
		return 1;
	}
	if (hd->pid <= 0 || hd->pid == c->me)
		return 0;
	if (c->k >= c->cap)
		return 1;
	fd = (int)syscall(SYS_pidfd_open, hd->pid, 0);
	if (fd < 0 && errno == ESRCH) {
		c->gone = 1;
		return 1;
	}
	if (fd >= 0)
		c->pfd[c->k++] = (struct pollfd){ fd, POLLIN, 0 };
	return 0;
}

static int holders(rc_lfile *lf, struct pollfd *pfd, int cap)
{
	struct holders_ctx c = { pfd, cap, 0, 0, lf->h->pid };
	ratectl *h = lf->h;
	uint32_t i, n = __atomic_load_n(&lf->nids, __ATOMIC_ACQUIRE);
	MDB_txn *txn;

	if (ratectl__read_begin(h, &txn) != 0)
		return 0;
	for (i = 0; i < n && !c.gone && c.k < cap; i++)
		ratectl__holders_each(h, txn, __atomic_load_n(&lf->ids[i], __ATOMIC_ACQUIRE),
		                      holder_pidfd, &c);
	ratectl__read_end(h, txn);
	if (c.gone) {
		while (c.k > 0)
			close(pfd[--c.k].fd);
		return -1;
	}
	return c.k;
}

static void *watch_main(void *arg)
{
	rc_lfile *lf = arg;
	struct pollfd pfd[RC_WATCH_MAX + 1];
	int n, i, dead;

	for (;;) {
		pfd[0] = (struct pollfd){ lf->watch_efd, POLLIN, 0 };
		n = holders(lf, pfd + 1, RC_WATCH_MAX);
		if (n < 0) {
			ratectl__wake(lf, RC_WAKE_SLOTS);
			n = 0;
		}
		dead = poll(pfd, (nfds_t)n + 1, RC_WATCH_REFRESH_MS) > 0 &&
		       !(pfd[0].revents & POLLIN);
		for (i = 1; i <= n; i++) {
			dead |= (pfd[i].revents & POLLIN) != 0;
			close(pfd[i].fd);
		}
		if (pfd[0].revents & POLLIN)
			return NULL;
		if (dead)
			ratectl__wake(lf, RC_WAKE_SLOTS);
	}
}

/* Start the thread with every signal blocked: signals stay the caller's. */
static void watch_start(rc_lfile *lf)
{
	sigset_t all, old;

	lf->watch_efd = eventfd(0, EFD_CLOEXEC);
	if (lf->watch_efd < 0)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&lf->watch_thread, NULL, watch_main, lf) != 0) {
		close(lf->watch_efd);
		lf->watch_efd = -1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void watch_stop(rc_lfile *lf)
{
	uint64_t one = 1;

	if (lf->watch_efd < 0)
		return;
	if (write(lf->watch_efd, &one, sizeof one) == (ssize_t)sizeof one)
		pthread_join(lf->watch_thread, NULL);
	else
		pthread_detach(lf->watch_thread);
	close(lf->watch_efd);
	lf->watch_efd = -1;
}

void ratectl__watch_end(ratectl *h, rc_lfile *lf)
{
	int32_t me = h->pid;

	pthread_mutex_lock(&lf->mu);
	lf->nwatch = 0;
	watch_stop(lf);
	pthread_mutex_unlock(&lf->mu);
	if (__atomic_compare_exchange_n(&lf->hdr->watcher, &me, 0, 0,
	                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		ratectl__wake(lf, RC_WAKE_SLOTS);  /* another waiter takes the watch */
}

static int pid_alive(int32_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* Become the watcher if there is none (or it died); start the thread. */
void ratectl__slot_watch(ratectl *h, rc_lfile *lf, uint32_t id, int *watching)
{
	int32_t w = __atomic_load_n(&lf->hdr->watcher, __ATOMIC_ACQUIRE);
	uint32_t i;

	/* The budgets of the bucket whose holders the thread watches: this
	 * process's waits (another process's waits on a budget of the same
	 * bucket, rare, have the tick). */
	pthread_mutex_lock(&lf->mu);
	for (i = 0; i < lf->nids && lf->ids[i] != id; i++)
		;
	if (i == lf->nids && lf->nids < RC_WATCH_IDS)
		__atomic_store_n(&lf->ids[lf->nids++], id, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&lf->mu);
	if (*watching)
		return;
	if (w != h->pid && w != 0 && pid_alive(w))
		return;
	if (w != h->pid && !__atomic_compare_exchange_n(&lf->hdr->watcher, &w, h->pid,
	                                                0, __ATOMIC_ACQ_REL,
	                                                __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&lf->mu);
	if (lf->nwatch++ == 0)
		watch_start(lf);
	pthread_mutex_unlock(&lf->mu);
	*watching = 1;
}

void ratectl__slot_unwatch(ratectl *h, rc_lfile *lf, int *watching)
{
	int32_t me = h->pid;
	int last;

	if (!*watching)
		return;
	*watching = 0;
	pthread_mutex_lock(&lf->mu);
	last = --lf->nwatch == 0;
	if (last) {
		watch_stop(lf);
		lf->nids = 0;
	}
	pthread_mutex_unlock(&lf->mu);
	if (last && __atomic_compare_exchange_n(&lf->hdr->watcher, &me, 0, 0,
	                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		ratectl__wake(lf, RC_WAKE_SLOTS);  /* another waiter takes the watch */
}

/* ---- waiting ------------------------------------------------------------- */

int ratectl__slot_wait(ratectl *h, rc_lfile *lf, uint32_t id, uint32_t seq,
                       int64_t deadline, int *watching)
{
	int64_t now = ratectl_now(h), until;

	until = deadline - now < RC_TICK_NS ? deadline : now + RC_TICK_NS;
	if (h->clock.sleep_until)       /* injected clock: time is the test's */
		return ratectl__sleep_until(h, until);
	if (now >= until)
		return 0;
	ratectl__slot_watch(h, lf, id, watching);
	return sleep_on(&lf->hdr->release_seq, &lf->hdr->waiters, seq, until - now,
	                RC_BIT_ANY);
}

int ratectl__change_wait(ratectl *h, rc_lfile *lf, uint32_t seq, int64_t until)
{
	int64_t now = ratectl_now(h);

	if (h->clock.sleep_until || !lf)
		return ratectl__sleep_until(h, until);
	if (until <= now)
		return 0;
	return sleep_on(&lf->hdr->change_seq, &lf->hdr->cwaiters, seq, until - now,
	                RC_BIT_RATE);
}

struct place_ctx {
	rc_place *p;
	int verdict;
};

/* In a write transaction, so that it runs after the commit of the change
 * that moved vseq (which moves it before committing: see the top). */
static int place_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct place_ctx *c = arg;
	rc_budget_rec rec;
	int rc;

	rc = ratectl__rec_get(h, txn, c->p->name, &rec);
	if (rc == RATECTL_ENOTFOUND || (rc == 0 && (rec.id != c->p->id ||
	                                            rec.epoch != c->p->epoch)))
		c->verdict = 2;
	else if (rc != 0)
		return rc;
	else if (rec.sched.cooldown_until > c->p->t_adm &&
	         c->p->cooldown_until <= c->p->t_adm)
		c->verdict = 1;
	else
		c->verdict = 0;
	return 1;       /* nothing to write */
}

int ratectl__place_check(ratectl *h, rc_place *p)
{
	rc_lfile *lf = ratectl__lfile_find(h, p->id);
	uint32_t v = __atomic_load_n(&lf->hdr->vseq, __ATOMIC_SEQ_CST);
	struct place_ctx c = { p, 0 };
	int rc;

	if (v == p->vseq)
		return 0;
	if ((rc = ratectl__write(h, place_op, &c)) < 0)
		return rc;
	if (c.verdict == 0)
		p->vseq = v;
	return c.verdict;
}

int ratectl__reserved_wait(ratectl *h, rc_place *p)
{
	rc_lfile *lf = ratectl__lfile_find(h, p->id);
	rc_bucket *b = lf->hdr;
	int64_t now;
	int rc;

	for (;;) {
		uint32_t seq = __atomic_load_n(&b->change_seq, __ATOMIC_SEQ_CST);

		if ((rc = ratectl__place_check(h, p)) != 0)
			return rc;
		if ((now = ratectl_now(h)) >= p->t_adm)
			return 0;
		if (h->clock.sleep_until)
			rc = ratectl__sleep_until(h, p->t_adm);
		else
			rc = sleep_on(&b->change_seq, &b->cwaiters, seq, p->t_adm - now,
			              RC_BIT_RESERVED);
		if (rc != 0)
			return rc;
	}
}
