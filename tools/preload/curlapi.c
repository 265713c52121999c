/*
 * curlapi.c - finding the libcurl the program really uses, and keeping
 * up with libcurls loaded later.
 *
 * The shim links no libcurl (two in one process would share nothing).
 * When the program was linked with libcurl, dlsym(RTLD_NEXT) finds it.
 * When it loads libcurl later with dlopen(RTLD_LOCAL) (pycurl, PHP, a
 * program that dlopen()s it directly), RTLD_NEXT finds nothing and the
 * library is found among the loaded objects instead.  The exported
 * dlopen() watches what each call loads:
 *   - an object loaded with RTLD_DEEPBIND that uses the served libcurl
 *     gets its GOT pointed at our hooks (it would bypass them otherwise);
 *   - an object that uses another libcurl build than the one served gets
 *     its GOT pointed at its own libcurl: it passes through, never into
 *     hooks that would hand its handles to the wrong library;
 *   - a caller that dlopen()s libcurl itself gets our dlsym(), which
 *     hands out the hooks for the served libcurl's functions.
 * One libcurl per process is served; the first one found.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"

#define MAX_OBJS 1024

static pthread_mutex_t api_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shim_curl api_store;
static const struct shim_curl *api;        /* published once resolved */
static char served_path[4096];

static void *real_dlopen;                  /* libc's, as a data pointer */

/* ---- messages ------------------------------------------------------------- */

static unsigned warned;

void shim_warn(enum shim_warn kind, const char *fmt, ...)
{
	static const char pfx[] = "ratectl-preload: ";
	char buf[1024];
	va_list ap;
	int n;

	if (__atomic_fetch_or(&warned, 1u << kind, __ATOMIC_RELAXED) & (1u << kind))
		return;
	memcpy(buf, pfx, sizeof pfx - 1);
	va_start(ap, fmt);
	n = vsnprintf(buf + sizeof pfx - 1, sizeof buf - sizeof pfx, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += (int)sizeof pfx - 1;
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	/* write(2), not stdio: the program may own stderr's buffer and lock. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

void shim_no_curl(const char *fn)
{
	shim_warn(SHIM_W_NOCURL, "%s: cannot find the libcurl this program uses; "
	          "the call fails", fn);
}

/* ---- resolution ----------------------------------------------------------- */

#define FIELD(f, sym, req) { offsetof(struct shim_curl, f), sym, req }
static const struct field {
	size_t off;
	const char *sym;
	int required;
} fields[] = {
	FIELD(easy_init, "curl_easy_init", 1),
	FIELD(easy_perform, "curl_easy_perform", 1),
	FIELD(easy_setopt, "curl_easy_setopt", 1),
	FIELD(easy_getinfo, "curl_easy_getinfo", 1),
	FIELD(easy_cleanup, "curl_easy_cleanup", 1),
	FIELD(easy_reset, "curl_easy_reset", 1),
	FIELD(easy_duphandle, "curl_easy_duphandle", 1),
	FIELD(multi_add_handle, "curl_multi_add_handle", 1),
	FIELD(multi_remove_handle, "curl_multi_remove_handle", 1),
	FIELD(multi_perform, "curl_multi_perform", 1),
	FIELD(multi_wait, "curl_multi_wait", 1),
	FIELD(multi_poll, "curl_multi_poll", 0),
	FIELD(multi_socket_action, "curl_multi_socket_action", 1),
	FIELD(multi_info_read, "curl_multi_info_read", 1),
	FIELD(multi_timeout, "curl_multi_timeout", 1),
	FIELD(multi_cleanup, "curl_multi_cleanup", 1),
	FIELD(multi_setopt, "curl_multi_setopt", 0),
	FIELD(easy_header, "curl_easy_header", 0),
	FIELD(easy_nextheader, "curl_easy_nextheader", 0),
	FIELD(url_get, "curl_url_get", 0),
	FIELD(free, "curl_free", 1),
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static int is_curl_path(const char *path)
{
	const char *b = strrchr(path, '/');

	b = b ? b + 1 : path;
	return strncmp(b, "libcurl", 7) == 0 && strstr(b, ".so") != NULL;
}

/* The next dlopen() after ours: libc's.  Our own calls must go there,
 * not to the exported hook. */
static void *dlopen_real(const char *file, int mode)
{
	void *(*fn)(const char *, int);
	void *p = __atomic_load_n(&real_dlopen, __ATOMIC_ACQUIRE);

	if (!p) {
		p = dlsym(RTLD_NEXT, "dlopen");
		__atomic_store_n(&real_dlopen, p, __ATOMIC_RELEASE);
	}

	memcpy(&fn, &p, sizeof fn);
	return fn ? fn(file, mode) : NULL;
}

/* Fill a from handle h (RTLD_NEXT or a libcurl's handle); 0 when every
 * required function is there. */
static int fill(struct shim_curl *a, void *h)
{
	size_t i;

	for (i = 0; i < NFIELDS; i++) {
		void *p = dlsym(h, fields[i].sym);

		if (!p && fields[i].required)
			return -1;
		memcpy((char *)a + fields[i].off, &p, sizeof p);
	}
	return 0;
}

/* The first loaded object that is a libcurl, or -1. */
static int find_loaded_curl(struct shim_obj *objs, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < MAX_OBJS; i++)
		if (is_curl_path(objs[i].name))
			return (int)i;
	return -1;
}

/* Record which file the served functions live in, for messages. */
static void note_served(const struct shim_obj *objs, size_t n,
                        const struct shim_curl *a)
{
	void *fn;
	size_t i;

	memcpy(&fn, &a->easy_perform, sizeof fn);
	for (i = 0; i < n && i < MAX_OBJS; i++)
		if (shim_obj_contains(&objs[i], fn)) {
			snprintf(served_path, sizeof served_path, "%s", objs[i].name);
			return;
		}
}

static const struct shim_curl *resolve_locked(void)
{
	static struct shim_obj objs[MAX_OBJS];
	struct shim_curl a;
	size_t n;
	int i;

	if (api)
		return api;
	memset(&a, 0, sizeof a);
	n = shim_objects(objs, MAX_OBJS, NULL);
	if (dlsym(RTLD_NEXT, "curl_easy_perform")) {
		if (fill(&a, RTLD_NEXT) != 0)
			return NULL;
	} else {
		void *h;

		if ((i = find_loaded_curl(objs, n)) < 0)
			return NULL;
		/* NOLOAD: a reference to what is there, kept for good so that
		 * the functions stay valid if the program dlclose()s it. */
		h = dlopen_real(objs[i].name, RTLD_LAZY | RTLD_NOLOAD);
		if (!h || fill(&a, h) != 0)
			return NULL;
	}
	note_served(objs, n, &a);
	a.path = served_path;
	api_store = a;
	__atomic_store_n(&api, &api_store, __ATOMIC_RELEASE);
	return api;
}

const struct shim_curl *shim_curl(void)
{
	const struct shim_curl *a = __atomic_load_n(&api, __ATOMIC_ACQUIRE);

	if (a)
		return a;
	pthread_mutex_lock(&api_mu);
	a = resolve_locked();
	pthread_mutex_unlock(&api_mu);
	return a;
}

/* ---- the hooks, for GOT patching and dlsym -------------------------------- */

#define HOOK(f) { #f, (void *)f }
const struct shim_redirect shim_hooks[] = {
	HOOK(curl_easy_init), HOOK(curl_easy_perform), HOOK(curl_easy_setopt),
	HOOK(curl_easy_cleanup), HOOK(curl_easy_reset), HOOK(curl_easy_duphandle),
	HOOK(curl_multi_add_handle), HOOK(curl_multi_remove_handle),
	HOOK(curl_multi_perform), HOOK(curl_multi_wait), HOOK(curl_multi_poll),
	HOOK(curl_multi_socket_action), HOOK(curl_multi_info_read),
	HOOK(curl_multi_timeout), HOOK(curl_multi_cleanup), HOOK(curl_multi_setopt),
	HOOK(curl_easy_getinfo), HOOK(curl_easy_header), HOOK(curl_easy_nextheader),
};
const size_t shim_nhooks = sizeof shim_hooks / sizeof shim_hooks[0];
/* pass_through() redirects them all with room for 32. */
_Static_assert(sizeof shim_hooks / sizeof shim_hooks[0] <= 32, "hooks fit pass_through()");

/* The served real function called `name`, or NULL. */
static void *served_fn(const char *name)
{
	const struct shim_curl *a = shim_curl();
	void *p;
	size_t i;

	for (i = 0; a && i < NFIELDS; i++)
		if (strcmp(fields[i].sym, name) == 0) {
			memcpy(&p, (const char *)a + fields[i].off, sizeof p);
			return p;
		}
	return NULL;
}

/*
 * Put into the GOT of callers that dlopen() libcurl themselves.  It looks
 * the symbol up as dlsym() does, from the shim's own place in the load
 * order, which differs only for RTLD_NEXT (documented); a served libcurl
 * function comes back as our hook.
 */
static void *shim_dlsym(void *handle, const char *name)
{
	void *p = dlsym(handle, name);
	size_t i;

	if (!p || !name || strncmp(name, "curl_", 5) != 0 || p != served_fn(name))
		return p;
	for (i = 0; i < shim_nhooks; i++)
		if (strcmp(shim_hooks[i].name, name) == 0)
			return shim_hooks[i].to;
	return p;
}

/* ---- dlopen ----------------------------------------------------------------- */

static int find_obj(const struct shim_obj *objs, size_t n, const void *addr)
{
	size_t i;

	for (i = 0; i < n && i < MAX_OBJS; i++)
		if (shim_obj_contains(&objs[i], addr))
			return (int)i;
	return -1;
}

/* $ORIGIN / ${ORIGIN} in file, relative to the calling object o. */
static int expand_origin(const struct shim_obj *o, const char *file, char *out,
                         size_t len)
{
	char dir[4096];
	const char *p = strstr(file, "$ORIGIN"), *q;
	size_t skip = 7;
	ssize_t n;
	char *slash;

	if (!p) {
		p = strstr(file, "${ORIGIN}");
		skip = 9;
	}
	if (!p)
		return -1;
	if (o->name[0]) {
		snprintf(dir, sizeof dir, "%s", o->name);
	} else {
		n = readlink("/proc/self/exe", dir, sizeof dir - 1);
		if (n <= 0)
			return -1;
		dir[n] = '\0';
	}
	if (!(slash = strrchr(dir, '/')))
		return -1;
	*slash = '\0';
	q = p + skip;
	if (snprintf(out, len, "%.*s%s%s", (int)(p - file), file, dir, q) >= (int)len)
		return -1;
	return 0;
}

/*
 * dlopen() as the calling object o would have done it.  glibc looks a
 * bare name up along the caller's DT_RUNPATH (or, for a library, its
 * DT_RPATH) and expands $ORIGIN from the caller's directory; called from
 * here it would use the shim's.  So for such callers the search is done
 * here, along the caller's own search list (dlinfo RTLD_DI_SERINFO), and
 * glibc is handed a full path; everyone else gets glibc's own dlopen.
 */
static void *open_from(const struct shim_obj *o, const char *file, int mode)
{
	char path[4096];
	Dl_serinfo sz, *si = NULL;
	void *self = NULL, *h = NULL;
	unsigned i;
	int runpath;

	if (strchr(file, '$') && expand_origin(o, file, path, sizeof path) == 0)
		return dlopen_real(path, mode);
	if (strchr(file, '/') || !shim_obj_has_search_path(o, &runpath) ||
	    (!runpath && o->name[0] == '\0'))
		return dlopen_real(file, mode);
	/* Already loaded under that name: found before any path search. */
	if ((h = dlopen_real(file, mode | RTLD_NOLOAD)))
		return h;
	self = dlopen_real(o->name[0] ? o->name : NULL, RTLD_LAZY | RTLD_NOLOAD);
	if (self && dlinfo(self, RTLD_DI_SERINFOSIZE, &sz) == 0 &&
	    (si = malloc(sz.dls_size))) {
		*si = sz;
		if (dlinfo(self, RTLD_DI_SERINFO, si) != 0)
			si->dls_cnt = 0;
		for (i = 0; i < si->dls_cnt && !h; i++) {
			if (snprintf(path, sizeof path, "%s/%s", si->dls_serpath[i].dls_name,
			             file) < (int)sizeof path && access(path, F_OK) == 0)
				h = dlopen_real(path, mode);
		}
	}
	free(si);
	if (self)
		dlclose(self);
	return h ? h : dlopen_real(file, mode);
}

static int handle_is_curl(void *h)
{
	struct link_map *lm = NULL;

	return dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name &&
	       is_curl_path(lm->l_name);
}

/* o uses (or is) a libcurl other than the served one, loaded as soname:
 * send its calls straight to that library, whatever the global scope
 * would have bound. */
static void pass_through(const struct shim_obj *o, const char *soname)
{
	struct shim_redirect r[32];
	void *h = dlopen_real(soname, RTLD_LAZY | RTLD_NOLOAD);
	size_t i, n = 0;

	if (!h)
		return;
	for (i = 0; i < shim_nhooks && n < 32; i++) {
		void *p = dlsym(h, shim_hooks[i].name);

		if (p) {
			r[n].name = shim_hooks[i].name;
			r[n++].to = p;
		}
	}
	shim_obj_patch(o, r, n);
	shim_warn(SHIM_W_CURLS, "%s is a second libcurl in this process; the "
	          "shim serves %s: transfers through %s pass through unthrottled",
	          soname, served_path, soname);
}

/* Is the library loaded as `soname` the served one?  Compared by what
 * it resolves curl_easy_perform to: names can differ for one file. */
static int is_served(const char *soname)
{
	void *h = dlopen_real(soname, RTLD_LAZY | RTLD_NOLOAD), *p, *mine;
	int same;

	if (!h)
		return 1;       /* not loaded after all: nothing to redirect */
	p = dlsym(h, "curl_easy_perform");
	memcpy(&mine, &api_store.easy_perform, sizeof mine);
	same = p == mine;
	dlclose(h);
	return same;
}

/* A newly loaded object o: redirect it as the comment at the top says. */
static void adopt(const struct shim_obj *o, int mode)
{
	const char *need;

	if (shim_obj_contains(o, (const void *)shim_dlsym))
		return;
	/* Another libcurl's calls to its own exported functions would reach
	 * the hooks too (the global scope comes first): send them home. */
	if (is_curl_path(o->name)) {
		if (!is_served(o->name))
			pass_through(o, o->name);
		return;
	}
	if (!(need = shim_obj_needed(o, "libcurl")))
		return;
	if (!is_served(need)) {
		pass_through(o, need);
		return;
	}
	if ((mode & RTLD_DEEPBIND) && shim_obj_patch(o, shim_hooks, shim_nhooks) < 0)
		shim_warn(SHIM_W_GOT, "%s was loaded with RTLD_DEEPBIND and its GOT "
		          "cannot be redirected here: its transfers pass through "
		          "unthrottled", o->name);
}

static int was_loaded(uintptr_t base, const uintptr_t *before, size_t nb)
{
	size_t i;

	for (i = 0; i < nb; i++)
		if (before[i] == base)
			return 1;
	return 0;
}

static void after_open(void *h, int mode, const void *caller,
                       const uintptr_t *before, size_t nb, struct shim_obj *objs)
{
	static const struct shim_redirect dl = { "dlsym", (void *)shim_dlsym };
	size_t i, n;
	int ci;

	pthread_mutex_lock(&api_mu);
	n = shim_objects(objs, MAX_OBJS, NULL);
	n = n < MAX_OBJS ? n : MAX_OBJS;
	/* Most programs never load a libcurl: nothing to look at then. */
	if ((api || find_loaded_curl(objs, n) >= 0) && resolve_locked()) {
		for (i = 0; i < n; i++)
			if (!was_loaded(objs[i].base, before, nb))
				adopt(&objs[i], mode);
		if (handle_is_curl(h) && (ci = find_obj(objs, n, caller)) >= 0 &&
		    !shim_obj_contains(&objs[ci], (const void *)shim_dlsym) &&
		    shim_obj_patch(&objs[ci], &dl, 1) < 0)
			shim_warn(SHIM_W_GOT, "cannot give %s the shim's dlsym(): the "
			          "libcurl functions it looks up pass through unthrottled",
			          objs[ci].name[0] ? objs[ci].name : "the program");
	}
	pthread_mutex_unlock(&api_mu);
}

void *dlopen(const char *file, int mode)
{
	const void *caller = __builtin_return_address(0);
	struct shim_obj *objs = malloc(MAX_OBJS * sizeof *objs);
	uintptr_t *before = malloc(MAX_OBJS * sizeof *before);
	size_t i, n = 0;
	void *h;
	int ci = -1;

	if (objs && before) {
		n = shim_objects(objs, MAX_OBJS, NULL);
		n = n < MAX_OBJS ? n : MAX_OBJS;
		for (i = 0; i < n; i++)
			before[i] = objs[i].base;
		ci = find_obj(objs, n, caller);
	}
	if (file && ci >= 0)
		h = open_from(&objs[ci], file, mode);
	else
		h = dlopen_real(file, mode);
	if (h && objs && before)
		after_open(h, mode, caller, before, n, objs);
	free(before);
	free(objs);
	return h;
}
