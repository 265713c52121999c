/*
 * test_redis.c - the global side of shared budgets (lib/redis.c): URLs and
 * their sizes, passwords, and the script's arithmetic against a real
 * redis-server that each test starts on a unix socket in a temporary
 * directory and stops at its end; replies no real server sends come from
 * a fake one in a thread.  Expected grants are computed from the server's
 * own TIME (res.now), never from this process's clock.  Every wait is
 * bounded.  Without redis-server the tests fail: tools/deps.sh test
 * installs it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <hiredis/hiredis.h>

#include "testutil.h"
#include "../lib/redis.h"

#define T10 (SEC / 10)          /* 10 units a second */
#define PW "s3cret-pw"

/* ---- a private redis-server ------------------------------------------ */

typedef struct fixture {
	pid_t pid;
	char dir[64];
	char sock[128];
	char url[160];
	const char *password;      /* the server's, for the admin connection */
	redisContext *admin;
} fixture;

static int64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / SEC), (long)(ns % SEC) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int redis_exe(char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096], *d, *save = NULL;

	snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin:/usr/local/bin",
	         path ? path : "");
	for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save))
		if (snprintf(out, len, "%s/redis-server", d) < (int)len &&
		    access(out, X_OK) == 0)
			return 1;
	return 0;
}

static void log_to_stderr(const fixture *f)
{
	char p[128], line[512];
	FILE *fp;

	snprintf(p, sizeof p, "%s/redis.log", f->dir);
	if ((fp = fopen(p, "r")) == NULL)
		return;
	while (fgets(line, sizeof line, fp))
		fprintf(stderr, "redis-server: %s", line);
	fclose(fp);
}

static redisReply *admin(fixture *f, const char *fmt, ...)
{
	redisReply *rep;
	va_list ap;

	va_start(ap, fmt);
	rep = redisvCommand(f->admin, fmt, ap);
	va_end(ap);
	if (!rep)
		fail_msg("admin %s: %s", fmt, f->admin->errstr);
	return rep;
}

static void admin_ok(fixture *f, const char *fmt, const char *arg)
{
	redisReply *rep = arg ? admin(f, fmt, arg) : admin(f, fmt);

	if (rep->type == REDIS_REPLY_ERROR)
		fail_msg("admin %s: %s", fmt, rep->str);
	freeReplyObject(rep);
}

static long long admin_int(fixture *f, const char *fmt, const char *arg)
{
	redisReply *rep = admin(f, fmt, arg);
	long long v = 0;

	if (rep->type == REDIS_REPLY_STRING)
		v = strtoll(rep->str, NULL, 10);
	else if (rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	else
		fail_msg("admin %s: reply of type %d", fmt, rep->type);
	freeReplyObject(rep);
	return v;
}

/*
 * Start redis-server on f->sock (and whatever `extra` adds: pairs of
 * arguments, NULL-terminated) and connect the admin connection.  Bounded:
 * 5 s.
 */
static void server_start(fixture *f, const char *const *extra)
{
	const char *argv[40];
	char exe[512], logp[128];
	int64_t until;
	int n = 0, st;

	if (!redis_exe(exe, sizeof exe))
		fail_msg("redis-server is not installed (not on PATH nor in /usr/sbin, "
		         "/usr/bin): tools/deps.sh test installs it");
	snprintf(logp, sizeof logp, "%s/redis.log", f->dir);
	argv[n++] = exe;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--unixsocket";
	argv[n++] = f->sock;
	argv[n++] = "--unixsocketperm";
	argv[n++] = "700";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--dir";
	argv[n++] = f->dir;
	argv[n++] = "--logfile";
	argv[n++] = logp;
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	while (extra && *extra && n < 38)
		argv[n++] = *extra++;
	argv[n] = NULL;
	fflush(NULL);
	if ((f->pid = fork()) < 0)
		fail_msg("fork: %s", strerror(errno));
	if (f->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	until = mono_now() + 5 * SEC;
	for (;;) {
		redisReply *rep;

		if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
			f->pid = 0;
			log_to_stderr(f);
			fail_msg("redis-server exited at startup (status %d)",
			         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		}
		f->admin = redisConnectUnix(f->sock);
		if (f->admin && !f->admin->err) {
			rep = f->password ? redisCommand(f->admin, "AUTH %s", f->password)
			                  : redisCommand(f->admin, "PING");
			if (rep && rep->type != REDIS_REPLY_ERROR) {
				freeReplyObject(rep);
				break;
			}
			freeReplyObject(rep);
		}
		if (f->admin)
			redisFree(f->admin);
		f->admin = NULL;
		if (mono_now() > until) {
			log_to_stderr(f);
			fail_msg("redis-server did not answer within 5 s");
		}
		sleep_ns(5 * MSEC);
	}
	{
		struct timeval tv = { 5, 0 };

		redisSetTimeout(f->admin, tv);
	}
	snprintf(f->url, sizeof f->url, "unix://%s", f->sock);
}

static void server_stop(fixture *f)
{
	int64_t until = mono_now() + 5 * SEC;
	int st;

	if (f->admin)
		redisFree(f->admin);
	f->admin = NULL;
	if (f->pid <= 0)
		return;
	kill(f->pid, SIGCONT);
	kill(f->pid, SIGTERM);
	while (waitpid(f->pid, &st, WNOHANG) == 0) {
		if (mono_now() > until) {
			kill(f->pid, SIGKILL);
			waitpid(f->pid, &st, 0);
			break;
		}
		sleep_ns(2 * MSEC);
	}
	f->pid = 0;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	char tmpl[] = "/tmp/ratectl-redis-XXXXXX";

	assert_non_null(f);
	assert_non_null(mkdtemp(tmpl));
	snprintf(f->dir, sizeof f->dir, "%s", tmpl);
	snprintf(f->sock, sizeof f->sock, "%s/redis.sock", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];

	server_stop(f);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
	free(f);
	return 0;
}

/* ---- the module, briefly ------------------------------------------------- */

static rc_redis_cfg cfg_of(const char *url, const char *file, const char *env,
                           int64_t timeout)
{
	rc_redis_cfg cfg;
	char err[256];

	if (ratectl__redis_cfg_set(&cfg, url, file, env, timeout, err, sizeof err) != 0)
		fail_msg("cfg: %s", err);
	return cfg;
}

static rc_redis *open_ok(const char *url, const char *file, const char *env)
{
	rc_redis_cfg cfg = cfg_of(url, file, env, 0);
	char err[256];
	rc_redis *r;
	int rc = ratectl__redis_open(&r, &cfg, err, sizeof err);

	if (rc != 0)
		fail_msg("open %s: %d %s", url, rc, err);
	return r;
}

/* Open that must fail with code (0: any), err containing `has`. */
static void open_fails(const rc_redis_cfg *cfg, int code, const char *has)
{
	char err[256] = "";
	rc_redis *r = NULL;
	int rc = ratectl__redis_open(&r, cfg, err, sizeof err);

	if (rc == 0 || (code && rc != code) || (has && !strstr(err, has)))
		fail_msg("open: %d (wanted %d) '%s' (wanted '%s')", rc, code, err,
		         has ? has : "");
	assert_null(r);
}

static rc_take_req req(const char *budget)
{
	rc_take_req q;

	memset(&q, 0, sizeof q);
	q.budget = budget;
	return q;
}

static void add_limit(rc_take_req *q, uint32_t dim, uint64_t count, int64_t period,
                      uint64_t burst)
{
	q->lim[q->n++] = (rc_glimit){ dim, count, period, burst };
}

static void ask(rc_take_req *q, uint64_t need0, uint64_t want0, uint64_t need1,
                uint64_t want1)
{
	q->need[0] = need0;
	q->want[0] = want0;
	q->need[1] = need1;
	q->want[1] = want1;
}

static rc_take_res take(rc_redis *r, const rc_take_req *q)
{
	rc_take_res res;
	char err[256];
	int rc = ratectl__redis_take(r, q, &res, err, sizeof err);

	if (rc != 0)
		fail_msg("take %s: %d %s", q->budget, rc, err);
	return res;
}

static int take_err(rc_redis *r, const rc_take_req *q, char *err, size_t len)
{
	rc_take_res res;

	err[0] = '\0';
	return ratectl__redis_take(r, q, &res, err, len);
}

/*
 * The GCRA in integers, for limits whose T and tau are whole nanoseconds
 * (where the script's doubles are exact): the units a limit can give at
 * `now`, and the time until it can give `need`.
 */
static uint64_t room(int64_t tat, int64_t now, int64_t T, int64_t tau)
{
	int64_t debt = tat > now ? tat - now : 0;

	return debt >= tau ? 0 : (uint64_t)((tau - debt) / T);
}

static int64_t until_fits(int64_t tat, int64_t now, int64_t T, int64_t tau,
                          uint64_t need)
{
	int64_t w = (tat > now ? tat : now) - now + (int64_t)need * T - tau;

	return w > 0 ? w : 0;
}

/* ---- URLs and sizes ---------------------------------------------------- */

static void test_url_good(void **state)
{
	static const char *const good[] = {
		"redis://localhost", "redis://localhost:6379", "redis://127.0.0.1:1/0",
		"redis://h:65535/15", "redis://h:6379/16", "redis://h/2147483647",
		"redis://[::1]:6380/2", "redis://[::1]", "redis://[::ffff:10.0.0.1]/1",
		"redis://my-host.example.com:6379/", "REDIS://Host_1/1",
		"redis://10.1.2.3:7000", "unix:///tmp/redis.sock",
		"unix:///tmp/r.sock?db=5", "unix:///run/redis/redis-server.sock?db=0",
		"Unix:///a",
	};
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		err[0] = '\0';
		if (ratectl__redis_url_check(good[i], err, sizeof err) != 0)
			fail_msg("'%s' refused: %s", good[i], err);
	}
}

static void test_url_bad(void **state)
{
	static const struct { const char *url, *has; } bad[] = {
		{ "", "no URL" },
		{ "redis://user:hunter2@h:6379/0", "no password in the URL" },
		{ "redis://:hunter2@h/0", "'redis://***@h/0'" },
		{ "redis://hunter2@h/0", "password_file" },
		{ "http://h/0", "not redis://HOST:PORT/DB nor unix:///PATH" },
		{ "rediss://h/0", "TLS" },
		{ "redis:/h/0", "not redis://" },
		{ "redis://", "no host" },
		{ "redis:///0", "no host" },
		{ "redis://:6379/0", "no host" },
		{ "redis://h:0/0", "port '0' out of range" },
		{ "redis://h:65536/0", "port '65536' out of range" },
		{ "redis://h:99999/0", "'redis://h:99999/0': port '99999' out of range" },
		{ "redis://h:/0", "port '' out of range" },
		{ "redis://h:-1/0", "port" },
		{ "redis://h:+1/0", "port" },
		{ "redis://h:12ab/0", "port" },
		{ "redis://h:6379/x", "database 'x'" },
		{ "redis://h:6379/-1", "database '-1'" },
		{ "redis://h:6379/2147483648", "database" },
		{ "redis://h:6379/99999999999999999999999", "database" },
		{ "redis://h:6379/0/extra", "database '0/extra' is not a number" },
		{ "redis://h:6379/0?password=x", "no options" },
		{ "redis://h/0#frag", "unexpected '#frag'" },
		{ "redis://h?db=1", "unexpected '?db=1'" },
		{ "redis://::1/0", "brackets" },
		{ "redis://[::1/0", "no ']'" },
		{ "redis://[zz::1]/0", "'zz::1' is not an IPv6 address" },
		{ "redis://[]/0", "'' is not an IPv6 address" },
		{ "redis://[\x7f::1]/0", "'?::1' is not an IPv6 address" },
		{ "redis://[::1]x/0", "after ']'" },
		{ "redis://999.1.1.1/0", "not an IPv4 address" },
		{ "redis://1.2.3/0", "not an IPv4 address" },
		{ "redis://h h/0", "not a host name" },
		{ "redis://a..b/0", "not a host name" },
		{ "redis://.a/0", "not a host name" },
		{ "redis://h\x01/0", "'redis://h?/0'" },
		{ "unix://", "no socket path" },
		{ "unix:///", "no socket path" },
		{ "unix://?db=1", "no socket path" },
		{ "unix://host/tmp/s", "no host" },
		{ "unix://tmp/s", "no host" },
		{ "unix:///tmp/s?db=x", "database 'x'" },
		{ "unix:///tmp/s?db=", "database ''" },
		{ "unix:///tmp/s?db=1&x=2", "database" },
		{ "unix:///tmp/s?foo=1", "the only option is ?db=N" },
		{ "unix:///tmp/s#x", "unexpected '#x'" },
		{ "unix:///tmp/a\tb", "control character" },
	};
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc;

		err[0] = '\0';
		rc = ratectl__redis_url_check(bad[i].url, err, sizeof err);
		if (rc != RATECTL_EBADCONFIG || !strstr(err, bad[i].has))
			fail_msg("'%s': %d '%s' (wanted '%s')", bad[i].url, rc, err, bad[i].has);
		if (strncmp(err, "shared: ", 8) != 0)
			fail_msg("'%s': message '%s' does not say 'shared: '", bad[i].url, err);
		/* A password in a URL never reaches a message. */
		if (strstr(err, "hunter2"))
			fail_msg("'%s': the message shows the password: %s", bad[i].url, err);
	}
	assert_int_equal(ratectl__redis_url_check(NULL, err, sizeof err), RATECTL_EBADCONFIG);
	/* err may be NULL or tiny: never written past. */
	assert_int_equal(ratectl__redis_url_check("x", NULL, 0), RATECTL_EBADCONFIG);
	memset(err, 'Z', sizeof err);
	assert_int_equal(ratectl__redis_url_check("redis://h:99999/0", err, 8),
	                 RATECTL_EBADCONFIG);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(err[8], 'Z');
}

/* "redis://" + a host name + "/0", len bytes in all. */
static char *url_of_len(size_t len)
{
	char *u = malloc(len + 1);
	size_t i;

	assert_non_null(u);
	assert_true(len >= 11);
	memcpy(u, "redis://", 8);
	for (i = 8; i < len - 2; i++)
		u[i] = (i - 8) % 50 == 49 ? '.' : 'a';
	if (u[len - 3] == '.')
		u[len - 3] = 'b';
	memcpy(u + len - 2, "/0", 3);
	return u;
}

static void test_url_sizes(void **state)
{
	static const size_t lens[] = { 254, 255, 256, 257, 100000 };
	char err[256], path[RC_REDIS_PATH_MAX + 40];
	rc_redis_cfg cfg;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		char *u = url_of_len(lens[i]);
		int want = lens[i] < RC_REDIS_URL_MAX ? 0 : RATECTL_EBADCONFIG;

		assert_int_equal(strlen(u), lens[i]);
		err[0] = '\0';
		if (ratectl__redis_url_check(u, err, sizeof err) != want)
			fail_msg("a URL of %zu bytes: '%s'", lens[i], err);
		if (want && !strstr(err, "longer than 255 bytes"))
			fail_msg("a URL of %zu bytes: '%s'", lens[i], err);
		if (want && strlen(err) > 200)
			fail_msg("a message of %zu bytes for a long URL", strlen(err));
		/* the same through the configuration: kept whole, or refused */
		if (ratectl__redis_cfg_set(&cfg, u, NULL, NULL, 0, err, sizeof err) != want)
			fail_msg("cfg: a URL of %zu bytes: '%s'", lens[i], err);
		if (!want)
			assert_string_equal(cfg.url, u);
		free(u);
	}
	/* A unix socket path: sun_path holds 107 bytes. */
	memcpy(path, "unix://", 7);
	memset(path + 7, 's', 108);
	path[7] = '/';
	path[7 + 107] = '\0';
	assert_int_equal(ratectl__redis_url_check(path, err, sizeof err), 0);
	path[7 + 107] = 's';
	path[7 + 108] = '\0';
	assert_int_equal(ratectl__redis_url_check(path, err, sizeof err), RATECTL_EBADCONFIG);
	assert_non_null(strstr(err, "socket path of 108 bytes: at most 107"));
}

static void test_cfg_sizes(void **state)
{
	static const size_t plens[] = { 254, 255, 256, 257, 100000 };
	static const size_t elens[] = { 62, 63, 64, 65, 100000 };
	char err[256];
	rc_redis_cfg cfg;
	size_t i;

	(void)state;
	for (i = 0; i < 5; i++) {
		char *s = malloc(plens[i] + 1);
		int want = plens[i] < RC_REDIS_PATH_MAX ? 0 : RATECTL_EBADCONFIG;

		memset(s, 'p', plens[i]);
		s[0] = '/';
		s[plens[i]] = '\0';
		err[0] = '\0';
		if (ratectl__redis_cfg_set(&cfg, "redis://h", s, NULL, 0, err,
		                           sizeof err) != want)
			fail_msg("a password file of %zu bytes: '%s'", plens[i], err);
		if (want)
			assert_non_null(strstr(err, "password file '/ppp"));
		else
			assert_string_equal(cfg.password_file, s);
		if (want)
			assert_non_null(strstr(err, "longer than 255 bytes"));
		free(s);
	}
	for (i = 0; i < 5; i++) {
		char *s = malloc(elens[i] + 1);
		int want = elens[i] < RC_REDIS_ENV_MAX ? 0 : RATECTL_EBADCONFIG;

		memset(s, 'E', elens[i]);
		s[elens[i]] = '\0';
		if (ratectl__redis_cfg_set(&cfg, "redis://h", NULL, s, 0, err,
		                           sizeof err) != want)
			fail_msg("a variable of %zu bytes: '%s'", elens[i], err);
		if (want)
			assert_non_null(strstr(err, "longer than 63 bytes"));
		else
			assert_string_equal(cfg.password_env, s);
		free(s);
	}
	assert_int_equal(ratectl__redis_cfg_set(&cfg, "redis://h", "/f", "V", 0, err,
	                                        sizeof err), RATECTL_EBADCONFIG);
	assert_non_null(strstr(err, "not both"));
	assert_int_equal(ratectl__redis_cfg_set(&cfg, "redis://h", NULL, "1X", 0, err,
	                                        sizeof err), RATECTL_EBADCONFIG);
	assert_int_equal(ratectl__redis_cfg_set(&cfg, "redis://h", NULL, "A-B", 0, err,
	                                        sizeof err), RATECTL_EBADCONFIG);
	assert_non_null(strstr(err, "'A-B' is not the name of an environment variable"));
	assert_int_equal(ratectl__redis_cfg_set(&cfg, "redis://h", NULL, NULL, -1, err,
	                                        sizeof err), RATECTL_EBADCONFIG);
	assert_int_equal(ratectl__redis_cfg_set(&cfg, "ftp://h", NULL, NULL, 0, err,
	                                        sizeof err), RATECTL_EBADCONFIG);

	/* Fields filled by hand without a terminating NUL. */
	cfg = cfg_of("unix:///x", NULL, NULL, 0);
	memset(cfg.url, 'u', sizeof cfg.url);
	open_fails(&cfg, RATECTL_EBADCONFIG, "not terminated");
	cfg = cfg_of("unix:///x", NULL, NULL, 0);
	memset(cfg.password_file, 'f', sizeof cfg.password_file);
	open_fails(&cfg, RATECTL_EBADCONFIG, "not terminated");
	cfg = cfg_of("unix:///x", NULL, NULL, 0);
	memset(cfg.password_env, 'E', sizeof cfg.password_env);
	open_fails(&cfg, RATECTL_EBADCONFIG, "not terminated");
}

/* ---- passwords -------------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd;

	unlink(path);               /* it may be read-only by now */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

static void take_once(rc_redis *r, const char *budget)
{
	rc_take_req q = req(budget);
	rc_take_res res;

	add_limit(&q, RATECTL_REQUESTS, 10, SEC, 5);
	ask(&q, 1, 1, 0, 0);
	res = take(r, &q);
	assert_int_equal(res.got[0], 1);
}

static void test_password_file(void **state)
{
	static const char *const extra[] = { "--requirepass", PW, NULL };
	fixture *f = *state;
	char file[128], dir2[128], fifo[128], longp[RC_REDIS_PATH_MAX + 1];
	rc_redis_cfg cfg;
	rc_redis *r;

	f->password = PW;
	server_start(f, extra);
	snprintf(file, sizeof file, "%s/pw", f->dir);

	write_file(file, PW "\n", 0600);
	r = open_ok(f->url, file, NULL);
	take_once(r, "pwfile");
	assert_int_equal(ratectl__redis_commands(r), 3);   /* AUTH, SCRIPT LOAD, EVALSHA */
	ratectl__redis_close(r);

	write_file(file, PW "  \r\nsecond line\n", 0400);  /* trailing spaces go */
	ratectl__redis_close(open_ok(f->url, file, NULL));
	write_file(file, PW, 0600);                         /* no newline at all */
	ratectl__redis_close(open_ok(f->url, file, NULL));

	write_file(file, PW "\n", 0644);
	cfg = cfg_of(f->url, file, NULL, 0);
	open_fails(&cfg, RATECTL_EBADCONFIG, "mode 0644");
	open_fails(&cfg, RATECTL_EBADCONFIG, file);
	write_file(file, PW "\n", 0604);
	open_fails(&cfg, RATECTL_EBADCONFIG, "chmod 600");
	write_file(file, PW "\n", 0620);       /* writable by the group */
	open_fails(&cfg, RATECTL_EBADCONFIG, "mode 0620");

	write_file(file, "\n", 0600);
	open_fails(&cfg, RATECTL_EBADCONFIG, "is empty");

	/* The wrong password: refused by the server, said so, not shown. */
	write_file(file, "not-" PW "\n", 0600);
	open_fails(&cfg, -EACCES, "AUTH with the password from file");
	open_fails(&cfg, -EACCES, "WRONGPASS");
	{
		char err[256];

		assert_int_equal(ratectl__redis_open(&r, &cfg, err, sizeof err), -EACCES);
		assert_null(strstr(err, "not-" PW));
	}

	/* No such file; a directory; a FIFO (opening it must not block). */
	snprintf(dir2, sizeof dir2, "%s/none", f->dir);
	cfg = cfg_of(f->url, dir2, NULL, 0);
	open_fails(&cfg, RATECTL_EBADCONFIG, "No such file");
	mkdir(dir2, 0700);
	open_fails(&cfg, RATECTL_EBADCONFIG, "is not a regular file");
	snprintf(fifo, sizeof fifo, "%s/fifo", f->dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	cfg = cfg_of(f->url, fifo, NULL, 0);
	open_fails(&cfg, RATECTL_EBADCONFIG, "is not a regular file");

	/* No password at all: the server says it wants one. */
	cfg = cfg_of(f->url, NULL, NULL, 0);
	open_fails(&cfg, -EACCES, "NOAUTH");

	/* A password file whose path fills the field exactly: 255 bytes. */
	snprintf(longp, sizeof longp, "%s", f->dir);
	while (RC_REDIS_PATH_MAX - 1 - strlen(longp) > 101) {
		size_t l = strlen(longp);

		longp[l] = '/';
		memset(longp + l + 1, 'd', 99);
		longp[l + 100] = '\0';
		assert_int_equal(mkdir(longp, 0700), 0);
	}
	{
		size_t l = strlen(longp), rest = RC_REDIS_PATH_MAX - 1 - l - 1;

		longp[l] = '/';
		memset(longp + l + 1, 'p', rest);
		longp[l + 1 + rest] = '\0';
	}
	assert_int_equal(strlen(longp), RC_REDIS_PATH_MAX - 1);
	write_file(longp, PW "\n", 0600);
	r = open_ok(f->url, longp, NULL);
	take_once(r, "longpath");
	ratectl__redis_close(r);
}

static void test_password_env(void **state)
{
	static const char *const extra[] = { "--requirepass", PW, NULL };
	fixture *f = *state;
	char name[RC_REDIS_ENV_MAX];
	rc_redis_cfg cfg;
	rc_redis *r;

	f->password = PW;
	server_start(f, extra);
	assert_int_equal(setenv("RC_TEST_REDIS_PW", PW, 1), 0);
	r = open_ok(f->url, NULL, "RC_TEST_REDIS_PW");
	take_once(r, "pwenv");
	ratectl__redis_close(r);

	/* a name of 63 bytes, the most the field holds */
	memset(name, 'X', sizeof name - 1);
	memcpy(name, "RC_", 3);
	name[sizeof name - 1] = '\0';
	assert_int_equal(setenv(name, PW, 1), 0);
	r = open_ok(f->url, NULL, name);
	take_once(r, "pwenv63");
	ratectl__redis_close(r);
	unsetenv(name);

	cfg = cfg_of(f->url, NULL, "RC_TEST_REDIS_PW", 0);
	assert_int_equal(setenv("RC_TEST_REDIS_PW", "wrong", 1), 0);
	open_fails(&cfg, -EACCES, "AUTH with the password from variable RC_TEST_REDIS_PW");
	assert_int_equal(setenv("RC_TEST_REDIS_PW", "", 1), 0);
	open_fails(&cfg, RATECTL_EBADCONFIG, "is empty");
	unsetenv("RC_TEST_REDIS_PW");
	open_fails(&cfg, RATECTL_EBADCONFIG, "RC_TEST_REDIS_PW (the password) is not set");
}

/* ---- the script's arithmetic ---------------------------------------- */

/* One requests limit: count a second, burst. */
static rc_take_req req_rate(const char *budget, uint64_t count, uint64_t burst)
{
	rc_take_req q = req(budget);

	add_limit(&q, RATECTL_REQUESTS, count, SEC, burst);
	return q;
}

static void test_burst_then_rate(void **state)
{
	fixture *f = *state;
	rc_redis *r;
	rc_take_req q = req_rate("burst", 10, 5);
	rc_take_res r1, r2, r3, r4;
	int64_t tau = 5 * T10;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 1, 100, 0, 0);

	/* A fresh budget: its burst at once, nothing more. */
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 5);
	assert_int_equal(r1.got[1], 0);
	assert_int_equal(r1.wait_ns, 0);
	assert_int_equal(r1.tat[0], r1.now + 5 * T10);
	assert_int_equal(r1.restored, 0);
	assert_int_equal(r1.sig_differs, 0);
	assert_int_equal(r1.cool, 0);
	assert_true(r1.now > 1500000000LL * SEC);     /* the epoch, not a boot */

	/* 250 ms later by the server's clock: floor(elapsed / T) units. */
	sleep_ns(250 * MSEC);
	r2 = take(r, &q);
	assert_true(r2.now - r1.now >= 250 * MSEC);
	assert_int_equal(r2.got[0], room(r1.tat[0], r2.now, T10, tau));
	if (r2.now - r1.now < 300 * MSEC)
		assert_int_equal(r2.got[0], 2);
	assert_int_equal(r2.tat[0], r1.tat[0] + (int64_t)r2.got[0] * T10);

	/* At once again: nothing, and the exact time until one unit fits. */
	r3 = take(r, &q);
	if (room(r2.tat[0], r3.now, T10, tau) == 0) {
		assert_int_equal(r3.got[0], 0);
		assert_int_equal(r3.wait_ns, until_fits(r2.tat[0], r3.now, T10, tau, 1));
		assert_int_equal(r3.tat[0], r2.tat[0]);
		assert_true(r3.wait_ns > 0 && r3.wait_ns <= T10);
		sleep_ns(r3.wait_ns);
	}
	r4 = take(r, &q);
	assert_true(r4.got[0] >= 1);
	assert_int_equal(r4.got[0], room(r3.tat[0], r4.now, T10, tau));
	ratectl__redis_close(r);
}

static void test_all_or_nothing(void **state)
{
	fixture *f = *state;
	rc_take_req q = req("aon");
	rc_take_res r1, r2, r3;
	int64_t Tt = SEC / 1000;       /* tokens: 1000 a second, burst 1000 */
	rc_redis *r;
	uint64_t kr, kt;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	add_limit(&q, RATECTL_REQUESTS, 10, SEC, 10);
	add_limit(&q, RATECTL_TOKENS, 1000, SEC, 1000);

	ask(&q, 1, 1, 900, 900);
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 1);
	assert_int_equal(r1.got[1], 900);
	assert_int_equal(r1.tat[0], r1.now + T10);
	assert_int_equal(r1.tat[1], r1.now + 900 * Tt);

	/* Requests would fit, tokens not: neither is granted, and the wait
	 * is the tokens limit's. */
	ask(&q, 1, 5, 600, 800);
	r2 = take(r, &q);
	kr = room(r1.tat[0], r2.now, T10, SEC);
	kt = room(r1.tat[1], r2.now, Tt, SEC);
	assert_true(kr >= 5);
	if (kt < 600) {
		assert_int_equal(r2.got[0], 0);
		assert_int_equal(r2.got[1], 0);
		assert_int_equal(r2.tat[0], r1.tat[0]);
		assert_int_equal(r2.tat[1], r1.tat[1]);
		assert_int_equal(r2.wait_ns, until_fits(r1.tat[1], r2.now, Tt, SEC, 600));
	} else {
		fail_msg("the machine took %lld ms between two calls",
		         (long long)((r2.now - r1.now) / MSEC));
	}

	/* A need that fits: each dimension gets the most up to want. */
	ask(&q, 1, 5, 50, 800);
	r3 = take(r, &q);
	kr = room(r2.tat[0], r3.now, T10, SEC);
	kt = room(r2.tat[1], r3.now, Tt, SEC);
	assert_int_equal(r3.got[0], kr < 5 ? kr : 5);
	assert_int_equal(r3.got[1], kt < 800 ? kt : 800);
	assert_int_equal(r3.tat[1], (r2.tat[1] > r3.now ? r2.tat[1] : r3.now) +
	                 (int64_t)r3.got[1] * Tt);

	/* A dimension with no limit is granted what is asked. */
	q = req_rate("nolimit", 10, 10);
	ask(&q, 1, 2, 400, 500);
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 2);
	assert_int_equal(r1.got[1], 500);
	ratectl__redis_close(r);
}

static void test_want_capped(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("capped", 10, 10);
	rc_take_res r1, r2;
	rc_redis *r;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 1, 3, 0, 0);
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 3);
	assert_int_equal(r1.tat[0], r1.now + 3 * T10);
	ask(&q, 3, 3, 0, 0);
	r2 = take(r, &q);
	assert_int_equal(r2.got[0], 3);
	assert_int_equal(r2.tat[0], r1.tat[0] + 3 * T10);
	/* want 0, need 0: nothing taken, nothing refused */
	ask(&q, 0, 0, 0, 0);
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 0);
	assert_int_equal(r1.wait_ns, 0);
	assert_int_equal(r1.tat[0], r2.tat[0]);
	ratectl__redis_close(r);
}

static void test_give_back(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("give", 10, 5);
	rc_take_res r1, r2, r3;
	rc_redis *r;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 1, 5, 0, 0);
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 5);

	/* Three back: the TAT moves back 3 T (not before now). */
	ask(&q, 0, 0, 0, 0);
	q.give[0] = 3;
	r2 = take(r, &q);
	assert_int_equal(r2.got[0], 0);
	assert_int_equal(r2.tat[0], r1.tat[0] - 3 * T10 > r2.now ?
	                 r1.tat[0] - 3 * T10 : r2.now);
	q.give[0] = 0;
	ask(&q, 1, 100, 0, 0);
	r3 = take(r, &q);
	assert_int_equal(r3.got[0], room(r2.tat[0], r3.now, T10, 5 * T10));
	assert_true(r3.got[0] >= 3);

	/* More back than was ever taken: full, never a credit beyond it. */
	ask(&q, 0, 0, 0, 0);
	q.give[0] = 1000000;
	r2 = take(r, &q);
	assert_int_equal(r2.tat[0], r2.now);
	q.give[0] = 0;
	ask(&q, 1, 100, 0, 0);
	r3 = take(r, &q);
	assert_int_equal(r3.got[0], 5);
	/* giving tokens back leaves a requests limit alone */
	ask(&q, 0, 0, 0, 0);
	q.give[1] = 7;
	r1 = take(r, &q);
	assert_int_equal(r1.tat[0], r3.tat[0]);
	ratectl__redis_close(r);
}

static void test_cooldown(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("cool", 10, 5);
	rc_take_res r0, r1, r2, r3;
	int64_t end;
	rc_redis *r;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 1, 2, 0, 0);
	r0 = take(r, &q);
	assert_int_equal(r0.got[0], 2);

	/* A 429 learned here: nothing is granted until its end; a unit given
	 * back is still taken back. */
	end = r0.now + 300 * MSEC + 7;
	q.push_cool = end;
	q.give[0] = 1;
	ask(&q, 1, 5, 0, 0);
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 0);
	assert_int_equal(r1.cool, end);
	assert_int_equal(r1.wait_ns, end - r1.now);
	assert_int_equal(r1.tat[0], r0.tat[0] - T10 > r1.now ? r0.tat[0] - T10 : r1.now);

	/* Stored: another call without it sees it too; an earlier cooldown
	 * carried or pushed changes nothing. */
	q.push_cool = r0.now + 100 * MSEC;
	q.carried_cool = r0.now + 50 * MSEC;
	q.give[0] = 0;
	r2 = take(r, &q);
	assert_int_equal(r2.got[0], 0);
	assert_int_equal(r2.cool, end);
	assert_int_equal(r2.wait_ns, end - r2.now);

	/* A cooldown years ahead (a bad header): held to a day, and every
	 * reply stays in range. */
	{
		rc_take_req q2 = req_rate("coolyears", 10, 5);

		q2.push_cool = r0.now + 3 * 365 * 86400 * SEC;
		ask(&q2, 1, 1, 0, 0);
		r3 = take(r, &q2);
		assert_int_equal(r3.cool, r3.now + 86400 * SEC);
		q2.push_cool = 0;
		r3 = take(r, &q2);
		assert_true(r3.cool > r3.now && r3.cool <= r3.now + 86400 * SEC);
		assert_int_equal(r3.got[0], 0);
	}

	/* After its end: granted by the GCRA alone. */
	sleep_ns(r2.wait_ns);
	q.push_cool = q.carried_cool = 0;
	r3 = take(r, &q);
	assert_true(r3.now >= end);
	assert_int_equal(r3.cool, 0);
	assert_int_equal(r3.got[0], room(r2.tat[0], r3.now, T10, 5 * T10) < 5 ?
	                 room(r2.tat[0], r3.now, T10, 5 * T10) : 5);
	assert_true(r3.got[0] >= 1);
	ratectl__redis_close(r);
}

static void test_push_tat(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("push", 10, 10);
	rc_take_res r0, r1, r2, r3;
	rc_redis *r;
	int64_t tat;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 0, 0, 0, 0);
	r0 = take(r, &q);
	assert_int_equal(r0.tat[0], r0.now);

	/* A provider says 2 are left: the TAT becomes at least now + 8 T. */
	q.push_tat[0] = r0.now + 8 * T10;
	ask(&q, 1, 100, 0, 0);
	r1 = take(r, &q);
	tat = q.push_tat[0] > r1.now ? q.push_tat[0] : r1.now;
	assert_int_equal(r1.got[0], room(tat, r1.now, T10, SEC));
	assert_int_equal(r1.tat[0], tat + (int64_t)r1.got[0] * T10);
	assert_true(r1.got[0] >= 2 && r1.got[0] <= 3);

	/* A lower push tightens nothing. */
	q.push_tat[0] = r0.now + 1;
	ask(&q, 0, 0, 0, 0);
	r2 = take(r, &q);
	assert_int_equal(r2.tat[0], r1.tat[0]);

	/* A push beyond now + tau is held there: a TAT never owes more
	 * than the burst. */
	q.push_tat[0] = r0.now + 3600 * SEC;
	r3 = take(r, &q);
	assert_int_equal(r3.tat[0], r3.now + SEC);
	ratectl__redis_close(r);
}

static void test_carried_after_flush(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("carry", 10, 5);
	rc_take_res r1, r2, r3;
	rc_redis *r;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 1, 100, 0, 0);
	r1 = take(r, &q);
	assert_int_equal(r1.got[0], 5);

	/* Redis restarted empty: the host's last known TAT comes back, and
	 * with it no fresh burst. */
	admin_ok(f, "FLUSHALL", NULL);
	q.carried_tat[0] = r1.tat[0];
	q.carried_gen = r1.gen;
	r2 = take(r, &q);
	assert_int_equal(r2.restored, 1);
	assert_true(r2.gen > r1.gen);
	assert_int_equal(r2.got[0], room(r1.tat[0], r2.now, T10, 5 * T10));
	assert_true(r2.got[0] < 5);
	if (r2.got[0] == 0)
		assert_int_equal(r2.wait_ns, until_fits(r1.tat[0], r2.now, T10, 5 * T10, 1));
	/* The hash exists now: not restored again, the later TAT kept. */
	q.carried_tat[0] = r1.now;
	q.carried_gen = r2.gen;
	r3 = take(r, &q);
	assert_int_equal(r3.restored, 0);
	assert_true(r3.tat[0] >= r2.tat[0]);

	/* Without carried state, an emptied Redis gives a fresh burst: what
	 * the carried state is for. */
	admin_ok(f, "FLUSHALL", NULL);
	q.carried_tat[0] = 0;
	q.carried_gen = 0;
	r2 = take(r, &q);
	assert_int_equal(r2.restored, 0);
	assert_int_equal(r2.got[0], 5);

	/* A carried cooldown comes back the same way. */
	admin_ok(f, "FLUSHALL", NULL);
	q.carried_cool = r2.now + 400 * MSEC;
	q.carried_gen = r2.gen;
	r3 = take(r, &q);
	assert_int_equal(r3.restored, 1);
	assert_int_equal(r3.got[0], 0);
	assert_int_equal(r3.cool, q.carried_cool);
	assert_int_equal(r3.wait_ns, q.carried_cool - r3.now);
	ratectl__redis_close(r);
}

/* Two hosts: A gives back what it took; B's next call carries its own,
 * older view of the TAT (from before A gave back).  That view must not
 * undo the give back: B gets the units A returned. */
static void test_carried_never_undoes_give_back(void **state)
{
	fixture *f = *state;
	rc_take_req a = req_rate("giveback", 10, 10), b = req_rate("giveback", 10, 10);
	rc_take_res ra, rb, ra2, rb2;
	rc_redis *r;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&a, 1, 10, 0, 0);
	ra = take(r, &a);                  /* A holds all 10 */
	assert_int_equal(ra.got[0], 10);
	ask(&b, 0, 0, 0, 0);
	rb = take(r, &b);                  /* B syncs: sees the bucket empty */
	assert_int_equal(rb.got[0], 0);
	a.give[0] = 10;                    /* A goes idle: all back */
	a.carried_tat[0] = ra.tat[0];
	a.carried_gen = ra.gen;
	ask(&a, 0, 0, 0, 0);
	ra2 = take(r, &a);
	assert_true(ra2.tat[0] < rb.tat[0]);
	b.carried_tat[0] = rb.tat[0];      /* B's view: before the give back */
	b.carried_gen = rb.gen;
	ask(&b, 1, 10, 0, 0);
	rb2 = take(r, &b);
	assert_int_equal(rb2.restored, 0);
	assert_true(rb2.got[0] >= 9);      /* what A gave back (and a unit of rate) */
	ratectl__redis_close(r);
}

static void test_noscript(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("noscript", 10, 5);
	rc_take_res res;
	rc_redis *r;
	uint64_t c0;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	c0 = ratectl__redis_commands(r);
	assert_int_equal(c0, 1);                /* SCRIPT LOAD */
	ask(&q, 1, 1, 0, 0);
	res = take(r, &q);
	assert_int_equal(res.got[0], 1);
	assert_int_equal(ratectl__redis_commands(r), c0 + 1);
	admin_ok(f, "SCRIPT FLUSH", NULL);
	res = take(r, &q);                      /* EVALSHA, SCRIPT LOAD, EVALSHA */
	assert_int_equal(res.got[0], 1);
	assert_int_equal(ratectl__redis_commands(r), c0 + 4);
	res = take(r, &q);
	assert_int_equal(res.got[0], 1);
	assert_int_equal(ratectl__redis_commands(r), c0 + 5);
	ratectl__redis_close(r);
}

static void test_sig_differs(void **state)
{
	fixture *f = *state;
	rc_take_req a = req_rate("sig", 10, 5), b = req_rate("sig", 20, 5);
	rc_redis *ra, *rb;

	server_start(f, NULL);
	ra = open_ok(f->url, NULL, NULL);
	rb = open_ok(f->url, NULL, NULL);
	ask(&a, 1, 1, 0, 0);
	ask(&b, 1, 1, 0, 0);
	assert_int_equal(take(ra, &a).sig_differs, 0);
	assert_int_equal(take(ra, &a).sig_differs, 0);
	assert_int_equal(take(rb, &b).sig_differs, 1);   /* A's limits were there */
	assert_int_equal(take(ra, &a).sig_differs, 1);   /* B's were */
	assert_int_equal(take(ra, &a).sig_differs, 0);
	b = req_rate("sig", 10, 6);                        /* only the burst differs */
	ask(&b, 1, 1, 0, 0);
	assert_int_equal(take(rb, &b).sig_differs, 1);
	ratectl__redis_close(ra);
	ratectl__redis_close(rb);
}

static void test_expire(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("exp", 10, 5);
	rc_redis *r;
	long long ttl;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 1, 1, 0, 0);
	take(r, &q);
	ttl = admin_int(f, "PTTL %s", "{rc:exp}");
	assert_true(ttl > 61000 && ttl <= 62000);    /* 2 x 1 s + 60 s */
	q = req("expday");
	add_limit(&q, RATECTL_REQUESTS, 10, SEC, 5);
	add_limit(&q, RATECTL_TOKENS, 86400, RATECTL_PERIOD_MAX, 1000);
	ask(&q, 1, 1, 0, 0);
	take(r, &q);
	ttl = admin_int(f, "PTTL %s", "{rc:expday}");
	assert_true(ttl > 172860000LL - 1000 && ttl <= 172860000LL);
	ratectl__redis_close(r);
}

/* The hash as another day left it: stored times count from a base two
 * days back (or an hour ahead: the server's clock went back). */
static void test_rebase(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("rb", 10, 10);
	rc_take_res r0, r1;
	rc_redis *r;
	char base[32], tat[32];
	int64_t base_us, abs_tat;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 0, 0, 0, 0);
	r0 = take(r, &(rc_take_req){ .budget = "clock", .n = 1,
	                             .lim = { { RATECTL_REQUESTS, 10, SEC, 10 } } });
	base_us = r0.now / 1000 - 2 * 86400 * 1000000LL;
	abs_tat = r0.now + 700 * MSEC + 123;
	snprintf(base, sizeof base, "%lld", (long long)base_us);
	snprintf(tat, sizeof tat, "%lld", (long long)(abs_tat - base_us * 1000));
	{
		redisReply *rep = admin(f, "HSET {rc:rb} base %s tat1 %s cool 0", base, tat);

		assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
		freeReplyObject(rep);
	}
	r1 = take(r, &q);
	assert_int_equal(r1.tat[0], abs_tat);          /* the same instant, exactly */
	assert_int_equal(r1.now % 1000, 0);            /* now is the new base */
	assert_int_equal(admin_int(f, "HGET %s base", "{rc:rb}"), r1.now / 1000);
	assert_int_equal(admin_int(f, "HGET %s tat1", "{rc:rb}"), abs_tat - r1.now);
	ask(&q, 1, 100, 0, 0);
	r0 = take(r, &q);
	assert_int_equal(r0.got[0], room(abs_tat, r0.now, T10, SEC));

	/* A base an hour ahead of the server's clock: counted from now, the
	 * TAT held at now + tau. */
	snprintf(base, sizeof base, "%lld", (long long)(r0.now / 1000 + 3600000000LL));
	{
		redisReply *rep = admin(f, "HSET {rc:rb} base %s tat1 500000000", base);

		freeReplyObject(rep);
	}
	ask(&q, 0, 0, 0, 0);
	r1 = take(r, &q);
	assert_int_equal(r1.tat[0], r1.now + SEC);
	assert_int_equal(r1.now % 1000, 0);
	ratectl__redis_close(r);
}

/* T = 1/3 s and 1/7 s are not whole nanoseconds: a fresh budget still
 * gives its whole burst, and over any run no more than burst + t / T. */
static void check_bound(rc_redis *r, const char *budget, uint64_t count,
                        uint64_t burst)
{
	rc_take_req q = req_rate(budget, count, burst);
	rc_take_res first, res, prev;
	int64_t end, gap = 0;
	uint64_t total;
	__int128 bound;

	ask(&q, 0, UINT64_MAX, 0, 0);      /* all there is, every time */
	first = prev = take(r, &q);
	assert_int_equal(first.got[0], burst);
	total = first.got[0];
	end = mono_now() + 700 * MSEC;
	do {
		sleep_ns(7 * MSEC);
		res = take(r, &q);
		total += res.got[0];
		if (res.now - prev.now > gap)
			gap = res.now - prev.now;
		prev = res;
	} while (mono_now() < end);
	/* At most burst + elapsed * count / period; at least one less, unless
	 * the bucket filled up between two calls (a gap longer than tau). */
	bound = (__int128)(res.now - first.now) * count / SEC + burst;
	if ((__int128)total > bound ||
	    ((__int128)total < bound - 1 && (__int128)gap * count < (__int128)burst * SEC))
		fail_msg("%s: %llu granted in %lld ns, bound %lld", budget,
		         (unsigned long long)total, (long long)(res.now - first.now),
		         (long long)bound);
}

static void test_fractional_T(void **state)
{
	fixture *f = *state;
	rc_redis *r;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	check_bound(r, "third", 3, 3);
	/* (1e9 / 3 * 7) / (1e9 / 3) is 6.999...: floor alone gives 6 */
	check_bound(r, "third7", 3, 7);
	check_bound(r, "seventh", 7, 3);
	check_bound(r, "many", 1000000, 1000000);
	ratectl__redis_close(r);
}

static void test_bad_request(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("badreq", 10, 5);
	char err[256];
	rc_redis *r;
	uint64_t c0;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	c0 = ratectl__redis_commands(r);
	ask(&q, 6, 6, 0, 0);
	assert_int_equal(take_err(r, &q, err, sizeof err), RATECTL_ETOOBIG);
	assert_non_null(strstr(err, "burst 5"));
	ask(&q, 2, 1, 0, 0);
	assert_int_equal(take_err(r, &q, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "need 2 is more than want 1"));
	ask(&q, 1, 1, 0, 0);
	q.budget = "bad name";
	assert_int_equal(take_err(r, &q, err, sizeof err), RATECTL_EBADNAME);
	q.budget = "badreq";
	q.n = 0;
	assert_int_equal(take_err(r, &q, err, sizeof err), -EINVAL);
	q = req("badreq");
	add_limit(&q, RATECTL_REQUESTS, 10, SEC, 0);
	assert_int_equal(take_err(r, &q, err, sizeof err), -EINVAL);
	q = req("badreq");
	add_limit(&q, 7, 10, SEC, 5);
	assert_int_equal(take_err(r, &q, err, sizeof err), -EINVAL);
	q = req("badreq");     /* a burst of 101 days of its rate */
	add_limit(&q, RATECTL_REQUESTS, 1, RATECTL_PERIOD_MAX, 101);
	assert_int_equal(take_err(r, &q, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "100 days"));
	q = req("badreq");     /* 100 days exactly is fine */
	add_limit(&q, RATECTL_REQUESTS, 1, RATECTL_PERIOD_MAX, 100);
	q.carried_tat[0] = -1;
	assert_int_equal(take_err(r, &q, err, sizeof err), -EINVAL);
	assert_int_equal(ratectl__redis_commands(r), c0);     /* nothing sent */
	q.carried_tat[0] = 0;
	ask(&q, 1, UINT64_MAX, 0, 0);         /* as many as there are */
	assert_int_equal(take(r, &q).got[0], 100);
	ratectl__redis_close(r);
}

/* ---- faults -------------------------------------------------------------- */

static void test_wrong_type(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("wt", 10, 5);
	char err[256];
	rc_redis *r;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	ask(&q, 1, 1, 0, 0);
	admin_ok(f, "SET {rc:wt} %s", "a string");
	assert_int_equal(take_err(r, &q, err, sizeof err), RATECTL_EPARSE);
	assert_non_null(strstr(err, "budget wt"));
	assert_non_null(strstr(err, "WRONGTYPE"));
	/* an error reply is not a failed connection */
	take_once(r, "other");

	admin_ok(f, "HSET {rc:wt2} base %s", "abc");
	q.budget = "wt2";
	assert_int_equal(take_err(r, &q, err, sizeof err), RATECTL_EPARSE);
	assert_non_null(strstr(err, "field base is not an integer: abc"));
	admin_ok(f, "HSET {rc:wt3} base 1700000000000000 tat1 %s", "1.5");
	q.budget = "wt3";
	assert_int_equal(take_err(r, &q, err, sizeof err), RATECTL_EPARSE);
	assert_non_null(strstr(err, "field tat1 is not an integer: 1.5"));
	admin_ok(f, "HSET {rc:wt4} base 1700000000000000 cool %s", "inf");
	q.budget = "wt4";
	assert_int_equal(take_err(r, &q, err, sizeof err), RATECTL_EPARSE);
	assert_non_null(strstr(err, "field cool"));
	take_once(r, "other2");
	ratectl__redis_close(r);
}

static void test_sigstop(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("stop", 10, 5);
	rc_redis_cfg cfg;
	rc_redis *r, *r2;
	char err[256];
	int64_t t0, dt;
	int rc;

	server_start(f, NULL);
	cfg = cfg_of(f->url, NULL, NULL, 200 * MSEC);
	assert_int_equal(ratectl__redis_open(&r, &cfg, err, sizeof err), 0);
	ask(&q, 1, 1, 0, 0);
	take(r, &q);

	assert_int_equal(kill(f->pid, SIGSTOP), 0);
	t0 = mono_now();
	rc = take_err(r, &q, err, sizeof err);
	dt = mono_now() - t0;
	if (rc != -ETIMEDOUT && rc != -EAGAIN)
		fail_msg("take from a stopped server: %d %s", rc, err);
	assert_non_null(strstr(err, "EVALSHA: no reply within the timeout (200 ms)"));
	if (dt < 199 * MSEC || dt > 600 * MSEC)
		fail_msg("a 200 ms timeout took %lld ms", (long long)(dt / MSEC));
	printf("# take from a SIGSTOPped server: %s after %.1f ms\n",
	       strerror(-rc), (double)dt / MSEC);
	/* the failed connection is not used again */
	assert_int_equal(take_err(r, &q, err, sizeof err), -ENOTCONN);
	ratectl__redis_close(r);

	/* Opening while it is stopped: connect succeeds (the kernel's
	 * backlog), SCRIPT LOAD times out. */
	t0 = mono_now();
	rc = ratectl__redis_open(&r2, &cfg, err, sizeof err);
	dt = mono_now() - t0;
	assert_int_equal(rc, -ETIMEDOUT);
	assert_non_null(strstr(err, "SCRIPT"));
	if (dt > 600 * MSEC)
		fail_msg("opening with a 200 ms timeout took %lld ms", (long long)(dt / MSEC));

	assert_int_equal(kill(f->pid, SIGCONT), 0);
	assert_int_equal(ratectl__redis_open(&r, &cfg, err, sizeof err), 0);
	take(r, &q);
	ratectl__redis_close(r);
}

static void test_killed(void **state)
{
	fixture *f = *state;
	rc_take_req q = req_rate("kill", 10, 5);
	rc_redis_cfg cfg;
	rc_redis *r;
	char err[256];
	int64_t t0, dt;
	int rc, st;

	server_start(f, NULL);
	cfg = cfg_of(f->url, NULL, NULL, 200 * MSEC);
	assert_int_equal(ratectl__redis_open(&r, &cfg, err, sizeof err), 0);
	ask(&q, 1, 1, 0, 0);
	take(r, &q);
	/* SIGPIPE is left as it is: a write to the dead socket would kill
	 * this process if the module raised it. */
	assert_int_equal(kill(f->pid, SIGKILL), 0);
	assert_int_equal(waitpid(f->pid, &st, 0), f->pid);
	f->pid = 0;
	t0 = mono_now();
	rc = take_err(r, &q, err, sizeof err);
	dt = mono_now() - t0;
	if (rc != -ECONNRESET && rc != -EPIPE)
		fail_msg("take from a killed server: %d %s", rc, err);
	assert_true(dt < 100 * MSEC);
	assert_int_equal(take_err(r, &q, err, sizeof err), -ENOTCONN);
	ratectl__redis_close(r);
	rc = ratectl__redis_open(&r, &cfg, err, sizeof err);
	if (rc != -ECONNREFUSED && rc != -ENOENT)
		fail_msg("open with the server gone: %d %s", rc, err);
	assert_non_null(strstr(err, "cannot connect"));
	assert_non_null(strstr(err, f->sock));
}

/* ---- a fake server for the replies a real one never sends ------------------ */

enum { FAKE_REPLY, FAKE_STALL, FAKE_TRICKLE, FAKE_CLOSE };

typedef struct fake {
	char path[100];
	int lfd;
	pthread_t th;
	const char *reply;         /* to EVALSHA */
	size_t reply_len;
	int mode;
	int evalsha;
} fake;

static int fake_wait(int fd, short ev)
{
	struct pollfd p = { fd, ev, 0 };

	return poll(&p, 1, 5000) == 1 ? 0 : -1;     /* bounded: 5 s */
}

static int fake_send(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One whole command at the start of buf: its name in name, its length. */
static size_t fake_parse(const char *buf, size_t len, char *name, size_t nlen)
{
	const char *p = buf, *end = buf + len, *nl;
	long n, i, l;

	if (len < 4 || *p != '*' || !(nl = memchr(p, '\n', len)))
		return 0;
	n = strtol(p + 1, NULL, 10);
	p = nl + 1;
	for (i = 0; i < n; i++) {
		if (p >= end || *p != '$' || !(nl = memchr(p, '\n', (size_t)(end - p))))
			return 0;
		l = strtol(p + 1, NULL, 10);
		p = nl + 1;
		if (end - p < l + 2)
			return 0;
		if (i == 0)
			snprintf(name, nlen, "%.*s", (int)l, p);
		p += l + 2;
	}
	return (size_t)(p - buf);
}

static void *fake_main(void *arg)
{
	fake *fk = arg;
	static char buf[65536];
	size_t have = 0, used;
	char name[32];
	int fd;

	if (fake_wait(fk->lfd, POLLIN) != 0 || (fd = accept(fk->lfd, NULL, NULL)) < 0)
		return NULL;
	for (;;) {
		ssize_t n;

		while ((used = fake_parse(buf, have, name, sizeof name)) > 0) {
			memmove(buf, buf + used, have - used);
			have -= used;
			if (strcmp(name, "SCRIPT") == 0) {
				fake_send(fd, "$40\r\n0123456789abcdef0123456789abcdef01234567\r\n", 47);
				continue;
			}
			if (strcmp(name, "EVALSHA") != 0) {
				fake_send(fd, "+OK\r\n", 5);
				continue;
			}
			fk->evalsha++;
			if (fk->mode == FAKE_CLOSE)
				goto out;
			if (fk->mode == FAKE_TRICKLE) {
				size_t i;

				for (i = 0; i < fk->reply_len; i++) {
					if (fake_send(fd, fk->reply + i, 1) != 0)
						goto out;
					sleep_ns(20 * MSEC);
				}
				continue;
			}
			fake_send(fd, fk->reply, fk->reply_len);
		}
		if (fake_wait(fd, POLLIN) != 0)
			break;
		n = read(fd, buf + have, sizeof buf - have);
		if (n <= 0)
			break;          /* the client closed: the scenario is over */
		have += (size_t)n;
	}
out:
	close(fd);
	return NULL;
}

static void fake_start(fake *fk, const fixture *f, int mode, const char *reply,
                       size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(fk, 0, sizeof *fk);
	snprintf(fk->path, sizeof fk->path, "%s/fake.sock", f->dir);
	unlink(fk->path);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", fk->path);
	fk->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fk->lfd >= 0);
	assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fk->lfd, 4), 0);
	fk->mode = mode;
	fk->reply = reply;
	fk->reply_len = len;
	assert_int_equal(pthread_create(&fk->th, NULL, fake_main, fk), 0);
}

static void fake_stop(fake *fk)
{
	pthread_join(fk->th, NULL);
	close(fk->lfd);
	unlink(fk->path);
}

/* Open the fake, take once; the code and message of that take. */
static int fake_take(const fixture *f, int mode, const char *reply, size_t len,
                     char *err, size_t errlen, rc_take_res *res, int64_t *dt)
{
	rc_take_req q = req_rate("fake", 10, 5);
	char url[160], oerr[256];
	rc_redis_cfg cfg;
	rc_redis *r;
	fake fk;
	int64_t t0;
	int rc;

	fake_start(&fk, f, mode, reply, len);
	snprintf(url, sizeof url, "unix://%s", fk.path);
	cfg = cfg_of(url, NULL, NULL, 200 * MSEC);
	if ((rc = ratectl__redis_open(&r, &cfg, oerr, sizeof oerr)) != 0)
		fail_msg("open the fake: %d %s", rc, oerr);
	ask(&q, 1, 5, 0, 0);
	err[0] = '\0';
	t0 = mono_now();
	rc = ratectl__redis_take(r, &q, res, err, errlen);
	if (dt)
		*dt = mono_now() - t0;
	ratectl__redis_close(r);
	fake_stop(&fk);
	return rc;
}

#define GOOD_HEAD "*10\r\n:1\r\n:0\r\n:0\r\n:1700000000000000\r\n:5\r\n:0\r\n:0\r\n:0\r\n"

static void test_fake_replies(void **state)
{
	static const struct { const char *reply, *has; int code; } cases[] = {
		{ ":5\r\n", "a reply of type 3 with 0 elements, not an array of 10",
		  RATECTL_EPARSE },
		{ "$2\r\nok\r\n", "a reply of type 1", RATECTL_EPARSE },
		{ "*-1\r\n", "a reply of type 4", RATECTL_EPARSE },
		{ "*8\r\n:1\r\n:0\r\n:0\r\n:1\r\n:5\r\n:0\r\n:0\r\n:0\r\n",
		  "with 8 elements", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n$1\r\n0\r\n:1\r\n:5\r\n:0\r\n:0\r\n:0\r\n:7\r\n:1\r\n",
		  "element 3 of the reply is of type 1", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n:0\r\n:1\r\n:5\r\n*1\r\n:0\r\n:0\r\n:0\r\n:7\r\n:1\r\n",
		  "element 6 of the reply is of type 2", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n:0\r\n:1\r\n:5\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:1\r\n",
		  "element 9 of the reply is of type 4", RATECTL_EPARSE },
		{ "*10\r\n:6\r\n:0\r\n:0\r\n:1\r\n:5\r\n:0\r\n:0\r\n:0\r\n:7\r\n:1\r\n",
		  "granted 6 of dimension 0, more than the 5 asked", RATECTL_EPARSE },
		{ "*10\r\n:0\r\n:1\r\n:0\r\n:1\r\n:5\r\n:0\r\n:0\r\n:0\r\n:7\r\n:1\r\n",
		  "granted 1 of dimension 1", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n:-3\r\n:1\r\n:5\r\n:0\r\n:0\r\n:0\r\n:7\r\n:1\r\n",
		  "element 3 of the reply is out of range: -3", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n:0\r\n:9007199254740992\r\n:5\r\n:0\r\n:0\r\n:0\r\n:7\r\n:1\r\n",
		  "element 4 of the reply is out of range", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n:0\r\n:0\r\n:5\r\n:0\r\n:0\r\n:0\r\n:7\r\n:1\r\n",
		  "out of range", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n:0\r\n:1\r\n:5\r\n:0\r\n:2\r\n:0\r\n:7\r\n:1\r\n",
		  "out of range", RATECTL_EPARSE },
		{ "*100000000\r\n", "a reply of 100000000 elements", RATECTL_EPARSE },
		{ "*2147483647\r\n", "a reply of 2147483647 elements", RATECTL_EPARSE },
		{ "-ERR something odd\r\n", "budget fake: ERR something odd", RATECTL_EPARSE },
		{ "-LOADING Redis is loading the dataset in memory\r\n", "LOADING", -EAGAIN },
		{ "-NOAUTH Authentication required.\r\n", "NOAUTH", -EACCES },
		{ "-READONLY You can't write against a read only replica.\r\n",
		  "READONLY", -EROFS },
		{ "hello\r\n", "bad reply", RATECTL_EPARSE },
		{ GOOD_HEAD ":7\r\n:1\r\n:1\r\n", "bytes after the reply", RATECTL_EPARSE },
		{ "*10\r\n:1\r\n:0\r\n:0\r\n!7\r\n", "bad reply", RATECTL_EPARSE },
	};
	fixture *f = *state;
	rc_take_res res;
	char err[256], *big;
	int64_t dt;
	size_t i;
	int rc;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rc = fake_take(f, FAKE_REPLY, cases[i].reply, strlen(cases[i].reply), err,
		               sizeof err, &res, NULL);
		if (rc != cases[i].code || !strstr(err, cases[i].has))
			fail_msg("reply %zu: %d '%s' (wanted %d '%s')", i, rc, err,
			         cases[i].code, cases[i].has);
		assert_int_equal(res.got[0], 0);      /* nothing leaks out on failure */
	}

	/* The good shape: times are base (us) * 1000 + ns after it. */
	rc = fake_take(f, FAKE_REPLY, GOOD_HEAD ":7\r\n:3\r\n", strlen(GOOD_HEAD ":7\r\n:3\r\n"),
	               err, sizeof err, &res, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(res.got[0], 1);
	assert_int_equal(res.now, 1700000000000000000LL + 5);
	assert_int_equal(res.tat[0], 1700000000000000000LL + 7);
	assert_int_equal(res.gen, 3);

	/* A bulk string that never ends: refused past 64 KiB. */
	big = malloc(200000);
	memcpy(big, "$100000000\r\n", 12);
	memset(big + 12, 'x', 200000 - 12);
	rc = fake_take(f, FAKE_REPLY, big, 200000, err, sizeof err, &res, NULL);
	assert_int_equal(rc, RATECTL_EPARSE);
	assert_non_null(strstr(err, "a reply longer than 65536 bytes"));
	free(big);

	/* Half a reply, then nothing; a reply a byte every 20 ms: the
	 * timeout bounds the whole reply, not each read. */
	rc = fake_take(f, FAKE_STALL, "*10\r\n:1\r\n", 9, err, sizeof err, &res, &dt);
	assert_int_equal(rc, -ETIMEDOUT);
	assert_true(dt >= 199 * MSEC && dt < 600 * MSEC);
	rc = fake_take(f, FAKE_TRICKLE, GOOD_HEAD ":7\r\n:3\r\n", strlen(GOOD_HEAD ":7\r\n:3\r\n"),
	               err, sizeof err, &res, &dt);
	assert_int_equal(rc, -ETIMEDOUT);
	assert_true(dt >= 199 * MSEC && dt < 600 * MSEC);

	/* The server hangs up on EVALSHA. */
	rc = fake_take(f, FAKE_CLOSE, "", 0, err, sizeof err, &res, NULL);
	assert_int_equal(rc, -ECONNRESET);
	assert_non_null(strstr(err, "closed the connection"));
}

/* NOSCRIPT every time: loaded again once, then an error, not a loop. */
static void test_fake_noscript(void **state)
{
	static const char ns[] = "-NOSCRIPT No matching script.\r\n";
	fixture *f = *state;
	rc_take_req q = req_rate("fake", 10, 5);
	char url[160], err[256];
	rc_take_res res;
	rc_redis *r;
	fake fk;

	fake_start(&fk, f, FAKE_REPLY, ns, strlen(ns));
	snprintf(url, sizeof url, "unix://%s", fk.path);
	r = open_ok(url, NULL, NULL);
	ask(&q, 1, 1, 0, 0);
	assert_int_equal(ratectl__redis_take(r, &q, &res, err, sizeof err), RATECTL_EPARSE);
	assert_non_null(strstr(err, "NOSCRIPT"));
	assert_int_equal(ratectl__redis_commands(r), 1 + 3);
	ratectl__redis_close(r);
	fake_stop(&fk);
	assert_int_equal(fk.evalsha, 2);
}

/* ---- TCP ------------------------------------------------------------------ */

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int have_ipv6_loopback(void)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;

	if (fd < 0)
		return 0;
	ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

static void test_tcp(void **state)
{
	fixture *f = *state;
	char port[16], url[64];
	const char *extra[5] = { "--port", port, "--bind", "127.0.0.1 -::1", NULL };
	rc_redis_cfg cfg;
	rc_redis *r;

	snprintf(port, sizeof port, "%d", free_port());
	server_start(f, extra);

	snprintf(url, sizeof url, "redis://127.0.0.1:%s/3", port);
	r = open_ok(url, NULL, NULL);
	take_once(r, "tcp");
	assert_int_equal(ratectl__redis_commands(r), 3);  /* SELECT, SCRIPT LOAD, EVALSHA */
	ratectl__redis_close(r);
	assert_int_equal(admin_int(f, "EXISTS %s", "{rc:tcp}"), 0);
	admin_ok(f, "SELECT 3", NULL);
	assert_int_equal(admin_int(f, "EXISTS %s", "{rc:tcp}"), 1);

	snprintf(url, sizeof url, "redis://localhost:%s", port);
	r = open_ok(url, NULL, NULL);
	take_once(r, "tcp");
	ratectl__redis_close(r);
	admin_ok(f, "SELECT 0", NULL);
	assert_int_equal(admin_int(f, "EXISTS %s", "{rc:tcp}"), 1);

	if (have_ipv6_loopback()) {
		snprintf(url, sizeof url, "redis://[::1]:%s/0", port);
		r = open_ok(url, NULL, NULL);
		take_once(r, "tcp6");
		ratectl__redis_close(r);
	} else {
		printf("# no IPv6 loopback here: redis://[::1] not tried\n");
	}

	/* A database the server does not have. */
	snprintf(url, sizeof url, "redis://127.0.0.1:%s/99", port);
	cfg = cfg_of(url, NULL, NULL, 0);
	open_fails(&cfg, RATECTL_EBADCONFIG, "SELECT 99: ERR DB index is out of range");

	/* Nobody listening: refused at once. */
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", free_port());
	cfg = cfg_of(url, NULL, NULL, 0);
	open_fails(&cfg, -ECONNREFUSED, "cannot connect");
}

/* ---- the figure ------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_roundtrip(void **state)
{
	enum { N = 1000 };
	fixture *f = *state;
	rc_take_req q = req("rt");
	int64_t *t = malloc(N * sizeof *t), *p = malloc(N * sizeof *p);
	rc_redis *r;
	uint64_t c0;
	int i;

	server_start(f, NULL);
	r = open_ok(f->url, NULL, NULL);
	add_limit(&q, RATECTL_REQUESTS, 1000000, SEC, 1000000);
	add_limit(&q, RATECTL_TOKENS, 100000000, SEC, 100000000);
	ask(&q, 1, 1, 100, 100);
	take(r, &q);
	c0 = ratectl__redis_commands(r);
	for (i = 0; i < N; i++) {
		int64_t t0 = mono_now();
		rc_take_res res = take(r, &q);

		t[i] = mono_now() - t0;
		assert_int_equal(res.got[0], 1);
	}
	assert_int_equal(ratectl__redis_commands(r), c0 + N);
	for (i = 0; i < N; i++) {
		int64_t t0 = mono_now();
		redisReply *rep = redisCommand(f->admin, "PING");

		p[i] = mono_now() - t0;
		freeReplyObject(rep);
	}
	qsort(t, N, sizeof *t, cmp_i64);
	qsort(p, N, sizeof *p, cmp_i64);
	printf("# ratectl__redis_take over a unix socket (2 limits): median %.1f us, "
	       "p99 %.1f us; PING: median %.1f us (%d calls each)\n",
	       (double)t[N / 2] / 1000, (double)t[N * 99 / 100] / 1000,
	       (double)p[N / 2] / 1000, N);
	free(t);
	free(p);
	ratectl__redis_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_good),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_url_sizes),
		cmocka_unit_test(test_cfg_sizes),
		cmocka_unit_test_setup_teardown(test_password_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_password_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_burst_then_rate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_want_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_give_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cooldown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_tat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_carried_after_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_carried_never_undoes_give_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_noscript, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sig_differs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebase, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fractional_T, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigstop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fake_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fake_noscript, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
