/*
 * redis.c - the global side of a shared budget (see redis.h): the URL, the
 * connection, and the one Lua script that holds each limit's global GCRA.
 *
 * hiredis (0.14 and later) connects and parses replies; this file sends the
 * commands itself, with send(MSG_NOSIGNAL) and a poll before every read,
 * so that a dead server raises no SIGPIPE in the caller's process and a
 * stopped one costs at most timeout_ns per command, however its reply
 * trickles in (SO_RCVTIMEO bounds one read, not a reply).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis.h"

#define NS_PER_S 1000000000LL
#define RC_UNIX_PATH_MAX (sizeof ((struct sockaddr_un *)0)->sun_path - 1)
/* Longest password taken from a file or the environment. */
#define RC_PASSWORD_MAX 1024
/* What a reply may hold: the script's is 8 + RATECTL_MAX_LIMITS integers,
 * an error a few hundred bytes.  More is a broken or foreign server. */
#define RC_REPLY_ELEMENTS_MAX 64
#define RC_REPLY_BYTES_MAX (64 * 1024)
/* Lua numbers are doubles: integers are exact below 2^53. */
#define RC_EXACT ((int64_t)1 << 53)
/* Largest tolerance (burst * period / count) the script holds exactly:
 * every stored time lies within tau + a day of `base`, < 2^53 ns. */
#define RC_TAU_MAX (100 * 86400 * NS_PER_S)
#define RC_ARGS_MAX (4 + 13 + 8 * RATECTL_MAX_LIMITS)

/*
 * The script.  KEYS[1]: the budget's hash.  ARGV (numbers in decimal):
 *   1 n, 2 sig, 3-4 give[2], 5-6 need[2], 7-8 want[2],
 *   9-10 carried_cool, 11-12 push_cool,
 *   then per limit i, 8 each: dim, count, period_ns, burst,
 *   carried_tat[i], push_tat[i]; last, carried_gen.
 * A time from the caller comes as two numbers, microseconds and the
 * nanoseconds beyond, both exact in a double (0 0: none).
 * Returns { got1, got2, wait_ns, base_us, now, cool (0 if none), sig_differs,
 * restored, tat1 .. tatn, gen }: times in ns after base_us, integers.
 */
static const char rc_script[] =
	"local key = KEYS[1]\n"
	"local n, sig = tonumber(ARGV[1]), ARGV[2]\n"
	"local give = { tonumber(ARGV[3]), tonumber(ARGV[4]) }\n"
	"local need = { tonumber(ARGV[5]), tonumber(ARGV[6]) }\n"
	"local want = { tonumber(ARGV[7]), tonumber(ARGV[8]) }\n"
	"local MAXL, DAY, EXACT = 8, 86400e9, 2^53\n"
	/* Redis < 5 writes after TIME only when told to (a no-op since 5). */
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local t = redis.call('TIME')\n"
	"local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local h = redis.call('HMGET', key, 'base', 'cool', 'sig', 'tat1', 'tat2',\n"
	"                     'tat3', 'tat4', 'tat5', 'tat6', 'tat7', 'tat8', 'gen')\n"
	"local bad\n"
	/* A stored time: an integer below 2^53, or the hash is not ours. */
	"local function int(name, v)\n"
	"  local x = tonumber(v)\n"
	"  if x == nil or x ~= x or x ~= math.floor(x) or math.abs(x) >= EXACT then\n"
	"    bad = 'ratectl: ' .. key .. ': field ' .. name .. ' is not an integer: '\n"
	"          .. string.sub(tostring(v), 1, 40)\n"
	"    return 0\n"
	"  end\n"
	"  return x\n"
	"end\n"
	"local fresh = not h[1]\n"
	"local base = now_us\n"
	"if not fresh then base = int('base', h[1]) end\n"
	"local cool = h[2] and int('cool', h[2]) or 0\n"
	"local tat = {}\n"
	"for i = 1, MAXL do\n"
	"  if h[3 + i] then tat[i] = int('tat' .. i, h[3 + i]) end\n"
	"end\n"
	"if bad then return redis.error_reply(bad) end\n"
	"local now = (now_us - base) * 1000\n"
	/* Past a day (or a clock set back): count from now, so that every
	 * time stays within tau + a day of base, exact in a double. */
	"if now > DAY or now < 0 then\n"
	"  for i = 1, MAXL do\n"
	"    if tat[i] then tat[i] = math.max(tat[i] - now, 0) end\n"
	"  end\n"
	"  cool = math.max(cool - now, 0)\n"
	"  base, now = now_us, 0\n"
	"end\n"
	"local function rel(us, ns)\n"
	"  us, ns = tonumber(us), tonumber(ns)\n"
	"  if us == 0 and ns == 0 then return nil end\n"
	"  return (us - base) * 1000 + ns\n"
	"end\n"
	"local dim, T, tau, longest, restored = {}, {}, {}, 0, 0\n"
	/* Carried state, only from a host that saw a later write than the
	 * hash holds: the hash was lost (a restart, an expiry) since.  Every
	 * other call carries an older view, which must not undo what came
	 * after it (another host's give back). */
	"local gen = h[12] and int('gen', h[12]) or 0\n"
	"if bad then return redis.error_reply(bad) end\n"
	"local cgen = tonumber(ARGV[13 + 8 * n])\n"
	"local carry = cgen > gen\n"
	"local c = carry and rel(ARGV[9], ARGV[10])\n"
	"if c then\n"
	"  cool = math.max(cool, c)\n"
	"  restored = 1\n"
	"end\n"
	"gen = math.max(gen, cgen) + 1\n"
	"for i = 1, n do\n"
	"  local a = 12 + 8 * (i - 1)\n"
	"  local period = tonumber(ARGV[a + 3])\n"
	"  dim[i] = tonumber(ARGV[a + 1]) + 1\n"
	"  T[i] = period / tonumber(ARGV[a + 2])\n"
	"  tau[i] = T[i] * tonumber(ARGV[a + 4])\n"
	"  if period > longest then longest = period end\n"
	"  tat[i] = math.max(tat[i] or now, now)\n"
	"  c = carry and rel(ARGV[a + 5], ARGV[a + 6])\n"
	"  if c then\n"
	"    tat[i] = math.max(tat[i], c)\n"
	"    restored = 1\n"
	"  end\n"
	"end\n"
	/* Units given back, never below now. */
	"for i = 1, n do\n"
	"  local g = give[dim[i]]\n"
	"  if g > 0 then tat[i] = math.max(tat[i] - math.floor(g * T[i]), now) end\n"
	"end\n"
	/* What this host learned: floors.  A TAT never passes now + tau, a
	 * cooldown never a day (as the ledger's): one bad value cannot stop
	 * a budget for good. */
	"c = rel(ARGV[11], ARGV[12])\n"
	"if c then cool = math.max(cool, c) end\n"
	"cool = math.min(cool, now + DAY)\n"
	"for i = 1, n do\n"
	"  local a = 12 + 8 * (i - 1)\n"
	"  c = rel(ARGV[a + 7], ARGV[a + 8])\n"
	"  if c then tat[i] = math.max(tat[i], c) end\n"
	"  tat[i] = math.min(tat[i], now + math.ceil(tau[i]))\n"
	"end\n"
	/* Per dimension, the most every limit of it can give: the largest k
	 * with k * T <= tau - (tat - now), up to want. */
	"local g = { want[1], want[2] }\n"
	"for i = 1, n do\n"
	"  local room = tau[i] - (tat[i] - now)\n"
	"  local k = math.floor(room / T[i])\n"
	"  if k * T[i] > room then k = k - 1 end\n"
	"  if (k + 1) * T[i] <= room then k = k + 1 end\n"
	"  if k < 0 then k = 0 end\n"
	"  if k < g[dim[i]] then g[dim[i]] = k end\n"
	"end\n"
	"local got, wait = { 0, 0 }, 0\n"
	"if cool <= now and g[1] >= need[1] and g[2] >= need[2] then\n"
	"  got = g\n"
	"  for i = 1, n do\n"
	"    local k = got[dim[i]]\n"
	"    if k > 0 then tat[i] = tat[i] + math.ceil(k * T[i]) end\n"
	"  end\n"
	"else\n"
	"  for i = 1, n do\n"
	"    local k = need[dim[i]]\n"
	"    if k > 0 then\n"
	"      wait = math.max(wait, math.ceil((tat[i] - now) + k * T[i] - tau[i]))\n"
	"    end\n"
	"  end\n"
	"  wait = math.max(wait, cool - now, 1)\n"
	"end\n"
	"local set = { 'base', string.format('%.0f', base),\n"
	"              'cool', string.format('%.0f', cool), 'sig', sig,\n"
	"              'gen', string.format('%.0f', gen) }\n"
	"for i = 1, MAXL do\n"
	"  if tat[i] then\n"
	"    set[#set + 1] = 'tat' .. i\n"
	"    set[#set + 1] = string.format('%.0f', tat[i])\n"
	"  end\n"
	"end\n"
	"redis.call('HSET', key, unpack(set))\n"
	"redis.call('PEXPIRE', key, string.format('%.0f', math.ceil(2 * longest / 1e6) + 60000))\n"
	"local out = { got[1], got[2], wait, base, now, cool > now and cool or 0,\n"
	"              (h[3] and h[3] ~= sig) and 1 or 0, restored }\n"
	"for i = 1, n do out[8 + i] = tat[i] end\n"
	"out[9 + n] = gen\n"
	"return out\n";

struct rc_redis {
	redisContext *c;
	int64_t timeout_ns;
	uint64_t commands;
	int broken;                 /* a command failed: never used again */
	int too_many;               /* the reply had this many elements */
	redisReplyObjectFunctions fn;
	void *(*create_array)(const redisReadTask *, int);
	char sha[41];
	char url[128];              /* for messages */
};

/* Write a message into err (may be NULL) and return code. */
__attribute__((format(printf, 4, 5)))
static int say(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* ---- the URL ------------------------------------------------------------ */

typedef struct rc_url {
	int is_unix;
	char host[RC_REDIS_URL_MAX];
	int port;
	char path[RC_UNIX_PATH_MAX + 1];
	long db;
} rc_url;

/* The URL as messages show it: printable, a password in it hidden, long
 * ones cut. */
static void url_shown(const char *url, char *out, size_t len)
{
	const char *auth = strstr(url, "://"), *at = NULL, *p;
	size_t o = 0;

	if (auth) {
		auth += 3;
		for (p = auth; *p && *p != '/' && *p != '?' && *p != '#'; p++)
			if (*p == '@')
				at = p;
	}
	for (p = url; *p && o + 4 < len; p++) {
		if (at && p == auth) {
			o += (size_t)snprintf(out + o, len - o, "***");
			p = at - 1;
			continue;
		}
		if (o >= 110) {
			o += (size_t)snprintf(out + o, len - o, "...");
			break;
		}
		out[o++] = isprint((unsigned char)*p) ? *p : '?';
	}
	out[o < len ? o : len - 1] = '\0';
}

__attribute__((format(printf, 4, 5)))
static int bad_url(char *err, size_t errlen, const char *url, const char *fmt, ...)
{
	char shown[128], why[160], *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	for (p = why; *p; p++)      /* pieces of the URL, quoted */
		if (!isprint((unsigned char)*p))
			*p = '?';
	url_shown(url, shown, sizeof shown);
	return say(err, errlen, RATECTL_EBADCONFIG, "shared: '%s': %s", shown, why);
}

/* Digits only, no sign, at most max: 0 and *v, or -1. */
static int parse_num(const char *s, size_t len, long max, long *v)
{
	long x = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (x > (max - (s[i] - '0')) / 10)
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return 0;
}

/* A host name: labels of [A-Za-z0-9_-] between dots, none empty. */
static int host_name_ok(const char *h)
{
	size_t label = 0;

	for (; *h; h++) {
		if (*h == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (isalnum((unsigned char)*h) || *h == '-' || *h == '_') {
			label++;
		} else {
			return 0;
		}
	}
	return label > 0;
}

static int parse_tcp(const char *url, const char *p, rc_url *u, char *err,
                     size_t errlen)
{
	size_t alen = strcspn(p, "/?#"), hlen;
	const char *end = p + alen, *colon;
	struct in6_addr a6;
	struct in_addr a4;
	long v;

	if (memchr(p, '@', alen))
		return bad_url(err, errlen, url, "no password in the URL: give "
		               "password_file or password_env");
	if (*p == '[') {
		const char *close = memchr(p, ']', alen);

		if (!close)
			return bad_url(err, errlen, url, "no ']' after the IPv6 address");
		hlen = (size_t)(close - p - 1);
		memcpy(u->host, p + 1, hlen);
		u->host[hlen] = '\0';
		if (inet_pton(AF_INET6, u->host, &a6) != 1)
			return bad_url(err, errlen, url, "'%s' is not an IPv6 address",
			               u->host);
		colon = close + 1 < end ? close + 1 : NULL;
		if (colon && *colon != ':')
			return bad_url(err, errlen, url, "unexpected '%c' after ']'", *colon);
	} else {
		colon = memchr(p, ':', alen);
		hlen = colon ? (size_t)(colon - p) : alen;
		if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
			return bad_url(err, errlen, url, "an IPv6 address goes in brackets: "
			               "redis://[::1]:6379/0");
		memcpy(u->host, p, hlen);
		u->host[hlen] = '\0';
		if (hlen == 0)
			return bad_url(err, errlen, url, "no host");
		if (hlen > 253 || !host_name_ok(u->host))
			return bad_url(err, errlen, url, "'%.64s' is not a host name", u->host);
		if (strspn(u->host, "0123456789.") == hlen &&
		    inet_pton(AF_INET, u->host, &a4) != 1)
			return bad_url(err, errlen, url, "'%s' is not an IPv4 address", u->host);
	}
	u->port = 6379;
	if (colon) {
		int plen = (int)(end - colon - 1);

		if (parse_num(colon + 1, (size_t)plen, 65535, &v) != 0 || v < 1)
			return bad_url(err, errlen, url, "port '%.*s' out of range: 1 .. 65535",
			               plen > 20 ? 20 : plen, colon + 1);
		u->port = (int)v;
	}
	u->db = 0;
	if (*end == '/' && end[1]) {
		size_t dlen = strcspn(end + 1, "?#");

		if (parse_num(end + 1, dlen, INT_MAX, &u->db) != 0)
			return bad_url(err, errlen, url, "database '%.*s' is not a number "
			               "0 .. %d", (int)(dlen > 20 ? 20 : dlen), end + 1, INT_MAX);
		end += 1 + dlen;
	} else if (*end == '/') {
		end++;
	}
	if (*end)
		return bad_url(err, errlen, url, "unexpected '%.20s' after the %s", end,
		               *end == '?' || *end == '#' ? "database (no options in a "
		               "redis:// URL)" : "address");
	return 0;
}

static int parse_unix(const char *url, const char *p, rc_url *u, char *err,
                      size_t errlen)
{
	size_t plen = strcspn(p, "?#"), i;
	const char *q = p + plen;

	if (*p && *p != '/' && *p != '?' && *p != '#')
		return bad_url(err, errlen, url, "a unix URL has no host: unix:///PATH");
	if (plen <= 1)
		return bad_url(err, errlen, url, "no socket path");
	if (plen > RC_UNIX_PATH_MAX)
		return bad_url(err, errlen, url, "socket path of %zu bytes: at most %zu",
		               plen, (size_t)RC_UNIX_PATH_MAX);
	for (i = 0; i < plen; i++)
		if (iscntrl((unsigned char)p[i]))
			return bad_url(err, errlen, url, "control character in the path");
	memcpy(u->path, p, plen);
	u->path[plen] = '\0';
	u->db = 0;
	if (*q == '?' && strncmp(q, "?db=", 4) == 0) {
		if (parse_num(q + 4, strlen(q + 4), INT_MAX, &u->db) != 0)
			return bad_url(err, errlen, url, "database '%.20s' is not a number "
			               "0 .. %d", q + 4, INT_MAX);
	} else if (*q) {
		return bad_url(err, errlen, url, "unexpected '%.20s' after the path "
		               "(the only option is ?db=N)", q);
	}
	return 0;
}

static int url_parse(const char *url, rc_url *u, char *err, size_t errlen)
{
	size_t len;

	memset(u, 0, sizeof *u);
	if (!url || !*url)
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: no URL");
	len = strnlen(url, RC_REDIS_URL_MAX);
	if (len >= RC_REDIS_URL_MAX)
		return bad_url(err, errlen, url, "longer than %d bytes",
		               RC_REDIS_URL_MAX - 1);
	if (strncasecmp(url, "redis://", 8) == 0)
		return parse_tcp(url, url + 8, u, err, errlen);
	if (strncasecmp(url, "unix://", 7) == 0) {
		u->is_unix = 1;
		return parse_unix(url, url + 7, u, err, errlen);
	}
	if (strncasecmp(url, "rediss://", 9) == 0)
		return bad_url(err, errlen, url, "TLS (rediss://) is not supported");
	return bad_url(err, errlen, url, "not redis://HOST:PORT/DB nor unix:///PATH");
}

int ratectl__redis_url_check(const char *url, char *err, size_t errlen)
{
	rc_url u;

	return url_parse(url, &u, err, errlen);
}

/* An environment variable's name: [A-Za-z_][A-Za-z0-9_]*. */
static int env_name_ok(const char *s)
{
	if (!*s || isdigit((unsigned char)*s))
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

static int cfg_check(const rc_redis_cfg *cfg, rc_url *u, char *err, size_t errlen)
{
	int rc;

	if (!memchr(cfg->url, '\0', sizeof cfg->url) ||
	    !memchr(cfg->password_file, '\0', sizeof cfg->password_file) ||
	    !memchr(cfg->password_env, '\0', sizeof cfg->password_env))
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: a string of the "
		           "configuration is not terminated");
	if ((rc = url_parse(cfg->url, u, err, errlen)) != 0)
		return rc;
	if (cfg->password_file[0] && cfg->password_env[0])
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: a password file or "
		           "an environment variable, not both");
	if (cfg->password_env[0] && !env_name_ok(cfg->password_env))
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: '%s' is not the "
		           "name of an environment variable", cfg->password_env);
	if (cfg->timeout_ns < 0)
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: negative timeout");
	return 0;
}

/* Copy s into a field of n bytes, or say it does not fit. */
static int fit(char *dst, size_t n, const char *s, const char *what, char *err,
               size_t errlen)
{
	size_t len = s ? strnlen(s, n) : 0;

	if (len >= n)
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: %s '%.40s...' is "
		           "longer than %zu bytes", what, s, n - 1);
	memcpy(dst, s ? s : "", len);
	dst[len] = '\0';
	return 0;
}

int ratectl__redis_cfg_set(rc_redis_cfg *cfg, const char *url,
                           const char *password_file, const char *password_env,
                           int64_t timeout_ns, char *err, size_t errlen)
{
	rc_url u;
	int rc;

	memset(cfg, 0, sizeof *cfg);
	if ((rc = url_parse(url, &u, err, errlen)) != 0)
		return rc;
	memcpy(cfg->url, url, strlen(url) + 1);
	if ((rc = fit(cfg->password_file, sizeof cfg->password_file, password_file,
	              "password file", err, errlen)) != 0 ||
	    (rc = fit(cfg->password_env, sizeof cfg->password_env, password_env,
	              "environment variable", err, errlen)) != 0)
		return rc;
	cfg->timeout_ns = timeout_ns;
	return cfg_check(cfg, &u, err, errlen);
}

/* ---- the password ------------------------------------------------------- */

/* The first line of the file, trailing spaces dropped.  The file must be a
 * regular file that only its owner can read or write. */
static int password_file(const char *path, char *pw, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc = 0;
	size_t len = 0;
	struct stat st;
	char *nl;

	if (fd < 0)
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: password file %s: %s",
		           path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = say(err, errlen, RATECTL_EBADCONFIG, "shared: password file %s: %s",
		         path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = say(err, errlen, RATECTL_EBADCONFIG, "shared: password file %s is "
		         "not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		rc = say(err, errlen, RATECTL_EBADCONFIG, "shared: password file %s has "
		         "mode %04o: group or others may read or write it; chmod 600 it",
		         path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	while (len <= RC_PASSWORD_MAX) {
		ssize_t n = read(fd, pw + len, RC_PASSWORD_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = say(err, errlen, RATECTL_EBADCONFIG, "shared: password file "
			         "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(pw, '\n', len))
			break;
	}
	pw[len] = '\0';
	if ((nl = memchr(pw, '\n', len)) != NULL)
		*nl = '\0';
	else if (len > RC_PASSWORD_MAX)
		rc = say(err, errlen, RATECTL_EBADCONFIG, "shared: password file %s: "
		         "first line longer than %d bytes", path, RC_PASSWORD_MAX);
	if (rc == 0 && strlen(pw) != (nl ? (size_t)(nl - pw) : len))
		rc = say(err, errlen, RATECTL_EBADCONFIG, "shared: password file %s: "
		         "a NUL byte in the first line", path);
out:
	close(fd);
	return rc;
}

/* The password in pw ("" for none); *from says where it came from. */
static int password_get(const rc_redis_cfg *cfg, char *pw, const char **from,
                        char *err, size_t errlen)
{
	size_t len;
	int rc;

	pw[0] = '\0';
	*from = "";
	if (cfg->password_file[0]) {
		*from = cfg->password_file;
		if ((rc = password_file(cfg->password_file, pw, err, errlen)) != 0)
			return rc;
	} else if (cfg->password_env[0]) {
		const char *v = getenv(cfg->password_env);

		*from = cfg->password_env;
		if (!v)
			return say(err, errlen, RATECTL_EBADCONFIG, "shared: the environment "
			           "variable %s (the password) is not set", cfg->password_env);
		if (strlen(v) > RC_PASSWORD_MAX)
			return say(err, errlen, RATECTL_EBADCONFIG, "shared: the environment "
			           "variable %s is longer than %d bytes", cfg->password_env,
			           RC_PASSWORD_MAX);
		memcpy(pw, v, strlen(v) + 1);
	} else {
		return 0;
	}
	len = strlen(pw);
	while (len && (pw[len - 1] == '\r' || pw[len - 1] == ' ' || pw[len - 1] == '\t'))
		pw[--len] = '\0';
	if (len == 0)
		return say(err, errlen, RATECTL_EBADCONFIG, "shared: the password in %s "
		           "is empty", *from);
	return 0;
}

/* ---- commands ------------------------------------------------------------ */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Until fd is ready for ev, or -ETIMEDOUT at the deadline. */
static int wait_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { fd, ev, 0 };
		int64_t left = deadline - mono_ns();
		struct timespec ts;
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		ts.tv_sec = left / NS_PER_S;
		ts.tv_nsec = left % NS_PER_S;
		n = ppoll(&pfd, 1, &ts, NULL);
		if (n > 0)
			return 0;       /* ready, or an error the next call reports */
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
	size_t off = 0;
	int rc;

	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((rc = wait_fd(fd, POLLOUT, deadline)) != 0)
			return rc;
	}
	return 0;
}

/* hiredis 0.14 allocates an array of the announced size before any element
 * arrives: refuse sizes no reply of ours has. */
static void *capped_array(const redisReadTask *task, int elements)
{
	rc_redis *r = task->privdata;

	if (!r || elements > RC_REPLY_ELEMENTS_MAX) {
		if (r)
			r->too_many = elements;
		return NULL;
	}
	return r->create_array(task, elements);
}

static int read_reply(rc_redis *r, redisReply **out, int64_t deadline,
                      char *why, size_t whylen)
{
	redisContext *c = r->c;
	void *reply = NULL;
	int rc;

	for (;;) {
		if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
			if (r->too_many)
				return say(why, whylen, RATECTL_EPARSE, "a reply of %d elements",
				           r->too_many);
			return say(why, whylen, RATECTL_EPARSE, "bad reply: %s",
			           c->reader->errstr);
		}
		if (reply && c->reader->len > c->reader->pos) {
			/* more than one reply to one command: the next would be
			 * taken for the next command's */
			freeReplyObject(reply);
			return say(why, whylen, RATECTL_EPARSE, "bytes after the reply");
		}
		if (reply) {
			*out = reply;
			return 0;
		}
		if (c->reader->len - c->reader->pos > RC_REPLY_BYTES_MAX)
			return say(why, whylen, RATECTL_EPARSE, "a reply longer than %d "
			           "bytes", RC_REPLY_BYTES_MAX);
		if ((rc = wait_fd(c->fd, POLLIN, deadline)) == -ETIMEDOUT)
			return say(why, whylen, rc, "no reply within the timeout (%" PRId64
			           " ms)", r->timeout_ns / 1000000);
		if (rc != 0)
			return say(why, whylen, rc, "%s", strerror(-rc));
		errno = 0;
		if (redisBufferRead(c) != REDIS_OK) {
			int e = errno;

			if (c->err == REDIS_ERR_EOF)
				return say(why, whylen, -ECONNRESET, "the server closed the "
				           "connection");
			if (c->err == REDIS_ERR_OOM)
				return say(why, whylen, -ENOMEM, "out of memory");
			if (c->err == REDIS_ERR_PROTOCOL)
				return say(why, whylen, RATECTL_EPARSE, "bad reply: %s", c->errstr);
			rc = e == EAGAIN || e == EWOULDBLOCK ? -ETIMEDOUT : e ? -e : -EIO;
			return say(why, whylen, rc, "%s", c->errstr);
		}
	}
}

/*
 * Send one command and read its reply, within timeout_ns.  Returns 0 and
 * *out (any type, errors included: the caller judges), or a code with err
 * saying what; the connection is then broken for good.  secret: the
 * command holds a password, wiped once sent.
 */
static int command(rc_redis *r, int argc, const char **argv, const size_t *argl,
                   int secret, redisReply **out, char *err, size_t errlen)
{
	int64_t deadline = mono_ns() + r->timeout_ns;
	char *cmd = NULL, why[160];
	int len, rc;

	*out = NULL;
	if (r->broken)
		return say(err, errlen, -ENOTCONN, "shared: '%s': %s: the connection "
		           "failed before; open another", r->url, argv[0]);
	if ((len = redisFormatCommandArgv(&cmd, argc, argv, argl)) < 0)
		return say(err, errlen, -ENOMEM, "shared: '%s': %s: out of memory",
		           r->url, argv[0]);
	r->commands++;
	rc = send_all(r->c->fd, cmd, (size_t)len, deadline);
	if (rc == -ETIMEDOUT)
		snprintf(why, sizeof why, "could not send within the timeout (%" PRId64
		         " ms)", r->timeout_ns / 1000000);
	else if (rc != 0)
		snprintf(why, sizeof why, "%s", strerror(-rc));
	if (secret)
		explicit_bzero(cmd, (size_t)len);
	redisFreeCommand(cmd);
	if (rc == 0)
		rc = read_reply(r, out, deadline, why, sizeof why);
	if (rc != 0) {
		r->broken = 1;
		return say(err, errlen, rc, "shared: '%s': %s: %s", r->url, argv[0], why);
	}
	return 0;
}

/* The code for an error reply, by its first word. */
static int error_code(const redisReply *rep)
{
	static const struct { const char *word; int code; } map[] = {
		{ "NOAUTH", -EACCES }, { "WRONGPASS", -EACCES }, { "NOPERM", -EACCES },
		{ "LOADING", -EAGAIN }, { "BUSY", -EAGAIN }, { "MASTERDOWN", -EAGAIN },
		{ "TRYAGAIN", -EAGAIN }, { "READONLY", -EROFS }, { "OOM", -ENOSPC },
	};
	size_t i, w = strcspn(rep->str, " ");

	for (i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strlen(map[i].word) == w && strncmp(rep->str, map[i].word, w) == 0)
			return map[i].code;
	return RATECTL_EPARSE;
}

/* A reply that must be the status OK. */
static int expect_ok(rc_redis *r, redisReply *rep, const char *what, int code,
                     char *err, size_t errlen)
{
	int rc = 0;

	if (rep->type == REDIS_REPLY_ERROR)
		rc = say(err, errlen, code ? code : error_code(rep), "shared: '%s': %s: "
		         "%.100s", r->url, what, rep->str);
	else if (rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "OK") != 0)
		rc = say(err, errlen, RATECTL_EPARSE, "shared: '%s': %s: a reply of type "
		         "%d, not OK", r->url, what, rep->type);
	freeReplyObject(rep);
	return rc;
}

static int script_load(rc_redis *r, char *err, size_t errlen)
{
	const char *argv[3] = { "SCRIPT", "LOAD", rc_script };
	size_t argl[3] = { 6, 4, sizeof rc_script - 1 };
	redisReply *rep;
	int rc;

	if ((rc = command(r, 3, argv, argl, 0, &rep, err, errlen)) != 0)
		return rc;
	if (rep->type == REDIS_REPLY_ERROR)
		rc = say(err, errlen, error_code(rep), "shared: '%s': SCRIPT LOAD: %.100s",
		         r->url, rep->str);
	else if (rep->type != REDIS_REPLY_STRING || rep->len != 40 ||
	         strspn(rep->str, "0123456789abcdef") != 40)
		rc = say(err, errlen, RATECTL_EPARSE, "shared: '%s': SCRIPT LOAD: not a "
		         "SHA1 in reply", r->url);
	else
		memcpy(r->sha, rep->str, 41);
	freeReplyObject(rep);
	return rc;
}

/* ---- the connection -------------------------------------------------------- */

static int connect_to(rc_redis *r, const rc_url *u, char *err, size_t errlen)
{
	struct timeval tv = { (time_t)(r->timeout_ns / NS_PER_S),
	                      (suseconds_t)(r->timeout_ns % NS_PER_S / 1000) };
	int one = 1, e;

	if (tv.tv_sec == 0 && tv.tv_usec == 0)
		tv.tv_usec = 1;
	errno = 0;
	r->c = u->is_unix ? redisConnectUnixWithTimeout(u->path, tv) :
	                    redisConnectWithTimeout(u->host, u->port, tv);
	e = errno;
	if (!r->c)
		return say(err, errlen, -ENOMEM, "shared: '%s': out of memory", r->url);
	if (r->c->err)
		return say(err, errlen, r->c->err == REDIS_ERR_IO && e ? -e :
		           r->c->err == REDIS_ERR_OTHER ? -EHOSTUNREACH : -ECONNREFUSED,
		           "shared: '%s': cannot connect: %s", r->url, r->c->errstr);
	if (!u->is_unix &&
	    setsockopt(r->c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
		return say(err, errlen, -errno, "shared: '%s': TCP_NODELAY: %s", r->url,
		           strerror(errno));
	if (redisSetTimeout(r->c, tv) != REDIS_OK)
		return say(err, errlen, -EIO, "shared: '%s': %s", r->url, r->c->errstr);
	r->fn = *r->c->reader->fn;
	r->create_array = r->fn.createArray;
	r->fn.createArray = capped_array;
	r->c->reader->fn = &r->fn;
	r->c->reader->privdata = r;
	return 0;
}

static int auth(rc_redis *r, char *pw, const char *from, int from_file,
                char *err, size_t errlen)
{
	const char *argv[2] = { "AUTH", pw };
	size_t argl[2] = { 4, strlen(pw) };
	redisReply *rep;
	char what[RC_REDIS_PATH_MAX + 64];
	int rc;

	rc = command(r, 2, argv, argl, 1, &rep, err, errlen);
	explicit_bzero(pw, argl[1]);
	if (rc != 0)
		return rc;
	snprintf(what, sizeof what, "AUTH with the password from %s %s",
	         from_file ? "file" : "variable", from);
	return expect_ok(r, rep, what, rep->type == REDIS_REPLY_ERROR ? -EACCES : 0,
	                 err, errlen);
}

static int select_db(rc_redis *r, long db, char *err, size_t errlen)
{
	char num[24], what[40];
	const char *argv[2] = { "SELECT", num };
	size_t argl[2] = { 6, 0 };
	redisReply *rep;
	int rc;

	argl[1] = (size_t)snprintf(num, sizeof num, "%ld", db);
	if ((rc = command(r, 2, argv, argl, 0, &rep, err, errlen)) != 0)
		return rc;
	snprintf(what, sizeof what, "SELECT %ld", db);
	return expect_ok(r, rep, what, rep->type == REDIS_REPLY_ERROR &&
	                 error_code(rep) == RATECTL_EPARSE ? RATECTL_EBADCONFIG : 0,
	                 err, errlen);
}

int ratectl__redis_open(rc_redis **out, const rc_redis_cfg *cfg, char *err,
                        size_t errlen)
{
	char pw[RC_PASSWORD_MAX + 2];
	const char *from;
	rc_redis *r;
	rc_url u;
	int rc;

	*out = NULL;
	if ((rc = cfg_check(cfg, &u, err, errlen)) != 0)
		return rc;
	if ((rc = password_get(cfg, pw, &from, err, errlen)) != 0)
		goto wipe;
	if (!(r = calloc(1, sizeof *r))) {
		rc = say(err, errlen, -ENOMEM, "shared: out of memory");
		goto wipe;
	}
	r->timeout_ns = cfg->timeout_ns ? cfg->timeout_ns : NS_PER_S;
	url_shown(cfg->url, r->url, sizeof r->url);
	if ((rc = connect_to(r, &u, err, errlen)) != 0)
		goto fail;
	if (pw[0] && (rc = auth(r, pw, from, cfg->password_file[0] != '\0', err,
	                        errlen)) != 0)
		goto fail;
	if (u.db != 0 && (rc = select_db(r, u.db, err, errlen)) != 0)
		goto fail;
	if ((rc = script_load(r, err, errlen)) != 0)
		goto fail;
	*out = r;
	goto wipe;
fail:
	ratectl__redis_close(r);
wipe:
	explicit_bzero(pw, sizeof pw);
	return rc;
}

void ratectl__redis_close(rc_redis *r)
{
	if (!r)
		return;
	if (r->c)
		redisFree(r->c);    /* frees the reader, which uses r->fn */
	free(r);
}

uint64_t ratectl__redis_commands(const rc_redis *r)
{
	return r ? r->commands : 0;
}

/* ---- the script's call ---------------------------------------------------- */

/* The EVALSHA command of one request: argv points into num and sig. */
typedef struct take_args {
	const char *argv[RC_ARGS_MAX];
	size_t argl[RC_ARGS_MAX];
	int argc;
	char key[RATECTL_NAME_MAX + 8];
	char num[RC_ARGS_MAX][24];
	char sig[RATECTL_MAX_LIMITS * 70];
} take_args;

static void arg_str(take_args *a, const char *s)
{
	a->argv[a->argc] = s;
	a->argl[a->argc++] = strlen(s);
}

static void arg_u64(take_args *a, uint64_t v)
{
	int len = snprintf(a->num[a->argc], sizeof a->num[0], "%" PRIu64, v);

	a->argv[a->argc] = a->num[a->argc];
	a->argl[a->argc++] = (size_t)len;
}

/* A time (ns since the epoch, 0: none) as microseconds and the rest. */
static void arg_time(take_args *a, int64_t t)
{
	arg_u64(a, (uint64_t)(t / 1000));
	arg_u64(a, (uint64_t)(t % 1000));
}

/* Amounts above 2^53 - 1 mean "as many as there are": Lua counts exactly
 * below 2^53. */
static uint64_t amount(uint64_t v)
{
	return v < (uint64_t)RC_EXACT ? v : (uint64_t)RC_EXACT - 1;
}

static int take_check(const rc_take_req *q, char *err, size_t errlen)
{
	unsigned i;
	int d;

	if (!q->budget || ratectl_name_check(q->budget) != 0)
		return say(err, errlen, RATECTL_EBADNAME, "shared: '%.64s' is not a budget "
		           "name", q->budget ? q->budget : "(null)");
	if (q->n < 1 || q->n > RATECTL_MAX_LIMITS)
		return say(err, errlen, -EINVAL, "shared: budget %s: %u limits, not 1 .. %d",
		           q->budget, q->n, RATECTL_MAX_LIMITS);
	for (d = 0; d < 2; d++)
		if (q->need[d] > q->want[d])
			return say(err, errlen, -EINVAL, "shared: budget %s: need %" PRIu64
			           " is more than want %" PRIu64, q->budget, q->need[d],
			           q->want[d]);
	if (q->carried_cool < 0 || q->push_cool < 0)
		return say(err, errlen, -EINVAL, "shared: budget %s: a negative time",
		           q->budget);
	for (i = 0; i < q->n; i++) {
		const rc_glimit *l = &q->lim[i];

		if (l->dim != RATECTL_REQUESTS && l->dim != RATECTL_TOKENS)
			return say(err, errlen, -EINVAL, "shared: budget %s: limit %u: "
			           "dimension %u", q->budget, i + 1, l->dim);
		if (l->period_ns < 1 || l->period_ns > RATECTL_PERIOD_MAX || l->count < 1 ||
		    l->count > (uint64_t)l->period_ns || l->burst < 1)
			return say(err, errlen, -EINVAL, "shared: budget %s: limit %u: count "
			           "%" PRIu64 ", period %" PRId64 " ns, burst %" PRIu64,
			           q->budget, i + 1, l->count, l->period_ns, l->burst);
		/* tau = burst * period / count, in 128 bits */
		if ((unsigned __int128)l->burst * (uint64_t)l->period_ns >
		    (unsigned __int128)RC_TAU_MAX * l->count)
			return say(err, errlen, -EINVAL, "shared: budget %s: limit %u: a "
			           "burst of more than 100 days of the rate cannot be shared",
			           q->budget, i + 1);
		if (q->need[l->dim] > l->burst)
			return say(err, errlen, RATECTL_ETOOBIG, "shared: budget %s: need %"
			           PRIu64 " is more than limit %u's burst %" PRIu64, q->budget,
			           q->need[l->dim], i + 1, l->burst);
		if (q->carried_tat[i] < 0 || q->push_tat[i] < 0)
			return say(err, errlen, -EINVAL, "shared: budget %s: a negative time",
			           q->budget);
	}
	return 0;
}

static void take_build(take_args *a, const char *sha, const rc_take_req *q)
{
	size_t o = 0;
	unsigned i;
	int d;

	a->argc = 0;
	snprintf(a->key, sizeof a->key, "{rc:%s}", q->budget);
	for (i = 0; i < q->n; i++)
		o += (size_t)snprintf(a->sig + o, sizeof a->sig - o, "%s%c%" PRIu64 "/%"
		                      PRId64 "/%" PRIu64, i ? "," : "",
		                      q->lim[i].dim == RATECTL_TOKENS ? 't' : 'r',
		                      q->lim[i].count, q->lim[i].period_ns, q->lim[i].burst);
	arg_str(a, "EVALSHA");
	arg_str(a, sha);
	arg_str(a, "1");
	arg_str(a, a->key);
	arg_u64(a, q->n);
	arg_str(a, a->sig);
	for (d = 0; d < 2; d++)
		arg_u64(a, amount(q->give[d]));
	for (d = 0; d < 2; d++)
		arg_u64(a, amount(q->need[d]));
	for (d = 0; d < 2; d++)
		arg_u64(a, amount(q->want[d]));
	arg_time(a, q->carried_cool);
	arg_time(a, q->push_cool);
	for (i = 0; i < q->n; i++) {
		arg_u64(a, q->lim[i].dim);
		arg_u64(a, q->lim[i].count);
		arg_u64(a, (uint64_t)q->lim[i].period_ns);
		arg_u64(a, q->lim[i].burst);
		arg_time(a, q->carried_tat[i]);
		arg_time(a, q->push_tat[i]);
	}
	arg_u64(a, amount(q->carried_gen));
}

/* The script's reply, checked element by element: nothing of another
 * shape or out of range reaches the caller. */
static int take_parse(const redisReply *rep, const rc_take_req *q,
                      rc_take_res *out, char *why, size_t whylen)
{
	int64_t v[9 + RATECTL_MAX_LIMITS], base;
	size_t i, n = 9 + q->n;
	int d;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n)
		return say(why, whylen, RATECTL_EPARSE, "a reply of type %d with %zu "
		           "elements, not an array of %zu", rep->type,
		           rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0, n);
	for (i = 0; i < n; i++) {
		if (rep->element[i]->type != REDIS_REPLY_INTEGER)
			return say(why, whylen, RATECTL_EPARSE, "element %zu of the reply is "
			           "of type %d, not an integer", i + 1, rep->element[i]->type);
		v[i] = (int64_t)rep->element[i]->integer;
		if (v[i] < 0 || v[i] >= RC_EXACT)
			return say(why, whylen, RATECTL_EPARSE, "element %zu of the reply "
			           "is out of range: %" PRId64, i + 1, v[i]);
	}
	for (d = 0; d < 2; d++)
		if ((uint64_t)v[d] > amount(q->want[d]))
			return say(why, whylen, RATECTL_EPARSE, "granted %" PRId64 " of "
			           "dimension %d, more than the %" PRIu64 " asked", v[d], d,
			           q->want[d]);
	if (v[3] == 0 || v[6] > 1 || v[7] > 1)
		return say(why, whylen, RATECTL_EPARSE, "a reply out of range");
	base = v[3] * 1000;    /* < 2^53 * 1000 < 2^63, as is base + 2^53 */
	out->got[0] = (uint64_t)v[0];
	out->got[1] = (uint64_t)v[1];
	out->wait_ns = v[2];
	out->now = base + v[4];
	out->cool = v[5] ? base + v[5] : 0;
	out->sig_differs = (int)v[6];
	out->restored = (int)v[7];
	memset(out->tat, 0, sizeof out->tat);
	for (i = 0; i < q->n; i++)
		out->tat[i] = base + v[8 + i];
	out->gen = (uint64_t)v[8 + q->n];
	return 0;
}

int ratectl__redis_take(rc_redis *r, const rc_take_req *q, rc_take_res *out,
                        char *err, size_t errlen)
{
	take_args a;
	redisReply *rep = NULL;
	char why[200];
	int rc, tries;

	memset(out, 0, sizeof *out);
	if ((rc = take_check(q, err, errlen)) != 0)
		return rc;
	take_build(&a, r->sha, q);     /* argv[1] is r->sha: a reload keeps it */
	for (tries = 0;; tries++) {
		if ((rc = command(r, a.argc, a.argv, a.argl, 0, &rep, err, errlen)) != 0)
			return rc;
		if (tries == 1 || rep->type != REDIS_REPLY_ERROR ||
		    strncmp(rep->str, "NOSCRIPT", 8) != 0)
			break;
		/* The server lost its scripts (SCRIPT FLUSH, a restart): load
		 * it again and run it once more. */
		freeReplyObject(rep);
		if ((rc = script_load(r, err, errlen)) != 0)
			return rc;
	}
	if (rep->type == REDIS_REPLY_ERROR)
		rc = say(err, errlen, error_code(rep), "shared: '%s': budget %s: %.150s",
		         r->url, q->budget, rep->str);
	else if ((rc = take_parse(rep, q, out, why, sizeof why)) != 0)
		say(err, errlen, rc, "shared: '%s': budget %s: %s", r->url, q->budget, why);
	freeReplyObject(rep);
	return rc;
}
