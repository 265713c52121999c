/*
 * internal.h - what the parts of libratectl share: the handle, the records
 * stored in the ledger, the wake file, and the helpers between them.
 *
 * Layout of a ledger directory:
 *   data.mdb, lock.mdb   the LMDB environment, one table: ".meta" (format,
 *                        boot id), each budget (name -> configuration, GCRA
 *                        state, in-flight count, counters), the holders of
 *                        in-flight slots (".h"), tags (".t"), the sweep's
 *                        place (".w") and shared budgets' records (".c",
 *                        ".s").  One table, not named tables: a commit
 *                        touching a named table also rewrites the main
 *                        table's record of it, a third of the cost.
 *   wake                 one file for every budget: a shared mapping of
 *                        futex words in buckets (a budget's bucket is its
 *                        id modulo RC_NBUCKETS), and beyond its end the
 *                        lock bytes: one per process that holds slots (its
 *                        liveness) and one per shared budget (its refiller)
 * Nothing is kept per budget outside the ledger, so a process that admits
 * in 100,000 budgets holds the same descriptors and mappings as one that
 * admits in one.
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
#define RC_BUDGET_MAGIC 0x33424352u /* "RCB3" */
#define RC_BUDGET_MAGIC_V2 0x31424352u /* "RCB1": formats 1 and 2 */
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

/*
 * What admissions use of a tenant (weight > 0): its places ahead in the
 * other budgets, and its line (tickets) for the next one (admit.c).
 */
#define RC_GATE_MAX RATECTL_WEIGHT_MAX
typedef struct rc_tenant_hot {
	uint64_t tk_next;          /* the next ticket handed out */
	uint64_t tk_serve;         /* the ticket whose turn it is */
	uint64_t tk_gone;          /* bit i: ticket tk_serve + i gave up */
	int64_t tk_since;          /* when tk_serve's turn came (gate open) */
	int64_t gate[RC_GATE_MAX]; /* times of its last `weight` places (only
	                              `weight` of them are stored) */
} rc_tenant_hot;

enum {
	RC_C_ADMITTED, RC_C_REFUSED, RC_C_WAITED, RC_C_WAIT_NS,
	RC_C_TOK_EST, RC_C_TOK_ACTUAL, RC_C_TOK_RECONCILED, RC_C_RECLAIMED,
	RC_C_RETRIES, RC_C_COUNT
};
#define RC_C_COUNT_MAX 10          /* room in the record */

typedef struct rc_budget_rec {
	uint32_t magic;
	uint32_t id;
	uint32_t nlimits;
	uint32_t max_inflight;
	int64_t jitter;
	rc_sched sched;
	uint32_t batch_share;      /* percent, 1..100 */
	uint32_t reserved0;        /* RC_F_* */
	uint32_t inflight;         /* slots recorded held (".h" records) */
	uint32_t epoch;            /* bumped when reservations are void */
	int64_t last_use;          /* the last admission, ledger clock; 0 never */
	int64_t expire;            /* removed once idle this long; 0 never */
	int64_t made;              /* when it was made, ledger clock */
	uint32_t weight;           /* a tenant's; 0 none */
	uint32_t reserved1;
	uint64_t counters[RC_C_COUNT_MAX];
	rc_limit lim[RATECTL_MAX_LIMITS];
	/* Stored after lim[nlimits], in this order, each when its flag is
	 * set (zero otherwise). */
	rc_share_hot sh;           /* RC_F_SHARED */
	rc_tenant_hot tn;          /* RC_F_TENANT */
	char origin[72];           /* RC_F_ORIGIN: NUL-terminated */
} rc_budget_rec;

/* rc_budget_rec.reserved0: flags. */
#define RC_F_SHARED 0x1            /* shared: ".c/NAME" and ".s/NAME" exist */
#define RC_F_TENANT 0x2            /* weight > 0: rc_tenant_hot stored */
#define RC_F_ORIGIN 0x4            /* origin stored */

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
/* Its size as stored: the optional parts follow the limits. */
#define RC_TENANT_STORED(w) (offsetof(rc_tenant_hot, gate) + (size_t)(w) * sizeof(int64_t))
#define RC_REC_STORED(r) (RC_REC_SIZE((r)->nlimits) + \
	(((r)->reserved0 & RC_F_SHARED) ? sizeof(rc_share_hot) : 0) + \
	(((r)->reserved0 & RC_F_TENANT) ? RC_TENANT_STORED((r)->weight) : 0) + \
	(((r)->reserved0 & RC_F_ORIGIN) ? sizeof(((rc_budget_rec *)0)->origin) : 0))

/* ".h" + be32 budget id + be64 process key: one process's in-flight slots
 * in one budget.  The process key is the byte it holds locked in the wake
 * file while it lives (RC_LIVE_BASE + key): the kernel drops the lock when
 * it dies, SIGKILL included, and no other process ever locks that byte. */
#define RC_HOLDER_KEY_LEN 14
typedef struct rc_holder {
	int32_t pid;
	uint32_t count;            /* slots held */
	int64_t since;             /* admission time of the first, ledger clock */
	uint64_t tokens;           /* estimated tokens of all of them */
} rc_holder;

/* ".t" + be32 budget id: its tags (space-saving, RATECTL_TAGS_TOP).  The
 * rest is not stored: it is the budget's counters less the tags'. */
#define RC_TAGS_MAGIC 0x53544352u  /* "RCTS" */
typedef struct rc_tag_ent {
	char tag[RATECTL_TAG_MAX + 1];
	uint8_t pad[7];
	uint64_t requests, tokens, error;
} rc_tag_ent;
typedef struct rc_tags_rec {
	uint32_t magic;
	uint32_t n;
	rc_tag_ent ent[RATECTL_TAGS_TOP];
} rc_tags_rec;

/* ---- the wake file ---------------------------------------------------- */

#define RC_WAKE_MAGIC 0x4B574352u  /* "RCWK" */
#define RC_NBUCKETS 4096           /* power of two */
#define RC_WAKE_HDR 4096
#define RC_WAKE_SIZE (RC_WAKE_HDR + RC_NBUCKETS * sizeof(rc_bucket))
/* Lock bytes, beyond the end of the file: a shared budget's refiller
 * (shared.c) at RC_REFILL_BASE + id, a live process at RC_LIVE_BASE + key. */
#define RC_REFILL_BASE ((off_t)1 << 32)
#define RC_LIVE_BASE ((off_t)1 << 61)
#define RC_LIVE_KEYS ((uint64_t)1 << 61)

typedef struct rc_wake_hdr {
	uint32_t magic;
	uint32_t nbuckets;
	char boot_id[RC_BOOT_ID_LEN]; /* buckets belong to this boot */
} rc_wake_hdr;

/*
 * The futex words of the budgets whose id falls in it.  Budgets that share
 * a bucket wake each other's waiters now and then, who look and sleep
 * again: a wake-up is a hint, the record is the truth (wait.c).
 */
typedef struct rc_bucket {
	uint32_t release_seq;      /* futex word: slots (see wait.c) */
	uint32_t waiters;          /* threads sleeping on release_seq */
	uint32_t change_seq;       /* futex word: a budget changed */
	uint32_t cwaiters;         /* threads sleeping on change_seq */
	uint32_t vseq;             /* bumped by a cooldown or a void: places
	                              reserved may have to be looked at */
	uint32_t ewaiters;         /* pending ratectl_reserve()s, all processes */
	int32_t watcher;           /* the slot waiter that watches for deaths */
	uint32_t poke;             /* never changes: written to wake inotify */
	uint32_t reserved[8];
} rc_bucket;

_Static_assert(sizeof(rc_bucket) == 64, "a bucket is a cache line");

#define RC_LEASE_HELD 0x4C454153u  /* ratectl_lease.magic while held */


#define RC_WATCH_IDS 8
/* A process's view of one bucket. */
typedef struct rc_lfile {
	uint32_t id;               /* the bucket's index */
	rc_bucket *hdr;
	pthread_mutex_t mu;
	/* The death watch (wait.c), while this process is the watcher: a
	 * thread polling pidfds of the slots' holders. Under mu. */
	unsigned nwatch;           /* waits in this process using it */
	pthread_t watch_thread;
	int watch_efd;             /* eventfd that stops the thread */
	uint32_t nids;             /* budgets it watches the holders of */
	uint32_t ids[RC_WATCH_IDS];
	struct ratectl *h;
} rc_lfile;

/* ---- the handle ------------------------------------------------------- */

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
	/* The wake file, mapped once per process (lease.c). */
	int wfd;
	rc_wake_hdr *wake;
	rc_lfile *buckets;         /* RC_NBUCKETS, allocated with the handle */
	/* This process's liveness lock (lease.c), taken at its first slot. */
	pthread_mutex_t live_mu;
	uint64_t live_key;
	pid_t live_pid;            /* the process that took it; 0 none */
	/* The next time this process looks whether a sweep is due (admit.c). */
	int64_t sweep_next;
	uint64_t fork_gen;
	pid_t pid;                 /* this process, cached at (re)open */
	int shared_group;
	size_t map_size;
	ratectl_clock clock;
	char boot_id[RC_BOOT_ID_LEN];
	/* Event loops (ratectl_reserve): one inotify instance per handle and
	 * process, watching the wake file (any budget with a pending
	 * reservation pokes it); created on first use under mu. */
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
	uint32_t vseq;             /* its bucket's when the place was taken */
	uint64_t fork_gen;
	int64_t start;             /* when it was asked: its wait, for the counters */
	int64_t counted_wait;      /* wait_ns counted with the place; -1 none */
	ratectl_cost cost;         /* its tag is the lease's */
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

/* ---- lease.c: the wake file, liveness, in-flight slots --------------- */

/* Open and map the wake file (ratectl__enter). */
int ratectl__wake_open(ratectl *h);
/* Unmap it; stop watch threads; close the descriptor (dropping this
 * process's liveness lock: its slots become reclaimable). */
void ratectl__wake_close(ratectl *h);
/* Budget id's bucket. */
rc_lfile *ratectl__lfile_find(const ratectl *h, uint32_t id);
/* A new boot: the buckets' sleepers and watchers are gone. */
void ratectl__wake_reboot(ratectl *h);
/* Inside a write transaction: take a slot of budget `rec` (recording
 * this process as a holder), reclaiming the slots of dead holders first
 * when all are held.  0, RATECTL_EINFLIGHT or an error.  *moved is set
 * when records were inserted or deleted (a cursor of the caller's may
 * have moved with its page: write by key). */
int ratectl__slot_claim(ratectl *h, MDB_txn *txn, rc_budget_rec *rec,
                        int64_t now, uint64_t tokens, int *moved);
/* Inside a write transaction: give one back (tokens: its estimate). */
int ratectl__slot_put(ratectl *h, MDB_txn *txn, rc_budget_rec *rec,
                      uint64_t tokens);
/* Inside a write transaction: free the slots of budget rec's dead
 * holders; returns how many (counted as reclaimed), or an error.
 * *dropped (may be NULL) counts the records deleted. */
int ratectl__slot_reclaim(ratectl *h, MDB_txn *txn, rc_budget_rec *rec,
                          unsigned *dropped);
/* Inside a write transaction: forget every holder of budget id (it is
 * deleted) or, id 0, of every budget (a reboot: no holder survives). */
int ratectl__holders_drop(ratectl *h, MDB_txn *txn, uint32_t id);
/* Inside a write transaction: drop the records of dead processes that
 * held nothing, looking at up to max holders from *from (NULL or "": the
 * first), and leave in *from where to go on ("" at the end). */
int ratectl__holders_gc(ratectl *h, MDB_txn *txn, unsigned char *from, unsigned max);
/* Budget id's holders, from txn: fn for each until it returns non-zero. */
typedef int (*rc_holder_fn)(ratectl *h, uint64_t key, const rc_holder *hd,
                            int alive, void *ctx);
int ratectl__holders_each(ratectl *h, MDB_txn *txn, uint32_t id,
                          rc_holder_fn fn, void *ctx);
/* Count an event in budget `name`'s record, in a transaction of its own
 * (for what happens outside an admission: a timeout, a refusal). */
void ratectl__count_later(ratectl *h, const char *name, uint32_t id, int which,
                          uint64_t n);
/* The tags record of budget id: count cost (admission) or correct the
 * tokens of `tag` by delta (release). */
int ratectl__tag_count(ratectl *h, MDB_txn *txn, uint32_t id, const char *tag,
                       int64_t requests, int64_t tokens);
int ratectl__tags_drop(ratectl *h, MDB_txn *txn, uint32_t id);
int ratectl__tags_load(const MDB_val *v, rc_tags_rec *t);
int ratectl__tags_read(ratectl *h, MDB_txn *txn, uint32_t id, rc_tags_rec *t);
void ratectl__key_be32(unsigned char *p, uint32_t v);

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
int ratectl__slot_wait(ratectl *h, rc_lfile *lf, uint32_t id, uint32_t seq,
                       int64_t deadline, int *watching);
/* A place reserved in budget `name` (id) at t_adm, when its record said
 * cooldown_until and epoch, and its bucket vseq. */
typedef struct rc_place {
	const char *name;
	uint32_t id;
	uint32_t epoch;
	uint32_t vseq;
	int64_t t_adm;
	int64_t cooldown_until;
} rc_place;
/* Does the place still stand?  0 yes; 1 a cooldown that covers it began
 * (give it back, plan again); 2 it is void (plan again, nothing to give
 * back); or an error.  Cheap while the bucket's vseq has not moved: then
 * no transaction (p->vseq is brought up to date). */
int ratectl__place_check(ratectl *h, rc_place *p);
/* Sleep until the place's time: 0 then, or what ratectl__place_check()
 * says, or -EINTR. */
int ratectl__reserved_wait(ratectl *h, rc_place *p);
/* Watch for dead holders of lf's slots (one thread per process and
 * budget, shared by its waiters), and stop when done waiting. */
void ratectl__slot_watch(ratectl *h, rc_lfile *lf, uint32_t id, int *watching);
void ratectl__slot_unwatch(ratectl *h, rc_lfile *lf, int *watching);
/* The file is being closed with waits still watching (reservations left
 * pending at ratectl_close()): stop the thread and hand the watch on. */
void ratectl__watch_end(ratectl *h, rc_lfile *lf);
/* Sleep until the budget changes (change_seq moves from seq) or `until`. */
int ratectl__change_wait(ratectl *h, rc_lfile *lf, uint32_t seq, int64_t until);

/* ---- clock.c ---------------------------------------------------------- */

int64_t ratectl__realtime(const ratectl *h);
int ratectl__sleep_until(const ratectl *h, int64_t t);
void ratectl__boot_id(const ratectl *h, char out[RC_BOOT_ID_LEN]);

/* ---- budget.c: the sweep of idle budgets ---------------------------- */

/* Look whether a sweep is due in the host and, if so, do one step. */
void ratectl__sweep_step(ratectl *h, int64_t now);

/* ---- fork.c ----------------------------------------------------------- */

extern uint64_t ratectl__fork_gen;
void ratectl__registry_lock(void);
void ratectl__registry_unlock(void);
extern ratectl *ratectl__open_list;

#endif
