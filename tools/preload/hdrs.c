/*
 * hdrs.c - the program's request headers (its CURLOPT_HTTPHEADER list)
 * as the policy reads them, and a copy of that list without ratectl's own
 * headers (X-Ratectl-Tenant, X-Ratectl-Tag: ratectl_http_info's
 * drop_headers) for the transfer to send; and the head of an answer from
 * the response cache, as libcurl would hand it to the program.  Pure: the
 * program's curl_slist is read, never changed nor freed; no libcurl call,
 * no I/O (http.h).
 *
 * libcurl sends an entry "Name: value", or "Name;" as an empty header;
 * "Name:" with nothing after the colon is not sent (it removes a header
 * libcurl would add itself, not another entry of the list), so a header
 * the program put in its list can only be kept from the provider by a
 * list without that entry: the copy, whose nodes point at the program's
 * own strings (which libcurl requires alive for the transfer anyway).
 */
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "http.h"

/*
 * The name of list entry s as libcurl reads it: up to its first ':', or
 * without one up to a ';' followed by blanks only; blanks before the
 * separator are not part of it (libcurl would send them, but no server
 * takes them as the name's, so both readings must match here).  Returns
 * the name's length and *value (after the colon's blanks; "" for ';'),
 * or 0 when the entry is not a header libcurl sends.
 */
static size_t entry_name(const char *s, const char **value)
{
	const char *sep = strchr(s, ':'), *v;
	size_t n;

	if (sep) {
		v = sep + 1 + strspn(sep + 1, " \t");
	} else if ((sep = strchr(s, ';')) && sep[1 + strspn(sep + 1, " \t")] == '\0') {
		v = "";
	} else {
		return 0;
	}
	for (n = (size_t)(sep - s); n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'); n--)
		;
	*value = v;
	return n;
}

int shim_hdrs_read(struct shim_hdrs *out, const struct curl_slist *l)
{
	const struct curl_slist *p;
	size_t n = 0, bytes = 0, k, i = 0;
	const char *v;
	char *names;

	out->v = NULL;
	out->n = 0;
	for (p = l; p; p = p->next)
		if (p->data && (k = entry_name(p->data, &v)) > 0) {
			if (k >= SIZE_MAX / 2 - bytes || n >= SIZE_MAX / 2 / sizeof *out->v)
				return -1;
			n++;
			bytes += k + 1;
		}
	if (n == 0)
		return 0;
	if (bytes > SIZE_MAX - n * sizeof *out->v ||
	    !(out->v = malloc(n * sizeof *out->v + bytes)))
		return -1;
	names = (char *)(out->v + n);
	for (p = l; p && i < n; p = p->next)
		if (p->data && (k = entry_name(p->data, &v)) > 0) {
			memcpy(names, p->data, k);
			names[k] = '\0';
			out->v[i].name = names;
			out->v[i++].value = v;
			names += k + 1;
		}
	out->n = i;
	return 0;
}

void shim_hdrs_free(struct shim_hdrs *h)
{
	free(h->v);
	h->v = NULL;
	h->n = 0;
}

/* Is entry s one of the headers named in drop[0..ndrop) (any case)? */
static int dropped(const char *s, const char *const *drop, size_t ndrop)
{
	const char *v;
	size_t k = s ? entry_name(s, &v) : 0, i;

	for (i = 0; k > 0 && i < ndrop; i++)
		if (drop[i] && strlen(drop[i]) == k && strncasecmp(s, drop[i], k) == 0)
			return 1;
	return 0;
}

long shim_hdrs_without(struct curl_slist **out, const struct curl_slist *l,
                       const char *const *drop, size_t ndrop)
{
	const struct curl_slist *p;
	struct curl_slist *c, **tail;
	size_t keep = 0;
	long gone = 0;

	*out = NULL;
	for (p = l; p; p = p->next) {
		if (dropped(p->data, drop, ndrop))
			gone += gone < LONG_MAX;
		else
			keep++;
	}
	if (gone == 0 || keep == 0)
		return gone;    /* send the program's list, or none at all */
	if (keep > SIZE_MAX / sizeof *c || !(c = malloc(keep * sizeof *c)))
		return -1;
	*out = c;
	tail = out;
	for (p = l; p; p = p->next)
		if (!dropped(p->data, drop, ndrop)) {
			c->data = p->data;
			*tail = c;
			tail = &c->next;
			c++;
		}
	*tail = NULL;
	return gone;
}

/* ---- the head of a cached answer ------------------------------------------ */

_Static_assert(SHIM_HEAD_LINE_MAX == CURL_MAX_HTTP_HEADER,
               "no head line libcurl would refuse");
_Static_assert(SHIM_HEAD_LINES >= 3 + 4, "ratectl_http_local's 4 headers fit");

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	default: return "";
	}
}

/* Can s[0..n) go into a head line (as a name when name is set)?  A CR or
 * LF would end the line early and let a value write a header of its own. */
static int head_safe(const char *s, size_t n, int name)
{
	size_t i;

	if (name && n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' ||
		    (name && (s[i] == ':' || s[i] == ' ' || s[i] == '\t')))
			return 0;
	return 1;
}

/* The headers of hs[0..n) that go into the head: their indexes into
 * keep[], how many; name and value lengths into nl[], vl[]. */
static unsigned head_pick(const ratectl_http_header *hs, size_t n, size_t *keep,
                          size_t *nl, size_t *vl)
{
	unsigned k = 0;
	size_t i, a, b;

	for (i = 0; i < n && k < SHIM_HEAD_LINES - 3; i++) {
		if (!hs[i].name || !hs[i].value)
			continue;
		/* Bounded reads: a longer name or value cannot fit a line. */
		a = strnlen(hs[i].name, SHIM_HEAD_LINE_MAX + 1);
		b = strnlen(hs[i].value, SHIM_HEAD_LINE_MAX + 1);
		if (a + b + 4 > SHIM_HEAD_LINE_MAX || !head_safe(hs[i].name, a, 1) ||
		    !head_safe(hs[i].value, b, 0) ||
		    (a == 14 && strncasecmp(hs[i].name, "content-length", 14) == 0))
			continue;
		keep[k] = i;
		nl[k] = a;
		vl[k++] = b;
	}
	return k;
}

/* Append "name: value\r\n" at *line and name\0value\0 at *nv; record it. */
static void head_put(struct shim_head *h, char **line, char **nv, const char *name,
                     size_t nl, const char *value, size_t vl)
{
	char *p = *line, *q = *nv;

	memcpy(p, name, nl);
	memcpy(p + nl, ": ", 2);
	memcpy(p + nl + 2, value, vl);
	memcpy(p + nl + 2 + vl, "\r\n", 2);
	*line = p + nl + vl + 4;
	h->end[h->nlines++] = (size_t)(*line - h->mem);
	memcpy(q, name, nl);
	q[nl] = '\0';
	memcpy(q + nl + 1, value, vl);
	q[nl + 1 + vl] = '\0';
	h->name[h->nhdrs] = q;
	h->value[h->nhdrs++] = q + nl + 1;
	if (nl == 12 && strncasecmp(name, "content-type", 12) == 0 && !h->ctype)
		h->ctype = q + nl + 1;
	*nv = q + nl + vl + 2;
}

int shim_head_make(struct shim_head *h, int status, const ratectl_http_header *hs,
                   size_t n, uint64_t body_len)
{
	size_t keep[SHIM_HEAD_LINES], nl[SHIM_HEAD_LINES], vl[SHIM_HEAD_LINES];
	size_t lines, pairs, cl, sl;
	char clen[24], *line, *nv;
	unsigned k, i;
	int m;

	memset(h, 0, sizeof *h);
	k = head_pick(hs, n, keep, nl, vl);
	/* The status line's and Content-Length's lengths, without a buffer. */
	m = snprintf(NULL, 0, "HTTP/1.1 %d %s\r\n", status, reason(status));
	if (m < 0)
		return -1;
	sl = (size_t)m;
	m = snprintf(clen, sizeof clen, "%" PRIu64, body_len);
	if (m < 0 || (size_t)m >= sizeof clen)
		return -1;
	cl = (size_t)m;
	lines = sl + (14 + 4 + cl) + 2;
	pairs = 14 + cl + 2;
	for (i = 0; i < k; i++) {
		lines += nl[i] + vl[i] + 4;
		pairs += nl[i] + vl[i] + 2;
	}
	/* Each part is at most SHIM_HEAD_LINE_MAX: the sums cannot overflow. */
	if (!(h->mem = malloc(lines + pairs)))
		return -1;
	snprintf(h->mem, sl + 1, "HTTP/1.1 %d %s\r\n", status, reason(status));
	h->end[h->nlines++] = sl;
	line = h->mem + sl;
	nv = h->mem + lines;
	for (i = 0; i < k; i++)
		head_put(h, &line, &nv, hs[keep[i]].name, nl[i], hs[keep[i]].value, vl[i]);
	head_put(h, &line, &nv, "Content-Length", 14, clen, cl);
	memcpy(line, "\r\n", 2);
	line += 2;
	h->end[h->nlines++] = (size_t)(line - h->mem);
	h->len = (size_t)(line - h->mem);
	return 0;
}

void shim_head_free(struct shim_head *h)
{
	free(h->mem);
	memset(h, 0, sizeof *h);
}
