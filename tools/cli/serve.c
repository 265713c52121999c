/*
 * serve.c - `ratectl metrics --listen ADDR:PORT`: what `ratectl metrics`
 * prints, served over HTTP for Prometheus to scrape (libmicrohttpd).
 *
 * Read-only by construction: GET and HEAD of /metrics and /healthz, a 404
 * for any other path, a 405 for any other method, a 413 for a request
 * with a body; nothing can change the ledger through it.
 *
 * Each request opens the ledger, reads it and closes it.  A scrape then
 * sees the ledger as it is, also after `ratectl check --repair` moved it
 * aside and made a new one (a handle kept open would read the old one
 * forever), and /healthz says whether a process could open and read it
 * now.  A missing ledger is reported, never created: the exporter reads.
 *
 * One thread, MHD's internal polling thread (epoll), serves every
 * connection, so the scrapes run one at a time on one handle, and a
 * client that sends nothing holds one connection until its timeout and
 * blocks no one.  Everything is bounded: connections in all and per
 * client address, the memory of a request (headers only), the time a
 * connection may idle, the size of one reply, and the bytes of replies
 * built but not yet sent (slow readers cannot make it hold more).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <microhttpd.h>

#include "cli.h"

#define CONN_MAX 64                    /* connections at once */
#define CONN_PER_IP 16                 /* of them from one address */
#define CONN_MEMORY (16 * 1024)        /* a request's headers, per connection */
#define CONN_TIMEOUT_S 10              /* idle connections closed after */
#define REPLY_MAX (16u << 20)          /* one exposition, bytes */
#define QUEUED_MAX (64u << 20)         /* replies built and not yet sent */

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define EXPOSITION "text/plain; version=0.0.4; charset=utf-8"

struct server {
	cli *c;
	const metrics_query *q;
	char dir[PATH_MAX];                /* the ledger */
	size_t queued;                     /* bytes of replies not yet freed */
};

/* ---- replies -------------------------------------------------------------- */

/* A reply's body, built through a FILE (metrics_text() writes to one)
 * that refuses to grow past cap. */
struct body {
	struct server *s;
	char *buf;
	size_t len, size, cap;
	int toobig;
};

static ssize_t body_write(void *cookie, const char *data, size_t n)
{
	struct body *b = cookie;
	size_t size;
	char *p;

	if (n > b->cap - b->len) {
		b->toobig = 1;
		errno = EFBIG;
		return -1;
	}
	if (b->len + n > b->size) {
		for (size = b->size ? b->size : 64 * 1024; size < b->len + n; size *= 2)
			;
		if (size > b->cap)
			size = b->cap;
		if (!(p = realloc(b->buf, size))) {
			errno = ENOMEM;
			return -1;
		}
		b->buf = p;
		b->size = size;
	}
	memcpy(b->buf + b->len, data, n);
	b->len += n;
	return (ssize_t)n;
}

/* MHD is done with a reply (sent, or its connection gone). */
static void body_free(void *cls)
{
	struct body *b = cls;

	b->s->queued -= b->size;
	free(b->buf);
	free(b);
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *r, const char *type, int close)
{
	enum MHD_Result ret = MHD_NO;

	if (!r)
		return MHD_NO;         /* no memory: MHD drops the connection */
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) == MHD_YES &&
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
	    (status != MHD_HTTP_METHOD_NOT_ALLOWED ||
	     MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") == MHD_YES) &&
	    (!close || MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION,
	                                       "close") == MHD_YES))
		ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* A short text reply: "ok", or what went wrong. */
static enum MHD_Result say(struct MHD_Connection *conn, unsigned status, int close,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result say(struct MHD_Connection *conn, unsigned status, int close,
                           const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof msg - 2)
		n = sizeof msg - 2;
	msg[n++] = '\n';
	return queue(conn, status, MHD_create_response_from_buffer((size_t)n, msg,
	             MHD_RESPMEM_MUST_COPY), TEXT_PLAIN, close);
}

/* ---- the ledger, one open per request ---------------------------------------- */

/* Open the ledger into s->c->h, never creating it: 0, or -1 with why. */
static int ledger_open(struct server *s, char *why, size_t len)
{
	struct stat st;
	const char *detail;
	int rc;

	if (lstat(s->dir, &st) != 0) {
		snprintf(why, len, "no ledger at %s: %s", s->dir, strerror(errno));
		return -1;
	}
	if ((rc = cli_open_dir(s->c, s->dir)) != 0) {
		detail = ratectl_errmsg();
		snprintf(why, len, "cannot open the ledger %s: %s", s->dir,
		         detail && *detail ? detail : ratectl_strerror(rc));
		return -1;
	}
	return 0;
}

static void ledger_close(struct server *s)
{
	if (s->c->h)
		ratectl_close(s->c->h);
	s->c->h = NULL;
}

static int first_only(const ratectl_budget_info *in, void *ctx)
{
	(void)in;
	(void)ctx;
	return 1;                  /* one budget read back is enough */
}

/* 200 "ok" when the ledger opens and a budget reads back, else 503. */
static enum MHD_Result healthz(struct server *s, struct MHD_Connection *conn)
{
	char why[PATH_MAX + 256];
	const char *detail;
	int rc;

	if (ledger_open(s, why, sizeof why) != 0)
		return say(conn, MHD_HTTP_SERVICE_UNAVAILABLE, 0, "%s", why);
	rc = ratectl_budget_foreach(s->c->h, first_only, NULL);
	if (rc < 0) {
		detail = ratectl_errmsg();
		snprintf(why, sizeof why, "cannot read the ledger %s: %s", s->dir,
		         detail && *detail ? detail : ratectl_strerror(rc));
	}
	ledger_close(s);
	if (rc < 0)
		return say(conn, MHD_HTTP_SERVICE_UNAVAILABLE, 0, "%s", why);
	return say(conn, MHD_HTTP_OK, 0, "ok");
}

/* The exposition, built whole before it is sent: its Content-Length is
 * known, and a failure halfway is an error status, never a cut text. */
static enum MHD_Result metrics(struct server *s, struct MHD_Connection *conn)
{
	static const cookie_io_functions_t io = { .write = body_write };
	char why[PATH_MAX + 256], note[PATH_MAX + 256];
	const char *what = NULL, *detail;
	struct MHD_Response *r;
	struct body *b;
	FILE *f;
	int rc, bad, toobig, busy;

	if (ledger_open(s, why, sizeof why) != 0)
		return say(conn, MHD_HTTP_SERVICE_UNAVAILABLE, 0, "%s", why);
	if (!(b = calloc(1, sizeof *b)) || !(f = fopencookie(b, "w", io))) {
		free(b);
		ledger_close(s);
		return say(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, 0, "out of memory");
	}
	b->s = s;
	b->cap = QUEUED_MAX - s->queued < REPLY_MAX ? QUEUED_MAX - s->queued : REPLY_MAX;
	/* An unreadable response cache is said in the exposition itself (a
	 * comment line): the rest is served as ever. */
	rc = metrics_text(s->c, s->q, f, &what, note, sizeof note);
	if (rc < 0 && rc != -ENOMEM) {
		detail = ratectl_errmsg();
		snprintf(why, sizeof why, "%s: %s", what,
		         detail && *detail ? detail : ratectl_strerror(rc));
	}
	ledger_close(s);
	bad = fclose(f) != 0;
	s->queued += b->size;      /* body_free() gives it back */
	if (rc == 0 && !bad) {
		r = MHD_create_response_from_buffer_with_free_callback_cls(b->len, b->buf,
		                                                           body_free, b);
		if (!r)
			body_free(b);
		return queue(conn, MHD_HTTP_OK, r, EXPOSITION, 0);
	}
	toobig = b->toobig;
	busy = b->cap < REPLY_MAX;
	body_free(b);
	if (rc < 0 && rc != -ENOMEM)
		return say(conn, MHD_HTTP_SERVICE_UNAVAILABLE, 0, "%s", why);
	if (toobig && busy)
		return say(conn, MHD_HTTP_SERVICE_UNAVAILABLE, 0, "busy: %zu bytes of "
		           "replies are still being sent; try again", s->queued);
	if (toobig)
		return say(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, 0, "the exposition is "
		           "larger than %u bytes: narrow it with PATTERN or --top", REPLY_MAX);
	return say(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, 0, "out of memory");
}

/* ---- requests ---------------------------------------------------------------- */

static int has_body(struct MHD_Connection *conn)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                             MHD_HTTP_HEADER_CONTENT_LENGTH);

	return (cl && strcmp(cl, "0") != 0) ||
	       MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                   MHD_HTTP_HEADER_TRANSFER_ENCODING);
}

/*
 * Every request is answered at its first call, on its headers alone: no
 * body is ever read.  One that comes with a body is refused and its
 * connection closed; what MHD still passes of the body is dropped.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
	static int answered;
	struct server *s = cls;

	(void)version;
	(void)upload;
	if (*con_cls) {
		*upload_size = 0;
		return MHD_YES;
	}
	*con_cls = &answered;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return say(conn, MHD_HTTP_METHOD_NOT_ALLOWED, 1, "method %.32s not "
		           "allowed: the exporter is read-only (GET, HEAD)", method);
	if (has_body(conn))
		return say(conn, MHD_HTTP_CONTENT_TOO_LARGE, 1, "no request body is "
		           "accepted");
	/* (url is the path: MHD keeps the query string apart) */
	if (strcmp(url, "/metrics") == 0)
		return metrics(s, conn);
	if (strcmp(url, "/healthz") == 0)
		return healthz(s, conn);
	return say(conn, MHD_HTTP_NOT_FOUND, 0, "no such path: the exporter serves "
	           "/metrics and /healthz");
}

/* MHD's own messages (a connection refused at the limit, say), prefixed. */
static void on_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	fputs("ratectl: metrics: ", stderr);
	vfprintf(stderr, fmt, ap);
}

/* ---- ADDR:PORT ---------------------------------------------------------------- */

/*
 * A numeric IPv4 address or a bracketed IPv6 one, a colon and a port
 * (0: any free port, printed once bound).  Names are not resolved: what
 * the exporter listens on is what the unit file says.  0, or a usage
 * error's exit code.
 */
static int parse_listen(const cli *c, const char *arg, struct sockaddr_storage *ss,
                        char *host, size_t hostlen)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	const char *colon, *end;
	uint64_t port;
	size_t n;
	int v6 = arg[0] == '[';

	memset(ss, 0, sizeof *ss);
	if (v6) {
		if (!(end = strchr(arg, ']')))
			return cli_usage(c, "--listen '%s': no ']' after the IPv6 address", arg);
		colon = end + 1;
		if (*colon != ':')
			return cli_usage(c, "--listen '%s': ADDR:PORT, e.g. [::1]:9464", arg);
		arg++;
		n = (size_t)(end - arg);
	} else {
		if (!(colon = strrchr(arg, ':')))
			return cli_usage(c, "--listen '%s': ADDR:PORT, e.g. 127.0.0.1:9464",
			                 arg);
		n = (size_t)(colon - arg);
		if (memchr(arg, ':', n))
			return cli_usage(c, "--listen '%s': an IPv6 address goes in brackets, "
			                 "e.g. [::1]:9464", arg);
	}
	if (n == 0)
		return cli_usage(c, "--listen '%s': no address: 0.0.0.0:PORT listens on "
		                 "every IPv4 address, [::]:PORT on every IPv6 one",
		                 v6 ? arg - 1 : arg);
	if (n >= hostlen)
		return cli_usage(c, "--listen: address too long");
	memcpy(host, arg, n);
	host[n] = '\0';
	if (strlen(colon + 1) > 5 || cli_parse_u64(colon + 1, 65535, &port) != 0)
		return cli_usage(c, "--listen: port '%s': a number from 0 to 65535",
		                 colon + 1);
	if (!v6 && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
	} else if (v6 && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
	} else {
		return cli_usage(c, "--listen: '%s' is not a numeric %s address (names "
		                 "are not resolved)", host, v6 ? "IPv6" : "IPv4");
	}
	return 0;
}

/* ---- the server ----------------------------------------------------------------- */

static struct MHD_Daemon *start(struct server *s, struct sockaddr_storage *ss,
                                const char *host)
{
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;

	if (ss->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* (the logger first: MHD's own would print what comes before it) */
	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
	                     MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
	                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss,
	                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_MAX,
	                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)CONN_PER_IP,
	                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
	                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
	                     MHD_OPTION_END);
	if (!d) {
		cli_err(s->c, "cannot listen on %s%s%s: %s", ss->ss_family == AF_INET6 ?
		        "[" : "", host, ss->ss_family == AF_INET6 ? "]" : "", strerror(errno));
		return NULL;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || info->port == 0) {
		cli_err(s->c, "cannot tell which port it listens on");
		MHD_stop_daemon(d);
		return NULL;
	}
	/* Tests and scripts that asked for port 0 read the port from here. */
	fprintf(stderr, "ratectl: metrics: listening on %s%s%s:%u\n",
	        ss->ss_family == AF_INET6 ? "[" : "", host,
	        ss->ss_family == AF_INET6 ? "]" : "", (unsigned)info->port);
	fflush(stderr);
	return d;
}

int metrics_serve(cli *c, const metrics_query *q, const char *addr)
{
	struct server s = { .c = c, .q = q };
	struct sockaddr_storage ss;
	struct MHD_Daemon *d;
	char host[INET6_ADDRSTRLEN + 1];
	sigset_t set;
	int rc, sig;

	if ((rc = parse_listen(c, addr, &ss, host, sizeof host)) != 0)
		return rc;
	if (cli_ledger_dir(c, s.dir, sizeof s.dir) != 0) {
		cli_err(c, "ledger path too long");
		return CLI_ERROR;
	}
	/* Blocked before MHD starts its thread, which inherits the mask: only
	 * sigwait() below takes them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		cli_err(c, "cannot set up signals");
		return CLI_ERROR;
	}
	if (!(d = start(&s, &ss, host)))
		return CLI_ERROR;
	while (sigwait(&set, &sig) != 0)
		;
	/* Connections still open are closed; a scrape cut short is retried
	 * by its client. */
	MHD_stop_daemon(d);
	return CLI_OK;
}
