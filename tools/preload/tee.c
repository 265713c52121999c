/*
 * tee.c - a refused response body held back for a retry (what the program
 * must not see when the shim sends the request again).  The usage is read
 * by libratectl-http from the bytes the shim feeds it.  Pure: bytes in,
 * no libcurl, no I/O (see http.h).  Invariant: nheld <= SHIM_HELD_MAX.
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"

_Static_assert(SHIM_HELD_MAX > 0,
               "no empty buffers");
_Static_assert(SHIM_HELD_MAX <= SIZE_MAX / 2, "held sizes cannot overflow");

void shim_tee_reset(struct shim_tee *t, int may_hold)
{
	t->decided = t->holding = 0;
	t->may_hold = may_hold;
	t->held = NULL;
	t->nheld = 0;
}

int shim_tee_hold(struct shim_tee *t, const char *p, size_t len)
{
	char *n;

	if (len > SHIM_HELD_MAX - t->nheld)
		return -1;
	if (!len)
		return 0;
	if (!(n = realloc(t->held, t->nheld + len)))
		return -1;
	memcpy(n + t->nheld, p, len);
	t->held = n;
	t->nheld += len;
	return 0;
}

void shim_tee_drop_held(struct shim_tee *t)
{
	free(t->held);
	t->held = NULL;
	t->nheld = 0;
}
