/*
 * guard.c - the clocks, and the fork guard: fork() waits until no thread
 * holds one of the shim's mutexes, and the child starts with them
 * unlocked.
 *
 * Lock order with the library: the shim never calls into libratectl while
 * holding a guarded mutex that a fork could need after the library's own
 * prepare handler (its registry lock, taken first when the library's
 * handler was registered last) -- see ledger_get() in policy.c.
 */
#include <pthread.h>
#include <time.h>

#include "shim.h"

/* Set by easy.c around the real curl_easy_perform, read by multi.c. */
__thread int shim_in_easy;

int64_t shim_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * SHIM_NS_PER_S + ts.tv_nsec;
}

int64_t shim_now(void)
{
	return shim_clock_ns(CLOCK_BOOTTIME);
}

static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t *guarded[8];
static unsigned nguarded;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
	unsigned i;

	pthread_mutex_lock(&guard_mu);
	for (i = 0; i < nguarded; i++)
		pthread_mutex_lock(guarded[i]);
}

static void fork_after(void)
{
	unsigned i = nguarded;

	while (i-- > 0)
		pthread_mutex_unlock(guarded[i]);
	pthread_mutex_unlock(&guard_mu);
}

static void guard_register(void)
{
	pthread_atfork(fork_prepare, fork_after, fork_after);
}

/* The shim's critical sections never nest, and none calls the library,
 * so any locking order is safe. */
void shim_fork_guard(pthread_mutex_t *mu)
{
	unsigned i, n = __atomic_load_n(&nguarded, __ATOMIC_ACQUIRE);

	for (i = 0; i < n; i++)
		if (guarded[i] == mu)
			return;
	pthread_once(&guard_once, guard_register);
	pthread_mutex_lock(&guard_mu);
	for (i = 0; i < nguarded && guarded[i] != mu; i++)
		;
	if (i == nguarded && nguarded < 8) {
		guarded[nguarded] = mu;
		__atomic_store_n(&nguarded, nguarded + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&guard_mu);
}
