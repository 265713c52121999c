/*
 * usage.c - the incremental usage scanner (the contract is in usage.h).
 *
 * Two layers, each a byte-driven state machine whose whole state lives in
 * rh_usage_parser, so a chunk may end anywhere, even inside an escape or
 * a \r\n:
 *   - an SSE line splitter (sse_*), which hands the bytes of "data" lines
 *     to the JSON layer and marks event boundaries;
 *   - a validating JSON tokenizer (json_*), which keeps a bit per open
 *     container (object or array), the "role" of the top three levels
 *     (document, root object, message/response wrapper, usage object)
 *     and the key being matched; string bodies that are not such keys
 *     stream through without being stored.
 * Nothing is allocated; the only scratch is the key (RH_USAGE_KEY_MAX)
 * and the integer being read (a uint64_t, overflow checked per digit).
 */
#include <string.h>

#include "usage.h"

/* Tokenizer states: what the next byte may be. */
enum {
	J_VALUE,      /* a value (after ':' or ',' in an array, or at the start) */
	J_ARR_FIRST,  /* after '[': a value or ']' */
	J_OBJ_FIRST,  /* after '{': a key or '}' */
	J_KEY,        /* after ',' in an object: a key */
	J_COLON,
	J_AFTER,      /* after a value: ',', a closer, or the end at depth 0 */
	J_STR, J_STR_ESC, J_STR_U,
	J_NUM_MINUS, J_NUM_ZERO, J_NUM_INT, J_NUM_DOT, J_NUM_FRAC,
	J_NUM_E, J_NUM_ESIGN, J_NUM_EXP,
	J_LIT,        /* inside true, false or null */
	J_SKIM, J_SKIM_STR, J_SKIM_ESC, /* deeper than RH_USAGE_DEPTH_MAX */
	J_ERROR       /* not JSON: ignore the rest of this document */
};

/* What an open container is to us; only the top three levels matter. */
enum { R_NONE, R_DOC, R_ROOT, R_WRAP, R_USAGE };

/* The keys that matter; a key not in the table is K_NONE. */
enum { K_NONE, K_USAGE, K_WRAP, K_INPUT, K_OUTPUT, K_TOTAL };

static const struct {
	const char *name;
	uint8_t id;
} keys[] = {
	{ "usage", K_USAGE },
	{ "message", K_WRAP },            /* Anthropic's message_start */
	{ "response", K_WRAP },           /* OpenAI Responses stream events */
	{ "prompt_tokens", K_INPUT },     /* OpenAI chat, embeddings */
	{ "input_tokens", K_INPUT },      /* OpenAI Responses, Anthropic */
	{ "completion_tokens", K_OUTPUT },
	{ "output_tokens", K_OUTPUT },
	{ "total_tokens", K_TOTAL },
};

/* str_key: what the string being read is. */
enum { STR_VALUE, STR_KEY_SKIP, STR_KEY_KEEP };

/* SSE line states. */
enum { S_LINE, S_FIELD, S_VSTART, S_DATA, S_IGNORE };

#define FIELD_DATA 4     /* field_pos when the name so far is exactly "data" */
#define FIELD_OTHER 5    /* field_pos once the name cannot be "data" */

static const char lits[3][6] = { "true", "false", "null" };

static int set_err(rh_usage_parser *p, int code, uint64_t offset)
{
	if (!p->err) {
		p->err = code;
		p->err_offset = offset;
	}
	return p->err;
}

static int is_ws(unsigned c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned c)
{
	return c >= '0' && c <= '9';
}

/* Invalid JSON: fatal in JSON mode, the end of this event in SSE mode. */
static void jfail(rh_usage_parser *p, uint64_t off)
{
	p->jstate = J_ERROR;
	if (!p->sse)
		set_err(p, RH_USAGE_ESYNTAX, off);
}

static unsigned role_at(const rh_usage_parser *p)
{
	return p->depth < sizeof p->role ? p->role[p->depth] : R_NONE;
}

static int top_is_obj(const rh_usage_parser *p)
{
	return p->depth && (p->objs >> (p->depth - 1) & 1);
}

/* Begin a new document (init, and each SSE event). */
static void json_reset(rh_usage_parser *p)
{
	p->jstate = J_VALUE;
	p->depth = 0;
	p->objs = 0;
	p->skim = 0;
	p->key_id = K_NONE;
	memset(p->role, R_NONE, sizeof p->role);
	p->role[0] = R_DOC;
	memset(&p->ev, 0, sizeof p->ev);
	p->ev_range_offset = 0;
}

/* The role of a container opened as the value of the last key read. */
static unsigned child_role(unsigned parent, unsigned key, int obj)
{
	if (!obj)
		return R_NONE;
	if (parent == R_DOC)
		return R_ROOT;
	if (parent == R_ROOT && key == K_WRAP)
		return R_WRAP;
	if ((parent == R_ROOT || parent == R_WRAP) && key == K_USAGE)
		return R_USAGE;
	return R_NONE;
}

static void open_container(rh_usage_parser *p, int obj)
{
	unsigned role = child_role(role_at(p), p->key_id, obj);

	if (p->depth == RH_USAGE_DEPTH_MAX) {
		/* Too deep to hold a usage we take: only find its end. */
		p->skim = 1;
		p->jstate = J_SKIM;
		return;
	}
	p->depth++;
	if (obj)
		p->objs |= (uint64_t)1 << (p->depth - 1);
	if (p->depth < sizeof p->role)
		p->role[p->depth] = (uint8_t)role;
	p->jstate = obj ? J_OBJ_FIRST : J_ARR_FIRST;
}

static void close_container(rh_usage_parser *p, int obj, uint64_t off)
{
	if (!p->depth || top_is_obj(p) != obj) {
		jfail(p, off);
		return;
	}
	p->depth--;
	p->objs &= ~((uint64_t)1 << p->depth);
	p->jstate = J_AFTER;
}

static void key_put(rh_usage_parser *p, unsigned c)
{
	if (p->str_key != STR_KEY_KEEP)
		return;
	if (p->key_len < RH_USAGE_KEY_MAX)
		p->key[p->key_len++] = (char)c;
	else
		p->key_len = RH_USAGE_KEY_MAX + 1;   /* too long: matches nothing */
}

/* A key ended: which one it was, for the value that follows. */
static void key_done(rh_usage_parser *p)
{
	size_t i;

	p->key_id = K_NONE;
	if (p->str_key != STR_KEY_KEEP || p->key_len > RH_USAGE_KEY_MAX)
		return;
	for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strlen(keys[i].name) == p->key_len &&
		    !memcmp(keys[i].name, p->key, p->key_len)) {
			p->key_id = keys[i].id;
			return;
		}
}

static void key_start(rh_usage_parser *p)
{
	/* Keys are kept only where one could matter: the top three levels. */
	p->str_key = role_at(p) >= R_ROOT ? STR_KEY_KEEP : STR_KEY_SKIP;
	p->key_len = 0;
	p->jstate = J_STR;
}

static void num_begin(rh_usage_parser *p, uint64_t off, int is_int, unsigned state)
{
	p->num = 0;
	p->num_over = 0;
	p->num_int = (uint8_t)is_int;
	p->num_offset = off;
	p->jstate = (uint8_t)state;
}

static void num_digit(rh_usage_parser *p, unsigned d)
{
	if (p->num_over)
		return;
	if (p->num > (UINT64_MAX - d) / 10)
		p->num_over = 1;
	else
		p->num = p->num * 10 + d;
}

/* A number ended: take it when it is a count of a usage object. */
static void num_end(rh_usage_parser *p)
{
	rh_usage *u = &p->ev;

	p->jstate = J_AFTER;
	if (role_at(p) != R_USAGE || p->key_id < K_INPUT || !p->num_int)
		return;
	if (p->num_over) {
		if (!p->ev_range_offset)
			p->ev_range_offset = p->num_offset + 1;
		return;
	}
	if (p->key_id == K_INPUT) {
		u->input = p->num;
		u->have_input = 1;
	} else if (p->key_id == K_OUTPUT) {
		u->output = p->num;
		u->have_output = 1;
	} else {
		u->total = p->num;
		u->have_total = 1;
	}
}

static void value_start(rh_usage_parser *p, unsigned c, uint64_t off)
{
	if (c == '{' || c == '[') {
		open_container(p, c == '{');
	} else if (c == '"') {
		p->str_key = STR_VALUE;
		p->jstate = J_STR;
	} else if (c == '-') {
		num_begin(p, off, 0, J_NUM_MINUS);
	} else if (c == '0') {
		num_begin(p, off, 1, J_NUM_ZERO);
	} else if (is_digit(c)) {
		num_begin(p, off, 1, J_NUM_INT);
		num_digit(p, c - '0');
	} else if (c == 't' || c == 'f' || c == 'n') {
		p->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
		p->lit_pos = 1;
		p->jstate = J_LIT;
	} else {
		jfail(p, off);
	}
}

static void after_byte(rh_usage_parser *p, unsigned c, uint64_t off)
{
	if (is_ws(c))
		return;
	if (!p->depth)
		jfail(p, off);          /* something after the document */
	else if (c == ',')
		p->jstate = top_is_obj(p) ? J_KEY : J_VALUE;
	else if (c == '}' || c == ']')
		close_container(p, c == '}', off);
	else
		jfail(p, off);
}

/* Whether c may follow a value: checked before a number is taken, so
 * that "012" or "5x" never gives a count. */
static int ends_value(const rh_usage_parser *p, unsigned c)
{
	if (is_ws(c))
		return 1;
	if (!p->depth)
		return 0;
	return c == ',' || c == (top_is_obj(p) ? '}' : ']');
}

/* Inside a number: JSON's grammar, with the integer kept when plain. */
static void num_byte(rh_usage_parser *p, unsigned c, uint64_t off)
{
	unsigned s = p->jstate;

	if (is_digit(c) && s != J_NUM_ZERO) {
		if (s == J_NUM_INT)
			num_digit(p, c - '0');
		p->jstate = s == J_NUM_MINUS ? (c == '0' ? J_NUM_ZERO : J_NUM_INT) :
		            s == J_NUM_DOT ? J_NUM_FRAC :
		            s == J_NUM_E || s == J_NUM_ESIGN ? J_NUM_EXP : s;
	} else if (c == '.' && (s == J_NUM_ZERO || s == J_NUM_INT)) {
		p->num_int = 0;
		p->jstate = J_NUM_DOT;
	} else if ((c == 'e' || c == 'E') &&
	           (s == J_NUM_ZERO || s == J_NUM_INT || s == J_NUM_FRAC)) {
		p->num_int = 0;
		p->jstate = J_NUM_E;
	} else if ((c == '+' || c == '-') && s == J_NUM_E) {
		p->jstate = J_NUM_ESIGN;
	} else if ((s == J_NUM_ZERO || s == J_NUM_INT || s == J_NUM_FRAC ||
	            s == J_NUM_EXP) && ends_value(p, c)) {
		num_end(p);             /* c ends the number and is read after it */
		after_byte(p, c, off);
	} else {
		jfail(p, off);
	}
}

static int hex_val(unsigned c)
{
	if (is_digit(c))
		return (int)(c - '0');
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : -1;
}

static void str_byte(rh_usage_parser *p, unsigned c, uint64_t off)
{
	if (c == '"') {
		if (p->str_key != STR_VALUE) {
			key_done(p);
			p->jstate = J_COLON;
		} else {
			p->jstate = J_AFTER;
		}
	} else if (c == '\\') {
		p->jstate = J_STR_ESC;
	} else if (c < 0x20) {
		jfail(p, off);          /* control characters must be escaped */
	} else {
		key_put(p, c);
	}
}

/* After a backslash: the escaped byte goes into the key as itself. */
static void esc_byte(rh_usage_parser *p, unsigned c, uint64_t off)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e = c ? memchr(from, (int)c, sizeof from - 1) : NULL;

	if (c == 'u') {
		p->u_count = 0;
		p->u_val = 0;
		p->jstate = J_STR_U;
	} else if (e) {
		key_put(p, (unsigned char)to[e - from]);
		p->jstate = J_STR;
	} else {
		jfail(p, off);
	}
}

static void hex_byte(rh_usage_parser *p, unsigned c, uint64_t off)
{
	int h = hex_val(c);

	if (h < 0) {
		jfail(p, off);
		return;
	}
	p->u_val = (uint16_t)(p->u_val << 4 | (unsigned)h);
	if (++p->u_count == 4) {
		/* Beyond ASCII no wanted key can match: any non-ASCII byte will do. */
		key_put(p, p->u_val < 0x80 ? p->u_val : 0xFF);
		p->jstate = J_STR;
	}
}

static void lit_byte(rh_usage_parser *p, unsigned c, uint64_t off)
{
	if (c != (unsigned char)lits[p->lit][p->lit_pos]) {
		jfail(p, off);
		return;
	}
	if (!lits[p->lit][++p->lit_pos])
		p->jstate = J_AFTER;
}

/* Beyond the depth cap: strings and brackets only, to find the end. */
static void skim_byte(rh_usage_parser *p, unsigned c)
{
	if (p->jstate == J_SKIM_ESC)
		p->jstate = J_SKIM_STR;
	else if (p->jstate == J_SKIM_STR)
		p->jstate = c == '\\' ? J_SKIM_ESC : c == '"' ? J_SKIM : J_SKIM_STR;
	else if (c == '"')
		p->jstate = J_SKIM_STR;
	else if (c == '{' || c == '[')
		p->skim++;
	else if ((c == '}' || c == ']') && !--p->skim)
		p->jstate = J_AFTER;
}

static void json_byte(rh_usage_parser *p, unsigned c, uint64_t off)
{
	unsigned s = p->jstate;

	if (is_ws(c) && (s == J_VALUE || s == J_ARR_FIRST || s == J_OBJ_FIRST ||
	                 s == J_KEY || s == J_COLON))
		return;
	switch (s) {
	case J_ARR_FIRST:
		if (c == ']')
			close_container(p, 0, off);
		else
			value_start(p, c, off);
		break;
	case J_VALUE: value_start(p, c, off); break;
	case J_OBJ_FIRST:
	case J_KEY:
		if (c == '"')
			key_start(p);
		else if (c == '}' && s == J_OBJ_FIRST)
			close_container(p, 1, off);
		else
			jfail(p, off);
		break;
	case J_COLON:
		if (c == ':')
			p->jstate = J_VALUE;
		else
			jfail(p, off);
		break;
	case J_AFTER: after_byte(p, c, off); break;
	case J_STR: str_byte(p, c, off); break;
	case J_STR_ESC: esc_byte(p, c, off); break;
	case J_STR_U: hex_byte(p, c, off); break;
	case J_LIT: lit_byte(p, c, off); break;
	case J_SKIM: case J_SKIM_STR: case J_SKIM_ESC: skim_byte(p, c); break;
	case J_ERROR: break;
	default: num_byte(p, c, off); break;
	}
}

/* Bytes that cannot end a string or start an escape, nor be invalid in it. */
static int str_plain(unsigned c, int skim)
{
	return c != '"' && c != '\\' && (skim || c >= 0x20);
}

static void json_feed(rh_usage_parser *p, const unsigned char *s, size_t n, uint64_t base)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p->jstate == J_ERROR)
			return;
		/* String bodies nobody looks at stream through in a tight loop. */
		if ((p->jstate == J_STR && p->str_key != STR_KEY_KEEP) ||
		    p->jstate == J_SKIM_STR) {
			int skim = p->jstate == J_SKIM_STR;

			while (i < n && str_plain(s[i], skim))
				i++;
			if (i == n)
				return;
		}
		json_byte(p, s[i], base + i);
	}
}

/* End of a document: 1 when it was one complete, valid JSON value. */
static int json_end(rh_usage_parser *p)
{
	unsigned s = p->jstate;

	/* Only a top-level number is known whole at the end; a number in an
	 * unclosed container may have been cut short. */
	if (!p->depth && (s == J_NUM_ZERO || s == J_NUM_INT || s == J_NUM_FRAC ||
	                  s == J_NUM_EXP))
		num_end(p);
	return p->jstate == J_AFTER && !p->depth;
}

/* The document or event is taken: its counts replace the ones found so far. */
static void commit(rh_usage_parser *p)
{
	const rh_usage *e = &p->ev;
	rh_usage *f = &p->found;

	if (e->have_input) {
		f->input = e->input;
		f->have_input = 1;
	}
	if (e->have_output) {
		f->output = e->output;
		f->have_output = 1;
	}
	if (e->have_total) {
		f->total = e->total;
		f->have_total = 1;
	}
	if (p->ev_range_offset && !p->range_err) {
		p->range_err = 1;
		p->range_offset = p->ev_range_offset - 1;
	}
	memset(&p->ev, 0, sizeof p->ev);
	p->ev_range_offset = 0;
}

/* A blank line: the event's data, if any, was one JSON document or nothing. */
static void sse_dispatch(rh_usage_parser *p)
{
	if (!p->ev_data)
		return;
	if (json_end(p))
		commit(p);
	json_reset(p);
	p->ev_data = 0;
}

static void sse_line_end(rh_usage_parser *p, unsigned c)
{
	p->sstate = S_LINE;
	p->cr_pending = c == '\r';   /* a \n right after it, maybe in the next chunk, is the same end */
}

/* A "data" line: its value joins the event's data after a \n. */
static void sse_data_begin(rh_usage_parser *p)
{
	if (p->ev_data)
		json_feed(p, (const unsigned char *)"\n", 1, p->off);
	p->ev_data = 1;
}

/* One byte of a field name (or the byte that ends it). */
static void sse_field_byte(rh_usage_parser *p, unsigned c)
{
	if (c == ':' || c == '\n' || c == '\r') {
		if (p->field_pos == FIELD_DATA)
			sse_data_begin(p);
		if (c == ':')
			p->sstate = p->field_pos == FIELD_DATA ? S_VSTART : S_IGNORE;
		else
			sse_line_end(p, c);  /* "data" alone: an empty value */
	} else if (p->field_pos < FIELD_DATA && c == (unsigned char)"data"[p->field_pos]) {
		p->field_pos++;
	} else {
		p->field_pos = FIELD_OTHER;
	}
}

/* Returns the bytes of s[0..n) consumed (0: the state changed, read c again). */
static size_t sse_step(rh_usage_parser *p, const unsigned char *s, size_t n, uint64_t base)
{
	size_t j = 0;

	switch (p->sstate) {
	case S_LINE:
		if (*s == '\n' || *s == '\r') {
			sse_dispatch(p);
			sse_line_end(p, *s);
		} else if (*s == ':') {
			p->sstate = S_IGNORE;   /* a comment */
		} else {
			p->field_pos = 0;
			p->sstate = S_FIELD;
			return 0;
		}
		return 1;
	case S_FIELD:
		sse_field_byte(p, *s);
		return 1;
	case S_VSTART:
		p->sstate = S_DATA;
		return *s == ' ';
	default:                        /* S_DATA, S_IGNORE: up to the line end */
		while (j < n && s[j] != '\n' && s[j] != '\r')
			j++;
		if (p->sstate == S_DATA)
			json_feed(p, s, j, base);
		if (j < n)
			sse_line_end(p, s[j++]);
		return j;
	}
}

static void sse_feed(rh_usage_parser *p, const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (p->cr_pending) {
			p->cr_pending = 0;
			if (s[i] == '\n') {
				i++;
				continue;
			}
		}
		i += sse_step(p, s + i, n - i, p->off + i);
	}
}

void rh_usage_init(rh_usage_parser *p, int sse)
{
	memset(p, 0, sizeof *p);
	p->sse = sse != 0;
	p->sstate = S_LINE;
	json_reset(p);
}

int rh_usage_feed(rh_usage_parser *p, const char *data, size_t len)
{
	if (p->err)
		return p->err;
	if (p->finished)
		return set_err(p, RH_USAGE_EFINISHED, p->off);
	if (!data && len)
		return set_err(p, RH_USAGE_EINVAL, p->off);
	if (p->sse)
		sse_feed(p, (const unsigned char *)data, len);
	else
		json_feed(p, (const unsigned char *)data, len, p->off);
	p->off += len;
	return p->err;
}

/* The body ended: close the last event or the document. */
static void end_of_body(rh_usage_parser *p)
{
	rh_usage *f = &p->found;

	if (p->sse) {
		/* Lenient on purpose (usage.h): a last event without its blank line. */
		if (p->sstate != S_LINE)
			sse_line_end(p, '\n');
		sse_dispatch(p);
	} else {
		if (!p->err && !json_end(p))
			set_err(p, RH_USAGE_ETRUNCATED, p->off);
		commit(p);              /* what was found before an error counts too */
	}
	if (!f->have_total && f->have_input && f->have_output &&
	    f->input <= UINT64_MAX - f->output) {
		f->total = f->input + f->output;
		f->have_total = 1;
	}
}

int rh_usage_finish(rh_usage_parser *p, rh_usage *out)
{
	if (!out)
		return RH_USAGE_EINVAL;
	if (!p->finished) {
		p->finished = 1;
		end_of_body(p);
	}
	*out = p->found;
	if (p->err)
		return p->err;
	if (p->range_err) {
		p->err_offset = p->range_offset;
		return RH_USAGE_ERANGE;
	}
	return 0;
}

const char *rh_usage_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define RH_USAGE__ERRSTR(name, off, desc) \
	case RH_USAGE_E##name:            \
		return desc;
		RH_USAGE_ERRNO_MAP(RH_USAGE__ERRSTR)
#undef RH_USAGE__ERRSTR
	default:
		return "unknown usage scanner error";
	}
}
