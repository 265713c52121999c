/*
 * shim_dlopen - a program that is not linked with libcurl and loads it at
 * run time with dlopen(RTLD_LOCAL), as interpreters do, for
 * tests/test_shim.sh.  Two ways:
 *
 *   shim_dlopen LIB URL N [BODY]
 *       dlopen()s LIB (libcurl.so.4, libcurl-gnutls.so.4) itself and
 *       calls the functions dlsym() gives it;
 *   shim_dlopen --plugin SO [--deepbind] URL N [BODY]
 *       dlopen()s SO, an object linked with libcurl (like pycurl's or
 *       PHP's extension), with RTLD_DEEPBIND when asked (as PHP does),
 *       and calls its plugin_run(url, n, body, &ok, &limited).
 *
 * Prints "sent=N ok=N s429=N failed=N" like shim_client.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

struct api {
	CURL *(*init)(void);
	CURLcode (*setopt)(CURL *, CURLoption, ...);
	CURLcode (*perform)(CURL *);
	CURLcode (*getinfo)(CURL *, CURLINFO, ...);
	void (*cleanup)(CURL *);
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static int load(void *h, struct api *a)
{
	*(void **)&a->init = dlsym(h, "curl_easy_init");
	*(void **)&a->setopt = dlsym(h, "curl_easy_setopt");
	*(void **)&a->perform = dlsym(h, "curl_easy_perform");
	*(void **)&a->getinfo = dlsym(h, "curl_easy_getinfo");
	*(void **)&a->cleanup = dlsym(h, "curl_easy_cleanup");
	return a->init && a->setopt && a->perform && a->getinfo && a->cleanup ? 0 : -1;
}

static int run_lib(const char *lib, const char *url, int n, const char *body)
{
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	int i, ok = 0, limited = 0, failed = 0;
	struct api a;

	if (!h || load(h, &a) != 0) {
		fprintf(stderr, "shim_dlopen: %s: %s\n", lib, dlerror());
		return 1;
	}
	for (i = 0; i < n; i++) {
		CURL *e = a.init();
		long code = 0;

		a.setopt(e, CURLOPT_URL, url);
		a.setopt(e, CURLOPT_WRITEFUNCTION, discard);
		if (body)
			a.setopt(e, CURLOPT_POSTFIELDS, body);
		if (a.perform(e) != CURLE_OK)
			failed++;
		a.getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		ok += code == 200;
		limited += code == 429;
		a.cleanup(e);
	}
	printf("sent=%d ok=%d s429=%d failed=%d\n", n, ok, limited, failed);
	return 0;
}

static int run_plugin(const char *so, int deep, const char *url, int n,
                      const char *body)
{
	void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL | (deep ? RTLD_DEEPBIND : 0));
	int (*run)(const char *, int, const char *, int *, int *);
	int ok = 0, limited = 0, failed;

	if (!h || !(*(void **)&run = dlsym(h, "plugin_run"))) {
		fprintf(stderr, "shim_dlopen: %s: %s\n", so, dlerror());
		return 1;
	}
	failed = run(url, n, body, &ok, &limited);
	printf("sent=%d ok=%d s429=%d failed=%d\n", n, ok, limited, failed);
	return 0;
}

int main(int argc, char **argv)
{
	int deep = 0, i = 1;
	const char *so = NULL;

	if (argc > 2 && strcmp(argv[1], "--plugin") == 0) {
		so = argv[2];
		i = 3;
		if (i < argc && strcmp(argv[i], "--deepbind") == 0) {
			deep = 1;
			i++;
		}
	}
	if (argc - i < (so ? 2 : 3)) {
		fprintf(stderr, "usage: shim_dlopen LIB URL N [BODY]\n"
		        "       shim_dlopen --plugin SO [--deepbind] URL N [BODY]\n");
		return 2;
	}
	if (so)
		return run_plugin(so, deep, argv[i], atoi(argv[i + 1]),
		                  i + 2 < argc ? argv[i + 2] : NULL);
	return run_lib(argv[i], argv[i + 1], atoi(argv[i + 2]),
	               i + 3 < argc ? argv[i + 3] : NULL);
}
