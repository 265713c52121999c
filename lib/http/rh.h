/*
 * rh.h - what the files of libratectl-http share (internal: rh__ names,
 * never exported from libratectl-http.so; see lib/http/exports.map).
 *
 *   conf.c, conf_keys.c  the config file, ratectl.conf(5)     (conf.h)
 *   config.c             the config through the public header, for tools
 *   jscan.c              max_tokens and model from a request body (jscan.h)
 *   hdr.c                providers' rate-limit headers as windows
 *   body.c, usage.c      usage in a response body, JSON or SSE (usage.h)
 *   msg.c                why a request is refused, in words
 *   match.c              URL, model and key of a request; key ids
 *   sha256.c             SHA-256 for key ids
 *   retry.c              recognising retries, backoff, the local 429
 *   handle.c             ratectl_http: config reloads, the ledger, fork
 *   request.c            one request: begin, admit, response, end
 *   cache.c              the host-wide response cache
 *
 * Calls go one way: request.c -> handle.c, retry.c, match.c -> the pure
 * files (jscan, hdr, body, usage, msg, sha256, conf).
 */
#ifndef RATECTL_HTTP_RH_H
#define RATECTL_HTTP_RH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ratectl.h"
#include "ratectl_http.h"
#include "conf.h"
#include "jscan.h"
#include "usage.h"

#define RH_NS_PER_S 1000000000LL
#define RH_NS_PER_MS 1000000LL

/* ---- body.c: the usage a response body reports ------------------------- */

/*
 * A body fed as it arrives, in pieces of any size, scanned for usage in
 * fixed memory (rh_usage_parser, usage.h); JSON or SSE decided at its
 * first non-blank byte from content_type (NULL: none) or the byte itself
 * (see body.c).
 */
struct rh__body {
	rh_usage_parser p;
	int started;               /* the mode is chosen, p is initialised */
	uint64_t total;            /* bytes fed */
};

void rh__body_reset(struct rh__body *b);
void rh__body_feed(struct rh__body *b, const char *content_type, const char *p,
                   size_t len);
/* Tokens the body reports using: its total, else input + output (either
 * alone counting as the sum), with *tokens and 1; 0 when none.  Ends the
 * scan: feed no more until reset. */
int rh__body_usage(struct rh__body *b, uint64_t *tokens);

/* ---- hdr.c: providers' rate-limit headers ------------------------------- */

/* The value of response header `name` (case-insensitive), or NULL. */
typedef const char *(*rh__hdr_get)(void *ctx, const char *name);

/* At most this many windows from one response. */
#define RH_HDR_WINDOWS 8
/* Longest policy name of an IETF RateLimit header that is compared;
 * longer names are cut to it (and may then mix up two policies). */
#define RH_HDR_NAME_MAX 64
/* The longest header value read: a longer one is taken as absent (a
 * cut number or list could say something the provider did not). */
#define RH_HDR_VALUE_MAX 1024
/* Values held at once by rh__hdr_windows() (limit, remaining, reset). */
#define RH_HDR_KEEP 4

/* Copies of header values, for a lookup whose values do not last. */
struct rh__hdr_copies {
	char buf[RH_HDR_KEEP][RH_HDR_VALUE_MAX + 1];
	unsigned next;
};

/* v copied into the next of c's buffers (the oldest is reused), or NULL
 * when v is NULL or longer than RH_HDR_VALUE_MAX. */
const char *rh__hdr_keep(struct rh__hdr_copies *c, const char *v);

/*
 * The windows the headers describe, into out[0..cap): OpenAI's and Azure
 * OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens} (per
 * minute; reset a Go duration), Anthropic's anthropic-ratelimit-{requests,
 * tokens,input-tokens,output-tokens}-{limit,remaining,reset} (per minute;
 * reset an RFC 3339 time, against wall_now_ns, CLOCK_REALTIME), and the
 * IETF draft's RateLimit-Policy + RateLimit.  See doc/http.md for the
 * dimension each maps to.  Values that cannot be trusted (negative,
 * garbage, 0 left with no reset) are skipped.  Returns how many.
 */
size_t rh__hdr_windows(rh__hdr_get get, void *ctx, int64_t wall_now_ns,
                       ratectl_window *out, size_t cap);

/* A count: optional blanks, digits, optional blanks; 0 or -1 (also on
 * overflow). */
int rh__hdr_count(const char *s, uint64_t *v);

/* The response header names the policy reads (lower-case), NULL-ended. */
extern const char *const rh__hdr_names[];
extern const size_t rh__hdr_nnames;

/*
 * Response header values kept for one request: name and value copied
 * into a fixed arena, first occurrence of a name wins.  Values longer
 * than RH_HDR_VALUE_MAX are kept as absent; what does not fit the arena
 * is dropped (RH_HDR_ARENA holds every wanted header at a typical size).
 */
#define RH_HDR_ARENA 4096
#define RH_HDR_SLOTS 32

struct rh__hdrs {
	char arena[RH_HDR_ARENA];
	size_t used;
	struct { uint16_t name, value; } slot[RH_HDR_SLOTS];  /* arena offsets */
	unsigned n;
};

void rh__hdrs_reset(struct rh__hdrs *h);
/* Keep name: value when name is one the policy reads.  0, or -1 when it
 * was dropped (too long, arena full). */
int rh__hdrs_add(struct rh__hdrs *h, const char *name, const char *value);
/* The kept value of name, or NULL. */
const char *rh__hdrs_get(const struct rh__hdrs *h, const char *name);

/* ---- msg.c: why a request is refused ------------------------------------ */

/* Each writes a NUL-terminated message of at most n - 1 bytes into buf
 * (cut when longer) and returns buf. */
char *rh__refusal_toobig(char *buf, size_t n, const char *budget,
                         const char *dim, uint64_t cost, uint64_t burst);
char *rh__refusal_timeout(char *buf, size_t n, const char *budget,
                          int64_t timeout_ns);
char *rh__refusal_closed(char *buf, size_t n, const char *budget,
                         const char *why);
char *rh__refusal_retries(char *buf, size_t n, const char *budget,
                          unsigned percent);

/* ---- sha256.c ------------------------------------------------------------ */

void rh__sha256(const void *data, size_t len, uint8_t out[32]);

/* The same in pieces: init, update any number of times, final (which
 * wipes the context). */
struct rh__sha256_ctx {
	uint32_t st[8];
	uint8_t buf[64];
	size_t nbuf;
	uint64_t len;
};
void rh__sha256_init(struct rh__sha256_ctx *c);
void rh__sha256_update(struct rh__sha256_ctx *c, const void *data, size_t len);
void rh__sha256_final(struct rh__sha256_ctx *c, uint8_t out[32]);
/* -1 (ask the CPU), 0 the portable code, 1 the x86 SHA instructions. */
extern int rh__sha256_ni;

/* ---- match.c ------------------------------------------------------------- */

/*
 * scheme://[userinfo@]host[:port][/path][?query][#frag] into host (no
 * brackets for IPv6), port (the scheme's default when absent) and path
 * (no query).  A URL without a scheme is http, as libcurl guesses.
 * Returns -1 for other schemes: only HTTP is ours.
 */
int rh__url_split(const char *u, char *host, size_t hl, unsigned *port,
                  char *path, size_t pl);

/* The request's key id (RH_KEY_ID_LEN hex digits + NUL) from its
 * Authorization ("Bearer KEY") or x-api-key header: 1, or 0 when none. */
int rh__key_id_of(const ratectl_http_header *h, size_t n,
                  char out[RH_KEY_ID_LEN + 1]);

/* The value of request header name (case-insensitive), or NULL. */
const char *rh__req_header(const ratectl_http_header *h, size_t n, const char *name);

/* ---- retry.c ------------------------------------------------------------- */

/* Requests that failed lately (408, 409, 429, 5xx, no answer), by a hash
 * of method, URL and body: a request seen here again within
 * RH_SEEN_NS is a retry.  Fixed size: the oldest is overwritten. */
#define RH_SEEN_SLOTS 1024
#define RH_SEEN_NS (60 * RH_NS_PER_S)

struct rh__seen {
	uint64_t hash[RH_SEEN_SLOTS];
	int64_t at[RH_SEEN_SLOTS];
};

uint64_t rh__request_hash(const char *method, const char *url, const void *body,
                          size_t len);
/* Was hash recorded within RH_SEEN_NS of now?  Then forget it (the next
 * failure records it again). */
int rh__seen_take(struct rh__seen *s, uint64_t hash, int64_t now);
void rh__seen_put(struct rh__seen *s, uint64_t hash, int64_t now);

/* Full jitter: uniform in [0, min(30 s, 0.5 s * 2^attempt)), from r. */
int64_t rh__backoff(unsigned attempt, uint64_t r);
/* A step of a xorshift generator; never returns 0 for *s != 0. */
uint64_t rh__rand(uint64_t *s);

/* ---- handle.c ------------------------------------------------------------ */

/* What one request is charged to, copied out of the config: the budget
 * matched (name), whose settings below rule the request, and the budgets
 * of its `also` (ratectl.conf(5)), charged with it: names[0..n), name
 * first.  A request with a tenant has its tenant's budget put before
 * them (tenant = 1: names[0] is the tenant's, names[1] == name). */
struct rh__policy {
	char name[RATECTL_NAME_MAX + 1];
	char names[RATECTL_MANY_MAX][RATECTL_NAME_MAX + 1];
	unsigned n;                /* 1 .. RATECTL_MANY_MAX */
	int tenant;
	/* The matched budget's tenant and tag keys, and its template's
	 * budget (limits, expire, weight, origin), to make the tenant's. */
	int tenant_from;           /* RH_TENANT_* */
	char tenant_header[RH_CONF_HEADER_MAX + 1];
	char tenant_template[RATECTL_NAME_MAX + 1];
	char tenant_default[RATECTL_NAME_MAX + 1];
	ratectl_budget tenant_budget;
	char tag_header[RH_CONF_HEADER_MAX + 1];
	int on_error;              /* RH_ON_ERROR_* */
	unsigned retries;
	unsigned retry_percent;
	int64_t timeout_ns;
	unsigned bytes_per_token;
	uint64_t default_max_tokens;
	/* The matched budget's response cache; off when cache_ttl_ns is 0. */
	int64_t cache_ttl_ns;
	uint64_t cache_size, cache_entry_max;
	int cache_requests;        /* RH_CACHE_* */
};

/* ---- cache.c: the host-wide response cache -------------------------------- */

#define RH_CACHE_KEY 32

/* rh__cache_lookup() says: */
enum { RH_CACHE_HIT = 2001, RH_CACHE_FETCH, RH_CACHE_WAIT, RH_CACHE_OFF };  /* apart
                                           from errno and LMDB's codes */

/* A request's part in the cache. */
struct rh__cache_req {
	uint8_t key[RH_CACHE_KEY];
	uint64_t nonce;            /* this request's, in the fetch record */
	int fetching;              /* the fetch record is ours */
	pid_t pid;                 /* of the process that took the fetch */
	int waited;                /* it waited for another's fetch */
	int waiting;               /* pending on another's fetch (event loops) */
	int off;                   /* the cache could not be used: go on */
	int64_t deadline;          /* of the wait, CLOCK_MONOTONIC */
	/* the answer being fetched, up to the budget's cache_entry_max */
	char *buf;
	size_t len, cap;
	int overflow;              /* too big: not kept */
	int complete;              /* ratectl_http_response_complete() */
	/* a hit */
	int hit_status;
	int hit_coalesced;
	char hit_ctype[256];
	char hit_age[24];
	char *hit_body;
	size_t hit_len;
};

struct rh__cenv;

/* The key of a request for pol's cache: 1 and key when the budget caches
 * it (its `cache_requests`), else 0.  Parses a JSON body. */
int rh__cache_key(const struct rh__policy *pol, const char *method, const char *url,
                  const char *path, const ratectl_http_header *hd, size_t nhd,
                  const void *body, size_t len, uint8_t key[RH_CACHE_KEY]);
/* Look q up: RH_CACHE_HIT (q->hit_* filled, counted), RH_CACHE_FETCH (q
 * fetches it now), RH_CACHE_OFF (the cache cannot be used: send it
 * uncached), RATECTL_ETIMEDOUT (waited for another's fetch until
 * q->deadline), or, when !block, RH_CACHE_WAIT with *wait_ns. */
int rh__cache_lookup(ratectl_http *h, const struct rh__policy *pol,
                     struct rh__cache_req *q, int block, int64_t *wait_ns);
/* Keep len more bytes of the answer being fetched (bounded). */
int rh__cache_feed(const struct rh__policy *pol, struct rh__cache_req *q,
                   const void *data, size_t len);
/* End q's fetch: store the answer when keep (and it fits), wake waiters. */
void rh__cache_finish(ratectl_http *h, const struct rh__policy *pol,
                      struct rh__cache_req *q, int keep, int status,
                      const char *ctype, uint64_t tokens);
/* A new attempt's answer begins. */
void rh__cache_attempt_reset(struct rh__cache_req *q);
/* End a fetch left open, free q's buffers. */
void rh__cache_req_free(ratectl_http *h, const struct rh__policy *pol,
                        struct rh__cache_req *q);
/* The cache's clock, CLOCK_REALTIME in ns; tests set their own. */
extern int64_t (*rh__cache_realtime)(void);
/* How long a waiter sleeps before it looks again whatever happens (the
 * fetcher's death sends no wake-up): 100 ms; tests make it long, to show
 * that a wake-up, not the look, let a waiter in. */
extern int64_t rh__cache_slice_ns;
/* A handle's reference to its environment, given back at close. */
void rh__cache_release(struct rh__cenv *c);

struct ratectl_http {
	pthread_mutex_t mu;        /* conf*, seen, rnd, ledger_next, ledger_why */
	struct ratectl_http *next; /* the fork registry */
	/* the config */
	char path[4096];           /* "" with config text */
	rh__conf *conf;
	int conf_seen;
	struct stat conf_st;
	int64_t conf_next;
	/* the ledger */
	ratectl *ledger;           /* published atomically, kept till close */
	int own_ledger;
	char ledger_dir[4096];     /* "" default */
	int64_t ledger_next;
	int ledger_rc;             /* why the last open failed */
	char ledger_why[512];
	/* retries */
	struct rh__seen seen;
	uint64_t rnd;
	/* notices */
	void (*notice)(void *ctx, int kind, const char *msg);
	void *notice_ctx;
	int told_badtag;           /* RATECTL_HTTP_NOTICE_BADTAG said (atomic) */
	/* the response cache, opened at first use (published atomically) */
	struct rh__cenv *cache;
};

/* Copy the budget matching host, port, path, model and key into *pol:
 * 1, or 0 when none does.  Reloads the config when due. */
int rh__policy_match(ratectl_http *h, const char *host, unsigned port,
                     const char *path, const char *model, const char *key_id,
                     struct rh__policy *pol);
/* The budget configuration of name from the config: 0, or ENOTFOUND. */
int rh__conf_budget_of(ratectl_http *h, const char *name, ratectl_budget *out,
                       ratectl_share *share);
/* The ledger, opened at first use; NULL with why and *rc when unusable. */
ratectl *rh__ledger(ratectl_http *h, char *why, size_t len, int *rc);
/* The ledger when already open, else NULL (never opens). */
ratectl *rh__ledger_now(ratectl_http *h);
/* Tell the program, through the notice callback (no lock held). */
void rh__notice(ratectl_http *h, int kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int64_t rh__clock(int clock_id);

#endif
