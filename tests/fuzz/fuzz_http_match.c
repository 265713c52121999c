// fuzz-sources: -Ilib/http lib/http/match.c lib/http/sha256.c lib/http/conf.c lib/http/conf_keys.c lib/*.c -linih -llmdb -lhiredis -lpthread
/*
 * fuzz_http_match.c - what selects a budget: URL splitting
 * (rh__url_split()), the match rules (rh__conf_match()) and model
 * patterns (rh__glob()), on any bytes.  The input is URL, NUL, model,
 * NUL, pattern.  Checked, not just run:
 *   - a split URL has a host without '/', '?', '#' or '@', a port in
 *     1..65535 and a path starting with '/' without query or fragment,
 *     each within its buffer; written back as a URL it splits the same;
 *   - the budget chosen for it is the first whose rule the host, port
 *     and path meet and whose models and keys admit the request, checked
 *     against a plain loop over the config;
 *   - rh__glob() agrees with a table-driven matcher on short inputs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char conf_text[] =
	"[gpt4o]\nmatch = api.openai.com/v1/chat\nmodel = gpt-4o*, *-mini\n"
	"requests = 10/s\n"
	"[keyed]\nmatch = api.openai.com\nkey = 0123456789abcdef\nrequests = 10/s\n"
	"[openai]\nmatch = api.openai.com, API.OpenAI.com:8443/v1\nrequests = 10/s\n"
	"[local]\nmatch = 127.0.0.1:8080/v1/, [::1]\nrequests = 10/s\n"
	"[anthropic]\nmatch = api.anthropic.com/v1/messages\nmodel = claude-*\n"
	"requests = 10/s\n";
static rh__conf *conf;

/* The reference for rh__glob: a table of "pat[i..] matches s[j..]".
 * Both at most GLOB_REF_MAX bytes (a request's model is read up to 127,
 * a config's pattern too). */
#define GLOB_REF_MAX 255
static int glob_ref(const char *pat, const char *s)
{
	static unsigned char m[GLOB_REF_MAX + 1][GLOB_REF_MAX + 1];
	size_t np = strlen(pat), ns = strlen(s), i, j;

	if (np > GLOB_REF_MAX || ns > GLOB_REF_MAX)
		abort();
	for (i = np + 1; i-- > 0;)
		for (j = ns + 1; j-- > 0;) {
			if (i == np)
				m[i][j] = j == ns;
			else if (pat[i] == '*')
				m[i][j] = m[i + 1][j] || (j < ns && m[i][j + 1]);
			else
				m[i][j] = j < ns && pat[i] == s[j] && m[i + 1][j + 1];
		}
	return m[0][0];
}

/* The budget rh__conf_match() should pick, written as the contract says. */
static const rh__conf_budget *match_ref(const char *host, unsigned port,
                                        const char *path, const char *model,
                                        const char *key)
{
	size_t i, j, k;

	for (i = 0; i < conf->nbudgets; i++) {
		const rh__conf_budget *b = &conf->budgets[i];
		int rule = 0, mok = b->nmodels == 0, kok = b->nkeys == 0;

		for (j = 0; j < b->nmatch; j++)
			rule |= strcasecmp(b->match[j].host, host) == 0 &&
			        (b->match[j].port == 0 || b->match[j].port == port) &&
			        strncmp(path, b->match[j].path, strlen(b->match[j].path)) == 0;
		for (k = 0; model && k < b->nmodels; k++)
			mok |= glob_ref(b->models[k], model);
		for (k = 0; key && k < b->nkeys; k++)
			kok |= strcmp(b->keys[k], key) == 0;
		if (rule && mok && kok)
			return b;
	}
	return NULL;
}

static void check_split(const char *url, const char *model)
{
	char host[256], path[1024], host2[256], path2[1024], again[2048];
	unsigned port, port2;
	const rh__conf_budget *b;
	size_t hl;

	if (rh__url_split(url, host, sizeof host, &port, path, sizeof path) != 0)
		return;
	hl = strlen(host);
	if (hl == 0 || hl >= sizeof host || strpbrk(host, "/?#@") ||
	    port == 0 || port > 65535 || path[0] != '/' || strpbrk(path, "?#") ||
	    strlen(path) >= sizeof path)
		abort();
	/* Written back: http(s)://host:port/path splits the same.  Not for
	 * hosts no HTTP client sends: one still ending in a dot (one trailing
	 * dot is dropped, "a.." gives "a.", which would lose another), or
	 * holding a bracket ("[[x]junk" is taken leniently as host "[x": what
	 * follows ']' is ignored). */
	if (strpbrk(host, "[]") || host[hl - 1] == '.')
		goto match;
	snprintf(again, sizeof again, "%s://%s%s%s:%u%s", port == 443 ? "https" : "http",
	         strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
	         port, path);
	if (rh__url_split(again, host2, sizeof host2, &port2, path2, sizeof path2) != 0 ||
	    port2 != port || strcmp(path2, path) != 0 || strcmp(host2, host) != 0)
		abort();
match:
	/* The budget chosen, with and without a model and a key. */
	b = rh__conf_match(conf, host, port, path, model, NULL);
	if (b != match_ref(host, port, path, model, NULL))
		abort();
	b = rh__conf_match(conf, host, port, path, NULL, "0123456789abcdef");
	if (b != match_ref(host, port, path, NULL, "0123456789abcdef"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 3), *url, *model, *pat;
	char err[256];

	if (!s)
		return 0;
	if (!conf && rh__conf_parse(&conf, "fuzz.conf", conf_text, sizeof conf_text - 1,
	                            err, sizeof err) != 0) {
		fprintf(stderr, "fuzz_http_match: %s\n", err);
		abort();
	}
	/* Three NUL-terminated strings, the missing ones empty; each is a
	 * C string, as the callers give them. */
	memcpy(s, data, size);
	s[size] = s[size + 1] = s[size + 2] = '\0';
	url = s;
	model = url + strlen(url) + 1;
	pat = model + strlen(model) + 1;
	if (model > s + size)
		model = pat = s + size + 1;
	else if (pat > s + size)
		pat = s + size + 2;
	if (strlen(model) > GLOB_REF_MAX)
		model[GLOB_REF_MAX] = '\0';
	check_split(url, *model ? model : NULL);
	if (strlen(pat) <= GLOB_REF_MAX && strlen(model) <= GLOB_REF_MAX &&
	    rh__glob(pat, model) != glob_ref(pat, model))
		abort();
	free(s);
	return 0;
}
