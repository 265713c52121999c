/*
 * cache.c - the host-wide response cache (ratectl.conf(5) `cache`).
 *
 * Whole 2xx answers of cacheable requests, kept in an LMDB environment of
 * their own, DIR/cache/ beside the ledger DIR: its own map and its own
 * write lock, so that a full or busy cache never stands in the way of an
 * admission.  Its databases:
 *
 *   e   key (32 bytes)  -> entry: struct cent, budget, content type, body
 *   o   budget \0 be64 expires key -> be64 size: each budget's entries in
 *       the order they expire (oldest first), for eviction and expiry
 *   p   key -> struct cpend: the request fetching that answer now
 *   s   budget -> struct cstat: counters; ".format" -> CACHE_FORMAT
 *
 * The key is a SHA-256 of the budget's name, the method, the URL, a
 * SHA-256 of the request's credentials (its API key and the like, never
 * kept: credentials_hash()) and the body in a canonical form
 * (jcanon.c: no blanks, each object's members sorted by key), so that two
 * clients that order or space one request differently share its answer.
 *
 * Coalescing.  A request that finds no entry and nobody fetching it puts
 * a p record (its process's liveness key and a nonce of its own) and is
 * sent; others that find the p record wait for its answer.  The fetch
 * ends (ratectl_http_request_end(), or the request's free) by storing the
 * answer or not, removing the p record in the same transaction, and
 * waking the waiters: DIR/cache/wake is a shared page of futex words,
 * word 0 the environment's generation (below), the others buckets chosen
 * by key.  A process that takes a fetch holds an OFD lock on byte
 * LIVE_BASE + its random key of that file (a descriptor opened apart from
 * the mapping, and closed in a fork child: a mapping keeps its open file
 * description, and so a lock, alive in a child); the kernel drops it when
 * the process dies, so a waiter that finds the lock free takes the fetch
 * over.  Waiters look at least every WAIT_SLICE_NS, so a death is seen
 * within that; a fetch older than FETCH_MAX_NS is taken over even from a
 * live process (a request never ended nor freed).
 *
 * Damage.  An environment LMDB will not open (MDB_INVALID and the like),
 * or that says it is damaged in a transaction, or of another format, is
 * removed and made again under an flock of the wake file, and its
 * generation (word 0) is bumped so that every process reopens the new
 * one.  A damaged record is deleted.  The ledger is never touched: a
 * cache holds copies of answers only.
 *
 * Locks: one mutex per environment (c->mu) is held across each
 * transaction and the reopen; never while waiting, and never with the
 * handle's h->mu or any lock of libratectl.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <lmdb.h>

#include "rh.h"

#define CACHE_FORMAT "ratectl-cache 1"
#define FORMAT_KEY ".format"
#define ENT_MAGIC 0x31454352u     /* "RCE1" */
#define PEND_MAGIC 0x31504352u    /* "RCP1" */
#define STAT_MAGIC 0x31534352u    /* "RCS1" */

#define WAKE_WORDS 1024           /* one page: word 0 the generation */
#define WAKE_BYTES ((size_t)WAKE_WORDS * sizeof(uint32_t))
#define LIVE_BASE ((off_t)1 << 61)
#define WAIT_SLICE_NS (100 * RH_NS_PER_MS)
#define POLL_NS (20 * RH_NS_PER_MS)
#define FETCH_MAX_NS (600 * RH_NS_PER_S)
#define PASS_NS (5 * RH_NS_PER_S)        /* after an answer not kept */
#define READER_CHECK_NS (10 * RH_NS_PER_S)
#define SKEW_NS (60 * RH_NS_PER_S)   /* an entry stored "later than now" */
#define EXPIRE_STEP 64               /* expired entries removed per store */
#define CACHE_READERS 1022           /* processes at once, as the ledger's */
#define CTYPE_MAX 255                /* a Content-Type kept (cent.ctype_len) */
#define PC_SLOTS 16                  /* budgets whose hits wait to be written */
#define FLUSH_NS RH_NS_PER_S
#if UINTPTR_MAX > 0xffffffffu
#define CACHE_MAP ((size_t)4 << 30)
#else
#define CACHE_MAP ((size_t)512 << 20)
#endif

/* ---- records --------------------------------------------------------------- */

struct cent {
	uint32_t magic;
	uint16_t status;
	uint8_t budget_len;
	uint8_t ctype_len;
	int64_t stored_ns;         /* CLOCK_REALTIME */
	int64_t expires_ns;
	uint64_t tokens;           /* the usage it answered with */
	uint64_t body_len;
	/* then budget, ctype, body */
};

struct cpend {
	uint32_t magic;
	uint32_t pad;
	uint64_t owner;            /* the fetching process's liveness key */
	uint64_t nonce;            /* the fetching request's */
	int64_t since_ns;          /* CLOCK_BOOTTIME */
};

enum { S_ENTRIES, S_BYTES, S_HITS, S_COALESCED, S_MISSES, S_STORES, S_EVICTIONS,
       S_EXPIRED, S_TOKENS, S_N };

struct cstat {
	uint32_t magic;
	uint32_t n;                /* S_N */
	uint64_t v[S_N];
};

#define ORDER_KEY_MAX (RATECTL_NAME_MAX + 1 + 8 + RH_CACHE_KEY)

/* ---- the environments of this process ---------------------------------------- */

struct rh__cenv {
	struct rh__cenv *next;
	char dir[4200];            /* DIR/cache */
	dev_t dev;                 /* of DIR/cache: who it is */
	ino_t ino;
	int refs;                  /* handles using it (reg_mu) */
	pthread_mutex_t mu;        /* all below */
	pid_t pid;                 /* the process that opened env */
	MDB_env *env;
	MDB_dbi e, o, p, s;
	uint32_t gen;              /* wake[0] when env was opened */
	uint32_t *wake;            /* WAKE_WORDS shared words */
	int live_fd;               /* this process's liveness lock, or -1 */
	uint64_t live_key;
	mode_t mode;               /* of the files */
	int rdonly;                /* env was opened to read only (stats) */
	MDB_txn *rtxn;             /* a reset read transaction, renewed per look */
	uint64_t seq;              /* of this process's fetch nonces */
	/* Hits counted here and written to the counters at most every
	 * FLUSH_NS (and when the handle closes, before the counters are
	 * read, and when the table is full): a hit costs no write. */
	struct {
		char budget[RATECTL_NAME_MAX + 1];
		uint64_t hits, coalesced, tokens;
	} pc[PC_SLOTS];
	unsigned npc;
	int64_t flush_at;          /* CLOCK_MONOTONIC */
	int64_t check_at;          /* the next mdb_reader_check() before a store */
};

static int pc_flush(struct rh__cenv *c);

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rh__cenv *reg;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
	struct rh__cenv *c;

	pthread_mutex_lock(&reg_mu);
	for (c = reg; c; c = c->next)
		pthread_mutex_lock(&c->mu);
}

static void fork_parent(void)
{
	struct rh__cenv *c;

	for (c = reg; c; c = c->next)
		pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&reg_mu);
}

/* The child holds no fetch of its parent's: its liveness lock goes (the
 * environment is reopened at its first use, env_ready()). */
static void fork_child(void)
{
	struct rh__cenv *c;

	for (c = reg; c; c = c->next) {
		if (c->live_fd >= 0)
			close(c->live_fd);
		c->live_fd = -1;
		c->live_key = 0;
		/* The parent's: its reader slot is the parent's to free (the
		 * small struct is left), its hits the parent's to write. */
		c->rtxn = NULL;
		c->npc = 0;
		c->pid = 0;        /* its environment is the parent's: reopened */
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&reg_mu);
}

static void reg_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/*
 * At exit (or when the library is unloaded), the hits this process counted
 * and has not written yet are written: a program that never closes its
 * handle (a binding's, a preloaded shim's) loses no count by exiting.  A
 * lock held by another thread is not waited for: that count is lost, never
 * the exit.  _exit() and signals lose at most FLUSH_NS of counts.
 */
__attribute__((destructor)) static void flush_at_exit(void)
{
	struct rh__cenv *c;

	if (pthread_mutex_trylock(&reg_mu) != 0)
		return;
	for (c = reg; c; c = c->next)
		if (c->npc && c->pid == getpid() && pthread_mutex_trylock(&c->mu) == 0) {
			if (c->env && !c->rdonly)
				(void)pc_flush(c);
			pthread_mutex_unlock(&c->mu);
		}
	pthread_mutex_unlock(&reg_mu);
}

int64_t (*rh__cache_realtime)(void);
int64_t rh__cache_slice_ns = WAIT_SLICE_NS;

static int64_t now_real(void)
{
	return rh__cache_realtime ? rh__cache_realtime() : rh__clock(CLOCK_REALTIME);
}

static int64_t now_boot(void)
{
	return rh__clock(CLOCK_BOOTTIME);
}

static uint32_t *bucket_of(const struct rh__cenv *c, const uint8_t key[RH_CACHE_KEY])
{
	return &c->wake[1 + ((unsigned)key[0] | (unsigned)key[1] << 8) % (WAKE_WORDS - 1)];
}

static void wake_all(uint32_t *w)
{
	__atomic_add_fetch(w, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void wait_on(uint32_t *w, uint32_t seen, int64_t ns)
{
	struct timespec ts = { (time_t)(ns / RH_NS_PER_S), (long)(ns % RH_NS_PER_S) };

	syscall(SYS_futex, w, FUTEX_WAIT, seen, &ts, NULL, 0);
}

static int is_damage(int rc)
{
	return rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED ||
	       rc == MDB_PAGE_NOTFOUND || rc == MDB_INCOMPATIBLE || rc == MDB_BAD_DBI ||
	       rc == MDB_BAD_VALSIZE;
}

/* A damaged or foreign environment (is_damage(), or a wrong format). */
#define DAMAGED 1000

/* The files of DIR/cache, made with c->mode when missing. */
static int wake_open(struct rh__cenv *c, int create)
{
	char path[4300];
	struct stat st;
	void *m;
	int fd;

	snprintf(path, sizeof path, "%s/wake", c->dir);
	if ((fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), c->mode)) < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || (st.st_size < (off_t)WAKE_BYTES &&
	                            (!create || ftruncate(fd, WAKE_BYTES) != 0))) {
		int e = create ? errno : ENOENT;

		close(fd);
		return -(e ? e : EIO);
	}
	if (create && st.st_uid == geteuid())
		(void)fchmod(fd, c->mode);
	m = mmap(NULL, WAKE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	c->wake = m;
	return 0;
}

static int env_open_dbs(struct rh__cenv *c, int create)
{
	MDB_txn *t;
	MDB_val k = { sizeof FORMAT_KEY - 1, (void *)FORMAT_KEY }, v;
	unsigned f = create ? MDB_CREATE : 0;
	int rc;

	if ((rc = mdb_txn_begin(c->env, NULL, create ? 0 : MDB_RDONLY, &t)) != 0)
		return rc;
	if ((rc = mdb_dbi_open(t, "e", f, &c->e)) != 0 ||
	    (rc = mdb_dbi_open(t, "o", f, &c->o)) != 0 ||
	    (rc = mdb_dbi_open(t, "p", f, &c->p)) != 0 ||
	    (rc = mdb_dbi_open(t, "s", f, &c->s)) != 0)
		goto out;
	rc = mdb_get(t, c->s, &k, &v);
	if (rc == MDB_NOTFOUND && create) {
		v.mv_size = sizeof CACHE_FORMAT - 1;
		v.mv_data = (void *)CACHE_FORMAT;
		if ((rc = mdb_put(t, c->s, &k, &v, 0)) != 0)
			goto out;
		return mdb_txn_commit(t);
	}
	if (rc == 0 && (v.mv_size != sizeof CACHE_FORMAT - 1 ||
	                memcmp(v.mv_data, CACHE_FORMAT, v.mv_size) != 0))
		rc = DAMAGED;
	if (rc == 0)
		return mdb_txn_commit(t);  /* the handles last past a commit only */
out:
	mdb_txn_abort(t);
	/* A read-only look at a cache with no databases yet: nothing in it. */
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static void env_close(struct rh__cenv *c)
{
	if (c->rtxn && c->pid == getpid())
		mdb_txn_abort(c->rtxn);
	c->rtxn = NULL;
	if (c->env)
		mdb_env_close(c->env);
	c->env = NULL;
}

/* Open DIR/cache's environment: 0, DAMAGED, or another LMDB / -errno code. */
static int env_open(struct rh__cenv *c, int create)
{
	char path[4300];
	struct stat st;
	int rc, tries;

	snprintf(path, sizeof path, "%s/data.mdb", c->dir);
	if (!create && stat(path, &st) != 0)
		return -errno;
	for (tries = 0;; tries++) {
		if ((rc = mdb_env_create(&c->env)) != 0)
			return rc;
		mdb_env_set_maxdbs(c->env, 4);
		mdb_env_set_maxreaders(c->env, CACHE_READERS);
		mdb_env_set_mapsize(c->env, CACHE_MAP);
		rc = mdb_env_open(c->env, c->dir, MDB_NOSYNC | MDB_NOTLS |
		                  (create ? 0 : MDB_RDONLY), c->mode);
		/* Opening races with another process opening or closing it
		 * at that instant: those failures pass. */
		if ((rc != EAGAIN && rc != EBUSY && rc != EINTR) || tries == 8)
			break;
		env_close(c);
		usleep(1000);
	}
	if (rc == 0) {
		int dead;

		mdb_reader_check(c->env, &dead);
		if (create && stat(path, &st) == 0 && st.st_uid == geteuid()) {
			(void)chmod(path, c->mode);
			snprintf(path, sizeof path, "%s/lock.mdb", c->dir);
			(void)chmod(path, c->mode);
		}
		rc = env_open_dbs(c, create);
	}
	if (rc != 0)
		env_close(c);
	return is_damage(rc) ? DAMAGED : rc;
}

/*
 * Remove the damaged environment and make a new one: under an flock of
 * the wake file, and only when nobody did since this process opened it
 * (the generation is still ours).  Returns env_open()'s code.
 */
static int env_rebuild(struct rh__cenv *c, uint32_t gen_seen)
{
	char path[4300];
	int fd, rc;

	env_close(c);
	snprintf(path, sizeof path, "%s/wake", c->dir);
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return -errno;
	while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
		;
	if (__atomic_load_n(&c->wake[0], __ATOMIC_ACQUIRE) == gen_seen) {
		/* The lock file first: an opener in between gets a new one and
		 * the old, damaged data (and waits on the flock to rebuild),
		 * never the old lock file with new data. */
		snprintf(path, sizeof path, "%s/lock.mdb", c->dir);
		unlink(path);
		snprintf(path, sizeof path, "%s/data.mdb", c->dir);
		unlink(path);
		__atomic_add_fetch(&c->wake[0], 1, __ATOMIC_RELEASE);
	}
	c->gen = __atomic_load_n(&c->wake[0], __ATOMIC_ACQUIRE);
	rc = env_open(c, 1);
	close(fd);
	return rc;
}

/* c->env usable by this process (c->mu held): reopened after fork() or
 * another process's rebuild.  0, or an error: the cache is off for now. */
static int env_ready(struct rh__cenv *c)
{
	uint32_t gen = __atomic_load_n(&c->wake[0], __ATOMIC_ACQUIRE);
	int rc;

	/* c->pid is 0 in a fork child (fork_child()): no getpid() per look */
	if (c->env && !c->rdonly && c->pid != 0 && c->gen == gen)
		return 0;
	env_close(c);
	c->pid = getpid();
	c->gen = gen;
	c->rdonly = 0;
	rc = env_open(c, 1);
	if (rc == DAMAGED)
		rc = env_rebuild(c, gen);
	return rc;
}

static void cenv_free(struct rh__cenv *c)
{
	env_close(c);
	if (c->wake)
		munmap(c->wake, WAKE_BYTES);
	if (c->live_fd >= 0)
		close(c->live_fd);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* The directory of the cache, DIR/cache, and the mode of its files. */
static int cache_dir(ratectl_http *h, char *out, size_t n, mode_t *dmode, mode_t *fmode)
{
	char base[4096];
	ratectl *l = rh__ledger_now(h);
	struct stat st;

	if (l)
		snprintf(base, sizeof base, "%s", ratectl_path(l));
	else if (h->ledger_dir[0])
		snprintf(base, sizeof base, "%s", h->ledger_dir);
	else if (ratectl_default_dir(base, sizeof base) != 0)
		return -ENAMETOOLONG;
	if ((size_t)snprintf(out, n, "%s/cache", base) >= n)
		return -ENAMETOOLONG;
	if (stat(base, &st) != 0)
		return -errno;
	/* The ledger's sharing: its group may write when it may. */
	*dmode = st.st_mode & (S_ISGID | 0770);
	*fmode = st.st_mode & 0020 ? 0660 : 0600;
	return 0;
}

/*
 * h's cache environment, opened (create: made) at first use; NULL with
 * *rc when it cannot be.  The handle keeps its reference till it closes.
 */
static struct rh__cenv *cenv_get(ratectl_http *h, int create, int *rc)
{
	struct rh__cenv *c = __atomic_load_n(&h->cache, __ATOMIC_ACQUIRE), *none = NULL;
	char dir[4200], why[256];
	mode_t dmode = 0700, fmode = 0600;
	struct stat st;
	int err;

	if (c)
		return c;
	if (create && !rh__ledger(h, why, sizeof why, &err)) {
		*rc = err < 0 ? err : -EIO;
		return NULL;
	}
	if ((*rc = cache_dir(h, dir, sizeof dir, &dmode, &fmode)) != 0)
		return NULL;
	if (create && mkdir(dir, 0700) == 0)
		(void)chmod(dir, dmode ? dmode : 0700);
	/* One environment per directory and process, however it is named
	 * ("L", "L/", a link): by device and inode, as the ledger's.  LMDB
	 * must not open one environment twice in a process. */
	if (stat(dir, &st) != 0) {
		*rc = -errno;
		return NULL;
	}
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg_mu);
	for (c = reg; c && (c->dev != st.st_dev || c->ino != st.st_ino); c = c->next)
		;
	if (c) {
		c->refs++;
	} else if (!(c = calloc(1, sizeof *c))) {
		*rc = -ENOMEM;
	} else {
		memcpy(c->dir, dir, sizeof c->dir);
		pthread_mutex_init(&c->mu, NULL);
		c->live_fd = -1;
		c->mode = fmode;
		c->refs = 1;
		c->dev = st.st_dev;
		c->ino = st.st_ino;
		if ((*rc = wake_open(c, create)) != 0) {
			cenv_free(c);
			c = NULL;
		} else {
			c->next = reg;
			reg = c;
		}
	}
	pthread_mutex_unlock(&reg_mu);
	if (c && !__atomic_compare_exchange_n(&h->cache, &none, c, 0,
	                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		rh__cache_release(c);
		c = none;
	}
	return c;
}

void rh__cache_release(struct rh__cenv *c)
{
	struct rh__cenv **pp;

	if (!c)
		return;
	/* The hits this process counted are written now. */
	pthread_mutex_lock(&c->mu);
	if (c->npc && env_ready(c) == 0)
		(void)pc_flush(c);
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_lock(&reg_mu);
	if (--c->refs > 0) {
		pthread_mutex_unlock(&reg_mu);
		return;
	}
	for (pp = &reg; *pp && *pp != c; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = c->next;
	pthread_mutex_unlock(&reg_mu);
	/* A parent's environment too: mdb_env_close() of an inherited one
	 * clears this process's reader slots only (LMDB >= 0.9.23). */
	cenv_free(c);
}

/* ---- liveness of fetches ------------------------------------------------------ */

/* This process's liveness lock (c->mu held): 0, or -errno. */
static int live_hold(struct rh__cenv *c)
{
	char path[4300];
	struct flock fl;
	uint64_t k;
	int tries;

	if (c->live_fd >= 0)
		return 0;
	snprintf(path, sizeof path, "%s/wake", c->dir);
	if ((c->live_fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return -errno;
	for (tries = 0; tries < 8; tries++) {
		if (getrandom(&k, sizeof k, 0) != (ssize_t)sizeof k)
			k = (uint64_t)rh__clock(CLOCK_MONOTONIC) * 0x9e3779b97f4a7c15ull ^
			    (uint64_t)getpid();
		k &= ((uint64_t)1 << 61) - 2;
		k |= 1;                     /* never 0 */
		memset(&fl, 0, sizeof fl);
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = LIVE_BASE + (off_t)k;
		fl.l_len = 1;
		if (fcntl(c->live_fd, F_OFD_SETLK, &fl) == 0) {
			c->live_key = k;
			return 0;
		}
	}
	close(c->live_fd);
	c->live_fd = -1;
	return -EAGAIN;
}

/* Does a process hold the liveness lock of key?  A probe that fails
 * counts as alive: a fetch is never taken over on a guess. */
static int live_alive(struct rh__cenv *c, uint64_t key)
{
	struct flock fl;
	int fd = c->live_fd;

	if (key == c->live_key && fd >= 0)
		return 1;
	if (fd < 0 && live_hold(c) != 0)
		return 1;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = LIVE_BASE + (off_t)key;
	fl.l_len = 1;
	if (fcntl(c->live_fd, F_OFD_GETLK, &fl) != 0)
		return 1;
	return fl.l_type != F_UNLCK;
}

/* ---- counters ------------------------------------------------------------------- */

static MDB_val name_val(const char *budget)
{
	MDB_val k = { strlen(budget), (void *)budget };

	return k;
}

/* Add d[0..S_N) (signed) to budget's counters, never below 0. */
static int stat_add(struct rh__cenv *c, MDB_txn *t, const char *budget,
                    const int64_t d[S_N])
{
	MDB_val k = name_val(budget), v;
	struct cstat st;
	int rc, i;

	memset(&st, 0, sizeof st);
	rc = mdb_get(t, c->s, &k, &v);
	if (rc == 0 && v.mv_size == sizeof st)
		memcpy(&st, v.mv_data, sizeof st);
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (st.magic != STAT_MAGIC || st.n != S_N)
		memset(&st, 0, sizeof st);     /* new, or damaged: begun again */
	st.magic = STAT_MAGIC;
	st.n = S_N;
	for (i = 0; i < S_N; i++)
		st.v[i] = d[i] < 0 && (uint64_t)-d[i] > st.v[i] ? 0 : st.v[i] + (uint64_t)d[i];
	v.mv_size = sizeof st;
	v.mv_data = &st;
	return mdb_put(t, c->s, &k, &v, 0);
}

/* ---- entries -------------------------------------------------------------------- */

static size_t order_key(uint8_t *out, const char *budget, int64_t expires,
                        const uint8_t key[RH_CACHE_KEY])
{
	size_t n = strlen(budget);
	int i;

	memcpy(out, budget, n);
	out[n++] = 0;
	for (i = 7; i >= 0; i--)
		out[n++] = (uint8_t)((uint64_t)expires >> (8 * i));
	memcpy(out + n, key, RH_CACHE_KEY);
	return n + RH_CACHE_KEY;
}

/* An entry as stored, checked: 0 with *e (a copy) and pointers into v,
 * or -1 when damaged. */
static int ent_read(const MDB_val *v, struct cent *e, const char **budget,
                    const char **ctype, const char **body)
{
	const char *p = v->mv_data;

	if (v->mv_size < sizeof *e)
		return -1;
	memcpy(e, p, sizeof *e);
	if (e->magic != ENT_MAGIC || e->budget_len == 0 ||
	    e->budget_len > RATECTL_NAME_MAX ||
	    e->body_len != v->mv_size - sizeof *e - e->budget_len - e->ctype_len ||
	    v->mv_size < sizeof *e + e->budget_len + e->ctype_len)
		return -1;
	*budget = p + sizeof *e;
	*ctype = *budget + e->budget_len;
	*body = *ctype + e->ctype_len;
	return 0;
}

/* Remove the entry of order row ok[0..on) (size sz), counting it in d. */
static size_t order_key(uint8_t *out, const char *budget, int64_t expires,
                        const uint8_t key[RH_CACHE_KEY]);
static int ent_read(const MDB_val *v, struct cent *e, const char **budget,
                    const char **ctype, const char **body);

/*
 * Remove order row ok[0..on) (of an entry of size sz) at cur, and the
 * entry it stands for, counting it in d (as `why`: S_EXPIRED or
 * S_EVICTIONS).  The entry under its key is removed only when it is that
 * one (its budget and expiry make this row): a damaged one was removed
 * already and a newer one stored under the key has a row of its own.  The
 * row carries the accounting either way.
 */
static int drop_ordered(struct rh__cenv *c, MDB_txn *t, MDB_cursor *cur,
                        const uint8_t *ok, size_t on, uint64_t sz, int why,
                        int64_t d[S_N])
{
	MDB_val k = { RH_CACHE_KEY, (void *)(ok + on - RH_CACHE_KEY) }, v;
	const char *budget, *ctype, *body;
	uint8_t mine[ORDER_KEY_MAX];
	char b[RATECTL_NAME_MAX + 1];
	struct cent e;
	int rc;

	rc = mdb_get(t, c->e, &k, &v);
	if (rc == 0 && ent_read(&v, &e, &budget, &ctype, &body) == 0) {
		memcpy(b, budget, e.budget_len);
		b[e.budget_len] = '\0';
		if (order_key(mine, b, e.expires_ns, k.mv_data) == on &&
		    memcmp(mine, ok, on) == 0)
			rc = mdb_del(t, c->e, &k, NULL);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if ((rc = mdb_cursor_del(cur, 0)) != 0)
		return rc;
	d[S_ENTRIES]--;
	d[S_BYTES] -= (int64_t)sz;
	d[why]++;
	return 0;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t x = 0;
	int i;

	for (i = 0; i < 8; i++)
		x = x << 8 | p[i];
	return x;
}

/*
 * budget's entries from the oldest: those expired (at most EXPIRE_STEP),
 * then as many as it takes to bring its bytes (*bytes, updated) to cap.
 * Each removal seeks the budget's first row again: a cursor's key is not
 * to be read after its row is deleted.
 */
static int trim(struct rh__cenv *c, MDB_txn *t, const char *budget, uint64_t cap,
                int64_t now, uint64_t *bytes, int64_t d[S_N])
{
	uint8_t pre[RATECTL_NAME_MAX + 1], ok[ORDER_KEY_MAX];
	size_t pn = strlen(budget) + 1;
	MDB_cursor *cur;
	MDB_val k, v;
	unsigned n = 0;
	int rc;

	memcpy(pre, budget, pn);
	if ((rc = mdb_cursor_open(t, c->o, &cur)) != 0)
		return rc;
	for (;;) {
		int64_t exp;
		uint64_t sz;
		int expired;

		k.mv_size = pn;
		k.mv_data = pre;
		if ((rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) != 0)
			break;
		if (k.mv_size != pn + 8 + RH_CACHE_KEY || memcmp(k.mv_data, pre, pn) != 0)
			break;
		memcpy(ok, k.mv_data, k.mv_size);
		exp = (int64_t)be64(ok + pn);
		sz = v.mv_size == 8 ? be64(v.mv_data) : 0;
		expired = exp <= now;
		if (!(expired && n < EXPIRE_STEP) && *bytes <= cap)
			break;
		n += expired;
		if ((rc = drop_ordered(c, t, cur, ok, pn + 8 + RH_CACHE_KEY, sz,
		                       expired ? S_EXPIRED : S_EVICTIONS, d)) != 0)
			break;
		*bytes = sz > *bytes ? 0 : *bytes - sz;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static uint64_t stat_get(struct rh__cenv *c, MDB_txn *t, const char *budget, int i)
{
	MDB_val k = name_val(budget), v;
	struct cstat st;

	if (mdb_get(t, c->s, &k, &v) != 0 || v.mv_size != sizeof st)
		return 0;
	memcpy(&st, v.mv_data, sizeof st);
	return st.magic == STAT_MAGIC && st.n == S_N ? st.v[i] : 0;
}

/* Delete the entry at key (stored as *e by budget) and its order row,
 * counting it in d as why (S_EXPIRED, S_EVICTIONS; S_N: replaced, neither). */
static int ent_drop(struct rh__cenv *c, MDB_txn *t, const uint8_t key[RH_CACHE_KEY],
                    const struct cent *e, const char *budget, size_t vsize,
                    int why, int64_t d[S_N])
{
	uint8_t ok[ORDER_KEY_MAX];
	MDB_val k = { RH_CACHE_KEY, (void *)key }, o;
	int rc;

	o.mv_size = order_key(ok, budget, e->expires_ns, key);
	o.mv_data = ok;
	if ((rc = mdb_del(t, c->e, &k, NULL)) != 0)
		return rc;
	rc = mdb_del(t, c->o, &o, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	d[S_ENTRIES]--;
	d[S_BYTES] -= (int64_t)(vsize + RH_CACHE_KEY + o.mv_size);
	if (why < S_N)
		d[why]++;
	return 0;
}

/* ---- the key of a request --------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * What tells one caller from another, hashed into kh (the values are never
 * kept): every request header that carries credentials, name and value in
 * the order given: Authorization, x-api-key, api-key, x-goog-api-key,
 * Cookie, and any other whose name holds "auth", "key" or "token".  Two
 * keys never share an answer, however a provider takes its key; a header
 * that is not a credential costs a miss at worst.
 */
static void credentials_hash(const ratectl_http_header *hd, size_t n, uint8_t kh[32])
{
	struct rh__sha256_ctx sc;
	const char *nm;
	size_t i;

	rh__sha256_init(&sc);
	for (i = 0; hd && i < n; i++) {
		if (!(nm = hd[i].name) || !hd[i].value)
			continue;
		if (!strcasestr(nm, "auth") && !strcasestr(nm, "key") &&
		    !strcasestr(nm, "token") && strcasecmp(nm, "cookie") != 0)
			continue;
		/* as given: another case of a name costs a miss, never a share */
		rh__sha256_update(&sc, nm, strlen(nm) + 1);
		rh__sha256_update(&sc, hd[i].value, strlen(hd[i].value) + 1);
	}
	rh__sha256_final(&sc, kh);
}

int rh__cache_key(const struct rh__policy *pol, const char *method, const char *url,
                  const char *path, const ratectl_http_header *hd, size_t nhd,
                  const void *body, size_t len, uint8_t key[RH_CACHE_KEY])
{
	struct rh__sha256_ctx sc;
	struct rh__jcanon_top top;
	char small[4096], *canon = small;
	uint8_t kh[32];
	size_t clen = 0;
	int post = strcasecmp(method, "POST") == 0, ok = 0;
	int embeddings = ends_with(path, "/embeddings");

	if (!pol->cache_ttl_ns)
		return 0;
	if (!post && !(strcasecmp(method, "GET") == 0 && pol->cache_requests == RH_CACHE_ANY))
		return 0;
	if (post) {
		/* The canonical form needs the whole body, as JSON. */
		if (!body || len == 0)
			return 0;
		if (len > sizeof small && !(canon = malloc(len)))
			return 0;
		if (rh__jcanon(body, len, canon, &clen, &top) != 0 || !top.object ||
		    top.stream)                    /* streamed: never cached */
			goto out;
		switch (pol->cache_requests) {
		case RH_CACHE_EMBEDDINGS:
			ok = embeddings;
			break;
		case RH_CACHE_ANY:
			ok = 1;
			break;
		default:
			ok = embeddings || top.temperature_zero;
		}
		if (!ok)
			goto out;
	} else if (body && len) {
		return 0;
	}
	credentials_hash(hd, nhd, kh);
	rh__sha256_init(&sc);
	rh__sha256_update(&sc, CACHE_FORMAT, sizeof CACHE_FORMAT);
	rh__sha256_update(&sc, pol->name, strlen(pol->name) + 1);
	rh__sha256_update(&sc, method, strlen(method) + 1);
	rh__sha256_update(&sc, url, strlen(url) + 1);
	rh__sha256_update(&sc, kh, sizeof kh);
	memset(kh, 0, sizeof kh);
	rh__sha256_update(&sc, canon, clen);
	rh__sha256_final(&sc, key);
	ok = 1;
out:
	if (canon != small)
		free(canon);
	return ok;
}

/* ---- lookup, fetch, store ----------------------------------------------------------- */

/* A transaction on c (c->mu held): begun, with the map's size caught up. */
static int txn_begin(struct rh__cenv *c, unsigned flags, MDB_txn **t)
{
	int rc = mdb_txn_begin(c->env, NULL, flags, t);

	if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(c->env, 0) == 0)
		rc = mdb_txn_begin(c->env, NULL, flags, t);
	return rc;
}

/* After an LMDB error on c (c->mu held): a damaged environment is made
 * again, for the next request. */
static void after_error(struct rh__cenv *c, int rc)
{
	if (is_damage(rc) || rc == DAMAGED)
		(void)env_rebuild(c, c->gen);
}

/* Copy a found entry into the request's answer. */
static int hit_copy(struct rh__cache_req *q, const struct cent *e, const char *ctype,
                    const char *body, int64_t now)
{
	char *b = malloc(e->body_len ? e->body_len : 1);
	int64_t age = now > e->stored_ns ? (now - e->stored_ns) / RH_NS_PER_S : 0;

	if (!b)
		return -ENOMEM;
	memcpy(b, body, e->body_len);
	free(q->hit_body);
	q->hit_body = b;
	q->hit_len = e->body_len;
	q->hit_status = e->status;
	memcpy(q->hit_ctype, ctype, e->ctype_len);
	q->hit_ctype[e->ctype_len] = '\0';
	snprintf(q->hit_age, sizeof q->hit_age, "%lld", (long long)age);
	q->hit_coalesced = q->waited;
	return 0;
}

/*
 * What a fetch record says to q (c->mu held): RH_CACHE_WAIT (another
 * request fetches it, and its process lives), RH_CACHE_OFF (a pass: the
 * fetch q waited for got an answer too big to keep; q is sent at once,
 * uncached, with the others that waited), or 0 (nobody: q may fetch it;
 * a request that comes after a pass begins a fetch of its own).
 */
static int pending(struct rh__cenv *c, const struct rh__cache_req *q,
                   const struct cpend *pd)
{
	int64_t age = now_boot() - pd->since_ns;

	if (pd->magic != PEND_MAGIC || age < 0 || (pd->owner && pd->nonce == q->nonce))
		return 0;
	if (pd->owner == 0)            /* for those that waited only */
		return q->waited && age < PASS_NS ? RH_CACHE_OFF : 0;
	return age < FETCH_MAX_NS && live_alive(c, pd->owner) ? RH_CACHE_WAIT : 0;
}

/* Write the hits counted in c->pc (c->mu held, env ready). */
static int pc_flush(struct rh__cenv *c)
{
	int64_t d[S_N];
	MDB_txn *t;
	unsigned i;
	int rc;

	c->flush_at = rh__clock(CLOCK_MONOTONIC) + FLUSH_NS;
	if (!c->npc)
		return 0;
	if ((rc = txn_begin(c, 0, &t)) != 0)
		return rc;
	for (i = 0; i < c->npc; i++) {
		memset(d, 0, sizeof d);
		d[S_HITS] = (int64_t)c->pc[i].hits;
		d[S_COALESCED] = (int64_t)c->pc[i].coalesced;
		d[S_TOKENS] = (int64_t)c->pc[i].tokens;
		if ((rc = stat_add(c, t, c->pc[i].budget, d)) != 0) {
			mdb_txn_abort(t);
			return rc;
		}
	}
	if ((rc = mdb_txn_commit(t)) == 0)
		c->npc = 0;
	return rc;
}

/* Count a hit of budget (c->mu held). */
static void pc_add(struct rh__cenv *c, const char *budget, int coalesced,
                   uint64_t tokens)
{
	unsigned i;

	for (i = 0; i < c->npc && strcmp(c->pc[i].budget, budget) != 0; i++)
		;
	if (i == PC_SLOTS) {
		if (pc_flush(c) != 0)
			return;            /* the count is lost, never the answer */
		i = 0;
	}
	if (i == c->npc) {
		memset(&c->pc[i], 0, sizeof c->pc[i]);
		snprintf(c->pc[i].budget, sizeof c->pc[i].budget, "%s", budget);
		c->npc++;
	}
	c->pc[i].hits += !coalesced;
	c->pc[i].coalesced += coalesced != 0;
	c->pc[i].tokens += tokens;
}

/*
 * The common case in a read transaction (c->mu held): RH_CACHE_HIT for an
 * entry fresh and whole, RH_CACHE_WAIT when another fetches it, 0 when it
 * takes a write (nothing, expired, damaged: look() sees to it), or an
 * LMDB error.
 */
static int look_read(struct rh__cenv *c, const struct rh__policy *pol,
                     struct rh__cache_req *q)
{
	MDB_val k = { RH_CACHE_KEY, q->key }, v;
	const char *budget, *ctype, *body;
	int64_t now = now_real();
	struct cpend pd;
	struct cent e;
	int rc;

	rc = c->rtxn ? mdb_txn_renew(c->rtxn) : txn_begin(c, MDB_RDONLY, &c->rtxn);
	if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(c->env, 0) == 0)
		rc = mdb_txn_renew(c->rtxn);
	if (rc == MDB_READERS_FULL) {        /* slots of killed processes */
		int dead;

		mdb_reader_check(c->env, &dead);
		rc = c->rtxn ? mdb_txn_renew(c->rtxn) : txn_begin(c, MDB_RDONLY, &c->rtxn);
	}
	if (rc != 0) {
		if (c->rtxn)
			mdb_txn_abort(c->rtxn);
		c->rtxn = NULL;
		return rc;
	}
	rc = mdb_get(c->rtxn, c->e, &k, &v);
	if (rc == 0) {
		if (ent_read(&v, &e, &budget, &ctype, &body) != 0 || e.expires_ns <= now ||
		    e.stored_ns > now + SKEW_NS || e.budget_len != strlen(pol->name) ||
		    memcmp(budget, pol->name, e.budget_len) != 0) {
			rc = 0;            /* for look() to remove */
		} else if ((rc = hit_copy(q, &e, ctype, body, now)) == 0) {
			pc_add(c, pol->name, q->waited, e.tokens);
			rc = RH_CACHE_HIT;
		}
	} else if (rc == MDB_NOTFOUND) {
		rc = mdb_get(c->rtxn, c->p, &k, &v);
		if (rc == 0 && v.mv_size == sizeof pd) {
			memcpy(&pd, v.mv_data, sizeof pd);
			rc = pending(c, q, &pd);
		} else if (rc == MDB_NOTFOUND || rc == 0) {
			rc = 0;
		}
	}
	mdb_txn_reset(c->rtxn);
	if (rc == RH_CACHE_HIT && rh__clock(CLOCK_MONOTONIC) >= c->flush_at)
		(void)pc_flush(c);
	return rc;
}

/* One look (c->mu held): RH_CACHE_HIT, _FETCH (the p record is ours
 * now), _WAIT (another fetches it), or an LMDB / -errno error. */
static int look(struct rh__cenv *c, const struct rh__policy *pol, struct rh__cache_req *q)
{
	int64_t d[S_N] = { 0 }, now = now_real();
	MDB_val k = { RH_CACHE_KEY, q->key }, v;
	const char *budget, *ctype, *body;
	struct cpend pd;
	struct cent e;
	MDB_txn *t;
	int rc;

	if ((rc = txn_begin(c, 0, &t)) != 0)
		return rc;
	rc = mdb_get(t, c->e, &k, &v);
	if (rc == 0 && ent_read(&v, &e, &budget, &ctype, &body) != 0) {
		rc = mdb_del(t, c->e, &k, NULL);     /* damaged: dropped */
		rc = rc ? rc : MDB_NOTFOUND;
	} else if (rc == 0 && (e.expires_ns <= now || e.stored_ns > now + SKEW_NS ||
	                       e.budget_len != strlen(pol->name) ||
	                       memcmp(budget, pol->name, e.budget_len) != 0)) {
		char b[RATECTL_NAME_MAX + 1];

		memcpy(b, budget, e.budget_len);
		b[e.budget_len] = '\0';
		rc = ent_drop(c, t, q->key, &e, b, v.mv_size, S_EXPIRED, d);
		if (rc == 0)
			rc = stat_add(c, t, b, d);
		memset(d, 0, sizeof d);
		rc = rc ? rc : MDB_NOTFOUND;
	} else if (rc == 0) {
		if ((rc = hit_copy(q, &e, ctype, body, now)) != 0)
			goto fail;
		d[q->waited ? S_COALESCED : S_HITS] = 1;
		d[S_TOKENS] = (int64_t)e.tokens;
		if ((rc = stat_add(c, t, pol->name, d)) != 0)
			goto fail;
		return (rc = mdb_txn_commit(t)) == 0 ? RH_CACHE_HIT : rc;
	}
	if (rc != MDB_NOTFOUND)
		goto fail;
	rc = mdb_get(t, c->p, &k, &v);
	if (rc == 0 && v.mv_size == sizeof pd) {
		memcpy(&pd, v.mv_data, sizeof pd);
		if ((rc = pending(c, q, &pd)) != 0) {
			mdb_txn_abort(t);
			return rc;
		}
	} else if (rc != 0 && rc != MDB_NOTFOUND) {
		goto fail;
	}
	/* Nobody fetches it (or the one who did is gone): we do. */
	if ((rc = live_hold(c)) != 0)
		goto fail;
	if (!q->nonce)
		q->nonce = (c->live_key << 2) + ++c->seq;  /* never 0: key is odd */
	memset(&pd, 0, sizeof pd);
	pd.magic = PEND_MAGIC;
	pd.owner = c->live_key;
	pd.nonce = q->nonce;
	pd.since_ns = now_boot();
	v.mv_size = sizeof pd;
	v.mv_data = &pd;
	if ((rc = mdb_put(t, c->p, &k, &v, 0)) != 0)
		goto fail;
	d[S_MISSES] = 1;
	if ((rc = stat_add(c, t, pol->name, d)) != 0)
		goto fail;
	if ((rc = mdb_txn_commit(t)) != 0)     /* frees t, whatever it says */
		return rc;
	q->fetching = 1;
	q->pid = getpid();
	return RH_CACHE_FETCH;
fail:
	mdb_txn_abort(t);
	return rc;
}

int rh__cache_lookup(ratectl_http *h, const struct rh__policy *pol,
                     struct rh__cache_req *q, int block, int64_t *wait_ns)
{
	struct rh__cenv *c;
	uint32_t *w, seen;
	int64_t left;
	int rc;

	if (!(c = cenv_get(h, 1, &rc)))
		return RH_CACHE_OFF;
	w = bucket_of(c, q->key);
	for (;;) {
		seen = __atomic_load_n(w, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&c->mu);
		rc = env_ready(c);
		if (rc == 0 && (rc = look_read(c, pol, q)) == 0)
			rc = look(c, pol, q);
		if (rc != RH_CACHE_HIT && rc != RH_CACHE_FETCH && rc != RH_CACHE_WAIT)
			after_error(c, rc);
		pthread_mutex_unlock(&c->mu);
		if (rc != RH_CACHE_WAIT)
			return rc == RH_CACHE_HIT || rc == RH_CACHE_FETCH ? rc : RH_CACHE_OFF;
		q->waited = 1;
		left = q->deadline - rh__clock(CLOCK_MONOTONIC);
		if (left <= 0)
			return RATECTL_ETIMEDOUT;
		if (!block) {
			if (wait_ns)
				*wait_ns = left < POLL_NS ? left : POLL_NS;
			return RH_CACHE_WAIT;
		}
		wait_on(w, seen, left < rh__cache_slice_ns ? left : rh__cache_slice_ns);
	}
}

/* Store the answer (c->mu held). */
static int store(struct rh__cenv *c, MDB_txn *t, const struct rh__policy *pol,
                 struct rh__cache_req *q, int status, const char *ctype,
                 uint64_t tokens, int64_t d[S_N])
{
	size_t blen = strlen(pol->name), clen = ctype ? strnlen(ctype, CTYPE_MAX) : 0;
	MDB_val k = { RH_CACHE_KEY, q->key }, v, o;
	const char *ob, *oc, *obody;
	uint8_t ok[ORDER_KEY_MAX], sz[8];
	uint64_t size, bytes;
	struct cent e, old;
	int64_t now = now_real();
	char *p;
	int rc, i;

	/* One that another request stored meanwhile is replaced. */
	if ((rc = mdb_get(t, c->e, &k, &v)) == 0) {
		char b[RATECTL_NAME_MAX + 1];

		if (ent_read(&v, &old, &ob, &oc, &obody) != 0) {
			rc = mdb_del(t, c->e, &k, NULL);
		} else {
			memcpy(b, ob, old.budget_len);
			b[old.budget_len] = '\0';
			/* replaced: neither evicted nor expired */
			if ((rc = ent_drop(c, t, q->key, &old, b, v.mv_size, S_N, d)) == 0 &&
			    strcmp(b, pol->name) != 0) {
				rc = stat_add(c, t, b, d);
				memset(d, 0, S_N * sizeof *d);
			}
		}
		if (rc != 0)
			return rc;
	} else if (rc != MDB_NOTFOUND) {
		return rc;
	}
	memset(&e, 0, sizeof e);
	e.magic = ENT_MAGIC;
	e.status = (uint16_t)status;
	e.budget_len = (uint8_t)blen;
	e.ctype_len = (uint8_t)clen;
	e.stored_ns = now;
	e.expires_ns = now + pol->cache_ttl_ns;
	e.tokens = tokens;
	e.body_len = q->len;
	v.mv_size = sizeof e + blen + clen + q->len;
	v.mv_data = NULL;
	if ((rc = mdb_put(t, c->e, &k, &v, MDB_RESERVE)) != 0)
		return rc;
	p = v.mv_data;
	memcpy(p, &e, sizeof e);
	memcpy(p + sizeof e, pol->name, blen);
	if (clen)
		memcpy(p + sizeof e + blen, ctype, clen);
	if (q->len)
		memcpy(p + sizeof e + blen + clen, q->buf, q->len);
	o.mv_size = order_key(ok, pol->name, e.expires_ns, q->key);
	o.mv_data = ok;
	size = v.mv_size + RH_CACHE_KEY + o.mv_size;
	for (i = 0; i < 8; i++)
		sz[i] = (uint8_t)(size >> (8 * (7 - i)));
	v.mv_size = 8;
	v.mv_data = sz;
	if ((rc = mdb_put(t, c->o, &o, &v, 0)) != 0)
		return rc;
	d[S_STORES]++;
	d[S_ENTRIES]++;
	d[S_BYTES] += (int64_t)size;
	{
		int64_t b = (int64_t)stat_get(c, t, pol->name, S_BYTES) + d[S_BYTES];

		bytes = b < 0 ? 0 : (uint64_t)b;
	}
	return trim(c, t, pol->name, pol->cache_size, now, &bytes, d);
}

/*
 * End q's fetch in one write transaction (c->mu held): its fetch record
 * goes; with keep, the answer is stored; with pass (a whole 2xx answer
 * too big to keep: so will the next be), the record becomes a pass (owner
 * 0) for PASS_NS, which sends the requests that were waiting for it at
 * once, uncached, rather than one after another.  After a failure (not a
 * 2xx, no answer) one of them fetches in its place.
 */
static int finish(struct rh__cenv *c, const struct rh__policy *pol,
                  struct rh__cache_req *q, int keep, int pass, int status,
                  const char *ctype, uint64_t tokens)
{
	MDB_val k = { RH_CACHE_KEY, q->key }, v;
	int64_t d[S_N] = { 0 };
	struct cpend pd;
	MDB_txn *t;
	int rc, ours = 1;

	if ((rc = txn_begin(c, 0, &t)) != 0)
		return rc;
	rc = mdb_get(t, c->p, &k, &v);
	if (rc == 0 && v.mv_size == sizeof pd) {
		memcpy(&pd, v.mv_data, sizeof pd);
		ours = pd.nonce == q->nonce;    /* else taken over: left to its taker */
		if (ours && (rc = mdb_del(t, c->p, &k, NULL)) != 0)
			goto fail;
	} else if (rc == 0) {
		if ((rc = mdb_del(t, c->p, &k, NULL)) != 0)    /* damaged */
			goto fail;
	} else if (rc != MDB_NOTFOUND) {
		goto fail;
	}
	if (keep && (rc = store(c, t, pol, q, status, ctype, tokens, d)) != 0)
		goto fail;
	if (keep && (rc = stat_add(c, t, pol->name, d)) != 0)
		goto fail;
	if (!keep && pass && ours) {
		memset(&pd, 0, sizeof pd);
		pd.magic = PEND_MAGIC;
		pd.since_ns = now_boot();
		v.mv_size = sizeof pd;
		v.mv_data = &pd;
		if ((rc = mdb_put(t, c->p, &k, &v, 0)) != 0)
			goto fail;
	}
	return mdb_txn_commit(t);
fail:
	mdb_txn_abort(t);
	return rc;
}

/* This process's fetch records can no longer be removed (no space, an
 * environment it cannot open): it gives up its liveness key, so that
 * those waiting for its fetches find them dead and go on (c->mu held). */
static void live_drop(struct rh__cenv *c)
{
	if (c->live_fd >= 0)
		close(c->live_fd);
	c->live_fd = -1;
	c->live_key = 0;
}

void rh__cache_finish(ratectl_http *h, const struct rh__policy *pol,
                      struct rh__cache_req *q, int keep, int status,
                      const char *ctype, uint64_t tokens)
{
	struct rh__cenv *c = __atomic_load_n(&h->cache, __ATOMIC_ACQUIRE);
	int rc, pass = 0;

	if (!q->fetching || q->pid != getpid()) {
		q->fetching = 0;
		return;
	}
	q->fetching = 0;
	if (!c)
		return;
	if (keep && (q->overflow || q->len > pol->cache_entry_max)) {
		keep = 0;
		pass = 1;
	}
	/* A content type is kept whole or the answer is not: replayed cut,
	 * it would say something the provider did not. */
	if (keep && ctype && strnlen(ctype, CTYPE_MAX + 1) > CTYPE_MAX)
		keep = 0;
	pthread_mutex_lock(&c->mu);
	if ((rc = env_ready(c)) == 0 && keep &&
	    rh__clock(CLOCK_MONOTONIC) >= c->check_at) {
		int dead;

		/* A process killed in a read transaction holds its snapshot,
		 * and the pages freed since, until its slot is cleared: looked
		 * at before a store now and then, not only at opening. */
		mdb_reader_check(c->env, &dead);
		c->check_at = rh__clock(CLOCK_MONOTONIC) + READER_CHECK_NS;
	}
	if (rc == 0 &&
	    (rc = finish(c, pol, q, keep, pass, status, ctype, tokens)) != 0 &&
	    !is_damage(rc)) {
		/* Not stored (no room: map or disk full): the fetch ends all
		 * the same, its record removed; failing that, given up. */
		if (rc == MDB_MAP_FULL || rc == MDB_READERS_FULL) {
			int dead;

			mdb_reader_check(c->env, &dead);
		}
		rc = finish(c, pol, q, 0, 0, status, ctype, tokens);
	}
	if (rc != 0) {
		after_error(c, rc);
		if (!is_damage(rc) && rc != DAMAGED)
			live_drop(c);
	}
	pthread_mutex_unlock(&c->mu);
	wake_all(bucket_of(c, q->key));
}

int rh__cache_feed(const struct rh__policy *pol, struct rh__cache_req *q,
                   const void *data, size_t len)
{
	size_t cap;
	char *b;

	if (!q->fetching || q->overflow || !len)
		return 0;
	if (len > pol->cache_entry_max - q->len) {
		q->overflow = 1;           /* too big to keep: nothing of it is */
		free(q->buf);
		q->buf = NULL;
		q->len = q->cap = 0;
		return 0;
	}
	if (q->len + len > q->cap) {
		cap = q->cap ? q->cap : 4096;
		while (cap < q->len + len)
			cap *= 2;
		if (cap > pol->cache_entry_max)
			cap = pol->cache_entry_max;
		if (!(b = realloc(q->buf, cap))) {
			q->overflow = 1;
			return -ENOMEM;
		}
		q->buf = b;
		q->cap = cap;
	}
	memcpy(q->buf + q->len, data, len);
	q->len += len;
	return 0;
}

void rh__cache_attempt_reset(struct rh__cache_req *q)
{
	q->len = 0;
	q->overflow = 0;
	q->complete = 0;
}

void rh__cache_req_free(ratectl_http *h, const struct rh__policy *pol,
                        struct rh__cache_req *q)
{
	if (q->fetching)
		rh__cache_finish(h, pol, q, 0, 0, NULL, 0);
	free(q->buf);
	free(q->hit_body);
	q->buf = q->hit_body = NULL;
}

/* ---- stats and clear ----------------------------------------------------------------- */

/* An error as the public calls say it: RATECTL_ECORRUPT for damage,
 * -errno as it is, -EIO for the rest of LMDB's codes. */
static int public_rc(int rc)
{
	if (rc == DAMAGED || is_damage(rc))
		return RATECTL_ECORRUPT;
	return rc < 0 && rc > -4096 ? rc : -EIO;
}

/* The counters of budget (NULL: of every budget, in name order) one at a
 * time, the format record passed over: first, then the next. */
static int stat_each(MDB_cursor *cur, const char *budget, MDB_val *k, MDB_val *v,
                     int first)
{
	int rc;

	if (budget) {
		if (!first)
			return MDB_NOTFOUND;
		*k = name_val(budget);
		return mdb_cursor_get(cur, k, v, MDB_SET_KEY);
	}
	do {
		rc = mdb_cursor_get(cur, k, v, first ? MDB_FIRST : MDB_NEXT);
		first = 0;
	} while (rc == 0 && k->mv_size == sizeof FORMAT_KEY - 1 &&
	         memcmp(k->mv_data, FORMAT_KEY, k->mv_size) == 0);
	return rc;
}

int ratectl_http_cache_stats_read(ratectl_http *h, const char *budget,
                                  ratectl_http_cache_stats *out, size_t cap)
{
	struct rh__cenv *c;
	MDB_cursor *cur;
	MDB_txn *t;
	MDB_val k, v;
	struct cstat st;
	size_t n = 0;
	int rc;

	if (!h || (cap && !out) || (budget && ratectl_name_check(budget) != 0))
		return -EINVAL;
	if (!(c = cenv_get(h, 0, &rc)))
		return rc == -ENOENT ? 0 : rc;
	pthread_mutex_lock(&c->mu);
	if (c->npc && c->env && !c->rdonly && c->pid == getpid())
		(void)pc_flush(c);       /* this process's hits, counted */
	rc = 0;
	if (!c->env || c->pid != getpid() ||
	    c->gen != __atomic_load_n(&c->wake[0], __ATOMIC_ACQUIRE)) {
		/* Not open for the requests of this process: opened to read
		 * here, and closed again. */
		env_close(c);
		c->pid = getpid();
		c->gen = __atomic_load_n(&c->wake[0], __ATOMIC_ACQUIRE);
		if ((rc = env_open(c, 0)) == 0)
			c->rdonly = 1;
	}
	if (rc == -ENOENT) {
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	if (rc != 0 || (rc = txn_begin(c, MDB_RDONLY, &t)) != 0) {
		pthread_mutex_unlock(&c->mu);
		return public_rc(rc);
	}
	if ((rc = mdb_cursor_open(t, c->s, &cur)) == 0) {
		for (rc = stat_each(cur, budget, &k, &v, 1); rc == 0;
		     rc = stat_each(cur, budget, &k, &v, 0)) {
			if (k.mv_size == 0 || k.mv_size > RATECTL_NAME_MAX ||
			    v.mv_size != sizeof st) {
				rc = DAMAGED;
				break;
			}
			memcpy(&st, v.mv_data, sizeof st);
			if (st.magic != STAT_MAGIC || st.n != S_N) {
				rc = DAMAGED;
				break;
			}
			if (n < cap) {
				ratectl_http_cache_stats *o = &out[n];

				memset(o, 0, sizeof *o);
				memcpy(o->budget, k.mv_data, k.mv_size);
				o->entries = st.v[S_ENTRIES];
				o->bytes = st.v[S_BYTES];
				o->hits = st.v[S_HITS];
				o->coalesced = st.v[S_COALESCED];
				o->misses = st.v[S_MISSES];
				o->stores = st.v[S_STORES];
				o->evictions = st.v[S_EVICTIONS];
				o->expired = st.v[S_EXPIRED];
				o->tokens_saved = st.v[S_TOKENS];
			}
			n++;
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(t);
	if (c->rdonly) {
		env_close(c);
		c->rdonly = 0;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc == DAMAGED || is_damage(rc))
		return RATECTL_ECORRUPT;
	if (rc != MDB_NOTFOUND && rc != 0)
		return -EIO;
	return n > INT_MAX ? INT_MAX : (int)n;
}

/* Remove budget's entries (NULL: all) in t; *removed counts them. */
static int clear_txn(struct rh__cenv *c, MDB_txn *t, const char *budget,
                     int reset, int64_t *removed)
{
	int64_t d[S_N];
	MDB_cursor *cur;
	MDB_val k, v;
	char name[RATECTL_NAME_MAX + 1];
	struct cstat st;
	int rc;

	if ((rc = mdb_cursor_open(t, c->o, &cur)) != 0)
		return rc;
	for (;;) {
		uint8_t ek[RH_CACHE_KEY];
		MDB_val e = { RH_CACHE_KEY, ek };

		if (budget) {
			k = name_val(budget);
			k.mv_size++;               /* with its \0 */
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
			if (rc == 0 && (k.mv_size <= strlen(budget) + 1 ||
			                memcmp(k.mv_data, budget, strlen(budget) + 1) != 0))
				rc = MDB_NOTFOUND;
		} else {
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		}
		if (rc != 0)
			break;
		if (k.mv_size < RH_CACHE_KEY) {
			rc = DAMAGED;
			break;
		}
		memcpy(ek, (char *)k.mv_data + k.mv_size - RH_CACHE_KEY, RH_CACHE_KEY);
		rc = mdb_del(t, c->e, &e, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		++*removed;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (!budget && (rc = mdb_drop(t, c->e, 0)) != 0)
		return rc;
	/* The counters: entries and bytes are 0 now; all 0 with reset. */
	if ((rc = mdb_cursor_open(t, c->s, &cur)) != 0)
		return rc;
	for (rc = stat_each(cur, budget, &k, &v, 1); rc == 0;
	     rc = stat_each(cur, budget, &k, &v, 0)) {
		if (k.mv_size == 0 || k.mv_size > RATECTL_NAME_MAX)
			continue;
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		memset(&st, 0, sizeof st);
		if (v.mv_size == sizeof st)
			memcpy(&st, v.mv_data, sizeof st);
		memset(d, 0, sizeof d);
		d[S_ENTRIES] = -(int64_t)st.v[S_ENTRIES];
		d[S_BYTES] = -(int64_t)st.v[S_BYTES];
		if (reset) {
			int i;

			for (i = 0; i < S_N; i++)
				d[i] = -(int64_t)(st.v[i] & INT64_MAX);
		}
		if ((rc = stat_add(c, t, name, d)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int64_t ratectl_http_cache_clear(ratectl_http *h, const char *budget, int reset_counters)
{
	struct rh__cenv *c;
	char path[4300];
	struct stat st;
	int64_t removed = 0;
	MDB_txn *t;
	int rc;

	if (!h || (budget && ratectl_name_check(budget) != 0))
		return -EINVAL;
	if (!(c = cenv_get(h, 0, &rc)))
		return rc == -ENOENT ? 0 : rc;
	snprintf(path, sizeof path, "%s/data.mdb", c->dir);
	if (stat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	pthread_mutex_lock(&c->mu);
	rc = env_ready(c);
	if (rc == 0 && c->npc)
		rc = pc_flush(c);
	if (rc == 0 && (rc = txn_begin(c, 0, &t)) == 0) {
		if ((rc = clear_txn(c, t, budget, reset_counters, &removed)) == 0)
			rc = mdb_txn_commit(t);
		else
			mdb_txn_abort(t);
	}
	if (rc != 0)
		after_error(c, rc);
	pthread_mutex_unlock(&c->mu);
	return rc == 0 ? removed : public_rc(rc);
}
