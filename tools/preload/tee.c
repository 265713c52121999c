/*
 * tee.c - what the shim keeps of a response body: its first and last
 * bytes, to read the usage from, and a refused body held back for a
 * retry.  Pure: bytes in, no libcurl, no I/O (see http.h).
 *
 * Invariants, whatever the sizes and number of writes:
 *   nhead <= SHIM_HEAD_MAX, ntail <= 2 * SHIM_TAIL_MAX, nheld <= SHIM_HELD_MAX;
 *   head holds the body's first nhead bytes (all of them when total is
 *   below SHIM_HEAD_MAX) and tail[ntail - k .. ntail) its last k bytes,
 *   k = min(ntail, SHIM_TAIL_MAX) (all of them when the body is shorter).
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jscan.h"

_Static_assert(sizeof ((struct shim_tee *)0)->head == SHIM_HEAD_MAX,
               "head holds SHIM_HEAD_MAX bytes");
_Static_assert(sizeof ((struct shim_tee *)0)->tail == 2 * SHIM_TAIL_MAX,
               "capture() moves the tail once per SHIM_TAIL_MAX bytes: the "
               "buffer must hold two windows");
_Static_assert(SHIM_HEAD_MAX > 0 && SHIM_TAIL_MAX > 0 && SHIM_HELD_MAX > 0,
               "no empty buffers");
_Static_assert(SHIM_HELD_MAX <= SIZE_MAX / 2, "held sizes cannot overflow");

void shim_tee_reset(struct shim_tee *t, int may_hold)
{
	t->nhead = t->ntail = 0;
	t->total = 0;
	t->decided = t->holding = 0;
	t->may_hold = may_hold;
	t->held = NULL;
	t->nheld = 0;
}

void shim_tee_capture(struct shim_tee *t, const char *p, size_t len)
{
	size_t k;

	if (t->nhead < SHIM_HEAD_MAX) {
		k = len < SHIM_HEAD_MAX - t->nhead ? len : SHIM_HEAD_MAX - t->nhead;
		memcpy(t->head + t->nhead, p, k);
		t->nhead += k;
	}
	t->total += len;
	if (len >= SHIM_TAIL_MAX) {
		memcpy(t->tail, p + len - SHIM_TAIL_MAX, SHIM_TAIL_MAX);
		t->ntail = SHIM_TAIL_MAX;
		return;
	}
	if (len > sizeof t->tail - t->ntail) {
		/* Keep the last window: with len < SHIM_TAIL_MAX, it and the
		 * new bytes fit the buffer of two windows. */
		k = t->ntail < SHIM_TAIL_MAX ? t->ntail : SHIM_TAIL_MAX;
		memmove(t->tail, t->tail + t->ntail - k, k);
		t->ntail = k;
	}
	memcpy(t->tail + t->ntail, p, len);
	t->ntail += len;
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

const char *shim_tee_tail(const struct shim_tee *t, size_t *n)
{
	*n = t->ntail < SHIM_TAIL_MAX ? t->ntail : SHIM_TAIL_MAX;
	return t->tail + t->ntail - *n;
}

int shim_tee_usage(const struct shim_tee *t, uint64_t *tokens)
{
	const char *tail;
	size_t n;

	if (t->total == 0)
		return 0;
	tail = shim_tee_tail(t, &n);
	return jscan_usage(t->head, t->nhead, tail, n, tokens);
}
