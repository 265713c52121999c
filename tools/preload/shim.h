/*
 * shim.h - what the parts of the preload shim (libratectl-preload.so)
 * share.  Built on the public headers only: the HTTP policy (config,
 * matching, estimates, learning, retries) is libratectl-http's, linked
 * statically and hidden; the shim is the libcurl adapter over it.
 *
 *   curlapi.c  the libcurl the program really uses: resolution, dlopen
 *   got.c      redirecting a loaded object's GOT entries (RTLD_DEEPBIND)
 *   guard.c    the clocks, the fork guard of the shim's mutexes
 *   xfer.c     per-handle state, the tee, the header list sent (a leaf:
 *              calls no hook)
 *   serve.c    an answer from the response cache given to the program,
 *              and what getinfo says of it (a leaf, too)
 *   policy.c   the adapter to libratectl-http: request, admission, response
 *   easy.c     the curl_easy_* hooks: setopt, handle life, perform, retries,
 *              getinfo and header for an answer from the cache
 *   multi.c    the curl_multi_* hooks: admission with parking, answers from
 *              the cache, the done messages
 * and, pure (http.h: bytes in, no libcurl types):
 *   tee.c      a refused body held back for a retry; a cached answer
 *              delivered to the program's callbacks
 *   hdrs.c     the program's request headers read, and copied without
 *              ratectl's own; a cached answer's head
 *
 * Calls go one way: easy.c, multi.c -> policy.c -> xfer.c, serve.c ->
 * curlapi.c, guard.c, and the pure files.
 *
 * The shim never links libcurl: <curl/curl.h> is for types only, and
 * every real libcurl function is called through struct shim_curl.
 */
#ifndef RATECTL_PRELOAD_SHIM_H
#define RATECTL_PRELOAD_SHIM_H

/* Our definitions of curl_easy_setopt & co. must not meet the type-checking
 * macros of curl/typecheck-gcc.h. */
#define CURL_DISABLE_TYPECHECK 1

#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <curl/curl.h>

/*
 * Everything below, and the library and config functions the shim calls,
 * is hidden: the shim lives in other programs' global symbol scope, where
 * a ratectl_open or rh__conf_load of its own must not interpose on theirs
 * (a program may link libratectl.so itself).  The linker gives a symbol
 * the most restrictive visibility of all its references, so declaring
 * them hidden here hides them in the shim.  Only the hooks (declared by
 * curl.h above, and dlopen) are exported.
 */
#pragma GCC visibility push(hidden)

#include "ratectl.h"
#include "ratectl_http.h"
#include "http.h"

#define SHIM_NS_PER_S 1000000000LL
#define SHIM_NS_PER_MS 1000000LL

/* ---- curlapi.c ---------------------------------------------------------- */

/* The real functions of the one libcurl the shim serves.  Optional ones
 * (newer than 7.62) may be NULL. */
struct shim_curl {
	CURL *(*easy_init)(void);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	CURL *(*easy_duphandle)(CURL *);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_perform)(CURLM *, int *);
	CURLMcode (*multi_wait)(CURLM *, struct curl_waitfd *, unsigned, int, int *);
	CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd *, unsigned, int, int *);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_timeout)(CURLM *, long *);
	CURLMcode (*multi_cleanup)(CURLM *);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLHcode (*easy_header)(CURL *, const char *, size_t, unsigned int, int,
	                         struct curl_header **);          /* >= 7.83 */
	struct curl_header *(*easy_nextheader)(CURL *, unsigned int, int,
	                                       struct curl_header *);  /* >= 7.83 */
	CURLUcode (*url_get)(const CURLU *, CURLUPart, char **, unsigned int);
	void (*free)(void *);
	const char *path;          /* file it was found in, for messages */
};

/* The served libcurl, resolving it on first use; NULL when no libcurl is
 * loaded (then the caller passes through and says so once). */
const struct shim_curl *shim_curl(void);

/* Called by the exported hooks when the real function is missing. */
void shim_no_curl(const char *fn);

/* ---- got.c -------------------------------------------------------------- */

/* One loaded object, as dl_iterate_phdr() describes it. */
struct shim_obj {
	uintptr_t base;            /* load bias (dlpi_addr) */
	const char *name;          /* "" for the executable */
	const ElfW(Phdr) *phdr;
	unsigned phnum;
};

/* One GOT redirection: references to `name` now lead to `to`. */
struct shim_redirect {
	const char *name;
	void *to;
};

/* Fill out[0..cap) with the loaded objects; returns how many there are
 * (which may exceed cap) and *adds, the loader's count of loads. */
size_t shim_objects(struct shim_obj *out, size_t cap, unsigned long long *adds);
int shim_obj_contains(const struct shim_obj *o, const void *addr);
/* o's first DT_NEEDED entry that starts with prefix, or NULL. */
const char *shim_obj_needed(const struct shim_obj *o, const char *prefix);
/* 1 when o has DT_RPATH or DT_RUNPATH (*runpath: the latter). */
int shim_obj_has_search_path(const struct shim_obj *o, int *runpath);

/*
 * Rewrite o's GOT entries (JUMP_SLOT and GLOB_DAT relocations) so that
 * each name in r[0..n) leads to its `to`.  Returns how many entries
 * changed, or -1 when o or this architecture cannot be patched.
 */
int shim_obj_patch(const struct shim_obj *o, const struct shim_redirect *r,
                   size_t n);

/* The exported hooks, by name: for GOT redirection and dlsym (curlapi.c). */
extern const struct shim_redirect shim_hooks[];
extern const size_t shim_nhooks;

/* ---- guard.c ------------------------------------------------------------ */

/* The ledger's clock: CLOCK_BOOTTIME, in nanoseconds. */
int64_t shim_now(void);
/* Any clock, in nanoseconds. */
int64_t shim_clock_ns(clockid_t id);

/* Make fork() wait until no thread holds mu, and leave it unlocked in
 * the child.  Idempotent per mutex; at most 8 mutexes.  Never call into
 * libratectl while holding such a mutex (see guard.c). */
void shim_fork_guard(pthread_mutex_t *mu);

/* ---- xfer.c ------------------------------------------------------------- */

/* How the body of a request is sent, as far as the options tell. */
enum shim_body {
	SHIM_BODY_NONE = 0,        /* GET, HEAD: nothing to send again */
	SHIM_BODY_FIELDS,          /* POSTFIELDS: in memory, can be re-sent */
	SHIM_BODY_STREAM           /* read callback, upload, MIME: cannot */
};

/* What one transfer is charged to: the policy's request and a copy of
 * what the hooks read of it. */
struct shim_policy {
	ratectl_http_request *req; /* owned */
	char name[RATECTL_NAME_MAX + 1];
	unsigned retries;
	int64_t timeout_ns;
	int https;                 /* the URL's scheme, for getinfo on a hit */
};

/* A transfer answered from the response cache (serve.c). */
struct shim_hit {
	int on;                    /* the handle's last transfer: getinfo and
	                              curl_easy_header answer for it */
	int status;
	struct shim_head head;     /* what the header callback gets */
	const char *body;          /* the request's, until delivered */
	uint64_t nbody;
	uint64_t ndone;            /* body bytes the program took */
	int64_t total_ns;          /* from the transfer's start to the end of
	                              the delivery */
	int https;
	CURLcode rc;               /* the transfer's result */
	struct curl_header ch;     /* curl_easy_header()'s last answer */
	unsigned ch_at;            /* which of head's headers it is */
};

/* The shim's state for one easy handle, created by the first option it
 * cares about or by the first matched transfer. */
struct xfer {
	struct xfer *hnext;        /* hash chain (xfer.c) */
	CURL *e;
	/* what the program set */
	const char *fields;        /* CURLOPT_POSTFIELDS, not owned */
	curl_off_t fields_size;    /* -1: strlen */
	char *copy;                /* COPYPOSTFIELDS: our copy, owned */
	size_t ncopy;
	const struct curl_slist *headers;  /* CURLOPT_HTTPHEADER, not owned */
	enum shim_body body;
	curl_write_callback wfn;
	void *wdata;
	curl_write_callback hfn;   /* CURLOPT_HEADERFUNCTION */
	void *hdata;               /* CURLOPT_HEADERDATA */
	int include_header;        /* CURLOPT_HEADER */
	int nobody;                /* CURLOPT_NOBODY, until a method says otherwise */
	char *method;              /* CURLOPT_CUSTOMREQUEST, our copy, or NULL */
	int method_lost;           /* ... which there was no memory to copy */
	/* what decides whether the body the program got is the answer to
	 * store in the response cache */
	int decoding;              /* CURLOPT_ACCEPT_ENCODING set (libcurl decodes) */
	int no_content_decoding;   /* CURLOPT_HTTP_CONTENT_DECODING 0 */
	int no_transfer_decoding;  /* CURLOPT_HTTP_TRANSFER_DECODING 0 */
	int range;                 /* CURLOPT_RANGE set */
	int resume;                /* CURLOPT_RESUME_FROM(_LARGE) not 0 */
	char *errbuf;
	curl_prereq_callback prereq;
	void *prereq_data;
	CURLU *curlu;
	unsigned port;             /* CURLOPT_PORT, 0 when not set */
	/* the shim's own, while a transfer is in progress */
	int tee_on;                /* our write callback is installed */
	int abort_on;              /* our refusing prereq callback is installed */
	int hdrs_on;               /* our header list is installed: own_hdrs */
	struct curl_slist *own_hdrs;  /* the program's without ratectl's
	                                 headers (hdrs.c), owned; may be NULL */
	struct shim_tee *tee;
	struct shim_policy pol;
	int leased;
	ratectl_lease lease;
	uint64_t estimate;
	char refusal[CURL_ERROR_SIZE];
	int64_t t0;                /* when the transfer began (CLOCK_MONOTONIC) */
	struct shim_hit hit;
	/* multi interface (multi.c), touched only by the multi's thread */
	CURLM *multi;
	int parked;
	struct xfer *pnext;           /* parked queue */
	int64_t parked_at;
	int active;                   /* in the real multi, counted in nactive */
	struct xfer *anext, **aprev;  /* the multi's active list */
	int served;                   /* an answer from the cache to deliver
	                                 (1), or delivered (2): in the multi
	                                 for the program, never in the real one */
	struct xfer *snext;           /* the multi's list of either */
};

/* The state of e; created when create is set (NULL only without memory). */
struct xfer *xfer_get(CURL *e, int create);
/* Forget e (curl_easy_cleanup). */
void xfer_drop(CURL *e);
/* What libcurl assumes of a handle nobody set options on (curl_easy_reset). */
void xfer_defaults(struct xfer *x);

/* Swap the program's write callback for the tee, and back. */
int xfer_tee_begin(const struct shim_curl *api, struct xfer *x, int may_hold);
void xfer_tee_end(const struct shim_curl *api, struct xfer *x);
/* Give the program a body withheld for a retry that did not happen. */
void xfer_tee_replay(struct xfer *x);
/* Make the next perform fail before sending (multi refusals), and undo. */
int xfer_abort_begin(const struct shim_curl *api, struct xfer *x);
void xfer_abort_end(const struct shim_curl *api, struct xfer *x);

/* Send x's request without the headers named in drop[0..n) (ratectl's
 * own): a copy of the program's list without them is installed until
 * xfer_hdrs_end(), which puts the program's back; its list is never
 * changed.  0 (also when it has none of them), or -1 without memory. */
int xfer_hdrs_begin(const struct shim_curl *api, struct xfer *x,
                    const char *const *drop, size_t n);
void xfer_hdrs_end(const struct shim_curl *api, struct xfer *x);
/* Forget the installed copy without touching the handle (reset, gone). */
void xfer_hdrs_forget(struct xfer *x);

/* The request body: in memory (*body, *len), or only its declared size
 * (*body NULL, *size). */
void xfer_body(const struct xfer *x, const void **body, size_t *len, uint64_t *size);

/* ---- serve.c ------------------------------------------------------------ */

/*
 * x's admission said RATECTL_HTTP_CACHED: take the answer r (whose body
 * stays the request's, to be delivered before it is freed) for x's
 * transfer, and answer getinfo for it from now on.  https: the URL's
 * scheme.  0, or -1 without memory (x then has no answer).
 */
int shim_hit_begin(struct xfer *x, const ratectl_http_local *r, int https);
/* Give x's answer to the program's callbacks: CURLE_OK, or
 * CURLE_WRITE_ERROR with libcurl's message in the error buffer. */
CURLcode shim_hit_deliver(struct xfer *x);
/* Forget x's answer (its next transfer, reset, cleanup). */
void shim_hit_clear(struct xfer *x);
/* 1 when some handle's getinfo is answered by the shim (else none is). */
int shim_hits_any(void);
/* curl_easy_getinfo(info) for x: 1 when answered into arg, 0 when the
 * item is libcurl's to answer. */
int shim_hit_info(const struct xfer *x, CURLINFO info, void *arg);
/* curl_easy_header() and curl_easy_nextheader() for x's answer. */
CURLHcode shim_hit_header(struct xfer *x, const char *name, size_t index,
                          unsigned int origin, int request, struct curl_header **hout);
struct curl_header *shim_hit_nextheader(struct xfer *x, unsigned int origin,
                                        int request, struct curl_header *prev);

/* ---- multi.c ------------------------------------------------------------ */

/* x is being cleaned up: end its multi transfer (lease, parking) now. */
void shim_multi_detach(const struct shim_curl *api, struct xfer *x);
/* x's handle is gone already: drop it from its multi without touching it. */
void shim_multi_forget(struct xfer *x);
/* Handle e is being cleaned up: drop the done messages the shim keeps for
 * it (any handle, the shim's or not). */
void shim_multi_gone(const CURL *e);

/* ---- policy.c ----------------------------------------------------------- */

/*
 * The budget matching the URL of handle e, copied into *pol.  Returns 1
 * when matched, 0 when not (the transfer is not ours).  x may be NULL.
 */
int shim_match(const struct shim_curl *api, CURL *e, const struct xfer *x,
               struct shim_policy *pol);

/* Estimated tokens of a transfer from its body. */
uint64_t shim_estimate(const struct shim_policy *pol, const struct xfer *x);
/* x is charged to pol from now (what it held before is freed). */
void shim_policy_set(struct xfer *x, struct shim_policy *pol);
void shim_policy_drop(struct shim_policy *pol);
/* x waited past its timeout while parked: say so in x->refusal. */
void shim_refuse_timeout(struct xfer *x);

/* Outcomes of shim_admit(). */
enum {
	SHIM_ADMITTED = 0,         /* lease held */
	SHIM_PASS = 1,             /* ledger unusable, on_error = open: go */
	SHIM_WAIT = 2,             /* non-blocking and refused: *wait_ns */
	SHIM_REFUSE = 3,           /* fail the transfer; msg says why */
	SHIM_CACHED = 4            /* answered from the response cache: do not
	                              send, deliver x->hit (shim_hit_deliver) */
};

/*
 * Admit x's transfer against pol: blocking (up to pol->timeout_ns) when
 * block is set, else one try (a request waiting for another's fetch for
 * the response cache is SHIM_WAIT too).  Fills x->lease / x->leased, and
 * on SHIM_REFUSE writes the reason into x->refusal.
 */
int shim_admit(struct xfer *x, int block, int64_t *wait_ns);

/* x's request is done with (refused, or answered from the cache): free
 * it now, which gives up a fetch for the response cache it may hold, so
 * that others asking for the same answer need not wait for x's handle to
 * be used again or cleaned up. */
void shim_policy_done(struct xfer *x);

/* x's transfer ended with CURLE_OK and the tee fed its body to the
 * policy: say the body is whole (ratectl_http_response_complete) unless
 * what the program got is not the answer itself (CURLOPT_HEADER, NOBODY,
 * a range, a body libcurl did not decode).  Before shim_release(). */
void shim_complete(const struct shim_curl *api, CURL *e, const struct xfer *x);

/* Keep ratectl's own request headers (info.drop_headers) from the
 * provider: install x's header list without them (xfer_hdrs_begin) for
 * the transfer about to be sent.  0; or -1 without memory, when x's
 * lease is released as never sent and x->refusal says why: do not send. */
int shim_drop_begin(const struct shim_curl *api, struct xfer *x);

/* Release x's lease with the tokens the response reported (or the
 * estimate when it said nothing; 0 for a 429, or status < 0: not sent).
 * When may_resend is set and the policy decides to retry, returns the
 * backoff before sending again (>= 0), else -1. */
int64_t shim_release(struct xfer *x, long status, int may_resend);

/* Hand a response's status and headers to the policy (it learns from
 * them at shim_release()). */
void shim_learn(const struct shim_curl *api, CURL *e, const struct xfer *x,
                long status);


/* ---- messages ----------------------------------------------------------- */

enum shim_warn {
	SHIM_W_NOCURL, SHIM_W_NOCONF, SHIM_W_BADCONF, SHIM_W_LEDGER,
	SHIM_W_TOOBIG, SHIM_W_CURLS, SHIM_W_GOT, SHIM_W_NOMEM, SHIM_W_REFUSED,
	SHIM_W_BADTAG, SHIM_W_BADNAME, SHIM_W_NOTICE,
	SHIM_W_COUNT
};

/* "ratectl-preload: ..." on stderr, once per process for each kind. */
void shim_warn(enum shim_warn kind, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Set while this thread is inside the real curl_easy_perform, whose own
 * calls to the multi interface must pass straight through. */
extern __thread int shim_in_easy;

#pragma GCC visibility pop

#endif
