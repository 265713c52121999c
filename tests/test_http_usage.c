/*
 * test_http_usage.c - the incremental usage scanner (lib/http/usage.c).
 *
 * Readable vectors (recorded-style bodies of each provider's shapes) are
 * replayed whole, byte by byte, split at every position into two chunks
 * and, when short, at every pair of positions into three.  Every chunk is
 * copied to end right before a PROT_NONE page, so reading one byte past
 * it crashes (picohttpparser's test.c).  Then the adversarial cases:
 * "usage" where it must not count, escapes, keys and numbers and nesting
 * at the scanner's caps (size - 1, size, size + 1, 10 x size), SSE line
 * endings, errors, and 10 MiB bodies through the fixed-size struct.
 *
 * In the bodies written here ' stands for ", so JSON reads as JSON; q()
 * turns them back.  No body needs a real '.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The scanner must never allocate: a call to any of these fails to link. */
#define malloc(n) rh_usage_test_must_not_allocate(n)
#define calloc(n, m) rh_usage_test_must_not_allocate(n)
#define realloc(q, n) rh_usage_test_must_not_allocate(n)
#include "../lib/http/usage.c"
#undef malloc
#undef calloc
#undef realloc

#define BIG (10u << 20)         /* the size of the long bodies */
#define GUARD_AREA (256u << 10) /* the largest chunk laid before the guard */

/* ---------------------------------------------------------------------- */
/* Harness                                                                */
/* ---------------------------------------------------------------------- */

static char *guard_end;         /* the first byte of the PROT_NONE page */

static int setup_guard(void **state)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, GUARD_AREA + page, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)state;
	if (m == MAP_FAILED || mprotect(m + GUARD_AREA, page, PROT_NONE))
		return -1;
	guard_end = m + GUARD_AREA;
	return 0;
}

/* Feed a chunk laid so that its last byte is the last readable one. */
static int feed_guarded(rh_usage_parser *p, const char *data, size_t len)
{
	char *dst = guard_end - len;

	assert_true(len <= GUARD_AREA);
	memmove(dst, data, len);
	return rh_usage_feed(p, dst, len);
}

/* ' -> " (see the top of the file), into a buffer the caller frees. */
static char *q(const char *s)
{
	char *d = strdup(s), *c;

	assert_non_null(d);
	for (c = d; *c; c++)
		if (*c == '\'')
			*c = '"';
	return d;
}

typedef struct result {
	int rc;
	uint64_t off;           /* err_offset, when rc is an error */
	rh_usage u;
} result;

/* Scan body fed in pieces ending at cuts[0..ncuts) (then the rest). */
static result scan_cuts(int sse, const char *body, size_t n, const size_t *cuts, int ncuts)
{
	rh_usage_parser p;
	result r;
	size_t at = 0;
	int i;

	memset(&r, 0, sizeof r);
	rh_usage_init(&p, sse);
	for (i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n;

		feed_guarded(&p, body + at, end - at);
		at = end;
	}
	r.rc = rh_usage_finish(&p, &r.u);
	r.off = r.rc ? p.err_offset : 0;
	return r;
}

static void describe(const char *what, const result *r, char *buf, size_t size)
{
	snprintf(buf, size, "%s: rc %d off %llu in %d:%llu out %d:%llu total %d:%llu", what,
	         r->rc, (unsigned long long)r->off, r->u.have_input,
	         (unsigned long long)r->u.input, r->u.have_output, (unsigned long long)r->u.output,
	         r->u.have_total, (unsigned long long)r->u.total);
}

static void expect_same(const char *name, const char *how, const result *got, const result *want)
{
	char g[256], w[256];

	if (!memcmp(got, want, sizeof *got))
		return;
	describe("got", got, g, sizeof g);
	describe("want", want, w, sizeof w);
	fail_msg("%s (%s): %s; %s", name, how, g, w);
}

/*
 * Scan whole, byte by byte, at every split into two and (bodies up to
 * three_max bytes) every split into three; every way must agree.
 * Returns the result of the whole body.
 */
static result scan_every_way(const char *name, int sse, const char *body, size_t n,
                             size_t three_max)
{
	result whole = scan_cuts(sse, body, n, NULL, 0), r;
	rh_usage_parser p;
	size_t cut[2];

	memset(&r, 0, sizeof r);
	rh_usage_init(&p, sse);
	for (cut[0] = 0; cut[0] < n; cut[0]++)
		feed_guarded(&p, body + cut[0], 1);
	r.rc = rh_usage_finish(&p, &r.u);
	r.off = r.rc ? p.err_offset : 0;
	expect_same(name, "byte by byte", &r, &whole);
	for (cut[0] = 0; cut[0] <= n; cut[0]++) {
		r = scan_cuts(sse, body, n, cut, 1);
		expect_same(name, "two chunks", &r, &whole);
		for (cut[1] = cut[0]; n <= three_max && cut[1] <= n; cut[1]++) {
			r = scan_cuts(sse, body, n, cut, 2);
			expect_same(name, "three chunks", &r, &whole);
		}
	}
	return whole;
}

/* In an expectation: this count is absent ("NONE" in ASCII; no test counts that many). */
#define NONE UINT64_C(0x4e4f4e45)

static result want(int rc, uint64_t in, uint64_t out, uint64_t total)
{
	result r;

	memset(&r, 0, sizeof r);
	r.rc = rc;
	r.u.have_input = in != NONE;
	r.u.input = in != NONE ? in : 0;
	r.u.have_output = out != NONE;
	r.u.output = out != NONE ? out : 0;
	r.u.have_total = total != NONE;
	r.u.total = total != NONE ? total : 0;
	return r;
}

/* The body (in ' notation) scanned every way gives want (offset aside). */
static void check(const char *name, int sse, const char *body, result w)
{
	char *b = q(body);
	result r = scan_every_way(name, sse, b, strlen(b), 0);

	w.off = r.rc ? r.off : 0;
	expect_same(name, "whole", &r, &w);
	free(b);
}

/* Same, also checking where the error is. */
static void check_at(const char *name, int sse, const char *body, result w, uint64_t off)
{
	char *b = q(body);
	result r = scan_every_way(name, sse, b, strlen(b), 0);

	w.off = off;
	expect_same(name, "whole", &r, &w);
	free(b);
}

/* ---------------------------------------------------------------------- */
/* Recorded-style vectors                                                 */
/* ---------------------------------------------------------------------- */

typedef struct vector {
	const char *name;
	int sse;
	const char *body;
	uint64_t in, out, total;  /* NONE: absent */
} vector;

static const vector vectors[] = {
	{ "openai chat", 0,
	  "{'id':'chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG','object':'chat.completion',"
	  "'created':1741570283,'model':'gpt-4o-2024-08-06','choices':[{'index':0,"
	  "'message':{'role':'assistant','content':'The word \\'usage\\' as JSON: "
	  "{\\'usage\\':{\\'total_tokens\\':1}}','refusal':null,'annotations':[]},"
	  "'logprobs':null,'finish_reason':'stop'}],'usage':{'prompt_tokens':1117,"
	  "'completion_tokens':46,'total_tokens':1163,'prompt_tokens_details':"
	  "{'cached_tokens':0,'audio_tokens':0},'completion_tokens_details':"
	  "{'reasoning_tokens':0,'audio_tokens':0,'accepted_prediction_tokens':0,"
	  "'rejected_prediction_tokens':0}},'service_tier':'default',"
	  "'system_fingerprint':'fp_fc9f1d7035'}\n",
	  1117, 46, 1163 },
	{ "openai chat stream, include_usage", 1,
	  "data: {'id':'chatcmpl-1','object':'chat.completion.chunk','created':1,'model':"
	  "'gpt-4o-mini','system_fingerprint':'fp_1','choices':[{'index':0,'delta':{'role':"
	  "'assistant','content':'','refusal':null},'logprobs':null,'finish_reason':null}],"
	  "'usage':null}\n\n"
	  "data: {'id':'chatcmpl-1','object':'chat.completion.chunk','created':1,'model':"
	  "'gpt-4o-mini','choices':[{'index':0,'delta':{'content':'usage: {\\'total_tokens\\':"
	  " 5}'},'logprobs':null,'finish_reason':null}],'usage':null}\n\n"
	  "data: {'id':'chatcmpl-1','object':'chat.completion.chunk','created':1,'model':"
	  "'gpt-4o-mini','choices':[{'index':0,'delta':{},'logprobs':null,'finish_reason':"
	  "'stop'}],'usage':null}\n\n"
	  "data: {'id':'chatcmpl-1','object':'chat.completion.chunk','created':1,'model':"
	  "'gpt-4o-mini','choices':[],'usage':{'prompt_tokens':9,'completion_tokens':9,"
	  "'total_tokens':18,'prompt_tokens_details':{'cached_tokens':0},"
	  "'completion_tokens_details':{'reasoning_tokens':0}}}\n\n"
	  "data: [DONE]\n\n",
	  9, 9, 18 },
	{ "openai chat stream, no usage asked", 1,
	  "data: {'id':'chatcmpl-2','object':'chat.completion.chunk','created':1,'model':"
	  "'gpt-4o-mini','choices':[{'index':0,'delta':{'role':'assistant','content':''},"
	  "'finish_reason':null}]}\n\n"
	  "data: {'id':'chatcmpl-2','object':'chat.completion.chunk','created':1,'model':"
	  "'gpt-4o-mini','choices':[{'index':0,'delta':{'content':'{\\'usage\\':{\\'prompt_tokens"
	  "\\':3}}'},'finish_reason':null}]}\n\n"
	  "data: {'id':'chatcmpl-2','object':'chat.completion.chunk','created':1,'model':"
	  "'gpt-4o-mini','choices':[{'index':0,'delta':{},'finish_reason':'stop'}]}\n\n"
	  "data: [DONE]\n\n",
	  NONE, NONE, NONE },
	{ "openai responses", 0,
	  "{'id':'resp_67ccd2bed1ec8190b14f964abc054267','object':'response','created_at':"
	  "1741476542,'status':'completed','error':null,'model':'gpt-4.1-2025-04-14','output':"
	  "[{'type':'message','id':'msg_1','status':'completed','role':'assistant','content':"
	  "[{'type':'output_text','text':'In a peaceful grove beneath a silver moon...',"
	  "'annotations':[]}]}],'parallel_tool_calls':true,'temperature':1.0,'tool_choice':"
	  "'auto','tools':[],'top_p':1.0,'usage':{'input_tokens':36,'input_tokens_details':"
	  "{'cached_tokens':0},'output_tokens':87,'output_tokens_details':{'reasoning_tokens':"
	  "0},'total_tokens':123},'user':null,'metadata':{}}",
	  36, 87, 123 },
	{ "openai responses stream", 1,
	  "event: response.created\n"
	  "data: {'type':'response.created','sequence_number':0,'response':{'id':'resp_1',"
	  "'object':'response','status':'in_progress','output':[],'usage':null}}\n\n"
	  "event: response.output_text.delta\n"
	  "data: {'type':'response.output_text.delta','sequence_number':4,'item_id':'msg_1',"
	  "'output_index':0,'content_index':0,'delta':'Hi'}\n\n"
	  "event: response.completed\n"
	  "data: {'type':'response.completed','sequence_number':9,'response':{'id':'resp_1',"
	  "'object':'response','status':'completed','output':[{'type':'message','content':"
	  "[{'type':'output_text','text':'Hi'}]}],'usage':{'input_tokens':37,"
	  "'input_tokens_details':{'cached_tokens':0},'output_tokens':11,"
	  "'output_tokens_details':{'reasoning_tokens':0},'total_tokens':48}}}\n\n",
	  37, 11, 48 },
	{ "openai embeddings", 0,
	  "{\n  'object': 'list',\n  'data': [\n    {\n      'object': 'embedding',\n"
	  "      'index': 0,\n      'embedding': [-0.006929283, -0.005336422, 1.5e-3, 0, 2E+2]\n"
	  "    }\n  ],\n  'model': 'text-embedding-3-small',\n  'usage': {\n"
	  "    'prompt_tokens': 5,\n    'total_tokens': 5\n  }\n}\n",
	  5, NONE, 5 },
	{ "anthropic messages", 0,
	  "{'id':'msg_01XFDUDYJgAACzvnptvVoYEL','type':'message','role':'assistant','model':"
	  "'claude-sonnet-4-20250514','content':[{'type':'text','text':'Here is JSON: "
	  "{\\'usage\\': {\\'input_tokens\\': 999}} \\\\'},{'type':'tool_use','id':'toolu_1',"
	  "'name':'record','input':{'usage':{'input_tokens':777,'output_tokens':777}}}],"
	  "'stop_reason':'end_turn','stop_sequence':null,'usage':{'input_tokens':2095,"
	  "'cache_creation_input_tokens':0,'cache_read_input_tokens':0,'output_tokens':503,"
	  "'service_tier':'standard'}}",
	  2095, 503, 2598 },
	{ "anthropic messages stream", 1,
	  "event: message_start\n"
	  "data: {'type':'message_start','message':{'id':'msg_1','type':'message','role':"
	  "'assistant','content':[],'model':'claude-sonnet-4-20250514','stop_reason':null,"
	  "'stop_sequence':null,'usage':{'input_tokens':472,'cache_creation_input_tokens':0,"
	  "'cache_read_input_tokens':0,'output_tokens':2}}}\n\n"
	  "event: content_block_start\n"
	  "data: {'type':'content_block_start','index':0,'content_block':{'type':'text',"
	  "'text':''}}\n\n"
	  "event: ping\n"
	  "data: {'type': 'ping'}\n\n"
	  "event: content_block_delta\n"
	  "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
	  "'usage\\': {\\'output_tokens\\': 5000}'}}\n\n"
	  "event: message_delta\n"
	  "data: {'type':'message_delta','delta':{'stop_reason':null},'usage':"
	  "{'output_tokens':10}}\n\n"
	  "event: content_block_stop\n"
	  "data: {'type':'content_block_stop','index':0}\n\n"
	  "event: message_delta\n"
	  "data: {'type':'message_delta','delta':{'stop_reason':'end_turn','stop_sequence':"
	  "null},'usage':{'output_tokens':15}}\n\n"
	  "event: message_stop\n"
	  "data: {'type':'message_stop'}\n\n",
	  472, 15, 487 },
	{ "azure openai chat", 0,
	  "{'choices':[{'content_filter_results':{'hate':{'filtered':false,'severity':'safe'},"
	  "'self_harm':{'filtered':false,'severity':'safe'}},'finish_reason':'stop','index':0,"
	  "'message':{'content':'Hello!','role':'assistant'}}],'created':1724000000,'id':"
	  "'chatcmpl-9x','model':'gpt-4o-2024-05-13','object':'chat.completion',"
	  "'prompt_filter_results':[{'prompt_index':0,'content_filter_results':{'hate':"
	  "{'filtered':false,'severity':'safe'}}}],'system_fingerprint':'fp_1','usage':"
	  "{'completion_tokens':7,'prompt_tokens':13,'total_tokens':20}}",
	  13, 7, 20 },
	{ "azure openai chat stream, CRLF, comments", 1,
	  ": keep-alive\r\n\r\n"
	  "data: {'choices':[],'created':0,'id':'','model':'','object':'',"
	  "'prompt_filter_results':[{'prompt_index':0,'content_filter_results':{}}]}\r\n\r\n"
	  "data: {'choices':[{'delta':{'content':'Hi'},'finish_reason':null,'index':0}],"
	  "'created':1,'id':'chatcmpl-9y','model':'gpt-4o','object':'chat.completion.chunk'}"
	  "\r\n\r\n"
	  "data: {'choices':[],'created':1,'id':'chatcmpl-9y','model':'gpt-4o','object':"
	  "'chat.completion.chunk','usage':{'completion_tokens':2,'prompt_tokens':8,"
	  "'total_tokens':10}}\r\n\r\n"
	  "data: [DONE]\r\n\r\n",
	  8, 2, 10 },
	{ "anthropic stream, CR line ends", 1,
	  "event: message_start\rdata: {'type':'message_start','message':{'usage':"
	  "{'input_tokens':12,'output_tokens':1}}}\r\r"
	  "event: message_delta\rdata: {'type':'message_delta','usage':{'output_tokens':30}}\r\r",
	  12, 30, 42 },
	{ "one event over three data lines", 1,
	  "data: {'usage':\ndata: {'input_tokens':3,\ndata:'output_tokens':4}}\n\n",
	  3, 4, 7 },
};

static void test_vectors_every_way(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const vector *v = &vectors[i];
		char *b = q(v->body);
		result r = scan_every_way(v->name, v->sse, b, strlen(b), 400);
		result w = want(0, v->in, v->out, v->total);

		expect_same(v->name, "whole", &r, &w);
		free(b);
	}
}

/* JSON mode: what was found before the error comes back with it. */
static void test_json_errors(void **state)
{
	(void)state;
	check_at("truncated", 0, "{'usage':{'input_tokens':12,'output_tokens':3",
	         want(RH_USAGE_ETRUNCATED, 12, NONE, NONE), 45);
	check_at("truncated in a string", 0, "{'usage':{'input_tokens':12},'x':'abc",
	         want(RH_USAGE_ETRUNCATED, 12, NONE, NONE), 37);
	check_at("empty", 0, "", want(RH_USAGE_ETRUNCATED, NONE, NONE, NONE), 0);
	check_at("blank", 0, " \n\t\r ", want(RH_USAGE_ETRUNCATED, NONE, NONE, NONE), 5);
	check_at("after the document", 0, "{'usage':{'total_tokens':5}} x",
	         want(RH_USAGE_ESYNTAX, NONE, NONE, 5), 29);
	check_at("two documents", 0, "{'usage':{'total_tokens':5}}{}",
	         want(RH_USAGE_ESYNTAX, NONE, NONE, 5), 28);
	check_at("html error page", 0, "<html>502 Bad Gateway</html>",
	         want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 0);
	check_at("raw newline in a string", 0, "{'usage':{'input_tokens':1},'t':'a\nb'}",
	         want(RH_USAGE_ESYNTAX, 1, NONE, NONE), 34);
	check_at("bad escape", 0, "{'a':'\\x','usage':{'input_tokens':1}}",
	         want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 7);
	check_at("bad \\u", 0, "{'a':'\\u12G4'}", want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 10);
	check_at("leading zero", 0, "{'usage':{'input_tokens':012}}",
	         want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 26);
	check_at("bad literal", 0, "{'usage':nul1}", want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 12);
	check_at("cut literal", 0, "{'usage':{'input_tokens':2},'a':tru",
	         want(RH_USAGE_ETRUNCATED, 2, NONE, NONE), 35);
	check_at("mismatched closer", 0, "{'a':[1}", want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 7);
	check_at("trailing comma", 0, "{'usage':{'input_tokens':2,}}",
	         want(RH_USAGE_ESYNTAX, 2, NONE, NONE), 27);
	check_at("missing colon", 0, "{'usage' {}}", want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 9);
	check_at("lone minus", 0, "[-]", want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 2);
	check_at("dot without digits", 0, "[1.]", want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 3);
	check_at("exponent without digits", 0, "[1e+]",
	         want(RH_USAGE_ESYNTAX, NONE, NONE, NONE), 4);
	/* Valid documents without a usage object. */
	check("array", 0, "[1,{'usage':{'total_tokens':3}}]", want(0, NONE, NONE, NONE));
	check("number", 0, " 42 ", want(0, NONE, NONE, NONE));
	check("string", 0, "'usage'", want(0, NONE, NONE, NONE));
	check("usage null", 0, "{'usage':null}", want(0, NONE, NONE, NONE));
	/* SSE mode has no syntax error: the bad event is ignored. */
	check("sse html", 1, "<html>502</html>\n\n", want(0, NONE, NONE, NONE));
}

static void test_sticky_and_misuse(void **state)
{
	rh_usage_parser p;
	rh_usage u;
	char *b = q("{'usage':{'total_tokens':5}} x {'usage':{'total_tokens':6}}");
	int rc;

	(void)state;
	rh_usage_init(&p, 0);
	assert_int_equal(feed_guarded(&p, b, 30), RH_USAGE_ESYNTAX);
	assert_int_equal(p.err_offset, 29);
	assert_int_equal(feed_guarded(&p, b + 30, strlen(b) - 30), RH_USAGE_ESYNTAX);
	assert_int_equal(p.err_offset, 29);
	assert_int_equal(rh_usage_finish(&p, &u), RH_USAGE_ESYNTAX);
	assert_int_equal(u.total, 5);
	/* init clears it all */
	rh_usage_init(&p, 0);
	assert_int_equal(feed_guarded(&p, b, 28), 0);
	assert_int_equal(rh_usage_feed(&p, guard_end, 0), 0);   /* reads nothing */
	assert_int_equal(rh_usage_feed(&p, NULL, 0), 0);
	assert_int_equal(rh_usage_finish(&p, NULL), RH_USAGE_EINVAL);
	assert_int_equal(rh_usage_finish(&p, &u), 0);
	assert_int_equal(rh_usage_finish(&p, &u), 0);           /* again: the same */
	assert_int_equal(u.total, 5);
	assert_int_equal(rh_usage_feed(&p, " ", 1), RH_USAGE_EFINISHED);
	assert_int_equal(rh_usage_finish(&p, &u), RH_USAGE_EFINISHED);
	assert_int_equal(u.total, 5);
	rh_usage_init(&p, 1);
	assert_int_equal(rh_usage_feed(&p, NULL, 3), RH_USAGE_EINVAL);
	rc = rh_usage_feed(&p, "data: {}\n\n", 10);
	assert_int_equal(rc, RH_USAGE_EINVAL);
	free(b);
}

static void test_strerror(void **state)
{
	const char *seen[RH_USAGE_ERR_BASE - RH_USAGE_ERR_LAST];
	int code, i;

	(void)state;
	for (code = RH_USAGE_ERR_BASE; code > RH_USAGE_ERR_LAST; code--) {
		const char *s = rh_usage_strerror(code);

		assert_non_null(s);
		assert_null(strstr(s, "unknown"));
		for (i = 0; i < RH_USAGE_ERR_BASE - code; i++)
			assert_string_not_equal(seen[i], s);
		seen[RH_USAGE_ERR_BASE - code] = s;
	}
	assert_string_equal(rh_usage_strerror(RH_USAGE_ESYNTAX), "response body is not valid JSON");
	assert_non_null(strstr(rh_usage_strerror(RH_USAGE_ERR_LAST), "unknown"));
	assert_non_null(strstr(rh_usage_strerror(-1), "unknown"));
	assert_string_equal(rh_usage_strerror(0), "success");
}

/* ---------------------------------------------------------------------- */
/* Where "usage" must not count                                           */
/* ---------------------------------------------------------------------- */

static void test_usage_in_strings_and_elsewhere(void **state)
{
	static const char *const none[] = {
		"{'content':'{\\'usage\\':{\\'prompt_tokens\\':5}}'}",
		"{'text':'\\u0022usage\\u0022:{\\u0022input_tokens\\u0022:5}'}",
		"{'a':'\\\\\\',\\'usage\\':{\\'total_tokens\\':5}}'}",
		("{'tool_calls':[{'function':{'name':'f','arguments':"
		 "'{\\'usage\\':{\\'total_tokens\\':7}}'}}]}"),
		"{'choices':[{'message':{'usage':{'total_tokens':7}}}]}",
		"{'data':{'usage':{'total_tokens':7}}}",
		"{'message':{'content':[{'usage':{'input_tokens':7}}]}}",
		"{'content':[{'type':'tool_use','input':{'usage':{'input_tokens':7}}}]}",
		"{'usage':{'details':{'total_tokens':7}}}",
		"{'message':{'usage':{'details':{'total_tokens':7}}}}",
		"{'response':{'usage':{'input_tokens_details':{'cached_tokens':1,'input_tokens':7}}}}",
		"{'a':{'b':{'c':{'d':1},'total_tokens':7}}}",
		"{'message':{'x':{'y':{'z':1}},'total_tokens':7}}",
		"{'usage':[{'total_tokens':7}]}",
		"{'usage':{'total_tokens':[7]}}",
		"{'x':{'message':{'usage':{'input_tokens':7}}}}",
		"{'message':{'message':{'usage':{'input_tokens':7}}}}",
		"{'response':{'response':{'usage':{'input_tokens':7}}}}",
		"{'message':{'input_tokens':7}}",
		"{'input_tokens':7,'total_tokens':7}",
		"{'usage\\'':{'total_tokens':7}}",
		"{'\\'usage':{'total_tokens':7}}",
		"{'usage\\u0000':{'total_tokens':7}}",
		"{'Usage':{'total_tokens':7}}",
		"{'usage ':{'total_tokens':7}}",
		"{'usage':{'total_tokens':'7'}}",
		"{'usage':{'total_tokens':true,'input_tokens':null}}",
		"{'usage':{'total_tokens':-7,'input_tokens':7.0,'output_tokens':7e0}}",
		"{'usage':{'total_tokens':-0,'input_tokens':0.5,'output_tokens':1E+2}}",
		"[{'usage':{'total_tokens':7}}]",
		"'{\\'usage\\':{\\'total_tokens\\':7}}'",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof none / sizeof none[0]; i++) {
		char sse[512];

		check(none[i], 0, none[i], want(0, NONE, NONE, NONE));
		snprintf(sse, sizeof sse, "data: %s\n\n", none[i]);
		check(sse, 1, sse, want(0, NONE, NONE, NONE));
	}
}

/* Escapes before and inside keys: JSON's meaning decides. */
static void test_escapes(void **state)
{
	(void)state;
	check("backslash ends the string", 0, "{'a':'\\\\','usage':{'input_tokens':5}}",
	      want(0, 5, NONE, NONE));
	check("escaped quote then backslash", 0, "{'a':'\\'\\\\','usage':{'input_tokens':5}}",
	      want(0, 5, NONE, NONE));
	check("key with \\\\ before", 0, "{'\\\\':1,'usage':{'input_tokens':5}}",
	      want(0, 5, NONE, NONE));
	check("escaped key", 0, "{'us\\u0061ge':{'total\\u005ftokens':7}}",
	      want(0, NONE, NONE, 7));
	check("escaped key, upper hex", 0, "{'\\u0075SAGE':{'total_tokens':7},"
	      "'\\u0075\\u0073\\u0061\\u0067\\u0065':{'input_tokens':8}}",
	      want(0, 8, NONE, NONE));
	check("\\/ in a key", 0, "{'usage':{'input\\/tokens':3,'input_tokens':4}}",
	      want(0, 4, NONE, NONE));
	check("non-ASCII escape", 0, "{'usag\\u00e9':{'total_tokens':7}}",
	      want(0, NONE, NONE, NONE));
	check("\\u0022 in a key", 0, "{'\\u0022usage\\u0022':{'total_tokens':7}}",
	      want(0, NONE, NONE, NONE));
}

/* ---------------------------------------------------------------------- */
/* The caps: key scratch, numbers, nesting                                */
/* ---------------------------------------------------------------------- */

/* A key of len bytes that begins with a wanted key's name: never taken. */
static void long_key(char *dst, const char *name, size_t len, int escaped_last)
{
	size_t n = strlen(name);

	memcpy(dst, name, n);
	memset(dst + n, '_', len - n);
	dst[len] = '\0';
	if (escaped_last) {             /* the last byte written as \u005f */
		memcpy(dst + len - 1, "\\u005f", 7);
	}
}

static void test_keys_at_the_cap(void **state)
{
	const size_t lens[] = {
		RH_USAGE_KEY_MAX - 1, RH_USAGE_KEY_MAX, RH_USAGE_KEY_MAX + 1, 10 * RH_USAGE_KEY_MAX,
	};
	char k1[16 * RH_USAGE_KEY_MAX], k2[16 * RH_USAGE_KEY_MAX], body[64 * RH_USAGE_KEY_MAX];
	size_t i;
	int esc;

	(void)state;
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++)
		for (esc = 0; esc <= 1; esc++) {
			long_key(k1, "usage", lens[i], esc);
			long_key(k2, "total_tokens", lens[i], esc);
			snprintf(body, sizeof body, "{'%s':{'total_tokens':1},'usage':{'%s':9,"
			         "'input_tokens':2},'%s':3}", k1, k2, k2);
			check(body, 0, body, want(0, 2, NONE, NONE));
		}
	/* the longest wanted key, and one of exactly the cap */
	check("completion_tokens", 0, "{'usage':{'completion_tokens':4}}", want(0, NONE, 4, NONE));
	long_key(k1, "x", RH_USAGE_KEY_MAX, 0);
	snprintf(body, sizeof body, "{'usage':{'%s':1,'output_tokens':4}}", k1);
	check(body, 0, body, want(0, NONE, 4, NONE));
}

static void test_numbers_at_the_cap(void **state)
{
	char body[1024], digits[201];

	(void)state;
	check("20 digits, UINT64_MAX", 0, "{'usage':{'input_tokens':18446744073709551615}}",
	      want(0, UINT64_MAX, NONE, NONE));
	check_at("20 digits, UINT64_MAX + 1", 0,
	         "{'usage':{'input_tokens':18446744073709551616,'output_tokens':3}}",
	         want(RH_USAGE_ERANGE, NONE, 3, NONE), 25);
	check_at("20 digits, 99...9", 0, "{'usage':{'total_tokens':99999999999999999999}}",
	         want(RH_USAGE_ERANGE, NONE, NONE, NONE), 25);
	check_at("21 digits", 0, "{'usage':{'output_tokens':100000000000000000000,"
	         "'input_tokens':1}}", want(RH_USAGE_ERANGE, 1, NONE, NONE), 26);
	memset(digits, '7', 200);
	digits[200] = '\0';
	snprintf(body, sizeof body, "{'usage':{'input_tokens':1,'total_tokens':%s}}", digits);
	check_at("200 digits", 0, body, want(RH_USAGE_ERANGE, 1, NONE, NONE), 42);
	check("19 digits", 0, "{'usage':{'input_tokens':9999999999999999999}}",
	      want(0, 9999999999999999999u, NONE, NONE));
	check("zero", 0, "{'usage':{'input_tokens':0,'output_tokens':0}}", want(0, 0, 0, 0));
	snprintf(body, sizeof body, "{'big':%s,'f':-%s.5e-%s,'usage':{'total_tokens':1}}",
	         digits, digits, digits);
	check("big numbers elsewhere", 0, body, want(0, NONE, NONE, 1));
	/* input + output does not fit: no total rather than a wrong one */
	check("sum overflows", 0, "{'usage':{'input_tokens':18446744073709551615,"
	      "'output_tokens':1}}", want(0, UINT64_MAX, 1, NONE));
	/* SSE: the event is still taken, the bad count is not */
	check_at("sse overflow", 1, "data: {'usage':{'output_tokens':18446744073709551616,"
	         "'input_tokens':5}}\n\ndata: {'usage':{'output_tokens':6}}\n\n",
	         want(RH_USAGE_ERANGE, 5, 6, 11), 32);
	/* an event ignored for its syntax takes its overflow with it */
	check("sse overflow in a bad event", 1,
	      "data: {'usage':{'output_tokens':18446744073709551616}} x\n\n",
	      want(0, NONE, NONE, NONE));
	/* a number cut by the end of a body is not taken, whole or not */
	check_at("cut number", 0, "{'usage':{'input_tokens':1,'output_tokens':12",
	         want(RH_USAGE_ETRUNCATED, 1, NONE, NONE), 45);
}

/* n arrays or objects nested, their innermost holding inner. */
static size_t nest(char *dst, size_t n, int objs, const char *inner)
{
	size_t len = 0, i;

	for (i = 0; i < n; i++)
		len += (size_t)sprintf(dst + len, "%s", objs ? "{'a':" : "[");
	len += (size_t)sprintf(dst + len, "%s", inner);
	for (i = 0; i < n; i++)
		dst[len++] = objs ? '}' : ']';
	dst[len] = '\0';
	return len;
}

static void test_depth_at_the_cap(void **state)
{
	/* total depths of the deepest container: the root object is depth 1 */
	const size_t depths[] = {
		RH_USAGE_DEPTH_MAX - 1, RH_USAGE_DEPTH_MAX, RH_USAGE_DEPTH_MAX + 1,
		10 * RH_USAGE_DEPTH_MAX,
	};
	static char deep[16 * 10 * RH_USAGE_DEPTH_MAX], body[sizeof deep + 256];
	size_t i;
	int objs;

	(void)state;
	for (i = 0; i < sizeof depths / sizeof depths[0]; i++)
		for (objs = 0; objs <= 1; objs++) {
			/* brackets in a string down there must not count */
			nest(deep, depths[i] - 1, objs, "'][}{\\\\\\'{'");
			snprintf(body, sizeof body, "{'usage':{'input_tokens':1},'deep':%s,"
			         "'usage':{'output_tokens':2}}", deep);
			check(body, 0, body, want(0, 1, 2, 3));
			snprintf(body, sizeof body, "data: {'deep':%s,'usage':{'output_tokens':2}}\n\n"
			         "data: {'usage':{'input_tokens':1}}\n\n", deep);
			check(body, 1, body, want(0, 1, 2, 3));
		}
	/* within the cap a bad closer is an error; beyond it, only counted */
	nest(deep, RH_USAGE_DEPTH_MAX - 2, 0, "[}");
	snprintf(body, sizeof body, "{'d':%s}", deep);
	check(body, 0, body, want(RH_USAGE_ESYNTAX, NONE, NONE, NONE));
	nest(deep, RH_USAGE_DEPTH_MAX - 1, 0, "[}");
	snprintf(body, sizeof body, "{'d':%s,'usage':{'total_tokens':4}}", deep);
	check(body, 0, body, want(0, NONE, NONE, 4));
	/* a usage down there is never taken */
	nest(deep, 10 * RH_USAGE_DEPTH_MAX, 1, "{'usage':{'total_tokens':9}}");
	check("deep usage", 0, deep, want(0, NONE, NONE, NONE));
	/* cut while skimming */
	nest(deep, 10 * RH_USAGE_DEPTH_MAX, 0, "");
	deep[strlen(deep) - 1] = '\0';
	check("cut deep", 0, deep, want(RH_USAGE_ETRUNCATED, NONE, NONE, NONE));
}

/* ---------------------------------------------------------------------- */
/* SSE lines and events                                                   */
/* ---------------------------------------------------------------------- */

static void test_sse_fields(void **state)
{
	(void)state;
	check("no space", 1, "data:{'usage':{'total_tokens':3}}\n\n", want(0, NONE, NONE, 3));
	check("two spaces", 1, "data:  {'usage':{'total_tokens':3}}\n\n", want(0, NONE, NONE, 3));
	check("tab is not the space", 1, "data:\t{'usage':{'total_tokens':3}}\n\n",
	      want(0, NONE, NONE, 3));
	check("'data' without a colon", 1, "data\ndata: {'usage':{'total_tokens':3}}\n\n",
	      want(0, NONE, NONE, 3));
	check("empty data line first", 1, "data:\ndata: {'usage':{'total_tokens':3}}\n\n",
	      want(0, NONE, NONE, 3));
	check("empty data only", 1, "data:\n\ndata\n\n", want(0, NONE, NONE, NONE));
	check("other fields", 1, "datum: {'usage':{'total_tokens':1}}\n\n"
	      "dat: {'usage':{'total_tokens':1}}\n\nData: {'usage':{'total_tokens':1}}\n\n"
	      "data2: {'usage':{'total_tokens':1}}\n\n : {'usage':{'total_tokens':1}}\n\n"
	      "id: 7\nretry: 100\nevent: x\n\n", want(0, NONE, NONE, NONE));
	check("comment", 1, ": data: {'usage':{'total_tokens':1}}\n\n"
	      ":\n:ping\n\n", want(0, NONE, NONE, NONE));
	check("comment inside an event", 1, "data: {'usage':\n: a comment\n"
	      "data: {'total_tokens':5}}\n\n", want(0, NONE, NONE, 5));
	check("event name does not matter", 1, "event: error\n"
	      "data: {'usage':{'total_tokens':2}}\n\n", want(0, NONE, NONE, 2));
	check("[DONE] only", 1, "data: [DONE]\n\n", want(0, NONE, NONE, NONE));
	check("blank lines only", 1, "\n\r\n\r\r\n\n", want(0, NONE, NONE, NONE));
	check("empty", 1, "", want(0, NONE, NONE, NONE));
}

static void test_sse_events(void **state)
{
	(void)state;
	check("bad event ignored, next taken", 1, "data: {'usage':{'total_tokens':5}\n\n"
	      "data: {'usage':{'input_tokens':1}}\n\n", want(0, 1, NONE, NONE));
	check("bad event does not undo", 1, "data: {'usage':{'total_tokens':5}}\n\n"
	      "data: {'usage':{'total_tokens':6}} x\n\n", want(0, NONE, NONE, 5));
	check("two documents in one event", 1, "data: {}\n"
	      "data: {'usage':{'total_tokens':1}}\n\n", want(0, NONE, NONE, NONE));
	check("raw newline joins inside a string", 1, "data: {'t':'a\n"
	      "data: b','usage':{'total_tokens':1}}\n\n", want(0, NONE, NONE, NONE));
	check("interleaved pings", 1, "data: {'type':'message_start','message':{'usage':"
	      "{'input_tokens':3}}}\n\nevent: ping\ndata: ping\n\n: hb\n\n"
	      "data: {'usage':{'output_tokens':4}}\n\n", want(0, 3, 4, 7));
	check("last delta wins", 1, "data: {'usage':{'output_tokens':40}}\n\n"
	      "data: {'usage':{'output_tokens':4}}\n\n", want(0, NONE, 4, NONE));
	check("no final blank line", 1, "data: {'usage':{'total_tokens':4}}",
	      want(0, NONE, NONE, 4));
	check("no final blank line, cut", 1, "data: {'usage':{'total_tokens':4}",
	      want(0, NONE, NONE, NONE));
	check("no final blank line, CR", 1, "data: {'usage':{'total_tokens':4}}\r",
	      want(0, NONE, NONE, 4));
	check("number cut by the event end", 1, "data: {'usage':{'total_tokens':4\n\n",
	      want(0, NONE, NONE, NONE));
	check("top-level number event", 1, "data: 4\n\ndata: {'usage':{'total_tokens':4}}\n\n",
	      want(0, NONE, NONE, 4));
	check("stream without usage", 1, "event: message_start\ndata: {'type':'message_start',"
	      "'message':{'id':'m'}}\n\nevent: message_stop\ndata: {'type':'message_stop'}\n\n",
	      want(0, NONE, NONE, NONE));
}

/* \r\n is one line end even when the chunk ends between the two. */
static void test_crlf_split(void **state)
{
	static const char *const pieces[] = {
		"data: {'usage':{'total_tokens':3}}\r", "\n", "\r", "\n",
		"data: {'usage':{'input_tokens':1}}\r", "\r",
		"data: {'usage':\r", "\ndata: {'output_tokens':2}}\r", "\n\r", "\n",
	};
	rh_usage_parser p;
	rh_usage u;
	size_t i;

	(void)state;
	rh_usage_init(&p, 1);
	for (i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
		char *b = q(pieces[i]);

		assert_int_equal(feed_guarded(&p, b, strlen(b)), 0);
		free(b);
	}
	assert_int_equal(rh_usage_finish(&p, &u), 0);
	assert_true(u.have_input && u.have_output && u.have_total);
	assert_int_equal(u.input, 1);
	assert_int_equal(u.output, 2);
	assert_int_equal(u.total, 3);
	/* "\r" then "\r": two line ends, so the event ends between them */
	check("CR CR", 1, "data: {'usage':\r\rdata: {'total_tokens':3}}\r\r",
	      want(0, NONE, NONE, NONE));
}

/* ---------------------------------------------------------------------- */
/* 10 MiB bodies through the fixed-size struct                            */
/* ---------------------------------------------------------------------- */

/* JSON-escaped text that looks like usage and brackets. */
#define FILLER "usage\\\":{\\\"output_tokens\\\":999} \\\\ [{ \\u0022usage "

/* Feed prefix, BIG bytes of FILLER in 64 KiB chunks, then suffix. */
static int feed_big(rh_usage_parser *p, const char *prefix, const char *suffix)
{
	static char chunk[64 << 10];
	size_t flen = strlen(FILLER), fed = 0, n;
	char *pre = q(prefix), *suf = q(suffix);
	int rc = feed_guarded(p, pre, strlen(pre));

	while (fed < BIG) {
		for (n = 0; n + flen <= sizeof chunk; n += flen)
			memcpy(chunk + n, FILLER, flen);
		rc = rc ? rc : feed_guarded(p, chunk, n);
		fed += n;
	}
	rc = rc ? rc : feed_guarded(p, suf, strlen(suf));
	free(pre);
	free(suf);
	return rc;
}

static void expect_usage(rh_usage_parser *p, result w)
{
	result r;

	memset(&r, 0, sizeof r);
	r.rc = rh_usage_finish(p, &r.u);
	expect_same("10 MiB", "chunks of 64 KiB", &r, &w);
}

static void test_ten_mib(void **state)
{
	static const char small[] = "data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}],"
		"\"usage\":null}\r\n\r\n: pad\n";
	static const char last[] = "data: {\"usage\":{\"prompt_tokens\":1,"
		"\"completion_tokens\":2,\"total_tokens\":3}}\n\n";
	rh_usage_parser p;
	size_t i;

	(void)state;
	assert_true(sizeof(rh_usage_parser) <= 256);
	/* one long JSON document: a long answer */
	rh_usage_init(&p, 0);
	assert_int_equal(feed_big(&p, "{'choices':[{'message':{'content':'",
	                          "'}}],'usage':{'prompt_tokens':10,'completion_tokens':"
	                          "2621440,'total_tokens':2621450}}"), 0);
	expect_usage(&p, want(0, 10, 2621440, 2621450));
	/* one long SSE event: a tool call's arguments, then the usage */
	rh_usage_init(&p, 1);
	assert_int_equal(feed_big(&p, "event: message_start\ndata: {'type':'message_start',"
	                          "'message':{'usage':{'input_tokens':7}}}\n\n"
	                          "data: {'type':'content_block_delta','delta':{'type':"
	                          "'input_json_delta','partial_json':'",
	                          "'}}\n\ndata: {'type':'message_delta','usage':"
	                          "{'output_tokens':99}}\n\n"), 0);
	expect_usage(&p, want(0, 7, 99, 106));
	/* many small events, the last one with the usage */
	rh_usage_init(&p, 1);
	for (i = 0; i < BIG / (sizeof small - 1); i++)
		assert_int_equal(rh_usage_feed(&p, small, sizeof small - 1), 0);
	assert_int_equal(rh_usage_feed(&p, last, sizeof last - 1), 0);
	expect_usage(&p, want(0, 1, 2, 3));
	/* 10 MiB of nesting: skimmed in constant memory */
	rh_usage_init(&p, 0);
	assert_int_equal(rh_usage_feed(&p, "{\"usage\":{\"input_tokens\":1},\"d\":", 32), 0);
	for (i = 0; i < BIG; i++)
		assert_int_equal(rh_usage_feed(&p, "[", 1), 0);
	for (i = 0; i < BIG; i++)
		assert_int_equal(rh_usage_feed(&p, "]", 1), 0);
	assert_int_equal(rh_usage_feed(&p, "}", 1), 0);
	expect_usage(&p, want(0, 1, NONE, NONE));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_every_way),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_sticky_and_misuse),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_usage_in_strings_and_elsewhere),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_keys_at_the_cap),
		cmocka_unit_test(test_numbers_at_the_cap),
		cmocka_unit_test(test_depth_at_the_cap),
		cmocka_unit_test(test_sse_fields),
		cmocka_unit_test(test_sse_events),
		cmocka_unit_test(test_crlf_split),
		cmocka_unit_test(test_ten_mib),
	};

	return cmocka_run_group_tests(tests, setup_guard, NULL);
}
