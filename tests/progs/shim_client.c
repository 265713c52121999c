/*
 * shim_client - a small libcurl program for tests/test_shim.sh: it sends
 * N POST requests through the easy interface (one after another) or the
 * multi interface (K at once), and prints what came back on one line:
 *
 *   sent=N ok=N s429=N s503=N other=N failed=N bad=N hits=N ms=T
 *
 * bad counts 200 responses whose body is not exactly one JSON object with
 * a usage member: what a program would see if the shim mixed a refused
 * response into the one that followed it; or that came in a write of more
 * than CURL_MAX_WRITE_SIZE bytes, or whose CURLINFO_SIZE_DOWNLOAD_T is
 * not the body's size.  Linked against libcurl.
 *
 * With --heads, a header callback sees each transfer's head: a line that
 * does not end in CRLF or is longer than CURL_MAX_HTTP_HEADER is bad,
 * and hits counts heads that carry "X-Ratectl-Cache: hit" or "coalesced"
 * (an answer from ratectl's response cache).
 *
 * The multi interface (-m K) is driven with perform and poll, reading the
 * done messages after each perform; with --late, only once nothing runs
 * (as libcurl's own examples do); with --socket, event-driven instead:
 * socket_action, a socket and a timer callback, and poll() on what they
 * asked for, calling in only when a socket is ready or the timer is due.
 * --deadline S gives up after S seconds (default 120).
 *
 * With -t T, T threads each do N requests (counted together).  With
 * --same FILE, a 200 body is bad unless it is byte for byte FILE (a
 * streamed answer fetched without the shim).
 *
 * -H 'Name: value' adds a request header (CURLOPT_HTTPHEADER, one list
 * shared by every transfer, as programs do); --fill NAME LEN adds
 * "NAME: " and LEN bytes of 'a'.  The list is checked after the last
 * transfer: its nodes and strings must be the ones made here, unchanged,
 * else "shim_client: header list changed" and exit status 3.  With
 * --then URL2, each easy handle is used again for URL2 after its transfer
 * (counted too): what it sends shows the options the shim gave back.
 *
 * usage: shim_client [-n N] [-m K] [-t T] [-d BODY] [--copy] [--fwrite]
 *                    [--same FILE] [-H HEADER]... [--fill NAME LEN]
 *                    [--then URL2] [--heads] [--late | --socket]
 *                    [--deadline S] URL
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>

struct buf {
	char *p;
	size_t n;
	int big;                /* a write larger than libcurl ever makes */
	int badhead;            /* a head line not as libcurl gives them */
	int hit;                /* the head said X-Ratectl-Cache: hit */
};

struct opts {
	const char *url;
	const char *body;
	int n;
	int k;                  /* 0: easy interface */
	int threads;            /* 0: in the main thread */
	int copy;               /* COPYPOSTFIELDS instead of POSTFIELDS */
	int use_fwrite;         /* no write callback: libcurl's own fwrite */
	struct buf same;        /* --same: the expected body */
	struct curl_slist *hdrs;        /* -H, --fill */
	const char *then;       /* --then URL2 */
	int heads;              /* --heads */
	int late;               /* --late */
	int socket;             /* --socket */
	int deadline;           /* --deadline S */
};

struct counts {
	int sent, ok, s429, s503, other, failed, bad, hits;
};

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;
	char *q = realloc(b->p, b->n + size * n + 1);

	if (size * n > CURL_MAX_WRITE_SIZE)
		b->big = 1;
	if (!q)
		return 0;
	memcpy(q + b->n, p, size * n);
	b->p = q;
	b->n += size * n;
	b->p[b->n] = '\0';
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;
	size_t len = size * n;
	static const char hit[] = "x-ratectl-cache: ";

	if (len < 2 || len > CURL_MAX_HTTP_HEADER || p[len - 2] != '\r' || p[len - 1] != '\n')
		b->badhead = 1;
	if (len >= sizeof hit - 1 && strncasecmp(p, hit, sizeof hit - 1) == 0)
		b->hit = 1;
	if (len == 2)           /* the end of a head: the next one starts afresh */
		return len;
	/* A new head (a redirect, a retry) forgets the last one's verdict. */
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
		b->hit = 0;
	return len;
}

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

static int one_object_with_usage(const struct buf *b)
{
	const char *u;

	if (!b->p || b->n < 2 || b->p[0] != '{' || b->p[b->n - 1] != '}')
		return 0;
	u = strstr(b->p, "\"usage\"");
	/* two bodies glued together would show a second object or usage */
	return u && !strstr(u + 1, "\"usage\"") && !strstr(b->p, "}{");
}

static CURL *make(const struct opts *o, struct buf *b, FILE *sink, char *err)
{
	CURL *e = curl_easy_init();

	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_URL, o->url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
	if (o->hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->hdrs);
	if (o->body)
		curl_easy_setopt(e, o->copy ? CURLOPT_COPYPOSTFIELDS : CURLOPT_POSTFIELDS,
		                 o->body);
	if (o->use_fwrite) {
		curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
	} else {
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	}
	if (o->heads) {
		curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(e, CURLOPT_HEADERDATA, b);
	}
	return e;
}

/* Count one finished transfer (threads share the counts). */
static void tally(struct counts *c, CURL *e, CURLcode rc, const struct buf *b,
                  const char *err, const struct opts *o)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	curl_off_t got = -1;
	long code = 0;

	if (rc == CURLE_OK) {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &got);
	}
	pthread_mutex_lock(&mu);
	c->sent++;
	c->hits += rc == CURLE_OK && b->hit;
	if (rc != CURLE_OK) {
		if (c->failed++ == 0)
			fprintf(stderr, "shim_client: (%d) %s\n", (int)rc,
			        err[0] ? err : curl_easy_strerror(rc));
	} else if (code == 200) {
		c->ok++;
		if (o->same.p ? b->n != o->same.n || memcmp(b->p, o->same.p, b->n) :
		    !o->use_fwrite && !one_object_with_usage(b))
			c->bad++;
		else if (b->big || b->badhead || (!o->use_fwrite && got != (curl_off_t)b->n))
			c->bad++;
	} else if (code == 429) {
		c->s429++;
	} else if (code == 503) {
		c->s503++;
	} else {
		c->other++;
	}
	pthread_mutex_unlock(&mu);
}

static void run_easy(const struct opts *o, struct counts *c, FILE *sink)
{
	int i;

	for (i = 0; i < o->n; i++) {
		char err[CURL_ERROR_SIZE] = "";
		struct buf b = { .p = NULL };
		CURL *e = make(o, &b, sink, err);
		CURLcode rc = e ? curl_easy_perform(e) : CURLE_OUT_OF_MEMORY;

		tally(c, e, rc, &b, err, o);
		if (e && o->then) {
			free(b.p);
			memset(&b, 0, sizeof b);
			err[0] = '\0';
			curl_easy_setopt(e, CURLOPT_URL, o->then);
			tally(c, e, curl_easy_perform(e), &b, err, o);
		}
		curl_easy_cleanup(e);
		free(b.p);
	}
}

/* A snapshot of the header list: its nodes, their strings, the bytes. */
struct snap {
	size_t n;
	const struct curl_slist **node;
	const char **data;
	char **copy;
};

static int snap_take(struct snap *s, const struct curl_slist *l)
{
	const struct curl_slist *p;
	size_t i = 0;

	for (s->n = 0, p = l; p; p = p->next)
		s->n++;
	s->node = calloc(s->n + 1, sizeof *s->node);
	s->data = calloc(s->n + 1, sizeof *s->data);
	s->copy = calloc(s->n + 1, sizeof *s->copy);
	if (!s->node || !s->data || !s->copy)
		return -1;
	for (p = l; p; p = p->next, i++) {
		s->node[i] = p;
		s->data[i] = p->data;
		if (!(s->copy[i] = strdup(p->data)))
			return -1;
	}
	return 0;
}

/* 0 when l is still what s saw. */
static int snap_same(const struct snap *s, const struct curl_slist *l)
{
	size_t i = 0;

	for (; l; l = l->next, i++)
		if (i >= s->n || l != s->node[i] || l->data != s->data[i] ||
		    strcmp(l->data, s->copy[i]) != 0)
			return -1;
	return i == s->n ? 0 : -1;
}

struct slot {
	CURL *e;
	struct buf b;
	char err[CURL_ERROR_SIZE];
};

static int add_next(CURLM *m, const struct opts *o, struct slot *s, FILE *sink)
{
	memset(s, 0, sizeof *s);
	if (!(s->e = make(o, &s->b, sink, s->err)))
		return -1;
	curl_easy_setopt(s->e, CURLOPT_PRIVATE, s);
	return curl_multi_add_handle(m, s->e) == CURLM_OK ? 0 : -1;
}

/* Like `curl --parallel`: K in flight, the next added as one finishes. */
static void run_multi(const struct opts *o, struct counts *c, FILE *sink)
{
	struct slot *slots = calloc((size_t)o->k, sizeof *slots);
	CURLM *m = curl_multi_init();
	int started = 0, running = 1, i, left;
	time_t stop = time(NULL) + o->deadline;

	for (i = 0; i < o->k && started < o->n; i++, started++)
		add_next(m, o, &slots[i], sink);
	while ((running || started < o->n) && time(NULL) < stop) {
		CURLMsg *msg;

		curl_multi_perform(m, &running);
		/* --late: the messages only once nothing runs */
		while ((!o->late || !running) && (msg = curl_multi_info_read(m, &left))) {
			struct slot *s;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			tally(c, s->e, msg->data.result, &s->b, s->err, o);
			curl_multi_remove_handle(m, s->e);
			curl_easy_cleanup(s->e);
			free(s->b.p);
			if (started < o->n && add_next(m, o, s, sink) == 0) {
				started++;
				running = 1;
			}
		}
		if (running)
			curl_multi_poll(m, NULL, 0, 1000, NULL);
	}
	curl_multi_cleanup(m);
	free(slots);
}

/* --socket: what the socket and timer callbacks asked to be watched. */
struct watch {
	struct pollfd fds[64];
	int n;
	struct timespec due;    /* the timer, when armed */
	int armed;
};

static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sp)
{
	struct watch *w = ud;
	int i;

	(void)e;
	(void)sp;
	for (i = 0; i < w->n && w->fds[i].fd != s; i++)
		;
	if (what == CURL_POLL_REMOVE) {
		if (i < w->n)
			w->fds[i] = w->fds[--w->n];
		return 0;
	}
	if (i == w->n) {
		if (w->n == 64)
			return -1;
		w->n++;
	}
	w->fds[i].fd = s;
	w->fds[i].events = (short)((what & CURL_POLL_IN ? POLLIN : 0) |
	                           (what & CURL_POLL_OUT ? POLLOUT : 0));
	return 0;
}

static int on_timer(CURLM *m, long ms, void *ud)
{
	struct watch *w = ud;

	(void)m;
	w->armed = ms >= 0;
	if (ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &w->due);
		w->due.tv_sec += ms / 1000;
		w->due.tv_nsec += (ms % 1000) * 1000000;
		if (w->due.tv_nsec >= 1000000000) {
			w->due.tv_sec++;
			w->due.tv_nsec -= 1000000000;
		}
	}
	return 0;
}

/* Milliseconds until the timer is due (0 when it is), -1 when not armed. */
static int due_in(const struct watch *w)
{
	struct timespec now;
	long long ms;

	if (!w->armed)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(w->due.tv_sec - now.tv_sec) * 1000 +
	     (w->due.tv_nsec - now.tv_nsec) / 1000000;
	return ms <= 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
}

/* Like run_multi, as an event loop does it. */
static void run_socket(const struct opts *o, struct counts *c, FILE *sink)
{
	struct slot *slots = calloc((size_t)o->k, sizeof *slots);
	struct watch w = { .n = 0, .armed = 0 };
	CURLM *m = curl_multi_init();
	int started = 0, done = 0, running = 0, i, left;
	time_t stop = time(NULL) + o->deadline;

	curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(m, CURLMOPT_SOCKETDATA, &w);
	curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(m, CURLMOPT_TIMERDATA, &w);
	for (i = 0; i < o->k && started < o->n; i++, started++)
		add_next(m, o, &slots[i], sink);
	while (done < o->n && time(NULL) < stop) {
		int t = due_in(&w), ready, j;
		CURLMsg *msg;

		/* Sleep on the sockets, at most a second at a time; call in only
		 * for what was asked for. */
		ready = poll(w.fds, (nfds_t)w.n, t < 0 ? 1000 : t);
		for (j = 0; ready > 0 && j < w.n; j++)
			if (w.fds[j].revents) {
				int ev = (w.fds[j].revents & POLLIN ? CURL_CSELECT_IN : 0) |
				         (w.fds[j].revents & POLLOUT ? CURL_CSELECT_OUT : 0) |
				         (w.fds[j].revents & (POLLERR | POLLHUP) ? CURL_CSELECT_ERR : 0);

				curl_multi_socket_action(m, w.fds[j].fd, ev, &running);
			}
		if (due_in(&w) == 0) {
			w.armed = 0;
			curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
		}
		while ((msg = curl_multi_info_read(m, &left))) {
			struct slot *s;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			tally(c, s->e, msg->data.result, &s->b, s->err, o);
			curl_multi_remove_handle(m, s->e);
			curl_easy_cleanup(s->e);
			free(s->b.p);
			done++;
			if (started < o->n && add_next(m, o, s, sink) == 0)
				started++;
		}
	}
	curl_multi_cleanup(m);
	free(slots);
}

struct job {
	const struct opts *o;
	struct counts *c;
	FILE *sink;
};

static void *thread_main(void *arg)
{
	struct job *j = arg;

	if (j->o->k > 0 && j->o->socket)
		run_socket(j->o, j->c, j->sink);
	else if (j->o->k > 0)
		run_multi(j->o, j->c, j->sink);
	else
		run_easy(j->o, j->c, j->sink);
	return NULL;
}

static void run_threads(const struct opts *o, struct counts *c, FILE *sink)
{
	pthread_t tids[64];
	struct job j = { o, c, sink };
	int i, n = o->threads < 64 ? o->threads : 64;

	for (i = 0; i < n; i++)
		pthread_create(&tids[i], NULL, thread_main, &j);
	for (i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
}

int main(int argc, char **argv)
{
	struct opts o = { .n = 1, .deadline = 120 };
	struct snap sn;
	int rc = 0;
	struct counts c = { 0, 0, 0, 0, 0, 0, 0, 0 };
	struct timespec t0, t1;
	FILE *sink;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			o.n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-m") && i + 1 < argc)
			o.k = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			o.threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-d") && i + 1 < argc)
			o.body = argv[++i];
		else if (!strcmp(argv[i], "--copy"))
			o.copy = 1;
		else if (!strcmp(argv[i], "--fwrite"))
			o.use_fwrite = 1;
		else if (!strcmp(argv[i], "--same") && i + 1 < argc && !o.same.p &&
		         (o.same.p = slurp(argv[i + 1], &o.same.n)))
			i++;
		else if (!strcmp(argv[i], "-H") && i + 1 < argc)
			o.hdrs = curl_slist_append(o.hdrs, argv[++i]);
		else if (!strcmp(argv[i], "--fill") && i + 2 < argc) {
			size_t k = strlen(argv[i + 1]), len = (size_t)atol(argv[i + 2]);
			char *h = malloc(k + 2 + len + 1);

			if (!h)
				return 1;
			memcpy(h, argv[i + 1], k);
			memcpy(h + k, ": ", 2);
			memset(h + k + 2, 'a', len);
			h[k + 2 + len] = '\0';
			o.hdrs = curl_slist_append(o.hdrs, h);
			free(h);
			i += 2;
		} else if (!strcmp(argv[i], "--then") && i + 1 < argc)
			o.then = argv[++i];
		else if (!strcmp(argv[i], "--heads"))
			o.heads = 1;
		else if (!strcmp(argv[i], "--late"))
			o.late = 1;
		else if (!strcmp(argv[i], "--socket"))
			o.socket = 1;
		else if (!strcmp(argv[i], "--deadline") && i + 1 < argc)
			o.deadline = atoi(argv[++i]);
		else if (argv[i][0] != '-' && !o.url)
			o.url = argv[i];
		else
			o.url = NULL, i = argc;
	}
	if (!o.url || o.n < 1 || o.k < 0 || o.deadline < 1) {
		fprintf(stderr, "usage: shim_client [-n N] [-m K] [-t T] [-d BODY] "
		        "[--copy] [--fwrite] [--same FILE] [-H HEADER]... "
		        "[--fill NAME LEN] [--then URL2] [--heads] [--late | --socket] "
		        "[--deadline S] URL\n");
		return 2;
	}
	if (snap_take(&sn, o.hdrs) != 0)
		return 1;
	if (!(sink = fopen("/dev/null", "w")))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (o.threads > 0)
		run_threads(&o, &c, sink);
	else if (o.k > 0 && o.socket)
		run_socket(&o, &c, sink);
	else if (o.k > 0)
		run_multi(&o, &c, sink);
	else
		run_easy(&o, &c, sink);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("sent=%d ok=%d s429=%d s503=%d other=%d failed=%d bad=%d hits=%d ms=%ld\n",
	       c.sent, c.ok, c.s429, c.s503, c.other, c.failed, c.bad, c.hits,
	       (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
	if (snap_same(&sn, o.hdrs) != 0) {
		fprintf(stderr, "shim_client: header list changed\n");
		rc = 3;
	}
	for (i = 0; i < (int)sn.n; i++)
		free(sn.copy[i]);
	free(sn.copy);
	free(sn.data);
	free(sn.node);
	curl_slist_free_all(o.hdrs);
	curl_global_cleanup();
	fclose(sink);
	return rc;
}
