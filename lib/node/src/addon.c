/* addon.c - the module: per-environment state, errors, argument
 * helpers, and rn_watch, the one native waiter (a uv_poll_t on a
 * ledger's event descriptor that calls back into JavaScript). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "rn.h"

/* ---- per-environment state ------------------------------------------------ */

typedef struct rn_watch rn_watch;

typedef struct rn_env {
	rn_state st;
	rn_watch *watches;       /* open watchers, closed at env teardown */
} rn_env;

static void env_free(napi_env env, void *data, void *hint)
{
	rn_env *e = data;

	(void)hint;
	if (e->st.error_ctor)
		napi_delete_reference(env, e->st.error_ctor);
	if (e->st.scratch_ref)
		napi_delete_reference(env, e->st.scratch_ref);
	free(e);
}

rn_state *rn_state_of(napi_env env)
{
	void *p = NULL;

	if (napi_get_instance_data(env, &p) != napi_ok)
		return NULL;
	return p;
}

/* ---- errors --------------------------------------------------------------- */

void rn_throw_napi(napi_env env, const char *what)
{
	const napi_extended_error_info *ei = NULL;
	bool pending = false;
	char msg[256];

	napi_is_exception_pending(env, &pending);
	if (pending)
		return;
	napi_get_last_error_info(env, &ei);
	snprintf(msg, sizeof msg, "ratectl: %s: %s", what,
	         ei && ei->error_message ? ei->error_message : "Node-API call failed");
	napi_throw_error(env, NULL, msg);
}

void rn_throw_type(napi_env env, const char *msg)
{
	bool pending = false;

	napi_is_exception_pending(env, &pending);
	if (!pending)
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

/* new RatectlError(message, code) */
static napi_value make_error(napi_env env, int code, const char *detail)
{
	rn_state *st = rn_state_of(env);
	const char *msg = detail && *detail ? detail : ratectl_http_strerror(code);
	napi_value ctor, argv[2], err = NULL;

	if (!st || !st->error_ctor ||
	    napi_get_reference_value(env, st->error_ctor, &ctor) != napi_ok || !ctor ||
	    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &argv[0]) != napi_ok ||
	    napi_create_int32(env, code, &argv[1]) != napi_ok ||
	    napi_new_instance(env, ctor, 2, argv, &err) != napi_ok)
		return NULL;
	return err;
}

void rn_throw_rc(napi_env env, int code, const char *detail)
{
	bool pending = false;
	napi_value err;

	napi_is_exception_pending(env, &pending);
	if (pending)
		return;
	if ((err = make_error(env, code, detail)))
		napi_throw(env, err);
	else
		napi_throw_error(env, NULL, ratectl_http_strerror(code));
}

/* error(code) -> a RatectlError for code, with the library's detail of
 * this thread's last failure (read before any other call into it). */
static napi_value n_error(napi_env env, napi_callback_info info)
{
	napi_value argv[1], err;
	int32_t code;

	if (rn_args(env, info, 1, argv))
		return NULL;
	RN_CALL(env, napi_get_value_int32(env, argv[0], &code));
	if (!(err = make_error(env, code, ratectl_errmsg()))) {
		rn_throw_napi(env, "new RatectlError");
		return NULL;
	}
	return err;
}

/* strerror(code) -> the library's description of any of its codes. */
static napi_value n_strerror(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t code;

	if (rn_args(env, info, 1, argv))
		return NULL;
	RN_CALL(env, napi_get_value_int32(env, argv[0], &code));
	return rn_str(env, ratectl_http_strerror(code));
}

/* setup(RatectlError, Float64Array(RN_SCRATCH)) */
static napi_value n_setup(napi_env env, napi_callback_info info)
{
	rn_state *st = rn_state_of(env);
	napi_value argv[2], ab;
	napi_typedarray_type type;
	size_t len, off;
	void *data;

	if (rn_args(env, info, 2, argv))
		return NULL;
	RN_CALL(env, napi_get_typedarray_info(env, argv[1], &type, &len, &data, &ab, &off));
	if (type != napi_float64_array || len < RN_SCRATCH) {
		rn_throw_type(env, "setup: a Float64Array of 4 is needed");
		return NULL;
	}
	if (st->error_ctor)
		napi_delete_reference(env, st->error_ctor);
	if (st->scratch_ref)
		napi_delete_reference(env, st->scratch_ref);
	st->error_ctor = st->scratch_ref = NULL;
	RN_CALL(env, napi_create_reference(env, argv[0], 1, &st->error_ctor));
	RN_CALL(env, napi_create_reference(env, argv[1], 1, &st->scratch_ref));
	st->scratch = data;     /* a fixed ArrayBuffer's store does not move */
	return rn_undefined(env);
}

void rn_scratch_wait(napi_env env, int64_t wait_ns, int fd, int fifo)
{
	rn_state *st = rn_state_of(env);
	struct timespec ts;

	if (!st || !st->scratch)
		return;
	if (wait_ns < 0)
		wait_ns = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	st->scratch[RN_WAIT_MS] = wait_ns / 1e6;
	st->scratch[RN_FD] = fd;
	st->scratch[RN_FIFO] = fifo;
	st->scratch[RN_AT_MS] = ts.tv_sec * 1e3 + (ts.tv_nsec + wait_ns) / 1e6;
}

/* ---- arguments and values ------------------------------------------------- */

int rn_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
	size_t argc = want;
	size_t i;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
		rn_throw_napi(env, "napi_get_cb_info");
		return -1;
	}
	for (i = argc; i < want; i++)   /* missing: undefined */
		napi_get_undefined(env, &argv[i]);
	return 0;
}

int rn_is_nullish(napi_env env, napi_value v)
{
	napi_valuetype t;

	return napi_typeof(env, v, &t) != napi_ok || t == napi_undefined || t == napi_null;
}

int rn_string(napi_env env, napi_value v, const char *what, char **out, size_t *len)
{
	napi_valuetype t;
	size_t n = 0;
	char *s, msg[128];

	*out = NULL;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
		snprintf(msg, sizeof msg, "%s must be a string", what);
		rn_throw_type(env, msg);
		return -1;
	}
	if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
		rn_throw_napi(env, what);
		return -1;
	}
	if (!(s = malloc(n + 1))) {
		rn_throw_rc(env, -ENOMEM, NULL);
		return -1;
	}
	if (napi_get_value_string_utf8(env, v, s, n + 1, &n) != napi_ok) {
		free(s);
		rn_throw_napi(env, what);
		return -1;
	}
	if (strlen(s) != n) {   /* an embedded NUL would cut it short */
		free(s);
		snprintf(msg, sizeof msg, "%s must not contain a NUL character", what);
		rn_throw_type(env, msg);
		return -1;
	}
	*out = s;
	if (len)
		*len = n;
	return 0;
}

int rn_name(napi_env env, napi_value v, char *buf)
{
	napi_valuetype t;
	size_t n = 0;

	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
		rn_throw_type(env, "the budget name must be a string");
		return -1;
	}
	/* Its length first: a copy into buf would silently cut a long name,
	 * and the cut name could be another budget's. */
	if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
		rn_throw_napi(env, "budget name");
		return -1;
	}
	if (n > RATECTL_NAME_MAX) {
		rn_throw_rc(env, RATECTL_EBADNAME, "invalid budget name: longer than 64 bytes");
		return -1;
	}
	if (napi_get_value_string_utf8(env, v, buf, RATECTL_NAME_MAX + 1, &n) != napi_ok) {
		rn_throw_napi(env, "budget name");
		return -1;
	}
	if (strlen(buf) != n) {
		rn_throw_rc(env, RATECTL_EBADNAME, "invalid budget name: contains a NUL character");
		return -1;
	}
	return 0;
}

/* Numbers arrive as JavaScript numbers (doubles): integers up to 2^53
 * are exact; anything else is refused rather than rounded. */
static int number(napi_env env, napi_value v, const char *what, double *d)
{
	napi_valuetype t;
	char msg[128];

	if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
	    napi_get_value_double(env, v, d) != napi_ok || *d != *d) {
		snprintf(msg, sizeof msg, "%s must be a number", what);
		rn_throw_type(env, msg);
		return -1;
	}
	return 0;
}

int rn_u64(napi_env env, napi_value v, const char *what, uint64_t *out)
{
	char msg[160];
	double d;

	if (number(env, v, what, &d))
		return -1;
	if (d < 0 || d > 9007199254740992.0 || d != (double)(uint64_t)d) {
		snprintf(msg, sizeof msg, "%s must be a whole number from 0 to 2^53", what);
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
		return -1;
	}
	*out = (uint64_t)d;
	return 0;
}

int rn_i64(napi_env env, napi_value v, const char *what, int64_t *out)
{
	char msg[160];
	double d;

	if (number(env, v, what, &d))
		return -1;
	if (d < -9007199254740992.0 || d > 9007199254740992.0 || d != (double)(int64_t)d) {
		snprintf(msg, sizeof msg, "%s must be a whole number within +-2^53", what);
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
		return -1;
	}
	*out = (int64_t)d;
	return 0;
}

napi_value rn_int(napi_env env, int64_t n)
{
	napi_value v = NULL;

	napi_create_int64(env, n, &v);
	return v;
}

napi_value rn_num(napi_env env, double d)
{
	napi_value v = NULL;

	napi_create_double(env, d, &v);
	return v;
}

napi_value rn_str(napi_env env, const char *s)
{
	napi_value v = NULL;

	napi_create_string_utf8(env, s ? s : "", NAPI_AUTO_LENGTH, &v);
	return v;
}

/* A string from a fixed char array of the library's, cap bytes: read to
 * its NUL or to cap, never past it. */
napi_value rn_strn(napi_env env, const char *s, size_t cap)
{
	napi_value v = NULL;

	napi_create_string_utf8(env, s, strnlen(s, cap), &v);
	return v;
}

napi_value rn_null(napi_env env)
{
	napi_value v = NULL;

	napi_get_null(env, &v);
	return v;
}

napi_value rn_undefined(napi_env env)
{
	napi_value v = NULL;

	napi_get_undefined(env, &v);
	return v;
}

int rn_set(napi_env env, napi_value obj, const char *key, napi_value v)
{
	return v && napi_set_named_property(env, obj, key, v) == napi_ok ? 0 : -1;
}

/* ---- rn_watch: readiness of an event descriptor ---------------------------- */

/*
 * watch(fd, callback) -> watcher; unwatch(watcher).  callback() runs on
 * the loop each time fd is readable, as a callback from native code
 * (napi_make_callback), so promises it settles run their reactions
 * right after it.  The JavaScript layer keeps one watcher per
 * descriptor (libuv allows one poll handle per fd in a loop) and stops
 * it when nothing waits, so an idle ledger keeps no loop alive.
 */
struct rn_watch {
	uv_poll_t poll;          /* first: the uv handle's data is ours */
	napi_env env;
	napi_ref fn;
	napi_async_context actx;
	rn_env *owner;
	rn_watch *next;
	int open;                /* the poll handle is initialised, not closed */
	/* Freed when both are done with it: libuv (the handle closed) and
	 * JavaScript (its external finalized, or never made). */
	int closed;
	int external;
};

static void watch_unlink(rn_watch *w)
{
	rn_watch **pp;

	for (pp = &w->owner->watches; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
}

static void watch_freed(uv_handle_t *h)
{
	rn_watch *w = (rn_watch *)h;   /* the poll handle is its first member */

	w->closed = 1;
	if (!w->external)
		free(w);
}

/* Close w: stop polling, drop its references.  Freed when libuv is done
 * with the handle; the external's finalizer then finds nothing to do. */
static void watch_close(rn_watch *w)
{
	napi_env env = w->env;

	if (!w->open)
		return;
	w->open = 0;
	watch_unlink(w);
	uv_poll_stop(&w->poll);
	if (w->fn)
		napi_delete_reference(env, w->fn);
	if (w->actx)
		napi_async_destroy(env, w->actx);
	w->fn = NULL;
	w->actx = NULL;
	uv_close((uv_handle_t *)&w->poll, watch_freed);
}

static void watch_ready(uv_poll_t *p, int status, int events)
{
	rn_watch *w = (rn_watch *)p;
	napi_env env = w->env;
	napi_handle_scope scope;
	napi_value fn, recv, argv[1], exc;
	napi_status s;

	(void)events;
	if (!w->open || napi_open_handle_scope(env, &scope) != napi_ok)
		return;
	/* MakeCallback wants an object for `this`: the global one. */
	if (napi_get_reference_value(env, w->fn, &fn) == napi_ok && fn &&
	    napi_get_global(env, &recv) == napi_ok &&
	    napi_create_int32(env, status, &argv[0]) == napi_ok) {
		s = napi_make_callback(env, w->actx, recv, fn, 1, argv, NULL);
		if (s == napi_pending_exception &&
		    napi_get_and_clear_last_exception(env, &exc) == napi_ok)
			napi_fatal_exception(env, exc);   /* as an uncaught exception */
	}
	napi_close_handle_scope(env, scope);
}

static void watch_finalize(napi_env env, void *data, void *hint)
{
	rn_watch *w = data;

	(void)env;
	(void)hint;
	w->external = 0;
	if (w->open)
		watch_close(w);          /* freed by watch_freed */
	else if (w->closed)
		free(w);
}

static napi_value n_watch(napi_env env, napi_callback_info info)
{
	rn_env *e = (rn_env *)rn_state_of(env);
	napi_value argv[2], ext, name, resource;
	napi_valuetype t;
	uv_loop_t *loop;
	rn_watch *w;
	int32_t fd;
	int rc;

	if (rn_args(env, info, 2, argv))
		return NULL;
	RN_CALL(env, napi_get_value_int32(env, argv[0], &fd));
	RN_CALL(env, napi_typeof(env, argv[1], &t));
	if (fd < 0 || t != napi_function) {
		rn_throw_type(env, "watch(fd, callback): a descriptor and a function");
		return NULL;
	}
	RN_CALL(env, napi_get_uv_event_loop(env, &loop));
	if (!(w = calloc(1, sizeof *w))) {
		rn_throw_rc(env, -ENOMEM, NULL);
		return NULL;
	}
	w->env = env;
	w->owner = e;
	if ((rc = uv_poll_init(loop, &w->poll, fd)) != 0) {
		free(w);
		rn_throw_rc(env, rc, uv_strerror(rc));   /* libuv's codes are -errno */
		return NULL;
	}
	w->open = 1;
	w->next = e->watches;
	e->watches = w;
	if (napi_create_reference(env, argv[1], 1, &w->fn) != napi_ok ||
	    napi_create_string_utf8(env, "ratectl.watch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
	    napi_create_object(env, &resource) != napi_ok ||
	    napi_async_init(env, resource, name, &w->actx) != napi_ok ||
	    (rc = uv_poll_start(&w->poll, UV_READABLE, watch_ready)) != 0 ||
	    napi_create_external(env, w, watch_finalize, NULL, &ext) != napi_ok) {
		watch_close(w);
		rn_throw_napi(env, "watch");
		return NULL;
	}
	w->external = 1;
	return ext;
}

static napi_value n_unwatch(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	void *p = NULL;

	if (rn_args(env, info, 1, argv))
		return NULL;
	RN_CALL(env, napi_get_value_external(env, argv[0], &p));
	if (p)
		watch_close(p);
	return rn_undefined(env);
}

/* A worker_thread ending with watchers open: close them with its loop. */
static void env_cleanup(void *arg)
{
	rn_env *e = arg;

	while (e->watches)
		watch_close(e->watches);
}

int rn_watch_init(napi_env env, napi_value exports)
{
	napi_property_descriptor d[] = {
		{ "watch", NULL, n_watch, NULL, NULL, NULL, napi_default, NULL },
		{ "unwatch", NULL, n_unwatch, NULL, NULL, NULL, napi_default, NULL },
		{ "setup", NULL, n_setup, NULL, NULL, NULL, napi_default, NULL },
		{ "error", NULL, n_error, NULL, NULL, NULL, napi_default, NULL },
		{ "strerror", NULL, n_strerror, NULL, NULL, NULL, napi_default, NULL },
	};

	return napi_define_properties(env, exports, sizeof d / sizeof d[0], d) == napi_ok ? 0 : -1;
}

/* ---- the module ------------------------------------------------------------ */

static napi_value codes(napi_env env)
{
	napi_value o;

	if (napi_create_object(env, &o) != napi_ok)
		return NULL;
#define XX(name, off, desc) rn_set(env, o, "E" #name, rn_int(env, RATECTL_E##name));
	RATECTL_ERRNO_MAP(XX)
#undef XX
#define XX(name, off, desc) rn_set(env, o, "HTTP_E" #name, rn_int(env, RATECTL_HTTP_E##name));
	RATECTL_HTTP_ERRNO_MAP(XX)
#undef XX
	rn_set(env, o, "HTTP_PASS", rn_int(env, RATECTL_HTTP_PASS));
	rn_set(env, o, "HTTP_CACHED", rn_int(env, RATECTL_HTTP_CACHED));
	return o;
}

static napi_value init(napi_env env, napi_value exports)
{
	rn_env *e = calloc(1, sizeof *e);

	if (!e || napi_set_instance_data(env, e, env_free, NULL) != napi_ok) {
		free(e);
		napi_throw_error(env, NULL, "ratectl: cannot set up the addon");
		return NULL;
	}
	if (napi_add_env_cleanup_hook(env, env_cleanup, e) != napi_ok ||
	    rn_watch_init(env, exports) || rn_ledger_init(env, exports) ||
	    rn_http_init(env, exports) ||
	    rn_set(env, exports, "codes", codes(env)) ||
	    rn_set(env, exports, "version", rn_str(env, RATECTL_VERSION_STRING)) ||
	    rn_set(env, exports, "nameMax", rn_int(env, RATECTL_NAME_MAX))) {
		rn_throw_napi(env, "module init");
		return NULL;
	}
	return exports;
}

NAPI_MODULE_INIT()
{
	return init(env, exports);
}
