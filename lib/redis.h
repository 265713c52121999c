/*
 * redis.h - the global side of a shared budget (ratectl.conf(5) `shared =`):
 * one connection to the Redis server the budget names, and the one Lua
 * script that takes credit from (and gives it back to, and spreads
 * cooldowns and tightened limits through) the global GCRA of each limit.
 *
 * Internal to libratectl.  A connection is used by one thread at a time
 * (the process's refiller, under the budget's refill lock); nothing here
 * touches the ledger.
 *
 * Keys: one hash per budget, "{rc:NAME}" (the braces are a Redis Cluster
 * hash tag: every key of one budget lives in one slot), fields:
 *   base      server time (us) that the stored times count from
 *   tat1..8   each limit's theoretical arrival time, ns after base
 *   cool      the cooldown's end, ns after base (0 or absent: none)
 *   sig       the limits' signature (count/period/burst of each), so that
 *             hosts configured differently are told so
 * Times in the hash are integers of nanoseconds relative to `base`, which
 * a Lua double holds exactly for 104 days; the script moves `base` forward
 * (and every stored time back) when they grow past a day, or when the
 * server's clock went back before `base`, so that the GCRA arithmetic is
 * exact to the nanosecond whatever the server's clock.  That is why a
 * limit's tau (burst * period / count) may be at most 100 days here.
 * Server time comes from TIME inside the script: hosts' clocks never meet.
 */
#ifndef RATECTL_REDIS_H
#define RATECTL_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "ratectl.h"

#define RC_REDIS_URL_MAX 256
#define RC_REDIS_PATH_MAX 256
#define RC_REDIS_ENV_MAX 64

/* Where a shared budget's Redis is, and how to log in. */
typedef struct rc_redis_cfg {
	/* "redis://HOST:PORT/DB" (HOST a name, an IPv4 address or [IPv6];
	 * PORT default 6379; /DB default 0) or "unix:///PATH" (optionally
	 * "?db=N").  No password in the URL: a URL with userinfo is refused. */
	char url[RC_REDIS_URL_MAX];
	/* The password: read from this file (first line, trailing newline
	 * and spaces dropped; the file must be a regular file, neither
	 * readable nor writable by group or others), or taken from this
	 * environment variable; "" for none, never both.  Never from the
	 * config itself. */
	char password_file[RC_REDIS_PATH_MAX];
	char password_env[RC_REDIS_ENV_MAX];
	/* Bound on connecting and on each reply (0: 1 s). */
	int64_t timeout_ns;
} rc_redis_cfg;

/*
 * Check a URL without connecting.  Returns 0, or RATECTL_EBADCONFIG with
 * a message in err naming what is wrong ("shared: 'redis://h:99999/0':
 * port out of range").
 */
int ratectl__redis_url_check(const char *url, char *err, size_t errlen);

/*
 * Fill *cfg from strings of any length (NULL or "" for no password file or
 * variable), checking what ratectl__redis_open() would: a string that does
 * not fit its field is refused, never cut; the URL as above; a variable's
 * name ([A-Za-z_][A-Za-z0-9_]*); not both a file and a variable.  Returns 0
 * or RATECTL_EBADCONFIG with err saying what.  Nothing is read or connected.
 */
int ratectl__redis_cfg_set(rc_redis_cfg *cfg, const char *url,
                           const char *password_file, const char *password_env,
                           int64_t timeout_ns, char *err, size_t errlen);

typedef struct rc_redis rc_redis;

/*
 * Connect (TCP with TCP_NODELAY, or the unix socket), AUTH when a
 * password is configured, SELECT the db (when not 0), SCRIPT LOAD the
 * script.  Returns 0 and *out; or, with err saying what and where:
 * RATECTL_EBADCONFIG (a bad cfg; a password file missing, unreadable, not
 * a regular file or open to group or others; a password variable unset;
 * a database the server does not have), -EACCES (the server refused the
 * password, or wants one), -ETIMEDOUT, -ECONNREFUSED, -ENOENT and other
 * -errno.  Never blocks longer than cfg->timeout_ns per step (connect,
 * each command), except in resolving a host name (getaddrinfo has no
 * bound).  No SIGPIPE is raised, whatever the server does.
 */
int ratectl__redis_open(rc_redis **out, const rc_redis_cfg *cfg, char *err,
                        size_t errlen);
void ratectl__redis_close(rc_redis *r);

/* Redis commands sent on r so far (EVALSHA, SCRIPT LOAD, AUTH, SELECT...),
 * for the benchmark's count and `ratectl show`: a take is 1, or 3 after a
 * NOSCRIPT (EVALSHA, SCRIPT LOAD, EVALSHA). */
uint64_t ratectl__redis_commands(const rc_redis *r);

/* One limit of the budget as the script sees it. */
typedef struct rc_glimit {
	uint32_t dim;              /* RATECTL_REQUESTS or RATECTL_TOKENS */
	uint64_t count;
	int64_t period_ns;
	uint64_t burst;            /* filled in: never 0 */
} rc_glimit;

/*
 * One call of the script: everything a host says to and learns from the
 * global side in one round trip.  Per dimension (requests, tokens):
 *   give[d]   units returned first (credit the host will not use): each
 *             limit of d gets them back (its TAT moves back by give*T,
 *             never below the server's now);
 *   need[d]   the host needs at least this many units of d now...
 *   want[d]   ...and would take up to this many (want >= need).
 * Units are taken from every limit of their dimension at once; the
 * script grants, per dimension, the most each of its limits can give now
 * up to want, as long as every dimension gets at least its need: all or
 * nothing for the need, so a grant is always usable.
 *
 * carried_tat[i] / carried_cool / carried_gen: the host's last known
 * global state (server ns since the epoch; 0 none) and the generation of
 * the write it came from (res.gen of its last call; every call writes
 * gen + 1).  The script applies them (the later of stored and carried)
 * only when carried_gen is above the hash's own generation: the hash was
 * lost since (restarted empty, expired), so a Redis restarted empty does
 * not hand out a fresh burst: the first host back writes what it knew,
 * and a host that knew a later write moves it forward.  Otherwise a
 * carried view is older than the hash and is ignored: it must not undo
 * what came after it (another host's units given back).
 * push_cool: a cooldown this host learned (a 429), server ns since the
 * epoch, 0 none: the stored end becomes the later of the two.
 * push_tat[i]: a limit this host tightened from a provider's header, as a
 * TAT (server ns since the epoch), 0 none: the stored TAT becomes at least
 * this.
 */
typedef struct rc_take_req {
	const char *budget;        /* its name: the key is "{rc:NAME}" */
	unsigned n;                /* limits, 1..RATECTL_MAX_LIMITS */
	rc_glimit lim[RATECTL_MAX_LIMITS];
	uint64_t give[2];
	uint64_t need[2];
	uint64_t want[2];
	int64_t carried_tat[RATECTL_MAX_LIMITS];
	int64_t carried_cool;
	uint64_t carried_gen;
	int64_t push_cool;
	int64_t push_tat[RATECTL_MAX_LIMITS];
} rc_take_req;

typedef struct rc_take_res {
	uint64_t got[2];           /* units granted per dimension (0, 0: none) */
	/* When nothing was granted: the time until the need would fit, ns
	 * (from the server's now); 0 when granted. */
	int64_t wait_ns;
	int64_t now;               /* the server's TIME, ns since the epoch */
	int64_t tat[RATECTL_MAX_LIMITS];   /* global TATs after, ns since the epoch */
	int64_t cool;              /* global cooldown end, ns since the epoch; 0 none */
	int sig_differs;           /* another host stored different limits */
	int restored;              /* the hash was missing: carried state used */
	uint64_t gen;              /* the generation of this write, to carry */
} rc_take_res;

/*
 * Run the script (EVALSHA; on NOSCRIPT, SCRIPT LOAD and once more).
 * Returns 0 and *out; or, with err saying what:
 *   -ECONNRESET, -ETIMEDOUT (no whole reply within timeout_ns), -EPIPE and
 *     other -errno: the connection failed, and every later call on it
 *     returns -ENOTCONN: close it and open another;
 *   RATECTL_EPARSE: a reply of the wrong shape or out of range, or an
 *     error reply (a key of another type at "{rc:NAME}", a field that is
 *     not an integer); -EACCES, -EAGAIN (loading, busy), -EROFS (a
 *     replica), -ENOSPC (maxmemory) for those error replies;
 *   -EINVAL for a request out of its ranges (need > want, a bad limit, a
 *     negative time), RATECTL_EBADNAME for a bad budget name, and
 *     RATECTL_ETOOBIG when need exceeds a burst of its dimension (it
 *     could never be granted): nothing is sent then.
 * give and want above 2^53 - 1 count as 2^53 - 1 (Lua's exact integers).
 *
 * During a global cooldown (now < cool) nothing is granted (wait_ns: until
 * its end, or until the need fits if that is later); units given back are
 * still taken back.  A stored cooldown never ends more than a day after
 * the server's now, nor a TAT more than tau after it (pushed or carried
 * values beyond are held there).  The hash expires after twice the
 * longest period plus a minute without a call: an idle budget leaves
 * nothing behind, and the carried state restores it.
 */
int ratectl__redis_take(rc_redis *r, const rc_take_req *q, rc_take_res *out,
                        char *err, size_t errlen);

#endif /* RATECTL_REDIS_H */
