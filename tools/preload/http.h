/*
 * http.h - the shim's pure parts: what it keeps of a response beyond what
 * libratectl-http reads (a refused body held back for a retry, tee.c), and
 * the program's request headers read and copied without ratectl's own
 * (hdrs.c), and an answer from the response cache made into what libcurl
 * hands a program (its head: hdrs.c; delivered to the program's
 * callbacks: tee.c).  No libcurl call (a curl_slist is only read), no I/O
 * but the program's own callbacks (or fwrite(), libcurl's default), so
 * that they can be tested in-process (tests/test_preload.c, under ASan
 * and UBSan).  The HTTP policy itself (usage, headers, refusal messages,
 * the cache) is in libratectl-http (lib/http/).
 */
#ifndef RATECTL_PRELOAD_HTTP_H
#define RATECTL_PRELOAD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "ratectl_http.h"

struct curl_slist;

#pragma GCC visibility push(hidden)

/*
 * A refused response's body may be held back whole, up to SHIM_HELD_MAX,
 * for a retry to replace.  Memory per transfer: this struct plus at most
 * SHIM_HELD_MAX.
 */
#define SHIM_HELD_MAX 65536

struct shim_tee {
	int decided;               /* the status was looked at (first write) */
	int may_hold;              /* a refused body may be held for a retry */
	int holding;               /* withholding a refused body for a retry */
	char *held;                /* malloc'd, nheld <= SHIM_HELD_MAX */
	size_t nheld;
};

/* Empty t for a new transfer (frees nothing: see shim_tee_drop_held). */
void shim_tee_reset(struct shim_tee *t, int may_hold);
/* Hold back len more bytes; -1 (nothing held added) past SHIM_HELD_MAX
 * or without memory. */
int shim_tee_hold(struct shim_tee *t, const char *p, size_t len);
/* Free what is held. */
void shim_tee_drop_held(struct shim_tee *t);

/* ---- an answer from the response cache (hdrs.c, tee.c) ------------------- */

/*
 * The head of a cached answer as libcurl gives a response's head to a
 * program: "HTTP/1.1 200 OK", each header of the answer, Content-Length,
 * and the blank line, each line ending in CRLF.  A line longer than
 * SHIM_HEAD_LINE_MAX (libcurl's CURL_MAX_HTTP_HEADER: libcurl refuses a
 * longer one from a server), or a header whose name or value holds a CR,
 * LF or NUL (or, for a name, a colon or a blank), is left out; so is a
 * Content-Length of the answer's own (the shim writes the body's).
 */
#define SHIM_HEAD_LINE_MAX 102400
/* The status line, the answer's headers (ratectl_http_local holds 4),
 * Content-Length, the blank line. */
#define SHIM_HEAD_LINES 7

struct shim_head {
	char *mem;                 /* one malloc'd block: the lines, then each
	                              header's name and value NUL-terminated */
	size_t len;                /* bytes of the lines, from mem */
	size_t end[SHIM_HEAD_LINES];  /* line i is mem[end[i-1] (0) .. end[i]) */
	unsigned nlines;
	/* The headers written (Content-Length included), NUL-terminated,
	 * in mem: for curl_easy_getinfo() and curl_easy_header(). */
	const char *name[SHIM_HEAD_LINES];
	const char *value[SHIM_HEAD_LINES];
	unsigned nhdrs;
	const char *ctype;         /* the Content-Type value, or NULL */
};

/* Make *h for an answer of status with headers hs[0..n) and a body of
 * body_len bytes.  0, or -1 without memory (*h then empty). */
int shim_head_make(struct shim_head *h, int status, const ratectl_http_header *hs,
                   size_t n, uint64_t body_len);
void shim_head_free(struct shim_head *h);

/* A program's write or header callback (curl_write_callback). */
typedef size_t (*shim_write_fn)(char *p, size_t size, size_t n, void *ud);

/* What the program set for a response to go to, as libcurl reads it. */
struct shim_sink {
	shim_write_fn wfn;         /* CURLOPT_WRITEFUNCTION; NULL: fwrite() */
	void *wdata;               /* CURLOPT_WRITEDATA (libcurl's default: stdout) */
	shim_write_fn hfn;         /* CURLOPT_HEADERFUNCTION, NULL when unset */
	void *hdata;               /* CURLOPT_HEADERDATA, NULL when unset */
	int include_header;        /* CURLOPT_HEADER: the head in the body stream */
	int nobody;                /* CURLOPT_NOBODY: the head only */
};

/* The most a write callback is given at once (CURL_MAX_WRITE_SIZE). */
#define SHIM_WRITE_MAX 16384

/* What shim_deliver() returns. */
enum {
	SHIM_DELIVERED = 0,
	SHIM_DELIVER_EBODY = -1,   /* a write callback took less than given */
	SHIM_DELIVER_EHEAD = -2,   /* a header callback took less than given */
	SHIM_DELIVER_EPAUSE = -3   /* a callback asked to pause (CURL_WRITEFUNC_PAUSE):
	                              an answer given whole at once cannot be */
};

/*
 * Give head h and body[0..len) to the program as libcurl gives a
 * response (lib/sendf.c, chop_write()): each line of the head, whole, to
 * the header callback (without one, to the write callback or fwrite() with
 * CURLOPT_HEADERDATA, when that is set; else nowhere), and first, with
 * CURLOPT_HEADER, to the body stream; then, without CURLOPT_NOBODY, the
 * body in pieces of at most SHIM_WRITE_MAX to the write callback (or
 * fwrite() to CURLOPT_WRITEDATA).  Stops at the first callback that takes
 * less than it was given.  *body_done (may be NULL): body bytes taken.
 */
int shim_deliver(const struct shim_sink *s, const struct shim_head *h,
                 const char *body, size_t len, uint64_t *body_done);

/* ---- request headers (hdrs.c) ------------------------------------------- */

/* A program's header list as name/value pairs for the policy: n pairs in
 * one malloc'd block, names copied into it (NUL-terminated), values
 * pointing into the program's strings (valid while its list is). */
struct shim_hdrs {
	ratectl_http_header *v;
	size_t n;
};

/* Every header of list l ("Name: value", "Name;") into *out, in order,
 * whatever their number and the length of their names.  0, or -1 without
 * memory (*out empty). */
int shim_hdrs_read(struct shim_hdrs *out, const struct curl_slist *l);
void shim_hdrs_free(struct shim_hdrs *h);

/*
 * A list to send instead of l: its entries but those whose name (any
 * case) is one of drop[0..ndrop), in order.  Returns how many entries are
 * left out, or -1 without memory.  *out is set only when some are left
 * out and some kept: one malloc'd block of nodes (free() it) pointing at
 * l's own strings; l is never changed.  0: send l itself; > 0 with *out
 * NULL: send no list at all.
 */
long shim_hdrs_without(struct curl_slist **out, const struct curl_slist *l,
                       const char *const *drop, size_t ndrop);

#pragma GCC visibility pop

#endif
