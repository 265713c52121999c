/*
 * bench_shared.c - budgets shared by many hosts through Redis (issue 13):
 * what sharing costs an admission, and what it costs Redis.
 *
 * Local admission: one process, pinned, per-operation latency as in
 * bench_admit (rows interleaved in rounds), of
 *   - the floor: a bare LMDB write transaction updating one 8-byte value
 *     in its own environment, opened with the ledger's flags;
 *   - try + release on a budget that is not shared, in a ledger of its
 *     own (bench_admit's "hot" row), and in the ledger of the next row;
 *   - try + release on the same budget shared through Redis, with the
 *     host's credit held: the refiller thread keeps it topped up in the
 *     background, and a refusal while timed is counted and printed.
 * Target: the shared row under 2x the floor.
 *
 * Steady load: two forked processes, each with its own handle (and its
 * own refiller) and its own Redis connection, pace admissions on a fixed
 * schedule well under the limit: 2,000/s in all on a budget of 5,000
 * requests/s (burst 5,000) and 500,000 tokens/s (burst 500,000), each
 * request {1 request, 100 tokens}; then 200/s.  A warm-up, then a
 * measured window; the Redis commands of the shared budget over the
 * window come from ratectl_budget_shared_state() (redis_commands and
 * syncs, read between ticks before and after).  Target at 2,000/s: at
 * most 20 commands per 1,000 admissions, and no refusal.  At 200/s no
 * target: a host syncs about as often whatever its load (at least once a
 * second, to learn global cooldowns, and on each refill), so commands per
 * admission grow as the load falls.
 *
 * The per-request Redis-Lua limiter on the same load: each tick of the
 * schedule admits once through each of three limiters, timed on its own:
 * the shared budget, the same budget not shared, and a GCRA in a Lua
 * script (TIME, HMGET, HSET) run with EVALSHA over hiredis, as LiteLLM,
 * limits and the like do: one command per admission.  Their order goes
 * through all six permutations.
 *
 * Usage: bench_shared                    the section (run.sh runs it)
 *        bench_shared --profile WHAT [N] N untimed operations of WHAT
 *                                        (shared, not_shared or floor),
 *                                        for perf or callgrind
 *
 * Two private redis-servers on unix sockets, started here and stopped at
 * exit: one holds the shared budgets, the other the Lua limiter, so that
 * each server's own count of EVALSHA calls (INFO commandstats) checks the
 * figures above.  Without redis-server the section says "skipped" and
 * the program exits 0.
 *
 * Environment: RATECTL_BENCH_OPS (timed operations per latency row,
 * default 200000), RATECTL_BENCH_REDIS (the redis-server to start),
 * RATECTL_BENCH_TMPFS (where the ledger and the sockets go).
 */
#include <hiredis/hiredis.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "bench.h"
#include "floor.h"

#define ROUNDS 20
#define EST_TOKENS 100
#define NLIM 2                  /* requests, tokens */

/* The steady load. */
#define WORKERS 2
#define STEADY_LIMIT 5000       /* requests/s, burst one second */
#define STEADY_TOKENS 500000    /* tokens/s, burst one second */
#define WARM_NS (1 * BENCH_SEC)
#define MEASURE_NS (5 * BENCH_SEC)
#define TARGET_CMDS 20.0        /* Redis commands per 1,000 admissions */
#define TARGET_RATIO 2.0        /* shared admission / floor */

/* Each load: a shared budget and the same budget not shared. */
static const struct { const char *name, *local; long rate; int target; } loads[] = {
	{ "steady-2000", "local-2000", 2000, 1 },
	{ "steady-200", "local-200", 200, 0 },
};
#define NLOADS ((int)(sizeof loads / sizeof loads[0]))

/* ---- redis-servers -------------------------------------------------------- */

typedef struct rsrv {
	pid_t pid;
	char sock[sizeof ((struct sockaddr_un *)0)->sun_path];
	char log[PATH_MAX];
	redisContext *c;            /* the parent's, for INFO */
	char version[32];
} rsrv;

static rsrv srv[2];             /* 0: the shared budgets, 1: the Lua limiter */
static pid_t parent_pid;

/* atexit: a run that dies midway leaves no server behind. */
static void servers_stop(void)
{
	int i, st;

	if (getpid() != parent_pid)
		return;
	for (i = 0; i < 2; i++) {
		int64_t until = bench_now() + 5 * BENCH_SEC;

		if (srv[i].c)
			redisFree(srv[i].c);
		srv[i].c = NULL;
		if (srv[i].pid <= 0)
			continue;
		kill(srv[i].pid, SIGTERM);
		while (waitpid(srv[i].pid, &st, WNOHANG) == 0) {
			if (bench_now() > until) {
				kill(srv[i].pid, SIGKILL);
				waitpid(srv[i].pid, &st, 0);
				break;
			}
			usleep(5000);
		}
		srv[i].pid = 0;
	}
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

static void log_to_stderr(const char *log)
{
	char line[512];
	FILE *f = fopen(log, "r");

	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		fprintf(stderr, "redis-server: %s", line);
	fclose(f);
}

/* Start redis-server on a unix socket dir/NAME.sock (no TCP, nothing
 * saved) and connect, waiting at most 5 s; dies if it does not come up. */
static void server_start(rsrv *s, const char *exe, const char *dir, const char *name)
{
	int64_t until;
	redisReply *rep;
	char *v;
	int st;

	if (snprintf(s->sock, sizeof s->sock, "%s/%s.sock", dir, name) >= (int)sizeof s->sock)
		bench_die("socket path too long under %s", dir);
	snprintf(s->log, sizeof s->log, "%s/%s.log", dir, name);
	fflush(stdout);
	if ((s->pid = fork()) < 0)
		bench_die("fork: %s", strerror(errno));
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(exe, exe, "--port", "0", "--unixsocket", s->sock,
		      "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
		      "--dir", dir, "--logfile", s->log, "--daemonize", "no", (char *)NULL);
		_exit(127);
	}
	until = bench_now() + 5 * BENCH_SEC;
	for (;;) {
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			log_to_stderr(s->log);
			bench_die("%s exited at startup (status %d)", exe,
			          WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		}
		if ((s->c = redisConnectUnix(s->sock)) && !s->c->err)
			break;
		if (s->c)
			redisFree(s->c);
		s->c = NULL;
		if (bench_now() > until) {
			log_to_stderr(s->log);
			bench_die("%s did not answer on %s within 5 s", exe, s->sock);
		}
		usleep(10000);
	}
	snprintf(s->version, sizeof s->version, "?");
	rep = redisCommand(s->c, "INFO server");
	if (rep && rep->type == REDIS_REPLY_STRING &&
	    (v = strstr(rep->str, "redis_version:")))
		snprintf(s->version, sizeof s->version, "%.*s",
		         (int)strcspn(v + 14, "\r\n"), v + 14);
	freeReplyObject(rep);
}

/* The server's own count of EVALSHA calls from clients (scripts do not
 * call EVALSHA, so the commands they run inside are not in it). */
static uint64_t server_evalsha(rsrv *s)
{
	redisReply *rep = redisCommand(s->c, "INFO commandstats");
	unsigned long long n = 0;
	const char *p;

	if (!rep || rep->type != REDIS_REPLY_STRING)
		bench_die("redis: INFO commandstats: %s", rep ? "unexpected reply" :
		          s->c->errstr);
	if ((p = strstr(rep->str, "cmdstat_evalsha:calls=")) != NULL)
		n = strtoull(p + 22, NULL, 10);
	freeReplyObject(rep);
	return n;
}

/* ---- the per-request Lua limiter ----------------------------------------- */

/*
 * GCRA over n limits, all or nothing, on the server's clock in
 * microseconds.  KEYS[1]: a hash, field tI the theoretical arrival time
 * of limit I.  ARGV, per limit: emission interval T and tolerance tau
 * (burst * T), in microseconds, and the cost.  Returns {1, 0} when
 * admitted, {0, microseconds to wait} when refused.
 */
static const char lua_gcra[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local n = #ARGV / 3\n"
	"local f = {}\n"
	"for i = 1, n do f[i] = 't' .. i end\n"
	"local tat = redis.call('HMGET', KEYS[1], unpack(f))\n"
	"local at = now\n"
	"for i = 1, n do\n"
	"  local T, tau, c = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])\n"
	"  tat[i] = math.max(tonumber(tat[i]) or now, now) + c * T\n"
	"  if tat[i] - tau > at then at = tat[i] - tau end\n"
	"end\n"
	"if at > now then return {0, math.ceil(at - now)} end\n"
	"local set = {}\n"
	"for i = 1, n do\n"
	"  set[2*i-1] = f[i]\n"
	"  set[2*i] = string.format('%.0f', tat[i])\n"
	"end\n"
	"redis.call('HSET', KEYS[1], unpack(set))\n"
	"return {1, 0}\n";

typedef struct lua_lim {
	long long T_us, tau_us, cost;
} lua_lim;

/* 5,000 requests/s and 500,000 tokens/s, a second's burst each. */
static const lua_lim lim_steady[NLIM] = {
	{ 1000000 / STEADY_LIMIT, 1000000, 1 },
	{ 1000000 / STEADY_TOKENS, 1000000, EST_TOKENS },
};
/* The check: 1 request/s with a burst of 5. */
static const lua_lim lim_check[NLIM] = {
	{ 1000000, 5000000, 1 },
	{ 1000000 / STEADY_TOKENS, 1000000, EST_TOKENS },
};

typedef struct luac {
	redisContext *c;
	char sha[48];
	char key[64];
	char num[3 * NLIM][24];
	const char *argv[4 + 3 * NLIM];
	size_t argl[4 + 3 * NLIM];
} luac;

static void lua_open(luac *l, const char *sock, const char *key, const lua_lim *lim)
{
	const char *load[3] = { "SCRIPT", "LOAD", lua_gcra };
	size_t loadl[3] = { 6, 4, sizeof lua_gcra - 1 };
	redisReply *rep;
	int i;

	memset(l, 0, sizeof *l);
	if (!(l->c = redisConnectUnix(sock)) || l->c->err)
		bench_die("redis: connect %s: %s", sock, l->c ? l->c->errstr : "out of memory");
	rep = redisCommandArgv(l->c, 3, load, loadl);
	if (!rep || rep->type != REDIS_REPLY_STRING || rep->len >= (int)sizeof l->sha)
		bench_die("redis: SCRIPT LOAD: %s", rep && rep->type == REDIS_REPLY_ERROR ?
		          rep->str : "unexpected reply");
	memcpy(l->sha, rep->str, (size_t)rep->len + 1);
	freeReplyObject(rep);
	snprintf(l->key, sizeof l->key, "%s", key);
	l->argv[0] = "EVALSHA";
	l->argv[1] = l->sha;
	l->argv[2] = "1";
	l->argv[3] = l->key;
	for (i = 0; i < NLIM; i++) {
		snprintf(l->num[3 * i], sizeof l->num[0], "%lld", lim[i].T_us);
		snprintf(l->num[3 * i + 1], sizeof l->num[0], "%lld", lim[i].tau_us);
		snprintf(l->num[3 * i + 2], sizeof l->num[0], "%lld", lim[i].cost);
	}
	for (i = 0; i < 3 * NLIM; i++)
		l->argv[4 + i] = l->num[i];
	for (i = 0; i < 4 + 3 * NLIM; i++)
		l->argl[i] = strlen(l->argv[i]);
}

/* One EVALSHA: 1 admitted, 0 refused. */
static int lua_admit(luac *l)
{
	redisReply *rep = redisCommandArgv(l->c, 4 + 3 * NLIM, l->argv, l->argl);
	int ok;

	if (!rep)
		bench_die("redis: EVALSHA: %s", l->c->errstr);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER)
		bench_die("redis: EVALSHA: %s", rep->type == REDIS_REPLY_ERROR ?
		          rep->str : "unexpected reply");
	ok = rep->element[0]->integer == 1;
	freeReplyObject(rep);
	return ok;
}

/* Exactly 5 pass under a burst of 5, the 6th is refused. */
static void lua_check(const char *sock)
{
	luac l;
	int i, got;

	lua_open(&l, sock, "rl:check", lim_check);
	for (i = 0; i < 6; i++)
		if ((got = lua_admit(&l)) != (i < 5))
			bench_die("redis lua: request %d of 6 was %s under a burst of 5",
			          i + 1, got ? "admitted" : "refused");
	redisFree(l.c);
}

/* ---- admissions ------------------------------------------------------------- */

static const ratectl_cost cost = { 1, EST_TOKENS, RATECTL_INTERACTIVE, NULL };

/* try + release: 1 admitted, 0 refused (a shared budget out of credit). */
static int admit(ratectl *h, const char *name)
{
	ratectl_lease lease;
	int rc = ratectl_try(h, name, &cost, &lease, NULL);

	if (rc == RATECTL_ELIMITED)
		return 0;
	BENCH_CHECK(rc);
	BENCH_CHECK(ratectl_release(h, &lease, RATECTL_UNKNOWN));
	return 1;
}

typedef struct adm_ctx {
	ratectl *h;
	const char *name;
	uint64_t refused;
} adm_ctx;

static void adm_op(void *arg)
{
	adm_ctx *c = arg;

	if (!admit(c->h, c->name))
		c->refused++;
}

static ratectl_share share_to(const char *url)
{
	ratectl_share s;

	memset(&s, 0, sizeof s);
	s.version = RATECTL_SHARE_VERSION;
	snprintf(s.url, sizeof s.url, "%s", url);
	s.hosts = 1;
	return s;
}

static void state(ratectl *h, const char *name, ratectl_shared_state *st)
{
	BENCH_CHECK(ratectl_budget_shared_state(h, name, st));
	if (!st->share.url[0])
		bench_die("budget %s: not shared", name);
}

/* ---- local admission -------------------------------------------------------- */

/* The ledger of the local rows ("hot" not shared, "shared" shared), with
 * the shared budget's credit taken (at least `need` requests, if the
 * refiller gets there within 5 s), and the floor's environment. */
static ratectl *lat_open(const char *dir, const char *url, uint64_t need, floor_env *fl)
{
	char ldir[PATH_MAX], fdir[PATH_MAX];
	ratectl_budget huge = bench_budget_huge(0);
	ratectl_share s = share_to(url);
	ratectl_shared_state a;
	uint64_t warm = 0;
	int64_t until;
	ratectl *h;
	int j;

	bench_path(ldir, sizeof ldir, dir, "ledger");
	bench_path(fdir, sizeof fdir, dir, "floor");
	BENCH_CHECK(ratectl_open(&h, ldir, NULL));
	BENCH_CHECK(ratectl_budget_set(h, "hot", &huge, 0));
	BENCH_CHECK(ratectl_budget_set(h, "shared", &huge, 0));
	/* Shared before pinning: the refiller thread starts here and runs
	 * wherever the scheduler puts it, as it would in a service. */
	BENCH_CHECK(ratectl_budget_share(h, "shared", &s));
	floor_open(fl, fdir);

	/* Credit first: admit until the host holds enough for the whole
	 * timed row (the refiller sizes chunks by demand), at most 5 s. */
	for (until = bench_now() + 5 * BENCH_SEC; bench_now() < until; ) {
		for (j = 0; j < 1000; j++)
			warm += admit(h, "shared");
		state(h, "shared", &a);
		if (a.degraded)
			bench_die("shared budget: Redis unreachable: %s", a.last_error);
		if (warm >= 100000 && a.credit[0] >= (int64_t)need &&
		    a.credit[1] >= (int64_t)(need * EST_TOKENS))
			break;
	}
	return h;
}

static void latency(const char *dir, const char *url, size_t ops)
{
	enum { NV = 4, SHARED = 3 };
	char m[32], p[32], adir[PATH_MAX];
	ratectl_budget huge = bench_budget_huge(0);
	ratectl_shared_state a, b;
	bench_variant v[NV];
	adm_ctx alone, hot, shr;
	cpu_set_t cpus;
	floor_env fl;
	ratectl *h, *ha;
	double timer, ratio;
	int cpu, j, met;

	/* The control: the same budget in a ledger of its own, with no shared
	 * budget and no refiller (section 1's "hot" row). */
	bench_path(adir, sizeof adir, dir, "alone");
	BENCH_CHECK(ratectl_open(&ha, adir, NULL));
	BENCH_CHECK(ratectl_budget_set(ha, "hot", &huge, 0));
	h = lat_open(dir, url, ops + ops / 10 + 100, &fl);
	alone = (adm_ctx){ ha, "hot", 0 };
	hot = (adm_ctx){ h, "hot", 0 };
	shr = (adm_ctx){ h, "shared", 0 };
	cpu = bench_pin(&cpus);
	timer = bench_timer_cost();
	v[0] = (bench_variant){ "floor", "floor: LMDB write txn, one 8-byte value",
	                        floor_op, &fl, ops, { 0, 0, 0, 0 } };
	v[1] = (bench_variant){ "not_shared_alone", "try + release, not shared, own ledger",
	                        adm_op, &alone, ops, { 0, 0, 0, 0 } };
	v[2] = (bench_variant){ "not_shared", "try + release, not shared, same ledger",
	                        adm_op, &hot, ops, { 0, 0, 0, 0 } };
	v[SHARED] = (bench_variant){ "shared", "try + release, shared, credit held",
	                             adm_op, &shr, ops, { 0, 0, 0, 0 } };
	state(h, "shared", &a);
	bench_measure(v, NV, ROUNDS, timer);
	state(h, "shared", &b);
	bench_unpin(&cpus);

	printf("   local admission: one process on CPU %d, %zu timed operations per row "
	       "after\n   %zu warm-up, rows interleaved in %d rounds, clock's own cost "
	       "(%.0f ns) subtracted;\n   %s (%s);\n   one budget of 1e9 requests/s "
	       "and 1e9 tokens/s, {1 request, %d tokens} each;\n   the shared one's "
	       "credit taken beforehand: %lld requests\n", cpu, ops, ops / 10 + 100,
	       ROUNDS, timer, bench_fs_name(dir), dir, EST_TOKENS, (long long)a.credit[0]);
	printf("     %-44s %10s %10s %8s\n", "", "median", "p99", "/floor");
	for (j = 0; j < NV; j++) {
		bench_row row = bench_row_begin("shared", v[j].key);

		ratio = v[j].st.median / v[0].st.median;
		printf("     %-44s %10s %10s %7.2fx", v[j].label,
		       bench_fmt_ns(m, sizeof m, v[j].st.median),
		       bench_fmt_ns(p, sizeof p, v[j].st.p99), ratio);
		bench_row_str(&row, "fs", bench_fs_name(dir));
		bench_row_str(&row, "dir", dir);
		bench_row_num(&row, "median_ns", v[j].st.median);
		bench_row_num(&row, "p99_ns", v[j].st.p99);
		bench_row_num(&row, "mean_ns", v[j].st.mean);
		bench_row_int(&row, "ops", (long long)v[j].st.n);
		bench_row_num(&row, "ratio_to_floor", ratio);
		if (j == SHARED) {
			/* "While credit lasts": a refusal means it did not. */
			met = ratio < TARGET_RATIO && shr.refused == 0;
			printf("   < 2x %s", bench_verdict(met));
			bench_row_num(&row, "ratio_to_not_shared", v[SHARED].st.median / v[2].st.median);
			bench_row_num(&row, "ratio_to_not_shared_alone",
			              v[SHARED].st.median / v[1].st.median);
			bench_row_int(&row, "refused", (long long)shr.refused);
			bench_row_int(&row, "syncs", (long long)(b.syncs - a.syncs));
			bench_row_int(&row, "redis_commands",
			              (long long)(b.redis_commands - a.redis_commands));
			bench_row_num(&row, "target_ratio_below", TARGET_RATIO);
			bench_row_str(&row, "verdict", bench_verdict(met));
		}
		printf("\n");
		bench_row_end(&row);
	}
	printf("     shared row while timed: %llu refused (out of credit), %llu syncs "
	       "by the refiller,\n     %llu Redis commands; %lld requests of credit "
	       "left\n", (unsigned long long)shr.refused,
	       (unsigned long long)(b.syncs - a.syncs),
	       (unsigned long long)(b.redis_commands - a.redis_commands),
	       (long long)b.credit[0]);
	ratectl_close(h);
	ratectl_close(ha);
	mdb_env_close(fl.env);
}

/* ---- steady load ------------------------------------------------------------ */

/* The limiters each tick of the steady load goes through. */
enum { LIM_SHARED, LIM_LOCAL, LIM_LUA, NLIMITERS };

typedef struct steady_sh {
	int ready;
	int64_t start;              /* 0 until the parent says go */
	int64_t meas, end;          /* the measured window */
	int64_t interval;           /* between one worker's ticks */
	uint64_t ok[WORKERS][NLIMITERS], refused[WORKERS][NLIMITERS];
	size_t n[WORKERS][NLIMITERS];
	size_t cap;                 /* samples per worker and limiter */
	int64_t samples[];          /* [worker][limiter][cap] */
} steady_sh;

static int64_t *samples_of(steady_sh *sh, int w, int lim)
{
	return sh->samples + ((size_t)w * NLIMITERS + (size_t)lim) * sh->cap;
}

/* The order of the limiters in a tick: all six in turn, so that each
 * comes first, and after each of the others, as often as the rest (an
 * admission right after a sleep, or after a round trip to Redis, finds
 * colder caches than one right after another admission). */
static const int order[6][NLIMITERS] = {
	{ LIM_SHARED, LIM_LOCAL, LIM_LUA }, { LIM_LOCAL, LIM_LUA, LIM_SHARED },
	{ LIM_LUA, LIM_SHARED, LIM_LOCAL }, { LIM_SHARED, LIM_LUA, LIM_LOCAL },
	{ LIM_LUA, LIM_LOCAL, LIM_SHARED }, { LIM_LOCAL, LIM_SHARED, LIM_LUA },
};

/* One worker: its own handle and connection; ticks on a fixed schedule,
 * each one admission through each limiter, timed on its own. */
static void steady_worker(steady_sh *sh, int w, const char *ldir, const char *name,
                          const char *local, const char *lua_sock, const char *lua_key)
{
	int64_t start, t, t0, dt;
	ratectl *h;
	luac l;
	long k;
	int j, lim, ok;

	BENCH_CHECK(ratectl_open(&h, ldir, NULL));
	lua_open(&l, lua_sock, lua_key, lim_steady);
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while ((start = __atomic_load_n(&sh->start, __ATOMIC_ACQUIRE)) == 0)
		usleep(200);
	for (k = 0;; k++) {
		/* The workers' ticks interleave: worker w is w/WORKERS of an
		 * interval behind worker 0. */
		t = start + k * sh->interval + w * sh->interval / WORKERS;
		if (t >= sh->end)
			break;
		bench_sleep_until(t);
		for (j = 0; j < NLIMITERS; j++) {
			lim = order[k % 6][j];
			t0 = bench_now();
			ok = lim == LIM_LUA ? lua_admit(&l) :
			     admit(h, lim == LIM_SHARED ? name : local);
			dt = bench_now() - t0;
			if (t < sh->meas)
				continue;
			if (ok)
				sh->ok[w][lim]++;
			else
				sh->refused[w][lim]++;
			if (sh->n[w][lim] < sh->cap)
				samples_of(sh, w, lim)[sh->n[w][lim]++] = dt;
		}
	}
	redisFree(l.c);
	ratectl_close(h);
}

typedef struct steady_res {
	long rate;
	uint64_t ok[NLIMITERS], refused[NLIMITERS];
	bench_stats st[NLIMITERS];
	uint64_t cmds[NLIMITERS];   /* Redis commands over the window */
	uint64_t server[NLIMITERS]; /* EVALSHA calls the servers counted */
	uint64_t syncs;
	int64_t credit;             /* requests held at the end */
} steady_res;

static void steady(const char *ldir, const char *url, int li, double timer,
                   steady_res *r)
{
	const char *name = loads[li].name;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_share s = share_to(url);
	ratectl_shared_state a, z;
	steady_sh *sh;
	size_t cap, size;
	pid_t pids[WORKERS];
	char key[64];
	int64_t deadline, gap;
	uint64_t s0[2], s1[2];
	ratectl *h;
	int w, lim;
	int64_t *all;

	memset(r, 0, sizeof *r);
	r->rate = loads[li].rate;
	b.nlimits = NLIM;
	b.limits[0] = bench_limit(RATECTL_REQUESTS, STEADY_LIMIT, BENCH_SEC, STEADY_LIMIT);
	b.limits[1] = bench_limit(RATECTL_TOKENS, STEADY_TOKENS, BENCH_SEC, STEADY_TOKENS);
	/* Made and shared here; the handle is closed before the workers fork
	 * (its refiller with it): they open the ledger themselves, as the
	 * processes of a service would. */
	BENCH_CHECK(ratectl_open(&h, ldir, NULL));
	BENCH_CHECK(ratectl_budget_set(h, name, &b, 0));
	BENCH_CHECK(ratectl_budget_set(h, loads[li].local, &b, 0));
	BENCH_CHECK(ratectl_budget_share(h, name, &s));
	ratectl_close(h);
	snprintf(key, sizeof key, "rl:%s", name);

	cap = (size_t)(r->rate * (MEASURE_NS / BENCH_MS) / 1000 / WORKERS) + 1000;
	size = sizeof *sh + (size_t)WORKERS * NLIMITERS * cap * sizeof(int64_t);
	sh = bench_shared(size);
	sh->cap = cap;
	sh->interval = (int64_t)WORKERS * BENCH_SEC / r->rate;
	fflush(stdout);
	for (w = 0; w < WORKERS; w++) {
		if ((pids[w] = fork()) < 0)
			bench_die("fork: %s", strerror(errno));
		if (pids[w] == 0) {
			steady_worker(sh, w, ldir, name, loads[li].local, srv[1].sock, key);
			_exit(0);
		}
	}
	deadline = bench_now() + 20 * BENCH_SEC;
	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < WORKERS) {
		if (bench_now() > deadline)
			bench_die("steady load: workers not ready after 20 s");
		usleep(1000);
	}
	BENCH_CHECK(ratectl_open(&h, ldir, NULL));     /* to read the state */
	sh->meas = bench_now() + 20 * BENCH_MS + WARM_NS;
	sh->end = sh->meas + MEASURE_NS;
	__atomic_store_n(&sh->start, sh->meas - WARM_NS, __ATOMIC_RELEASE);

	/* The counters are read between two ticks (half the time between
	 * ticks before the first measured one and after the last), so that
	 * they frame the measured ticks; the Lua server's first, since it
	 * sees a command every tick. */
	gap = sh->interval / WORKERS / 2;
	bench_sleep_until(sh->meas - gap);
	s0[1] = server_evalsha(&srv[1]);
	state(h, name, &a);
	s0[0] = server_evalsha(&srv[0]);
	bench_sleep_until(sh->end - gap);
	s1[1] = server_evalsha(&srv[1]);
	state(h, name, &z);
	s1[0] = server_evalsha(&srv[0]);
	bench_reap(pids, WORKERS, "steady load");
	ratectl_close(h);

	if (z.degraded)
		bench_die("steady load: Redis unreachable: %s", z.last_error);
	for (lim = 0; lim < NLIMITERS; lim++) {
		size_t n = 0;

		if (!(all = malloc(WORKERS * cap * sizeof *all)))
			bench_die("out of memory");
		for (w = 0; w < WORKERS; w++) {
			r->ok[lim] += sh->ok[w][lim];
			r->refused[lim] += sh->refused[w][lim];
			memcpy(all + n, samples_of(sh, w, lim), sh->n[w][lim] * sizeof *all);
			n += sh->n[w][lim];
		}
		r->st[lim] = bench_stats_of(all, n, timer);
		free(all);
	}
	r->server[LIM_SHARED] = s1[0] - s0[0];
	r->server[LIM_LUA] = s1[1] - s0[1];
	r->cmds[LIM_SHARED] = z.redis_commands - a.redis_commands;
	r->cmds[LIM_LUA] = r->ok[LIM_LUA] + r->refused[LIM_LUA];   /* one EVALSHA each */
	r->syncs = z.syncs - a.syncs;
	r->credit = z.credit[0];
	munmap(sh, size);
}

static void steady_print(const steady_res *r, int target)
{
	static const char *const label[NLIMITERS] = {
		"shared budget: try + release", "same budget not shared",
		"Redis Lua GCRA, EVALSHA per request" };
	static const char *const key[NLIMITERS] = { "steady_shared", "steady_not_shared",
	                                            "steady_lua" };
	char m[32], p[32], rate[32], c[32], k[32];
	int lim;

	snprintf(rate, sizeof rate, "%ld/s", r->rate);
	for (lim = 0; lim < NLIMITERS; lim++) {
		bench_row row = bench_row_begin("shared", key[lim]);
		uint64_t adm = r->ok[lim] + r->refused[lim];
		double per1k = adm ? (double)r->cmds[lim] * 1000.0 / (double)adm : 0;
		/* Refusals at 40% of the limit: credit did not keep up. */
		int met = per1k <= TARGET_CMDS && r->refused[lim] == 0;

		snprintf(c, sizeof c, "%llu", (unsigned long long)r->cmds[lim]);
		snprintf(k, sizeof k, "%.1f", per1k);
		printf("     %-36s %7s %8llu %7llu %9s %9s %8s %7s", label[lim], rate,
		       (unsigned long long)r->ok[lim], (unsigned long long)r->refused[lim],
		       bench_fmt_ns(m, sizeof m, r->st[lim].median),
		       bench_fmt_ns(p, sizeof p, r->st[lim].p99),
		       lim == LIM_LOCAL ? "-" : c, lim == LIM_LOCAL ? "-" : k);
		if (lim == LIM_SHARED && target)
			printf("   <= 20 %s", bench_verdict(met));
		printf("\n");
		bench_row_int(&row, "rate_per_s", r->rate);
		bench_row_int(&row, "processes", WORKERS);
		bench_row_num(&row, "seconds", (double)MEASURE_NS / BENCH_SEC);
		bench_row_int(&row, "admitted", (long long)r->ok[lim]);
		bench_row_int(&row, "refused", (long long)r->refused[lim]);
		bench_row_num(&row, "median_ns", r->st[lim].median);
		bench_row_num(&row, "p99_ns", r->st[lim].p99);
		bench_row_num(&row, "mean_ns", r->st[lim].mean);
		if (lim != LIM_LOCAL) {
			bench_row_int(&row, "redis_commands", (long long)r->cmds[lim]);
			bench_row_int(&row, "server_evalsha", (long long)r->server[lim]);
			bench_row_num(&row, "commands_per_1000", per1k);
		}
		if (lim == LIM_SHARED) {
			bench_row_int(&row, "syncs", (long long)r->syncs);
			bench_row_int(&row, "credit_left", (long long)r->credit);
		}
		if (lim == LIM_LUA)
			bench_row_num(&row, "ratio_to_shared",
			              r->st[LIM_LUA].median / r->st[LIM_SHARED].median);
		if (lim == LIM_SHARED && target) {
			bench_row_num(&row, "target_commands_per_1000_at_most", TARGET_CMDS);
			bench_row_str(&row, "verdict", bench_verdict(met));
		}
		bench_row_end(&row);
	}
	printf("       %ld/s: %llu syncs in %.0f s; Redis counted %llu EVALSHA from the "
	       "hosts, %llu\n       from the Lua clients; a Lua admission costs %.0fx a "
	       "shared one\n", r->rate, (unsigned long long)r->syncs,
	       (double)MEASURE_NS / BENCH_SEC, (unsigned long long)r->server[LIM_SHARED],
	       (unsigned long long)r->server[LIM_LUA],
	       r->st[LIM_LUA].median / r->st[LIM_SHARED].median);
}

/* --profile: n untimed operations of one local row, for a profiler. */
static void profile(const char *dir, const char *url, const char *what, long n)
{
	floor_env fl;
	adm_ctx c;
	long i;

	c.h = lat_open(dir, url, n < 500000 ? (uint64_t)n : 500000, &fl);
	c.name = strcmp(what, "shared") == 0 ? "shared" : "hot";
	c.refused = 0;
	for (i = 0; i < n; i++) {
		if (strcmp(what, "floor") == 0)
			floor_op(&fl);
		else
			adm_op(&c);
	}
	if (c.refused)
		printf("%s: %llu of %ld refused (out of credit)\n", what,
		       (unsigned long long)c.refused, n);
	ratectl_close(c.h);
	mdb_env_close(fl.env);
}

int main(int argc, char **argv)
{
	size_t ops = (size_t)bench_env_long("RATECTL_BENCH_OPS", 200000, 1000, 100000000);
	const char *base = bench_base(0);
	char dir[PATH_MAX], rdir[PATH_MAX], exe[PATH_MAX], url[RATECTL_SHARE_URL_MAX + 1];
	char ldir[PATH_MAX];
	steady_res res[NLOADS];
	const char *prof = NULL;
	double timer;
	int i;

	if (argc >= 3 && strcmp(argv[1], "--profile") == 0 &&
	    (strcmp(argv[2], "shared") == 0 || strcmp(argv[2], "not_shared") == 0 ||
	     strcmp(argv[2], "floor") == 0))
		prof = argv[2];
	else if (argc != 1)
		bench_die("usage: bench_shared [--profile shared|not_shared|floor [N]]");
	parent_pid = getpid();
	signal(SIGPIPE, SIG_IGN);
	if (!redis_find(exe, sizeof exe)) {
		bench_row row;

		if (prof)
			bench_die("--profile: no redis-server (set RATECTL_BENCH_REDIS)");
		row = bench_row_begin("shared", "skipped");
		printf("\n10. Budgets shared by many hosts through Redis: skipped, "
		       "redis-server not\n    installed (Debian's redis-server; or set "
		       "RATECTL_BENCH_REDIS)\n");
		bench_row_str(&row, "skipped", "redis-server not installed");
		bench_row_end(&row);
		return 0;
	}
	bench_tmpdir(dir, sizeof dir, base, "shared");
	/* A unix socket's path is short (108 bytes): under /tmp if need be. */
	snprintf(rdir, sizeof rdir, "%s", dir);
	if (strlen(dir) + sizeof "/ratectl.sock" > sizeof srv[0].sock)
		bench_tmpdir(rdir, sizeof rdir, "/tmp", "redis");
	atexit(servers_stop);
	server_start(&srv[0], exe, rdir, "ratectl");
	if (snprintf(url, sizeof url, "unix://%s", srv[0].sock) >= (int)sizeof url)
		bench_die("socket path too long for a share URL: %s", srv[0].sock);
	if (prof) {
		profile(dir, url, prof, argc > 3 ? atol(argv[3]) : 1000000);
		return 0;
	}
	server_start(&srv[1], exe, rdir, "lua");
	lua_check(srv[1].sock);
	printf("\n10. Budgets shared by many hosts through Redis (redis-server %s, "
	       "unix sockets)\n", srv[0].version);

	latency(dir, url, ops);

	timer = bench_timer_cost();
	bench_path(ldir, sizeof ldir, dir, "ledger");
	for (i = 0; i < NLOADS; i++)
		steady(ldir, url, i, timer, &res[i]);
	printf("\n   steady load: %d processes, each its own handle and Redis "
	       "connection, pacing\n   {1 request, %d tokens} on a fixed schedule "
	       "well under a budget of %d/s\n   and %d tokens/s (burst one second); "
	       "%.0f s warm-up, then %.0f s measured.\n   Each tick admits once "
	       "through each limiter, taking turns which goes first;\n   the Lua "
	       "limiter has its own redis-server.  Commands: the shared budget's\n   "
	       "from ratectl_budget_shared_state(), the Lua limiter's one EVALSHA "
	       "per request\n", WORKERS, EST_TOKENS, STEADY_LIMIT, STEADY_TOKENS,
	       (double)WARM_NS / BENCH_SEC, (double)MEASURE_NS / BENCH_SEC);
	printf("     %-36s %7s %8s %7s %9s %9s %8s %7s\n", "", "load", "admitted",
	       "refused", "median", "p99", "commands", "/1,000");
	for (i = 0; i < NLOADS; i++)
		steady_print(&res[i], loads[i].target);
	/* Why the low load has no target, in this run's figures. */
	printf("     No target at %ld/s: syncs do not follow the load (%.1f a second at "
	       "%ld/s,\n     %.1f at %ld/s): a host syncs at least once a second, to "
	       "learn global\n     cooldowns, and refills when its credit falls below "
	       "a third of a second's\n     demand; so at low loads commands per "
	       "admission grow as the load falls.\n",
	       loads[NLOADS - 1].rate,
	       (double)res[0].syncs * BENCH_SEC / MEASURE_NS, res[0].rate,
	       (double)res[NLOADS - 1].syncs * BENCH_SEC / MEASURE_NS,
	       res[NLOADS - 1].rate);

	servers_stop();
	bench_rmtree(dir);
	if (strcmp(rdir, dir) != 0)
		bench_rmtree(rdir);
	return 0;
}
