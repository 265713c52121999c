/*
 * wait.c - sleeping until something changes, without polling.
 *
 * Each budget's lease file maps a futex word, release_seq, that is bumped
 * whenever a waiter might now get in: a slot released or reclaimed, the
 * budget updated, reset or its cooldown changed.  Waiters sleep on it.
 *
 * A holder that dies sends no wake-up.  So one waiting process, the
 * watcher (its pid in the header, taken by compare-and-swap), runs a small
 * thread that polls pidfds of the slots' holders: the kernel makes a pidfd
 * readable when its process has exited, after its descriptors, and so its
 * slot locks, are gone.  The thread then bumps the word and wakes everyone.
 * Other waiters check every 5 s that the watcher still lives and take
 * over if not.  Nobody polls the ledger.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/*
 * How often a waiter checks that the watcher lives.  A watcher that stops
 * waiting hands over at once; only one killed while waiting leaves a gap,
 * and only for holders that die in it (releases still wake at once).
 * Checking every second cost 64 idle waiters 0.4% of a core.  And how
 * often the watch thread refreshes its list of holders: new holders come
 * only after a wake-up, which refreshes it anyway.
 */
#define RC_WATCH_CHECK_NS 5000000000LL
#define RC_WATCH_REFRESH_MS 100
#define RC_WATCH_MAX 256

static int futex_wait(uint32_t *word, uint32_t val, int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };

	if (syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0) == 0)
		return 0;
	return errno == EINTR ? -EINTR : 0;    /* EAGAIN, ETIMEDOUT: look again */
}

void ratectl__wake(rc_lfile *lf)
{
	__atomic_add_fetch(&lf->hdr->release_seq, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&lf->hdr->waiters, __ATOMIC_SEQ_CST) > 0)
		syscall(SYS_futex, &lf->hdr->release_seq, FUTEX_WAKE, INT_MAX,
		        NULL, NULL, 0);
}

/* Sleep on the word until it moves from seq, `ns` pass, or a signal. */
static int sleep_on(rc_lfile *lf, uint32_t seq, int64_t ns)
{
	int rc = 0;

	__atomic_add_fetch(&lf->hdr->waiters, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&lf->hdr->release_seq, __ATOMIC_SEQ_CST) == seq)
		rc = futex_wait(&lf->hdr->release_seq, seq, ns);
	__atomic_sub_fetch(&lf->hdr->waiters, 1, __ATOMIC_SEQ_CST);
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
			ratectl__wake(lf);
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
			ratectl__wake(lf);
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

static int pid_alive(int32_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* Become the watcher if there is none (or it died); start the thread. */
static void watch_take(ratectl *h, rc_lfile *lf, int *watching)
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
		ratectl__wake(lf);      /* let another waiter take the watch now */
}

/* ---- waiting ------------------------------------------------------------- */

int ratectl__slot_wait(ratectl *h, rc_lfile *lf, uint32_t seq, int64_t deadline,
                       int *watching)
{
	int64_t now;
	int rc;

	if (h->clock.sleep_until) {     /* injected clock: time is the test's */
		now = ratectl_now(h);
		return ratectl__sleep_until(h, deadline < now + RC_WATCH_CHECK_NS ?
		                            deadline : now + RC_WATCH_CHECK_NS);
	}
	while ((now = ratectl_now(h)) < deadline) {
		int64_t ns = deadline - now;

		watch_take(h, lf, watching);
		if (ns > RC_WATCH_CHECK_NS)
			ns = RC_WATCH_CHECK_NS;
		if ((rc = sleep_on(lf, seq, ns)) != 0)
			return rc;
		if (__atomic_load_n(&lf->hdr->release_seq, __ATOMIC_SEQ_CST) != seq)
			return 0;
	}
	return 0;
}

int ratectl__change_wait(ratectl *h, rc_lfile *lf, uint32_t seq, int64_t until)
{
	int64_t now = ratectl_now(h);

	if (h->clock.sleep_until || !lf)
		return ratectl__sleep_until(h, until);
	if (until <= now)
		return 0;
	return sleep_on(lf, seq, until - now);
}
