/*
 * hdrs.c - the program's request headers (its CURLOPT_HTTPHEADER list)
 * as the policy reads them, and a copy of that list without ratectl's own
 * headers (X-Ratectl-Tenant, X-Ratectl-Tag: ratectl_http_info's
 * drop_headers) for the transfer to send.  Pure: the program's curl_slist
 * is read, never changed nor freed; no libcurl call, no I/O (http.h).
 *
 * libcurl sends an entry "Name: value", or "Name;" as an empty header;
 * "Name:" with nothing after the colon is not sent (it removes a header
 * libcurl would add itself, not another entry of the list), so a header
 * the program put in its list can only be kept from the provider by a
 * list without that entry: the copy, whose nodes point at the program's
 * own strings (which libcurl requires alive for the transfer anyway).
 */
#include <limits.h>
#include <stdint.h>
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
