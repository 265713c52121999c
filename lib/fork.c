/*
 * fork.c - the registry of open handles, and what a fork does to them.
 *
 * LMDB forbids using an environment after fork(), and an OFD lock taken by
 * the parent stays held while any child keeps a copy of its descriptor.  So
 * the child handler closes the inherited lease descriptors at once (the
 * parent's slots then depend on the parent alone) and bumps a generation
 * that makes the child's next call open its own environment
 * (ratectl__enter()).  The registry also lets a second ratectl_open() of
 * the same ledger in one process share the first handle: LMDB must not
 * open one environment twice in a process.
 */
#include <pthread.h>
#include <unistd.h>

#include "internal.h"

uint64_t ratectl__fork_gen;
ratectl *ratectl__open_list;

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
	ratectl *h;

	pthread_mutex_lock(&registry);
	for (h = ratectl__open_list; h; h = h->next_open)
		pthread_mutex_lock(&h->mu);
}

static void parent(void)
{
	ratectl *h;

	for (h = ratectl__open_list; h; h = h->next_open)
		pthread_mutex_unlock(&h->mu);
	pthread_mutex_unlock(&registry);
}

/* Only async-signal-safe work here: close() and resetting locks. */
static void child(void)
{
	ratectl *h;
	unsigned i;

	for (h = ratectl__open_list; h; h = h->next_open) {
		/* The parent's liveness lock must not live on in the child: the
		 * child closes the shared description's descriptor at once, even
		 * if it never calls ratectl again, and takes its own later. */
		if (h->wfd >= 0)
			close(h->wfd);
		h->wfd = -1;
		h->live_pid = 0;
		for (i = 0; h->buckets && i < RC_NBUCKETS; i++) {
			rc_lfile *lf = &h->buckets[i];

			/* The parent's watch thread is not the child's: forget it
			 * (writing to its eventfd would stop the parent's). */
			if (lf->watch_efd >= 0)
				close(lf->watch_efd);
			lf->watch_efd = -1;
			lf->nwatch = 0;
			lf->nids = 0;
			pthread_mutex_init(&lf->mu, NULL);
		}
		pthread_rwlock_init(&h->maplock, NULL);
		pthread_mutex_init(&h->live_mu, NULL);
		/* The parent's refiller threads are not the child's: the child
		 * starts its own at its first admission in a shared budget. */
		pthread_mutex_init(&h->share_mu, NULL);
		h->refillers = NULL;
		pthread_mutex_unlock(&h->mu);
	}
	__atomic_add_fetch(&ratectl__fork_gen, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&registry);
}

static void install(void)
{
	pthread_atfork(prepare, parent, child);
}

void ratectl__registry_lock(void)
{
	pthread_once(&atfork_once, install);
	pthread_mutex_lock(&registry);
}

void ratectl__registry_unlock(void)
{
	pthread_mutex_unlock(&registry);
}
