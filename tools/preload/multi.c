/*
 * multi.c - the multi interface: a transfer is admitted when it is added,
 * released when it is done (libcurl's CURLMSG_DONE, taken as soon as the
 * shim sees it, or its removal, whichever comes first).
 *
 * Admission must not block inside curl_multi_add_handle() while this
 * multi holds admitted transfers: they only progress (and give back
 * their in-flight slots) when the program calls curl_multi_perform()
 * again, so a budget with a concurrency cap would deadlock.  A transfer
 * that cannot be admitted at once is parked instead: kept out of the
 * real multi, counted in running_handles so the program keeps driving
 * the multi, and added when its turn comes, which the shim checks in
 * every curl_multi_perform/poll/wait/socket_action call; poll and wait
 * timeouts are shortened to that time.  Only when nothing else in the
 * multi can progress does the shim wait for the budget inside the call.
 * Parked transfers keep their order.  Retries are not done here.
 *
 * Answers from the response cache.  A transfer whose admission says the
 * answer is in the cache (at once, or after waiting parked for another's
 * fetch) is never added to libcurl's multi: it stays in the program's,
 * counted in running_handles, and at the next curl_multi_perform() or
 * curl_multi_socket_action() its answer is given to its callbacks, as
 * libcurl gives a response inside those calls; then curl_multi_info_read()
 * returns its CURLMSG_DONE, and curl_multi_remove_handle() takes it out.
 *
 * Event-driven programs (CURLMOPT_TIMERFUNCTION, socket_action) call in
 * only when a socket is ready or their timer is due.  The shim puts its
 * own timer callback between libcurl and the program's (with the
 * program's CURLMOPT_TIMERDATA, which libcurl keeps): the program's timer
 * is set to libcurl's time, or earlier when the shim has something to do
 * (an answer to deliver: at once; a parked transfer: its next try), so
 * that it calls socket_action then.
 *
 * The done messages.  After each perform and socket_action the shim
 * takes libcurl's done messages off its queue (while a transfer of its
 * own is running) and keeps them, in order, with those of the answers
 * from the cache, for curl_multi_info_read(): a transfer's lease is given
 * back, and its answer stored in the cache, as soon as it is done, not
 * when the program gets around to reading it.  Many programs read them
 * only when every transfer has ended: a transfer waiting for the answer
 * another one in the same multi is fetching would otherwise wait for
 * ever.  The messages of handles removed or cleaned up meanwhile are
 * dropped, as libcurl drops them.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

/* How often a transfer waiting for an in-flight slot looks again. */
#define SLOT_POLL_NS (10 * SHIM_NS_PER_MS)

struct mstate {
	struct mstate *next;
	CURLM *m;
	struct xfer *phead, *ptail;   /* parked, oldest first */
	struct xfer *active;          /* in the real multi, not yet finished */
	unsigned nparked;
	unsigned nactive;             /* added to the real multi by the shim */
	int last_running;             /* libcurl's running_handles, last seen */
	int64_t next_try;             /* when the head may be tried again */
	struct xfer *shead, *stail;   /* answers from the cache to deliver */
	unsigned nserve;
	struct xfer *dhead;           /* ... delivered, not removed yet */
	int busy;                     /* delivering: the program's callbacks run */
	/* Done messages for curl_multi_info_read(), q[qhead..qhead+qlen),
	 * oldest first (under msg_mu: a handle's cleanup may come from
	 * another thread); cur the one handed out last. */
	CURLMsg *q;
	size_t qhead, qlen, qcap;
	CURLMsg cur;
	/* An event-driven program's CURLMOPT_TIMERFUNCTION (libcurl calls
	 * timer_hook() instead) and TIMERDATA (data_known: as far as the
	 * shim knows it, for calling the program's timer itself). */
	curl_multi_timer_callback timer_fn;
	void *timer_data;
	int data_known;
	int64_t lib_due;              /* when libcurl wants to be called, -1 never */
	int64_t told_due;             /* what the program's timer was set to */
};

static pthread_mutex_t multi_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mstate *mlist;
static unsigned nmstates;
/* Set when a program's CURLMOPT_TIMERDATA went to libcurl without memory
 * to note it: the shim does not call a timer whose data it may not know
 * until libcurl's call shows it. */
static int timerdata_lost;
/* The queues of done messages; nqueued of them in all multis. */
static pthread_mutex_t msg_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned nqueued;

/* ---- multi state ---------------------------------------------------------- */

static struct mstate *mstate_get(CURLM *m, int create)
{
	struct mstate *ms;

	if (!create && !__atomic_load_n(&nmstates, __ATOMIC_ACQUIRE))
		return NULL;
	shim_fork_guard(&multi_mu);
	shim_fork_guard(&msg_mu);
	pthread_mutex_lock(&multi_mu);
	for (ms = mlist; ms && ms->m != m; ms = ms->next)
		;
	if (!ms && create && (ms = calloc(1, sizeof *ms))) {
		ms->m = m;
		ms->lib_due = ms->told_due = -1;
		ms->data_known = !__atomic_load_n(&timerdata_lost, __ATOMIC_RELAXED);
		ms->next = mlist;
		mlist = ms;
		__atomic_store_n(&nmstates, nmstates + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&multi_mu);
	return ms;
}

static void mstate_drop(struct mstate *gone)
{
	struct mstate **pp, *ms = NULL;

	pthread_mutex_lock(&multi_mu);
	for (pp = &mlist; *pp; pp = &(*pp)->next)
		if (*pp == gone) {
			ms = *pp;
			*pp = ms->next;
			__atomic_store_n(&nmstates, nmstates - 1, __ATOMIC_RELEASE);
			break;
		}
	pthread_mutex_unlock(&multi_mu);
	if (ms) {
		pthread_mutex_lock(&msg_mu);
		__atomic_fetch_sub(&nqueued, (unsigned)ms->qlen, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&msg_mu);
		free(ms->q);
	}
	free(ms);
}

/* ---- done messages -------------------------------------------------------- */

/* Room for one more message in ms's queue: 0, or -1 without memory (then
 * nothing may be taken off libcurl's queue: it would be lost). */
static int q_room(struct mstate *ms)
{
	CURLMsg *q = NULL;
	size_t cap;
	int rc = 0;

	pthread_mutex_lock(&msg_mu);
	if (ms->qhead + ms->qlen < ms->qcap)
		goto out;
	if (ms->qhead > 0) {
		memmove(ms->q, ms->q + ms->qhead, ms->qlen * sizeof *ms->q);
		ms->qhead = 0;
	}
	if (ms->qlen < ms->qcap)
		goto out;
	cap = ms->qcap ? 2 * ms->qcap : 16;
	if (cap > SIZE_MAX / sizeof *q || !(q = malloc(cap * sizeof *q))) {
		rc = -1;
		goto out;
	}
	if (ms->qlen)
		memcpy(q, ms->q, ms->qlen * sizeof *q);
	free(ms->q);
	ms->q = q;
	ms->qcap = cap;
out:
	pthread_mutex_unlock(&msg_mu);
	return rc;
}

/* Append m (q_room() made room). */
static void q_push(struct mstate *ms, const CURLMsg *m)
{
	pthread_mutex_lock(&msg_mu);
	ms->q[ms->qhead + ms->qlen++] = *m;
	__atomic_fetch_add(&nqueued, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&msg_mu);
}

/* The oldest message into ms->cur: 1 and *left those after it, or 0
 * when there is none. */
static int q_pop(struct mstate *ms, int *left)
{
	int got = 0;

	pthread_mutex_lock(&msg_mu);
	if (ms->qlen) {
		ms->cur = ms->q[ms->qhead++];
		if (--ms->qlen == 0)
			ms->qhead = 0;
		__atomic_fetch_sub(&nqueued, 1, __ATOMIC_RELAXED);
		if (left)
			*left = ms->qlen > INT32_MAX ? INT32_MAX : (int)ms->qlen;
		got = 1;
	}
	pthread_mutex_unlock(&msg_mu);
	return got;
}

/* Drop e's messages from ms's queue (msg_mu held). */
static void q_forget_locked(struct mstate *ms, const CURL *e)
{
	size_t i, k = 0;

	for (i = 0; i < ms->qlen; i++)
		if (ms->q[ms->qhead + i].easy_handle != e)
			ms->q[ms->qhead + k++] = ms->q[ms->qhead + i];
	__atomic_fetch_sub(&nqueued, (unsigned)(ms->qlen - k), __ATOMIC_RELAXED);
	ms->qlen = k;
}

static void q_forget(struct mstate *ms, const CURL *e)
{
	if (!__atomic_load_n(&nqueued, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&msg_mu);
	q_forget_locked(ms, e);
	pthread_mutex_unlock(&msg_mu);
}

static void park(struct mstate *ms, struct xfer *x)
{
	x->parked = 1;
	x->multi = ms->m;
	x->pnext = NULL;
	x->parked_at = shim_now();
	if (ms->ptail)
		ms->ptail->pnext = x;
	else
		ms->phead = x;
	ms->ptail = x;
	ms->nparked++;
}

static void unpark(struct mstate *ms, struct xfer *x)
{
	struct xfer **pp, *prev = NULL;

	for (pp = &ms->phead; *pp; prev = *pp, pp = &(*pp)->pnext)
		if (*pp == x) {
			*pp = x->pnext;
			if (ms->ptail == x)
				ms->ptail = prev;
			ms->nparked--;
			break;
		}
	x->parked = 0;
	x->pnext = NULL;
}

static void activate(struct mstate *ms, struct xfer *x)
{
	x->multi = ms->m;
	x->active = 1;
	x->anext = ms->active;
	x->aprev = &ms->active;
	if (ms->active)
		ms->active->aprev = &x->anext;
	ms->active = x;
	ms->nactive++;
}

static void deactivate(struct mstate *ms, struct xfer *x)
{
	*x->aprev = x->anext;
	if (x->anext)
		x->anext->aprev = x->aprev;
	x->active = 0;
	x->anext = NULL;
	x->aprev = NULL;
	ms->nactive--;
}

/* ---- starting and finishing ----------------------------------------------- */

static long status_of(const struct shim_curl *a, CURL *e)
{
	long code = 0;

	if (a->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
		return 0;
	return code;
}

/* End x's transfer as far as the shim is concerned: learn, release, and
 * give the program back its callbacks and the reason for a refusal.  ok:
 * libcurl said CURLE_OK (the body the tee fed is whole). */
static void finish(const struct shim_curl *a, struct mstate *ms, struct xfer *x,
                   int sent, int ok)
{
	long status = sent ? status_of(a, x->e) : -1;

	if (x->leased) {
		if (sent) {
			shim_learn(a, x->e, x, status);
			if (ok && x->tee_on)
				shim_complete(a, x->e, x);
		}
		shim_release(x, status, 0);
	}
	xfer_tee_end(a, x);
	xfer_hdrs_end(a, x);
	if (x->abort_on) {
		xfer_abort_end(a, x);
		if (x->errbuf && x->refusal[0])
			snprintf(x->errbuf, CURL_ERROR_SIZE, "%s", x->refusal);
	}
	x->multi = NULL;
	if (ms && x->active) {
		deactivate(ms, x);
		ms->next_try = 0;       /* a slot of ours may be free now */
	}
}

/* Put x into the real multi with the outcome r of its admission. */
static CURLMcode start(const struct shim_curl *a, struct mstate *ms,
                       struct xfer *x, int r)
{
	int refused = r == SHIM_REFUSE;
	CURLMcode mc;

	x->multi = NULL;        /* not ours unless admitted or refused below */
	if (r != SHIM_REFUSE && shim_drop_begin(a, x) != 0)
		r = SHIM_REFUSE;
	if (r == SHIM_REFUSE && xfer_abort_begin(a, x) != 0) {
		shim_warn(SHIM_W_REFUSED, "%s (this libcurl cannot fail a multi "
		          "transfer early: it passes through)", x->refusal);
		shim_drop_begin(a, x);  /* at least without ratectl's headers */
		r = SHIM_PASS;
	}
	if (refused)
		shim_policy_done(x);    /* gives up a fetch for the cache it held */
	/* A transfer passed through is ours only to give the program its
	 * header list back when it is done. */
	if (r == SHIM_PASS && !x->hdrs_on)
		return a->multi_add_handle(ms->m, x->e);
	if (r == SHIM_ADMITTED)
		xfer_tee_begin(a, x, 0);
	activate(ms, x);
	if ((mc = a->multi_add_handle(ms->m, x->e)) != CURLM_OK)
		finish(a, ms, x, 0, 0);
	return mc;
}

/* x's answer is in the response cache: it waits in the program's multi
 * for the next perform or socket_action to deliver it. */
static void serve_later(struct mstate *ms, struct xfer *x)
{
	x->multi = ms->m;
	x->served = 1;
	x->snext = NULL;
	if (ms->stail)
		ms->stail->snext = x;
	else
		ms->shead = x;
	ms->stail = x;
	ms->nserve++;
}

/* Take x off ms's list of answers to deliver (x->served 1) or of those
 * delivered (2). */
static void unserve(struct mstate *ms, struct xfer *x)
{
	struct xfer **pp, *prev = NULL;

	for (pp = x->served == 1 ? &ms->shead : &ms->dhead; *pp;
	     prev = *pp, pp = &(*pp)->snext)
		if (*pp == x) {
			*pp = x->snext;
			if (x->served == 1 && ms->stail == x)
				ms->stail = prev;
			if (x->served == 1)
				ms->nserve--;
			break;
		}
	x->snext = NULL;
}

/* x leaves the program's multi (removed, cleaned up, or the multi is):
 * an answer from the cache not delivered yet never will be. */
static void served_out(struct mstate *ms, struct xfer *x)
{
	unserve(ms, x);
	if (x->served == 1)
		shim_policy_done(x);
	x->served = 0;
	x->multi = NULL;
	q_forget(ms, x->e);
}

/* Give the waiting answers to their programs' callbacks, each followed by
 * its CURLMSG_DONE, as libcurl does inside perform and socket_action. */
static void deliver(struct mstate *ms)
{
	CURLMsg done;
	struct xfer *x;

	ms->busy = 1;
	while ((x = ms->shead) && q_room(ms) == 0) {
		unserve(ms, x);
		memset(&done, 0, sizeof done);
		done.msg = CURLMSG_DONE;
		done.easy_handle = x->e;
		done.data.result = shim_hit_deliver(x);
		shim_policy_done(x);
		x->served = 2;
		x->snext = ms->dhead;
		ms->dhead = x;
		q_push(ms, &done);
	}
	ms->busy = 0;
}

/* Take libcurl's done messages now: finish the shim's transfers among
 * them, keep every message for the program, in order. */
static void harvest(const struct shim_curl *a, struct mstate *ms)
{
	CURLMsg *msg;
	struct xfer *x;
	int left;

	while (ms->nactive > 0 && q_room(ms) == 0 &&
	       (msg = a->multi_info_read(ms->m, &left))) {
		if (msg->msg == CURLMSG_DONE && (x = xfer_get(msg->easy_handle, 0)) &&
		    x->multi == ms->m && x->active)
			finish(a, ms, x, 1, msg->data.result == CURLE_OK);
		q_push(ms, msg);
	}
}

/* Would waiting inside this call stall nothing? */
static int idle(const struct mstate *ms)
{
	return ms->nactive == 0 && ms->last_running == 0 && !ms->shead;
}

/* Start parked transfers whose turn has come, oldest first. */
static void pump(const struct shim_curl *a, struct mstate *ms)
{
	while (ms->phead) {
		struct xfer *x = ms->phead;
		int64_t now = shim_now(), wait = 0;
		int r;

		if (now < ms->next_try && !idle(ms))
			return;
		r = shim_admit(x, 0, &wait);
		if (r == SHIM_WAIT && now - x->parked_at >= x->pol.timeout_ns) {
			r = SHIM_REFUSE;
			shim_refuse_timeout(x);
		} else if (r == SHIM_WAIT && idle(ms)) {
			r = shim_admit(x, 1, NULL);
		}
		if (r == SHIM_WAIT) {
			ms->next_try = now + (wait > 0 ? wait : SLOT_POLL_NS);
			return;
		}
		unpark(ms, x);
		if (r == SHIM_CACHED)
			serve_later(ms, x);
		else if (start(a, ms, x, r) != CURLM_OK)
			shim_warn(SHIM_W_REFUSED, "a parked transfer could not be added "
			          "to its multi handle; it is dropped");
	}
}

/* ---- an event-driven program's timer -------------------------------------- */

/* When the program should call in: libcurl's time, or the shim's if
 * earlier (now for an answer to deliver, a parked transfer's next try);
 * -1 never. */
static int64_t want_due(const struct mstate *ms, int64_t now)
{
	int64_t due = ms->lib_due;

	if (ms->shead)
		return now;
	if (ms->phead) {
		int64_t t = ms->next_try > now ? ms->next_try : now;

		if (due < 0 || t < due)
			due = t;
	}
	return due;
}

/* Set the program's timer to due (its callback takes milliseconds from
 * now, 0 for a time past, -1 to delete it); its return value is
 * libcurl's to see. */
static int tell(struct mstate *ms, int64_t due, int64_t now)
{
	int64_t d = due < 0 ? -1 : due <= now ? 0 :
		(due - now + SHIM_NS_PER_MS - 1) / SHIM_NS_PER_MS;

	ms->told_due = due;
	return ms->timer_fn(ms->m, d > INT32_MAX ? INT32_MAX : (long)d, ms->timer_data);
}

/* libcurl's CURLMOPT_TIMERFUNCTION while the program has one; ud is the
 * program's TIMERDATA.  The multi's state is found by m: none while it is
 * cleaned up (the program's timer does not matter then). */
static int timer_hook(CURLM *m, long timeout_ms, void *ud)
{
	struct mstate *ms = mstate_get(m, 0);
	int64_t now = shim_now();

	if (!ms || !ms->timer_fn)
		return 0;
	ms->timer_data = ud;
	ms->data_known = 1;
	ms->lib_due = timeout_ms < 0 ? -1 : now + (int64_t)timeout_ms * SHIM_NS_PER_MS;
	return tell(ms, want_due(ms, now), now);
}

/* After the shim's own work: the program's timer brought forward, or
 * given back to libcurl's time, unless it is set to that already.  A
 * timer told a time now past may have fired (they fire once, and may
 * fire a little early): it is set again. */
static void retime(struct mstate *ms)
{
	int64_t now, due, told;

	if (!ms->timer_fn || !ms->data_known)
		return;
	now = shim_now();
	due = want_due(ms, now);
	told = ms->told_due;
	if (due < 0 ? told < 0 :
	    told > now && due - told < SHIM_NS_PER_MS && told - due < SHIM_NS_PER_MS)
		return;
	tell(ms, due, now);
}

/* A poll or wait timeout shortened to the next parked transfer's turn,
 * or to none when an answer from the cache waits. */
static int cap_ms(const struct mstate *ms, int timeout_ms)
{
	int64_t d;
	int cap;

	if (ms && ms->shead)
		return 0;
	if (!ms || !ms->phead)
		return timeout_ms;
	d = ms->next_try - shim_now();
	cap = d <= 0 ? 0 : d >= INT32_MAX * SHIM_NS_PER_MS ? INT32_MAX :
		(int)((d + SHIM_NS_PER_MS - 1) / SHIM_NS_PER_MS);
	return timeout_ms < 0 || cap < timeout_ms ? cap : timeout_ms;
}

/* ---- the exported functions ----------------------------------------------- */

#define REAL_OR_FAIL(a, fn, name, err) \
	do { \
		if (!(a) || !(a)->fn) { \
			shim_no_curl(name); \
			return err; \
		} \
	} while (0)

CURLMcode curl_multi_add_handle(CURLM *m, CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct shim_policy pol;
	struct mstate *ms;
	struct xfer *x;

	REAL_OR_FAIL(a, multi_add_handle, "curl_multi_add_handle", CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !e)
		return a->multi_add_handle(m, e);
	if ((ms = mstate_get(m, 0)) && ms->busy)
		return CURLM_RECURSIVE_API_CALL;        /* from a callback */
	x = xfer_get(e, 0);
	if (x && (x->parked || x->served))
		return CURLM_ADDED_ALREADY;     /* libcurl does not know it is */
	if (x && !x->multi)
		shim_hit_clear(x);              /* a new transfer */
	if ((x && x->multi) || !shim_match(a, e, x, &pol))
		return a->multi_add_handle(m, e);
	if ((!x && !(x = xfer_get(e, 1))) || !(ms = mstate_get(m, 1))) {
		shim_policy_drop(&pol);
		return a->multi_add_handle(m, e);
	}
	x->t0 = shim_clock_ns(CLOCK_MONOTONIC);
	shim_policy_set(x, &pol);
	x->estimate = shim_estimate(&x->pol, x);
	park(ms, x);
	if (ms->phead == x)
		ms->next_try = 0;       /* first in line: try now */
	pump(a, ms);
	retime(ms);
	return CURLM_OK;
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	struct xfer *x;

	REAL_OR_FAIL(a, multi_remove_handle, "curl_multi_remove_handle",
	             CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !e || !(ms = mstate_get(m, 0)))
		return a->multi_remove_handle(m, e);
	if (ms->busy)
		return CURLM_RECURSIVE_API_CALL;
	q_forget(ms, e);        /* its message goes with it, as in libcurl */
	if (!(x = xfer_get(e, 0)) || x->multi != m)
		return a->multi_remove_handle(m, e);
	if (x->parked) {                /* never was in the real multi */
		unpark(ms, x);
		x->multi = NULL;
		return CURLM_OK;
	}
	if (x->served) {                /* nor was an answer from the cache */
		served_out(ms, x);
		return CURLM_OK;
	}
	finish(a, ms, x, 1, 0);
	return a->multi_remove_handle(m, e);
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	struct xfer *x;
	CURLMsg *msg;

	REAL_OR_FAIL(a, multi_info_read, "curl_multi_info_read", NULL);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_info_read(m, left);
	/* The messages the shim took first: they are older. */
	if (q_pop(ms, left))
		return &ms->cur;
	msg = a->multi_info_read(m, left);
	if (msg && msg->msg == CURLMSG_DONE && (x = xfer_get(msg->easy_handle, 0)) &&
	    x->multi == m && x->active)
		finish(a, ms, x, 1, msg->data.result == CURLE_OK);
	return msg;
}

/* What running_handles counts for the program: its transfers parked or
 * waiting for an answer from the cache are running, for it. */
static void count_running(struct mstate *ms, int *running)
{
	if (!running)
		return;
	ms->last_running = *running;
	*running += (int)(ms->nparked + ms->nserve);
}

CURLMcode curl_multi_perform(CURLM *m, int *running)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	CURLMcode mc;

	REAL_OR_FAIL(a, multi_perform, "curl_multi_perform", CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_perform(m, running);
	if (ms->busy)
		return CURLM_RECURSIVE_API_CALL;
	pump(a, ms);
	deliver(ms);
	mc = a->multi_perform(m, running);
	harvest(a, ms);
	count_running(ms, running);
	retime(ms);
	return mc;
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	CURLMcode mc;

	REAL_OR_FAIL(a, multi_socket_action, "curl_multi_socket_action",
	             CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_socket_action(m, s, ev, running);
	if (ms->busy)
		return CURLM_RECURSIVE_API_CALL;
	pump(a, ms);
	deliver(ms);
	mc = a->multi_socket_action(m, s, ev, running);
	harvest(a, ms);
	count_running(ms, running);
	retime(ms);
	return mc;
}

CURLMcode curl_multi_poll(CURLM *m, struct curl_waitfd *fds, unsigned n,
                          int timeout_ms, int *numfds)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;

	REAL_OR_FAIL(a, multi_poll, "curl_multi_poll", CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_poll(m, fds, n, timeout_ms, numfds);
	if (ms->busy)
		return CURLM_RECURSIVE_API_CALL;
	pump(a, ms);
	return a->multi_poll(m, fds, n, cap_ms(ms, timeout_ms), numfds);
}

CURLMcode curl_multi_wait(CURLM *m, struct curl_waitfd *fds, unsigned n,
                          int timeout_ms, int *numfds)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;

	REAL_OR_FAIL(a, multi_wait, "curl_multi_wait", CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_wait(m, fds, n, timeout_ms, numfds);
	if (ms->busy)
		return CURLM_RECURSIVE_API_CALL;
	pump(a, ms);
	return a->multi_wait(m, fds, n, cap_ms(ms, timeout_ms), numfds);
}

CURLMcode curl_multi_timeout(CURLM *m, long *timeout_ms)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	CURLMcode mc;
	int t;

	REAL_OR_FAIL(a, multi_timeout, "curl_multi_timeout", CURLM_INTERNAL_ERROR);
	mc = a->multi_timeout(m, timeout_ms);
	if (mc != CURLM_OK || shim_in_easy || !timeout_ms || !(ms = mstate_get(m, 0)))
		return mc;
	t = *timeout_ms > INT32_MAX ? INT32_MAX : (int)*timeout_ms;
	*timeout_ms = cap_ms(ms, t);
	return mc;
}

typedef void (*any_fn)(void);

/* The program's timer data goes to libcurl, and is noted. */
static CURLMcode set_timer_data(const struct shim_curl *a, CURLM *m, void *data)
{
	CURLMcode mc = a->multi_setopt(m, CURLMOPT_TIMERDATA, data);
	struct mstate *ms;

	if (mc != CURLM_OK || shim_in_easy)
		return mc;
	if ((ms = mstate_get(m, 1))) {
		ms->timer_data = data;
		ms->data_known = 1;
	} else {
		__atomic_store_n(&timerdata_lost, 1, __ATOMIC_RELAXED);
	}
	return mc;
}

/* The program's timer callback: the shim's goes to libcurl in its place
 * and calls the program's.  Without memory for the multi's state, the
 * program's goes to libcurl itself. */
static CURLMcode set_timer_fn(const struct shim_curl *a, CURLM *m,
                              curl_multi_timer_callback fn)
{
	struct mstate *ms = shim_in_easy ? NULL : mstate_get(m, 1);
	CURLMcode mc;

	if (!ms || !fn) {
		if ((mc = a->multi_setopt(m, CURLMOPT_TIMERFUNCTION, fn)) == CURLM_OK && ms)
			ms->timer_fn = NULL;
		return mc;
	}
	if ((mc = a->multi_setopt(m, CURLMOPT_TIMERFUNCTION, timer_hook)) != CURLM_OK)
		return mc;
	ms->timer_fn = fn;
	ms->lib_due = ms->told_due = -1;
	return CURLM_OK;
}

/*
 * Passed through, but for CURLMOPT_TIMERFUNCTION and TIMERDATA (above).
 * The argument is read with the type of the option's range, as
 * curl_easy_setopt's hook does.
 */
CURLMcode curl_multi_setopt(CURLM *m, CURLMoption o, ...)
{
	const struct shim_curl *a = shim_curl();
	CURLMcode mc;
	va_list ap;

	REAL_OR_FAIL(a, multi_setopt, "curl_multi_setopt", CURLM_INTERNAL_ERROR);
	va_start(ap, o);
	if (o < CURLOPTTYPE_OBJECTPOINT) {
		mc = a->multi_setopt(m, o, va_arg(ap, long));
	} else if (o < CURLOPTTYPE_FUNCTIONPOINT) {
		void *v = va_arg(ap, void *);

		mc = o == CURLMOPT_TIMERDATA ? set_timer_data(a, m, v) :
		     a->multi_setopt(m, o, v);
	} else if (o < CURLOPTTYPE_OFF_T) {
		any_fn v = va_arg(ap, any_fn);

		mc = o == CURLMOPT_TIMERFUNCTION ?
		     set_timer_fn(a, m, (curl_multi_timer_callback)v) :
		     a->multi_setopt(m, o, v);
	} else {
		mc = a->multi_setopt(m, o, va_arg(ap, curl_off_t));
	}
	va_end(ap);
	return mc;
}

CURLMcode curl_multi_cleanup(CURLM *m)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;

	REAL_OR_FAIL(a, multi_cleanup, "curl_multi_cleanup", CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_cleanup(m);
	if (ms->busy)
		return CURLM_RECURSIVE_API_CALL;
	while (ms->phead) {
		ms->phead->multi = NULL;
		unpark(ms, ms->phead);
	}
	while (ms->shead)
		served_out(ms, ms->shead);
	while (ms->dhead)
		served_out(ms, ms->dhead);
	/* libcurl detaches the rest without calling curl_multi_remove_handle. */
	while (ms->active)
		finish(a, ms, ms->active, 1, 0);
	mstate_drop(ms);        /* timer_hook finds none from now on */
	return a->multi_cleanup(m);
}

/*
 * x belongs to a handle libcurl freed by itself (one of its own, such as a
 * DNS-over-HTTPS request) whose address a new handle now has: forget it
 * without touching the handle.
 */
void shim_multi_forget(struct xfer *x)
{
	struct mstate *ms;

	if (!x->multi || !(ms = mstate_get(x->multi, 0)))
		return;
	if (x->parked)
		unpark(ms, x);
	if (x->served)
		served_out(ms, x);
	if (x->leased)
		shim_release(x, 0, 0);
	if (x->active)
		deactivate(ms, x);
	x->multi = NULL;
}

void shim_multi_detach(const struct shim_curl *api, struct xfer *x)
{
	struct mstate *ms;

	if (!x->multi || !(ms = mstate_get(x->multi, 0)))
		return;
	if (x->parked) {
		unpark(ms, x);
		x->multi = NULL;
	} else if (x->served) {
		served_out(ms, x);
	} else {
		finish(api, ms, x, 1, 0);
	}
}

void shim_multi_gone(const CURL *e)
{
	struct mstate *ms;

	if (!__atomic_load_n(&nqueued, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&multi_mu);
	pthread_mutex_lock(&msg_mu);
	for (ms = mlist; ms; ms = ms->next)
		q_forget_locked(ms, e);
	pthread_mutex_unlock(&msg_mu);
	pthread_mutex_unlock(&multi_mu);
}
