/*
 * http.h - the shim's pure parts: what it keeps of a response beyond what
 * libratectl-http reads (a refused body held back for a retry, tee.c), and
 * the program's request headers read and copied without ratectl's own
 * (hdrs.c).  No libcurl call (a curl_slist is only read), no I/O, so that
 * they can be tested in-process (tests/test_preload.c, under ASan and
 * UBSan).  The HTTP policy itself (usage, headers, refusal messages) is in
 * libratectl-http (lib/http/).
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
