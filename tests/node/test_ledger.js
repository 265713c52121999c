'use strict';
// The Ledger API of the Node package: budgets, admission and its
// refusals, errors and their codes, bad arguments, the budget name's
// fixed buffer at 63, 64, 65 bytes and far beyond, abort and timeout
// giving the place back, close while waiting, a lease lost to the
// garbage collector, a holder killed with SIGKILL, a worker thread.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const v8 = require('node:v8');
const vm = require('node:vm');
const { spawn } = require('node:child_process');
const { Worker } = require('node:worker_threads');

const LIB = path.join(__dirname, '..', '..', 'lib', 'node');
const ratectl = require(LIB);
const { Ledger, RatectlError } = ratectl;

function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ratectl-node-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function ledger(t) {
  const L = new Ledger(path.join(tmpdir(t), 'ledger'));
  t.after(() => L.close());
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

test('budgets: set, read back, update, reset, cooldown, delete', (t) => {
  const L = ledger(t);
  L.set('a', { requests: '60/min', tokens: ['1000/min', [100, 1000, 50]], concurrency: 2 });
  const b = L.budget('a');
  assert.strictEqual(b.name, 'a');
  assert.strictEqual(b.maxInflight, 2);
  assert.deepStrictEqual(b.limits.map((l) => [l.dim, l.count, l.periodMs, l.burst]),
    [['requests', 60, 60000, 60], ['tokens', 1000, 60000, 1000], ['tokens', 100, 1000, 50]]);
  code(() => L.set('a', { requests: '1/s', create: true }), 'EEXISTS');
  code(() => L.set('b', { requests: '1/s', update: true }), 'ENOTFOUND');
  L.set('b', { requests: [[5, 1000]] });
  assert.deepStrictEqual(L.budgets().map((x) => x.name), ['a', 'b']);
  L.cooldown('a', 5000);
  assert.ok(L.budget('a').cooldownMs > 4000);
  code(() => L.tryAcquire('a'), 'ECOOLDOWN');
  L.reset('a');
  assert.strictEqual(L.budget('a').cooldownMs, 0);
  L.tryAcquire('a').release();
  L.reset();
  L.delete('b');
  code(() => L.budget('b'), 'ENOTFOUND');
  code(() => L.delete('b'), 'ENOTFOUND');
  assert.deepStrictEqual(L.reclaim(), { slots: 0, readers: 0 });
});

test('bad budget configuration and arguments: clear errors, nothing changed', (t) => {
  const L = ledger(t);
  code(() => L.set('a', { requests: 'ten a minute' }), 'EPARSE');
  code(() => L.set('a', { requests: [[0, 1000]] }), 'EBADCONFIG');
  code(() => L.set('a', { requests: [[1, 10]] }), 'EBADCONFIG');   // period under 1 s
  code(() => L.set('a', { requests: Array(9).fill('1/s') }), 'EBADCONFIG');
  assert.throws(() => L.set('a', { requests: { count: 1 } }), TypeError);
  assert.throws(() => L.set('a', { requests: '1/s', concurrency: -1 }), RangeError);
  code(() => L.budget('a'), 'ENOTFOUND');
  L.set('a', { requests: '10/s' });
  assert.throws(() => L.tryAcquire('a', { tokens: -1 }), RangeError);
  assert.throws(() => L.tryAcquire('a', { tokens: 1.5 }), RangeError);
  assert.throws(() => L.tryAcquire('a', { tokens: 2 ** 60 }), RangeError);
  assert.throws(() => L.tryAcquire('a', { priority: 'urgent' }), TypeError);
  assert.throws(() => L.tryAcquire(42), TypeError);
  assert.throws(() => new Ledger(42), TypeError);
  assert.strictEqual(L.budget('a').counters.admitted, 0);
});

test('budget names: 63, 64 bytes pass; 65 and far beyond are EBADNAME, never cut', (t) => {
  const L = ledger(t);
  for (const n of [63, 64]) {
    const name = 'n'.repeat(n);
    L.set(name, { requests: '10/s' });
    L.tryAcquire(name).release();
    assert.strictEqual(L.budget(name).name, name);
  }
  for (const n of [65, 1000, 100000]) {
    const name = 'n'.repeat(n);
    const e = code(() => L.tryAcquire(name), 'EBADNAME');
    assert.match(e.message, /64/);
    code(() => L.set(name, { requests: '1/s' }), 'EBADNAME');
  }
  // bytes, not characters: 32 two-byte characters fit, 33 do not
  code(() => L.set('é'.repeat(32), { requests: '1/s' }), 'EBADNAME');   // not [A-Za-z0-9._-]
  code(() => L.tryAcquire('é'.repeat(33)), 'EBADNAME');
  code(() => L.tryAcquire('a\0b'), 'EBADNAME');
  assert.deepStrictEqual(L.budgets().map((b) => b.name.length), [63, 64]);
});

test('admission: refusals and their codes, leases, reconcile', (t) => {
  const L = ledger(t);
  L.set('r', { requests: [[2, 1000, 2]], tokens: [[1000, 60000]], concurrency: 3 });
  const a = L.tryAcquire('r', { tokens: 100 });
  assert.strictEqual(a.budget, 'r');
  assert.strictEqual(a.tokens, 100);
  assert.ok(a.slot >= 0);
  assert.strictEqual(a.pid, process.pid);
  assert.ok(a.held);
  const b = L.tryAcquire('r', { tokens: 100 });
  const e = code(() => L.tryAcquire('r'), 'ELIMITED');
  assert.ok(e.waitMs > 0 && e.waitMs <= 500, `waitMs ${e.waitMs}`);
  assert.strictEqual(e.errno, -30900);
  code(() => L.tryAcquire('r', { tokens: 1001 }), 'ETOOBIG');
  code(() => L.tryAcquire('nope'), 'ENOTFOUND');
  a.release(40);
  assert.ok(!a.held);
  code(() => a.release(), 'EBADLEASE');
  b.release();
  const c = L.budget('r').counters;
  assert.strictEqual(c.admitted, 2);
  assert.strictEqual(c.refused, 1);
  assert.strictEqual(c.tokensEstimated, 200);
  assert.strictEqual(c.tokensActual, 40);

  L.set('s', { requests: '100/s', concurrency: 1 });
  const s = L.tryAcquire('s');
  const f = code(() => L.tryAcquire('s'), 'EINFLIGHT');
  assert.strictEqual(f.waitMs, null);
  s.release();
});

test('acquire: waits its turn, times out (counted refused), gives its place back on abort', async (t) => {
  const L = ledger(t);
  L.set('w', { requests: [[10, 1000, 1]] });   // 100 ms apart
  (await L.acquire('w')).release();
  await rejects(L.acquire('w', { timeout: 0 }), 'ETIMEDOUT');
  await rejects(L.acquire('w', { timeout: 20 }), 'ETIMEDOUT');
  assert.strictEqual(L.pending, 0);
  const c = L.budget('w').counters;
  assert.strictEqual(c.refused, 2);

  // An aborted waiter gives its place back: the next asker gets it.
  const ac = new AbortController();
  const p1 = L.acquire('w', { signal: ac.signal });
  assert.strictEqual(L.pending, 1);
  ac.abort(new Error('user went away'));
  await assert.rejects(p1, /user went away/);
  assert.strictEqual(L.pending, 0);
  const t0 = Date.now();
  const l2 = await L.acquire('w');
  assert.ok(Date.now() - t0 < 150, 'the place given back was taken again');
  l2.release();
  // A signal aborted already: nothing is reserved.
  const ac2 = new AbortController();
  ac2.abort();
  await assert.rejects(L.acquire('w', { signal: ac2.signal }), { name: 'AbortError' });
  assert.strictEqual(L.pending, 0);
  assert.rejects(L.acquire('w', { timeout: -1 }), RangeError);
});

test('close: waiters reject, leases are no longer held, calls fail clearly', async (t) => {
  const dir = path.join(tmpdir(t), 'ledger');
  const L = new Ledger(dir);
  L.set('c', { requests: [[1, 1000, 1]], concurrency: 1 });
  const l = L.tryAcquire('c');
  const p = L.acquire('c');
  L.close();
  await assert.rejects(p, (e) => e instanceof RatectlError && /closed while waiting/.test(e.message));
  assert.strictEqual(l.held, false);
  code(() => l.release(), 'EBADLEASE');
  code(() => L.tryAcquire('c'), 'EBADF');
  L.close();   // twice: nothing
  // the slot was freed with the handle, and the waiter's place given back
  const L2 = new Ledger(dir);
  t.after(() => L2.close());
  assert.strictEqual(L2.budget('c').inflight, 0);
});

test('a lease lost to the garbage collector frees its slot', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const L = ledger(t);
  L.set('g', { requests: '1000/s', concurrency: 1 });
  (() => { L.tryAcquire('g'); })();   // dropped, never released
  assert.strictEqual(L.budget('g').inflight, 1);
  for (let i = 0; i < 10 && L.budget('g').inflight > 0; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  assert.strictEqual(L.budget('g').inflight, 0);
  L.tryAcquire('g').release();
});

test('a slot held by a process killed with SIGKILL comes back to a waiter', { timeout: 20000 }, async (t) => {
  const dir = tmpdir(t);
  const L = new Ledger(path.join(dir, 'ledger'));
  t.after(() => L.close());
  L.set('k', { requests: '1000/s', concurrency: 1 });
  const child = spawn(process.execPath, ['-e', `
    const r = require(${JSON.stringify(LIB)});
    const L = new r.Ledger(process.argv[1]);
    L.tryAcquire('k');
    process.stdout.write('held\\n');
    setInterval(() => {}, 1000);`, path.join(dir, 'ledger')], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  assert.strictEqual(L.budget('k').inflight, 1);
  const p = L.acquire('k', { timeout: 10000 });
  const t0 = Date.now();
  child.kill('SIGKILL');
  const l = await p;
  const ms = Date.now() - t0;
  t.diagnostic(`admitted ${ms} ms after the holder was killed`);
  assert.ok(ms < 3000, `${ms} ms`);
  l.release();
  assert.strictEqual(L.budget('k').inflight, 0);
});

test('errors: codes for every library code, system errors by name', (t) => {
  const e = new RatectlError('x', -30904);
  assert.strictEqual(e.code, 'ETIMEDOUT');
  assert.strictEqual(new RatectlError('x', -31100).code, 'HTTP_ERETRYBUDGET');
  assert.strictEqual(new RatectlError('x', -2).code, 'ENOENT');
  assert.ok(e instanceof Error);
  const file = path.join(tmpdir(t), 'file');
  fs.writeFileSync(file, '');
  assert.throws(() => new Ledger(path.join(file, 'ledger')),
    (err) => err instanceof RatectlError && err.code === 'ENOTDIR' && err.message.length > 0);
  assert.match(ratectl.keyId('sk-test'), /^[0-9a-f]{16}$/);
  assert.strictEqual(ratectl.keyId('sk-test'), ratectl.keyId(Buffer.from('sk-test')));
  assert.throws(() => ratectl.keyId(42), TypeError);
});

test('a worker thread has its own ledger handle and ends cleanly while waiting', { timeout: 20000 }, async (t) => {
  const dir = tmpdir(t);
  const L = new Ledger(path.join(dir, 'ledger'));
  t.after(() => L.close());
  L.set('t', { requests: [[1, 60000, 1]] });   // one a minute: the second waits
  const w = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const r = require(workerData.lib);
    const L = new r.Ledger(workerData.dir);
    L.tryAcquire('t').release();
    L.acquire('t');   // waits a minute: the worker is terminated first
    parentPort.postMessage(L.pending);`, { eval: true, workerData: { lib: LIB, dir: path.join(dir, 'ledger') } });
  const pending = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  assert.strictEqual(pending, 1);
  assert.strictEqual(await w.terminate(), 1);
  assert.strictEqual(L.budget('t').counters.admitted, 1);
});
