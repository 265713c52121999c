/* rn.h - the Node-API addon of ratectl: what its files share.
 *
 * The addon is thin and synchronous: every call is one short library
 * call (an LMDB transaction at most), made on the JavaScript thread.
 * Waiting is the JavaScript layer's: it keeps each pending reservation
 * on a timer and watches the ledger's event descriptor through
 * rn_watch (a uv_poll_t), so no thread, of libuv's pool or any other,
 * is ever parked for a waiter. */
#ifndef RN_H
#define RN_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#include "ratectl.h"
#include "ratectl_http.h"

/* Every Node-API status is checked: a failure throws (unless an
 * exception is pending already) and the native function returns NULL,
 * which JavaScript sees as the exception. */
#define RN_CALL(env, call)                                                   \
	do {                                                                 \
		if ((call) != napi_ok) {                                     \
			rn_throw_napi((env), #call);                         \
			return NULL;                                         \
		}                                                            \
	} while (0)

/* Per-environment state (main thread and each worker_thread). */
typedef struct rn_state {
	napi_ref error_ctor;     /* RatectlError, given by setup() */
	napi_ref scratch_ref;    /* a Float64Array the wait results go to */
	double *scratch;         /* its RN_SCRATCH elements */
} rn_state;

/* scratch[]: what a reserve or poll says beside its return code: the
 * wait in ms, the descriptor, whether a place in line is kept, and the
 * time to look again on CLOCK_MONOTONIC in ms (the clock of Node's
 * process.hrtime()): an absolute time, so that waiters armed at
 * different moments keep their order however late JavaScript reads it. */
enum { RN_WAIT_MS, RN_FD, RN_FIFO, RN_AT_MS, RN_SCRATCH };

/* Write a wait of wait_ns from now into scratch. */
void rn_scratch_wait(napi_env env, int64_t wait_ns, int fd, int fifo);

rn_state *rn_state_of(napi_env env);

void rn_throw_napi(napi_env env, const char *what);
/* Throw new RatectlError(message, code); message: the library's detail
 * when it has one, else its description of code. */
void rn_throw_rc(napi_env env, int code, const char *detail);
void rn_throw_type(napi_env env, const char *msg);

/* Arguments.  Each returns 0, or throws and returns -1. */
int rn_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
/* A string argument in a malloc'ed copy (*out, to free), its length in *len. */
int rn_string(napi_env env, napi_value v, const char *what, char **out, size_t *len);
/* A budget name into buf[RATECTL_NAME_MAX + 1]: longer is RATECTL_EBADNAME. */
int rn_name(napi_env env, napi_value v, char *buf);
int rn_u64(napi_env env, napi_value v, const char *what, uint64_t *out);
int rn_i64(napi_env env, napi_value v, const char *what, int64_t *out);
int rn_is_nullish(napi_env env, napi_value v);

/* Values. */
napi_value rn_int(napi_env env, int64_t n);
napi_value rn_num(napi_env env, double d);
napi_value rn_str(napi_env env, const char *s);
napi_value rn_strn(napi_env env, const char *s, size_t cap);
napi_value rn_null(napi_env env);
napi_value rn_undefined(napi_env env);
int rn_set(napi_env env, napi_value obj, const char *key, napi_value v);

/* The natives of each file, added to the exports. */
int rn_ledger_init(napi_env env, napi_value exports);
int rn_http_init(napi_env env, napi_value exports);
int rn_watch_init(napi_env env, napi_value exports);

#endif /* RN_H */
