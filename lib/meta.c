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
 * the wall clock onto the new boot's clock (ratectl__gcra_rebase) and
 * every lease file is reset: no holder or waiter survives a reboot.
 */
#include <errno.h>
#include <string.h>

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
	if ((rc = ratectl__share_reboot(h, txn, name, &rec)) != 0 ||
	    (rc = ratectl__rec_put(h, txn, name, &rec)) != 0)
		return rc;
	return ratectl__lfile_reboot(h, rec.id, rec.sched.cooldown_until);
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
	if ((rc = ratectl__budget_each(h, txn, rebase_each, &c)) != 0)
		return rc;
	m->rt_offset = off;
	m->stamp = c.now;
	memcpy(m->boot_id, h->boot_id, RC_BOOT_ID_LEN);
	return 0;
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
	if (memcmp(m.boot_id, h->boot_id, RC_BOOT_ID_LEN) != 0)
		rc = reboot(h, txn, &m);
	else
		meta_sample(h, &m);
	/* An older format is upgraded in place: version 1's records are
	 * version 2's (a budget without the shared flag); only the version
	 * changes, so that an older build refuses the ledger from then on. */
	if (m.format < RATECTL_FORMAT_VERSION)
		m.format = RATECTL_FORMAT_VERSION;
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
