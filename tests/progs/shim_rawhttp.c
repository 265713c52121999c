/*
 * shim_rawhttp - answers every HTTP request on 127.0.0.1 with the bytes of
 * one file, verbatim, for tests/test_shim.sh: headers the fake provider
 * never sends (garbage rate-limit values, retry-after-ms, an HTTP-date
 * Retry-After) and bodies of any shape.  The file should say
 * "Connection: close" and carry a right Content-Length.
 *
 * usage: shim_rawhttp PORT-FILE RESPONSE-FILE [MAX-SECONDS [REQUEST-LOG]]
 * Writes its port to PORT-FILE once listening; serves connections one at
 * a time; exits after MAX-SECONDS (default 30).  Loopback only.  With
 * REQUEST-LOG, each request's head (request line and headers, as they
 * came, up to 64 KiB) is appended to that file, followed by a line "--":
 * what a provider would see of the request.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)len + 1)) &&
	    fread(p, 1, (size_t)len, f) == (size_t)len) {
		*n = (size_t)len;
	} else {
		free(p);
		p = NULL;
	}
	fclose(f);
	return p;
}

static FILE *reqlog;

/* The head buf[0..n) of one request, to the log. */
static void log_head(const char *buf, size_t n)
{
	if (!reqlog)
		return;
	fwrite(buf, 1, n, reqlog);
	fputs("\n--\n", reqlog);
	fflush(reqlog);
}

/* Read the request head and as much body as Content-Length says. */
static void drain(int c)
{
	char buf[65536];
	size_t n = 0;
	ssize_t r;
	char *end, *cl;
	long want = 0;
	int logged = 0;

	while (n < sizeof buf - 1 && (r = read(c, buf + n, sizeof buf - 1 - n)) > 0) {
		n += (size_t)r;
		buf[n] = '\0';
		if (!(end = strstr(buf, "\r\n\r\n")))
			continue;
		if (!logged++)
			log_head(buf, (size_t)(end - buf));
		if ((cl = strcasestr(buf, "\ncontent-length:")))
			want = strtol(cl + 16, NULL, 10);
		if ((long)(n - (size_t)(end + 4 - buf)) >= want)
			return;
	}
	if (!logged && n)       /* a head past the buffer: what came of it */
		log_head(buf, n);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	char tmp[4096];
	size_t n = 0;
	char *resp;
	FILE *pf;
	int s, one = 1;

	if (argc < 3 || !(resp = slurp(argv[2], &n))) {
		fprintf(stderr, "usage: shim_rawhttp PORT-FILE RESPONSE-FILE [MAX-SECONDS]\n");
		return 2;
	}
	alarm(argc > 3 ? (unsigned)atoi(argv[3]) : 30);
	if (argc > 4 && !(reqlog = fopen(argv[4], "a"))) {
		perror(argv[4]);
		return 1;
	}
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0 ||
	    getsockname(s, (struct sockaddr *)&a, &len) != 0 ||
	    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]) >= (int)sizeof tmp ||
	    !(pf = fopen(tmp, "w"))) {
		perror("shim_rawhttp");
		return 1;
	}
	fprintf(pf, "%u\n", ntohs(a.sin_port));
	/* renamed into place: a reader never sees half a number */
	if (fclose(pf) != 0 || rename(tmp, argv[1]) != 0) {
		perror("shim_rawhttp: port file");
		return 1;
	}
	for (;;) {
		int c = accept(s, NULL, NULL);

		if (c < 0)
			continue;
		drain(c);
		if (write(c, resp, n) != (ssize_t)n)
			perror("shim_rawhttp: write");
		close(c);
	}
}
