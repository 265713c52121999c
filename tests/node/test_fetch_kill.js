'use strict';
// ratectl.fetch() gives back what a request holds, whatever ends it:
// - a worker process killed with SIGKILL in the middle of a streamed
//   answer (the openai SDK, tests/node/fixtures/stream_worker.js): its
//   in-flight slot is a file lock the kernel drops, a worker waiting for a
//   slot gets it, and nothing stays counted in flight;
// - an AbortController while the request waits its turn (for the rate,
//   and for a slot): the promise rejects at once with the signal's reason,
//   and the place in line is given back, so the next request passes when
//   the aborted one would have;
// - an abort, or a cancel, in the middle of a streamed body: the slot is
//   given back at once and the next request is admitted.
// The ledger is read with `ratectl show` (and `ratectl reclaim`), the
// provider's count with GET /stats.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers');

const WORKER = path.join(__dirname, 'fixtures', 'stream_worker.js');
const CHAT = '/v1/chat/completions';

async function setup(t, providerArgs, ...conf) {
  const tmp = h.tmpdir(t);
  const fp = await h.FakeProvider.start(tmp, providerArgs);
  t.after(() => fp.stop());
  const config = h.writeConfig(path.join(tmp, 'c.conf'), fp.port, 'fake', ...conf);
  return { tmp, fp, config, ledger: path.join(tmp, 'ledger') };
}

test('a worker killed mid-stream leaks nothing; a worker waiting for its slot goes on', async (t) => {
  const { fp, config, ledger } = await setup(t, ['--stream-bytes', 1000000],
    'requests = 600/min', 'concurrency = 2', 'timeout = 20s');
  const env = h.env({ RATECTL_CONFIG: config, RATECTL_LEDGER: ledger });
  const url = fp.url + '/v1';
  // Two workers hold both slots, each in the middle of its stream.
  const a = new h.NodeProc(WORKER, ['hold', url], { env, t });
  await a.waitLine(/^holding$/, 15000);
  const b = new h.NodeProc(WORKER, ['hold', url], { env, t });
  await b.waitLine(/^holding$/, 15000);
  assert.equal(h.show(ledger, 'fake').inflight, 2);
  // A third waits for a slot.
  const c = new h.NodeProc(WORKER, ['loop', url, 3], { env, t });
  await h.sleep(1000);
  assert.deepEqual(c.lines, [], 'admitted with every slot held');
  assert.equal((await fp.stats()).requests, 2);

  const killed = Date.now();
  a.kill('SIGKILL');
  assert.equal((await a.exited).signal, 'SIGKILL');
  const first = JSON.parse(await c.waitLine(/^\{/, 10000));
  t.diagnostic(`the waiting worker's first stream ended ${first.t - killed} ms after the kill`);
  assert.ok(first.t - killed < 5000);
  await c.waitLine(/^done$/, 30000);
  assert.equal((await c.exited).code, 0, c.stderr);
  for (const l of c.lines.filter((x) => x.startsWith('{'))) {
    assert.ok(JSON.parse(l).usage.total_tokens > 0, l);   // read to the end, usage and all
  }

  b.kill('SIGKILL');
  await b.exited;
  const before = h.show(ledger, 'fake');
  t.diagnostic(`after both kills: inflight ${before.inflight}, dead ${before.dead}; ` +
    `${h.reclaim(ledger)}`);
  const after = h.show(ledger, 'fake');
  assert.equal(after.inflight, 0);
  assert.equal(after.dead, 0);
  assert.equal(after.counters.admitted, 5);
  t.diagnostic(`counters: ${JSON.stringify(after.counters)}`);
  assert.ok(after.counters.reclaimed >= 1);
  const st = await fp.stats();
  assert.equal(st.requests, 5);
  assert.equal(st.limited_429, 0);

  // And the budget is whole: two streams at once are admitted now.
  const f = h.ratectl().fetch({ config, ledger });
  const rs = await Promise.all([0, 1].map(() => f(fp.url + CHAT, {
    method: 'POST', body: h.chatBody({ stream: true, includeUsage: true }),
    headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5000),
  })));
  assert.equal(h.show(ledger, 'fake').inflight, 2);
  await Promise.all(rs.map((r) => r.arrayBuffer()));
  assert.equal(h.show(ledger, 'fake').inflight, 0);
});

function post(f, url, { signal, stream = false } = {}) {
  return f(url, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test' },
    body: h.chatBody({ stream, includeUsage: stream }), signal,
  });
}

test('an abort while waiting for the rate gives the place in line back', async (t) => {
  const { fp, config, ledger } = await setup(t, [], 'requests = 1/s burst 1', 'timeout = 10s');
  const f = h.ratectl().fetch({ config, ledger });
  const url = fp.url + CHAT;
  assert.equal((await (await post(f, url)).json()).object, 'chat.completion');   // the burst
  const ac = new AbortController();
  const waiting = post(f, url, { signal: ac.signal });     // its place: 1 s from now
  await h.sleep(100);
  // The place is reserved: the limit is full for about 2 s now.
  const held = h.show(ledger, 'fake').limits[0].until_full_ns;
  const t0 = Date.now();
  ac.abort();
  await assert.rejects(waiting, (e) => e === ac.signal.reason && e.name === 'AbortError');
  t.diagnostic(`rejected ${Date.now() - t0} ms after the abort`);
  assert.ok(Date.now() - t0 < 500);
  const back = h.show(ledger, 'fake').limits[0].until_full_ns;
  t.diagnostic(`until full: ${held / 1e6} ms with the place held, ${back / 1e6} ms after the abort`);
  assert.ok(held > 1.5e9, `${held}`);
  assert.ok(back < 1e9, `${back}`);
  // The next request passes when the aborted one would have (< 1 s), not a
  // period later.
  const t1 = Date.now();
  const r = await post(f, url);
  assert.equal(r.status, 200);
  await r.arrayBuffer();
  const waited = Date.now() - t1;
  t.diagnostic(`the next request waited ${waited} ms`);
  assert.ok(waited < 1200, `${waited}`);
  const st = await fp.stats();
  assert.equal(st.requests, 2);       // the aborted one never reached the provider
  const b = h.show(ledger, 'fake');
  t.diagnostic(`counters: ${JSON.stringify(b.counters)}`);
  assert.equal(b.counters.admitted, 2);
  assert.equal(b.inflight, 0);
});

test('an abort while waiting for a slot gives the place back; the slot passes on', async (t) => {
  const { fp, config, ledger } = await setup(t, ['--stream-bytes', 1000000],
    'requests = 600/min', 'concurrency = 1', 'timeout = 10s');
  const f = h.ratectl().fetch({ config, ledger });
  const url = fp.url + CHAT;
  const holder = await post(f, url, { stream: true });
  const reader = holder.body.getReader();
  await reader.read();
  assert.equal(h.show(ledger, 'fake').inflight, 1);
  const ac = new AbortController();
  const waiting = post(f, url, { signal: ac.signal });
  const later = post(f, url);     // behind it in line
  await h.sleep(200);
  const t0 = Date.now();
  ac.abort();
  await assert.rejects(waiting, (e) => e === ac.signal.reason);
  assert.ok(Date.now() - t0 < 500);
  // The holder reads to its end: the slot goes to the one behind.
  for (;;) if ((await reader.read()).done) break;
  const t1 = Date.now();
  const r = await later;
  assert.equal(r.status, 200);
  await r.arrayBuffer();
  t.diagnostic(`the request behind the aborted one was admitted ${Date.now() - t1} ms after the slot was freed`);
  assert.ok(Date.now() - t1 < 1000);
  const b = h.show(ledger, 'fake');
  t.diagnostic(`counters: ${JSON.stringify(b.counters)}`);
  assert.equal(b.inflight, 0);
  assert.equal(b.counters.admitted, 2);
  assert.equal((await fp.stats()).requests, 2);
});

test('an abort or a cancel in the middle of a streamed body gives the slot back', async (t) => {
  const { fp, config, ledger } = await setup(t, ['--stream-bytes', 1000000],
    'requests = 600/min', 'concurrency = 1', 'timeout = 2s');
  const f = h.ratectl().fetch({ config, ledger });
  const url = fp.url + CHAT;
  // An abort: reading on rejects with the reason.
  const ac = new AbortController();
  const r1 = await post(f, url, { stream: true, signal: ac.signal });
  const rd = r1.body.getReader();
  assert.equal((await rd.read()).done, false);
  assert.equal(h.show(ledger, 'fake').inflight, 1);
  ac.abort();
  await assert.rejects(rd.read(), (e) => e.name === 'AbortError');
  assert.ok(await h.waitFor(() => h.show(ledger, 'fake').inflight === 0, 2000),
    'the aborted stream still holds its slot');
  // A cancel: the program stops reading and says so.
  const r2 = await post(f, url, { stream: true });
  const rd2 = r2.body.getReader();
  await rd2.read();
  assert.equal(h.show(ledger, 'fake').inflight, 1);
  await rd2.cancel();
  assert.ok(await h.waitFor(() => h.show(ledger, 'fake').inflight === 0, 2000),
    'the cancelled stream still holds its slot');
  // The cut streams keep their estimate: no usage came, nothing was
  // reconciled.
  const cut = h.show(ledger, 'fake').counters;
  t.diagnostic(`after the cut streams: ${JSON.stringify(cut)}`);
  assert.ok(cut.tokens_estimated > 0);
  assert.equal(cut.tokens_reconciled, 0);
  assert.equal(cut.tokens_actual, 0);
  // With the one slot free, the next request passes at once (a leaked
  // slot would make it time out after 2 s), and is charged its usage.
  const t0 = Date.now();
  const r3 = await post(f, url);
  assert.equal(r3.status, 200);
  const usage = (await r3.json()).usage.total_tokens;
  assert.ok(Date.now() - t0 < 1000);
  const b = h.show(ledger, 'fake');
  t.diagnostic(`counters: ${JSON.stringify(b.counters)}`);
  assert.equal(b.inflight, 0);
  assert.equal(b.counters.admitted, 3);
  assert.equal(b.counters.tokens_actual - cut.tokens_actual, usage);
});
