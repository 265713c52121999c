/*
 * http.h - what the shim keeps of a response beyond what libratectl-http
 * reads: a refused body held back for a retry.  Bytes in, no libcurl
 * types, no I/O, so that it can be tested in-process (tests/
 * test_preload.c, under ASan and UBSan).  The HTTP policy itself (usage,
 * headers, refusal messages) is in libratectl-http (lib/http/).
 */
#ifndef RATECTL_PRELOAD_HTTP_H
#define RATECTL_PRELOAD_HTTP_H

#include <stddef.h>
#include <stdint.h>

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

#pragma GCC visibility pop

#endif
