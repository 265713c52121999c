/*
 * jscan.h - the few values libratectl-http reads from a request's JSON
 * body: max_tokens and model (a response's usage: usage.h); and the
 * body's canonical form for the response cache (jcanon.c).
 *
 * Why not a JSON library: the shim lives in the address space of arbitrary
 * programs (LD_PRELOAD), some of which carry their own, different version
 * of jansson or another parser; pulling one in could change which one
 * those programs bind to.  Nor is a full parse needed: one pass over the
 * text that knows strings (with escapes) and nesting, and reads integer
 * members of one object, is enough, is fast (memchr skips string bodies),
 * and never allocates.  Inputs may be truncated or not JSON at all: the
 * scanner then finds nothing and never reads outside text[0..len).
 */
#ifndef RATECTL_HTTP_JSCAN_H
#define RATECTL_HTTP_JSCAN_H

#include <stddef.h>
#include <stdint.h>

/* Internal to the shim: never exported into the program (see shim.h). */
#pragma GCC visibility push(hidden)

/* Values above this are taken as this (no request asks for more). */
#define RH_JSCAN_INT_MAX 1000000000000ULL

/*
 * Integer members of the object that starts at the first non-blank byte
 * of text[0..len): for each keys[i] found at that object's top level with
 * a non-negative integer value, out[i] is set.  Returns the bitmask of the
 * keys found (at most 16 keys).  Members of nested objects are skipped.
 */
unsigned rh__jscan_members(const char *text, size_t len, const char *const *keys,
                       unsigned nkeys, uint64_t *out);

/*
 * max_tokens, max_completion_tokens or max_output_tokens of a request
 * body (the largest found) into *max.  Returns 1 when found, 0 otherwise.
 */
int rh__jscan_max_tokens(const char *body, size_t len, uint64_t *max);

/*
 * The string value of member key of the object at the start of
 * text[0..len) (top level only), copied into out (cap bytes with the
 * NUL).  Returns 1, or 0 when absent, not a string, cut short, longer
 * than cap - 1 or holding an escape.
 */
int rh__jscan_string(const char *text, size_t len, const char *key, char *out,
                     size_t cap);

/* What rh__jcanon() saw of a top-level object. */
struct rh__jcanon_top {
	int object;                /* the text is an object */
	int has_temperature;       /* it has a member "temperature" */
	int temperature_zero;      /* ... whose value is a number equal to 0 */
	int stream;                /* it has "stream" other than false or null */
};

/*
 * text[0..len) in a canonical form (jcanon.c): valid JSON (RFC 8259) with
 * the blanks between tokens removed and each object's members sorted by
 * key, strings and numbers as written, into out (at least len bytes: the
 * form is never longer), *out_len bytes of it; and, when top is not NULL,
 * what the top-level object says of temperature and stream.  Returns 0,
 * or -1 when text is not JSON, nests deeper than 64, has an object with
 * a key twice, or memory runs out.
 */
int rh__jcanon(const char *text, size_t len, char *out, size_t *out_len,
               struct rh__jcanon_top *top);

#pragma GCC visibility pop

#endif
