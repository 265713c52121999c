/*
 * hostload - one process of a simulated host on a budget shared through
 * Redis, for tests/test_hosts.sh, and the tools that test needs around
 * it.  A "host" is a ledger directory with its own processes; hosts share
 * one kernel, so CLOCK_REALTIME is one clock for all of them, and every
 * time recorded here is on it (ns since the epoch).
 *
 *   hostload setup -l DIR -b NAME -r RPS -B BURST [-T TPS -K TBURST]
 *                  [-u URL -n HOSTS [-O]]
 *       Create budget NAME (requests RPS/s burst BURST; tokens TPS/s
 *       burst TBURST) and share it through Redis URL with the fallback
 *       share 1/HOSTS (-O: RATECTL_SHARE_OPEN).  No -u: not shared.
 *
 *   hostload run -l DIR -b NAME -r DEMAND -s SECONDS -o FILE
 *                [-a START] [-k MIN:MAX] [-p PORT]
 *       From START (ns, default now) for SECONDS, ask DEMAND admissions a
 *       second (ratectl_acquire), each of 1 request and MIN..MAX tokens;
 *       with -p, POST each admitted request to the fake provider on
 *       127.0.0.1:PORT before releasing it.  One line per admission is
 *       appended to FILE in one write (O_APPEND, so a host's processes
 *       share one file):  T_SEEN T_ADM TOKENS STATUS PID
 *       T_SEEN: when acquire returned (CLOCK_REALTIME); T_ADM: the
 *       lease's admission time, start_ns, on the ledger's clock
 *       (CLOCK_BOOTTIME, also one clock for every process of the
 *       kernel); STATUS: the provider's HTTP status, 0 without -p, -1
 *       when the request failed.
 *
 *   hostload watch -l DIR -b NAME -s SECONDS -o FILE [-i MS]
 *       Poll ratectl_budget_shared_state() every MS (default 5) and
 *       write when the host turns degraded and back, exactly (the
 *       state's degraded_since; the time of the sync that ended it):
 *         down T CREDIT_REQ CREDIT_TOK     (T = degraded_since)
 *         up T SYNCS RESTORED              (T = that sync's time)
 *         end T DEGRADED SYNCS RESTORED_SEEN MAXCREDIT_REQ MAXCREDIT_TOK
 *
 *   hostload state -l DIR -b NAME
 *       Print the shared state: degraded=, credit=REQ,TOK, syncs=, ...
 *
 *   hostload check -r RATE -B BURST [-d tokens] [-A] [-f FROM] [-t TO]
 *                  [-e EDGE] [-S START -E END -m MINUSE]
 *                  [-n HOSTS -c CAP -D WATCHFILE]... FILE...
 *       Merge the admissions of FILEs (T_SEEN, or T_ADM with -A, and then
 *       FROM, TO, START and END on its clock too; units:
 *       1, or TOKENS with -d tokens) with time in [FROM, TO], and check
 *       every window: for each pair of admissions a <= b (a closed
 *       window), units in [t_a, t_b] <= BURST + RATE * (t_b - t_a) + EDGE,
 *       plus, with -D (one watch file per host), for each degraded
 *       interval of a host that the window meets: CAP + BURST / HOSTS
 *       (rounded down, as the fallback share is) + RATE / HOSTS times
 *       the part of the window it covers.  With -S/-E, the units must
 *       also reach MINUSE of BURST + RATE * (END - START).  Prints the
 *       figures, the worst window and the fullest windows of 0.25 s and
 *       1 s; exits 0 when no window is over and the use is reached.
 *
 * Every mode is bounded in time: run and watch end by themselves and an
 * alarm ends them 30 s after their time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ratectl.h"

#define SEC 1000000000LL
#define MAX_FILES 16
#define MAX_DOWN 64

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static int64_t real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

static void sleep_until_real(int64_t t)
{
	struct timespec ts = { t / SEC, t % SEC };

	while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "hostload: %s: %s (%s)\n", what, ratectl_strerror(rc),
	        ratectl_errmsg());
	return 1;
}

/* Options common to the modes; numbers as given. */
struct opts {
	const char *ledger, *name, *out, *url, *ports;
	double rate, burst, tps, tburst, seconds, minuse, edge;
	int64_t start, from, to, t_start, t_end;
	unsigned hosts, cap, poll_ms;
	uint64_t kmin, kmax;
	int open_share, tokens, adm_col;
	const char *watch[MAX_FILES];
	unsigned nwatch;
};

static int64_t num64(const char *s)
{
	return strtoll(s, NULL, 10);
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const char optstr[] = "l:b:r:B:T:K:u:n:Os:o:a:k:p:i:d:Af:t:e:S:E:m:c:D:";
	int c;

	memset(o, 0, sizeof *o);
	o->poll_ms = 5;
	o->from = INT64_MIN;
	o->to = INT64_MAX;
	o->hosts = 1;
	while ((c = getopt(argc, argv, optstr)) != -1) {
		switch (c) {
		case 'l': o->ledger = optarg; break;
		case 'b': o->name = optarg; break;
		case 'r': o->rate = atof(optarg); break;
		case 'B': o->burst = atof(optarg); break;
		case 'T': o->tps = atof(optarg); break;
		case 'K': o->tburst = atof(optarg); break;
		case 'u': o->url = optarg; break;
		case 'n': o->hosts = (unsigned)atoi(optarg); break;
		case 'O': o->open_share = 1; break;
		case 's': o->seconds = atof(optarg); break;
		case 'o': o->out = optarg; break;
		case 'a': o->start = num64(optarg); break;
		case 'k':
			if (sscanf(optarg, "%" SCNu64 ":%" SCNu64, &o->kmin, &o->kmax) != 2 ||
			    o->kmax < o->kmin)
				return -1;
			break;
		case 'p': o->ports = optarg; break;
		case 'i': o->poll_ms = (unsigned)atoi(optarg); break;
		case 'd': o->tokens = strcmp(optarg, "tokens") == 0; break;
		case 'A': o->adm_col = 1; break;
		case 'f': o->from = num64(optarg); break;
		case 't': o->to = num64(optarg); break;
		case 'e': o->edge = atof(optarg); break;
		case 'S': o->t_start = num64(optarg); break;
		case 'E': o->t_end = num64(optarg); break;
		case 'm': o->minuse = atof(optarg); break;
		case 'c': o->cap = (unsigned)atoi(optarg); break;
		case 'D':
			if (o->nwatch == MAX_FILES)
				return -1;
			o->watch[o->nwatch++] = optarg;
			break;
		default: return -1;
		}
	}
	return optind;
}

/* ---- setup and state ------------------------------------------------------ */

static int do_setup(const struct opts *o)
{
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_share s;
	ratectl *h;
	int rc;

	if (!o->ledger || !o->name || o->rate < 1 || o->burst < 1)
		return 2;
	if ((rc = ratectl_open(&h, o->ledger, NULL)) != 0)
		return die(o->ledger, rc);
	b.limits[b.nlimits++] = (ratectl_limit){ RATECTL_REQUESTS, (uint64_t)o->rate, SEC,
	                                         (uint64_t)o->burst };
	if (o->tps >= 1)
		b.limits[b.nlimits++] = (ratectl_limit){ RATECTL_TOKENS, (uint64_t)o->tps, SEC,
		                                         (uint64_t)o->tburst };
	if ((rc = ratectl_budget_set(h, o->name, &b, RATECTL_CREATE)) != 0)
		return die("budget_set", rc);
	if (o->url && o->url[0]) {
		memset(&s, 0, sizeof s);
		s.version = RATECTL_SHARE_VERSION;
		snprintf(s.url, sizeof s.url, "%s", o->url);
		s.hosts = o->hosts;
		s.flags = o->open_share ? RATECTL_SHARE_OPEN : 0;
		if ((rc = ratectl_budget_share(h, o->name, &s)) != 0)
			return die("budget_share", rc);
	}
	ratectl_close(h);
	return 0;
}

static int do_state(const struct opts *o)
{
	ratectl_shared_state st;
	ratectl *h;
	int rc;

	if (!o->ledger || !o->name)
		return 2;
	if ((rc = ratectl_open(&h, o->ledger, NULL)) != 0)
		return die(o->ledger, rc);
	if ((rc = ratectl_budget_shared_state(h, o->name, &st)) != 0)
		return die("shared_state", rc);
	printf("degraded=%d credit=%lld,%lld syncs=%llu commands=%llu restored=%d "
	       "last_sync_age_ms=%lld hosts=%u url=%s error=%s\n", st.degraded,
	       (long long)st.credit[0], (long long)st.credit[1],
	       (unsigned long long)st.syncs, (unsigned long long)st.redis_commands,
	       st.restored, (long long)(st.last_sync_age_ns / 1000000), st.share.hosts,
	       st.share.url, st.last_error[0] ? st.last_error : "-");
	ratectl_close(h);
	return 0;
}

/* ---- run ---------------------------------------------------------------- */

/* POST one small chat request to 127.0.0.1:port; its HTTP status, or -1. */
static int post(int port)
{
	static const char body[] = "{\"model\":\"t\",\"max_tokens\":10}";
	struct sockaddr_in a;
	struct timeval tv = { 5, 0 };
	char req[512], resp[4096];
	size_t n = 0;
	ssize_t r;
	int fd, len, status = -1;

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	len = snprintf(req, sizeof req, "POST /v1/chat/completions HTTP/1.1\r\n"
	               "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
	               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	               sizeof body - 1, body);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    write(fd, req, (size_t)len) != len)
		goto out;
	/* To the end: the status line, then the rest drained. */
	while (n < sizeof resp - 1 && (r = read(fd, resp + n, sizeof resp - 1 - n)) > 0)
		n += (size_t)r;
	resp[n] = '\0';
	if (strncmp(resp, "HTTP/1.", 7) == 0 && n > 12)
		status = atoi(resp + 9);
out:
	close(fd);
	return status;
}

static int do_run(const struct opts *o)
{
	int64_t start, end, next, interval, now;
	ratectl_lease l;
	ratectl *h;
	unsigned seed = (unsigned)getpid();
	uint64_t admitted = 0, timeouts = 0;
	int fd, rc, port = o->ports ? atoi(o->ports) : 0;

	if (!o->ledger || !o->name || !o->out || o->rate <= 0 || o->seconds <= 0)
		return 2;
	alarm((unsigned)o->seconds + 30);
	if ((fd = open(o->out, O_WRONLY | O_CREAT | O_APPEND, 0644)) < 0) {
		perror(o->out);
		return 1;
	}
	if ((rc = ratectl_open(&h, o->ledger, NULL)) != 0)
		return die(o->ledger, rc);
	start = o->start ? o->start : real_ns();
	end = start + (int64_t)(o->seconds * SEC);
	interval = (int64_t)(SEC / o->rate);
	/* Processes of one host start at random phases of their interval. */
	next = start + (int64_t)(rand_r(&seed) % 1000) * interval / 1000;
	for (;;) {
		ratectl_cost c = { 1, o->kmin, RATECTL_INTERACTIVE, NULL };
		int64_t t_seen, left;
		char line[160];
		int status = 0, len;

		if (o->kmax > o->kmin)
			c.tokens += (uint64_t)rand_r(&seed) % (o->kmax - o->kmin + 1);
		if (next >= end)
			break;
		sleep_until_real(next);
		now = real_ns();
		left = end - now;
		if (left <= 0)
			break;
		rc = ratectl_acquire(h, o->name, &c, &l, left < SEC ? left : SEC);
		t_seen = real_ns();
		/* The demand is a schedule, but a late process asks again at
		 * once rather than making up every missed turn. */
		next = next + interval > t_seen ? next + interval : t_seen;
		if (rc == RATECTL_ETIMEDOUT) {
			timeouts++;
			continue;
		}
		if (rc != 0)
			return die("acquire", rc);
		if (port)
			status = post(port);
		len = snprintf(line, sizeof line, "%lld %lld %llu %d %d\n", (long long)t_seen,
		               (long long)l.start_ns, (unsigned long long)c.tokens,
		               status, (int)getpid());
		if (write(fd, line, (size_t)len) != len) {
			perror(o->out);
			return 1;
		}
		admitted++;
		if ((rc = ratectl_release(h, &l, RATECTL_UNKNOWN)) != 0)
			return die("release", rc);
	}
	ratectl_close(h);
	close(fd);
	fprintf(stderr, "hostload: pid %d: %llu admitted, %llu timed out\n", (int)getpid(),
	        (unsigned long long)admitted, (unsigned long long)timeouts);
	return 0;
}

/* ---- watch -------------------------------------------------------------- */

static int do_watch(const struct opts *o)
{
	ratectl_shared_state st;
	int64_t end, maxc[2] = { 0, 0 }, since = 0;
	int was_down = 0, restored_seen = 0, rc, d;
	uint64_t syncs = 0;
	FILE *f;
	ratectl *h;

	if (!o->ledger || !o->name || !o->out || o->seconds <= 0)
		return 2;
	alarm((unsigned)o->seconds + 30);
	if (!(f = fopen(o->out, "w"))) {
		perror(o->out);
		return 1;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	if ((rc = ratectl_open(&h, o->ledger, NULL)) != 0)
		return die(o->ledger, rc);
	end = (o->start ? o->start : real_ns()) + (int64_t)(o->seconds * SEC);
	for (;;) {
		int64_t now = real_ns();
		struct timespec gap = { 0, (long)o->poll_ms * 1000000 };

		if ((rc = ratectl_budget_shared_state(h, o->name, &st)) != 0)
			return die("shared_state", rc);
		for (d = 0; d < 2; d++)
			if (st.credit[d] > maxc[d])
				maxc[d] = st.credit[d];
		syncs = st.syncs;
		/* A new outage, or a second one between two looks. */
		if (st.degraded && (!was_down || st.degraded_since != since)) {
			if (was_down)
				fprintf(f, "up %lld %llu 0\n", (long long)st.degraded_since,
				        (unsigned long long)syncs);
			since = st.degraded_since;
			fprintf(f, "down %lld %lld %lld\n", (long long)since,
			        (long long)st.credit[0], (long long)st.credit[1]);
			was_down = 1;
		} else if (!st.degraded && was_down) {
			fprintf(f, "up %lld %llu %d\n", (long long)(now - st.last_sync_age_ns),
			        (unsigned long long)syncs, st.restored);
			was_down = 0;
		}
		if (!st.degraded && st.restored)
			restored_seen = 1;
		if (now >= end)
			break;
		nanosleep(&gap, NULL);
	}
	fprintf(f, "end %lld %d %llu %d %lld %lld\n", (long long)real_ns(), st.degraded,
	        (unsigned long long)syncs, restored_seen, (long long)maxc[0],
	        (long long)maxc[1]);
	fclose(f);
	ratectl_close(h);
	return 0;
}

/* ---- check -------------------------------------------------------------- */

typedef struct rec {
	int64_t t;
	double units;
	unsigned file;
} rec;

static int rec_cmp(const void *a, const void *b)
{
	const rec *x = a, *y = b;

	return x->t < y->t ? -1 : x->t > y->t;
}

/* A host's degraded intervals, from its watch file. */
typedef struct downs {
	unsigned n;
	int64_t s[MAX_DOWN], e[MAX_DOWN];
} downs;

static int read_watch(const char *path, downs *d)
{
	char kind[8];
	long long t, a, b;
	FILE *f = fopen(path, "r");
	int open_iv = 0;

	if (!f) {
		perror(path);
		return -1;
	}
	d->n = 0;
	while (fscanf(f, "%7s %lld", kind, &t) == 2) {
		if (strcmp(kind, "down") == 0 && !open_iv && d->n < MAX_DOWN) {
			d->s[d->n] = t;
			d->e[d->n] = INT64_MAX;   /* still down at the end */
			open_iv = 1;
			d->n++;
		} else if (strcmp(kind, "up") == 0 && open_iv) {
			d->e[d->n - 1] = t;
			open_iv = 0;
		}
		if (fscanf(f, "%lld %lld%*[^\n]", &a, &b) < 0)
			break;
	}
	fclose(f);
	return 0;
}

/* What the degraded hosts add to window [a, b]: for each interval it
 * meets, cap + burst/hosts + rate/hosts * overlap. */
static double fallback_allowance(const struct opts *o, const downs *dw, int64_t a,
                                 int64_t b)
{
	double add = 0, fb_burst = (double)((uint64_t)o->burst / o->hosts);
	unsigned h, i;

	if (fb_burst < 1)
		fb_burst = 1;
	for (h = 0; h < o->nwatch; h++)
		for (i = 0; i < dw[h].n; i++) {
			int64_t s = dw[h].s[i] > a ? dw[h].s[i] : a;
			int64_t e = dw[h].e[i] < b ? dw[h].e[i] : b;

			if (s > e)
				continue;
			add += o->cap + fb_burst + o->rate / o->hosts * (double)(e - s) / SEC;
		}
	return add;
}

/* The fullest window of length w: (count, start). */
static double fullest(const rec *r, size_t n, int64_t w, int64_t *at)
{
	double best = 0, sum = 0;
	size_t i, j = 0;

	for (i = 0; i < n; i++) {
		sum += r[i].units;
		while (r[i].t - r[j].t > w)
			sum -= r[j++].units;
		if (sum > best) {
			best = sum;
			*at = r[j].t;
		}
	}
	return best;
}

static int do_check(const struct opts *o, int nfiles, char **files)
{
	static const int64_t widths[2] = { SEC / 4, SEC };
	downs dw[MAX_FILES];
	double per_file[MAX_FILES] = { 0 }, total = 0, worst = -1e18, worst_count = 0;
	double worst_allowed = 0, *U;
	int64_t wa = 0, wb = 0, at = 0;
	size_t n = 0, cap = 1024, i, j;
	rec *r = malloc(cap * sizeof *r);
	int k, bad = 0;

	if (o->rate <= 0 || o->burst < 0 || nfiles < 1 || nfiles > MAX_FILES || !r ||
	    (o->nwatch && (o->hosts < 1)))
		return 2;
	for (k = 0; k < (int)o->nwatch; k++)
		if (read_watch(o->watch[k], &dw[k]) != 0)
			return 1;
	for (k = 0; k < nfiles; k++) {
		long long ts, ta;
		unsigned long long tok;
		int status, pid;
		FILE *f = fopen(files[k], "r");

		if (!f) {
			perror(files[k]);
			return 1;
		}
		while (fscanf(f, "%lld %lld %llu %d %d", &ts, &ta, &tok, &status, &pid) == 5) {
			int64_t t = o->adm_col ? ta : ts;

			if (t < o->from || t > o->to)
				continue;
			if (n == cap && !(r = realloc(r, (cap *= 2) * sizeof *r)))
				return 1;
			r[n].t = t;
			r[n].units = o->tokens ? (double)tok : 1;
			r[n].file = (unsigned)k;
			per_file[k] += r[n].units;
			total += r[n].units;
			n++;
		}
		fclose(f);
	}
	qsort(r, n, sizeof *r, rec_cmp);
	/* U[i]: units before admission i. */
	if (!(U = malloc((n + 1) * sizeof *U)))
		return 1;
	U[0] = 0;
	for (i = 0; i < n; i++)
		U[i + 1] = U[i] + r[i].units;
	/* Every closed window [t_i, t_j]: O(n^2), a few thousand admissions. */
	for (i = 0; i < n; i++)
		for (j = i; j < n; j++) {
			int64_t a = r[i].t, b = r[j].t;
			double count = U[j + 1] - U[i];
			double allowed = o->burst + o->rate * (double)(b - a) / SEC + o->edge;
			double over;

			if (o->nwatch)
				allowed += fallback_allowance(o, dw, a, b);
			over = count - allowed;
			if (over > worst) {
				worst = over;
				worst_count = count;
				worst_allowed = allowed;
				wa = a;
				wb = b;
			}
		}
	printf("%.0f %s admitted (", total, o->tokens ? "tokens" : "requests");
	for (k = 0; k < nfiles; k++)
		printf("%s%.0f", k ? " + " : "", per_file[k]);
	printf(") over %.3f s", n ? (double)(r[n - 1].t - r[0].t) / SEC : 0.0);
	if (n) {
		printf("; worst window %.3f s from +%.3f s: %.0f in it, %.2f allowed "
		       "(%+.2f)", (double)(wb - wa) / SEC,
		       (double)(wa - (o->t_start ? o->t_start : r[0].t)) / SEC, worst_count,
		       worst_allowed, worst);
		if (worst > 0)
			bad = 1;
	}
	for (k = 0; k < 2 && n && !o->nwatch; k++) {
		double m = fullest(r, n, widths[k], &at);

		printf("; fullest %.2f s: %.0f (allowed %.1f)", (double)widths[k] / SEC, m,
		       o->burst + o->rate * (double)widths[k] / SEC + o->edge);
	}
	if (o->t_end > o->t_start) {
		double whole = o->burst + o->rate * (double)(o->t_end - o->t_start) / SEC;

		printf("; used %.1f%% of %.0f (burst + rate * %.2f s; at least %.0f%% wanted)",
		       100 * total / whole, whole, (double)(o->t_end - o->t_start) / SEC,
		       100 * o->minuse);
		if (total < o->minuse * whole)
			bad = 1;
	}
	printf("\n");
	free(U);
	free(r);
	return bad;
}

int main(int argc, char **argv)
{
	struct opts o;
	const char *mode = argc > 1 ? argv[1] : "";
	int first, rc = 2;

	if ((first = parse(argc - 1, argv + 1, &o)) < 0)
		;
	else if (strcmp(mode, "setup") == 0)
		rc = do_setup(&o);
	else if (strcmp(mode, "run") == 0)
		rc = do_run(&o);
	else if (strcmp(mode, "watch") == 0)
		rc = do_watch(&o);
	else if (strcmp(mode, "state") == 0)
		rc = do_state(&o);
	else if (strcmp(mode, "check") == 0)
		rc = do_check(&o, argc - 1 - first, argv + 1 + first);
	if (rc == 2)
		fprintf(stderr, "usage: hostload setup|run|watch|state|check [options] "
		        "(see tests/progs/hostload.c)\n");
	return rc;
}
