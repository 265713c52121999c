/*
 * tee.c - what the policy keeps of a response body: its first and last
 * bytes, to read the usage from.  Pure: bytes in, no I/O (see rh.h).
 *
 * Invariants, whatever the sizes and number of writes:
 *   nhead <= RH_HEAD_MAX, ntail <= 2 * RH_TAIL_MAX,
 *   head holds the body's first nhead bytes (all of them when total is
 *   below RH_HEAD_MAX) and tail[ntail - k .. ntail) its last k bytes,
 *   k = min(ntail, RH_TAIL_MAX) (all of them when the body is shorter).
 */
#include <stdlib.h>
#include <string.h>

#include "rh.h"

_Static_assert(sizeof ((struct rh__tee *)0)->head == RH_HEAD_MAX,
               "head holds RH_HEAD_MAX bytes");
_Static_assert(sizeof ((struct rh__tee *)0)->tail == 2 * RH_TAIL_MAX,
               "capture() moves the tail once per RH_TAIL_MAX bytes: the "
               "buffer must hold two windows");
_Static_assert(RH_HEAD_MAX > 0 && RH_TAIL_MAX > 0, "no empty buffers");

void rh__tee_reset(struct rh__tee *t)
{
	t->nhead = t->ntail = 0;
	t->total = 0;
}

void rh__tee_capture(struct rh__tee *t, const char *p, size_t len)
{
	size_t k;

	if (t->nhead < RH_HEAD_MAX) {
		k = len < RH_HEAD_MAX - t->nhead ? len : RH_HEAD_MAX - t->nhead;
		memcpy(t->head + t->nhead, p, k);
		t->nhead += k;
	}
	t->total += len;
	if (len >= RH_TAIL_MAX) {
		memcpy(t->tail, p + len - RH_TAIL_MAX, RH_TAIL_MAX);
		t->ntail = RH_TAIL_MAX;
		return;
	}
	if (len > sizeof t->tail - t->ntail) {
		/* Keep the last window: with len < RH_TAIL_MAX, it and the
		 * new bytes fit the buffer of two windows. */
		k = t->ntail < RH_TAIL_MAX ? t->ntail : RH_TAIL_MAX;
		memmove(t->tail, t->tail + t->ntail - k, k);
		t->ntail = k;
	}
	memcpy(t->tail + t->ntail, p, len);
	t->ntail += len;
}

const char *rh__tee_tail(const struct rh__tee *t, size_t *n)
{
	*n = t->ntail < RH_TAIL_MAX ? t->ntail : RH_TAIL_MAX;
	return t->tail + t->ntail - *n;
}

int rh__tee_usage(const struct rh__tee *t, uint64_t *tokens)
{
	const char *tail;
	size_t n;

	if (t->total == 0)
		return 0;
	tail = rh__tee_tail(t, &n);
	return rh__jscan_usage(t->head, t->nhead, tail, n, tokens);
}
