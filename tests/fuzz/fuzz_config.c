// fuzz-sources: -Ilib/http lib/http/conf.c lib/http/conf_keys.c lib/admit.c lib/budget.c lib/clock.c lib/fork.c lib/gcra.c lib/lease.c lib/ledger.c lib/meta.c lib/record.c lib/wait.c lib/shared.c lib/redis.c -linih -llmdb -lhiredis -lpthread
/*
 * fuzz_config.c - the config file loader (inih plus ratectl's own key
 * parsing) and the match-rule parser, on any bytes.  The bytes go both
 * through a file (a memfd, read by rh__conf_load()) and straight to
 * rh__conf_parse(): the two must agree, and every refusal must say why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[512], err2[512], *s;
	rh__conf *conf = NULL, *conf2 = NULL;
	int fd, rc, rc2;
	rh__match m;

	fd = memfd_create("ratectl-fuzz.conf", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		err[0] = err2[0] = '\0';
		rc = rh__conf_load(&conf, path, err, sizeof err);
		rc2 = rh__conf_parse(&conf2, path, (const char *)data, size, err2,
		                    sizeof err2);
		if (rc != rc2 || (rc == 0) != (conf != NULL) ||
		    (rc == 0 && conf->nbudgets != conf2->nbudgets) ||
		    (rc != 0 && (err[0] == '\0' || strcmp(err, err2) != 0)))
			abort();
		if (rc == 0 && conf->nbudgets > 0)
			(void)rh__conf_match(conf, "api.openai.com", 443, "/v1/chat", "gpt-4o-mini",
			                     "0123456789abcdef");
		rh__conf_free(conf);
		rh__conf_free(conf2);
	}
	close(fd);
	if ((s = malloc(size + 1)) != NULL) {
		memcpy(s, data, size);
		s[size] = '\0';
		(void)rh__match_parse(&m, s);
		free(s);
	}
	return 0;
}
