/*
 * conf.h - the ratectl config file (INI, parsed with inih), inside
 * libratectl-http; the `ratectl` command uses it too (through the static
 * library).  Built on the public header only.
 *
 *   [openai]
 *   match       = api.openai.com          # host[:port][/path-prefix], several
 *   requests    = 500/min
 *   tokens      = 200000/min, 2000000/day
 *   concurrency = 16
 *   burst       = 10s                     # time of rate, or a count
 *   tenant      = header X-Ratectl-Tenant # each end user's budget too,
 *   tenant_template = user-*              # made from this template
 *
 *   [user-*]                              # a template, not a budget
 *   requests    = 20/min
 *   expire      = 1h
 *
 * See doc/ratectl.conf.5 for every key.
 */
#ifndef RATECTL_HTTP_CONF_H
#define RATECTL_HTTP_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "ratectl.h"

#define RH_CONF_MAX_MATCH 16
/* Per budget: model patterns ("gpt-4o*") and key ids (ratectl key-id). */
#define RH_CONF_MAX_MODELS 8
#define RH_CONF_MODEL_MAX 127
#define RH_CONF_MAX_KEYS 8
#define RH_KEY_ID_LEN 16
/* Per budget: the other budgets its requests are charged to as well
 * (`also`); with theirs, at most RATECTL_MANY_MAX budgets in all. */
#define RH_CONF_MAX_ALSO (RATECTL_MANY_MAX - 1)

/* Request header names the config may give (`tenant = header NAME`,
 * `tag = header NAME`): 1 to this many token characters. */
#define RH_CONF_HEADER_MAX 64

/* expire of a template when it gives none (ratectl.conf(5)). */
#define RH_CONF_EXPIRE_DEFAULT (3600LL * 1000000000LL)

/* The largest config file, in bytes (1 MiB; ratectl.conf(5)).  A file of
 * a thousand budgets is about 100 KiB; the cap is there so that a wrong
 * path (/dev/zero, a log file) fails at once, in bounded memory. */
#define RH_CONF_MAX_SIZE (1024 * 1024)

/* One match rule: host (lower-case), port (0: any), path prefix ("" any). */
typedef struct rh__match {
	char host[256];
	unsigned port;
	char path[256];
} rh__match;

enum { RH_ON_ERROR_OPEN = 0, RH_ON_ERROR_CLOSED = 1 };

/* Where a request's tenant comes from (`tenant`). */
enum { RH_TENANT_NONE = 0, RH_TENANT_HEADER = 1, RH_TENANT_KEY = 2 };

/* Which requests a budget's cache takes (`cache_requests`). */
enum { RH_CACHE_DETERMINISTIC = 0, RH_CACHE_EMBEDDINGS = 1, RH_CACHE_ANY = 2 };
#define RH_CACHE_SIZE_DEFAULT ((uint64_t)64 << 20)
#define RH_CACHE_ENTRY_DEFAULT ((uint64_t)1 << 20)
/* The most one budget's cache may hold, and its largest entry: the
 * whole cache environment maps RH_CACHE_MAP bytes (cache.c). */
#define RH_CACHE_SIZE_MAX ((uint64_t)1 << 30)
#define RH_CACHE_ENTRY_MAX ((uint64_t)64 << 20)
#define RH_CACHE_TTL_MAX (30LL * 86400 * 1000000000LL)

typedef struct rh__conf_budget {
	/* A budget's name, or a template's pattern: one '*' ("user-*"). */
	char name[RATECTL_NAME_MAX + 1];
	/* A template: a section whose name holds a '*'.  Its budget (limits,
	 * expire, weight, origin = name) is what a tenant's budget is made
	 * from; it has no match rules or policy settings of its own. */
	int is_template;
	ratectl_budget budget;         /* limits, concurrency, jitter */
	rh__match match[RH_CONF_MAX_MATCH];
	size_t nmatch;
	/* When given, the request's "model" must match one of models (glob,
	 * '*' any run of bytes) and its key's id one of keys. */
	char models[RH_CONF_MAX_MODELS][RH_CONF_MODEL_MAX + 1];
	size_t nmodels;
	char keys[RH_CONF_MAX_KEYS][RH_KEY_ID_LEN + 1];
	size_t nkeys;
	/* Budgets charged too, whatever their own match rules: checked to
	 * exist once the whole file is read (rh__conf_charged()). */
	char also[RH_CONF_MAX_ALSO][RATECTL_NAME_MAX + 1];
	size_t nalso;
	unsigned also_line;            /* of the `also` key, for messages */
	/* Each request is charged to its tenant's budget as well, first:
	 * the template tenant_template with its '*' replaced by the value of
	 * request header tenant_header (RH_TENANT_HEADER) or by the key id
	 * (RH_TENANT_KEY); tenant_default when the request has none ("":
	 * then no tenant).  The template is checked to exist once the whole
	 * file is read. */
	int tenant_from;               /* RH_TENANT_* */
	char tenant_header[RH_CONF_HEADER_MAX + 1];
	char tenant_template[RATECTL_NAME_MAX + 1];
	char tenant_default[RATECTL_NAME_MAX + 1];
	unsigned tenant_line;          /* of `tenant_template`, for messages */
	unsigned tenant_default_line;
	/* The tag of a request (ratectl_cost.tag) from this header, or "". */
	char tag_header[RH_CONF_HEADER_MAX + 1];
	int on_error;                  /* RH_ON_ERROR_*; default open */
	unsigned retries;              /* shim: re-sends after 429/503; 0 */
	unsigned retry_percent;        /* retry budget, % of requests; 20 */
	int64_t timeout_ns;            /* shim: longest wait to admit; 60 s */
	unsigned bytes_per_token;      /* prompt estimate: body bytes / this; 4 */
	uint64_t default_max_tokens;   /* completion estimate when the body has
	                                  no max_tokens; 0 */
	/* Shared by many hosts through Redis (`shared`, `password_file`,
	 * `password_env`, `hosts`, `on_redis_error`); share.url "" when not. */
	ratectl_share share;
	/* The response cache (`cache`, cache.c): off when cache_ttl_ns is 0. */
	int64_t cache_ttl_ns;
	uint64_t cache_size;           /* bytes of this budget's entries */
	uint64_t cache_entry_max;      /* the largest answer stored */
	int cache_requests;            /* RH_CACHE_* */
	unsigned cache_line;           /* of the first cache_* key, for messages */
	unsigned line;                 /* line of the [section] */
	/* How bursts were written, kept for rh__conf_budget_finish(): the
	 * section's `burst` as a duration or a count (both 0: none given), and
	 * which limits named their own ("500/min burst 50"). */
	int64_t burst_ns;
	uint64_t burst_count;
	uint8_t own_burst[RATECTL_MAX_LIMITS];
} rh__conf_budget;

/*
 * A loaded config: its budgets, budgets[0..nbudgets) in the order of the
 * file, then its templates, templates[0..ntemplates) in the order of the
 * file (templates == budgets + nbudgets: one array).  Code that walks
 * the budgets (`ratectl apply`, matching) never meets a template.
 */
typedef struct rh__conf {
	char path[4096];
	rh__conf_budget *budgets;
	size_t nbudgets;
	rh__conf_budget *templates;
	size_t ntemplates;
	uint32_t *index;           /* a hash of the names of both: section i */
	size_t icap;               /* of the array + 1, or 0; a power of two */
} rh__conf;

/*
 * Load and validate the config file at path (NULL: rh__conf_default_path()).
 * On error returns a negative code and writes into err (size errlen) a
 * message naming the file, line, key and what is wrong:
 *   "ratectl.conf:7: key 'tokens': '200000/fortnight': unknown unit ..."
 * Unknown keys and sections without limits are errors.  On success *out
 * is to be freed with rh__conf_free().
 *
 * The file is read whole before it is parsed, and anything short of that
 * is an error: -errno when it cannot be opened or a read fails (a read
 * error is never taken for the end of the file), RATECTL_EBADCONFIG when
 * it is not a regular file (a directory, FIFO, device or socket: checked
 * on the opened descriptor, which is opened without blocking) or holds a
 * NUL byte, -EFBIG when it is larger than RH_CONF_MAX_SIZE (at most that
 * many bytes plus one are ever read).  So a caller may act on what the
 * file leaves out (apply --prune) only when this returned 0.
 */
int rh__conf_load(rh__conf **out, const char *path, char *err, size_t errlen);
/* The same on text[0..len) in memory (which need not end in '\0'); name
 * stands for the file in messages. */
int rh__conf_parse(rh__conf **out, const char *name, const char *text, size_t len,
                  char *err, size_t errlen);
void rh__conf_free(rh__conf *conf);

/* $RATECTL_CONFIG, else /etc/ratectl.conf. */
const char *rh__conf_default_path(void);

/* Budget `name` of conf, or NULL (never a template). */
const rh__conf_budget *rh__conf_find(const rh__conf *conf, const char *name);
/* A template's name: one '*', and a valid budget name with it replaced
 * by a letter.  0, or RATECTL_EBADCONFIG with err. */
int rh__conf_pattern_check(const char *pattern, char *err, size_t errlen);
/* Template `pattern` ("user-*") of conf, or NULL. */
const rh__conf_budget *rh__conf_template_find(const rh__conf *conf,
                                              const char *pattern);

/*
 * The budget name template pattern makes for a tenant: its '*' replaced
 * by value[0..len), into out.  Nothing is cut or changed: a result longer
 * than RATECTL_NAME_MAX, or that is not a valid budget name, is
 * RATECTL_EBADNAME with err saying why (the value quoted, at most 64
 * bytes of it, non-printable bytes as '?').  Reads at most
 * RATECTL_NAME_MAX + 1 bytes of value.  0 or RATECTL_EBADNAME.
 */
int rh__tenant_name(char out[RATECTL_NAME_MAX + 1], const char *pattern,
                    const char *value, size_t len, char *err, size_t errlen);

/*
 * One budget built from key = value pairs exactly as a section of the file
 * is (`ratectl set` uses this): rh__conf_budget_init(), then
 * rh__conf_budget_key() for each pair, then rh__conf_budget_finish(), which
 * works out the limits' bursts.  Keys may not be repeated (except match:
 * the caller checks that).  On error both return RATECTL_EBADCONFIG and
 * write into err what is wrong with the value, without file or line:
 *   "rate '200000/fortnight': unknown unit 'fortnight' ..."
 * Neither requires the budget to have a limit: rh__conf_budget_has_limit().
 */
void rh__conf_budget_init(rh__conf_budget *b, const char *name);
int rh__conf_budget_key(rh__conf_budget *b, const char *key, const char *value,
                       char *err, size_t errlen);
int rh__conf_budget_finish(rh__conf_budget *b, char *err, size_t errlen);
/* The section's sharing keys, once it is read: `shared` with `hosts`, the
 * URL checked, one password source.  0 or -1 with err. */
int rh__conf_share_finish(rh__conf_budget *cb, char *err, size_t errlen);
int rh__conf_budget_has_limit(const rh__conf_budget *b);
/* 1 if key is a known key of a section, else 0. */
int rh__conf_key_known(const char *key);
/* A section is complete: its template defaults, and the tenant keys that
 * go together (tenant with tenant_template).  0 or RATECTL_EBADCONFIG
 * with err and *key (the key to name in the message, or NULL). */
int rh__conf_tenant_finish(const rh__conf_budget *cb, const char **key,
                           char *err, size_t errlen);

/* The cache keys of a complete section: cache_size, cache_entry_max and
 * cache_requests go with `cache`; defaults filled in.  0 or
 * RATECTL_EBADCONFIG with err and *key (the key to name). */
int rh__conf_cache_finish(rh__conf_budget *cb, const char **key, char *err,
                          size_t errlen);

/* Parse one "host[:port][/path-prefix]" (no scheme) into *m. 0 or -EINVAL. */
int rh__match_parse(rh__match *m, const char *s);

/* First budget with a rule matching host, port and path, or NULL. Host is
 * compared case-insensitively; the path is a prefix match.  A budget that
 * names models or keys matches only a request whose model (NULL: none)
 * matches one of its patterns and whose key id (NULL: none) is one of its
 * keys. */
const rh__conf_budget *rh__conf_match(const rh__conf *conf, const char *host,
                                      unsigned port, const char *path,
                                      const char *model, const char *key_id);
/*
 * The budgets a request matched to b is charged to, into names[0..cap)
 * (pointers into conf): b first, then each budget of its `also` followed
 * by that budget's own (depth first), each once.  Returns how many, or
 * RATECTL_ENOTFOUND when an `also` names no budget of conf (*bad: the
 * name), -E2BIG when there are more than cap.
 */
int rh__conf_charged(const rh__conf *conf, const rh__conf_budget *b,
                     const char **names, unsigned cap, const char **bad);

/* 1 when s matches glob pattern pat ('*': any run of bytes), else 0. */
int rh__glob(const char *pat, const char *s);

#endif
