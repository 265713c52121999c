#!/bin/sh
# test_dashboard.sh - doc/grafana-dashboard.json against the exporter: the
# JSON parsed strictly, the structure Grafana needs to import it (unique
# panel ids, grid positions that fit and do not overlap, every query with
# an expr and a datasource, the template variables), and every metric name
# and label in every query found in what `ratectl metrics` really prints on
# a ledger holding budgets of every kind: plain, capped with a slot held and
# one held by a dead process, in a cooldown, tagged, made from a template,
# shared through a Redis that refuses (degraded) and, when redis-server is
# installed, through a private one on a unix socket.  The PromQL is read
# superficially: brackets balanced, functions known, rate() over counters
# only, label matchers on labels that the metric has.  The check is then
# run on broken copies of the dashboard, each of which it must reject, so
# that it is known to be able to fail.  About 2 s.
# Run as: B=build sh tests/test_dashboard.sh
# DASHBOARD=FILE checks another dashboard (a copy being edited).
set -u
B=${B:-build}
RC=$B/ratectl
DASH=${DASHBOARD:-doc/grafana-dashboard.json}
SRC=tools/cli/metrics.c
T=$(mktemp -d "${TMPDIR:-/tmp}/ratectl-dash.XXXXXX") || exit 1
PIDS=
REDIS_PID=
FAILS=0
export RATECTL_LEDGER="$T/ledger"
export RATECTL_CONFIG="$T/absent.conf"

cleanup() {
	for p in $PIDS $REDIS_PID; do kill -9 "$p" 2>/dev/null; done
	for f in "$T"/kid.*; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; FAILS=$((FAILS + 1)); }
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# r ARGS...: ratectl, bounded; output in $T/out, errors in $T/err, status in S.
r() { timeout 20 "$RC" "$@" >"$T/out" 2>"$T/err"; S=$?; }
ok_r() {
	r "$@"
	[ "$S" -eq 0 ] || { echo "# ratectl $*: status $S"; sed 's/^/#   /' "$T/err"; return 1; }
}
# sample FILE SERIES: the value of one series, e.g. 'ratectl_inflight{budget="capped"}'.
sample() { awk -v s="$2" 'index($0, s " ") == 1 { print $2; exit }' "$1"; }

[ -x "$RC" ] || { echo "not ok - $RC is not built"; exit 1; }
[ -f "$DASH" ] || { echo "not ok - no $DASH"; exit 1; }
PY=$(python3 -c 'import sys; print(sys.executable)') || {
	echo "not ok - python3 is required"; exit 1; }

# ---- a ledger with budgets of every kind -------------------------------------
setup() {
	ok_r set plain --requests 100/s --tokens 100000/min || return 1
	ok_r run plain --tokens 300 --tag chat -- true || return 1
	ok_r run plain --tokens 200 --tag embed -- true || return 1
	ok_r run plain -- true || return 1
	ok_r set cool --requests 10/s || return 1
	ok_r cooldown cool 600s || return 1
	ok_r set user-1 --requests 100/s --origin 'user-*' || return 1
	ok_r set user-2 --requests 100/s --origin 'user-*' || return 1
	ok_r run user-1 --tag batch -- true || return 1
	# Port 1 of the loopback refuses at once: degraded at the first admission.
	ok_r set shdown --requests 10/s --tokens 1000/s || return 1
	ok_r set shdown --shared redis://127.0.0.1:1/0 --hosts 2 || return 1
	ok_r run shdown --timeout 5s -- true
}
check "a ledger with plain, tagged, cooling, template and degraded shared budgets" setup

# capped: two slots held by `run`, then one holder killed: 1 alive, 1 dead.
# Not under timeout(1), whose pid $! would be: the commands' sleep bounds them.
hold() {
	ok_r set capped --requests 100/s --concurrency 3 || return 1
	for i in 1 2; do
		"$RC" run capped -- sh -c 'echo $$ >"$0"; exec sleep 30' "$T/kid.$i" &
		eval "H$i=$!"; PIDS="$PIDS $!"
	done
	i=0
	while [ $i -lt 100 ]; do
		r show capped --json
		[ "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["budget"]["inflight"])' "$T/out")" = 2 ] && break
		sleep 0.05; i=$((i + 1))
	done
	[ $i -lt 100 ] || return 1
	kill -9 "$H1"; wait "$H1" 2>/dev/null
	return 0
}
check "a capped budget with two slots held, then one holder killed" hold

# A shared budget that works: a private redis-server on a unix socket.
SHOK=0
if command -v redis-server >/dev/null 2>&1; then
	SOCK=$T/redis.sock
	redis-server --port 0 --unixsocket "$SOCK" --save '' --appendonly no \
		--dir "$T" >"$T/redis.log" 2>&1 &
	REDIS_PID=$!
	i=0
	while [ ! -S "$SOCK" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	shared_ok() {
		[ -S "$SOCK" ] || return 1
		ok_r set shok --requests 10/s --tokens 1000/s || return 1
		ok_r set shok --shared "unix://$SOCK" --hosts 2 || return 1
		ok_r run shok --timeout 5s -- true
	}
	check "a shared budget through a private redis-server" shared_ok && SHOK=1
else
	echo "ok - a shared budget through a private redis-server # SKIP no redis-server (the degraded one stands for it)"
fi

# Both forms the exporter has: --all (every budget in full, no template
# sums) and the default (template sums and their top N).
r metrics --all; cp "$T/out" "$T/all.prom"
r metrics; cp "$T/out" "$T/top.prom"
v() { sample "$T/all.prom" "$1"; }
check "metrics --all: capped has 1 slot in flight" [ "$(v 'ratectl_inflight{budget="capped"}')" = 1 ]
check "... and 1 held by a dead process" [ "$(v 'ratectl_inflight_dead{budget="capped"}')" = 1 ]
check "... and a cap of 3" [ "$(v 'ratectl_inflight_max{budget="capped"}')" = 3 ]
check "... cool is cooling down" "$PY" -c 'import sys; sys.exit(not 500 < float(sys.argv[1]) <= 600)' \
	"$(v 'ratectl_cooldown_seconds{budget="cool"}')"
check "... plain has its tags counted" [ "$(v 'ratectl_tag_requests_total{budget="plain",tag="chat"}')" = 1 ]
check "... and its tokens estimated" [ "$(v 'ratectl_tokens_estimated_total{budget="plain"}')" = 500 ]
check "... shdown is shared and degraded" [ "$(v 'ratectl_shared_degraded{budget="shdown"}')" = 1 ]
[ $SHOK -eq 0 ] || check "... shok is shared and not degraded" \
	[ "$(v 'ratectl_shared_degraded{budget="shok"}')" = 0 ]
check "metrics: the template summed" [ "$(sample "$T/top.prom" 'ratectl_template_budgets{template="user-*"}')" = 2 ]

# ---- the checker ---------------------------------------------------------------
cat >"$T/dash.py" <<'EOF'
# dash.py DASHBOARD METRICS.C EXPOSITION...: prints "ok - " / "not ok - "
# lines; exits 1 when any is not ok.
import json, re, sys

dash_path, src_path, expos = sys.argv[1], sys.argv[2], sys.argv[3:]
fails = 0
def report(ok, what, why=()):
    global fails
    print(('ok - ' if ok else 'not ok - ') + what)
    for w in list(why)[:10]:
        print('#   ' + w)
    fails += not ok

# The exporter's output: family -> type, family -> label names.
NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
types, labels = {}, {}
for path in expos:
    for line in open(path):
        m = re.match(r'# TYPE (%s) (\w+)$' % NAME, line)
        if m:
            types[m.group(1)] = m.group(2)
            labels.setdefault(m.group(1), set())
        elif line.strip() and not line.startswith('#'):
            m = re.match(r'(%s)(?:\{(.*)\})? \S+$' % NAME, line.rstrip('\n'))
            labels.setdefault(m.group(1), set()).update(
                re.findall(r'([a-zA-Z_]\w*)="(?:\\.|[^"\\])*"', m.group(2) or ''))
src = open(src_path).read()
# The labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {'instance', 'job'}
ALL_LABELS = set().union(*labels.values()) | TARGET_LABELS

FUNCS = {'abs', 'absent', 'absent_over_time', 'avg_over_time', 'ceil', 'changes', 'clamp',
         'clamp_max', 'clamp_min', 'count_over_time', 'delta', 'deriv', 'exp', 'floor',
         'histogram_quantile', 'holt_winters', 'idelta', 'increase', 'irate', 'label_join',
         'label_replace', 'last_over_time', 'ln', 'log2', 'log10', 'max_over_time',
         'min_over_time', 'predict_linear', 'quantile_over_time', 'rate', 'resets', 'round',
         'scalar', 'sgn', 'sort', 'sort_desc', 'sqrt', 'stddev_over_time', 'sum_over_time',
         'time', 'timestamp', 'vector', 'avg', 'bottomk', 'count', 'count_values', 'group',
         'max', 'min', 'quantile', 'stddev', 'stdvar', 'sum', 'topk', 'label_values'}
KEYWORDS = {'and', 'or', 'unless', 'bool', 'offset'}
GROUPING = r'\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)'
COUNTER_FUNCS = {'rate', 'irate', 'increase', 'resets'}
BUILTIN_VARS = {'__rate_interval', '__interval', '__interval_ms', '__range', '__range_s',
                '__range_ms', '__from', '__to', '__name', '__dashboard', '__org', '__user'}

def promql(expr, var_names):
    """Problems of one query; the metric names it uses."""
    bad, used = [], set()
    strs = []
    def keep(m):
        strs.append(m.group(0)[1:-1])
        return '"S%d"' % (len(strs) - 1)
    e = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', keep, expr)
    if re.search(r'["\'`]', re.sub(r'"S\d+"', '', e)):
        bad.append('an unterminated string')
    stack, pairs = [], {')': '(', ']': '[', '}': '{'}
    for ch in e:
        if ch in '([{':
            stack.append(ch)
        elif ch in ')]}':
            if not stack or stack.pop() != pairs[ch]:
                bad.append('unbalanced %r' % ch)
                break
    if stack:
        bad.append('unclosed %r' % stack[-1])
    for v in re.findall(r'\$\{?(\w+)', expr):
        if v not in var_names and v not in BUILTIN_VARS:
            bad.append('variable $%s is not defined' % v)
    # Selectors: every matcher on a label that the metric has.
    for m in re.finditer(r'(%s)?\s*\{([^{}]*)\}' % NAME, e):
        name, body = m.group(1), m.group(2)
        known = (labels.get(name, set()) if name else ALL_LABELS) | TARGET_LABELS
        rest = re.sub(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"S\d+"\s*(,|$)',
                      lambda x: bad.append('%s: label %s is not one it has' % (name, x.group(1)))
                      or '' if x.group(1) not in known else '', body)
        if rest.strip():
            bad.append('%s: a label matcher that does not parse: {%s}' % (name, body))
    for m in re.finditer(GROUPING, e):
        for lab in filter(None, (x.strip() for x in m.group(2).split(','))):
            if lab not in ALL_LABELS:
                bad.append('%s (%s): no metric has the label %s' % (m.group(1), m.group(2), lab))
    # What is left: functions, keywords and metric names.
    for m in re.finditer(r'\b(rate|irate|increase|resets)\s*\(\s*(%s)' % NAME, e):
        if types.get(m.group(2)) != 'counter':
            bad.append('%s(%s): not a counter' % (m.group(1), m.group(2)))
    bare = re.sub(GROUPING, ' ', re.sub(r'\{[^{}]*\}|\[[^\[\]]*\]|"S\d+"', ' ', e))
    for m in re.finditer(r'(?<![\w.$])(%s)(\s*\()?' % NAME, bare):
        word, call = m.group(1), m.group(2)
        if call:
            if word not in FUNCS:
                bad.append('%s(): not a PromQL function' % word)
        elif word in KEYWORDS:
            pass
        else:
            used.add(word)
            if word not in types:
                bad.append('%s: not printed by ratectl metrics' % word)
            if '"%s"' % word not in src and '%s{' % word not in src:
                bad.append('%s: not a family of %s' % (word, src_path))
    return bad, used

# ---- the JSON --------------------------------------------------------------
try:
    with open(dash_path) as f:
        d = json.load(f, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)),
                      object_pairs_hook=lambda kv: (
                          dict(kv) if len({k for k, _ in kv}) == len(kv)
                          else (_ for _ in ()).throw(ValueError('a key repeated: %s' % [k for k, _ in kv]))))
    report(isinstance(d, dict), 'the dashboard is strict JSON, an object, no key repeated')
except ValueError as e:
    report(False, 'the dashboard is strict JSON, an object, no key repeated', [str(e)])
    sys.exit(1)

why = []
for k, t in (('title', str), ('uid', str), ('schemaVersion', int), ('panels', list),
             ('templating', dict), ('time', dict)):
    if not isinstance(d.get(k), t):
        why.append('%s: missing or not %s' % (k, t.__name__))
if isinstance(d.get('schemaVersion'), int) and not 36 <= d['schemaVersion'] <= 39:
    why.append('schemaVersion %s: Grafana 9/10 write 36-39' % d['schemaVersion'])
if d.get('id') is not None:
    why.append('id %r: an importable dashboard has id null' % d.get('id'))
if not re.fullmatch(r'[A-Za-z0-9_-]{1,40}', str(d.get('uid'))):
    why.append('uid %r: at most 40 of [A-Za-z0-9_-]' % d.get('uid'))
report(not why, 'the dashboard has title, uid, schemaVersion 36-39, panels, templating, time', why)
if why:
    sys.exit(1)

# Template variables and datasources.
tvars = d['templating'].get('list', [])
var_names = {v.get('name') for v in tvars}
inputs = {i.get('name') for i in d.get('__inputs', []) if i.get('pluginId') == 'prometheus'}
ds_vars = {v['name'] for v in tvars if v.get('type') == 'datasource' and v.get('query') == 'prometheus'}
why = []
if len(var_names) != len(tvars):
    why.append('a variable name repeated')
if not ds_vars and not inputs:
    why.append('no prometheus datasource variable and no __inputs DS_ for it')
def ds_ok(ref):
    if not isinstance(ref, dict) or ref.get('type') != 'prometheus':
        return False
    m = re.fullmatch(r'\$\{(\w+)\}', str(ref.get('uid')))
    return bool(m) and (m.group(1) in ds_vars or m.group(1) in inputs)
byname = {v.get('name'): v for v in tvars}
for name, metric, label in (('budget', 'ratectl_admitted_total', 'budget'),
                            ('template', 'ratectl_template_', 'template')):
    v = byname.get(name)
    if not v:
        why.append('no variable %s' % name)
        continue
    q = v.get('query')
    q = q.get('query') if isinstance(q, dict) else q
    if not re.fullmatch(r'label_values\(%s\w*(\{[^{}]*\})?,\s*%s\)' % (metric, label), str(q)):
        why.append('%s: query %r, not label_values(%s..., %s)' % (name, q, metric, label))
    if v.get('type') != 'query' or not v.get('multi') or not v.get('includeAll'):
        why.append('%s: not a query variable with multi and include all' % name)
    if not ds_ok(v.get('datasource')):
        why.append('%s: datasource %r' % (name, v.get('datasource')))
report(not why, 'templating: a prometheus datasource, budget and template variables (multi, all)', why)

# Panels: ids, grid, datasources, targets.
flat = []
for p in d['panels']:
    flat.append(p)
    flat.extend(p.get('panels', []) if p.get('type') == 'row' else [])
why = []
ids = [p.get('id') for p in flat]
if any(not isinstance(i, int) or isinstance(i, bool) for i in ids) or len(set(ids)) != len(ids):
    why.append('ids %s: each panel needs its own integer id' % ids)
report(not why, 'every panel has an id of its own (%d panels)' % len(flat), why)

why, boxes = [], []
for p in flat:
    g = p.get('gridPos')
    if not isinstance(g, dict) or any(not isinstance(g.get(k), int) for k in 'hwxy'):
        why.append('panel %s: gridPos %r' % (p.get('id'), g))
        continue
    if not (g['w'] >= 1 and g['h'] >= 1 and g['x'] >= 0 and g['y'] >= 0 and g['x'] + g['w'] <= 24):
        why.append('panel %s: gridPos %r outside the 24 columns' % (p.get('id'), g))
    for q, h in boxes:
        if (g['x'] < h['x'] + h['w'] and h['x'] < g['x'] + g['w'] and
                g['y'] < h['y'] + h['h'] and h['y'] < g['y'] + g['h']):
            why.append('panels %s and %s overlap' % (p.get('id'), q))
    boxes.append((p.get('id'), g))
report(not why, 'every panel has a gridPos within 24 columns, none overlapping', why)

KNOWN_TYPES = {'timeseries', 'stat', 'bargauge', 'gauge', 'table', 'state-timeline',
               'status-history', 'barchart', 'piechart', 'text', 'heatmap'}
why, used, exprs = [], set(), 0
for p in flat:
    pid, ptype = p.get('id'), p.get('type')
    if ptype == 'row':
        if p.get('targets'):
            why.append('row %s has targets' % pid)
        continue
    if ptype not in KNOWN_TYPES:
        why.append('panel %s: type %r' % (pid, ptype))
    if not isinstance(p.get('title'), str) or not p['title']:
        why.append('panel %s: no title' % pid)
    if not ds_ok(p.get('datasource')):
        why.append('panel %s: datasource %r' % (pid, p.get('datasource')))
    ts = p.get('targets')
    if not isinstance(ts, list) or not ts:
        why.append('panel %s: no targets' % pid)
        continue
    refs = [t.get('refId') for t in ts]
    if len(set(refs)) != len(refs) or not all(isinstance(r, str) and r for r in refs):
        why.append('panel %s: refIds %s' % (pid, refs))
    for t in ts:
        if not ds_ok(t.get('datasource', p.get('datasource'))):
            why.append('panel %s %s: datasource %r' % (pid, t.get('refId'), t.get('datasource')))
        if not isinstance(t.get('expr'), str) or not t['expr'].strip():
            why.append('panel %s %s: no expr' % (pid, t.get('refId')))
report(not why, 'every panel but rows has a type, a title, the prometheus datasource and targets '
       'with a refId of their own and an expr', why)

why = []
queries = [('panel %s (%s) %s' % (p['id'], p.get('title'), t.get('refId')), t['expr'])
           for p in flat for t in p.get('targets', []) if isinstance(t.get('expr'), str)]
for v in tvars:
    q = v.get('query')
    q = q.get('query') if isinstance(q, dict) else q
    if v.get('type') == 'query':
        queries.append(('variable %s' % v.get('name'),
                        re.sub(r'^label_values\((.*),\s*\w+\)$', r'\1', str(q))))
for where, expr in queries:
    bad, u = promql(expr, var_names)
    used |= u
    why += ['%s: %s   [%s]' % (where, b, expr) for b in bad]
report(not why and used, 'every query parses (brackets, strings, functions, variables), uses only '
       'families that ratectl metrics prints and %s defines, rate() over counters, '
       'and labels that the families have (%d queries, %d families)'
       % (src_path, len(queries), len(used)), why)

need = ['ratectl_admitted_total', 'ratectl_refused_total', 'ratectl_waited_total',
        'ratectl_tokens_estimated_total', 'ratectl_tokens_actual_total',
        'ratectl_tokens_reconciled_total', 'ratectl_inflight', 'ratectl_inflight_dead',
        'ratectl_cooldown_seconds', 'ratectl_shared_degraded', 'ratectl_tag_requests_total']
missing = [n for n in need if n not in used]
if not any(n.startswith('ratectl_template_') for n in used):
    missing.append('ratectl_template_*')
report(not missing, 'the dashboard shows what issue 15 asks: admitted, refused, waited, tokens, '
       'in flight, cooldowns, degraded hosts, templates, tags', ['missing: %s' % m for m in missing])
unused = sorted(set(types) - used)
if unused:
    print('# families not on the dashboard: ' + ' '.join(unused))
sys.exit(1 if fails else 0)
EOF

"$PY" "$T/dash.py" "$DASH" "$SRC" "$T/all.prom" "$T/top.prom" >"$T/check.out" 2>&1
st=$?
cat "$T/check.out"
check "the dashboard check exits 0" [ $st -eq 0 ]

# Prometheus's own parser, when installed: every query, with Grafana's
# variables given values, as a recording rule that promtool checks.
# rules DASHBOARD: $T/rules.yml (JSON is YAML) from it.
rules() {
	"$PY" -c 'import json, re, sys
d = json.load(open(sys.argv[1]))
flat = [q for p in d["panels"] for q in [p] + p.get("panels", [])]
def fill(e):
    e = e.replace("$__rate_interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", e)
rs = [{"record": "dashboard:q%d" % i, "expr": fill(t["expr"])}
      for i, t in enumerate(t for p in flat for t in p.get("targets", []))]
json.dump({"groups": [{"name": "dashboard", "rules": rs}]}, open(sys.argv[2], "w"), indent=1)' \
		"$1" "$T/rules.yml"
}
if command -v promtool >/dev/null 2>&1; then
	rules "$DASH"
	if timeout 20 promtool check rules "$T/rules.yml" >"$T/promtool.out" 2>&1; then
		pass "promtool parses every query"
	else
		fail "promtool parses every query"; sed 's/^/#   /' "$T/promtool.out"
	fi
	echo '{"panels": [{"targets": [{"expr": "sum(rate(ratectl_admitted_total[1m])"}]}]}' >"$T/bad.json"
	rules "$T/bad.json"
	check "... and rejects an unbalanced one" \
		sh -c '! timeout 20 promtool check rules "$0" >/dev/null 2>&1' "$T/rules.yml"
else
	echo "ok - promtool parses every query # SKIP no promtool (Debian's prometheus package has it)"
fi

# ---- the check can fail: broken copies ---------------------------------------------
# mutate NAME DESCRIPTION EXPECTED PYTHON: a copy of the dashboard changed by
# PYTHON (over d), which the check must reject with a line matching EXPECTED.
mutate() {
	"$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
P = [p for p in d["panels"] if p["type"] != "row"]
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], "w"))' "$DASH" "$T/$1.json" "$4" || { fail "$2 (no copy made)"; return; }
	if "$PY" "$T/dash.py" "$T/$1.json" "$SRC" "$T/all.prom" "$T/top.prom" >"$T/$1.out" 2>&1; then
		fail "$2 (the check passed it)"
	elif grep -q -- "$3" "$T/$1.out"; then
		pass "$2"
	else
		fail "$2 (not for the reason expected: $3)"; sed -n 's/^/#   /; /not ok/,+3p' "$T/$1.out"
	fi
}
rename='
for p in P:
    for t in p["targets"]:
        t["expr"] = t["expr"].replace("ratectl_refused_total", "ratectl_rejected_total")'
mutate renamed "a copy with a metric renamed is rejected" \
	'ratectl_rejected_total: not printed by ratectl metrics' "$rename"
mutate label "... one with a matcher on a label the family lacks" \
	'ratectl_inflight: label bucket is not one it has' \
	'P[3]["targets"][0]["expr"] = P[3]["targets"][0]["expr"].replace("budget=~", "bucket=~")'
mutate paren "... one with an unbalanced parenthesis" "unclosed '('" \
	'P[0]["targets"][0]["expr"] = "sum(" + P[0]["targets"][0]["expr"]'
mutate gauge "... one with rate() over a gauge" 'rate(ratectl_inflight): not a counter' \
	'P[1]["targets"][0]["expr"] = "sum(rate(ratectl_inflight[5m]))"'
mutate func "... one with an unknown function" 'ratez(): not a PromQL function' \
	'P[1]["targets"][0]["expr"] = P[1]["targets"][0]["expr"].replace("rate(", "ratez(")'
mutate dupid "... one with two panels of one id" 'own integer id' 'P[1]["id"] = P[0]["id"]'
mutate overlap "... one with two panels overlapping" 'overlap' 'P[1]["gridPos"]["x"] = 2'
mutate noexpr "... one with a target without expr" 'no expr' 'del P[2]["targets"][0]["expr"]'
mutate var "... one using an undefined variable" 'variable \$bugdet is not defined' \
	'P[2]["targets"][0]["expr"] = P[2]["targets"][0]["expr"].replace("$budget", "$bugdet")'
mutate budgetvar "... one without the budget variable" 'no variable budget' \
	'd["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "budget"]'
printf '{"title": "x", "title": "y"}' >"$T/dupkey.json"
if "$PY" "$T/dash.py" "$T/dupkey.json" "$SRC" "$T/all.prom" >/dev/null 2>&1; then
	fail "... and JSON with a key repeated"
else
	pass "... and JSON with a key repeated"
fi

[ $FAILS -eq 0 ]
