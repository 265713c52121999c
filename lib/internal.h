/*
 * internal.h - what the parts of libratectl share: the handle, the records
 * stored in the ledger, the lease files, and the helpers between them.
 *
 * Layout of a ledger directory:
 *   data.mdb, lock.mdb   the LMDB environment, one table: ".meta" (format,
 *                        boot id) and each budget (name -> configuration
 *                        and GCRA state).  One table, not named tables:
 *                        a commit touching a named table also rewrites the
 *                        main table's record of it, a third of the cost.
 *   leases/<id>          one lease file per budget: a shared mapping with
 *                        the wake-up word, counters and the in-flight table,
 *                        and beyond its end one lock byte per slot
 */
#ifndef RATECTL_INTERNAL_H
#define RATECTL_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "gcra.h"
#include "ratectl.h"

/* ---- records in the ledger ------------------------------------------- */

#define RC_META_MAGIC 0x4C544352u   /* "RCTL" little-endian */
#define RC_BUDGET_MAGIC 0x31424352u /* "RCB1" */
#define RC_BOOT_ID_LEN 40

typedef struct rc_meta {
	uint32_t magic;
	uint32_t format;           /* RATECTL_FORMAT_VERSION that wrote it */
	uint32_t next_id;          /* budget ids are never reused */
	uint32_t reserved0;
	int64_t rt_offset;         /* largest CLOCK_REALTIME - clock seen in that boot */
	char boot_id[RC_BOOT_ID_LEN];
	int64_t stamp;             /* the clock when rt_offset was last sampled */
	uint64_t reserved[3];
} rc_meta;

/*
 * What admissions use of a shared budget (RC_F_SHARED): stored right
 * after the record's limits, so that an admission stays one read and one
 * write of one record.  The rest of its state is ".s/NAME" (shared.c).
 */
typedef struct rc_share_hot {
	int64_t credit[2];         /* units held, per dimension; < 0: a debt */
	int64_t spent[2];          /* units spent since the last sync */
	int64_t rate[2];           /* demand, units per second (smoothed) */
	int64_t cap[2];            /* the most credit held, per dimension */
	int64_t last_use;          /* the last admission, ledger clock */
	int64_t eta;               /* no credit before this (ledger clock): the
	                              last sync got none; 0 unknown */
	uint32_t hosts;            /* the fallback share is 1/hosts */
	uint32_t flags;            /* RC_SH_* */
	int64_t fb_tat[RATECTL_MAX_LIMITS]; /* the fallback share's TATs */
} rc_share_hot;

enum {
	RC_SH_DEGRADED = 0x1,      /* Redis unreachable: the fallback applies */
	RC_SH_OPEN = 0x2           /* ... or the budget's own limits only */
};

typedef struct rc_budget_rec {
	uint32_t magic;
	uint32_t id;
	uint32_t nlimits;
	uint32_t max_inflight;
	int64_t jitter;
	rc_sched sched;
	uint32_t batch_share;      /* percent, 1..100 */
	uint32_t reserved0;        /* RC_F_* */
	uint64_t reserved[1];
	rc_limit lim[RATECTL_MAX_LIMITS];
	/* Stored after lim[nlimits], when RC_F_SHARED (zero otherwise). */
	rc_share_hot sh;
} rc_budget_rec;

/* rc_budget_rec.reserved0: flags. */
#define RC_F_SHARED 0x1            /* shared: ".c/NAME" and ".s/NAME" exist */

/* ---- shared budgets (shared.c) --------------------------------------- */

#define RC_SHARE_CFG_MAGIC 0x43534352u  /* "RCSC" */
#define RC_SHARE_ST_MAGIC 0x53534352u   /* "RCSS" */

/* ".c/NAME": where the budget's Redis is; read by the refiller only. */
typedef struct rc_share_cfg {
	uint32_t magic;
	uint32_t budget_id;
	ratectl_share share;
} rc_share_cfg;

/* ".s/NAME": the rest of the host's side of a shared budget, read and
 * written by the refiller and the commands (never by admissions). */
typedef struct rc_share_st {
	uint32_t magic;
	uint32_t budget_id;
	uint32_t restored;
	uint32_t sig_differs;
	int64_t window_start;      /* the ledger clock when spent began counting */
	int64_t last_sync;         /* the last exchange with Redis, ledger clock */
	int64_t degraded_since;    /* wall clock ns; 0 when not degraded */
	int64_t offset;            /* server time - ledger clock, at the last sync */
	int64_t g_tat[RATECTL_MAX_LIMITS];  /* global TATs, server ns */
	int64_t g_cool;            /* global cooldown end, server ns */
	uint64_t g_gen;            /* the generation of the last write seen */
	int64_t push_cool;         /* a cooldown to spread, server ns; 0 none */
	int64_t push_tat[RATECTL_MAX_LIMITS]; /* limits a provider's header
	                              tightened here, as global TATs (server ns), to
	                              spread; 0 none */
	uint64_t syncs;
	uint64_t commands;
	char last_error[160];
} rc_share_st;

/* The format record's key: budget names cannot start with '.'. */
#define RC_META_KEY ".meta"

static inline int rc_budget_key(const MDB_val *k)
{
	return k->mv_size > 0 && ((const char *)k->mv_data)[0] != '.';
}

#define RC_REC_SIZE(n) (offsetof(rc_budget_rec, lim) + (size_t)(n) * sizeof(rc_limit))
/* Its size as stored: the shared part follows the limits. */
#define RC_REC_STORED(r) (RC_REC_SIZE((r)->nlimits) + \
	(((r)->reserved0 & RC_F_SHARED) ? sizeof(rc_share_hot) : 0))

/* ---- lease files ------------------------------------------------------ */

#define RC_LEASE_MAGIC 0x314C4352u  /* "RCL1" */
#define RC_HDR_SIZE 4096
#define RC_LEASE_FILE_SIZE (RC_HDR_SIZE + RATECTL_MAX_INFLIGHT * sizeof(rc_slot))
/* Slot i is held by an OFD write lock on byte RC_LOCK_BASE + i, beyond the
 * end of the file, so locks and the mapped table never overlap. */
#define RC_LOCK_BASE (1 << 20)

enum { RC_SLOT_FREE = 0, RC_SLOT_HELD = 1 };

#define RC_LEASE_HELD 0x4C454153u  /* ratectl_lease.magic while held */

/* One in-flight slot's record, for inspection: the lock is the truth. */
typedef struct rc_slot {
	int32_t pid;
	uint32_t state;
	int64_t start;
	uint64_t tokens;
	uint64_t reserved;
} rc_slot;

enum {
	RC_C_ADMITTED, RC_C_REFUSED, RC_C_WAITED, RC_C_WAIT_NS,
	RC_C_TOK_EST, RC_C_TOK_ACTUAL, RC_C_TOK_RECONCILED, RC_C_RECLAIMED,
	RC_C_RETRIES, RC_C_COUNT
};

typedef struct rc_lease_hdr {
	uint32_t magic;
	uint32_t budget_id;
	uint32_t hiwater;          /* slots ever used: the table's extent */
	int32_t watcher;           /* the slot waiter that watches for deaths */
	/* Bytes of the file reserved so far (posix_fallocate): the table's
	 * pages are reserved as the cap grows, not all up front, so an
	 * uncapped budget costs one page of tmpfs, not the whole table. */
	uint32_t reserved;
	uint32_t reserved1;
	uint32_t release_seq;      /* futex word: slots (see wait.c) */
	uint32_t waiters;          /* threads sleeping on release_seq */
	/* Mirror of the budget's cooldown end, so that a waiter that reserved
	 * its time before a cooldown began notices it without a transaction;
	 * every admission puts the record's value back if they differ. */
	int64_t cooldown_until;
	uint64_t counters[RC_C_COUNT];
	/* Added after the first release, where older files hold zeros. */
	uint32_t change_seq;       /* futex word: the budget changed (wait.c) */
	uint32_t cwaiters;         /* threads sleeping on change_seq */
	uint32_t epoch;            /* bumped when reservations are void */
	uint32_t ewaiters;         /* pending ratectl_reserve()s, all processes */
	uint32_t poke;             /* never changes: written to wake inotify */
	uint32_t reserved2;
} rc_lease_hdr;

_Static_assert(sizeof(rc_lease_hdr) <= RC_HDR_SIZE, "lease header fits its page");

/* A process's view of one lease file. */
typedef struct rc_lfile {
	struct rc_lfile *next;
	uint32_t id;
	int fd;
	rc_lease_hdr *hdr;
	rc_slot *slots;
	/* Threads share the process's OFD: a lock taken twice through it
	 * "succeeds", so which slots this process holds is kept here, and
	 * changed only under mu. */
	pthread_mutex_t mu;
	uint8_t held[RATECTL_MAX_INFLIGHT / 8];
	/* The death watch (wait.c), while this process is the watcher: a
	 * thread polling pidfds of the slots' holders. Under mu. */
	unsigned nwatch;           /* waits in this process using it */
	pthread_t watch_thread;
	int watch_efd;             /* eventfd that stops the thread */
} rc_lfile;

/* ---- the handle ------------------------------------------------------- */

#define RC_LF_CHUNK 1024
#define RC_LF_CHUNKS 1024

struct ratectl {
	struct ratectl *next_open; /* registry of open handles (fork, reuse) */
	unsigned refs;
	dev_t dev;
	ino_t ino;
	char *path;
	MDB_env *env;
	MDB_dbi dbi;               /* the main table: budgets and .meta */
	/* Transactions hold it shared; growing the map takes it exclusive
	 * (LMDB requires no transaction of this process to be active). */
	pthread_rwlock_t maplock;
	pthread_mutex_t mu;        /* reopen after fork */
	pthread_mutex_t files_mu;  /* adding to the lease file list */
	rc_lfile *files;           /* append-only until close: read lock-free */
	/* The same files indexed by budget id (ids are small and dense): a
	 * chunk of RC_LF_CHUNK pointers is allocated once and never moves, so
	 * lookups need no lock.  Ids past the table use the list. */
	rc_lfile **lf_index[RC_LF_CHUNKS];
	uint64_t fork_gen;
	pid_t pid;                 /* this process, cached at (re)open */
	int shared_group;
	size_t map_size;
	ratectl_clock clock;
	char boot_id[RC_BOOT_ID_LEN];
	/* Event loops (ratectl_reserve): one inotify instance per handle and
	 * process, watching the lease files of budgets with pending
	 * reservations; created on first use under mu. */
	int ifd;
	/* Shared budgets: this process's refiller threads (shared.c), under
	 * share_mu. */
	pthread_mutex_t share_mu;
	struct rc_refiller *refillers;
};

/* ---- shared.c ------------------------------------------------------------ */

/*
 * Inside an admission's transaction, after the local plan was charged at
 * t_adm: spend the host's credit (or, Redis unreachable, the fallback
 * share).  0, or RATECTL_ELIMITED with *retry_at (no credit yet: the
 * refiller was asked for more).  *kick is set when the process's
 * refiller should run (ratectl__share_kick() after the commit).
 */
int ratectl__share_admit(const char *name, rc_budget_rec *rec, const ratectl_cost *cost,
                         int64_t now, int64_t t_adm, int64_t *retry_at, int *kick);
/* A reconcile on a shared budget's record: the credit follows the tokens. */
void ratectl__share_adjust(rc_budget_rec *rec, int64_t delta);
/* A cooldown set on this host: spread it through Redis. */
int ratectl__share_cooldown(ratectl *h, MDB_txn *txn, const char *name, int64_t until);
/* Limit i of a shared budget tightened here to tat (ledger clock): spread it. */
int ratectl__share_tighten(ratectl *h, MDB_txn *txn, const char *name, unsigned i,
                           int64_t tat);
/* Delete a budget's shared records (budget deleted). */
int ratectl__share_drop(ratectl *h, MDB_txn *txn, const char *name);
/* Times of the last boot, after a reboot (meta.c): rec is written after. */
int ratectl__share_reboot(ratectl *h, MDB_txn *txn, const char *name, rc_budget_rec *rec);
/* Start (once per process) or wake the refiller of budget `name`: need
 * is what a starved admission waits for ({0, 0}: a low-water mark, which
 * may be dropped when the refiller looked just now); urgent: never drop
 * it (a starved admission, a cooldown or a limit to spread). */
void ratectl__share_kick(ratectl *h, const char *name, uint32_t id,
                         const int64_t need[2], int urgent);
/* Stop this process's refillers (ratectl_close). */
void ratectl__share_stop_all(ratectl *h);
/* ratectl_cooldown() without spreading it to the other hosts (budget.c). */
int ratectl__cooldown_local(ratectl *h, const char *name, int64_t duration_ns);

/* ---- reservations (ratectl_reserve), in ratectl_reservation.priv ------ */

#define RC_RESV_MAGIC 0x56534552u  /* "RESV" */

enum { RC_RS_PLACE = 1, RC_RS_WAIT = 2 };

typedef struct rc_resv {
	uint32_t magic;            /* RC_RESV_MAGIC while pending */
	uint32_t state;            /* RC_RS_PLACE: a place at t_adm; RC_RS_WAIT: none yet */
	uint32_t id;               /* budget */
	int32_t slot;              /* claimed with the place, or -1 */
	uint32_t epoch;            /* the budget's when the place was taken */
	uint32_t counted;          /* counted in that budget's ewaiters */
	int watching;              /* this reservation watches for dead holders */
	uint32_t reserved0;
	uint64_t fork_gen;
	int64_t start;             /* when it was asked: its wait, for the counters */
	ratectl_cost cost;
	int64_t t_adm;
	int64_t cooldown_until;
	int64_t before[RATECTL_MAX_LIMITS];
	int64_t after[RATECTL_MAX_LIMITS];
} rc_resv;

_Static_assert(sizeof(rc_resv) <= sizeof(((ratectl_reservation *)0)->priv),
               "a reservation's state fits its private part");

/* ---- ledger.c --------------------------------------------------------- */

/* A write operation run inside one transaction by ratectl__write(): 0 to
 * commit, > 0 to abort and return that value, < 0 to abort with an error.
 * It may run again (after the map grew), so it must not keep state. */
typedef int (*rc_write_fn)(ratectl *h, MDB_txn *txn, void *ctx);

int ratectl__write(ratectl *h, rc_write_fn fn, void *ctx);
int ratectl__read_begin(ratectl *h, MDB_txn **txn);
void ratectl__read_end(ratectl *h, MDB_txn *txn);
/* Re-open what a fork left behind, when h was opened before it. */
int ratectl__enter(ratectl *h);

/* ---- meta.c: the format record, reboots -------------------------------- */

/* Open the table, create or check the format record, rebase after a
 * reboot (an rc_write_fn, run at every open). */
int ratectl__meta_init(ratectl *h, MDB_txn *txn, void *ctx);
/* Sample the wall clock's offset again (any change but an admission). */
int ratectl__meta_touch(ratectl *h, MDB_txn *txn);
/* Take the next budget id. */
int ratectl__meta_next_id(ratectl *h, MDB_txn *txn, uint32_t *id);

/* ---- record.c: budget records ------------------------------------------ */

/* An LMDB failure as a library code, with the detail set. */
int ratectl__mdb_err(const ratectl *h, int rc, const char *what);

/* Copy budget `name` into *rec, validated.  RATECTL_ENOTFOUND, _ECORRUPT. */
int ratectl__rec_get(ratectl *h, MDB_txn *txn, const char *name,
                     rc_budget_rec *rec);
int ratectl__rec_put(ratectl *h, MDB_txn *txn, const char *name,
                     const rc_budget_rec *rec);
/* Call fn for each budget in txn, in name order, until it returns non-zero
 * (which is returned).  fn may write records by key. */
typedef int (*rc_each_fn)(ratectl *h, MDB_txn *txn, const char *name,
                          const MDB_val *v, void *ctx);
int ratectl__budget_each(ratectl *h, MDB_txn *txn, rc_each_fn fn, void *ctx);
/* The same through a cursor (one search for both); close it after. */
int ratectl__rec_fetch(ratectl *h, MDB_txn *txn, const char *name,
                       rc_budget_rec *rec, MDB_cursor **cur);
int ratectl__rec_store(ratectl *h, MDB_cursor *cur, const char *name,
                       const rc_budget_rec *rec);
int ratectl__rec_load(const char *name, const MDB_val *v, rc_budget_rec *out);

/* ---- lease.c ---------------------------------------------------------- */

int ratectl__lfile_get(ratectl *h, uint32_t id, rc_lfile **out);
/* The lease file of budget id if this process has it open, else NULL:
 * no I/O, for use inside the admission transaction. */
rc_lfile *ratectl__lfile_find(const ratectl *h, uint32_t id);
void ratectl__lfile_close_all(ratectl *h, int unlock);
/* Budget id's lease file for one look, without creating it or keeping a
 * descriptor: this process's own when it has it open, else mapped into
 * *tmp.  0 and *out; 1 when the file does not exist (nothing was ever
 * admitted); or an error.  Hand *out to ratectl__lfile_unpeek() after. */
int ratectl__lfile_peek(ratectl *h, uint32_t id, rc_lfile *tmp, rc_lfile **out);
void ratectl__lfile_unpeek(rc_lfile *tmp, rc_lfile *lf);
/* A new boot: reset budget id's lease file, if it has one (no holder or
 * waiter survives a reboot); its cooldown mirror becomes cooldown_until. */
int ratectl__lfile_reboot(ratectl *h, uint32_t id, int64_t cooldown_until);
int ratectl__lfile_unlink(ratectl *h, uint32_t id);
/* Claim a free slot below max: 0 and *slot, or RATECTL_EINFLIGHT. */
int ratectl__slot_claim(rc_lfile *lf, uint32_t max, int32_t pid, int64_t now,
                        uint64_t tokens, int32_t *slot);
void ratectl__slot_release(rc_lfile *lf, int32_t slot);
/* 1 if someone (another descriptor) holds slot's lock, 0 if not. */
int ratectl__slot_locked(const rc_lfile *lf, uint32_t slot);
/* Free slots recorded held whose lock is free; returns how many. */
unsigned ratectl__slot_reclaim(rc_lfile *lf);
/* Forget the in-flight table (after a reboot: no holder survives one). */
void ratectl__slot_reset(rc_lfile *lf);
/* 1 if this process holds slot i (under lf->mu for a stable answer). */
int ratectl__slot_is_ours(const rc_lfile *lf, uint32_t i);

/* ---- wait.c ------------------------------------------------------------ */

/* What changed, for ratectl__wake() (the table in wait.c). */
enum {
	RC_WAKE_SLOTS = 1,         /* a slot may be free */
	RC_WAKE_RATE = 2,          /* capacity may be free: waiters with no place */
	RC_WAKE_RESERVED = 4,      /* a cooldown: waiters asleep on a place look */
	RC_WAKE_VOID = 8           /* reservations are void: everyone plans again */
};
void ratectl__wake(rc_lfile *lf, int what);
/* Sleep until a slot may be free (a release, a holder's death, a change),
 * one tick passes, or `deadline`: the caller then tries again.  *watching
 * is the caller's: 0 at first. */
int ratectl__slot_wait(ratectl *h, rc_lfile *lf, uint32_t seq, int64_t deadline,
                       int *watching);
/* Sleep until reserved time t_adm: 0 then; 1 when a cooldown that covers
 * it began meanwhile (give the place back, plan again); 2 when the
 * reservation was voided (plan again, nothing to give back); or -EINTR.
 * cooldown_until and epoch are what the caller saw when it reserved. */
int ratectl__reserved_wait(ratectl *h, rc_lfile *lf, int64_t t_adm,
                           int64_t cooldown_until, uint32_t epoch);
/* Watch for dead holders of lf's slots (one thread per process and
 * budget, shared by its waiters), and stop when done waiting. */
void ratectl__slot_watch(ratectl *h, rc_lfile *lf, int *watching);
void ratectl__slot_unwatch(ratectl *h, rc_lfile *lf, int *watching);
/* The file is being closed with waits still watching (reservations left
 * pending at ratectl_close()): stop the thread and hand the watch on. */
void ratectl__watch_end(ratectl *h, rc_lfile *lf);
/* Sleep until the budget changes (change_seq moves from seq) or `until`. */
int ratectl__change_wait(ratectl *h, rc_lfile *lf, uint32_t seq, int64_t until);
void ratectl__count(rc_lfile *lf, int which, uint64_t n);

/* ---- clock.c ---------------------------------------------------------- */

int64_t ratectl__realtime(const ratectl *h);
int ratectl__sleep_until(const ratectl *h, int64_t t);
void ratectl__boot_id(const ratectl *h, char out[RC_BOOT_ID_LEN]);

/* ---- fork.c ----------------------------------------------------------- */

extern uint64_t ratectl__fork_gen;
void ratectl__registry_lock(void);
void ratectl__registry_unlock(void);
extern ratectl *ratectl__open_list;

#endif
