'use strict';
// ratectl.fetch() and the host-wide response cache (ratectl.conf(5)
// `cache`, issue 16), mostly against an inner fetch that answers in
// memory and counts what reaches it (each answer has its own id, so a
// body seen twice came from the cache):
// - a repeated temperature-0 request is sent once; the second answer says
//   X-Ratectl-Cache: hit, has the same body and is not admitted;
// - temperature 0.7 and stream: true are never cached (info.cacheable
//   says so too), nor a non-2xx answer; two API keys never share;
// - concurrent requests for one new entry in one process: one is sent,
//   the others wait for its answer (coalesced), woken at once by its end
//   (not at their next look); a fetch that fails hands over to one waiter;
// - a body cancelled or cut short mid-read is not stored; one read to its
//   end is;
// - cacheStats() counts, cacheClear() empties and resets;
// - across processes (ratectl-fakeprov, counted by GET /stats): a
//   node:cluster of workers asking for one new entry at once is sent
//   once; an answer stored by one process is a hit in the next; a process
//   killed while it fetches is replaced by a waiter of another process,
//   which looks again on its timer (the library gives no descriptor).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

const ratectl = h.ratectl();
const { binding } = require(path.join(h.LIBNODE, 'lib', 'binding'));

const URL_ = 'https://api.example.test/v1/chat/completions';
const body = (extra = {}) => JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 50,
  messages: [{ role: 'user', content: 'Say hello.' }], ...extra });
const T0 = body({ temperature: 0 });
const post = (b = T0, key = 'sk-a') => ({ method: 'POST', body: b,
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });

function setup(t, extra = '') {
  const d = h.tmpdir(t);
  const ledger = path.join(d, 'ledger');
  const configText = '[mock]\nmatch = api.example.test\nrequests = 1000/s\n' +
    `tokens = 1000000/min\nconcurrency = 16\ntimeout = 10s\ncache = 10m\n${extra}`;
  return { configText, ledger, L: () => {
    const L = new ratectl.Ledger(ledger);
    t.after(() => L.close());
    return L;
  } };
}

// An inner fetch answering 200 with JSON usage of 42 tokens and an id of
// its own per answer; calls counts what reached it.  gate(), when set,
// is awaited before answering (the test opens it).
function provider({ status = () => 200 } = {}) {
  const p = { calls: 0, gate: null };
  p.fetch = async () => {
    const n = ++p.calls;
    if (p.gate) await p.gate(n);
    return new Response(JSON.stringify({ id: `answer-${n}`, choices: [],
      usage: { prompt_tokens: 2, completion_tokens: 40, total_tokens: 42 } }),
    { status: status(n), headers: { 'content-type': 'application/json' } });
  };
  return p;
}

const read = async (r) => ({ status: r.status, cache: r.headers.get('x-ratectl-cache'),
  age: r.headers.get('age'), type: r.headers.get('content-type'), text: await r.text() });

test('a repeated temperature-0 request is sent once; the second is a hit with the same body, not admitted', async (t) => {
  const s = setup(t);
  const p = provider();
  const f = ratectl.fetch({ fetch: p.fetch, configText: s.configText, ledger: s.ledger });
  const a = await read(await f(URL_, post()));
  assert.equal(a.cache, null);
  const b = await f(URL_, post());
  assert.equal(b.url, URL_);
  const bb = await read(b);
  const c = await read(await f(URL_, post(body({ messages: [{ content: 'Say hello.', role: 'user' }],
    max_tokens: 50, temperature: 0, model: 'gpt-4o-mini' })))); // the same JSON, keys reordered
  assert.equal(p.calls, 1);
  for (const x of [bb, c]) {
    assert.equal(x.status, 200);
    assert.equal(x.cache, 'hit');
    assert.equal(x.text, a.text);
    assert.match(x.type, /application\/json/);
    assert.match(x.age, /^\d+$/);
  }
  const L = s.L();
  assert.equal(L.budget('mock').counters.admitted, 1, 'a hit is not charged');
  assert.equal(L.budget('mock').inflight, 0);
});

test('temperature 0.7, stream: true and non-2xx answers are never cached', async (t) => {
  const s = setup(t);
  const h_ = binding.httpOpen(null, s.configText, s.ledger, null);
  const cacheable = (b) => {
    const req = binding.begin(h_, 'POST', URL_, ['authorization', 'Bearer sk-a'], b, 0);
    try {
      return binding.info(req).cacheable;
    } finally {
      binding.free(req);
    }
  };
  assert.equal(cacheable(T0), 1);
  assert.equal(cacheable(body({ temperature: 0.7 })), 0);
  assert.equal(cacheable(body({ temperature: 0, stream: true })), 0);
  assert.equal(cacheable(body()), 0, 'no temperature: the provider\'s default is not 0');

  const p = provider();
  const f = ratectl.fetch({ fetch: p.fetch, configText: s.configText, ledger: s.ledger });
  for (const b of [body({ temperature: 0.7 }), body({ temperature: 0, stream: true })]) {
    const before = p.calls;
    const x = await read(await f(URL_, post(b)));
    const y = await read(await f(URL_, post(b)));
    assert.equal(p.calls, before + 2, b);
    assert.equal(x.cache, null);
    assert.equal(y.cache, null);
    assert.notEqual(x.text, y.text);
  }
  const bad = provider({ status: (n) => (n === 1 ? 400 : 200) });
  const g = ratectl.fetch({ fetch: bad.fetch, configText: s.configText, ledger: s.ledger });
  assert.equal((await read(await g(URL_, post()))).status, 400);
  const second = await read(await g(URL_, post()));
  assert.equal(second.status, 200);
  assert.equal(second.cache, null, 'the 400 was stored');
  assert.equal(bad.calls, 2);
  assert.equal(f.cacheStats('mock')[0].entries, 1, 'only the 200');
});

test('two API keys never share an answer', async (t) => {
  const s = setup(t);
  const p = provider();
  const f = ratectl.fetch({ fetch: p.fetch, configText: s.configText, ledger: s.ledger });
  const a = await read(await f(URL_, post(T0, 'sk-a')));
  const b = await read(await f(URL_, post(T0, 'sk-b')));
  assert.equal(p.calls, 2, 'key b was answered with key a\'s answer');
  assert.equal(b.cache, null);
  assert.notEqual(a.text, b.text);
  const a2 = await read(await f(URL_, post(T0, 'sk-a')));
  const b2 = await read(await f(URL_, post(T0, 'sk-b')));
  assert.equal(p.calls, 2);
  assert.deepEqual([a2.cache, a2.text], ['hit', a.text]);
  assert.deepEqual([b2.cache, b2.text], ['hit', b.text]);
});

test('concurrent requests for one new entry in one process: one is sent, the others get its answer', { timeout: 20000 }, async (t) => {
  const s = setup(t);
  const p = provider();
  let open;
  const opened = new Promise((r) => { open = r; });
  p.gate = () => opened;
  const f = ratectl.fetch({ fetch: p.fetch, configText: s.configText, ledger: s.ledger });
  const N = 8;
  let t1 = 0;
  const got = Promise.all(Array.from({ length: N }, () => f(URL_, post()).then(read)))
    .then((x) => { t1 = performance.now(); return x; });
  assert.ok(await h.waitFor(() => p.calls >= 1, 5000));
  await h.sleep(200);             // the others are waiting: none may be sent meanwhile
  assert.equal(p.calls, 1);
  const t0 = performance.now();
  open();
  const all = await got;
  t.diagnostic(`the ${N - 1} waiters had the answer ${(t1 - t0).toFixed(1)} ms after the provider's`);
  assert.equal(p.calls, 1);
  assert.ok(all.every((x) => x.status === 200 && x.text === all[0].text), JSON.stringify(all));
  assert.deepEqual(all.map((x) => x.cache).sort(),
    [...Array(N - 1).fill('coalesced'), null].sort());
  assert.ok(t1 - t0 < 2000, `${t1 - t0} ms`);
  const st = f.cacheStats('mock')[0];
  assert.equal(st.misses, 1);
  assert.equal(st.coalesced, N - 1);
  assert.equal(s.L().budget('mock').counters.admitted, 1);
});

test('waiters of the same process have the answer when the fetch ends, not at their next look', { timeout: 20000 }, async (t) => {
  // The library gives a waiter a time to look again (20 ms) and no
  // descriptor; the end of a fetch in this process polls them at once.
  const s = setup(t);
  const gaps = [];
  for (let round = 0; round < 10; round++) {
    const p = provider();
    let open;
    const opened = new Promise((r) => { open = r; });
    p.gate = () => opened;
    const f = ratectl.fetch({ fetch: p.fetch, configText: s.configText, ledger: s.ledger });
    const b = body({ temperature: 0, seed: round });
    let ended = 0;
    const waiters = [];
    const all = Array.from({ length: 4 }, () => f(URL_, post(b)).then(async (r) => {
      const c = r.headers.get('x-ratectl-cache');
      await r.text();
      if (c === null) ended = performance.now();
      else waiters.push(performance.now());
    }));
    assert.ok(await h.waitFor(() => p.calls === 1, 5000));
    open();
    await Promise.all(all);
    assert.equal(waiters.length, 3);
    gaps.push(Math.max(...waiters) - ended);
  }
  gaps.sort((x, y) => x - y);
  t.diagnostic(`the last waiter answered after the fetch ended: median ${gaps[5].toFixed(2)} ms, ` +
    `max ${gaps[9].toFixed(2)} ms`);
  assert.ok(gaps[5] < 5, `median ${gaps[5]} ms: the waiters were left to their timers`);
});

test('a fetch that fails hands over to one waiter, whose answer the rest get', { timeout: 20000 }, async (t) => {
  const s = setup(t);
  const p = provider({ status: (n) => (n === 1 ? 500 : 200) });
  let open;
  const opened = new Promise((r) => { open = r; });
  p.gate = (n) => (n === 1 ? opened : null);
  const f = ratectl.fetch({ fetch: p.fetch, configText: s.configText, ledger: s.ledger });
  const N = 5;
  const got = Promise.all(Array.from({ length: N }, () => f(URL_, post()).then(read)));
  assert.ok(await h.waitFor(() => p.calls >= 1, 5000));
  open();
  const all = await got;
  assert.equal(p.calls, 2);
  const ok = all.filter((x) => x.status === 200);
  assert.equal(all.filter((x) => x.status === 500).length, 1);
  assert.equal(ok.length, N - 1);
  assert.ok(ok.every((x) => x.text === ok[0].text));
  assert.deepEqual(ok.map((x) => x.cache).sort(), [...Array(N - 2).fill('coalesced'), null].sort());
});

// A body of three chunks, the next given only when asked for; broken:
// an error instead of the last one.
function chunked(p, { broken = false } = {}) {
  return async () => {
    const n = ++p.calls;
    const parts = [`{"id":"answer-${n}",`, '"choices":[],', '"usage":{"total_tokens":42}}']
      .map((x) => new TextEncoder().encode(x));
    let i = 0;
    return new Response(new ReadableStream({
      pull(c) {
        if (broken && i === parts.length - 1) c.error(new TypeError('terminated'));
        else if (i < parts.length) c.enqueue(parts[i++]);
        else c.close();
      },
    }, { highWaterMark: 0 }), { headers: { 'content-type': 'application/json' } });
  };
}

test('a body cancelled or cut short mid-read is not stored; one read to its end is', async (t) => {
  const s = setup(t);
  const p = { calls: 0 };
  const whole = chunked(p);
  const cut = chunked(p, { broken: true });
  let inner = whole;
  const f = ratectl.fetch({ fetch: (...a) => inner(...a), configText: s.configText, ledger: s.ledger });

  const r1 = await f(URL_, post());
  const rd = r1.body.getReader();
  assert.equal((await rd.read()).done, false);
  await rd.cancel('enough');
  assert.equal(f.cacheStats('mock')[0].stores, 0, 'a cancelled body was stored');

  inner = cut;
  const r2 = await f(URL_, post());
  await assert.rejects(r2.text(), /terminated/);
  assert.equal(f.cacheStats('mock')[0].stores, 0, 'a body cut short was stored');

  inner = whole;
  const r3 = await read(await f(URL_, post()));
  assert.equal(r3.cache, null, 'answered from a cancelled or broken body');
  assert.equal(p.calls, 3);
  const r4 = await read(await f(URL_, post()));
  assert.equal(r4.cache, 'hit');
  assert.equal(r4.text, r3.text);
  assert.deepEqual(JSON.parse(r4.text), { id: 'answer-3', choices: [], usage: { total_tokens: 42 } });
  assert.equal(p.calls, 3);
  assert.equal(s.L().budget('mock').inflight, 0);
});

test('cacheStats() counts; cacheClear() empties the cache and resets the counters', async (t) => {
  const s = setup(t);
  const p = provider();
  const f = ratectl.fetch({ fetch: p.fetch, configText: s.configText, ledger: s.ledger });
  assert.deepEqual(f.cacheStats(), [], 'no cache yet');
  const other = body({ temperature: 0, messages: [{ role: 'user', content: 'Bye.' }] });
  for (const b of [T0, T0, T0, other, other]) await read(await f(URL_, post(b)));
  await read(await f(URL_, post(body({ temperature: 0.7 }))));   // not cacheable: not counted
  assert.equal(p.calls, 3);
  const [st] = f.cacheStats();
  t.diagnostic(JSON.stringify(st));
  assert.equal(st.budget, 'mock');
  assert.equal(st.entries, 2);
  assert.ok(st.bytes > 0 && st.bytes < 2 * 4096, `bytes ${st.bytes}`);
  assert.equal(st.hits, 3);
  assert.equal(st.misses, 2);
  assert.equal(st.stores, 2);
  assert.equal(st.coalesced, 0);
  assert.equal(st.evictions, 0);
  assert.equal(st.expired, 0);
  assert.equal(st.tokensSaved, 3 * 42);
  assert.deepEqual(f.cacheStats('mock'), [st]);
  assert.deepEqual(f.cacheStats('nosuch'), []);
  assert.throws(() => f.cacheStats('x'.repeat(65)), (e) => e.code === 'EBADNAME');

  assert.equal(f.cacheClear('nosuch'), 0);
  assert.equal(f.cacheClear(), 2);
  const after = f.cacheStats('mock')[0];
  assert.equal(after.entries, 0);
  assert.equal(after.bytes, 0);
  assert.equal(after.hits, 3, 'counters kept without resetCounters');
  assert.equal((await read(await f(URL_, post()))).cache, null, 'answered after the clear');
  assert.equal(p.calls, 4);
  assert.equal(f.cacheClear('mock', true), 1);
  const zero = f.cacheStats('mock')[0];
  assert.deepEqual({ ...zero, budget: undefined }, { budget: undefined, entries: 0, bytes: 0,
    hits: 0, coalesced: 0, misses: 0, stores: 0, evictions: 0, expired: 0, tokensSaved: 0 });
});

// ---- across processes -------------------------------------------------------

// A node:cluster: WORKERS workers, each asking CONC times at once for
// the same temperature-0 answer when the primary says go (all ready);
// the primary prints one JSON line: every answer's cache header, body
// and ms from go.  Bounded by its own guard.
const CLUSTER = `'use strict';
const cluster = require('node:cluster');
const WORKERS = Number(process.env.WORKERS);
const CONC = Number(process.env.CONC);
if (cluster.isPrimary) {
  const guard = setTimeout(() => { console.error('cluster: not done in time'); process.exit(1); }, 30000);
  const out = [];
  let ready = 0;
  let go = 0;
  for (let i = 0; i < WORKERS; i++) {
    cluster.fork().on('message', (m) => {
      if (m.ready && ++ready === WORKERS) {
        go = Date.now();
        for (const w of Object.values(cluster.workers)) w.send({ go });
      } else if (m.answers) out.push(...m.answers);
    });
  }
  cluster.on('exit', (w, code) => {
    if (code !== 0) process.exitCode = 1;
    if (Object.keys(cluster.workers).length === 0) {
      clearTimeout(guard);
      console.log(JSON.stringify(out));
    }
  });
} else {
  const f = require(process.env.LIBNODE).fetch();
  process.on('message', async ({ go }) => {
    const answers = await Promise.all(Array.from({ length: CONC }, async () => {
      const r = await f(process.env.URL, { method: 'POST', body: process.env.BODY,
        headers: { authorization: 'Bearer sk-cluster', 'content-type': 'application/json' } });
      const text = await r.text();
      return { pid: process.pid, status: r.status, cache: r.headers.get('x-ratectl-cache'),
        text, ms: Date.now() - go };
    }));
    process.send({ answers }, () => process.exit(0));
  });
  process.send({ ready: true });
}
`;

test('a cluster of workers asking at once for one new entry: the provider sees one request', { timeout: 60000 }, async (t) => {
  const tmp = h.tmpdir(t);
  const LATENCY = 1000;
  const fp = await h.FakeProvider.start(tmp, ['--latency', `${LATENCY}ms`], { maxSeconds: 60 });
  t.after(() => fp.stop());
  const config = h.writeConfig(path.join(tmp, 'c.conf'), fp.port, 'fake',
    'requests = 100/s', 'timeout = 20s', 'cache = 10m');
  const ledger = path.join(tmp, 'ledger');
  const script = path.join(tmp, 'cluster.js');
  fs.writeFileSync(script, CLUSTER);
  const WORKERS = 4;
  const CONC = 3;
  const r = await h.runNode(script, [], {
    env: h.env({ WORKERS, CONC, LIBNODE: h.LIBNODE, URL: fp.url + '/v1/chat/completions',
      BODY: body({ temperature: 0 }), RATECTL_CONFIG: config, RATECTL_LEDGER: ledger }),
    timeout: 45000,
  });
  assert.equal(r.code, 0, `cluster exited ${r.code ?? r.signal}: ${r.stderr.slice(-3000)}`);
  const all = JSON.parse(r.stdout.trim().split('\n').pop());
  const st = await fp.stats();
  const slowest = Math.max(...all.map((x) => x.ms));
  t.diagnostic(`provider ${JSON.stringify(st)}; ${all.length} answers, the last ${slowest} ms after go ` +
    `(latency ${LATENCY} ms); ${JSON.stringify(all.map((x) => [x.cache, x.ms]))}`);
  assert.equal(all.length, WORKERS * CONC);
  assert.equal(st.requests, 1, 'the provider was asked more than once');
  assert.ok(all.every((x) => x.status === 200 && x.text === all[0].text));
  assert.equal(all.filter((x) => x.cache === null).length, 1);
  assert.equal(new Set(all.map((x) => x.pid)).size, WORKERS);
  assert.ok(slowest < LATENCY + 3000, `the last answer ${slowest} ms after go`);
  const c = h.show(ledger, 'fake');
  assert.equal(c.counters.admitted, 1);
  assert.equal(c.inflight, 0);
});

// One request through ratectl.fetch() in a process of its own, printing
// its answer as a JSON line (cache header, status, body); with HOLD set,
// "asking" first.
const ONE = `'use strict';
const f = require(process.env.LIBNODE).fetch();
if (process.env.HOLD) console.log('asking');
f(process.env.URL, { method: 'POST', body: process.env.BODY,
  headers: { authorization: 'Bearer sk-one', 'content-type': 'application/json' } })
  .then(async (r) => console.log(JSON.stringify({ status: r.status,
    cache: r.headers.get('x-ratectl-cache'), text: await r.text() })));
`;

async function fakeSetup(t, providerArgs) {
  const tmp = h.tmpdir(t);
  const fp = await h.FakeProvider.start(tmp, providerArgs, { maxSeconds: 60 });
  t.after(() => fp.stop());
  const config = h.writeConfig(path.join(tmp, 'c.conf'), fp.port, 'fake',
    'requests = 100/s', 'timeout = 20s', 'cache = 10m');
  const ledger = path.join(tmp, 'ledger');
  const script = path.join(tmp, 'one.js');
  fs.writeFileSync(script, ONE);
  const env = (extra = {}) => h.env({ LIBNODE: h.LIBNODE, URL: fp.url + '/v1/chat/completions',
    BODY: T0, RATECTL_CONFIG: config, RATECTL_LEDGER: ledger, ...extra });
  return { fp, config, ledger, script, env };
}

test('an answer stored by one process is a hit in the next', { timeout: 30000 }, async (t) => {
  const s = await fakeSetup(t, []);
  const got = [];
  for (let i = 0; i < 3; i++) {
    const r = await h.runNode(s.script, [], { env: s.env(), timeout: 15000 });
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    got.push(JSON.parse(r.stdout.trim()));
  }
  assert.equal((await s.fp.stats()).requests, 1);
  assert.deepEqual(got.map((x) => x.cache), [null, 'hit', 'hit']);
  assert.ok(got.every((x) => x.status === 200 && x.text === got[0].text));
});

test('a process killed while it fetches: a request waiting for its answer fetches in its place', { timeout: 30000 }, async (t) => {
  const LATENCY = 1500;
  const s = await fakeSetup(t, ['--latency', `${LATENCY}ms`]);
  const a = new h.NodeProc(s.script, [], { env: s.env({ HOLD: 1 }), t });
  await a.waitLine(/^asking$/, 10000);
  assert.ok(await h.waitFor(async () => (await s.fp.stats()).in_flight === 1, 5000), 'not sent');
  // This process waits for a's answer, looking again on a timer: the
  // library has no descriptor to watch for another process's fetch.
  const f = ratectl.fetch({ config: s.config, ledger: s.ledger });
  const mine = f(s.fp.url + '/v1/chat/completions', post(T0, 'sk-one')).then(read);
  await h.sleep(300);
  assert.equal((await s.fp.stats()).requests, 1, 'sent while another process fetches it');
  const killed = performance.now();
  a.kill('SIGKILL');
  const got = await mine;
  const ms = performance.now() - killed;
  t.diagnostic(`answered ${ms.toFixed(0)} ms after the kill (provider latency ${LATENCY} ms)`);
  assert.equal(got.status, 200);
  assert.equal(got.cache, null);
  assert.equal((await s.fp.stats()).requests, 2);
  assert.ok(ms < LATENCY + 1500, `${ms} ms`);
  const again = await read(await f(s.fp.url + '/v1/chat/completions', post(T0, 'sk-one')));
  assert.deepEqual([again.cache, again.text], ['hit', got.text]);
});
