/*
 * usage.h - the token usage an LLM API reports in a response body, read
 * incrementally: the body is fed in chunks of any size, as it arrives,
 * in bounded memory (the parser struct, nothing else) and with no
 * allocation, whatever the body's size.  Modelled on llhttp and
 * picohttpparser: a caller-owned struct, init / feed / finish, errors
 * from one X-macro table, sticky until the next init.
 *
 * What counts as usage
 *   Only a "usage" object at the top level of a JSON document, or inside a
 *   top-level "message" or "response" object:
 *       {"usage":{...}}  {"message":{"usage":{...}}}  {"response":{"usage":{...}}}
 *   and in it the members (an unsigned decimal integer each):
 *       input:  "prompt_tokens" (OpenAI chat, embeddings), "input_tokens"
 *               (OpenAI Responses, Anthropic)
 *       output: "completion_tokens" (OpenAI chat), "output_tokens"
 *       total:  "total_tokens"; when absent and both input and output are
 *               known, total = input + output (Anthropic never sends it).
 *   A "usage" anywhere else (in a string, in "content", "text", tool
 *   arguments, a nested object or array) is never taken: model output
 *   often holds that word and JSON-looking text.  Keys are compared after
 *   JSON unescaping ("us\u0061ge" is "usage").  Anthropic's
 *   cache_creation_input_tokens / cache_read_input_tokens and OpenAI's
 *   *_tokens_details are ignored: input is what the provider calls input.
 *   A value that is negative, has a fraction or an exponent, or is not a
 *   number (null) is not a count and is skipped without error.
 *
 *   When the body has several usage objects (a stream does: Anthropic's
 *   message_start gives input, each message_delta gives output so far),
 *   each field takes the LAST value seen for it.
 *
 * JSON mode (rh_usage_init(p, 0)): the body is one JSON document.
 *   Invalid JSON is an error (RH_USAGE_ESYNTAX) at its byte; a body that
 *   ends inside the document (or is empty) is RH_USAGE_ETRUNCATED.  In
 *   both cases rh_usage_finish() still fills *out with what was found
 *   before the error (a truncated body has often reported its usage),
 *   and returns the error: the caller chooses whether to trust it.
 *
 * SSE mode (rh_usage_init(p, 1)): a text/event-stream body (WHATWG HTML
 *   "server-sent events"): lines end in \n, \r\n or \r (a \r\n split
 *   across chunks is one line end), lines starting with ':' are comments,
 *   "data" lines of one event are joined with \n, one space after the
 *   colon is dropped, a blank line dispatches the event; other fields
 *   (event, id, retry) are ignored, because the data's shape says what it
 *   is.  Each event's data is scanned as one JSON document while it
 *   streams through (never buffered; events may be megabytes).  An event
 *   whose data is not one complete, valid JSON document (a ping that is
 *   not JSON, "[DONE]", a truncated event) is ignored whole, its usage
 *   too, and the stream goes on: SSE mode has no syntax error.
 *   Deviations from WHATWG, both deliberate: a byte-order mark at the
 *   start is not stripped (no provider sends one); an event left without
 *   its final blank line at the end of the body is still taken if its
 *   data is complete JSON (the tokens it reports were spent).
 *
 * Limits (fixed, so the memory is the struct):
 *   - keys longer than RH_USAGE_KEY_MAX bytes never match (no usage key is);
 *   - containers nested deeper than RH_USAGE_DEPTH_MAX are skimmed: their
 *     strings and brackets are tracked to find where they end, but their
 *     syntax is not checked and nothing in them matches (no error);
 *   - a count above UINT64_MAX (more than 20 digits, or 20 that overflow)
 *     is RH_USAGE_ERANGE for that field: the field is not taken, the scan
 *     goes on (other fields are still found) and rh_usage_finish() returns
 *     RH_USAGE_ERANGE unless there was a more serious error;
 *   - UTF-8 is not validated (it cannot make a key match).
 *
 * Threads: a parser is used by one thread at a time; no global state.
 * Fork: the struct holds no pointers or descriptors; a child may copy it.
 */
#ifndef RATECTL_HTTP_USAGE_H
#define RATECTL_HTTP_USAGE_H

#include <stddef.h>
#include <stdint.h>

/* The codes, far from -errno values and from RATECTL_ERR_BASE's range. */
#define RH_USAGE_ERR_BASE (-31200)

/* XX(name, offset, description).  The code is RH_USAGE_ERR_BASE - offset. */
#define RH_USAGE_ERRNO_MAP(XX)                                                 \
	XX(SYNTAX, 0, "response body is not valid JSON")                          \
	XX(TRUNCATED, 1, "response body ended inside its JSON document")          \
	XX(RANGE, 2, "a usage count does not fit in 64 bits")                     \
	XX(INVAL, 3, "invalid argument (NULL data with a length, or NULL out)")   \
	XX(FINISHED, 4, "fed after rh_usage_finish(); call rh_usage_init() first")

enum {
#define RH_USAGE__ERRDEF(name, off, desc) RH_USAGE_E##name = RH_USAGE_ERR_BASE - (off),
	RH_USAGE_ERRNO_MAP(RH_USAGE__ERRDEF)
#undef RH_USAGE__ERRDEF
	RH_USAGE_ERR_LAST = RH_USAGE_ERR_BASE - 5
};

#define RH_USAGE_KEY_MAX 32     /* longest key compared; the longest wanted is 17 */
#define RH_USAGE_DEPTH_MAX 64   /* one bit each in a uint64_t: object or array */

typedef struct rh_usage {
	uint64_t input, output, total;
	int have_input, have_output, have_total;
} rh_usage;

/*
 * Caller-owned, fixed size; only err_offset is for the caller to read.
 * Everything else is the scanner's state (see usage.c).
 */
typedef struct rh_usage_parser {
	uint64_t err_offset;    /* byte offset in the body of the error returned */
	uint64_t off;           /* bytes fed so far */
	int err;                /* sticky error, 0 if none */
	int range_err;          /* 1 when a count overflowed (RH_USAGE_ERANGE) */
	uint64_t range_offset;  /* where the first such count began */
	rh_usage found;         /* committed usage */
	rh_usage ev;            /* usage of the current document or event */
	uint64_t ev_range_offset; /* first overflowed count of it, + 1; 0 if none */

	/* JSON tokenizer */
	uint64_t objs;          /* bit d-1 set: the container at depth d is an object */
	uint64_t skim;          /* depth beyond RH_USAGE_DEPTH_MAX, while skimming */
	uint64_t num;           /* the integer being read */
	uint64_t num_offset;    /* where it began */
	uint8_t jstate, depth, role[4], key_id;
	uint8_t str_key, key_len, lit, lit_pos, u_count;
	uint8_t num_int, num_over;
	uint16_t u_val;
	char key[RH_USAGE_KEY_MAX];

	/* SSE lines */
	uint8_t sse, sstate, field_pos, cr_pending, ev_data, finished;
} rh_usage_parser;

_Static_assert(sizeof(rh_usage_parser) <= 256, "the parser must stay small: it is the memory");

/* Start (or restart) a scan: sse non-zero for a text/event-stream body. */
void rh_usage_init(rh_usage_parser *p, int sse);

/*
 * Scan data[0..len), the next piece of the body; data need not be
 * terminated and is never read outside that range; len may be 0.
 * Returns 0, or a negative RH_USAGE_E* code (ESYNTAX in JSON mode,
 * EINVAL, EFINISHED) that every later call returns too, until init;
 * p->err_offset then says at which byte of the body (counted from the
 * first byte fed).  RH_USAGE_ERANGE is not returned here: see finish.
 */
int rh_usage_feed(rh_usage_parser *p, const char *data, size_t len);

/*
 * End of the body: fills *out (the have_* flags say which counts were
 * found; all zero when none) even when returning an error, and returns
 * 0, the sticky error, RH_USAGE_ETRUNCATED (JSON mode: the document did
 * not end) or RH_USAGE_ERANGE (see Limits).  Calling it again returns the
 * same; feeding after it is RH_USAGE_EFINISHED.
 */
int rh_usage_finish(rh_usage_parser *p, rh_usage *out);

/* A static description of an RH_USAGE_E* code; never NULL. */
const char *rh_usage_strerror(int code);

#endif
