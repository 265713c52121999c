/*
 * bench_alt.c - the same admission done the ways users would otherwise
 * choose, each written as well as we know how, timed in the same process
 * as ratectl so the ratios do not depend on the machine's drift.
 *
 * Every limiter admits one request {1 request, 100 tokens} against a
 * requests limit and a tokens limit, atomically, with GCRA (one
 * theoretical arrival time per limit), refusing without waiting:
 *   - Redis: the GCRA in a Lua script loaded once (SCRIPT LOAD) and run
 *     with EVALSHA through hiredis over a unix socket, times from the
 *     server's TIME, to a redis-server this program starts and stops;
 *   - SQLite: WAL, synchronous=OFF, BEGIN IMMEDIATE, one row per limit,
 *     prepared statements, SELECT, UPDATE each limit, COMMIT;
 *   - a lock file: flock(LOCK_EX), pread the two TATs, pwrite, unlock.
 * Before timing, each passes a semantic check: with a limit of 1 request/s
 * and a burst of 5, exactly 5 requests in a row pass and the 6th is refused.
 *
 * Environment: RATECTL_BENCH_OPS (ratectl and lock-file operations;
 * SQLite gets a fifth, Redis a tenth), RATECTL_BENCH_REDIS (path of
 * redis-server), RATECTL_BENCH_TMPFS.
 */
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "bench.h"

#define ROUNDS 20
#define EST_TOKENS 100
#define NLIM 2          /* requests, tokens */

/* A limit as every alternative stores it: emission interval and tolerance
 * in nanoseconds (Redis: microseconds, see below). */
typedef struct alt_limit {
	int64_t T;
	int64_t tau;
} alt_limit;

/* The "huge" budget of bench.h: one unit a nanosecond, a second's burst. */
static const alt_limit lim_huge[NLIM] = { { 1, BENCH_SEC }, { 1, BENCH_SEC } };
/* The semantic check: 1 request/s with a burst of 5; tokens unlimited. */
static const alt_limit lim_check[NLIM] = { { BENCH_SEC, 5 * BENCH_SEC }, { 1, BENCH_SEC } };
static const int64_t cost[NLIM] = { 1, EST_TOKENS };

/* GCRA over both limits, all or nothing, exactly as lib/gcra.c plans and
 * commits it.  Returns 1 and updates tat[] when admitted, 0 when refused. */
static int gcra_admit(int64_t tat[NLIM], const alt_limit *l, int64_t now)
{
	int64_t t = now;
	int i;

	for (i = 0; i < NLIM; i++)
		if (tat[i] + cost[i] * l[i].T - l[i].tau > t)
			t = tat[i] + cost[i] * l[i].T - l[i].tau;
	if (t > now)
		return 0;
	for (i = 0; i < NLIM; i++)
		tat[i] = (tat[i] > now ? tat[i] : now) + cost[i] * l[i].T;
	return 1;
}

static int64_t boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * BENCH_SEC + ts.tv_nsec;
}

typedef int (*admit_fn)(void *ctx);

/* Exactly 5 pass, the 6th is refused: the limiter is a limiter. */
static void semantic_check(const char *what, admit_fn fn, void *ctx)
{
	int i, got[6];

	for (i = 0; i < 6; i++)
		got[i] = fn(ctx);
	for (i = 0; i < 6; i++)
		if (got[i] != (i < 5))
			bench_die("%s: request %d of 6 was %s under a burst of 5", what,
			          i + 1, got[i] ? "admitted" : "refused");
}

/* ---- ratectl, the reference ------------------------------------------- */

typedef struct rc_alt {
	ratectl *h;
	const char *name;
} rc_alt;

static int rc_admit(void *arg)
{
	rc_alt *c = arg;
	ratectl_cost co = { .requests = 1, .tokens = EST_TOKENS };
	ratectl_lease lease;
	int rc = ratectl_try(c->h, c->name, &co, &lease, NULL);

	if (rc == RATECTL_ELIMITED)
		return 0;
	BENCH_CHECK(rc);
	BENCH_CHECK(ratectl_release(c->h, &lease, RATECTL_UNKNOWN));
	return 1;
}

static void rc_op(void *arg)
{
	if (!rc_admit(arg))
		bench_die("ratectl: refused under a limit it cannot reach");
}

/* ---- lock file ---------------------------------------------------------- */

typedef struct lockfile {
	int fd;
	const alt_limit *lim;
} lockfile;

static int lock_admit(void *arg)
{
	lockfile *c = arg;
	int64_t tat[NLIM];
	ssize_t n;
	int ok;

	if (flock(c->fd, LOCK_EX) != 0)
		bench_die("lock file: flock: %s", strerror(errno));
	n = pread(c->fd, tat, sizeof tat, 0);
	if (n == 0)
		memset(tat, 0, sizeof tat);     /* a new file: every limit full */
	else if (n != (ssize_t)sizeof tat)
		bench_die("lock file: short read (%zd)", n);
	if ((ok = gcra_admit(tat, c->lim, boot_ns())) &&
	    pwrite(c->fd, tat, sizeof tat, 0) != (ssize_t)sizeof tat)
		bench_die("lock file: pwrite: %s", strerror(errno));
	if (flock(c->fd, LOCK_UN) != 0)
		bench_die("lock file: unlock: %s", strerror(errno));
	return ok;
}

static void lock_op(void *arg)
{
	if (!lock_admit(arg))
		bench_die("lock file: refused under a limit it cannot reach");
}

static void lock_open(lockfile *c, const char *dir, const char *name,
                      const alt_limit *lim)
{
	char p[PATH_MAX];

	bench_path(p, sizeof p, dir, name);
	if ((c->fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		bench_die("lock file %s: %s", p, strerror(errno));
	c->lim = lim;
}

/* ---- SQLite -------------------------------------------------------------- */

typedef struct sql {
	sqlite3 *db;
	sqlite3_stmt *begin, *sel, *upd, *commit, *rollback;
	const char *budget;
} sql;

#define SQL_CHECK(s, rc, what) do {                                           \
	if ((rc) != SQLITE_OK && (rc) != SQLITE_DONE && (rc) != SQLITE_ROW)       \
		bench_die("sqlite: %s: %s", what, sqlite3_errmsg((s)->db));          \
} while (0)

static void sql_step(sql *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	SQL_CHECK(s, rc, what);
	sqlite3_reset(st);
}

static int sql_admit(void *arg)
{
	sql *s = arg;
	int64_t tat[NLIM], now;
	alt_limit lim[NLIM];
	int rc, i = 0, ok;

	sql_step(s, s->begin, "BEGIN IMMEDIATE");
	sqlite3_bind_text(s->sel, 1, s->budget, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s->sel)) == SQLITE_ROW && i < NLIM) {
		lim[i].T = sqlite3_column_int64(s->sel, 0);
		lim[i].tau = sqlite3_column_int64(s->sel, 1);
		tat[i++] = sqlite3_column_int64(s->sel, 2);
	}
	SQL_CHECK(s, rc, "SELECT");
	sqlite3_reset(s->sel);
	if (i != NLIM)
		bench_die("sqlite: budget %s has %d limits, expected %d", s->budget, i, NLIM);
	now = boot_ns();
	if ((ok = gcra_admit(tat, lim, now))) {
		for (i = 0; i < NLIM; i++) {
			sqlite3_bind_int64(s->upd, 1, tat[i]);
			sqlite3_bind_text(s->upd, 2, s->budget, -1, SQLITE_STATIC);
			sqlite3_bind_int(s->upd, 3, i);
			sql_step(s, s->upd, "UPDATE");
		}
		sql_step(s, s->commit, "COMMIT");
	} else {
		sql_step(s, s->rollback, "ROLLBACK");
	}
	return ok;
}

static void sql_op(void *arg)
{
	if (!sql_admit(arg))
		bench_die("sqlite: refused under a limit it cannot reach");
}

static void sql_exec(sql *s, const char *q)
{
	char *err = NULL;

	if (sqlite3_exec(s->db, q, NULL, NULL, &err) != SQLITE_OK)
		bench_die("sqlite: %s: %s", q, err ? err : "?");
}

static void sql_prepare(sql *s, sqlite3_stmt **st, const char *q)
{
	if (sqlite3_prepare_v3(s->db, q, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
		bench_die("sqlite: prepare %s: %s", q, sqlite3_errmsg(s->db));
}

static void sql_budget(sql *s, const char *name, const alt_limit *lim)
{
	char q[256];
	int i;

	for (i = 0; i < NLIM; i++) {
		snprintf(q, sizeof q, "INSERT OR REPLACE INTO limits VALUES "
		         "('%s', %d, %lld, %lld, 0)", name, i, (long long)lim[i].T,
		         (long long)lim[i].tau);
		sql_exec(s, q);
	}
}

static void sql_open(sql *s, const char *dir)
{
	char p[PATH_MAX];

	bench_path(p, sizeof p, dir, "limits.db");
	if (sqlite3_open_v2(p, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
	                    NULL) != SQLITE_OK)
		bench_die("sqlite: open %s: %s", p, sqlite3_errmsg(s->db));
	/* Other processes share the file: wait for their locks, don't fail. */
	sqlite3_busy_timeout(s->db, 5000);
	sql_exec(s, "PRAGMA journal_mode=WAL");
	sql_exec(s, "PRAGMA synchronous=OFF");
	sql_exec(s, "CREATE TABLE IF NOT EXISTS limits (budget TEXT, dim INTEGER, "
	         "T INTEGER, tau INTEGER, tat INTEGER, PRIMARY KEY (budget, dim)) "
	         "WITHOUT ROWID");
	sql_budget(s, "hot", lim_huge);
	sql_budget(s, "check", lim_check);
	sql_prepare(s, &s->begin, "BEGIN IMMEDIATE");
	sql_prepare(s, &s->sel, "SELECT T, tau, tat FROM limits WHERE budget = ?1 "
	            "ORDER BY dim");
	sql_prepare(s, &s->upd, "UPDATE limits SET tat = ?1 WHERE budget = ?2 "
	            "AND dim = ?3");
	sql_prepare(s, &s->commit, "COMMIT");
	sql_prepare(s, &s->rollback, "ROLLBACK");
}

static void sql_close(sql *s)
{
	sqlite3_finalize(s->begin);
	sqlite3_finalize(s->sel);
	sqlite3_finalize(s->upd);
	sqlite3_finalize(s->commit);
	sqlite3_finalize(s->rollback);
	sqlite3_close(s->db);
}

/* ---- Redis --------------------------------------------------------------- */

/*
 * KEYS[1]: the budget's hash, one field per limit holding its TAT.
 * ARGV: per limit, T, tau and the cost, in microseconds and units.  Times
 * come from the server's clock in microseconds, which a Lua double holds
 * exactly; intervals below a microsecond become fractions (the "huge"
 * budget only), which changes nothing here since it never refuses.
 * Returns {1, 0} when admitted, {0, wait in us} when refused.
 */
static const char lua_gcra[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local n = #ARGV / 3\n"
	"local tat = redis.call('HMGET', KEYS[1], unpack({'1', '2', '3', '4', '5', '6', '7', '8'}, 1, n))\n"
	"local at = now\n"
	"for i = 1, n do\n"
	"  tat[i] = tonumber(tat[i]) or 0\n"
	"  local c = tonumber(ARGV[3 * i])\n"
	"  if c > 0 then\n"
	"    local ti = tat[i] + c * tonumber(ARGV[3 * i - 2]) - tonumber(ARGV[3 * i - 1])\n"
	"    if ti > at then at = ti end\n"
	"  end\n"
	"end\n"
	"if at > now then return {0, math.ceil(at - now)} end\n"
	"local set = {}\n"
	"for i = 1, n do\n"
	"  local c = tonumber(ARGV[3 * i])\n"
	"  if c > 0 then\n"
	"    set[#set + 1] = tostring(i)\n"
	"    set[#set + 1] = string.format('%.3f', math.max(tat[i], now) + c * tonumber(ARGV[3 * i - 2]))\n"
	"  end\n"
	"end\n"
	"redis.call('HSET', KEYS[1], unpack(set))\n"
	"return {1, 0}\n";

typedef struct rds {
	redisContext *c;
	const char *argv[4 + 3 * NLIM];
	size_t argl[4 + 3 * NLIM];
	char num[3 * NLIM][32];
	char sha[48];
} rds;

static pid_t redis_pid;

/* atexit: a run that dies midway must not leave a server behind. */
static void redis_stop(void)
{
	int64_t until = bench_now() + 5 * BENCH_SEC;
	int st;

	if (redis_pid <= 0)
		return;
	kill(redis_pid, SIGTERM);
	while (waitpid(redis_pid, &st, WNOHANG) == 0) {
		if (bench_now() > until) {
			kill(redis_pid, SIGKILL);
			waitpid(redis_pid, &st, 0);
			break;
		}
		usleep(5000);
	}
	redis_pid = 0;
}

/* redis-server from $RATECTL_BENCH_REDIS or the PATH; 0 when there is none. */
static int redis_find(char *out, size_t len)
{
	const char *env = getenv("RATECTL_BENCH_REDIS"), *path = getenv("PATH");
	char dirs[4096];
	char *d, *save = NULL;

	if (env && *env) {
		snprintf(out, len, "%s", env);
		return access(out, X_OK) == 0;
	}
	snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin:/usr/local/bin",
	         path ? path : "");
	for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save))
		if (snprintf(out, len, "%s/redis-server", d) < (int)len &&
		    access(out, X_OK) == 0)
			return 1;
	return 0;
}

static redisReply *rcmd(rds *r, int argc, const char **argv, const size_t *argl)
{
	redisReply *rep = redisCommandArgv(r->c, argc, argv, argl);

	if (!rep)
		bench_die("redis: %s: %s", argv[0], r->c->errstr);
	if (rep->type == REDIS_REPLY_ERROR)
		bench_die("redis: %s: %s", argv[0], rep->str);
	return rep;
}

/* The server's own words on why it did not start: its log goes away with
 * the temporary directory. */
static void redis_log_to_stderr(const char *log)
{
	char line[512];
	FILE *f = fopen(log, "r");

	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		fprintf(stderr, "redis-server: %s", line);
	fclose(f);
}

/* Start redis-server on a unix socket in dir (no TCP, no persistence) and
 * connect, waiting at most 5 s.  Returns 0, or -1 with the reason in why. */
static int redis_start(rds *r, const char *exe, const char *dir, char *why,
                       size_t wlen, char *version, size_t vlen)
{
	char sock[PATH_MAX], log[PATH_MAX];
	int64_t until;
	redisReply *rep;
	char *v;
	int st;

	bench_path(sock, sizeof sock, dir, "redis.sock");
	bench_path(log, sizeof log, dir, "redis.log");
	fflush(stdout);
	if ((redis_pid = fork()) < 0)
		bench_die("fork: %s", strerror(errno));
	if (redis_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(exe, exe, "--port", "0", "--unixsocket", sock,
		      "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
		      "--dir", dir, "--logfile", log, "--daemonize", "no", (char *)NULL);
		_exit(127);
	}
	atexit(redis_stop);
	until = bench_now() + 5 * BENCH_SEC;
	for (;;) {
		if (waitpid(redis_pid, &st, WNOHANG) == redis_pid) {
			redis_pid = 0;
			redis_log_to_stderr(log);
			snprintf(why, wlen, "redis-server exited at startup (status %d)",
			         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			return -1;
		}
		if ((r->c = redisConnectUnix(sock)) && !r->c->err)
			break;
		if (r->c)
			redisFree(r->c);
		r->c = NULL;
		if (bench_now() > until) {
			redis_log_to_stderr(log);
			snprintf(why, wlen, "redis-server did not answer within 5 s");
			return -1;
		}
		usleep(10000);
	}
	rep = redisCommand(r->c, "INFO server");
	if (rep && rep->type == REDIS_REPLY_STRING &&
	    (v = strstr(rep->str, "redis_version:")))
		snprintf(version, vlen, "%.*s", (int)strcspn(v + 14, "\r\n"), v + 14);
	freeReplyObject(rep);
	return 0;
}

/* Load the script once and build the EVALSHA arguments for one budget. */
static void redis_prepare(rds *r, const char *key, const alt_limit *lim)
{
	const char *load[3] = { "SCRIPT", "LOAD", lua_gcra };
	size_t loadl[3] = { 6, 4, sizeof lua_gcra - 1 };
	redisReply *rep = rcmd(r, 3, load, loadl);
	int i;

	if (rep->type != REDIS_REPLY_STRING || rep->len >= (int)sizeof r->sha)
		bench_die("redis: SCRIPT LOAD: unexpected reply");
	memcpy(r->sha, rep->str, (size_t)rep->len + 1);
	freeReplyObject(rep);
	r->argv[0] = "EVALSHA";
	r->argv[1] = r->sha;
	r->argv[2] = "1";
	r->argv[3] = key;
	for (i = 0; i < NLIM; i++) {
		snprintf(r->num[3 * i], 32, "%.3f", (double)lim[i].T / 1e3);
		snprintf(r->num[3 * i + 1], 32, "%.3f", (double)lim[i].tau / 1e3);
		snprintf(r->num[3 * i + 2], 32, "%lld", (long long)cost[i]);
	}
	for (i = 0; i < 3 * NLIM; i++)
		r->argv[4 + i] = r->num[i];
	for (i = 0; i < 4 + 3 * NLIM; i++)
		r->argl[i] = strlen(r->argv[i]);
}

static int redis_admit(void *arg)
{
	rds *r = arg;
	redisReply *rep = rcmd(r, 4 + 3 * NLIM, r->argv, r->argl);
	int ok;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER)
		bench_die("redis: EVALSHA: unexpected reply");
	ok = rep->element[0]->integer == 1;
	freeReplyObject(rep);
	return ok;
}

static void redis_op(void *arg)
{
	if (!redis_admit(arg))
		bench_die("redis: refused under a limit it cannot reach");
}

/* ---- the section ------------------------------------------------------- */

static void print_row(const bench_variant *v, const bench_variant *ref,
                      const char *label, int has_target)
{
	double x = v->st.median / ref->st.median;
	bench_row row = bench_row_begin("alternatives", v->key);
	char m[32], p[32];

	printf("   %-44s %10s %10s", label, bench_fmt_ns(m, sizeof m, v->st.median),
	       bench_fmt_ns(p, sizeof p, v->st.p99));
	if (v != ref)
		printf(" %8.1fx", x);
	if (has_target)
		printf("   >= 20x %s", bench_verdict(x >= 20.0));
	printf("\n");
	bench_row_str(&row, "label", label);
	bench_row_num(&row, "median_ns", v->st.median);
	bench_row_num(&row, "p99_ns", v->st.p99);
	bench_row_num(&row, "mean_ns", v->st.mean);
	bench_row_int(&row, "ops", (long long)v->st.n);
	if (v != ref)
		bench_row_num(&row, "ratectl_faster_by", x);
	if (has_target) {
		bench_row_num(&row, "target_faster_by_at_least", 20.0);
		bench_row_str(&row, "verdict", bench_verdict(x >= 20.0));
	}
	bench_row_end(&row);
}

static void skipped_row(const char *key, const char *label, const char *why)
{
	bench_row row = bench_row_begin("alternatives", key);

	printf("   %-44s skipped: %s\n", label, why);
	bench_row_str(&row, "label", label);
	bench_row_str(&row, "skipped", why);
	bench_row_end(&row);
}

int main(void)
{
	size_t ops = (size_t)bench_env_long("RATECTL_BENCH_OPS", 200000, 1000, 100000000);
	const char *base = bench_base(0);
	char dir[PATH_MAX], ldir[PATH_MAX], exe[PATH_MAX];
	char why[PATH_MAX + 64] = "", rver[32] = "?", label[3][96];
	ratectl_budget hot = bench_budget_huge(0), chk = RATECTL_BUDGET_INIT;
	bench_variant v[4];
	rc_alt rc, rc_chk;
	lockfile lf, lf_chk;
	sql s = { 0 }, s_chk;
	rds r = { 0 }, r_chk;
	int nv = 0, have_redis, redis_ok = 0, failed = 0, cpu;
	cpu_set_t cpus;
	double timer;

	bench_tmpdir(dir, sizeof dir, base, "alt");
	bench_path(ldir, sizeof ldir, dir, "ledger");

	/* ratectl: the same budgets as the others. */
	chk.nlimits = 2;
	chk.limits[0] = bench_limit(RATECTL_REQUESTS, 1, BENCH_SEC, 5);
	chk.limits[1] = bench_limit(RATECTL_TOKENS, 1000000000, BENCH_SEC, 0);
	BENCH_CHECK(ratectl_open(&rc.h, ldir, NULL));
	BENCH_CHECK(ratectl_budget_set(rc.h, "hot", &hot, 0));
	BENCH_CHECK(ratectl_budget_set(rc.h, "check", &chk, 0));
	rc.name = "hot";
	rc_chk = (rc_alt){ rc.h, "check" };
	semantic_check("ratectl", rc_admit, &rc_chk);
	v[nv++] = (bench_variant){ "ratectl", "", rc_op, &rc, ops, { 0, 0, 0, 0 } };

	lock_open(&lf, dir, "hot.lock", lim_huge);
	lock_open(&lf_chk, dir, "check.lock", lim_check);
	semantic_check("lock file", lock_admit, &lf_chk);
	v[nv++] = (bench_variant){ "lockfile", "", lock_op, &lf, ops, { 0, 0, 0, 0 } };

	sql_open(&s, dir);
	s.budget = "hot";
	s_chk = s;
	s_chk.budget = "check";
	semantic_check("sqlite", sql_admit, &s_chk);
	v[nv++] = (bench_variant){ "sqlite", "", sql_op, &s, ops / 5, { 0, 0, 0, 0 } };

	if (!(have_redis = redis_find(exe, sizeof exe))) {
		snprintf(why, sizeof why, "redis-server not installed");
	} else if (redis_start(&r, exe, dir, why, sizeof why, rver, sizeof rver) == 0) {
		redis_prepare(&r, "rl:hot", lim_huge);
		r_chk = r;
		redis_prepare(&r_chk, "rl:check", lim_check);
		semantic_check("redis", redis_admit, &r_chk);
		v[nv++] = (bench_variant){ "redis", "", redis_op, &r, ops / 10, { 0, 0, 0, 0 } };
		redis_ok = 1;
	} else {
		failed = 1;     /* installed but would not run: a real error */
	}

	/* This process on one CPU, redis-server (started before) wherever the
	 * scheduler puts it, as a server would be. */
	cpu = bench_pin(&cpus);
	timer = bench_timer_cost();
	bench_measure(v, nv, ROUNDS, timer);
	bench_unpin(&cpus);

	printf("\n3. The alternatives, one process, %s (%s); same admission: GCRA on "
	       "a\n   requests and a tokens limit, atomically; all timed in one "
	       "process on CPU %d,\n   taking turns in %d rounds\n",
	       bench_fs_name(base), base, cpu, ROUNDS);
	printf("   %-44s %10s %10s %9s\n", "", "median", "p99", "ratectl");
	printf("   %-44s %10s %10s %9s\n", "", "", "", "faster by");
	print_row(&v[0], &v[0], "ratectl try + release (this process)", 0);
	snprintf(label[0], sizeof label[0], "Redis %s, Lua GCRA, EVALSHA, unix socket",
	         rver);
	snprintf(label[1], sizeof label[1], "SQLite %s, WAL, BEGIN IMMEDIATE",
	         sqlite3_libversion());
	snprintf(label[2], sizeof label[2], "lock file, flock + pread/pwrite");
	if (redis_ok)
		print_row(&v[3], &v[0], label[0], 1);
	else
		skipped_row("redis", "Redis, Lua GCRA, EVALSHA, unix socket", why);
	print_row(&v[2], &v[0], label[1], 1);
	print_row(&v[1], &v[0], label[2], 0);

	if (redis_ok)
		redisFree(r.c);
	redis_stop();
	sql_close(&s);
	close(lf.fd);
	close(lf_chk.fd);
	ratectl_close(rc.h);
	bench_rmtree(dir);
	if (failed) {
		fprintf(stderr, "bench: error: %s\n", why);
		return 1;
	}
	return 0;
}
