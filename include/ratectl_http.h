/*
 * ratectl_http.h - the HTTP policy of ratectl, for any HTTP client.
 *
 * libratectl-http decides, once for every client (the libcurl preload
 * shim, Python, Node), what ratectl does with an HTTP request to an LLM
 * API: which budget of the config file (ratectl.conf(5)) it is charged
 * to, what it is estimated to cost, its admission and release through
 * libratectl, what the response teaches the ledger (429, Retry-After,
 * providers' rate-limit headers, usage in a JSON or streamed body), and
 * whether to send it again.  It takes plain data (strings, byte chunks,
 * header name/value pairs) and hands back plain data, and never does
 * HTTP itself: the caller's HTTP stack sends the request.
 *
 * One request, from any HTTP stack:
 *
 *   ratectl_http_request *req;
 *   ratectl_http_outcome out;
 *
 *   ratectl_http_request_begin(&req, http, "POST", url, hdrs, nhdrs, body, len, 0);
 *   if (!req)                              -> not ours: send it untouched
 *   again:
 *   rc = ratectl_http_admit(req, -1);      (or ratectl_http_try, or
 *                                             ratectl_http_reserve in an
 *                                             event loop)
 *   if (rc < 0)                            -> do not send: ratectl_http_request_why(),
 *                                             or answer ratectl_http_local_response()
 *   ... send; then for the response:
 *   ratectl_http_response_status(req, 200);
 *   ratectl_http_response_header(req, name, value);     for each header
 *   ratectl_http_response_body(req, chunk, n);          for each chunk
 *   ratectl_http_request_end(req, &out);
 *   if (out.retry) { sleep out.retry_after_ns; goto again; }
 *   ratectl_http_request_free(req);
 *
 * Conventions are those of ratectl.h: 0 or a negative code (-errno, the
 * RATECTL_E* codes of ratectl.h, or the RATECTL_HTTP_E* codes below;
 * ratectl_http_strerror() describes them all); outputs first; times in
 * int64_t nanoseconds.
 *
 * Caveats
 *   - Threads: a ratectl_http handle may be used by any number of threads
 *     at once.  A request belongs to one thread at a time (the caller
 *     serialises calls on one request).
 *   - Fork: a handle may be used in a child after fork(); the library
 *     keeps its own mutexes consistent across fork (pthread_atfork) and
 *     libratectl reopens the ledger in the child.  A request admitted in
 *     the parent belongs to the parent: in the child, free it without
 *     using it (its lease is then left to the parent).
 *   - The config file is looked at no more than once a second and reloaded
 *     when it changed; a bad edit keeps the configuration in force and is
 *     reported once through the notice callback.
 *   - The ledger is opened at the first matched request (or given by the
 *     caller).  A process that also uses libratectl directly must give its
 *     handle in the options: LMDB forbids opening one environment twice in
 *     a process.
 *   - Key ids: a request's API key (the Authorization or x-api-key value)
 *     is hashed on the caller's stack and forgotten; only its id (16 hex
 *     digits of its SHA-256) is compared, and nothing stores or prints a key.
 */
#ifndef RATECTL_HTTP_H
#define RATECTL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "ratectl.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RATECTL_HTTP_VERSION_MAJOR 0
#define RATECTL_HTTP_VERSION_MINOR 1
#define RATECTL_HTTP_VERSION_PATCH 0
#define RATECTL_HTTP_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------- */
/* Errors                                                                 */
/* ---------------------------------------------------------------------- */

/* Far from libratectl's range (RATECTL_ERR_BASE) and from any errno. */
#define RATECTL_HTTP_ERR_BASE (-31100)

/* XX(name, offset, description); the code is RATECTL_HTTP_ERR_BASE - offset. */
#define RATECTL_HTTP_ERRNO_MAP(XX)                                              \
	XX(RETRYBUDGET, 0, "retry past the host-wide retry budget: answer it locally") \
	XX(STATE, 1, "call out of order for this request")

typedef enum {
#define RATECTL_HTTP__ERRDEF(name, off, desc) RATECTL_HTTP_E##name = RATECTL_HTTP_ERR_BASE - (off),
	RATECTL_HTTP_ERRNO_MAP(RATECTL_HTTP__ERRDEF)
#undef RATECTL_HTTP__ERRDEF
	RATECTL_HTTP_ERR_LAST = RATECTL_HTTP_ERR_BASE - 2
} ratectl_http_errno;

/*
 * ratectl_http_admit() and ratectl_http_try() return this (> 0, not an
 * error) when the ledger cannot be used and the budget says on_error =
 * open: send the request, unthrottled.
 */
#define RATECTL_HTTP_PASS 1

/*
 * ratectl_http_admit(), ratectl_http_try(), ratectl_http_reserve() and
 * ratectl_http_reserve_poll() return this (> 0, not an error) when the
 * answer is in the host-wide response cache (ratectl.conf(5) `cache`):
 * do not send; answer the client with ratectl_http_cached_response().
 * Nothing was admitted or charged: free the request (ending it is
 * allowed: its outcome has the cached status, no tokens, nothing learned).
 */
#define RATECTL_HTTP_CACHED 2

/* Like ratectl_strerror(), for every code of both libraries.  Never NULL. */
const char *ratectl_http_strerror(int code);

/* ---------------------------------------------------------------------- */
/* The handle                                                             */
/* ---------------------------------------------------------------------- */

typedef struct ratectl_http ratectl_http;

/* Kinds of notices: things a program should be told once, on stderr or
 * its log, which the library never prints itself. */
enum {
	RATECTL_HTTP_NOTICE_NOCONFIG = 1,  /* no config file: requests pass */
	RATECTL_HTTP_NOTICE_BADCONFIG = 2, /* an edit with an error: kept the old */
	RATECTL_HTTP_NOTICE_LEDGER = 3,    /* the ledger cannot be used */
	RATECTL_HTTP_NOTICE_TOOBIG = 4,    /* a request can never be admitted */
	RATECTL_HTTP_NOTICE_BADTAG = 5     /* a request's tag header is not a
	                                      tag: counted untagged (said once
	                                      per handle) */
};

#define RATECTL_HTTP_OPTIONS_VERSION 1

typedef struct ratectl_http_options {
	unsigned version;          /* RATECTL_HTTP_OPTIONS_VERSION */
	/* The config file: NULL for $RATECTL_CONFIG, else /etc/ratectl.conf. */
	const char *config_path;
	/* Or the config itself, text[0..len), never reloaded (tests, bindings
	 * that hold it in memory).  Copied.  Used when not NULL. */
	const char *config_text;
	size_t config_len;
	/* A ledger handle to use (not owned: close it after this handle), or
	 * NULL to open ledger_dir (NULL: ratectl_default_dir()) at first use. */
	ratectl *ledger;
	const char *ledger_dir;
	/* Called for each notice with a message, without any lock of the
	 * library held, from the thread that ran into it; may be NULL. */
	void (*notice)(void *ctx, int kind, const char *msg);
	void *notice_ctx;
} ratectl_http_options;

#define RATECTL_HTTP_OPTIONS_INIT { RATECTL_HTTP_OPTIONS_VERSION, NULL, NULL, 0, NULL, NULL, NULL, NULL }

/*
 * A new handle.  Nothing is read or opened yet: the config at the first
 * request, the ledger at the first matched one.  opts may be NULL.
 * Returns 0 and *out, to be freed with ratectl_http_close(); -ENOMEM;
 * -EINVAL for an unknown opts->version or a config_path longer than 4095;
 * for config_text, RATECTL_EBADCONFIG (the notice callback, when given,
 * is told where, as RATECTL_HTTP_NOTICE_BADCONFIG; or check the text
 * first with ratectl_http_config_parse()).
 */
int ratectl_http_open(ratectl_http **out, const ratectl_http_options *opts);

/* Free h, closing the ledger it opened.  No request of h may be in use. */
void ratectl_http_close(ratectl_http *h);

/* ---------------------------------------------------------------------- */
/* Requests                                                               */
/* ---------------------------------------------------------------------- */

typedef struct ratectl_http_header {
	const char *name;          /* any case */
	const char *value;         /* NUL-terminated */
} ratectl_http_header;

typedef struct ratectl_http_request ratectl_http_request;

/*
 * Look at a request about to be sent.  method ("POST"; NULL taken as
 * "GET"), url (absolute: "https://api.openai.com/v1/chat/completions"),
 * headers[0..nheaders) (may be NULL when 0), and the body when it is in
 * memory, body[0..body_len); when it is not (a stream, an upload), body
 * NULL and body_size its declared size (0 unknown): such a request is
 * estimated from that size and never sent again by a retry decision.
 *
 * The URL's host, port and path select a budget by its match rules; the
 * body's "model" and the key id of the Authorization / x-api-key header
 * further select among budgets that name models or keys.  When that
 * budget names a tenant (ratectl.conf(5) `tenant`), the tenant header's
 * value (or the key id) is made into the tenant's budget name here, and
 * its tag header, when valid, into the request's tag (see
 * ratectl_http_info).  The estimate
 * is max_tokens, max_completion_tokens or max_output_tokens of the body
 * (default_max_tokens without) plus body bytes / bytes_per_token.  A
 * request carrying x-stainless-retry-count > 0, or the same method, URL
 * and body as a request that failed (408, 409, 429, 5xx, no answer)
 * within the last minute, is a retry (see ratectl_http_admit()).
 *
 * Returns 0 and *out, to be freed with ratectl_http_request_free(), when a
 * budget matches; 0 and *out = NULL when none does (the request is not
 * ratectl's: send it untouched); -ENOMEM; -EINVAL.  Nothing is kept of
 * method, url, headers or body after the call.  Costs a few hundred
 * nanoseconds plus a pass over the body.
 */
int ratectl_http_request_begin(ratectl_http_request **out, ratectl_http *h,
                               const char *method, const char *url,
                               const ratectl_http_header *headers, size_t nheaders,
                               const void *body, size_t body_len, uint64_t body_size);

/* The most budgets one request is charged to (RATECTL_MANY_MAX). */
#define RATECTL_HTTP_MAX_BUDGETS 8

/*
 * What a matched request is charged to and how it is handled.  A request
 * goes to the first budget of the config whose match rules (and model
 * and key conditions) it meets: `budget`, whose settings (timeout,
 * on_error, retries, retry_budget, bytes_per_token, default_max_tokens)
 * rule it, and to which what a response teaches (cooldowns, rate-limit
 * windows) and the retry budget apply.  It is charged as well to the
 * budgets that one names with `also` in ratectl.conf(5), and to those
 * theirs name, depth first, each once; and, when that budget names a
 * tenant and the request has one, to the tenant's budget (made from its
 * template at the first admission that needs it), put first: tenant
 * first, then budget, then the others, in budgets[0..nbudgets).
 * Admission is one transaction in all of them (all or none:
 * ratectl_try_many(); the first is the one whose fair share among
 * tenants applies, see ratectl_acquire_many()), and the end of an
 * attempt releases each with the same usage.
 */
typedef struct ratectl_http_info {
	const char *budget;        /* the budget matched (== budgets[0] unless
	                              there is a tenant: then budgets[1]) */
	const char *budgets[RATECTL_HTTP_MAX_BUDGETS];
	unsigned nbudgets;         /* [tenant +] 1 + those of `also`, <= 8 */
	uint64_t estimate;         /* tokens charged at admission */
	int is_retry;              /* a retry of the SDK or the client */
	unsigned retry_count;      /* its x-stainless-retry-count, else 0 or 1 */
	int64_t timeout_ns;        /* the budget's timeout */
	int on_error_closed;       /* 1: an unusable ledger refuses, 0: passes */
	unsigned retries;          /* re-sends after 429/503 the budget allows */
	unsigned retry_percent;    /* the retry budget, % of admissions */
	/* The tenant's budget (== budgets[0], "user-alice"), or NULL: the
	 * budget names no tenant, or the request has none. */
	const char *tenant;
	/* The request's tag (ratectl_cost.tag, counted per budget: see
	 * ratectl_tags()), "" none: from the budget's tag header, or
	 * ratectl_http_request_tag(). */
	const char *tag;
	/* Request headers the policy read that are ratectl's own (the tenant
	 * and tag headers when they are named X-Ratectl-*): they mean nothing
	 * to the provider, and a tenant header may name an end user.  An
	 * adapter that can change the request before it is sent removes
	 * them; the library cannot (it never sends). */
	const char *drop_headers[2];
	unsigned ndrop_headers;
	/* 1: the answer may come from, and go to, the host-wide response
	 * cache (the budget has `cache`, and the request is one its
	 * `cache_requests` takes: see ratectl.conf(5)); 0: it is never
	 * cached. */
	int cacheable;
} ratectl_http_info;

/* The request's info, owned by req, valid until it is freed.  Never NULL. */
const ratectl_http_info *ratectl_http_request_info(const ratectl_http_request *req);

/*
 * Admit the request, waiting up to timeout_ns (< 0: the budget's timeout).
 * Returns:
 *   0                        admitted: send it; then ratectl_http_request_end()
 *   RATECTL_HTTP_PASS        ledger unusable, on_error = open: send it
 *   RATECTL_ETIMEDOUT        not admitted in time: do not send
 *   RATECTL_ETOOBIG          the estimate exceeds a limit's burst: it never
 *                            can be (a notice says so once): do not send
 *   RATECTL_HTTP_ERETRYBUDGET  a retry, past the host-wide retry budget:
 *                            do not send; answer the client with
 *                            ratectl_http_local_response() (a 429 telling
 *                            the SDK not to retry), so retries stop
 *   RATECTL_EBADNAME         the request's tenant (its tenant header, see
 *                            ratectl.conf(5)) makes no valid budget name,
 *                            or names one it is charged to already: do
 *                            not send (every admission of it says so)
 *   other < 0                the ledger is unusable and on_error = closed
 *                            (or -EINTR is never returned: signals are
 *                            ridden out until the deadline)
 * On every refusal ratectl_http_request_why() says why, for the caller's
 * error message.  A request admitted already returns RATECTL_HTTP_ESTATE.
 */
int ratectl_http_admit(ratectl_http_request *req, int64_t timeout_ns);

/*
 * The same without blocking, for event loops: returns 0, RATECTL_HTTP_PASS
 * or an error as ratectl_http_admit(), or RATECTL_ELIMITED /
 * RATECTL_ECOOLDOWN with *wait_ns (may be NULL) the time after which it
 * would be admitted if nobody else takes it (>= 1), or RATECTL_EINFLIGHT
 * (every slot held; *wait_ns = 0: try again when a request ends), or
 * RATECTL_EPENDING (another request is fetching its answer for the
 * response cache: look again after *wait_ns), or RATECTL_HTTP_CACHED.  A
 * retry is charged to the retry budget once, at its first try.
 */
int ratectl_http_try(ratectl_http_request *req, int64_t *wait_ns);

/* ---- admission for event loops ------------------------------------------- */

/* When to look at a pending request again (ratectl_http_reserve()). */
typedef struct ratectl_http_wait {
	int64_t wait_ns;           /* after this long (from the call), at the latest */
	int fd;                    /* or when this is readable; -1: the time only */
	int fifo;                  /* 1: a place in line is kept (one budget);
	                              0: a hint only (several budgets) */
} ratectl_http_wait;

/*
 * Admit req without ever blocking, keeping its turn: for asyncio, Node
 * and other event loops, which cannot park a thread per waiting request.
 * timeout_ns (< 0: the budget's timeout) bounds the wait, as for
 * ratectl_http_admit().  Returns:
 *   0                   admitted: send it; then the response calls and
 *                       ratectl_http_request_end(), as after admit
 *   RATECTL_EPENDING    not yet.  Call ratectl_http_reserve_poll() after
 *                       w->wait_ns, or as soon as w->fd is readable
 *                       (then call ratectl_http_events_drain() once for
 *                       the handle, and poll every pending request of it,
 *                       or at least those of the budgets that changed);
 *                       or give up with ratectl_http_reserve_cancel()
 *   RATECTL_ETIMEDOUT   it cannot be admitted within timeout_ns: nothing
 *                       was reserved; do not send
 *   and RATECTL_HTTP_PASS, RATECTL_ETOOBIG, RATECTL_HTTP_ERETRYBUDGET or
 *   an error, as ratectl_http_admit() returns them.
 *
 * Order: a request charged to one budget takes its place in that
 * budget's schedule, as ratectl_acquire() does (ratectl_reserve()), so
 * requests of all processes and threads, blocking or not, are admitted
 * in the order they asked (w->fifo = 1); w->fd is the ledger handle's
 * one event descriptor, the same for every request of h.  A request
 * charged to several budgets (`also`) has no place in line: libratectl
 * has no reservation across budgets, so it is tried again after the
 * budgets' own wait hint (ratectl_http_try()'s), or every 50 ms while
 * in-flight slots are the reason, with w->fd = -1 and w->fifo = 0: it may
 * be overtaken, and may overtake.
 *
 * A pending request holds no lease; on its budget it costs what a pending
 * ratectl_reserve() costs (see ratectl.h).  Only ratectl_http_reserve_poll(),
 * ratectl_http_reserve_cancel() and ratectl_http_request_free() may be
 * called on it; the others return RATECTL_HTTP_ESTATE.  w may be NULL.
 */
int ratectl_http_reserve(ratectl_http_request *req, int64_t timeout_ns,
                         ratectl_http_wait *w);

/*
 * Look again at a pending request: 0 (admitted), RATECTL_EPENDING (*w
 * updated), RATECTL_ETIMEDOUT (its timeout passed: its place is given
 * back, as ratectl_reserve_cancel() gives it), or an error after which it
 * is no longer pending (RATECTL_ENOTFOUND: its budget was deleted); the
 * last two leave req as before ratectl_http_reserve(): reserve it again,
 * or free it.  Cheap when it is not its time yet.  RATECTL_HTTP_ESTATE
 * when req is not pending.
 */
int ratectl_http_reserve_poll(ratectl_http_request *req, ratectl_http_wait *w);

/* Give up waiting: the place is given back as an interrupted
 * ratectl_http_admit() gives it back.  Nothing to do when req is not
 * pending.  ratectl_http_request_free() cancels too. */
void ratectl_http_reserve_cancel(ratectl_http_request *req);

/* Read what made the event descriptor of h readable; call it once per
 * readiness, before polling.  Returns how many budgets changed (0 when no
 * ledger is open yet), or -errno. */
int ratectl_http_events_drain(ratectl_http *h);

/* Why the last admission refused, "" when it did not.  Owned by req. */
const char *ratectl_http_request_why(const ratectl_http_request *req);

/* An answer made up locally, for RATECTL_HTTP_ERETRYBUDGET. */
typedef struct ratectl_http_local {
	int status;                    /* 429 */
	ratectl_http_header headers[4];/* x-should-retry: false, retry-after,
	                                  content-type, x-ratectl */
	size_t nheaders;
	const char *body;              /* an OpenAI-shaped JSON error */
	size_t body_len;
} ratectl_http_local;

/*
 * Fill *out with the answer to give the client instead of sending req;
 * the strings are owned by req.  Returns 0, or RATECTL_HTTP_ESTATE when
 * the last admission did not return RATECTL_HTTP_ERETRYBUDGET.
 */
int ratectl_http_local_response(const ratectl_http_request *req,
                                ratectl_http_local *out);

/* ---- the response: status, headers, body, in that order ------------------ */

/* The response's status code (the final one, after redirects; 0 when no
 * answer came).  Calling it again replaces the code. */
int ratectl_http_response_status(ratectl_http_request *req, int status);

/*
 * One response header.  The library keeps what it reads (Retry-After,
 * retry-after-ms, x-ratelimit-*, anthropic-ratelimit-*, RateLimit,
 * RateLimit-Policy, Content-Type) in fixed space in req; a value longer
 * than 1024 bytes is taken as absent; the first of repeated names wins.
 * Returns 0.
 */
int ratectl_http_response_header(ratectl_http_request *req, const char *name,
                                 const char *value);
/* The same for headers[0..n). */
int ratectl_http_response_headers(ratectl_http_request *req,
                                  const ratectl_http_header *headers, size_t n);

/* The header names the library reads, lower-case, NULL-terminated, *n of
 * them (n may be NULL): for clients that look headers up by name.  Static. */
const char *const *ratectl_http_header_names(size_t *n);

/*
 * len more bytes of the (decoded) response body, in any pieces, after the
 * headers: the usage it reports is read as it streams through, in fixed
 * memory whatever the body's size and wherever the usage sits in it
 * (nothing of the body is kept).  Only a top-level "usage" object counts
 * (or one in a top-level "message" or "response": Anthropic's
 * message_start, the Responses API's events); tokens are its
 * total_tokens, else input + output (prompt_tokens / input_tokens plus
 * completion_tokens / output_tokens), each field taking the last value
 * the body gave: an Anthropic stream's input from message_start and
 * output from its last message_delta.  The body is an event stream (SSE)
 * when the Content-Type header says text/event-stream, JSON when it names
 * a JSON type, and otherwise JSON when its first non-blank byte is '{' or
 * '[', else SSE (the request's "stream": true is not consulted: a refused
 * streaming request is answered in JSON).  A body cut short keeps the
 * usage it reported before the cut.  Returns 0.
 */
int ratectl_http_response_body(ratectl_http_request *req, const void *data,
                               size_t len);

/* ---- the end of an attempt ------------------------------------------------ */

typedef struct ratectl_http_outcome {
	int status;                /* as given; -1 when none was (not sent) */
	uint64_t tokens;           /* the tokens finally charged */
	int usage_known;           /* 1: tokens is the usage the body reported */
	int64_t cooldown_ns;       /* the pause put on the budget, 0 none */
	unsigned windows;          /* rate-limit windows learned */
	int retry;                 /* 1: send it again after retry_after_ns */
	int64_t retry_after_ns;    /* full-jitter backoff; the next admission
	                              also waits out the budget's cooldown */
	unsigned attempt;          /* attempts so far, 1 for the first */
} ratectl_http_outcome;

/*
 * End an attempt: learn from the response (a 429, or a 503 with a
 * Retry-After, puts the budget into a host-wide cooldown of
 * retry-after-ms, else Retry-After, else 1 s for a 429; each rate-limit
 * header tightens the one limit of the window it describes), release the
 * lease with the usage the body reported (the estimate stands without;
 * a 429, or no status at all, is released as 0 tokens), and decide on a
 * retry: a 429 or 503, when the budget allows `retries` and this is not
 * past them, the body can be sent again and ratectl_retry_take() allows
 * it.  To retry, call ratectl_http_admit() on req again after
 * out->retry_after_ns: response state starts afresh.  out may be NULL.
 * Returns 0, or RATECTL_HTTP_ESTATE when the request was not admitted
 * (nor passed) since its last end.
 */
int ratectl_http_request_end(ratectl_http_request *req, ratectl_http_outcome *out);

/*
 * Tag req's admissions from the next on with tag (ratectl_cost.tag:
 * counted per budget, see ratectl_tags()), in place of the one its tag
 * header gave; NULL or "" for none.  Returns 0; RATECTL_EBADNAME for a
 * tag that is not 1 to RATECTL_TAG_MAX bytes of [A-Za-z0-9._:/-] (the
 * tag is left as it was; at most RATECTL_TAG_MAX + 1 bytes are read);
 * RATECTL_HTTP_ESTATE while req is pending (ratectl_http_reserve()).
 */
int ratectl_http_request_tag(ratectl_http_request *req, const char *tag);

/*
 * Whether req can be sent again, for ratectl_http_request_end()'s retry
 * decision (at begin: its body is in memory or it has none).  An adapter
 * that let the client see part of a refused answer says 0 before ending.
 */
void ratectl_http_request_set_resendable(ratectl_http_request *req, int yes);

/* ---- the host-wide response cache ----------------------------------------
 *
 * A budget with `cache = DURATION` in ratectl.conf(5) keeps the whole
 * 2xx answers of its cacheable requests (info.cacheable) for that long,
 * in an LMDB environment of its own beside the ledger (DIR/cache/), so
 * that every process of the host is answered from it and a full cache
 * never stands in the way of an admission.  An entry is found by a
 * SHA-256 of the budget's name, the method, the URL, the body in a
 * canonical form (JSON with its keys sorted and no blanks) and a SHA-256
 * of the request's credentials (every header whose name holds "auth",
 * "key" or "token", and Cookie; never stored): two keys never share an
 * answer.
 *
 *   - A hit: ratectl_http_admit() and the others return
 *     RATECTL_HTTP_CACHED at once, without admission: no request is
 *     counted against the budget.
 *   - A miss: the request is admitted as any other; its process is the
 *     one fetching that entry until ratectl_http_request_end().  The
 *     adapter gives the response as always, then, when it has given the
 *     whole body, ratectl_http_response_complete(); the end stores a 2xx
 *     answer of at most `cache_entry_max` bytes.
 *   - Coalescing: a request for an entry another process (or thread) is
 *     fetching waits for that answer instead of being sent, within its
 *     admission deadline (ratectl_http_admit() blocks;
 *     ratectl_http_try() and ratectl_http_reserve() say RATECTL_EPENDING
 *     with a time to look again: see below).  When the fetch ends
 *     without an answer to store (an error, a non-2xx status, a body too
 *     big), or its process dies (seen within 100 ms: a fetch is a lease
 *     held by a file lock, dropped by the kernel), the waiters go on: when
 *     the answer was too big to keep, they are all sent at once,
 *     uncached; otherwise one of them fetches in its place.
 *   - Each budget's entries are held within `cache_size` bytes; the
 *     oldest (first to expire) are removed first to make room.
 *   - A cache that cannot be used (no space, a damaged environment,
 *     which is removed and made again) never refuses a request: it is
 *     sent as if the budget had no cache.
 *   - Hits are counted in each process and written to the counters at
 *     most once a second, when its handle closes, before it reads the
 *     counters, and when the process exits normally: a process that dies
 *     by a signal or _exit() loses at most its last second of hit counts
 *     (never an answer).
 */

/*
 * The cached answer, after an admission returned RATECTL_HTTP_CACHED:
 * status (the stored 2xx), headers (Content-Type when the answer had one,
 * "X-Ratectl-Cache: hit" or "X-Ratectl-Cache: coalesced" (it was fetched
 * by another request while this one waited), and "Age: SECONDS" since it
 * was stored) and the whole body.  The strings are owned by req, valid
 * until it is freed or admitted again.  Returns 0, or RATECTL_HTTP_ESTATE
 * when the last admission did not return RATECTL_HTTP_CACHED.
 */
int ratectl_http_cached_response(const ratectl_http_request *req,
                                 ratectl_http_local *out);

/*
 * Say that the body given with ratectl_http_response_body() is the whole
 * body of the response (it was read to its end without error).  Only a
 * complete body is stored in the cache: call it before
 * ratectl_http_request_end().  Returns 0.
 */
int ratectl_http_response_complete(ratectl_http_request *req);

/* One budget's cache, as ratectl_http_cache_stats() reads it. */
typedef struct ratectl_http_cache_stats {
	char budget[RATECTL_NAME_MAX + 1];
	uint64_t entries;          /* answers held now */
	uint64_t bytes;            /* their size: bodies, headers, keys */
	uint64_t hits;             /* requests answered from the cache */
	uint64_t coalesced;        /* answered by another's fetch they waited for */
	uint64_t misses;           /* cacheable requests sent to the provider */
	uint64_t stores;           /* answers stored */
	uint64_t evictions;        /* removed for room (cache_size) */
	uint64_t expired;          /* removed past their time to live */
	uint64_t tokens_saved;     /* usage of the answers given from the cache */
} ratectl_http_cache_stats;

/*
 * The cache of every budget that has one in the ledger directory of h (or
 * of budget only, when not NULL), into out[0..cap), sorted by name: the
 * number of budgets found (which may exceed cap), or -errno, or
 * RATECTL_ECORRUPT (damaged; nothing is changed by reading).  0 when the
 * directory has no cache.  Never creates it.
 */
int ratectl_http_cache_stats_read(ratectl_http *h, const char *budget,
                                  ratectl_http_cache_stats *out, size_t cap);

/*
 * Remove the cached answers of budget (NULL: of every budget), and reset
 * its counters when reset_counters is set.  Returns the number of
 * entries removed (0 when the directory has no cache), -EINVAL for an
 * invalid name, -errno, or RATECTL_ECORRUPT when the cache is damaged
 * (it is made again: clear again).  Entries being fetched are stored when
 * the fetch ends, as usual.
 */
int64_t ratectl_http_cache_clear(ratectl_http *h, const char *budget,
                                 int reset_counters);

/* Free req; a lease still held is released as never sent, a pending
 * request cancelled. */
void ratectl_http_request_free(ratectl_http_request *req);

/* ---------------------------------------------------------------------- */
/* The config file, for tools                                             */
/* ---------------------------------------------------------------------- */

/*
 * The config file (ratectl.conf(5)) as libratectl-http reads it, for
 * programs that show, check or apply it (`ratectl apply`, `check
 * --repair`): loaded and checked whole, then its budgets read one by one
 * in the order of the file.  Its templates (sections named with one '*',
 * such as [user-*]) are not budgets: they are read apart (below) and
 * must not be created; the budgets made from them are (their origin
 * names the template).  A loaded config is read-only: any number of
 * threads may read it at once.
 */
typedef struct ratectl_http_config ratectl_http_config;

/* One budget of a config; the strings are owned by the config. */
typedef struct ratectl_http_config_budget {
	const char *name;          /* the section's name */
	ratectl_budget budget;     /* its limits, bursts worked out, for
	                              ratectl_budget_set() */
	const char *match;         /* "api.openai.com, [::1]:8080/v1": host (IPv6
	                              in brackets), :port when one is given,
	                              path prefix; "" when none */
	const char *models;        /* "gpt-4o*, o1-*", or "" */
	const char *keys;          /* key ids, "3f2a9c0d1e4b5a67, ...", or "" */
	const char *also;          /* "key1, org", or "" */
	unsigned line;             /* of the [section] */
} ratectl_http_config_budget;

/*
 * Load and check the config file at path (NULL: $RATECTL_CONFIG, else
 * /etc/ratectl.conf, see ratectl_http_config_default_path()).  Returns 0
 * and *out, to be freed with ratectl_http_config_free(); or, with *out
 * NULL and a message in err[0..errlen) (may be NULL) naming the file,
 * line, section and key ("ratectl.conf:7: [openai]: key 'tokens': ..."):
 * RATECTL_EBADCONFIG, -errno when it cannot be opened or read to its end,
 * -EFBIG above 1 MiB, -ENOMEM.  A config is used only when all of it was
 * read and is valid, so a caller may act on what the file leaves out.
 */
int ratectl_http_config_load(ratectl_http_config **out, const char *path,
                             char *err, size_t errlen);

/* The same for the text[0..len) of a config in memory (no NUL needed);
 * name stands for the file in messages (NULL: "config"). */
int ratectl_http_config_parse(ratectl_http_config **out, const char *name,
                              const char *text, size_t len, char *err,
                              size_t errlen);

/* How many budgets c has (0 for NULL); templates are not counted. */
size_t ratectl_http_config_count(const ratectl_http_config *c);

/* Budget i (0 <= i < count, in the order of the file) of c into *out:
 * 0, or -EINVAL. */
int ratectl_http_config_get(const ratectl_http_config *c, size_t i,
                            ratectl_http_config_budget *out);

/* The index of the budget called name: 0 and *index (may be NULL), or
 * RATECTL_ENOTFOUND. */
int ratectl_http_config_find(const ratectl_http_config *c, const char *name,
                             size_t *index);

/*
 * The templates of c, in the order of the file: how many (0 for NULL),
 * and template i (0 <= i < count) into *out: name is its pattern
 * ("user-*"), budget what a tenant's budget is made from (its limits,
 * expire_ns, weight, and origin == name), match, models, keys and also
 * "" (a template has none).  0, or -EINVAL.
 */
size_t ratectl_http_config_template_count(const ratectl_http_config *c);
int ratectl_http_config_template_get(const ratectl_http_config *c, size_t i,
                                     ratectl_http_config_budget *out);

/* The index of the template with pattern ("user-*"; a budget's origin):
 * 0 and *index (may be NULL), or RATECTL_ENOTFOUND. */
int ratectl_http_config_template_find(const ratectl_http_config *c,
                                      const char *pattern, size_t *index);

/* $RATECTL_CONFIG when set and not empty, else "/etc/ratectl.conf". */
const char *ratectl_http_config_default_path(void);

void ratectl_http_config_free(ratectl_http_config *c);

/* ---------------------------------------------------------------------- */
/* Key ids                                                                */
/* ---------------------------------------------------------------------- */

#define RATECTL_HTTP_KEY_ID_LEN 16

/*
 * The id of an API key as the config file names it (`key = ...`): the
 * first 16 hex digits of the SHA-256 of the key, taken from
 * key[0..len) without surrounding blanks or line ends and without a
 * leading "Bearer " (so a key and its Authorization value have one id).
 * Writes 17 bytes into out.  Returns 0, or -EINVAL for an empty key.
 */
int ratectl_http_key_id(char out[RATECTL_HTTP_KEY_ID_LEN + 1], const char *key,
                        size_t len);

#ifdef __cplusplus
}
#endif
#endif /* RATECTL_HTTP_H */
