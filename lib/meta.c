/*
 * meta.c - the ledger's format record (".meta") and what a reboot does
 * to the times stored under it.
 *
 * Stored times are on CLOCK_BOOTTIME, which restarts at boot.  The record
 * keeps the boot id they belong to and, for that boot, the largest
 * CLOCK_REALTIME - CLOCK_BOOTTIME offset seen and the boot time it was
 * last sampled at (the stamp).  The offset is sampled again at every
 * open and every change other than an admission, and only ever grows
 * within a boot: an NTP step forward later in the boot makes stored
 * times later in wall time, and the largest offset keeps every debt; a
 * step back is ignored, which can only keep a debt longer, never forgive
 * it.  When a new boot opens the ledger, every stored time moves through
 * the wall clock onto the new boot's clock (ratectl__gcra_rebase), the
 * holders of slots are dropped and the wake file's sleepers forgotten: no
 * holder or waiter survives a reboot.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const MDB_val meta_key = { sizeof RC_META_KEY - 1, (void *)(uintptr_t)RC_META_KEY };

static int64_t rt_offset(ratectl *h)
{
	return ratectl__realtime(h) - ratectl_now(h);
}

static int meta_put(ratectl *h, MDB_txn *txn, const rc_meta *m)
{
	MDB_val k = meta_key, v = { sizeof *m, (void *)m };
	int rc = mdb_put(txn, h->dbi, &k, &v, 0);

	return rc == 0 || rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, "write meta");
}

/* The record, validated: 0, RATECTL_ECORRUPT, _EVERSION, MDB_NOTFOUND. */
static int meta_get(ratectl *h, MDB_txn *txn, rc_meta *m)
{
	MDB_val k = meta_key, v;
	int rc;

	rc = mdb_get(txn, h->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return rc;
	if (rc != 0)
		return ratectl__mdb_err(h, rc, "read meta");
	memset(m, 0, sizeof *m);
	memcpy(m, v.mv_data, v.mv_size < sizeof *m ? v.mv_size : sizeof *m);
	if (v.mv_size < 8 || m->magic != RC_META_MAGIC)
		return ratectl__err(RATECTL_ECORRUPT,
		                    "ledger %s: format record is damaged; run "
		                    "`ratectl check --repair`", h->path);
	if (m->format > RATECTL_FORMAT_VERSION)
		return ratectl__err(RATECTL_EVERSION,
		                    "ledger %s: format version %u is newer than this "
		                    "build (%u); upgrade ratectl", h->path, m->format,
		                    RATECTL_FORMAT_VERSION);
	if (m->format < 1 || v.mv_size != sizeof *m)
		return ratectl__err(RATECTL_ECORRUPT,
		                    "ledger %s: format record is damaged (version %u, "
		                    "%zu bytes)", h->path, m->format, v.mv_size);
	return 0;
}

/* Sample the wall clock's offset again: the largest one of the boot. */
static void meta_sample(ratectl *h, rc_meta *m)
{
	int64_t off = rt_offset(h);

	if (off > m->rt_offset)
		m->rt_offset = off;
	m->stamp = ratectl_now(h);
}

static int meta_create(ratectl *h, MDB_txn *txn)
{
	MDB_stat st;
	rc_meta m;
	int rc;

	/* A fresh environment has nothing in it; anything else is someone
	 * else's LMDB database, which we must not write into. */
	if ((rc = mdb_stat(txn, h->dbi, &st)) != 0)
		return ratectl__mdb_err(h, rc, "read the table");
	if (st.ms_entries > 0)
		return ratectl__err(RATECTL_ECORRUPT,
		                    "ledger %s: data.mdb is an LMDB database but not a "
		                    "ratectl ledger", h->path);
	memset(&m, 0, sizeof m);
	m.magic = RC_META_MAGIC;
	m.format = RATECTL_FORMAT_VERSION;
	m.next_id = 1;
	m.rt_offset = rt_offset(h);
	m.stamp = ratectl_now(h);
	memcpy(m.boot_id, h->boot_id, RC_BOOT_ID_LEN);
	return meta_put(h, txn, &m);
}

/* ---- reboots -------------------------------------------------------------- */

struct rebase_ctx {
	int64_t shift;
	int64_t stamp;
	int64_t now;
};

/* A time of the last boot on this boot's clock: never in the future, and
 * 0 stays "never". */
static int64_t shift_time(int64_t t, const struct rebase_ctx *c)
{
	int64_t v;

	if (__builtin_add_overflow(t, c->shift, &v) || v > c->now)
		v = c->now;
	return v > 1 ? v : 1;
}

static int rebase_each(ratectl *h, MDB_txn *txn, const char *name,
                       const MDB_val *v, void *arg)
{
	struct rebase_ctx *c = arg;
	rc_budget_rec rec;
	int rc;

	if ((rc = ratectl__rec_load(name, v, &rec)) != 0)
		return rc;
	ratectl__gcra_rebase(rec.lim, rec.nlimits, &rec.sched, c->shift, c->stamp,
	                     c->now);
	rec.inflight = 0;       /* no holder or waiter survives a reboot */
	rec.last_use = rec.last_use ? shift_time(rec.last_use, c) : 0;
	rec.made = rec.made ? shift_time(rec.made, c) : 0;
	if (rec.reserved0 & RC_F_TENANT) {
		rec.tn.tk_serve = rec.tn.tk_next;
		rec.tn.tk_gone = 0;
		rec.tn.tk_since = 0;
		memset(rec.tn.gate, 0, sizeof rec.tn.gate);
	}
	if ((rc = ratectl__share_reboot(h, txn, name, &rec)) != 0)
		return rc;
	return ratectl__rec_put(h, txn, name, &rec);
}

static int reboot(ratectl *h, MDB_txn *txn, rc_meta *m)
{
	int64_t off = rt_offset(h);
	struct rebase_ctx c = { 0, m->stamp, ratectl_now(h) };
	int rc;

	/* A stored time t of the last boot is wall time t + its offset, so
	 * t + old - new on this boot's clock. */
	if (__builtin_sub_overflow(m->rt_offset, off, &c.shift))
		c.shift = m->rt_offset > off ? INT64_MAX : INT64_MIN;
	if ((rc = ratectl__budget_each(h, txn, rebase_each, &c)) != 0 ||
	    (rc = ratectl__holders_drop(h, txn, 0)) != 0)
		return rc;
	ratectl__wake_reboot(h);
	m->rt_offset = off;
	m->stamp = c.now;
	memcpy(m->boot_id, h->boot_id, RC_BOOT_ID_LEN);
	return 0;
}

/* ---- upgrade from format 2 --------------------------------------------- */

/* Format 2's record: the same up to the flags, then the limits. */
#define RC_V2_FIXED (offsetof(rc_budget_rec, reserved0) + 4 + 8)
/* Format 2's lease file: its header's counters, and its slot table. */
#define RC_V2_HDR 4096
#define RC_V2_COUNTERS 40
#define RC_V2_SLOT 32
#define RC_V2_LOCK_BASE (1 << 20)

/* Budget id's counters from its format-2 lease file (zeros without one).
 * A slot whose lock someone holds means a process of the older build is
 * admitting: the upgrade must wait for it to stop. */
static int upgrade_lease(ratectl *h, const char *name, uint32_t id, rc_budget_rec *rec)
{
	char path[PATH_MAX];
	unsigned char hdr[RC_V2_COUNTERS + 9 * 8];
	uint32_t hiwater, i;
	ssize_t got;
	int fd, rc = 0;

	snprintf(path, sizeof path, "%s/leases/%u", h->path, id);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 :
		       ratectl__err(-errno, "upgrade: lease file %s: %s", path, strerror(errno));
	got = pread(fd, hdr, sizeof hdr, 0);
	if (got != (ssize_t)sizeof hdr) {
		rc = ratectl__err(got < 0 ? -errno : RATECTL_ECORRUPT, "upgrade: lease "
		                  "file %s: cannot read its header (%s)", path,
		                  got < 0 ? strerror(errno) : "short");
		goto out;
	}
	memcpy(&hiwater, hdr + 8, sizeof hiwater);
	for (i = 0; i < 9 && i < RC_C_COUNT; i++)
		memcpy(&rec->counters[i], hdr + RC_V2_COUNTERS + 8 * i, 8);
	for (i = 0; i < hiwater && i < RATECTL_MAX_INFLIGHT; i++) {
		struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
		                    .l_start = RC_V2_LOCK_BASE + (off_t)i, .l_len = 1 };

		if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
			rc = ratectl__err(RATECTL_EVERSION, "ledger %s: budget '%s' has a "
			                  "request in flight from an older ratectl (format "
			                  "2); stop those processes, then open it again",
			                  h->path, name);
			goto out;
		}
	}
out:
	close(fd);
	return rc;
}

static int upgrade_each(ratectl *h, MDB_txn *txn, const char *name,
                        const MDB_val *v, void *arg)
{
	const unsigned char *p = v->mv_data;
	rc_budget_rec rec;
	uint32_t magic, nlimits, flags;
	size_t lim;
	int rc;

	(void)arg;
	if (v->mv_size < RC_V2_FIXED)
		return ratectl__rec_load(name, v, &rec);        /* says it is damaged */
	memcpy(&magic, p, 4);
	if (magic == RC_BUDGET_MAGIC)
		return 0;       /* upgraded already (an aborted open went before) */
	memcpy(&nlimits, p + offsetof(rc_budget_rec, nlimits), 4);
	memcpy(&flags, p + offsetof(rc_budget_rec, reserved0), 4);
	lim = nlimits <= RATECTL_MAX_LIMITS ? nlimits * sizeof(rc_limit) : SIZE_MAX;
	if (magic != RC_BUDGET_MAGIC_V2 || lim == SIZE_MAX || (flags & ~RC_F_SHARED) ||
	    v->mv_size != RC_V2_FIXED + lim +
	                  ((flags & RC_F_SHARED) ? sizeof(rc_share_hot) : 0))
		return ratectl__err(RATECTL_ECORRUPT, "budget '%s': record is damaged "
		                    "(%zu bytes, format 2); run `ratectl check --repair`",
		                    name, v->mv_size);
	memset(&rec, 0, sizeof rec);
	memcpy(&rec, p, offsetof(rc_budget_rec, reserved0) + 4);
	rec.magic = RC_BUDGET_MAGIC;
	memcpy(rec.lim, p + RC_V2_FIXED, lim);
	if (flags & RC_F_SHARED)
		memcpy(&rec.sh, p + RC_V2_FIXED + lim, sizeof rec.sh);
	if ((rc = upgrade_lease(h, name, rec.id, &rec)) != 0)
		return rc;
	return ratectl__rec_put(h, txn, name, &rec);
}

int ratectl__meta_init(ratectl *h, MDB_txn *txn, void *ctx)
{
	rc_meta m;
	int rc;

	(void)ctx;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &h->dbi)) != 0)
		return ratectl__mdb_err(h, rc, "open the table");
	rc = meta_get(h, txn, &m);
	if (rc == MDB_NOTFOUND)
		return meta_create(h, txn);
	if (rc != 0)
		return rc;
	/* An older format is upgraded in place, first: version 1's records
	 * are version 2's (a budget without the shared flag); version 2's
	 * gain the in-flight count and counters that lived in lease files.
	 * The version changes, so that an older build refuses the ledger
	 * from then on. */
	if (m.format < 3 && (rc = ratectl__budget_each(h, txn, upgrade_each, NULL)) != 0)
		return rc;
	if (m.format < RATECTL_FORMAT_VERSION)
		m.format = RATECTL_FORMAT_VERSION;
	if (memcmp(m.boot_id, h->boot_id, RC_BOOT_ID_LEN) != 0)
		rc = reboot(h, txn, &m);
	else
		meta_sample(h, &m);
	/* Written even when nothing else changed: table handles opened in
	 * an aborted transaction are closed with it. */
	return rc != 0 ? rc : meta_put(h, txn, &m);
}

/* Sample the offset again and, when id is not NULL, take the next id. */
static int meta_update(ratectl *h, MDB_txn *txn, uint32_t *id)
{
	rc_meta m;
	int rc;

	if ((rc = meta_get(h, txn, &m)) != 0)
		return rc == MDB_NOTFOUND ?
			ratectl__err(RATECTL_ECORRUPT, "ledger %s: format record is "
			             "missing", h->path) : rc;
	if (id)
		*id = m.next_id++;
	meta_sample(h, &m);
	return meta_put(h, txn, &m);
}

int ratectl__meta_touch(ratectl *h, MDB_txn *txn)
{
	return meta_update(h, txn, NULL);
}

int ratectl__meta_next_id(ratectl *h, MDB_txn *txn, uint32_t *id)
{
	return meta_update(h, txn, id);
}
