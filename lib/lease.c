/*
 * lease.c - the wake file, the liveness of processes, in-flight slots.
 *
 * Nothing here is per budget outside the ledger: a process maps one file,
 * `wake`, whatever the number of budgets, and keeps one descriptor on it.
 *
 * The file's buckets hold the futex words that waiters sleep on (wait.c);
 * a budget's bucket is its id modulo RC_NBUCKETS.
 *
 * In-flight slots are counted in the budget's record and owned by
 * holders: one ".h" record per budget and process, naming the process by
 * a key drawn at random when it takes its first slot.  While it lives,
 * the process holds an open-file-description write lock on byte
 * RC_LIVE_BASE + key of the wake file, taken once: the kernel drops it
 * when its last descriptor closes, SIGKILL included (the lock's
 * description is never mapped: a mapping would hold it open).  So a holder whose
 * byte nobody holds is dead, and its slots are taken back; that is looked
 * at only when a budget's slots run out (or by `ratectl reclaim`), so a
 * capped admission costs one more record in its transaction, no system
 * call.  Keys are 61 random bits: a process that drew one already held
 * (never seen) draws again.  A fork child closes the inherited descriptor
 * (fork.c, in the handler fork() runs in the child before returning: a
 * child not yet scheduled keeps it for that moment), so it never keeps
 * its parent alive, and draws its own key.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void ratectl__key_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void key_be64(unsigned char *p, uint64_t v)
{
	ratectl__key_be32(p, (uint32_t)(v >> 32));
	ratectl__key_be32(p + 4, (uint32_t)v);
}

static uint64_t key_get64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* ---- the wake file --------------------------------------------------------- */

/* Build it under a temporary name and link it into place, so no process
 * ever maps a file whose header is not written. */
static int wake_create(const ratectl *h, const char *path)
{
	rc_wake_hdr hdr = { .magic = RC_WAKE_MAGIC, .nbuckets = RC_NBUCKETS };
	char tmp[PATH_MAX + 64];
	int fd, rc = 0;

	memcpy(hdr.boot_id, h->boot_id, RC_BOOT_ID_LEN);
	snprintf(tmp, sizeof tmp, "%s.%d.%ld.tmp", path, (int)getpid(),
	         (long)syscall(SYS_gettid));
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	          h->shared_group ? 0660 : 0600);
	if (fd < 0)
		return ratectl__err(-errno, "wake file %s: %s", tmp, strerror(errno));
	if (h->shared_group)
		fchmod(fd, 0660);       /* the umask must not shut the group out */
	/* Every page reserved now: a mapped page that a full tmpfs cannot
	 * back is a SIGBUS, not an error. */
	if ((rc = posix_fallocate(fd, 0, RC_WAKE_SIZE)) != 0 && rc != EOPNOTSUPP)
		rc = ratectl__err(-rc, "wake file %s: cannot reserve %zu bytes: %s", tmp,
		                  (size_t)RC_WAKE_SIZE, strerror(rc));
	else if ((rc = 0, ftruncate(fd, RC_WAKE_SIZE)) != 0)
		rc = ratectl__err(-errno, "wake file %s: %s", tmp, strerror(errno));
	else if (pwrite(fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
		rc = ratectl__err(-EIO, "wake file %s: cannot write its header", tmp);
	else if (link(tmp, path) != 0 && errno != EEXIST)
		rc = ratectl__err(-errno, "wake file %s: %s", path, strerror(errno));
	unlink(tmp);
	close(fd);
	return rc;
}

int ratectl__wake_open(ratectl *h)
{
	char path[PATH_MAX];
	struct stat st;
	void *p;
	int fd, rc;
	unsigned i;

	snprintf(path, sizeof path, "%s/wake", h->path);
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		if ((rc = wake_create(h, path)) != 0)
			return rc;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		return ratectl__err(errno == ELOOP ? RATECTL_EUNSAFE : -errno,
		                    "wake file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = ratectl__err(-errno, "wake file %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size != (off_t)RC_WAKE_SIZE) {
		rc = ratectl__err(RATECTL_ECORRUPT, "wake file %s: not a ratectl wake "
		                  "file (%lld bytes, expected %zu); run `ratectl check "
		                  "--repair`", path, (long long)st.st_size,
		                  (size_t)RC_WAKE_SIZE);
		goto fail;
	}
	p = mmap(NULL, RC_WAKE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rc = ratectl__err(-errno, "wake file %s: mmap: %s", path, strerror(errno));
		goto fail;
	}
	h->wake = p;
	if (h->wake->magic != RC_WAKE_MAGIC || h->wake->nbuckets != RC_NBUCKETS) {
		munmap(p, RC_WAKE_SIZE);
		h->wake = NULL;
		rc = ratectl__err(RATECTL_ECORRUPT, "wake file %s: bad header; run "
		                  "`ratectl check --repair`", path);
		goto fail;
	}
	if (!h->buckets && !(h->buckets = calloc(RC_NBUCKETS, sizeof *h->buckets))) {
		munmap(p, RC_WAKE_SIZE);
		h->wake = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	/* The locks (liveness, refill) go on a description of their own,
	 * never mapped: a mapping holds its description open, and a fork
	 * child, which keeps the mapping, would keep the locks on it alive
	 * after this process died.  The mapping's descriptor is closed. */
	close(fd);
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = ratectl__err(-errno, "wake file %s: %s", path, strerror(errno));
		munmap(p, RC_WAKE_SIZE);
		h->wake = NULL;
		return rc;
	}
	for (i = 0; i < RC_NBUCKETS; i++) {
		rc_lfile *lf = &h->buckets[i];

		lf->id = i;
		lf->h = h;
		lf->hdr = (rc_bucket *)((char *)p + RC_WAKE_HDR) + i;
		lf->watch_efd = -1;
		lf->nwatch = 0;
		pthread_mutex_init(&lf->mu, NULL);
	}
	h->wfd = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

void ratectl__wake_close(ratectl *h)
{
	unsigned i;

	if (!h->wake)
		return;
	/* A watch thread reads the mapping: it ends before the unmap.  (In a
	 * forked child there is none: fork.c forgot it.) */
	for (i = 0; i < RC_NBUCKETS; i++)
		if (h->buckets[i].watch_efd >= 0)
			ratectl__watch_end(h, &h->buckets[i]);
	if (h->wfd >= 0)
		close(h->wfd);  /* the liveness lock goes with it */
	h->wfd = -1;
	h->live_pid = 0;
	/* Slot waiters look again: this process's slots are reclaimable. */
	for (i = 0; i < RC_NBUCKETS; i++)
		if (__atomic_load_n(&h->buckets[i].hdr->waiters, __ATOMIC_ACQUIRE))
			ratectl__wake(&h->buckets[i], RC_WAKE_SLOTS);
	munmap(h->wake, RC_WAKE_SIZE);
	h->wake = NULL;
	for (i = 0; i < RC_NBUCKETS; i++) {
		pthread_mutex_destroy(&h->buckets[i].mu);
		h->buckets[i].hdr = NULL;
	}
}

rc_lfile *ratectl__lfile_find(const ratectl *h, uint32_t id)
{
	return &h->buckets[id & (RC_NBUCKETS - 1)];
}

void ratectl__wake_reboot(ratectl *h)
{
	unsigned i;

	for (i = 0; i < RC_NBUCKETS; i++) {
		rc_bucket *b = h->buckets[i].hdr;

		__atomic_store_n(&b->watcher, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&b->waiters, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&b->cwaiters, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&b->ewaiters, 0, __ATOMIC_RELEASE);
	}
}

/* ---- liveness ---------------------------------------------------------------- */

/* 1: byte RC_LIVE_BASE + key is held by another open file description
 * (its process lives); 0: nobody holds it.  Cannot tell: 1 (never call a
 * live holder dead). */
static int key_alive(const ratectl *h, uint64_t key)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
	                    .l_start = RC_LIVE_BASE + (off_t)key, .l_len = 1 };

	if (h->live_pid == h->pid && key == h->live_key)
		return 1;       /* ours: GETLK does not see our own lock */
	if (fcntl(h->wfd, F_OFD_GETLK, &fl) != 0)
		return 1;
	return fl.l_type != F_UNLCK;
}

/* This process's key, its lock taken at the first call (after a fork, the
 * child's own). */
static int live_key(ratectl *h, uint64_t *key)
{
	int rc = 0, tries;

	if (__atomic_load_n(&h->live_pid, __ATOMIC_ACQUIRE) == h->pid) {
		*key = h->live_key;
		return 0;
	}
	pthread_mutex_lock(&h->live_mu);
	for (tries = 0; h->live_pid != h->pid && tries < 8; tries++) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1 };
		uint64_t k;

		if (getrandom(&k, sizeof k, 0) != (ssize_t)sizeof k) {
			rc = ratectl__err(-errno, "liveness key: getrandom: %s",
			                  strerror(errno));
			break;
		}
		k &= RC_LIVE_KEYS - 1;
		fl.l_start = RC_LIVE_BASE + (off_t)k;
		if (fcntl(h->wfd, F_OFD_SETLK, &fl) == 0) {
			h->live_key = k;
			__atomic_store_n(&h->live_pid, h->pid, __ATOMIC_RELEASE);
		} else if (errno != EAGAIN && errno != EACCES) {
			rc = ratectl__err(-errno, "liveness lock in %s/wake: %s", h->path,
			                  strerror(errno));
			break;
		}
	}
	if (rc == 0 && h->live_pid != h->pid)
		rc = ratectl__err(-EAGAIN, "liveness lock in %s/wake: no free key",
		                  h->path);
	*key = h->live_key;
	pthread_mutex_unlock(&h->live_mu);
	return rc;
}

/* ---- holders ----------------------------------------------------------------- */

static void holder_key(unsigned char k[RC_HOLDER_KEY_LEN], uint32_t id, uint64_t key)
{
	k[0] = '.';
	k[1] = 'h';
	ratectl__key_be32(k + 2, id);
	key_be64(k + 6, key);
}

static int holder_load(const MDB_val *v, rc_holder *out)
{
	if (v->mv_size != sizeof *out)
		return -1;
	memcpy(out, v->mv_data, sizeof *out);
	return 0;
}

/* Add n (> 0) or take -n slots of this process in budget id: one search,
 * and the record is updated in place (same size), so other cursors of the
 * transaction stay where they are.  A holder whose count falls to 0 keeps
 * its record for its next slot; reclaim and the budget's removal drop it
 * once the process is gone.  0, 1 when none was recorded (n < 0), 2 when
 * the record was inserted (other cursors may have moved), or an error. */
static int holder_add(ratectl *h, MDB_txn *txn, uint32_t id, int n, int64_t now,
                      uint64_t tokens)
{
	unsigned char kb[RC_HOLDER_KEY_LEN];
	MDB_val k = { sizeof kb, kb }, v;
	MDB_cursor *cur;
	rc_holder hd = { 0 };
	uint64_t key;
	int rc, found;

	if ((rc = live_key(h, &key)) != 0)
		return rc;
	holder_key(kb, id, key);
	if ((rc = mdb_cursor_open(txn, h->dbi, &cur)) != 0)
		return ratectl__mdb_err(h, rc, "read a slot holder");
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
	found = rc == 0;
	if (found && holder_load(&v, &hd) != 0) {
		/* Never rewritten on what could not be read: its count is
		 * unknown, and with it the budget's. */
		mdb_cursor_close(cur);
		return ratectl__err(RATECTL_ECORRUPT, "ledger %s: the slot holder record "
		                    "of process %d in budget %u is damaged (%zu bytes); "
		                    "run `ratectl check --repair`", h->path, (int)h->pid,
		                    id, v.mv_size);
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		mdb_cursor_close(cur);
		return ratectl__mdb_err(h, rc, "read a slot holder");
	}
	if (n > 0) {
		if (hd.count == 0)
			hd.since = now;
		hd.pid = h->pid;
		hd.count += (uint32_t)n;
		hd.tokens += tokens;
	} else {
		if (hd.count == 0) {
			mdb_cursor_close(cur);
			return 1;       /* none recorded: nothing to give back */
		}
		hd.count -= 1;
		hd.tokens = hd.tokens > tokens ? hd.tokens - tokens : 0;
	}
	v = (MDB_val){ sizeof hd, &hd };
	rc = found ? mdb_cursor_put(cur, &k, &v, MDB_CURRENT) : mdb_put(txn, h->dbi, &k, &v, 0);
	mdb_cursor_close(cur);
	if (rc == 0)
		return found ? 0 : 2;
	return rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, "write a slot holder");
}

int ratectl__holders_each(ratectl *h, MDB_txn *txn, uint32_t id,
                          rc_holder_fn fn, void *ctx)
{
	unsigned char kb[RC_HOLDER_KEY_LEN];
	MDB_cursor *cur;
	MDB_val k = { 6, kb }, v;
	int rc;

	holder_key(kb, id, 0);
	if ((rc = mdb_cursor_open(txn, h->dbi, &cur)) != 0)
		return ratectl__mdb_err(h, rc, "read slot holders");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		rc_holder hd;
		uint64_t key;

		if (k.mv_size != RC_HOLDER_KEY_LEN || memcmp(k.mv_data, kb, 6) != 0)
			break;
		key = key_get64((const unsigned char *)k.mv_data + 6);
		if (holder_load(&v, &hd) != 0) {
			rc = ratectl__err(RATECTL_ECORRUPT, "ledger %s: a slot holder "
			                  "record of budget %u is damaged (%zu bytes); run "
			                  "`ratectl check --repair`", h->path, id, v.mv_size);
			break;
		}
		if (hd.count == 0)
			continue;       /* kept for its next slot */
		if ((rc = fn(h, key, &hd, key_alive(h, key), ctx)) != 0) {
			mdb_cursor_close(cur);
			return rc;
		}
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND || rc == 0)
		return 0;
	if (rc == RATECTL_ECORRUPT)
		return rc;
	return ratectl__mdb_err(h, rc, "read slot holders");
}

int ratectl__slot_reclaim(ratectl *h, MDB_txn *txn, rc_budget_rec *rec,
                          unsigned *dropped)
{
	unsigned char kb[RC_HOLDER_KEY_LEN];
	MDB_cursor *cur;
	MDB_val k = { 6, kb }, v;
	unsigned freed = 0;
	int rc;

	holder_key(kb, rec->id, 0);
	if ((rc = mdb_cursor_open(txn, h->dbi, &cur)) != 0)
		return ratectl__mdb_err(h, rc, "read slot holders");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		rc_holder hd;

		if (k.mv_size != RC_HOLDER_KEY_LEN || memcmp(k.mv_data, kb, 6) != 0)
			break;
		/* A damaged record is left alone: its count is unknown
		 * (`ratectl check` reports it). */
		if (holder_load(&v, &hd) != 0 ||
		    key_alive(h, key_get64((const unsigned char *)k.mv_data + 6)))
			continue;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		freed += hd.count;
		if (dropped)
			(*dropped)++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, "free dead slots");
	if (freed) {
		rec->inflight = rec->inflight > freed ? rec->inflight - freed : 0;
		rec->counters[RC_C_RECLAIMED] += freed;
		ratectl__wake(ratectl__lfile_find(h, rec->id), RC_WAKE_SLOTS);
	}
	return (int)freed;
}

int ratectl__slot_claim(ratectl *h, MDB_txn *txn, rc_budget_rec *rec,
                        int64_t now, uint64_t tokens, int *moved)
{
	int rc;

	if (rec->inflight >= rec->max_inflight) {
		unsigned dropped = 0;

		if ((rc = ratectl__slot_reclaim(h, txn, rec, &dropped)) < 0)
			return rc;
		*moved |= dropped > 0;
		if (rec->inflight >= rec->max_inflight)
			return RATECTL_EINFLIGHT;
	}
	if ((rc = holder_add(h, txn, rec->id, 1, now, tokens)) < 0)
		return rc;
	*moved |= rc == 2;
	rec->inflight++;
	return 0;
}

int ratectl__slot_put(ratectl *h, MDB_txn *txn, rc_budget_rec *rec, uint64_t tokens)
{
	int rc = holder_add(h, txn, rec->id, -1, 0, tokens);

	if (rc < 0)
		return rc;
	/* 1: none recorded (reclaimed as dead: cannot be while we live, or
	 * the budget was made again): the count is not ours to lower. */
	if (rc == 0 && rec->inflight > 0)
		rec->inflight--;
	ratectl__wake(ratectl__lfile_find(h, rec->id), RC_WAKE_SLOTS);
	return 0;
}

int ratectl__holders_drop(ratectl *h, MDB_txn *txn, uint32_t id)
{
	unsigned char kb[RC_HOLDER_KEY_LEN];
	MDB_cursor *cur;
	MDB_val k, v;
	size_t plen = id ? 6 : 2;
	int rc;

	holder_key(kb, id, 0);
	k = (MDB_val){ plen, kb };
	if ((rc = mdb_cursor_open(txn, h->dbi, &cur)) != 0)
		return ratectl__mdb_err(h, rc, "drop slot holders");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, kb, plen) != 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, "drop slot holders");
	return 0;
}

/* ---- counters outside an admission ---------------------------------------- */

struct count_ctx {
	const char *name;
	uint32_t id;
	int which;
	uint64_t n;
};

static int count_op(ratectl *h, MDB_txn *txn, void *arg)
{
	struct count_ctx *c = arg;
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_get(h, txn, c->name, &rec)) != 0)
		return rc == RATECTL_ENOTFOUND ? 1 : rc;
	if (rec.id != c->id)
		return 1;
	rec.counters[c->which] += c->n;
	return ratectl__rec_put(h, txn, c->name, &rec);
}

void ratectl__count_later(ratectl *h, const char *name, uint32_t id, int which,
                          uint64_t n)
{
	struct count_ctx c = { name, id, which, n };
	char keep[RATECTL_ERRMSG_KEEP];

	if (!id)
		return;
	/* The caller's error message is the one that matters. */
	ratectl__err_save(keep, sizeof keep);
	ratectl__write(h, count_op, &c);
	ratectl__err_restore(keep);
}

/* ---- tags ------------------------------------------------------------------- */

int ratectl_tag_check(const char *tag)
{
	size_t i, n = tag ? strlen(tag) : 0;

	if (n == 0 || n > RATECTL_TAG_MAX)
		return ratectl__err(RATECTL_EBADNAME, "tag '%.64s%s': must be 1 to %d "
		                    "bytes", tag ? tag : "", n > 64 ? "..." : "",
		                    RATECTL_TAG_MAX);
	for (i = 0; i < n; i++) {
		char c = tag[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
		      c == ':' || c == '/'))
			return ratectl__err(RATECTL_EBADNAME, "tag '%s': byte %zu is not "
			                    "one of A-Z a-z 0-9 . _ - : /", tag, i + 1);
	}
	return 0;
}

static void tags_key(unsigned char kb[6], uint32_t id)
{
	kb[0] = '.';
	kb[1] = 't';
	ratectl__key_be32(kb + 2, id);
}

int ratectl__tags_load(const MDB_val *v, rc_tags_rec *t)
{
	size_t base = offsetof(rc_tags_rec, ent);

	memset(t, 0, sizeof *t);
	if (v->mv_size < base || v->mv_size > sizeof *t)
		return -1;
	memcpy(t, v->mv_data, v->mv_size);
	if (t->magic != RC_TAGS_MAGIC || t->n > RATECTL_TAGS_TOP ||
	    v->mv_size != base + t->n * sizeof(rc_tag_ent))
		return -1;
	for (unsigned i = 0; i < t->n; i++)
		t->ent[i].tag[RATECTL_TAG_MAX] = '\0';
	return 0;
}

static uint64_t add_clamped(uint64_t v, int64_t d)
{
	return d < 0 && (uint64_t)-d > v ? 0 : v + (uint64_t)d;
}

int ratectl__tag_count(ratectl *h, MDB_txn *txn, uint32_t id, const char *tag,
                       int64_t requests, int64_t tokens)
{
	unsigned char kb[6];
	MDB_val k = { sizeof kb, kb }, v;
	rc_tags_rec t;
	rc_tag_ent *e = NULL;
	unsigned i;
	int rc;

	tags_key(kb, id);
	rc = mdb_get(txn, h->dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		memset(&t, 0, sizeof t);        /* none yet */
		t.magic = RC_TAGS_MAGIC;
	} else if (rc != 0) {
		return ratectl__mdb_err(h, rc, "read tags");
	} else if (ratectl__tags_load(&v, &t) != 0) {
		/* Damaged: never rewritten on what could not be read; the
		 * admission goes on uncounted, ratectl_tags() says so. */
		return 0;
	}
	for (i = 0; tag && *tag && i < t.n; i++)
		if (strcmp(t.ent[i].tag, tag) == 0) {
			e = &t.ent[i];
			break;
		}
	if (!e && tag && *tag && requests > 0) {
		/* Space-saving: a new tag takes a free place, or that of the
		 * least-counted one, whose counts it inherits as its error. */
		if (t.n < RATECTL_TAGS_TOP) {
			e = &t.ent[t.n++];
			memset(e, 0, sizeof *e);
		} else {
			e = &t.ent[0];
			for (i = 1; i < t.n; i++)
				if (t.ent[i].requests < e->requests)
					e = &t.ent[i];
			e->error = e->requests;
			e->tokens = 0;
		}
		snprintf(e->tag, sizeof e->tag, "%s", tag);
	}
	if (!e)
		return 0;       /* evicted meanwhile: its counts are the rest's */
	e->requests = add_clamped(e->requests, requests);
	e->tokens = add_clamped(e->tokens, tokens);
	if (e->requests == 0 && e->error == 0)
		*e = t.ent[--t.n];      /* its only request given back: gone */
	v = (MDB_val){ offsetof(rc_tags_rec, ent) + t.n * sizeof(rc_tag_ent), &t };
	rc = mdb_put(txn, h->dbi, &k, &v, 0);
	return rc == 0 || rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, "write tags");
}

int ratectl__tags_drop(ratectl *h, MDB_txn *txn, uint32_t id)
{
	unsigned char kb[6];
	MDB_val k = { sizeof kb, kb };
	int rc;

	tags_key(kb, id);
	rc = mdb_del(txn, h->dbi, &k, NULL);
	if (rc == 0 || rc == MDB_NOTFOUND || rc == MDB_MAP_FULL)
		return rc == MDB_NOTFOUND ? 0 : rc;
	return ratectl__mdb_err(h, rc, "drop tags");
}

/* Used by ratectl_tags() (budget.c). */
int ratectl__tags_read(ratectl *h, MDB_txn *txn, uint32_t id, rc_tags_rec *t)
{
	unsigned char kb[6];
	MDB_val k = { sizeof kb, kb }, v;
	int rc;

	tags_key(kb, id);
	rc = mdb_get(txn, h->dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		memset(t, 0, sizeof *t);
		return 0;
	}
	if (rc != 0)
		return ratectl__mdb_err(h, rc, "read tags");
	if (ratectl__tags_load(&v, t) != 0)
		return ratectl__err(RATECTL_ECORRUPT, "ledger %s: the tags of budget %u "
		                    "are damaged (%zu bytes); run `ratectl check --repair`",
		                    h->path, id, v.mv_size);
	return 0;
}

/* ---- records of dead processes that held nothing ------------------------ */

int ratectl__holders_gc(ratectl *h, MDB_txn *txn, unsigned char *from, unsigned max)
{
	unsigned char start[RC_HOLDER_KEY_LEN] = { '.', 'h' };
	MDB_cursor *cur;
	MDB_val k, v;
	unsigned seen = 0;
	int rc;

	if (from && from[0] == '.' && from[1] == 'h')
		memcpy(start, from, sizeof start);
	k = (MDB_val){ from && from[0] ? sizeof start : 2, start };
	if ((rc = mdb_cursor_open(txn, h->dbi, &cur)) != 0)
		return ratectl__mdb_err(h, rc, "read slot holders");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && seen < max;
	     seen++) {
		rc_holder hd;

		if (k.mv_size < 2 || memcmp(k.mv_data, ".h", 2) != 0) {
			rc = MDB_NOTFOUND;
			break;
		}
		if (k.mv_size == RC_HOLDER_KEY_LEN && holder_load(&v, &hd) == 0 &&
		    hd.count == 0 &&
		    !key_alive(h, key_get64((const unsigned char *)k.mv_data + 6))) {
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
			/* (after a delete, MDB_NEXT gives the record that
			 * followed the one deleted) */
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (from)       /* where the next step starts; "" from the first */
		memset(from, 0, RC_HOLDER_KEY_LEN);
	if (from && rc == 0 && k.mv_size == RC_HOLDER_KEY_LEN &&
	    memcmp(k.mv_data, ".h", 2) == 0)
		memcpy(from, k.mv_data, RC_HOLDER_KEY_LEN);
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, "drop dead holders");
	return 0;
}
