/*
 * config_keys.c - the keys of a ratectl.conf section and their values
 * (see config.h and ratectl.conf(5)): rates, durations, counts, match
 * rules, and the bursts worked out from them.  config.c reads the file and
 * calls rh__conf_budget_key() for each key; `ratectl set` calls it for its
 * options, so both accept exactly the same values.
 *
 * Values are parsed with the library's parsers (ratectl_parse_rate,
 * ratectl_parse_duration), so the file, `ratectl set` and the shim accept
 * the same spellings, and limits are checked here against what ratectl.h
 * documents, so that a bad one is reported with its file and line rather
 * than by ratectl_budget_set() later.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"

#define NS_PER_S 1000000000LL
#define JITTER_MAX (3600 * NS_PER_S)
/* Longest expire: a year (a tenant idle longer is gone in any case). */
#define EXPIRE_MAX (366LL * 86400 * NS_PER_S)
/* Largest burst the library accepts: a year of the limit's rate. */
#define BURST_NS_MAX (366LL * 86400 * NS_PER_S)

static int errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Write a message into err and return RATECTL_EBADCONFIG. */
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return RATECTL_EBADCONFIG;
}

/* ASCII only: the shim parses this file inside other programs, whatever
 * locale they have set, and must read it the same way everywhere. */
static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* [s, e) without leading and trailing blanks, copied into out (size n). */
static void trim_copy(char *out, size_t n, const char *s, const char *e)
{
	size_t len;

	while (s < e && is_blank(*s))
		s++;
	while (e > s && is_blank(e[-1]))
		e--;
	len = (size_t)(e - s) < n - 1 ? (size_t)(e - s) : n - 1;
	memcpy(out, s, len);
	out[len] = '\0';
}

/* A whole number in [min, max]: digits only, blanks around allowed. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
                      char *err, size_t errlen)
{
	char buf[64];
	uint64_t v = 0;
	const char *p;

	trim_copy(buf, sizeof buf, s, s + strlen(s));
	if (buf[0] == '\0')
		return errf(err, errlen, "empty value; expected a whole number");
	for (p = buf; *p; p++) {
		if (*p < '0' || *p > '9')
			return errf(err, errlen, "'%s': expected a whole number", buf);
		if (v > (UINT64_MAX - 9) / 10)
			return errf(err, errlen, "'%s': number too large", buf);
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < min && max == UINT64_MAX)
		return errf(err, errlen, "'%s': must be at least %llu", buf,
		            (unsigned long long)min);
	if (v < min || v > max)
		return errf(err, errlen, "'%s': must be %llu .. %llu", buf,
		            (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

/* A duration in [min, max]; range says so in words for the message. */
static int parse_dur(const char *s, int64_t min, int64_t max, const char *range,
                     int64_t *out, char *err, size_t errlen)
{
	int64_t ns;

	if (ratectl_parse_duration(s, &ns) != 0)
		return errf(err, errlen, "%s", ratectl_errmsg());
	if (ns < min || ns > max)
		return errf(err, errlen, "duration '%s' must be %s", s, range);
	*out = ns;
	return 0;
}

static int all_digits(const char *s)
{
	while (is_blank(*s))
		s++;
	if (!is_digit(*s))
		return 0;
	while (is_digit(*s))
		s++;
	while (is_blank(*s))
		s++;
	return *s == '\0';
}

/* ---- match rules --------------------------------------------------------- */

/* The host of rule buf at *pp, lower-cased into m->host; *pp moves past it. */
static int match_host(rh__match *m, const char *buf, const char **pp, char *err,
                      size_t errlen)
{
	const char *p = *pp, *hs, *he, *q;

	if (*p == '[') {                        /* [IPv6 address] */
		hs = ++p;
		p += strcspn(p, "]");
		if (*p != ']')
			return errf(err, errlen, "match '%s': no ']' after the "
			            "IPv6 address", buf);
		he = p++;
	} else {
		hs = p;
		p += strcspn(p, ":/");
		he = p;
	}
	if (he == hs || (size_t)(he - hs) >= sizeof m->host)
		return errf(err, errlen, "match '%s': the host is empty or too long", buf);
	for (q = hs; q < he; q++) {
		if (!is_digit(*q) && !is_alpha(*q) && !strchr("-._:", *q))
			return errf(err, errlen, "match '%s': '%c' cannot be in a host "
			            "name", buf, *q);
		m->host[q - hs] = (char)(*q >= 'A' && *q <= 'Z' ? *q - 'A' + 'a' : *q);
	}
	*pp = p;
	return 0;
}

static int match_parse(rh__match *m, const char *s, char *err, size_t errlen)
{
	char buf[600], num[16];
	const char *p = buf, *q;
	uint64_t port = 0;

	trim_copy(buf, sizeof buf, s, s + strlen(s));
	memset(m, 0, sizeof *m);
	if (strstr(buf, "://"))
		return errf(err, errlen, "match '%s': give host[:port][/path] "
		            "without a scheme", buf);
	if (match_host(m, buf, &p, err, errlen) != 0)
		return RATECTL_EBADCONFIG;
	if (*p == ':') {
		q = ++p;
		p += strcspn(p, "/");
		trim_copy(num, sizeof num, q, p);
		if (parse_uint(num, 1, 65535, &port, NULL, 0) != 0)
			return errf(err, errlen, "match '%s': the port must be 1 .. 65535",
			            buf);
		m->port = (unsigned)port;
	}
	if (*p && (*p != '/' || strlen(p) >= sizeof m->path || strpbrk(p, " \t")))
		return errf(err, errlen, "match '%s': the path must start with '/', "
		            "without blanks, shorter than %zu", buf, sizeof m->path);
	memcpy(m->path, p, strlen(p) + 1);     /* length checked above */
	return 0;
}

int rh__match_parse(rh__match *m, const char *s)
{
	return match_parse(m, s, NULL, 0) == 0 ? 0 : -EINVAL;
}

/* ---- limits and bursts --------------------------------------------------- */

/*
 * A list separator is a comma that is not between two digits: "2,000,000/day"
 * is one rate (the library reads thousands separators), "200000/min,
 * 2000000/day" two.  A rate always ends with its unit, so nothing is lost.
 */
static const char *next_item(const char *s)
{
	const char *p;

	for (p = s; *p; p++)
		if (*p == ',' && !(p > s && is_digit(p[-1]) &&
		                   is_digit(p[1])))
			return p;
	return p;
}

/* Where the word "burst" starts in item, or NULL. */
static const char *find_burst_word(const char *item)
{
	const char *p;

	for (p = item; (p = strcasestr(p, "burst")) != NULL; p += 5)
		if ((p == item || is_blank(p[-1])) &&
		    (p[5] == '\0' || is_blank(p[5])))
			return p;
	return NULL;
}

/* Burst of a limit from "N" (a count) or a duration of its rate. */
static int burst_of(const ratectl_limit *l, const char *s, uint64_t *out,
                    char *err, size_t errlen)
{
	int64_t ns = 0;
	unsigned __int128 b;

	if (all_digits(s))
		return parse_uint(s, 1, UINT64_MAX, out, err, errlen);
	if (parse_dur(s, 1, BURST_NS_MAX, "more than 0", &ns, err, errlen) != 0)
		return RATECTL_EBADCONFIG;
	/* count * ns / period, rounded up: "10s of 500/min" is 84, never 83. */
	b = ((unsigned __int128)l->count * (uint64_t)ns + (uint64_t)l->period_ns - 1) /
	    (uint64_t)l->period_ns;
	*out = b > UINT64_MAX ? UINT64_MAX : (uint64_t)b;
	return 0;
}

static int limit_check(const rh__conf_budget *cb, const ratectl_limit *l,
                       const char *item, char *err, size_t errlen)
{
	const ratectl_budget *b = &cb->budget;
	unsigned i;

	if (l->period_ns < RATECTL_PERIOD_MIN || l->period_ns > RATECTL_PERIOD_MAX)
		return errf(err, errlen, "rate '%s': the period must be 1 s .. 1 day", item);
	if (l->count < 1 || l->count > (uint64_t)l->period_ns)
		return errf(err, errlen, "rate '%s': the count must be 1 .. one a "
		            "nanosecond", item);
	for (i = 0; i < b->nlimits; i++)
		if (b->limits[i].dim == l->dim && b->limits[i].period_ns == l->period_ns)
			return errf(err, errlen, "rate '%s': two %s limits with the same "
			            "period", item, l->dim == RATECTL_TOKENS ? "tokens" :
			            "requests");
	if (b->nlimits >= RATECTL_MAX_LIMITS)
		return errf(err, errlen, "more than %d limits in one budget",
		            RATECTL_MAX_LIMITS);
	return 0;
}

/* One "RATE [burst B]" item of a requests or tokens list. */
static int limit_add(rh__conf_budget *cb, ratectl_dim dim, const char *item,
                     char *err, size_t errlen)
{
	ratectl_limit l = { dim, 0, 0, 0 };
	const char *bw = find_burst_word(item);
	char rate[256];
	int rc;

	trim_copy(rate, sizeof rate, item, bw ? bw : item + strlen(item));
	if (ratectl_parse_rate(rate, &l.count, &l.period_ns) != 0)
		return errf(err, errlen, "%s", ratectl_errmsg());
	if ((rc = limit_check(cb, &l, rate, err, errlen)) != 0)
		return rc;
	if (bw) {
		if (burst_of(&l, bw + 5, &l.burst, err, errlen) != 0)
			return RATECTL_EBADCONFIG;
		cb->own_burst[cb->budget.nlimits] = 1;
	}
	cb->budget.limits[cb->budget.nlimits++] = l;
	return 0;
}

static int limits_add(rh__conf_budget *cb, ratectl_dim dim, const char *value,
                      char *err, size_t errlen)
{
	char item[256];
	const char *p = value, *e;
	int rc;

	do {
		e = next_item(p);
		trim_copy(item, sizeof item, p, e);
		if (item[0] == '\0')
			return errf(err, errlen, "'%s': empty item in the list", value);
		if ((rc = limit_add(cb, dim, item, err, errlen)) != 0)
			return rc;
		p = e + 1;
	} while (*e);
	return 0;
}

/* The limit of dim with the shortest period, or NULL. */
static const ratectl_limit *shortest(const ratectl_budget *b, ratectl_dim dim)
{
	const ratectl_limit *ref = NULL;
	unsigned i;

	for (i = 0; i < b->nlimits; i++)
		if (b->limits[i].dim == dim &&
		    (!ref || b->limits[i].period_ns < ref->period_ns))
			ref = &b->limits[i];
	return ref;
}

/*
 * Burst of limit l from the section's `burst`, see ratectl.conf(5).  It
 * applies to the shortest-period limit of each dimension only: ten seconds
 * of a daily quota would turn "2000000/day" into a rate of 23 tokens a
 * second that refuses any request over 232 tokens, which nobody means.
 * Longer limits keep the library's default (burst = count), which is how
 * providers count quotas.
 */
static int section_burst(const rh__conf_budget *cb, const ratectl_limit *l,
                         uint64_t *out, char *err, size_t errlen)
{
	const ratectl_limit *ref = shortest(&cb->budget, RATECTL_REQUESTS);
	unsigned __int128 num, den;
	int64_t ns = cb->burst_ns;

	if (cb->burst_count && l->dim == RATECTL_REQUESTS) {
		*out = cb->burst_count;
		return 0;
	}
	if (cb->burst_count) {
		if (!ref)
			return errf(err, errlen, "burst = %llu counts requests, but there "
			            "is no requests limit; give a duration (burst = 10s) or "
			            "a burst per limit (tokens = 200000/min burst 20000)",
			            (unsigned long long)cb->burst_count);
		/* The time that many requests take at the reference rate, as
		 * tokens of this limit: count * burst * ref.period / (ref.count *
		 * period), rounded up. */
		num = (unsigned __int128)l->count * cb->burst_count * (uint64_t)ref->period_ns;
		den = (unsigned __int128)ref->count * (uint64_t)l->period_ns;
	} else {
		num = (unsigned __int128)l->count * (uint64_t)ns;
		den = (uint64_t)l->period_ns;
	}
	num = (num + den - 1) / den;
	*out = num > UINT64_MAX ? UINT64_MAX : (uint64_t)num;
	return 0;
}

int rh__conf_budget_finish(rh__conf_budget *cb, char *err, size_t errlen)
{
	unsigned i;
	int rc;

	for (i = 0; i < cb->budget.nlimits; i++) {
		ratectl_limit *l = &cb->budget.limits[i];

		if (!cb->own_burst[i] && (cb->burst_ns || cb->burst_count) &&
		    l == shortest(&cb->budget, l->dim) &&
		    (rc = section_burst(cb, l, &l->burst, err, errlen)) != 0)
			return rc;
	}
	/* The library's own rules, so that what loads here also applies. */
	if (ratectl_budget_check(&cb->budget) != 0)
		return errf(err, errlen, "%s", ratectl_errmsg());
	return 0;
}

int rh__conf_share_finish(rh__conf_budget *cb, char *err, size_t errlen)
{
	if (!cb->share.url[0] && (cb->share.hosts || cb->share.password_file[0] ||
	                          cb->share.password_env[0] || cb->share.flags))
		return errf(err, errlen, "hosts, password_file, password_env and "
		            "on_redis_error need `shared = URL`");
	if (cb->share.url[0] && !cb->share.hosts)
		return errf(err, errlen, "shared: say how many hosts share it (`hosts = N`): "
		            "while Redis is unreachable each admits 1/N of every limit");
	if (cb->share.password_file[0] && cb->share.password_env[0])
		return errf(err, errlen, "password_file or password_env, not both");
	if (cb->share.url[0] && ratectl_share_check(&cb->share) != 0)
		return errf(err, errlen, "%s", ratectl_errmsg());
	return 0;
}

int rh__conf_budget_has_limit(const rh__conf_budget *cb)
{
	return cb->budget.nlimits > 0 || cb->budget.max_inflight > 0;
}

/* ---- keys ---------------------------------------------------------------- */

typedef int (*key_fn)(rh__conf_budget *cb, const char *v, char *err, size_t n);

static int key_match(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char item[600];
	const char *p = v, *e;
	int rc;

	do {
		e = strchr(p, ',');
		if (!e)
			e = p + strlen(p);
		trim_copy(item, sizeof item, p, e);
		if (cb->nmatch >= RH_CONF_MAX_MATCH)
			return errf(err, n, "more than %d match rules", RH_CONF_MAX_MATCH);
		if ((rc = match_parse(&cb->match[cb->nmatch], item, err, n)) != 0)
			return rc;
		cb->nmatch++;
		p = e + 1;
	} while (*e);
	return 0;
}

/* model = gpt-4o*, o1-*: glob patterns of the request body's "model". */
static int key_model(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char item[600];
	const char *p = v, *e;

	do {
		e = strchr(p, ',');
		if (!e)
			e = p + strlen(p);
		trim_copy(item, sizeof item, p, e);
		if (cb->nmodels >= RH_CONF_MAX_MODELS)
			return errf(err, n, "more than %d model patterns", RH_CONF_MAX_MODELS);
		if (!item[0] || strlen(item) > RH_CONF_MODEL_MAX)
			return errf(err, n, "model '%s': give 1 to %d bytes, '*' for any run",
			            item, RH_CONF_MODEL_MAX);
		/* length checked above: copy it with its NUL */
		memcpy(cb->models[cb->nmodels++], item, strlen(item) + 1);
		p = e + 1;
	} while (*e);
	return 0;
}

/* key = 3f2a...: key ids as `ratectl key-id` prints them, never keys. */
static int key_key(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char item[600];
	const char *p = v, *e;
	size_t i;

	do {
		e = strchr(p, ',');
		if (!e)
			e = p + strlen(p);
		trim_copy(item, sizeof item, p, e);
		if (cb->nkeys >= RH_CONF_MAX_KEYS)
			return errf(err, n, "more than %d keys", RH_CONF_MAX_KEYS);
		for (i = 0; item[i] && strchr("0123456789abcdef", item[i]); i++)
			;
		if (i != RH_KEY_ID_LEN || item[i])
			return errf(err, n, "key: not a key id (not shown: it may be a "
			            "key); give %d hex digits as `ratectl key-id` prints "
			            "them, never the key itself", RH_KEY_ID_LEN);
		memcpy(cb->keys[cb->nkeys++], item, RH_KEY_ID_LEN + 1);
		p = e + 1;
	} while (*e);
	return 0;
}

/* also = key-1, org: budgets charged as well (they exist: conf.c checks). */
static int key_also(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char item[600];
	const char *p = v, *e;
	size_t i;

	do {
		e = strchr(p, ',');
		if (!e)
			e = p + strlen(p);
		trim_copy(item, sizeof item, p, e);
		if (cb->nalso >= RH_CONF_MAX_ALSO)
			return errf(err, n, "more than %d budgets", RH_CONF_MAX_ALSO);
		if (!item[0] || strlen(item) > RATECTL_NAME_MAX)
			return errf(err, n, "'%s': give the name of another budget", item);
		if (strcmp(item, cb->name) == 0)
			return errf(err, n, "'%s' is this budget itself", item);
		for (i = 0; i < cb->nalso; i++)
			if (strcmp(cb->also[i], item) == 0)
				return errf(err, n, "'%s' is named twice", item);
		/* length checked above: copy it with its NUL */
		memcpy(cb->also[cb->nalso++], item, strlen(item) + 1);
		p = e + 1;
	} while (*e);
	return 0;
}

static int key_requests(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return limits_add(cb, RATECTL_REQUESTS, v, err, n);
}

static int key_tokens(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return limits_add(cb, RATECTL_TOKENS, v, err, n);
}

static int key_concurrency(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	uint64_t x;
	int rc = parse_uint(v, 0, RATECTL_MAX_INFLIGHT, &x, err, n);

	cb->budget.max_inflight = (uint32_t)x;
	return rc;
}

static int key_burst(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	if (all_digits(v))
		return parse_uint(v, 1, UINT64_MAX, &cb->burst_count, err, n);
	return parse_dur(v, 1, BURST_NS_MAX, "more than 0", &cb->burst_ns,
	                 err, n);
}

static int key_jitter(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return parse_dur(v, 0, JITTER_MAX, "0 .. 1h", &cb->budget.jitter_ns,
	                 err, n);
}

static int key_on_error(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char w[32];

	trim_copy(w, sizeof w, v, v + strlen(v));
	if (strcasecmp(w, "open") == 0)
		cb->on_error = RH_ON_ERROR_OPEN;
	else if (strcasecmp(w, "closed") == 0)
		cb->on_error = RH_ON_ERROR_CLOSED;
	else
		return errf(err, n, "'%s': expected open or closed", w);
	return 0;
}

static int key_retries(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	uint64_t x;
	int rc = parse_uint(v, 0, 100, &x, err, n);

	cb->retries = (unsigned)x;
	return rc;
}

/* "20" or "20%", in [min, 100]. */
static int parse_percent(const char *v, uint64_t min, unsigned *out, char *err,
                         size_t n)
{
	char w[32];
	size_t len;
	uint64_t x;
	int rc;

	trim_copy(w, sizeof w, v, v + strlen(v));
	len = strlen(w);
	if (len > 0 && w[len - 1] == '%')
		w[len - 1] = '\0';
	if ((rc = parse_uint(w, min, 100, &x, err, n)) == 0)
		*out = (unsigned)x;
	return rc;
}

static int key_retry_budget(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return parse_percent(v, 0, &cb->retry_percent, err, n);
}

static int key_batch_share(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return parse_percent(v, 1, &cb->budget.batch_share, err, n);
}

static int key_timeout(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return parse_dur(v, 0, RATECTL_PERIOD_MAX, "0 .. 1 day", &cb->timeout_ns,
	                 err, n);
}

static int key_bytes_per_token(rh__conf_budget *cb, const char *v, char *err,
                               size_t n)
{
	uint64_t x;
	int rc = parse_uint(v, 1, 1000, &x, err, n);

	cb->bytes_per_token = (unsigned)x;
	return rc;
}

static int key_default_max_tokens(rh__conf_budget *cb, const char *v, char *err,
                                  size_t n)
{
	return parse_uint(v, 0, 1000000000, &cb->default_max_tokens, err, n);
}

/* A string value into a fixed field: too long is an error, never cut. */
static int key_string(char *out, size_t size, const char *what, const char *v,
                      char *err, size_t n)
{
	char w[1024];

	if (strlen(v) >= sizeof w)
		return errf(err, n, "%s: longer than %zu bytes", what, size - 1);
	trim_copy(w, sizeof w, v, v + strlen(v));
	if (!w[0])
		return errf(err, n, "%s: empty", what);
	if (strlen(w) >= size)
		return errf(err, n, "%s: longer than %zu bytes", what, size - 1);
	memcpy(out, w, strlen(w) + 1);
	return 0;
}

static int key_shared(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	int rc = key_string(cb->share.url, sizeof cb->share.url, "shared", v, err, n);

	cb->share.version = RATECTL_SHARE_VERSION;
	return rc;
}

static int key_password_file(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return key_string(cb->share.password_file, sizeof cb->share.password_file,
	                  "password_file", v, err, n);
}

static int key_password_env(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	const char *p;
	int rc = key_string(cb->share.password_env, sizeof cb->share.password_env,
	                    "password_env", v, err, n);

	for (p = cb->share.password_env; rc == 0 && *p; p++)
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9' && p != cb->share.password_env)))
			return errf(err, n, "password_env: '%s' is not a variable's name",
			            cb->share.password_env);
	return rc;
}

static int key_hosts(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	uint64_t x;
	int rc = parse_uint(v, 1, 1000000, &x, err, n);

	cb->share.hosts = (unsigned)x;
	return rc;
}

static int key_on_redis_error(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char w[32];

	trim_copy(w, sizeof w, v, v + strlen(v));
	if (strcasecmp(w, "share") == 0)
		cb->share.flags &= ~(unsigned)RATECTL_SHARE_OPEN;
	else if (strcasecmp(w, "open") == 0)
		cb->share.flags |= RATECTL_SHARE_OPEN;
	else
		return errf(err, n, "'%s': expected share or open", w);
	return 0;
}


/* ---- templates and tenants ------------------------------------------------- */

/* An HTTP field name: 1 .. RH_CONF_HEADER_MAX token characters (RFC 9110). */
static int header_name(char *out, const char *what, const char *v, char *err,
                       size_t n)
{
	char w[RH_CONF_HEADER_MAX + 2];
	size_t len;

	while (is_blank(*v))
		v++;
	len = strlen(v);
	while (len && is_blank(v[len - 1]))
		len--;
	if (len == 0 || len > RH_CONF_HEADER_MAX)
		return errf(err, n, "%s: give `header NAME`, a header name of 1 to %d "
		            "characters", what, RH_CONF_HEADER_MAX);
	memcpy(w, v, len);
	w[len] = '\0';
	if (w[strspn(w, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
	            "ABCDEFGHIJKLMNOPQRSTUVWXYZ")] != '\0')
		return errf(err, n, "%s: '%s' is not a header name", what, w);
	memcpy(out, w, len + 1);
	return 0;
}

/* "header NAME": the word, blanks, then the name into out. */
static int header_source(char *out, const char *what, const char *v, char *err,
                         size_t n)
{
	while (is_blank(*v))
		v++;
	if (strncasecmp(v, "header", 6) != 0 || !is_blank(v[6]))
		return errf(err, n, "%s: expected `header NAME`%s", what,
		            strcmp(what, "tenant") == 0 ? " or `key`" : "");
	return header_name(out, what, v + 7, err, n);
}

/* tenant = header X-Ratectl-Tenant | key */
static int key_tenant(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char w[8];

	trim_copy(w, sizeof w, v, v + strlen(v));
	if (strcasecmp(w, "key") == 0) {
		cb->tenant_from = RH_TENANT_KEY;
		return 0;
	}
	if (header_source(cb->tenant_header, "tenant", v, err, n) != 0)
		return RATECTL_EBADCONFIG;
	cb->tenant_from = RH_TENANT_HEADER;
	return 0;
}

int rh__conf_pattern_check(const char *pat, char *err, size_t n)
{
	const char *star = strchr(pat, '*');
	char name[RATECTL_NAME_MAX + 2];

	if (!star || strchr(star + 1, '*'))
		return errf(err, n, "'%s': a template's name has one '*', where the "
		            "tenant goes (user-*)", pat);
	if (strlen(pat) > RATECTL_NAME_MAX)
		return errf(err, n, "'%s': longer than %d characters", pat,
		            RATECTL_NAME_MAX);
	memcpy(name, pat, strlen(pat) + 1);
	name[star - pat] = 'x';
	if (ratectl_name_check(name) != 0)
		return errf(err, n, "'%s': with its '*' replaced, not a budget name: "
		            "1 to %d characters of A-Z a-z 0-9 . _ -, not starting "
		            "with . or -", pat, RATECTL_NAME_MAX);
	return 0;
}

static int key_tenant_template(rh__conf_budget *cb, const char *v, char *err,
                               size_t n)
{
	char w[RATECTL_NAME_MAX + 2];

	if (strlen(v) > 2 * RATECTL_NAME_MAX)
		return errf(err, n, "longer than %d characters", RATECTL_NAME_MAX);
	trim_copy(w, sizeof w, v, v + strlen(v));
	if (rh__conf_pattern_check(w, err, n) != 0)
		return RATECTL_EBADCONFIG;
	memcpy(cb->tenant_template, w, strlen(w) + 1);
	return 0;
}

/* Checked against the template once the file is read (conf.c). */
static int key_tenant_default(rh__conf_budget *cb, const char *v, char *err,
                              size_t n)
{
	char w[RATECTL_NAME_MAX + 2];

	if (strlen(v) > 2 * RATECTL_NAME_MAX)
		return errf(err, n, "longer than %d characters", RATECTL_NAME_MAX);
	trim_copy(w, sizeof w, v, v + strlen(v));
	if (!w[0] || strlen(w) > RATECTL_NAME_MAX)
		return errf(err, n, "give 1 to %d characters", RATECTL_NAME_MAX);
	memcpy(cb->tenant_default, w, strlen(w) + 1);
	return 0;
}

static int key_tag(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return header_source(cb->tag_header, "tag", v, err, n);
}

/* expire = DURATION | never (0: never) */
static int key_expire(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char w[16];

	trim_copy(w, sizeof w, v, v + strlen(v));
	if (strcasecmp(w, "never") == 0) {
		cb->budget.expire_ns = 0;
		return 0;
	}
	return parse_dur(v, 0, EXPIRE_MAX, "0 (never) .. 366 days",
	                 &cb->budget.expire_ns, err, n);
}

static int key_weight(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	uint64_t x;
	int rc = parse_uint(v, 1, RATECTL_WEIGHT_MAX, &x, err, n);

	if (rc == 0)
		cb->budget.weight = (unsigned)x;
	return rc;
}

/* ---- the response cache ----------------------------------------------- */

static int key_cache(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char w[16];

	trim_copy(w, sizeof w, v, v + strlen(v));
	if (strcasecmp(w, "off") == 0) {
		cb->cache_ttl_ns = 0;
		return 0;
	}
	return parse_dur(v, 0, RH_CACHE_TTL_MAX, "off, 0 (off) .. 30 days",
	                 &cb->cache_ttl_ns, err, n);
}

/* A size in bytes: a whole number with an optional K, M or G (powers of
 * 1024), in [1 KiB, max]. */
static int parse_size(const char *v, uint64_t max, uint64_t *out, char *err,
                      size_t n)
{
	char w[32];
	size_t len;
	unsigned shift = 0;
	uint64_t x;
	int rc;

	trim_copy(w, sizeof w, v, v + strlen(v));
	len = strlen(w);
	if (len > 1) {
		switch (w[len - 1]) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		}
		if (shift)
			w[len - 1] = '\0';
	}
	if ((rc = parse_uint(w, 0, max >> shift, &x, err, n)) != 0)
		return errf(err, n, "'%s': expected a size of 1K .. %lluM (a number "
		            "of bytes, or with K, M or G)", v, (unsigned long long)(max >> 20));
	x <<= shift;
	if (x < 1024)
		return errf(err, n, "'%s': expected a size of 1K .. %lluM", v,
		            (unsigned long long)(max >> 20));
	*out = x;
	return 0;
}

static int key_cache_size(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return parse_size(v, RH_CACHE_SIZE_MAX, &cb->cache_size, err, n);
}

static int key_cache_entry_max(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	return parse_size(v, RH_CACHE_ENTRY_MAX, &cb->cache_entry_max, err, n);
}

static int key_cache_requests(rh__conf_budget *cb, const char *v, char *err, size_t n)
{
	char w[32];

	trim_copy(w, sizeof w, v, v + strlen(v));
	if (strcasecmp(w, "deterministic") == 0)
		cb->cache_requests = RH_CACHE_DETERMINISTIC;
	else if (strcasecmp(w, "embeddings") == 0)
		cb->cache_requests = RH_CACHE_EMBEDDINGS;
	else if (strcasecmp(w, "any") == 0)
		cb->cache_requests = RH_CACHE_ANY;
	else
		return errf(err, n, "'%s': expected deterministic, embeddings or any", w);
	return 0;
}

int rh__conf_cache_finish(rh__conf_budget *cb, const char **key, char *err,
                          size_t errlen)
{
	*key = NULL;
	if (!cb->cache_ttl_ns && (cb->cache_size || cb->cache_entry_max ||
	                          cb->cache_requests)) {
		*key = cb->cache_size ? "cache_size" : cb->cache_entry_max ?
		       "cache_entry_max" : "cache_requests";
		return errf(err, errlen, "goes with `cache = DURATION` (the time "
		            "an answer is kept)");
	}
	if (!cb->cache_size)
		cb->cache_size = RH_CACHE_SIZE_DEFAULT;
	if (!cb->cache_entry_max)
		cb->cache_entry_max = cb->cache_size < RH_CACHE_ENTRY_DEFAULT ?
		                      cb->cache_size : RH_CACHE_ENTRY_DEFAULT;
	if (cb->cache_entry_max > cb->cache_size) {
		*key = "cache_entry_max";
		return errf(err, errlen, "%llu bytes is more than cache_size (%llu)",
		            (unsigned long long)cb->cache_entry_max,
		            (unsigned long long)cb->cache_size);
	}
	return 0;
}

int rh__tenant_name(char out[RATECTL_NAME_MAX + 1], const char *pattern,
                    const char *value, size_t len, char *err, size_t errlen)
{
	const char *star = strchr(pattern, '*');
	size_t pre, post, room, i;
	char shown[RATECTL_NAME_MAX + 1];

	out[0] = '\0';
	if (!star || strlen(pattern) > RATECTL_NAME_MAX) {
		errf(err, errlen, "'%s' is not a template", pattern);
		return RATECTL_EBADNAME;
	}
	pre = (size_t)(star - pattern);
	post = strlen(star + 1);
	room = RATECTL_NAME_MAX - pre - post;   /* >= 1: pattern <= 64 with '*' */
	/* What to quote: at most 64 bytes, printable ASCII. */
	for (i = 0; i < len && i < sizeof shown - 1; i++)
		shown[i] = value[i] >= 0x20 && value[i] < 0x7f ? value[i] : '?';
	shown[i] = '\0';
	if (len > room) {
		errf(err, errlen, "tenant '%s%s': longer than the %zu characters "
		     "template [%s] leaves for it", shown, len > i ? "..." : "",
		     room, pattern);
		return RATECTL_EBADNAME;
	}
	if (len == 0 || memchr(value, '\0', len)) {
		errf(err, errlen, "tenant '%s': empty or holds a NUL byte", shown);
		return RATECTL_EBADNAME;
	}
	memcpy(out, pattern, pre);
	memcpy(out + pre, value, len);
	memcpy(out + pre + len, star + 1, post + 1);
	if (ratectl_name_check(out) != 0) {
		errf(err, errlen, "tenant '%s': [%s] is not a budget name: 1 to %d "
		     "characters of A-Z a-z 0-9 . _ -, not starting with . or -",
		     shown, out, RATECTL_NAME_MAX);
		out[0] = '\0';
		return RATECTL_EBADNAME;
	}
	return 0;
}

int rh__conf_tenant_finish(const rh__conf_budget *cb, const char **key,
                           char *err, size_t errlen)
{
	*key = NULL;
	if (cb->is_template)
		return 0;
	if (cb->tenant_from && !cb->tenant_template[0]) {
		*key = "tenant";
		return errf(err, errlen, "give the template of the tenants' budgets "
		            "too (tenant_template = user-*)");
	}
	if (!cb->tenant_from && cb->tenant_template[0]) {
		*key = "tenant_template";
		return errf(err, errlen, "say where the tenant comes from too "
		            "(tenant = header X-Ratectl-Tenant, or tenant = key)");
	}
	if (!cb->tenant_from && cb->tenant_default[0]) {
		*key = "tenant_default";
		return errf(err, errlen, "goes with `tenant`");
	}
	return 0;
}

/* Where a key may be: in a budget's section, in a template's, or both.
 * A template holds limits only: the request that reaches its budgets
 * is matched, ruled and shared by the budget it goes to. */
enum { K_B = 1, K_T = 2, K_BT = 3 };

static const struct key {
	const char *name;
	key_fn fn;
	int where;
} keys[] = {
	{ "match", key_match, K_B },
	{ "model", key_model, K_B },
	{ "key", key_key, K_B },
	{ "also", key_also, K_B },
	{ "requests", key_requests, K_BT },
	{ "tokens", key_tokens, K_BT },
	{ "concurrency", key_concurrency, K_BT },
	{ "burst", key_burst, K_BT },
	{ "jitter", key_jitter, K_BT },
	{ "batch_share", key_batch_share, K_BT },
	{ "on_error", key_on_error, K_B },
	{ "retries", key_retries, K_B },
	{ "retry_budget", key_retry_budget, K_B },
	{ "timeout", key_timeout, K_B },
	{ "bytes_per_token", key_bytes_per_token, K_B },
	{ "default_max_tokens", key_default_max_tokens, K_B },
	{ "shared", key_shared, K_B },
	{ "password_file", key_password_file, K_B },
	{ "password_env", key_password_env, K_B },
	{ "hosts", key_hosts, K_B },
	{ "on_redis_error", key_on_redis_error, K_B },
	{ "tenant", key_tenant, K_B },
	{ "tenant_template", key_tenant_template, K_B },
	{ "tenant_default", key_tenant_default, K_B },
	{ "tag", key_tag, K_B },
	{ "expire", key_expire, K_T },
	{ "weight", key_weight, K_BT },
	{ "cache", key_cache, K_B },
	{ "cache_size", key_cache_size, K_B },
	{ "cache_entry_max", key_cache_entry_max, K_B },
	{ "cache_requests", key_cache_requests, K_B },
};
#define NKEYS (sizeof keys / sizeof keys[0])

static int key_index(const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

int rh__conf_key_known(const char *key)
{
	return key_index(key) >= 0;
}

void rh__conf_budget_init(rh__conf_budget *cb, const char *name)
{
	static const ratectl_budget init = RATECTL_BUDGET_INIT;

	memset(cb, 0, sizeof *cb);
	snprintf(cb->name, sizeof cb->name, "%s", name);
	cb->budget = init;
	if (strchr(cb->name, '*')) {
		/* Its budgets are tenants, removed once idle an hour. */
		cb->is_template = 1;
		cb->budget.expire_ns = RH_CONF_EXPIRE_DEFAULT;
		cb->budget.weight = 1;
		memcpy(cb->budget.origin, cb->name, sizeof cb->budget.origin);
	}
	cb->on_error = RH_ON_ERROR_OPEN;
	cb->share.version = RATECTL_SHARE_VERSION;
	cb->retry_percent = 20;
	cb->timeout_ns = 60 * NS_PER_S;
	cb->bytes_per_token = 4;
}

int rh__conf_budget_key(rh__conf_budget *cb, const char *key, const char *value,
                       char *err, size_t errlen)
{
	int i = key_index(key);

	if (i < 0)
		return errf(err, errlen, "unknown key '%s'", key);
	if (cb->is_template && !(keys[i].where & K_T))
		return errf(err, errlen, "not in a template: a template gives the "
		            "limits of the budgets made from it (requests, tokens, "
		            "concurrency, burst, jitter, batch_share, expire, weight); "
		            "the budget a request goes to rules the rest");
	if (!cb->is_template && !(keys[i].where & K_B))
		return errf(err, errlen, "only in a template (a section named with "
		            "one '*', such as [user-*])");
	return keys[i].fn(cb, value, err, errlen);
}
