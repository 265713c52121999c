/*
 * lease.c - in-flight slots held by open-file-description locks.
 *
 * Each budget has a lease file, leases/<id>.  Slot i is held by an OFD
 * write lock (F_OFD_SETLK) on byte RC_LOCK_BASE + i: the kernel drops it
 * when the holder's last descriptor closes, SIGKILL included, so a dead
 * process cannot leak a slot.  The file's first pages are mapped shared by
 * every process: a header with the futex word that waiters sleep on and
 * the budget's counters, then one record per slot (pid, start, tokens)
 * that says who holds what, for inspection.  The lock is the truth; a
 * record marked held whose lock can be taken belonged to a dead process.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"


static void lease_path(const ratectl *h, uint32_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/leases/%u", h->path, id);
}

int ratectl__slot_is_ours(const rc_lfile *lf, uint32_t i)
{
	return lf->held[i / 8] & (1u << (i % 8));
}

static void set_held(rc_lfile *lf, uint32_t i, int on)
{
	if (on)
		lf->held[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		lf->held[i / 8] &= (uint8_t)~(1u << (i % 8));
}

/* 1: taken, 0: someone holds it, < 0: error. */
static int lock_byte(int fd, uint32_t i, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
	                    .l_start = RC_LOCK_BASE + (off_t)i, .l_len = 1 };

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 1;
	return errno == EAGAIN || errno == EACCES ? 0 : -errno;
}

/* Build the file under a temporary name and link it into place, so no
 * process ever maps a lease file whose header is not yet written. */
static int lfile_create(const ratectl *h, const char *path, uint32_t id)
{
	rc_lease_hdr hdr = { .magic = RC_LEASE_MAGIC, .budget_id = id };
	char tmp[PATH_MAX + 64];
	int fd, rc = 0;

	snprintf(tmp, sizeof tmp, "%s.%d.%ld.tmp", path, (int)getpid(),
	         (long)syscall(SYS_gettid));
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	          h->shared_group ? 0660 : 0600);
	if (fd < 0)
		return ratectl__err(-errno, "lease file %s: %s", tmp, strerror(errno));
	if (h->shared_group)
		fchmod(fd, 0660);       /* the umask must not shut the group out */
	/* Reserve the header page now, and the slot table's pages as the cap
	 * grows (reserve()): a mapped page that a full tmpfs cannot back is a
	 * SIGBUS, not an error.  The file has its full size from the start,
	 * so the whole mapping lies within it. */
	hdr.reserved = RC_HDR_SIZE;
	if ((rc = posix_fallocate(fd, 0, RC_HDR_SIZE)) != 0)
		rc = ratectl__err(-rc, "lease file %s: cannot reserve: %s", tmp,
		                  strerror(rc));
	else if (ftruncate(fd, RC_LEASE_FILE_SIZE) != 0)
		rc = ratectl__err(-errno, "lease file %s: %s", tmp, strerror(errno));
	else if (pwrite(fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
		rc = ratectl__err(-EIO, "lease file %s: cannot write header", tmp);
	else if (link(tmp, path) != 0 && errno != EEXIST)
		rc = ratectl__err(-errno, "lease file %s: %s", path, strerror(errno));
	unlink(tmp);
	close(fd);
	return rc;
}

static int lfile_map(const ratectl *h, uint32_t id, int fd, rc_lfile *lf,
                     const char *path)
{
	struct stat st;
	void *p;

	(void)h;
	if (fstat(fd, &st) != 0)
		return ratectl__err(-errno, "lease file %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)RC_LEASE_FILE_SIZE)
		return ratectl__err(RATECTL_ECORRUPT, "lease file %s: damaged (%lld "
		                    "bytes); run `ratectl check --repair`", path,
		                    (long long)st.st_size);
	p = mmap(NULL, RC_LEASE_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return ratectl__err(-errno, "lease file %s: mmap: %s", path,
		                    strerror(errno));
	lf->hdr = p;
	lf->slots = (rc_slot *)((char *)p + RC_HDR_SIZE);
	if (lf->hdr->magic != RC_LEASE_MAGIC || lf->hdr->budget_id != id ||
	    lf->hdr->hiwater > RATECTL_MAX_INFLIGHT) {
		munmap(p, RC_LEASE_FILE_SIZE);
		return ratectl__err(RATECTL_ECORRUPT, "lease file %s: bad header; run "
		                    "`ratectl check --repair`", path);
	}
	return 0;
}

/* Open and map budget id's lease file into *lf, creating it when asked:
 * 0, 1 when it does not exist and create is 0, or an error. */
static int lfile_attach(ratectl *h, uint32_t id, int create, rc_lfile *lf)
{
	char path[PATH_MAX];
	int fd, rc;

	lease_path(h, id, path, sizeof path);
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		if (!create)
			return 1;
		if ((rc = lfile_create(h, path, id)) != 0)
			return rc;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		return ratectl__err(errno == ELOOP ? RATECTL_EUNSAFE : -errno,
		                    "lease file %s: %s", path, strerror(errno));
	memset(lf, 0, sizeof *lf);
	if ((rc = lfile_map(h, id, fd, lf, path)) != 0) {
		close(fd);
		return rc;
	}
	lf->id = id;
	lf->fd = fd;
	lf->watch_efd = -1;
	pthread_mutex_init(&lf->mu, NULL);
	return 0;
}

static void lfile_detach(rc_lfile *lf)
{
	if (lf->fd >= 0)
		close(lf->fd);
	munmap(lf->hdr, RC_LEASE_FILE_SIZE);
	pthread_mutex_destroy(&lf->mu);
}

static int lfile_open(ratectl *h, uint32_t id, rc_lfile **out)
{
	rc_lfile *lf;
	int rc;

	if (!(lf = malloc(sizeof *lf)))
		return -ENOMEM;
	if ((rc = lfile_attach(h, id, 1, lf)) != 0) {
		free(lf);
		return rc;
	}
	*out = lf;
	return 0;
}

int ratectl__lfile_peek(ratectl *h, uint32_t id, rc_lfile *tmp, rc_lfile **out)
{
	int rc;

	if ((*out = ratectl__lfile_find(h, id)) != NULL)
		return 0;
	if ((rc = lfile_attach(h, id, 0, tmp)) == 0)
		*out = tmp;
	return rc;
}

void ratectl__lfile_unpeek(rc_lfile *tmp, rc_lfile *lf)
{
	if (lf == tmp)
		lfile_detach(tmp);
}

int ratectl__lfile_reboot(ratectl *h, uint32_t id, int64_t cooldown_until)
{
	rc_lfile tmp, *lf;
	int rc;

	if ((rc = ratectl__lfile_peek(h, id, &tmp, &lf)) != 0)
		return rc > 0 ? 0 : rc;
	ratectl__slot_reset(lf);
	__atomic_store_n(&lf->hdr->watcher, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&lf->hdr->waiters, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&lf->hdr->cwaiters, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&lf->hdr->ewaiters, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&lf->hdr->cooldown_until, cooldown_until, __ATOMIC_RELEASE);
	ratectl__lfile_unpeek(&tmp, lf);
	return 0;
}

rc_lfile *ratectl__lfile_find(const ratectl *h, uint32_t id)
{
	rc_lfile **chunk, *lf;

	if (id / RC_LF_CHUNK < RC_LF_CHUNKS) {
		chunk = __atomic_load_n(&h->lf_index[id / RC_LF_CHUNK], __ATOMIC_ACQUIRE);
		return chunk ? __atomic_load_n(&chunk[id % RC_LF_CHUNK], __ATOMIC_ACQUIRE)
		             : NULL;
	}
	for (lf = __atomic_load_n(&h->files, __ATOMIC_ACQUIRE); lf; lf = lf->next)
		if (lf->id == id)
			return lf;
	return NULL;
}

/* Under files_mu: make lf findable by its id. */
static int lfile_index(ratectl *h, rc_lfile *lf)
{
	rc_lfile ***slot = &h->lf_index[lf->id / RC_LF_CHUNK];

	if (lf->id / RC_LF_CHUNK < RC_LF_CHUNKS) {
		if (!*slot) {
			rc_lfile **chunk = calloc(RC_LF_CHUNK, sizeof *chunk);

			if (!chunk)
				return -ENOMEM;
			__atomic_store_n(slot, chunk, __ATOMIC_RELEASE);
		}
		__atomic_store_n(&(*slot)[lf->id % RC_LF_CHUNK], lf, __ATOMIC_RELEASE);
	}
	lf->next = h->files;
	__atomic_store_n(&h->files, lf, __ATOMIC_RELEASE);
	return 0;
}

int ratectl__lfile_get(ratectl *h, uint32_t id, rc_lfile **out)
{
	rc_lfile *lf;
	int rc = 0;

	if ((*out = ratectl__lfile_find(h, id)) != NULL)
		return 0;
	pthread_mutex_lock(&h->files_mu);
	if (!(lf = ratectl__lfile_find(h, id)) && (rc = lfile_open(h, id, &lf)) == 0 &&
	    (rc = lfile_index(h, lf)) != 0) {
		lfile_detach(lf);
		free(lf);
	}
	pthread_mutex_unlock(&h->files_mu);
	*out = rc == 0 ? lf : NULL;
	return rc;
}

void ratectl__lfile_close_all(ratectl *h, int unlock)
{
	rc_lfile *lf, *next;
	uint32_t i;

	for (lf = h->files; lf; lf = next) {
		int freed = 0;

		next = lf->next;
		/* Closing the descriptor drops this process's locks; mark the
		 * records first so that nobody takes them for dead holders,
		 * and wake the slot waiters once the locks are gone. */
		for (i = 0; unlock && i < RATECTL_MAX_INFLIGHT; i++)
			if (ratectl__slot_is_ours(lf, i)) {
				__atomic_store_n(&lf->slots[i].state, RC_SLOT_FREE,
				                 __ATOMIC_RELEASE);
				freed = 1;
			}
		/* A watch thread reads the mapping: it ends before the unmap.
		 * (In a forked child there is none: fork.c forgot it.) */
		if (lf->watch_efd >= 0)
			ratectl__watch_end(h, lf);
		if (lf->fd >= 0)
			close(lf->fd);
		lf->fd = -1;
		if (freed)
			ratectl__wake(lf, RC_WAKE_SLOTS);
		lfile_detach(lf);
		free(lf);
	}
	h->files = NULL;
	for (i = 0; i < RC_LF_CHUNKS; i++) {
		free(h->lf_index[i]);
		h->lf_index[i] = NULL;
	}
}

int ratectl__lfile_unlink(ratectl *h, uint32_t id)
{
	char path[PATH_MAX];

	lease_path(h, id, path, sizeof path);
	if (unlink(path) != 0 && errno != ENOENT)
		return ratectl__err(-errno, "lease file %s: %s", path, strerror(errno));
	return 0;
}

/* ---- slots --------------------------------------------------------------- */

static int claim_pass(rc_lfile *lf, uint32_t max, int dead, int32_t *slot)
{
	uint32_t i;
	int rc;

	for (i = 0; i < max; i++) {
		uint32_t st = __atomic_load_n(&lf->slots[i].state, __ATOMIC_ACQUIRE);

		if (ratectl__slot_is_ours(lf, i) || (st == RC_SLOT_HELD) != dead)
			continue;
		if ((rc = lock_byte(lf->fd, i, F_WRLCK)) < 0)
			return ratectl__err(rc, "lease lock: %s", strerror(-rc));
		if (rc == 1) {
			*slot = (int32_t)i;
			return 0;
		}
	}
	return RATECTL_EINFLIGHT;
}

/* Reserve the file's pages for slots below max before touching them. */
static int reserve(rc_lfile *lf, uint32_t max)
{
	uint32_t need = (uint32_t)(RC_HDR_SIZE + max * sizeof(rc_slot));
	int rc;

	if (__atomic_load_n(&lf->hdr->reserved, __ATOMIC_ACQUIRE) >= need)
		return 0;
	if ((rc = posix_fallocate(lf->fd, 0, need)) != 0 && rc != EOPNOTSUPP)
		return ratectl__err(-rc, "lease file of budget %u: cannot reserve "
		                    "%u bytes: %s", lf->id, need, strerror(rc));
	__atomic_store_n(&lf->hdr->reserved, need, __ATOMIC_RELEASE);
	return 0;
}

int ratectl__slot_claim(rc_lfile *lf, uint32_t max, int32_t pid, int64_t now,
                        uint64_t tokens, int32_t *slot)
{
	rc_slot *s;
	int rc;

	if ((rc = reserve(lf, max)) != 0)
		return rc;
	pthread_mutex_lock(&lf->mu);
	/* Free records first; then records of holders that may have died,
	 * whose lock we can take only if they did. */
	rc = claim_pass(lf, max, 0, slot);
	if (rc == RATECTL_EINFLIGHT && (rc = claim_pass(lf, max, 1, slot)) == 0)
		ratectl__count(lf, RC_C_RECLAIMED, 1);
	if (rc == 0) {
		s = &lf->slots[*slot];
		set_held(lf, (uint32_t)*slot, 1);
		__atomic_store_n(&s->pid, pid, __ATOMIC_RELAXED);   /* the watcher reads it */
		s->start = now;
		s->tokens = tokens;
		__atomic_store_n(&s->state, RC_SLOT_HELD, __ATOMIC_RELEASE);
		if ((uint32_t)*slot >= lf->hdr->hiwater)
			__atomic_store_n(&lf->hdr->hiwater, (uint32_t)*slot + 1,
			                 __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&lf->mu);
	return rc;
}

void ratectl__slot_release(rc_lfile *lf, int32_t slot)
{
	pthread_mutex_lock(&lf->mu);
	__atomic_store_n(&lf->slots[slot].state, RC_SLOT_FREE, __ATOMIC_RELEASE);
	set_held(lf, (uint32_t)slot, 0);
	lock_byte(lf->fd, (uint32_t)slot, F_UNLCK);
	pthread_mutex_unlock(&lf->mu);
	ratectl__wake(lf, RC_WAKE_SLOTS);
}

int ratectl__slot_locked(const rc_lfile *lf, uint32_t slot)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
	                    .l_start = RC_LOCK_BASE + (off_t)slot, .l_len = 1 };

	if (ratectl__slot_is_ours(lf, slot))
		return 1;
	if (fcntl(lf->fd, F_OFD_GETLK, &fl) != 0)
		return 1;       /* cannot tell: never call a live holder dead */
	return fl.l_type != F_UNLCK;
}

unsigned ratectl__slot_reclaim(rc_lfile *lf)
{
	uint32_t i, n = __atomic_load_n(&lf->hdr->hiwater, __ATOMIC_ACQUIRE);
	unsigned freed = 0;

	pthread_mutex_lock(&lf->mu);
	for (i = 0; i < n; i++) {
		if (ratectl__slot_is_ours(lf, i) || lf->slots[i].state != RC_SLOT_HELD)
			continue;
		if (lock_byte(lf->fd, i, F_WRLCK) != 1)
			continue;
		__atomic_store_n(&lf->slots[i].state, RC_SLOT_FREE, __ATOMIC_RELEASE);
		lock_byte(lf->fd, i, F_UNLCK);
		freed++;
	}
	pthread_mutex_unlock(&lf->mu);
	if (freed) {
		ratectl__count(lf, RC_C_RECLAIMED, freed);
		ratectl__wake(lf, RC_WAKE_SLOTS);
	}
	return freed;
}

void ratectl__slot_reset(rc_lfile *lf)
{
	pthread_mutex_lock(&lf->mu);
	memset(lf->slots, 0, (size_t)lf->hdr->hiwater * sizeof(rc_slot));
	memset(lf->held, 0, sizeof lf->held);
	lf->hdr->hiwater = 0;
	pthread_mutex_unlock(&lf->mu);
}

void ratectl__count(rc_lfile *lf, int which, uint64_t n)
{
	__atomic_add_fetch(&lf->hdr->counters[which], n, __ATOMIC_RELAXED);
}
