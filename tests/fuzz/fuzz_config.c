// fuzz-sources: -Itools/common tools/common/config.c tools/common/config_keys.c lib/admit.c lib/budget.c lib/clock.c lib/fork.c lib/gcra.c lib/lease.c lib/ledger.c lib/wait.c -linih -llmdb -lpthread
/*
 * fuzz_config.c - the config file loader (inih plus ratectl's own key
 * parsing) and the match-rule parser, on any bytes.  The loader reads a
 * path, so the input goes through a memfd.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[512], *s;
	rc_conf *conf = NULL;
	rc_match m;
	int fd;

	fd = memfd_create("ratectl-fuzz.conf", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		err[0] = '\0';
		if (rc_conf_load(&conf, path, err, sizeof err) == 0) {
			if (conf->nbudgets > 0)
				(void)rc_conf_match(conf, "api.openai.com", 443, "/v1/chat");
			rc_conf_free(conf);
		} else if (err[0] == '\0') {
			abort();        /* every refusal says why */
		}
	}
	close(fd);
	if ((s = malloc(size + 1)) != NULL) {
		memcpy(s, data, size);
		s[size] = '\0';
		(void)rc_match_parse(&m, s);
		free(s);
	}
	return 0;
}
