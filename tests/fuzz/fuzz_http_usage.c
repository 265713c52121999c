/*
 * fuzz_http_usage.c - the usage scanner (lib/http/usage.c) on any bytes,
 * as a JSON body and as an event stream, differentially: the input fed
 * whole, split in two at a position taken from its first byte, in three
 * (the second cut from its last byte) and, when short, byte by byte must
 * all give the same result, since chunk boundaries are the network's and
 * not the body's.  Every piece is copied into a block of exactly its size,
 * so that ASan catches a read past it.  The scanner is included, not
 * linked, as in tests/test_http_usage.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/http/usage.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct result {
	int rc;
	uint64_t off;
	rh_usage u;
} result;

/* Feed data[0..size) in pieces ending at cuts[0..ncuts), each in its own block. */
static result scan(int sse, const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts)
{
	rh_usage_parser p;
	result r;
	size_t at = 0, i;

	rh_usage_init(&p, sse);
	for (i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : size;
		char *piece = malloc(end - at ? end - at : 1);

		if (!piece)
			abort();
		memcpy(piece, data + at, end - at);
		(void)rh_usage_feed(&p, piece, end - at);
		free(piece);
		at = end;
	}
	memset(&r, 0, sizeof r);
	r.rc = rh_usage_finish(&p, &r.u);
	r.off = r.rc ? p.err_offset : 0;
	return r;
}

static void same(const result *a, const result *b)
{
	if (a->rc != b->rc || a->off != b->off ||
	    a->u.have_input != b->u.have_input || a->u.input != b->u.input ||
	    a->u.have_output != b->u.have_output || a->u.output != b->u.output ||
	    a->u.have_total != b->u.have_total || a->u.total != b->u.total)
		abort();
}

/* What any result must satisfy, whatever the bytes. */
static void sane(int sse, const result *r, size_t size)
{
	if (r->off > size)
		abort();
	if (r->rc == RH_USAGE_ESYNTAX && (sse || r->off >= size))
		abort();                /* SSE has no syntax error; it is at a byte */
	if (r->rc && r->rc != RH_USAGE_ESYNTAX && r->rc != RH_USAGE_ETRUNCATED &&
	    r->rc != RH_USAGE_ERANGE)
		abort();
	if (sse && r->rc == RH_USAGE_ETRUNCATED)
		abort();
	/* a usage count needs at least a digit and its key: 30 bytes or so */
	if ((r->u.have_input || r->u.have_output || r->u.have_total) && size < 20)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cuts[2], bytes[512];
	int sse;

	cuts[0] = size ? (size_t)data[0] * (size + 1) / 256 : 0;
	cuts[1] = size ? cuts[0] + (size_t)data[size - 1] * (size - cuts[0] + 1) / 256 : 0;
	for (sse = 0; sse <= 1; sse++) {
		result whole = scan(sse, data, size, NULL, 0), r;

		sane(sse, &whole, size);
		r = scan(sse, data, size, cuts, 1);
		same(&r, &whole);
		r = scan(sse, data, size, cuts, 2);
		same(&r, &whole);
		if (size <= sizeof bytes / sizeof bytes[0]) {
			size_t i;

			for (i = 0; i < size; i++)
				bytes[i] = i;
			r = scan(sse, data, size, bytes, size);
			same(&r, &whole);
		}
	}
	return 0;
}
