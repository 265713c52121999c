/*
 * wait.c - sleeping until something changes, without polling.
 *
 * Each budget's lease file maps two futex words.  release_seq is for slot
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
 * it, but for the two marked otherwise:
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
 *  reconcile refunded tokens       change          rate waiters       refund_wakes_rate_waiter
 *  a reserved place given back     change          rate waiters       undo_wakes_rate_waiter
 *  budget updated                  release,        all (reserved      update_wakes_waiters
 *                                   change          keep their place)
 *  budget reset                    release,        all; reserved      reset_voids_reservations
 *                                   change, epoch   plan again
 *  budget deleted                  release,        all: they fail     delete_wakes_waiters
 *                                   change, epoch   RATECTL_ENOTFOUND
 *  cooldown begins                 change (all)    reserved inside    cooldown_start_gives_back
 *                                                   it give back
 *  cooldown ends early             change (all)    cooldown waiters   cooldown_end_wakes_waiters
 *  reboot                          header reset    none survive one   test_ledger reboot_with_waiters
 *  shared: credit arrives (a sync  change          rate waiters       test_shared credit_wakes_waiter
 *   with Redis granted units)                       (starved: they
 *                                                    also look again
 *                                                    every 50 ms)
 *  shared: Redis unreachable       change          rate waiters: the  test_shared degraded_fallback
 *   (degraded) or back                              fallback, or
 *                                                    credit again
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
	uint32_t mask = 0;

	if (what & RC_WAKE_VOID)
		__atomic_add_fetch(&lf->hdr->epoch, 1, __ATOMIC_SEQ_CST);
	if (what & (RC_WAKE_SLOTS | RC_WAKE_VOID))
		wake_word(&lf->hdr->release_seq, &lf->hdr->waiters, RC_BIT_ANY);
	if (what & (RC_WAKE_RATE | RC_WAKE_VOID))
		mask |= RC_BIT_RATE;
	if (what & (RC_WAKE_RESERVED | RC_WAKE_VOID))
		mask |= RC_BIT_RESERVED;
	if (mask)
		wake_word(&lf->hdr->change_seq, &lf->hdr->cwaiters, mask);
	/* Event loops wait on inotify, which a write to the file wakes (a
	 * store through the mapping would not): write a byte that never
	 * changes. */
	if (__atomic_load_n(&lf->hdr->ewaiters, __ATOMIC_ACQUIRE) > 0 && lf->fd >= 0) {
		uint32_t zero = 0;

		if (pwrite(lf->fd, &zero, sizeof zero, offsetof(rc_lease_hdr, poke)) < 0)
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

/* pidfds of the processes holding slots, not counting this one.  A holder
 * already gone (ESRCH) means a slot to take now: return -1. */
static int holders(rc_lfile *lf, struct pollfd *pfd, int cap)
{
	uint32_t i, n = __atomic_load_n(&lf->hdr->hiwater, __ATOMIC_ACQUIRE);
	int32_t me = getpid();
	int k = 0;

	for (i = 0; i < n && i < RATECTL_MAX_INFLIGHT && k < cap; i++) {
		int32_t pid = __atomic_load_n(&lf->slots[i].pid, __ATOMIC_RELAXED);
		int fd;

		if (__atomic_load_n(&lf->slots[i].state, __ATOMIC_ACQUIRE) != RC_SLOT_HELD ||
		    pid <= 0 || pid == me)
			continue;
		fd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (fd < 0 && errno == ESRCH) {
			while (k > 0)
				close(pfd[--k].fd);
			return -1;
		}
		if (fd >= 0)
			pfd[k++] = (struct pollfd){ fd, POLLIN, 0 };
	}
	return k;
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
void ratectl__slot_watch(ratectl *h, rc_lfile *lf, int *watching)
{
	int32_t w = __atomic_load_n(&lf->hdr->watcher, __ATOMIC_ACQUIRE);

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
	if (last)
		watch_stop(lf);
	pthread_mutex_unlock(&lf->mu);
	if (last && __atomic_compare_exchange_n(&lf->hdr->watcher, &me, 0, 0,
	                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		ratectl__wake(lf, RC_WAKE_SLOTS);  /* another waiter takes the watch */
}

/* ---- waiting ------------------------------------------------------------- */

int ratectl__slot_wait(ratectl *h, rc_lfile *lf, uint32_t seq, int64_t deadline,
                       int *watching)
{
	int64_t now = ratectl_now(h), until;

	until = deadline - now < RC_TICK_NS ? deadline : now + RC_TICK_NS;
	if (h->clock.sleep_until)       /* injected clock: time is the test's */
		return ratectl__sleep_until(h, until);
	if (now >= until)
		return 0;
	ratectl__slot_watch(h, lf, watching);
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

int ratectl__reserved_wait(ratectl *h, rc_lfile *lf, int64_t t_adm,
                           int64_t cooldown_until, uint32_t epoch)
{
	rc_lease_hdr *hd = lf->hdr;
	int64_t now;
	int rc;

	for (;;) {
		uint32_t seq = __atomic_load_n(&hd->change_seq, __ATOMIC_SEQ_CST);

		if (__atomic_load_n(&hd->epoch, __ATOMIC_SEQ_CST) != epoch)
			return 2;
		/* A cooldown begun after the place was taken, covering it. */
		if (__atomic_load_n(&hd->cooldown_until, __ATOMIC_ACQUIRE) > t_adm &&
		    cooldown_until <= t_adm)
			return 1;
		if ((now = ratectl_now(h)) >= t_adm)
			return 0;
		if (h->clock.sleep_until)
			rc = ratectl__sleep_until(h, t_adm);
		else
			rc = sleep_on(&hd->change_seq, &hd->cwaiters, seq, t_adm - now,
			              RC_BIT_RESERVED);
		if (rc != 0)
			return rc;
	}
}
