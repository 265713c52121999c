'use strict';
// The Ledger API of issue 14 in the Node package: a budget's expire,
// weight and origin (the origin's fixed buffer at 63, 64, 65 bytes and far
// beyond), idleMs, sweep(); a request's tag through tryAcquire and
// acquire, its fixed buffer at 47, 48, 49 bytes and 100,000, multi-byte
// UTF-8, a NUL, wrong types; tags() at and around the 32 counted; a
// waiting acquire's tag alive until it is admitted.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const v8 = require('node:v8');
const vm = require('node:vm');

const LIB = path.join(__dirname, '..', '..', 'lib', 'node');
const { Ledger, RatectlError } = require(LIB);

const TAG_MAX = 48;
const TAGS_TOP = 32;
const NAME_MAX = 64;

function ledger(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ratectl-node-'));
  const L = new Ledger(path.join(d, 'ledger'));
  t.after(() => {
    L.close();
    fs.rmSync(d, { recursive: true, force: true });
  });
  return L;
}

function code(fn, expected) {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof RatectlError, `${e} is not a RatectlError`);
    assert.strictEqual(e.code, expected, e.message);
    return e;
  }
  assert.fail(`no ${expected} thrown`);
}

async function rejects(p, expected) {
  try {
    await p;
  } catch (e) {
    assert.strictEqual(e.code, expected, e.message);
    return e;
  }
  assert.fail(`no ${expected}`);
}

function counted(L, name) {
  const t = L.tags(name);
  return [Object.fromEntries(t.top.map((x) => [x.tag, [x.requests, x.tokens]])), t.rest];
}

// ---- budgets ------------------------------------------------------------------

test('expire, weight, origin and idleMs: set, read back, updated', (t) => {
  const L = ledger(t);
  L.set('user-1', { requests: '1000/s', expire: 30000, weight: 3, origin: 'user-*' });
  let b = L.budget('user-1');
  assert.deepStrictEqual([b.expireMs, b.weight, b.origin, b.idleMs], [30000, 3, 'user-*', null]);
  L.tryAcquire('user-1').release();
  b = L.budget('user-1');
  assert.ok(b.idleMs >= 0 && b.idleMs < 5000, `idleMs ${b.idleMs}`);
  L.set('user-1', { requests: '1000/s', update: true });
  b = L.budgets()[0];
  assert.deepStrictEqual([b.expireMs, b.weight, b.origin], [0, 0, '']);
  L.set('user-1', { requests: '1000/s', weight: 100, origin: null });
  assert.strictEqual(L.budget('user-1').weight, 100);
});

test('origin: 63, 64 bytes kept whole; 65, far beyond, a NUL are EBADCONFIG, never cut', (t) => {
  const L = ledger(t);
  for (const n of [1, NAME_MAX - 1, NAME_MAX]) {
    const origin = 'tmpl-*.'.repeat(20).slice(0, n);
    L.set('o', { requests: '1/s', origin });
    assert.strictEqual(L.budget('o').origin, origin);
  }
  L.delete('o');
  for (const origin of ['a'.repeat(NAME_MAX + 1), 'a'.repeat(NAME_MAX + 2), 'a'.repeat(100000),
    'é'.repeat(NAME_MAX / 2 + 1), 'a'.repeat(NAME_MAX - 1) + 'é', 'user\0-*', '\0',
    'a'.repeat(NAME_MAX) + '\0']) {
    code(() => L.set('o', { requests: '1/s', origin }), 'EBADCONFIG');
  }
  // 64 bytes, not in the alphabet: the library's own check
  assert.throws(() => L.set('o', { requests: '1/s', origin: 'é'.repeat(NAME_MAX / 2) }),
    (e) => e instanceof RatectlError && /^EBAD(CONFIG|NAME)$/.test(e.code));
  assert.throws(() => L.set('o', { requests: '1/s', origin: 5 }), TypeError);
  assert.throws(() => L.set('o', { requests: '1/s', origin: {} }), TypeError);
  code(() => L.budget('o'), 'ENOTFOUND');
});

test('weight and expire out of range: refused, never wrapped', (t) => {
  const L = ledger(t);
  code(() => L.set('n', { requests: '1/s', weight: 101 }), 'EBADCONFIG');
  code(() => L.set('n', { requests: '1/s', weight: 2 ** 32 + 5 }), 'EBADCONFIG');
  assert.throws(() => L.set('n', { requests: '1/s', weight: -1 }), RangeError);
  assert.throws(() => L.set('n', { requests: '1/s', weight: 1.5 }), RangeError);
  assert.throws(() => L.set('n', { requests: '1/s', expire: -1 }), RangeError);
  assert.throws(() => L.set('n', { requests: '1/s', expire: 2 ** 53 }), RangeError);
  code(() => L.budget('n'), 'ENOTFOUND');
});

test('sweep removes the budgets idle past their expire, the others stay', { timeout: 20000 }, async (t) => {
  const L = ledger(t);
  L.set('short', { requests: '1000/s', expire: 1000 });
  L.set('long', { requests: '1000/s', expire: 3600000 });
  L.set('never', { requests: '1000/s' });
  L.tryAcquire('short').release();
  L.tryAcquire('long').release();
  assert.strictEqual(L.sweep(), 0);
  let removed = 0;
  const end = Date.now() + 10000;
  while (!removed && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    removed = L.sweep();
  }
  assert.strictEqual(removed, 1);
  assert.deepStrictEqual(L.budgets().map((b) => b.name), ['long', 'never']);
  code(() => L.tryAcquire('short'), 'ENOTFOUND');
  assert.strictEqual(L.sweep(), 0);
});

// ---- tags ------------------------------------------------------------------------

test('tags of 1, 47, 48 bytes pass and are counted whole', async (t) => {
  const L = ledger(t);
  L.set('b', { requests: '1000/s', tokens: '100000/min' });
  for (const n of [1, TAG_MAX - 1, TAG_MAX]) {
    const tag = 'route:/v1/chat.x_y-'.repeat(10).slice(0, n);
    const a = L.tryAcquire('b', { tokens: 7, tag });
    assert.strictEqual(a.tag, tag);
    a.release(5);
    const w = await L.acquire('b', { tokens: 3, tag });
    assert.strictEqual(w.tag, tag);
    w.release();
    assert.deepStrictEqual(counted(L, 'b')[0][tag], [2, 8]);
  }
  const [top, rest] = counted(L, 'b');
  assert.strictEqual(Object.keys(top).length, 3);
  assert.deepStrictEqual(rest, { tag: '', requests: 0, tokens: 0, error: 0 });
});

test('tags of 49 bytes and far beyond are EBADNAME and charge nothing', async (t) => {
  const L = ledger(t);
  L.set('b', { requests: '1000/s' });
  for (const n of [TAG_MAX + 1, TAG_MAX + 2, 4096, 100000]) {
    const tag = 'a'.repeat(n);
    const e = code(() => L.tryAcquire('b', { tag }), 'EBADNAME');
    assert.match(e.message, /48/);
    await rejects(L.acquire('b', { tag }), 'EBADNAME');
    await rejects(L.acquire('b', { tag, timeout: 0 }), 'EBADNAME');
  }
  assert.strictEqual(L.pending, 0);
  const b = L.budget('b');
  assert.strictEqual(b.counters.admitted, 0);
  assert.strictEqual(b.limits[0].available, 1000);
  assert.deepStrictEqual(counted(L, 'b')[0], {});
});

test('tags outside the alphabet, in multi-byte UTF-8 or with a NUL are EBADNAME', async (t) => {
  const L = ledger(t);
  L.set('b', { requests: '1000/s' });
  for (const tag of [
    'é'.repeat(TAG_MAX / 2),          // 48 bytes, 24 characters
    'é'.repeat(TAG_MAX / 2 + 1),      // 50 bytes
    'a'.repeat(TAG_MAX - 1) + 'é',    // 49 bytes: its last character across the end
    'a'.repeat(TAG_MAX - 2) + 'é',    // 48 bytes
    '日本', 'route 1', 'tag\n', '', '\ud800',
    'ab\0cd', '\0', 'a'.repeat(TAG_MAX) + '\0', 'ok\0' + 'x'.repeat(100000),
  ]) {
    code(() => L.tryAcquire('b', { tag }), 'EBADNAME');
    await rejects(L.acquire('b', { tag }), 'EBADNAME');
  }
  assert.strictEqual(L.budget('b').counters.admitted, 0);
  assert.deepStrictEqual(counted(L, 'b')[0], {});
});

test('a tag that is not a string is a TypeError; null and undefined are none', async (t) => {
  const L = ledger(t);
  L.set('b', { requests: '1000/s', tokens: '1000/s' });
  for (const tag of [5, ['a'], {}, true, Buffer.from('a'), Symbol('a')]) {
    assert.throws(() => L.tryAcquire('b', { tag }), TypeError);
    await assert.rejects(L.acquire('b', { tag }), TypeError);
  }
  assert.strictEqual(L.budget('b').counters.admitted, 0);
  for (const tag of [null, undefined]) {
    const l = L.tryAcquire('b', { tokens: 4, tag });
    assert.strictEqual(l.tag, null);
    l.release();
  }
  const [top, rest] = counted(L, 'b');
  assert.deepStrictEqual(top, {});
  assert.deepStrictEqual(rest, { tag: '', requests: 2, tokens: 8, error: 0 });
  code(() => L.tags('nope'), 'ENOTFOUND');
  code(() => L.tags('n'.repeat(NAME_MAX + 1)), 'EBADNAME');
  assert.throws(() => L.tags(5), TypeError);
});

for (const k of [TAGS_TOP - 1, TAGS_TOP, TAGS_TOP + 1, 500]) {
  test(`tags(): ${k} distinct tags, at most ${TAGS_TOP} counted, most requests first`, (t) => {
    const L = ledger(t);
    L.set('b', { requests: '100000/s', tokens: '10000000/min' });
    const truth = {};
    let total = 0;
    for (let i = 0; i < k; i++) {
      const tag = `t${i}`;
      truth[tag] = (i % 7) + 1;
      for (let j = 0; j < truth[tag]; j++) L.tryAcquire('b', { tokens: 2, tag }).release();
      total += truth[tag];
    }
    const { top, rest } = L.tags('b');
    assert.strictEqual(top.length, Math.min(k, TAGS_TOP));
    const reqs = top.map((x) => x.requests);
    assert.deepStrictEqual(reqs, [...reqs].sort((a, b) => b - a));
    assert.strictEqual(new Set(top.map((x) => x.tag)).size, top.length);
    if (k <= TAGS_TOP) {
      assert.deepStrictEqual(Object.fromEntries(top.map((x) => [x.tag, x.requests])), truth);
      assert.ok(top.every((x) => x.error === 0 && x.tokens === 2 * x.requests));
      assert.strictEqual(rest.requests, 0);
    } else {
      for (const x of top) {       // space-saving: over by at most its error
        assert.ok(x.requests - x.error <= truth[x.tag] && truth[x.tag] <= x.requests,
          JSON.stringify(x));
      }
    }
    assert.strictEqual(L.budget('b').counters.admitted, total);
  });
}

test('a waiting acquire keeps its tag until it is admitted, whatever the heap does', { timeout: 20000 }, async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const L = ledger(t);
  L.set('w', { requests: [[20, 1000, 1]] });   // one every 50 ms
  L.tryAcquire('w').release();
  const tags = [0, 1, 2, 3, 4].map((i) => `wait-${i}`);
  const ps = tags.map((tag) => L.acquire('w', { tag: `${tag}` }));
  assert.strictEqual(L.pending, tags.length);
  let junk = [];
  for (let i = 0; i < 20; i++) {          // churn the heap while they wait
    junk.push(Buffer.alloc(4096, 'JUNK-').toString().repeat(4));
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  junk = null;
  const leases = await Promise.all(ps);
  assert.deepStrictEqual(leases.map((l) => l.tag), tags);
  for (const l of leases) l.release();
  assert.deepStrictEqual(counted(L, 'w')[0], Object.fromEntries(tags.map((x) => [x, [1, 0]])));
});

test('an aborted tagged waiter counts nothing for its tag', async (t) => {
  const L = ledger(t);
  L.set('w', { requests: [[1, 60000, 1]] });
  L.tryAcquire('w').release();
  const ac = new AbortController();
  const p = L.acquire('w', { tag: 'gone', signal: ac.signal });
  ac.abort(new Error('away'));
  await assert.rejects(p, /away/);
  const [top, rest] = counted(L, 'w');
  assert.strictEqual(top.gone, undefined);
  assert.strictEqual(rest.requests, 1);
});
