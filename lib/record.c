/*
 * record.c - budget records in the ledger's one table: the codec (copy,
 * validate, store) and iteration over every budget.  Nothing here opens
 * transactions: callers pass theirs.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* An LMDB failure as one of the library's codes, with the detail set. */
int ratectl__mdb_err(const ratectl *h, int rc, const char *what)
{
	const char *path = h ? h->path : "?";

	switch (rc) {
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
		return ratectl__err(RATECTL_ECORRUPT,
		                    "ledger %s: %s: %s; run `ratectl check --repair`",
		                    path, what, mdb_strerror(rc));
	case MDB_MAP_FULL:
		return ratectl__err(-ENOSPC, "ledger %s: %s: map full", path, what);
	default:
		break;
	}
	if (rc > 0)
		return ratectl__err(-rc, "ledger %s: %s: %s", path, what, strerror(rc));
	return ratectl__err(RATECTL_ELMDB, "ledger %s: %s: %s", path, what,
	                    mdb_strerror(rc));
}

/* ---- records ------------------------------------------------------------- */

#define RC_TAILS (RC_F_SHARED | RC_F_TENANT | RC_F_ORIGIN)

/* LMDB values are not aligned: copy before looking, then validate. */
int ratectl__rec_load(const char *name, const MDB_val *v, rc_budget_rec *out)
{
	const rc_budget_rec *r = out;
	const char *p = v->mv_data;
	size_t base;
	unsigned i;

	if (v->mv_size < RC_REC_SIZE(0) || v->mv_size > sizeof *out)
		goto bad;
	memcpy(out, v->mv_data, RC_REC_SIZE(0));
	if (r->magic != RC_BUDGET_MAGIC || r->nlimits > RATECTL_MAX_LIMITS ||
	    (r->reserved0 & ~(uint32_t)RC_TAILS) ||
	    v->mv_size != RC_REC_STORED(r) || r->max_inflight > RATECTL_MAX_INFLIGHT ||
	    r->batch_share < 1 || r->batch_share > 100 ||
	    r->weight > RATECTL_WEIGHT_MAX || !(r->weight > 0) != !(r->reserved0 & RC_F_TENANT) ||
	    r->expire < 0)
		goto bad;
	base = RC_REC_SIZE(r->nlimits);
	memcpy(out->lim, p + RC_REC_SIZE(0), base - RC_REC_SIZE(0));
	if (r->reserved0 & RC_F_SHARED) {
		memcpy(&out->sh, p + base, sizeof out->sh);
		base += sizeof out->sh;
		if (out->sh.hosts < 1)
			goto bad;
	} else {
		memset(&out->sh, 0, sizeof out->sh);
	}
	if (r->reserved0 & RC_F_TENANT) {
		memset(&out->tn, 0, sizeof out->tn);
		memcpy(&out->tn, p + base, RC_TENANT_STORED(r->weight));
		base += RC_TENANT_STORED(r->weight);
		if (out->tn.tk_serve > out->tn.tk_next)
			goto bad;
	} else {
		memset(&out->tn, 0, sizeof out->tn);
	}
	if (r->reserved0 & RC_F_ORIGIN) {
		memcpy(out->origin, p + base, sizeof out->origin);
		if (memchr(out->origin, '\0', RATECTL_NAME_MAX + 1) == NULL)
			goto bad;
	} else {
		out->origin[0] = '\0';
	}
	for (i = 0; i < r->nlimits; i++) {
		const rc_limit *l = &r->lim[i];
		uint64_t tau;

		if (l->dim > RATECTL_TOKENS || l->T < 1 || l->burst < 1 || l->tat < 0 ||
		    __builtin_mul_overflow(l->burst, (uint64_t)l->T, &tau) ||
		    tau != (uint64_t)l->tau)
			goto bad;
	}
	return 0;
bad:
	return ratectl__err(RATECTL_ECORRUPT, "budget '%s': record is damaged (%zu "
	                    "bytes); run `ratectl check --repair`", name, v->mv_size);
}

/* The stored bytes of rec: the limits, then its optional parts. */
static void rec_bytes(const rc_budget_rec *rec, void *out)
{
	size_t base = RC_REC_SIZE(rec->nlimits);
	char *p = out;

	memcpy(p, rec, base);
	if (rec->reserved0 & RC_F_SHARED) {
		memcpy(p + base, &rec->sh, sizeof rec->sh);
		base += sizeof rec->sh;
	}
	if (rec->reserved0 & RC_F_TENANT) {
		memcpy(p + base, &rec->tn, RC_TENANT_STORED(rec->weight));
		base += RC_TENANT_STORED(rec->weight);
	}
	if (rec->reserved0 & RC_F_ORIGIN)
		memcpy(p + base, rec->origin, sizeof rec->origin);
}

int ratectl__rec_get(ratectl *h, MDB_txn *txn, const char *name,
                     rc_budget_rec *rec)
{
	MDB_val k = { strlen(name), (void *)name }, v;
	int rc;

	rc = mdb_get(txn, h->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return ratectl__err(RATECTL_ENOTFOUND, "no budget '%s' in ledger %s",
		                    name, h->path);
	if (rc != 0)
		return ratectl__mdb_err(h, rc, name);
	return ratectl__rec_load(name, &v, rec);
}

/* The admission path: one B-tree search for the read and the write. */
int ratectl__rec_fetch(ratectl *h, MDB_txn *txn, const char *name,
                       rc_budget_rec *rec, MDB_cursor **cur)
{
	MDB_val k = { strlen(name), (void *)name }, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, h->dbi, cur)) != 0)
		return ratectl__mdb_err(h, rc, name);
	rc = mdb_cursor_get(*cur, &k, &v, MDB_SET_KEY);
	if (rc == 0)
		return ratectl__rec_load(name, &v, rec);
	if (rc == MDB_NOTFOUND)
		return ratectl__err(RATECTL_ENOTFOUND, "no budget '%s' in ledger %s",
		                    name, h->path);
	return ratectl__mdb_err(h, rc, name);
}

int ratectl__rec_store(ratectl *h, MDB_cursor *cur, const char *name,
                       const rc_budget_rec *rec)
{
	MDB_val k = { strlen(name), (void *)name };
	MDB_val v = { RC_REC_STORED(rec), NULL };
	int rc;

	if (!(rec->reserved0 & RC_TAILS)) {
		v.mv_data = (void *)rec;        /* the limits end the record */
		rc = mdb_cursor_put(cur, &k, &v, MDB_CURRENT);
	} else if ((rc = mdb_cursor_put(cur, &k, &v, MDB_CURRENT | MDB_RESERVE)) == 0) {
		rec_bytes(rec, v.mv_data);
	}
	return rc == 0 || rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, name);
}

int ratectl__rec_put(ratectl *h, MDB_txn *txn, const char *name,
                     const rc_budget_rec *rec)
{
	MDB_val k = { strlen(name), (void *)name };
	MDB_val v = { RC_REC_STORED(rec), NULL };
	int rc;

	if ((rc = mdb_put(txn, h->dbi, &k, &v, MDB_RESERVE)) == 0)
		rec_bytes(rec, v.mv_data);
	return rc == 0 || rc == MDB_MAP_FULL ? rc : ratectl__mdb_err(h, rc, name);
}

/* Keys in the table are names without a NUL. */
static void key_name(const MDB_val *k, char out[RATECTL_NAME_MAX + 1])
{
	size_t n = k->mv_size > RATECTL_NAME_MAX ? RATECTL_NAME_MAX : k->mv_size;

	memcpy(out, k->mv_data, n);
	out[n] = '\0';
}

int ratectl__budget_each(ratectl *h, MDB_txn *txn, rc_each_fn fn, void *ctx)
{
	char name[RATECTL_NAME_MAX + 1];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, h->dbi, &cur)) != 0)
		return ratectl__mdb_err(h, rc, "list budgets");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (!rc_budget_key(&k))
			continue;       /* .meta */
		key_name(&k, name);
		if ((rc = fn(h, txn, name, &v, ctx)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

