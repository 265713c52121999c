/*
 * ratectl.h - one rate limit shared by every process on a host.
 *
 * libratectl keeps a token ledger in an LMDB environment that every process
 * on the host opens.  A budget (for example "openai") has any number of
 * limits on two dimensions, requests and tokens, each "N per period" with a
 * burst, plus an optional cap on requests in flight.  One call admits a cost
 * against every limit of a budget, all or nothing, in one LMDB write
 * transaction, using GCRA (one theoretical arrival time per limit) in integer
 * nanoseconds on the host's CLOCK_BOOTTIME.
 *
 * Conventions
 *   - Functions that can fail return int: 0 on success or a negative code.
 *     System errors pass through as -errno; the library's own codes are the
 *     RATECTL_E* values below, all at or below RATECTL_ERR_BASE, far from
 *     any errno.  ratectl_strerror() describes both, and ratectl_errmsg()
 *     gives the detail of the calling thread's last failure (which file,
 *     which budget, which value).
 *   - Times are int64_t nanoseconds.  "now" is ratectl_now(): nanoseconds
 *     of the handle's clock (CLOCK_BOOTTIME unless a clock is injected).
 *   - Output parameters come first.  Anything returned through a pointer
 *     that the caller must free says how in its comment.
 *
 * Caveats
 *   - Fork: a handle opened before fork() may be used in the child.  The
 *     library notices the fork (pthread_atfork) and, at the child's next
 *     call, opens its own LMDB environment and wake file.  Leases taken in
 *     the parent belong to the parent: the child cannot release them
 *     (RATECTL_EFORKED) and never keeps their slots alive: at the fork the
 *     child closes its copy of the descriptor that holds the parent's
 *     liveness lock, so the parent's slots come back when it dies even
 *     while the child lives on.  Processes must not
 *     call into the library between fork() and exec() from a
 *     multi-threaded parent (the usual async-signal-safety rule).
 *   - Threads: one handle may be used by any number of threads at once.
 *     Admissions serialise on the ledger's write lock, as they do across
 *     processes.  A lease may be released by any thread of the process
 *     that took it.  ratectl_close() must not race with other calls on the
 *     same handle.
 *   - Filesystems: the ledger must live on a local filesystem (tmpfs or a
 *     local disk); NFS loses the locks that in-flight slots rely on.  All
 *     processes sharing a ledger must be in the same PID namespace and on
 *     the same kernel.
 *   - Clock: CLOCK_BOOTTIME restarts at boot.  The ledger records the boot
 *     id; after a reboot stored times are rebased through the wall clock,
 *     conservatively (unused debt is kept, never a fresh burst), and the
 *     in-flight table is cleared.
 *   - Durability: admissions never fsync.  A process crash, even inside a
 *     transaction, loses nothing.  An OS crash or power cut can lose recent
 *     admissions or damage the file; ratectl_open() then reports
 *     RATECTL_ECORRUPT and `ratectl check --repair` rebuilds it.
 */
#ifndef RATECTL_H
#define RATECTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RATECTL_VERSION_MAJOR 0
#define RATECTL_VERSION_MINOR 1
#define RATECTL_VERSION_PATCH 0
#define RATECTL_VERSION_STRING "0.1.0"

/* Version of the ledger's on-disk format written by this build.  2: shared
 * budgets (their configuration and credit records).  3: no file per
 * budget: in-flight slots, counters and tags in the ledger itself, one
 * wake-up file for every budget.  A ledger of an older
 * version is upgraded in place when it is opened; an older build refuses a
 * newer ledger (RATECTL_EVERSION). */
#define RATECTL_FORMAT_VERSION 3

/* ---------------------------------------------------------------------- */
/* Errors                                                                 */
/* ---------------------------------------------------------------------- */

#define RATECTL_ERR_BASE (-30900)

/*
 * XX(name, offset, description).  The code is RATECTL_ERR_BASE - offset.
 */
#define RATECTL_ERRNO_MAP(XX)                                                  \
	XX(LIMITED, 0, "rate limit reached; retry after the wait hint")           \
	XX(INFLIGHT, 1, "every in-flight slot of the budget is held")             \
	XX(COOLDOWN, 2, "budget is cooling down after the provider refused")      \
	XX(TOOBIG, 3, "cost exceeds a limit's burst and can never be admitted")   \
	XX(TIMEDOUT, 4, "deadline passed before the budget could be had")         \
	XX(NOTFOUND, 5, "no such budget")                                         \
	XX(EXISTS, 6, "budget already exists")                                    \
	XX(BADNAME, 7, "invalid budget name")                                     \
	XX(BADCONFIG, 8, "invalid budget configuration")                          \
	XX(VERSION, 9, "ledger format version unknown to this build")             \
	XX(CORRUPT, 10, "ledger is damaged or not a ratectl ledger")              \
	XX(UNSAFE, 11, "ledger directory is unsafe (symlink, owner or mode)")     \
	XX(FORKED, 12, "lease or handle belongs to another process")              \
	XX(BADLEASE, 13, "lease is not held")                                     \
	XX(LMDB, 14, "unexpected LMDB error")                                     \
	XX(PARSE, 15, "cannot parse value")                                       \
	XX(PENDING, 16, "waiting: look again at the time given or when its fd is readable")

typedef enum {
#define RATECTL__ERRDEF(name, off, desc) RATECTL_E##name = RATECTL_ERR_BASE - (off),
	RATECTL_ERRNO_MAP(RATECTL__ERRDEF)
#undef RATECTL__ERRDEF
	RATECTL_ERR_LAST = RATECTL_ERR_BASE - 17
} ratectl_errno;

/*
 * A static description of any code this library returns: its own codes,
 * -errno values and positive errno values.  Never NULL; never to be freed.
 */
const char *ratectl_strerror(int code);

/*
 * Detail of the calling thread's last failure, for example
 * "ledger /run/user/1000/ratectl: format version 3 is newer than this
 * build (1); upgrade ratectl".  Empty string when there is none.  Valid
 * until the thread's next call into the library.
 */
const char *ratectl_errmsg(void);

/* ---------------------------------------------------------------------- */
/* Handles                                                                */
/* ---------------------------------------------------------------------- */

typedef struct ratectl ratectl;

/*
 * An injectable clock, for tests and simulations.  now() returns
 * nanoseconds on a clock that never goes back; sleep_until() sleeps until
 * now() >= t or a signal arrives (return -EINTR) and returns 0 otherwise.
 * boot_id, when not NULL, replaces /proc/sys/kernel/random/boot_id and
 * realtime() replaces CLOCK_REALTIME (both used to rebase after a reboot).
 */
typedef struct ratectl_clock {
	int64_t (*now)(void *ctx);
	int (*sleep_until)(void *ctx, int64_t t);
	int64_t (*realtime)(void *ctx);
	const char *boot_id;
	void *ctx;
} ratectl_clock;

#define RATECTL_OPTIONS_VERSION 1

typedef struct ratectl_options {
	unsigned version;      /* RATECTL_OPTIONS_VERSION */
	/*
	 * Mode for a ledger directory and files created by this open:
	 * 0700/0600 by default.  Set shared_group to 1 to create them 0770/0660
	 * with the setgid bit, and to accept a directory owned by another user
	 * whose group is one of ours (for users sharing one ledger).  A
	 * directory with the setgid bit whose group is one of ours (as the
	 * packages' /run/ratectl of the ratectl group) is opened this way
	 * without asking.  A directory writable by others is always refused.
	 */
	int shared_group;
	/* Injected clock, or NULL for the system clocks. Copied. */
	const ratectl_clock *clock;
	/* Initial LMDB map size in bytes, 0 for the default (8 MiB). */
	size_t map_size;
} ratectl_options;

#define RATECTL_OPTIONS_INIT { RATECTL_OPTIONS_VERSION, 0, NULL, 0 }

/*
 * Write the default ledger directory into buf (size len): $RATECTL_LEDGER
 * when set and not empty, else $XDG_RUNTIME_DIR/ratectl, else
 * /tmp/ratectl-UID.  Returns 0, or -ENAMETOOLONG.
 */
int ratectl_default_dir(char *buf, size_t len);

/*
 * Open (creating if needed) the ledger in directory dir, or in
 * ratectl_default_dir() when dir is NULL.  The directory is created with
 * private permissions; an existing one must not be a symlink, must be
 * owned by the caller (or shared, see ratectl_options) and must not be
 * writable by others.  opts may be NULL.
 *
 * Returns 0 and *out, to be freed with ratectl_close(); or
 * RATECTL_EUNSAFE, RATECTL_EVERSION (the ledger was written by a newer
 * ratectl), RATECTL_ECORRUPT (damaged or foreign file), -EACCES, -ENOSPC,
 * -ENOMEM and other -errno.  Stale LMDB reader slots of dead processes are
 * cleared here.
 */
int ratectl_open(ratectl **out, const char *dir, const ratectl_options *opts);

/*
 * Close a handle.  Leases still held are released without a count, and
 * the processes waiting for their slots are woken.  In a child that
 * inherited the handle across fork() (an atexit handler, say), closing it
 * leaves the parent's leases alone.
 */
void ratectl_close(ratectl *h);

/* The ledger directory of h (owned by h). */
const char *ratectl_path(const ratectl *h);

/* Nanoseconds on h's clock (CLOCK_BOOTTIME unless injected). */
int64_t ratectl_now(const ratectl *h);

/* ---------------------------------------------------------------------- */
/* Budgets                                                                */
/* ---------------------------------------------------------------------- */

/* Budget names: 1 to 64 characters of [A-Za-z0-9._-], not starting with '.'
 * or '-'.  Returns 0 or RATECTL_EBADNAME. */
#define RATECTL_NAME_MAX 64
int ratectl_name_check(const char *name);

typedef enum {
	RATECTL_REQUESTS = 0,
	RATECTL_TOKENS = 1
} ratectl_dim;

#define RATECTL_MAX_LIMITS 8
#define RATECTL_MAX_INFLIGHT 1024
#define RATECTL_PERIOD_MIN 1000000000LL        /* 1 s */
#define RATECTL_PERIOD_MAX 86400000000000LL    /* 1 day */

/*
 * One limit: at most `count` units of `dim` per `period_ns`, of which up to
 * `burst` may pass at once (0 means burst = count).  Over any interval t
 * no more than burst + t * count / period units pass.
 * count >= 1, count <= period_ns (at most one unit a nanosecond),
 * RATECTL_PERIOD_MIN <= period_ns <= RATECTL_PERIOD_MAX.
 */
typedef struct ratectl_limit {
	ratectl_dim dim;
	uint64_t count;
	int64_t period_ns;
	uint64_t burst;
} ratectl_limit;

#define RATECTL_BUDGET_VERSION 2
#define RATECTL_WEIGHT_MAX 100

typedef struct ratectl_budget {
	unsigned version;          /* RATECTL_BUDGET_VERSION */
	unsigned nlimits;          /* 0..RATECTL_MAX_LIMITS */
	ratectl_limit limits[RATECTL_MAX_LIMITS];
	uint32_t max_inflight;     /* 0: no cap; else 1..RATECTL_MAX_INFLIGHT */
	/* When a cooldown ends, waiters are released spread over this window
	 * (0: the default, 1 s) so the provider sees a smooth rate. */
	int64_t jitter_ns;
	/* Share of the first limit guaranteed to RATECTL_BATCH requests when
	 * interactive ones keep the budget busy, in percent (0: the default,
	 * 10; at most 100). */
	unsigned batch_share;
	/* Removed once idle this long (0: never): nothing admitted for
	 * expire_ns, nothing in flight, every limit full again (no place
	 * reserved, no debt).  Whichever process notices removes it; every
	 * such budget is looked at within about a minute (ratectl_sweep()). */
	int64_t expire_ns;
	/* As a tenant, the first budget named in ratectl_acquire_many(): its
	 * weight among the tenants waiting on the same budgets when those are
	 * saturated (see "Fair shares" there).  0: not a tenant. */
	unsigned weight;
	/* What made it, for reports: the template ("user-*") of a budget
	 * created on first use, or "".  Up to 64 bytes of name characters and
	 * '*'. */
	char origin[RATECTL_NAME_MAX + 1];
} ratectl_budget;

#define RATECTL_BUDGET_INIT { RATECTL_BUDGET_VERSION, 0, {{0, 0, 0, 0}}, 0, 0, 0, 0, 0, "" }

/* batch_share when 0. */
#define RATECTL_BATCH_SHARE_DEFAULT 10

/*
 * Check budget configuration b by the rules ratectl_budget_set() applies
 * (limits, bursts, concurrency, jitter, share), without a ledger: for
 * config loaders.  Returns 0 or RATECTL_EBADCONFIG with ratectl_errmsg()
 * saying what is wrong.
 */
int ratectl_budget_check(const ratectl_budget *b);

/* Flags for ratectl_budget_set(). */
#define RATECTL_CREATE 0x1   /* fail with RATECTL_EEXISTS if it exists */
#define RATECTL_UPDATE 0x2   /* fail with RATECTL_ENOTFOUND if it doesn't */
#define RATECTL_EMPTY  0x4   /* new limits start empty, not full: for a
                                ledger rebuilt after damage, where what was
                                recently used is unknown */

/*
 * Create or update budget `name` with configuration b.  An update keeps
 * each limit's state when a limit of the same dimension and period remains
 * (its debt is rescaled to the new rate), starts new limits full, and takes
 * effect in every process at its next admission.  In-flight slots beyond a
 * lowered max_inflight stay held until released.
 * Returns 0, RATECTL_EBADNAME, RATECTL_EBADCONFIG, RATECTL_EEXISTS,
 * RATECTL_ENOTFOUND or a ledger error.
 */
int ratectl_budget_set(ratectl *h, const char *name, const ratectl_budget *b,
                       int flags);

/* Delete a budget (its slots' holders and tags with it).  Returns 0 or
 * RATECTL_ENOTFOUND.  Its waiters fail with RATECTL_ENOTFOUND. */
int ratectl_budget_delete(ratectl *h, const char *name);

/*
 * Refill every limit of budget `name` (NULL: every budget) and end any
 * cooldown.  In-flight leases are left alone (their holders are alive or
 * will be reclaimed).  Returns 0 or RATECTL_ENOTFOUND.
 */
int ratectl_budget_reset(ratectl *h, const char *name);

/*
 * Pause budget `name` for every process until now + duration_ns
 * (0 ends a cooldown under way now; with none under way it changes
 * nothing).  A new end replaces the current one only if it is later,
 * unless duration_ns is 0.  A cooldown follows a refusal by the provider,
 * whose bucket is then empty, so when it ends every limit restarts empty
 * (at most 60 s of its rate short: a daily budget is not lost) and
 * refills at its rate, the first admissions spread over the budget's
 * jitter window: the provider sees a steady rate, not a burst.  That
 * empty bucket is the pause's own debt and all of it: ending a pause
 * early drops it and keeps every debt of admissions and reconciles.
 * Waiters that had reserved a time inside the new cooldown give it back
 * at once; nobody reserves during a cooldown: those who ask wait for its
 * end (or its early end, which wakes them) and then line up, in no
 * particular order among themselves.
 */
int ratectl_cooldown(ratectl *h, const char *name, int64_t duration_ns);

/*
 * The provider says `remaining` units of `dim` are left now and that its
 * limit is full again reset_ns from now (how OpenAI's x-ratelimit-* and
 * Anthropic's anthropic-ratelimit-* headers read), of a window whose
 * length and count are not known: ratectl_observe_window() with only
 * dim, remaining and reset_ns set, which tightens the limit of that
 * dimension with the shortest period, if it believes more is available
 * or that it refills sooner; it is never loosened.  *changed (may be
 * NULL) is set to 1 when a limit was tightened.  Callers should ignore
 * values that cannot be trusted (negative, or 0 with no reset) before
 * calling, and should prefer ratectl_observe_window() when they know
 * which window a header describes.
 */
int ratectl_observe(ratectl *h, const char *name, ratectl_dim dim,
                    uint64_t remaining, int64_t reset_ns, int *changed);

/*
 * What a provider's rate-limit header says about one of its windows.
 * A header describes one window only: OpenAI's x-ratelimit-*-tokens is
 * the per-minute limit (its -limit- value is the count), Anthropic's
 * anthropic-ratelimit-* likewise, the IETF RateLimit-Policy names the
 * window (w=) and quota (q=).  Unknown fields are 0.
 */
#define RATECTL_WINDOW_VERSION 1

typedef struct ratectl_window {
	unsigned version;          /* RATECTL_WINDOW_VERSION */
	ratectl_dim dim;
	uint64_t remaining;        /* units left now */
	int64_t reset_ns;          /* until the window is full again; 0 unknown */
	uint64_t limit;            /* the provider's count for it; 0 unknown */
	int64_t window_ns;         /* its length; 0 unknown */
} ratectl_window;

#define RATECTL_WINDOW_INIT { RATECTL_WINDOW_VERSION, RATECTL_REQUESTS, 0, 0, 0, 0 }

/*
 * Tighten the one limit of budget `name` that window *w describes, never
 * another: a per-minute header must not shrink a daily limit of the same
 * dimension, whose refill is a thousand times slower.  The limit is, of
 * those of w->dim whose period is not longer than w->window_ns (when
 * known): the one whose period equals the window; else the one whose
 * count equals w->limit; else the one with the shortest period.  No
 * limit qualifies: nothing changes.  The chosen limit is tightened as by
 * ratectl_observe(), never loosened; *changed (may be NULL) says whether
 * it was.  RATECTL_ENOTFOUND, -EINVAL for a bad *w.
 */
int ratectl_observe_window(ratectl *h, const char *name, const ratectl_window *w,
                           int *changed);

/*
 * The same for the n windows of one response (at most 2 *
 * RATECTL_MAX_LIMITS), in one transaction; *changed (may be NULL) counts
 * the limits tightened.  n == 0 does nothing.
 */
int ratectl_observe_windows(ratectl *h, const char *name, const ratectl_window *w,
                            size_t n, int *changed);

/* Live state of one limit. */
typedef struct ratectl_limit_state {
	ratectl_limit limit;       /* burst filled in */
	uint64_t available;        /* units that could pass now */
	int64_t until_full_ns;     /* time until available == burst */
} ratectl_limit_state;

/* Counters since the budget was created. */
typedef struct ratectl_counters {
	uint64_t admitted;         /* granted leases */
	uint64_t refused;          /* try refusals and acquire timeouts */
	uint64_t waited;           /* acquires that had to wait */
	uint64_t wait_ns;          /* total time waited by those */
	uint64_t tokens_estimated; /* tokens charged at admission */
	uint64_t tokens_actual;    /* tokens reported at release (reconciled) */
	uint64_t tokens_reconciled;/* estimates of those leases */
	uint64_t reclaimed;        /* slots taken back from dead holders */
	uint64_t retries;          /* retries allowed by ratectl_retry_take() */
} ratectl_counters;

typedef struct ratectl_budget_info {
	char name[RATECTL_NAME_MAX + 1];
	ratectl_budget config;
	ratectl_limit_state state[RATECTL_MAX_LIMITS];
	uint32_t inflight;         /* slots held now, by live processes */
	uint32_t dead;             /* slots recorded held whose holder died */
	int64_t cooldown_ns;       /* remaining cooldown, 0 when none */
	ratectl_counters counters;
	int64_t idle_ns;           /* since the last admission; -1: never */
} ratectl_budget_info;

/*
 * Fill *out with budget `name`'s configuration and live state.  Reading
 * creates no file and keeps no descriptor open: everything is in the
 * ledger.  A state that cannot be read (a damaged record) is an error,
 * never reported as zeros: RATECTL_ECORRUPT and other codes, with
 * ratectl_errmsg() naming the budget.
 */
int ratectl_budget_get(ratectl *h, const char *name, ratectl_budget_info *out);

/*
 * Call fn for each budget, in name order, from one consistent snapshot.
 * Stops early and returns fn's value when fn returns non-zero, or the
 * error of a budget whose state cannot be read (as ratectl_budget_get();
 * fn is not called for it).  Descriptors used stay constant however many
 * budgets there are.
 */
int ratectl_budget_foreach(ratectl *h,
                           int (*fn)(const ratectl_budget_info *info, void *ctx),
                           void *ctx);

/* The in-flight slots one process holds in a budget. */
typedef struct ratectl_lease_info {
	uint32_t slot;             /* index of this holder in the list */
	int32_t pid;               /* recorded holder */
	int alive;                 /* 1: the process lives; 0: it died */
	int64_t age_ns;            /* since its oldest admission still held */
	uint64_t tokens;           /* estimated tokens charged, all its slots */
	uint32_t count;            /* slots it holds */
} ratectl_lease_info;

/*
 * Fill out[0..cap) with the holders of budget `name`'s in-flight slots
 * (live or dead, not released), one per process, and set *n to how many
 * there are (which may exceed cap).
 */
int ratectl_leases(ratectl *h, const char *name, ratectl_lease_info *out,
                   size_t cap, size_t *n);

/*
 * Release the slots of dead holders in every budget and clear stale LMDB
 * reader slots.  *slots and *readers (may be NULL) receive the counts.
 */
int ratectl_reclaim(ratectl *h, unsigned *slots, unsigned *readers);

/*
 * Remove every budget whose expire_ns has passed idle (see
 * ratectl_budget), now, in one pass; *removed (may be NULL) gets how many.
 * Admissions do the same a few hundred budgets at a time, at most every
 * RATECTL_SWEEP_NS in the whole host, so nobody needs to call this.
 * Waiters of a removed budget fail with RATECTL_ENOTFOUND, as after
 * ratectl_budget_delete().
 */
#define RATECTL_SWEEP_NS 250000000LL
int ratectl_sweep(ratectl *h, unsigned *removed);

/* ---- tags: who used a budget ----------------------------------------- */

/*
 * A request may carry a tag (ratectl_cost.tag: the route, the user
 * action): each budget counts the requests and tokens of its
 * RATECTL_TAGS_TOP busiest tags, and the rest together.  The count is
 * bounded whatever the number of distinct tags: a new tag takes the place
 * of the least-counted one (the space-saving algorithm) and inherits its
 * counts as `error`, the most by which its own counts may be too high.
 * Tags: 1 to RATECTL_TAG_MAX bytes of [A-Za-z0-9._:/-]; another tag is
 * RATECTL_EBADNAME.
 */
#define RATECTL_TAG_MAX 48
#define RATECTL_TAGS_TOP 32

typedef struct ratectl_tag_info {
	char tag[RATECTL_TAG_MAX + 1];
	uint64_t requests;
	uint64_t tokens;           /* estimated, corrected at release */
	uint64_t error;            /* counts inherited from the tag it replaced */
} ratectl_tag_info;

int ratectl_tag_check(const char *tag);

/*
 * Fill out[0..cap) with budget `name`'s counted tags, most requests first,
 * and set *n to how many there are (at most RATECTL_TAGS_TOP); *rest (may
 * be NULL) gets the totals of untagged requests and of tags no longer
 * counted (tag "").
 */
int ratectl_tags(ratectl *h, const char *name, ratectl_tag_info *out, size_t cap,
                 size_t *n, ratectl_tag_info *rest);

/* ---- budgets shared by many hosts ------------------------------------ */

/*
 * A budget may be shared by every host that names the same Redis server:
 * Redis holds the global GCRA of each of its limits, and each host takes
 * credit from it in chunks, one script call at a time, by one process of
 * the host at a time (its refiller thread), while admissions go on spending
 * the host's credit in the ledger, in the same single transaction as ever.
 * Every unit admitted anywhere was first taken from the global GCRA, so
 * the global bound burst + rate * t holds across hosts.  Budgets that are
 * not shared never connect.
 *
 * When Redis cannot be reached, each host admits against its share of
 * every limit (1/hosts of its rate and burst), after the credit it holds;
 * or against the budget's own limits in full with RATECTL_SHARE_OPEN.
 */
#define RATECTL_SHARE_VERSION 1
#define RATECTL_SHARE_URL_MAX 255
#define RATECTL_SHARE_PATH_MAX 255
#define RATECTL_SHARE_ENV_MAX 63

#define RATECTL_SHARE_OPEN 0x1   /* Redis unreachable: admit locally, in full */

typedef struct ratectl_share {
	unsigned version;          /* RATECTL_SHARE_VERSION */
	/* "redis://HOST:PORT/DB" or "unix:///PATH" (with "?db=N"); "" to stop
	 * sharing.  A password never goes here: */
	char url[RATECTL_SHARE_URL_MAX + 1];
	char password_file[RATECTL_SHARE_PATH_MAX + 1];   /* mode 0600, or "" */
	char password_env[RATECTL_SHARE_ENV_MAX + 1];     /* a variable's name, or "" */
	unsigned hosts;            /* the fallback share is 1/hosts (>= 1) */
	unsigned flags;            /* RATECTL_SHARE_OPEN */
} ratectl_share;

/*
 * Share budget `name` (or stop sharing it, url ""), for every process of
 * this host at its next admission.  The URL is checked, not connected to.
 * Stopping gives up the credit held (it is not returned to Redis).
 * Returns 0, RATECTL_ENOTFOUND, or RATECTL_EBADCONFIG with the detail.
 */
int ratectl_budget_share(ratectl *h, const char *name, const ratectl_share *s);

/* Check s by the rules ratectl_budget_share() applies (the URL parsed,
 * not connected to), without a ledger: for config loaders.  Returns 0 or
 * RATECTL_EBADCONFIG with ratectl_errmsg() saying what is wrong. */
int ratectl_share_check(const ratectl_share *s);

/* What a shared budget's host knows, for `ratectl show`, list and metrics. */
typedef struct ratectl_shared_state {
	ratectl_share share;       /* url "" when the budget is not shared */
	int degraded;              /* 1: Redis unreachable, the fallback applies */
	int64_t degraded_since;    /* wall clock, ns since the epoch; 0 when not */
	int64_t credit[2];         /* units held per dimension (requests, tokens);
	                              negative: a debt of reconciled tokens */
	int64_t last_sync_age_ns;  /* since the last exchange with Redis, -1 never */
	uint64_t syncs;            /* exchanges with Redis, all processes */
	uint64_t redis_commands;   /* commands sent, all processes */
	int restored;              /* the last sync rebuilt an emptied Redis */
	int sig_differs;           /* another host shares it with other limits */
	char last_error[160];      /* why Redis could not be used, or "" */
} ratectl_shared_state;

int ratectl_budget_shared_state(ratectl *h, const char *name,
                                ratectl_shared_state *out);

/* ---------------------------------------------------------------------- */
/* Admission                                                              */
/* ---------------------------------------------------------------------- */

/*
 * Priority classes.  Interactive requests (the default) wait in order of
 * asking.  Batch requests wait behind every interactive one, except for a
 * guaranteed share of the budget (ratectl_budget.batch_share) that they
 * get in order like interactive ones, so batch work never starves.
 */
typedef enum {
	RATECTL_INTERACTIVE = 0,
	RATECTL_BATCH = 1
} ratectl_priority;

/* What one request costs: normally {1, estimated tokens}. */
typedef struct ratectl_cost {
	uint64_t requests;
	uint64_t tokens;
	ratectl_priority priority;
	const char *tag;           /* NULL or "": none; else counted (ratectl_tags()) */
} ratectl_cost;

/*
 * A grant.  The caller provides the storage (no allocation per admission);
 * the fields are the library's: read them, never write them.
 */
typedef struct ratectl_lease {
	uint32_t magic;            /* set while held */
	uint32_t budget_id;
	char name[RATECTL_NAME_MAX + 1];
	int32_t slot;              /* 0: holds one of the budget's in-flight slots;
	                              -1: the budget has no cap */
	int32_t pid;               /* the process that holds it */
	uint64_t tokens;           /* tokens charged (the estimate) */
	int64_t start_ns;          /* admission time on the handle's clock */
	uint64_t fork_gen;
	char tag[RATECTL_TAG_MAX + 1]; /* the cost's tag, "" none */
} ratectl_lease;

/*
 * Try to admit cost c against every limit of budget `name`, never blocking.
 * On success returns 0 and fills *lease, to be given to ratectl_release().
 * On refusal returns RATECTL_ELIMITED or RATECTL_ECOOLDOWN with *wait_ns
 * (may be NULL) set to the exact time after which the same cost would be
 * admitted if nobody else takes it, rounded up, always >= 1; or
 * RATECTL_EINFLIGHT (all slots held; *wait_ns = 0: it depends on others).
 * RATECTL_ETOOBIG: the cost exceeds a limit's burst and can never pass.
 * RATECTL_ENOTFOUND: no such budget.
 */
int ratectl_try(ratectl *h, const char *name, const ratectl_cost *c,
                ratectl_lease *lease, int64_t *wait_ns);

/*
 * Admit cost c, waiting up to timeout_ns (< 0: forever).  The wait is
 * fair: a waiter reserves its place in the budget's schedule and sleeps
 * exactly until its time (no polling for rate waits), so processes are
 * admitted in the order they asked.  A waiter for an in-flight slot
 * sleeps until a slot is released or its holder dies.
 * Returns 0 with *lease filled, RATECTL_ETIMEDOUT when the budget cannot
 * be had within timeout_ns (then nothing is reserved), RATECTL_ETOOBIG,
 * RATECTL_ENOTFOUND, or -EINTR when a signal interrupted the wait (what
 * it had reserved is given back when nobody reserved after it).
 */
int ratectl_acquire(ratectl *h, const char *name, const ratectl_cost *c,
                    ratectl_lease *lease, int64_t timeout_ns);

/*
 * Admit cost c in n budgets at once (a per-model budget and the whole
 * key's budget, say): in one transaction, all of them or none.  Each
 * budget's limits see the full cost; all are charged at one admission
 * time, the latest any of them needs.  names must be distinct, 1 <= n <=
 * RATECTL_MANY_MAX.  leases[0..n) are filled in the order of names and
 * are released one by one with ratectl_release() (each reconciles its own
 * budget).  Returns and waits as ratectl_try() and ratectl_acquire(); a
 * refusal, error or timeout leaves nothing charged in any budget.
 */
#define RATECTL_MANY_MAX 8
/*
 * Fair shares among tenants.  When names[0] is a tenant (its weight > 0,
 * such as a budget per end user made from a template), the tenant holds
 * at most `weight` places reserved ahead in the other budgets at a time:
 * its next waiter lines up there only when one of its places has come.
 * So when those budgets are saturated, the places of every backlogged
 * tenant alternate with the others' in proportion to their weights,
 * whatever each tenant's number of waiters, and a tenant alone takes all
 * of them.  Within a tenant, waiters line up in the order they asked.
 */

int ratectl_try_many(ratectl *h, const char *const *names, unsigned n,
                     const ratectl_cost *c, ratectl_lease *leases, int64_t *wait_ns);
int ratectl_acquire_many(ratectl *h, const char *const *names, unsigned n,
                         const ratectl_cost *c, ratectl_lease *leases,
                         int64_t timeout_ns);

/* ---- event loops ------------------------------------------------------ */

/*
 * For event loops (asyncio, Node, libuv, epoll), which cannot park a
 * thread per waiter: a reservation that never blocks.  It either admits
 * at once or takes the caller's place in line, as ratectl_acquire() does
 * (so order across processes is kept), and says when to look again: at
 * at_ns on the caller's own timer, or earlier when fd becomes readable.
 *
 * The struct lives in the caller's memory (any number of them), starts
 * zeroed or from RATECTL_RESERVATION_INIT, and must not be copied while
 * pending.  Its private part is the library's.
 */
#define RATECTL_RESERVATION_VERSION 1

typedef struct ratectl_reservation {
	unsigned version;          /* RATECTL_RESERVATION_VERSION */
	ratectl_lease lease;       /* held once admitted: give to ratectl_release() */
	int64_t at_ns;             /* while pending: look again at this ratectl_now() */
	int fd;                    /* ... or when this is readable; -1: the time only */
	uint64_t priv[40];
} ratectl_reservation;

#define RATECTL_RESERVATION_INIT { RATECTL_RESERVATION_VERSION, { 0 }, 0, -1, { 0 } }

/*
 * Ask for cost c in budget `name`, never blocking.  Returns:
 *   0                  admitted now: r->lease is held.
 *   RATECTL_EPENDING   waiting.  A place in the schedule is reserved (and
 *                      an in-flight slot with it) when the budget's rate
 *                      is the reason; for a slot, or during a cooldown,
 *                      the request waits for a change.  Call
 *                      ratectl_reserve_poll() at r->at_ns or when r->fd is
 *                      readable, whichever comes first.
 *   RATECTL_ETOOBIG, RATECTL_ENOTFOUND and the other errors of ratectl_try().
 * r->fd is the handle's one event descriptor (an inotify instance, the
 * same for every reservation of the handle): poll it for reading, and on
 * readiness call ratectl_events_drain() once, then poll every pending
 * reservation whose budget may have changed (or all of them).  A slot
 * waiter also gets at_ns one second ahead: a missed event costs at most
 * that, as in ratectl_acquire().  A slot waiter's process runs the
 * budget's dead-holder watcher thread (one per process and wake-up bucket, as
 * for ratectl_acquire()); rate waiters start no thread.  While any
 * reservation is pending on a budget, anywhere, each wake-up on it (or on
 * a budget of the same wake-up bucket) costs one write() to the ledger's
 * wake file, which wakes every event loop watching it (they look again
 * without a transaction when not due); a process killed with
 * reservations pending leaves that on until the next reboot.
 */
int ratectl_reserve(ratectl *h, const char *name, const ratectl_cost *c,
                    ratectl_reservation *r);

/*
 * Look again at a pending reservation: 0 (admitted: r->lease is held),
 * RATECTL_EPENDING (r->at_ns and r->fd updated), or an error, after which
 * r is not pending (RATECTL_ENOTFOUND: the budget was deleted).  A place
 * voided meanwhile (reset) or overtaken by a cooldown is taken again.
 * Cheap when it is not time yet: no transaction.
 */
int ratectl_reserve_poll(ratectl *h, ratectl_reservation *r);

/*
 * Give up a pending reservation: its slot is released and its place
 * given back as an interrupted ratectl_acquire() gives it back.  Nothing
 * to do for one that was admitted (release its lease) or failed.
 */
void ratectl_reserve_cancel(ratectl *h, ratectl_reservation *r);

/*
 * Give up a pending reservation because the caller's deadline passed:
 * as ratectl_reserve_cancel(), and counted as a refusal (a timed-out
 * ratectl_acquire() is one).  Returns RATECTL_ETIMEDOUT, for the caller
 * to pass on.  (A reservation admitted after waiting is counted as a
 * wait, with its time from ratectl_reserve(), as ratectl_acquire()'s.)
 */
int ratectl_reserve_expire(ratectl *h, ratectl_reservation *r);

/*
 * Read and discard what made the handle's event descriptor readable.
 * Returns how many budgets changed, or -errno.
 */
int ratectl_events_drain(ratectl *h);

#define RATECTL_UNKNOWN UINT64_MAX

/*
 * Release a lease: free its in-flight slot and, when actual_tokens is not
 * RATECTL_UNKNOWN, correct the token charge by (actual - estimated) on
 * every token limit: a refund or an extra debit.  A debit is charged in
 * full, however far past a limit's burst (the next admissions wait until
 * it is repaid; a debt saturates at about 146 years instead of wrapping).
 * A refund wakes the waiters it may let in.  The lease is cleared.
 * Returns 0, RATECTL_EBADLEASE (not held, or released twice),
 * RATECTL_EFORKED (taken by another process), or a ledger error (the slot
 * is then given back in a transaction of its own; should that fail too,
 * it comes back when this process exits, as a dead holder's).
 */
int ratectl_release(ratectl *h, ratectl_lease *lease, uint64_t actual_tokens);

/*
 * Retry budget: may a request of budget `name` that the provider refused
 * be sent again?  Retries are counted against admissions, host-wide: a
 * retry is allowed while retries stay within `percent` percent of the
 * admissions so far (plus a small allowance of 1, so that a first refusal
 * can be retried).  Returns 0 and counts the retry, or RATECTL_ELIMITED
 * when retries would exceed that share: then do not retry.  A retry must
 * still be admitted like any request (ratectl_acquire()).
 */
int ratectl_retry_take(ratectl *h, const char *name, unsigned percent);

/* ---------------------------------------------------------------------- */
/* Parsers shared by the tools, the shim and the config file              */
/* ---------------------------------------------------------------------- */

/*
 * Each parses the whole string s (leading and trailing blanks allowed) and
 * returns 0, or RATECTL_EPARSE with ratectl_errmsg() saying what is wrong.
 */

/* "1.5s", "250ms", "10 min", "2h", "1day", "3 days", "0": *ns. */
int ratectl_parse_duration(const char *s, int64_t *ns);

/* "500/min", "200000 / minute", "2,000,000/day", "10/s", "5 per hour":
 * *count and *period_ns. */
int ratectl_parse_rate(const char *s, uint64_t *count, int64_t *period_ns);

/* Go-style durations as in OpenAI's x-ratelimit-reset-*: "6m0s", "20ms",
 * "1h2m3.5s", "0s". */
int ratectl_parse_go_duration(const char *s, int64_t *ns);

/*
 * Retry-After: delta-seconds ("120", "1.5") or an HTTP date (RFC 9110:
 * IMF-fixdate, plus the obsolete RFC 850 and asctime forms).  now_unix_ns
 * is the current wall-clock time; *ns is the delay from now, never < 0.
 */
int ratectl_parse_retry_after(const char *s, int64_t now_unix_ns, int64_t *ns);

/* RFC 3339 timestamp ("2026-11-25T17:03:00Z", "...+02:00", fractions):
 * *unix_ns since the epoch. */
int ratectl_parse_rfc3339(const char *s, int64_t *unix_ns);

#ifdef __cplusplus
}
#endif
#endif /* RATECTL_H */
