// fuzz-sources: -Itools/preload tools/preload/jscan.c
/*
 * fuzz_jscan.c - the shim's JSON scanner (request max_tokens, response
 * usage) on any bytes: it reads bodies from the network, unterminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: any read past the end is caught by ASan. */
	char *buf = malloc(size ? size : 1);
	size_t half = size / 2;
	uint64_t v;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	(void)jscan_max_tokens(buf, size, &v);
	(void)jscan_usage(buf, size, buf, size, &v);
	(void)jscan_usage(buf, half, buf + half, size - half, &v);
	free(buf);
	return 0;
}
