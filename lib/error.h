/* error.h - error codes and the per-thread detail message. */
#ifndef RATECTL_ERROR_H
#define RATECTL_ERROR_H

#include "ratectl.h"

/*
 * Record the detail of a failure for ratectl_errmsg() and return code, so
 * that a failing path reads: return ratectl__err(RATECTL_EPARSE, "...", ...).
 */
int ratectl__err(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clear the detail (called at the start of public entry points). */
void ratectl__err_clear(void);

/* Keep the detail across a call that may set its own, and put it back. */
#define RATECTL_ERRMSG_KEEP 512
void ratectl__err_save(char *buf, size_t len);
void ratectl__err_restore(const char *buf);

#endif
