/*
 * ledger.c - the LMDB environment: opening a ledger directory safely,
 * and transactions that survive map growth and stale readers.  The
 * format record and reboots are meta.c's; budget records, record.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define RC_MAP_DEFAULT (8u << 20)
#define RC_MAP_MAX ((size_t)1 << 30)
#define RC_MAX_READERS 1022
#define RC_OPEN_TRIES 50

/* No fsync on the hot path; WRITEMAP makes a commit a few stores.  A
 * process crash loses nothing; an OS crash may (see README, Durability). */
#define RC_ENV_FLAGS (MDB_NOSYNC | MDB_WRITEMAP | MDB_NOTLS | MDB_NORDAHEAD)

/* ---- transactions ------------------------------------------------------ */

static int txn_begin(ratectl *h, unsigned flags, MDB_txn **txn)
{
	int rc, tries;

	pthread_rwlock_rdlock(&h->maplock);
	for (tries = 0; tries < 8; tries++) {
		rc = mdb_txn_begin(h->env, NULL, flags, txn);
		if (rc == MDB_MAP_RESIZED) {
			/* Another process grew the map: adopt its size. */
			pthread_rwlock_unlock(&h->maplock);
			pthread_rwlock_wrlock(&h->maplock);
			mdb_env_set_mapsize(h->env, 0);
			pthread_rwlock_unlock(&h->maplock);
			pthread_rwlock_rdlock(&h->maplock);
			continue;
		}
		if (rc == MDB_READERS_FULL) {
			int dead = 0;

			mdb_reader_check(h->env, &dead);
			if (dead > 0)
				continue;
		}
		break;
	}
	if (rc != 0) {
		pthread_rwlock_unlock(&h->maplock);
		return ratectl__mdb_err(h, rc, "begin transaction");
	}
	return 0;
}

/* Reserve the file's blocks before LMDB maps them: with MDB_WRITEMAP a
 * write to an unallocated page of a full tmpfs is a SIGBUS, not an error. */
static int map_reserve(ratectl *h, size_t size)
{
	int fd, rc;

	if (mdb_env_get_fd(h->env, &fd) != 0)
		return 0;
	rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc == EOPNOTSUPP || rc == EINVAL)
		return 0;
	if (rc != 0)
		return ratectl__err(-rc, "ledger %s: cannot reserve %zu bytes: %s",
		                    h->path, size, strerror(rc));
	return 0;
}

static int map_grow(ratectl *h)
{
	MDB_envinfo info;
	size_t size;
	int rc;

	pthread_rwlock_wrlock(&h->maplock);
	mdb_env_info(h->env, &info);
	size = info.me_mapsize * 2;
	if (size > RC_MAP_MAX) {
		rc = ratectl__err(-ENOSPC, "ledger %s: map would exceed %zu bytes",
		                  h->path, RC_MAP_MAX);
	} else if ((rc = map_reserve(h, size)) == 0) {
		rc = mdb_env_set_mapsize(h->env, size);
		if (rc != 0)
			rc = ratectl__mdb_err(h, rc, "grow map");
	}
	pthread_rwlock_unlock(&h->maplock);
	return rc;
}

int ratectl__write(ratectl *h, rc_write_fn fn, void *ctx)
{
	MDB_txn *txn;
	int rc, tries;

	for (tries = 0; tries < 8; tries++) {
		rc = txn_begin(h, 0, &txn);
		if (rc != 0)
			return rc;
		rc = fn(h, txn, ctx);
		if (rc != 0) {
			mdb_txn_abort(txn);
		} else {
			rc = mdb_txn_commit(txn);
			if (rc != 0 && rc != MDB_MAP_FULL)
				rc = ratectl__mdb_err(h, rc, "commit");
		}
		pthread_rwlock_unlock(&h->maplock);
		if (rc != MDB_MAP_FULL)
			return rc > 0 ? 0 : rc;
		if ((rc = map_grow(h)) != 0)
			return rc;
	}
	return ratectl__err(-ENOSPC, "ledger %s: map full after growing", h->path);
}

int ratectl__read_begin(ratectl *h, MDB_txn **txn)
{
	return txn_begin(h, MDB_RDONLY, txn);
}

void ratectl__read_end(ratectl *h, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&h->maplock);
}

/* ---- opening ----------------------------------------------------------- */

static int env_open_once(ratectl *h)
{
	mode_t mode = h->shared_group ? 0660 : 0600;
	int rc;

	if ((rc = mdb_env_create(&h->env)) != 0)
		return ratectl__mdb_err(h, rc, "create environment");
	mdb_env_set_maxdbs(h->env, 4);
	mdb_env_set_maxreaders(h->env, RC_MAX_READERS);
	mdb_env_set_mapsize(h->env, h->map_size);
	rc = mdb_env_open(h->env, h->path, RC_ENV_FLAGS, mode);
	if (rc != 0) {
		mdb_env_close(h->env);
		h->env = NULL;
	}
	return rc;
}

/* LMDB creates its files through the umask: open them to the group. */
static void share_files(const ratectl *h)
{
	static const char *const names[] = { "data.mdb", "lock.mdb" };
	char p[PATH_MAX];
	struct stat st;
	size_t i;

	for (i = 0; i < 2; i++) {
		snprintf(p, sizeof p, "%s/%s", h->path, names[i]);
		if (stat(p, &st) == 0 && st.st_uid == geteuid() &&
		    (st.st_mode & 0060) != 0060)
			chmod(p, (st.st_mode & 07777) | 0060);
	}
}

static int env_open(ratectl *h)
{
	MDB_envinfo info;
	int rc, tries, dead;

	/* Opening races with another process opening or closing the same
	 * environment at that instant: retry those transient failures. */
	for (tries = 0; tries < RC_OPEN_TRIES; tries++) {
		rc = env_open_once(h);
		if (rc != EAGAIN && rc != EBUSY && rc != EINTR)
			break;
		usleep(1000);
	}
	if (rc == ENOENT || rc == EACCES || rc == EPERM || rc == ENOSPC)
		return ratectl__err(-rc, "ledger %s: cannot open: %s", h->path,
		                    strerror(rc));
	if (rc != 0)
		return ratectl__mdb_err(h, rc, "open");
	if (h->shared_group)
		share_files(h);
	mdb_reader_check(h->env, &dead);
	mdb_env_info(h->env, &info);
	if ((rc = map_reserve(h, info.me_mapsize)) == 0 &&
	    (rc = ratectl__write(h, ratectl__meta_init, NULL)) == 0)
		return 0;
	mdb_env_close(h->env);
	h->env = NULL;
	return rc;
}

static int in_our_groups(gid_t gid)
{
	gid_t groups[256];
	int i, n;

	if (gid == getegid())
		return 1;
	n = getgroups(256, groups);
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

static int check_entry(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof p, "%s/%s", dir, name);
	if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode))
		return ratectl__err(RATECTL_EUNSAFE, "ledger %s: %s is a symlink; "
		                    "refusing to follow it", dir, name);
	return 0;
}

/* Create or check the ledger directory: never a symlink, ours (or a shared
 * group's when asked), never writable by others. */
static int dir_prepare(ratectl *h)
{
	mode_t want = h->shared_group ? 02770 : 0700;
	struct stat st;
	int fd, rc, created;

	created = mkdir(h->path, want) == 0;
	if (!created && errno != EEXIST)
		return ratectl__err(-errno, "ledger %s: cannot create directory: %s",
		                    h->path, strerror(errno));
	fd = open(h->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
		return ratectl__err(RATECTL_EUNSAFE, "ledger %s: is a symlink or not a "
		                    "directory; refusing it", h->path);
	if (fd < 0)
		return ratectl__err(-errno, "ledger %s: %s", h->path, strerror(errno));
	if (created)
		fchmod(fd, want);       /* umask must not loosen or tighten it */
	rc = fstat(fd, &st);
	close(fd);
	if (rc != 0)
		return ratectl__err(-errno, "ledger %s: %s", h->path, strerror(errno));
	/* A directory the administrator made for a group (setgid, as
	 * tmpfiles.d's /run/ratectl of the ratectl group) is shared by its
	 * members whether or not they asked: what they create in it is made
	 * for the group too.  Bindings and the preload shim that open the
	 * default ledger need no option for it. */
	if (!created && (st.st_mode & S_ISGID) && !(st.st_mode & S_IWOTH) &&
	    in_our_groups(st.st_gid))
		h->shared_group = 1;
	if (st.st_uid != geteuid() && !(h->shared_group && in_our_groups(st.st_gid)))
		return ratectl__err(RATECTL_EUNSAFE, "ledger %s: owned by uid %u, not "
		                    "by you (uid %u); refusing it", h->path,
		                    (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & S_IWOTH)
		return ratectl__err(RATECTL_EUNSAFE, "ledger %s: writable by others "
		                    "(mode %04o); refusing it", h->path,
		                    (unsigned)(st.st_mode & 07777));
	if ((st.st_mode & S_IWGRP) && !h->shared_group)
		return ratectl__err(RATECTL_EUNSAFE, "ledger %s: writable by its group "
		                    "(mode %04o); open it with shared_group", h->path,
		                    (unsigned)(st.st_mode & 07777));
	h->dev = st.st_dev;
	h->ino = st.st_ino;
	if ((rc = check_entry(h->path, "data.mdb")) != 0 ||
	    (rc = check_entry(h->path, "lock.mdb")) != 0 ||
	    (rc = check_entry(h->path, "wake")) != 0)
		return rc;
	return 0;
}

int ratectl_default_dir(char *buf, size_t len)
{
	const char *env = getenv("RATECTL_LEDGER");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/ratectl", xdg);
	else
		n = snprintf(buf, len, "/tmp/ratectl-%u", (unsigned)geteuid());
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static ratectl *registry_find(dev_t dev, ino_t ino)
{
	ratectl *h;

	for (h = ratectl__open_list; h; h = h->next_open)
		if (h->dev == dev && h->ino == ino)
			return h;
	return NULL;
}

static void handle_free(ratectl *h)
{
	pthread_rwlock_destroy(&h->maplock);
	pthread_mutex_destroy(&h->mu);
	pthread_mutex_destroy(&h->live_mu);
	pthread_mutex_destroy(&h->share_mu);
	free(h->buckets);
	free(h->path);
	free(h);
}

int ratectl_open(ratectl **out, const char *dir, const ratectl_options *opts)
{
	char def[PATH_MAX];
	ratectl *h, *same;
	int rc;

	ratectl__err_clear();
	*out = NULL;
	if (!dir) {
		if ((rc = ratectl_default_dir(def, sizeof def)) != 0)
			return ratectl__err(rc, "ledger path too long");
		dir = def;
	}
	if (!(h = calloc(1, sizeof *h)) || !(h->path = strdup(dir))) {
		free(h);
		return -ENOMEM;
	}
	pthread_rwlock_init(&h->maplock, NULL);
	pthread_mutex_init(&h->mu, NULL);
	pthread_mutex_init(&h->live_mu, NULL);
	pthread_mutex_init(&h->share_mu, NULL);
	h->refs = 1;
	h->ifd = -1;
	h->wfd = -1;
	if (opts && opts->version >= 1) {
		h->shared_group = opts->shared_group;
		if (opts->clock)
			h->clock = *opts->clock;
		h->map_size = opts->map_size;
	}
	if (h->map_size == 0)
		h->map_size = RC_MAP_DEFAULT;
	ratectl__boot_id(h, h->boot_id);

	ratectl__registry_lock();
	if ((rc = dir_prepare(h)) == 0 && (same = registry_find(h->dev, h->ino))) {
		/* LMDB must not open one environment twice in a process. */
		same->refs++;
		ratectl__registry_unlock();
		handle_free(h);
		*out = same;
		return 0;
	}
	if (rc == 0)
		rc = ratectl__enter(h);
	if (rc == 0) {
		h->next_open = ratectl__open_list;
		ratectl__open_list = h;
	}
	ratectl__registry_unlock();
	if (rc != 0) {
		handle_free(h);
		return rc;
	}
	*out = h;
	return 0;
}

/* Called at the top of every entry point: after a fork, the child opens
 * its own environment (the inherited one is closed, which since LMDB
 * 0.9.23 only drops the child's copies) and forgets the parent's leases. */
int ratectl__enter(ratectl *h)
{
	uint64_t gen = __atomic_load_n(&ratectl__fork_gen, __ATOMIC_ACQUIRE);
	int rc = 0;

	if (h->env && h->fork_gen == gen)
		return 0;
	pthread_mutex_lock(&h->mu);
	if (!h->env || h->fork_gen != gen) {
		if (h->env)
			mdb_env_close(h->env);
		h->env = NULL;
		ratectl__wake_close(h);
		if (h->ifd >= 0)        /* the parent's events are the parent's */
			close(h->ifd);
		h->ifd = -1;
		h->pid = getpid();
		h->sweep_next = 0;
		if ((rc = ratectl__wake_open(h)) == 0 && (rc = env_open(h)) == 0)
			h->fork_gen = gen;
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void ratectl_close(ratectl *h)
{
	ratectl **pp;

	if (!h)
		return;
	ratectl__registry_lock();
	if (--h->refs > 0) {
		ratectl__registry_unlock();
		return;
	}
	for (pp = &ratectl__open_list; *pp; pp = &(*pp)->next_open)
		if (*pp == h) {
			*pp = h->next_open;
			break;
		}
	ratectl__registry_unlock();
	/* The refillers use the handle: they stop first (a sync under way
	 * ends within its Redis timeout). */
	ratectl__share_stop_all(h);
	/* Closing the wake file drops this process's liveness lock: slots
	 * it still holds become reclaimable, and their waiters look again.
	 * (A child that inherited the handle closed the parent's descriptor
	 * at the fork: fork.c.) */
	ratectl__wake_close(h);
	if (h->env)
		mdb_env_close(h->env);
	if (h->ifd >= 0)
		close(h->ifd);
	handle_free(h);
}

const char *ratectl_path(const ratectl *h)
{
	return h->path;
}
