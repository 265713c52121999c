/*
 * match.c - what a request is, for matching: its URL split into host,
 * port and path, its request headers, and the id of its API key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rh.h"

int rh__url_split(const char *u, char *host, size_t hl, unsigned *port,
                  char *path, size_t pl)
{
	const char *h = strstr(u, "://"), *ae, *at, *he, *q, *pe;
	unsigned long v;

	*port = 80;
	if (h && (size_t)(h - u) == 5 && strncasecmp(u, "https", 5) == 0)
		*port = 443;
	else if (h && !((size_t)(h - u) == 4 && strncasecmp(u, "http", 4) == 0))
		return -1;
	h = h ? h + 3 : u;
	ae = h + strcspn(h, "/?#");
	for (at = NULL, q = h; q < ae; q++)
		if (*q == '@')
			at = q;
	if (at)
		h = at + 1;
	if (*h == '[') {
		if (!(he = memchr(h, ']', (size_t)(ae - h))))
			return -1;
		q = he + 1;
		h++;
	} else {
		he = memchr(h, ':', (size_t)(ae - h));
		he = he ? he : ae;
		q = he;
	}
	if (he > h && he[-1] == '.')
		he--;                   /* "api.openai.com." */
	if (he == h || (size_t)(he - h) >= hl)
		return -1;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	if (q < ae && *q == ':' && q + 1 < ae) {
		v = strtoul(q + 1, NULL, 10);
		if (v == 0 || v > 65535)
			return -1;
		*port = (unsigned)v;
	}
	pe = ae + strcspn(ae, "?#");
	if (*ae != '/' || (size_t)(pe - ae) >= pl)
		pe = ae;        /* no path (or absurdly long): match as "/" */
	snprintf(path, pl, "%.*s", pe > ae ? (int)(pe - ae) : 1, pe > ae ? ae : "/");
	return 0;
}

const char *rh__req_header(const ratectl_http_header *h, size_t n, const char *name)
{
	size_t i;

	for (i = 0; h && i < n; i++)
		if (h[i].name && h[i].value && strcasecmp(h[i].name, name) == 0)
			return h[i].value;
	return NULL;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The SHA-256 of key[0..len) without blanks around it nor "Bearer ":
 * 0, or -EINVAL when nothing is left. */
static int key_digest(const char *key, size_t len, uint8_t d[32])
{
	const char *s = key, *e = key + len;

	while (s < e && is_blank(*s))
		s++;
	while (e > s && is_blank(e[-1]))
		e--;
	if (e - s >= 6 && strncasecmp(s, "Bearer", 6) == 0 && (e - s == 6 || is_blank(s[6])))
		for (s += 6; s < e && is_blank(*s); s++)
			;
	if (s == e)
		return -EINVAL;
	rh__sha256(s, (size_t)(e - s), d);
	return 0;
}

int ratectl_http_key_id(char out[RATECTL_HTTP_KEY_ID_LEN + 1], const char *key,
                        size_t len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t d[32];
	int i;

	if (key_digest(key, len, d) != 0)
		return -EINVAL;
	for (i = 0; i < RATECTL_HTTP_KEY_ID_LEN / 2; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[RATECTL_HTTP_KEY_ID_LEN] = '\0';
	memset(d, 0, sizeof d);
	return 0;
}

_Static_assert(RH_KEY_ID_LEN == RATECTL_HTTP_KEY_ID_LEN, "one key id length");

static const char *key_header(const ratectl_http_header *h, size_t n)
{
	const char *v = rh__req_header(h, n, "x-api-key");

	if (!v)
		v = rh__req_header(h, n, "authorization");
	if (!v)
		v = rh__req_header(h, n, "api-key");     /* Azure OpenAI */
	return v;
}

int rh__key_id_of(const ratectl_http_header *h, size_t n, char out[RH_KEY_ID_LEN + 1])
{
	const char *v = key_header(h, n);

	return v && ratectl_http_key_id(out, v, strlen(v)) == 0;
}

