'use strict';
// ratectl.fetch() against an inner fetch that answers in memory (no
// network): what it passes through untouched, what it charges (the usage
// of a JSON body and of a streamed one, read in pieces of any size), the
// local 429 of the retry budget, refusals as RatectlError, a 429 teaching
// a cooldown, a response dropped unread (its slot comes back when it is
// collected), and inputs at and past the library's fixed sizes: response
// header values of 1023, 1024, 1025 bytes and 1 MiB, a 1 MiB URL, a
// 16 MiB body, bodies of every kind fetch accepts.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const v8 = require('node:v8');
const vm = require('node:vm');

const ratectl = require(path.join(__dirname, '..', '..', 'lib', 'node'));

const URL_ = 'https://api.example.test/v1/chat/completions';
const BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 100,
  messages: [{ role: 'user', content: 'hi' }] });

function setup(t, extra = '', tokens = '1000000/min') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ratectl-fetch-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  const configText = `[mock]\nmatch = api.example.test\nrequests = 1000/s\n` +
    `tokens = ${tokens}\nconcurrency = 4\n${extra}`;
  const ledger = path.join(d, 'ledger');
  return { configText, ledger, L: () => {
    const L = new ratectl.Ledger(ledger);
    t.after(() => L.close());
    return L;
  } };
}

function json(obj, headers = {}, status = 200) {
  return new Response(JSON.stringify(obj), { status,
    headers: { 'content-type': 'application/json', ...headers } });
}

const usage = (total) => ({ id: 'x', choices: [], usage: { prompt_tokens: 1,
  completion_tokens: total - 1, total_tokens: total } });

test('unmatched requests go out untouched; matched ones are charged their usage', async (t) => {
  const s = setup(t);
  const seen = [];
  const inner = async (input, init) => {
    seen.push([String(input), init && init.body]);
    return json(usage(42));
  };
  const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
  const other = await f('https://elsewhere.test/x', { method: 'POST', body: 'b' });
  assert.strictEqual(seen[0][0], 'https://elsewhere.test/x');
  assert.strictEqual((await other.json()).usage.total_tokens, 42);
  const r = await f(URL_, { method: 'POST', headers: { authorization: 'Bearer k' }, body: BODY });
  assert.strictEqual(r.status, 200);
  assert.strictEqual((await r.json()).usage.total_tokens, 42);
  const b = s.L().budget('mock');
  assert.strictEqual(b.counters.admitted, 1);
  assert.strictEqual(b.counters.tokensActual, 42);
  assert.strictEqual(b.inflight, 0);
});

test('a streamed answer is charged from its last usage event, read in pieces of any size', async (t) => {
  const s = setup(t);
  const events = [];
  for (let i = 0; i < 2000; i++) events.push(`data: {"choices":[{"delta":{"content":"x${i}"}}],"usage":null}\n\n`);
  events.push('data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":990,"total_tokens":1000}}\n\n');
  events.push('data: [DONE]\n\n');
  const bytes = new TextEncoder().encode(events.join(''));
  for (const piece of [1, 7, 4096, bytes.length]) {
    const inner = async () => new Response(new ReadableStream({
      start(c) {
        for (let i = 0; i < bytes.length; i += piece) c.enqueue(bytes.slice(i, i + piece));
        c.close();
      },
    }), { headers: { 'content-type': 'text/event-stream' } });
    const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
    const r = await f(URL_, { method: 'POST', body: BODY });
    const L = s.L();
    assert.strictEqual(L.budget('mock').inflight, 1, 'the slot is held while the body streams');
    const got = new Uint8Array(await r.arrayBuffer());
    assert.strictEqual(got.length, bytes.length);
    assert.ok(Buffer.from(got).equals(Buffer.from(bytes)), 'byte-exact');
    assert.strictEqual(L.budget('mock').inflight, 0);
  }
  const c = s.L().budget('mock').counters;
  assert.strictEqual(c.admitted, 4);
  assert.strictEqual(c.tokensActual, 4000);
});

test('a 429 puts the budget into a cooldown; the SDK\'s retries past the retry budget get the local 429', async (t) => {
  const s = setup(t, 'retry_budget = 1%\n');
  let sent = 0;
  const inner = async () => {
    sent++;
    return json({ error: { message: 'rate limited' } }, { 'retry-after-ms': '300' }, 429);
  };
  const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
  const r = await f(URL_, { method: 'POST', body: BODY });
  assert.strictEqual(r.status, 429);
  await r.text();
  const L = s.L();
  assert.ok(L.budget('mock').cooldownMs > 0, 'cooldown');
  L.reset('mock');
  // SDK retries (x-stainless-retry-count): the retry budget (1% of
  // admissions, at least one) is soon spent; then the answer is local.
  let local = null;
  for (let i = 1; i <= 5 && !local; i++) {
    const rr = await f(URL_, { method: 'POST', body: BODY,
      headers: { 'x-stainless-retry-count': String(i) } });
    if (rr.headers.get('x-should-retry') === 'false') local = rr;
    else await rr.text();
    L.reset('mock');
  }
  assert.ok(local, 'no local 429');
  assert.strictEqual(local.status, 429);
  assert.match(await local.text(), /ratectl_retry_budget/);
  assert.ok(sent <= 5);
});

test('refusals reject with RatectlError: ETOOBIG, ETIMEDOUT', async (t) => {
  const s = setup(t, 'timeout = 50ms\n');
  const f = ratectl.fetch({ fetch: async () => json(usage(1)), configText: s.configText,
    ledger: s.ledger });
  const big = JSON.stringify({ model: 'm', max_tokens: 5000000, messages: [] });
  await assert.rejects(f(URL_, { method: 'POST', body: big }),
    (e) => e instanceof ratectl.RatectlError && e.code === 'ETOOBIG' && /mock/.test(e.message));
  const L = s.L();
  L.cooldown('mock', 5000);
  await assert.rejects(f(URL_, { method: 'POST', body: BODY }),
    (e) => e instanceof ratectl.RatectlError && e.code === 'ETIMEDOUT');
});

test('a response dropped unread gives its slot back when it is collected, its estimate charged', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const s = setup(t);
  const f = ratectl.fetch({ fetch: async () => json(usage(5)), configText: s.configText,
    ledger: s.ledger });
  await (async () => { await f(URL_, { method: 'POST', body: BODY }); })();
  const L = s.L();
  assert.strictEqual(L.budget('mock').inflight, 1);
  for (let i = 0; i < 20 && L.budget('mock').inflight > 0; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  const b = L.budget('mock');
  assert.strictEqual(b.inflight, 0);
  // It was sent: the estimate stands (ended, not refunded as never sent).
  assert.strictEqual(b.counters.tokensReconciled, 0);
  assert.strictEqual(b.counters.tokensActual, 0);
  assert.ok(b.counters.tokensEstimated > 0);
});

test('headers, URLs and bodies at and past the library\'s sizes', async (t) => {
  const s = setup(t, '', '100000000/min');   // the 16 MiB body is estimated 4M tokens
  const inner = async (input, init) => {
    const h = new Headers({ 'content-type': 'application/json' });
    if (init && init.headers && init.headers['x-echo']) {
      const n = Number(init.headers['x-echo']);
      h.set('x-ratelimit-remaining-tokens', '9'.repeat(n));
      h.set('retry-after', '1'.repeat(n));
      h.set('x-long', 'v'.repeat(n));
    }
    return new Response(JSON.stringify(usage(3)), { headers: h });
  };
  const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
  for (const n of [1023, 1024, 1025, 1 << 20]) {
    const r = await f(URL_, { method: 'POST', body: BODY, headers: { 'x-echo': String(n) } });
    assert.strictEqual((await r.json()).usage.total_tokens, 3, `header of ${n}`);
  }
  const longUrl = URL_ + '?q=' + 'u'.repeat(1 << 20);
  await (await f(longUrl, { method: 'POST', body: BODY })).json();
  const bodies = [
    'x'.repeat(16 << 20),
    Buffer.from(BODY),
    new TextEncoder().encode(BODY),
    new TextEncoder().encode(BODY).buffer,
    new DataView(new TextEncoder().encode(BODY).buffer),
    new Uint16Array(8),
    new URLSearchParams({ a: '1' }),
    new Blob([BODY]),
    new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(BODY)); c.close(); } }),
    undefined,
  ];
  for (const body of bodies) {
    const init = { method: 'POST', body };
    if (body instanceof ReadableStream) init.duplex = 'half';
    await (await f(URL_, init)).json();
  }
  await (await f(new URL(URL_), { method: 'POST', body: BODY })).json();
  await (await f(new Request(URL_, { method: 'POST', body: BODY }))).json();
  const L = s.L();
  const b = L.budget('mock');
  assert.strictEqual(b.inflight, 0);
  assert.strictEqual(b.counters.admitted, 4 + 1 + bodies.length + 2);
});

test('a network error ends the attempt with no answer: the slot comes back', async (t) => {
  const s = setup(t);
  const f = ratectl.fetch({ fetch: async () => { throw new TypeError('fetch failed'); },
    configText: s.configText, ledger: s.ledger });
  await assert.rejects(f(URL_, { method: 'POST', body: BODY }), /fetch failed/);
  const b = s.L().budget('mock');
  assert.strictEqual(b.inflight, 0);
  assert.strictEqual(b.counters.admitted, 1);
});

// ---- tenants and tags (issue 14) -------------------------------------------

function tenantSetup(t, template = 't-*') {
  return setup(t, `tenant = header X-Ratectl-Tenant\ntenant_template = ${template}\n` +
    `tag = header X-Ratectl-Tag\n[${template}]\nrequests = 500/min\n`);
}

// An inner fetch recording the headers each request would carry to the
// provider, as fetch itself would build them from (input, init).
function recorder() {
  const seen = [];
  const inner = async (input, init) => {
    seen.push(new Request(input, init).headers);
    return json(usage(5));
  };
  return { seen, inner };
}

const ours = (h) => [...h.keys()].filter((n) => n.startsWith('x-ratectl'));

test('the provider never sees X-Ratectl-Tenant / X-Ratectl-Tag; the tenant is charged and the tag counted', async (t) => {
  const s = tenantSetup(t);
  const { seen, inner } = recorder();
  const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
  const init = { method: 'POST', body: BODY, headers: { 'X-Ratectl-Tenant': 'alice',
    'x-ratectl-tag': 'route/a', 'X-Keep': '1', 'content-type': 'application/json' } };
  await (await f(URL_, init)).json();
  // a Request input, its headers carried by the Request only
  await (await f(new Request(URL_, init))).json();
  // a Headers object in init, and an array of pairs
  await (await f(URL_, { ...init, headers: new Headers(init.headers) })).json();
  await (await f(URL_, { ...init, headers: Object.entries(init.headers) })).json();
  assert.strictEqual(seen.length, 4);
  for (const h of seen) {
    assert.deepStrictEqual(ours(h), []);
    assert.strictEqual(h.get('x-keep'), '1');
    assert.strictEqual(h.get('content-type'), 'application/json');
  }
  // the caller's own objects are left as they were
  assert.strictEqual(init.headers['X-Ratectl-Tenant'], 'alice');
  const L = s.L();
  assert.strictEqual(L.budget('t-alice').counters.admitted, 4);
  assert.strictEqual(L.budget('t-alice').origin, 't-*');
  assert.strictEqual(L.budget('mock').counters.admitted, 4);
  assert.deepStrictEqual(L.tags('t-alice').top.map((x) => x.tag), ['route/a']);
});

test('unmatched requests keep every header; a tenant header of another name is the program\'s', async (t) => {
  const s = setup(t, 'tenant = header X-User-Id\ntenant_template = u-*\n[u-*]\nrequests = 10/min\n');
  const { seen, inner } = recorder();
  const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
  await (await f('https://elsewhere.test/x', { method: 'POST', body: 'b',
    headers: { 'X-Ratectl-Tenant': 'alice' } })).json();
  await (await f(URL_, { method: 'POST', body: BODY, headers: { 'X-User-Id': 'carol' } })).json();
  assert.strictEqual(seen[0].get('x-ratectl-tenant'), 'alice');
  assert.strictEqual(seen[1].get('x-user-id'), 'carol');
  assert.strictEqual(s.L().budget('u-carol').counters.admitted, 1);
});

test('tenant values of 63 and 64 bytes are sent; 65, 66 and 1 MiB reject with EBADNAME before anything is sent', async (t) => {
  const s = tenantSetup(t, '*');   // '*' leaves the tenant all 64 characters
  const { seen, inner } = recorder();
  const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
  for (const n of [63, 64]) {
    const r = await f(URL_, { method: 'POST', body: BODY, headers: { 'X-Ratectl-Tenant': 'a'.repeat(n) } });
    assert.strictEqual((await r.json()).usage.total_tokens, 5);
  }
  for (const n of [65, 66, 1 << 20]) {
    await assert.rejects(f(URL_, { method: 'POST', body: BODY,
      headers: { 'X-Ratectl-Tenant': 'a'.repeat(n) } }),
    (e) => e instanceof ratectl.RatectlError && e.code === 'EBADNAME' &&
      /X-Ratectl-Tenant/.test(e.message) && /not sent/.test(e.message) && e.message.length < 1000);
  }
  for (const v of ['a/b', 'a*b', 'x y', '\u00e9']) {
    await assert.rejects(f(URL_, { method: 'POST', body: BODY, headers: { 'X-Ratectl-Tenant': v } }),
      (e) => e instanceof ratectl.RatectlError && e.code === 'EBADNAME');
  }
  assert.strictEqual(seen.length, 2);
  for (const h of seen) assert.deepStrictEqual(ours(h), []);
  const L = s.L();
  assert.strictEqual(L.budget('a'.repeat(63)).counters.admitted, 1);
  assert.strictEqual(L.budget('a'.repeat(64)).counters.admitted, 1);
  assert.strictEqual(L.budget('mock').counters.admitted, 2);
  assert.strictEqual(L.budget('mock').inflight, 0);
});

test('a bad tag is dropped with a warning and the request sent untagged, without the header', async (t) => {
  const s = tenantSetup(t);
  const { seen, inner } = recorder();
  const warned = [];
  const onWarn = (w) => warned.push(String(w.message));
  process.on('warning', onWarn);
  t.after(() => process.off('warning', onWarn));
  const f = ratectl.fetch({ fetch: inner, configText: s.configText, ledger: s.ledger });
  await (await f(URL_, { method: 'POST', body: BODY,
    headers: { 'X-Ratectl-Tenant': 'dave', 'X-Ratectl-Tag': 'no blanks allowed' } })).json();
  await new Promise((r) => setImmediate(r));
  assert.deepStrictEqual(ours(seen[0]), []);
  const L = s.L();
  assert.strictEqual(L.budget('t-dave').counters.admitted, 1);
  assert.deepStrictEqual(L.tags('t-dave').top, []);
  assert.ok(warned.some((m) => /is not a tag/.test(m)), warned.join('\n'));
});
