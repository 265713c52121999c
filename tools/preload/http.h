/*
 * http.h - the shim's pure HTTP policy: what it keeps of a response body
 * to find the usage (the tee buffers), and what providers' rate-limit
 * headers say.  Bytes and strings in, numbers out: no libcurl types, no
 * I/O, no globals, so that these can be tested in-process (tests/
 * test_preload.c, under ASan and UBSan) and move to a library later.
 */
#ifndef RATECTL_PRELOAD_HTTP_H
#define RATECTL_PRELOAD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "ratectl.h"

#pragma GCC visibility push(hidden)

/* ---- tee.c: the part of a response kept to find its usage --------------- */

/*
 * The first SHIM_HEAD_MAX and the last SHIM_TAIL_MAX bytes of a body,
 * whatever its size and however it is cut into writes: usage is at the
 * end of an OpenAI stream (the include_usage event) or body, an
 * Anthropic stream has its input usage in message_start, at the head.
 * The tail buffer is twice SHIM_TAIL_MAX so that bytes move once per
 * SHIM_TAIL_MAX appended, not at every write.  A refused response's body
 * may be held back whole, up to SHIM_HELD_MAX, for a retry to replace.
 * Memory per transfer: this struct plus at most SHIM_HELD_MAX.
 */
#define SHIM_HEAD_MAX 2048
#define SHIM_TAIL_MAX 8192
#define SHIM_HELD_MAX 65536

struct shim_tee {
	char head[SHIM_HEAD_MAX];
	size_t nhead;              /* <= SHIM_HEAD_MAX */
	char tail[2 * SHIM_TAIL_MAX];
	size_t ntail;              /* <= 2 * SHIM_TAIL_MAX; the last bytes */
	uint64_t total;            /* bytes seen */
	int decided;               /* the status was looked at (first write) */
	int may_hold;              /* a refused body may be held for a retry */
	int holding;               /* withholding a refused body for a retry */
	char *held;                /* malloc'd, nheld <= SHIM_HELD_MAX */
	size_t nheld;
};

/* Empty t for a new transfer (frees nothing: see shim_tee_drop_held). */
void shim_tee_reset(struct shim_tee *t, int may_hold);
/* Note len more bytes of the body. */
void shim_tee_capture(struct shim_tee *t, const char *p, size_t len);
/* Hold back len more bytes; -1 (nothing held added) past SHIM_HELD_MAX
 * or without memory. */
int shim_tee_hold(struct shim_tee *t, const char *p, size_t len);
/* Free what is held. */
void shim_tee_drop_held(struct shim_tee *t);
/* The last min(ntail, SHIM_TAIL_MAX) bytes of the body. */
const char *shim_tee_tail(const struct shim_tee *t, size_t *n);
/* Tokens the body reports using (jscan_usage on head and tail): 1 and
 * *tokens, or 0. */
int shim_tee_usage(const struct shim_tee *t, uint64_t *tokens);

/* ---- hdr.c: providers' rate-limit headers ------------------------------- */

/* The value of response header `name` (case-insensitive), or NULL. */
typedef const char *(*shim_hdr_get)(void *ctx, const char *name);

/* At most this many windows from one response. */
#define SHIM_HDR_WINDOWS 8
/* Longest policy name of an IETF RateLimit header that is compared;
 * longer names are cut to it (and may then mix up two policies). */
#define SHIM_HDR_NAME_MAX 64
/* The longest header value read: a longer one is taken as absent (a
 * cut number or list could say something the provider did not). */
#define SHIM_HDR_VALUE_MAX 1024
/* Values held at once by shim_hdr_windows() (limit, remaining, reset). */
#define SHIM_HDR_KEEP 4

/* Copies of header values, for a lookup whose values do not last. */
struct shim_hdr_copies {
	char buf[SHIM_HDR_KEEP][SHIM_HDR_VALUE_MAX + 1];
	unsigned next;
};

/* v copied into the next of c's buffers (the oldest is reused), or NULL
 * when v is NULL or longer than SHIM_HDR_VALUE_MAX. */
const char *shim_hdr_keep(struct shim_hdr_copies *c, const char *v);

/*
 * The windows the headers describe, into out[0..cap): OpenAI's and Azure
 * OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens} (per
 * minute; reset a Go duration), Anthropic's anthropic-ratelimit-{requests,
 * tokens,input-tokens,output-tokens}-{limit,remaining,reset} (per minute;
 * reset an RFC 3339 time, against wall_now_ns, CLOCK_REALTIME), and the
 * IETF draft's RateLimit-Policy + RateLimit.  See doc/preload.md for the
 * dimension each maps to.  Values that cannot be trusted (negative,
 * garbage, 0 left with no reset) are skipped.  Returns how many.
 */
size_t shim_hdr_windows(shim_hdr_get get, void *ctx, int64_t wall_now_ns,
                        ratectl_window *out, size_t cap);

/* A count: optional blanks, digits, optional blanks; 0 or -1 (also on
 * overflow). */
int shim_hdr_count(const char *s, uint64_t *v);

/* ---- msg.c: why a transfer is refused ----------------------------------- */

/* Each writes a NUL-terminated message of at most n - 1 bytes into buf
 * (cut when longer) and returns buf. */
char *shim_refusal_toobig(char *buf, size_t n, const char *budget,
                          const char *dim, uint64_t cost, uint64_t burst);
char *shim_refusal_timeout(char *buf, size_t n, const char *budget,
                           int64_t timeout_ns);
char *shim_refusal_closed(char *buf, size_t n, const char *budget,
                          const char *why);

#pragma GCC visibility pop

#endif
