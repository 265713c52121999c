/* error.c - ratectl_strerror() from the one table in ratectl.h, and the
 * per-thread detail message behind ratectl_errmsg(). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static _Thread_local char errmsg[512];

const char *ratectl_strerror(int code)
{
	switch (code) {
#define XX(name, off, desc) case RATECTL_E##name: return desc;
	RATECTL_ERRNO_MAP(XX)
#undef XX
	case 0:
		return "success";
	default:
		break;
	}
	if (code < 0 && code > -4096)
		code = -code;
	if (code > 0 && code < 4096)
		return strerror(code);
	return "unknown error";
}

const char *ratectl_errmsg(void)
{
	return errmsg;
}

void ratectl__err_clear(void)
{
	errmsg[0] = '\0';
}

int ratectl__err(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof errmsg, fmt, ap);
	va_end(ap);
	return code;
}

void ratectl__err_save(char *buf, size_t len)
{
	snprintf(buf, len, "%s", errmsg);
}

void ratectl__err_restore(const char *buf)
{
	snprintf(errmsg, sizeof errmsg, "%s", buf);
}
