/*
 * bench_shim.c - what the preload shim adds to a transfer: a loop of
 * transfers to the fake provider on 127.0.0.1 through libcurl, without the
 * shim, with it on a matched host (admission, release and reconcile
 * included) and with it on an unmatched one.  The modes take turns in
 * rounds, each in a fresh process (the shim is loaded at exec).
 *
 * usage: bench_shim                  (the bench)
 *        bench_shim --client URL N   (one round: prints N per-transfer ns)
 */
#include <curl/curl.h>
#include <signal.h>
#include <sys/stat.h>

#include "bench.h"

#define ROUNDS 6
#define PER_ROUND 400

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
	(void)p;
	(void)ctx;
	return size * n;
}

/* One round in this process: n transfers on one handle (keep-alive). */
static int client(const char *url, long n)
{
	static const char body[] = "{\"model\":\"m\",\"max_tokens\":8,"
	                           "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
	CURL *c = curl_easy_init();
	long i, code;

	if (!c)
		return 1;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	for (i = 0; i < n; i++) {
		int64_t t0 = bench_now(), t;

		if (curl_easy_perform(c) != CURLE_OK)
			return 2;
		t = bench_now() - t0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (code != 200)
			return 3;
		printf("%lld\n", (long long)t);
	}
	curl_easy_cleanup(c);
	return 0;
}

/* Run one round in a child, its stdout into samples. */
static size_t round_of(const char *self, const char *url, const char *preload,
                       const char *conf, const char *ledger, int64_t *s, size_t at)
{
	char cmd[3 * PATH_MAX], line[64];
	FILE *p;

	snprintf(cmd, sizeof cmd, "%s%s%s RATECTL_CONFIG=%s RATECTL_LEDGER=%s "
	         "%s --client %s %d", preload ? "LD_PRELOAD=" : "",
	         preload ? preload : "", preload ? "" : "", conf, ledger, self, url,
	         PER_ROUND);
	if (!(p = popen(cmd, "r")))
		bench_die("popen: %s", strerror(errno));
	while (fgets(line, sizeof line, p) && at < ROUNDS * PER_ROUND)
		s[at++] = strtoll(line, NULL, 10);
	if (pclose(p) != 0)
		bench_die("a client round failed: %s", cmd);
	return at;
}

static pid_t provider(const char *b, const char *dir, char *url, size_t len)
{
	char fp[PATH_MAX], portf[PATH_MAX], port[16] = "";
	pid_t pid;
	int i;
	FILE *f;

	bench_path(fp, sizeof fp, b, "ratectl-fakeprov");
	bench_path(portf, sizeof portf, dir, "port");
	if ((pid = fork()) == 0) {
		execl(fp, fp, "--port", "0", "--port-file", portf, "--rps", "100000",
		      "--tpm", "1000000000", "--max-seconds", "120", "--quiet", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200 && !port[0]; i++) {
		struct timespec t = { 0, 25 * BENCH_MS };

		nanosleep(&t, NULL);    /* waiting for another program to start */
		if ((f = fopen(portf, "r"))) {
			if (!fgets(port, sizeof port, f))
				port[0] = '\0';
			fclose(f);
		}
	}
	if (!port[0])
		bench_die("the fake provider did not start (%s)", fp);
	port[strcspn(port, "\n")] = '\0';
	snprintf(url, len, "http://127.0.0.1:%s/v1/chat/completions", port);
	return pid;
}

static void row(const char *key, const char *label, bench_stats st, double base)
{
	char a[32], b[32], d[32];
	bench_row r;

	printf("   %-42s %10s %10s %12s\n", label, bench_fmt_ns(a, sizeof a, st.median),
	       bench_fmt_ns(b, sizeof b, st.p99),
	       base < 0 ? "" : bench_fmt_ns(d, sizeof d, st.median - base));
	r = bench_row_begin("shim", key);
	bench_row_num(&r, "median_ns", st.median);
	bench_row_num(&r, "p99_ns", st.p99);
	if (base >= 0)
		bench_row_num(&r, "added_ns", st.median - base);
	bench_row_end(&r);
}

int main(int argc, char **argv)
{
	const char *b = getenv("B") ? getenv("B") : "build";
	char dir[PATH_MAX], url[128], conf[PATH_MAX], other[PATH_MAX], ledger[PATH_MAX];
	char shim[PATH_MAX], self[PATH_MAX], absb[PATH_MAX];
	static int64_t s[3][ROUNDS * PER_ROUND];
	size_t n[3] = { 0, 0, 0 };
	bench_stats st[3];
	pid_t fp;
	FILE *f;
	int r;

	if (argc == 4 && strcmp(argv[1], "--client") == 0)
		return client(argv[2], atol(argv[3]));
	if (!realpath(b, absb) || !realpath("/proc/self/exe", self))
		bench_die("cannot resolve %s", b);
	bench_path(shim, sizeof shim, absb, "libratectl-preload.so");
	if (access(shim, R_OK) != 0) {
		printf("\nshim: skipped: %s not built\n", shim);
		return 0;
	}
	bench_tmpdir(dir, sizeof dir, bench_base(0), "shim");
	fp = provider(absb, dir, url, sizeof url);
	bench_path(conf, sizeof conf, dir, "matched.conf");
	bench_path(other, sizeof other, dir, "unmatched.conf");
	bench_path(ledger, sizeof ledger, dir, "ledger");
	if (!(f = fopen(conf, "w")))
		bench_die("cannot write %s", conf);
	fprintf(f, "[bench]\nmatch = 127.0.0.1\nrequests = 1000000/s\n"
	        "tokens = 1000000000/min\n");
	fclose(f);
	if (!(f = fopen(other, "w")))
		bench_die("cannot write %s", other);
	fprintf(f, "[elsewhere]\nmatch = api.example.invalid\nrequests = 10/s\n");
	fclose(f);
	for (r = 0; r < ROUNDS; r++) {
		n[0] = round_of(self, url, NULL, conf, ledger, s[0], n[0]);
		n[1] = round_of(self, url, shim, conf, ledger, s[1], n[1]);
		n[2] = round_of(self, url, shim, other, ledger, s[2], n[2]);
	}
	kill(fp, SIGTERM);
	waitpid(fp, NULL, 0);
	for (r = 0; r < 3; r++)
		st[r] = bench_stats_of(s[r], n[r], 0);
	printf("\n6. The preload shim: %d transfers per row (%d rounds taking turns, a\n"
	       "   process each), curl_easy_perform to the fake provider on 127.0.0.1,\n"
	       "   keep-alive; the time of each transfer\n", ROUNDS * PER_ROUND, ROUNDS);
	printf("   %-42s %10s %10s %12s\n", "", "median", "p99", "added");
	row("none", "without the shim", st[0], -1);
	row("matched", "shim, matched host (admit, release, usage)", st[1], st[0].median);
	row("unmatched", "shim, unmatched host", st[2], st[0].median);
	printf("   (loopback HTTP varies by microseconds from one transfer to the next:\n"
	       "   read the added time against the admission's own, section 1)\n");
	bench_rmtree(dir);
	return 0;
}
