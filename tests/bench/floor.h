/*
 * floor.h - the floor every ratectl admission is compared with: a bare
 * LMDB write transaction that reads and rewrites one 8-byte value, in its
 * own environment opened with the ledger's flags.  An admission that also
 * frees a slot or corrects a charge at release costs two transactions;
 * its floor is floor2_op, two of them back to back.
 */
#ifndef RATECTL_BENCH_FLOOR_H
#define RATECTL_BENCH_FLOOR_H

#include <lmdb.h>
#include <sys/stat.h>

#include "bench.h"

/* Must stay equal to RC_ENV_FLAGS in lib/ledger.c: the floor is only a
 * floor if LMDB does the same work for it (run.sh checks the two agree). */
#define FLOOR_FLAGS (MDB_NOSYNC | MDB_WRITEMAP | MDB_NOTLS | MDB_NORDAHEAD)
#define FLOOR_MAP_SIZE (8u << 20)    /* the ledger's default map size */

typedef struct floor_env {
	MDB_env *env;
	MDB_dbi dbi;
} floor_env;

#define MDB_CHECK(expr) do {                                                  \
	int mdb_rc_ = (expr);                                                     \
	if (mdb_rc_ != 0)                                                         \
		bench_die("%s:%d: %s: %s", __FILE__, __LINE__, #expr,                \
		          mdb_strerror(mdb_rc_));                                     \
} while (0)

/* Open (creating) the floor's environment in dir, with its one value. */
static inline void floor_open(floor_env *f, const char *dir)
{
	MDB_val k = { 1, (void *)(uintptr_t)"k" }, v;
	uint64_t zero = 0;
	MDB_txn *txn;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		bench_die("mkdir %s: %s", dir, strerror(errno));
	MDB_CHECK(mdb_env_create(&f->env));
	MDB_CHECK(mdb_env_set_mapsize(f->env, FLOOR_MAP_SIZE));
	MDB_CHECK(mdb_env_open(f->env, dir, FLOOR_FLAGS, 0600));
	MDB_CHECK(mdb_txn_begin(f->env, NULL, 0, &txn));
	MDB_CHECK(mdb_dbi_open(txn, NULL, 0, &f->dbi));
	if (mdb_get(txn, f->dbi, &k, &v) == MDB_NOTFOUND) {
		v.mv_size = sizeof zero;
		v.mv_data = &zero;
		MDB_CHECK(mdb_put(txn, f->dbi, &k, &v, 0));
	}
	MDB_CHECK(mdb_txn_commit(txn));
}

/* Read-modify-write of one 8-byte counter: the least a shared limiter
 * must do in a transaction. */
static inline void floor_op(void *arg)
{
	floor_env *f = arg;
	MDB_val k = { 1, (void *)(uintptr_t)"k" }, v;
	uint64_t n;
	MDB_txn *txn;

	MDB_CHECK(mdb_txn_begin(f->env, NULL, 0, &txn));
	MDB_CHECK(mdb_get(txn, f->dbi, &k, &v));
	memcpy(&n, v.mv_data, sizeof n);
	n++;
	v.mv_size = sizeof n;
	v.mv_data = &n;
	MDB_CHECK(mdb_put(txn, f->dbi, &k, &v, 0));
	MDB_CHECK(mdb_txn_commit(txn));
}

/* Two transactions: the floor of an admission whose release writes too
 * (an in-flight slot freed, a token charge corrected). */
static inline void floor2_op(void *arg)
{
	floor_op(arg);
	floor_op(arg);
}

#endif
