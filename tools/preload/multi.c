/*
 * multi.c - the multi interface: a transfer is admitted when it is added,
 * released when it is done (curl_multi_info_read's CURLMSG_DONE, or its
 * removal, whichever comes first).
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
 */
#include <stdlib.h>

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
};

static pthread_mutex_t multi_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mstate *mlist;
static unsigned nmstates;

/* ---- multi state ---------------------------------------------------------- */

static struct mstate *mstate_get(CURLM *m, int create)
{
	struct mstate *ms;

	if (!create && !__atomic_load_n(&nmstates, __ATOMIC_ACQUIRE))
		return NULL;
	shim_fork_guard(&multi_mu);
	pthread_mutex_lock(&multi_mu);
	for (ms = mlist; ms && ms->m != m; ms = ms->next)
		;
	if (!ms && create && (ms = calloc(1, sizeof *ms))) {
		ms->m = m;
		ms->next = mlist;
		mlist = ms;
		__atomic_store_n(&nmstates, nmstates + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&multi_mu);
	return ms;
}

static void mstate_drop(CURLM *m)
{
	struct mstate **pp, *ms = NULL;

	pthread_mutex_lock(&multi_mu);
	for (pp = &mlist; *pp; pp = &(*pp)->next)
		if ((*pp)->m == m) {
			ms = *pp;
			*pp = ms->next;
			__atomic_store_n(&nmstates, nmstates - 1, __ATOMIC_RELEASE);
			break;
		}
	pthread_mutex_unlock(&multi_mu);
	free(ms);
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
 * give the program back its callbacks and the reason for a refusal. */
static void finish(const struct shim_curl *a, struct mstate *ms, struct xfer *x,
                   int sent)
{
	long status = sent ? status_of(a, x->e) : -1;

	if (x->leased) {
		if (sent)
			shim_learn(a, x->e, x, status);
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
	/* A transfer passed through is ours only to give the program its
	 * header list back when it is done. */
	if (r == SHIM_PASS && !x->hdrs_on)
		return a->multi_add_handle(ms->m, x->e);
	if (r == SHIM_ADMITTED)
		xfer_tee_begin(a, x, 0);
	activate(ms, x);
	if ((mc = a->multi_add_handle(ms->m, x->e)) != CURLM_OK)
		finish(a, ms, x, 0);
	return mc;
}

/* Would waiting inside this call stall nothing? */
static int idle(const struct mstate *ms)
{
	return ms->nactive == 0 && ms->last_running == 0;
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
		if (start(a, ms, x, r) != CURLM_OK)
			shim_warn(SHIM_W_REFUSED, "a parked transfer could not be added "
			          "to its multi handle; it is dropped");
	}
}

/* A poll or wait timeout shortened to the next parked transfer's turn. */
static int cap_ms(const struct mstate *ms, int timeout_ms)
{
	int64_t d;
	int cap;

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
	x = xfer_get(e, 0);
	if (x && x->parked)
		return CURLM_ADDED_ALREADY;     /* libcurl does not know it is */
	if ((x && x->multi) || !shim_match(a, e, x, &pol))
		return a->multi_add_handle(m, e);
	if ((!x && !(x = xfer_get(e, 1))) || !(ms = mstate_get(m, 1))) {
		shim_policy_drop(&pol);
		return a->multi_add_handle(m, e);
	}
	shim_policy_set(x, &pol);
	x->estimate = shim_estimate(&x->pol, x);
	park(ms, x);
	if (ms->phead == x)
		ms->next_try = 0;       /* first in line: try now */
	pump(a, ms);
	return CURLM_OK;
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *e)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	struct xfer *x;

	REAL_OR_FAIL(a, multi_remove_handle, "curl_multi_remove_handle",
	             CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !e || !(ms = mstate_get(m, 0)) ||
	    !(x = xfer_get(e, 0)) || x->multi != m)
		return a->multi_remove_handle(m, e);
	if (x->parked) {                /* never was in the real multi */
		unpark(ms, x);
		x->multi = NULL;
		return CURLM_OK;
	}
	finish(a, ms, x, 1);
	return a->multi_remove_handle(m, e);
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	struct xfer *x;
	CURLMsg *msg;

	REAL_OR_FAIL(a, multi_info_read, "curl_multi_info_read", NULL);
	msg = a->multi_info_read(m, left);
	if (!shim_in_easy && msg && msg->msg == CURLMSG_DONE &&
	    (ms = mstate_get(m, 0)) && (x = xfer_get(msg->easy_handle, 0)) &&
	    x->multi == m && !x->parked)
		finish(a, ms, x, 1);
	return msg;
}

CURLMcode curl_multi_perform(CURLM *m, int *running)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;
	CURLMcode mc;

	REAL_OR_FAIL(a, multi_perform, "curl_multi_perform", CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_perform(m, running);
	pump(a, ms);
	mc = a->multi_perform(m, running);
	if (running) {
		ms->last_running = *running;
		*running += (int)ms->nparked;
	}
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
	pump(a, ms);
	mc = a->multi_socket_action(m, s, ev, running);
	if (running) {
		ms->last_running = *running;
		*running += (int)ms->nparked;
	}
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

CURLMcode curl_multi_cleanup(CURLM *m)
{
	const struct shim_curl *a = shim_curl();
	struct mstate *ms;

	REAL_OR_FAIL(a, multi_cleanup, "curl_multi_cleanup", CURLM_INTERNAL_ERROR);
	if (shim_in_easy || !(ms = mstate_get(m, 0)))
		return a->multi_cleanup(m);
	while (ms->phead) {
		ms->phead->multi = NULL;
		unpark(ms, ms->phead);
	}
	/* libcurl detaches the rest without calling curl_multi_remove_handle. */
	while (ms->active)
		finish(a, ms, ms->active, 1);
	mstate_drop(m);
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
	} else {
		finish(api, ms, x, 1);
	}
}
